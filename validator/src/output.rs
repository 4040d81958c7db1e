//! Where the commands that write (`pack`, `sign`, `keygen`, `install`) put their output, and
//! what a failed write tells the user: the path, the cause, what became of the output, and
//! what to do, chosen from the kind of the I/O error the same way for every command.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A command that writes, as the advice names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// `pack`.
    Pack,
    /// `sign`.
    Sign,
    /// `keygen`.
    Keygen,
    /// `install`.
    Install,
}

impl Cmd {
    /// The command as the advice names it: "the install", "`pack`".
    fn name(self) -> &'static str {
        match self {
            Cmd::Pack => "`pack`",
            Cmd::Sign => "`sign`",
            Cmd::Keygen => "`keygen`",
            Cmd::Install => "the install",
        }
    }

    /// The option that says where the command writes.
    fn flag(self) -> &'static str {
        match self {
            Cmd::Install => "--dest",
            _ => "-o",
        }
    }
}

/// What to do about `e`, a failure of `cmd` to write in `dir`. Judged by the error's kind, not
/// its OS error number: the errors of the `tempfile` crate (making temporary directories) keep
/// only the kind.
pub(crate) fn remedy(e: &io::Error, dir: &Path, cmd: Cmd) -> String {
    use io::ErrorKind::*;
    let (d, again, flag) = (dir.display(), cmd.name(), cmd.flag());
    match e.kind() {
        StorageFull => format!("free space on the file system of {d}, then run {again} again"),
        QuotaExceeded => format!(
            "free space or raise this user's disk quota on the file system of {d}, then run {again} again"
        ),
        FileTooLarge => {
            format!("raise the file size limit (`ulimit -f`), then run {again} again")
        }
        PermissionDenied if cmd == Cmd::Install => format!(
            "run the install as a user who may write to {d} (root, for the framework's plugin directory)"
        ),
        PermissionDenied => {
            format!("run {again} as a user who may write to {d}, or choose another {flag}")
        }
        ReadOnlyFilesystem => format!(
            "{d} is on a read-only file system: remount it read-write or choose another {flag}"
        ),
        ResourceBusy | CrossesDevices if cmd == Cmd::Install => format!(
            "the installation directory is a mount point (or on another file system than {d}), \
             and an install renames a new tree into its place: install into a directory inside \
             that file system, or mount it on {d} instead"
        ),
        _ => format!("remove the cause, then run {again} again"),
    }
}

/// The file `out` names, a symbolic link there followed (through links to links, as far as
/// they go): a command replaces the file a link points to, never the link (a release layout's
/// `current.aapkg` link keeps pointing at the package it names).
pub(crate) fn follow_links(out: &Path) -> std::path::PathBuf {
    let mut p = out.to_path_buf();
    for _ in 0..40 {
        match fs::read_link(&p) {
            Ok(target) => p = p.parent().unwrap_or(Path::new(".")).join(target),
            Err(_) => break,
        }
    }
    p
}

/// The directory the new file `out` of `cmd` goes into: it must exist, and `out` must not be a
/// directory. Checked before any work, so that a mistyped `-o` fails at once.
pub(crate) fn out_dir(out: &Path, cmd: Cmd) -> Result<&Path> {
    let (o, flag) = (out.display(), cmd.flag());
    let dir = match out.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) if out.file_name().is_some() => p,
        _ => {
            return Err(Error::new(format!(
                "{flag} {o} names no file (it is `/` or ends in `..`); give the path of the file to write"
            )));
        }
    };
    let d = dir.display();
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(Error::new(format!(
                "{d}, the directory of {o}, is not a directory; choose another {flag}"
            )));
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Err(Error::new(format!(
                "{d}, the directory of {o}, does not exist; create it (`mkdir -p {d}`) or choose another {flag}"
            )));
        }
        Err(e) => {
            let next = format!("nothing was written: {}", remedy(&e, reachable(dir), cmd));
            return Err(
                Error::io(&format!("cannot reach the directory of {o},"), dir, e).then(next),
            );
        }
    }
    if fs::metadata(out).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(format!(
            "{flag} {o} is a directory; give the path of the file to write, such as {}",
            out.join("NAME-VERSION.aapkg").display()
        )));
    }
    Ok(dir)
}

/// The nearest directory above `path` that can be examined: when `path` cannot be (with
/// `EACCES`), that is the directory denying this user search permission.
pub(crate) fn reachable(path: &Path) -> &Path {
    path.ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| fs::metadata(a).is_ok())
        .unwrap_or(Path::new("/"))
}

/// A new temporary file in `dir` (mode 0600, removed when dropped unless persisted). Its
/// creation errors keep their OS error number (the `tempfile` crate's own constructors add
/// the random name to the message).
pub(crate) fn temp_file(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(prefix).make_in(dir, |p| {
        File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    })
}

/// `cmd` could not write `what` ("the package") to `out`, in `dir`, because of `e`, and has
/// removed what it had written: the error names `out` and the cause, says that nothing was
/// written (and that `out`, if it exists, is as it was) and what to do.
pub(crate) fn not_written(cmd: Cmd, what: &str, out: &Path, dir: &Path, e: io::Error) -> Error {
    let next = format!("{}: {}", unchanged(out), remedy(&e, dir, cmd));
    Error::io(&format!("cannot write {what}"), out, e).then(next)
}

/// "nothing was written", and "and OUT is as it was" when `out` exists.
pub(crate) fn unchanged(out: &Path) -> String {
    if fs::symlink_metadata(out).is_ok() {
        format!("nothing was written and {} is as it was", out.display())
    } else {
        "nothing was written".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remedy_follows_the_kind_even_without_an_os_error_number() {
        let dir = Path::new("/plugins");
        for (code, want, pack) in [
            (
                libc::ENOSPC,
                "free space on the file system of /plugins, then run the install again",
                "free space on the file system of /plugins, then run `pack` again",
            ),
            (
                libc::EDQUOT,
                "raise this user's disk quota",
                "raise this user's disk quota",
            ),
            (
                libc::EFBIG,
                "raise the file size limit",
                "raise the file size limit",
            ),
            (
                libc::EACCES,
                "run the install as a user who may write to /plugins (root",
                "run `pack` as a user who may write to /plugins, or choose another -o",
            ),
            (
                libc::EPERM,
                "run the install as a user who may write to /plugins (root",
                "run `pack` as a user who may write to /plugins, or choose another -o",
            ),
            (
                libc::EROFS,
                "/plugins is on a read-only file system: remount it read-write or choose another --dest",
                "/plugins is on a read-only file system: remount it read-write or choose another -o",
            ),
            (
                libc::EIO,
                "remove the cause, then run the install again",
                "remove the cause, then run `pack` again",
            ),
        ] {
            let raw = io::Error::from_raw_os_error(code);
            // As the tempfile crate reports a failure to make a temporary directory.
            let wrapped = io::Error::new(raw.kind(), format!("{raw} at path \"/plugins/.x\""));
            assert_eq!(wrapped.raw_os_error(), None);
            for e in [raw, wrapped] {
                let r = remedy(&e, dir, Cmd::Install);
                assert!(r.contains(want), "{e}: {r}");
                let r = remedy(&e, dir, Cmd::Pack);
                assert!(r.contains(pack), "{e}: {r}");
            }
        }
    }

    #[test]
    fn a_temporary_file_keeps_the_os_error_and_names_no_random_path() {
        let e = temp_file(Path::new("/nonexistent/dir"), ".aapi-pack-").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(!e.to_string().contains("aapi-pack"), "{e}");
    }
}
