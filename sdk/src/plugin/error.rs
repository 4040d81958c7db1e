//! Errors a plugin returns: an [`ErrorKind`] that maps one-to-one to an `AAPI_E*` code, and a
//! message that the export layer stores as the plugin's last-error text (`aapi_get_last_error`).

use crate::abi::*;
use crate::codes;
use crate::workload::WorkloadError;
use core::ffi::c_int;
use std::fmt;
use std::io;

/// Result of every plugin method.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// The kind of a failure: one variant per `AAPI_E*` error code.
///
/// Some kinds are produced by the export layer itself and are rarely useful in plugin code
/// ([`BadHandle`](ErrorKind::BadHandle), [`Sequence`](ErrorKind::Sequence),
/// [`BufferTooSmall`](ErrorKind::BufferTooSmall), [`Abi`](ErrorKind::Abi)); a plugin may still
/// return them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `AAPI_EINVAL`: a NULL pointer, an empty string, an unknown flag or an out-of-range value.
    InvalidArgument,
    /// `AAPI_EBADHANDLE`: 0, closed, never issued, or wrong-kind handle.
    BadHandle,
    /// `AAPI_ESEQUENCE`: the call is not legal in the current state.
    Sequence,
    /// `AAPI_EBUFSIZE`: the caller's buffer is too small.
    BufferTooSmall,
    /// `AAPI_ENOENT`: the object or path does not exist.
    NotFound,
    /// `AAPI_EEXIST`: the object exists and may not be replaced.
    AlreadyExists,
    /// `AAPI_EACCES`: permission denied.
    PermissionDenied,
    /// `AAPI_ENOSPC`: not enough space at the target.
    NoSpace,
    /// `AAPI_EIO`: input/output error.
    Io,
    /// `AAPI_ECHANGED`: the object changed after discovery (a torn read).
    Changed,
    /// `AAPI_ECANCELLED`: the keepalive callback said the job is cancelled.
    Cancelled,
    /// `AAPI_ESCHED_NOT_SUPPORTED`: the schedule type is not supported.
    ScheduleNotSupported,
    /// `AAPI_ENOTSUP`: the operation is not supported by this plugin.
    NotSupported,
    /// `AAPI_EABI`: incompatible ABI version or struct size.
    Abi,
    /// `AAPI_ENOTCLAIMED`: the plugin does not handle this workload type.
    NotClaimed,
    /// `AAPI_EAUTH`: authentication failed or a credential is missing.
    Auth,
    /// `AAPI_ECONNECT`: the workload server cannot be reached.
    Connect,
    /// `AAPI_ENOMEM`: out of memory.
    OutOfMemory,
    /// `AAPI_EINTERNAL`: a bug in the plugin (the export layer also reports panics this way).
    Internal,
    /// `AAPI_EWORKLOAD`: a workload file is missing, corrupt or of an unknown version.
    Workload,
    /// `AAPI_ESNAPSHOT`: a snapshot could not be created, found or deleted.
    Snapshot,
}

const KINDS: [(ErrorKind, c_int); 21] = [
    (ErrorKind::InvalidArgument, AAPI_EINVAL),
    (ErrorKind::BadHandle, AAPI_EBADHANDLE),
    (ErrorKind::Sequence, AAPI_ESEQUENCE),
    (ErrorKind::BufferTooSmall, AAPI_EBUFSIZE),
    (ErrorKind::NotFound, AAPI_ENOENT),
    (ErrorKind::AlreadyExists, AAPI_EEXIST),
    (ErrorKind::PermissionDenied, AAPI_EACCES),
    (ErrorKind::NoSpace, AAPI_ENOSPC),
    (ErrorKind::Io, AAPI_EIO),
    (ErrorKind::Changed, AAPI_ECHANGED),
    (ErrorKind::Cancelled, AAPI_ECANCELLED),
    (ErrorKind::ScheduleNotSupported, AAPI_ESCHED_NOT_SUPPORTED),
    (ErrorKind::NotSupported, AAPI_ENOTSUP),
    (ErrorKind::Abi, AAPI_EABI),
    (ErrorKind::NotClaimed, AAPI_ENOTCLAIMED),
    (ErrorKind::Auth, AAPI_EAUTH),
    (ErrorKind::Connect, AAPI_ECONNECT),
    (ErrorKind::OutOfMemory, AAPI_ENOMEM),
    (ErrorKind::Internal, AAPI_EINTERNAL),
    (ErrorKind::Workload, AAPI_EWORKLOAD),
    (ErrorKind::Snapshot, AAPI_ESNAPSHOT),
];

impl ErrorKind {
    /// The `AAPI_E*` code returned to the framework for this kind.
    pub fn code(self) -> c_int {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, c)| *c)
            .expect("every kind has a code")
    }

    /// The kind for an error code, `None` for `AAPI_EOK` and numbers the ABI does not define.
    pub fn from_code(code: c_int) -> Option<ErrorKind> {
        KINDS.iter().find(|(_, c)| *c == code).map(|(k, _)| *k)
    }

    /// The C name of the code, e.g. `"AAPI_ENOENT"`.
    pub fn name(self) -> &'static str {
        codes::name(self.code())
    }

    /// The kind an I/O error maps to:
    ///
    /// | [`io::ErrorKind`] | kind |
    /// |---|---|
    /// | `NotFound`, `NotADirectory` | [`NotFound`](ErrorKind::NotFound) |
    /// | `PermissionDenied`, `ReadOnlyFilesystem` | [`PermissionDenied`](ErrorKind::PermissionDenied) |
    /// | `AlreadyExists` | [`AlreadyExists`](ErrorKind::AlreadyExists) |
    /// | `StorageFull`, `QuotaExceeded`, `FileTooLarge` | [`NoSpace`](ErrorKind::NoSpace) |
    /// | `OutOfMemory` | [`OutOfMemory`](ErrorKind::OutOfMemory) |
    /// | `Unsupported` | [`NotSupported`](ErrorKind::NotSupported) |
    /// | `InvalidFilename` (a name too long for the file system) | [`InvalidArgument`](ErrorKind::InvalidArgument) |
    /// | `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `NotConnected`, `HostUnreachable`, `NetworkUnreachable`, `NetworkDown`, `AddrNotAvailable`, `TimedOut` | [`Connect`](ErrorKind::Connect) |
    /// | anything else | [`Io`](ErrorKind::Io) |
    ///
    /// The network kinds say that the workload server cannot be reached, or stopped answering
    /// (`AAPI_ECONNECT`), whether a connect failed or an open connection broke. `TimedOut`
    /// (`ETIMEDOUT`) is what a connect, or a connection whose peer went silent, gives on Unix
    /// systems (a read timeout set on a socket gives `WouldBlock` there, which stays
    /// [`Io`](ErrorKind::Io)). `BrokenPipe` stays [`Io`](ErrorKind::Io): pipes to local
    /// processes give it too. Where a timeout means something else, map it yourself with
    /// [`Error::new`].
    pub fn of_io(err: &io::Error) -> ErrorKind {
        use io::ErrorKind as K;
        match err.kind() {
            K::NotFound | K::NotADirectory => ErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => ErrorKind::NoSpace,
            K::OutOfMemory => ErrorKind::OutOfMemory,
            K::Unsupported => ErrorKind::NotSupported,
            // A name or path longer than the file system takes: the caller's path is at fault.
            K::InvalidFilename => ErrorKind::InvalidArgument,
            // The workload server cannot be reached, or its connection broke.
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable
            | K::TimedOut => ErrorKind::Connect,
            _ => ErrorKind::Io,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(codes::message(self.code()))
    }
}

/// A failed plugin call: the kind decides the code returned, the message becomes the text of
/// `aapi_get_last_error` on the calling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message` (say what failed and on which object).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// `AAPI_EINVAL` with `message`.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// `AAPI_ENOENT` with `message`.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    /// `AAPI_ENOTSUP` with `message`.
    pub fn not_supported(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotSupported, message)
    }

    /// `AAPI_EINTERNAL` with `message`.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// An I/O error with what the plugin was doing, e.g. `Error::io(e, format!("open {p:?}"))`.
    /// The kind is [`ErrorKind::of_io`]; the message is `"<context>: <error>"`.
    pub fn io(err: io::Error, context: impl fmt::Display) -> Error {
        Error::new(ErrorKind::of_io(&err), format!("{context}: {err}"))
    }

    /// The same error with `context` put in front of its message (`"<context>: <message>"`).
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The `AAPI_E*` code of this error.
    pub fn code(&self) -> c_int {
        self.kind.code()
    }

    /// The message (empty when none was given).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            self.kind.fmt(f)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    /// The kind from [`ErrorKind::of_io`], the error's text as message.
    fn from(err: io::Error) -> Error {
        Error::new(ErrorKind::of_io(&err), err.to_string())
    }
}

impl From<WorkloadError> for Error {
    /// I/O failures map like [`io::Error`]; format problems are `AAPI_EWORKLOAD`.
    fn from(err: WorkloadError) -> Error {
        match err {
            WorkloadError::Io(e) => Error::from(e),
            other => Error::new(ErrorKind::Workload, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_exactly_one_kind() {
        for c in codes::CODES.iter().skip(1) {
            let kind = ErrorKind::from_code(c.code).expect(c.name);
            assert_eq!(kind.code(), c.code);
            assert_eq!(kind.name(), c.name);
        }
        assert_eq!(ErrorKind::from_code(AAPI_EOK), None);
        assert_eq!(ErrorKind::from_code(999), None);
        assert_eq!(KINDS.len(), codes::CODES.len() - 1);
    }

    #[test]
    fn io_errors_keep_their_meaning() {
        let e = Error::io(io::Error::from(io::ErrorKind::NotFound), "open /x");
        assert_eq!(e.code(), AAPI_ENOENT);
        assert!(e.message().starts_with("open /x: "));
        let e: Error = io::Error::from_raw_os_error(28).into(); // ENOSPC on Linux
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        let e: Error = io::Error::from_raw_os_error(13).into(); // EACCES
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e: Error = io::Error::from_raw_os_error(36).into(); // ENAMETOOLONG
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e: Error = io::Error::other("disk on fire").into();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.context("read /y").to_string(), "read /y: disk on fire");
        assert_eq!(
            Error::new(ErrorKind::Changed, "").to_string(),
            "object changed since discovery"
        );
    }

    #[test]
    fn unreachable_servers_map_to_econnect() {
        // The errno values of Linux: ENETDOWN, ENETUNREACH, ECONNABORTED, ECONNRESET, ENOTCONN,
        // ETIMEDOUT, ECONNREFUSED, EHOSTUNREACH, EADDRNOTAVAIL.
        for errno in [100, 101, 103, 104, 107, 110, 111, 113, 99] {
            let e: Error = io::Error::from_raw_os_error(errno).into();
            assert_eq!(e.code(), AAPI_ECONNECT, "errno {errno}: {e}");
        }
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::NotConnected,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::NetworkUnreachable,
            io::ErrorKind::NetworkDown,
            io::ErrorKind::AddrNotAvailable,
            io::ErrorKind::TimedOut,
        ] {
            assert_eq!(
                ErrorKind::of_io(&kind.into()),
                ErrorKind::Connect,
                "{kind:?}"
            );
        }
        // A real refused connection: a port that was just listened on and is closed again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e: Error = std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_err()
            .into();
        assert_eq!(
            (e.kind(), e.kind().name()),
            (ErrorKind::Connect, "AAPI_ECONNECT"),
            "{e}"
        );
        // Not network failures: a broken pipe and a socket read timeout (EAGAIN) stay AAPI_EIO.
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::WouldBlock] {
            assert_eq!(ErrorKind::of_io(&kind.into()), ErrorKind::Io, "{kind:?}");
        }
    }
}
