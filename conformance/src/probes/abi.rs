//! ABI versions and struct sizes: `abi.init-major`, `abi.struct-size`, `abi.struct-bounds`,
//! `abi.struct-read`.

use super::ffi::{
    AtPageEnd, Guarded, Larger, host_info, is_sentinel, object_prop_with_mode, plugin_info,
    raw_session, restore_info, sentinel, server_info,
};
use super::probe::{PR, Probe, harness};
use crate::pipeline::under;
use crate::worker::{code_name, cpath, new_prop};
use aapi_sdk::abi::*;
use std::ffi::c_int;

/// `abi.init-major`: another host ABI major is refused without writing `plugin_info`.
pub fn init_major(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let mut hi = host_info(p.ctx);
    hi.abi_major = AAPI_ABI_MAJOR + 1;
    let mut pi = plugin_info();
    sentinel(&mut pi, 4);
    let c = api.pgn_init(&hi, &mut pi);
    p.expect(
        &format!("aapi_pgn_init with host abi_major {}", hi.abi_major),
        c,
        AAPI_EABI,
    );
    if !is_sentinel(&pi, 4) {
        p.fail("aapi_pgn_init wrote plugin_info while refusing the host's ABI major");
    }
    let hi = host_info(p.ctx);
    let mut pi = plugin_info();
    let c = api.pgn_init(&hi, &mut pi);
    p.expect("aapi_pgn_init after a refused one", c, AAPI_EOK);
    api.terminate();
    Ok(())
}

/// `abi.struct-size`: every struct whose `struct_size` is below its ABI 1.0 size is refused, and
/// every struct 64 bytes larger (as a newer 1.x framework passes it) is accepted.
pub fn struct_size(p: &Probe) -> PR {
    struct_size_smaller(p)?;
    struct_size_larger(p)
}

/// What a plugin that refuses a larger struct breaks, for the findings of [`struct_size_larger`].
const NEWER: &str = "expected AAPI_EOK: a newer 1.x framework passes larger structs, and a plugin uses the fields it knows and ignores the rest (ABI-4, contract section 16)";

/// The larger half of [`struct_size`]: every struct passed in, and every out-struct, with a
/// `struct_size` 64 bytes above the ABI 1.0 size (the extra bytes zero) is accepted.
fn struct_size_larger(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let expect_ok = |what: &str, c: c_int| {
        if c != AAPI_EOK {
            p.fail(format!("{what} returned {}, {NEWER}", code_name(c)));
        }
    };
    let hi = Larger::new(host_info(p.ctx));
    let mut pi = plugin_info();
    let c = api.pgn_init(&hi, &mut pi);
    expect_ok(
        &format!("aapi_pgn_init with host_info.struct_size {}", hi.size()),
        c,
    );
    if c == AAPI_EOK {
        api.terminate();
    }
    let plugin = p.plugin()?;
    let mut ops = vec![AAPI_OP_BACKUP];
    if p.has(AAPI_CAP_RESTORE) {
        ops.push(AAPI_OP_RESTORE);
    }
    for op in ops {
        // The plugin may keep the definition until the session is closed.
        let def: &'static Larger<aapi_session_def_t> =
            Box::leak(Box::new(Larger::new(raw_session(p.ctx, op).def)));
        let mut h: aapi_server_t = 0;
        let c = api.open_server(&p.server_name(), def, &mut h);
        expect_ok(
            &format!("aapi_open_server with session.struct_size {}", def.size()),
            c,
        );
        if c != AAPI_EOK {
            continue;
        }
        let mut g = Guarded::new(server_info());
        g.v.struct_size += 64;
        let c = api.get_server_prop(h, &mut g);
        expect_ok(
            &format!(
                "aapi_get_server_prop with server_info.struct_size {}",
                g.v.struct_size
            ),
            c,
        );
        if op == AAPI_OP_RESTORE {
            let root = p.dir("abi4-larger")?;
            let rootc = p.target_root(&root);
            let ri = Larger::new(restore_info(&rootc));
            let c = api.restore_preprocess(h, &ri);
            expect_ok(
                &format!(
                    "aapi_restore_preprocess with restore_info.struct_size {}",
                    ri.size()
                ),
                c,
            );
            if c == AAPI_EOK {
                let prop = Larger::new(object_prop_with_mode(AAPI_OBJ_FILE));
                let target = cpath(&under(&root, b"/abi4-larger.txt"));
                let mut o: aapi_object_t = 0;
                let c = api.create_object(h, &target, &prop, 0, &mut o);
                expect_ok(
                    &format!("aapi_create_object with prop.struct_size {}", prop.size()),
                    c,
                );
                api.close_if_ok(c, o);
                api.restore_postprocess(h, AAPI_EOK);
            }
        }
        api.close_server(h);
    }
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let mut g = Guarded::new(new_prop());
    g.v.struct_size += 64;
    let c = api.get_object_prop(o, &mut g);
    expect_ok(
        &format!(
            "aapi_get_object_prop with prop.struct_size {}",
            g.v.struct_size
        ),
        c,
    );
    let path = cpath(&p.small());
    let mut g = Guarded::new(new_prop());
    g.v.struct_size += 64;
    let c = api.get_object_prop_byname(s.handle(), &path, &mut g);
    expect_ok(
        &format!(
            "aapi_get_object_prop_byname with prop.struct_size {}",
            g.v.struct_size
        ),
        c,
    );
    api.close_object(o);
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// The smaller half of [`struct_size`].
fn struct_size_smaller(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    // The structs are full size; only struct_size claims less.
    let mut hi = host_info(p.ctx);
    hi.struct_size = 8;
    let mut pi = plugin_info();
    let c = api.pgn_init(&hi, &mut pi);
    p.expect("aapi_pgn_init with host_info.struct_size 8", c, AAPI_EABI);
    if c == AAPI_EOK {
        api.terminate();
    }
    let hi = host_info(p.ctx);
    let mut pi = plugin_info();
    pi.struct_size = 8;
    let c = api.pgn_init(&hi, &mut pi);
    p.expect("aapi_pgn_init with plugin_info.struct_size 8", c, AAPI_EABI);
    if c == AAPI_EOK {
        api.terminate();
    }
    let plugin = p.plugin()?;
    let rs = raw_session(p.ctx, AAPI_OP_BACKUP);
    rs.def.struct_size = 8;
    let mut h: aapi_server_t = 0;
    let c = api.open_server(&p.server_name(), &rs.def, &mut h);
    p.expect("aapi_open_server with session.struct_size 8", c, AAPI_EABI);
    if c == AAPI_EOK {
        api.close_server(h);
    }
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let mut si = aapi_server_info_t {
        struct_size: 4,
        ..Default::default()
    };
    let c = api.get_server_prop(s.handle(), &mut si);
    p.expect(
        "aapi_get_server_prop with server_info.struct_size 4",
        c,
        AAPI_EABI,
    );
    let o = p.open_obj(&s, &p.small())?;
    let mut prop = new_prop();
    prop.struct_size = 8;
    let c = api.get_object_prop(o, &mut prop);
    p.expect("aapi_get_object_prop with prop.struct_size 8", c, AAPI_EABI);
    let path = cpath(&p.small());
    let mut prop = new_prop();
    prop.struct_size = 8;
    let c = api.get_object_prop_byname(s.handle(), &path, &mut prop);
    p.expect(
        "aapi_get_object_prop_byname with prop.struct_size 8",
        c,
        AAPI_EABI,
    );
    api.close_object(o);
    drop(s);
    if p.has(AAPI_CAP_RESTORE) {
        let r = p.session(&plugin, AAPI_OP_RESTORE)?;
        let root = p.dir("root")?;
        let rootc = p.target_root(&root);
        let ri = aapi_restore_info_t {
            struct_size: 8,
            ..restore_info(&rootc)
        };
        let c = api.restore_preprocess(r.handle(), &ri);
        p.expect(
            "aapi_restore_preprocess with restore_info.struct_size 8",
            c,
            AAPI_EABI,
        );
        drop(r);
        let (r, root) = p.restore(&plugin, "root2")?;
        let target = cpath(&under(&root, b"/abi4.txt"));
        let mut prop = new_prop();
        prop.struct_size = 8;
        prop.obj_type = AAPI_OBJ_FILE;
        let mut o: aapi_object_t = 0;
        let c = api.create_object(r.handle(), &target, &prop, 0, &mut o);
        p.expect("aapi_create_object with prop.struct_size 8", c, AAPI_EABI);
        api.close_if_ok(c, o);
        let _ = r.restore_postprocess(AAPI_EOK);
    }
    plugin.terminate()?;
    Ok(())
}

/// `abi.struct-bounds`: out-structs declared at and 64 bytes above their ABI 1.0 size leave
/// the bytes after it alone.
pub fn struct_bounds(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    for extra in [0u32, 64] {
        let hi = host_info(p.ctx);
        let mut g = Guarded::new(plugin_info());
        g.v.struct_size += extra;
        let c = api.pgn_init(&hi, &mut g);
        if c == AAPI_EOK {
            if !g.intact() {
                p.fail(format!(
                    "aapi_pgn_init wrote past the ABI 1.0 aapi_plugin_info_t (struct_size {})",
                    g.v.struct_size
                ));
            }
            api.terminate();
        } else {
            p.fail(format!(
                "aapi_pgn_init with struct_size {} returned {}",
                g.v.struct_size,
                code_name(c)
            ));
        }
    }
    let plugin = p.plugin()?;
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let path = cpath(&p.small());
    let wrote_past = |c: c_int, intact: bool, what: &str, size: u32| {
        if c == AAPI_EOK && !intact {
            p.fail(format!("{what} (struct_size {size})"));
        }
    };
    for extra in [0u32, 64] {
        let mut g = Guarded::new(aapi_server_info_t::default());
        g.v.struct_size = size_of::<aapi_server_info_t>() as u32 + extra;
        let c = api.get_server_prop(s.handle(), &mut g);
        wrote_past(
            c,
            g.intact(),
            "aapi_get_server_prop wrote past aapi_server_info_t",
            g.v.struct_size,
        );
        let mut g = Guarded::new(new_prop());
        g.v.struct_size += extra;
        let c = api.get_object_prop(o, &mut g);
        wrote_past(
            c,
            g.intact(),
            "aapi_get_object_prop wrote past aapi_object_prop_t",
            g.v.struct_size,
        );
        let mut g = Guarded::new(new_prop());
        g.v.struct_size += extra;
        let c = api.get_object_prop_byname(s.handle(), &path, &mut g);
        wrote_past(
            c,
            g.intact(),
            "aapi_get_object_prop_byname wrote past aapi_object_prop_t",
            g.v.struct_size,
        );
    }
    api.close_object(o);
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `abi.struct-read`: the structs passed in (host info, session definitions, restore info,
/// object properties) are read no further than their `struct_size`. Each ends where an
/// unreadable page begins, so a read past it (a plugin built against a newer header reading a
/// field the framework's struct does not have) crashes in the call that made it.
pub fn struct_read(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let hi = AtPageEnd::new(host_info(p.ctx)).map_err(harness)?;
    let mut pi = plugin_info();
    let c = api.pgn_init(&*hi, &mut pi);
    p.expect("aapi_pgn_init with a whole host_info", c, AAPI_EOK);
    if c == AAPI_EOK {
        api.terminate();
    }
    let plugin = p.plugin()?;
    let mut ops = vec![AAPI_OP_BACKUP];
    if p.has(AAPI_CAP_RESTORE) {
        ops.push(AAPI_OP_RESTORE);
    }
    for op in ops {
        let def = AtPageEnd::new(raw_session(p.ctx, op).def).map_err(harness)?;
        let mut h: aapi_server_t = 0;
        let c = api.open_server(&p.server_name(), &*def, &mut h);
        if !p.expect(
            "aapi_open_server with a whole session definition",
            c,
            AAPI_EOK,
        ) {
            continue;
        }
        // The plugin may keep the definition: calls in the session may read it too.
        let mut si = server_info();
        api.get_server_prop(h, &mut si);
        if op == AAPI_OP_RESTORE {
            let root = p.dir("abi5")?;
            let rootc = p.target_root(&root);
            let ri = AtPageEnd::new(restore_info(&rootc)).map_err(harness)?;
            let c = api.restore_preprocess(h, &*ri);
            if p.expect(
                "aapi_restore_preprocess with a whole restore_info",
                c,
                AAPI_EOK,
            ) {
                let prop = AtPageEnd::new(object_prop_with_mode(AAPI_OBJ_FILE)).map_err(harness)?;
                let target = cpath(&under(&root, b"/abi5.txt"));
                let mut o: aapi_object_t = 0;
                let c = api.create_object(h, &target, &*prop, 0, &mut o);
                if p.expect("aapi_create_object with whole properties", c, AAPI_EOK) {
                    api.close_object(o);
                }
                api.restore_postprocess(h, AAPI_EOK);
            }
        }
        api.close_server(h);
    }
    plugin.terminate()?;
    Ok(())
}
