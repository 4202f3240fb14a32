//! What became of each image, and of each rule: the one place the run's results are kept
//! while it goes on (for the report, prune, and the end-of-run check that no image was lost).
//!
//! Invariants: an image is in `synced` exactly when its outcome says it is in sync (synced,
//! unchanged, immutable or verified); a rule is recorded once, however often its expansion is retried;
//! per-image figures are kept only when asked for (`--report`), so memory does not grow with
//! them otherwise.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::outcome::{ImageStats, Outcome};
use crate::rule::{Pair, Rule};

/// A rule, and the pairs it expanded into (`None` until it did).
pub type Expansion = (Arc<Rule>, Option<Vec<Arc<Pair>>>);

#[derive(Default)]
struct Inner {
    rules: Vec<Expansion>,
    synced: Vec<Arc<Pair>>,
    outcomes: Vec<(Arc<Pair>, Outcome)>,
    stats: HashMap<Arc<Pair>, ImageStats>,
}

/// The results of a run, at its end: images in sync and outcomes sorted, each image once.
pub struct Results {
    pub rules: Vec<Expansion>,
    pub synced: Vec<Arc<Pair>>,
    pub outcomes: Vec<(Arc<Pair>, Outcome)>,
    pub stats: HashMap<Arc<Pair>, ImageStats>,
}

pub struct Record {
    inner: Mutex<Inner>,
    /// Whether per-image figures are kept.
    image_stats: bool,
}

impl Record {
    pub fn new(image_stats: bool) -> Record {
        Record { inner: Mutex::default(), image_stats }
    }

    /// `rule` starts expanding (again, after a failure: it is recorded once).
    pub fn expansion_started(&self, rule: &Arc<Rule>) {
        let mut inner = self.inner.lock();
        if !inner.rules.iter().any(|(r, _)| Arc::ptr_eq(r, rule)) {
            inner.rules.push((rule.clone(), None));
        }
    }

    /// `rule` expanded into `pairs`.
    pub fn expanded(&self, rule: &Arc<Rule>, pairs: &[Arc<Pair>]) {
        if let Some(entry) = self.inner.lock().rules.iter_mut().find(|(r, _)| Arc::ptr_eq(r, rule)) {
            entry.1 = Some(pairs.to_vec());
        }
    }

    /// `pair` ended so; its clock stops.
    pub fn ended(&self, pair: &Arc<Pair>, outcome: Outcome) {
        let mut inner = self.inner.lock();
        if self.image_stats {
            inner.stats.entry(pair.clone()).or_default().finish_now();
        }
        if matches!(outcome, Outcome::Synced(_) | Outcome::Unchanged(_) | Outcome::Immutable | Outcome::Verified(_)) {
            inner.synced.push(pair.clone());
        }
        inner.outcomes.push((pair.clone(), outcome));
    }

    /// `pair` starts (again): its clock starts the first time.
    pub fn started(&self, pair: &Arc<Pair>) {
        if self.image_stats {
            self.inner.lock().stats.entry(pair.clone()).or_default().started.get_or_insert_with(Instant::now);
        }
    }

    /// Count something `pair` moved.
    pub fn tally(&self, pair: &Arc<Pair>, f: impl FnOnce(&mut ImageStats)) {
        if self.image_stats {
            f(self.inner.lock().stats.entry(pair.clone()).or_default());
        }
    }

    /// The run is over: everything recorded, each image once and sorted; the clocks of images
    /// that failed or were interrupted stop where they got to.
    pub fn results(&self) -> Results {
        let Inner { rules, mut synced, mut outcomes, mut stats } = std::mem::take(&mut *self.inner.lock());
        synced.sort();
        synced.dedup();
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        outcomes.dedup_by(|a, b| a.0 == b.0);
        stats.values_mut().filter(|s| s.duration.is_zero()).for_each(ImageStats::finish_now);
        Results { rules, synced, outcomes, stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::reference::{parse_repository, ImageRef, Reference};

    fn pair(tag: &str) -> Arc<Pair> {
        let at = |r: &str| ImageRef { repo: parse_repository(r).unwrap(), reference: Reference::Tag(tag.into()) };
        Arc::new(Pair { src: at("a.io/x"), dst: at("b.io/x") })
    }

    #[test]
    fn in_sync_follows_the_outcome_and_each_image_counts_once() {
        let record = Record::new(true);
        let d = Digest::of(b"m");
        let (a, b, c) = (pair("a"), pair("b"), pair("c"));
        record.started(&a);
        record.tally(&a, |s| s.blobs_copied += 2);
        record.ended(&a, Outcome::Synced(d.clone()));
        record.ended(&a, Outcome::Synced(d.clone()));
        record.ended(&b, Outcome::Skipped("no platform".into()));
        record.ended(&c, Outcome::Planned(d));
        let results = record.results();
        assert_eq!(results.synced.len(), 1);
        assert!(Arc::ptr_eq(&results.synced[0], &a));
        assert_eq!(results.outcomes.len(), 3);
        assert_eq!(results.stats[&a].blobs_copied, 2);
        let quiet = Record::new(false);
        quiet.tally(&a, |s| s.blobs_copied += 1);
        assert!(quiet.results().stats.is_empty(), "figures are kept only when asked for");
    }
}
