//! `verify`: judge a package or a tree against its manifest.

use crate::archive::Package;
use crate::elf;
use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::hash::{self, Job};
use crate::manifest::{Kind, MANIFEST_PATH, META_DIR, Manifest, SIGNATURE_PATH, hex};
use crate::map::Map;
use crate::paths::{self, Node};
use crate::scan::{Content, Item, ItemKind, Limits, Scan};
use crate::sign::{self, PublicKey};
use crate::tree::{self, Purpose};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::Path;

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Bounds on sizes and counts.
    pub limits: Limits,
    /// Trusted keys; when any is given, a valid signature by one of them is required.
    pub keys: Vec<PublicKey>,
    /// The tree is an installation: also check that everything is owned like its root, and
    /// that no file has a second name (hard link) or a file capability.
    pub installed: bool,
    /// The architecture the package must target.
    pub arch: Target,
}

/// The architecture a package must target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Target {
    /// Any: the package is only reported (verifying packages built for other hosts).
    #[default]
    Any,
    /// This host's ([`elf::host_arch`]): the package is to be used here.
    Host,
    /// The architecture of this name (`--target-arch`).
    Named(&'static str),
}

impl Target {
    /// The finding when a package for `arch` does not fit.
    fn finding(self, arch: &str) -> Option<Finding> {
        let (want, whose) = match self {
            Target::Any => return None,
            Target::Host => (elf::host_arch(), "this host is"),
            Target::Named(a) => (a, "--target-arch says"),
        };
        (arch != want).then(|| {
            let next = match self {
                Target::Host => format!(
                    ": the framework here cannot load it; use it on a host of that architecture, or give --target-arch {arch} to handle it here for such a host"
                ),
                _ => String::new(),
            };
            Finding::whole(
                Code::TARGET_ARCH,
                format!("the package is built for {arch}, {whose} {want}{next}"),
            )
        })
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was verified (as given); after an install, the installation directory.
    pub subject: String,
    /// The manifest, when it parsed.
    pub manifest: Option<Manifest>,
    /// SHA-256 of the manifest's bytes, in hex.
    pub manifest_sha256: Option<String>,
    /// The signature's status.
    pub signature: sign::Status,
    /// Everything wrong, whole-package findings first, then by path.
    pub findings: Vec<Finding>,
    /// The manifest's bytes.
    #[serde(skip)]
    pub manifest_bytes: Option<Vec<u8>>,
    /// The signature's bytes.
    #[serde(skip)]
    pub signature_bytes: Option<Vec<u8>>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verify a package file or, for a directory, a package tree.
pub fn verify(path: &Path, opts: &Options) -> Result<Report> {
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    if meta.is_dir() {
        verify_tree(path, opts)
    } else {
        verify_package(path, opts)
    }
}

/// Verify a package file.
pub fn verify_package(path: &Path, opts: &Options) -> Result<Report> {
    let pkg = Package::open(path)?;
    let scan = pkg.scan(path, &opts.limits)?;
    judge(path, scan, Some(pkg.file()), opts, None)
}

/// Most passes over a tree that is replaced while it is verified.
const TREE_PASSES: u32 = 10;

/// Verify a package tree (unpacked or installed). The tree is read by path: when `path` is
/// replaced while it is read (an install swaps in a new installation), what was read may mix
/// two trees, so the tree is read again, until one pass saw one tree from start to end.
pub fn verify_tree(path: &Path, opts: &Options) -> Result<Report> {
    for pass in 1..=TREE_PASSES {
        let root = match Root::open(path) {
            Ok(r) => r,
            // Between the two renames of an install without RENAME_EXCHANGE, `path` is
            // missing for a moment.
            Err(e) if pass > 1 && e.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(Error::read(path, e)),
        };
        let report = tree::scan(path, &opts.limits, Purpose::Verify).and_then(|scan| {
            let root_owner = scan.meta_modes.first().and_then(|m| m.owner);
            judge(path, scan, None, opts, root_owner)
        });
        if root.still_at(path) {
            return report;
        }
    }
    Err(Error::new(format!(
        "{} was replaced {TREE_PASSES} times while it was verified (installs into it are running); nothing is known about it: run verify again when they have finished",
        path.display()
    )))
}

/// The root directory of a tree, held open while the tree is read: while it is open, its
/// inode number cannot be reused by another directory.
struct Root {
    _dir: File,
    id: (u64, u64, i64, i64),
}

impl Root {
    fn open(path: &Path) -> std::io::Result<Root> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a fifo given as the tree must not hang the open.
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        let m = dir.metadata()?;
        Ok(Root {
            _dir: dir,
            id: (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether `path` is still this directory, unchanged in itself: not replaced by another,
    /// not renamed away and back (a rename changes its ctime), no entry of its own added or
    /// removed.
    fn still_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .is_ok_and(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()) == self.id)
    }
}

/// Mode findings for `path` with permission bits `mode`.
pub(crate) fn mode_findings(path: &str, mode: u32) -> Vec<Finding> {
    let mut out = Vec::new();
    if mode & 0o6000 != 0 {
        let which = match mode & 0o6000 {
            0o4000 => "setuid",
            0o2000 => "setgid",
            _ => "setuid and setgid",
        };
        out.push(Finding::at(
            Code::MODE_SETID,
            path,
            format!("mode {mode:04o} has the {which} bit"),
        ));
    }
    if mode & 0o1000 != 0 {
        out.push(Finding::at(
            Code::MODE_STICKY,
            path,
            format!("mode {mode:04o} has the sticky bit"),
        ));
    }
    if mode & 0o022 != 0 {
        let which = match mode & 0o022 {
            0o020 => "group-writable",
            0o002 => "world-writable",
            _ => "group- and world-writable",
        };
        out.push(Finding::at(
            Code::MODE_WRITABLE,
            path,
            format!("mode {mode:04o} is {which}"),
        ));
    }
    out
}

/// Hash what the scan did not hash yet, in parallel. Returns digests by item index.
pub(crate) fn digests(
    subject: &Path,
    scan: &Scan,
    file: Option<&File>,
    findings: &mut Vec<Finding>,
) -> Result<Vec<Option<[u8; 32]>>> {
    let mut jobs = Vec::new();
    let mut at = Vec::new();
    for (i, item) in scan.items.iter().enumerate() {
        if let ItemKind::File { size, content } = &item.kind {
            match content {
                Content::Region(offset) => jobs.push(Job::Region {
                    offset: *offset,
                    len: *size,
                }),
                Content::Path(p) => jobs.push(Job::Path(p.clone())),
                Content::Hashed(..) => continue,
            }
            at.push(i);
        }
    }
    let results = hash::all(file, &jobs);
    let mut out: Vec<Option<[u8; 32]>> = scan
        .items
        .iter()
        .map(|it| match &it.kind {
            ItemKind::File {
                content: Content::Hashed(d, _),
                ..
            } => Some(*d),
            _ => None,
        })
        .collect();
    for ((i, job), r) in at.into_iter().zip(&jobs).zip(results) {
        let item = &scan.items[i];
        let ItemKind::File { size, .. } = item.kind else {
            unreachable!("only files are hashed")
        };
        match r {
            Ok((d, n)) if n == size => out[i] = Some(d),
            // A tree's file may have changed because the scan stopped early; a package's
            // region whose header was read but whose data is not all there is cut, whatever
            // else stopped the scan.
            Ok(_) if !scan.complete && matches!(job, Job::Path(_)) => {}
            Ok((_, n)) => match job {
                Job::Region { .. } => findings.push(Finding::at(
                    Code::ARCHIVE_TRUNCATED,
                    &item.path,
                    format!("only {n} of {size} bytes are in the archive"),
                )),
                Job::Path(_) => findings.push(Finding::at(
                    Code::FILE_SIZE,
                    &item.path,
                    format!("changed size while being read ({n} bytes, {size} at first)"),
                )),
            },
            Err(e) => {
                return Err(match job {
                    Job::Path(p) => Error::read(p, e),
                    Job::Region { .. } => Error::read(subject, e),
                });
            }
        }
    }
    Ok(out)
}

/// Judge a scan: manifest, modes, symlinks, contents against the manifest, the entry library,
/// the signature.
pub(crate) fn judge(
    subject: &Path,
    mut scan: Scan,
    file: Option<&File>,
    opts: &Options,
    root_owner: Option<(u32, u32)>,
) -> Result<Report> {
    let mut out = std::mem::take(&mut scan.findings);
    let digests = digests(subject, &scan, file, &mut out)?;
    let mut report = Report {
        subject: subject.display().to_string(),
        manifest: None,
        manifest_sha256: None,
        signature: sign::Status::None,
        findings: Vec::new(),
        manifest_bytes: None,
        signature_bytes: None,
    };

    for item in &scan.items {
        if !matches!(item.kind, ItemKind::Symlink { .. }) {
            out.extend(mode_findings(&item.path, item.mode));
        }
    }
    for m in &scan.meta_modes {
        // A tree's root and `.aapi` directories are the unpacker's, not the package's, until
        // they are an installation's (`--installed`).
        let tree_dir = m.owner.is_some() && (m.path == "." || m.path == META_DIR);
        if opts.installed || !tree_dir {
            out.extend(mode_findings(&m.path, m.mode));
        }
        // The manifest and signature are no one's to hide: an unpacker who cannot read them
        // cannot verify what they unpacked.
        if (m.path == MANIFEST_PATH || m.path == SIGNATURE_PATH) && m.mode & 0o444 != 0o444 {
            out.push(Finding::at(
                Code::FILE_MODE,
                &m.path,
                format!(
                    "mode {:04o} is not readable by everyone (pack writes 0644)",
                    m.mode & 0o7777
                ),
            ));
        }
    }
    let found: BTreeMap<&str, Node<'_>> = scan
        .items
        .iter()
        .map(|i| (i.path.as_str(), node(&i.kind)))
        .collect();
    out.extend(paths::link_findings(&found));

    if opts.installed {
        out.append(&mut scan.installed_findings);
    }
    if opts.installed
        && let Some((uid, gid)) = root_owner
    {
        let owners = scan
            .items
            .iter()
            .map(|i| (&i.path, i.owner))
            .chain(scan.meta_modes.iter().map(|m| (&m.path, m.owner)));
        for (path, owner) in owners {
            if let Some((u, g)) = owner
                && (u, g) != (uid, gid)
            {
                out.push(Finding::at(
                    Code::FILE_OWNER,
                    path,
                    format!("owned by {u}:{g}, the installation by {uid}:{gid}"),
                ));
            }
        }
    }

    let manifest = match &scan.manifest {
        None => {
            if scan.complete {
                out.push(Finding::whole(
                    Code::MANIFEST_MISSING,
                    "no .aapi/manifest.json",
                ));
            }
            None
        }
        Some(bytes) => {
            report.manifest_sha256 = Some(hex(&hash::bytes(bytes)));
            match Manifest::parse(bytes) {
                Err(e) => {
                    let code = if e.starts_with("format version") {
                        Code::MANIFEST_VERSION
                    } else {
                        Code::MANIFEST_INVALID
                    };
                    out.push(Finding::at(code, crate::manifest::MANIFEST_PATH, e));
                    None
                }
                Ok(m) => Some(m),
            }
        }
    };

    if let Some(m) = &manifest {
        let schema = m.schema_errors();
        for e in &schema {
            out.push(Finding::at(
                Code::MANIFEST_INVALID,
                crate::manifest::MANIFEST_PATH,
                e.clone(),
            ));
        }
        let mut listed = HashSet::new();
        for e in &m.files {
            match paths::check(e.path.as_bytes(), false) {
                Err((code, why)) => out.push(Finding::at(
                    code,
                    e.path.escape_debug().to_string(),
                    format!("in the manifest: {why}"),
                )),
                Ok(_) => {
                    if !listed.insert(e.path.as_str()) {
                        out.push(Finding::at(
                            Code::PATH_DUPLICATE,
                            &e.path,
                            "listed twice in the manifest",
                        ));
                    }
                }
            }
            if let Some(mode) = e.kind.mode() {
                out.extend(mode_findings(&e.path, mode));
            }
        }
        out.extend(opts.arch.finding(&m.target.arch));
        let wanted: BTreeMap<&str, Node<'_>> = m
            .files
            .iter()
            .map(|e| {
                let n = match &e.kind {
                    Kind::Dir { .. } => Node::Dir,
                    Kind::File { .. } => Node::File,
                    Kind::Symlink { target } => Node::Symlink(target),
                };
                (e.path.as_str(), n)
            })
            .collect();
        out.extend(paths::link_findings(&wanted));
    }
    // A scan that stopped early (a limit, a corrupt archive) saw only part of the package:
    // comparing that part with the manifest would only add noise.
    if let Some(m) = manifest.as_ref().filter(|_| scan.complete) {
        compare(m, &scan, &digests, &mut out);

        let entry = scan.items.iter().find(|i| i.path == m.entry);
        if let (Some(arch), Some(item)) = (elf::arch(&m.target.arch), entry)
            && let ItemKind::File { size, content } = &item.kind
            && let Some(map) = entry_map(subject, &scan, content, *size, file)?
        {
            let expect = elf::Expect {
                arch,
                abi: (m.abi.major, m.abi.minor),
            };
            out.extend(elf::check_mapped(&m.entry, &map, Some(expect)).1);
        }

        let bytes = scan.manifest.as_deref().expect("parsed from these bytes");
        let (status, f) = sign::check(scan.signature.as_deref(), bytes, m, &opts.keys);
        report.signature = status;
        out.extend(f);
    } else if scan.signature.is_some() {
        report.signature = sign::Status::NotChecked { key_id: "?".into() };
    }

    let mut seen = HashSet::new();
    out.retain(|f| seen.insert((f.code, f.path.clone(), f.message.clone())));
    out.sort_by(|a, b| (a.path.is_some(), &a.path).cmp(&(b.path.is_some(), &b.path)));
    report.manifest = manifest;
    report.findings = out;
    report.manifest_bytes = scan.manifest;
    report.signature_bytes = scan.signature;
    Ok(report)
}

fn node(k: &ItemKind) -> Node<'_> {
    match k {
        ItemKind::Dir => Node::Dir,
        ItemKind::File { .. } => Node::File,
        ItemKind::Symlink { target } => Node::Symlink(target),
    }
}

/// The entry library mapped where the scan left it; none when an uncompressed package ends
/// before its end (reported as `ARCHIVE_TRUNCATED` already).
fn entry_map(
    subject: &Path,
    scan: &Scan,
    content: &Content,
    size: u64,
    file: Option<&File>,
) -> Result<Option<Map>> {
    Ok(Some(match content {
        Content::Hashed(..) => {
            let Some(f) = &scan.entry_file else {
                return Ok(None);
            };
            Map::new(f, 0, size).map_err(|e| {
                Error::io(
                    "cannot map the temporary copy of the entry library of",
                    subject,
                    e,
                )
                .then("set TMPDIR to a directory on a file system with room for it")
            })?
        }
        Content::Region(offset) => {
            let f = file.expect("regions come with their file");
            let len = f.metadata().map_err(|e| Error::read(subject, e))?.len();
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Ok(None);
            }
            Map::new(f, *offset, size).map_err(|e| map_failed(subject, e, "verify"))?
        }
        Content::Path(p) => {
            let f = hash::open_nofollow(p).map_err(|e| Error::read(p, e))?;
            Map::new(&f, 0, size).map_err(|e| map_failed(p, e, "verify"))?
        }
    }))
}

/// The library in `path` could not be mapped into memory to parse it, by the command `cmd`
/// ("verify", "pack").
pub(crate) fn map_failed(path: &Path, e: std::io::Error, cmd: &str) -> Error {
    let next = if e.raw_os_error() == Some(libc::ENOMEM) || e.kind() == std::io::ErrorKind::Other {
        format!(
            "the address space is too small for it: raise the memory limit (`ulimit -v`), or {cmd} on a 64-bit host"
        )
    } else {
        format!("copy it to a local file system and {cmd} it there")
    };
    Error::io("cannot map the entry library in", path, e).then(next)
}

/// Compare what was found with what the manifest lists.
fn compare(m: &Manifest, scan: &Scan, digests: &[Option<[u8; 32]>], out: &mut Vec<Finding>) {
    let found: BTreeMap<&str, (usize, &Item)> = scan
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.path.as_str(), (i, it)))
        .collect();
    for e in &m.files {
        let Some(&(i, item)) = found.get(e.path.as_str()) else {
            if scan.complete {
                out.push(Finding::at(
                    Code::FILE_MISSING,
                    &e.path,
                    format!(
                        "the manifest lists a {}; it is not in the package",
                        e.kind.name()
                    ),
                ));
            }
            continue;
        };
        match (&e.kind, &item.kind) {
            (Kind::Dir { mode }, ItemKind::Dir) => check_mode(&e.path, *mode, item.mode, out),
            (
                Kind::File { mode, size, sha256 },
                ItemKind::File {
                    size: found_size, ..
                },
            ) => {
                if size != found_size {
                    out.push(Finding::at(
                        Code::FILE_SIZE,
                        &e.path,
                        format!("{found_size} bytes, the manifest says {size}"),
                    ));
                }
                if let Some(d) = digests[i]
                    && &d != sha256
                {
                    out.push(Finding::at(
                        Code::FILE_DIGEST,
                        &e.path,
                        format!("SHA-256 {}, the manifest says {}", hex(&d), hex(sha256)),
                    ));
                }
                check_mode(&e.path, *mode, item.mode, out);
            }
            (Kind::Symlink { target }, ItemKind::Symlink { target: found }) => {
                if target != found {
                    out.push(Finding::at(
                        Code::SYMLINK_TARGET,
                        &e.path,
                        format!("points to {found}, the manifest says {target}"),
                    ));
                }
            }
            (want, _) => out.push(Finding::at(
                Code::FILE_TYPE,
                &e.path,
                format!(
                    "a {}, the manifest says a {}",
                    node_name(&item.kind),
                    want.name()
                ),
            )),
        }
    }
    let listed: HashSet<&str> = m.files.iter().map(|e| e.path.as_str()).collect();
    for item in &scan.items {
        if !listed.contains(item.path.as_str()) {
            out.push(Finding::at(
                Code::FILE_EXTRA,
                &item.path,
                format!("a {} the manifest does not list", node_name(&item.kind)),
            ));
        }
    }
}

fn node_name(k: &ItemKind) -> &'static str {
    match k {
        ItemKind::Dir => "directory",
        ItemKind::File { .. } => "file",
        ItemKind::Symlink { .. } => "symlink",
    }
}

fn check_mode(path: &str, want: u32, found: u32, out: &mut Vec<Finding>) {
    if want != found {
        out.push(Finding::at(
            Code::FILE_MODE,
            path,
            format!("mode {found:04o}, the manifest says {want:04o}"),
        ));
    }
}
