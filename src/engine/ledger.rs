//! The blob ledger: everything the run knows about blobs at their destinations, in one place
//! under one lock — which repository has each blob (done, or a copy in flight with the
//! manifests waiting for it), which repository of a registry has it to mount from, and, for a
//! source registry that feeds several destination registries, which destination has it to
//! relay from. A blob task is claim → transfer → settle: [`Ledger::claim`] decides whether the
//! task copies the blob at all (and from where), the task transfers it without any lock held,
//! and [`Ledger::settle`] records the end and hands back whoever waited for it.
//!
//! Invariants (kept by `claim` and `settle`, each one critical section):
//! - a blob is copied into a destination repository by at most one task at a time: a second
//!   task for it joins the first (its manifests wait for that copy);
//! - into one registry, a blob is streamed into one repository at a time: tasks of other
//!   repositories park until it is there, then mount it from there;
//! - from a source registry that feeds several destination registries, a blob is read once:
//!   the first destination streams it from the source, the others park and then read it from
//!   that destination (a relay). A relay read that fails falls back to the source; a copy that
//!   fails releases the parked tasks at once, so the next one reads the source itself;
//! - a parked task is queued again by the `settle` of the copy it waits for, exactly once.
//!
//! Copies in flight are kept until they end; where blobs are once copied is only remembered
//! for the most recently used few thousand ([`Recent`]), so that the ledger does not grow with
//! the tags of a huge run. Forgetting costs a `HEAD` (or, across repositories, a stream where
//! a mount would have done), never a blob.
//!
//! Why a relay rather than a tee: scheduling is depth first (an image's blobs go before the
//! next image is planned, which keeps memory flat in the number of tags), so the tasks of
//! another destination rarely exist at the moment a stream starts; waiting for the copy and
//! reading it back costs no memory and no disk, and does not depend on timing. Relay
//! bookkeeping is kept only for source registries that feed more than one destination
//! registry, so an ordinary run's ledger does not grow with relays.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::graph::{BlobTask, Node};
use super::recent::Recent;
use crate::digest::Digest;
use crate::reference::{Location, Repository};
use crate::rule::Pair;

/// What a task is to do with its blob.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// At the destination already; moved there by this image's task (`Some`) or another's.
    Done(Option<Arc<Pair>>),
    /// Being copied there by another task, whose end now also completes this task's
    /// manifests (the ones of the image that moves it, named).
    Joined(Option<Arc<Pair>>),
    /// Waits for a copy into another repository or registry, and is queued again when it ends.
    Parked,
    /// This task copies it: from its source, or (`relay`) from a destination that has it.
    Copy { relay: Option<Repository> },
}

/// The end of a copy: the manifests that joined it (to be completed on success, kept with the
/// task for its retry on failure), and the tasks parked on it, to be queued again.
#[derive(Default)]
pub struct Settled {
    pub joined: Vec<Arc<Node>>,
    pub requeue: Vec<BlobTask>,
}

/// A blob being copied into one destination repository by one task; these manifests wait
/// for it too.
struct Copying {
    joined: Vec<Arc<Node>>,
    mover: Option<Arc<Pair>>,
}

type RepoKey = (Location, Arc<str>, Digest);
type BlobKey = (Location, Digest);

/// How many blobs each kind of "it is there" is remembered for (per generation, see
/// [`Recent`]): enough for every blob of a large run of ordinary size, while a run of
/// 100,000 tags, each with a config of its own, does not keep one entry per tag.
const REMEMBERED: usize = 4096;

/// Copies in flight are kept until they end (tasks wait on them); where blobs are once
/// copied is only remembered ([`Recent`]): forgetting it costs a request, never a blob.
struct State {
    /// Copies into a destination repository in flight.
    copying: HashMap<RepoKey, Copying>,
    /// Blobs at a destination repository, moved by this image's task (`Some`).
    done: Recent<RepoKey, Option<Arc<Pair>>>,
    /// A blob being streamed into one repository of a destination registry, and the tasks of
    /// other repositories parked until it is there.
    streaming: HashMap<BlobKey, (Arc<str>, Vec<BlobTask>)>,
    /// A repository of a destination registry that has the blob: where others mount it from.
    has: Recent<BlobKey, Arc<str>>,
    /// A blob of a fanned-out source being read into `to`, and the tasks of other registries
    /// parked until then.
    relaying: HashMap<BlobKey, (Repository, Vec<BlobTask>)>,
    /// A destination repository that has a fanned-out source's blob: later copies read it there.
    relayed: Recent<BlobKey, Repository>,
}

impl Default for State {
    fn default() -> State {
        State {
            copying: HashMap::new(),
            done: Recent::new(REMEMBERED),
            streaming: HashMap::new(),
            has: Recent::new(REMEMBERED),
            relaying: HashMap::new(),
            relayed: Recent::new(REMEMBERED),
        }
    }
}

pub struct Ledger {
    /// Source registries that feed more than one destination registry in this run.
    fanned_out: HashSet<Location>,
    state: Mutex<State>,
}

fn repo_key(task: &BlobTask) -> RepoKey {
    (task.dst.location.clone(), task.dst.name.clone(), task.blob.digest.clone())
}

fn registry_key(task: &BlobTask) -> BlobKey {
    (task.dst.location.clone(), task.blob.digest.clone())
}

fn relay_key(task: &BlobTask) -> BlobKey {
    (task.src.location.clone(), task.blob.digest.clone())
}

impl Ledger {
    /// A ledger for a run of these (source, destination) repository pairs.
    pub fn for_routes<'a>(routes: impl IntoIterator<Item = (&'a Repository, &'a Repository)>) -> Ledger {
        let mut to: HashMap<&Location, HashSet<&Location>> = HashMap::new();
        for (src, dst) in routes {
            to.entry(&src.location).or_default().insert(&dst.location);
        }
        let fanned_out = to.into_iter().filter(|(_, d)| d.len() > 1).map(|(s, _)| s.clone()).collect();
        Ledger { fanned_out, state: Mutex::default() }
    }

    /// What `task` (planned for `image`) is to do. A task that joins or parks hands its
    /// manifests over here; one that copies has the blob marked as being copied by it.
    /// `mounts`: the destination registry may honour a cross-repository mount — when it is
    /// known not to (ECR unless enabled), waiting for another repository's copy gains nothing,
    /// and the blob is streamed into each repository at once.
    pub fn claim(&self, task: &BlobTask, image: Option<&Arc<Pair>>, mounts: bool) -> Claim {
        let mut state = self.state.lock();
        let key = repo_key(task);
        if let Some(mover) = state.done.get(&key) {
            return Claim::Done(mover.clone());
        }
        if let Some(copy) = state.copying.get_mut(&key) {
            copy.joined.append(&mut task.waiters.lock());
            return Claim::Joined(copy.mover.clone());
        }
        // Another repository of this registry is getting it right now, and none has it yet:
        // wait for that and mount it from there, rather than stream it a second time.
        let reg_key = registry_key(task);
        if mounts && state.has.get(&reg_key).is_none() {
            if let Some((_, parked)) = state.streaming.get_mut(&reg_key).filter(|(repo, _)| *repo != task.dst.name) {
                parked.push(task.take());
                log::debug!("blob {} for {}: waiting for its copy to another repository", task.blob.digest, task.dst);
                return Claim::Parked;
            }
        }
        let claim = self.claim_relay(&mut state, task);
        if let Claim::Copy { .. } = claim {
            state.streaming.entry(reg_key).or_insert_with(|| (task.dst.name.clone(), Vec::new()));
            state.copying.insert(key, Copying { joined: Vec::new(), mover: image.cloned() });
        }
        claim
    }

    /// Where a copy reads from (the source, or a destination that has it), or
    /// [`Claim::Parked`] until another registry's copy ends.
    fn claim_relay(&self, state: &mut State, task: &BlobTask) -> Claim {
        let from_source = Claim::Copy { relay: None };
        if !self.fanned_out.contains(&task.src.location) {
            return from_source;
        }
        let key = relay_key(task);
        if let Some((to, parked)) = state.relaying.get_mut(&key) {
            // A repository of the same registry: the registry's own bookkeeping deals with it.
            if to.location == task.dst.location {
                return from_source;
            }
            parked.push(task.take());
            log::debug!("blob {} for {}: waiting for its copy from {}", task.blob.digest, task.dst, task.src);
            return Claim::Parked;
        }
        match state.relayed.get(&key) {
            Some(at) if *at == task.dst || at.location == task.src.location => from_source,
            Some(at) => Claim::Copy { relay: Some(at.clone()) },
            None => {
                state.relaying.insert(key, (task.dst.clone(), Vec::new()));
                from_source
            }
        }
    }

    /// A repository of the destination's registry that has the blob, to mount it from.
    pub fn mount_source(&self, dst: &Repository, digest: &Digest) -> Option<Arc<str>> {
        let mut state = self.state.lock();
        state.has.get(&(dst.location.clone(), digest.clone())).cloned()
    }

    /// A copy failed and will be tried again: tasks parked on its relay need not wait for the
    /// retries (one of them reads the source itself). Returns them, to be queued again.
    pub fn release_relay(&self, task: &BlobTask) -> Vec<BlobTask> {
        let mut state = self.state.lock();
        self.settle_relay(&mut state, task, false)
    }

    /// `task`'s copy ended (`ok`: the blob is at its destination now, moved for `image`).
    pub fn settle(&self, task: &BlobTask, ok: bool, image: Option<&Arc<Pair>>) -> Settled {
        let mut state = self.state.lock();
        let mut requeue = self.settle_relay(&mut state, task, ok);
        // Whoever waited for this copy goes again: it finds the blob known here and mounts it
        // (or, if this copy failed, makes its own).
        let reg_key = registry_key(task);
        if ok {
            state.has.insert(reg_key.clone(), task.dst.name.clone());
        }
        if state.streaming.get(&reg_key).is_some_and(|(repo, _)| *repo == task.dst.name) {
            requeue.extend(state.streaming.remove(&reg_key).map(|(_, parked)| parked).unwrap_or_default());
        }
        let key = repo_key(task);
        let joined = state.copying.remove(&key).map(|c| c.joined).unwrap_or_default();
        if ok {
            state.done.insert(key, image.cloned());
        } else {
            state.done.remove(&key);
        }
        Settled { joined, requeue }
    }

    /// The relay part of a copy's end: the tasks parked on it, to be queued again.
    fn settle_relay(&self, state: &mut State, task: &BlobTask, ok: bool) -> Vec<BlobTask> {
        if !self.fanned_out.contains(&task.src.location) {
            return Vec::new();
        }
        let key = relay_key(task);
        let parked = match state.relaying.get(&key) {
            Some((to, _)) if *to == task.dst => state.relaying.remove(&key).map(|(_, p)| p).unwrap_or_default(),
            // Another task copies it now (this one released it during its retries).
            Some(_) => return Vec::new(),
            None => Vec::new(),
        };
        // A destination already recorded stays (a failed copy does not unrecord it).
        if ok && state.relayed.get(&key).is_none() {
            state.relayed.insert(key, task.dst.clone());
        }
        parked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BlobRef;
    use crate::reference::{parse_repository, ImageRef, Reference};

    fn repo(s: &str) -> Repository {
        parse_repository(s).unwrap()
    }

    fn image(dst: &str) -> Arc<Pair> {
        let at = |r: &str| ImageRef { repo: repo(r), reference: Reference::Tag("v1".into()) };
        Arc::new(Pair::new(at("src.io/a"), at(dst)))
    }

    /// A task copying blob `n` from `src` to `dst`, waited for by one manifest of `image`.
    fn task(src: &str, dst: &str, n: u8, image: &Arc<Pair>) -> BlobTask {
        let blob = BlobRef { digest: Digest::of(&[n]), size: Some(1) };
        let waiters = Mutex::new(vec![super::super::graph::test_node(image)]);
        BlobTask { src: repo(src), dst: repo(dst), blob, waiters }
    }

    #[test]
    fn one_copy_per_repository_and_later_tasks_join_it() {
        let ledger = Ledger::for_routes([(&repo("src.io/a"), &repo("dst.io/a"))]);
        let (one, two) = (image("dst.io/a"), image("dst.io/a"));
        let first = task("src.io/a", "dst.io/a", 1, &one);
        assert_eq!(ledger.claim(&first, Some(&one), true), Claim::Copy { relay: None });
        let second = task("src.io/a", "dst.io/a", 1, &two);
        assert_eq!(ledger.claim(&second, Some(&two), true), Claim::Joined(Some(one.clone())));
        assert!(second.waiters.lock().is_empty(), "its manifest now waits for the first copy");
        let settled = ledger.settle(&first, true, Some(&one));
        assert_eq!(settled.joined.len(), 1);
        assert!(settled.requeue.is_empty());
        let third = task("src.io/a", "dst.io/a", 1, &two);
        assert_eq!(ledger.claim(&third, Some(&two), true), Claim::Done(Some(one)));
        assert_eq!(third.waiters.lock().len(), 1, "a task finding it done completes its own manifests");
    }

    #[test]
    fn a_failed_copy_keeps_its_joined_manifests_for_the_retry_and_is_not_done() {
        let ledger = Ledger::for_routes([]);
        let one = image("dst.io/a");
        let first = task("src.io/a", "dst.io/a", 1, &one);
        assert!(matches!(ledger.claim(&first, Some(&one), true), Claim::Copy { .. }));
        assert!(matches!(ledger.claim(&task("src.io/a", "dst.io/a", 1, &one), Some(&one), true), Claim::Joined(_)));
        let settled = ledger.settle(&first, false, Some(&one));
        assert_eq!(settled.joined.len(), 1);
        assert!(matches!(ledger.claim(&first, Some(&one), true), Claim::Copy { .. }), "the retry copies it again");
    }

    #[test]
    fn another_repository_of_the_registry_waits_then_mounts() {
        let ledger = Ledger::for_routes([]);
        let (a, b) = (image("dst.io/a"), image("dst.io/b"));
        let first = task("src.io/a", "dst.io/a", 1, &a);
        assert!(matches!(ledger.claim(&first, Some(&a), true), Claim::Copy { .. }));
        let other = task("src.io/a", "dst.io/b", 1, &b);
        assert_eq!(ledger.claim(&other, Some(&b), true), Claim::Parked);
        assert!(ledger.mount_source(&repo("dst.io/b"), &Digest::of(&[1])).is_none());
        let settled = ledger.settle(&first, true, Some(&a));
        assert_eq!(settled.requeue.len(), 1, "the parked task is queued again, with its manifest");
        assert_eq!(settled.requeue[0].waiters.lock().len(), 1);
        assert_eq!(ledger.mount_source(&repo("dst.io/b"), &Digest::of(&[1])).as_deref(), Some("a"));
        assert!(matches!(ledger.claim(&settled.requeue[0], Some(&b), true), Claim::Copy { relay: None }));
        // Another blob is not held up by this one.
        assert!(matches!(ledger.claim(&task("src.io/a", "dst.io/b", 2, &b), Some(&b), true), Claim::Copy { .. }));
    }

    #[test]
    fn where_mounts_are_not_honoured_each_repository_streams_at_once() {
        let ledger = Ledger::for_routes([]);
        let (a, b) = (image("dst.io/a"), image("dst.io/b"));
        let first = task("src.io/a", "dst.io/a", 1, &a);
        assert!(matches!(ledger.claim(&first, Some(&a), false), Claim::Copy { .. }));
        let other = task("src.io/a", "dst.io/b", 1, &b);
        assert!(matches!(ledger.claim(&other, Some(&b), false), Claim::Copy { .. }), "not parked");
        // The second copy's end does not take the first's place as the registry's stream.
        assert!(ledger.settle(&other, true, Some(&b)).requeue.is_empty());
        let third = task("src.io/a", "dst.io/c", 1, &b);
        assert_eq!(ledger.claim(&third, Some(&b), true), Claim::Copy { relay: None }, "b has it: mount");
        ledger.settle(&first, true, Some(&a));
    }

    /// One source feeding two registries: the first's copy claimed, the second's parked on it.
    fn fanned_out() -> (Ledger, BlobTask, Arc<Pair>, Arc<Pair>) {
        let src = repo("src.io/a");
        let ledger = Ledger::for_routes([(&src, &repo("one.io/a")), (&src, &repo("two.io/a"))]);
        let (i1, i2) = (image("one.io/a"), image("two.io/a"));
        let first = task("src.io/a", "one.io/a", 1, &i1);
        assert_eq!(ledger.claim(&first, Some(&i1), true), Claim::Copy { relay: None });
        assert_eq!(ledger.claim(&task("src.io/a", "two.io/a", 1, &i2), Some(&i2), true), Claim::Parked);
        (ledger, first, i1, i2)
    }

    #[test]
    fn a_source_feeding_two_registries_is_read_once_then_relayed() {
        let (ledger, first, i1, i2) = fanned_out();
        let settled = ledger.settle(&first, true, Some(&i1));
        assert_eq!(settled.requeue.len(), 1);
        assert_eq!(ledger.claim(&settled.requeue[0], Some(&i2), true), Claim::Copy { relay: Some(repo("one.io/a")) });
    }

    #[test]
    fn a_failing_copy_releases_the_registries_waiting_for_its_relay() {
        let (ledger, first, i1, i2) = fanned_out();
        // The first copy fails once and will retry: the parked one goes now, from the source.
        let released = ledger.release_relay(&first);
        assert_eq!(released.len(), 1);
        assert_eq!(ledger.claim(&released[0], Some(&i2), true), Claim::Copy { relay: None });
        // The retry then succeeds: the other copy owns the relay now, nothing is requeued.
        assert!(ledger.settle(&first, true, Some(&i1)).requeue.is_empty());
    }

    #[test]
    fn no_relay_bookkeeping_without_fan_out() {
        let ledger = Ledger::for_routes([(&repo("src.io/a"), &repo("one.io/a"))]);
        let i = image("one.io/a");
        let t = task("src.io/a", "one.io/a", 1, &i);
        ledger.claim(&t, Some(&i), true);
        ledger.settle(&t, true, Some(&i));
        let state = ledger.state.lock();
        assert!(state.relaying.is_empty() && state.relayed.len() == 0);
    }

    #[test]
    fn where_blobs_are_is_forgotten_in_a_huge_run_but_never_a_copy_in_flight() {
        let ledger = Ledger::for_routes([]);
        let i = image("dst.io/a");
        let blob = |n: usize| {
            let b = BlobRef { digest: Digest::of(&n.to_le_bytes()), size: Some(1) };
            let waiters = Mutex::new(vec![super::super::graph::test_node(&i)]);
            BlobTask { src: repo("src.io/a"), dst: repo("dst.io/a"), blob: b, waiters }
        };
        let (early, in_flight) = (blob(0), blob(1));
        assert_eq!(ledger.claim(&early, None, true), Claim::Copy { relay: None });
        ledger.settle(&early, true, None);
        assert_eq!(ledger.claim(&in_flight, None, true), Claim::Copy { relay: None });
        for n in 2..3 * REMEMBERED {
            let t = blob(n);
            assert_eq!(ledger.claim(&t, None, true), Claim::Copy { relay: None });
            ledger.settle(&t, true, None);
        }
        let state = ledger.state.lock();
        assert!(state.done.len() <= 2 * REMEMBERED && state.has.len() <= 2 * REMEMBERED, "bounded");
        drop(state);
        assert_eq!(ledger.claim(&blob(0), None, true), Claim::Copy { relay: None }, "forgotten: checked again");
        assert_eq!(ledger.claim(&blob(1), None, true), Claim::Joined(None), "in flight: still joined");
        assert_eq!(ledger.claim(&blob(3 * REMEMBERED - 1), None, true), Claim::Done(None), "recent: remembered");
    }
}
