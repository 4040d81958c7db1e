//! docs/guide-rust.md stays true: its plugin listing is exactly examples/guide_plugin.rs, and
//! that plugin, built as a cdylib, loads and passes a backup and restore round trip.

mod common;

use aapi_host::client::Plugin;
use aapi_host::jobs::{BackupOptions, backup_in_process, restore_in_process};
use aapi_host::tasks::RestoreTask;
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The example library: cargo builds examples into target/<profile>/examples.
fn example_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/libguide_plugin.so");
    assert!(
        lib.is_file(),
        "{} is missing: run the whole test suite of aapi-sample-plugin (it builds the examples)",
        lib.display()
    );
    lib
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
            .map(|(n, _, _)| src.join(n).to_str().unwrap().to_string())
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
