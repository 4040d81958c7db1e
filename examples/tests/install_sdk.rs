//! scripts/install-sdk puts the header, the pkg-config file and the CMake package in place, and
//! C projects outside this repository find them: the skeleton of docs/guide-c.md builds with
//! `pkg-config --cflags aapi` and with `find_package(aapi)`, and the loaded result is a plugin.

mod common;

use aapi_host::client::{HostHooks, Plugin, SessionDef};
use aapi_sdk::abi::*;
use aapi_sdk::version::{ENTRY_POINTS, MARKER_SYMBOL};
use common::{LIMIT, must, repo, report, run};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _level: u32, _message: &str) {}
}

fn install(prefix: &Path) {
    must(
        Command::new(repo().join("scripts/install-sdk"))
            .arg("--prefix")
            .arg(prefix),
    );
}

fn abi_version() -> String {
    format!("{AAPI_ABI_MAJOR}.{AAPI_ABI_MINOR}")
}

/// Exactly the ABI's exports, and a handshake through the host's loader.
fn check_skeleton(so: &Path) {
    let out = must(Command::new("nm").args(["-D", "--defined-only"]).arg(so));
    let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    let want: BTreeSet<String> = ENTRY_POINTS
        .iter()
        .chain(&[MARKER_SYMBOL])
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want, "{}", so.display());
    let plugin = Plugin::load(so, Arc::new(Quiet)).expect("the skeleton loads");
    assert_eq!(plugin.info().name, "skeleton");
    assert_eq!(plugin.claim("skeleton"), Ok(true));
    let err = plugin
        .open_server("s", SessionDef::new(AAPI_OP_BACKUP))
        .unwrap_err();
    assert_eq!(err.code(), Some(AAPI_ECONNECT), "{err}");
    plugin.terminate().unwrap();
}

#[test]
fn staged_install_puts_files_under_destdir_and_the_prefix_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let stage = dir.path().join("stage");
    must(
        Command::new(repo().join("scripts/install-sdk"))
            .env("PREFIX", "/opt/aapi")
            .env("DESTDIR", &stage),
    );
    let root = stage.join("opt/aapi");
    assert_eq!(
        fs::read(root.join("include/aapi.h")).unwrap(),
        fs::read(repo().join("include/aapi.h")).unwrap()
    );
    let pc = fs::read_to_string(root.join("share/pkgconfig/aapi.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/aapi\n"), "{pc}");
    assert!(
        pc.contains(&format!("Version: {}\n", abi_version())),
        "{pc}"
    );
    assert!(!pc.contains("stage"), "DESTDIR leaked into aapi.pc:\n{pc}");
    for f in ["aapiConfig.cmake", "aapiConfigVersion.cmake"] {
        let text = fs::read_to_string(root.join("share/cmake/aapi").join(f)).unwrap();
        assert!(
            !text.contains('@'),
            "{f} has an unfilled placeholder:\n{text}"
        );
    }
}

#[test]
fn bad_usage_is_refused_with_status_2() {
    for args in [&["--prefix", "relative/dir"][..], &["--bogus"][..]] {
        let out = run(
            Command::new(repo().join("scripts/install-sdk")).args(args),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("install-sdk"),
            "no message for {args:?}"
        );
    }
}

#[test]
fn pkg_config_finds_the_header_and_builds_the_skeleton() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    install(&prefix);
    let pc_path = prefix.join("share/pkgconfig");
    let pkg = |args: &[&str]| {
        run(
            Command::new("pkg-config")
                .args(args)
                .arg("aapi")
                .env("PKG_CONFIG_PATH", &pc_path),
            LIMIT,
        )
    };
    let cflags = pkg(&["--cflags"]);
    assert_eq!(
        String::from_utf8_lossy(&cflags.stdout).trim(),
        format!("-I{}", prefix.join("include").display())
    );
    assert_eq!(
        String::from_utf8_lossy(&pkg(&["--modversion"]).stdout).trim(),
        abi_version()
    );
    assert!(pkg(&["--atleast-version=1.0"]).status.success());
    assert!(!pkg(&["--atleast-version=2.0"]).status.success());

    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    must(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/c-skeleton"))
            .arg(format!("O={}", out.display()))
            .env("PKG_CONFIG_PATH", &pc_path),
    );
    check_skeleton(&out.join("libmy_plugin.so"));
}

#[test]
fn cmake_find_package_builds_the_skeleton_and_the_c_sample() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    install(&prefix);
    let cmake_build = |src: &Path, build: &Path| {
        must(
            Command::new("cmake")
                .arg("-S")
                .arg(src)
                .arg("-B")
                .arg(build)
                .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
        );
        must(Command::new("cmake").arg("--build").arg(build));
    };

    let build = dir.path().join("skeleton");
    cmake_build(&repo().join("examples/c-skeleton"), &build);
    check_skeleton(&build.join("libmy_plugin.so"));

    // The C sample, copied out of the repository so that only the installed SDK can provide
    // aapi.h, builds with find_package(aapi) and passes its own round trip.
    let sample = dir.path().join("sample");
    fs::create_dir_all(sample.join("src")).unwrap();
    fs::create_dir_all(sample.join("tests")).unwrap();
    let from = repo().join("sample-plugin/c");
    for f in ["CMakeLists.txt", "tests/roundtrip.c"] {
        fs::copy(from.join(f), sample.join(f)).unwrap();
    }
    for e in fs::read_dir(from.join("src")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "c" || x == "h") {
            fs::copy(&p, sample.join("src").join(p.file_name().unwrap())).unwrap();
        }
    }
    let build = dir.path().join("sample-build");
    cmake_build(&sample, &build);
    let out = must(
        Command::new(build.join("roundtrip"))
            .arg(build.join("libaapi_sample_plugin_c.so"))
            .env("TMPDIR", dir.path()),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));

    // The version file follows the ABI rule: another major is not found.
    let probe = dir.path().join("probe");
    fs::create_dir(&probe).unwrap();
    fs::write(
        probe.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.13)\nproject(probe NONE)\nfind_package(aapi 2.0 REQUIRED)\n",
    )
    .unwrap();
    let out = run(
        Command::new("cmake")
            .arg("-S")
            .arg(&probe)
            .arg("-B")
            .arg(probe.join("build"))
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())),
        LIMIT,
    );
    assert!(!out.status.success(), "find_package(aapi 2.0) must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&abi_version()),
        "cmake does not name the installed version:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A prefix that aapi.pc cannot carry is refused with status 2 and a message naming the
/// characters, before anything is written: pkg-config's `--cflags` output is split at spaces by
/// the commands that use it (`cc $(pkg-config --cflags aapi)`, make recipes), pkg-config itself
/// drops or backslash-escapes quotes, shell characters and non-ASCII bytes, and a ':' splits
/// PKG_CONFIG_PATH. A prefix of the characters left gives an aapi.pc that builds the skeleton.
#[test]
fn a_prefix_that_pkg_config_cannot_carry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, named) in [
        ("with space", "space"),
        ("tab\there", "tab"),
        ("it's", "'''"),
        ("say \"x\"", "'\"'"),
        ("a$b", "'$'"),
        ("a#b", "'#'"),
        ("a(b)", "'('"),
        ("a;b", "';'"),
        ("50%", "'%'"),
        ("a*b", "'*'"),
        ("a:b", "':'"),
        ("josé", "non-ASCII"),
        ("été à b", "space, non-ASCII"),
    ] {
        let prefix = dir.path().join(name);
        let out = run(
            Command::new(repo().join("scripts/install-sdk"))
                .arg("--prefix")
                .arg(&prefix),
            LIMIT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {err}");
        assert!(
            err.contains("install-sdk: PREFIX") && err.contains(named) && err.contains("aapi.pc"),
            "{name:?}: {err}"
        );
        assert!(!prefix.exists(), "{name:?}: something was installed");
    }
    // The PREFIX variable is held to the same rule.
    let prefix = dir.path().join("env prefix");
    let out = run(
        Command::new(repo().join("scripts/install-sdk")).env("PREFIX", &prefix),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", report(&out));
    assert!(!prefix.exists());

    let prefix = dir.path().join("v1.0+build@a,b=c~d_e-f");
    install(&prefix);
    let pc_path = prefix.join("share/pkgconfig");
    let cflags = must(
        Command::new("pkg-config")
            .args(["--cflags", "aapi"])
            .env("PKG_CONFIG_PATH", &pc_path),
    );
    assert_eq!(
        String::from_utf8_lossy(&cflags.stdout).trim(),
        format!("-I{}", prefix.join("include").display())
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    must(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/c-skeleton"))
            .arg(format!("O={}", out.display()))
            .env("PKG_CONFIG_PATH", &pc_path),
    );
    check_skeleton(&out.join("libmy_plugin.so"));
}

/// Without the SDK where pkg-config finds it, the skeleton's Makefile stops with a message that
/// says so and how to fix it, before the compiler runs.
#[test]
fn the_skeleton_makefile_says_when_the_sdk_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-pkgconfig");
    fs::create_dir(&nowhere).unwrap();
    let out = run(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/c-skeleton"))
            .arg(format!("O={}", dir.path().display()))
            .env("PKG_CONFIG_PATH", &nowhere)
            .env("PKG_CONFIG_LIBDIR", &nowhere),
        LIMIT,
    );
    assert!(!out.status.success(), "{}", report(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("aapi.h not found; pkg-config knows no aapi package")
            && err.contains("scripts/install-sdk")
            && err.contains("PKG_CONFIG_PATH=<prefix>/share/pkgconfig"),
        "{}",
        report(&out)
    );
    assert!(!err.contains("fatal error"), "{}", report(&out));
    assert!(!dir.path().join("libmy_plugin.so").exists());
}

/// The pkg-config commands of docs/guide-c.md §1 print what the guide says they do: the
/// version, and the `-I` flag of the installed header.
#[test]
fn the_guides_pkg_config_commands_print_the_flag_and_the_version() {
    let guide = fs::read_to_string(repo().join("docs/guide-c.md")).unwrap();
    let at = guide
        .find("For a prefix outside the default search paths")
        .expect("guide-c §1 shows the pkg-config commands");
    let block = &guide[at..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("pkg-config "))
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert!(!commands.is_empty(), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    install(&prefix);
    let mut printed = String::new();
    for c in commands {
        let out = must(
            Command::new("sh")
                .args(["-ec", c])
                .env("PKG_CONFIG_PATH", prefix.join("share/pkgconfig")),
        );
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(
        printed
            .lines()
            .any(|l| l.trim() == format!("-I{}", prefix.join("include").display())),
        "{printed}"
    );
    assert!(
        printed.lines().any(|l| l.trim() == abi_version()),
        "{printed}"
    );
}
