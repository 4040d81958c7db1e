//! Objects opened for reading, and properties by name (OBJ-1..OBJ-4, OBJ-7, RC-7).

use crate::dir::describe;
use crate::fsutil::path_error;
use crate::paths;
use aapi_sdk::plugin::{BackupObject, Error, ErrorKind, ObjectProps, Result};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The `lstat` of an absolute object path: `AAPI_EINVAL` for a relative path or one with a `..`
/// component, `AAPI_ENOENT` when missing, `AAPI_ENOTSUP` for a socket, fifo or device.
pub fn object_metadata(path: &Path) -> Result<Metadata> {
    paths::check_object_path(path, "path")?;
    let md = fs::symlink_metadata(path).map_err(|e| path_error(e, "inspect", path))?;
    let ft = md.file_type();
    if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
        return Err(Error::not_supported(format!(
            "{} is not a file, directory or symlink",
            path.display()
        )));
    }
    Ok(md)
}

/// A directory object opens only when the running user may list its contents (read and search
/// permission): otherwise discovery listed it without them, and it must not be recorded as
/// complete. `AAPI_EACCES` saying so, `AAPI_ENOENT` when it vanished.
fn check_listable(path: &Path) -> Result<()> {
    let denied = |e: io::Error| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "the contents of directory {} cannot be listed (not backed up): {}",
                    path.display(),
                    describe(&e)
                ),
            )
        } else {
            path_error(e, "open", path)
        }
    };
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(denied)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // Looking up "." in it needs search permission, as listing its entries does.
    // SAFETY: `dir` is open, the name is NUL-terminated and `st` writable, all alive for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(denied(io::Error::last_os_error()));
    }
    Ok(())
}

enum Data {
    File(File),
    Symlink(Vec<u8>),
    Dir,
}

#[derive(PartialEq, Eq)]
enum State {
    Reading,
    End,
    Changed,
}

/// An object opened for reading. The state at open (size, mtime, ctime) is what its data must
/// still match at the end, so that a torn copy is never reported as good (OBJ-4).
pub struct Reader {
    path: PathBuf,
    data: Data,
    at_open: Metadata,
    read: u64,
    state: State,
}

impl Reader {
    /// Open `path` for reading without following a final symlink. A missing object (vanished
    /// since discovery) is `AAPI_ENOENT`.
    pub fn open(path: &Path) -> Result<Reader> {
        let md = object_metadata(path)?;
        let ft = md.file_type();
        let (data, at_open) = if ft.is_file() {
            // O_NONBLOCK: if a fifo took the file's place since the lstat, do not wait for a
            // writer (TIME-3); the type check below refuses it.
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| path_error(e, "open", path))?;
            let at_open = file.metadata().map_err(|e| {
                crate::dir::io_error(e, format!("cannot inspect {}", path.display()))
            })?;
            if !at_open.is_file() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "{} was replaced by another type of object while opened",
                        path.display()
                    ),
                ));
            }
            (Data::File(file), at_open)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| path_error(e, "read symlink", path))?;
            (Data::Symlink(target.as_os_str().as_bytes().to_vec()), md)
        } else {
            check_listable(path)?;
            (Data::Dir, md)
        };
        Ok(Reader {
            path: path.to_path_buf(),
            data,
            at_open,
            read: 0,
            state: State::Reading,
        })
    }

    fn changed(&mut self) -> Error {
        self.state = State::Changed;
        Error::new(
            ErrorKind::Changed,
            format!(
                "{} changed while it was read (size, mtime or ctime)",
                self.path.display()
            ),
        )
    }

    /// OBJ-4: at the end of the data the object must still be what it was at open, and the
    /// bytes read must be its size; otherwise the end is reported as a change.
    fn end_of_data(&mut self) -> Result<usize> {
        let now = match &self.data {
            Data::File(f) => f.metadata().ok(),
            _ => fs::symlink_metadata(&self.path)
                .ok()
                .filter(|m| m.file_type().is_symlink()),
        };
        let a = &self.at_open;
        let same = now.is_some_and(|n| {
            n.size() == a.size()
                && (n.mtime(), n.mtime_nsec()) == (a.mtime(), a.mtime_nsec())
                && (n.ctime(), n.ctime_nsec()) == (a.ctime(), a.ctime_nsec())
        });
        if !same || self.read != a.size() {
            return Err(self.changed());
        }
        self.state = State::End;
        Ok(0)
    }
}

impl BackupObject for Reader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self.state {
            State::End => return Ok(0),
            State::Changed => return Err(self.changed()),
            State::Reading => {}
        }
        let n = match &mut self.data {
            // OBJ-3: a directory has no data.
            Data::Dir => {
                self.state = State::End;
                return Ok(0);
            }
            // OBJ-3: a symlink's data is its target.
            Data::Symlink(target) => {
                let rest = &target[self.read as usize..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            Data::File(f) => loop {
                match f.read(buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let kind = match ErrorKind::of_io(&e) {
                            ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
                            _ => ErrorKind::Io,
                        };
                        return Err(Error::new(
                            kind,
                            format!("cannot read {}: {e}", self.path.display()),
                        ));
                    }
                }
            },
        };
        if n == 0 {
            return self.end_of_data();
        }
        self.read += n as u64;
        if self.read > self.at_open.size() {
            // The object grew: it cannot match its size at open any more.
            return Err(self.changed());
        }
        if self.read == self.at_open.size() && matches!(self.data, Data::File(_)) {
            // All its bytes are in: check it now and spare the read that would only say "end".
            self.end_of_data()?;
        }
        Ok(n)
    }

    fn props(&self) -> Result<ObjectProps> {
        // OBJ-7: every field carries a true value, as of the open.
        ObjectProps::from_metadata(&self.at_open)
    }
}
