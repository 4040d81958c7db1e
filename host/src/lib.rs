//! The reference framework: loads workload plugins and runs parallel-stream backups and restores.
//!
//! Layers, bottom up:
//! - [`loader`]: load a plugin library, check its ABI marker, resolve its entry points, claim.
//! - [`client`]: a safe typed wrapper over every entry point (sessions, objects, callbacks).
//! - [`supervise`]: worker processes that run plugin code, and the supervisor that enforces
//!   per-call budgets, detects crashes and cancels.
//! - [`store`]: the image store (stream files, catalog with offset map and digests, manifests).
//! - [`stream_writer`]: the writer of a stream's data file (direct I/O, aligned buffers).
//! - [`tasks`]: discovery, child job, postprocess and restore over an initialised plugin.
//! - [`worker`]: the worker process running one task.
//! - [`ui`]: progress bars and messages.
//! - [`delete`]: deleting images without breaking the images and policies that need them.
//! - [`jobs`]: the supervisor side of backup (discover, child, finalize), restore and verify.
//! - [`pid1`]: a minimal init when the program runs as process 1 of a container.

pub mod client;
pub mod delete;
pub mod jobs;
pub mod loader;
pub mod pid1;
pub mod store;
pub mod stream_writer;
pub mod supervise;
pub mod tasks;
pub mod ui;
pub mod worker;

use std::fmt;

/// Any error of this crate's library layer.
#[derive(Debug)]
pub enum Error {
    /// A plugin library could not be loaded.
    Load(loader::LoadError),
    /// A plugin call failed.
    Plugin(client::PluginError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(e) => e.fmt(f),
            Error::Plugin(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<loader::LoadError> for Error {
    fn from(e: loader::LoadError) -> Self {
        Error::Load(e)
    }
}

impl From<client::PluginError> for Error {
    fn from(e: client::PluginError) -> Self {
        Error::Plugin(e)
    }
}
