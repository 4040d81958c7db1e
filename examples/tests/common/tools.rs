//! The aapi-conformance and aapi-validator programs of this build, for the tests that run them
//! as a user does. Included next to `mod common;` as
//! `#[path = "common/tools.rs"] mod tools;`.

use crate::common::{repo, run};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The time limit of building the tools, from nothing on a loaded machine at worst.
const BUILD_TOOLS_LIMIT: Duration = Duration::from_secs(900);

/// The aapi-conformance and aapi-validator binaries of this build (built here when a test run
/// selected only this crate; a no-op in a workspace test run).
pub fn tools() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--locked",
        "-p",
        "aapi-conformance",
        "-p",
        "aapi-validator",
    ])
    .current_dir(repo());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = run(&mut cmd, BUILD_TOOLS_LIMIT);
    assert!(
        out.status.success(),
        "building the tools failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        profile_dir.join("aapi-conformance"),
        profile_dir.join("aapi-validator"),
    )
}
