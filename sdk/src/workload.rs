//! Workload files: the list of objects one backup host streams, written by discovery and read by
//! that host's child job. The byte format is specified in docs/workload-file.md; this module is its
//! reference reader and writer.
//!
//! Paths are raw bytes (any byte but NUL), so names with spaces, newlines or any encoding
//! round-trip exactly. Every file ends with a record count and a CRC-32 over all preceding bytes,
//! so truncation and corruption are detected, never read as a shorter list.

use crate::abi::{
    AAPI_WKLD_DIR, AAPI_WKLD_FORMAT_VERSION, AAPI_WKLD_SYMLINK, AAPI_WKLD_UNCHANGED, aapi_time_t,
};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The eight bytes every workload file starts with.
pub const MAGIC: [u8; 8] = *b"AAPIWKLD";
/// [`MAGIC`] as a string, for the C header.
pub const MAGIC_STR: &str = "AAPIWKLD";
/// Longest snapshot name, in bytes.
pub const MAX_SNAPSHOT_LEN: usize = 4096;
/// Longest backup host name, in bytes.
pub const MAX_HOST_LEN: usize = 1024;
/// Longest object path, in bytes.
pub const MAX_PATH_LEN: usize = 65_535;
/// Longest record (all fields after the length word), in bytes.
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// Size of the fixed part of a record: size hint, flags and path length.
const RECORD_FIXED: usize = 8 + 4 + 4;
/// Size of the stamp extension: mtime and ctime, each i64 seconds and u32 nanoseconds, and a
/// u64 object id.
const STAMP_LEN: usize = 2 * (8 + 4) + 8;
/// Flag bits a format-1 record may carry.
const KNOWN_FLAGS: u32 = AAPI_WKLD_DIR | AAPI_WKLD_SYMLINK | AAPI_WKLD_UNCHANGED;

/// One object to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEntry {
    /// The object's real path (not the snapshot path), as raw bytes.
    pub path: PathBuf,
    /// Expected data size in bytes, for balancing and progress; the backup reads the real size.
    pub size_hint: u64,
    /// `AAPI_WKLD_*` bits.
    pub flags: u32,
    /// What identifies the object as discovery saw it, when the plugin gives it: the framework
    /// records an unchanged object from the base image only when the base's stamp for the path
    /// is the same.
    pub stamp: Option<ObjectStamp>,
}

/// An object's modification and status change times and its id (for files, the inode number):
/// another object moved to the path differs in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStamp {
    /// Last modification time.
    pub mtime: aapi_time_t,
    /// Last status change time.
    pub ctime: aapi_time_t,
    /// What tells the object from another on its server (an inode number); 0 when nothing does.
    pub id: u64,
}

/// A whole workload file in memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadFile {
    /// Snapshot the objects are read from ("" when discovery took none).
    pub snapshot: String,
    /// Backup host this file is for.
    pub backup_host: String,
    /// The objects, in the order the child job streams them.
    pub entries: Vec<WorkloadEntry>,
}

/// What is wrong with a workload file. `offset` is the byte position where reading failed.
#[derive(Debug)]
pub enum WorkloadError {
    /// Reading or writing the underlying file failed.
    Io(io::Error),
    /// The file ends before the format says it does.
    Truncated {
        /// Byte offset where more data was expected.
        offset: u64,
    },
    /// The first eight bytes are not [`MAGIC`]: not a workload file.
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedVersion(u32),
    /// A field holds a value the format forbids.
    Invalid {
        /// Byte offset of the field.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The stored CRC-32 does not match the bytes: the file is corrupt.
    Checksum {
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },
    /// The trailer's record count differs from the records read.
    CountMismatch {
        /// Count stored in the trailer.
        stored: u64,
        /// Records actually read.
        read: u64,
    },
    /// Bytes follow the trailer.
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadError::Io(e) => write!(f, "workload file I/O error: {e}"),
            WorkloadError::Truncated { offset } => {
                write!(f, "workload file is truncated: it ends at byte {offset}")
            }
            WorkloadError::BadMagic => write!(f, "not a workload file (bad magic bytes)"),
            WorkloadError::UnsupportedVersion(v) => write!(
                f,
                "workload file format version {v} is not supported (this reader knows {AAPI_WKLD_FORMAT_VERSION})"
            ),
            WorkloadError::Invalid { offset, reason } => {
                write!(f, "workload file is invalid at byte {offset}: {reason}")
            }
            WorkloadError::Checksum { stored, computed } => write!(
                f,
                "workload file is corrupt: checksum {computed:08x} does not match stored {stored:08x}"
            ),
            WorkloadError::CountMismatch { stored, read } => write!(
                f,
                "workload file is corrupt: trailer says {stored} records, {read} were read"
            ),
            WorkloadError::TrailingData { offset } => {
                write!(
                    f,
                    "workload file has unexpected data after its end, at byte {offset}"
                )
            }
        }
    }
}

impl std::error::Error for WorkloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkloadError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for WorkloadError {
    fn from(e: io::Error) -> Self {
        WorkloadError::Io(e)
    }
}

/// Streams a workload file: header, then records one by one, then the trailer at [`finish`].
///
/// [`finish`]: WorkloadWriter::finish
pub struct WorkloadWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    count: u64,
}

impl<W: Write> WorkloadWriter<W> {
    /// Write the header for `snapshot` and `backup_host`.
    pub fn new(out: W, snapshot: &str, backup_host: &str) -> Result<Self, WorkloadError> {
        check_len("snapshot name", snapshot.len(), 0, MAX_SNAPSHOT_LEN)?;
        check_len("backup host name", backup_host.len(), 1, MAX_HOST_LEN)?;
        let mut w = WorkloadWriter {
            out,
            crc: crc32fast::Hasher::new(),
            count: 0,
        };
        w.put(&MAGIC)?;
        w.put(&AAPI_WKLD_FORMAT_VERSION.to_le_bytes())?;
        w.put(&0u32.to_le_bytes())?;
        w.put_str(snapshot.as_bytes())?;
        w.put_str(backup_host.as_bytes())?;
        Ok(w)
    }

    /// Append one record.
    pub fn push(&mut self, entry: &WorkloadEntry) -> Result<(), WorkloadError> {
        let path = entry.path.as_os_str().as_bytes();
        check_len("object path", path.len(), 1, MAX_PATH_LEN)?;
        if path.contains(&0) {
            return Err(invalid(0, "object path contains a NUL byte"));
        }
        if entry.flags & !KNOWN_FLAGS != 0 {
            return Err(invalid(
                0,
                format!("unknown record flags {:#x}", entry.flags),
            ));
        }
        let stamp = entry.stamp.map(|t| {
            for x in [t.mtime, t.ctime] {
                if x.nsec >= 1_000_000_000 {
                    return Err(invalid(0, format!("nanoseconds {} out of range", x.nsec)));
                }
            }
            Ok(t)
        });
        let stamp = stamp.transpose()?;
        let ext = if stamp.is_some() { STAMP_LEN } else { 0 };
        let len = (RECORD_FIXED + path.len() + ext) as u32;
        self.put(&len.to_le_bytes())?;
        self.put(&entry.size_hint.to_le_bytes())?;
        self.put(&entry.flags.to_le_bytes())?;
        self.put(&(path.len() as u32).to_le_bytes())?;
        self.put(path)?;
        if let Some(t) = stamp {
            for x in [t.mtime, t.ctime] {
                self.put(&x.sec.to_le_bytes())?;
                self.put(&x.nsec.to_le_bytes())?;
            }
            self.put(&t.id.to_le_bytes())?;
        }
        self.count += 1;
        Ok(())
    }

    /// Write the end mark and the trailer (record count, CRC-32) and return the sink.
    pub fn finish(mut self) -> Result<W, WorkloadError> {
        self.put(&0u32.to_le_bytes())?;
        self.put(&self.count.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    fn put_str(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(&(bytes.len() as u32).to_le_bytes())?;
        self.put(bytes)
    }
}

/// Reads a workload file record by record; the trailer is checked when the records end, so an
/// iteration that ended with `None` saw a complete, intact file.
pub struct WorkloadReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    offset: u64,
    count: u64,
    done: bool,
    snapshot: String,
    backup_host: String,
}

impl<R: Read> WorkloadReader<R> {
    /// Read and check the header.
    pub fn new(input: R) -> Result<Self, WorkloadError> {
        let mut r = WorkloadReader {
            input,
            crc: crc32fast::Hasher::new(),
            offset: 0,
            count: 0,
            done: false,
            snapshot: String::new(),
            backup_host: String::new(),
        };
        let mut magic = [0u8; 8];
        r.fill(&mut magic)?;
        if magic != MAGIC {
            return Err(WorkloadError::BadMagic);
        }
        let version = r.u32()?;
        if version != AAPI_WKLD_FORMAT_VERSION {
            return Err(WorkloadError::UnsupportedVersion(version));
        }
        let at = r.offset;
        let flags = r.u32()?;
        if flags != 0 {
            return Err(invalid(at, format!("unknown header flags {flags:#x}")));
        }
        r.snapshot = r.string("snapshot name", 0, MAX_SNAPSHOT_LEN)?;
        r.backup_host = r.string("backup host name", 1, MAX_HOST_LEN)?;
        Ok(r)
    }

    /// The snapshot name from the header.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// The backup host from the header.
    pub fn backup_host(&self) -> &str {
        &self.backup_host
    }

    /// The next record, `Ok(None)` after the last one once the trailer checked out.
    pub fn next_entry(&mut self) -> Result<Option<WorkloadEntry>, WorkloadError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let len = self.u32()? as usize;
        if len == 0 {
            self.finish()?;
            return Ok(None);
        }
        if !(RECORD_FIXED + 1..=MAX_RECORD_LEN).contains(&len) {
            return Err(invalid(at, format!("record length {len} is out of range")));
        }
        let mut record = vec![0u8; len];
        self.fill(&mut record)?;
        let size_hint = u64::from_le_bytes(record[0..8].try_into().expect("fixed slice"));
        let flags = u32::from_le_bytes(record[8..12].try_into().expect("fixed slice"));
        let path_len = u32::from_le_bytes(record[12..16].try_into().expect("fixed slice")) as usize;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(invalid(at + 12, format!("unknown record flags {flags:#x}")));
        }
        if path_len == 0 || path_len > MAX_PATH_LEN || RECORD_FIXED + path_len > len {
            return Err(invalid(
                at + 16,
                format!("path length {path_len} does not fit the record"),
            ));
        }
        let path = &record[RECORD_FIXED..RECORD_FIXED + path_len];
        if path.contains(&0) {
            return Err(invalid(at + 20, "object path contains a NUL byte"));
        }
        let ext_at = RECORD_FIXED + path_len;
        let stamp = match &record[ext_at..] {
            [] => None,
            ext if ext.len() < STAMP_LEN => {
                return Err(invalid(
                    at + 4 + ext_at as u64,
                    format!(
                        "record extension of {} bytes: the stamp takes {STAMP_LEN}",
                        ext.len()
                    ),
                ));
            }
            // Fields a later version appends after the stamp are skipped.
            ext => {
                let time = |i: usize| -> Result<aapi_time_t, WorkloadError> {
                    let sec = i64::from_le_bytes(ext[i..i + 8].try_into().expect("fixed slice"));
                    let nsec =
                        u32::from_le_bytes(ext[i + 8..i + 12].try_into().expect("fixed slice"));
                    if nsec >= 1_000_000_000 {
                        return Err(invalid(
                            at + 4 + (ext_at + i + 8) as u64,
                            format!("nanoseconds {nsec} out of range"),
                        ));
                    }
                    Ok(aapi_time_t {
                        sec,
                        nsec,
                        reserved: 0,
                    })
                };
                Some(ObjectStamp {
                    mtime: time(0)?,
                    ctime: time(12)?,
                    id: u64::from_le_bytes(ext[24..32].try_into().expect("fixed slice")),
                })
            }
        };
        self.count += 1;
        Ok(Some(WorkloadEntry {
            path: PathBuf::from(OsStr::from_bytes(path)),
            size_hint,
            flags,
            stamp,
        }))
    }

    fn finish(&mut self) -> Result<(), WorkloadError> {
        let stored_count = self.u64()?;
        let computed = self.crc.clone().finalize();
        let mut crc = [0u8; 4];
        self.input
            .read_exact(&mut crc)
            .map_err(|e| self.eof_or_io(e))?;
        self.offset += 4;
        let stored = u32::from_le_bytes(crc);
        if stored != computed {
            return Err(WorkloadError::Checksum { stored, computed });
        }
        if stored_count != self.count {
            return Err(WorkloadError::CountMismatch {
                stored: stored_count,
                read: self.count,
            });
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(WorkloadError::TrailingData {
                offset: self.offset,
            });
        }
        self.done = true;
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), WorkloadError> {
        self.input.read_exact(buf).map_err(|e| self.eof_or_io(e))?;
        self.crc.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn eof_or_io(&self, e: io::Error) -> WorkloadError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            WorkloadError::Truncated {
                offset: self.offset,
            }
        } else {
            WorkloadError::Io(e)
        }
    }

    fn u32(&mut self) -> Result<u32, WorkloadError> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, WorkloadError> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self, what: &str, min: usize, max: usize) -> Result<String, WorkloadError> {
        let at = self.offset;
        let len = self.u32()? as usize;
        if len < min || len > max {
            return Err(invalid(
                at,
                format!("{what} length {len} is out of range {min}..={max}"),
            ));
        }
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| invalid(at + 4, format!("{what} is not UTF-8")))
    }
}

impl<R: Read> Iterator for WorkloadReader<R> {
    type Item = Result<WorkloadEntry, WorkloadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl WorkloadFile {
    /// Serialise into `out`.
    pub fn write(&self, out: impl Write) -> Result<(), WorkloadError> {
        let mut w = WorkloadWriter::new(out, &self.snapshot, &self.backup_host)?;
        for e in &self.entries {
            w.push(e)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Parse a complete file from `input`.
    pub fn read(input: impl Read) -> Result<Self, WorkloadError> {
        let mut r = WorkloadReader::new(input)?;
        let mut entries = Vec::new();
        while let Some(e) = r.next_entry()? {
            entries.push(e);
        }
        Ok(WorkloadFile {
            snapshot: r.snapshot,
            backup_host: r.backup_host,
            entries,
        })
    }

    /// Write to `path` with mode 0600 (DISC-4): into a temporary file beside it, synced, then
    /// renamed over `path`, so a reader never sees a partial file.
    pub fn write_to_path(&self, path: &Path) -> Result<(), WorkloadError> {
        let tmp = temp_sibling(path);
        let result = (|| {
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut out = BufWriter::new(file);
            self.write(&mut out)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Read and check the file at `path`.
    pub fn read_from_path(path: &Path) -> Result<Self, WorkloadError> {
        Self::read(BufReader::new(fs::File::open(path)?))
    }
}

/// The name of the workload file for `backup_host` in `dir` (DISC-1): `<dir>/<host><suffix>`.
pub fn file_name(dir: &Path, backup_host: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{backup_host}{suffix}"))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

fn check_len(what: &str, len: usize, min: usize, max: usize) -> Result<(), WorkloadError> {
    if len < min || len > max {
        return Err(invalid(
            0,
            format!("{what} length {len} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

fn invalid(offset: u64, reason: impl Into<String>) -> WorkloadError {
    WorkloadError::Invalid {
        offset,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> WorkloadFile {
        let odd: &[&[u8]] = &[
            b"/data/plain.txt",
            b"/data/with space/and  two",
            b"/data/new\nline",
            "/data/日本語/ファイル.txt".as_bytes(),
            b"/data/latin1-\xe9\xff",
            b"/data/tab\there",
        ];
        WorkloadFile {
            snapshot: "snap-42".into(),
            backup_host: "bh1.example".into(),
            entries: odd
                .iter()
                .enumerate()
                .map(|(i, p)| WorkloadEntry {
                    path: PathBuf::from(OsStr::from_bytes(p)),
                    size_hint: i as u64 * 1_000_000_007,
                    flags: if i == 1 { AAPI_WKLD_DIR } else { 0 },
                    // Half the records carry a stamp, one of them before the epoch.
                    stamp: (i % 2 == 0).then(|| ObjectStamp {
                        mtime: aapi_time_t {
                            sec: 1_700_000_000 - i as i64 * 1_000_000_000,
                            nsec: 999_999_999,
                            reserved: 0,
                        },
                        ctime: aapi_time_t {
                            sec: 1_800_000_000,
                            nsec: i as u32,
                            reserved: 0,
                        },
                        id: u64::MAX - i as u64,
                    }),
                })
                .collect(),
        }
    }

    fn bytes_of(w: &WorkloadFile) -> Vec<u8> {
        let mut v = Vec::new();
        w.write(&mut v).unwrap();
        v
    }

    #[test]
    fn odd_paths_round_trip_exactly() {
        let w = sample();
        assert_eq!(WorkloadFile::read(&bytes_of(&w)[..]).unwrap(), w);
    }

    #[test]
    fn empty_list_round_trips() {
        let w = WorkloadFile {
            snapshot: String::new(),
            backup_host: "h".into(),
            entries: vec![],
        };
        assert_eq!(WorkloadFile::read(&bytes_of(&w)[..]).unwrap(), w);
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = bytes_of(&sample());
        for cut in 0..bytes.len() {
            let err = WorkloadFile::read(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    WorkloadError::Truncated { .. } | WorkloadError::BadMagic
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = bytes_of(&sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(
                WorkloadFile::read(&bad[..]).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn trailing_data_and_wrong_version_are_named() {
        let mut bytes = bytes_of(&sample());
        bytes.push(0);
        assert!(matches!(
            WorkloadFile::read(&bytes[..]),
            Err(WorkloadError::TrailingData { .. })
        ));
        let mut bytes = bytes_of(&sample());
        bytes[8] = 9;
        let err = WorkloadFile::read(&bytes[..]).unwrap_err();
        assert!(matches!(err, WorkloadError::UnsupportedVersion(9)));
        assert!(err.to_string().contains("version 9"));
    }

    #[test]
    fn writer_rejects_what_cannot_be_read_back() {
        let mut w = WorkloadWriter::new(Vec::new(), "", "h").unwrap();
        let nul = WorkloadEntry {
            path: PathBuf::from(OsStr::from_bytes(b"a\0b")),
            size_hint: 0,
            flags: 0,
            stamp: None,
        };
        assert!(w.push(&nul).is_err());
        let empty = WorkloadEntry {
            path: PathBuf::new(),
            size_hint: 0,
            flags: 0,
            stamp: None,
        };
        assert!(w.push(&empty).is_err());
        let flags = WorkloadEntry {
            path: "/x".into(),
            size_hint: 0,
            flags: 1 << 9,
            stamp: None,
        };
        assert!(w.push(&flags).is_err());
        assert!(WorkloadWriter::new(Vec::new(), "", "").is_err());
    }

    #[test]
    fn file_is_private_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_name(dir.path(), "bh1", ".wkld");
        sample().write_to_path(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(WorkloadFile::read_from_path(&path).unwrap(), sample());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
    }

    /// The example in docs/workload-file.md, byte for byte (the CRC is checked by the reader).
    #[test]
    fn documented_example_is_exact() {
        let doc = include_str!("../../docs/workload-file.md");
        let hex: String = doc
            .split("## Example")
            .nth(1)
            .unwrap()
            .lines()
            .skip_while(|l| !l.starts_with("```"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            .map(|l| l.split("   ").next().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        let expected: Vec<u8> = hex
            .split_whitespace()
            .take_while(|t| *t != "xx")
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect();
        let file = WorkloadFile {
            snapshot: "snap-1".into(),
            backup_host: "bh1".into(),
            entries: vec![
                WorkloadEntry {
                    path: "/d".into(),
                    size_hint: 0,
                    flags: AAPI_WKLD_DIR,
                    stamp: None,
                },
                WorkloadEntry {
                    path: "/d/a b".into(),
                    size_hint: 5,
                    flags: 0,
                    stamp: Some(ObjectStamp {
                        mtime: aapi_time_t {
                            sec: 1_700_000_000,
                            nsec: 500_000_000,
                            reserved: 0,
                        },
                        ctime: aapi_time_t {
                            sec: 1_700_000_001,
                            nsec: 0,
                            reserved: 0,
                        },
                        id: 0x1234,
                    }),
                },
            ],
        };
        let bytes = bytes_of(&file);
        assert_eq!(&bytes[..bytes.len() - 4], &expected[..]);
    }

    /// The bytes of a file with one record for "/x" whose extension is `ext`.
    fn with_extension(ext: &[u8]) -> Vec<u8> {
        let mut w = WorkloadWriter::new(Vec::new(), "", "bh1").unwrap();
        let len = (RECORD_FIXED + 2 + ext.len()) as u32;
        w.put(&len.to_le_bytes()).unwrap();
        w.put(&[0; 12]).unwrap();
        w.put_str(b"/x").unwrap();
        w.put(ext).unwrap();
        w.count += 1;
        w.finish().unwrap()
    }

    #[test]
    fn the_stamp_extension_is_checked_and_later_fields_skipped() {
        let mut stamp = Vec::new();
        for (sec, nsec) in [(-5i64, 7u32), (9, 0)] {
            stamp.extend(sec.to_le_bytes());
            stamp.extend(nsec.to_le_bytes());
        }
        stamp.extend(42u64.to_le_bytes());
        let read = |ext: &[u8]| WorkloadFile::read(&with_extension(ext)[..]);
        let t = read(&stamp).unwrap().entries[0].stamp.unwrap();
        assert_eq!(
            (t.mtime.sec, t.mtime.nsec, t.ctime.sec, t.id),
            (-5, 7, 9, 42)
        );
        // A later version's fields after the stamp.
        let longer = [&stamp[..], b"later"].concat();
        assert_eq!(read(&longer).unwrap().entries[0].stamp, Some(t));
        assert_eq!(read(&[]).unwrap().entries[0].stamp, None);
        let e = read(&stamp[..24]).unwrap_err();
        assert!(e.to_string().contains("extension of 24 bytes"), "{e}");
        let mut bad = stamp.clone();
        bad[20..24].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        let e = read(&bad).unwrap_err();
        assert!(e.to_string().contains("nanoseconds"), "{e}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = WorkloadFile::read_from_path(Path::new("/nonexistent/x.wkld")).unwrap_err();
        assert!(matches!(err, WorkloadError::Io(_)));
    }
}
