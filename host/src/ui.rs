//! Terminal output of jobs: progress bars (bytes and rate per stream) and messages.
//!
//! Bars are drawn on standard error only when it is a terminal and neither `--quiet` nor `--json`
//! was given; messages go to standard error, so standard output stays clean for results.

use aapi_sdk::abi::{AAPI_LOG_DEBUG, AAPI_LOG_INFO, AAPI_LOG_WARNING};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

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
            eprintln!("{line}");
        }
    }
}
