//! What a package or a tree holds, as found (before comparing with the manifest), and the
//! bounds every scan enforces.

use crate::finding::Finding;
use std::path::PathBuf;

/// Bounds against archive bombs and runaway trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most payload entries (files, directories, symlinks; the manifest, its signature and
    /// the `.aapi` directory not counted: they have fixed bounds of their own).
    pub max_entries: u64,
    /// Most bytes of all payload files together (the manifest and signature not counted).
    pub max_total_size: u64,
    /// Most bytes of one file.
    pub max_file_size: u64,
    /// Most a compressed package may expand (decompressed bytes per compressed byte), checked
    /// once more than [`RATIO_FLOOR`] bytes were decompressed.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000,
            max_total_size: 8 << 30,
            max_file_size: 4 << 30,
            max_ratio: 100,
        }
    }
}

/// Decompressed bytes below which the compression ratio is not judged (tar padding of a small
/// package compresses very well).
pub const RATIO_FLOOR: u64 = 4 << 20;
/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 16 << 20;
/// Largest signature file accepted.
pub const MAX_SIGNATURE: u64 = 64 << 10;
/// Most bytes of headers (the header and its extensions: long names, pax records) of one entry.
pub const MAX_HEADER_EXTENSION: u64 = 1 << 20;

/// One payload entry as found.
#[derive(Debug, Clone)]
pub struct Item {
    /// Canonical path relative to the package root.
    pub path: String,
    /// What it is.
    pub kind: ItemKind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner uid and gid (trees only).
    pub owner: Option<(u32, u32)>,
}

/// The type of an entry as found and where its content is.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Size in bytes.
        size: u64,
        /// Where the bytes are.
        content: Content,
    },
    /// A symlink.
    Symlink {
        /// Its target.
        target: String,
    },
}

/// Where a file's bytes are, or their digest when they were hashed while streaming.
#[derive(Debug, Clone)]
pub enum Content {
    /// At this offset of the (uncompressed) package file.
    Region(u64),
    /// Already hashed: the digest and the number of bytes seen.
    Hashed([u8; 32], u64),
    /// In this file of a tree.
    Path(PathBuf),
}

/// Everything a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Payload entries with a valid, unique path.
    pub items: Vec<Item>,
    /// The manifest's bytes.
    pub manifest: Option<Vec<u8>>,
    /// The signature's bytes.
    pub signature: Option<Vec<u8>>,
    /// Problems found while scanning.
    pub findings: Vec<Finding>,
    /// False when the scan stopped early (a limit, a corrupt archive): what is missing then
    /// was not looked at, so it is not reported missing.
    pub complete: bool,
    /// The entry library, copied to an unnamed temporary file while streaming a compressed
    /// package.
    pub entry_file: Option<std::fs::File>,
    /// Set when a sink stopped the walk (extraction failed or the package changed).
    pub stop: Option<crate::error::Error>,
    /// The tree root, the `.aapi` directory and its files (their modes and owners are
    /// checked like the payload's).
    pub meta_modes: Vec<Meta>,
    /// Problems only an installation has (`verify --installed`): files with another name (hard
    /// links) and files with a capability. A tree scan finds them; they are reported only for
    /// an installation.
    pub installed_findings: Vec<Finding>,
}

/// Mode and owner of an entry outside the payload.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Path ("." for a tree's root).
    pub path: String,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner uid and gid (trees only).
    pub owner: Option<(u32, u32)>,
}
