//! The image store: a local directory of backup images (docs/host.md, "Image format").
//!
//! ```text
//! <store>/state.json                    last backup times per policy
//! <store>/.lock                         lock of the shared state (see `Store::lock`)
//! <store>/images/<id>/.in-use           lock of the processes using the image
//! <store>/images/<id>/job.json          the job definition, written first
//! <store>/images/<id>/wkld/             workload files from discovery
//! <store>/images/<id>/stream-<n>.data   object bytes of stream n, back to back
//! <store>/images/<id>/stream-<n>.cat    catalog records of stream n (written by its child job)
//! <store>/images/<id>/stream-<n>.done   child job summary, written after both files are synced
//! <store>/images/<id>/catalog           the merged catalog (offset map + digests)
//! <store>/images/<id>/manifest.json     written last, atomically: its presence means complete
//! ```
//!
//! Every file is written to a temporary name, synced, renamed and its directory synced, so a crash
//! leaves either the old state or the new one. An image without `manifest.json` is incomplete and
//! never used as a base or restored silently.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Magic bytes opening a catalog file.
pub const CATALOG_MAGIC: [u8; 8] = *b"AAPICAT\0";
/// Catalog format version written; version 1 (records without the discovery's times) is read.
pub const CATALOG_VERSION: u32 = 2;
/// What an image whose job failed shows when the reason could not be written (a full store).
pub const UNRECORDED_REASON: &str =
    "the job failed; its reason could not be written (the store was full)";
/// Record flag: the object was listed unchanged; its data is found in the base image.
pub const REC_UNCHANGED: u32 = 1;
/// Name of the manifest file whose presence marks an image complete.
pub const MANIFEST: &str = "manifest.json";
/// The file an image's job writes once its postprocess succeeded: its snapshot is gone.
pub const POSTPROCESS_DONE: &str = "postprocess.done";
/// Why the last postprocess of an image's job failed, until a finalize runs it again.
pub const POSTPROCESS_FAILED: &str = "postprocess.failed";

/// An error of the store, with the file concerned.
#[derive(Debug)]
pub struct StoreError {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
    /// What kind of failure it is.
    pub kind: StoreErrorKind,
}

/// What kind of failure a [`StoreError`] is: the caller's request, the system, or the store's
/// content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The request does not fit the store: no store at the path, no such image, an incomplete
    /// image where a complete one is needed, a path the job cannot record.
    Usage,
    /// Reading or writing a store file failed in the system: no space, quota, I/O error,
    /// permission, read-only file system and the like.
    Io,
    /// A store file cannot be used as it is: a corrupt manifest, job file, host state or
    /// catalog, or a file the image needs is missing.
    Damaged,
}

impl StoreError {
    /// Whether reading or writing a store file failed in the system (ENOSPC, EIO, EACCES, ...),
    /// rather than the request being wrong or the store's content damaged.
    pub fn is_io(&self) -> bool {
        self.kind == StoreErrorKind::Io
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Attach `path` to an I/O error. A missing file counts as damage (the store lacks what it
/// should hold); any other error as an I/O failure.
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| {
        StoreError {
        path: path.to_path_buf(),
        message: match e.raw_os_error() {
            Some(libc::ENOSPC) => "no space left on the device holding the image store".into(),
            Some(libc::EDQUOT) => "the disk quota of the image store is exhausted".into(),
            Some(libc::EFBIG) => {
                "file too large for the image store's file system or this process's file size limit (ulimit -f)".into()
            }
            _ => e.to_string(),
        },
        kind: match e.kind() {
            io::ErrorKind::NotFound => StoreErrorKind::Damaged,
            _ => StoreErrorKind::Io,
        },
    }
    }
}

/// A usage error about `path`.
fn err(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        message: message.into(),
        kind: StoreErrorKind::Usage,
    }
}

/// An error about `path`, whose content cannot be used.
fn damaged(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError {
        kind: StoreErrorKind::Damaged,
        ..err(path, message)
    }
}

/// A point in time as stored: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// Properties of one object as recorded in the catalog (from `aapi_get_object_prop`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Props {
    /// `AAPI_OBJ_*`.
    pub obj_type: u32,
    /// `AAPI_PROP_*` validity bits.
    pub valid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size the plugin reported.
    pub size: u64,
    /// Access time.
    pub atime: Time,
    /// Modification time.
    pub mtime: Time,
    /// Status change time.
    pub ctime: Time,
}

impl Props {
    /// From the ABI struct.
    pub fn from_abi(p: &aapi_sdk::abi::aapi_object_prop_t) -> Props {
        let t = |t: aapi_sdk::abi::aapi_time_t| Time {
            sec: t.sec,
            nsec: t.nsec,
        };
        Props {
            obj_type: p.obj_type,
            valid: p.valid,
            mode: p.mode,
            uid: p.uid,
            gid: p.gid,
            size: p.size,
            atime: t(p.atime),
            mtime: t(p.mtime),
            ctime: t(p.ctime),
        }
    }

    /// To the ABI struct (for `aapi_create_object`).
    pub fn to_abi(&self) -> aapi_sdk::abi::aapi_object_prop_t {
        let t = |t: Time| aapi_sdk::abi::aapi_time_t {
            sec: t.sec,
            nsec: t.nsec,
            reserved: 0,
        };
        aapi_sdk::abi::aapi_object_prop_t {
            struct_size: size_of::<aapi_sdk::abi::aapi_object_prop_t>() as u32,
            obj_type: self.obj_type,
            valid: self.valid,
            mode: self.mode,
            size: self.size,
            uid: self.uid,
            gid: self.gid,
            atime: t(self.atime),
            mtime: t(self.mtime),
            ctime: t(self.ctime),
        }
    }

    /// A short type name: file, dir, symlink.
    pub fn type_name(&self) -> &'static str {
        match self.obj_type {
            aapi_sdk::abi::AAPI_OBJ_DIR => "dir",
            aapi_sdk::abi::AAPI_OBJ_SYMLINK => "symlink",
            _ => "file",
        }
    }
}

/// Where an object's bytes are: image (index into the catalog's image table), stream, range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataRef {
    /// Index into [`Catalog::images`]; 0 is the image the catalog belongs to.
    pub image: u32,
    /// Stream number within that image.
    pub stream: u32,
    /// Byte offset in the stream file.
    pub offset: u64,
    /// Number of bytes.
    pub length: u64,
    /// BLAKE3 digest of the bytes.
    pub blake3: [u8; 32],
}

/// One catalog record: path (raw bytes), properties, data location and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The object's real path, raw bytes (never containing NUL).
    pub path: Vec<u8>,
    /// Its properties at backup time.
    pub props: Props,
    /// `REC_*` flags.
    pub flags: u32,
    /// Where its bytes are.
    pub data: DataRef,
    /// Its stamp as the discovery saw it, when the workload file gave one: a later
    /// incremental compares it with its own discovery's.
    pub seen: Option<SeenStamp>,
}

/// An object's stamp as a discovery saw it: modification and status change times and its id
/// (for files, the inode number).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeenStamp {
    /// Modification time.
    pub mtime: Time,
    /// Status change time.
    pub ctime: Time,
    /// The object's id on its server; 0 when the workload has none.
    pub id: u64,
}

/// A catalog in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Image ids the records refer to; index 0 is the owning image.
    pub images: Vec<String>,
    /// Records, sorted by path bytes in a merged catalog.
    pub entries: Vec<Entry>,
}

/// Writes a catalog record by record; nothing is valid until [`CatalogWriter::finish`].
/// Records are encoded into a buffer that is hashed and written in large pieces.
pub struct CatalogWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    hash: blake3::Hasher,
    count: u64,
}

/// Bytes gathered before the catalog writer hashes and writes them.
const CATALOG_CHUNK: usize = 64 * 1024;

impl<W: Write> CatalogWriter<W> {
    /// Write the header with the image table.
    pub fn new(out: W, images: &[String]) -> io::Result<Self> {
        let mut w = CatalogWriter {
            out,
            buf: Vec::with_capacity(2 * CATALOG_CHUNK),
            hash: blake3::Hasher::new(),
            count: 0,
        };
        w.buf.extend_from_slice(&CATALOG_MAGIC);
        w.buf.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
        w.buf
            .extend_from_slice(&(images.len() as u32).to_le_bytes());
        for id in images {
            w.buf.extend_from_slice(&(id.len() as u32).to_le_bytes());
            w.buf.extend_from_slice(id.as_bytes());
        }
        Ok(w)
    }

    /// Hash and write what the buffer holds.
    fn spill(&mut self) -> io::Result<()> {
        self.hash.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Append one record.
    pub fn push(&mut self, e: &Entry) -> io::Result<()> {
        let r = &mut self.buf;
        r.extend_from_slice(&((4 + e.path.len() + RECORD_FIXED + SEEN_LEN) as u32).to_le_bytes());
        r.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
        r.extend_from_slice(&e.path);
        let p = &e.props;
        for v in [p.obj_type, p.valid, p.mode, p.uid, p.gid] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(&p.size.to_le_bytes());
        for t in [p.atime, p.mtime, p.ctime] {
            r.extend_from_slice(&t.sec.to_le_bytes());
            r.extend_from_slice(&t.nsec.to_le_bytes());
        }
        r.extend_from_slice(&e.flags.to_le_bytes());
        let d = &e.data;
        r.extend_from_slice(&d.image.to_le_bytes());
        r.extend_from_slice(&d.stream.to_le_bytes());
        r.extend_from_slice(&d.offset.to_le_bytes());
        r.extend_from_slice(&d.length.to_le_bytes());
        r.extend_from_slice(&d.blake3);
        let seen = e.seen.unwrap_or_default();
        r.extend_from_slice(&u32::from(e.seen.is_some()).to_le_bytes());
        for t in [seen.mtime, seen.ctime] {
            r.extend_from_slice(&t.sec.to_le_bytes());
            r.extend_from_slice(&t.nsec.to_le_bytes());
        }
        r.extend_from_slice(&seen.id.to_le_bytes());
        self.count += 1;
        if self.buf.len() >= CATALOG_CHUNK {
            self.spill()?;
        }
        Ok(())
    }

    /// Write the end mark and the trailer (record count, BLAKE3 digest of everything before it).
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.spill()?;
        self.out.write_all(self.hash.finalize().as_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Fixed size of a record body after the path, in version 1.
const RECORD_FIXED: usize = 4 * 5 + 8 + 3 * 12 + 4 + 4 + 4 + 8 + 8 + 32;
/// What version 2 appends to a record: a presence word and the discovery's stamp (two times
/// and an id).
const SEEN_LEN: usize = 4 + 2 * 12 + 8;

impl Catalog {
    /// Parse and check a whole catalog file; `path` is used in messages.
    pub fn read_from(bytes: &[u8], path: &Path) -> Result<Catalog> {
        let bad = |at: usize, what: &str| {
            damaged(
                path,
                format!(
                    "catalog is damaged at byte {at}: {what}; the image cannot be trusted (run `{} verify`)",
                    crate::ui::command()
                ),
            )
        };
        if bytes.len() < 8 + 4 + 4 + 4 + 8 + 32 || bytes[..8] != CATALOG_MAGIC {
            return Err(bad(0, "not a catalog, or truncated"));
        }
        let body_end = bytes.len() - 32;
        let digest = blake3::hash(&bytes[..body_end]);
        if digest.as_bytes()[..] != bytes[body_end..] {
            return Err(bad(
                body_end,
                "checksum mismatch (truncated or corrupt catalog)",
            ));
        }
        let mut at = 8;
        let u32_at = |at: &mut usize| -> Result<u32> {
            let b = bytes
                .get(*at..*at + 4)
                .ok_or_else(|| bad(*at, "truncated"))?;
            *at += 4;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let version = u32_at(&mut at)?;
        let seen_len = match version {
            1 => 0,
            CATALOG_VERSION => SEEN_LEN,
            _ => return Err(bad(8, &format!("unknown catalog version {version}"))),
        };
        let n_images = u32_at(&mut at)? as usize;
        let mut images = Vec::with_capacity(n_images.min(1024));
        for _ in 0..n_images {
            let len = u32_at(&mut at)? as usize;
            let s = bytes
                .get(at..at + len)
                .ok_or_else(|| bad(at, "truncated image table"))?;
            images.push(String::from_utf8(s.to_vec()).map_err(|_| bad(at, "image id not UTF-8"))?);
            at += len;
        }
        let mut entries = Vec::new();
        loop {
            let len = u32_at(&mut at)? as usize;
            if len == 0 {
                break;
            }
            let rec = bytes
                .get(at..at + len)
                .ok_or_else(|| bad(at, "truncated record"))?;
            let plen = u32::from_le_bytes(rec[..4].try_into().expect("4")) as usize;
            if 4 + plen + RECORD_FIXED + seen_len != len {
                return Err(bad(at, "record length does not match its path"));
            }
            let path_bytes = rec[4..4 + plen].to_vec();
            let mut r = &rec[4 + plen..];
            let mut take = |n: usize| {
                let (a, b) = r.split_at(n);
                r = b;
                a
            };
            let u32v = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4"));
            let u64v = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8"));
            let obj_type = u32v(take(4));
            let valid = u32v(take(4));
            let mode = u32v(take(4));
            let uid = u32v(take(4));
            let gid = u32v(take(4));
            let size = u64v(take(8));
            let mut times = [Time::default(); 3];
            for t in &mut times {
                t.sec = u64v(take(8)) as i64;
                t.nsec = u32v(take(4));
            }
            let flags = u32v(take(4));
            let image = u32v(take(4));
            let stream = u32v(take(4));
            let offset = u64v(take(8));
            let length = u64v(take(8));
            let blake3: [u8; 32] = take(32).try_into().expect("32");
            let seen = if seen_len == 0 {
                None
            } else {
                let present = u32v(take(4));
                let mut t = [Time::default(); 2];
                for t in &mut t {
                    t.sec = u64v(take(8)) as i64;
                    t.nsec = u32v(take(4));
                }
                let id = u64v(take(8));
                match present {
                    0 => None,
                    1 => Some(SeenStamp {
                        mtime: t[0],
                        ctime: t[1],
                        id,
                    }),
                    _ => return Err(bad(at, "record holds an unknown presence word")),
                }
            };
            if image as usize >= images.len().max(1) {
                return Err(bad(at, "record refers to an unknown image"));
            }
            entries.push(Entry {
                path: path_bytes,
                props: Props {
                    obj_type,
                    valid,
                    mode,
                    uid,
                    gid,
                    size,
                    atime: times[0],
                    mtime: times[1],
                    ctime: times[2],
                },
                flags,
                data: DataRef {
                    image,
                    stream,
                    offset,
                    length,
                    blake3,
                },
                seen,
            });
            at += len;
        }
        let count = bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
            .ok_or_else(|| bad(at, "truncated trailer"))?;
        if count != entries.len() as u64 || at + 8 != body_end {
            return Err(bad(at, "record count does not match the trailer"));
        }
        Ok(Catalog { images, entries })
    }

    /// Read and check the catalog file at `path`.
    pub fn load(path: &Path) -> Result<Catalog> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        Catalog::read_from(&bytes, path)
    }

    /// Write the catalog durably to `path` (temporary file, sync, rename, sync directory).
    /// Returns the BLAKE3 digest of the file, in hex.
    pub fn save(&self, path: &Path) -> Result<String> {
        let mut buf = Vec::new();
        let mut w = CatalogWriter::new(&mut buf, &self.images).map_err(io_err(path))?;
        for e in &self.entries {
            w.push(e).map_err(io_err(path))?;
        }
        w.finish().map_err(io_err(path))?;
        write_atomic(path, &buf)?;
        Ok(hex(blake3::hash(&buf).as_bytes()))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lower-case or upper-case hex text; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// job.json form of the selections: a string when UTF-8, so the file stays readable, otherwise
/// `{"hex": "..."}` carrying the exact bytes.
mod selections_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Selection {
        Text(String),
        Bytes { hex: String },
    }

    pub fn serialize<S: Serializer>(sel: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        sel.iter()
            .map(|b| match std::str::from_utf8(b) {
                Ok(t) => Selection::Text(t.to_string()),
                Err(_) => Selection::Bytes { hex: super::hex(b) },
            })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<Selection>::deserialize(d)?
            .into_iter()
            .map(|sel| match sel {
                Selection::Text(t) => Ok(t.into_bytes()),
                Selection::Bytes { hex } => super::unhex(&hex).ok_or_else(|| {
                    serde::de::Error::custom(format!("selection {hex:?} is not hex"))
                }),
            })
            .collect()
    }
}

/// Write `bytes` to `path` atomically and durably: a temporary sibling, fsync, rename, fsync of
/// the directory. Mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// fsync a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The job definition, written into the image directory before anything runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobDef {
    /// Image id.
    pub image: String,
    /// Backup policy name.
    pub policy: String,
    /// "full", "incr" or "cinc".
    pub schedule: String,
    /// Plugin library path.
    pub plugin: PathBuf,
    /// Workload type claimed.
    pub workload_type: String,
    /// Workload server name given to `aapi_open_server`.
    pub server: String,
    /// Selections, the exact bytes given to the plugin (job.json keeps a UTF-8 one as a string,
    /// any other as `{"hex": "..."}`).
    #[serde(with = "selections_json")]
    pub selections: Vec<Vec<u8>>,
    /// Backup hosts; stream n belongs to host n.
    pub hosts: Vec<String>,
    /// Session properties, the framework's included.
    pub properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds.
    pub call_budget_ms: u32,
    /// Start time (Unix seconds), also the time later incrementals are relative to.
    pub started: i64,
    /// Image the data of unchanged objects is taken from (incrementals).
    pub base: Option<String>,
    /// Snapshot id from discovery (set once discovery succeeded).
    pub snapid: Option<String>,
    /// Credentials file given to the workers, if any.
    pub credentials: Option<PathBuf>,
}

/// One object that could not be backed up (or, in a verify report, is damaged).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectFailure {
    /// Object path for display (lossy UTF-8).
    pub path: String,
    /// The exact path bytes in hex, present only when the path is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// What happened.
    pub error: String,
}

impl ObjectFailure {
    /// A failure of the object at `path` (raw bytes).
    pub fn new(path: &[u8], error: impl Into<String>) -> ObjectFailure {
        ObjectFailure {
            path: String::from_utf8_lossy(path).into_owned(),
            path_hex: std::str::from_utf8(path).is_err().then(|| hex(path)),
            error: error.into(),
        }
    }

    /// The object's exact path bytes (from `path_hex` when the path is not UTF-8).
    pub fn path_bytes(&self) -> Vec<u8> {
        self.path_hex
            .as_deref()
            .and_then(unhex)
            .unwrap_or_else(|| self.path.as_bytes().to_vec())
    }
}

/// Summary a child job writes last (`stream-<n>.done`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamDone {
    /// Stream number.
    pub stream: u32,
    /// Backup host.
    pub host: String,
    /// Objects recorded (backed up or unchanged).
    pub objects: u64,
    /// Data bytes in the stream file.
    pub bytes: u64,
    /// Objects that failed.
    pub failures: Vec<ObjectFailure>,
}

/// Description of a complete image (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// Image id.
    pub image: String,
    /// Policy.
    pub policy: String,
    /// Schedule name.
    pub schedule: String,
    /// Start time, Unix seconds.
    pub started: i64,
    /// Completion time, Unix seconds.
    pub completed: i64,
    /// Base image for incrementals.
    pub base: Option<String>,
    /// Every image whose streams this image's catalog refers to (itself excluded).
    pub depends_on: Vec<String>,
    /// Plugin name and version that made it.
    pub plugin: String,
    /// Stream sizes in bytes, by stream number.
    pub streams: Vec<u64>,
    /// Objects in the catalog.
    pub objects: u64,
    /// Data bytes stored in this image's streams.
    pub bytes: u64,
    /// BLAKE3 digest of the catalog file, in hex.
    pub catalog_blake3: String,
    /// Objects that could not be backed up (the image is complete but partial).
    pub failures: Vec<ObjectFailure>,
}

impl Manifest {
    /// The order in which images ran: by start time, then (images started in the same second)
    /// by completion time, then by id.
    pub fn run_order(&self) -> (i64, i64, &str) {
        (self.started, self.completed, &self.image)
    }
}

/// Why an image id names no image, and where to look.
fn no_such_image() -> String {
    format!(
        "no such image (see `{} list` for the images in this store)",
        crate::ui::command()
    )
}

/// Whether `id` can name an image: one visible entry of the images directory.
fn valid_id(id: &str) -> bool {
    !(id.is_empty() || id.contains('/') || id.starts_with('.'))
}

/// Name of the store's lock file, in the store directory.
const STORE_LOCK: &str = ".lock";
/// Name of an image's in-use lock file, in the image directory.
const IN_USE: &str = ".in-use";

/// An advisory lock (`flock`) on a lock file of the store, released when dropped (or when the
/// process ends, however it ends). Where the store cannot be locked (a read-only store, a file
/// system without locks), it holds nothing and commands run unprotected, as they would without it.
#[derive(Debug)]
pub struct Lock {
    _file: Option<File>,
}

/// How taking a lock ended.
enum Locked {
    Yes(Lock),
    /// `LOCK_NB` found it held.
    Busy,
    /// The lock file is absent and `create` was not asked for (or there is no room to make it).
    Missing,
    /// This process may not open the lock file.
    Refused,
    /// The file system has no locks.
    Unsupported,
}

/// Open the lock file `path`: read-write (as locks over NFS need) or, failing that, read-only (a
/// lock file another user made); with `create` it is made when missing, mode 0644 so that every
/// user of the store can open it. `Err` carries what to report instead of a file.
fn open_lock(path: &Path, create: bool) -> io::Result<std::result::Result<File, Locked>> {
    let refused = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM | libc::ENOSPC | libc::EDQUOT)
        )
    };
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(create && write)
            .mode(0o644)
            .open(path)
    };
    match open(true) {
        Ok(f) => Ok(Ok(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(Err(Locked::Missing)),
        Err(e) if refused(&e) => match open(false) {
            Ok(f) => Ok(Ok(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Err(Locked::Missing)),
            Err(e) if refused(&e) => Ok(Err(Locked::Refused)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// `flock(op)` on the open lock file `f`, retried on EINTR.
fn flock(f: File, op: libc::c_int) -> io::Result<Locked> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(Locked::Yes(Lock { _file: Some(f) }));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(Locked::Busy),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::EBADF) => return Ok(Locked::Unsupported),
            _ => return Err(e),
        }
    }
}

/// How a wait for a lock goes on: called every 20 ms while another process holds it, with the
/// lock file and the time waited; returning `false` gives up.
pub type Waiter<'a> = &'a mut dyn FnMut(&Path, std::time::Duration) -> bool;

/// `flock(op)` on `path`, waiting as `wait` says while another process holds it. A lock this
/// process cannot take (refused, unsupported) is an empty one: the command runs unprotected.
fn wait_for(path: &Path, op: libc::c_int, wait: Waiter) -> Result<Lock> {
    let f = match open_lock(path, true).map_err(io_err(path))? {
        Ok(f) => f,
        Err(_) => return Ok(Lock { _file: None }),
    };
    let start = std::time::Instant::now();
    loop {
        // The same open file each time: a lock file removed meanwhile is seen by its link count.
        let again = f.try_clone().map_err(io_err(path))?;
        match flock(again, op | libc::LOCK_NB).map_err(io_err(path))? {
            Locked::Yes(lock) => return Ok(lock),
            Locked::Busy if wait(path, start.elapsed()) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Locked::Busy => return Err(err(path, "gave up waiting for this lock")),
            Locked::Missing | Locked::Refused | Locked::Unsupported => {
                return Ok(Lock { _file: None });
            }
        }
    }
}

/// State of an image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    /// Manifest present and readable.
    Complete(Box<Manifest>),
    /// No manifest: the job did not finish (or is still running).
    Incomplete {
        /// The job definition, when readable.
        job: Option<Box<JobDef>>,
        /// The failure recorded by the job, if it recorded one.
        reason: Option<String>,
    },
}

/// Last backup times of one policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyState {
    /// Start time and image of the last successful backup of any schedule.
    pub last_backup: Option<(i64, String)>,
    /// Start time and image of the last successful full backup.
    pub last_full: Option<(i64, String)>,
}

/// Host state: last backup times per policy (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostState {
    /// By policy name.
    pub policies: BTreeMap<String, PolicyState>,
    /// Rebuilt from the images because `state.json` was unreadable: to be saved.
    #[serde(skip)]
    pub rebuilt: bool,
}

/// The last backup times a policy has when only `remaining` of its images are left: its newest
/// complete image without failures, and its newest such full backup.
pub fn policy_state(policy: &str, remaining: &[&Manifest]) -> PolicyState {
    let good = || {
        remaining
            .iter()
            .filter(move |m| m.policy == policy && m.failures.is_empty())
    };
    let newest = |ms: Vec<&&Manifest>| {
        ms.into_iter()
            .max_by_key(|m| m.run_order())
            .map(|m| (m.started, m.image.clone()))
    };
    PolicyState {
        last_backup: newest(good().collect()),
        last_full: newest(good().filter(|m| m.schedule == "full").collect()),
    }
}

/// A directory of images.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    bytes_read: Arc<AtomicU64>,
    /// Stream files opened for reading so far, kept open: a restore or verify of many small
    /// objects costs one read per object, not an open, a seek and a close as well.
    streams: Arc<Mutex<HashMap<PathBuf, Arc<File>>>>,
}

impl Store {
    /// Open the store at `root`, which must exist: a mistyped `--store` is an error, not a new
    /// empty store that hides the real one.
    pub fn open_existing(root: &Path) -> Result<Store> {
        if !root.join("images").is_dir() {
            return Err(err(
                root,
                "no image store here (a store is made by the first `aapi-host backup` or `discover`); check --store or AAPI_STORE",
            ));
        }
        Store::open(root)
    }

    /// Open (and create when missing, mode 0700) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        if root.exists() && !root.is_dir() {
            return Err(err(
                root,
                "is not a directory; --store (or AAPI_STORE) names the image store's directory",
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("images"))
            .map_err(io_err(root))?;
        Ok(Store {
            root: root.to_path_buf(),
            bytes_read: Arc::new(AtomicU64::new(0)),
            streams: Arc::default(),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of image `id`.
    pub fn image_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(id)
    }

    /// Stream data file `n` of image `id`.
    pub fn stream_path(&self, id: &str, n: u32) -> PathBuf {
        self.image_dir(id).join(format!("stream-{n}.data"))
    }

    /// Create a new image directory named after `policy` and `started`; never reuses a name.
    pub fn create_image(&self, policy: &str, schedule: &str, started: i64) -> Result<String> {
        let base = format!("{policy}-{}-{schedule}", utc_stamp(started));
        for n in 0..1000 {
            let id = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let dir = self.image_dir(&id);
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(dir.join("wkld"))
                        .map_err(io_err(&dir))?;
                    sync_dir(&self.root.join("images")).map_err(io_err(&dir))?;
                    return Ok(id);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        Err(err(&self.root, "cannot find a free image name"))
    }

    /// Read the job definition of image `id`.
    pub fn job(&self, id: &str) -> Result<JobDef> {
        let dir = self.image_dir(id);
        if !valid_id(id) || !dir.is_dir() {
            return Err(err(&dir, no_such_image()));
        }
        let p = dir.join("job.json");
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&bytes).map_err(|e| damaged(&p, format!("unreadable job file: {e}")))
    }

    /// Write the job definition of its image.
    pub fn save_job(&self, job: &JobDef) -> Result<()> {
        let p = self.image_dir(&job.image).join("job.json");
        // Only a path that is not UTF-8 (the plugin's, the credentials') cannot be written.
        let bytes = serde_json::to_vec_pretty(job).map_err(|e| {
            err(
                &p,
                format!(
                    "cannot record the job: {e}; give the plugin and credentials by UTF-8 paths"
                ),
            )
        })?;
        write_atomic(&p, &bytes)
    }

    /// Record why an incomplete image failed (shown by `list`).
    pub fn record_failure(&self, id: &str, reason: &str) -> Result<()> {
        let p = self.image_dir(id).join("failed.txt");
        // A full store (often why the job failed) has no block for the reason, but still room
        // for an empty file: the end of the job is recorded all the same.
        write_atomic(&p, reason.as_bytes()).or_else(|e| write_atomic(&p, b"").map_err(|_| e))
    }

    /// The state of image `id`; an error when it does not exist.
    pub fn state(&self, id: &str) -> Result<ImageState> {
        let dir = self.image_dir(id);
        if !valid_id(id) || !dir.is_dir() {
            return Err(err(&dir, no_such_image()));
        }
        let m = dir.join(MANIFEST);
        match fs::read(&m) {
            Ok(bytes) => {
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| damaged(&m, format!("unreadable manifest: {e}")))?;
                Ok(ImageState::Complete(Box::new(manifest)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImageState::Incomplete {
                job: self.job(id).ok().map(Box::new),
                reason: fs::read_to_string(dir.join("failed.txt")).ok().map(|r| {
                    if r.is_empty() {
                        UNRECORDED_REASON.to_string()
                    } else {
                        r
                    }
                }),
            }),
            Err(e) => Err(io_err(&m)(e)),
        }
    }

    /// The manifest of a complete image, or an error saying it is incomplete.
    pub fn manifest(&self, id: &str) -> Result<Manifest> {
        match self.state(id)? {
            ImageState::Complete(m) => Ok(*m),
            ImageState::Incomplete { reason, .. } => Err(err(
                &self.image_dir(id),
                format!(
                    "image {id} is incomplete ({}); it cannot be used",
                    reason.unwrap_or_else(|| "its job did not finish".into())
                ),
            )),
        }
    }

    /// Lock the store's shared state for a short section: choosing a base image and creating an
    /// image, recording a finished job's times, or a whole delete.
    pub fn lock(&self, wait: Waiter) -> Result<Lock> {
        wait_for(&self.root.join(STORE_LOCK), libc::LOCK_EX, wait)
    }

    /// Run the child job of stream `stream` of image `id` in this process alone: the exclusive
    /// lock `stream-<n>.lock` of the image, or `None` when another process holds it. A lock this
    /// process cannot take (refused, unsupported) is an empty one, as for the store's lock.
    pub fn run_stream(&self, id: &str, stream: u32) -> Result<Option<Lock>> {
        let path = self.image_dir(id).join(format!("stream-{stream}.lock"));
        let f = match open_lock(&path, true).map_err(io_err(&path))? {
            Ok(f) => f,
            Err(_) => return Ok(Some(Lock { _file: None })),
        };
        Ok(
            match flock(f, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err(&path))? {
                Locked::Yes(lock) => Some(lock),
                Locked::Busy => None,
                _ => Some(Lock { _file: None }),
            },
        )
    }

    /// Mark image `id` in use by this process (a step of its job, a restore, a verify) until the
    /// returned lock is dropped; `delete` keeps an image in use. Several users may hold it at once.
    pub fn use_image(&self, id: &str, wait: Waiter) -> Result<Lock> {
        let dir = self.image_dir(id);
        if !valid_id(id) || !dir.is_dir() {
            return Err(err(&dir, no_such_image()));
        }
        let lock = wait_for(&dir.join(IN_USE), libc::LOCK_SH, wait)?;
        // A delete that held the image while this waited has removed it since.
        if let Some(f) = &lock._file
            && f.metadata()
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) == 0)
        {
            return Err(err(
                &dir,
                "the image was deleted while this command waited for it",
            ));
        }
        Ok(lock)
    }

    /// Whether a process uses image `id` now ([`Store::use_image`]). With `keep`, an image no one
    /// uses is returned locked, so that no one starts using it until the lock is dropped. An
    /// image whose lock this process cannot test counts as in use: better kept than lost.
    pub fn in_use(&self, id: &str, keep: bool) -> Result<(bool, Option<Lock>)> {
        let path = self.image_dir(id).join(IN_USE);
        // Another `list` or `delete` testing the same image holds it for a moment: ask again.
        for attempt in 0..3 {
            let f = match open_lock(&path, keep).map_err(io_err(&path))? {
                Ok(f) => f,
                Err(Locked::Refused) => return Ok((true, None)),
                Err(_) => return Ok((false, None)),
            };
            match flock(f, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err(&path))? {
                Locked::Yes(lock) => return Ok((false, keep.then_some(lock))),
                Locked::Busy if attempt < 2 => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Locked::Busy => {}
                Locked::Refused => return Ok((true, None)),
                Locked::Missing | Locked::Unsupported => return Ok((false, None)),
            }
        }
        Ok((true, None))
    }

    /// Image ids in name order.
    pub fn image_ids(&self) -> Result<Vec<String>> {
        let dir = self.root.join("images");
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The catalog of a complete image, checked against the digest in its manifest.
    pub fn catalog(&self, manifest: &Manifest) -> Result<Catalog> {
        let p = self.image_dir(&manifest.image).join("catalog");
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        self.bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if hex(blake3::hash(&bytes).as_bytes()) != manifest.catalog_blake3 {
            return Err(damaged(
                &p,
                "catalog does not match the digest recorded in the manifest (corrupt or replaced)",
            ));
        }
        Catalog::read_from(&bytes, &p)
    }

    /// The manifests of the complete images whose manifest can be read (a damaged image is no
    /// policy's last backup: it cannot be a base).
    pub fn complete_manifests(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for id in self.image_ids()? {
            if let Ok(ImageState::Complete(m)) = self.state(&id) {
                out.push(*m);
            }
        }
        Ok(out)
    }

    /// Read the host state (empty when none was saved yet). A damaged one, or a missing one in
    /// a store with complete images, is rebuilt from their manifests, with a warning; it is
    /// saved at the next change.
    pub fn host_state(&self) -> Result<HostState> {
        self.host_state_warning(true)
    }

    /// [`Store::host_state`], without the warning when it is rebuilt: for the step that saves
    /// it right away (the first backup of a store has no state.json yet, but an image).
    pub fn host_state_to_update(&self) -> Result<HostState> {
        self.host_state_warning(false)
    }

    fn host_state_warning(&self, warn: bool) -> Result<HostState> {
        let p = self.root.join("state.json");
        // Rebuilt from the complete images' manifests, with a warning saying why.
        let rebuild = |why: String, damaged: bool| -> Result<HostState> {
            let manifests = self.complete_manifests()?;
            let all: Vec<&Manifest> = manifests.iter().collect();
            let mut policies: Vec<&str> = all.iter().map(|m| m.policy.as_str()).collect();
            policies.sort_unstable();
            policies.dedup();
            if warn && !policies.is_empty() {
                eprintln!(
                    "warning: {}: {why}; the last backup times are taken from the complete images instead",
                    p.display()
                );
            }
            Ok(HostState {
                policies: policies
                    .into_iter()
                    .map(|policy| (policy.to_string(), policy_state(policy, &all)))
                    .collect(),
                rebuilt: damaged || !manifests.is_empty(),
            })
        };
        match fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).or_else(|e| rebuild(format!("unreadable ({e})"), true))
            }
            // A new store has none; one of a store with images was lost or not copied.
            Err(e) if e.kind() == io::ErrorKind::NotFound => rebuild("missing".into(), false),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// Save the host state atomically.
    pub fn save_host_state(&self, s: &HostState) -> Result<()> {
        write_atomic(
            &self.root.join("state.json"),
            &serde_json::to_vec_pretty(s).expect("serialisable"),
        )
    }

    /// Open the data of `data` (resolved against `catalog`'s image table) for reading. No data
    /// (a directory, an empty file) needs no stream file: nothing is opened for it.
    pub fn open_data(&self, catalog: &Catalog, data: &DataRef) -> Result<DataReader> {
        let id = catalog
            .images
            .get(data.image as usize)
            .ok_or_else(|| damaged(&self.root, "record refers to an unknown image"))?;
        let p = self.stream_path(id, data.stream);
        let file = if data.length == 0 {
            None
        } else {
            let mut open = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            Some(match open.get(&p) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(&p).map_err(io_err(&p))?);
                    open.insert(p.clone(), f.clone());
                    f
                }
            })
        };
        Ok(DataReader {
            file,
            at: data.offset,
            left: data.length,
            path: p,
            counter: self.bytes_read.clone(),
        })
    }

    /// Bytes read from stream and catalog files through this store so far (direct access makes
    /// this small for small selections).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// Reads one object's bytes from a stream file, counting them.
pub struct DataReader {
    /// The stream file; `None` for an object without data.
    file: Option<Arc<File>>,
    /// Stream offset of the next byte.
    at: u64,
    /// Bytes of the object not read yet.
    left: u64,
    path: PathBuf,
    counter: Arc<AtomicU64>,
}

impl DataReader {
    /// The stream file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for DataReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let Some(file) = self.file.as_ref().filter(|_| want > 0) else {
            return Ok(0);
        };
        let n = loop {
            match file.read_at(&mut buf[..want], self.at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.at += n as u64;
        self.left -= n as u64;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Create a new file for writing (never replacing one), mode 0600.
pub fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}

/// `t` Unix seconds formatted in UTC with `strftime` format `fmt`; seconds outside the years
/// -9999..=9999 (only a corrupt record holds them) are shown as they are.
fn utc_format(t: i64, fmt: &str) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.strftime(fmt).to_string())
        .unwrap_or_else(|_| format!("{t} (Unix seconds)"))
}

/// "YYYYmmddTHHMMSSZ" for Unix seconds.
pub fn utc_stamp(t: i64) -> String {
    utc_format(t, "%Y%m%dT%H%M%SZ")
}

/// "YYYY-mm-dd HH:MM:SS UTC" for Unix seconds.
pub fn utc_display(t: i64) -> String {
    utc_format(t, "%Y-%m-%d %H:%M:%S UTC")
}

/// The forms [`parse_time`] accepts, for messages.
pub const TIME_FORMS: &str = "YYYY-mm-dd, YYYY-mm-ddTHH:MM[:SS[.fraction]] (UTC; a space may stand for the T) followed by nothing, Z, \" UTC\" or an offset ±HH:MM, or Unix seconds";

/// Parse a point in time into Unix seconds (a fraction is dropped: image start times are whole
/// seconds, so "at or before" compares the same). Accepted: `YYYY-mm-dd` (midnight UTC);
/// `YYYY-mm-ddTHH:MM`, `YYYY-mm-ddTHH:MM:SS` and `YYYY-mm-ddTHH:MM:SS.fraction`, with `T` or a
/// space, read as UTC or followed by `Z`, ` UTC` (the form `list` prints) or an offset `±HH:MM`;
/// decimal Unix seconds. Anything else, an impossible date (February 31) or trailing text is
/// refused, with the reason when the form was recognised.
pub fn parse_time(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let mut forms = vec!["%Y-%m-%d".to_string()];
    for sep in ["T", " "] {
        for time in ["%H:%M", "%H:%M:%S%.f"] {
            for zone in ["", "Z", " UTC", "%:z"] {
                forms.push(format!("%Y-%m-%d{sep}{time}{zone}"));
            }
        }
    }
    let Some(mut parsed) = forms
        .iter()
        .find_map(|f| jiff::fmt::strtime::parse(f, s).ok())
    else {
        return Err(format!("expected {TIME_FORMS}"));
    };
    if parsed.offset().is_none() {
        parsed.set_offset(Some(jiff::tz::Offset::UTC));
    }
    parsed.to_timestamp().map(|t| t.as_second()).map_err(|e| {
        // The error's last part names the field at fault; the parts before it, only how deep.
        let e = e.to_string();
        let why = e.rsplit(": ").next().unwrap_or(&e);
        format!("not a real date or time ({why}); expected {TIME_FORMS}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], n: u8) -> Entry {
        Entry {
            path: path.to_vec(),
            props: Props {
                obj_type: 1,
                valid: 63,
                mode: 0o644,
                uid: 1,
                gid: 2,
                size: n as u64,
                atime: Time { sec: -5, nsec: 7 },
                mtime: Time {
                    sec: 1_700_000_000,
                    nsec: 999_999_999,
                },
                ctime: Time::default(),
            },
            flags: 0,
            data: DataRef {
                image: 0,
                stream: 1,
                offset: 77,
                length: n as u64,
                blake3: [n; 32],
            },
            seen: n.is_multiple_of(2).then_some(SeenStamp {
                mtime: Time { sec: -1, nsec: 3 },
                ctime: Time {
                    sec: i64::from(n),
                    nsec: 999_999_999,
                },
                id: u64::MAX - u64::from(n),
            }),
        }
    }

    #[test]
    fn catalog_round_trips_odd_paths() {
        let c = Catalog {
            images: vec!["img-1".into(), "base".into()],
            entries: vec![entry(b"/a/new\nline", 1), entry(b"/b/\xff\xfe", 2)],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("catalog");
        c.save(&p).unwrap();
        assert_eq!(Catalog::load(&p).unwrap(), c);
    }

    /// A catalog of version 1 (before records carried the discovery's times) reads as one
    /// whose records have none.
    #[test]
    fn version_1_catalogs_are_read() {
        let mut e = entry(b"/x", 3);
        e.seen = None;
        let mut v2 = Vec::new();
        let mut w = CatalogWriter::new(&mut v2, &["i".to_string()]).unwrap();
        w.push(&e).unwrap();
        w.finish().unwrap();
        // Version 1: the same header and record, without the record's last SEEN_LEN bytes.
        let head = 8 + 4 + 4 + 4 + 1;
        let rec_end = head + 4 + 4 + 2 + RECORD_FIXED + SEEN_LEN;
        let mut v1 = v2[..rec_end - SEEN_LEN].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[head..head + 4].copy_from_slice(&((4 + 2 + RECORD_FIXED) as u32).to_le_bytes());
        v1.extend_from_slice(&v2[rec_end..v2.len() - 32]);
        let digest = blake3::hash(&v1);
        v1.extend_from_slice(digest.as_bytes());
        let c = Catalog::read_from(&v1, Path::new("catalog")).unwrap();
        assert_eq!(c.entries, vec![e]);
    }

    #[test]
    fn every_truncation_and_flip_is_detected() {
        let c = Catalog {
            images: vec!["i".into()],
            entries: vec![entry(b"/x", 3)],
        };
        let mut buf = Vec::new();
        let mut w = CatalogWriter::new(&mut buf, &c.images).unwrap();
        w.push(&c.entries[0]).unwrap();
        w.finish().unwrap();
        let p = Path::new("catalog");
        for cut in 0..buf.len() {
            assert!(Catalog::read_from(&buf[..cut], p).is_err(), "cut {cut}");
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 1;
            assert!(Catalog::read_from(&b, p).is_err(), "flip {i}");
        }
    }

    #[test]
    fn job_files_keep_selections_as_text_or_exact_bytes() {
        #[derive(Serialize, Deserialize)]
        struct Sel(#[serde(with = "selections_json")] Vec<Vec<u8>>);
        let sel = Sel(vec![b"/data".to_vec(), b"/t/caf\xe9".to_vec()]);
        let json = serde_json::to_string(&sel).unwrap();
        assert_eq!(json, r#"["/data",{"hex":"2f742f636166e9"}]"#);
        assert_eq!(serde_json::from_str::<Sel>(&json).unwrap().0, sel.0);
        for bad in [r#"[{"hex":"2f7"}]"#, r#"[{"hex":"zz"}]"#, "[1]"] {
            assert!(serde_json::from_str::<Sel>(bad).is_err(), "{bad}");
        }
        assert_eq!(unhex("00fF"), Some(vec![0, 255]));
        assert_eq!(unhex("+1+1"), None);
    }

    #[test]
    fn failures_keep_the_exact_bytes_of_non_utf8_paths() {
        let f = ObjectFailure::new(b"/t/caf\xe9", "gone");
        assert_eq!(f.path, "/t/caf\u{fffd}");
        assert_eq!(f.path_hex.as_deref(), Some("2f742f636166e9"));
        let json = serde_json::to_string(&ObjectFailure::new(b"/t/ok", "gone")).unwrap();
        assert!(!json.contains("path_hex"), "{json}");
        assert_eq!(f.path_bytes(), b"/t/caf\xe9");
        assert_eq!(ObjectFailure::new(b"/t/ok", "gone").path_bytes(), b"/t/ok");
    }

    #[test]
    fn times_format() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_display(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(
            utc_display(i64::MAX),
            format!("{} (Unix seconds)", i64::MAX)
        );
    }

    fn manifest(image: &str, started: i64, completed: i64) -> Manifest {
        Manifest {
            format: 1,
            image: image.into(),
            policy: "p".into(),
            schedule: "incr".into(),
            started,
            completed,
            base: None,
            depends_on: Vec::new(),
            plugin: "lib".into(),
            streams: Vec::new(),
            objects: 0,
            bytes: 0,
            catalog_blake3: String::new(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn images_run_in_start_then_completion_order_not_id_order() {
        // Images started in the same second; their ids sort against the order they ran.
        let ms = [
            manifest("p-20231114T221320Z-incr.1", 1_700_000_000, 1_700_000_001),
            manifest("p-20231114T221320Z-cinc", 1_700_000_000, 1_700_000_003),
            manifest("p-20231114T221320Z-full", 1_700_000_000, 1_700_000_002),
            manifest("p-20231114T221319Z-full", 1_699_999_999, 1_700_000_009),
        ];
        let mut order: Vec<&str> = ms.iter().map(|m| m.image.as_str()).collect();
        order.sort_by_key(|id| ms.iter().find(|m| m.image == *id).unwrap().run_order());
        assert_eq!(
            order,
            [
                "p-20231114T221319Z-full",
                "p-20231114T221320Z-incr.1",
                "p-20231114T221320Z-full",
                "p-20231114T221320Z-cinc"
            ]
        );
    }

    #[test]
    fn errors_tell_usage_from_io_failure_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Store::open_existing(&dir.path().join("none")).unwrap_err();
        assert_eq!(missing.kind, StoreErrorKind::Usage, "{missing}");
        let st = Store::open(dir.path()).unwrap();
        assert_eq!(st.state("nope").unwrap_err().kind, StoreErrorKind::Usage);
        let id = "p-20231114T221320Z-full";
        fs::create_dir(st.image_dir(id)).unwrap();
        fs::write(st.image_dir(id).join(MANIFEST), "{garbage").unwrap();
        let e = st.state(id).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Damaged, "{e}");
        assert!(!e.is_io());
        let m = manifest(id, 1, 2);
        let e = st.catalog(&m).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Damaged, "{e}");
        // A read the system refuses (here: the catalog is a directory) is an I/O failure.
        fs::create_dir(st.image_dir(id).join("catalog")).unwrap();
        let e = st.catalog(&m).unwrap_err();
        assert!(e.is_io(), "{e}");
        let e = write_atomic(&st.image_dir(id).join(MANIFEST).join("x"), b"").unwrap_err();
        assert!(e.is_io(), "{e}");
    }

    #[test]
    fn times_parse_strictly() {
        let t = 1_700_000_000; // 2023-11-14 22:13:20 UTC
        for (s, want) in [
            ("2023-11-14T22:13:20", t),
            ("2023-11-14 22:13:20", t),
            ("2023-11-14 22:13:20 UTC", t),
            ("2023-11-14T22:13:20Z", t),
            ("2023-11-14T22:13:20.75Z", t),
            ("2023-11-14T22:13:20.999999999", t),
            ("2023-11-15T07:13:20+09:00", t),
            ("2023-11-14T17:13:20.5-05:00", t),
            ("2023-11-14T22:13", t - 20),
            ("2023-11-14T22:13Z", t - 20),
            ("2023-11-14", 1_699_920_000),
            ("2024-02-29", 1_709_164_800),
            ("1700000000", t),
            ("-5", -5),
        ] {
            assert_eq!(parse_time(s), Ok(want), "{s}");
        }
        for s in [
            "yesterday",
            "",
            "2023-11-14Tnoon",
            "2023-11-14T22",
            "2023-11-14T22:13:20 CET",
            "2023-11-14T22:13:20+09",
            "2023-11-14T22:13:20x",
            "2023-11-14T22:13:20Z trailing",
            "2023-11-14T24:00:00",
            "2023-11-14T22:61",
            "2023-02-31",
            "2023-02-29",
            "2023-13-01",
            "2023-11",
            "14/11/2023",
        ] {
            let e = parse_time(s).expect_err(s);
            assert!(e.contains("expected YYYY-mm-dd"), "{s}: {e}");
        }
        let e = parse_time("2023-02-31").unwrap_err();
        assert!(
            e.starts_with("not a real date or time (parameter 'day'"),
            "{e}"
        );
    }
}
