//! Supervision of worker processes that run plugin code.
//!
//! A plugin runs only inside a *worker*: a child process that loads it, makes the calls and reports
//! what happens as [`Event`]s, one JSON object per line, on a dedicated pipe (never on stdout or
//! stderr, which stay free for whatever the plugin prints). The *supervisor* side ([`Worker`])
//! reads those events and enforces the contract's timing rules:
//!
//! - **Per-call budget** (TIME-1): while a plugin call runs, it must either return or call the
//!   keepalive callback at least every `budget`; otherwise the worker is killed and the job
//!   reports [`WorkerEnd::TimedOut`] naming the function. The running call and its last sign of
//!   life are shared through a small memory mapping (two atomic stores per call, no syscall);
//!   with [`TRACE_ENV`] set, every call and keepalive is also sent as an event.
//! - **Crash**: a worker killed by a signal is reported as [`WorkerEnd::Crashed`] with the signal and
//!   the function that was running.
//! - **Cancel** (TIME-4): [`CancelHandle::cancel`] tells the worker; its keepalive callback then
//!   answers `AAPI_ECANCELLED`, and the plugin must return within `min(cancel_bound, budget)` from
//!   the cancel (or from the start of the call that was running), else [`WorkerEnd::CancelIgnored`].
//!
//! Worker side: [`WorkerLink::from_env`] connects to the pipes a supervisor set up; the link
//! implements [`HostHooks`], so a [`crate::client::Plugin`] initialised with it reports every call,
//! log line and keepalive by itself; [`guard_process_group`] makes whatever the plugin starts die
//! with the supervisor. Any binary can host workers: spawn it through
//! [`Worker::spawn`] with a `Command` that runs code calling [`WorkerLink::from_env`].
//! The `aapi-host` binary does so in its hidden `worker` subcommand.

use crate::client::HostHooks;
use aapi_sdk::abi::AAPI_LOG_WARNING;
use aapi_sdk::version::ENTRY_POINTS;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable carrying the event pipe's file descriptor number to a worker.
pub const EVENT_FD_ENV: &str = "AAPI_WORKER_EVENT_FD";
/// Environment variable carrying the control pipe's file descriptor number to a worker.
pub const CONTROL_FD_ENV: &str = "AAPI_WORKER_CONTROL_FD";

/// Environment variable carrying the descriptor of the shared call-state memory to a worker.
pub const STATE_FD_ENV: &str = "AAPI_WORKER_STATE_FD";
/// Set this variable (to any value) in a worker's environment to also get [`Event::Enter`],
/// [`Event::Leave`] and [`Event::Keepalive`] on the event pipe: a full trace of the calls.
/// Without it, calls are tracked only through the shared call state, which costs no syscall.
pub const TRACE_ENV: &str = "AAPI_WORKER_TRACE";

/// Shortest interval between two keepalive events a worker forwards (plugins may call the
/// keepalive callback far more often; the supervisor only needs to know the call is alive).
pub const KEEPALIVE_FORWARD_INTERVAL: Duration = Duration::from_millis(20);

/// The call a worker is in, shared with its supervisor through a small `MAP_SHARED` mapping of
/// a memfd: entering and leaving a plugin call are two atomic stores, not messages, so the data
/// path pays nothing for supervision. Times are `CLOCK_MONOTONIC` nanoseconds (system-wide).
#[repr(C)]
struct CallState {
    /// 1 + index into `ENTRY_POINTS` of the running call; 0 when no call runs.
    call: AtomicU32,
    /// The same for the call entered last, running or not; 0 before the first.
    last: AtomicU32,
    /// When the running call was entered.
    entered_ns: AtomicU64,
    /// When the running call last showed life (entered or sent a keepalive).
    alive_ns: AtomicU64,
    /// 1 once the worker could not write its event pipe (see [`WorkerLink::send`]).
    link_lost: AtomicU32,
    _pad: AtomicU32,
}

const STATE_LEN: usize = 4096;

struct SharedState {
    ptr: std::ptr::NonNull<CallState>,
}

// SAFETY: the mapping holds only atomics and lives as long as this owner.
unsafe impl Send for SharedState {}
// SAFETY: as above; all access goes through atomics.
unsafe impl Sync for SharedState {}

impl SharedState {
    fn create() -> io::Result<(SharedState, OwnedFd)> {
        // SAFETY: memfd_create with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"aapi-worker-state".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), STATE_LEN as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((SharedState::map(fd.as_raw_fd())?, fd))
    }

    fn map(fd: RawFd) -> io::Result<SharedState> {
        // SAFETY: maps STATE_LEN bytes of a memfd both processes hold; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STATE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p as *mut CallState)
            .ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(SharedState { ptr })
    }

    fn get(&self) -> &CallState {
        // SAFETY: the mapping is page-aligned, zero-initialised (a valid CallState of atomics)
        // and stays mapped while self lives.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for SharedState {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, STATE_LEN) };
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn function_index(name: &str) -> u32 {
    if name == LOADING {
        return ENTRY_POINTS.len() as u32 + 1;
    }
    if name == EXITING {
        return ENTRY_POINTS.len() as u32 + 2;
    }
    ENTRY_POINTS
        .iter()
        .position(|f| *f == name)
        .map_or(u32::MAX, |i| i as u32 + 1)
}

/// The name under which loading the plugin library (its constructors run then) is tracked like
/// a call: see [`WorkerLink::loading`].
pub const LOADING: &str = "dlopen";

/// The name under which a worker's exit (library destructors and exit handlers run then) is
/// tracked like a call: see [`WorkerLink::exiting`].
pub const EXITING: &str = "the process exit (library destructors, exit handlers)";

/// Whether `function` is an entry point called without a session (or the library load): it has
/// no keepalive to send, and is held to [`Limits::sessionless_budget`] (TIME-1).
pub fn is_sessionless(function: &str) -> bool {
    matches!(
        function,
        "aapi_pgn_init"
            | "aapi_pgn_claim"
            | "aapi_terminate"
            | "aapi_get_last_error"
            | LOADING
            | EXITING
    )
}

fn function_name(index: u32) -> String {
    if index as usize == ENTRY_POINTS.len() + 1 {
        return LOADING.to_string();
    }
    if index as usize == ENTRY_POINTS.len() + 2 {
        return EXITING.to_string();
    }
    ENTRY_POINTS
        .get((index as usize).wrapping_sub(1))
        .map_or_else(|| "an unknown function".to_string(), |s| s.to_string())
}

/// One message from a worker to its supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A plugin entry point was called.
    Enter {
        /// Its name, e.g. `aapi_read_object`.
        function: String,
    },
    /// The entry point returned.
    Leave {
        /// Its name.
        function: String,
        /// The code it returned.
        code: i32,
    },
    /// The plugin called the keepalive callback.
    Keepalive,
    /// A log line from the plugin (`level` is an `AAPI_LOG_*` value).
    Log {
        /// The level.
        level: u32,
        /// The line.
        message: String,
    },
    /// Progress of the worker's task.
    Progress {
        /// Data bytes done so far.
        bytes: u64,
        /// Objects done so far.
        objects: u64,
    },
    /// A task-specific result (the worker may send several).
    Result {
        /// The payload.
        value: serde_json::Value,
    },
    /// The worker's task failed; the message says why and what to do.
    Failed {
        /// Human-readable reason.
        message: String,
        /// The plugin's return code when a plugin call failed.
        #[serde(default)]
        code: Option<i32>,
    },
}

/// One message from a supervisor to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    /// Cancel the job: keepalives answer `AAPI_ECANCELLED` from now on.
    Cancel,
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It exited by itself with this status code (0: its task succeeded).
    Exited(i32),
    /// It was killed by a signal it did not get from the supervisor.
    Crashed {
        /// The signal number.
        signal: i32,
        /// The entry point that was running, if any.
        function: Option<String>,
    },
    /// A plugin call ran past its budget without a keepalive; the supervisor killed the worker.
    TimedOut {
        /// The entry point.
        function: String,
        /// The budget it exceeded.
        budget: Duration,
    },
    /// After a cancel, the plugin call did not return within the cancellation bound; killed.
    CancelIgnored {
        /// The entry point.
        function: String,
        /// The bound it exceeded.
        bound: Duration,
    },
    /// The worker ran longer than [`Limits::max_run`] in all; the supervisor killed it.
    Overran {
        /// The limit.
        limit: Duration,
        /// The entry point that was running, if any.
        function: Option<String>,
    },
    /// The worker process exited (with this status, 0 included) while a plugin call was running:
    /// the plugin ended the process.
    ExitedInCall {
        /// The exit status.
        code: i32,
        /// The entry point.
        function: String,
    },
}

impl WorkerEnd {
    /// Whether the worker exited by itself with status 0.
    pub fn is_success(&self) -> bool {
        *self == WorkerEnd::Exited(0)
    }
}

/// The conventional name of a signal number, e.g. `SIGSEGV`.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

impl fmt::Display for WorkerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerEnd::Exited(0) => write!(f, "finished"),
            WorkerEnd::Exited(code) => write!(f, "worker exited with status {code}"),
            WorkerEnd::Crashed {
                signal,
                function: Some(func),
            } => write!(f, "crash({}) in {func}", signal_name(*signal)),
            WorkerEnd::Crashed {
                signal,
                function: None,
            } => write!(f, "crash({}) outside any plugin call", signal_name(*signal)),
            WorkerEnd::TimedOut { function, budget } => write!(
                f,
                "timeout in {function}: no return and no keepalive within {} ms",
                budget.as_millis()
            ),
            WorkerEnd::CancelIgnored { function, bound } => write!(
                f,
                "cancel ignored in {function}: no return within {} ms of the cancel",
                bound.as_millis()
            ),
            WorkerEnd::Overran {
                limit,
                function: Some(func),
            } => write!(
                f,
                "overran in {func}: the worker ran past its limit of {} s in all (still sending keepalives, or waiting on something unbounded)",
                limit.as_secs()
            ),
            WorkerEnd::Overran {
                limit,
                function: None,
            } => write!(
                f,
                "overran outside any plugin call: the worker ran past its limit of {} s in all",
                limit.as_secs()
            ),
            WorkerEnd::ExitedInCall { code, function } => write!(
                f,
                "exit({code}) in {function}: the plugin ended the worker process during the call"
            ),
        }
    }
}

/// Everything a finished worker reported.
#[derive(Debug, Clone)]
pub struct WorkerOutcome {
    /// How it ended.
    pub end: WorkerEnd,
    /// Its [`Event::Result`] payloads, in order.
    pub results: Vec<serde_json::Value>,
    /// Its [`Event::Failed`] messages, in order.
    pub failures: Vec<String>,
    /// The plugin code of the first [`Event::Failed`] that carried one.
    pub failure_code: Option<i32>,
    /// Lines on the event pipe that were not valid events (a broken worker).
    pub garbage: Vec<String>,
    /// When the worker was cancelled, if it was.
    pub cancelled_at: Option<Instant>,
    /// When the worker ended because it could not write its event pipe (closed or replaced by
    /// the plugin, as daemon code closing every descriptor does): the call entered last, if any.
    pub link_lost: Option<Option<String>>,
}

impl WorkerOutcome {
    /// A one-line description: the failure messages when the worker explained itself, else the
    /// way it ended.
    pub fn summary(&self) -> String {
        if let Some(after) = &self.link_lost {
            return link_lost_message(after.as_deref());
        }
        match (&self.end, self.failures.is_empty()) {
            (WorkerEnd::Exited(_), false) => self.failures.join("; "),
            (end, _) => end.to_string(),
        }
    }
}

/// The entry points called once per object or buffer, where a check per call would cost.
const DATA_PATH: &[&str] = &[
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_get_object_prop",
    "aapi_read_object",
    "aapi_close_object",
    "aapi_create_object",
    "aapi_write_object",
    "aapi_flush",
    "aapi_get_object_prop_byname",
    "aapi_delete_object",
    "aapi_set_object_utimes",
];

/// The device and inode of open descriptor `fd`; `None` when it is not open.
fn fd_identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: fstat fills the zeroed struct; a closed descriptor is an error, nothing more.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// Why a worker that lost a pipe to its supervisor ended, naming the call entered last.
pub fn link_lost_message(after: Option<&str>) -> String {
    let when = match after {
        Some(f) => format!(
            ", found after {f} was called: the plugin closed or replaced a file descriptor it did not open, in that call or one just before it"
        ),
        None => ": the plugin closed or replaced a file descriptor it did not open, before any plugin call".into(),
    };
    format!("the worker lost a pipe to the supervisor{when} (a plugin closes only its own, RES-1)")
}

/// Cancels a running worker; cheap to clone and usable from any thread.
#[derive(Clone, Debug)]
pub struct CancelHandle {
    inner: Arc<CancelState>,
}

#[derive(Debug)]
struct CancelState {
    control: Mutex<Option<File>>,
    at: Mutex<Option<Instant>>,
    at_ns: AtomicU64,
}

impl CancelHandle {
    /// Ask the worker to cancel. Idempotent; the first call's time starts the cancellation bound.
    pub fn cancel(&self) {
        let mut at = self.inner.at.lock().unwrap_or_else(|e| e.into_inner());
        if at.is_none() {
            *at = Some(Instant::now());
            self.inner.at_ns.store(monotonic_ns(), Ordering::SeqCst);
            let mut control = self.inner.control.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = control.as_mut() {
                let mut line = serde_json::to_vec(&Control::Cancel).expect("serialisable");
                line.push(b'\n');
                let _ = f.write_all(&line);
            }
        }
    }

    fn requested(&self) -> Option<Instant> {
        *self.inner.at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Timing rules for one worker.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per-call budget: the longest a plugin call may run without returning or a keepalive.
    pub call_budget: Duration,
    /// The budget of the calls made without a session ([`is_sessionless`]), which cannot send
    /// keepalives; usually `call_budget`.
    pub sessionless_budget: Duration,
    /// The longest a call may take to return after a cancel (capped by `call_budget`).
    pub cancel_bound: Duration,
    /// The longest the whole worker may run, keepalives or not (`None`: no limit).
    pub max_run: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        let budget = Duration::from_millis(aapi_sdk::abi::AAPI_DEFAULT_CALL_BUDGET_MS as u64);
        Limits {
            call_budget: budget,
            sessionless_budget: budget,
            cancel_bound: Duration::from_millis(aapi_sdk::abi::AAPI_CANCEL_BOUND_MS as u64),
            max_run: None,
        }
    }
}

/// A running worker process, seen from the supervisor.
pub struct Worker {
    child: Child,
    events: File,
    state: SharedState,
    limits: Limits,
    cancel: CancelHandle,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.child.id())
            .field("limits", &self.limits)
            .finish()
    }
}

/// A pipe whose two ends close on exec: (read end, write end).
pub fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Worker {
    /// Start `command` as a worker: it gets the write end of the event pipe, the read end of
    /// the control pipe and the shared call state (their numbers in [`EVENT_FD_ENV`],
    /// [`CONTROL_FD_ENV`] and [`STATE_FD_ENV`]). The worker is killed when the thread that
    /// spawns it ends (`PR_SET_PDEATHSIG`), so a dead supervisor leaves no worker behind: keep
    /// that thread until [`Worker::run`] returns.
    pub fn spawn(mut command: Command, limits: Limits) -> io::Result<Worker> {
        let (ev_r, ev_w) = cloexec_pipe()?;
        let (ctl_r, ctl_w) = cloexec_pipe()?;
        let (state, state_fd) = SharedState::create()?;
        let (ev_fd, ctl_fd, st_fd) = (ev_w.as_raw_fd(), ctl_r.as_raw_fd(), state_fd.as_raw_fd());
        command.env(EVENT_FD_ENV, ev_fd.to_string());
        command.env(CONTROL_FD_ENV, ctl_fd.to_string());
        command.env(STATE_FD_ENV, st_fd.to_string());
        // Its own process group: what the plugin starts can be killed with it.
        command.process_group(0);
        let supervisor = std::process::id() as libc::pid_t;
        // SAFETY: the closure only calls fcntl, prctl and getppid, which are async-signal-safe;
        // fcntl works on descriptors that are open in the child (inherited copies of ev_w, ctl_r
        // and the memfd).
        unsafe {
            command.pre_exec(move || {
                for fd in [ev_fd, ctl_fd, st_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // A worker whose supervisor dies (killed by a job engine, say) dies with it,
                // instead of writing on into an image that nothing shows as running any more.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != supervisor {
                    return Err(io::Error::other("the supervisor has already ended"));
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(ev_w);
        drop(ctl_r);
        drop(state_fd);
        Ok(Worker {
            child,
            events: File::from(ev_r),
            state,
            limits,
            cancel: CancelHandle {
                inner: Arc::new(CancelState {
                    control: Mutex::new(Some(File::from(ctl_w))),
                    at: Mutex::new(None),
                    at_ns: AtomicU64::new(0),
                }),
            },
        })
    }

    /// Like [`Worker::spawn`], and feed `input` to the worker's standard input (then close it):
    /// the usual way to hand a worker its task.
    pub fn spawn_with_input(
        mut command: Command,
        limits: Limits,
        input: Vec<u8>,
    ) -> io::Result<Worker> {
        command.stdin(std::process::Stdio::piped());
        let mut worker = Worker::spawn(command, limits)?;
        if let Some(mut stdin) = worker.child.stdin.take() {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        Ok(worker)
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the worker process exits within `limit`, without reaping it.
    fn exits_within(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.has_exited() {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Whether the worker process has exited, without reaping it.
    fn has_exited(&self) -> bool {
        // SAFETY: waitid fills `info`, a zeroed siginfo_t; WNOWAIT leaves the child waitable.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            ) == 0
                && info.si_pid() != 0
        }
    }

    /// A handle that cancels this worker.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Read events until the worker ends, enforcing the limits; `on_event` sees every event.
    pub fn run(mut self, mut on_event: impl FnMut(&Event)) -> io::Result<WorkerOutcome> {
        let mut outcome = WorkerOutcome {
            end: WorkerEnd::Exited(0),
            results: Vec::new(),
            failures: Vec::new(),
            failure_code: None,
            garbage: Vec::new(),
            cancelled_at: None,
            link_lost: None,
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let fd = self.events.as_raw_fd();
        let bound = self.limits.cancel_bound.min(self.limits.call_budget);
        let sessionless: Vec<bool> = ENTRY_POINTS
            .iter()
            .copied()
            .chain([LOADING, EXITING])
            .map(is_sessionless)
            .collect();
        // Check the shared call state this often; also notices a cancel from another thread.
        let tick = (self.limits.call_budget.min(self.limits.sessionless_budget) / 20)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        let started = Instant::now();
        // Set once the worker process has exited (not yet reaped): what is left on the pipe is
        // read, and a process the plugin started that still holds the pipe open is no reason to
        // wait for its end.
        let mut exited = false;
        let killed: Option<WorkerEnd> = loop {
            let st = self.state.get();
            let call = st.call.load(Ordering::Acquire);
            if let Some(limit) = self.limits.max_run
                && started.elapsed() > limit
                && !exited
            {
                break Some(WorkerEnd::Overran {
                    limit,
                    function: (call != 0).then(|| function_name(call)),
                });
            }
            if call != 0 {
                let entered = st.entered_ns.load(Ordering::Acquire);
                let alive = st.alive_ns.load(Ordering::Acquire);
                let now = monotonic_ns();
                let cancel_ns = self.cancel.inner.at_ns.load(Ordering::SeqCst);
                if cancel_ns != 0
                    && now > cancel_ns.max(entered) + bound.as_nanos() as u64
                    && st.call.load(Ordering::Acquire) == call
                {
                    break Some(WorkerEnd::CancelIgnored {
                        function: function_name(call),
                        bound,
                    });
                }
                let budget = match sessionless.get((call as usize).wrapping_sub(1)) {
                    Some(true) => self.limits.sessionless_budget,
                    _ => self.limits.call_budget,
                };
                if now > alive + budget.as_nanos() as u64 && st.call.load(Ordering::Acquire) == call
                {
                    break Some(WorkerEnd::TimedOut {
                        function: function_name(call),
                        budget,
                    });
                }
            }
            let wait = tick;
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = if exited {
                0
            } else {
                wait.as_millis().clamp(1, i32::MAX as u128) as i32
            };
            // SAFETY: pfd is one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                if exited {
                    break None;
                }
                exited = self.has_exited();
                continue;
            }
            let n = match self.events.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break None;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                match serde_json::from_slice::<Event>(line) {
                    Ok(ev) => {
                        match &ev {
                            Event::Result { value } => outcome.results.push(value.clone()),
                            Event::Failed { message, code } => {
                                outcome.failures.push(message.clone());
                                outcome.failure_code = outcome.failure_code.or(*code);
                            }
                            Event::Log { .. }
                            | Event::Progress { .. }
                            | Event::Enter { .. }
                            | Event::Leave { .. }
                            | Event::Keepalive => {}
                        }
                        on_event(&ev);
                    }
                    Err(_) => outcome
                        .garbage
                        .push(String::from_utf8_lossy(line).into_owned()),
                }
            }
        };
        // The worker closes the pipe a moment before it exits: let it finish, within the budget
        // of a call without a session (library destructors and exit handlers run then).
        let killed = match killed {
            None if !self.exits_within(self.limits.sessionless_budget) => {
                Some(WorkerEnd::TimedOut {
                    function: EXITING.into(),
                    budget: self.limits.sessionless_budget,
                })
            }
            k => k,
        };
        // The whole process group goes, before the worker is reaped (so that its id is still
        // its own): the worker itself when it was killed, and whatever the plugin started.
        // SAFETY: kill(2) of the worker's own process group (Worker::spawn made it).
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        if let Some(end) = killed {
            let _ = self.child.kill();
            let _ = self.child.wait();
            outcome.end = end;
        } else {
            let status = self.child.wait()?;
            let call = self.state.get().call.load(Ordering::Acquire);
            if self.state.get().link_lost.load(Ordering::Acquire) == 1 {
                let last = self.state.get().last.load(Ordering::Acquire);
                outcome.link_lost = Some((last != 0).then(|| function_name(last)));
            }
            let exiting = call == function_index(EXITING);
            outcome.end = match (status.code(), status.signal()) {
                (Some(code), _) if call != 0 && !exiting => WorkerEnd::ExitedInCall {
                    code,
                    function: function_name(call),
                },
                (Some(code), _) => WorkerEnd::Exited(code),
                (None, Some(signal)) => WorkerEnd::Crashed {
                    signal,
                    function: (call != 0).then(|| function_name(call)),
                },
                (None, None) => WorkerEnd::Exited(-1),
            };
        }
        *self
            .cancel
            .inner
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        outcome.cancelled_at = self.cancel.requested();
        Ok(outcome)
    }
}

/// The worker's end of the pipes: sends events and learns about cancellation.
///
/// Implements [`HostHooks`]: log lines, keepalives and call enter/leave become events, and the
/// keepalive callback answers "cancelled" once the supervisor cancelled the job.
pub struct WorkerLink {
    events: Mutex<File>,
    /// The event and control pipes' descriptors and identities (device, inode), to tell when a
    /// plugin closed or replaced one.
    pipes: [(RawFd, Option<(u64, u64)>); 2],
    state: Option<SharedState>,
    trace: bool,
    cancelled: Arc<AtomicBool>,
    last_keepalive: Mutex<Option<Instant>>,
    credentials: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerLink")
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

fn env_fd(name: &str) -> Option<RawFd> {
    let fd: RawFd = std::env::var(name).ok()?.parse().ok()?;
    // SAFETY: F_GETFD only queries whether the descriptor is open.
    (unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).then_some(fd)
}

/// Start the guard of this worker's process group, when this process was started by
/// [`Worker::spawn`]; returns the guard's process id (`None` when not started so). The guard
/// ([`start_group_guard`] on the control pipe) kills the worker and every process the plugin
/// started in its group once the supervisor has ended in any way, SIGKILL included. (The
/// supervisor kills the group itself after a worker ends; the guard covers the supervisor's own
/// death, where nothing else would.) Call it first thing in the worker, while it has one thread.
pub fn guard_process_group() -> io::Result<Option<u32>> {
    match env_fd(CONTROL_FD_ENV) {
        Some(control) => start_group_guard(control).map(Some),
        None => Ok(None),
    }
}

/// Start a guard of the calling process's process group: a small process in the group that waits
/// until every writer of the pipe whose read end is `fd` has closed it, and then kills the whole
/// group. The guard is not a child of the caller, so a program that waits for all its children
/// never waits for it. Returns the guard's process id.
///
/// It makes only async-signal-safe system calls and does not allocate, so it may run in a
/// [`CommandExt::pre_exec`] closure.
pub fn start_group_guard(fd: RawFd) -> io::Result<u32> {
    let mut ends = [0 as RawFd; 2];
    // SAFETY: pipe2, fork, write, read, waitpid, close and _exit are async-signal-safe; the
    // forked processes never return into Rust code (`guard` never returns).
    unsafe {
        if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        let [pid_r, pid_w] = ends;
        let middle = libc::fork();
        if middle < 0 {
            let e = io::Error::last_os_error();
            libc::close(pid_r);
            libc::close(pid_w);
            return Err(e);
        }
        if middle == 0 {
            // Fork again and end at once: the guard is re-parented away from the caller.
            let guard_pid = libc::fork();
            if guard_pid == 0 {
                guard(fd);
            }
            let bytes = guard_pid.to_ne_bytes();
            libc::write(pid_w, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(0);
        }
        libc::close(pid_w);
        let mut status = 0;
        while libc::waitpid(middle, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR
        {
        }
        let mut bytes = [0u8; 4];
        let n = libc::read(pid_r, bytes.as_mut_ptr().cast(), bytes.len());
        libc::close(pid_r);
        match libc::pid_t::from_ne_bytes(bytes) {
            pid if n == 4 && pid > 0 => Ok(pid as u32),
            _ => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }
}

/// The guard's life (see [`start_group_guard`]): only async-signal-safe system calls.
///
/// # Safety
/// Call only in a freshly forked child; it never returns.
unsafe fn guard(fd: RawFd) -> ! {
    // SAFETY: plain system calls on this process's own descriptors and process group.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"aapi-guard".as_ptr());
        // Hold nothing of the caller's (a worker's event pipe, standard streams) but the pipe;
        // on a kernel without close_range the copies stay, which nothing waits for.
        if fd > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (fd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0u32);
        loop {
            // No event asked for: poll returns only when the last writer is gone (POLLHUP), so
            // what is in the pipe (a worker's cancel messages) stays for the caller to read.
            let mut p = libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            };
            let n = libc::poll(&mut p, 1, -1);
            if n > 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        libc::kill(0, libc::SIGKILL);
        libc::_exit(0)
    }
}

impl WorkerLink {
    /// Connect to the supervisor's pipes named in the environment; `None` when this process was
    /// not started by [`Worker::spawn`]. Starts a thread that watches for cancellation.
    /// `credentials` answer the plugin's credential callback. Call it at most once per process.
    pub fn from_env(credentials: Vec<(String, Vec<u8>)>) -> Option<Arc<WorkerLink>> {
        let ev = env_fd(EVENT_FD_ENV)?;
        let ctl = env_fd(CONTROL_FD_ENV)?;
        // SAFETY: the supervisor handed these descriptors to this process for this purpose only.
        // Call this once per process: a second call would adopt the same descriptors again.
        let (events, control) = unsafe { (File::from_raw_fd(ev), File::from_raw_fd(ctl)) };
        for fd in [ev, ctl] {
            // SAFETY: fcntl on our own open descriptor: keep them away from the plugin's children.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // Two mappings of the shared state: the link's, and the control thread's own.
        let (state, control_state) = env_fd(STATE_FD_ENV)
            .map(|fd| {
                let st = (SharedState::map(fd).ok(), SharedState::map(fd).ok());
                // SAFETY: the mappings (if any) keep the memory; the descriptor is ours to close.
                unsafe { libc::close(fd) };
                st
            })
            .unwrap_or((None, None));
        // SAFETY: getppid has no preconditions.
        let supervisor = unsafe { libc::getppid() };
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        std::thread::spawn(move || {
            // Never closed: a descriptor the plugin closed must not be closed again (a debug
            // build aborts on that), and the process ends below anyway.
            let mut lines = std::mem::ManuallyDrop::new(BufReader::new(control).lines());
            for line in &mut *lines {
                let Ok(line) = line else { break };
                if let Ok(Control::Cancel) = serde_json::from_str::<Control>(&line) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } == supervisor {
                // The supervisor lives: the plugin closed or replaced the control pipe.
                if let Some(st) = &control_state {
                    st.get().link_lost.store(1, Ordering::Release);
                }
                std::process::exit(3);
            }
            // End of the control pipe: the supervisor is gone. Cancel, give the running call the
            // cancellation bound to return, then stop: nobody is left to report to.
            flag.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(
                aapi_sdk::abi::AAPI_CANCEL_BOUND_MS as u64,
            ));
            std::process::exit(3);
        });
        Some(Arc::new(WorkerLink {
            pipes: [(ev, fd_identity(ev)), (ctl, fd_identity(ctl))],
            events: Mutex::new(events),
            trace: state.is_none() || std::env::var_os(TRACE_ENV).is_some(),
            state,
            cancelled,
            last_keepalive: Mutex::new(None),
            credentials,
        }))
    }

    /// Send one event. When the supervisor is gone (broken pipe) the worker exits with status 3:
    /// nobody is left to report to.
    pub fn send(&self, event: &Event) {
        let mut line = serde_json::to_vec(event).expect("events serialise");
        line.push(b'\n');
        let mut f = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if f.write_all(&line).is_err() {
            // Most often the plugin closed or replaced the descriptor: say so to the supervisor,
            // which still reads the shared state.
            if let Some(st) = &self.state {
                st.get().link_lost.store(1, Ordering::Release);
            }
            std::process::exit(3);
        }
    }

    /// Whether the supervisor cancelled the job.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Mark the worker's exit as begun, as if it were a call named [`EXITING`] that never returns:
    /// the supervisor holds the library destructors and exit handlers that run now to the budget
    /// of calls without a session, so one that hangs is a timeout in the process exit, and a crash
    /// there is named so. Call it just before the process exits.
    pub fn exiting(&self) {
        self.mark_entered(EXITING);
    }

    /// Share with the supervisor that `function` runs from now on.
    fn mark_entered(&self, function: &str) {
        if let Some(st) = &self.state {
            let st = st.get();
            let now = monotonic_ns();
            st.entered_ns.store(now, Ordering::Release);
            st.alive_ns.store(now, Ordering::Release);
            st.call.store(function_index(function), Ordering::Release);
            st.last.store(function_index(function), Ordering::Release);
        }
    }

    /// Share with the supervisor that no call runs any more.
    fn mark_left(&self) {
        if let Some(st) = &self.state {
            st.get().call.store(0, Ordering::Release);
        }
    }

    /// Run `load` (opening the plugin library, whose constructors run then) as if it were a
    /// call named [`LOADING`]: the supervisor holds it to the budget of calls without a session,
    /// so a constructor that hangs is a timeout in `dlopen`, and a crash there is named so.
    pub fn loading<T>(&self, load: impl FnOnce() -> T) -> T {
        self.mark_entered(LOADING);
        let out = load();
        self.mark_left();
        out
    }
}

impl HostHooks for WorkerLink {
    fn log(&self, level: u32, message: &str) {
        self.send(&Event::Log {
            level,
            message: message.to_string(),
        });
    }

    fn keepalive(&self) -> bool {
        if let Some(st) = &self.state {
            st.get().alive_ns.store(monotonic_ns(), Ordering::Release);
        }
        if self.trace {
            let now = Instant::now();
            let mut last = self
                .last_keepalive
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|t| now.duration_since(t) >= KEEPALIVE_FORWARD_INTERVAL) {
                *last = Some(now);
                drop(last);
                self.send(&Event::Keepalive);
            }
        }
        !self.cancelled()
    }

    fn credential(&self, key: &str) -> Option<Vec<u8>> {
        self.credentials
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn late_callback(&self, callback: &'static str) {
        self.send(&Event::Log {
            level: AAPI_LOG_WARNING,
            message: format!(
                "{callback} of a session called after its aapi_close_server had returned, which \
                 the contract forbids (THR-3): refused"
            ),
        });
    }

    fn idle_callback(&self, callback: &'static str) {
        self.send(&Event::Log {
            level: AAPI_LOG_WARNING,
            message: format!(
                "{callback} of a session called while none of its entry points was running, \
                 which the contract forbids (THR-3)"
            ),
        });
    }

    fn call_enter(&self, function: &'static str) {
        self.mark_entered(function);
        if self.trace {
            self.send(&Event::Enter {
                function: function.to_string(),
            });
        }
    }

    fn call_leave(&self, function: &'static str, code: i32) {
        // Daemon-style code closes every descriptor, the worker's pipes too: caught after the
        // call that did it (calls of the data path are left out: they run per object).
        if !DATA_PATH.contains(&function)
            && self.pipes.iter().any(|(fd, id)| fd_identity(*fd) != *id)
        {
            if let Some(st) = &self.state {
                st.get().link_lost.store(1, Ordering::Release);
            }
            std::process::exit(3);
        }
        self.mark_left();
        if self.trace {
            self.send(&Event::Leave {
                function: function.to_string(),
                code,
            });
        }
    }
}
