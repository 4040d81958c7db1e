//! Concurrency: `thr.concurrent-read`, `thr.concurrent-restore`, `thr.session-callbacks`,
//! `thr.threads-terminate`. `thr.callbacks` judges every callback of the run.

use super::ffi::object_prop_with_mode;
use super::probe::{Fail, PR, Probe, cap_for, discovery_args, pattern};
use super::raw::Api;
use crate::pipeline::under;
use crate::worker::{code_name, cpath, show, thread_count};
use aapi_sdk::abi::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many objects to use at once: `max_concurrent_objects` (at most 16), or `None` (skipped
/// or failed) when the plugin declares no concurrency or too little.
fn concurrency(p: &Probe) -> Option<usize> {
    if !p.has(AAPI_CAP_CONCURRENT_OBJECTS) {
        p.skip("the plugin does not declare AAPI_CAP_CONCURRENT_OBJECTS");
        return None;
    }
    let n = p.objects().max_concurrent;
    if n < 2 {
        p.fail(format!(
            "declares AAPI_CAP_CONCURRENT_OBJECTS with max_concurrent_objects {n} (at least 2)"
        ));
        return None;
    }
    Some((n as usize).min(16))
}

/// `thr.concurrent-read`: that many readers, each over every object in a rotated order, get
/// exactly what one serial reader gets.
pub fn concurrent_read(p: &Probe) -> PR {
    let Some(n) = concurrency(p) else {
        return Ok(());
    };
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let sh = s.handle();
    let objs: Vec<(Vec<u8>, u64)> = p
        .objects()
        .all
        .iter()
        .filter(|o| o.flags & AAPI_WKLD_DIR == 0)
        .map(|o| (o.path.clone(), cap_for(o.size)))
        .filter(|(path, _)| {
            !path.ends_with(b"/small.txt") && !path.ends_with(b"/name with spaces.txt")
        })
        .take(400)
        .collect();
    let paths: Vec<Vec<u8>> = objs.iter().map(|o| o.0.clone()).collect();
    let serial: Vec<Result<String, String>> =
        objs.iter().map(|(x, m)| api.digest(sh, x, *m)).collect();
    let results: Vec<Vec<Result<String, String>>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|t| {
                let objs = &objs;
                sc.spawn(move || {
                    let k = objs.len();
                    (0..k)
                        .map(|i| {
                            let (path, max) = &objs[(i + t * k / n) % k];
                            api.digest(sh, path, *max)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let k = paths.len();
    let mut bad = 0;
    for (t, rs) in results.iter().enumerate() {
        for (i, r) in rs.iter().enumerate() {
            let idx = (i + t * k / n) % k;
            if *r != serial[idx] && bad < 5 {
                bad += 1;
                p.fail(format!(
                    "reader {t} of {n}: {} gave {:?}, serially {:?}",
                    show(&paths[idx]),
                    r.as_ref().map(|d| &d[..12]),
                    serial[idx].as_ref().map(|d| &d[..12])
                ));
            }
        }
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// Create `files` under `root` (name, content) from `writers` threads at once; the errors.
fn write_files(
    api: &Api,
    rh: aapi_server_t,
    root: &Path,
    files: &[(String, Vec<u8>)],
    writers: usize,
) -> Vec<String> {
    let write_one = |name: &str, data: &[u8], errs: &mut Vec<String>| {
        let path = cpath(&under(root, name.as_bytes()));
        let prop = object_prop_with_mode(AAPI_OBJ_FILE);
        let mut o = 0u64;
        let c = api.create_object(rh, &path, &prop, 0, &mut o);
        if c != AAPI_EOK {
            errs.push(format!(
                "aapi_create_object({name}) returned {}",
                code_name(c)
            ));
            return;
        }
        for chunk in data.chunks(4096) {
            let c = api.write_object(o, chunk, chunk.len());
            if c != AAPI_EOK {
                errs.push(format!(
                    "aapi_write_object({name}) returned {}",
                    code_name(c)
                ));
                break;
            }
        }
        let c = api.close_object(o);
        if c != AAPI_EOK {
            errs.push(format!(
                "aapi_close_object({name}) returned {}",
                code_name(c)
            ));
        }
    };
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..writers)
            .map(|t| {
                sc.spawn(move || {
                    let mut errs = Vec::new();
                    for (name, data) in files.iter().skip(t).step_by(writers) {
                        write_one(name, data, &mut errs);
                    }
                    errs
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// `thr.concurrent-restore`: files created by that many writers at once read back as the
/// same files created by one.
pub fn concurrent_restore(p: &Probe) -> PR {
    let Some(n) = concurrency(p) else {
        return Ok(());
    };
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let files: Vec<(String, Vec<u8>)> = (0..n * 4)
        .map(|i| {
            (
                format!("/f{i:03}.bin"),
                pattern(40_000 + 997 * (i % 7), i as u8),
            )
        })
        .collect();
    // One stream, then `n` at once, into two roots; both must read back the same.
    let mut digests = Vec::new();
    for (name, writers) in [("serial", 1), ("parallel", n)] {
        let (r, root) = p.restore(&plugin, name)?;
        let errs = write_files(&api, r.handle(), &root, &files, writers);
        if writers > 1 {
            for err in errs.iter().take(5) {
                p.fail(format!("one of {n} concurrent writers: {err}"));
            }
        } else if let Some(err) = errs.first() {
            return Err(Fail::Plugin(format!("serial restore: {err}")));
        }
        r.restore_postprocess(AAPI_EOK)?;
        drop(r);
        let s = p.session(&plugin, AAPI_OP_BACKUP)?;
        let d: Vec<Result<String, String>> = files
            .iter()
            .map(|(f, data)| {
                api.digest(
                    s.handle(),
                    &under(&root, f.as_bytes()),
                    cap_for(data.len() as u64),
                )
            })
            .collect();
        digests.push(d);
        drop(s);
    }
    let mut bad = 0;
    for (i, (f, _)) in files.iter().enumerate() {
        if digests[0][i] != digests[1][i] && bad < 5 {
            bad += 1;
            p.fail(format!("{f} written by one of {n} concurrent writers reads back unlike the same file written alone"));
        }
    }
    plugin.terminate()?;
    Ok(())
}

/// `thr.threads-terminate`: no plugin thread runs 100 ms after terminate.
pub fn threads_terminate(p: &Probe) -> PR {
    let lib = p.lib()?;
    let _ = lib;
    let base = thread_count();
    let plugin = p.plugin()?;
    let s = p.session(&plugin, AAPI_OP_BACKUP)?;
    let api = p.api(plugin.entry_points());
    let _ = api.digest(s.handle(), &p.small(), p.cap(&p.small()));
    drop(s);
    plugin.terminate()?;
    let deadline = Instant::now() + Duration::from_millis(100);
    while thread_count() > base && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let now = thread_count();
    if now > base {
        p.fail(format!(
            "{} plugin thread(s) still run after aapi_terminate",
            now - base
        ));
    }
    Ok(())
}

/// `thr.session-callbacks`: with three discovery sessions open, a discovery in the first calls
/// back only the first, though the last was opened after it (a plugin that keeps "the current
/// session" in a global calls back that one); once the last is closed, a discovery in the second
/// does not call back the closed one. The callbacks' hooks see which session each callback
/// belongs to.
pub fn session_callbacks(p: &Probe) -> PR {
    let setup = p.setup().clone();
    let plugin = p.plugin()?;
    let before = p.ctx.hooks.thr3_breaches().len();
    let run = || -> PR {
        let first = p.session(&plugin, AAPI_OP_DISCOVERY)?;
        let second = p.session(&plugin, AAPI_OP_DISCOVERY)?;
        let mut last = Some(p.session(&plugin, AAPI_OP_DISCOVERY)?);
        for (n, s) in [(1, &first), (2, &second)] {
            if n == 2
                && let Some(l) = last.take()
            {
                l.close()?;
            }
            let out = p.dir(&format!("sessions{n}"))?;
            let args = discovery_args(&setup.selections, &setup.hosts, &out);
            let snap = s.discovery(&args)?;
            // Removes the snapshot; how well is `disc.postprocess`'s to judge.
            if let Ok(pp) = p.postprocess_session(&plugin, &snap) {
                let _ = pp.postprocess(&args, &snap);
            }
        }
        Ok(())
    };
    let result = run();
    // A callback of the closed session is refused, which may end the call that made it: the
    // breach is the finding, not that end.
    let breaches = p.ctx.hooks.thr3_breaches();
    if breaches.len() > before {
        for b in &breaches[before..] {
            p.fail(b.clone());
        }
        return Ok(());
    }
    result?;
    plugin.terminate()?;
    Ok(())
}
