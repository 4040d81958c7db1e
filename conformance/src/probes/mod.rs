//! The probes: checks that run on their own in one worker process each.
//!
//! A probe drives the plugin through the raw entry points where the safe client would not let
//! it (NULL pointers, bad handles, small buffers, calls out of order) and reports findings for
//! its check. Every call goes through [`raw::Api`] or the host client, so the supervisor sees
//! it and enforces its deadline.
//!
//! One module per group of checks (docs/conformance.md): [`load`] (and the load gate),
//! [`abi`], [`lifecycle`], [`arguments`] and [`return_codes`] (the `rc` group), [`objects`],
//! [`discovery`], [`restore`], [`timing`], [`concurrency`], [`resources`]. [`probe`] holds
//! what a probe runs with, [`raw`] the raw calls and [`ffi`] their C arguments.

mod abi;
mod arguments;
mod concurrency;
mod discovery;
mod ffi;
mod lifecycle;
mod load;
mod objects;
mod probe;
mod raw;
mod resources;
mod restore;
mod return_codes;
mod timing;

use crate::worker::Ctx;
use aapi_sdk::abi::{AAPI_OP_BACKUP, AAPI_OP_DISCOVERY, AAPI_OP_POSTPROCESS};
pub use load::gate;
use probe::{Fail, PR, Probe};

/// A probe of one check.
type ProbeFn = fn(&Probe) -> PR;

/// A probe of one function's check; it gets the function's name.
type PerFunctionFn = fn(&Probe, &str) -> PR;

/// Every probe of one check, by the check it evaluates.
const PROBES: &[(&str, ProbeFn)] = &[
    ("load.claim", load::claim),
    ("load.undefined-symbols", load::undefined_symbols),
    ("load.no-side-effects", load::no_side_effects),
    ("load.info-static", load::info_static),
    ("abi.init-major", abi::init_major),
    ("abi.struct-size", abi::struct_size),
    ("abi.struct-bounds", abi::struct_bounds),
    ("abi.struct-read", abi::struct_read),
    ("life.before-init", lifecycle::before_init),
    ("life.after-terminate", lifecycle::after_terminate),
    ("life.double-init", lifecycle::double_init),
    ("life.open-before-claim", lifecycle::open_before_claim),
    ("life.operation-discovery", |p| {
        lifecycle::operation(p, AAPI_OP_DISCOVERY)
    }),
    ("life.operation-backup", |p| {
        lifecycle::operation(p, AAPI_OP_BACKUP)
    }),
    ("life.operation-postprocess", |p| {
        lifecycle::operation(p, AAPI_OP_POSTPROCESS)
    }),
    ("life.operation-restore", lifecycle::operation_restore),
    ("life.once-per-session", lifecycle::once_per_session),
    ("life.object-mode", lifecycle::object_mode),
    ("life.close-server", lifecycle::close_server),
    ("life.terminate", lifecycle::terminate),
    ("rc.empty-and-flags", return_codes::empty_and_flags),
    ("rc.buffer.snappath", return_codes::buffer_snappath),
    ("rc.buffer.last-error", return_codes::buffer_last_error),
    ("rc.unknown-path", return_codes::unknown_path),
    ("rc.schedules", return_codes::schedules),
    ("rc.last-error", return_codes::last_error),
    ("rc.failed-create", return_codes::failed_create),
    ("obj.read-protocol", objects::read_protocol),
    ("obj.changed", objects::changed),
    ("obj.write", objects::write),
    ("obj.invisible-until-close", objects::invisible),
    ("obj.close-invalidates", objects::close_invalidates),
    ("disc.snapid", discovery::snapid),
    ("rst.preprocess", restore::preprocess),
    ("rst.exists", restore::exists),
    ("rst.utimes", restore::utimes),
    ("rst.failed-restore", restore::failed_restore),
    ("rst.confined", restore::confined),
    ("rst.confined-props", restore::confined_props),
    ("time.cancel", timing::cancel),
    ("time.keepalive-cadence", timing::cadence),
    ("thr.concurrent-read", concurrency::concurrent_read),
    ("thr.concurrent-restore", concurrency::concurrent_restore),
    ("thr.session-callbacks", concurrency::session_callbacks),
    ("thr.threads-terminate", concurrency::threads_terminate),
    ("mem.read-bounds", objects::read_bounds),
    ("res.fds-close-server", resources::fds_close_server),
    ("res.fds-terminate", resources::fds_terminate),
    ("res.streaming", resources::streaming),
];

/// Probes with one check per function: the ID prefix (the function follows it) and the probe.
const PER_FUNCTION: &[(&str, PerFunctionFn)] = &[
    ("rc.null.", arguments::null_args),
    ("rc.bad-handle.", arguments::bad_handle),
    ("rc.out-params.", arguments::out_params),
];

/// The probe that evaluates `check`, if a probe does.
pub fn probe_for(check: &str) -> Option<String> {
    let alias = match check {
        "load.claim-unlisted" => "load.claim",
        "rc.last-error-message" => "rc.last-error",
        "rst.failed-restore-keeps" => "rst.failed-restore",
        other => other,
    };
    if PROBES.iter().any(|(id, _)| *id == alias)
        || PER_FUNCTION
            .iter()
            .any(|(prefix, _)| alias.starts_with(prefix))
    {
        Some(alias.to_string())
    } else {
        None
    }
}

/// Run the probe `check`.
pub fn run(ctx: &Ctx, check: &str) -> Result<(), String> {
    ctx.begin(check);
    let p = Probe { ctx, id: check };
    let r = if let Some((_, probe)) = PROBES.iter().find(|(id, _)| *id == check) {
        probe(&p)
    } else if let Some((prefix, probe)) = PER_FUNCTION
        .iter()
        .find(|(prefix, _)| check.starts_with(prefix))
    {
        probe(&p, &check[prefix.len()..])
    } else {
        return Err(format!("no probe named {check}"));
    };
    match r {
        Ok(()) => {}
        Err(Fail::Plugin(m)) => p.fail(format!("could not complete: {m}")),
        Err(Fail::Harness(m)) => return Err(m),
    }
    ctx.ran(check);
    Ok(())
}
