//! Return codes: empty strings and unknown flags, the size in/out buffer rules, unknown paths,
//! schedules, the last error message, failed creates (the rest of the `rc` group).

use super::ffi::{DiscoveryC, NULL, SENT, empty_snapid, object_prop, raw_session, ts};
use super::probe::{PR, Probe, dir_is_empty, discovery_args, os};
use crate::pipeline::under;
use crate::worker::{code_name, cpath, new_prop, show};
use aapi_host::client::DiscoveryArgs;
use aapi_sdk::abi::*;

/// `rc.empty-and-flags`: empty strings, unknown flag bits and enumeration values out of range
/// are `AAPI_EINVAL`.
pub fn empty_and_flags(p: &Probe) -> PR {
    let plugin = p.init_only()?;
    let api = p.api(plugin.entry_points());
    p.expect("aapi_pgn_claim(\"\")", api.pgn_claim(c""), AAPI_EINVAL);
    plugin.claim(&p.setup().workload_type)?;
    let mut h = 0u64;
    let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
    let c = api.open_server(c"", &rs.def, &mut h);
    p.expect("aapi_open_server with server \"\"", c, AAPI_EINVAL);
    for op in [0u32, 99] {
        let rs = raw_session(p.ctx, op);
        let c = api.open_server(&p.server_name(), &rs.def, &mut h);
        p.expect(
            &format!("aapi_open_server with sd_operation {op}"),
            c,
            AAPI_EINVAL,
        );
    }
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let sh = s.handle();
    let file = cpath(&p.small());
    for (what, path, flags) in [
        ("path \"\"", c"".to_owned(), AAPI_OPEN_READ),
        ("flags 0", file.clone(), 0),
        ("an unknown flag bit", file.clone(), AAPI_OPEN_READ | 0x80),
    ] {
        let c = api.open_object(sh, &path, flags, &mut h);
        api.close_if_ok(c, h);
        p.expect(&format!("aapi_open_object with {what}"), c, AAPI_EINVAL);
    }
    let c = api.get_object_prop_byname(sh, c"", &mut new_prop());
    p.expect("aapi_get_object_prop_byname with path \"\"", c, AAPI_EINVAL);
    let mut buf = [0u8; 64];
    let mut size = 64usize;
    let c = api.get_snappath_from_realpath(sh, c"", c"", &mut buf, &mut size);
    p.expect(
        "aapi_get_snappath_from_realpath with realpath \"\"",
        c,
        AAPI_EINVAL,
    );
    drop(s);
    for (what, sel, hosts) in [
        ("selections {\"\"}", vec![Vec::new()], vec!["h1"]),
        ("backuphosts {\"\"}", p.small_selection(), vec![""]),
    ] {
        let out = p.dir(&format!("empty-{}", what.len()))?;
        let d = DiscoveryC::new(&sel, &hosts, &out);
        let s = p.session(&plugin, AAPI_OP_DISCOVERY)?;
        let c = api.discovery_with(s.handle(), &d, AAPI_SCHED_FULL, &mut empty_snapid());
        p.expect(&format!("aapi_discovery with {what}"), c, AAPI_EINVAL);
    }
    if p.has(AAPI_CAP_RESTORE) {
        let (s, root) = p.restore(&plugin, "flags")?;
        let sh = s.handle();
        let target = cpath(&under(&root, b"/flags.txt"));
        let cprop = object_prop(AAPI_OBJ_FILE);
        let bad_type = object_prop(99);
        for (what, path, prop, flags) in [
            ("path \"\"", c"".to_owned(), cprop, 0),
            ("an unknown flag bit", target.clone(), cprop, 0x80),
            ("obj_type 99", target.clone(), bad_type, 0),
        ] {
            let c = api.create_object(sh, &path, &prop, flags, &mut h);
            api.close_if_ok(c, h);
            p.expect(&format!("aapi_create_object with {what}"), c, AAPI_EINVAL);
        }
        p.expect(
            "aapi_delete_object with path \"\"",
            api.delete_object(sh, c""),
            AAPI_EINVAL,
        );
        p.expect(
            "aapi_set_object_utimes with path \"\"",
            api.set_object_utimes(sh, c"", NULL, NULL),
            AAPI_EINVAL,
        );
        let _ = s.restore_postprocess(AAPI_EOK);
    }
    plugin.terminate()?;
    Ok(())
}

/// `rc.buffer.snappath`: the size in/out rules of `aapi_get_snappath_from_realpath`.
pub fn buffer_snappath(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let sh = s.handle();
    let real_path = p.small();
    let real = cpath(&real_path);
    // What the plugin maps the path to (DISC-6 judges that); here only the buffer rules.
    let path = s.snappath("", &real_path)?;
    let need = path.len() + 1;
    let call = |buf: Option<&mut [u8]>, size: &mut usize| {
        api.get_snappath_from_realpath(sh, c"", &real, buf, size)
    };
    let mut size = 0usize;
    let c = call(None, &mut size);
    p.expect("a size query (NULL buffer, size 0)", c, AAPI_EBUFSIZE);
    if c == AAPI_EBUFSIZE && size != need {
        p.fail(format!(
            "the size query reported {size}, the path needs {need}"
        ));
    }
    let mut buf = vec![SENT; need + 64];
    let mut size = need - 1;
    let c = call(Some(&mut buf), &mut size);
    p.expect(
        &format!("a buffer of {} bytes for a path of {need}", need - 1),
        c,
        AAPI_EBUFSIZE,
    );
    if c == AAPI_EBUFSIZE && size != need {
        p.fail(format!(
            "AAPI_EBUFSIZE reported size {size}, the path needs {need}"
        ));
    }
    if buf.iter().any(|&b| b != SENT) {
        p.fail("the too-small buffer was written");
    }
    let mut buf = vec![SENT; need + 64];
    let mut size = need;
    let c = call(Some(&mut buf), &mut size);
    p.expect(&format!("a buffer of exactly {need} bytes"), c, AAPI_EOK);
    if c == AAPI_EOK {
        if size != need {
            p.fail(format!(
                "AAPI_EOK reported size {size}, expected {need} (NUL included)"
            ));
        }
        if buf[..need - 1] != path[..] || buf[need - 1] != 0 {
            p.fail("the path written is not the NUL-terminated path a large buffer gets");
        }
    }
    if buf[need..].iter().any(|&b| b != SENT) {
        p.fail(format!("bytes past the declared size {need} were written"));
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `rc.buffer.last-error`: the size in/out rules of `aapi_get_last_error`.
pub fn buffer_last_error(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let _ = s.open_object(&p.missing());
    let mut need = 0usize;
    let c = api.get_last_error(NULL, &mut need);
    p.expect("aapi_get_last_error size query (NULL, 0)", c, AAPI_EBUFSIZE);
    if c != AAPI_EBUFSIZE || need == 0 {
        p.fail(format!("the size query reported size {need}"));
        return Ok(());
    }
    if need > 1 {
        let mut buf = vec![SENT; need + 64];
        let mut size = need - 1;
        let c = api.get_last_error(&mut buf, &mut size);
        p.expect(
            &format!("aapi_get_last_error with {} of {need} bytes", need - 1),
            c,
            AAPI_EBUFSIZE,
        );
        if size != need {
            p.fail(format!(
                "AAPI_EBUFSIZE reported size {size}, the size query {need}"
            ));
        }
        if buf.iter().any(|&b| b != SENT) {
            p.fail("the too-small buffer was written");
        }
    }
    let mut buf = vec![SENT; need + 64];
    let mut size = need;
    let c = api.get_last_error(&mut buf, &mut size);
    p.expect(
        &format!("aapi_get_last_error with exactly {need} bytes"),
        c,
        AAPI_EOK,
    );
    if c == AAPI_EOK && (size != need || buf[need - 1] != 0) {
        p.fail(format!(
            "AAPI_EOK with size {size}: expected {need} with the NUL last"
        ));
    }
    if buf[need..].iter().any(|&b| b != SENT) {
        p.fail(format!("bytes past the declared size {need} were written"));
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `rc.unknown-path`: a path that names nothing is `AAPI_ENOENT`.
pub fn unknown_path(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let missing = p.missing();
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    p.expect_code(
        &format!("aapi_open_object({})", show(&missing)),
        s.open_object(&missing),
        AAPI_ENOENT,
    );
    p.expect_code(
        &format!("aapi_get_object_prop_byname({})", show(&missing)),
        s.prop_byname(&missing),
        AAPI_ENOENT,
    );
    drop(s);
    let out = p.dir("missing-sel")?;
    let hosts = vec!["h1".to_string()];
    let sel = vec![missing.clone()];
    let ds = p.session(&plugin, AAPI_OP_DISCOVERY)?;
    let r = ds.discovery(&discovery_args(&sel, &hosts, &out));
    p.expect_code("aapi_discovery of a missing selection", r, AAPI_ENOENT);
    drop(ds);
    if p.has(AAPI_CAP_RESTORE) {
        let (r, root) = p.restore(&plugin, "enoent")?;
        let target = under(&root, b"/no/such/object");
        p.expect_code(
            "aapi_delete_object of a missing path",
            r.delete_object(&target),
            AAPI_ENOENT,
        );
        let t = ts(1_000_000_000, 0);
        p.expect_code(
            "aapi_set_object_utimes of a missing path",
            r.set_utimes(&target, Some(t), Some(t)),
            AAPI_ENOENT,
        );
        let _ = r.restore_postprocess(AAPI_EOK);
    }
    plugin.terminate()?;
    Ok(())
}

/// `rc.schedules`: discovery works exactly for the schedules the server declares.
pub fn schedules(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let flags = p.session(&plugin, AAPI_OP_DISCOVERY)?.server_prop()?;
    let sel = p.small_selection();
    let hosts = vec!["h1".to_string()];
    let cases = [
        (AAPI_SCHED_FULL, flags & AAPI_SRVC_FULL_BACKUP_SUPPORT != 0),
        (AAPI_SCHED_INCR, flags & AAPI_SRVC_INCR_BACKUP_SUPPORT != 0),
        (AAPI_SCHED_CINC, flags & AAPI_SRVC_CINC_BACKUP_SUPPORT != 0),
        (0, false),
        (4, false),
        (99, false),
    ];
    for (sched, supported) in cases {
        let out = p.dir(&format!("sched-{sched}"))?;
        let args = DiscoveryArgs {
            schedule: sched,
            ..discovery_args(&sel, &hosts, &out)
        };
        let mut def = p.ctx.session_def(AAPI_OP_DISCOVERY);
        if supported {
            def.schedule = sched;
        }
        let s = plugin.open_server(&p.setup().server, def)?;
        let r = s.discovery(&args);
        drop(s);
        match (r, supported) {
            (Ok(snap), true) => {
                let pp = p.postprocess_session(&plugin, &snap)?;
                let _ = pp.postprocess(&args, &snap);
            }
            (Ok(snap), false) => {
                p.fail(format!("schedule {sched} is not declared by aapi_get_server_prop (flags {flags:#x}) but discovery accepted it"));
                let pp = p.postprocess_session(&plugin, &snap)?;
                let _ = pp.postprocess(&args, &snap);
            }
            (Err(e), true) => p.fail(format!(
                "schedule {sched} is declared supported but discovery failed: {e}"
            )),
            (Err(e), false) => {
                p.expect(
                    &format!("aapi_discovery with schedule {sched}"),
                    e.code().unwrap_or(-1),
                    AAPI_ESCHED_NOT_SUPPORTED,
                );
                if !dir_is_empty(&out) {
                    p.fail(format!(
                        "aapi_discovery with unsupported schedule {sched} wrote files"
                    ));
                }
            }
        }
    }
    plugin.terminate()?;
    Ok(())
}

/// `rc.last-error` (and `rc.last-error-message`): a failing call leaves a non-empty message,
/// per thread, "" on a thread that never failed, kept by a successful call, and naming the path.
pub fn last_error(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let missing = p.missing();
    let name = show(&missing);
    let _ = s.open_object(&missing);
    let mine = api.last_error();
    if mine.is_empty() {
        // RC-9: the message of the last failing call; "" means that no call failed.
        p.fail(format!(
            "a failing aapi_open_object({name}) left aapi_get_last_error empty (\"\" means that no call failed): a failing call sets a non-empty message"
        ));
        p.fail_as(
            "rc.last-error-message",
            "a failing aapi_open_object left an empty message",
        );
    } else {
        let file = missing.rsplit(|&b| b == b'/').next().unwrap_or(&missing);
        if !mine.contains(&*String::from_utf8_lossy(file)) {
            p.fail_as(
                "rc.last-error-message",
                format!("the message of a failing aapi_open_object({name}) does not name the path: {mine:?}"),
            );
        }
    }
    let (other, fresh) = std::thread::scope(|sc| {
        let a = sc.spawn(|| {
            let mut buf = [0u8; 8];
            let mut n = 0usize;
            api.read_object(0, &mut buf, 8, &mut n);
            api.last_error()
        });
        let b = sc.spawn(|| api.last_error());
        (a.join().unwrap_or_default(), b.join().unwrap_or_default())
    });
    if !fresh.is_empty() {
        p.fail(format!(
            "a thread that never failed a call gets {fresh:?}, expected \"\""
        ));
    }
    if other.is_empty() {
        p.fail(
            "a failing aapi_read_object (handle 0) left aapi_get_last_error empty on its thread (\"\" means that no call failed): a failing call sets a non-empty message",
        );
        p.fail_as(
            "rc.last-error-message",
            "a failing aapi_read_object left an empty message",
        );
    }
    let again = api.last_error();
    if again != mine && mine != other {
        p.fail(format!(
            "after another thread failed, this thread's message changed from {mine:?} to {again:?}"
        ));
    }
    s.server_prop()?;
    let after_ok = api.last_error();
    if after_ok != mine {
        p.fail(format!(
            "a successful call changed the message from {mine:?} to {after_ok:?}"
        ));
    }
    // The last failing call's message, not the first's: a second failure, on another path.
    let mut second = missing.clone();
    second.extend_from_slice(b"-again");
    let _ = s.open_object(&second);
    let last = api.last_error();
    let file = missing.rsplit(|&b| b == b'/').next().unwrap_or(&missing);
    if !mine.is_empty() && last == mine && mine.contains(&*String::from_utf8_lossy(file)) {
        p.fail(format!(
            "a second failing aapi_open_object({}) left the first one's message {mine:?}: the message is the last failing call's",
            show(&second)
        ));
    }
    p.ctx.ran("rc.last-error-message");
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `rc.failed-create`: a failing create leaves nothing visible under its path.
pub fn failed_create(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "rc11")?;
    for (what, flags, obj_type) in [
        ("an unknown flag bit", 0x80u32, AAPI_OBJ_FILE),
        ("obj_type 99", 0, 99),
    ] {
        let target = under(&root, format!("/rc11-{obj_type}").as_bytes());
        let t = cpath(&target);
        let mut o: u64 = 0;
        let c = api.create_object(r.handle(), &t, &object_prop(obj_type), flags, &mut o);
        if c == AAPI_EOK {
            api.close_object(o);
            continue;
        }
        let (bc, _) = api.byname(r.handle(), &target);
        if bc != AAPI_ENOENT {
            p.fail(format!("after a failed aapi_create_object ({what}) the path gives {} to byname, expected AAPI_ENOENT", code_name(bc)));
        }
        if p.setup().files && std::fs::symlink_metadata(os(&target)).is_ok() {
            p.fail(format!(
                "a failed aapi_create_object ({what}) left {} on disk",
                show(&target)
            ));
        }
    }
    let _ = r.restore_postprocess(AAPI_EOK);
    drop(r);
    plugin.terminate()?;
    Ok(())
}
