//! The C++ example's files, copied out of the repository as docs/guide-c.md §7 tells a vendor to
//! do, build with their Makefile against the installed SDK (found with pkg-config) and pass the
//! example's driver; with no SDK to be found, make stops with a message that says how to give
//! it one.

mod common;

use common::{LIMIT, must, repo, report, run};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The files guide-c §7 copies, plus the CMake file it may copy instead.
const FILES: &[&str] = &[
    "plugin.cpp",
    "driver.cpp",
    "Makefile",
    "CMakeLists.txt",
    "exports.map",
];

fn copy_example(to: &Path) {
    fs::create_dir_all(to).unwrap();
    for f in FILES {
        fs::copy(repo().join("examples/cpp-plugin").join(f), to.join(f)).unwrap();
    }
}

/// `make` in `dir` with pkg-config looking only in `pc_path` (not in the system's directories,
/// where an SDK may be installed).
fn make(dir: &Path, pc_path: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("PKG_CONFIG_PATH", pc_path)
        .env("PKG_CONFIG_LIBDIR", pc_path)
        .env_remove("AAPI_INCLUDE");
    cmd
}

#[test]
fn a_copy_of_the_cpp_example_builds_with_its_makefile_and_the_installed_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("my-cpp");
    copy_example(&copy);

    // No SDK anywhere pkg-config looks: a message, not a missing-file error about ../../include.
    let nowhere = dir.path().join("no-pkgconfig");
    fs::create_dir(&nowhere).unwrap();
    let out = run(&mut make(&copy, &nowhere, &[]), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", report(&out));
    assert!(
        err.contains("aapi.h not found")
            && err.contains("scripts/install-sdk")
            && err.contains("PKG_CONFIG_PATH")
            && err.contains("AAPI_INCLUDE"),
        "{}",
        report(&out)
    );

    // With the SDK installed and PKG_CONFIG_PATH set as guide-c §1 says: the plugin and the
    // driver build from the installed header, and every check of the driver passes.
    let prefix = dir.path().join("prefix");
    must(
        Command::new(repo().join("scripts/install-sdk"))
            .arg("--prefix")
            .arg(&prefix),
    );
    let pc_path = prefix.join("share/pkgconfig");
    let out =
        must(make(&copy, &pc_path, &["-j2", "check", "CXXFLAGS=-O1"]).env("TMPDIR", dir.path()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("-I{}", prefix.join("include").display())),
        "the build did not use the installed header:\n{}",
        report(&out)
    );
    assert!(stdout.contains("all checks passed"), "{}", report(&out));
    assert!(copy.join("libaapi_cpp_example.so").is_file());

    // AAPI_INCLUDE still wins over pkg-config.
    let given = format!("AAPI_INCLUDE={}", repo().join("include").display());
    let out = must(&mut make(&copy, &nowhere, &["-n", "-B", &given]));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("-I{}", repo().join("include").display())),
        "{}",
        report(&out)
    );
}
