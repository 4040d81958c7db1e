//! A plugin that does not declare `AAPI_CAP_CONCURRENT_OBJECTS`: the layer must serialise every
//! session and object call, whatever threads the framework uses.

mod common;

use aapi_sdk::plugin::{
    BackupObject, HostInfo, NoObject, ObjectProps, ObjectType, Plugin, PluginInfo, RestoreInfo,
    Result, Server, ServerInfo, Session,
};
use common::*;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Count the plugin calls running at once while `f` runs.
fn tracked<R>(f: impl FnOnce() -> R) -> R {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_micros(300));
    let r = f();
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    r
}

struct SerialPlugin;

impl Plugin for SerialPlugin {
    const INFO: PluginInfo = PluginInfo {
        name: c"serial-plugin",
        version: c"0.1",
        vendor: c"aapi tests",
        workload_types: c"test",
        capabilities: aapi_sdk::abi::AAPI_CAP_RESTORE | aapi_sdk::abi::AAPI_CAP_ALTERNATE_RESTORE,
        max_concurrent_objects: 1,
    };
    type Server = SerialServer;

    fn init(_host: &HostInfo) -> Result<Self> {
        Ok(SerialPlugin)
    }

    fn open_server(&self, _server: &str, _session: Session) -> Result<SerialServer> {
        Ok(SerialServer)
    }
}

struct SerialServer;

impl Server for SerialServer {
    type Reader = Counter;
    type Writer = NoObject;

    fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            full: true,
            ..Default::default()
        })
    }

    fn open_object(&self, _path: &Path) -> Result<Counter> {
        tracked(|| Ok(Counter(0)))
    }

    fn object_props(&self, _path: &Path) -> Result<ObjectProps> {
        tracked(|| Ok(ObjectProps::new(ObjectType::Dir)))
    }

    fn restore_preprocess(&self, info: &RestoreInfo) -> Result<()> {
        assert_eq!(info.target_dir(), Path::new("/mnt/alt"));
        Ok(())
    }
}

/// Yields 100 single bytes.
struct Counter(u32);

impl BackupObject for Counter {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        tracked(|| {
            if self.0 == 100 {
                return Ok(0);
            }
            self.0 += 1;
            buf[0] = self.0 as u8;
            Ok(1)
        })
    }

    fn props(&self) -> Result<ObjectProps> {
        tracked(|| Ok(ObjectProps::new(ObjectType::File)))
    }
}

aapi_sdk::export_plugin!(SerialPlugin);

#[test]
fn every_call_is_serialised_without_the_capability() {
    let _g = serial();
    let info = init();
    assert_eq!(info.capabilities & AAPI_CAP_CONCURRENT_OBJECTS, 0);
    assert_eq!(info.max_concurrent_objects, 1);
    assert_eq!(pgn_claim(c"test".as_ptr()), AAPI_EOK);
    let b = open(AAPI_OP_BACKUP);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let o = {
                    let mut o = 0;
                    assert_eq!(open_object(b, cs("/x"), AAPI_OPEN_READ, &mut o), AAPI_EOK);
                    o
                };
                let mut total = 0;
                loop {
                    let mut buf = [0u8; 4];
                    let mut n = 0;
                    assert_eq!(read_object(o, buf.as_mut_ptr(), 4, &mut n), AAPI_EOK);
                    if n == 0 {
                        break;
                    }
                    total += n;
                    if t == 0 {
                        // A session call racing the object calls of the other threads.
                        let mut p = prop(0);
                        assert_eq!(get_object_prop_byname(b, cs("/x"), &mut p), AAPI_EOK);
                        assert_eq!(p.obj_type, AAPI_OBJ_DIR);
                    }
                }
                assert_eq!(close_object(o), AAPI_EOK);
                total
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 100);
    }
    assert_eq!(
        MAX_IN_FLIGHT.load(Ordering::SeqCst),
        1,
        "plugin calls overlapped"
    );
}

#[test]
fn alternate_root_is_accepted_with_the_capability_and_restore_defaults_apply() {
    let _g = serial();
    init();
    assert_eq!(pgn_claim(c"test".as_ptr()), AAPI_EOK);
    let r = open(AAPI_OP_RESTORE);
    assert_eq!(
        restore_preprocess(r, &restore_info("/mnt/alt", 1)),
        AAPI_EOK
    );
    // Calls the plugin does not implement answer AAPI_ENOTSUP through the trait defaults.
    let mut o = 0;
    assert_eq!(
        create_object(r, cs("/mnt/alt/x"), &prop(AAPI_OBJ_FILE), 0, &mut o),
        AAPI_ENOTSUP
    );
    assert!(last_error().contains("not implemented"));
    let d = open(AAPI_OP_DISCOVERY);
    let dir = tempfile::tempdir().unwrap();
    let mut id = snapid("");
    let rc = discovery(
        d,
        cs_array(&["/a"]),
        cs_array(&["h"]),
        cs(dir.path().to_str().unwrap()),
        cs(""),
        AAPI_SCHED_INCR,
        &mut id,
    );
    assert_eq!(
        rc, AAPI_ESCHED_NOT_SUPPORTED,
        "only full backups are declared"
    );
    let rc = discovery(
        d,
        cs_array(&["/a"]),
        cs_array(&["h"]),
        cs(dir.path().to_str().unwrap()),
        cs(""),
        AAPI_SCHED_FULL,
        &mut id,
    );
    assert_eq!(rc, AAPI_ENOTSUP);
}
