//! Names and messages of the `AAPI_E*` return codes (the Rust side of `aapi_strerror`).

use crate::abi::*;
use core::ffi::c_int;

/// One return code: its number, its C name and a one-line message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The numeric value, fixed forever.
    pub code: c_int,
    /// The C macro name, e.g. `"AAPI_EINVAL"`.
    pub name: &'static str,
    /// A short lower-case message, e.g. `"invalid argument"`.
    pub message: &'static str,
}

/// Every return code of the ABI, in numeric order. The generated header's `aapi_strerror()` and
/// `aapi_code_name()` are produced from this table, and a test checks it against the header.
pub const CODES: &[CodeInfo] = &[
    CodeInfo {
        code: AAPI_EOK,
        name: "AAPI_EOK",
        message: "success",
    },
    CodeInfo {
        code: AAPI_EINVAL,
        name: "AAPI_EINVAL",
        message: "invalid argument",
    },
    CodeInfo {
        code: AAPI_EBADHANDLE,
        name: "AAPI_EBADHANDLE",
        message: "invalid, closed or foreign handle",
    },
    CodeInfo {
        code: AAPI_ESEQUENCE,
        name: "AAPI_ESEQUENCE",
        message: "call not legal in the current state",
    },
    CodeInfo {
        code: AAPI_EBUFSIZE,
        name: "AAPI_EBUFSIZE",
        message: "buffer too small",
    },
    CodeInfo {
        code: AAPI_ENOENT,
        name: "AAPI_ENOENT",
        message: "no such object",
    },
    CodeInfo {
        code: AAPI_EEXIST,
        name: "AAPI_EEXIST",
        message: "object already exists",
    },
    CodeInfo {
        code: AAPI_EACCES,
        name: "AAPI_EACCES",
        message: "permission denied",
    },
    CodeInfo {
        code: AAPI_ENOSPC,
        name: "AAPI_ENOSPC",
        message: "not enough space at the target",
    },
    CodeInfo {
        code: AAPI_EIO,
        name: "AAPI_EIO",
        message: "input/output error",
    },
    CodeInfo {
        code: AAPI_ECHANGED,
        name: "AAPI_ECHANGED",
        message: "object changed since discovery",
    },
    CodeInfo {
        code: AAPI_ECANCELLED,
        name: "AAPI_ECANCELLED",
        message: "job cancelled",
    },
    CodeInfo {
        code: AAPI_ESCHED_NOT_SUPPORTED,
        name: "AAPI_ESCHED_NOT_SUPPORTED",
        message: "schedule type not supported",
    },
    CodeInfo {
        code: AAPI_ENOTSUP,
        name: "AAPI_ENOTSUP",
        message: "operation not supported",
    },
    CodeInfo {
        code: AAPI_EABI,
        name: "AAPI_EABI",
        message: "incompatible ABI version or struct size",
    },
    CodeInfo {
        code: AAPI_ENOTCLAIMED,
        name: "AAPI_ENOTCLAIMED",
        message: "workload type not claimed",
    },
    CodeInfo {
        code: AAPI_EAUTH,
        name: "AAPI_EAUTH",
        message: "authentication failed or credential missing",
    },
    CodeInfo {
        code: AAPI_ECONNECT,
        name: "AAPI_ECONNECT",
        message: "cannot reach the workload server",
    },
    CodeInfo {
        code: AAPI_ENOMEM,
        name: "AAPI_ENOMEM",
        message: "out of memory",
    },
    CodeInfo {
        code: AAPI_EINTERNAL,
        name: "AAPI_EINTERNAL",
        message: "internal plugin error",
    },
    CodeInfo {
        code: AAPI_EWORKLOAD,
        name: "AAPI_EWORKLOAD",
        message: "workload file missing, corrupt or unknown version",
    },
    CodeInfo {
        code: AAPI_ESNAPSHOT,
        name: "AAPI_ESNAPSHOT",
        message: "snapshot could not be created, found or deleted",
    },
];

/// The entry of `code` in [`CODES`], or `None` for a number the ABI does not define.
pub fn info(code: c_int) -> Option<&'static CodeInfo> {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODES.get(i))
        .filter(|c| c.code == code)
}

/// The C name of `code` (`"AAPI_EIO"`), or `"AAPI_E_UNKNOWN"` for an undefined number.
pub fn name(code: c_int) -> &'static str {
    info(code).map_or("AAPI_E_UNKNOWN", |c| c.name)
}

/// The message of `code`, or `"unknown return code"` for an undefined number.
pub fn message(code: c_int) -> &'static str {
    info(code).map_or("unknown return code", |c| c.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_ordered() {
        for (i, c) in CODES.iter().enumerate() {
            assert_eq!(c.code as usize, i, "{} is out of place", c.name);
            assert!(c.name.starts_with("AAPI_E"));
            assert!(!c.message.is_empty());
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(name(AAPI_ESCHED_NOT_SUPPORTED), "AAPI_ESCHED_NOT_SUPPORTED");
        assert_eq!(message(AAPI_ENOSPC), "not enough space at the target");
        assert_eq!(name(-1), "AAPI_E_UNKNOWN");
        assert_eq!(name(10_000), "AAPI_E_UNKNOWN");
        assert_eq!(message(-7), "unknown return code");
    }
}
