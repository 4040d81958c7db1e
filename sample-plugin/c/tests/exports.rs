//! The built library is a well-formed plugin: it exports exactly the 22 entry points and the
//! ABI marker (LOAD-1, LOAD-2) although everything else is hidden, needs nothing beyond the
//! system libraries (LOAD-3), and reports the identity of sample-plugin/README.md.

mod common;

use aapi_host::client::{HostHooks, Plugin};
use aapi_sample_plugin_c::PLUGIN_PATH;
use aapi_sdk::abi::*;
use aapi_sdk::version::{ENTRY_POINTS, MARKER_SYMBOL};
use common::{dynamic_symbols, must};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

struct Quiet;
impl HostHooks for Quiet {
    fn log(&self, _level: u32, _message: &str) {}
}

#[test]
fn exports_exactly_the_entry_points_and_the_marker() {
    let syms = dynamic_symbols(Path::new(PLUGIN_PATH), "--defined-only");
    let names: BTreeSet<&str> = syms.iter().map(|(_, n)| n.as_str()).collect();
    let want: BTreeSet<&str> = ENTRY_POINTS
        .iter()
        .copied()
        .chain([MARKER_SYMBOL])
        .collect();
    assert_eq!(names, want, "exported symbols differ from the ABI's");
    for (kind, name) in &syms {
        let expected = if name == MARKER_SYMBOL { "R" } else { "T" };
        assert_eq!(kind, expected, "{name} has symbol type {kind}");
    }
}

#[test]
fn needs_only_the_system_libraries() {
    let out = must(Command::new("readelf").args(["-d", PLUGIN_PATH]));
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries in:\n{text}");
    for lib in &needed {
        // The dynamic loader provides __tls_get_addr for the per-thread last-error message.
        assert!(
            ["libc.so", "libpthread.so", "ld-linux"]
                .iter()
                .any(|ok| lib.starts_with(ok)),
            "the C plugin needs {lib} (LOAD-3: the C library only)"
        );
    }
    for (kind, name) in dynamic_symbols(Path::new(PLUGIN_PATH), "--undefined-only") {
        assert!(
            kind == "w" || name.contains("@GLIBC"),
            "undefined symbol {name} is not from the C library (LOAD-3)"
        );
    }
}

#[test]
fn handshake_reports_the_identity_of_the_spec() {
    let plugin = Plugin::load(Path::new(PLUGIN_PATH), Arc::new(Quiet)).expect("plugin loads");
    let marker = plugin.library().marker();
    assert_eq!(
        &marker.magic,
        b"AAPIABI\0".map(|b| b as core::ffi::c_char).as_ref()
    );
    assert_eq!(
        (marker.abi_major, marker.abi_minor),
        (AAPI_ABI_MAJOR, AAPI_ABI_MINOR)
    );
    let info = plugin.info();
    assert_eq!(info.name, "files-c");
    assert_eq!(info.version, "0.1.0");
    assert_eq!(info.vendor, "aapi project");
    assert_eq!(info.workload_types, ["files"]);
    assert_eq!(
        info.capabilities,
        AAPI_CAP_CONCURRENT_OBJECTS
            | AAPI_CAP_RESTORE
            | AAPI_CAP_ALTERNATE_RESTORE
            | AAPI_CAP_SNAPSHOT
    );
    assert_eq!(info.max_concurrent_objects, 8);
    assert_eq!(plugin.claim("files"), Ok(true));
    assert_eq!(plugin.claim("Files"), Ok(false));
    plugin.terminate().expect("terminate");
    plugin
        .terminate()
        .expect("a second terminate is fine (LIFE-7)");
}
