//! The C++ example plugin under AddressSanitizer + UndefinedBehaviorSanitizer and under valgrind,
//! built and driven exactly as docs/guide-c.md tells a vendor: `make` in examples/cpp-plugin
//! builds the plugin and its local driver (driver.cpp), which calls all 22 entry points (a
//! backup/restore round trip compared byte for byte, bad handles, NULL pointers, calls out of
//! order, exceptions thrown inside entry points) and exits 0 only when every check held.
//!
//! A run under a checker proves nothing when the checker is not there, so each test first shows
//! its instruments work: a canary program built with the same flags must die on a planted heap
//! overflow, signed overflow and leak; the sanitized plugin must carry ASan and UBSan checks; the
//! driver reports which runtimes it carries. A toolchain without the sanitizer runtimes, or a
//! machine without valgrind, fails with a message saying what to install.

mod common;
#[path = "common/symbols.rs"]
mod symbols;

use common::{must, repo, report, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use symbols::undefined_symbols;

/// The sanitizer flags of `make SANITIZE=1` (examples/cpp-plugin/Makefile).
const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];

/// Leaks count, every report stops the run, and each checker has its own exit status.
const ASAN_OPTIONS: &str = "detect_leaks=1:halt_on_error=1:exitcode=86";
const UBSAN_OPTIONS: &str = "halt_on_error=1:print_stacktrace=1:exitcode=87";

/// The valgrind run of docs/guide-c.md: any error or definite leak exits 99.
const VALGRIND: &[&str] = &[
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    "--show-leak-kinds=definite",
];

/// A program with one planted bug per argument, to prove the checkers catch each kind.
const CANARY: &str = r#"
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
int main(int argc, char** argv) {
    const char* what = argc > 1 ? argv[1] : "";
    if (std::strcmp(what, "heap") == 0) {
        volatile std::size_t size = 8; // opaque to the compiler: only ASan can see the bug
        char* p = static_cast<char*>(std::malloc(size));
        p[size] = 1; // one byte past the end
        std::printf("%d\n", p[0]);
        std::free(p);
    } else if (std::strcmp(what, "ub") == 0) {
        volatile int big = INT_MAX;
        std::printf("%d\n", big + argc); // signed overflow
    } else if (std::strcmp(what, "leak") == 0) {
        void* volatile p = std::malloc(77);
        p = nullptr;
    }
    std::puts("canary survived");
    return 0;
}
"#;

/// The C++ compiler `make` uses: $CXX, else make's default g++.
fn cxx() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "g++".to_string())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn require_valgrind() {
    assert!(
        have("valgrind"),
        "valgrind is not installed: apt-get install valgrind (.ci/run installs it)"
    );
}

/// Build the canary into `dir`, with the sanitizers or plainly. A compiler that cannot link
/// sanitized programs fails here, with what to install.
fn canary(dir: &Path, sanitize: bool) -> PathBuf {
    let src = dir.join("canary.cpp");
    std::fs::write(&src, CANARY).unwrap();
    let exe = dir.join(if sanitize { "canary-san" } else { "canary" });
    let mut cmd = Command::new(cxx());
    cmd.args(["-std=c++17", "-O1", "-g"]);
    if sanitize {
        cmd.args(SANITIZE);
    }
    cmd.arg("-o").arg(&exe).arg(&src);
    let out = run(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{} cannot build a program{}. {}\n{}",
        cxx(),
        if sanitize {
            format!(" with {}", SANITIZE.join(" "))
        } else {
            String::new()
        },
        if sanitize {
            "The AddressSanitizer and UndefinedBehaviorSanitizer runtimes (libasan, libubsan) \
             are missing: install build-essential (Debian, Ubuntu: g++ with libasan and libubsan), \
             or compiler-rt for clang."
        } else {
            "Install a C++17 compiler (build-essential)."
        },
        report(&out)
    );
    exe
}

/// `cmd` with the sanitizer options of these tests.
fn sanitized(cmd: &mut Command) -> &mut Command {
    cmd.env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("UBSAN_OPTIONS", UBSAN_OPTIONS)
}

/// `make -C examples/cpp-plugin O=<out> [SANITIZE=1] all driver`: the plugin, the driver, and
/// the commands make ran.
fn make(out: &Path, sanitize: bool) -> (PathBuf, PathBuf, String) {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(repo().join("examples/cpp-plugin"))
        .arg(format!("O={}", out.display()))
        .arg("-j2");
    if sanitize {
        cmd.arg("SANITIZE=1");
    }
    let done = must(cmd.args(["all", "driver"]));
    (
        out.join("libaapi_cpp_example.so"),
        out.join("driver"),
        String::from_utf8_lossy(&done.stdout).into_owned(),
    )
}

#[test]
fn sanitizers_and_valgrind_catch_a_planted_overflow_ub_and_leak() {
    let dir = tempfile::tempdir().unwrap();
    let san = canary(dir.path(), true);
    let limit = Duration::from_secs(60);
    let clean = run(sanitized(Command::new(&san).arg("none")), limit);
    assert!(clean.status.success(), "{}", report(&clean));
    for (bug, code, message) in [
        ("heap", 86, "heap-buffer-overflow"),
        ("ub", 87, "signed integer overflow"),
        ("leak", 86, "detected memory leaks"),
    ] {
        let out = run(sanitized(Command::new(&san).arg(bug)), limit);
        assert_eq!(out.status.code(), Some(code), "{bug}: {}", report(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{bug}: {}",
            report(&out)
        );
    }

    require_valgrind();
    let plain = canary(dir.path(), false);
    let clean = run(
        Command::new("valgrind")
            .args(VALGRIND)
            .arg(&plain)
            .arg("none"),
        limit,
    );
    assert!(clean.status.success(), "{}", report(&clean));
    for (bug, message) in [
        ("heap", "Invalid write of size 1"),
        ("leak", "definitely lost: 77 bytes"),
    ] {
        let out = run(
            Command::new("valgrind").args(VALGRIND).arg(&plain).arg(bug),
            limit,
        );
        assert_eq!(out.status.code(), Some(99), "{bug}: {}", report(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{bug}: {}",
            report(&out)
        );
    }
}

#[test]
fn driver_passes_every_check_under_address_and_undefined_behavior_sanitizers() {
    let dir = tempfile::tempdir().unwrap();
    canary(dir.path(), true); // the sanitizer runtimes are there, or a clear message
    let (plugin, driver, commands) = make(&dir.path().join("asan"), true);

    // make built both with the documented flags, and the plugin really calls the checks.
    for source in ["plugin.cpp", "driver.cpp"] {
        let line = commands
            .lines()
            .find(|l| l.contains(source))
            .unwrap_or_else(|| panic!("make did not compile {source}:\n{commands}"));
        for flag in SANITIZE {
            assert!(line.contains(flag), "{source} built without {flag}: {line}");
        }
    }
    let undefined = undefined_symbols(&plugin);
    assert!(
        undefined.iter().any(|n| n.starts_with("__asan_report")),
        "no AddressSanitizer checks in the plugin: {undefined:?}"
    );
    assert!(
        undefined.iter().any(|n| n.starts_with("__ubsan_handle")),
        "no UndefinedBehaviorSanitizer checks in the plugin: {undefined:?}"
    );

    let out = run(
        sanitized(Command::new(&driver).arg(&plugin).env("TMPDIR", dir.path())),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        stdout.starts_with("sanitizers: address=on undefined=on\n"),
        "the driver runs without the sanitizers:\n{}",
        report(&out)
    );
    assert!(
        !stderr.contains("Sanitizer") && !stderr.contains("runtime error"),
        "{}",
        report(&out)
    );
    for line in [
        "round trip: 7 objects over 2 workload files, 300024 bytes backed up and read back \
         equal; 7 restored under /restored and read back equal",
        "exceptions: 6 of 6 injected exceptions came back as their codes",
        "all checks passed",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{}", report(&out));
    }
}

#[test]
fn driver_passes_every_check_under_valgrind() {
    require_valgrind();
    let dir = tempfile::tempdir().unwrap();
    let (plugin, driver, _) = make(&dir.path().join("plain"), false);
    assert!(
        !undefined_symbols(&plugin)
            .iter()
            .any(|n| n.starts_with("__asan")),
        "the plain build is instrumented"
    );
    let out = run(
        Command::new("valgrind")
            .args(VALGRIND)
            .arg(&driver)
            .arg(&plugin)
            .env("TMPDIR", dir.path()),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors")
            && (stderr.contains("definitely lost: 0 bytes")
                || stderr.contains("no leaks are possible")),
        "{}",
        report(&out)
    );
    assert!(
        stdout.starts_with("sanitizers: address=off undefined=off\n")
            && stdout.contains("all checks passed"),
        "{}",
        report(&out)
    );
}
