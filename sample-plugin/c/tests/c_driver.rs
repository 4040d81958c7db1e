//! The local C driver (tests/roundtrip.c) against the C sample: a backup/restore round trip with
//! its checks of the contract, run plain, under AddressSanitizer + UndefinedBehaviorSanitizer,
//! and under valgrind. The instrumented runs find memory errors, undefined behaviour and leaks
//! in the plugin that a plain run cannot see. One more plain run preloads tests/slow_create.c,
//! which holds up one create so that two concurrent creates record a directory after an object
//! in it, for the rollback to remove in the right order.

mod common;

use aapi_sample_plugin_c::PLUGIN_PATH;
use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn report(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn driver(exe: &Path, plugin: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(plugin).env("TMPDIR", tmp);
    cmd
}

#[test]
fn round_trip_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_driver(dir.path(), &[]);
    let out = run(
        &mut driver(&exe, Path::new(PLUGIN_PATH), dir.path()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", report(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" objects backed up"), "{}", report(&out));
    assert!(stdout.contains("all checks passed"), "{}", report(&out));
}

#[test]
fn a_rollback_removes_a_directory_recorded_after_an_object_in_it() {
    // tests/slow_create.c holds up one create between making a directory and recording it, so
    // that the driver's concurrent-restore check records the directory after an object in it.
    let dir = tempfile::tempdir().unwrap();
    let exe = build_driver(dir.path(), &[]);
    let slow = dir.path().join("slow_create.so");
    must(
        Command::new(cc())
            .args(STRICT)
            .args(["-O1", "-fPIC", "-shared", "-o"])
            .arg(&slow)
            .arg(crate_dir().join("tests/slow_create.c"))
            .arg("-ldl"),
    );
    let mut cmd = driver(&exe, Path::new(PLUGIN_PATH), dir.path());
    cmd.env("LD_PRELOAD", &slow);
    let out = run(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all checks passed"),
        "{}",
        report(&out)
    );
}

#[test]
fn round_trip_is_clean_under_address_and_undefined_behavior_sanitizers() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = build_plugin(dir.path(), SANITIZE);
    let exe = build_driver(dir.path(), SANITIZE);

    // The instrumentation must really be there: the library needs the sanitizer runtimes and
    // calls their checks.
    let elf = must(Command::new("readelf").arg("-d").arg(&plugin));
    let needed = String::from_utf8_lossy(&elf.stdout);
    assert!(
        needed.contains("libasan"),
        "libasan is not linked:\n{needed}"
    );
    assert!(
        needed.contains("libubsan"),
        "libubsan is not linked:\n{needed}"
    );
    let undefined = dynamic_symbols(&plugin, "--undefined-only");
    assert!(
        undefined
            .iter()
            .any(|(_, n)| n.starts_with("__asan_report")),
        "no AddressSanitizer checks in the library"
    );
    assert!(
        undefined
            .iter()
            .any(|(_, n)| n.starts_with("__ubsan_handle")),
        "no UndefinedBehaviorSanitizer checks in the library"
    );

    let mut cmd = driver(&exe, &plugin, dir.path());
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=86")
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
    let out = run(&mut cmd, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        !stderr.contains("Sanitizer") && !stderr.contains("runtime error"),
        "{}",
        report(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all checks passed"),
        "{}",
        report(&out)
    );
}

#[test]
fn round_trip_is_clean_under_valgrind() {
    assert!(
        have("valgrind"),
        "valgrind is not installed (apt-get install valgrind; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let exe = build_driver(dir.path(), &["-O0"]);
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--show-leak-kinds=definite",
    ])
    .arg(&exe)
    .arg(PLUGIN_PATH)
    .env("TMPDIR", dir.path());
    let out = run(&mut cmd, Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", report(&out));
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors") && stderr.contains("definitely lost: 0 bytes"),
        "{}",
        report(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all checks passed"),
        "{}",
        report(&out)
    );
}
