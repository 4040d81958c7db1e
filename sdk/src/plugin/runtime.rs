//! The runtime behind the exported entry points: state, handle tables, checks, panic boundary.
//!
//! Lock order (never taken the other way round): `control` -> `serial` -> a session's `state`
//! -> `objects`/`servers` tables (held briefly, never across plugin code) -> an object's `state`.

use super::error::{Error, ErrorKind, Result};
use super::handles::{HandleError, OBJECT_TAG, SERVER_TAG, Slots};
use super::host::{Callbacks, Host, HostInfo, Level, LogSink, Running, Session, c_text};
use super::raw;
use super::types::{
    BackupJob, ObjectProps, Operation, RestoreInfo, RestoreStatus, Schedule, Timestamp,
};
use super::{BackupObject, Plugin, RestoreObject, Server};
use crate::abi::*;
use crate::codes;
use core::ffi::{CStr, c_char, c_int, c_void};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::Duration;

const UNINIT: u8 = 0;
const INIT: u8 = 1;
const CLAIMED: u8 = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The message of the last failed call on this thread (without the NUL).
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn set_last_error(message: &str) {
    let text = c_text(message).into_bytes();
    let _ = LAST_ERROR.try_with(|m| *m.borrow_mut() = text);
}

thread_local! {
    /// How many entry points this thread is inside (one, unless plugin code calls an entry
    /// point itself): a panic there is the layer's to report.
    static IN_CALL: Cell<u32> = const { Cell::new(0) };
    /// Where the last panic inside an entry point happened (`file:line:column`), noted by the
    /// panic hook for the message the layer reports.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Threads inside an entry point of this plugin now (each counted once, however deeply its
/// calls nest). Every plugin library has its own copy of the SDK, so this and the panic hook
/// are the library's own.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Panics of other threads (those plugin code started) while an entry point ran, as
/// `"<message> (at <location>)"`, until a call reports them.
static THREAD_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// How many of those panics are kept; later ones are only counted.
const THREAD_PANICS_KEPT: usize = 8;

/// Panics of other threads not kept in [`THREAD_PANICS`].
static THREAD_PANICS_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Set when the hook noted a panic of another thread: the calls look at the list only then.
static THREAD_PANICKED: AtomicBool = AtomicBool::new(false);

/// The text of a panic payload.
fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

/// Install, once per process, the panic hook that keeps panics of the plugin's calls off the
/// process's stderr: the layer reports them (last error, log line) with the location the hook
/// notes. Those are the panics inside entry points, and the panics of every other thread while
/// an entry point of this plugin runs: such a thread is taken for one that plugin code started
/// during the call (scoped threads, worker pools), and its message is kept for the report. A
/// panic anywhere else (a thread of the plugin's own while no entry point runs) goes to the hook
/// that was installed before, Rust's default or the plugin's, as if this one were not there. A
/// hook the plugin installs later replaces this one.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    // take_hook and set_hook panic on a panicking thread (a destructor calling in).
    if std::thread::panicking() {
        return;
    }
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info.location().map(ToString::to_string);
            if IN_CALL.try_with(Cell::get).unwrap_or(0) > 0 {
                let _ = PANIC_AT.try_with(|p| *p.borrow_mut() = at);
            } else if ACTIVE.load(Ordering::SeqCst) > 0 {
                let text = payload_text(info.payload());
                let text = match at {
                    Some(at) => format!("{text} (at {at})"),
                    None => text.to_string(),
                };
                let mut kept = lock(&THREAD_PANICS);
                if kept.len() < THREAD_PANICS_KEPT {
                    kept.push(text);
                } else {
                    THREAD_PANICS_DROPPED.fetch_add(1, Ordering::SeqCst);
                }
                THREAD_PANICKED.store(true, Ordering::SeqCst);
            } else {
                previous(info);
            }
        }));
    });
}

/// The panics of other threads kept since the last report, as one sentence (`None` when
/// there were none).
fn take_thread_panics() -> Option<String> {
    if !THREAD_PANICKED.swap(false, Ordering::SeqCst) {
        return None;
    }
    let kept = std::mem::take(&mut *lock(&THREAD_PANICS));
    let dropped = THREAD_PANICS_DROPPED.swap(0, Ordering::SeqCst);
    if kept.is_empty() && dropped == 0 {
        return None;
    }
    let mut text = match kept.len() {
        1 => format!("a thread the plugin started panicked: {}", kept[0]),
        n => format!(
            "{n} threads the plugin started panicked: {}",
            kept.join("; ")
        ),
    };
    if dropped > 0 {
        text.push_str(&format!(" (and {dropped} more)"));
    }
    Some(text)
}

/// Marks the current thread as inside an entry point while it lives.
struct InCall;

impl InCall {
    fn enter() -> InCall {
        install_panic_hook();
        let depth = IN_CALL.with(|d| d.replace(d.get() + 1));
        if depth == 0 {
            ACTIVE.fetch_add(1, Ordering::SeqCst);
            // A location noted for a panic the plugin caught itself belongs to no report.
            let _ = PANIC_AT.try_with(|p| p.borrow_mut().take());
        }
        InCall
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        let depth = IN_CALL.try_with(|d| {
            let depth = d.get().saturating_sub(1);
            d.set(depth);
            depth
        });
        if depth == Ok(0) {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The text of a panic payload, with where it happened when the hook noted it.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    let text = payload_text(payload);
    match PANIC_AT.try_with(|p| p.borrow_mut().take()).ok().flatten() {
        Some(at) => format!("{text} (at {at})"),
        None => text.to_string(),
    }
}

/// Drop a panic payload without letting a panicking destructor escape.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(again);
    }
}

/// Run plugin code whose panic must not stop the caller (cleanup loops): a panic becomes an
/// `AAPI_EINTERNAL` error.
fn contain<R>(what: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            drop_payload(payload);
            Err(Error::internal(format!(
                "plugin panicked in {what}: {text}"
            )))
        }
    }
}

/// Where a panic in the current call is logged.
enum LogTo {
    None,
    /// A raw callback: the handshake's (init, claim, terminate) or a session's while it opens.
    Sink(LogSink),
    /// A session whose entry point this call is.
    Session(Running),
}

impl LogTo {
    fn log(&self, level: Level, message: &str) {
        match self {
            LogTo::None => {}
            LogTo::Sink(sink) => sink.log(level, message),
            LogTo::Session(running) => running.host().log(level, message),
        }
    }
}

struct SessionState {
    /// Set under the write lock by close: later calls that already held the entry fail.
    closed: bool,
    discovered: bool,
    postprocessed: bool,
    restore: RestorePhase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RestorePhase {
    NotStarted,
    Open,
    Finished,
}

struct ServerEntry<S> {
    server: S,
    host: Host,
    operation: Operation,
    state: RwLock<SessionState>,
}

enum ObjectState<S: Server> {
    Read { object: S::Reader, at_end: bool },
    Write(S::Writer),
    Closed,
}

struct ObjectEntry<S: Server> {
    server: Arc<ServerEntry<S>>,
    server_handle: u64,
    state: Mutex<ObjectState<S>>,
}

/// Close an object that is being dropped by the layer: readers are closed; writers are closed
/// (`commit`) or aborted.
fn finish_object<S: Server>(state: ObjectState<S>, commit: bool) -> Result<()> {
    match state {
        ObjectState::Read { object, .. } => object.close(),
        ObjectState::Write(w) if commit => w.close(),
        ObjectState::Write(w) => {
            w.abort();
            Ok(())
        }
        ObjectState::Closed => Ok(()),
    }
}

struct Control<P> {
    plugin: Option<P>,
    log: Option<LogSink>,
}

/// The state behind one plugin's exported entry points, held in a static that
/// [`export_plugin!`](crate::export_plugin) declares. Each method implements the entry point of
/// the same name (`aapi_<method>`), with the checks listed in [the module docs](super).
pub struct Runtime<P: Plugin> {
    phase: AtomicU8,
    control: Mutex<Control<P>>,
    /// Held around every session and object call when the plugin is not concurrent.
    serial: Mutex<()>,
    servers: Mutex<Slots<Arc<ServerEntry<P::Server>>>>,
    objects: Mutex<Slots<Arc<ObjectEntry<P::Server>>>>,
}

impl<P: Plugin> Default for Runtime<P> {
    fn default() -> Self {
        Self::new()
    }
}

type ServerArc<P> = Arc<ServerEntry<<P as Plugin>::Server>>;
type ObjectArc<P> = Arc<ObjectEntry<<P as Plugin>::Server>>;

fn sequence(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Sequence, message)
}

fn bad_handle(kind: &str, handle: u64, why: HandleError) -> Error {
    Error::new(
        ErrorKind::BadHandle,
        format!("{kind} handle {handle:#x} {}", why.describe()),
    )
}

impl<P: Plugin> Runtime<P> {
    /// An empty runtime: nothing initialised, no handles.
    pub const fn new() -> Self {
        Runtime {
            phase: AtomicU8::new(UNINIT),
            control: Mutex::new(Control {
                plugin: None,
                log: None,
            }),
            serial: Mutex::new(()),
            servers: Mutex::new(Slots::new(SERVER_TAG)),
            objects: Mutex::new(Slots::new(OBJECT_TAG)),
        }
    }

    /// The panic boundary and error translation around one entry point. Panics of threads
    /// that plugin code started, kept by the panic hook meanwhile, are reported with the call's
    /// own panic, or else logged as a warning.
    fn call(&self, function: &'static str, f: impl FnOnce(&mut LogTo) -> Result<()>) -> c_int {
        let _in_call = InCall::enter();
        let mut log = LogTo::None;
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut log)));
        let threads = take_thread_panics();
        match result {
            Ok(result) => {
                if let Some(threads) = threads {
                    let text = format!("during {function}, {threads}");
                    let _ = catch_unwind(AssertUnwindSafe(|| log.log(Level::Warning, &text)));
                }
                match result {
                    Ok(()) => AAPI_EOK,
                    Err(e) => {
                        set_last_error(&e.to_string());
                        e.code()
                    }
                }
            }
            Err(payload) => {
                let mut text = format!(
                    "plugin panicked in {function}: {}",
                    panic_text(payload.as_ref())
                );
                if let Some(threads) = threads {
                    text = format!("{text}; {threads}");
                }
                drop_payload(payload);
                set_last_error(&text);
                // A panicking log callback cannot unwind (it is extern "C"); ours may not either.
                let _ = catch_unwind(AssertUnwindSafe(|| log.log(Level::Error, &text)));
                AAPI_EINTERNAL
            }
        }
    }

    fn concurrent() -> bool {
        P::INFO.has(AAPI_CAP_CONCURRENT_OBJECTS)
    }

    fn serial(&self) -> Option<MutexGuard<'_, ()>> {
        (!Self::concurrent()).then(|| lock(&self.serial))
    }

    fn require_claimed(&self, function: &str) -> Result<()> {
        match self.phase.load(Ordering::Acquire) {
            CLAIMED => Ok(()),
            INIT => Err(sequence(format!(
                "{function} before a successful aapi_pgn_claim"
            ))),
            _ => Err(sequence(format!("{function} before aapi_pgn_init"))),
        }
    }

    fn server_entry(&self, handle: u64) -> Result<ServerArc<P>> {
        lock(&self.servers)
            .get(handle)
            .cloned()
            .map_err(|why| bad_handle("server", handle, why))
    }

    fn object_entry(&self, handle: u64) -> Result<ObjectArc<P>> {
        lock(&self.objects)
            .get(handle)
            .cloned()
            .map_err(|why| bad_handle("object", handle, why))
    }

    fn check_operation(
        function: &str,
        entry: &ServerEntry<P::Server>,
        state: &SessionState,
        handle: u64,
        allowed: &[Operation],
    ) -> Result<()> {
        if state.closed {
            return Err(bad_handle("server", handle, HandleError::Closed));
        }
        if !allowed.contains(&entry.operation) {
            return Err(sequence(format!(
                "{function} is not legal in a {:?} session (only in {allowed:?})",
                entry.operation
            )));
        }
        Ok(())
    }

    /// A session call that may run alongside others of the same session (shared state lock).
    fn session_call<R>(
        &self,
        log: &mut LogTo,
        function: &str,
        handle: u64,
        allowed: &[Operation],
        f: impl FnOnce(&ServerArc<P>, &SessionState) -> Result<R>,
    ) -> Result<R> {
        let entry = self.server_entry(handle)?;
        *log = LogTo::Session(entry.host.enter());
        let _serial = self.serial();
        let state = read(&entry.state);
        Self::check_operation(function, &entry, &state, handle, allowed)?;
        f(&entry, &state)
    }

    /// A session call that changes the session's phase (exclusive state lock).
    fn session_call_mut<R>(
        &self,
        log: &mut LogTo,
        function: &str,
        handle: u64,
        allowed: &[Operation],
        f: impl FnOnce(&ServerArc<P>, &mut SessionState) -> Result<R>,
    ) -> Result<R> {
        let entry = self.server_entry(handle)?;
        *log = LogTo::Session(entry.host.enter());
        let _serial = self.serial();
        let mut state = write(&entry.state);
        Self::check_operation(function, &entry, &state, handle, allowed)?;
        f(&entry, &mut state)
    }

    fn require_restore_window(state: &SessionState, function: &str) -> Result<()> {
        match state.restore {
            RestorePhase::Open => Ok(()),
            RestorePhase::NotStarted => Err(sequence(format!(
                "{function} before aapi_restore_preprocess"
            ))),
            RestorePhase::Finished => Err(sequence(format!(
                "{function} after aapi_restore_postprocess"
            ))),
        }
    }

    fn insert_object(
        &self,
        server: &ServerArc<P>,
        server_handle: u64,
        state: ObjectState<P::Server>,
    ) -> Result<u64> {
        let entry = Arc::new(ObjectEntry {
            server: server.clone(),
            server_handle,
            state: Mutex::new(state),
        });
        let inserted = lock(&self.objects).insert(entry);
        inserted.map_err(|entry| {
            let state = std::mem::replace(&mut *lock(&entry.state), ObjectState::Closed);
            let _ = contain("closing an object", || finish_object(state, false));
            Error::new(ErrorKind::OutOfMemory, "too many open objects")
        })
    }

    /// Close the open objects of a session: readers are closed, writers committed or aborted.
    /// Returns the first error; every failure is passed to `warn`.
    fn close_objects_of(
        &self,
        server_handle: u64,
        warn: &dyn Fn(&str),
        commit: bool,
    ) -> Result<()> {
        let open = lock(&self.objects).remove_where(|o| o.server_handle == server_handle);
        let mut first = Ok(());
        for (handle, entry) in open {
            let state = std::mem::replace(&mut *lock(&entry.state), ObjectState::Closed);
            if let Err(e) = contain("closing an object", || finish_object(state, commit)) {
                warn(&format!(
                    "object {handle:#x} left open failed to close: {e}"
                ));
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Close a session already removed from the table: its objects, then the plugin's session.
    /// Failures to close an object go to `log`: the session's own log during its
    /// `aapi_close_server`, the handshake's at `aapi_terminate`, which is no entry point of the
    /// session.
    fn shutdown_server(
        &self,
        handle: u64,
        entry: &ServerEntry<P::Server>,
        log: &LogTo,
    ) -> Result<()> {
        let _serial = self.serial();
        let mut state = write(&entry.state);
        state.closed = true;
        let _ = self.close_objects_of(handle, &|m| log.log(Level::Warning, m), false);
        let result = contain("aapi_close_server", || entry.server.close());
        drop(state);
        entry.host.close();
        result
    }

    /// `aapi_pgn_init`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents for `aapi_pgn_init`.
    pub unsafe fn pgn_init(
        &self,
        host_info: *const aapi_host_info_t,
        plugin_info: *mut aapi_plugin_info_t,
    ) -> c_int {
        self.call("aapi_pgn_init", |log| {
            let mut control = lock(&self.control);
            if control.plugin.is_some() {
                return Err(sequence(
                    "aapi_pgn_init called again without aapi_terminate",
                ));
            }
            raw::non_null(host_info, "host_info")?;
            raw::non_null(plugin_info, "plugin_info")?;
            // SAFETY: non-NULL and valid per the caller's contract.
            let hi = unsafe { raw::read_struct(host_info, "host_info")? };
            if hi.abi_major != AAPI_ABI_MAJOR {
                return Err(Error::new(
                    ErrorKind::Abi,
                    format!(
                        "framework ABI major {} differs from this plugin's {AAPI_ABI_MAJOR}",
                        hi.abi_major
                    ),
                ));
            }
            // SAFETY: as above.
            let out_size = unsafe { raw::struct_size(plugin_info, "plugin_info")? };
            let Some(log_fn) = hi.log_callback else {
                return Err(Error::invalid("host_info->log_callback is NULL"));
            };
            let sink = LogSink::new(hi.callback_ctx, log_fn);
            *log = LogTo::Sink(sink);
            let lossy = |p: *const c_char, what: &str| -> Result<String> {
                // SAFETY: the ABI makes these NUL-terminated strings valid for the process.
                let s = unsafe { raw::c_str(p, what)? };
                Ok(s.to_string_lossy().into_owned())
            };
            let info = HostInfo {
                framework_name: lossy(hi.framework_name, "host_info->framework_name")?,
                framework_version: lossy(hi.framework_version, "host_info->framework_version")?,
                abi_minor: hi.abi_minor,
                sink,
            };
            P::INFO.validate()?;
            let plugin = P::init(&info)?;
            let pi = P::INFO;
            let out = aapi_plugin_info_t {
                struct_size: out_size,
                abi_major: AAPI_ABI_MAJOR,
                abi_minor: AAPI_ABI_MINOR,
                name: pi.name.as_ptr(),
                version: pi.version.as_ptr(),
                vendor: pi.vendor.as_ptr(),
                workload_types: pi.workload_types.as_ptr(),
                capabilities: pi.capabilities,
                max_concurrent_objects: pi.max_concurrent_objects,
                reserved: 0,
            };
            // SAFETY: checked non-NULL, and struct_size says the whole struct is writable.
            unsafe { raw::write(plugin_info, out) };
            control.plugin = Some(plugin);
            control.log = Some(sink);
            self.phase.store(INIT, Ordering::Release);
            Ok(())
        })
    }

    /// `aapi_pgn_claim`.
    ///
    /// # Safety
    /// `workload_type` is NULL or a NUL-terminated string valid during the call.
    pub unsafe fn pgn_claim(&self, workload_type: *const c_char) -> c_int {
        self.call("aapi_pgn_claim", |log| {
            let control = lock(&self.control);
            let Some(plugin) = control.plugin.as_ref() else {
                return Err(sequence("aapi_pgn_claim before aapi_pgn_init"));
            };
            if let Some(sink) = control.log {
                *log = LogTo::Sink(sink);
            }
            // SAFETY: caller contract.
            let wt = unsafe { raw::c_str(workload_type, "workload_type")? };
            if wt.is_empty() {
                return Err(Error::invalid("workload_type is empty"));
            }
            if !wt.to_str().is_ok_and(|t| plugin.claim(t)) {
                return Err(Error::new(
                    ErrorKind::NotClaimed,
                    format!(
                        "workload type {:?} is not handled by {} (it handles {:?})",
                        wt.to_string_lossy(),
                        P::INFO.name.to_string_lossy(),
                        P::INFO.workload_types.to_string_lossy()
                    ),
                ));
            }
            self.phase.store(CLAIMED, Ordering::Release);
            Ok(())
        })
    }

    /// `aapi_open_server`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents; `session` and all it points to stay
    /// valid until `aapi_close_server` of the new handle returns.
    pub unsafe fn open_server(
        &self,
        server: *const c_char,
        session: *const aapi_session_def_t,
        server_handle: *mut aapi_server_t,
    ) -> c_int {
        self.call("aapi_open_server", |log| {
            let control = lock(&self.control);
            self.require_claimed("aapi_open_server")?;
            let plugin = control
                .plugin
                .as_ref()
                .ok_or_else(|| sequence("aapi_open_server before aapi_pgn_init"))?;
            raw::non_null(server, "server")?;
            raw::non_null(session, "session")?;
            raw::non_null(server_handle, "server_handle")?;
            // SAFETY: non-NULL and valid per the caller's contract.
            let sd = unsafe { raw::read_struct(session, "session")? };
            if let Some(f) = sd.sd_log_callback {
                *log = LogTo::Sink(LogSink::new(sd.sd_callback_ctx, f));
            }
            // SAFETY: as above.
            let name = raw::text(unsafe { raw::c_str(server, "server")? }, "server")?;
            // SAFETY: the session and everything it points to are valid per the caller.
            let session = unsafe { Self::session_from(&sd)? };
            let host = session.host.clone();
            let operation = session.operation;
            // Whatever happens below, a session that did not open never calls back.
            struct CloseOnDrop(Option<Host>);
            impl Drop for CloseOnDrop {
                fn drop(&mut self) {
                    if let Some(h) = self.0.take() {
                        h.close();
                    }
                }
            }
            let mut guard = CloseOnDrop(Some(host.clone()));
            // This call is the session's first entry point: its callbacks may be used now.
            let _running = host.enter();
            let server = plugin.open_server(name, session)?;
            let entry = Arc::new(ServerEntry {
                server,
                host,
                operation,
                state: RwLock::new(SessionState {
                    closed: false,
                    discovered: false,
                    postprocessed: false,
                    restore: RestorePhase::NotStarted,
                }),
            });
            let inserted = lock(&self.servers).insert(entry);
            let handle = match inserted {
                Ok(h) => h,
                Err(entry) => {
                    let _ = contain("aapi_close_server", || entry.server.close());
                    return Err(Error::new(ErrorKind::OutOfMemory, "too many open servers"));
                }
            };
            guard.0 = None;
            // SAFETY: checked non-NULL, valid per the caller's contract.
            unsafe { raw::write(server_handle, handle) };
            Ok(())
        })
    }

    /// Check and copy a session definition.
    ///
    /// # Safety
    /// Every pointer in `sd` is NULL or valid as the ABI documents.
    unsafe fn session_from(sd: &aapi_session_def_t) -> Result<Session> {
        if sd.abi_major != AAPI_ABI_MAJOR {
            return Err(Error::new(
                ErrorKind::Abi,
                format!(
                    "session ABI major {} differs from this plugin's {AAPI_ABI_MAJOR}",
                    sd.abi_major
                ),
            ));
        }
        let operation = Operation::from_raw(sd.sd_operation).ok_or_else(|| {
            Error::invalid(format!(
                "session->sd_operation {} is unknown",
                sd.sd_operation
            ))
        })?;
        let schedule = Schedule::from_raw(sd.sd_schedtype).ok_or_else(|| {
            Error::invalid(format!(
                "session->sd_schedtype {} is unknown",
                sd.sd_schedtype
            ))
        })?;
        let string = |p: *const c_char, what: &str| -> Result<String> {
            // SAFETY: caller contract: NULL or a valid NUL-terminated string.
            let s = unsafe { raw::c_str(p, what)? };
            s.to_str()
                .map(str::to_owned)
                .map_err(|_| Error::invalid(format!("{what} is not UTF-8")))
        };
        let job_id = string(sd.sd_job_id, "session->sd_job_id")?;
        let backup_host = string(sd.sd_backup_host, "session->sd_backup_host")?;
        let snapshot_id = string(sd.sd_snapid, "session->sd_snapid")?;
        let mut properties = Vec::with_capacity(sd.sd_property_count.min(4096));
        if sd.sd_property_count > 0 {
            raw::non_null(sd.sd_properties, "session->sd_properties")?;
            for i in 0..sd.sd_property_count {
                // SAFETY: the array holds sd_property_count entries per the caller's contract.
                let p = unsafe { std::ptr::read_unaligned(sd.sd_properties.add(i)) };
                let key = string(p.key, &format!("session->sd_properties[{i}].key"))?;
                let value = string(p.value, &format!("session->sd_properties[{i}].value"))?;
                properties.push((key, value));
            }
        }
        if sd.sd_call_budget_ms == 0 {
            return Err(Error::invalid("session->sd_call_budget_ms is 0"));
        }
        let callbacks = Callbacks {
            ctx: sd.sd_callback_ctx,
            log: sd
                .sd_log_callback
                .ok_or_else(|| Error::invalid("session->sd_log_callback is NULL"))?,
            keepalive: sd
                .sd_keepalive_callback
                .ok_or_else(|| Error::invalid("session->sd_keepalive_callback is NULL"))?,
            credential: sd
                .sd_credential_callback
                .ok_or_else(|| Error::invalid("session->sd_credential_callback is NULL"))?,
        };
        let call_budget = Duration::from_millis(u64::from(sd.sd_call_budget_ms));
        Ok(Session {
            operation,
            schedule,
            job_id,
            backup_host,
            snapshot_id,
            properties,
            call_budget,
            host: Host::new(callbacks, call_budget),
        })
    }

    /// `aapi_close_server`.
    pub fn close_server(&self, server: aapi_server_t) -> c_int {
        self.call("aapi_close_server", |log| {
            let _control = lock(&self.control);
            self.require_claimed("aapi_close_server")?;
            let entry = lock(&self.servers)
                .remove(server)
                .map_err(|why| bad_handle("server", server, why))?;
            *log = LogTo::Session(entry.host.enter());
            self.shutdown_server(server, &entry, log)
        })
    }

    /// `aapi_get_server_prop`.
    ///
    /// # Safety
    /// `server_info` is NULL or valid for its `struct_size` bytes.
    pub unsafe fn get_server_prop(
        &self,
        server: aapi_server_t,
        server_info: *mut aapi_server_info_t,
    ) -> c_int {
        const F: &str = "aapi_get_server_prop";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(server_info, "server_info")?;
            let all = [
                Operation::Discovery,
                Operation::Backup,
                Operation::Postprocess,
                Operation::Restore,
            ];
            self.session_call(log, F, server, &all, |entry, _| {
                // SAFETY: non-NULL, valid per the caller's contract.
                let size = unsafe { raw::struct_size(server_info, "server_info")? };
                let info = entry.server.server_info()?;
                let out = aapi_server_info_t {
                    struct_size: size,
                    reserved: 0,
                    srv_flags: info.flags(),
                };
                // SAFETY: as above; struct_size covers the whole struct.
                unsafe { raw::write(server_info, out) };
                Ok(())
            })
        })
    }

    /// Check and convert the shared parameters of discovery and postprocess.
    ///
    /// # Safety
    /// Pointers are non-NULL (checked) and valid per the ABI.
    unsafe fn backup_job(
        selections: *const *const c_char,
        backuphosts: *const *const c_char,
        wkldoutdir: *const c_char,
        wkldfilesuffix: *const c_char,
        schedule: Schedule,
    ) -> Result<BackupJob> {
        // SAFETY: caller contract.
        let sel = unsafe { raw::c_strings(selections, "selections")? };
        // SAFETY: caller contract.
        let hosts = unsafe { raw::c_strings(backuphosts, "backuphosts")? };
        let mut backup_hosts: Vec<String> = Vec::with_capacity(hosts.len());
        for (i, h) in hosts.iter().enumerate() {
            let h = raw::text(h, &format!("backuphosts[{i}]"))?;
            if h.contains('/') || h == "." || h == ".." {
                return Err(Error::invalid(format!(
                    "backuphosts[{i}] {h:?} cannot be part of a file name"
                )));
            }
            if backup_hosts.iter().any(|b| b == h) {
                return Err(Error::invalid(format!("backup host {h:?} is listed twice")));
            }
            backup_hosts.push(h.to_owned());
        }
        // SAFETY: caller contract.
        let dir = raw::path(
            unsafe { raw::c_str(wkldoutdir, "wkldoutdir")? },
            "wkldoutdir",
        )?;
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "wkldoutdir {} is not an existing directory",
                dir.display()
            )));
        }
        // SAFETY: caller contract.
        let suffix = unsafe { raw::c_str(wkldfilesuffix, "wkldfilesuffix")? }
            .to_str()
            .map_err(|_| Error::invalid("wkldfilesuffix is not UTF-8"))?;
        if suffix.contains('/') {
            return Err(Error::invalid("wkldfilesuffix contains '/'"));
        }
        Ok(BackupJob {
            selections: sel
                .iter()
                .map(|s| raw::path(s, "selection").map(Path::to_path_buf))
                .collect::<Result<_>>()?,
            backup_hosts,
            workload_dir: dir.to_path_buf(),
            workload_suffix: suffix.to_owned(),
            schedule,
        })
    }

    /// `aapi_discovery`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents for `aapi_discovery`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn discovery(
        &self,
        server: aapi_server_t,
        selections: *const *const c_char,
        backuphosts: *const *const c_char,
        wkldoutdir: *const c_char,
        wkldfilesuffix: *const c_char,
        schedtype: u32,
        snapid: *mut aapi_snapid_t,
    ) -> c_int {
        const F: &str = "aapi_discovery";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(selections, "selections")?;
            raw::non_null(backuphosts, "backuphosts")?;
            raw::non_null(wkldoutdir, "wkldoutdir")?;
            raw::non_null(wkldfilesuffix, "wkldfilesuffix")?;
            raw::non_null(snapid, "snapid")?;
            self.session_call_mut(log, F, server, &[Operation::Discovery], |entry, state| {
                if state.discovered {
                    return Err(sequence("aapi_discovery called twice in one session"));
                }
                let unsupported = || {
                    Error::new(
                        ErrorKind::ScheduleNotSupported,
                        format!("schedule type {schedtype} is not supported by this server"),
                    )
                };
                // SAFETY: non-NULL, valid per the caller's contract.
                let job = unsafe {
                    Self::backup_job(
                        selections,
                        backuphosts,
                        wkldoutdir,
                        wkldfilesuffix,
                        Schedule::Full,
                    )?
                };
                let schedule = Schedule::from_raw(schedtype).ok_or_else(unsupported)?;
                if !entry.server.server_info()?.supports(schedule) {
                    return Err(unsupported());
                }
                let job = BackupJob { schedule, ..job };
                state.discovered = true;
                let id = entry.server.discovery(&job)?;
                if id.len() >= AAPI_SNAPID_MAX || id.contains('\0') {
                    return Err(Error::internal(format!(
                        "discovery returned a snapshot id of {} bytes (at most {}, no NUL)",
                        id.len(),
                        AAPI_SNAPID_MAX - 1
                    )));
                }
                for h in &job.backup_hosts {
                    let file = job.workload_file(h);
                    if !file.is_file() {
                        return Err(Error::internal(format!(
                            "discovery succeeded but wrote no workload file {} for backup host {h:?}",
                            file.display()
                        )));
                    }
                }
                let mut out = aapi_snapid_t {
                    id: [0; AAPI_SNAPID_MAX],
                };
                for (d, s) in out.id.iter_mut().zip(id.bytes()) {
                    *d = s as c_char;
                }
                // SAFETY: checked non-NULL, valid per the caller's contract.
                unsafe { raw::write(snapid, out) };
                Ok(())
            })
        })
    }

    /// `aapi_postprocess`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents for `aapi_postprocess`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn postprocess(
        &self,
        server: aapi_server_t,
        selections: *const *const c_char,
        backuphosts: *const *const c_char,
        wkldoutdir: *const c_char,
        wkldfilesuffix: *const c_char,
        schedtype: u32,
        snapid: *const aapi_snapid_t,
    ) -> c_int {
        const F: &str = "aapi_postprocess";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(selections, "selections")?;
            raw::non_null(backuphosts, "backuphosts")?;
            raw::non_null(wkldoutdir, "wkldoutdir")?;
            raw::non_null(wkldfilesuffix, "wkldfilesuffix")?;
            raw::non_null(snapid, "snapid")?;
            self.session_call_mut(log, F, server, &[Operation::Postprocess], |entry, state| {
                if state.postprocessed {
                    return Err(sequence("aapi_postprocess called twice in one session"));
                }
                let schedule = Schedule::from_raw(schedtype).ok_or_else(|| {
                    Error::invalid(format!("schedule type {schedtype} is unknown"))
                })?;
                // SAFETY: non-NULL, valid per the caller's contract.
                let job = unsafe {
                    Self::backup_job(
                        selections,
                        backuphosts,
                        wkldoutdir,
                        wkldfilesuffix,
                        schedule,
                    )?
                };
                // SAFETY: non-NULL and valid per the caller's contract.
                let raw_id = unsafe { std::ptr::read_unaligned(snapid) };
                let bytes: Vec<u8> = raw_id.id.iter().map(|&c| c as u8).collect();
                let id = CStr::from_bytes_until_nul(&bytes)
                    .map_err(|_| Error::invalid("snapid->id has no NUL terminator"))?
                    .to_str()
                    .map_err(|_| Error::invalid("snapid->id is not UTF-8"))?;
                state.postprocessed = true;
                entry.server.postprocess(&job, id)
            })
        })
    }

    /// `aapi_get_snappath_from_realpath`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents; `snappath` holds `*snappath_size`
    /// writable bytes.
    pub unsafe fn get_snappath_from_realpath(
        &self,
        server: aapi_server_t,
        snapname: *const c_char,
        realpath: *const c_char,
        snappath: *mut c_char,
        snappath_size: *mut usize,
    ) -> c_int {
        const F: &str = "aapi_get_snappath_from_realpath";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(snapname, "snapname")?;
            raw::non_null(realpath, "realpath")?;
            raw::non_null(snappath_size, "snappath_size")?;
            // SAFETY: non-NULL, valid per the caller's contract.
            if snappath.is_null() && unsafe { raw::read_size(snappath_size) } != 0 {
                return Err(Error::invalid(
                    "snappath is NULL but *snappath_size is not 0",
                ));
            }
            self.session_call(log, F, server, &[Operation::Backup], |entry, _| {
                // SAFETY: non-NULL, valid per the caller's contract.
                let name = unsafe { raw::c_str(snapname, "snapname")? }
                    .to_str()
                    .map_err(|_| Error::invalid("snapname is not UTF-8"))?;
                // SAFETY: as above.
                let real = raw::path(unsafe { raw::c_str(realpath, "realpath")? }, "realpath")?;
                let mapped = entry.server.snapshot_path(name, real)?;
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(mapped.as_os_str());
                if bytes.is_empty() || bytes.contains(&0) {
                    return Err(Error::internal(
                        "snapshot_path returned an empty path or one with a NUL byte",
                    ));
                }
                // SAFETY: size is non-NULL; snappath holds *size bytes (or is NULL with 0).
                unsafe { raw::write_sized(bytes, snappath, snappath_size) }
            })
        })
    }

    /// `aapi_open_object`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents.
    pub unsafe fn open_object(
        &self,
        server: aapi_server_t,
        path: *const c_char,
        flags: u32,
        object: *mut aapi_object_t,
    ) -> c_int {
        const F: &str = "aapi_open_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(path, "path")?;
            raw::non_null(object, "object")?;
            self.session_call(log, F, server, &[Operation::Backup], |entry, _| {
                if flags != AAPI_OPEN_READ {
                    return Err(Error::invalid(format!(
                        "flags {flags:#x}: ABI 1.0 knows only AAPI_OPEN_READ, and it must be given"
                    )));
                }
                // SAFETY: non-NULL, valid per the caller's contract.
                let path = raw::path(unsafe { raw::c_str(path, "path")? }, "path")?;
                let reader = entry.server.open_object(path)?;
                let state = ObjectState::Read {
                    object: reader,
                    at_end: false,
                };
                let handle = self.insert_object(entry, server, state)?;
                // SAFETY: checked non-NULL, valid per the caller's contract.
                unsafe { raw::write(object, handle) };
                Ok(())
            })
        })
    }

    /// `aapi_create_object`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents.
    pub unsafe fn create_object(
        &self,
        server: aapi_server_t,
        path: *const c_char,
        prop: *const aapi_object_prop_t,
        flags: u32,
        object: *mut aapi_object_t,
    ) -> c_int {
        const F: &str = "aapi_create_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(path, "path")?;
            raw::non_null(prop, "prop")?;
            raw::non_null(object, "object")?;
            self.session_call(log, F, server, &[Operation::Restore], |entry, state| {
                Self::require_restore_window(state, F)?;
                // SAFETY: non-NULL, valid per the caller's contract.
                let raw_prop = unsafe { raw::read_struct(prop, "prop")? };
                if flags & !AAPI_CREATE_OVERWRITE != 0 {
                    return Err(Error::invalid(format!("unknown flags {flags:#x}")));
                }
                // SAFETY: as above.
                let path = raw::path(unsafe { raw::c_str(path, "path")? }, "path")?;
                let props = ObjectProps::from_raw(&raw_prop)?;
                let overwrite = flags & AAPI_CREATE_OVERWRITE != 0;
                let writer = entry.server.create_object(path, &props, overwrite)?;
                let handle = self.insert_object(entry, server, ObjectState::Write(writer))?;
                // SAFETY: checked non-NULL, valid per the caller's contract.
                unsafe { raw::write(object, handle) };
                Ok(())
            })
        })
    }

    /// `aapi_delete_object`.
    ///
    /// # Safety
    /// `path` is NULL or a NUL-terminated string valid during the call.
    pub unsafe fn delete_object(&self, server: aapi_server_t, path: *const c_char) -> c_int {
        const F: &str = "aapi_delete_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(path, "path")?;
            self.session_call(log, F, server, &[Operation::Restore], |entry, state| {
                Self::require_restore_window(state, F)?;
                // SAFETY: non-NULL, valid per the caller's contract.
                let path = raw::path(unsafe { raw::c_str(path, "path")? }, "path")?;
                entry.server.delete_object(path)
            })
        })
    }

    /// An object call: phase and handle checked, session host set for panic logs, serialised
    /// when the plugin is not concurrent, the object locked.
    fn object_call(
        &self,
        log: &mut LogTo,
        object: aapi_object_t,
        f: impl FnOnce(&mut ObjectState<P::Server>) -> Result<()>,
    ) -> Result<()> {
        let entry = self.object_entry(object)?;
        *log = LogTo::Session(entry.server.host.enter());
        let _serial = self.serial();
        let mut state = lock(&entry.state);
        if let ObjectState::Closed = *state {
            return Err(bad_handle("object", object, HandleError::Closed));
        }
        f(&mut state)
    }

    /// `aapi_read_object`.
    ///
    /// # Safety
    /// `buf` is NULL or valid for `buf_size` bytes of writes; `bytes_read` is NULL or writable.
    pub unsafe fn read_object(
        &self,
        object: aapi_object_t,
        buf: *mut c_void,
        buf_size: usize,
        bytes_read: *mut usize,
    ) -> c_int {
        const F: &str = "aapi_read_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(buf, "buf")?;
            raw::non_null(bytes_read, "bytes_read")?;
            self.object_call(log, object, |state| {
                let ObjectState::Read { object, at_end } = state else {
                    return Err(sequence(
                        "aapi_read_object on an object created for writing",
                    ));
                };
                if buf_size == 0 {
                    return Err(Error::invalid("buf_size is 0"));
                }
                let n = if *at_end {
                    0
                } else {
                    // SAFETY: the caller gives `buf_size` writable bytes at `buf` (non-NULL),
                    // exclusively for this call; the plugin only sees them as a byte slice.
                    let slice = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, buf_size) };
                    let n = object.read(slice)?;
                    if n > buf_size {
                        return Err(Error::internal(format!(
                            "read returned {n} bytes for a buffer of {buf_size}"
                        )));
                    }
                    *at_end = n == 0;
                    n
                };
                // SAFETY: checked non-NULL, valid per the caller's contract.
                unsafe { raw::write(bytes_read, n) };
                Ok(())
            })
        })
    }

    /// `aapi_write_object`.
    ///
    /// # Safety
    /// `buf` is NULL or valid for `len` bytes of reads.
    pub unsafe fn write_object(
        &self,
        object: aapi_object_t,
        buf: *const c_void,
        len: usize,
    ) -> c_int {
        const F: &str = "aapi_write_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            if len > 0 {
                raw::non_null(buf, "buf")?;
            }
            self.object_call(log, object, |state| {
                let ObjectState::Write(w) = state else {
                    return Err(sequence(
                        "aapi_write_object on an object opened for reading",
                    ));
                };
                if len == 0 {
                    return Ok(());
                }
                // SAFETY: the caller gives `len` readable bytes at `buf` (non-NULL).
                let data = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
                w.write(data)
            })
        })
    }

    /// `aapi_flush`.
    pub fn flush(&self, object: aapi_object_t) -> c_int {
        const F: &str = "aapi_flush";
        self.call(F, |log| {
            self.require_claimed(F)?;
            self.object_call(log, object, |state| match state {
                ObjectState::Write(w) => w.flush(),
                _ => Err(sequence("aapi_flush on an object opened for reading")),
            })
        })
    }

    /// `aapi_close_object`.
    pub fn close_object(&self, object: aapi_object_t) -> c_int {
        const F: &str = "aapi_close_object";
        self.call(F, |log| {
            self.require_claimed(F)?;
            let entry = lock(&self.objects)
                .remove(object)
                .map_err(|why| bad_handle("object", object, why))?;
            *log = LogTo::Session(entry.server.host.enter());
            let _serial = self.serial();
            let state = std::mem::replace(&mut *lock(&entry.state), ObjectState::Closed);
            if let ObjectState::Closed = state {
                return Err(bad_handle("object", object, HandleError::Closed));
            }
            finish_object(state, true)
        })
    }

    /// `aapi_get_object_prop`.
    ///
    /// # Safety
    /// `prop` is NULL or valid for its `struct_size` bytes.
    pub unsafe fn get_object_prop(
        &self,
        object: aapi_object_t,
        prop: *mut aapi_object_prop_t,
    ) -> c_int {
        const F: &str = "aapi_get_object_prop";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(prop, "prop")?;
            self.object_call(log, object, |state| {
                // SAFETY: non-NULL, valid per the caller's contract.
                let size = unsafe { raw::struct_size(prop, "prop")? };
                let props = match state {
                    ObjectState::Read { object, .. } => object.props()?,
                    ObjectState::Write(w) => w.props()?,
                    ObjectState::Closed => unreachable!("object_call refuses closed objects"),
                };
                // SAFETY: as above; struct_size covers the whole struct.
                unsafe { raw::write(prop, props.to_raw(size)) };
                Ok(())
            })
        })
    }

    /// `aapi_get_object_prop_byname`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents.
    pub unsafe fn get_object_prop_byname(
        &self,
        server: aapi_server_t,
        path: *const c_char,
        prop: *mut aapi_object_prop_t,
    ) -> c_int {
        const F: &str = "aapi_get_object_prop_byname";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(path, "path")?;
            raw::non_null(prop, "prop")?;
            let ops = [Operation::Backup, Operation::Restore];
            self.session_call(log, F, server, &ops, |entry, state| {
                if entry.operation == Operation::Restore {
                    Self::require_restore_window(state, F)?;
                }
                // SAFETY: non-NULL, valid per the caller's contract.
                let size = unsafe { raw::struct_size(prop, "prop")? };
                // SAFETY: as above.
                let path = raw::path(unsafe { raw::c_str(path, "path")? }, "path")?;
                let props = entry.server.object_props(path)?;
                // SAFETY: as above; struct_size covers the whole struct.
                unsafe { raw::write(prop, props.to_raw(size)) };
                Ok(())
            })
        })
    }

    /// `aapi_set_object_utimes`.
    ///
    /// # Safety
    /// Each pointer is NULL or valid as the ABI documents.
    pub unsafe fn set_object_utimes(
        &self,
        server: aapi_server_t,
        path: *const c_char,
        atime: *const aapi_time_t,
        mtime: *const aapi_time_t,
    ) -> c_int {
        const F: &str = "aapi_set_object_utimes";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(path, "path")?;
            self.session_call(log, F, server, &[Operation::Restore], |entry, state| {
                Self::require_restore_window(state, F)?;
                let time = |p: *const aapi_time_t| -> Result<Option<Timestamp>> {
                    if p.is_null() {
                        return Ok(None);
                    }
                    // SAFETY: non-NULL, valid per the caller's contract.
                    Timestamp::from_raw(&unsafe { std::ptr::read_unaligned(p) }).map(Some)
                };
                let (a, m) = (time(atime)?, time(mtime)?);
                // SAFETY: non-NULL, valid per the caller's contract.
                let path = raw::path(unsafe { raw::c_str(path, "path")? }, "path")?;
                entry.server.set_times(path, a, m)
            })
        })
    }

    /// `aapi_restore_preprocess`.
    ///
    /// # Safety
    /// `restore_info` is NULL or valid as the ABI documents.
    pub unsafe fn restore_preprocess(
        &self,
        server: aapi_server_t,
        restore_info: *const aapi_restore_info_t,
    ) -> c_int {
        const F: &str = "aapi_restore_preprocess";
        self.call(F, |log| {
            self.require_claimed(F)?;
            raw::non_null(restore_info, "restore_info")?;
            self.session_call_mut(log, F, server, &[Operation::Restore], |entry, state| {
                match state.restore {
                    RestorePhase::NotStarted => {}
                    RestorePhase::Open => {
                        return Err(sequence("aapi_restore_preprocess called twice"));
                    }
                    RestorePhase::Finished => {
                        return Err(sequence(
                            "aapi_restore_preprocess after aapi_restore_postprocess",
                        ));
                    }
                }
                // SAFETY: non-NULL, valid per the caller's contract.
                let ri = unsafe { raw::read_struct(restore_info, "restore_info")? };
                // SAFETY: the ABI makes target_root NULL or a valid string.
                let root = unsafe { raw::c_str(ri.target_root, "restore_info->target_root")? };
                let target_root = if root.is_empty() {
                    None
                } else {
                    if !P::INFO.has(AAPI_CAP_ALTERNATE_RESTORE) {
                        return Err(Error::not_supported(
                            "restore to an alternate root is not supported by this plugin",
                        ));
                    }
                    Some(raw::path(root, "target_root")?.to_path_buf())
                };
                let info = RestoreInfo {
                    target_root,
                    total_bytes: ri.total_bytes,
                    object_count: ri.object_count,
                };
                entry.server.restore_preprocess(&info)?;
                state.restore = RestorePhase::Open;
                Ok(())
            })
        })
    }

    /// `aapi_restore_postprocess`.
    pub fn restore_postprocess(&self, server: aapi_server_t, status: c_int) -> c_int {
        const F: &str = "aapi_restore_postprocess";
        self.call(F, |log| {
            self.require_claimed(F)?;
            self.session_call_mut(log, F, server, &[Operation::Restore], |entry, state| {
                match state.restore {
                    RestorePhase::Open => {}
                    RestorePhase::NotStarted => {
                        return Err(sequence(
                            "aapi_restore_postprocess before aapi_restore_preprocess",
                        ));
                    }
                    RestorePhase::Finished => {
                        return Err(sequence("aapi_restore_postprocess called twice"));
                    }
                }
                state.restore = RestorePhase::Finished;
                let mut status = RestoreStatus::from_code(status);
                let warn = |m: &str| entry.host.warn(m);
                let closed = self.close_objects_of(server, &warn, status.is_success());
                if let Err(e) = &closed {
                    status = RestoreStatus::Failed(e.code());
                    entry.host.error(format!(
                        "an object left open could not be completed ({e}); rolling back with {}",
                        codes::name(e.code())
                    ));
                }
                entry.server.restore_postprocess(status)?;
                closed
            })
        })
    }

    /// `aapi_terminate`.
    pub fn terminate(&self) -> c_int {
        self.call("aapi_terminate", |log| {
            let mut control = lock(&self.control);
            if control.plugin.is_none() {
                return Ok(());
            }
            if let Some(sink) = control.log {
                *log = LogTo::Sink(sink);
            }
            self.phase.store(UNINIT, Ordering::Release);
            let servers = lock(&self.servers).remove_where(|_| true);
            for (handle, entry) in servers {
                if let Err(e) = self.shutdown_server(handle, &entry, log) {
                    log.log(
                        Level::Warning,
                        &format!("closing server {handle:#x} at terminate: {e}"),
                    );
                }
            }
            control.log = None;
            if let Some(plugin) = control.plugin.take() {
                plugin.terminate();
            }
            Ok(())
        })
    }

    /// `aapi_get_last_error`. Does not change the stored message, even when it fails.
    ///
    /// # Safety
    /// `buf_size` is NULL or valid for reads and writes; `buf` is NULL or holds `*buf_size`
    /// writable bytes.
    pub unsafe fn get_last_error(&self, buf: *mut c_char, buf_size: *mut usize) -> c_int {
        let _in_call = InCall::enter();
        let result = catch_unwind(AssertUnwindSafe(|| {
            if buf_size.is_null() {
                return AAPI_EINVAL;
            }
            // SAFETY: non-NULL, valid per the caller's contract.
            if buf.is_null() && unsafe { raw::read_size(buf_size) } != 0 {
                return AAPI_EINVAL;
            }
            let message = LAST_ERROR
                .try_with(|m| m.borrow().clone())
                .unwrap_or_default();
            // SAFETY: buf_size non-NULL; buf holds *buf_size bytes or is NULL with 0.
            match unsafe { raw::write_sized(&message, buf, buf_size) } {
                Ok(()) => AAPI_EOK,
                Err(e) => e.code(),
            }
        }));
        result.unwrap_or_else(|payload| {
            drop_payload(payload);
            AAPI_EINTERNAL
        })
    }
}
