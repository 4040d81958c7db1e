//! Installation: atomic replacement, ownership, drift detection, failures that leave the
//! existing installation byte-identical, and what a user without permission or a full or
//! read-only file system is told.

mod common;

use aapi_validator::Code::{self, *};
use common::*;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// Install, in a process that may not write files larger than 1 MiB (as on a full disk).
fn install_small_files_only(pkg: &Path, dest: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aapi-validator"));
    cmd.arg("install").arg(pkg).arg("--dest").arg(dest);
    // SAFETY: only an async-signal-safe call (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
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
    cmd.output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A package of the demo plugin at `version` (its README says the version), written into
/// `at`; `big` adds a 3 MiB file.
fn package(at: &Path, version: &str, big: bool) -> PathBuf {
    let d = plugin_dir(Variant::Good);
    fs::write(d.path().join("README"), format!("demo plugin {version}\n")).unwrap();
    if big {
        fs::write(d.path().join("data.bin"), vec![0x5a; 3 << 20]).unwrap();
    }
    let pkg = at.join(format!("demo-{version}.aapkg"));
    let o = run(&[
        &"pack",
        &d.path(),
        &"-o",
        &pkg,
        &"--plugin-version",
        &version,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    pkg
}

/// The lock file of installs into `plugins/demo`.
const LOCK: &str = ".demo.aapi-install.lock";

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
    assert_eq!(
        names(&plugins),
        [LOCK, "demo"],
        "no temporary directory is left"
    );
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
        stdout(&o).ends_with(&format!(
            " into {} (replaced demo 1.0.0 (Example Corp.))\n",
            dest.display()
        )),
        "{}",
        stdout(&o)
    );
    assert_eq!(names(&plugins), [LOCK, "demo"]);
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

/// Give the file `path` the capability CAP_NET_RAW, permitted and effective, as
/// `setcap cap_net_raw+ep PATH` does (a `security.capability` attribute, revision 2).
fn set_capability(path: &Path) {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    const CAP_NET_RAW: u32 = 13;
    let mut value = Vec::new();
    for word in [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        1 << CAP_NET_RAW, // permitted, low word
        0,                // inheritable, low word
        0,                // permitted, high word
        0,                // inheritable, high word
    ] {
        value.extend_from_slice(&word.to_le_bytes());
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated names and a buffer of `value.len()` bytes, all alive for the call.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

#[test]
fn an_installed_file_with_a_capability_or_another_name_is_refused() {
    let w = tempfile::tempdir().unwrap();
    let pkg = package(w.path(), "1.0.0", false);
    let dest = w.path().join("demo");
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(installed_codes(&dest), vec![]);

    // A second name outside the installation: whoever may write there changes the file.
    let outside = w.path().join("readme.copy");
    fs::hard_link(dest.join("README"), &outside).unwrap();
    let o = run(&[&"verify", &"--installed", &dest]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(
            "ENTRY_TYPE              README: a hard link: the file has 2 names, and another name, perhaps outside the installation, changes it too; reinstall the package to give it a file of its own\n"
        ),
        "{}",
        stdout(&o)
    );
    // The manifest is a file of the installation too.
    let manifest_copy = w.path().join("manifest.copy");
    fs::hard_link(dest.join(".aapi/manifest.json"), &manifest_copy).unwrap();
    assert_eq!(installed_codes(&dest), vec![ENTRY_TYPE, ENTRY_TYPE]);
    // Without --installed the tree is an unpacked package, whose files are the unpacker's.
    let o = run(&[&"verify", &dest]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    fs::remove_file(&outside).unwrap();
    fs::remove_file(&manifest_copy).unwrap();
    assert_eq!(installed_codes(&dest), vec![]);

    // A file capability (setting one takes root's CAP_SETFCAP).
    if is_root() {
        set_capability(&dest.join(ENTRY));
        let o = run(&[&"verify", &"--installed", &"--json", &dest]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["findings"],
            serde_json::json!([{
                "code": "FILE_CAPABILITY",
                "path": ENTRY,
                "message": "has a file capability (the security.capability attribute, `getcap` shows it): running it grants privileges, as a setuid bit would; remove it (`setcap -r`) or reinstall the package"
            }]),
            "{v}"
        );
        assert_eq!(run(&[&"verify", &dest]).status.code(), Some(0));
        // Reinstalling the same version repairs it.
        let o = install(&pkg, &dest);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        assert_eq!(installed_codes(&dest), vec![]);
    }
}

#[test]
fn a_failed_install_leaves_the_installation_byte_identical() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let pkg1 = package(w.path(), "1.0.0", false);
    assert_eq!(install(&pkg1, &dest).status.code(), Some(0));
    let before = snapshot(&plugins);

    // A valid package whose extraction fails half-way: the process may not write files
    // larger than 1 MiB (as on a full disk), and the package holds a 3 MiB file.
    let pkg2 = package(w.path(), "2.0", true);
    assert_eq!(run(&[&"verify", &pkg2]).status.code(), Some(0));
    let o = install_small_files_only(&pkg2, &dest);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: cannot write data.bin into the new installation of {d}: File too large (os error 27); nothing was installed and {d} is as it was: raise the file size limit (`ulimit -f`), then run the install again\n",
            d = dest.display()
        )
    );
    assert!(
        snapshot(&plugins) == before,
        "the installation and its parent are unchanged"
    );
    assert_eq!(
        names(&plugins),
        [LOCK, "demo"],
        "no temporary directory is left"
    );

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
    let link = w.path().join("link");
    std::os::unix::fs::symlink(&busy, &link).unwrap();
    let before = snapshot(w.path());
    let cases = [
        (
            &busy,
            format!(
                "--dest {} is a non-empty directory without .aapi/manifest.json, not a plugin installation; nothing was done, to keep its files: empty it or choose another --dest",
                busy.display()
            ),
        ),
        (
            &file,
            format!(
                "--dest {} exists and is not a directory; nothing was done: move it away or choose another --dest",
                file.display()
            ),
        ),
        (
            &link,
            format!(
                "--dest {} is a symbolic link; an install never follows or replaces one, so nothing was done: give the directory it points to as --dest, or remove the link",
                link.display()
            ),
        ),
    ];
    for (dest, message) in cases {
        let o = install(&pkg, dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("aapi-validator: {message}\n"));
    }
    assert!(snapshot(w.path()) == before);
    // An empty directory is fine.
    let empty = w.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(install(&pkg, &empty).status.code(), Some(0));
    assert!(empty.join(ENTRY).is_file());
}

#[test]
fn a_missing_parent_is_told_apart_from_one_that_is_not_a_directory() {
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("good.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let file = w.path().join("file");
    fs::write(&file, "x").unwrap();
    let before = snapshot(w.path());

    let missing = w.path().join("psf-plugins");
    let dest = missing.join("demo");
    let want = format!(
        "{p}, the parent of --dest {d}, does not exist; create it (mode 0755, owned by root: `install -d -m 0755 -o root -g root {p}`) or choose another --dest",
        p = missing.display(),
        d = dest.display()
    );
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("aapi-validator: {want}\n"));
    let o = run(&[&"install", &"--json", &pkg, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["valid"], &v["error"], &v["installed"]),
        (&serde_json::Value::Null, &want.into(), &false.into())
    );

    // A path through a file does not exist either.
    let dest = file.join("sub/demo");
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "{}, the parent of --dest {}, does not exist; create it",
            file.join("sub").display(),
            dest.display()
        )),
        "{}",
        stderr(&o)
    );

    let dest = file.join("demo");
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: {}, the parent of --dest {}, is not a directory; choose another --dest\n",
            file.display(),
            dest.display()
        )
    );
    assert!(snapshot(w.path()) == before, "nothing was created");

    // Once the parent exists, the same command installs.
    fs::create_dir(&missing).unwrap();
    let o = install(&pkg, &missing.join("demo"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn install_errors_name_the_path_the_cause_and_the_next_step() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let pkg = package(w.path(), "1.0.0", false);

    // A directory where the lock file goes.
    let lock = plugins.join(LOCK);
    fs::create_dir(&lock).unwrap();
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: {} is a directory, so it cannot be the lock file of installs into {}; nothing was done: remove it (aapi-validator makes it as an empty regular file), then run the install again\n",
            lock.display(),
            dest.display()
        )
    );
    assert!(!dest.exists());
    fs::remove_dir(&lock).unwrap();

    // A package directory instead of a package file.
    let tree = plugin_dir(Variant::Good);
    let o = install(tree.path(), &dest);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: {} is a directory, not a package file; pack it first (`aapi-validator pack DIR -o PKG`)\n",
            tree.path().display()
        )
    );

    // The secret key where the public key belongs.
    let base = w.path().join("release");
    assert_eq!(run(&[&"keygen", &"-o", &base]).status.code(), Some(0));
    let secret = w.path().join("release.key");
    let o = run(&[&"install", &pkg, &"--dest", &dest, &"--key", &secret]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: --key {} is a secret key, not a public key; give the BASE.pub file `aapi-validator keygen -o BASE` wrote\n",
            secret.display()
        )
    );
    let o = run(&[&"verify", &w.path().join("missing.aapkg")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).ends_with(": No such file or directory (os error 2); check the path\n"),
        "{}",
        stderr(&o)
    );
    assert!(names(&plugins).is_empty(), "nothing was written");
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
    // The subject is the installation, not the temporary directory it was extracted into.
    assert_eq!(v["subject"], dest.to_str().unwrap());

    // The same when an installation is replaced, in JSON and in text.
    let o = run(&[&"install", &"--json", &good, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["subject"], dest.to_str().unwrap());
    let o = install(&good, &dest);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    assert!(
        text.starts_with("installed demo 1.0.0")
            && text.ends_with(&format!(
                " into {} (replaced demo 1.0.0 (Example Corp.))\n",
                dest.display()
            )),
        "{text}"
    );
    assert!(!text.contains("aapi-install"), "{text}");
}

#[test]
fn leftovers_of_interrupted_installs_are_removed_and_nothing_else() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v1 = package(w.path(), "1.0.0", false);
    assert_eq!(install(&v1, &dest).status.code(), Some(0));

    // What killed installs leave: a half-extracted tree (with a read-only directory), and an
    // earlier installation moved aside by the rename fallback.
    let scratch = plugins.join(".demo.aapi-install-Ab12Cd");
    fs::create_dir_all(scratch.join("lib/sub")).unwrap();
    fs::write(scratch.join("lib/sub/half.so"), "partial").unwrap();
    fs::set_permissions(scratch.join("lib"), fs::Permissions::from_mode(0o555)).unwrap();
    let aside = plugins.join(".demo.aapi-aside-9zY8xW");
    fs::create_dir_all(aside.join(".aapi")).unwrap();
    fs::write(aside.join(".aapi/manifest.json"), "{}").unwrap();

    // Neighbours that only look alike, and one that is not ours.
    let outside = w.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), "keep").unwrap();
    for d in [
        ".demo.aapi-install-Ab12Cd7",
        ".demo.aapi-install-Ab12C",
        ".demo.aapi-install-Ab-2Cd",
        ".demo.aapi-installs-abcdef",
        ".demox.aapi-install-abcdef",
        ".other.aapi-install-abcdef",
        "demo.aapi-install-abcdef",
        ".demo.aapi-aside-Ab12Cd.old",
        "other",
    ] {
        fs::create_dir(plugins.join(d)).unwrap();
        fs::write(plugins.join(d).join("keep"), d).unwrap();
    }
    fs::write(plugins.join(".demo.aapi-install-qwerty"), "a file").unwrap();
    std::os::unix::fs::symlink(&outside, plugins.join(".demo.aapi-install-zzzzzz")).unwrap();
    if is_root() {
        let theirs = plugins.join(".demo.aapi-install-NotOur");
        fs::create_dir(&theirs).unwrap();
        fs::write(theirs.join("keep"), "keep").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    }
    let others = |w: &Path| {
        let mut s = snapshot(w);
        s.retain(|p, _| {
            !p.starts_with("plugins/demo")
                && !p.starts_with("plugins/.demo.aapi-install-Ab12Cd")
                && !p.starts_with("plugins/.demo.aapi-aside-9zY8xW")
        });
        s
    };
    let v2 = package(w.path(), "1.1.0", false);
    let before = others(w.path());

    let o = run(&[&"install", &"--json", &v2, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let removed = |p: &Path| format!("removed {}, left by an interrupted install", p.display());
    assert!(stderr(&o).contains(&removed(&scratch)), "{}", stderr(&o));
    assert!(stderr(&o).contains(&removed(&aside)), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["leftovers"],
        serde_json::json!([
            {"action": "removed", "path": scratch},
            {"action": "removed", "path": aside},
        ])
    );
    assert_eq!(v["installed"], true);
    assert!(!scratch.exists() && !aside.exists());
    assert!(others(w.path()) == before, "everything else is untouched");
    assert_eq!(
        fs::read_to_string(dest.join("README")).unwrap(),
        "demo plugin 1.1.0\n"
    );
    assert_eq!(installed_codes(&dest), vec![]);

    // With nothing left over, nothing is said.
    let o = install(&v2, &dest);
    assert_eq!((o.status.code(), stderr(&o)), (Some(0), String::new()));
}

#[test]
fn a_second_install_into_the_same_destination_is_refused_while_one_runs() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v1 = package(w.path(), "1.0.0", false);
    let v2 = package(w.path(), "2.0.0", false);
    assert_eq!(install(&v1, &dest).status.code(), Some(0));
    let scratch = plugins.join(".demo.aapi-install-Ab12Cd");
    fs::create_dir(&scratch).unwrap();

    // Another install holds the lock (flock(1) on the lock file does the same).
    let lock_path = plugins.join(LOCK);
    let lock = fs::File::open(&lock_path).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    let before = snapshot(&plugins);

    let o = install(&v2, &dest);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: another install into {} is running (it holds the lock {}); nothing was done: try again when it has finished\n",
            dest.display(),
            lock_path.display()
        )
    );
    let o = run(&[&"install", &"--json", &v2, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], serde_json::Value::Null);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("another install into"),
        "{v}"
    );
    assert!(
        snapshot(&plugins) == before,
        "the installation and what is beside it (the running install's scratch) are untouched"
    );
    // Other destinations in the same directory are not held up.
    assert_eq!(install(&v2, &plugins.join("other")).status.code(), Some(0));

    drop(lock);
    let o = install(&v2, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!scratch.exists());
    assert_eq!(
        fs::read_to_string(dest.join("README")).unwrap(),
        "demo plugin 2.0.0\n"
    );
}

#[test]
fn an_installation_left_aside_is_put_back() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v1 = package(w.path(), "1.0.0", false);
    assert_eq!(install(&v1, &dest).status.code(), Some(0));
    let v1_tree = snapshot(&dest);

    // An install killed between the two renames of the fallback: the destination is
    // missing, the earlier installation is aside.
    let aside = plugins.join(".demo.aapi-aside-Q1w2E3");
    fs::rename(&dest, &aside).unwrap();

    // Two candidates: which one was the installation is not guessed.
    let second = plugins.join(".demo.aapi-aside-R4t5Y6");
    fs::create_dir_all(second.join(".aapi")).unwrap();
    fs::write(second.join(".aapi/manifest.json"), "{}").unwrap();
    let before = snapshot(&plugins);
    let v2 = package(w.path(), "2.0.0", true);
    let o = install(&v2, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("left several installations beside it"),
        "{}",
        stderr(&o)
    );
    assert!(snapshot(&plugins) == before);
    fs::remove_dir_all(&second).unwrap();

    // An install that then fails (it may not write files over 1 MiB) has put it back all
    // the same: the same bytes, modes and owners.
    let o = install_small_files_only(&v2, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "put back the earlier installation from {}, where an interrupted install had left it",
            aside.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(snapshot(&dest) == v1_tree);
    assert_eq!(names(&plugins), [LOCK, "demo"]);

    let o = install(&v2, &dest);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(replaced demo 1.0.0 (Example Corp.))"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_user_without_permission_is_told_which_path_and_what_to_do() {
    let w = tempfile::tempdir().unwrap();
    let Some(bin) = unprivileged_bin(w.path()) else {
        return;
    };
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| run_unprivileged(&bin, args).unwrap();
    let denied = "Permission denied (os error 13)";
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let pkg = package(w.path(), "1.0.0", false);
    assert_eq!(install(&pkg, &dest).status.code(), Some(0));
    let before = snapshot(w.path());

    // A package the user may not read.
    let secret = w.path().join("secret.aapkg");
    fs::copy(&pkg, &secret).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let want = format!(
        "cannot read {}: {denied}; run as a user who may read it",
        secret.display()
    );
    let other = plugins.join("other");
    for args in [
        vec![&"verify" as &dyn AsRef<std::ffi::OsStr>, &secret],
        vec![&"install", &secret, &"--dest", &other],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("aapi-validator: {want}\n"));
    }
    let o = run(&[&"verify", &"--json", &secret]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"valid": null, "error": want, "subject": secret, "manifest": null,
            "manifest_sha256": null, "signature": null, "findings": []})
    );
    fs::remove_file(&secret).unwrap();

    // A plugin directory the user may not write to: nothing is written, not even the lock.
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o555)).unwrap();
    let before_plugins = snapshot(&plugins);
    let o = run(&[&"install", &pkg, &"--dest", &other]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: cannot open the install lock file {p}/.other.aapi-install.lock: {denied}; nothing was done: run the install as a user who may write to {p} (root, for the framework's plugin directory)\n",
            p = plugins.display()
        )
    );
    assert!(snapshot(&plugins) == before_plugins);
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o755)).unwrap();
    let before_plugins = snapshot(&plugins);

    // A plugin directory the user may list but not enter: DEST cannot be examined, nor can a
    // parent of DEST inside it be reached. The advice names the directory to act on.
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&[&"install", &pkg, &"--dest", &other]);
    let vendor = plugins.join("vendor");
    let deeper = vendor.join("demo");
    let o2 = run(&[&"install", &pkg, &"--dest", &deeper]);
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o755)).unwrap();
    let as_root = "(root, for the framework's plugin directory)";
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: cannot examine --dest {}: {denied}; nothing was done: run the install as a user who may write to {} {as_root}\n",
            other.display(),
            plugins.display()
        )
    );
    assert_eq!(o2.status.code(), Some(2), "{}", stderr(&o2));
    assert_eq!(
        stderr(&o2),
        format!(
            "aapi-validator: cannot reach the parent of --dest {}, {}: {denied}; run the install as a user who may write to {} {as_root}, or choose another --dest\n",
            deeper.display(),
            vendor.display(),
            plugins.display()
        )
    );
    assert!(snapshot(&plugins) == before_plugins);

    // An installation with a file, then a directory, the user may not read.
    for (path, mode) in [(ENTRY, 0o755), ("lib", 0o755)] {
        let at = dest.join(path);
        fs::set_permissions(&at, fs::Permissions::from_mode(0o000)).unwrap();
        let o = run(&[&"verify", &"--installed", &dest]);
        fs::set_permissions(&at, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "aapi-validator: cannot read {}: {denied}; run as a user who may read it\n",
                at.display()
            )
        );
    }
    assert!(snapshot(w.path()) == before, "nothing was changed");
    assert_eq!(installed_codes(&dest), vec![]);
}

#[test]
fn a_full_or_read_only_file_system_is_told_and_changes_nothing() {
    let w = tempfile::tempdir().unwrap();
    let v1 = package(w.path(), "1.0.0", false);
    let v2 = package(w.path(), "2.0.0", true);
    let gz = w.path().join("demo-1.0.0.aapkg.gz");
    fs::write(&gz, gzip(&fs::read(&v1).unwrap())).unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let (p, d) = (plugins.display(), dest.display());
    let free_space = format!("free space on the file system of {p}, then run the install again");
    let ran = with_tmpfs(&plugins, "size=1m", || {
        assert_eq!(install(&v1, &dest).status.code(), Some(0));
        let before = snapshot(&plugins);

        // No room for the 3 MiB file of the new version.
        let o = install(&v2, &dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "aapi-validator: cannot write data.bin into the new installation of {d}: No space left on device (os error 28); nothing was installed and {d} is as it was: {free_space}\n"
            )
        );
        assert!(
            snapshot(&plugins) == before,
            "the installation is as it was"
        );
        assert_eq!(names(&plugins), [LOCK, "demo"], "nothing is left beside it");

        // No room for the copy `verify` makes of a compressed package's entry library.
        let filler = plugins.join("filler");
        let _ = fs::write(&filler, vec![0u8; 1 << 20]);
        let o = Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
            .args([&"verify" as &dyn AsRef<std::ffi::OsStr>, &gz])
            .env("TMPDIR", &plugins)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "aapi-validator: cannot copy the entry library {ENTRY} to a temporary file in {p}: No space left on device (os error 28); set TMPDIR to a directory on a file system with room for it\n"
            )
        );
        fs::remove_file(&filler).unwrap();

        // No inode left for the temporary directory of the install.
        let options = format!("size=1m,nr_inodes={}", inodes_used(&plugins));
        mount(&plugins, None, libc::MS_REMOUNT, &options).unwrap();
        let o = install(&v2, &dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.starts_with(&format!(
                "aapi-validator: cannot create a temporary directory in {p}: No space left on device (os error 28)"
            )) && e.ends_with(&format!(
                "; nothing was installed and {d} is as it was: {free_space}\n"
            )),
            "{e}"
        );
        assert!(snapshot(&plugins) == before);

        // A read-only file system.
        mount(&plugins, None, libc::MS_REMOUNT | libc::MS_RDONLY, "").unwrap();
        let o = install(&v2, &dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "aapi-validator: cannot open the install lock file {p}/{LOCK}: Read-only file system (os error 30); nothing was done: {p} is on a read-only file system: remount it read-write or choose another --dest\n"
            )
        );
        assert!(snapshot(&plugins) == before);
        assert_eq!(installed_codes(&dest), vec![]);
    });
    if let Err(why) = ran {
        eprintln!("skipped: {why}");
    }
}

/// Two packages of the same plugin and version whose READMEs differ, written into `at`.
fn two_builds(at: &Path) -> [PathBuf; 2] {
    ["a", "b"].map(|tag| {
        let d = plugin_dir(Variant::Good);
        fs::write(
            d.path().join("README"),
            format!("demo plugin, build {tag}\n"),
        )
        .unwrap();
        let pkg = at.join(format!("demo-{tag}.aapkg"));
        let o = run(&[&"pack", &d.path(), &"-o", &pkg]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        pkg
    })
}

#[test]
fn verify_installed_during_installs_sees_one_whole_installation() {
    use aapi_validator::{install, verify};
    let w = tempfile::tempdir().unwrap();
    let builds = two_builds(w.path());
    let dest = w.path().join("plugins/demo");
    fs::create_dir(w.path().join("plugins")).unwrap();
    let opts = install::Options::default();
    install::install(&builds[0], &dest, &opts, &mut |_| {}).unwrap();
    let installed = verify::Options {
        installed: true,
        ..Default::default()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut passes, mut bad) = (0, Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
            for i in 0.. {
                if std::time::Instant::now() > until {
                    break;
                }
                install::install(&builds[(i + 1) % 2], &dest, &opts, &mut |_| {}).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            passes += 1;
            match verify::verify_tree(&dest, &installed) {
                Ok(r) if r.is_valid() => {}
                Ok(r) => bad.push(format!("{:?}", r.findings)),
                Err(e) => bad.push(e.to_string()),
            }
        }
    });
    assert!(bad.is_empty(), "{} of {passes} passes: {bad:#?}", bad.len());
}

#[test]
fn a_package_for_another_architecture_is_installed_only_when_named() {
    let w = tempfile::tempdir().unwrap();
    // The fixture is built for this host; its e_machine is patched to another 64-bit
    // little-endian architecture, and the manifest says so.
    let host = aapi_validator::elf::host_arch();
    let foreign = ["aarch64", "x86_64"]
        .into_iter()
        .find(|a| *a != host)
        .unwrap();
    let mut lib = plugin(Variant::Good);
    let machine = aapi_validator::elf::arch(foreign).unwrap().machine;
    lib[18..20].copy_from_slice(&machine.to_le_bytes());
    let entries = payload(lib);
    let mut manifest = manifest_of(&entries);
    manifest.target.arch = foreign.into();
    let pkg = w.path().join("foreign.aapkg");
    fs::write(&pkg, Raw::package(&manifest, &entries).finish()).unwrap();
    fs::create_dir(w.path().join("plugins")).unwrap();
    let dest = w.path().join("plugins/demo");

    // Verifying a package reports its architecture, whatever the host.
    let o = run(&[&"verify", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!(", {foreign}-linux: ")),
        "{}",
        stdout(&o)
    );
    let o = run(&[&"verify", &pkg, &"--target-arch", &host]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().next().unwrap(),
        format!(
            "TARGET_ARCH             the package is built for {foreign}, --target-arch says {host}"
        )
    );

    // Installing it here is refused, and nothing is written.
    let o = install(&pkg, &dest);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().next().unwrap(),
        format!(
            "TARGET_ARCH             the package is built for {foreign}, this host is {host}: the framework here cannot load it; use it on a host of that architecture, or give --target-arch {foreign} to handle it here for such a host"
        )
    );
    assert_eq!(names(&w.path().join("plugins")), Vec::<String>::new());
    // Unless the architecture is named: an installation prepared here for another host.
    let o = run(&[
        &"install",
        &pkg,
        &"--dest",
        &dest,
        &"--target-arch",
        &foreign,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&[&"verify", &"--installed", &dest]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("TARGET_ARCH "), "{}", stdout(&o));
    let o = run(&[&"verify", &"--installed", &dest, &"--target-arch", &foreign]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // A name the format does not know is a usage error.
    let o = run(&[&"install", &pkg, &"--dest", &dest, &"--target-arch", &"vax"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn another_plugin_or_a_newer_version_is_replaced_only_when_asked() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v1 = package(w.path(), "1.0.0", false);
    let v2 = package(w.path(), "1.10.0", false);
    // Another plugin: another name, and (the same name) another vendor.
    let other = w.path().join("other.aapkg");
    let d = plugin_dir(Variant::Good);
    let o = run(&[&"pack", &d.path(), &"-o", &other, &"--name", &"hadoop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let rival = w.path().join("rival.aapkg");
    let o = run(&[
        &"pack",
        &d.path(),
        &"-o",
        &rival,
        &"--vendor",
        &"Rival Inc.",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    assert_eq!(install(&v2, &dest).status.code(), Some(0));
    let before = snapshot(&plugins);
    let d_ = dest.display();
    for (pkg, want) in [
        (
            &other,
            format!(
                "--dest {d_} holds another plugin, demo 1.10.0 (Example Corp.), not hadoop (Example Corp.); nothing was done, to keep it: choose another --dest, or give --replace-other to replace it"
            ),
        ),
        (
            &rival,
            format!(
                "--dest {d_} holds another plugin, demo 1.10.0 (Example Corp.), not demo (Rival Inc.); nothing was done, to keep it: choose another --dest, or give --replace-other to replace it"
            ),
        ),
        (
            &v1,
            format!(
                "--dest {d_} holds demo 1.10.0, newer than version 1.0.0 in the package; nothing was done, to keep it: give --allow-downgrade to go back to 1.0.0"
            ),
        ),
    ] {
        let o = install(pkg, &dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("aapi-validator: {want}\n"));
        assert!(snapshot(&plugins) == before, "{want}: something changed");
    }
    // Asked to, it replaces them and says what it replaced.
    let o = run(&[&"install", &v1, &"--dest", &dest, &"--allow-downgrade"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with(&format!(
            " into {d_} (replaced demo 1.10.0 (Example Corp.), a newer version)\n"
        )),
        "{}",
        stdout(&o)
    );
    let o = run(&[
        &"install",
        &"--json",
        &other,
        &"--dest",
        &dest,
        &"--replace-other",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["replaced"]["plugin"]["name"], "demo");
    assert_eq!(v["replaced"]["plugin"]["version"], "1.0.0");
    assert_eq!(v["replaced"]["downgrade"], false);
    assert_eq!(v["manifest"]["plugin"]["name"], "hadoop");

    // An installation whose manifest is damaged is not known to be this plugin.
    fs::write(dest.join(".aapi/manifest.json"), "{").unwrap();
    let o = install(&other, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds an installation whose manifest cannot be read"),
        "{}",
        stderr(&o)
    );
    let o = run(&[&"install", &other, &"--dest", &dest, &"--replace-other"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with(" (replaced an installation whose manifest could not be read)\n"),
        "{}",
        stdout(&o)
    );
    // Into an empty directory, nothing is replaced.
    let empty = plugins.join("empty");
    fs::create_dir(&empty).unwrap();
    let o = run(&[&"install", &"--json", &v1, &"--dest", &empty]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["replaced"], serde_json::Value::Null);
}

#[test]
fn a_refusal_after_putting_back_an_earlier_installation_says_so() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let newer = package(w.path(), "2.0.0", false);
    let older = package(w.path(), "1.0.0", false);
    assert_eq!(install(&newer, &dest).status.code(), Some(0));
    let tree = snapshot(&dest);
    // An install killed between the two renames of the fallback left it aside.
    let aside = plugins.join(".demo.aapi-aside-Ab12Cd");
    fs::rename(&dest, &aside).unwrap();
    let (d, a) = (dest.display(), aside.display());
    let o = run(&[&"install", &"--json", &older, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let want = format!(
        "--dest {d} holds demo 2.0.0, newer than version 1.0.0 in the package; the earlier installation was put back into {d} from {a}, where an interrupted install had left it, and nothing else was done, to keep it: give --allow-downgrade to go back to 1.0.0"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], want.as_str());
    assert_eq!(v["installed"], false);
    assert_eq!(
        v["leftovers"],
        serde_json::json!([{"action": "put_back", "path": aside}])
    );
    assert!(snapshot(&dest) == tree);
    assert!(!aside.exists());
    // Without --json, the same words on standard error, after the line about the put-back.
    fs::rename(&dest, &aside).unwrap();
    let o = install(&older, &dest);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: put back the earlier installation from {a}, where an interrupted install had left it\naapi-validator: {want}\n"
        )
    );
}

#[test]
fn install_json_keeps_its_shape_when_the_install_cannot_run() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let v2 = package(w.path(), "2.0.0", false);
    let v1 = package(w.path(), "1.0.0", false);
    assert_eq!(install(&v2, &dest).status.code(), Some(0));
    // An interrupted install left its directory; this install tidies it, then stops (exit 2:
    // a downgrade it was not asked for). The JSON still says what was tidied.
    let scratch = plugins.join(".demo.aapi-install-Ab12Cd");
    fs::create_dir(&scratch).unwrap();
    let o = run(&[&"install", &"--json", &v1, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let error = stderr(&o)
        .lines()
        .last()
        .unwrap()
        .strip_prefix("aapi-validator: ")
        .unwrap()
        .to_string();
    assert_eq!(
        v,
        serde_json::json!({
            "valid": null,
            "error": error,
            "subject": v1,
            "manifest": null,
            "manifest_sha256": null,
            "signature": null,
            "findings": [],
            "installed": false,
            "replaced": null,
            "leftovers": [{"action": "removed", "path": scratch}],
        })
    );
    assert!(!scratch.exists());

    // The same keys when another install holds the lock (exit 3).
    let lock = fs::File::open(plugins.join(LOCK)).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0);
    let o = run(&[&"install", &"--json", &v2, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["installed"], &v["leftovers"], &v["findings"]),
        (
            &serde_json::json!(false),
            &serde_json::json!([]),
            &serde_json::json!([])
        )
    );
}

#[test]
fn a_destination_ending_in_dot_is_the_directory_or_refused_before_any_work() {
    let w = tempfile::tempdir().unwrap();
    let plugins = w.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    let dest = plugins.join("demo");
    let pkg = package(w.path(), "1.0.0", false);
    assert_eq!(install(&pkg, &dest).status.code(), Some(0));
    // `demo/.` is `demo`, as `demo/` is.
    let o = install(&pkg, &dest.join("."));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).ends_with(&format!(
            " into {} (replaced demo 1.0.0 (Example Corp.))\n",
            dest.display()
        )),
        "{}",
        stdout(&o)
    );
    assert_eq!(names(&plugins), [LOCK, "demo"]);
    // `.` cannot be renamed onto: refused before anything is read or written.
    let before = snapshot(w.path());
    let o = Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
        .current_dir(&dest)
        .args(["install", "/nonexistent.aapkg", "--dest", "."])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "aapi-validator: --dest . is the current directory, which an install cannot replace (it renames a new tree to DEST); nothing was done: give the installation directory by its own name, such as ../NAME or /usr/openv/lib/psf-plugins/NAME\n"
    );
    assert!(snapshot(w.path()) == before);
}

/// An installation directory whose name leaves no room for the names the install makes beside
/// it is refused up front, with the length that fits; that length installs.
#[test]
fn an_installation_directory_name_too_long_for_its_scratch_names_is_refused() {
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("demo.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let o = install(&pkg, &w.path().join("d".repeat(235)));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is 235 bytes long; at most 234 fit"),
        "{}",
        stderr(&o)
    );
    assert_eq!(names(w.path()), ["demo.aapkg"]);
    let o = install(&pkg, &w.path().join("d".repeat(234)));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// An installation directory that is a mount point cannot be renamed into place: the message
/// says so and what to do, and nothing changes.
#[test]
fn an_installation_directory_that_is_a_mount_point_is_told() {
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("demo.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let dest = w.path().join("demo");
    fs::create_dir(&dest).unwrap();
    let ran = with_tmpfs(&dest, "size=4m", || {
        let o = install(&pkg, &dest);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the installation directory is a mount point"),
            "{}",
            stderr(&o)
        );
        assert_eq!(names(&dest), Vec::<String>::new(), "the mount is as it was");
    });
    if let Err(why) = ran {
        eprintln!("skipped: {why}");
    }
}
