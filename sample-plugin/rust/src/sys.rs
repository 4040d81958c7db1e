//! The few system calls std does not wrap: times without following symlinks, the copy-on-write
//! clone ioctl, a checked close, and the effective user id (the calls relative to a directory's
//! descriptor, and the free space of its file system, are in `dir`).

use aapi_sdk::plugin::Timestamp;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether the plugin runs as root (owners and setuid/setgid bits are restored only then).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Set atime and mtime of `path` itself, never of a symlink's target (RST-5); `None` leaves a
/// time unchanged.
pub fn set_times_nofollow(
    path: &Path,
    atime: Option<Timestamp>,
    mtime: Option<Timestamp>,
) -> io::Result<()> {
    let times = [crate::dir::timespec(atime), crate::dir::timespec(mtime)];
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated path and `times` two valid timespecs, both alive for the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Clone `src` into `dst` copy-on-write (`FICLONE`): both share their blocks until one changes.
pub fn clone_file(dst: &File, src: &File) -> io::Result<()> {
    // SAFETY: both descriptors are open files owned by the caller for the duration of the call.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a clone error means "this file system cannot clone" rather than a real I/O failure.
pub fn clone_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EOPNOTSUPP
                | libc::EXDEV
                | libc::EINVAL
                | libc::ENOTTY
                | libc::ENOSYS
                | libc::EBADF
        )
    )
}

/// Close a file and report the error `close` gives (some file systems report write errors only
/// there), which dropping a `File` would ignore.
pub fn close_checked(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by the File, so it is open and closed exactly once here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
