//! The sync engine: rules become image tasks, image tasks become blob and manifest tasks (and,
//! for an index, one task per child manifest to plan), and a fixed pool of worker threads runs
//! them all from one queue.
//!
//! ```text
//! Rule ──> Image ──> [Child ...] ──> Blob ... ──(counter reaches 0)──> Manifest (child) ──> Manifest (index/tag)
//! ```
//!
//! - [`graph`]: the task vocabulary and the counters that order pushes (a manifest goes up
//!   only when everything it references is at the destination — never a partial image).
//! - [`context`]: what tasks share, and their error type.
//! - [`rule`], [`image`] (images and their children), [`blob`], [`push`]: the task kinds;
//!   [`verify`] audits an image instead of syncing it (`--verify`).
//! - [`queue`]: the worker pool; [`progress`]: events and totals, shown by [`live`] on a terminal.
//!
//! **Scheduling is depth first.** An image's child, blob and manifest tasks go to the queue's
//! urgent lane, which workers always serve first; a worker starts a new image (or expands a
//! rule) only when no started image has work waiting. So about `--proc` images are in flight at any time:
//! memory is bounded by `--proc`, not by the number of tags, the first images land within
//! seconds on a 10,000-tag run, and an interrupted run leaves whole images behind.
//!
//! **Retries.** Inside a task, transient failures are retried with back-off (see
//! [`crate::retry`]). After the queue drains, tasks that failed transiently are
//! queued again, `--retries` times; permanent failures (refusals, invalid manifests) are not.
//!
//! **Stopping.** After a stop request ([`crate::stop`]) no new task starts; running transfers
//! notice it at their next read and end; the images not finished are reported as failed.

mod blob;
mod cache;
mod context;
mod graph;
mod image;
mod live;
mod progress;
mod prune;
mod push;
mod queue;
mod referrers;
mod relay;
mod rule;
mod select;
mod tree;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::manifest::PlatformFilter;
use crate::reference::{ImageRef, Repository};
use crate::stores::Stores;
use context::{Ctx, SyncError};
use graph::Task;
use queue::Queue;

pub use context::{ImageStats, Mode, Outcome, Referrers};
pub use graph::{Namespace, Pair, Rule};
pub use progress::Totals;
pub use select::{LatestBy, Selection};

/// How often a progress line is logged while a run goes on.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// What to sync, and how.
#[derive(Debug)]
pub struct Job {
    pub rules: Vec<Rule>,
    /// Worker threads.
    pub proc: usize,
    /// Extra passes over transiently failed tasks.
    pub retries: usize,
    pub platforms: PlatformFilter,
    /// Copy even when the destination has the same digest.
    pub force: bool,
    /// Sync; or resolve everything against the registries and report the plan (a dry run); or
    /// audit the destinations. The last two send no request that writes.
    pub mode: Mode,
    /// Show the live display on stderr (a terminal) instead of periodic progress lines.
    pub live: bool,
    /// Which referrers are copied with their subject.
    pub referrers: Referrers,
    /// Keep what each image moved and how long it took (for `--report`). Off, nothing of the
    /// kind is kept per image: the run's memory does not grow with it.
    pub image_stats: bool,
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
    fn of(e: &SyncError) -> Cause {
        Cause { class: e.class(), message: e.to_string() }
    }

    fn interrupted() -> Cause {
        Cause { class: "interrupted", message: "not finished: the run was interrupted".into() }
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
}

/// What a run did.
pub struct Report {
    pub failures: Vec<Failure>,
    pub totals: Totals,
    pub synced: Vec<Arc<Pair>>,
    /// How each image that did not fail ended, sorted.
    pub outcomes: Vec<(Arc<Pair>, Outcome)>,
    /// What each image moved and how long it took (failed ones included, as far as they got).
    pub stats: HashMap<Arc<Pair>, ImageStats>,
    pub elapsed: Duration,
}

/// Run every rule of `job` to completion, with retries, or until a stop is requested.
pub fn run(job: Job, stores: &Stores) -> Report {
    let start = Instant::now();
    let view = if job.live { progress::View::Live } else { progress::View::Log(PROGRESS_INTERVAL) };
    let (events, reporter) = progress::start(view);
    let ctx = Ctx {
        stores,
        filter: job.platforms,
        force: job.force,
        mode: job.mode,
        referrers: job.referrers,
        manifests: cache::ManifestCache::for_sources(job.rules.iter().map(|r| &r.src.repo)),
        referrers_api: Mutex::new(HashMap::new()),
        rules: Mutex::new(Vec::new()),
        tags: Mutex::new(HashMap::new()),
        first_ask: Mutex::new(()),
        blobs: Mutex::new(HashMap::new()),
        known: Mutex::new(HashMap::new()),
        moving_blobs: Mutex::new(HashMap::new()),
        relays: relay::Relays::for_routes(job.rules.iter().map(|r| (&r.src.repo, &r.dst.repo))),
        synced: Mutex::new(Vec::new()),
        outcomes: Mutex::new(Vec::new()),
        stats: Mutex::new(HashMap::new()),
        image_stats: job.image_stats,
        queue: Queue::new(),
        events,
        next_transfer: Default::default(),
    };
    for rule in job.rules {
        ctx.queue.push(Task::Rule(Arc::new(rule)));
    }
    let mut causes = Causes::default();
    let mut failed = Vec::new();
    for round in 0..=job.retries {
        ctx.queue.run_pass(job.proc, |task| run_task(&ctx, task), SyncError::Panic, crate::stop::requested);
        let mut retry = Vec::new();
        for (task, e) in ctx.queue.take_failed() {
            causes.note(&task, &e);
            if e.is_transient() && round < job.retries && !crate::stop::requested() {
                log::debug!("{task} failed, will retry: {e}");
                retry.push(task);
            } else {
                failed.push((task, Cause::of(&e)));
            }
        }
        if crate::stop::requested() {
            for task in ctx.queue.take_queued().into_iter().chain(retry) {
                failed.push((task, Cause::interrupted()));
            }
            break;
        }
        if retry.is_empty() {
            break;
        }
        log::info!("retrying {} failed task(s) (retry {} of {})", retry.len(), round + 1, job.retries);
        retry.into_iter().for_each(|t| ctx.queue.push(t));
    }
    let mut synced = std::mem::take(&mut *ctx.synced.lock());
    synced.sort();
    synced.dedup();
    let mut failures = causes.failures(failed, &synced);
    if !crate::stop::requested() {
        failures.extend(unfinished(&ctx, &synced, &failures));
    }
    let pruned = if matches!(job.mode, Mode::Verify { .. }) { 0 } else { prune::prune(&ctx, &failures) };
    let mut outcomes = std::mem::take(&mut *ctx.outcomes.lock());
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    outcomes.dedup_by(|a, b| a.0 == b.0);
    let mut stats = std::mem::take(&mut *ctx.stats.lock());
    // Failed or interrupted images: as far as they got.
    stats.values_mut().filter(|s| s.duration.is_zero()).for_each(ImageStats::finish_now);
    drop(ctx); // the last sender: the reporter finishes
    let totals = Totals {
        dry_run: job.mode == Mode::DryRun,
        verify: matches!(job.mode, Mode::Verify { .. }),
        tags_pruned: pruned,
        ..reporter.join().unwrap_or_default()
    };
    Report { failures, totals, synced, outcomes, stats, elapsed: start.elapsed() }
}

/// Images a rule expanded into that neither synced, nor ended otherwise, nor failed: a bug
/// (a task lost on the way). Reported as failures, so that no image is ever lost silently.
fn unfinished(ctx: &Ctx, synced: &[Arc<Pair>], failures: &[Failure]) -> Vec<Failure> {
    use std::collections::HashSet;
    // By source and destination repository (a platform filter may rewrite the destination
    // reference of a digest pair); borrowed, not cloned: this holds every image of the run.
    fn key(p: &Pair) -> (&ImageRef, &Repository) {
        (&p.src, &p.dst.repo)
    }
    let (outcomes, rules) = (ctx.outcomes.lock(), ctx.rules.lock());
    let mut ended: HashSet<_> = synced.iter().map(|p| key(p)).collect();
    ended.extend(outcomes.iter().map(|(p, _)| key(p)));
    ended.extend(failures.iter().filter_map(|f| match f {
        Failure::Image { pair, .. } => Some(key(pair)),
        Failure::Rule { .. } => None,
    }));
    let mut out = Vec::new();
    for pair in rules.iter().filter_map(|(_, p)| p.as_ref()).flatten() {
        if ended.insert(key(pair)) {
            log::error!("{pair}: did not finish (an internal error: please report it)");
            let cause =
                Cause { class: "internal", message: "did not finish (an internal error: please report it)".into() };
            out.push(Failure::Image { pair: (**pair).clone(), cause });
        }
    }
    out
}

/// The dispatch: the one place that knows every kind of task.
fn run_task(ctx: &Ctx, task: &Task) -> Result<(), SyncError> {
    match task {
        Task::Rule(rule) => rule::expand(ctx, rule),
        Task::Image(pair) if matches!(ctx.mode, Mode::Verify { .. }) => verify::check(ctx, pair),
        Task::Image(pair) => image::sync(ctx, pair),
        Task::Child(c) => image::child(ctx, c),
        Task::Blob(b) => blob::copy(ctx, b),
        Task::Manifest(node) => push::push(ctx, node),
    }
}

/// The first error each image (or rule) met, across passes.
#[derive(Default)]
struct Causes {
    images: HashMap<Pair, Cause>,
}

impl Causes {
    fn note(&mut self, task: &Task, e: &SyncError) {
        for pair in task.images() {
            self.images.entry((*pair).clone()).or_insert_with(|| Cause::of(e));
        }
    }

    /// The images (and rules) that did not sync, one entry each, in a stable order.
    fn failures(&self, failed: Vec<(Task, Cause)>, synced: &[Arc<Pair>]) -> Vec<Failure> {
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
        images.retain(|p, _| synced.binary_search_by(|s| (**s).cmp(p)).is_err());
        rules.into_iter().chain(images.into_iter().map(|(pair, cause)| Failure::Image { pair, cause })).collect()
    }
}
