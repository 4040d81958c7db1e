//! Packs, verifies and installs aapi plugin packages without ever running their code.
//!
//! A package is a tar archive (optionally gzip-compressed) whose first entry is the manifest,
//! `.aapi/manifest.json`, optionally followed by its Ed25519 signature `.aapi/manifest.sig`,
//! then the payload. See docs/validator.md for the format, the finding codes and the CLI.

pub mod archive;
pub mod elf;
pub mod error;
pub mod finding;
pub mod hash;
pub(crate) mod headers;
pub mod install;
pub mod manifest;
pub mod map;
pub(crate) mod output;
pub mod pack;
pub mod paths;
pub mod scan;
pub mod sign;
pub mod tree;
pub mod verify;

pub use error::{Error, Result};
pub use finding::{Code, Finding};
pub use manifest::Manifest;
pub use scan::Limits;
