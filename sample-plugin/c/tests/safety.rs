//! Both samples, side by side, on what keeps backed-up data safe from other local users and from
//! odd but valid trees: the snapshot directory and every directory on the way to it must be
//! private, it is checked by the very path every snapshot path names (absolute, without `..`,
//! short enough), and names of the longest length a file system allows restore with and without
//! overwrite.

use aapi_host::client::{DiscoveryArgs, HostHooks, Plugin, PluginError, Server, SessionDef};
use aapi_host::loader::PluginLibrary;
use aapi_sample_plugin_c::PLUGIN_PATH;
use aapi_sdk::abi::*;
use aapi_sdk::workload::{WorkloadFile, file_name};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Each plugin has one global state per process: the tests take turns.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Log lines as (level, message).
#[derive(Default)]
struct Log(Mutex<Vec<(u32, String)>>);

impl HostHooks for Log {
    fn log(&self, level: u32, message: &str) {
        self.0.lock().unwrap().push((level, message.to_string()));
    }
}

/// A plugin loaded and claimed for one test, terminated when dropped.
struct Loaded {
    plugin: Plugin,
    log: Arc<Log>,
    /// The job id of its sessions (`job-1`, so snapshot `files-job-1-<tag>`).
    job: String,
}

impl Loaded {
    fn new(lib: &Path) -> Loaded {
        let log = Arc::new(Log::default());
        let plugin = Plugin::init(PluginLibrary::open(lib).unwrap(), log.clone()).unwrap();
        assert_eq!(plugin.claim("files"), Ok(true));
        Loaded {
            plugin,
            log,
            job: "job-1".into(),
        }
    }

    /// A session, or the error of its open.
    fn try_session(
        &self,
        op: u32,
        snapid: &str,
        props: &[(&str, &str)],
    ) -> Result<Server, PluginError> {
        let mut def = SessionDef::new(op);
        def.job_id = self.job.clone();
        def.snapid = snapid.into();
        def.properties = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.plugin.open_server("fileserver", def)
    }

    fn session(&self, op: u32, snapid: &str, props: &[(&str, &str)]) -> Server {
        self.try_session(op, snapid, props).unwrap()
    }

    fn warnings(&self) -> Vec<String> {
        let lines = self.log.0.lock().unwrap();
        lines
            .iter()
            .filter(|(level, _)| *level == AAPI_LOG_WARNING)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // A repeated terminate is AAPI_EOK (LIFE-7).
        let _ = self.plugin.terminate();
    }
}

/// (name, library) of both samples: those a parent test gave a child run ([`Child`]), else the
/// built ones.
fn samples() -> [(&'static str, PathBuf); 2] {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(c), Some(rust)) = (var(C_VAR), var(RUST_VAR)) {
        return [("c", c), ("rust", rust)];
    }
    let rust = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("libaapi_sample_plugin.so");
    [("c", PathBuf::from(PLUGIN_PATH)), ("rust", rust)]
}

/// The id of the snapshot of job `job` made in `dir` (sample-plugin/README.md, §Snapshots): it
/// ends in 16 lowercase hex digits of the 64-bit FNV-1a hash of the directory's path.
fn snapshot_id(job: &str, dir: &Path) -> String {
    let hash = bytes(dir).iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    });
    format!("files-{job}-{hash:016x}")
}

/// The default snapshot directory of the running user in the temporary directory `tmp`.
fn default_dir(tmp: &Path) -> PathBuf {
    match euid() {
        0 => tmp.join("aapi-files-snapshots"),
        uid => tmp.join(format!("aapi-files-snapshots-{uid}")),
    }
}

/// One test of this binary run again in a child process, with its own environment, as the
/// running user or as `nobody` (uid and gid 65534, no supplementary groups). The child finds
/// what it is to do in its environment.
struct Child(std::process::Command);

impl Child {
    /// `test` run again by this binary. As `nobody`, the run is from copies of the test and of
    /// both libraries in `w` (which must be 0755), which nobody can read wherever the build lies.
    fn new(test: &str, w: &Path, nobody: bool) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = if nobody {
            let copy = |from: &Path, name: &str| {
                let to = w.join(name);
                fs::copy(from, &to).unwrap();
                fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
                to
            };
            let [(_, c), (_, rust)] = samples();
            let mut cmd = std::process::Command::new(copy(&exe, "safety"));
            cmd.env(C_VAR, copy(&c, "libaapi_sample_plugin_c.so"))
                .env(RUST_VAR, copy(&rust, "libaapi_sample_plugin.so"));
            // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and
            // exec; the null pointer goes with a count of 0.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(65534) != 0
                        || libc::setuid(65534) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd
        } else {
            std::process::Command::new(exe)
        };
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
        Child(cmd)
    }

    /// Run it; it must pass. `label` names the run in a failure.
    fn passes(&mut self, label: &str) {
        let out = self.0.output().unwrap();
        let shown = format!(
            "{label} ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{shown}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran the test: {shown}"
        );
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// The code and message of a failed call.
fn failure(e: PluginError) -> (i32, String) {
    match e {
        PluginError::Call { code, detail, .. } => (code, detail),
        other => panic!("not a plugin error code: {other}"),
    }
}

/// The full discovery of `selection` for one backup host, in `work`.
fn discover(
    p: &Loaded,
    work: &Path,
    selection: &Path,
    props: &[(&str, &str)],
) -> Result<String, PluginError> {
    discover_as(p, work, selection, props, AAPI_SCHED_FULL)
}

/// A copy discovery of `selection` with its snapshots under `dir`, in `work`: the code and
/// message of its failure.
fn refused_copy(p: &Loaded, work: &Path, selection: &Path, dir: &Path) -> (i32, String) {
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", dir.to_str().unwrap()),
    ];
    failure(discover(p, work, selection, &props).unwrap_err())
}

/// The discovery of `selection` with `schedule` for one backup host, in `work`.
fn discover_as(
    p: &Loaded,
    work: &Path,
    selection: &Path,
    props: &[(&str, &str)],
    schedule: u32,
) -> Result<String, PluginError> {
    let out = work.join("wkld");
    fs::create_dir_all(&out).unwrap();
    let hosts = ["bh1".to_string()];
    let selections = [bytes(selection).to_vec()];
    let args = DiscoveryArgs {
        selections: &selections,
        backup_hosts: &hosts,
        workload_dir: &out,
        suffix: ".wkld",
        schedule,
    };
    let s = p.session(AAPI_OP_DISCOVERY, "", props);
    let r = s.discovery(&args);
    s.close().unwrap();
    r
}

/// The postprocess of a discovery made by [`discover`].
fn postprocess(
    p: &Loaded,
    work: &Path,
    selection: &Path,
    snapid: &str,
    props: &[(&str, &str)],
) -> Result<(), PluginError> {
    let hosts = ["bh1".to_string()];
    let selections = [bytes(selection).to_vec()];
    let out = work.join("wkld");
    let args = DiscoveryArgs {
        selections: &selections,
        backup_hosts: &hosts,
        workload_dir: &out,
        suffix: ".wkld",
        schedule: AAPI_SCHED_FULL,
    };
    let s = p.session(AAPI_OP_POSTPROCESS, snapid, props);
    let r = s.postprocess(&args, snapid);
    s.close().unwrap();
    r
}

#[test]
fn the_snapshot_directory_must_be_private() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    let private = w.path().join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();

    // (label, snapshot directory, what is wrong with it)
    let mut refused: Vec<(&str, PathBuf, String)> = Vec::new();
    for (label, mode) in [("0777", 0o777), ("1777", 0o1777), ("0770", 0o770)] {
        let d = w.path().join(format!("mode-{label}"));
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        refused.push((
            label,
            d,
            format!("its group or others may write into it (mode {mode:04o})"),
        ));
    }
    let link = w.path().join("link");
    symlink(&private, &link).unwrap();
    refused.push((
        "link",
        link,
        "it is a symbolic link or not a directory".into(),
    ));
    // A directory of another user: as root, one given to nobody; otherwise / (root's).
    let (other, other_uid) = if euid() == 0 {
        let d = w.path().join("other");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        (d, 65534)
    } else {
        (PathBuf::from("/"), 0)
    };
    refused.push((
        "other user",
        other,
        format!(
            "it is owned by uid {other_uid}, not by the running user (uid {})",
            euid()
        ),
    ));

    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        for (label, dir, why) in &refused {
            let work = w.path().join(format!("work-{name}-{label}"));
            let (code, msg) = refused_copy(&p, &work, &tree, dir);
            assert_eq!(code, AAPI_ESNAPSHOT, "{name} {label}: {msg}");
            let expected = format!("the snapshot directory {} is refused: {why}", dir.display());
            assert!(msg.contains(&expected), "{name} {label}: {msg}");
            assert!(msg.contains("files.snapshot_dir"), "{name} {label}: {msg}");
            // Nothing was copied there (DISC-5): no snapshot, no workload file.
            assert!(
                !dir.join(snapshot_id("job-1", dir)).exists(),
                "{name} {label}: a snapshot was made"
            );
            assert!(!file_name(&work.join("wkld"), "bh1", ".wkld").exists());
        }

        // A missing directory is created 0700, of the running user, with its missing parents.
        let fresh = w.path().join(format!("fresh-{name}/snapshots"));
        let props = [
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", fresh.to_str().unwrap()),
        ];
        let work = w.path().join(format!("work-{name}-fresh"));
        let snapid = discover(&p, &work, &tree, &props).unwrap();
        assert_eq!(snapid, snapshot_id("job-1", &fresh));
        for d in [fresh.clone(), fresh.join(&snapid)] {
            let md = fs::symlink_metadata(&d).unwrap();
            assert!(md.is_dir(), "{name}: {}", d.display());
            assert_eq!(md.mode() & 0o7777, 0o700, "{name}: {}", d.display());
            assert_eq!(md.uid(), euid(), "{name}: {}", d.display());
        }

        // The snapshot is read only while the directory is still private.
        let s = p.session(AAPI_OP_BACKUP, &snapid, &props);
        let real = tree.join("d/f");
        let snap = s.snappath(&snapid, bytes(&real)).unwrap();
        assert_eq!(
            fs::read(Path::new(std::ffi::OsStr::from_bytes(&snap))).unwrap(),
            b"real data"
        );
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o777)).unwrap();
        let (code, msg) = failure(s.snappath(&snapid, bytes(&real)).unwrap_err());
        assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
        assert!(
            msg.contains(&format!(
                "the snapshot directory {} is refused",
                fresh.display()
            )),
            "{name}: {msg}"
        );
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(s.snappath(&snapid, bytes(&real)).unwrap(), snap);
        s.close().unwrap();
        postprocess(&p, &work, &tree, &snapid, &props).unwrap();
        assert!(!fresh.join(&snapid).exists(), "{name}: snapshot left");
        assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    }
}

/// The directory `path`, made with `mode` (set after the umask).
fn dir_with_mode(path: &Path, mode: u32) -> PathBuf {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// The start of the message that refuses snapshot directory `dir` for one of its ancestors.
fn ancestor_refusal(dir: &Path, ancestor: &str) -> String {
    format!(
        "the snapshot directory {} is refused: its ancestor {ancestor}",
        dir.display()
    )
}

/// What every refusal for an ancestor says to do.
const ANCESTORS_FIX: &str = "set files.snapshot_dir to a directory whose ancestors only root or the running user may change";

#[test]
fn the_ancestors_of_the_snapshot_directory_must_be_private() {
    let _turn = turn();
    let me = euid();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();

    // (label, snapshot directory, what the message says of the ancestor that lets it be replaced)
    let mut refused: Vec<(&str, PathBuf, String)> = Vec::new();
    let open = dir_with_mode(&w.path().join("open"), 0o777);
    let writable = |d: &Path, mode: u32| {
        format!(
            "{} (owner uid {me}, mode {mode:04o}) may be written by its group or others and lacks the sticky bit (as /tmp has, mode 1777)",
            d.display()
        )
    };
    refused.push(("0777", open.join("snaps"), writable(&open, 0o777)));
    let group = dir_with_mode(&w.path().join("group"), 0o770);
    fs::create_dir(group.join("sub")).unwrap();
    refused.push((
        "0770-above",
        group.join("sub/snaps"),
        writable(&group, 0o770),
    ));
    // A link on the way is followed as the kernel follows it: the directory it leads to counts.
    symlink("open", w.path().join("to-open")).unwrap();
    refused.push((
        "link-to-0777",
        w.path().join("to-open/snaps"),
        writable(&open, 0o777),
    ));
    if me == 0 {
        let other = dir_with_mode(&w.path().join("other"), 0o755);
        std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
        refused.push((
            "other-user",
            other.join("snaps"),
            format!(
                "{} is owned by uid 65534 (mode 0755), neither root nor the running user (uid 0)",
                other.display()
            ),
        ));
        // Sticky, but its owner may still rename every entry.
        let sticky = dir_with_mode(&w.path().join("sticky-other"), 0o1777);
        std::os::unix::fs::chown(&sticky, Some(65534), Some(65534)).unwrap();
        refused.push((
            "1777-other-user",
            sticky.join("snaps"),
            format!("{} is owned by uid 65534 (mode 1777)", sticky.display()),
        ));
        let private = dir_with_mode(&w.path().join("private"), 0o700);
        let link = w.path().join("link-other");
        symlink(&private, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        refused.push((
            "link-other-user",
            link.join("snaps"),
            format!(
                "{} is a symbolic link owned by uid 65534, neither root nor the running user (uid 0)",
                link.display()
            ),
        ));
    } else {
        eprintln!("not root: no directory of another user to try");
    }

    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        for (label, dir, ancestor) in &refused {
            let work = w.path().join(format!("work-{name}-{label}"));
            let (code, msg) = refused_copy(&p, &work, &tree, dir);
            assert_eq!(code, AAPI_ESNAPSHOT, "{name} {label}: {msg}");
            assert!(
                msg.contains(&ancestor_refusal(dir, ancestor)),
                "{name} {label}: {msg}"
            );
            assert!(msg.contains(ANCESTORS_FIX), "{name} {label}: {msg}");
            // Refused before anything was made (DISC-5): no directory, no workload file.
            assert!(!dir.exists(), "{name} {label}: {} was made", dir.display());
            assert!(!file_name(&work.join("wkld"), "bh1", ".wkld").exists());
        }

        // Accepted: a sticky directory of the running user (root's is accepted too: /tmp holds
        // the tests), reached through an absolute link as /var/tmp may be. The missing parents
        // are made 0700 where the link leads.
        let sticky_mode = 0o1777;
        let shared = dir_with_mode(&w.path().join(format!("shared-{name}")), sticky_mode);
        let via = w.path().join(format!("via-{name}"));
        symlink(&shared, &via).unwrap();
        let dir = via.join("new/snaps");
        let props = [
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", dir.to_str().unwrap()),
        ];
        let work = w.path().join(format!("work-{name}-accepted"));
        let snapid = discover(&p, &work, &tree, &props).unwrap_or_else(|e| panic!("{name}: {e}"));
        let real = shared.join("new/snaps");
        for d in [shared.join("new"), real.clone(), real.join(&snapid)] {
            let md = fs::symlink_metadata(&d).unwrap();
            assert!(md.is_dir(), "{name}: {}", d.display());
            assert_eq!(md.mode() & 0o7777, 0o700, "{name}: {}", d.display());
            assert_eq!(md.uid(), me, "{name}: {}", d.display());
        }

        // Once another user may write into an ancestor, the snapshot is neither read nor
        // deleted; it is again when that is undone.
        let s = p.session(AAPI_OP_BACKUP, &snapid, &props);
        let file = tree.join("d/f");
        let snap = s.snappath(&snapid, bytes(&file)).unwrap();
        assert_eq!(
            fs::read(Path::new(std::ffi::OsStr::from_bytes(&snap))).unwrap(),
            b"real data"
        );
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let expected = ancestor_refusal(&dir, &writable(&shared, 0o777));
        let (code, msg) = failure(s.snappath(&snapid, bytes(&file)).unwrap_err());
        assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
        assert!(msg.contains(&expected), "{name}: {msg}");
        s.close().unwrap();
        let (code, msg) = failure(postprocess(&p, &work, &tree, &snapid, &props).unwrap_err());
        assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
        assert!(msg.contains(&expected), "{name}: {msg}");
        assert!(real.join(&snapid).is_dir(), "{name}: deleted anyway");
        fs::set_permissions(&shared, fs::Permissions::from_mode(sticky_mode)).unwrap();
        postprocess(&p, &work, &tree, &snapid, &props).unwrap();
        assert!(!real.join(&snapid).exists(), "{name}: snapshot left");
        assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    }
}

#[test]
fn a_snapshot_directory_with_a_dotdot_component_is_refused_when_the_session_opens() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    let real = dir_with_mode(&w.path().join("real"), 0o700);
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        // The walk would check where ".." leads, but every snapshot path would keep it, and
        // object paths with ".." are refused: refused before any copy is made.
        for value in [
            format!("{}/../real/snaps", real.display()),
            format!("{}/snaps/..", real.display()),
        ] {
            let props = [
                ("files.snapshot", "copy"),
                ("files.snapshot_dir", value.as_str()),
            ];
            for op in [AAPI_OP_DISCOVERY, AAPI_OP_BACKUP, AAPI_OP_POSTPROCESS] {
                let (code, msg) = failure(p.try_session(op, "", &props).unwrap_err());
                assert_eq!(code, AAPI_EINVAL, "{name} {value}: {msg}");
                let expected = format!(
                    "files.snapshot_dir=\"{value}\" contains a \"..\" component, which snapshot paths may not hold; set files.snapshot_dir to the path of the directory without \"..\""
                );
                assert!(msg.contains(&expected), "{name} {value}: {msg}");
            }
        }
        assert!(!real.join("snaps").exists(), "{name}: made");
        // "." components, repeated and trailing slashes are dropped: the snapshot paths name
        // the directory without them.
        let messy = format!("{}//./snaps-{name}/", real.display());
        let props = [
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", messy.as_str()),
        ];
        let work = w.path().join(format!("work-{name}"));
        let snapid = discover(&p, &work, &tree, &props).unwrap();
        let s = p.session(AAPI_OP_BACKUP, &snapid, &props);
        let file = tree.join("d/f");
        let mut expected = bytes(&real.join(format!("snaps-{name}")).join(&snapid)).to_vec();
        expected.extend_from_slice(bytes(&file));
        assert_eq!(
            s.snappath(&snapid, bytes(&file)).unwrap(),
            expected,
            "{name}"
        );
        s.close().unwrap();
        postprocess(&p, &work, &tree, &snapid, &props).unwrap();
    }
}

/// The longest path the system calls take (`PATH_MAX` less its NUL).
const PATH_MAX: usize = libc::PATH_MAX as usize - 1;

/// Names below `dir` (`find`, which walks by descriptor: paths here may be longer than
/// `PATH_MAX`).
fn names_below(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .arg(dir)
        .args(["-mindepth", "1", "-printf", "%f\\n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `dir` made longer by components of 250 bytes (then one shorter) to `len` bytes; nothing is
/// made.
fn path_of_length(dir: &Path, len: usize) -> PathBuf {
    let mut p = dir.to_path_buf();
    while bytes(&p).len() < len {
        let room = len - bytes(&p).len() - 1;
        p.push("b".repeat(room.clamp(1, 250)));
    }
    assert_eq!(bytes(&p).len(), len);
    p
}

#[test]
fn a_snapshot_whose_paths_are_too_long_is_refused_before_anything_is_made() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    let id_len = snapshot_id("job-1", w.path()).len();
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let long = dir_with_mode(&w.path().join(format!("long-{name}")), 0o700);
        // The snapshot itself, <dir>/<id>, longer than PATH_MAX; then one that fits
        // when the copies in it do not.
        let over = path_of_length(&long, PATH_MAX + 100);
        let fits = path_of_length(&long, PATH_MAX - id_len - 1);
        for dir in [&over, &fits] {
            let id = snapshot_id("job-1", dir);
            let work = w.path().join(format!("work-{name}-{}", bytes(dir).len()));
            let (code, msg) = refused_copy(&p, &work, &tree, dir);
            assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
            // The longest copy, of tree/d/f; the reason and the fix before the long paths,
            // so that a message cut short keeps them.
            let n = bytes(dir).len() + 1 + id.len() + bytes(&tree.join("d/f")).len();
            let reason = format!(
                "snapshot: a path in snapshot {id} would be {n} bytes long, more than the {PATH_MAX} bytes a path may have; set files.snapshot_dir to a shorter directory (it is "
            );
            assert!(msg.contains(&reason), "{name}: {msg}");
            assert!(
                msg.len() < 1024
                    || msg.ends_with(&format!(
                        "the longest path is the copy of {})",
                        tree.join("d/f").display()
                    )),
                "{name}: {msg}"
            );
            // DISC-5: nothing made, not even the missing directories on the way.
            assert_eq!(names_below(&long), Vec::<String>::new(), "{name}");
            assert!(!file_name(&work.join("wkld"), "bh1", ".wkld").exists());
        }
        // An incremental with nothing changed copies nothing: its snapshot is made and then
        // deleted through the directory's descriptor, whatever the length of its path.
        let props = [
            ("files.snapshot", "copy"),
            ("files.snapshot_dir", over.to_str().unwrap()),
            (aapi_sdk::props::AAPI_PROP_LAST_BACKUP_TIME, "4000000000"),
        ];
        let work = w.path().join(format!("work-{name}-unchanged"));
        let snapid = discover_as(&p, &work, &tree, &props, AAPI_SCHED_INCR)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(names_below(&long).contains(&snapid), "{name}: no snapshot");
        postprocess(&p, &work, &tree, &snapid, &props).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !names_below(&long).contains(&snapid),
            "{name}: snapshot left"
        );
        assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    }
}

/// The test run again with `TMPDIR` set by [`the_default_snapshot_directory_is_checked_too`].
const DEFAULT_TEST: &str = "the_default_snapshot_directory_is_checked_too";
/// Set in that child: the default snapshot directory it must use.
const DEFAULT_VAR: &str = "AAPI_SAMPLE_TEST_DEFAULT";
/// Set in that child: the ancestor that must be refused, or empty when the default must work.
const REFUSED_VAR: &str = "AAPI_SAMPLE_TEST_REFUSED";

/// The part with `TMPDIR` set: a copy snapshot without `files.snapshot_dir` is made in `dir`
/// (created 0700), read and deleted, or refused for `refused`. A directory of the system's
/// `/tmp` may hold what others made: there a refusal naming `dir` proves it was the one checked.
fn default_snapshot_dir(tree: &Path, work: &Path, dir: &Path, refused: Option<&Path>) {
    let props = [("files.snapshot", "copy")];
    let shared = dir.parent() == Some(Path::new("/tmp"));
    for (name, lib) in samples() {
        let mut p = Loaded::new(&lib);
        if shared {
            // Not the snapshot of another run.
            p.job = format!("{}-{name}", work.display()).replace('/', "_");
        }
        let work = work.join(name);
        let found = discover(&p, &work, tree, &props);
        if let Some(ancestor) = refused {
            let (code, msg) = failure(found.unwrap_err());
            assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
            let what = format!(
                "{} (owner uid {}, mode 0777) may be written by its group or others",
                ancestor.display(),
                euid()
            );
            assert!(msg.contains(&ancestor_refusal(dir, &what)), "{name}: {msg}");
            assert!(!dir.exists(), "{name}: {} was made", dir.display());
            continue;
        }
        let snapid = match found {
            Err(e) if shared => {
                let (code, msg) = failure(e);
                assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
                let refusal = format!("the snapshot directory {} is refused", dir.display());
                assert!(msg.contains(&refusal), "{name}: {msg}");
                continue;
            }
            found => found.unwrap_or_else(|e| panic!("{name}: {e}")),
        };
        let md = fs::symlink_metadata(dir.join(&snapid))
            .unwrap_or_else(|e| panic!("{name}: no snapshot {snapid} in {}: {e}", dir.display()));
        assert!(md.is_dir(), "{name}");
        let md = fs::symlink_metadata(dir).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o7777), (euid(), 0o700), "{name}");
        // Every snapshot path names the directory checked.
        let s = p.session(AAPI_OP_BACKUP, &snapid, &props);
        let real = tree.join("d/f");
        let snap = s.snappath(&snapid, bytes(&real)).unwrap();
        let mut expected = bytes(&dir.join(&snapid)).to_vec();
        expected.extend_from_slice(bytes(&real));
        assert_eq!(snap, expected, "{name}");
        assert_eq!(
            fs::read(Path::new(std::ffi::OsStr::from_bytes(&snap))).unwrap(),
            b"real data"
        );
        s.close().unwrap();
        postprocess(&p, &work, tree, &snapid, &props).unwrap();
        assert!(!dir.join(&snapid).exists(), "{name}: snapshot left");
    }
}

#[test]
fn a_snapshot_is_deleted_only_from_the_snapshot_directory_it_was_made_in() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    let fix = "run every step of the job as the same user, with the same TMPDIR and files.snapshot_dir, as the discovery";
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let snaps = w.path().join(format!("snaps-{name}"));
        // Another private directory, as the default of another user or TMPDIR would be.
        let other = dir_with_mode(&w.path().join(format!("other-{name}")), 0o700);
        let (snaps_s, other_s) = (snaps.to_str().unwrap(), other.to_str().unwrap());
        let at_snaps = [("files.snapshot", "copy"), ("files.snapshot_dir", snaps_s)];
        let at_other = [("files.snapshot", "copy"), ("files.snapshot_dir", other_s)];
        let work = w.path().join(format!("work-{name}"));
        let snapid = discover(&p, &work, &tree, &at_snaps).unwrap();
        let copy = snaps
            .join(&snapid)
            .join(tree.join("d/f").strip_prefix("/").unwrap());
        assert!(copy.is_file(), "{name}: no snapshot");

        // Not missing: made elsewhere. Refused, and the snapshot stays.
        let (code, msg) = failure(postprocess(&p, &work, &tree, &snapid, &at_other).unwrap_err());
        assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
        let why = format!(
            "snapshot {snapid} was made in another snapshot directory than the one of this session; {fix} (the snapshot directory of this session is {other_s})"
        );
        assert!(msg.contains(&why), "{name}: {msg}");
        assert!(copy.is_file(), "{name}: the snapshot was deleted");
        let s = p.session(AAPI_OP_BACKUP, &snapid, &at_other);
        let (code, msg) = failure(s.snappath(&snapid, bytes(&tree.join("d/f"))).unwrap_err());
        s.close().unwrap();
        assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
        assert!(msg.contains(&why), "{name}: {msg}");

        // Ids without the tag of a snapshot directory (made up, or of an older version), or
        // with another one's: refused too.
        let other_tag = snapshot_id("job-1", &other);
        for id in ["files-job-1", "files-made-up", other_tag.as_str()] {
            let (code, msg) = failure(postprocess(&p, &work, &tree, id, &at_snaps).unwrap_err());
            assert_eq!(code, AAPI_ESNAPSHOT, "{name} {id}: {msg}");
            assert!(msg.contains(&format!("snapshot {id} ")), "{name}: {msg}");
            assert!(msg.contains(fix), "{name}: {msg}");
        }
        // No snapshot: success, wherever.
        postprocess(&p, &work, &tree, "", &at_other).unwrap();

        // Its own directory deletes it; then, already gone, it is success without a word.
        let deleted = || {
            let lines = p.log.0.lock().unwrap();
            let needle = format!("snapshot {snapid} deleted");
            lines.iter().filter(|(_, m)| m.contains(&needle)).count()
        };
        postprocess(&p, &work, &tree, &snapid, &at_snaps).unwrap();
        assert!(
            !snaps.join(&snapid).exists(),
            "{name}: the snapshot is left"
        );
        assert_eq!(deleted(), 1, "{name}");
        postprocess(&p, &work, &tree, &snapid, &at_snaps).unwrap();
        assert_eq!(deleted(), 1, "{name}: a snapshot already gone was deleted");
    }
}

#[test]
fn the_default_snapshot_directory_is_checked_too() {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(tree), Some(work), Some(dir), Some(refused)) = (
        var(TREE_VAR),
        var(WORK_VAR),
        var(DEFAULT_VAR),
        var(REFUSED_VAR),
    ) {
        let refused = Some(refused.as_path()).filter(|r| !r.as_os_str().is_empty());
        default_snapshot_dir(&tree, &work, &dir, refused);
        return;
    }
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    let private = dir_with_mode(&w.path().join("tmp-private"), 0o700);
    let open = dir_with_mode(&w.path().join("tmp-open"), 0o777);
    // A relative TMPDIR would name a directory below the current one, which the walk from /
    // does not check: there, a link to a directory every user may write into.
    let cwd = w.path().join("cwd");
    let relative = format!(
        "aapi-reltmp-{}",
        w.path().file_name().unwrap().to_string_lossy()
    );
    let elsewhere = dir_with_mode(&w.path().join("elsewhere"), 0o777);
    fs::create_dir_all(cwd.join(&relative)).unwrap();
    symlink(&elsewhere, default_dir(&cwd.join(&relative))).unwrap();
    let system = default_dir(Path::new("/tmp"));
    let dotdot = format!("{}/../tmp-private", private.display());
    // (label, TMPDIR, the default snapshot directory, the ancestor refused)
    let cases: [(&str, &std::ffi::OsStr, PathBuf, Option<&Path>); 4] = [
        ("private", private.as_os_str(), default_dir(&private), None),
        ("open", open.as_os_str(), default_dir(&open), Some(&open)),
        // Not absolute, or with "..": ignored, /tmp is used.
        ("relative", relative.as_ref(), system.clone(), None),
        ("dotdot", dotdot.as_ref(), system, None),
    ];
    // The default depends on TMPDIR, read by each plugin when a session opens: a child process
    // gets its own.
    for (label, tmpdir, dir, refused) in cases {
        let work = w.path().join(format!("work-{label}"));
        fs::create_dir(&work).unwrap();
        let mut child = Child::new(DEFAULT_TEST, w.path(), false);
        child
            .0
            .current_dir(&cwd)
            .env("TMPDIR", tmpdir)
            .env(TREE_VAR, &tree)
            .env(WORK_VAR, &work)
            .env(DEFAULT_VAR, &dir)
            .env(REFUSED_VAR, refused.map_or("".as_ref(), Path::as_os_str));
        child.passes(&format!("TMPDIR {label}"));
    }
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "written there"
    );
    assert!(!Path::new("/").join(&relative).exists(), "made at /");
}

/// The test run again as a user without root's powers by
/// [`a_user_without_root_powers_gets_a_default_of_their_own_and_clear_refusals`].
const UNPRIVILEGED_TEST: &str =
    "a_user_without_root_powers_gets_a_default_of_their_own_and_clear_refusals";
/// Set in that child: a directory of another user it may not read, or empty when there is none.
const FOREIGN_VAR: &str = "AAPI_SAMPLE_TEST_FOREIGN";
/// Set in that child: a sticky directory every user may write into, of the child's user.
const STICKY_VAR: &str = "AAPI_SAMPLE_TEST_STICKY";

/// The unprivileged part, with `TMPDIR` set to `tmp`.
fn unprivileged_snapshots(
    tree: &Path,
    work: &Path,
    tmp: &Path,
    foreign: Option<&Path>,
    sticky: &Path,
) {
    let me = euid();
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        // A snapshot directory of another user is refused for its owner, even where the
        // running user may not open it.
        if let Some(foreign) = foreign {
            let props = [
                ("files.snapshot", "copy"),
                ("files.snapshot_dir", foreign.to_str().unwrap()),
            ];
            let work = work.join(format!("{name}-foreign"));
            let (code, msg) = failure(discover(&p, &work, tree, &props).unwrap_err());
            assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
            let owner = fs::symlink_metadata(foreign).unwrap().uid();
            let why = format!(
                "the snapshot directory {} is refused: it is owned by uid {owner}, not by the running user (uid {me}); it must be a directory of the running user",
                foreign.display()
            );
            assert!(msg.contains(&why), "{name}: {msg}");
            assert!(msg.contains("set files.snapshot_dir"), "{name}: {msg}");
        }
        // The default is the user's own, whatever another user made in the same place; and a
        // sticky directory of the running user, where only that user and root may rename
        // another's entry, may hold the snapshot directory.
        let below_sticky = sticky.join(format!("snaps-{name}"));
        let cases = [
            (
                "default",
                default_dir(tmp),
                vec![("files.snapshot", "copy")],
            ),
            (
                "sticky",
                below_sticky.clone(),
                vec![
                    ("files.snapshot", "copy"),
                    ("files.snapshot_dir", below_sticky.to_str().unwrap()),
                ],
            ),
        ];
        for (label, dir, props) in cases {
            let work = work.join(format!("{name}-{label}"));
            let snapid =
                discover(&p, &work, tree, &props).unwrap_or_else(|e| panic!("{name} {label}: {e}"));
            let md = fs::symlink_metadata(&dir).unwrap();
            assert_eq!(
                (md.uid(), md.mode() & 0o7777),
                (me, 0o700),
                "{name} {label}"
            );
            let s = p.session(AAPI_OP_BACKUP, &snapid, &props);
            let snap = s.snappath(&snapid, bytes(&tree.join("d/f"))).unwrap();
            assert!(snap.starts_with(bytes(&dir)), "{name} {label}");
            assert_eq!(
                fs::read(Path::new(std::ffi::OsStr::from_bytes(&snap))).unwrap(),
                b"real data"
            );
            s.close().unwrap();
            postprocess(&p, &work, tree, &snapid, &props).unwrap();
            assert!(!dir.join(&snapid).exists(), "{name} {label}: snapshot left");
        }
        assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    }
}

#[test]
fn a_user_without_root_powers_gets_a_default_of_their_own_and_clear_refusals() {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(tree), Some(work), Some(tmp), Some(foreign), Some(sticky)) = (
        var(TREE_VAR),
        var(WORK_VAR),
        var("TMPDIR"),
        var(FOREIGN_VAR),
        var(STICKY_VAR),
    ) {
        let foreign = Some(foreign.as_path()).filter(|f| !f.as_os_str().is_empty());
        unprivileged_snapshots(&tree, &work, &tmp, foreign, &sticky);
        return;
    }
    let _turn = turn();
    let root = euid() == 0;
    let w = tempfile::tempdir().unwrap();
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    for (d, mode) in [
        (tree.clone(), 0o755),
        (tree.join("d"), 0o755),
        (tree.join("d/f"), 0o644),
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(mode)).unwrap();
    }
    let work = w.path().join("work");
    fs::create_dir(&work).unwrap();
    let home = dir_with_mode(&w.path().join("home"), 0o755);
    let sticky = dir_with_mode(&home.join("sticky"), 0o1777);
    let (tmp, foreign) = if root {
        // As root, the child runs as nobody: a temporary directory like /tmp where root's own
        // default snapshot directory is already made, and a private directory of root.
        let tmp = dir_with_mode(&w.path().join("tmp"), 0o1777);
        dir_with_mode(&default_dir(&tmp), 0o700);
        let foreign = dir_with_mode(&w.path().join("root-only"), 0o700);
        for d in [&work, &home, &sticky] {
            std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
        }
        (tmp, Some(foreign))
    } else {
        // Otherwise the child runs as this user; root's home is a directory of another user it
        // may not read, where there is one.
        let tmp = dir_with_mode(&w.path().join("tmp"), 0o700);
        let foreign = Path::new("/root");
        let unreadable = fs::symlink_metadata(foreign)
            .is_ok_and(|md| md.is_dir() && md.uid() != euid())
            && fs::read_dir(foreign).is_err();
        (tmp, unreadable.then(|| foreign.to_path_buf()))
    };
    if foreign.is_none() {
        eprintln!("no directory of another user that this one may not read: that part is skipped");
    }
    let mut child = Child::new(UNPRIVILEGED_TEST, w.path(), root);
    child
        .0
        .env("TMPDIR", &tmp)
        .env(TREE_VAR, &tree)
        .env(WORK_VAR, &work)
        .env(
            FOREIGN_VAR,
            foreign.as_deref().map_or("".as_ref(), Path::as_os_str),
        )
        .env(STICKY_VAR, &sticky);
    child.passes(if root { "as nobody" } else { "as this user" });
    if root {
        // Root's own default snapshot directory was left alone.
        assert_eq!(fs::read_dir(default_dir(&tmp)).unwrap().count(), 0);
    }
}

/// One object as backed up: path, properties, data.
struct Backed {
    path: Vec<u8>,
    prop: aapi_object_prop_t,
    data: Vec<u8>,
}

/// Discovery (no snapshot) and the read of every listed object, in workload order.
fn backup_all(p: &Loaded, work: &Path, tree: &Path) -> Vec<Backed> {
    let snapid = discover(p, work, tree, &[]).unwrap();
    let wf = WorkloadFile::read_from_path(&file_name(&work.join("wkld"), "bh1", ".wkld")).unwrap();
    let s = p.session(AAPI_OP_BACKUP, &snapid, &[]);
    let mut out = Vec::new();
    for e in &wf.entries {
        let path = bytes(&e.path).to_vec();
        let mut o = s.open_object(&path).unwrap();
        let prop = o.prop().unwrap();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = o.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
        o.close().unwrap();
        out.push(Backed { path, prop, data });
    }
    s.close().unwrap();
    out
}

/// Restore `items` under `root` as the framework does; the result of the restore's
/// postprocess, or the first failed call.
fn restore_all(p: &Loaded, root: &Path, items: &[Backed], flags: u32) -> Result<(), PluginError> {
    let s = p.session(AAPI_OP_RESTORE, "", &[]);
    let total = items.iter().map(|b| b.data.len() as u64).sum();
    s.restore_preprocess(bytes(root), total, items.len() as u64)?;
    let mut result = Ok(());
    for b in items {
        let target = [bytes(root), b.path.as_slice()].concat();
        let prop = aapi_object_prop_t {
            valid: AAPI_PROP_MODE,
            ..b.prop
        };
        let step = s.create_object(&target, &prop, flags).and_then(|mut o| {
            o.write(&b.data)?;
            o.close()
        });
        if let Err(e) = step {
            result = Err(e);
            break;
        }
    }
    let status = if result.is_ok() { AAPI_EOK } else { AAPI_EIO };
    s.restore_postprocess(status)?;
    s.close().unwrap();
    result
}

/// Every entry below `dir` (relative path, kind, data), sorted.
fn entries(dir: &Path) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let data = if md.is_file() {
                fs::read(&path).unwrap()
            } else if md.file_type().is_symlink() {
                bytes(&fs::read_link(&path).unwrap()).to_vec()
            } else {
                stack.push(path.clone());
                Vec::new()
            };
            out.push((
                bytes(&path)[bytes(dir).len()..].to_vec(),
                md.mode() & 0o170000,
                data,
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn names_of_the_longest_length_restore_with_and_without_overwrite() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    let name = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
    // 255 bytes each: ASCII, and two-byte characters cut by none of the hidden names' limits.
    let dir = tree.join(name(&[b'd'; 255]));
    let utf8 = [&"é".repeat(127).into_bytes()[..], b"x"].concat();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name(&utf8)), b"long name data").unwrap();
    fs::write(tree.join(name(&[b'f'; 255])), b"top").unwrap();
    symlink("target", tree.join(name(&[b'l'; 255]))).unwrap();
    let original = entries(&tree);
    assert_eq!(original.len(), 4);

    for (sample, lib) in samples() {
        let p = Loaded::new(&lib);
        let work = w.path().join(format!("work-{sample}"));
        let items = backup_all(&p, &work, &tree);
        assert_eq!(items.len(), 5, "{sample}: the root and 4 objects");
        let root = w.path().join(format!("restore-{sample}"));
        fs::create_dir(&root).unwrap();
        let restored = root.join(tree.strip_prefix("/").unwrap());
        restore_all(&p, &root, &items, 0).unwrap_or_else(|e| panic!("{sample}: {e}"));
        assert_eq!(entries(&restored), original, "{sample}");
        // Again over what is there now: each object is set aside, then deleted.
        let file = restored.join(name(&[b'f'; 255]));
        fs::write(&file, b"changed").unwrap();
        restore_all(&p, &root, &items, AAPI_CREATE_OVERWRITE)
            .unwrap_or_else(|e| panic!("{sample} --overwrite: {e}"));
        assert_eq!(entries(&restored), original, "{sample} --overwrite");

        // A name longer than any file system allows: AAPI_EINVAL naming it, not AAPI_EIO.
        let s = p.session(AAPI_OP_RESTORE, "", &[]);
        s.restore_preprocess(bytes(&root), 1, 1).unwrap();
        let too_long = [bytes(&root), b"/", &[b'n'; 256][..]].concat();
        let prop = aapi_object_prop_t {
            obj_type: AAPI_OBJ_FILE,
            ..Default::default()
        };
        let (code, msg) = failure(s.create_object(&too_long, &prop, 0).unwrap_err());
        assert_eq!(code, AAPI_EINVAL, "{sample}: {msg}");
        assert!(
            msg.contains("has a name of 256 bytes; a name has at most 255"),
            "{sample}: {msg}"
        );
        s.restore_postprocess(AAPI_EOK).unwrap();
        s.close().unwrap();
    }
}

/// The test run again as `nobody` by [`an_unreadable_directory_is_listed_and_fails_at_backup`].
const UNREADABLE_TEST: &str = "an_unreadable_directory_is_listed_and_fails_at_backup";
/// Set in a child run: the tree, its work directory, and the libraries of both samples.
const TREE_VAR: &str = "AAPI_SAMPLE_TEST_TREE";
const WORK_VAR: &str = "AAPI_SAMPLE_TEST_WORK";
const C_VAR: &str = "AAPI_SAMPLE_TEST_C";
const RUST_VAR: &str = "AAPI_SAMPLE_TEST_RUST";

/// The unprivileged part: discovery goes past the two directories it may not list (warning
/// about each), lists them without their contents, and their open fails with AAPI_EACCES.
fn discover_unreadable(libs: &[(&str, PathBuf)], tree: &Path, work: &Path) {
    for (sample, lib) in libs {
        let p = Loaded::new(lib);
        let work = work.join(sample);
        fs::create_dir(&work).unwrap();
        discover(&p, &work, tree, &[]).unwrap_or_else(|e| panic!("{sample}: {e}"));
        let wf =
            WorkloadFile::read_from_path(&file_name(&work.join("wkld"), "bh1", ".wkld")).unwrap();
        let listed: Vec<PathBuf> = wf.entries.iter().map(|e| e.path.clone()).collect();
        let expected: Vec<PathBuf> = ["", "/nox", "/ok", "/ronly", "/sub", "/sub/f"]
            .iter()
            .map(|r| PathBuf::from(format!("{}{r}", tree.display())))
            .collect();
        assert_eq!(listed, expected, "{sample}");
        // In the order of each sample's walk.
        let mut warnings = p.warnings();
        warnings.sort();
        let about = |d: &str| {
            format!(
                "files-{sample}: cannot list the contents of {}/{d}: Permission denied; the directory is listed without them",
                tree.display()
            )
        };
        assert_eq!(warnings, [about("nox"), about("ronly")], "{sample}");

        let s = p.session(AAPI_OP_BACKUP, "", &[]);
        for path in &listed {
            let opened = s.open_object(bytes(path));
            if path.ends_with("nox") || path.ends_with("ronly") {
                let (code, msg) = failure(match opened {
                    Ok(_) => panic!("{sample}: {} opened", path.display()),
                    Err(e) => e,
                });
                assert_eq!(code, AAPI_EACCES, "{sample}: {msg}");
                let text = format!(
                    "the contents of directory {} cannot be listed (not backed up): Permission denied",
                    path.display()
                );
                assert!(msg.contains(&text), "{sample}: {msg}");
            } else {
                opened
                    .unwrap_or_else(|e| panic!("{sample}: {e}"))
                    .close()
                    .unwrap();
            }
        }
        s.close().unwrap();
    }
}

#[test]
fn an_unreadable_directory_is_listed_and_fails_at_backup() {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(tree), Some(work)) = (var(TREE_VAR), var(WORK_VAR)) {
        discover_unreadable(&samples(), &tree, &work);
        return;
    }
    let _turn = turn();
    let root = euid() == 0;
    let w = tempfile::tempdir().unwrap();
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let tree = w.path().join("tree");
    for d in ["nox", "ronly", "sub"] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    for f in ["ok", "nox/secret", "ronly/inner", "sub/f"] {
        fs::write(tree.join(f), f).unwrap();
    }
    fs::set_permissions(tree.join("nox"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(tree.join("ronly"), fs::Permissions::from_mode(0o444)).unwrap();
    let work = w.path().join("work");
    fs::create_dir(&work).unwrap();
    if !root {
        discover_unreadable(&samples(), &tree, &work);
        return;
    }
    // As root, every directory is readable: the check runs as nobody.
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let mut child = Child::new(UNREADABLE_TEST, w.path(), true);
    child.0.env(TREE_VAR, &tree).env(WORK_VAR, &work);
    child.passes("as nobody");
}

/// The test run again as `nobody` by
/// [`a_snapshot_directory_the_running_user_cannot_use_is_refused_with_the_fix`].
const UNUSABLE_TEST: &str =
    "a_snapshot_directory_the_running_user_cannot_use_is_refused_with_the_fix";
/// Set in that child: a directory of another user it may not search, or empty when there is none.
const UNSEARCHABLE_VAR: &str = "AAPI_SAMPLE_TEST_UNSEARCHABLE";

/// The unprivileged part, in `work` (of the running user): a snapshot directory that user may
/// not write into, and ones below an ancestor it may not search (its own, or `foreign` of
/// another user), are refused with the directory to blame and the fix, by discovery and by
/// postprocess; once the fix is applied, the snapshot is made and deleted.
fn unusable_snapshot_dirs(tree: &Path, work: &Path, foreign: Option<&Path>) {
    let me = euid();
    let search_fix =
        "set files.snapshot_dir to a directory whose ancestors the running user may search";
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let base = dir_with_mode(&work.join(name), 0o700);
        let read_only = dir_with_mode(&base.join("read-only"), 0o500);
        // Below an ancestor of its own: right below it, and a level further down.
        let shut = dir_with_mode(&base.join("shut"), 0o600);
        let sealed = dir_with_mode(&base.join("sealed"), 0o700);
        fs::create_dir(sealed.join("sub")).unwrap();
        fs::set_permissions(&sealed, fs::Permissions::from_mode(0o000)).unwrap();
        let unsearchable = |d: &Path, owner: u32, mode: u32, fix: &str| {
            format!(
                "its ancestor {} (owner uid {owner}, mode {mode:04o}) may not be searched by the running user (uid {me}); {fix} {}, or {search_fix}",
                d.display(),
                d.display()
            )
        };
        // (label, snapshot directory, what the refusal says after "is refused: ")
        let mut refused = vec![
            (
                "0500",
                read_only.clone(),
                format!(
                    "the running user (uid {me}), its owner, lacks write or search permission on it (mode 0500); run chmod 700 {}, or set files.snapshot_dir to",
                    read_only.display()
                ),
            ),
            (
                "0600-above",
                shut.join("snaps"),
                unsearchable(&shut, me, 0o600, "run chmod u+x"),
            ),
            (
                "0000-above",
                sealed.join("sub/snaps"),
                unsearchable(&sealed, me, 0, "run chmod u+x"),
            ),
        ];
        if let Some(f) = foreign {
            let md = fs::symlink_metadata(f).unwrap();
            refused.push((
                "other-user-above",
                f.join("snaps"),
                unsearchable(
                    f,
                    md.uid(),
                    md.mode() & 0o7777,
                    "have its owner run chmod a+x",
                ),
            ));
        }
        for (label, dir, why) in &refused {
            let work = base.join(format!("work-{label}"));
            let (code, msg) = refused_copy(&p, &work, tree, dir);
            assert_eq!(code, AAPI_ESNAPSHOT, "{name} {label}: {msg}");
            let expected = format!("the snapshot directory {} is refused: {why}", dir.display());
            assert!(msg.contains(&expected), "{name} {label}: {msg}");
            assert!(!file_name(&work.join("wkld"), "bh1", ".wkld").exists());
        }
        assert_eq!(fs::read_dir(&read_only).unwrap().count(), 0, "{name}: made");

        // The fixes the messages name.
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&shut, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&sealed, fs::Permissions::from_mode(0o100)).unwrap();
        for (label, dir, why) in &refused[..3] {
            let props = [
                ("files.snapshot", "copy"),
                ("files.snapshot_dir", dir.to_str().unwrap()),
            ];
            let work = base.join(format!("work-{label}-fixed"));
            let snapid =
                discover(&p, &work, tree, &props).unwrap_or_else(|e| panic!("{name} {label}: {e}"));
            assert!(dir.join(&snapid).is_dir(), "{name} {label}");
            if *label == "0500" {
                // Postprocess refuses it too, and leaves the snapshot.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).unwrap();
                let (code, msg) =
                    failure(postprocess(&p, &work, tree, &snapid, &props).unwrap_err());
                assert_eq!(code, AAPI_ESNAPSHOT, "{name}: {msg}");
                assert!(msg.contains(why.as_str()), "{name}: {msg}");
                assert!(dir.join(&snapid).is_dir(), "{name}: deleted anyway");
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
            }
            postprocess(&p, &work, tree, &snapid, &props)
                .unwrap_or_else(|e| panic!("{name} {label}: {e}"));
            assert!(!dir.join(&snapid).exists(), "{name} {label}: snapshot left");
        }
        // So that the temporary directory can be removed.
        fs::set_permissions(&sealed, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(p.warnings().is_empty(), "{name}: {:?}", p.warnings());
    }
}

#[test]
fn a_snapshot_directory_the_running_user_cannot_use_is_refused_with_the_fix() {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(tree), Some(work), Some(foreign)) =
        (var(TREE_VAR), var(WORK_VAR), var(UNSEARCHABLE_VAR))
    {
        let foreign = Some(foreign.as_path()).filter(|f| !f.as_os_str().is_empty());
        unusable_snapshot_dirs(&tree, &work, foreign);
        return;
    }
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    fs::set_permissions(w.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let tree = w.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"real data").unwrap();
    for (d, mode) in [
        (tree.clone(), 0o755),
        (tree.join("d"), 0o755),
        (tree.join("d/f"), 0o644),
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(mode)).unwrap();
    }
    let work = dir_with_mode(&w.path().join("work"), 0o755);
    if euid() != 0 {
        // Root's home is a directory of another user this one may not search, where there is one.
        let foreign = Path::new("/root");
        let unsearchable = fs::symlink_metadata(foreign)
            .is_ok_and(|md| md.is_dir() && md.uid() != euid())
            && fs::symlink_metadata(foreign.join("."))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        if !unsearchable {
            eprintln!(
                "no directory of another user that this one may not search: that part is skipped"
            );
        }
        unusable_snapshot_dirs(&tree, &work, unsearchable.then_some(foreign));
        return;
    }
    // Root may write into and search every directory: the checks run as nobody, below a
    // directory of root that nobody may not search.
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let foreign = dir_with_mode(&w.path().join("root-only"), 0o700);
    let mut child = Child::new(UNUSABLE_TEST, w.path(), true);
    child
        .0
        .env(TREE_VAR, &tree)
        .env(WORK_VAR, &work)
        .env(UNSEARCHABLE_VAR, &foreign);
    child.passes("as nobody");
}

/// The test run again with a low open-file limit by
/// [`a_tree_deeper_than_the_open_file_limit_is_copied_and_its_snapshot_removed`].
const DEEP_TEST: &str = "a_tree_deeper_than_the_open_file_limit_is_copied_and_its_snapshot_removed";
/// Set in a child run: the open-file limit it runs under.
const NOFILE_VAR: &str = "AAPI_SAMPLE_TEST_NOFILE";
/// The open-file limit of that child run, and the depth of its tree, well past the limit.
const DEEP_NOFILE: u64 = 128;
const DEEP_LEVELS: usize = 300;

/// The child part: the copy discovery and the postprocess of a tree of [`DEEP_LEVELS`] levels
/// succeed under the limit, and the snapshot held the deepest file and is gone.
fn deep_snapshot(tree: &Path, work: &Path) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a writable rlimit, alive for the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(lim.rlim_cur, DEEP_NOFILE, "the limit is in force");
    let snaps = work.join("snaps");
    let props = [
        ("files.snapshot", "copy"),
        ("files.snapshot_dir", snaps.to_str().unwrap()),
    ];
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let work = work.join(name);
        let snapid = discover(&p, &work, tree, &props).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut copy = snaps.join(&snapid).join(tree.strip_prefix("/").unwrap());
        copy.extend(std::iter::repeat_n("d", DEEP_LEVELS));
        assert_eq!(fs::read(copy.join("f")).unwrap(), b"deep data", "{name}");
        postprocess(&p, &work, tree, &snapid, &props).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!snaps.join(&snapid).exists(), "{name}: snapshot left");
    }
}

#[test]
fn a_tree_deeper_than_the_open_file_limit_is_copied_and_its_snapshot_removed() {
    let var = |v: &str| std::env::var_os(v).map(PathBuf::from);
    if let (Some(tree), Some(work), Some(_)) = (var(TREE_VAR), var(WORK_VAR), var(NOFILE_VAR)) {
        deep_snapshot(&tree, &work);
        return;
    }
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    let mut bottom = tree.clone();
    bottom.extend(std::iter::repeat_n("d", DEEP_LEVELS));
    fs::create_dir_all(&bottom).unwrap();
    fs::write(bottom.join("f"), b"deep data").unwrap();
    // A read-only directory half-way down: the removal opens it up.
    let middle: PathBuf = std::iter::repeat_n("d", DEEP_LEVELS / 2).collect();
    let middle = tree.join(middle);
    fs::write(middle.join("g"), b"beside").unwrap();
    fs::set_permissions(&middle, fs::Permissions::from_mode(0o555)).unwrap();
    let work = w.path().join("work");
    fs::create_dir(&work).unwrap();
    let mut child = Child::new(DEEP_TEST, w.path(), false);
    child
        .0
        .env(TREE_VAR, &tree)
        .env(WORK_VAR, &work)
        .env(NOFILE_VAR, DEEP_NOFILE.to_string());
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        child.0.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: DEEP_NOFILE,
                rlim_max: DEEP_NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    child.passes(&format!("open-file limit {DEEP_NOFILE}"));
    fs::set_permissions(&middle, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_message_too_long_to_keep_whole_keeps_its_reason() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    // A selection that cannot be inspected, whose path alone is longer than the C sample's
    // message.
    symlink("loop", w.path().join("loop")).unwrap();
    let mut looped = w.path().join("loop");
    looped.extend(std::iter::repeat_n("below", 200));
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let e = discover(&p, &w.path().join(name), &looped, &[]).unwrap_err();
        let (code, msg) = failure(e);
        assert_eq!(code, AAPI_EIO, "{name}: {msg}");
        assert!(
            msg.ends_with(": Too many levels of symbolic links"),
            "{name}: {msg}"
        );
    }
}

/// The hidden names beside an object (`.<name>.aapi-old-<n>`, `.<name>.aapi-tmp-<n>`) are
/// unique only in one process: entries that already have them (a user's files, an object an
/// earlier restore kept aside) are left alone by a restore that succeeds and by one that fails.
#[test]
fn entries_that_have_the_hidden_names_are_left_alone() {
    let _turn = turn();
    for (name, lib) in samples() {
        let work = tempfile::tempdir().unwrap();
        // A copy of its own: the names count from 1 in a freshly loaded library.
        let copy = work.path().join(format!("lib-{name}.so"));
        fs::copy(&lib, &copy).unwrap();
        let l = Loaded::new(&copy);
        for status in [AAPI_EIO, AAPI_EOK] {
            let alt = work.path().join(format!("alt-{status}"));
            fs::create_dir_all(&alt).unwrap();
            let old = alt.join("old.txt");
            fs::write(&old, b"old").unwrap();
            let decoys: Vec<(PathBuf, String)> = (1..=20)
                .flat_map(|n| ["old", "tmp"].map(|w| (n, w)))
                .map(|(n, w)| {
                    let d = alt.join(format!(".old.txt.aapi-{w}-{n}"));
                    let text = format!("user file {w} {n}");
                    fs::write(&d, &text).unwrap();
                    (d, text)
                })
                .collect();
            let s = l.session(AAPI_OP_RESTORE, "", &[]);
            s.restore_preprocess(bytes(&alt), 100, 1).unwrap();
            let prop = aapi_object_prop_t {
                struct_size: size_of::<aapi_object_prop_t>() as u32,
                obj_type: AAPI_OBJ_FILE,
                valid: AAPI_PROP_MODE,
                mode: 0o640,
                ..Default::default()
            };
            let mut o = s
                .create_object(bytes(&old), &prop, AAPI_CREATE_OVERWRITE)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            o.write(b"new").unwrap();
            o.close().unwrap_or_else(|e| panic!("{name}: {e}"));
            s.restore_postprocess(status).unwrap();
            s.close().unwrap();
            let want: &[u8] = if status == AAPI_EOK { b"new" } else { b"old" };
            assert_eq!(fs::read(&old).unwrap(), want, "{name}, status {status}");
            for (d, text) in &decoys {
                assert_eq!(
                    fs::read_to_string(d).ok().as_deref(),
                    Some(text.as_str()),
                    "{name}, status {status}: {} was replaced",
                    d.display()
                );
            }
            let hidden = fs::read_dir(&alt)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .contains(".aapi-")
                })
                .count();
            assert_eq!(hidden, decoys.len(), "{name}, status {status}: left behind");
        }
    }
}

/// A failed restore removes every object it created (RST-6) and puts back what existed (RST-7),
/// also when it created one path twice, the second time over the first.
#[test]
fn a_failed_restore_removes_an_object_it_created_twice() {
    let _turn = turn();
    for (name, lib) in samples() {
        let l = Loaded::new(&lib);
        for existed in [false, true] {
            let work = tempfile::tempdir().unwrap();
            let alt = work.path().join("alt");
            fs::create_dir_all(&alt).unwrap();
            let path = alt.join("twice.txt");
            if existed {
                fs::write(&path, b"orig").unwrap();
            }
            let s = l.session(AAPI_OP_RESTORE, "", &[]);
            s.restore_preprocess(bytes(&alt), 100, 2).unwrap();
            let prop = aapi_object_prop_t {
                struct_size: size_of::<aapi_object_prop_t>() as u32,
                obj_type: AAPI_OBJ_FILE,
                valid: AAPI_PROP_MODE,
                mode: 0o600,
                ..Default::default()
            };
            for text in [b"one", b"two"] {
                let mut o = s
                    .create_object(bytes(&path), &prop, AAPI_CREATE_OVERWRITE)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                o.write(text).unwrap();
                o.close().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            s.restore_postprocess(AAPI_EIO).unwrap();
            s.close().unwrap();
            let left: Vec<String> = fs::read_dir(&alt)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if existed {
                assert_eq!(fs::read(&path).unwrap(), b"orig", "{name}: {left:?}");
                assert_eq!(left, ["twice.txt"], "{name}");
            } else {
                assert!(left.is_empty(), "{name}: left behind {left:?}");
            }
        }
    }
}

/// A message too long for the C sample's buffer keeps its start and its end (the reason), cut at
/// characters; the Rust sample's is whole.
#[test]
fn a_long_message_keeps_its_reason() {
    let _turn = turn();
    for (name, lib) in samples() {
        let l = Loaded::new(&lib);
        let work = tempfile::tempdir().unwrap();
        let alt = work.path().join("alt");
        // Six levels of 100 two-byte characters: a path of about 1,250 bytes.
        let mut path = alt.clone();
        for _ in 0..6 {
            path.push("é".repeat(100));
        }
        fs::create_dir_all(&path).unwrap();
        path.push("f.txt");
        fs::write(&path, b"there").unwrap();
        let s = l.session(AAPI_OP_RESTORE, "", &[]);
        s.restore_preprocess(bytes(&alt), 100, 1).unwrap();
        let prop = aapi_object_prop_t {
            struct_size: size_of::<aapi_object_prop_t>() as u32,
            obj_type: AAPI_OBJ_FILE,
            ..Default::default()
        };
        let e = s.create_object(bytes(&path), &prop, 0).unwrap_err();
        let (code, message) = failure(e);
        assert_eq!(code, AAPI_EEXIST, "{name}: {message}");
        assert!(
            message.ends_with("f.txt already exists (AAPI_CREATE_OVERWRITE not given)"),
            "{name}: {message}"
        );
        assert!(!message.contains('\u{fffd}'), "{name}: a character was cut");
        if name == "c" {
            assert!(message.contains("..."), "{name}: {message}");
            assert!(message.len() <= 1023, "{name}: {} bytes", message.len());
        }
        let _ = s.restore_postprocess(AAPI_EOK);
    }
}

#[test]
fn an_object_whose_path_is_longer_than_a_path_may_be_fails_discovery_by_name() {
    let _turn = turn();
    let w = tempfile::tempdir().unwrap();
    let tree = w.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("top"), b"top").unwrap();
    // 22 levels of 200-byte names: made one step at a time below an open directory, as no
    // call takes the whole path.
    let name = "d".repeat(200);
    let mut dir = fs::File::open(&tree).unwrap();
    let c_name = std::ffi::CString::new(name.as_str()).unwrap();
    for _ in 0..22 {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: mkdirat and openat of a NUL-terminated name below an open descriptor; the
        // new descriptor is owned by the File made of it.
        unsafe {
            assert_eq!(libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o755), 0);
            let fd = libc::openat(
                dir.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            );
            assert!(fd >= 0);
            dir = fs::File::from_raw_fd(fd);
        }
    }
    let deepest = (0..22).fold(tree.clone(), |p, _| p.join(&name));
    // The first entry past the limit: the directory whose path first exceeds it.
    let over = (1..=22)
        .map(|k| (0..k).fold(tree.clone(), |p, _| p.join(&name)))
        .find(|p| bytes(p).len() > PATH_MAX)
        .unwrap();
    assert!(bytes(&deepest).len() > PATH_MAX);
    for (name, lib) in samples() {
        let p = Loaded::new(&lib);
        let work = w.path().join(format!("work-{name}"));
        let props = [("files.snapshot", "none")];
        let (code, msg) = failure(discover(&p, &work, &tree, &props).unwrap_err());
        // DISC-2: nothing dropped; the code does not blame the framework's arguments.
        assert_eq!(code, AAPI_ENOTSUP, "{name}: {msg}");
        let reason = format!(
            "a path of the selection is {} bytes long, more than the {PATH_MAX} bytes a path may have; this plugin reads objects by their paths: ",
            bytes(&over).len()
        );
        assert!(msg.contains(&reason), "{name}: {msg}");
        assert!(!file_name(&work.join("wkld"), "bh1", ".wkld").exists());
    }
}

/// A file or symbolic link restored with `AAPI_CREATE_OVERWRITE` where a directory with contents
/// now stands is refused (it would delete what the directory holds); an empty directory is
/// replaced.
#[test]
fn an_overwrite_never_replaces_a_directory_that_holds_something() {
    let _turn = turn();
    for (name, lib) in samples() {
        let l = Loaded::new(&lib);
        let work = tempfile::tempdir().unwrap();
        let alt = work.path().join("alt");
        fs::create_dir_all(alt.join("full/sub")).unwrap();
        fs::write(alt.join("full/sub/newer"), b"newer data").unwrap();
        fs::create_dir_all(alt.join("empty")).unwrap();
        let s = l.session(AAPI_OP_RESTORE, "", &[]);
        s.restore_preprocess(bytes(&alt), 100, 3).unwrap();
        for (kind, what) in [(AAPI_OBJ_FILE, "file"), (AAPI_OBJ_SYMLINK, "symbolic link")] {
            let prop = aapi_object_prop_t {
                struct_size: size_of::<aapi_object_prop_t>() as u32,
                obj_type: kind,
                valid: AAPI_PROP_MODE,
                mode: 0o600,
                ..Default::default()
            };
            let (code, msg) = failure(
                s.create_object(bytes(&alt.join("full")), &prop, AAPI_CREATE_OVERWRITE)
                    .map(|_| ())
                    .unwrap_err(),
            );
            assert_eq!(code, AAPI_EEXIST, "{name}: {msg}");
            assert!(
                msg.contains(&format!(
                    "{} is a directory that is not empty: a {what} restored there would delete what it holds",
                    alt.join("full").display()
                )),
                "{name}: {msg}"
            );
        }
        let prop = aapi_object_prop_t {
            struct_size: size_of::<aapi_object_prop_t>() as u32,
            obj_type: AAPI_OBJ_FILE,
            valid: AAPI_PROP_MODE,
            mode: 0o600,
            ..Default::default()
        };
        let mut o = s
            .create_object(bytes(&alt.join("empty")), &prop, AAPI_CREATE_OVERWRITE)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        o.write(b"file now").unwrap();
        o.close().unwrap_or_else(|e| panic!("{name}: {e}"));
        s.restore_postprocess(AAPI_EOK).unwrap();
        s.close().unwrap();
        assert_eq!(
            fs::read(alt.join("full/sub/newer")).unwrap(),
            b"newer data",
            "{name}"
        );
        assert_eq!(fs::read(alt.join("empty")).unwrap(), b"file now", "{name}");
    }
}
