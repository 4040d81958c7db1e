//! docs/guide-rust.md stays true: its plugin listing is exactly examples/guide_plugin.rs, that
//! plugin, built as a cdylib, loads and passes a backup and restore round trip, and the
//! conformance kit, run with the guide's profile, gives the result the guide states.

mod common;

use aapi_conformance::{Profile, Status, WorkerProgram};
use aapi_host::client::{Plugin, SessionDef};
use aapi_host::jobs::{BackupOptions, backup_in_process, restore_in_process};
use aapi_host::tasks::RestoreTask;
use aapi_sdk::abi::*;
use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
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

/// Back up `files` (name, data) of `dir`/src with the guide's plugin at `lib`, then restore them
/// under `dir`/alt: the restored directory, and the result of the restore.
fn back_up_and_restore(
    plugin: &Plugin,
    lib: &Path,
    dir: &Path,
    files: &[(&str, &[u8])],
    before_restore: impl FnOnce(&Path),
) -> (PathBuf, Result<(), String>) {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    for (name, data) in files {
        fs::write(src.join(name), data).unwrap();
    }
    let store = dir.join("store");
    let o = BackupOptions {
        store: store.clone(),
        policy: "guide".into(),
        schedule: "full".into(),
        plugin: lib.to_path_buf(),
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        selections: files
            .iter()
            .map(|(n, _)| src.join(n).into_os_string().into_encoded_bytes())
            .collect(),
        hosts: vec!["h1".into()],
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let m = backup_in_process(plugin, &o).unwrap_or_else(|e| panic!("{e}"));
    let alt = dir.join("alt");
    let target = under(&alt, &src);
    fs::create_dir_all(&target).unwrap();
    before_restore(&target);
    let task = RestoreTask {
        store,
        image: m.image,
        plugin: lib.to_path_buf(),
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        host: "h1".into(),
        paths: vec![],
        alt_root: Some(alt),
        overwrite: false,
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let r = restore_in_process(plugin, &task).map(drop);
    (target, r.map_err(|e| e.to_string()))
}

/// The guide's plugin writes each restored file into a temporary file of its own: an entry
/// already there under any name it may pick, a file or a symbolic link to a file elsewhere, is
/// neither written, nor followed, nor renamed into place.
#[test]
fn the_guide_plugin_leaves_what_is_beside_a_restored_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libguide_plugin.so");
    fs::copy(example_library(), &lib).unwrap();
    let plugin = Plugin::load(&lib, Arc::new(Hooks::default())).unwrap_or_else(|e| panic!("{e}"));
    assert!(plugin.claim("flatfiles").unwrap());
    let victim = dir.path().join("victim");
    fs::write(&victim, "outside the restore").unwrap();
    // Entries with the names of the temporary files the plugin makes first, as a fixed name
    // would be and as a name with this process and a counter is: a user's file for one object,
    // symbolic links out of the restore for the other.
    let pid = std::process::id();
    let planted = |name: &str| {
        let mut names = vec![format!(".{name}.part")];
        names.extend((0..4).map(|n| format!(".{name}.{pid}-{n}.part")));
        names
    };
    let files: [(&str, &[u8]); 2] = [("a.txt", b"restored a\n"), ("b.txt", b"restored b\n")];
    let (target, result) = back_up_and_restore(&plugin, &lib, dir.path(), &files, |target| {
        for name in planted("a.txt") {
            fs::write(target.join(name), "the user's own").unwrap();
        }
        for name in planted("b.txt") {
            std::os::unix::fs::symlink(&victim, target.join(name)).unwrap();
        }
    });
    result.unwrap_or_else(|e| panic!("{e}"));
    for (name, data) in files {
        let md = fs::symlink_metadata(target.join(name)).unwrap();
        assert!(md.is_file(), "{name} is a regular file");
        assert_eq!(fs::read(target.join(name)).unwrap(), data, "{name}");
    }
    for name in planted("a.txt") {
        assert_eq!(
            fs::read_to_string(target.join(&name)).unwrap(),
            "the user's own",
            "{name}"
        );
    }
    for name in planted("b.txt") {
        assert_eq!(fs::read_link(target.join(&name)).unwrap(), victim, "{name}");
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "outside the restore");
    let mut left: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected: Vec<String> = planted("a.txt")
        .into_iter()
        .chain(planted("b.txt"))
        .collect();
    expected.extend(["a.txt".into(), "b.txt".into()]);
    expected.sort();
    assert_eq!(left, expected, "no temporary file is left behind");
    plugin.terminate().unwrap();
}

/// A failed restore removes the files it created and keeps the restored version of one it
/// replaced: removing that too would lose both the old and the new data.
#[test]
fn a_failed_restore_of_the_guide_plugin_loses_no_file_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libguide_plugin.so");
    fs::copy(example_library(), &lib).unwrap();
    let plugin = Plugin::load(&lib, Arc::new(Hooks::default())).unwrap_or_else(|e| panic!("{e}"));
    assert!(plugin.claim("flatfiles").unwrap());
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("old.txt"), "on disk before").unwrap();
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(root.as_os_str().as_bytes(), 16, 2)
        .unwrap();
    for (name, flags) in [("old.txt", AAPI_CREATE_OVERWRITE), ("new.txt", 0)] {
        let prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_FILE,
            valid: AAPI_PROP_MODE,
            mode: 0o600,
            ..Default::default()
        };
        let path = root.join(name);
        let mut o = s
            .create_object(path.as_os_str().as_bytes(), &prop, flags)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        o.write(b"restored").unwrap();
        o.close().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    s.restore_postprocess(AAPI_EIO).unwrap();
    s.close().unwrap();
    assert_eq!(fs::read(root.join("old.txt")).unwrap(), b"restored");
    assert!(!root.join("new.txt").exists(), "a created file is left");
    plugin.terminate().unwrap();
}

/// Set in the child of [`the_guide_plugin_restores_files_their_owner_cannot_read`]: the
/// library to load and the directory to restore into.
const UNREADABLE_LIB: &str = "AAPI_GUIDE_TEST_LIB";
const UNREADABLE_ROOT: &str = "AAPI_GUIDE_TEST_ROOT";

/// A file restored with a mode that denies its owner access.
struct Unreadable {
    name: &'static str,
    data: &'static [u8],
    mode: u32,
    /// (seconds, nanoseconds)
    atime: (i64, u32),
    mtime: (i64, u32),
}

const UNREADABLE: [Unreadable; 2] = [
    Unreadable {
        name: "write-only",
        data: b"0200\n",
        mode: 0o200,
        atime: (1_600_000_000, 1),
        mtime: (1_500_000_000, 123_456_789),
    },
    Unreadable {
        name: "no-access",
        data: b"0000\n",
        mode: 0o000,
        atime: (1_600_000_002, 3),
        mtime: (1_400_000_000, 4),
    },
];

/// Restore the [`UNREADABLE`] files under `root`, as the framework does (create, write, close,
/// properties by name, times, postprocess), with the library at `lib`.
fn restore_unreadable(lib: &Path, root: &Path) {
    let plugin = Plugin::load(lib, Arc::new(Hooks::default())).unwrap_or_else(|e| panic!("{e}"));
    assert!(plugin.claim("flatfiles").unwrap());
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(root.as_os_str().as_bytes(), 16, 2)
        .unwrap();
    let ts = |(sec, nsec): (i64, u32)| aapi_time_t {
        sec,
        nsec,
        reserved: 0,
    };
    for f in UNREADABLE {
        let (name, atime, mtime) = (f.name, f.atime, f.mtime);
        let path = root.join("sub").join(name);
        let path = path.as_os_str().as_bytes();
        let prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_FILE,
            valid: AAPI_PROP_MODE | AAPI_PROP_SIZE | AAPI_PROP_ATIME | AAPI_PROP_MTIME,
            mode: f.mode,
            size: f.data.len() as u64,
            atime: ts(atime),
            mtime: ts(mtime),
            ..Default::default()
        };
        let mut o = s.create_object(path, &prop, 0).unwrap();
        o.write(f.data).unwrap();
        o.flush().unwrap();
        o.close().unwrap();
        let now = s.prop_byname(path).unwrap();
        assert_eq!(
            (now.obj_type, now.size),
            (AAPI_OBJ_FILE, prop.size),
            "{name}"
        );
        s.set_utimes(path, Some(ts(atime)), Some(ts(mtime)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    s.restore_postprocess(AAPI_EOK).unwrap();
    s.close().unwrap();
    plugin.terminate().unwrap();
}

/// A user without root's powers restores files whose mode denies their owner access (0200,
/// 0000) with the guide's plugin: as `nobody` (uid and gid 65534, no supplementary groups) when
/// the tests run as root, from copies of this test and of the library that every user can read;
/// else as the tests' own user.
#[test]
fn the_guide_plugin_restores_files_their_owner_cannot_read() {
    const NAME: &str = "the_guide_plugin_restores_files_their_owner_cannot_read";
    if let (Some(lib), Some(root)) = (
        std::env::var_os(UNREADABLE_LIB),
        std::env::var_os(UNREADABLE_ROOT),
    ) {
        restore_unreadable(Path::new(&lib), Path::new(&root));
        return;
    }
    let w = tempfile::tempdir().unwrap();
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = w.path().join(name);
        fs::copy(from, &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let lib = copy(&example_library(), "libguide_plugin.so");
    let root = w.path().join("alt");
    fs::create_dir(&root).unwrap();
    let uid = if is_root() {
        std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
        let exe = copy(&std::env::current_exe().unwrap(), "guide");
        let child = || {
            let mut cmd = Command::new(&exe);
            cmd.args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(UNREADABLE_LIB, &lib)
                .env(UNREADABLE_ROOT, &root);
            // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and
            // exec; the null pointer goes with a count of 0.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(65534) != 0
                        || libc::setuid(65534) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd
        };
        if let Err(e) = child().arg("--list").output() {
            eprintln!(
                "skipped: cannot run {} as nobody ({e}); set TMPDIR to a directory every user can reach",
                exe.display()
            );
            return;
        }
        let out = child().output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the restore as nobody failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        65534
    } else {
        restore_unreadable(&lib, &root);
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    };
    let dir = root.join("sub");
    for f in UNREADABLE {
        let name = f.name;
        let path = dir.join(name);
        let md = fs::symlink_metadata(&path).unwrap();
        assert!(md.is_file(), "{name}");
        assert_eq!((md.mode() & 0o7777, md.uid()), (f.mode, uid), "{name}");
        assert_eq!(
            (
                (md.atime(), md.atime_nsec() as u32),
                (md.mtime(), md.mtime_nsec() as u32)
            ),
            (f.atime, f.mtime),
            "{name}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), f.data, "{name}");
    }
    let mut left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["no-access", "write-only"],
        "no temporary file is left behind"
    );
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
