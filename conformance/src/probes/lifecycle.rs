//! Call order and the legal sequences: the `life.*` probes (the `life.discovery`,
//! `life.backup`, `life.postprocess` and `life.restore` checks are the data pipeline's).

use super::ffi::{
    DiscoveryC, NULL, empty_snapid, host_info, is_sentinel, object_prop, plugin_info, raw_session,
    restore_info, sentinel, server_info,
};
use super::probe::{Fail, PR, Probe, discovery_args};
use super::raw::Api;
use crate::pipeline::under;
use crate::worker::{cpath, new_prop, pbytes};
use aapi_host::client::{PluginError, Server};
use aapi_sdk::abi::*;
use std::ffi::c_int;

/// Every entry point but init, terminate and get_last_error, once, with valid arguments, on
/// the server `s` and the object `o`: each function with its code.
fn every_call(
    p: &Probe,
    api: &Api,
    s: aapi_server_t,
    o: aapi_object_t,
) -> Result<Vec<(&'static str, c_int)>, Fail> {
    let dir = p.dir("every")?;
    let file = cpath(&under(&dir, b"/x"));
    let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
    let d = DiscoveryC::new(&[pbytes(&dir)], &["h1"], &dir);
    let mut snap = empty_snapid();
    let mut buf = [0u8; 64];
    let mut size = buf.len();
    let mut h: u64 = 0;
    let mut n = 0usize;
    let mut si = server_info();
    let mut prop = new_prop();
    let cprop = object_prop(AAPI_OBJ_FILE);
    let root = p.target_root(&dir);
    let ri = restore_info(&root);
    let name = p.server_name();
    Ok(vec![
        ("aapi_pgn_claim", api.pgn_claim(c"files")),
        ("aapi_open_server", api.open_server(&name, &rs.def, &mut h)),
        ("aapi_get_server_prop", api.get_server_prop(s, &mut si)),
        (
            "aapi_discovery",
            api.discovery_with(s, &d, AAPI_SCHED_FULL, &mut snap),
        ),
        (
            "aapi_postprocess",
            api.postprocess_with(s, &d, AAPI_SCHED_FULL, &snap),
        ),
        (
            "aapi_get_snappath_from_realpath",
            api.get_snappath_from_realpath(s, c"", &file, &mut buf, &mut size),
        ),
        (
            "aapi_open_object",
            api.open_object(s, &file, AAPI_OPEN_READ, &mut h),
        ),
        (
            "aapi_create_object",
            api.create_object(s, &file, &cprop, 0, &mut h),
        ),
        ("aapi_delete_object", api.delete_object(s, &file)),
        ("aapi_read_object", api.read_object(o, &mut buf, 16, &mut n)),
        ("aapi_write_object", api.write_object(o, &buf, 1)),
        ("aapi_flush", api.flush(o)),
        ("aapi_get_object_prop", api.get_object_prop(o, &mut prop)),
        (
            "aapi_get_object_prop_byname",
            api.get_object_prop_byname(s, &file, &mut prop),
        ),
        (
            "aapi_set_object_utimes",
            api.set_object_utimes(s, &file, NULL, NULL),
        ),
        ("aapi_restore_preprocess", api.restore_preprocess(s, &ri)),
        (
            "aapi_restore_postprocess",
            api.restore_postprocess(s, AAPI_EOK),
        ),
        ("aapi_close_object", api.close_object(o)),
        ("aapi_close_server", api.close_server(s)),
    ])
}

/// `life.before-init`: every call before init is out of sequence.
pub fn before_init(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let calls = every_call(p, &api, 1, 2)?;
    p.expect_all(&calls, "before aapi_pgn_init", AAPI_ESEQUENCE);
    Ok(())
}

/// `life.after-terminate`: every call after terminate, on the old handles, is out of sequence.
pub fn after_terminate(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let sh = s.handle();
    std::mem::forget(s);
    plugin.terminate()?;
    let calls = every_call(p, &api, sh, o)?;
    p.expect_all(&calls, "after aapi_terminate", AAPI_ESEQUENCE);
    Ok(())
}

/// `life.double-init`: a second init is refused, writes nothing and changes nothing.
pub fn double_init(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let hi = host_info(p.ctx);
    let mut pi = plugin_info();
    sentinel(&mut pi, 4);
    let c = api.pgn_init(&hi, &mut pi);
    p.expect("a second aapi_pgn_init", c, AAPI_ESEQUENCE);
    if !is_sentinel(&pi, 4) {
        p.fail("a refused second aapi_pgn_init wrote plugin_info");
    }
    match plugin.claim(&p.setup().workload_type) {
        Ok(true) => {}
        other => p.fail(format!(
            "aapi_pgn_claim after a refused second init: {other:?}"
        )),
    }
    plugin.terminate()?;
    let mut pi = plugin_info();
    let c = api.pgn_init(&hi, &mut pi);
    p.expect("aapi_pgn_init after aapi_terminate", c, AAPI_EOK);
    api.terminate();
    Ok(())
}

/// The code of an open_server through the client (a server it opens is closed again).
fn open_code(r: Result<Server, PluginError>) -> c_int {
    match r {
        Ok(s) => {
            let _ = s.close();
            AAPI_EOK
        }
        Err(e) => e.code().unwrap_or(-1),
    }
}

/// `life.open-before-claim`: open_server needs a successful claim in the current cycle.
pub fn open_before_claim(p: &Probe) -> PR {
    let plugin = p.init_only()?;
    // The session life.discovery opens: that check shows the plugin can open one after a claim
    // (the positive control below); without it this check is blocked, not failed.
    let def = p.ctx.session_def(AAPI_OP_DISCOVERY);
    let server = p.setup().server.clone();
    let c = open_code(plugin.open_server(&server, def.clone()));
    p.expect("aapi_open_server before any claim", c, AAPI_ESEQUENCE);
    // (A plugin that claims unknown types breaks LOAD-6, not this clause.)
    if let Ok(false) = plugin.claim("aapi-conformance-unknown-type") {
        let c = open_code(plugin.open_server(&server, def.clone()));
        p.expect(
            "aapi_open_server after a claim answered AAPI_ENOTCLAIMED",
            c,
            AAPI_ESEQUENCE,
        );
    }
    plugin.claim(&p.setup().workload_type)?;
    let c = open_code(plugin.open_server(&server, def.clone()));
    p.expect("aapi_open_server after a successful claim", c, AAPI_EOK);
    plugin.terminate()?;
    let plugin = p.init_only()?;
    let c = open_code(plugin.open_server(&server, def));
    p.expect(
        "aapi_open_server in a new cycle without a claim",
        c,
        AAPI_ESEQUENCE,
    );
    plugin.terminate()?;
    Ok(())
}

/// The server-level calls that depend on the session's operation.
const SERVER_CALLS: &[&str] = &[
    "aapi_discovery",
    "aapi_postprocess",
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_create_object",
    "aapi_delete_object",
    "aapi_get_object_prop_byname",
    "aapi_set_object_utimes",
    "aapi_restore_preprocess",
    "aapi_restore_postprocess",
];

/// The [`SERVER_CALLS`] on `s` but those in `skip`, each with valid arguments: each function
/// with its code (an object opened or created is closed again).
fn server_calls(
    p: &Probe,
    api: &Api,
    s: aapi_server_t,
    skip: &[&str],
) -> Result<Vec<(&'static str, c_int)>, Fail> {
    let dir = p.dir("seq")?;
    let file = cpath(&p.small());
    let target = cpath(&under(&dir, b"/created-out-of-order"));
    let d = DiscoveryC::new(&p.small_selection(), &["h1"], &p.dir("seq-wkld")?);
    let root = p.target_root(&dir);
    let ri = restore_info(&root);
    let cprop = object_prop(AAPI_OBJ_FILE);
    let mut out = Vec::new();
    let mut snap = empty_snapid();
    let mut buf = [0u8; 4096];
    let mut size = buf.len();
    let mut h: u64 = 0;
    let mut prop = new_prop();
    for &f in SERVER_CALLS {
        if skip.contains(&f) {
            continue;
        }
        let c = match f {
            "aapi_discovery" => api.discovery_with(s, &d, AAPI_SCHED_FULL, &mut snap),
            "aapi_postprocess" => api.postprocess_with(s, &d, AAPI_SCHED_FULL, &empty_snapid()),
            "aapi_get_snappath_from_realpath" => {
                api.get_snappath_from_realpath(s, c"", &file, &mut buf, &mut size)
            }
            "aapi_open_object" => {
                let c = api.open_object(s, &file, AAPI_OPEN_READ, &mut h);
                api.close_if_ok(c, h);
                c
            }
            "aapi_create_object" => {
                let c = api.create_object(s, &target, &cprop, 0, &mut h);
                api.close_if_ok(c, h);
                c
            }
            "aapi_delete_object" => api.delete_object(s, &target),
            "aapi_get_object_prop_byname" => api.get_object_prop_byname(s, &file, &mut prop),
            "aapi_set_object_utimes" => api.set_object_utimes(s, &file, NULL, NULL),
            "aapi_restore_preprocess" => api.restore_preprocess(s, &ri),
            _ => api.restore_postprocess(s, AAPI_EIO),
        };
        out.push((f, c));
    }
    Ok(out)
}

/// `life.operation-*`: in a session of `op`, the calls it does not allow are out of sequence.
pub fn operation(p: &Probe, op: u32) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, op)?;
    let (name, legal): (&str, &[&str]) = match op {
        AAPI_OP_DISCOVERY => ("DISCOVERY", &["aapi_discovery"]),
        AAPI_OP_BACKUP => (
            "BACKUP",
            &[
                "aapi_get_snappath_from_realpath",
                "aapi_open_object",
                "aapi_get_object_prop_byname",
            ],
        ),
        _ => ("POSTPROCESS", &["aapi_postprocess"]),
    };
    let calls = server_calls(p, &api, s.handle(), legal)?;
    p.expect_all(&calls, &format!("in a {name} session"), AAPI_ESEQUENCE);
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `life.operation-restore`: in a restore session, the calls before preprocess and after
/// postprocess are out of sequence.
pub fn operation_restore(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
    let calls = server_calls(p, &api, s.handle(), &["aapi_restore_preprocess"])?;
    p.expect_all(
        &calls,
        "in a RESTORE session before aapi_restore_preprocess",
        AAPI_ESEQUENCE,
    );
    let root = p.dir("after")?;
    s.restore_preprocess(&pbytes(&root), 1, 1)?;
    s.restore_postprocess(AAPI_EOK)?;
    let after: &[&str] = &["aapi_restore_preprocess", "aapi_get_object_prop_byname"];
    let calls = server_calls(p, &api, s.handle(), after)?;
    p.expect_all(
        &calls,
        "in a RESTORE session after aapi_restore_postprocess",
        AAPI_ESEQUENCE,
    );
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `life.once-per-session`: discovery, postprocess, restore_preprocess and
/// restore_postprocess work once per session.
pub fn once_per_session(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let sel = p.small_selection();
    let hosts = vec!["h1".to_string()];
    let out = p.dir("w1")?;
    let args = discovery_args(&sel, &hosts, &out);
    let s = p.session(&plugin, AAPI_OP_DISCOVERY)?;
    let snap = s.discovery(&args)?;
    let out2 = p.dir("w2")?;
    let args2 = discovery_args(&sel, &hosts, &out2);
    p.expect_code(
        "a second aapi_discovery on one session",
        s.discovery(&args2),
        AAPI_ESEQUENCE,
    );
    drop(s);
    let s = p.postprocess_session(&plugin, &snap)?;
    s.postprocess(&args, &snap)?;
    p.expect_code(
        "a second aapi_postprocess on one session",
        s.postprocess(&args, &snap),
        AAPI_ESEQUENCE,
    );
    drop(s);
    if p.has(AAPI_CAP_RESTORE) {
        let (s, root) = p.restore(&plugin, "once")?;
        p.expect_code(
            "a second aapi_restore_preprocess on one session",
            s.restore_preprocess(&pbytes(&root), 1, 1),
            AAPI_ESEQUENCE,
        );
        s.restore_postprocess(AAPI_EOK)?;
        p.expect_code(
            "a second aapi_restore_postprocess on one session",
            s.restore_postprocess(AAPI_EOK),
            AAPI_ESEQUENCE,
        );
    }
    plugin.terminate()?;
    Ok(())
}

/// `life.object-mode`: no write or flush on an opened object, no read on a created one.
pub fn object_mode(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let c = api.write_object(o, &[0u8; 4], 1);
    p.expect(
        "aapi_write_object on an object opened for reading",
        c,
        AAPI_ESEQUENCE,
    );
    let c = api.flush(o);
    p.expect(
        "aapi_flush on an object opened for reading",
        c,
        AAPI_ESEQUENCE,
    );
    api.close_object(o);
    drop(s);
    let (r, root) = p.restore(&plugin, "mode")?;
    let o = p.create(&r, &under(&root, b"/mode.txt"), AAPI_OBJ_FILE, 0)?;
    let c = api.try_read(o);
    p.expect("aapi_read_object on a created object", c, AAPI_ESEQUENCE);
    api.close_object(o);
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// `life.close-server`: closing a server closes its objects; the old handles are then bad.
pub fn close_server(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o1 = p.open_obj(&s, &p.small())?;
    let o2 = p.open_obj(&s, &p.file())?;
    let h = s.handle();
    std::mem::forget(s);
    let c = api.close_server(h);
    p.expect("aapi_close_server with two objects open", c, AAPI_EOK);
    let c = api.try_read(o1);
    p.expect(
        "aapi_read_object on an object of a closed server",
        c,
        AAPI_EBADHANDLE,
    );
    let c = api.close_object(o2);
    p.expect(
        "aapi_close_object on an object of a closed server",
        c,
        AAPI_EBADHANDLE,
    );
    let c = api.get_server_prop(h, &mut server_info());
    p.expect(
        "aapi_get_server_prop on a closed server",
        c,
        AAPI_EBADHANDLE,
    );
    let c = api.close_server(h);
    p.expect("a second aapi_close_server", c, AAPI_EBADHANDLE);
    plugin.terminate()?;
    Ok(())
}

/// `life.terminate`: terminate always succeeds and ends every handle of its cycle.
pub fn terminate(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let c = api.terminate();
    p.expect("aapi_terminate before aapi_pgn_init", c, AAPI_EOK);
    let plugin = p.plugin()?;
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let h = s.handle();
    std::mem::forget(s);
    let c = api.terminate();
    p.expect(
        "aapi_terminate with a server and an object open",
        c,
        AAPI_EOK,
    );
    let c = api.terminate();
    p.expect("a second aapi_terminate", c, AAPI_EOK);
    let plugin = p.plugin()?;
    let c = api.try_read(o);
    p.expect(
        "aapi_read_object in a new cycle on an object left open before aapi_terminate",
        c,
        AAPI_EBADHANDLE,
    );
    let c = api.get_server_prop(h, &mut server_info());
    p.expect(
        "aapi_get_server_prop in a new cycle on a server left open before aapi_terminate",
        c,
        AAPI_EBADHANDLE,
    );
    plugin.terminate()?;
    Ok(())
}
