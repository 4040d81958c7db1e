//! Arguments, one check per function: NULL pointers (`rc.null.*`), bad handles
//! (`rc.bad-handle.*`) and out-parameters left alone on failure (`rc.out-params.*`).

use super::ffi::{
    CStrList, DiscoveryC, NULL, SENT, empty_snapid, host_info, is_sentinel, object_prop,
    plugin_info, raw_session, restore_info, sentinel, server_info, ts,
};
use super::probe::{PR, Probe, harness};
use crate::checks::{
    HANDLE_FUNCTIONS, NULL_FUNCTIONS, OUT_PARAM_FUNCTIONS, is_restore_function, takes_object_handle,
};
use crate::pipeline::under;
use crate::worker::{code_name, cpath, new_prop};
use aapi_sdk::abi::*;
use std::ffi::c_int;

/// `function` as listed in `functions`, or a runner error naming the `kind` of probe.
fn listed(functions: &[&'static str], function: &str, kind: &str) -> Result<&'static str, String> {
    functions
        .iter()
        .find(|f| **f == function)
        .copied()
        .ok_or_else(|| format!("no {kind} probe for {function}"))
}

/// `rc.null.<f>`: a NULL in each pointer parameter of `f` that may not be NULL is
/// `AAPI_EINVAL`.
pub fn null_args(p: &Probe, f: &str) -> PR {
    let f = listed(NULL_FUNCTIONS, f, "NULL").map_err(harness)?;
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let hi = host_info(p.ctx);
    let mut pi = plugin_info();
    let check = |what: &str, c: c_int| {
        p.expect(what, c, AAPI_EINVAL);
    };
    if f == "aapi_pgn_init" {
        check("aapi_pgn_init(NULL, info)", api.pgn_init(NULL, &mut pi));
        check("aapi_pgn_init(host, NULL)", api.pgn_init(&hi, NULL));
        return Ok(());
    }
    let plugin = p.init_only()?;
    if f == "aapi_pgn_claim" {
        check("aapi_pgn_claim(NULL)", api.pgn_claim(NULL));
        plugin.terminate()?;
        return Ok(());
    }
    plugin.claim(&p.setup().workload_type)?;
    let name = p.server_name();
    let file = cpath(&p.small());
    let mut h: u64 = 0;
    match f {
        "aapi_open_server" => {
            let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
            check(
                "aapi_open_server(NULL, session, handle)",
                api.open_server(NULL, &rs.def, &mut h),
            );
            check(
                "aapi_open_server(server, NULL, handle)",
                api.open_server(&name, NULL, &mut h),
            );
            check(
                "aapi_open_server(server, session, NULL)",
                api.open_server(&name, &rs.def, NULL),
            );
            for field in ["sd_job_id", "sd_backup_host", "sd_snapid", "sd_properties"] {
                let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
                match field {
                    "sd_job_id" => rs.def.sd_job_id = std::ptr::null(),
                    "sd_backup_host" => rs.def.sd_backup_host = std::ptr::null(),
                    "sd_snapid" => rs.def.sd_snapid = std::ptr::null(),
                    _ => rs.def.sd_property_count = 1,
                }
                let c = api.open_server(&name, &rs.def, &mut h);
                check(&format!("aapi_open_server with session.{field} NULL"), c);
            }
        }
        "aapi_get_server_prop" => {
            let s = p.session(&plugin, AAPI_OP_BACKUP)?;
            check(
                "aapi_get_server_prop(server, NULL)",
                api.get_server_prop(s.handle(), NULL),
            );
        }
        "aapi_discovery" | "aapi_postprocess" => {
            let op = if f == "aapi_discovery" {
                AAPI_OP_DISCOVERY
            } else {
                AAPI_OP_POSTPROCESS
            };
            for (i, param) in [
                "selections",
                "backuphosts",
                "wkldoutdir",
                "wkldfilesuffix",
                "snapid",
                "selections = {NULL}",
                "backuphosts = {NULL}",
            ]
            .iter()
            .enumerate()
            {
                let out = p.dir(&format!("null{i}"))?;
                let d = DiscoveryC::new(&p.small_selection(), &["h1"], &out);
                let empty = CStrList::new::<&[u8]>([]); // {NULL}
                let s = p.session(&plugin, op)?;
                let sel = match i {
                    0 => None,
                    5 => Some(&empty),
                    _ => Some(&d.selections),
                };
                let hosts = match i {
                    1 => None,
                    6 => Some(&empty),
                    _ => Some(&d.hosts),
                };
                let dir = (i != 2).then_some(&d.dir);
                let suffix = (i != 3).then_some(&d.suffix);
                let mut snap = empty_snapid();
                let c = if f == "aapi_discovery" {
                    let snap = (i != 4).then_some(&mut snap);
                    api.discovery(s.handle(), sel, hosts, dir, suffix, AAPI_SCHED_FULL, snap)
                } else {
                    let snap = (i != 4).then_some(&snap);
                    api.postprocess(s.handle(), sel, hosts, dir, suffix, AAPI_SCHED_FULL, snap)
                };
                check(&format!("{f} with {param} NULL"), c);
            }
        }
        "aapi_get_snappath_from_realpath" => {
            let s = p.session(&plugin, AAPI_OP_BACKUP)?;
            let mut buf = [0u8; 64];
            let mut size = buf.len();
            let sh = s.handle();
            check(
                "snappath with snapname NULL",
                api.get_snappath_from_realpath(sh, NULL, &file, &mut buf, &mut size),
            );
            size = buf.len();
            check(
                "snappath with realpath NULL",
                api.get_snappath_from_realpath(sh, c"", NULL, &mut buf, &mut size),
            );
            size = buf.len();
            check(
                "snappath with snappath NULL and size 64",
                api.get_snappath_from_realpath(sh, c"", &file, NULL, &mut size),
            );
            check(
                "snappath with snappath_size NULL",
                api.get_snappath_from_realpath(sh, c"", &file, &mut buf, NULL),
            );
        }
        "aapi_open_object" => {
            let s = p.session(&plugin, AAPI_OP_BACKUP)?;
            check(
                "aapi_open_object(server, NULL, READ, obj)",
                api.open_object(s.handle(), NULL, AAPI_OPEN_READ, &mut h),
            );
            check(
                "aapi_open_object(server, path, READ, NULL)",
                api.open_object(s.handle(), &file, AAPI_OPEN_READ, NULL),
            );
        }
        "aapi_read_object" | "aapi_get_object_prop" => {
            let s = p.session(&plugin, AAPI_OP_BACKUP)?;
            let o = p.open_obj(&s, &p.small())?;
            let mut buf = [0u8; 64];
            let mut n = 0usize;
            if f == "aapi_read_object" {
                check(
                    "aapi_read_object(obj, NULL, 64, n)",
                    api.read_object(o, NULL, 64, &mut n),
                );
                check(
                    "aapi_read_object(obj, buf, 64, NULL)",
                    api.read_object(o, &mut buf, 64, NULL),
                );
            } else {
                check(
                    "aapi_get_object_prop(obj, NULL)",
                    api.get_object_prop(o, NULL),
                );
            }
            api.close_object(o);
        }
        "aapi_get_object_prop_byname" => {
            let s = p.session(&plugin, AAPI_OP_BACKUP)?;
            let mut prop = new_prop();
            check(
                "byname(server, NULL, prop)",
                api.get_object_prop_byname(s.handle(), NULL, &mut prop),
            );
            check(
                "byname(server, path, NULL)",
                api.get_object_prop_byname(s.handle(), &file, NULL),
            );
        }
        "aapi_get_last_error" => {
            let mut size = 16usize;
            let mut buf = [0u8; 16];
            check(
                "aapi_get_last_error(buf, NULL)",
                api.get_last_error(&mut buf, NULL),
            );
            check(
                "aapi_get_last_error(NULL, &16)",
                api.get_last_error(NULL, &mut size),
            );
        }
        _ => {
            // The restore-side functions, in a restore session.
            let (s, root) = p.restore(&plugin, "null")?;
            let sh = s.handle();
            let target = cpath(&under(&root, b"/null.txt"));
            let cprop = object_prop(AAPI_OBJ_FILE);
            match f {
                "aapi_create_object" => {
                    check(
                        "create(server, NULL, prop, 0, obj)",
                        api.create_object(sh, NULL, &cprop, 0, &mut h),
                    );
                    check(
                        "create(server, path, NULL, 0, obj)",
                        api.create_object(sh, &target, NULL, 0, &mut h),
                    );
                    check(
                        "create(server, path, prop, 0, NULL)",
                        api.create_object(sh, &target, &cprop, 0, NULL),
                    );
                }
                "aapi_delete_object" => {
                    check(
                        "aapi_delete_object(server, NULL)",
                        api.delete_object(sh, NULL),
                    );
                }
                "aapi_write_object" => {
                    let o = p.create(&s, &under(&root, b"/w.txt"), AAPI_OBJ_FILE, 0)?;
                    check(
                        "aapi_write_object(obj, NULL, 16)",
                        api.write_object(o, NULL, 16),
                    );
                    api.close_object(o);
                }
                "aapi_set_object_utimes" => {
                    check(
                        "aapi_set_object_utimes(server, NULL, NULL, NULL)",
                        api.set_object_utimes(sh, NULL, NULL, NULL),
                    );
                }
                "aapi_restore_preprocess" => {
                    drop(s);
                    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
                    check(
                        "aapi_restore_preprocess(server, NULL)",
                        api.restore_preprocess(s.handle(), NULL),
                    );
                    let ri = restore_info(NULL);
                    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
                    check(
                        "aapi_restore_preprocess with target_root NULL",
                        api.restore_preprocess(s.handle(), &ri),
                    );
                    plugin.terminate()?;
                    return Ok(());
                }
                _ => return Err(harness(format!("no NULL probe for {f}"))),
            }
            let _ = s.restore_postprocess(AAPI_EOK);
        }
    }
    plugin.terminate()?;
    Ok(())
}

/// `rc.bad-handle.<f>`: handle 0, a forged handle, a closed handle and a handle of the other
/// kind are `AAPI_EBADHANDLE`.
pub fn bad_handle(p: &Probe, f: &str) -> PR {
    let f = listed(HANDLE_FUNCTIONS, f, "handle").map_err(harness)?;
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let restore = is_restore_function(f);
    // A live server and object of the right session, a closed server, a closed object.
    let op = if restore {
        AAPI_OP_RESTORE
    } else {
        AAPI_OP_BACKUP
    };
    let closed_server = {
        let s = p.session(&plugin, op)?;
        let h = s.handle();
        s.close()?;
        h
    };
    let bs = p.session(&plugin, AAPI_OP_BACKUP)?;
    let live_obj = p.open_obj(&bs, &p.small())?;
    let closed_obj = p.open_obj(&bs, &p.small())?;
    api.close_object(closed_obj);
    let (rs, root) = if restore {
        let (s, r) = p.restore(&plugin, "handles")?;
        (Some(s), r)
    } else {
        (None, p.dir("handles")?)
    };
    let live_server = rs.as_ref().map_or(bs.handle(), |s| s.handle());
    let write_obj = match (&rs, f) {
        (Some(s), "aapi_write_object" | "aapi_flush") => {
            Some(p.create(s, &under(&root, b"/h.txt"), AAPI_OBJ_FILE, 0)?)
        }
        _ => None,
    };
    let forged = 0x7ead_beef_0bad_f00du64;
    let handles: Vec<(&str, u64)> = if takes_object_handle(f) {
        vec![
            ("0", 0),
            ("forged", forged),
            ("closed", closed_obj),
            ("a server handle", live_server),
        ]
    } else {
        vec![
            ("0", 0),
            ("forged", forged),
            ("closed", closed_server),
            ("an object handle", live_obj),
        ]
    };
    let file = cpath(&p.small());
    let target = cpath(&under(&root, b"/bad-handle.txt"));
    let d = DiscoveryC::new(&p.small_selection(), &["h1"], &p.dir("bh-wkld")?);
    let rootc = p.target_root(&root);
    let ri = restore_info(&rootc);
    let cprop = object_prop(AAPI_OBJ_FILE);
    for (what, h) in handles {
        let mut buf = [0u8; 256];
        let mut size = buf.len();
        let mut n = 0usize;
        let mut out = 0u64;
        let mut prop = new_prop();
        let mut snap = empty_snapid();
        let t = ts(1_000_000_000, 0);
        let c = match f {
            "aapi_close_server" => api.close_server(h),
            "aapi_get_server_prop" => api.get_server_prop(h, &mut server_info()),
            "aapi_discovery" => api.discovery_with(h, &d, AAPI_SCHED_FULL, &mut snap),
            "aapi_postprocess" => api.postprocess_with(h, &d, AAPI_SCHED_FULL, &snap),
            "aapi_get_snappath_from_realpath" => {
                api.get_snappath_from_realpath(h, c"", &file, &mut buf, &mut size)
            }
            "aapi_open_object" => api.open_object(h, &file, AAPI_OPEN_READ, &mut out),
            "aapi_create_object" => api.create_object(h, &target, &cprop, 0, &mut out),
            "aapi_delete_object" => api.delete_object(h, &target),
            "aapi_read_object" => api.read_object(h, &mut buf, 16, &mut n),
            "aapi_write_object" => api.write_object(h, &buf, 4),
            "aapi_flush" => api.flush(h),
            "aapi_close_object" => api.close_object(h),
            "aapi_get_object_prop" => api.get_object_prop(h, &mut prop),
            "aapi_get_object_prop_byname" => api.get_object_prop_byname(h, &file, &mut prop),
            "aapi_set_object_utimes" => api.set_object_utimes(h, &target, &t, &t),
            "aapi_restore_preprocess" => api.restore_preprocess(h, &ri),
            "aapi_restore_postprocess" => api.restore_postprocess(h, AAPI_EOK),
            other => return Err(harness(format!("no handle probe for {other}"))),
        };
        p.expect(
            &format!("{f} with {what} handle {h:#x}"),
            c,
            AAPI_EBADHANDLE,
        );
    }
    if let Some(o) = write_obj {
        api.close_object(o);
    }
    api.close_object(live_obj);
    if let Some(s) = rs {
        let _ = s.restore_postprocess(AAPI_EOK);
    }
    drop(bs);
    plugin.terminate()?;
    Ok(())
}

/// `rc.out-params.<f>`: a failing `f` leaves its sentinel-filled out-parameters alone.
pub fn out_params(p: &Probe, f: &str) -> PR {
    let f = listed(OUT_PARAM_FUNCTIONS, f, "out-parameter").map_err(harness)?;
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let untouched = |what: &str, ok: bool| {
        if !ok {
            p.fail(format!(
                "{f} wrote its out-parameter while failing ({what})"
            ));
        }
    };
    if f == "aapi_pgn_init" {
        let mut hi = host_info(p.ctx);
        hi.abi_major += 1;
        let mut pi = plugin_info();
        sentinel(&mut pi, 4);
        let c = api.pgn_init(&hi, &mut pi);
        if c != AAPI_EOK {
            untouched(&code_name(c), is_sentinel(&pi, 4));
        }
        return Ok(());
    }
    let plugin = p.init_only()?;
    if f == "aapi_open_server" {
        let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
        let mut h: u64 = 0;
        sentinel(&mut h, 0);
        let c = api.open_server(&p.server_name(), &rs.def, &mut h);
        if c != AAPI_EOK {
            untouched("AAPI_ESEQUENCE before claim", is_sentinel(&h, 0));
        }
        plugin.terminate()?;
        return Ok(());
    }
    plugin.claim(&p.setup().workload_type)?;
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let sh = s.handle();
    let missing = cpath(&p.missing());
    match f {
        "aapi_get_server_prop" => {
            let mut si = aapi_server_info_t::default();
            sentinel(&mut si, 0);
            si.struct_size = size_of::<aapi_server_info_t>() as u32;
            let c = api.get_server_prop(0, &mut si);
            untouched(&code_name(c), c == AAPI_EOK || is_sentinel(&si, 4));
        }
        "aapi_discovery" => {
            for (what, sched, sel) in [
                ("schedule 99", 99u32, p.small_selection()),
                ("a missing selection", AAPI_SCHED_FULL, vec![p.missing()]),
            ] {
                let out = p.dir(&format!("op-{sched}"))?;
                let d = DiscoveryC::new(&sel, &["h1"], &out);
                let ds = p.session(&plugin, AAPI_OP_DISCOVERY)?;
                let mut snap = empty_snapid();
                sentinel(&mut snap, 0);
                let c = api.discovery_with(ds.handle(), &d, sched, &mut snap);
                if c != AAPI_EOK {
                    untouched(what, is_sentinel(&snap, 0));
                }
            }
        }
        "aapi_get_snappath_from_realpath" => {
            let mut buf = [SENT; 64];
            let mut size = buf.len();
            let file = cpath(&p.small());
            let c = api.get_snappath_from_realpath(0, c"", &file, &mut buf, &mut size);
            if c != AAPI_EOK {
                untouched("a bad handle", buf.iter().all(|&b| b == SENT) && size == 64);
            }
        }
        "aapi_open_object" => {
            let mut o: u64 = 0;
            sentinel(&mut o, 0);
            let c = api.open_object(sh, &missing, AAPI_OPEN_READ, &mut o);
            if c != AAPI_EOK {
                untouched("a missing path", is_sentinel(&o, 0));
            } else {
                api.close_object(o);
            }
        }
        "aapi_read_object" => {
            let o = p.open_obj(&s, &p.small())?;
            let mut buf = [SENT; 64];
            let mut n: usize = 0;
            sentinel(&mut n, 0);
            let c = api.read_object(o, &mut buf, 0, &mut n);
            if c != AAPI_EOK {
                untouched(
                    "buf_size 0",
                    buf.iter().all(|&b| b == SENT) && is_sentinel(&n, 0),
                );
            }
            api.close_object(o);
            let c = api.read_object(o, &mut buf, 64, &mut n);
            if c != AAPI_EOK {
                untouched(
                    "a closed handle",
                    buf.iter().all(|&b| b == SENT) && is_sentinel(&n, 0),
                );
            }
        }
        "aapi_get_object_prop" => {
            let mut prop = new_prop();
            sentinel(&mut prop, 4);
            let c = api.get_object_prop(0, &mut prop);
            if c != AAPI_EOK {
                untouched("handle 0", is_sentinel(&prop, 4));
            }
        }
        "aapi_get_object_prop_byname" => {
            let mut prop = new_prop();
            sentinel(&mut prop, 4);
            let c = api.get_object_prop_byname(sh, &missing, &mut prop);
            if c != AAPI_EOK {
                untouched("a missing path", is_sentinel(&prop, 4));
            }
        }
        "aapi_create_object" => {
            let (r, root) = p.restore(&plugin, "op-create")?;
            let target = under(&root, b"/exists.txt");
            let o = p.create(&r, &target, AAPI_OBJ_FILE, 0)?;
            api.close_object(o);
            let cprop = object_prop(AAPI_OBJ_FILE);
            let mut o: u64 = 0;
            sentinel(&mut o, 0);
            let t = cpath(&target);
            let c = api.create_object(r.handle(), &t, &cprop, 0, &mut o);
            if c != AAPI_EOK {
                untouched("an existing object", is_sentinel(&o, 0));
            } else {
                api.close_object(o);
            }
            let _ = r.restore_postprocess(AAPI_EOK);
        }
        other => return Err(harness(format!("no out-parameter probe for {other}"))),
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}
