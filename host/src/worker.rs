//! The worker process: reads a [`Task`] as JSON on standard input, loads and initialises the
//! plugin, claims the workload type, runs the task and reports through the supervisor's pipe.
//! Exit status: 0 when the task succeeded, 1 when it failed (after an [`Event::Failed`]),
//! 2 when the plugin cannot be loaded or the process was not started by a supervisor.

use crate::client::Plugin;
use crate::loader::{find_claiming, installed_entry};
use crate::supervise::{Event, WorkerLink};
use crate::tasks::{Progress, Task, TaskError};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

struct LinkProgress(Arc<WorkerLink>);

impl Progress for LinkProgress {
    fn progress(&self, bytes: u64, objects: u64) {
        self.0.send(&Event::Progress { bytes, objects });
    }
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// Read `KEY=VALUE` lines of a credentials file, which must not be readable by group or others.
pub fn read_credentials(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("credentials file {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "credentials file {} is readable by others; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(format!(
                "credentials file {} line {}: expected KEY=VALUE (or a # comment)",
                path.display(),
                n + 1
            ));
        };
        out.push((k.trim().to_string(), v.as_bytes().to_vec()));
    }
    Ok(out)
}

/// Run `task` with a plugin that claimed the workload type, then terminate the plugin. The result
/// names the library that ran it (`plugin`), so a job given a plugin directory can keep using the
/// same library.
fn run_claimed(
    task: &Task,
    plugin: &Plugin,
    link: &Arc<WorkerLink>,
) -> Result<serde_json::Value, TaskError> {
    // The job records the library by name (job.json is text): one whose path is not UTF-8 is
    // refused before it runs, rather than after a snapshot was taken.
    let Some(lib) = plugin.library().path().to_str().map(str::to_string) else {
        let _ = plugin.terminate();
        return Err(TaskError {
            message: format!(
                "{}: the library that claims the workload type has a path that is not UTF-8; rename it",
                plugin.library().path().display()
            ),
            code: None,
        });
    };
    let out = task.run(plugin, &LinkProgress(link.clone()));
    let term = plugin.terminate();
    let mut value = out?;
    term?;
    if let Some(map) = value.as_object_mut() {
        map.insert("plugin".into(), lib.into());
    }
    Ok(value)
}

/// Run the worker side; returns the process exit status.
pub fn main() -> i32 {
    // First, while this process has one thread: processes the plugin starts die with the
    // supervisor, even when it is killed with SIGKILL.
    if let Err(e) = crate::supervise::guard_process_group() {
        eprintln!("aapi-host worker: cannot start the guard of its process group: {e}");
        return 2;
    }
    let mut input = Vec::new();
    let task: Result<Task, String> = std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()));
    let spec = task
        .as_ref()
        .map_err(|e| e.clone())
        .and_then(|t| t.plugin_spec().map_err(|e| e.message));
    let credentials = match &spec {
        Ok((_, _, Some(path))) => read_credentials(path),
        _ => Ok(Vec::new()),
    };
    let Some(link) = WorkerLink::from_env(credentials.clone().unwrap_or_default()) else {
        eprintln!("aapi-host worker: this command is started by aapi-host itself, not by hand");
        return 2;
    };
    let mut unusable = false;
    let result = (|| -> Result<serde_json::Value, TaskError> {
        let task = task.map_err(|e| TaskError {
            message: format!("bad task: {e}"),
            code: None,
        })?;
        let (plugin_path, workload_type, _) = spec.map_err(|m| TaskError {
            message: m,
            code: None,
        })?;
        credentials.map_err(|m| TaskError {
            message: m,
            code: None,
        })?;
        // An installed package: its manifest names the library.
        let plugin_path = match installed_entry(&plugin_path) {
            Some(Ok(lib)) => lib,
            Some(Err(message)) => {
                unusable = true;
                return Err(TaskError {
                    message,
                    code: None,
                });
            }
            None => plugin_path,
        };
        if plugin_path.is_dir() {
            // A plugin directory: the first library (in file-name order) that claims the type.
            let found = link
                .loading(|| find_claiming(&plugin_path, &workload_type, link.clone()))
                .map_err(|e| TaskError {
                    message: format!("{}: {e}", plugin_path.display()),
                    code: None,
                });
            let Some(plugin) = found.as_ref().ok().and_then(|r| r.chosen.as_ref()) else {
                unusable = true;
                let why = match &found {
                    Ok(r) if r.rejected.is_empty() => "it holds no *.so library".to_string(),
                    Ok(r) => r
                        .rejected
                        .iter()
                        .map(|(_, why)| why.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                    Err(e) => e.message.clone(),
                };
                return Err(TaskError {
                    message: format!(
                        "no plugin in {} claims workload type {workload_type:?} ({why})",
                        plugin_path.display()
                    ),
                    code: None,
                });
            };
            return run_claimed(&task, plugin, &link);
        }
        let plugin = link.loading(|| Plugin::load(&plugin_path, link.clone()));
        let plugin = plugin.map_err(|e| TaskError {
            message: e.to_string(),
            code: None,
        });
        let plugin = match plugin {
            Ok(p) => p,
            Err(e) => {
                unusable = true;
                return Err(e);
            }
        };
        if !plugin.claim(&workload_type)? {
            let _ = plugin.terminate();
            return Err(TaskError {
                message: format!(
                    "{}: plugin {} does not claim workload type {workload_type:?} (it claims {})",
                    plugin_path.display(),
                    plugin.info().name,
                    plugin.info().workload_types.join(",")
                ),
                code: Some(aapi_sdk::abi::AAPI_ENOTCLAIMED),
            });
        }
        run_claimed(&task, &plugin, &link)
    })();
    let code = match result {
        Ok(value) => {
            link.send(&Event::Result { value });
            0
        }
        Err(e) => {
            link.send(&Event::Failed {
                message: e.message,
                code: e.code,
            });
            if unusable { 2 } else { 1 }
        }
    };
    // What runs from here on (the library's destructors) is held to a budget too.
    link.exiting();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("creds");
        std::fs::write(&p, "# secrets\nuser=admin\npassword=a=b c\n\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_credentials(&p).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_credentials(&p).unwrap(),
            vec![
                ("user".to_string(), b"admin".to_vec()),
                ("password".to_string(), b"a=b c".to_vec())
            ]
        );
    }
}
