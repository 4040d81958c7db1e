//! The CMake build of the C++ example, run as docs/guide-c.md tells a vendor: the configure, build
//! and `ctest` commands are taken from the guide itself and run from the repository root, with
//! only the build directory moved to a temporary one. CTest must run the driver (driver.cpp, all
//! 22 entry points) on the plugin just built and pass it; the same ctest run on a plugin that
//! fails the driver's checks must fail. With an installed SDK (`find_package(aapi)`) and
//! `-DAAPI_SANITIZE=ON`, the driver passes under AddressSanitizer and UndefinedBehaviorSanitizer.
//!
//! A machine without CMake (3.20 or newer, for `ctest --test-dir`) fails these tests with what to
//! install: the documented commands are never skipped.

mod common;
#[path = "common/symbols.rs"]
mod symbols;

use common::{LIMIT, must, repo, report, run};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use symbols::undefined_symbols;

/// The name of the driver's test in examples/cpp-plugin/CMakeLists.txt.
const TEST_NAME: &str = "cpp_plugin_driver";

/// What the driver prints when every check held (driver.cpp).
const ALL_PASSED: &str = "all checks passed";

/// CMake and CTest are there and new enough for `ctest --test-dir`, or the test fails saying
/// what to install.
fn require_cmake() {
    const INSTALL: &str = "install CMake 3.20 or newer (Debian, Ubuntu: apt-get install cmake; \
                           .ci/run installs it) to build the C++ example as docs/guide-c.md says";
    for tool in ["cmake", "ctest"] {
        let out = match Command::new(tool).arg("--version").output() {
            Ok(out) => out,
            Err(e) => panic!("{tool} is not installed ({e}): {INSTALL}"),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let version: Vec<u32> = text
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .split('.')
            .map_while(|p| p.parse().ok())
            .collect();
        assert!(
            out.status.success() && version.len() >= 2,
            "{tool} --version gives no version ({}): {INSTALL}",
            report(&out)
        );
        assert!(
            (version[0], version[1]) >= (3, 20),
            "{tool} {} is too old for `ctest --test-dir`: {INSTALL}",
            text.lines().next().unwrap_or("")
        );
    }
}

/// The one-line build and test of the C++ example that docs/guide-c.md gives (and the
/// CMakeLists.txt repeats), split into its commands.
fn documented_commands() -> Vec<Vec<String>> {
    let guide = fs::read_to_string(repo().join("docs/guide-c.md")).unwrap();
    let line = guide
        .lines()
        .find(|l| l.starts_with("cmake -S examples/cpp-plugin "))
        .expect("docs/guide-c.md gives no `cmake -S examples/cpp-plugin ...` line")
        .trim();
    let cmakelists = fs::read_to_string(repo().join("examples/cpp-plugin/CMakeLists.txt")).unwrap();
    assert!(
        cmakelists.contains(&format!("#   {line}\n")),
        "examples/cpp-plugin/CMakeLists.txt does not give the guide's commands: {line}"
    );
    assert!(
        !line.contains(['"', '\'', '$', '|', ';', '>', '<', '`']),
        "the guide's line is more than plain commands joined by &&: {line}"
    );
    let commands: Vec<Vec<String>> = line
        .split(" && ")
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .collect();
    let tools: Vec<&str> = commands.iter().map(|c| c[0].as_str()).collect();
    assert_eq!(
        tools,
        ["cmake", "cmake", "ctest"],
        "the guide's line must configure, build and run ctest: {line}"
    );
    assert!(
        commands.iter().all(|c| c.iter().any(|a| a == "build")),
        "every command of the guide's line must name the build directory `build`: {line}"
    );
    commands
}

/// Run one documented command from the repository root, with its build directory `build` at
/// `build_dir`.
fn documented(command: &[String], build_dir: &Path, tmp: &Path) -> Output {
    let mut cmd = Command::new(&command[0]);
    for arg in &command[1..] {
        if arg == "build" {
            cmd.arg(build_dir);
        } else {
            cmd.arg(arg);
        }
    }
    run(cmd.current_dir(repo()).env("TMPDIR", tmp), LIMIT)
}

/// What ctest wrote of the driver's run (its command and its output, passed or not).
fn last_test_log(build_dir: &Path) -> String {
    fs::read_to_string(build_dir.join("Testing/Temporary/LastTest.log"))
        .unwrap_or_else(|e| panic!("ctest wrote no log in {}: {e}", build_dir.display()))
}

/// The line of ctest's summary that gives the driver's verdict, e.g.
/// `1/1 Test #1: cpp_plugin_driver ................   Passed    0.05 sec`.
fn verdict_line(ctest_stdout: &str) -> String {
    ctest_stdout
        .lines()
        .find(|l| l.contains(&format!("Test #1: {TEST_NAME} ")))
        .unwrap_or_else(|| panic!("ctest did not run {TEST_NAME}:\n{ctest_stdout}"))
        .to_string()
}

#[test]
fn the_documented_cmake_commands_build_the_driver_and_ctest_passes_it_on_the_plugin() {
    require_cmake();
    let commands = documented_commands();
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");

    let (ctest, steps) = commands.split_last().unwrap();
    for step in steps {
        let out = documented(step, &build, dir.path());
        assert!(out.status.success(), "{step:?} failed:\n{}", report(&out));
    }
    let plugin = build.join("libaapi_cpp_example.so");
    let driver = build.join("driver");
    assert!(
        plugin.is_file() && driver.is_file(),
        "cmake built no plugin or no driver"
    );

    let out = documented(ctest, &build, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{ctest:?} failed:\n{}", report(&out));
    let verdict = verdict_line(&stdout);
    assert!(verdict.contains(" Passed "), "{verdict}\n{}", report(&out));
    assert!(
        stdout.contains("100% tests passed, 0 tests failed out of 1"),
        "{}",
        report(&out)
    );
    // The driver ran every check on the plugin just built.
    let log = last_test_log(&build);
    assert!(
        log.contains(&format!(
            "Command: \"{}\" \"{}\"",
            driver.display(),
            plugin.display()
        )),
        "ctest did not run the built driver on the built plugin:\n{log}"
    );
    for line in [
        "sanitizers: address=off undefined=off\n",
        "round trip: 7 objects over 2 workload files, 300024 bytes backed up and read back \
         equal; 7 restored under /restored and read back equal\n",
        "exceptions: 6 of 6 injected exceptions came back as their codes\n",
        ", 0 failed\n",
        ALL_PASSED,
    ] {
        assert!(
            log.contains(line),
            "missing {line:?} in the driver's run:\n{log}"
        );
    }

    // The same ctest on a plugin that fails the driver's checks fails and shows why: the
    // skeleton of docs/guide-c.md loads and answers the handshake, but is not the `memory`
    // workload and opens no sessions.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let skeleton = dir.path().join("libskeleton.so");
    must(
        Command::new(&cc)
            .args(["-std=c99", "-fPIC", "-fvisibility=hidden", "-shared", "-I"])
            .arg(repo().join("include"))
            .arg("-o")
            .arg(&skeleton)
            .arg(repo().join("examples/c-skeleton/plugin.c")),
    );
    fs::copy(&skeleton, &plugin).unwrap();
    let out = documented(ctest, &build, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "ctest passed a plugin that fails the driver's checks:\n{}",
        report(&out)
    );
    let verdict = verdict_line(&stdout);
    assert!(verdict.contains("Failed"), "{verdict}\n{}", report(&out));
    assert!(
        stdout.contains(&format!("{TEST_NAME} (Failed)")),
        "{}",
        report(&out)
    );
    // --output-on-failure shows the failed checks with their lines.
    assert!(
        stdout.contains("driver.cpp:") && stdout.contains(": FAILED: "),
        "{}",
        report(&out)
    );
    assert!(!stdout.contains(ALL_PASSED), "{}", report(&out));
}

#[test]
fn cmake_with_an_installed_sdk_and_aapi_sanitize_passes_the_driver_under_the_sanitizers() {
    require_cmake();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    must(
        Command::new(repo().join("scripts/install-sdk"))
            .arg("--prefix")
            .arg(&prefix),
    );
    // Out of the repository, only the installed SDK can provide aapi.h.
    let src = dir.path().join("cpp-plugin");
    fs::create_dir(&src).unwrap();
    for f in ["CMakeLists.txt", "plugin.cpp", "driver.cpp", "exports.map"] {
        fs::copy(repo().join("examples/cpp-plugin").join(f), src.join(f)).unwrap();
    }
    let build = dir.path().join("build");
    must(
        Command::new("cmake")
            .arg("-S")
            .arg(&src)
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
            .arg("-DAAPI_SANITIZE=ON"),
    );
    let cache = fs::read_to_string(build.join("CMakeCache.txt")).unwrap();
    assert!(
        cache.contains(&format!(
            "aapi_DIR:PATH={}\n",
            prefix.join("share/cmake/aapi").display()
        )),
        "find_package(aapi) did not find the installed SDK"
    );
    must(Command::new("cmake").arg("--build").arg(&build));
    let plugin = build.join("libaapi_cpp_example.so");
    let undefined = undefined_symbols(&plugin);
    assert!(
        undefined.iter().any(|n| n.starts_with("__asan_report"))
            && undefined.iter().any(|n| n.starts_with("__ubsan_handle")),
        "AAPI_SANITIZE=ON built a plugin without ASan and UBSan checks: {undefined:?}"
    );

    let out = must(
        Command::new("ctest")
            .arg("--test-dir")
            .arg(&build)
            .arg("--output-on-failure")
            .env("TMPDIR", dir.path()),
    );
    let verdict = verdict_line(&String::from_utf8_lossy(&out.stdout));
    assert!(verdict.contains(" Passed "), "{verdict}\n{}", report(&out));
    let log = last_test_log(&build);
    assert!(
        log.contains("sanitizers: address=on undefined=on\n") && log.contains(ALL_PASSED),
        "{log}"
    );
    assert!(
        !log.contains("Sanitizer") && !log.contains("runtime error"),
        "{log}"
    );
}
