//! Compiles examples/cpp-plugin into `libaapi_cpp_example.so` in `OUT_DIR` with
//! `-Wall -Wextra -Werror`, so every workspace build checks the example.

use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for f in [
        "cpp-plugin/plugin.cpp",
        "cpp-plugin/exports.map",
        "../include/aapi.h",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    // `cc` finds the C++ compiler as every cargo build does (CXX, CXXFLAGS); `cc` itself only
    // makes static archives, so the shared object is linked here.
    let compiler = cc::Build::new()
        .cpp(true)
        .cargo_metadata(false)
        .get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args([
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fPIC",
        "-fvisibility=hidden",
        "-fvisibility-inlines-hidden",
        "-shared",
        "-O2",
        "-g",
    ])
    .arg(format!(
        "-Wl,--version-script={}",
        manifest.join("cpp-plugin/exports.map").display()
    ))
    .arg("-I")
    .arg(manifest.join("../include"))
    .arg("-o")
    .arg(out.join("libaapi_cpp_example.so"))
    .arg(manifest.join("cpp-plugin/plugin.cpp"));
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("compiling the C++ example plugin failed ({s}): {cmd:?}");
            exit(1);
        }
        Err(e) => {
            eprintln!("cannot run the C++ compiler {:?}: {e}", compiler.path());
            exit(1);
        }
    }
}
