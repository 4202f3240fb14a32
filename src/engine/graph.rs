//! The task graph: what the workers run (the vocabulary every task kind shares), and the
//! counters that order manifest pushes.
//!
//! A manifest is pushed only when everything it references is at the destination. Each
//! [`Node`] counts what it still waits for, and the task that brings the count to zero queues
//! the push. The count is not set by hand: [`Graph::add`] derives it from the node's own wait
//! list (its blobs and child manifests) when the node is created, and no task is queued before
//! the whole graph of an image exists ([`Graph::enqueue`]) — so no completion can race ahead of
//! a counter. The one exception is planned for: an image's own blobs are queued before its
//! referrers are looked up, and an index's children are planned by tasks of their own (on a far
//! source each is a round trip the others need not wait for), so its top node is created
//! [held](Graph::add_held) — one wait more for each part still to be planned — and
//! [`Held::release`] counts a part in before it lets its wait go.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::queue::{Lane, Priority, Queue};
use crate::digest::Digest;
use crate::manifest::{BlobRef, Descriptor, MediaType};
use crate::reference::{ImageRef, Repository};
use crate::rule::{Pair, Refs, Rule, Slot};

/// A manifest waiting to be pushed once everything it references is at the destination.
pub struct Node {
    /// The image this manifest belongs to.
    pub image: Arc<Pair>,
    /// Where it comes from (for messages).
    pub src: ImageRef,
    /// Where it goes: repository plus the tag or digest to push it under.
    pub dst: ImageRef,
    pub action: Action,
    /// Blobs and child manifests still missing at the destination, and parts of it still
    /// being planned ([`Held`]).
    pending: AtomicUsize,
    /// A part of it could not be planned: it will never be pushed (the image failed; a retry
    /// plans it anew), so what is still queued to plan under it need not run.
    abandoned: AtomicBool,
    /// The index this manifest belongs to; `None` for the top-level image.
    pub parent: Option<Arc<Node>>,
}

impl Node {
    /// Whether a part of it failed to be planned ([`Held`] dropped unreleased).
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// One wait fewer; `true` when this was the last one.
    fn settle(&self) -> bool {
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// What a node does once everything it waits for is at the destination.
pub enum Action {
    /// PUT these exact bytes under the node's destination reference.
    Push { bytes: Vec<u8>, media_type: MediaType },
    /// Nothing: the image was at the destination already, and only manifests referring to it
    /// (its children here) were missing. Completes the image as unchanged.
    Settle(Digest),
}

/// A manifest as planned, before any task exists: what it needs, and its children (child
/// manifests of an index, and manifests referring to it — all pushed before it).
pub struct Planned {
    pub src: ImageRef,
    pub dst: ImageRef,
    pub action: Action,
    pub blobs: Vec<BlobRef>,
    pub children: Vec<Planned>,
}

impl Planned {
    /// A manifest to push.
    pub fn push(src: ImageRef, dst: ImageRef, bytes: Vec<u8>, media_type: MediaType) -> Planned {
        Planned { src, dst, action: Action::Push { bytes, media_type }, blobs: Vec::new(), children: Vec::new() }
    }

    /// Every node of this tree, depth first (for a dry run's counts).
    pub fn walk(&self) -> Vec<&Planned> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }
}

/// The tasks of one image (or of a part of it planned late, see [`Held`]), built whole before
/// the first is queued.
#[derive(Default)]
pub struct Graph {
    blobs: BTreeMap<Digest, (BlobRef, Vec<Arc<Node>>)>,
    ready: Vec<Arc<Node>>,
}

impl Graph {
    /// Add `planned` and its children; each node's counter is the length of its wait list.
    pub fn add(&mut self, planned: Planned, image: &Arc<Pair>, parent: Option<Arc<Node>>) {
        self.add_node(planned, image, parent, 0);
    }

    /// Add the top-level `planned` and its children, its node waiting for one thing more: the
    /// manifests still to be planned under it, handed over by [`Held::release`]. Until then it
    /// is not pushed, however soon its blobs arrive.
    pub fn add_held(&mut self, planned: Planned, image: &Arc<Pair>) -> Held {
        Held { node: self.add_node(planned, image, None, 1), image: image.clone(), released: false }
    }

    fn add_node(&mut self, planned: Planned, image: &Arc<Pair>, parent: Option<Arc<Node>>, held: usize) -> Arc<Node> {
        let Planned { src, dst, action, blobs, children } = planned;
        let waits = blobs.len() + children.len() + held;
        let (pending, abandoned) = (AtomicUsize::new(waits), AtomicBool::new(false));
        let node = Arc::new(Node { image: image.clone(), src, dst, action, pending, abandoned, parent });
        if waits == 0 {
            self.ready.push(node.clone());
        }
        for b in blobs {
            self.blobs.entry(b.digest.clone()).or_insert_with(|| (b, Vec::new())).1.push(node.clone());
        }
        for child in children {
            self.add_node(child, image, Some(node.clone()), 0);
        }
        node
    }

    /// Queue every task of the graph: manifests that wait for nothing, and one task per blob,
    /// the largest first (by the size its manifest gives; unknown sizes last). Workers take
    /// them in this order, so an image's longest transfer starts first instead of straggling
    /// after the short ones, alone at the end of the image, or of the run.
    pub fn enqueue<E: Send>(self, queue: &Queue<Task, E>, src: &Repository, dst: &Repository) {
        for node in self.ready {
            queue.push(Task::Manifest(node));
        }
        let mut blobs: Vec<_> = self.blobs.into_values().collect();
        // Stable: blobs of one size stay in digest order.
        blobs.sort_by_key(|(blob, _)| std::cmp::Reverse(blob.size));
        for (blob, waiters) in blobs {
            let task = BlobTask { src: src.clone(), dst: dst.clone(), blob, waiters: Mutex::new(waiters) };
            queue.push(Task::Blob(Box::new(task)));
        }
    }
}

/// One wait of a top-level node created by [`Graph::add_held`]: for manifests still to be
/// planned under it. Dropped without [`release`](Held::release) (their planning failed), the
/// node is never pushed: the image fails, and its tag never reaches the destination.
pub struct Held {
    node: Arc<Node>,
    image: Arc<Pair>,
    released: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.released {
            self.node.abandoned.store(true, Ordering::Release);
        }
    }
}

impl Held {
    /// One more wait on the same node (for another part planned apart). The node cannot have
    /// been pushed: this wait is still held.
    pub fn hold_more(&self) -> Held {
        self.node.pending.fetch_add(1, Ordering::AcqRel);
        Held { node: self.node.clone(), image: self.image.clone(), released: false }
    }

    /// The node this waits on (abandoned or not).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Put `children` under the node (pushed before it), queue their tasks, then let go of
    /// the held wait: counted in first, so the node cannot be pushed without them.
    pub fn release<E: Send>(
        mut self,
        children: Vec<Planned>,
        queue: &Queue<Task, E>,
        src: &Repository,
        dst: &Repository,
    ) {
        self.released = true;
        self.node.pending.fetch_add(children.len(), Ordering::AcqRel);
        let mut graph = Graph::default();
        for child in children {
            graph.add_node(child, &self.image, Some(self.node.clone()), 0);
        }
        graph.enqueue(queue, src, dst);
        complete(queue, &self.node);
    }
}

/// One wait fewer for `node`; the last one queues its push.
pub fn complete<E: Send>(queue: &Queue<Task, E>, node: &Arc<Node>) {
    if node.settle() {
        queue.push(Task::Manifest(node.clone()));
    }
}

pub struct BlobTask {
    pub src: Repository,
    pub dst: Repository,
    pub blob: BlobRef,
    /// Nodes to notify when the blob is at the destination.
    pub waiters: Mutex<Vec<Arc<Node>>>,
}

impl BlobTask {
    /// The same blob for the same repositories, with this task's waiters moved to it (a task
    /// parked until another copy ends, and queued again then).
    pub fn take(&self) -> BlobTask {
        BlobTask {
            src: self.src.clone(),
            dst: self.dst.clone(),
            blob: self.blob.clone(),
            waiters: Mutex::new(std::mem::take(&mut *self.waiters.lock())),
        }
    }

    /// The image this task was planned for (a task's own waiters all belong to one image).
    pub fn image(&self) -> Option<Arc<Pair>> {
        self.waiters.lock().first().map(|n| n.image.clone())
    }
}

/// The images of an expanded rule still to be queued, from `from` on. A rule's images are
/// queued a window at a time, then this task again behind them, so that a rule of 100,000
/// tags holds a window of pairs in memory rather than 100,000, and its first image starts as
/// soon as the first window is queued.
pub struct Unqueued {
    pub rule: Arc<Rule>,
    /// The rule's slot number in the record.
    pub slot: u32,
    /// The source references of all its images, in slot order.
    pub refs: Arc<Refs>,
    /// The destination's tags, when the rule has immutable tags and the run takes the promise.
    pub listed: Option<Arc<HashSet<String>>>,
    pub from: usize,
}

impl Unqueued {
    /// The `i`th image of the rule.
    pub fn pair(&self, i: usize) -> Arc<Pair> {
        let slot = Slot { rule: self.slot, index: i as u32 };
        Arc::new(self.rule.pair(i, self.refs.get(i), Some(slot)))
    }
}

/// One child manifest of an index, to be planned (looked up at the destination, fetched,
/// its blobs and referrers found) and put under the index's held node.
pub struct ChildTask {
    pub image: Arc<Pair>,
    pub child: Descriptor,
    /// Taken when the child is planned; a failed try keeps it for the next pass.
    pub held: Mutex<Option<Held>>,
}

/// Every variant is one pointer wide: a rule's images wait in the queue a window at a time
/// ([`Unqueued`]), and the queue's size is paid per task.
pub enum Task {
    Rule(Arc<Rule>),
    /// The next window of an expanded rule's images, to be queued.
    Images(Box<Unqueued>),
    Image(Arc<Pair>),
    Child(Box<ChildTask>),
    Blob(Box<BlobTask>),
    Manifest(Arc<Node>),
}

impl Lane for Task {
    /// An image's own children and blobs go before new images: depth first. A manifest, queued
    /// once everything it references is at the destination, goes before them all: it finishes
    /// what they are still working towards.
    fn priority(&self) -> Priority {
        match self {
            Task::Manifest(_) => Priority::Next,
            Task::Child(_) | Task::Blob(_) => Priority::Urgent,
            Task::Rule(_) | Task::Images(_) | Task::Image(_) => Priority::Normal,
        }
    }
}

impl Task {
    /// The images that do not sync if this task fails for good.
    pub fn images(&self) -> Vec<Arc<Pair>> {
        match self {
            Task::Rule(_) => Vec::new(),
            Task::Images(u) => (u.from..u.refs.len()).map(|i| u.pair(i)).collect(),
            Task::Image(p) => vec![p.clone()],
            Task::Child(c) => vec![c.image.clone()],
            Task::Blob(b) => {
                let mut v: Vec<Arc<Pair>> = b.waiters.lock().iter().map(|n| n.image.clone()).collect();
                v.sort();
                v.dedup();
                v
            }
            Task::Manifest(n) => vec![n.image.clone()],
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Rule(r) => write!(f, "{}", r.describe()),
            Task::Images(u) => write!(f, "queue images {}.. of {}", u.from, u.rule.describe()),
            Task::Image(p) => write!(f, "sync {p}"),
            Task::Child(c) => write!(f, "plan manifest {} of {}", c.child.digest, c.image),
            Task::Blob(b) => write!(f, "copy blob {} from {} to {}", b.blob.digest, b.src, b.dst),
            Task::Manifest(n) => write!(f, "push manifest {} (from {})", n.dst, n.src),
        }
    }
}

/// A node waiting for nothing, of a one-node image `image` (for the tests of the bookkeeping
/// around nodes).
#[cfg(test)]
pub fn test_node(image: &Arc<Pair>) -> Arc<Node> {
    let planned = Planned::push(image.src.clone(), image.dst.clone(), Vec::new(), MediaType::default());
    let mut graph = Graph::default();
    graph.add(planned, image, None);
    graph.ready.pop().expect("a node without waits is ready")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{parse_repository, Reference};

    fn image(repo: &Repository, tag: &str) -> ImageRef {
        ImageRef { repo: repo.clone(), reference: Reference::Tag(tag.into()) }
    }

    /// The queued manifest pushes, taken off the queue; every queued blob arrives at once.
    fn run(queue: &Queue<Task, ()>) -> Vec<Arc<Node>> {
        let mut pushed = Vec::new();
        for t in queue.take_queued() {
            match t {
                Task::Blob(b) => b.waiters.lock().iter().for_each(|n| complete(queue, n)),
                Task::Manifest(n) => pushed.push(n),
                _ => panic!("only blobs and manifests are queued"),
            }
        }
        pushed.extend(queue.take_queued().into_iter().filter_map(|t| match t {
            Task::Manifest(n) => Some(n),
            _ => None,
        }));
        pushed
    }

    /// Where each pushed node goes.
    fn names(pushed: &[Arc<Node>]) -> Vec<String> {
        pushed.iter().map(|n| n.dst.to_string()).collect()
    }

    fn held(blobs: u8) -> (Held, Queue<Task, ()>, Repository, Repository) {
        let (src, dst) = (parse_repository("s:1/a").unwrap(), parse_repository("d:1/a").unwrap());
        let pair = Arc::new(Pair::new(image(&src, "v1"), image(&dst, "v1")));
        let queue = Queue::new();
        let mut top = Planned::push(image(&src, "v1"), image(&dst, "v1"), Vec::new(), MediaType::default());
        top.blobs = (0..blobs).map(|n| BlobRef { digest: Digest::of(&[n]), size: Some(1) }).collect();
        let mut graph = Graph::default();
        let held = graph.add_held(top, &pair);
        graph.enqueue(&queue, &src, &dst);
        (held, queue, src, dst)
    }

    #[test]
    fn a_held_image_is_pushed_after_the_children_planned_late() {
        let (held, queue, src, dst) = held(2);
        // Its blobs arrive before its referrers are planned: it is not pushed yet.
        assert!(run(&queue).is_empty(), "pushed before its referrers were planned");
        let sig = Planned::push(image(&src, "sig"), image(&dst, "sig"), Vec::new(), MediaType::default());
        held.release(vec![sig], &queue, &src, &dst);
        // The referrer goes first; the image only once the referrer is pushed.
        let pushed = run(&queue);
        assert_eq!(names(&pushed), ["d:1/a:sig"]);
        complete(&queue, pushed[0].parent.as_ref().expect("under the image"));
        assert_eq!(names(&run(&queue)), ["d:1/a:v1"]);
    }

    #[test]
    fn every_hold_must_be_released_before_the_image_is_pushed() {
        let (held, queue, src, dst) = held(1);
        let child = held.hold_more();
        let child_plan = Planned::push(image(&src, "c"), image(&dst, "c"), Vec::new(), MediaType::default());
        held.release(Vec::new(), &queue, &src, &dst);
        assert!(run(&queue).is_empty(), "pushed with a child still being planned");
        child.release(vec![child_plan], &queue, &src, &dst);
        let pushed = run(&queue);
        assert_eq!(names(&pushed), ["d:1/a:c"]);
        complete(&queue, pushed[0].parent.as_ref().expect("under the image"));
        assert_eq!(names(&run(&queue)), ["d:1/a:v1"]);
    }

    #[test]
    fn a_held_image_without_late_children_waits_for_its_blobs_only() {
        let (held, queue, src, dst) = held(0);
        assert!(run(&queue).is_empty());
        held.release(Vec::new(), &queue, &src, &dst);
        assert_eq!(run(&queue).len(), 1);
        // Never released (its referrers could not be planned): never pushed.
        let (held, queue, _, _) = self::held(1);
        drop(held);
        assert!(run(&queue).is_empty());
    }
}
