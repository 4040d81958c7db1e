//! The session properties this plugin reads (sample-plugin/README.md, "Configuration").

use crate::paths;
use aapi_sdk::plugin::{Error, Result, Session};
use aapi_sdk::props::{AAPI_PROP_LAST_BACKUP_TIME, AAPI_PROP_LAST_FULL_TIME};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// How discovery freezes the selection (`files.snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// Objects are read in place; no snapshot id.
    None,
    /// A proxy copy of every changed object.
    Copy,
    /// Like `Copy`, with regular files cloned copy-on-write.
    Reflink,
}

/// The configuration of one session.
#[derive(Debug, Clone)]
pub struct Config {
    /// `files.snapshot`.
    pub snapshot: SnapshotMode,
    /// `files.snapshot_dir` (normalized, absolute, without a `..` component).
    pub snapshot_dir: PathBuf,
    /// `files.reflink_fallback=copy`: copy where the file system cannot clone.
    pub reflink_fallback_copy: bool,
    /// `files.min_free_bytes`: space a restore must leave free.
    pub min_free_bytes: u64,
    /// `aapi.last_backup_time`: reference of incrementals.
    pub last_backup_time: Option<i64>,
    /// `aapi.last_full_time`: reference of cumulative incrementals.
    pub last_full_time: Option<i64>,
}

/// A decimal number of ASCII digits only, at most `max`.
fn decimal(key: &str, value: &str, max: u64, unit: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(format!(
            "property {key}={value:?} is not a decimal number of {unit}"
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value
        .parse::<u64>()
        .ok()
        .filter(|v| *v <= max)
        .ok_or_else(bad)
}

/// The default `files.snapshot_dir` of user `uid`: `aapi-files-snapshots` in the temporary
/// directory for root, `aapi-files-snapshots-<uid>` for any other user (so that no user's
/// directory stands in the way of another's). The temporary directory is `tmpdir` (`$TMPDIR`)
/// when it is an absolute path without a `..` component (POSIX requires an absolute one), else
/// `/tmp`: the directory checked is then the one every snapshot path names.
pub fn default_snapshot_dir(tmpdir: Option<&OsStr>, uid: u32) -> PathBuf {
    let tmp = tmpdir
        .map(Path::new)
        .filter(|t| paths::is_absolute(t))
        .map(paths::normalize)
        .filter(|(_, dotdot)| !dotdot)
        .map_or_else(|| PathBuf::from("/tmp"), |(t, _)| t);
    let name = if uid == 0 {
        "aapi-files-snapshots".to_string()
    } else {
        format!("aapi-files-snapshots-{uid}")
    };
    paths::normalize(&tmp.join(name)).0
}

impl Config {
    /// Read the session's properties. A bad value of a known key is `AAPI_EINVAL`; unknown
    /// `files.*` keys are logged as warnings and ignored. When a key repeats, the last one wins.
    pub fn from_session(session: &Session) -> Result<Config> {
        let mut cfg = Config {
            snapshot: SnapshotMode::None,
            // SAFETY: geteuid has no preconditions and cannot fail.
            snapshot_dir: default_snapshot_dir(std::env::var_os("TMPDIR").as_deref(), unsafe {
                libc::geteuid()
            }),
            reflink_fallback_copy: false,
            min_free_bytes: 0,
            last_backup_time: None,
            last_full_time: None,
        };
        for (key, value) in session.properties() {
            match key.as_str() {
                "files.snapshot" => {
                    cfg.snapshot = match value.as_str() {
                        "none" => SnapshotMode::None,
                        "copy" => SnapshotMode::Copy,
                        "reflink" => SnapshotMode::Reflink,
                        _ => {
                            return Err(Error::invalid(format!(
                                "files.snapshot={value:?} is not one of none, copy, reflink"
                            )));
                        }
                    }
                }
                "files.snapshot_dir" => {
                    let dir = PathBuf::from(value);
                    if !paths::is_absolute(&dir) {
                        return Err(Error::invalid(format!(
                            "files.snapshot_dir={value:?} is not an absolute path"
                        )));
                    }
                    // The directory is checked and used by this very path: a ".." would be
                    // checked where the walk leads but kept in every snapshot path, which
                    // object paths may not hold.
                    let (dir, dotdot) = paths::normalize(&dir);
                    if dotdot {
                        return Err(Error::invalid(format!(
                            "files.snapshot_dir={value:?} contains a \"..\" component, which snapshot paths may not hold; set files.snapshot_dir to the path of the directory without \"..\""
                        )));
                    }
                    cfg.snapshot_dir = dir;
                }
                "files.reflink_fallback" => {
                    cfg.reflink_fallback_copy = match value.as_str() {
                        "error" => false,
                        "copy" => true,
                        _ => {
                            return Err(Error::invalid(format!(
                                "files.reflink_fallback={value:?} is not one of error, copy"
                            )));
                        }
                    }
                }
                "files.min_free_bytes" => {
                    cfg.min_free_bytes = decimal(key, value, u64::MAX, "bytes")?;
                }
                AAPI_PROP_LAST_BACKUP_TIME => {
                    cfg.last_backup_time =
                        Some(decimal(key, value, i64::MAX as u64, "seconds")? as i64);
                }
                AAPI_PROP_LAST_FULL_TIME => {
                    cfg.last_full_time =
                        Some(decimal(key, value, i64::MAX as u64, "seconds")? as i64);
                }
                k if k.starts_with("files.") => {
                    session
                        .host()
                        .warn(format!("{}: unknown property {k} ignored", crate::NAME));
                }
                _ => {}
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_snapshot_directory_is_absolute_and_per_user() {
        let d = |t: Option<&str>, uid| default_snapshot_dir(t.map(OsStr::new), uid);
        assert_eq!(d(None, 0), Path::new("/tmp/aapi-files-snapshots"));
        assert_eq!(
            d(Some("/srv/t//"), 0),
            Path::new("/srv/t/aapi-files-snapshots")
        );
        assert_eq!(
            d(Some("/srv/./t"), 1000),
            Path::new("/srv/t/aapi-files-snapshots-1000")
        );
        // Relative, empty or with "..": the path checked would not be the one used.
        for ignored in ["reltmp", "", "./t", "/srv/../t", "/srv/t/.."] {
            assert_eq!(
                d(Some(ignored), 65534),
                Path::new("/tmp/aapi-files-snapshots-65534"),
                "{ignored:?}"
            );
        }
    }

    #[test]
    fn decimals_are_digits_only() {
        assert_eq!(decimal("k", "0", u64::MAX, "b").unwrap(), 0);
        assert_eq!(
            decimal("k", "18446744073709551615", u64::MAX, "b").unwrap(),
            u64::MAX
        );
        for bad in ["", "-1", "+1", " 1", "1e3", "0x10", "18446744073709551616"] {
            assert!(decimal("k", bad, u64::MAX, "b").is_err(), "{bad:?}");
        }
        assert!(decimal("k", "9223372036854775808", i64::MAX as u64, "s").is_err());
    }
}
