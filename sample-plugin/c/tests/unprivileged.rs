//! Both samples restoring as a user without root's powers: `nobody` (uid and gid 65534, no
//! supplementary groups) when the tests run as root, else the tests' own user. The test binary
//! runs itself again as that user, from copies of itself and of both libraries that every user
//! can read. A failed restore under a directory of another user that this one may write into
//! (sticky and world-writable, as /tmp) removes everything it created and succeeds (RST-6,
//! RST-7): the times of that directory, which only its owner may set, are left with a warning.

mod common;

use aapi_host::client::{HostHooks, Plugin, SessionDef};
use aapi_sample_plugin_c::PLUGIN_PATH;
use aapi_sdk::abi::*;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The test, by the name the child runs it under.
const TEST: &str = "a_failed_restore_under_a_directory_of_another_user_succeeds_with_a_warning";
/// Set in the child: the alternate root of its restores.
const ROOT_VAR: &str = "AAPI_SAMPLE_TEST_ROOT";
/// Set in the child: the prefix of the names it makes in the alternate root.
const TAG_VAR: &str = "AAPI_SAMPLE_TEST_TAG";
/// Set in the child: the libraries of the C and the Rust sample.
const C_VAR: &str = "AAPI_SAMPLE_TEST_C";
const RUST_VAR: &str = "AAPI_SAMPLE_TEST_RUST";

/// The times the child gives a directory of its own before the restore: (atime, mtime).
const OWN_TIMES: ((i64, i64), (i64, i64)) = ((1_600_000_000, 11), (1_500_000_000, 22));

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Log lines as (level, message).
#[derive(Default)]
struct Log(Mutex<Vec<(u32, String)>>);

impl HostHooks for Log {
    fn log(&self, level: u32, message: &str) {
        self.0.lock().unwrap().push((level, message.to_string()));
    }
}

fn times_of(p: &Path) -> ((i64, i64), (i64, i64)) {
    let md = fs::symlink_metadata(p).unwrap();
    ((md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()))
}

fn set_times(p: &Path, (a, m): ((i64, i64), (i64, i64))) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [a, m].map(|(sec, nsec)| libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    });
    // SAFETY: a NUL-terminated path and two valid timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

/// The child's part, for one sample: a restore that creates a file in a directory of its own user
/// and one in a new directory of the alternate root, then fails.
fn failed_restore(name: &str, lib: &Path, alt: &Path, tag: &str) {
    let log = Arc::new(Log::default());
    let plugin = Plugin::load(lib, log.clone()).unwrap();
    assert!(plugin.claim("files").unwrap());
    let own = alt.join(format!("{tag}-{name}-own"));
    fs::create_dir(&own).unwrap();
    set_times(&own, OWN_TIMES);
    let new = alt.join(format!("{tag}-{name}-new"));
    let s = plugin
        .open_server("localhost", SessionDef::new(AAPI_OP_RESTORE))
        .unwrap();
    s.restore_preprocess(alt.as_os_str().as_bytes(), 8, 2)
        .unwrap();
    let prop = aapi_object_prop_t {
        obj_type: AAPI_OBJ_FILE,
        valid: AAPI_PROP_MODE,
        mode: 0o600,
        ..Default::default()
    };
    for path in [own.join("sub/f.txt"), new.join("f.txt")] {
        let mut o = s
            .create_object(path.as_os_str().as_bytes(), &prop, 0)
            .unwrap();
        o.write(b"data").unwrap();
        o.close().unwrap();
    }
    let result = s.restore_postprocess(AAPI_EIO);
    s.close().unwrap();
    plugin.terminate().unwrap();
    let lines = log.0.lock().unwrap().clone();
    let shown = format!("{name}: {lines:#?}");
    assert_eq!(result, Ok(()), "{shown}");
    // RST-6: what the restore created is gone; the directories that existed are kept.
    assert!(!own.join("sub").exists() && !new.exists(), "{shown}");
    assert_eq!(times_of(&own), OWN_TIMES, "put back where allowed: {shown}");
    let about_alt = format!("cannot put back the atime and mtime of {}:", alt.display());
    let warnings: Vec<_> = lines
        .iter()
        .filter(|(level, text)| *level == AAPI_LOG_WARNING && text.contains(&about_alt))
        .collect();
    assert_eq!(warnings.len(), 1, "{shown}");
    // The same words from both samples, as sample-plugin/README.md gives them.
    assert_eq!(
        warnings[0].1,
        format!(
            "files-{name}: rollback: cannot put back the atime and mtime of {}: Operation not permitted",
            alt.display()
        ),
        "{shown}"
    );
    assert!(
        lines.iter().all(|(level, _)| *level != AAPI_LOG_ERROR),
        "{shown}"
    );
    fs::remove_dir(&own).unwrap();
}

/// A directory of another user that this one can write into, for a test that does not run as
/// root: the temporary directory or /tmp, when one is such a directory.
fn shared_dir() -> Option<PathBuf> {
    [std::env::temp_dir(), PathBuf::from("/tmp")]
        .into_iter()
        .find(|d| {
            fs::metadata(d).is_ok_and(|md| md.is_dir() && md.uid() != euid())
                && tempfile::tempdir_in(d).is_ok()
        })
}

#[test]
fn a_failed_restore_under_a_directory_of_another_user_succeeds_with_a_warning() {
    if let Some(alt) = std::env::var_os(ROOT_VAR) {
        let var = |v: &str| PathBuf::from(std::env::var_os(v).unwrap());
        let tag = std::env::var(TAG_VAR).unwrap();
        for (name, lib) in [("c", var(C_VAR)), ("rust", var(RUST_VAR))] {
            failed_restore(name, &lib, Path::new(&alt), &tag);
        }
        return;
    }
    let root = euid() == 0;
    let w = tempfile::tempdir().unwrap();
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The alternate root: as root, one like /tmp, owned by root, sticky and world-writable.
    let alt = if root {
        let alt = w.path().join("alt");
        fs::create_dir(&alt).unwrap();
        fs::set_permissions(&alt, fs::Permissions::from_mode(0o1777)).unwrap();
        alt
    } else if let Some(d) = shared_dir() {
        d
    } else {
        eprintln!("skipped: no directory of another user to write into (neither $TMPDIR nor /tmp)");
        return;
    };
    // Copies the unprivileged user can read and run, wherever the build lies.
    let copy = |from: &Path, name: &str| {
        let to = w.path().join(name);
        fs::copy(from, &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let exe = std::env::current_exe().unwrap();
    let rust = exe.parent().unwrap().join("libaapi_sample_plugin.so");
    let rust = copy(&rust, "libaapi_sample_plugin.so");
    let c = copy(Path::new(PLUGIN_PATH), "libaapi_sample_plugin_c.so");
    let exe = copy(&exe, "unprivileged");
    let tag = format!(
        "aapi-rollback-{}",
        w.path().file_name().unwrap().to_string_lossy()
    );
    let child = || {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(ROOT_VAR, &alt)
            .env(TAG_VAR, &tag)
            .env(C_VAR, &c)
            .env(RUST_VAR, &rust);
        if root {
            // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and
            // exec; the null pointer goes with a count of 0.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(65534) != 0
                        || libc::setuid(65534) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    };
    if let Err(e) = child().arg("--list").output() {
        eprintln!(
            "skipped: cannot run {} as an unprivileged user ({e}); set TMPDIR to a directory every user can reach",
            exe.display()
        );
        return;
    }
    let out = common::run(&mut child(), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "the restores as an unprivileged user failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<OsString> = fs::read_dir(&alt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(tag.as_bytes()))
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", alt.display());
}
