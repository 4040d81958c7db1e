//! Resources: descriptors after close_server and terminate (`res.fds-close-server`,
//! `res.fds-terminate`) and memory while streaming (`res.streaming`).

use super::probe::{PR, Probe};
use crate::pipeline::under;
use crate::worker::{child_processes, open_fds};
use aapi_sdk::abi::*;

/// The descriptors of `after` not in `before`, described.
fn fd_diff(before: &[(i32, String)], after: &[(i32, String)]) -> Vec<String> {
    after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|(n, t)| format!("fd {n} -> {t}"))
        .collect()
}

/// `res.fds-close-server`: a backup (and a restore) session leaves no descriptor open after
/// its close, even with an object left open.
pub fn fds_close_server(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let before = open_fds();
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let _ = api.digest(s.handle(), &p.small(), p.cap(&p.small()));
    let _ = api.digest(s.handle(), &p.file(), p.cap(&p.file()));
    let _left_open = p.open_obj(&s, &p.small())?;
    s.close()?;
    let after = open_fds();
    let leaked = fd_diff(&before, &after);
    if !leaked.is_empty() {
        p.fail(format!(
            "after a backup session closed: {}",
            leaked.join(", ")
        ));
    }
    if p.has(AAPI_CAP_RESTORE) {
        let before = open_fds();
        let (r, root) = p.restore(&plugin, "fds")?;
        let o = p.create(&r, &under(&root, b"/fd.txt"), AAPI_OBJ_FILE, 0)?;
        api.write_all(o, b"fd")?;
        api.close_object(o);
        let o = p.create(&r, &under(&root, b"/fd-open.txt"), AAPI_OBJ_FILE, 0)?;
        api.write_all(o, b"left open")?;
        r.restore_postprocess(AAPI_EOK)?;
        r.close()?;
        let leaked = fd_diff(&before, &open_fds());
        if !leaked.is_empty() {
            p.fail(format!(
                "after a restore session closed: {}",
                leaked.join(", ")
            ));
        }
    }
    plugin.terminate()?;
    Ok(())
}

/// `res.fds-terminate`: no descriptor the plugin opened survives terminate, with a session
/// and an object left open, and no process it started still runs.
pub fn fds_terminate(p: &Probe) -> PR {
    let lib = p.lib()?;
    let _ = lib;
    let before = open_fds();
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let _ = api.digest(s.handle(), &p.small(), p.cap(&p.small()));
    let _open = p.open_obj(&s, &p.file())?;
    std::mem::forget(s);
    plugin.terminate()?;
    let leaked = fd_diff(&before, &open_fds());
    if !leaked.is_empty() {
        p.fail(format!("after aapi_terminate: {}", leaked.join(", ")));
    }
    let running = child_processes();
    if !running.is_empty() {
        p.fail(format!(
            "after aapi_terminate, processes the plugin started still run: {}",
            running.join(", ")
        ));
    }
    Ok(())
}

/// The peak resident memory of this process (`VmHWM`), in KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `res.streaming`: reading the largest object (2 MiB or more) does not raise peak memory by
/// half its size.
pub fn streaming(p: &Probe) -> PR {
    let big = p
        .objects()
        .all
        .iter()
        .filter(|o| o.flags & (AAPI_WKLD_DIR | AAPI_WKLD_SYMLINK) == 0)
        .map(|o| o.size)
        .max()
        .unwrap_or(0);
    if big < 2 << 20 {
        p.skip(format!(
            "the largest object has {big} bytes; the check needs one of 2 MiB or more"
        ));
        return Ok(());
    }
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    // Warm up (allocators, first-call work), then measure one streamed read of the big object.
    let _ = api.digest(s.handle(), &p.small(), p.cap(&p.small()));
    let before = vm_hwm_kib();
    let _ = api.digest(s.handle(), &p.file(), p.cap(&p.file()));
    let grew = vm_hwm_kib().saturating_sub(before) * 1024;
    if grew > big / 2 {
        p.fail(format!(
            "reading a {big}-byte object raised peak memory by {grew} bytes"
        ));
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}
