//! Backups and restores with the sample plugins through the `aapi-host` command line: several
//! stream counts, full then incremental, restores of a whole image, a chain, one object and
//! under an alternate root, comparing bytes, modes and times.

mod common;

use common::*;
use std::path::Path;

const PAST: i64 = 1_600_000_000;

fn backup(store: &Path, plugin: &Path, tree: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "backup",
        "--json",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "samples",
        "--select",
        tree.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = host(store, &args, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.json()["manifest"].clone()
}

fn restore_to(store: &Path, image: &str, alt: &Path, extra: &[&str]) -> serde_json::Value {
    std::fs::create_dir_all(alt).unwrap();
    let mut args = vec![
        "restore",
        "--json",
        image,
        "--alt-root",
        alt.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = host(store, &args, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r.json()["report"].clone()
}

fn under(alt: &Path, tree: &Path) -> std::path::PathBuf {
    alt.join(tree.strip_prefix("/").unwrap())
}

fn round_trip(plugin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 16, PAST);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let original = snapshot(&tree);

    // Full backups at 1 and 3 streams restore the same tree.
    let full1 = backup(&store, plugin, &tree, &["--streams", "1"]);
    let full3 = backup(&store, plugin, &tree, &["--streams", "3"]);
    assert_eq!(full3["streams"].as_array().unwrap().len(), 3);
    assert_eq!(full1["objects"], full3["objects"]);
    for (i, m) in [&full1, &full3].iter().enumerate() {
        let alt = dir.path().join(format!("alt-full-{i}"));
        restore_to(&store, m["image"].as_str().unwrap(), &alt, &[]);
        assert_same(&snapshot(&under(&alt, &tree)), &original);
    }

    // Change, add, delete; then an incremental at 2 streams.
    std::fs::write(tree.join("sub/f2.bin"), b"changed").unwrap();
    std::fs::write(tree.join("sub/deeper/new.txt"), b"new").unwrap();
    std::fs::remove_file(tree.join("sub/f4.bin")).unwrap();
    set_mtime(&tree.join("sub/f2.bin"), PAST + 10);
    set_mtime(&tree.join("sub/deeper/new.txt"), PAST + 20);
    set_mtime(&tree.join("sub/deeper"), PAST);
    set_mtime(&tree.join("sub"), PAST);
    let changed = snapshot(&tree);
    let incr = backup(
        &store,
        plugin,
        &tree,
        &["--streams", "2", "--schedule", "incr"],
    );
    assert_eq!(incr["base"], full3["image"]);
    assert!(
        incr["bytes"].as_u64().unwrap() < 100,
        "only changed bytes are stored: {incr}"
    );

    // The chain restores the tree at the incremental's time: changes in, deleted file out.
    let alt = dir.path().join("alt-chain");
    restore_to(&store, incr["image"].as_str().unwrap(), &alt, &[]);
    assert_same(&snapshot(&under(&alt, &tree)), &changed);

    // A cumulative incremental relative to the last full has the same view.
    let cinc = backup(&store, plugin, &tree, &["--schedule", "cinc"]);
    let alt = dir.path().join("alt-cinc");
    restore_to(&store, cinc["image"].as_str().unwrap(), &alt, &[]);
    assert_same(&snapshot(&under(&alt, &tree)), &changed);

    // One object, straight from its range.
    let one = tree.join("sub/deeper/f3.bin");
    let alt = dir.path().join("alt-one");
    let report = restore_to(
        &store,
        incr["image"].as_str().unwrap(),
        &alt,
        &["--path", one.to_str().unwrap()],
    );
    assert_eq!(report["objects"], 1);
    assert_eq!(
        std::fs::read(under(&alt, &one)).unwrap(),
        std::fs::read(&one).unwrap()
    );
    assert!(!under(&alt, &tree.join("sub/f0.bin")).exists());

    for m in [&full1, &full3, &incr, &cinc] {
        let v = host(&store, &["verify", m["image"].as_str().unwrap()], &[]);
        assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    }
}

#[test]
fn rust_sample_round_trip() {
    round_trip(&rust_sample());
}

#[test]
fn c_sample_round_trip() {
    round_trip(Path::new(aapi_sample_plugin_c::PLUGIN_PATH));
}

#[test]
fn direct_stream_io_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let store = dir.path().join("store");
    make_tree(&tree, 24, PAST);
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 4321)
        .map(|i| (i * 7 + i / 4099) as u8)
        .collect();
    write_file(&tree.join("sub/big.bin"), &big);
    touch_all(&tree, PAST);
    let original = snapshot(&tree);
    let plugin = rust_sample();
    let args = [
        "backup",
        "--json",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "direct",
        "--select",
        tree.to_str().unwrap(),
        "--streams",
        "2",
    ];

    // An unknown mode is refused before anything runs.
    let r = host(&store, &args, &[("AAPI_STREAM_IO", "fast")]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("\"buffered\" or \"direct\""),
        "{}",
        r.stderr
    );

    let r = host(&store, &args, &[("AAPI_STREAM_IO", "direct")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let image = r.json()["manifest"]["image"].as_str().unwrap().to_string();
    let v = host(&store, &["verify", &image], &[]);
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    let alt = dir.path().join("alt");
    restore_to(&store, &image, &alt, &[]);
    assert_same(&snapshot(&under(&alt, &tree)), &original);
}
