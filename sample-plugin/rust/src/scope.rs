//! How a restore reaches the paths it changes (RST-2, RST-10).
//!
//! Under an alternate root, a path is walked one directory at a time from a descriptor of the
//! root, and no symbolic link below the root is followed: whether it was there before or the
//! restore made it, a link met on the way stops the walk, so no change can land outside the
//! root. The root itself may be, or pass through, a link: it is opened once, at
//! `aapi_restore_preprocess`, and stays that directory for the whole restore, whatever another
//! process puts at its path later. The root's own path is that directory itself (`.` of its
//! descriptor), never an entry of its parent. Every change is then made relative to the
//! descriptor of the object's parent directory ([`Dir`]). A restore to the original location,
//! or to the alternate root `/` (which holds every path), follows the links of parent
//! directories, as the paths of a system need (`/home` may be a link).

use crate::dir::{Dir, Stat, c_string, describe};
use crate::paths;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a path could not be walked; each names the component where the walk stopped.
#[derive(Debug)]
pub enum Stop {
    /// It does not exist.
    Missing(PathBuf),
    /// It exists and is not a directory (nor, below an alternate root, a symbolic link).
    NotDir(PathBuf),
    /// It is a symbolic link below the alternate root (the second path).
    Link(PathBuf, PathBuf),
    /// Another failure: looking it up, or making it.
    Io(PathBuf, io::Error),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Missing(p) => write!(f, "{} does not exist", p.display()),
            Stop::NotDir(p) => write!(f, "{} is not a directory", p.display()),
            Stop::Link(p, root) => write!(
                f,
                "{} is a symbolic link below the alternate root {}",
                p.display(),
                root.display()
            ),
            Stop::Io(p, e) => write!(f, "{}: {}", p.display(), describe(e)),
        }
    }
}

impl Stop {
    /// The stop as an I/O error with the same text, for the log.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            Stop::Missing(_) => io::ErrorKind::NotFound,
            Stop::NotDir(_) => io::ErrorKind::NotADirectory,
            Stop::Link(..) => io::ErrorKind::InvalidInput,
            Stop::Io(_, e) => e.kind(),
        };
        io::Error::new(kind, self.to_string())
    }
}

/// Where the paths of one restore are walked.
#[derive(Clone)]
pub struct Scope {
    /// Where every walk starts: the alternate root, opened at preprocess, or `/`.
    top: Dir,
    /// The alternate root (normalized), when there is one other than `/`.
    root: Option<PathBuf>,
}

impl Scope {
    /// The scope of a restore to `root` (normalized), or to the original location (`None`):
    /// the root is opened here, following links, and stays that directory.
    pub fn new(root: Option<&Path>) -> io::Result<Scope> {
        let root = root.filter(|r| *r != Path::new("/"));
        let top = Dir::open(root.unwrap_or(Path::new("/")))?;
        Ok(Scope {
            top,
            root: root.map(Path::to_path_buf),
        })
    }

    /// The alternate root that bounds the paths, if any (never `/`).
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The directory where the walks start: the alternate root, or `/`.
    pub fn top(&self) -> &Dir {
        &self.top
    }

    /// Whether the normalized `path` is where the walks start: the alternate root, or `/`.
    pub fn is_top(&self, path: &Path) -> bool {
        path == self.root.as_deref().unwrap_or(Path::new("/"))
    }

    /// The directory at the normalized absolute `dir`. Below the alternate root no symbolic
    /// link is followed. With `made`, missing directories are made (mode 0700) and listed there,
    /// top first.
    pub fn dir(&self, dir: &Path, mut made: Option<&mut Vec<PathBuf>>) -> Result<Dir, Stop> {
        let top = self.root.as_deref().unwrap_or(Path::new("/"));
        if !paths::is_within(dir, top) {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "outside the alternate root");
            return Err(Stop::Io(dir.to_path_buf(), e));
        }
        let confined = self.root.is_some();
        let rest = &paths::bytes(dir)[paths::bytes(top).len()..];
        let mut here = top.to_path_buf();
        let mut fd = self.top.clone();
        for part in rest.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            here.push(OsStr::from_bytes(part));
            let name = c_string(part).map_err(|e| Stop::Io(here.clone(), e))?;
            let next = match (fd.open_dir(&name, !confined), made.as_deref_mut()) {
                (Ok(d), _) => d,
                (Err(e), Some(made)) if e.kind() == io::ErrorKind::NotFound => {
                    match fd.mkdir(&name, 0o700) {
                        Ok(()) => made.push(here.clone()),
                        // Something is there (a dangling link, say, or a directory made at
                        // the same moment): used only if it is a directory.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Stop::Io(here, e)),
                    }
                    fd.open_dir(&name, !confined).map_err(|e| {
                        match classify(&fd, &name, &here, e, self.root.as_deref()) {
                            Stop::Missing(p) => Stop::NotDir(p),
                            s => s,
                        }
                    })?
                }
                (Err(e), _) => return Err(classify(&fd, &name, &here, e, self.root.as_deref())),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// The parent directory of the normalized absolute `path` and the name of `path` in it; the
    /// alternate root, or `/`, is `.` of itself. With `made`, as in [`Scope::dir`].
    pub fn parent(
        &self,
        path: &Path,
        made: Option<&mut Vec<PathBuf>>,
    ) -> Result<(Dir, CString), Stop> {
        if self.is_top(path) {
            return Ok((self.top.clone(), c".".to_owned()));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "outside the alternate root");
            return Err(Stop::Io(path.to_path_buf(), e));
        };
        let name = c_string(name.as_bytes()).map_err(|e| Stop::Io(path.to_path_buf(), e))?;
        Ok((self.dir(parent, made)?, name))
    }

    /// [`Scope::parent`] for calls whose failures are only logged.
    fn at(&self, path: &Path) -> io::Result<(Dir, CString)> {
        self.parent(path, None).map_err(Stop::into_io)
    }

    /// What `path` itself is; `None` when it, or one of its parents, is missing.
    pub fn stat(&self, path: &Path) -> Result<Option<Stat>, Stop> {
        match self.parent(path, None) {
            Ok((dir, name)) => dir.stat(&name).map_err(|e| Stop::Io(path.to_path_buf(), e)),
            Err(Stop::Missing(_)) => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Give the directory `path` the permission bits `mode`.
    pub fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.at(path)?;
        dir.chmod(&name, mode)
    }

    /// Remove the empty directories `made` (deepest first), as far as they still are.
    pub fn remove_made(&self, made: &[PathBuf]) {
        for d in made.iter().rev() {
            if let Ok((dir, name)) = self.at(d) {
                let _ = dir.remove(&name, true);
            }
        }
    }
}

/// Why the component `name` of `dir`, at `here`, could not be opened as a directory.
fn classify(dir: &Dir, name: &CString, here: &Path, e: io::Error, root: Option<&Path>) -> Stop {
    let here = here.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Stop::Missing(here),
        Some(libc::ENOTDIR | libc::ELOOP) => match (dir.stat(name), root) {
            (Ok(Some(st)), Some(root)) if st.is_symlink() => Stop::Link(here, root.to_path_buf()),
            _ => Stop::NotDir(here),
        },
        _ => Stop::Io(here, e),
    }
}
