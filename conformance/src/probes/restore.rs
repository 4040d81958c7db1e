//! Restore: `rst.preprocess`, `rst.exists`, `rst.utimes`, `rst.failed-restore` (with
//! `rst.failed-restore-keeps`), `rst.confined`, `rst.confined-props`. The other `rst.*` checks
//! judge the data pipeline's restore.

use super::ffi::{object_prop, object_prop_with_mode, ts};
use super::probe::{PR, Probe, code_of, dir_is_empty, harness, os};
use crate::pipeline::under;
use crate::profile::no_files_reason;
use crate::worker::{code_name, pbytes, show};
use aapi_sdk::abi::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `rst.preprocess`: a missing target root and an impossible size are refused before
/// anything is written.
pub fn preprocess(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let base = p.dir("pre")?;
    let missing = base.join("no-such-root");
    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
    p.expect_code(
        "aapi_restore_preprocess with a missing target root",
        s.restore_preprocess(&pbytes(&missing), 1, 1),
        AAPI_ENOENT,
    );
    if missing.exists() {
        p.fail("aapi_restore_preprocess created the missing target root");
    }
    drop(s);
    let root = p.dir("pre/root")?;
    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
    p.expect_code(
        "aapi_restore_preprocess with total_bytes 2^62",
        s.restore_preprocess(&pbytes(&root), 1 << 62, 1),
        AAPI_ENOSPC,
    );
    if !dir_is_empty(&root) {
        p.fail("aapi_restore_preprocess wrote into the target root before refusing");
    }
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// `rst.exists`: an existing object needs `AAPI_CREATE_OVERWRITE` and stays until close;
/// existing directories are reused.
pub fn exists(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "exists")?;
    let target = under(&root, b"/exists.txt");
    let o = p.create(&r, &target, AAPI_OBJ_FILE, 0)?;
    api.write_all(o, b"old")?;
    api.close_object(o);
    p.expect_code(
        "aapi_create_object on an existing object without AAPI_CREATE_OVERWRITE",
        r.create_object(&target, &object_prop(AAPI_OBJ_FILE), 0),
        AAPI_EEXIST,
    );
    let o = p.create(&r, &target, AAPI_OBJ_FILE, AAPI_CREATE_OVERWRITE)?;
    api.write_all(o, b"new content")?;
    let (_, prop) = api.byname(r.handle(), &target);
    if prop.size != 3 {
        p.fail(format!(
            "before close, the object being replaced reports size {} (the old one has 3)",
            prop.size
        ));
    }
    api.close_object(o);
    let (_, prop) = api.byname(r.handle(), &target);
    if prop.size != 11 {
        p.fail(format!(
            "after close, the replaced object reports size {}, expected 11",
            prop.size
        ));
    }
    if p.setup().files && std::fs::read(os(&target)).ok().as_deref() != Some(b"new content") {
        p.fail("after close, the file does not hold the new content");
    }
    let dir = under(&root, b"/existing-dir");
    let o = p.create(&r, &dir, AAPI_OBJ_DIR, 0)?;
    api.close_object(o);
    match r.create_object(&dir, &object_prop_with_mode(AAPI_OBJ_DIR), 0) {
        Ok(o) => {
            let _ = o.close();
        }
        Err(err) => p.fail(format!(
            "creating an existing directory again: {err} (containers are reused)"
        )),
    }
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// `rst.utimes`: both times, each with the other NULL, and a symbolic link's own times.
pub fn utimes(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "utimes")?;
    let file = under(&root, b"/times.txt");
    let o = p.create(&r, &file, AAPI_OBJ_FILE, 0)?;
    api.write_all(o, b"times")?;
    api.close_object(o);
    let check = |path: &[u8], a: (i64, u32), m: (i64, u32), what: &str| {
        let (c, prop) = api.byname(r.handle(), path);
        if c != AAPI_EOK {
            p.fail(format!("byname({}) returned {}", show(path), code_name(c)));
            return;
        }
        let got_a = (prop.atime.sec, prop.atime.nsec);
        let got_m = (prop.mtime.sec, prop.mtime.nsec);
        if got_a != a || got_m != m {
            p.fail(format!(
                "{what}: atime {got_a:?} mtime {got_m:?}, expected atime {a:?} mtime {m:?}"
            ));
        }
    };
    let (a1, m1) = ((1_500_000_000, 123_456_789), (1_400_000_000, 987_654_321));
    r.set_utimes(&file, Some(ts(a1.0, a1.1)), Some(ts(m1.0, m1.1)))?;
    check(&file, a1, m1, "after setting both times");
    let m2 = (1_300_000_000, 5);
    r.set_utimes(&file, None, Some(ts(m2.0, m2.1)))?;
    check(&file, a1, m2, "after setting mtime with atime NULL");
    let a3 = (1_600_000_000, 7);
    r.set_utimes(&file, Some(ts(a3.0, a3.1)), None)?;
    check(&file, a3, m2, "after setting atime with mtime NULL");
    let link = under(&root, b"/times-link");
    match r.create_object(&link, &object_prop(AAPI_OBJ_SYMLINK), 0) {
        Ok(mut o) => {
            o.write(b"times.txt")?;
            o.close()?;
            let (a, m) = ((1_200_000_000, 11), (1_100_000_000, 22));
            r.set_utimes(&link, Some(ts(a.0, a.1)), Some(ts(m.0, m.1)))?;
            check(&link, a, m, "symbolic link");
            check(
                &file,
                a3,
                m2,
                "the link's target after setting the link's times",
            );
        }
        Err(err) if err.code() == Some(AAPI_ENOTSUP) => {}
        Err(err) => p.fail(format!("creating a symbolic link: {err}")),
    }
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// `rst.failed-restore` (and `rst.failed-restore-keeps`): a restore ended with a failure
/// removes what it created, keeps what was there, and puts back what it replaced.
pub fn failed_restore(p: &Probe) -> PR {
    let plugin = p.plugin()?;
    let api = p.api(plugin.entry_points());
    let (r, root) = p.restore(&plugin, "rst6")?;
    let keep = under(&root, b"/keep");
    let old = under(&root, b"/keep/old.txt");
    let o = p.create(&r, &keep, AAPI_OBJ_DIR, 0)?;
    api.close_object(o);
    let o = p.create(&r, &old, AAPI_OBJ_FILE, 0)?;
    api.write_all(o, b"old")?;
    api.close_object(o);
    r.restore_postprocess(AAPI_EOK)?;
    drop(r);
    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
    s.restore_preprocess(&pbytes(&root), 1 << 16, 4)?;
    let new = under(&root, b"/new.txt");
    let newdir = under(&root, b"/newdir");
    let inner = under(&root, b"/newdir/inner.txt");
    for (path, kind) in [
        (&new, AAPI_OBJ_FILE),
        (&newdir, AAPI_OBJ_DIR),
        (&inner, AAPI_OBJ_FILE),
    ] {
        let o = p.create(&s, path, kind, 0)?;
        if kind == AAPI_OBJ_FILE {
            api.write_all(o, b"created by the failing restore")?;
        }
        api.close_object(o);
    }
    let o = p.create(&s, &old, AAPI_OBJ_FILE, AAPI_CREATE_OVERWRITE)?;
    api.write_all(o, b"replacement")?;
    api.close_object(o);
    s.restore_postprocess(AAPI_EIO)?;
    drop(s);
    let s = p.session(&plugin, AAPI_OP_RESTORE)?;
    s.restore_preprocess(&pbytes(&root), 1, 1)?;
    for path in [&new, &newdir, &inner] {
        let (c, _) = api.byname(s.handle(), path);
        if c != AAPI_ENOENT {
            p.fail(format!(
                "{} created by the failed restore is still there (byname: {})",
                show(path),
                code_name(c)
            ));
        }
    }
    let (c, _) = api.byname(s.handle(), &keep);
    if c != AAPI_EOK {
        p.fail(format!(
            "the directory {} that existed before the failed restore is gone",
            show(&keep)
        ));
    }
    let (c, prop) = api.byname(s.handle(), &old);
    if c != AAPI_EOK {
        p.fail(format!(
            "{}, which existed before the failed restore, is gone",
            show(&old)
        ));
    } else if prop.size != 3 {
        p.fail_as(
            "rst.failed-restore-keeps",
            format!(
                "{} replaced under AAPI_CREATE_OVERWRITE was not put back (size {}, was 3)",
                show(&old),
                prop.size
            ),
        );
    }
    p.ctx.ran("rst.failed-restore-keeps");
    let _ = s.restore_postprocess(AAPI_EOK);
    drop(s);
    plugin.terminate()?;
    Ok(())
}

/// What [`tree_state`] keeps of an entry: bytes (of a file), mode, owner, group, mtime and
/// ctime (seconds and nanoseconds).
type EntryState = (Vec<u8>, u32, u32, u32, (i64, i64), (i64, i64));

/// `dir` itself (as `""`) and everything under it, not following links, with what a change to
/// each would show.
fn tree_state(dir: &std::path::Path) -> BTreeMap<PathBuf, EntryState> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    if let Ok(m) = std::fs::symlink_metadata(dir) {
        out.insert(PathBuf::new(), entry_state(dir, &m));
    }
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            out.insert(rel, entry_state(&path, &m));
        }
    }
    return out;

    fn entry_state(path: &std::path::Path, m: &std::fs::Metadata) -> EntryState {
        let bytes = if m.is_file() {
            std::fs::read(path).unwrap_or_default()
        } else {
            Vec::new()
        };
        (
            bytes,
            m.mode(),
            m.uid(),
            m.gid(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        )
    }
}

/// What changed between two [`tree_state`]s, named.
fn tree_changes(
    before: &BTreeMap<PathBuf, EntryState>,
    after: &BTreeMap<PathBuf, EntryState>,
) -> Vec<String> {
    // The directory itself is the empty relative path.
    let name = |k: &PathBuf| {
        if k.as_os_str().is_empty() {
            "the directory itself".to_string()
        } else {
            k.display().to_string()
        }
    };
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push(format!("created {}", name(k))),
            Some(b) if b != v => out.push(format!("changed {}", name(k))),
            Some(_) => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(format!("removed {}", name(k)));
    }
    out
}

/// `rst.confined`: below the target root, a path through a symbolic link (one that was there, or
/// one the restore made) reaches nothing outside the root: not through create (with its missing
/// parents), set-times or delete, nor through the rollback of the failed restore; and the root
/// stays the directory it was.
pub fn confined(p: &Probe) -> PR {
    if !p.setup().files {
        p.skip(no_files_reason(
            "stage symbolic links below the restore root for the plugin to meet",
            "RST-10",
        ));
        return Ok(());
    }
    let plugin = p.plugin()?;
    let outside = p.dir("confined-outside")?;
    std::fs::write(outside.join("victim"), b"victim").map_err(harness)?;
    let before = tree_state(&outside);
    let (r, root) = p.restore(&plugin, "confined")?;
    std::os::unix::fs::symlink(&outside, root.join("pre")).map_err(harness)?;
    // Each call must be refused, and none may reach outside.
    let create = |path: &[u8]| match r.create_object(path, &object_prop_with_mode(AAPI_OBJ_FILE), 0)
    {
        Ok(mut o) => {
            let _ = o.write(b"written through a link");
            let _ = o.close();
            AAPI_EOK
        }
        Err(err) => err.code().unwrap_or(AAPI_EINTERNAL),
    };
    let long_ago = Some(ts(1_000_000_000, 0));
    let calls = [
        ("aapi_create_object", create(&under(&root, b"/pre/new.txt"))),
        (
            "aapi_create_object",
            create(&under(&root, b"/pre/sub/deep.txt")),
        ),
        (
            "aapi_set_object_utimes",
            code_of(r.set_utimes(&under(&root, b"/pre/victim"), long_ago, long_ago)),
        ),
        (
            "aapi_delete_object",
            code_of(r.delete_object(&under(&root, b"/pre/victim"))),
        ),
    ];
    p.expect_all(
        &calls,
        "on a path through a symbolic link below the target root",
        AAPI_EINVAL,
    );
    // A symbolic link the restore makes. A plugin may refuse links that point out of the root;
    // then there is nothing beneath it to try.
    let made = r.create_object(&under(&root, b"/made"), &object_prop(AAPI_OBJ_SYMLINK), 0);
    // A plugin that restores no symbolic links at all refuses the type anywhere: also deeper
    // down, where nothing is near the root.
    let refused = |r: &Result<_, aapi_host::client::PluginError>| matches!(r, Err(err) if err.code() == Some(AAPI_ENOTSUP));
    let no_symlinks = refused(&made) && {
        for d in [&b"/deep"[..], b"/deep/er"] {
            if let Ok(o) =
                r.create_object(&under(&root, d), &object_prop_with_mode(AAPI_OBJ_DIR), 0)
            {
                let _ = o.close();
            }
        }
        let deeper = r.create_object(
            &under(&root, b"/deep/er/link"),
            &object_prop(AAPI_OBJ_SYMLINK),
            0,
        );
        let no = refused(&deeper);
        if let Ok(mut o) = deeper {
            let _ = o.write(b"target");
            let _ = o.close();
        }
        no
    };
    let made = made.and_then(|mut o| {
        o.write(&pbytes(&outside))?;
        o.close()
    });
    if made.is_ok() {
        p.expect(
            "aapi_create_object below a symbolic link the restore made",
            create(&under(&root, b"/made/new2.txt")),
            AAPI_EINVAL,
        );
    }
    // An object whose own path is a link to a file outside: replaced, never written through.
    std::os::unix::fs::symlink(outside.join("victim"), root.join("link")).map_err(harness)?;
    if let Ok(mut o) = r.create_object(
        &under(&root, b"/link"),
        &object_prop_with_mode(AAPI_OBJ_FILE),
        AAPI_CREATE_OVERWRITE,
    ) {
        let _ = o.write(b"written over a link");
        let _ = o.close();
    }
    let changes = tree_changes(&before, &tree_state(&outside));
    if !changes.is_empty() {
        p.fail(format!(
            "paths through a symbolic link below the target root reached {}: {}",
            outside.display(),
            changes.join(", ")
        ));
    }
    // The failed restore's rollback stays inside the root as well.
    let _ = r.restore_postprocess(AAPI_EIO);
    let changes = tree_changes(&before, &tree_state(&outside));
    if !changes.is_empty() {
        p.fail(format!(
            "the rollback of the failed restore reached {}: {}",
            outside.display(),
            changes.join(", ")
        ));
    }
    drop(r);
    confined_root(p, &plugin, &outside, &before, no_symlinks)?;
    plugin.terminate()?;
    Ok(())
}

/// `rst.confined-props`: under the target root, `aapi_get_object_prop_byname` reaches a path as
/// the restore's other calls do: a path through a symbolic link below the root, or outside the
/// root, is refused; a link named by the path itself is reported as the link.
pub fn confined_props(p: &Probe) -> PR {
    if !p.setup().files {
        p.skip(no_files_reason(
            "stage symbolic links below the restore root for the plugin to meet",
            "RST-11",
        ));
        return Ok(());
    }
    let plugin = p.plugin()?;
    let outside = p.dir("confined-props-outside")?;
    std::fs::write(outside.join("victim"), b"victim").map_err(harness)?;
    let (r, root) = p.restore(&plugin, "confined-props")?;
    std::os::unix::fs::symlink(&outside, root.join("pre")).map_err(harness)?;
    p.expect_code(
        "aapi_get_object_prop_byname on a path through a symbolic link below the target root",
        r.prop_byname(&under(&root, b"/pre/victim")),
        AAPI_EINVAL,
    );
    p.expect_code(
        "aapi_get_object_prop_byname on a path outside the target root",
        r.prop_byname(&pbytes(&outside.join("victim"))),
        AAPI_EINVAL,
    );
    match r.prop_byname(&under(&root, b"/pre")) {
        Ok(prop) if prop.obj_type == AAPI_OBJ_SYMLINK => {}
        Ok(prop) => p.fail(format!(
            "aapi_get_object_prop_byname on a symbolic link below the target root reported object type {} (the link itself is AAPI_OBJ_SYMLINK)",
            prop.obj_type
        )),
        Err(err) => p.fail(format!(
            "aapi_get_object_prop_byname on a symbolic link below the target root: {err} (the link itself is reported)"
        )),
    }
    let _ = r.restore_postprocess(AAPI_EOK);
    drop(r);
    plugin.terminate()?;
    Ok(())
}

/// The root of [`confined`]: it stays the directory it was. A directory object at its path
/// reuses it; it cannot be deleted, nor replaced by a symbolic link that would take the next
/// objects outside. A plugin that restores no symbolic links (`no_symlinks`: it refused the
/// type with `AAPI_ENOTSUP` elsewhere) may refuse the link at the root's path the same way.
fn confined_root(
    p: &Probe,
    plugin: &aapi_host::client::Plugin,
    outside: &std::path::Path,
    before: &BTreeMap<PathBuf, EntryState>,
    no_symlinks: bool,
) -> PR {
    let (r, root) = p.restore(plugin, "confined-root")?;
    let at_root = pbytes(&root);
    match r.create_object(&at_root, &object_prop_with_mode(AAPI_OBJ_DIR), 0) {
        Ok(o) => {
            let _ = o.close();
        }
        Err(err) => p.fail(format!(
            "a directory object at the target root's path: {err} (the root is reused)"
        )),
    }
    p.expect_code(
        "aapi_delete_object on the (empty) target root",
        r.delete_object(&at_root),
        AAPI_EINVAL,
    );
    let link = r.create_object(
        &at_root,
        &object_prop(AAPI_OBJ_SYMLINK),
        AAPI_CREATE_OVERWRITE,
    );
    let code = match link {
        Ok(mut o) => {
            let _ = o.write(&pbytes(outside));
            let _ = o.close();
            AAPI_EOK
        }
        Err(err) => err.code().unwrap_or(AAPI_EINTERNAL),
    };
    let what = "aapi_create_object of a symbolic link at the target root's path, with AAPI_CREATE_OVERWRITE";
    if code == AAPI_ENOTSUP && !no_symlinks {
        p.fail(format!(
            "{what} returned AAPI_ENOTSUP, expected AAPI_EEXIST: the plugin restores symbolic links (it created one below the root), so the root's path is what refuses this one"
        ));
    } else if !(code == AAPI_ENOTSUP && no_symlinks) {
        p.expect(what, code, AAPI_EEXIST);
    }
    if let Ok(mut o) = r.create_object(
        &under(&root, b"/planted.txt"),
        &object_prop_with_mode(AAPI_OBJ_FILE),
        0,
    ) {
        let _ = o.write(b"planted");
        let _ = o.close();
    }
    if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
        p.fail(format!(
            "the target root {} is no longer the directory it was",
            root.display()
        ));
    }
    let changes = tree_changes(before, &tree_state(outside));
    if !changes.is_empty() {
        p.fail(format!(
            "objects at or under the target root's path reached {}: {}",
            outside.display(),
            changes.join(", ")
        ));
    }
    let _ = r.restore_postprocess(AAPI_EIO);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_changes_names_the_directory_itself() {
        let state = |t: i64| -> EntryState { (Vec::new(), 0o40755, 0, 0, (t, 0), (t, 0)) };
        let before = BTreeMap::from([
            (PathBuf::new(), state(1)),
            (PathBuf::from("victim"), state(1)),
        ]);
        let after = BTreeMap::from([(PathBuf::new(), state(2)), (PathBuf::from("new"), state(2))]);
        assert_eq!(
            tree_changes(&before, &after),
            vec![
                "changed the directory itself",
                "created new",
                "removed victim"
            ]
        );
    }
}
