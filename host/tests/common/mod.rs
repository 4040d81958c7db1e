//! Shared helpers of the host tests: the fault-injection test plugin, built with the system C
//! compiler from tests/plugin/testplugin.c and include/aapi.h.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILD: Mutex<()> = Mutex::new(());

/// Build (once per variant) and return the test plugin. `defines` are extra `-D` flags.
pub fn test_plugin(name: &str, defines: &[&str]) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lib{name}.so"));
    let src = root.join("host/tests/plugin/testplugin.c");
    let fresh = out.exists()
        && out.metadata().unwrap().modified().unwrap()
            >= src.metadata().unwrap().modified().unwrap();
    if !fresh {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let tmp = out.with_extension(format!("so.{}", std::process::id()));
        let status = Command::new(cc)
            .args([
                "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O1",
            ])
            .arg("-I")
            .arg(root.join("include"))
            .args(defines.iter().map(|d| format!("-D{d}")))
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling the test plugin failed");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// The regular test plugin.
pub fn good_plugin() -> PathBuf {
    test_plugin("aapi_testplugin", &[])
}

/// A private copy of a plugin library: each copy loads as its own instance with its own global
/// state, so tests running in parallel threads do not share a plugin.
pub fn private_copy(lib: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(lib.file_name().unwrap());
    std::fs::copy(lib, &to).unwrap();
    to
}

/// Write `bytes` to `path`, creating parents.
pub fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The result of one `aapi-host` run.
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// The `aapi-host` binary under test.
pub fn host_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aapi-host")
}

/// Run `aapi-host --store <store> <args>` with extra environment variables.
pub fn host(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(host_bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run aapi-host");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Set the access and modification times of `path` (not following symlinks).
pub fn set_mtime(path: &Path, sec: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: 123_456_789,
        },
    ];
    // SAFETY: valid NUL-terminated path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", path.display());
}

/// Build a tree with files of several sizes, odd names, an empty file, a symlink, nested
/// directories and distinct modes; every time is set to `mtime`.
pub fn make_tree(root: &Path, files: usize, mtime: i64) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd name\nwith newline \xff");
    write_file(&root.join(odd), b"odd bytes");
    write_file(&root.join("empty"), b"");
    let mut seed = 0x1234_5678u64;
    for i in 0..files {
        let size = match i % 4 {
            0 => 10,
            1 => 4096,
            2 => 70_000,
            _ => 1_500_000 / (i + 1),
        };
        let data: Vec<u8> = (0..size)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let dir = if i % 2 == 0 { "sub" } else { "sub/deeper" };
        write_file(&root.join(format!("{dir}/f{i}.bin")), &data);
    }
    std::fs::set_permissions(
        root.join("sub/f0.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("sub/deeper"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/f0.bin", root.join("link")).unwrap();
    touch_all(root, mtime);
}

/// Set every time below and of `root` to `sec` (children first).
pub fn touch_all(root: &Path, sec: i64) {
    let meta = std::fs::symlink_metadata(root).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            touch_all(&e.unwrap().path(), sec);
        }
    }
    set_mtime(root, sec);
}

/// Everything a restore must bring back, per relative path: type, mode, bytes, mtime.
pub fn snapshot(
    root: &Path,
) -> std::collections::BTreeMap<PathBuf, (String, u32, Vec<u8>, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    fn walk(
        base: &Path,
        p: &Path,
        out: &mut std::collections::BTreeMap<PathBuf, (String, u32, Vec<u8>, i64, i64)>,
    ) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = p.strip_prefix(base).unwrap().to_path_buf();
        let (kind, data) = if m.is_dir() {
            ("dir", Vec::new())
        } else if m.file_type().is_symlink() {
            (
                "symlink",
                std::fs::read_link(p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            ("file", std::fs::read(p).unwrap())
        };
        let mode = if kind == "symlink" {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel,
            (kind.to_string(), mode, data, m.mtime(), m.mtime_nsec()),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Assert two snapshots are equal, naming the first difference.
pub fn assert_same(
    a: &std::collections::BTreeMap<PathBuf, (String, u32, Vec<u8>, i64, i64)>,
    b: &std::collections::BTreeMap<PathBuf, (String, u32, Vec<u8>, i64, i64)>,
) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different object lists");
    for (k, va) in a {
        let vb = &b[k];
        assert_eq!(va.0, vb.0, "{}: type", k.display());
        assert_eq!(va.1, vb.1, "{}: mode", k.display());
        assert!(va.2 == vb.2, "{}: bytes differ", k.display());
        assert_eq!((va.3, va.4), (vb.3, vb.4), "{}: mtime", k.display());
    }
}

/// The Rust sample plugin, built as a dev-dependency next to the test executables.
pub fn rust_sample() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let lib = deps.join("libaapi_sample_plugin.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// Write a complete image into `store` by hand, without a plugin: one stream holding `files`
/// (path, bytes), a catalog and a manifest of `policy` that started at `started` (Unix seconds).
/// For tests of what reads the store: list, show, delete, restore --dry-run. Returns the id.
pub fn fake_image(
    store: &Path,
    id: &str,
    policy: &str,
    started: i64,
    files: &[(&[u8], &[u8])],
) -> String {
    use aapi_host::store::{Catalog, DataRef, Entry, MANIFEST, Manifest, Props, Time};
    let dir = store.join("images").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut data = Vec::new();
    let mut entries = Vec::new();
    for (path, bytes) in files {
        entries.push(Entry {
            path: path.to_vec(),
            props: Props {
                obj_type: aapi_sdk::abi::AAPI_OBJ_FILE,
                mode: 0o644,
                size: bytes.len() as u64,
                mtime: Time {
                    sec: started,
                    nsec: 0,
                },
                ..Props::default()
            },
            flags: 0,
            data: DataRef {
                image: 0,
                stream: 0,
                offset: data.len() as u64,
                length: bytes.len() as u64,
                blake3: *blake3::hash(bytes).as_bytes(),
            },
            seen: None,
        });
        data.extend_from_slice(bytes);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    std::fs::write(dir.join("stream-0.data"), &data).unwrap();
    let catalog = Catalog {
        images: vec![id.to_string()],
        entries,
    };
    let catalog_blake3 = catalog.save(&dir.join("catalog")).unwrap();
    let m = Manifest {
        format: 1,
        image: id.to_string(),
        policy: policy.to_string(),
        schedule: id.rsplit('-').next().unwrap().to_string(),
        started,
        completed: started + 1,
        base: None,
        depends_on: Vec::new(),
        plugin: "libfake.so".into(),
        streams: vec![data.len() as u64],
        objects: files.len() as u64,
        bytes: data.len() as u64,
        catalog_blake3,
        failures: Vec::new(),
    };
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let job = aapi_host::store::JobDef {
        image: id.to_string(),
        policy: policy.to_string(),
        schedule: m.schedule.clone(),
        plugin: "libfake.so".into(),
        workload_type: "files".into(),
        server: "localhost".into(),
        selections: files.iter().map(|(p, _)| p.to_vec()).collect(),
        hosts: vec!["stream-0".into()],
        properties: Vec::new(),
        call_budget_ms: 1000,
        started,
        base: None,
        snapid: None,
        credentials: None,
    };
    std::fs::write(
        dir.join("job.json"),
        serde_json::to_vec_pretty(&job).unwrap(),
    )
    .unwrap();
    id.to_string()
}

/// `aapi-host discover -q` of `tree` into `store` with `plugin` for policy `p` and backup hosts
/// `hosts` (comma-separated), plus `extra` arguments; asserts success and returns the image id.
pub fn discover(store: &Path, plugin: &Path, tree: &Path, hosts: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "discover",
        "-q",
        "--plugin",
        plugin.to_str().unwrap(),
        "--policy",
        "p",
        "--select",
        tree.to_str().unwrap(),
        "--hosts",
        hosts,
    ];
    args.extend_from_slice(extra);
    let r = host(store, &args, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// Restore `image` of `store` under the new directory `alt` and check it equals `tree` (bytes,
/// types, modes, times).
pub fn restores_as(store: &Path, image: &str, alt: &Path, tree: &Path) {
    std::fs::create_dir(alt).unwrap();
    let r = host(
        store,
        &["restore", image, "--alt-root", alt.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(
        &snapshot(&alt.join(tree.strip_prefix("/").unwrap())),
        &snapshot(tree),
    );
}
