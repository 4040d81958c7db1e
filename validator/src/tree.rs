//! Reading a directory tree (an unpacked package, an installation, or the files to pack)
//! without following any symlink inside it.

use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::hash;
use crate::manifest::{MANIFEST_PATH, META_DIR, SIGNATURE_PATH};
use crate::paths;
use crate::scan::{Content, Item, ItemKind, Limits, MAX_MANIFEST, MAX_SIGNATURE, Meta, Scan};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a tree is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The files to pack: a `.aapi` directory is refused.
    Pack,
    /// A package tree or installation: `.aapi` holds the manifest and signature.
    Verify,
}

/// Scan the tree at `root` (the root itself may be reached through a symlink; nothing below
/// it is followed).
pub fn scan(root: &Path, limits: &Limits, purpose: Purpose) -> Result<Scan> {
    let meta = fs::metadata(root).map_err(|e| Error::read(root, e))?;
    if !meta.is_dir() {
        let next = match purpose {
            Purpose::Pack => "pack takes the directory holding the plugin's files",
            Purpose::Verify => {
                "--installed takes an installation directory; verify a package file without --installed"
            }
        };
        return Err(Error::new(format!(
            "{} is not a directory; {next}",
            root.display()
        )));
    }
    let mut w = Walker {
        limits,
        purpose,
        scan: Scan {
            complete: true,
            ..Scan::default()
        },
        count: 0,
        total: 0,
    };
    if purpose == Purpose::Verify {
        w.scan.meta_modes.push(Meta {
            path: ".".into(),
            mode: meta.mode() & 0o7777,
            owner: Some((meta.uid(), meta.gid())),
        });
    }
    w.dir(root, "")?;
    Ok(w.scan)
}

struct Walker<'a> {
    limits: &'a Limits,
    purpose: Purpose,
    scan: Scan,
    count: u64,
    total: u64,
}

impl Walker<'_> {
    /// Visit the directory `abs`, whose package path is `rel` ("" for the root).
    fn dir(&mut self, abs: &Path, rel: &str) -> Result<()> {
        for name in sorted_names(abs)? {
            if !self.scan.complete {
                return Ok(());
            }
            let child = abs.join(&name);
            let mut raw = rel.as_bytes().to_vec();
            if !rel.is_empty() {
                raw.push(b'/');
            }
            raw.extend_from_slice(name.as_bytes());
            // The .aapi directory is not payload (its files have fixed bounds).
            if raw != META_DIR.as_bytes() {
                self.count += 1;
            }
            if self.count > self.limits.max_entries {
                self.scan.complete = false;
                self.scan.findings.push(Finding::whole(
                    Code::LIMIT_ENTRIES,
                    format!(
                        "more than {} entries (files, directories and symlinks besides the manifest and signature)",
                        self.limits.max_entries
                    ),
                ));
                return Ok(());
            }
            let md = fs::symlink_metadata(&child).map_err(|e| Error::read(&child, e))?;
            let path = match paths::check(&raw, false) {
                Ok(p) => p,
                Err((code, why)) => {
                    let shown = String::from_utf8_lossy(&raw).escape_debug().to_string();
                    self.scan.findings.push(Finding::at(code, shown, why));
                    continue;
                }
            };
            let mode = md.mode() & 0o7777;
            let owner = Some((md.uid(), md.gid()));
            if path == META_DIR {
                match self.purpose {
                    Purpose::Pack => {
                        return Err(Error::new(format!(
                            "{} holds a .aapi directory: it is a package tree already; pack the plugin's own files",
                            abs.display()
                        )));
                    }
                    Purpose::Verify => {
                        self.meta(&child, &md)?;
                        continue;
                    }
                }
            }
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                ItemKind::Dir
            } else if ft.is_file() {
                let size = md.len();
                if size > self.limits.max_file_size {
                    self.scan.complete = false;
                    self.scan.findings.push(Finding::at(
                        Code::LIMIT_FILE_SIZE,
                        path,
                        format!(
                            "{size} bytes, more than the limit of {}",
                            self.limits.max_file_size
                        ),
                    ));
                    return Ok(());
                }
                self.total = self.total.saturating_add(size);
                if self.total > self.limits.max_total_size {
                    self.scan.complete = false;
                    self.scan.findings.push(Finding::at(
                        Code::LIMIT_TOTAL_SIZE,
                        path,
                        format!(
                            "the files add up to more than the limit of {} bytes (the manifest and signature not counted)",
                            self.limits.max_total_size
                        ),
                    ));
                    return Ok(());
                }
                self.installed_checks(&child, &path, &md)?;
                ItemKind::File {
                    size,
                    content: Content::Path(child.clone()),
                }
            } else if ft.is_symlink() {
                let t = fs::read_link(&child).map_err(|e| Error::read(&child, e))?;
                match t.to_str() {
                    Some(t) if !t.is_empty() && !t.chars().any(paths::is_control_or_format) => {
                        ItemKind::Symlink {
                            target: t.to_string(),
                        }
                    }
                    _ => {
                        self.scan.findings.push(Finding::at(
                            Code::PATH_INVALID,
                            path,
                            "symlink target is empty, not UTF-8 or has control or format characters",
                        ));
                        continue;
                    }
                }
            } else {
                self.scan.findings.push(Finding::at(
                    Code::SPECIAL_FILE,
                    path,
                    "a device file, fifo or socket",
                ));
                continue;
            };
            let is_dir = matches!(kind, ItemKind::Dir);
            self.scan.items.push(Item {
                path: path.clone(),
                kind,
                mode,
                owner,
            });
            if is_dir {
                self.dir(&child, &path)?;
            }
        }
        Ok(())
    }

    /// What only an installation must not have, for the regular file `abs` (package path
    /// `path`): another name (a hard link, which may be outside the installation, where it can
    /// be written), or a file capability, which grants privileges when the file is run.
    fn installed_checks(&mut self, abs: &Path, path: &str, md: &fs::Metadata) -> Result<()> {
        if self.purpose != Purpose::Verify {
            return Ok(());
        }
        if md.nlink() > 1 {
            self.scan.installed_findings.push(Finding::at(
                Code::ENTRY_TYPE,
                path,
                format!(
                    "a hard link: the file has {} names, and another name, perhaps outside the installation, changes it too; reinstall the package to give it a file of its own",
                    md.nlink()
                ),
            ));
        }
        if has_capability(abs).map_err(|e| Error::read(abs, e))? {
            self.scan.installed_findings.push(Finding::at(
                Code::FILE_CAPABILITY,
                path,
                "has a file capability (the security.capability attribute, `getcap` shows it): running it grants privileges, as a setuid bit would; remove it (`setcap -r`) or reinstall the package",
            ));
        }
        Ok(())
    }

    /// The `.aapi` directory of a package tree.
    fn meta(&mut self, abs: &Path, md: &fs::Metadata) -> Result<()> {
        if !md.is_dir() {
            self.scan.findings.push(Finding::at(
                Code::PATH_RESERVED,
                META_DIR,
                "must be a directory (not a symlink or file)",
            ));
            return Ok(());
        }
        self.scan.meta_modes.push(Meta {
            path: META_DIR.into(),
            mode: md.mode() & 0o7777,
            owner: Some((md.uid(), md.gid())),
        });
        for name in sorted_names(abs)? {
            let child = abs.join(&name);
            let path = format!("{META_DIR}/{}", name.to_string_lossy().escape_debug());
            let md = fs::symlink_metadata(&child).map_err(|e| Error::read(&child, e))?;
            let bound = match path.as_str() {
                MANIFEST_PATH if md.is_file() => MAX_MANIFEST,
                SIGNATURE_PATH if md.is_file() => MAX_SIGNATURE,
                _ => {
                    self.scan.findings.push(Finding::at(
                        Code::PATH_RESERVED,
                        path,
                        "only .aapi/manifest.json and .aapi/manifest.sig (regular files) may be in .aapi",
                    ));
                    continue;
                }
            };
            if md.len() > bound {
                self.scan.findings.push(Finding::at(
                    Code::LIMIT_METADATA,
                    path,
                    format!("{} bytes, more than {bound}", md.len()),
                ));
                continue;
            }
            self.installed_checks(&child, &path, &md)?;
            let mut bytes = Vec::new();
            hash::open_nofollow(&child)
                .and_then(|f| f.take(bound + 1).read_to_end(&mut bytes))
                .map_err(|e| Error::read(&child, e))?;
            self.scan.meta_modes.push(Meta {
                path: path.clone(),
                mode: md.mode() & 0o7777,
                owner: Some((md.uid(), md.gid())),
            });
            if path == MANIFEST_PATH {
                self.scan.manifest = Some(bytes);
            } else {
                self.scan.signature = Some(bytes);
            }
        }
        Ok(())
    }
}

/// Whether the file `abs` (not followed if a symlink) carries a file capability: the
/// `security.capability` extended attribute. A file system without extended attributes has
/// none.
fn has_capability(abs: &Path) -> std::io::Result<bool> {
    let c = std::ffi::CString::new(abs.as_os_str().as_bytes())?;
    // SAFETY: both names are NUL-terminated strings that outlive the call; with a null buffer
    // of size 0 the call only returns the attribute's size and writes nothing.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if n >= 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

/// The names in the directory `abs`, sorted (so a scan visits entries in a stable order).
fn sorted_names(abs: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<_> = fs::read_dir(abs)
        .map_err(|e| Error::read(abs, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::read(abs, e))?;
    names.sort();
    Ok(names)
}
