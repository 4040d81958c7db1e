//! The supervisor side of the jobs: the compound backup (discover -> one child job per backup
//! host -> postprocess and finalize), restore and verify. Plugin code runs only in supervised
//! worker processes ([`crate::worker`]); this module never loads a plugin.

use crate::store::{
    self, Catalog, Entry, HostState, ImageState, JobDef, Lock, Manifest, ObjectFailure,
    REC_UNCHANGED, Store, StoreError, StreamDone,
};
use crate::stream_writer::StreamIo;
use crate::supervise::{CancelHandle, Event, Limits, Worker, WorkerEnd};
use crate::tasks::{self, RestoreReport, RestoreTask, Task};
use crate::ui::Ui;
use aapi_sdk::abi::*;
use aapi_sdk::props::{AAPI_PROP_LAST_BACKUP_TIME, AAPI_PROP_LAST_FULL_TIME, AAPI_PROP_POLICY};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Set when the user asked to stop (SIGINT/SIGTERM); running workers are cancelled.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Exit status classes of the command line (docs/host.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// 0: done.
    Ok,
    /// 1: the job failed, or damage was found.
    Failed,
    /// 2: bad usage or input; nothing ran.
    Usage,
    /// 3: the job completed but some objects failed.
    Partial,
    /// 4: the plugin does not support the schedule (`AAPI_ESCHED_NOT_SUPPORTED`).
    ScheduleNotSupported,
    /// 5: cancelled by the user.
    Cancelled,
}

impl ExitKind {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Ok => 0,
            ExitKind::Failed => 1,
            ExitKind::Usage => 2,
            ExitKind::Partial => 3,
            ExitKind::ScheduleNotSupported => 4,
            ExitKind::Cancelled => 5,
        }
    }
}

/// A job error: its exit class and a message that says what to do next.
#[derive(Debug, Clone)]
pub struct JobError {
    /// Exit class.
    pub kind: ExitKind,
    /// Message.
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl From<StoreError> for JobError {
    /// Bad usage is exit 2; a store file that cannot be read, written or used is a failure.
    fn from(e: StoreError) -> Self {
        JobError {
            kind: match e.kind {
                store::StoreErrorKind::Usage => ExitKind::Usage,
                store::StoreErrorKind::Io | store::StoreErrorKind::Damaged => ExitKind::Failed,
            },
            message: e.to_string(),
        }
    }
}

fn usage(message: impl Into<String>) -> JobError {
    JobError {
        kind: ExitKind::Usage,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> JobError {
    JobError {
        kind: ExitKind::Failed,
        message: message.into(),
    }
}

/// What `backup` and `discover` need to know.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Image store directory.
    pub store: PathBuf,
    /// Policy name (last backup times are kept per policy).
    pub policy: String,
    /// "full", "incr" or "cinc".
    pub schedule: String,
    /// Plugin library.
    pub plugin: PathBuf,
    /// Workload type to claim.
    pub workload_type: String,
    /// Workload server name.
    pub server: String,
    /// Selections, as the bytes given to the plugin (any bytes: a path need not be UTF-8).
    pub selections: Vec<Vec<u8>>,
    /// Backup hosts (one stream each).
    pub hosts: Vec<String>,
    /// Extra session properties.
    pub properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds.
    pub call_budget_ms: u32,
    /// Credentials file.
    pub credentials: Option<PathBuf>,
}

/// Runs tasks in supervised worker processes.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Program started as a worker with the argument `worker` (the `aapi-host` binary).
    pub worker_exe: PathBuf,
    /// Output.
    pub ui: Ui,
    /// How long a call may take to return after a cancel.
    pub cancel_bound: Duration,
}

impl Runner {
    /// A runner whose workers are this executable (`std::env::current_exe`).
    pub fn new(ui: Ui) -> std::io::Result<Runner> {
        Ok(Runner {
            worker_exe: std::env::current_exe()?,
            ui,
            cancel_bound: Duration::from_millis(AAPI_CANCEL_BOUND_MS as u64),
        })
    }

    /// Run `task` in a worker named `label`, with `budget_ms` per call; progress goes to `bar`.
    pub fn run_task(
        &self,
        task: &Task,
        label: &str,
        budget_ms: u32,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<serde_json::Value, JobError> {
        let mut cmd = Command::new(&self.worker_exe);
        cmd.arg("worker")
            .env(crate::ui::COMMAND_ENV, crate::ui::command())
            // Stdout carries this command's results (`--json`, an image id): what a plugin
            // prints goes to stderr, with the messages.
            .stdout(std::io::stderr());
        // Its own process group: a Ctrl-C at the terminal reaches the supervisor, which cancels
        // the workers through their keepalives, instead of killing them mid-write.
        cmd.process_group(0);
        let budget = Duration::from_millis(budget_ms as u64);
        let limits = Limits {
            call_budget: budget,
            sessionless_budget: budget,
            cancel_bound: self.cancel_bound,
            max_run: None,
        };
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(JobError {
                kind: ExitKind::Cancelled,
                message: format!("{label}: not started, the command was interrupted"),
            });
        }
        // Only a path that is not UTF-8 cannot be written.
        let input = serde_json::to_vec(task).map_err(|e| {
            usage(format!(
                "{label}: {e}; give the store, the plugin, the alternate root and the credentials by UTF-8 paths"
            ))
        })?;
        let worker = Worker::spawn_with_input(cmd, limits, input).map_err(|e| {
            usage(format!(
                "cannot start worker {}: {e}",
                self.worker_exe.display()
            ))
        })?;
        let cancel = worker.cancel_handle();
        let outcome = std::thread::scope(|s| {
            // Dropping `done` wakes the watcher at once, so the task ends without a polling delay.
            let (done, finished) = std::sync::mpsc::channel::<()>();
            s.spawn(|| watch_interrupt(&cancel, finished));
            let r = worker.run(|ev| match ev {
                Event::Log { level, message } => self.ui.plugin_log(label, *level, message),
                Event::Progress { bytes, objects } => {
                    if let Some(b) = bar {
                        b.set_position(*bytes);
                        b.set_message(format!("{objects} objects"));
                    }
                }
                _ => {}
            });
            drop(done);
            r
        })
        .map_err(|e| failed(format!("{label}: lost contact with the worker: {e}")))?;
        if outcome.end.is_success() {
            return outcome
                .results
                .last()
                .cloned()
                .ok_or_else(|| failed(format!("{label}: the worker reported no result")));
        }
        let kind = match (&outcome.end, outcome.failure_code) {
            (_, Some(AAPI_ESCHED_NOT_SUPPORTED)) => ExitKind::ScheduleNotSupported,
            (_, Some(AAPI_ECANCELLED)) => ExitKind::Cancelled,
            _ if outcome.cancelled_at.is_some() => ExitKind::Cancelled,
            (WorkerEnd::Exited(2), _) => ExitKind::Usage,
            _ => ExitKind::Failed,
        };
        Err(JobError {
            kind,
            message: format!("{label}: {}", outcome.summary()),
        })
    }

    /// A discovery succeeded but its job file could not record the snapshot id (a full store):
    /// the postprocess cleans the snapshot up with the id still in hand, and the image, which
    /// holds nothing backed up, is removed. Returns the error to report.
    fn undo_discovery(&self, store: &Store, job: &JobDef, e: JobError) -> JobError {
        let task = Task::Postprocess {
            store: store.root().to_path_buf(),
            image: job.image.clone(),
            snapid: job.snapid.clone(),
        };
        let cleaned = self
            .run_task(&task, "postprocess", job.call_budget_ms, None)
            .map(drop)
            .map_err(|p| p.message);
        unrecorded_snapid(store, job, e, cleaned)
    }

    /// Discovery job: create the image, write its job definition, and run discovery. Returns the
    /// job definition with the snapshot id, and the image marked in use until that lock drops.
    pub fn discover(&self, o: &BackupOptions) -> Result<(JobDef, Lock), JobError> {
        let (store, mut job, in_use) = prepare_job(o)?;
        let image = job.image.clone();
        let task = Task::Discover {
            store: o.store.clone(),
            image: image.clone(),
        };
        match self.run_task(&task, "discovery", o.call_budget_ms, None) {
            Ok(v) => {
                job.snapid = Some(v["snapid"].as_str().unwrap_or_default().to_string());
                if job.plugin.is_dir() {
                    // Given a plugin directory: every later step uses the library that claimed.
                    if let Some(lib) = v["plugin"].as_str() {
                        job.plugin = lib.into();
                    }
                }
                if let Err(e) = store.save_job(&job) {
                    return Err(self.undo_discovery(&store, &job, e.into()));
                }
                Ok((job, in_use))
            }
            Err(e) => {
                // Nothing was backed up: the new image directory holds only the job definition
                // and maybe workload files, so it is removed rather than left as clutter.
                let _ = std::fs::remove_dir_all(store.image_dir(&image));
                Err(JobError {
                    message: format!("{} (no image was made)", e.message),
                    ..e
                })
            }
        }
    }

    /// One child job: stream `stream` (backup host `hosts[stream]`) of `image`.
    pub fn child(&self, store: &Path, image: &str, stream: u32) -> Result<StreamDone, JobError> {
        StreamIo::from_env().map_err(usage)?;
        let st = Store::open_existing(store)?;
        let _in_use = locked(|w| st.use_image(image, w))?;
        let job = st.job(image)?;
        if job.snapid.is_none() {
            return Err(usage(format!(
                "image {image} has no successful discovery; run `aapi-host discover` first"
            )));
        }
        let host = job
            .hosts
            .get(stream as usize)
            .ok_or_else(|| usage(format!("image {image} has no stream {stream}")))?;
        if let ImageState::Incomplete {
            reason: Some(reason),
            ..
        } = st.state(image)?
        {
            let cli = format!("aapi-host --store {}", store.display());
            return Err(given_up(&cli, image, &reason));
        }
        // Two runs of one child job would write the same stream files.
        let Some(_running) = st.run_stream(image, stream)? else {
            return Err(usage(format!(
                "the child job of {host} for image {image} is already running in another process; nothing was done"
            )));
        };
        if let Some(c) = &job.credentials {
            crate::worker::read_credentials(c).map_err(usage)?;
        }
        // A job engine may run a child job again: a completed one is not redone.
        let done_path = st.image_dir(image).join(format!("stream-{stream}.done"));
        if let Ok(bytes) = std::fs::read(&done_path) {
            let done: StreamDone = serde_json::from_slice(&bytes)
                .map_err(|e| failed(format!("{}: unreadable: {e}", done_path.display())))?;
            self.ui.note(&format!(
                "the child job of {host} completed earlier; nothing to do"
            ));
            return Ok(done);
        }
        // The workload file's size hints give the bar its length (the file is plain data).
        let wk = aapi_sdk::workload::file_name(
            &st.image_dir(image).join("wkld"),
            host,
            tasks::WORKLOAD_SUFFIX,
        );
        let total = aapi_sdk::workload::WorkloadFile::read_from_path(&wk)
            .ok()
            .map(|w| {
                w.entries
                    .iter()
                    .filter(|e| e.flags & AAPI_WKLD_UNCHANGED == 0)
                    .map(|e| e.size_hint)
                    .sum()
            });
        let bar = self.ui.bar(host, total);
        let task = Task::Child {
            store: store.to_path_buf(),
            image: image.to_string(),
            stream,
        };
        let r = self.run_task(
            &task,
            &format!("child job {host}"),
            job.call_budget_ms,
            Some(&bar),
        );
        bar.finish();
        let v = r?;
        serde_json::from_value(v).map_err(|e| failed(format!("child job {host}: bad result: {e}")))
    }

    /// Finalize: postprocess (snapshot cleanup), then merge the streams' catalogs into the image
    /// catalog and mark the image complete. While a child job has not completed, nothing is done
    /// (its retry still needs the snapshot). With `abandon`, postprocess runs and the image is
    /// given up (it stays incomplete), whatever its child jobs did. A failed postprocess leaves
    /// the image incomplete and holding its snapshot, to be finalized again; a given-up image is
    /// refused. Holds every stream's lock: refused while a child job or another finalize of the
    /// image runs.
    pub fn finalize(&self, store: &Path, image: &str, abandon: bool) -> Result<Manifest, JobError> {
        let st = Store::open_existing(store)?;
        let _in_use = locked(|w| st.use_image(image, w))?;
        let job = st.job(image)?;
        let cli = format!("aapi-host --store {}", store.display());
        match st.state(image)? {
            ImageState::Complete(m) => return Ok(*m),
            ImageState::Incomplete {
                reason: Some(reason),
                ..
            } => return Err(given_up(&cli, image, &reason)),
            ImageState::Incomplete { .. } => {}
        }
        // No child job may run while the snapshot goes, nor a second finalize alongside.
        let mut _streams = Vec::new();
        for (n, host) in job.hosts.iter().enumerate() {
            match st.run_stream(image, n as u32)? {
                Some(lock) => _streams.push(lock),
                None => {
                    return Err(usage(format!(
                        "the child job of {host}, or another finalize, of image {image} is running; nothing was done: wait for it to end, then finalize"
                    )));
                }
            }
        }
        let dir = st.image_dir(image);
        let missing: Vec<&String> = job
            .hosts
            .iter()
            .enumerate()
            .filter(|(n, _)| !dir.join(format!("stream-{n}.done")).exists())
            .map(|(_, h)| h)
            .collect();
        // A discovery that never returned (killed, crashed) recorded no snapshot id: no child
        // job can run, and a snapshot the plugin had begun is unknown to the framework.
        let unknown_snapshot = format!(
            "its discovery did not complete (it was killed or crashed), so no snapshot id was recorded: a snapshot the plugin had begun for job {image} may be left behind (the plugin's documentation says where)"
        );
        if job.snapid.is_none() && !abandon {
            return Err(usage(format!(
                "image {image} cannot be finalized: {unknown_snapshot}; `{cli} delete --incomplete` removes the image"
            )));
        }
        if !missing.is_empty() && !abandon {
            let hosts: Vec<&str> = missing.iter().map(|h| h.as_str()).collect();
            return Err(failed(format!(
                "the child jobs of {} have not completed, so image {image} cannot be finalized yet; nothing was done and the snapshot is kept for them. Run `{cli} child --image {image} --host H` for each, then finalize again; or give the image up with `{cli} finalize --image {image} --abandon` (cleans up the snapshot, the image stays incomplete)",
                hosts.join(", ")
            )));
        }
        if !postprocess_done(&st, &job) {
            if let Some(c) = &job.credentials {
                crate::worker::read_credentials(c).map_err(usage)?;
            }
            let task = Task::Postprocess {
                store: store.to_path_buf(),
                image: image.to_string(),
                snapid: None,
            };
            if let Err(e) = self.run_task(&task, "postprocess", job.call_budget_ms, None) {
                let again = if abandon { " --abandon" } else { "" };
                let message = format!(
                    "{}; image {image} stays incomplete and its snapshot may still be held: once the cause is fixed, finish it with `{cli} finalize --image {image}{again}`",
                    e.message
                );
                // `list` shows it as the image's state until a finalize runs the postprocess.
                let _ =
                    store::write_atomic(&dir.join(store::POSTPROCESS_FAILED), message.as_bytes());
                return Err(JobError { message, ..e });
            }
            store::write_atomic(&dir.join(store::POSTPROCESS_DONE), b"")?;
            let _ = std::fs::remove_file(dir.join(store::POSTPROCESS_FAILED));
        }
        if abandon {
            let msg = if job.snapid.is_none() {
                format!(
                    "image {image} was given up and stays incomplete (`{cli} delete --incomplete` removes it); {unknown_snapshot}"
                )
            } else if missing.is_empty() {
                format!(
                    "image {image} was given up; the snapshot was cleaned up and the image stays incomplete (`{cli} delete --incomplete` removes it)"
                )
            } else {
                format!(
                    "image {image} was given up before the child jobs of {} completed; the snapshot was cleaned up and the image stays incomplete (`{cli} delete --incomplete` removes it)",
                    missing
                        .iter()
                        .map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if let Err(e) = st.record_failure(image, &msg) {
                return Err(failed(format!(
                    "image {image} could not be given up: {e}; free space in the store, then run `{cli} finalize --image {image} --abandon` again"
                )));
            }
            return Err(failed(msg));
        }
        let m = merge(&st, &job).map_err(|e| JobError {
            message: format!(
                "{}; image {image} stays incomplete with its streams kept: once the cause is fixed, run `{cli} finalize --image {image}` again",
                e.message
            ),
            ..e
        })?;
        record_success(&st, &job, &m)?;
        Ok(m)
    }

    /// The compound backup job: discovery, one child job per backup host in parallel, then
    /// finalize (postprocess runs even when a child job failed).
    pub fn backup(&self, o: &BackupOptions) -> Result<Manifest, JobError> {
        let (job, _in_use) = self.discover(o)?;
        let image = job.image.as_str();
        let results: Vec<Result<StreamDone, JobError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..job.hosts.len() as u32)
                .map(|n| s.spawn(move || self.child(&o.store, image, n)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(failed("child job thread panicked")))
                })
                .collect()
        });
        let child_errors: Vec<JobError> = results.into_iter().filter_map(|r| r.err()).collect();
        for e in &child_errors {
            self.ui.error(&e.message);
        }
        let fin = self.finalize(&o.store, &job.image, !child_errors.is_empty());
        if let Some(first) = child_errors.first() {
            let st = Store::open(&o.store)?;
            let mut msg = format!(
                "{} of {} child jobs failed (first: {}); image {} stays incomplete and nothing earlier was changed",
                child_errors.len(),
                job.hosts.len(),
                first.message,
                job.image
            );
            if snapshot_cleaned(&st, &job) {
                if let Err(e) = st.record_failure(&job.image, &msg) {
                    msg = format!(
                        "{msg}; that it failed could not be recorded ({}): free space in the store, then run `{} finalize --image {} --abandon`",
                        e,
                        crate::ui::command(),
                        job.image
                    );
                }
            } else if let Err(e) = &fin {
                // The postprocess did not run or failed: the image keeps its snapshot (and its
                // protection from `delete --incomplete`) until a finalize cleans it up.
                msg = format!("{msg}; {}", e.message);
            }
            return Err(JobError {
                kind: if child_errors.iter().all(|e| e.kind == ExitKind::Cancelled) {
                    ExitKind::Cancelled
                } else {
                    ExitKind::Failed
                },
                message: msg,
            });
        }
        fin
    }

    /// Restore in one worker (one backup host).
    pub fn restore(&self, task: RestoreTask) -> Result<RestoreReport, JobError> {
        let st = Store::open_existing(&task.store)?;
        // Its base images are kept too: `delete` keeps what a used image needs.
        let _in_use = locked(|w| st.use_image(&task.image, w))?;
        let (_, catalog) = tasks::load_image(&st, &task.image).map_err(|e| failed(e.message))?;
        let total = tasks::select(&catalog, &task.paths)
            .iter()
            .map(|&i| catalog.entries[i].data.length)
            .sum();
        let bar = self.ui.bar("restore", Some(total));
        let budget = task.call_budget_ms;
        let r = self.run_task(&Task::Restore(task), "restore", budget, Some(&bar));
        bar.finish();
        serde_json::from_value(r?).map_err(|e| failed(format!("restore: bad result: {e}")))
    }
}

/// Whether the postprocess of `job` has nothing left to do: discovery never succeeded, or the
/// postprocess did.
fn postprocess_done(store: &Store, job: &JobDef) -> bool {
    job.snapid.is_none()
        || store
            .image_dir(&job.image)
            .join(store::POSTPROCESS_DONE)
            .exists()
}

/// Whether `job` holds no snapshot any more: it took none, or its postprocess succeeded.
pub fn snapshot_cleaned(store: &Store, job: &JobDef) -> bool {
    job.snapid.as_deref().is_none_or(str::is_empty) || postprocess_done(store, job)
}

/// The refusal of a step of a job that was given up (`reason` is what it recorded).
fn given_up(cli: &str, image: &str, reason: &str) -> JobError {
    usage(format!(
        "image {image} was given up ({}); nothing was done: its snapshot is cleaned up, so no step of its job can run again. Start a new backup; `{cli} delete --incomplete` removes this image",
        reason.trim_end()
    ))
}

/// Take a lock of the store with `take`, waiting while another command holds it: a wait over a
/// second is said once on stderr, and Ctrl-C or SIGTERM gives up (exit 5, nothing changed).
pub fn locked(
    take: impl FnOnce(store::Waiter) -> Result<store::Lock, StoreError>,
) -> Result<store::Lock, JobError> {
    let mut said = false;
    let r = take(&mut |path, waited| {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return false;
        }
        if !said && waited >= Duration::from_secs(1) {
            said = true;
            let _ = writeln!(
                std::io::stderr(),
                "waiting for {}: another aapi-host command holds it (a backup starting or ending, a delete)",
                path.display()
            );
        }
        true
    });
    match r {
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => Err(JobError {
            kind: ExitKind::Cancelled,
            message: "interrupted while waiting for the store's lock; nothing was changed".into(),
        }),
        r => Ok(r?),
    }
}

/// Cancels the worker when Ctrl-C or SIGTERM arrives, until `finished` disconnects.
fn watch_interrupt(cancel: &CancelHandle, finished: std::sync::mpsc::Receiver<()>) {
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            cancel.cancel();
            return;
        }
        match finished.recv_timeout(Duration::from_millis(50)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Check the options, create the image directory and write its job definition (with the last
/// backup times of the policy as session properties and the base image of an incremental).
/// The longest policy name, in bytes: its image ids (`<policy>-<UTC time>-<schedule>.<n>`) and
/// their names while deleted (`.deleting-<id>`) must fit in one file name.
pub const MAX_POLICY_LEN: usize = 200;

/// Runs no plugin code.
pub fn prepare_job(o: &BackupOptions) -> Result<(Store, JobDef, Lock), JobError> {
    let sched = tasks::schedule_code(&o.schedule).ok_or_else(|| {
        usage(format!(
            "unknown schedule {:?}: use full, incr or cinc",
            o.schedule
        ))
    })?;
    if o.hosts.is_empty() {
        return Err(usage("at least one backup host (or --streams 1) is needed"));
    }
    StreamIo::from_env().map_err(usage)?;
    if let Some(c) = &o.credentials {
        crate::worker::read_credentials(c).map_err(usage)?;
    }
    let mut seen = std::collections::HashSet::new();
    for h in &o.hosts {
        tasks::check_backup_host(h).map_err(usage)?;
        if !seen.insert(h) {
            return Err(usage(format!(
                "the backup host {h:?} is named twice; each gets one workload file"
            )));
        }
    }
    if o.selections.is_empty() {
        return Err(usage("nothing selected: give at least one --select"));
    }
    if o.policy.is_empty()
        || o.policy.starts_with('.')
        || o.policy.contains(['/', '\0'])
        || o.policy.len() > MAX_POLICY_LEN
    {
        return Err(usage(format!(
            "the policy name {:?} cannot start image names: it must be 1 to {MAX_POLICY_LEN} bytes, \
             not start with '.', and hold no '/' or NUL",
            o.policy
        )));
    }
    let plugin = std::fs::canonicalize(&o.plugin)
        .map_err(|e| usage(format!("{}: plugin not found: {e}", o.plugin.display())))?;
    let credentials = match &o.credentials {
        Some(c) => {
            Some(std::fs::canonicalize(c).map_err(|e| usage(format!("{}: {e}", c.display())))?)
        }
        None => None,
    };
    // job.json and the workers' tasks carry these paths as text: refuse one that is not UTF-8
    // before any image exists.
    for p in [&o.store, &plugin].into_iter().chain(&credentials) {
        if p.to_str().is_none() {
            return Err(usage(format!(
                "{}: the path is not UTF-8; give it by a path that is",
                p.display()
            )));
        }
    }
    let store = Store::open(&o.store)?;
    // Under the store lock until the image is in use: a delete cannot remove the base chosen here.
    let lock = locked(|w| store.lock(w))?;
    let state = store.host_state()?;
    let pstate = state.policies.get(&o.policy).cloned().unwrap_or_default();
    let mut properties = vec![(AAPI_PROP_POLICY.to_string(), o.policy.clone())];
    if let Some((t, _)) = &pstate.last_backup {
        properties.push((AAPI_PROP_LAST_BACKUP_TIME.to_string(), t.to_string()));
    }
    if let Some((t, _)) = &pstate.last_full {
        properties.push((AAPI_PROP_LAST_FULL_TIME.to_string(), t.to_string()));
    }
    properties.extend(o.properties.iter().cloned());
    let base = match sched {
        AAPI_SCHED_INCR => pstate.last_backup.map(|(_, i)| i),
        AAPI_SCHED_CINC => pstate.last_full.map(|(_, i)| i),
        _ => None,
    };
    if let Some(b) = &base {
        store.manifest(b).map_err(|e| {
                failed(format!(
                    "the base image of this {} backup is not usable ({e}); run a full backup of policy {}",
                    o.schedule, o.policy
                ))
            })?;
    }
    let started = now();
    let image = store.create_image(&o.policy, &o.schedule, started)?;
    let in_use = locked(|w| store.use_image(&image, w))?;
    let job = JobDef {
        image,
        policy: o.policy.clone(),
        schedule: o.schedule.clone(),
        plugin,
        workload_type: o.workload_type.clone(),
        server: o.server.clone(),
        selections: o.selections.clone(),
        hosts: o.hosts.clone(),
        properties,
        call_budget_ms: o.call_budget_ms,
        started,
        base,
        snapid: None,
        credentials,
    };
    if let Err(e) = store.save_job(&job) {
        // Nothing ran yet: no image directory is left to look like an interrupted job.
        let _ = std::fs::remove_dir_all(store.image_dir(&job.image));
        return Err(e.into());
    }
    drop(lock);
    Ok((store, job, in_use))
}

/// The end of a job whose discovery succeeded but whose job file could not record the snapshot
/// id: the image, which holds nothing, is removed, and the error `e` says what became of the
/// snapshot (`cleaned`: the postprocess's outcome).
fn unrecorded_snapid(
    store: &Store,
    job: &JobDef,
    e: JobError,
    cleaned: Result<(), String>,
) -> JobError {
    let snapshot = match cleaned {
        Ok(()) => "its snapshot was cleaned up".to_string(),
        Err(why) => format!(
            "its snapshot {:?} could not be cleaned up ({why}): the plugin's documentation says where it is",
            job.snapid.as_deref().unwrap_or_default()
        ),
    };
    let _ = std::fs::remove_dir_all(store.image_dir(&job.image));
    JobError {
        message: format!(
            "{}; the discovery succeeded, but its snapshot id could not be recorded: {snapshot}, and no image was made",
            e.message
        ),
        ..e
    }
}

/// Remember a complete image without failures as the policy's last backup (and last full),
/// unless the image recorded there ran later: a split job finalized after newer backups of its
/// policy completed leaves them the last (run order, as `delete` falls back to the newest).
fn record_success(st: &Store, job: &JobDef, m: &Manifest) -> Result<(), JobError> {
    if m.failures.is_empty() {
        let _lock = locked(|w| st.lock(w))?;
        let mut state = st.host_state_to_update()?;
        let p = state.policies.entry(job.policy.clone()).or_default();
        let this = Some((job.started, job.image.clone()));
        // A recorded image that cannot be read any more is no usable base: this one replaces it.
        let ran_later = |recorded: &Option<(i64, String)>| {
            recorded.as_ref().is_some_and(|(_, id)| {
                id != &m.image && st.manifest(id).is_ok_and(|r| r.run_order() > m.run_order())
            })
        };
        let mut changed = state.rebuilt;
        if !ran_later(&p.last_backup) {
            changed |= p.last_backup != this;
            p.last_backup = this.clone();
        }
        if job.schedule == "full" && !ran_later(&p.last_full) {
            changed |= p.last_full != this;
            p.last_full = this;
        }
        if changed && let Err(e) = st.save_host_state(&state) {
            return Err(failed(format!(
                "{e}; image {} is complete, but it could not be recorded as the policy's last backup: the next incremental of {} builds on the one before it (nothing is lost; free space in the store)",
                m.image, job.policy
            )));
        }
    }
    Ok(())
}

impl From<tasks::TaskError> for JobError {
    fn from(e: tasks::TaskError) -> Self {
        JobError {
            kind: match e.code {
                Some(AAPI_ESCHED_NOT_SUPPORTED) => ExitKind::ScheduleNotSupported,
                Some(AAPI_ECANCELLED) => ExitKind::Cancelled,
                _ => ExitKind::Failed,
            },
            message: e.message,
        }
    }
}

/// The whole compound backup in this process, without worker processes or supervision: for
/// tests of a plugin that want one process (and a debugger) from discovery to complete image.
/// `plugin` must be initialised and have claimed the workload type. The image store and its
/// format are exactly those of [`Runner::backup`].
pub fn backup_in_process(
    plugin: &crate::client::Plugin,
    o: &BackupOptions,
) -> Result<Manifest, JobError> {
    let (store, mut job, _in_use) = prepare_job(o)?;
    match tasks::discover(plugin, &store, &job) {
        Ok(snapid) => {
            job.snapid = Some(snapid);
            if let Err(e) = store.save_job(&job) {
                // As `Runner::discover` does: clean the snapshot up with the id in hand.
                let cleaned = tasks::postprocess(plugin, &store, &job).map_err(|p| p.message);
                return Err(unrecorded_snapid(&store, &job, e.into(), cleaned));
            }
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(store.image_dir(&job.image));
            return Err(e.into());
        }
    }
    let mut first_err = None;
    for n in 0..job.hosts.len() as u32 {
        if let Err(e) = tasks::child(plugin, &store, &job, n, &tasks::NoProgress) {
            first_err.get_or_insert(e);
        }
    }
    let post = tasks::postprocess(plugin, &store, &job);
    if post.is_ok() {
        store::write_atomic(
            &store.image_dir(&job.image).join(store::POSTPROCESS_DONE),
            b"",
        )?;
    }
    if let Some(e) = first_err.or(post.err()) {
        // Given up only once the snapshot is gone; otherwise a finalize can still clean it up.
        if snapshot_cleaned(&store, &job) {
            let _ = store.record_failure(&job.image, &e.message);
        }
        return Err(e.into());
    }
    let m = merge(&store, &job)?;
    record_success(&store, &job, &m)?;
    Ok(m)
}

/// A restore in this process (see [`backup_in_process`]).
pub fn restore_in_process(
    plugin: &crate::client::Plugin,
    task: &RestoreTask,
) -> Result<RestoreReport, JobError> {
    let st = Store::open_existing(&task.store)?;
    let _in_use = locked(|w| st.use_image(&task.image, w))?;
    Ok(tasks::restore(plugin, task, &tasks::NoProgress)?)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Merge the stream catalogs of a job whose child jobs all completed into the image catalog,
/// resolve unchanged objects against the base image, and write the manifest (the atomic step
/// that makes the image complete).
fn merge(st: &Store, job: &JobDef) -> Result<Manifest, JobError> {
    let dir = st.image_dir(&job.image);
    let mut dones = Vec::new();
    for (n, host) in job.hosts.iter().enumerate() {
        let p = dir.join(format!("stream-{n}.done"));
        let bytes = std::fs::read(&p).map_err(|_| {
            failed(format!(
                "the child job of backup host {host} (stream {n}) did not complete; image {} stays incomplete",
                job.image
            ))
        })?;
        let done: StreamDone = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("{}: unreadable: {e}", p.display())))?;
        let len = std::fs::metadata(st.stream_path(&job.image, n as u32))
            .map(|m| m.len())
            .map_err(|e| failed(format!("stream {n} of image {}: {e}", job.image)))?;
        if len != done.bytes {
            return Err(failed(format!(
                "stream {n} of image {} holds {len} bytes but its child job recorded {}",
                job.image, done.bytes
            )));
        }
        dones.push(done);
    }
    let streams = (0..job.hosts.len())
        .map(|n| Catalog::load(&dir.join(format!("stream-{n}.cat"))))
        .collect::<Result<Vec<_>, _>>()?;
    // The base is read only when a record takes its data from it: when it could not be read,
    // the child jobs backed up every object in full.
    let needs_base = streams
        .iter()
        .any(|c| c.entries.iter().any(|e| e.flags & REC_UNCHANGED != 0));
    let base = match &job.base {
        Some(b) if needs_base => {
            let m = st
                .manifest(b)
                .map_err(|e| failed(format!("base image: {e}")))?;
            Some(st.catalog(&m)?)
        }
        _ => None,
    };
    let base_index: HashMap<&[u8], &Entry> = base
        .as_ref()
        .map(|c| c.entries.iter().map(|e| (e.path.as_slice(), e)).collect())
        .unwrap_or_default();
    let mut images = vec![job.image.clone()];
    let mut failures: Vec<ObjectFailure> = dones.iter().flat_map(|d| d.failures.clone()).collect();
    let mut entries: Vec<Entry> = Vec::new();
    for cat in streams {
        for mut e in cat.entries {
            if e.flags & REC_UNCHANGED != 0 {
                let found = base_index.get(e.path.as_slice()).map(|b| (*b).clone());
                let (Some(b), Some(base_cat)) = (found, base.as_ref()) else {
                    failures.push(ObjectFailure::new(
                        &e.path,
                        format!(
                            "listed as unchanged, but {} holds no copy of it; run a full backup",
                            job.base.as_deref().unwrap_or("no base image")
                        ),
                    ));
                    continue;
                };
                let id = &base_cat.images[b.data.image as usize];
                let idx = match images.iter().position(|i| i == id) {
                    Some(i) => i,
                    None => {
                        images.push(id.clone());
                        images.len() - 1
                    }
                };
                e.props = b.props;
                e.data = b.data;
                e.data.image = idx as u32;
            }
            e.flags = 0;
            entries.push(e);
        }
    }
    // Path order. The sort is stable, so among copies of a path listed by more than one workload
    // file the first stream's comes first and is the one kept.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|later, first| {
        let twice = later.path == first.path;
        if twice {
            failures.push(ObjectFailure::new(
                &later.path,
                "listed in more than one workload file; kept the first copy",
            ));
        }
        twice
    });
    let catalog = Catalog {
        images: images.clone(),
        entries,
    };
    let catalog_blake3 = catalog.save(&dir.join("catalog"))?;
    let plugin_name = job.plugin.display().to_string();
    let manifest = Manifest {
        format: 1,
        image: job.image.clone(),
        policy: job.policy.clone(),
        schedule: job.schedule.clone(),
        started: job.started,
        completed: now(),
        base: job.base.clone(),
        depends_on: images[1..].to_vec(),
        plugin: plugin_name,
        streams: dones.iter().map(|d| d.bytes).collect(),
        objects: catalog.entries.len() as u64,
        bytes: dones.iter().map(|d| d.bytes).sum(),
        catalog_blake3,
        failures,
    };
    store::write_atomic(
        &dir.join(store::MANIFEST),
        &serde_json::to_vec_pretty(&manifest).expect("serialisable"),
    )?;
    Ok(manifest)
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Image id.
    pub image: String,
    /// Objects in the catalog.
    pub objects: u64,
    /// Objects whose bytes were read and matched their digest (restorable).
    pub good: u64,
    /// Damaged objects: path and what is wrong.
    pub damaged: Vec<ObjectFailure>,
    /// Data bytes read.
    pub bytes: u64,
    /// Earlier images this one takes object data from that cannot be read from (gone,
    /// incomplete, unreadable manifest); the objects whose data lies in them are among `damaged`.
    pub unusable_images: Vec<UnusableImage>,
    /// Stream files of the image that lack data the manifest records (missing, or shorter than
    /// recorded): damage, even when every object is intact.
    pub damaged_streams: Vec<StreamProblem>,
    /// What is off but harms no object: a stream file longer than the manifest records (the
    /// extra bytes belong to no object), an unreadable job file (a restore needs `--plugin`),
    /// a partial image.
    pub warnings: Vec<String>,
    /// Objects the backup could not read (a partial image): in no stream, so not restorable
    /// from this image.
    pub not_backed_up: Vec<ObjectFailure>,
}

impl VerifyReport {
    /// Whether nothing is damaged: every object intact and every stream file whole (warnings
    /// allowed).
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty() && self.damaged_streams.is_empty()
    }
}

/// An image whose data another image needs and that cannot be read from.
#[derive(Debug, Clone, Serialize)]
pub struct UnusableImage {
    /// Image id.
    pub image: String,
    /// Why it cannot be used.
    pub reason: String,
}

/// A stream file of an image that does not hold what its manifest records.
#[derive(Debug, Clone, Serialize)]
pub struct StreamProblem {
    /// Stream number.
    pub stream: u32,
    /// The stream file.
    pub file: PathBuf,
    /// What is wrong.
    pub error: String,
}

/// Re-read every object of `image` (including data it takes from earlier images) and check its
/// digest; every damaged object is named. Objects whose data lies in an earlier image that cannot
/// be used are damaged; the others are checked all the same. Stream files are checked against the
/// sizes in the manifest: a shorter or missing one is damage, a longer one a warning.
pub fn verify(store: &Store, image: &str, ui: &Ui) -> Result<VerifyReport, JobError> {
    // An unknown or incomplete image is bad input (exit 2); a damaged one is what verify reports.
    let _in_use = locked(|w| store.use_image(image, w))?;
    let manifest = store.manifest(image)?;
    let catalog = store.catalog(&manifest).map_err(|e| {
        failed(format!(
            "{e}; no object of image {image} can be located without its catalog"
        ))
    })?;
    let unusable = tasks::unusable_images(store, &catalog);
    let mut report = VerifyReport {
        image: image.to_string(),
        objects: catalog.entries.len() as u64,
        good: 0,
        damaged: Vec::new(),
        bytes: 0,
        unusable_images: unusable
            .iter()
            .zip(&catalog.images)
            .enumerate()
            .filter(|&(i, _)| {
                catalog.entries.iter().any(|e| {
                    e.data.image as usize == i && tasks::needs_unusable(&e.data, &unusable)
                })
            })
            .filter_map(|(_, (why, id))| {
                why.as_ref().map(|reason| UnusableImage {
                    image: id.clone(),
                    reason: reason.clone(),
                })
            })
            .collect(),
        damaged_streams: Vec::new(),
        warnings: Vec::new(),
        not_backed_up: manifest.failures.clone(),
    };
    if let Some(first) = manifest.failures.first() {
        report.warnings.push(format!(
            "image {image} is partial: {} object(s) were not backed up (first: {}) and are in no stream; `{} show {image}` lists them",
            manifest.failures.len(),
            crate::ui::escape_path(&first.path_bytes()),
            crate::ui::command()
        ));
    }
    // The job file only names the plugin: no object needs it, but a restore without --plugin does.
    if let Err(e) = store.job(image) {
        report.warnings.push(format!(
            "{e}: it names the plugin that made the image, so a restore needs --plugin LIB"
        ));
    }
    for (n, expect) in manifest.streams.iter().enumerate() {
        let p = store.stream_path(image, n as u32);
        let problem = match std::fs::metadata(&p) {
            Ok(m) if m.len() == *expect => None,
            Ok(m) if m.len() > *expect => {
                report.warnings.push(format!(
                    "{}: holds {} bytes, {} more than the manifest records ({expect}); the extra bytes belong to no object and are not read",
                    p.display(),
                    m.len(),
                    m.len() - expect
                ));
                None
            }
            Ok(m) => Some(format!(
                "holds {} bytes, {} fewer than the manifest records ({expect}): the stream was cut short",
                m.len(),
                expect - m.len()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "missing; the manifest records {expect} bytes in it"
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = problem {
            report.damaged_streams.push(StreamProblem {
                stream: n as u32,
                file: p,
                error,
            });
        }
    }
    let total: u64 = catalog.entries.iter().map(|e| e.data.length).sum();
    let bar = ui.bar("verify", Some(total));
    let mut order: Vec<&Entry> = catalog.entries.iter().collect();
    order.sort_by_key(|e| (e.data.image, e.data.stream, e.data.offset));
    let mut buf = vec![0u8; tasks::BUFFER_SIZE];
    let mut seen = 0u64;
    for e in order {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            return Err(JobError {
                kind: ExitKind::Cancelled,
                message: format!(
                    "verify of image {image} interrupted after {} of {} objects; nothing was changed",
                    report.good + report.damaged.len() as u64,
                    report.objects
                ),
            });
        }
        seen += e.data.length;
        if tasks::needs_unusable(&e.data, &unusable) {
            let i = e.data.image as usize;
            report.damaged.push(ObjectFailure::new(
                &e.path,
                format!(
                    "its data lies in image {}, which is not usable: {}",
                    catalog.images[i],
                    unusable[i].as_deref().unwrap_or_default()
                ),
            ));
            bar.set_position(seen);
            continue;
        }
        let mut got = 0u64;
        let mut check = || -> Result<(), String> {
            let mut r = store
                .open_data(&catalog, &e.data)
                .map_err(|err| err.to_string())?;
            let mut h = blake3::Hasher::new();
            loop {
                let n = r.read(&mut buf).map_err(|err| err.to_string())?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                got += n as u64;
            }
            if got != e.data.length {
                return Err(format!(
                    "stream ends after {got} of its {} bytes",
                    e.data.length
                ));
            }
            if <[u8; 32]>::from(h.finalize()) != e.data.blake3 {
                return Err("bytes do not match the digest recorded at backup".into());
            }
            Ok(())
        };
        let r = check();
        report.bytes += got;
        bar.set_position(seen);
        match r {
            Ok(()) => report.good += 1,
            Err(error) => report.damaged.push(ObjectFailure::new(&e.path, error)),
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

/// Find the image to restore: `image` itself, or the newest complete image of `policy` that
/// started at or before `at` (a point in time), or the newest of `policy`.
pub fn resolve_image(
    store: &Store,
    image: Option<&str>,
    policy: Option<&str>,
    at: Option<i64>,
) -> Result<String, JobError> {
    if let Some(i) = image {
        store.manifest(i)?;
        return Ok(i.to_string());
    }
    let policy = policy.ok_or_else(|| usage("name an image, or a --policy (and --at)"))?;
    // The newest by start, then by completion (times are in seconds), then by when the manifest
    // was written (last, as the job completed).
    let mut best: Option<((i64, i64, SystemTime), String)> = None;
    // Damaged images of the policy, by their start: a newer one than the image chosen is said.
    let mut damaged: Vec<(i64, String)> = Vec::new();
    for id in store.image_ids()? {
        let m = match store.state(&id) {
            Ok(ImageState::Complete(m)) => m,
            Ok(ImageState::Incomplete { .. }) => continue,
            Err(_) => {
                if let Ok(job) = store.job(&id)
                    && job.policy == policy
                    && at.is_none_or(|t| job.started <= t)
                {
                    damaged.push((job.started, id));
                }
                continue;
            }
        };
        if m.policy != policy || at.is_some_and(|t| m.started > t) {
            continue;
        }
        // The manifest's own time orders images of the same second: written last, it says
        // which job completed later.
        let written = std::fs::metadata(store.image_dir(&id).join(store::MANIFEST))
            .and_then(|md| md.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let when = (m.started, m.completed, written);
        if best.as_ref().is_none_or(|(w, _)| when >= *w) {
            best = Some((when, id));
        }
    }
    for (started, id) in &damaged {
        if best.as_ref().is_none_or(|((s, _, _), _)| started >= s) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: image {id} of policy {policy:?} is newer, but damaged (see `{} list`); it is passed over",
                crate::ui::command()
            );
        }
    }
    best.map(|(_, id)| id).ok_or_else(|| {
        usage(format!(
            "no complete image of policy {policy:?}{} (see `{} list`)",
            at.map(|t| format!(" at or before {}", store::utc_display(t)))
                .unwrap_or_default(),
            crate::ui::command()
        ))
    })
}

/// Load the host state (for `list`).
pub fn host_state(store: &Store) -> Result<HostState, JobError> {
    Ok(store.host_state()?)
}
