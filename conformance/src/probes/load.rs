//! Loading, identity, handshake: the load gate (`load.marker`, `load.abi-version`,
//! `load.symbols`, `load.init`, `load.info-strings`, `load.info-abi`, `load.terminate`) and the
//! `load.*` probes.

use super::ffi::{host_info, plugin_info};
use super::probe::{PR, Probe, dir_is_empty, harness};
use super::raw::Api;
use crate::worker::{Ctx, code_name, cpath, pbytes, show, thread_count};
use aapi_host::client::Plugin;
use aapi_host::loader::LoadError;
use aapi_sdk::abi::*;
use aapi_sdk::version::{AAPI_ABI_MAGIC, MARKER_SIZE, MarkerError};
use std::ffi::{CStr, c_char};
use std::time::Duration;

/// The bytes of a C string of at most `max` bytes.
fn read_c_string(ptr: *const c_char, max: usize) -> Result<Vec<u8>, String> {
    if ptr.is_null() {
        return Err("is NULL".into());
    }
    let mut v = Vec::new();
    loop {
        // SAFETY: the plugin promised a NUL-terminated string; we stop at the NUL or max + 1.
        let b = unsafe { *ptr.add(v.len()) } as u8;
        if b == 0 {
            return Ok(v);
        }
        v.push(b);
        if v.len() > max {
            return Err(format!("is longer than {max} bytes"));
        }
    }
}

/// What is wrong with the strings of a plugin info (LOAD-5).
fn info_findings(pi: &aapi_plugin_info_t) -> Vec<String> {
    let mut f = Vec::new();
    let printable = |b: &[u8]| b.iter().all(|c| (0x20..0x7f).contains(c));
    let fields: [(&str, *const c_char, usize); 4] = [
        ("name", pi.name, 63),
        ("version", pi.version, 31),
        ("vendor", pi.vendor, 127),
        ("workload_types", pi.workload_types, 4096),
    ];
    for (field, ptr, max) in fields {
        match read_c_string(ptr, max) {
            Err(e) => f.push(format!("plugin_info.{field} {e}")),
            Ok(b) if b.is_empty() => f.push(format!("plugin_info.{field} is empty")),
            Ok(b) => match field {
                "name" | "version" if !printable(&b) => f.push(format!(
                    "plugin_info.{field} {} is not printable ASCII",
                    show(&b)
                )),
                "vendor" if std::str::from_utf8(&b).is_err() => {
                    f.push(format!("plugin_info.vendor {} is not UTF-8", show(&b)))
                }
                "workload_types" => {
                    let ok = b.split(|&c| c == b',').all(|t| {
                        !t.is_empty()
                            && t.iter().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c)
                            })
                    });
                    if !ok {
                        f.push(format!(
                            "plugin_info.workload_types {} is not a comma-separated list of [a-z0-9_.-] tokens",
                            show(&b)
                        ));
                    }
                }
                _ => {}
            },
        }
    }
    f
}

/// The load gate: marker, version, symbols, handshake, plugin info.
pub fn gate(ctx: &Ctx) -> Result<(), String> {
    ctx.begin("load.marker");
    let lib = match ctx.load() {
        Ok(l) => l,
        Err(e) => {
            let check = match &e {
                LoadError::NotFound { .. } => return Err(e.to_string()),
                LoadError::Dlopen { .. }
                | LoadError::NoMarker { .. }
                | LoadError::BadMarker { .. } => "load.marker",
                LoadError::Abi { .. } => {
                    ctx.ran("load.marker");
                    "load.abi-version"
                }
                LoadError::MissingSymbols { .. } => {
                    ctx.ran("load.marker");
                    ctx.ran("load.abi-version");
                    "load.symbols"
                }
            };
            let message = match &e {
                LoadError::BadMarker {
                    error: MarkerError::BadMagic(m),
                    ..
                } => format!(
                    "the ABI marker's magic is \"{}\", expected \"{}\"",
                    m.escape_ascii(),
                    AAPI_ABI_MAGIC.escape_ascii()
                ),
                _ => e.to_string(),
            };
            ctx.fail(check, message);
            ctx.ran(check);
            return Ok(());
        }
    };
    let marker = lib.marker();
    if marker.marker_size as usize != MARKER_SIZE {
        ctx.fail(
            "load.marker",
            format!(
                "marker_size is {}, expected {MARKER_SIZE}",
                marker.marker_size
            ),
        );
    }
    for c in ["load.marker", "load.abi-version", "load.symbols"] {
        ctx.ran(c);
    }
    ctx.begin("load.init");
    let api = Api::new(ctx, lib.entry_points());
    let hi = host_info(ctx);
    let mut pi = plugin_info();
    let code = api.pgn_init(&hi, &mut pi);
    ctx.ran("load.init");
    if code != AAPI_EOK {
        ctx.fail(
            "load.init",
            format!(
                "aapi_pgn_init with a valid aapi_host_info_t returned {}",
                code_name(code)
            ),
        );
        return Ok(());
    }
    ctx.begin("load.info-strings");
    let findings = info_findings(&pi);
    for f in &findings {
        ctx.fail("load.info-strings", f.clone());
    }
    ctx.ran("load.info-strings");
    ctx.begin("load.info-abi");
    let abi_differs = (pi.abi_major, pi.abi_minor) != (marker.abi_major, marker.abi_minor);
    if abi_differs {
        ctx.fail(
            "load.info-abi",
            format!(
                "plugin_info says ABI {}.{}, the marker {}.{}",
                pi.abi_major, pi.abi_minor, marker.abi_major, marker.abi_minor
            ),
        );
    }
    ctx.ran("load.info-abi");
    // The cycle ends: a plugin that crashes or ends the process here breaks its terminate.
    ctx.begin("load.terminate");
    let code = api.terminate();
    if code != AAPI_EOK {
        ctx.fail(
            "load.terminate",
            format!(
                "aapi_terminate after a successful aapi_pgn_init returned {}",
                code_name(code)
            ),
        );
    }
    ctx.ran("load.terminate");
    ctx.begin("load.init");
    match Plugin::init(lib, ctx.dyn_hooks()) {
        Ok(p) => {
            // The second cycle's terminate is load.terminate's too.
            ctx.begin("load.terminate");
            if let Err(e) = p.terminate() {
                ctx.fail(
                    "load.terminate",
                    format!("a second aapi_terminate, after a new aapi_pgn_init, failed: {e}"),
                );
            }
            ctx.ran("load.terminate");
            // The worker's exit (library destructors, exit handlers) is the cycle's end:
            // load.init's, as the docs say.
            ctx.begin("load.init");
        }
        Err(err) if findings.is_empty() && !abi_differs => ctx.fail(
            "load.init",
            format!("the framework refused the plugin: {err}"),
        ),
        Err(_) => {}
    }
    Ok(())
}

/// `load.claim` (and `load.claim-unlisted`): every listed type is claimed, other types are not.
pub fn claim(p: &Probe) -> PR {
    let plugin = p.init_only()?;
    let types = plugin.info().workload_types.clone();
    let want = &p.setup().workload_type;
    if !types.iter().any(|t| t == want) {
        p.fail(format!(
            "workload_types {types:?} does not list the profile's {want:?}"
        ));
    }
    for t in &types {
        match plugin.claim(t) {
            Ok(true) => {}
            Ok(false) => p.fail(format!(
                "aapi_pgn_claim({t:?}) returned AAPI_ENOTCLAIMED for a listed type"
            )),
            Err(e) => p.fail(e.to_string()),
        }
    }
    for other in ["aapi-conformance-unknown-type", "FILES"] {
        if types.iter().any(|t| t == other) {
            continue;
        }
        match plugin.claim(other) {
            Ok(false) => {}
            Ok(true) => p.fail_as(
                "load.claim-unlisted",
                format!(
                    "aapi_pgn_claim({other:?}) returned AAPI_EOK for a type the plugin does not list"
                ),
            ),
            Err(e) => p.fail_as(
                "load.claim-unlisted",
                format!("{e}, expected AAPI_ENOTCLAIMED"),
            ),
        }
    }
    p.ctx.ran("load.claim-unlisted");
    plugin.terminate()?;
    Ok(())
}

/// Libraries every system has (prefixes of `DT_NEEDED` names).
const SYSTEM_LIBS: &[&str] = &[
    "libc.so",
    "libm.so",
    "libdl.so",
    "libpthread.so",
    "libgcc_s.so",
    "libstdc++.so",
    "librt.so",
    "ld-linux",
    "ld64.so",
];

/// `load.undefined-symbols`: only system libraries needed, every symbol resolves.
pub fn undefined_symbols(p: &Probe) -> PR {
    use object::Object;
    let path = &p.setup().plugin;
    let data = std::fs::read(path).map_err(harness)?;
    match object::File::parse(&*data) {
        Ok(f) => match f.import_libraries() {
            Ok(libs) => {
                for lib in libs.flatten() {
                    let name = String::from_utf8_lossy(lib.name()).into_owned();
                    if !SYSTEM_LIBS.iter().any(|s| name.starts_with(s)) {
                        p.fail(format!("needs {name}, which is not a system library"));
                    }
                }
            }
            Err(e) => p.fail(format!("cannot read the dynamic section: {e}")),
        },
        Err(e) => p.fail(format!("not an ELF file: {e}")),
    }
    let c = cpath(&pbytes(path));
    // SAFETY: dlopen of the plugin with immediate binding; the handle is never closed.
    let h = p
        .ctx
        .link
        .loading(|| unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) });
    if h.is_null() {
        // SAFETY: dlerror returns a static message or NULL.
        let msg = unsafe {
            let m = libc::dlerror();
            if m.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        };
        p.fail(format!(
            "dlopen with RTLD_NOW fails, some symbol does not resolve: {msg}"
        ));
    }
    Ok(())
}

/// `load.no-side-effects`: loading starts no thread, prints nothing, creates no file.
pub fn no_side_effects(p: &Probe) -> PR {
    let cwd = p.dir("cwd")?;
    let tmp = p.dir("tmp")?;
    std::env::set_current_dir(&cwd).map_err(harness)?;
    // SAFETY: the only other thread of this process (the cancel watcher) reads no variables.
    unsafe { std::env::set_var("TMPDIR", &tmp) };
    let threads = thread_count();
    let printed = || {
        std::fs::metadata(&p.ctx.spec.capture)
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let out_before = printed();
    let lib = p.lib()?;
    let _ = lib;
    std::thread::sleep(Duration::from_millis(20));
    let after = thread_count();
    if after != threads {
        p.fail(format!(
            "loading the library started {} thread(s)",
            after as i64 - threads as i64
        ));
    }
    let out_after = printed();
    if out_after != out_before {
        p.fail(format!(
            "loading the library printed {} bytes",
            out_after - out_before
        ));
    }
    for d in [&cwd, &tmp] {
        if !dir_is_empty(d) {
            p.fail(format!(
                "loading the library created files in {}",
                d.display()
            ));
        }
    }
    Ok(())
}

/// `load.info-static`: the info strings survive terminate and a new init.
pub fn info_static(p: &Probe) -> PR {
    let lib = p.lib()?;
    let api = p.api(lib.entry_points());
    let hi = host_info(p.ctx);
    let mut pi = plugin_info();
    p.require("aapi_pgn_init", api.pgn_init(&hi, &mut pi))?;
    let read = |pi: &aapi_plugin_info_t| {
        [pi.name, pi.version, pi.vendor, pi.workload_types]
            .map(|ptr| read_c_string(ptr, 4096).unwrap_or_default())
    };
    let first = read(&pi);
    api.terminate();
    if read(&pi) != first {
        p.fail("the plugin info strings changed after aapi_terminate");
    }
    let mut pi2 = plugin_info();
    api.pgn_init(&hi, &mut pi2);
    if read(&pi) != first {
        p.fail("the strings returned by the first aapi_pgn_init changed after a second one");
    }
    api.terminate();
    Ok(())
}
