//! Shared helpers of the host tests: the fault-injection test plugin, built with the system C
//! compiler from tests/plugin/testplugin.c and include/aapi.h.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILD: Mutex<()> = Mutex::new(());

/// Build (once per variant) and return the test plugin. `defines` are extra `-D` flags.
pub fn test_plugin(name: &str, defines: &[&str]) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lib{name}.so"));
    let src = root.join("host/tests/plugin/testplugin.c");
    let fresh = out.exists()
        && out.metadata().unwrap().modified().unwrap()
            >= src.metadata().unwrap().modified().unwrap();
    if !fresh {
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let tmp = out.with_extension(format!("so.{}", std::process::id()));
        let status = Command::new(cc)
            .args([
                "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O1",
            ])
            .arg("-I")
            .arg(root.join("include"))
            .args(defines.iter().map(|d| format!("-D{d}")))
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling the test plugin failed");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// The regular test plugin.
pub fn good_plugin() -> PathBuf {
    test_plugin("aapi_testplugin", &[])
}

/// A private copy of a plugin library: each copy loads as its own instance with its own global
/// state, so tests running in parallel threads do not share a plugin.
pub fn private_copy(lib: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(lib.file_name().unwrap());
    std::fs::copy(lib, &to).unwrap();
    to
}

/// Write `bytes` to `path`, creating parents.
pub fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
