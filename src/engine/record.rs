//! What became of each image, and of each rule: the one place the run's results are kept
//! while it goes on (for the summary's checks, prune, and the end-of-run check that no image
//! was lost).
//!
//! Why it is compact: a run of 100,000 tags must not keep 100,000 pairs, digests and outcomes
//! to its end. Each rule's expansion is kept as its list of source references, and each of its
//! images as one byte at its [`Slot`] (ended? in sync?); a pair is rebuilt from its rule and
//! reference in the rare case that needs one (an image that never ended). The outcomes and
//! figures of each image are kept in full only when asked for (`--report`,
//! `--output-success-images`: [`Record::new`]'s `per_image`).
//!
//! Invariants: an image's byte says "in sync" exactly when one of its outcomes said it is in
//! sync (synced, unchanged, immutable or verified), and "ended" once any outcome was recorded;
//! a rule is recorded once, however often its expansion is retried, and its slot number is its
//! position in `rules`, which only grows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::outcome::{ImageStats, Outcome};
use crate::digest::Digest;
use crate::reference::Repository;
use crate::rule::{Pair, Refs, Rule, Slot};

/// The image recorded an outcome.
const ENDED: u8 = 1;
/// One of its outcomes says it is in sync.
const IN_SYNC: u8 = 2;

/// A rule's expansion as the record keeps it: the source references it took, in the order of
/// its images' slots, and what became of each.
pub struct Expanded {
    pub refs: Arc<Refs>,
    ends: Vec<u8>,
}

impl Expanded {
    /// The positions of the images that recorded no outcome.
    pub fn never_ended(&self) -> impl Iterator<Item = usize> + '_ {
        self.ends.iter().enumerate().filter(|(_, e)| **e & ENDED == 0).map(|(i, _)| i)
    }
}

/// A rule, and what it expanded into (`None` until it did).
pub type Expansion = (Arc<Rule>, Option<Expanded>);

#[derive(Default)]
struct Inner {
    rules: Vec<Expansion>,
    /// What images with a digest destination ended at (prune keeps those manifests).
    pinned: Vec<(Repository, Digest)>,
    /// Per image, only when asked for:
    synced: Vec<Arc<Pair>>,
    outcomes: Vec<(Arc<Pair>, Outcome)>,
    stats: HashMap<Arc<Pair>, ImageStats>,
}

/// The results of a run, at its end.
pub struct Results {
    pub rules: Vec<Expansion>,
    pub pinned: Vec<(Repository, Digest)>,
    /// In sync, sorted, each once; empty unless per-image results were asked for.
    pub synced: Vec<Arc<Pair>>,
    /// How each image ended, sorted, each once; empty unless asked for.
    pub outcomes: Vec<(Arc<Pair>, Outcome)>,
    pub stats: HashMap<Arc<Pair>, ImageStats>,
}

impl Results {
    /// Whether `pair` ended in sync (in any pass).
    pub fn in_sync(&self, pair: &Pair) -> bool {
        match pair.slot {
            Some(slot) => self.end(slot) & IN_SYNC != 0,
            None => self.synced.binary_search_by(|s| (**s).cmp(pair)).is_ok(),
        }
    }

    fn end(&self, slot: Slot) -> u8 {
        let expanded = self.rules.get(slot.rule as usize).and_then(|(_, e)| e.as_ref());
        expanded.and_then(|e| e.ends.get(slot.index as usize)).copied().unwrap_or(0)
    }
}

pub struct Record {
    inner: Mutex<Inner>,
    /// Whether each image's outcome and figures are kept.
    per_image: bool,
}

impl Record {
    pub fn new(per_image: bool) -> Record {
        Record { inner: Mutex::default(), per_image }
    }

    /// `rule` starts expanding (again, after a failure: it is recorded once); its slot number.
    pub fn expansion_started(&self, rule: &Arc<Rule>) -> u32 {
        let mut inner = self.inner.lock();
        match inner.rules.iter().position(|(r, _)| Arc::ptr_eq(r, rule)) {
            Some(i) => i as u32,
            None => {
                inner.rules.push((rule.clone(), None));
                (inner.rules.len() - 1) as u32
            }
        }
    }

    /// The rule of slot number `rule` expanded into images of these source references.
    pub fn expanded(&self, rule: u32, refs: Arc<Refs>) {
        if let Some(entry) = self.inner.lock().rules.get_mut(rule as usize) {
            entry.1 = Some(Expanded { ends: vec![0; refs.len()], refs });
        }
    }

    /// `pair` ended so; its clock stops.
    pub fn ended(&self, pair: &Arc<Pair>, outcome: Outcome) {
        let in_sync =
            matches!(outcome, Outcome::Synced(_) | Outcome::Unchanged(_) | Outcome::Immutable | Outcome::Verified(_));
        let mut inner = self.inner.lock();
        if let Some(slot) = pair.slot {
            let expanded = inner.rules.get_mut(slot.rule as usize).and_then(|(_, e)| e.as_mut());
            if let Some(end) = expanded.and_then(|e| e.ends.get_mut(slot.index as usize)) {
                *end |= ENDED | if in_sync { IN_SYNC } else { 0 };
            }
        }
        if let (Outcome::Synced(d) | Outcome::Unchanged(d), true) = (&outcome, pair.dst.is_digest()) {
            inner.pinned.push((pair.dst.repo.clone(), d.clone()));
        }
        if !self.per_image {
            return;
        }
        inner.stats.entry(pair.clone()).or_default().finish_now();
        if in_sync {
            inner.synced.push(pair.clone());
        }
        inner.outcomes.push((pair.clone(), outcome));
    }

    /// `pair` starts (again): its clock starts the first time.
    pub fn started(&self, pair: &Arc<Pair>) {
        if self.per_image {
            self.inner.lock().stats.entry(pair.clone()).or_default().started.get_or_insert_with(Instant::now);
        }
    }

    /// Count something `pair` moved.
    pub fn tally(&self, pair: &Arc<Pair>, f: impl FnOnce(&mut ImageStats)) {
        if self.per_image {
            f(self.inner.lock().stats.entry(pair.clone()).or_default());
        }
    }

    /// The run is over: everything recorded, each image once and sorted; the clocks of images
    /// that failed or were interrupted stop where they got to.
    pub fn results(&self) -> Results {
        let Inner { rules, pinned, mut synced, mut outcomes, mut stats } = std::mem::take(&mut *self.inner.lock());
        synced.sort();
        synced.dedup();
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        outcomes.dedup_by(|a, b| a.0 == b.0);
        stats.values_mut().filter(|s| s.duration.is_zero()).for_each(ImageStats::finish_now);
        Results { rules, pinned, synced, outcomes, stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::reference::{parse_repository, ImageRef, Reference};

    fn pair(tag: &str) -> Arc<Pair> {
        let at = |r: &str| ImageRef { repo: parse_repository(r).unwrap(), reference: Reference::Tag(tag.into()) };
        Arc::new(Pair::new(at("a.io/x"), at("b.io/x")))
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

    #[test]
    fn without_per_image_results_an_image_is_a_byte_at_its_slot() {
        let rule = Arc::new(crate::engine::testing::rule("a.io/x", "b.io/x"));
        let record = Record::new(false);
        let n = record.expansion_started(&rule);
        assert_eq!(record.expansion_started(&rule), n, "a retried expansion keeps its slot");
        let refs = Arc::new(Refs::tags(["a", "b", "c"]));
        record.expanded(n, refs.clone());
        let at = |i: usize| Arc::new(rule.pair(i, refs.get(i), Some(Slot { rule: n, index: i as u32 })));
        record.ended(&at(0), Outcome::Skipped("no platform".into()));
        record.ended(&at(0), Outcome::Unchanged(Digest::of(b"m")));
        record.ended(&at(1), Outcome::Planned(Digest::of(b"m")));
        let results = record.results();
        assert!(results.outcomes.is_empty() && results.synced.is_empty(), "nothing kept per image");
        assert!(results.in_sync(&at(0)), "in sync once any outcome said so");
        assert!(!results.in_sync(&at(1)) && !results.in_sync(&at(2)));
        let never: Vec<usize> = results.rules[n as usize].1.as_ref().unwrap().never_ended().collect();
        assert_eq!(never, [2]);
    }
}
