//! The `aapi-host` command line: backup, restore, list, show and verify with a workload plugin.

use aapi_host::delete;
use aapi_host::jobs::{self, BackupOptions, ExitKind, INTERRUPTED, JobError, Runner};
use aapi_host::store::{self, ImageState, Store};
use aapi_host::tasks::{self, RestoreTask};
use aapi_host::ui::{self, Ui, escape_path, escape_text};
use aapi_sdk::abi::AAPI_DEFAULT_CALL_BUDGET_MS;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  success
  1  the job failed, or verify found damage (the message names what and what to do), or the
     results could not be written to stdout (a reader closing it early is not an error)
  2  bad usage or input (unknown image, plugin that cannot be loaded, unreadable store); nothing ran
  3  partial: the image is complete but some objects could not be backed up
  4  the plugin does not support the schedule (AAPI_ESCHED_NOT_SUPPORTED)
  5  cancelled (Ctrl-C or SIGTERM); running plugin calls were cancelled through their keepalive"
    };
}
const EXIT_CODES: &str = exit_codes!();
/// Help epilogue of the commands that write stream files.
const STREAM_JOB_HELP: &str = concat!(
    exit_codes!(),
    "

Environment:
  AAPI_STREAM_IO  how stream files are written: buffered (default, through the page cache) or
                  direct (O_DIRECT: less CPU, the image stays out of the page cache)"
);

/// The reference backup framework for aapi workload plugins.
#[derive(Parser, Debug)]
#[command(name = "aapi-host", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Image store directory (`backup` and `discover` create it when missing).
    #[arg(long, global = true, env = "AAPI_STORE", default_value = "aapi-store")]
    store: PathBuf,
    /// Print one JSON document on stdout instead of text; no progress bars.
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Also print the plugin's INFO log lines.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a compound backup job: discovery, one child job per backup host, postprocess, finalize.
    #[command(after_help = STREAM_JOB_HELP)]
    Backup(BackupArgs),
    /// Step 1 of a split backup: create the image and run discovery; prints the image id.
    #[command(after_help = EXIT_CODES)]
    Discover(BackupArgs),
    /// Step 2 of a split backup: run the child job of one backup host of an image.
    #[command(after_help = STREAM_JOB_HELP)]
    Child {
        /// Image id printed by `discover`.
        #[arg(long)]
        image: String,
        /// Backup host whose workload file this child job streams.
        #[arg(long)]
        host: String,
    },
    /// Step 3 of a split backup: postprocess (snapshot cleanup) and mark the image complete.
    #[command(after_help = EXIT_CODES)]
    Finalize {
        /// Image id.
        #[arg(long)]
        image: String,
        /// Give the image up although child jobs did not complete: run postprocess (snapshot
        /// cleanup) and leave the image incomplete.
        #[arg(long)]
        abandon: bool,
    },
    /// List the images of the store, complete and incomplete.
    List,
    /// Show one image: its manifest, and with --objects its catalog.
    Show {
        /// Image id.
        image: String,
        /// List every object (type, mode, size, path; with --json also image, stream, offset and
        /// digest).
        #[arg(long)]
        objects: bool,
    },
    /// Re-read every object of an image and check its digest; names each damaged object.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// Image id.
        image: String,
    },
    /// Restore a whole image, a point in time of a policy, or selected paths.
    #[command(after_help = EXIT_CODES)]
    Restore(RestoreArgs),
    /// Delete images; an image other images still need is refused unless they go too.
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// Image ids.
        ids: Vec<String>,
        /// Also every incomplete image of a job that ended (failed or given up); images of
        /// running or unfinished jobs and damaged images are kept and named, so it is safe from
        /// cron while backups run.
        #[arg(long)]
        incomplete: bool,
        /// Also the images that need the ones named (incrementals whose data refers to them).
        #[arg(long)]
        with_dependents: bool,
        /// List what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Internal: run one task in a worker process (started by aapi-host itself).
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Debug, Clone)]
struct BackupArgs {
    /// Plugin library (.so), or a directory of them: the first (by file name) that claims the
    /// workload type is used.
    #[arg(long)]
    plugin: PathBuf,
    /// Backup policy name; last backup times are kept per policy.
    #[arg(long)]
    policy: String,
    /// Schedule: full, incr (changes since the last backup) or cinc (since the last full).
    #[arg(long, default_value = "full")]
    schedule: String,
    /// What to back up (repeatable), e.g. an absolute path for the files workload.
    /// Any bytes the shell passes are given to the plugin as they are.
    #[arg(long = "select", required = true)]
    selections: Vec<std::ffi::OsString>,
    /// Backup hosts, comma-separated: one workload file and one stream each.
    #[arg(long, value_delimiter = ',', conflicts_with = "streams")]
    hosts: Vec<String>,
    /// Number of streams on this machine (backup hosts named stream-0 .. stream-N-1, after the
    /// stream files they write).
    #[arg(long)]
    streams: Option<u32>,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Args, Debug, Clone)]
struct SessionArgs {
    /// Workload type to claim [default: files; for restore, the image's].
    #[arg(long)]
    workload_type: Option<String>,
    /// Workload server given to aapi_open_server [default: localhost; for restore, the
    /// image's].
    #[arg(long)]
    server: Option<String>,
    /// Session property KEY=VALUE for the plugin (repeatable).
    #[arg(long = "property", value_parser = parse_kv)]
    properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds: a plugin call must return or send a keepalive this often.
    #[arg(long, default_value_t = AAPI_DEFAULT_CALL_BUDGET_MS,
          value_parser = clap::value_parser!(u32).range(1..))]
    call_budget_ms: u32,
    /// File of KEY=VALUE secrets answered to the plugin's credential callback (mode 0600).
    #[arg(long)]
    credentials: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// Image to restore (its catalog is the full object list at its point in time).
    image: Option<String>,
    /// Instead of an image: the newest complete image of this policy...
    #[arg(long, conflicts_with = "image")]
    policy: Option<String>,
    /// ...that started at or before this time: "YYYY-mm-dd[THH:MM[:SS[.fff]]]" in UTC, or with
    /// "Z", " UTC" or an offset "±HH:MM" after the time (the form `list` prints is one), or Unix
    /// seconds.
    #[arg(long, requires = "policy")]
    at: Option<String>,
    /// Restore only this path and what lies below it (repeatable; any bytes, as the shell gives them).
    #[arg(long = "path")]
    paths: Vec<PathBuf>,
    /// Restore under this directory instead of the original place (prefixed to every path).
    #[arg(long)]
    alt_root: Option<PathBuf>,
    /// Replace objects that already exist.
    #[arg(long)]
    overwrite: bool,
    /// List what would be restored, and restore nothing.
    #[arg(long)]
    dry_run: bool,
    /// Plugin library or directory (as for backup); by default the library that made the image.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Backup host the restore runs on.
    #[arg(long, default_value = "localhost")]
    host: String,
    #[command(flatten)]
    session: SessionArgs,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// `println!` for results: through [`ui::out`], which never panics on a closed or full stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        ui::out(format_args!($($arg)*))
    };
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// For commands that change nothing: stop at once, as cancelled (exit 5).
extern "C" fn on_signal_stop(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the process without running anything else.
    unsafe { libc::_exit(ExitKind::Cancelled.code()) };
}

fn main() -> ExitCode {
    if let Err(e) = aapi_host::pid1::init_if_process_1() {
        eprintln!(
            "aapi-host: warning: cannot start an init as process 1 ({e}): processes that end \
             under it stay zombies until aapi-host ends; run the container with --init"
        );
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            // Scripts that asked for JSON get JSON for a usage error too (exit 2).
            if !matches!(e.kind(), DisplayHelp | DisplayVersion)
                && std::env::args().any(|a| a == "--json")
            {
                let message = e.render().to_string();
                let message = message.trim().trim_start_matches("error: ");
                outln!(
                    "{}",
                    json!({"ok": false, "exit": ExitKind::Usage, "error": message})
                );
                return ExitCode::from(ExitKind::Usage.code() as u8);
            }
            e.exit()
        }
    };
    if matches!(cli.command, Cmd::Worker) {
        return ExitCode::from(aapi_host::worker::main() as u8);
    }
    ui::set_store(&cli.store);
    // Commands that only read the store stop at once; the others stop cleanly (exit 5).
    let reads_only = match &cli.command {
        Cmd::List | Cmd::Show { .. } => true,
        Cmd::Restore(a) => a.dry_run,
        _ => false,
    };
    let handler = if reads_only {
        on_signal_stop as *const () as libc::sighandler_t
    } else {
        on_signal as *const () as libc::sighandler_t
    };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handlers only store to an atomic or call _exit, both async-signal-safe.
        unsafe { libc::signal(sig, handler) };
    }
    let ui = Ui::new(cli.quiet, cli.json, cli.verbose);
    let result = run(&cli, &ui);
    let kind = match result {
        Ok(kind) => kind,
        Err(e) => {
            if cli.json {
                outln!(
                    "{}",
                    json!({"ok": false, "exit": e.kind, "error": e.message})
                );
            }
            ui.error(&e.message);
            e.kind
        }
    };
    // Results that could not be written are a failure of a command that otherwise succeeded.
    let kind = match ui::stdout_failure() {
        Some(e) => {
            ui.error(&format!(
                "cannot write the results to standard output: {e}; what it holds is incomplete"
            ));
            match kind {
                ExitKind::Ok | ExitKind::Partial => ExitKind::Failed,
                other => other,
            }
        }
        None => kind,
    };
    ExitCode::from(kind.code() as u8)
}

fn print_json(v: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values print")
    );
}

fn backup_options(store: &std::path::Path, a: &BackupArgs) -> Result<BackupOptions, JobError> {
    let hosts = match (a.streams, a.hosts.is_empty()) {
        (Some(0), _) => {
            return Err(JobError {
                kind: ExitKind::Usage,
                message: "--streams must be at least 1".into(),
            });
        }
        (Some(n), _) => (0..n).map(|i| format!("stream-{i}")).collect(),
        (None, true) => vec!["stream-0".to_string()],
        (None, false) => a.hosts.clone(),
    };
    Ok(BackupOptions {
        store: store.to_path_buf(),
        policy: a.policy.clone(),
        schedule: a.schedule.clone(),
        plugin: a.plugin.clone(),
        workload_type: a
            .session
            .workload_type
            .clone()
            .unwrap_or_else(|| "files".into()),
        server: a
            .session
            .server
            .clone()
            .unwrap_or_else(|| "localhost".into()),
        selections: a.selections.iter().map(|s| s.as_bytes().to_vec()).collect(),
        hosts,
        properties: a.session.properties.clone(),
        call_budget_ms: a.session.call_budget_ms,
        credentials: a.session.credentials.clone(),
    })
}

fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.1} MiB/s", bytes as f64 / 1048576.0 / secs.max(1e-9))
}

/// The path of a failed or damaged object for a line of text (control characters escaped).
fn shown(f: &store::ObjectFailure) -> String {
    escape_path(&f.path_bytes())
}

/// Name each object a complete image lacks, and what that means for the next incremental.
fn report_failures(ui: &Ui, m: &store::Manifest) {
    for f in &m.failures {
        ui.error(&format!("not backed up: {}: {}", shown(f), f.error));
    }
    if !m.failures.is_empty() {
        ui.error(&format!(
            "{} object(s) failed; image {} is complete without them and is not used as the base of the next incremental",
            m.failures.len(),
            m.image
        ));
    }
}

fn run(cli: &Cli, ui: &Ui) -> Result<ExitKind, JobError> {
    let runner = Runner::new(ui.clone()).map_err(|e| JobError {
        kind: ExitKind::Usage,
        message: format!("cannot find the aapi-host executable: {e}"),
    })?;
    let t0 = Instant::now();
    match &cli.command {
        Cmd::Worker => unreachable!("handled in main"),
        Cmd::Backup(a) => {
            let o = backup_options(&cli.store, a)?;
            let m = runner.backup(&o)?;
            let secs = t0.elapsed().as_secs_f64();
            let kind = if m.failures.is_empty() {
                ExitKind::Ok
            } else {
                ExitKind::Partial
            };
            if cli.json {
                print_json(&json!({"ok": true, "exit": kind, "seconds": secs, "manifest": m}));
            } else if !cli.quiet {
                outln!(
                    "image {} complete: {} objects, {} bytes in {} stream(s), {:.2} s ({})",
                    m.image,
                    m.objects,
                    m.bytes,
                    m.streams.len(),
                    secs,
                    rate(m.bytes, secs)
                );
            }
            report_failures(ui, &m);
            Ok(kind)
        }
        Cmd::Discover(a) => {
            let o = backup_options(&cli.store, a)?;
            let (job, _in_use) = runner.discover(&o)?;
            if cli.json {
                print_json(
                    &json!({"ok": true, "image": job.image, "hosts": job.hosts, "snapid": job.snapid}),
                );
            } else {
                outln!("{}", job.image);
                let cli_store = ui::command();
                ui.note(&format!(
                    "discovery done; now run `{cli_store} child --image {} --host H` for each of {} and then `{cli_store} finalize --image {}`",
                    job.image,
                    job.hosts.join(", "),
                    job.image
                ));
            }
            Ok(ExitKind::Ok)
        }
        Cmd::Child { image, host } => {
            let st = Store::open_existing(&cli.store)?;
            let job = st.job(image)?;
            let n = job
                .hosts
                .iter()
                .position(|h| h == host)
                .ok_or_else(|| JobError {
                    kind: ExitKind::Usage,
                    message: format!(
                        "image {image} has no backup host {host:?} (its hosts: {})",
                        job.hosts.join(", ")
                    ),
                })?;
            let done = runner.child(&cli.store, image, n as u32)?;
            if cli.json {
                print_json(&json!({"ok": true, "exit": ExitKind::Ok, "stream": done}));
            } else if !cli.quiet {
                outln!(
                    "stream {} ({}) done: {} objects, {} bytes, {} failed",
                    done.stream,
                    done.host,
                    done.objects,
                    done.bytes,
                    done.failures.len()
                );
            }
            for f in &done.failures {
                ui.error(&format!("not backed up: {}: {}", shown(f), f.error));
            }
            Ok(ExitKind::Ok)
        }
        Cmd::Finalize { image, abandon } => {
            let m = runner.finalize(&cli.store, image, *abandon)?;
            let kind = if m.failures.is_empty() {
                ExitKind::Ok
            } else {
                ExitKind::Partial
            };
            if cli.json {
                print_json(&json!({"ok": true, "exit": kind, "manifest": m}));
            } else if !cli.quiet {
                outln!("image {} complete: {} objects", m.image, m.objects);
            }
            report_failures(ui, &m);
            Ok(kind)
        }
        Cmd::List => {
            let st = Store::open_existing(&cli.store)?;
            let mut rows = Vec::new();
            for id in st.image_ids()? {
                let state = match st.state(&id) {
                    Ok(s) => s,
                    // Deleted since the listing began.
                    Err(_) if !st.image_dir(&id).is_dir() => continue,
                    // Listed as damaged, with what its job file still tells: one unreadable
                    // image must not hide the others.
                    Err(e) => {
                        let job = st.job(&id).ok();
                        rows.push(json!({
                            "image": id, "state": "damaged",
                            "policy": job.as_ref().map(|j| j.policy.clone()),
                            "schedule": job.as_ref().map(|j| j.schedule.clone()),
                            "started": job.as_ref().map(|j| j.started),
                            "reason": e.to_string(),
                        }));
                        continue;
                    }
                };
                let row = match state {
                    ImageState::Complete(m) => json!({
                        "image": id, "state": if m.failures.is_empty() {"complete"} else {"partial"},
                        "policy": m.policy, "schedule": m.schedule, "started": m.started,
                        "objects": m.objects, "bytes": m.bytes, "base": m.base,
                    }),
                    ImageState::Incomplete { job, reason } => {
                        // A lock that cannot be tested counts as held, as for delete.
                        let running = st.in_use(&id, false).map_or(true, |(r, _)| r);
                        json!({
                            "image": id, "state": if running {"running"} else {"incomplete"},
                            "policy": job.as_ref().map(|j| j.policy.clone()),
                            "schedule": job.as_ref().map(|j| j.schedule.clone()),
                            "started": job.as_ref().map(|j| j.started),
                            "reason": match (running, reason) {
                                (true, _) => "its job is running now".to_string(),
                                (false, Some(r)) => r,
                                // A postprocess that failed says so, until a finalize runs it.
                                (false, None) if job.as_ref().is_some_and(|j| j.snapid.is_none()) => {
                                    "its discovery did not complete (killed or crashed); `delete --incomplete` removes it".to_string()
                                }
                                (false, None) => std::fs::read_to_string(
                                    st.image_dir(&id).join(store::POSTPROCESS_FAILED),
                                )
                                .unwrap_or_else(|_| "no step of its job is running here: it was interrupted, or a split job has steps to run".to_string()),
                            },
                        })
                    }
                };
                rows.push(row);
            }
            if cli.json {
                print_json(&json!({"ok": true, "images": rows}));
            } else {
                // Columns as wide as their longest entry (image ids and schedule names vary).
                let width = |key: &str, min: usize| {
                    rows.iter()
                        .map(|r| r[key].as_str().map_or(1, str::len))
                        .fold(min, usize::max)
                };
                let (wi, ws) = (width("image", 24), width("schedule", 4));
                for r in &rows {
                    let started = r["started"]
                        .as_i64()
                        .map(store::utc_display)
                        .unwrap_or_default();
                    let reason = escape_text(r["reason"].as_str().unwrap_or(""));
                    let extra = if r["state"] == "incomplete" || r["state"] == "running" {
                        format!("INCOMPLETE: {reason}")
                    } else if r["state"] == "damaged" {
                        format!("DAMAGED: {reason}")
                    } else {
                        format!("{} objects, {} bytes", r["objects"], r["bytes"])
                    };
                    outln!(
                        "{:<wi$} {:<10} {:<ws$} {}  {}",
                        r["image"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["schedule"].as_str().unwrap_or("?"),
                        started,
                        extra
                    );
                }
            }
            Ok(ExitKind::Ok)
        }
        Cmd::Show { image, objects } => {
            let st = Store::open_existing(&cli.store)?;
            let m = match st.state(image)? {
                ImageState::Complete(m) => *m,
                ImageState::Incomplete { job, reason } => {
                    let running = st.in_use(image, false)?.0;
                    let state = if running { "running" } else { "incomplete" };
                    if cli.json {
                        print_json(
                            &json!({"ok": true, "image": image, "state": state, "job": job, "reason": reason}),
                        );
                    } else if running {
                        outln!("image {image}: INCOMPLETE (its job is running now)");
                    } else {
                        outln!(
                            "image {image}: INCOMPLETE ({})",
                            escape_text(reason.as_deref().unwrap_or("the job did not finish"))
                        );
                    }
                    return Ok(ExitKind::Ok);
                }
            };
            let cat = if *objects {
                Some(st.catalog(&m)?)
            } else {
                None
            };
            let rows: Vec<serde_json::Value> = cat
                .iter()
                .flat_map(|c| {
                    c.entries.iter().map(|e| {
                        let mut row = json!({
                            "path": String::from_utf8_lossy(&e.path), "type": e.props.type_name(),
                            "mode": format!("{:o}", e.props.mode), "size": e.data.length,
                            "mtime": e.props.mtime.sec, "image": c.images[e.data.image as usize],
                            "stream": e.data.stream, "offset": e.data.offset,
                            "blake3": store::hex(&e.data.blake3),
                        });
                        if std::str::from_utf8(&e.path).is_err() {
                            row["path_hex"] = store::hex(&e.path).into();
                        }
                        row
                    })
                })
                .collect();
            if cli.json {
                print_json(&json!({"ok": true, "manifest": m, "objects": rows}));
            } else {
                outln!("image     {}", m.image);
                outln!("policy    {} ({})", m.policy, m.schedule);
                outln!("started   {}", store::utc_display(m.started));
                outln!("completed {}", store::utc_display(m.completed));
                outln!("base      {}", m.base.as_deref().unwrap_or("-"));
                outln!(
                    "objects   {} ({} bytes in {} streams)",
                    m.objects,
                    m.bytes,
                    m.streams.len()
                );
                outln!("failed    {}", m.failures.len());
                for f in &m.failures {
                    outln!("  not backed up: {}: {}", shown(f), escape_text(&f.error));
                }
                for e in cat.iter().flat_map(|c| &c.entries) {
                    outln!(
                        "{:<8} {:>6o} {:>12}  {}",
                        e.props.type_name(),
                        e.props.mode,
                        e.data.length,
                        escape_path(&e.path)
                    );
                }
            }
            Ok(ExitKind::Ok)
        }
        Cmd::Delete {
            ids,
            incomplete,
            with_dependents,
            dry_run,
        } => {
            let fail = |message: String| JobError {
                kind: ExitKind::Usage,
                message,
            };
            if ids.is_empty() && !incomplete {
                return Err(fail(format!(
                    "name the images to delete, or pass --incomplete (see `{} list`)",
                    ui::command()
                )));
            }
            let st = Store::open_existing(&cli.store)?;
            // One delete or job start at a time: what is planned stays true until it is done.
            let _lock = jobs::locked(|w| st.lock(w))?;
            let plan = delete::plan(&st, ids, *incomplete, *with_dependents)?;
            if !plan.refused.is_empty() {
                let why: Vec<String> = plan
                    .refused
                    .iter()
                    .map(|(id, by)| format!("{id} is needed by {}", by.join(", ")))
                    .collect();
                return Err(fail(format!(
                    "nothing was deleted: {}; delete those too with --with-dependents, or keep it",
                    why.join("; ")
                )));
            }
            if !plan.busy.is_empty() {
                return Err(fail(format!(
                    "nothing was deleted: {} in use by a running job, restore or verify; try again when it ends",
                    plan.busy.join(", ")
                )));
            }
            if !plan.unfinished.is_empty() {
                let cli_name = format!("aapi-host --store {}", cli.store.display());
                let cleanups: Vec<String> = plan
                    .unfinished
                    .iter()
                    .map(|id| format!("`{cli_name} finalize --image {id} --abandon`"))
                    .collect();
                return Err(fail(format!(
                    "nothing was deleted: the job of {} has not ended (a split job between its steps, a finalize to run again, or a job that was killed; it may hold a snapshot that only its postprocess cleans up); give it up first with {}, then delete",
                    plan.unfinished.join(", "),
                    cleanups.join(" and ")
                )));
            }
            let leftovers = if *dry_run {
                Vec::new()
            } else {
                delete::apply(&st, &plan)?
            };
            if cli.json {
                print_json(&json!({
                    "ok": true, "dry_run": dry_run, "deleted": plan.delete,
                    "bytes": plan.bytes, "leftovers_removed": leftovers,
                    "kept_running": plan.running, "kept_unfinished": plan.unfinished_kept,
                    "kept_damaged": plan.damaged_kept,
                }));
            } else if !cli.quiet {
                for id in &plan.running {
                    outln!("kept {id}: its job is still running");
                }
                for id in &plan.unfinished_kept {
                    outln!(
                        "kept {id}: its job has not ended (`finalize --image {id}` completes it, `finalize --image {id} --abandon` gives it up)"
                    );
                }
                for id in &plan.damaged_kept {
                    outln!(
                        "kept {id}: it is damaged (see `{cmd} list`); `{cmd} delete {id}` deletes it",
                        cmd = ui::command()
                    );
                }
                for id in &plan.delete {
                    outln!("{} {id}", if *dry_run { "would delete" } else { "deleted" });
                }
                for id in &leftovers {
                    outln!("removed what an interrupted delete left of {id}");
                }
                outln!(
                    "{} {} images, {} bytes of stream data",
                    if *dry_run { "would delete" } else { "deleted" },
                    plan.delete.len(),
                    plan.bytes
                );
            }
            Ok(ExitKind::Ok)
        }
        Cmd::Verify { image } => {
            let st = Store::open_existing(&cli.store)?;
            let r = jobs::verify(&st, image, ui)?;
            let kind = if r.is_intact() {
                ExitKind::Ok
            } else {
                ExitKind::Failed
            };
            for w in &r.warnings {
                ui.warning(w);
            }
            for s in &r.damaged_streams {
                ui.error(&format!("{}: {}", s.file.display(), s.error));
            }
            if cli.json {
                print_json(&json!({"ok": r.is_intact(), "exit": kind, "report": r}));
            } else {
                for d in &r.damaged {
                    outln!("DAMAGED {}: {}", shown(d), escape_text(&d.error));
                }
                // The summary is not an error: -q leaves it out.
                if !cli.quiet {
                    let verdict = if !r.damaged.is_empty() {
                        format!(
                            "{} damaged; the intact ones can still be restored with `{} restore {} --path ...`",
                            r.damaged.len(),
                            ui::command(),
                            r.image
                        )
                    } else if !r.damaged_streams.is_empty() {
                        format!(
                            "every object is restorable, but {} stream file(s) of the image lack data the manifest records (see above): the image is damaged",
                            r.damaged_streams.len()
                        )
                    } else if !r.not_backed_up.is_empty() {
                        format!(
                            "everything it holds is restorable, but it is partial: {} object(s) were not backed up (see above)",
                            r.not_backed_up.len()
                        )
                    } else {
                        "everything is restorable".to_string()
                    };
                    outln!(
                        "image {}: {} of {} objects intact ({} bytes read); {verdict}",
                        r.image,
                        r.good,
                        r.objects,
                        r.bytes,
                    );
                }
            }
            Ok(kind)
        }
        Cmd::Restore(a) => restore(cli, &runner, ui, a, t0),
    }
}

/// `path` (absolute) with `.` and `..` components resolved by name, as a plain path to give.
fn normalize_dots(path: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn restore(
    cli: &Cli,
    runner: &Runner,
    ui: &Ui,
    a: &RestoreArgs,
    t0: Instant,
) -> Result<ExitKind, JobError> {
    let usage = |m: String| JobError {
        kind: ExitKind::Usage,
        message: m,
    };
    let st = Store::open_existing(&cli.store)?;
    let at = match &a.at {
        Some(s) => Some(store::parse_time(s).map_err(|e| usage(format!("--at {s:?}: {e}")))?),
        None => None,
    };
    let image = jobs::resolve_image(&st, a.image.as_deref(), a.policy.as_deref(), at)?;
    let (manifest, catalog) = tasks::load_image(&st, &image).map_err(|e| JobError {
        kind: ExitKind::Failed,
        message: e.message,
    })?;
    let paths: Vec<Vec<u8>> = a
        .paths
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    let selected = tasks::select(&catalog, &paths);
    // A partial image lacks what its backup could not read: say so, and where to look.
    let missing = tasks::not_backed_up(&manifest, &paths);
    if selected.is_empty()
        && let Some(first) = missing.first()
    {
        return Err(usage(format!(
            "{} was not backed up in image {image} ({}); an earlier image may hold it (`{} list`)",
            escape_path(&first.path_bytes()),
            first.error,
            ui::command()
        )));
    }
    if !missing.is_empty() {
        ui.warning(&format!(
            "image {image} is partial: {} object(s) of the selection were not backed up and are not restored (first: {}); an earlier image may hold them (`{} show {image}` lists them)",
            missing.len(),
            escape_path(&missing[0].path_bytes()),
            ui::command()
        ));
    }
    if selected.is_empty() {
        return Err(usage(format!(
            "nothing in image {image} matches {} (see `{} show {image} --objects`)",
            tasks::show_paths(&paths),
            ui::command()
        )));
    }
    // Refused before anything runs, also for --dry-run, which shows what the restore would do.
    let unusable = tasks::unusable_images(&st, &catalog);
    tasks::check_reachable(&manifest, &catalog, &selected, &unusable).map_err(|e| JobError {
        kind: ExitKind::Failed,
        message: e.message,
    })?;
    let alt_root = match &a.alt_root {
        // Plugins refuse a target root with `..` (a dry run would list what cannot restore).
        Some(r) if r.components().any(|c| c == std::path::Component::ParentDir) => {
            // As the kernel resolves it where it exists (`..` of a symbolic link), else by name.
            let plain = std::fs::canonicalize(r)
                .or_else(|_| std::path::absolute(r).map(|a| normalize_dots(&a)))
                .unwrap_or_else(|_| r.clone());
            return Err(usage(format!(
                "--alt-root {} contains a `..` component, which plugins refuse; give it as {}",
                r.display(),
                plain.display()
            )));
        }
        Some(r) if !r.is_dir() => {
            return Err(usage(format!(
                "--alt-root {} is not an existing directory; create it first (mkdir -p {})",
                r.display(),
                r.display()
            )));
        }
        Some(r) => {
            Some(std::path::absolute(r).map_err(|e| usage(format!("{}: {e}", r.display())))?)
        }
        None => None,
    };
    if a.dry_run {
        let rows: Vec<serde_json::Value> = selected
            .iter()
            .map(|&i| {
                let e = &catalog.entries[i];
                let target = tasks::target_path(alt_root.as_deref(), &e.path);
                let mut row = json!({
                    "path": String::from_utf8_lossy(&e.path),
                    "target": String::from_utf8_lossy(&target),
                    "type": e.props.type_name(), "size": e.data.length,
                });
                // Names that are not UTF-8 also by their exact bytes, as `show --json` gives them.
                if std::str::from_utf8(&e.path).is_err() {
                    row["path_hex"] = store::hex(&e.path).into();
                }
                if std::str::from_utf8(&target).is_err() {
                    row["target_hex"] = store::hex(&target).into();
                }
                row
            })
            .collect();
        let total: u64 = selected
            .iter()
            .map(|&i| catalog.entries[i].data.length)
            .sum();
        if cli.json {
            print_json(
                &json!({"ok": true, "exit": ExitKind::Ok, "image": image, "dry_run": true, "objects": rows, "bytes": total,
                        "not_backed_up": missing}),
            );
        } else {
            for &i in &selected {
                let e = &catalog.entries[i];
                outln!(
                    "{:<8} {:>12}  {}",
                    e.props.type_name(),
                    e.data.length,
                    escape_path(&tasks::target_path(alt_root.as_deref(), &e.path))
                );
            }
            outln!(
                "would restore {} objects, {} bytes from image {image}",
                rows.len(),
                total
            );
        }
        return Ok(ExitKind::Ok);
    }
    if let Some(c) = &a.session.credentials {
        aapi_host::worker::read_credentials(c).map_err(usage)?;
    }
    // The job file names the plugin, the workload type and the server that made the image, the
    // defaults. With --plugin, a damaged one does not matter: the others default as for backup.
    let (plugin, job) = match (a.plugin.clone(), st.job(&image)) {
        (Some(p), job) => (p, job.ok()),
        (None, Ok(job)) => (job.plugin.clone(), Some(job)),
        (None, Err(e)) => {
            let mut e = JobError::from(e);
            e.message.push_str(
                "; the job file names the plugin that made the image: name it with --plugin LIB",
            );
            return Err(e);
        }
    };
    let workload_type = a
        .session
        .workload_type
        .clone()
        .or_else(|| job.as_ref().map(|j| j.workload_type.clone()))
        .unwrap_or_else(|| "files".into());
    let server = a
        .session
        .server
        .clone()
        .or_else(|| job.as_ref().map(|j| j.server.clone()))
        .unwrap_or_else(|| "localhost".into());
    let task = RestoreTask {
        store: cli.store.clone(),
        image: image.clone(),
        plugin,
        workload_type,
        server,
        host: a.host.clone(),
        paths,
        alt_root,
        overwrite: a.overwrite,
        properties: a.session.properties.clone(),
        call_budget_ms: a.session.call_budget_ms,
        credentials: a.session.credentials.clone(),
    };
    let from_image = a.session.workload_type.is_none();
    let r = runner.restore(task).map_err(|mut e| {
        // Another plugin than the image's may restore it under a type of its own.
        if from_image && e.message.contains("does not claim workload type") {
            e.message.push_str(
                "; the workload type is the image's: give the plugin's with --workload-type T",
            );
        }
        e
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let kind = if missing.is_empty() {
        ExitKind::Ok
    } else {
        ExitKind::Partial
    };
    if cli.json {
        print_json(
            &json!({"ok": true, "exit": kind, "image": image, "seconds": secs, "report": r,
                           "not_backed_up": missing}),
        );
    } else if !cli.quiet {
        outln!(
            "restored {} objects, {} bytes from image {image} in {:.2} s ({}); {} bytes read from the store",
            r.objects,
            r.bytes,
            secs,
            rate(r.bytes, secs),
            r.store_bytes_read
        );
    }
    Ok(kind)
}
