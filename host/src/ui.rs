//! Terminal output of jobs: progress bars (bytes and rate per stream) and messages.
//!
//! Bars are drawn on standard error only when it is a terminal and neither `--quiet` nor `--json`
//! was given; messages go to standard error, so standard output stays clean for results.
//! Results go to standard output through [`out`] alone, which never panics: a reader that stops
//! reading (`| head`) ends the output quietly, and another write error is kept for
//! [`stdout_failure`].
//!
//! Text output never passes a control character through: object paths go through
//! [`escape_path`], and every message on standard error through [`escape_text`], so a file name
//! or a plugin's message can neither forge a line nor send an escape sequence to the terminal.

use aapi_sdk::abi::{AAPI_LOG_DEBUG, AAPI_LOG_INFO, AAPI_LOG_WARNING};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::borrow::Cow;
use std::fmt::{Display, Write as _};
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

/// How messages spell a command to run next: `aapi-host --store <store>`.
static COMMAND: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Name the store in the commands messages suggest, so that they run as printed.
pub fn set_store(store: &std::path::Path) {
    let s = store.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b));
    let shown = if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    };
    let _ = COMMAND.set(format!("aapi-host --store {shown}"));
}

/// The environment variable that passes [`command`] on to the workers.
pub const COMMAND_ENV: &str = "AAPI_HOST_COMMAND";

/// `aapi-host` with the store option, as messages suggest a command (see [`set_store`]; a
/// worker has it from its supervisor, in [`COMMAND_ENV`]).
pub fn command() -> &'static str {
    COMMAND.get_or_init(|| std::env::var(COMMAND_ENV).unwrap_or_else(|_| "aapi-host".into()))
}

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

/// An object path (raw bytes) for a line of text output, unambiguous and free of control
/// characters: a backslash is doubled; tab, newline and carriage return become `\t`, `\n` and
/// `\r`; any other C0 control character, DEL and every byte that is not part of valid UTF-8
/// become `\xNN`; a C1 control character (U+0080 to U+009F) becomes `\u{NN}`. Everything else
/// is printed as it is. `--json` output gives the exact bytes instead.
pub fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped(&mut out, c, true);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A message for a line of text output: control characters escaped as by [`escape_path`],
/// backslashes kept (a path in the message is escaped already).
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c, false);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char, backslash: bool) {
    match c {
        '\\' if backslash => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
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

    /// A warning (stderr): something is off but nothing is lost; unless quiet.
    pub fn warning(&self, message: &str) {
        if !self.quiet {
            self.println(&format!("warning: {message}"));
        }
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
        let line = escape_text(line);
        let line = line.as_ref();
        if self.bars {
            let _ = self.multi.println(line);
        } else {
            // A closed or full standard error loses the message; it never stops the command.
            let _ = writeln!(io::stderr().lock(), "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_without_control_characters_and_unambiguously() {
        assert_eq!(escape_path(b"/d/plain name"), "/d/plain name");
        assert_eq!(
            escape_path(b"/d/a\nDAMAGED x: y"),
            "/d/a\\nDAMAGED x: y",
            "a newline cannot start a line"
        );
        assert_eq!(escape_path(b"t\x1b]0;owned\x07"), "t\\x1b]0;owned\\x07");
        assert_eq!(escape_path(b"a\tb\rc\x7f\x00"), "a\\tb\\rc\\x7f\\x00");
        // A backslash is doubled, so the text `\n` and a newline never look alike.
        assert_eq!(escape_path(b"a\\nb"), "a\\\\nb");
        // Bytes that are not UTF-8 keep their value; a C1 control character is told apart.
        assert_eq!(escape_path(b"caf\xe9 \x9b"), "caf\\xe9 \\x9b");
        assert_eq!(escape_path("x\u{9b}y".as_bytes()), "x\\u{9b}y");
        assert_eq!(escape_path("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }

    #[test]
    fn messages_keep_backslashes_and_lose_control_characters() {
        assert!(matches!(escape_text("plain \\ text"), Cow::Borrowed(_)));
        assert_eq!(escape_text("a\nb\x1b[2J"), "a\\nb\\x1b[2J");
    }
}
