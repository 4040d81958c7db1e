//! Discovery: `disc.snapid` (with a `disc.workload-files` case: one object for three hosts).
//! The other `disc.*` checks judge the data pipeline's discoveries.

use super::ffi::{DiscoveryC, empty_snapid, sentinel};
use super::probe::{PR, Probe, dir_is_empty, discovery_args};
use crate::worker::code_name;
use aapi_sdk::abi::*;

/// `disc.snapid`: a failing discovery leaves nothing behind; a successful one writes a
/// NUL-terminated snapshot id and a workload file for every host.
pub fn snapid(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    // A failing discovery leaves nothing.
    let out = p.dir("fail")?;
    let before = p.watch();
    let d = DiscoveryC::new(&[p.missing()], &["h1", "h2"], &out);
    let s = p.session(&plugin, AAPI_OP_DISCOVERY)?;
    let c = api.discovery_with(s.handle(), &d, AAPI_SCHED_FULL, &mut empty_snapid());
    drop(s);
    if c == AAPI_EOK {
        p.fail("discovery of a missing selection succeeded");
    } else {
        if !dir_is_empty(&out) {
            p.fail(format!(
                "a discovery that failed with {} left workload files",
                code_name(c)
            ));
        }
        if p.watch() != before {
            p.fail(format!(
                "a discovery that failed with {} left files in the watched directories",
                code_name(c)
            ));
        }
    }
    // A successful one writes a NUL-terminated id, and a file for every host, also empty ones.
    let out = p.dir("ok")?;
    let hosts = ["h1", "h2", "h3"];
    let d = DiscoveryC::new(&[p.small()], &hosts, &out);
    let s = p.session(&plugin, AAPI_OP_DISCOVERY)?;
    let mut snap = empty_snapid();
    sentinel(&mut snap, 0);
    let c = api.discovery_with(s.handle(), &d, AAPI_SCHED_FULL, &mut snap);
    drop(s);
    p.require("discovery of one object for three hosts", c)?;
    let bytes: Vec<u8> = snap.id.iter().map(|&c| c as u8).collect();
    let id = match bytes.iter().position(|&b| b == 0) {
        Some(n) => String::from_utf8_lossy(&bytes[..n]).into_owned(),
        None => {
            p.fail("aapi_discovery returned AAPI_EOK without a NUL-terminated snapshot id");
            String::new()
        }
    };
    for h in hosts {
        if !out.join(format!("{h}.wkld")).exists() {
            p.fail_as(
                "disc.workload-files",
                format!("one object for three hosts: no workload file for {h}"),
            );
        }
    }
    let pp = p.postprocess_session(&plugin, &id)?;
    let sel = vec![p.small()];
    let hv: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    pp.postprocess(&discovery_args(&sel, &hv, &out), &id)?;
    drop(pp);
    plugin.terminate()?;
    Ok(())
}
