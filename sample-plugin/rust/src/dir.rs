//! An open directory and the system calls that act on one of its entries by name: the restore
//! makes every change this way (RST-10), so that no symbolic link between the directory and the
//! entry can be followed, and a final component that is a link is never followed either.

use aapi_sdk::plugin::{Error, Host, ObjectProps, ObjectType, Owner, Result, Timestamp};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The result of a system call that returns 0 or -1 with `errno`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The text of an I/O error as the C library gives it (`strerror`), without the `(os error N)`
/// that Rust appends: log lines read the same from both samples.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => text
            .strip_suffix(&format!(" (os error {n})"))
            .map_or(text.clone(), str::to_string),
        None => text,
    }
}

/// The bytes of a path or name as a C string.
pub fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The `utimensat` form of a time; `None` leaves it unchanged (`UTIME_OMIT`).
pub fn timespec(t: Option<Timestamp>) -> libc::timespec {
    match t {
        Some(t) => libc::timespec {
            tv_sec: t.sec as libc::time_t,
            tv_nsec: t.nsec as libc::c_long,
        },
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    }
}

/// What `fstatat` says of an entry itself (a symbolic link is not followed).
#[derive(Clone, Copy)]
pub struct Stat(libc::stat);

impl Stat {
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.0.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.0.st_mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// The permission bits (`07777`).
    pub fn mode(&self) -> u32 {
        self.0.st_mode & 0o7777
    }

    /// The owner.
    pub fn uid(&self) -> u32 {
        self.0.st_uid
    }

    /// The group.
    pub fn gid(&self) -> u32 {
        self.0.st_gid
    }

    /// The last access, to the nanosecond.
    pub fn atime(&self) -> Timestamp {
        Timestamp::new(self.0.st_atime, self.0.st_atime_nsec as u32)
    }

    /// The last modification, to the nanosecond.
    pub fn mtime(&self) -> Timestamp {
        Timestamp::new(self.0.st_mtime, self.0.st_mtime_nsec as u32)
    }

    /// The device of the file system that holds it.
    pub fn dev(&self) -> u64 {
        self.0.st_dev
    }

    /// What it is, beyond any path: device and inode.
    pub fn identity(&self) -> (u64, u64) {
        (self.0.st_dev, self.0.st_ino)
    }

    /// Every property of a file, directory or symlink (for a symlink, the size is the target
    /// length); other file types are `AAPI_ENOTSUP` naming `path`.
    pub fn props(&self, path: &Path) -> Result<ObjectProps> {
        let st = &self.0;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => ObjectType::File,
            libc::S_IFDIR => ObjectType::Dir,
            libc::S_IFLNK => ObjectType::Symlink,
            _ => {
                return Err(Error::not_supported(format!(
                    "{} is not a file, directory or symlink",
                    path.display()
                )));
            }
        };
        let time = |sec: i64, nsec: i64| Timestamp::new(sec, nsec.clamp(0, 999_999_999) as u32);
        let size = match kind {
            ObjectType::Dir => 0,
            _ => st.st_size as u64,
        };
        Ok(ObjectProps {
            kind,
            size: Some(size),
            mode: Some(self.mode()),
            owner: Some(Owner {
                uid: st.st_uid,
                gid: st.st_gid,
            }),
            atime: Some(time(st.st_atime, st.st_atime_nsec)),
            mtime: Some(time(st.st_mtime, st.st_mtime_nsec)),
            ctime: Some(time(st.st_ctime, st.st_ctime_nsec)),
        })
    }
}

/// A directory, held by a descriptor that only names it (`O_PATH`: no read permission needed).
/// Clones share the descriptor.
#[derive(Clone)]
pub struct Dir(Arc<OwnedFd>);

impl Dir {
    /// The directory at `path`, following symbolic links on the way (the walk of
    /// [`crate::scope`] decides where that is allowed).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = c_string(path.as_os_str().as_bytes())?;
        // SAFETY: `c` is a NUL-terminated path, alive for the call.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        Dir::own(fd)
    }

    fn own(fd: libc::c_int) -> io::Result<Dir> {
        Ok(Dir(Arc::new(Dir::owned(fd)?)))
    }

    /// A descriptor just returned by an open, or the error.
    fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by a successful open and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The directory `name` in this one opened for reading, never through a symbolic link.
    pub fn open_readable(&self, name: &CStr) -> io::Result<OwnedFd> {
        // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
        Dir::owned(unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })
    }

    /// This directory itself, to record and change its own owner, mode and times through a
    /// descriptor (its name in its parent is not looked up again).
    pub fn itself(&self) -> Itself {
        Itself {
            readable: self.open_readable(c".").ok(),
            dir: self.clone(),
        }
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// The directory `name` in this one; with `follow` false a symbolic link there is not
    /// followed (the call fails with `ENOTDIR`).
    pub fn open_dir(&self, name: &CStr, follow: bool) -> io::Result<Dir> {
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        // SAFETY: `name` is NUL-terminated and `self` an open descriptor, both alive for the call.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow,
            )
        };
        Dir::own(fd)
    }

    /// The entry `name` itself; `None` when nothing is there.
    pub fn stat(&self, name: &CStr) -> io::Result<Option<Stat>> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `name` is NUL-terminated, `st` is writable; both alive for the call.
        let rc = unsafe {
            libc::fstatat(
                self.fd(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match check(rc) {
            // SAFETY: fstatat returned 0, so it filled the struct.
            Ok(()) => Ok(Some(Stat(unsafe { st.assume_init() }))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// This directory itself.
    pub fn stat_self(&self) -> io::Result<Stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `self` is an open descriptor and `st` is writable, both alive for the call.
        check(unsafe { libc::fstat(self.fd(), st.as_mut_ptr()) })?;
        // SAFETY: fstat returned 0, so it filled the struct.
        Ok(Stat(unsafe { st.assume_init() }))
    }

    /// The target of the symbolic link `name`.
    pub fn read_link(&self, name: &CStr) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: `name` is NUL-terminated, `self` open and `buf` writable for its length,
            // all alive for the call.
            let n = unsafe {
                libc::readlinkat(self.fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(buf);
            }
            // Perhaps cut short: try again with room to spare.
            buf.resize(buf.len() * 2, 0);
        }
    }

    /// Make the directory `name` with `mode`.
    pub fn mkdir(&self, name: &CStr, mode: u32) -> io::Result<()> {
        // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
        check(unsafe { libc::mkdirat(self.fd(), name.as_ptr(), mode as libc::mode_t) })
    }

    /// Create the regular file `name` for writing, with `mode`; fails when anything, a symbolic
    /// link included, is already there.
    pub fn create_file(&self, name: &CStr, mode: u32) -> io::Result<File> {
        // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
        let fd = unsafe {
            libc::openat(
                self.fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        Ok(File::from(Dir::owned(fd)?))
    }

    /// Rename the entry `from` to `to`, both in this directory.
    pub fn rename(&self, from: &CStr, to: &CStr) -> io::Result<()> {
        // SAFETY: both names are NUL-terminated and `self` open, all alive for the call.
        check(unsafe { libc::renameat(self.fd(), from.as_ptr(), self.fd(), to.as_ptr()) })
    }

    /// Rename the entry `from` to `to`, both in this directory, without replacing anything:
    /// fails with `AlreadyExists` when `to` exists. On a file system without
    /// `RENAME_NOREPLACE`, `to` is looked up first (a name made between the two is replaced).
    pub fn rename_noreplace(&self, from: &CStr, to: &CStr) -> io::Result<()> {
        // SAFETY: both names are NUL-terminated and `self` open, all alive for the call.
        let r = check(unsafe {
            libc::renameat2(
                self.fd(),
                from.as_ptr(),
                self.fd(),
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if self.stat(to)?.is_some() {
                    return Err(io::Error::from_raw_os_error(libc::EEXIST));
                }
                self.rename(from, to)
            }
            r => r,
        }
    }

    /// A hard link `to` of the entry `from`, both in this directory (fails when `to` exists).
    pub fn link(&self, from: &CStr, to: &CStr) -> io::Result<()> {
        // SAFETY: both names are NUL-terminated and `self` open, all alive for the call.
        check(unsafe { libc::linkat(self.fd(), from.as_ptr(), self.fd(), to.as_ptr(), 0) })
    }

    /// Remove the entry `name`: an empty directory when `dir`, anything else otherwise.
    pub fn remove(&self, name: &CStr, dir: bool) -> io::Result<()> {
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
        check(unsafe { libc::unlinkat(self.fd(), name.as_ptr(), flags) })
    }

    /// Make `name` a symbolic link to `target`.
    pub fn symlink(&self, target: &CStr, name: &CStr) -> io::Result<()> {
        // SAFETY: both strings are NUL-terminated and `self` open, all alive for the call.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.fd(), name.as_ptr()) })
    }

    /// Give the entry `name` itself (never a link's target) an owner and group.
    pub fn chown(&self, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
        check(unsafe {
            libc::fchownat(
                self.fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    /// Give the directory `name` (never a symbolic link) the permission bits `mode`, through a
    /// descriptor of it opened without following a link. Where the caller may not open it for
    /// reading, the C library changes the mode without following a link where it can
    /// (`AT_SYMLINK_NOFOLLOW`, through `/proc` or `fchmodat2`), and where it cannot, the entry is
    /// checked not to be a link first.
    pub fn chmod(&self, name: &CStr, mode: u32) -> io::Result<()> {
        match self.open_readable(name) {
            Ok(fd) => fchmod(&fd, mode),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                let chmod = |flags| {
                    // SAFETY: `name` is NUL-terminated and `self` open, both alive for the call.
                    check(unsafe {
                        libc::fchmodat(self.fd(), name.as_ptr(), mode as libc::mode_t, flags)
                    })
                };
                match chmod(libc::AT_SYMLINK_NOFOLLOW) {
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                        match self.stat(name)? {
                            Some(st) if !st.is_symlink() => chmod(0),
                            Some(_) => Err(io::Error::from_raw_os_error(libc::ELOOP)),
                            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                        }
                    }
                    r => r,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Set the atime and mtime of the entry `name` itself, never of a link's target (RST-5);
    /// `None` leaves a time unchanged.
    pub fn set_times(
        &self,
        name: &CStr,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> io::Result<()> {
        let times = [timespec(atime), timespec(mtime)];
        // SAFETY: `name` is NUL-terminated, `times` two valid timespecs and `self` open, all
        // alive for the call.
        check(unsafe {
            libc::utimensat(
                self.fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    /// Bytes available to an unprivileged caller on the file system of this directory
    /// (`f_bavail * f_frsize`).
    pub fn available_bytes(&self) -> io::Result<u64> {
        let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `self` is open and `vfs` writable, both alive for the call.
        check(unsafe { libc::fstatvfs(self.fd(), vfs.as_mut_ptr()) })?;
        // SAFETY: fstatvfs returned 0, so the struct is initialised.
        let vfs = unsafe { vfs.assume_init() };
        #[allow(clippy::unnecessary_cast)] // the field types differ between C libraries
        Ok((vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64))
    }

    /// Make everything written to the file system of this directory durable (`syncfs`).
    pub fn sync_filesystem(&self) -> io::Result<()> {
        // SAFETY: "." is NUL-terminated and `self` open, both alive for the call.
        let fd = Dir::owned(unsafe {
            libc::openat(
                self.fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` is an open descriptor for the duration of the call.
        check(unsafe { libc::syncfs(fd.as_raw_fd()) })
    }

    /// Whether the directory `name` in this one holds any entry (a symbolic link there is not
    /// followed).
    pub fn has_entries(&self, name: &CStr) -> io::Result<bool> {
        Ok(!self.open_listable(name)?.names()?.is_empty())
    }

    /// The directory `name` in this one, opened for reading its entries; a symbolic link there
    /// is not followed.
    fn open_listable(&self, name: &CStr) -> io::Result<Dir> {
        Ok(Dir(Arc::new(self.open_readable(name)?)))
    }

    /// The names in this directory (opened by [`Dir::open_listable`]), `.` and `..` aside.
    fn names(&self) -> io::Result<Vec<CString>> {
        // SAFETY: `self` is open; the duplicate is a new descriptor owned by the stream below.
        let fd = unsafe { libc::fcntl(self.fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is an open directory descriptor; on success the stream owns it.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `fd` is still ours to close, once.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut names = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; clearing it tells the end of the stream from an
            // error.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is an open directory stream used by this thread only.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let e = io::Error::last_os_error();
                break if e.raw_os_error() == Some(0) {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // SAFETY: readdir returned an entry whose d_name is NUL-terminated and valid until
            // the next readdir on this stream; it is copied right away.
            let n = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if n != c"." && n != c".." {
                names.push(n.to_owned());
            }
        };
        // SAFETY: `stream` is open and closed exactly once, here (with its descriptor).
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }

    /// Remove the entry `name` and, for a directory, everything below it, never following a
    /// symbolic link; a missing entry is success. Directories are opened up (u+rwx) first, so
    /// read-only copies can be removed too. `path` names the entry in messages. With a `host`,
    /// a keepalive is checked at every entry (and cancellation stops the removal).
    ///
    /// At most [`OPEN_LEVELS`] directory levels are held open, whatever the depth: past that,
    /// the outer ones are closed and, once their child is empty and removed, reopened through
    /// the child's `..`, which must be the very directory (device and inode) left there.
    pub fn remove_tree(&self, name: &CStr, path: &Path, host: Option<&Host>) -> Result<()> {
        let Some(top) = self.enter(name, path)? else {
            return Ok(());
        };
        let mut stack = vec![top];
        while let Some(level) = stack.last_mut() {
            if let Some(n) = level.names.next() {
                if let Some(h) = host {
                    h.keepalive_if_due()?;
                }
                let child = level.path.join(std::ffi::OsStr::from_bytes(n.as_bytes()));
                let dir = level.dir.as_ref().expect("the deepest level is open");
                if let Some(entered) = dir.enter(&n, &child)? {
                    stack.push(entered);
                    if let Some(outer) = stack.len().checked_sub(OPEN_LEVELS + 1) {
                        stack[outer].dir = None;
                    }
                }
                continue;
            }
            // Emptied: remove it from its parent, reopening that one first when it was closed.
            let done = stack.pop().expect("a level");
            let parent = match stack.last_mut() {
                None => self.clone(),
                Some(up) => match &up.dir {
                    Some(d) => d.clone(),
                    None => {
                        let d = done.parent(up)?;
                        up.dir = Some(d.clone());
                        d
                    }
                },
            };
            drop(done.dir);
            match parent.remove(&done.name, true) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(
                        e,
                        format!("cannot remove directory {}", done.path.display()),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Start the removal of the entry `name` ([`Dir::remove_tree`]): a directory is opened up,
    /// opened and listed; anything else is removed at once (`None`, as for a missing entry).
    fn enter(&self, name: &CStr, path: &Path) -> Result<Option<Level>> {
        let Some(st) = self
            .stat(name)
            .map_err(|e| io_error(e, format!("cannot inspect {}", path.display())))?
        else {
            return Ok(None);
        };
        if !st.is_dir() {
            return match self.remove(name, false) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_error(e, format!("cannot remove {}", path.display())))
                }
                _ => Ok(None),
            };
        }
        if st.mode() & 0o700 != 0o700 {
            let _ = self.chmod(name, st.mode() | 0o700);
        }
        let dir = self
            .open_listable(name)
            .map_err(|e| io_error(e, format!("cannot open directory {}", path.display())))?;
        let names = dir
            .names()
            .map_err(|e| io_error(e, format!("cannot read directory {}", path.display())))?;
        let id = dir
            .stat_self()
            .map_err(|e| io_error(e, format!("cannot inspect {}", path.display())))?
            .identity();
        Ok(Some(Level {
            name: name.to_owned(),
            path: path.to_path_buf(),
            id,
            dir: Some(dir),
            names: names.into_iter(),
        }))
    }
}

/// Directory levels [`Dir::remove_tree`] holds open at most.
pub const OPEN_LEVELS: usize = 64;

/// An I/O error with what the sample was doing: `"<context>: <reason>"`, the reason as the C
/// library gives it ([`describe`]), so that both samples say the same.
pub fn io_error(err: io::Error, context: impl std::fmt::Display) -> Error {
    Error::new(
        aapi_sdk::plugin::ErrorKind::of_io(&err),
        format!("{context}: {}", describe(&err)),
    )
}

/// One directory being emptied by [`Dir::remove_tree`].
struct Level {
    /// Its name in its parent.
    name: CString,
    /// Its path, for messages.
    path: PathBuf,
    /// Its device and inode, to know it again through `..`.
    id: (u64, u64),
    /// The directory open for reading; `None` while closed to bound the open descriptors.
    dir: Option<Dir>,
    /// The entries still to remove.
    names: std::vec::IntoIter<CString>,
}

impl Level {
    /// The directory `up`, closed meanwhile, reopened as this level's `..`: it must still be
    /// the same directory, or the tree was moved during the removal and it stops.
    fn parent(&self, up: &Level) -> Result<Dir> {
        let dir = self.dir.as_ref().expect("the deepest level is open");
        let reopened = dir
            .open_listable(c"..")
            .map_err(|e| io_error(e, format!("cannot reopen directory {}", up.path.display())))?;
        let id = reopened
            .stat_self()
            .map_err(|e| io_error(e, format!("cannot inspect {}", up.path.display())))?
            .identity();
        if id != up.id {
            return Err(Error::new(
                aapi_sdk::plugin::ErrorKind::Io,
                format!(
                    "cannot remove {}: {} was moved out of it during the removal",
                    up.path.display(),
                    self.path.display()
                ),
            ));
        }
        Ok(reopened)
    }
}

/// Give the open `fd` the permission bits `mode`.
fn fchmod(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor for the duration of the call.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })
}

/// A directory itself ([`Dir::itself`]): its owner, mode and times are read and changed through
/// a descriptor, opened for reading where the caller may; where it may not, through `.` of the
/// directory's own descriptor (which never leads anywhere else either).
pub struct Itself {
    /// The directory opened for reading, when that was allowed.
    readable: Option<OwnedFd>,
    dir: Dir,
}

impl Itself {
    /// What it is now.
    pub fn stat(&self) -> io::Result<Stat> {
        self.dir.stat_self()
    }

    /// Give it an owner and group.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        match &self.readable {
            // SAFETY: `fd` is an open descriptor for the duration of the call.
            Some(fd) => check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }),
            None => self.dir.chown(c".", uid, gid),
        }
    }

    /// Give it the permission bits `mode`.
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        match &self.readable {
            Some(fd) => fchmod(fd, mode),
            // SAFETY: "." is NUL-terminated and the directory open, both alive for the call.
            None => check(unsafe {
                libc::fchmodat(self.dir.fd(), c".".as_ptr(), mode as libc::mode_t, 0)
            }),
        }
    }

    /// Set its atime and mtime.
    pub fn set_times(&self, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
        match &self.readable {
            Some(fd) => {
                let times = [timespec(Some(atime)), timespec(Some(mtime))];
                // SAFETY: `fd` is open and `times` two valid timespecs, both alive for the call.
                check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
            }
            None => self.dir.set_times(c".", Some(atime), Some(mtime)),
        }
    }
}
