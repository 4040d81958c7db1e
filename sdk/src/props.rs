//! Well-known session property keys (`aapi_session_def_t::sd_properties`).
//!
//! Keys starting with `aapi.` are set by the framework. A plugin defines its own keys with its
//! own prefix (the sample plugins use `files.`); the framework passes them through unchanged.

/// Unix time in seconds (decimal) of the start of the last successful backup of this policy,
/// any schedule. An incremental backup (`AAPI_SCHED_INCR`) takes what changed after it.
/// Absent when there is none: the plugin then backs up everything.
pub const AAPI_PROP_LAST_BACKUP_TIME: &str = "aapi.last_backup_time";

/// Unix time in seconds (decimal) of the start of the last successful full backup of this policy.
/// A cumulative incremental backup (`AAPI_SCHED_CINC`) takes what changed after it.
pub const AAPI_PROP_LAST_FULL_TIME: &str = "aapi.last_full_time";

/// Name of the backup policy the job runs for.
pub const AAPI_PROP_POLICY: &str = "aapi.policy";

/// The string constants of the ABI, as (C macro name, value, documentation). The header generator
/// emits one `#define` per entry, since cbindgen cannot translate string constants.
pub const STRING_CONSTANTS: &[(&str, &str, &str)] = &[
    (
        "AAPI_ABI_MAGIC",
        "AAPIABI",
        "The magic bytes opening aapi_abi_marker_t (the NUL completes the eight bytes).",
    ),
    (
        "AAPI_MARKER_SYMBOL",
        crate::version::MARKER_SYMBOL,
        "Name of the ABI marker data symbol.",
    ),
    (
        "AAPI_PROP_LAST_BACKUP_TIME",
        AAPI_PROP_LAST_BACKUP_TIME,
        "Session property: Unix seconds of the last successful backup (any schedule); incrementals start there.",
    ),
    (
        "AAPI_PROP_LAST_FULL_TIME",
        AAPI_PROP_LAST_FULL_TIME,
        "Session property: Unix seconds of the last successful full backup; cumulative incrementals start there.",
    ),
    (
        "AAPI_PROP_POLICY",
        AAPI_PROP_POLICY,
        "Session property: the backup policy name.",
    ),
    (
        "AAPI_WKLD_MAGIC",
        crate::workload::MAGIC_STR,
        "The eight magic bytes opening every workload file (docs/workload-file.md).",
    ),
];
