//! What a person changed on a rollout beside its manifest — pause, undo,
//! restartAt — and the user operations that change it, over the seams.
//!
//! Argo writes these into the Rollout object's spec. Serin's manifests on
//! one machine are the user's files, so the local status store keeps them
//! beside the manifest; on Kubernetes they are the object's own fields. In
//! both cases the driver resolves the manifest's spec with them into the
//! [`Target`] a step runs, and a manifest edit takes over again (an undo is
//! forgotten when the manifest's template changes, a `serin restart` when
//! the manifest's `restartAt` changes).

use serin_engine as e;
use serin_engine::{Millis, RevisionHash};

use crate::seams::{AdapterError, Platform, StatusStore};
use crate::step::Target;

/// A user's undo: run `revision` instead of the manifest's template while
/// the manifest still has `over_manifest`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undo {
    /// The older revision to run.
    pub revision: RevisionHash,
    /// The manifest's revision it overrides.
    pub over_manifest: RevisionHash,
}

/// A user's restart: `restartAt = at` while the manifest still says
/// `over_manifest` (like Argo's one field, the latest write wins).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restart {
    /// Milliseconds since the epoch.
    pub at: Millis,
    /// The manifest's `restartAt` it overrides.
    pub over_manifest: Option<Millis>,
}

/// The user's overrides of one rollout. Serializable so that an adapter
/// without a store of its own (Kubernetes: an annotation) can keep them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Overrides {
    /// `serin pause` (until `serin resume`).
    pub paused: bool,
    /// `serin undo`.
    pub undo: Option<Undo>,
    /// `serin restart`.
    pub restart: Option<Restart>,
}

/// A user operation on a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOperation {
    /// An engine command (promote, promote --full, pause, resume, abort,
    /// retry); `Restart` is [`UserOperation::Restart`].
    Command(e::Command),
    /// Run an older revision (`None`: the previous one).
    Undo {
        /// Revision number.
        to_revision: Option<u64>,
    },
    /// `restartAt = at`.
    Restart {
        /// Milliseconds since the epoch.
        at: Millis,
    },
}

/// Why a user operation was not carried out. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// The engine refused it.
    #[error(transparent)]
    Refused(#[from] e::CommandError),
    /// An adapter failed.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

impl Overrides {
    /// Applies pause and restart to a manifest's spec; returns the revision
    /// an undo asks to run instead of the manifest's template, if it still
    /// applies (the caller swaps in that revision's recorded workload).
    pub fn apply(&self, spec: &mut e::RolloutSpec) -> Option<&RevisionHash> {
        spec.paused = spec.paused || self.paused;
        if let Some(r) = &self.restart
            && r.over_manifest == spec.restart_at
        {
            spec.restart_at = Some(r.at);
        }
        self.undo
            .as_ref()
            .filter(|u| u.over_manifest == spec.template_hash)
            .map(|u| &u.revision)
    }
}

/// The target a step runs: the manifest's target with the user's
/// overrides applied. An undo whose revision has no recorded workload is
/// ignored (the manifest's template runs).
pub async fn resolve<S: StatusStore>(store: &S, manifest: Target) -> Result<Target, AdapterError> {
    let o = store.overrides(&manifest.spec.name).await?;
    let mut target = manifest;
    if let Some(revision) = o.apply(&mut target.spec)
        && let Some(workload) = store.workload(&target.spec.name, revision).await?
    {
        target.spec.template_hash = revision.clone();
        target.workload.template = workload.template;
    }
    Ok(target)
}

/// Carries out a user operation on the rollout whose manifest target is
/// `manifest`: an engine command changes the status (and `paused`), undo
/// and restart become overrides. Returns the revision an undo chose.
/// The caller should [`crate::Driver::reset`] the rollout's backoff: a
/// person acted, so the next step runs at once.
pub async fn operate<P: Platform, S: StatusStore>(
    platform: &P,
    store: &S,
    manifest: &Target,
    op: &UserOperation,
    now: Millis,
) -> Result<Option<RevisionHash>, OperateError> {
    let name = manifest.spec.name.as_str();
    let mut spec = resolve(store, manifest.clone()).await?.spec;
    let mut o = store.overrides(name).await?;
    let mut chosen = None;
    match op {
        UserOperation::Undo { to_revision } => {
            let numbers = store.revision_numbers(name).await?;
            let mut revisions = platform.observe(name).await?;
            for r in &mut revisions {
                r.number = numbers.get(&r.hash).copied().unwrap_or(0);
            }
            // Every recorded revision is a candidate, at zero replicas when
            // the platform no longer has it: Argo keeps old ReplicaSets at
            // zero, and a platform that forgets a revision once its last pod
            // is gone (the local one) would otherwise answer "no previous
            // revision" as soon as the old one was scaled down.
            for (hash, number) in &numbers {
                if !revisions.iter().any(|r| &r.hash == hash) {
                    revisions.push(e::ObservedRevision {
                        hash: hash.clone(),
                        number: *number,
                        replicas: 0,
                        ready: 0,
                        available: 0,
                        oldest_pod_created: None,
                    });
                }
            }
            let observed = e::Observed {
                revisions,
                ..Default::default()
            };
            let target = e::undo_target(&observed, &spec.template_hash, *to_revision)?;
            o.undo = Some(Undo {
                revision: target.clone(),
                over_manifest: manifest.spec.template_hash.clone(),
            });
            chosen = Some(target);
        }
        UserOperation::Restart { at } => {
            let mut status = store.status(name).await?;
            e::apply_command(
                &mut spec,
                &mut status,
                &e::Command::Restart { at: *at },
                now,
            )?;
            o.restart = Some(Restart {
                at: *at,
                over_manifest: manifest.spec.restart_at,
            });
        }
        UserOperation::Command(cmd) => {
            let mut status = store.status(name).await?;
            e::apply_command(&mut spec, &mut status, cmd, now)?;
            o.paused = spec.paused;
            store.save(name, &status, None).await?;
        }
    }
    store.set_overrides(name, &o).await?;
    Ok(chosen)
}
