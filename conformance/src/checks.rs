//! The registry of checks: every check has an ID, a group, the contract clause it enforces, the
//! clause's level, and the checks it needs to have passed first.

use serde::Serialize;

/// Level of a contract clause (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// A failed check fails the run.
    Must,
    /// A failed check is a warning.
    Should,
}

impl Level {
    /// `MUST` or `SHOULD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

/// The plugin clauses of docs/contract.md that checks enforce, with their levels. A test keeps
/// this table equal to the contract.
pub const CLAUSES: &[(&str, Level)] = &[
    ("LOAD-1", Level::Must),
    ("LOAD-2", Level::Must),
    ("LOAD-3", Level::Must),
    ("LOAD-4", Level::Must),
    ("LOAD-5", Level::Must),
    ("LOAD-6", Level::Must),
    ("ABI-1", Level::Must),
    ("ABI-2", Level::Must),
    ("ABI-3", Level::Must),
    ("ABI-4", Level::Must),
    ("ABI-5", Level::Must),
    ("LIFE-1", Level::Must),
    ("LIFE-2", Level::Must),
    ("LIFE-3", Level::Must),
    ("LIFE-4", Level::Must),
    ("LIFE-5", Level::Must),
    ("LIFE-6", Level::Must),
    ("LIFE-7", Level::Must),
    ("LIFE-8", Level::Must),
    ("RC-1", Level::Must),
    ("RC-2", Level::Should),
    ("RC-3", Level::Must),
    ("RC-4", Level::Must),
    ("RC-5", Level::Must),
    ("RC-6", Level::Must),
    ("RC-7", Level::Must),
    ("RC-8", Level::Must),
    ("RC-9", Level::Must),
    ("RC-10", Level::Should),
    ("RC-11", Level::Must),
    ("OBJ-1", Level::Must),
    ("OBJ-2", Level::Must),
    ("OBJ-3", Level::Must),
    ("OBJ-4", Level::Must),
    ("OBJ-5", Level::Must),
    ("OBJ-6", Level::Must),
    ("OBJ-7", Level::Must),
    ("OBJ-8", Level::Must),
    ("DISC-1", Level::Must),
    ("DISC-2", Level::Must),
    ("DISC-3", Level::Must),
    ("DISC-4", Level::Must),
    ("DISC-5", Level::Must),
    ("DISC-6", Level::Must),
    ("DISC-7", Level::Must),
    ("DISC-8", Level::Must),
    ("DISC-9", Level::Should),
    ("RST-1", Level::Must),
    ("RST-2", Level::Must),
    ("RST-3", Level::Must),
    ("RST-4", Level::Must),
    ("RST-5", Level::Must),
    ("RST-6", Level::Must),
    ("RST-7", Level::Should),
    ("RST-10", Level::Must),
    ("RST-11", Level::Must),
    ("TIME-1", Level::Must),
    ("TIME-2", Level::Should),
    ("TIME-3", Level::Must),
    ("TIME-4", Level::Must),
    ("THR-2", Level::Must),
    ("THR-3", Level::Must),
    ("THR-4", Level::Must),
    ("MEM-2", Level::Must),
    ("MEM-3", Level::Must),
    ("MEM-4", Level::Must),
    ("SEC-1", Level::Must),
    ("SEC-2", Level::Must),
    ("SEC-3", Level::Should),
    ("RES-1", Level::Must),
    ("RES-2", Level::Must),
    ("RES-3", Level::Should),
];

/// The level of `clause` (panics for a clause not in [`CLAUSES`]: a registry bug).
pub fn clause_level(clause: &str) -> Level {
    CLAUSES
        .iter()
        .find(|(c, _)| *c == clause)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("clause {clause} is not in the clause table"))
}

/// Check group, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Loading, identity, handshake.
    Load,
    /// ABI versions and struct sizes.
    Abi,
    /// Call order and the legal sequences.
    Lifecycle,
    /// Return codes and arguments.
    Rc,
    /// Object semantics.
    Obj,
    /// Discovery and workload files.
    Disc,
    /// Restore semantics.
    Rst,
    /// Backup, restore and backup again.
    Data,
    /// Budgets, keepalives, cancellation.
    Timing,
    /// Concurrency and callbacks.
    Concurrency,
    /// Memory safety at the boundary.
    Mem,
    /// Secrets and output.
    Sec,
    /// Descriptors and threads.
    Resources,
}

impl Group {
    /// Lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Load => "load",
            Group::Abi => "abi",
            Group::Lifecycle => "lifecycle",
            Group::Rc => "rc",
            Group::Obj => "obj",
            Group::Disc => "disc",
            Group::Rst => "rst",
            Group::Data => "data",
            Group::Timing => "timing",
            Group::Concurrency => "concurrency",
            Group::Mem => "mem",
            Group::Sec => "sec",
            Group::Resources => "resources",
        }
    }
}

/// What a check needs before its result means anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Needs {
    /// The plugin loads and initialises (the load gate).
    Plugin,
    /// ... and claims the profile's workload type (`load.claim`).
    Claim,
    /// ... and a discovery produced objects to work on.
    Objects,
    /// ... and a backup child job read them.
    Backup,
    /// ... and a restore session created objects (the plugin declares `AAPI_CAP_RESTORE`).
    Restore,
    /// ... and both backup and restore work.
    RoundTrip,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckDef {
    /// Stable ID, e.g. `rc.null.aapi_open_object`.
    pub id: String,
    /// Group.
    pub group: Group,
    /// Contract clause enforced.
    pub clause: &'static str,
    /// Level of the clause.
    pub level: Level,
    /// What the plugin is expected to do.
    pub expectation: String,
    /// What it needs first; `None` for the load gate itself.
    pub needs: Option<Needs>,
}

impl CheckDef {
    /// The checks that must pass before this one can be judged, in the order they are looked
    /// at: the gate checks before it (for a gate check), the gate (for [`Needs::Plugin`]), or
    /// the check of the step it needs. Those checks have needs of their own, so a check is
    /// blocked by the first step of the chain that did not pass.
    pub fn needed(&self) -> Vec<&'static str> {
        match self.needs {
            None => GATE
                .iter()
                .position(|g| *g == self.id)
                .map(|i| GATE[..i].to_vec())
                .unwrap_or_default(),
            Some(Needs::Plugin) => GATE.to_vec(),
            Some(Needs::Claim) => vec!["load.claim"],
            Some(Needs::Objects) => vec!["life.discovery"],
            Some(Needs::Backup) => vec!["life.backup"],
            Some(Needs::Restore) => vec!["life.restore"],
            Some(Needs::RoundTrip) => vec!["life.backup", "life.restore"],
        }
    }
}

/// Checks that must pass before anything else runs.
pub const GATE: &[&str] = &[
    "load.marker",
    "load.abi-version",
    "load.symbols",
    "load.init",
    "load.info-strings",
    "load.info-abi",
    "load.terminate",
];

/// Functions taking pointer parameters that may not be NULL (one `rc.null.*` check each).
pub const NULL_FUNCTIONS: &[&str] = &[
    "aapi_pgn_init",
    "aapi_pgn_claim",
    "aapi_open_server",
    "aapi_get_server_prop",
    "aapi_discovery",
    "aapi_postprocess",
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_create_object",
    "aapi_delete_object",
    "aapi_read_object",
    "aapi_write_object",
    "aapi_get_object_prop",
    "aapi_get_object_prop_byname",
    "aapi_set_object_utimes",
    "aapi_restore_preprocess",
    "aapi_get_last_error",
];

/// Functions taking a handle (one `rc.bad-handle.*` check each).
pub const HANDLE_FUNCTIONS: &[&str] = &[
    "aapi_close_server",
    "aapi_get_server_prop",
    "aapi_discovery",
    "aapi_postprocess",
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_create_object",
    "aapi_delete_object",
    "aapi_read_object",
    "aapi_write_object",
    "aapi_flush",
    "aapi_close_object",
    "aapi_get_object_prop",
    "aapi_get_object_prop_byname",
    "aapi_set_object_utimes",
    "aapi_restore_preprocess",
    "aapi_restore_postprocess",
];

/// Functions with out-parameters (one `rc.out-params.*` check each).
pub const OUT_PARAM_FUNCTIONS: &[&str] = &[
    "aapi_pgn_init",
    "aapi_open_server",
    "aapi_get_server_prop",
    "aapi_discovery",
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_create_object",
    "aapi_read_object",
    "aapi_get_object_prop",
    "aapi_get_object_prop_byname",
];

/// Whether a function's handle argument is an object handle (else a server handle).
pub fn takes_object_handle(function: &str) -> bool {
    matches!(
        function,
        "aapi_read_object"
            | "aapi_write_object"
            | "aapi_flush"
            | "aapi_close_object"
            | "aapi_get_object_prop"
    )
}

/// Whether a function is only legal in a restore session (its checks need `AAPI_CAP_RESTORE`).
pub fn is_restore_function(function: &str) -> bool {
    matches!(
        function,
        "aapi_create_object"
            | "aapi_delete_object"
            | "aapi_write_object"
            | "aapi_flush"
            | "aapi_set_object_utimes"
            | "aapi_restore_preprocess"
            | "aapi_restore_postprocess"
    )
}

fn def(id: &str, group: Group, clause: &'static str, needs: Option<Needs>, exp: &str) -> CheckDef {
    CheckDef {
        id: id.to_string(),
        group,
        clause,
        level: clause_level(clause),
        expectation: exp.to_string(),
        needs,
    }
}

/// Every check, in report order.
pub fn all() -> Vec<CheckDef> {
    use Group::*;
    use Needs::*;
    let mut v = vec![
        def(
            "load.marker",
            Load,
            "LOAD-2",
            None,
            "the data symbol aapi_abi_marker is exported with magic \"AAPIABI\\0\" and marker_size 16",
        ),
        def(
            "load.abi-version",
            Load,
            "ABI-1",
            None,
            "the marker's ABI major equals the framework's and its minor is not newer",
        ),
        def(
            "load.symbols",
            Load,
            "LOAD-1",
            None,
            "all 22 aapi_* entry points are exported",
        ),
        def(
            "load.init",
            Load,
            "LIFE-8",
            None,
            "aapi_pgn_init with a valid aapi_host_info_t returns AAPI_EOK and the framework accepts the plugin info",
        ),
        def(
            "load.info-strings",
            Load,
            "LOAD-5",
            None,
            "name 1-63 and version 1-31 bytes of printable ASCII, vendor 1-127 bytes of UTF-8, workload_types a comma-separated list of [a-z0-9_.-] tokens",
        ),
        def(
            "load.info-abi",
            Load,
            "ABI-3",
            None,
            "aapi_plugin_info_t abi_major/abi_minor equal the marker's",
        ),
        def(
            "load.terminate",
            Load,
            "LIFE-7",
            None,
            "aapi_terminate after a successful aapi_pgn_init returns AAPI_EOK",
        ),
        def(
            "load.claim",
            Load,
            "LOAD-6",
            Some(Plugin),
            "workload_types lists the profile's type and aapi_pgn_claim returns AAPI_EOK for every listed type",
        ),
        def(
            "load.claim-unlisted",
            Load,
            "LOAD-6",
            Some(Plugin),
            "aapi_pgn_claim returns AAPI_ENOTCLAIMED for a type the plugin does not list",
        ),
        def(
            "load.undefined-symbols",
            Load,
            "LOAD-3",
            Some(Plugin),
            "the library needs only system libraries and every undefined symbol resolves (dlopen with RTLD_NOW)",
        ),
        def(
            "load.no-side-effects",
            Load,
            "LOAD-4",
            Some(Plugin),
            "loading the library starts no thread, prints nothing and creates no file in the working or temporary directory",
        ),
        def(
            "load.info-static",
            Load,
            "MEM-2",
            Some(Plugin),
            "the plugin info strings stay valid and unchanged after aapi_terminate and a new aapi_pgn_init",
        ),
        def(
            "abi.init-major",
            Abi,
            "ABI-2",
            Some(Plugin),
            "aapi_pgn_init with another host abi_major returns AAPI_EABI and writes nothing",
        ),
        def(
            "abi.struct-size",
            Abi,
            "ABI-4",
            Some(Objects),
            "every struct with a struct_size smaller than its ABI 1.0 size gives AAPI_EABI; one 64 bytes larger (a newer 1.x framework's) is accepted",
        ),
        def(
            "abi.struct-bounds",
            Abi,
            "ABI-5",
            Some(Backup),
            "out-structs are written no further than struct_size and never past the plugin's own size",
        ),
        def(
            "abi.struct-read",
            Abi,
            "ABI-5",
            Some(Objects),
            "the structs passed in (host info, session, restore info, object properties) are read no further than struct_size",
        ),
        def(
            "life.before-init",
            Lifecycle,
            "LIFE-1",
            Some(Plugin),
            "before aapi_pgn_init, every entry point but init, terminate and get_last_error returns AAPI_ESEQUENCE",
        ),
        def(
            "life.after-terminate",
            Lifecycle,
            "LIFE-1",
            Some(Objects),
            "after aapi_terminate, every entry point but init, terminate and get_last_error returns AAPI_ESEQUENCE",
        ),
        def(
            "life.double-init",
            Lifecycle,
            "LIFE-2",
            Some(Claim),
            "a second aapi_pgn_init returns AAPI_ESEQUENCE and writes nothing; init after terminate succeeds",
        ),
        def(
            "life.open-before-claim",
            Lifecycle,
            "LIFE-3",
            Some(Objects),
            "aapi_open_server before a successful claim in the current cycle returns AAPI_ESEQUENCE",
        ),
        def(
            "life.operation-discovery",
            Lifecycle,
            "LIFE-4",
            Some(Objects),
            "calls a DISCOVERY session does not allow return AAPI_ESEQUENCE",
        ),
        def(
            "life.operation-backup",
            Lifecycle,
            "LIFE-4",
            Some(Objects),
            "calls a BACKUP session does not allow return AAPI_ESEQUENCE",
        ),
        def(
            "life.operation-postprocess",
            Lifecycle,
            "LIFE-4",
            Some(Objects),
            "calls a POSTPROCESS session does not allow return AAPI_ESEQUENCE",
        ),
        def(
            "life.operation-restore",
            Lifecycle,
            "LIFE-4",
            Some(Restore),
            "restore object calls before aapi_restore_preprocess or after aapi_restore_postprocess, and backup calls, return AAPI_ESEQUENCE",
        ),
        def(
            "life.once-per-session",
            Lifecycle,
            "LIFE-4",
            Some(Objects),
            "a second discovery, postprocess, restore_preprocess or restore_postprocess on one session returns AAPI_ESEQUENCE",
        ),
        def(
            "life.object-mode",
            Lifecycle,
            "LIFE-5",
            Some(RoundTrip),
            "read on a created object and write/flush on an opened object return AAPI_ESEQUENCE",
        ),
        def(
            "life.close-server",
            Lifecycle,
            "LIFE-6",
            Some(Backup),
            "aapi_close_server closes the objects still open; the server and object handles then give AAPI_EBADHANDLE, and so does a second close",
        ),
        def(
            "life.terminate",
            Lifecycle,
            "LIFE-7",
            Some(Backup),
            "aapi_terminate closes open servers and objects; again, or before init, it returns AAPI_EOK",
        ),
        def(
            "life.discovery",
            Lifecycle,
            "LIFE-8",
            Some(Claim),
            "a discovery session (open, get_server_prop, discovery, close) succeeds",
        ),
        def(
            "life.backup",
            Lifecycle,
            "LIFE-8",
            Some(Objects),
            "a backup child job over every object of each workload file succeeds (one process per backup host, in parallel)",
        ),
        def(
            "life.postprocess",
            Lifecycle,
            "LIFE-8",
            Some(Objects),
            "a postprocess session succeeds",
        ),
        def(
            "life.restore",
            Lifecycle,
            "LIFE-8",
            Some(Backup),
            "a restore session of every object backed up, under an alternate root, succeeds",
        ),
        def(
            "rc.codes",
            Rc,
            "RC-1",
            Some(Plugin),
            "every call returns AAPI_EOK or a code defined by the ABI",
        ),
        def(
            "rc.documented-codes",
            Rc,
            "RC-2",
            Some(Plugin),
            "every call returns only codes listed for its function",
        ),
        def(
            "rc.empty-and-flags",
            Rc,
            "RC-3",
            Some(Objects),
            "empty strings where a value is required, unknown flag bits and out-of-range enumeration values give AAPI_EINVAL",
        ),
        def(
            "rc.buffer.snappath",
            Rc,
            "RC-6",
            Some(Objects),
            "aapi_get_snappath_from_realpath with a too-small buffer gives AAPI_EBUFSIZE with the size needed and writes no byte; NULL with size 0 is a size query",
        ),
        def(
            "rc.buffer.last-error",
            Rc,
            "RC-6",
            Some(Objects),
            "aapi_get_last_error follows the same buffer rules",
        ),
        def(
            "rc.unknown-path",
            Rc,
            "RC-7",
            Some(Objects),
            "a path that names no object gives AAPI_ENOENT (open, byname, delete, utimes, discovery)",
        ),
        def(
            "rc.schedules",
            Rc,
            "RC-8",
            Some(Objects),
            "discovery succeeds exactly for the schedules aapi_get_server_prop declares; others and unknown values give AAPI_ESCHED_NOT_SUPPORTED and write nothing",
        ),
        def(
            "rc.last-error",
            Rc,
            "RC-9",
            Some(Objects),
            "a failing call sets a non-empty message; aapi_get_last_error is per thread, \"\" on a thread without a failure, and not cleared by a successful call",
        ),
        def(
            "rc.last-error-message",
            Rc,
            "RC-10",
            Some(Objects),
            "a failing call on a path leaves a message naming that path",
        ),
        def(
            "rc.failed-create",
            Rc,
            "RC-11",
            Some(Restore),
            "a failing aapi_create_object issues no handle and leaves no object visible",
        ),
        def(
            "obj.read-protocol",
            Obj,
            "OBJ-1",
            Some(Backup),
            "reads give 1..buf_size bytes while data remains, then 0 on every later call; buf_size 0 is AAPI_EINVAL",
        ),
        def(
            "obj.size",
            Obj,
            "OBJ-2",
            Some(Backup),
            "the bytes read are the object's data and their count equals the size property",
        ),
        def(
            "obj.dir-symlink",
            Obj,
            "OBJ-3",
            Some(Backup),
            "directories read no data; a symbolic link's data is its target",
        ),
        def(
            "obj.changed",
            Obj,
            "OBJ-4",
            Some(Backup),
            "an object changed while read gives AAPI_ECHANGED; a vanished one gives AAPI_ENOENT at open (files workload)",
        ),
        def(
            "obj.write",
            Obj,
            "OBJ-5",
            Some(RoundTrip),
            "aapi_write_object with len 0 succeeds and writes nothing; written bytes come back whole",
        ),
        def(
            "obj.invisible-until-close",
            Obj,
            "OBJ-6",
            Some(Restore),
            "a created object is not visible under its path before aapi_close_object",
        ),
        def(
            "obj.prop-valid",
            Obj,
            "OBJ-7",
            Some(Backup),
            "valid has only known bits and obj_type is set; for files the fields match lstat",
        ),
        def(
            "obj.close-invalidates",
            Obj,
            "OBJ-8",
            Some(Backup),
            "after aapi_close_object the handle gives AAPI_EBADHANDLE, also to a second close",
        ),
        def(
            "disc.workload-files",
            Disc,
            "DISC-1",
            Some(Objects),
            "exactly one workload file per backup host, named <dir>/<host><suffix>, even when empty, and no other file",
        ),
        def(
            "disc.exactly-once",
            Disc,
            "DISC-2",
            Some(Objects),
            "every object of the (overlapping) selections appears exactly once across the workload files",
        ),
        def(
            "disc.format",
            Disc,
            "DISC-3",
            Some(Objects),
            "workload files parse, carry the snapshot id and their host in the header, and hold real paths",
        ),
        def(
            "disc.workload-mode",
            Disc,
            "DISC-4",
            Some(Objects),
            "workload files have mode 0600 and no temporary file is left",
        ),
        def(
            "disc.snapid",
            Disc,
            "DISC-5",
            Some(Objects),
            "a successful discovery writes a NUL-terminated snapshot id; a failing one writes no workload file and changes no watched directory",
        ),
        def(
            "disc.snappath",
            Disc,
            "DISC-6",
            Some(Backup),
            "snappath(\"\", p) is p; with a snapshot, objects read as they were at discovery",
        ),
        def(
            "disc.postprocess",
            Disc,
            "DISC-7",
            Some(Backup),
            "postprocess removes the snapshot (watched directories back as before discovery); an empty or already deleted id is AAPI_EOK",
        ),
        def(
            "disc.incremental",
            Disc,
            "DISC-8",
            Some(Backup),
            "an incremental lists every object and flags exactly the unchanged ones AAPI_WKLD_UNCHANGED; backing it up yields the change",
        ),
        def(
            "disc.balance",
            Disc,
            "DISC-9",
            Some(Objects),
            "bytes per backup host differ by at most the largest object",
        ),
        def(
            "rst.preprocess",
            Rst,
            "RST-1",
            Some(Restore),
            "a missing target root gives AAPI_ENOENT and an impossible total size AAPI_ENOSPC, before anything is written",
        ),
        def(
            "rst.create-location",
            Rst,
            "RST-2",
            Some(Restore),
            "objects are created exactly at their path with missing parents, and nothing outside the target root",
        ),
        def(
            "rst.exists",
            Rst,
            "RST-3",
            Some(Restore),
            "create on an existing object gives AAPI_EEXIST without AAPI_CREATE_OVERWRITE; with it, the old object stays until close; existing directories are reused",
        ),
        def(
            "rst.props",
            Rst,
            "RST-4",
            Some(Restore),
            "after close, aapi_get_object_prop_byname reports the type, size and mode given to create",
        ),
        def(
            "rst.utimes",
            Rst,
            "RST-5",
            Some(Restore),
            "aapi_set_object_utimes sets atime and mtime, NULL leaves one unchanged, and symlinks get their own times",
        ),
        def(
            "rst.failed-restore",
            Rst,
            "RST-6",
            Some(Restore),
            "aapi_restore_postprocess with a failure status removes every object the restore created, and only those",
        ),
        def(
            "rst.failed-restore-keeps",
            Rst,
            "RST-7",
            Some(Restore),
            "a failed restore puts back objects replaced under AAPI_CREATE_OVERWRITE",
        ),
        def(
            "rst.confined",
            Rst,
            "RST-10",
            Some(Restore),
            "below the target root, no path through a symbolic link reaches outside it: create, set-times, delete and the rollback",
        ),
        def(
            "rst.confined-props",
            Rst,
            "RST-11",
            Some(Restore),
            "under the target root, aapi_get_object_prop_byname refuses a path through a symbolic link or outside the root",
        ),
        def(
            "data.roundtrip",
            Data,
            "RST-4",
            Some(RoundTrip),
            "backup, restore to an alternate root and backup of the restored objects give the same objects, digests, types, sizes and modes",
        ),
        def(
            "data.roundtrip-times",
            Data,
            "RST-5",
            Some(RoundTrip),
            "restored objects carry the backed-up mtime and atime",
        ),
        def(
            "data.on-disk",
            Data,
            "RST-4",
            Some(RoundTrip),
            "for files: the restored tree on disk equals the source tree (names, types, bytes, link targets, modes, mtimes)",
        ),
        def(
            "time.budget",
            Timing,
            "TIME-1",
            Some(Plugin),
            "no call runs past the budget without a keepalive",
        ),
        def(
            "time.bounded",
            Timing,
            "TIME-3",
            Some(Plugin),
            "no worker runs past the profile's worker_limit_s: every call returns in bounded time, keepalives or not",
        ),
        def(
            "time.keepalive-cadence",
            Timing,
            "TIME-2",
            Some(Objects),
            "calls longer than budget/4 send keepalives at least every budget/4",
        ),
        def(
            "time.cancel",
            Timing,
            "TIME-4",
            Some(Objects),
            "after a keepalive answered AAPI_ECANCELLED, the call returns AAPI_ECANCELLED within min(AAPI_CANCEL_BOUND_MS, budget) and leaves no workload file or snapshot",
        ),
        def(
            "thr.concurrent-read",
            Concurrency,
            "THR-2",
            Some(Backup),
            "max_concurrent_objects >= 2 and that many concurrent readers get exactly the serial results",
        ),
        def(
            "thr.concurrent-restore",
            Concurrency,
            "THR-2",
            Some(RoundTrip),
            "that many concurrent writers create exactly what serial writes create",
        ),
        def(
            "thr.callbacks",
            Concurrency,
            "THR-3",
            Some(Plugin),
            "callbacks are called only while an entry point is running",
        ),
        def(
            "thr.session-callbacks",
            Concurrency,
            "THR-3",
            Some(Objects),
            "with several sessions open, a call calls back only its own session, never a closed one",
        ),
        def(
            "thr.threads-terminate",
            Concurrency,
            "THR-4",
            Some(Backup),
            "no plugin thread outlives aapi_terminate",
        ),
        def(
            "mem.no-crash",
            Mem,
            "MEM-3",
            Some(Plugin),
            "no entry point crashes, aborts or ends the process (exit, _exit), with any status",
        ),
        def(
            "mem.read-bounds",
            Mem,
            "MEM-4",
            Some(Backup),
            "aapi_read_object writes nothing past buf_size",
        ),
        def(
            "sec.secrets",
            Sec,
            "SEC-1",
            Some(Plugin),
            "no credential value appears in log lines, workload files or plugin output",
        ),
        def(
            "sec.workload-private",
            Sec,
            "SEC-2",
            Some(Objects),
            "workload files are not readable by group or others",
        ),
        def(
            "sec.output",
            Sec,
            "SEC-3",
            Some(Plugin),
            "the plugin writes nothing to stdout or stderr",
        ),
        def(
            "res.fds-close-server",
            Resources,
            "RES-1",
            Some(RoundTrip),
            "no descriptor opened for a session is left open after aapi_close_server",
        ),
        def(
            "res.fds-terminate",
            Resources,
            "RES-2",
            Some(Backup),
            "no descriptor the plugin opened is left open, and no process it started still runs, after aapi_terminate",
        ),
        def(
            "res.streaming",
            Resources,
            "RES-3",
            Some(Backup),
            "reading the largest object does not grow memory by its size",
        ),
    ];
    for f in NULL_FUNCTIONS {
        let needs = if *f == "aapi_pgn_init" || *f == "aapi_pgn_claim" {
            Plugin
        } else if is_restore_function(f) || *f == "aapi_write_object" {
            Restore
        } else if matches!(*f, "aapi_read_object" | "aapi_get_object_prop") {
            Backup
        } else {
            Objects
        };
        v.push(def(
            &format!("rc.null.{f}"),
            Rc,
            "RC-3",
            Some(needs),
            &format!(
                "{f} returns AAPI_EINVAL for a NULL in every pointer parameter that may not be NULL"
            ),
        ));
    }
    for f in HANDLE_FUNCTIONS {
        let needs = if is_restore_function(f) {
            Restore
        } else if takes_object_handle(f) {
            Backup
        } else {
            Objects
        };
        v.push(def(
            &format!("rc.bad-handle.{f}"),
            Rc,
            "RC-4",
            Some(needs),
            &format!("{f} returns AAPI_EBADHANDLE for a handle that is 0, closed, forged or of the wrong kind"),
        ));
    }
    for f in OUT_PARAM_FUNCTIONS {
        let needs = match *f {
            "aapi_pgn_init" | "aapi_open_server" => Plugin,
            "aapi_create_object" => Restore,
            "aapi_read_object" | "aapi_get_object_prop" => Backup,
            _ => Objects,
        };
        v.push(def(
            &format!("rc.out-params.{f}"),
            Rc,
            "RC-5",
            Some(needs),
            &format!("{f} leaves sentinel-filled out-parameters untouched when it fails"),
        ));
    }
    v.sort_by_key(|c| c.group);
    v
}

/// Find a check by ID.
pub fn find(id: &str) -> Option<CheckDef> {
    all().into_iter().find(|c| c.id == id)
}
