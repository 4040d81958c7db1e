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
