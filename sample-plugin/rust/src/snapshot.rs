//! The `copy` and `reflink` snapshots, snapshot paths and snapshot deletion (DISC-5, DISC-6,
//! DISC-7, SEC-2).
//!
//! A snapshot is a proxy copy of the changed objects under
//! `<snapshot_dir>/<snapshot id>/<real path without its leading />`, keeping modes and times (and
//! owners when running as root). Directories are created 0700 and get their own mode and times
//! only once everything below them is copied, so that a read-only directory can still be filled.

use crate::config::{Config, SnapshotMode};
use crate::dir::c_string;
use crate::fsutil::{self, path_error};
use crate::{NAME, paths, snapdir, sys};
use aapi_sdk::plugin::{Error, ErrorKind, Host, Result, Timestamp};
use std::ffi::CString;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Every snapshot id this plugin makes starts with this.
pub const PREFIX: &str = "files-";
/// A keepalive is checked after every chunk of this size copied (TIME-2).
const CHUNK: usize = 1 << 20;

fn id_char_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The snapshot id of a job: `files-<job id>`, each character outside `[A-Za-z0-9._-]` replaced
/// by `_`. `AAPI_EINVAL` when it would not fit `aapi_snapid_t`.
pub fn snapshot_id(job_id: &str) -> Result<String> {
    let id: String = PREFIX
        .chars()
        .chain(
            job_id
                .chars()
                .map(|c| if id_char_allowed(c) { c } else { '_' }),
        )
        .collect();
    if id.len() >= aapi_sdk::abi::AAPI_SNAPID_MAX {
        return Err(Error::invalid(format!(
            "job id {job_id:?} makes a snapshot id longer than {} bytes",
            aapi_sdk::abi::AAPI_SNAPID_MAX - 1
        )));
    }
    Ok(id)
}

/// Whether `id` is one this plugin could have made. Only such ids are ever turned into paths,
/// so no name the framework passes can reach outside `<snapshot_dir>`.
pub fn is_valid_id(id: &str) -> bool {
    id.len() < aapi_sdk::abi::AAPI_SNAPID_MAX
        && id
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.chars().all(id_char_allowed))
}

/// The root directory of snapshot `id`.
pub fn root(cfg: &Config, id: &str) -> PathBuf {
    cfg.snapshot_dir.join(id)
}

/// Snapshot `id` as the name of an entry of the snapshot directory.
fn id_name(id: &str) -> Result<CString> {
    c_string(id.as_bytes()).map_err(|e| Error::io(e, format!("snapshot id {id:?}")))
}

/// The longest path the system calls take (`PATH_MAX` less its NUL).
const PATH_MAX: usize = libc::PATH_MAX as usize - 1;

/// `AAPI_ESNAPSHOT` when the copy of one of `items` in snapshot `id` would have a path too long
/// for the calls that make and read it by path, before anything is made. The reason and the fix
/// come before the paths, which may be long.
fn check_lengths(cfg: &Config, id: &str, items: &[Item<'_>]) -> Result<()> {
    // `<root>/<path without its leading />`: the length of the root and of the path.
    let root = paths::bytes(&root(cfg, id)).len();
    let mut longest: Option<(usize, &Path)> = None;
    for it in items {
        let n = root + paths::bytes(it.path).len();
        if longest.is_none_or(|(m, _)| n > m) {
            longest = Some((n, it.path));
        }
    }
    match longest {
        Some((n, path)) if n > PATH_MAX => Err(Error::new(
            ErrorKind::Snapshot,
            format!(
                "snapshot: a path in snapshot {id} would be {n} bytes long, more than the {PATH_MAX} bytes a path may have; set files.snapshot_dir to a shorter directory (it is {}; the longest path is the copy of {})",
                cfg.snapshot_dir.display(),
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// DISC-6: where `real_path` is inside snapshot `snapshot`; `real_path` itself for "".
pub fn snapshot_path(cfg: &Config, snapshot: &str, real_path: &Path) -> Result<PathBuf> {
    // Without "..": the snapshot path stays inside the snapshot.
    paths::check_object_path(real_path, "realpath")?;
    if snapshot.is_empty() {
        return Ok(real_path.to_path_buf());
    }
    if !is_valid_id(snapshot) {
        return Err(Error::invalid(format!(
            "{snapshot:?} is not a snapshot id of this plugin"
        )));
    }
    let root = root(cfg, snapshot);
    let name = id_name(snapshot)?;
    // A snapshot is read only from a private snapshot directory, where no other user can have
    // put something else in its place since discovery.
    let base = snapdir::open_private(&cfg.snapshot_dir, false)?;
    if !base.is_some_and(|d| {
        d.stat(&name)
            .is_ok_and(|st| st.is_some_and(|st| st.is_dir()))
    }) {
        return Err(Error::new(
            ErrorKind::Snapshot,
            format!("snapshot {} does not exist", root.display()),
        ));
    }
    Ok(paths::under(&root, real_path))
}

/// One object to copy into a snapshot, with its `lstat` from the walk.
pub struct Item<'a> {
    /// The real path.
    pub path: &'a Path,
    /// Its metadata at discovery.
    pub md: &'a Metadata,
}

fn times(md: &Metadata) -> (Option<Timestamp>, Option<Timestamp>) {
    let t = |s: i64, n: i64| Some(Timestamp::new(s, n as u32));
    (
        t(md.atime(), md.atime_nsec()),
        t(md.mtime(), md.mtime_nsec()),
    )
}

struct Copier<'a> {
    cfg: &'a Config,
    host: &'a Host,
    buf: Vec<u8>,
    warned_fallback: bool,
}

impl Copier<'_> {
    fn file(&mut self, src: &Path, dst: &Path, md: &Metadata) -> Result<()> {
        let mut input = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(src)
            .map_err(|e| Error::io(e, format!("snapshot: cannot open {}", src.display())))?;
        // SEC-2: created private, given the source's mode only once complete.
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| Error::io(e, format!("snapshot: cannot create {}", dst.display())))?;
        let mut cloned = false;
        if self.cfg.snapshot == SnapshotMode::Reflink {
            match sys::clone_file(&out, &input) {
                Ok(()) => cloned = true,
                Err(e) if sys::clone_unsupported(&e) => {
                    if !self.cfg.reflink_fallback_copy {
                        return Err(Error::new(
                            ErrorKind::Snapshot,
                            format!(
                                "snapshot: the file system cannot clone {} (files.reflink_fallback=error)",
                                src.display()
                            ),
                        ));
                    }
                    if !self.warned_fallback {
                        self.warned_fallback = true;
                        self.host.warn(format!(
                            "{NAME}: the file system cannot clone {}; copying instead (files.reflink_fallback=copy)",
                            src.display()
                        ));
                    }
                }
                Err(e) => {
                    return Err(Error::io(
                        e,
                        format!("snapshot: cannot clone {}", src.display()),
                    ));
                }
            }
        }
        if !cloned {
            self.copy_data(&mut input, &mut out, src, dst)?;
        }
        // Owner before mode: changing the owner clears setuid/setgid bits.
        if sys::is_root() {
            std::os::unix::fs::fchown(&out, Some(md.uid()), Some(md.gid())).map_err(|e| {
                Error::io(
                    e,
                    format!("snapshot: cannot set the owner of {}", dst.display()),
                )
            })?;
        }
        out.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| {
                Error::io(
                    e,
                    format!("snapshot: cannot set the mode of {}", dst.display()),
                )
            })?;
        sys::close_checked(out)
            .map_err(|e| Error::io(e, format!("snapshot: cannot write {}", dst.display())))?;
        let (a, m) = times(md);
        sys::set_times_nofollow(dst, a, m).map_err(|e| {
            Error::io(
                e,
                format!("snapshot: cannot set the times of {}", dst.display()),
            )
        })
    }

    /// Copy the bytes of `input` to `out`, with a keepalive when due after every MiB (TIME-2).
    fn copy_data(
        &mut self,
        input: &mut fs::File,
        out: &mut fs::File,
        src: &Path,
        dst: &Path,
    ) -> Result<()> {
        loop {
            let n = match input.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        e,
                        format!("snapshot: cannot read {}", src.display()),
                    ));
                }
            };
            out.write_all(&self.buf[..n])
                .map_err(|e| Error::io(e, format!("snapshot: cannot write {}", dst.display())))?;
            self.host.keepalive_if_due()?;
        }
    }

    fn symlink(&self, src: &Path, dst: &Path, md: &Metadata) -> Result<()> {
        let target = fs::read_link(src).map_err(|e| {
            Error::io(
                e,
                format!("snapshot: cannot read symlink {}", src.display()),
            )
        })?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| {
            Error::io(
                e,
                format!("snapshot: cannot create symlink {}", dst.display()),
            )
        })?;
        if sys::is_root() {
            std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid())).map_err(|e| {
                Error::io(
                    e,
                    format!("snapshot: cannot set the owner of {}", dst.display()),
                )
            })?;
        }
        let (a, m) = times(md);
        sys::set_times_nofollow(dst, a, m).map_err(|e| {
            Error::io(
                e,
                format!("snapshot: cannot set the times of {}", dst.display()),
            )
        })
    }

    fn item(&mut self, root: &Path, it: &Item<'_>) -> Result<()> {
        let dst = paths::under(root, it.path);
        if let Some(parent) = dst.parent() {
            fsutil::mkdirs(parent)?;
        }
        let ft = it.md.file_type();
        if ft.is_dir() {
            match fs::DirBuilder::new().mode(0o700).create(&dst) {
                Err(e) if !(e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir()) => {
                    Err(Error::io(
                        e,
                        format!("snapshot: cannot create directory {}", dst.display()),
                    ))
                }
                _ => Ok(()),
            }
        } else if ft.is_symlink() {
            self.symlink(it.path, &dst, it.md)
        } else {
            self.file(it.path, &dst, it.md)
        }
    }

    /// Give copied directories their owner, mode and times, deepest first, once nothing more is
    /// written into them.
    fn fix_dirs(&self, root: &Path, items: &[Item<'_>]) -> Result<()> {
        for it in items.iter().rev().filter(|it| it.md.is_dir()) {
            let dst = paths::under(root, it.path);
            if sys::is_root() {
                std::os::unix::fs::lchown(&dst, Some(it.md.uid()), Some(it.md.gid())).map_err(
                    |e| {
                        Error::io(
                            e,
                            format!("snapshot: cannot set the owner of {}", dst.display()),
                        )
                    },
                )?;
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(it.md.mode() & 0o7777)).map_err(
                |e| {
                    Error::io(
                        e,
                        format!("snapshot: cannot set the mode of {}", dst.display()),
                    )
                },
            )?;
            let (a, m) = times(it.md);
            sys::set_times_nofollow(&dst, a, m).map_err(|e| {
                Error::io(
                    e,
                    format!("snapshot: cannot set the times of {}", dst.display()),
                )
            })?;
        }
        Ok(())
    }
}

/// Make snapshot `id` of `items` (in ascending path order). A failure removes what was made
/// (DISC-5) and is `AAPI_ESNAPSHOT`, except cancellation and lack of memory, which keep their
/// codes (TIME-4).
pub fn create(cfg: &Config, host: &Host, id: &str, items: &[Item<'_>]) -> Result<()> {
    let snap_err = |e: Error| match e.kind() {
        ErrorKind::Cancelled | ErrorKind::OutOfMemory => e,
        _ => Error::new(ErrorKind::Snapshot, e.message()),
    };
    check_lengths(cfg, id, items)?;
    let base = snapdir::open_private(&cfg.snapshot_dir, true)?.expect("created");
    let root = root(cfg, id);
    let name = id_name(id)?;
    // Made in the directory just checked, through its descriptor.
    base.mkdir(&name, 0o700).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::new(
                ErrorKind::Snapshot,
                format!("snapshot {} already exists", root.display()),
            )
        } else {
            snap_err(Error::io(
                e,
                format!("cannot create snapshot {}", root.display()),
            ))
        }
    })?;
    let mut copier = Copier {
        cfg,
        host,
        buf: vec![0; CHUNK],
        warned_fallback: false,
    };
    let result = items
        .iter()
        .try_for_each(|it| {
            host.keepalive_if_due()?;
            copier.item(&root, it)
        })
        .and_then(|()| copier.fix_dirs(&root, items));
    match result {
        Ok(()) => {
            host.info(format!(
                "{NAME}: snapshot {id}: {} objects copied",
                items.len()
            ));
            Ok(())
        }
        Err(e) => {
            // DISC-5, TIME-4: no partial snapshot is left behind (removed through the checked
            // descriptor, whatever the length of its path).
            let _ = base.remove_tree(&name, &root, None);
            Err(snap_err(e))
        }
    }
}

/// DISC-7: delete snapshot `id`; one already gone is success. Keepalives during the removal.
pub fn remove(cfg: &Config, host: &Host, id: &str) -> Result<()> {
    let Some(base) = snapdir::open_private(&cfg.snapshot_dir, false)? else {
        return Ok(());
    };
    let root = root(cfg, id);
    let name = id_name(id)?;
    if base
        .stat(&name)
        .map_err(|e| path_error(e, "inspect", &root))?
        .is_none()
    {
        return Ok(());
    }
    base.remove_tree(&name, &root, Some(host))
        .map_err(|e| match e.kind() {
            ErrorKind::Cancelled | ErrorKind::OutOfMemory => e,
            _ => Error::new(ErrorKind::Snapshot, e.message()),
        })?;
    host.info(format!("{NAME}: snapshot {id} deleted"));
    Ok(())
}

/// Remove snapshot `id` after a failed discovery, when its directory is still private; what
/// cannot be removed stays (the discovery's own error is the one reported).
pub fn discard(cfg: &Config, id: &str) {
    if let (Ok(Some(base)), Ok(name)) =
        (snapdir::open_private(&cfg.snapshot_dir, false), id_name(id))
    {
        let _ = base.remove_tree(&name, &root(cfg, id), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_replace_each_odd_character_once() {
        assert_eq!(snapshot_id("job-1.2_x").unwrap(), "files-job-1.2_x");
        assert_eq!(snapshot_id("a b/c").unwrap(), "files-a_b_c");
        assert_eq!(snapshot_id("日本").unwrap(), "files-__");
        assert!(snapshot_id(&"x".repeat(250)).is_err());
        assert!(is_valid_id("files-a_b"));
        assert!(is_valid_id("files-"), "the id of an empty job id");
        for bad in ["", "files", "files-../x", "other-1", "files-a/b", "files-é"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}
