//! SHA-256 of files and file regions, many at once (rayon), with the `sha2` crate (which uses
//! the CPU's SHA extensions when it has them).

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const BUF: usize = 1 << 20;

/// Something to hash.
#[derive(Debug, Clone)]
pub enum Job {
    /// `len` bytes at `offset` of the shared file.
    Region {
        /// Start in the file.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A whole regular file, opened without following symlinks.
    Path(PathBuf),
}

/// A digest and the number of bytes it covers.
pub type Hashed = ([u8; 32], u64);

/// Hash every job in parallel. `file` is the package holding the regions (if any).
pub fn all(file: Option<&File>, jobs: &[Job]) -> Vec<io::Result<Hashed>> {
    jobs.par_iter()
        .with_max_len(1)
        .map(|job| match job {
            Job::Region { offset, len } => region(
                file.expect("region jobs come with their file"),
                *offset,
                *len,
            ),
            Job::Path(p) => path(p),
        })
        .collect()
}

/// SHA-256 of `len` bytes at `offset` of `file`; fewer bytes if the file ends first.
pub fn region(file: &File, offset: u64, len: u64) -> io::Result<Hashed> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF.min(len as usize).max(1)];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok((h.finalize().into(), done))
}

/// SHA-256 of a regular file, opened with O_NOFOLLOW so a symlink put in its place is refused.
pub fn path(p: &Path) -> io::Result<Hashed> {
    let mut f = open_nofollow(p)?;
    reader(&mut f)
}

/// SHA-256 of everything `r` yields.
pub fn reader(r: &mut dyn Read) -> io::Result<Hashed> {
    copy(r, &mut io::sink()).map_err(|(CopyError::Read(e) | CopyError::Write(e))| e)
}

/// Why [`copy`] stopped: reading its source or writing its destination failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading failed.
    Read(io::Error),
    /// Writing failed.
    Write(io::Error),
}

/// Copy everything `r` yields into `w`; return the SHA-256 and count of the bytes copied.
pub fn copy(r: &mut dyn Read, w: &mut dyn Write) -> Result<Hashed, CopyError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut done = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        done += n as u64;
    }
    Ok((h.finalize().into(), done))
}

/// SHA-256 of a byte slice.
pub fn bytes(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Open a regular file for reading without following a final symlink and without blocking on
/// a fifo; anything but a regular file is refused.
pub fn open_nofollow(p: &Path) -> io::Result<File> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// A reader that hashes what passes through it.
pub struct Tee<'a> {
    inner: &'a mut dyn Read,
    h: Sha256,
    n: u64,
}

impl<'a> Tee<'a> {
    /// Hash what is read from `inner`.
    pub fn new(inner: &'a mut dyn Read) -> Self {
        Tee {
            inner,
            h: Sha256::new(),
            n: 0,
        }
    }

    /// The digest and count of the bytes read so far.
    pub fn finish(self) -> Hashed {
        (self.h.finalize().into(), self.n)
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}
