//! Object paths: raw bytes (any byte but NUL), absolute, compared byte by byte.

use aapi_sdk::plugin::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes of a path.
pub fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// A path from bytes.
pub fn from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Whether `p` starts with `/`.
pub fn is_absolute(p: &Path) -> bool {
    bytes(p).first() == Some(&b'/')
}

/// RC-3: an object path (or selection, or real path) is absolute and has no `..` component, so
/// it names exactly one place and cannot reach outside a root it is checked against.
/// `AAPI_EINVAL` naming `what` and the path otherwise.
pub fn check_object_path(path: &Path, what: &str) -> Result<()> {
    if !is_absolute(path) {
        return Err(Error::invalid(format!(
            "{what} {path:?} is not an absolute path"
        )));
    }
    if bytes(path).split(|&c| c == b'/').any(|part| part == b"..") {
        return Err(Error::invalid(format!(
            "{what} {path:?} contains a \"..\" component"
        )));
    }
    Ok(())
}

/// `p` without empty and `.` components and without a trailing `/`, and whether it has a `..`
/// component (kept as is: paths are never resolved against the file system here).
pub fn normalize(p: &Path) -> (PathBuf, bool) {
    let b = bytes(p);
    let mut out = Vec::with_capacity(b.len());
    let mut dotdot = false;
    if b.first() == Some(&b'/') {
        out.push(b'/');
    }
    for part in b.split(|&c| c == b'/') {
        if part.is_empty() || part == b"." {
            continue;
        }
        if part == b".." {
            dotdot = true;
        }
        if out.last().is_some_and(|&c| c != b'/') {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    (from_bytes(&out), dotdot)
}

/// `<root>/<path without its leading />`: where an absolute object path lives under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    let rel = bytes(path).strip_prefix(b"/").unwrap_or(bytes(path));
    let mut out = bytes(root).to_vec();
    if out.last() != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(rel);
    from_bytes(&out)
}

/// Whether the normalized absolute `path` is `root` or lies below it.
pub fn is_within(path: &Path, root: &Path) -> bool {
    let (p, r) = (bytes(path), bytes(root));
    r == b"/" || (p.starts_with(r) && (p.len() == r.len() || p[r.len()] == b'/'))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The longest name of a directory entry (`NAME_MAX` of Linux file systems).
pub const NAME_MAX: usize = 255;

/// A hidden name beside `path` for a temporary or set-aside object:
/// `<dir>/.<name>.aapi-<what>-<n>`, `n` unique in this process. The name is cut short where
/// needed (at a byte) so that the whole stays within [`NAME_MAX`] bytes: an object whose name is
/// as long as a file system allows gets one too.
pub fn hidden_sibling(path: &Path, what: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let suffix = format!(".aapi-{what}-{n}");
    let keep = name.len().min(NAME_MAX - 1 - suffix.len());
    let mut leaf = vec![b'.'];
    leaf.extend_from_slice(&name[..keep]);
    leaf.extend_from_slice(suffix.as_bytes());
    path.parent()
        .unwrap_or(Path::new("/"))
        .join(OsStr::from_bytes(&leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_noise_and_flags_dotdot() {
        let n = |s: &[u8]| normalize(&from_bytes(s));
        assert_eq!(n(b"/a//b/./c/"), (from_bytes(b"/a/b/c"), false));
        assert_eq!(n(b"/"), (from_bytes(b"/"), false));
        assert_eq!(n(b"/a/../b"), (from_bytes(b"/a/../b"), true));
        assert_eq!(n(b"/x\n y/\xff"), (from_bytes(b"/x\n y/\xff"), false));
    }

    #[test]
    fn object_paths_are_absolute_without_dotdot() {
        let check = |s: &[u8]| {
            check_object_path(&from_bytes(s), "path").map_err(|e| e.message().to_string())
        };
        assert!(check(b"/a/b").is_ok());
        assert!(
            check(b"/a/..b/c..").is_ok(),
            "only a whole component counts"
        );
        assert!(check(b"/a/./b//").is_ok());
        for bad in [&b"/a/../b"[..], b"/..", b"/a/..", b"/a/../", b"a/b", b""] {
            let msg = check(bad).expect_err("refused");
            assert!(msg.contains(&format!("{:?}", from_bytes(bad))), "{msg}");
        }
    }

    #[test]
    fn under_and_within() {
        assert_eq!(
            under(Path::new("/s/id"), Path::new("/a/b")),
            Path::new("/s/id/a/b")
        );
        assert_eq!(under(Path::new("/s"), Path::new("/")), Path::new("/s/"));
        assert!(is_within(Path::new("/mnt/alt/x"), Path::new("/mnt/alt")));
        assert!(is_within(Path::new("/mnt/alt"), Path::new("/mnt/alt")));
        assert!(!is_within(
            Path::new("/mnt/alternative"),
            Path::new("/mnt/alt")
        ));
        assert!(is_within(Path::new("/anything"), Path::new("/")));
    }

    #[test]
    fn hidden_siblings_are_unique_and_hidden() {
        let a = hidden_sibling(Path::new("/d/f x"), "tmp");
        let b = hidden_sibling(Path::new("/d/f x"), "tmp");
        assert_ne!(a, b);
        assert!(bytes(&a).starts_with(b"/d/.f x.aapi-tmp-"));
        let long = from_bytes(&[b"/d/".as_slice(), &[b'z'; NAME_MAX]].concat());
        let c = hidden_sibling(&long, "old");
        let leaf = c.file_name().unwrap().as_bytes();
        assert_eq!(leaf.len(), NAME_MAX, "{c:?}");
        assert!(
            leaf.starts_with(b".zzz")
                && leaf
                    .ends_with(format!(".aapi-old-{}", COUNTER.load(Ordering::Relaxed)).as_bytes())
        );
    }
}
