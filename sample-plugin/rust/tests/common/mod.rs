//! Test harness for the Rust sample plugin: the built library, recording host hooks, a generated
//! tree with every awkward case, and a byte-exact description of a tree to compare against.
#![allow(dead_code)]

use aapi_host::client::{HostHooks, Plugin};
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The cdylib cargo built for these tests: it sits beside the test executable (target/<profile>/deps).
pub fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libaapi_sample_plugin.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// A private copy of the library in `dir`: it loads as its own instance with its own state, so
/// tests in parallel threads never share a plugin.
/// The copy must be new: writing over a library that is already loaded would corrupt it.
pub fn private_library(dir: &Path) -> PathBuf {
    let to = dir.join("libaapi_sample_plugin.so");
    assert!(!to.exists(), "{} is already loaded", to.display());
    fs::copy(library(), &to).unwrap();
    to
}

type CancelWhen = Box<dyn Fn() -> bool + Send + Sync>;

/// Host hooks that record log lines and keepalives, and cancel when told to.
#[derive(Default)]
pub struct Hooks {
    pub logs: Mutex<Vec<(u32, String)>>,
    pub keepalives: AtomicUsize,
    pub cancel_when: Mutex<Option<CancelWhen>>,
}

impl Hooks {
    /// Log lines containing `text`.
    pub fn logged(&self, text: &str) -> Vec<(u32, String)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| t.contains(text))
            .cloned()
            .collect()
    }
}

impl HostHooks for Hooks {
    fn log(&self, level: u32, message: &str) {
        self.logs.lock().unwrap().push((level, message.to_string()));
    }

    fn keepalive(&self) -> bool {
        self.keepalives.fetch_add(1, Ordering::SeqCst);
        !self
            .cancel_when
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| f())
    }
}

/// Load a private copy of the plugin into `dir`, initialise it and claim `files`.
pub fn load(dir: &Path) -> (Plugin, Arc<Hooks>, PathBuf) {
    let lib = private_library(dir);
    let hooks = Arc::new(Hooks::default());
    let plugin = Plugin::load(&lib, hooks.clone()).unwrap();
    assert!(plugin.claim("files").unwrap());
    (plugin, hooks, lib)
}

/// The bytes of a path.
pub fn b(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// A path from bytes.
pub fn p(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Whether the tests run as root (owners and setuid bits are restored only then).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Set the times of `path` itself (not a symlink's target).
pub fn set_times(path: &Path, sec: i64, nsec: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    };
    let times = [t, t];
    // SAFETY: a NUL-terminated path and two valid timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Build the test tree under `root`: empty files, a multi-MiB file, a deep and a wide directory,
/// symlinks (relative, absolute, dangling, to a directory, with odd names), names with spaces,
/// newlines, tabs, Latin-1 and UTF-8 bytes, assorted modes, a read-only directory, and distinct
/// mtimes with nanoseconds on everything.
pub fn make_tree(root: &Path) {
    let file = |rel: &[u8], data: &[u8]| {
        let path = root.join(p(rel));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
    };
    let link = |rel: &[u8], target: &[u8]| {
        let path = root.join(p(rel));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(p(target), &path).unwrap();
    };
    fs::create_dir_all(root).unwrap();
    file(b"empty.txt", b"");
    file(b"small.txt", b"hello\n");
    file(b"big.bin", &noise(3 * 1024 * 1024 + 7, 1));
    file(b"with space/and  two spaces.txt", b"spaces");
    file(b"new\nline", b"newline in the name");
    file(b"tab\there", b"tab");
    file(b"latin1-\xe9\xff", b"not UTF-8");
    file("日本語/ファイル.txt".as_bytes(), "内容".as_bytes());
    file(b"-leading-dash", b"dash");
    file(b"empty dir marker/.keep", b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    let mut deep = PathBuf::from("deep");
    for i in 0..30 {
        deep.push(format!("d{i}"));
    }
    file(&b(&deep.join("leaf.txt")), b"at the bottom");
    for i in 0..200 {
        file(format!("wide/f{i:03}").as_bytes(), &noise(i * 37, i as u64));
    }
    link(b"links/rel", b"../small.txt");
    link(b"links/abs", b"/nonexistent/absolute/target");
    link(b"links/dangling", b"missing");
    link(b"links/todir", b"../deep");
    link(b"links/odd name\n", b"target with\nnewline \xff");
    file(b"modes/ro.txt", b"read only");
    file(b"modes/exec.sh", b"#!/bin/sh\n");
    file(b"modes/private", b"secret");
    file(b"readonly-dir/inner.txt", b"inside a read-only directory");
    let mode = |rel: &str, m: u32| {
        fs::set_permissions(root.join(rel), fs::Permissions::from_mode(m)).unwrap();
    };
    mode("modes/ro.txt", 0o444);
    mode("modes/exec.sh", 0o755);
    mode("modes/private", 0o600);
    mode("with space", 0o750);
    if is_root() {
        file(b"modes/setuid", b"setuid");
        mode("modes/setuid", 0o4755);
    }
    mode("readonly-dir", 0o555);
    // Distinct times on everything, the root last.
    let mut all: Vec<PathBuf> = walk(root)
        .into_keys()
        .map(|rel| root.join(p(&rel)))
        .collect();
    all.sort();
    all.reverse();
    for (i, path) in all.iter().enumerate() {
        set_times(
            path,
            1_600_000_000 + i as i64 * 1000,
            (i as i64 * 7919) % 1_000_000_000,
        );
    }
}

/// What a tree object is, as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    /// File bytes, or the link target.
    pub data: Vec<u8>,
}

/// Every object under `root` (root included, as ""), by path relative to it.
pub fn walk(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let (kind, data) = if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            ('d', vec![])
        } else if ft.is_symlink() {
            ('l', b(&fs::read_link(&path).unwrap()))
        } else {
            ('f', fs::read(&path).unwrap())
        };
        let rel = b(path.strip_prefix(root).unwrap());
        out.insert(
            rel,
            Entry {
                kind,
                mode: if kind == 'l' { 0 } else { md.mode() & 0o7777 },
                uid: md.uid(),
                gid: md.gid(),
                mtime: (md.mtime(), md.mtime_nsec()),
                data,
            },
        );
    }
    out
}

/// Assert two trees are the same: same objects, types, bytes, link targets, modes, mtimes (and
/// owners when running as root), naming the first difference.
pub fn assert_same(got: &BTreeMap<Vec<u8>, Entry>, want: &BTreeMap<Vec<u8>, Entry>) {
    let names = |m: &BTreeMap<Vec<u8>, Entry>| -> Vec<String> {
        m.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    };
    assert_eq!(names(got), names(want), "the object lists differ");
    for (k, w) in want {
        let g = &got[k];
        let name = String::from_utf8_lossy(k);
        assert_eq!(g.kind, w.kind, "{name}: type");
        assert!(
            g.data == w.data,
            "{name}: data differs ({} vs {} bytes)",
            g.data.len(),
            w.data.len()
        );
        assert_eq!(g.mode, w.mode, "{name}: mode {:o} vs {:o}", g.mode, w.mode);
        assert_eq!(g.mtime, w.mtime, "{name}: mtime");
        if is_root() {
            assert_eq!((g.uid, g.gid), (w.uid, w.gid), "{name}: owner");
        }
    }
}

/// Every path under `root` whose name holds `text` (temporary and set-aside leftovers).
pub fn leftovers(root: &Path, text: &str) -> Vec<String> {
    walk(root)
        .into_keys()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .filter(|k| k.contains(text))
        .collect()
}

/// `root` re-rooted under `alt`, as an alternate-location restore places it.
pub fn under(alt: &Path, root: &Path) -> PathBuf {
    alt.join(root.strip_prefix("/").unwrap())
}
