//! An entry library larger than 1 GiB is parsed like any other, in a tree and in a package.
//! The library is a real one extended with a hole (trailing zeros after its section headers,
//! which the ELF checks ignore), so the files are sparse: no disk space, seconds of hashing.

mod common;

use aapi_validator::manifest::{Abi, Kind, MANIFEST_PATH, Manifest};
use common::*;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Over 1 GiB, and not a multiple of the page or tar block size.
const BIG: u64 = (1 << 30) + (16 << 20) + 4321;

/// SHA-256 of `lib` followed by zeros up to [`BIG`] bytes.
fn big_digest(lib: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(lib);
    let zeros = vec![0u8; 1 << 20];
    let mut left = BIG - lib.len() as u64;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

/// The good package's manifest, with the entry library grown to [`BIG`] bytes.
fn big_manifest(lib: &[u8]) -> Manifest {
    let mut m = manifest_of(&payload(lib.to_vec()));
    let sha256 = big_digest(lib);
    for e in &mut m.files {
        if e.path == ENTRY {
            e.kind = Kind::File {
                mode: 0o755,
                size: BIG,
                sha256,
            };
        }
    }
    m
}

/// Write `lib` at the start of a sparse file of `BIG` bytes.
fn write_big(f: &mut File, lib: &[u8]) {
    let start = f.stream_position().unwrap();
    f.write_all(lib).unwrap();
    f.seek(SeekFrom::Start(start + BIG)).unwrap();
}

/// The package as an unpacked tree at `dir`.
fn big_tree(dir: &Path, lib: &[u8], m: &Manifest) {
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    fs::create_dir_all(dir.join(".aapi")).unwrap();
    fs::write(dir.join(MANIFEST_PATH), m.to_bytes()).unwrap();
    fs::write(dir.join("README"), "demo plugin\n").unwrap();
    mode(&dir.join("README"), 0o644);
    fs::create_dir(dir.join("lib")).unwrap();
    mode(&dir.join("lib"), 0o755);
    let mut f = File::create(dir.join(ENTRY)).unwrap();
    write_big(&mut f, lib);
    f.set_len(BIG).unwrap();
    f.sync_all().unwrap();
    mode(&dir.join(ENTRY), 0o755);
    std::os::unix::fs::symlink("libdemo.so", dir.join("lib/libdemo.so.1")).unwrap();
}

/// A tar header.
fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    if kind == tar::EntryType::Symlink {
        h.set_link_name("libdemo.so").unwrap();
    }
    h.set_cksum();
    h
}

/// The package as an uncompressed archive at `pkg`, the library's hole kept as a hole.
fn big_package(pkg: &Path, lib: &[u8], m: &Manifest) {
    let mut f = File::create(pkg).unwrap();
    let block = |f: &mut File, h: &tar::Header, data: &[u8]| {
        f.write_all(h.as_bytes()).unwrap();
        f.write_all(data).unwrap();
        f.write_all(&vec![0u8; (512 - data.len() % 512) % 512])
            .unwrap();
    };
    let manifest = m.to_bytes();
    block(
        &mut f,
        &header(
            MANIFEST_PATH,
            tar::EntryType::Regular,
            0o644,
            manifest.len() as u64,
        ),
        &manifest,
    );
    block(
        &mut f,
        &header("README", tar::EntryType::Regular, 0o644, 12),
        b"demo plugin\n",
    );
    block(
        &mut f,
        &header("lib/", tar::EntryType::Directory, 0o755, 0),
        b"",
    );
    f.write_all(header(ENTRY, tar::EntryType::Regular, 0o755, BIG).as_bytes())
        .unwrap();
    write_big(&mut f, lib);
    let pad = (512 - BIG % 512) % 512;
    f.seek(SeekFrom::Current(pad as i64)).unwrap();
    block(
        &mut f,
        &header("lib/libdemo.so.1", tar::EntryType::Symlink, 0o777, 0),
        b"",
    );
    f.write_all(&[0u8; 1024]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn an_entry_library_over_1_gib_is_parsed() {
    let w = tempfile::tempdir().unwrap();
    let lib = plugin(Variant::Good);
    let mut m = big_manifest(&lib);
    // Everything agrees but the ABI: the one finding can only come from the marker the
    // library carries, so the library was parsed (not refused for its size, not skipped).
    m.abi = Abi { major: 1, minor: 7 };
    let want =
        "ABI_MISMATCH            lib/libdemo.so: marker records ABI 1.0, the manifest says 1.7\n";

    let tree = w.path().join("tree");
    big_tree(&tree, &lib, &m);
    let pkg = w.path().join("big.aapkg");
    big_package(&pkg, &lib, &m);
    for f in [tree.join(ENTRY), pkg.clone()] {
        let md = fs::metadata(&f).unwrap();
        assert!(md.len() >= BIG);
        assert!(md.blocks() * 512 < 1 << 20, "{} is sparse", f.display());
    }

    for subject in [&tree, &pkg] {
        let o = run(&[&"verify", subject]);
        assert_eq!(
            stdout(&o),
            format!("{want}INVALID {} (1 finding)\n", subject.display())
        );
        assert_eq!(o.status.code(), Some(1));
    }
}
