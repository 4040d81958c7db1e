//! The runner is trusted because it catches broken plugins: every variant of the zoo plugin
//! (tests/zoo/zoo.c, one `ZOO_*` switch each) must fail exactly the MUST clauses it breaks, and
//! the complete plugin must pass everything.

mod common;

use aapi_conformance::{Report, RunOptions, Status};
use common::{run, run_with};

fn findings(r: &Report, id: &str) -> String {
    r.check(id)
        .map(|c| c.findings.join(" | "))
        .unwrap_or_default()
}

/// Run `define` (with the options `adjust` changed) and check the failed MUST clauses, the
/// expected SHOULD warnings, no runner error, and that the findings of `check` mention `says`.
fn zoo(
    define: &str,
    adjust: fn(&mut RunOptions),
    must: &[&str],
    should: &[&str],
    check: &str,
    says: &str,
) {
    let r = run_with(Some(define), adjust);
    let errors: Vec<String> = r
        .checks
        .iter()
        .filter_map(|c| match &c.status {
            Status::Error(e) => Some(format!("{}: {e}", c.id)),
            _ => None,
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{define}: runner errors {errors:?}\n{}",
        r.to_text()
    );
    let mut want: Vec<String> = must.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        r.failed_clauses(),
        want,
        "{define}: failed MUST clauses (checks {:?})\n{}",
        r.failed_ids(),
        r.to_text()
    );
    for s in should {
        assert!(
            r.checks
                .iter()
                .any(|c| c.status == Status::Warning && c.clause == *s),
            "{define}: expected a {s} warning\n{}",
            r.to_text()
        );
    }
    assert_eq!(r.exit_code, if must.is_empty() { 0 } else { 1 }, "{define}");
    if !check.is_empty() {
        assert!(
            findings(&r, check).contains(says),
            "{define}: {check} should say {says:?}, says {:?}",
            findings(&r, check)
        );
    }
}

#[test]
fn the_complete_zoo_plugin_passes_every_check() {
    let r = run(None);
    let not_passed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.status != Status::Passed)
        .map(|c| format!("{} {:?}", c.id, c.status))
        .collect();
    // It takes no snapshot, so the snapshot removal check cannot apply.
    assert_eq!(
        not_passed,
        vec![
            "disc.postprocess Skipped(\"the plugin declares no AAPI_CAP_SNAPSHOT and took no snapshot\")"
        ],
        "{}",
        r.to_text()
    );
    assert_eq!(r.exit_code, 0);
    assert!(
        r.latency
            .iter()
            .any(|l| l.function == "aapi_read_object" && l.calls > 0)
    );
}

macro_rules! zoo_tests {
    ($($name:ident: $define:literal $(with $adjust:expr)? => [$($must:literal),*] [$($should:literal),*] $check:literal $says:literal;)*) => {
        $(
            #[test]
            fn $name() {
                #[allow(unused_variables)]
                let adjust: fn(&mut RunOptions) = |_| {};
                $(let adjust: fn(&mut RunOptions) = $adjust;)?
                zoo($define, adjust, &[$($must),*], &[$($should),*], $check, $says);
            }
        )*

        /// Every variant with the MUST and SHOULD clauses it breaks.
        const VARIANTS: &[(&str, &[&str], &[&str])] = &[$(($define, &[$($must),*], &[$($should),*]),)*];
    };
}

#[test]
fn the_zoo_breaks_every_must_clause_the_kit_checks() {
    for (clause, level) in aapi_conformance::checks::CLAUSES {
        if *level != aapi_conformance::checks::Level::Must {
            continue;
        }
        assert!(
            VARIANTS
                .iter()
                .any(|(_, must, should)| must.contains(clause) || should.contains(clause)),
            "no zoo variant breaks {clause}"
        );
    }
    let src = std::fs::read_to_string(common::ZOO_C).unwrap();
    for (define, _, _) in VARIANTS {
        assert!(src.contains(define), "{define} is not a switch of zoo.c");
    }
}

zoo_tests! {
    // load and ABI
    no_marker: "ZOO_NO_MARKER" => ["LOAD-2"] [] "load.marker" "aapi_abi_marker";
    marker_bad_magic: "ZOO_BAD_MAGIC" => ["LOAD-2"] [] "load.marker" "the ABI marker's magic is \"AAPIAB\\x00\\x00\", expected \"AAPIABI\\x00\"";
    wrong_abi_major: "ZOO_ABI_MAJOR" => ["ABI-1"] [] "load.abi-version" "major 2";
    missing_symbol: "ZOO_MISSING_SYMBOL" => ["LOAD-1"] [] "load.symbols" "aapi_flush";
    undefined_symbol: "ZOO_UNDEFINED" => ["LOAD-3"] [] "load.undefined-symbols" "aapi_framework_service";
    constructor_output: "ZOO_CONSTRUCTOR" => ["LOAD-4"] ["SEC-3"] "load.no-side-effects" "printed";
    // The load runs as the pseudo-call dlopen, held to the budget of calls without a session.
    constructor_hangs: "ZOO_CONSTRUCTOR_HANG" => ["LOAD-2"] [] "load.marker" "timeout in dlopen (loading the library runs its constructors)";
    bad_plugin_name: "ZOO_BAD_NAME" => ["LOAD-5"] [] "load.info-strings" "printable ASCII";
    claims_any_type: "ZOO_CLAIM_ANY" => ["LOAD-6"] [] "load.claim-unlisted" "does not list";
    info_abi_differs: "ZOO_INFO_MINOR" => ["ABI-3"] [] "load.info-abi" "1.7";
    info_strings_freed: "ZOO_INFO_HEAP" => ["MEM-2"] [] "load.info-static" "changed";
    accepts_other_major: "ZOO_ACCEPT_MAJOR" => ["ABI-2"] [] "abi.init-major" "expected AAPI_EABI";
    ignores_struct_size: "ZOO_IGNORE_STRUCT_SIZE" => ["ABI-4"] [] "abi.struct-size" "aapi_get_server_prop";
    // `struct_size != sizeof`: refuses the larger structs of every newer 1.x framework.
    refuses_larger_structs: "ZOO_STRICT_SIZE" => ["ABI-4"] [] "abi.struct-size" "aapi_open_server with session.struct_size";
    writes_past_struct: "ZOO_STRUCT_OVERWRITE" => ["ABI-5"] [] "abi.struct-bounds" "wrote past";
    reads_past_struct: "ZOO_READ_PAST_STRUCT" => ["ABI-5", "MEM-3"] [] "abi.struct-read" "crash(SIGSEGV) in aapi_open_server";
    // Capabilities a correct plugin may leave out: the checks that need them are skipped.
    restores_only_in_place: "ZOO_NO_ALT_RESTORE" => [] [] "" "";
    backs_up_only: "ZOO_BACKUP_ONLY" => [] [] "" "";
    // call order
    works_after_terminate: "ZOO_AFTER_TERMINATE" => ["LIFE-1"] [] "life.after-terminate" "after aapi_terminate";
    second_init_succeeds: "ZOO_DOUBLE_INIT" => ["LIFE-2"] [] "life.double-init" "second aapi_pgn_init";
    opens_without_claim: "ZOO_NO_CLAIM_CHECK" => ["LIFE-3"] [] "life.open-before-claim" "before any claim";
    ignores_operation: "ZOO_ANY_OPERATION" => ["LIFE-4"] [] "life.operation-discovery" "aapi_open_object";
    writes_opened_object: "ZOO_OBJ_MODE" => ["LIFE-5"] [] "life.object-mode" "aapi_write_object";
    close_server_keeps_objects: "ZOO_CLOSE_SERVER_KEEPS_OBJECTS" => ["LIFE-6", "RES-1"] [] "life.close-server" "closed server";
    second_terminate_fails: "ZOO_TERMINATE_TWICE" => ["LIFE-7"] [] "life.terminate" "second aapi_terminate";
    // return codes
    undefined_code: "ZOO_BAD_CODE" => ["RC-1", "RC-7"] [] "rc.codes" "returned 42";
    // A number that is no code keeps its value in the findings.
    negative_code: "ZOO_NEGATIVE_CODE" => ["LIFE-8", "RC-1"] [] "life.backup" "returned -1 (no AAPI_E* code) after";
    // Found before the worker crashed: reported all the same.
    code_before_crash: "ZOO_CODE_BEFORE_CRASH" => ["MEM-3", "RC-1", "RC-9", "RST-10", "RST-6"] [] "rc.codes" "aapi_restore_postprocess returned 42, which is no AAPI_E* code (during rst.failed-restore)";
    wrong_code_for_null: "ZOO_NULL_CODE" => ["RC-3"] [] "rc.null.aapi_open_object" "AAPI_ENOENT";
    accepts_closed_handle: "ZOO_ACCEPT_CLOSED" => ["LIFE-6", "LIFE-7", "OBJ-8", "RC-4"] [] "rc.bad-handle.aapi_read_object" "closed handle";
    writes_out_param_on_failure: "ZOO_OUTPARAM" => ["RC-5"] [] "rc.out-params.aapi_open_object" "while failing";
    overflows_small_buffer: "ZOO_OVERFLOW" => ["RC-6"] [] "rc.buffer.snappath" "too-small buffer was written";
    wrong_code_for_missing_path: "ZOO_ENOENT_EIO" => ["RC-7"] [] "rc.unknown-path" "AAPI_EIO";
    accepts_unknown_schedule: "ZOO_SCHED" => ["RC-8"] [] "rc.schedules" "schedule 4";
    last_error_not_per_thread: "ZOO_GLOBAL_ERROR" => ["RC-9"] [] "rc.last-error" "never failed";
    // "" is the message of "no call failed": a failing call that leaves it breaks RC-9.
    last_error_left_empty: "ZOO_NO_LAST_ERROR" => ["RC-9"] ["RC-10"] "rc.last-error" "left aapi_get_last_error empty";
    last_error_kept_first: "ZOO_FIRST_ERROR" => ["RC-9"] [] "rc.last-error" "left the first one's message";
    failed_create_leaves_object: "ZOO_CREATE_LEAVES" => ["RC-11"] [] "rc.failed-create" "on disk";
    // objects
    never_returns_eof: "ZOO_NO_EOF" => ["OBJ-1"] [] "obj.read-protocol" "no end of data";
    size_property_short: "ZOO_SHORT_SIZE" => ["OBJ-2", "OBJ-7"] [] "obj.size" "size property";
    directory_has_data: "ZOO_DIR_DATA" => ["OBJ-3"] [] "obj.dir-symlink" "directory";
    misses_changes: "ZOO_NO_CHANGED" => ["OBJ-4"] [] "obj.changed" "instead of AAPI_ECHANGED";
    refuses_empty_write: "ZOO_WRITE_ZERO" => ["OBJ-5"] [] "obj.write" "len 0";
    visible_before_close: "ZOO_VISIBLE_EARLY" => ["OBJ-6"] [] "obj.invisible-until-close" "before aapi_close_object";
    unknown_valid_bits: "ZOO_PROP_VALID" => ["OBJ-7"] [] "obj.prop-valid" "unknown bits";
    // discovery
    no_file_for_empty_host: "ZOO_SKIP_EMPTY_HOSTS" => ["DISC-1"] [] "disc.workload-files" "no workload file";
    discovery_drops_object: "ZOO_DISC_DROP" => ["DISC-2"] [] "disc.exactly-once" "empty.txt";
    discovery_duplicates_object: "ZOO_DISC_DUP" => ["DISC-2"] [] "disc.exactly-once" "listed 2 times";
    wrong_host_in_header: "ZOO_WKLD_HOST" => ["DISC-3"] [] "disc.format" "WRONG-H";
    workload_world_readable: "ZOO_WKLD_MODE" => ["DISC-4", "SEC-2"] [] "disc.workload-mode" "0644";
    failed_discovery_leaves_files: "ZOO_FAIL_LEAVES" => ["DISC-5", "TIME-4"] [] "disc.snapid" "left workload files";
    snappath_not_identity: "ZOO_SNAPPATH_PREFIX" => ["DISC-6"] [] "disc.snappath" "unchanged";
    postprocess_not_idempotent: "ZOO_POSTPROCESS_TWICE" => ["DISC-7"] [] "disc.postprocess" "second postprocess";
    incremental_flags_nothing: "ZOO_NO_UNCHANGED" => ["DISC-8"] [] "disc.incremental" "lacks AAPI_WKLD_UNCHANGED";
    unbalanced_split: "ZOO_UNBALANCED" => [] ["DISC-9"] "disc.balance" "apart";
    // restore
    no_target_root_check: "ZOO_NO_ROOT_CHECK" => ["RST-1"] [] "rst.preprocess" "missing target root";
    writes_outside_objects: "ZOO_STRAY_FILE" => ["RST-2"] [] "rst.create-location" ".zoo-journal";
    overwrites_without_flag: "ZOO_OVERWRITE_ALWAYS" => ["RST-3"] [] "rst.exists" "AAPI_EEXIST";
    restores_wrong_bytes: "ZOO_WRONG_BYTES" => ["RST-4"] [] "data.roundtrip" "data differ";
    skips_utimes: "ZOO_SKIP_UTIMES" => ["RST-5"] [] "rst.utimes" "expected atime";
    failed_restore_left_behind: "ZOO_NO_CLEANUP" => ["RST-6"] ["RST-7"] "rst.failed-restore" "still there";
    follows_links_below_root: "ZOO_FOLLOW_SYMLINKS" => ["RST-10", "RST-11"] [] "rst.confined" "created new.txt";
    props_follow_links_below_root: "ZOO_PROPS_FOLLOW_SYMLINKS" => ["RST-11"] [] "rst.confined-props" "through a symbolic link";
    // timing
    hangs_without_keepalive: "ZOO_HANG" => ["LIFE-8", "TIME-1"] [] "life.backup" "timeout in aapi_read_object";
    slow_with_keepalive: "ZOO_SLOW_KEEPALIVE" => [] [] "" "";
    slow_with_rare_keepalive: "ZOO_SLOW_NO_CADENCE" => [] ["TIME-2"] "time.keepalive-cadence" "without keepalive";
    // Keeps alive by its own session's budget: the runner holds each call to that budget.
    slow_postprocess_paced_by_its_session: "ZOO_SLOW_POSTPROCESS" => [] ["TIME-2"] "time.keepalive-cadence" "aapi_postprocess ran";
    ignores_cancellation: "ZOO_IGNORE_CANCEL" => ["TIME-4"] [] "time.cancel" "cancel";
    // Keepalives reset TIME-1's budget; worker_limit_s still ends the call.
    keeps_alive_forever: "ZOO_KEEPALIVE_FOREVER" with |o| o.profile.worker_limit_s = Some(2) => ["LIFE-8", "TIME-3"] [] "time.bounded" "aapi_discovery had not returned when the worker reached its limit of 2 s (worker_limit_s), keepalives or not: an unbounded wait (if the call is legitimately this long, raise worker_limit_s in the profile)";
    // concurrency
    races_under_concurrency: "ZOO_RACY" => ["THR-2"] [] "thr.concurrent-read" "serially";
    callback_outside_call: "ZOO_STRAY_CALLBACK" => ["THR-3"] [] "thr.callbacks" "background thread";
    callbacks_of_the_last_session: "ZOO_GLOBAL_SESSION" => ["THR-3"] [] "thr.session-callbacks" "log callback of a session while only other sessions' entry points were running";
    callback_after_close: "ZOO_LATE_CALLBACK" => ["THR-3"] [] "thr.callbacks" "keepalive callback of a session whose aapi_close_server had returned";
    thread_outlives_terminate: "ZOO_THREAD_LEAK" => ["THR-4"] [] "thr.threads-terminate" "still run";
    // memory
    crashes_in_read: "ZOO_CRASH_IN_READ" => ["LIFE-8", "MEM-3"] [] "life.backup" "crash(SIGSEGV) in aapi_read_object";
    aborts: "ZOO_ABORT" => ["LIFE-8", "MEM-3"] [] "mem.no-crash" "crash(SIGABRT) in aapi_get_object_prop";
    // A C++ exception out of an entry point ends the worker inside the call, which is named; the
    // runtime's own abort message is not taken for the plugin's output.
    throws: "ZOO_THROW" => ["LIFE-8", "MEM-3"] [] "mem.no-crash" "crash(SIGABRT) in aapi_get_object_prop";
    // Closing every descriptor in init (daemon-style code) cuts the worker off the runner.
    closes_the_runners_pipes: "ZOO_CLOSE_FDS" => ["LIFE-8"] [] "load.init" "lost a pipe to the supervisor, found after aapi_pgn_init was called";
    writes_past_read_buffer: "ZOO_READ_OVERFLOW" => ["MEM-4"] [] "mem.read-bounds" "wrote past the buffer";
    // Status 0 is no success while a call runs: the plugin ended the process.
    exits_in_terminate: "ZOO_EXIT_IN_TERMINATE" => ["LIFE-7"] [] "load.terminate" "the plugin ended the process (exit status 0) in aapi_terminate";
    crashes_in_a_second_terminate: "ZOO_CRASH_IN_SECOND_TERMINATE" => ["LIFE-7"] [] "load.terminate" "crash(SIGSEGV) in aapi_terminate";
    exits_in_rollback: "ZOO_EXIT_IN_ROLLBACK" => ["MEM-3", "RST-10", "RST-6"] [] "mem.no-crash" "the plugin ended the process (exit status 0) in aapi_restore_postprocess (during rst.failed-restore)";
    // The library destructors run when a worker exits: held to the budget of a call.
    destructor_hangs: "ZOO_DTOR_HANG" => ["LIFE-8"] [] "load.init" "timeout in the process exit (library destructors, exit handlers)";
    destructor_crashes: "ZOO_DTOR_CRASH" => ["LIFE-8"] [] "load.init" "crash(SIGABRT) in the process exit (library destructors, exit handlers)";
    // security and resources
    logs_secret: "ZOO_SECRET_LOG" => ["SEC-1"] [] "sec.secrets" "credential value";
    prints_to_stdout: "ZOO_STDOUT" => [] ["SEC-3"] "sec.output" "stdout";
    init_descriptor_survives_terminate: "ZOO_INIT_FD" => ["RES-2"] [] "res.fds-terminate" "/dev/null";
    // Killed with the worker's process group, and reported.
    child_process_survives_terminate: "ZOO_FORK_CHILD" => ["RES-2"] [] "res.fds-terminate" "processes the plugin started still run: pid";
}

/// Run `define`, which breaks only what `failing` checks: that check fails, every check that
/// needs it is BLOCKED naming the check it needed (never a runner error, never a failure of its
/// own), and `blocked` are among them, each naming the check given.
fn reported_once(define: &str, failing: &str, blocked: &[(&str, &str)]) {
    let r = run(Some(define));
    assert_eq!(r.failed_ids(), vec![failing], "{define}\n{}", r.to_text());
    assert_eq!(r.exit_code, 1, "{define}: one MUST check failed");
    assert!(!r.conformant);
    let ids: Vec<&str> = r.checks.iter().map(|c| c.id.as_str()).collect();
    for c in &r.checks {
        match &c.status {
            Status::Passed | Status::Skipped(_) | Status::Failed => {}
            Status::Blocked(needed) => assert!(
                ids.contains(&needed.as_str()),
                "{define}: {} is blocked by an unknown check {needed:?}",
                c.id
            ),
            other => panic!("{define}: {} is {other:?}\n{}", c.id, r.to_text()),
        }
    }
    for (id, needed) in blocked {
        assert_eq!(
            r.check(id).map(|c| &c.status),
            Some(&Status::Blocked(needed.to_string())),
            "{define}: {id}\n{}",
            r.to_text()
        );
    }
    assert!(
        r.to_text()
            .contains(&format!("needs {failing}, which did not pass"))
    );
}

#[test]
fn a_failing_discovery_is_reported_once() {
    reported_once(
        "ZOO_DISCOVERY_FAILS",
        "life.discovery",
        &[
            ("disc.workload-files", "life.discovery"),
            ("disc.exactly-once", "life.discovery"),
            ("disc.format", "life.discovery"),
            ("disc.workload-mode", "life.discovery"),
            ("disc.balance", "life.discovery"),
            ("sec.workload-private", "life.discovery"),
            ("life.after-terminate", "life.discovery"),
            ("time.keepalive-cadence", "life.discovery"),
            ("life.backup", "life.discovery"),
            ("data.roundtrip", "life.backup"),
        ],
    );
}

/// A plugin that opens no session yet (a skeleton) fails life.discovery, and nothing else:
/// life.open-before-claim, whose positive control opens a session after a claim, is blocked.
#[test]
fn a_plugin_without_sessions_fails_only_its_discovery() {
    reported_once(
        "ZOO_NO_SESSIONS",
        "life.discovery",
        &[("life.open-before-claim", "life.discovery")],
    );
}

#[test]
fn a_refused_claim_is_reported_once() {
    reported_once(
        "ZOO_CLAIM_REFUSED",
        "load.claim",
        &[
            ("life.open-before-claim", "life.discovery"),
            ("life.double-init", "load.claim"),
            ("life.discovery", "load.claim"),
            ("disc.format", "life.discovery"),
            ("life.after-terminate", "life.discovery"),
        ],
    );
}

/// A claim longer than the `[timing]` budget but within `call_budget_ms` passes: a call without a
/// session cannot keep alive, so the timing units hold it to the run's budget too (TIME-1).
#[test]
fn a_slow_claim_is_held_to_the_run_budget_in_timing_units() {
    let r = run_with(Some("ZOO_SLOW_CLAIM"), |o| {
        o.only = vec!["time.".into(), "load.claim".into()]
    });
    assert!(
        r.check("time.cancel")
            .is_some_and(|c| c.status == Status::Passed)
    );
    assert_eq!(r.failed_ids(), Vec::<&str>::new(), "{}", r.to_text());
    assert_eq!(r.exit_code, 0, "{}", r.to_text());
}

/// A crash in one function (every valid `aapi_open_object`) fails the step that uses it
/// (`life.backup`), `mem.no-crash` and the probes of that very function; the probes that open
/// objects only as a tool, and crash the same way, are blocked by that step instead of failing
/// clauses of their own, and say so.
#[test]
fn a_crash_in_one_function_is_reported_at_its_step() {
    let r = run(Some("ZOO_CRASH_IN_OPEN"));
    let text = r.to_text();
    assert_eq!(
        r.failed_ids(),
        vec![
            "life.backup",
            "rc.bad-handle.aapi_open_object",
            "rc.out-params.aapi_open_object",
            "mem.no-crash"
        ],
        "{text}"
    );
    assert!(
        text.contains("abi.struct-size [ABI-4]: stopped the same way as life.backup, which did not pass: crash(SIGSEGV) in aapi_open_object"),
        "{text}"
    );
    assert!(
        findings(&r, "life.backup").contains("crash(SIGSEGV) in aapi_open_object"),
        "{text}"
    );
    for id in [
        "rc.bad-handle.aapi_close_server",
        "abi.struct-size",
        "rc.buffer.last-error",
    ] {
        assert_eq!(
            r.check(id).map(|c| &c.status),
            Some(&Status::Blocked("life.backup".into())),
            "{id}\n{text}"
        );
    }
    assert!(
        r.checks
            .iter()
            .all(|c| !matches!(c.status, Status::Error(_))),
        "{text}"
    );
    assert_eq!(r.exit_code, 1);
}

/// Leaked descriptors are named by their targets, and only the plugin's: the descriptor the
/// check reads `/proc/self/fd` through is never among them.
#[test]
fn leaks_descriptors() {
    let r = run(Some("ZOO_LEAK_FD"));
    let text = r.to_text();
    assert_eq!(r.failed_clauses(), vec!["RES-1", "RES-2"], "{text}");
    for id in ["res.fds-close-server", "res.fds-terminate"] {
        let f = findings(&r, id);
        assert!(f.contains("fd ") && f.contains("/tree/data/"), "{id}: {f}");
        assert!(
            !f.contains("/proc/"),
            "{id} blames the check's own descriptor: {f}"
        );
    }
}

/// A run-wide check selected alone judges the whole run, not only the gate: `--only
/// mem.no-crash` still fails a plugin that crashes in its backup, and `--only time.bounded` one
/// whose discovery keeps alive forever.
#[test]
fn a_run_wide_check_selected_alone_judges_the_whole_run() {
    let r = run_with(Some("ZOO_CRASH_IN_OPEN"), |o| {
        o.only = vec!["mem.no-crash".into()]
    });
    assert_eq!(r.failed_ids(), vec!["mem.no-crash"], "{}", r.to_text());
    assert!(
        findings(&r, "mem.no-crash").contains("crash(SIGSEGV) in aapi_open_object"),
        "{}",
        r.to_text()
    );
    assert_eq!(r.exit_code, 1);
    let r = run_with(Some("ZOO_KEEPALIVE_FOREVER"), |o| {
        o.only = vec!["time.bounded".into()];
        o.profile.worker_limit_s = Some(2);
    });
    assert_eq!(r.failed_ids(), vec!["time.bounded"], "{}", r.to_text());
    assert_eq!(r.exit_code, 1);
}

/// Two bugs in one function: `aapi_open_object` crashes on some valid paths (`life.backup` fails)
/// and on a NULL path. The probe of that function (`rc.null.aapi_open_object`, which does not need
/// the backup) reports its own RC-3 failure instead of being blocked by the step; a probe that
/// only uses the function and dies the same way as the step says so, not that it "needs" it.
#[test]
fn a_second_bug_in_a_failed_steps_function_is_reported() {
    let r = run(Some("ZOO_OPEN_TWO_BUGS"));
    let text = r.to_text();
    assert!(r.failed_ids().contains(&"life.backup"), "{text}");
    assert_eq!(
        r.check("rc.null.aapi_open_object").map(|c| &c.status),
        Some(&Status::Failed),
        "{text}"
    );
    assert!(
        findings(&r, "rc.null.aapi_open_object").contains("crash(SIGSEGV) in aapi_open_object"),
        "{text}"
    );
    assert!(
        !text.contains("rc.null.aapi_open_object [RC-3]: needs"),
        "{text}"
    );
    assert_eq!(r.exit_code, 1);
}

/// A function that keeps alive forever holds the run up once, not once per probe that calls it:
/// a later call to it is stopped after its budget, and a check that only used it is blocked by
/// the step, with a finding that names the first hang. The probes of that very function still
/// fail on their own, and a second bug of that function that shows at once (`AAPI_ENOENT` for a
/// NULL path) is still reported.
#[test]
fn a_function_that_keeps_alive_forever_holds_the_run_up_once() {
    // Three times the 2 s call budget, after which later calls are stopped.
    let six_s: fn(&mut RunOptions) = |o| o.profile.worker_limit_s = Some(6);
    for (define, limit, aggregate) in [("ZOO_OPEN_FOREVER", six_s, "time.bounded")] {
        let r = run_with(Some(define), limit);
        let text = r.to_text();
        // The probes of the function fail when they waited for it in full, and are blocked by
        // the backup when they were stopped.
        let probes = [
            "rc.bad-handle.aapi_open_object",
            "rc.out-params.aapi_open_object",
        ];
        assert_eq!(
            r.failed_ids()
                .into_iter()
                .filter(|id| !probes.contains(id))
                .collect::<Vec<_>>(),
            vec!["life.backup", "rc.null.aapi_open_object", aggregate],
            "{define}\n{text}"
        );
        assert!(
            findings(&r, "rc.null.aapi_open_object").contains("returned AAPI_ENOENT"),
            "{define}\n{text}"
        );
        // Waited for in full only by the workers that called it before it was known to hang:
        // the backup's (one finding for its three hosts) and at most one probe per job.
        let full = r.check(aggregate).map_or(0, |c| c.findings.len());
        assert!(
            (1..=3).contains(&full),
            "{define}: {full} workers hung in full\n{text}"
        );
        let stopped: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| {
                c.findings.iter().any(|f| {
                    f.starts_with("aapi_open_object was stopped after")
                        && f.contains("without returning: it had already hung during")
                })
            })
            .map(|c| c.id.as_str())
            .collect();
        assert!(stopped.len() >= 8, "{define}: {stopped:?} stopped\n{text}");
        let waited = probes.iter().filter(|p| !stopped.contains(p));
        for id in stopped.iter().chain(
            [
                "abi.struct-size",
                "rc.bad-handle.aapi_close_server",
                "rc.last-error",
                "rc.unknown-path",
                "life.after-terminate",
            ]
            .iter(),
        ) {
            assert_eq!(
                r.check(id).map(|c| &c.status),
                Some(&Status::Blocked("life.backup".into())),
                "{define}: {id}\n{text}"
            );
        }
        for id in waited {
            assert_eq!(
                r.check(id).map(|c| &c.status),
                Some(&Status::Failed),
                "{define}: {id}\n{text}"
            );
        }
        assert!(
            r.checks
                .iter()
                .all(|c| !matches!(c.status, Status::Error(_))),
            "{define}\n{text}"
        );
    }
}

/// A function that hung without keepalive is not stopped early in later calls: they are held to
/// the budget anyway, and one that returns within it is correct. Every probe of it times out on
/// its own, and its second bug is still reported.
#[test]
fn a_function_that_hung_without_keepalive_is_not_stopped_early() {
    let r = run_with(Some("ZOO_OPEN_HANG"), |o| {
        o.profile.worker_limit_s = Some(5)
    });
    let text = r.to_text();
    assert_eq!(
        r.failed_ids(),
        vec![
            "life.backup",
            "rc.null.aapi_open_object",
            "rc.bad-handle.aapi_open_object",
            "rc.out-params.aapi_open_object",
            "time.budget"
        ],
        "{text}"
    );
    assert!(
        findings(&r, "rc.null.aapi_open_object").contains("returned AAPI_ENOENT"),
        "{text}"
    );
    assert!(
        r.checks
            .iter()
            .all(|c| c.findings.iter().all(|f| !f.contains("was stopped after"))),
        "{text}"
    );
}

#[test]
fn a_function_that_keeps_alive_forever_after_a_silent_hang_is_stopped_too() {
    // The backup's first open (of a directory) times out without keepalive; the opens of its
    // files keep alive until the worker limit. Later calls are stopped from then on.
    let r = run_with(Some("ZOO_OPEN_HANG_THEN_FOREVER"), |o| {
        o.profile.worker_limit_s = Some(6)
    });
    let text = r.to_text();
    for id in [
        "life.backup",
        "rc.null.aapi_open_object",
        "time.budget",
        "time.bounded",
    ] {
        assert_eq!(
            r.check(id).map(|c| &c.status),
            Some(&Status::Failed),
            "{id}\n{text}"
        );
    }
    let full = r.check("time.bounded").map_or(0, |c| c.findings.len());
    assert!(
        (1..=3).contains(&full),
        "{full} workers hung in full\n{text}"
    );
    let stopped: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| {
            c.findings
                .iter()
                .any(|f| f.starts_with("aapi_open_object was stopped after"))
        })
        .map(|c| c.id.as_str())
        .collect();
    assert!(stopped.len() >= 5, "{stopped:?}\n{text}");
    // A stopped call says nothing of its probe's clause, even in a probe of that function.
    for id in stopped {
        assert_eq!(
            r.check(id).map(|c| &c.status),
            Some(&Status::Blocked("life.backup".into())),
            "{id}\n{text}"
        );
    }
}

/// A plugin that restores no symbolic links may refuse one at the target root's path with
/// `AAPI_ENOTSUP`, the code it gives for the type anywhere, instead of RST-10's `AAPI_EEXIST`.
/// (Its selections hold no links: it could not restore them.)
#[test]
fn a_plugin_without_symlink_restore_may_refuse_the_type_at_the_root() {
    let r = run_with(Some("ZOO_NO_SYMLINK_RESTORE"), |o| {
        o.profile.selections = vec!["{tree}/data/deep".into()];
        o.only = vec!["rst.confined".into()];
    });
    assert_eq!(
        r.check("rst.confined").map(|c| &c.status),
        Some(&Status::Passed),
        "{}",
        r.to_text()
    );
    assert_eq!(r.exit_code, 0, "{}", r.to_text());
}

/// A plugin that restores symbolic links may not claim the allowance above by refusing them
/// only at and near the target root: a link deeper down is tried too.
#[test]
fn refusing_links_only_near_the_root_breaks_rst_10() {
    let r = run_with(Some("ZOO_NEAR_ROOT_LINKS"), |o| {
        o.profile.selections = vec!["{tree}/data/deep".into()];
        o.only = vec!["rst.confined".into()];
    });
    assert_eq!(r.failed_ids(), vec!["rst.confined"], "{}", r.to_text());
}

/// A workload type other than `files` whose profile's selections use `{tree}` is compared with
/// a recursive walk of them; the finding says so, and how to give the workload's own selections.
#[test]
fn a_recursive_walk_for_another_workload_type_is_explained() {
    let r = run_with(Some("ZOO_FLAT"), |o| {
        o.profile.workload_type = "flat".into();
        o.only = vec!["disc.exactly-once".into()];
    });
    assert_eq!(r.failed_ids(), vec!["disc.exactly-once"], "{}", r.to_text());
    let f = findings(&r, "disc.exactly-once");
    assert!(
        f.contains("is in the selection but in no workload file"),
        "{f}"
    );
    assert!(
        f.contains("recursive walk of the selections")
            && f.contains("the profile's selections use {tree}")
            && f.contains("workload type \"flat\"")
            && f.contains("give the profile selections of its own"),
        "{f}"
    );
}

/// The checks that need `[files]` are skipped for a profile without it, saying that the
/// profile, not the plugin, decided it, and what to add.
#[test]
fn checks_that_need_files_say_the_profile_has_none() {
    let dir = common::fast_tempdir();
    std::fs::create_dir_all(dir.path().join("own/sub")).unwrap();
    std::fs::write(dir.path().join("own/sub/a.txt"), b"hi\n").unwrap();
    let sel = dir.path().join("own").to_string_lossy().into_owned();
    let r = run_with(None, |o| {
        o.profile.files = None;
        o.profile.selections = vec![sel];
        o.only = vec![
            "rst.confined".into(),
            "obj.changed".into(),
            "data.on-disk".into(),
        ];
    });
    assert_eq!(r.exit_code, 0, "{}", r.to_text());
    for (id, clause) in [
        ("rst.confined", "RST-10"),
        ("rst.confined-props", "RST-11"),
        ("obj.changed", "OBJ-4"),
        ("data.on-disk", "RST-4"),
    ] {
        let Some(Status::Skipped(reason)) = r.check(id).map(|c| &c.status) else {
            panic!("{id} is not skipped\n{}", r.to_text());
        };
        assert!(
            reason.contains("the profile has no [files] section and no selection uses {tree}")
                && reason.contains(&format!("judged on {clause}"))
                && reason.contains("with [files] in its profile"),
            "{id}: {reason}"
        );
    }
}

/// Relative `selections` and `restore_root` are relative to the profile's directory, not to the
/// directory the runner happens to run in.
#[test]
fn relative_paths_are_relative_to_the_profile() {
    let dir = common::fast_tempdir();
    std::fs::create_dir_all(dir.path().join("relsel/sub")).unwrap();
    std::fs::write(dir.path().join("relsel/sub/a.txt"), b"hi\n").unwrap();
    let r = run_with(None, |o| {
        o.profile_dir = dir.path().to_path_buf();
        o.profile.credentials_file = None;
        o.profile.selections = vec!["relsel".into()];
        o.profile.restore_root = "relrestore".into();
        o.only = vec!["life.".into()];
    });
    assert_eq!(r.failed_ids(), Vec::<&str>::new(), "{}", r.to_text());
    assert_eq!(r.exit_code, 0, "{}", r.to_text());
    let restored = dir.path().join("relrestore").join(
        dir.path()
            .join("relsel/sub/a.txt")
            .strip_prefix("/")
            .unwrap(),
    );
    assert_eq!(std::fs::read(&restored).unwrap(), b"hi\n");
}

/// A waived check whose probe also judges another check: when the plugin ends the process in
/// that probe, the other check is blocked by the waived one, not a runner error.
#[test]
fn a_waived_probe_that_died_blocks_the_checks_it_judges() {
    let r = run_with(Some("ZOO_EXIT_IN_ROLLBACK"), |o| {
        o.exclusions
            .0
            .insert("rst.failed-restore".into(), "known issue".into());
        o.only = vec!["rst.failed-restore".into()];
    });
    assert_eq!(
        r.check("rst.failed-restore-keeps").map(|c| &c.status),
        Some(&Status::Blocked("rst.failed-restore".into())),
        "{}",
        r.to_text()
    );
    assert!(
        r.checks
            .iter()
            .all(|c| !matches!(c.status, Status::Error(_))),
        "{}",
        r.to_text()
    );
}
