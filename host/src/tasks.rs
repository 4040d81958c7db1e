//! The units of work that run plugin code: discovery, one child job (one stream), postprocess,
//! and restore. Each is a plain function over an initialised [`Plugin`], so it runs the same in a
//! supervised worker process (the default) or in-process (tests of plugins drive a whole backup and
//! restore this way).
//!
//! The data path is short: a child job reads each object from the plugin into a 1 MiB buffer,
//! hashes it (BLAKE3) and writes it to its own stream file; a restore seeks to each selected
//! object's range (the offset map) and writes it to the plugin while hashing it.

use crate::client::{DiscoveryArgs, Plugin, PluginError, SessionDef};
use crate::store::{
    self, Catalog, CatalogWriter, DataRef, Entry, JobDef, ObjectFailure, Props, REC_UNCHANGED,
    SeenStamp, Store, StoreError, StreamDone,
};
use crate::stream_writer::{StreamIo, StreamWriter};
use crate::ui::escape_path;
use aapi_sdk::abi::*;
use aapi_sdk::workload::{self, WorkloadFile};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Size of the data buffers of child jobs, restores and verify.
pub use crate::stream_writer::BUFFER_SIZE;
/// Suffix of the workload files discovery writes.
pub const WORKLOAD_SUFFIX: &str = ".wkld";
/// The longest backup host name, in bytes: its workload file `<host>.wkld` and that file's
/// temporary name `<host>.wkld.tmp.<pid>` must fit in one file name (255 bytes).
pub const MAX_BACKUP_HOST_LEN: usize = 255 - WORKLOAD_SUFFIX.len() - ".tmp.".len() - 7;

/// Check that `host` can name a backup host: one workload file name of its own.
pub fn check_backup_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host == "." || host == ".." || host.contains(['/', '\0']) {
        return Err(format!(
            "{host:?} is no backup host name: it names the workload file <host>{WORKLOAD_SUFFIX}, \
             so it must not be empty, '.' or '..', nor hold '/' or NUL"
        ));
    }
    if host.len() > MAX_BACKUP_HOST_LEN {
        return Err(format!(
            "the backup host name {:?}... is {} bytes long; at most {MAX_BACKUP_HOST_LEN} fit in \
             its workload file's name",
            host.chars().take(16).collect::<String>(),
            host.len()
        ));
    }
    Ok(())
}

/// Why a task failed: a message that says what to do, and the plugin code when a call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// Human-readable reason.
    pub message: String,
    /// The plugin's return code, when a plugin call failed.
    pub code: Option<i32>,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<PluginError> for TaskError {
    fn from(e: PluginError) -> Self {
        TaskError {
            message: e.to_string(),
            code: e.code(),
        }
    }
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        TaskError {
            message: e.to_string(),
            code: None,
        }
    }
}

impl From<crate::Error> for TaskError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Plugin(p) => p.into(),
            other => TaskError {
                message: other.to_string(),
                code: None,
            },
        }
    }
}

fn task_err(message: impl Into<String>) -> TaskError {
    TaskError {
        message: message.into(),
        code: None,
    }
}

/// Receives progress of a running task, and tells it when to stop (a worker forwards progress to
/// the supervisor and learns of a cancel from it).
pub trait Progress {
    /// `bytes` and `objects` done so far.
    fn progress(&self, bytes: u64, objects: u64);
    /// Whether the job was cancelled (Ctrl-C, SIGTERM): the task stops before its next object,
    /// or its next buffer of a large one.
    fn cancelled(&self) -> bool;
}

/// Progress that goes nowhere; never cancelled.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn progress(&self, _bytes: u64, _objects: u64) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// `AAPI_ECANCELLED` when the job was cancelled; `doing` says what stopped (made only then).
fn check_cancel(progress: &dyn Progress, doing: impl FnOnce() -> String) -> Result<(), TaskError> {
    if progress.cancelled() {
        return Err(TaskError {
            message: format!("cancelled {}", doing()),
            code: Some(AAPI_ECANCELLED),
        });
    }
    Ok(())
}

/// A task handed to a worker process (as JSON on its standard input).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Discovery for the image's job.
    Discover {
        /// Store directory.
        store: PathBuf,
        /// Image id.
        image: String,
    },
    /// One child job: the stream of backup host number `stream`.
    Child {
        /// Store directory.
        store: PathBuf,
        /// Image id.
        image: String,
        /// Stream (backup host index).
        stream: u32,
    },
    /// Snapshot cleanup after the child jobs.
    Postprocess {
        /// Store directory.
        store: PathBuf,
        /// Image id.
        image: String,
        /// The snapshot id, when the job file could not record the one discovery returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapid: Option<String>,
    },
    /// A restore.
    Restore(RestoreTask),
}

impl Task {
    /// The plugin, workload type and credentials file the task needs.
    pub fn plugin_spec(&self) -> Result<(PathBuf, String, Option<PathBuf>), TaskError> {
        match self {
            Task::Discover { store, image }
            | Task::Child { store, image, .. }
            | Task::Postprocess { store, image, .. } => {
                let job = Store::open(store)?.job(image)?;
                Ok((job.plugin, job.workload_type, job.credentials))
            }
            Task::Restore(r) => Ok((
                r.plugin.clone(),
                r.workload_type.clone(),
                r.credentials.clone(),
            )),
        }
    }

    /// Run the task with `plugin` (already initialised and claimed); returns its JSON result.
    pub fn run(
        &self,
        plugin: &Plugin,
        progress: &dyn Progress,
    ) -> Result<serde_json::Value, TaskError> {
        let to_json = |v: &dyn ErasedJson| v.json();
        match self {
            Task::Discover { store, image } => {
                let job = Store::open(store)?.job(image)?;
                let snapid = discover(plugin, &Store::open(store)?, &job)?;
                Ok(serde_json::json!({ "snapid": snapid }))
            }
            Task::Child {
                store,
                image,
                stream,
            } => {
                let st = Store::open(store)?;
                let job = st.job(image)?;
                let done = child(plugin, &st, &job, *stream, progress)?;
                Ok(to_json(&done))
            }
            Task::Postprocess {
                store,
                image,
                snapid,
            } => {
                let mut job = Store::open(store)?.job(image)?;
                if snapid.is_some() {
                    job.snapid = snapid.clone();
                }
                postprocess(plugin, &Store::open(store)?, &job)?;
                Ok(serde_json::json!({}))
            }
            Task::Restore(r) => {
                let report = restore(plugin, r, progress)?;
                Ok(to_json(&report))
            }
        }
    }
}

trait ErasedJson {
    fn json(&self) -> serde_json::Value;
}

impl<T: Serialize> ErasedJson for T {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("results serialise")
    }
}

/// The `AAPI_SCHED_*` value of a schedule name.
pub fn schedule_code(name: &str) -> Option<u32> {
    match name {
        "full" => Some(AAPI_SCHED_FULL),
        "incr" | "incremental" => Some(AAPI_SCHED_INCR),
        "cinc" | "cumulative" => Some(AAPI_SCHED_CINC),
        _ => None,
    }
}

fn session(job: &JobDef, operation: u32, host: &str, snapid: &str) -> SessionDef {
    SessionDef {
        operation,
        schedule: schedule_code(&job.schedule).unwrap_or(AAPI_SCHED_FULL),
        job_id: job.image.clone(),
        backup_host: host.to_string(),
        snapid: snapid.to_string(),
        properties: job.properties.clone(),
        call_budget_ms: job.call_budget_ms,
        hooks: None,
    }
}

fn discovery_args<'a>(
    job: &'a JobDef,
    selections: &'a [Vec<u8>],
    dir: &'a Path,
) -> DiscoveryArgs<'a> {
    DiscoveryArgs {
        selections,
        backup_hosts: &job.hosts,
        workload_dir: dir,
        suffix: WORKLOAD_SUFFIX,
        schedule: schedule_code(&job.schedule).unwrap_or(AAPI_SCHED_FULL),
    }
}

/// Discovery job (on the first backup host): checks that the server supports the schedule, then
/// writes one workload file per backup host into the image's `wkld` directory. Returns the
/// snapshot id.
pub fn discover(plugin: &Plugin, store: &Store, job: &JobDef) -> Result<String, TaskError> {
    let sched = schedule_code(&job.schedule)
        .ok_or_else(|| task_err(format!("unknown schedule {:?}", job.schedule)))?;
    let server = plugin.open_server(
        &job.server,
        session(job, AAPI_OP_DISCOVERY, &job.hosts[0], ""),
    )?;
    let flags = server.server_prop()?;
    let needed = match sched {
        AAPI_SCHED_INCR => AAPI_SRVC_INCR_BACKUP_SUPPORT,
        AAPI_SCHED_CINC => AAPI_SRVC_CINC_BACKUP_SUPPORT,
        _ => AAPI_SRVC_FULL_BACKUP_SUPPORT,
    };
    if flags & needed == 0 {
        return Err(TaskError {
            message: format!(
                "the plugin does not support {} backups of server {:?} (aapi_get_server_prop flags {flags:#x}): AAPI_ESCHED_NOT_SUPPORTED; choose a supported schedule",
                job.schedule, job.server
            ),
            code: Some(AAPI_ESCHED_NOT_SUPPORTED),
        });
    }
    let sel = &job.selections;
    let dir = store.image_dir(&job.image).join("wkld");
    let snapid = server.discovery(&discovery_args(job, sel, &dir))?;
    server.close()?;
    for host in &job.hosts {
        let f = workload::file_name(&dir, host, WORKLOAD_SUFFIX);
        if !f.is_file() {
            return Err(task_err(format!(
                "aapi_discovery returned AAPI_EOK but wrote no workload file for backup host {host:?} ({})",
                f.display()
            )));
        }
    }
    Ok(snapid)
}

/// Postprocess job: `aapi_postprocess` with the snapshot id from discovery.
pub fn postprocess(plugin: &Plugin, store: &Store, job: &JobDef) -> Result<(), TaskError> {
    let snapid = job.snapid.clone().unwrap_or_default();
    let server = plugin.open_server(
        &job.server,
        session(job, AAPI_OP_POSTPROCESS, &job.hosts[0], &snapid),
    )?;
    let sel = &job.selections;
    let dir = store.image_dir(&job.image).join("wkld");
    server.postprocess(&discovery_args(job, sel, &dir), &snapid)?;
    server.close()?;
    Ok(())
}

struct StreamFiles {
    data: StreamWriter,
    cat: CatalogWriter<fs::File>,
}

/// One child job: stream every object of backup host `stream`'s workload file into
/// `stream-<n>.data` and its records into `stream-<n>.cat`; then sync both and write
/// `stream-<n>.done`. An object that fails (vanished, changed while read, unreadable) is cut
/// back out of the stream and reported; a cancel stops the job.
pub fn child(
    plugin: &Plugin,
    store: &Store,
    job: &JobDef,
    stream: u32,
    progress: &dyn Progress,
) -> Result<StreamDone, TaskError> {
    let host = job
        .hosts
        .get(stream as usize)
        .ok_or_else(|| task_err(format!("no backup host number {stream} in the job")))?;
    let dir = store.image_dir(&job.image);
    let wk_path = workload::file_name(&dir.join("wkld"), host, WORKLOAD_SUFFIX);
    let wk = WorkloadFile::read_from_path(&wk_path)
        .map_err(|e| task_err(format!("{}: {e}", wk_path.display())))?;
    let snapid = job.snapid.clone().unwrap_or_default();
    let done_path = dir.join(format!("stream-{stream}.done"));
    if done_path.exists() {
        return Err(task_err(format!(
            "stream {stream} of image {} is already complete; nothing to do",
            job.image
        )));
    }
    let io = StreamIo::from_env().map_err(task_err)?;
    let data_path = store.stream_path(&job.image, stream);
    let cat_path = dir.join(format!("stream-{stream}.cat"));
    // Leftovers of an interrupted run of this same child job are not part of any complete
    // image; start the stream afresh.
    for p in [&data_path, &cat_path] {
        let _ = fs::remove_file(p);
    }
    let mut files = StreamFiles {
        data: StreamWriter::new(store::create_new(&data_path)?, io),
        cat: CatalogWriter::new(
            store::create_new(&cat_path)?,
            std::slice::from_ref(&job.image),
        )
        .map_err(store::io_err(&cat_path))?,
    };
    let base = base_objects(store, job, &wk);
    let server = plugin.open_server(&job.server, session(job, AAPI_OP_BACKUP, host, &snapid))?;
    let mut failures = Vec::new();
    let mut objects = 0u64;
    let mut last_report = Instant::now();
    for entry in &wk.entries {
        use std::os::unix::ffi::OsStrExt;
        let path = entry.path.as_os_str().as_bytes().to_vec();
        if entry.flags & AAPI_WKLD_UNCHANGED != 0
            && base.get(&path).is_some_and(|b| b.same_as(entry))
        {
            files
                .cat
                .push(&Entry {
                    path,
                    props: Props::default(),
                    flags: REC_UNCHANGED,
                    data: DataRef::default(),
                    seen: seen(entry),
                })
                .map_err(store::io_err(&cat_path))?;
            objects += 1;
            continue;
        }
        check_cancel(progress, || format!("before {}", escape_path(&path)))?;
        let start = files.data.offset();
        let mut read = backup_object(
            &server,
            &snapid,
            &path,
            &mut files.data,
            &data_path,
            progress,
        );
        // An object listed unchanged that the base cannot lend (it was moved to this path) is
        // not in a snapshot of the changed objects: it is read where it is.
        if entry.flags & AAPI_WKLD_UNCHANGED != 0
            && !snapid.is_empty()
            && matches!(&read, Err(ObjError::Object(e)) if e.code == Some(AAPI_ENOENT))
        {
            files
                .data
                .truncate(start)
                .map_err(store::io_err(&data_path))?;
            read = backup_object(&server, "", &path, &mut files.data, &data_path, progress);
        }
        match read {
            Ok((props, length, blake3)) => {
                files
                    .cat
                    .push(&Entry {
                        path,
                        props,
                        flags: 0,
                        data: DataRef {
                            image: 0,
                            stream,
                            offset: start,
                            length,
                            blake3,
                        },
                        seen: read_stamp(entry, &props),
                    })
                    .map_err(store::io_err(&cat_path))?;
                objects += 1;
            }
            Err(ObjError::Fatal(e)) => return Err(e),
            Err(ObjError::Object(e)) => {
                if e.code == Some(AAPI_ECANCELLED) {
                    return Err(e);
                }
                // Cut the partial object out of the stream, so that it holds only whole objects.
                files
                    .data
                    .truncate(start)
                    .map_err(store::io_err(&data_path))?;
                failures.push(ObjectFailure::new(&path, e.message));
            }
        }
        if last_report.elapsed() >= Duration::from_millis(100) {
            progress.progress(files.data.offset(), objects);
            last_report = Instant::now();
        }
    }
    server.close()?;
    let bytes = files.data.offset();
    let data = files.data.finish().map_err(store::io_err(&data_path))?;
    data.sync_all().map_err(store::io_err(&data_path))?;
    let cat = files.cat.finish().map_err(store::io_err(&cat_path))?;
    cat.sync_all().map_err(store::io_err(&cat_path))?;
    let done = StreamDone {
        stream,
        host: host.clone(),
        objects,
        bytes,
        failures,
    };
    store::write_atomic(
        &done_path,
        &serde_json::to_vec_pretty(&done).expect("serialisable"),
    )?;
    progress.progress(bytes, objects);
    Ok(done)
}

/// The stamp a workload entry carries, as the catalog keeps it.
fn seen(entry: &workload::WorkloadEntry) -> Option<SeenStamp> {
    let time = |t: aapi_time_t| store::Time {
        sec: t.sec,
        nsec: t.nsec,
    };
    entry.stamp.map(|t| SeenStamp {
        mtime: time(t.mtime),
        ctime: time(t.ctime),
        id: t.id,
    })
}

/// The stamp to record for an object read in full: the discovery's, unless the object read has
/// another modification time (another object took the path between discovery and the read, a
/// swap during a backup without a snapshot): then that of the object read, with no id, which no
/// later discovery of the other object matches.
fn read_stamp(entry: &workload::WorkloadEntry, props: &Props) -> Option<SeenStamp> {
    let seen = seen(entry)?;
    if props.valid & AAPI_PROP_MTIME != 0 && props.mtime != seen.mtime {
        return Some(SeenStamp {
            mtime: props.mtime,
            ctime: props.ctime,
            id: 0,
        });
    }
    Some(seen)
}

/// What the base image recorded of an object: enough to tell that the object a workload lists
/// as unchanged is the one the base holds at that path.
struct BaseObject {
    obj_type: u32,
    size: u64,
    /// The stamp the base's discovery saw, when its workload file gave one.
    seen: Option<SeenStamp>,
}

impl BaseObject {
    /// Whether `entry` (flagged unchanged) can be the object the base recorded: same type, for
    /// a file the size its hint gives, and the stamp (times and id) the entry carries, if any.
    /// An older object moved to the path by a directory rename keeps its own times, so the
    /// plugin lists it as unchanged; the base's object at that path may be another one.
    fn same_as(&self, entry: &workload::WorkloadEntry) -> bool {
        let same_stamp = match (self.seen, seen(entry)) {
            (Some(base), Some(now)) => base == now,
            // Without a stamp on either side, type and size are all there is to compare.
            _ => true,
        };
        let obj_type = if entry.flags & AAPI_WKLD_DIR != 0 {
            AAPI_OBJ_DIR
        } else if entry.flags & AAPI_WKLD_SYMLINK != 0 {
            AAPI_OBJ_SYMLINK
        } else {
            AAPI_OBJ_FILE
        };
        same_stamp
            && obj_type == self.obj_type
            && (obj_type != AAPI_OBJ_FILE || entry.size_hint == self.size)
    }
}

/// The objects the base image of `job` holds and can restore, by path, when the workload lists
/// unchanged objects. One it does not hold (a directory renamed since the base moves its whole
/// subtree to paths the base never had, its objects' own times unchanged), holds as another
/// type or size, or holds with data in an image that is gone or damaged, is backed up in full
/// rather than lost. Empty when there is no usable base: then every object is backed up.
fn base_objects(store: &Store, job: &JobDef, wk: &WorkloadFile) -> HashMap<Vec<u8>, BaseObject> {
    if !wk
        .entries
        .iter()
        .any(|e| e.flags & AAPI_WKLD_UNCHANGED != 0)
    {
        return HashMap::new();
    }
    let Some(catalog) = job
        .base
        .as_deref()
        .and_then(|b| store.manifest(b).ok())
        .and_then(|m| store.catalog(&m).ok())
    else {
        return HashMap::new();
    };
    let unusable = unusable_images(store, &catalog);
    catalog
        .entries
        .into_iter()
        .filter(|e| !needs_unusable(&e.data, &unusable))
        .map(|e| {
            let b = BaseObject {
                obj_type: e.props.obj_type,
                size: e.props.size,
                seen: e.seen,
            };
            (e.path, b)
        })
        .collect()
}

enum ObjError {
    /// The object failed; the job goes on.
    Object(TaskError),
    /// The stream itself failed (e.g. the image store is full); the job stops.
    Fatal(TaskError),
}

fn backup_object(
    server: &crate::client::Server,
    snapid: &str,
    path: &[u8],
    data: &mut StreamWriter,
    data_path: &Path,
    progress: &dyn Progress,
) -> Result<(Props, u64, [u8; 32]), ObjError> {
    let name = escape_path(path);
    // The failure is recorded with the object's path beside it: the message does not repeat it.
    let obj_err = |e: PluginError| {
        ObjError::Object(TaskError {
            message: e.to_string(),
            code: e.code(),
        })
    };
    let fatal = |e: std::io::Error| ObjError::Fatal(store::io_err(data_path)(e).into());
    let snap = server.snappath(snapid, path).map_err(obj_err)?;
    let mut obj = server.open_object(&snap).map_err(obj_err)?;
    let props = Props::from_abi(&obj.prop().map_err(obj_err)?);
    let mut hash = blake3::Hasher::new();
    let mut length = 0u64;
    loop {
        check_cancel(progress, || format!("while reading {name}")).map_err(ObjError::Object)?;
        let space = data.space().map_err(fatal)?;
        let n = obj.read(space).map_err(obj_err)?;
        if n == 0 {
            break;
        }
        hash.update(&space[..n]);
        data.commit(n);
        length += n as u64;
    }
    obj.close().map_err(obj_err)?;
    Ok((props, length, hash.finalize().into()))
}

/// What to restore and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreTask {
    /// Store directory.
    pub store: PathBuf,
    /// Image id (its catalog is the complete object list at its point in time).
    pub image: String,
    /// Plugin library.
    pub plugin: PathBuf,
    /// Workload type to claim.
    pub workload_type: String,
    /// Workload server for `aapi_open_server`.
    pub server: String,
    /// Backup host the restore runs on.
    pub host: String,
    /// Paths to restore, as raw bytes (each with its subtree); empty for everything.
    pub paths: Vec<Vec<u8>>,
    /// Alternate root prefixed to every path, or `None` for the original location.
    pub alt_root: Option<PathBuf>,
    /// Replace existing objects (`AAPI_CREATE_OVERWRITE`).
    pub overwrite: bool,
    /// Session properties.
    pub properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds.
    pub call_budget_ms: u32,
    /// Credentials file, if any.
    pub credentials: Option<PathBuf>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreReport {
    /// Objects restored.
    pub objects: u64,
    /// Data bytes written.
    pub bytes: u64,
    /// Bytes read from the image store (catalog and stream ranges): with direct access this stays
    /// close to the selected objects' size.
    pub store_bytes_read: u64,
}

/// Paths for a message: quoted, escaped as [`escape_path`] does, comma-separated.
pub fn show_paths(paths: &[Vec<u8>]) -> String {
    let shown: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}\"", escape_path(p)))
        .collect();
    format!("[{}]", shown.join(", "))
}

/// `path` spelled as catalogs hold paths: no empty or `.` component, no trailing `/`
/// (`/data//src/./` is `/data/src`), as a plugin's discovery writes the selection `--select`
/// gave. `..` stays: what it names depends on symbolic links at backup time.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    if path.starts_with(b"/") {
        out.push(b'/');
    }
    for part in path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if !out.is_empty() && !out.ends_with(b"/") {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.is_empty() { path.to_vec() } else { out }
}

/// The indices of catalog entries selected by `paths` (an entry matches a path when it is that
/// path or lies below it; paths compare as [`normalize`] spells them); all entries when
/// `paths` is empty.
pub fn select(catalog: &Catalog, paths: &[Vec<u8>]) -> Vec<usize> {
    let wanted = selector(paths);
    catalog
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| wanted(&e.path))
        .map(|(i, _)| i)
        .collect()
}

/// Whether a path is one of `paths` or below one (every path, when `paths` is empty).
fn selector(paths: &[Vec<u8>]) -> impl Fn(&[u8]) -> bool {
    let wanted: Vec<Vec<u8>> = paths.iter().map(|p| normalize(p)).collect();
    move |path: &[u8]| {
        wanted.is_empty()
            || wanted.iter().any(|w| {
                path == w.as_slice()
                    || (path.starts_with(w)
                        && (w.ends_with(b"/") || path.get(w.len()) == Some(&b'/')))
            })
    }
}

/// The objects `paths` select (every one, when empty) that the backup of `manifest`'s image
/// could not read: a restore of the partial image cannot bring them back.
pub fn not_backed_up<'a>(
    manifest: &'a store::Manifest,
    paths: &[Vec<u8>],
) -> Vec<&'a ObjectFailure> {
    let wanted = selector(paths);
    manifest
        .failures
        .iter()
        .filter(|f| wanted(&f.path_bytes()))
        .collect()
}

/// The restore path of `path` under `alt_root` (the root is prefixed, as PSF does:
/// `/c1/c2/f` under `/mnt/alt` is `/mnt/alt/c1/c2/f`).
pub fn target_path(alt_root: Option<&Path>, path: &[u8]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    match alt_root {
        None => path.to_vec(),
        Some(root) => {
            let mut t = root.as_os_str().as_bytes().to_vec();
            while t.len() > 1 && t.ends_with(b"/") {
                t.pop();
            }
            if !path.starts_with(b"/") {
                t.push(b'/');
            }
            t.extend_from_slice(path);
            t
        }
    }
}

/// Load a complete image's manifest and catalog. The catalog alone locates every object, also
/// those whose data lies in earlier images; whether those images can still be read from is
/// [`unusable_images`]' question.
pub fn load_image(store: &Store, image: &str) -> Result<(store::Manifest, Catalog), TaskError> {
    let manifest = store.manifest(image)?;
    let catalog = store.catalog(&manifest)?;
    Ok((manifest, catalog))
}

/// For each image of `catalog`'s image table (the images its records take data from), why it
/// cannot be read from: it is gone from the store, incomplete, or its manifest cannot be read.
/// `None` for an image that can (always the catalog's own, index 0).
pub fn unusable_images(store: &Store, catalog: &Catalog) -> Vec<Option<String>> {
    catalog
        .images
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i == 0 {
                return None;
            }
            match store.manifest(id) {
                Ok(_) => None,
                Err(_) if !store.image_dir(id).exists() => {
                    Some("it is no longer in the store".to_string())
                }
                Err(e) => Some(e.to_string()),
            }
        })
        .collect()
}

/// Whether the object of `data` needs bytes from an image that cannot be used (`unusable`, from
/// [`unusable_images`]). An object without data (a directory, an empty file) needs none.
pub fn needs_unusable(data: &DataRef, unusable: &[Option<String>]) -> bool {
    data.length > 0
        && unusable
            .get(data.image as usize)
            .is_some_and(Option::is_some)
}

/// Refuse a restore of the `selected` catalog entries of `manifest`'s image when some of them
/// take their data from an image that cannot be used (`unusable`, from [`unusable_images`]): the
/// message says how many, where their data lies and why it cannot be read, and what can still be
/// restored. Objects stored in the image itself, or in earlier images that are fine, pass.
pub fn check_reachable(
    manifest: &store::Manifest,
    catalog: &Catalog,
    selected: &[usize],
    unusable: &[Option<String>],
) -> Result<(), TaskError> {
    let lost = |i: &usize| needs_unusable(&catalog.entries[*i].data, unusable);
    let Some(&first) = selected.iter().find(|i| lost(i)) else {
        return Ok(());
    };
    let count = selected.iter().filter(|i| lost(i)).count();
    let image = &manifest.image;
    let mut dep_idx: Vec<usize> = selected
        .iter()
        .filter(|i| lost(i))
        .map(|&i| catalog.entries[i].data.image as usize)
        .collect();
    dep_idx.sort_unstable();
    dep_idx.dedup();
    let deps: Vec<String> = dep_idx
        .iter()
        .map(|&d| {
            format!(
                "image {}, which is not usable ({})",
                catalog.images[d],
                unusable[d].as_deref().unwrap_or_default()
            )
        })
        .collect();
    let reachable = (0..catalog.entries.len()).filter(|i| !lost(i)).count();
    let next = if reachable == 0 {
        format!(
            "No object of image {image} can be restored: restore from another complete image of policy {} (`{} list`)",
            manifest.policy,
            crate::ui::command()
        )
    } else {
        format!(
            "The image's objects whose data lies elsewhere ({reachable} of {}) can still be restored: `{cmd} verify {image}` names the ones that cannot, restore the others with `{cmd} restore {image} --path ...`",
            catalog.entries.len(),
            cmd = crate::ui::command()
        )
    };
    let first = escape_path(&catalog.entries[first].path);
    let what = if count == 1 {
        format!("\"{first}\" of image {image}: its data lies")
    } else {
        format!(
            "{count} of the {} selected objects of image {image} (the first: \"{first}\"): their data lies",
            selected.len()
        )
    };
    Err(task_err(format!(
        "cannot restore {what} in {}; nothing was restored. {next}",
        deps.join(" and in ")
    )))
}

/// Restore job: one session with operation RESTORE on one backup host. restore_preprocess sees
/// the totals; each object is created under its target path, written from its stream range while
/// its digest is checked, flushed, closed, checked with `aapi_get_object_prop_byname` and given
/// its times (directories after their contents); then restore_postprocess with the final status,
/// so a failed restore lets the plugin remove what it created.
pub fn restore(
    plugin: &Plugin,
    task: &RestoreTask,
    progress: &dyn Progress,
) -> Result<RestoreReport, TaskError> {
    let store = Store::open(&task.store)?;
    let (manifest, catalog) = load_image(&store, &task.image)?;
    let selected = select(&catalog, &task.paths);
    if selected.is_empty() {
        return Err(task_err(format!(
            "nothing in image {} matches {} (see `{} show {} --objects`)",
            task.image,
            show_paths(&task.paths),
            crate::ui::command(),
            task.image
        )));
    }
    check_reachable(
        &manifest,
        &catalog,
        &selected,
        &unusable_images(&store, &catalog),
    )?;
    let total: u64 = selected
        .iter()
        .map(|&i| catalog.entries[i].data.length)
        .sum();
    let def = SessionDef {
        operation: AAPI_OP_RESTORE,
        schedule: AAPI_SCHED_FULL,
        job_id: format!("restore-{}", task.image),
        backup_host: task.host.clone(),
        snapid: String::new(),
        properties: task.properties.clone(),
        call_budget_ms: task.call_budget_ms,
        hooks: None,
    };
    let server = plugin.open_server(&task.server, def)?;
    let root = task
        .alt_root
        .as_deref()
        .map(|p| {
            use std::os::unix::ffi::OsStrExt;
            p.as_os_str().as_bytes().to_vec()
        })
        .unwrap_or_default();
    server.restore_preprocess(&root, total, selected.len() as u64)?;
    let mut report = RestoreReport::default();
    let result = restore_objects(
        &server,
        &store,
        &catalog,
        &selected,
        task,
        progress,
        &mut report,
    );
    let status = match &result {
        Ok(()) => AAPI_EOK,
        Err(e) => e.code.filter(|&c| c != AAPI_EOK).unwrap_or(AAPI_EIO),
    };
    let post = server.restore_postprocess(status);
    result?;
    post?;
    server.close()?;
    report.store_bytes_read = store.bytes_read();
    progress.progress(report.bytes, report.objects);
    Ok(report)
}

fn restore_objects(
    server: &crate::client::Server,
    store: &Store,
    catalog: &Catalog,
    selected: &[usize],
    task: &RestoreTask,
    progress: &dyn Progress,
    report: &mut RestoreReport,
) -> Result<(), TaskError> {
    let flags = if task.overwrite {
        AAPI_CREATE_OVERWRITE
    } else {
        0
    };
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut dirs = Vec::new();
    let mut last_report = Instant::now();
    for &i in selected {
        let e = &catalog.entries[i];
        let name = escape_path(&e.path);
        let in_obj = |err: PluginError| TaskError {
            message: match err.code() {
                Some(AAPI_EEXIST) if !task.overwrite => format!(
                    "{name}: {err}; pass --overwrite to replace existing objects, or restore under --alt-root"
                ),
                _ => format!("{name}: {err}"),
            },
            code: err.code(),
        };
        check_cancel(progress, || format!("before {name}"))?;
        let target = target_path(task.alt_root.as_deref(), &e.path);
        let mut obj = server
            .create_object(&target, &e.props.to_abi(), flags)
            .map_err(in_obj)?;
        let mut reader = store.open_data(catalog, &e.data)?;
        let mut hash = blake3::Hasher::new();
        let mut got = 0u64;
        loop {
            if let Err(err) = check_cancel(progress, || format!("while writing {name}")) {
                // Not closed: restore_postprocess with the cancel removes it.
                obj.abandon();
                return Err(err);
            }
            let n = reader.read(&mut buf).map_err(|err| {
                task_err(format!(
                    "{name}: reading {}: {err}",
                    reader.path().display()
                ))
            })?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            obj.write(&buf[..n]).map_err(in_obj)?;
            got += n as u64;
            report.bytes += n as u64;
            if last_report.elapsed() >= Duration::from_millis(100) {
                progress.progress(report.bytes, report.objects);
                last_report = Instant::now();
            }
        }
        let digest: [u8; 32] = hash.finalize().into();
        if got != e.data.length || digest != e.data.blake3 {
            // Do not close: closing would make the damaged object visible. restore_postprocess
            // with the failure removes it with everything else this restore created.
            obj.abandon();
            let what = if got != e.data.length {
                format!("its stream ends after {got} of {} bytes", e.data.length)
            } else {
                "its bytes do not match the digest recorded at backup".into()
            };
            return Err(TaskError {
                message: format!(
                    "{name}: {what}: the image is damaged; `{} verify {}` lists what is still restorable",
                    crate::ui::command(),
                    task.image
                ),
                code: Some(AAPI_EIO),
            });
        }
        obj.flush().map_err(in_obj)?;
        obj.close().map_err(in_obj)?;
        let now = server.prop_byname(&target).map_err(in_obj)?;
        if now.obj_type != e.props.obj_type
            || (e.props.obj_type == AAPI_OBJ_FILE && now.size != e.data.length)
        {
            return Err(TaskError {
                message: format!(
                    "{name}: restored object has type {} and size {}, expected type {} and size {}",
                    now.obj_type, now.size, e.props.obj_type, e.data.length
                ),
                code: Some(AAPI_EIO),
            });
        }
        if e.props.obj_type == AAPI_OBJ_DIR {
            dirs.push((target, e.props));
        } else {
            set_times(server, &target, &e.props).map_err(in_obj)?;
        }
        report.objects += 1;
    }
    for (target, props) in dirs.iter().rev() {
        set_times(server, target, props).map_err(|err| TaskError {
            message: format!("{}: {err}", escape_path(target)),
            code: err.code(),
        })?;
    }
    Ok(())
}

fn set_times(server: &crate::client::Server, target: &[u8], p: &Props) -> Result<(), PluginError> {
    let t = |t: store::Time| aapi_time_t {
        sec: t.sec,
        nsec: t.nsec,
        reserved: 0,
    };
    let atime = (p.valid & AAPI_PROP_ATIME != 0).then(|| t(p.atime));
    let mtime = (p.valid & AAPI_PROP_MTIME != 0).then(|| t(p.mtime));
    if atime.is_none() && mtime.is_none() {
        return Ok(());
    }
    server.set_utimes(target, atime, mtime)
}
