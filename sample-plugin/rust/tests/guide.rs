//! docs/guide-rust.md stays true: its plugin listing is exactly examples/guide_plugin.rs, that
//! plugin, built as a cdylib, loads and passes a backup and restore round trip, and the
//! conformance kit, run with the guide's profile, gives the result the guide states.

mod common;

use aapi_conformance::{Profile, Status, WorkerProgram};
use aapi_host::client::Plugin;
use aapi_host::jobs::{BackupOptions, backup_in_process, restore_in_process};
use aapi_host::tasks::RestoreTask;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_guide_lists_the_example_exactly() {
    let guide = fs::read_to_string(crate_dir().join("../../docs/guide-rust.md")).unwrap();
    let source = fs::read_to_string(crate_dir().join("examples/guide_plugin.rs")).unwrap();
    assert!(
        guide.contains(&format!("```rust\n{source}```")),
        "docs/guide-rust.md must show examples/guide_plugin.rs verbatim in one rust block"
    );
}

/// The example library, in target/<profile>/examples. Cargo builds examples only when the whole
/// test suite of the crate runs, so a run of this test alone (`cargo test --test guide`) builds it
/// here, once, with the cargo, profile and target directory of this test.
fn example_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // <target dir>[/<target triple>]/<profile>/deps/<this test>
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let lib = profile_dir.join("examples/libguide_plugin.so");
        if !lib.is_file() {
            build_example(profile_dir);
        }
        assert!(
            lib.is_file(),
            "{} is missing after building the example",
            lib.display()
        );
        lib
    })
    .clone()
}

/// `cargo build --example guide_plugin` into `profile_dir`.
fn build_example(profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile in {}", profile_dir.display()),
    };
    // Cargo marks the root of a target directory with CACHEDIR.TAG; a directory without it
    // between the root and the profile is the target triple of a --target build.
    let above = profile_dir.parent().unwrap();
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").is_file() {
        (above, None)
    } else {
        (above.parent().unwrap(), above.file_name())
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--locked", "-p", env!("CARGO_PKG_NAME")])
        .args(["--example", "guide_plugin", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(crate_dir());
    if let Some(t) = triple {
        cmd.arg("--target").arg(t);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "building the guide's example failed ({}: {cmd:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_guide_plugin_loads_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libguide_plugin.so");
    fs::copy(example_library(), &lib).unwrap();
    let hooks = Arc::new(Hooks::default());
    let plugin = Plugin::load(&lib, hooks.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.info().name, "flatfiles");
    assert!(plugin.claim("flatfiles").unwrap());

    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let files = [
        ("empty", Vec::new(), 0o600),
        ("one MiB.bin", noise(1 << 20, 5), 0o644),
        ("notes.txt", b"hello".to_vec(), 0o640),
    ];
    for (i, (name, data, mode)) in files.iter().enumerate() {
        let path = src.join(name);
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        set_times(&path, 1_500_000_000 + i as i64, 123_456_789);
    }
    let store = dir.path().join("store");
    let o = BackupOptions {
        store: store.clone(),
        policy: "guide".into(),
        schedule: "full".into(),
        plugin: lib.clone(),
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        selections: files
            .iter()
            .map(|(n, _, _)| src.join(n).into_os_string().into_encoded_bytes())
            .collect(),
        hosts: vec!["h1".into(), "h2".into()],
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let m = backup_in_process(&plugin, &o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((m.objects, m.streams.len()), (3, 2));
    assert_eq!(hooks.logged("flatfiles: 3 files").len(), 1);

    let alt = dir.path().join("alt");
    fs::create_dir(&alt).unwrap();
    let task = RestoreTask {
        store,
        image: m.image.clone(),
        plugin: lib,
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        host: "h1".into(),
        paths: vec![],
        alt_root: Some(alt.clone()),
        overwrite: false,
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let r = restore_in_process(&plugin, &task).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.objects, 3);
    for (name, data, mode) in &files {
        let (orig, back) = (src.join(name), under(&alt, &src).join(name));
        assert_eq!(&fs::read(&back).unwrap(), data, "{name}");
        let (a, b) = (fs::metadata(&orig).unwrap(), fs::metadata(&back).unwrap());
        assert_eq!(b.mode() & 0o7777, *mode, "{name}");
        assert_eq!(
            (b.mtime(), b.mtime_nsec()),
            (a.mtime(), a.mtime_nsec()),
            "{name}"
        );
    }
    // Again without overwrite: refused, and what the first restore made is kept.
    let err = restore_in_process(&plugin, &task).unwrap_err();
    assert!(err.message.contains("AAPI_EEXIST"), "{err}");
    assert_eq!(
        fs::read(under(&alt, &src).join("notes.txt")).unwrap(),
        b"hello"
    );
    plugin.terminate().unwrap();
}

/// The checks the guide's §7 says fail (MUST), warn (SHOULD), are blocked and are skipped.
const FAILED: &[&str] = &[
    "rc.unknown-path",
    "rst.preprocess",
    "rst.exists",
    "rst.failed-restore",
    "time.cancel",
];
const WARNINGS: &[&str] = &["rc.documented-codes"];
const BLOCKED: &[&str] = &["rst.failed-restore-keeps"];
const SKIPPED: &[&str] = &[
    "obj.changed",
    "disc.postprocess",
    "disc.incremental",
    "data.on-disk",
    "rst.confined",
    "rst.confined-props",
    "time.keepalive-cadence",
    "thr.concurrent-read",
    "thr.concurrent-restore",
    "sec.secrets",
];

/// The fenced block of `lang` that follows the first occurrence of `after` in `text`.
fn block_after<'a>(text: &'a str, after: &str, lang: &str) -> &'a str {
    let rest = &text[text.find(after).unwrap_or_else(|| panic!("no {after:?}"))..];
    let open = format!("```{lang}\n");
    let body = &rest[rest.find(&open).unwrap() + open.len()..];
    &body[..body.find("```").unwrap()]
}

#[test]
fn the_guide_conformance_result_holds() {
    aapi_conformance::serve_if_requested();
    let guide = fs::read_to_string(crate_dir().join("../../docs/guide-rust.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("flatfiles.toml");
    fs::write(
        &profile,
        block_after(&guide, "Save this as `flatfiles.toml`", "toml"),
    )
    .unwrap();
    let (profile, profile_dir) = Profile::from_path(&profile).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = aapi_conformance::RunOptions::new(example_library());
    opts.profile = profile;
    opts.profile_dir = profile_dir;
    opts.worker = WorkerProgram::CurrentTest("the_guide_conformance_result_holds".into());
    let r = aapi_conformance::run(opts).unwrap_or_else(|e| panic!("{e}"));
    let text = r.to_text();

    let ids = |keep: &dyn Fn(&Status) -> bool| -> Vec<&str> {
        let mut v: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| keep(&c.status))
            .map(|c| c.id.as_str())
            .collect();
        v.sort_unstable();
        v
    };
    let sorted = |ids: &[&'static str]| {
        let mut v = ids.to_vec();
        v.sort_unstable();
        v
    };
    assert_eq!(ids(&|s| *s == Status::Failed), sorted(FAILED), "{text}");
    assert_eq!(
        ids(&|s| matches!(s, Status::Blocked(_))),
        sorted(BLOCKED),
        "{text}"
    );
    assert_eq!(
        ids(&|s| matches!(s, Status::Error(_) | Status::Waived(_))),
        Vec::<&str>::new(),
        "{text}"
    );
    // The keepalive cadence is skipped only because the long call is short; on a machine slow
    // enough to make it long, it is judged instead (and may warn).
    let cadence = "time.keepalive-cadence";
    let skipped = ids(&|s| matches!(s, Status::Skipped(_)));
    let cadence_judged = !skipped.contains(&cadence);
    let mut warned = ids(&|s| *s == Status::Warning);
    warned.retain(|id| *id != cadence);
    assert_eq!(warned, sorted(WARNINGS), "{text}");
    let mut expected_skips = sorted(SKIPPED);
    if cadence_judged {
        expected_skips.retain(|id| *id != cadence);
    }
    assert_eq!(skipped, expected_skips, "{text}");
    assert_eq!((r.exit_code, r.conformant), (1, false), "{text}");

    // The guide names each of these checks and states the summary line of this run.
    for id in FAILED.iter().chain(WARNINGS).chain(BLOCKED).chain(SKIPPED) {
        assert!(guide.contains(&format!("`{id}`")), "the guide omits {id}");
    }
    let stated = block_after(&guide, "the run ends with", "text").trim();
    let s = &r.summary;
    let (mut passed, mut warnings, mut skips) = (s.passed, s.warnings, s.skipped);
    if cadence_judged {
        match r.check(cadence).unwrap().status {
            Status::Warning => warnings -= 1,
            _ => passed -= 1,
        }
        skips += 1;
    }
    let actual = format!(
        "{} checks: {passed} passed, {} failed, {warnings} warnings, {skips} skipped, {} waived, {} blocked, {} errors",
        r.checks.len(),
        s.failed,
        s.waived,
        s.blocked,
        s.errors
    );
    assert_eq!(stated, actual, "{text}");
}
