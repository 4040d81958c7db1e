//! Helpers shared by the tests: compile the C sample and its driver with the system compiler,
//! run programs with a deadline.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The crate's directory (sample-plugin/c).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding aapi.h.
pub fn include_dir() -> PathBuf {
    crate_dir().join("../../include")
}

/// The C sources of the plugin (every src/*.c).
pub fn plugin_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("src"))
        .expect("src/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    v.sort();
    assert!(v.len() >= 8, "plugin sources not found: {v:?}");
    v
}

/// The C compiler: $CC, else `cc`.
pub fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

/// The flags every build of the sample uses (as build.rs, the Makefile and CMakeLists.txt).
pub const STRICT: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pthread", "-g"];

/// Sanitizer flags of the ASan/UBSan build.
pub const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
];

/// Run `cmd` to completion, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = run(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compile the plugin into `out` with `extra` flags.
pub fn build_plugin(out: &Path, extra: &[&str]) -> PathBuf {
    let so = out.join("libaapi_sample_plugin_c.so");
    let mut cmd = Command::new(cc());
    cmd.args(STRICT)
        .args(["-O1", "-fPIC", "-fvisibility=hidden", "-shared"])
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg("-o")
        .arg(&so)
        .args(plugin_sources());
    must(&mut cmd);
    so
}

/// Compile the local driver tests/roundtrip.c into `out` with `extra` flags.
pub fn build_driver(out: &Path, extra: &[&str]) -> PathBuf {
    let exe = out.join("roundtrip");
    let mut cmd = Command::new(cc());
    cmd.args(STRICT)
        .arg("-O1")
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg("-o")
        .arg(&exe)
        .arg(crate_dir().join("tests/roundtrip.c"))
        .arg("-ldl");
    must(&mut cmd);
    exe
}

/// Run `cmd` with its output captured; kill it when it outlives `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("reader"),
        stderr: err.join().expect("reader"),
    }
}

/// Whether `tool` can be run (for a clear message instead of a spawn error).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The dynamic symbols of `lib` as (type letter, name) pairs, from `nm -D`.
pub fn dynamic_symbols(lib: &Path, which: &str) -> Vec<(String, String)> {
    let out = must(Command::new("nm").args(["-D", which]).arg(lib));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, t, name] | [t, name] => Some((t.to_string(), name.to_string())),
                _ => None,
            }
        })
        .collect()
}
