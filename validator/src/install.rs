//! `install`: verify, extract beside the destination, verify the extracted tree, swap it in.
//!
//! The destination is replaced atomically with `renameat2(RENAME_EXCHANGE)`: at every instant
//! the destination path holds either the complete old installation or the complete new one
//! (where the file system cannot exchange, two renames with the old tree kept aside do it).
//! Nothing is written outside the destination except the temporary directory beside it
//! (`.NAME.aapi-install-XXXXXX` in the same parent), which is removed on success and failure.

use crate::archive::{Package, Sink, SinkError, copy_data};
use crate::error::{Error, Result};
use crate::hash::Hashed;
use crate::manifest::{Kind, MANIFEST_PATH, META_DIR, Manifest, Plugin, SIGNATURE_PATH};
use crate::output::{Cmd, reachable, remedy};
use crate::verify::{self, Report};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How to install.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How to verify the package and the extracted tree.
    pub verify: verify::Options,
    /// Replace an installation of another plugin (another name or vendor, or one whose
    /// manifest cannot be read).
    pub replace_other: bool,
    /// Replace an installation of the same plugin by an older version.
    pub allow_downgrade: bool,
}

/// The installation an install replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replaced {
    /// Its plugin (name, version, vendor), or none when its manifest could not be read.
    pub plugin: Option<Plugin>,
    /// The package's version is older than the replaced one.
    pub downgrade: bool,
}

impl fmt::Display for Replaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plugin {
            None => f.write_str("an installation whose manifest could not be read"),
            Some(p) => {
                write!(f, "{} {} ({})", p.name, p.version, p.vendor)?;
                if self.downgrade {
                    f.write_str(", a newer version")?;
                }
                Ok(())
            }
        }
    }
}

/// What an install did.
#[derive(Debug)]
pub enum Outcome {
    /// Installed; `replaced` tells which earlier installation was swapped out, if any.
    Installed {
        /// The verification of the installed tree.
        report: Report,
        /// The earlier installation that was replaced (none when DEST was missing or empty).
        replaced: Option<Replaced>,
    },
    /// Not installed: the package (or the extracted tree) has findings. The destination is
    /// untouched.
    Refused(Report),
}

/// Something an interrupted install had left beside the destination, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Leftover {
    /// A temporary directory (`.NAME.aapi-install-XXXXXX` or `.NAME.aapi-aside-XXXXXX`) was
    /// removed.
    Removed {
        /// The directory.
        path: PathBuf,
    },
    /// The destination was missing and the earlier installation, left aside by an install
    /// interrupted between its two renames, was renamed back to it.
    PutBack {
        /// Where the installation was.
        path: PathBuf,
    },
    /// A temporary directory could not be removed (the install goes on).
    NotRemoved {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Removed { path } => write!(
                f,
                "removed {}, left by an interrupted install",
                path.display()
            ),
            Leftover::PutBack { path } => write!(
                f,
                "put back the earlier installation from {}, where an interrupted install had left it",
                path.display()
            ),
            Leftover::NotRemoved { path, error } => write!(
                f,
                "cannot remove {}, left by an interrupted install: {error}",
                path.display()
            ),
        }
    }
}

/// Install the package `pkg` into `dest`. The package must target this host's architecture
/// unless `opts.verify.arch` names another. An installation of another plugin, or of a newer
/// version, is replaced only as `opts` allows. While it writes, it holds an exclusive lock on
/// `.NAME.aapi-install.lock` beside `dest` (a second install into `dest` fails with
/// [`Error::is_busy`]), and first tidies what interrupted installs left there, telling
/// `leftover` about each thing it found.
pub fn install(
    pkg: &Path,
    dest: &Path,
    how: &Options,
    leftover: &mut dyn FnMut(Leftover),
) -> Result<Outcome> {
    let dest = &dest_dir(dest)?;
    let (parent, name) = split_dest(dest)?;
    check_dest(dest, parent)?;
    let opts = &verify::Options {
        arch: match how.verify.arch {
            verify::Target::Any => verify::Target::Host,
            named => named,
        },
        ..how.verify.clone()
    };

    let report = verify::verify_package(pkg, opts)?;
    if !report.is_valid() {
        return Ok(Outcome::Refused(report));
    }
    let (Some(manifest), Some(bytes)) = (&report.manifest, &report.manifest_bytes) else {
        unreachable!("a valid package has a manifest")
    };

    let _lock = Lock::take(parent, name, dest)?;
    let mut put_back = None;
    tidy(parent, name, dest, &mut |l| {
        if let Leftover::PutBack { path } = &l {
            put_back = Some(path.clone());
        }
        leftover(l)
    })?;
    let replacing = check_dest(dest, parent)?;
    let replaced = if replacing {
        earlier(dest, &manifest.plugin, how, put_back.as_deref())?
    } else {
        None
    };

    let tmp = Scratch::new(parent, name, dest)?;
    let root = tmp.0.clone();
    let as_root = is_root();

    let mut ex = Extractor {
        root: &root,
        pkg,
        dest,
        parent,
        manifest,
        made: HashMap::new(),
        implicit: HashSet::new(),
        as_root,
    };
    let src = Package::open(pkg)?;
    let scan = src.stream(pkg, &opts.limits, &mut ex)?;
    if let Some(e) = scan.stop {
        return Err(e);
    }
    if !scan.findings.is_empty()
        || scan.manifest.as_ref() != Some(bytes)
        || ex.made.len() != manifest.files.len()
    {
        return Err(package_changed(pkg, "between verification and extraction"));
    }
    ex.finish(bytes, report.signature_bytes.as_deref())
        .map_err(|e| {
            let next = not_installed(dest, &e, parent);
            Error::io(
                "cannot write the manifest, modes and owners into the new installation of",
                dest,
                e,
            )
            .then(next)
        })?;

    let mut again = verify::verify_tree(
        &root,
        &verify::Options {
            installed: true,
            ..opts.clone()
        },
    )?;
    if !again.is_valid() || again.manifest_sha256 != report.manifest_sha256 {
        // The extracted tree is gone when this returns: the findings are the package's.
        again.subject = pkg.display().to_string();
        return Ok(Outcome::Refused(again));
    }

    if replacing {
        swap(&tmp, dest, parent, name)?;
        // The scratch directory now holds the old installation; dropping it removes it.
    } else {
        fs::rename(&root, dest).map_err(|e| {
            let next = not_installed(dest, &e, parent);
            Error::io("cannot move the new installation to", dest, e).then(next)
        })?;
    }
    again.subject = dest.display().to_string();
    File::open(parent).and_then(|d| d.sync_all()).map_err(|e| {
        Error::io(
            &format!(
                "the new installation is in place at {}, but cannot sync its parent directory",
                dest.display()
            ),
            parent,
            e,
        )
        .then(format!(
            "a power cut now could lose the install: run `sync`, then `aapi-validator verify --installed {}`",
            dest.display()
        ))
        .installed()
    })?;
    Ok(Outcome::Installed {
        report: again,
        replaced,
    })
}

/// `dest` without trailing `/` and `/.` (`plugins/demo/.` is `plugins/demo`), refused when it
/// does not name a directory an install can put in place: `.`, `/`, or a path ending in `..`.
fn dest_dir(dest: &Path) -> Result<PathBuf> {
    let mut s = dest.as_os_str().as_bytes();
    loop {
        if let Some(rest) = s.strip_suffix(b"/").filter(|r| !r.is_empty()) {
            s = rest;
        } else if let Some(rest) = s.strip_suffix(b"/.") {
            s = if rest.is_empty() { b"/" } else { rest };
        } else {
            break;
        }
    }
    let d = dest.display();
    let why = match s {
        b"." => {
            "is the current directory, which an install cannot replace (it renames a new tree to DEST)"
        }
        b"/" => "is the root directory",
        _ if s == b".." || s.ends_with(b"/..") => {
            "ends in `..`: it names a directory above, not the installation directory"
        }
        _ => return Ok(PathBuf::from(OsStr::from_bytes(s))),
    };
    Err(Error::new(format!(
        "--dest {d} {why}; nothing was done: give the installation directory by its own name, such as ../NAME or /usr/openv/lib/psf-plugins/NAME"
    )))
}

/// DEST's parent directory (which must exist) and last component.
fn split_dest(dest: &Path) -> Result<(&Path, &OsStr)> {
    let (Some(name), Some(parent)) = (dest.file_name(), dest.parent()) else {
        unreachable!("dest_dir refuses paths without a last component");
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let (p, d) = (parent.display(), dest.display());
    // `.NAME.aapi-install-XXXXXX` is made beside it: one file name, 255 bytes at most.
    let longest = 255 - ".".len() - ".".len() - SCRATCH.len() - "-XXXXXX".len();
    if name.len() > longest {
        return Err(Error::new(format!(
            "the name of --dest {d} is {} bytes long; at most {longest} fit, as the install makes \
             `.NAME.{SCRATCH}-XXXXXX` beside it: choose a shorter name",
            name.len()
        )));
    }
    match fs::metadata(parent) {
        Ok(md) if md.is_dir() => Ok((parent, name)),
        Ok(_) => Err(Error::new(format!(
            "{p}, the parent of --dest {d}, is not a directory; choose another --dest"
        ))),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            Err(Error::new(format!(
                "{p}, the parent of --dest {d}, does not exist; create it (mode 0755, owned by root: `install -d -m 0755 -o root -g root {p}`) or choose another --dest"
            )))
        }
        Err(e) => {
            let next = format!(
                "{}, or choose another --dest",
                remedy(&e, reachable(parent), Cmd::Install)
            );
            Err(Error::io(
                &format!("cannot reach the parent of --dest {d},"),
                parent,
                e,
            )
            .then(next))
        }
    }
}

/// The installation in `dest` that installing a package of `plugin` replaces (none when `dest`
/// is an empty directory), if `how` allows it. `put_back` names where that installation was
/// put back from, when an interrupted install had left it there: a refusal says so.
fn earlier(
    dest: &Path,
    plugin: &Plugin,
    how: &Options,
    put_back: Option<&Path>,
) -> Result<Option<Replaced>> {
    let done = match put_back {
        None => "nothing was done".to_string(),
        Some(from) => format!(
            "the earlier installation was put back into {} from {}, where an interrupted install had left it, and nothing else was done",
            dest.display(),
            from.display()
        ),
    };
    let path = dest.join(MANIFEST_PATH);
    let bytes = match crate::hash::open_nofollow(&path)
        .and_then(|f| read_bounded(f, crate::scan::MAX_MANIFEST))
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => Err(e.to_string()),
        Ok(b) => Ok(b),
    };
    let d = dest.display();
    let old = match bytes.and_then(|b| Manifest::parse(&b)) {
        Ok(m) => m.plugin,
        Err(_) if how.replace_other => {
            return Ok(Some(Replaced {
                plugin: None,
                downgrade: false,
            }));
        }
        Err(why) => {
            return Err(Error::new(format!(
                "--dest {d} holds an installation whose manifest cannot be read ({why}), so what it is is not known; {done}, to keep it: check it with `aapi-validator verify --installed {d}`, then give --replace-other to replace it or choose another --dest"
            )));
        }
    };
    if (&old.name, &old.vendor) != (&plugin.name, &plugin.vendor) && !how.replace_other {
        return Err(Error::new(format!(
            "--dest {d} holds another plugin, {} {} ({}), not {} ({}); {done}, to keep it: choose another --dest, or give --replace-other to replace it",
            old.name, old.version, old.vendor, plugin.name, plugin.vendor
        )));
    }
    let downgrade = old.name == plugin.name
        && crate::manifest::compare_versions(&plugin.version, &old.version).is_lt();
    if downgrade && !how.allow_downgrade {
        return Err(Error::new(format!(
            "--dest {d} holds {} {}, newer than version {} in the package; {done}, to keep it: give --allow-downgrade to go back to {}",
            old.name, old.version, plugin.version, plugin.version
        )));
    }
    Ok(Some(Replaced {
        plugin: Some(old),
        downgrade,
    }))
}

/// The contents of `f`, at most `bound` bytes (more is an error).
fn read_bounded(f: File, bound: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    f.take(bound + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bound {
        return Err(io::Error::other(format!("more than {bound} bytes")));
    }
    Ok(bytes)
}

/// "nothing was installed, DEST is as it was" and what to do about `e`.
fn not_installed(dest: &Path, e: &io::Error, parent: &Path) -> String {
    let state = if fs::symlink_metadata(dest).is_ok() {
        "is as it was"
    } else {
        "still does not exist"
    };
    format!(
        "nothing was installed and {} {state}: {}",
        dest.display(),
        remedy(e, parent, Cmd::Install)
    )
}

/// The package changed (`when`) after it was verified.
fn package_changed(pkg: &Path, when: &str) -> Error {
    Error::new(format!(
        "{} changed {when}; nothing was installed: make sure nothing writes to it, then run the install again",
        pkg.display()
    ))
}

/// Whether `dest` holds an installation to replace. An empty directory counts as one; anything
/// else that exists (a file, a symlink, a directory that is not an installation) is refused.
/// `parent` is the directory `dest` is in.
fn check_dest(dest: &Path, parent: &Path) -> Result<bool> {
    let md = match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            // The parent could be examined (see `split_dest`), so the cause lies in it: most
            // often, this user may not search it.
            let next = format!("nothing was done: {}", remedy(&e, parent, Cmd::Install));
            return Err(Error::io("cannot examine --dest", dest, e).then(next));
        }
        Ok(md) => md,
    };
    let d = dest.display();
    if md.is_symlink() {
        return Err(Error::new(format!(
            "--dest {d} is a symbolic link; an install never follows or replaces one, so nothing was done: give the directory it points to as --dest, or remove the link"
        )));
    }
    if !md.is_dir() {
        return Err(Error::new(format!(
            "--dest {d} exists and is not a directory; nothing was done: move it away or choose another --dest"
        )));
    }
    let empty = fs::read_dir(dest)
        .map_err(|e| {
            let next = format!("nothing was done: {}", remedy(&e, dest, Cmd::Install));
            Error::io("cannot list --dest", dest, e).then(next)
        })?
        .next()
        .is_none();
    let installed = fs::symlink_metadata(dest.join(MANIFEST_PATH)).is_ok_and(|m| m.is_file());
    if !empty && !installed {
        return Err(Error::new(format!(
            "--dest {d} is a non-empty directory without {MANIFEST_PATH}, not a plugin installation; nothing was done, to keep its files: empty it or choose another --dest"
        )));
    }
    Ok(true)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The exclusive lock of installs into one destination: `flock(2)` on the file
/// `.NAME.aapi-install.lock` beside it, held until dropped. The file is never removed (removing
/// it would let two installs lock two different files).
struct Lock {
    _file: File,
}

impl Lock {
    fn take(parent: &Path, name: &OsStr, dest: &Path) -> Result<Lock> {
        let mut file_name = OsString::from(".");
        file_name.push(name);
        file_name.push(format!(".{SCRATCH}.lock"));
        let path = parent.join(file_name);
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::EISDIR) => not_a_lock_file(&path, dest),
                _ => {
                    let next = format!("nothing was done: {}", remedy(&e, parent, Cmd::Install));
                    Error::io("cannot open the install lock file", &path, e).then(next)
                }
            })?;
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(not_a_lock_file(&path, dest));
        }
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::busy(format!(
                    "another install into {} is running (it holds the lock {}); nothing was done: try again when it has finished",
                    dest.display(),
                    path.display()
                )));
            }
            return Err(Error::io("cannot lock", &path, e).then(
                "nothing was done: run the install again; if this persists, the file system may not support flock(2)",
            ));
        }
        Ok(Lock { _file: f })
    }
}

/// The lock file's path holds something else (a symlink, a directory, a fifo).
fn not_a_lock_file(path: &Path, dest: &Path) -> Error {
    let what = match fs::symlink_metadata(path) {
        Ok(m) if m.is_symlink() => "a symbolic link",
        Ok(m) if m.is_dir() => "a directory",
        _ => "not a regular file",
    };
    Error::new(format!(
        "{} is {what}, so it cannot be the lock file of installs into {}; nothing was done: remove it (aapi-validator makes it as an empty regular file), then run the install again",
        path.display(),
        dest.display()
    ))
}

/// Whether `file_name` is `.NAME.INFIX-` followed by [`RAND`] ASCII letters or digits: a
/// directory an install into `NAME` makes.
fn made_by_install(file_name: &OsStr, name: &OsStr, infix: &str) -> bool {
    let p = prefix(name, infix);
    file_name
        .as_bytes()
        .strip_prefix(p.as_bytes())
        .is_some_and(|rest| rest.len() == RAND && rest.iter().all(u8::is_ascii_alphanumeric))
}

/// With the lock held (so no other install into `dest` runs): put back the earlier
/// installation an install interrupted between its two renames left aside while `dest` is
/// missing, and remove the temporary directories interrupted installs left beside `dest`.
/// Only directories (not symlinks) named by [`made_by_install`] for this `name` and owned by
/// this user are touched.
fn tidy(
    parent: &Path,
    name: &OsStr,
    dest: &Path,
    leftover: &mut dyn FnMut(Leftover),
) -> Result<()> {
    let euid = {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    };
    let (mut scratch, mut aside) = (Vec::new(), Vec::new());
    let list_failed = |e: io::Error| {
        let next = format!(
            "nothing was installed: {}",
            remedy(&e, parent, Cmd::Install)
        );
        Error::io("cannot list what interrupted installs left in", parent, e).then(next)
    };
    for e in fs::read_dir(parent).map_err(list_failed)? {
        let e = e.map_err(list_failed)?;
        let n = e.file_name();
        let list = if made_by_install(&n, name, SCRATCH) {
            &mut scratch
        } else if made_by_install(&n, name, ASIDE) {
            &mut aside
        } else {
            continue;
        };
        let path = parent.join(&n);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == euid) {
            list.push(path);
        }
    }
    scratch.sort();
    aside.sort();
    let missing =
        matches!(fs::symlink_metadata(dest), Err(e) if e.kind() == io::ErrorKind::NotFound);
    if missing {
        let installs: Vec<&PathBuf> = aside
            .iter()
            .filter(|a| fs::symlink_metadata(a.join(MANIFEST_PATH)).is_ok_and(|m| m.is_file()))
            .collect();
        match installs[..] {
            [] => {}
            [one] => {
                fs::rename(one, dest).map_err(|e| {
                    Error::io(
                        "cannot put back the earlier installation an interrupted install left in",
                        one,
                        e,
                    )
                    .then(format!(
                        "{} is missing: move {} to {} by hand, then run the install again",
                        dest.display(),
                        one.display(),
                        dest.display()
                    ))
                })?;
                leftover(Leftover::PutBack { path: one.clone() });
                let one = one.clone();
                aside.retain(|a| *a != one);
            }
            _ => {
                let list: Vec<String> = installs.iter().map(|a| a.display().to_string()).collect();
                return Err(Error::new(format!(
                    "{} is missing and interrupted installs left several installations beside it ({}); move the right one to {} by hand, then run the install again (it removes the others)",
                    dest.display(),
                    list.join(", "),
                    dest.display()
                )));
            }
        }
    }
    for path in scratch.into_iter().chain(aside) {
        leftover(match remove_tree(&path) {
            Ok(()) => Leftover::Removed { path },
            Err(e) => Leftover::NotRemoved {
                path,
                error: e.to_string(),
            },
        });
    }
    Ok(())
}

/// A directory beside the destination, removed (with everything in it) when dropped.
struct Scratch(PathBuf);

/// Infix of the temporary directory an install extracts into.
const SCRATCH: &str = "aapi-install";
/// Infix of the directory an old installation is moved to when it cannot be exchanged.
const ASIDE: &str = "aapi-aside";
/// Random characters at the end of those directories' names.
const RAND: usize = 6;

/// `.NAME.INFIX-`: the start of the name of a directory beside the destination `NAME`.
fn prefix(name: &OsStr, infix: &str) -> OsString {
    let mut p = OsString::from(".");
    p.push(name);
    p.push(format!(".{infix}-"));
    p
}

impl Scratch {
    fn new(parent: &Path, name: &OsStr, dest: &Path) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(&prefix(name, SCRATCH))
            .rand_bytes(RAND)
            .tempdir_in(parent)
            .map_err(|e| temp_dir_failed(parent, dest, e))?;
        Ok(Scratch(dir.keep()))
    }
}

fn temp_dir_failed(parent: &Path, dest: &Path, e: io::Error) -> Error {
    let next = not_installed(dest, &e, parent);
    Error::io("cannot create a temporary directory in", parent, e).then(next)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// Remove a tree we made, first making its directories writable (a plugin may ship 0555
/// directories, which an unprivileged user could not empty). Missing is fine.
fn remove_tree(path: &Path) -> io::Result<()> {
    fn open_up(p: &Path) {
        if let Ok(md) = fs::symlink_metadata(p)
            && md.is_dir()
        {
            let _ = fs::set_permissions(p, Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(path);
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Put the new tree (in `tmp`) at `dest`. The old installation ends up in `tmp` (removed with
/// it) or, on a file system that cannot exchange, is removed by [`swap_by_renames`].
fn swap(tmp: &Scratch, dest: &Path, parent: &Path, name: &OsStr) -> Result<()> {
    match exchange(&tmp.0, dest) {
        Ok(()) => Ok(()),
        Err(e) if cannot_exchange(&e) => swap_by_renames(&tmp.0, dest, parent, name),
        Err(e) => {
            let next = not_installed(dest, &e, parent);
            Err(Error::io(
                "cannot exchange the new installation (renameat2 RENAME_EXCHANGE) with",
                dest,
                e,
            )
            .then(next))
        }
    }
}

/// Whether `renameat2(RENAME_EXCHANGE)` failed because the file system or kernel cannot
/// exchange (rather than because of the paths).
fn cannot_exchange(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// The swap without `RENAME_EXCHANGE`: the old installation is renamed aside (to a new
/// `.NAME.aapi-aside-XXXXXX` beside `dest`), the tree `new` is renamed to `dest`, and the old
/// installation is removed. `dest` does not exist between the two renames. If the second rename
/// fails, the old installation is renamed back to `dest`; if even that fails, it is left aside
/// (the error says where) and the next install puts it back (see [`tidy`]).
fn swap_by_renames(new: &Path, dest: &Path, parent: &Path, name: &OsStr) -> Result<()> {
    let aside = tempfile::Builder::new()
        .prefix(&prefix(name, ASIDE))
        .rand_bytes(RAND)
        .tempdir_in(parent)
        .map_err(|e| temp_dir_failed(parent, dest, e))?
        .keep();
    // rename(2) replaces the empty directory `aside`.
    if let Err(e) = fs::rename(dest, &aside) {
        let _ = fs::remove_dir(&aside);
        let next = not_installed(dest, &e, parent);
        return Err(
            Error::io("cannot move the earlier installation aside from", dest, e).then(next),
        );
    }
    if let Err(e) = fs::rename(new, dest) {
        let d = dest.display();
        return Err(match fs::rename(&aside, dest) {
            Ok(()) => Error::new(format!(
                "cannot move the new installation to {d}: {e}; the earlier installation was put back, so nothing was installed: {}",
                remedy(&e, parent, Cmd::Install)
            )),
            Err(back) => Error::new(format!(
                "cannot move the new installation to {d}: {e}; the earlier installation could not be put back ({back}): it is in {}, and the next install into {d} puts it back",
                aside.display()
            )),
        });
    }
    let _ = remove_tree(&aside);
    Ok(())
}

/// Swap the directories `new` and `dest` atomically.
fn exchange(new: &Path, dest: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c(new)?, c(dest)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call; AT_FDCWD
    // makes the paths relative to the working directory, as std's functions do.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes a verified package's payload into the new tree, refusing anything the verified
/// manifest does not say.
struct Extractor<'a> {
    root: &'a Path,
    /// The package, the destination and its parent, for messages.
    pkg: &'a Path,
    dest: &'a Path,
    parent: &'a Path,
    manifest: &'a Manifest,
    /// Paths made so far, with whether each is a directory.
    made: HashMap<String, bool>,
    /// Directories made as parents before their own entry came.
    implicit: HashSet<String>,
    as_root: bool,
}

impl<'a> Extractor<'a> {
    /// The manifest's entry for `path`, if it is of the kind given and not made yet; its
    /// parent directories are made first if the archive has not had them yet.
    fn expect(&mut self, path: &str, kind: &str) -> std::result::Result<&'a Kind, SinkError> {
        let manifest: &'a Manifest = self.manifest;
        let e = manifest
            .get(path)
            .filter(|e| e.kind.name() == kind)
            .ok_or_else(|| {
                self.changed(format!("{path} is not a {kind} in the verified manifest"))
            })?;
        if self.made.contains_key(path) {
            if kind == "directory" && self.implicit.remove(path) {
                return Ok(&e.kind);
            }
            return Err(self.changed(format!("{path} appears twice")));
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let dir = &path[..end + i];
            end += i + 1;
            match self.made.get(dir) {
                Some(true) => continue,
                Some(false) => return Err(self.changed(format!("{dir} is not a directory"))),
                None => {}
            }
            if !manifest
                .get(dir)
                .is_some_and(|e| matches!(e.kind, Kind::Dir { .. }))
            {
                return Err(
                    self.changed(format!("{dir} is not a directory in the verified manifest"))
                );
            }
            self.mkdir(dir)?;
            self.implicit.insert(dir.to_string());
        }
        Ok(&e.kind)
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Make the directory `path` of the new tree (mode 0700 until [`Extractor::finish`]).
    fn mkdir(&mut self, path: &str) -> std::result::Result<(), SinkError> {
        let at = self.at(path);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&at)
            .map_err(|e| self.written(e, &at))?;
        self.made.insert(path.to_string(), true);
        Ok(())
    }

    /// Write the manifest and signature, then give directories their modes and owners.
    fn finish(&self, manifest: &[u8], sig: Option<&[u8]>) -> io::Result<()> {
        let meta = self.root.join(META_DIR);
        fs::create_dir(&meta)?;
        for (path, bytes) in [(MANIFEST_PATH, Some(manifest)), (SIGNATURE_PATH, sig)] {
            if let Some(bytes) = bytes {
                let mut f = create(&self.root.join(path))?;
                f.write_all(bytes)?;
                self.own(&f)?;
                f.set_permissions(Permissions::from_mode(0o644))?;
                f.sync_all()?;
            }
        }
        let mut dirs: Vec<(&str, u32)> = self
            .manifest
            .files
            .iter()
            .filter_map(|e| match e.kind {
                Kind::Dir { mode } => Some((e.path.as_str(), mode)),
                _ => None,
            })
            .collect();
        dirs.sort_by(|a, b| b.0.cmp(a.0));
        dirs.push((META_DIR, 0o755));
        dirs.push(("", 0o755));
        for (path, mode) in dirs {
            let d = File::open(self.root.join(path))?;
            self.own(&d)?;
            d.set_permissions(Permissions::from_mode(mode))?;
            d.sync_all()?;
        }
        Ok(())
    }

    /// The package no longer matches what was verified.
    fn changed(&self, why: String) -> SinkError {
        SinkError::Stop(package_changed(
            self.pkg,
            &format!("since it was verified ({why})"),
        ))
    }

    /// Writing `at` (in the new tree) failed.
    fn written(&self, e: io::Error, at: &Path) -> SinkError {
        let path = at.strip_prefix(self.root).unwrap_or(at).display();
        let next = not_installed(self.dest, &e, self.parent);
        SinkError::Stop(
            Error::io(
                &format!("cannot write {path} into the new installation of"),
                self.dest,
                e,
            )
            .then(next),
        )
    }

    fn own(&self, f: &File) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::fchown(f, Some(0), Some(0))?;
        }
        Ok(())
    }
}

/// A new file, never following or replacing anything.
fn create(path: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
}

impl Sink for Extractor<'_> {
    fn file(
        &mut self,
        path: &str,
        _mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> std::result::Result<Hashed, SinkError> {
        let &Kind::File {
            mode,
            size: want,
            sha256,
        } = self.expect(path, "file")?
        else {
            unreachable!("expect checked the kind")
        };
        if size != want {
            return Err(self.changed(format!("{path} is {size} bytes, verified {want}")));
        }
        let at = self.at(path);
        let mut f = create(&at).map_err(|e| self.written(e, &at))?;
        let (digest, n) = copy_data(data, &mut f, |e| self.written(e, &at))?;
        if n == size && digest != sha256 {
            return Err(self.changed(format!("{path} has another SHA-256")));
        }
        self.own(&f)
            .and_then(|_| f.set_permissions(Permissions::from_mode(mode)))
            .and_then(|_| f.sync_all())
            .map_err(|e| self.written(e, &at))?;
        self.made.insert(path.to_string(), false);
        Ok((digest, n))
    }

    fn dir(&mut self, path: &str, _mode: u32) -> std::result::Result<(), SinkError> {
        let made_as_parent = self.implicit.contains(path);
        self.expect(path, "directory")?;
        if made_as_parent {
            return Ok(());
        }
        self.mkdir(path)
    }

    fn symlink(&mut self, path: &str, target: &str) -> std::result::Result<(), SinkError> {
        let Kind::Symlink { target: want } = self.expect(path, "symlink")? else {
            unreachable!("expect checked the kind")
        };
        if want != target {
            return Err(self.changed(format!("{path} points to {target}, verified {want}")));
        }
        let at = self.at(path);
        std::os::unix::fs::symlink(target, &at).map_err(|e| self.written(e, &at))?;
        if self.as_root {
            std::os::unix::fs::lchown(&at, Some(0), Some(0)).map_err(|e| self.written(e, &at))?;
        }
        self.made.insert(path.to_string(), false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// Every entry under `root`: type, mode, and content or link target.
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (String, u32, Vec<u8>)>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let md = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                let mode = md.mode() & 0o7777;
                if md.is_symlink() {
                    let t = fs::read_link(&p).unwrap();
                    out.insert(rel, ("link".into(), 0, t.as_os_str().as_bytes().to_vec()));
                } else if md.is_dir() {
                    out.insert(rel, ("dir".into(), mode, Vec::new()));
                    walk(root, &p, out);
                } else {
                    out.insert(rel, ("file".into(), mode, fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(root, root, &mut out);
        out
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// An installation-like tree at `at` whose files say `tag`, with a read-only directory.
    fn tree(at: &Path, tag: &str) {
        fs::create_dir_all(at.join(".aapi")).unwrap();
        fs::write(at.join(".aapi/manifest.json"), format!("{{\"{tag}\":1}}")).unwrap();
        fs::create_dir(at.join("lib")).unwrap();
        fs::write(at.join("lib/libdemo.so"), format!("{tag} library")).unwrap();
        fs::set_permissions(at.join("lib/libdemo.so"), Permissions::from_mode(0o755)).unwrap();
        symlink("libdemo.so", at.join("lib/libdemo.so.1")).unwrap();
        fs::write(at.join(format!("only-in-{tag}")), tag).unwrap();
        fs::set_permissions(at.join("lib"), Permissions::from_mode(0o555)).unwrap();
    }

    #[test]
    fn renames_put_the_new_tree_in_place_and_remove_the_old_one() {
        let w = tempfile::tempdir().unwrap();
        let dest = w.path().join("demo");
        tree(&dest, "old");
        let new = w.path().join(".demo.aapi-install-abc123");
        tree(&new, "new");
        let want = snapshot(&new);

        swap_by_renames(&new, &dest, w.path(), OsStr::new("demo")).unwrap();

        assert_eq!(snapshot(&dest), want);
        assert!(!dest.join("only-in-old").exists());
        assert_eq!(names(w.path()), ["demo"], "nothing is left beside it");
        remove_tree(&dest).unwrap();
    }

    #[test]
    fn a_failed_second_rename_puts_the_old_installation_back() {
        let w = tempfile::tempdir().unwrap();
        let dest = w.path().join("demo");
        tree(&dest, "old");
        let before = snapshot(&dest);
        let inode = fs::metadata(&dest).unwrap().ino();
        // The new tree vanished (as if removed by someone else): the second rename fails
        // after the old installation was moved aside.
        let new = w.path().join(".demo.aapi-install-abc123");

        let e = swap_by_renames(&new, &dest, w.path(), OsStr::new("demo"))
            .unwrap_err()
            .to_string();

        assert!(
            e.starts_with(&format!(
                "cannot move the new installation to {}: ",
                dest.display()
            )),
            "{e}"
        );
        assert!(
            e.ends_with(
                "; the earlier installation was put back, so nothing was installed: remove the cause, then run the install again"
            ),
            "{e}"
        );
        assert!(e.contains("No such file or directory"), "{e}");
        assert_eq!(snapshot(&dest), before, "byte-identical");
        assert_eq!(
            fs::metadata(&dest).unwrap().ino(),
            inode,
            "the same directory, moved back"
        );
        assert_eq!(names(w.path()), ["demo"], "no directory is left aside");
        remove_tree(&dest).unwrap();
    }

    #[test]
    fn a_destination_is_named_by_its_own_last_component() {
        for (given, want) in [
            ("demo", "demo"),
            ("plugins/demo/", "plugins/demo"),
            ("plugins/demo/.", "plugins/demo"),
            ("plugins/demo/././/", "plugins/demo"),
            ("./demo", "./demo"),
            ("/usr/plugins/demo/.", "/usr/plugins/demo"),
        ] {
            assert_eq!(dest_dir(Path::new(given)).unwrap(), Path::new(want));
        }
        for (given, why) in [
            (".", "is the current directory"),
            ("./", "is the current directory"),
            ("/", "is the root directory"),
            ("/.", "is the root directory"),
            ("..", "ends in `..`"),
            ("plugins/demo/..", "ends in `..`"),
            ("plugins/../.", "ends in `..`"),
        ] {
            let e = dest_dir(Path::new(given)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--dest {given} {why}")), "{e}");
            assert!(e.contains("; nothing was done: "), "{e}");
        }
    }

    #[test]
    fn only_a_missing_exchange_falls_back_to_renames() {
        for code in [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(cannot_exchange(&io::Error::from_raw_os_error(code)));
        }
        for code in [libc::ENOENT, libc::EXDEV, libc::EACCES, libc::EBUSY] {
            assert!(!cannot_exchange(&io::Error::from_raw_os_error(code)));
        }
    }
}
