//! The Rust and the C sample implement one specification (sample-plugin/README.md). This test
//! holds them to it side by side on one generated tree: the same workload files byte for byte
//! (full and cumulative incremental, with and without a snapshot), the same bytes and properties
//! read back, the same restored trees (equal to the original), and the same code for every bad
//! call of a long script.

use aapi_host::client::{DiscoveryArgs, HostHooks, Plugin, Server, SessionDef};
use aapi_host::loader::{EntryPoints, PluginLibrary};
use aapi_sample_plugin_c::PLUGIN_PATH;
use aapi_sdk::abi::*;
use aapi_sdk::props::{AAPI_PROP_LAST_BACKUP_TIME, AAPI_PROP_LAST_FULL_TIME};
use aapi_sdk::workload::{WorkloadFile, file_name};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, c_char, c_int, c_void};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Each plugin has one global state per process: the tests take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _level: u32, _message: &str) {}
}

/// A plugin initialised for one test and terminated when dropped, so that a test that fails
/// half way does not leave it initialised: the next test's init would fail ("aapi_pgn_init
/// called again") and hide the real failure.
struct Initialised(Plugin);

impl Initialised {
    /// Initialise `lib` and claim `files`.
    fn new(lib: PluginLibrary) -> Initialised {
        let plugin = Initialised(lib.init(Arc::new(Quiet)).unwrap());
        assert_eq!(plugin.claim("files"), Ok(true));
        plugin
    }
}

impl std::ops::Deref for Initialised {
    type Target = Plugin;
    fn deref(&self) -> &Plugin {
        &self.0
    }
}

impl Drop for Initialised {
    fn drop(&mut self) {
        // A repeated terminate is AAPI_EOK (LIFE-7): harmless after the test's own.
        let _ = self.0.terminate();
    }
}

/// Terminates a plugin driven through its raw entry points when dropped, as [`Initialised`].
struct TerminateOnDrop(EntryPoints);

impl Drop for TerminateOnDrop {
    fn drop(&mut self) {
        // SAFETY: aapi_terminate takes no arguments and may be called at any time (LIFE-7).
        unsafe { (self.0.terminate)() };
    }
}

/// (name, library) of both samples.
fn samples() -> [(&'static str, PluginLibrary); 2] {
    let rust = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("libaapi_sample_plugin.so");
    [
        ("c", PluginLibrary::open(Path::new(PLUGIN_PATH)).unwrap()),
        ("rust", PluginLibrary::open(&rust).unwrap()),
    ]
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = CString::new(bytes(p)).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: a valid NUL-terminated path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

/// The tree both plugins back up: sizes from 0 to 3 MiB, odd names, symlinks (one dangling), a
/// read-only directory with contents, a fifo (never an object). Returns its root.
fn make_tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    fs::create_dir(&root).unwrap();
    for d in ["sp ace", "sp ace/deep", "ro", "sub"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    let mut x = 7u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect()
    };
    let files: Vec<(PathBuf, Vec<u8>, u32)> = vec![
        (root.join("big.bin"), noise(3 * 1024 * 1024 + 5), 0o640),
        (root.join("medium.bin"), noise(1024 * 1024 + 17), 0o600),
        (root.join("small.txt"), b"hello\n".to_vec(), 0o644),
        (root.join("empty"), Vec::new(), 0o600),
        (root.join("run.sh"), b"#!/bin/sh\n".to_vec(), 0o755),
        (root.join("name\nwith newline"), b"odd\n".to_vec(), 0o644),
        (
            root.join(OsStr::from_bytes(b"latin1-\xe9\xff")),
            b"x".to_vec(),
            0o644,
        ),
        (root.join("sp ace/deep/file.txt"), noise(4096), 0o644),
        (root.join("sub/a"), noise(10), 0o644),
        (root.join("sub/b"), noise(20_000), 0o644),
        (root.join("ro/inside"), b"read-only dir\n".to_vec(), 0o444),
    ];
    // As root, setuid bits are restored too (owner first, then mode: chown clears them).
    let files = if is_root() {
        [
            files,
            vec![(root.join("setuid"), b"#!/bin/sh\n".to_vec(), 0o4755)],
        ]
        .concat()
    } else {
        files
    };
    for (p, data, mode) in &files {
        fs::write(p, data).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(*mode)).unwrap();
    }
    symlink("small.txt", root.join("link")).unwrap();
    symlink("/nonexistent target", root.join("sub/dangling")).unwrap();
    let fifo = CString::new(bytes(&root.join("pipe"))).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // Fixed times, directories last (writing into them changes theirs).
    let mut all: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    all.extend([root.join("link"), root.join("sub/dangling")]);
    all.extend(["sp ace/deep", "sp ace", "ro", "sub"].map(|d| root.join(d)));
    all.push(root.clone());
    for (i, p) in all.iter().enumerate() {
        set_times(
            p,
            (1_700_000_000, 0),
            (1_500_000_000 + i as i64 * 1000, 123_456_789),
        );
    }
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    root
}

// ------------------------------------------------------------------------------------------
// Same workload files, same data and properties, same restored trees
// ------------------------------------------------------------------------------------------

/// One object as a backup read it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Read {
    path: Vec<u8>,
    /// The snapshot path, without the plugin's own snapshot directory.
    mapped: Vec<u8>,
    /// Type, size, mode, uid, gid, mtime and valid bits (ctime too without a snapshot: a copy
    /// made by each plugin has its own; atime is what the file system makes of reads).
    props: Vec<i64>,
    data: Vec<u8>,
}

struct Outcome {
    snapid: String,
    workload_files: BTreeMap<String, Vec<u8>>,
    read: Vec<Read>,
}

const HOSTS: [&str; 3] = ["bh1", "bh2", "bh3"];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Objects of the generated tree: its root, 4 directories, 11 files (12 as root), 2 symlinks.
fn objects() -> usize {
    if is_root() { 19 } else { 18 }
}

fn props_key(p: &aapi_object_prop_t, with_ctime: bool) -> Vec<i64> {
    let mut v = vec![
        p.obj_type as i64,
        p.size as i64,
        p.mode as i64,
        p.uid as i64,
        p.gid as i64,
        p.mtime.sec,
        p.mtime.nsec as i64,
        p.valid as i64,
    ];
    if with_ctime {
        v.extend([p.ctime.sec, p.ctime.nsec as i64]);
    }
    v
}

/// Discovery, backup of every workload file and postprocess with one plugin.
fn backup(
    plugin: &Plugin,
    work: &Path,
    selections: &[Vec<u8>],
    schedule: u32,
    properties: &[(String, String)],
    snap_dir: &Path,
) -> Outcome {
    let out = work.join("wkld");
    fs::create_dir_all(&out).unwrap();
    let hosts: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    let args = DiscoveryArgs {
        selections,
        backup_hosts: &hosts,
        workload_dir: &out,
        suffix: ".wkld",
        schedule,
    };
    let session = |op: u32, snapid: &str| {
        let mut def = SessionDef::new(op);
        def.schedule = schedule;
        def.job_id = "job/1 é".into();
        def.snapid = snapid.into();
        def.properties = properties.to_vec();
        plugin.open_server("fileserver", def).unwrap()
    };
    let d = session(AAPI_OP_DISCOVERY, "");
    let snapid = d.discovery(&args).unwrap();
    d.close().unwrap();

    let mut workload_files = BTreeMap::new();
    let mut read = Vec::new();
    for h in &hosts {
        let file = file_name(&out, h, ".wkld");
        workload_files.insert(h.clone(), fs::read(&file).unwrap());
        let wf = WorkloadFile::read_from_path(&file).expect("a valid workload file");
        let s = session(AAPI_OP_BACKUP, &snapid);
        for e in wf
            .entries
            .iter()
            .filter(|e| e.flags & AAPI_WKLD_UNCHANGED == 0)
        {
            read.push(read_one(&s, &snapid, bytes(&e.path), snap_dir));
        }
        s.close().unwrap();
    }
    let p = session(AAPI_OP_POSTPROCESS, &snapid);
    p.postprocess(&args, &snapid).unwrap();
    p.close().unwrap();
    if !snapid.is_empty() {
        assert!(
            !snap_dir.join(&snapid).exists(),
            "postprocess left the snapshot"
        );
    }
    read.sort();
    Outcome {
        snapid,
        workload_files,
        read,
    }
}

fn read_one(s: &Server, snapid: &str, path: &[u8], snap_dir: &Path) -> Read {
    let snap = s.snappath(snapid, path).unwrap();
    let mapped = match snap.strip_prefix(bytes(snap_dir)) {
        Some(rest) if !snapid.is_empty() => rest.to_vec(),
        _ => snap.clone(),
    };
    let mut o = s.open_object(&snap).unwrap();
    let prop = o.prop().unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = o.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    o.close().unwrap();
    assert_eq!(prop.size, data.len() as u64, "OBJ-2");
    Read {
        path: path.to_vec(),
        mapped,
        props: props_key(&prop, snapid.is_empty()),
        data,
    }
}

/// Restore what `read` holds under `root`, as the framework does.
fn restore(plugin: &Plugin, root: &Path, read: &[Read]) {
    fs::create_dir_all(root).unwrap();
    let s = plugin
        .open_server("fileserver", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    let total = read.iter().map(|r| r.data.len() as u64).sum();
    s.restore_preprocess(bytes(root), total, read.len() as u64)
        .unwrap();
    let target = |r: &Read| [bytes(root), r.path.as_slice()].concat();
    let times = |r: &Read| {
        let t = aapi_time_t {
            sec: r.props[5],
            nsec: r.props[6] as u32,
            reserved: 0,
        };
        (
            Some(aapi_time_t {
                sec: 1_700_000_000,
                nsec: 0,
                reserved: 0,
            }),
            Some(t),
        )
    };
    for r in read {
        let prop = aapi_object_prop_t {
            obj_type: r.props[0] as u32,
            valid: AAPI_PROP_MODE | AAPI_PROP_OWNER,
            mode: r.props[2] as u32,
            uid: r.props[3] as u32,
            gid: r.props[4] as u32,
            ..Default::default()
        };
        let mut o = s.create_object(&target(r), &prop, 0).unwrap();
        for chunk in r.data.chunks(64 * 1024) {
            o.write(chunk).unwrap();
        }
        o.flush().unwrap();
        o.close().unwrap();
        if prop.obj_type != AAPI_OBJ_DIR {
            let (a, m) = times(r);
            s.set_utimes(&target(r), a, m).unwrap();
        }
    }
    for r in read
        .iter()
        .rev()
        .filter(|r| r.props[0] as u32 == AAPI_OBJ_DIR)
    {
        let (a, m) = times(r);
        s.set_utimes(&target(r), a, m).unwrap();
    }
    s.restore_postprocess(AAPI_EOK).unwrap();
    s.close().unwrap();
}

/// One entry of a tree on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TreeEntry {
    rel: Vec<u8>,
    kind: u32,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    data: Vec<u8>,
    atime: i64,
}

/// Every entry of the tree at `root` (itself included), fifos aside.
fn snapshot_of_tree(root: &Path) -> Vec<TreeEntry> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let data = if ft.is_file() {
            fs::read(&p).unwrap()
        } else if ft.is_symlink() {
            bytes(&fs::read_link(&p).unwrap()).to_vec()
        } else {
            Vec::new()
        };
        if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        if ft.is_fifo() {
            continue;
        }
        out.push(TreeEntry {
            rel: bytes(&p)[bytes(root).len()..].to_vec(),
            kind: md.mode() & 0o170000,
            mode: if ft.is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            },
            size: if ft.is_dir() { 0 } else { md.len() },
            mtime: (md.mtime(), md.mtime_nsec()),
            data,
            atime: md.atime(),
        });
    }
    out.sort();
    out
}

#[test]
fn same_workload_files_data_properties_and_restores() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path());
    // Overlapping selections: the subdirectory's objects are listed once (DISC-2).
    let selections = vec![bytes(&tree).to_vec(), bytes(&tree.join("sp ace")).to_vec()];
    let mut restored_trees = Vec::new();

    for mode in ["none", "copy"] {
        let mut outcomes = Vec::new();
        for (name, lib) in samples() {
            let plugin = Initialised::new(lib);
            let work = dir.path().join(mode).join(name);
            // One snapshot directory for both: the snapshot id names it (postprocess empties it).
            let snap_dir = dir.path().join(mode).join("snapshots");
            let props = vec![
                ("files.snapshot".to_string(), mode.to_string()),
                (
                    "files.snapshot_dir".to_string(),
                    snap_dir.to_string_lossy().into_owned(),
                ),
            ];
            let o = backup(
                &plugin,
                &work,
                &selections,
                AAPI_SCHED_FULL,
                &props,
                &snap_dir,
            );
            let root = work.join("restore");
            restore(&plugin, &root, &o.read);
            plugin.terminate().unwrap();
            restored_trees.push((
                format!("{mode}/{name}"),
                snapshot_of_tree(&root.join(tree.strip_prefix("/").unwrap())),
            ));
            outcomes.push((name, o));
        }
        let (c, rust) = (&outcomes[0].1, &outcomes[1].1);
        assert_eq!(c.snapid, rust.snapid, "snapshot ids ({mode})");
        // The job id's odd characters as "_", then the tag of the snapshot directory: 16 hex
        // digits of the FNV-1a 64 hash of its path.
        let tag = bytes(&dir.path().join(mode).join("snapshots"))
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, &c| {
                (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
            });
        let want = format!("files-job_1__-{tag:016x}");
        assert_eq!(c.snapid, if mode == "none" { "" } else { want.as_str() });
        assert_eq!(
            c.workload_files, rust.workload_files,
            "workload files differ ({mode})"
        );
        assert_eq!(c.read.len(), objects(), "objects backed up ({mode})");
        assert_eq!(c.read, rust.read, "objects read back differ ({mode})");
    }

    // Both restores of both modes give back the original tree (the fifo aside).
    // The original's atimes are what the backups' reads made of them: compared without.
    let without_atime = |v: &[TreeEntry]| {
        v.iter()
            .map(|e| TreeEntry {
                atime: 0,
                ..e.clone()
            })
            .collect::<Vec<_>>()
    };
    let original = snapshot_of_tree(&tree);
    assert_eq!(original.len(), objects());
    for (name, restored) in &restored_trees {
        assert_eq!(
            without_atime(restored),
            without_atime(&original),
            "restored tree {name}"
        );
        assert!(
            restored.iter().all(|e| e.atime == 1_700_000_000),
            "restored atimes of {name} (RST-5)"
        );
    }
}

#[test]
fn same_incremental_workload_files() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path());
    // Everything was created (ctime) before `since`; then three objects change at or after it.
    // File times come from the kernel's coarse clock, which can lag the system clock by a few
    // milliseconds: wait until a freshly written file carries a time at or after `since`.
    let since = now() + 1;
    let probe = dir.path().join("clock-probe");
    loop {
        fs::write(&probe, b"").unwrap();
        if fs::metadata(&probe).unwrap().mtime() >= since {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::write(tree.join("sub/a"), b"changed").unwrap();
    fs::write(tree.join("big.bin"), b"smaller now").unwrap();
    fs::set_permissions(tree.join("small.txt"), fs::Permissions::from_mode(0o600)).unwrap();

    let mut files = Vec::new();
    for (name, lib) in samples() {
        let plugin = Initialised::new(lib);
        let work = dir.path().join(name);
        let props = vec![(AAPI_PROP_LAST_FULL_TIME.to_string(), since.to_string())];
        let o = backup(
            &plugin,
            &work,
            &[bytes(&tree).to_vec()],
            AAPI_SCHED_CINC,
            &props,
            &work,
        );
        plugin.terminate().unwrap();
        files.push(o.workload_files);
    }
    assert_eq!(files[0], files[1], "incremental workload files differ");
    let mut changed = Vec::new();
    let mut total = 0;
    for bytes in files[0].values() {
        let wf = WorkloadFile::read(&bytes[..]).unwrap();
        total += wf.entries.len();
        for e in wf
            .entries
            .iter()
            .filter(|e| e.flags & AAPI_WKLD_UNCHANGED == 0)
        {
            changed.push(e.path.strip_prefix(&tree).unwrap().to_path_buf());
        }
    }
    changed.sort();
    assert_eq!(
        total,
        objects(),
        "an incremental lists every object (DISC-8)"
    );
    // The directory holding the rewritten file changed too? No: writing a file's data changes
    // the file, not its directory.
    assert_eq!(
        changed,
        ["big.bin", "small.txt", "sub/a"].map(PathBuf::from),
        "changed objects"
    );
}

// ------------------------------------------------------------------------------------------
// Same directory times after a failed restore
// ------------------------------------------------------------------------------------------

/// (atime, mtime) of a path itself, to the nanosecond.
type Times = ((i64, i64), (i64, i64));

fn times_of(p: &Path) -> Times {
    let md = fs::symlink_metadata(p).unwrap();
    ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()))
}

fn aapi_time((sec, nsec): (i64, i64)) -> Option<aapi_time_t> {
    Some(aapi_time_t {
        sec,
        nsec: nsec as u32,
        reserved: 0,
    })
}

/// The times the framework gives the `i`th restored object, as from a backup.
fn backup_times(i: usize) -> Times {
    let i = i as i64;
    (
        (1_650_000_000 + i, 10_000_001 + i),
        (1_550_000_000 + i, 900_000_009 - i),
    )
}

/// What a restore into an existing tree left: the times of the restored objects (after a success)
/// or of the directories that existed (after a failure), the mode and owner of the directories
/// that existed, and every entry of the tree (type, mode, data).
#[derive(Debug, PartialEq)]
struct Left {
    times: Vec<(String, Times)>,
    modes: Vec<(String, ModeOwner)>,
    tree: Vec<(Vec<u8>, u32, u32, Vec<u8>)>,
}

/// (mode, uid, gid) of a path itself.
type ModeOwner = (u32, u32, u32);

fn mode_owner(p: &Path) -> ModeOwner {
    let md = fs::symlink_metadata(p).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid())
}

/// The owner the restore gives its directories (as root; otherwise they keep the running user).
const DIR_OWNER: (u32, u32) = (4321, 4322);

/// The directories of the target before the restore, the alternate root ("") among them, with
/// known times to the nanosecond; `del` loses an entry to `aapi_delete_object`.
const EXISTING: [&str; 6] = ["", "/a", "/a/b", "/a/b/c", "/a/reused", "/del"];

fn existing_times(i: usize) -> Times {
    let i = i as i64;
    (
        (1_600_000_000 + i, 111_111_111 * i + 7),
        (1_500_000_000 + i * 1000, 987_654_321 - i),
    )
}

/// Restore new objects into every directory of an existing tree (nested, with missing parents,
/// a replaced file, reused directories that get another mode and owner, one object left open),
/// then end the restore with `status`. Returns what it left and the mode and owner of the
/// directories that existed, before the restore.
fn restore_into_existing_tree(
    plugin: &Plugin,
    root: &Path,
    status: c_int,
) -> (Left, Vec<(String, ModeOwner)>) {
    let at = |rel: &str| PathBuf::from(format!("{}{rel}", root.display()));
    for d in EXISTING {
        fs::create_dir_all(at(d)).unwrap();
    }
    fs::write(at("/a/old.txt"), b"old").unwrap();
    fs::write(at("/a/b/c/keep.txt"), b"keep").unwrap();
    fs::write(at("/del/x"), b"x").unwrap();
    for (i, d) in EXISTING.iter().enumerate().rev() {
        let (a, m) = existing_times(i);
        set_times(&at(d), a, m);
    }
    let modes_of = || -> Vec<(String, ModeOwner)> {
        EXISTING
            .iter()
            .map(|d| (d.to_string(), mode_owner(&at(d))))
            .collect()
    };
    let modes_before = modes_of();
    let s = plugin
        .open_server("fileserver", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(bytes(root), 100, 12).unwrap();
    let prop = |kind: u32, mode: u32| aapi_object_prop_t {
        obj_type: kind,
        valid: AAPI_PROP_MODE,
        mode,
        ..Default::default()
    };
    let (file, link) = (prop(AAPI_OBJ_FILE, 0o600), prop(AAPI_OBJ_SYMLINK, 0));
    let dir = aapi_object_prop_t {
        valid: AAPI_PROP_MODE | AAPI_PROP_OWNER,
        uid: DIR_OWNER.0,
        gid: DIR_OWNER.1,
        ..prop(AAPI_OBJ_DIR, 0o2750)
    };
    let objects: [(&str, aapi_object_prop_t, &[u8], u32); 11] = [
        ("/top.txt", file, b"top", 0),
        ("/a", dir, b"", 0),
        ("/a/f1.txt", file, b"one", 0),
        ("/a/old.txt", file, b"new", AAPI_CREATE_OVERWRITE),
        ("/a/b", dir, b"", 0),
        ("/a/b/c/f2.txt", file, b"two", 0),
        ("/a/b/c/link", link, b"f2.txt", 0),
        ("/a/b/new/deeper/f3.txt", file, b"three", 0),
        ("/a/b/newdir", dir, b"", 0),
        ("/a/reused", dir, b"", 0),
        ("/del/y", file, b"y", 0),
    ];
    for (i, (rel, prop, data, flags)) in objects.iter().enumerate() {
        let mut o = s.create_object(bytes(&at(rel)), prop, *flags).unwrap();
        o.write(data).unwrap();
        o.close().unwrap();
        if prop.obj_type != AAPI_OBJ_DIR {
            let (a, m) = backup_times(i);
            s.set_utimes(bytes(&at(rel)), aapi_time(a), aapi_time(m))
                .unwrap();
        }
    }
    s.delete_object(bytes(&at("/del/x"))).unwrap();
    if status != AAPI_EOK {
        let mut o = s
            .create_object(bytes(&at("/a/b/c/open.txt")), &file, 0)
            .unwrap();
        o.write(b"unfinished").unwrap();
        o.abandon();
    }
    // Containers after their contents, deepest first, as the framework does.
    let mut dirs: Vec<(usize, &str)> = (0..objects.len())
        .filter(|&i| objects[i].1.obj_type == AAPI_OBJ_DIR)
        .map(|i| (i, objects[i].0))
        .collect();
    dirs.sort_by(|x, y| y.1.cmp(x.1));
    for (i, rel) in dirs {
        let (a, m) = backup_times(i);
        s.set_utimes(bytes(&at(rel)), aapi_time(a), aapi_time(m))
            .unwrap();
    }
    s.restore_postprocess(status).unwrap();
    s.close().unwrap();
    // Times before the listing: reading a directory moves its atime. After a success, those of
    // the restored objects; after a failure, those of the directories that existed.
    let times: Vec<(String, Times)> = if status == AAPI_EOK {
        objects.iter().map(|o| o.0).collect::<Vec<_>>()
    } else {
        EXISTING.to_vec()
    }
    .into_iter()
    .map(|rel| (rel.to_string(), times_of(&at(rel))))
    .collect();
    let modes = modes_of();
    let tree = snapshot_of_tree(root)
        .into_iter()
        .map(|e| (e.rel, e.kind, e.mode, e.data))
        .collect();
    (Left { times, modes, tree }, modes_before)
}

#[test]
fn same_directory_times_after_a_failed_restore() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    for status in [AAPI_EIO, AAPI_EOK] {
        let mut left = Vec::new();
        for (name, lib) in samples() {
            let plugin = Initialised::new(lib);
            let root = dir.path().join(format!("{name}-{status}"));
            let (l, modes_before) = restore_into_existing_tree(&plugin, &root, status);
            plugin.terminate().unwrap();
            if status == AAPI_EOK {
                for (k, (rel, t)) in l.times.iter().enumerate() {
                    assert_eq!(*t, backup_times(k), "{name}: {rel} has the backup's times");
                }
                // The reused directories keep the mode and owner of their objects.
                for ((d, got), (_, (_, uid, gid))) in l.modes.iter().zip(&modes_before) {
                    if ["/a", "/a/b", "/a/reused"].contains(&d.as_str()) {
                        let (mode, owner) = if is_root() {
                            (0o2750, DIR_OWNER)
                        } else {
                            (0o750, (*uid, *gid))
                        };
                        assert_eq!(*got, (mode, owner.0, owner.1), "{name}: {d:?}");
                    }
                }
                left.push(l);
                continue;
            }
            // Every directory that existed has its mode and owner back.
            assert_eq!(l.modes, modes_before, "{name}: modes and owners");
            // Every directory that existed has its times back, the alternate root included; the
            // one that lost an entry to aapi_delete_object shows it.
            for (i, (d, t)) in l.times.iter().enumerate() {
                if *d == "/del" {
                    assert_ne!(t.1, existing_times(i).1, "{name}: /del lost an entry");
                } else {
                    assert_eq!(*t, existing_times(i), "{name}: times of {d:?}");
                }
            }
            let rels: Vec<&[u8]> = l.tree.iter().map(|e| e.0.as_slice()).collect();
            assert_eq!(
                rels,
                [
                    &b""[..],
                    b"/a",
                    b"/a/b",
                    b"/a/b/c",
                    b"/a/b/c/keep.txt",
                    b"/a/old.txt",
                    b"/a/reused",
                    b"/del"
                ],
                "{name}: every created object is gone"
            );
            let old = l.tree.iter().find(|e| e.0 == b"/a/old.txt").unwrap();
            assert_eq!(old.3, b"old", "{name}: the replaced file is back");
            // When /del lost its entry differs between the two runs: compared without it.
            left.push(Left {
                times: l.times.into_iter().filter(|t| t.0 != "/del").collect(),
                ..l
            });
        }
        assert_eq!(left[0], left[1], "C and Rust differ (status {status})");
    }
}

/// A failed restore through links: to the original location through a parent link (`/home` ->
/// `/srv`, objects restored through both paths), and to an alternate root given as a link with a
/// directory object at the root's path. Returns the times and mode of the real directories after
/// the rollback, and what is left of the tree.
fn roll_back_through_links(plugin: &Plugin, base: &Path) -> (Vec<(Times, u32)>, Vec<Vec<u8>>) {
    let srv = base.join("srv");
    fs::create_dir_all(srv.join("keep")).unwrap();
    let home = base.join("home");
    symlink(&srv, &home).unwrap();
    let real = base.join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
    let alt = base.join("alt");
    symlink(&real, &alt).unwrap();
    for (i, d) in [
        srv.join("keep"),
        srv.clone(),
        real.clone(),
        base.to_path_buf(),
    ]
    .iter()
    .enumerate()
    {
        let (a, m) = existing_times(i);
        set_times(d, a, m);
    }
    let file = aapi_object_prop_t {
        obj_type: AAPI_OBJ_FILE,
        valid: AAPI_PROP_MODE,
        mode: 0o600,
        ..Default::default()
    };
    let dir = aapi_object_prop_t {
        obj_type: AAPI_OBJ_DIR,
        valid: AAPI_PROP_MODE,
        mode: 0o700,
        ..Default::default()
    };
    let restore = |root: &[u8], objects: &[(PathBuf, aapi_object_prop_t)]| {
        let s = plugin
            .open_server("fileserver", SessionDef::new(AAPI_OP_RESTORE))
            .unwrap();
        s.restore_preprocess(root, 100, 4).unwrap();
        for (path, prop) in objects {
            let mut o = s.create_object(bytes(path), prop, 0).unwrap();
            o.write(if prop.obj_type == AAPI_OBJ_FILE {
                b"x"
            } else {
                b""
            })
            .unwrap();
            o.close().unwrap();
        }
        s.restore_postprocess(AAPI_EIO).unwrap();
        s.close().unwrap();
    };
    restore(
        b"",
        &[
            (home.join("f"), file),
            (srv.join("g"), file),
            (home.join("sub/h"), file),
            (home.join("keep/k"), file),
        ],
    );
    restore(
        bytes(&alt),
        &[
            (alt.clone(), dir),
            (alt.join("a"), file),
            (alt.join("d/f"), file),
        ],
    );
    let state = [srv.join("keep"), srv, real, base.to_path_buf()]
        .iter()
        .map(|d| (times_of(d), mode_owner(d).0))
        .collect();
    let tree = snapshot_of_tree(base).into_iter().map(|e| e.rel).collect();
    (state, tree)
}

#[test]
fn same_rollback_of_directories_reached_through_links() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let mut left = Vec::new();
    for (name, lib) in samples() {
        let plugin = Initialised::new(lib);
        let base = dir.path().join(name);
        let (state, tree) = roll_back_through_links(&plugin, &base);
        plugin.terminate().unwrap();
        // The real directories behind the links have their times and modes back, and the
        // directory that holds the alternate root was not touched.
        for (i, (times, mode)) in state.iter().enumerate() {
            assert_eq!(*times, existing_times(i), "{name}: times of directory {i}");
            if i == 2 {
                assert_eq!(*mode, 0o755, "{name}: mode of the root");
            }
        }
        let names: Vec<&[u8]> = tree.iter().map(|r| r.as_slice()).collect();
        assert_eq!(
            names,
            [&b""[..], b"/alt", b"/home", b"/real", b"/srv", b"/srv/keep"],
            "{name}: every created object is gone"
        );
        left.push((state, tree));
    }
    assert_eq!(left[0], left[1], "C and Rust differ");
}

// ------------------------------------------------------------------------------------------
// Same codes for the same bad calls
// ------------------------------------------------------------------------------------------

extern "C" fn log_cb(_ctx: *mut c_void, _level: u32, _message: *const c_char) {}
extern "C" fn keepalive_cb(_ctx: *mut c_void) -> c_int {
    AAPI_EOK
}
extern "C" fn credential_cb(
    _ctx: *mut c_void,
    _key: *const c_char,
    _buf: *mut c_char,
    _size: *mut usize,
) -> c_int {
    AAPI_ENOENT
}

/// A call of a raw entry point in the script below.
macro_rules! raw {
    ($call:expr) => {
        // SAFETY: the script passes valid pointers, or NULL exactly where the case is that the
        // plugin must refuse a NULL argument with AAPI_EINVAL.
        unsafe { $call }
    };
}

/// A session definition and everything it points to, alive as long as the value.
struct RawSession {
    def: aapi_session_def_t,
    _strings: Vec<CString>,
    _props: Vec<aapi_property_t>,
}

fn raw_session(
    op: u32,
    props: &[(&str, &str)],
    tweak: impl FnOnce(&mut aapi_session_def_t),
) -> Box<RawSession> {
    let mut strings = Vec::new();
    let mut c = |s: &str| {
        let c = CString::new(s).unwrap();
        let p = c.as_ptr();
        strings.push(c);
        p
    };
    let job = c("job-7");
    let host = c("bh1");
    let snap = c("");
    let props: Vec<aapi_property_t> = props
        .iter()
        .map(|(k, v)| aapi_property_t {
            key: c(k),
            value: c(v),
        })
        .collect();
    let mut def = aapi_session_def_t {
        struct_size: size_of::<aapi_session_def_t>() as u32,
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        sd_operation: op,
        sd_schedtype: AAPI_SCHED_FULL,
        sd_job_id: job,
        sd_backup_host: host,
        sd_snapid: snap,
        sd_properties: if props.is_empty() {
            std::ptr::null()
        } else {
            props.as_ptr()
        },
        sd_property_count: props.len(),
        sd_call_budget_ms: AAPI_DEFAULT_CALL_BUDGET_MS,
        sd_reserved: 0,
        sd_callback_ctx: std::ptr::null_mut(),
        sd_log_callback: Some(log_cb),
        sd_keepalive_callback: Some(keepalive_cb),
        sd_credential_callback: Some(credential_cb),
    };
    tweak(&mut def);
    Box::new(RawSession {
        def,
        _strings: strings,
        _props: props,
    })
}

fn cstr(s: &[u8]) -> CString {
    CString::new(s).unwrap()
}

/// The raw entry points of one plugin, the session definitions it holds, and the codes seen.
struct Script {
    e: EntryPoints,
    #[allow(
        clippy::vec_box,
        reason = "a plugin keeps pointers into each session definition until close_server: \
                  boxes keep them in place when the Vec grows"
    )]
    keep: Vec<Box<RawSession>>,
    seen: Vec<(String, c_int, c_int)>,
}

impl Script {
    fn expect(&mut self, label: &str, code: c_int, want: c_int) {
        if code != AAPI_EOK {
            let mut size = 0usize;
            // SAFETY: a size query: NULL buffer with size 0.
            let rc = unsafe { (self.e.get_last_error)(std::ptr::null_mut(), &mut size) };
            assert!(
                rc == AAPI_EBUFSIZE && size > 1,
                "{label}: no last-error message (RC-10)"
            );
        }
        self.seen.push((label.to_string(), code, want));
    }

    /// Like [`Script::expect`], for a call refused because of `path`: its message must name it.
    fn expect_naming(&mut self, label: &str, code: c_int, want: c_int, path: &[u8]) {
        self.expect_naming_all(label, code, want, &[path]);
    }

    /// Like [`Script::expect_naming`], for a message that must name each of `paths`.
    fn expect_naming_all(&mut self, label: &str, code: c_int, want: c_int, paths: &[&[u8]]) {
        self.expect(label, code, want);
        if code != AAPI_EOK {
            let mut buf = vec![0u8; 4096];
            let mut size = buf.len();
            // SAFETY: buf holds `size` bytes.
            let rc = unsafe { (self.e.get_last_error)(buf.as_mut_ptr().cast(), &mut size) };
            assert_eq!(rc, AAPI_EOK, "{label}: get_last_error");
            let message = &buf[..size.saturating_sub(1)];
            for path in paths {
                assert!(
                    message.windows(path.len()).any(|w| w == *path),
                    "{label}: the message does not name {}: {}",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(message)
                );
            }
        }
    }

    fn init(&self, tweak: impl FnOnce(&mut aapi_host_info_t, &mut aapi_plugin_info_t)) -> c_int {
        let mut host = aapi_host_info_t {
            struct_size: size_of::<aapi_host_info_t>() as u32,
            abi_major: AAPI_ABI_MAJOR,
            abi_minor: AAPI_ABI_MINOR,
            framework_name: c"compare".as_ptr(),
            framework_version: c"1".as_ptr(),
            callback_ctx: std::ptr::null_mut(),
            log_callback: Some(log_cb),
        };
        // SAFETY: plain data; all-zero is a valid value.
        let mut info: aapi_plugin_info_t = unsafe { std::mem::zeroed() };
        info.struct_size = size_of::<aapi_plugin_info_t>() as u32;
        tweak(&mut host, &mut info);
        // SAFETY: both structs are valid for the call.
        unsafe { (self.e.pgn_init)(&host, &mut info) }
    }

    fn open(&mut self, server: &[u8], s: Box<RawSession>) -> (c_int, aapi_server_t) {
        let name = cstr(server);
        let mut h = 0;
        // SAFETY: the session definition is boxed and kept in `self.keep` until the end.
        let rc = unsafe { (self.e.open_server)(name.as_ptr(), &s.def, &mut h) };
        self.keep.push(s);
        (rc, h)
    }

    fn session(&mut self, op: u32, props: &[(&str, &str)]) -> aapi_server_t {
        let (rc, h) = self.open(b"fileserver", raw_session(op, props, |_| {}));
        assert_eq!(rc, AAPI_EOK, "open_server");
        h
    }

    #[allow(clippy::too_many_arguments)]
    fn discovery(
        &self,
        h: aapi_server_t,
        sel: &[&[u8]],
        hosts: &[&str],
        dir: &Path,
        suffix: &str,
        sched: u32,
    ) -> c_int {
        let sel_c: Vec<CString> = sel.iter().map(|s| cstr(s)).collect();
        let hosts_c: Vec<CString> = hosts.iter().map(|s| cstr(s.as_bytes())).collect();
        let mut sel_p: Vec<*const c_char> = sel_c.iter().map(|c| c.as_ptr()).collect();
        sel_p.push(std::ptr::null());
        let mut hosts_p: Vec<*const c_char> = hosts_c.iter().map(|c| c.as_ptr()).collect();
        hosts_p.push(std::ptr::null());
        let dir = cstr(bytes(dir));
        let suffix = cstr(suffix.as_bytes());
        let mut id = aapi_snapid_t {
            id: [0; AAPI_SNAPID_MAX],
        };
        // SAFETY: NULL-terminated arrays of valid strings, valid out-struct.
        unsafe {
            (self.e.discovery)(
                h,
                sel_p.as_ptr(),
                hosts_p.as_ptr(),
                dir.as_ptr(),
                suffix.as_ptr(),
                sched,
                &mut id,
            )
        }
    }

    fn open_object(&self, h: aapi_server_t, path: &[u8], flags: u32) -> (c_int, aapi_object_t) {
        let p = cstr(path);
        let mut o = 0;
        // SAFETY: valid string and out-pointer.
        let rc = unsafe { (self.e.open_object)(h, p.as_ptr(), flags, &mut o) };
        (rc, o)
    }

    fn create(
        &self,
        h: aapi_server_t,
        path: &[u8],
        prop: aapi_object_prop_t,
        flags: u32,
    ) -> (c_int, aapi_object_t) {
        let p = cstr(path);
        let mut o = 0;
        // SAFETY: valid string, struct and out-pointer.
        let rc = unsafe { (self.e.create_object)(h, p.as_ptr(), &prop, flags, &mut o) };
        (rc, o)
    }

    fn read(&self, o: aapi_object_t, size: usize) -> c_int {
        let mut buf = vec![0u8; size.max(1)];
        let mut n = 0;
        // SAFETY: buf holds at least `size` bytes.
        unsafe { (self.e.read_object)(o, buf.as_mut_ptr().cast(), size, &mut n) }
    }

    fn write(&self, o: aapi_object_t, data: &[u8]) -> c_int {
        // SAFETY: data is valid for its length.
        unsafe { (self.e.write_object)(o, data.as_ptr().cast(), data.len()) }
    }

    fn byname(&self, h: aapi_server_t, path: &[u8], struct_size: u32) -> c_int {
        let p = cstr(path);
        let mut prop = aapi_object_prop_t {
            struct_size,
            ..Default::default()
        };
        // SAFETY: valid string and struct.
        unsafe { (self.e.get_object_prop_byname)(h, p.as_ptr(), &mut prop) }
    }

    fn snappath(&self, h: aapi_server_t, snap: &str, real: &[u8], cap: usize) -> (c_int, usize) {
        let s = cstr(snap.as_bytes());
        let r = cstr(real);
        let mut buf = vec![0u8; cap.max(1)];
        let mut size = cap;
        let ptr = if cap == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: buf holds `cap` bytes (or is NULL with size 0).
        let rc = unsafe {
            (self.e.get_snappath_from_realpath)(h, s.as_ptr(), r.as_ptr(), ptr, &mut size)
        };
        (rc, size)
    }

    fn preprocess(&self, h: aapi_server_t, root: &[u8], total: u64, struct_size: u32) -> c_int {
        let r = cstr(root);
        let info = aapi_restore_info_t {
            struct_size,
            reserved: 0,
            target_root: r.as_ptr(),
            total_bytes: total,
            object_count: 1,
        };
        // SAFETY: valid struct and string.
        unsafe { (self.e.restore_preprocess)(h, &info) }
    }

    fn utimes(&self, h: aapi_server_t, path: &[u8], nsec: u32) -> c_int {
        let p = cstr(path);
        let t = aapi_time_t {
            sec: 1,
            nsec,
            reserved: 0,
        };
        // SAFETY: valid string and time.
        unsafe { (self.e.set_object_utimes)(h, p.as_ptr(), &t, std::ptr::null()) }
    }

    fn delete(&self, h: aapi_server_t, path: &[u8]) -> c_int {
        let p = cstr(path);
        // SAFETY: valid string.
        unsafe { (self.e.delete_object)(h, p.as_ptr()) }
    }
}

/// label, selections, backup hosts, workload directory, suffix, schedule, expected code.
type DiscoveryCase = (
    &'static str,
    Vec<Vec<u8>>,
    Vec<&'static str>,
    PathBuf,
    &'static str,
    u32,
    c_int,
);

/// Every entry under `root` (itself included) with what any change would move: type, mode,
/// owner, size, bytes or link target, atime, mtime and ctime to the nanosecond.
fn exact_state(root: &Path) -> BTreeMap<Vec<u8>, Vec<i64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let data = if md.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            vec![]
        } else if md.file_type().is_symlink() {
            bytes(&fs::read_link(&path).unwrap()).to_vec()
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
        out.insert(bytes(&path).to_vec(), v);
    }
    out
}

/// A directory outside every alternate root, with a file and a subdirectory, whose atimes lie in
/// the future so that no read moves them: [`exact_state`] of it shows any change.
fn outside_tree(dir: &Path) -> PathBuf {
    let outside = dir.join("outside-tree");
    fs::create_dir_all(outside.join("sub")).unwrap();
    for f in ["victim", "sub/f", "y", "sub/z"] {
        fs::write(outside.join(f), f.as_bytes()).unwrap();
    }
    for p in ["victim", "sub/f", "y", "sub/z", "sub", ""] {
        set_times(&outside.join(p), (now() + 86_400, 0), (1_600_000_000, 0));
    }
    outside
}

/// Assert that nothing under `outside` was created, changed or removed since `before`.
fn assert_unchanged(outside: &Path, before: &BTreeMap<Vec<u8>, Vec<i64>>, when: &str) {
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
    assert!(
        changed.is_empty(),
        "{when}: changed outside the alternate root: {}",
        changed.join(", ")
    );
}

fn file_prop(kind: u32) -> aapi_object_prop_t {
    aapi_object_prop_t {
        struct_size: size_of::<aapi_object_prop_t>() as u32,
        obj_type: kind,
        ..Default::default()
    }
}

/// The script: every bad call of sample-plugin/README.md's table and of the call-order rules,
/// each with the code the specification gives it.
fn bad_calls(s: &mut Script, dir: &Path, tree: &Path) {
    let e = s.e;
    let t = |p: &str| bytes(&tree.join(p)).to_vec();
    let out = dir.join("wkld");
    fs::create_dir_all(&out).unwrap();
    let restore_root = dir.join("restore");
    fs::create_dir_all(restore_root.join("full/dir")).unwrap();
    fs::write(restore_root.join("existing"), b"x").unwrap();
    let under = |p: &str| [bytes(&restore_root), b"/", p.as_bytes()].concat();

    // Before init (LIFE-1).
    s.expect("terminate before init", raw!((e.terminate)()), AAPI_EOK);
    s.expect(
        "claim before init",
        raw!((e.pgn_claim)(c"files".as_ptr())),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "close_server before init",
        raw!((e.close_server)(1)),
        AAPI_ESEQUENCE,
    );
    s.expect("read before init", s.read(1, 8), AAPI_ESEQUENCE);
    s.expect(
        "get_last_error, NULL size",
        raw!((e.get_last_error)(
            std::ptr::null_mut(),
            std::ptr::null_mut()
        )),
        AAPI_EINVAL,
    );
    // Init (ABI-2, ABI-4).
    s.expect(
        "init, host major 2",
        s.init(|h, _| h.abi_major = 2),
        AAPI_EABI,
    );
    s.expect(
        "init, small host_info",
        s.init(|h, _| h.struct_size = 8),
        AAPI_EABI,
    );
    s.expect(
        "init, small plugin_info",
        s.init(|_, i| i.struct_size = 8),
        AAPI_EABI,
    );
    s.expect(
        "init, NULL log callback",
        s.init(|h, _| h.log_callback = None),
        AAPI_EINVAL,
    );
    s.expect("init", s.init(|_, _| {}), AAPI_EOK);
    s.expect("init twice (LIFE-2)", s.init(|_, _| {}), AAPI_ESEQUENCE);
    // Claim (LOAD-6, LIFE-3).
    s.expect(
        "claim NULL",
        raw!((e.pgn_claim)(std::ptr::null())),
        AAPI_EINVAL,
    );
    s.expect("claim \"\"", raw!((e.pgn_claim)(c"".as_ptr())), AAPI_EINVAL);
    s.expect(
        "claim Files",
        raw!((e.pgn_claim)(c"Files".as_ptr())),
        AAPI_ENOTCLAIMED,
    );
    let (rc, _) = s.open(b"fileserver", raw_session(AAPI_OP_BACKUP, &[], |_| {}));
    s.expect("open_server before claim", rc, AAPI_ESEQUENCE);
    s.expect(
        "claim files",
        raw!((e.pgn_claim)(c"files".as_ptr())),
        AAPI_EOK,
    );
    // Open server.
    let bad_sessions: Vec<(&str, Box<RawSession>, c_int)> = vec![
        (
            "small session struct",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.struct_size = 8),
            AAPI_EABI,
        ),
        (
            "session major 2",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.abi_major = 2),
            AAPI_EABI,
        ),
        (
            "unknown operation",
            raw_session(9, &[], |_| {}),
            AAPI_EINVAL,
        ),
        (
            "unknown schedule",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.sd_schedtype = 9),
            AAPI_EINVAL,
        ),
        (
            "budget 0",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.sd_call_budget_ms = 0),
            AAPI_EINVAL,
        ),
        (
            "NULL keepalive",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.sd_keepalive_callback = None),
            AAPI_EINVAL,
        ),
        (
            "NULL job id",
            raw_session(AAPI_OP_BACKUP, &[], |d| d.sd_job_id = std::ptr::null()),
            AAPI_EINVAL,
        ),
        (
            "files.snapshot=bogus",
            raw_session(AAPI_OP_BACKUP, &[("files.snapshot", "bogus")], |_| {}),
            AAPI_EINVAL,
        ),
        (
            "relative files.snapshot_dir",
            raw_session(AAPI_OP_BACKUP, &[("files.snapshot_dir", "rel/dir")], |_| {}),
            AAPI_EINVAL,
        ),
        (
            "files.snapshot_dir with a .. component",
            raw_session(
                AAPI_OP_BACKUP,
                &[("files.snapshot_dir", "/tmp/../tmp/snaps")],
                |_| {},
            ),
            AAPI_EINVAL,
        ),
        (
            "files.reflink_fallback=maybe",
            raw_session(
                AAPI_OP_BACKUP,
                &[("files.reflink_fallback", "maybe")],
                |_| {},
            ),
            AAPI_EINVAL,
        ),
        (
            "files.min_free_bytes=12k",
            raw_session(AAPI_OP_BACKUP, &[("files.min_free_bytes", "12k")], |_| {}),
            AAPI_EINVAL,
        ),
        (
            "aapi.last_backup_time=-1",
            raw_session(
                AAPI_OP_BACKUP,
                &[(AAPI_PROP_LAST_BACKUP_TIME, "-1")],
                |_| {},
            ),
            AAPI_EINVAL,
        ),
        (
            "unknown files.* key",
            raw_session(AAPI_OP_BACKUP, &[("files.colour", "blue")], |_| {}),
            AAPI_EOK,
        ),
    ];
    for (label, session, want) in bad_sessions {
        let (rc, h) = s.open(b"fileserver", session);
        s.expect(label, rc, want);
        if rc == AAPI_EOK {
            raw!((e.close_server)(h));
        }
    }
    let (rc, _) = s.open(b"", raw_session(AAPI_OP_BACKUP, &[], |_| {}));
    s.expect("empty server name", rc, AAPI_EINVAL);
    let mut h = 0;
    let keep = raw_session(AAPI_OP_BACKUP, &[], |_| {});
    s.expect(
        "open_server, NULL server",
        raw!((e.open_server)(std::ptr::null(), &keep.def, &mut h)),
        AAPI_EINVAL,
    );
    s.expect(
        "open_server, NULL handle",
        raw!((e.open_server)(
            c"x".as_ptr(),
            &keep.def,
            std::ptr::null_mut()
        )),
        AAPI_EINVAL,
    );

    // Discovery (RC-3, RC-7, RC-8, LIFE-4). Each plugin-level check ends the session's one
    // discovery, so every case gets a fresh session.
    let tree_b = bytes(tree).to_vec();
    let cases: Vec<DiscoveryCase> = vec![
        (
            "no selection",
            vec![],
            vec!["bh1"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "empty selection",
            vec![b"".to_vec()],
            vec!["bh1"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "no backup host",
            vec![tree_b.clone()],
            vec![],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "host with /",
            vec![tree_b.clone()],
            vec!["a/b"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "host ..",
            vec![tree_b.clone()],
            vec![".."],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "host twice",
            vec![tree_b.clone()],
            vec!["a", "a"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "missing wkldoutdir",
            vec![tree_b.clone()],
            vec!["a"],
            dir.join("nope"),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "suffix with /",
            vec![tree_b.clone()],
            vec!["a"],
            out.clone(),
            "/w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "unknown schedule",
            vec![tree_b.clone()],
            vec!["a"],
            out.clone(),
            ".w",
            9,
            AAPI_ESCHED_NOT_SUPPORTED,
        ),
        (
            "relative selection",
            vec![b"tree".to_vec()],
            vec!["a"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "selection with ..",
            vec![[tree_b.as_slice(), b"/../tree"].concat()],
            vec!["a"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EINVAL,
        ),
        (
            "missing selection",
            vec![t("nothing here")],
            vec!["a"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_ENOENT,
        ),
        (
            "a fifo selection is skipped",
            vec![t("pipe")],
            vec!["a"],
            out.clone(),
            ".w",
            AAPI_SCHED_FULL,
            AAPI_EOK,
        ),
    ];
    for (label, sel, hosts, wdir, suffix, sched, want) in cases {
        let hosts: &[&str] = &hosts;
        let h = s.session(AAPI_OP_DISCOVERY, &[]);
        let sel: Vec<&[u8]> = sel.iter().map(|v| v.as_slice()).collect();
        s.expect(
            label,
            s.discovery(h, &sel, hosts, &wdir, suffix, sched),
            want,
        );
        raw!((e.close_server)(h));
    }
    assert!(
        !fs::read_dir(&out)
            .unwrap()
            .any(|e| e.unwrap().file_name() != "a.w"),
        "a failed discovery left a workload file (DISC-5)"
    );
    let h = s.session(AAPI_OP_DISCOVERY, &[]);
    let mut info = aapi_server_info_t {
        struct_size: 4,
        ..Default::default()
    };
    s.expect(
        "server_prop, small struct",
        raw!((e.get_server_prop)(h, &mut info)),
        AAPI_EABI,
    );
    s.expect(
        "server_prop, NULL",
        raw!((e.get_server_prop)(h, std::ptr::null_mut())),
        AAPI_EINVAL,
    );
    s.expect(
        "server_prop, object handle kind",
        raw!((e.get_server_prop)(h ^ (0x1c << 56), &mut info)),
        AAPI_EBADHANDLE,
    );
    s.expect(
        "discovery",
        s.discovery(h, &[&tree_b], &["a"], &out, ".w", AAPI_SCHED_FULL),
        AAPI_EOK,
    );
    s.expect(
        "discovery twice",
        s.discovery(h, &[&tree_b], &["a"], &out, ".w", AAPI_SCHED_FULL),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "open_object in discovery",
        s.open_object(h, &tree_b, AAPI_OPEN_READ).0,
        AAPI_ESEQUENCE,
    );
    s.expect(
        "preprocess in discovery",
        s.preprocess(h, b"", 0, size_of::<aapi_restore_info_t>() as u32),
        AAPI_ESEQUENCE,
    );
    raw!((e.close_server)(h));

    // Backup session (RC-3, RC-4, RC-6, RC-7, LIFE-5, OBJ-1).
    let h = s.session(AAPI_OP_BACKUP, &[]);
    s.expect(
        "open_object, handle 0",
        s.open_object(0, &t("small.txt"), AAPI_OPEN_READ).0,
        AAPI_EBADHANDLE,
    );
    s.expect(
        "open_object, forged handle",
        s.open_object(h + 1, &t("small.txt"), AAPI_OPEN_READ).0,
        AAPI_EBADHANDLE,
    );
    s.expect(
        "open_object, relative",
        s.open_object(h, b"tree/small.txt", AAPI_OPEN_READ).0,
        AAPI_EINVAL,
    );
    s.expect(
        "open_object, empty",
        s.open_object(h, b"", AAPI_OPEN_READ).0,
        AAPI_EINVAL,
    );
    s.expect(
        "open_object, flags 0",
        s.open_object(h, &t("small.txt"), 0).0,
        AAPI_EINVAL,
    );
    s.expect(
        "open_object, unknown flag",
        s.open_object(h, &t("small.txt"), 3).0,
        AAPI_EINVAL,
    );
    s.expect(
        "open_object, missing",
        s.open_object(h, &t("gone"), AAPI_OPEN_READ).0,
        AAPI_ENOENT,
    );
    s.expect(
        "open_object, fifo",
        s.open_object(h, &t("pipe"), AAPI_OPEN_READ).0,
        AAPI_ENOTSUP,
    );
    s.expect(
        "open_object, NULL object",
        raw!((e.open_object)(
            h,
            c"/".as_ptr(),
            AAPI_OPEN_READ,
            std::ptr::null_mut()
        )),
        AAPI_EINVAL,
    );
    let need = tree.join("small.txt").as_os_str().len() + 1;
    let (rc, size) = s.snappath(h, "", &t("small.txt"), 4);
    s.expect("snappath, small buffer", rc, AAPI_EBUFSIZE);
    assert_eq!(size, need, "RC-6: the size needed");
    let (rc, size) = s.snappath(h, "", &t("small.txt"), 0);
    s.expect("snappath, size query", rc, AAPI_EBUFSIZE);
    assert_eq!(size, need);
    s.expect(
        "snappath, relative",
        s.snappath(h, "", b"rel", 100).0,
        AAPI_EINVAL,
    );
    s.expect(
        "snappath, bad snapshot id",
        s.snappath(h, "../x", &t("a"), 100).0,
        AAPI_EINVAL,
    );
    s.expect(
        "snappath, unknown snapshot",
        s.snappath(h, "files-nothere", &t("a"), 100).0,
        AAPI_ESNAPSHOT,
    );
    let mut size = 10usize;
    s.expect(
        "snappath, NULL buffer with a size",
        raw!((e.get_snappath_from_realpath)(
            h,
            c"".as_ptr(),
            c"/a".as_ptr(),
            std::ptr::null_mut(),
            &mut size
        )),
        AAPI_EINVAL,
    );
    s.expect(
        "byname, relative",
        s.byname(h, b"rel", size_of::<aapi_object_prop_t>() as u32),
        AAPI_EINVAL,
    );
    // RC-3: a ".." component is refused even where the path leads to an object.
    let up = t("sub/../small.txt");
    s.expect_naming(
        "open_object, with ..",
        s.open_object(h, &up, AAPI_OPEN_READ).0,
        AAPI_EINVAL,
        &up,
    );
    s.expect_naming(
        "byname, with ..",
        s.byname(h, &up, size_of::<aapi_object_prop_t>() as u32),
        AAPI_EINVAL,
        &up,
    );
    s.expect_naming(
        "snappath, with ..",
        s.snappath(h, "", &up, 4096).0,
        AAPI_EINVAL,
        &up,
    );
    s.expect(
        "byname, missing",
        s.byname(h, &t("gone"), size_of::<aapi_object_prop_t>() as u32),
        AAPI_ENOENT,
    );
    s.expect(
        "byname, small struct",
        s.byname(h, &t("small.txt"), 4),
        AAPI_EABI,
    );
    s.expect(
        "byname, fifo",
        s.byname(h, &t("pipe"), size_of::<aapi_object_prop_t>() as u32),
        AAPI_ENOTSUP,
    );
    let (rc, o) = s.open_object(h, &t("small.txt"), AAPI_OPEN_READ);
    s.expect("open_object", rc, AAPI_EOK);
    s.expect("read, buf_size 0", s.read(o, 0), AAPI_EINVAL);
    s.expect(
        "read, NULL bytes_read",
        raw!((e.read_object)(
            o,
            [0u8; 4].as_mut_ptr().cast(),
            4,
            std::ptr::null_mut()
        )),
        AAPI_EINVAL,
    );
    s.expect(
        "write on an opened object",
        s.write(o, b"x"),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "flush on an opened object",
        raw!((e.flush)(o)),
        AAPI_ESEQUENCE,
    );
    let mut prop = aapi_object_prop_t {
        struct_size: 4,
        ..Default::default()
    };
    s.expect(
        "object prop, small struct",
        raw!((e.get_object_prop)(o, &mut prop)),
        AAPI_EABI,
    );
    s.expect("server handle as object", s.read(h, 8), AAPI_EBADHANDLE);
    s.expect(
        "object handle as server",
        s.open_object(o, &t("small.txt"), AAPI_OPEN_READ).0,
        AAPI_EBADHANDLE,
    );
    s.expect("close_object", raw!((e.close_object)(o)), AAPI_EOK);
    s.expect(
        "close_object twice",
        raw!((e.close_object)(o)),
        AAPI_EBADHANDLE,
    );
    s.expect("read a closed object", s.read(o, 8), AAPI_EBADHANDLE);
    s.expect(
        "create in a backup session",
        s.create(h, &under("x"), file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_ESEQUENCE,
    );
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);
    s.expect(
        "close_server twice",
        raw!((e.close_server)(h)),
        AAPI_EBADHANDLE,
    );

    // Restore session (RST-1..3, LIFE-4, LIFE-5, OBJ-5).
    let h = s.session(AAPI_OP_RESTORE, &[]);
    let full = size_of::<aapi_restore_info_t>() as u32;
    s.expect(
        "create before preprocess",
        s.create(h, &under("x"), file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_ESEQUENCE,
    );
    s.expect(
        "postprocess before preprocess",
        raw!((e.restore_postprocess)(h, AAPI_EOK)),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "byname before preprocess",
        s.byname(h, &under("x"), size_of::<aapi_object_prop_t>() as u32),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "preprocess, NULL",
        raw!((e.restore_preprocess)(h, std::ptr::null())),
        AAPI_EINVAL,
    );
    s.expect(
        "preprocess, small struct",
        s.preprocess(h, bytes(&restore_root), 0, 8),
        AAPI_EABI,
    );
    s.expect(
        "preprocess, missing root",
        s.preprocess(h, &under("nope"), 0, full),
        AAPI_ENOENT,
    );
    s.expect(
        "preprocess, root is a file",
        s.preprocess(h, &under("existing"), 0, full),
        AAPI_ENOENT,
    );
    s.expect_naming(
        "preprocess, relative root",
        s.preprocess(h, b"rel", 0, full),
        AAPI_EINVAL,
        b"rel",
    );
    // RC-3: a root with ".." is refused, even where it leads to an existing directory: it would
    // bound object paths that are never resolved.
    let up = under("full/..");
    s.expect_naming(
        "preprocess, root with ..",
        s.preprocess(h, &up, 0, full),
        AAPI_EINVAL,
        &up,
    );
    s.expect(
        "preprocess, no space",
        s.preprocess(h, bytes(&restore_root), u64::MAX / 2, full),
        AAPI_ENOSPC,
    );
    s.expect(
        "preprocess",
        s.preprocess(h, bytes(&restore_root), 100, full),
        AAPI_EOK,
    );
    s.expect(
        "preprocess twice",
        s.preprocess(h, bytes(&restore_root), 100, full),
        AAPI_ESEQUENCE,
    );
    let mut p = file_prop(AAPI_OBJ_FILE);
    p.struct_size = 8;
    s.expect(
        "create, small prop",
        s.create(h, &under("x"), p, 0).0,
        AAPI_EABI,
    );
    s.expect(
        "create, relative",
        s.create(h, b"rel/x", file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_EINVAL,
    );
    s.expect(
        "create, unknown flag",
        s.create(h, &under("x"), file_prop(AAPI_OBJ_FILE), 4).0,
        AAPI_EINVAL,
    );
    s.expect(
        "create, unknown type",
        s.create(h, &under("x"), file_prop(9), 0).0,
        AAPI_EINVAL,
    );
    let mut p = file_prop(AAPI_OBJ_FILE);
    p.valid = AAPI_PROP_MODE;
    p.mode = 0o10000;
    s.expect(
        "create, mode beyond 07777",
        s.create(h, &under("x"), p, 0).0,
        AAPI_EINVAL,
    );
    let mut p = file_prop(AAPI_OBJ_FILE);
    p.valid = AAPI_PROP_MTIME;
    p.mtime.nsec = 2_000_000_000;
    s.expect(
        "create, bad nanoseconds",
        s.create(h, &under("x"), p, 0).0,
        AAPI_EINVAL,
    );
    s.expect(
        "create, outside the root",
        s.create(h, &t("x"), file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_EINVAL,
    );
    let up = under("a/../../x");
    s.expect_naming(
        "create, with ..",
        s.create(h, &up, file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_EINVAL,
        &up,
    );
    s.expect(
        "create, existing (RST-3)",
        s.create(h, &under("existing"), file_prop(AAPI_OBJ_FILE), 0)
            .0,
        AAPI_EEXIST,
    );
    s.expect(
        "create, existing directory as a file",
        s.create(h, &under("full"), file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_EEXIST,
    );
    s.expect(
        "create, NULL object",
        raw!((e.create_object)(
            h,
            c"/x".as_ptr(),
            &file_prop(AAPI_OBJ_FILE),
            0,
            std::ptr::null_mut()
        )),
        AAPI_EINVAL,
    );
    let (rc, d) = s.create(h, &under("full"), file_prop(AAPI_OBJ_DIR), 0);
    s.expect("create, existing directory reused", rc, AAPI_EOK);
    s.expect("write data to a directory", s.write(d, b"x"), AAPI_EINVAL);
    s.expect("write 0 bytes", s.write(d, b""), AAPI_EOK);
    s.expect("read a created object", s.read(d, 8), AAPI_ESEQUENCE);
    s.expect(
        "close a created directory",
        raw!((e.close_object)(d)),
        AAPI_EOK,
    );
    let (rc, l) = s.create(h, &under("link"), file_prop(AAPI_OBJ_SYMLINK), 0);
    s.expect("create a symlink", rc, AAPI_EOK);
    s.expect("symlink target with NUL", s.write(l, b"a\0b"), AAPI_EINVAL);
    s.expect(
        "write with NULL buffer",
        raw!((e.write_object)(l, std::ptr::null(), 3)),
        AAPI_EINVAL,
    );
    s.expect(
        "utimes, missing",
        s.utimes(h, &under("gone"), 0),
        AAPI_ENOENT,
    );
    s.expect(
        "utimes, bad nanoseconds",
        s.utimes(h, &under("existing"), 1_000_000_000),
        AAPI_EINVAL,
    );
    s.expect("utimes, relative", s.utimes(h, b"rel", 0), AAPI_EINVAL);
    s.expect("delete, missing", s.delete(h, &under("gone")), AAPI_ENOENT);
    s.expect(
        "delete, non-empty directory",
        s.delete(h, &under("full")),
        AAPI_EINVAL,
    );
    s.expect("delete, relative", s.delete(h, b"rel"), AAPI_EINVAL);
    // RC-3: "..", as create refuses it; the object it leads to is left as it was.
    let up = under("full/../existing");
    let before = fs::symlink_metadata(restore_root.join("existing")).unwrap();
    s.expect_naming("utimes, with ..", s.utimes(h, &up, 0), AAPI_EINVAL, &up);
    s.expect_naming("delete, with ..", s.delete(h, &up), AAPI_EINVAL, &up);
    let after = fs::symlink_metadata(restore_root.join("existing")).unwrap();
    assert_eq!(
        (after.atime(), after.atime_nsec()),
        (before.atime(), before.atime_nsec()),
        "utimes with .. changed the object it leads to"
    );
    // RST-2: nothing outside the alternate root, as create refuses it; a directory whose name
    // starts with the root's is outside too. The objects there are left as they were.
    let beside = restore_root.with_file_name("restore-beside");
    fs::create_dir_all(&beside).unwrap();
    for outside in [dir.join("outside"), beside.join("f")] {
        fs::write(&outside, b"kept").unwrap();
        let before = fs::symlink_metadata(&outside).unwrap();
        let p = bytes(&outside).to_vec();
        s.expect_naming(
            "utimes, outside the root",
            s.utimes(h, &p, 0),
            AAPI_EINVAL,
            &p,
        );
        s.expect_naming("delete, outside the root", s.delete(h, &p), AAPI_EINVAL, &p);
        let after = fs::symlink_metadata(&outside).unwrap();
        assert_eq!(
            (after.atime(), after.atime_nsec()),
            (before.atime(), before.atime_nsec()),
            "utimes changed {} outside the alternate root",
            outside.display()
        );
        assert_eq!(
            fs::read(&outside).ok().as_deref(),
            Some(&b"kept"[..]),
            "delete removed {} outside the alternate root",
            outside.display()
        );
    }
    let missing = bytes(&dir.join("missing-outside")).to_vec();
    s.expect_naming(
        "delete, missing outside the root",
        s.delete(h, &missing),
        AAPI_EINVAL,
        &missing,
    );
    // RST-10: a symbolic link below the root, there before the restore or made by it, is never
    // followed: each call through it is refused with a message naming the path and the link,
    // and nothing outside the root changes (the rollback below included).
    let outside = outside_tree(dir);
    let outside_before = exact_state(&outside);
    let pre = restore_root.join("pre");
    symlink(&outside, &pre).unwrap();
    let made = restore_root.join("made");
    let (rc, l2) = s.create(h, bytes(&made), file_prop(AAPI_OBJ_SYMLINK), 0);
    s.expect("create a symlink to outside the root", rc, AAPI_EOK);
    s.expect("its target", s.write(l2, bytes(&outside)), AAPI_EOK);
    s.expect("close it", raw!((e.close_object)(l2)), AAPI_EOK);
    let dir_prop = file_prop(AAPI_OBJ_DIR);
    for link in [&pre, &made] {
        let through = |rel: &str| bytes(&link.join(rel)).to_vec();
        let cases: [(&str, Vec<u8>, aapi_object_prop_t, u32); 5] = [
            (
                "create a file",
                through("new.txt"),
                file_prop(AAPI_OBJ_FILE),
                0,
            ),
            (
                "create over a file",
                through("victim"),
                file_prop(AAPI_OBJ_FILE),
                AAPI_CREATE_OVERWRITE,
            ),
            (
                "create with missing parents",
                through("missing/deep/new.txt"),
                file_prop(AAPI_OBJ_FILE),
                0,
            ),
            ("create a directory", through("sub"), dir_prop, 0),
            (
                "create a symlink",
                through("sub/link"),
                file_prop(AAPI_OBJ_SYMLINK),
                0,
            ),
        ];
        for (what, path, prop, flags) in cases {
            let (rc, o) = s.create(h, &path, prop, flags);
            s.expect_naming_all(
                &format!("{what} through a link below the root"),
                rc,
                AAPI_EINVAL,
                &[&path, bytes(link)],
            );
            if rc == AAPI_EOK {
                s.write(o, b"through a link");
                raw!((e.close_object)(o));
            }
        }
        for rel in ["victim", "sub", "sub/f"] {
            let path = through(rel);
            s.expect_naming_all(
                "utimes through a link below the root",
                s.utimes(h, &path, 0),
                AAPI_EINVAL,
                &[&path, bytes(link)],
            );
            s.expect_naming_all(
                "delete through a link below the root",
                s.delete(h, &path),
                AAPI_EINVAL,
                &[&path, bytes(link)],
            );
        }
    }
    s.expect(
        "utimes of the link itself",
        s.utimes(h, bytes(&pre), 0),
        AAPI_EOK,
    );
    assert_eq!(fs::symlink_metadata(&pre).unwrap().atime(), 1);
    assert_unchanged(
        &outside,
        &outside_before,
        "calls through links below the root",
    );
    s.expect(
        "byname, restored",
        s.byname(h, &under("full"), size_of::<aapi_object_prop_t>() as u32),
        AAPI_EOK,
    );
    s.expect(
        "postprocess with an object open",
        raw!((e.restore_postprocess)(h, AAPI_EIO)),
        AAPI_EOK,
    );
    assert_unchanged(&outside, &outside_before, "the rollback");
    assert!(
        fs::symlink_metadata(&made).is_err(),
        "the rollback left the link it made"
    );
    fs::remove_file(&pre).unwrap();
    s.expect(
        "the open object is closed",
        s.write(l, b"x"),
        AAPI_EBADHANDLE,
    );
    s.expect(
        "postprocess twice",
        raw!((e.restore_postprocess)(h, AAPI_EOK)),
        AAPI_ESEQUENCE,
    );
    s.expect(
        "create after postprocess",
        s.create(h, &under("y"), file_prop(AAPI_OBJ_FILE), 0).0,
        AAPI_ESEQUENCE,
    );
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);

    // RST-10: a link that appears during the restore, where another process swaps a directory
    // for one: the rollback does not follow it either, and fails (the objects beyond it stay).
    fs::create_dir_all(restore_root.join("d/sub")).unwrap();
    let h = s.session(AAPI_OP_RESTORE, &[]);
    s.expect(
        "preprocess, swapped directory",
        s.preprocess(h, bytes(&restore_root), 100, full),
        AAPI_EOK,
    );
    for rel in ["d/sub/z", "d/y"] {
        let (rc, o) = s.create(h, &under(rel), file_prop(AAPI_OBJ_FILE), 0);
        s.expect("create in a directory that is swapped later", rc, AAPI_EOK);
        s.expect("close it", raw!((e.close_object)(o)), AAPI_EOK);
    }
    fs::rename(restore_root.join("d"), restore_root.join("d-moved")).unwrap();
    symlink(&outside, restore_root.join("d")).unwrap();
    s.expect(
        "rollback through a link that appeared",
        raw!((e.restore_postprocess)(h, AAPI_EIO)),
        AAPI_EIO,
    );
    assert_unchanged(
        &outside,
        &outside_before,
        "the rollback through a link that appeared",
    );
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);

    // RST-10: the root, here given as a link, stays the directory it was at preprocess: nothing
    // but a directory object is restored at its path (however the path names it), it is never
    // deleted, and a link another process puts at its path later is not followed.
    let real_root = dir.join("root-real");
    fs::create_dir_all(&real_root).unwrap();
    fs::write(real_root.join("file"), b"f").unwrap();
    let root_link = dir.join("root-link");
    symlink(&real_root, &root_link).unwrap();
    let h = s.session(AAPI_OP_RESTORE, &[]);
    s.expect(
        "preprocess, root through a link",
        s.preprocess(h, bytes(&root_link), 100, full),
        AAPI_EOK,
    );
    let link_b = bytes(&root_link).to_vec();
    let named = |suffix: &str| [&link_b[..], suffix.as_bytes()].concat();
    for (what, path) in [("", named("")), ("/.", named("/.")), ("/", named("/"))] {
        for (kind, flags) in [
            (AAPI_OBJ_FILE, 0),
            (AAPI_OBJ_FILE, AAPI_CREATE_OVERWRITE),
            (AAPI_OBJ_SYMLINK, AAPI_CREATE_OVERWRITE),
        ] {
            s.expect(
                &format!("create type {kind} flags {flags} at the root{what}"),
                s.create(h, &path, file_prop(kind), flags).0,
                AAPI_EEXIST,
            );
        }
        s.expect_naming(
            &format!("delete the root{what}"),
            s.delete(h, &path),
            AAPI_EINVAL,
            &path,
        );
    }
    let (rc, d) = s.create(h, &link_b, file_prop(AAPI_OBJ_DIR), AAPI_CREATE_OVERWRITE);
    s.expect("a directory object at the root reuses it", rc, AAPI_EOK);
    s.expect("close it", raw!((e.close_object)(d)), AAPI_EOK);
    assert!(
        fs::symlink_metadata(&root_link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link to the root was replaced"
    );
    s.expect("utimes of the root", s.utimes(h, &link_b, 0), AAPI_EOK);
    assert_eq!(fs::metadata(&real_root).unwrap().atime(), 1);
    // A parent that is a file: AAPI_EEXIST, with or without missing directories below it.
    for rel in ["/file/x", "/file/y/z"] {
        s.expect_naming(
            "create below a file",
            s.create(h, &named(rel), file_prop(AAPI_OBJ_FILE), 0).0,
            AAPI_EEXIST,
            &named("/file"),
        );
    }
    let moved = dir.join("root-moved");
    fs::rename(&real_root, &moved).unwrap();
    fs::remove_file(&root_link).unwrap();
    symlink(&outside, &root_link).unwrap();
    let (rc, o) = s.create(
        h,
        &named("/victim"),
        file_prop(AAPI_OBJ_FILE),
        AAPI_CREATE_OVERWRITE,
    );
    s.expect("create after the root was swapped for a link", rc, AAPI_EOK);
    s.expect("write it", s.write(o, b"restored"), AAPI_EOK);
    s.expect("close it", raw!((e.close_object)(o)), AAPI_EOK);
    assert_eq!(fs::read(moved.join("victim")).unwrap(), b"restored");
    assert_unchanged(&outside, &outside_before, "a root swapped for a link");
    s.expect(
        "rollback of a root swapped for a link",
        raw!((e.restore_postprocess)(h, AAPI_EIO)),
        AAPI_EOK,
    );
    assert!(!moved.join("victim").exists());
    assert_unchanged(&outside, &outside_before, "the rollback of a swapped root");
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);

    // An alternate root of "/" (or one that normalizes to it) holds every path: the restore
    // behaves as one to the original location.
    let h = s.session(AAPI_OP_RESTORE, &[]);
    s.expect(
        "preprocess, root /",
        s.preprocess(h, b"/.//", 0, full),
        AAPI_EOK,
    );
    let (rc, d) = s.create(h, &under("under-slash"), file_prop(AAPI_OBJ_DIR), 0);
    s.expect("create under the root /", rc, AAPI_EOK);
    s.expect("close it", raw!((e.close_object)(d)), AAPI_EOK);
    s.expect(
        "utimes under the root /",
        s.utimes(h, &under("under-slash"), 0),
        AAPI_EOK,
    );
    s.expect(
        "delete under the root /",
        s.delete(h, &under("under-slash")),
        AAPI_EOK,
    );
    s.expect(
        "postprocess, root /",
        raw!((e.restore_postprocess)(h, AAPI_EOK)),
        AAPI_EOK,
    );
    assert!(!restore_root.join("under-slash").exists());
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);

    // Postprocess session.
    let h = s.session(AAPI_OP_POSTPROCESS, &[]);
    s.expect(
        "discovery in postprocess",
        s.discovery(h, &[&tree_b], &["a"], &out, ".w", AAPI_SCHED_FULL),
        AAPI_ESEQUENCE,
    );
    s.expect("close_server", raw!((e.close_server)(h)), AAPI_EOK);

    // Terminate (LIFE-7) and after it (LIFE-1).
    s.expect("terminate", raw!((e.terminate)()), AAPI_EOK);
    s.expect("terminate again", raw!((e.terminate)()), AAPI_EOK);
    s.expect(
        "close_server after terminate",
        raw!((e.close_server)(h)),
        AAPI_ESEQUENCE,
    );
}

#[test]
fn same_codes_for_the_same_bad_calls() {
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(dir.path());
    let mut runs = Vec::new();
    for (name, lib) in samples() {
        let mut s = Script {
            e: *lib.entry_points(),
            keep: Vec::new(),
            seen: Vec::new(),
        };
        // Dropped before `s`, whose session definitions the plugin uses until it terminates.
        let _terminate = TerminateOnDrop(s.e);
        let work = dir.path().join(name);
        bad_calls(&mut s, &work, &tree);
        runs.push((name, s.seen));
    }
    let mut problems = Vec::new();
    for ((label, c, want), (_, rust, _)) in runs[0].1.iter().zip(&runs[1].1) {
        if c != rust || c != want {
            problems.push(format!(
                "{label}: C {}, Rust {}, specified {}",
                aapi_sdk::codes::name(*c),
                aapi_sdk::codes::name(*rust),
                aapi_sdk::codes::name(*want)
            ));
        }
    }
    assert_eq!(runs[0].1.len(), runs[1].1.len());
    assert!(runs[0].1.len() > 100, "the script is shorter than expected");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
