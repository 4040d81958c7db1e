//! Objects: the read protocol (`obj.read-protocol`, with `obj.size` and `obj.dir-symlink`, and
//! `mem.read-bounds`), changes while read, writes, visibility before close, closed handles.

use super::ffi::SENT;
use super::probe::{PR, Probe, harness, os, pattern};
use crate::pipeline::{read_all, under};
use crate::worker::{code_name, new_prop, pbytes, show};
use aapi_sdk::abi::*;

/// `obj.read-protocol`: buf_size 0 is `AAPI_EINVAL`; a small file read 7 bytes at a time and a
/// directory follow the protocol (and their sizes, `obj.size` and `obj.dir-symlink`).
pub fn read_protocol(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    let mut buf = [SENT; 16];
    let mut n = 0usize;
    let c = api.read_object(o, &mut buf, 0, &mut n);
    p.expect("aapi_read_object with buf_size 0", c, AAPI_EINVAL);
    let mut bad = false;
    let size = {
        let mut prop = new_prop();
        api.get_object_prop(o, &mut prop);
        prop.size
    };
    let data = read_all(p.ctx, &plugin, o, 7, size, &show(&p.small()), &mut bad)?;
    if !bad && data.len() as u64 != size {
        p.fail_as(
            "obj.size",
            format!(
                "{} bytes read with a 7-byte buffer, size property {size}",
                data.len()
            ),
        );
    }
    api.close_object(o);
    if let Some(d) = &p.objects().dir {
        let o = p.open_obj(&s, d)?;
        let data = read_all(p.ctx, &plugin, o, 64, 0, &show(d), &mut bad)?;
        if !data.is_empty() {
            p.fail_as(
                "obj.dir-symlink",
                format!("directory {} gave {} bytes", show(d), data.len()),
            );
        }
        api.close_object(o);
    }
    p.ctx.ran("obj.dir-symlink");
    p.ctx.ran("obj.size");
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `mem.read-bounds`: reads with buffers of 1, 13 and 4096 bytes (guard bytes checked by
/// [`read_all`]).
pub fn read_bounds(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    for size in [1usize, 13, 4096] {
        let o = p.open_obj(&s, &p.small())?;
        let mut bad = false;
        read_all(
            p.ctx,
            &plugin,
            o,
            size,
            p.cap(&p.small()) / 2,
            &show(&p.small()),
            &mut bad,
        )?;
        api.close_object(o);
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `obj.changed`: a file that grows while read gives `AAPI_ECHANGED`; a file deleted before
/// open gives `AAPI_ENOENT` (files workload).
pub fn changed(p: &Probe) -> PR {
    if !p.setup().files {
        p.skip(crate::profile::no_files_reason(
            "change a file while the plugin reads it, nor delete one before it is opened",
            "OBJ-4",
        ));
        return Ok(());
    }
    let dir = p.dir("changing")?;
    let f = dir.join("changing.bin");
    std::fs::write(&f, vec![7u8; 256 * 1024]).map_err(harness)?;
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &pbytes(&f))?;
    let mut buf = vec![0u8; 16 * 1024];
    let len = buf.len();
    let mut n = 0usize;
    p.require("the first read", api.read_object(o, &mut buf, len, &mut n))?;
    {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .map_err(harness)?;
        w.write_all(&[9u8; 4096]).map_err(harness)?;
    }
    let mut total = n;
    let verdict = loop {
        let c = api.read_object(o, &mut buf, len, &mut n);
        if c == AAPI_ECHANGED {
            break None;
        }
        if c != AAPI_EOK {
            break Some(format!(
                "a read returned {}, expected AAPI_ECHANGED",
                code_name(c)
            ));
        }
        if n == 0 {
            break Some(format!(
                "the file grew while read, and the reads ended with end of data after {total} bytes instead of AAPI_ECHANGED"
            ));
        }
        total += n;
        if total > 4 << 20 {
            p.fail_as(
                "obj.read-protocol",
                "a growing file gave no end of data after 4 MiB",
            );
            break None;
        }
    };
    if let Some(v) = verdict {
        p.fail(v);
    }
    api.close_object(o);
    let gone = dir.join("vanished.txt");
    std::fs::write(&gone, b"soon gone").map_err(harness)?;
    std::fs::remove_file(&gone).map_err(harness)?;
    p.expect_code(
        "aapi_open_object of a vanished object",
        s.open_object(&pbytes(&gone)),
        AAPI_ENOENT,
    );
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `obj.write`: writes of 0 bytes succeed; every byte written is taken.
pub fn write(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "write")?;
    let target = under(&root, b"/written.bin");
    let o = p.create(&r, &target, AAPI_OBJ_FILE, 0)?;
    let data = pattern(100 * 1024 + 8, 3);
    let c = api.write_object(o, &data, 0);
    p.expect("aapi_write_object with len 0", c, AAPI_EOK);
    api.write_all(o, &data[..1])?;
    api.write_all(o, &data[1..])?;
    let c = api.write_object(o, &data, 0);
    p.expect("aapi_write_object with len 0 after data", c, AAPI_EOK);
    let c = api.close_object(o);
    p.expect("aapi_close_object of the written object", c, AAPI_EOK);
    // The bytes themselves are RST-4's (data.roundtrip); here: every byte was taken.
    let (c, prop) = api.byname(r.handle(), &target);
    if c == AAPI_EOK && prop.valid & AAPI_PROP_SIZE != 0 && prop.size != data.len() as u64 {
        p.fail(format!(
            "{} bytes written in three calls, the object has {}",
            data.len(),
            prop.size
        ));
    }
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// `obj.invisible-until-close`: written and flushed data shows under the path only after
/// close.
pub fn invisible(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "invisible")?;
    let target = under(&root, b"/invisible.txt");
    let data = pattern(5000, 9);
    let o = p.create(&r, &target, AAPI_OBJ_FILE, 0)?;
    api.write_all(o, &data)?;
    api.flush(o);
    let (c, prop) = api.byname(r.handle(), &target);
    if c == AAPI_EOK && prop.size == data.len() as u64 {
        p.fail("before aapi_close_object, aapi_get_object_prop_byname already reports the written data under the path");
    }
    if p.setup().files
        && let Ok(on_disk) = std::fs::read(os(&target))
        && on_disk == data
    {
        p.fail("before aapi_close_object, the data is on disk under the path");
    }
    let c = api.close_object(o);
    p.expect("aapi_close_object", c, AAPI_EOK);
    let (c, prop) = api.byname(r.handle(), &target);
    if c != AAPI_EOK || prop.size != data.len() as u64 {
        p.fail(format!(
            "after aapi_close_object, byname gives {} with size {}",
            code_name(c),
            prop.size
        ));
    }
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// `obj.close-invalidates`: a closed object handle is bad, also to a second close.
pub fn close_invalidates(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let o = p.open_obj(&s, &p.small())?;
    p.expect("aapi_close_object", api.close_object(o), AAPI_EOK);
    p.expect(
        "a second aapi_close_object",
        api.close_object(o),
        AAPI_EBADHANDLE,
    );
    let c = api.try_read(o);
    p.expect("aapi_read_object on a closed object", c, AAPI_EBADHANDLE);
    let c = api.get_object_prop(o, &mut new_prop());
    p.expect(
        "aapi_get_object_prop on a closed object",
        c,
        AAPI_EBADHANDLE,
    );
    drop(s);
    plugin.terminate()?;
    Ok(())
}
