//! examples/ci/plugin-ci.sh, the vendor CI recipe, works end to end on the C sample plugin:
//! conformance reports, a signed package that verifies; a plugin that is not conformant stops the
//! pipeline before anything is packaged; a package whose library is not the tested one, or that
//! does not verify, is refused and removed; and a failed run in a reused output directory leaves
//! no package or passing verify result of an earlier run.
//!
//! examples/ci/github-actions.yml runs as written: its install step and its conformance step are
//! executed with bash as GitHub Actions runs them, on this checkout (the clone and `cargo install`
//! stand in for their network and release-build parts, and check their arguments), and the
//! reports and package that its later steps publish are where those steps look for them.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::{LIMIT, must, repo, run};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tools::tools;

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
    run(&mut cmd, LIMIT)
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
    must(Command::new(&validator).arg("keygen").arg("-o").arg(&base));

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
    let v = run(Command::new(&validator).arg("verify").arg(&pkg), LIMIT);
    assert_eq!(
        v.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
}

/// Put into `out` what an earlier passing run left there: a package and its verify result.
fn earlier_passing_run(out: &Path) {
    fs::create_dir_all(out).unwrap();
    fs::write(out.join("plugin.aapkg"), "the package of an earlier run").unwrap();
    fs::write(
        out.join("verify.json"),
        r#"{"valid": true, "subject": "out/plugin.aapkg", "findings": []}"#,
    )
    .unwrap();
}

#[test]
fn a_plugin_that_is_not_conformant_is_never_packaged() {
    let dir = tempfile::tempdir().unwrap();
    // The C++ example serves the `memory` workload, not the `files` workload of this profile.
    let plugin = Path::new(aapi_examples::CPP_PLUGIN_PATH);
    let ship = ship_dir(dir.path(), plugin);
    // A reused output directory: an earlier run's package and verify result must not stand next
    // to this run's NOT CONFORMANT report.
    let out = dir.path().join("out");
    earlier_passing_run(&out);
    let r = run_recipe(plugin, &ship, &out, None);
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    assert!(
        !out.join("plugin.aapkg").exists(),
        "a package is left although the plugin is not conformant"
    );
    assert!(
        !out.join("verify.json").exists(),
        "a verify result is left although nothing was verified"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("conformance.json")).unwrap()).unwrap();
    assert!(report.is_object(), "{report}");
}

#[test]
fn a_package_that_does_not_verify_is_removed_and_its_verify_result_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Path::new(aapi_sample_plugin_c::PLUGIN_PATH);
    let ship = ship_dir(dir.path(), plugin);
    let (_, validator) = tools();
    // release.pub is not the public key of release.key: the signed package does not verify
    // against it (SIGNATURE_UNTRUSTED_KEY).
    let base = dir.path().join("release");
    let other = dir.path().join("other");
    must(Command::new(&validator).arg("keygen").arg("-o").arg(&base));
    must(Command::new(&validator).arg("keygen").arg("-o").arg(&other));
    fs::copy(other.with_extension("pub"), base.with_extension("pub")).unwrap();

    let out = dir.path().join("out");
    earlier_passing_run(&out);
    let r = run_recipe(plugin, &ship, &out, Some(&base.with_extension("key")));
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("==> verify:"), "{stdout}");
    assert!(stderr.contains("SIGNATURE_UNTRUSTED_KEY"), "{stderr}");
    assert!(
        !out.join("plugin.aapkg").exists(),
        "a package that does not verify was left to ship"
    );
    let verdict: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("verify.json")).unwrap()).unwrap();
    assert_eq!(verdict["valid"], false, "{verdict}");
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
    earlier_passing_run(&out);
    let r = run_recipe(plugin, &ship, &out, None);
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stdout}\n{stderr}");
    // Every earlier step passed: the refusal is the digest comparison's.
    assert!(stdout.contains("==> verify:"), "{stdout}");
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
    assert!(
        !out.join("verify.json").exists(),
        "a passing verify result of a removed package was left"
    );
    assert!(!stdout.contains("==> ok"), "{stdout}");
}

/// The `run:` script of the step named `name` in a workflow: a `|` block, dedented, or a plain
/// one-line value without its trailing comment. Only the block layout of our workflow is read; any
/// other layout fails here, with the step named.
fn step_run(workflow: &str, name: &str) -> String {
    let lines: Vec<&str> = workflow.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("the workflow has no step named {name:?}"));
    let key_indent = indent(lines[start]) + 2;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if line.trim().is_empty() {
            continue;
        }
        assert!(
            indent(line) >= key_indent,
            "step {name:?} has no `run:` key"
        );
        let Some(value) = line.trim().strip_prefix("run:") else {
            continue;
        };
        if indent(line) != key_indent {
            continue;
        }
        let value = value.trim();
        if value != "|" {
            return value.split(" #").next().unwrap().trim().to_string();
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
            .copied()
            .collect();
        let at = block.iter().map(|l| indent(l)).min().unwrap_or(0);
        return block
            .iter()
            .map(|l| l.get(at..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    panic!("step {name:?} has no `run:` key")
}

/// The value of the one line `key: value` of a workflow.
fn workflow_value(workflow: &str, key: &str) -> String {
    let found: Vec<&str> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .collect();
    assert_eq!(found.len(), 1, "`{key}:` in the workflow: {found:?}");
    found[0].trim().to_string()
}

/// A step's script run as GitHub Actions runs one on Linux without a `shell:` key
/// (`bash -e {0}`, in the workspace), with only the environment `env`.
fn run_step(script: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Output {
    let file = cwd.join(".step.sh");
    fs::write(&file, script).unwrap();
    let out = run(
        Command::new("bash")
            .arg("-e")
            .arg(&file)
            .current_dir(cwd)
            .env_clear()
            .envs(env),
        LIMIT,
    );
    fs::remove_file(&file).unwrap();
    out
}

/// An executable shell script at `path`.
fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The workspace's `repository` URL (root Cargo.toml).
fn repository_url() -> String {
    let toml = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("repository = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the root Cargo.toml names the repository")
        .to_string()
}

#[test]
fn the_github_actions_workflow_runs_as_written() {
    let workflow = fs::read_to_string(repo().join("examples/ci/github-actions.yml")).unwrap();
    let (conformance, validator) = tools();
    let bin_dir = conformance.parent().unwrap().to_path_buf();
    assert_eq!(validator.parent(), Some(bin_dir.as_path()));
    let dir = tempfile::tempdir().unwrap();
    let quote = |p: &Path| {
        let s = p.display().to_string();
        assert!(!s.contains('\''), "{s}");
        format!("'{s}'")
    };

    // The machine of the job: its home, RUNNER_TEMP, GITHUB_ENV, and a PATH where `git clone`
    // of the project's repository gives this checkout and `cargo install --locked --path` of a
    // binary crate gives this build's binary of that crate.
    let home = dir.path().join("home");
    let runner_temp = dir.path().join("runner");
    let shims = dir.path().join("shims");
    for d in [&home, &runner_temp, &shims] {
        fs::create_dir(d).unwrap();
    }
    let github_env = dir.path().join("github_env");
    fs::write(&github_env, "").unwrap();
    write_script(
        &shims.join("git"),
        &format!(
            "#!/bin/sh\n\
             if [ $# -ne 5 ] || [ \"$1 $2 $3 $4\" != 'clone --depth 1 {url}' ]; then\n\
             \x20   echo \"git: not a shallow clone of {url}: git $*\" >&2; exit 1\n\
             fi\n\
             ln -s {repo} \"$5\"\n",
            url = repository_url(),
            repo = quote(&repo()),
        ),
    );
    write_script(
        &shims.join("cargo"),
        &format!(
            "#!/bin/sh\n\
             if [ $# -ne 4 ] || [ \"$1 $2 $3\" != 'install --locked --path' ] \\\n\
             \x20   || [ ! -f \"$4/src/main.rs\" ]; then\n\
             \x20   echo \"cargo: not an install of a binary crate: cargo $*\" >&2; exit 1\n\
             fi\n\
             name=$(sed -n 's/^name = \"\\(.*\\)\"$/\\1/p' \"$4/Cargo.toml\" | head -n 1)\n\
             [ -x {bin}/\"$name\" ] || {{ echo \"cargo: no binary $name in this build\" >&2; exit 1; }}\n\
             mkdir -p \"$HOME/.cargo/bin\" && ln -sf {bin}/\"$name\" \"$HOME/.cargo/bin/$name\"\n",
            bin = quote(&bin_dir),
        ),
    );
    let system_path = std::env::var("PATH").unwrap_or_default();
    let mut env = BTreeMap::from([
        ("HOME".to_string(), home.display().to_string()),
        ("RUNNER_TEMP".to_string(), runner_temp.display().to_string()),
        ("GITHUB_ENV".to_string(), github_env.display().to_string()),
        (
            "PATH".to_string(),
            format!("{}:{system_path}", shims.display()),
        ),
    ]);
    let workspace = dir.path().join("workspace");
    fs::create_dir(&workspace).unwrap();

    let install = step_run(&workflow, "Install the aapi C SDK and tools");
    let out = run_step(&install, &workspace, &env);
    assert!(
        out.status.success(),
        "the install step failed:\n{install}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The variables it exports reach the SDK it installed.
    for line in fs::read_to_string(&github_env).unwrap().lines() {
        let (key, value) = line.split_once('=').expect("KEY=VALUE in GITHUB_ENV");
        env.insert(key.to_string(), value.to_string());
    }
    let pc = run(
        Command::new("pkg-config")
            .args(["--modversion", "aapi"])
            .env("PKG_CONFIG_PATH", &env["PKG_CONFIG_PATH"]),
        LIMIT,
    );
    assert_eq!(
        String::from_utf8_lossy(&pc.stdout).trim(),
        format!(
            "{}.{}",
            aapi_sdk::abi::AAPI_ABI_MAJOR,
            aapi_sdk::abi::AAPI_ABI_MINOR
        ),
        "{}",
        String::from_utf8_lossy(&pc.stderr)
    );
    assert!(
        Path::new(&env["CMAKE_PREFIX_PATH"])
            .join("share/cmake/aapi/aapiConfig.cmake")
            .is_file(),
        "CMAKE_PREFIX_PATH does not lead find_package(aapi) to the installed SDK"
    );

    // The build step is the vendor's: its library, where the workflow says the build puts it.
    // Then the conformance step as written, with the tools found on PATH (~/.cargo/bin, where
    // `cargo install` put them) as plugin-ci.sh finds them by default, and the recipe copied to
    // ci/ as the workflow's header says.
    fs::create_dir_all(workspace.join("build")).unwrap();
    fs::create_dir_all(workspace.join("ci")).unwrap();
    fs::copy(
        aapi_sample_plugin_c::PLUGIN_PATH,
        workspace.join("build/libmyplugin.so"),
    )
    .unwrap();
    fs::copy(
        repo().join("examples/ci/plugin-ci.sh"),
        workspace.join("ci/plugin-ci.sh"),
    )
    .unwrap();
    fs::write(
        workspace.join("aapi-plugin.json"),
        r#"{ "name": "files-c", "version": "0.1.0", "vendor": "aapi project", "workload_types": ["files"] }"#,
    )
    .unwrap();
    // The built-in tree, small: this test is about the workflow, not about the plugin.
    fs::write(
        workspace.join("conformance.toml"),
        "workload_type = \"files\"\n\n[files]\nbig_file_mib = 1\nwide_files = 20\ndepth = 4\n\
         timing_files = 100\n",
    )
    .unwrap();
    env.insert(
        "PATH".to_string(),
        format!("{}:{system_path}", home.join(".cargo/bin").display()),
    );
    let step = step_run(&workflow, "Conformance, package, verify");
    let out = run_step(&step, &workspace, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the conformance step failed:\n{step}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("==> ok: conformant, packaged and verified"),
        "{stdout}"
    );

    // What the later steps publish is there.
    let junit = fs::read_to_string(workspace.join(workflow_value(&workflow, "report_paths")))
        .expect("the JUnit report the workflow publishes");
    assert!(
        junit.contains("<testsuite") && !junit.contains("<failure"),
        "{junit}"
    );
    let package = workspace.join(workflow_value(&workflow, "path"));
    let v = run(Command::new(&validator).arg("verify").arg(&package), LIMIT);
    assert!(
        v.status.success(),
        "the package the workflow uploads does not verify: {}",
        String::from_utf8_lossy(&v.stdout)
    );
}
