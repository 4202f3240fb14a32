//! How images end: synced, unchanged, skipped, planned, verified — or failed, with the first
//! root cause — and the [`Report`] a run hands back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::SyncError;
use super::events::Totals;
use super::graph::Task;
use crate::digest::Digest;
use crate::reference::{ImageRef, Location};
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

    /// An image taken as in sync in a bundle that could not be written out: `why` names the
    /// bundle and says what happened.
    pub fn bundle_not_written(why: &dyn fmt::Display) -> Cause {
        Cause { class: "bundle", message: format!("did not land: {why}") }
    }

    /// An image copied into an archive that an interrupted run only staged.
    pub fn bundle_kept(location: &Location) -> Cause {
        let message = format!(
            "did not land: {location} was not written, the run being interrupted; what it copied is kept and a \
             re-run finishes the archive"
        );
        Cause { class: "interrupted", message }
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

impl Report {
    /// The bundle at `location` was not written out (`cause`): what this run took as in sync
    /// there landed only if `kept` says the bundle, where it stays, holds it (the image's
    /// destination, with the digest the run saw there; none for an immutable tag). The others
    /// become failures — in the outputs, the failure lines and the exit — no longer in sync.
    /// Known only with [`super::Options::per_image`], which a run writing a bundle always has.
    pub fn not_landed(
        &mut self,
        location: &Location,
        cause: &Cause,
        mut kept: impl FnMut(&ImageRef, Option<&Digest>) -> bool,
    ) {
        let mut lost = Vec::new();
        let totals = &mut self.totals;
        self.outcomes.retain(|(pair, outcome)| {
            if pair.dst.repo.location != *location {
                return true;
            }
            let (count, digest) = match outcome {
                Outcome::Synced(d) => (&mut totals.images_synced, Some(d)),
                Outcome::Unchanged(d) => (&mut totals.images_unchanged, Some(d)),
                Outcome::Immutable => (&mut totals.images_immutable, None),
                // Nothing to land: filtered out, or not a run that writes.
                Outcome::Skipped(_) | Outcome::Planned(_) | Outcome::Verified(_) => return true,
            };
            if kept(&pair.dst, digest) {
                return true;
            }
            *count = count.saturating_sub(1);
            lost.push(pair.clone());
            false
        });
        if lost.is_empty() {
            return;
        }
        let gone: HashSet<&Pair> = lost.iter().map(|p| &**p).collect();
        self.synced.retain(|pair| !gone.contains(&**pair));
        let failed = lost.iter().map(|pair| Failure::Image { pair: (**pair).clone(), cause: cause.clone() });
        self.failures.extend(failed);
        // As `Causes::failures` orders them: the rules, then the images.
        self.failures.sort_by(|a, b| match (a.image(), b.image()) {
            (Some(x), Some(y)) => x.cmp(y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        });
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::reference::{parse_repository, Reference, Repository};

    fn pair(dst: &Repository, tag: &str) -> Arc<Pair> {
        let src = ImageRef { repo: parse_repository("a.io/x").unwrap(), reference: Reference::Tag(tag.into()) };
        Arc::new(Pair::new(src, ImageRef { repo: dst.clone(), reference: Reference::Tag(tag.into()) }))
    }

    /// What the bundle, where it stays, does not hold becomes a failure — copied or found
    /// `unchanged` (in what an earlier run staged); what it holds, and what went elsewhere,
    /// stays in sync.
    #[test]
    fn not_landed_fails_what_the_bundle_in_place_does_not_hold() {
        let bundle = Repository { location: Location::Dir(Path::new("/b").into()), name: "x".into() };
        let other = Repository { location: Location::Dir(Path::new("/c").into()), name: "x".into() };
        let registry = parse_repository("b.io/x").unwrap();
        let d = Digest::of(b"m");
        let (copied, kept, staged, elsewhere, pushed) =
            (pair(&bundle, "v3"), pair(&bundle, "v1"), pair(&bundle, "v2"), pair(&other, "v3"), pair(&registry, "v3"));
        let outcomes = vec![
            (copied.clone(), Outcome::Synced(d.clone())),
            (kept.clone(), Outcome::Unchanged(d.clone())),
            (staged.clone(), Outcome::Unchanged(d.clone())),
            (elsewhere.clone(), Outcome::Synced(d.clone())),
            (pushed.clone(), Outcome::Synced(d.clone())),
        ];
        let mut report = Report {
            failures: vec![Failure::Rule { src_text: "r".into(), dst_text: "s".into(), cause: Cause::interrupted() }],
            totals: Totals { images_synced: 3, images_unchanged: 2, ..Totals::default() },
            synced: outcomes.iter().map(|(p, _)| p.clone()).collect(),
            outcomes,
            stats: HashMap::new(),
            elapsed: Duration::ZERO,
            registries: BTreeMap::new(),
        };
        let cause = Cause::bundle_not_written(&"oci:/b: cannot write index.json: No space left on device");
        let mut asked = Vec::new();
        report.not_landed(&bundle.location, &cause, |image, digest| {
            asked.push((image.reference.to_string(), digest.cloned()));
            image.reference == Reference::Tag("v1".into())
        });
        assert_eq!(asked.len(), 3, "each image in the bundle is looked up once, with its digest: {asked:?}");
        assert!(asked.iter().all(|(_, digest)| digest.as_ref() == Some(&d)));
        let failed: Vec<Option<&Pair>> = report.failures.iter().map(Failure::image).collect();
        assert_eq!(failed, vec![None, Some(&*staged), Some(&*copied)], "the rule first, then the images in order");
        assert_eq!(
            report.failures[1].cause(),
            "did not land: oci:/b: cannot write index.json: No space left on device"
        );
        assert_eq!(report.failures[1].class(), "bundle");
        assert_eq!(report.synced, vec![kept.clone(), elsewhere.clone(), pushed.clone()]);
        assert_eq!(report.outcomes.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), report.synced);
        assert_eq!((report.totals.images_synced, report.totals.images_unchanged), (2, 1));
    }
}
