//! Read once, write many (blobs): a source blob that several destination registries need is
//! read from the source once. The first destination to need it streams it from the source;
//! the others wait for that copy, then read it from the destination that now has it — a relay
//! — so the source (a registry the user may pay egress to, or not own) serves each blob once
//! however many destinations a rule lists.
//!
//! A relay, not a tee: the scheduling is depth-first (an image's blobs go before the next image
//! is planned, which keeps memory flat in the number of tags), so the tasks of another
//! destination rarely exist at the moment a stream starts; waiting for the copy and reading it
//! back costs no memory and no disk, and does not depend on timing. A destination that fails
//! its copy releases the others at once: the next one reads the source itself. A relay read
//! that fails (e.g. a push-only account that may not pull) falls back to the source.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use super::context::SyncError;
use super::graph::{BlobTask, Task};
use super::queue::Queue;
use crate::digest::Digest;
use crate::reference::{Location, Repository};

enum Copy {
    /// Being copied from the source into `to`; tasks of other registries wait.
    InFlight { to: Repository, waiting: Vec<BlobTask> },
    /// At this destination repository: later copies read it from there.
    At(Repository),
}

/// Where a task should read its blob from.
pub enum Claim {
    /// From the source (this task copies it first; others wait for it).
    Source,
    /// From this destination repository, which has it.
    Relay(Repository),
    /// Nowhere yet: the task waits for a copy in flight (it is queued again after it).
    Parked,
}

/// Source blobs by (source registry, digest), for the source registries that feed more than
/// one destination registry in this run: elsewhere nothing is kept, so an ordinary run's
/// bookkeeping does not grow with its blobs.
#[derive(Default)]
pub struct Relays {
    fanned_out: HashSet<Location>,
    copies: Mutex<HashMap<(Location, Digest), Copy>>,
}

fn key(task: &BlobTask) -> (Location, Digest) {
    (task.src.location.clone(), task.blob.digest.clone())
}

impl Relays {
    /// Relays for a run of these (source, destination) repository pairs.
    pub fn for_routes<'a>(routes: impl IntoIterator<Item = (&'a Repository, &'a Repository)>) -> Relays {
        let mut to: HashMap<&Location, HashSet<&Location>> = HashMap::new();
        for (src, dst) in routes {
            to.entry(&src.location).or_default().insert(&dst.location);
        }
        let fanned_out = to.into_iter().filter(|(_, d)| d.len() > 1).map(|(s, _)| s.clone()).collect();
        Relays { fanned_out, copies: Mutex::default() }
    }

    /// Where `task` reads its blob from; a parked task is kept here (its waiters with it).
    pub fn claim(&self, task: &BlobTask) -> Claim {
        if !self.fanned_out.contains(&task.src.location) {
            return Claim::Source;
        }
        let mut copies = self.copies.lock();
        match copies.get_mut(&key(task)) {
            None => {
                copies.insert(key(task), Copy::InFlight { to: task.dst.clone(), waiting: Vec::new() });
                Claim::Source
            }
            // A repository of the same registry: the mount bookkeeping deals with it.
            Some(Copy::InFlight { to, .. }) if to.location == task.dst.location => Claim::Source,
            Some(Copy::InFlight { waiting, .. }) => {
                let waiters = std::mem::take(&mut *task.waiters.lock());
                waiting.push(BlobTask { waiters: waiters.into(), ..task.clone_empty() });
                log::debug!("blob {} for {}: waiting for its copy from {}", task.blob.digest, task.dst, task.src);
                Claim::Parked
            }
            Some(Copy::At(at)) if *at == task.dst || at.location == task.src.location => Claim::Source,
            Some(Copy::At(at)) => Claim::Relay(at.clone()),
        }
    }

    /// `task`'s copy ended (`ok`: the blob is at its destination now): the tasks waiting for it
    /// go again, to read it from there — or, after a failure, one of them from the source.
    pub fn settle(&self, task: &BlobTask, ok: bool, queue: &Queue<Task, SyncError>) {
        if !self.fanned_out.contains(&task.src.location) {
            return;
        }
        let mut copies = self.copies.lock();
        let k = key(task);
        let waiting = match copies.remove(&k) {
            Some(Copy::InFlight { to, waiting }) if to == task.dst => waiting,
            Some(Copy::At(at)) if !ok || at != task.dst => {
                copies.insert(k.clone(), Copy::At(at));
                Vec::new()
            }
            Some(other) => {
                copies.insert(k.clone(), other);
                return;
            }
            None => Vec::new(),
        };
        if ok && !copies.contains_key(&k) {
            copies.insert(k, Copy::At(task.dst.clone()));
        }
        drop(copies);
        for t in waiting {
            queue.push(Task::Blob(Box::new(t)));
        }
    }
}
