//! Compiles the C sources into `libaapi_sample_plugin_c.so` in `OUT_DIR`, with the flags the C
//! sample promises to build cleanly under, so the workspace build checks them on every change.

use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};

/// The plugin's sources, in the order of the Makefile and CMakeLists.txt.
const SOURCES: &[&str] = &[
    "src/lifecycle.c",
    "src/handles.c",
    "src/discovery.c",
    "src/snapshot.c",
    "src/backup.c",
    "src/restore.c",
    "src/workload.c",
    "src/util.c",
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let include = manifest.join("../../include");
    for f in SOURCES
        .iter()
        .chain(&["src/files.h", "../../include/aapi.h"])
    {
        println!("cargo:rerun-if-changed={f}");
    }
    // `cc` finds the compiler the way every C build in cargo does (CC, CFLAGS, target); the
    // link into a shared object is ours, as `cc` itself only makes static archives.
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fPIC",
        "-fvisibility=hidden",
        "-pthread",
        "-shared",
        "-O2",
        "-g",
    ])
    .arg("-I")
    .arg(&include)
    .arg("-o")
    .arg(out.join("libaapi_sample_plugin_c.so"));
    for s in SOURCES {
        cmd.arg(manifest.join(s));
    }
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("compiling the C sample plugin failed ({s}): {cmd:?}");
            exit(1);
        }
        Err(e) => {
            eprintln!("cannot run the C compiler {:?}: {e}", compiler.path());
            exit(1);
        }
    }
}
