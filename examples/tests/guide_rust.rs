//! The plugin of docs/guide-rust.md, built from the guide's own Cargo.toml and listing as a
//! vendor builds it, leaves nothing behind when a restore fails at an object's close (RST-6): the
//! temporary file of the object whose `close` failed, and the objects the restore completed
//! before it, are gone; what was there before the restore is untouched.

mod common;

use aapi_host::client::{HostHooks, Plugin};
use aapi_host::jobs::{BackupOptions, backup_in_process, restore_in_process};
use aapi_host::tasks::RestoreTask;
use common::{must, repo};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _level: u32, _message: &str) {}
}

/// The body of the first fenced block of `lang` after the first occurrence of `after` in `text`.
fn block_after<'a>(text: &'a str, after: &str, lang: &str) -> &'a str {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("docs/guide-rust.md no longer says {after:?}"))..];
    let open = format!("```{lang}\n");
    let body = &rest[rest.find(&open).unwrap() + open.len()..];
    &body[..body.find("```").unwrap()]
}

/// Build the guide's `flatfiles` crate (its Cargo.toml with the SDK's real path, its
/// `src/lib.rs`) and copy the library into `dir`.
fn build_guide_plugin(dir: &Path) -> PathBuf {
    let guide = fs::read_to_string(repo().join("docs/guide-rust.md")).unwrap();
    let krate = dir.join("flatfiles");
    fs::create_dir_all(krate.join("src")).unwrap();
    let manifest = block_after(&guide, "Its only dependency is the SDK", "toml");
    let sdk_line = manifest
        .lines()
        .find(|l| l.starts_with("aapi-sdk = "))
        .expect("the guide's Cargo.toml depends on aapi-sdk");
    let manifest = manifest.replace(
        sdk_line,
        &format!(
            "aapi-sdk = {{ path = {:?} }}",
            repo().join("sdk").display().to_string()
        ),
    );
    fs::write(krate.join("Cargo.toml"), manifest + "\n[workspace]\n").unwrap();
    fs::write(
        krate.join("src/lib.rs"),
        block_after(&guide, "Put this in `src/lib.rs`", "rust"),
    )
    .unwrap();
    // The workspace's lock file pins the SDK's dependencies to the versions already fetched.
    fs::copy(repo().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    // <target>[/<triple>]/<profile>/deps/<this test>: build beside it.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join("plugin-crates");
    must(
        Command::new(env!("CARGO"))
            .args(["build", "--offline", "--quiet"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(&krate)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    );
    // A private copy per test: never copy over a library that is loaded.
    let lib = dir.join("libflatfiles.so");
    fs::copy(target.join("debug/libflatfiles.so"), &lib).unwrap();
    lib
}

/// `root`, an absolute path, under the alternate root `alt`.
fn under(alt: &Path, root: &Path) -> PathBuf {
    alt.join(root.strip_prefix("/").unwrap())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_restore_that_fails_at_close_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_guide_plugin(dir.path());
    let plugin = Plugin::load(&lib, Arc::new(Quiet)).unwrap_or_else(|e| panic!("{e}"));
    assert!(plugin.claim("flatfiles").unwrap());

    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), "restored first\n").unwrap();
    fs::write(src.join("b.txt"), "restored second\n").unwrap();
    let store = dir.path().join("store");
    let backup = BackupOptions {
        store: store.clone(),
        policy: "guide".into(),
        schedule: "full".into(),
        plugin: lib.clone(),
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        selections: ["a.txt", "b.txt"]
            .iter()
            .map(|n| src.join(n).into_os_string().into_encoded_bytes())
            .collect(),
        hosts: vec!["h1".into()],
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let image = backup_in_process(&plugin, &backup)
        .unwrap_or_else(|e| panic!("{e}"))
        .image;

    // Under the alternate root, b.txt is a directory with something in it: a.txt is restored,
    // then b.txt's data is written and its close fails (a file cannot be renamed onto it).
    let alt = dir.path().join("alt");
    let target = under(&alt, &src);
    fs::create_dir_all(target.join("b.txt/sub")).unwrap();
    fs::write(target.join("b.txt/sub/keep"), "was here").unwrap();
    let mut task = RestoreTask {
        store,
        image,
        plugin: lib,
        workload_type: "flatfiles".into(),
        server: "localhost".into(),
        host: "h1".into(),
        paths: vec![],
        alt_root: Some(alt.clone()),
        overwrite: true,
        properties: vec![],
        call_budget_ms: 30_000,
        credentials: None,
    };
    let err = restore_in_process(&plugin, &task).unwrap_err();
    assert!(
        err.message.contains("b.txt") && err.message.contains("aapi_close_object"),
        "the restore fails at b.txt's close: {err}"
    );
    // RST-6: the object whose close failed left no temporary file, and a.txt, which this
    // restore created, is removed; b.txt/ is as it was.
    assert_eq!(names(&target), ["b.txt"]);
    assert_eq!(names(&target.join("b.txt")), ["sub"]);
    assert_eq!(
        fs::read_to_string(target.join("b.txt/sub/keep")).unwrap(),
        "was here"
    );

    // Without the obstacle the same restore completes.
    fs::remove_dir_all(target.join("b.txt")).unwrap();
    task.overwrite = false;
    restore_in_process(&plugin, &task).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&target), ["a.txt", "b.txt"]);
    assert_eq!(
        fs::read_to_string(target.join("b.txt")).unwrap(),
        "restored second\n"
    );
    plugin.terminate().unwrap();
}
