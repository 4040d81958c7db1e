//! The `aapi-host` command line on stores written by hand: how times are read, what a damaged
//! image does to `list`, and what happens to output nobody reads.

mod common;

use common::*;
use std::path::Path;

/// 2026-11-23 05:38:28 UTC.
const T28: i64 = 1_795_412_308;

/// A store with images of policy `ch` started at 05:38:28 and 05:38:29 UTC.
fn chain(store: &Path) -> (String, String) {
    let a = fake_image(
        store,
        "ch-20261123T053828Z-full",
        "ch",
        T28,
        &[(b"/d/a", b"one")],
    );
    let b = fake_image(
        store,
        "ch-20261123T053829Z-full",
        "ch",
        T28 + 1,
        &[(b"/d/a", b"two")],
    );
    (a, b)
}

/// The image `restore --policy ch --at <at> --dry-run --json` picks, or the failed run.
fn image_at(store: &Path, at: &str) -> Result<String, Run> {
    let r = host(
        store,
        &[
            "restore",
            "--policy",
            "ch",
            "--at",
            at,
            "--dry-run",
            "--json",
        ],
        &[],
    );
    if r.code != 0 {
        return Err(r);
    }
    Ok(r.json()["image"].as_str().unwrap().to_string())
}

#[test]
fn restore_at_reads_every_time_form_exactly_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (a, b) = chain(&store);
    assert_eq!(
        aapi_host::store::utc_display(T28),
        "2026-11-23 05:38:28 UTC",
        "the constant is the time it names"
    );
    for (at, want) in [
        // The form `list` and `show` print, with its seconds.
        ("2026-11-23 05:38:28 UTC", &a),
        ("2026-11-23T05:38:28", &a),
        ("2026-11-23T05:38:28Z", &a),
        ("2026-11-23T05:38:28.999", &a),
        ("2026-11-23T05:38:29.5", &b),
        ("2026-11-23 05:38:29", &b),
        // An offset is applied, not dropped: 14:38:28 in Tokyo is 05:38:28 UTC.
        ("2026-11-23T14:38:28+09:00", &a),
        ("2026-11-23T00:38:29-05:00", &b),
        ("2026-11-23T05:39", &b),
        ("2026-11-24", &b),
        ("1795412308", &a),
    ] {
        assert_eq!(
            image_at(&store, at).unwrap_or_else(|r| panic!("{at}: {}", r.stderr)),
            *want,
            "{at}"
        );
    }
    for at in [
        "2026-11-23Tnoon",
        "2026-11-23T05:38:28 CET",
        "2026-11-23T05:38:28+09",
        "2026-11-23T05:38:28Z and more",
        "2026-02-31",
        "2026-11-23T25:00",
        "23/11/2026",
        "yesterday",
    ] {
        let r = image_at(&store, at).expect_err(at);
        assert_eq!(r.code, 2, "{at}: {}", r.stdout);
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.contains("expected YYYY-mm-dd") && error.contains("Unix seconds"),
            "{at}: {error}"
        );
    }
    // Before the first image: nothing to restore, said with the time as understood.
    let r = image_at(&store, "2026-11-23T05:38:27Z").unwrap_err();
    assert_eq!(r.code, 2);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("at or before 2026-11-23 05:38:27 UTC"),
        "{}",
        r.stdout
    );
}

/// Run `aapi-host --store <store> <args>` with standard output going to `stdout`.
fn host_to(store: &Path, args: &[&str], stdout: std::process::Stdio) -> Run {
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run aapi-host");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pipe whose reader has gone, as after `| head -1` has read its line.
fn closed_pipe() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

#[test]
fn a_closed_stdout_ends_the_output_quietly_and_keeps_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let files: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
        .map(|i| (format!("/d/f{i:03}").into_bytes(), vec![b'x'; i]))
        .collect();
    let files: Vec<(&[u8], &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_slice(), b.as_slice()))
        .collect();
    let id = fake_image(&store, "many-20261123T053828Z-full", "many", T28, &files);
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["show", &id, "--objects"],
        vec!["show", &id, "--objects", "--json"],
        vec!["restore", "--policy", "many", "--dry-run"],
        vec!["restore", &id, "--dry-run", "--json"],
        vec!["verify", &id],
        vec!["--help"],
    ] {
        let r = host_to(&store, &args, closed_pipe());
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
    // A failing command keeps its own status and message.
    let r = host_to(&store, &["show", "no-such-image", "--json"], closed_pipe());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no such image"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn results_that_cannot_be_written_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let id = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        T28,
        &[(b"/d/a", b"a")],
    );
    // /dev/full answers every write with ENOSPC, as a full disk holding a redirected stdout does.
    for args in [vec!["list"], vec!["show", &id, "--json"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let r = host_to(&store, &args, full.into());
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("cannot write the results to standard output: No space left on device"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn verify_quiet_prints_only_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let id = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        T28,
        &[(b"/d/a", b"first"), (b"/d/b", b"second")],
    );
    let r = host(&store, &["-q", "verify", &id], &[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let r = host(&store, &["verify", &id], &[]);
    assert!(r.stdout.contains("2 of 2 objects intact"), "{}", r.stdout);
    // Flip the first byte of /d/b.
    let data = store.join("images").join(&id).join("stream-0.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let r = host(&store, &["-q", "verify", &id], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "DAMAGED /d/b: bytes do not match the digest recorded at backup\n"
    );
}

#[test]
fn delete_names_the_image_whose_snapshot_to_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let st = aapi_host::store::Store::open(&store).unwrap();
    let mut ids = Vec::new();
    for policy in ["p", "q"] {
        let id = st.create_image(policy, "full", T28).unwrap();
        // A split job between its steps: discovery took a snapshot, no child job ran yet.
        st.save_job(&aapi_host::store::JobDef {
            image: id.clone(),
            policy: policy.into(),
            schedule: "full".into(),
            plugin: "/lib/libfake.so".into(),
            workload_type: "files".into(),
            server: "localhost".into(),
            selections: vec![b"/d".to_vec()],
            hosts: vec!["h1".into()],
            properties: Vec::new(),
            call_budget_ms: 1000,
            started: T28,
            base: None,
            snapid: Some("snap-1".into()),
            credentials: None,
        })
        .unwrap();
        ids.push(id);
    }
    let r = host(&store, &["delete", &ids[0]], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("finalize --image {} --abandon`", ids[0])),
        "{}",
        r.stderr
    );
    let r = host(&store, &["delete", &ids[0], &ids[1]], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for id in &ids {
        assert!(
            r.stderr
                .contains(&format!("finalize --image {id} --abandon`")),
            "{}",
            r.stderr
        );
    }
    assert!(!r.stderr.contains("--image ID"), "{}", r.stderr);
}

#[test]
fn a_call_budget_of_zero_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tree = dir.path().join("tree");
    write_file(&tree.join("a"), b"a");
    let plugin = rust_sample();
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
            "0",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--call-budget-ms"), "{}", r.stderr);
    assert!(!store.exists(), "a store was made");
    let r = host(
        &store,
        &["restore", "x", "--call-budget-ms", "0", "--json"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["exit"], "usage");
}

#[test]
fn host_and_policy_names_that_cannot_name_their_files_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tree = dir.path().join("tree");
    write_file(&tree.join("a"), b"a");
    let plugin = rust_sample();
    let long = "h".repeat(aapi_host::tasks::MAX_BACKUP_HOST_LEN + 1);
    let fits = "h".repeat(aapi_host::tasks::MAX_BACKUP_HOST_LEN);
    for (hosts, says) in [
        ("bh1,..", "\"..\" is no backup host name"),
        ("bh1,bh1", "\"bh1\" is named twice"),
        (long.as_str(), "at most 238 fit"),
    ] {
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
                "--hosts",
                hosts,
            ],
            &[],
        );
        assert_eq!(r.code, 2, "{hosts}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{hosts}: {}", r.stderr);
        assert!(!store.exists(), "a store was made");
    }
    for policy in [".nightly", "a/b", &"p".repeat(201)] {
        let r = host(
            &store,
            &[
                "backup",
                "--plugin",
                plugin.to_str().unwrap(),
                "--policy",
                policy,
                "--select",
                tree.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(r.code, 2, "{policy}: {}", r.stderr);
        assert!(
            r.stderr.contains("cannot start image names"),
            "{}",
            r.stderr
        );
        assert!(!store.exists(), "a store was made");
    }
    // The longest names that fit back up.
    let r = host(
        &store,
        &[
            "backup",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            &"p".repeat(200),
            "--select",
            tree.to_str().unwrap(),
            "--hosts",
            &fits,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn restore_dry_run_json_gives_the_exact_bytes_of_names_that_are_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let id = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        T28,
        &[(b"/d/caf\xe9", b"latin-1"), (b"/d/caf\xc3\xa9", b"utf-8")],
    );
    let r = host(&store, &["restore", &id, "--dry-run", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = r.json()["objects"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let latin = rows.iter().find(|o| o["size"] == 7).unwrap();
    assert_eq!(latin["path"], "/d/caf\u{fffd}");
    assert_eq!(latin["path_hex"], "2f642f636166e9");
    assert_eq!(latin["target_hex"], "2f642f636166e9");
    let utf8 = rows.iter().find(|o| o["size"] == 5).unwrap();
    assert_eq!(utf8["path"], "/d/caf\u{e9}");
    assert!(utf8.get("path_hex").is_none(), "{utf8}");
}

/// A command that only reads the store stops at once on Ctrl-C (exit 5), even while its output
/// is blocked on a reader that reads nothing.
#[test]
fn ctrl_c_stops_a_command_that_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tree = dir.path().join("tree");
    for i in 0..1500 {
        write_file(&tree.join(format!("d{}/file-{i:05}", i % 10)), b"x");
    }
    let plugin = rust_sample();
    let b = host(
        &store,
        &[
            "backup",
            "--json",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            "p",
            "--select",
            tree.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    let id = b.json()["manifest"]["image"].as_str().unwrap().to_string();
    // Nobody reads its stdout: it blocks once the pipe is full.
    let mut show = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["show", &id, "--objects"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: plain kill(2) of our own child process.
    unsafe { libc::kill(show.id() as i32, libc::SIGINT) };
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = show.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > std::time::Duration::from_secs(5) {
            let _ = show.kill();
            panic!("show ignored Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(5));
}

/// Whether `text` holds no control character but the line ends, and no replacement character.
fn printable_lines(text: &str) -> bool {
    !text
        .chars()
        .any(|c| (c.is_control() && c != '\n') || c == '\u{fffd}')
}

/// Names with control characters, backslashes and bytes that are not UTF-8 are printed escaped
/// in text output, one line per object: a name can neither forge a line (a `DAMAGED` line of
/// `verify -q`) nor reach the terminal as an escape sequence. JSON keeps their exact bytes.
#[test]
fn names_are_escaped_in_text_output_and_exact_in_json() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let forged: &[u8] =
        b"/d/a\nDAMAGED /d/db.sqlite: bytes do not match the digest recorded at backup";
    let title: &[u8] = b"/d/t\x1b]0;owned\x07";
    let odd: &[u8] = b"/d/back\\slash \xc2\x9b \xff";
    let id = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        T28,
        &[(forged, b"one"), (title, b"two"), (odd, b"three")],
    );
    let img = store.join("images").join(&id);
    // A failure recorded at backup, with a name that clears the screen.
    let manifest = img.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["failures"] = serde_json::to_value([aapi_host::store::ObjectFailure::new(
        b"/d/gone\x1b[2J",
        "vanished",
    )])
    .unwrap();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();

    let r = host(&store, &["show", &id, "--objects"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(printable_lines(&r.stdout), "{:?}", r.stdout);
    for line in [
        "  not backed up: /d/gone\\x1b[2J: vanished",
        "file        644            3  /d/a\\nDAMAGED /d/db.sqlite: bytes do not match the digest recorded at backup",
        "file        644            3  /d/t\\x1b]0;owned\\x07",
        "file        644            5  /d/back\\\\slash \\u{9b} \\xff",
    ] {
        assert!(r.stdout.lines().any(|l| l == line), "{line}\n{}", r.stdout);
    }

    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = host(
        &store,
        &[
            "restore",
            &id,
            "--dry-run",
            "--alt-root",
            alt.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(printable_lines(&r.stdout), "{:?}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("{}/d/t\\x1b]0;owned\\x07\n", alt.display())),
        "{}",
        r.stdout
    );

    // Damage the first two objects: two DAMAGED lines, not three.
    let data = img.join("stream-0.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 1;
    bytes[3] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let r = host(&store, &["-q", "verify", &id], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "DAMAGED /d/a\\nDAMAGED /d/db.sqlite: bytes do not match the digest recorded at backup: bytes do not match the digest recorded at backup\n\
         DAMAGED /d/t\\x1b]0;owned\\x07: bytes do not match the digest recorded at backup\n"
    );
    let j = host(&store, &["verify", &id, "--json"], &[]).json();
    let damaged = j["report"]["damaged"].as_array().unwrap();
    assert_eq!(damaged[0]["path"].as_str().unwrap().as_bytes(), forged);
    assert_eq!(damaged[1]["path"].as_str().unwrap().as_bytes(), title);

    // A restore that stops at a damaged object names it escaped.
    let st = aapi_host::store::Store::open(&store).unwrap();
    st.save_job(&aapi_host::store::JobDef {
        image: id.clone(),
        policy: "p".into(),
        schedule: "full".into(),
        plugin: good_plugin(),
        workload_type: "files".into(),
        server: "localhost".into(),
        selections: vec![b"/d".to_vec()],
        hosts: vec!["stream-0".into()],
        properties: Vec::new(),
        call_budget_ms: 60_000,
        started: T28,
        base: None,
        snapid: Some(String::new()),
        credentials: None,
    })
    .unwrap();
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", &id, "--alt-root"])
        .arg(&alt)
        .arg("--path")
        .arg(std::ffi::OsStr::from_bytes(title))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(printable_lines(&stderr), "{stderr:?}");
    assert!(
        stderr.contains("/d/t\\x1b]0;owned\\x07: its bytes do not match"),
        "{stderr}"
    );
    // So does one that finds nothing to restore.
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", &id, "--dry-run", "--path"])
        .arg(std::ffi::OsStr::from_bytes(b"/d/none\x1b[2J\xff"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(printable_lines(&stderr), "{stderr:?}");
    assert!(stderr.contains("\"/d/none\\x1b[2J\\xff\""), "{stderr}");

    // The reason an incomplete image failed, as `list` shows it.
    let failed = store.join("images").join("p-20261123T053829Z-full");
    std::fs::create_dir(&failed).unwrap();
    std::fs::write(
        failed.join("failed.txt"),
        "child job stream-0: /d/x\x1b[31m\nDAMAGED forged",
    )
    .unwrap();
    let r = host(&store, &["list"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(printable_lines(&r.stdout), "{:?}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("INCOMPLETE: child job stream-0: /d/x\\x1b[31m\\nDAMAGED forged"),
        "{}",
        r.stdout
    );
}

/// A stream file longer than its manifest records harms no object: verify warns and exits 0,
/// and the JSON report carries the warning. One shorter than recorded lacks data the manifest
/// records: damage (exit 1, `ok: false`), even when every object it lists is intact.
#[test]
fn verify_reports_a_stream_file_of_the_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let id = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        T28,
        &[(b"/d/a", b"first"), (b"/d/b", b"second")],
    );
    let img = store.join("images").join(&id);
    let data = img.join("stream-0.data");
    let whole = std::fs::read(&data).unwrap();
    std::fs::write(&data, [&whole[..], b"junk"].concat()).unwrap();
    let r = host(&store, &["verify", &id], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("warning: ")
            && r.stderr
                .contains("stream-0.data: holds 15 bytes, 4 more than the manifest records (11)")
            && !r.stderr.contains("error"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("2 of 2 objects intact") && r.stdout.contains("everything is restorable"),
        "{}",
        r.stdout
    );
    let r = host(&store, &["-q", "verify", &id], &[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let j = host(&store, &["verify", &id, "--json"], &[]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let j = j.json();
    assert_eq!((&j["ok"], &j["exit"]), (&true.into(), &"ok".into()), "{j}");
    let warnings = j["report"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{j}");
    assert!(
        warnings[0].as_str().unwrap().contains("stream-0.data"),
        "{j}"
    );

    // Shorter than the manifest records, though every object it lists is intact.
    std::fs::write(&data, &whole).unwrap();
    let manifest = img.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["streams"] = serde_json::json!([whole.len() + 7]);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = host(&store, &["verify", &id], &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("error: ")
            && r.stderr
                .contains("stream-0.data: holds 11 bytes, 7 fewer than the manifest records (18)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("2 of 2 objects intact") && r.stdout.contains("the image is damaged"),
        "{}",
        r.stdout
    );
    let j = host(&store, &["verify", &id, "--json"], &[]);
    assert_eq!(j.code, 1, "{}", j.stderr);
    let j = j.json();
    assert_eq!(
        (&j["ok"], &j["exit"]),
        (&false.into(), &"failed".into()),
        "{j}"
    );
    assert_eq!(j["report"]["damaged_streams"][0]["stream"], 0, "{j}");

    // Missing altogether: damage, and every object in it is named.
    std::fs::remove_file(&data).unwrap();
    let j = host(&store, &["verify", &id, "--json"], &[]);
    assert_eq!(j.code, 1, "{}", j.stderr);
    let j = j.json();
    assert!(
        j["report"]["damaged_streams"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("missing"),
        "{j}"
    );
    assert_eq!(j["report"]["damaged"].as_array().unwrap().len(), 2, "{j}");
}

/// Back up `select` with the Rust sample as policy `p`: the image id.
fn sample_backup(store: &Path, select: &str) -> String {
    let plugin = rust_sample();
    let args = [
        "backup",
        "--json",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "p",
        "--select",
        select,
    ];
    let r = host(store, &args, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["manifest"]["image"].as_str().unwrap().to_string()
}

#[test]
fn suggested_commands_name_the_store_so_they_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("my store");
    let tree = dir.path().join("tree");
    write_file(&tree.join("a"), b"a");
    let image = sample_backup(&store, tree.to_str().unwrap());
    let cmd = format!("`aapi-host --store '{}' ", store.display());
    let r = host(&store, &["restore", "nosuch", "--dry-run"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{cmd}list`")), "{}", r.stderr);
    // A message made in a worker too.
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = host(
        &store,
        &[
            "restore",
            &image,
            "--alt-root",
            alt.to_str().unwrap(),
            "--path",
            "/no/such/path",
        ],
        &[],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{cmd}show {image}")),
        "{}",
        r.stderr
    );
}

#[test]
fn restore_paths_match_however_the_selection_was_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tree = dir.path().join("tree");
    write_file(&tree.join("d/f"), b"f");
    write_file(&tree.join("g"), b"g");
    sample_backup(&store, &format!("{}//./", tree.display()));
    let t = tree.display().to_string();
    for spelled in [
        format!("{t}/d"),
        format!("{t}//d/"),
        format!("{t}/./d"),
        format!("{}//{}/d/.", dir.path().display(), "tree"),
    ] {
        let r = host(
            &store,
            &["restore", "--policy", "p", "--dry-run", "--path", &spelled],
            &[],
        );
        assert_eq!(r.code, 0, "{spelled}: {}", r.stderr);
        assert!(
            r.stdout.contains(&format!("{t}/d/f")),
            "{spelled}: {}",
            r.stdout
        );
        assert!(
            !r.stdout.contains(&format!("{t}/g")),
            "{spelled}: {}",
            r.stdout
        );
    }
}

#[test]
fn an_image_whose_job_file_is_damaged_restores_with_the_plugin_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tree = dir.path().join("tree");
    write_file(&tree.join("a"), b"the bytes");
    let image = sample_backup(&store, tree.to_str().unwrap());
    std::fs::write(
        store.join("images").join(&image).join("job.json"),
        "garbage",
    )
    .unwrap();
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            image.as_str(),
            "--alt-root",
            alt.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        host(&store, &args, &[])
    };
    let r = restore(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("name it with --plugin LIB"),
        "{}",
        r.stderr
    );
    // Verify says so too, without calling the image damaged: every object is intact.
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stderr.contains("a restore needs --plugin LIB"),
        "{}",
        v.stderr
    );
    let r = restore(&["--plugin", rust_sample().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let restored = alt.join(tree.join("a").strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored).unwrap(), b"the bytes");
}
