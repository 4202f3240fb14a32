//! What every task can see: the registries, the run's options, the shared blob bookkeeping and
//! the queue — and the one error type tasks return.

use std::collections::HashMap;
use std::fmt;

use parking_lot::Mutex;

use super::graph::{complete, BlobState, Node, Pair, Task};
use super::progress::Event;
use super::queue::Queue;
use crate::manifest::PlatformFilter;
use crate::reference::Digest;
use crate::registry::{self, Registries};

/// Why a task failed.
#[derive(Debug)]
pub enum SyncError {
    Registry(Box<registry::Error>),
    /// The source served something we cannot copy.
    Manifest {
        image: String,
        message: String,
    },
    /// A bug: the task panicked.
    Panic(String),
}

impl SyncError {
    /// Whether a later pass may succeed: network trouble and damaged bodies may clear up; a
    /// refusal, an invalid manifest or a bug will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Registry(e) => e.is_transient() || e.is_damaged_body(),
            SyncError::Manifest { .. } | SyncError::Panic(_) => false,
        }
    }
}

impl SyncError {
    /// The operation behind it was already retried as often as the policy allows.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, SyncError::Registry(e) if e.exhausted)
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Registry(e) => e.fmt(f),
            SyncError::Manifest { image, message } => write!(f, "{image}: {message}"),
            SyncError::Panic(m) => write!(f, "internal error (please report it): {m}"),
        }
    }
}

impl From<registry::Error> for SyncError {
    fn from(e: registry::Error) -> Self {
        SyncError::Registry(Box::new(e))
    }
}

/// A blob at a destination: (registry, repository, digest).
pub type BlobKey = (String, String, Digest);

/// State shared by all workers for one run.
pub struct Ctx<'a> {
    pub regs: &'a Registries,
    pub filter: PlatformFilter,
    pub force: bool,
    /// Plan only: read everything, write nothing.
    pub dry_run: bool,
    /// Blob copies per destination: done, or in flight with waiters.
    pub blobs: Mutex<HashMap<BlobKey, BlobState>>,
    /// Where a blob is known to exist on a registry (registry, digest) → repo, for mounts.
    pub known: Mutex<HashMap<(String, Digest), String>>,
    /// Images that are in sync (copied or already unchanged).
    pub synced: Mutex<Vec<Pair>>,
    /// What became of each image that did not fail, for `--report`.
    pub outcomes: Mutex<Vec<(Pair, Outcome)>>,
    pub queue: Queue<Task, SyncError>,
    pub events: crossbeam_channel::Sender<Event>,
}

/// How an image ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copied; the digest pushed.
    Synced(Digest),
    /// The destination had the same digest.
    Unchanged(Digest),
    /// Nothing in it matched `--os/--arch`.
    Skipped(String),
    /// A dry run would copy it.
    Planned(Digest),
}

impl Ctx<'_> {
    /// Record how `pair` ended.
    pub fn outcome(&self, pair: &Pair, outcome: Outcome) {
        self.outcomes.lock().push((pair.clone(), outcome));
    }

    /// Tell the progress reporter (it outlives every worker, so a send cannot fail in practice).
    pub fn event(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// One wait fewer for `node`; the last one queues its push.
    pub fn complete(&self, node: &std::sync::Arc<Node>) {
        complete(&self.queue, node);
    }
}
