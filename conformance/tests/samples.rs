//! Both sample plugins pass every check with their shared profile.

mod common;

use aapi_conformance::{Profile, Report, RunOptions, Status, WorkerProgram};
use std::path::{Path, PathBuf};
use std::process::Command;

const PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sample-plugin/conformance.toml"
);

/// The Rust sample's cdylib, built next to this test as a dev-dependency.
fn rust_sample() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let p = deps.join("libaapi_sample_plugin.so");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Every check passed; the keepalive cadence alone may be skipped or warn, since it depends on
/// how long the long call happens to take on this machine.
fn assert_passes(r: &Report, name: &str) {
    let bad: Vec<String> = r
        .checks
        .iter()
        .filter(|c| match &c.status {
            Status::Passed => false,
            Status::Skipped(_) | Status::Warning => c.id != "time.keepalive-cadence",
            _ => true,
        })
        .map(|c| format!("{} {:?} {:?}", c.id, c.status, c.findings))
        .collect();
    assert!(bad.is_empty(), "{name}: {bad:#?}\n{}", r.to_text());
    assert_eq!(r.exit_code, 0);
    assert!(r.conformant);
}

#[test]
fn rust_sample_passes_every_check() {
    let (profile, dir) = Profile::from_path(Path::new(PROFILE)).unwrap();
    let mut opts = RunOptions::new(rust_sample());
    opts.profile = profile;
    opts.profile_dir = dir;
    opts.worker = WorkerProgram::Program(env!("CARGO_BIN_EXE_aapi-conformance").into(), vec![]);
    let scratch = common::fast_tempdir();
    opts.scratch = Some(scratch.path().join("run"));
    let r = aapi_conformance::run(opts).unwrap();
    assert_passes(&r, "files-rust");
    assert!(
        r.check("disc.postprocess")
            .is_some_and(|c| c.status == Status::Passed)
    );
}

/// The watched directories are where the profile says, `{job}` included: a sample plugin that
/// creates its snapshot directory inside the watched `{job}` leaves that directory behind after
/// postprocess (it removes only the snapshot), and `disc.postprocess` must see it.
#[test]
fn watched_job_directories_are_really_watched() {
    let (mut profile, dir) = Profile::from_path(Path::new(PROFILE)).unwrap();
    profile.data.watch_dirs = vec!["{job}".into()];
    let mut opts = RunOptions::new(rust_sample());
    opts.profile = profile;
    opts.profile_dir = dir;
    opts.only = vec!["disc.postprocess".into()];
    opts.worker = WorkerProgram::Program(env!("CARGO_BIN_EXE_aapi-conformance").into(), vec![]);
    let scratch = common::fast_tempdir();
    opts.scratch = Some(scratch.path().join("run"));
    let r = aapi_conformance::run(opts).unwrap();
    let c = r.check("disc.postprocess").unwrap();
    assert_eq!(c.status, Status::Failed, "{}", r.to_text());
    assert!(
        c.findings
            .iter()
            .any(|f| f.contains("still hold") && f.contains("snapshots")),
        "{:?}",
        c.findings
    );
}

#[test]
fn c_sample_passes_every_check_through_the_cli() {
    let dir = common::fast_tempdir();
    let (json, junit) = (dir.path().join("c.json"), dir.path().join("c.xml"));
    let out = Command::new(env!("CARGO_BIN_EXE_aapi-conformance"))
        .arg("run")
        .arg(aapi_sample_plugin_c::PLUGIN_PATH)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--keep-scratch")
        .arg(dir.path().join("scratch"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for c in report["checks"].as_array().unwrap() {
        let ok = c["status"] == "passed" || c["id"] == "time.keepalive-cadence";
        assert!(ok, "files-c: {c}\n{text}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));
    assert!(!xml.contains("<failure"));
}
