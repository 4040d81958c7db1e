//! `pack`: build a package from a plugin's files, and the archive writer `sign` shares.

use crate::archive::{Package, Sink, SinkError};
use crate::elf;
use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::hash;
use crate::hash::CopyError;
use crate::manifest::{
    Abi, Entry, FORMAT, FORMAT_VERSION, Kind, MANIFEST_PATH, META_DIR, Manifest, Plugin,
    SIGNATURE_PATH, Target,
};
use crate::map::Map;
use crate::output::{self, Cmd, not_written};
use crate::paths::{self, Node};
use crate::scan::{ItemKind, Limits};
use crate::sign::SecretKey;
use crate::tree::{self, Purpose};
use crate::verify::{self, Report, mode_findings};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the vendor's metadata file that `pack` reads from the plugin directory.
pub const METADATA_FILE: &str = "aapi-plugin.json";

/// The vendor's metadata file: every field optional, command-line flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Plugin name.
    pub name: Option<String>,
    /// Plugin version.
    pub version: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Workload types the plugin claims.
    pub workload_types: Option<Vec<String>>,
    /// Path of the entry library inside the directory.
    pub entry: Option<String>,
}

/// How to pack.
#[derive(Default)]
pub struct Options {
    /// Metadata from flags (wins over the metadata file).
    pub metadata: Metadata,
    /// Metadata file to read instead of `DIR/aapi-plugin.json`.
    pub metadata_file: Option<PathBuf>,
    /// Compress with gzip.
    pub gzip: bool,
    /// Sign with this key.
    pub key: Option<SecretKey>,
    /// Bounds (the package must pass `verify` with them).
    pub limits: Limits,
}

/// Pack `dir` into the package `out`. `Ok(Err(findings))` when the files cannot make a valid
/// package (nothing is written then); `Ok(Ok(report))` is the verification of the package
/// written.
pub fn pack(
    dir: &Path,
    out: &Path,
    opts: &Options,
) -> Result<std::result::Result<Report, Vec<Finding>>> {
    let out = &output::follow_links(out);
    let parent = output::out_dir(out, Cmd::Pack)?;
    if let (Ok(d), Ok(p)) = (dir.canonicalize(), parent.canonicalize())
        && p.starts_with(&d)
    {
        return Err(Error::new(format!(
            "{} would be inside {}, the directory being packed; choose an -o outside it",
            out.display(),
            dir.display()
        )));
    }
    let mut scan = tree::scan(dir, &opts.limits, Purpose::Pack)?;
    let mut findings = std::mem::take(&mut scan.findings);
    for item in &mut scan.items {
        if !matches!(item.kind, ItemKind::Symlink { .. }) {
            item.mode &= !0o022;
            findings.extend(mode_findings(&item.path, item.mode));
        }
    }
    let nodes: BTreeMap<&str, Node<'_>> = scan
        .items
        .iter()
        .map(|i| {
            let n = match &i.kind {
                ItemKind::Dir => Node::Dir,
                ItemKind::File { .. } => Node::File,
                ItemKind::Symlink { target } => Node::Symlink(target),
            };
            (i.path.as_str(), n)
        })
        .collect();
    findings.extend(paths::link_findings(&nodes));
    if !findings.is_empty() || !scan.complete {
        return Ok(Err(findings));
    }

    let meta = metadata(dir, opts)?;
    let digests = verify::digests(dir, &scan, None, &mut findings)?;
    if !findings.is_empty() {
        return Ok(Err(findings));
    }
    let entry = match &meta.entry {
        Some(e) => e.clone(),
        None => find_entry(&scan)?,
    };
    let Some(item) = scan.items.iter().find(|i| i.path == entry) else {
        return Err(Error::new(format!(
            "entry library {entry} is not in {}",
            dir.display()
        )));
    };
    let ItemKind::File {
        content: crate::scan::Content::Path(p),
        ..
    } = &item.kind
    else {
        return Err(Error::new(format!(
            "entry library {entry} is not a regular file"
        )));
    };
    let lib = map_library(p)?;
    let (facts, elf_findings) = elf::check_mapped(&entry, &lib, None);
    if !elf_findings.is_empty() {
        return Ok(Err(elf_findings));
    }
    let (Some(arch), Some((major, minor))) = (facts.arch, facts.abi) else {
        unreachable!("a library without findings has a known arch and a marker")
    };

    let missing = |what: &str, flag: &str| {
        Error::new(format!(
            "the plugin's {what} is not given: use {flag} or put it in {METADATA_FILE}"
        ))
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        plugin: Plugin {
            name: meta.name.clone().ok_or_else(|| missing("name", "--name"))?,
            version: meta
                .version
                .clone()
                .ok_or_else(|| missing("version", "--plugin-version"))?,
            vendor: meta
                .vendor
                .clone()
                .ok_or_else(|| missing("vendor", "--vendor"))?,
            workload_types: meta
                .workload_types
                .clone()
                .filter(|w| !w.is_empty())
                .ok_or_else(|| missing("workload types", "--workload-type"))?,
        },
        abi: Abi { major, minor },
        target: Target {
            arch: arch.name.into(),
            os: "linux".into(),
        },
        entry,
        files: scan
            .items
            .iter()
            .zip(&digests)
            .map(|(i, d)| Entry {
                path: i.path.clone(),
                kind: match &i.kind {
                    ItemKind::Dir => Kind::Dir { mode: i.mode },
                    ItemKind::File { size, .. } => Kind::File {
                        mode: i.mode,
                        size: *size,
                        sha256: d.expect("every file was hashed"),
                    },
                    ItemKind::Symlink { target } => Kind::Symlink {
                        target: target.clone(),
                    },
                },
            })
            .collect(),
    };
    let errors = manifest.schema_errors();
    if !errors.is_empty() {
        return Err(Error::new(format!("cannot pack: {}", errors.join("; "))));
    }
    let bytes = manifest.to_bytes();
    let sig = opts.key.as_ref().map(|k| k.sign(&bytes, &manifest));

    let failed = |e| not_written(Cmd::Pack, "the package", out, parent, e);
    let tmp = output::temp_file(parent, ".aapi-pack-").map_err(failed)?;
    let file = tmp.as_file().try_clone().map_err(failed)?;
    let mut w = Writer::new(file, opts.gzip, &bytes, sig.as_deref()).map_err(failed)?;
    for (item, entry) in scan.items.iter().zip(&manifest.files) {
        match (&item.kind, &entry.kind) {
            (ItemKind::Dir, Kind::Dir { mode }) => w.dir(&entry.path, *mode).map_err(failed)?,
            (ItemKind::Symlink { target }, _) => w.symlink(&entry.path, target).map_err(failed)?,
            (
                ItemKind::File {
                    content: crate::scan::Content::Path(p),
                    ..
                },
                Kind::File { mode, size, .. },
            ) => {
                let mut f = hash::open_nofollow(p).map_err(|e| Error::read(p, e))?;
                match w.file(&entry.path, *mode, *size, &mut f) {
                    Ok(()) => {}
                    Err(CopyError::Write(e)) => return Err(failed(e)),
                    Err(CopyError::Read(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(Error::new(format!(
                            "{} became shorter while it was packed; {}: make sure nothing changes {} while it is packed, then run `pack` again",
                            p.display(),
                            output::unchanged(out),
                            dir.display()
                        )));
                    }
                    Err(CopyError::Read(e)) => return Err(Error::read(p, e)),
                }
            }
            _ => unreachable!("the manifest was made from these items"),
        }
    }
    w.finish().map_err(failed)?;

    let vopts = verify::Options {
        limits: opts.limits,
        keys: opts.key.iter().map(SecretKey::public).collect(),
        ..Default::default()
    };
    let report = verify::verify_package(tmp.path(), &vopts)?;
    if !report.is_valid() {
        return Ok(Err(report.findings));
    }
    persist(tmp, out, parent, Cmd::Pack, "the package")?;
    Ok(Ok(report))
}

/// Sign the package `pkg` with `key`, writing the signed package to `out` (which may be `pkg`:
/// it is replaced atomically). The package must verify first; `Ok(Err(findings))` otherwise.
pub fn sign(
    pkg: &Path,
    out: &Path,
    key: &SecretKey,
    limits: &Limits,
) -> Result<std::result::Result<Report, Vec<Finding>>> {
    let out = &output::follow_links(out);
    let vopts = verify::Options {
        limits: *limits,
        keys: Vec::new(),
        ..Default::default()
    };
    let first = verify::verify_package(pkg, &vopts)?;
    // An earlier signature is replaced, whatever it is.
    let unsigned = |f: &[Finding]| f.iter().all(|f| f.code.is_signature());
    if !unsigned(&first.findings) {
        return Ok(Err(first.findings));
    }
    let (Some(m), Some(bytes)) = (&first.manifest, &first.manifest_bytes) else {
        unreachable!("a valid package has a manifest")
    };
    let sig = key.sign(bytes, m);
    let src = Package::open(pkg)?;
    let parent = output::out_dir(out, Cmd::Sign)?;
    let failed = |e| not_written(Cmd::Sign, SIGNED, out, parent, e);
    let tmp = output::temp_file(parent, ".aapi-sign-").map_err(failed)?;
    let file = tmp.as_file().try_clone().map_err(failed)?;
    let mut w = Writer::new(file, src.is_gzip(), bytes, Some(&sig)).map_err(failed)?;
    let scan = src.stream(
        pkg,
        limits,
        &mut Copy {
            w: &mut w,
            out,
            parent,
        },
    )?;
    if let Some(e) = scan.stop {
        return Err(e);
    }
    if !unsigned(&scan.findings) || scan.manifest.as_ref() != Some(bytes) {
        return Err(Error::new(format!(
            "{} changed while it was being signed; {}: make sure nothing writes to it, then run `sign` again",
            pkg.display(),
            output::unchanged(out)
        )));
    }
    w.finish().map_err(failed)?;
    let vopts = verify::Options {
        keys: vec![key.public()],
        ..vopts
    };
    let report = verify::verify_package(tmp.path(), &vopts)?;
    if !report.is_valid() {
        return Ok(Err(report.findings));
    }
    persist(tmp, out, parent, Cmd::Sign, SIGNED)?;
    Ok(Ok(report))
}

/// What `sign` writes, as its errors name it.
const SIGNED: &str = "the signed package";

/// Copies a package's payload into a [`Writer`] writing the signed package `out` (in `parent`).
struct Copy<'a> {
    w: &'a mut Writer,
    out: &'a Path,
    parent: &'a Path,
}

impl Copy<'_> {
    fn write_failed(&self, e: io::Error) -> SinkError {
        SinkError::Stop(not_written(Cmd::Sign, SIGNED, self.out, self.parent, e))
    }
}

impl Sink for Copy<'_> {
    fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> std::result::Result<hash::Hashed, SinkError> {
        let mut tee = hash::Tee::new(data);
        match self.w.file(path, mode, size, &mut tee) {
            Ok(()) => Ok(tee.finish()),
            Err(CopyError::Read(e)) => Err(SinkError::Read(e)),
            Err(CopyError::Write(e)) => Err(self.write_failed(e)),
        }
    }
    fn dir(&mut self, path: &str, mode: u32) -> std::result::Result<(), SinkError> {
        self.w.dir(path, mode).map_err(|e| self.write_failed(e))
    }
    fn symlink(&mut self, path: &str, target: &str) -> std::result::Result<(), SinkError> {
        self.w
            .symlink(path, target)
            .map_err(|e| self.write_failed(e))
    }
}

/// Give the finished temporary package its final name `out`, atomically; `what` and `cmd` are
/// for the error (`out` is in `parent`). A file `out` replaces keeps its permission bits (and,
/// for root, its owner and group); a new one gets 0666 less the umask, as any new file.
fn persist(
    tmp: tempfile::NamedTempFile,
    out: &Path,
    parent: &Path,
    cmd: Cmd,
    what: &str,
) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = tmp.as_file();
    let (mode, owner) = match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_file() => (m.mode() & 0o777, Some((m.uid(), m.gid()))),
        _ => (0o666 & !umask(), None),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    owner
        .filter(|_| root)
        .map_or(Ok(()), |(uid, gid)| {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))
        })
        .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|_| f.sync_all())
        .map_err(|e| not_written(cmd, what, out, parent, e))?;
    tmp.persist(out).map_err(|e| {
        // Remove the temporary file before the error says that nothing was written.
        let error = e.error;
        drop(e.file);
        not_written(cmd, what, out, parent, error)
    })?;
    Ok(())
}

/// This process's file mode creation mask.
fn umask() -> libc::mode_t {
    // SAFETY: umask cannot fail; the mask is put back at once. No other thread of this
    // process creates files meanwhile (the hashing threads are done when a package is
    // written).
    unsafe {
        let mask = libc::umask(0o077);
        libc::umask(mask);
        mask
    }
}

fn metadata(dir: &Path, opts: &Options) -> Result<Metadata> {
    let path = opts
        .metadata_file
        .clone()
        .unwrap_or_else(|| dir.join(METADATA_FILE));
    let mut m: Metadata = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::new(format!(
                "{} is not plugin metadata: {e}; fix it: a JSON object with some of the fields name, version, vendor, workload_types (a list) and entry",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound && opts.metadata_file.is_none() => {
            Metadata::default()
        }
        Err(e) => return Err(Error::read(&path, e)),
    };
    let f = &opts.metadata;
    m.name = f.name.clone().or(m.name);
    m.version = f.version.clone().or(m.version);
    m.vendor = f.vendor.clone().or(m.vendor);
    m.workload_types = f
        .workload_types
        .clone()
        .filter(|w| !w.is_empty())
        .or(m.workload_types);
    m.entry = f.entry.clone().or(m.entry);
    Ok(m)
}

/// Map a library to parse it.
fn map_library(p: &Path) -> Result<Map> {
    let f = hash::open_nofollow(p).map_err(|e| Error::read(p, e))?;
    let len = f.metadata().map_err(|e| Error::read(p, e))?.len();
    Map::new(&f, 0, len).map_err(|e| verify::map_failed(p, e, "pack"))
}

/// The one regular file that parses as ELF and exports the ABI marker or `aapi_pgn_init`.
fn find_entry(scan: &crate::scan::Scan) -> Result<String> {
    let mut found = Vec::new();
    for item in &scan.items {
        let ItemKind::File {
            content: crate::scan::Content::Path(p),
            ..
        } = &item.kind
        else {
            continue;
        };
        let mut head = [0u8; 4];
        let read = hash::open_nofollow(p).and_then(|mut f| f.read_exact(&mut head));
        match read {
            Ok(()) if head == *b"\x7fELF" => {}
            // Shorter than an ELF header: not a library.
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
            Err(e) => return Err(Error::read(p, e)),
        }
        let lib = map_library(p)?;
        let (facts, findings) = elf::check_mapped(&item.path, &lib, None);
        let exports = facts.abi.is_some()
            || !findings.iter().any(|f| {
                f.code == crate::Code::ELF_SYMBOL_MISSING && f.message.starts_with("aapi_pgn_init ")
            });
        let unreadable = [crate::Code::ELF_INVALID, crate::Code::FILE_SIZE];
        if exports && !findings.iter().any(|f| unreadable.contains(&f.code)) {
            found.push(item.path.clone());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::new(
            "no shared library here exports the aapi entry points or marker; name it with --entry",
        )),
        _ => Err(Error::new(format!(
            "several libraries export aapi symbols ({}); name the entry library with --entry",
            found.join(", ")
        ))),
    }
}

enum Out {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(buf),
            Out::Gzip(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Gzip(w) => w.flush(),
        }
    }
}

/// Writes a package: deterministic headers (owner root:root, mtime 0), manifest first.
pub(crate) struct Writer {
    tar: tar::Builder<Out>,
}

impl Writer {
    /// Start a package in `file` with the manifest (and signature) entries.
    pub(crate) fn new(
        file: File,
        gzip: bool,
        manifest: &[u8],
        sig: Option<&[u8]>,
    ) -> io::Result<Writer> {
        let out = if gzip {
            Out::Gzip(GzEncoder::new(BufWriter::new(file), Compression::default()))
        } else {
            Out::Plain(BufWriter::new(file))
        };
        let tar = tar::Builder::new(out);
        let mut w = Writer { tar };
        // Read from memory: only writing can fail.
        let written = |r| match r {
            Err(CopyError::Read(e) | CopyError::Write(e)) => Err(e),
            Ok(()) => Ok(()),
        };
        written(w.file(
            MANIFEST_PATH,
            0o644,
            manifest.len() as u64,
            &mut &manifest[..],
        ))?;
        if let Some(sig) = sig {
            written(w.file(SIGNATURE_PATH, 0o644, sig.len() as u64, &mut &sig[..]))?;
        }
        // `tar -xf` makes `.aapi` for the manifest with the unpacker's umask (0775 under umask
        // 002, which `verify DIR` refuses); the entry gives it its mode.
        w.dir(META_DIR, 0o755)?;
        Ok(w)
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        // Names are ASCII and short: these cannot fail.
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        h
    }

    /// A directory.
    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, format!("{path}/"), io::empty())
    }

    /// A symlink, its target written byte for byte as the manifest records it (`lib/.` stays
    /// `lib/.`, `lib//x` stays `lib//x`): in the header when it fits, else in a GNU long link
    /// name.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        if h.set_link_name_literal(target).is_err() {
            let mut long =
                Self::header(tar::EntryType::GNULongLink, 0o644, target.len() as u64 + 1);
            if let Some(gnu) = long.as_gnu_mut() {
                gnu.name[..13].copy_from_slice(b"././@LongLink");
            }
            long.set_cksum();
            self.tar
                .append(&long, target.as_bytes().chain(&[0u8][..]))?;
        }
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// A regular file of exactly `size` bytes from `data`. A failure to read `data` (an
    /// `UnexpectedEof` when it has fewer than `size` bytes) is told apart from a failure to
    /// write the package.
    pub(crate) fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> std::result::Result<(), CopyError> {
        let mut h = Self::header(tar::EntryType::Regular, mode, size);
        let mut exact = Exact {
            inner: data,
            left: size,
            failed: false,
        };
        match self.tar.append_data(&mut h, path, &mut exact) {
            Err(e) if exact.failed => return Err(CopyError::Read(e)),
            Err(e) => return Err(CopyError::Write(e)),
            Ok(()) => {}
        }
        if exact.left != 0 {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path} has fewer bytes than its size"),
            )));
        }
        Ok(())
    }

    /// Write the end of the archive and flush everything to disk.
    pub(crate) fn finish(self) -> io::Result<()> {
        let file = match self.tar.into_inner()? {
            Out::Plain(w) => w.into_inner().map_err(|e| e.into_error())?,
            Out::Gzip(w) => w.finish()?.into_inner().map_err(|e| e.into_error())?,
        };
        file.sync_all()
    }
}

/// Reads at most `left` bytes; remembers whether reading failed.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    failed: bool,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want]).inspect_err(|e| {
            self.failed = e.kind() != io::ErrorKind::Interrupted;
        })?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that fails with `EIO` after `ok` bytes.
    struct Failing {
        ok: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(7);
            self.ok -= n;
            Ok(n)
        }
    }

    fn writer(file: File) -> Writer {
        Writer::new(file, false, b"{}", None).unwrap()
    }

    #[test]
    fn a_failed_read_of_a_file_is_told_apart_from_a_failed_write_of_the_package() {
        let mut w = writer(tempfile::tempfile().unwrap());
        match w.file("a", 0o644, 100_000, &mut Failing { ok: 50_000 }) {
            Err(CopyError::Read(e)) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            other => panic!("{other:?}"),
        }
        let mut w = writer(tempfile::tempfile().unwrap());
        match w.file("b", 0o644, 100, &mut &[1u8; 40][..]) {
            Err(CopyError::Read(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
        // /dev/full fails every write with ENOSPC.
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut w = writer(full);
        match w.file("c", 0o644, 1 << 20, &mut Failing { ok: 1 << 20 }) {
            Err(CopyError::Write(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOSPC)),
            other => panic!("{other:?}"),
        }
    }
}
