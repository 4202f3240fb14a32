//! How images end: synced, unchanged, skipped, planned, verified — or failed, with the first
//! root cause — and the [`Report`] a run hands back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::events::Totals;
use super::graph::Task;
use crate::digest::Digest;
use crate::rule::Pair;

/// How an image ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copied; the digest pushed.
    Synced(Digest),
    /// The destination had the same digest.
    Unchanged(Digest),
    /// The destination lists the tag, which the rule takes as immutable: nothing was compared.
    Immutable,
    /// Nothing in it matched `--os/--arch`.
    Skipped(String),
    /// A dry run would copy it.
    Planned(Digest),
    /// `--verify`: the destination has it, whole.
    Verified(Digest),
}

/// What one image moved. A blob shared by several images of the run counts as copied (or
/// mounted) for the image that moved it and as present for the others.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImageStats {
    pub bytes: u64,
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_pushed: u64,
    /// From the first time the image was started to its end (retries included).
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(skip)]
    pub(super) started: Option<Instant>,
}

impl ImageStats {
    /// The image ends now.
    pub fn finish_now(&mut self) {
        self.duration = self.started.map(|t| t.elapsed()).unwrap_or_default();
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Something that did not sync, with its first root cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Image {
        pair: Pair,
        cause: Cause,
    },
    /// A rule whose tags could not be listed (so its images are unknown).
    Rule {
        src_text: String,
        dst_text: String,
        cause: Cause,
    },
}

/// Why something failed: the error's class (by type, see [`SyncError::class`]) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub class: &'static str,
    pub message: String,
}

impl Cause {
    pub fn of(e: &SyncError) -> Cause {
        Cause { class: e.class(), message: e.to_string() }
    }

    pub fn interrupted() -> Cause {
        Cause { class: "interrupted", message: "not finished: the run was interrupted".into() }
    }

    /// An image that a rule expanded into and that never ended: a task lost on the way.
    pub fn unfinished() -> Cause {
        Cause { class: "internal", message: "did not finish (an internal error: please report it)".into() }
    }
}

impl Failure {
    /// Source and destination as the images file would name them.
    pub fn endpoints(&self) -> (String, String) {
        match self {
            Failure::Image { pair, .. } => (pair.src.to_string(), pair.dst.to_string()),
            Failure::Rule { src_text, dst_text, .. } => (src_text.clone(), dst_text.clone()),
        }
    }

    pub fn cause(&self) -> &str {
        &self.why().message
    }

    /// The class of the error, e.g. `not_found`, `denied`, `connection`, `manifest`.
    pub fn class(&self) -> &'static str {
        self.why().class
    }

    fn why(&self) -> &Cause {
        match self {
            Failure::Image { cause, .. } | Failure::Rule { cause, .. } => cause,
        }
    }

    /// The image that failed; `None` for a rule.
    pub fn image(&self) -> Option<&Pair> {
        match self {
            Failure::Image { pair, .. } => Some(pair),
            Failure::Rule { .. } => None,
        }
    }
}

/// What a run did.
pub struct Report {
    pub failures: Vec<Failure>,
    pub totals: Totals,
    /// The images in sync, sorted; like `outcomes` and `stats`, kept only when per-image
    /// results were asked for ([`super::Options::per_image`]).
    pub synced: Vec<Arc<Pair>>,
    /// How each image that did not fail ended, sorted.
    pub outcomes: Vec<(Arc<Pair>, Outcome)>,
    /// What each image moved and how long it took (failed ones included, as far as they got).
    pub stats: HashMap<Arc<Pair>, ImageStats>,
    pub elapsed: Duration,
    /// What the run learned about each registry (how it takes uploads, whether it has the
    /// referrers API), by registry name, as `(fact, value)` pairs.
    pub registries: BTreeMap<String, Vec<(&'static str, String)>>,
}

/// The first error each image met, across passes: what its failure line says, even when a
/// later pass failed it for another reason.
#[derive(Default)]
pub struct Causes {
    images: HashMap<Pair, Cause>,
}

impl Causes {
    pub fn note(&mut self, task: &Task, e: &SyncError) {
        for pair in task.images() {
            self.images.entry((*pair).clone()).or_insert_with(|| Cause::of(e));
        }
    }

    /// The images (and rules) that did not sync, one entry each, in a stable order.
    pub fn failures(&self, failed: Vec<(Task, Cause)>, in_sync: impl Fn(&Pair) -> bool) -> Vec<Failure> {
        let mut images: BTreeMap<Pair, Cause> = BTreeMap::new();
        let mut rules = Vec::new();
        for (task, last) in failed {
            if let Task::Rule(r) = &task {
                rules.push(Failure::Rule { src_text: r.src_text.clone(), dst_text: r.dst_text.clone(), cause: last });
                continue;
            }
            for pair in task.images() {
                let cause = self.images.get(&*pair).cloned().unwrap_or_else(|| last.clone());
                images.entry((*pair).clone()).or_insert(cause);
            }
        }
        images.retain(|p, _| !in_sync(p));
        rules.into_iter().chain(images.into_iter().map(|(pair, cause)| Failure::Image { pair, cause })).collect()
    }
}
