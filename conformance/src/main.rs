//! `aapi-conformance`: run the conformance suite against a plugin library.

use aapi_conformance::checks;
use aapi_conformance::{Exclusions, Profile, RunOptions, WorkerProgram};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where a report goes.
enum ReportTarget {
    /// A regular file (or nothing yet): replaced whole, through a temporary file beside it.
    File(PathBuf),
    /// Anything else (`/dev/stdout`, a pipe, a terminal): written in place, never removed.
    Stream(PathBuf),
}

impl ReportTarget {
    /// The target `path` names. A report left there by an earlier run is removed now, so that
    /// it never stands for a run that stops early; a symbolic link to a regular file is
    /// followed (the file is replaced, the link stays). A path that names an input of the run
    /// (the profile, the waivers, the plugin) is refused: it would be lost.
    fn of(path: &Path, inputs: &[&Path]) -> Result<ReportTarget, String> {
        use std::os::unix::fs::MetadataExt;
        let md = match std::fs::metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ReportTarget::writable(path.to_path_buf());
            }
            Err(e) => {
                return Err(format!(
                    "{}: cannot write the report there: {e}",
                    path.display()
                ));
            }
        };
        if md.is_dir() {
            return Err(format!(
                "{}: is a directory: give the report's file name",
                path.display()
            ));
        }
        if !md.is_file() {
            return Ok(ReportTarget::Stream(path.to_path_buf()));
        }
        for input in inputs {
            if std::fs::metadata(input).is_ok_and(|i| i.dev() == md.dev() && i.ino() == md.ino()) {
                return Err(format!(
                    "{}: is {}, an input of the run: give the report another path",
                    path.display(),
                    input.display()
                ));
            }
        }
        let real = std::fs::canonicalize(path)
            .map_err(|e| format!("{}: cannot replace the report: {e}", path.display()))?;
        match std::fs::remove_file(&real) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
                "{}: cannot replace the report: {e}",
                path.display()
            )),
            _ => ReportTarget::writable(real),
        }
    }

    /// The file `path`, once a file can be made in its directory (made if missing): a report
    /// that cannot be written is said before the run, not after it.
    fn writable(path: PathBuf) -> Result<ReportTarget, String> {
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&dir))
            .map_err(|e| {
                format!(
                    "{}: cannot write the report in {}: {e}",
                    path.display(),
                    dir.display()
                )
            })?;
        Ok(ReportTarget::File(path))
    }

    /// Write `body` there.
    fn write(&self, body: &str) -> std::io::Result<()> {
        match self {
            ReportTarget::File(p) => write_report(p, body),
            ReportTarget::Stream(p) => {
                let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
                std::io::Write::write_all(&mut f, body.as_bytes())
            }
        }
    }
}

/// Write `body` to `path` whole or not at all (through a temporary file in the same directory).
fn write_report(path: &Path, body: &str) -> std::io::Result<()> {
    let parent = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.to_path_buf()
        }
        None => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    let mut perms = tmp.as_file().metadata()?.permissions();
    std::io::Write::write_all(&mut tmp, body.as_bytes())?;
    // Readable like any other file written here (the temporary file starts as 0600).
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    tmp.as_file().set_permissions(perms)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The conformance runner for aapi workload plugins.
#[derive(Parser)]
#[command(name = "aapi-conformance", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite against PLUGIN. Exit 0: every MUST check passed; 1: a MUST check failed;
    /// 2: the runner could not run or could not judge every check; 130 or 143: stopped by
    /// SIGINT or SIGTERM (no report).
    Run {
        /// The plugin library (.so).
        plugin: PathBuf,
        /// Profile (TOML); default: the `files` workload on a generated tree.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Exclude file: `CHECK-ID reason` per line waives a check.
        #[arg(long)]
        exclude: Option<PathBuf>,
        /// Run only checks whose ID starts with this (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Worker processes at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Keep the scratch directory (tree, workload files, images, plugin output) here.
        #[arg(long)]
        keep_scratch: Option<PathBuf>,
        /// Print only the verdict line (with the counts of skipped, waived, blocked checks).
        #[arg(long, short)]
        quiet: bool,
    },
    /// List every check with its level and clause.
    List,
    /// Write the built-in test tree of the `files` workload into DIR.
    GenerateTree {
        /// Target directory (created; must not exist or be empty).
        dir: PathBuf,
        /// Take the tree parameters from this profile's [files] table.
        #[arg(long)]
        profile: Option<PathBuf>,
    },
}

/// Write `text` on standard output. A reader that closed it (`| head`) ends the output
/// quietly; another error (a full disk) is returned, saying what was lost.
fn say(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the results to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("aapi-conformance: {msg}");
    ExitCode::from(2)
}

/// `generate-tree` writes only into a directory that is empty or does not exist yet.
fn empty_or_absent(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.is_dir() && !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) => {
            Err("exists and is not a directory; name a new or empty directory".into())
        }
        Ok(_) => match std::fs::read_dir(dir).map(|mut d| d.next().is_none()) {
            Ok(true) => Ok(()),
            Ok(false) => Err("exists and is not empty; name a new or empty directory".into()),
            Err(e) => Err(format!("cannot be read: {e}")),
        },
    }
}

fn main() -> ExitCode {
    aapi_conformance::serve_if_requested();
    if let Err(e) = aapi_host::pid1::init_if_process_1() {
        eprintln!(
            "aapi-conformance: warning: cannot start an init as process 1 ({e}): processes \
             that end under it stay zombies until the run ends; run the container with --init"
        );
    }
    let cli = Cli::parse();
    match cli.command {
        Cmd::List => {
            let text: String = checks::all()
                .iter()
                .map(|c| {
                    format!(
                        "{:<44} {:<7} {:<8} {}\n",
                        c.id,
                        c.level.as_str(),
                        c.clause,
                        c.expectation
                    )
                })
                .collect();
            match say(&text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Cmd::GenerateTree { dir, profile } => {
            let params: aapi_conformance::profile::FilesTree =
                match profile.map(|p| Profile::from_path(&p)) {
                    Some(Ok((p, _))) => p.files.unwrap_or_default(),
                    Some(Err(e)) => return fail(e),
                    None => Default::default(),
                };
            if let Err(e) = params.check() {
                return fail(format!("profile: {e}"));
            }
            if let Err(e) = empty_or_absent(&dir) {
                return fail(format!("{}: {e}", dir.display()));
            }
            match aapi_conformance::tree::generate(&dir, &params) {
                Ok(()) => match say(&format!(
                    "{}: test tree written (selections: {0}/data, long call: {0}/timing)\n",
                    dir.display()
                )) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                Err(e) => fail(format!("{}: {e}", dir.display())),
            }
        }
        Cmd::Run {
            plugin,
            profile,
            json,
            junit,
            exclude,
            only,
            jobs,
            keep_scratch,
            quiet,
        } => {
            // A report left from an earlier run must not stand for this one if it stops early
            // (a signal, a profile error): removed now; written again at the end.
            let inputs: Vec<&Path> = [Some(&plugin), profile.as_ref(), exclude.as_ref()]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
                .collect();
            if let (Some(j), Some(u)) = (&json, &junit) {
                use std::os::unix::fs::MetadataExt;
                let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
                let same_name = std::path::absolute(j).ok() == std::path::absolute(u).ok();
                if same_name || id(j).is_some_and(|i| Some(i) == id(u)) {
                    return fail(format!(
                        "--json {} and --junit {} name the same file: give each report its own",
                        j.display(),
                        u.display()
                    ));
                }
            }
            let mut targets = Vec::new();
            for p in [&json, &junit] {
                targets.push(match p {
                    Some(p) => match ReportTarget::of(p, &inputs) {
                        Ok(t) => Some((p.clone(), t)),
                        Err(e) => return fail(e),
                    },
                    None => None,
                });
            }
            let mut opts = RunOptions::new(plugin);
            if let Some(p) = profile {
                match Profile::from_path(&p) {
                    Ok((prof, dir)) => {
                        opts.profile = prof;
                        opts.profile_dir = dir;
                    }
                    Err(e) => return fail(e),
                }
            }
            if let Some(x) = exclude {
                match Exclusions::from_path(&x) {
                    Ok(ex) => opts.exclusions = ex,
                    Err(e) => return fail(e),
                }
            }
            opts.only = only;
            if let Some(j) = jobs {
                opts.jobs = j.max(1);
            }
            opts.scratch = keep_scratch;
            opts.worker = WorkerProgram::CurrentExe;
            opts.interrupt = Some(aapi_conformance::signals::handle_signals());
            let report = match aapi_conformance::run(opts) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("aapi-conformance: {e}");
                    return ExitCode::from(e.exit_code());
                }
            };
            let [json, junit] = [targets.remove(0), targets.remove(0)];
            // Both reports are written even when one cannot be, and before the text: a reader
            // that stops reading the text loses none of them.
            let mut failed = false;
            for (target, body) in [(json, report.to_json()), (junit, report.to_junit())] {
                if let Some((p, t)) = target
                    && let Err(e) = t.write(&body)
                {
                    eprintln!(
                        "aapi-conformance: {}: cannot write the report: {e}",
                        p.display()
                    );
                    failed = true;
                }
            }
            let text = if quiet {
                format!("{}\n", report.verdict())
            } else {
                report.to_text()
            };
            if let Err(e) = say(&text) {
                eprintln!("aapi-conformance: {e}");
                failed = true;
            }
            if failed {
                return ExitCode::from(2);
            }
            ExitCode::from(report.exit_code as u8)
        }
    }
}
