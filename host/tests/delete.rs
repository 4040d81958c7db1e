//! Deleting images through the `aapi-host` command line: what other images need or use is
//! refused, the policy's next incremental stays correct, interrupted deletes are cleaned up, and
//! several commands share one store safely.

mod common;

use common::*;
use std::path::Path;

const PAST: i64 = 1_600_000_000;

fn backup(store: &Path, tree: &Path, schedule: &str) -> String {
    let plugin = rust_sample();
    let r = host(
        store,
        &[
            "backup",
            "--json",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            "p",
            "--select",
            tree.to_str().unwrap(),
            "--schedule",
            schedule,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["manifest"]["image"].as_str().unwrap().to_string()
}

/// The discovery step of a split job alone: an incomplete image whose child jobs are still to
/// run. Returns its id.
fn discover_only(store: &Path, tree: &Path, policy: &str) -> String {
    let plugin = rust_sample();
    let d = host(
        store,
        &[
            "discover",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            policy,
            "--select",
            tree.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(d.code, 0, "{}", d.stderr);
    d.stdout.trim().to_string()
}

fn images(store: &Path) -> Vec<(String, String)> {
    let l = host(store, &["list", "--json"], &[]).json();
    l["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["image"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn delete_keeps_what_other_images_and_the_policy_need() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 8, PAST);
    // Let the tree's ctimes fall before the full backup's start second, so the incrementals
    // take their unchanged objects from earlier images.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let full = backup(&store, &tree, "full");
    std::fs::write(tree.join("sub/f2.bin"), b"first change").unwrap();
    let i1 = backup(&store, &tree, "incr");
    std::fs::write(tree.join("sub/new.txt"), b"second change").unwrap();
    let i2 = backup(&store, &tree, "incr");

    // The full backup is needed by both incrementals: refused, nothing deleted.
    let r = host(&store, &["delete", &full], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{full} is needed by {i1}, {i2}")),
        "{}",
        r.stderr
    );
    assert_eq!(images(&store).len(), 3);

    // A dry run lists and keeps.
    let r = host(&store, &["delete", &i2, "--dry-run", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["deleted"][0].as_str(), Some(i2.as_str()));
    assert_eq!(images(&store).len(), 3);

    // Deleting the last incremental: the next incremental builds on the one before it, and
    // restores the tree exactly.
    let r = host(&store, &["delete", &i2], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(images(&store).iter().all(|(i, _)| *i != i2));
    std::fs::write(tree.join("sub/new2.txt"), b"third change").unwrap();
    let i3 = backup(&store, &tree, "incr");
    let m = host(&store, &["show", &i3, "--json"], &[]).json();
    assert_eq!(m["manifest"]["base"].as_str(), Some(i1.as_str()), "{m}");
    restores_as(&store, &i3, &dir.path().join("alt3"), &tree);

    // An incomplete image goes with --incomplete once its job has ended (given up here), and
    // only it; before that its steps may still be queued, and it is kept.
    let pending = discover_only(&store, &tree, "p");
    assert_eq!(images(&store).len(), 4);
    let r = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(r.json()["kept_unfinished"], serde_json::json!([pending]));
    assert_eq!(images(&store).len(), 4);
    let f = host(&store, &["finalize", "--image", &pending, "--abandon"], &[]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    let r = host(&store, &["delete", "--incomplete"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        images(&store).iter().all(|(_, s)| s == "complete"),
        "{:?}",
        images(&store)
    );

    // What an interrupted delete left is removed by the next one, and never listed.
    let leftover = store.join("images/.deleting-p-old");
    std::fs::create_dir_all(leftover.join("wkld")).unwrap();
    assert_eq!(images(&store).len(), 3);

    // The full backup with everything built on it: the store is empty, the policy forgets its
    // last backups, and its next incremental takes everything.
    let r = host(
        &store,
        &["delete", &full, "--with-dependents", "--json"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["deleted"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["leftovers_removed"][0].as_str(), Some("p-old"), "{j}");
    assert!(!leftover.exists());
    assert!(images(&store).is_empty());
    let fresh = backup(&store, &tree, "incr");
    let m = host(&store, &["show", &fresh, "--json"], &[]).json();
    assert!(m["manifest"]["base"].is_null(), "{m}");
    restores_as(&store, &fresh, &dir.path().join("alt-fresh"), &tree);
}

#[test]
fn delete_needs_an_image_and_knows_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r = host(&store, &["delete"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--incomplete"), "{}", r.stderr);
    let r = host(&store, &["delete", "no-such-image"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no image store here"), "{}", r.stderr);
    std::fs::create_dir_all(store.join("images")).unwrap();
    let r = host(&store, &["delete", "no-such-image"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such image"), "{}", r.stderr);
}

#[test]
fn images_in_use_are_kept_and_a_delete_waits_for_a_job_starting() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 3, PAST);
    let full = backup(&store, &tree, "full");
    let pending = discover_only(&store, &tree, "q");
    let st = aapi_host::store::Store::open_existing(&store).unwrap();
    {
        // What a restore of the full image and a running step of the split job hold.
        let _restoring = st.use_image(&full, &mut |_, _| true).unwrap();
        let _running = st.use_image(&pending, &mut |_, _| true).unwrap();
        let listed = images(&store);
        assert!(
            listed.contains(&(pending.clone(), "running".into())),
            "{listed:?}"
        );
        let r = host(&store, &["delete", &full], &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("in use by a running job"), "{}", r.stderr);
        let r = host(&store, &["delete", "--incomplete", "--json"], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["kept_running"], serde_json::json!([pending]));
        assert_eq!(r.json()["deleted"], serde_json::json!([]));
        assert_eq!(images(&store).len(), 2);
    }
    let l = host(&store, &["list", "--json"], &[]).json();
    let row = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == pending.as_str());
    assert_eq!(row.unwrap()["state"], "incomplete", "{l}");

    // Given up, the image goes with the next cleanup. A job choosing its base image holds the
    // store lock: a delete waits for it.
    let f = host(&store, &["finalize", "--image", &pending, "--abandon"], &[]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    let lock = st.lock(&mut |_, _| true).unwrap();
    let mut del = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["delete", "--incomplete"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        del.try_wait().unwrap().is_none(),
        "delete went ahead under another's store lock"
    );
    drop(lock);
    assert!(del.wait().unwrap().success());
    assert_eq!(images(&store), vec![(full, "complete".to_string())]);
}

#[test]
fn a_running_backup_is_listed_as_running_and_kept_by_delete() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 3, PAST);
    // One read takes 1.5 s (with keepalives), long enough to look at the job while it runs.
    let mut job = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["-q", "backup", "--policy", "p", "--plugin"])
        .arg(good_plugin())
        .arg("--select")
        .arg(&tree)
        .env("AAPI_TEST_FAULT", "slow:aapi_read_object:1500")
        .env("AAPI_TEST_FAULT_COUNT", "1")
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let running = loop {
        if store.join("images").is_dir()
            && let Some((id, _)) = images(&store).into_iter().find(|(_, s)| s == "running")
        {
            break id;
        }
        assert!(
            start.elapsed().as_secs() < 20 && job.try_wait().unwrap().is_none(),
            "the backup was never listed as running"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let r = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["kept_running"], serde_json::json!([running]));
    let r = host(&store, &["delete", &running], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(job.wait().unwrap().success());
    assert_eq!(images(&store), vec![(running, "complete".to_string())]);
}

#[test]
fn backups_of_several_policies_run_at_once_into_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 6, PAST);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plugin = rust_sample();
    let start = |policy: &str, schedule: &str| {
        std::process::Command::new(host_bin())
            .arg("--store")
            .arg(&store)
            .args([
                "backup",
                "--json",
                "--policy",
                policy,
                "--schedule",
                schedule,
            ])
            .args(["--streams", "2", "--plugin"])
            .arg(&plugin)
            .arg("--select")
            .arg(&tree)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |c: std::process::Child| {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["manifest"].clone()
    };
    let policies = ["a", "b", "c", "d"];
    let jobs: Vec<_> = policies.iter().map(|p| start(p, "full")).collect();
    let fulls: Vec<serde_json::Value> = jobs.into_iter().map(finish).collect();
    // Every policy kept its last backup, so each incremental builds on its own full backup.
    std::fs::write(tree.join("sub/f2.bin"), b"changed").unwrap();
    let jobs: Vec<_> = policies.iter().map(|p| start(p, "incr")).collect();
    for (full, c) in fulls.iter().zip(jobs) {
        let incr = finish(c);
        assert_eq!(incr["base"], full["image"], "{incr}");
        assert_eq!(incr["policy"], full["policy"]);
    }
    assert_eq!(images(&store).len(), 2 * policies.len());
    assert!(images(&store).iter().all(|(_, s)| s == "complete"));
}

#[test]
fn a_wait_for_the_store_lock_is_said_and_can_be_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    let full = backup(&store, &tree, "full");
    let st = aapi_host::store::Store::open_existing(&store).unwrap();
    // Another command holds the store lock: a backup waits, says so, and SIGTERM stops it
    // before it makes an image.
    let lock = st.lock(&mut |_, _| true).unwrap();
    let job = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["backup", "--policy", "p", "--plugin"])
        .arg(rust_sample())
        .arg("--select")
        .arg(&tree)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: a plain kill(2) of the child this test started.
    assert_eq!(unsafe { libc::kill(job.id() as i32, libc::SIGTERM) }, 0);
    let out = job.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("waiting for") && stderr.contains(".lock"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    drop(lock);
    assert_eq!(images(&store), vec![(full.clone(), "complete".to_string())]);

    // A command that waited for an image a delete then removed says so.
    let (busy, held) = st.in_use(&full, true).unwrap();
    assert!(!busy);
    let verify = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["verify", &full])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::remove_dir_all(store.join("images").join(&full)).unwrap();
    drop(held);
    let out = verify.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("deleted while this command waited"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_manifest_is_listed_and_does_not_stop_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let full = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        PAST,
        &[(b"/a", b"1")],
    );
    let other = fake_image(
        &store,
        "q-20261123T053828Z-full",
        "q",
        PAST,
        &[(b"/b", b"2")],
    );
    // An incremental whose catalog takes data from the full backup; then its manifest breaks.
    let bad = fake_image(
        &store,
        "p-20261123T053900Z-incr",
        "p",
        PAST + 60,
        &[(b"/a", b"1")],
    );
    let cat_path = store.join("images").join(&bad).join("catalog");
    let mut cat = aapi_host::store::Catalog::load(&cat_path).unwrap();
    cat.images.push(full.clone());
    cat.entries[0].data.image = 1;
    cat.save(&cat_path).unwrap();
    let manifest = store.join("images").join(&bad).join("manifest.json");
    std::fs::write(&manifest, "{garbage").unwrap();
    // A job that never got past its start: incomplete, nothing holds it.
    let stale = "r-20261123T053828Z-full";
    std::fs::create_dir_all(store.join("images").join(stale).join("wkld")).unwrap();
    // A job whose job file broke: what it is, nobody can tell, so a cleanup keeps it.
    let broken = "s-20261123T053828Z-full";
    std::fs::create_dir_all(store.join("images").join(broken)).unwrap();
    std::fs::write(
        store.join("images").join(broken).join("job.json"),
        "{garbage",
    )
    .unwrap();

    let l = host(&store, &["list", "--json"], &[]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    let rows = l.json()["images"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 5, "{rows:?}");
    let row = rows.iter().find(|r| r["image"] == bad.as_str()).unwrap();
    assert_eq!(row["state"], "damaged", "{row}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("manifest.json: unreadable manifest"),
        "{row}"
    );
    let l = host(&store, &["list"], &[]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert!(
        l.stdout.lines().any(|line| line.starts_with(&bad)
            && line.contains("damaged")
            && line.contains("DAMAGED: ")),
        "{}",
        l.stdout
    );
    assert!(l.stdout.contains(&other), "{}", l.stdout);

    // Other images are deleted as usual; what the damaged one refers to is kept for it.
    let r = host(&store, &["delete", &other], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = host(&store, &["delete", &full], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{full} is needed by {bad}")),
        "{}",
        r.stderr
    );
    // --incomplete takes the stale job, names the damaged image and keeps it.
    let r = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["deleted"], serde_json::json!([stale]));
    assert_eq!(r.json()["kept_damaged"], serde_json::json!([bad, broken]));
    assert!(store.join("images").join(&bad).is_dir());
    // Named, it goes; then so can the full backup.
    let r = host(&store, &["delete", &bad, broken], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = host(&store, &["delete", &full], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(images(&store).is_empty());
}

#[test]
fn delete_reports_the_stream_bytes_it_frees_also_of_incomplete_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let full = fake_image(
        &store,
        "p-20261123T053828Z-full",
        "p",
        PAST,
        &[(b"/a", &[7u8; 300]), (b"/b", b"0123456789")],
    );
    // A failed job whose two child jobs wrote 1000 and 234 bytes before they stopped.
    let failed = "p-20261123T053900Z-full";
    let fdir = store.join("images").join(failed);
    write_file(&fdir.join("stream-0.data"), &[1u8; 1000]);
    write_file(&fdir.join("stream-1.data"), &[2u8; 234]);
    write_file(&fdir.join("stream-0.cat"), &[3u8; 99]);
    write_file(&fdir.join("failed.txt"), b"1 of 2 child jobs failed");
    let r = host(
        &store,
        &["delete", "--incomplete", "--dry-run", "--json"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["bytes"], 1234, "{}", r.stdout);
    let r = host(&store, &["delete", "--incomplete"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("deleted 1 images, 1234 bytes of stream data"),
        "{}",
        r.stdout
    );
    let r = host(&store, &["delete", &full, "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["bytes"], 310, "{}", r.stdout);
}
