//! What the runner asks a worker process to do, and what the worker reports back.
//!
//! Both travel as JSON: the task in a file named by an environment variable ([`TASK_ENV`]), the
//! messages inside the `result` events of `aapi_host::supervise`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Environment variable that names the file holding a worker process's [`TaskSpec`].
pub const TASK_ENV: &str = "AAPI_CONFORMANCE_TASK";

/// The resolved run parameters every worker needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// The plugin library under test.
    pub plugin: PathBuf,
    /// Workload type to claim.
    pub workload_type: String,
    /// Server name for `aapi_open_server`.
    pub server: String,
    /// Session properties.
    pub properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds.
    pub budget_ms: u32,
    /// Credentials answering the credential callback.
    pub credentials: Vec<(String, String)>,
    /// Selections of the data checks.
    pub selections: Vec<Vec<u8>>,
    /// Backup hosts of the data checks.
    pub hosts: Vec<String>,
    /// Whether the workload is `files` with a generated tree (enables on-disk checks).
    pub files: bool,
    /// Budget of the long call.
    pub timing_budget_ms: u32,
    /// Selections of the long call.
    pub timing_selections: Vec<Vec<u8>>,
    /// Extra properties of the long call.
    pub timing_properties: Vec<(String, String)>,
    /// Directories holding the plugin's snapshots.
    pub watch_dirs: Vec<PathBuf>,
}

/// One object from a workload file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obj {
    /// Real path.
    pub path: Vec<u8>,
    /// `AAPI_WKLD_*` flags.
    pub flags: u32,
    /// Size hint.
    pub size: u64,
}

/// Objects the discovery found, with representatives the probes work on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Objects {
    /// Every object once.
    pub all: Vec<Obj>,
    /// The largest regular object with data.
    pub file: Option<Vec<u8>>,
    /// A small regular object with data.
    pub small_file: Option<Vec<u8>>,
    /// A directory.
    pub dir: Option<Vec<u8>>,
    /// A symbolic link.
    pub symlink: Option<Vec<u8>>,
    /// Capabilities from the plugin info.
    pub capabilities: u64,
    /// `max_concurrent_objects` from the plugin info.
    pub max_concurrent: u32,
    /// `AAPI_SRVC_*` flags of the server.
    pub srv_flags: u64,
}

/// Everything one worker process gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Run parameters.
    pub setup: Setup,
    /// Objects from discovery (empty before it ran).
    pub objects: Objects,
    /// File that receives the worker's stdout and stderr (what the plugin prints).
    pub capture: PathBuf,
    /// A private, empty directory for this task.
    pub dir: PathBuf,
    /// The directory `{job}` stands for in properties and watched directories: shared by the
    /// workers of the data pipeline, private to each probe.
    pub job: PathBuf,
    /// The check the task runs for (probes announce the checks they evaluate as they go).
    pub check: String,
    /// Functions that already kept alive until an earlier worker's limit: a call to one of them
    /// that has not returned within its grace stops this worker ([`Msg::Stopped`]) instead of
    /// holding it up to the limit again.
    #[serde(default)]
    pub hung: Vec<HungCall>,
    /// What to do.
    pub task: Task,
}

/// A function that kept alive until an earlier worker's limit, and how long a call to it may
/// take here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HungCall {
    /// Entry point.
    pub function: String,
    /// Milliseconds a call may run, keepalives or not, before the worker stops.
    pub grace_ms: u64,
}

/// The work of one worker process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// The load gate: marker, symbols, handshake, plugin info.
    Gate,
    /// One probe check.
    Probe {
        /// Its check ID.
        check: String,
    },
    /// A discovery session writing workload files into `out`.
    Discover {
        /// Workload directory (exists, empty).
        out: PathBuf,
        /// Selections.
        selections: Vec<Vec<u8>>,
        /// Backup hosts.
        hosts: Vec<String>,
        /// `AAPI_SCHED_*`.
        schedule: u32,
        /// Extra session properties.
        properties: Vec<(String, String)>,
        /// Job id.
        job: String,
    },
    /// A backup child job of one workload file into an image directory.
    Backup {
        /// The workload file.
        workload: PathBuf,
        /// Image directory to fill.
        image: PathBuf,
        /// Job id.
        job: String,
    },
    /// A postprocess session (and the repeated and empty-id variants).
    Postprocess {
        /// The workload directory of the discovery.
        out: PathBuf,
        /// Snapshot id from discovery.
        snapid: String,
        /// Schedule of the discovery.
        schedule: u32,
        /// Job id.
        job: String,
    },
    /// A restore of images under an alternate root.
    Restore {
        /// Image directories.
        images: Vec<PathBuf>,
        /// Alternate root.
        root: PathBuf,
    },
}

/// A message from a worker (inside a supervise `result` event).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Msg {
    /// The worker starts evaluating `check`; a crash from now on is attributed to it.
    Begin {
        /// Check ID.
        check: String,
    },
    /// `check` saw the plugin break its clause.
    Finding {
        /// Check ID.
        check: String,
        /// What happened.
        message: String,
    },
    /// `check` cannot apply to this plugin.
    Skip {
        /// Check ID.
        check: String,
        /// Why.
        reason: String,
    },
    /// `check` was evaluated (it passed unless it has findings).
    Ran {
        /// Check ID.
        check: String,
    },
    /// A task output.
    Output {
        /// The payload.
        value: serde_json::Value,
    },
    /// Measurements of the whole worker.
    Stats(Stats),
    /// A call to a function of [`TaskSpec::hung`] ran past its grace: the worker stops now,
    /// with the call still running.
    Stopped {
        /// The entry point.
        function: String,
        /// How long the call had run, in milliseconds.
        after_ms: u64,
    },
    /// The task is done and the worker exits with status 0: a worker that ends with status 0
    /// without this was ended by the plugin.
    Done,
}

/// Measurements a worker sends before it exits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Call durations in microseconds per function.
    pub latency_us: BTreeMap<String, Vec<u64>>,
    /// Calls longer than a quarter of their budget, made while no other call ran.
    pub long_calls: Vec<LongCall>,
    /// Callbacks that broke THR-3: made while no entry point was running, or of a closed session.
    pub stray_callbacks: Vec<String>,
    /// Calls that returned a number that is no `AAPI_E*` code (RC-1).
    pub bad_codes: Vec<String>,
    /// Calls that returned a code §14 does not list for the function (RC-2).
    pub undocumented: Vec<String>,
    /// Failing calls that left `aapi_get_last_error` empty (RC-9).
    #[serde(default)]
    pub empty_messages: Vec<String>,
}

/// A call longer than a quarter of its budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LongCall {
    /// Entry point.
    pub function: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Longest time without a keepalive (from the call, between keepalives, to the return).
    pub max_gap_ms: u64,
    /// The session budget in milliseconds.
    pub budget_ms: u32,
}

/// One object in an image written by a backup task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageObject {
    /// Real path.
    pub path: Vec<u8>,
    /// `AAPI_WKLD_*` flags of its record.
    pub flags: u32,
    /// Properties reported by `aapi_get_object_prop`.
    pub prop: Prop,
    /// Bytes read.
    pub bytes: u64,
    /// SHA-256 of the bytes read, hex.
    pub sha256: String,
    /// Data file name inside the image directory.
    pub data: String,
    /// Whether the stream broke OBJ-1 (then it is left out of data comparisons).
    pub bad_stream: bool,
}

/// `aapi_object_prop_t` in serialisable form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prop {
    /// `AAPI_OBJ_*`.
    pub obj_type: u32,
    /// `AAPI_PROP_*` bits.
    pub valid: u32,
    /// Mode bits.
    pub mode: u32,
    /// Size.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time.
    pub atime: (i64, u32),
    /// Modification time.
    pub mtime: (i64, u32),
}

impl From<&aapi_sdk::abi::aapi_object_prop_t> for Prop {
    fn from(p: &aapi_sdk::abi::aapi_object_prop_t) -> Self {
        Prop {
            obj_type: p.obj_type,
            valid: p.valid,
            mode: p.mode,
            size: p.size,
            uid: p.uid,
            gid: p.gid,
            atime: (p.atime.sec, p.atime.nsec),
            mtime: (p.mtime.sec, p.mtime.nsec),
        }
    }
}

/// The file of an image directory listing its objects.
pub const IMAGE_INDEX: &str = "objects.json";
