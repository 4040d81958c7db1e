//! The export layer under bad input: a small plugin exported with `export_plugin!` into this
//! test binary, driven through the raw `extern "C"` entry points with NULL pointers, bad and
//! stale handles, out-of-order calls, short buffers with guard bytes, panics and threads.

mod common;

use aapi_sdk::plugin::{
    BackupJob, BackupObject, Error, ErrorKind, Host, HostInfo, Level, ObjectProps, ObjectType,
    Plugin, PluginInfo, RestoreInfo, RestoreObject, RestoreStatus, Result, Server, ServerInfo,
    Session, Timestamp,
};
use aapi_sdk::workload::WorkloadFile;
use common::*;
use std::ffi::c_char;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The test plugin
// ---------------------------------------------------------------------------------------------

/// What reached the plugin, in order.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
static IN_READ: AtomicBool = AtomicBool::new(false);
static OVERLAP: AtomicBool = AtomicBool::new(false);
/// The services of the last session opened on server "keep", kept as a thread of the plugin
/// would keep them.
static KEPT: Mutex<Option<Host>> = Mutex::new(None);

fn event(e: impl Into<String>) {
    lock(&EVENTS).push(e.into());
}

fn events() -> Vec<String> {
    std::mem::take(&mut *lock(&EVENTS))
}

struct TestPlugin;

impl Plugin for TestPlugin {
    const INFO: PluginInfo = PluginInfo {
        name: c"test-plugin",
        version: c"1.0",
        vendor: c"aapi tests",
        workload_types: c"test,other",
        capabilities: AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE | AAPI_CAP_SNAPSHOT,
        max_concurrent_objects: 4,
    };
    type Server = TestServer;

    fn init(host: &HostInfo) -> Result<Self> {
        host.log(Level::Info, format!("init by {}", host.framework_name()));
        Ok(TestPlugin)
    }

    fn open_server(&self, server: &str, session: Session) -> Result<TestServer> {
        match server {
            "panic" => panic!("open_server exploded"),
            "unreachable" => return Err(Error::new(ErrorKind::Connect, "no route to unreachable")),
            "cred" => {
                let host = session.host();
                let big = host.credential("big")?.expect("big secret");
                event(format!("cred big {}", big.as_bytes().len()));
                let pw = host.credential("pw")?.expect("pw secret");
                event(format!("cred pw {}", pw.as_str()?));
                event(format!(
                    "cred missing {:?}",
                    host.credential("nope")?.is_none()
                ));
            }
            "keep" => *lock(&KEPT) = Some(session.host().clone()),
            _ => {}
        }
        Ok(TestServer { session })
    }

    fn terminate(self) {
        event("terminate");
    }
}

struct TestServer {
    session: Session,
}

impl Server for TestServer {
    type Reader = MemReader;
    type Writer = MemWriter;

    fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            full: true,
            incremental: true,
            cumulative: false,
        })
    }

    fn discovery(&self, job: &BackupJob) -> Result<String> {
        let host = self.session.host();
        let mut id = "snap-1".to_string();
        match job.selections[0].to_str().unwrap() {
            "/panic" => panic!("discovery exploded"),
            "/no-files" => return Ok(id),
            "/long-id" => id = "x".repeat(AAPI_SNAPID_MAX),
            "/keepalive" => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(350) {
                    host.keepalive_if_due()?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            // The services of the kept session, used during this session's call.
            "/kept-session" => {
                let kept = lock(&KEPT).clone().expect("a kept session");
                kept.info("during another session's call");
                event(format!("kept keepalive {:?}", kept.keepalive()));
                let cred = kept.credential("pw").map(|s| s.is_some());
                event(format!("kept credential {:?}", cred.map_err(|e| e.kind())));
            }
            // This session's services, used by threads the call starts.
            "/threads" => std::thread::scope(|s| {
                for i in 0..2 {
                    s.spawn(move || {
                        host.info(format!("from worker {i}"));
                        event(format!("worker keepalive {:?}", host.keepalive()));
                        let cred = host.credential("pw").map(|s| s.is_some());
                        event(format!(
                            "worker credential {:?}",
                            cred.map_err(|e| e.kind())
                        ));
                    });
                }
            }),
            _ => {}
        }
        for h in &job.backup_hosts {
            let file = WorkloadFile {
                snapshot: "snap-1".into(),
                backup_host: h.clone(),
                entries: vec![],
            };
            file.write_to_path(&job.workload_file(h))?;
        }
        event(format!("discovery {:?}", job.schedule));
        Ok(id)
    }

    fn postprocess(&self, _job: &BackupJob, snapshot_id: &str) -> Result<()> {
        event(format!("postprocess {snapshot_id}"));
        Ok(())
    }

    fn snapshot_path(&self, snapshot: &str, real_path: &Path) -> Result<PathBuf> {
        Ok(PathBuf::from(format!(
            "/snap/{snapshot}{}",
            real_path.display()
        )))
    }

    fn open_object(&self, path: &Path) -> Result<MemReader> {
        let name = path.to_str().unwrap().to_string();
        let mut r = MemReader {
            name: name.clone(),
            data: vec![],
            pos: 0,
            ended: false,
            panic_once: false,
        };
        match name.as_str() {
            "/panic" => panic!("open_object exploded"),
            "/missing" => return Err(Error::not_found("/missing does not exist")),
            "/panic-read" => {
                r.panic_once = true;
                r.data = b"after the panic".to_vec();
            }
            "/rendezvous" | "/overlap" | "/scoped-panic" | "/thread-panic" => r.data = vec![7; 64],
            n => {
                let len: usize = n.trim_start_matches("/data/").parse().unwrap_or(0);
                r.data = (0..len).map(|i| i as u8).collect();
            }
        }
        Ok(r)
    }

    fn object_props(&self, path: &Path) -> Result<ObjectProps> {
        if path == Path::new("/missing") {
            return Err(Error::not_found("no /missing"));
        }
        let mut p = ObjectProps::new(ObjectType::File);
        p.size = Some(3);
        Ok(p)
    }

    fn restore_preprocess(&self, info: &RestoreInfo) -> Result<()> {
        if info.total_bytes == u64::MAX {
            return Err(Error::new(ErrorKind::NoSpace, "that is a lot of bytes"));
        }
        event("restore_preprocess");
        Ok(())
    }

    fn create_object(
        &self,
        path: &Path,
        props: &ObjectProps,
        overwrite: bool,
    ) -> Result<MemWriter> {
        event(format!(
            "create {} {:?} {overwrite}",
            path.display(),
            props.kind
        ));
        Ok(MemWriter {
            path: path.to_path_buf(),
            data: vec![],
            props: *props,
        })
    }

    fn delete_object(&self, path: &Path) -> Result<()> {
        event(format!("delete {}", path.display()));
        Ok(())
    }

    fn set_times(
        &self,
        path: &Path,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<()> {
        event(format!("utimes {} {atime:?} {mtime:?}", path.display()));
        Ok(())
    }

    fn restore_postprocess(&self, status: RestoreStatus) -> Result<()> {
        event(format!("restore_postprocess {status:?}"));
        Ok(())
    }

    fn close(&self) -> Result<()> {
        event("server close");
        Ok(())
    }
}

struct MemReader {
    name: String,
    data: Vec<u8>,
    pos: usize,
    ended: bool,
    panic_once: bool,
}

impl BackupObject for MemReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        assert!(!self.ended, "read called again after the end of data");
        if self.panic_once {
            self.panic_once = false;
            panic!("read exploded");
        }
        match self.name.as_str() {
            "/rendezvous" => {
                // Both readers must be inside read at the same time: only possible when the
                // layer lets calls on different objects run concurrently.
                ARRIVED.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                while ARRIVED.load(Ordering::SeqCst) < 2 {
                    if start.elapsed() > Duration::from_secs(5) {
                        return Err(Error::internal("the other reader never arrived"));
                    }
                    std::thread::yield_now();
                }
            }
            "/scoped-panic" => {
                std::thread::scope(|s| {
                    s.spawn(|| panic!("worker exploded"));
                });
            }
            "/thread-panic" => {
                // A thread whose panic the plugin handles itself.
                let helper = std::thread::spawn(|| panic!("helper exploded"));
                assert!(helper.join().is_err());
                return Err(Error::internal("the helper thread failed"));
            }
            "/overlap" => {
                if IN_READ.swap(true, Ordering::SeqCst) {
                    OVERLAP.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_micros(200));
                IN_READ.store(false, Ordering::SeqCst);
                return Ok(1);
            }
            _ => {}
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.ended = n == 0;
        Ok(n)
    }

    fn props(&self) -> Result<ObjectProps> {
        let mut p = ObjectProps::new(ObjectType::File);
        p.size = Some(self.data.len() as u64);
        p.mode = Some(0o100644); // file-type bits must be masked off by the layer
        p.mtime = Some(Timestamp::new(1_700_000_000, 5));
        Ok(p)
    }

    fn close(self) -> Result<()> {
        event(format!("close reader {}", self.name));
        Ok(())
    }
}

struct MemWriter {
    path: PathBuf,
    data: Vec<u8>,
    props: ObjectProps,
}

impl RestoreObject for MemWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn props(&self) -> Result<ObjectProps> {
        Ok(self.props)
    }

    fn close(self) -> Result<()> {
        if self.path == Path::new("/r/fail-close") {
            return Err(Error::new(ErrorKind::Io, "disk went away"));
        }
        event(format!(
            "commit {} {}",
            self.path.display(),
            self.data.len()
        ));
        Ok(())
    }

    fn abort(self) {
        event(format!("abort {}", self.path.display()));
    }
}

aapi_sdk::export_plugin!(TestPlugin);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn begin() -> std::sync::MutexGuard<'static, ()> {
    let g = serial();
    events();
    g
}

fn open_obj(server: aapi_server_t, path: &str) -> aapi_object_t {
    let mut o = 0;
    assert_eq!(
        open_object(server, cs(path), AAPI_OPEN_READ, &mut o),
        AAPI_EOK,
        "{}",
        last_error()
    );
    o
}

fn restore_server() -> aapi_server_t {
    let s = open(AAPI_OP_RESTORE);
    assert_eq!(
        restore_preprocess(s, &restore_info("", 10)),
        AAPI_EOK,
        "{}",
        last_error()
    );
    s
}

fn create(server: aapi_server_t, path: &str) -> aapi_object_t {
    let mut o = 0;
    let p = prop(AAPI_OBJ_FILE);
    assert_eq!(
        create_object(server, cs(path), &p, 0, &mut o),
        AAPI_EOK,
        "{}",
        last_error()
    );
    o
}

/// Every call that takes a server handle, with otherwise valid arguments.
/// A named call taking a handle, returning the code.
type Call = (&'static str, Box<dyn Fn(u64) -> std::ffi::c_int>);

fn server_calls(dir: &str) -> Vec<Call> {
    let dir = cs(dir);
    vec![
        ("close_server", Box::new(close_server)),
        (
            "get_server_prop",
            Box::new(|s| {
                let mut i = aapi_server_info_t {
                    struct_size: size_of::<aapi_server_info_t>() as u32,
                    ..Default::default()
                };
                get_server_prop(s, &mut i)
            }),
        ),
        (
            "discovery",
            Box::new(move |s| {
                let mut id = snapid("");
                discovery(
                    s,
                    cs_array(&["/a"]),
                    cs_array(&["h1"]),
                    dir,
                    cs(".w"),
                    AAPI_SCHED_FULL,
                    &mut id,
                )
            }),
        ),
        (
            "postprocess",
            Box::new(move |s| {
                postprocess(
                    s,
                    cs_array(&["/a"]),
                    cs_array(&["h1"]),
                    dir,
                    cs(".w"),
                    AAPI_SCHED_FULL,
                    &snapid("snap-1"),
                )
            }),
        ),
        (
            "snappath",
            Box::new(|s| {
                let mut buf = [0 as c_char; 64];
                let mut n = buf.len();
                snappath(s, cs("s"), cs("/a"), buf.as_mut_ptr(), &mut n)
            }),
        ),
        (
            "open_object",
            Box::new(|s| {
                let mut o = 0;
                open_object(s, cs("/data/1"), AAPI_OPEN_READ, &mut o)
            }),
        ),
        (
            "create_object",
            Box::new(|s| {
                let mut o = 0;
                create_object(s, cs("/r/x"), &prop(AAPI_OBJ_FILE), 0, &mut o)
            }),
        ),
        ("delete_object", Box::new(|s| delete_object(s, cs("/r/x")))),
        (
            "get_object_prop_byname",
            Box::new(|s| {
                let mut p = prop(0);
                get_object_prop_byname(s, cs("/a"), &mut p)
            }),
        ),
        (
            "set_object_utimes",
            Box::new(|s| {
                let t = aapi_time_t {
                    sec: 1,
                    nsec: 0,
                    reserved: 0,
                };
                set_object_utimes(s, cs("/r/x"), &t, &t)
            }),
        ),
        (
            "restore_preprocess",
            Box::new(|s| restore_preprocess(s, &restore_info("", 1))),
        ),
        (
            "restore_postprocess",
            Box::new(|s| restore_postprocess(s, AAPI_EOK)),
        ),
    ]
}

/// Every call that takes an object handle, with otherwise valid arguments.
fn object_calls() -> Vec<Call> {
    vec![
        (
            "read_object",
            Box::new(|o| {
                let mut buf = [0u8; 16];
                let mut n = 0;
                read_object(o, buf.as_mut_ptr(), buf.len(), &mut n)
            }),
        ),
        (
            "write_object",
            Box::new(|o| write_object(o, b"abc".as_ptr(), 3)),
        ),
        ("flush", Box::new(flush)),
        (
            "get_object_prop",
            Box::new(|o| {
                let mut p = prop(0);
                get_object_prop(o, &mut p)
            }),
        ),
        ("close_object", Box::new(close_object)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn marker_and_prototypes_match_the_abi() {
    unsafe extern "C" {
        static aapi_abi_marker: aapi_abi_marker_t;
    }
    // SAFETY: the symbol is the static the macro defined in this binary.
    let marker = unsafe { aapi_abi_marker };
    assert_eq!(marker, aapi_abi_marker_t::CURRENT);
    // The exported shims have exactly the ABI's function types (checked by the compiler).
    let _: [usize; 22] = [
        aapi_pgn_init as aapi_pgn_init_fn as usize,
        aapi_pgn_claim as aapi_pgn_claim_fn as usize,
        aapi_open_server as aapi_open_server_fn as usize,
        aapi_close_server as aapi_close_server_fn as usize,
        aapi_get_server_prop as aapi_get_server_prop_fn as usize,
        aapi_discovery as aapi_discovery_fn as usize,
        aapi_postprocess as aapi_postprocess_fn as usize,
        aapi_get_snappath_from_realpath as aapi_get_snappath_from_realpath_fn as usize,
        aapi_open_object as aapi_open_object_fn as usize,
        aapi_create_object as aapi_create_object_fn as usize,
        aapi_delete_object as aapi_delete_object_fn as usize,
        aapi_read_object as aapi_read_object_fn as usize,
        aapi_write_object as aapi_write_object_fn as usize,
        aapi_flush as aapi_flush_fn as usize,
        aapi_close_object as aapi_close_object_fn as usize,
        aapi_get_object_prop as aapi_get_object_prop_fn as usize,
        aapi_get_object_prop_byname as aapi_get_object_prop_byname_fn as usize,
        aapi_set_object_utimes as aapi_set_object_utimes_fn as usize,
        aapi_restore_preprocess as aapi_restore_preprocess_fn as usize,
        aapi_restore_postprocess as aapi_restore_postprocess_fn as usize,
        aapi_terminate as aapi_terminate_fn as usize,
        aapi_get_last_error as aapi_get_last_error_fn as usize,
    ];
}

#[test]
fn init_handshake_checks_and_fills_plugin_info() {
    let _g = begin();
    // Out-parameter untouched on every failure: a sentinel-filled struct stays as it was.
    let sentinel = || {
        let mut p: aapi_plugin_info_t = filled(0xa5);
        p.struct_size = size_of::<aapi_plugin_info_t>() as u32;
        p
    };
    let cases: Vec<(&str, aapi_host_info_t, u32, std::ffi::c_int)> = vec![
        (
            "small host struct",
            aapi_host_info_t {
                struct_size: 8,
                ..host_info()
            },
            0,
            AAPI_EABI,
        ),
        (
            "other major",
            aapi_host_info_t {
                abi_major: 2,
                ..host_info()
            },
            0,
            AAPI_EABI,
        ),
        ("small plugin struct", host_info(), 12, AAPI_EABI),
        (
            "NULL log callback",
            aapi_host_info_t {
                log_callback: None,
                ..host_info()
            },
            0,
            AAPI_EINVAL,
        ),
        (
            "NULL framework name",
            aapi_host_info_t {
                framework_name: std::ptr::null(),
                ..host_info()
            },
            0,
            AAPI_EINVAL,
        ),
    ];
    for (what, hi, out_size, code) in cases {
        let mut out = sentinel();
        if out_size != 0 {
            out.struct_size = out_size;
        }
        let before = bytes_of(&out);
        assert_eq!(pgn_init(&hi, &mut out), code, "{what}");
        assert_eq!(
            bytes_of(&out),
            before,
            "{what}: out-parameter written on failure"
        );
        assert!(!last_error().is_empty());
    }
    let mut out = sentinel();
    assert_eq!(pgn_init(std::ptr::null(), &mut out), AAPI_EINVAL);
    assert!(last_error().contains("host_info is NULL"));
    assert_eq!(pgn_init(&host_info(), std::ptr::null_mut()), AAPI_EINVAL);

    // A framework with a newer minor allocates a larger struct: fields are written, the tail
    // (fields of the future) and struct_size are left alone.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Bigger {
        info: aapi_plugin_info_t,
        future: [u8; 16],
    }
    let mut big: Bigger = filled(0x5a);
    big.info.struct_size = size_of::<Bigger>() as u32;
    assert_eq!(
        pgn_init(&host_info(), &mut big.info),
        AAPI_EOK,
        "{}",
        last_error()
    );
    assert_eq!(big.future, [0x5a; 16]);
    let pi = big.info;
    assert_eq!(pi.struct_size, size_of::<Bigger>() as u32);
    assert_eq!(
        (pi.abi_major, pi.abi_minor),
        (AAPI_ABI_MAJOR, AAPI_ABI_MINOR)
    );
    // SAFETY: the layer wrote pointers to the plugin's static C strings.
    let text = |p| unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap();
    assert_eq!(text(pi.name), "test-plugin");
    assert_eq!(text(pi.version), "1.0");
    assert_eq!(text(pi.workload_types), "test,other");
    assert_eq!(pi.capabilities, TestPlugin::INFO.capabilities);
    assert_eq!(pi.max_concurrent_objects, 4);
    assert_eq!(pi.reserved, 0);
    assert!(
        log_lines()
            .iter()
            .any(|(l, t)| *l == AAPI_LOG_INFO && t == "init by layer-tests")
    );

    // A second init without terminate is out of order, and leaves the out-parameter alone.
    let mut again = sentinel();
    let before = bytes_of(&again);
    assert_eq!(pgn_init(&host_info(), &mut again), AAPI_ESEQUENCE);
    assert_eq!(bytes_of(&again), before);
}

#[test]
fn phases_before_init_and_claim_and_after_terminate() {
    let _g = begin();
    assert_eq!(terminate(), AAPI_EOK, "terminate before init");
    let dir = tempfile::tempdir().unwrap();
    for (name, call) in server_calls(dir.path().to_str().unwrap()) {
        assert_eq!(call(1), AAPI_ESEQUENCE, "{name} before init");
    }
    for (name, call) in object_calls() {
        assert_eq!(call(1), AAPI_ESEQUENCE, "{name} before init");
    }
    assert_eq!(pgn_claim(cs("test")), AAPI_ESEQUENCE);
    assert!(
        last_error().contains("before aapi_pgn_init"),
        "{}",
        last_error()
    );
    let mut h: aapi_server_t = 0x1111;
    assert_eq!(
        open_server(cs("srv"), session(AAPI_OP_BACKUP), &mut h),
        AAPI_ESEQUENCE
    );

    init();
    assert_eq!(
        open_server(cs("srv"), session(AAPI_OP_BACKUP), &mut h),
        AAPI_ESEQUENCE
    );
    assert!(last_error().contains("before a successful aapi_pgn_claim"));
    assert_eq!(h, 0x1111, "handle written on failure");
    assert_eq!(pgn_claim(std::ptr::null()), AAPI_EINVAL);
    assert_eq!(pgn_claim(cs("")), AAPI_EINVAL);
    assert_eq!(
        pgn_claim(cs("Test")),
        AAPI_ENOTCLAIMED,
        "claims are case-sensitive"
    );
    assert!(last_error().contains("not handled by test-plugin"));
    assert_eq!(pgn_claim(c"\xff".as_ptr()), AAPI_ENOTCLAIMED);
    assert_eq!(pgn_claim(cs("other")), AAPI_EOK);
    assert_eq!(pgn_claim(cs("nope")), AAPI_ENOTCLAIMED);
    let s = open(AAPI_OP_BACKUP);
    let o = open_obj(s, "/data/3");

    // terminate, twice; then nothing works until a new cycle, and old handles stay dead.
    assert_eq!(terminate(), AAPI_EOK);
    assert_eq!(terminate(), AAPI_EOK);
    assert_eq!(close_server(s), AAPI_ESEQUENCE);
    assert_eq!(close_object(o), AAPI_ESEQUENCE);
    init_claim();
    assert_eq!(close_server(s), AAPI_EBADHANDLE);
    assert_eq!(close_object(o), AAPI_EBADHANDLE);
    let s2 = open(AAPI_OP_BACKUP);
    assert_ne!(s2, s, "a new cycle issues new handles");
}

#[test]
fn null_pointers_give_einval_and_leave_out_parameters_alone() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let d = cs(dir.path().to_str().unwrap());
    let null = std::ptr::null::<c_char>();
    let mut h: aapi_server_t = 0x77;
    let def = session(AAPI_OP_BACKUP);
    assert_eq!(open_server(null, def, &mut h), AAPI_EINVAL);
    assert_eq!(
        open_server(cs("srv"), std::ptr::null(), &mut h),
        AAPI_EINVAL
    );
    assert_eq!(
        open_server(cs("srv"), def, std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(open_server(cs(""), def, &mut h), AAPI_EINVAL);
    assert_eq!(h, 0x77);
    // NULL members of the session definition.
    type Mutation = (&'static str, fn(&mut aapi_session_def_t));
    let mutations: [Mutation; 5] = [
        ("job id", |s| s.sd_job_id = std::ptr::null()),
        ("snapid", |s| s.sd_snapid = std::ptr::null()),
        ("log callback", |s| s.sd_log_callback = None),
        ("keepalive callback", |s| s.sd_keepalive_callback = None),
        ("properties", |s| {
            s.sd_property_count = 2;
            s.sd_properties = std::ptr::null();
        }),
    ];
    for (what, mutate) in mutations {
        let def = session(AAPI_OP_BACKUP);
        // SAFETY: `def` is a leaked, live session definition owned by this test.
        mutate(unsafe { &mut *def });
        assert_eq!(open_server(cs("srv"), def, &mut h), AAPI_EINVAL, "{what}");
        assert_eq!(h, 0x77);
    }

    let disc = open(AAPI_OP_DISCOVERY);
    let mut id = snapid("sentinel");
    let sel = cs_array(&["/a"]);
    let hosts = cs_array(&["h1"]);
    let n = std::ptr::null();
    assert_eq!(get_server_prop(disc, std::ptr::null_mut()), AAPI_EINVAL);
    assert_eq!(
        discovery(disc, n, hosts, d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, n, d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, hosts, null, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, hosts, d, null, 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, hosts, d, cs(".w"), 1, std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, cs_array(&[]), hosts, d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, cs_array(&[""]), hosts, d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, cs_array(&[]), d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(bytes_of(&id), bytes_of(&snapid("sentinel")));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );

    let post = open(AAPI_OP_POSTPROCESS);
    let sid = snapid("snap-1");
    assert_eq!(
        postprocess(post, n, hosts, d, cs(".w"), 1, &sid),
        AAPI_EINVAL
    );
    assert_eq!(postprocess(post, sel, n, d, cs(".w"), 1, &sid), AAPI_EINVAL);
    assert_eq!(
        postprocess(post, sel, hosts, null, cs(".w"), 1, &sid),
        AAPI_EINVAL
    );
    assert_eq!(postprocess(post, sel, hosts, d, null, 1, &sid), AAPI_EINVAL);
    assert_eq!(
        postprocess(post, sel, hosts, d, cs(".w"), 1, std::ptr::null()),
        AAPI_EINVAL
    );

    let b = open(AAPI_OP_BACKUP);
    let mut buf = [0x11 as c_char; 8];
    let mut size = buf.len();
    assert_eq!(
        snappath(b, null, cs("/a"), buf.as_mut_ptr(), &mut size),
        AAPI_EINVAL
    );
    assert_eq!(
        snappath(b, cs("s"), null, buf.as_mut_ptr(), &mut size),
        AAPI_EINVAL
    );
    assert_eq!(
        snappath(b, cs("s"), cs("/a"), buf.as_mut_ptr(), std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(
        snappath(b, cs("s"), cs("/a"), std::ptr::null_mut(), &mut size),
        AAPI_EINVAL
    );
    assert_eq!(
        snappath(b, cs("s"), cs(""), buf.as_mut_ptr(), &mut size),
        AAPI_EINVAL
    );
    assert_eq!((size, buf), (8, [0x11; 8]));
    let mut o: aapi_object_t = 0x99;
    assert_eq!(open_object(b, null, AAPI_OPEN_READ, &mut o), AAPI_EINVAL);
    assert_eq!(
        open_object(b, cs("/data/1"), AAPI_OPEN_READ, std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(open_object(b, cs(""), AAPI_OPEN_READ, &mut o), AAPI_EINVAL);
    assert_eq!(o, 0x99);
    let mut p = prop(0);
    assert_eq!(get_object_prop_byname(b, null, &mut p), AAPI_EINVAL);
    assert_eq!(
        get_object_prop_byname(b, cs("/a"), std::ptr::null_mut()),
        AAPI_EINVAL
    );
    let obj = open_obj(b, "/data/4");
    let mut n_read: usize = 0x55;
    let mut data = [0u8; 4];
    assert_eq!(
        read_object(obj, std::ptr::null_mut(), 4, &mut n_read),
        AAPI_EINVAL
    );
    assert_eq!(
        read_object(obj, data.as_mut_ptr(), 4, std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(n_read, 0x55);
    assert_eq!(get_object_prop(obj, std::ptr::null_mut()), AAPI_EINVAL);

    let r = restore_server();
    assert_eq!(restore_preprocess(r, std::ptr::null()), AAPI_EINVAL);
    let mut w: aapi_object_t = 0x99;
    assert_eq!(
        create_object(r, null, &prop(AAPI_OBJ_FILE), 0, &mut w),
        AAPI_EINVAL
    );
    assert_eq!(
        create_object(r, cs("/r/x"), std::ptr::null(), 0, &mut w),
        AAPI_EINVAL
    );
    assert_eq!(
        create_object(r, cs("/r/x"), &prop(AAPI_OBJ_FILE), 0, std::ptr::null_mut()),
        AAPI_EINVAL
    );
    assert_eq!(w, 0x99);
    assert_eq!(delete_object(r, null), AAPI_EINVAL);
    assert_eq!(
        set_object_utimes(r, null, std::ptr::null(), std::ptr::null()),
        AAPI_EINVAL
    );
    // NULL times are legal: "leave unchanged".
    assert_eq!(
        set_object_utimes(r, cs("/r/x"), std::ptr::null(), std::ptr::null()),
        AAPI_EOK
    );
    let w = create(r, "/r/x");
    assert_eq!(write_object(w, std::ptr::null(), 5), AAPI_EINVAL);
    assert_eq!(
        write_object(w, std::ptr::null(), 0),
        AAPI_EOK,
        "len 0 does nothing"
    );
    assert_eq!(
        get_last_error(std::ptr::null_mut(), std::ptr::null_mut()),
        AAPI_EINVAL
    );
    let r2 = open(AAPI_OP_RESTORE);
    let ri = aapi_restore_info_t {
        target_root: std::ptr::null(),
        ..restore_info("", 1)
    };
    assert_eq!(restore_preprocess(r2, &ri), AAPI_EINVAL);
    assert!(events().iter().all(|e| !e.starts_with("discovery")));
}

#[test]
fn bad_stale_forged_and_wrong_kind_handles() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let b = open(AAPI_OP_BACKUP);
    let obj = open_obj(b, "/data/3");
    let closed_server = open(AAPI_OP_BACKUP);
    assert_eq!(close_server(closed_server), AAPI_EOK);
    assert_eq!(close_server(closed_server), AAPI_EBADHANDLE, "double close");
    let closed_obj = open_obj(b, "/data/1");
    assert_eq!(close_object(closed_obj), AAPI_EOK);
    assert_eq!(close_object(closed_obj), AAPI_EBADHANDLE, "double close");
    // The freed slot is reused: the stale handle must not reach the new object.
    let reused = open_obj(b, "/data/2");
    let bad_servers = [
        0,
        closed_server,
        obj,
        0x1234_5678_9abc_def0,
        u64::MAX,
        b ^ 1,
    ];
    for (name, call) in server_calls(dir.path().to_str().unwrap()) {
        for h in bad_servers {
            assert_eq!(call(h), AAPI_EBADHANDLE, "{name} with server handle {h:#x}");
        }
    }
    assert!(last_error().contains("handle"), "{}", last_error());
    let bad_objects = [
        0,
        closed_obj,
        b,
        0x1234_5678_9abc_def0,
        u64::MAX,
        obj ^ (1 << 30),
    ];
    for (name, call) in object_calls() {
        for h in bad_objects {
            assert_eq!(call(h), AAPI_EBADHANDLE, "{name} with object handle {h:#x}");
        }
    }
    // Out-parameters stay untouched on EBADHANDLE.
    let mut n: usize = 0x42;
    let mut buf = [0u8; 4];
    assert_eq!(
        read_object(closed_obj, buf.as_mut_ptr(), 4, &mut n),
        AAPI_EBADHANDLE
    );
    assert_eq!(n, 0x42);
    let mut p: aapi_object_prop_t = filled(0xa5);
    p.struct_size = size_of::<aapi_object_prop_t>() as u32;
    let before = bytes_of(&p);
    assert_eq!(get_object_prop(b, &mut p), AAPI_EBADHANDLE);
    assert_eq!(bytes_of(&p), before);
    // The live handles still work.
    assert_eq!(read_object(reused, buf.as_mut_ptr(), 4, &mut n), AAPI_EOK);
    assert_eq!((n, &buf[..2]), (2, &[0u8, 1][..]));
    assert_eq!(close_object(obj), AAPI_EOK);
}

#[test]
fn calls_are_legal_only_in_their_operation() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let legal: &[(&str, &[u32])] = &[
        (
            "get_server_prop",
            &[
                AAPI_OP_DISCOVERY,
                AAPI_OP_BACKUP,
                AAPI_OP_POSTPROCESS,
                AAPI_OP_RESTORE,
            ],
        ),
        ("discovery", &[AAPI_OP_DISCOVERY]),
        ("postprocess", &[AAPI_OP_POSTPROCESS]),
        ("snappath", &[AAPI_OP_BACKUP]),
        ("open_object", &[AAPI_OP_BACKUP]),
        // In a restore session only between pre- and postprocess.
        ("get_object_prop_byname", &[AAPI_OP_BACKUP]),
        ("restore_preprocess", &[AAPI_OP_RESTORE]),
        // Legal only inside the restore window, so never on a fresh session.
        ("create_object", &[]),
        ("delete_object", &[]),
        ("set_object_utimes", &[]),
        ("restore_postprocess", &[]),
    ];
    for op in [
        AAPI_OP_DISCOVERY,
        AAPI_OP_BACKUP,
        AAPI_OP_POSTPROCESS,
        AAPI_OP_RESTORE,
    ] {
        for (name, call) in server_calls(dir.path().to_str().unwrap()) {
            if name == "close_server" {
                continue;
            }
            let s = open(op);
            let ok_ops = legal.iter().find(|(n, _)| *n == name).unwrap().1;
            let rc = call(s);
            if ok_ops.contains(&op) {
                assert_eq!(rc, AAPI_EOK, "{name} in operation {op}: {}", last_error());
            } else {
                assert_eq!(rc, AAPI_ESEQUENCE, "{name} in operation {op}");
            }
            assert_eq!(close_server(s), AAPI_EOK);
        }
    }
    // Once per session.
    events();
    let d = open(AAPI_OP_DISCOVERY);
    let calls = server_calls(dir.path().to_str().unwrap());
    let disc = &calls.iter().find(|(n, _)| *n == "discovery").unwrap().1;
    assert_eq!(disc(d), AAPI_EOK);
    assert_eq!(disc(d), AAPI_ESEQUENCE);
    assert!(last_error().contains("twice"));
    let p = open(AAPI_OP_POSTPROCESS);
    let post = &calls.iter().find(|(n, _)| *n == "postprocess").unwrap().1;
    assert_eq!(post(p), AAPI_EOK);
    assert_eq!(post(p), AAPI_ESEQUENCE);
    assert_eq!(
        events()
            .iter()
            .filter(|e| e.starts_with("postprocess"))
            .count(),
        1
    );
}

#[test]
fn restore_window_and_object_modes() {
    let _g = begin();
    init_claim();
    let r = open(AAPI_OP_RESTORE);
    let mut w: aapi_object_t = 0x99;
    assert_eq!(
        create_object(r, cs("/r/a"), &prop(AAPI_OBJ_FILE), 0, &mut w),
        AAPI_ESEQUENCE
    );
    assert!(last_error().contains("before aapi_restore_preprocess"));
    assert_eq!(w, 0x99);
    assert_eq!(restore_postprocess(r, AAPI_EOK), AAPI_ESEQUENCE);
    assert_eq!(
        restore_preprocess(r, &restore_info("", u64::MAX)),
        AAPI_ENOSPC
    );
    assert!(last_error().contains("a lot of bytes"));
    assert_eq!(
        restore_preprocess(r, &restore_info("", 10)),
        AAPI_EOK,
        "retry after ENOSPC"
    );
    assert_eq!(restore_preprocess(r, &restore_info("", 10)), AAPI_ESEQUENCE);
    let w = create(r, "/r/a");
    let mut buf = [0u8; 8];
    let mut n: usize = 0x42;
    assert_eq!(read_object(w, buf.as_mut_ptr(), 8, &mut n), AAPI_ESEQUENCE);
    assert_eq!(n, 0x42);
    assert_eq!(write_object(w, b"hello".as_ptr(), 5), AAPI_EOK);
    assert_eq!(flush(w), AAPI_EOK);
    let mut p = prop(0);
    assert_eq!(get_object_prop(w, &mut p), AAPI_EOK);
    assert_eq!(
        (p.obj_type, p.valid, p.mode),
        (AAPI_OBJ_FILE, AAPI_PROP_MODE, 0o644)
    );
    assert_eq!(close_object(w), AAPI_EOK);
    let t = aapi_time_t {
        sec: 10,
        nsec: 20,
        reserved: 0,
    };
    assert_eq!(
        set_object_utimes(r, cs("/r/a"), std::ptr::null(), &t),
        AAPI_EOK
    );
    assert_eq!(delete_object(r, cs("/r/old")), AAPI_EOK);
    let mut p = prop(0);
    assert_eq!(get_object_prop_byname(r, cs("/r/a"), &mut p), AAPI_EOK);
    assert_eq!(restore_postprocess(r, AAPI_EOK), AAPI_EOK);
    assert_eq!(restore_postprocess(r, AAPI_EOK), AAPI_ESEQUENCE);
    assert_eq!(
        create_object(r, cs("/r/b"), &prop(AAPI_OBJ_FILE), 0, &mut w.clone()),
        AAPI_ESEQUENCE
    );
    assert!(last_error().contains("after aapi_restore_postprocess"));
    assert_eq!(set_object_utimes(r, cs("/r/a"), &t, &t), AAPI_ESEQUENCE);
    assert_eq!(delete_object(r, cs("/r/a")), AAPI_ESEQUENCE);
    let mut p = prop(0);
    assert_eq!(
        get_object_prop_byname(r, cs("/r/a"), &mut p),
        AAPI_ESEQUENCE
    );
    assert_eq!(restore_preprocess(r, &restore_info("", 1)), AAPI_ESEQUENCE);
    assert_eq!(
        events(),
        [
            "restore_preprocess",
            "create /r/a File false",
            "commit /r/a 5",
            "utimes /r/a None Some(Timestamp { sec: 10, nsec: 20 })",
            "delete /r/old",
            "restore_postprocess Success",
        ]
    );

    // Objects opened for reading refuse writes and flushes.
    let b = open(AAPI_OP_BACKUP);
    let o = open_obj(b, "/data/2");
    assert_eq!(write_object(o, b"x".as_ptr(), 1), AAPI_ESEQUENCE);
    assert_eq!(write_object(o, std::ptr::null(), 0), AAPI_ESEQUENCE);
    assert_eq!(flush(o), AAPI_ESEQUENCE);
    let mut p = prop(0);
    assert_eq!(get_object_prop(o, &mut p), AAPI_EOK);
    assert_eq!(p.mode, 0o644, "file-type bits are masked off");
    assert_eq!(p.valid, AAPI_PROP_SIZE | AAPI_PROP_MODE | AAPI_PROP_MTIME);
    assert_eq!((p.size, p.mtime.sec, p.mtime.nsec), (2, 1_700_000_000, 5));
}

#[test]
fn end_of_data_is_sticky() {
    let _g = begin();
    init_claim();
    let b = open(AAPI_OP_BACKUP);
    let o = open_obj(b, "/data/5");
    let mut buf = [0u8; 3];
    let mut seen = vec![];
    for _ in 0..5 {
        let mut n = usize::MAX;
        assert_eq!(
            read_object(o, buf.as_mut_ptr(), 3, &mut n),
            AAPI_EOK,
            "{}",
            last_error()
        );
        seen.push(n);
    }
    // The reader asserts it is never called after returning 0: the layer answers for it.
    assert_eq!(seen, [3, 2, 0, 0, 0]);
    let mut n = 7;
    assert_eq!(
        read_object(o, buf.as_mut_ptr(), 0, &mut n),
        AAPI_EINVAL,
        "buf_size 0"
    );
    assert_eq!(n, 7);
}

#[test]
fn struct_sizes_below_abi_1_0_give_eabi() {
    let _g = begin();
    init_claim();
    let def = session(AAPI_OP_BACKUP);
    // SAFETY: leaked session definition owned by this test.
    unsafe { (*def).struct_size = 16 };
    let mut h: aapi_server_t = 0x77;
    assert_eq!(open_server(cs("srv"), def, &mut h), AAPI_EABI);
    let def = session(AAPI_OP_BACKUP);
    // SAFETY: as above.
    unsafe { (*def).abi_major = 2 };
    assert_eq!(open_server(cs("srv"), def, &mut h), AAPI_EABI);
    assert_eq!(h, 0x77);

    let b = open(AAPI_OP_BACKUP);
    let mut si: aapi_server_info_t = filled(0xa5);
    si.struct_size = 4;
    let before = bytes_of(&si);
    assert_eq!(get_server_prop(b, &mut si), AAPI_EABI);
    assert_eq!(bytes_of(&si), before);
    si.struct_size = size_of::<aapi_server_info_t>() as u32;
    assert_eq!(get_server_prop(b, &mut si), AAPI_EOK);
    assert_eq!(
        si.srv_flags,
        AAPI_SRVC_FULL_BACKUP_SUPPORT | AAPI_SRVC_INCR_BACKUP_SUPPORT
    );

    let mut p: aapi_object_prop_t = filled(0xa5);
    p.struct_size = size_of::<aapi_object_prop_t>() as u32 - 1;
    let before = bytes_of(&p);
    assert_eq!(get_object_prop_byname(b, cs("/a"), &mut p), AAPI_EABI);
    let o = open_obj(b, "/data/1");
    assert_eq!(get_object_prop(o, &mut p), AAPI_EABI);
    assert_eq!(bytes_of(&p), before);
    p.struct_size += 1;
    assert_eq!(
        get_object_prop_byname(b, cs("/missing"), &mut p),
        AAPI_ENOENT
    );
    assert_eq!(bytes_of(&p)[4..], before[4..], "untouched on ENOENT");

    let r = open(AAPI_OP_RESTORE);
    let ri = aapi_restore_info_t {
        struct_size: 8,
        ..restore_info("", 1)
    };
    assert_eq!(restore_preprocess(r, &ri), AAPI_EABI);
    assert_eq!(restore_preprocess(r, &restore_info("", 1)), AAPI_EOK);
    let small = aapi_object_prop_t {
        struct_size: 8,
        ..prop(AAPI_OBJ_FILE)
    };
    let mut w: aapi_object_t = 0x99;
    assert_eq!(create_object(r, cs("/r/x"), &small, 0, &mut w), AAPI_EABI);
    assert_eq!(w, 0x99);
}

#[test]
fn values_are_checked_before_the_plugin_runs() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let d = cs(dir.path().to_str().unwrap());
    let sel = cs_array(&["/a"]);
    let disc = open(AAPI_OP_DISCOVERY);
    let mut id = snapid("sentinel");
    let hosts = cs_array(&["h1", "h2"]);
    assert_eq!(
        discovery(disc, sel, hosts, d, cs(".w"), 99, &mut id),
        AAPI_ESCHED_NOT_SUPPORTED
    );
    assert_eq!(
        discovery(disc, sel, hosts, d, cs(".w"), AAPI_SCHED_CINC, &mut id),
        AAPI_ESCHED_NOT_SUPPORTED
    );
    assert!(last_error().contains("not supported"));
    assert_eq!(
        discovery(disc, sel, cs_array(&["h1", "h1"]), d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(disc, sel, cs_array(&["a/b"]), d, cs(".w"), 1, &mut id),
        AAPI_EINVAL
    );
    assert_eq!(
        discovery(
            disc,
            sel,
            hosts,
            cs("/nonexistent/dir"),
            cs(".w"),
            1,
            &mut id
        ),
        AAPI_EINVAL
    );
    assert_eq!(bytes_of(&id), bytes_of(&snapid("sentinel")));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    assert!(events().is_empty(), "the plugin was never called");
    // The refusals did not use up the session's one discovery.
    assert_eq!(
        discovery(disc, sel, hosts, d, cs(".w"), AAPI_SCHED_INCR, &mut id),
        AAPI_EOK,
        "{}",
        last_error()
    );
    assert_eq!(bytes_of(&id), bytes_of(&snapid("snap-1")));
    assert!(dir.path().join("h1.w").is_file() && dir.path().join("h2.w").is_file());
    assert_eq!(events(), ["discovery Incremental"]);

    let post = open(AAPI_OP_POSTPROCESS);
    let mut unterminated = snapid("");
    unterminated.id = [b'a' as c_char; AAPI_SNAPID_MAX];
    assert_eq!(
        postprocess(post, sel, hosts, d, cs(".w"), 1, &unterminated),
        AAPI_EINVAL
    );
    assert_eq!(
        postprocess(post, sel, hosts, d, cs(".w"), 42, &snapid("s")),
        AAPI_EINVAL
    );

    let mut h = 0;
    for (what, op, budget) in [("operation", 9, 1000), ("budget", AAPI_OP_BACKUP, 0)] {
        let def = session_with(op, &[], budget);
        assert_eq!(open_server(cs("srv"), def, &mut h), AAPI_EINVAL, "{what}");
    }
    assert_eq!(
        open_server(cs("unreachable"), session(AAPI_OP_BACKUP), &mut h),
        AAPI_ECONNECT
    );
    assert!(last_error().contains("no route"));

    let b = open(AAPI_OP_BACKUP);
    let mut o: aapi_object_t = 0x99;
    for flags in [0, 2, 3, AAPI_OPEN_READ | (1 << 31)] {
        assert_eq!(
            open_object(b, cs("/data/1"), flags, &mut o),
            AAPI_EINVAL,
            "flags {flags:#x}"
        );
    }
    assert_eq!(
        open_object(b, cs("/missing"), AAPI_OPEN_READ, &mut o),
        AAPI_ENOENT
    );
    assert_eq!(o, 0x99);

    let r = restore_server();
    let mut bad_type = prop(9);
    assert_eq!(
        create_object(r, cs("/r/x"), &bad_type, 0, &mut o),
        AAPI_EINVAL
    );
    bad_type = prop(AAPI_OBJ_FILE);
    bad_type.mode = 0o17777;
    assert_eq!(
        create_object(r, cs("/r/x"), &bad_type, 0, &mut o),
        AAPI_EINVAL
    );
    assert_eq!(
        create_object(r, cs("/r/x"), &prop(AAPI_OBJ_DIR), 2, &mut o),
        AAPI_EINVAL
    );
    assert_eq!(o, 0x99);
    let bad_time = aapi_time_t {
        sec: 0,
        nsec: 1_000_000_000,
        reserved: 0,
    };
    assert_eq!(
        set_object_utimes(r, cs("/r/x"), &bad_time, std::ptr::null()),
        AAPI_EINVAL
    );
    let mut w = 0;
    assert_eq!(
        create_object(
            r,
            cs("/r/d"),
            &prop(AAPI_OBJ_DIR),
            AAPI_CREATE_OVERWRITE,
            &mut w
        ),
        AAPI_EOK
    );
    assert_eq!(events(), ["restore_preprocess", "create /r/d Dir true"]);
    // No AAPI_CAP_ALTERNATE_RESTORE: an alternate root is refused before the plugin runs.
    let r2 = open(AAPI_OP_RESTORE);
    assert_eq!(
        restore_preprocess(r2, &restore_info("/mnt/alt", 1)),
        AAPI_ENOTSUP
    );
}

#[test]
fn in_out_buffers_report_the_size_needed_and_touch_nothing_else() {
    let _g = begin();
    init_claim();
    let b = open(AAPI_OP_BACKUP);
    let expected = b"/snap/s1/a b/c\0";
    let need = expected.len();
    const GUARD: c_char = 0x5a;
    let mut buf = [GUARD; 64];
    // Too small by one: nothing but the size is written, not even inside the declared capacity.
    let mut size = need - 1;
    assert_eq!(
        snappath(b, cs("s1"), cs("/a b/c"), buf.as_mut_ptr(), &mut size),
        AAPI_EBUFSIZE
    );
    assert_eq!(size, need);
    assert!(buf.iter().all(|&c| c == GUARD));
    assert!(last_error().contains(&format!("{need} bytes are needed")));
    // A size query.
    let mut size = 0;
    assert_eq!(
        snappath(b, cs("s1"), cs("/a b/c"), std::ptr::null_mut(), &mut size),
        AAPI_EBUFSIZE
    );
    assert_eq!(size, need);
    // Exactly enough, then more than enough: the bytes after the NUL are never touched.
    for capacity in [need, buf.len()] {
        let mut buf = [GUARD; 64];
        let mut size = capacity;
        assert_eq!(
            snappath(b, cs("s1"), cs("/a b/c"), buf.as_mut_ptr(), &mut size),
            AAPI_EOK
        );
        assert_eq!(size, need);
        let got: Vec<u8> = buf[..need].iter().map(|&c| c as u8).collect();
        assert_eq!(got, expected);
        assert!(buf[need..].iter().all(|&c| c == GUARD));
    }

    // aapi_get_last_error follows the same protocol and never changes the stored message.
    assert_eq!(pgn_claim(cs("nope")), AAPI_ENOTCLAIMED);
    let message = last_error();
    let need = message.len() + 1;
    let mut size = 0;
    assert_eq!(
        get_last_error(std::ptr::null_mut(), &mut size),
        AAPI_EBUFSIZE
    );
    assert_eq!(size, need);
    let mut buf = [GUARD; 512];
    let mut size = need - 1;
    assert_eq!(get_last_error(buf.as_mut_ptr(), &mut size), AAPI_EBUFSIZE);
    assert_eq!(size, need);
    assert!(buf.iter().all(|&c| c == GUARD));
    let mut size = need;
    assert_eq!(get_last_error(buf.as_mut_ptr(), &mut size), AAPI_EOK);
    assert_eq!(size, need);
    assert!(buf[need..].iter().all(|&c| c == GUARD));
    assert_eq!(
        last_error(),
        message,
        "failed queries did not replace the message"
    );
    let mut size = 4;
    assert_eq!(get_last_error(std::ptr::null_mut(), &mut size), AAPI_EINVAL);

    // The credential helper grows its buffer to what the framework asks for.
    open_named("cred", session(AAPI_OP_BACKUP));
    assert_eq!(
        events(),
        [
            format!("cred big {BIG_SECRET_LEN}"),
            "cred pw secret".into(),
            "cred missing true".into()
        ]
    );
}

#[test]
fn last_error_is_per_thread() {
    let _g = begin();
    init_claim();
    assert_eq!(pgn_claim(cs("nope")), AAPI_ENOTCLAIMED);
    let here = last_error();
    assert!(here.contains("nope"));
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread has no failed call");
    let other = std::thread::spawn(|| {
        assert_eq!(close_server(0), AAPI_EBADHANDLE);
        last_error()
    })
    .join()
    .unwrap();
    assert!(other.contains("is 0"), "{other}");
    assert_eq!(last_error(), here);
}

#[test]
fn panics_become_einternal_and_the_process_survives() {
    let _g = begin();
    init_claim();
    let mut h: aapi_server_t = 0x77;
    assert_eq!(
        open_server(cs("panic"), session(AAPI_OP_BACKUP), &mut h),
        AAPI_EINTERNAL
    );
    assert_eq!(h, 0x77);
    let msg = last_error();
    assert!(
        msg.contains("panicked in aapi_open_server: open_server exploded"),
        "{msg}"
    );
    assert!(
        log_lines()
            .iter()
            .any(|(l, t)| *l == AAPI_LOG_ERROR && t == &msg),
        "the panic is logged as an error: {:?}",
        log_lines()
    );

    let b = open(AAPI_OP_BACKUP);
    let mut o: aapi_object_t = 0x99;
    assert_eq!(
        open_object(b, cs("/panic"), AAPI_OPEN_READ, &mut o),
        AAPI_EINTERNAL
    );
    assert_eq!(o, 0x99);
    // A panic inside read, while the layer holds the object's lock: the lock is poisoned, the
    // next call recovers it and the object still works and closes.
    let o = open_obj(b, "/panic-read");
    let mut buf = [0u8; 64];
    let mut n: usize = 0x42;
    assert_eq!(read_object(o, buf.as_mut_ptr(), 64, &mut n), AAPI_EINTERNAL);
    assert_eq!(n, 0x42);
    assert!(last_error().contains("read exploded"));
    assert_eq!(read_object(o, buf.as_mut_ptr(), 64, &mut n), AAPI_EOK);
    assert_eq!(&buf[..n], b"after the panic");
    assert_eq!(close_object(o), AAPI_EOK);

    let dir = tempfile::tempdir().unwrap();
    let d = open(AAPI_OP_DISCOVERY);
    let mut id = snapid("sentinel");
    let rc = discovery(
        d,
        cs_array(&["/panic"]),
        cs_array(&["h"]),
        cs(dir.path().to_str().unwrap()),
        cs(".w"),
        1,
        &mut id,
    );
    assert_eq!(rc, AAPI_EINTERNAL);
    assert_eq!(bytes_of(&id), bytes_of(&snapid("sentinel")));
    // Everything else keeps working, including closing.
    assert_eq!(close_server(d), AAPI_EOK);
    assert_eq!(close_server(b), AAPI_EOK);
}

/// Set in the process that [`panics_inside_entry_points_stay_off_stderr`] starts: which hook
/// exists before the SDK's (`default` or `vendor`).
const PANIC_CHILD: &str = "AAPI_TEST_PANIC_CHILD";

/// What the plugin's own panic hook saw (the `vendor` run).
static VENDOR_HOOK: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Panics inside entry points print nothing on the process's stderr (SEC-3), not even with
/// RUST_BACKTRACE set: the layer reports them as the last error and an ERROR log line, with the
/// location. Panics outside entry points still reach the hook that was there before the SDK's:
/// Rust's default hook, which prints them, or the plugin's own. The test runs itself in a child
/// process per case, whose stderr it reads.
#[test]
fn panics_inside_entry_points_stay_off_stderr() {
    const NAME: &str = "panics_inside_entry_points_stay_off_stderr";
    if let Some(mode) = std::env::var_os(PANIC_CHILD) {
        return panicking_child(mode.to_str().unwrap());
    }
    for mode in ["default", "vendor"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(PANIC_CHILD, mode)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let all = format!(
            "{mode}: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        assert!(out.status.success(), "{all}");
        assert!(stdout.contains("panicking child: done"), "{all}");
        assert!(
            !stderr.contains("exploded"),
            "a plugin panic reached stderr: {all}"
        );
        let outside = match mode {
            // The default hook printed the one panic outside entry points, and only that one.
            "default" => 1,
            _ => 0,
        };
        assert_eq!(stderr.matches("panicked at").count(), outside, "{all}");
        assert_eq!(
            stderr.matches("outside the entry points").count(),
            outside,
            "{all}"
        );
    }
}

/// The child of [`panics_inside_entry_points_stay_off_stderr`].
fn panicking_child(mode: &str) {
    if mode == "vendor" {
        std::panic::set_hook(Box::new(|info| {
            let text = info.payload().downcast_ref::<&str>().unwrap_or(&"?");
            lock(&VENDOR_HOOK).push(text.to_string());
        }));
    }
    let outside = || {
        let r = std::panic::catch_unwind(|| panic!("outside the entry points"));
        assert!(r.is_err());
    };
    let _g = begin();
    init_claim();
    // After the SDK's first call, so after its hook is in place.
    outside();

    let mut h: aapi_server_t = 0;
    assert_eq!(
        open_server(cs("panic"), session(AAPI_OP_BACKUP), &mut h),
        AAPI_EINTERNAL
    );
    let msg = last_error();
    assert!(
        msg.contains("panicked in aapi_open_server: open_server exploded (at ")
            && msg.contains("plugin_layer.rs:"),
        "the message names the panic and its location: {msg}"
    );
    assert!(
        log_lines()
            .iter()
            .any(|(l, t)| *l == AAPI_LOG_ERROR && t == &msg),
        "{:?}",
        log_lines()
    );
    let b = open(AAPI_OP_BACKUP);
    let mut o: aapi_object_t = 0;
    assert_eq!(
        open_object(b, cs("/panic"), AAPI_OPEN_READ, &mut o),
        AAPI_EINTERNAL
    );
    let o = open_obj(b, "/panic-read");
    let mut buf = [0u8; 64];
    let mut n = 0;
    assert_eq!(read_object(o, buf.as_mut_ptr(), 64, &mut n), AAPI_EINTERNAL);
    assert!(
        last_error().contains("read exploded (at "),
        "{}",
        last_error()
    );
    assert_eq!(close_object(o), AAPI_EOK);

    // A scoped thread of read panics, and the scope panics in turn: the report carries both
    // messages, and neither reaches stderr.
    let o = open_obj(b, "/scoped-panic");
    assert_eq!(read_object(o, buf.as_mut_ptr(), 64, &mut n), AAPI_EINTERNAL);
    let msg = last_error();
    assert!(
        msg.contains("panicked in aapi_read_object: a scoped thread panicked (at ")
            && msg.contains("; a thread the plugin started panicked: worker exploded (at ")
            && msg.matches("plugin_layer.rs:").count() == 2,
        "{msg}"
    );
    assert!(
        log_lines()
            .iter()
            .any(|(l, t)| *l == AAPI_LOG_ERROR && t == &msg),
        "{:?}",
        log_lines()
    );
    assert_eq!(close_object(o), AAPI_EOK);
    // A thread whose panic the plugin handles: the call fails as the plugin says, and the
    // panic is logged as a warning instead of printed.
    let o = open_obj(b, "/thread-panic");
    assert_eq!(read_object(o, buf.as_mut_ptr(), 64, &mut n), AAPI_EINTERNAL);
    assert_eq!(last_error(), "the helper thread failed");
    let warned: Vec<_> = log_lines()
        .into_iter()
        .filter(|(l, t)| *l == AAPI_LOG_WARNING && t.contains("helper exploded"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", log_lines());
    assert!(
        warned[0].1.starts_with(
            "during aapi_read_object, a thread the plugin started panicked: helper exploded (at "
        ),
        "{warned:?}"
    );
    assert_eq!(close_object(o), AAPI_EOK);
    assert_eq!(close_server(b), AAPI_EOK);

    if mode == "vendor" {
        // The plugin's hook saw the panic outside the entry points, none of those inside, and
        // sees the next one outside too.
        assert_eq!(*lock(&VENDOR_HOOK), ["outside the entry points"]);
        outside();
        assert_eq!(lock(&VENDOR_HOOK).len(), 2);
    }
    println!("panicking child: done");
}

#[test]
fn discovery_results_are_checked() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let d = cs(dir.path().to_str().unwrap());
    let run = |sel: &str| {
        let s = open(AAPI_OP_DISCOVERY);
        let mut id = snapid("sentinel");
        let rc = discovery(
            s,
            cs_array(&[sel]),
            cs_array(&["h1", "h2"]),
            d,
            cs(".w"),
            1,
            &mut id,
        );
        (rc, id)
    };
    let (rc, id) = run("/no-files");
    assert_eq!(rc, AAPI_EINTERNAL);
    assert!(
        last_error().contains("wrote no workload file"),
        "{}",
        last_error()
    );
    assert_eq!(bytes_of(&id), bytes_of(&snapid("sentinel")));
    let (rc, id) = run("/long-id");
    assert_eq!(rc, AAPI_EINTERNAL);
    assert!(last_error().contains("snapshot id of 256 bytes"));
    assert_eq!(bytes_of(&id), bytes_of(&snapid("sentinel")));
    let (rc, id) = run("/ok");
    assert_eq!(rc, AAPI_EOK);
    assert_eq!(bytes_of(&id), bytes_of(&snapid("snap-1")));
    let file = WorkloadFile::read_from_path(&dir.path().join("h2.w")).unwrap();
    assert_eq!(file.backup_host, "h2");
}

#[test]
fn keepalive_is_rate_limited_and_cancellation_becomes_ecancelled() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let d = cs(dir.path().to_str().unwrap());
    // Budget 400 ms: one keepalive per 100 ms at most, over a 350 ms walk.
    let s = open_named("srv", session_with(AAPI_OP_DISCOVERY, &[], 400));
    let mut id = snapid("");
    let rc = discovery(
        s,
        cs_array(&["/keepalive"]),
        cs_array(&["h"]),
        d,
        cs(".w"),
        1,
        &mut id,
    );
    assert_eq!(rc, AAPI_EOK, "{}", last_error());
    let sent = KEEPALIVES.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&sent),
        "{sent} keepalives in 350 ms at a 100 ms interval"
    );

    CANCEL.store(true, Ordering::SeqCst);
    let s = open_named("srv", session_with(AAPI_OP_DISCOVERY, &[], 400));
    let before = KEEPALIVES.load(Ordering::SeqCst);
    let start = Instant::now();
    let rc = discovery(
        s,
        cs_array(&["/keepalive"]),
        cs_array(&["h"]),
        d,
        cs(".w"),
        1,
        &mut id,
    );
    assert_eq!(rc, AAPI_ECANCELLED);
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "returned promptly"
    );
    assert!(last_error().contains("cancelled"));
    assert_eq!(
        KEEPALIVES.load(Ordering::SeqCst),
        before + 1,
        "cancellation is sticky"
    );
}

/// The lines of the log that contain `text`.
fn logged(text: &str) -> Vec<(u32, String)> {
    log_lines()
        .into_iter()
        .filter(|(_, t)| t.contains(text))
        .collect()
}

/// A session's callbacks reach the framework only while one of its entry points runs (THR-3),
/// from any thread. Between its calls, and during other sessions' calls, log lines wait for the
/// session's next entry point (64 of them, the rest counted), keepalives answer `Ok` without
/// calling the framework and credentials fail with `AAPI_ESEQUENCE`; once it is closed, nothing
/// reaches the framework.
#[test]
fn session_callbacks_reach_the_framework_only_during_its_entry_points() {
    let _g = begin();
    init_claim();
    let dir = tempfile::tempdir().unwrap();
    let d = cs(dir.path().to_str().unwrap());
    let discover = |s, sel: &str| {
        let mut id = snapid("");
        discovery(
            s,
            cs_array(&[sel]),
            cs_array(&["h"]),
            d,
            cs(".w"),
            AAPI_SCHED_FULL,
            &mut id,
        )
    };
    let get_prop = |s| {
        let mut i = aapi_server_info_t {
            struct_size: size_of::<aapi_server_info_t>() as u32,
            ..Default::default()
        };
        get_server_prop(s, &mut i)
    };
    let a = open_named("keep", session(AAPI_OP_DISCOVERY));
    let host = lock(&KEPT).clone().unwrap();
    lock(&LOG).clear();

    // Between the session's calls.
    host.info("between calls");
    assert_eq!(host.keepalive(), Ok(()));
    assert_eq!(host.keepalive_if_due(), Ok(()));
    assert_eq!(KEEPALIVES.load(Ordering::SeqCst), 0);
    let err = host.credential("pw").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Sequence, "{err}");
    assert!(err.message().contains("no entry point"), "{err}");
    // During another session's call.
    let b = open(AAPI_OP_DISCOVERY);
    assert_eq!(discover(b, "/kept-session"), AAPI_EOK, "{}", last_error());
    assert_eq!(
        events(),
        [
            "kept keepalive Ok(())",
            "kept credential Err(Sequence)",
            "discovery Full"
        ]
    );
    assert_eq!(KEEPALIVES.load(Ordering::SeqCst), 0);
    assert_eq!(log_lines(), [], "nothing reached the framework");
    // The session's next entry point sends them first, in order.
    assert_eq!(get_prop(a), AAPI_EOK);
    assert_eq!(
        log_lines(),
        [
            (AAPI_LOG_INFO, "between calls".to_string()),
            (AAPI_LOG_INFO, "during another session's call".to_string())
        ]
    );

    // At most 64 lines wait; the others are counted.
    lock(&LOG).clear();
    for i in 0..70 {
        host.debug(format!("line {i}"));
    }
    assert_eq!(log_lines(), []);
    assert_eq!(get_prop(a), AAPI_EOK);
    let lines = log_lines();
    assert_eq!(lines.len(), 65, "{lines:?}");
    assert!(
        lines[..64]
            .iter()
            .enumerate()
            .all(|(i, (level, text))| { *level == AAPI_LOG_DEBUG && *text == format!("line {i}") })
    );
    assert_eq!(
        lines[64],
        (
            AAPI_LOG_WARNING,
            "6 more log lines, sent while no entry point of this session was running, were dropped"
                .to_string()
        )
    );
    assert_eq!(get_prop(a), AAPI_EOK);
    assert_eq!(log_lines().len(), 65, "sent once");

    // Threads that a call of the session starts use its callbacks while the call runs.
    lock(&LOG).clear();
    assert_eq!(discover(a, "/threads"), AAPI_EOK, "{}", last_error());
    let mut ev = events();
    ev.sort();
    assert_eq!(
        ev,
        [
            "discovery Full",
            "worker credential Ok(true)",
            "worker credential Ok(true)",
            "worker keepalive Ok(())",
            "worker keepalive Ok(())"
        ]
    );
    assert_eq!(KEEPALIVES.load(Ordering::SeqCst), 2);
    assert_eq!(logged("from worker").len(), 2);

    // aapi_close_server is an entry point of the session: it sends what waits. After it,
    // nothing reaches the framework.
    lock(&LOG).clear();
    host.warn("before close");
    assert_eq!(close_server(a), AAPI_EOK);
    assert_eq!(
        log_lines(),
        [(AAPI_LOG_WARNING, "before close".to_string())]
    );
    host.warn("after close");
    assert_eq!(host.keepalive().unwrap_err().kind(), ErrorKind::Sequence);
    assert_eq!(
        host.credential("pw").unwrap_err().kind(),
        ErrorKind::Sequence
    );
    assert_eq!(log_lines().len(), 1);
    assert_eq!(KEEPALIVES.load(Ordering::SeqCst), 2);

    // Lines still waiting when aapi_terminate closes the session are dropped.
    open_named("keep", session(AAPI_OP_DISCOVERY));
    let host = lock(&KEPT).take().unwrap();
    host.info("never sent");
    assert_eq!(terminate(), AAPI_EOK);
    assert_eq!(logged("never sent"), []);
}

#[test]
fn closing_a_server_or_terminating_closes_what_is_open() {
    let _g = begin();
    init_claim();
    let b = open(AAPI_OP_BACKUP);
    let o1 = open_obj(b, "/data/1");
    let o2 = open_obj(b, "/data/2");
    assert_eq!(close_object(o1), AAPI_EOK);
    let r = restore_server();
    let w = create(r, "/r/open");
    events();
    assert_eq!(close_server(b), AAPI_EOK);
    assert_eq!(events(), ["close reader /data/2", "server close"]);
    assert_eq!(close_object(o2), AAPI_EBADHANDLE, "closed with its server");
    let b2 = open(AAPI_OP_BACKUP);
    let o3 = open_obj(b2, "/data/3");
    assert_eq!(terminate(), AAPI_EOK);
    let mut ev = events();
    ev.sort();
    assert_eq!(
        ev,
        [
            "abort /r/open",
            "close reader /data/3",
            "server close",
            "server close",
            "terminate"
        ]
    );
    init_claim();
    assert_eq!(close_object(w), AAPI_EBADHANDLE);
    assert_eq!(close_object(o3), AAPI_EBADHANDLE);
    assert_eq!(close_server(r), AAPI_EBADHANDLE);
}

#[test]
fn restore_postprocess_completes_or_aborts_open_objects() {
    let _g = begin();
    init_claim();
    let r = restore_server();
    let w = create(r, "/r/a");
    assert_eq!(write_object(w, b"abc".as_ptr(), 3), AAPI_EOK);
    events();
    assert_eq!(restore_postprocess(r, AAPI_EIO), AAPI_EOK);
    assert_eq!(events(), ["abort /r/a", "restore_postprocess Failed(9)"]);
    assert_eq!(close_object(w), AAPI_EBADHANDLE);

    let r = restore_server();
    let w = create(r, "/r/b");
    assert_eq!(write_object(w, b"abcd".as_ptr(), 4), AAPI_EOK);
    events();
    assert_eq!(restore_postprocess(r, AAPI_EOK), AAPI_EOK);
    assert_eq!(events(), ["commit /r/b 4", "restore_postprocess Success"]);

    // Completing a left-open object fails: the restore is rolled back and the code returned.
    let r = restore_server();
    create(r, "/r/fail-close");
    events();
    assert_eq!(restore_postprocess(r, AAPI_EOK), AAPI_EIO);
    assert!(last_error().contains("disk went away"));
    assert_eq!(events(), ["restore_postprocess Failed(9)"]);
}

#[test]
fn objects_on_different_handles_run_concurrently() {
    let _g = begin();
    init_claim();
    ARRIVED.store(0, Ordering::SeqCst);
    let b = open(AAPI_OP_BACKUP);
    let handles = [open_obj(b, "/rendezvous"), open_obj(b, "/rendezvous")];
    let threads: Vec<_> = handles
        .into_iter()
        .map(|o| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                let mut n = 0;
                let rc = read_object(o, buf.as_mut_ptr(), 64, &mut n);
                (rc, n, last_error())
            })
        })
        .collect();
    for t in threads {
        let (rc, n, err) = t.join().unwrap();
        assert_eq!((rc, n), (AAPI_EOK, 64), "{err}");
    }
}

#[test]
fn calls_on_one_object_never_overlap() {
    let _g = begin();
    init_claim();
    OVERLAP.store(false, Ordering::SeqCst);
    let b = open(AAPI_OP_BACKUP);
    let o = open_obj(b, "/overlap");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut buf = [0u8; 8];
                    let mut n = 0;
                    assert_eq!(read_object(o, buf.as_mut_ptr(), 8, &mut n), AAPI_EOK);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        !OVERLAP.load(Ordering::SeqCst),
        "two reads of one object overlapped"
    );
}
