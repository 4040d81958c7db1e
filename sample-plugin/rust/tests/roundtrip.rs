//! The built `libaapi_sample_plugin.so` driven by the reference framework (aapi-host, in
//! process): real backups and restores of a generated tree, compared byte for byte with modes
//! and mtimes, plus incrementals, snapshots, the overwrite policy, space checks, rollback,
//! cancellation, torn reads and the codes for bad input of sample-plugin/README.md.

mod common;

use aapi_host::client::{DiscoveryArgs, Plugin, SessionDef};
use aapi_host::jobs::{BackupOptions, JobError, backup_in_process, restore_in_process};
use aapi_host::store::Manifest;
use aapi_host::tasks::{RestoreReport, RestoreTask};
use aapi_sdk::abi::*;
use aapi_sdk::workload::WorkloadFile;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const BUDGET_MS: u32 = 30_000;

fn backup(
    plugin: &Plugin,
    lib: &Path,
    store: &Path,
    selection: &Path,
    schedule: &str,
    hosts: &[&str],
    properties: &[(&str, &str)],
) -> Manifest {
    let o = BackupOptions {
        store: store.to_path_buf(),
        policy: "tests".into(),
        schedule: schedule.into(),
        plugin: lib.to_path_buf(),
        workload_type: "files".into(),
        server: "localhost".into(),
        selections: vec![selection.to_str().unwrap().into()],
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        properties: properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        call_budget_ms: BUDGET_MS,
        credentials: None,
    };
    let m = backup_in_process(plugin, &o).unwrap_or_else(|e| panic!("backup failed: {e}"));
    assert!(m.failures.is_empty(), "{:?}", m.failures);
    m
}

fn restore(
    plugin: &Plugin,
    lib: &Path,
    store: &Path,
    image: &str,
    alt: Option<&Path>,
    overwrite: bool,
    properties: &[(&str, &str)],
) -> Result<RestoreReport, JobError> {
    let task = RestoreTask {
        store: store.to_path_buf(),
        image: image.into(),
        plugin: lib.to_path_buf(),
        workload_type: "files".into(),
        server: "localhost".into(),
        host: "h1".into(),
        paths: vec![],
        alt_root: alt.map(Path::to_path_buf),
        overwrite,
        properties: properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        call_budget_ms: BUDGET_MS,
        credentials: None,
    };
    restore_in_process(plugin, &task)
}

fn session(op: u32, props: &[(&str, &str)]) -> SessionDef {
    let mut s = SessionDef::new(op);
    s.properties = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

/// The tag that ends the ids of the snapshots made in `dir` (sample-plugin/README.md, §Snapshots):
/// 16 lowercase hex digits of the 64-bit FNV-1a hash of its path.
fn dir_tag(dir: &Path) -> String {
    let hash = b(dir).iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn code_of<T: std::fmt::Debug>(r: Result<T, aapi_host::client::PluginError>) -> i32 {
    r.expect_err("the call should fail")
        .code()
        .expect("a plugin code")
}

/// Assert that a call was refused with `AAPI_EINVAL` and a message naming `path`.
fn refused_naming<T: std::fmt::Debug>(r: Result<T, aapi_host::client::PluginError>, path: &Path) {
    let e = r.expect_err("the call should fail");
    assert_eq!(e.code(), Some(AAPI_EINVAL), "{e}");
    assert!(
        e.to_string().contains(path.to_str().unwrap()),
        "the message names the path: {e}"
    );
}

#[test]
fn the_library_exports_the_abi_and_says_who_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    fs::create_dir(&first).unwrap();
    let lib = aapi_host::loader::PluginLibrary::open(&private_library(&first))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lib.marker(), aapi_sdk::abi::aapi_abi_marker_t::CURRENT);
    let (plugin, _, _) = load(dir.path());
    let info = plugin.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("files-rust", "0.1.0")
    );
    assert_eq!(info.vendor, "aapi project");
    assert_eq!(info.workload_types, ["files"]);
    assert_eq!(
        info.capabilities,
        AAPI_CAP_CONCURRENT_OBJECTS
            | AAPI_CAP_RESTORE
            | AAPI_CAP_ALTERNATE_RESTORE
            | AAPI_CAP_SNAPSHOT
    );
    assert_eq!(info.max_concurrent_objects, 8);
    assert!(!plugin.claim("Files").unwrap());
    assert!(!plugin.claim("file").unwrap());
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    assert_eq!(
        s.server_prop().unwrap(),
        AAPI_SRVC_FULL_BACKUP_SUPPORT
            | AAPI_SRVC_INCR_BACKUP_SUPPORT
            | AAPI_SRVC_CINC_BACKUP_SUPPORT
    );
    s.close().unwrap();
    plugin.terminate().unwrap();
}

#[test]
fn full_backup_restores_byte_for_byte_under_an_alternate_root() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, hooks, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let want = walk(&tree);
    let store = dir.path().join("store");
    let m = backup(
        &plugin,
        &lib,
        &store,
        &tree,
        "full",
        &["h1", "h2", "h3"],
        &[],
    );
    assert_eq!(m.streams.len(), 3);
    assert_eq!(m.objects, want.len() as u64);
    let data: u64 = want.values().map(|e| e.data.len() as u64).sum();
    assert_eq!(m.bytes, data, "every data byte stored once");
    for h in ["h1", "h2", "h3"] {
        assert_eq!(
            hooks.logged(&format!("files-rust: backup host {h}:")).len(),
            1,
            "one INFO line per host"
        );
    }
    // Byte balance: the big file alone on one host, the rest split over the other two.
    let big = 3 * 1024 * 1024 + 7;
    assert!(
        m.streams.iter().filter(|&&s| s >= big).count() == 1,
        "{:?}",
        m.streams
    );
    let alt = dir.path().join("alt");
    fs::create_dir(&alt).unwrap();
    let r = restore(&plugin, &lib, &store, &m.image, Some(&alt), false, &[]).unwrap();
    assert_eq!(r.objects, m.objects);
    assert_same(&walk(&under(&alt, &tree)), &want);
    assert!(
        leftovers(&alt, ".aapi-").is_empty(),
        "{:?}",
        leftovers(&alt, ".aapi-")
    );
    // The source is untouched by its own backup.
    assert_same(&walk(&tree), &want);
    plugin.terminate().unwrap();
}

#[test]
fn copy_snapshot_backup_restores_to_the_original_location() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let want = walk(&tree);
    let snaps = dir.path().join("snaps");
    let snap_dir = snaps.to_str().unwrap();
    let props = [("files.snapshot", "copy"), ("files.snapshot_dir", snap_dir)];
    let store = dir.path().join("store");
    let m = backup(&plugin, &lib, &store, &tree, "full", &["h1", "h2"], &props);
    assert_eq!(
        fs::read_dir(&snaps).unwrap().count(),
        0,
        "postprocess deleted the snapshot"
    );
    // Make the read-only directory removable, then lose the whole tree.
    fs::set_permissions(tree.join("readonly-dir"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(&tree).unwrap();
    restore(&plugin, &lib, &store, &m.image, None, false, &[]).unwrap();
    assert_same(&walk(&tree), &want);
    plugin.terminate().unwrap();
}

#[test]
fn incremental_and_cumulative_back_up_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    // Changes are detected by the second: let the tree's ctimes fall before the full backup.
    let now = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(
        1100 - u64::from(
            now.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis(),
        ),
    ));
    let store = dir.path().join("store");
    backup(&plugin, &lib, &store, &tree, "full", &["h1", "h2"], &[]);
    fs::write(tree.join("small.txt"), b"changed after the full backup\n").unwrap();
    fs::write(tree.join("wide/new.txt"), b"new file").unwrap();
    fs::remove_file(tree.join("wide/f007")).unwrap();
    let want = walk(&tree);
    let incr = backup(&plugin, &lib, &store, &tree, "incr", &["h1", "h2"], &[]);
    // Only the two changed files' bytes travel (their directories hold no data).
    let changed = (b"changed after the full backup\n".len() + b"new file".len()) as u64;
    assert_eq!(incr.bytes, changed);
    assert_eq!(
        incr.objects,
        want.len() as u64,
        "the catalog lists every object"
    );
    let cinc = backup(&plugin, &lib, &store, &tree, "cinc", &["h1"], &[]);
    assert_eq!(cinc.bytes, changed, "relative to the full backup as well");
    for image in [&incr.image, &cinc.image] {
        let alt = dir.path().join(format!("alt-{image}"));
        fs::create_dir(&alt).unwrap();
        restore(&plugin, &lib, &store, image, Some(&alt), false, &[]).unwrap();
        assert_same(&walk(&under(&alt, &tree)), &want);
    }
    plugin.terminate().unwrap();
}

fn discover(
    plugin: &Plugin,
    def: SessionDef,
    selections: &[&Path],
    hosts: &[String],
    out: &Path,
    schedule: u32,
) -> Result<String, aapi_host::client::PluginError> {
    let server = plugin.open_server("localhost", def).unwrap();
    let sel: Vec<Vec<u8>> = selections.iter().map(|s| b(s)).collect();
    let args = DiscoveryArgs {
        selections: &sel,
        backup_hosts: hosts,
        workload_dir: out,
        suffix: ".wkld",
        schedule,
    };
    let r = server.discovery(&args);
    server.close().unwrap();
    r
}

#[test]
fn discovery_lists_each_object_once_marks_unchanged_and_balances_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let want = walk(&tree);
    let hosts = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let overlapping = [tree.as_path(), &tree.join("deep"), &tree.join("wide/f001")];
    for (schedule, since, unchanged) in [
        (AAPI_SCHED_FULL, None, false),
        (AAPI_SCHED_INCR, None, false),
        (AAPI_SCHED_INCR, Some("0"), false),
        (AAPI_SCHED_INCR, Some("99999999999"), true),
        (AAPI_SCHED_CINC, Some("99999999999"), false), // incrementals look at last_backup_time only
    ] {
        let out = tempfile::tempdir().unwrap();
        let props: Vec<(&str, &str)> = since
            .map(|s| vec![("aapi.last_backup_time", s)])
            .unwrap_or_default();
        let snapid = discover(
            &plugin,
            session(AAPI_OP_DISCOVERY, &props),
            &overlapping,
            &hosts,
            out.path(),
            schedule,
        )
        .unwrap();
        assert_eq!(snapid, "");
        let mut listed: Vec<Vec<u8>> = vec![];
        let mut bytes = vec![];
        for h in &hosts {
            let path = out.path().join(format!("{h}.wkld"));
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "DISC-4");
            let f = WorkloadFile::read_from_path(&path).unwrap();
            assert_eq!(f.backup_host, *h);
            let paths: Vec<Vec<u8>> = f.entries.iter().map(|e| b(&e.path)).collect();
            let mut sorted = paths.clone();
            sorted.sort();
            assert_eq!(paths, sorted, "records in path-byte order");
            for e in &f.entries {
                assert_eq!(
                    e.flags & AAPI_WKLD_UNCHANGED != 0,
                    unchanged,
                    "{schedule} {since:?}"
                );
                let rel = b(e.path.strip_prefix(&tree).unwrap());
                let w = &want[&rel];
                assert_eq!(e.flags & AAPI_WKLD_DIR != 0, w.kind == 'd');
                assert_eq!(e.flags & AAPI_WKLD_SYMLINK != 0, w.kind == 'l');
                assert_eq!(e.size_hint, w.data.len() as u64);
            }
            bytes.push(f.entries.iter().map(|e| e.size_hint).sum::<u64>());
            listed.extend(paths);
        }
        listed.sort();
        let mut expected: Vec<Vec<u8>> = want.keys().map(|k| b(&tree.join(p(k)))).collect();
        // The root itself is listed as the selection, without a trailing slash.
        expected.iter_mut().for_each(|e| {
            if e.ends_with(b"/") {
                e.pop();
            }
        });
        expected.sort();
        assert_eq!(
            listed.len(),
            expected.len(),
            "each object exactly once (DISC-2)"
        );
        assert_eq!(listed, expected);
        if !unchanged {
            // Largest first to the lightest host: no host carries more than the big file.
            let big = 3 * 1024 * 1024 + 7;
            assert!(bytes.iter().all(|&x| x <= big), "{bytes:?}");
            assert_eq!(bytes.iter().filter(|&&x| x == big).count(), 1, "{bytes:?}");
        }
    }
    plugin.terminate().unwrap();
}

#[test]
fn copy_snapshot_is_read_as_of_discovery_and_deleted_by_postprocess() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let snaps = dir.path().join("snaps");
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string()];
    let mut def = session(AAPI_OP_DISCOVERY, &props);
    def.job_id = "job 42/x".into();
    let snapid = discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap();
    assert_eq!(snapid, format!("files-job_42_x-{}", dir_tag(&snaps)));
    let wf = WorkloadFile::read_from_path(&out.path().join("h1.wkld")).unwrap();
    assert_eq!(wf.snapshot, snapid);
    // The source changes after discovery; the backup still reads the state of the snapshot.
    let small = tree.join("small.txt");
    let orig = fs::symlink_metadata(&small).unwrap();
    fs::write(&small, b"too late").unwrap();
    let mut def = session(AAPI_OP_BACKUP, &props);
    def.snapid = snapid.clone();
    let s = plugin.open_server("localhost", def).unwrap();
    let sp = s.snappath(&snapid, &b(&small)).unwrap();
    assert_eq!(p(&sp), under(&snaps.join(&snapid), &small));
    assert_eq!(
        s.snappath("", &b(&small)).unwrap(),
        b(&small),
        "\"\" maps a path to itself"
    );
    let mut o = s.open_object(&sp).unwrap();
    let mut buf = vec![0u8; 64];
    let n = o.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello\n");
    // Properties as of discovery: the copy kept the source's mode and times.
    let prop = o.prop().unwrap();
    assert_eq!(prop.mode, orig.permissions().mode() & 0o7777);
    assert_eq!(
        (prop.mtime.sec, i64::from(prop.mtime.nsec)),
        (orig.mtime(), orig.mtime_nsec())
    );
    o.close().unwrap();
    // Snapshot names are the plugin's own ids: anything else cannot reach outside the snapshots.
    assert_eq!(code_of(s.snappath("../../etc", b"/passwd")), AAPI_EINVAL);
    assert_eq!(code_of(s.snappath("files-unknown", b"/x")), AAPI_ESNAPSHOT);
    let unknown = format!("files-unknown-{}", dir_tag(&snaps));
    assert_eq!(code_of(s.snappath(&unknown, b"/x")), AAPI_ESNAPSHOT);
    assert_eq!(code_of(s.snappath(&snapid, b"relative/x")), AAPI_EINVAL);
    s.close().unwrap();
    let post = plugin
        .open_server("localhost", session(AAPI_OP_POSTPROCESS, &props))
        .unwrap();
    let sel = vec![b(&tree)];
    let args = DiscoveryArgs {
        selections: &sel,
        backup_hosts: &hosts,
        workload_dir: out.path(),
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    };
    post.postprocess(&args, &snapid).unwrap();
    post.close().unwrap();
    assert!(
        !snaps.join(&snapid).exists(),
        "postprocess deleted the snapshot"
    );
    // Already gone, or no snapshot at all: success. Not an id of this plugin: refused.
    for (id, code) in [
        (snapid.as_str(), AAPI_EOK),
        ("", AAPI_EOK),
        ("../tree", AAPI_EINVAL),
    ] {
        let post = plugin
            .open_server("localhost", session(AAPI_OP_POSTPROCESS, &props))
            .unwrap();
        let r = post.postprocess(&args, id);
        assert_eq!(
            r.err().and_then(|e| e.code()).unwrap_or(AAPI_EOK),
            code,
            "{id:?}"
        );
        post.close().unwrap();
    }
    assert!(tree.join("small.txt").exists());
    plugin.terminate().unwrap();
}

#[test]
fn a_snapshot_is_used_and_deleted_only_from_the_snapshot_directory_it_was_made_in() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, hooks, _) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f"), b"data").unwrap();
    let (snaps, other) = (dir.path().join("snaps"), dir.path().join("other"));
    let def = |op, d: &Path, snapid: &str| {
        let dir = ("files.snapshot_dir", d.to_str().unwrap());
        let mut def = session(op, &[("files.snapshot", "copy"), dir]);
        def.snapid = snapid.into();
        def
    };
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string()];
    let snapid = discover(
        &plugin,
        def(AAPI_OP_DISCOVERY, &snaps, ""),
        &[&tree],
        &hosts,
        out.path(),
        AAPI_SCHED_FULL,
    )
    .unwrap();
    let root = snaps.join(&snapid);
    assert!(root.is_dir());
    // Another directory is empty too, but the snapshot is not missing: it is elsewhere.
    fs::create_dir(&other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o700)).unwrap();
    let sel = vec![b(&tree)];
    let args = DiscoveryArgs {
        selections: &sel,
        backup_hosts: &hosts,
        workload_dir: out.path(),
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    };
    let postprocess = |d: &Path, id: &str| {
        let s = plugin
            .open_server("localhost", def(AAPI_OP_POSTPROCESS, d, id))
            .unwrap();
        let r = s.postprocess(&args, id);
        s.close().unwrap();
        r
    };
    let fix = "run every step of the job as the same user, with the same TMPDIR and files.snapshot_dir, as the discovery";
    let e = postprocess(&other, &snapid).unwrap_err();
    assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "snapshot {snapid} was made in another snapshot directory than the one of this session; {fix} (the snapshot directory of this session is {})",
            other.display()
        )),
        "{msg}"
    );
    assert!(
        under(&root, &tree.join("f")).is_file(),
        "the snapshot is still there"
    );
    let s = plugin
        .open_server("localhost", def(AAPI_OP_BACKUP, &other, &snapid))
        .unwrap();
    assert_eq!(
        code_of(s.snappath(&snapid, &b(&tree.join("f")))),
        AAPI_ESNAPSHOT
    );
    s.close().unwrap();
    // Ids without the tag of the directory: made up, or of an older version.
    for id in ["files-job-1", "files-made-up-0123456789abcdef"] {
        let e = postprocess(&snaps, id).unwrap_err();
        assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{id}: {e}");
        assert!(e.to_string().contains(fix), "{e}");
    }
    // "" (no snapshot) is success; so is the snapshot's own directory, which deletes it.
    postprocess(&other, "").unwrap();
    postprocess(&snaps, &snapid).unwrap();
    assert!(!root.exists(), "postprocess deleted the snapshot");
    assert_eq!(hooks.logged(&format!("snapshot {snapid} deleted")).len(), 1);
    // Gone from the right directory: success, and nothing is said to be deleted.
    postprocess(&snaps, &snapid).unwrap();
    assert_eq!(hooks.logged(&format!("snapshot {snapid} deleted")).len(), 1);
    plugin.terminate().unwrap();
}

#[test]
fn a_snapshot_directory_below_a_directory_others_may_write_into_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"data").unwrap();
    let want = walk(&tree);
    // Another user could rename the private snapshot directory away and put theirs in its place.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let snaps = shared.join("snaps");
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string()];
    let def = session(AAPI_OP_DISCOVERY, &props);
    let e = discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap_err();
    assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{e}");
    let ancestor = format!("its ancestor {} (owner uid ", shared.display());
    assert!(e.to_string().contains(&ancestor), "{e}");
    assert!(e.to_string().contains("mode 0777) may be written"), "{e}");
    assert!(!snaps.exists(), "refused before anything was made");
    // Once only its owner may write into it, the same backup goes through the snapshot.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("store");
    let m = backup(&plugin, &lib, &store, &tree, "full", &["h1"], &props);
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 0, "snapshot left");
    let alt = dir.path().join("alt");
    fs::create_dir(&alt).unwrap();
    restore(&plugin, &lib, &store, &m.image, Some(&alt), false, &[]).unwrap();
    assert_same(&walk(&under(&alt, &tree)), &want);
    plugin.terminate().unwrap();
}

/// A copy discovery of `tree` with its snapshots in `snaps`, which must be refused with
/// `AAPI_ESNAPSHOT` and a message holding `what`; nothing is made in `snaps`.
fn refused_snapshot_dir(plugin: &Plugin, tree: &Path, snaps: &Path, what: &str) {
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string()];
    let def = session(AAPI_OP_DISCOVERY, &props);
    let e = discover(plugin, def, &[tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap_err();
    assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{e}");
    assert!(e.to_string().contains(what), "{e}");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "a workload file"
    );
}

#[test]
fn a_snapshot_directory_its_owner_may_not_write_into_is_refused_with_the_fix() {
    if is_root() {
        eprintln!("skipped: root may write into any directory, whatever its mode");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"data").unwrap();
    let snaps = dir.path().join("snaps");
    fs::create_dir(&snaps).unwrap();
    fs::set_permissions(&snaps, fs::Permissions::from_mode(0o500)).unwrap();
    let uid = fs::metadata(&snaps).unwrap().uid();
    let why = format!(
        "the snapshot directory {0} is refused: the running user (uid {uid}), its owner, lacks write or search permission on it (mode 0500); run chmod 700 {0}, or set files.snapshot_dir to",
        snaps.display()
    );
    refused_snapshot_dir(&plugin, &tree, &snaps, &why);
    assert_eq!(
        fs::read_dir(&snaps).unwrap().count(),
        0,
        "a snapshot was made"
    );
    // Once the fix is applied, the same backup goes through the snapshot.
    fs::set_permissions(&snaps, fs::Permissions::from_mode(0o700)).unwrap();
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    backup(
        &plugin,
        &lib,
        &dir.path().join("store"),
        &tree,
        "full",
        &["h1"],
        &props,
    );
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 0, "snapshot left");
    plugin.terminate().unwrap();
}

#[test]
fn an_ancestor_the_running_user_may_not_search_is_named_with_the_fix() {
    if is_root() {
        eprintln!("skipped: root may search any directory, whatever its mode");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"data").unwrap();
    // Right above the snapshot directory, and a level further up.
    let (shut, sealed) = (dir.path().join("shut"), dir.path().join("sealed"));
    fs::create_dir(&shut).unwrap();
    fs::create_dir_all(sealed.join("sub")).unwrap();
    let uid = fs::metadata(&shut).unwrap().uid();
    let cases = [
        (&shut, 0o600, shut.join("snaps")),
        (&sealed, 0o000, sealed.join("sub/snaps")),
    ];
    for (ancestor, mode, snaps) in &cases {
        fs::set_permissions(ancestor, fs::Permissions::from_mode(*mode)).unwrap();
        let why = format!(
            "the snapshot directory {} is refused: its ancestor {1} (owner uid {uid}, mode {mode:04o}) may not be searched by the running user (uid {uid}); run chmod u+x {1}, or set files.snapshot_dir to a directory whose ancestors the running user may search",
            snaps.display(),
            ancestor.display()
        );
        refused_snapshot_dir(&plugin, &tree, snaps, &why);
        // Once the fix is applied, the same backup goes through the snapshot.
        fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o100)).unwrap();
        assert!(!snaps.exists(), "{} was made", snaps.display());
        let props = [
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", snaps.to_str().unwrap()),
        ];
        let store = dir.path().join(format!("store-{mode:o}"));
        backup(&plugin, &lib, &store, &tree, "full", &["h1"], &props);
        // So that the temporary directory can be removed.
        fs::set_permissions(ancestor, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(fs::read_dir(snaps).unwrap().count(), 0, "snapshot left");
    }
    plugin.terminate().unwrap();
}

#[test]
fn a_snapshot_whose_paths_are_too_long_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"data").unwrap();
    // 17 components of 250 bytes: the walk could make it one component at a time, but no copy
    // could be made or read by its path.
    let long = dir.path().join("long");
    fs::create_dir(&long).unwrap();
    let mut snaps = long.clone();
    for _ in 0..17 {
        snaps.push("b".repeat(250));
    }
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string()];
    let def = session(AAPI_OP_DISCOVERY, &props);
    let e = discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap_err();
    assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{e}");
    let why = "bytes a path may have; set files.snapshot_dir to a shorter directory (it is ";
    assert!(e.to_string().contains(why), "{e}");
    // DISC-5: nothing made, not even the missing directories on the way; no workload file.
    assert_eq!(fs::read_dir(&long).unwrap().count(), 0, "made");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "workload file left"
    );
    plugin.terminate().unwrap();
}

#[test]
fn reflink_clones_or_falls_back_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, hooks, _) = load(dir.path());
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), noise(100_000, 3)).unwrap();
    fs::write(tree.join("b"), b"bbb").unwrap();
    let snaps = dir.path().join("snaps");
    let hosts = vec!["h1".to_string()];
    let sd = snaps.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let strict = [("files.snapshot", "reflink"), ("files.snapshot_dir", sd)];
    let mut def = session(AAPI_OP_DISCOVERY, &strict);
    def.job_id = "strict".into();
    match discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL) {
        Ok(id) => {
            // This file system clones: the snapshot holds the same bytes.
            let copy = under(&snaps.join(&id), &tree.join("a"));
            assert_eq!(fs::read(copy).unwrap(), fs::read(tree.join("a")).unwrap());
            fs::remove_dir_all(snaps.join(&id)).unwrap();
            fs::remove_file(out.path().join("h1.wkld")).unwrap();
        }
        Err(e) => {
            assert_eq!(e.code(), Some(AAPI_ESNAPSHOT), "{e}");
            assert!(e.to_string().contains("cannot clone"), "{e}");
            assert_eq!(
                fs::read_dir(out.path()).unwrap().count(),
                0,
                "no workload file left"
            );
            assert!(
                !snaps
                    .join(format!("files-strict-{}", dir_tag(&snaps)))
                    .exists(),
                "no partial snapshot left"
            );
        }
    }
    let lenient = [
        ("files.snapshot", "reflink"),
        ("files.snapshot_dir", sd),
        ("files.reflink_fallback", "copy"),
    ];
    let mut def = session(AAPI_OP_DISCOVERY, &lenient);
    def.job_id = "lenient".into();
    let id = discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap();
    for f in ["a", "b"] {
        let copy = under(&snaps.join(&id), &tree.join(f));
        assert_eq!(fs::read(copy).unwrap(), fs::read(tree.join(f)).unwrap());
    }
    assert!(
        hooks.logged("copying instead").len() <= 1,
        "the fallback is logged once"
    );
    plugin.terminate().unwrap();
}

#[test]
fn existing_objects_are_refused_without_overwrite_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let want = walk(&tree);
    let store = dir.path().join("store");
    let m = backup(&plugin, &lib, &store, &tree, "full", &["h1"], &[]);
    let alt = dir.path().join("alt");
    fs::create_dir(&alt).unwrap();
    restore(&plugin, &lib, &store, &m.image, Some(&alt), false, &[]).unwrap();
    let restored = under(&alt, &tree);
    fs::write(restored.join("small.txt"), b"edited after the restore").unwrap();
    fs::remove_file(restored.join("links/rel")).unwrap();
    fs::write(restored.join("links/rel"), b"a file where a link was").unwrap();
    let before = walk(&restored);
    let err = restore(&plugin, &lib, &store, &m.image, Some(&alt), false, &[]).unwrap_err();
    assert!(err.message.contains("AAPI_EEXIST"), "{err}");
    assert_same(&walk(&restored), &before);
    assert!(
        leftovers(&alt, ".aapi-").is_empty(),
        "{:?}",
        leftovers(&alt, ".aapi-")
    );
    restore(&plugin, &lib, &store, &m.image, Some(&alt), true, &[]).unwrap();
    assert_same(&walk(&restored), &want);
    assert!(
        leftovers(&alt, ".aapi-").is_empty(),
        "set-aside objects deleted: {:?}",
        leftovers(&alt, ".aapi-")
    );
    plugin.terminate().unwrap();
}

#[test]
fn not_enough_space_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, lib) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let store = dir.path().join("store");
    let m = backup(&plugin, &lib, &store, &tree, "full", &["h1"], &[]);
    let alt = dir.path().join("alt");
    fs::create_dir(&alt).unwrap();
    let props = [("files.min_free_bytes", "4611686018427387904")];
    let err = restore(&plugin, &lib, &store, &m.image, Some(&alt), false, &props).unwrap_err();
    assert!(err.message.contains("AAPI_ENOSPC"), "{err}");
    assert_eq!(fs::read_dir(&alt).unwrap().count(), 0, "nothing written");
    // The check is exact: the same restore with room to spare works.
    restore(
        &plugin,
        &lib,
        &store,
        &m.image,
        Some(&alt),
        false,
        &[("files.min_free_bytes", "1024")],
    )
    .unwrap();
    // A missing alternate root is ENOENT, also before anything is written.
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    let missing = dir.path().join("no-such-dir");
    assert_eq!(
        code_of(s.restore_preprocess(&b(&missing), 1, 1)),
        AAPI_ENOENT
    );
    s.close().unwrap();
    plugin.terminate().unwrap();
}

fn file_prop(mode: u32) -> aapi_object_prop_t {
    aapi_object_prop_t {
        obj_type: AAPI_OBJ_FILE,
        valid: AAPI_PROP_MODE,
        mode,
        ..Default::default()
    }
}

#[test]
fn a_failed_restore_removes_what_it_created_and_puts_back_what_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    for status in [AAPI_EIO, AAPI_EOK] {
        let alt = dir.path().join(format!("alt-{status}"));
        fs::create_dir_all(alt.join("keep/sub")).unwrap();
        fs::write(alt.join("keep/old.txt"), b"old").unwrap();
        let before = walk(&alt);
        let s = plugin
            .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
            .unwrap();
        s.restore_preprocess(&b(&alt), 100, 4).unwrap();
        let old = alt.join("keep/old.txt");
        let mut o = s
            .create_object(&b(&old), &file_prop(0o640), AAPI_CREATE_OVERWRITE)
            .unwrap();
        o.write(b"new").unwrap();
        assert_eq!(
            fs::read(&old).unwrap(),
            b"old",
            "invisible before close (OBJ-6)"
        );
        o.close().unwrap();
        assert_eq!(fs::read(&old).unwrap(), b"new");
        let deep = alt.join("new/dir/f.txt");
        let mut o = s.create_object(&b(&deep), &file_prop(0o600), 0).unwrap();
        o.write(b"deep").unwrap();
        o.flush().unwrap();
        o.close().unwrap();
        let dir_prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_DIR,
            valid: AAPI_PROP_MODE,
            mode: 0o751,
            ..Default::default()
        };
        s.create_object(&b(&alt.join("keep/sub")), &dir_prop, 0)
            .unwrap()
            .close()
            .unwrap();
        let link = aapi_object_prop_t {
            obj_type: AAPI_OBJ_SYMLINK,
            ..Default::default()
        };
        let mut o = s
            .create_object(&b(&alt.join("new/link")), &link, 0)
            .unwrap();
        o.write(b"dir/f.txt").unwrap();
        o.close().unwrap();
        assert_eq!(fs::read(alt.join("new/link")).unwrap(), b"deep");
        // Left open when the restore ends.
        let mut o = s
            .create_object(&b(&alt.join("open.txt")), &file_prop(0o600), 0)
            .unwrap();
        o.write(b"unfinished").unwrap();
        o.abandon();
        s.restore_postprocess(status).unwrap();
        s.close().unwrap();
        if status == AAPI_EOK {
            assert_eq!(fs::read(&old).unwrap(), b"new");
            assert_eq!(fs::read(&deep).unwrap(), b"deep");
            assert_eq!(
                fs::read(alt.join("open.txt")).unwrap(),
                b"unfinished",
                "completed by postprocess"
            );
            let sub = fs::metadata(alt.join("keep/sub")).unwrap();
            assert_eq!(
                sub.permissions().mode() & 0o7777,
                0o751,
                "reused directory gets its mode"
            );
        } else {
            // RST-6, RST-7: exactly the state before the restore.
            let after = walk(&alt);
            let names = |m: &std::collections::BTreeMap<Vec<u8>, Entry>| -> Vec<String> {
                m.keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            };
            assert_eq!(names(&after), names(&before));
            assert_eq!(fs::read(&old).unwrap(), b"old");
        }
        assert!(
            leftovers(&alt, ".aapi-").is_empty(),
            "{:?}",
            leftovers(&alt, ".aapi-")
        );
    }
    plugin.terminate().unwrap();
}

/// (atime, mtime) of `path` itself, to the nanosecond.
type Times = ((i64, i64), (i64, i64));

fn times_of(path: &Path) -> Times {
    let md = fs::symlink_metadata(path).unwrap();
    ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()))
}

fn set_atime_mtime(path: &Path, (a, m): Times) {
    let c = std::ffi::CString::new(b(path)).unwrap();
    let ts = [(a.0, a.1), (m.0, m.1)].map(|(sec, nsec)| libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    });
    // SAFETY: a NUL-terminated path and two valid timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// The times the framework gives the `i`th restored object (as from a backup).
fn backup_times(i: usize) -> Times {
    let i = i as i64;
    (
        (1_650_000_000 + i, 10_000_001 + i),
        (1_550_000_000 + i, 900_000_009 - i),
    )
}

fn time_of(t: (i64, i64)) -> aapi_time_t {
    aapi_time_t {
        sec: t.0,
        nsec: t.1 as u32,
        reserved: 0,
    }
}

#[test]
fn a_failed_restore_gives_the_directories_that_existed_their_times_back() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    // The directories of the target before the restore, the alternate root among them.
    let existing = ["", "a", "a/b", "a/b/c", "a/reused"];
    for status in [AAPI_EIO, AAPI_EOK] {
        let alt = dir.path().join(format!("times-{status}"));
        let at = |rel: &str| {
            if rel.is_empty() {
                alt.clone()
            } else {
                alt.join(rel)
            }
        };
        for d in existing {
            fs::create_dir_all(at(d)).unwrap();
        }
        fs::write(at("a/old.txt"), b"old").unwrap();
        fs::write(at("a/b/c/keep.txt"), b"keep").unwrap();
        // Listed before the times are set: reading a directory moves its atime.
        let names_before: Vec<Vec<u8>> = walk(&alt).into_keys().collect();
        let mut before = Vec::new();
        for (i, d) in existing.iter().enumerate().rev() {
            let t = (
                (1_600_000_000 + i as i64, 111_111_111 * i as i64 + 7),
                (1_500_000_000 + i as i64 * 1000, 987_654_321 - i as i64),
            );
            set_atime_mtime(&at(d), t);
            before.push((d.to_string(), t));
        }

        let s = plugin
            .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
            .unwrap();
        s.restore_preprocess(&b(&alt), 100, 12).unwrap();
        let dir_prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_DIR,
            valid: AAPI_PROP_MODE,
            mode: 0o750,
            ..Default::default()
        };
        let link_prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_SYMLINK,
            ..Default::default()
        };
        // (path, prop, data, flags): new objects in every directory that existed, a file with
        // missing parents, a replaced file, a new directory, reused directories.
        let objects: Vec<(&str, aapi_object_prop_t, &[u8], u32)> = vec![
            ("top.txt", file_prop(0o644), b"top", 0),
            ("a", dir_prop, b"", 0),
            ("a/f1.txt", file_prop(0o600), b"one", 0),
            ("a/old.txt", file_prop(0o600), b"new", AAPI_CREATE_OVERWRITE),
            ("a/b", dir_prop, b"", 0),
            ("a/b/c/f2.txt", file_prop(0o600), b"two", 0),
            ("a/b/c/link", link_prop, b"f2.txt", 0),
            ("a/b/new/deeper/f3.txt", file_prop(0o600), b"three", 0),
            ("a/b/newdir", dir_prop, b"", 0),
            ("a/reused", dir_prop, b"", 0),
        ];
        for (i, (rel, prop, data, flags)) in objects.iter().enumerate() {
            let mut o = s.create_object(&b(&at(rel)), prop, *flags).unwrap();
            o.write(data).unwrap();
            o.close().unwrap();
            if prop.obj_type != AAPI_OBJ_DIR {
                let (a, m) = backup_times(i);
                s.set_utimes(&b(&at(rel)), Some(time_of(a)), Some(time_of(m)))
                    .unwrap();
            }
        }
        if status != AAPI_EOK {
            // Still open when the restore fails: its temporary file is in a/b/c.
            let mut o = s
                .create_object(&b(&at("a/b/c/open.txt")), &file_prop(0o600), 0)
                .unwrap();
            o.write(b"unfinished").unwrap();
            o.abandon();
        }
        // Containers after their contents, deepest first, as the framework does.
        let mut dirs: Vec<(usize, &str)> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.1.obj_type == AAPI_OBJ_DIR)
            .map(|(i, o)| (i, o.0))
            .collect();
        dirs.sort_by(|x, y| y.1.cmp(x.1));
        for &(i, rel) in &dirs {
            let (a, m) = backup_times(i);
            s.set_utimes(&b(&at(rel)), Some(time_of(a)), Some(time_of(m)))
                .unwrap();
        }
        s.restore_postprocess(status).unwrap();
        s.close().unwrap();

        if status == AAPI_EOK {
            // Unchanged by the rollback rule: every restored object has the backup's times.
            for (i, (rel, _, data, _)) in objects.iter().enumerate() {
                assert_eq!(times_of(&at(rel)), backup_times(i), "{rel}");
                if !data.is_empty() && *rel != "a/b/c/link" {
                    assert_eq!(&fs::read(at(rel)).unwrap(), data, "{rel}");
                }
            }
            assert_eq!(
                fs::read_link(at("a/b/c/link")).unwrap(),
                Path::new("f2.txt")
            );
        } else {
            // Times first: listing the tree reads (and so touches) its directories.
            let after: Vec<(String, Times)> = before
                .iter()
                .map(|(d, _)| (d.clone(), times_of(&at(d))))
                .collect();
            assert_eq!(
                after, before,
                "atime and mtime of the directories that existed"
            );
            let names_after: Vec<Vec<u8>> = walk(&alt).into_keys().collect();
            assert_eq!(names_after, names_before, "every created object is gone");
            assert_eq!(fs::read(at("a/old.txt")).unwrap(), b"old");
            assert!(!at("a/b/new").exists() && !at("a/b/newdir").exists());
        }
    }
    plugin.terminate().unwrap();
}

#[test]
fn a_directory_with_a_deleted_entry_keeps_its_times_after_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let alt = dir.path().join("alt");
    for d in ["del", "kept"] {
        fs::create_dir_all(alt.join(d)).unwrap();
        fs::write(alt.join(d).join("x"), b"x").unwrap();
    }
    let old = ((1_600_000_000, 5), (1_500_000_000, 6));
    for d in ["del", "kept"] {
        set_atime_mtime(&alt.join(d), old);
    }
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(&b(&alt), 10, 2).unwrap();
    for d in ["del", "kept"] {
        let mut o = s
            .create_object(&b(&alt.join(d).join("new")), &file_prop(0o600), 0)
            .unwrap();
        o.write(b"n").unwrap();
        o.close().unwrap();
    }
    s.delete_object(&b(&alt.join("del/x"))).unwrap();
    s.restore_postprocess(AAPI_EIO).unwrap();
    s.close().unwrap();
    assert!(!alt.join("del/new").exists() && !alt.join("kept/new").exists());
    assert!(!alt.join("del/x").exists(), "a deletion is not undone");
    assert_eq!(times_of(&alt.join("kept")), old);
    assert_ne!(
        times_of(&alt.join("del")).1,
        old.1,
        "the mtime shows the deletion that stays"
    );
    plugin.terminate().unwrap();
}

/// (mode, uid, gid) of `path` itself.
fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let md = fs::symlink_metadata(path).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid())
}

#[test]
fn a_failed_restore_gives_the_directories_that_existed_their_mode_and_owner_back() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    // Directories that exist before the restore: (path, mode before, mode of its object). A
    // directory object restored onto one reuses it and gives it its mode (and owner, as root).
    let dirs = [
        ("a", 0o755, 0o2750),
        ("a/b", 0o700, 0o555),
        ("a/b/c", 0o750, 0o711),
        ("del", 0o751, 0o700),
    ];
    let owner = (4321, 4322);
    let old = ((1_600_000_000, 5), (1_500_000_000, 6));
    let setid = if is_root() { 0o7777 } else { 0o1777 };
    for status in [AAPI_EIO, AAPI_EOK] {
        let alt = dir.path().join(format!("modes-{status}"));
        for (d, _, _) in dirs {
            fs::create_dir_all(alt.join(d)).unwrap();
        }
        fs::write(alt.join("del/x"), b"x").unwrap();
        for (d, mode, _) in dirs.iter().rev() {
            fs::set_permissions(alt.join(d), fs::Permissions::from_mode(*mode)).unwrap();
            set_atime_mtime(&alt.join(d), old);
        }
        let before: Vec<_> = dirs.iter().map(|d| mode_owner(&alt.join(d.0))).collect();
        let s = plugin
            .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
            .unwrap();
        s.restore_preprocess(&b(&alt), 10, 6).unwrap();
        // The directory that loses an entry is recorded by the deletion, before its object.
        s.delete_object(&b(&alt.join("del/x"))).unwrap();
        for (i, (d, _, mode)) in dirs.iter().enumerate() {
            let prop = aapi_object_prop_t {
                obj_type: AAPI_OBJ_DIR,
                valid: AAPI_PROP_MODE | AAPI_PROP_OWNER,
                mode: *mode,
                uid: owner.0,
                gid: owner.1,
                ..Default::default()
            };
            // Reused with and without AAPI_CREATE_OVERWRITE.
            let flags = if i % 2 == 0 { 0 } else { AAPI_CREATE_OVERWRITE };
            s.create_object(&b(&alt.join(d)), &prop, flags)
                .unwrap()
                .close()
                .unwrap();
            let (_, uid, gid) = before[i];
            let want = if is_root() { owner } else { (uid, gid) };
            assert_eq!(
                mode_owner(&alt.join(d)),
                (mode & setid, want.0, want.1),
                "{d}: set at close"
            );
        }
        // Inside the restored directories (a/b, 0555, is opened up for it when not root).
        for f in ["a/b/new.txt", "a/b/c/f.txt"] {
            let mut o = s
                .create_object(&b(&alt.join(f)), &file_prop(0o600), 0)
                .unwrap();
            o.write(b"new").unwrap();
            o.close().unwrap();
        }
        s.restore_postprocess(status).unwrap();
        s.close().unwrap();
        let after: Vec<_> = dirs.iter().map(|d| mode_owner(&alt.join(d.0))).collect();
        if status == AAPI_EOK {
            let want: Vec<_> = dirs
                .iter()
                .zip(&before)
                .map(|((_, _, mode), &(_, uid, gid))| {
                    let (uid, gid) = if is_root() { owner } else { (uid, gid) };
                    (mode & setid, uid, gid)
                })
                .collect();
            assert_eq!(after, want, "the restored modes and owners stay");
            assert_eq!(fs::read(alt.join("a/b/new.txt")).unwrap(), b"new");
        } else {
            assert_eq!(
                after, before,
                "mode and owner of the directories that existed"
            );
            for d in ["a", "a/b", "a/b/c"] {
                assert_eq!(times_of(&alt.join(d)), old, "times of {d}");
            }
            assert!(!alt.join("a/b/new.txt").exists() && !alt.join("a/b/c/f.txt").exists());
            assert!(!alt.join("del/x").exists(), "a deletion is not undone");
        }
    }
    plugin.terminate().unwrap();
}

#[test]
fn cancellation_during_the_snapshot_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, hooks, _) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let snaps = dir.path().join("snaps");
    let root = snaps.join(format!("files-cancel-me-{}", dir_tag(&snaps)));
    let watched = root.clone();
    // Cancel as soon as the snapshot exists: the plugin is then half way through copying.
    *hooks.cancel_when.lock().unwrap() = Some(Box::new(move || watched.exists()));
    let mut def = session(
        AAPI_OP_DISCOVERY,
        &[
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", snaps.to_str().unwrap()),
        ],
    );
    def.job_id = "cancel-me".into();
    def.call_budget_ms = 4; // a keepalive is due every millisecond
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h1".to_string(), "h2".to_string()];
    let started = std::time::Instant::now();
    let e = discover(&plugin, def, &[&tree], &hosts, out.path(), AAPI_SCHED_FULL).unwrap_err();
    assert_eq!(e.code(), Some(AAPI_ECANCELLED), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_millis(u64::from(AAPI_CANCEL_BOUND_MS)));
    assert!(!root.exists(), "the partial snapshot was removed (TIME-4)");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "no workload file"
    );
    assert!(hooks.keepalives.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    plugin.terminate().unwrap();
}

#[test]
fn a_file_that_changes_while_read_is_reported_not_backed_up_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    let read_all = |o: &mut aapi_host::client::Object<'_>, chunk: usize| -> Result<Vec<u8>, i32> {
        let mut out = vec![];
        let mut buf = vec![0u8; chunk];
        loop {
            match o.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.code().unwrap()),
            }
        }
    };
    // Appended to, truncated, rewritten in place with the same size: all ECHANGED.
    let big = tree.join("big.bin");
    type Change = (&'static str, fn(&Path));
    let changes: [Change; 3] = [
        ("append", |f| {
            use std::io::Write;
            fs::OpenOptions::new()
                .append(true)
                .open(f)
                .unwrap()
                .write_all(b"more")
                .unwrap();
        }),
        ("truncate", |f| {
            fs::OpenOptions::new()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(10)
                .unwrap();
        }),
        ("same size", |f| {
            use std::io::{Seek, Write};
            let mut h = fs::OpenOptions::new().write(true).open(f).unwrap();
            h.seek(std::io::SeekFrom::Start(5)).unwrap();
            h.write_all(b"X").unwrap();
            set_times(f, 1, 1); // even with the old mtime put back, ctime moved
        }),
    ];
    for (what, change) in changes {
        fs::write(&big, noise(3 * 1024 * 1024, 9)).unwrap();
        let mut o = s.open_object(&b(&big)).unwrap();
        let mut buf = vec![0u8; 1024];
        o.read(&mut buf).unwrap();
        change(&big);
        assert_eq!(read_all(&mut o, 1 << 20), Err(AAPI_ECHANGED), "{what}");
        assert_eq!(
            read_all(&mut o, 16),
            Err(AAPI_ECHANGED),
            "{what}: stays changed"
        );
        o.close().unwrap();
    }
    // An untouched object reads exactly its data, symlinks their target, directories nothing.
    let mut o = s.open_object(&b(&tree.join("links/odd name\n"))).unwrap();
    assert_eq!(read_all(&mut o, 3).unwrap(), b"target with\nnewline \xff");
    assert_eq!(o.prop().unwrap().obj_type, AAPI_OBJ_SYMLINK);
    o.close().unwrap();
    let mut o = s.open_object(&b(&tree.join("deep"))).unwrap();
    assert_eq!(read_all(&mut o, 3).unwrap(), b"");
    o.close().unwrap();
    let mut o = s.open_object(&b(&tree.join("wide/f150"))).unwrap();
    assert_eq!(read_all(&mut o, 7).unwrap(), noise(150 * 37, 150));
    o.close().unwrap();
    // Vanished since discovery: ENOENT at open.
    assert_eq!(
        code_of(s.open_object(&b(&tree.join("vanished")))),
        AAPI_ENOENT
    );
    s.close().unwrap();
    plugin.terminate().unwrap();
}

#[test]
fn bad_input_gets_the_codes_of_the_specification() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, hooks, _) = load(dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree);
    // Configuration errors at open.
    for props in [
        vec![("files.snapshot", "zfs")],
        vec![("files.snapshot_dir", "relative/dir")],
        vec![("files.snapshot_dir", "/tmp/../tmp/snaps")],
        vec![("files.reflink_fallback", "maybe")],
        vec![("files.min_free_bytes", "12k")],
        vec![("aapi.last_backup_time", "-5")],
    ] {
        let r = plugin.open_server("localhost", session(AAPI_OP_BACKUP, &props));
        assert_eq!(code_of(r), AAPI_EINVAL, "{props:?}");
    }
    let s = plugin
        .open_server(
            "localhost",
            session(AAPI_OP_BACKUP, &[("files.colour", "red")]),
        )
        .unwrap();
    assert_eq!(hooks.logged("unknown property files.colour").len(), 1);
    // Backup: relative paths, missing objects, special files.
    assert_eq!(code_of(s.open_object(b"relative/path")), AAPI_EINVAL);
    assert_eq!(code_of(s.prop_byname(b"relative")), AAPI_EINVAL);
    assert_eq!(
        code_of(s.prop_byname(&b(&tree.join("missing")))),
        AAPI_ENOENT
    );
    assert_eq!(
        code_of(s.prop_byname(&b(&tree.join("small.txt/below-a-file")))),
        AAPI_ENOENT
    );
    let fifo = tree.join("fifo");
    let c = std::ffi::CString::new(b(&fifo)).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_eq!(code_of(s.prop_byname(&b(&fifo))), AAPI_ENOTSUP);
    assert_eq!(code_of(s.open_object(&b(&fifo))), AAPI_ENOTSUP);
    let prop = s.prop_byname(&b(&tree.join("modes/exec.sh"))).unwrap();
    assert_eq!(
        (prop.obj_type, prop.mode, prop.size),
        (AAPI_OBJ_FILE, 0o755, 10)
    );
    assert_eq!(prop.valid, 0x3f, "every property is valid (OBJ-7)");
    // RC-3: an object path with a ".." component is refused, even where it names an object.
    let up = tree.join("deep/../small.txt");
    refused_naming(s.open_object(&b(&up)), &up);
    refused_naming(s.prop_byname(&b(&up)), &up);
    refused_naming(s.snappath("", &b(&up)), &up);
    s.close().unwrap();
    // Discovery: relative, "..", missing selections; the fifo is skipped with a warning.
    let out = tempfile::tempdir().unwrap();
    let hosts = vec!["h".to_string()];
    let d = |sel: &Path| {
        discover(
            &plugin,
            SessionDef::new(AAPI_OP_DISCOVERY),
            &[sel],
            &hosts,
            out.path(),
            AAPI_SCHED_FULL,
        )
    };
    assert_eq!(
        d(Path::new("relative")).unwrap_err().code(),
        Some(AAPI_EINVAL)
    );
    assert_eq!(
        d(&tree.join("deep/../wide")).unwrap_err().code(),
        Some(AAPI_EINVAL)
    );
    assert_eq!(
        d(&tree.join("missing")).unwrap_err().code(),
        Some(AAPI_ENOENT)
    );
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
    d(&tree).unwrap();
    assert_eq!(
        hooks.logged("skipped").len(),
        1,
        "{:?}",
        hooks.logged("skipped")
    );
    let listed = WorkloadFile::read_from_path(&out.path().join("h.wkld")).unwrap();
    assert!(listed.entries.iter().all(|e| e.path != fifo));
    // Restore: relative, "..", outside the alternate root, non-empty directory, missing objects.
    let alt = dir.path().join("alt");
    fs::create_dir_all(alt.join("full/dir")).unwrap();
    fs::write(alt.join("full/dir/x"), b"x").unwrap();
    let r = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    // RST-1: the alternate root bounds every path of the restore, so it is refused with ".."
    // (even where it leads to an existing directory) or relative, at preprocess.
    let up = alt.join("full/..");
    refused_naming(r.restore_preprocess(&b(&up), 1, 1), &up);
    refused_naming(
        r.restore_preprocess(b"relative", 1, 1),
        Path::new("relative"),
    );
    r.restore_preprocess(&b(&alt), 1, 1).unwrap();
    let fp = file_prop(0o600);
    assert_eq!(code_of(r.create_object(b"relative", &fp, 0)), AAPI_EINVAL);
    assert_eq!(
        code_of(r.create_object(&b(&alt.join("a/../../escape")), &fp, 0)),
        AAPI_EINVAL
    );
    assert_eq!(
        code_of(r.create_object(&b(&tree.join("outside")), &fp, 0)),
        AAPI_EINVAL
    );
    assert_eq!(
        code_of(r.create_object(&b(&alt.join("full/dir/x")), &fp, 0)),
        AAPI_EEXIST
    );
    // A parent that is a file: the same code whether the parent is the object's own or one
    // further up, and whether or not missing directories would be made below it.
    for below in ["full/dir/x/new", "full/dir/x/missing/new"] {
        let e = r
            .create_object(&b(&alt.join(below)), &fp, 0)
            .expect_err("a file cannot hold objects");
        assert_eq!(e.code(), Some(AAPI_EEXIST), "{below}: {e}");
        assert!(
            e.to_string()
                .contains("full/dir/x exists and is not a directory"),
            "{e}"
        );
    }
    assert_eq!(
        code_of(r.delete_object(&b(&alt.join("full/dir")))),
        AAPI_EINVAL
    );
    assert_eq!(
        code_of(r.delete_object(&b(&alt.join("nothing")))),
        AAPI_ENOENT
    );
    assert_eq!(
        code_of(r.set_utimes(&b(&alt.join("nothing")), None, None)),
        AAPI_ENOENT
    );
    // RC-3: "..", as create refuses it; the object it leads to is left as it was.
    fs::write(dir.path().join("beside"), b"kept").unwrap();
    set_times(&dir.path().join("beside"), 1_500_000_000, 7);
    let before = times_of(&dir.path().join("beside"));
    let up = alt.join("full/../../beside");
    let t = time_of((1_600_000_000, 0));
    refused_naming(r.set_utimes(&b(&up), Some(t), Some(t)), &up);
    refused_naming(r.delete_object(&b(&up)), &up);
    refused_naming(
        r.set_utimes(&b(Path::new("relative")), None, None),
        Path::new("relative"),
    );
    refused_naming(r.delete_object(b"relative"), Path::new("relative"));
    assert_eq!(times_of(&dir.path().join("beside")), before);
    assert_eq!(fs::read(dir.path().join("beside")).unwrap(), b"kept");
    // RST-2: nothing outside the alternate root, as create refuses it, including a directory
    // whose name starts with the root's; what is there is left as it was.
    fs::create_dir(dir.path().join("alt-beside")).unwrap();
    fs::write(dir.path().join("alt-beside/f"), b"kept").unwrap();
    set_times(&dir.path().join("alt-beside/f"), 1_500_000_000, 7);
    for outside in [dir.path().join("beside"), dir.path().join("alt-beside/f")] {
        let before = times_of(&outside);
        refused_naming(r.set_utimes(&b(&outside), Some(t), Some(t)), &outside);
        refused_naming(r.delete_object(&b(&outside)), &outside);
        assert_eq!(times_of(&outside), before, "{}", outside.display());
        assert_eq!(
            fs::read(&outside).ok().as_deref(),
            Some(&b"kept"[..]),
            "{}",
            outside.display()
        );
    }
    let missing = dir.path().join("missing-outside");
    refused_naming(r.delete_object(&b(&missing)), &missing);
    let mut o = r
        .create_object(
            &b(&alt.join("d")),
            &aapi_object_prop_t {
                obj_type: AAPI_OBJ_DIR,
                ..Default::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(
        code_of(o.write(b"data")),
        AAPI_EINVAL,
        "directories have no data"
    );
    o.close().unwrap();
    let mut o = r
        .create_object(
            &b(&alt.join("l")),
            &aapi_object_prop_t {
                obj_type: AAPI_OBJ_SYMLINK,
                ..Default::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(
        code_of(o.write(b"a\0b")),
        AAPI_EINVAL,
        "no NUL in a link target"
    );
    // Left open with a good target: restore_postprocess(AAPI_EOK) completes it.
    o.write(b"d").unwrap();
    o.abandon();
    r.delete_object(&b(&alt.join("full/dir/x"))).unwrap();
    r.delete_object(&b(&alt.join("full/dir"))).unwrap();
    r.restore_postprocess(AAPI_EOK).unwrap();
    r.close().unwrap();
    assert!(!alt.join("full/dir").exists());
    assert_eq!(fs::read_link(alt.join("l")).unwrap(), Path::new("d"));
    plugin.terminate().unwrap();
}

/// Every entry under `root` (itself included) with what any change would move: type, mode,
/// owner, size, bytes or link target, atime, mtime and ctime to the nanosecond.
fn exact_state(root: &Path) -> std::collections::BTreeMap<Vec<u8>, Vec<i64>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let data = if md.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            vec![]
        } else if md.file_type().is_symlink() {
            b(&fs::read_link(&path).unwrap())
        } else {
            fs::read(&path).unwrap()
        };
        let mut v = vec![
            md.mode() as i64,
            md.uid() as i64,
            md.gid() as i64,
            md.size() as i64,
            md.atime(),
            md.atime_nsec(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec(),
        ];
        v.extend(data.iter().map(|&c| c as i64));
        out.insert(b(&path), v);
    }
    out
}

/// Assert a call was refused with `AAPI_EINVAL` and a message naming `path` and `link`.
fn refused_through<T: std::fmt::Debug>(
    r: Result<T, aapi_host::client::PluginError>,
    path: &Path,
    link: &Path,
) {
    let e = r.expect_err("a path through a symbolic link below the root must be refused");
    assert_eq!(e.code(), Some(AAPI_EINVAL), "{}: {e}", path.display());
    let text = e.to_string();
    assert!(
        text.contains(path.to_str().unwrap()) && text.contains(link.to_str().unwrap()),
        "the message names the path and the link: {e}"
    );
}

#[test]
fn under_an_alternate_root_no_symbolic_link_below_it_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    // Outside the root: a file and a directory with a file, atimes in the future so that no
    // read moves them, and every change (ctime included) shows.
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("victim"), b"victim").unwrap();
    fs::write(outside.join("sub/f"), b"f").unwrap();
    fs::write(outside.join("y"), b"y").unwrap();
    fs::write(outside.join("sub/z"), b"z").unwrap();
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 86_400;
    for p in ["victim", "sub/f", "y", "sub/z", "sub", ""] {
        let path = outside.join(p);
        let c = std::ffi::CString::new(b(&path)).unwrap();
        let t = [
            libc::timespec {
                tv_sec: future as libc::time_t,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            },
        ];
        // SAFETY: a NUL-terminated path and two valid timespecs.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), 0) };
        assert_eq!(rc, 0);
    }
    let before = exact_state(&outside);
    let unchanged = |when: &str| {
        let after = exact_state(&outside);
        assert!(
            after == before,
            "{when}: {} changed outside the alternate root",
            after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .chain(
                    before
                        .keys()
                        .filter(|k| !after.contains_key(*k))
                        .map(|k| format!("{} (removed)", String::from_utf8_lossy(k)))
                )
                .collect::<Vec<_>>()
                .join(", ")
        );
    };

    // The root is reached through a link of its own: that one is followed.
    let real_root = dir.path().join("real-root");
    fs::create_dir(&real_root).unwrap();
    let alt = dir.path().join("alt");
    std::os::unix::fs::symlink(&real_root, &alt).unwrap();
    let pre = alt.join("pre");
    std::os::unix::fs::symlink(&outside, &pre).unwrap();
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(&b(&alt), 100, 10).unwrap();
    let dir_prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_DIR,
        valid: AAPI_PROP_MODE,
        mode: 0o700,
        ..Default::default()
    };
    let symlink_prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_SYMLINK,
        ..Default::default()
    };
    let long_ago = Some(aapi_time_t {
        sec: 1_000_000_000,
        nsec: 0,
        reserved: 0,
    });
    // A link that was there: create (with and without missing parents, with overwrite),
    // set-times and delete through it are refused.
    for (rel, flags) in [
        ("pre/new.txt", 0),
        ("pre/victim", AAPI_CREATE_OVERWRITE),
        ("pre/missing/deep/new.txt", 0),
        ("pre/sub/f", AAPI_CREATE_OVERWRITE),
    ] {
        let path = alt.join(rel);
        refused_through(
            s.create_object(&b(&path), &file_prop(0o644), flags),
            &path,
            &pre,
        );
    }
    refused_through(
        s.create_object(&b(&alt.join("pre/sub")), &dir_prop, 0),
        &alt.join("pre/sub"),
        &pre,
    );
    for rel in ["pre/victim", "pre/sub", "pre/sub/f"] {
        let path = alt.join(rel);
        refused_through(s.set_utimes(&b(&path), long_ago, long_ago), &path, &pre);
        refused_through(s.delete_object(&b(&path)), &path, &pre);
    }
    // The link itself is an object: its own times are set, its target's are not.
    s.set_utimes(&b(&pre), long_ago, long_ago).unwrap();
    assert_eq!(
        fs::symlink_metadata(&pre).unwrap().mtime(),
        1_000_000_000,
        "the link's own times"
    );
    unchanged("through a link that was there");

    // A link the restore made, then objects beneath it.
    let made = alt.join("made");
    let mut o = s.create_object(&b(&made), &symlink_prop, 0).unwrap();
    o.write(&b(&outside)).unwrap();
    o.close().unwrap();
    assert_eq!(fs::read_link(&made).unwrap(), outside);
    for (rel, flags) in [
        ("made/new.txt", 0),
        ("made/victim", AAPI_CREATE_OVERWRITE),
        ("made/sub/new/deeper.txt", 0),
    ] {
        let path = alt.join(rel);
        refused_through(
            s.create_object(&b(&path), &file_prop(0o644), flags),
            &path,
            &made,
        );
    }
    let path = alt.join("made/sub/link");
    refused_through(s.create_object(&b(&path), &symlink_prop, 0), &path, &made);
    let path = alt.join("made/victim");
    refused_through(s.set_utimes(&b(&path), long_ago, None), &path, &made);
    refused_through(s.delete_object(&b(&path)), &path, &made);
    unchanged("through a link the restore made");
    // What lies inside the root is restored as before.
    let mut o = s
        .create_object(&b(&alt.join("in/side.txt")), &file_prop(0o640), 0)
        .unwrap();
    o.write(b"inside").unwrap();
    o.close().unwrap();
    assert_eq!(fs::read(real_root.join("in/side.txt")).unwrap(), b"inside");

    // The rollback of the failed restore stays inside the root too.
    s.restore_postprocess(AAPI_EIO).unwrap();
    s.close().unwrap();
    unchanged("after the rollback");
    assert!(
        fs::symlink_metadata(&made).is_err(),
        "the made link is removed"
    );
    assert!(
        !real_root.join("in").exists(),
        "the made directory is removed"
    );
    assert_eq!(
        fs::read_link(&pre).unwrap(),
        outside,
        "the link that was there stays"
    );

    // A link that appears during the restore, where another process swaps a directory for one:
    // the rollback does not follow it either.
    fs::create_dir_all(real_root.join("d/sub")).unwrap();
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(&b(&alt), 100, 2).unwrap();
    for rel in ["d/sub/z", "d/y"] {
        let mut o = s
            .create_object(&b(&alt.join(rel)), &file_prop(0o600), 0)
            .unwrap();
        o.write(b"restored").unwrap();
        o.close().unwrap();
    }
    fs::rename(real_root.join("d"), real_root.join("d-moved")).unwrap();
    std::os::unix::fs::symlink(&outside, real_root.join("d")).unwrap();
    let e = s
        .restore_postprocess(AAPI_EIO)
        .expect_err("the objects beyond the link cannot be removed");
    assert_eq!(e.code(), Some(AAPI_EIO), "{e}");
    s.close().unwrap();
    unchanged("after the rollback through a link that appeared");

    // A restore to the original location follows a parent directory's link, as a system's
    // own paths need (a /home that is a link, say).
    let home = dir.path().join("home-real");
    fs::create_dir(&home).unwrap();
    let home_link = dir.path().join("home");
    std::os::unix::fs::symlink(&home, &home_link).unwrap();
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(b"", 10, 1).unwrap();
    let mut o = s
        .create_object(&b(&home_link.join("user/f.txt")), &file_prop(0o600), 0)
        .unwrap();
    o.write(b"home").unwrap();
    o.close().unwrap();
    s.set_utimes(&b(&home_link.join("user/f.txt")), long_ago, long_ago)
        .unwrap();
    s.restore_postprocess(AAPI_EOK).unwrap();
    s.close().unwrap();
    assert_eq!(fs::read(home.join("user/f.txt")).unwrap(), b"home");
    assert_eq!(
        fs::metadata(home.join("user/f.txt")).unwrap().mtime(),
        1_000_000_000
    );
    plugin.terminate().unwrap();
}

#[test]
fn the_alternate_root_stays_the_directory_it_was_at_preprocess() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"victim").unwrap();
    // Atimes in the future, so that no read moves them: any change shows.
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 86_400;
    for p in [outside.join("victim"), outside.clone()] {
        set_atime_mtime(&p, ((future, 0), (1_600_000_000, 0)));
    }
    let outside_before = exact_state(&outside);
    // The root is given as a link to the real directory.
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
    let root_times = ((1_600_000_000, 123), (1_500_000_000, 456));
    set_atime_mtime(&real, root_times);
    let alt = dir.path().join("alt");
    std::os::unix::fs::symlink(&real, &alt).unwrap();
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(&b(&alt), 100, 8).unwrap();
    let symlink_prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_SYMLINK,
        ..Default::default()
    };
    // RST-10: any other object type at the root's path is refused, with overwrite too, however
    // the path names the root.
    let dot = p(&[b(&alt), b"/.".to_vec()].concat());
    let slash = p(&[b(&alt), b"/".to_vec()].concat());
    for (path, prop) in [
        (&alt, symlink_prop),
        (&dot, file_prop(0o644)),
        (&slash, file_prop(0o644)),
    ] {
        for flags in [0, AAPI_CREATE_OVERWRITE] {
            let e = s
                .create_object(&b(path), &prop, flags)
                .expect_err("nothing but a directory replaces the root");
            assert_eq!(e.code(), Some(AAPI_EEXIST), "{}: {e}", path.display());
        }
        // Nor is the root deleted.
        refused_naming(s.delete_object(&b(path)), path);
    }
    assert!(fs::symlink_metadata(&alt).unwrap().file_type().is_symlink());
    // A directory object there reuses the root, with overwrite too: the link stays, the real
    // directory gets the object's mode.
    let dir_prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_DIR,
        valid: AAPI_PROP_MODE,
        mode: 0o750,
        ..Default::default()
    };
    for path in [&alt, &slash] {
        s.create_object(&b(path), &dir_prop, AAPI_CREATE_OVERWRITE)
            .unwrap()
            .close()
            .unwrap();
    }
    assert_eq!(fs::read_link(&alt).unwrap(), real);
    assert_eq!(mode_owner(&real).0, 0o750);
    assert!(leftovers(dir.path(), ".aapi-").is_empty());
    // Another process moves the root away and puts a link to elsewhere at its path: the restore
    // stays in the directory it opened.
    let moved = dir.path().join("real-moved");
    fs::rename(&real, &moved).unwrap();
    fs::remove_file(&alt).unwrap();
    std::os::unix::fs::symlink(&outside, &alt).unwrap();
    let parent_times = times_of(dir.path());
    let mut o = s
        .create_object(
            &b(&alt.join("victim")),
            &file_prop(0o600),
            AAPI_CREATE_OVERWRITE,
        )
        .unwrap();
    o.write(b"restored").unwrap();
    o.close().unwrap();
    assert_eq!(fs::read(moved.join("victim")).unwrap(), b"restored");
    // Its own times are set through its descriptor.
    let t = ((1_400_000_000, 1), (1_300_000_000, 2));
    s.set_utimes(&b(&alt), Some(time_of(t.0)), Some(time_of(t.1)))
        .unwrap();
    assert_eq!(times_of(&moved), t);
    assert_unchanged_outside(&outside, &outside_before);
    // The rollback puts back what the root had, through its descriptor too, and touches
    // nothing outside it: neither the link's target nor the directory that holds the root.
    s.restore_postprocess(AAPI_EIO).unwrap();
    s.close().unwrap();
    assert!(!moved.join("victim").exists());
    assert_eq!(times_of(&moved), root_times);
    assert_eq!(mode_owner(&moved).0, 0o755);
    assert_eq!(times_of(dir.path()), parent_times);
    assert_unchanged_outside(&outside, &outside_before);
    plugin.terminate().unwrap();
}

/// Assert that nothing under `outside` changed since `before` ([`exact_state`]).
fn assert_unchanged_outside(
    outside: &Path,
    before: &std::collections::BTreeMap<Vec<u8>, Vec<i64>>,
) {
    let after = exact_state(outside);
    let changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .chain(
            before
                .keys()
                .filter(|k| !after.contains_key(*k))
                .map(|k| format!("{} (removed)", String::from_utf8_lossy(k))),
        )
        .collect();
    assert!(changed.is_empty(), "changed outside the root: {changed:?}");
}

#[test]
fn a_failed_restore_to_the_original_location_puts_back_directories_reached_through_links() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, _, _) = load(dir.path());
    // /home -> /srv, as a system may have it; objects restored through either path.
    let srv = dir.path().join("srv");
    fs::create_dir_all(srv.join("keep")).unwrap();
    let home = dir.path().join("home");
    std::os::unix::fs::symlink(&srv, &home).unwrap();
    let before = ((1_600_000_000, 11), (1_500_000_000, 22));
    let keep_before = ((1_600_000_001, 33), (1_500_000_001, 44));
    set_atime_mtime(&srv.join("keep"), keep_before);
    set_atime_mtime(&srv, before);
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(b"", 100, 4).unwrap();
    for path in [
        home.join("f"),
        srv.join("g"),
        home.join("sub/h"),
        home.join("keep/k"),
    ] {
        let mut o = s.create_object(&b(&path), &file_prop(0o600), 0).unwrap();
        o.write(b"x").unwrap();
        o.close().unwrap();
    }
    s.restore_postprocess(AAPI_EIO).unwrap();
    s.close().unwrap();
    for gone in ["f", "g", "sub", "keep/k"] {
        assert!(fs::symlink_metadata(srv.join(gone)).is_err(), "{gone}");
    }
    assert_eq!(times_of(&srv.join("keep")), keep_before);
    assert_eq!(times_of(&srv), before, "the real directory behind the link");
    assert!(
        fs::symlink_metadata(&home)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    plugin.terminate().unwrap();
}
