//! Worker side of the data checks: discovery, backup child job, postprocess and restore tasks.
//!
//! Plugin failures are reported as `{"error": ...}` outputs (the runner attributes them to the
//! step's check); stream and boundary violations seen while reading are findings of their own
//! checks. An `Err` is a failure of the runner itself.

use crate::task::*;
use crate::worker::{Ctx, code_name, show};
use aapi_host::client::{DiscoveryArgs, Plugin, Server};
use aapi_sdk::abi::*;
use aapi_sdk::workload::WorkloadFile;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::ffi::c_void;
use std::path::{Path, PathBuf};

/// Size of the read buffer of backups.
pub const READ_BUF: usize = 64 * 1024;
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xA5;

fn error(ctx: &Ctx, e: impl std::fmt::Display) {
    ctx.output(json!({ "error": e.to_string() }));
}

fn start(ctx: &Ctx) -> Option<Plugin> {
    match ctx.plugin() {
        Ok(p) => Some(p),
        Err(e) => {
            error(ctx, e);
            None
        }
    }
}

fn finish(ctx: &Ctx, plugin: &Plugin) {
    if let Err(e) = plugin.terminate() {
        error(ctx, e);
    }
}

/// A discovery session.
pub fn discover_task(
    ctx: &Ctx,
    out: &Path,
    selections: &[Vec<u8>],
    hosts: &[String],
    schedule: u32,
    properties: &[(String, String)],
    job: &str,
) -> Result<(), String> {
    let Some(plugin) = start(ctx) else {
        return Ok(());
    };
    let mut def = ctx.session_def(AAPI_OP_DISCOVERY);
    def.schedule = schedule;
    def.job_id = job.to_string();
    def.properties.extend(properties.iter().cloned());
    let info = plugin.info().clone();
    let result = (|| {
        let server = plugin
            .open_server(&ctx.spec.setup.server, def)
            .map_err(|e| e.to_string())?;
        let flags = server.server_prop().map_err(|e| e.to_string())?;
        let args = DiscoveryArgs {
            selections,
            backup_hosts: hosts,
            workload_dir: out,
            suffix: ".wkld",
            schedule,
        };
        let snapid = server.discovery(&args).map_err(|e| e.to_string())?;
        server.close().map_err(|e| e.to_string())?;
        Ok::<_, String>((flags, snapid))
    })();
    match result {
        Ok((flags, snapid)) => ctx.output(json!({
            "srv_flags": flags,
            "snapid": snapid,
            "capabilities": info.capabilities,
            "max_concurrent": info.max_concurrent_objects,
        })),
        Err(e) => error(ctx, e),
    }
    finish(ctx, &plugin);
    Ok(())
}

/// Read one open object to its end with guard bytes after the buffer, checking OBJ-1 and MEM-4.
/// Returns the bytes, or `Err` with the failing call; `bad` is set when the stream broke OBJ-1.
pub fn read_all(
    ctx: &Ctx,
    plugin: &Plugin,
    handle: aapi_object_t,
    buf_size: usize,
    expect_max: u64,
    what: &str,
    bad: &mut bool,
) -> Result<Vec<u8>, String> {
    let e = *plugin.entry_points();
    let mut data = Vec::new();
    let mut buf = vec![0u8; buf_size + GUARD];
    let cap = expect_max.saturating_mul(2) + (4 * buf_size as u64).max(4096);
    loop {
        buf.fill(GUARD_BYTE);
        let mut n = usize::MAX;
        // SAFETY: buf holds buf_size + GUARD bytes; the plugin may write buf_size of them.
        let code = ctx.raw("aapi_read_object", || unsafe {
            (e.read_object)(handle, buf.as_mut_ptr() as *mut c_void, buf_size, &mut n)
        });
        if buf[buf_size..].iter().any(|&b| b != GUARD_BYTE) {
            ctx.fail(
                "mem.read-bounds",
                format!("aapi_read_object({what}, buf_size {buf_size}) wrote past the buffer"),
            );
        }
        if code != AAPI_EOK {
            let detail = plugin.last_error();
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            return Err(format!(
                "aapi_read_object({what}) returned {}{detail} after {} bytes",
                code_name(code),
                data.len()
            ));
        }
        if n > buf_size {
            ctx.fail(
                "obj.read-protocol",
                format!(
                    "aapi_read_object({what}) reported {n} bytes read into a buffer of {buf_size}"
                ),
            );
            *bad = true;
            return Ok(data);
        }
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        if data.len() as u64 > cap {
            ctx.fail(
                "obj.read-protocol",
                format!(
                    "aapi_read_object({what}) gave no end of data after {} bytes (size property {expect_max})",
                    data.len()
                ),
            );
            *bad = true;
            return Ok(data);
        }
    }
    let mut n = usize::MAX;
    // SAFETY: as above.
    let code = ctx.raw("aapi_read_object", || unsafe {
        (e.read_object)(handle, buf.as_mut_ptr() as *mut c_void, buf_size, &mut n)
    });
    if code != AAPI_EOK || n != 0 {
        ctx.fail(
            "obj.read-protocol",
            format!(
                "aapi_read_object({what}) after end of data returned {} with {n} bytes, expected AAPI_EOK with 0",
                code_name(code)
            ),
        );
        *bad = true;
    }
    Ok(data)
}

/// A backup child job over one workload file.
pub fn backup_task(ctx: &Ctx, workload: &Path, image: &Path, job: &str) -> Result<(), String> {
    let wf = WorkloadFile::read_from_path(workload)
        .map_err(|e| format!("{}: {e}", workload.display()))?;
    std::fs::create_dir_all(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let Some(plugin) = start(ctx) else {
        return Ok(());
    };
    let mut def = ctx.session_def(AAPI_OP_BACKUP);
    def.backup_host = wf.backup_host.clone();
    def.snapid = wf.snapshot.clone();
    def.job_id = job.to_string();
    let server = match plugin.open_server(&ctx.spec.setup.server, def) {
        Ok(s) => s,
        Err(e) => {
            error(ctx, e);
            finish(ctx, &plugin);
            return Ok(());
        }
    };
    if let Err(e) = server.server_prop() {
        error(ctx, e);
    }
    let mut objects = Vec::new();
    for (i, entry) in wf.entries.iter().enumerate() {
        if entry.flags & AAPI_WKLD_UNCHANGED != 0 {
            continue;
        }
        let path = crate::worker::pbytes(&entry.path);
        match backup_one(
            ctx,
            &plugin,
            &server,
            &wf.snapshot,
            &path,
            entry.flags,
            i,
            image,
        ) {
            Ok(o) => objects.push(o),
            Err(e) => error(ctx, e),
        }
    }
    if let Err(e) = server.close() {
        error(ctx, e);
    }
    finish(ctx, &plugin);
    let index = serde_json::to_vec(&objects).map_err(|e| e.to_string())?;
    std::fs::write(image.join(IMAGE_INDEX), index).map_err(|e| e.to_string())?;
    ctx.output(json!({ "objects": objects.len() }));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn backup_one(
    ctx: &Ctx,
    plugin: &Plugin,
    server: &Server,
    snapid: &str,
    path: &[u8],
    flags: u32,
    i: usize,
    image: &Path,
) -> Result<ImageObject, String> {
    let snappath = server.snappath(snapid, path).map_err(|e| e.to_string())?;
    if snapid.is_empty() && snappath != path {
        ctx.fail(
            "disc.snappath",
            format!(
                "aapi_get_snappath_from_realpath(\"\", {}) returned {}, expected the path unchanged",
                show(path),
                show(&snappath)
            ),
        );
    }
    let obj = server.open_object(&snappath).map_err(|e| e.to_string())?;
    let prop = obj.prop().map_err(|e| e.to_string())?;
    let mut bad = false;
    let data = read_all(
        ctx,
        plugin,
        obj.handle(),
        READ_BUF,
        prop.size,
        &show(path),
        &mut bad,
    )?;
    obj.close().map_err(|e| e.to_string())?;
    let name = format!("o{i:06}");
    std::fs::write(image.join(&name), &data).map_err(|e| format!("writing the image: {e}"))?;
    Ok(ImageObject {
        path: path.to_vec(),
        flags,
        prop: Prop::from(&prop),
        bytes: data.len() as u64,
        sha256: crate::tree::hex(&Sha256::digest(&data)),
        data: name,
        bad_stream: bad,
    })
}

/// A postprocess session, then the repeated and empty-id postprocess of DISC-7.
pub fn postprocess_task(
    ctx: &Ctx,
    out: &Path,
    snapid: &str,
    schedule: u32,
    job: &str,
) -> Result<(), String> {
    let Some(plugin) = start(ctx) else {
        return Ok(());
    };
    let selections = ctx.spec.setup.selections.clone();
    let hosts = ctx.spec.setup.hosts.clone();
    let args = DiscoveryArgs {
        selections: &selections,
        backup_hosts: &hosts,
        workload_dir: out,
        suffix: ".wkld",
        schedule,
    };
    let run = |id: &str| -> Result<(), String> {
        let mut def = ctx.session_def(AAPI_OP_POSTPROCESS);
        def.snapid = id.to_string();
        def.schedule = schedule;
        def.job_id = job.to_string();
        let s = plugin
            .open_server(&ctx.spec.setup.server, def)
            .map_err(|e| e.to_string())?;
        s.server_prop().map_err(|e| e.to_string())?;
        s.postprocess(&args, id).map_err(|e| e.to_string())?;
        s.close().map_err(|e| e.to_string())
    };
    match run(snapid) {
        Ok(()) => {
            if let Err(e) = run(snapid) {
                ctx.fail(
                    "disc.postprocess",
                    format!("a second postprocess of snapshot {snapid:?} failed: {e}"),
                );
            }
            if let Err(e) = run("") {
                ctx.fail(
                    "disc.postprocess",
                    format!("postprocess with an empty snapshot id failed: {e}"),
                );
            }
            ctx.output(json!({ "done": true }));
        }
        Err(e) => error(ctx, e),
    }
    finish(ctx, &plugin);
    Ok(())
}

/// Read the objects of the image directories whose child job completed, first occurrence of a
/// path wins, in path order.
pub fn read_images(images: &[PathBuf]) -> Result<Vec<(PathBuf, ImageObject)>, String> {
    let mut all: Vec<(PathBuf, ImageObject)> = Vec::new();
    for dir in images {
        if !dir.join(IMAGE_INDEX).exists() {
            // Its child job failed, and that was reported; the other images still count.
            continue;
        }
        let text =
            std::fs::read(dir.join(IMAGE_INDEX)).map_err(|e| format!("{}: {e}", dir.display()))?;
        let objs: Vec<ImageObject> = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        for o in objs {
            if !all.iter().any(|(_, a)| a.path == o.path) {
                all.push((dir.clone(), o));
            }
        }
    }
    all.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    Ok(all)
}

/// The restore path of `path` under `root`.
pub fn under(root: &Path, path: &[u8]) -> Vec<u8> {
    let mut t = crate::worker::pbytes(root);
    if !path.starts_with(b"/") {
        t.push(b'/');
    }
    t.extend_from_slice(path);
    t
}

/// A restore session of every object of the images under `root`.
pub fn restore_task(ctx: &Ctx, images: &[PathBuf], root: &Path) -> Result<(), String> {
    let objects = read_images(images)?;
    let Some(plugin) = start(ctx) else {
        return Ok(());
    };
    let server = match ctx.open(&plugin, AAPI_OP_RESTORE) {
        Ok(s) => s,
        Err(e) => {
            error(ctx, e);
            finish(ctx, &plugin);
            return Ok(());
        }
    };
    let total: u64 = objects.iter().map(|(_, o)| o.bytes).sum();
    let root_b = crate::worker::pbytes(root);
    if let Err(e) = server.restore_preprocess(&root_b, total, objects.len() as u64) {
        error(ctx, e);
        drop(server);
        finish(ctx, &plugin);
        return Ok(());
    }
    let mut restored = Vec::new();
    for (dir, o) in &objects {
        let target = under(root, &o.path);
        let data = std::fs::read(dir.join(&o.data)).map_err(|e| e.to_string())?;
        let mut prop = crate::worker::new_prop();
        prop.obj_type = o.prop.obj_type;
        prop.valid = o.prop.valid & (AAPI_PROP_MODE | AAPI_PROP_OWNER);
        prop.mode = o.prop.mode;
        prop.uid = o.prop.uid;
        prop.gid = o.prop.gid;
        let step = (|| {
            let mut obj = server
                .create_object(&target, &prop, 0)
                .map_err(|e| e.to_string())?;
            for chunk in data.chunks(READ_BUF) {
                obj.write(chunk).map_err(|e| e.to_string())?;
            }
            if o.prop.obj_type == AAPI_OBJ_FILE {
                obj.flush().map_err(|e| e.to_string())?;
            }
            obj.close().map_err(|e| e.to_string())?;
            server.prop_byname(&target).map_err(|e| e.to_string())
        })();
        match step {
            Ok(got) => {
                let mut wrong = Vec::new();
                if got.obj_type != o.prop.obj_type {
                    wrong.push(format!(
                        "type {} (created as {})",
                        got.obj_type, o.prop.obj_type
                    ));
                }
                if got.valid & AAPI_PROP_SIZE != 0
                    && got.obj_type != AAPI_OBJ_DIR
                    && got.size != data.len() as u64
                {
                    wrong.push(format!("size {} ({} bytes written)", got.size, data.len()));
                }
                if got.valid & AAPI_PROP_MODE != 0
                    && o.prop.valid & AAPI_PROP_MODE != 0
                    && o.prop.obj_type != AAPI_OBJ_SYMLINK
                    && got.mode != o.prop.mode
                {
                    wrong.push(format!(
                        "mode {:o} (created with {:o})",
                        got.mode, o.prop.mode
                    ));
                }
                if !wrong.is_empty() {
                    ctx.fail(
                        "rst.props",
                        format!(
                            "aapi_get_object_prop_byname({}) after close reports {}",
                            show(&target),
                            wrong.join(", ")
                        ),
                    );
                }
                restored.push((target, o.prop));
            }
            Err(e) => error(ctx, format!("restoring {}: {e}", show(&o.path))),
        }
    }
    // Times last, contents before their containers.
    for (target, p) in restored.iter().rev() {
        let t = |valid: u32, v: (i64, u32)| {
            (p.valid & valid != 0).then_some(aapi_time_t {
                sec: v.0,
                nsec: v.1,
                reserved: 0,
            })
        };
        if let Err(e) = server.set_utimes(
            target,
            t(AAPI_PROP_ATIME, p.atime),
            t(AAPI_PROP_MTIME, p.mtime),
        ) {
            error(ctx, format!("restoring times of {}: {e}", show(target)));
        }
    }
    for (target, p) in &restored {
        match server.prop_byname(target) {
            Ok(got) => {
                let mut wrong = Vec::new();
                if p.valid & AAPI_PROP_MTIME != 0 && (got.mtime.sec, got.mtime.nsec) != p.mtime {
                    wrong.push(format!(
                        "mtime {}.{:09} (set {}.{:09})",
                        got.mtime.sec, got.mtime.nsec, p.mtime.0, p.mtime.1
                    ));
                }
                if p.valid & AAPI_PROP_ATIME != 0 && (got.atime.sec, got.atime.nsec) != p.atime {
                    wrong.push(format!(
                        "atime {}.{:09} (set {}.{:09})",
                        got.atime.sec, got.atime.nsec, p.atime.0, p.atime.1
                    ));
                }
                if !wrong.is_empty() {
                    ctx.fail(
                        "data.roundtrip-times",
                        format!(
                            "{} after aapi_set_object_utimes: {}",
                            show(target),
                            wrong.join(", ")
                        ),
                    );
                }
            }
            Err(e) => error(ctx, e),
        }
    }
    if let Err(e) = server.restore_postprocess(AAPI_EOK) {
        error(ctx, e);
    }
    if let Err(e) = server.close() {
        error(ctx, e);
    }
    finish(ctx, &plugin);
    ctx.output(json!({ "restored": restored.len() }));
    Ok(())
}
