//! Installation: atomic replacement, ownership, drift detection, and failures that leave the
//! existing installation byte-identical.

mod common;

use aapi_validator::Code::{self, *};
use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn install(pkg: &Path, dest: &Path) -> std::process::Output {
    run(&[&"install", &pkg, &"--dest", &dest])
}

fn installed_codes(dest: &Path) -> Vec<Code> {
    let o = run(&[&"verify", &"--installed", &"--json", &dest]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut codes: Vec<Code> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| *Code::ALL.iter().find(|c| c.as_str() == f["code"]).unwrap())
        .collect();
    codes.sort();
    assert_eq!(o.status.code(), Some(if codes.is_empty() { 0 } else { 1 }));
    codes
}

#[test]
fn install_replace_and_detect_drift() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");

    let v1 = plugin_dir(Variant::Good);
    fs::write(v1.path().join("old-only.txt"), "gone in 1.1\n").unwrap();
    let pkg1 = w.path().join("demo-1.0.aapkg");
    assert_eq!(
        run(&[&"pack", &v1.path(), &"-o", &pkg1]).status.code(),
        Some(0)
    );
    let o = install(&pkg1, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("installed demo 1.0.0"),
        "{}",
        stdout(&o)
    );
    assert_eq!(names(&plugins), ["demo"], "no temporary directory is left");
    assert_eq!(fs::read(dest.join(ENTRY)).unwrap(), plugin(Variant::Good));
    assert_eq!(
        fs::read_link(dest.join("lib/libdemo.so.1")).unwrap(),
        Path::new("libdemo.so")
    );
    assert_eq!(
        fs::metadata(dest.join(ENTRY)).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o755);
    if is_root() {
        for (path, _) in snapshot(&dest) {
            let md = fs::symlink_metadata(dest.join(&path)).unwrap();
            assert_eq!(
                (md.uid(), md.gid()),
                (0, 0),
                "{} is root-owned",
                path.display()
            );
            if !md.file_type().is_symlink() {
                assert_eq!(
                    md.mode() & 0o022,
                    0,
                    "{} is not group/world writable",
                    path.display()
                );
            }
        }
    }
    assert_eq!(installed_codes(&dest), vec![]);

    // 1.1 replaces 1.0 whole: files only 1.0 had are gone.
    let v2 = plugin_dir(Variant::Good);
    fs::write(v2.path().join("README"), "demo plugin 1.1\n").unwrap();
    fs::write(v2.path().join("NEWS"), "1.1: faster\n").unwrap();
    let pkg2 = w.path().join("demo-1.1.aapkg");
    let o = run(&[
        &"pack",
        &v2.path(),
        &"-o",
        &pkg2,
        &"--plugin-version",
        &"1.1.0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = install(&pkg2, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("replaced the earlier installation"),
        "{}",
        stdout(&o)
    );
    assert_eq!(names(&plugins), ["demo"]);
    assert!(!dest.join("old-only.txt").exists());
    assert_eq!(
        fs::read_to_string(dest.join("README")).unwrap(),
        "demo plugin 1.1\n"
    );
    assert_eq!(installed_codes(&dest), vec![]);

    // Drift: every kind of change is named.
    fs::write(dest.join("README"), "demo plugin 6.6\n").unwrap(); // same size
    fs::set_permissions(dest.join(ENTRY), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dest.join("lib/preload.so"), "x").unwrap();
    fs::remove_file(dest.join("NEWS")).unwrap();
    fs::remove_file(dest.join("lib/libdemo.so.1")).unwrap();
    std::os::unix::fs::symlink("../README", dest.join("lib/libdemo.so.1")).unwrap();
    let mut want = vec![
        FILE_DIGEST,
        FILE_MODE,
        FILE_EXTRA,
        FILE_MISSING,
        SYMLINK_TARGET,
    ];
    if is_root() {
        std::os::unix::fs::chown(dest.join("aapi-plugin.json"), Some(1234), Some(1234)).unwrap();
        want.push(FILE_OWNER);
    }
    want.sort();
    assert_eq!(installed_codes(&dest), want);
    // World-writable after install.
    fs::set_permissions(dest.join("lib"), fs::Permissions::from_mode(0o777)).unwrap();
    assert!(installed_codes(&dest).contains(&MODE_WRITABLE));
}

#[test]
fn a_failed_install_leaves_the_installation_byte_identical() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v1 = plugin_dir(Variant::Good);
    let pkg1 = w.path().join("v1.aapkg");
    assert_eq!(
        run(&[&"pack", &v1.path(), &"-o", &pkg1]).status.code(),
        Some(0)
    );
    assert_eq!(install(&pkg1, &dest).status.code(), Some(0));
    let before = snapshot(&plugins);

    // A valid package whose extraction fails half-way: the process may not write files
    // larger than 1 MiB (as on a full disk), and the package holds a 3 MiB file.
    let v2 = plugin_dir(Variant::Good);
    fs::write(v2.path().join("data.bin"), vec![0x5a; 3 << 20]).unwrap();
    let pkg2 = w.path().join("v2.aapkg");
    assert_eq!(
        run(&[
            &"pack",
            &v2.path(),
            &"-o",
            &pkg2,
            &"--plugin-version",
            &"2.0"
        ])
        .status
        .code(),
        Some(0)
    );
    assert_eq!(run(&[&"verify", &pkg2]).status.code(), Some(0));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aapi-validator"));
    cmd.arg("install").arg(&pkg2).arg("--dest").arg(&dest);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("data.bin"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        snapshot(&plugins) == before,
        "the installation and its parent are unchanged"
    );
    assert_eq!(names(&plugins), ["demo"], "no temporary directory is left");

    // Without the limit the same package installs.
    assert_eq!(install(&pkg2, &dest).status.code(), Some(0));
    assert_eq!(fs::read(dest.join("data.bin")).unwrap().len(), 3 << 20);
}

#[test]
fn refuses_destinations_that_are_not_installations() {
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("good.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let busy = w.path().join("etc");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let file = w.path().join("file");
    fs::write(&file, "x").unwrap();
    let before = snapshot(w.path());
    for dest in [&busy, &file, &w.path().join("no/such/parent")] {
        let o = install(&pkg, dest);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            dest.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(snapshot(w.path()) == before);
    // An empty directory is fine.
    let empty = w.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(install(&pkg, &empty).status.code(), Some(0));
    assert!(empty.join(ENTRY).is_file());
}

#[test]
fn archive_order_does_not_matter() {
    // A file before its directory's entry: parents are made as needed, with the manifest's
    // modes in the end.
    let entries = payload(plugin(Variant::Good));
    let manifest = manifest_of(&entries);
    let mut r = Raw::package(&manifest, &[]);
    for i in [2, 3, 0, 1] {
        r.entry(&entries[i]);
    }
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("p.aapkg");
    fs::write(&pkg, r.finish()).unwrap();
    let dest = w.path().join("demo");
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        fs::metadata(dest.join("lib")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(installed_codes(&dest), vec![]);
}

#[test]
fn install_json_says_whether_it_installed() {
    let w = tempfile::tempdir().unwrap();
    let good = w.path().join("good.aapkg");
    fs::write(&good, good_package()).unwrap();
    let bad = w.path().join("bad.aapkg");
    fs::write(&bad, &good_package()[..4000]).unwrap();
    let dest = w.path().join("demo");
    let o = run(&[&"install", &"--json", &bad, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["installed"].clone(), v["valid"].clone()),
        (false.into(), false.into())
    );
    assert!(!dest.exists());
    let o = run(&[&"install", &"--json", &good, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["installed"].clone(), v["valid"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(v["manifest"]["entry"], ENTRY);
}
