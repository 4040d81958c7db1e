//! `aapi-validator`: pack, sign, verify and install aapi plugin packages.
//!
//! Exit codes: 0 valid (or done), 1 invalid (findings listed), 2 could not run, 3 another
//! install into the same destination is running.

use aapi_validator::install::{self, Leftover, Outcome};
use aapi_validator::pack::{self, Metadata};
use aapi_validator::sign::{PublicKey, SecretKey, Status};
use aapi_validator::verify::{self, Report};
use aapi_validator::{Code, Finding, Limits};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  valid (or: packed, signed, installed)
  1  invalid: the findings are listed (`aapi-validator codes` explains each); nothing was written
  2  could not run: usage error, unreadable input, unwritable output, a --dest install may not
     replace (another plugin, a newer version), a failed write during install
  3  install only: another install into the same destination is running; nothing was done";

/// Pack, sign, verify and install aapi plugin packages without running their code.
#[derive(Parser)]
#[command(name = "aapi-validator", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pack the plugin files in DIR into a package.
    Pack {
        /// Directory holding the plugin's files (and optionally aapi-plugin.json).
        dir: PathBuf,
        /// Package to write (replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Plugin name (overrides aapi-plugin.json).
        #[arg(long)]
        name: Option<String>,
        /// Plugin version (overrides aapi-plugin.json).
        #[arg(long)]
        plugin_version: Option<String>,
        /// Vendor (overrides aapi-plugin.json).
        #[arg(long)]
        vendor: Option<String>,
        /// A workload type the plugin claims; repeat for several (overrides aapi-plugin.json).
        #[arg(long = "workload-type")]
        workload_types: Vec<String>,
        /// Path of the entry library inside DIR (default: the one library exporting the aapi symbols).
        #[arg(long)]
        entry: Option<String>,
        /// Metadata file to read instead of DIR/aapi-plugin.json.
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// Compress the package with gzip.
        #[arg(long)]
        gzip: bool,
        /// Sign with this secret key.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Sign a package (the package must verify; an earlier signature is replaced).
    Sign {
        /// The package.
        package: PathBuf,
        /// Secret key file (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Write the signed package here instead of replacing PACKAGE.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Verify a package file, an unpacked package directory, or an installation.
    Verify {
        /// Package file or directory.
        path: PathBuf,
        /// Trusted public key; with one or more, a valid signature by one of them is required.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// PATH is an installation: also check that everything is owned like its root, that no
        /// file has a second name (hard link) or a file capability, and that it targets this
        /// host's architecture (unless --target-arch names another).
        #[arg(long)]
        installed: bool,
        /// The architecture the package must target (default: any; with --installed, this
        /// host's).
        #[arg(long, value_parser = arch_names())]
        target_arch: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Verify a package and install it into DEST atomically.
    Install {
        /// The package.
        package: PathBuf,
        /// Installation directory: created in its parent, which must exist, or an earlier
        /// installation there replaced.
        #[arg(long)]
        dest: PathBuf,
        /// Trusted public key; with one or more, a valid signature by one of them is required.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Install a package built for this architecture, for a host of it (default: this
        /// host's architecture; a package for another is refused).
        #[arg(long, value_parser = arch_names())]
        target_arch: Option<String>,
        /// Replace an installation in DEST of another plugin (another name or vendor) or one
        /// whose manifest cannot be read.
        #[arg(long)]
        replace_other: bool,
        /// Replace an installation in DEST of a newer version of the plugin.
        #[arg(long)]
        allow_downgrade: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Make a new Ed25519 key pair: BASE.key (secret, mode 0600) and BASE.pub.
    Keygen {
        /// Base name of the key files.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// List every finding code with what it means.
    Codes,
}

#[derive(Args)]
struct LimitArgs {
    /// Most entries of the payload, as the OK line counts them (the manifest and signature
    /// are not counted).
    #[arg(long, default_value_t = Limits::default().max_entries)]
    max_entries: u64,
    /// Most bytes of the payload's files together, as the OK line counts them (suffixes K, M,
    /// G, T: powers of 1024).
    #[arg(long, value_parser = parse_size, default_value = "8G")]
    max_total_size: u64,
    /// Most bytes of one file (suffixes K, M, G, T).
    #[arg(long, value_parser = parse_size, default_value = "4G")]
    max_file_size: u64,
    /// Most a compressed package may expand (decompressed bytes per compressed byte).
    #[arg(long, default_value_t = Limits::default().max_ratio)]
    max_ratio: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_entries: self.max_entries,
            max_total_size: self.max_total_size,
            max_file_size: self.max_file_size,
            max_ratio: self.max_ratio,
        }
    }
}

/// The architectures `--target-arch` takes.
fn arch_names() -> clap::builder::PossibleValuesParser {
    aapi_validator::elf::ARCHES
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .into()
}

/// The [`verify::Target`] of a `--target-arch` value, else `default`.
fn target(arch: Option<String>, default: verify::Target) -> verify::Target {
    match arch.as_deref().and_then(aapi_validator::elf::arch) {
        Some(a) => verify::Target::Named(a.name),
        None => default,
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512, 64K, 100M or 2G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// The ways a command ends.
enum Done {
    Ok,
    Invalid,
}

fn main() -> ExitCode {
    // A write past `ulimit -f` fails with EFBIG, which the commands report and clean up after,
    // instead of the signal killing the process with its files half-written.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    std::panic::set_hook(Box::new(|info| {
        eprintln!("aapi-validator: internal error: {info}");
    }));
    let code = run_main();
    match OUTPUT_ERROR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        Some(e) => {
            eprintln!(
                "aapi-validator: cannot write the results to standard output: {e}; they are lost: send them where there is room"
            );
            ExitCode::from(2)
        }
        None => code,
    }
}

/// The first error writing standard output met, other than a closed pipe.
static OUTPUT_ERROR: std::sync::Mutex<Option<std::io::Error>> = std::sync::Mutex::new(None);

fn run_main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    // With --json, what a command that could not run prints: the report's fields, empty.
    let json = match &cli.command {
        Command::Verify {
            json: true, path, ..
        } => Some((path.display().to_string(), None)),
        Command::Install {
            json: true,
            package,
            dest,
            ..
        } => Some((
            package.display().to_string(),
            Some(dest.display().to_string()),
        )),
        _ => None,
    };
    let mut leftovers = Vec::new();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli, &mut leftovers)));
    match ran {
        Ok(Ok(Done::Ok)) => ExitCode::SUCCESS,
        Ok(Ok(Done::Invalid)) => ExitCode::from(1),
        Ok(Err(e)) => {
            if let Some((subject, dest)) = json {
                let install = dest.is_some().then_some((e.is_installed(), &leftovers[..]));
                let subject = match dest {
                    Some(dest) if e.is_installed() => dest,
                    _ => subject,
                };
                say(&not_run(&e.to_string(), Some(subject), install).to_string());
            }
            eprintln!("aapi-validator: {e}");
            ExitCode::from(if e.is_busy() { 3 } else { 2 })
        }
        Err(_) => ExitCode::from(2),
    }
}

/// The JSON object of a `verify` or `install` that could not run: the keys of a report, with
/// `valid` null and `error` saying why; `install` (for `install`) tells whether the new
/// installation is in place and what was tidied first.
fn not_run(
    error: &str,
    subject: Option<String>,
    install: Option<(bool, &[Leftover])>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "valid": null,
        "error": error,
        "subject": subject,
        "manifest": null,
        "manifest_sha256": null,
        "signature": null,
        "findings": [],
    });
    if let Some((installed, leftovers)) = install {
        v["installed"] = installed.into();
        v["replaced"] = serde_json::Value::Null;
        v["leftovers"] = serde_json::to_value(leftovers).expect("leftovers serialize");
    }
    v
}

/// A command line that does not parse: clap's message on standard error (help and version
/// on standard output, exit 0), and for `verify` or `install` with `--json` the JSON object
/// of a command that could not run, its `error` the first paragraph of that message on one
/// line.
fn usage_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some((command, subject)) = json_command(&args) {
        let text = e.render().to_string();
        let first: Vec<&str> = text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(str::trim)
            .collect();
        let first = first.join(" ");
        let error = first.strip_prefix("error: ").unwrap_or(&first);
        let install = (command == "install").then_some((false, &[][..]));
        say(&not_run(error, subject, install).to_string());
    }
    ExitCode::from(2)
}

/// For `args` naming `verify` or `install` with `--json`: the command, and the path it was
/// given (its first operand), if any.
fn json_command(args: &[std::ffi::OsString]) -> Option<(String, Option<String>)> {
    use clap::CommandFactory;
    let at = args
        .iter()
        .position(|a| !a.to_string_lossy().starts_with('-'))?;
    let command = args[at].to_string_lossy().into_owned();
    if command != "verify" && command != "install" {
        return None;
    }
    let cli = Cli::command();
    let sub = cli.find_subcommand(&command)?;
    let takes_value = |long: &str| {
        sub.get_arguments()
            .any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
    };
    let (mut json, mut operand, mut operands_only) = (false, None, false);
    let mut rest = args[at + 1..].iter();
    while let Some(a) = rest.next() {
        let text = a.to_string_lossy();
        if operands_only || !text.starts_with('-') || text == "-" {
            operand.get_or_insert_with(|| text.into_owned());
        } else if text == "--" {
            operands_only = true;
        } else if text == "--json" {
            json = true;
        } else if let Some(long) = text.strip_prefix("--")
            && !long.contains('=')
            && takes_value(long)
        {
            rest.next();
        }
    }
    json.then_some((command, operand))
}

/// Print a line on stdout. A closed pipe ends the output quietly; another error (a full disk)
/// is kept for the exit status.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        OUTPUT_ERROR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    }
}

fn keys(paths: &[PathBuf]) -> aapi_validator::Result<Vec<PublicKey>> {
    paths.iter().map(|p| PublicKey::load(p)).collect()
}

/// Run the command; `install` tells `leftovers` what it tidied up.
fn run(cli: Cli, leftovers: &mut Vec<Leftover>) -> aapi_validator::Result<Done> {
    match cli.command {
        Command::Pack {
            dir,
            output,
            name,
            plugin_version,
            vendor,
            workload_types,
            entry,
            metadata,
            gzip,
            key,
            limits,
        } => {
            let opts = pack::Options {
                metadata: Metadata {
                    name,
                    version: plugin_version,
                    vendor,
                    workload_types: Some(workload_types),
                    entry,
                },
                metadata_file: metadata,
                gzip,
                key: key.as_deref().map(SecretKey::load).transpose()?,
                limits: limits.limits(),
            };
            match pack::pack(&dir, &output, &opts)? {
                Ok(r) => {
                    say(&format!("packed {} into {}", summary(&r), output.display()));
                    Ok(Done::Ok)
                }
                Err(findings) => {
                    refused(&findings, &format!("{}: no package written", dir.display()));
                    Ok(Done::Invalid)
                }
            }
        }
        Command::Sign {
            package,
            key,
            output,
            limits,
        } => {
            let key = SecretKey::load(&key)?;
            let out = output.unwrap_or_else(|| package.clone());
            match pack::sign(&package, &out, &key, &limits.limits())? {
                Ok(r) => {
                    say(&format!("signed {} into {}", summary(&r), out.display()));
                    Ok(Done::Ok)
                }
                Err(findings) => {
                    refused(&findings, &format!("{}: not signed", package.display()));
                    Ok(Done::Invalid)
                }
            }
        }
        Command::Verify {
            path,
            key,
            installed,
            target_arch,
            json,
            limits,
        } => {
            let host = if installed {
                verify::Target::Host
            } else {
                verify::Target::Any
            };
            let opts = verify::Options {
                limits: limits.limits(),
                keys: keys(&key)?,
                installed,
                arch: target(target_arch, host),
            };
            let report = if installed {
                verify::verify_tree(&path, &opts)?
            } else {
                verify::verify(&path, &opts)?
            };
            Ok(show(&report, json, None, None))
        }
        Command::Install {
            package,
            dest,
            key,
            target_arch,
            replace_other,
            allow_downgrade,
            json,
            limits,
        } => {
            let opts = install::Options {
                verify: verify::Options {
                    limits: limits.limits(),
                    keys: keys(&key)?,
                    installed: false,
                    arch: target(target_arch, verify::Target::Host),
                },
                replace_other,
                allow_downgrade,
            };
            let outcome = install::install(&package, &dest, &opts, &mut |l| {
                eprintln!("aapi-validator: {l}");
                leftovers.push(l);
            })?;
            match outcome {
                Outcome::Installed { report, replaced } => {
                    let how = match &replaced {
                        Some(r) => format!(" (replaced {r})"),
                        None => String::new(),
                    };
                    let line = format!(
                        "installed {} into {}{how}",
                        summary(&report),
                        report.subject
                    );
                    let done = Installed { line, replaced };
                    Ok(show(
                        &report,
                        json,
                        Some(&done),
                        json.then_some(&leftovers[..]),
                    ))
                }
                Outcome::Refused(report) => {
                    Ok(show(&report, json, None, json.then_some(&leftovers[..])))
                }
            }
        }
        Command::Keygen { output } => {
            let key = SecretKey::generate()?;
            let (sec, public) = key.save(&output)?;
            say(&format!(
                "wrote {} (secret: keep it private) and {} (key id {})",
                sec.display(),
                public.display(),
                key.public().id()
            ));
            Ok(Done::Ok)
        }
        Command::Codes => {
            for c in Code::ALL {
                say(&format!("{:<24}{}", c.as_str(), c.summary()));
            }
            Ok(Done::Ok)
        }
    }
}

/// "NAME VERSION (VENDOR), ABI x.y, ARCH-OS: N entries, B bytes; manifest sha256 H; signature S"
fn summary(r: &Report) -> String {
    let Some(m) = &r.manifest else {
        return r.subject.clone();
    };
    let sig = match &r.signature {
        Status::None => "unsigned".to_string(),
        Status::NotChecked { key_id } => format!("signed by key {key_id} (not checked: no --key)"),
        Status::Verified { key_id } => format!("signature verified (key {key_id})"),
        Status::Failed => "signature failed".to_string(),
    };
    format!(
        "{} {} ({}), ABI {}.{}, {}-{}: {} entries, {} bytes; manifest sha256 {}; {sig}",
        m.plugin.name,
        m.plugin.version,
        m.plugin.vendor,
        m.abi.major,
        m.abi.minor,
        m.target.arch,
        m.target.os,
        m.files.len(),
        m.payload_bytes(),
        r.manifest_sha256.as_deref().unwrap_or("-"),
    )
}

fn refused(findings: &[Finding], what: &str) {
    list(findings, &format!("REFUSED {what}"));
}

/// Print `findings`, one a line, then `verdict` with how many there are.
fn list(findings: &[Finding], verdict: &str) {
    for f in findings {
        say(&f.to_string());
    }
    let n = findings.len();
    let s = if n == 1 { "" } else { "s" };
    say(&format!("{verdict} ({n} finding{s})"));
}

/// What a successful install tells.
struct Installed {
    /// The line printed instead of the OK line.
    line: String,
    /// The installation it replaced.
    replaced: Option<install::Replaced>,
}

/// Print a report; `done` replaces the OK line after a successful install. For `install`
/// (`leftovers` given), JSON says whether it installed, what it replaced and what it tidied
/// first.
fn show(r: &Report, json: bool, done: Option<&Installed>, leftovers: Option<&[Leftover]>) -> Done {
    if json {
        let mut v = serde_json::to_value(r).expect("a report serializes");
        v["valid"] = r.is_valid().into();
        if let Some(l) = leftovers {
            v["installed"] = done.is_some().into();
            v["replaced"] = serde_json::to_value(done.and_then(|d| d.replaced.as_ref()))
                .expect("a plugin serializes");
            v["leftovers"] = serde_json::to_value(l).expect("leftovers serialize");
        }
        say(&v.to_string());
    } else if r.is_valid() {
        match done {
            Some(d) => say(&d.line),
            None => say(&format!(
                "OK {}: {}",
                Path::new(&r.subject).display(),
                summary(r)
            )),
        }
    } else {
        list(&r.findings, &format!("INVALID {}", r.subject));
    }
    if r.is_valid() {
        Done::Ok
    } else {
        Done::Invalid
    }
}
