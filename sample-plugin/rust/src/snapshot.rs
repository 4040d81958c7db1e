//! The `copy` and `reflink` snapshots, snapshot paths and snapshot deletion (DISC-5, DISC-6,
//! DISC-7, SEC-2).
//!
//! A snapshot is a proxy copy of the changed objects under
//! `<snapshot_dir>/<snapshot id>/<real path without its leading />`, keeping modes and times (and
//! owners when running as root). Directories are created 0700 and get their own mode and times
//! only once everything below them is copied, so that a read-only directory can still be filled.
//! A snapshot id ends in a tag of the snapshot directory it was made in, and is used only by a
//! session whose snapshot directory has that tag.

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

/// The length of the tag that ends every snapshot id (after a `-`).
const TAG_LEN: usize = 16;

/// The tag of snapshot directory `dir` (absolute, normalized): the 64-bit FNV-1a hash of its
/// path's bytes, as 16 lowercase hex digits. It only tells one directory from another (an
/// identifier, not a security measure: the directory's own checks are that).
fn dir_tag(dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in paths::bytes(dir) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The snapshot id of a job whose snapshot is made in `dir`: `files-<job id>-<tag of dir>`, each
/// character of the job id outside `[A-Za-z0-9._-]` replaced by `_`. `AAPI_EINVAL` when it would
/// not fit `aapi_snapid_t`.
pub fn snapshot_id(job_id: &str, dir: &Path) -> Result<String> {
    let mut id: String = PREFIX
        .chars()
        .chain(
            job_id
                .chars()
                .map(|c| if id_char_allowed(c) { c } else { '_' }),
        )
        .collect();
    id.push('-');
    id.push_str(&dir_tag(dir));
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

/// The tag at the end of `id` (`-` and 16 lowercase hex digits), if it has one.
fn id_tag(id: &str) -> Option<&str> {
    let (_, tag) = id.strip_prefix(PREFIX)?.rsplit_once('-')?;
    (tag.len() == TAG_LEN && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(tag)
}

/// `AAPI_ESNAPSHOT` unless snapshot `id` (a valid id) was made in the snapshot directory of this
/// session: one made elsewhere (by a discovery run by another user, with another `TMPDIR` or
/// another `files.snapshot_dir`) would not be found here, and its absence taken for success.
pub fn check_made_here(cfg: &Config, id: &str) -> Result<()> {
    let why = match id_tag(id) {
        Some(tag) if tag == dir_tag(&cfg.snapshot_dir) => return Ok(()),
        Some(_) => "was made in another snapshot directory than",
        None => {
            "carries no tag of the snapshot directory it was made in (the ids of this plugin end in one), so it is not looked for in"
        }
    };
    // The reason and the fix before the path, which may be long.
    Err(Error::new(
        ErrorKind::Snapshot,
        format!(
            "snapshot {id} {why} the one of this session; run every step of the job as the same user, with the same TMPDIR and files.snapshot_dir, as the discovery (the snapshot directory of this session is {})",
            cfg.snapshot_dir.display()
        ),
    ))
}

/// The root directory of snapshot `id`.
pub fn root(cfg: &Config, id: &str) -> PathBuf {
    cfg.snapshot_dir.join(id)
}

/// Snapshot `id` as the name of an entry of the snapshot directory.
fn id_name(id: &str) -> Result<CString> {
    c_string(id.as_bytes()).map_err(|e| crate::dir::io_error(e, format!("snapshot id {id:?}")))
}

/// The longest path the system calls take (`PATH_MAX` less its NUL): objects are read by path.
pub(crate) const PATH_MAX: usize = libc::PATH_MAX as usize - 1;

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
    check_made_here(cfg, snapshot)?;
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
            .map_err(|e| {
                crate::dir::io_error(e, format!("snapshot: cannot open {}", src.display()))
            })?;
        // SEC-2: created private, given the source's mode only once complete.
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| {
                crate::dir::io_error(e, format!("snapshot: cannot create {}", dst.display()))
            })?;
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
                    return Err(crate::dir::io_error(
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
                crate::dir::io_error(
                    e,
                    format!("snapshot: cannot set the owner of {}", dst.display()),
                )
            })?;
        }
        out.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| {
                crate::dir::io_error(
                    e,
                    format!("snapshot: cannot set the mode of {}", dst.display()),
                )
            })?;
        sys::close_checked(out).map_err(|e| {
            crate::dir::io_error(e, format!("snapshot: cannot write {}", dst.display()))
        })?;
        let (a, m) = times(md);
        sys::set_times_nofollow(dst, a, m).map_err(|e| {
            crate::dir::io_error(
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
                    return Err(crate::dir::io_error(
                        e,
                        format!("snapshot: cannot read {}", src.display()),
                    ));
                }
            };
            out.write_all(&self.buf[..n]).map_err(|e| {
                crate::dir::io_error(e, format!("snapshot: cannot write {}", dst.display()))
            })?;
            self.host.keepalive_if_due()?;
        }
    }

    fn symlink(&self, src: &Path, dst: &Path, md: &Metadata) -> Result<()> {
        let target = fs::read_link(src).map_err(|e| {
            crate::dir::io_error(
                e,
                format!("snapshot: cannot read symlink {}", src.display()),
            )
        })?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| {
            crate::dir::io_error(
                e,
                format!("snapshot: cannot create symlink {}", dst.display()),
            )
        })?;
        if sys::is_root() {
            std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid())).map_err(|e| {
                crate::dir::io_error(
                    e,
                    format!("snapshot: cannot set the owner of {}", dst.display()),
                )
            })?;
        }
        let (a, m) = times(md);
        sys::set_times_nofollow(dst, a, m).map_err(|e| {
            crate::dir::io_error(
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
                    Err(crate::dir::io_error(
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
                        crate::dir::io_error(
                            e,
                            format!("snapshot: cannot set the owner of {}", dst.display()),
                        )
                    },
                )?;
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(it.md.mode() & 0o7777)).map_err(
                |e| {
                    crate::dir::io_error(
                        e,
                        format!("snapshot: cannot set the mode of {}", dst.display()),
                    )
                },
            )?;
            let (a, m) = times(it.md);
            sys::set_times_nofollow(&dst, a, m).map_err(|e| {
                crate::dir::io_error(
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
            snap_err(crate::dir::io_error(
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
    fn ids_replace_each_odd_character_once_and_end_in_the_tag_of_the_directory() {
        let dir = Path::new("/tmp/snaps");
        let tag = dir_tag(dir);
        assert_eq!(tag.len(), TAG_LEN);
        assert_eq!(
            dir_tag(Path::new("")),
            "cbf29ce484222325",
            "the FNV-1a offset basis"
        );
        assert_eq!(
            dir_tag(Path::new("a")),
            "af63dc4c8601ec8c",
            "FNV-1a 64 of \"a\""
        );
        assert_ne!(dir_tag(Path::new("/tmp/snaps2")), tag);
        let id = |job: &str| snapshot_id(job, dir).unwrap();
        assert_eq!(id("job-1.2_x"), format!("files-job-1.2_x-{tag}"));
        assert_eq!(id("a b/c"), format!("files-a_b_c-{tag}"));
        assert_eq!(id("日本"), format!("files-__-{tag}"));
        assert_eq!(id(""), format!("files--{tag}"));
        // The longest job id that fits: 255 bytes in all.
        assert_eq!(id(&"x".repeat(232)).len(), 255);
        assert!(snapshot_id(&"x".repeat(233), dir).is_err());
        for job in ["job-1.2_x", "", "a-0123456789abcdef"] {
            let id = id(job);
            assert!(is_valid_id(&id), "{id:?}");
            assert_eq!(id_tag(&id), Some(tag.as_str()), "{id:?}");
        }
        assert!(is_valid_id("files-a_b"));
        for bad in ["", "files", "files-../x", "other-1", "files-a/b", "files-é"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        for untagged in [
            "files-job-1",
            "files-0123456789abcdef",
            "files-a-0123456789ABCDEF",
            "files-a-0123456789abcde",
        ] {
            assert_eq!(id_tag(untagged), None, "{untagged:?}");
        }
    }
}
