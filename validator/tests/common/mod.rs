//! Test helpers: fixture plugins compiled from C, raw archive building (for entries the tar
//! crate's builder refuses), honest manifests for dishonest content, tree snapshots.
#![allow(dead_code)]

use aapi_validator::manifest::{
    Abi, Entry, FORMAT, FORMAT_VERSION, Kind, MANIFEST_PATH, Manifest, Plugin, Target,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A fixture plugin variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Every entry point and a correct marker.
    Good,
    /// The marker says ABI 2.0.
    WrongAbi,
    /// aapi_read_object is missing.
    MissingSymbol,
    /// Good, with e_machine patched to AArch64.
    WrongArch,
    /// Good, with the OS ABI byte patched to FreeBSD.
    WrongOs,
    /// The marker's magic is wrong.
    BadMagic,
    /// No marker.
    NoMarker,
    /// aapi_flush is data.
    FlushAsData,
    /// Linked as a position-independent executable exporting everything.
    Pie,
}

/// The bytes of a fixture plugin library (compiled once per test binary).
pub fn plugin(v: Variant) -> Vec<u8> {
    static LIBS: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    let libs = LIBS.get_or_init(|| {
        let out = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plugin.c");
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../include");
        let mut libs = BTreeMap::new();
        for (name, defs) in [
            ("good", vec!["-shared"]),
            ("wrong_abi", vec!["-shared", "-DWRONG_ABI"]),
            ("missing", vec!["-shared", "-DOMIT_READ_OBJECT"]),
            ("bad_magic", vec!["-shared", "-DBAD_MAGIC"]),
            ("no_marker", vec!["-shared", "-DNO_MARKER"]),
            ("flush_data", vec!["-shared", "-DFLUSH_AS_DATA"]),
            ("pie", vec!["-pie", "-rdynamic", "-DWITH_MAIN"]),
        ] {
            let so = out.path().join(format!("{name}.so"));
            let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
                .args([
                    "-fPIC",
                    "-fvisibility=hidden",
                    "-Wall",
                    "-Werror",
                    "-I",
                    include,
                ])
                .args(&defs)
                .arg("-o")
                .arg(&so)
                .arg(src)
                .status()
                .expect("a C compiler (cc) is needed for the validator tests");
            assert!(status.success(), "compiling the {name} fixture failed");
            libs.insert(name.to_string(), fs::read(&so).unwrap());
        }
        libs
    });
    match v {
        Variant::Good => libs["good"].clone(),
        Variant::WrongAbi => libs["wrong_abi"].clone(),
        Variant::MissingSymbol => libs["missing"].clone(),
        Variant::BadMagic => libs["bad_magic"].clone(),
        Variant::NoMarker => libs["no_marker"].clone(),
        Variant::FlushAsData => libs["flush_data"].clone(),
        Variant::Pie => libs["pie"].clone(),
        Variant::WrongOs => {
            let mut b = libs["good"].clone();
            b[7] = 9; // ELFOSABI_FREEBSD
            b
        }
        Variant::WrongArch => {
            let mut b = libs["good"].clone();
            assert_eq!(&b[..4], b"\x7fELF");
            b[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
            b
        }
    }
}

/// A payload entry for building packages by hand.
#[derive(Debug, Clone)]
pub enum E {
    /// Directory with mode.
    Dir(&'static str, u32),
    /// File with mode and content.
    File(&'static str, u32, Vec<u8>),
    /// Symlink and target.
    Link(&'static str, &'static str),
}

impl E {
    pub fn path(&self) -> &'static str {
        match self {
            E::Dir(p, _) | E::File(p, _, _) | E::Link(p, _) => p,
        }
    }
}

pub const ENTRY: &str = "lib/libdemo.so";

/// The payload of a good package with `lib` as the entry library.
pub fn payload(lib: Vec<u8>) -> Vec<E> {
    vec![
        E::File("README", 0o644, b"demo plugin\n".to_vec()),
        E::Dir("lib", 0o755),
        E::File(ENTRY, 0o755, lib),
        E::Link("lib/libdemo.so.1", "libdemo.so"),
    ]
}

/// A manifest that tells the truth about `entries`.
pub fn manifest_of(entries: &[E]) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        plugin: Plugin {
            name: "demo".into(),
            version: "1.0.0".into(),
            vendor: "Example Corp.".into(),
            workload_types: vec!["files".into()],
        },
        abi: Abi { major: 1, minor: 0 },
        target: Target {
            arch: "x86_64".into(),
            os: "linux".into(),
        },
        entry: ENTRY.into(),
        files: entries
            .iter()
            .map(|e| Entry {
                path: e.path().into(),
                kind: match e {
                    E::Dir(_, m) => Kind::Dir { mode: *m },
                    E::File(_, m, data) => Kind::File {
                        mode: *m,
                        size: data.len() as u64,
                        sha256: Sha256::digest(data).into(),
                    },
                    E::Link(_, t) => Kind::Symlink {
                        target: t.to_string(),
                    },
                },
            })
            .collect(),
    }
}

/// A tar archive built header by header, so that any name, type or size can be written.
pub struct Raw {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Raw {
    fn default() -> Self {
        Self::new()
    }
}

impl Raw {
    pub fn new() -> Raw {
        Raw {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// An archive with `manifest` first, then `entries`.
    pub fn package(manifest: &Manifest, entries: &[E]) -> Raw {
        let mut r = Raw::new();
        r.file(MANIFEST_PATH.as_bytes(), 0o644, &manifest.to_bytes());
        for e in entries {
            r.entry(e);
        }
        r
    }

    pub fn entry(&mut self, e: &E) {
        match e {
            E::Dir(p, m) => self.raw(
                format!("{p}/").as_bytes(),
                tar::EntryType::Directory,
                *m,
                b"",
                None,
            ),
            E::File(p, m, d) => self.file(p.as_bytes(), *m, d),
            E::Link(p, t) => self.symlink(p.as_bytes(), t.as_bytes()),
        }
    }

    pub fn file(&mut self, path: &[u8], mode: u32, data: &[u8]) {
        self.raw(path, tar::EntryType::Regular, mode, data, None);
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8]) {
        self.raw(path, tar::EntryType::Symlink, 0o777, b"", Some(target));
    }

    /// One header with exactly these bytes as name (at most 100) and link name.
    pub fn raw(
        &mut self,
        path: &[u8],
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&[u8]>,
    ) {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
    }

    /// A header claiming `size` bytes, followed by no data at all.
    pub fn claim(&mut self, path: &[u8], size: u64) {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        self.b.get_mut().extend_from_slice(h.as_bytes());
    }

    /// A pax extended header with these records, for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
    }

    /// A pax extended header with exactly these bytes as its records.
    pub fn pax_data(&mut self, data: &[u8]) {
        self.raw(b"PaxHeaders/f", tar::EntryType::XHeader, 0o644, data, None);
    }

    /// Append through the tar crate's own builder (long names and the like).
    pub fn builder(&mut self) -> &mut tar::Builder<Vec<u8>> {
        &mut self.b
    }

    /// The archive with its end-of-archive marker.
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// A good package's bytes (uncompressed), built by hand.
pub fn good_package() -> Vec<u8> {
    let entries = payload(plugin(Variant::Good));
    Raw::package(&manifest_of(&entries), &entries).finish()
}

/// Gzip `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Everything about a tree that a write could change: type, mode, owner, content, target.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let md = fs::symlink_metadata(p).unwrap();
        let what = if md.is_dir() {
            "dir".to_string()
        } else if md.file_type().is_symlink() {
            format!("link {}", fs::read_link(p).unwrap().display())
        } else {
            format!(
                "file {}",
                aapi_validator::manifest::hex(&Sha256::digest(fs::read(p).unwrap()))
            )
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{what} mode {:o} owner {}:{}",
                md.mode(),
                md.uid(),
                md.gid()
            ),
        );
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                walk(root, &n, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Run the validator binary.
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

/// Stdout of a run, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The finding codes a library verification of the package at `path` reports.
pub fn codes(path: &Path) -> Vec<aapi_validator::Code> {
    let r = aapi_validator::verify::verify(path, &Default::default()).unwrap();
    r.findings.iter().map(|f| f.code).collect()
}

/// A plugin directory as a vendor has it: the library, a symlink to it, a README and the
/// metadata file.
pub fn plugin_dir(v: Variant) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("lib")).unwrap();
    fs::set_permissions(d.path().join("lib"), fs::Permissions::from_mode(0o755)).unwrap();
    let lib = d.path().join(ENTRY);
    fs::write(&lib, plugin(v)).unwrap();
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("libdemo.so", d.path().join("lib/libdemo.so.1")).unwrap();
    fs::write(d.path().join("README"), "demo plugin\n").unwrap();
    fs::write(
        d.path().join("aapi-plugin.json"),
        r#"{"name": "demo", "version": "1.0.0", "vendor": "Example Corp.", "workload_types": ["files"]}"#,
    )
    .unwrap();
    for f in ["README", "aapi-plugin.json"] {
        fs::set_permissions(d.path().join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    d
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run the validator binary `bin` as a user without root's powers: `nobody` (uid and gid
/// 65534, no supplementary groups) when the tests run as root, else the tests' own user. An
/// error means the binary could not be started as that user.
pub fn run_unprivileged(
    bin: &Path,
    args: &[&dyn AsRef<std::ffi::OsStr>],
) -> std::io::Result<std::process::Output> {
    let mut cmd = Command::new(bin);
    cmd.args(args.iter().map(|a| a.as_ref()));
    if is_root() {
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
    cmd.output()
}

/// A copy of the validator binary in `dir` (made reachable by every user), which
/// [`run_unprivileged`] can start wherever the build lies; None (the caller skips its test,
/// saying why) when it cannot be started as that user.
pub fn unprivileged_bin(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("aapi-validator");
    fs::copy(env!("CARGO_BIN_EXE_aapi-validator"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    match run_unprivileged(&bin, &[&"codes"]) {
        Ok(_) => Some(bin),
        Err(e) => {
            eprintln!(
                "skipped: cannot run {} as an unprivileged user ({e}); set TMPDIR to a directory every user can reach",
                bin.display()
            );
            None
        }
    }
}

/// Run `body` on a thread of its own in a mount namespace of its own, with a tmpfs of
/// `options` mounted on `at`: the tmpfs is seen only by that thread and the processes it
/// starts, and goes away with them. `Err` says why this process cannot do that (it needs
/// CAP_SYS_ADMIN).
pub fn with_tmpfs(at: &Path, options: &str, body: impl FnOnce() + Send) -> Result<(), String> {
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            // SAFETY: unshare takes flags only; CLONE_NEWNS is allowed in a threaded process
            // (it unshares this thread's file system attributes).
            if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                return Err(format!(
                    "cannot make a mount namespace: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // Mounts made here must not propagate to the namespace the thread came from.
            mount(Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, "")
                .map_err(|e| format!("cannot make / private in the new namespace: {e}"))?;
            mount(at, Some("tmpfs"), 0, options)
                .map_err(|e| format!("cannot mount a tmpfs: {e}"))?;
            body();
            Ok(())
        });
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// mount(2) on `at`: a new file system of type `fs`, or with `fs` None a change of flags.
pub fn mount(
    at: &Path,
    fs: Option<&str>,
    flags: libc::c_ulong,
    options: &str,
) -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let target = c(at.to_str().unwrap());
    let fs = fs.map(c);
    let data = c(options);
    let fs_ptr = fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr());
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where
    // mount(2) allows it (the source of a tmpfs or of a propagation change is ignored).
    if unsafe { libc::mount(fs_ptr, target.as_ptr(), fs_ptr, flags, data.as_ptr().cast()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Inodes in use on the file system of `at`.
pub fn inodes_used(at: &Path) -> libc::fsfilcnt_t {
    let p = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
    // SAFETY: statvfs is plain data, for which all zeros is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: p is a NUL-terminated string and st a valid out-pointer, both outliving the call.
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0);
    st.f_files - st.f_ffree
}
