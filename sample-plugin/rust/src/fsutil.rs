//! File system helpers shared by snapshots and restores.

use aapi_sdk::plugin::{Error, ErrorKind, Result};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The metadata of `path` itself (`lstat`); `Ok(None)` when nothing is there.
pub fn lstat(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(md) => Ok(Some(md)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `AAPI_ENOENT` for a path that is missing (or whose parent is not a directory), else the
/// error's own kind; the message names the path.
pub fn path_error(err: io::Error, what: &str, path: &Path) -> Error {
    let missing = matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    );
    if missing {
        Error::not_found(format!("{} does not exist", path.display()))
    } else {
        crate::dir::io_error(err, format!("cannot {what} {}", path.display()))
    }
}

/// Create `dir` and its missing ancestors with mode 0700, returning the directories made (top
/// first). An ancestor that exists but is not a directory is `AAPI_EEXIST`.
pub fn mkdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let mut missing: Vec<&Path> = dir.ancestors().collect();
    missing.reverse();
    for p in missing {
        if p.as_os_str().is_empty() {
            continue;
        }
        match fs::DirBuilder::new().mode(0o700).create(p) {
            Ok(()) => made.push(p.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(p).is_ok_and(|m| m.is_dir()) {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", p.display()),
                    ));
                }
            }
            Err(e) => {
                let err =
                    crate::dir::io_error(e, format!("cannot create directory {}", p.display()));
                remove_made(&made);
                return Err(err);
            }
        }
    }
    Ok(made)
}

/// Remove directories made by [`mkdirs`] (deepest first), as far as they are still empty.
pub fn remove_made(made: &[PathBuf]) {
    for d in made.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}
