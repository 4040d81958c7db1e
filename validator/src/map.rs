//! Read-only memory maps of files to parse, safe against the file shrinking under the map.
//!
//! The entry library is parsed where it lies (a file of a tree, a region of an uncompressed
//! package, a temporary copy) instead of being read into memory: its size costs address space
//! and page cache, not heap, and the parser touches only the pages it reads.
//!
//! Reading a mapped page that lies past the end of a file that shrank raises `SIGBUS`. The
//! handler installed here replaces such a page of a live [`Map`] with a page of zeros and
//! records it, so the read goes on (over zeros) and the caller learns from [`Map::shrank`]
//! that what it parsed is not the file, instead of the process dying. Any other `SIGBUS` goes
//! to the handler that was installed before.

use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

/// Maps that can be live at once (one per parse in progress).
const SLOTS: usize = 64;
/// `end` of a slot being filled in.
const CLAIMED: usize = usize::MAX;

/// The address range of a live map, read by the signal handler.
struct Slot {
    start: AtomicUsize,
    /// One past the last byte; 0 when free, [`CLAIMED`] while being filled in.
    end: AtomicUsize,
    /// A page of the range was replaced by zeros.
    shrank: AtomicBool,
}

static LIVE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        shrank: AtomicBool::new(false),
    }
}; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(0);
/// The `SIGBUS` action before ours, or why ours could not be installed.
static PREVIOUS: OnceLock<Result<libc::sigaction, i32>> = OnceLock::new();

/// A read-only map of part of a file.
pub struct Map {
    /// The map and its slot in [`LIVE`]; none for zero bytes.
    map: Option<(Mmap, usize)>,
}

impl Map {
    /// Map `len` bytes of `file` from `offset`, read-only.
    pub fn new(file: &File, offset: u64, len: u64) -> io::Result<Map> {
        if len == 0 {
            return Ok(Map { map: None });
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::other("too large to map on this platform"))?;
        install()?;
        let slot = claim()?;
        // SAFETY: the map is read-only and private to this value. Another process may change
        // or truncate the file while it is mapped: a change shows as other bytes (the parser
        // checks every offset against the map's length, which never changes), and reading
        // past a truncation is caught by the SIGBUS handler, which puts zeros there and
        // records it.
        let map = match unsafe { MmapOptions::new().offset(offset).len(len).map(file) } {
            Ok(m) => m,
            Err(e) => {
                LIVE[slot].end.store(0, SeqCst);
                return Err(e);
            }
        };
        let s = &LIVE[slot];
        let start = map.as_ptr() as usize;
        s.start.store(start, SeqCst);
        s.shrank.store(false, SeqCst);
        s.end.store(start + len, SeqCst);
        Ok(Map {
            map: Some((map, slot)),
        })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |(m, _)| &m[..])
    }

    /// Whether a page past the end of the file was read: the file shrank while it was mapped,
    /// and zeros were read there instead of its bytes.
    pub fn shrank(&self) -> bool {
        self.map
            .as_ref()
            .is_some_and(|&(_, slot)| LIVE[slot].shrank.load(SeqCst))
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // Forget the range before it is unmapped (the field drops after this).
        if let Some((_, slot)) = &self.map {
            LIVE[*slot].end.store(0, SeqCst);
        }
    }
}

/// A free slot, marked [`CLAIMED`].
fn claim() -> io::Result<usize> {
    (0..SLOTS)
        .find(|&i| {
            LIVE[i]
                .end
                .compare_exchange(0, CLAIMED, SeqCst, SeqCst)
                .is_ok()
        })
        .ok_or_else(|| io::Error::other(format!("more than {SLOTS} files mapped at once")))
}

/// Install the `SIGBUS` handler, once per process.
fn install() -> io::Result<()> {
    let r = PREVIOUS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE.store(usize::try_from(page).unwrap_or(4096), SeqCst);
        // SAFETY: a zeroed sigaction is a valid value to fill in; sigaction only reads `act`
        // and writes `old`, both valid for the call.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(libc::SIGBUS, &act, &mut old) != 0 {
                return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            Ok(old)
        }
    });
    match r {
        Ok(_) => Ok(()),
        Err(code) => Err(io::Error::from_raw_os_error(*code)),
    }
}

/// The `SIGBUS` handler: a fault in a live map becomes a page of zeros; anything else goes to
/// the previous handler. Only async-signal-safe work: atomics, `mmap`, `sigaction`, `raise`.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(SeqCst);
    for s in &LIVE {
        let end = s.end.load(SeqCst);
        if end == 0 || end == CLAIMED || !(s.start.load(SeqCst)..end).contains(&addr) {
            continue;
        }
        // SAFETY: the page lies inside a live read-only map of ours (it is unmapped only after
        // its slot is cleared), so replacing it touches no other memory. errno is saved and
        // restored around the call, as the interrupted code may be reading it.
        let mapped = unsafe {
            let errno = *libc::__errno_location();
            let p = libc::mmap(
                (addr & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            *libc::__errno_location() = errno;
            p != libc::MAP_FAILED
        };
        if mapped {
            s.shrank.store(true, SeqCst);
            return;
        }
        break;
    }
    // Not ours: give the signal back to the previous action. A fault repeats when this
    // returns; a sent signal is raised again (it is delivered once this handler returns).
    if let Some(Ok(old)) = PREVIOUS.get() {
        // SAFETY: sigaction and raise are async-signal-safe; `old` is a valid action.
        unsafe {
            libc::sigaction(sig, old, std::ptr::null_mut());
            libc::raise(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_shrinking_under_the_map_reads_as_zeros_and_is_told() {
        let page = {
            // SAFETY: sysconf has no preconditions.
            unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
        };
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; 3 * page]).unwrap();
        let m = Map::new(&f, 0, 3 * page as u64).unwrap();
        assert_eq!(m.bytes()[2 * page], 7);
        assert!(!m.shrank());

        f.set_len(page as u64).unwrap();
        // The first page is still the file's; the last two are gone.
        assert_eq!(m.bytes()[10], 7);
        assert!(!m.shrank());
        let tail: u64 = m.bytes()[page..].iter().map(|&b| u64::from(b)).sum();
        assert_eq!(tail, 0);
        assert!(m.shrank());

        // Other maps are not affected, and a map of a region works at any offset.
        let mut g = tempfile::tempfile().unwrap();
        g.write_all(b"0123456789").unwrap();
        let r = Map::new(&g, 3, 4).unwrap();
        assert_eq!(r.bytes(), b"3456");
        assert!(!r.shrank());
        assert!(Map::new(&g, 0, 0).unwrap().bytes().is_empty());
    }

    /// Run by [`a_fault_elsewhere_still_kills_the_process`] in a child process: with the
    /// handler installed, read past the end of a map that is not a [`Map`].
    #[test]
    #[ignore = "run in a child process by a_fault_elsewhere_still_kills_the_process"]
    fn fault_outside_any_map() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 8192]).unwrap();
        let _ours = Map::new(&f, 0, 8192).unwrap();
        // SAFETY: the point of this test is to fault: the file is truncated under the map.
        let theirs = unsafe { MmapOptions::new().len(8192).map(&f) }.unwrap();
        f.set_len(0).unwrap();
        let x = theirs[4096];
        println!("survived a fault with {x}");
    }

    #[test]
    fn a_fault_elsewhere_still_kills_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "map::tests::fault_outside_any_map",
                "--nocapture",
            ])
            .output()
            .unwrap();
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGBUS),
            "{o:?}: the fault is not swallowed"
        );
    }
}
