//! Timing: `time.cancel` and `time.keepalive-cadence`, both on the profile's long call (a
//! discovery of the `[timing]` selections). `time.budget` judges every call of the run.

use super::ffi::{DiscoveryC, empty_snapid};
use super::probe::{Fail, PR, Probe, dir_is_empty, discovery_args};
use aapi_host::client::{Plugin, Server};
use aapi_sdk::abi::*;
use std::time::{Duration, Instant};

/// A discovery session with the `[timing]` properties (the unit runs with the `[timing]` budget).
fn long_call_session(p: &Probe, plugin: &Plugin) -> Result<Server, Fail> {
    let setup = p.setup();
    let mut def = p.ctx.session_def(AAPI_OP_DISCOVERY);
    def.properties
        .extend(setup.timing_properties.iter().cloned());
    Ok(plugin.open_server(&setup.server, def)?)
}

/// `time.cancel`: the long call, with every keepalive answered `AAPI_ECANCELLED`, returns
/// `AAPI_ECANCELLED` in time and leaves nothing behind.
pub fn cancel(p: &Probe) -> PR {
    let setup = p.setup().clone();
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = long_call_session(p, &plugin)?;
    let out = p.dir("cancel")?;
    let before = p.watch();
    let hosts: Vec<&str> = setup.hosts.iter().map(String::as_str).collect();
    let d = DiscoveryC::new(&setup.timing_selections, &hosts, &out);
    // An idle stretch first, so plugins that pace keepalives per session send one at once.
    std::thread::sleep(Duration::from_millis(
        setup.timing_budget_ms as u64 / 4 + 20,
    ));
    p.ctx.hooks.cancel_on_keepalive();
    let mut snap = empty_snapid();
    let t0 = Instant::now();
    let c = api.discovery_with(s.handle(), &d, AAPI_SCHED_FULL, &mut snap);
    let done = Instant::now();
    let Some(answered) = p.ctx.hooks.cancel_answered() else {
        p.skip(format!(
            "the long call (aapi_discovery of [timing] selections) sent no keepalive in {} ms; make it longer than budget/4 ({} ms), with [timing] properties or [timing] selections (docs/conformance.md, profile)",
            (done - t0).as_millis(),
            setup.timing_budget_ms / 4
        ));
        if c == AAPI_EOK {
            let bytes: Vec<u8> = snap
                .id
                .iter()
                .map(|&c| c as u8)
                .take_while(|&b| b != 0)
                .collect();
            let id = String::from_utf8_lossy(&bytes).into_owned();
            if let Ok(pp) = p.postprocess_session(&plugin, &id) {
                let args = discovery_args(&setup.timing_selections, &setup.hosts, &out);
                let _ = pp.postprocess(&args, &id);
            }
        }
        drop(s);
        plugin.terminate()?;
        return Ok(());
    };
    let bound = Duration::from_millis(AAPI_CANCEL_BOUND_MS.min(setup.timing_budget_ms) as u64);
    p.expect(
        "aapi_discovery after its keepalive answered AAPI_ECANCELLED",
        c,
        AAPI_ECANCELLED,
    );
    if done - answered > bound {
        p.fail(format!(
            "aapi_discovery returned {} ms after the AAPI_ECANCELLED answer, the bound is {} ms",
            (done - answered).as_millis(),
            bound.as_millis()
        ));
    }
    if c != AAPI_EOK && !dir_is_empty(&out) {
        p.fail("the cancelled discovery left workload files");
    }
    if c != AAPI_EOK && p.watch() != before {
        p.fail("the cancelled discovery left files in the watched (snapshot) directories");
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `time.keepalive-cadence`: runs the long call, whose keepalive gaps the worker records for
/// the runner to judge (as for every long call of the run); skipped when it is too short to
/// tell.
pub fn cadence(p: &Probe) -> PR {
    let setup = p.setup().clone();
    let plugin = p.plugin()?;
    let s = long_call_session(p, &plugin)?;
    let out = p.dir("cadence")?;
    let args = discovery_args(&setup.timing_selections, &setup.hosts, &out);
    let t0 = Instant::now();
    let snap = s.discovery(&args)?;
    let took = t0.elapsed();
    drop(s);
    if took.as_millis() <= (setup.timing_budget_ms / 4) as u128 {
        p.skip(format!(
            "the long call took {} ms, not longer than budget/4 ({} ms): give the profile a longer one, with [timing] properties that make the plugin's discovery do more work (a property of the plugin's own), or, for a plugin whose discovery walks directories, [timing] selections = [\"/usr/share\"] (docs/conformance.md, profile)",
            took.as_millis(),
            setup.timing_budget_ms / 4
        ));
    }
    let pp = p.postprocess_session(&plugin, &snap)?;
    pp.postprocess(&args, &snap)?;
    drop(pp);
    plugin.terminate()?;
    Ok(())
}
