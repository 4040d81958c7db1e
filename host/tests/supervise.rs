//! Supervision through whole jobs: crashes, hangs, keepalives, cancel and kills are contained in
//! a worker and reported with the function that was running; the image is never left looking
//! complete.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, 4, 1_600_000_000);
    let store = dir.path().join("store");
    (dir, tree, store)
}

fn backup_cmd(store: &Path, tree: &Path, budget_ms: u32, fault: &str) -> Command {
    let mut c = Command::new(host_bin());
    c.args([
        "--store",
        store.to_str().unwrap(),
        "backup",
        "--policy",
        "p",
        "--plugin",
    ])
    .arg(good_plugin())
    .args([
        "--select",
        tree.to_str().unwrap(),
        "--call-budget-ms",
        &budget_ms.to_string(),
    ])
    .env("AAPI_TEST_FAULT", fault)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(mut c: Command) -> Run {
    finish(c.spawn().unwrap())
}

fn assert_incomplete(store: &Path) {
    let l = host(store, &["list", "--json"], &[]).json();
    let images = l["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{l}");
    assert_eq!(images[0]["state"], "incomplete", "{l}");
    let id = images[0]["image"].as_str().unwrap();
    let r = host(store, &["restore", id, "--dry-run"], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("incomplete"), "{}", r.stderr);
}

/// Wait until a worker is inside a slow read, and return its pid.
fn worker_in_read(supervisor: u32, store: &Path) -> u32 {
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the backup never started reading"
        );
        let streaming = std::fs::read_dir(store.join("images"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .is_some_and(|e| e.path().join("stream-0.data").exists());
        // Workers are spawned from several threads: collect the children of every task.
        let mut pids: Vec<u32> = Vec::new();
        for t in std::fs::read_dir(format!("/proc/{supervisor}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        if streaming && pids.len() == 1 {
            std::thread::sleep(Duration::from_millis(300));
            return pids[0];
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn crash_is_named_with_signal_and_function() {
    let (_d, tree, store) = setup();
    let mut c = backup_cmd(&store, &tree, 10_000, "crash:aapi_read_object");
    c.arg("--verbose");
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("crash(SIGSEGV) in aapi_read_object"),
        "{}",
        r.stderr
    );
    // Snapshot cleanup runs even though the child job failed.
    assert!(
        r.stderr
            .contains("postprocess: plugin info: postprocess ran"),
        "{}",
        r.stderr
    );
    assert_incomplete(&store);
}

#[test]
fn hang_without_keepalive_times_out_in_its_function() {
    let (_d, tree, store) = setup();
    let t0 = Instant::now();
    let r = run(backup_cmd(&store, &tree, 400, "hang:aapi_open_object"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("timeout in aapi_open_object"),
        "{}",
        r.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_incomplete(&store);
}

#[test]
fn slow_call_with_keepalives_succeeds() {
    let (_d, tree, store) = setup();
    let mut c = backup_cmd(&store, &tree, 300, "slow:aapi_discovery:900");
    c.arg("--json");
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json()["manifest"]["failures"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn interrupt_cancels_through_the_keepalive() {
    let (_d, tree, store) = setup();
    let child = backup_cmd(&store, &tree, 10_000, "slow:aapi_read_object:60000")
        .spawn()
        .unwrap();
    let pid = child.id();
    worker_in_read(pid, &store);
    let t0 = Instant::now();
    // SAFETY: plain kill(2) of our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let r = finish(child);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("AAPI_ECANCELLED"), "{}", r.stderr);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_incomplete(&store);
}

#[test]
fn cancel_ignored_is_killed_after_the_bound() {
    let (_d, tree, store) = setup();
    let child = backup_cmd(&store, &tree, 800, "ignore-cancel:aapi_read_object")
        .spawn()
        .unwrap();
    let pid = child.id();
    worker_in_read(pid, &store);
    // SAFETY: plain kill(2) of our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let r = finish(child);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("cancel ignored in aapi_read_object"),
        "{}",
        r.stderr
    );
    assert_incomplete(&store);
}

#[test]
fn killed_worker_leaves_an_incomplete_image() {
    let (_d, tree, store) = setup();
    let child = backup_cmd(&store, &tree, 10_000, "slow:aapi_read_object:1500")
        .spawn()
        .unwrap();
    let worker = worker_in_read(child.id(), &store);
    // SAFETY: plain kill(2) of a worker process this test started (through aapi-host).
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let r = finish(child);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("crash(SIGKILL) in aapi_read_object"),
        "{}",
        r.stderr
    );
    assert_incomplete(&store);
}

#[test]
fn killed_supervisor_leaves_an_incomplete_image() {
    let (_d, tree, store) = setup();
    let child = backup_cmd(&store, &tree, 10_000, "slow:aapi_read_object:60000")
        .spawn()
        .unwrap();
    let pid = child.id();
    let worker = worker_in_read(pid, &store);
    // SAFETY: plain kill(2) of our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = finish(child);
    // The orphaned worker sees its control pipe close, cancels the running call and exits.
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{worker}/status")).exists()
        && !std::fs::read_to_string(format!("/proc/{worker}/status"))
            .unwrap_or_default()
            .contains("zombie")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "worker outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_incomplete(&store);
}
