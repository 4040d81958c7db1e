//! `aapi-conformance`: run the conformance suite against a plugin library.

use aapi_conformance::checks;
use aapi_conformance::{Exclusions, Profile, RunOptions, WorkerProgram};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// 2: the runner could not run or could not judge every check.
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

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("aapi-conformance: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    aapi_conformance::serve_if_requested();
    let cli = Cli::parse();
    match cli.command {
        Cmd::List => {
            for c in checks::all() {
                println!(
                    "{:<44} {:<7} {:<8} {}",
                    c.id,
                    c.level.as_str(),
                    c.clause,
                    c.expectation
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::GenerateTree { dir, profile } => {
            let params = match profile.map(|p| Profile::from_path(&p)) {
                Some(Ok((p, _))) => p.files.unwrap_or_default(),
                Some(Err(e)) => return fail(e),
                None => Default::default(),
            };
            if dir.exists()
                && std::fs::read_dir(&dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return fail(format!("{}: exists and is not empty", dir.display()));
            }
            match aapi_conformance::tree::generate(&dir, &params) {
                Ok(()) => {
                    println!(
                        "{}: test tree written (selections: {0}/data, long call: {0}/timing)",
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
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
            let report = match aapi_conformance::run(opts) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if quiet {
                println!("{}", report.verdict());
            } else {
                print!("{}", report.to_text());
            }
            for (path, body) in [(json, report.to_json()), (junit, report.to_junit())] {
                if let Some(p) = path {
                    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    if let Err(e) = std::fs::write(&p, body) {
                        return fail(format!("{}: {e}", p.display()));
                    }
                }
            }
            ExitCode::from(report.exit_code as u8)
        }
    }
}
