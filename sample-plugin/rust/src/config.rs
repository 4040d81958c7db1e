//! The session properties this plugin reads (sample-plugin/README.md, "Configuration").

use crate::paths;
use aapi_sdk::plugin::{Error, Result, Session};
use aapi_sdk::props::{AAPI_PROP_LAST_BACKUP_TIME, AAPI_PROP_LAST_FULL_TIME};
use std::path::PathBuf;

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
    /// `files.snapshot_dir` (normalized, absolute).
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

impl Config {
    /// Read the session's properties. A bad value of a known key is `AAPI_EINVAL`; unknown
    /// `files.*` keys are logged as warnings and ignored. When a key repeats, the last one wins.
    pub fn from_session(session: &Session) -> Result<Config> {
        let tmp = std::env::var_os("TMPDIR")
            .filter(|t| !t.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let mut cfg = Config {
            snapshot: SnapshotMode::None,
            snapshot_dir: paths::normalize(&tmp.join("aapi-files-snapshots")).0,
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
                    cfg.snapshot_dir = paths::normalize(&dir).0;
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
