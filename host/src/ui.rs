//! Terminal output of jobs: progress bars (bytes and rate per stream) and messages.
//!
//! Bars are drawn on standard error only when it is a terminal and neither `--quiet` nor `--json`
//! was given; messages go to standard error, so standard output stays clean for results.
//! Results go to standard output through [`out`] alone, which never panics: a reader that stops
//! reading (`| head`) ends the output quietly, and another write error is kept for
//! [`stdout_failure`].

use aapi_sdk::abi::{AAPI_LOG_DEBUG, AAPI_LOG_INFO, AAPI_LOG_WARNING};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

/// What became of standard output.
enum Stdout {
    /// Written so far without error.
    Open,
    /// The reader closed it (EPIPE): the rest is dropped quietly.
    Closed,
    /// Writing failed otherwise (no space, I/O error): the rest is dropped, the error kept.
    Failed(String),
}

static STDOUT: Mutex<Stdout> = Mutex::new(Stdout::Open);

/// Print one line of results on standard output. Once the reader has closed it (`aapi-host list
/// | head -1`) or a write failed, later lines are dropped without a word: the command goes on to
/// its own end and exit status.
pub fn out(line: impl Display) {
    let mut state = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
    if !matches!(*state, Stdout::Open) {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        *state = match e.kind() {
            io::ErrorKind::BrokenPipe => Stdout::Closed,
            _ => Stdout::Failed(e.to_string()),
        };
    }
}

/// The error that cut the results short, when writing standard output failed other than by the
/// reader closing it.
pub fn stdout_failure() -> Option<String> {
    match &*STDOUT.lock().unwrap_or_else(|e| e.into_inner()) {
        Stdout::Failed(e) => Some(e.clone()),
        Stdout::Open | Stdout::Closed => None,
    }
}

/// Output settings and the set of live progress bars.
#[derive(Debug, Clone)]
pub struct Ui {
    multi: MultiProgress,
    bars: bool,
    quiet: bool,
    verbose: bool,
}

impl Ui {
    /// `quiet`: only errors; `json`: no bars (the caller prints JSON on stdout); `verbose`: the
    /// plugin's INFO lines too.
    pub fn new(quiet: bool, json: bool, verbose: bool) -> Ui {
        let bars = !quiet && !json && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Ui {
            multi,
            bars,
            quiet,
            verbose,
        }
    }

    /// Silent output (for library use and tests).
    pub fn silent() -> Ui {
        Ui::new(true, true, false)
    }

    /// A bar for one stream: bytes, rate and objects; `total` bytes when known.
    pub fn bar(&self, label: &str, total: Option<u64>) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{prefix:>12} {spinner} {bytes} {binary_bytes_per_sec} {msg}",
                )
                .expect("valid template"),
            ),
        };
        bar.set_prefix(label.to_string());
        self.multi.add(bar)
    }

    /// A message for people (stderr), unless quiet.
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.println(message);
        }
    }

    /// An error message (stderr), always.
    pub fn error(&self, message: &str) {
        self.println(&format!("error: {message}"));
    }

    /// A log line of a plugin running in worker `who`.
    pub fn plugin_log(&self, who: &str, level: u32, message: &str) {
        let show = match level {
            AAPI_LOG_DEBUG => false,
            AAPI_LOG_INFO => self.verbose && !self.quiet,
            AAPI_LOG_WARNING => !self.quiet,
            _ => true,
        };
        if show {
            self.println(&format!(
                "{who}: plugin {}: {message}",
                crate::client::level_name(level)
            ));
        }
    }

    fn println(&self, line: &str) {
        if self.bars {
            let _ = self.multi.println(line);
        } else {
            // A closed or full standard error loses the message; it never stops the command.
            let _ = writeln!(io::stderr().lock(), "{line}");
        }
    }
}
