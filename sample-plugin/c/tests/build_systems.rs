//! The two ways C users build the sample, `make` and CMake, produce a plugin with exactly the
//! ABI's exports that passes the local driver. Both compile with -Wall -Wextra -Werror.

mod common;

use aapi_sdk::version::{ENTRY_POINTS, MARKER_SYMBOL};
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn check_plugin(so: &Path, driver: &Path, tmp: &Path) {
    let names: BTreeSet<String> = dynamic_symbols(so, "--defined-only")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let want: BTreeSet<String> = ENTRY_POINTS
        .iter()
        .chain(&[MARKER_SYMBOL])
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want, "{} exports", so.display());
    let out = run(
        Command::new(driver).arg(so).env("TMPDIR", tmp),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{} failed the round trip:\n{}\n{}",
        so.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn make_builds_the_plugin_and_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    must(
        Command::new("make")
            .arg("-C")
            .arg(crate_dir())
            .arg(format!("O={}", dir.path().display()))
            .arg("all")
            .arg("roundtrip"),
    );
    check_plugin(
        &dir.path().join("libaapi_sample_plugin_c.so"),
        &dir.path().join("roundtrip"),
        dir.path(),
    );
}

#[test]
fn cmake_builds_the_plugin_and_the_driver() {
    assert!(
        have("cmake"),
        "cmake is not installed (apt-get install cmake; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    must(
        Command::new("cmake")
            .arg("-S")
            .arg(crate_dir())
            .arg("-B")
            .arg(&build),
    );
    must(Command::new("cmake").arg("--build").arg(&build));
    check_plugin(
        &build.join("libaapi_sample_plugin_c.so"),
        &build.join("roundtrip"),
        dir.path(),
    );
}
