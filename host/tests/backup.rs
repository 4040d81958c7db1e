//! End-to-end backups and restores through the `aapi-host` command line.

mod common;

use common::*;
use std::path::Path;

const PAST: i64 = 1_600_000_000;

fn backup(store: &Path, plugin: &Path, tree: &Path, extra: &[&str]) -> Run {
    backup_env(store, plugin, tree, extra, &[])
}

/// [`backup`] with extra environment variables (the test plugin's faults).
fn backup_env(
    store: &Path,
    plugin: &Path,
    tree: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut args = vec![
        "backup",
        "--json",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "p1",
        "--select",
        tree.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    host(store, &args, env)
}

fn restore(store: &Path, args: &[&str]) -> Run {
    let mut a = vec!["restore", "--json"];
    a.extend_from_slice(args);
    host(store, &a, &[])
}

#[test]
fn full_then_incremental_restores_each_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = good_plugin();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 12, PAST);
    // Incrementals compare with whole seconds of the last backup's start: let ctimes fall in
    // an earlier second than the full backup's start.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = snapshot(&tree);
    let r = backup(&store, &plugin, &tree, &["--streams", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let full = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    assert_eq!(r.json()["manifest"]["streams"].as_array().unwrap().len(), 2);

    // Change the tree: modify, add, delete.
    std::fs::write(tree.join("sub/f2.bin"), b"changed contents").unwrap();
    std::fs::write(tree.join("sub/new.txt"), b"new file").unwrap();
    std::fs::remove_file(tree.join("sub/deeper/f1.bin")).unwrap();
    set_mtime(&tree.join("sub/f2.bin"), PAST + 100);
    set_mtime(&tree.join("sub/new.txt"), PAST + 200);
    set_mtime(&tree.join("sub/deeper"), PAST);
    set_mtime(&tree.join("sub"), PAST);
    let after = snapshot(&tree);
    let r = backup(
        &store,
        &plugin,
        &tree,
        &["--streams", "2", "--schedule", "incr"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = &r.json()["manifest"];
    let incr = m["image"].as_str().unwrap().to_string();
    assert_eq!(m["base"].as_str(), Some(full.as_str()));
    assert_eq!(m["depends_on"][0].as_str(), Some(full.as_str()));
    // Only changed objects' bytes are stored again.
    assert!(m["bytes"].as_u64().unwrap() < 1000, "{m}");

    // The incremental image restores the tree as it was at its time: deleted file absent.
    let alt = dir.path().join("alt-incr");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[&incr, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let restored = alt.join(tree.strip_prefix("/").unwrap());
    assert_same(&snapshot(&restored), &after);

    // The full image, and the point in time of the policy before the incremental.
    let alt = dir.path().join("alt-full");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[&full, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
        &before,
    );

    let started = r.json()["image"].as_str().unwrap().to_string();
    assert_eq!(started, full);
    let list = host(&store, &["list", "--json"], &[]).json();
    let t_full = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == full.as_str())
        .unwrap()["started"]
        .as_i64()
        .unwrap();
    let alt = dir.path().join("alt-pit");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(
        &store,
        &[
            "--policy",
            "p1",
            "--at",
            &t_full.to_string(),
            "--alt-root",
            alt.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Both images may start in the same second; the point in time then resolves to the newest.
    assert!(r.json()["image"] == full.as_str() || r.json()["image"] == incr.as_str());

    // Every image verifies.
    for img in [&full, &incr] {
        let v = host(&store, &["verify", img, "--json"], &[]);
        assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    }
}

#[test]
fn selected_object_is_read_directly_through_the_offset_map() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    std::fs::create_dir_all(tree.join("many")).unwrap();
    for i in 0..2000 {
        write_file(
            &tree.join(format!("many/{i:05}")),
            format!("object {i}\n").repeat(20).as_bytes(),
        );
    }
    write_file(&tree.join("big.bin"), &vec![0xabu8; 8 << 20]);
    let r = backup(&store, &good_plugin(), &tree, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let catalog_len = std::fs::metadata(store.join("images").join(&image).join("catalog"))
        .unwrap()
        .len();
    let target = tree.join("many/01234");
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(
        &store,
        &[
            &image,
            "--path",
            target.to_str().unwrap(),
            "--alt-root",
            alt.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = &r.json()["report"];
    assert_eq!(report["objects"], 1);
    let obj_len = std::fs::metadata(&target).unwrap().len();
    assert_eq!(
        report["store_bytes_read"].as_u64().unwrap(),
        catalog_len + obj_len
    );
    assert_eq!(
        std::fs::read(alt.join(target.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read(&target).unwrap()
    );
    // A whole restore reads every byte.
    let alt2 = dir.path().join("alt2");
    std::fs::create_dir(&alt2).unwrap();
    let r = restore(&store, &[&image, "--alt-root", alt2.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["report"]["store_bytes_read"].as_u64().unwrap() > 8 << 20);
}

fn show_objects(store: &Path, image: &str) -> Vec<serde_json::Value> {
    host(store, &["show", image, "--objects", "--json"], &[]).json()["objects"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_corrupt_byte_is_named_by_verify_and_stops_its_restore() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 6, PAST);
    let r = backup(&store, &good_plugin(), &tree, &["--streams", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let objs = show_objects(&store, &image);
    let victim = objs
        .iter()
        .find(|o| o["path"].as_str().unwrap().ends_with("sub/f2.bin"))
        .unwrap();
    let stream = store
        .join("images")
        .join(&image)
        .join(format!("stream-{}.data", victim["stream"]));
    let mut bytes = std::fs::read(&stream).unwrap();
    let at = victim["offset"].as_u64().unwrap() as usize + 100;
    bytes[at] ^= 0x01;
    std::fs::write(&stream, bytes).unwrap();

    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.contains("DAMAGED") && v.stdout.contains("sub/f2.bin"),
        "{}",
        v.stdout
    );
    assert!(v.stdout.contains("still be restored"), "{}", v.stdout);
    let v = host(&store, &["verify", &image, "--json"], &[]).json();
    assert_eq!(v["report"]["damaged"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["report"]["good"].as_u64().unwrap() + 1,
        v["report"]["objects"].as_u64().unwrap()
    );

    // Restoring the damaged object fails, names it, and leaves nothing behind.
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let path = victim["path"].as_str().unwrap();
    let r = restore(
        &store,
        &[&image, "--path", path, "--alt-root", alt.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("sub/f2.bin") && r.stderr.contains("digest recorded at backup"),
        "{}",
        r.stderr
    );
    assert!(!alt.join(path.strip_prefix('/').unwrap()).exists());
    // Other objects are still restorable.
    let good = tree.join("sub/f4.bin");
    let r = restore(
        &store,
        &[
            &image,
            "--path",
            good.to_str().unwrap(),
            "--alt-root",
            alt.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn truncated_catalog_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store) = small_tree(dir.path());
    let r = backup(&store, &good_plugin(), &tree, &[]);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let cat = store.join("images").join(&image).join("catalog");
    let len = std::fs::metadata(&cat).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cat).unwrap();
    f.set_len(len - 10).unwrap();
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 1);
    assert!(v.stderr.contains("catalog"), "{}", v.stderr);
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[&image, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("catalog does not match"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&alt).unwrap().count(), 0);
}

#[test]
fn split_discover_child_finalize() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    let snaps = dir.path().join("snaps");
    make_tree(&tree, 4, PAST);
    std::fs::create_dir(&snaps).unwrap();
    let plugin = rust_sample();
    let snap_dir = format!("files.snapshot_dir={}", snaps.display());
    let discover = || {
        let d = host(
            &store,
            &[
                "discover",
                "--plugin",
                plugin.to_str().unwrap(),
                "--policy",
                "p",
                "--select",
                tree.to_str().unwrap(),
                "--hosts",
                "bh1,bh2",
                "--property",
                "files.snapshot=copy",
                "--property",
                &snap_dir,
            ],
            &[],
        );
        assert_eq!(d.code, 0, "{}", d.stderr);
        // The hint names the store, so it can be run as printed.
        assert!(
            d.stderr.contains(&format!("--store {}", store.display())),
            "{}",
            d.stderr
        );
        d.stdout.trim().to_string()
    };
    let snapshots = || std::fs::read_dir(&snaps).unwrap().count();
    let image = discover();
    let l = host(&store, &["list", "--json"], &[]).json();
    assert_eq!(l["images"][0]["state"], "incomplete");
    assert_eq!(snapshots(), 1);
    // An incomplete image is bad input to verify and restore alike.
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 2, "{}", v.stderr);
    assert!(v.stderr.contains("incomplete"), "{}", v.stderr);
    // Finalize before the child jobs ran: refused before postprocess, so the snapshot the child
    // jobs need is still there.
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 1);
    assert!(
        f.stderr.contains("bh1, bh2 have not completed") && f.stderr.contains("--abandon"),
        "{}",
        f.stderr
    );
    assert_eq!(snapshots(), 1);
    for h in ["bh1", "bh2"] {
        let c = host(
            &store,
            &["child", "--json", "--image", &image, "--host", h],
            &[],
        );
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert_eq!(c.json()["stream"]["failures"].as_array().unwrap().len(), 0);
    }
    // A job engine's retry of a completed child job changes nothing and succeeds.
    let c = host(&store, &["child", "--image", &image, "--host", "bh1"], &[]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(c.stderr.contains("nothing to do"), "{}", c.stderr);
    let c = host(&store, &["child", "--image", &image, "--host", "bh3"], &[]);
    assert_eq!(c.code, 2);
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(snapshots(), 0, "postprocess removed the snapshot");
    let l = host(&store, &["list", "--json"], &[]).json();
    assert_eq!(l["images"][0]["state"], "complete");
    restores_as(&store, &image, &dir.path().join("alt"), &tree);

    // Giving an image up: postprocess cleans the snapshot, the image stays incomplete.
    let given_up = discover();
    assert_eq!(snapshots(), 1);
    // Until then, a cleanup by delete keeps it (its child jobs may still be queued, and no
    // delete cleans a snapshot up), and naming it is refused with the way out.
    let d = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(d.json()["kept_unfinished"], serde_json::json!([given_up]));
    assert_eq!(d.json()["deleted"], serde_json::json!([]));
    let d = host(&store, &["delete", &given_up], &[]);
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert!(
        d.stderr.contains("has not ended") && d.stderr.contains("--abandon"),
        "{}",
        d.stderr
    );
    assert_eq!(snapshots(), 1);
    let c = host(
        &store,
        &["child", "--image", &given_up, "--host", "bh2"],
        &[],
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    let f = host(
        &store,
        &["finalize", "--image", &given_up, "--abandon"],
        &[],
    );
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(f.stderr.contains("given up"), "{}", f.stderr);
    assert_eq!(snapshots(), 0);
    let l = host(&store, &["list", "--json"], &[]).json();
    let row = l["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == given_up.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["state"], "incomplete", "{row}");
    assert!(
        row["reason"].as_str().unwrap().contains("given up"),
        "{row}"
    );
    // Given up, no step of its job runs again: its snapshot is gone.
    for step in [
        vec!["child", "--image", &given_up, "--host", "bh1"],
        vec!["finalize", "--image", &given_up],
        vec!["finalize", "--image", &given_up, "--abandon"],
    ] {
        let r = host(&store, &step, &[]);
        assert_eq!(r.code, 2, "{step:?}: {}", r.stderr);
        assert!(r.stderr.contains("was given up"), "{step:?}: {}", r.stderr);
    }
    // Given up, it goes with the next cleanup.
    let d = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(d.json()["deleted"], serde_json::json!([given_up]));
}

#[test]
fn bad_input_gets_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    // Unknown plugin path.
    let r = backup(&store, Path::new("/nonexistent/plugin.so"), &tree, &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("plugin not found"), "{}", r.stderr);
    // Missing symbols, named.
    let nosyms = test_plugin("aapi_testplugin_nosyms", &["TEST_OMIT_SYMBOLS"]);
    let r = backup(&store, &nosyms, &tree, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("aapi_delete_object, aapi_flush"),
        "{}",
        r.stderr
    );
    // Wrong ABI.
    let abi2 = test_plugin("aapi_testplugin_abi2", &["TEST_ABI_MAJOR=2"]);
    let r = backup(&store, &abi2, &tree, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ABI major 2"), "{}", r.stderr);
    // Unsupported schedule.
    let r = backup(&store, &good_plugin(), &tree, &["--schedule", "cinc"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("AAPI_ESCHED_NOT_SUPPORTED"),
        "{}",
        r.stderr
    );
    // Unreadable selection.
    let r = backup(&store, &good_plugin(), &dir.path().join("missing"), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("AAPI_ENOENT"), "{}", r.stderr);
    // Nothing was left behind by the failed discoveries.
    let l = host(&store, &["list", "--json"], &[]).json();
    assert_eq!(l["images"].as_array().unwrap().len(), 0, "{l}");
    // Unknown image.
    let r = restore(&store, &["no-such-image"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no such image"), "{}", r.stderr);
    // Full restore target: restore_preprocess says no space; nothing is written.
    let r = backup(&store, &good_plugin(), &tree, &[]);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let out = std::process::Command::new(host_bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "restore",
            &image,
            "--alt-root",
            alt.to_str().unwrap(),
        ])
        .env("AAPI_TEST_FAULT", "fail:aapi_restore_preprocess:8")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AAPI_ENOSPC"));
    assert_eq!(std::fs::read_dir(&alt).unwrap().count(), 0);
}

#[test]
fn failed_object_is_cut_out_and_the_image_is_partial() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 8, PAST);
    // The 6th read call fails once with AAPI_ECHANGED, after earlier bytes of the stream.
    let out = std::process::Command::new(host_bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "backup",
            "--json",
            "--policy",
            "p",
            "--plugin",
        ])
        .arg(good_plugin())
        .args(["--select", tree.to_str().unwrap()])
        .env("AAPI_TEST_FAULT", "fail:aapi_read_object:10")
        .env("AAPI_TEST_FAULT_AFTER", "6")
        .env("AAPI_TEST_FAULT_COUNT", "1")
        .output()
        .unwrap();
    let r = Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 3, "{}", r.stderr);
    let m = &r.json()["manifest"];
    let failures = m["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{m}");
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("AAPI_ECHANGED")
    );
    assert!(r.stderr.contains("not backed up"), "{}", r.stderr);
    let failed = failures[0]["path"].as_str().unwrap().to_string();
    // The path stands beside the error, once.
    assert!(
        !failures[0]["error"].as_str().unwrap().contains(&failed),
        "{m}"
    );
    // Shown escaped on stderr (the name may hold a newline).
    let shown = aapi_host::ui::escape_path(
        &serde_json::from_value::<aapi_host::store::ObjectFailure>(failures[0].clone())
            .unwrap()
            .path_bytes(),
    );
    assert_eq!(r.stderr.matches(shown.as_str()).count(), 1, "{}", r.stderr);
    let image = m["image"].as_str().unwrap();
    // The stream holds only whole objects: everything verifies and restores.
    let v = host(&store, &["verify", image], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("is partial: 1 object(s)"), "{}", v.stderr);
    assert!(
        v.stdout
            .contains("but it is partial: 1 object(s) were not backed up"),
        "{}",
        v.stdout
    );
    let v = host(&store, &["--json", "verify", image], &[]);
    let report: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        report["report"]["not_backed_up"][0]["path"],
        failed.as_str()
    );
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[image, "--alt-root", alt.to_str().unwrap()]);
    // The restore is partial too, and says so: the failed object is named.
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.json()["not_backed_up"][0]["path"], failed.as_str());
    assert!(r.stderr.contains("is partial: 1 object(s)"), "{}", r.stderr);
    let failed_bytes =
        serde_json::from_value::<aapi_host::store::ObjectFailure>(failures[0].clone())
            .unwrap()
            .path_bytes();
    let alone = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", image, "--dry-run", "--path"])
        .arg(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&failed_bytes))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&alone.stderr);
    assert_eq!(alone.status.code(), Some(2), "{err}");
    assert!(
        err.contains("was not backed up in image") && err.contains("AAPI_ECHANGED"),
        "{err}"
    );
    let expect = snapshot(&tree);
    let restored = snapshot(&alt.join(tree.strip_prefix("/").unwrap()));
    // Everything but the failed object came back with its bytes (directory times are not
    // compared: the failed object's parent lost an entry).
    for (k, got) in &restored {
        assert_eq!(expect[k].2, got.2, "{}", k.display());
    }
    let missing: Vec<_> = expect
        .keys()
        .filter(|k| !restored.contains_key(*k))
        .collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(tree.join(missing[0]).to_string_lossy(), failed);
    // A partial image is not the base of the next incremental.
    let st = std::fs::read_to_string(store.join("state.json")).unwrap_or_default();
    assert!(!st.contains(image), "{st}");
}

#[test]
fn a_full_store_fails_the_backup_and_keeps_earlier_images() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 8, PAST);
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    write_file(&tree.join("sub/big.bin"), &big);
    touch_all(&tree, PAST);
    let first = backup(&store, &rust_sample(), &tree, &["--streams", "2"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first = first.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();

    // The store takes no file over 1 MiB: the stream holding big.bin hits the limit mid-object,
    // as it would hit the end of the disk (with SIGXFSZ ignored, the write fails with EFBIG).
    let mut cmd = std::process::Command::new(host_bin());
    cmd.arg("--store")
        .arg(&store)
        .args(["--json", "backup", "--policy", "p1", "--streams", "2"])
        .arg("--plugin")
        .arg(rust_sample())
        .arg("--select")
        .arg(&tree);
    // SAFETY: between fork and exec the closure only calls the async-signal-safe setrlimit and
    // signal; the limit and the ignored signal pass on to the worker processes.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(".data") && stdout.contains("file size limit"),
        "the message names the stream file and the cause: {stdout}"
    );

    // The failed image is marked incomplete, the earlier one is untouched and restores.
    let l = host(&store, &["list", "--json"], &[]).json();
    let images = l["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{l}");
    for i in images {
        let expect = if i["image"] == first.as_str() {
            "complete"
        } else {
            "incomplete"
        };
        assert_eq!(i["state"], expect, "{l}");
    }
    let v = host(&store, &["verify", &first], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    restores_as(&store, &first, &dir.path().join("alt"), &tree);
}

#[test]
fn a_cut_stream_is_named_and_what_precedes_the_cut_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 8, PAST);
    let r = backup(&store, &good_plugin(), &tree, &["--streams", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    // The object stored last in the stream loses its last byte: the catalog no longer matches.
    let objs = show_objects(&store, &image);
    let with_data = |o: &&serde_json::Value| o["type"] == "file" && o["size"].as_u64() > Some(0);
    let last = objs
        .iter()
        .filter(with_data)
        .max_by_key(|o| o["offset"].as_u64().unwrap())
        .unwrap();
    let first = objs
        .iter()
        .filter(with_data)
        .filter(|o| !o["path"].as_str().unwrap().contains('\u{fffd}'))
        .min_by_key(|o| o["offset"].as_u64().unwrap())
        .unwrap();
    let stream = store.join("images").join(&image).join("stream-0.data");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&stream)
        .unwrap();
    f.set_len(f.metadata().unwrap().len() - 1).unwrap();

    let v = host(&store, &["verify", &image, "--json"], &[]);
    assert_eq!(v.code, 1, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stderr.contains("stream-0.data: holds")
            && v.stderr.contains("1 fewer than the manifest records"),
        "{}",
        v.stderr
    );
    let report = &v.json()["report"];
    assert_eq!(report["damaged_streams"][0]["stream"], 0, "{report}");
    let damaged = report["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{report}");
    assert_eq!(damaged[0]["path"], last["path"]);

    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let cut = last["path"].as_str().unwrap();
    let r = restore(
        &store,
        &[&image, "--path", cut, "--alt-root", alt.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("its stream ends after"), "{}", r.stderr);
    assert!(!alt.join(cut.strip_prefix('/').unwrap()).exists());
    let kept = first["path"].as_str().unwrap();
    let r = restore(
        &store,
        &[&image, "--path", kept, "--alt-root", alt.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(alt.join(kept.strip_prefix('/').unwrap())).unwrap(),
        std::fs::read(kept).unwrap()
    );
}

#[test]
fn a_non_utf8_name_is_shown_with_its_bytes_and_restores_by_path() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    let r = backup(&store, &good_plugin(), &tree, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let odd = tree.join(std::ffi::OsStr::from_bytes(b"odd name\nwith newline \xff"));

    // `show --json` gives the exact bytes of the one path that is not UTF-8.
    let objs = show_objects(&store, &image);
    let hexed: Vec<&serde_json::Value> = objs
        .iter()
        .filter(|o| o.get("path_hex").is_some())
        .collect();
    assert_eq!(hexed.len(), 1, "{objs:?}");
    let hex = hexed[0]["path_hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes, odd.as_os_str().as_bytes());

    // `restore --path` takes those bytes as the shell passes them.
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", &image, "--alt-root"])
        .arg(&alt)
        .arg("--path")
        .arg(std::ffi::OsString::from_vec(bytes))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = alt.join(odd.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored).unwrap(),
        std::fs::read(&odd).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(alt.join(tree.strip_prefix("/").unwrap()))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_selection_that_is_not_utf8_is_backed_up_and_restored() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join(std::ffi::OsStr::from_bytes(b"tr\xe9e"));
    let store = dir.path().join("store");
    make_tree(&tree, 4, PAST);
    let before = snapshot(&tree);
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args([
            "backup",
            "--json",
            "--policy",
            "p1",
            "--streams",
            "2",
            "--plugin",
        ])
        .arg(good_plugin())
        .arg("--select")
        .arg(&tree)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = run["manifest"]["image"].as_str().unwrap().to_string();
    // job.json keeps the exact bytes, readable back by every later step.
    let job: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("images").join(&image).join("job.json")).unwrap(),
    )
    .unwrap();
    let hex: String = tree
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(job["selections"], serde_json::json!([{ "hex": hex }]));

    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[&image, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(
        &before,
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
    );
}

#[test]
fn a_plugin_directory_uses_the_library_that_claims() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    let plugins = dir.path().join("plugins");
    make_tree(&tree, 2, PAST);
    std::fs::create_dir(&plugins).unwrap();
    // File-name order: a library of the wrong ABI first, then one that claims "files".
    let abi2 = test_plugin("aapi_testplugin_abi2", &["TEST_ABI_MAJOR=2"]);
    std::fs::copy(abi2, plugins.join("a-old.so")).unwrap();
    std::fs::copy(good_plugin(), plugins.join("b-files.so")).unwrap();

    let r = backup(&store, &plugins, &tree, &["--streams", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = &r.json()["manifest"];
    assert!(m["plugin"].as_str().unwrap().ends_with("b-files.so"), "{m}");
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let image = m["image"].as_str().unwrap();
    let r = restore(&store, &[image, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
        &snapshot(&tree),
    );

    // No library claims the type: exit 2, each library named with its reason, no image.
    let r = backup(&store, &plugins, &tree, &["--workload-type", "db"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("a-old.so") && r.stderr.contains("major 2"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("b-files.so: does not claim workload type \"db\""),
        "{}",
        r.stderr
    );
    let l = host(&store, &["list", "--json"], &[]).json();
    assert_eq!(l["images"].as_array().unwrap().len(), 1, "{l}");
}

#[test]
fn input_errors_say_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);

    // A mistyped store is not an empty store, and nothing is created.
    let typo = dir.path().join("stroe");
    for args in [&["list"][..], &["verify", "x"], &["delete", "--incomplete"]] {
        let r = host(&typo, args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("no image store here"), "{}", r.stderr);
    }
    assert!(!typo.exists());
    // A store path that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let r = backup(&file, &rust_sample(), &tree, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not a directory"), "{}", r.stderr);

    // Usage errors are JSON when JSON was asked for.
    let r = host(&store, &["--json", "list", "--bogus"], &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["exit"], "usage");

    // Credentials readable by others are refused before anything runs.
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "user=me\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = backup(
        &store,
        &rust_sample(),
        &tree,
        &["--credentials", creds.to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);

    // A plugin path that job.json cannot record as text: exit 2, no image is created.
    let odd_dir = dir
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"lib\xff"));
    std::fs::create_dir(&odd_dir).unwrap();
    let odd = odd_dir.join("libfiles.so");
    std::fs::copy(rust_sample(), &odd).unwrap();
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["backup", "--policy", "p1", "--select"])
        .arg(&tree)
        .arg("--plugin")
        .arg(&odd)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the path is not UTF-8"), "{stderr}");
    assert!(!store.exists(), "{stderr}");
    // The same for a store path, and for a library of a plugin directory: refused before any
    // image or snapshot is made.
    let odd_store = dir
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"store\xff"));
    let run = |store: &Path, plugin: &Path| {
        let out = std::process::Command::new(host_bin())
            .arg("--store")
            .arg(store)
            .args(["backup", "--policy", "p1", "--select"])
            .arg(&tree)
            .arg("--plugin")
            .arg(plugin)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&odd_store, &rust_sample());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the path is not UTF-8"), "{stderr}");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let odd_lib = plugins
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"files\xff.so"));
    std::fs::copy(rust_sample(), &odd_lib).unwrap();
    let (code, stderr) = run(&store, &plugins);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not UTF-8; rename it"), "{stderr}");
    assert!(stderr.contains("no image was made"), "{stderr}");

    let r = backup(&store, &rust_sample(), &tree, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    // A missing alternate root: exit 2 and how to make it.
    let missing = dir.path().join("not-yet");
    let r = restore(&store, &[&image, "--alt-root", missing.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("mkdir -p"), "{}", r.stderr);
    // An alternate root that is not UTF-8: exit 2, no panic.
    let odd_alt = dir
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"alt\xff"));
    std::fs::create_dir(&odd_alt).unwrap();
    let out = std::process::Command::new(host_bin())
        .arg("--store")
        .arg(&store)
        .args(["restore", &image, "--alt-root"])
        .arg(&odd_alt)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("by UTF-8 paths"), "{stderr}");
    // Restoring over existing objects says how to replace them.
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let r = restore(&store, &[&image, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = restore(&store, &[&image, "--alt-root", alt.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pass --overwrite"), "{}", r.stderr);
}

#[test]
fn an_installed_package_is_used_through_its_manifest_entry() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    // The layout `aapi-validator install` leaves: the library where the manifest's entry says.
    let dest = dir.path().join("files-plugin");
    std::fs::create_dir_all(dest.join(".aapi")).unwrap();
    std::fs::create_dir_all(dest.join("lib")).unwrap();
    std::fs::copy(rust_sample(), dest.join("lib/libfiles.so")).unwrap();
    let manifest = dest.join(".aapi/manifest.json");
    std::fs::write(&manifest, r#"{"format": 1, "entry": "lib/libfiles.so"}"#).unwrap();
    let r = backup(&store, &dest, &tree, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = &r.json()["manifest"];
    assert!(
        m["plugin"]
            .as_str()
            .unwrap()
            .ends_with("files-plugin/lib/libfiles.so"),
        "{m}"
    );

    // An entry that leaves the installation is refused.
    std::fs::write(&manifest, r#"{"entry": "../elsewhere.so"}"#).unwrap();
    let r = backup(&store, &dest, &tree, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("verify --installed"), "{}", r.stderr);
}

/// A failed postprocess leaves the image incomplete, not complete with its cleanup undone; a
/// later finalize runs the postprocess again and completes it. Giving up with a failing
/// postprocess does not give the image up either.
#[test]
fn a_failed_postprocess_is_run_again_by_the_next_finalize() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 4, PAST);
    let plugin = good_plugin();
    let discover = || discover(&store, &plugin, &tree, "bh1,bh2", &[]);
    let state = |image: &str| {
        let l = host(&store, &["list", "--json"], &[]).json();
        let row = l["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["image"] == image)
            .unwrap()
            .clone();
        (row["state"].clone(), row["reason"].clone())
    };
    let fail_post = [("AAPI_TEST_FAULT", "fail:aapi_postprocess")];
    let image = discover();
    for h in ["bh1", "bh2"] {
        let c = host(&store, &["child", "--image", &image, "--host", h], &[]);
        assert_eq!(c.code, 0, "{}", c.stderr);
    }
    let f = host(&store, &["finalize", "--image", &image], &fail_post);
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(
        f.stderr.contains("aapi_postprocess")
            && f.stderr.contains(&format!("finalize --image {image}`")),
        "{}",
        f.stderr
    );
    assert_eq!(
        f.stderr.matches("injected failure").count(),
        1,
        "{}",
        f.stderr
    );
    // `list` says why, until a finalize runs the postprocess again.
    let (_, reason) = state(&image);
    assert!(
        reason.as_str().unwrap().contains("injected failure"),
        "{reason}"
    );
    assert_eq!(state(&image).0, "incomplete");
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert_eq!(state(&image).0, "complete");

    let abandoned = discover();
    let c = host(
        &store,
        &["child", "--image", &abandoned, "--host", "bh1"],
        &[],
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    let f = host(
        &store,
        &["finalize", "--image", &abandoned, "--abandon"],
        &fail_post,
    );
    assert_eq!(f.code, 1, "{}", f.stderr);
    let (st, reason) = state(&abandoned);
    assert_eq!(st, "incomplete");
    assert!(!reason.to_string().contains("given up"), "{reason}");
    let f = host(
        &store,
        &["finalize", "--image", &abandoned, "--abandon"],
        &[],
    );
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(f.stderr.contains("given up"), "{}", f.stderr);
    let c = host(
        &store,
        &["child", "--image", &abandoned, "--host", "bh2"],
        &[],
    );
    assert_eq!(c.code, 2, "{}", c.stderr);
}

/// An incremental whose full backup is gone, or whose full backup's manifest is damaged, keeps
/// what it stored itself: verify checks every object and names as damaged only those whose data
/// lies in the unusable image; restore restores a path stored in the incremental and refuses one
/// stored in the unusable image, saying why and what can still be restored.
#[test]
fn an_incremental_whose_base_is_unusable_keeps_what_it_stored_itself() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 4, PAST);
    // The incremental takes the unchanged objects from the full backup only when their ctime
    // lies before its start.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plugin = good_plugin();
    let full = backup(&store, &plugin, &tree, &[]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    let full = full.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let changed = tree.join("sub/f2.bin");
    std::fs::write(&changed, b"changed after the full backup").unwrap();
    let incr = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(incr.code, 0, "{}", incr.stderr);
    let incr = incr.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let objs = show_objects(&store, &incr);
    let in_incr: Vec<String> = objs
        .iter()
        .filter(|o| o["image"] == incr.as_str())
        .map(|o| o["path"].as_str().unwrap().to_string())
        .collect();
    // Directories have no data: they need no image.
    let in_full: Vec<String> = objs
        .iter()
        .filter(|o| o["image"] == full.as_str() && o["size"] != 0)
        .map(|o| o["path"].as_str().unwrap().to_string())
        .collect();
    let intact = objs.len() - in_full.len();
    assert!(
        in_incr.contains(&changed.to_str().unwrap().to_string()),
        "{objs:?}"
    );
    assert!(!in_full.is_empty(), "{objs:?}");
    let full_file = tree.join("sub/f0.bin").to_str().unwrap().to_string();
    assert!(in_full.contains(&full_file), "{objs:?}");

    let full_dir = store.join("images").join(&full);
    let manifest = full_dir.join("manifest.json");
    let saved = std::fs::read(&manifest).unwrap();
    let away = dir.path().join("away");
    for case in ["damaged manifest", "image gone"] {
        if case == "damaged manifest" {
            std::fs::write(&manifest, &saved[..100]).unwrap();
        } else {
            std::fs::write(&manifest, &saved).unwrap();
            std::fs::rename(&full_dir, &away).unwrap();
        }
        let v = host(&store, &["verify", &incr], &[]);
        assert_eq!(v.code, 1, "{case}: {}{}", v.stdout, v.stderr);
        let damaged: Vec<&str> = v
            .stdout
            .lines()
            .filter(|l| l.starts_with("DAMAGED "))
            .collect();
        assert_eq!(damaged.len(), in_full.len(), "{case}: {}", v.stdout);
        for line in &damaged {
            assert!(
                line.contains(&format!(
                    "its data lies in image {full}, which is not usable"
                )),
                "{case}: {line}"
            );
        }
        for p in &in_incr {
            assert!(
                !damaged
                    .iter()
                    .any(|l| l.starts_with(&format!("DAMAGED {p}:"))),
                "{case}: {p} is stored in the incremental: {}",
                v.stdout
            );
        }
        assert!(
            v.stdout
                .contains(&format!("{intact} of {} objects intact", objs.len())),
            "{case}: {}",
            v.stdout
        );
        assert!(
            !v.stderr.contains("none of its objects"),
            "{case}: {}",
            v.stderr
        );
        let j = host(&store, &["verify", &incr, "--json"], &[]);
        assert_eq!(j.code, 1, "{case}: {}", j.stderr);
        let report = &j.json()["report"];
        assert_eq!(report["good"], intact, "{case}: {report}");
        assert_eq!(
            report["unusable_images"][0]["image"],
            full.as_str(),
            "{case}: {report}"
        );
        let why = report["unusable_images"][0]["reason"].as_str().unwrap();
        let expect = if case == "damaged manifest" {
            "unreadable manifest"
        } else {
            "no longer in the store"
        };
        assert!(why.contains(expect), "{case}: {why}");

        // A path stored in the incremental restores; one stored in the full backup is refused.
        let alt = dir.path().join(format!("alt-{}", case.replace(' ', "-")));
        std::fs::create_dir(&alt).unwrap();
        let r = restore(
            &store,
            &[
                &incr,
                "--path",
                changed.to_str().unwrap(),
                "--alt-root",
                alt.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{case}: {}", r.stderr);
        assert_eq!(
            std::fs::read(alt.join(changed.strip_prefix("/").unwrap())).unwrap(),
            b"changed after the full backup"
        );
        for args in [
            vec![incr.as_str(), "--path", full_file.as_str()],
            vec![incr.as_str()],
            vec![incr.as_str(), "--dry-run"],
        ] {
            let alt2 = dir.path().join("alt-refused");
            std::fs::create_dir_all(&alt2).unwrap();
            let mut a = args.clone();
            a.extend(["--alt-root", alt2.to_str().unwrap()]);
            let r = host(&store, &[&["restore"], a.as_slice()].concat(), &[]);
            assert_eq!(r.code, 1, "{case} {args:?}: {}", r.stderr);
            assert!(
                r.stderr
                    .contains(&format!("data lies in image {full}, which is not usable"))
                    && r.stderr.contains("nothing was restored")
                    && r.stderr.contains(&format!(
                        "aapi-host --store {} verify {incr}",
                        store.display()
                    ))
                    && !r.stderr.contains("none of its objects"),
                "{case} {args:?}: {}",
                r.stderr
            );
            assert_eq!(
                std::fs::read_dir(&alt2).unwrap().count(),
                0,
                "{case} {args:?}"
            );
        }
    }
    std::fs::rename(&away, &full_dir).unwrap();
    let v = host(&store, &["verify", &incr], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

/// A credentials line that is not KEY=VALUE is refused with its line number, before anything runs.
#[test]
fn a_malformed_credentials_line_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 1, PAST);
    let cred = dir.path().join("cred");
    std::fs::write(&cred, "# comment\nuser=backup\npassword hunter2\n").unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = backup(
        &store,
        &good_plugin(),
        &tree,
        &["--credentials", cred.to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("line 3"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    assert!(
        !store.join("images").exists()
            || std::fs::read_dir(store.join("images")).unwrap().count() == 0
    );
}

/// Of two images of a policy started and completed in the same second, `--policy` picks the one
/// whose manifest was written last.
#[test]
fn images_of_the_same_second_are_ordered_by_completion() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 1, PAST);
    let plugin = good_plugin();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let b = backup(&store, &plugin, &tree, &[]);
        assert_eq!(b.code, 0, "{}", b.stderr);
        ids.push(b.json()["manifest"]["image"].as_str().unwrap().to_string());
    }
    let manifest = |id: &str| store.join("images").join(id).join("manifest.json");
    // The same second for both.
    for id in &ids {
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest(id)).unwrap()).unwrap();
        m["started"] = 1_700_000_000.into();
        m["completed"] = 1_700_000_000.into();
        std::fs::write(manifest(id), serde_json::to_vec(&m).unwrap()).unwrap();
    }
    for (later, earlier) in [(&ids[0], &ids[1]), (&ids[1], &ids[0])] {
        set_mtime(&manifest(earlier), 1_700_000_000);
        set_mtime(&manifest(later), 1_700_000_001);
        let r = restore(&store, &["--policy", "p1", "--dry-run"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["image"], later.as_str(), "{}", r.stdout);
    }
}

/// A store file that cannot be used is a failure (exit 1), not bad usage: the image named is
/// right, its manifest is damaged.
#[test]
fn a_damaged_manifest_fails_show_verify_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 1, PAST);
    let b = backup(&store, &good_plugin(), &tree, &[]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let id = b.json()["manifest"]["image"].as_str().unwrap().to_string();
    std::fs::write(
        store.join("images").join(&id).join("manifest.json"),
        "{garbage",
    )
    .unwrap();
    for args in [
        vec!["show", id.as_str()],
        vec!["verify", id.as_str()],
        vec!["restore", id.as_str(), "--dry-run"],
    ] {
        let r = host(&store, &args, &[]);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("manifest"), "{args:?}: {}", r.stderr);
    }
}

/// A finalize that fails after its postprocess succeeded (here: the catalog cannot be written)
/// keeps the streams; the next finalize only merges. Meanwhile a cleanup keeps the image, whose
/// job has not ended.
#[test]
fn a_finalize_that_failed_after_its_postprocess_only_merges_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    let snaps = dir.path().join("snaps");
    make_tree(&tree, 3, PAST);
    std::fs::create_dir(&snaps).unwrap();
    let plugin = rust_sample();
    let snap_dir = format!("files.snapshot_dir={}", snaps.display());
    let image = discover(
        &store,
        &plugin,
        &tree,
        "stream-0",
        &["--property", "files.snapshot=copy", "--property", &snap_dir],
    );
    let c = host(
        &store,
        &["child", "--image", &image, "--host", "stream-0"],
        &[],
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    // Something in the way of the catalog.
    let blocker = store.join("images").join(&image).join("catalog");
    std::fs::create_dir(&blocker).unwrap();
    let f = host(&store, &["finalize", "--image", &image], &[]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(f.stderr.contains("again"), "{}", f.stderr);
    assert_eq!(
        std::fs::read_dir(&snaps).unwrap().count(),
        0,
        "postprocess ran"
    );
    let del = host(
        &store,
        &["delete", "--incomplete", "--dry-run", "--json"],
        &[],
    );
    assert_eq!(del.code, 0, "{}", del.stderr);
    // Its finalize is still to run: a cleanup keeps it.
    assert_eq!(
        del.json()["kept_unfinished"],
        serde_json::json!([image]),
        "{}",
        del.stdout
    );
    std::fs::remove_dir(&blocker).unwrap();
    let f = host(&store, &["finalize", "--image", &image, "--json"], &[]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}", v.stderr);
}

/// A directory renamed since the last backup keeps its objects' times, so the plugin lists them
/// as unchanged at paths the base never held: the child job reads them in full, and the
/// incremental is complete (not partial every night until a full backup) and restores exactly.
#[test]
fn a_renamed_directory_is_backed_up_in_full_by_the_next_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 6, PAST);
    // Unchanged means a ctime before the full backup's start.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plugin = good_plugin();
    let full = backup(&store, &plugin, &tree, &[]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    std::fs::rename(tree.join("sub/deeper"), tree.join("sub/moved")).unwrap();
    let incr = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(incr.code, 0, "{}", incr.stderr);
    let m = &incr.json()["manifest"];
    assert_eq!(m["failures"], serde_json::json!([]), "{m}");
    let image = m["image"].as_str().unwrap().to_string();
    restores_as(&store, &image, &dir.path().join("alt"), &tree);
}

/// Run the shell `script` in a user and mount namespace of its own, where it mounts a small
/// file system at `$1`; `$2` is aapi-host, `$3` the test plugin, `$4` `tree`. Its stdout and
/// stderr, or `None` (and a note) where namespaces or mounts are not allowed.
fn on_a_small_store(dir: &Path, script: &str, tree: &Path) -> Option<(String, String)> {
    let small = dir.join("small");
    std::fs::create_dir(&small).unwrap();
    let out = std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&small)
        .arg(common::host_bin())
        .arg(good_plugin())
        .arg(tree)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(99) || !stdout.contains("backup=") {
        eprintln!("skipped: unshare cannot mount a file system here: {stderr}");
        return None;
    }
    Some((stdout, stderr))
}

/// A backup that fills the store fails with its image recorded as failed, although the reason
/// itself finds no room: `delete --incomplete` then frees the space.
#[test]
fn a_backup_that_fills_the_store_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write_file(&tree.join("big"), &vec![7u8; 3 << 20]);
    let script = r#"mount -t tmpfs -o size=1M tmpfs "$1" || exit 99
        h="$2"; s="$1/store"
        "$h" --store "$s" backup --plugin "$3" --policy p1 --select "$4"; echo "backup=$?"
        "$h" --store "$s" list
        "$h" --store "$s" delete --incomplete; echo "delete=$?"
        echo "left=$(ls "$s/images" | wc -l)"
        cat /dev/zero > "$1/fill" 2>/dev/null
        "$h" --store "$s" backup --plugin "$3" --policy p1 --select "$4"; echo "full=$?"
        echo "after=$(ls "$s/images" | wc -l)""#;
    let Some((stdout, stderr)) = on_a_small_store(dir.path(), script, &tree) else {
        return;
    };
    assert!(stdout.contains("backup=1"), "{stdout}{stderr}");
    assert!(
        stdout.contains(aapi_host::store::UNRECORDED_REASON),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("delete=0"), "{stdout}{stderr}");
    assert!(stdout.contains("left=0"), "{stdout}{stderr}");
    // A store full before the job file is written: no image directory is left behind.
    assert!(stdout.contains("full=1"), "{stdout}{stderr}");
    assert!(stdout.contains("after=0"), "{stdout}{stderr}");
}

/// A discovery that succeeded on a store that is full by then: the job file cannot record the
/// snapshot id, so the postprocess cleans the snapshot up with the id in hand, and no image stays
/// to be mistaken for one whose discovery was killed.
#[test]
fn a_snapshot_id_that_cannot_be_recorded_is_cleaned_up_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree, 3, PAST);
    let script = r#"mount -t tmpfs -o size=1M tmpfs "$1" || exit 99
        h="$2"; s="$1/store"
        AAPI_TEST_FILL_AFTER_DISCOVERY=1 "$h" --verbose --store "$s" backup --plugin "$3" --policy p1 --select "$4"
        echo "backup=$?"
        echo "left=$(ls "$s/images" | wc -l)""#;
    let Some((stdout, stderr)) = on_a_small_store(dir.path(), script, &tree) else {
        return;
    };
    assert!(stdout.contains("backup=1"), "{stdout}{stderr}");
    assert!(
        stderr.contains("its snapshot id could not be recorded: its snapshot was cleaned up")
            && stderr.contains("postprocess ran"),
        "{stderr}"
    );
    assert!(stdout.contains("left=0"), "{stdout}{stderr}");
}

/// A restore claims the workload type the image was made with, as it loads its plugin.
#[test]
fn a_restore_claims_the_workload_type_of_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store) = small_tree(dir.path());
    let plugin = common::test_plugin("aapi_testplugin_db", &["TEST_WORKLOAD_TYPES=\"db\""]);
    let full = backup(&store, &plugin, &tree, &["--workload-type", "db"]);
    backup_restores_as(&store, &full, &dir.path().join("alt"), &tree);
}

/// An exception that leaves an entry point (C++ `throw`) ends the worker, reported with the
/// function it left: nothing else runs in the plugin while the exception unwinds.
#[test]
fn an_exception_out_of_a_plugin_call_names_the_function() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store) = small_tree(dir.path());
    let throw = [("AAPI_TEST_FAULT", "throw:aapi_open_object")];
    let out = backup_env(&store, &good_plugin(), &tree, &[], &throw);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("crash(SIGABRT) in aapi_open_object"),
        "{}",
        out.stderr
    );
}

/// A plugin that closes descriptors it did not open (daemon-style code) cuts the worker off its
/// supervisor: reported so, after the call that did it.
#[test]
fn a_plugin_that_closes_the_workers_pipes_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store) = small_tree(dir.path());
    for (fault, function) in [
        ("closefds:aapi_pgn_init", "aapi_pgn_init"),
        ("ctlnull:aapi_open_server", "aapi_open_server"),
    ] {
        let out = backup_env(
            &store,
            &good_plugin(),
            &tree,
            &[],
            &[("AAPI_TEST_FAULT", fault)],
        );
        assert_eq!(out.code, 1, "{fault}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "lost a pipe to the supervisor, found after {function} was called"
            )),
            "{fault}: {}",
            out.stderr
        );
    }
}

/// What a plugin prints goes to stderr: stdout holds only the results (`--json`, an id).
#[test]
fn what_the_plugin_prints_does_not_mix_with_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store) = small_tree(dir.path());
    let print = [("AAPI_TEST_FAULT", "print:aapi_open_object")];
    let plugin = good_plugin();
    let out = backup_env(&store, &plugin, &tree, &[], &print);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert!(
        out.stderr.contains("printed in aapi_open_object"),
        "{}",
        out.stderr
    );
    let discover = [
        "discover",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "p2",
        "--select",
        tree.to_str().unwrap(),
    ];
    let out = host(
        &store,
        &discover,
        &[("AAPI_TEST_FAULT", "print:aapi_discovery")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.trim().starts_with("p2-"),
        "the image id alone: {}",
        out.stdout
    );
}

/// The backup `run` succeeded, and its image restores under `alt` as `tree` is now.
fn backup_restores_as(store: &Path, run: &Run, alt: &Path, tree: &Path) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let image = run.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    restores_as(store, &image, alt, tree);
}

/// A tree of three files (and its directories and link) under `dir`, and where its store goes.
fn small_tree(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let tree = dir.join("tree");
    make_tree(&tree, 3, PAST);
    (tree, dir.join("store"))
}

/// `mv a t; mv b a; mv t b`: a release switch.
fn swap_dirs(a: &Path, b: &Path) {
    let t = a.with_extension("swap");
    std::fs::rename(a, &t).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&t, b).unwrap();
}

/// Two directories swapped since the last backup (`mv a t; mv b a; mv t b`, a release switch):
/// their objects keep their own times, so the plugin lists them as unchanged at paths the base
/// holds, but other objects are there now: a file of another size, a directory where a file
/// was, a file of the same size and times (reproducible builds, one tick of the clock) that only
/// its id tells apart. The child job reads them in full, and the
/// incremental restores what was on disk.
#[test]
fn directories_swapped_since_the_base_are_backed_up_by_what_they_hold_now() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    write_file(&tree.join("a/conf"), b"version=1");
    write_file(&tree.join("a/x"), b"a file");
    write_file(&tree.join("a/same"), b"release 1");
    // Written within one tick of the file system's clock, as a and b/same usually are: their
    // times are the same too, and only their ids (inode numbers) tell them apart.
    write_file(&tree.join("b/conf"), b"version=2 with a longer line");
    write_file(&tree.join("b/x/y"), b"in a directory");
    write_file(&tree.join("b/same"), b"release 2");
    touch_all(&tree, PAST);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plugin = good_plugin();
    let full = backup(&store, &plugin, &tree, &[]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    swap_dirs(&tree.join("a"), &tree.join("b"));
    let incr = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    backup_restores_as(&store, &incr, &dir.path().join("alt"), &tree);
}

/// Two directories swapped between a full backup's discovery and its reads (no snapshot), and
/// back before the next incremental: the full holds the other object's bytes at each path, so
/// the incremental must not take them as unchanged.
#[test]
fn objects_swapped_during_a_full_are_read_again_by_the_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    write_file(&tree.join("v1/app"), b"version one");
    write_file(&tree.join("v2/app"), b"version two");
    touch_all(&tree, PAST);
    set_mtime(&tree.join("v2/app"), PAST + 60);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plugin = good_plugin();
    let swap = || swap_dirs(&tree.join("v1"), &tree.join("v2"));
    let id = discover(&store, &plugin, &tree, "h1", &[]);
    swap();
    for step in [
        vec!["child", "--image", &id, "--host", "h1"],
        vec!["finalize", "--image", &id],
    ] {
        let r = host(&store, &step, &[]);
        assert_eq!(r.code, 0, "{step:?}: {}", r.stderr);
    }
    swap();
    let args = [
        "backup",
        "--json",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "p",
        "--schedule",
        "incr",
        "--select",
        tree.to_str().unwrap(),
    ];
    let incr = host(&store, &args, &[]);
    backup_restores_as(&store, &incr, &dir.path().join("alt"), &tree);
}

/// With a snapshot of the changed objects only (the sample's `copy`), an object that a swap of
/// directories moved to a path the base holds is in no snapshot: the child job reads it where it
/// is, and the incremental is whole, not partial.
#[test]
fn a_swapped_object_outside_the_snapshot_is_read_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    let snaps = dir.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    std::fs::set_permissions(&snaps, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    write_file(&tree.join("v1/app"), b"version one");
    write_file(&tree.join("v2/app"), b"version two");
    touch_all(&tree, PAST);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dir_prop = format!("files.snapshot_dir={}", snaps.display());
    let props = ["--property", "files.snapshot=copy", "--property", &dir_prop];
    let plugin = rust_sample();
    let full = backup(&store, &plugin, &tree, &props);
    assert_eq!(full.code, 0, "{}", full.stderr);
    swap_dirs(&tree.join("v1"), &tree.join("v2"));
    let mut args = vec!["--schedule", "incr"];
    args.extend(props);
    let incr = backup(&store, &plugin, &tree, &args);
    backup_restores_as(&store, &incr, &dir.path().join("alt"), &tree);
}

/// A tree of `files` files (ctimes before the backup's start) under `dir`, and its full backup
/// with the test plugin: the tree, the store and the image id.
fn full_backup(dir: &Path, files: usize) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let tree = dir.join("tree");
    let store = dir.join("store");
    make_tree(&tree, files, PAST);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let full = backup(&store, &good_plugin(), &tree, &[]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    // A new store has no state.json yet: nothing to warn about.
    assert!(!full.stderr.contains("warning"), "{}", full.stderr);
    let id = full.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    (tree, store, id)
}

/// A base whose data is gone cannot lend it to the next incremental: the objects it held are
/// read again, so the new image is whole although the one before it is damaged.
#[test]
fn an_incremental_reads_again_what_its_base_can_no_longer_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store, full_id) = full_backup(dir.path(), 3);
    let plugin = good_plugin();
    let first = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // The full image is lost.
    std::fs::rename(store.join("images").join(&full_id), dir.path().join("lost")).unwrap();
    let second = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let image = second.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    restores_as(&store, &image, &dir.path().join("alt"), &tree);
}

/// A base whose catalog is damaged holds nothing the child jobs can use: they read every
/// object, and the incremental completes without reading that catalog.
#[test]
fn an_incremental_of_a_base_with_a_damaged_catalog_backs_up_everything_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store, full_id) = full_backup(dir.path(), 3);
    let plugin = good_plugin();
    let catalog = store.join("images").join(&full_id).join("catalog");
    let mut bytes = std::fs::read(&catalog).unwrap();
    bytes[50] ^= 0xff;
    std::fs::write(&catalog, bytes).unwrap();
    let incr = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(incr.code, 0, "{}", incr.stderr);
    let image = incr.json()["manifest"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    restores_as(&store, &image, &dir.path().join("alt"), &tree);
}

/// A split job between its steps holds no snapshot with the test plugin, yet its child jobs may
/// still be queued: a cleanup from cron keeps it. `--abandon` gives it up even when every child
/// job completed (it does not complete the image), and then the cleanup removes it.
#[test]
fn a_cleanup_keeps_an_unfinished_split_job_and_abandon_always_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    let image = discover(&store, &good_plugin(), &tree, "h1", &[]);
    let d = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(d.json()["kept_unfinished"], serde_json::json!([image]));
    assert_eq!(d.json()["deleted"], serde_json::json!([]));
    let c = host(&store, &["child", "--image", &image, "--host", "h1"], &[]);
    assert_eq!(c.code, 0, "{}", c.stderr);
    let f = host(&store, &["finalize", "--image", &image, "--abandon"], &[]);
    assert_eq!(f.code, 1, "{}", f.stderr);
    assert!(f.stderr.contains("given up"), "{}", f.stderr);
    let l = host(&store, &["list", "--json"], &[]).json();
    assert_eq!(l["images"][0]["state"], "incomplete", "{l}");
    let d = host(&store, &["delete", "--incomplete", "--json"], &[]);
    assert_eq!(
        d.json()["deleted"],
        serde_json::json!([image]),
        "{}",
        d.stdout
    );
    // An image that does not exist is bad input to every step.
    let c = host(&store, &["child", "--image", &image, "--host", "h1"], &[]);
    assert_eq!(c.code, 2, "{}", c.stderr);
    assert!(c.stderr.contains("no such image"), "{}", c.stderr);
}

/// `restore --policy` passes a damaged image over, and says so when it is newer than the one it
/// restores.
#[test]
fn restore_by_policy_says_when_it_passes_a_damaged_newer_image_over() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 1, PAST);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let b = backup(&store, &good_plugin(), &tree, &[]);
        assert_eq!(b.code, 0, "{}", b.stderr);
        ids.push(b.json()["manifest"]["image"].as_str().unwrap().to_string());
    }
    std::fs::write(
        store.join("images").join(&ids[1]).join("manifest.json"),
        "{garbage",
    )
    .unwrap();
    let r = restore(&store, &["--policy", "p1", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["image"], ids[0].as_str(), "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("image {} of policy", ids[1])) && r.stderr.contains("damaged"),
        "{}",
        r.stderr
    );
}

/// A split job finalized after a newer backup of its policy completed does not move the policy's
/// last backup back to its older image: the next incremental builds on the newest one.
#[test]
fn a_split_job_finalized_late_leaves_the_newer_backup_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    let plugin = good_plugin();
    let older = discover(&store, &plugin, &tree, "h1", &[]);
    // A later start, in whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let backup_p = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "--json",
            "--plugin",
            plugin.to_str().unwrap(),
            "--policy",
            "p",
            "--select",
            tree.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let r = host(&store, &args, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()["manifest"]["image"].as_str().unwrap().to_string()
    };
    let newer = backup_p(&[]);
    for args in [
        vec!["child", "-q", "--image", older.as_str(), "--host", "h1"],
        vec!["finalize", "-q", "--image", older.as_str()],
    ] {
        let r = host(&store, &args, &[]);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("state.json")).unwrap()).unwrap();
    let p = &state["policies"]["p"];
    assert_eq!(p["last_backup"][1], newer.as_str(), "{state}");
    assert_eq!(p["last_full"][1], newer.as_str(), "{state}");
    let incr = backup_p(&["--schedule", "incr"]);
    let m = host(&store, &["show", &incr, "--json"], &[]).json();
    assert_eq!(m["manifest"]["base"], newer.as_str(), "{m}");
}

/// The `list` example in docs/host.md shows image ids, schedules and columns as `list` prints
/// them for full, incr and cinc backups.
#[test]
fn the_documented_list_example_is_what_list_prints() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 2, PAST);
    let plugin = rust_sample();
    for schedule in ["full", "incr", "cinc"] {
        let r = host(
            &store,
            &[
                "backup",
                "-q",
                "--plugin",
                plugin.to_str().unwrap(),
                "--policy",
                "home",
                "--select",
                tree.to_str().unwrap(),
                "--schedule",
                schedule,
            ],
            &[],
        );
        assert_eq!(r.code, 0, "{schedule}: {}", r.stderr);
    }
    let r = host(&store, &["list"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut written = std::collections::BTreeSet::new();
    for line in r.stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f[0].ends_with(&format!("-{}", f[2])), "{line}");
        written.insert(f[2].to_string());
    }
    assert_eq!(written.len(), 3, "{}", r.stdout);

    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/host.md"))
            .unwrap();
    let at = doc.find("One line per image").expect("the list section");
    let block = &doc[at..];
    let block = &block[block.find("```text\n").unwrap() + 8..];
    let block = &block[..block.find("```").unwrap()];
    let rows: Vec<Vec<&str>> = block
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() >= 2, "{block}");
    let wi = rows.iter().map(|f| f[0].len()).fold(24, usize::max);
    let ws = rows.iter().map(|f| f[2].len()).fold(4, usize::max);
    for (line, f) in block.lines().zip(&rows) {
        assert!(
            written.contains(f[2]),
            "{line}: the host writes {written:?}"
        );
        assert!(f[0].ends_with(&format!("-{}", f[2])), "{line}");
        let rest = line.split_once(" UTC  ").expect("a start time").1;
        let printed = format!(
            "{:<wi$} {:<10} {:<ws$} {} {} {}  {rest}",
            f[0], f[1], f[2], f[3], f[4], f[5]
        );
        assert_eq!(line, printed, "laid out as `list` prints it");
    }
}

/// A damaged or lost `state.json` does not stop backups: the last backup times come from the
/// complete images, so an incremental still has its base, and the state is saved whole again.
#[test]
fn a_damaged_host_state_is_rebuilt_from_the_images() {
    for lost in [false, true] {
        host_state_is_rebuilt(lost);
    }
}

fn host_state_is_rebuilt(lost: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (tree, store, full_id) = full_backup(dir.path(), 2);
    let plugin = good_plugin();
    if lost {
        std::fs::remove_file(store.join("state.json")).unwrap();
    } else {
        std::fs::write(store.join("state.json"), "{bad").unwrap();
    }
    let incr = backup(&store, &plugin, &tree, &["--schedule", "incr"]);
    assert_eq!(incr.code, 0, "{}", incr.stderr);
    assert_eq!(
        incr.stderr
            .matches("taken from the complete images")
            .count(),
        1,
        "{}",
        incr.stderr
    );
    assert_eq!(incr.json()["manifest"]["base"], full_id.as_str());
    let text = std::fs::read_to_string(store.join("state.json")).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text} {}", incr.stdout));
    assert!(
        state["policies"]["p1"].is_object(),
        "{state} {}",
        incr.stdout
    );
}

/// `verify` counts the bytes it read: none from a stream that is gone.
#[test]
fn verify_counts_only_the_bytes_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_tree, store, id) = full_backup(dir.path(), 3);
    std::fs::remove_file(store.join("images").join(&id).join("stream-0.data")).unwrap();
    let v = host(&store, &["--json", "verify", &id], &[]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    let json: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(json["report"]["bytes"], 0, "{json}");
}

/// A restore that meets an existing object tells how to replace it only when it was not asked
/// to already; an alternate root with `..` is refused before anything runs, dry run included.
#[test]
fn restore_messages_fit_the_options_given() {
    let dir = tempfile::tempdir().unwrap();
    let (_tree, store, id) = full_backup(dir.path(), 3);
    let alt = dir.path().join("alt");
    std::fs::create_dir(&alt).unwrap();
    let eexist = [("AAPI_TEST_FAULT", "fail:aapi_create_object:6")];
    let alt_s = alt.to_str().unwrap();
    let r = host(&store, &["restore", &id, "--alt-root", alt_s], &eexist);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pass --overwrite"), "{}", r.stderr);
    let args = ["restore", &id, "--alt-root", alt_s, "--overwrite"];
    let r = host(&store, &args, &eexist);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("pass --overwrite"), "{}", r.stderr);
    let dotdot = format!("{alt_s}/../alt");
    for dry in [true, false] {
        let mut args = vec!["restore", &id, "--alt-root", &dotdot];
        if dry {
            args.push("--dry-run");
        }
        let r = host(&store, &args, &[]);
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("give it as {alt_s}")),
            "{}",
            r.stderr
        );
    }
    // Also when it does not exist yet: not a mkdir hint that leads to the same refusal.
    let missing = format!("{alt_s}/new/../other");
    let r = host(&store, &["restore", &id, "--alt-root", &missing], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("give it as {alt_s}/other")),
        "{}",
        r.stderr
    );
}
