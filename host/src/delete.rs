//! Deleting images from the store: what other images still need is refused, the policies' last
//! backup times stay true, and an image is never left half-deleted under its own name.
//!
//! An image is needed by every complete image whose catalog takes data from it (`depends_on`)
//! and by every incomplete image whose job uses it as its base. Deleting goes in three steps:
//! the host state is rewritten first (a policy whose last backup is deleted falls back to its
//! newest remaining one), then each image directory is renamed to `.deleting-<id>` (no longer an
//! image), then removed. A crash leaves at most hidden `.deleting-*` directories, which the next
//! delete removes.
//!
//! An image whose state cannot be read (an unreadable `manifest.json`) is damaged: it is deleted
//! when named, and `incomplete` names it and keeps it. What it needs is taken from its catalog,
//! which checks itself, so deleting what a damaged image refers to is refused like any other.

use crate::store::{self, Catalog, HostState, ImageState, Lock, Manifest, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// Prefix of image directories being removed.
const DELETING: &str = ".deleting-";

/// What a delete will do. The images to delete stay locked until the plan is dropped, so no job,
/// restore or verify starts using one in between.
#[derive(Debug, Default)]
pub struct Plan {
    /// Images to delete, in name order.
    pub delete: Vec<String>,
    /// Images asked for that other images need: (image, the images that need it).
    pub refused: Vec<(String, Vec<String>)>,
    /// Images asked for that a running job, restore or verify uses: refused too.
    pub busy: Vec<String>,
    /// Incomplete images left alone by `incomplete` because their job is still running.
    pub running: Vec<String>,
    /// Incomplete images whose job has not ended (a split job between its steps, a finalize to
    /// run again, a job that was killed; with its snapshot, if it took one), left alone by
    /// `incomplete`. `finalize` completes them, `finalize --abandon` gives them up; then they
    /// can go.
    pub unfinished_kept: Vec<String>,
    /// Such images asked for by name (or as dependents): refused.
    pub unfinished: Vec<String>,
    /// Damaged images (whose state cannot be read: an unreadable manifest) left alone by
    /// `incomplete`; they go when named.
    pub damaged_kept: Vec<String>,
    /// Bytes of the stream data files of the images to delete, complete or not: what deleting
    /// them frees.
    pub bytes: u64,
    held: Vec<Lock>,
}

/// Plan the deletion of `ids` (and, with `incomplete`, of every incomplete image). With
/// `with_dependents`, the images that need them are deleted too; without, such images are refused.
/// An unknown id is an error.
pub fn plan(
    store: &Store,
    ids: &[String],
    incomplete: bool,
    with_dependents: bool,
) -> Result<Plan, StoreError> {
    let mut states = BTreeMap::new();
    // Damaged images and the images each refers to.
    let mut damaged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in store.image_ids()? {
        match store.state(&id) {
            Ok(s) => {
                states.insert(id, s);
            }
            // A failed discovery removed its image since the listing began.
            Err(_) if !store.image_dir(&id).is_dir() => {}
            Err(_) => {
                let uses = damaged_uses(store, &id);
                damaged.insert(id, uses);
            }
        }
    }
    for id in ids {
        if !states.contains_key(id) && !damaged.contains_key(id) {
            store.state(id)?;
        }
    }
    let needs = needed_by(&states, &damaged);
    let mut wanted: BTreeSet<String> = ids.iter().cloned().collect();
    let mut plan = Plan::default();
    if incomplete {
        plan.damaged_kept = damaged
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for (id, s) in &states {
            if matches!(s, ImageState::Incomplete { .. }) && !wanted.contains(id) {
                if store.in_use(id, false)?.0 {
                    plan.running.push(id.clone());
                } else if unfinished(s) {
                    plan.unfinished_kept.push(id.clone());
                } else if matches!(s, ImageState::Incomplete { job: None, .. })
                    && store.image_dir(id).join("job.json").exists()
                {
                    // Its job file is there but unreadable: what its job is, nobody can tell.
                    plan.damaged_kept.push(id.clone());
                } else {
                    wanted.insert(id.clone());
                }
            }
        }
    }
    if with_dependents {
        let mut stack: Vec<String> = wanted.iter().cloned().collect();
        while let Some(id) = stack.pop() {
            for d in needs.get(&id).into_iter().flatten() {
                if wanted.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
    } else {
        for id in &wanted {
            let blockers: Vec<String> = needs
                .get(id)
                .into_iter()
                .flatten()
                .filter(|d| !wanted.contains(*d))
                .cloned()
                .collect();
            if !blockers.is_empty() {
                plan.refused.push((id.clone(), blockers));
            }
        }
    }
    plan.unfinished = wanted
        .iter()
        .filter(|id| states.get(*id).is_some_and(unfinished))
        .cloned()
        .collect();
    for id in &wanted {
        match store.in_use(id, true)? {
            (true, _) => plan.busy.push(id.clone()),
            (false, lock) => plan.held.extend(lock),
        }
    }
    plan.delete = wanted.into_iter().collect();
    plan.bytes = plan.delete.iter().map(|id| stream_bytes(store, id)).sum();
    Ok(plan)
}

/// The size of image `id`'s stream data files (`stream-<n>.data`), as they are on disk: an
/// incomplete image's streams hold what its child jobs wrote before they stopped.
fn stream_bytes(store: &Store, id: &str) -> u64 {
    let Ok(entries) = fs::read_dir(store.image_dir(id)) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("stream-")?.strip_suffix(".data"))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Whether an incomplete image's job has not ended: its discovery succeeded and no end (given up
/// or failed) was recorded. Its child jobs or its finalize may still be to run, and it may still
/// hold a snapshot that only its postprocess cleans up.
fn unfinished(state: &ImageState) -> bool {
    matches!(
        state,
        ImageState::Incomplete {
            job: Some(job),
            reason: None,
        } if job.snapid.is_some()
    )
}

/// The images a damaged image refers to: those of its catalog's image table (the catalog checks
/// itself, so this holds without the manifest) and its job's base. Nothing, when neither can be
/// read: then none of its data can be located anyway.
fn damaged_uses(store: &Store, id: &str) -> Vec<String> {
    let dir = store.image_dir(id);
    let mut uses: Vec<String> = Catalog::load(&dir.join("catalog"))
        .map(|c| c.images.into_iter().skip(1).collect())
        .unwrap_or_default();
    if let Some(base) = store.job(id).ok().and_then(|j| j.base) {
        uses.push(base);
    }
    uses.sort();
    uses.dedup();
    uses
}

/// For each image, the images that need it (`damaged`: damaged images and what they refer to).
fn needed_by(
    states: &BTreeMap<String, ImageState>,
    damaged: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let all = states
        .iter()
        .map(|(id, s)| {
            let uses: Vec<&String> = match s {
                ImageState::Complete(m) => m.depends_on.iter().collect(),
                ImageState::Incomplete { job, .. } => {
                    job.iter().filter_map(|j| j.base.as_ref()).collect()
                }
            };
            (id, uses)
        })
        .chain(damaged.iter().map(|(id, uses)| (id, uses.iter().collect())));
    for (id, uses) in all {
        for u in uses {
            if u != id {
                needs.entry(u.clone()).or_default().push(id.clone());
            }
        }
    }
    needs
}

/// Carry out a plan with nothing refused, busy or unfinished. Returns the leftovers of interrupted earlier deletes
/// that were removed on the way.
pub fn apply(store: &Store, plan: &Plan) -> Result<Vec<String>, StoreError> {
    assert!(
        plan.refused.is_empty() && plan.busy.is_empty() && plan.unfinished.is_empty(),
        "a plan with refused, busy or unfinished images is not applied"
    );
    let doomed: BTreeSet<&String> = plan.delete.iter().collect();
    // 1. The host state: policies whose last backups are deleted fall back to what remains.
    let complete = store.complete_manifests()?;
    let remaining: Vec<&Manifest> = complete
        .iter()
        .filter(|m| !doomed.contains(&m.image))
        .collect();
    let mut state: HostState = store.host_state()?;
    let mut changed = state.rebuilt;
    for (policy, p) in state.policies.iter_mut() {
        let names = |x: &Option<(i64, String)>| x.as_ref().is_some_and(|(_, i)| doomed.contains(i));
        if names(&p.last_backup) || names(&p.last_full) {
            *p = store::policy_state(policy, &remaining);
            changed = true;
        }
    }
    if changed {
        store.save_host_state(&state)?;
    }
    // 2. Out of the image namespace, durably; 3. removed.
    let images = store.root().join("images");
    for id in &plan.delete {
        let from = store.image_dir(id);
        let to = images.join(format!("{DELETING}{id}"));
        fs::rename(&from, &to).map_err(store::io_err(&from))?;
    }
    store::sync_dir(&images).map_err(store::io_err(&images))?;
    let mut leftovers = Vec::new();
    for e in fs::read_dir(&images)
        .map_err(store::io_err(&images))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(DELETING) else {
            continue;
        };
        fs::remove_dir_all(e.path()).map_err(store::io_err(&e.path()))?;
        if !doomed.contains(&id.to_string()) {
            leftovers.push(id.to_string());
        }
    }
    Ok(leftovers)
}
