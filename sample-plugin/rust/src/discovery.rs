//! `aapi_discovery`: walk the selections, mark what changed, split by bytes across the backup
//! hosts, take the snapshot and write one workload file per host (DISC-1..DISC-9, TIME-2,
//! TIME-4).

use crate::config::SnapshotMode;
use crate::dir::describe;
use crate::fsutil::{lstat, path_error};
use crate::snapshot::{self, Item};
use crate::{FilesServer, NAME, paths};
use aapi_sdk::abi::{AAPI_WKLD_DIR, AAPI_WKLD_SYMLINK, AAPI_WKLD_UNCHANGED, aapi_time_t};
use aapi_sdk::plugin::{BackupJob, Error, ErrorKind, Result, Schedule};
use aapi_sdk::workload::{ObjectStamp, WorkloadEntry, WorkloadFile};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One object found by the walk.
struct Found {
    path: PathBuf,
    md: Metadata,
}

/// One object of the discovery, ready to be split.
struct Object {
    path: PathBuf,
    md: Metadata,
    /// Data size: file size, symlink target length, 0 for a directory.
    size: u64,
    flags: u32,
    /// What the object weighs in the split: its size, or 0 when unchanged.
    weight: u64,
    host: usize,
}

/// The stamp the workload file carries: the times `aapi_get_object_prop` reports for the object
/// and its inode number (the framework compares it with the base image's, DISC-10).
fn stamp(md: &Metadata) -> ObjectStamp {
    let t = |sec: i64, nsec: i64| aapi_time_t {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
        reserved: 0,
    };
    ObjectStamp {
        mtime: t(md.mtime(), md.mtime_nsec()),
        ctime: t(md.ctime(), md.ctime_nsec()),
        id: md.ino(),
    }
}

fn is_object_type(md: &Metadata) -> bool {
    let ft = md.file_type();
    ft.is_file() || ft.is_dir() || ft.is_symlink()
}

impl FilesServer {
    /// The whole discovery; on any failure, nothing it wrote is left behind (DISC-5).
    pub(crate) fn discover(&self, job: &BackupJob) -> Result<String> {
        let host = self.session.host();
        // Selections: absolute, normalized, without "..".
        let mut selections = Vec::with_capacity(job.selections.len());
        for s in &job.selections {
            paths::check_object_path(s, "selection")?;
            selections.push(paths::normalize(s).0);
        }
        let snap_id = match self.config.snapshot {
            SnapshotMode::None => String::new(),
            _ => snapshot::snapshot_id(self.session.job_id(), &self.config.snapshot_dir)?,
        };
        // DISC-8: the reference time of an incremental, when the framework gave one.
        let since = match job.schedule {
            Schedule::Full => None,
            Schedule::Incremental => self.config.last_backup_time,
            Schedule::Cumulative => self.config.last_full_time,
        };
        // RC-7: every selection exists before anything is walked or written.
        for s in &selections {
            if lstat(s)
                .map_err(|e| path_error(e, "inspect selection", s))?
                .is_none()
            {
                return Err(Error::not_found(format!(
                    "selection {} does not exist",
                    s.display()
                )));
            }
        }

        let mut found = Vec::new();
        for s in &selections {
            self.walk(s, &mut found)?;
        }
        // DISC-2: overlapping selections give each object once; ascending path-byte order puts
        // directories before their contents.
        found.sort_by(|a, b| paths::bytes(&a.path).cmp(paths::bytes(&b.path)));
        found.dedup_by(|b, a| a.path == b.path);
        // TIME-2: every phase after the walk checks the keepalive too (sorting, splitting and
        // writing the files of a large tree take a while).
        host.keepalive_if_due()?;

        let mut objects: Vec<Object> = found
            .into_iter()
            .map(|f| {
                let ft = f.md.file_type();
                let size = if ft.is_dir() { 0 } else { f.md.len() };
                let changed = since.is_none_or(|t| f.md.mtime() >= t || f.md.ctime() >= t);
                let mut flags = if ft.is_dir() {
                    AAPI_WKLD_DIR
                } else if ft.is_symlink() {
                    AAPI_WKLD_SYMLINK
                } else {
                    0
                };
                if !changed {
                    flags |= AAPI_WKLD_UNCHANGED;
                }
                Object {
                    path: f.path,
                    md: f.md,
                    size,
                    flags,
                    weight: if changed { size } else { 0 },
                    host: 0,
                }
            })
            .collect();
        let (bytes, counts) = split(&mut objects, job.backup_hosts.len());
        host.keepalive_if_due()?;

        // The snapshot holds the changed objects; unchanged ones are never read (DISC-10).
        if self.config.snapshot != SnapshotMode::None {
            let items: Vec<Item<'_>> = objects
                .iter()
                .filter(|o| o.flags & AAPI_WKLD_UNCHANGED == 0)
                .map(|o| Item {
                    path: &o.path,
                    md: &o.md,
                })
                .collect();
            snapshot::create(&self.config, host, &snap_id, &items)?;
        }

        // DISC-1, DISC-3, DISC-4: one file per host, even an empty one, records in path order,
        // written privately and atomically.
        let mut written: Vec<PathBuf> = Vec::new();
        let result = job
            .backup_hosts
            .iter()
            .enumerate()
            .try_for_each(|(h, name)| {
                host.keepalive_if_due()?;
                let file = WorkloadFile {
                    snapshot: snap_id.clone(),
                    backup_host: name.clone(),
                    entries: objects
                        .iter()
                        .filter(|o| o.host == h)
                        .map(|o| WorkloadEntry {
                            path: o.path.clone(),
                            size_hint: o.size,
                            flags: o.flags,
                            stamp: Some(stamp(&o.md)),
                        })
                        .collect(),
                };
                let path = job.workload_file(name);
                file.write_to_path(&path).map_err(|e| {
                    Error::from(e).context(format!("workload file {}", path.display()))
                })?;
                written.push(path);
                Ok(())
            });
        if let Err(e) = result {
            // DISC-5: a failed discovery leaves no workload file and no snapshot behind.
            for w in &written {
                let _ = fs::remove_file(w);
            }
            if !snap_id.is_empty() {
                snapshot::discard(&self.config, &snap_id);
            }
            return Err(e);
        }
        for (h, name) in job.backup_hosts.iter().enumerate() {
            host.info(format!(
                "{NAME}: backup host {name}: {} objects, {} bytes",
                counts[h], bytes[h]
            ));
        }
        Ok(snap_id)
    }

    /// Collect `root` and, for a directory, everything below it, never following symlinks.
    /// Sockets, fifos and devices are skipped with a warning; an entry that vanishes during the
    /// walk is simply not there. A keepalive is checked at every directory entry (TIME-2).
    fn walk(&self, root: &Path, out: &mut Vec<Found>) -> Result<()> {
        let host = self.session.host();
        let md = fs::symlink_metadata(root).map_err(|e| path_error(e, "inspect", root))?;
        if !is_object_type(&md) {
            host.warn(format!(
                "{NAME}: skipped {}: not a file, directory or symlink",
                root.display()
            ));
            return Ok(());
        }
        let mut dirs = Vec::new();
        if md.is_dir() {
            dirs.push(root.to_path_buf());
        }
        out.push(Found {
            path: root.to_path_buf(),
            md,
        });
        // A directory whose contents the running user may not list stays an object (its open
        // fails at backup, so the image names it) and the walk goes on with the rest.
        let unlisted = |dir: &Path, e: &std::io::Error| {
            host.warn(format!(
                "{NAME}: cannot list the contents of {}: {}; the directory is listed without them",
                dir.display(),
                describe(e)
            ));
        };
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    unlisted(&dir, &e);
                    continue;
                }
                Err(e) => {
                    return Err(crate::dir::io_error(
                        e,
                        format!("cannot read directory {}", dir.display()),
                    ));
                }
            };
            for entry in entries {
                // TIME-4: a cancelled job stops here with AAPI_ECANCELLED.
                host.keepalive_if_due()?;
                let entry = entry.map_err(|e| {
                    crate::dir::io_error(e, format!("cannot read directory {}", dir.display()))
                })?;
                let path = entry.path();
                // DISC-2: no object is dropped; one that cannot be read by its path fails the job.
                let n = paths::bytes(&path).len();
                if n > snapshot::PATH_MAX {
                    return Err(Error::new(
                        ErrorKind::NotSupported,
                        format!(
                            "a path of the selection is {n} bytes long, more than the {} bytes a path may have; this plugin reads objects by their paths: {}",
                            snapshot::PATH_MAX,
                            path.display()
                        ),
                    ));
                }
                // The lstat relative to the open directory: no walk of the whole path per entry.
                let md = match entry.metadata() {
                    Ok(md) => md,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    // Names but no search permission: none of its entries can be inspected.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        unlisted(&dir, &e);
                        break;
                    }
                    Err(e) => {
                        return Err(crate::dir::io_error(
                            e,
                            format!("cannot inspect {}", path.display()),
                        ));
                    }
                };
                if !is_object_type(&md) {
                    host.warn(format!(
                        "{NAME}: skipped {}: not a file, directory or symlink",
                        path.display()
                    ));
                    continue;
                }
                if md.is_dir() {
                    dirs.push(path.clone());
                }
                out.push(Found { path, md });
            }
        }
        Ok(())
    }
}

/// DISC-9: largest weight first (ties by path bytes), each to the host with the fewest bytes so
/// far (ties: fewest objects, then the earlier host). Returns bytes and objects per host.
fn split(objects: &mut [Object], hosts: usize) -> (Vec<u64>, Vec<usize>) {
    let mut bytes = vec![0u64; hosts];
    let mut counts = vec![0usize; hosts];
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&objects[a], &objects[b]);
        y.weight
            .cmp(&x.weight)
            .then_with(|| paths::bytes(&x.path).cmp(paths::bytes(&y.path)))
    });
    for i in order {
        let h = (0..hosts)
            .min_by_key(|&h| (bytes[h], counts[h], h))
            .expect("at least one backup host");
        objects[i].host = h;
        bytes[h] += objects[i].weight;
        counts[h] += 1;
    }
    (bytes, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, weight: u64) -> Object {
        Object {
            path: PathBuf::from(path),
            md: fs::symlink_metadata("/").unwrap(),
            size: weight,
            flags: 0,
            weight,
            host: usize::MAX,
        }
    }

    #[test]
    fn split_balances_bytes_largest_first() {
        let mut objs = vec![
            obj("/a", 10),
            obj("/b", 7),
            obj("/c", 5),
            obj("/d", 3),
            obj("/e", 0),
            obj("/f", 0),
        ];
        let (bytes, counts) = split(&mut objs, 2);
        // 10 -> h0; 7 -> h1; 5 -> h1 (7 < 10); 3 -> h0 (10 < 12); then the two empty objects go
        // to h1, which has fewer bytes (12 < 13).
        let hosts: Vec<usize> = objs.iter().map(|o| o.host).collect();
        assert_eq!(hosts, [0, 1, 1, 0, 1, 1]);
        assert_eq!(bytes, [13, 12]);
        assert_eq!(counts, [2, 4]);
    }

    #[test]
    fn ties_go_to_fewer_objects_then_the_earlier_host() {
        let mut objs = vec![obj("/z", 0), obj("/y", 0), obj("/x", 0)];
        let (_, counts) = split(&mut objs, 3);
        // Equal weights: path order /x, /y, /z, each to the next empty host.
        let hosts: Vec<usize> = objs.iter().map(|o| o.host).collect();
        assert_eq!(hosts, [2, 1, 0]);
        assert_eq!(counts, [1, 1, 1]);
    }
}
