//! The C ABI, version 1: every type, constant and entry point a plugin and a framework share.
//!
//! This module is the single source of `include/aapi.h`: the header is generated from it by the
//! pinned cbindgen and committed. Names follow C conventions on purpose, so that the Rust and the C
//! spelling of every item are identical. Nothing here allocates, and no item moves memory ownership
//! across the boundary. docs/contract.md gives the rules (with clause IDs) these items carry.
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_void};

// ---------------------------------------------------------------------------------------------
// Versions and limits
// ---------------------------------------------------------------------------------------------

/// Major version of the ABI. A framework loads a plugin only when the plugin's major equals its own.
pub const AAPI_ABI_MAJOR: u16 = 1;

/// Minor version of the ABI. A framework loads a plugin whose minor is not newer than its own; minors
/// only append fields to structs (guarded by `struct_size`) and add new optional features.
pub const AAPI_ABI_MINOR: u16 = 0;

/// Default per-call budget in milliseconds (the framework's "client read timeout"): an entry point
/// returns within this time, or sends a keepalive at least this often (TIME-1).
pub const AAPI_DEFAULT_CALL_BUDGET_MS: u32 = 300_000;

/// Upper bound, in milliseconds, for returning after a keepalive answered `AAPI_ECANCELLED`, when
/// the call budget is larger (TIME-4): the plugin returns within the smaller of the two.
pub const AAPI_CANCEL_BOUND_MS: u32 = 5_000;

/// Size in bytes of `aapi_snapid_t::id`, terminating NUL included.
pub const AAPI_SNAPID_MAX: usize = 256;

// ---------------------------------------------------------------------------------------------
// Return codes. Numbers are fixed and never reused; aapi_strerror() names each one.
// ---------------------------------------------------------------------------------------------

/// Success.
pub const AAPI_EOK: c_int = 0;
/// Invalid argument: a NULL pointer, an empty string, an unknown flag or an out-of-range value.
pub const AAPI_EINVAL: c_int = 1;
/// The handle is not valid: 0, already closed, never issued, or of the wrong kind.
pub const AAPI_EBADHANDLE: c_int = 2;
/// The call is not legal in the current state (call order, operation or object mode).
pub const AAPI_ESEQUENCE: c_int = 3;
/// The caller's buffer is too small; the size needed was written to the size out-parameter.
pub const AAPI_EBUFSIZE: c_int = 4;
/// The object or path does not exist (or vanished since discovery).
pub const AAPI_ENOENT: c_int = 5;
/// The object already exists and the call was not allowed to replace it.
pub const AAPI_EEXIST: c_int = 6;
/// Permission denied.
pub const AAPI_EACCES: c_int = 7;
/// Not enough space at the target.
pub const AAPI_ENOSPC: c_int = 8;
/// Input/output error while reading or writing the workload.
pub const AAPI_EIO: c_int = 9;
/// The object changed after discovery; its bytes would not be a consistent copy.
pub const AAPI_ECHANGED: c_int = 10;
/// The job was cancelled: the keepalive callback answered `AAPI_ECANCELLED`.
pub const AAPI_ECANCELLED: c_int = 11;
/// The schedule type is not supported by this plugin for this server.
pub const AAPI_ESCHED_NOT_SUPPORTED: c_int = 12;
/// The operation is not supported by this plugin.
pub const AAPI_ENOTSUP: c_int = 13;
/// Incompatible ABI version or struct size.
pub const AAPI_EABI: c_int = 14;
/// The plugin does not handle this workload type.
pub const AAPI_ENOTCLAIMED: c_int = 15;
/// Authentication failed, or a credential the plugin needs is missing.
pub const AAPI_EAUTH: c_int = 16;
/// The workload server cannot be reached.
pub const AAPI_ECONNECT: c_int = 17;
/// Out of memory.
pub const AAPI_ENOMEM: c_int = 18;
/// Internal plugin error: a bug, a Rust panic or a C++ exception caught at the boundary.
pub const AAPI_EINTERNAL: c_int = 19;
/// A workload file is missing, corrupt, truncated or of an unknown format version.
pub const AAPI_EWORKLOAD: c_int = 20;
/// A snapshot could not be created, found or deleted.
pub const AAPI_ESNAPSHOT: c_int = 21;

// ---------------------------------------------------------------------------------------------
// Flags and enumerations (plain integers, so unknown values stay representable)
// ---------------------------------------------------------------------------------------------

/// Plugin capability: object calls on different object handles of one server may run concurrently
/// (up to `aapi_plugin_info_t::max_concurrent_objects`). Without it the framework serialises them.
pub const AAPI_CAP_CONCURRENT_OBJECTS: u64 = 1 << 0;
/// Plugin capability: restore is implemented (create, write, flush, close, utimes, pre/postprocess).
pub const AAPI_CAP_RESTORE: u64 = 1 << 1;
/// Plugin capability: restore under an alternate root is supported.
pub const AAPI_CAP_ALTERNATE_RESTORE: u64 = 1 << 2;
/// Plugin capability: discovery can take a snapshot and postprocess deletes it.
pub const AAPI_CAP_SNAPSHOT: u64 = 1 << 3;

/// Server property flag: full backups are supported.
pub const AAPI_SRVC_FULL_BACKUP_SUPPORT: u64 = 1 << 0;
/// Server property flag: incremental backups (changes since the last backup of any type).
pub const AAPI_SRVC_INCR_BACKUP_SUPPORT: u64 = 1 << 1;
/// Server property flag: cumulative incremental backups (changes since the last full backup).
pub const AAPI_SRVC_CINC_BACKUP_SUPPORT: u64 = 1 << 2;

/// Schedule type: full backup.
pub const AAPI_SCHED_FULL: u32 = 1;
/// Schedule type: incremental backup, relative to `AAPI_PROP_LAST_BACKUP_TIME`.
pub const AAPI_SCHED_INCR: u32 = 2;
/// Schedule type: cumulative incremental backup, relative to `AAPI_PROP_LAST_FULL_TIME`.
pub const AAPI_SCHED_CINC: u32 = 3;

/// Session operation: discovery job (snapshot and workload files).
pub const AAPI_OP_DISCOVERY: u32 = 1;
/// Session operation: backup child job (stream the objects of one workload file).
pub const AAPI_OP_BACKUP: u32 = 2;
/// Session operation: postprocess job (snapshot cleanup after all child jobs).
pub const AAPI_OP_POSTPROCESS: u32 = 3;
/// Session operation: restore job.
pub const AAPI_OP_RESTORE: u32 = 4;

/// Log level: an error the job reports.
pub const AAPI_LOG_ERROR: u32 = 1;
/// Log level: something unexpected that did not fail the call.
pub const AAPI_LOG_WARNING: u32 = 2;
/// Log level: progress and decisions.
pub const AAPI_LOG_INFO: u32 = 3;
/// Log level: details for troubleshooting.
pub const AAPI_LOG_DEBUG: u32 = 4;

/// Object type: a byte stream (a regular file, or any workload item read as bytes).
pub const AAPI_OBJ_FILE: u32 = 1;
/// Object type: a directory or container; it has no data (reads return end of data at once).
pub const AAPI_OBJ_DIR: u32 = 2;
/// Object type: a symbolic link; its data is the link target.
pub const AAPI_OBJ_SYMLINK: u32 = 3;

/// `aapi_object_prop_t::valid` bit: `size` is meaningful.
pub const AAPI_PROP_SIZE: u32 = 1 << 0;
/// `aapi_object_prop_t::valid` bit: `mode` is meaningful.
pub const AAPI_PROP_MODE: u32 = 1 << 1;
/// `aapi_object_prop_t::valid` bit: `uid` and `gid` are meaningful.
pub const AAPI_PROP_OWNER: u32 = 1 << 2;
/// `aapi_object_prop_t::valid` bit: `atime` is meaningful.
pub const AAPI_PROP_ATIME: u32 = 1 << 3;
/// `aapi_object_prop_t::valid` bit: `mtime` is meaningful.
pub const AAPI_PROP_MTIME: u32 = 1 << 4;
/// `aapi_object_prop_t::valid` bit: `ctime` is meaningful.
pub const AAPI_PROP_CTIME: u32 = 1 << 5;

/// `aapi_open_object` flag: open for reading (the only mode of ABI 1.0; it must be given).
pub const AAPI_OPEN_READ: u32 = 1 << 0;

/// `aapi_create_object` flag: replace an existing object. Without it an existing object gives
/// `AAPI_EEXIST`. A plugin replaces the old object only once the new one is complete (at close).
pub const AAPI_CREATE_OVERWRITE: u32 = 1 << 0;

/// Workload file record flag: the object is a directory.
pub const AAPI_WKLD_DIR: u32 = 1 << 0;
/// Workload file record flag: the object is a symbolic link.
pub const AAPI_WKLD_SYMLINK: u32 = 1 << 1;
/// Workload file record flag: the object did not change since the time the incremental backup is
/// relative to. The child job records it without reading its data (the data is in the base image);
/// listing unchanged objects lets a restore of the incremental know exactly which objects existed.
pub const AAPI_WKLD_UNCHANGED: u32 = 1 << 2;
/// Format version written in every workload file by this ABI (docs/workload-file.md).
pub const AAPI_WKLD_FORMAT_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Scalar types
// ---------------------------------------------------------------------------------------------

/// Handle of an open server session, issued by `aapi_open_server`. 0 is never a valid handle.
/// A plugin rejects a handle it did not issue, a closed one, or an object handle with
/// `AAPI_EBADHANDLE`.
pub type aapi_server_t = u64;

/// Handle of an open object, issued by `aapi_open_object` or `aapi_create_object`. 0 is never a
/// valid handle. Object handles die with `aapi_close_object` or with their server's close.
pub type aapi_object_t = u64;

// ---------------------------------------------------------------------------------------------
// Callbacks (host services reach the plugin only through these)
// ---------------------------------------------------------------------------------------------

/// Log callback: `ctx` is the context pointer of the struct that carried the callback, `level` is
/// an `AAPI_LOG_*` value and `message` a NUL-terminated UTF-8 line owned by the caller (the host
/// copies it before returning). Callable from any thread while an entry point is running.
pub type aapi_log_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: *const c_char)>;

/// Keepalive callback (`sd_keepalive_callback`): tells the framework that a long call is alive.
/// Returns `AAPI_EOK` to go on, or `AAPI_ECANCELLED` when the job is cancelled: the plugin then
/// stops its work and returns `AAPI_ECANCELLED` within the cancellation bound (TIME-4).
pub type aapi_keepalive_fn = Option<unsafe extern "C" fn(ctx: *mut c_void) -> c_int>;

/// Credential callback: copies the secret stored under the NUL-terminated `key` into the caller's
/// `buf`. On entry `*buf_size` is the capacity of `buf`; on `AAPI_EOK` it is the number of bytes
/// written including the terminating NUL; on `AAPI_EBUFSIZE` it is the size needed and `buf` is
/// untouched. Returns `AAPI_ENOENT` when no secret has that key. The plugin wipes `buf` after use
/// and never stores the secret in a struct the framework can see.
pub type aapi_credential_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        key: *const c_char,
        buf: *mut c_char,
        buf_size: *mut usize,
    ) -> c_int,
>;

// ---------------------------------------------------------------------------------------------
// Structs. Each starts with struct_size; fields are only ever appended.
// ---------------------------------------------------------------------------------------------

/// Static ABI marker a plugin exports as the data symbol `aapi_abi_marker` (C: one
/// `AAPI_DEFINE_ABI_MARKER();` line; Rust: emitted by the SDK's export macro). Tools read it from
/// the ELF file without running any plugin code.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct aapi_abi_marker_t {
    /// `AAPI_ABI_MAGIC`: the eight bytes "AAPIABI" followed by a NUL.
    pub magic: [c_char; 8],
    /// `AAPI_ABI_MAJOR` the plugin was built against.
    pub abi_major: u16,
    /// `AAPI_ABI_MINOR` the plugin was built against.
    pub abi_minor: u16,
    /// `sizeof(aapi_abi_marker_t)` as the plugin saw it (16 for ABI 1).
    pub marker_size: u32,
}

/// Handshake, framework side: given to `aapi_pgn_init`. Owned by the framework; valid only during
/// the call (copy what you keep; the strings live for the whole process).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_host_info_t {
    /// `sizeof(aapi_host_info_t)` as the framework knows it.
    pub struct_size: u32,
    /// The framework's `AAPI_ABI_MAJOR`. A plugin with another major returns `AAPI_EABI`.
    pub abi_major: u16,
    /// The framework's `AAPI_ABI_MINOR`.
    pub abi_minor: u16,
    /// Framework name, NUL-terminated UTF-8; valid for the life of the process.
    pub framework_name: *const c_char,
    /// Framework version, NUL-terminated UTF-8; valid for the life of the process.
    pub framework_version: *const c_char,
    /// Context passed back as the first argument of `log_callback`.
    pub callback_ctx: *mut c_void,
    /// Log callback usable during `aapi_pgn_init`, `aapi_pgn_claim` and `aapi_terminate`; never NULL.
    pub log_callback: aapi_log_fn,
}

/// Handshake, plugin side: filled by `aapi_pgn_init` on success only. The framework allocates it,
/// zeroes it and sets `struct_size`; the plugin writes its fields without exceeding `struct_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_plugin_info_t {
    /// Set by the framework: the size of the struct it allocated. The plugin returns `AAPI_EABI` when
    /// it is smaller than the ABI 1.0 size.
    pub struct_size: u32,
    /// The plugin's `AAPI_ABI_MAJOR`.
    pub abi_major: u16,
    /// The plugin's `AAPI_ABI_MINOR`.
    pub abi_minor: u16,
    /// Plugin name: NUL-terminated printable ASCII, 1 to 63 bytes, static storage in the plugin.
    pub name: *const c_char,
    /// Plugin version (e.g. "1.4.2"): NUL-terminated printable ASCII, 1 to 31 bytes, static.
    pub version: *const c_char,
    /// Vendor: NUL-terminated UTF-8, 1 to 127 bytes, static storage in the plugin.
    pub vendor: *const c_char,
    /// Workload types the plugin claims, comma-separated (e.g. "files"), static storage.
    pub workload_types: *const c_char,
    /// `AAPI_CAP_*` bits.
    pub capabilities: u64,
    /// Most object calls the plugin accepts at once in one process when it declares
    /// `AAPI_CAP_CONCURRENT_OBJECTS` (at least 2); 1 otherwise.
    pub max_concurrent_objects: u32,
    /// Zero.
    pub reserved: u32,
}

/// One session property: a key and a value, both NUL-terminated UTF-8 owned by the framework.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_property_t {
    /// Property key (e.g. `AAPI_PROP_LAST_BACKUP_TIME`, or a plugin-defined key).
    pub key: *const c_char,
    /// Property value.
    pub value: *const c_char,
}

/// Session definition given to `aapi_open_server`. The framework owns it and everything it points
/// to; all of it stays valid and unchanged until `aapi_close_server` of that server returns, so a
/// plugin may keep the pointer. Callbacks are never NULL and are callable from any thread while an
/// entry point of this server is running.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_session_def_t {
    /// `sizeof(aapi_session_def_t)` as the framework knows it.
    pub struct_size: u32,
    /// The framework's `AAPI_ABI_MAJOR`.
    pub abi_major: u16,
    /// The framework's `AAPI_ABI_MINOR`.
    pub abi_minor: u16,
    /// `AAPI_OP_*`: what this session is for; it decides which calls are legal (LIFE clauses).
    pub sd_operation: u32,
    /// `AAPI_SCHED_*` of the backup this session belongs to (`AAPI_SCHED_FULL` for restores).
    pub sd_schedtype: u32,
    /// Job identifier, NUL-terminated, unique per job.
    pub sd_job_id: *const c_char,
    /// Name of the backup host this session runs on, NUL-terminated.
    pub sd_backup_host: *const c_char,
    /// Snapshot id from discovery for backup and postprocess sessions; "" otherwise. Never NULL.
    pub sd_snapid: *const c_char,
    /// Array of `sd_property_count` properties (NULL when the count is 0).
    pub sd_properties: *const aapi_property_t,
    /// Number of entries in `sd_properties`.
    pub sd_property_count: usize,
    /// Per-call budget in milliseconds (`AAPI_DEFAULT_CALL_BUDGET_MS` unless configured).
    pub sd_call_budget_ms: u32,
    /// Zero.
    pub sd_reserved: u32,
    /// Context passed back as the first argument of every callback below.
    pub sd_callback_ctx: *mut c_void,
    /// Log through the framework (plugins do not write their own log files).
    pub sd_log_callback: aapi_log_fn,
    /// Keepalive for long calls; a non-OK answer means the job is cancelled.
    pub sd_keepalive_callback: aapi_keepalive_fn,
    /// Fetch a secret by key into a caller buffer.
    pub sd_credential_callback: aapi_credential_fn,
}

/// Server properties, filled by `aapi_get_server_prop` on success only.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct aapi_server_info_t {
    /// Set by the caller: `sizeof(aapi_server_info_t)` as it knows it.
    pub struct_size: u32,
    /// Zero.
    pub reserved: u32,
    /// `AAPI_SRVC_*` bits: the schedules this server supports.
    pub srv_flags: u64,
}

/// Snapshot identifier: written by `aapi_discovery` (empty string when no snapshot was taken), read
/// by `aapi_postprocess`. A NUL-terminated string inside a caller-owned fixed buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_snapid_t {
    /// NUL-terminated snapshot id, at most `AAPI_SNAPID_MAX - 1` bytes.
    pub id: [c_char; AAPI_SNAPID_MAX],
}

/// A point in time: seconds and nanoseconds since the Unix epoch (UTC).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct aapi_time_t {
    /// Seconds since 1970-01-01T00:00:00Z (negative before it).
    pub sec: i64,
    /// Nanoseconds, 0 to 999,999,999.
    pub nsec: u32,
    /// Zero.
    pub reserved: u32,
}

/// Properties of an object. Filled by `aapi_get_object_prop(_byname)` on success only; given to
/// `aapi_create_object`. The caller sets `struct_size`; `valid` says which fields carry values.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct aapi_object_prop_t {
    /// Set by the caller: `sizeof(aapi_object_prop_t)` as it knows it.
    pub struct_size: u32,
    /// `AAPI_OBJ_*` type.
    pub obj_type: u32,
    /// `AAPI_PROP_*` bits naming the meaningful fields below.
    pub valid: u32,
    /// Permission bits (07777).
    pub mode: u32,
    /// Data size in bytes: what reading the object to its end yields (link target length for
    /// symlinks, 0 for directories).
    pub size: u64,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Last access time.
    pub atime: aapi_time_t,
    /// Last modification time.
    pub mtime: aapi_time_t,
    /// Last status change time (informational; not restorable).
    pub ctime: aapi_time_t,
}

/// What a restore is about to do, given to `aapi_restore_preprocess`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aapi_restore_info_t {
    /// `sizeof(aapi_restore_info_t)` as the framework knows it.
    pub struct_size: u32,
    /// Zero.
    pub reserved: u32,
    /// Alternate root already prefixed to every path of this restore, or "" for the original
    /// location. Never NULL. The plugin checks that it exists.
    pub target_root: *const c_char,
    /// Total data bytes the restore will write; the plugin answers `AAPI_ENOSPC` when the target
    /// cannot hold them, before anything is written.
    pub total_bytes: u64,
    /// Number of objects the restore will create.
    pub object_count: u64,
}

// ---------------------------------------------------------------------------------------------
// Entry points. A plugin defines all of them; a framework resolves all of them by name.
// ---------------------------------------------------------------------------------------------

/// Type of `aapi_pgn_init`.
pub type aapi_pgn_init_fn = unsafe extern "C" fn(
    host_info: *const aapi_host_info_t,
    plugin_info: *mut aapi_plugin_info_t,
) -> c_int;
/// Type of `aapi_pgn_claim`.
pub type aapi_pgn_claim_fn = unsafe extern "C" fn(workload_type: *const c_char) -> c_int;
/// Type of `aapi_open_server`.
pub type aapi_open_server_fn = unsafe extern "C" fn(
    server: *const c_char,
    session: *const aapi_session_def_t,
    server_handle: *mut aapi_server_t,
) -> c_int;
/// Type of `aapi_close_server`.
pub type aapi_close_server_fn = unsafe extern "C" fn(server: aapi_server_t) -> c_int;
/// Type of `aapi_get_server_prop`.
pub type aapi_get_server_prop_fn =
    unsafe extern "C" fn(server: aapi_server_t, server_info: *mut aapi_server_info_t) -> c_int;
/// Type of `aapi_discovery`.
pub type aapi_discovery_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    selections: *const *const c_char,
    backuphosts: *const *const c_char,
    wkldoutdir: *const c_char,
    wkldfilesuffix: *const c_char,
    schedtype: u32,
    snapid: *mut aapi_snapid_t,
) -> c_int;
/// Type of `aapi_postprocess`.
pub type aapi_postprocess_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    selections: *const *const c_char,
    backuphosts: *const *const c_char,
    wkldoutdir: *const c_char,
    wkldfilesuffix: *const c_char,
    schedtype: u32,
    snapid: *const aapi_snapid_t,
) -> c_int;
/// Type of `aapi_get_snappath_from_realpath`.
pub type aapi_get_snappath_from_realpath_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    snapname: *const c_char,
    realpath: *const c_char,
    snappath: *mut c_char,
    snappath_size: *mut usize,
) -> c_int;
/// Type of `aapi_open_object`.
pub type aapi_open_object_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    path: *const c_char,
    flags: u32,
    object: *mut aapi_object_t,
) -> c_int;
/// Type of `aapi_create_object`.
pub type aapi_create_object_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    path: *const c_char,
    prop: *const aapi_object_prop_t,
    flags: u32,
    object: *mut aapi_object_t,
) -> c_int;
/// Type of `aapi_delete_object`.
pub type aapi_delete_object_fn =
    unsafe extern "C" fn(server: aapi_server_t, path: *const c_char) -> c_int;
/// Type of `aapi_read_object`.
pub type aapi_read_object_fn = unsafe extern "C" fn(
    object: aapi_object_t,
    buf: *mut c_void,
    buf_size: usize,
    bytes_read: *mut usize,
) -> c_int;
/// Type of `aapi_write_object`.
pub type aapi_write_object_fn =
    unsafe extern "C" fn(object: aapi_object_t, buf: *const c_void, len: usize) -> c_int;
/// Type of `aapi_flush`.
pub type aapi_flush_fn = unsafe extern "C" fn(object: aapi_object_t) -> c_int;
/// Type of `aapi_close_object`.
pub type aapi_close_object_fn = unsafe extern "C" fn(object: aapi_object_t) -> c_int;
/// Type of `aapi_get_object_prop`.
pub type aapi_get_object_prop_fn =
    unsafe extern "C" fn(object: aapi_object_t, prop: *mut aapi_object_prop_t) -> c_int;
/// Type of `aapi_get_object_prop_byname`.
pub type aapi_get_object_prop_byname_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    path: *const c_char,
    prop: *mut aapi_object_prop_t,
) -> c_int;
/// Type of `aapi_set_object_utimes`.
pub type aapi_set_object_utimes_fn = unsafe extern "C" fn(
    server: aapi_server_t,
    path: *const c_char,
    atime: *const aapi_time_t,
    mtime: *const aapi_time_t,
) -> c_int;
/// Type of `aapi_restore_preprocess`.
pub type aapi_restore_preprocess_fn =
    unsafe extern "C" fn(server: aapi_server_t, restore_info: *const aapi_restore_info_t) -> c_int;
/// Type of `aapi_restore_postprocess`.
pub type aapi_restore_postprocess_fn =
    unsafe extern "C" fn(server: aapi_server_t, status: c_int) -> c_int;
/// Type of `aapi_terminate`.
pub type aapi_terminate_fn = unsafe extern "C" fn() -> c_int;
/// Type of `aapi_get_last_error`.
pub type aapi_get_last_error_fn =
    unsafe extern "C" fn(buf: *mut c_char, buf_size: *mut usize) -> c_int;

// The prototypes below are what a plugin defines. They are declared here only so that the
// generated header carries them (with their documentation); Rust code never calls them by symbol.
unsafe extern "C" {
    /// Initialise the plugin (phase: init, once per operation, before anything else).
    ///
    /// `host_info` (in, framework-owned, valid during the call) is checked first: a plugin returns
    /// `AAPI_EABI` when `host_info->abi_major` differs from its own or `struct_size` is too small.
    /// `plugin_info` (out, framework-owned) is filled on success only.
    /// Calling it again after `aapi_terminate` starts a new cycle; calling it twice without
    /// `aapi_terminate` gives `AAPI_ESEQUENCE`.
    /// Returns: `AAPI_EOK`, `AAPI_EINVAL` (NULL argument), `AAPI_EABI`, `AAPI_ESEQUENCE`,
    /// `AAPI_ENOMEM`, `AAPI_EINTERNAL`. Never concurrent with any other call.
    pub fn aapi_pgn_init(
        host_info: *const aapi_host_info_t,
        plugin_info: *mut aapi_plugin_info_t,
    ) -> c_int;

    /// Say whether the plugin handles `workload_type` (phase: claim, after init, any number of times).
    ///
    /// Returns `AAPI_EOK` when it does, `AAPI_ENOTCLAIMED` when it does not, `AAPI_EINVAL` for NULL
    /// or "", `AAPI_ESEQUENCE` before init. Has no side effects. Never concurrent with another call.
    pub fn aapi_pgn_claim(workload_type: *const c_char) -> c_int;

    /// Open a session with the workload `server` for the operation in `session->sd_operation`.
    ///
    /// `server` and `session` are framework-owned; `session` and all it points to stay valid until
    /// `aapi_close_server` of the new handle returns. `*server_handle` (out) is written on success
    /// only, with a non-zero handle. Legal after a successful claim; several servers may be open at
    /// once. Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EABI` (session struct too small or other
    /// major), `AAPI_ESEQUENCE` (before init/claim), `AAPI_ECONNECT`, `AAPI_EAUTH`, `AAPI_ENOMEM`,
    /// `AAPI_ECANCELLED`, `AAPI_EINTERNAL`. Never concurrent with another call.
    pub fn aapi_open_server(
        server: *const c_char,
        session: *const aapi_session_def_t,
        server_handle: *mut aapi_server_t,
    ) -> c_int;

    /// Close a server session, closing (and invalidating) every object handle still open on it.
    ///
    /// A second close of the same handle gives `AAPI_EBADHANDLE` and changes nothing. Returns:
    /// `AAPI_EOK`, `AAPI_EBADHANDLE`, `AAPI_EIO` (the session is closed anyway). Never concurrent.
    pub fn aapi_close_server(server: aapi_server_t) -> c_int;

    /// Report the server's properties (supported schedules) into `*server_info`, on success only.
    ///
    /// The caller sets `server_info->struct_size`. Legal in every operation. Returns: `AAPI_EOK`,
    /// `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_EABI` (struct too small), `AAPI_ECONNECT`.
    pub fn aapi_get_server_prop(
        server: aapi_server_t,
        server_info: *mut aapi_server_info_t,
    ) -> c_int;

    /// Discover the objects of `selections` and split them across `backuphosts` (discovery
    /// operation, once per session).
    ///
    /// `selections` and `backuphosts` are NULL-terminated arrays of NUL-terminated strings (each
    /// with at least one entry). The plugin may take a snapshot; it writes exactly one workload
    /// file per backup host, named `<wkldoutdir>/<backup host><wkldfilesuffix>`, mode 0600, in the
    /// format of docs/workload-file.md, and writes the snapshot id (or "") to `*snapid` on success
    /// only. Every object of the selection appears in exactly one file. A schedule the server does
    /// not support gives `AAPI_ESCHED_NOT_SUPPORTED` before anything is written. Long walks send
    /// keepalives. Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`,
    /// `AAPI_ESCHED_NOT_SUPPORTED`, `AAPI_ENOENT` (a selection does not exist), `AAPI_EACCES`,
    /// `AAPI_ENOTSUP` (an object the plugin cannot back up), `AAPI_EIO`, `AAPI_ESNAPSHOT`,
    /// `AAPI_ECANCELLED`, `AAPI_ENOMEM`, `AAPI_EINTERNAL`.
    pub fn aapi_discovery(
        server: aapi_server_t,
        selections: *const *const c_char,
        backuphosts: *const *const c_char,
        wkldoutdir: *const c_char,
        wkldfilesuffix: *const c_char,
        schedtype: u32,
        snapid: *mut aapi_snapid_t,
    ) -> c_int;

    /// Clean up after a backup: delete the snapshot `snapid` that discovery created (postprocess
    /// operation, once per session). Same parameters as `aapi_discovery`, all inputs.
    ///
    /// Runs even when child jobs failed. An empty `snapid->id` means there is nothing to delete
    /// (`AAPI_EOK`). Deleting a snapshot that is already gone is `AAPI_EOK`. Returns: `AAPI_EOK`,
    /// `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_ESNAPSHOT`, `AAPI_ECANCELLED`.
    pub fn aapi_postprocess(
        server: aapi_server_t,
        selections: *const *const c_char,
        backuphosts: *const *const c_char,
        wkldoutdir: *const c_char,
        wkldfilesuffix: *const c_char,
        schedtype: u32,
        snapid: *const aapi_snapid_t,
    ) -> c_int;

    /// Map `realpath` to the path of the same object inside snapshot `snapname` (backup operation;
    /// called once per object before it is opened; "" as `snapname` maps a path to itself).
    ///
    /// `snappath` is a caller buffer; on entry `*snappath_size` is its capacity. On `AAPI_EOK` the
    /// NUL-terminated path is written and `*snappath_size` is set to its length including the NUL;
    /// on `AAPI_EBUFSIZE` only `*snappath_size` is written, with the size needed. `snappath` may be
    /// NULL only when `*snappath_size` is 0 (a size query). Returns: `AAPI_EOK`, `AAPI_EINVAL`,
    /// `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_EBUFSIZE`, `AAPI_ESNAPSHOT` (unknown snapshot).
    pub fn aapi_get_snappath_from_realpath(
        server: aapi_server_t,
        snapname: *const c_char,
        realpath: *const c_char,
        snappath: *mut c_char,
        snappath_size: *mut usize,
    ) -> c_int;

    /// Open the object at `path` (a snapshot path from `aapi_get_snappath_from_realpath`) for
    /// reading (backup operation). `flags` must be `AAPI_OPEN_READ`.
    ///
    /// `*object` (out) is written on success only, with a non-zero handle. Returns: `AAPI_EOK`,
    /// `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_ENOENT` (missing or vanished),
    /// `AAPI_EACCES`, `AAPI_EIO`, `AAPI_ENOMEM`. Thread-safe on one server only when the plugin
    /// declares `AAPI_CAP_CONCURRENT_OBJECTS`.
    pub fn aapi_open_object(
        server: aapi_server_t,
        path: *const c_char,
        flags: u32,
        object: *mut aapi_object_t,
    ) -> c_int;

    /// Create the object at `path` for writing (restore operation, after `aapi_restore_preprocess`).
    ///
    /// `path` already carries the alternate root, if any. `prop` (in) gives the type and the
    /// properties to restore (`mode`, owner as permitted); its `struct_size` is checked. `flags`:
    /// `AAPI_CREATE_OVERWRITE` or 0. Missing parent containers are created. `*object` (out) is
    /// written on success only. Data written is not visible under `path` before a successful
    /// `aapi_close_object`. Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`,
    /// `AAPI_EABI` (`prop->struct_size`), `AAPI_EEXIST`, `AAPI_EACCES`, `AAPI_ENOSPC`,
    /// `AAPI_ENOTSUP` (type), `AAPI_EIO`.
    pub fn aapi_create_object(
        server: aapi_server_t,
        path: *const c_char,
        prop: *const aapi_object_prop_t,
        flags: u32,
        object: *mut aapi_object_t,
    ) -> c_int;

    /// Delete the object at `path` (restore operation: removing an object the framework decided
    /// not to keep). Deleting a missing object gives `AAPI_ENOENT`. Returns: `AAPI_EOK`,
    /// `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_ENOENT`, `AAPI_EACCES`, `AAPI_EIO`.
    pub fn aapi_delete_object(server: aapi_server_t, path: *const c_char) -> c_int;

    /// Read up to `buf_size` bytes of an object opened with `aapi_open_object` into `buf`.
    ///
    /// On `AAPI_EOK`, `*bytes_read` (out) holds the count, between 1 and `buf_size`, or 0 at the end
    /// of the data; every later read also gives 0. Nothing beyond `buf_size` is touched.
    /// `buf_size` 0 is `AAPI_EINVAL`. A read on a created (write) object is `AAPI_ESEQUENCE`.
    /// Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_EIO`,
    /// `AAPI_ECHANGED` (the object changed since discovery), `AAPI_ECANCELLED`.
    pub fn aapi_read_object(
        object: aapi_object_t,
        buf: *mut c_void,
        buf_size: usize,
        bytes_read: *mut usize,
    ) -> c_int;

    /// Append `len` bytes from `buf` to an object created with `aapi_create_object`.
    ///
    /// All `len` bytes are accepted or the call fails (no short writes). `len` 0 is `AAPI_EOK` and
    /// does nothing. A write on an object opened for reading is `AAPI_ESEQUENCE`. Returns:
    /// `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_ENOSPC`, `AAPI_EIO`,
    /// `AAPI_ECANCELLED`.
    pub fn aapi_write_object(object: aapi_object_t, buf: *const c_void, len: usize) -> c_int;

    /// Push every byte written so far to a created object out of the plugin's own buffers to the
    /// target (OBJ-6). Durability across a crash comes for the whole restore at
    /// `aapi_restore_postprocess` (RST-9), not per object. Returns: `AAPI_EOK`, `AAPI_EBADHANDLE`,
    /// `AAPI_ESEQUENCE` (object opened for reading), `AAPI_ENOSPC`, `AAPI_EIO`.
    pub fn aapi_flush(object: aapi_object_t) -> c_int;

    /// Close an object handle. For a created object this completes it: the data becomes visible
    /// under its path (replacing the old object when `AAPI_CREATE_OVERWRITE` was given).
    ///
    /// The handle is invalid afterwards, even when the call fails; a second close gives
    /// `AAPI_EBADHANDLE`. Returns: `AAPI_EOK`, `AAPI_EBADHANDLE`, `AAPI_ENOSPC`, `AAPI_EIO`.
    pub fn aapi_close_object(object: aapi_object_t) -> c_int;

    /// Report the properties of an open object into `*prop`, on success only.
    ///
    /// The caller sets `prop->struct_size`. Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`,
    /// `AAPI_EABI` (struct too small), `AAPI_EIO`.
    pub fn aapi_get_object_prop(object: aapi_object_t, prop: *mut aapi_object_prop_t) -> c_int;

    /// Report the properties of the object at `path` into `*prop`, on success only (backup and
    /// restore operations; in a restore, `path` carries the alternate root).
    ///
    /// Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_EABI`,
    /// `AAPI_ENOENT`, `AAPI_EACCES`, `AAPI_EIO`.
    pub fn aapi_get_object_prop_byname(
        server: aapi_server_t,
        path: *const c_char,
        prop: *mut aapi_object_prop_t,
    ) -> c_int;

    /// Set the access and modification times of the restored object at `path` (restore operation,
    /// after its close). Either time pointer may be NULL to leave that time unchanged. Symlinks get
    /// their own times, never their target's. Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`,
    /// `AAPI_ESEQUENCE`, `AAPI_ENOENT`, `AAPI_EACCES`, `AAPI_ENOTSUP`, `AAPI_EIO`.
    pub fn aapi_set_object_utimes(
        server: aapi_server_t,
        path: *const c_char,
        atime: *const aapi_time_t,
        mtime: *const aapi_time_t,
    ) -> c_int;

    /// Prepare a restore (restore operation, once, before any create).
    ///
    /// The plugin checks that `restore_info->target_root` (when not "") exists and that the target
    /// has room for `total_bytes`; `AAPI_ENOSPC` stops the restore before any byte is written.
    /// Returns: `AAPI_EOK`, `AAPI_EINVAL`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE`, `AAPI_EABI`,
    /// `AAPI_ENOENT` (target root missing), `AAPI_EACCES`, `AAPI_ENOSPC`, `AAPI_ENOTSUP`.
    pub fn aapi_restore_preprocess(
        server: aapi_server_t,
        restore_info: *const aapi_restore_info_t,
    ) -> c_int;

    /// Finish a restore (restore operation, once, after the last object). `status` is `AAPI_EOK`
    /// when every object was restored, else the code the restore failed with: the plugin then
    /// removes every object this restore created (and only those). Objects still open are closed
    /// first. With `AAPI_EOK` it returns only once everything the restore wrote is durable (RST-9).
    /// Returns: `AAPI_EOK`, `AAPI_EBADHANDLE`, `AAPI_ESEQUENCE` (before preprocess, or twice),
    /// `AAPI_EIO`.
    pub fn aapi_restore_postprocess(server: aapi_server_t, status: c_int) -> c_int;

    /// End the plugin's work for this operation (phase: unload): closes every server and object
    /// still open and frees what init allocated. Repeating it, or calling it before init, is
    /// `AAPI_EOK` and does nothing. After it, only `aapi_pgn_init` (a new cycle),
    /// `aapi_get_last_error` and `aapi_terminate` are legal. The framework never unloads the
    /// library. Never concurrent with another call. Returns: `AAPI_EOK`.
    pub fn aapi_terminate() -> c_int;

    /// Copy the detailed message of the last call that failed on the calling thread into `buf`
    /// (caller-owned). On entry `*buf_size` is the capacity; on `AAPI_EOK` it is the length written
    /// including the NUL ("" when no call failed); on `AAPI_EBUFSIZE` it is the size needed and
    /// `buf` is untouched (`buf` may be NULL with `*buf_size` 0). Legal at any time, from any
    /// thread. Returns: `AAPI_EOK`, `AAPI_EINVAL` (NULL `buf_size`, or NULL `buf` with a non-zero
    /// `*buf_size`), `AAPI_EBUFSIZE`.
    pub fn aapi_get_last_error(buf: *mut c_char, buf_size: *mut usize) -> c_int;
}
