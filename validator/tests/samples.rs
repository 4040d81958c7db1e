//! The sample plugins go through pack, sign, verify, install and drift detection.

mod common;

use aapi_validator::Code;
use aapi_validator::manifest::Manifest;
use common::{run, snapshot, stdout};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Pack the library at `lib` as the plugin `name`, sign, verify, install, check drift.
fn round_trip(lib: &Path, name: &str) {
    let w = tempfile::tempdir().unwrap();
    let dir = w.path().join("build");
    fs::create_dir_all(dir.join("lib")).unwrap();
    let so = dir.join("lib").join(lib.file_name().unwrap());
    fs::copy(lib, &so).unwrap();
    fs::set_permissions(&so, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        dir.join("aapi-plugin.json"),
        format!(r#"{{"name": "{name}", "version": "0.1.0", "vendor": "aapi", "workload_types": ["files"]}}"#),
    )
    .unwrap();
    let key = w.path().join("release");
    assert_eq!(run(&[&"keygen", &"-o", &key]).status.code(), Some(0));
    let (sec, public) = (w.path().join("release.key"), w.path().join("release.pub"));

    let pkg = w.path().join(format!("{name}.aapkg"));
    let o = run(&[&"pack", &dir, &"-o", &pkg, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&[&"verify", &"--json", &pkg, &"--key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m: Manifest = serde_json::from_value(v["manifest"].clone()).unwrap();
    assert_eq!(
        m.entry,
        format!("lib/{}", lib.file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(
        (m.abi.major, m.abi.minor),
        (aapi_sdk::abi::AAPI_ABI_MAJOR, aapi_sdk::abi::AAPI_ABI_MINOR)
    );
    assert_eq!(m.target.arch, std::env::consts::ARCH);
    assert_eq!(v["signature"]["status"], "verified");

    let dest = w.path().join("plugins").join(name);
    fs::create_dir(w.path().join("plugins")).unwrap();
    let o = run(&[&"install", &pkg, &"--dest", &dest, &"--key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        fs::read(dest.join(&m.entry)).unwrap(),
        fs::read(lib).unwrap()
    );
    assert_eq!(
        run(&[&"verify", &"--installed", &dest, &"--key", &public])
            .status
            .code(),
        Some(0)
    );

    // One flipped byte in the installed library is found; reinstalling repairs it.
    let installed = dest.join(&m.entry);
    let mut bytes = fs::read(&installed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&installed, bytes).unwrap();
    let o = run(&[&"verify", &"--installed", &dest]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(Code::FILE_DIGEST.as_str()),
        "{}",
        stdout(&o)
    );
    let before = snapshot(w.path());
    assert_eq!(
        run(&[&"install", &pkg, &"--dest", &dest]).status.code(),
        Some(0)
    );
    assert_ne!(snapshot(w.path()), before);
    assert_eq!(
        run(&[&"verify", &"--installed", &dest]).status.code(),
        Some(0)
    );
}

#[test]
fn the_c_sample_plugin() {
    round_trip(
        Path::new(aapi_sample_plugin_c::PLUGIN_PATH),
        "files-sample-c",
    );
}

#[test]
fn the_rust_sample_plugin() {
    // Linking the crate makes cargo build its cdylib beside this test binary.
    let _ = std::any::type_name::<aapi_sample_plugin::FilesPlugin>;
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libaapi_sample_plugin.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    round_trip(&lib, "files-sample-rust");
}
