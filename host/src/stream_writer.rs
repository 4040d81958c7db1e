//! Writes the data file of one stream from a thread of its own, so that reading from the plugin
//! and hashing overlap with the disk writes.
//!
//! Small objects share buffers, so a tree of small files costs few writes. Buffers circulate
//! through a small pool (no allocation per chunk).
//!
//! By default the file is written through the page cache, with writeback started every 32 MiB
//! (`WRITEBACK_STEP`): the cache absorbs bursts (a run of large objects the disk cannot keep up
//! with overlaps with the run of small ones that follows), which makes backups fastest.
//! `AAPI_STREAM_IO=direct` writes with direct I/O (`O_DIRECT`) instead: the bytes go from the
//! buffer to the disk without a copy into the page cache, which costs less CPU and keeps the
//! image out of the cache (the applications on the machine keep theirs). For that,
//! buffers are aligned and every write but the last starts and ends on an [`ALIGN`] boundary (the
//! bytes past the last boundary move to the head of the next buffer). Where direct I/O is refused
//! (some network or FUSE file systems), or after a failed object cut the stream at an unaligned
//! offset, the writer goes on through the page cache.

use std::alloc::Layout;
use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Alignment of buffers, file offsets and lengths of direct writes. 4096 covers the logical
/// block size of nearly every disk; a device that needs more refuses the write with `EINVAL`,
/// and the writer falls back to the page cache.
pub const ALIGN: usize = 4096;
/// Size of each buffer.
pub const BUFFER_SIZE: usize = 1 << 20;
/// Read into a buffer only while at least this much of it is free.
const MIN_READ: usize = 64 * 1024;
/// Buffers in circulation per stream.
const POOL: usize = 4;
/// Bytes between two writeback starts when writing through the page cache.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Environment variable choosing how stream files are written: `buffered` (default) or `direct`.
pub const STREAM_IO_ENV: &str = "AAPI_STREAM_IO";

/// How a stream file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamIo {
    /// Through the page cache.
    Buffered,
    /// Direct I/O where the file system allows it, the page cache otherwise.
    Direct,
}

impl StreamIo {
    /// The mode [`STREAM_IO_ENV`] asks for; an unknown value is an error that names the choices.
    pub fn from_env() -> Result<StreamIo, String> {
        Self::parse(std::env::var(STREAM_IO_ENV).ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Result<StreamIo, String> {
        match value {
            None | Some("" | "buffered") => Ok(StreamIo::Buffered),
            Some("direct") => Ok(StreamIo::Direct),
            Some(v) => Err(format!(
                "{STREAM_IO_ENV}={v:?} is not a stream I/O mode; use \"buffered\" or \"direct\""
            )),
        }
    }
}

/// A zeroed heap buffer aligned to [`ALIGN`], as direct I/O needs.
struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (BUFFER_SIZE).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, ALIGN).expect("buffer size and alignment are valid")
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this same layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

enum WriteMsg {
    /// Write `len` bytes of the buffer at stream offset `at`, then hand the buffer back.
    Data {
        buf: AlignedBuf,
        at: u64,
        len: usize,
    },
    /// Cut the stream file back to this length (a failed object's partial bytes).
    Truncate(u64),
}

/// The writer thread's side: the file and how it is written.
struct DiskWriter {
    file: File,
    direct: bool,
    /// Offset up to which page-cache writeback was started.
    writeback_start: u64,
}

impl DiskWriter {
    fn new(file: File, io: StreamIo) -> DiskWriter {
        let direct = io == StreamIo::Direct && set_direct(&file, true).is_ok();
        DiskWriter {
            file,
            direct,
            writeback_start: 0,
        }
    }

    fn write(&mut self, buf: &mut AlignedBuf, at: u64, len: usize) -> io::Result<()> {
        if self.direct && at.is_multiple_of(ALIGN as u64) {
            // Only the last write of a stream (or one before a cut) has a ragged end: pad it with
            // zeros to the boundary and cut the file back to the true length.
            let padded = len.next_multiple_of(ALIGN);
            buf[len..padded].fill(0);
            match self.file.write_all_at(&buf[..padded], at) {
                Ok(()) if padded == len => return Ok(()),
                Ok(()) => return self.file.set_len(at + len as u64),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        if self.direct {
            set_direct(&self.file, false)?;
            self.direct = false;
        }
        self.file.write_all_at(&buf[..len], at)?;
        self.start_writeback(at + len as u64);
        Ok(())
    }

    /// Starts the disk writeback of what the page cache holds, every [`WRITEBACK_STEP`] bytes,
    /// without waiting for it, so the disk works while the job reads on and the final `fsync`
    /// has only the tail left to wait for.
    fn start_writeback(&mut self, end: u64) {
        if end.saturating_sub(self.writeback_start) < WRITEBACK_STEP {
            return;
        }
        // SAFETY: `file` is an open descriptor; the call only schedules writeback of a range.
        // Failures are ignored: the stream's fsync at the end reports any real write error.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.writeback_start as libc::off64_t,
                (end - self.writeback_start) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        self.writeback_start = end;
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.writeback_start = self.writeback_start.min(len);
        Ok(())
    }
}

/// Turns `O_DIRECT` on or off for an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on an open descriptor has no memory effects.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: F_SETFL with file status flags on an open descriptor has no memory effects.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The reading side of a stream file: the caller reads object data into [`StreamWriter::space`]
/// and commits it; full buffers go to the writer thread.
pub struct StreamWriter {
    tx: Option<mpsc::SyncSender<WriteMsg>>,
    pool: mpsc::Receiver<AlignedBuf>,
    thread: Option<JoinHandle<io::Result<File>>>,
    buf: AlignedBuf,
    /// Bytes of `buf` holding stream data.
    filled: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
}

impl StreamWriter {
    /// Start writing `file` (empty, opened for writing) in the given mode.
    pub fn new(file: File, io: StreamIo) -> StreamWriter {
        let (tx, rx) = mpsc::sync_channel::<WriteMsg>(POOL);
        let (pool_tx, pool) = mpsc::channel::<AlignedBuf>();
        for _ in 0..POOL {
            let _ = pool_tx.send(AlignedBuf::new(BUFFER_SIZE));
        }
        let thread = std::thread::spawn(move || {
            let mut out = DiskWriter::new(file, io);
            for msg in rx {
                match msg {
                    WriteMsg::Data { mut buf, at, len } => {
                        out.write(&mut buf, at, len)?;
                        let _ = pool_tx.send(buf);
                    }
                    WriteMsg::Truncate(len) => out.truncate(len)?,
                }
            }
            Ok(out.file)
        });
        StreamWriter {
            tx: Some(tx),
            pool,
            thread: Some(thread),
            buf: AlignedBuf::new(BUFFER_SIZE),
            filled: 0,
            base: 0,
        }
    }

    /// Bytes in the stream so far.
    pub fn offset(&self) -> u64 {
        self.base + self.filled as u64
    }

    fn writer_error(&mut self) -> io::Error {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the stream writer stopped"),
        }
    }

    fn send(&mut self, msg: WriteMsg) -> io::Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(msg));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.writer_error()),
        }
    }

    /// Hand the current buffer to the writer and take an empty one. With `carry`, the bytes past
    /// the last [`ALIGN`] boundary of the stream stay behind, at the head of the new buffer.
    fn flush_buffer(&mut self, carry: bool) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let end = self.offset();
        let boundary = end - end % ALIGN as u64;
        let keep = if carry && boundary > self.base {
            (end - boundary) as usize
        } else {
            0
        };
        let len = self.filled - keep;
        let mut next = match self.pool.recv() {
            Ok(b) => b,
            Err(_) => return Err(self.writer_error()),
        };
        next[..keep].copy_from_slice(&self.buf[len..self.filled]);
        let full = std::mem::replace(&mut self.buf, next);
        let at = self.base;
        self.base += len as u64;
        self.filled = keep;
        self.send(WriteMsg::Data { buf: full, at, len })
    }

    /// Free space to read the next chunk into (at least 64 KiB).
    pub fn space(&mut self) -> io::Result<&mut [u8]> {
        if self.buf.len() - self.filled < MIN_READ {
            self.flush_buffer(true)?;
        }
        Ok(&mut self.buf[self.filled..])
    }

    /// `n` bytes were read into [`StreamWriter::space`].
    pub fn commit(&mut self, n: usize) {
        self.filled += n;
    }

    /// Drop everything after stream offset `start`.
    pub fn truncate(&mut self, start: u64) -> io::Result<()> {
        if start >= self.base {
            self.filled = (start - self.base) as usize;
            Ok(())
        } else {
            self.filled = 0;
            self.base = start;
            self.send(WriteMsg::Truncate(start))
        }
    }

    /// Write everything out and return the file (not yet synced).
    pub fn finish(mut self) -> io::Result<File> {
        self.flush_buffer(false)?;
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the stream writer panicked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A deterministic byte pattern, different for every object.
    fn object(n: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + n * 7 + i / 251) as u8).collect()
    }

    /// Writes objects of awkward sizes, cutting some back out halfway as a failed object is,
    /// and returns what the file must hold.
    fn write_stream(w: &mut StreamWriter) -> Vec<u8> {
        let sizes = [
            0,
            1,
            4095,
            4096,
            4097,
            100,
            3 * BUFFER_SIZE + 17,
            65_536,
            BUFFER_SIZE - 1,
            12_345,
            7,
            2 * BUFFER_SIZE,
            333,
        ];
        let mut expected = Vec::new();
        for (n, &len) in sizes.iter().enumerate() {
            let data = object(n, len);
            let start = w.offset();
            let mut done = 0;
            // Objects 2, 6 and 11 fail: 6 and 11 after a few buffers went to the writer.
            let fail_at = match n {
                2 => Some(len / 2),
                6 | 11 => Some(len - 5),
                _ => None,
            };
            while done < fail_at.unwrap_or(len) {
                let space = w.space().unwrap();
                let k = space.len().min(fail_at.unwrap_or(len) - done).min(70_001);
                space[..k].copy_from_slice(&data[done..done + k]);
                w.commit(k);
                done += k;
            }
            if fail_at.is_some() {
                w.truncate(start).unwrap();
            } else {
                expected.extend_from_slice(&data);
            }
            assert_eq!(w.offset(), expected.len() as u64);
        }
        expected
    }

    fn direct_flag(f: &File) -> bool {
        // SAFETY: F_GETFL on an open descriptor has no memory effects.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) & libc::O_DIRECT != 0 }
    }

    fn round_trip(dir: &Path, io: StreamIo) -> File {
        let path = dir.join(format!("stream-{io:?}.data"));
        let mut w = StreamWriter::new(File::create_new(&path).unwrap(), io);
        let expected = write_stream(&mut w);
        let file = w.finish().unwrap();
        file.sync_all().unwrap();
        assert!(
            std::fs::read(&path).unwrap() == expected,
            "{io:?} stream differs"
        );
        file
    }

    #[test]
    fn both_modes_write_exactly_the_kept_objects() {
        let dir = tempfile::tempdir().unwrap();
        let buffered = round_trip(dir.path(), StreamIo::Buffered);
        assert!(!direct_flag(&buffered));
        round_trip(dir.path(), StreamIo::Direct);
    }

    #[test]
    fn direct_io_stays_on_for_a_stream_without_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        let probe = File::create_new(&path).unwrap();
        if set_direct(&probe, true).is_err() {
            eprintln!("the temporary directory's file system refuses O_DIRECT; nothing to check");
            return;
        }
        let mut w = StreamWriter::new(
            File::create_new(dir.path().join("s")).unwrap(),
            StreamIo::Direct,
        );
        let data = object(1, 5 * BUFFER_SIZE + 1234);
        for chunk in data.chunks(50_000) {
            let space = w.space().unwrap();
            space[..chunk.len()].copy_from_slice(chunk);
            w.commit(chunk.len());
        }
        let file = w.finish().unwrap();
        assert!(
            direct_flag(&file),
            "direct I/O was dropped for an aligned stream"
        );
        assert!(std::fs::read(dir.path().join("s")).unwrap() == data);
    }

    #[test]
    fn modes_parse_and_an_unknown_one_names_the_choices() {
        assert_eq!(StreamIo::parse(None), Ok(StreamIo::Buffered));
        assert_eq!(StreamIo::parse(Some("direct")), Ok(StreamIo::Direct));
        assert_eq!(StreamIo::parse(Some("buffered")), Ok(StreamIo::Buffered));
        let e = StreamIo::parse(Some("fast")).unwrap_err();
        assert!(e.contains("\"buffered\" or \"direct\""), "{e}");
    }
}
