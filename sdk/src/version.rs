//! ABI identity: the static marker, the required symbols and the compatibility rule.

use crate::abi::{AAPI_ABI_MAJOR, AAPI_ABI_MINOR, aapi_abi_marker_t};
use core::ffi::c_char;
use std::fmt;

/// The eight magic bytes that open `aapi_abi_marker_t`: "AAPIABI" and a NUL.
pub const AAPI_ABI_MAGIC: [u8; 8] = *b"AAPIABI\0";

/// Name of the data symbol holding the plugin's `aapi_abi_marker_t`.
pub const MARKER_SYMBOL: &str = "aapi_abi_marker";

/// Size in bytes of `aapi_abi_marker_t` in ABI 1.
pub const MARKER_SIZE: usize = size_of::<aapi_abi_marker_t>();

/// Every function a plugin must export, in the order of docs/contract.md.
pub const ENTRY_POINTS: [&str; 22] = [
    "aapi_pgn_init",
    "aapi_pgn_claim",
    "aapi_open_server",
    "aapi_close_server",
    "aapi_get_server_prop",
    "aapi_discovery",
    "aapi_postprocess",
    "aapi_get_snappath_from_realpath",
    "aapi_open_object",
    "aapi_create_object",
    "aapi_delete_object",
    "aapi_read_object",
    "aapi_write_object",
    "aapi_flush",
    "aapi_close_object",
    "aapi_get_object_prop",
    "aapi_get_object_prop_byname",
    "aapi_set_object_utimes",
    "aapi_restore_preprocess",
    "aapi_restore_postprocess",
    "aapi_terminate",
    "aapi_get_last_error",
];

/// Why a plugin's ABI version cannot be used by this SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiMismatch {
    /// The major versions differ: the layouts or meanings are incompatible.
    Major {
        /// The plugin's major.
        plugin: u16,
    },
    /// The plugin is built for a newer minor than this SDK knows.
    NewerMinor {
        /// The plugin's minor.
        plugin: u16,
    },
}

impl fmt::Display for AbiMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiMismatch::Major { plugin } => write!(
                f,
                "plugin ABI major {plugin} differs from this framework's {AAPI_ABI_MAJOR}; rebuild the plugin against ABI {AAPI_ABI_MAJOR}.x"
            ),
            AbiMismatch::NewerMinor { plugin } => write!(
                f,
                "plugin ABI {AAPI_ABI_MAJOR}.{plugin} is newer than this framework's {AAPI_ABI_MAJOR}.{AAPI_ABI_MINOR}; upgrade the framework"
            ),
        }
    }
}

impl std::error::Error for AbiMismatch {}

/// The compatibility rule (ABI-1): a plugin built for `major.minor` is usable by this SDK when
/// `major` equals [`AAPI_ABI_MAJOR`] and `minor` is not newer than [`AAPI_ABI_MINOR`].
pub fn check_compatible(major: u16, minor: u16) -> Result<(), AbiMismatch> {
    if major != AAPI_ABI_MAJOR {
        Err(AbiMismatch::Major { plugin: major })
    } else if minor > AAPI_ABI_MINOR {
        Err(AbiMismatch::NewerMinor { plugin: minor })
    } else {
        Ok(())
    }
}

/// Why bytes read from a file are not an ABI marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerError {
    /// Fewer bytes than a marker holds.
    Truncated {
        /// How many bytes were available.
        len: usize,
    },
    /// The bytes do not start with [`AAPI_ABI_MAGIC`].
    BadMagic([u8; 8]),
    /// The size recorded in the marker is not one this SDK can read.
    BadSize(u32),
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarkerError::Truncated { len } => {
                write!(f, "ABI marker is truncated ({len} of {MARKER_SIZE} bytes)")
            }
            MarkerError::BadMagic(m) => write!(
                f,
                "ABI marker has wrong magic bytes {:?} (expected \"AAPIABI\\0\")",
                String::from_utf8_lossy(m)
            ),
            MarkerError::BadSize(s) => write!(
                f,
                "ABI marker records size {s}, expected at least {MARKER_SIZE}"
            ),
        }
    }
}

impl std::error::Error for MarkerError {}

impl aapi_abi_marker_t {
    /// The marker of a plugin built against this SDK.
    pub const CURRENT: aapi_abi_marker_t = aapi_abi_marker_t {
        magic: magic_chars(),
        abi_major: AAPI_ABI_MAJOR,
        abi_minor: AAPI_ABI_MINOR,
        marker_size: MARKER_SIZE as u32,
    };

    /// Decode a marker from the bytes of the `aapi_abi_marker` symbol as stored in a file of the
    /// given byte order (tools read it from ELF files without loading them).
    pub fn from_bytes(bytes: &[u8], little_endian: bool) -> Result<Self, MarkerError> {
        if bytes.len() < MARKER_SIZE {
            return Err(MarkerError::Truncated { len: bytes.len() });
        }
        let magic: [u8; 8] = bytes[..8].try_into().expect("length checked above");
        if magic != AAPI_ABI_MAGIC {
            return Err(MarkerError::BadMagic(magic));
        }
        let u16_at = |i: usize| {
            let b = [bytes[i], bytes[i + 1]];
            if little_endian {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            }
        };
        let b = [bytes[12], bytes[13], bytes[14], bytes[15]];
        let marker_size = if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        };
        if (marker_size as usize) < MARKER_SIZE {
            return Err(MarkerError::BadSize(marker_size));
        }
        Ok(aapi_abi_marker_t {
            magic: magic_chars(),
            abi_major: u16_at(8),
            abi_minor: u16_at(10),
            marker_size,
        })
    }
}

const fn magic_chars() -> [c_char; 8] {
    let mut out = [0 as c_char; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = AAPI_ABI_MAGIC[i] as c_char;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_rule() {
        assert!(check_compatible(AAPI_ABI_MAJOR, AAPI_ABI_MINOR).is_ok());
        assert!(check_compatible(AAPI_ABI_MAJOR, 0).is_ok());
        assert_eq!(
            check_compatible(AAPI_ABI_MAJOR + 1, 0),
            Err(AbiMismatch::Major {
                plugin: AAPI_ABI_MAJOR + 1
            })
        );
        assert_eq!(
            check_compatible(AAPI_ABI_MAJOR, AAPI_ABI_MINOR + 1),
            Err(AbiMismatch::NewerMinor {
                plugin: AAPI_ABI_MINOR + 1
            })
        );
    }

    #[test]
    fn marker_round_trips_through_bytes() {
        let m = aapi_abi_marker_t::CURRENT;
        // SAFETY: the marker is a plain repr(C) struct without padding; viewing it as bytes is sound.
        let bytes: [u8; MARKER_SIZE] = unsafe { std::mem::transmute(m) };
        assert_eq!(
            aapi_abi_marker_t::from_bytes(&bytes, cfg!(target_endian = "little")),
            Ok(m)
        );
        assert_eq!(MARKER_SIZE, 16);
    }

    #[test]
    fn bad_markers_are_named() {
        assert_eq!(
            aapi_abi_marker_t::from_bytes(b"AAPI", true),
            Err(MarkerError::Truncated { len: 4 })
        );
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(b"NOTAAPI\0");
        assert!(matches!(
            aapi_abi_marker_t::from_bytes(&bytes, true),
            Err(MarkerError::BadMagic(_))
        ));
        bytes[..8].copy_from_slice(&AAPI_ABI_MAGIC);
        bytes[12] = 4;
        assert_eq!(
            aapi_abi_marker_t::from_bytes(&bytes, true),
            Err(MarkerError::BadSize(4))
        );
    }
}
