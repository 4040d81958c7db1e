//! examples/ci/plugin-ci.sh, the vendor CI recipe, works end to end on the C sample plugin:
//! conformance reports, a signed package that verifies; a plugin that is not conformant stops the
//! pipeline before anything is packaged; and a package whose library is not the tested one is
//! refused and removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The aapi-conformance and aapi-validator binaries of this build (built here when a test run
/// selected only this crate; a no-op in a workspace test run).
fn tools() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--locked",
        "-p",
        "aapi-conformance",
        "-p",
        "aapi-validator",
    ])
    .current_dir(repo());
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building the tools failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        profile_dir.join("aapi-conformance"),
        profile_dir.join("aapi-validator"),
    )
}

fn run_recipe(plugin: &Path, ship: &Path, out: &Path, key: Option<&Path>) -> Output {
    let (conformance, validator) = tools();
    let mut cmd = Command::new(repo().join("examples/ci/plugin-ci.sh"));
    cmd.arg(plugin)
        .arg(repo().join("sample-plugin/conformance.toml"))
        .arg(ship)
        .arg(out)
        .env("AAPI_CONFORMANCE", conformance)
        .env("AAPI_VALIDATOR", validator);
    if let Some(k) = key {
        cmd.env("AAPI_SIGNING_KEY", k);
    }
    cmd.output().unwrap()
}

fn ship_dir(root: &Path, plugin: &Path) -> PathBuf {
    let ship = root.join("ship");
    fs::create_dir_all(&ship).unwrap();
    let lib = ship.join(plugin.file_name().unwrap());
    fs::copy(plugin, &lib).unwrap();
    fs::write(
        ship.join("aapi-plugin.json"),
        r#"{ "name": "files-c", "version": "0.1.0", "vendor": "aapi project", "workload_types": ["files"] }"#,
    )
    .unwrap();
    ship
}

#[test]
fn a_conformant_plugin_is_packaged_signed_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Path::new(aapi_sample_plugin_c::PLUGIN_PATH);
    let ship = ship_dir(dir.path(), plugin);
    let (_, validator) = tools();
    let base = dir.path().join("release");
    let keygen = Command::new(&validator)
        .arg("keygen")
        .arg("-o")
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );

    let out = dir.path().join("out");
    let r = run_recipe(plugin, &ship, &out, Some(&base.with_extension("key")));
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.status.code(), Some(0), "{log}");
    assert!(
        log.contains("==> ok: conformant, packaged and verified"),
        "{log}"
    );
    let junit = fs::read_to_string(out.join("conformance.junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && !junit.contains("<failure"),
        "{junit}"
    );
    let verdict: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("verify.json")).unwrap()).unwrap();
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["signature"]["status"], "verified", "{verdict}");
    assert_eq!(
        verdict["manifest"]["plugin"]["name"], "files-c",
        "{verdict}"
    );

    // The released package is what was tested: a flipped byte in it is caught.
    let pkg = out.join("plugin.aapkg");
    let mut bytes = fs::read(&pkg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs::write(&pkg, bytes).unwrap();
    let v = Command::new(&validator)
        .arg("verify")
        .arg(&pkg)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

#[test]
fn a_plugin_that_is_not_conformant_is_never_packaged() {
    let dir = tempfile::tempdir().unwrap();
    // The C++ example serves the `memory` workload, not the `files` workload of this profile.
    let plugin = Path::new(aapi_examples::CPP_PLUGIN_PATH);
    let ship = ship_dir(dir.path(), plugin);
    let out = dir.path().join("out");
    let r = run_recipe(plugin, &ship, &out, None);
    assert_ne!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    assert!(
        !out.join("plugin.aapkg").exists(),
        "packaged although not conformant"
    );
}

#[test]
fn a_package_of_another_library_than_the_tested_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Path::new(aapi_sample_plugin_c::PLUGIN_PATH);
    let ship = ship_dir(dir.path(), plugin);
    // The shipped copy differs from the tested library by one byte at the end, as a library
    // rebuilt or patched after the conformance run would: it still loads, packs and verifies.
    let shipped = ship.join(plugin.file_name().unwrap());
    let mut bytes = fs::read(&shipped).unwrap();
    bytes.push(0);
    fs::write(&shipped, bytes).unwrap();

    let out = dir.path().join("out");
    let r = run_recipe(plugin, &ship, &out, None);
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stdout}\n{stderr}");
    // Every earlier step passed: the refusal is the digest comparison's.
    assert!(stdout.contains("==> verify:"), "{stdout}");
    assert!(out.join("verify.json").is_file());
    assert!(
        stderr.contains("is not the library that was tested"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&plugin.display().to_string())
            && stderr.contains(&shipped.display().to_string()),
        "the message names both libraries:\n{stderr}"
    );
    assert!(
        !out.join("plugin.aapkg").exists(),
        "the package of an untested library was left to ship"
    );
    assert!(!stdout.contains("==> ok"), "{stdout}");
}
