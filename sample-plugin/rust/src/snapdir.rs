//! SEC-2: the snapshot directory, opened only when no other local user can replace it, nor any
//! directory or symbolic link on the way to it.
//!
//! The path is walked as the kernel walks it: one component at a time from `/`, each directory
//! held by a descriptor and opened with `O_NOFOLLOW`. A symbolic link on the way is followed by
//! reading its target and walking that (from `/` when it is absolute), so the directories checked
//! are exactly the ones a later open of the path goes through: those of its canonical path and
//! each one that holds a link. The snapshot directory itself is never a link.

use crate::dir::{Dir, Stat, c_string, describe};
use crate::paths;
use aapi_sdk::plugin::{Error, ErrorKind, Result};
use std::collections::VecDeque;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most symbolic links followed on the way (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// The fix every refused ancestor shares.
const ANCESTORS_FIX: &str = "set files.snapshot_dir to a directory whose ancestors only root or the running user may change";

fn snapshot_error(message: String) -> Error {
    Error::new(ErrorKind::Snapshot, message)
}

/// The fix every ancestor the running user may not search shares.
const SEARCH_FIX: &str =
    "set files.snapshot_dir to a directory whose ancestors the running user may search";

/// How a snapshot directory that is not private is refused, and what to do about it.
fn refuse_dir(dir: &Path, why: &str) -> Error {
    snapshot_error(format!(
        "the snapshot directory {} is refused: {why}; it must be a directory of the running user that neither its group nor others may write into: remove it, or set files.snapshot_dir to such a directory",
        dir.display()
    ))
}

/// What lets a user other than root and the running user (`me`) change `at`, a directory or
/// symbolic link on the way to the snapshot directory; `None` when nothing does. A directory must
/// be owned by root or `me`, and writable by neither its group nor others unless it has the
/// sticky bit (`/tmp`): there only root, the directory's owner and an entry's owner may rename
/// that entry. A link must be owned by root or `me` (in a sticky directory its owner may replace
/// it).
fn ancestor_problem(at: &Path, st: &Stat, me: u32) -> Option<String> {
    let (uid, mode, at) = (st.uid(), st.mode(), at.display());
    let trusted = uid == 0 || uid == me;
    if st.is_symlink() {
        (!trusted).then(|| {
            format!(
                "its ancestor {at} is a symbolic link owned by uid {uid}, neither root nor the running user (uid {me}), so that user could point it to a directory of their own; replace it by a link of root or of the running user, or {ANCESTORS_FIX}"
            )
        })
    } else if !trusted {
        Some(format!(
            "its ancestor {at} is owned by uid {uid} (mode {mode:04o}), neither root nor the running user (uid {me}), so that user could put a directory of their own in place of the snapshot directory; give {at} to root or to the running user, or {ANCESTORS_FIX}"
        ))
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        Some(format!(
            "its ancestor {at} (owner uid {uid}, mode {mode:04o}) may be written by its group or others and lacks the sticky bit (as /tmp has, mode 1777), so another user could put a directory of their own in place of the snapshot directory; run chmod go-w {at}, or {ANCESTORS_FIX}"
        ))
    } else {
        None
    }
}

/// Why `at`, an ancestor of the snapshot directory that the running user (`me`) may not search,
/// keeps that user from it, and what to do about it.
fn search_problem(at: &Path, st: &Stat, me: u32) -> String {
    let (uid, mode, at) = (st.uid(), st.mode(), at.display());
    let fix = if uid == me {
        format!("run chmod u+x {at}")
    } else {
        format!("have its owner run chmod a+x {at}")
    };
    format!(
        "its ancestor {at} (owner uid {uid}, mode {mode:04o}) may not be searched by the running user (uid {me}); {fix}, or {SEARCH_FIX}"
    )
}

/// The components of a path that lead somewhere: neither empty nor `.`.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// What the walk found at a component before the last.
enum Step {
    /// A directory, opened.
    Dir(Dir),
    /// Nothing (and nothing was made).
    Missing,
    /// A symbolic link.
    Link(Stat),
}

/// The walk to one snapshot directory.
struct Walk<'a> {
    /// The snapshot directory as configured, named in every message.
    dir: &'a Path,
    /// The running user.
    me: u32,
    /// Make missing directories on the way.
    create: bool,
}

impl Walk<'_> {
    fn cannot(&self, what: &str, at: &Path, e: &io::Error) -> Error {
        snapshot_error(format!(
            "cannot open the snapshot directory {}: cannot {what} {}: {}",
            self.dir.display(),
            at.display(),
            describe(e)
        ))
    }

    fn cannot_create(&self, at: &Path, e: &io::Error) -> Error {
        snapshot_error(format!(
            "cannot create the snapshot directory {}: cannot create directory {}: {}",
            self.dir.display(),
            at.display(),
            describe(e)
        ))
    }

    /// `AAPI_ESNAPSHOT` refusing the snapshot directory for `problem`, which names the fix.
    fn refuse(&self, problem: &str) -> Error {
        snapshot_error(format!(
            "the snapshot directory {} is refused: {problem}",
            self.dir.display()
        ))
    }

    /// `AAPI_ESNAPSHOT` when another user may change the ancestor `at`.
    fn check(&self, at: &Path, st: &Stat) -> Result<()> {
        match ancestor_problem(at, st, self.me) {
            Some(problem) => Err(self.refuse(&problem)),
            None => Ok(()),
        }
    }

    /// The refusal naming the ancestor `cur` (`at`) when `e`, the failure to open its entry
    /// `name`, is that the running user may not search it; `None` for any other failure. A
    /// lookup of `name` needs nothing but that permission, so it is denied too only then.
    fn unsearchable(&self, cur: &Dir, at: &Path, name: &CStr, e: &io::Error) -> Option<Error> {
        let denied = |e: &io::Error| e.raw_os_error() == Some(libc::EACCES);
        if !denied(e) || !cur.stat(name).is_err_and(|e| denied(&e)) {
            return None;
        }
        let st = cur.stat_self().ok()?;
        Some(self.refuse(&search_problem(at, &st, self.me)))
    }

    /// `/`, checked as an ancestor when `ancestor`.
    fn root(&self, ancestor: bool) -> Result<(Dir, PathBuf)> {
        let root = PathBuf::from("/");
        let dir = Dir::open(&root).map_err(|e| self.cannot("open its ancestor", &root, &e))?;
        if ancestor {
            let st = dir
                .stat_self()
                .map_err(|e| self.cannot("inspect its ancestor", &root, &e))?;
            self.check(&root, &st)?;
        }
        Ok((dir, root))
    }

    /// Make the missing directory `name` of `cur` (`at`) 0700, unless another process just did.
    fn make(&self, cur: &Dir, name: &CStr, at: &Path) -> Result<()> {
        match cur.mkdir(name, 0o700) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(self.cannot_create(at, &e)),
            _ => Ok(()),
        }
    }

    /// The ancestor `name` of `cur` (`held`) at `at`, never through a link.
    fn step(&self, cur: &Dir, held: &Path, name: &CStr, at: &Path) -> Result<Step> {
        let mut opened = cur.open_dir(name, false);
        if self.create
            && opened
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            self.make(cur, name, at)?;
            opened = cur.open_dir(name, false);
        }
        match opened {
            Ok(dir) => Ok(Step::Dir(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.create => Ok(Step::Missing),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                match cur.stat(name) {
                    Ok(Some(st)) if st.is_symlink() => Ok(Step::Link(st)),
                    Ok(Some(_)) => Err(snapshot_error(format!(
                        "cannot open the snapshot directory {}: {} is not a directory",
                        self.dir.display(),
                        at.display()
                    ))),
                    _ => Err(self.cannot("open its ancestor", at, &e)),
                }
            }
            Err(e) => Err(self
                .unsearchable(cur, held, name, &e)
                .unwrap_or_else(|| self.cannot("open its ancestor", at, &e))),
        }
    }

    /// The snapshot directory itself, the entry `name` of `cur` (`held`): never through a link,
    /// private to the running user, who may write into it and search it. It is opened only to
    /// name it (`O_PATH`) and checked through that descriptor, so that one the running user may
    /// not read is refused for its owner or mode, not for the permission its open would lack.
    fn last(&self, cur: &Dir, held: &Path, name: &CStr) -> Result<Option<Dir>> {
        let dir = self.dir;
        let mut opened = cur.open_dir(name, false);
        if self.create
            && opened
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            self.make(cur, name, dir)?;
            opened = cur.open_dir(name, false);
        }
        let found = match opened {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.create => return Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(refuse_dir(dir, "it is a symbolic link or not a directory"));
            }
            Err(e) => {
                return Err(self.unsearchable(cur, held, name, &e).unwrap_or_else(|| {
                    snapshot_error(format!(
                        "cannot open the snapshot directory {}: {}",
                        dir.display(),
                        describe(&e)
                    ))
                }));
            }
        };
        let st = found.stat_self().map_err(|e| {
            snapshot_error(format!(
                "cannot inspect {}: {}",
                dir.display(),
                describe(&e)
            ))
        })?;
        if st.uid() != self.me {
            return Err(refuse_dir(
                dir,
                &format!(
                    "it is owned by uid {}, not by the running user (uid {})",
                    st.uid(),
                    self.me
                ),
            ));
        }
        if st.mode() & 0o022 != 0 {
            return Err(refuse_dir(
                dir,
                &format!(
                    "its group or others may write into it (mode {:04o})",
                    st.mode()
                ),
            ));
        }
        // Root may write into and search any directory.
        if self.me != 0 && st.mode() & 0o300 != 0o300 {
            return Err(self.refuse(&format!(
                "the running user (uid {}), its owner, lacks write or search permission on it (mode {:04o}); run chmod 700 {}, or set files.snapshot_dir to another directory of the running user that neither its group nor others may write into",
                self.me,
                st.mode(),
                dir.display()
            )));
        }
        Ok(Some(found))
    }
}

/// SEC-2: the snapshot directory `dir`, held by a descriptor, when no other user can rename or
/// replace a snapshot in it: it is a real directory (not a symbolic link: opened with
/// `O_NOFOLLOW|O_DIRECTORY`), owned by the running user and writable by neither its group nor
/// others, and every directory and link on the way to it passes [`ancestor_problem`]. One the
/// running user may not write into or search, or reach for an ancestor it may not search, is
/// refused with the fix. With `create`, missing directories on the way (the snapshot directory
/// included) are made 0700, each in its checked parent; without, `Ok(None)` when one is missing.
/// Snapshots are made, looked up and removed through the descriptor returned, never by a path.
pub fn open_private(dir: &Path, create: bool) -> Result<Option<Dir>> {
    let w = Walk {
        dir,
        // SAFETY: geteuid has no preconditions and cannot fail.
        me: unsafe { libc::geteuid() },
        create,
    };
    let mut todo = components(paths::bytes(dir));
    // `/` as the snapshot directory has no ancestor: it is its own entry `.`.
    let (mut cur, mut at) = w.root(!todo.is_empty())?;
    let mut links = 0;
    loop {
        let name = todo.pop_front().unwrap_or_else(|| b".".to_vec());
        let c = c_string(&name).map_err(|e| w.cannot("open", dir, &e))?;
        if todo.is_empty() {
            return w.last(&cur, &at, &c);
        }
        let next = if name == b".." {
            at.parent().unwrap_or(&at).to_path_buf()
        } else {
            at.join(OsStr::from_bytes(&name))
        };
        match w.step(&cur, &at, &c, &next)? {
            Step::Dir(d) => {
                let st = d
                    .stat_self()
                    .map_err(|e| w.cannot("inspect its ancestor", &next, &e))?;
                w.check(&next, &st)?;
                (cur, at) = (d, next);
            }
            Step::Missing => return Ok(None),
            Step::Link(st) => {
                links += 1;
                if links > MAX_LINKS {
                    let e = io::Error::from_raw_os_error(libc::ELOOP);
                    return Err(w.cannot("open its ancestor", &next, &e));
                }
                w.check(&next, &st)?;
                let target = cur
                    .read_link(&c)
                    .map_err(|e| w.cannot("read the link", &next, &e))?;
                if target.is_empty() {
                    let e = io::Error::from_raw_os_error(libc::ENOENT);
                    return Err(w.cannot("open its ancestor", &next, &e));
                }
                if target.starts_with(b"/") {
                    (cur, at) = w.root(true)?;
                }
                for part in components(&target).into_iter().rev() {
                    todo.push_front(part);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_skip_empty_and_dot_and_keep_dotdot() {
        let got: Vec<Vec<u8>> = components(b"/a//./b/../c/").into_iter().collect();
        assert_eq!(got, [&b"a"[..], b"b", b"..", b"c"]);
        assert!(components(b"/").is_empty());
    }
}
