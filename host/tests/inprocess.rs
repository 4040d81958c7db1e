//! The whole backup and restore in one process (the API plugin tests use).

mod common;

use aapi_host::client::{HostHooks, Plugin};
use aapi_host::jobs::{BackupOptions, backup_in_process, restore_in_process};
use aapi_host::tasks::RestoreTask;
use common::*;
use std::sync::Arc;

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _: u32, _: &str) {}
}

#[test]
fn backup_and_restore_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let lib = private_copy(&good_plugin(), dir.path());
    let tree = dir.path().join("tree");
    make_tree(&tree, 5, 1_600_000_000);
    let plugin = Plugin::load(&lib, Arc::new(Quiet)).unwrap();
    assert!(plugin.claim("files").unwrap());
    let store = dir.path().join("store");
    let o = BackupOptions {
        store: store.clone(),
        policy: "p".into(),
        schedule: "full".into(),
        plugin: lib.clone(),
        workload_type: "files".into(),
        server: "localhost".into(),
        selections: vec![tree.to_str().unwrap().into()],
        hosts: vec!["h1".into(), "h2".into()],
        properties: vec![],
        call_budget_ms: 10_000,
        credentials: None,
    };
    let m = backup_in_process(&plugin, &o).unwrap();
    assert_eq!(m.streams.len(), 2);
    assert!(m.failures.is_empty());
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let task = RestoreTask {
        store,
        image: m.image.clone(),
        plugin: lib,
        workload_type: "files".into(),
        server: "localhost".into(),
        host: "h1".into(),
        paths: vec![],
        alt_root: Some(alt.clone()),
        overwrite: false,
        properties: vec![],
        call_budget_ms: 10_000,
        credentials: None,
    };
    let r = restore_in_process(&plugin, &task).unwrap();
    assert_eq!(r.objects, m.objects);
    assert_same(
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
        &snapshot(&tree),
    );
    // A second restore to the same place without overwrite: the plugin refuses, the restore
    // fails naming the object, and what existed is kept.
    let err = restore_in_process(&plugin, &task).unwrap_err();
    assert!(err.message.contains("AAPI_EEXIST"), "{err}");
    assert_same(
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
        &snapshot(&tree),
    );
    plugin.terminate().unwrap();
}
