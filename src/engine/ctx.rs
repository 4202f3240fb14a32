//! What every task of a run shares, and nothing else: where images live, the run's options,
//! what is learned once (manifests read for several destinations, registries' referrers API,
//! referrer tags), the blob ledger, the record of results, the queue, and the progress channel.
//! Each piece owns its state and says its invariants where it is defined.

use std::sync::Arc;

use super::cache::ManifestCache;
use super::error::SyncError;
use super::events::{Event, Progress};
use super::graph::{complete, Node, Task};
use super::ledger::Ledger;
use super::lookups::Lookups;
use super::options::Options;
use super::outcome::Outcome;
use super::queue::Queue;
use super::record::Record;
use crate::digest::Digest;
use crate::rule::Pair;
use crate::stores::Stores;

pub struct Ctx<'a> {
    pub stores: &'a Stores,
    pub opts: Options,
    /// Source manifests read by several rules, fetched once.
    pub manifests: ManifestCache,
    pub lookups: Lookups,
    pub ledger: Ledger,
    pub record: Record,
    pub queue: Queue<Task, SyncError>,
    pub progress: Progress,
}

impl Ctx<'_> {
    /// Tell the progress reporter.
    pub fn event(&self, e: Event) {
        self.progress.event(e);
    }

    /// One wait fewer for `node`; the last one queues its push.
    pub fn complete(&self, node: &Arc<Node>) {
        complete(&self.queue, node);
    }

    /// `pair` is at the destination already, with the same digest.
    pub fn unchanged(&self, pair: &Arc<Pair>, digest: &Digest) {
        log::info!("unchanged {pair}: destination has the same digest");
        self.record.ended(pair, Outcome::Unchanged(digest.clone()));
        self.event(Event::ImageUnchanged);
    }

    /// `pair`'s destination lists its tag, which the rule takes as immutable.
    pub fn immutable(&self, pair: &Arc<Pair>) {
        log::info!("unchanged {pair}: the destination lists the tag, taken as immutable");
        self.record.ended(pair, Outcome::Immutable);
        self.event(Event::ImageImmutable);
    }

    /// Nothing of `pair` matches the platform filter.
    pub fn skipped(&self, pair: &Arc<Pair>, reason: String) {
        log::info!("skipped {}: {reason}", pair.src);
        self.record.ended(pair, Outcome::Skipped(reason));
        self.event(Event::ImageSkipped);
    }
}
