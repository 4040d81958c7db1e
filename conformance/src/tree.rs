//! The built-in test tree of the `files` workload, and manifests of trees on disk.
//!
//! [`generate`] writes a tree that exercises what file plugins get wrong: names with spaces,
//! newlines, tabs, non-ASCII and non-UTF-8 bytes, empty files, a multi-MiB file, a deep and a wide
//! directory, symbolic links (relative, absolute, dangling), several modes and nanosecond times.
//! [`Manifest::scan`] records what a tree holds so that discovery, backup and restore can be
//! compared with the truth on disk.

use crate::profile::FilesTree;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Object kind, as the ABI's `AAPI_OBJ_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

impl Kind {
    /// The `AAPI_OBJ_*` value.
    pub fn obj_type(self) -> u32 {
        match self {
            Kind::File => aapi_sdk::abi::AAPI_OBJ_FILE,
            Kind::Dir => aapi_sdk::abi::AAPI_OBJ_DIR,
            Kind::Symlink => aapi_sdk::abi::AAPI_OBJ_SYMLINK,
        }
    }
}

/// One object of a tree on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Kind.
    pub kind: Kind,
    /// Data size (file bytes, link target length, 0 for directories).
    pub size: u64,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Status change time in seconds.
    pub ctime: i64,
    /// SHA-256 of the data, hex.
    pub sha256: String,
}

/// Every object under some roots, keyed by absolute path bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest(pub BTreeMap<Vec<u8>, Entry>);

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_digest(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Describe one path without following a final symlink; `None` for other kinds (fifos...).
pub fn entry_of(path: &Path) -> io::Result<Option<Entry>> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let (kind, size, sha256) = if ft.is_symlink() {
        let target = fs::read_link(path)?;
        let t = target.as_os_str().as_bytes();
        (Kind::Symlink, t.len() as u64, sha256_hex(t))
    } else if ft.is_dir() {
        (Kind::Dir, 0, sha256_hex(b""))
    } else if ft.is_file() {
        (Kind::File, md.len(), file_digest(path)?)
    } else {
        return Ok(None);
    };
    Ok(Some(Entry {
        kind,
        size,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec() as u32),
        ctime: md.ctime(),
        sha256,
    }))
}

impl Manifest {
    /// Every object under each root (the root included), symlinks not followed.
    pub fn scan(roots: &[PathBuf]) -> io::Result<Manifest> {
        let mut m = BTreeMap::new();
        for root in roots {
            walk(root, &mut m)?;
        }
        Ok(Manifest(m))
    }

    /// The newest ctime of any object, in seconds.
    pub fn newest_ctime(&self) -> i64 {
        self.0.values().map(|e| e.ctime).max().unwrap_or(0)
    }
}

fn walk(path: &Path, out: &mut BTreeMap<Vec<u8>, Entry>) -> io::Result<()> {
    let Some(e) = entry_of(path)? else {
        return Ok(());
    };
    let is_dir = e.kind == Kind::Dir;
    out.insert(path.as_os_str().as_bytes().to_vec(), e);
    if is_dir {
        let mut names: Vec<PathBuf> = fs::read_dir(path)?
            .map(|d| d.map(|d| d.path()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for p in names {
            walk(&p, out)?;
        }
    }
    Ok(())
}

/// Deterministic pseudo-random bytes (xorshift64*), so big files do not compress to nothing.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn set_times(path: &Path, mtime: (i64, u32), atime: (i64, u32)) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as i64,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as i64,
        },
    ];
    // SAFETY: c is a valid C string and ts two valid timespecs, as utimensat requires.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Write the test tree under `root` (created; must not exist or be empty): `root/data` is the
/// main selection and `root/timing` the long call's. Times are set in the past with nanoseconds.
pub fn generate(root: &Path, p: &FilesTree) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let data = root.join("data");
    fs::create_dir(&data)?;
    write_file(&data.join("empty.txt"), b"", 0o644)?;
    write_file(&data.join("small.txt"), b"hello, conformance\n", 0o644)?;
    write_file(&data.join("name with spaces.txt"), b"spaces\n", 0o644)?;
    write_file(
        &data.join("new\nline.txt"),
        b"a newline in the name\n",
        0o640,
    )?;
    write_file(&data.join("tab\tname"), b"tab\n", 0o644)?;
    write_file(
        &data.join("ünïcödé-名前.txt"),
        "non-ASCII ✓\n".as_bytes(),
        0o644,
    )?;
    write_file(
        &data.join(OsStr::from_bytes(b"latin1-\xe9-not-utf8.bin")),
        &[0xe9, 0, 1, 2],
        0o644,
    )?;
    write_file(&data.join("exec.sh"), b"#!/bin/sh\necho hi\n", 0o755)?;
    write_file(&data.join("private.key"), b"not a secret\n", 0o600)?;
    write_file(&data.join("readonly.txt"), b"read only\n", 0o444)?;
    let big = pseudo_random(p.big_file_mib as usize * 1024 * 1024 + 12_345, 0x5eed);
    write_file(&data.join("big.bin"), &big, 0o644)?;
    symlink("small.txt", data.join("link-small"))?;
    symlink("no/such/target", data.join("link-dangling"))?;
    symlink("/nonexistent/absolute/target", data.join("link-absolute"))?;
    fs::create_dir(data.join("empty-dir"))?;
    fs::set_permissions(data.join("empty-dir"), fs::Permissions::from_mode(0o700))?;
    let wide = data.join("wide");
    fs::create_dir(&wide)?;
    for i in 0..p.wide_files {
        write_file(
            &wide.join(format!("f{i:05}")),
            format!("wide file {i}\n").as_bytes(),
            0o644,
        )?;
    }
    let mut deep = data.join("deep");
    fs::create_dir(&deep)?;
    for i in 0..p.depth {
        deep = deep.join(format!("level-{i:02}"));
        fs::create_dir(&deep)?;
    }
    write_file(&deep.join("leaf.txt"), b"deepest file\n", 0o644)?;
    let timing = root.join("timing");
    fs::create_dir(&timing)?;
    for i in 0..p.timing_files {
        write_file(&timing.join(format!("t{i:05}")), b"t\n", 0o644)?;
    }
    // Times last, deepest first, so that setting a child's time does not change its parent's.
    let m = Manifest::scan(&[root.to_path_buf()])?;
    let base = now_secs() - 86_400 * 3;
    for (i, path) in m.0.keys().rev().enumerate() {
        let mtime = (
            base - i as i64,
            100_000_000 + (i as u32 * 7_919) % 800_000_000,
        );
        let atime = (
            base + 3_600 - i as i64,
            200_000_000 + (i as u32 * 104_729) % 700_000_000,
        );
        set_times(Path::new(OsStr::from_bytes(path)), mtime, atime)?;
    }
    Ok(())
}

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Change the tree for the incremental check: append to `data/small.txt` and create
/// `data/added-later.txt`. Returns the paths changed.
pub fn change_for_incremental(root: &Path) -> io::Result<Vec<PathBuf>> {
    let data = root.join("data");
    let small = data.join("small.txt");
    let mut f = fs::OpenOptions::new().append(true).open(&small)?;
    f.write_all(b"changed for the incremental\n")?;
    let added = data.join("added-later.txt");
    write_file(&added, b"added after the full backup\n", 0o644)?;
    Ok(vec![small, added])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tree_has_the_promised_objects() {
        let dir = tempfile::tempdir().unwrap();
        let p = FilesTree {
            big_file_mib: 1,
            wide_files: 5,
            depth: 3,
            timing_files: 2,
        };
        generate(dir.path(), &p).unwrap();
        let m = Manifest::scan(&[dir.path().join("data")]).unwrap();
        let names: Vec<String> =
            m.0.keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
        assert!(names.iter().any(|n| n.ends_with("new\nline.txt")));
        assert!(names.iter().any(|n| n.ends_with("level-02/leaf.txt")));
        let big = m.0.iter().find(|(k, _)| k.ends_with(b"big.bin")).unwrap().1;
        assert!(big.size > 1024 * 1024);
        let link =
            m.0.iter()
                .find(|(k, _)| k.ends_with(b"link-dangling"))
                .unwrap()
                .1;
        assert_eq!(link.kind, Kind::Symlink);
        assert_eq!(link.size, "no/such/target".len() as u64);
        assert!(m.0.values().all(|e| e.mtime.0 < now_secs() - 86_000));
        assert_eq!(m.0.len(), 15 + 5 + 3 + 2 + 1 + 1);
    }
}
