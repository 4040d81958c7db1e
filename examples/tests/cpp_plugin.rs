//! The C++ example plugin, loaded as a framework loads it: it exports exactly the ABI, a backup
//! and restore round trip through its in-memory store gives back the same bytes and properties,
//! and exceptions thrown inside entry points come back as codes, never as a crash (MEM-3).

use aapi_examples::CPP_PLUGIN_PATH;
use aapi_host::client::{DiscoveryArgs, HostHooks, Plugin, PluginError, Server, SessionDef};
use aapi_sdk::abi::*;
use aapi_sdk::version::{ENTRY_POINTS, MARKER_SYMBOL};
use aapi_sdk::workload::{WorkloadFile, file_name};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

/// The plugin has one global state per process: tests take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Logs(Mutex<Vec<(u32, String)>>);

impl HostHooks for Logs {
    fn log(&self, level: u32, message: &str) {
        self.0.lock().unwrap().push((level, message.to_string()));
    }
}

fn load() -> (Plugin, Arc<Logs>) {
    let logs = Arc::new(Logs::default());
    let plugin = Plugin::load(Path::new(CPP_PLUGIN_PATH), logs.clone()).expect("plugin loads");
    assert_eq!(plugin.info().name, "memory-cpp");
    assert_eq!(plugin.claim("memory"), Ok(true));
    (plugin, logs)
}

fn code(r: Result<impl Sized, PluginError>) -> Option<i32> {
    r.err().and_then(|e| e.code())
}

fn time(sec: i64, nsec: u32) -> aapi_time_t {
    aapi_time_t {
        sec,
        nsec,
        reserved: 0,
    }
}

/// Objects to restore: path, type, data, mode, mtime.
type Seed = (&'static str, u32, Vec<u8>, u32, i64);

/// An object as restored or read back: path, type, data, mode, mtime.
type Obj = (Vec<u8>, u32, Vec<u8>, u32, i64);

fn seed() -> Vec<Seed> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    vec![
        ("/data", AAPI_OBJ_DIR, vec![], 0o755, 1_600_000_000),
        (
            "/data/a",
            AAPI_OBJ_FILE,
            b"hello\n".to_vec(),
            0o644,
            1_600_000_001,
        ),
        ("/data/big", AAPI_OBJ_FILE, big, 0o600, 1_600_000_002),
        ("/data/empty", AAPI_OBJ_FILE, vec![], 0o640, 1_600_000_003),
        ("/data/sub", AAPI_OBJ_DIR, vec![], 0o700, 1_600_000_004),
        (
            "/data/sub/c",
            AAPI_OBJ_FILE,
            b"\0\x01binary\xff".to_vec(),
            0o600,
            1_600_000_005,
        ),
        ("/restored", AAPI_OBJ_DIR, vec![], 0o755, 1_600_000_006),
    ]
}

/// A restore of `objects` under `root` ("" for the original place), all committed.
fn restore(plugin: &Plugin, server: &str, root: &str, objects: &[Obj]) {
    let s = plugin
        .open_server(server, SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    let total = objects.iter().map(|o| o.2.len() as u64).sum();
    s.restore_preprocess(root.as_bytes(), total, objects.len() as u64)
        .unwrap();
    for (path, kind, data, mode, mtime) in objects {
        let prop = aapi_object_prop_t {
            obj_type: *kind,
            valid: AAPI_PROP_MODE | AAPI_PROP_MTIME,
            mode: *mode,
            mtime: time(*mtime, 5),
            ..Default::default()
        };
        let mut o = s.create_object(path, &prop, 0).unwrap();
        for chunk in data.chunks(65_536) {
            o.write(chunk).unwrap();
        }
        o.flush().unwrap();
        o.close().unwrap();
        s.set_utimes(path, None, Some(time(*mtime, 5))).unwrap();
        let back = s.prop_byname(path).unwrap();
        assert_eq!((back.obj_type, back.size), (*kind, data.len() as u64));
    }
    s.restore_postprocess(AAPI_EOK).unwrap();
    s.close().unwrap();
}

/// Read one object in a backup session: its data and properties.
fn read_object(s: &Server, path: &[u8]) -> (Vec<u8>, aapi_object_prop_t) {
    let snap = s.snappath("", path).unwrap();
    assert_eq!(snap, path, "no snapshot: the path maps to itself (DISC-6)");
    let mut o = s.open_object(&snap).unwrap();
    let prop = o.prop().unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 7_000];
    loop {
        let n = o.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        o.read(&mut buf).unwrap(),
        0,
        "end of data is sticky (OBJ-1)"
    );
    o.close().unwrap();
    (data, prop)
}

/// The names of the dynamic symbols `lib` defines.
fn exported(lib: &Path) -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("nm runs (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

/// The 22 entry points and the marker.
fn abi_symbols() -> BTreeSet<String> {
    ENTRY_POINTS
        .iter()
        .chain(&[MARKER_SYMBOL])
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn exports_exactly_the_entry_points_and_the_marker() {
    assert_eq!(
        exported(Path::new(CPP_PLUGIN_PATH)),
        abi_symbols(),
        "no C++ symbol may leak out of the plugin"
    );
}

/// The build command in plugin.cpp's header comment, run as written from the repository root
/// (here: a directory that holds the repository's include/ and examples/), gives a library that
/// exports exactly the ABI too: a vendor copying the line gets no weak C++ symbols.
#[test]
fn the_build_command_in_plugin_cpp_exports_only_the_abi() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cpp-plugin/plugin.cpp"),
    )
    .unwrap();
    let comment: Vec<&str> = source.lines().map_while(|l| l.strip_prefix("//")).collect();
    let start = comment
        .iter()
        .position(|l| l.trim_start().starts_with("g++ "))
        .expect("plugin.cpp's header comment gives a g++ command");
    let mut command = Vec::new();
    for line in &comment[start..] {
        if !line.starts_with("   ") {
            break;
        }
        command.extend(line.split_whitespace().map(str::to_string));
    }
    assert!(
        command.ends_with(&[
            "-o".into(),
            "libaapi_cpp_example.so".into(),
            "examples/cpp-plugin/plugin.cpp".into()
        ]),
        "{command:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for d in ["include", "examples"] {
        std::os::unix::fs::symlink(repo.join(d), dir.path().join(d)).unwrap();
    }
    let out = Command::new(&command[0])
        .args(&command[1..])
        .current_dir(dir.path())
        .output()
        .expect("g++ runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        exported(&dir.path().join("libaapi_cpp_example.so")),
        abi_symbols(),
        "the documented command exports more than the ABI"
    );
}

#[test]
fn backup_and_restore_round_trip() {
    let _turn = turn();
    let (plugin, _logs) = load();
    let server = "round-trip";
    let originals: Vec<_> = seed()
        .into_iter()
        .map(|(p, k, d, m, t)| (p.as_bytes().to_vec(), k, d, m, t))
        .collect();
    restore(&plugin, server, "", &originals);

    // Discovery: two hosts, one workload file each, every object of /data once.
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["h1".to_string(), "h2".to_string()];
    let selections = [b"/data".to_vec(), b"/data/sub".to_vec()];
    let args = DiscoveryArgs {
        selections: &selections,
        backup_hosts: &hosts,
        workload_dir: dir.path(),
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    };
    let d = plugin
        .open_server(server, SessionDef::new(AAPI_OP_DISCOVERY))
        .unwrap();
    assert_eq!(d.server_prop().unwrap(), AAPI_SRVC_FULL_BACKUP_SUPPORT);
    let incremental = DiscoveryArgs {
        schedule: AAPI_SCHED_INCR,
        ..args.clone()
    };
    assert_eq!(
        code(d.discovery(&incremental)),
        Some(AAPI_ESCHED_NOT_SUPPORTED),
        "RC-8"
    );
    d.close().unwrap();
    let d = plugin
        .open_server(server, SessionDef::new(AAPI_OP_DISCOVERY))
        .unwrap();
    assert_eq!(d.discovery(&args).unwrap(), "");
    d.close().unwrap();

    // Backup: every workload file, read back through the plugin.
    let mut backed_up = Vec::new();
    for h in &hosts {
        let wf = WorkloadFile::read_from_path(&file_name(dir.path(), h, ".wkld"))
            .expect("the workload file is valid (format, CRC)");
        assert_eq!(&wf.backup_host, h);
        let s = plugin
            .open_server(server, SessionDef::new(AAPI_OP_BACKUP))
            .unwrap();
        for e in &wf.entries {
            use std::os::unix::ffi::OsStrExt;
            let path = e.path.as_os_str().as_bytes().to_vec();
            let (data, prop) = read_object(&s, &path);
            assert_eq!(prop.size, data.len() as u64, "OBJ-2");
            backed_up.push((path, prop.obj_type, data, prop.mode, prop.mtime.sec));
        }
        s.close().unwrap();
    }
    backed_up.sort();
    let mut want: Vec<_> = originals
        .iter()
        .filter(|o| o.0.starts_with(b"/data"))
        .cloned()
        .collect();
    want.sort();
    assert_eq!(
        backed_up, want,
        "the backup holds each object once, as restored"
    );

    // Restore under the alternate root, then read the copies back.
    let copies: Vec<_> = backed_up
        .iter()
        .map(|(p, k, d, m, t)| ([b"/restored".as_slice(), p].concat(), *k, d.clone(), *m, *t))
        .collect();
    restore(&plugin, server, "/restored", &copies);
    let s = plugin
        .open_server(server, SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    for (path, kind, data, mode, mtime) in &copies {
        let (got, prop) = read_object(&s, path);
        assert_eq!(&got, data, "{}", String::from_utf8_lossy(path));
        assert_eq!(
            (prop.obj_type, prop.mode, prop.mtime.sec),
            (*kind, *mode, *mtime)
        );
    }
    s.close().unwrap();

    // A failed restore puts back what it replaced and removes what it created (RST-6, RST-7).
    let r = plugin
        .open_server(server, SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    r.restore_preprocess(b"", 10, 2).unwrap();
    let file = aapi_object_prop_t {
        obj_type: AAPI_OBJ_FILE,
        ..Default::default()
    };
    assert_eq!(
        code(r.create_object(b"/data/a", &file, 0)),
        Some(AAPI_EEXIST)
    );
    let mut o = r
        .create_object(b"/data/a", &file, AAPI_CREATE_OVERWRITE)
        .unwrap();
    o.write(b"replaced").unwrap();
    o.close().unwrap();
    let mut o = r.create_object(b"/data/new", &file, 0).unwrap();
    o.write(b"new").unwrap();
    o.close().unwrap();
    r.restore_postprocess(AAPI_EIO).unwrap();
    r.close().unwrap();
    let s = plugin
        .open_server(server, SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    assert_eq!(read_object(&s, b"/data/a").0, b"hello\n");
    assert_eq!(code(s.open_object(b"/data/new")), Some(AAPI_ENOENT));
    s.close().unwrap();
    plugin.terminate().unwrap();
}

#[test]
fn exceptions_become_codes_and_the_process_goes_on() {
    let _turn = turn();
    let (plugin, logs) = load();
    let server = "exceptions";
    restore(
        &plugin,
        server,
        "",
        &[(b"/x".to_vec(), AAPI_OBJ_FILE, b"payload".to_vec(), 0o600, 1)],
    );
    let throwing = |what: &str| {
        let mut def = SessionDef::new(AAPI_OP_BACKUP);
        def.properties = vec![("memory.throw".into(), what.into())];
        plugin.open_server(server, def).unwrap()
    };

    // A std::exception: AAPI_EINTERNAL, its what() as the message, an ERROR log line; the same
    // object is still usable afterwards.
    let s = throwing("aapi_read_object");
    let mut o = s.open_object(b"/x").unwrap();
    let err = o.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.code(), Some(AAPI_EINTERNAL), "{err}");
    assert!(
        err.to_string()
            .contains("injected failure in aapi_read_object"),
        "{err}"
    );
    assert!(
        logs.0
            .lock()
            .unwrap()
            .iter()
            .any(|(l, m)| *l == AAPI_LOG_ERROR && m.contains("injected failure")),
        "no ERROR log line for the exception"
    );
    assert_eq!(o.prop().unwrap().size, 7);
    o.close().unwrap();
    s.close().unwrap();

    // std::bad_alloc: AAPI_ENOMEM.
    let s = throwing("aapi_open_object:bad_alloc");
    assert_eq!(code(s.open_object(b"/x")), Some(AAPI_ENOMEM));
    s.close().unwrap();

    // Something that is not a std::exception at all: still AAPI_EINTERNAL.
    let s = throwing("aapi_get_server_prop:int");
    let err = s.server_prop().unwrap_err();
    assert_eq!(err.code(), Some(AAPI_EINTERNAL));
    assert!(err.to_string().contains("unknown exception"), "{err}");
    s.close().unwrap();

    // The plugin is intact: a clean session reads the object.
    let s = plugin
        .open_server(server, SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    assert_eq!(read_object(&s, b"/x").0, b"payload");
    s.close().unwrap();
    plugin.terminate().unwrap();
}

#[test]
fn bad_handles_and_call_order_give_their_codes() {
    let _turn = turn();
    let (plugin, _logs) = load();
    let e = *plugin.entry_points();
    let s = plugin
        .open_server("handles", SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    let mut n = 0usize;
    let mut buf = [0u8; 8];
    for bad in [0, s.handle(), s.handle() + 1, 0x4F00_0000_0000_0999] {
        // SAFETY: valid pointers; the handle is what is under test.
        let rc = unsafe { (e.read_object)(bad, buf.as_mut_ptr().cast(), buf.len(), &mut n) };
        assert_eq!(rc, AAPI_EBADHANDLE, "read_object({bad:#x})");
    }
    assert_eq!(
        code(s.restore_preprocess(b"", 0, 0)),
        Some(AAPI_ESEQUENCE),
        "restore calls in a backup session (LIFE-4)"
    );
    let h = s.handle();
    s.close().unwrap();
    // SAFETY: plain value.
    assert_eq!(unsafe { (e.close_server)(h) }, AAPI_EBADHANDLE, "LIFE-6");
    plugin.terminate().unwrap();
    // SAFETY: plain value.
    assert_eq!(unsafe { (e.close_server)(h) }, AAPI_ESEQUENCE, "LIFE-1");
    // SAFETY: takes no arguments.
    assert_eq!(unsafe { (e.terminate)() }, AAPI_EOK, "LIFE-7");
}
