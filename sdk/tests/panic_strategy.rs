//! A plugin crate must unwind: the export layer's panic boundary is `catch_unwind`, which
//! `panic = "abort"` turns off. `export_plugin!` refuses to compile under that profile, with a
//! message that says how to fix it; the same crate with the default profile compiles.
//!
//! Each case is a small plugin crate of its own, checked with the cargo that runs this test
//! (offline, with the workspace's lock file) in a target directory beside this test's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The plugin of the `export_plugin!` documentation, as a vendor's `src/lib.rs`.
const LIB_RS: &str = r#"
use aapi_sdk::plugin::*;

/// A plugin that claims `demo` and supports nothing else yet.
pub struct Demo;

impl Plugin for Demo {
    const INFO: PluginInfo = PluginInfo {
        name: c"demo",
        version: c"0.1.0",
        vendor: c"Example Corp",
        workload_types: c"demo",
        capabilities: 0,
        max_concurrent_objects: 1,
    };
    type Server = DemoSession;

    fn init(_host: &HostInfo) -> Result<Self> {
        Ok(Demo)
    }

    fn open_server(&self, _server: &str, _session: Session) -> Result<DemoSession> {
        Ok(DemoSession)
    }
}

/// Its session.
pub struct DemoSession;

impl Server for DemoSession {
    type Reader = NoObject;
    type Writer = NoObject;

    fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo { full: true, ..ServerInfo::default() })
    }
}

aapi_sdk::export_plugin!(Demo);
"#;

/// `cargo check` a plugin crate whose Cargo.toml ends with `profile`, in its own directory.
fn check_plugin_crate(name: &str, profile: &str) -> Output {
    let dir = tempfile::Builder::new()
        .prefix("aapi-plugin-crate-")
        .tempdir()
        .unwrap();
    let sdk = root().join("sdk");
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\naapi-sdk = {{ path = {:?} }}\n\n\
         # Not a member of any workspace above the temporary directory.\n[workspace]\n\n{profile}",
        sdk.display().to_string()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), LIB_RS).unwrap();
    // The workspace's lock file pins the SDK's dependencies to the versions already fetched.
    std::fs::copy(root().join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();

    // <target>[/<triple>]/<profile>/deps/<this test>: check beside it, sharing one directory
    // between the cases so that the SDK is checked once per panic strategy.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join("plugin-crates");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.args(["check", "--offline", "--quiet", "--message-format=short"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(dir.path())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn export_plugin_refuses_panic_abort_and_says_how_to_fix_the_profile() {
    let out = check_plugin_crate("abort_plugin", "[profile.dev]\npanic = \"abort\"\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a plugin built with panic = \"abort\" compiled:\n{stderr}"
    );
    for words in [
        "aapi plugins must be built with panic = \"unwind\"",
        "AAPI_EINTERNAL",
        "Remove `panic = \"abort\"` from the [profile.*] sections of Cargo.toml",
        "src/lib.rs",
    ] {
        assert!(stderr.contains(words), "no {words:?} in:\n{stderr}");
    }
}

#[test]
fn the_same_plugin_crate_compiles_when_it_unwinds() {
    let out = check_plugin_crate("unwind_plugin", "[profile.release]\npanic = \"unwind\"\n");
    assert!(
        out.status.success(),
        "the plugin crate does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
