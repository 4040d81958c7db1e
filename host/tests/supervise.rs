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

fn child_cmd(store: &Path, image: &str, host: &str, fault: &str) -> Command {
    let mut c = Command::new(host_bin());
    c.arg("--store")
        .arg(store)
        .args(["child", "--image", image, "--host", host])
        .env("AAPI_TEST_FAULT", fault)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// A plugin whose calls are short and never keep alive still stops at a cancel: the child job
/// checks between objects and between buffers. SIGTERM (a job engine's cancel) ends it with exit
/// 5 and leaves its stream unfinished; a new run completes it.
#[test]
fn sigterm_stops_a_split_child_job_between_objects() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, 40, 1_600_000_000);
    let store = dir.path().join("store");
    let image = discover(&store, &good_plugin(), &tree, "h1", &[]);
    // About 200 ms per object, 8 s in all.
    let child = child_cmd(&store, &image, "h1", "pause:aapi_read_object:100")
        .spawn()
        .unwrap();
    let pid = child.id();
    worker_in_read(pid, &store);
    let t0 = Instant::now();
    signal(pid, libc::SIGTERM);
    let r = finish(child);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("cancelled"), "{}", r.stderr);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let images = store.join("images").join(&image);
    assert!(!images.join("stream-0.done").exists());
    let again = host(&store, &["child", "--image", &image, "--host", "h1"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
}

/// Ctrl-C during a restore stops it at the next object or buffer, and the restore's postprocess
/// with the cancel removes what it had created: exit 5, nothing left under the alternate root.
#[test]
fn interrupt_stops_a_restore_and_removes_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, 40, 1_600_000_000);
    let store = dir.path().join("store");
    let b = run(backup_cmd(&store, &tree, 10_000, ""));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let child = Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", "--policy", "p", "--alt-root"])
        .arg(&alt)
        .env("AAPI_TEST_FAULT", "pause:aapi_write_object:100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_dir(&alt).unwrap().count() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the restore never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    signal(child.id(), libc::SIGINT);
    let r = finish(child);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("cancelled"), "{}", r.stderr);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let left: Vec<_> = std::fs::read_dir(&alt).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A worker whose supervisor is killed dies with it, even in a call that sends no keepalive:
/// nothing writes on into an image that no command shows as running.
#[test]
fn killed_supervisor_takes_a_worker_without_keepalives_with_it() {
    let (_d, tree, store) = setup();
    let child = backup_cmd(&store, &tree, 10_000, "pause:aapi_read_object:5000")
        .spawn()
        .unwrap();
    let pid = child.id();
    let worker = worker_in_read(pid, &store);
    signal(pid, libc::SIGKILL);
    let _ = finish(child);
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{worker}/status"))
        .is_ok_and(|s| !s.contains("zombie"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "worker outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_incomplete(&store);
}

/// A second run of a child job that is still running (a job engine's retry of a node that only
/// looked dead) is refused before it touches the stream; the first completes.
#[test]
fn a_second_run_of_a_running_child_job_is_refused() {
    let (_d, tree, store) = setup();
    let image = discover(&store, &good_plugin(), &tree, "h1", &[]);
    let first = child_cmd(&store, &image, "h1", "pause:aapi_read_object:300")
        .spawn()
        .unwrap();
    worker_in_read(first.id(), &store);
    let second = host(&store, &["child", "--image", &image, "--host", "h1"], &[]);
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    let r = finish(first);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}", v.stderr);
}

/// A plugin that ends the worker process inside a call, even with status 0, fails the job naming
/// the call; it is never taken for a worker that finished its task.
#[test]
fn exit_inside_a_call_is_named() {
    let (_d, tree, store) = setup();
    let r = run(backup_cmd(&store, &tree, 10_000, "exit:aapi_read_object:0"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("exit(0) in aapi_read_object"),
        "{}",
        r.stderr
    );
    assert_incomplete(&store);
}

/// A library constructor that hangs is held to the budget like a call (`dlopen`).
#[test]
fn a_hanging_constructor_times_out_in_dlopen() {
    let (_d, tree, store) = setup();
    let plugin = test_plugin("aapi_testplugin_slow_ctor", &["TEST_CTOR_SLEEP_MS=60000"]);
    let t0 = Instant::now();
    let r = run({
        let mut c = backup_cmd(&store, &tree, 500, "");
        c.env_remove("AAPI_TEST_FAULT");
        // The plugin argument of backup_cmd is the regular plugin: replace it.
        let args: Vec<std::ffi::OsString> = c
            .get_args()
            .map(|a| {
                if Path::new(a) == good_plugin() {
                    plugin.clone().into_os_string()
                } else {
                    a.to_os_string()
                }
            })
            .collect();
        let mut c2 = Command::new(host_bin());
        c2.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        c2
    });
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("timeout in dlopen"), "{}", r.stderr);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

/// A library destructor that hangs as the worker exits is held to the budget too, named so.
#[test]
fn a_hanging_destructor_times_out_in_the_process_exit() {
    let (_d, tree, store) = setup();
    let plugin = test_plugin("aapi_testplugin_slow_dtor", &["TEST_DTOR_SLEEP_MS=60000"]);
    let t0 = Instant::now();
    let r = host(
        &store,
        &[
            "backup",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            "p",
            "--select",
            tree.to_str().unwrap(),
            "--call-budget-ms",
            "500",
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("timeout in the process exit"),
        "{}",
        r.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

/// A process the plugin starts and leaves running holds the worker's pipes open; the job still
/// ends when the worker does, and that process is killed with it.
#[test]
fn a_process_the_plugin_leaves_behind_is_killed() {
    let (d, tree, store) = setup();
    let pidfile = d.path().join("forked.pid");
    let t0 = Instant::now();
    let r = run({
        let mut c = backup_cmd(&store, &tree, 10_000, "fork:aapi_get_server_prop");
        c.env("AAPI_TEST_FORK_PIDFILE", &pidfile);
        c
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
    assert!(
        status.as_ref().is_err() || status.as_ref().unwrap().contains("zombie"),
        "the forked process {} still runs",
        pid.trim()
    );
}

/// Whether process `pid` is gone (or a zombie) within `limit`.
fn ends_within(pid: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        if status.as_ref().is_err() || status.unwrap().contains("zombie") {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process the plugin started dies with `aapi-host` even when `aapi-host` is killed with
/// SIGKILL, while the worker that started it is still in a plugin call: the worker's process
/// group has a guard that kills it when the supervisor's end of the control pipe closes.
#[test]
fn a_process_the_plugin_started_dies_with_a_killed_supervisor() {
    let (d, tree, store) = setup();
    let pidfile = d.path().join("forked.pid");
    let mut c = backup_cmd(&store, &tree, 10_000, "fork:aapi_read_object:60000");
    // No pipes: the forked process would hold them open, and reading them would wait for it.
    c.env("AAPI_TEST_FORK_PIDFILE", &pidfile)
        .env("AAPI_TEST_FAULT_COUNT", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let host = child.id();
    let t0 = Instant::now();
    let pid = loop {
        match std::fs::read_to_string(&pidfile) {
            Ok(p) if p.ends_with('\n') => break p.trim().to_string(),
            _ => {
                assert!(t0.elapsed() < Duration::from_secs(20), "no fork");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    // The worker is in its slow read now; the forked process sleeps for 30 s.
    assert!(!ends_within(&pid, Duration::from_millis(200)));
    signal(host, libc::SIGKILL);
    child.wait().unwrap();
    assert!(
        ends_within(&pid, Duration::from_secs(5)),
        "the process {pid} the plugin started outlived the killed aapi-host"
    );
    assert_incomplete(&store);
}

/// A finalize while a child job of the image runs would remove the snapshot under it (with
/// `--abandon`) or merge a stream still being written: it is refused, and changes nothing.
#[test]
fn finalize_is_refused_while_a_child_job_runs() {
    let (_d, tree, store) = setup();
    let image = discover(&store, &good_plugin(), &tree, "h1", &[]);
    let child = child_cmd(&store, &image, "h1", "pause:aapi_read_object:300")
        .spawn()
        .unwrap();
    worker_in_read(child.id(), &store);
    for args in [
        vec!["finalize", "--image", &image, "--abandon"],
        vec!["finalize", "--image", &image],
    ] {
        let f = host(&store, &args, &[]);
        assert_eq!(f.code, 2, "{args:?}: {}", f.stderr);
        assert!(f.stderr.contains("is running"), "{args:?}: {}", f.stderr);
    }
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
}

/// An image whose discovery never returned (the supervisor was killed) has no snapshot id: no
/// child job can run, so finalize says so, and that a snapshot the plugin began may be left.
#[test]
fn an_image_whose_discovery_never_returned_is_named_so() {
    let (_d, tree, store) = setup();
    let image = discover(&store, &good_plugin(), &tree, "h1", &[]);
    let job_file = store.join("images").join(&image).join("job.json");
    let mut job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&job_file).unwrap()).unwrap();
    job["snapid"] = serde_json::Value::Null;
    std::fs::write(&job_file, serde_json::to_vec(&job).unwrap()).unwrap();
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 2, "{}", f.stderr);
    assert!(
        f.stderr.contains("its discovery did not complete") && !f.stderr.contains("child --image"),
        "{}",
        f.stderr
    );
    let l = host(&store, &["list"], &[]);
    assert!(
        l.stdout.contains("its discovery did not complete"),
        "{}",
        l.stdout
    );
    let f = host(&store, &["finalize", "--image", &image, "--abandon"], &[]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(
        f.stderr.contains("may be left behind") && !f.stderr.contains("snapshot was cleaned up"),
        "{}",
        f.stderr
    );
}

/// The processes of the PID namespace whose parent is `parent` and that have ended (zombies).
fn zombie_children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, not a ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str())
        })
        .collect()
}

/// In a container without an init, aapi-host is process 1, the parent of every orphan: the
/// guards of its workers' process groups among them. It reaps them, and a signal sent to it
/// (`docker stop`) cancels the job as it does anywhere.
#[test]
fn as_process_1_aapi_host_reaps_what_ends_under_it_and_passes_signals_on() {
    const UNSHARE: &[&str] = &[
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
    ];
    let can = Command::new("unshare")
        .args(UNSHARE)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipped: unshare cannot make a PID namespace here");
        return;
    }
    let (_d, tree, store) = setup();
    // About 4 s of backup: long enough to look at the namespace while it runs.
    let backup = backup_cmd(&store, &tree, 10_000, "pause:aapi_read_object:1000");
    let mut c = Command::new("unshare");
    c.args(UNSHARE)
        .arg(backup.get_program())
        .args(backup.get_args())
        .envs(backup.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Process 1 of the namespace is the child of `unshare`.
    let t0 = Instant::now();
    let init = loop {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.parse::<u32>().unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no process 1");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Once the data streams, the discovery's worker has ended, and its guard with it.
    while !std::fs::read_dir(store.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("stream-0.data").exists())
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "no stream");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut zombies = zombie_children(init);
    while !zombies.is_empty() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
        zombies = zombie_children(init);
    }
    assert!(zombies.is_empty(), "never reaped: {zombies:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before its orphans were reaped"
    );
    signal(init, libc::SIGTERM);
    let r = finish(child);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("cancelled"), "{}", r.stderr);
    assert_incomplete(&store);
}

/// A plugin that calls back a session after its `aapi_close_server` returned (THR-3) is refused
/// and warned about; the backup itself goes on.
#[test]
fn a_callback_of_a_closed_session_is_refused_with_a_warning() {
    let (_d, tree, store) = setup();
    let r = run(backup_cmd(
        &store,
        &tree,
        10_000,
        "late-keepalive:aapi_terminate",
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "plugin warning: keepalive callback of a session called after its \
             aapi_close_server had returned, which the contract forbids (THR-3): refused"
        ),
        "{}",
        r.stderr
    );
}
