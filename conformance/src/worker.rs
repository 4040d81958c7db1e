//! The worker side: a child process that loads the plugin and runs one task.
//!
//! Any executable can be a worker: it calls [`serve_if_requested`] early in `main` (or in the
//! test that runs the suite); when the runner started it, that function runs the task and exits
//! the process, otherwise it returns at once. The `aapi-conformance` binary does so first thing.

use crate::task::*;
use aapi_host::client::{HostHooks, Plugin, Server, SessionDef};
use aapi_host::loader::PluginLibrary;
use aapi_host::supervise::{Event, WorkerLink, is_sessionless};
use aapi_sdk::abi::*;
use std::cell::RefCell;
use std::ffi::{CString, c_int};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guard of this worker's process group (`guard_process_group`): the runner's process, not
/// one the plugin started.
static GUARD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Exit status of a worker whose own code failed (not the plugin's).
pub const HARNESS_FAILURE: i32 = 70;

/// Exit status of a worker that stopped itself in a call to a function that had hung before
/// ([`Msg::Stopped`]).
const STOPPED: i32 = 71;

/// When this process was started by the runner as a worker, run its task and exit; otherwise
/// return. Call it at the start of `main` of any binary used as the worker program, or at the
/// start of the test function named in [`crate::WorkerProgram::CurrentTest`].
pub fn serve_if_requested() {
    let Some(file) = std::env::var_os(TASK_ENV) else {
        return;
    };
    // SAFETY: called before this process starts threads of its own that read the environment.
    unsafe { std::env::remove_var(TASK_ENV) };
    let (code, link) = match std::fs::read_to_string(&file) {
        Ok(spec) => serve(&spec),
        Err(e) => {
            eprintln!(
                "aapi-conformance worker: cannot read the task {}: {e}",
                Path::new(&file).display()
            );
            (HARNESS_FAILURE, None)
        }
    };
    let _ = std::io::stdout().flush();
    // From here on the plugin's library destructors and exit handlers run: the supervisor holds
    // them to the budget of a call, so one that hangs or crashes is the plugin's failure.
    if let Some(link) = &link {
        link.exiting();
    }
    // `link` is not dropped: the event pipe stays open until the process has ended, so the
    // supervisor never sees its end while this process still runs.
    std::process::exit(code);
}

fn serve(spec: &str) -> (i32, Option<Arc<WorkerLink>>) {
    let spec: TaskSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aapi-conformance worker: bad task: {e}");
            return (HARNESS_FAILURE, None);
        }
    };
    let creds = spec
        .setup
        .credentials
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    // Processes the plugin starts die with the runner, even when it is killed with SIGKILL.
    match aapi_host::supervise::guard_process_group() {
        Ok(pid) => {
            if let Some(pid) = pid {
                let _ = GUARD.set(pid);
            }
        }
        Err(e) => {
            eprintln!("aapi-conformance worker: cannot start the guard of its process group: {e}");
            return (HARNESS_FAILURE, None);
        }
    }
    let Some(link) = WorkerLink::from_env(creds) else {
        eprintln!("aapi-conformance worker: not started by the runner (no event pipe)");
        return (HARNESS_FAILURE, None);
    };
    // From here on, whatever reaches stdout or stderr is the plugin's (SEC-3).
    if let Ok(f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&spec.capture)
    {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
    let mut spec = spec;
    expand_job(&mut spec);
    let hung = spec.hung.iter().map(|h| h.function.clone()).collect();
    let hooks = Arc::new(ConfHooks::new(link.clone(), spec.setup.budget_ms, hung));
    *hooks.current.lock().unwrap() = spec.check.clone();
    if !spec.hung.is_empty() {
        // Started before the plugin is loaded, so the thread counts of the probes include it.
        let watch = hooks.clone();
        let hung = spec.hung.clone();
        std::thread::spawn(move || watch.watch_hung(&hung));
    }
    let ctx = Ctx {
        spec,
        link: link.clone(),
        hooks: hooks.clone(),
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_task(&ctx)));
    ctx.send(Msg::Stats(hooks.stats()));
    let code = match result {
        Ok(Ok(())) => {
            ctx.send(Msg::Done);
            0
        }
        Ok(Err(e)) => {
            link.send(&Event::Failed {
                message: e,
                code: None,
            });
            HARNESS_FAILURE
        }
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            link.send(&Event::Failed {
                message: format!("runner bug: {what}"),
                code: None,
            });
            HARNESS_FAILURE
        }
    };
    (code, Some(link))
}

/// Replace `{job}` in properties and watched directories, and create the watched directories.
fn expand_job(spec: &mut TaskSpec) {
    let job = spec.job.to_string_lossy().into_owned();
    let x = |v: &mut String| *v = v.replace("{job}", &job);
    for (_, v) in spec.setup.properties.iter_mut() {
        x(v);
    }
    for (_, v) in spec.setup.timing_properties.iter_mut() {
        x(v);
    }
    for d in spec.setup.watch_dirs.iter_mut() {
        *d = std::path::PathBuf::from(d.to_string_lossy().replace("{job}", &job));
        let _ = std::fs::create_dir_all(&d);
    }
}

fn run_task(ctx: &Ctx) -> Result<(), String> {
    match &ctx.spec.task {
        Task::Gate => crate::probes::gate(ctx),
        Task::Probe { check } => crate::probes::run(ctx, check),
        Task::Discover {
            out,
            selections,
            hosts,
            schedule,
            properties,
            job,
        } => {
            crate::pipeline::discover_task(ctx, out, selections, hosts, *schedule, properties, job)
        }
        Task::Backup {
            workload,
            image,
            job,
        } => crate::pipeline::backup_task(ctx, workload, image, job),
        Task::Postprocess {
            out,
            snapid,
            schedule,
            job,
        } => crate::pipeline::postprocess_task(ctx, out, snapid, *schedule, job),
        Task::Restore { images, root } => crate::pipeline::restore_task(ctx, images, root),
    }
}

thread_local! {
    static STARTS: RefCell<Vec<Instant>> = const { RefCell::new(Vec::new()) };
    /// The running call of this thread to a function that hung before: its key in
    /// `ConfHooks::hung_calls`.
    static HUNG_CALL: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

struct Track {
    function: &'static str,
    last_alive: Instant,
    start: Instant,
    max_gap: Duration,
    overlapped: bool,
}

/// Host hooks of a worker: forward everything to the supervisor and measure latency, keepalive
/// gaps and callbacks made outside calls.
pub struct ConfHooks {
    link: Arc<WorkerLink>,
    in_flight: AtomicUsize,
    /// Raw calls running ([`Ctx::raw`]): the client does not know their session.
    raw_in_flight: AtomicUsize,
    budget_ms: u32,
    cancel_on_keepalive: AtomicBool,
    cancel_answered: Mutex<Option<Instant>>,
    track: Mutex<Option<Track>>,
    stats: Mutex<Stats>,
    current: Mutex<String>,
    /// Functions that hung in an earlier worker ([`TaskSpec::hung`]).
    hung: Vec<String>,
    /// Running calls to them: key, function, start.
    hung_calls: Mutex<Vec<(u64, &'static str, Instant)>>,
    hung_seq: AtomicUsize,
}

impl ConfHooks {
    fn new(link: Arc<WorkerLink>, budget_ms: u32, hung: Vec<String>) -> ConfHooks {
        ConfHooks {
            link,
            in_flight: AtomicUsize::new(0),
            raw_in_flight: AtomicUsize::new(0),
            budget_ms,
            cancel_on_keepalive: AtomicBool::new(false),
            cancel_answered: Mutex::new(None),
            track: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
            current: Mutex::new(String::new()),
            hung,
            hung_calls: Mutex::new(Vec::new()),
            hung_seq: AtomicUsize::new(0),
        }
    }

    /// Stop the worker when a call to one of `hung` runs past its grace: send
    /// [`Msg::Stopped`] and exit with [`STOPPED`], the call still running. A function that
    /// hung once would most likely hang again, holding the run up to the same limit for every
    /// check that calls it.
    fn watch_hung(&self, hung: &[HungCall]) -> ! {
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let calls = self.hung_calls.lock().unwrap_or_else(|e| e.into_inner());
            let late = calls.iter().find_map(|(_, f, since)| {
                let h = hung.iter().find(|h| h.function == *f)?;
                (since.elapsed() > Duration::from_millis(h.grace_ms))
                    .then_some((*f, since.elapsed()))
            });
            if let Some((function, ran)) = late {
                let value = serde_json::to_value(Msg::Stopped {
                    function: function.to_string(),
                    after_ms: ran.as_millis() as u64,
                })
                .expect("messages serialise");
                self.link.send(&Event::Result { value });
                // SAFETY: _exit ends the process at once, without running the plugin's library
                // destructors and exit handlers while one of its calls still runs.
                unsafe { libc::_exit(STOPPED) };
            }
        }
    }

    /// From now on, answer every keepalive with "cancelled"; returns when the first was answered.
    pub fn cancel_on_keepalive(&self) {
        self.cancel_on_keepalive.store(true, Ordering::SeqCst);
    }

    /// When the first keepalive was answered "cancelled".
    pub fn cancel_answered(&self) -> Option<Instant> {
        *self.cancel_answered.lock().unwrap()
    }

    /// The latency measured so far (the findings went to the supervisor as they came).
    fn stats(&self) -> Stats {
        Stats {
            latency_us: self.stats.lock().unwrap().latency_us.clone(),
            ..Stats::default()
        }
    }

    /// Send one finding of the run-wide checks at once, so that it counts even when the
    /// worker dies later (crash, timeout, exit).
    fn report(&self, one: Stats) {
        let value = serde_json::to_value(Msg::Stats(one)).expect("messages serialise");
        self.link.send(&Event::Result { value });
    }

    /// The THR-3 breaches seen so far in this worker (at most 20).
    pub fn thr3_breaches(&self) -> Vec<String> {
        self.stats.lock().unwrap().stray_callbacks.clone()
    }

    /// A callback (`what`) made while no entry point runs breaks THR-3.
    fn stray(&self, what: String) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.broke_thr3(format!("{what} while no entry point was running"));
        }
    }

    fn broke_thr3(&self, what: String) {
        let mut s = self.stats.lock().unwrap();
        if s.stray_callbacks.len() < 20 {
            s.stray_callbacks.push(what.clone());
            drop(s);
            self.report(Stats {
                stray_callbacks: vec![what],
                ..Stats::default()
            });
        }
    }
}

impl HostHooks for ConfHooks {
    fn last_error(&self, function: &'static str, code: c_int, message: &str) {
        if !message.is_empty() {
            return;
        }
        let mut s = self.stats.lock().unwrap();
        if s.empty_messages.len() >= 20 {
            return;
        }
        let m = format!(
            "a failing {function} ({}) left aapi_get_last_error empty (during {}): every failing call sets a non-empty message (\"\" means that no call failed)",
            aapi_sdk::codes::name(code),
            self.current.lock().unwrap().clone()
        );
        s.empty_messages.push(m.clone());
        drop(s);
        self.report(Stats {
            empty_messages: vec![m],
            ..Stats::default()
        });
    }

    fn log(&self, level: u32, message: &str) {
        self.stray(format!("log callback ({message:?})"));
        self.link.log(level, message);
    }

    fn keepalive(&self) -> bool {
        self.stray("keepalive callback".into());
        let now = Instant::now();
        if let Some(t) = self.track.lock().unwrap().as_mut() {
            t.max_gap = t.max_gap.max(now - t.last_alive);
            t.last_alive = now;
        }
        let go_on = self.link.keepalive();
        if self.cancel_on_keepalive.load(Ordering::SeqCst) {
            let mut at = self.cancel_answered.lock().unwrap();
            if at.is_none() {
                *at = Some(now);
                // Tell the supervisor, which then enforces the cancellation bound.
                self.link.send(&Event::Result {
                    value: serde_json::json!({"msg": "output", "value": {"cancel_answered": true}}),
                });
            }
            return false;
        }
        go_on
    }

    fn credential(&self, key: &str) -> Option<Vec<u8>> {
        self.stray(format!("credential callback ({key:?})"));
        self.link.credential(key)
    }

    fn late_callback(&self, callback: &'static str) {
        let during = self.current.lock().unwrap().clone();
        self.broke_thr3(format!(
            "{callback} of a session whose aapi_close_server had returned (during {during})"
        ));
    }

    fn idle_callback(&self, callback: &'static str) {
        // While no entry point at all runs, `stray` says so already; a raw call running may be
        // one of this session's.
        if self.in_flight.load(Ordering::SeqCst) > 0
            && self.raw_in_flight.load(Ordering::SeqCst) == 0
        {
            let during = self.current.lock().unwrap().clone();
            self.broke_thr3(format!(
                "{callback} of a session while only other sessions' entry points were running (during {during})"
            ));
        }
    }

    fn call_enter(&self, function: &'static str) {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        {
            let mut t = self.track.lock().unwrap();
            if n == 1 {
                *t = Some(Track {
                    function,
                    last_alive: now,
                    start: now,
                    max_gap: Duration::ZERO,
                    overlapped: false,
                });
            } else if let Some(t) = t.as_mut() {
                t.overlapped = true;
            }
        }
        self.link.call_enter(function);
        if self.hung.iter().any(|f| f == function) {
            let key = self.hung_seq.fetch_add(1, Ordering::SeqCst) as u64;
            HUNG_CALL.with(|c| c.set(Some(key)));
            self.hung_calls
                .lock()
                .unwrap()
                .push((key, function, Instant::now()));
        }
        STARTS.with(|s| s.borrow_mut().push(Instant::now()));
    }

    fn call_leave(&self, function: &'static str, code: c_int) {
        let now = Instant::now();
        let took = STARTS.with(|s| s.borrow_mut().pop()).map(|t| now - t);
        if let Some(key) = HUNG_CALL.with(|c| c.take()) {
            self.hung_calls
                .lock()
                .unwrap()
                .retain(|(k, _, _)| *k != key);
        }
        self.link.call_leave(function, code);
        let n = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut found = Stats::default();
        let mut s = self.stats.lock().unwrap();
        let during = || self.current.lock().unwrap().clone();
        if aapi_sdk::codes::info(code).is_none() {
            if s.bad_codes.len() < 20 {
                let m = format!(
                    "{function} returned {code}, which is no AAPI_E* code (during {})",
                    during()
                );
                s.bad_codes.push(m.clone());
                found.bad_codes.push(m);
            }
        } else if !crate::codes::documented(function, code) && s.undocumented.len() < 20 {
            let m = format!(
                "{function} returned {}, which §14 does not list for it (during {})",
                aapi_sdk::codes::name(code),
                during()
            );
            s.undocumented.push(m.clone());
            found.undocumented.push(m);
        }
        if let Some(took) = took {
            s.latency_us
                .entry(function.to_string())
                .or_default()
                .push(took.as_micros() as u64);
        }
        drop(s);
        if n == 1
            && let Some(t) = self.track.lock().unwrap().take()
        {
            let gap = t.max_gap.max(now - t.last_alive);
            let dur = now - t.start;
            let budget = self.budget_ms;
            // Calls without a session have no keepalive to send: their length is TIME-1's
            // business, not the cadence's.
            if !t.overlapped
                && !is_sessionless(function)
                && t.function == function
                && dur.as_millis() > (budget / 4) as u128
            {
                found.long_calls.push(LongCall {
                    function: function.to_string(),
                    duration_ms: dur.as_millis() as u64,
                    max_gap_ms: gap.as_millis() as u64,
                    budget_ms: budget,
                });
            }
        }
        if !(found.bad_codes.is_empty()
            && found.undocumented.is_empty()
            && found.long_calls.is_empty())
        {
            self.report(found);
        }
    }
}

/// What a task runs with: the spec, the link to the supervisor and the hooks.
pub struct Ctx {
    /// The task spec.
    pub spec: TaskSpec,
    /// The supervisor link.
    pub link: Arc<WorkerLink>,
    /// The measuring hooks.
    pub hooks: Arc<ConfHooks>,
}

/// Job ids are unique per process and call, so parallel workers never share a snapshot.
static JOB_SEQ: AtomicUsize = AtomicUsize::new(0);

impl Ctx {
    /// Send a message to the supervisor.
    pub fn send(&self, msg: Msg) {
        let value = serde_json::to_value(&msg).expect("messages serialise");
        self.link.send(&Event::Result { value });
    }

    /// Start evaluating `check`.
    pub fn begin(&self, check: &str) {
        *self.hooks.current.lock().unwrap() = check.to_string();
        self.send(Msg::Begin {
            check: check.into(),
        });
    }

    /// Record that `check` saw a violation.
    pub fn fail(&self, check: &str, message: impl Into<String>) {
        self.send(Msg::Finding {
            check: check.into(),
            message: message.into(),
        });
    }

    /// Record that `check` does not apply.
    pub fn skip(&self, check: &str, reason: impl Into<String>) {
        self.send(Msg::Skip {
            check: check.into(),
            reason: reason.into(),
        });
    }

    /// Record that `check` was evaluated.
    pub fn ran(&self, check: &str) {
        self.send(Msg::Ran {
            check: check.into(),
        });
    }

    /// Send a task output.
    pub fn output(&self, value: serde_json::Value) {
        self.send(Msg::Output { value });
    }

    /// Hooks as the trait object the host API takes.
    pub fn dyn_hooks(&self) -> Arc<dyn HostHooks> {
        self.hooks.clone()
    }

    /// Load the library (marker and symbols checked by the host loader).
    pub fn library(&self) -> Result<PluginLibrary, String> {
        self.load().map_err(|e| e.to_string())
    }

    /// Open the library as the pseudo-call `dlopen`: its constructors are held to the budget of
    /// calls without a session, and a crash or hang there names `dlopen`.
    pub fn load(&self) -> Result<PluginLibrary, aapi_host::loader::LoadError> {
        self.link
            .loading(|| PluginLibrary::open(&self.spec.setup.plugin))
    }

    /// Load, initialise and claim the profile's workload type.
    pub fn plugin(&self) -> Result<Plugin, String> {
        let lib = self.library()?;
        let p = Plugin::init(lib, self.dyn_hooks()).map_err(|e| e.to_string())?;
        match p.claim(&self.spec.setup.workload_type) {
            Ok(true) => Ok(p),
            Ok(false) => Err(format!(
                "aapi_pgn_claim({:?}) returned AAPI_ENOTCLAIMED",
                self.spec.setup.workload_type
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A session definition for `op` with the profile's properties and budget.
    pub fn session_def(&self, op: u32) -> SessionDef {
        let mut d = SessionDef::new(op);
        d.properties = self.spec.setup.properties.clone();
        d.call_budget_ms = self.spec.setup.budget_ms;
        d.job_id = self.job_id("conf");
        d
    }

    /// A job id unique to this process.
    pub fn job_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            JOB_SEQ.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Open a session for `op`.
    pub fn open(&self, plugin: &Plugin, op: u32) -> Result<Server, String> {
        plugin
            .open_server(&self.spec.setup.server, self.session_def(op))
            .map_err(|e| e.to_string())
    }

    /// Make a raw call to an entry point, announced to the hooks like every client call.
    pub fn raw(&self, function: &'static str, call: impl FnOnce() -> c_int) -> c_int {
        self.hooks.raw_in_flight.fetch_add(1, Ordering::SeqCst);
        self.hooks.call_enter(function);
        let code = call();
        self.hooks.call_leave(function, code);
        self.hooks.raw_in_flight.fetch_sub(1, Ordering::SeqCst);
        code
    }
}

/// A path as a C string (paths from the plugin or the profile never hold NUL).
pub fn cpath(p: &[u8]) -> CString {
    CString::new(p).unwrap_or_else(|_| CString::new("/nul-in-path").unwrap())
}

/// Bytes of a path.
pub fn pbytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// Bytes as text for messages.
pub fn show(p: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(p))
}

/// `AAPI_...` name of a code; a number that is no code keeps its value.
pub fn code_name(code: c_int) -> String {
    match aapi_sdk::codes::info(code) {
        Some(c) => c.name.to_string(),
        None => format!("{code} (no AAPI_E* code)"),
    }
}

/// The open descriptors of this process, with their targets; the descriptor this function
/// reads `/proc/self/fd` through is not among them.
pub fn open_fds() -> Vec<(i32, String)> {
    let mut v = Vec::new();
    // SAFETY: open of a NUL-terminated path; the result is checked.
    let dfd = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dfd < 0 {
        return v;
    }
    // SAFETY: dfd is an open directory descriptor; the stream owns it from here on.
    let dir = unsafe { libc::fdopendir(dfd) };
    if dir.is_null() {
        // SAFETY: fdopendir failed, so dfd is still ours to close.
        unsafe { libc::close(dfd) };
        return v;
    }
    loop {
        // SAFETY: dir is a valid stream until closedir below.
        let e = unsafe { libc::readdir(dir) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned an entry whose d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
        let Some(n) = name.to_str().ok().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if n == dfd {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: readlinkat relative to dfd into buf, at most buf.len() bytes.
        let len = unsafe {
            libc::readlinkat(
                dfd,
                name.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
            )
        };
        if len > 0 {
            v.push((
                n,
                String::from_utf8_lossy(&buf[..len as usize]).into_owned(),
            ));
        }
    }
    // SAFETY: closes the stream (and dfd with it) opened above.
    unsafe { libc::closedir(dir) };
    v.sort();
    v
}

/// The processes this worker started or that joined its process group (the worker leads its
/// own group), zombies left out: `pid N (name)` each.
pub fn child_processes() -> Vec<String> {
    let me = std::process::id() as i32;
    // SAFETY: getpgrp has no arguments and cannot fail.
    let leader = unsafe { libc::getpgrp() } == me;
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || GUARD.get() == Some(&(pid as u32)) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(state), Some(ppid), Some(pgrp)) = (
            f.first(),
            f.get(1).and_then(|x| x.parse::<i32>().ok()),
            f.get(2).and_then(|x| x.parse::<i32>().ok()),
        ) else {
            continue;
        };
        if *state != "Z" && (ppid == me || (leader && pgrp == me)) {
            v.push(format!("pid {pid} ({comm})"));
        }
    }
    v
}

/// The number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A zeroed object property struct with `struct_size` set.
pub fn new_prop() -> aapi_object_prop_t {
    aapi_object_prop_t {
        struct_size: size_of::<aapi_object_prop_t>() as u32,
        ..Default::default()
    }
}
