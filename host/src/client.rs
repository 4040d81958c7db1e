//! A safe, typed layer over every entry point of a loaded plugin.
//!
//! [`Plugin`] is an initialised plugin (after the `aapi_pgn_init` handshake); [`Server`] an open
//! session (`aapi_open_server`) that owns the session definition and everything it points to until
//! it is closed; [`Object`] an open or created object. Host services reach the plugin through a
//! [`HostHooks`] implementation: log lines, keepalives (whose answer carries cancellation),
//! credentials, and an enter/leave notification around every plugin call, which is what the
//! supervisor of [`crate::supervise`] uses to enforce per-call budgets.
//!
//! Every failure is a [`PluginError`] that names the function, the code and the plugin's own
//! message (`aapi_get_last_error`). Out-parameters are read only on `AAPI_EOK`, as the ABI says.

use crate::loader::{EntryPoints, PluginLibrary};
use aapi_sdk::abi::*;
use aapi_sdk::codes;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Host services offered to a plugin. All methods may be called from any thread the plugin uses.
pub trait HostHooks: Send + Sync {
    /// A log line from the plugin (`AAPI_LOG_*` level).
    fn log(&self, level: u32, message: &str);

    /// The plugin says it is alive. Return `false` to cancel the job: the plugin then gets
    /// `AAPI_ECANCELLED` and must return promptly.
    fn keepalive(&self) -> bool {
        true
    }

    /// The secret stored under `key`, if any.
    fn credential(&self, _key: &str) -> Option<Vec<u8>> {
        None
    }

    /// A plugin entry point is about to be called.
    fn call_enter(&self, _function: &'static str) {}

    /// A plugin entry point returned `code`.
    fn call_leave(&self, _function: &'static str, _code: c_int) {}

    /// The message `aapi_get_last_error` gave for a failing call of `function` (which returned
    /// `code`), as the client asks after every failure it reports; `""` when the plugin set none
    /// (RC-9).
    fn last_error(&self, _function: &'static str, _code: c_int, _message: &str) {}

    /// The plugin called `callback` (`"log callback"`, `"keepalive callback"`, `"credential
    /// callback"`) of a session after that session's `aapi_close_server` had returned (THR-3).
    /// Said once per session; the callback itself is refused (the keepalive answers
    /// `AAPI_ECANCELLED`, the credential `AAPI_ENOENT`, the log line is dropped).
    fn late_callback(&self, _callback: &'static str) {}

    /// The plugin called `callback` of an open session while none of that session's entry
    /// points was running (THR-3). Said once per session; the callback itself is served.
    fn idle_callback(&self, _callback: &'static str) {}
}

/// Hooks that print the plugin's log lines to standard error and do nothing else.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrHooks;

impl HostHooks for StderrHooks {
    fn log(&self, level: u32, message: &str) {
        // A closed standard error loses the line; it never stops the plugin's call.
        let _ = writeln!(std::io::stderr(), "plugin {}: {message}", level_name(level));
    }
}

/// The lower-case name of an `AAPI_LOG_*` level.
pub fn level_name(level: u32) -> &'static str {
    match level {
        AAPI_LOG_ERROR => "error",
        AAPI_LOG_WARNING => "warning",
        AAPI_LOG_INFO => "info",
        AAPI_LOG_DEBUG => "debug",
        _ => "log",
    }
}

/// A failed plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The function returned an error code.
    Call {
        /// The entry point, e.g. `"aapi_open_object"`.
        function: &'static str,
        /// The code it returned.
        code: c_int,
        /// The plugin's detailed message from `aapi_get_last_error` ("" when it had none).
        detail: String,
    },
    /// The plugin broke the contract in a way the host detected (e.g. `AAPI_EOK` with a 0 handle).
    Contract {
        /// The entry point.
        function: &'static str,
        /// What was wrong.
        what: String,
    },
    /// The host could not even make the call (e.g. a path holding a NUL byte).
    Input {
        /// The entry point that was not called.
        function: &'static str,
        /// What was wrong with the input.
        what: String,
    },
}

impl PluginError {
    /// The code the plugin returned, for [`PluginError::Call`].
    pub fn code(&self) -> Option<c_int> {
        match self {
            PluginError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The entry point concerned.
    pub fn function(&self) -> &'static str {
        match self {
            PluginError::Call { function, .. }
            | PluginError::Contract { function, .. }
            | PluginError::Input { function, .. } => function,
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Call {
                function,
                code,
                detail,
            } => {
                if codes::info(*code).is_some() {
                    write!(
                        f,
                        "{function} returned {} ({})",
                        codes::name(*code),
                        codes::message(*code)
                    )?;
                } else {
                    write!(f, "{function} returned {code}, which is no AAPI_E* code")?;
                }
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            PluginError::Contract { function, what } => {
                write!(f, "{function} broke the plugin contract: {what}")
            }
            PluginError::Input { function, what } => {
                write!(f, "cannot call {function}: {what}")
            }
        }
    }
}

impl std::error::Error for PluginError {}

/// What `aapi_pgn_init` reported about the plugin, copied and checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// ABI major the plugin implements.
    pub abi_major: u16,
    /// ABI minor the plugin implements.
    pub abi_minor: u16,
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Vendor.
    pub vendor: String,
    /// Workload types it claims.
    pub workload_types: Vec<String>,
    /// `AAPI_CAP_*` bits.
    pub capabilities: u64,
    /// Object calls the plugin accepts at once.
    pub max_concurrent_objects: u32,
}

/// The name this framework gives itself in the handshake.
pub const FRAMEWORK_NAME: &CStr = c"aapi-host";
const FRAMEWORK_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// What a callback's context pointer points to. A session's is never freed: a plugin that
/// calls back after `aapi_close_server` returned reaches [`HostHooks::late_callback`], not freed
/// memory.
struct CallbackCtx {
    hooks: Arc<dyn HostHooks>,
    /// Whether it is a session's (the plugin's log context is not).
    session: bool,
    /// The session's entry points running now (`aapi_open_server` included).
    in_flight: AtomicUsize,
    /// Set when the session's `aapi_close_server` has returned.
    closed: AtomicBool,
    /// Set when a late callback was reported.
    reported_late: AtomicBool,
    /// Set when an idle callback was reported.
    reported_idle: AtomicBool,
}

impl CallbackCtx {
    fn new(hooks: Arc<dyn HostHooks>, session: bool) -> CallbackCtx {
        CallbackCtx {
            hooks,
            session,
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            reported_late: AtomicBool::new(false),
            reported_idle: AtomicBool::new(false),
        }
    }

    /// Whether the session is closed (the callback is then refused). Reports `callback` once
    /// per session when it is, and once when none of the session's entry points runs.
    fn late(&self, callback: &'static str) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            if !self.reported_late.swap(true, Ordering::SeqCst) {
                self.hooks.late_callback(callback);
            }
            return true;
        }
        if self.session
            && self.in_flight.load(Ordering::SeqCst) == 0
            && !self.reported_idle.swap(true, Ordering::SeqCst)
        {
            self.hooks.idle_callback(callback);
        }
        false
    }

    /// Run `call`, an entry point of this session.
    fn within(&self, call: impl FnOnce() -> c_int) -> c_int {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let code = call();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        code
    }
}

unsafe extern "C" fn log_cb(ctx: *mut c_void, level: u32, message: *const c_char) {
    if ctx.is_null() || message.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ctx is the CallbackCtx this module handed out, alive while the plugin may call.
        let ctx = unsafe { &*(ctx as *const CallbackCtx) };
        if ctx.late("log callback") {
            return;
        }
        // SAFETY: the ABI makes `message` a NUL-terminated string valid during the call.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        ctx.hooks.log(level, &text);
    }));
}

unsafe extern "C" fn keepalive_cb(ctx: *mut c_void) -> c_int {
    if ctx.is_null() {
        return AAPI_EINVAL;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in log_cb.
        let ctx = unsafe { &*(ctx as *const CallbackCtx) };
        if !ctx.late("keepalive callback") && ctx.hooks.keepalive() {
            AAPI_EOK
        } else {
            AAPI_ECANCELLED
        }
    }))
    .unwrap_or(AAPI_ECANCELLED)
}

unsafe extern "C" fn credential_cb(
    ctx: *mut c_void,
    key: *const c_char,
    buf: *mut c_char,
    buf_size: *mut usize,
) -> c_int {
    if ctx.is_null() || key.is_null() || buf_size.is_null() {
        return AAPI_EINVAL;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in log_cb.
        let ctx = unsafe { &*(ctx as *const CallbackCtx) };
        if ctx.late("credential callback") {
            return AAPI_ENOENT;
        }
        // SAFETY: the ABI makes `key` a NUL-terminated string valid during the call.
        let key = unsafe { CStr::from_ptr(key) }.to_string_lossy();
        let Some(secret) = ctx.hooks.credential(&key) else {
            return AAPI_ENOENT;
        };
        let need = secret.len() + 1;
        // SAFETY: buf_size was checked non-NULL; the plugin owns it for the call.
        let cap = unsafe { *buf_size };
        if cap < need || buf.is_null() {
            // SAFETY: as above.
            unsafe { *buf_size = need };
            return AAPI_EBUFSIZE;
        }
        // SAFETY: buf has room for `cap >= need` bytes by the callback contract.
        unsafe {
            std::ptr::copy_nonoverlapping(secret.as_ptr(), buf as *mut u8, secret.len());
            *buf.add(secret.len()) = 0;
            *buf_size = need;
        }
        AAPI_EOK
    }))
    .unwrap_or(AAPI_EINTERNAL)
}

/// An initialised plugin. Cheap to clone (the library is loaded once and never unloaded).
#[derive(Clone)]
pub struct Plugin {
    lib: PluginLibrary,
    info: PluginInfo,
    hooks: Arc<dyn HostHooks>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.lib.path())
            .field("info", &self.info)
            .finish()
    }
}

fn bounded_str(
    function: &'static str,
    field: &str,
    ptr: *const c_char,
    max: usize,
    ascii: bool,
) -> Result<String, PluginError> {
    let contract = |what: String| PluginError::Contract { function, what };
    if ptr.is_null() {
        return Err(contract(format!("plugin_info.{field} is NULL")));
    }
    let mut bytes = Vec::new();
    loop {
        // SAFETY: the plugin promised a NUL-terminated string; we stop at the NUL or after
        // max + 1 bytes, never reading past either.
        let b = unsafe { *ptr.add(bytes.len()) } as u8;
        if b == 0 {
            break;
        }
        bytes.push(b);
        if bytes.len() > max {
            return Err(contract(format!(
                "plugin_info.{field} is longer than {max} bytes"
            )));
        }
    }
    if bytes.is_empty() {
        return Err(contract(format!("plugin_info.{field} is empty")));
    }
    if ascii && !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(contract(format!(
            "plugin_info.{field} is not printable ASCII"
        )));
    }
    String::from_utf8(bytes).map_err(|_| contract(format!("plugin_info.{field} is not UTF-8")))
}

impl Plugin {
    /// Handshake through `aapi_pgn_init`: give the host info, check the plugin info returned
    /// (ABI version, name, version, vendor and workload types as the ABI bounds them).
    ///
    /// `hooks` receive the plugin's log lines during init, claim and terminate, and the
    /// enter/leave notifications of every call made through this plugin.
    pub fn init(lib: PluginLibrary, hooks: Arc<dyn HostHooks>) -> Result<Plugin, PluginError> {
        const F: &str = "aapi_pgn_init";
        // The log context must outlive any plugin call; the plugin may keep it until terminate,
        // and the library is never unloaded, so it is leaked (a few bytes per init).
        let ctx: &'static CallbackCtx = Box::leak(Box::new(CallbackCtx::new(hooks.clone(), false)));
        let host = aapi_host_info_t {
            struct_size: size_of::<aapi_host_info_t>() as u32,
            abi_major: AAPI_ABI_MAJOR,
            abi_minor: AAPI_ABI_MINOR,
            framework_name: FRAMEWORK_NAME.as_ptr(),
            framework_version: FRAMEWORK_VERSION.as_ptr() as *const c_char,
            callback_ctx: ctx as *const CallbackCtx as *mut c_void,
            log_callback: Some(log_cb),
        };
        // SAFETY: aapi_plugin_info_t is plain data (integers and pointers); all-zero is valid.
        let mut out: aapi_plugin_info_t = unsafe { std::mem::zeroed() };
        out.struct_size = size_of::<aapi_plugin_info_t>() as u32;
        let entry = *lib.entry_points();
        hooks.call_enter(F);
        // SAFETY: both pointers are valid for the call, as the prototype requires.
        let code = unsafe { (entry.pgn_init)(&host, &mut out) };
        hooks.call_leave(F, code);
        if code != AAPI_EOK {
            return Err(PluginError::Call {
                function: F,
                code,
                detail: failure_message(&entry, hooks.as_ref(), F, code),
            });
        }
        aapi_sdk::version::check_compatible(out.abi_major, out.abi_minor).map_err(|e| {
            PluginError::Contract {
                function: F,
                what: format!(
                    "plugin_info reports ABI {}.{}: {e}",
                    out.abi_major, out.abi_minor
                ),
            }
        })?;
        let name = bounded_str(F, "name", out.name, 63, true)?;
        let version = bounded_str(F, "version", out.version, 31, true)?;
        let vendor = bounded_str(F, "vendor", out.vendor, 127, false)?;
        let types = bounded_str(F, "workload_types", out.workload_types, 4096, false)?;
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(&c))
        };
        if !types.split(',').all(token) {
            return Err(PluginError::Contract {
                function: F,
                what: format!(
                    "plugin_info.workload_types {types:?} is not a comma-separated list of [a-z0-9_.-] tokens (LOAD-5)"
                ),
            });
        }
        if out.max_concurrent_objects == 0 {
            return Err(PluginError::Contract {
                function: F,
                what: "plugin_info.max_concurrent_objects is 0".into(),
            });
        }
        let info = PluginInfo {
            abi_major: out.abi_major,
            abi_minor: out.abi_minor,
            name,
            version,
            vendor,
            workload_types: types.split(',').map(str::to_string).collect(),
            capabilities: out.capabilities,
            max_concurrent_objects: out.max_concurrent_objects,
        };
        Ok(Plugin { lib, info, hooks })
    }

    /// Load the library at `path` and initialise it: [`PluginLibrary::open`] then [`Plugin::init`].
    pub fn load(path: &Path, hooks: Arc<dyn HostHooks>) -> Result<Plugin, crate::Error> {
        let lib = PluginLibrary::open(path)?;
        Ok(Plugin::init(lib, hooks)?)
    }

    /// The checked plugin info.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The library this plugin was loaded from.
    pub fn library(&self) -> &PluginLibrary {
        &self.lib
    }

    /// The raw entry points (for callers that must step outside the safe layer).
    pub fn entry_points(&self) -> &EntryPoints {
        self.lib.entry_points()
    }

    /// The hooks given at init.
    pub fn hooks(&self) -> &Arc<dyn HostHooks> {
        &self.hooks
    }

    /// Whether the plugin declares capability bit `cap` (`AAPI_CAP_*`).
    pub fn has_capability(&self, cap: u64) -> bool {
        self.info.capabilities & cap == cap
    }

    /// `aapi_pgn_claim`: `Ok(true)` when the plugin handles `workload_type`, `Ok(false)` on
    /// `AAPI_ENOTCLAIMED`.
    pub fn claim(&self, workload_type: &str) -> Result<bool, PluginError> {
        const F: &str = "aapi_pgn_claim";
        let wt = cstring(F, workload_type.as_bytes())?;
        let e = *self.entry_points();
        // SAFETY: wt is a valid NUL-terminated string for the call.
        let code = observed(self.hooks.as_ref(), F, || unsafe {
            (e.pgn_claim)(wt.as_ptr())
        });
        match code {
            AAPI_EOK => Ok(true),
            AAPI_ENOTCLAIMED => Ok(false),
            _ => Err(self.call_error(self.hooks.as_ref(), F, code)),
        }
    }

    /// `aapi_terminate`.
    pub fn terminate(&self) -> Result<(), PluginError> {
        const F: &str = "aapi_terminate";
        let e = *self.entry_points();
        // SAFETY: takes no arguments.
        let code = observed(self.hooks.as_ref(), F, || unsafe { (e.terminate)() });
        self.check(self.hooks.as_ref(), F, code)
    }

    /// The plugin's message for the last failed call on this thread (`aapi_get_last_error`),
    /// retrying with the size the plugin asks for.
    pub fn last_error(&self) -> String {
        last_error_of(self.entry_points(), self.hooks.as_ref())
    }

    /// `aapi_open_server` for `server` with the session `def`.
    pub fn open_server(&self, server: &str, def: SessionDef) -> Result<Server, PluginError> {
        const F: &str = "aapi_open_server";
        let hooks = def.hooks.clone().unwrap_or_else(|| self.hooks.clone());
        let server_c = cstring(F, server.as_bytes())?;
        let mut strings = Vec::new();
        let mut put = |s: &str| -> Result<*const c_char, PluginError> {
            let c = cstring(F, s.as_bytes())?;
            let p = c.as_ptr();
            strings.push(c);
            Ok(p)
        };
        let job_id = put(&def.job_id)?;
        let backup_host = put(&def.backup_host)?;
        let snapid = put(&def.snapid)?;
        let mut props = Vec::with_capacity(def.properties.len());
        for (k, v) in &def.properties {
            props.push(aapi_property_t {
                key: put(k)?,
                value: put(v)?,
            });
        }
        // Never freed (a few bytes per session), see `CallbackCtx`.
        let ctx: &'static CallbackCtx = Box::leak(Box::new(CallbackCtx::new(hooks.clone(), true)));
        let mut storage = Box::new(SessionStorage {
            _strings: strings,
            props,
            ctx,
            def: None,
        });
        let session = aapi_session_def_t {
            struct_size: size_of::<aapi_session_def_t>() as u32,
            abi_major: AAPI_ABI_MAJOR,
            abi_minor: AAPI_ABI_MINOR,
            sd_operation: def.operation,
            sd_schedtype: def.schedule,
            sd_job_id: job_id,
            sd_backup_host: backup_host,
            sd_snapid: snapid,
            sd_properties: if storage.props.is_empty() {
                std::ptr::null()
            } else {
                storage.props.as_ptr()
            },
            sd_property_count: storage.props.len(),
            sd_call_budget_ms: def.call_budget_ms,
            sd_reserved: 0,
            sd_callback_ctx: storage.ctx as *const CallbackCtx as *mut c_void,
            sd_log_callback: Some(log_cb),
            sd_keepalive_callback: Some(keepalive_cb),
            sd_credential_callback: Some(credential_cb),
        };
        let def_ref: &aapi_session_def_t = storage.def.insert(session);
        let def_ptr = def_ref as *const aapi_session_def_t;
        let mut handle: aapi_server_t = 0;
        let e = *self.entry_points();
        let code = observed(hooks.as_ref(), F, || {
            // SAFETY: all pointers are valid; `storage` (which owns the session def and
            // everything it points to) lives in the returned Server until aapi_close_server
            // returned.
            ctx.within(|| unsafe { (e.open_server)(server_c.as_ptr(), def_ptr, &mut handle) })
        });
        self.check(hooks.as_ref(), F, code)?;
        if handle == 0 {
            return Err(PluginError::Contract {
                function: F,
                what: "returned AAPI_EOK with server handle 0".into(),
            });
        }
        Ok(Server {
            plugin: self.clone(),
            hooks,
            handle,
            storage: Some(storage),
        })
    }

    fn check(
        &self,
        hooks: &dyn HostHooks,
        function: &'static str,
        code: c_int,
    ) -> Result<(), PluginError> {
        if code == AAPI_EOK {
            Ok(())
        } else {
            Err(self.call_error(hooks, function, code))
        }
    }

    fn call_error(
        &self,
        hooks: &dyn HostHooks,
        function: &'static str,
        code: c_int,
    ) -> PluginError {
        PluginError::Call {
            function,
            code,
            detail: failure_message(self.entry_points(), hooks, function, code),
        }
    }
}

fn observed(hooks: &dyn HostHooks, function: &'static str, call: impl FnOnce() -> c_int) -> c_int {
    hooks.call_enter(function);
    let unwinding = AbortOnUnwind;
    let code = call();
    std::mem::forget(unwinding);
    hooks.call_leave(function, code);
    code
}

/// Dropped only when an exception (a C++ `throw`, MEM-3) unwinds out of a plugin call: the
/// process ends at once, still inside the call, so it is reported as a crash in that function;
/// no cleanup calls the plugin again while its state is unknown.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        std::process::abort();
    }
}

/// The plugin's message for the failing call of `function`, told to the hooks too.
fn failure_message(
    entry: &EntryPoints,
    hooks: &dyn HostHooks,
    function: &'static str,
    code: c_int,
) -> String {
    let message = last_error_of(entry, hooks);
    hooks.last_error(function, code, &message);
    message
}

fn last_error_of(entry: &EntryPoints, hooks: &dyn HostHooks) -> String {
    const F: &str = "aapi_get_last_error";
    let mut cap = 512usize;
    for _ in 0..3 {
        let mut buf = vec![0u8; cap];
        let mut size = cap;
        // SAFETY: buf has `size` bytes; size is a valid in/out pointer.
        let code = observed(hooks, F, || unsafe {
            (entry.get_last_error)(buf.as_mut_ptr() as *mut c_char, &mut size)
        });
        match code {
            AAPI_EOK => {
                let end = buf[..size.min(cap)]
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(size.min(cap));
                return String::from_utf8_lossy(&buf[..end]).into_owned();
            }
            AAPI_EBUFSIZE if size > cap && size <= 1 << 20 => cap = size,
            _ => return String::new(),
        }
    }
    String::new()
}

fn cstring(function: &'static str, bytes: &[u8]) -> Result<CString, PluginError> {
    CString::new(bytes).map_err(|_| PluginError::Input {
        function,
        what: format!(
            "argument {:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        ),
    })
}

/// A session definition in Rust terms; [`Plugin::open_server`] turns it into an
/// `aapi_session_def_t` that stays valid until the server is closed.
#[derive(Clone)]
pub struct SessionDef {
    /// `AAPI_OP_*`.
    pub operation: u32,
    /// `AAPI_SCHED_*` (`AAPI_SCHED_FULL` for restores).
    pub schedule: u32,
    /// Job identifier.
    pub job_id: String,
    /// Backup host this session runs on.
    pub backup_host: String,
    /// Snapshot id from discovery, or "".
    pub snapid: String,
    /// Session properties (key, value).
    pub properties: Vec<(String, String)>,
    /// Per-call budget in milliseconds.
    pub call_budget_ms: u32,
    /// Hooks for this session's callbacks and call notifications; the plugin's when `None`.
    pub hooks: Option<Arc<dyn HostHooks>>,
}

impl SessionDef {
    /// A session for `operation` with defaults: full schedule, job id "job", backup host
    /// "localhost", no snapshot, no properties, the default budget.
    pub fn new(operation: u32) -> SessionDef {
        SessionDef {
            operation,
            schedule: AAPI_SCHED_FULL,
            job_id: "job".into(),
            backup_host: "localhost".into(),
            snapid: String::new(),
            properties: Vec::new(),
            call_budget_ms: AAPI_DEFAULT_CALL_BUDGET_MS,
            hooks: None,
        }
    }
}

impl fmt::Debug for SessionDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionDef")
            .field("operation", &self.operation)
            .field("schedule", &self.schedule)
            .field("job_id", &self.job_id)
            .field("backup_host", &self.backup_host)
            .field("snapid", &self.snapid)
            .field("properties", &self.properties)
            .field("call_budget_ms", &self.call_budget_ms)
            .finish()
    }
}

struct SessionStorage {
    _strings: Vec<CString>,
    props: Vec<aapi_property_t>,
    ctx: &'static CallbackCtx,
    def: Option<aapi_session_def_t>,
}

/// An open server session. Closed by [`Server::close`], or on drop (ignoring the result).
pub struct Server {
    plugin: Plugin,
    hooks: Arc<dyn HostHooks>,
    handle: aapi_server_t,
    storage: Option<Box<SessionStorage>>,
}

// SAFETY: the session storage is never mutated after open_server and only read by the plugin;
// moving the owner to another thread does not move the boxed data the plugin points to.
unsafe impl Send for Server {}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("handle", &self.handle)
            .finish()
    }
}

/// Arguments shared by `aapi_discovery` and `aapi_postprocess`.
#[derive(Debug, Clone)]
pub struct DiscoveryArgs<'a> {
    /// Selections (paths or workload-specific names), raw bytes.
    pub selections: &'a [Vec<u8>],
    /// Backup host names; one workload file each.
    pub backup_hosts: &'a [String],
    /// Directory for the workload files.
    pub workload_dir: &'a Path,
    /// Workload file name suffix.
    pub suffix: &'a str,
    /// `AAPI_SCHED_*`.
    pub schedule: u32,
}

struct CArgs {
    _owned: Vec<CString>,
    selections: Vec<*const c_char>,
    hosts: Vec<*const c_char>,
    dir: CString,
    suffix: CString,
}

impl DiscoveryArgs<'_> {
    fn to_c(&self, function: &'static str) -> Result<CArgs, PluginError> {
        use std::os::unix::ffi::OsStrExt;
        let mut owned = Vec::new();
        let mut list = |items: &mut dyn Iterator<Item = &[u8]>| {
            let mut ptrs = Vec::new();
            for s in items {
                let c = cstring(function, s)?;
                ptrs.push(c.as_ptr());
                owned.push(c);
            }
            ptrs.push(std::ptr::null());
            Ok::<_, PluginError>(ptrs)
        };
        let selections = list(&mut self.selections.iter().map(|s| s.as_slice()))?;
        let hosts = list(&mut self.backup_hosts.iter().map(|s| s.as_bytes()))?;
        Ok(CArgs {
            _owned: owned,
            selections,
            hosts,
            dir: cstring(function, self.workload_dir.as_os_str().as_bytes())?,
            suffix: cstring(function, self.suffix.as_bytes())?,
        })
    }
}

fn snapid_to_string(s: &aapi_snapid_t) -> Result<String, PluginError> {
    let bytes: Vec<u8> = s.id.iter().map(|&c| c as u8).collect();
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(PluginError::Contract {
            function: "aapi_discovery",
            what: "snapid is not NUL-terminated".into(),
        })?;
    String::from_utf8(bytes[..end].to_vec()).map_err(|_| PluginError::Contract {
        function: "aapi_discovery",
        what: "snapid is not UTF-8".into(),
    })
}

impl Server {
    /// The raw server handle.
    pub fn handle(&self) -> aapi_server_t {
        self.handle
    }

    /// The plugin this session belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    fn e(&self) -> EntryPoints {
        *self.plugin.entry_points()
    }

    fn call(
        &self,
        function: &'static str,
        call: impl FnOnce() -> c_int,
    ) -> Result<(), PluginError> {
        let code = self.observed(function, call);
        self.plugin.check(self.hooks.as_ref(), function, code)
    }

    /// Run `call`, an entry point of this session, as [`observed`] does.
    fn observed(&self, function: &'static str, call: impl FnOnce() -> c_int) -> c_int {
        match &self.storage {
            Some(storage) => observed(self.hooks.as_ref(), function, || storage.ctx.within(call)),
            None => observed(self.hooks.as_ref(), function, call),
        }
    }

    /// `aapi_get_server_prop`: the `AAPI_SRVC_*` flags.
    pub fn server_prop(&self) -> Result<u64, PluginError> {
        let mut info = aapi_server_info_t {
            struct_size: size_of::<aapi_server_info_t>() as u32,
            ..Default::default()
        };
        let (e, h) = (self.e(), self.handle);
        // SAFETY: info is a valid out-pointer for the call.
        self.call("aapi_get_server_prop", || unsafe {
            (e.get_server_prop)(h, &mut info)
        })?;
        Ok(info.srv_flags)
    }

    /// `aapi_discovery`: returns the snapshot id ("" when none was taken).
    pub fn discovery(&self, args: &DiscoveryArgs<'_>) -> Result<String, PluginError> {
        const F: &str = "aapi_discovery";
        let c = args.to_c(F)?;
        let mut snap = aapi_snapid_t {
            id: [0; AAPI_SNAPID_MAX],
        };
        let (e, h) = (self.e(), self.handle);
        // SAFETY: every pointer is valid and NUL-terminated (arrays NULL-terminated) for the call.
        self.call(F, || unsafe {
            (e.discovery)(
                h,
                c.selections.as_ptr(),
                c.hosts.as_ptr(),
                c.dir.as_ptr(),
                c.suffix.as_ptr(),
                args.schedule,
                &mut snap,
            )
        })?;
        snapid_to_string(&snap)
    }

    /// `aapi_postprocess` with the snapshot id from discovery.
    pub fn postprocess(&self, args: &DiscoveryArgs<'_>, snapid: &str) -> Result<(), PluginError> {
        const F: &str = "aapi_postprocess";
        let c = args.to_c(F)?;
        let mut snap = aapi_snapid_t {
            id: [0; AAPI_SNAPID_MAX],
        };
        if snapid.len() >= AAPI_SNAPID_MAX || snapid.contains('\0') {
            return Err(PluginError::Input {
                function: F,
                what: format!("snapshot id {snapid:?} does not fit aapi_snapid_t"),
            });
        }
        for (d, s) in snap.id.iter_mut().zip(snapid.bytes()) {
            *d = s as c_char;
        }
        let (e, h) = (self.e(), self.handle);
        // SAFETY: as in discovery.
        self.call(F, || unsafe {
            (e.postprocess)(
                h,
                c.selections.as_ptr(),
                c.hosts.as_ptr(),
                c.dir.as_ptr(),
                c.suffix.as_ptr(),
                args.schedule,
                &snap,
            )
        })
    }

    /// `aapi_get_snappath_from_realpath`, growing the buffer when the plugin answers
    /// `AAPI_EBUFSIZE` with the size it needs.
    pub fn snappath(&self, snapname: &str, realpath: &[u8]) -> Result<Vec<u8>, PluginError> {
        const F: &str = "aapi_get_snappath_from_realpath";
        let snap = cstring(F, snapname.as_bytes())?;
        let real = cstring(F, realpath)?;
        let mut cap = realpath.len() + snapname.len() + 256;
        for _ in 0..3 {
            let mut buf = vec![0u8; cap];
            let mut size = cap;
            let (e, h) = (self.e(), self.handle);
            // SAFETY: buf has `size` bytes; all strings are NUL-terminated.
            let code = self.observed(F, || unsafe {
                (e.get_snappath_from_realpath)(
                    h,
                    snap.as_ptr(),
                    real.as_ptr(),
                    buf.as_mut_ptr() as *mut c_char,
                    &mut size,
                )
            });
            match code {
                AAPI_EOK => {
                    if size == 0 || size > cap || buf[size - 1] != 0 {
                        return Err(PluginError::Contract {
                            function: F,
                            what: format!("reported size {size} does not end at the NUL"),
                        });
                    }
                    buf.truncate(size - 1);
                    if buf.contains(&0) {
                        return Err(PluginError::Contract {
                            function: F,
                            what: "the snapshot path contains a NUL byte before its end".into(),
                        });
                    }
                    return Ok(buf);
                }
                AAPI_EBUFSIZE if size > cap => cap = size,
                AAPI_EBUFSIZE => {
                    return Err(PluginError::Contract {
                        function: F,
                        what: format!("AAPI_EBUFSIZE with needed size {size} <= capacity {cap}"),
                    });
                }
                _ => return Err(self.plugin.call_error(self.hooks.as_ref(), F, code)),
            }
        }
        Err(PluginError::Contract {
            function: F,
            what: "kept asking for a larger buffer".into(),
        })
    }

    fn object_handle(
        &self,
        function: &'static str,
        h: aapi_object_t,
    ) -> Result<Object<'_>, PluginError> {
        if h == 0 {
            return Err(PluginError::Contract {
                function,
                what: "returned AAPI_EOK with object handle 0".into(),
            });
        }
        Ok(Object {
            server: self,
            handle: h,
            open: true,
        })
    }

    /// `aapi_open_object` for reading.
    pub fn open_object(&self, path: &[u8]) -> Result<Object<'_>, PluginError> {
        const F: &str = "aapi_open_object";
        let p = cstring(F, path)?;
        let mut obj: aapi_object_t = 0;
        let (e, h) = (self.e(), self.handle);
        // SAFETY: p is NUL-terminated, obj a valid out-pointer.
        self.call(F, || unsafe {
            (e.open_object)(h, p.as_ptr(), AAPI_OPEN_READ, &mut obj)
        })?;
        self.object_handle(F, obj)
    }

    /// `aapi_create_object` with the properties to restore and `AAPI_CREATE_*` flags.
    pub fn create_object(
        &self,
        path: &[u8],
        prop: &aapi_object_prop_t,
        flags: u32,
    ) -> Result<Object<'_>, PluginError> {
        const F: &str = "aapi_create_object";
        let p = cstring(F, path)?;
        let mut prop = *prop;
        prop.struct_size = size_of::<aapi_object_prop_t>() as u32;
        let mut obj: aapi_object_t = 0;
        let (e, h) = (self.e(), self.handle);
        // SAFETY: all pointers valid for the call.
        self.call(F, || unsafe {
            (e.create_object)(h, p.as_ptr(), &prop, flags, &mut obj)
        })?;
        self.object_handle(F, obj)
    }

    /// `aapi_delete_object`.
    pub fn delete_object(&self, path: &[u8]) -> Result<(), PluginError> {
        const F: &str = "aapi_delete_object";
        let p = cstring(F, path)?;
        let (e, h) = (self.e(), self.handle);
        // SAFETY: p is NUL-terminated.
        self.call(F, || unsafe { (e.delete_object)(h, p.as_ptr()) })
    }

    /// `aapi_get_object_prop_byname`.
    pub fn prop_byname(&self, path: &[u8]) -> Result<aapi_object_prop_t, PluginError> {
        const F: &str = "aapi_get_object_prop_byname";
        let p = cstring(F, path)?;
        let mut prop = aapi_object_prop_t {
            struct_size: size_of::<aapi_object_prop_t>() as u32,
            ..Default::default()
        };
        let (e, h) = (self.e(), self.handle);
        // SAFETY: p is NUL-terminated, prop a valid out-pointer.
        self.call(F, || unsafe {
            (e.get_object_prop_byname)(h, p.as_ptr(), &mut prop)
        })?;
        Ok(prop)
    }

    /// `aapi_set_object_utimes`; `None` leaves that time unchanged.
    pub fn set_utimes(
        &self,
        path: &[u8],
        atime: Option<aapi_time_t>,
        mtime: Option<aapi_time_t>,
    ) -> Result<(), PluginError> {
        const F: &str = "aapi_set_object_utimes";
        let p = cstring(F, path)?;
        let ap = atime.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        let mp = mtime.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        let (e, h) = (self.e(), self.handle);
        // SAFETY: pointers are NULL or valid for the call.
        self.call(F, || unsafe {
            (e.set_object_utimes)(h, p.as_ptr(), ap, mp)
        })
    }

    /// `aapi_restore_preprocess`.
    pub fn restore_preprocess(
        &self,
        target_root: &[u8],
        total_bytes: u64,
        object_count: u64,
    ) -> Result<(), PluginError> {
        const F: &str = "aapi_restore_preprocess";
        let root = cstring(F, target_root)?;
        let info = aapi_restore_info_t {
            struct_size: size_of::<aapi_restore_info_t>() as u32,
            reserved: 0,
            target_root: root.as_ptr(),
            total_bytes,
            object_count,
        };
        let (e, h) = (self.e(), self.handle);
        // SAFETY: info and the string it points to are valid for the call.
        self.call(F, || unsafe { (e.restore_preprocess)(h, &info) })
    }

    /// `aapi_restore_postprocess` with the restore's final status.
    pub fn restore_postprocess(&self, status: c_int) -> Result<(), PluginError> {
        let (e, h) = (self.e(), self.handle);
        // SAFETY: plain values.
        self.call("aapi_restore_postprocess", || unsafe {
            (e.restore_postprocess)(h, status)
        })
    }

    /// `aapi_close_server`. The session definition is released after the call returns.
    pub fn close(mut self) -> Result<(), PluginError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), PluginError> {
        if self.storage.is_none() {
            return Ok(());
        }
        let (e, h) = (self.e(), self.handle);
        // SAFETY: plain value.
        let result = self.call("aapi_close_server", || unsafe { (e.close_server)(h) });
        if let Some(storage) = self.storage.take() {
            storage.ctx.closed.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

/// An open (read) or created (write) object. Closed by [`Object::close`], or on drop.
pub struct Object<'s> {
    server: &'s Server,
    handle: aapi_object_t,
    open: bool,
}

impl fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Object<'_> {
    /// The raw object handle.
    pub fn handle(&self) -> aapi_object_t {
        self.handle
    }

    /// `aapi_read_object` into `buf`: the byte count, 0 at end of data.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, PluginError> {
        const F: &str = "aapi_read_object";
        let mut n = 0usize;
        let (e, h) = (self.server.e(), self.handle);
        // SAFETY: buf is valid for buf.len() bytes, n a valid out-pointer.
        self.server.call(F, || unsafe {
            (e.read_object)(h, buf.as_mut_ptr() as *mut c_void, buf.len(), &mut n)
        })?;
        if n > buf.len() {
            return Err(PluginError::Contract {
                function: F,
                what: format!("reported {n} bytes read into a buffer of {}", buf.len()),
            });
        }
        Ok(n)
    }

    /// `aapi_write_object` of all of `data` (the ABI has no short writes).
    pub fn write(&mut self, data: &[u8]) -> Result<(), PluginError> {
        let (e, h) = (self.server.e(), self.handle);
        // SAFETY: data is valid for data.len() bytes.
        self.server.call("aapi_write_object", || unsafe {
            (e.write_object)(h, data.as_ptr() as *const c_void, data.len())
        })
    }

    /// `aapi_flush`.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        let (e, h) = (self.server.e(), self.handle);
        // SAFETY: plain value.
        self.server.call("aapi_flush", || unsafe { (e.flush)(h) })
    }

    /// `aapi_get_object_prop`.
    pub fn prop(&self) -> Result<aapi_object_prop_t, PluginError> {
        let mut prop = aapi_object_prop_t {
            struct_size: size_of::<aapi_object_prop_t>() as u32,
            ..Default::default()
        };
        let (e, h) = (self.server.e(), self.handle);
        // SAFETY: prop is a valid out-pointer.
        self.server.call("aapi_get_object_prop", || unsafe {
            (e.get_object_prop)(h, &mut prop)
        })?;
        Ok(prop)
    }

    /// Give up the handle without closing it: for a created object whose data turned out bad,
    /// which must not become visible; `aapi_restore_postprocess` with a failure status (or
    /// `aapi_close_server`) then disposes of it.
    pub fn abandon(mut self) {
        self.open = false;
    }

    /// `aapi_close_object`. The handle is gone afterwards even when the call fails.
    pub fn close(mut self) -> Result<(), PluginError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), PluginError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let (e, h) = (self.server.e(), self.handle);
        // SAFETY: plain value.
        self.server
            .call("aapi_close_object", || unsafe { (e.close_object)(h) })
    }
}

impl Drop for Object<'_> {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_outside_the_table_keeps_its_number() {
        let e = |code| {
            PluginError::Call {
                function: "aapi_read_object",
                code,
                detail: String::new(),
            }
            .to_string()
        };
        assert_eq!(
            e(-7),
            "aapi_read_object returned -7, which is no AAPI_E* code"
        );
        assert!(e(AAPI_EIO).starts_with("aapi_read_object returned AAPI_EIO ("));
    }
}
