//! What a probe runs with: its check, the worker's context, and the steps most probes share:
//! load and initialise the plugin, open sessions and objects, expect codes, record findings.

use super::ffi::object_prop_with_mode;
use super::raw::Api;
use crate::task::{Objects, Setup};
use crate::worker::{Ctx, code_name, cpath, pbytes};
use aapi_host::client::{DiscoveryArgs, Plugin, PluginError, Server};
use aapi_host::loader::{EntryPoints, PluginLibrary};
use aapi_sdk::abi::*;
use std::ffi::{CString, c_int};
use std::path::{Path, PathBuf};

/// Why a probe stopped early.
pub enum Fail {
    /// The plugin did not get the probe to where it checks (a finding).
    Plugin(String),
    /// The runner failed.
    Harness(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Plugin(s)
    }
}

impl From<PluginError> for Fail {
    fn from(e: PluginError) -> Self {
        Fail::Plugin(e.to_string())
    }
}

/// A runner failure.
pub fn harness(e: impl std::fmt::Display) -> Fail {
    Fail::Harness(e.to_string())
}

/// What a probe returns.
pub type PR = Result<(), Fail>;

/// The code of a client call: its error's code, `AAPI_EOK` on success (or for an error
/// without a code).
pub fn code_of<T>(r: Result<T, PluginError>) -> c_int {
    r.err().and_then(|e| e.code()).unwrap_or(AAPI_EOK)
}

/// Arguments of a full discovery (or its postprocess) writing `.wkld` files into `dir`.
pub fn discovery_args<'a>(
    selections: &'a [Vec<u8>],
    backup_hosts: &'a [String],
    dir: &'a Path,
) -> DiscoveryArgs<'a> {
    DiscoveryArgs {
        selections,
        backup_hosts,
        workload_dir: dir,
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    }
}

/// A probe of one check, in its worker.
pub struct Probe<'a> {
    /// The worker's context.
    pub ctx: &'a Ctx,
    /// The check the probe evaluates (findings go to it unless said otherwise).
    pub id: &'a str,
}

impl Probe<'_> {
    /// Record a finding of the probe's check.
    pub fn fail(&self, m: impl Into<String>) {
        self.ctx.fail(self.id, m);
    }

    /// Record a finding of another check the probe evaluates too.
    pub fn fail_as(&self, check: &str, m: impl Into<String>) {
        self.ctx.fail(check, m);
    }

    /// The probe's check does not apply.
    pub fn skip(&self, reason: impl Into<String>) {
        self.ctx.skip(self.id, reason);
    }

    /// Record a finding unless `got == want`.
    pub fn expect(&self, what: &str, got: c_int, want: c_int) -> bool {
        if got != want {
            self.fail(format!(
                "{what} returned {}, expected {}",
                code_name(got),
                code_name(want)
            ));
            false
        } else {
            true
        }
    }

    /// [`Probe::expect`] for the code of a client call.
    pub fn expect_code<T>(&self, what: &str, r: Result<T, PluginError>, want: c_int) -> bool {
        self.expect(what, code_of(r), want)
    }

    /// [`Probe::expect`] for every `(function, code)` of `calls`, described as
    /// "`function` `context`".
    pub fn expect_all(&self, calls: &[(&str, c_int)], context: &str, want: c_int) {
        for (f, c) in calls {
            self.expect(&format!("{f} {context}"), *c, want);
        }
    }

    /// Stop with a finding unless `code` is `AAPI_EOK`.
    pub fn require(&self, what: &str, code: c_int) -> PR {
        if code != AAPI_EOK {
            return Err(Fail::Plugin(format!("{what} returned {}", code_name(code))));
        }
        Ok(())
    }

    /// The profile's settings.
    pub fn setup(&self) -> &Setup {
        &self.ctx.spec.setup
    }

    /// The profile's server name as a C string ("" if it holds a NUL).
    pub fn server_name(&self) -> CString {
        CString::new(self.setup().server.clone()).unwrap_or_default()
    }

    /// The objects the discovery found.
    pub fn objects(&self) -> &Objects {
        &self.ctx.spec.objects
    }

    /// Raw calls to the entry points `e`.
    pub fn api(&self, e: &EntryPoints) -> Api<'_> {
        Api::new(self.ctx, e)
    }

    /// Load the library.
    pub fn lib(&self) -> Result<PluginLibrary, Fail> {
        self.ctx.library().map_err(Fail::Plugin)
    }

    /// Load, initialise and claim the profile's workload type.
    pub fn plugin(&self) -> Result<Plugin, Fail> {
        self.ctx.plugin().map_err(Fail::Plugin)
    }

    /// Load and initialise, without a claim.
    pub fn init_only(&self) -> Result<Plugin, Fail> {
        Ok(Plugin::init(self.lib()?, self.ctx.dyn_hooks())?)
    }

    /// Open a session for `op`.
    pub fn session(&self, plugin: &Plugin, op: u32) -> Result<Server, Fail> {
        self.ctx.open(plugin, op).map_err(Fail::Plugin)
    }

    /// Open a postprocess session of the snapshot `snapid`.
    pub fn postprocess_session(&self, plugin: &Plugin, snapid: &str) -> Result<Server, Fail> {
        let mut def = self.ctx.session_def(AAPI_OP_POSTPROCESS);
        def.snapid = snapid.to_string();
        Ok(plugin.open_server(&self.setup().server, def)?)
    }

    /// A restore session with preprocess done on a fresh root `name` (see [`Probe::target_root`]).
    pub fn restore(&self, plugin: &Plugin, name: &str) -> Result<(Server, PathBuf), Fail> {
        let root = self.dir(name)?;
        let s = self.session(plugin, AAPI_OP_RESTORE)?;
        s.restore_preprocess(self.target_root(&root).as_bytes(), 1 << 20, 16)?;
        Ok((s, root))
    }

    /// The target root that restores objects below `root`: `root` itself when the plugin
    /// declares `AAPI_CAP_ALTERNATE_RESTORE`, else "" (the original location), the objects'
    /// paths being absolute paths below `root` all the same.
    pub fn target_root(&self, root: &Path) -> CString {
        if self.has(AAPI_CAP_ALTERNATE_RESTORE) {
            cpath(&pbytes(root))
        } else {
            CString::default()
        }
    }

    /// Open `path` for reading (the handle is the probe's to close).
    pub fn open_obj(&self, s: &Server, path: &[u8]) -> Result<aapi_object_t, Fail> {
        let sp = s.snappath("", path)?;
        let o = s.open_object(&sp)?;
        let h = o.handle();
        std::mem::forget(o);
        Ok(h)
    }

    /// Create `path` of type `kind` (the handle is the probe's to close).
    pub fn create(
        &self,
        s: &Server,
        path: &[u8],
        kind: u32,
        flags: u32,
    ) -> Result<aapi_object_t, Fail> {
        let o = s.create_object(path, &object_prop_with_mode(kind), flags)?;
        let h = o.handle();
        std::mem::forget(o);
        Ok(h)
    }

    /// The largest file the discovery found (empty if none).
    pub fn file(&self) -> Vec<u8> {
        self.objects().file.clone().unwrap_or_default()
    }

    /// A small file the discovery found (else [`Probe::file`]).
    pub fn small(&self) -> Vec<u8> {
        self.objects()
            .small_file
            .clone()
            .unwrap_or_else(|| self.file())
    }

    /// The read cap of a known object.
    pub fn cap(&self, path: &[u8]) -> u64 {
        cap_for(
            self.objects()
                .all
                .iter()
                .find(|o| o.path == path)
                .map_or(1 << 20, |o| o.size),
        )
    }

    /// Whether the plugin declares the capabilities `cap`.
    pub fn has(&self, cap: u64) -> bool {
        self.objects().capabilities & cap == cap
    }

    /// A directory `name` of the probe's own, created.
    pub fn dir(&self, name: &str) -> Result<PathBuf, Fail> {
        let d = self.ctx.spec.dir.join(name);
        std::fs::create_dir_all(&d).map_err(harness)?;
        Ok(d)
    }

    /// A path that names no object, next to the probe's file.
    pub fn missing(&self) -> Vec<u8> {
        let f = self.small();
        let parent = match f.iter().rposition(|&b| b == b'/') {
            Some(0) | None => b"/".to_vec(),
            Some(i) => f[..i].to_vec(),
        };
        let mut m = parent;
        m.extend_from_slice(b"/aapi-conformance-no-such-object");
        m
    }

    /// A small selection: the deepest directory (files) or the profile's selections.
    pub fn small_selection(&self) -> Vec<Vec<u8>> {
        if self.setup().files
            && let Some(d) = &self.objects().dir
        {
            return vec![d.clone()];
        }
        self.setup().selections.clone()
    }

    /// Every path under the watched (snapshot) directories, sorted.
    pub fn watch(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, v: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    v.push(e.path());
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), v);
                    }
                }
            }
        }
        let mut v = Vec::new();
        for d in &self.setup().watch_dirs {
            walk(d, &mut v);
        }
        v.sort();
        v
    }
}

/// The read cap for an object of `size` bytes.
pub fn cap_for(size: u64) -> u64 {
    size * 2 + 64 * 1024
}

/// Whether `d` is empty (or unreadable).
pub fn dir_is_empty(d: &Path) -> bool {
    std::fs::read_dir(d)
        .map(|mut r| r.next().is_none())
        .unwrap_or(true)
}

/// The bytes of a path as a path.
pub fn os(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// `len` bytes of a pattern that depends on `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
