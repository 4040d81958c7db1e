//! The loader and the in-process client layer, against the fault-injection test plugin.

mod common;

use aapi_host::client::{DiscoveryArgs, HostHooks, Plugin, SessionDef};
use aapi_host::loader::{LoadError, PluginLibrary, find_claiming};
use aapi_sdk::abi::*;
use aapi_sdk::workload::{WorkloadFile, file_name};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    logs: Mutex<Vec<String>>,
}

impl HostHooks for Recorder {
    fn log(&self, _level: u32, message: &str) {
        self.logs.lock().unwrap().push(message.to_string());
    }
    fn call_enter(&self, function: &'static str) {
        self.calls.lock().unwrap().push(function.to_string());
    }
}

#[test]
fn good_plugin_handshakes_and_claims() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::private_copy(&common::good_plugin(), dir.path());
    let rec = Arc::new(Recorder::default());
    let plugin = Plugin::load(&lib, rec.clone()).unwrap();
    assert_eq!(plugin.info().name, "files-test");
    assert_eq!(plugin.info().workload_types, vec!["files".to_string()]);
    assert!(plugin.has_capability(AAPI_CAP_RESTORE));
    assert!(plugin.claim("files").unwrap());
    assert!(!plugin.claim("database").unwrap());
    plugin.terminate().unwrap();
    let calls = rec.calls.lock().unwrap().clone();
    assert_eq!(calls[0], "aapi_pgn_init");
    assert!(calls.contains(&"aapi_terminate".to_string()));
}

#[test]
fn every_missing_symbol_is_named() {
    let lib = common::test_plugin("aapi_testplugin_nosyms", &["TEST_OMIT_SYMBOLS"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    match &err {
        LoadError::MissingSymbols { missing, .. } => {
            assert_eq!(missing, &vec!["aapi_delete_object", "aapi_flush"])
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("aapi_delete_object, aapi_flush"), "{text}");
}

#[test]
fn wrong_abi_major_is_refused_before_any_call() {
    let lib = common::test_plugin("aapi_testplugin_abi2", &["TEST_ABI_MAJOR=2"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    assert!(matches!(err, LoadError::Abi { .. }), "{err}");
    assert!(err.to_string().contains("major 2"), "{err}");
}

#[test]
fn malformed_workload_types_are_refused_at_init() {
    for (name, types) in [
        ("aapi_testplugin_types_space", "\"files, db\""),
        ("aapi_testplugin_types_upper", "\"Files\""),
        ("aapi_testplugin_types_empty_item", "\"files,,db\""),
    ] {
        let lib = common::test_plugin(name, &[&format!("TEST_WORKLOAD_TYPES={types}")]);
        let Err(err) = Plugin::load(&lib, Arc::new(Recorder::default())) else {
            panic!("workload_types {types} were accepted");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("LOAD-5") && msg.contains("workload_types"),
            "{msg}"
        );
    }
}

#[test]
fn library_without_marker_is_not_a_plugin() {
    let err = PluginLibrary::open(std::path::Path::new("/lib/x86_64-linux-gnu/libm.so.6"));
    if let Err(e) = err {
        assert!(
            matches!(e, LoadError::NoMarker { .. } | LoadError::NotFound { .. }),
            "{e}"
        );
    }
}

#[test]
fn claim_picks_the_plugin_for_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::test_plugin("aapi_testplugin_abi2", &["TEST_ABI_MAJOR=2"]),
        dir.path().join("a-old.so"),
    )
    .unwrap();
    std::fs::copy(common::good_plugin(), dir.path().join("b-files.so")).unwrap();
    let report = find_claiming(dir.path(), "files", Arc::new(Recorder::default())).unwrap();
    let chosen = report.chosen.expect("a plugin claims files");
    assert!(chosen.library().path().ends_with("b-files.so"));
    assert_eq!(report.rejected.len(), 1);
    assert!(report.rejected[0].1.contains("major 2"));
    chosen.terminate().unwrap();
}

#[test]
fn in_process_discovery_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let lib = common::private_copy(&common::good_plugin(), dir.path());
    let tree = dir.path().join("tree");
    common::write_file(&tree.join("a/one.txt"), b"hello world");
    common::write_file(&tree.join("b.bin"), &[7u8; 5000]);
    let wk = dir.path().join("wk");
    std::fs::create_dir(&wk).unwrap();
    let plugin = Plugin::load(&lib, Arc::new(Recorder::default())).unwrap();
    assert!(plugin.claim("files").unwrap());
    let server = plugin
        .open_server("local", SessionDef::new(AAPI_OP_DISCOVERY))
        .unwrap();
    let hosts = vec!["h1".to_string(), "h2".to_string()];
    let sel = vec![tree.as_os_str().as_bytes().to_vec()];
    let args = DiscoveryArgs {
        selections: &sel,
        backup_hosts: &hosts,
        workload_dir: &wk,
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    };
    assert_eq!(server.discovery(&args).unwrap(), "");
    // A backup-only call in a discovery session is a sequence error naming function and code.
    let err = server.open_object(b"/x").unwrap_err();
    assert_eq!(err.code(), Some(AAPI_ESEQUENCE));
    assert!(
        err.to_string()
            .contains("aapi_open_object returned AAPI_ESEQUENCE")
    );
    server.close().unwrap();
    let mut all = Vec::new();
    for h in &hosts {
        all.extend(
            WorkloadFile::read_from_path(&file_name(&wk, h, ".wkld"))
                .unwrap()
                .entries,
        );
    }
    assert_eq!(all.len(), 4, "tree, a, a/one.txt, b.bin");

    let server = plugin
        .open_server("local", SessionDef::new(AAPI_OP_BACKUP))
        .unwrap();
    let real = tree.join("a/one.txt");
    let snap = server.snappath("", real.as_os_str().as_bytes()).unwrap();
    assert_eq!(snap, real.as_os_str().as_bytes());
    let mut obj = server.open_object(&snap).unwrap();
    assert_eq!(obj.prop().unwrap().size, 11);
    let mut buf = [0u8; 4];
    let mut data = Vec::new();
    loop {
        let n = obj.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(data, b"hello world");
    obj.close().unwrap();
    let err = server.open_object(b"/nonexistent/file").unwrap_err();
    assert_eq!(err.code(), Some(AAPI_ENOENT));
    assert!(err.to_string().contains("does not exist"), "{err}");
    server.close().unwrap();
    plugin.terminate().unwrap();
}
