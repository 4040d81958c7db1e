//! The plugin side of the SDK: implement the safe traits, export them with one macro.
//!
//! A plugin is a type implementing [`Plugin`] (identity, init, claim, open a session), whose
//! sessions implement [`Server`] (server properties, discovery, postprocess, snapshot paths,
//! opening objects, the restore calls) and whose objects implement [`BackupObject`] (read) and
//! [`RestoreObject`] (write). [`export_plugin!`](crate::export_plugin) then defines the 22
//! `aapi_*` entry points and the `aapi_abi_marker` symbol as thin shims over a [`Runtime`], which
//! enforces the mechanical part of the contract so that plugin code cannot get it wrong:
//!
//! - a panic boundary on every entry point: a panic becomes `AAPI_EINTERNAL`, an ERROR log line
//!   and a last-error message, both with the panic's location; nothing unwinds into the
//!   framework, nothing is printed on its stderr (SEC-3: a panic hook, installed at the first
//!   call, keeps quiet about panics inside entry points and about panics of other threads while
//!   an entry point runs, taken for threads the call started, whose messages join the call's
//!   report or are logged as a warning; it passes every other panic to the hook installed before
//!   it), and poisoned locks are recovered (MEM-3). The crate must unwind on panic (see
//!   [`export_plugin!`](crate::export_plugin));
//! - argument checks in one fixed order: phase (init, claim) -> NULL pointers (`AAPI_EINVAL`) ->
//!   handle (`AAPI_EBADHANDLE`) -> legality in the session (`AAPI_ESEQUENCE`) -> `struct_size`
//!   (`AAPI_EABI`) -> values (`AAPI_EINVAL`, `AAPI_ESCHED_NOT_SUPPORTED`, ...) -> the plugin
//!   (LIFE-1, LIFE-3, RC-3, RC-4, LIFE-4, ABI-4, RC-8);
//! - handle tables with kind tags and generation counters: 0, closed, never issued and wrong-kind
//!   handles give `AAPI_EBADHANDLE`; a second close too (RC-4, LIFE-6);
//! - call order: `aapi_pgn_init` once per cycle, `aapi_open_server` after a successful claim, each
//!   call only in the operations that allow it, discovery and postprocess once per session,
//!   creates only between `aapi_restore_preprocess` and `aapi_restore_postprocess`, reads only on
//!   opened objects and writes only on created ones; end of data is sticky (LIFE-2..LIFE-5,
//!   OBJ-1);
//! - out-parameters written only on success; in/out sizes with `AAPI_EBUFSIZE` and the size
//!   needed; `aapi_get_last_error` per thread (RC-5, RC-6, RC-9);
//! - threads as declared: with `AAPI_CAP_CONCURRENT_OBJECTS` calls on different objects run
//!   concurrently (calls on one object never do), without it every session and object call is
//!   serialised (THR-1, THR-2);
//! - closing: `aapi_close_server` closes the session's open objects, `aapi_restore_postprocess`
//!   closes (success) or aborts (failure) the open created objects, `aapi_terminate` closes
//!   everything and may be repeated (LIFE-6, LIFE-7);
//! - session callbacks only while an entry point of the session runs, never after its close
//!   (THR-3): [`Host`] keeps log lines for the session's next entry point and refuses or skips
//!   the other callbacks in between.
//!
//! Host services come as [`Host`] (log, keepalive, credentials) in the [`Session`], and the
//! workload file format as [`crate::workload`].

mod error;
mod handles;
mod host;
mod raw;
mod runtime;
mod types;

pub use error::{Error, ErrorKind, Result};
pub use host::{Host, HostInfo, Level, Secret, Session, keepalive_interval};
pub use runtime::Runtime;
pub use types::{
    BackupJob, ObjectProps, ObjectType, Operation, Owner, PluginInfo, RestoreInfo, RestoreStatus,
    Schedule, ServerInfo, Timestamp,
};

use std::path::{Path, PathBuf};

/// A workload plugin: its identity, the handshake, the claim and opening sessions.
///
/// Its methods are never called concurrently (the ABI serialises init, claim, open, close and
/// terminate). One value exists per init cycle: made by [`init`](Plugin::init), consumed by
/// [`terminate`](Plugin::terminate).
pub trait Plugin: Sized + Send + 'static {
    /// Name, version, vendor, workload types and capabilities (checked at init).
    const INFO: PluginInfo;

    /// The session type.
    type Server: Server;

    /// `aapi_pgn_init`: set the plugin up. The ABI checks (version, struct sizes) are done.
    fn init(host: &HostInfo) -> Result<Self>;

    /// `aapi_pgn_claim`: whether this plugin handles `workload_type`. No side effects. The default
    /// matches the comma-separated items of [`PluginInfo::workload_types`] exactly.
    fn claim(&self, workload_type: &str) -> bool {
        Self::INFO.handles(workload_type)
    }

    /// `aapi_open_server`: open a session with the workload server `server` (a non-empty name)
    /// for [`Session::operation`]. Parse the session's properties here: a bad value is
    /// `AAPI_EINVAL` now rather than a failure later.
    fn open_server(&self, server: &str, session: Session) -> Result<Self::Server>;

    /// `aapi_terminate`: release what init acquired (every session is already closed).
    fn terminate(self) {}
}

/// One open session. Its methods take `&self` and may run on several threads at once when the
/// plugin declares `AAPI_CAP_CONCURRENT_OBJECTS` (use a `Mutex` or atomics for mutable state);
/// without it the layer serialises them.
///
/// Each method is called only in the operations that allow it (the layer answers
/// `AAPI_ESEQUENCE` otherwise); the defaults answer `AAPI_ENOTSUP`. Paths given to a method are
/// never empty.
pub trait Server: Send + Sync + 'static {
    /// Objects opened for reading by [`open_object`](Server::open_object).
    type Reader: BackupObject;
    /// Objects created for writing by [`create_object`](Server::create_object). A plugin without
    /// restore uses [`NoObject`].
    type Writer: RestoreObject;

    /// `aapi_get_server_prop`: the schedules this server supports (every operation).
    fn server_info(&self) -> Result<ServerInfo>;

    /// `aapi_discovery` (discovery operation, once): split `job.selections` across
    /// `job.backup_hosts`, writing exactly one workload file per host at
    /// [`BackupJob::workload_file`] (with [`crate::workload::WorkloadFile::write_to_path`]), and
    /// return the snapshot id ("" when none was taken; at most 255 bytes, no NUL). The layer has
    /// already refused a schedule [`server_info`](Server::server_info) does not support, and
    /// checks afterwards that every host got its file. Send keepalives during long walks.
    fn discovery(&self, job: &BackupJob) -> Result<String> {
        let _ = job;
        Err(Error::not_supported("discovery is not implemented"))
    }

    /// `aapi_postprocess` (postprocess operation, once): delete the snapshot `snapshot_id` taken
    /// by discovery. "" or an already deleted snapshot is success. The default does nothing.
    fn postprocess(&self, job: &BackupJob, snapshot_id: &str) -> Result<()> {
        let _ = (job, snapshot_id);
        Ok(())
    }

    /// `aapi_get_snappath_from_realpath` (backup operation): the path of `real_path` inside the
    /// snapshot `snapshot` ("" maps a path to itself). The layer copies the result with the
    /// in/out size protocol. The default handles "" and refuses any other snapshot.
    fn snapshot_path(&self, snapshot: &str, real_path: &Path) -> Result<PathBuf> {
        if snapshot.is_empty() {
            Ok(real_path.to_path_buf())
        } else {
            Err(Error::new(
                ErrorKind::Snapshot,
                format!("unknown snapshot {snapshot:?}"),
            ))
        }
    }

    /// `aapi_open_object` (backup operation): open the object at `path` (a snapshot path) for
    /// reading. The layer has checked the flags.
    fn open_object(&self, path: &Path) -> Result<Self::Reader> {
        let _ = path;
        Err(Error::not_supported("backup is not implemented"))
    }

    /// `aapi_get_object_prop_byname` (backup operation, and restore between pre- and
    /// postprocess): the properties of the object at `path`.
    fn object_props(&self, path: &Path) -> Result<ObjectProps> {
        let _ = path;
        Err(Error::not_supported(
            "object properties by name are not implemented",
        ))
    }

    /// `aapi_restore_preprocess` (restore operation, before any create): check the target exists
    /// and has room for `info.total_bytes` (`AAPI_ENOSPC` before anything is written). The layer
    /// refuses an alternate root without `AAPI_CAP_ALTERNATE_RESTORE`.
    fn restore_preprocess(&self, info: &RestoreInfo) -> Result<()> {
        let _ = info;
        Err(Error::not_supported("restore is not implemented"))
    }

    /// `aapi_create_object` (restore operation, between pre- and postprocess): create the object
    /// at `path` with `props`; with `overwrite` false an existing object is `AAPI_EEXIST`. Its
    /// data must not be visible under `path` before [`RestoreObject::close`].
    fn create_object(
        &self,
        path: &Path,
        props: &ObjectProps,
        overwrite: bool,
    ) -> Result<Self::Writer> {
        let _ = (path, props, overwrite);
        Err(Error::not_supported("restore is not implemented"))
    }

    /// `aapi_delete_object` (restore operation, between pre- and postprocess).
    fn delete_object(&self, path: &Path) -> Result<()> {
        let _ = path;
        Err(Error::not_supported("delete is not implemented"))
    }

    /// `aapi_set_object_utimes` (restore operation, between pre- and postprocess): set the times
    /// given (`None` leaves one unchanged), never following a symlink.
    fn set_times(
        &self,
        path: &Path,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<()> {
        let _ = (path, atime, mtime);
        Err(Error::not_supported("setting times is not implemented"))
    }

    /// `aapi_restore_postprocess` (restore operation, once, after preprocess): on success make
    /// everything the restore wrote durable before returning (RST-9); on failure remove what
    /// this restore created (and only that, RST-6). Objects still open are already closed
    /// (success) or aborted (failure) by the layer; if closing one failed, the status given here
    /// is that failure. An object whose [`RestoreObject::close`] failed has cleaned up after
    /// itself.
    fn restore_postprocess(&self, status: RestoreStatus) -> Result<()> {
        let _ = status;
        Err(Error::not_supported("restore is not implemented"))
    }

    /// `aapi_close_server`: the session ends (its objects are closed already). An error is
    /// reported to the framework, but the session is closed anyway.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// An object opened for reading (backup).
pub trait BackupObject: Sized + Send + 'static {
    /// `aapi_read_object`: fill the start of `buf` (never empty) and return the count; 0 means the
    /// end of the data, after which the layer answers 0 without calling again. A count larger
    /// than `buf` is a plugin bug reported as `AAPI_EINTERNAL`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// `aapi_get_object_prop`: the object's properties.
    fn props(&self) -> Result<ObjectProps>;

    /// `aapi_close_object` (also when the session closes with the object open).
    fn close(self) -> Result<()> {
        Ok(())
    }
}

/// An object created for writing (restore).
pub trait RestoreObject: Sized + Send + 'static {
    /// `aapi_write_object`: append all of `data` (never empty) or fail.
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// `aapi_flush`: push everything written so far out of the plugin's own buffers (OBJ-6);
    /// durability comes for the whole restore in [`Server::restore_postprocess`] (RST-9).
    fn flush(&mut self) -> Result<()>;

    /// `aapi_get_object_prop` on a created object.
    fn props(&self) -> Result<ObjectProps>;

    /// `aapi_close_object`: complete the object; its data becomes visible under its path.
    ///
    /// When it fails (or panics), `close` must leave nothing of the object behind: it consumed
    /// the object, so the layer cannot call [`abort`](RestoreObject::abort) after it, and a
    /// failed restore's [`Server::restore_postprocess`] removes only what the plugin recorded as
    /// created (RST-6). The simplest way to meet this is a `Drop` impl that removes the unfinished
    /// data unless `close` completed the object: the default `abort`, a failed `close` and a
    /// panic then all clean up in one place.
    fn close(self) -> Result<()>;

    /// The object is dropped unfinished (a failed restore, or its session closed while it was
    /// open): remove what it wrote. Not called after a failed [`close`](RestoreObject::close).
    /// The default just drops it (and so runs the object's `Drop`).
    fn abort(self) {}
}

/// The object type of a plugin without restore (or without backup): it has no values.
#[derive(Debug)]
pub enum NoObject {}

impl BackupObject for NoObject {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize> {
        match *self {}
    }
    fn props(&self) -> Result<ObjectProps> {
        match *self {}
    }
}

impl RestoreObject for NoObject {
    fn write(&mut self, _data: &[u8]) -> Result<()> {
        match *self {}
    }
    fn flush(&mut self) -> Result<()> {
        match *self {}
    }
    fn props(&self) -> Result<ObjectProps> {
        match *self {}
    }
    fn close(self) -> Result<()> {
        match self {}
    }
}

/// Export a [`Plugin`] type: defines the 22 `aapi_*` entry points (`extern "C"`, unmangled) and
/// the `aapi_abi_marker` data symbol, all backed by one static [`Runtime`]. Use it exactly once,
/// in a crate built as `cdylib`.
///
/// The crate must unwind on panic (Rust's default): the export layer turns a panic into
/// `AAPI_EINTERNAL` with `catch_unwind`, which `panic = "abort"` turns off, so that a panic would
/// abort the framework's job. The macro refuses to compile under `panic = "abort"` (a profile
/// setting or `-C panic=abort`) and says how to fix the profile.
///
/// ```
/// use aapi_sdk::plugin::*;
///
/// /// A plugin that claims `demo` and supports nothing else yet.
/// struct Demo;
///
/// impl Plugin for Demo {
///     const INFO: PluginInfo = PluginInfo {
///         name: c"demo",
///         version: c"0.1.0",
///         vendor: c"Example Corp",
///         workload_types: c"demo",
///         capabilities: 0,
///         max_concurrent_objects: 1,
///     };
///     type Server = DemoSession;
///
///     fn init(_host: &HostInfo) -> Result<Self> {
///         Ok(Demo)
///     }
///
///     fn open_server(&self, _server: &str, _session: Session) -> Result<DemoSession> {
///         Ok(DemoSession)
///     }
/// }
///
/// struct DemoSession;
///
/// impl Server for DemoSession {
///     type Reader = NoObject;
///     type Writer = NoObject;
///
///     fn server_info(&self) -> Result<ServerInfo> {
///         Ok(ServerInfo { full: true, ..ServerInfo::default() })
///     }
/// }
///
/// aapi_sdk::export_plugin!(Demo);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(panic = "abort")]
        ::core::compile_error!(
            "aapi plugins must be built with panic = \"unwind\": the SDK turns a panic into \
             AAPI_EINTERNAL with catch_unwind, which panic = \"abort\" turns off, so a panic \
             would kill the framework's job. Remove `panic = \"abort\"` from the [profile.*] \
             sections of Cargo.toml that build this plugin (or set `panic = \"unwind\"`), and \
             `-C panic=abort` from RUSTFLAGS."
        );

        const _: () = {
            use ::core::ffi::{c_char, c_int, c_void};
            use $crate::abi::*;

            static RUNTIME: $crate::plugin::Runtime<$plugin> = $crate::plugin::Runtime::new();

            #[unsafe(no_mangle)]
            #[used]
            #[allow(non_upper_case_globals)]
            pub static aapi_abi_marker: aapi_abi_marker_t = aapi_abi_marker_t::CURRENT;

            // Each shim forwards its raw arguments; the runtime checks them (see Runtime).
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_pgn_init(
                h: *const aapi_host_info_t,
                p: *mut aapi_plugin_info_t,
            ) -> c_int {
                unsafe { RUNTIME.pgn_init(h, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_pgn_claim(w: *const c_char) -> c_int {
                unsafe { RUNTIME.pgn_claim(w) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_open_server(
                s: *const c_char,
                d: *const aapi_session_def_t,
                h: *mut aapi_server_t,
            ) -> c_int {
                unsafe { RUNTIME.open_server(s, d, h) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_close_server(s: aapi_server_t) -> c_int {
                RUNTIME.close_server(s)
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_get_server_prop(
                s: aapi_server_t,
                i: *mut aapi_server_info_t,
            ) -> c_int {
                unsafe { RUNTIME.get_server_prop(s, i) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_discovery(
                s: aapi_server_t,
                sel: *const *const c_char,
                bh: *const *const c_char,
                dir: *const c_char,
                sfx: *const c_char,
                st: u32,
                id: *mut aapi_snapid_t,
            ) -> c_int {
                unsafe { RUNTIME.discovery(s, sel, bh, dir, sfx, st, id) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_postprocess(
                s: aapi_server_t,
                sel: *const *const c_char,
                bh: *const *const c_char,
                dir: *const c_char,
                sfx: *const c_char,
                st: u32,
                id: *const aapi_snapid_t,
            ) -> c_int {
                unsafe { RUNTIME.postprocess(s, sel, bh, dir, sfx, st, id) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_get_snappath_from_realpath(
                s: aapi_server_t,
                n: *const c_char,
                r: *const c_char,
                b: *mut c_char,
                z: *mut usize,
            ) -> c_int {
                unsafe { RUNTIME.get_snappath_from_realpath(s, n, r, b, z) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_open_object(
                s: aapi_server_t,
                p: *const c_char,
                f: u32,
                o: *mut aapi_object_t,
            ) -> c_int {
                unsafe { RUNTIME.open_object(s, p, f, o) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_create_object(
                s: aapi_server_t,
                p: *const c_char,
                pr: *const aapi_object_prop_t,
                f: u32,
                o: *mut aapi_object_t,
            ) -> c_int {
                unsafe { RUNTIME.create_object(s, p, pr, f, o) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_delete_object(
                s: aapi_server_t,
                p: *const c_char,
            ) -> c_int {
                unsafe { RUNTIME.delete_object(s, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_read_object(
                o: aapi_object_t,
                b: *mut c_void,
                n: usize,
                r: *mut usize,
            ) -> c_int {
                unsafe { RUNTIME.read_object(o, b, n, r) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_write_object(
                o: aapi_object_t,
                b: *const c_void,
                n: usize,
            ) -> c_int {
                unsafe { RUNTIME.write_object(o, b, n) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_flush(o: aapi_object_t) -> c_int {
                RUNTIME.flush(o)
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_close_object(o: aapi_object_t) -> c_int {
                RUNTIME.close_object(o)
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_get_object_prop(
                o: aapi_object_t,
                p: *mut aapi_object_prop_t,
            ) -> c_int {
                unsafe { RUNTIME.get_object_prop(o, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_get_object_prop_byname(
                s: aapi_server_t,
                p: *const c_char,
                pr: *mut aapi_object_prop_t,
            ) -> c_int {
                unsafe { RUNTIME.get_object_prop_byname(s, p, pr) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_set_object_utimes(
                s: aapi_server_t,
                p: *const c_char,
                a: *const aapi_time_t,
                m: *const aapi_time_t,
            ) -> c_int {
                unsafe { RUNTIME.set_object_utimes(s, p, a, m) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_restore_preprocess(
                s: aapi_server_t,
                i: *const aapi_restore_info_t,
            ) -> c_int {
                unsafe { RUNTIME.restore_preprocess(s, i) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_restore_postprocess(
                s: aapi_server_t,
                st: c_int,
            ) -> c_int {
                RUNTIME.restore_postprocess(s, st)
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_terminate() -> c_int {
                RUNTIME.terminate()
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn aapi_get_last_error(b: *mut c_char, z: *mut usize) -> c_int {
                unsafe { RUNTIME.get_last_error(b, z) }
            }
        };
    };
}
