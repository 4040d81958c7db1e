//! aapi.h, and its `AAPI_DEFINE_ABI_MARKER()` in particular, compiles in C++ under the strict
//! warnings C++ projects build with (-Wold-style-cast and friends, as errors), and in C under
//! the C equivalents: a plugin does not have to relax its flags for the header.

mod common;

use common::{must, repo};
use std::process::Command;

/// A plugin source file that uses what every plugin uses: the marker and a few names.
const SOURCE: &str = "#include <aapi.h>\n\
                      AAPI_DEFINE_ABI_MARKER();\n\
                      int aapi_terminate(void) { return AAPI_EOK; }\n";

const COMMON: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Wconversion",
    "-Wsign-conversion",
    "-Wundef",
    "-Wcast-qual",
    "-Wshadow",
    "-Wswitch-default",
];

/// Known to GCC and Clang alike, so that CXX may be either.
const CXX_ONLY: &[&str] = &["-Wold-style-cast", "-Wzero-as-null-pointer-constant"];

fn compile(compiler: &str, std: &str, ext: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(format!("marker.{ext}"));
    std::fs::write(&src, SOURCE).unwrap();
    must(
        Command::new(compiler)
            .arg(format!("-std={std}"))
            .args(COMMON)
            .args(extra)
            .arg("-I")
            .arg(repo().join("include"))
            .args(["-fPIC", "-fvisibility=hidden", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(dir.path().join("marker.o")),
    );
}

#[test]
fn the_marker_macro_compiles_under_strict_cxx_warnings() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    for std in ["c++11", "c++17"] {
        compile(&cxx, std, "cpp", CXX_ONLY);
    }
}

#[test]
fn the_marker_macro_compiles_under_strict_c_warnings() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    for std in ["c99", "c11"] {
        compile(&cc, std, "c", &[]);
    }
}
