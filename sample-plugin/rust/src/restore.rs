//! Restore: preprocess, created objects, times, deletion and postprocess (RST-1..RST-7, OBJ-5,
//! OBJ-6, RC-11).
//!
//! Nothing a restore writes is visible before it is complete: file data goes to a hidden
//! temporary file beside its target (`.<name>.aapi-tmp-<n>`) that is renamed into place at close;
//! symlinks and directories are made at close. An object replaced under `AAPI_CREATE_OVERWRITE`
//! is renamed aside (`.<name>.aapi-old-<n>`) until `aapi_restore_postprocess` deletes it (success)
//! or puts it back (failure), so a failed restore loses nothing. Every object the restore creates,
//! missing parent directories included, is recorded so that a failed restore removes exactly
//! those. The directories that existed before the restore get back, at a rollback, the owner,
//! mode, atime and mtime they had before its first change (recorded once per directory), as far
//! as the running user may set them: what it may not is a warning, not a failed rollback.
//!
//! Every path is reached through [`Scope`]: under an alternate root no symbolic link below it is
//! followed (RST-10), the root stays the directory it was at preprocess, and each change is made
//! relative to the parent directory's descriptor.

use crate::dir::{Dir, Stat, c_string, describe};
use crate::fsutil::path_error;
use crate::scope::{Scope, Stop};
use crate::{NAME, paths, sys};
use aapi_sdk::plugin::{
    Error, ErrorKind, Host, ObjectProps, ObjectType, RestoreInfo, RestoreObject, RestoreStatus,
    Result, Timestamp,
};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Longest symlink target accepted, in bytes.
const MAX_LINK_TARGET: usize = 65_536;

/// How many hidden names beside an object are tried before giving up.
const HIDDEN_NAME_TRIES: usize = 1000;

/// A directory restored with a mode that keeps its owner out (0555, say). When a later object
/// goes inside it, a restore that does not run as root opens it up (u+rwx) until postprocess,
/// which gives it its exact mode back.
struct DirMode {
    path: PathBuf,
    mode: u32,
    opened: bool,
}

/// A directory that existed before the restore, as it was before the restore's first change,
/// and which directory it is.
#[derive(Clone, Copy)]
struct Saved {
    atime: Timestamp,
    mtime: Timestamp,
    /// The permission bits (`07777`).
    mode: u32,
    uid: u32,
    gid: u32,
    /// Device and inode.
    identity: (u64, u64),
}

impl Saved {
    fn of(md: &Stat) -> Saved {
        Saved {
            atime: md.atime(),
            mtime: md.mtime(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            identity: md.identity(),
        }
    }
}

/// What a restore did to a directory it changed (or changed an entry of).
#[derive(Clone, Copy)]
enum DirState {
    /// Made by this restore: a rollback removes it, there is nothing to put back.
    Made,
    /// Existed before: a rollback puts back its owner (as root), mode, atime and mtime.
    Before(Saved),
    /// Existed before, and `aapi_delete_object` removed an entry of it: that stays after a
    /// rollback, and so do the times it gave the directory; its owner and mode are put back.
    Deleted(Saved),
}

#[derive(Default)]
struct Bookkeeping {
    /// Where the paths are walked: the alternate root, if any (RST-2, RST-10); set by preprocess.
    scope: Option<Scope>,
    /// Every object this restore made (RST-6).
    created: Vec<PathBuf>,
    /// Replaced objects: (path, where the old object waits, whether this restore had created
    /// it: a failed restore then removes it instead of putting it back) (RST-6, RST-7).
    aside: Vec<(PathBuf, PathBuf, bool)>,
    dirmodes: Vec<DirMode>,
    /// The directories this restore changed, each recorded before its first change.
    dirs: HashMap<PathBuf, DirState>,
    /// What each recorded directory had, by device and inode: a directory reached by two paths
    /// (through a link, at the original location) is recorded as it was before the first.
    saved: HashMap<(u64, u64), Saved>,
    /// The file systems this restore wrote to (RST-9): a directory on each, by device.
    written: HashMap<u64, (PathBuf, Dir)>,
}

/// The name of a normalized path in its directory (`.` for `/`), as a C string.
fn name_of(path: &Path) -> Result<CString> {
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or(b".");
    c_string(name).map_err(|e| crate::dir::io_error(e, format!("cannot use {}", path.display())))
}

/// `AAPI_EEXIST` for a create whose walk met `p`, which is not a directory.
fn not_a_directory(p: &Path) -> Error {
    Error::new(
        ErrorKind::AlreadyExists,
        format!("{} exists and is not a directory", p.display()),
    )
}

/// The error of a call on `path` whose walk stopped (RST-10 for a symbolic link): `AAPI_EINVAL`
/// naming `path` and the link; `AAPI_ENOENT` when something on the way is missing or not a
/// directory; the I/O error's code otherwise.
fn walk_error(stop: Stop, path: &Path) -> Error {
    match stop {
        Stop::Link(link, root) => Error::invalid(format!(
            "{} is refused: {} is a symbolic link, and a restore to the alternate root {} follows none below it",
            path.display(),
            link.display(),
            root.display()
        )),
        Stop::Missing(_) | Stop::NotDir(_) => {
            Error::not_found(format!("{} does not exist", path.display()))
        }
        Stop::Io(_, e) => crate::dir::io_error(e, format!("cannot inspect {}", path.display())),
    }
}

/// The parent directory of the existing object `norm` (as given: `path`), reached through no
/// symbolic link below the alternate root (RST-10), with the object's name in it and its own
/// `lstat`; a missing object is `AAPI_ENOENT` (RC-7).
fn existing(scope: &Scope, norm: &Path, path: &Path) -> Result<(Dir, CString, Stat)> {
    let (dir, name) = scope
        .parent(norm, None)
        .map_err(|stop| walk_error(stop, path))?;
    match dir
        .stat(&name)
        .map_err(|e| path_error(e, "inspect", path))?
    {
        Some(md) => Ok((dir, name, md)),
        None => Err(Error::not_found(format!(
            "{} does not exist",
            path.display()
        ))),
    }
}

/// The restore state of one session, shared with its open objects (which run concurrently).
pub struct Book {
    host: Host,
    state: Mutex<Bookkeeping>,
}

impl Book {
    /// An empty book for a session.
    pub fn new(host: Host) -> Book {
        Book {
            host,
            state: Mutex::new(Bookkeeping::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bookkeeping> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// RST-1: a non-empty target root must be absolute without a `..` component (it bounds
    /// every object path of the restore, which is never resolved) and an existing directory, and
    /// its file system (that of `/` for the original place) must have
    /// `total_bytes + min_free_bytes` available.
    pub fn preprocess(&self, info: &RestoreInfo, min_free_bytes: u64) -> Result<()> {
        let root = match &info.target_root {
            None => None,
            Some(r) => {
                paths::check_object_path(r, "target_root")?;
                Some(paths::normalize(r).0)
            }
        };
        let place = root.as_deref().unwrap_or(Path::new("/"));
        // RST-10: the root is opened once, following links, and stays this directory.
        let scope = Scope::new(root.as_deref()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Error::not_found(format!(
                "target_root {} is not an existing directory",
                place.display()
            )),
            _ => crate::dir::io_error(e, format!("cannot open target_root {}", place.display())),
        })?;
        let avail = scope.top().available_bytes().map_err(|e| {
            crate::dir::io_error(
                e,
                format!("cannot query the file system of {}", place.display()),
            )
        })?;
        let need = info.total_bytes.saturating_add(min_free_bytes);
        if avail < need {
            return Err(Error::new(
                ErrorKind::NoSpace,
                format!(
                    "the file system of {} has {avail} bytes available, the restore needs {need} ({} to write + files.min_free_bytes {min_free_bytes})",
                    place.display(),
                    info.total_bytes
                ),
            ));
        }
        self.host.info(format!(
            "{NAME}: restoring {} objects, {} bytes, to {}",
            info.object_count,
            info.total_bytes,
            root.as_deref()
                .map_or("the original location".to_string(), |r| r
                    .display()
                    .to_string())
        ));
        self.lock().scope = Some(scope);
        Ok(())
    }

    /// The scope of this restore's paths (the SDK calls nothing that needs it before preprocess).
    fn scope(&self) -> Result<Scope> {
        self.lock()
            .scope
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "no restore_preprocess yet"))
    }

    /// Record the owner, mode and times of the directory `dir` (normalized) before the restore
    /// changes it or one of its entries, once per directory; `opened` is that directory when the
    /// caller has it already. The directory is the one a walk of `dir` reaches (through the links
    /// of parent directories at the original location), recorded through its descriptor. A
    /// missing `dir` is about to be made: its nearest existing ancestor is the directory that
    /// changes. Directories this restore made are skipped. Under the lock, so that concurrent
    /// objects record a directory before either changes it.
    fn touch(&self, dir: &Path, opened: Option<&Dir>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(scope) = &st.scope else { return };
        let mut d = dir;
        let mut opened = opened.cloned();
        while !st.dirs.contains_key(d) {
            let found = match opened.take() {
                Some(fd) => Ok(fd),
                None => scope.dir(d, None),
            };
            match found.map(|fd| fd.stat_self()) {
                Ok(Ok(md)) => {
                    let saved = *st.saved.entry(md.identity()).or_insert(Saved::of(&md));
                    st.dirs.insert(d.to_path_buf(), DirState::Before(saved));
                }
                Err(Stop::Missing(_)) if !scope.is_top(d) => {
                    if let Some(parent) = d.parent() {
                        d = parent;
                        continue;
                    }
                }
                // Not a directory, not readable, or through a link: the change itself fails.
                _ => {}
            }
            break;
        }
    }

    /// RST-2: an object path of this restore is absolute, has no `..` component nor a name longer
    /// than `NAME_MAX` and, with an alternate root, lies under it. The normalized path, or
    /// `AAPI_EINVAL` naming `path`.
    fn check_restore_path(&self, path: &Path) -> Result<PathBuf> {
        paths::check_object_path(path, "path")?;
        // The file system would give ENAMETOOLONG, which is no input/output error.
        if let Some(long) = paths::bytes(path)
            .split(|&c| c == b'/')
            .find(|name| name.len() > paths::NAME_MAX)
        {
            return Err(Error::invalid(format!(
                "{} has a name of {} bytes; a name has at most {}",
                path.display(),
                long.len(),
                paths::NAME_MAX
            )));
        }
        let norm = paths::normalize(path).0;
        if let Some(root) = self.lock().scope.as_ref().and_then(Scope::root)
            && !paths::is_within(&norm, root)
        {
            return Err(Error::invalid(format!(
                "{} is outside the alternate root {}",
                path.display(),
                root.display()
            )));
        }
        Ok(norm)
    }

    /// Open up (u+rwx) the restrictive directories `path` goes into.
    fn open_restrictive_parents(&self, path: &Path) {
        let mut st = self.lock();
        let Bookkeeping {
            scope: Some(scope),
            dirmodes,
            ..
        } = &mut *st
        else {
            return;
        };
        for d in dirmodes.iter_mut().filter(|d| !d.opened) {
            if path != d.path && paths::is_within(path, &d.path) {
                d.opened = true;
                let _ = scope.chmod(&d.path, d.mode | 0o700);
            }
        }
    }

    /// `aapi_create_object`.
    pub fn create(
        self: &Arc<Self>,
        path: &Path,
        props: &ObjectProps,
        overwrite: bool,
    ) -> Result<Writer> {
        // RST-2: exactly at `path`, nothing outside the alternate root.
        let path = self.check_restore_path(path)?;
        let scope = self.scope()?;
        // RST-10: the root stays the directory it was at preprocess: a directory object there
        // reuses it, nothing else replaces it (not even with AAPI_CREATE_OVERWRITE).
        let top = scope.is_top(&path);
        if top && props.kind != ObjectType::Dir {
            let what = if scope.root().is_some() {
                "the alternate root of this restore"
            } else {
                "a directory"
            };
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is {what}: only a directory object can be restored there",
                    path.display()
                ),
            ));
        }
        if !top {
            self.open_restrictive_parents(&path);
        }
        // RST-10: through no symbolic link below the alternate root. The parent found here is
        // the one the object is made in, unless it is missing.
        let found = match scope.parent(&path, None) {
            Ok((dir, name)) => {
                let md = dir.stat(&name).map_err(|e| {
                    crate::dir::io_error(e, format!("cannot inspect {}", path.display()))
                })?;
                Some((dir, name, md))
            }
            Err(Stop::Missing(_)) => None,
            Err(Stop::NotDir(p)) => return Err(not_a_directory(&p)),
            Err(stop) => return Err(walk_error(stop, &path)),
        };
        // RST-3: an existing directory is reused; anything else needs AAPI_CREATE_OVERWRITE, and
        // is replaced only at a successful close.
        if let Some((dir, name, Some(md))) = &found {
            let reusable_dir = props.kind == ObjectType::Dir && md.is_dir();
            if !reusable_dir && !overwrite {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists (AAPI_CREATE_OVERWRITE not given)",
                        path.display()
                    ),
                ));
            }
            // A file or link never takes the place of a directory with contents: replacing it
            // would delete what it holds, newer data included.
            if md.is_dir()
                && props.kind != ObjectType::Dir
                && dir.has_entries(name).map_err(|e| {
                    crate::dir::io_error(e, format!("cannot list {}", path.display()))
                })?
            {
                let kind = if props.kind == ObjectType::File {
                    "file"
                } else {
                    "symbolic link"
                };
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} is a directory that is not empty: a {kind} restored there would delete what it holds; move it away first, or restore under an alternate root",
                        path.display()
                    ),
                ));
            }
        }
        if !top {
            // The parent gets the temporary file, or the object at close.
            let parent = path.parent().unwrap_or(Path::new("/"));
            self.touch(parent, found.as_ref().map(|(dir, _, _)| dir));
        }
        let mut made = Vec::new();
        let (dir, name) = match found {
            Some((dir, name, _)) => (dir, name),
            // RST-2: missing parents are created, 0700 until their own object sets the mode.
            None => scope
                .parent(&path, Some(&mut made))
                .map_err(|stop| match stop {
                    Stop::NotDir(p) => not_a_directory(&p),
                    Stop::Io(p, e) => {
                        crate::dir::io_error(e, format!("cannot create directory {}", p.display()))
                    }
                    stop => walk_error(stop, &path),
                })
                .inspect_err(|_| scope.remove_made(&made))?,
        };
        let tmp = if props.kind == ObjectType::File {
            // OBJ-6: the data goes to a hidden temporary file until close.
            match Temporary::create(&dir, &path) {
                Ok(t) => Some(t),
                Err(e) => {
                    // RC-11: nothing new left visible.
                    scope.remove_made(&made);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let mut st = self.lock();
        for d in &made {
            st.dirs.insert(d.clone(), DirState::Made);
        }
        st.created.extend(made);
        drop(st);
        Ok(Writer {
            book: self.clone(),
            path,
            dir,
            name,
            props: *props,
            overwrite,
            tmp,
            link: Vec::new(),
            written: 0,
        })
    }

    /// `aapi_set_object_utimes` (RST-5): the object's own times, never a symlink's target's;
    /// nothing outside the alternate root.
    pub fn set_times(
        &self,
        path: &Path,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<()> {
        let norm = self.check_restore_path(path)?;
        // RST-10: through no symbolic link below the alternate root; the root's own times are
        // set through its descriptor.
        let (dir, name, md) = existing(&self.scope()?, &norm, path)?;
        if md.is_dir() {
            self.touch(&norm, None);
        }
        dir.set_times(&name, atime, mtime).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP)) {
                Error::not_supported(format!(
                    "the file system cannot set the times of {}",
                    path.display()
                ))
            } else {
                crate::dir::io_error(e, format!("cannot set the times of {}", path.display()))
            }
        })
    }

    /// `aapi_get_object_prop_byname` in a restore session: the object at `path`, reached as the
    /// other calls of the restore reach it (through no symbolic link below the alternate root,
    /// nothing outside it: RST-11).
    pub fn props(&self, path: &Path) -> Result<ObjectProps> {
        let norm = self.check_restore_path(path)?;
        let (_, _, md) = existing(&self.scope()?, &norm, path)?;
        md.props(path)
    }

    /// `aapi_delete_object`: a file, a symlink or an empty directory (a non-empty one is
    /// `AAPI_EINVAL`); nothing outside the alternate root, and never the root itself.
    pub fn delete(&self, path: &Path) -> Result<()> {
        let norm = self.check_restore_path(path)?;
        let scope = self.scope()?;
        // RST-10: the root stays the directory it was at preprocess.
        if scope.is_top(&norm) {
            return Err(Error::invalid(format!(
                "{} is the root of this restore; it cannot be deleted",
                path.display()
            )));
        }
        // RST-10: through no symbolic link below the alternate root.
        let (dir, name, md) = existing(&scope, &norm, path)?;
        let parent = norm.parent().unwrap_or(Path::new("/"));
        self.touch(parent, Some(&dir));
        let removed = if md.is_dir() {
            dir.remove(&name, true).map_err(|e| {
                if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) {
                    Error::invalid(format!("directory {} is not empty", path.display()))
                } else {
                    crate::dir::io_error(e, format!("cannot remove directory {}", path.display()))
                }
            })
        } else {
            dir.remove(&name, false)
                .map_err(|e| crate::dir::io_error(e, format!("cannot remove {}", path.display())))
        };
        if removed.is_ok() {
            // A rollback does not bring the object back: its directory keeps the times this
            // removal gave it.
            let mut st = self.lock();
            if let Some(&DirState::Before(saved)) = st.dirs.get(parent) {
                st.dirs
                    .insert(parent.to_path_buf(), DirState::Deleted(saved));
            }
        }
        removed
    }

    /// `aapi_restore_postprocess`: on success delete what was set aside; on failure remove what
    /// this restore created (deepest first) and put the replaced objects back (RST-6, RST-7).
    /// Open objects were already completed or aborted by the SDK.
    pub fn postprocess(&self, status: RestoreStatus) -> Result<()> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(scope) = st.scope.clone() else {
            return Err(Error::new(ErrorKind::Internal, "no restore_preprocess yet"));
        };
        let mut ok = true;
        if status.is_success() {
            for (path, aside, _) in &st.aside {
                let removed = match scope.parent(aside, None) {
                    Ok((dir, name)) => {
                        // The framework set the directories' times already: deleting the old
                        // object must not move its parent's mtime.
                        let times = dir.stat_self().ok();
                        let removed = dir.remove_tree(&name, aside, None);
                        if let Some(md) = times {
                            let _ = dir.itself().set_times(md.atime(), md.mtime());
                        }
                        removed
                    }
                    Err(Stop::Missing(_)) => Ok(()),
                    Err(stop) => Err(Error::new(ErrorKind::Io, stop.to_string())),
                };
                if let Err(e) = removed {
                    self.host.error(format!(
                        "{NAME}: cannot delete the replaced object {} kept as {}: {e}",
                        path.display(),
                        aside.display()
                    ));
                    ok = false;
                }
            }
            ok &= close_restrictive_dirs(st, &scope, &self.host);
            if ok {
                ok &= sync_written_filesystems(st, &self.host);
            }
        } else {
            let mut created = std::mem::take(&mut st.created);
            created.sort_by(|a, b| paths::bytes(b).cmp(paths::bytes(a)));
            created.dedup();
            for p in &created {
                // RST-10: through no symbolic link below the alternate root, even one this
                // restore made.
                let removed = match scope.parent(p, None) {
                    Ok((dir, name)) => match dir.stat(&name) {
                        Ok(None) => Ok(()),
                        Ok(Some(md)) => dir.remove(&name, md.is_dir()),
                        Err(e) => Err(e),
                    },
                    Err(Stop::Missing(_)) => Ok(()),
                    Err(stop) => Err(stop.into_io()),
                };
                if let Err(e) = removed {
                    self.host.error(format!(
                        "{NAME}: cannot remove {}: {}",
                        p.display(),
                        describe(&e)
                    ));
                    ok = false;
                }
            }
            for (path, aside, own) in st.aside.iter().rev() {
                if *own {
                    // Made by this restore and replaced by it: removed, not put back.
                    let removed = match scope.parent(aside, None) {
                        Ok((dir, name)) => dir.remove_tree(&name, aside, None),
                        Err(Stop::Missing(_)) => Ok(()),
                        Err(stop) => Err(Error::new(ErrorKind::Io, stop.to_string())),
                    };
                    if let Err(e) = removed {
                        self.host
                            .error(format!("{NAME}: cannot remove {}: {e}", aside.display()));
                        ok = false;
                    }
                } else if let Err(e) = rename_back(&scope, path, aside) {
                    self.host.error(format!(
                        "{NAME}: cannot put {} back; it is kept as {}: {}",
                        path.display(),
                        aside.display(),
                        describe(&e)
                    ));
                    ok = false;
                }
            }
            // The directories this restore made and could not remove get their exact modes;
            // those that existed get all they had back, deepest first.
            let Bookkeeping { dirmodes, dirs, .. } = &mut *st;
            dirmodes.retain(|d| matches!(dirs.get(&d.path), None | Some(DirState::Made)));
            ok &= close_restrictive_dirs(st, &scope, &self.host);
            put_back_dirs(st, &scope, &self.host);
        }
        *st = Bookkeeping::default();
        if ok {
            Ok(())
        } else {
            let (how, what) = if status.is_success() {
                ("succeeded", "completed")
            } else {
                ("failed", "rolled back")
            };
            Err(Error::new(
                ErrorKind::Io,
                format!("the restore {how}, but some objects could not be {what} (see the log)"),
            ))
        }
    }

    /// The session ends without `aapi_restore_postprocess`: nothing is deleted, so nothing is
    /// lost; replaced objects stay where they were set aside.
    pub fn abandon(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for (path, aside, _) in &st.aside {
            self.host.warn(format!(
                "{NAME}: restore ended without restore_postprocess; the replaced {} is kept as {}",
                path.display(),
                aside.display()
            ));
        }
        if let Some(scope) = st.scope.clone() {
            close_restrictive_dirs(st, &scope, &self.host);
        }
        *st = Bookkeeping::default();
    }

    /// RST-9: note the file system of `dir`, the directory of the restored object `path`
    /// (named `name` there), for the `syncfs` of a successful postprocess.
    fn note_written(&self, dir: &Dir, name: &CStr, path: &Path) {
        let Ok(md) = dir.stat_self() else { return };
        let dir_path = match path.parent() {
            Some(parent) if name != c"." => parent,
            _ => path,
        };
        self.lock()
            .written
            .entry(md.dev())
            .or_insert_with(|| (dir_path.to_path_buf(), dir.clone()));
    }
}

/// Put the object set aside as `aside` back at `path` (they share a directory).
fn rename_back(scope: &Scope, path: &Path, aside: &Path) -> io::Result<()> {
    let (dir, name) = scope.parent(path, None).map_err(Stop::into_io)?;
    let aside_name = c_string(aside.file_name().unwrap_or_default().as_bytes())?;
    dir.rename(&aside_name, &name)
}

/// After a rollback, give the directories that existed before the restore what they had before
/// its first change, deepest first: owner (as root; a restore changes it only then), mode, and,
/// unless `aapi_delete_object` removed an entry, atime and mtime. Their ctime cannot be set back.
/// Only what differs is changed, through a descriptor of the directory a walk of its path
/// reaches. What cannot be put back (the times of a directory the running user does not own,
/// say) is a warning naming the directory and what stays: RST-6 and RST-7 are about objects, and
/// those are already removed or back, so the rollback goes on.
fn put_back_dirs(st: &Bookkeeping, scope: &Scope, host: &Host) {
    let mut dirs: Vec<(&PathBuf, Saved, bool)> = st
        .dirs
        .iter()
        .filter_map(|(d, s)| match *s {
            DirState::Before(saved) => Some((d, saved, true)),
            DirState::Deleted(saved) => Some((d, saved, false)),
            DirState::Made => None,
        })
        .collect();
    dirs.sort_by(|a, b| paths::bytes(b.0).cmp(paths::bytes(a.0)));
    let root = sys::is_root();
    let warn = |what: String, d: &Path, e: io::Error, rest: &str| {
        host.warn(format!(
            "{NAME}: rollback: cannot put back the {what} of {}: {}{rest}",
            d.display(),
            describe(&e)
        ));
    };
    for (d, saved, times) in dirs {
        // RST-10: through no symbolic link below the alternate root.
        let dir = match scope.dir(d, None) {
            Ok(dir) => dir.itself(),
            // Removed during the restore by aapi_delete_object, or not put back (reported
            // already): nothing to give back.
            Err(Stop::Missing(_) | Stop::NotDir(_)) => continue,
            Err(stop) => {
                warn("owner, mode and times".into(), d, stop.into_io(), "");
                continue;
            }
        };
        let md = match dir.stat() {
            Ok(md) => md,
            Err(e) => {
                warn("owner, mode and times".into(), d, e, "");
                continue;
            }
        };
        // Another directory at that path now (another process moved the one that was there):
        // it gets nothing of the other's.
        if md.identity() != saved.identity {
            host.warn(format!(
                "{NAME}: rollback: cannot put back the owner, mode and times of {}: another directory is there now",
                d.display()
            ));
            continue;
        }
        // The owner first: changing it clears the setuid/setgid bits. The mode belongs to the
        // owner: a directory whose owner could not be put back keeps the mode it has.
        let chowned = root && (md.uid(), md.gid()) != (saved.uid, saved.gid);
        let owner = if chowned {
            dir.chown(saved.uid, saved.gid)
        } else {
            Ok(())
        };
        if let Err(e) = owner {
            let what = format!("owner {}:{}", saved.uid, saved.gid);
            warn(what, d, e, "; its mode is left as it is too");
        } else if (chowned || md.mode() != saved.mode)
            && let Err(e) = dir.chmod(saved.mode)
        {
            warn(format!("mode {:04o}", saved.mode), d, e, "");
        }
        if times && let Err(e) = dir.set_times(saved.atime, saved.mtime) {
            warn("atime and mtime".into(), d, e, "");
        }
    }
}

/// Give opened directories their exact modes back, deepest first. False when one failed.
fn close_restrictive_dirs(st: &mut Bookkeeping, scope: &Scope, host: &Host) -> bool {
    st.dirmodes
        .sort_by(|a, b| paths::bytes(&b.path).cmp(paths::bytes(&a.path)));
    let mut ok = true;
    for d in st.dirmodes.iter().filter(|d| d.opened) {
        if !scope
            .stat(&d.path)
            .is_ok_and(|m| m.is_some_and(|m| m.is_dir()))
        {
            continue; // removed by a rollback
        }
        if let Err(e) = scope.chmod(&d.path, d.mode) {
            host.error(format!(
                "{NAME}: cannot set the mode of {}: {}",
                d.path.display(),
                describe(&e)
            ));
            ok = false;
        }
    }
    ok
}

/// An object created for writing.
pub struct Writer {
    book: Arc<Book>,
    path: PathBuf,
    /// The parent directory: every change of the object is made relative to it (RST-10).
    dir: Dir,
    /// The object's name in `dir`.
    name: CString,
    props: ObjectProps,
    overwrite: bool,
    /// Files: the hidden temporary file in `dir`.
    tmp: Option<Temporary>,
    /// Symlinks: the target, collected from the writes.
    link: Vec<u8>,
    written: u64,
}

/// The hidden temporary file of a created file, beside it.
struct Temporary {
    file: File,
    /// Its name in the parent directory.
    name: CString,
    /// Its path, for messages.
    path: PathBuf,
}

impl Temporary {
    /// A new hidden temporary file beside `path`, in its directory `dir`, under a name nothing
    /// has: the names are unique only in this process, so one that exists (left by an earlier
    /// restore, or a user's) is skipped, never reused.
    fn create(dir: &Dir, path: &Path) -> Result<Temporary> {
        let mut last = None;
        for _ in 0..HIDDEN_NAME_TRIES {
            let tmp = paths::hidden_sibling(path, "tmp");
            let name = name_of(&tmp)?;
            match dir.create_file(&name, 0o600) {
                Ok(file) => {
                    return Ok(Temporary {
                        file,
                        name,
                        path: tmp,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((e, tmp)),
                Err(e) => {
                    return Err(crate::dir::io_error(
                        e,
                        format!("cannot create {}", tmp.display()),
                    ));
                }
            }
        }
        let (e, tmp) = last.unwrap_or_else(|| (io::ErrorKind::AlreadyExists.into(), path.into()));
        Err(crate::dir::io_error(
            e,
            format!("cannot create {}", tmp.display()),
        ))
    }
}

/// An existing object moved aside under a hidden name beside it.
struct Aside {
    name: CString,
    path: PathBuf,
}

/// The code of a failed close: no space, exists and out of memory keep theirs, anything else is
/// `AAPI_EIO`.
fn close_error(e: Error) -> Error {
    match e.kind() {
        ErrorKind::NoSpace | ErrorKind::AlreadyExists | ErrorKind::OutOfMemory => e,
        _ => Error::new(ErrorKind::Io, e.message()),
    }
}

fn data_error(e: io::Error, what: &str, path: &Path) -> Error {
    let kind = match ErrorKind::of_io(&e) {
        ErrorKind::NoSpace => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    };
    Error::new(kind, format!("cannot {what} {}: {e}", path.display()))
}

impl Writer {
    fn appeared(&self) -> Error {
        Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} appeared while it was being restored",
                self.path.display()
            ),
        )
    }

    /// Move an existing object aside so that the new one can take its place (RST-3, RST-7).
    fn set_aside(&self) -> Result<Option<Aside>> {
        let exists = self
            .dir
            .stat(&self.name)
            .map_err(|e| {
                crate::dir::io_error(e, format!("cannot inspect {}", self.path.display()))
            })?
            .is_some();
        if !exists {
            return Ok(None);
        }
        if !self.overwrite {
            return Err(self.appeared());
        }
        // A name of the form is unique only in this process: one that exists (a user's file, an
        // object kept aside by an earlier restore) is never replaced; the next is tried.
        let mut last = None;
        for _ in 0..HIDDEN_NAME_TRIES {
            let path = paths::hidden_sibling(&self.path, "old");
            let name = name_of(&path)?;
            match self.dir.rename_noreplace(&self.name, &name) {
                Ok(()) => return Ok(Some(Aside { name, path })),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(self.cannot_set_aside(e)),
            }
        }
        Err(self.cannot_set_aside(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into())))
    }

    fn cannot_set_aside(&self, e: io::Error) -> Error {
        crate::dir::io_error(e, format!("cannot move {} aside", self.path.display()))
    }

    /// Undo [`set_aside`](Writer::set_aside) after the new object could not be placed.
    fn put_back(&self, aside: Option<Aside>) {
        if let Some(a) = aside
            && let Err(e) = self.dir.rename(&a.name, &self.name)
        {
            self.book.host.error(format!(
                "{NAME}: cannot put {} back; it is kept as {}: {e}",
                self.path.display(),
                a.path.display()
            ));
        }
    }

    /// Put a complete temporary file in place.
    fn place_file(&self, tmp: &CStr, aside: &mut Option<Aside>) -> Result<()> {
        if !self.overwrite {
            // link() fails when something appeared at the path since create: nothing is
            // replaced without AAPI_CREATE_OVERWRITE.
            match self.dir.link(tmp, &self.name) {
                Ok(()) => {
                    let _ = self.dir.remove(tmp, false);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(self.appeared()),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EPERM | libc::EOPNOTSUPP | libc::EXDEV | libc::EMLINK)
                    ) => {} // a file system without hard links: check, then rename
                Err(e) => {
                    return Err(crate::dir::io_error(
                        e,
                        format!("cannot move {} into place", self.path.display()),
                    ));
                }
            }
        }
        *aside = self.set_aside()?;
        self.dir.rename(tmp, &self.name).map_err(|e| {
            crate::dir::io_error(e, format!("cannot move {} into place", self.path.display()))
        })
    }

    /// Complete the object at close: owner (as root), mode, then into place (RST-4).
    fn complete(&mut self) -> Result<()> {
        let root = sys::is_root();
        let p = self.props;
        // setuid/setgid only as root: a file of the running user must not gain them.
        let mode = p.mode.map(|m| m & if root { 0o7777 } else { 0o1777 });
        let owner = p.owner.filter(|_| root);
        let mut aside = None;
        match p.kind {
            ObjectType::File => {
                let Temporary { file, name, path } = self
                    .tmp
                    .take()
                    .expect("a created file has a temporary file");
                // The owner first: changing it clears the setuid/setgid bits.
                let placed = (|| {
                    if let Some(o) = owner {
                        std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid)).map_err(
                            |e| {
                                crate::dir::io_error(
                                    e,
                                    format!("cannot set the owner of {}", self.path.display()),
                                )
                            },
                        )?;
                    }
                    if let Some(m) = mode {
                        file.set_permissions(fs::Permissions::from_mode(m))
                            .map_err(|e| {
                                crate::dir::io_error(
                                    e,
                                    format!("cannot set the mode of {}", self.path.display()),
                                )
                            })?;
                    }
                    sys::close_checked(file).map_err(|e| data_error(e, "write", &path))?;
                    self.place_file(&name, &mut aside)
                })();
                if let Err(e) = placed {
                    self.put_back(aside);
                    let _ = self.dir.remove(&name, false);
                    return Err(e);
                }
            }
            ObjectType::Symlink => {
                aside = self.set_aside()?;
                let made = c_string(&self.link)
                    .and_then(|target| self.dir.symlink(&target, &self.name))
                    .map_err(|e| {
                        crate::dir::io_error(
                            e,
                            format!("cannot create symlink {}", self.path.display()),
                        )
                    })
                    .and_then(|()| match owner {
                        Some(o) => self.dir.chown(&self.name, o.uid, o.gid).map_err(|e| {
                            let _ = self.dir.remove(&self.name, false);
                            crate::dir::io_error(
                                e,
                                format!("cannot set the owner of {}", self.path.display()),
                            )
                        }),
                        None => Ok(()),
                    });
                if let Err(e) = made {
                    self.put_back(aside);
                    return Err(e);
                }
            }
            ObjectType::Dir => {
                let reused = self
                    .dir
                    .stat(&self.name)
                    .is_ok_and(|m| m.is_some_and(|m| m.is_dir()));
                if reused {
                    // Its owner and mode change now: recorded first, put back by a rollback.
                    self.book.touch(&self.path, None);
                } else {
                    aside = self.set_aside()?;
                    if let Err(e) = self.dir.mkdir(&self.name, 0o700) {
                        self.put_back(aside);
                        return Err(crate::dir::io_error(
                            e,
                            format!("cannot create directory {}", self.path.display()),
                        ));
                    }
                }
                let mut result = Ok(());
                if let Some(o) = owner {
                    result = self.dir.chown(&self.name, o.uid, o.gid).map_err(|e| {
                        crate::dir::io_error(
                            e,
                            format!("cannot set the owner of {}", self.path.display()),
                        )
                    });
                }
                if let (Ok(()), Some(m)) = (&result, mode) {
                    result = self.dir.chmod(&self.name, m).map_err(|e| {
                        crate::dir::io_error(
                            e,
                            format!("cannot set the mode of {}", self.path.display()),
                        )
                    });
                    if result.is_ok() && !root && m & 0o300 != 0o300 {
                        self.book.lock().dirmodes.push(DirMode {
                            path: self.path.clone(),
                            mode: m,
                            opened: false,
                        });
                    }
                }
                if result.is_ok() {
                    self.book.note_written(&self.dir, &self.name, &self.path);
                }
                if reused {
                    return result;
                }
                // Made here: recorded even when the mode failed, so a rollback removes it.
                let mut st = self.book.lock();
                st.dirs.insert(self.path.clone(), DirState::Made);
                let own = st.created.contains(&self.path);
                st.created.push(self.path.clone());
                if let Some(a) = aside {
                    st.aside.push((self.path.clone(), a.path, own));
                }
                return result;
            }
        }
        self.book.note_written(&self.dir, &self.name, &self.path);
        // RST-6: the new object is this restore's; RST-7: the old one waits for postprocess.
        let mut st = self.book.lock();
        let own = st.created.contains(&self.path);
        st.created.push(self.path.clone());
        if let Some(a) = aside {
            st.aside.push((self.path.clone(), a.path, own));
        }
        Ok(())
    }
}

impl RestoreObject for Writer {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self.props.kind {
            ObjectType::Dir => Err(Error::invalid(format!(
                "{} is a directory; directories have no data",
                self.path.display()
            ))),
            ObjectType::Symlink => {
                if data.contains(&0) {
                    return Err(Error::invalid(format!(
                        "a symlink target cannot hold a NUL byte ({})",
                        self.path.display()
                    )));
                }
                if self.link.len() + data.len() > MAX_LINK_TARGET {
                    return Err(Error::invalid(format!(
                        "symlink target of {} is longer than {MAX_LINK_TARGET} bytes",
                        self.path.display()
                    )));
                }
                self.link.extend_from_slice(data);
                Ok(())
            }
            ObjectType::File => {
                let Temporary { file, path, .. } = self
                    .tmp
                    .as_mut()
                    .expect("a created file has a temporary file");
                if let Err(e) = file.write_all(data) {
                    // OBJ-5: all or nothing: cut back what part of this call reached the file.
                    let _ = file.set_len(self.written);
                    let _ = file.seek(SeekFrom::Start(self.written));
                    return Err(data_error(e, "write", path));
                }
                self.written += data.len() as u64;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        // OBJ-6: every write already went to the file; nothing is held here. The restore becomes
        // durable as a whole in `postprocess` (RST-9), not one fsync per object.
        Ok(())
    }

    fn props(&self) -> Result<ObjectProps> {
        // The properties the object is being restored with.
        Ok(self.props)
    }

    fn close(mut self) -> Result<()> {
        self.complete().map_err(close_error)
    }

    fn abort(self) {
        // Drop removes the temporary file.
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            drop(tmp.file);
            let _ = self.dir.remove(&tmp.name, false);
        }
    }
}

/// RST-9: make what this restore wrote durable, with one `syncfs` per file system it wrote to
/// (noted as each object was completed).
fn sync_written_filesystems(st: &Bookkeeping, host: &Host) -> bool {
    let mut ok = true;
    for (path, dir) in st.written.values() {
        if let Err(e) = dir.sync_filesystem() {
            host.error(format!(
                "{NAME}: cannot sync the file system of {}: {}",
                path.display(),
                describe(&e)
            ));
            ok = false;
        }
    }
    ok
}
