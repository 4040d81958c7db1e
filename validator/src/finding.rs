//! Findings: what is wrong with a package, each with a stable code.

use serde::Serialize;
use std::fmt;

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A stable finding code. The names never change meaning and are never reused;
        /// docs/validator.md lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[allow(non_camel_case_types)]
        pub enum Code {
            $($(#[doc = $doc])* $name,)*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The code as printed, e.g. `FILE_DIGEST`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => stringify!($name),)*
                }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Code::$name => concat!($($doc),*).trim_start(),)*
                }
            }
        }
    };
}

codes! {
    /// The input is not a tar or gzip-compressed tar archive, or a header is corrupt.
    ARCHIVE_MALFORMED,
    /// The archive ends early: an entry's data or the end-of-archive marker is missing.
    ARCHIVE_TRUNCATED,
    /// Non-zero bytes follow the end-of-archive marker.
    ARCHIVE_TRAILING_DATA,
    /// Non-zero bytes in the padding that fills an entry's data or extension header up to the next 512-byte block.
    ARCHIVE_PADDING,
    /// A tar or gzip header field that tar implementations read differently, or that carries bytes nothing reads.
    ARCHIVE_HEADER,
    /// More payload entries than the entry limit.
    LIMIT_ENTRIES,
    /// The payload files add up to more than the total size limit.
    LIMIT_TOTAL_SIZE,
    /// One file is larger than the per-file size limit.
    LIMIT_FILE_SIZE,
    /// The compressed archive expands more than the compression ratio limit.
    LIMIT_COMPRESSION_RATIO,
    /// A header extension, manifest or signature is larger than its fixed bound.
    LIMIT_METADATA,
    /// An absolute path (leading `/`).
    PATH_ABSOLUTE,
    /// A path with a `..` component.
    PATH_TRAVERSAL,
    /// A path that is empty, not UTF-8, not canonical (`.`, `//`) or has control characters.
    PATH_INVALID,
    /// The same path appears twice.
    PATH_DUPLICATE,
    /// A path inside the reserved `.aapi` directory other than the manifest and its signature.
    PATH_RESERVED,
    /// An entry type the format does not allow (hard link, sparse file, global header, unknown), or an installed file with more than one name.
    ENTRY_TYPE,
    /// A pax record the format does not allow (extended attributes, ACLs, unknown keys), twice, malformed, or naming an entry a GNU long name names too.
    PAX_RECORD,
    /// A device file, fifo or socket.
    SPECIAL_FILE,
    /// A symlink whose target is absolute or resolves outside the package.
    SYMLINK_ESCAPE,
    /// A path that passes through a symlink (a write through a symlink).
    SYMLINK_THROUGH,
    /// A symlink whose target does not exist in the package, or a symlink loop.
    SYMLINK_DANGLING,
    /// A setuid or setgid bit.
    MODE_SETID,
    /// A sticky bit.
    MODE_STICKY,
    /// A group- or world-writable mode.
    MODE_WRITABLE,
    /// No manifest (`.aapi/manifest.json`).
    MANIFEST_MISSING,
    /// The manifest is not the first entry of the archive.
    MANIFEST_NOT_FIRST,
    /// The manifest does not parse or breaks a rule of the schema.
    MANIFEST_INVALID,
    /// The manifest's format version is not one this validator reads.
    MANIFEST_VERSION,
    /// A file the manifest lists is not in the package.
    FILE_MISSING,
    /// A file in the package is not in the manifest.
    FILE_EXTRA,
    /// A path has another type (file, directory, symlink) than the manifest says.
    FILE_TYPE,
    /// A file's size differs from the manifest, or a file changed size while it was read.
    FILE_SIZE,
    /// A file's SHA-256 differs from the manifest.
    FILE_DIGEST,
    /// A file's or directory's permission bits differ from the manifest.
    FILE_MODE,
    /// A symlink's target differs from the manifest.
    SYMLINK_TARGET,
    /// An installed file is not owned by the owner of the installation directory.
    FILE_OWNER,
    /// An installed file has a file capability (the `security.capability` attribute).
    FILE_CAPABILITY,
    /// The entry library is not an ELF file a real parser accepts.
    ELF_INVALID,
    /// The entry library is not an ELF shared object (an executable, a PIE, a relocatable).
    ELF_NOT_SHARED_OBJECT,
    /// The entry library is built for another architecture, word size or byte order.
    ELF_ARCH,
    /// The entry library is built for another operating system ABI.
    ELF_OS,
    /// The package targets another architecture than this host's (install, verify --installed) or the one --target-arch names.
    TARGET_ARCH,
    /// A required `aapi_*` function is not exported (absent, undefined, local or hidden).
    ELF_SYMBOL_MISSING,
    /// A required symbol is exported with the wrong type (a function that is data, or the reverse).
    ELF_SYMBOL_TYPE,
    /// The library exports no `aapi_abi_marker` data symbol.
    ELF_MARKER_MISSING,
    /// The `aapi_abi_marker` bytes are not a valid marker (magic, size, no file data).
    ELF_MARKER_INVALID,
    /// The ABI version in the marker differs from the manifest's.
    ABI_MISMATCH,
    /// The plugin's ABI version cannot be used by this framework's ABI.
    ABI_INCOMPATIBLE,
    /// A key was given but the package carries no signature.
    SIGNATURE_MISSING,
    /// The signature is not the second entry of the archive (right after the manifest).
    SIGNATURE_NOT_SECOND,
    /// The signature file does not parse (or has an unknown format, algorithm or statement version).
    SIGNATURE_MALFORMED,
    /// The signature was made by a key that was not given as trusted.
    SIGNATURE_UNTRUSTED_KEY,
    /// The Ed25519 signature does not verify.
    SIGNATURE_INVALID,
    /// The signature covers another manifest (its manifest digest differs).
    SIGNATURE_MANIFEST,
    /// The signed metadata (name, version, vendor, ABI, target) differs from the manifest.
    SIGNATURE_METADATA,
}

impl Code {
    /// Whether the code is about the signature (which `sign` replaces).
    pub fn is_signature(self) -> bool {
        self.as_str().starts_with("SIGNATURE_")
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a package: a code, the path it concerns (if any) and a plain message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub code: Code,
    /// The package path concerned, relative to the package root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What was found, in one line.
    pub message: String,
}

/// Longest path or message kept in a finding, in characters.
const MAX_TEXT: usize = 512;

/// Text for one line: control and format characters escaped, at most [`MAX_TEXT`] characters.
fn one_line(s: String) -> String {
    if s.len() <= MAX_TEXT && !s.chars().any(crate::paths::is_control_or_format) {
        return s;
    }
    let mut out: String = s
        .chars()
        .flat_map(char::escape_default_if_control)
        .take(MAX_TEXT)
        .collect();
    if out.chars().count() == MAX_TEXT {
        out.push_str("...");
    }
    out
}

trait EscapeControl {
    fn escape_default_if_control(self) -> Vec<char>;
}

impl EscapeControl for char {
    fn escape_default_if_control(self) -> Vec<char> {
        if crate::paths::is_control_or_format(self) {
            self.escape_default().collect()
        } else {
            vec![self]
        }
    }
}

impl Finding {
    /// A finding about one path.
    pub fn at(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            code,
            path: Some(one_line(path.into())),
            message: one_line(message.into()),
        }
    }

    /// A finding about the package as a whole.
    pub fn whole(code: Code, message: impl Into<String>) -> Self {
        Finding {
            code,
            path: None,
            message: one_line(message.into()),
        }
    }
}

impl fmt::Display for Finding {
    /// One line: the code padded to a column, then `path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{:<24}{}: {}", self.code.as_str(), p, self.message),
            None => write!(f, "{:<24}{}", self.code.as_str(), self.message),
        }
    }
}
