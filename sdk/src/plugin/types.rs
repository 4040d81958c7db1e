//! The Rust types a plugin works with in place of the raw ABI structs and integers.

use super::error::{Error, Result};
use crate::abi::*;
use core::ffi::{CStr, c_int};
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the plugin tells the framework about itself at `aapi_pgn_init` (`aapi_plugin_info_t`).
/// Checked by the export layer at init: a plugin with invalid info fails init with
/// `AAPI_EINTERNAL` and a message saying which field is wrong.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    /// Plugin name: printable ASCII, 1 to 63 bytes (e.g. `c"files-rust"`).
    pub name: &'static CStr,
    /// Plugin version: printable ASCII, 1 to 31 bytes (e.g. `c"0.1.0"`).
    pub version: &'static CStr,
    /// Vendor: UTF-8, 1 to 127 bytes.
    pub vendor: &'static CStr,
    /// Workload types the plugin claims: a comma-separated list of tokens of `[a-z0-9_.-]`, with
    /// no spaces (e.g. `c"files"`, `c"files,db"`), at most 4096 bytes (LOAD-5).
    pub workload_types: &'static CStr,
    /// `AAPI_CAP_*` bits.
    pub capabilities: u64,
    /// With `AAPI_CAP_CONCURRENT_OBJECTS`: most object calls at once (at least 2). Without it: 1.
    pub max_concurrent_objects: u32,
}

const KNOWN_CAPS: u64 =
    AAPI_CAP_CONCURRENT_OBJECTS | AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE | AAPI_CAP_SNAPSHOT;

impl PluginInfo {
    /// Whether `workload_type` is one of [`workload_types`](PluginInfo::workload_types) (exact,
    /// case-sensitive match of one comma-separated item).
    pub fn handles(&self, workload_type: &str) -> bool {
        self.workload_types
            .to_str()
            .is_ok_and(|types| types.split(',').any(|t| t == workload_type))
    }

    /// Whether the capability bit `cap` is declared.
    pub fn has(&self, cap: u64) -> bool {
        self.capabilities & cap == cap
    }

    /// Check every field against LOAD-5 and the capability rules: `name` 1 to 63 and `version`
    /// 1 to 31 bytes of printable ASCII, `vendor` 1 to 127 bytes of UTF-8, `workload_types` a
    /// non-empty comma-separated list of tokens of `[a-z0-9_.-]` (at most 4096 bytes, what a
    /// framework reads), known capability bits, and `max_concurrent_objects` as the capabilities
    /// require. The framework refuses a plugin whose info breaks these rules.
    pub fn validate(&self) -> Result<()> {
        fn text(field: &str, s: &CStr, max: usize, ascii: bool) -> Result<()> {
            let b = s.to_bytes();
            if b.is_empty() || b.len() > max {
                return Err(Error::internal(format!(
                    "plugin info: {field} must be 1 to {max} bytes, it is {} (LOAD-5)",
                    b.len()
                )));
            }
            if ascii && !b.iter().all(|c| (0x20..0x7f).contains(c)) {
                return Err(Error::internal(format!(
                    "plugin info: {field} must be printable ASCII (LOAD-5)"
                )));
            }
            if std::str::from_utf8(b).is_err() {
                return Err(Error::internal(format!(
                    "plugin info: {field} must be UTF-8 (LOAD-5)"
                )));
            }
            Ok(())
        }
        text("name", self.name, 63, true)?;
        text("version", self.version, 31, true)?;
        text("vendor", self.vendor, 127, false)?;
        text("workload_types", self.workload_types, 4096, true)?;
        let types = self.workload_types.to_str().unwrap_or_default();
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c))
        };
        if let Some(bad) = types.split(',').find(|t| !token(t)) {
            return Err(Error::internal(format!(
                "plugin info: workload_types {types:?} must be a comma-separated list of tokens \
                 of [a-z0-9_.-] (no spaces, no capitals, no empty item); {bad:?} is not one \
                 (LOAD-5)"
            )));
        }
        if self.capabilities & !KNOWN_CAPS != 0 {
            return Err(Error::internal(format!(
                "plugin info: unknown capability bits {:#x}",
                self.capabilities & !KNOWN_CAPS
            )));
        }
        let concurrent = self.has(AAPI_CAP_CONCURRENT_OBJECTS);
        if concurrent && self.max_concurrent_objects < 2 {
            return Err(Error::internal(
                "plugin info: AAPI_CAP_CONCURRENT_OBJECTS needs max_concurrent_objects >= 2",
            ));
        }
        if !concurrent && self.max_concurrent_objects != 1 {
            return Err(Error::internal(
                "plugin info: max_concurrent_objects must be 1 without AAPI_CAP_CONCURRENT_OBJECTS",
            ));
        }
        Ok(())
    }
}

/// What a session is for (`aapi_session_def_t::sd_operation`); it decides which calls are legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `AAPI_OP_DISCOVERY`: snapshot and workload files ([`Server::discovery`](super::Server::discovery)).
    Discovery,
    /// `AAPI_OP_BACKUP`: a child job streaming the objects of one workload file.
    Backup,
    /// `AAPI_OP_POSTPROCESS`: snapshot cleanup after the child jobs.
    Postprocess,
    /// `AAPI_OP_RESTORE`: a restore job.
    Restore,
}

impl Operation {
    /// The operation for an `AAPI_OP_*` value.
    pub fn from_raw(raw: u32) -> Option<Operation> {
        Some(match raw {
            AAPI_OP_DISCOVERY => Operation::Discovery,
            AAPI_OP_BACKUP => Operation::Backup,
            AAPI_OP_POSTPROCESS => Operation::Postprocess,
            AAPI_OP_RESTORE => Operation::Restore,
            _ => return None,
        })
    }

    /// The `AAPI_OP_*` value.
    pub fn raw(self) -> u32 {
        match self {
            Operation::Discovery => AAPI_OP_DISCOVERY,
            Operation::Backup => AAPI_OP_BACKUP,
            Operation::Postprocess => AAPI_OP_POSTPROCESS,
            Operation::Restore => AAPI_OP_RESTORE,
        }
    }
}

/// A backup schedule type (`AAPI_SCHED_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// `AAPI_SCHED_FULL`: everything.
    Full,
    /// `AAPI_SCHED_INCR`: what changed since the last backup of any type
    /// ([`AAPI_PROP_LAST_BACKUP_TIME`](crate::props::AAPI_PROP_LAST_BACKUP_TIME)).
    Incremental,
    /// `AAPI_SCHED_CINC`: what changed since the last full backup
    /// ([`AAPI_PROP_LAST_FULL_TIME`](crate::props::AAPI_PROP_LAST_FULL_TIME)).
    Cumulative,
}

impl Schedule {
    /// The schedule for an `AAPI_SCHED_*` value.
    pub fn from_raw(raw: u32) -> Option<Schedule> {
        Some(match raw {
            AAPI_SCHED_FULL => Schedule::Full,
            AAPI_SCHED_INCR => Schedule::Incremental,
            AAPI_SCHED_CINC => Schedule::Cumulative,
            _ => return None,
        })
    }

    /// The `AAPI_SCHED_*` value.
    pub fn raw(self) -> u32 {
        match self {
            Schedule::Full => AAPI_SCHED_FULL,
            Schedule::Incremental => AAPI_SCHED_INCR,
            Schedule::Cumulative => AAPI_SCHED_CINC,
        }
    }

    /// The session property holding the reference time of this schedule, `None` for full.
    pub fn reference_property(self) -> Option<&'static str> {
        match self {
            Schedule::Full => None,
            Schedule::Incremental => Some(crate::props::AAPI_PROP_LAST_BACKUP_TIME),
            Schedule::Cumulative => Some(crate::props::AAPI_PROP_LAST_FULL_TIME),
        }
    }
}

/// The schedules a server supports, reported by `aapi_get_server_prop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// Full backups (`AAPI_SRVC_FULL_BACKUP_SUPPORT`).
    pub full: bool,
    /// Incremental backups (`AAPI_SRVC_INCR_BACKUP_SUPPORT`).
    pub incremental: bool,
    /// Cumulative incremental backups (`AAPI_SRVC_CINC_BACKUP_SUPPORT`).
    pub cumulative: bool,
}

impl ServerInfo {
    /// Whether `schedule` is supported. The export layer answers `AAPI_ESCHED_NOT_SUPPORTED` to a
    /// discovery with a schedule this says no to, before the plugin is called.
    pub fn supports(&self, schedule: Schedule) -> bool {
        match schedule {
            Schedule::Full => self.full,
            Schedule::Incremental => self.incremental,
            Schedule::Cumulative => self.cumulative,
        }
    }

    /// The `AAPI_SRVC_*` bits.
    pub fn flags(&self) -> u64 {
        let mut f = 0;
        if self.full {
            f |= AAPI_SRVC_FULL_BACKUP_SUPPORT;
        }
        if self.incremental {
            f |= AAPI_SRVC_INCR_BACKUP_SUPPORT;
        }
        if self.cumulative {
            f |= AAPI_SRVC_CINC_BACKUP_SUPPORT;
        }
        f
    }
}

/// The type of an object (`AAPI_OBJ_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `AAPI_OBJ_FILE`: a byte stream.
    File,
    /// `AAPI_OBJ_DIR`: a directory or container, without data.
    Dir,
    /// `AAPI_OBJ_SYMLINK`: a symbolic link; its data is the link target.
    Symlink,
}

impl ObjectType {
    /// The type for an `AAPI_OBJ_*` value.
    pub fn from_raw(raw: u32) -> Option<ObjectType> {
        Some(match raw {
            AAPI_OBJ_FILE => ObjectType::File,
            AAPI_OBJ_DIR => ObjectType::Dir,
            AAPI_OBJ_SYMLINK => ObjectType::Symlink,
            _ => return None,
        })
    }

    /// The `AAPI_OBJ_*` value.
    pub fn raw(self) -> u32 {
        match self {
            ObjectType::File => AAPI_OBJ_FILE,
            ObjectType::Dir => AAPI_OBJ_DIR,
            ObjectType::Symlink => AAPI_OBJ_SYMLINK,
        }
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch (`aapi_time_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before it).
    pub sec: i64,
    /// Nanoseconds, 0 to 999,999,999.
    pub nsec: u32,
}

impl Timestamp {
    /// A timestamp; `nsec` must be below one billion.
    pub const fn new(sec: i64, nsec: u32) -> Timestamp {
        Timestamp { sec, nsec }
    }

    /// The timestamp of a [`SystemTime`] (before the epoch too).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::new(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Timestamp::new(-(d.as_secs() as i64), 0)
                } else {
                    Timestamp::new(-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        }
    }

    /// The [`SystemTime`] of this timestamp.
    pub fn to_system_time(self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nsec));
        if self.sec >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.sec as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.sec.unsigned_abs()) + nanos
        }
    }

    /// The ABI struct.
    pub fn to_raw(self) -> aapi_time_t {
        aapi_time_t {
            sec: self.sec,
            nsec: self.nsec,
            reserved: 0,
        }
    }

    /// The timestamp of an ABI struct; `AAPI_EINVAL` when `nsec` is out of range.
    pub fn from_raw(raw: &aapi_time_t) -> Result<Timestamp> {
        if raw.nsec >= 1_000_000_000 {
            return Err(Error::invalid(format!(
                "time has {} nanoseconds (at most 999999999)",
                raw.nsec
            )));
        }
        Ok(Timestamp::new(raw.sec, raw.nsec))
    }
}

/// Owner of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Properties of an object (`aapi_object_prop_t`); a field that is `None` is reported as not
/// valid, so the `valid` bits can never disagree with the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectProps {
    /// The object type.
    pub kind: ObjectType,
    /// Data size in bytes (link target length for symlinks, 0 for directories).
    pub size: Option<u64>,
    /// Permission bits; only `0o7777` is reported, other bits are masked off.
    pub mode: Option<u32>,
    /// Owner.
    pub owner: Option<Owner>,
    /// Last access time.
    pub atime: Option<Timestamp>,
    /// Last modification time.
    pub mtime: Option<Timestamp>,
    /// Last status change time (informational; not restorable).
    pub ctime: Option<Timestamp>,
}

impl ObjectProps {
    /// Properties with only the type known.
    pub fn new(kind: ObjectType) -> ObjectProps {
        ObjectProps {
            kind,
            size: None,
            mode: None,
            owner: None,
            atime: None,
            mtime: None,
            ctime: None,
        }
    }

    /// Every property of a file, directory or symlink from its `lstat` metadata (for a symlink,
    /// the size is the target length). Other file types give `AAPI_ENOTSUP`.
    pub fn from_metadata(md: &Metadata) -> Result<ObjectProps> {
        let ft = md.file_type();
        let (kind, size) = if ft.is_file() {
            (ObjectType::File, md.len())
        } else if ft.is_dir() {
            (ObjectType::Dir, 0)
        } else if ft.is_symlink() {
            (ObjectType::Symlink, md.len())
        } else {
            let what = if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            return Err(Error::not_supported(format!(
                "{what} is not a file, directory or symlink"
            )));
        };
        let time = |sec: i64, nsec: i64| Timestamp::new(sec, nsec.clamp(0, 999_999_999) as u32);
        Ok(ObjectProps {
            kind,
            size: Some(size),
            mode: Some(md.mode() & 0o7777),
            owner: Some(Owner {
                uid: md.uid(),
                gid: md.gid(),
            }),
            atime: Some(time(md.atime(), md.atime_nsec())),
            mtime: Some(time(md.mtime(), md.mtime_nsec())),
            ctime: Some(time(md.ctime(), md.ctime_nsec())),
        })
    }

    /// The ABI struct, with `struct_size` as given (the caller's).
    pub fn to_raw(&self, struct_size: u32) -> aapi_object_prop_t {
        let mut valid = 0;
        let mut bit = |present: bool, b: u32| {
            if present {
                valid |= b;
            }
        };
        bit(self.size.is_some(), AAPI_PROP_SIZE);
        bit(self.mode.is_some(), AAPI_PROP_MODE);
        bit(self.owner.is_some(), AAPI_PROP_OWNER);
        bit(self.atime.is_some(), AAPI_PROP_ATIME);
        bit(self.mtime.is_some(), AAPI_PROP_MTIME);
        bit(self.ctime.is_some(), AAPI_PROP_CTIME);
        let t = |t: Option<Timestamp>| t.map(Timestamp::to_raw).unwrap_or_default();
        aapi_object_prop_t {
            struct_size,
            obj_type: self.kind.raw(),
            valid,
            mode: self.mode.unwrap_or(0) & 0o7777,
            size: self.size.unwrap_or(0),
            uid: self.owner.map_or(0, |o| o.uid),
            gid: self.owner.map_or(0, |o| o.gid),
            atime: t(self.atime),
            mtime: t(self.mtime),
            ctime: t(self.ctime),
        }
    }

    /// Properties from the ABI struct: `AAPI_EINVAL` for an unknown type, a mode above `0o7777`
    /// or nanoseconds out of range. `valid` bits this ABI does not know are ignored.
    pub fn from_raw(raw: &aapi_object_prop_t) -> Result<ObjectProps> {
        let kind = ObjectType::from_raw(raw.obj_type)
            .ok_or_else(|| Error::invalid(format!("unknown object type {}", raw.obj_type)))?;
        let has = |b: u32| raw.valid & b != 0;
        if has(AAPI_PROP_MODE) && raw.mode > 0o7777 {
            return Err(Error::invalid(format!(
                "mode {:#o} has bits outside 07777",
                raw.mode
            )));
        }
        let time = |b: u32, t: &aapi_time_t| -> Result<Option<Timestamp>> {
            if has(b) {
                Timestamp::from_raw(t).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(ObjectProps {
            kind,
            size: has(AAPI_PROP_SIZE).then_some(raw.size),
            mode: has(AAPI_PROP_MODE).then_some(raw.mode),
            owner: has(AAPI_PROP_OWNER).then_some(Owner {
                uid: raw.uid,
                gid: raw.gid,
            }),
            atime: time(AAPI_PROP_ATIME, &raw.atime)?,
            mtime: time(AAPI_PROP_MTIME, &raw.mtime)?,
            ctime: time(AAPI_PROP_CTIME, &raw.ctime)?,
        })
    }
}

/// The parameters of `aapi_discovery` and `aapi_postprocess`, checked and converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    /// The selections (at least one, none empty), as given by the framework.
    pub selections: Vec<PathBuf>,
    /// The backup hosts (at least one, none empty, no duplicates, no `/`).
    pub backup_hosts: Vec<String>,
    /// Where workload files go (`wkldoutdir`); an existing directory.
    pub workload_dir: PathBuf,
    /// Suffix of every workload file name (`wkldfilesuffix`).
    pub workload_suffix: String,
    /// The schedule of the backup.
    pub schedule: Schedule,
}

impl BackupJob {
    /// The workload file of `backup_host`: `<workload_dir>/<backup_host><workload_suffix>`.
    pub fn workload_file(&self, backup_host: &str) -> PathBuf {
        crate::workload::file_name(&self.workload_dir, backup_host, &self.workload_suffix)
    }
}

/// The parameters of `aapi_restore_preprocess`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// Alternate root prefixed to every path of this restore; `None` for the original location.
    pub target_root: Option<PathBuf>,
    /// Total data bytes the restore will write.
    pub total_bytes: u64,
    /// Number of objects the restore will create.
    pub object_count: u64,
}

impl RestoreInfo {
    /// The directory whose file system receives the restore: the target root, or `/`.
    pub fn target_dir(&self) -> &Path {
        self.target_root.as_deref().unwrap_or(Path::new("/"))
    }
}

/// How the restore ended, as told to `aapi_restore_postprocess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStatus {
    /// Every object was restored: keep them and drop what was set aside.
    Success,
    /// The restore failed with this code: remove what this restore created, put back what it
    /// replaced.
    Failed(c_int),
}

impl RestoreStatus {
    /// The status for a code passed by the framework (`AAPI_EOK` is success).
    pub fn from_code(code: c_int) -> RestoreStatus {
        if code == AAPI_EOK {
            RestoreStatus::Success
        } else {
            RestoreStatus::Failed(code)
        }
    }

    /// Whether the restore succeeded.
    pub fn is_success(self) -> bool {
        self == RestoreStatus::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_around_the_epoch() {
        for (sec, nsec) in [
            (0, 0),
            (1, 5),
            (-1, 0),
            (-1, 999_999_999),
            (-2, 1),
            (1 << 40, 7),
        ] {
            let t = Timestamp::new(sec, nsec);
            assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        }
        assert!(
            Timestamp::from_raw(&aapi_time_t {
                sec: 0,
                nsec: 1_000_000_000,
                reserved: 0
            })
            .is_err()
        );
    }

    #[test]
    fn props_round_trip_and_valid_bits_follow_options() {
        let mut p = ObjectProps::new(ObjectType::Symlink);
        p.size = Some(12);
        p.mtime = Some(Timestamp::new(5, 6));
        let raw = p.to_raw(99);
        assert_eq!(raw.struct_size, 99);
        assert_eq!(raw.valid, AAPI_PROP_SIZE | AAPI_PROP_MTIME);
        assert_eq!(ObjectProps::from_raw(&raw).unwrap(), p);
        let mut bad = raw;
        bad.obj_type = 9;
        assert!(ObjectProps::from_raw(&bad).is_err());
        let mut bad = raw;
        bad.valid |= AAPI_PROP_MODE;
        bad.mode = 0o10000;
        assert!(ObjectProps::from_raw(&bad).is_err());
    }

    #[test]
    fn plugin_info_is_checked() {
        let good = PluginInfo {
            name: c"p",
            version: c"1",
            vendor: c"v",
            workload_types: c"files,db",
            capabilities: AAPI_CAP_CONCURRENT_OBJECTS,
            max_concurrent_objects: 4,
        };
        good.validate().unwrap();
        assert!(good.handles("files") && good.handles("db") && !good.handles("Files"));
        assert!(!good.handles(" db") && !good.handles("files,db") && !good.handles(""));
        for types in [c"a", c"hadoop.hdfs", c"my_db-2,files", c"0.9"] {
            let ok = PluginInfo {
                workload_types: types,
                ..good
            };
            ok.validate()
                .unwrap_or_else(|e| panic!("{types:?} is a LOAD-5 list: {e}"));
        }
        // LOAD-5: tokens of [a-z0-9_.-] only; the framework refuses anything else.
        for types in [
            c"files, db",
            c"files ,db",
            c" files",
            c"Files",
            c"flat files",
            c"files,",
            c",files",
            c"a,,b",
            c"files\tdb",
            c"files;db",
            c"caf\xc3\xa9",
        ] {
            let bad = PluginInfo {
                workload_types: types,
                ..good
            };
            let e = bad
                .validate()
                .expect_err(&format!("{types:?} is not a LOAD-5 list"));
            assert!(e.to_string().contains("LOAD-5"), "{e}");
        }
        // At most 4096 bytes, what a framework reads.
        let at = |len: usize| PluginInfo {
            workload_types: Box::leak(
                std::ffi::CString::new("a".repeat(len))
                    .unwrap()
                    .into_boxed_c_str(),
            ),
            ..good
        };
        at(4096).validate().unwrap();
        assert!(at(4097).validate().is_err());
        let bad = [
            PluginInfo { name: c"", ..good },
            PluginInfo {
                version: c"1\t",
                ..good
            },
            PluginInfo {
                workload_types: c"a,,b",
                ..good
            },
            PluginInfo {
                capabilities: 1 << 40,
                ..good
            },
            PluginInfo {
                max_concurrent_objects: 1,
                ..good
            },
            PluginInfo {
                capabilities: 0,
                ..good
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }
}
