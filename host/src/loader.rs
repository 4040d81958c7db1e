//! Loading plugin libraries: the static ABI marker, the 22 entry points, and claim.
//!
//! [`PluginLibrary::open`] loads a shared library (and never unloads it: a plugin may leave threads
//! or callbacks behind, and `dlclose` would pull the code from under them), checks the
//! `aapi_abi_marker` data symbol before any plugin function runs, and resolves every entry point
//! of [`ENTRY_POINTS`], naming each missing one. [`find_claiming`] scans a plugin directory for the
//! plugin that claims a workload type.

use crate::client::{HostHooks, Plugin};
use aapi_sdk::abi::*;
use aapi_sdk::version::{self, ENTRY_POINTS, MARKER_SIZE, MARKER_SYMBOL};
use libloading::Library;
use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

macro_rules! entry_points {
    ($($field:ident: $ty:ty = $sym:literal,)*) => {
        /// The resolved entry points of a plugin, as raw C function pointers.
        ///
        /// Calling them is `unsafe`: each must be called as its prototype in `aapi_sdk::abi`
        /// documents. [`crate::client`] wraps every one of them safely; the raw pointers are public
        /// for tools that must call a plugin in ways the safe layer forbids (conformance checks).
        #[derive(Clone, Copy, Debug)]
        pub struct EntryPoints {
            $(
                #[doc = concat!("`", $sym, "`")]
                pub $field: $ty,
            )*
        }

        impl EntryPoints {
            /// The symbol names in field order.
            pub const NAMES: &'static [&'static str] = &[$($sym,)*];

            fn resolve(lib: &'static Library) -> Result<Self, libloading::Error> {
                Ok(EntryPoints {
                    $(
                        // SAFETY: the symbol is declared by the ABI with exactly this type.
                        $field: *unsafe { lib.get::<$ty>($sym.as_bytes())? },
                    )*
                })
            }
        }
    };
}

entry_points! {
    pgn_init: aapi_pgn_init_fn = "aapi_pgn_init",
    pgn_claim: aapi_pgn_claim_fn = "aapi_pgn_claim",
    open_server: aapi_open_server_fn = "aapi_open_server",
    close_server: aapi_close_server_fn = "aapi_close_server",
    get_server_prop: aapi_get_server_prop_fn = "aapi_get_server_prop",
    discovery: aapi_discovery_fn = "aapi_discovery",
    postprocess: aapi_postprocess_fn = "aapi_postprocess",
    get_snappath_from_realpath: aapi_get_snappath_from_realpath_fn = "aapi_get_snappath_from_realpath",
    open_object: aapi_open_object_fn = "aapi_open_object",
    create_object: aapi_create_object_fn = "aapi_create_object",
    delete_object: aapi_delete_object_fn = "aapi_delete_object",
    read_object: aapi_read_object_fn = "aapi_read_object",
    write_object: aapi_write_object_fn = "aapi_write_object",
    flush: aapi_flush_fn = "aapi_flush",
    close_object: aapi_close_object_fn = "aapi_close_object",
    get_object_prop: aapi_get_object_prop_fn = "aapi_get_object_prop",
    get_object_prop_byname: aapi_get_object_prop_byname_fn = "aapi_get_object_prop_byname",
    set_object_utimes: aapi_set_object_utimes_fn = "aapi_set_object_utimes",
    restore_preprocess: aapi_restore_preprocess_fn = "aapi_restore_preprocess",
    restore_postprocess: aapi_restore_postprocess_fn = "aapi_restore_postprocess",
    terminate: aapi_terminate_fn = "aapi_terminate",
    get_last_error: aapi_get_last_error_fn = "aapi_get_last_error",
}

/// Why a plugin library cannot be used. Every variant names the file.
#[derive(Debug)]
pub enum LoadError {
    /// The file does not exist or is not readable.
    NotFound {
        /// The plugin path.
        path: PathBuf,
    },
    /// The dynamic loader refused the file (not a shared library, wrong architecture, missing
    /// dependency).
    Dlopen {
        /// The plugin path.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The `aapi_abi_marker` data symbol is missing: not an aapi plugin (LOAD-2).
    NoMarker {
        /// The plugin path.
        path: PathBuf,
    },
    /// The marker is present but malformed.
    BadMarker {
        /// The plugin path.
        path: PathBuf,
        /// What is wrong.
        error: version::MarkerError,
    },
    /// The plugin's ABI version is not usable by this framework (ABI-2).
    Abi {
        /// The plugin path.
        path: PathBuf,
        /// The mismatch.
        error: version::AbiMismatch,
    },
    /// Required entry points are missing (LOAD-3); every missing name is listed.
    MissingSymbols {
        /// The plugin path.
        path: PathBuf,
        /// The missing symbol names, in the order of `ENTRY_POINTS`.
        missing: Vec<&'static str>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { path } => {
                write!(f, "{}: no such plugin file", path.display())
            }
            LoadError::Dlopen { path, message } => {
                write!(f, "{}: cannot load: {message}", path.display())
            }
            LoadError::NoMarker { path } => write!(
                f,
                "{}: not an aapi plugin: the `{MARKER_SYMBOL}` symbol is missing (define it with AAPI_DEFINE_ABI_MARKER())",
                path.display()
            ),
            LoadError::BadMarker { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::Abi { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::MissingSymbols { path, missing } => write!(
                f,
                "{}: missing required entry point{} {}",
                path.display(),
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// A loaded plugin library whose marker and symbols checked out. No plugin function has run yet.
#[derive(Clone, Copy)]
pub struct PluginLibrary {
    path: &'static Path,
    marker: aapi_abi_marker_t,
    entry: EntryPoints,
}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("marker", &self.marker)
            .finish()
    }
}

impl PluginLibrary {
    /// Load the library at `path`, check its ABI marker, then resolve all entry points.
    ///
    /// The library stays loaded for the life of the process, even on error after `dlopen`.
    /// Loading runs the library's initialisers (as any `dlopen` does) but no `aapi_*` function.
    pub fn open(path: &Path) -> Result<PluginLibrary, LoadError> {
        let owned = path.to_path_buf();
        if !path.is_file() {
            return Err(LoadError::NotFound { path: owned });
        }
        // A path without a slash would make dlopen search the library path instead of this file.
        let load_path = if path.is_absolute() || path.components().count() > 1 {
            path.to_path_buf()
        } else {
            Path::new(".").join(path)
        };
        // SAFETY: loading a plugin runs its initialisers; that is the contract of a plugin
        // (LOAD-1). The library is leaked below and never unloaded.
        let lib = unsafe { Library::new(&load_path) }.map_err(|e| LoadError::Dlopen {
            path: owned.clone(),
            // The dynamic loader's own reason (e.g. "invalid ELF header") is the error's source.
            message: match std::error::Error::source(&e) {
                Some(why) => format!("{e}: {why}"),
                None => e.to_string(),
            },
        })?;
        let lib: &'static Library = Box::leak(Box::new(lib));
        let marker = read_marker(lib, &owned)?;
        let missing: Vec<&'static str> = ENTRY_POINTS
            .iter()
            .copied()
            // SAFETY: only the symbol's presence is checked; the pointer is never used.
            .filter(|name| unsafe { lib.get::<*const c_void>(name.as_bytes()) }.is_err())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::MissingSymbols {
                path: owned,
                missing,
            });
        }
        let entry = EntryPoints::resolve(lib).map_err(|e| LoadError::Dlopen {
            path: owned.clone(),
            message: e.to_string(),
        })?;
        Ok(PluginLibrary {
            path: Box::leak(owned.into_boxed_path()),
            marker,
            entry,
        })
    }

    /// The file the library was loaded from.
    pub fn path(&self) -> &'static Path {
        self.path
    }

    /// The plugin's static ABI marker.
    pub fn marker(&self) -> aapi_abi_marker_t {
        self.marker
    }

    /// The raw entry points.
    pub fn entry_points(&self) -> &EntryPoints {
        &self.entry
    }

    /// Run the handshake (`aapi_pgn_init`) and return the initialised plugin; see [`Plugin::init`].
    pub fn init(&self, hooks: Arc<dyn HostHooks>) -> Result<Plugin, crate::client::PluginError> {
        Plugin::init(*self, hooks)
    }
}

fn read_marker(lib: &'static Library, path: &Path) -> Result<aapi_abi_marker_t, LoadError> {
    // SAFETY: for a data symbol, the symbol's value is its address; we only take the address.
    let sym = unsafe { lib.get::<*const u8>(MARKER_SYMBOL.as_bytes()) };
    let addr: *const u8 = match sym {
        Ok(s) => *s,
        Err(_) => {
            return Err(LoadError::NoMarker {
                path: path.to_path_buf(),
            });
        }
    };
    if addr.is_null() {
        return Err(LoadError::NoMarker {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = [0u8; MARKER_SIZE];
    // SAFETY: the symbol is a loaded data object of at least MARKER_SIZE bytes by the ABI
    // (a smaller object would be a broken plugin, and the marker's own size field is checked
    // below); the copy is unaligned-safe.
    unsafe { std::ptr::copy_nonoverlapping(addr, bytes.as_mut_ptr(), MARKER_SIZE) };
    let marker =
        aapi_abi_marker_t::from_bytes(&bytes, cfg!(target_endian = "little")).map_err(|error| {
            LoadError::BadMarker {
                path: path.to_path_buf(),
                error,
            }
        })?;
    version::check_compatible(marker.abi_major, marker.abi_minor).map_err(|error| {
        LoadError::Abi {
            path: path.to_path_buf(),
            error,
        }
    })?;
    Ok(marker)
}

/// The manifest an `aapi-validator install` leaves in its destination.
const INSTALL_MANIFEST: &str = ".aapi/manifest.json";

/// The entry library of an installed plugin package: `dir/<entry>` as `dir`'s install manifest
/// names it. `None` when `dir` holds no install manifest; an error when the manifest is
/// unreadable or its entry is not a relative path inside `dir`.
pub fn installed_entry(dir: &Path) -> Option<Result<PathBuf, String>> {
    if !dir.is_dir() {
        return None;
    }
    let manifest = dir.join(INSTALL_MANIFEST);
    let bytes = match std::fs::read(&manifest) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("{}: {e}", manifest.display()))),
    };
    let entry = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["entry"].as_str().map(str::to_string));
    Some(match entry {
        Some(e)
            if !e.is_empty()
                && Path::new(&e)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))) =>
        {
            Ok(dir.join(e))
        }
        _ => Err(format!(
            "{}: no usable \"entry\" (a relative path of the installed library); check the installation with `aapi-validator verify --installed {}`",
            manifest.display(),
            dir.display()
        )),
    })
}

/// What [`find_claiming`] saw for each library in the directory.
#[derive(Debug)]
pub struct ClaimReport {
    /// The plugin that claims the workload type, if any (the first in file-name order).
    pub chosen: Option<Plugin>,
    /// Every other library and why it was not chosen (load error, init error, or the claim code),
    /// each message naming the library.
    pub rejected: Vec<(PathBuf, String)>,
}

/// Load each `*.so` in `dir` (in file-name order), initialise it, and pick the first whose
/// `aapi_pgn_claim(workload_type)` returns `AAPI_EOK`. Plugins that do not claim it are
/// terminated again; the chosen one stays initialised.
pub fn find_claiming(
    dir: &Path,
    workload_type: &str,
    hooks: Arc<dyn HostHooks>,
) -> std::io::Result<ClaimReport> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    let mut report = ClaimReport {
        chosen: None,
        rejected: Vec::new(),
    };
    for file in files {
        if report.chosen.is_some() {
            break;
        }
        let plugin = match PluginLibrary::open(&file) {
            Ok(lib) => match lib.init(hooks.clone()) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("{}: {e}", file.display());
                    report.rejected.push((file, why));
                    continue;
                }
            },
            Err(e) => {
                report.rejected.push((file, e.to_string()));
                continue;
            }
        };
        match plugin.claim(workload_type) {
            Ok(true) => report.chosen = Some(plugin),
            Ok(false) => {
                let _ = plugin.terminate();
                let why = format!(
                    "{}: does not claim workload type {workload_type:?}",
                    file.display()
                );
                report.rejected.push((file, why));
            }
            Err(e) => {
                let _ = plugin.terminate();
                let why = format!("{}: {e}", file.display());
                report.rejected.push((file, why));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_fields_match_the_abi_list() {
        assert_eq!(EntryPoints::NAMES, &ENTRY_POINTS[..]);
    }

    #[test]
    fn missing_file_is_named() {
        let err = PluginLibrary::open(Path::new("/nonexistent/libx.so")).unwrap_err();
        assert!(matches!(err, LoadError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/libx.so"));
    }

    #[test]
    fn non_library_is_refused_by_dlopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("libjunk.so");
        std::fs::write(&p, b"not an ELF file").unwrap();
        let err = PluginLibrary::open(&p).unwrap_err();
        assert!(matches!(err, LoadError::Dlopen { .. }), "{err}");
    }
}
