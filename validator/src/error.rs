//! Errors that stop a command before it can judge a package (exit code 2, or 3 when another
//! install into the same destination is running).

use std::fmt;
use std::io;
use std::path::Path;

/// The command could not run: bad usage, an unreadable input, a failed write.
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<io::Error>,
    next: Option<String>,
    busy: bool,
    installed: bool,
}

impl Error {
    /// An error with a plain message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            source: None,
            next: None,
            busy: false,
            installed: false,
        }
    }

    /// Another install into the same destination holds its lock.
    pub fn busy(message: impl Into<String>) -> Self {
        Error {
            busy: true,
            ..Error::new(message)
        }
    }

    /// Whether this is [`Error::busy`].
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// The same error, saying that the new installation is in place all the same (a step
    /// after the swap failed).
    pub fn installed(mut self) -> Self {
        self.installed = true;
        self
    }

    /// Whether the new installation is in place despite this error.
    pub fn is_installed(&self) -> bool {
        self.installed
    }

    /// An I/O error while doing `what` on `path`.
    pub fn io(what: &str, path: &Path, source: io::Error) -> Self {
        Error {
            message: format!("{what} {}", path.display()),
            source: Some(source),
            next: None,
            busy: false,
            installed: false,
        }
    }

    /// `path` could not be read; the message says what to do about it.
    pub fn read(path: &Path, source: io::Error) -> Self {
        let next = match source.kind() {
            io::ErrorKind::NotFound => "check the path",
            io::ErrorKind::PermissionDenied => "run as a user who may read it",
            io::ErrorKind::IsADirectory => "name the file in it",
            _ => "check the disk and file system, or copy the file again from its source",
        };
        Error::io("cannot read", path, source).then(next)
    }

    /// The same error, telling the user what to do next (printed after the cause).
    pub fn then(mut self, next: impl Into<String>) -> Self {
        self.next = Some(next.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if let Some(next) = &self.next {
            write!(f, "; {next}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Result of a command that may fail to run.
pub type Result<T> = std::result::Result<T, Error>;
