//! `flatfiles`: a minimal workload plugin that backs up and restores single regular files.
//! It is the plugin built step by step in docs/guide-rust.md.

use aapi_sdk::abi::{AAPI_CAP_ALTERNATE_RESTORE, AAPI_CAP_RESTORE};
use aapi_sdk::plugin::{
    BackupJob, BackupObject, Error, ErrorKind, HostInfo, ObjectProps, ObjectType, Plugin,
    PluginInfo, RestoreInfo, RestoreObject, RestoreStatus, Result, Server, ServerInfo, Session,
    Timestamp,
};
use aapi_sdk::workload::{WorkloadEntry, WorkloadFile};
use std::collections::BTreeSet;
use std::fs::{self, File, FileTimes, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The plugin. One value per init cycle.
pub struct FlatFiles;

impl Plugin for FlatFiles {
    const INFO: PluginInfo = PluginInfo {
        name: c"flatfiles",
        version: c"0.1.0",
        vendor: c"Example Corp",
        workload_types: c"flatfiles",
        capabilities: AAPI_CAP_RESTORE | AAPI_CAP_ALTERNATE_RESTORE,
        max_concurrent_objects: 1,
    };
    type Server = FlatSession;

    fn init(_host: &HostInfo) -> Result<Self> {
        Ok(FlatFiles)
    }

    fn open_server(&self, _server: &str, session: Session) -> Result<FlatSession> {
        Ok(FlatSession {
            session,
            restored: Arc::new(Mutex::new(Vec::new())),
            last: Arc::new(Mutex::new(None)),
        })
    }
}

/// One session: the framework's services, the files a restore put in place (each with whether
/// it replaced one), and the one it completed last with the descriptor it was written through.
pub struct FlatSession {
    session: Session,
    restored: Arc<Mutex<Vec<(PathBuf, bool)>>>,
    last: Arc<Mutex<Option<(PathBuf, File)>>>,
}

fn metadata(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(|e| Error::io(e, path.display()))
}

/// A new temporary file beside `path`, for its owner only. `create_new` never opens what is
/// already there, a symbolic link included: another name is tried instead.
fn create_temp(path: &Path) -> Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("no file name"))?
        .to_string_lossy();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}-{n}.part", std::process::id()));
        let created = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp);
        match created {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(e, tmp.display())),
        }
    }
}

impl Server for FlatSession {
    type Reader = FileReader;
    type Writer = FileWriter;

    fn server_info(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            full: true,
            ..ServerInfo::default()
        })
    }

    fn discovery(&self, job: &BackupJob) -> Result<String> {
        // Every selection is one object; check them all before writing anything.
        let mut files = Vec::new();
        for path in &job.selections {
            let md = metadata(path)?;
            if !md.is_file() {
                return Err(Error::invalid(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            files.push(WorkloadEntry {
                path: path.clone(),
                size_hint: md.len(),
                flags: 0,
                stamp: None,
            });
        }
        // Round robin over the backup hosts; every host gets a file, even an empty one.
        let hosts = job.backup_hosts.len();
        for (i, host) in job.backup_hosts.iter().enumerate() {
            let file = WorkloadFile {
                snapshot: String::new(),
                backup_host: host.clone(),
                entries: files.iter().skip(i).step_by(hosts).cloned().collect(),
            };
            file.write_to_path(&job.workload_file(host))?;
            self.session.host().keepalive_if_due()?;
        }
        self.session
            .host()
            .info(format!("flatfiles: {} files", files.len()));
        Ok(String::new()) // no snapshot
    }

    fn open_object(&self, path: &Path) -> Result<FileReader> {
        let file = File::open(path).map_err(|e| Error::io(e, path.display()))?;
        let md = file.metadata()?;
        Ok(FileReader { file, md })
    }

    fn object_props(&self, path: &Path) -> Result<ObjectProps> {
        ObjectProps::from_metadata(&metadata(path)?)
    }

    fn restore_preprocess(&self, info: &RestoreInfo) -> Result<()> {
        match &info.target_root {
            Some(root) if !root.is_dir() => Err(Error::not_found(format!(
                "{} is not a directory",
                root.display()
            ))),
            _ => Ok(()),
        }
    }

    fn create_object(
        &self,
        path: &Path,
        props: &ObjectProps,
        overwrite: bool,
    ) -> Result<FileWriter> {
        if props.kind != ObjectType::File {
            return Err(Error::not_supported(
                "flatfiles restores regular files only",
            ));
        }
        if !overwrite && fs::symlink_metadata(path).is_ok() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(|e| Error::io(e, parent.display()))?;
        // The data stays invisible under `path` until close (OBJ-6).
        let (file, tmp) = create_temp(path)?;
        Ok(FileWriter {
            file,
            tmp,
            path: path.to_path_buf(),
            props: *props,
            restored: self.restored.clone(),
            last: self.last.clone(),
            done: false,
        })
    }

    fn set_times(
        &self,
        path: &Path,
        atime: Option<Timestamp>,
        mtime: Option<Timestamp>,
    ) -> Result<()> {
        let mut times = FileTimes::new();
        if let Some(a) = atime {
            times = times.set_accessed(a.to_system_time());
        }
        if let Some(m) = mtime {
            times = times.set_modified(m.to_system_time());
        }
        // The framework sets a file's times right after its close. That file is reached
        // through the descriptor it was written with: its mode may not let the restoring user
        // open it again (0200, say). Any other file is opened for reading.
        let last = self.last.lock().unwrap();
        let set = match &*last {
            Some((done, file)) if done == path => file.set_times(times),
            _ => File::open(path).and_then(|file| file.set_times(times)),
        };
        set.map_err(|e| Error::io(e, path.display()))
    }

    fn restore_postprocess(&self, status: RestoreStatus) -> Result<()> {
        self.last.lock().unwrap().take();
        let restored = std::mem::take(&mut *self.restored.lock().unwrap());
        if !status.is_success() {
            // A failed restore removes what it created (RST-6). A file it replaced is gone:
            // keep the restored one rather than lose both (the sample plugin sets replaced
            // objects aside and puts them back, RST-7).
            for (path, replaced) in restored {
                if !replaced {
                    let _ = fs::remove_file(path);
                }
            }
            return Ok(());
        }
        // A restore reported complete survives a crash (RST-9): each file's data was synced at
        // its close; now the directories holding the renames. (The sample plugin syncs each
        // file system once instead.)
        let dirs: BTreeSet<&Path> = restored
            .iter()
            .map(|(path, _)| path.parent().unwrap_or(Path::new("/")))
            .collect();
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A file opened for reading.
pub struct FileReader {
    file: File,
    md: Metadata,
}

impl BackupObject for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        Ok(self.file.read(buf)?)
    }

    fn props(&self) -> Result<ObjectProps> {
        ObjectProps::from_metadata(&self.md)
    }
}

/// A file being restored, in a temporary file beside its target until `close` renames it.
pub struct FileWriter {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    props: ObjectProps,
    restored: Arc<Mutex<Vec<(PathBuf, bool)>>>,
    last: Arc<Mutex<Option<(PathBuf, File)>>>,
    /// Renamed into place: the temporary file is gone.
    done: bool,
}

impl RestoreObject for FileWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.file.write_all(data)?)
    }

    fn flush(&mut self) -> Result<()> {
        // Every write went straight to the file: nothing is held here (OBJ-6).
        Ok(())
    }

    fn props(&self) -> Result<ObjectProps> {
        Ok(self.props)
    }

    fn close(mut self) -> Result<()> {
        // Mode and sync through the descriptor: the mode may take away the owner's access.
        if let Some(mode) = self.props.mode {
            self.file
                .set_permissions(fs::Permissions::from_mode(mode))?;
        }
        self.file.sync_all()?;
        let file = self.file.try_clone()?;
        let replaced = fs::symlink_metadata(&self.path).is_ok();
        fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(e, self.path.display()))?;
        self.done = true;
        self.restored
            .lock()
            .unwrap()
            .push((self.path.clone(), replaced));
        *self.last.lock().unwrap() = Some((self.path.clone(), file));
        Ok(())
    }

    // `abort` keeps its default, dropping the object: `Drop` cleans up.
}

impl Drop for FileWriter {
    /// A writer that did not complete (aborted, or its `close` failed or panicked) removes its
    /// temporary file: the layer cannot abort an object whose `close` consumed it (RST-6).
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

aapi_sdk::export_plugin!(FlatFiles);
