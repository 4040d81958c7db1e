//! Shared by the integration tests: the zoo plugin and how to run the suite on it.
#![allow(dead_code)]

use aapi_conformance::{Profile, Report, RunOptions, WorkerProgram};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ZOO_C: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zoo/zoo.c");
const INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../include");

/// Compile the zoo with `define` (or the complete plugin) once per test build.
pub fn build(define: Option<&str>) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo");
    std::fs::create_dir_all(&dir).unwrap();
    let name = define.unwrap_or("ZOO_COMPLETE").to_lowercase();
    let so = dir.join(format!("lib{name}.so"));
    let newest_source = [ZOO_C, &format!("{INCLUDE}/aapi.h")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .unwrap();
    let fresh = std::fs::metadata(&so)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > newest_source);
    if !fresh {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmp = dir.join(format!("lib{name}.so.{}.{n}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(cc);
        cmd.args([
            "-std=gnu11",
            "-shared",
            "-fPIC",
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
        ])
        .arg(format!("-I{INCLUDE}"))
        .arg(ZOO_C)
        .arg("-o")
        .arg(&tmp)
        .arg("-lpthread");
        match define {
            Some(d) => {
                cmd.arg(format!("-D{d}"));
            }
            None => {
                cmd.arg("-Werror");
            }
        }
        let out = cmd.output().expect("the system C compiler runs");
        assert!(
            out.status.success(),
            "compiling the zoo with {define:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &so).unwrap();
    }
    so
}

/// The zoo's profile: a small tree, a discovery slowed down per entry as the long call, a
/// credential the plugin fetches.
pub fn profile() -> (Profile, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo-profile");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zoo.toml");
    // Tests run in parallel and each writes these files: write them whole and rename them into
    // place, so that no test reads a file another one is halfway through writing.
    write_atomic(
        &path,
        r#"
call_budget_ms = 2000
credentials_file = "zoo-credentials.toml"
[files]
big_file_mib = 2
wide_files = 20
depth = 4
timing_files = 30
[timing]
budget_ms = 1000
selections = ["{tree}/timing"]
properties = { "zoo.walk_delay_us" = "15000" }
"#,
    );
    write_atomic(
        &dir.join("zoo-credentials.toml"),
        "\"zoo.token\" = \"zoo-secret-token-41\"\n",
    );
    Profile::from_path(&path).unwrap()
}

fn write_atomic(path: &Path, text: &str) {
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap()).unwrap();
    std::io::Write::write_all(&mut tmp, text.as_bytes()).unwrap();
    tmp.persist(path).unwrap();
}

pub fn run(define: Option<&str>) -> Report {
    run_with(define, |_| {})
}

/// A directory on a memory file system when there is one.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap()
}

/// Run the suite on the zoo built with `define`, after `adjust` changed the options.
pub fn run_with(define: Option<&str>, adjust: impl FnOnce(&mut RunOptions)) -> Report {
    let plugin = build(define);
    let (profile, dir) = profile();
    let mut opts = RunOptions::new(plugin);
    opts.profile = profile;
    opts.profile_dir = dir;
    opts.jobs = 2;
    opts.worker = WorkerProgram::Program(env!("CARGO_BIN_EXE_aapi-conformance").into(), vec![]);
    // A memory file system keeps 60-odd suites quick; the scratch goes away with `scratch`.
    let scratch = fast_tempdir();
    opts.scratch = Some(scratch.path().join("run"));
    adjust(&mut opts);
    aapi_conformance::run(opts).expect("the runner runs")
}
