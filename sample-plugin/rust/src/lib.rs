//! The `files` workload plugin in Rust: backup and restore of directory trees on the backup
//! host's local file system, built on the aapi SDK. Its behaviour is specified in
//! sample-plugin/README.md; the C sample implements the same specification.
//!
//! Modules, in the order a job meets them:
//! - [`config`]: the session properties (`files.*`, `aapi.last_*_time`);
//! - [`discovery`]: walk, change detection, byte-balanced split, workload files;
//! - [`snapshot`]: `copy`/`reflink` snapshots, snapshot paths, deletion;
//! - `snapdir`: the snapshot directory, opened only when no other user can replace it;
//! - [`backup`]: objects opened for reading, with torn-read detection;
//! - [`restore`]: created objects, overwrite policy, rollback;
//! - `scope`, `dir`: how a restore walks its paths (never through a symbolic link below an
//!   alternate root) and changes an entry relative to its parent directory's descriptor;
//! - `fsutil`, `paths`, `sys`: file system helpers, path bytes, the few raw system calls.
//!
//! The SDK's export layer already enforces the mechanical contract (argument checks, handles,
//! call order, panics, threads); this crate holds only the workload's own logic. Comments cite
//! the clauses of docs/contract.md where the code meets one.

pub mod backup;
pub mod config;
mod dir;
pub mod discovery;
mod fsutil;
mod paths;
pub mod restore;
mod scope;
mod snapdir;
pub mod snapshot;
mod sys;

use aapi_sdk::abi::*;
use aapi_sdk::plugin::{
    BackupJob, Error, HostInfo, ObjectProps, Operation, Plugin, PluginInfo, RestoreInfo,
    RestoreStatus, Result, Server, ServerInfo, Session, Timestamp,
};
use config::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The plugin's name, also the prefix of its log lines.
pub const NAME: &str = "files-rust";

/// The plugin: no state of its own beyond the sessions.
pub struct FilesPlugin;

impl Plugin for FilesPlugin {
    // LOAD-5, THR-2: identity and capabilities as sample-plugin/README.md gives them.
    const INFO: PluginInfo = PluginInfo {
        name: c"files-rust",
        version: c"0.1.0",
        vendor: c"aapi project",
        workload_types: c"files",
        capabilities: AAPI_CAP_CONCURRENT_OBJECTS
            | AAPI_CAP_RESTORE
            | AAPI_CAP_ALTERNATE_RESTORE
            | AAPI_CAP_SNAPSHOT,
        max_concurrent_objects: 8,
    };
    type Server = FilesServer;

    fn init(_host: &HostInfo) -> Result<Self> {
        Ok(FilesPlugin)
    }

    /// The server name only names the file server (the SDK refuses an empty one); the plugin
    /// works on the local file system. Configuration errors are `AAPI_EINVAL` here.
    fn open_server(&self, _server: &str, session: Session) -> Result<FilesServer> {
        let config = Config::from_session(&session)?;
        let book = Arc::new(restore::Book::new(session.host().clone()));
        Ok(FilesServer {
            session,
            config,
            book,
        })
    }
}

/// One session.
pub struct FilesServer {
    session: Session,
    config: Config,
    book: Arc<restore::Book>,
}

impl Server for FilesServer {
    type Reader = backup::Reader;
    type Writer = restore::Writer;

    /// RC-8: full, incremental and cumulative incremental are all supported.
    fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            full: true,
            incremental: true,
            cumulative: true,
        })
    }

    fn discovery(&self, job: &BackupJob) -> Result<String> {
        self.discover(job)
    }

    /// DISC-7: delete the snapshot; "" means there is none. One made in another snapshot
    /// directory is refused: it is not missing, only looked for in the wrong place.
    fn postprocess(&self, _job: &BackupJob, snapshot_id: &str) -> Result<()> {
        if snapshot_id.is_empty() {
            return Ok(());
        }
        // Only ids this plugin makes: nothing outside the snapshot directory can be deleted.
        if !snapshot::is_valid_id(snapshot_id) {
            return Err(Error::invalid(format!(
                "{snapshot_id:?} is not a snapshot id of this plugin"
            )));
        }
        snapshot::check_made_here(&self.config, snapshot_id)?;
        snapshot::remove(&self.config, self.session.host(), snapshot_id)
    }

    fn snapshot_path(&self, snapshot: &str, real_path: &Path) -> Result<PathBuf> {
        snapshot::snapshot_path(&self.config, snapshot, real_path)
    }

    fn open_object(&self, path: &Path) -> Result<backup::Reader> {
        backup::Reader::open(path)
    }

    fn object_props(&self, path: &Path) -> Result<ObjectProps> {
        if self.session.operation() == Operation::Restore {
            return self.book.props(path);
        }
        ObjectProps::from_metadata(&backup::object_metadata(path)?)
    }

    fn restore_preprocess(&self, info: &RestoreInfo) -> Result<()> {
        self.book.preprocess(info, self.config.min_free_bytes)
    }

    fn create_object(
        &self,
        path: &Path,
        props: &ObjectProps,
        overwrite: bool,
    ) -> Result<restore::Writer> {
        self.book.create(path, props, overwrite)
    }

    fn delete_object(&self, path: &Path) -> Result<()> {
        self.book.delete(path)
    }

    fn set_times(
        &self,
        path: &Path,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<()> {
        self.book.set_times(path, atime, mtime)
    }

    fn restore_postprocess(&self, status: RestoreStatus) -> Result<()> {
        self.book.postprocess(status)
    }

    fn close(&self) -> Result<()> {
        if self.session.operation() == Operation::Restore {
            self.book.abandon();
        }
        Ok(())
    }
}

aapi_sdk::export_plugin!(FilesPlugin);
