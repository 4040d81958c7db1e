//! Reading packages: a tar archive, optionally gzip-compressed, read with the `tar` crate under
//! a byte budget so that no header, extension or file can make the reader go past its bounds.

use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::hash::{self, CopyError, Hashed};
use crate::headers::{self, round_up};
use crate::manifest::{MANIFEST_PATH, META_DIR, Manifest, SIGNATURE_PATH};
use crate::paths;
use crate::scan::{
    Content, Item, ItemKind, Limits, MAX_HEADER_EXTENSION, MAX_MANIFEST, MAX_SIGNATURE, Meta,
    RATIO_FLOOR, Scan,
};
use flate2::bufread::GzDecoder;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;
use tar::{Archive, Entries, EntryType};

/// Most bytes accepted after the end-of-archive marker (all of them zero).
const MAX_TRAILER: u64 = 1 << 20;

/// The shared byte budget of one pass over an archive.
struct Budget {
    /// Bytes consumed from the (decompressed) tar stream.
    pos: Cell<u64>,
    /// Position the stream may not pass, and the finding when a read tries to.
    limit: Cell<u64>,
    limit_finding: RefCell<(Code, String)>,
    /// The finding of the limit that stopped the pass.
    tripped: RefCell<Option<Finding>>,
    /// A read returned end of file.
    eof: Cell<bool>,
    /// An error reading the package file itself (not its contents): the pass cannot go on.
    io_error: RefCell<Option<io::Error>>,
    /// Bytes read from the package file (for the compression ratio).
    compressed: Cell<u64>,
    /// Compression ratio limit, for compressed packages.
    max_ratio: Option<u64>,
    /// Stream position from which the bytes read are kept in `captured` (`u64::MAX`: none are).
    capture_from: Cell<u64>,
    /// The bytes read from `capture_from` on: the headers of the next entry.
    captured: RefCell<Vec<u8>>,
}

impl Budget {
    fn set_limit(&self, limit: u64, code: Code, why: impl Into<String>) {
        self.limit.set(limit);
        *self.limit_finding.borrow_mut() = (code, why.into());
    }

    fn trip(&self, f: Finding) -> io::Error {
        self.tripped.borrow_mut().get_or_insert(f);
        io::Error::other("package limit exceeded")
    }

    /// Keep the bytes read from position `from` on, until [`Budget::take_captured`].
    fn capture(&self, from: u64) {
        self.captured.borrow_mut().clear();
        self.capture_from.set(from);
    }

    /// Stop keeping bytes; the ones kept.
    fn take_captured(&self) -> Vec<u8> {
        self.capture_from.set(u64::MAX);
        self.captured.take()
    }

    /// Keep what of `bytes`, read at stream position `at`, lies from `capture_from` on.
    fn keep(&self, at: u64, bytes: &[u8]) {
        let from = self.capture_from.get();
        let end = at + bytes.len() as u64;
        if end > from {
            let skip = from.saturating_sub(at) as usize;
            self.captured.borrow_mut().extend_from_slice(&bytes[skip..]);
        }
    }
}

/// The tar stream, metered against the budget.
struct Limited<R> {
    inner: R,
    b: Rc<Budget>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let b = &self.b;
        let room = b.limit.get().saturating_sub(b.pos.get());
        if room == 0 {
            let (code, why) = b.limit_finding.borrow().clone();
            return Err(b.trip(Finding::whole(code, why)));
        }
        let want = (buf.len() as u64).min(room) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            b.eof.set(true);
        }
        b.keep(b.pos.get(), &buf[..n]);
        let pos = b.pos.get() + n as u64;
        b.pos.set(pos);
        if let Some(ratio) = b.max_ratio {
            let packed = b.compressed.get().max(1);
            if pos > RATIO_FLOOR && pos / packed > ratio {
                return Err(b.trip(Finding::whole(
                    Code::LIMIT_COMPRESSION_RATIO,
                    format!(
                        "{pos} bytes decompressed from {packed}: expands more than {ratio} times"
                    ),
                )));
            }
        }
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Limited<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let from = self.b.pos.get();
        let at = self.inner.seek(to)?;
        self.b.pos.set(at);
        // The `tar` crate seeks over data it does not read and the padding after it: the
        // padding is read all the same when it is to be kept (it is less than a block).
        let keep_from = from.max(self.b.capture_from.get());
        if at > keep_from && at - keep_from < 512 {
            let mut gap = vec![0u8; (at - keep_from) as usize];
            self.inner.seek(SeekFrom::Start(keep_from))?;
            let mut n = 0;
            while n < gap.len() {
                match self.inner.read(&mut gap[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.b.keep(keep_from, &gap[..n]);
            self.inner.seek(SeekFrom::Start(at))?;
        }
        Ok(at)
    }
}

/// The package file, counting what is read and keeping its I/O errors apart.
struct Counting {
    file: File,
    b: Rc<Budget>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Ok(n) => {
                self.b.compressed.set(self.b.compressed.get() + n as u64);
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.b.io_error.borrow_mut().get_or_insert(e);
                Err(copy)
            }
        }
    }
}

impl Seek for Counting {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}

/// Where the walk sends file contents when it streams them.
pub(crate) trait Sink {
    /// Consume a regular file's `size` bytes from `data`; return their digest and count.
    fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> std::result::Result<Hashed, SinkError>;
    /// A directory.
    fn dir(&mut self, path: &str, mode: u32) -> std::result::Result<(), SinkError>;
    /// A symlink.
    fn symlink(&mut self, path: &str, target: &str) -> std::result::Result<(), SinkError>;
    /// The manifest names `entry` as its entry library (told before the payload streams).
    fn entry_library(&mut self, _entry: &str) {}
}

/// Why a sink failed.
pub(crate) enum SinkError {
    /// Reading the archive failed (judged like any archive error).
    Read(io::Error),
    /// The sink itself failed (writing, or the archive no longer matches what was verified).
    Stop(Error),
}

/// Copy a regular file's data from the archive into `to`, hashing it: a read failure is the
/// archive's, a write failure is the sink's, as `write_failed` tells it.
pub(crate) fn copy_data(
    data: &mut dyn Read,
    to: &mut dyn Write,
    write_failed: impl FnOnce(io::Error) -> SinkError,
) -> std::result::Result<Hashed, SinkError> {
    hash::copy(data, to).map_err(|e| match e {
        CopyError::Read(e) => SinkError::Read(e),
        CopyError::Write(e) => write_failed(e),
    })
}

/// The sink of `verify`: hashes, and copies the entry library to an unnamed temporary file
/// (parsed there later, through a memory map).
struct Hasher {
    entry: Option<String>,
    entry_file: Option<File>,
}

impl Sink for Hasher {
    fn file(
        &mut self,
        path: &str,
        _mode: u32,
        _size: u64,
        data: &mut dyn Read,
    ) -> std::result::Result<Hashed, SinkError> {
        if self.entry.as_deref() != Some(path) {
            return hash::reader(data).map_err(SinkError::Read);
        }
        let copy_failed = |e: io::Error| {
            SinkError::Stop(
                Error::io(
                    &format!("cannot copy the entry library {path} to a temporary file in"),
                    &std::env::temp_dir(),
                    e,
                )
                .then("set TMPDIR to a directory on a file system with room for it"),
            )
        };
        let mut copy = tempfile::tempfile().map_err(copy_failed)?;
        let hashed = copy_data(data, &mut copy, copy_failed)?;
        self.entry_file = Some(copy);
        Ok(hashed)
    }
    fn entry_library(&mut self, entry: &str) {
        self.entry = Some(entry.to_string());
    }
    fn dir(&mut self, _: &str, _: u32) -> std::result::Result<(), SinkError> {
        Ok(())
    }
    fn symlink(&mut self, _: &str, _: &str) -> std::result::Result<(), SinkError> {
        Ok(())
    }
}

/// A package opened for reading.
pub struct Package {
    file: File,
    gzip: bool,
}

impl Package {
    /// Open the package at `path`.
    pub fn open(path: &Path) -> Result<Package> {
        // O_NONBLOCK: a fifo given as the package must not hang the open.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::read(path, e))?;
        let meta = file.metadata().map_err(|e| Error::read(path, e))?;
        if meta.is_dir() {
            return Err(Error::new(format!(
                "{} is a directory, not a package file; pack it first (`aapi-validator pack DIR -o PKG`)",
                path.display()
            )));
        }
        if !meta.is_file() {
            return Err(Error::new(format!(
                "{} is not a regular file (a device, fifo or socket); give the package file itself",
                path.display()
            )));
        }
        let mut magic = [0u8; 2];
        let n = file
            .read_at(&mut magic, 0)
            .map_err(|e| Error::read(path, e))?;
        Ok(Package {
            file,
            gzip: n == 2 && magic == [0x1f, 0x8b],
        })
    }

    /// Whether the package is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The open package file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Scan the whole package. Uncompressed packages are walked with seeks and their files
    /// recorded as regions (hashed later, in parallel); compressed ones are hashed while
    /// streaming.
    pub fn scan(&self, path: &Path, limits: &Limits) -> Result<Scan> {
        if self.gzip {
            self.walk_with(path, limits, None)
        } else {
            let b = self.budget(limits);
            let reader = Limited {
                inner: self.counting(path, &b)?,
                b: b.clone(),
            };
            let mut ar = Archive::new(reader);
            let mut scan = Scan::default();
            let entries = ar.entries_with_seek().map_err(|e| Error::read(path, e))?;
            walk(entries, &b, limits, &mut scan, None);
            let mut reader = ar.into_inner();
            finish(&mut reader, &b, &mut scan);
            if let Some(e) = b.io_error.take() {
                return Err(Error::read(path, e));
            }
            Ok(scan)
        }
    }

    /// Stream the whole package through `sink` (the files of a valid package go to it).
    pub(crate) fn stream(&self, path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<Scan> {
        self.walk_with(path, limits, Some(sink))
    }

    fn walk_with(&self, path: &Path, limits: &Limits, sink: Option<&mut dyn Sink>) -> Result<Scan> {
        let b = self.budget(limits);
        let mut scan = Scan::default();
        let mut hasher = Hasher {
            entry: None,
            entry_file: None,
        };
        let hashing = sink.is_none();
        let sink = sink.unwrap_or(&mut hasher);
        let counting = self.counting(path, &b)?;
        if self.gzip {
            let mut head = [0u8; 10];
            let n = self
                .file
                .read_at(&mut head, 0)
                .map_err(|e| Error::read(path, e))?;
            scan.findings.extend(gzip_header(&head[..n]));
            let reader = Limited {
                inner: GzDecoder::new(BufReader::new(counting)),
                b: b.clone(),
            };
            let mut ar = Archive::new(reader);
            let entries = ar.entries().map_err(|e| Error::read(path, e))?;
            walk(entries, &b, limits, &mut scan, Some(sink));
            let mut reader = ar.into_inner();
            if finish(&mut reader, &b, &mut scan) {
                let mut rest = reader.inner.into_inner();
                match rest.fill_buf() {
                    Ok([]) => {}
                    Ok(_) => scan.findings.push(Finding::whole(
                        Code::ARCHIVE_TRAILING_DATA,
                        "data follows the end of the gzip stream",
                    )),
                    Err(e) => return Err(Error::read(path, e)),
                }
            }
        } else {
            let reader = Limited {
                inner: counting,
                b: b.clone(),
            };
            let mut ar = Archive::new(reader);
            let entries = ar.entries().map_err(|e| Error::read(path, e))?;
            walk(entries, &b, limits, &mut scan, Some(sink));
            let mut reader = ar.into_inner();
            finish(&mut reader, &b, &mut scan);
        }
        if let Some(e) = b.io_error.take() {
            return Err(Error::read(path, e));
        }
        if hashing {
            if let Some(e) = scan.stop.take() {
                return Err(e);
            }
            scan.entry_file = hasher.entry_file;
        }
        Ok(scan)
    }

    fn budget(&self, limits: &Limits) -> Rc<Budget> {
        Rc::new(Budget {
            pos: Cell::new(0),
            limit: Cell::new(0),
            limit_finding: RefCell::new((Code::ARCHIVE_MALFORMED, String::new())),
            tripped: RefCell::new(None),
            eof: Cell::new(false),
            io_error: RefCell::new(None),
            compressed: Cell::new(0),
            max_ratio: self.gzip.then_some(limits.max_ratio),
            capture_from: Cell::new(u64::MAX),
            captured: RefCell::new(Vec::new()),
        })
    }

    fn counting(&self, path: &Path, b: &Rc<Budget>) -> Result<Counting> {
        let mut file = self.file.try_clone().map_err(|e| Error::read(path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::read(path, e))?;
        Ok(Counting { file, b: b.clone() })
    }
}

/// The finding when the gzip header `head` (its first 10 bytes) carries more than the
/// compressed data needs: optional fields (extra data, a file name, a comment, a header CRC),
/// reserved flag bits, or an unknown compression-level byte. Only its time and OS bytes may
/// be anything.
fn gzip_header(head: &[u8]) -> Option<Finding> {
    let (&flags, &xfl) = (head.get(3)?, head.get(8)?);
    let mut what = Vec::new();
    for (bit, name) in [
        (0x01, "the text flag"),
        (0x02, "a header CRC"),
        (0x04, "extra data"),
        (0x08, "a file name"),
        (0x10, "a comment"),
    ] {
        if flags & bit != 0 {
            what.push(name.to_string());
        }
    }
    if flags & 0xe0 != 0 {
        what.push(format!("reserved flag bits ({:#04x})", flags & 0xe0));
    }
    if !matches!(xfl, 0 | 2 | 4) {
        what.push(format!("an unknown compression-level byte ({xfl})"));
    }
    (!what.is_empty()).then(|| {
        Finding::whole(
            Code::ARCHIVE_HEADER,
            format!(
                "the gzip header carries {}, which nothing checks; packages carry none (compress with `pack --gzip` or `gzip -n`)",
                what.join(", ")
            ),
        )
    })
}

/// A path for messages (findings keep it on one line).
fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Record why the pass stopped on `err`, met while reading the data of the entry `at` (None:
/// between entries), unless the package file itself failed (the caller turns that into an
/// error).
fn stopped(b: &Budget, scan: &mut Scan, err: &io::Error, at: Option<&str>) {
    scan.complete = false;
    if b.io_error.borrow().is_some() {
        return;
    }
    let finding = |code, why: String| match at {
        Some(path) => Finding::at(code, path, why),
        None => Finding::whole(code, why),
    };
    let f = if let Some(f) = b.tripped.take() {
        f
    } else if b.eof.get() || err.kind() == io::ErrorKind::UnexpectedEof {
        finding(
            Code::ARCHIVE_TRUNCATED,
            format!("the archive ends early ({err})"),
        )
    } else {
        finding(Code::ARCHIVE_MALFORMED, err.to_string())
    };
    scan.findings.push(f);
}

/// Walk every entry: bounds, entry types, paths, reserved names, duplicates. With a sink, file
/// contents are streamed to it; without, they are recorded as regions of the package file.
fn walk<R: Read>(
    mut entries: Entries<'_, R>,
    b: &Budget,
    limits: &Limits,
    scan: &mut Scan,
    mut sink: Option<&mut dyn Sink>,
) {
    scan.complete = true;
    // Entries of the archive, and of the payload (as the manifest lists them).
    let (mut count, mut payload) = (0u64, 0u64);
    let mut total = 0u64;
    // The manifest, the signature and the .aapi directory met so far (the first of each is
    // not payload: they have fixed bounds of their own).
    let mut meta_seen = [false; 3];
    let mut next_header = 0u64;
    // Where the previous entry's data ended.
    let mut data_end = 0u64;
    // The path of the previous entry.
    let mut prev = String::new();
    let mut seen = HashSet::new();
    loop {
        b.set_limit(
            next_header + MAX_HEADER_EXTENSION,
            Code::LIMIT_METADATA,
            format!(
                "the headers of the entry at byte {next_header} take more than {MAX_HEADER_EXTENSION} bytes"
            ),
        );
        b.capture(data_end);
        let next = entries.next();
        let area = b.take_captured();
        let mut e = match next {
            None => {
                scan.findings
                    .extend(headers::padding(&area, data_end, &prev));
                break;
            }
            Some(Ok(e)) => e,
            Some(Err(err)) => return stopped(b, scan, &err, None),
        };
        count += 1;
        let raw = e.path_bytes().into_owned();
        let show = shown(&raw);
        scan.findings.extend(headers::check(
            &area,
            data_end,
            e.raw_header_position(),
            &show,
            &prev,
        ));
        let link = e.link_name_bytes().map(|l| l.into_owned());
        scan.findings.extend(headers::entry(
            e.header().as_bytes(),
            &raw,
            link.as_deref(),
            &show,
        ));
        prev.clone_from(&show);
        let size = e.size();
        let meta = match raw.as_slice() {
            b".aapi/manifest.json" => Some((0, MAX_MANIFEST)),
            b".aapi/manifest.sig" => Some((1, MAX_SIGNATURE)),
            b".aapi" | b".aapi/" => Some((2, 0)),
            _ => None,
        };
        let (free_entry, free_bytes) = match meta {
            Some((i, bound)) if !std::mem::replace(&mut meta_seen[i], true) => {
                (true, size <= bound)
            }
            _ => (false, false),
        };
        if !free_entry {
            payload += 1;
        }
        if payload > limits.max_entries {
            scan.complete = false;
            scan.findings.push(Finding::whole(
                Code::LIMIT_ENTRIES,
                format!(
                    "more than {} entries (files, directories and symlinks besides the manifest and signature)",
                    limits.max_entries
                ),
            ));
            return;
        }
        let file_pos = e.raw_file_position();
        data_end = file_pos.saturating_add(size);
        next_header = file_pos.saturating_add(round_up(size));
        // The manifest and signature have their fixed bounds instead, as in a tree.
        if !free_entry && size > limits.max_file_size {
            scan.complete = false;
            scan.findings.push(Finding::at(
                Code::LIMIT_FILE_SIZE,
                show,
                format!(
                    "{size} bytes, more than the limit of {}",
                    limits.max_file_size
                ),
            ));
            return;
        }
        if !free_bytes {
            total = total.saturating_add(size);
        }
        if total > limits.max_total_size {
            scan.complete = false;
            scan.findings.push(Finding::at(
                Code::LIMIT_TOTAL_SIZE,
                show,
                format!(
                    "the files add up to more than the limit of {} bytes (the manifest and signature not counted)",
                    limits.max_total_size
                ),
            ));
            return;
        }
        b.set_limit(
            file_pos.saturating_add(size),
            Code::ARCHIVE_MALFORMED,
            format!("{show}: reads past its own size"),
        );
        let mode = match e.header().mode() {
            Ok(m) => m & 0o7777,
            Err(err) => {
                scan.findings.push(Finding::at(
                    Code::ARCHIVE_MALFORMED,
                    show,
                    format!("bad mode field: {err}"),
                ));
                scan.complete = false;
                return;
            }
        };
        let et = e.header().entry_type();
        enum K {
            File,
            Dir,
            Link(String),
        }
        let kind = match et {
            EntryType::Regular | EntryType::Continuous => K::File,
            EntryType::Directory => K::Dir,
            EntryType::Symlink => match e.link_name_bytes().as_deref().map(std::str::from_utf8) {
                Some(Ok(t)) if !t.is_empty() && !t.chars().any(paths::is_control_or_format) => {
                    K::Link(t.to_string())
                }
                _ => {
                    scan.findings.push(Finding::at(
                        Code::PATH_INVALID,
                        show,
                        "symlink target is empty, not UTF-8 or has control or format characters",
                    ));
                    continue;
                }
            },
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let what = match et {
                    EntryType::Char => "character device",
                    EntryType::Block => "block device",
                    _ => "fifo",
                };
                scan.findings
                    .push(Finding::at(Code::SPECIAL_FILE, show, format!("a {what}")));
                continue;
            }
            EntryType::Link => {
                let to = e.link_name_bytes().map(|t| shown(&t)).unwrap_or_default();
                scan.findings.push(Finding::at(
                    Code::ENTRY_TYPE,
                    show,
                    format!("a hard link (to {to}); packages hold no hard links"),
                ));
                continue;
            }
            EntryType::GNUSparse => {
                scan.findings
                    .push(Finding::at(Code::ENTRY_TYPE, show, "a sparse file"));
                continue;
            }
            EntryType::XGlobalHeader => {
                scan.findings.push(Finding::whole(
                    Code::ENTRY_TYPE,
                    "a pax global header; packages hold none",
                ));
                continue;
            }
            other => {
                scan.findings.push(Finding::at(
                    Code::ENTRY_TYPE,
                    show,
                    format!("unknown entry type {:?}", other.as_byte() as char),
                ));
                continue;
            }
        };
        if !matches!(kind, K::File) && size > 0 {
            scan.findings.push(Finding::at(
                Code::ENTRY_TYPE,
                &show,
                format!("a directory or symlink entry that carries {size} bytes of data"),
            ));
        }
        let path = match paths::check(&raw, matches!(kind, K::Dir)) {
            Ok(p) => p,
            Err((code, why)) => {
                scan.findings.push(Finding::at(code, show, why));
                continue;
            }
        };
        if path == META_DIR || path.starts_with(".aapi/") {
            let (bound, slot) = match (path.as_str(), &kind) {
                (META_DIR, K::Dir) => {
                    scan.meta_modes.push(Meta {
                        path,
                        mode,
                        owner: None,
                    });
                    continue;
                }
                (MANIFEST_PATH, K::File) => (MAX_MANIFEST, 0),
                (SIGNATURE_PATH, K::File) => (MAX_SIGNATURE, 1),
                _ => {
                    scan.findings.push(Finding::at(
                        Code::PATH_RESERVED,
                        path,
                        "only .aapi/manifest.json and .aapi/manifest.sig (regular files) may be in .aapi",
                    ));
                    continue;
                }
            };
            if slot == 0 && count != 1 {
                scan.findings.push(Finding::at(
                    Code::MANIFEST_NOT_FIRST,
                    &path,
                    format!("the manifest is entry {count}; it must be the first"),
                ));
            }
            if slot == 1 && count != 2 {
                scan.findings.push(Finding::at(
                    Code::SIGNATURE_NOT_SECOND,
                    &path,
                    format!(
                        "the signature is entry {count}; it must be the second, right after the manifest"
                    ),
                ));
            }
            let already = if slot == 0 {
                scan.manifest.is_some()
            } else {
                scan.signature.is_some()
            };
            if already {
                scan.findings
                    .push(Finding::at(Code::PATH_DUPLICATE, path, "appears twice"));
                continue;
            }
            if size > bound {
                scan.findings.push(Finding::at(
                    Code::LIMIT_METADATA,
                    path,
                    format!("{size} bytes, more than {bound}"),
                ));
                continue;
            }
            let mut v = Vec::with_capacity(size as usize);
            if let Err(err) = e.read_to_end(&mut v) {
                return stopped(b, scan, &err, Some(&path));
            }
            if (v.len() as u64) < size {
                return stopped(b, scan, &io::ErrorKind::UnexpectedEof.into(), Some(&path));
            }
            scan.meta_modes.push(Meta {
                path,
                mode,
                owner: None,
            });
            if slot == 0 {
                if let (Ok(m), Some(s)) = (Manifest::parse(&v), sink.as_deref_mut()) {
                    s.entry_library(&m.entry);
                }
                scan.manifest = Some(v);
            } else {
                scan.signature = Some(v);
            }
            continue;
        }
        if !seen.insert(path.clone()) {
            scan.findings.push(Finding::at(
                Code::PATH_DUPLICATE,
                path,
                "appears twice in the archive",
            ));
            continue;
        }
        let item_kind = match kind {
            K::Dir => {
                if let Some(s) = sink.as_deref_mut()
                    && let Err(err) = s.dir(&path, mode)
                {
                    return sink_failed(b, scan, err, &path);
                }
                ItemKind::Dir
            }
            K::Link(target) => {
                if let Some(s) = sink.as_deref_mut()
                    && let Err(err) = s.symlink(&path, &target)
                {
                    return sink_failed(b, scan, err, &path);
                }
                ItemKind::Symlink { target }
            }
            K::File => {
                let content = match sink.as_deref_mut() {
                    None => Content::Region(file_pos),
                    Some(s) => match s.file(&path, mode, size, &mut e) {
                        Ok((digest, n)) if n == size => Content::Hashed(digest, n),
                        Ok(_) => {
                            let eof = io::ErrorKind::UnexpectedEof.into();
                            return stopped(b, scan, &eof, Some(&path));
                        }
                        Err(err) => return sink_failed(b, scan, err, &path),
                    },
                };
                ItemKind::File { size, content }
            }
        };
        scan.items.push(Item {
            path,
            kind: item_kind,
            mode,
            owner: None,
        });
    }
    if b.eof.get() {
        scan.complete = false;
        scan.findings.push(Finding::whole(
            Code::ARCHIVE_TRUNCATED,
            "the archive ends without its end-of-archive marker",
        ));
    }
}

fn sink_failed(b: &Budget, scan: &mut Scan, err: SinkError, at: &str) {
    match err {
        SinkError::Read(e) => stopped(b, scan, &e, Some(at)),
        SinkError::Stop(e) => {
            scan.complete = false;
            scan.stop = Some(e);
        }
    }
}

/// After the end-of-archive marker: only zeros may follow, at most [`MAX_TRAILER`] bytes.
/// Returns true when the stream was read to its end cleanly.
fn finish<R: Read>(reader: &mut Limited<R>, b: &Budget, scan: &mut Scan) -> bool {
    if !scan.complete {
        return false;
    }
    let start = b.pos.get();
    b.set_limit(
        start + MAX_TRAILER + 1,
        Code::ARCHIVE_TRAILING_DATA,
        format!("more than {MAX_TRAILER} bytes follow the end-of-archive marker"),
    );
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                if buf[..n].iter().any(|&x| x != 0) {
                    scan.findings.push(Finding::whole(
                        Code::ARCHIVE_TRAILING_DATA,
                        "non-zero bytes follow the end-of-archive marker",
                    ));
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                match b.tripped.take() {
                    Some(f) => scan.findings.push(f),
                    None => stopped(b, scan, &e, None),
                }
                return false;
            }
        }
    }
}
