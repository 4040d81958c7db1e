//! The supervisor side: runs every check in worker processes, orchestrates the data pipeline,
//! and turns what the workers reported into check results.

use crate::checks::{self, CheckDef, GATE, Level, Needs};
use crate::pipeline::read_images;
use crate::profile::{self, Exclusions, Profile};
use crate::report::{CheckResult, Latency, Report, Status};
use crate::shell::Stop;
use crate::task::*;
use crate::tree::{self, Kind, Manifest};
use aapi_host::supervise::{Event, Limits, Worker, WorkerEnd, is_sessionless, signal_name};
use aapi_sdk::abi::*;
use aapi_sdk::version::ENTRY_POINTS;
use aapi_sdk::workload::WorkloadFile;
use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The program the runner starts as a worker process.
///
/// A worker is any executable that calls [`crate::serve_if_requested`] before doing anything
/// else; the runner starts it with the task in its environment.
#[derive(Debug, Clone)]
pub enum WorkerProgram {
    /// This executable again, without arguments: for binaries and `harness = false` tests whose
    /// `main` calls [`crate::serve_if_requested`] first.
    CurrentExe,
    /// This test executable, running only the named test (`--exact NAME`): for ordinary
    /// `#[test]` functions that run the suite (running the suite serves the worker task first).
    CurrentTest(String),
    /// Another executable with arguments, e.g. an installed `aapi-conformance`.
    Program(PathBuf, Vec<String>),
}

impl WorkerProgram {
    fn command(&self) -> std::io::Result<Command> {
        Ok(match self {
            WorkerProgram::CurrentExe => Command::new(std::env::current_exe()?),
            WorkerProgram::CurrentTest(name) => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"]);
                c
            }
            WorkerProgram::Program(p, args) => {
                let mut c = Command::new(p);
                c.args(args);
                c
            }
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The plugin library.
    pub plugin: PathBuf,
    /// The profile.
    pub profile: Profile,
    /// Directory the profile's relative paths and `{profile_dir}` refer to.
    pub profile_dir: PathBuf,
    /// Waived checks.
    pub exclusions: Exclusions,
    /// Run only checks whose ID starts with one of these (all when empty).
    pub only: Vec<String>,
    /// The worker program.
    pub worker: WorkerProgram,
    /// Worker processes at once (the parallel backup child jobs come on top).
    pub jobs: usize,
    /// Keep the scratch directory here instead of a temporary one.
    pub scratch: Option<PathBuf>,
    /// A signal number stored here (by a signal handler) stops the run: no further worker
    /// starts, running workers and what they started are killed, teardown runs, the scratch
    /// directory goes (unless kept), and [`run`] returns [`RunError::Interrupted`].
    pub interrupt: Option<&'static AtomicI32>,
}

impl RunOptions {
    /// Options for `plugin` with the default profile (`files` workload, generated tree).
    pub fn new(plugin: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            plugin: plugin.into(),
            profile: Profile::default(),
            profile_dir: PathBuf::from("."),
            exclusions: Exclusions::default(),
            only: Vec::new(),
            worker: WorkerProgram::CurrentExe,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            scratch: None,
            interrupt: None,
        }
    }
}

/// Why a run gave no report.
#[derive(Debug)]
pub enum RunError {
    /// The runner could not run (exit code 2); the message says why.
    Failed(String),
    /// [`RunOptions::interrupt`] stopped the run with this signal (exit code 128 + signal).
    Interrupted(i32),
}

impl RunError {
    /// The exit code of `aapi-conformance run` for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Failed(_) => 2,
            RunError::Interrupted(sig) => 128u8.saturating_add(*sig as u8),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Failed(m) => f.write_str(m),
            RunError::Interrupted(sig) => write!(
                f,
                "stopped by {}: the workers were killed and no report was written",
                signal_name(*sig)
            ),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Debug, Default)]
struct CheckState {
    findings: Vec<String>,
    /// The ends of this check's workers that a plugin call caused: (signature, finding), the
    /// signature naming the kind of end and the call, e.g. `crash(SIGSEGV) in aapi_open_object`.
    deaths: Vec<(String, String)>,
    skip: Option<String>,
    ran: bool,
    error: Option<String>,
    logs: Vec<String>,
    ms: u64,
    /// For each worker of this check stopped in a function that had hung before (one of its
    /// `deaths`), the check in whose worker that function hung.
    stops: Vec<String>,
}

/// A function that hung in a worker; when it kept alive until the worker limit, later workers
/// that call it are stopped after its budget.
#[derive(Debug, Clone)]
struct Hang {
    /// The check whose worker it hung in first.
    check: String,
    /// The signature of that worker's end (`timeout in F`, `overrun in F`).
    signature: String,
    /// How it hung, for the findings of the stopped workers.
    what: String,
}

impl Hang {
    /// Whether it hung without keepalive: its later calls are not stopped early.
    fn is_timeout(&self) -> bool {
        self.signature.starts_with("timeout")
    }
}

struct Unit {
    outputs: Vec<serde_json::Value>,
    end: Option<WorkerEnd>,
    done: bool,
}

impl Unit {
    fn errors(&self) -> Vec<String> {
        self.outputs
            .iter()
            .filter_map(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .collect()
    }

    fn value(&self, key: &str) -> Option<&serde_json::Value> {
        self.outputs.iter().find_map(|v| v.get(key))
    }

    fn ok(&self) -> bool {
        self.done && self.end.as_ref().is_some_and(|e| e.is_success()) && self.errors().is_empty()
    }
}

/// What the pipeline's discovery leaves for the rest: snapshot id, workload directory, the
/// workload files, the manifest of the selections (`files`), and the watched directories before.
type Discovered = (
    String,
    PathBuf,
    Vec<WorkloadFile>,
    Option<Manifest>,
    BTreeSet<PathBuf>,
);

struct Runner {
    opts: RunOptions,
    setup: Setup,
    scratch: PathBuf,
    /// Free bytes on the scratch file system below which findings are taken for runner errors.
    low_space: u64,
    tree: Option<PathBuf>,
    restore_root: PathBuf,
    restored_selections: Vec<Vec<u8>>,
    change_command: Option<String>,
    changed_objects: Vec<Vec<u8>>,
    defs: Vec<CheckDef>,
    state: Mutex<BTreeMap<String, CheckState>>,
    objects: Mutex<Objects>,
    crashes: Mutex<Vec<String>>,
    timeouts: Mutex<Vec<String>>,
    overruns: Mutex<Vec<String>>,
    stats: Mutex<Vec<Stats>>,
    texts: Mutex<Vec<(String, String)>>,
    seq: AtomicUsize,
    /// Process ids (and process groups) of the running workers.
    running: Mutex<BTreeSet<u32>>,
    /// The entry points that hung (a timeout, or the worker limit reached in them), by name.
    hangs: Mutex<BTreeMap<String, Hang>>,
}

/// Free space on the scratch file system, beyond what the selections hold, below which a
/// finding is taken for a runner error: the plugin may have failed for want of space.
const LOW_SPACE: u64 = 8 << 20;

/// What to do when the scratch file system is full.
const NO_SPACE_HINT: &str = ": free space there, or name a directory on a larger file system \
    with --keep-scratch DIR (a run of the default profile needs about 40 MiB)";

/// Bytes an unprivileged process may still write on the file system of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `vfs` room for the struct statvfs fills.
    if unsafe { libc::statvfs(c.as_ptr(), vfs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let vfs = unsafe { vfs.assume_init() };
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// The checks of the steps every other check builds on: a worker of another check that ends
/// the way one of these did (same kind of end, same call) is blocked by it.
const STEPS: &[&str] = &[
    "load.claim",
    "life.discovery",
    "life.backup",
    "life.postprocess",
    "life.restore",
];

/// The file that marks a kept scratch directory as the runner's.
const SCRATCH_MARK: &str = ".aapi-conformance-scratch";

/// Make `dir` the run's scratch directory: a new or empty directory, or one an earlier run
/// kept (it holds [`SCRATCH_MARK`]), which is emptied. Returns its canonical path and the
/// marker, open and locked (`flock`) for the run: a second run given the same directory while
/// this one goes is refused instead of emptying it under this run's feet.
fn keep_scratch(dir: &Path, inputs: &[&Path]) -> Result<(PathBuf, std::fs::File), String> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "--keep-scratch {shown}: exists and is not a directory: DIR must be a new, empty or earlier scratch directory"
        ));
    }
    // The directory is emptied: nothing the run reads may be in it.
    if let Ok(d) = std::fs::canonicalize(dir)
        && let Some(i) = inputs
            .iter()
            .find(|i| std::fs::canonicalize(i).is_ok_and(|i| i.starts_with(&d)))
    {
        return Err(format!(
            "--keep-scratch {shown}: holds {}, an input of the run, and a run empties it first: keep the scratch elsewhere",
            i.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("--keep-scratch {shown}: {e}"))?;
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(|e| format!("--keep-scratch {shown}: {e}"))?
        .flatten()
        .filter(|e| e.file_name() != SCRATCH_MARK)
        .collect();
    if !entries.is_empty() && !dir.join(SCRATCH_MARK).is_file() {
        return Err(format!(
            "--keep-scratch {shown}: the directory is not empty and holds no scratch of an earlier run ({SCRATCH_MARK}): remove it or choose a new or empty directory"
        ));
    }
    let mark = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(SCRATCH_MARK))
        .map_err(|e| {
            format!(
                "--keep-scratch {shown}: cannot open its marker {SCRATCH_MARK} to write and lock it: {e}; remove it, or choose a new or empty directory"
            )
        })?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&mark);
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            format!(
                "--keep-scratch {shown}: another run is using this directory now; wait for it to end, or give each run its own directory"
            )
        } else {
            format!(
                "--keep-scratch {shown}: cannot lock its marker {SCRATCH_MARK} ({e}), so a run using it at the same time would go unseen: keep the scratch on a local file system"
            )
        });
    }
    for e in entries {
        let path = e.path();
        let gone = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        gone.map_err(|err| {
            format!(
                "--keep-scratch {shown}: cannot empty the scratch of an earlier run ({}: {err}): remove it yourself",
                path.display()
            )
        })?;
    }
    mark.set_len(0)
        .and_then(|()| {
            std::io::Write::write_all(
                &mut &mark,
                b"aapi-conformance keeps a run's scratch here; the next run with --keep-scratch empties it\n",
            )
        })
        .map_err(|e| format!("--keep-scratch {shown}: {e}"))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("--keep-scratch {shown}: {e}"))?;
    Ok((dir, mark))
}

/// The registered check `id`.
fn step(id: &str) -> CheckDef {
    checks::find(id).expect("a registered check")
}

/// How far along the chain of steps `def` builds: the gate, the claim, discovery, backup,
/// restore.
fn step_rank(def: &CheckDef) -> u8 {
    match def.needs {
        None | Some(Needs::Plugin) => 0,
        Some(Needs::Claim) => 1,
        Some(Needs::Objects) => 2,
        Some(Needs::Backup) => 3,
        Some(Needs::Restore | Needs::RoundTrip) => 4,
    }
}

/// The checks that judge every worker of the run (crashes, timeouts, codes, output...), not a
/// probe of their own.
const RUN_WIDE: &[&str] = &[
    "time.budget",
    "time.bounded",
    "mem.no-crash",
    "rc.codes",
    "rc.documented-codes",
    "thr.callbacks",
    "sec.secrets",
    "sec.output",
    "time.keepalive-cadence",
];

/// Whether `def` needs the check `step` to pass, directly or through the checks it needs.
pub(crate) fn needs_step(def: &CheckDef, step: &str) -> bool {
    def.needed().into_iter().any(|n| {
        n == step || (n != def.id && checks::find(n).is_some_and(|d| needs_step(&d, step)))
    })
}

/// How a call is named in findings: the library load says what runs then.
fn call_name(function: &str) -> String {
    if function == aapi_host::supervise::LOADING {
        format!("{function} (loading the library runs its constructors)")
    } else {
        function.to_string()
    }
}

/// Run the suite. `Err` only when the runner could not run at all.
pub fn run(opts: RunOptions) -> Result<Report, RunError> {
    crate::worker::serve_if_requested();
    let started = Instant::now();
    if !opts.plugin.is_file() {
        let what = match std::fs::metadata(&opts.plugin) {
            Ok(m) if m.is_dir() => "is a directory; give the plugin's shared library (.so)".into(),
            Ok(_) => "is not a regular file; give the plugin's shared library (.so)".into(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such plugin file".into(),
            Err(e) => e.to_string(),
        };
        return Err(RunError::Failed(format!(
            "{}: {what}",
            opts.plugin.display()
        )));
    }
    let plugin = std::fs::canonicalize(&opts.plugin)
        .map_err(|e| RunError::Failed(format!("{}: {e}", opts.plugin.display())))?;
    opts.profile
        .validate()
        .map_err(|e| RunError::Failed(format!("profile: {e}")))?;
    let defs: Vec<CheckDef> = checks::all()
        .into_iter()
        .filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| c.id.starts_with(o)))
        .collect();
    if let Some(o) = opts
        .only
        .iter()
        .find(|o| !defs.iter().any(|c| c.id.starts_with(o.as_str())))
    {
        return Err(RunError::Failed(format!(
            "--only {o:?} matches no check (see `aapi-conformance list`)"
        )));
    }
    // The kept scratch's locked marker, held to the end of the run.
    let mut _kept_mark = None;
    let (scratch_holder, scratch) = match &opts.scratch {
        Some(d) => {
            let (dir, mark) = keep_scratch(d, &[plugin.as_path(), opts.profile_dir.as_path()])
                .map_err(RunError::Failed)?;
            _kept_mark = Some(mark);
            (None, dir)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("aapi-conformance-")
                .tempdir()
                .map_err(|e| RunError::Failed(format!("cannot create a scratch directory: {e}")))?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let p = &opts.profile;
    let tree_dir = scratch.join("tree");
    let x = |s: &str| profile::expand(s, &tree_dir, &scratch, &opts.profile_dir);
    // Relative paths are relative to the profile's directory: directories always, selections
    // when they name files (the `files` workload; other workloads' selections are not paths).
    let profile_dir = std::path::absolute(&opts.profile_dir)
        .map_err(|e| RunError::Failed(format!("{}: {e}", opts.profile_dir.display())))?;
    let dir = |s: &str| {
        let e = x(s);
        if e.is_empty() || Path::new(&e).is_absolute() {
            e
        } else {
            profile_dir.join(e).to_string_lossy().into_owned()
        }
    };
    let files_workload = p.workload_type == "files";
    let sel = |s: &str| if files_workload { dir(s) } else { x(s) };
    let mut credentials = match &p.credentials_file {
        Some(f) => profile::read_credentials(&opts.profile_dir.join(x(f)))
            .map_err(|e| RunError::Failed(e.to_string()))?,
        None => Vec::new(),
    };
    credentials.extend(p.credentials.iter().map(|(k, v)| (k.clone(), v.clone())));
    let selections: Vec<Vec<u8>> = p.selections.iter().map(|s| sel(s).into_bytes()).collect();
    let restore_root = PathBuf::from(dir(&p.restore_root));
    if std::fs::read_dir(&restore_root).is_ok_and(|mut d| d.next().is_some()) {
        return Err(RunError::Failed(format!(
            "profile: restore_root {} exists and is not empty (a run empties it at its end, unless it was killed or had --keep-scratch); the round trip restores into it: empty it or name another directory",
            restore_root.display()
        )));
    }
    // A restore root of the profile's, outside the scratch directory, holds nothing now: what
    // the run restores there goes with the scratch, however the run ends (an interrupt
    // included), so the next run (a reused CI workspace) finds it empty. `--keep-scratch`
    // keeps both.
    let _restored = EmptiedAtEnd(
        (scratch_holder.is_some() && !restore_root.starts_with(&scratch))
            .then(|| restore_root.clone()),
    );
    let restored_selections = match &p.restored_selections {
        Some(v) => v.iter().map(|s| sel(s).into_bytes()).collect(),
        None => selections
            .iter()
            .map(|s| crate::pipeline::under(&restore_root, s))
            .collect(),
    };
    let mut properties: Vec<(String, String)> = p
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), x(v)))
        .collect();
    properties.sort();
    let setup = Setup {
        plugin: plugin.clone(),
        workload_type: p.workload_type.clone(),
        server: x(&p.server),
        properties,
        budget_ms: p.call_budget_ms,
        credentials,
        selections,
        hosts: p.backup_hosts.clone(),
        files: p.files.is_some(),
        timing_budget_ms: p.timing.budget_ms,
        timing_selections: p
            .timing
            .selections
            .iter()
            .map(|s| sel(s).into_bytes())
            .collect(),
        timing_properties: p
            .timing
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), x(v)))
            .collect(),
        watch_dirs: p
            .data
            .watch_dirs
            .iter()
            // `{job}` stands for an absolute directory that each worker names when it starts.
            .map(|d| PathBuf::from(if d.starts_with("{job}") { x(d) } else { dir(d) }))
            .collect(),
    };
    if let Some(ft) = &p.files {
        tree::generate(&tree_dir, ft).map_err(|e| {
            RunError::Failed(format!(
                "cannot generate the test tree in {}: {e}{}",
                tree_dir.display(),
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    NO_SPACE_HINT
                } else {
                    ""
                }
            ))
        })?;
    }
    // A restore writes the selections back: with less free than they hold (and a margin), a
    // plugin's failure may be the scratch file system's fault.
    let low_space = LOW_SPACE
        + p.files
            .as_ref()
            .and_then(|_| {
                let roots: Vec<PathBuf> = setup
                    .selections
                    .iter()
                    .map(|s| PathBuf::from(OsStr::from_bytes(s)))
                    .collect();
                Manifest::scan(&roots).ok()
            })
            .map_or(0, |m| m.0.values().map(|e| e.size).sum());
    for d in &setup.watch_dirs {
        let d = PathBuf::from(
            d.to_string_lossy()
                .replace("{job}", &scratch.join("pipeline").to_string_lossy()),
        );
        std::fs::create_dir_all(&d)
            .map_err(|e| RunError::Failed(format!("{}: {e}", d.display())))?;
    }
    let shell = crate::shell::Shell {
        cwd: &opts.profile_dir,
        env: vec![
            ("AAPI_CONFORMANCE_SCRATCH", scratch.as_path()),
            ("AAPI_CONFORMANCE_TREE", tree_dir.as_path()),
        ],
        interrupt: opts.interrupt,
    };
    // Teardown runs whenever setup ran: after a failing or interrupted setup too. What the
    // teardown leaves running is killed when it ends; what the setup left running (a service
    // the checks used) after the teardown.
    let teardown = || -> Result<(), Stop> {
        let Some(cmd) = &p.teardown else {
            return Ok(());
        };
        shell.run_teardown(&x(cmd)).1
    };
    let mut setup_group = None;
    if let Some(cmd) = &p.setup {
        let (group, result) = shell.run("setup", &x(cmd));
        setup_group = group;
        if let Err(e) = result {
            let t = teardown();
            drop(setup_group);
            return Err(match (e, t) {
                (Stop::Interrupted(sig), _) | (_, Err(Stop::Interrupted(sig))) => {
                    RunError::Interrupted(sig)
                }
                (Stop::Failed(e), Ok(())) => RunError::Failed(e),
                (Stop::Failed(e), Err(Stop::Failed(t))) => {
                    RunError::Failed(format!("{e}; then {t}"))
                }
            });
        }
    }
    // A `files` selection that is not there (a typo, an unknown placeholder) is the profile's
    // mistake, not the plugin's: said before any check runs (after the setup, which may make it).
    let missing = setup
        .selections
        .iter()
        .find(|s| files_workload && std::fs::symlink_metadata(OsStr::from_bytes(s)).is_err());
    if let Some(m) = missing {
        let t = teardown();
        drop(setup_group);
        return Err(match t {
            Err(Stop::Interrupted(sig)) => RunError::Interrupted(sig),
            _ => RunError::Failed(format!(
                "profile: the selection {} does not exist; check `selections` (placeholders: {{tree}}, {{scratch}}, {{profile_dir}})",
                String::from_utf8_lossy(m)
            )),
        });
    }
    let runner = Runner {
        setup,
        tree: p.files.as_ref().map(|_| tree_dir.clone()),
        restore_root,
        restored_selections,
        change_command: p.data.change_command.as_deref().map(x),
        changed_objects: p
            .data
            .changed_objects
            .iter()
            .map(|s| sel(s).into_bytes())
            .collect(),
        scratch: scratch.clone(),
        low_space,
        defs,
        state: Mutex::new(BTreeMap::new()),
        objects: Mutex::new(Objects::default()),
        crashes: Mutex::new(Vec::new()),
        timeouts: Mutex::new(Vec::new()),
        overruns: Mutex::new(Vec::new()),
        stats: Mutex::new(Vec::new()),
        texts: Mutex::new(Vec::new()),
        seq: AtomicUsize::new(0),
        running: Mutex::new(BTreeSet::new()),
        hangs: Mutex::new(BTreeMap::new()),
        opts: opts.clone(),
    };
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        // Stop what runs as soon as the interrupt comes.
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if runner.interrupted().is_some() {
                    runner.kill_workers();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let r = runner.run_all();
        done.store(true, Ordering::SeqCst);
        r
    });
    // A failing teardown does not discard the results: the report carries it.
    let teardown_error = match teardown() {
        Ok(()) => None,
        Err(Stop::Failed(e)) => Some(e),
        Err(Stop::Interrupted(sig)) => return Err(RunError::Interrupted(sig)),
    };
    drop(setup_group);
    if let Some(sig) = runner.interrupted() {
        return Err(RunError::Interrupted(sig));
    }
    let mut report = result?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(e) = teardown_error {
        report.set_teardown_error(e);
    }
    drop(scratch_holder);
    Ok(report)
}

/// How many threads start the probes' workers: `jobs`, but at least one and no more than there
/// are probes (`--jobs 100000` must not ask for 100000 thread stacks).
fn worker_threads(jobs: usize, probes: usize) -> usize {
    jobs.clamp(1, probes.max(1))
}

/// A directory whose entries are removed, as far as they can be, when this is dropped; the
/// directory itself stays.
struct EmptiedAtEnd(Option<PathBuf>);

impl Drop for EmptiedAtEnd {
    fn drop(&mut self) {
        let Some(dir) = &self.0 else { return };
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

impl Runner {
    /// Whether a MUST check that `def` needs, directly or not, has failed already: then `def`
    /// is blocked whatever its probe would find, and the probe need not run.
    fn failed_need(&self, def: &CheckDef) -> bool {
        def.needed().into_iter().filter(|n| *n != def.id).any(|n| {
            let failed = self
                .state
                .lock()
                .unwrap()
                .get(n)
                .is_some_and(|s| s.error.is_some() || !s.findings.is_empty());
            let nd = checks::find(n).expect("needed checks exist");
            (failed && nd.level == Level::Must) || self.failed_need(&nd)
        })
    }

    /// The signal that stopped the run, if one did.
    fn interrupted(&self) -> Option<i32> {
        self.opts
            .interrupt
            .map(|a| a.load(Ordering::SeqCst))
            .filter(|s| *s != 0)
    }

    /// Kill every running worker with its process group (what the plugin started).
    fn kill_workers(&self) {
        for pid in self.running.lock().unwrap().iter() {
            // SAFETY: kill(2) of a worker's process group. A worker leaves `running` just after
            // it was reaped, so the id can be stale for that moment; ids are handed out in turn,
            // so it is not another process group's by then.
            unsafe { libc::kill(-(*pid as libc::pid_t), libc::SIGKILL) };
        }
    }

    fn with<R>(&self, id: &str, f: impl FnOnce(&mut CheckState) -> R) -> R {
        let mut s = self.state.lock().unwrap();
        f(s.entry(id.to_string()).or_default())
    }

    fn fail(&self, id: &str, msg: impl Into<String>) {
        let msg = msg.into();
        // A correct plugin fails too when the scratch file system is full: not its fault.
        if let Some(free) = free_bytes(&self.scratch).filter(|f| *f < self.low_space) {
            self.harness(
                id,
                format!(
                    "{msg}; the scratch file system of {} has only {} KiB free, so this may be \
                     for want of space{NO_SPACE_HINT}",
                    self.scratch.display(),
                    free >> 10
                ),
            );
            return;
        }
        self.with(id, |s| {
            if s.findings.len() < 40 && !s.findings.contains(&msg) {
                s.findings.push(msg);
            }
        });
    }

    /// Record that `function` hung in a worker of `check` (`kind`: `timeout`, `overrun`), unless
    /// it hung before. A function that kept alive until the worker limit (an overrun) after it
    /// had timed out without keepalive is recorded anew: from then on its calls are stopped.
    fn hung(&self, function: &str, check: &str, kind: &str, what: String) {
        if !ENTRY_POINTS.contains(&function) {
            return;
        }
        let hang = Hang {
            check: check.to_string(),
            signature: format!("{kind} in {function}"),
            what,
        };
        let mut hangs = self.hangs.lock().unwrap();
        match hangs.entry(function.to_string()) {
            Entry::Vacant(v) => {
                v.insert(hang);
            }
            Entry::Occupied(mut o) => {
                if o.get().is_timeout() && !hang.is_timeout() {
                    o.insert(hang);
                }
            }
        }
    }

    /// The plugin ended the worker process: a finding of the running check and of
    /// `mem.no-crash` (MEM-3: nothing may end the process).
    fn ended(&self, current: &str, msg: String) {
        self.fail(current, msg.clone());
        self.crashes
            .lock()
            .unwrap()
            .push(format!("{msg} (during {current})"));
    }

    fn ran(&self, id: &str) {
        self.with(id, |s| s.ran = true);
    }

    fn skip(&self, id: &str, reason: impl Into<String>) {
        let r = reason.into();
        self.with(id, |s| s.skip = Some(r));
    }

    fn harness(&self, id: &str, msg: impl Into<String>) {
        let m = msg.into();
        self.with(id, |s| s.error.get_or_insert(m).clone());
    }

    fn passed(&self, id: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.get(id).is_some_and(|c| {
            c.ran && c.findings.is_empty() && c.error.is_none() && c.skip.is_none()
        })
    }

    /// The limits of a unit whose sessions run with `budget_ms`. Calls without a session are
    /// held to the profile's `call_budget_ms` in every unit: they cannot keep alive, and the
    /// `[timing]` budget is for the keepalive and cancel checks.
    fn limits(&self, budget_ms: u32) -> Limits {
        Limits {
            call_budget: Duration::from_millis(budget_ms as u64),
            sessionless_budget: Duration::from_millis(self.setup.budget_ms as u64),
            cancel_bound: Duration::from_millis(AAPI_CANCEL_BOUND_MS.min(budget_ms) as u64),
            max_run: Some(self.opts.profile.worker_limit()),
        }
    }

    /// Run one task in a worker process and record what it reports.
    fn unit(&self, task: Task, primary: &str) -> Unit {
        let budget = match &task {
            Task::Probe { check }
                if check == "time.cancel" || check == "time.keepalive-cadence" =>
            {
                self.setup.timing_budget_ms
            }
            _ => self.setup.budget_ms,
        };
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let base = self.scratch.join("units").join(format!("{n:04}"));
        let dir = base.join("dir");
        let capture = base.join("output");
        let mut unit = Unit {
            outputs: Vec::new(),
            end: None,
            done: false,
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            self.harness(primary, format!("cannot create {}: {e}", dir.display()));
            return unit;
        }
        let job = match &task {
            Task::Gate | Task::Probe { .. } => base.clone(),
            _ => self.pipeline_job(),
        };
        // Every session the unit opens announces the budget its calls are held to, so a plugin
        // that paces its keepalives by its session's budget is never killed for it.
        let mut setup = self.setup.clone();
        setup.budget_ms = budget;
        // A call to a function that kept alive until a worker's limit before gets its budget,
        // keepalives or not, not another worker limit. A function that hung without keepalive
        // is not stopped early: its calls are held to the budget anyway, and a later call that
        // returns within it is correct (a first call may be slow for good reasons). The long
        // call of the timing checks is long on purpose: it is not stopped so (`time.cancel`
        // ends it with its cancel, `time.keepalive-cadence` at the worker limit at worst).
        let long_call = matches!(&task, Task::Probe { check }
            if check == "time.cancel" || check == "time.keepalive-cadence");
        let hung = if long_call {
            Vec::new()
        } else {
            self.hangs
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, h)| !h.is_timeout())
                .map(|(f, _)| HungCall {
                    function: f.clone(),
                    grace_ms: if is_sessionless(f) {
                        self.setup.budget_ms
                    } else {
                        budget
                    } as u64,
                })
                .collect()
        };
        let spec = TaskSpec {
            setup,
            objects: self.objects.lock().unwrap().clone(),
            capture: capture.clone(),
            dir,
            job,
            check: primary.to_string(),
            hung,
            task,
        };
        if self.interrupted().is_some() {
            return unit;
        }
        let started = Instant::now();
        let mut cmd = match self.opts.worker.command() {
            Ok(c) => c,
            Err(e) => {
                self.harness(primary, format!("cannot find the worker program: {e}"));
                return unit;
            }
        };
        // In a file: the task lists every discovered object, more than one environment string
        // may hold (128 KiB on Linux).
        let task_file = base.join("task.json");
        let task = serde_json::to_string(&spec).expect("task serialises");
        if let Err(e) = std::fs::write(&task_file, task) {
            self.harness(
                primary,
                format!("cannot write {}: {e}", task_file.display()),
            );
            return unit;
        }
        cmd.env(TASK_ENV, &task_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let worker = match Worker::spawn(cmd, self.limits(budget)) {
            Ok(w) => w,
            Err(e) => {
                self.harness(primary, format!("cannot start a worker process: {e}"));
                return unit;
            }
        };
        let pid = worker.pid();
        self.running.lock().unwrap().insert(pid);
        crate::signals::add_worker(pid);
        let cancel = worker.cancel_handle();
        let mut current = primary.to_string();
        let mut stopped: Option<(String, u64)> = None;
        let outcome = worker.run(|ev| match ev {
            Event::Result { value } => match serde_json::from_value::<Msg>(value.clone()) {
                Ok(Msg::Begin { check }) => current = check,
                Ok(Msg::Finding { check, message }) => self.fail(&check, message),
                Ok(Msg::Skip { check, reason }) => self.skip(&check, reason),
                Ok(Msg::Ran { check }) => self.ran(&check),
                Ok(Msg::Output { value }) => {
                    if value.get("cancel_answered").is_some() {
                        cancel.cancel();
                    }
                    unit.outputs.push(value);
                }
                Ok(Msg::Stats(s)) => self.stats.lock().unwrap().push(s),
                Ok(Msg::Done) => unit.done = true,
                Ok(Msg::Stopped { function, after_ms }) => stopped = Some((function, after_ms)),
                Err(e) => self.harness(&current, format!("unreadable worker message: {e}")),
            },
            Event::Log { level, message } => {
                let line = format!("[{}] {}", aapi_host::client::level_name(*level), message);
                self.texts
                    .lock()
                    .unwrap()
                    .push((current.clone(), message.clone()));
                self.with(&current, |s| {
                    if s.logs.len() >= 200 {
                        s.logs.remove(0);
                    }
                    s.logs.push(line);
                });
            }
            _ => {}
        });
        self.running.lock().unwrap().remove(&pid);
        crate::signals::remove_worker(pid);
        let ms = started.elapsed().as_millis() as u64;
        self.with(primary, |s| s.ms += ms);
        match outcome {
            Ok(o) => {
                let stop = stopped.and_then(|(function, after_ms)| {
                    let hang = self.hangs.lock().unwrap().get(&function).cloned()?;
                    Some((function, after_ms, hang))
                });
                let death = if let Some((function, after_ms, hang)) = stop {
                    // The same hang again: a finding that names the first, with its signature,
                    // so that a check blocked by that one's failure says so.
                    let msg = format!(
                        "{function} was stopped after {after_ms} ms without returning: it had already hung during {} ({})",
                        hang.check, hang.what
                    );
                    self.fail(&current, msg.clone());
                    self.with(&current, |s| s.stops.push(hang.check.clone()));
                    Some((hang.signature, msg))
                } else if let Some(after) = &o.link_lost {
                    // The plugin closed or replaced the worker's event pipe: said so, after the
                    // call that did it, rather than as an exit of unknown cause.
                    let msg = aapi_host::supervise::link_lost_message(after.as_deref());
                    self.ended(&current, msg.clone());
                    after
                        .as_ref()
                        .map(|f| (format!("lost pipe after {f}"), msg))
                } else {
                    self.worker_end(&o.end, &o.failures, &current, unit.done)
                };
                if let Some(d) = death {
                    self.with(&current, |s| s.deaths.push(d));
                }
                for g in o.garbage.iter().take(3) {
                    self.harness(&current, format!("garbage on the event pipe: {g}"));
                }
                unit.end = Some(o.end);
            }
            Err(e) => self.harness(&current, format!("lost the worker: {e}")),
        }
        if let Ok(out) = std::fs::read(&capture)
            && !out.is_empty()
        {
            let text = String::from_utf8_lossy(&out).into_owned();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect::<String>();
            self.fail(
                "sec.output",
                format!(
                    "{} bytes written to stdout/stderr during {primary}, starting {first:?}",
                    out.len()
                ),
            );
            self.texts.lock().unwrap().push((primary.to_string(), text));
        }
        unit
    }

    /// Record how a worker that was not stopped ended: the findings of `current` (the check it
    /// ran last) and of the run-wide checks, and the hang of the function it was in. Returns
    /// the end's (signature, finding) when a plugin call caused it.
    fn worker_end(
        &self,
        end: &WorkerEnd,
        failures: &[String],
        current: &str,
        done: bool,
    ) -> Option<(String, String)> {
        let mut death: Option<(String, String)> = None;
        match end {
            WorkerEnd::Exited(0) if done => {}
            WorkerEnd::Exited(code)
                if *code == crate::worker::HARNESS_FAILURE && !failures.is_empty() =>
            {
                self.harness(current, failures.join("; "));
            }
            WorkerEnd::Exited(code) if done => {
                self.ended(
                    current,
                    format!(
                        "the plugin ended the process with exit status {code} in {}",
                        aapi_host::supervise::EXITING
                    ),
                );
            }
            WorkerEnd::Exited(code) => {
                self.ended(
                    current,
                    format!(
                        "the plugin ended the process (exit status {code}) outside any plugin call, before the task was done"
                    ),
                );
            }
            WorkerEnd::ExitedInCall { code, function } => {
                let msg = format!(
                    "the plugin ended the process (exit status {code}) in {}",
                    call_name(function)
                );
                self.ended(current, msg.clone());
                death = Some((format!("exit in {function}"), msg));
            }
            WorkerEnd::Crashed { signal, function } => {
                let msg = match function {
                    Some(f) => {
                        format!("crash({}) in {}", signal_name(*signal), call_name(f))
                    }
                    None => format!("crash({}) outside any call", signal_name(*signal)),
                };
                if let Some(f) = function {
                    let signature = format!("crash({}) in {f}", signal_name(*signal));
                    death = Some((signature, msg.clone()));
                }
                self.fail(current, msg.clone());
                self.crashes
                    .lock()
                    .unwrap()
                    .push(format!("{msg} (during {current})"));
            }
            WorkerEnd::TimedOut { function, budget } => {
                let msg = format!(
                    "timeout in {}: no return and no keepalive within {} ms",
                    call_name(function),
                    budget.as_millis()
                );
                death = Some((format!("timeout in {function}"), msg.clone()));
                self.hung(
                    function,
                    current,
                    "timeout",
                    format!("no return and no keepalive within {} ms", budget.as_millis()),
                );
                self.fail(current, msg.clone());
                self.timeouts
                    .lock()
                    .unwrap()
                    .push(format!("{msg} (during {current})"));
            }
            WorkerEnd::Overran {
                limit,
                function: Some(function),
            } => {
                let msg = format!(
                    "{} had not returned when the worker reached its limit of {} s (worker_limit_s), keepalives or not: an unbounded wait (if the call is legitimately this long, raise worker_limit_s in the profile)",
                    call_name(function),
                    limit.as_secs()
                );
                death = Some((format!("overrun in {function}"), msg.clone()));
                self.hung(
                    function,
                    current,
                    "overrun",
                    format!(
                        "still running when the worker reached its limit of {} s",
                        limit.as_secs()
                    ),
                );
                self.fail(current, msg.clone());
                self.overruns
                    .lock()
                    .unwrap()
                    .push(format!("{msg} (during {current})"));
            }
            WorkerEnd::Overran {
                limit,
                function: None,
            } => self.harness(
                current,
                format!(
                    "the worker reached its limit of {} s (worker_limit_s) outside any plugin call: raise worker_limit_s in the profile if the data needs longer",
                    limit.as_secs()
                ),
            ),
            WorkerEnd::CancelIgnored { function, bound } => {
                self.fail(
                    current,
                    format!(
                        "cancel ignored in {function}: no return within {} ms of the AAPI_ECANCELLED answer",
                        bound.as_millis()
                    ),
                );
            }
        }
        death
    }

    fn run_all(&self) -> Result<Report, RunError> {
        // 1. The gate.
        self.unit(Task::Gate, "load.marker");
        let gate_ok = GATE.iter().all(|g| self.passed(g));
        if gate_ok {
            // 2. Discovery (objects for everything else), then the rest in parallel. Without
            // objects, the probes that need them are not run: they are blocked by discovery.
            let needed = self.with_needed();
            let disc = if needed.iter().any(|d| d.id == "life.discovery") {
                self.discovery()
            } else {
                None
            };
            let have_objects = disc.is_some();
            let mut work: Vec<Box<dyn FnOnce() + Send + '_>> = Vec::new();
            if let Some(d) = disc {
                work.push(Box::new(move || self.pipeline_rest(d)));
            }
            let mut probes: Vec<CheckDef> = needed
                .iter()
                .filter(|d| !self.opts.exclusions.0.contains_key(&d.id))
                .filter(|d| have_objects || !needs_step(d, "life.discovery"))
                .filter_map(|d| crate::probes::probe_for(&d.id))
                .filter_map(|id| checks::find(&id))
                .collect();
            // The probes that need the least first: by the time those that need the backup or
            // the restore start, a failed step is known, and they are not started at all.
            probes.sort_by_key(|d| (step_rank(d), d.id.clone()));
            probes.dedup_by(|a, b| a.id == b.id);
            for def in probes {
                work.push(Box::new(move || {
                    if !self.failed_need(&def) {
                        self.unit(
                            Task::Probe {
                                check: def.id.clone(),
                            },
                            &def.id,
                        );
                    }
                }));
            }
            let threads = worker_threads(self.opts.jobs, work.len());
            let queue = Mutex::new(work.into_iter());
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        while self.interrupted().is_none() {
                            let next = queue.lock().unwrap().next();
                            match next {
                                Some(job) => job(),
                                None => break,
                            }
                        }
                    });
                }
            });
            self.aggregates();
        }
        Ok(self.finalize())
    }

    /// The selected checks and every check they need, directly or not: a check that `--only`
    /// leaves out still runs when a selected one needs it.
    /// A selected run-wide check ([`RUN_WIDE`]) judges every worker of the run, so it brings in
    /// every check: selected alone it would judge only the gate, and pass a broken plugin.
    fn with_needed(&self) -> Vec<CheckDef> {
        let mut out: Vec<CheckDef> = Vec::new();
        let mut todo: Vec<CheckDef> = if self.defs.iter().any(|d| RUN_WIDE.contains(&d.id.as_str()))
        {
            checks::all()
        } else {
            self.defs.clone()
        };
        while let Some(d) = todo.pop() {
            if out.iter().any(|o| o.id == d.id) {
                continue;
            }
            todo.extend(d.needed().into_iter().filter_map(checks::find));
            out.push(d);
        }
        out
    }

    /// For a workload type other than `files` whose discovery missed objects of the walk: how
    /// the runner came to expect them, and how to give the workload's own selections.
    fn walk_note(&self) -> String {
        let why = if self.opts.profile.uses_tree() {
            "the profile's selections use {tree} (as the default selections do), which implies [files]"
        } else {
            "the profile has a [files] section"
        };
        format!(
            "note: the runner expected every entry of a recursive walk of the selections, the meaning of a selection in the `files` workload, because {why}; workload type {:?} may mean something else by a selection: give the profile selections of its own (without {{tree}}, staged by `setup` under {{scratch}} if needed) and, unless its objects are files, no [files] section (docs/conformance.md, profile)",
            self.setup.workload_type
        )
    }

    fn workload_dir(&self, name: &str) -> PathBuf {
        let d = self.scratch.join(name);
        let _ = std::fs::create_dir_all(&d);
        d
    }

    fn watch_state(&self) -> BTreeSet<PathBuf> {
        let mut s = BTreeSet::new();
        fn walk(p: &Path, out: &mut BTreeSet<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    out.insert(path.clone());
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&path, out);
                    }
                }
            }
        }
        let job = self.pipeline_job().to_string_lossy().into_owned();
        for d in &self.setup.watch_dirs {
            walk(
                Path::new(&d.to_string_lossy().replace("{job}", &job)),
                &mut s,
            );
        }
        s
    }

    /// `{job}` of the data pipeline's workers.
    fn pipeline_job(&self) -> PathBuf {
        self.scratch.join("pipeline")
    }

    fn selection_manifest(&self, selections: &[Vec<u8>]) -> Option<Manifest> {
        self.tree.as_ref()?;
        let roots: Vec<PathBuf> = selections
            .iter()
            .map(|s| PathBuf::from(OsStr::from_bytes(s)))
            .collect();
        Manifest::scan(&roots).ok()
    }

    /// Check the workload files of a discovery in `out`; returns them when they parse.
    fn check_workload_dir(
        &self,
        out: &Path,
        hosts: &[String],
        snapid: &str,
        expected: Option<&Manifest>,
    ) -> Vec<WorkloadFile> {
        let mut files = Vec::new();
        let names: BTreeSet<String> = std::fs::read_dir(out)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for n in &names {
            if !hosts.iter().any(|h| format!("{h}.wkld") == *n) {
                self.fail(
                    "disc.workload-files",
                    format!("unexpected file {n:?} in the workload directory"),
                );
                if n.contains("tmp") || n.starts_with('.') {
                    self.fail(
                        "disc.workload-mode",
                        format!("temporary file {n:?} left behind"),
                    );
                }
            }
        }
        for h in hosts {
            let path = aapi_sdk::workload::file_name(out, h, ".wkld");
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                self.fail(
                    "disc.workload-files",
                    format!("no workload file {} for backup host {h:?}", path.display()),
                );
                continue;
            };
            let mode = md.permissions().mode() & 0o7777;
            if mode != 0o600 {
                self.fail(
                    "disc.workload-mode",
                    format!("{} has mode {mode:04o}, expected 0600", path.display()),
                );
            }
            if mode & 0o077 != 0 {
                self.fail(
                    "sec.workload-private",
                    format!(
                        "{} has mode {mode:04o}: group or others may access it",
                        path.display()
                    ),
                );
            }
            if let Ok(bytes) = std::fs::read(&path) {
                self.texts.lock().unwrap().push((
                    "disc.format".into(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
            match WorkloadFile::read_from_path(&path) {
                Ok(wf) => {
                    if wf.snapshot != snapid {
                        self.fail(
                            "disc.format",
                            format!(
                                "{} carries snapshot {:?}, discovery returned {snapid:?}",
                                path.display(),
                                wf.snapshot
                            ),
                        );
                    }
                    if wf.backup_host != *h {
                        self.fail(
                            "disc.format",
                            format!(
                                "{} names backup host {:?}, expected {h:?}",
                                path.display(),
                                wf.backup_host
                            ),
                        );
                    }
                    // Keyed by the file it came from from here on.
                    let mut wf = wf;
                    wf.backup_host = h.clone();
                    files.push(wf);
                }
                Err(e) => self.fail("disc.format", format!("{}: {e}", path.display())),
            }
        }
        // Exactly once, across all files.
        let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for wf in &files {
            for e in &wf.entries {
                *seen
                    .entry(e.path.as_os_str().as_bytes().to_vec())
                    .or_default() += 1;
            }
        }
        for (p, n) in &seen {
            if *n > 1 {
                self.fail(
                    "disc.exactly-once",
                    format!("{} is listed {n} times", crate::worker::show(p)),
                );
            }
        }
        if let Some(m) = expected {
            let mut missing = 0usize;
            for p in m.0.keys() {
                if !seen.contains_key(p) {
                    missing += 1;
                    self.fail(
                        "disc.exactly-once",
                        format!(
                            "{} is in the selection but in no workload file",
                            crate::worker::show(p)
                        ),
                    );
                }
            }
            if missing > 0 && self.setup.workload_type != "files" {
                self.fail("disc.exactly-once", self.walk_note());
            }
            for p in seen.keys() {
                if !m.0.contains_key(p) {
                    self.fail(
                        "disc.format",
                        format!(
                            "{} is listed but is not a real path of the selection",
                            crate::worker::show(p)
                        ),
                    );
                }
            }
        }
        files
    }

    fn discover(
        &self,
        name: &str,
        selections: &[Vec<u8>],
        hosts: &[String],
        schedule: u32,
        properties: Vec<(String, String)>,
        primary: &str,
    ) -> (Unit, PathBuf) {
        let out = self.workload_dir(name);
        let u = self.unit(
            Task::Discover {
                out: out.clone(),
                selections: selections.to_vec(),
                hosts: hosts.to_vec(),
                schedule,
                properties,
                job: format!("conf-{name}"),
            },
            primary,
        );
        (u, out)
    }

    fn backups(
        &self,
        files: &[WorkloadFile],
        out: &Path,
        tag: &str,
        primary: &str,
    ) -> Vec<PathBuf> {
        let images: Vec<PathBuf> = files
            .iter()
            .map(|wf| self.scratch.join(format!("image-{tag}-{}", wf.backup_host)))
            .collect();
        std::thread::scope(|s| {
            for (wf, image) in files.iter().zip(&images) {
                let workload = aapi_sdk::workload::file_name(out, &wf.backup_host, ".wkld");
                s.spawn(move || {
                    let u = self.unit(
                        Task::Backup {
                            workload,
                            image: image.clone(),
                            job: format!("conf-{tag}"),
                        },
                        primary,
                    );
                    for e in u.errors() {
                        self.fail(primary, format!("backup host {}: {e}", wf.backup_host));
                    }
                });
            }
        });
        images
    }

    /// The pipeline's discovery: checks the workload files and picks the objects probes use.
    fn discovery(&self) -> Option<Discovered> {
        let watch_before = self.watch_state();
        let manifest = self.selection_manifest(&self.setup.selections);
        let hosts = self.setup.hosts.clone();
        let (u, out) = self.discover(
            "full",
            &self.setup.selections,
            &hosts,
            AAPI_SCHED_FULL,
            vec![],
            "life.discovery",
        );
        self.ran("life.discovery");
        for e in u.errors() {
            self.fail("life.discovery", e);
        }
        if !u.ok() {
            return None;
        }
        let snapid = u.value("snapid")?.as_str()?.to_string();
        let files = self.check_workload_dir(&out, &hosts, &snapid, manifest.as_ref());
        for c in [
            "disc.workload-files",
            "disc.exactly-once",
            "disc.format",
            "disc.workload-mode",
            "sec.workload-private",
        ] {
            self.ran(c);
        }
        // Balance (SHOULD).
        let mut per_host: Vec<u64> = files
            .iter()
            .map(|wf| {
                wf.entries
                    .iter()
                    .filter(|e| e.flags & AAPI_WKLD_UNCHANGED == 0)
                    .map(|e| e.size_hint)
                    .sum()
            })
            .collect();
        per_host.sort();
        let largest = files
            .iter()
            .flat_map(|wf| wf.entries.iter().map(|e| e.size_hint))
            .max()
            .unwrap_or(0);
        if let (Some(lo), Some(hi)) = (per_host.first(), per_host.last())
            && hi - lo > largest
        {
            self.fail(
                    "disc.balance",
                    format!(
                        "bytes per backup host range from {lo} to {hi}, more apart than the largest object ({largest})"
                    ),
                );
        }
        self.ran("disc.balance");
        // Objects for the probes.
        let mut all: Vec<Obj> = Vec::new();
        for wf in &files {
            for e in &wf.entries {
                let path = e.path.as_os_str().as_bytes().to_vec();
                if !all.iter().any(|o| o.path == path) {
                    all.push(Obj {
                        path,
                        flags: e.flags,
                        size: e.size_hint,
                    });
                }
            }
        }
        all.sort_by(|a, b| a.path.cmp(&b.path));
        // Probes work on objects below the selections, not on the selections themselves, nor
        // on the files the runner changes in the generated tree. A plugin whose objects are
        // exactly its selections (a database, files listed one by one) has nothing below them:
        // its probes work on the selections' objects.
        let selection = |p: &[u8]| self.setup.selections.iter().any(|s| s == p);
        let only_selections = all.iter().all(|o| selection(&o.path));
        let volatile = |p: &[u8]| {
            (selection(p) && !only_selections)
                || p.ends_with(b"/small.txt")
                || p.ends_with(b"/name with spaces.txt")
        };
        let regular =
            |o: &&Obj| o.flags & (AAPI_WKLD_DIR | AAPI_WKLD_SYMLINK) == 0 && !volatile(&o.path);
        let mut objects = Objects {
            file: all
                .iter()
                .filter(regular)
                .max_by_key(|o| o.size)
                .map(|o| o.path.clone()),
            small_file: all
                .iter()
                .filter(regular)
                .filter(|o| o.size > 0)
                .min_by_key(|o| o.size)
                .map(|o| o.path.clone()),
            dir: all
                .iter()
                .filter(|o| o.flags & AAPI_WKLD_DIR != 0 && !volatile(&o.path))
                .max_by_key(|o| o.path.len())
                .map(|o| o.path.clone()),
            symlink: all
                .iter()
                .find(|o| o.flags & AAPI_WKLD_SYMLINK != 0)
                .map(|o| o.path.clone()),
            all,
            ..Default::default()
        };
        objects.capabilities = u
            .value("capabilities")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        objects.max_concurrent = u
            .value("max_concurrent")
            .and_then(|v| v.as_u64())
            .unwrap_or(1) as u32;
        objects.srv_flags = u.value("srv_flags").and_then(|v| v.as_u64()).unwrap_or(0);
        if objects.file.is_none() {
            self.fail(
                "life.discovery",
                "discovery found no object with data; the selection must hold some",
            );
            return None;
        }
        *self.objects.lock().unwrap() = objects;
        Some((snapid, out, files, manifest, watch_before))
    }

    fn pipeline_rest(&self, (snapid, out, files, manifest, watch_before): Discovered) {
        let objects = self.objects.lock().unwrap().clone();
        // A change after a snapshot must not show in the backup (DISC-6).
        let mut snapshot_probe: Option<Vec<u8>> = None;
        if let Some(tree) = &self.tree
            && !snapid.is_empty()
        {
            let p = tree.join("data").join("name with spaces.txt");
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&p) {
                use std::io::Write;
                let _ = f.write_all(b"changed after the snapshot\n");
                snapshot_probe = Some(crate::worker::pbytes(&p));
            }
        }
        let images = self.backups(&files, &out, "full", "life.backup");
        self.ran("life.backup");
        let image = match read_images(&images) {
            Ok(v) => v,
            Err(e) => {
                self.fail("life.backup", format!("a child job wrote no image: {e}"));
                Vec::new()
            }
        };
        self.check_image(
            &image,
            manifest.as_ref(),
            snapshot_probe.as_deref(),
            &snapid,
        );
        // Postprocess.
        let u = self.unit(
            Task::Postprocess {
                out: out.clone(),
                snapid: snapid.clone(),
                schedule: AAPI_SCHED_FULL,
                job: "conf-full".into(),
            },
            "life.postprocess",
        );
        self.ran("life.postprocess");
        for e in u.errors() {
            self.fail("life.postprocess", e);
        }
        let after = self.watch_state();
        if after != watch_before {
            let left: Vec<String> = after
                .difference(&watch_before)
                .take(5)
                .map(|p| p.display().to_string())
                .collect();
            self.fail(
                "disc.postprocess",
                format!("after postprocess the watched directories still hold {left:?}"),
            );
        }
        if snapid.is_empty() && objects.capabilities & AAPI_CAP_SNAPSHOT == 0 {
            self.skip(
                "disc.postprocess",
                "the plugin declares no AAPI_CAP_SNAPSHOT and took no snapshot",
            );
        }
        self.ran("disc.postprocess");
        // Restore and backup again.
        if objects.capabilities & AAPI_CAP_RESTORE == 0 {
            self.skip(
                "life.restore",
                "the plugin does not declare AAPI_CAP_RESTORE",
            );
        } else if objects.capabilities & AAPI_CAP_ALTERNATE_RESTORE == 0 {
            self.skip(
                "life.restore",
                "the plugin does not declare AAPI_CAP_ALTERNATE_RESTORE (the checks restore under an alternate root)",
            );
        } else if !image.is_empty() && !self.failed_need(&step("life.restore")) {
            self.restore_and_compare(&images, &image, manifest.as_ref());
        }
        // After a failed backup the incremental checks are blocked: no need to run them.
        if !self.failed_need(&step("disc.incremental")) {
            self.incremental(&objects);
        }
    }

    fn check_image(
        &self,
        image: &[(PathBuf, ImageObject)],
        manifest: Option<&Manifest>,
        snapshot_probe: Option<&[u8]>,
        snapid: &str,
    ) {
        let known = AAPI_PROP_SIZE
            | AAPI_PROP_MODE
            | AAPI_PROP_OWNER
            | AAPI_PROP_ATIME
            | AAPI_PROP_MTIME
            | AAPI_PROP_CTIME;
        for (_, o) in image {
            let name = crate::worker::show(&o.path);
            let p = &o.prop;
            if p.valid & !known != 0 {
                self.fail(
                    "obj.prop-valid",
                    format!("{name}: valid has unknown bits {:#x}", p.valid & !known),
                );
            }
            if !(AAPI_OBJ_FILE..=AAPI_OBJ_SYMLINK).contains(&p.obj_type) {
                self.fail(
                    "obj.prop-valid",
                    format!("{name}: obj_type {} is not an AAPI_OBJ_* value", p.obj_type),
                );
            }
            let want_type = if o.flags & AAPI_WKLD_DIR != 0 {
                AAPI_OBJ_DIR
            } else if o.flags & AAPI_WKLD_SYMLINK != 0 {
                AAPI_OBJ_SYMLINK
            } else {
                AAPI_OBJ_FILE
            };
            if p.obj_type != want_type {
                self.fail(
                    "obj.prop-valid",
                    format!(
                        "{name}: obj_type {} but its workload record says {want_type}",
                        p.obj_type
                    ),
                );
            }
            if o.bad_stream {
                continue;
            }
            if p.valid & AAPI_PROP_SIZE != 0 && p.size != o.bytes && p.obj_type != AAPI_OBJ_DIR {
                self.fail(
                    "obj.size",
                    format!("{name}: {} bytes read, size property {}", o.bytes, p.size),
                );
            }
            if p.obj_type == AAPI_OBJ_DIR && o.bytes != 0 {
                self.fail(
                    "obj.dir-symlink",
                    format!("directory {name} gave {} bytes of data", o.bytes),
                );
            }
            let Some(m) = manifest else { continue };
            let Some(e) = m.0.get(&o.path) else { continue };
            if e.sha256 != o.sha256 {
                let check = match e.kind {
                    Kind::Symlink | Kind::Dir => "obj.dir-symlink",
                    _ if snapshot_probe == Some(o.path.as_slice()) => "disc.snappath",
                    _ => "obj.size",
                };
                let what = if e.kind == Kind::Symlink {
                    "the data read is not the link target".to_string()
                } else if e.kind == Kind::Dir {
                    format!("a directory gave {} bytes of data", o.bytes)
                } else if check == "disc.snappath" {
                    format!(
                        "changed after the snapshot {snapid:?} was taken, and the backup read the change"
                    )
                } else {
                    format!(
                        "the {} bytes read differ from the {} bytes on disk",
                        o.bytes, e.size
                    )
                };
                self.fail(check, format!("{name}: {what}"));
            }
            let mut wrong = Vec::new();
            if e.kind.obj_type() != p.obj_type {
                wrong.push(format!(
                    "obj_type {} (lstat says {})",
                    p.obj_type,
                    e.kind.obj_type()
                ));
            }
            if p.valid & AAPI_PROP_SIZE != 0 && p.size != e.size && e.kind != Kind::Dir {
                wrong.push(format!("size {} (lstat {})", p.size, e.size));
            }
            if p.valid & AAPI_PROP_MODE != 0 && e.kind != Kind::Symlink && p.mode != e.mode {
                wrong.push(format!("mode {:o} (lstat {:o})", p.mode, e.mode));
            }
            if p.valid & AAPI_PROP_OWNER != 0 && (p.uid, p.gid) != (e.uid, e.gid) {
                wrong.push(format!(
                    "owner {}:{} (lstat {}:{})",
                    p.uid, p.gid, e.uid, e.gid
                ));
            }
            if p.valid & AAPI_PROP_MTIME != 0 && p.mtime != e.mtime {
                wrong.push(format!("mtime {:?} (lstat {:?})", p.mtime, e.mtime));
            }
            if !wrong.is_empty() {
                self.fail("obj.prop-valid", format!("{name}: {}", wrong.join(", ")));
            }
        }
        for c in [
            "obj.prop-valid",
            "obj.size",
            "obj.dir-symlink",
            "disc.snappath",
            "obj.read-protocol",
            "mem.read-bounds",
        ] {
            self.ran(c);
        }
    }

    fn restore_and_compare(
        &self,
        images: &[PathBuf],
        image: &[(PathBuf, ImageObject)],
        manifest: Option<&Manifest>,
    ) {
        let root = &self.restore_root;
        if root.exists()
            && std::fs::read_dir(root)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            self.harness(
                "life.restore",
                format!(
                    "the restore root {} exists and is not empty",
                    root.display()
                ),
            );
            return;
        }
        if let Err(e) = std::fs::create_dir_all(root) {
            self.harness("life.restore", format!("{}: {e}", root.display()));
            return;
        }
        let u = self.unit(
            Task::Restore {
                images: images.to_vec(),
                root: root.clone(),
            },
            "life.restore",
        );
        for c in ["life.restore", "rst.props", "data.roundtrip-times"] {
            self.ran(c);
        }
        for e in u.errors() {
            self.fail("life.restore", e);
        }
        if !u.ok() {
            return;
        }
        // Nothing outside the restored objects and their parents (files).
        if self.tree.is_some() {
            let targets: BTreeSet<Vec<u8>> = image
                .iter()
                .map(|(_, o)| crate::pipeline::under(root, &o.path))
                .collect();
            if let Ok(m) = Manifest::scan(std::slice::from_ref(root)) {
                for p in m.0.keys() {
                    let ok = targets.contains(p)
                        || targets
                            .iter()
                            .any(|t| t.starts_with(p) && t.get(p.len()) == Some(&b'/'));
                    if !ok && p.as_slice() != root.as_os_str().as_bytes() {
                        self.fail(
                            "rst.create-location",
                            format!(
                                "{} appeared under the restore root but was not restored",
                                crate::worker::show(p)
                            ),
                        );
                    }
                }
            }
            self.ran("rst.create-location");
        }
        // Back up the restored objects and compare.
        let hosts = vec!["restored".to_string()];
        let (u2, out2) = self.discover(
            "restored",
            &self.restored_selections,
            &hosts,
            AAPI_SCHED_FULL,
            vec![],
            "data.roundtrip",
        );
        self.ran("data.roundtrip");
        self.ran("rst.create-location");
        for e in u2.errors() {
            self.fail(
                "data.roundtrip",
                format!("discovery of the restored objects: {e}"),
            );
        }
        if !u2.ok() {
            return;
        }
        let snap2 = u2
            .value("snapid")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let files2: Vec<WorkloadFile> = hosts
            .iter()
            .filter_map(|h| {
                let mut wf =
                    WorkloadFile::read_from_path(&aapi_sdk::workload::file_name(&out2, h, ".wkld"))
                        .ok()?;
                wf.backup_host = h.clone();
                Some(wf)
            })
            .collect();
        let images2 = self.backups(&files2, &out2, "restored", "data.roundtrip");
        let pp = self.unit(
            Task::Postprocess {
                out: out2,
                snapid: snap2,
                schedule: AAPI_SCHED_FULL,
                job: "conf-restored".into(),
            },
            "data.roundtrip",
        );
        for e in pp.errors() {
            self.fail(
                "data.roundtrip",
                format!("postprocess of the restored objects: {e}"),
            );
        }
        let second = match read_images(&images2) {
            Ok(v) => v,
            Err(e) => {
                self.fail(
                    "data.roundtrip",
                    format!("backup of the restored objects: {e}"),
                );
                return;
            }
        };
        let root_b = root.as_os_str().as_bytes();
        let second: BTreeMap<Vec<u8>, ImageObject> = second
            .into_iter()
            .filter_map(|(_, o)| o.path.strip_prefix(root_b).map(|p| (p.to_vec(), o.clone())))
            .collect();
        for (_, o) in image {
            let name = crate::worker::show(&o.path);
            if o.bad_stream {
                continue;
            }
            let Some(r) = second.get(&o.path) else {
                self.fail("data.roundtrip", format!("{name} was backed up and restored but is missing from the backup of the restore"));
                continue;
            };
            let mut wrong = Vec::new();
            if r.sha256 != o.sha256 {
                wrong.push(format!(
                    "data differ ({} bytes, backed up {})",
                    r.bytes, o.bytes
                ));
            }
            if r.prop.obj_type != o.prop.obj_type {
                wrong.push(format!(
                    "obj_type {} (backed up {})",
                    r.prop.obj_type, o.prop.obj_type
                ));
            }
            let both = r.prop.valid & o.prop.valid;
            if both & AAPI_PROP_MODE != 0
                && o.prop.obj_type != AAPI_OBJ_SYMLINK
                && r.prop.mode != o.prop.mode
            {
                wrong.push(format!(
                    "mode {:o} (backed up {:o})",
                    r.prop.mode, o.prop.mode
                ));
            }
            if both & AAPI_PROP_OWNER != 0 && (r.prop.uid, r.prop.gid) != (o.prop.uid, o.prop.gid) {
                wrong.push(format!(
                    "owner {}:{} (backed up {}:{})",
                    r.prop.uid, r.prop.gid, o.prop.uid, o.prop.gid
                ));
            }
            if !wrong.is_empty() {
                self.fail("data.roundtrip", format!("{name}: {}", wrong.join(", ")));
            }
            if both & AAPI_PROP_MTIME != 0 && r.prop.mtime != o.prop.mtime {
                self.fail(
                    "data.roundtrip-times",
                    format!(
                        "{name}: mtime {:?} after the restore, backed up {:?}",
                        r.prop.mtime, o.prop.mtime
                    ),
                );
            }
        }
        for p in second.keys() {
            if !image.iter().any(|(_, o)| &o.path == p) {
                self.fail(
                    "rst.create-location",
                    format!(
                        "{} is among the restored objects but was never backed up",
                        crate::worker::show(p)
                    ),
                );
            }
        }
        // On disk (files).
        if let Some(m) = manifest {
            let restored = self
                .selection_manifest(&self.restored_selections)
                .unwrap_or_default();
            for (_, o) in image {
                let Some(e) = m.0.get(&o.path) else { continue };
                if o.bad_stream {
                    continue;
                }
                let name = crate::worker::show(&o.path);
                let Some(r) = restored.0.get(&crate::pipeline::under(root, &o.path)) else {
                    self.fail(
                        "data.on-disk",
                        format!("{name} is not on disk under the restore root"),
                    );
                    continue;
                };
                let mut wrong = Vec::new();
                if r.kind != e.kind {
                    wrong.push(format!("{:?} instead of {:?}", r.kind, e.kind));
                }
                if r.sha256 != e.sha256 {
                    wrong.push(format!(
                        "content differs ({} bytes, source {})",
                        r.size, e.size
                    ));
                }
                if e.kind != Kind::Symlink && r.mode != e.mode {
                    wrong.push(format!("mode {:o} (source {:o})", r.mode, e.mode));
                }
                if r.mtime != e.mtime {
                    self.fail(
                        "data.roundtrip-times",
                        format!("{name}: mtime on disk {:?}, source {:?}", r.mtime, e.mtime),
                    );
                }
                if !wrong.is_empty() {
                    self.fail("data.on-disk", format!("{name}: {}", wrong.join(", ")));
                }
            }
            self.ran("data.on-disk");
        } else {
            self.skip(
                "data.on-disk",
                crate::profile::no_files_reason(
                    "compare the restored files on disk with a source tree",
                    "RST-4 on disk",
                ),
            );
        }
    }

    fn incremental(&self, objects: &Objects) {
        let id = "disc.incremental";
        let scheds: Vec<(u32, &str, &str)> = [
            (
                AAPI_SCHED_INCR,
                AAPI_SRVC_INCR_BACKUP_SUPPORT,
                aapi_sdk::props::AAPI_PROP_LAST_BACKUP_TIME,
                "incr",
            ),
            (
                AAPI_SCHED_CINC,
                AAPI_SRVC_CINC_BACKUP_SUPPORT,
                aapi_sdk::props::AAPI_PROP_LAST_FULL_TIME,
                "cinc",
            ),
        ]
        .into_iter()
        .filter(|(_, flag, _, _)| objects.srv_flags & flag != 0)
        .map(|(s, _, k, n)| (s, k, n))
        .collect();
        if scheds.is_empty() {
            self.skip(
                id,
                "the server supports neither AAPI_SCHED_INCR nor AAPI_SCHED_CINC",
            );
            return;
        }
        if self.tree.is_none() && self.change_command.is_none() {
            self.skip(
                id,
                "needs the generated files tree or a [data] change_command in the profile",
            );
            return;
        }
        // Every unchanged object must be older than the reference second.
        let before = self.selection_manifest(&self.setup.selections);
        let reference = before
            .as_ref()
            .map(|m| m.newest_ctime() + 1)
            .unwrap_or_else(tree::now_secs);
        // File times come from a coarse clock that may lag the precise one by a few
        // milliseconds: change the tree only well inside the reference second.
        let start = std::time::UNIX_EPOCH + Duration::from_millis(reference as u64 * 1000 + 200);
        while std::time::SystemTime::now() < start {
            std::thread::sleep(Duration::from_millis(20));
        }
        let changed: Vec<Vec<u8>> = if let Some(t) = &self.tree {
            match tree::change_for_incremental(t) {
                // Only what the selections hold can be listed (`{tree}/data/deep` alone holds
                // none of the changed objects: the unchanged ones are judged all the same).
                Ok(v) => v
                    .iter()
                    .map(|p| crate::worker::pbytes(p))
                    .filter(|p| {
                        self.setup.selections.iter().any(|s| {
                            let s = s.strip_suffix(b"/").unwrap_or(s);
                            p == s || (p.starts_with(s) && p.get(s.len()) == Some(&b'/'))
                        })
                    })
                    .collect(),
                Err(e) => {
                    self.harness(id, format!("cannot change the tree: {e}"));
                    return;
                }
            }
        } else {
            let cmd = self.change_command.clone().unwrap_or_default();
            // As setup and teardown: in the profile's directory, in a process group of its
            // own that an interrupt kills at once, and what it leaves running is killed.
            let tree_dir = self.scratch.join("tree");
            let shell = crate::shell::Shell {
                cwd: &self.opts.profile_dir,
                env: vec![
                    ("AAPI_CONFORMANCE_SCRATCH", self.scratch.as_path()),
                    ("AAPI_CONFORMANCE_TREE", tree_dir.as_path()),
                ],
                interrupt: self.opts.interrupt,
            };
            match shell.run("change", &cmd).1 {
                Ok(()) => self.changed_objects.clone(),
                Err(Stop::Failed(m)) => {
                    self.harness(id, m);
                    return;
                }
                Err(Stop::Interrupted(_)) => {
                    self.harness(id, format!("change command `{cmd}`: interrupted"));
                    return;
                }
            }
        };
        self.ran(id);
        let hosts = self.setup.hosts.clone();
        for (sched, key, name) in scheds {
            let (u, out) = self.discover(
                name,
                &self.setup.selections,
                &hosts,
                sched,
                vec![(key.to_string(), reference.to_string())],
                id,
            );
            for e in u.errors() {
                self.fail(id, format!("{name} discovery: {e}"));
            }
            if !u.ok() {
                continue;
            }
            let snapid = u
                .value("snapid")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let now = self.selection_manifest(&self.setup.selections);
            let files = self.check_workload_dir(&out, &hosts, &snapid, now.as_ref());
            let mut listed: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
            for wf in &files {
                for e in &wf.entries {
                    listed.insert(e.path.as_os_str().as_bytes().to_vec(), e.flags);
                }
            }
            if let Some(m) = &now {
                for (p, e) in &m.0 {
                    let Some(flags) = listed.get(p) else { continue };
                    let is_changed = e.mtime.0 >= reference || e.ctime >= reference;
                    let flagged_unchanged = flags & AAPI_WKLD_UNCHANGED != 0;
                    if is_changed == flagged_unchanged {
                        self.fail(
                            id,
                            format!(
                                "{name}: {} is {} since {reference} but {} AAPI_WKLD_UNCHANGED",
                                crate::worker::show(p),
                                if is_changed { "changed" } else { "unchanged" },
                                if flagged_unchanged {
                                    "carries"
                                } else {
                                    "lacks"
                                }
                            ),
                        );
                    }
                }
            }
            for c in &changed {
                match listed.get(c) {
                    None => self.fail(
                        id,
                        format!(
                            "{name}: changed object {} is not listed",
                            crate::worker::show(c)
                        ),
                    ),
                    Some(f) if f & AAPI_WKLD_UNCHANGED != 0 => {}
                    Some(_) => {}
                }
            }
            let images = self.backups(&files, &out, name, id);
            if let Ok(img) = read_images(&images) {
                for c in &changed {
                    let Some((_, o)) = img.iter().find(|(_, o)| &o.path == c && !o.bad_stream)
                    else {
                        if img.iter().any(|(_, o)| &o.path == c) {
                            continue;
                        }
                        self.fail(
                            id,
                            format!(
                                "{name}: the backup did not read changed object {}",
                                crate::worker::show(c)
                            ),
                        );
                        continue;
                    };
                    if let Some(e) = now.as_ref().and_then(|m| m.0.get(c))
                        && e.sha256 != o.sha256
                    {
                        self.fail(
                            id,
                            format!(
                                "{name}: the backup of {} does not hold its new content",
                                crate::worker::show(c)
                            ),
                        );
                    }
                }
            }
            let pp = self.unit(
                Task::Postprocess {
                    out,
                    snapid,
                    schedule: sched,
                    job: format!("conf-{name}"),
                },
                id,
            );
            for e in pp.errors() {
                self.fail(id, format!("{name} postprocess: {e}"));
            }
        }
    }

    fn aggregates(&self) {
        for c in RUN_WIDE {
            self.ran(c);
        }
        for t in self.timeouts.lock().unwrap().iter() {
            self.fail("time.budget", t.clone());
        }
        for t in self.overruns.lock().unwrap().iter() {
            self.fail("time.bounded", t.clone());
        }
        for c in self.crashes.lock().unwrap().iter() {
            self.fail("mem.no-crash", c.clone());
        }
        if let Some((sig, sender)) = crate::signals::plugin_signal() {
            self.fail(
                "mem.no-crash",
                format!(
                    "a process of the plugin (pid {sender}) sent {} to the runner's process, which is not the plugin's to end; the run went on",
                    signal_name(sig)
                ),
            );
        }
        let stats = self.stats.lock().unwrap();
        for s in stats.iter() {
            for c in &s.bad_codes {
                self.fail("rc.codes", c.clone());
            }
            for c in &s.undocumented {
                self.fail("rc.documented-codes", c.clone());
            }
            for c in &s.empty_messages {
                self.fail("rc.last-error", c.clone());
            }
            for c in &s.stray_callbacks {
                self.fail("thr.callbacks", c.clone());
            }
            for l in &s.long_calls {
                // A quarter of the budget, with 50% slack for scheduling.
                let limit = (l.budget_ms as u64 / 4) * 3 / 2;
                if l.max_gap_ms > limit {
                    self.fail(
                        "time.keepalive-cadence",
                        format!(
                            "{} ran {} ms with a {} ms stretch without keepalive (budget {} ms: at least every {} ms expected)",
                            l.function, l.duration_ms, l.max_gap_ms, l.budget_ms, l.budget_ms / 4
                        ),
                    );
                }
            }
        }
        let secrets: Vec<&String> = self
            .setup
            .credentials
            .iter()
            .map(|(_, v)| v)
            .filter(|v| v.len() >= 4)
            .collect();
        if secrets.is_empty() {
            self.skip(
                "sec.secrets",
                "the profile names no credentials file (or only secrets shorter than 4 bytes)",
            );
        } else {
            for (check, text) in self.texts.lock().unwrap().iter() {
                for s in &secrets {
                    if text.contains(s.as_str()) {
                        self.fail("sec.secrets", format!("a credential value appeared in plugin output or a workload file (during {check})"));
                    }
                }
            }
        }
    }

    fn latency(&self) -> Vec<Latency> {
        let mut all: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for s in self.stats.lock().unwrap().iter() {
            for (f, v) in &s.latency_us {
                all.entry(f.clone()).or_default().extend(v);
            }
        }
        all.into_iter()
            .map(|(function, mut v)| {
                v.sort_unstable();
                let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
                Latency {
                    function,
                    calls: v.len() as u64,
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                    max_us: *v.last().unwrap(),
                }
            })
            .collect()
    }

    fn status_of(&self, def: &CheckDef, memo: &mut BTreeMap<String, Status>) -> Status {
        if let Some(s) = memo.get(&def.id) {
            return s.clone();
        }
        let s = self.compute_status(def, memo);
        memo.insert(def.id.clone(), s.clone());
        s
    }

    /// The result of `def` for the report.
    fn result(&self, def: &CheckDef, memo: &mut BTreeMap<String, Status>) -> CheckResult {
        let status = self.status_of(def, memo);
        let st = self.state.lock().unwrap();
        let s = st.get(&def.id);
        let show_detail = matches!(status, Status::Failed | Status::Warning | Status::Error(_));
        CheckResult {
            id: def.id.clone(),
            group: def.group.as_str().to_string(),
            clause: def.clause.to_string(),
            level: def.level,
            expectation: def.expectation.clone(),
            status,
            findings: s.map(|s| s.findings.clone()).unwrap_or_default(),
            log: if show_detail {
                s.map(|s| s.logs.iter().rev().take(15).rev().cloned().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            duration_ms: s.map(|s| s.ms).unwrap_or(0),
        }
    }

    /// The step of the data pipeline (or the claim) that failed the way `def`'s worker ended,
    /// when that end is all `def` found: one broken function is reported at its own step,
    /// and the checks that merely used that function are blocked by it, not failed.
    fn stopped_by_step(
        &self,
        def: &CheckDef,
        memo: &mut BTreeMap<String, Status>,
    ) -> Option<String> {
        let deaths = |id: &str| -> Vec<String> {
            let st = self.state.lock().unwrap();
            st.get(id)
                .map(|s| s.deaths.iter().map(|(sig, _)| sig.clone()).collect())
                .unwrap_or_default()
        };
        let all_stopped = {
            let st = self.state.lock().unwrap();
            let s = st.get(&def.id)?;
            let only_deaths = s
                .findings
                .iter()
                .all(|f| s.deaths.iter().any(|(_, m)| m == f));
            if s.deaths.is_empty() || !only_deaths {
                return None;
            }
            s.stops.len() == s.deaths.len()
        };
        let mine = deaths(&def.id);
        // A probe of the very function that died (`rc.null.F`, `rc.out-params.F`...) found a
        // failure of its own, even if a step died in F too (on other input). Not so when each of
        // its workers was stopped for a hang found before: a call stopped while it may still
        // have kept alive within the rules says nothing of the probe's clause.
        let subject = def.id.rsplit('.').next().filter(|f| f.starts_with("aapi_"));
        if !all_stopped
            && subject.is_some_and(|f| mine.iter().any(|d| d.rsplit(" in ").next() == Some(f)))
        {
            return None;
        }
        let step = STEPS.iter().copied().find(|step| {
            *step != def.id && {
                let theirs = deaths(step);
                mine.iter().all(|d| theirs.contains(d))
                    && !matches!(
                        self.status_of(&checks::find(step).expect("steps are checks"), memo),
                        Status::Passed | Status::Warning
                    )
            }
        });
        if let Some(step) = step {
            return Some(step.to_string());
        }
        // Every worker of `def` that ended was stopped in a function that hung in one other
        // check's worker first: `def` is blocked by that check.
        if !all_stopped {
            return None;
        }
        let origins: BTreeSet<String> = {
            let st = self.state.lock().unwrap();
            st.get(&def.id)?.stops.iter().cloned().collect()
        };
        if origins.len() != 1 {
            return None;
        }
        let origin = origins.into_iter().next().filter(|o| *o != def.id)?;
        let od = checks::find(&origin)?;
        (!matches!(self.status_of(&od, memo), Status::Passed | Status::Warning)).then_some(origin)
    }

    fn compute_status(&self, def: &CheckDef, memo: &mut BTreeMap<String, Status>) -> Status {
        if let Some(r) = self.opts.exclusions.0.get(&def.id) {
            return Status::Waived(r.clone());
        }
        for n in def.needed() {
            if n == def.id {
                continue;
            }
            let nd = checks::find(n).expect("needed checks exist");
            match self.status_of(&nd, memo) {
                Status::Passed | Status::Warning | Status::Waived(_) => {}
                Status::Skipped(r) => return Status::Skipped(format!("needs {n}, skipped: {r}")),
                _ => return Status::Blocked(n.to_string()),
            }
        }
        if let Some(step) = self.stopped_by_step(def, memo) {
            return Status::Blocked(step);
        }
        // A check judged by another check's probe is blocked by that check when the probe
        // stopped before it got there (it failed, or could not complete; a waived one too).
        let judged_by = crate::probes::probe_for(&def.id).filter(|p| *p != def.id);
        let blocked_by = judged_by.filter(|p| {
            let def = checks::find(p).expect("probes evaluate known checks");
            !matches!(
                self.status_of(&def, memo),
                Status::Passed | Status::Warning | Status::Skipped(_)
            )
        });
        let st = self.state.lock().unwrap();
        let not_run = || match &blocked_by {
            Some(p) => Status::Blocked(p.clone()),
            None => Status::Error("the check did not run".into()),
        };
        let Some(s) = st.get(&def.id) else {
            return not_run();
        };
        if let Some(e) = &s.error {
            return Status::Error(e.clone());
        }
        if !s.findings.is_empty() {
            return match def.level {
                Level::Must => Status::Failed,
                Level::Should => Status::Warning,
            };
        }
        if let Some(r) = &s.skip {
            return Status::Skipped(r.clone());
        }
        if s.ran { Status::Passed } else { not_run() }
    }

    fn finalize(&self) -> Report {
        let mut memo = BTreeMap::new();
        let mut results: Vec<CheckResult> = self
            .defs
            .iter()
            .map(|def| self.result(def, &mut memo))
            .collect();
        // A selected check blocked by one that `--only` left out: report that one too, so the
        // failure that blocked it is shown (and fails the run).
        let mut i = 0;
        while i < results.len() {
            if let Status::Blocked(n) = &results[i].status
                && !results.iter().any(|r| r.id == *n)
            {
                let def = checks::find(n).expect("needed checks exist");
                results.push(self.result(&def, &mut memo));
            }
            i += 1;
        }
        let all = checks::all();
        results.sort_by_key(|r| all.iter().position(|c| c.id == r.id));
        Report::new(
            self.setup.plugin.clone(),
            self.setup.workload_type.clone(),
            results,
            self.latency(),
            self.opts.exclusions.clone(),
            self.opts.only.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn threads_are_bounded_by_the_probes() {
        assert_eq!(worker_threads(100_000, 130), 130);
        assert_eq!(worker_threads(2, 130), 2);
        assert_eq!(worker_threads(0, 130), 1);
        assert_eq!(worker_threads(8, 0), 1);
    }
}
