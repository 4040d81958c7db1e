//! Services of the framework as the plugin sees them: logging, keepalives and credentials
//! (through the callbacks of the handshake and the session definition), and the session itself.

use super::error::{Error, ErrorKind, Result};
use super::types::{Operation, Schedule};
use crate::abi::*;
use crate::codes;
use core::ffi::{c_char, c_int, c_void};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Log level of a line sent to the framework (`AAPI_LOG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// An error the job reports.
    Error,
    /// Something unexpected that did not fail the call.
    Warning,
    /// Progress and decisions.
    Info,
    /// Details for troubleshooting.
    Debug,
}

impl Level {
    /// The `AAPI_LOG_*` value.
    pub fn raw(self) -> u32 {
        match self {
            Level::Error => AAPI_LOG_ERROR,
            Level::Warning => AAPI_LOG_WARNING,
            Level::Info => AAPI_LOG_INFO,
            Level::Debug => AAPI_LOG_DEBUG,
        }
    }
}

/// A C string of `message`; a NUL byte inside becomes `\0` so that nothing is cut off.
pub(crate) fn c_text(message: &str) -> CString {
    CString::new(message.replace('\0', "\\0")).expect("NUL bytes were replaced")
}

/// A log callback and its context, copied from a handshake or session struct.
#[derive(Clone, Copy)]
pub(crate) struct LogSink {
    ctx: *mut c_void,
    f: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
}

// SAFETY: the ABI makes the log callbacks callable from any thread (with their context pointer)
// while an entry point is running; the sink is only a copy of the two pointers.
unsafe impl Send for LogSink {}
// SAFETY: as above; the sink has no interior state.
unsafe impl Sync for LogSink {}

impl LogSink {
    pub(crate) fn new(
        ctx: *mut c_void,
        f: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    ) -> LogSink {
        LogSink { ctx, f }
    }

    pub(crate) fn log(&self, level: Level, message: &str) {
        let text = c_text(message);
        // SAFETY: the framework gave this callback and context for this purpose; `text` is a
        // NUL-terminated string that lives until the call returns.
        unsafe { (self.f)(self.ctx, level.raw(), text.as_ptr()) }
    }
}

/// What the framework said about itself in `aapi_pgn_init`, with its log callback (usable
/// during init, claim and terminate; sessions bring their own, see [`Host`]).
pub struct HostInfo {
    pub(crate) framework_name: String,
    pub(crate) framework_version: String,
    pub(crate) abi_minor: u16,
    pub(crate) sink: LogSink,
}

impl HostInfo {
    /// The framework's name.
    pub fn framework_name(&self) -> &str {
        &self.framework_name
    }

    /// The framework's version.
    pub fn framework_version(&self) -> &str {
        &self.framework_version
    }

    /// The framework's ABI minor version (its major equals the plugin's, or init fails first).
    pub fn abi_minor(&self) -> u16 {
        self.abi_minor
    }

    /// Send a log line to the framework.
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        self.sink.log(level, message.as_ref());
    }
}

impl fmt::Debug for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostInfo")
            .field("framework_name", &self.framework_name)
            .field("framework_version", &self.framework_version)
            .field("abi_minor", &self.abi_minor)
            .finish_non_exhaustive()
    }
}

/// The raw session callbacks.
pub(crate) struct Callbacks {
    pub(crate) ctx: *mut c_void,
    pub(crate) log: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    pub(crate) keepalive: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub(crate) credential:
        unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_char, *mut usize) -> c_int,
}

/// When a session's callbacks may be called.
struct Gate {
    /// False once the session is closed: the callbacks are not called any more.
    open: bool,
    /// The session's entry points running now (`aapi_open_server` included).
    running: usize,
}

/// Log lines sent while none of the session's entry points ran, for the start of the next one.
#[derive(Default)]
struct Pending {
    lines: VecDeque<(Level, CString)>,
    /// Lines not kept because `lines` was full.
    dropped: u64,
}

/// How many log lines a session keeps while none of its entry points runs.
const PENDING_LINES: usize = 64;

struct HostInner {
    callbacks: Callbacks,
    /// Held for reading around every callback and for writing to enter or leave an entry point
    /// or to close: an entry point does not end, and a session does not close, while a
    /// callback is in progress.
    gate: RwLock<Gate>,
    /// Taken only while holding `gate`.
    pending: Mutex<Pending>,
    interval: Duration,
    last_keepalive: Mutex<Instant>,
    cancelled: AtomicBool,
}

// SAFETY: the ABI makes the session callbacks callable from any thread while an entry point of
// the session runs; `gate` lets them through only then, and the rest is Sync.
unsafe impl Send for HostInner {}
// SAFETY: as above.
unsafe impl Sync for HostInner {}

/// The framework's services for one session: logging, keepalives, credentials. Cheap to clone
/// and usable from any thread; the objects of a session may keep a clone, and threads the
/// plugin starts may use one.
///
/// The framework's callbacks may be called only while an entry point of this session runs,
/// from any thread (THR-3: `aapi_open_server`, `aapi_close_server` and every call on the
/// session's handle or on one of its objects' handles). The SDK counts those entry points and
/// keeps every other use away from the framework:
///
/// - while none of them runs (between calls, or while only other sessions' calls run), a log
///   line is kept (up to 64 of them; later ones are counted and reported as dropped) and sent
///   at the start of the session's next entry point, from that entry point's thread;
///   [`keepalive`](Host::keepalive) and [`keepalive_if_due`](Host::keepalive_if_due) answer
///   `Ok(())` without calling the framework (no call of the session is waiting on it), and
///   [`credential`](Host::credential) fails with `AAPI_ESEQUENCE`;
/// - once the session is closed (`aapi_close_server`, or `aapi_terminate` with the session
///   open), logging does nothing, the lines still kept are dropped, and keepalives and
///   credentials fail with `AAPI_ESEQUENCE`: the framework's callbacks are never called after
///   `aapi_close_server`.
///
/// So a thread of the plugin that outlives the call that started it may go on logging, but
/// its keepalives keep nothing alive: work the framework waits for belongs inside an entry
/// point.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("keepalive_interval", &self.inner.interval)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// What became of a use of the callbacks.
enum Gated<R> {
    /// The callback ran and returned this.
    Called(R),
    /// None of the session's entry points is running: the callback was not called.
    Idle,
    /// The session is closed: the callback was not called.
    Closed,
}

/// One running entry point of a session, counted while it lives (see [`Host::enter`]).
pub(crate) struct Running {
    host: Host,
}

impl Running {
    /// The session's services.
    pub(crate) fn host(&self) -> &Host {
        &self.host
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut gate = self.host.gate_mut();
        gate.running = gate.running.saturating_sub(1);
    }
}

/// Longest secret accepted from the credential callback, in bytes.
const MAX_SECRET: usize = 1 << 20;

impl Host {
    pub(crate) fn new(callbacks: Callbacks, call_budget: Duration) -> Host {
        Host {
            inner: Arc::new(HostInner {
                callbacks,
                gate: RwLock::new(Gate {
                    open: true,
                    running: 0,
                }),
                pending: Mutex::new(Pending::default()),
                interval: keepalive_interval(call_budget),
                last_keepalive: Mutex::new(Instant::now()),
                cancelled: AtomicBool::new(false),
            }),
        }
    }

    fn gate_mut(&self) -> std::sync::RwLockWriteGuard<'_, Gate> {
        self.inner
            .gate
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Count an entry point of the session as running until the returned value is dropped,
    /// after sending, from this thread, the log lines kept while none ran.
    pub(crate) fn enter(&self) -> Running {
        let kept = {
            let mut gate = self.gate_mut();
            gate.running += 1;
            std::mem::take(&mut *self.pending())
        };
        let running = Running { host: self.clone() };
        for (level, text) in &kept.lines {
            self.log_c(*level, text);
        }
        if kept.dropped > 0 {
            self.log(
                Level::Warning,
                format!(
                    "{} more log lines, sent while no entry point of this session was running, were dropped",
                    kept.dropped
                ),
            );
        }
        running
    }

    /// Stop every later use of the callbacks (waits for callbacks in progress) and drop the
    /// log lines still kept.
    pub(crate) fn close(&self) {
        let mut gate = self.gate_mut();
        gate.open = false;
        *self.pending() = Pending::default();
    }

    /// Run `f` with the callbacks if the session is open and one of its entry points runs.
    fn gated<R>(&self, f: impl FnOnce(&Callbacks) -> R) -> Gated<R> {
        let gate = self
            .inner
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if !gate.open {
            Gated::Closed
        } else if gate.running == 0 {
            Gated::Idle
        } else {
            Gated::Called(f(&self.inner.callbacks))
        }
    }

    fn closed_error() -> Error {
        Error::new(
            ErrorKind::Sequence,
            "the session is closed: its callbacks may no longer be used",
        )
    }

    /// Send a log line to the framework now if one of the session's entry points runs, else
    /// keep it for the next one (see [`Host`]); does nothing once the session is closed.
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        self.log_c(level, &c_text(message.as_ref()));
    }

    fn log_c(&self, level: Level, text: &CString) {
        let gate = self
            .inner
            .gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if !gate.open {
            return;
        }
        if gate.running == 0 {
            let mut pending = self.pending();
            if pending.lines.len() < PENDING_LINES {
                pending.lines.push_back((level, text.clone()));
            } else {
                pending.dropped += 1;
            }
            return;
        }
        let cb = &self.inner.callbacks;
        // SAFETY: the session is open and one of its entry points runs (held by `gate`), so
        // the callback and its context are valid; `text` is NUL-terminated and outlives the
        // call.
        unsafe { (cb.log)(cb.ctx, level.raw(), text.as_ptr()) }
    }

    /// Log at [`Level::Error`].
    pub fn error(&self, message: impl AsRef<str>) {
        self.log(Level::Error, message);
    }

    /// Log at [`Level::Warning`].
    pub fn warn(&self, message: impl AsRef<str>) {
        self.log(Level::Warning, message);
    }

    /// Log at [`Level::Info`].
    pub fn info(&self, message: impl AsRef<str>) {
        self.log(Level::Info, message);
    }

    /// Log at [`Level::Debug`].
    pub fn debug(&self, message: impl AsRef<str>) {
        self.log(Level::Debug, message);
    }

    /// Send a keepalive now. `Err` with [`ErrorKind::Cancelled`] when the framework answers
    /// that the job is cancelled (and from then on, without calling it again): stop the work,
    /// clean up and return the error within `AAPI_CANCEL_BOUND_MS`. `Ok(())` without calling
    /// the framework while none of the session's entry points runs, and `AAPI_ESEQUENCE` once
    /// the session is closed (see [`Host`]).
    pub fn keepalive(&self) -> Result<()> {
        let mut last = self
            .inner
            .last_keepalive
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.send_keepalive(&mut last)
    }

    /// Send a keepalive if [`keepalive_interval`](Host::keepalive_interval) has passed since
    /// the last one; call it often (per directory entry, per MiB) during long work. Errors as
    /// [`keepalive`](Host::keepalive).
    pub fn keepalive_if_due(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(cancelled_error(AAPI_ECANCELLED));
        }
        let mut last = self
            .inner
            .last_keepalive
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() < self.inner.interval {
            return Ok(());
        }
        self.send_keepalive(&mut last)
    }

    fn send_keepalive(&self, last: &mut Instant) -> Result<()> {
        if self.is_cancelled() {
            return Err(cancelled_error(AAPI_ECANCELLED));
        }
        // SAFETY: the session is open and one of its entry points runs (checked by gated), so
        // callback and context are valid.
        let rc = match self.gated(|cb| unsafe { (cb.keepalive)(cb.ctx) }) {
            Gated::Called(rc) => rc,
            // No call of the session runs, so none is waiting to be kept alive.
            Gated::Idle => return Ok(()),
            Gated::Closed => return Err(Host::closed_error()),
        };
        *last = Instant::now();
        if rc == AAPI_EOK {
            Ok(())
        } else {
            self.inner.cancelled.store(true, Ordering::SeqCst);
            Err(cancelled_error(rc))
        }
    }

    /// How often [`keepalive_if_due`](Host::keepalive_if_due) sends: a quarter of the call
    /// budget, at most one second.
    pub fn keepalive_interval(&self) -> Duration {
        self.inner.interval
    }

    /// Whether a keepalive was answered with a cancellation in this session.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// The secret stored under `key`, `Ok(None)` when the framework has none. The buffer grows
    /// to the size the framework asks for; every buffer used is wiped, and the returned
    /// [`Secret`] wipes itself when dropped. `AAPI_ESEQUENCE` while none of the session's entry
    /// points runs and once the session is closed (see [`Host`]).
    pub fn credential(&self, key: &str) -> Result<Option<Secret>> {
        let c_key =
            CString::new(key).map_err(|_| Error::invalid("credential key contains a NUL byte"))?;
        let mut capacity = 256;
        for _ in 0..4 {
            let mut buf = Secret::zeroed(capacity);
            let mut size = capacity;
            let called = self.gated(|cb| {
                // SAFETY: the session is open and one of its entry points runs; `c_key` is
                // NUL-terminated, `buf` holds `size` writable bytes and `size` is a valid in/out
                // location.
                unsafe {
                    (cb.credential)(
                        cb.ctx,
                        c_key.as_ptr(),
                        buf.buf.as_mut_ptr() as *mut c_char,
                        &mut size,
                    )
                }
            });
            let rc = match called {
                Gated::Called(rc) => rc,
                Gated::Idle => {
                    return Err(Error::new(
                        ErrorKind::Sequence,
                        format!(
                            "credential {key:?} asked for while no entry point of the session was running: the framework's callbacks may be used only during one"
                        ),
                    ));
                }
                Gated::Closed => return Err(Host::closed_error()),
            };
            match rc {
                AAPI_EOK => {
                    if size == 0 || size > capacity || buf.buf[size - 1] != 0 {
                        return Err(Error::new(
                            ErrorKind::Auth,
                            format!("credential callback for {key:?} returned a malformed secret"),
                        ));
                    }
                    buf.len = size - 1;
                    return Ok(Some(buf));
                }
                AAPI_EBUFSIZE if size > capacity && size <= MAX_SECRET => capacity = size,
                AAPI_EBUFSIZE => {
                    return Err(Error::new(
                        ErrorKind::Auth,
                        format!(
                            "credential callback for {key:?} asked for {size} bytes (capacity {capacity}, limit {MAX_SECRET})"
                        ),
                    ));
                }
                AAPI_ENOENT => return Ok(None),
                other => {
                    let kind = ErrorKind::from_code(other).unwrap_or(ErrorKind::Auth);
                    return Err(Error::new(
                        kind,
                        format!(
                            "credential callback for {key:?} failed with {}",
                            codes::name(other)
                        ),
                    ));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Auth,
            format!("credential callback for {key:?} kept asking for a larger buffer"),
        ))
    }
}

fn cancelled_error(rc: c_int) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!(
            "the framework cancelled the job (keepalive answered {})",
            codes::name(rc)
        ),
    )
}

/// The keepalive interval for a call budget: a quarter of it, at most one second.
pub fn keepalive_interval(call_budget: Duration) -> Duration {
    (call_budget / 4).min(Duration::from_secs(1))
}

/// A secret from the credential callback. Its memory is overwritten with zeros when dropped;
/// `Debug` does not show it.
pub struct Secret {
    buf: Vec<u8>,
    len: usize,
}

impl Secret {
    fn zeroed(capacity: usize) -> Secret {
        Secret {
            buf: vec![0; capacity],
            len: 0,
        }
    }

    /// The secret's bytes (without the terminating NUL).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The secret as UTF-8; `AAPI_EAUTH` when it is not.
    pub fn as_str(&self) -> Result<&str> {
        std::str::from_utf8(self.as_bytes())
            .map_err(|_| Error::new(ErrorKind::Auth, "credential is not UTF-8"))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.buf.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; a volatile write keeps the
            // compiler from removing the wipe as a dead store.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.len)
    }
}

/// A session as given to `aapi_open_server`, checked and copied: the operation (which decides
/// the legal calls), schedule, job, properties, budget, and the framework's [`Host`] services.
#[derive(Debug, Clone)]
pub struct Session {
    pub(crate) operation: Operation,
    pub(crate) schedule: Schedule,
    pub(crate) job_id: String,
    pub(crate) backup_host: String,
    pub(crate) snapshot_id: String,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) call_budget: Duration,
    pub(crate) host: Host,
}

impl Session {
    /// What the session is for.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The schedule of the backup this session belongs to (`Full` for restores).
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The job identifier, unique per job.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The backup host this session runs on.
    pub fn backup_host(&self) -> &str {
        &self.backup_host
    }

    /// The snapshot id from discovery (backup and postprocess sessions), else "".
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// Every property, in the framework's order.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// The value of the first property named `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The per-call budget: return within it, or send keepalives (see [`Host::keepalive_if_due`]).
    pub fn call_budget(&self) -> Duration {
        self.call_budget
    }

    /// The framework's services for this session.
    pub fn host(&self) -> &Host {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_quarter_of_the_budget_at_most_a_second() {
        assert_eq!(
            keepalive_interval(Duration::from_secs(300)),
            Duration::from_secs(1)
        );
        assert_eq!(
            keepalive_interval(Duration::from_millis(400)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn text_keeps_everything_after_a_nul() {
        assert_eq!(c_text("a\0b").as_bytes(), b"a\\0b");
    }

    #[test]
    fn secret_is_redacted() {
        let mut s = Secret::zeroed(8);
        s.buf[..3].copy_from_slice(b"pw!");
        s.len = 3;
        assert_eq!(s.as_bytes(), b"pw!");
        assert_eq!(format!("{s:?}"), "Secret(3 bytes, redacted)");
    }
}
