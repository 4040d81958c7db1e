//! Profiles (what to test a plugin with) and exclude files (which checks a vendor waives).
//!
//! A profile is a TOML file; docs/conformance.md documents every key. Strings may use the
//! placeholders `{tree}` (the generated `files` tree), `{scratch}` (the run's scratch directory)
//! and `{profile_dir}` (the directory holding the profile).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The least default [`Profile::worker_limit`].
const MIN_WORKER_LIMIT: Duration = Duration::from_secs(60);

/// A profile as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Workload type to claim and test.
    #[serde(default = "default_workload")]
    pub workload_type: String,
    /// Server name given to `aapi_open_server`.
    #[serde(default = "default_server")]
    pub server: String,
    /// Per-call budget in milliseconds for the run.
    #[serde(default = "default_budget")]
    pub call_budget_ms: u32,
    /// The longest one worker process (one probe, or one step of the data pipeline) may run, in
    /// seconds, keepalives or not (TIME-3); default: see [`Profile::worker_limit`].
    #[serde(default)]
    pub worker_limit_s: Option<u32>,
    /// Backup hosts of the discovery (one workload file and one child job each).
    #[serde(default = "default_hosts")]
    pub backup_hosts: Vec<String>,
    /// Selections given to discovery.
    #[serde(default = "default_selections")]
    pub selections: Vec<String>,
    /// Alternate root the restore checks restore under (must not exist or be empty).
    #[serde(default = "default_restore_root")]
    pub restore_root: String,
    /// Selections that name the restored objects (default: each selection under `restore_root`).
    #[serde(default)]
    pub restored_selections: Option<Vec<String>>,
    /// A TOML file of `key = "secret"` lines that answer the credential callback.
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// Credentials given inline (test secrets only; real ones belong in `credentials_file`).
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Shell command run before the checks (stages data).
    #[serde(default)]
    pub setup: Option<String>,
    /// Shell command run after the checks, also after failures.
    #[serde(default)]
    pub teardown: Option<String>,
    /// Session properties given to every `aapi_open_server`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Built-in test tree for the `files` workload; present means the runner also compares on
    /// disk and makes changes itself.
    #[serde(default)]
    pub files: Option<FilesTree>,
    /// The long call used by the keepalive and cancellation checks.
    #[serde(default)]
    pub timing: Timing,
    /// Knobs of the data checks for workloads other than `files`.
    #[serde(default)]
    pub data: DataOptions,
}

/// Parameters of the generated `files` tree (see [`crate::tree`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesTree {
    /// Size of the large file in MiB.
    #[serde(default = "default_big")]
    pub big_file_mib: u32,
    /// Number of files in the wide directory.
    #[serde(default = "default_wide")]
    pub wide_files: u32,
    /// Depth of the deep directory chain.
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// Number of files under `{tree}/timing`, the selection of the long call.
    #[serde(default = "default_timing_files")]
    pub timing_files: u32,
}

impl FilesTree {
    /// Check the sizes against what a test tree needs: the large file is made in memory.
    pub fn check(&self) -> Result<(), String> {
        for (key, value, max) in [
            ("big_file_mib", self.big_file_mib, 1024),
            ("wide_files", self.wide_files, 100_000),
            ("depth", self.depth, 200),
            ("timing_files", self.timing_files, 100_000),
        ] {
            if value > max {
                return Err(format!("[files] {key} = {value} is more than {max}"));
            }
        }
        Ok(())
    }
}

impl Default for FilesTree {
    fn default() -> Self {
        FilesTree {
            big_file_mib: default_big(),
            wide_files: default_wide(),
            depth: default_depth(),
            timing_files: default_timing_files(),
        }
    }
}

/// The long call: a discovery over `selections` with `budget_ms` as the session budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Budget of the long call's session.
    #[serde(default = "default_timing_budget")]
    pub budget_ms: u32,
    /// Selections that make discovery run longer than `budget_ms / 4`.
    #[serde(default = "default_timing_selections")]
    pub selections: Vec<String>,
    /// Extra session properties for the long call.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            budget_ms: default_timing_budget(),
            selections: default_timing_selections(),
            properties: BTreeMap::new(),
        }
    }
}

/// Options of the data checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataOptions {
    /// Directories where the plugin keeps snapshots: they must be as before after a failed or
    /// cancelled discovery and after postprocess.
    #[serde(default)]
    pub watch_dirs: Vec<String>,
    /// Shell command that changes the workload before the incremental check (not needed for
    /// `files` with a generated tree).
    #[serde(default)]
    pub change_command: Option<String>,
    /// Object paths `change_command` changes.
    #[serde(default)]
    pub changed_objects: Vec<String>,
}

fn default_workload() -> String {
    "files".into()
}
fn default_server() -> String {
    "localhost".into()
}
fn default_budget() -> u32 {
    10_000
}
fn default_hosts() -> Vec<String> {
    vec!["bh1".into(), "bh2".into(), "bh3".into()]
}
fn default_selections() -> Vec<String> {
    vec!["{tree}/data".into(), "{tree}/data/deep".into()]
}
fn default_restore_root() -> String {
    "{scratch}/restore".into()
}
fn default_big() -> u32 {
    3
}
fn default_wide() -> u32 {
    150
}
fn default_depth() -> u32 {
    12
}
fn default_timing_files() -> u32 {
    3000
}
fn default_timing_budget() -> u32 {
    400
}
fn default_timing_selections() -> Vec<String> {
    vec!["{tree}/timing".into()]
}

/// The skip reason of a check that needs `[files]` (the runner stages files for it, or compares
/// with them on disk) in a profile without it: the profile's doing, not the plugin's. `staged`
/// says what the runner does not do, `clause` what the plugin is then not judged on.
pub(crate) fn no_files_reason(staged: &str, clause: &str) -> String {
    format!(
        "the profile has no [files] section and no selection uses {{tree}}, so the runner does not {staged}; a plugin whose objects are files is judged on {clause} only with [files] in its profile (docs/conformance.md, profile)"
    )
}

impl Default for Profile {
    fn default() -> Self {
        toml::from_str("[files]\n").expect("the default profile parses")
    }
}

/// A profile or exclude file that cannot be used.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Profile {
    /// Read a profile file.
    pub fn from_path(path: &Path) -> Result<(Profile, PathBuf), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read profile: {e}", path.display())))?;
        let mut p: Profile = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: invalid profile: {e}", path.display())))?;
        // `{tree}` is the generated tree: a profile whose selections use it (the default ones
        // do) gets one, with the defaults of `[files]`.
        if p.files.is_none() && p.uses_tree() {
            p.files = Some(FilesTree::default());
        }
        p.validate()
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Ok((p, dir))
    }

    /// The longest one worker may run: `worker_limit_s`, else 30 times `call_budget_ms` and at
    /// least 60 s.
    pub fn worker_limit(&self) -> Duration {
        match self.worker_limit_s {
            Some(s) => Duration::from_secs(s as u64),
            None => Duration::from_millis(self.call_budget_ms as u64 * 30).max(MIN_WORKER_LIMIT),
        }
    }

    /// Whether a selection, a restored selection, a long-call selection or a changed object
    /// names the generated tree (`{tree}`).
    pub(crate) fn uses_tree(&self) -> bool {
        self.selections
            .iter()
            .chain(self.restored_selections.iter().flatten())
            .chain(&self.timing.selections)
            .chain(&self.data.changed_objects)
            .any(|s| s.contains("{tree}"))
    }

    /// Check values that TOML types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(f) = &self.files {
            f.check()?;
        }
        if self.workload_type.is_empty() {
            return Err("workload_type is empty".into());
        }
        if self.backup_hosts.is_empty() {
            return Err("backup_hosts needs at least one name".into());
        }
        for (i, h) in self.backup_hosts.iter().enumerate() {
            // Each names a workload file <dir>/<host><suffix>: one file name, one file each.
            aapi_host::tasks::check_backup_host(h).map_err(|e| format!("backup_hosts: {e}"))?;
            if self.backup_hosts[..i].contains(h) {
                return Err(format!(
                    "backup_hosts: {h:?} is listed twice (each host gets one workload file)"
                ));
            }
        }
        if self.selections.is_empty() {
            return Err("selections needs at least one entry".into());
        }
        if self.call_budget_ms < 100 {
            return Err("call_budget_ms must be at least 100".into());
        }
        if let Some(w) = self.worker_limit_s
            && (w == 0 || u64::from(w) * 1000 < u64::from(self.call_budget_ms))
        {
            return Err(format!(
                "worker_limit_s ({w} s) must be at least 1 and no shorter than call_budget_ms ({} ms): a worker has to fit one call",
                self.call_budget_ms
            ));
        }
        if self.timing.budget_ms < 40 {
            return Err("timing.budget_ms must be at least 40".into());
        }
        Ok(())
    }
}

/// Replace the placeholders in `s`.
pub fn expand(s: &str, tree: &Path, scratch: &Path, profile_dir: &Path) -> String {
    s.replace("{tree}", &tree.to_string_lossy())
        .replace("{scratch}", &scratch.to_string_lossy())
        .replace("{profile_dir}", &profile_dir.to_string_lossy())
}

/// Read a credentials file: a TOML table of `key = "secret"`.
pub fn read_credentials(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "{}: cannot read credentials file: {e}",
            path.display()
        ))
    })?;
    let table: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "{}: credentials file must hold key = \"secret\" lines: {e}",
            path.display()
        ))
    })?;
    Ok(table.into_iter().collect())
}

/// How many checks need `id` to pass, directly or through the checks they need.
fn dependents(known: &[crate::checks::CheckDef], id: &str) -> usize {
    let mut blocked = std::collections::BTreeSet::from([id]);
    loop {
        let before = blocked.len();
        for c in known {
            if c.needed().iter().any(|n| blocked.contains(n)) {
                blocked.insert(c.id.as_str());
            }
        }
        if blocked.len() == before {
            return blocked.len() - 1;
        }
    }
}

/// Waived checks: check ID -> reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Exclusions(pub BTreeMap<String, String>);

impl Exclusions {
    /// Parse an exclude file: one `CHECK-ID reason...` per line; `#` starts a comment line.
    /// Every ID must name a check that no other check needs, and every waiver needs a reason.
    pub fn parse(text: &str, origin: &str) -> Result<Exclusions, ConfigError> {
        let known = crate::checks::all();
        let mut map = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, reason) = match line.split_once(char::is_whitespace) {
                Some((id, reason)) if !reason.trim().is_empty() => (id, reason.trim()),
                _ => {
                    return Err(ConfigError(format!(
                        "{origin}:{}: `{line}`: a waiver needs a check ID and a reason",
                        n + 1
                    )));
                }
            };
            if !known.iter().any(|c| c.id == id) {
                return Err(ConfigError(format!(
                    "{origin}:{}: unknown check ID `{id}` (see `aapi-conformance list`)",
                    n + 1
                )));
            }
            let needed_by = dependents(&known, id);
            if needed_by > 0 {
                return Err(ConfigError(format!(
                    "{origin}:{}: `{id}` cannot be waived: {needed_by} other checks need it to pass (it is a step of the load gate or of the data pipeline); fix what fails, or run the checks that do not need it with --only",
                    n + 1
                )));
            }
            if let Some((first, _)) = map.insert(id.to_string(), (n + 1, reason.to_string())) {
                return Err(ConfigError(format!(
                    "{origin}:{}: `{id}` is waived again (first on line {first}); keep one line with one reason",
                    n + 1
                )));
            }
        }
        Ok(Exclusions(
            map.into_iter()
                .map(|(id, (_, reason))| (id, reason))
                .collect(),
        ))
    }

    /// Read and parse an exclude file.
    pub fn from_path(path: &Path) -> Result<Exclusions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("{}: cannot read exclude file: {e}", path.display()))
        })?;
        Exclusions::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_whose_selections_use_the_tree_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "call_budget_ms = 5000\n").unwrap();
        let (p, _) = Profile::from_path(&path).unwrap();
        assert!(p.files.is_some(), "the default selections use {{tree}}");
        std::fs::write(
            &path,
            "selections = [\"/srv/data\"]\n[timing]\nselections = [\"/usr/share\"]\n",
        )
        .unwrap();
        let (p, _) = Profile::from_path(&path).unwrap();
        assert!(p.files.is_none(), "no selection uses {{tree}}");
    }

    #[test]
    fn default_profile_is_the_files_workload() {
        let p = Profile::default();
        assert_eq!(p.workload_type, "files");
        assert!(p.files.is_some());
        p.validate().unwrap();
    }

    #[test]
    fn backup_hosts_are_distinct_file_names() {
        for (hosts, says) in [
            ("[\"bh1\", \"bh1\"]", "listed twice"),
            ("[\"a/b\"]", "no backup host name"),
            ("[\"..\"]", "no backup host name"),
            ("[\"\"]", "no backup host name"),
        ] {
            let p: Profile = toml::from_str(&format!("backup_hosts = {hosts}\n")).unwrap();
            let e = p.validate().unwrap_err();
            assert!(e.contains(says), "{hosts}: {e}");
        }
    }

    #[test]
    fn worker_limit_fits_a_call() {
        for (text, ok) in [
            ("worker_limit_s = 0\n", false),
            ("call_budget_ms = 10000\nworker_limit_s = 1\n", false),
            ("call_budget_ms = 10000\nworker_limit_s = 10\n", true),
        ] {
            let p: Profile = toml::from_str(text).unwrap();
            match p.validate() {
                Ok(()) => assert!(ok, "{text} accepted"),
                Err(e) => assert!(!ok && e.contains("worker_limit_s"), "{text}: {e}"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<Profile>("workload = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("workload"), "{e}");
    }

    #[test]
    fn exclusions_need_known_ids_and_reasons() {
        let ok = Exclusions::parse("# c\nrc.codes vendor reason\n\n", "x").unwrap();
        assert_eq!(ok.0["rc.codes"], "vendor reason");
        assert!(Exclusions::parse("rc.codes\n", "x").is_err());
        let e = Exclusions::parse("no.such.check why\n", "x").unwrap_err();
        assert!(e.0.contains("x:1"), "{e}");
        // A second line for one check would silently replace the first one's reason.
        let e = Exclusions::parse("rc.codes one\n# c\nrc.codes two\n", "x").unwrap_err();
        assert!(e.0.contains("x:3") && e.0.contains("line 1"), "{e}");
        // The gate and the pipeline's steps: what needs them would have nothing to judge.
        for id in [
            "load.init",
            "load.claim",
            "life.discovery",
            "life.backup",
            "life.restore",
        ] {
            let e = Exclusions::parse(&format!("{id} reason\n"), "x").unwrap_err();
            assert!(e.0.contains("cannot be waived"), "{id}: {e}");
        }
        // The first gate step blocks every other check, through the steps that need it.
        let all = crate::checks::all().len();
        let e = Exclusions::parse("load.marker reason\n", "x").unwrap_err();
        assert!(e.0.contains(&format!(": {} other checks", all - 1)), "{e}");
    }
}
