//! The `aapi-conformance` command line: reports, exit codes, configuration errors, and the
//! library used from an ordinary test.

mod common;

use aapi_conformance::{Status, WorkerProgram, checks};
use std::process::Command;

/// A `[files]` table for a quick tree.
const SMALL_TREE: &str = "[files]\nbig_file_mib = 1\nwide_files = 2\ndepth = 2\ntiming_files = 2\n";

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aapi-conformance"))
}

#[test]
fn list_names_every_check_with_level_and_clause() {
    let out = cli().arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for c in checks::all() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(c.id.as_str()))
            .unwrap_or_else(|| panic!("{} is not listed", c.id));
        assert!(
            line.contains(c.level.as_str()) && line.contains(c.clause),
            "{line}"
        );
    }
}

#[test]
fn configuration_errors_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["run", "/nonexistent/libplugin.so"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such plugin file"));
    let out = cli().arg("run").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a directory; give the plugin's shared library"),
        "{err}"
    );

    let plugin = common::build(None);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "workload = \"files\"\n").unwrap();
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--profile")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("workload"),
        "{err}"
    );

    let ex = dir.path().join("exclude.txt");
    std::fs::write(&ex, "rc.no-such-check because\n").unwrap();
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--exclude")
        .arg(&ex)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check ID `rc.no-such-check`"));

    // A waived gate check would leave every check that needs it without a plugin to judge.
    std::fs::write(&ex, "load.init  waive the gate\n").unwrap();
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--exclude")
        .arg(&ex)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`load.init` cannot be waived"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A typo in one of several --only prefixes.
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .args(["--only", "load.", "--only", "rcc."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--only \"rcc.\" matches no check"));

    // Profile mistakes are profile errors, not findings against the plugin.
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("old.txt"), "from before").unwrap();
    for (text, says) in [
        (
            "backup_hosts = [\"bh1\", \"bh1\"]\n",
            "\"bh1\" is listed twice",
        ),
        (
            "backup_hosts = [\"a/b\"]\n",
            "\"a/b\" is no backup host name",
        ),
        (
            "selections = [\"{tre}/data\"]\n",
            "{tre}/data does not exist; check `selections`",
        ),
        (
            "[files]\nbig_file_mib = 100000\n",
            "[files] big_file_mib = 100000 is more than 1024",
        ),
        (
            &format!("backup_hosts = [\"{}\"]\n", "h".repeat(239)),
            "is 239 bytes long; at most 238 fit",
        ),
        (
            "restore_root = \"{profile_dir}/full\"\n",
            "full exists and is not empty",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = cli()
            .arg("run")
            .arg(&plugin)
            .arg("--profile")
            .arg(&bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
    }

    let out = cli().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn failing_plugin_gets_text_json_and_valid_junit_with_waivers() {
    let plugin = common::build(Some("ZOO_NULL_CODE"));
    let (_, profile_dir) = common::profile();
    let dir = common::fast_tempdir();
    let ex = dir.path().join("exclude.txt");
    std::fs::write(&ex, "# vendor waivers\nsec.output our banner is wanted\n").unwrap();
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--profile")
        .arg(profile_dir.join("zoo.toml"))
        .arg("--exclude")
        .arg(&ex)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--jobs")
        .arg("2")
        .arg("--keep-scratch")
        .arg(dir.path().join("scratch"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Failures first, with clause, expectation and what happened.
    let fail = text
        .find("FAIL rc.null.aapi_open_object  [RC-3 MUST]")
        .expect(&text);
    assert!(fail < text.find("Waived").unwrap() && fail < text.find("Latency").unwrap());
    assert!(text[fail..].contains("expected: aapi_open_object returns AAPI_EINVAL"));
    assert!(
        text[fail..]
            .contains("happened: aapi_open_object(server, NULL, READ, obj) returned AAPI_ENOENT")
    );
    assert!(text.contains("sec.output [SEC-3]: our banner is wanted"));
    assert!(
        text.trim_end()
            .ends_with("NOT CONFORMANT: 1 MUST check failed: see above"),
        "{text}"
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["conformant"], false);
    assert_eq!(report["waivers"]["sec.output"], "our banner is wanted");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), checks::all().len());
    let c = checks
        .iter()
        .find(|c| c["id"] == "rc.null.aapi_open_object")
        .unwrap();
    assert_eq!(
        (
            c["status"].as_str(),
            c["clause"].as_str(),
            c["level"].as_str()
        ),
        (Some("failed"), Some("RC-3"), Some("MUST"))
    );
    assert!(
        report["latency"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["function"] == "aapi_open_object")
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit report is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let cases: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), checks::all().len());
    let failed: Vec<_> = cases
        .iter()
        .filter(|n| n.children().any(|c| c.has_tag_name("failure")))
        .collect();
    let names: Vec<_> = failed
        .iter()
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}\n{text}");
    assert!(
        failed[0]
            .attribute("name")
            .unwrap()
            .starts_with("rc.null.aapi_open_object [RC-3 MUST]")
    );
    assert_eq!(root.attribute("failures"), Some("1"));
    let waived = cases
        .iter()
        .find(|n| n.attribute("name").unwrap().starts_with("sec.output "))
        .unwrap();
    let skipped = waived
        .children()
        .find(|c| c.has_tag_name("skipped"))
        .unwrap();
    assert_eq!(
        skipped.attribute("message"),
        Some("waived: our banner is wanted")
    );
}

#[test]
fn generate_tree_writes_the_tree_and_refuses_a_full_directory() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tree");
    let out = cli().arg("generate-tree").arg(&t).output().unwrap();
    assert!(out.status.success());
    assert!(t.join("data/big.bin").metadata().unwrap().len() > 3 << 20);
    assert!(t.join("data/new\nline.txt").exists());
    let out = cli().arg("generate-tree").arg(&t).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not empty"));
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let out = cli().arg("generate-tree").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"", "the file was written");
    // An empty directory, or a link to one, is used.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&empty, &link).unwrap();
    let out = cli().arg("generate-tree").arg(&link).output().unwrap();
    assert!(out.status.success());
    assert!(empty.join("data/big.bin").exists());
}

#[test]
fn library_api_serves_its_own_workers() {
    // The runner starts this test binary again, with only this test, as its worker program.
    aapi_conformance::serve_if_requested();
    let report = common::run_with(None, |o| {
        o.worker = WorkerProgram::CurrentTest("library_api_serves_its_own_workers".into());
        o.only = vec!["load.".into(), "rc.null.aapi_open".into()];
    });
    assert_eq!(report.exit_code, 0, "{}", report.to_text());
    assert!(report.checks.iter().all(|c| c.status == Status::Passed));
    assert!(report.check("rc.null.aapi_open_server").is_some());
    assert!(
        report.check("rc.codes").is_none(),
        "only the selected checks are reported"
    );
    // The verdict says that it covers only the selected checks.
    let verdict = format!(
        "CONFORMANT: every selected MUST check passed ({} of {} checks selected)",
        report.checks.len(),
        checks::all().len()
    );
    assert_eq!(report.verdict(), verdict);
    assert!(report.to_text().trim_end().ends_with(&verdict));
}

#[test]
fn quiet_prints_one_verdict_line_that_stands_alone() {
    let (_, profile_dir) = common::profile();
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(profile_dir.join("zoo.toml"))
        .args(["--only", "load.", "--only", "disc.postprocess", "--quiet"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The zoo takes no snapshot: disc.postprocess is skipped.
    let selected = checks::all()
        .iter()
        .filter(|c| c.id.starts_with("load.") || c.id == "disc.postprocess")
        .count();
    assert_eq!(
        text,
        format!(
            "CONFORMANT: every selected MUST check that applies passed ({selected} of {} checks selected; 1 skipped, 0 waived)\n",
            checks::all().len()
        )
    );
}

#[test]
fn any_workload_with_setup_teardown_and_a_change_command() {
    // No [files] table: the runner knows nothing about the data but what the profile says.
    let dir = common::fast_tempdir();
    let profile = dir.path().join("generic.toml");
    std::fs::write(
        &profile,
        r#"
call_budget_ms = 2000
selections = ["{scratch}/staged"]
backup_hosts = ["h1", "h2"]
setup = "mkdir -p {scratch}/staged/sub && printf 'one' > {scratch}/staged/a && printf 'two' > {scratch}/staged/sub/b && : > {scratch}/setup-ran"
teardown = ": > {scratch}/teardown-ran"
[timing]
budget_ms = 1000
selections = ["{scratch}/staged"]
properties = { "zoo.walk_delay_us" = "100000" }
[data]
change_command = "echo changing; printf 'changed' >> {scratch}/staged/a; : > change-ran; sleep 60 &"
changed_objects = ["{scratch}/staged/a"]
"#,
    )
    .unwrap();
    let scratch = dir.path().join("scratch");
    let started = std::time::Instant::now();
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .arg("--keep-scratch")
        .arg(&scratch)
        .arg("--json")
        .arg(dir.path().join("r.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(scratch.join("setup-ran").exists() && scratch.join("teardown-ran").exists());
    // The change command runs in the profile's directory, and what it leaves running (the
    // `sleep 60 &`) neither outlives it nor holds the run's output open.
    assert!(dir.path().join("change-ran").exists());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    // The profile's commands print to stderr, never into the report.
    assert!(!text.lines().any(|l| l == "changing"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .any(|l| l == "changing")
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("data.roundtrip"), "passed");
    assert_eq!(status("disc.incremental"), "passed");
    assert_eq!(status("data.on-disk"), "skipped");
    assert_eq!(status("obj.changed"), "skipped");
}

#[test]
fn teardown_runs_after_a_failing_setup_and_its_failure_keeps_the_report() {
    let dir = common::fast_tempdir();
    // A failing setup exits 2, after the teardown ran.
    let failing = dir.path().join("failing.toml");
    let ran = dir.path().join("teardown-ran");
    std::fs::write(
        &failing,
        format!(
            "setup = \"exit 3\"\nteardown = \": > '{}'\"\n{SMALL_TREE}",
            ran.display()
        ),
    )
    .unwrap();
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&failing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("setup command: `exit 3` failed"));
    assert!(ran.exists(), "teardown always runs");

    // A failing teardown keeps the report: a failed run still exits 1, a passing one exits 2.
    let profile = dir.path().join("teardown.toml");
    std::fs::write(
        &profile,
        format!("call_budget_ms = 2000\nteardown = \"echo cleaning; exit 1\"\n{SMALL_TREE}"),
    )
    .unwrap();
    for (define, code, verdict) in [
        (
            Some("ZOO_ACCEPT_MAJOR"),
            1,
            "NOT CONFORMANT: 1 MUST check failed (1 of 132 checks selected): see above",
        ),
        (
            None,
            2,
            "INCOMPLETE: every MUST check passed, but the teardown command failed",
        ),
    ] {
        let json = dir.path().join("r.json");
        let junit = dir.path().join("r.xml");
        let _ = std::fs::remove_file(&json);
        let out = cli()
            .arg("run")
            .arg(common::build(define))
            .arg("--profile")
            .arg(&profile)
            .args(["--only", "abi.init-major", "--json"])
            .arg(&json)
            .arg("--junit")
            .arg(&junit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{define:?}\n{text}");
        assert!(text.contains("abi.init-major"), "{text}");
        // What the teardown printed is on stderr; the report shows only how it failed.
        assert!(!text.lines().any(|l| l == "cleaning"), "{text}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .any(|l| l == "cleaning")
        );
        assert!(
            text.contains("teardown command: `echo cleaning; exit 1` failed: exit status: 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with(verdict), "{text}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(report["exit_code"], code);
        assert_eq!(
            report["conformant"], false,
            "conformant only when the run exits 0"
        );
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(
            xml.contains("<error message=\"the teardown command failed\">"),
            "{xml}"
        );
        assert!(
            report["teardown_error"]
                .as_str()
                .unwrap()
                .contains("exit 1")
        );
    }
}

#[test]
fn default_profile_skips_what_the_docs_say_and_says_how_to_run_it() {
    // The complete zoo on the default profile (no credentials, the default long call).
    let report = common::run_with(None, |o| {
        o.profile = aapi_conformance::Profile::default();
        o.only = vec!["time.".into(), "sec.secrets".into()];
    });
    assert_eq!(report.exit_code, 0, "{}", report.to_text());
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Skipped(_)))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        skipped,
        vec!["time.keepalive-cadence", "sec.secrets"],
        "{}",
        report.to_text()
    );
    let Some(Status::Skipped(reason)) = report.check("time.keepalive-cadence").map(|c| &c.status)
    else {
        unreachable!()
    };
    assert!(
        reason.contains("[timing] selections") && reason.contains("[timing] properties"),
        "{reason}"
    );
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/conformance.md"
    ))
    .unwrap();
    assert!(
        doc.contains("It skips `sec.secrets`")
            && doc.contains("`time.keepalive-cadence` is skipped")
            && doc.contains("selections = [\"/usr/share\"]"),
        "docs/conformance.md must say what the default profile skips and how to run it"
    );
}

/// Processes whose environment mentions `text` (workers carry their task, with the scratch
/// paths, in theirs).
fn processes_mentioning(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && String::from_utf8_lossy(&env).contains(text)
        {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[test]
fn sigterm_stops_the_run_kills_the_workers_and_leaves_no_scratch_or_report() {
    // Its discovery keeps alive forever: the run would wait for worker_limit_s (60 s).
    let plugin = common::build(Some("ZOO_KEEPALIVE_FOREVER"));
    let dir = common::fast_tempdir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(&profile, format!("call_budget_ms = 2000\n{SMALL_TREE}")).unwrap();
    let json = dir.path().join("r.json");
    // A report of an earlier run must not survive: CI would publish it as this run's.
    std::fs::write(&json, "{\"conformant\": true}").unwrap();
    let child = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--profile")
        .arg(&profile)
        .arg("--json")
        .arg(&json)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the discovery's worker (the second one) to start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let discovery_started = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .any(|e| e.path().join("units/0001").exists())
    };
    while !discovery_started() {
        assert!(std::time::Instant::now() < deadline, "no discovery began");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) of the child started above, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    assert!(!json.exists(), "no report after an interrupted run");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    let workers = processes_mentioning(&tmp.to_string_lossy());
    assert!(workers.is_empty(), "workers still run: {workers:?}");
}

#[test]
fn only_shows_the_failure_that_blocks_the_selected_checks() {
    // The backup crashes; the selected obj.* checks need it.
    let r = common::run_with(Some("ZOO_CRASH_IN_READ"), |o| o.only = vec!["obj.".into()]);
    let text = r.to_text();
    assert_eq!(
        r.exit_code, 1,
        "a plugin failure, not a runner problem\n{text}"
    );
    let backup = r
        .check("life.backup")
        .expect("the blocking check is reported");
    assert_eq!(backup.status, Status::Failed, "{text}");
    assert!(
        backup
            .findings
            .iter()
            .any(|f| f.contains("crash(SIGSEGV) in aapi_read_object")),
        "{text}"
    );
    assert!(
        text.contains("obj.size [OBJ-2]: needs life.backup, which did not pass"),
        "{text}"
    );
    assert!(
        r.verdict()
            .starts_with(&format!("NOT CONFORMANT: {} MUST check", r.summary.failed)),
        "{}",
        r.verdict()
    );
}

#[test]
fn keep_scratch_reuses_its_own_directory_and_refuses_another() {
    let (_, profile_dir) = common::profile();
    let dir = common::fast_tempdir();
    let run = |scratch: &std::path::Path| {
        cli()
            .arg("run")
            .arg(common::build(None))
            .arg("--profile")
            .arg(profile_dir.join("zoo.toml"))
            .args(["--only", "load.", "--quiet", "--keep-scratch"])
            .arg(scratch)
            .output()
            .unwrap()
    };
    // The second run in the same directory (a reused CI workspace) empties and reuses it.
    let scratch = dir.path().join("scratch");
    for _ in 0..2 {
        let out = run(&scratch);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(scratch.join("tree/data").is_dir());
    }
    // A directory with other files is not the runner's to empty.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = run(&other);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--keep-scratch")
            && err.contains("remove it or choose a new or empty directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "mine"
    );
    // A file is no scratch directory, and the message says so.
    let out = run(&other.join("notes.txt"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    // A scratch of an earlier run that now holds the plugin is not emptied under it.
    let plugin = scratch.join("libzoo.so");
    std::fs::copy(common::build(None), &plugin).unwrap();
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .args(["--only", "load.", "--keep-scratch"])
        .arg(&scratch)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("an input of the run"), "{err}");
    assert!(plugin.exists());
}

/// The parent process id of `pid`, if it still runs.
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1).map(str::to_string)
}

/// A runner killed with SIGKILL (a CI job's hard timeout) takes with it what its workers'
/// plugin started: the guard of each worker's process group kills the group.
#[test]
fn a_process_the_plugin_started_dies_with_a_killed_runner() {
    // Every worker's init starts a helper process that sleeps for two minutes.
    let plugin = common::build(Some("ZOO_FORK_CHILD"));
    let dir = common::fast_tempdir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let profile = write_profile(dir.path(), "");
    let mut child = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--profile")
        .arg(&profile)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runner = child.id().to_string();
    let marker = tmp.to_string_lossy().into_owned();
    // Wait for a helper: a process of the run whose parent is a worker (not the runner).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let procs = processes_mentioning(&marker);
        let helper = procs.iter().any(|p| {
            parent_of(p).is_some_and(|parent| parent != runner && procs.contains(&parent))
        });
        if helper {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no helper started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill(2) of the child started above, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    child.wait().unwrap();
    let left = processes_left(&marker);
    assert!(left.is_empty(), "processes outlived the runner: {left:?}");
}

/// At an interactive terminal, a setup command that would prompt on it (sudo, ssh) fails at once:
/// it has no controlling terminal. In a process group of the runner's session it would be
/// stopped for good as a background job of that terminal, and the run would hang.
#[test]
fn a_setup_that_reads_the_terminal_fails_instead_of_stopping() {
    use std::os::unix::process::CommandExt;
    // SAFETY: posix_openpt, grantpt, unlockpt and ptsname on a descriptor this test owns;
    // ptsname's string is copied at once.
    let (master, name) = unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "{}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned();
        (master, name)
    };
    let dir = common::fast_tempdir();
    let profile = write_profile(dir.path(), "setup = \"read line < /dev/tty\"");
    let mut c = cli();
    c.arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .args(["--only", "load."])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid, open and close are async-signal-safe; `name` was made before the fork.
    // The runner leads a new session whose controlling terminal is the pseudo-terminal (the
    // first terminal a session leader opens), in its foreground, as a login shell's job is.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(name.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(master) };
    let status = status.expect("the run hung on a setup that reads the terminal");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("setup command"), "{err}");
}

/// Wait until `path` exists (a command of the profile made it), at most 30 s.
fn wait_for(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait (at most 5 s) until no process mentions `text` in its environment; returns those left.
fn processes_left(text: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = processes_mentioning(text);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Write `dir/p.toml`: a quick tree, a 2 s budget and `profile`.
fn write_profile(dir: &std::path::Path, profile: &str) -> std::path::PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!("call_budget_ms = 2000\n{profile}\n{SMALL_TREE}"),
    )
    .unwrap();
    path
}

/// Start `aapi-conformance run` of the complete zoo with `profile` (text), its temporary files
/// under `dir/tmp`: the scratch directory and so every process the run starts, setup and
/// teardown included, carry that path in their environment.
fn start_run(dir: &std::path::Path, profile: &str, args: &[&str]) -> std::process::Child {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = write_profile(dir, profile);
    cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&path)
        .args(args)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) of a child started by this test, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

#[test]
fn a_plugin_that_signals_the_runner_is_reported_and_the_run_goes_on() {
    // Every aapi_open_object sends SIGTERM to the worker's parent, the runner.
    let plugin = common::build(Some("ZOO_KILL_PARENT"));
    let dir = common::fast_tempdir();
    let profile = write_profile(dir.path(), "");
    let json = dir.path().join("r.json");
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--profile")
        .arg(&profile)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("sent SIGTERM to the runner's process")
            && stdout.contains("FAIL mem.no-crash"),
        "{stdout}"
    );
    assert!(json.exists(), "the report was written");
}

#[test]
fn an_incremental_of_a_subtree_expects_only_the_changes_within_it() {
    let dir = common::fast_tempdir();
    // The kit changes objects in {tree}/data; this selection holds none of them.
    let profile = write_profile(dir.path(), "selections = [\"{tree}/data/deep\"]");
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .args(["--only", "disc.incremental"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

#[test]
fn a_kept_scratch_directory_in_use_by_another_run_is_refused() {
    let dir = common::fast_tempdir();
    let kept = dir.path().join("kept");
    let kept_s = kept.to_str().unwrap();
    // The first run holds the directory while its setup runs.
    let first = start_run(
        dir.path(),
        "setup = \": > started; sleep 2\"",
        &["--only", "load.", "--keep-scratch", kept_s],
    );
    wait_for(&dir.path().join("started"));
    let second = start_run(
        dir.path(),
        "",
        &["--only", "load.", "--keep-scratch", kept_s],
    );
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another run is using this directory"), "{err}");
    let out = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Once it ended, the directory is free for the next run.
    let third = start_run(
        dir.path(),
        "",
        &["--only", "load.", "--keep-scratch", kept_s],
    );
    let out = third.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_interrupted_run_empties_the_restore_root_of_the_profile() {
    let dir = common::fast_tempdir();
    let rr = dir.path().join("rr");
    // The teardown runs after the round trip restored into the root; the signal comes then.
    let child = start_run(
        dir.path(),
        "restore_root = \"{profile_dir}/rr\"\nteardown = \": > started; sleep 20\"",
        &["--only", "data.roundtrip"],
    );
    wait_for(&dir.path().join("started"));
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{err}");
    let left: Vec<_> = std::fs::read_dir(&rr).unwrap().flatten().collect();
    assert!(left.is_empty(), "the next run would refuse: {left:?}");
}

#[test]
fn a_signal_during_setup_or_teardown_kills_it_at_once() {
    for (when, profile) in [
        // The setup's background process and its foreground command both go; teardown runs.
        (
            "setup",
            "setup = \"sleep 20 & : > started; sleep 20\"\nteardown = \": > teardown-ran\"",
        ),
        (
            "teardown",
            "teardown = \"sleep 20 & : > started; sleep 20\"",
        ),
    ] {
        let dir = common::fast_tempdir();
        let json = dir.path().join("r.json");
        let child = start_run(
            dir.path(),
            profile,
            &["--only", "load.", "--json", json.to_str().unwrap()],
        );
        wait_for(&dir.path().join("started"));
        let signalled = std::time::Instant::now();
        sigterm(&child);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(128 + libc::SIGTERM),
            "{when}: {err}"
        );
        assert!(
            signalled.elapsed() < std::time::Duration::from_secs(10),
            "{when}: the signal was acted on only after {:?}",
            signalled.elapsed()
        );
        assert!(err.contains("stopped by SIGTERM"), "{when}: {err}");
        assert!(!json.exists(), "{when}: no report after an interrupted run");
        if when == "setup" {
            assert!(
                dir.path().join("teardown-ran").exists(),
                "teardown runs after an interrupted setup"
            );
        }
        let tmp = dir.path().join("tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
        assert!(left.is_empty(), "{when}: scratch left behind: {left:?}");
        let procs = processes_left(&tmp.to_string_lossy());
        assert!(procs.is_empty(), "{when}: processes still run: {procs:?}");
    }
}

#[test]
fn a_second_signal_ends_the_runner_and_the_teardown_it_runs() {
    let dir = common::fast_tempdir();
    let mut child = start_run(
        dir.path(),
        "setup = \": > setup-began; sleep 20\"\nteardown = \"sleep 20 & : > teardown-began; sleep 20\"",
        &["--only", "load."],
    );
    wait_for(&dir.path().join("setup-began"));
    sigterm(&child);
    wait_for(&dir.path().join("teardown-began"));
    sigterm(&child);
    // Not waiting for the end of its output: a process that outlived the runner could hold it.
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    // The runner is gone at once, and the teardown with all it started goes with it.
    let procs = processes_left(&dir.path().join("tmp").to_string_lossy());
    assert!(procs.is_empty(), "processes still run: {procs:?}");
}

/// Run `aapi-conformance run` of the complete zoo, load checks only, with `profile` (text), as
/// process 1 of a new PID namespace (a container without an init), in `dir` as [`start_run`]
/// does: its exit code and standard error. `None` when this machine cannot make a namespace.
fn run_as_process_1(dir: &std::path::Path, profile: &str) -> Option<(Option<i32>, String)> {
    const UNSHARE: &[&str] = &[
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
    ];
    let can = Command::new("unshare")
        .args(UNSHARE)
        .arg("true")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("skipped: unshare cannot make a PID namespace here");
        return None;
    }
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = write_profile(dir, profile);
    let out = Command::new("unshare")
        .args(UNSHARE)
        .arg(env!("CARGO_BIN_EXE_aapi-conformance"))
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&path)
        .args(["--only", "load."])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn as_process_1_the_runner_reaps_what_ends_under_it_and_passes_signals_on() {
    // The teardown counts the zombies in the namespace: the workers' group guards end orphaned.
    let dir = common::fast_tempdir();
    let teardown = "teardown = \"sleep 0.5; grep -s '^State:' /proc/[0-9]*/status | grep -c Z > zombies; true\"";
    let Some((code, err)) = run_as_process_1(dir.path(), teardown) else {
        return;
    };
    assert_eq!(code, Some(0), "{err}");
    let zombies = std::fs::read_to_string(dir.path().join("zombies")).unwrap();
    assert_eq!(zombies.trim(), "0", "{err}");

    // A signal sent to process 1 (`docker stop`) stops the run as it stops any run.
    let dir = common::fast_tempdir();
    let profile = "setup = \"kill -TERM 1; sleep 20\"\nteardown = \": > teardown-ran\"";
    let Some((code, err)) = run_as_process_1(dir.path(), profile) else {
        return;
    };
    assert_eq!(code, Some(128 + libc::SIGTERM), "{err}");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    assert!(dir.path().join("teardown-ran").exists(), "{err}");
}

#[test]
fn a_process_the_setup_leaves_running_does_not_hold_the_run_up() {
    let dir = common::fast_tempdir();
    let started = std::time::Instant::now();
    let out = start_run(dir.path(), "setup = \"sleep 20 &\"", &["--only", "load."])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the run (and its output) ended only after {:?}",
        started.elapsed()
    );
    let procs = processes_left(&dir.path().join("tmp").to_string_lossy());
    assert!(
        procs.is_empty(),
        "the setup's process outlived the run: {procs:?}"
    );
}

#[test]
fn setup_and_teardown_output_goes_to_stderr_not_into_the_report() {
    let dir = common::fast_tempdir();
    let path = write_profile(
        dir.path(),
        "setup = \"echo setup-out; echo setup-err >&2\"\nteardown = \"echo teardown-out; echo teardown-err >&2\"",
    );
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&path)
        .args(["--only", "load.", "--quiet"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // The report is all there is on stdout: here, one verdict line.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("CONFORMANT"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    for l in ["setup-out", "setup-err", "teardown-out", "teardown-err"] {
        assert!(lines.contains(&l), "{l} is not on stderr: {stderr}");
    }
}

/// A report path that is not a regular file (`/dev/stdout`, a pipe) is written in place, never
/// removed; one that names an input of the run is refused before anything else.
#[test]
fn a_report_goes_into_a_pipe_in_place_and_never_over_an_input() {
    let dir = common::fast_tempdir();
    let profile = write_profile(dir.path(), "");
    let fifo = dir.path().join("report.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo of a path in the test's own directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap_or_default())
    };
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .args(["--only", "load.", "-q", "--json"])
        .arg(&fifo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()),
        "the pipe was replaced"
    );
    let json = reader.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).expect("the report came through");
    assert_eq!(v["conformant"], true, "{json}");

    for flag in ["--json", "--junit"] {
        let out = cli()
            .arg("run")
            .arg(common::build(None))
            .arg("--profile")
            .arg(&profile)
            .arg(flag)
            .arg(&profile)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("an input of the run"), "{flag}: {err}");
        assert!(profile.is_file(), "{flag}: the profile was removed");
    }
}

/// A workload of thousands of objects: every worker gets the list (its task is passed in a file,
/// not in the environment, which holds at most 128 KiB per string).
#[test]
fn a_workload_of_thousands_of_objects_is_checked() {
    let dir = common::fast_tempdir();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "call_budget_ms = 2000\n[files]\nbig_file_mib = 1\nwide_files = 3000\ndepth = 2\ntiming_files = 2\n",
    )
    .unwrap();
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .args(["--only", "abi.struct-size", "-q"])
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{err}");
}

/// A report that cannot be written is said before the run starts, not after it.
#[test]
fn an_unwritable_report_path_is_refused_before_the_run() {
    let dir = common::fast_tempdir();
    let profile = write_profile(dir.path(), "");
    // A directory no one may make files in, root included.
    let started = std::time::Instant::now();
    let out = cli()
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .arg("--junit")
        .arg(dir.path().join("ok.xml"))
        .args(["--json", "/proc/aapi-conformance-report.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot write the report in"), "{err}");
    assert!(out.stdout.is_empty(), "the run started");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_full_scratch_file_system_is_a_runner_error_not_the_plugins_failure() {
    // A 6 MiB file system holds the small tree but not every check's restore.
    let dir = common::fast_tempdir();
    let profile = write_profile(dir.path(), "");
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mount = "mount -t tmpfs -o size=6M tmpfs \"$1\" && shift && exec \"$@\"";
    let unshare = || {
        let mut c = Command::new("unshare");
        c.args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            mount,
            "sh",
        ])
        .arg(&small);
        c
    };
    if !unshare()
        .arg("true")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: unshare cannot mount a file system here");
        return;
    }
    let out = unshare()
        .arg(env!("CARGO_BIN_EXE_aapi-conformance"))
        .arg("run")
        .arg(common::build(None))
        .arg("--profile")
        .arg(&profile)
        .arg("--keep-scratch")
        .arg(small.join("scratch"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(!stdout.contains("\nFAIL "), "{stdout}");
    assert!(
        stdout.contains("has only")
            && stdout.contains("KiB free, so this may be for want of space"),
        "{stdout}"
    );
}

#[test]
fn results_go_to_a_closed_or_full_standard_output_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = common::build(None);
    // A reader that stops at once (`| head -1`): the reports are written, the text ends quietly.
    let json = dir.path().join("r.json");
    let mut child = cli()
        .arg("run")
        .arg(&plugin)
        .args(["--only", "load.", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        std::fs::read_to_string(&json)
            .unwrap()
            .contains("\"checks\"")
    );
    let mut child = cli()
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A full disk loses the text: exit 2, said, the report written all the same.
    std::fs::remove_file(&json).unwrap();
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .args(["--only", "load.", "--json"])
        .arg(&json)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot write the results to standard output"),
        "{err}"
    );
    assert!(json.exists());
    // One file for both reports would lose one of them.
    let out = cli()
        .arg("run")
        .arg(&plugin)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&json)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("name the same file"), "{err}");
}

#[test]
fn a_restore_root_of_the_profile_is_left_empty_for_the_next_run() {
    let dir = common::fast_tempdir();
    let rr = dir.path().join("rr");
    std::fs::create_dir(&rr).unwrap();
    let profile = write_profile(dir.path(), "restore_root = \"{profile_dir}/rr\"");
    for _ in 0..2 {
        let out = cli()
            .arg("run")
            .arg(common::build(None))
            .arg("--profile")
            .arg(&profile)
            .args(["--only", "data.roundtrip", "--quiet"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_eq!(std::fs::read_dir(&rr).unwrap().count(), 0, "{err}");
    }
}
