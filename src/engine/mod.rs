//! The sync engine: rules become image tasks, image tasks become blob and manifest tasks (and,
//! for an index, one task per child manifest to plan), and a fixed pool of worker threads runs
//! them all from one queue. It works on [`Stores`] (never asking whether a registry or a layout
//! answers) and shows nothing itself: progress goes to the [`Display`] `main` hands in.
//!
//! ```text
//! Rule ──> Image ──> [Child ...] ──> Blob ... ──(counter reaches 0)──> Manifest (child) ──> Manifest (index/tag)
//! ```
//!
//! - [`graph`]: the task vocabulary and the counters that order pushes (a manifest goes up
//!   only when everything it references is at the destination — never a partial image);
//!   [`queue`]: the worker pool, two lanes, depth first.
//! - The task kinds: [`expand`] (a rule), [`image`] (an image and an index's children),
//!   [`blob`], [`push`]; [`verify`] audits an image instead (`--verify`), [`dry_run`] reports
//!   what a copy would move, [`prune`] runs after the passes.
//! - Planning: [`plan`] (manifest trees, the platform filter, referrers planned like any
//!   manifest) with [`referrers`] (finding them, and what the destination lacks).
//! - Shared state, one owner each: [`ctx`] (what tasks share), [`ledger`] (blobs at their
//!   destinations: copies, mounts, relays), [`cache`] and [`lookups`] (what is learned once,
//!   in per-key [`crate::slots`]), [`record`] (what became of each image), [`events`] (progress and
//!   totals), [`options`].
//! - [`error`] and [`outcome`]: why a task failed; how an image ended; the [`Report`].
//!
//! **Scheduling is depth first.** An image's child, blob and manifest tasks go to the queue's
//! urgent lane, which workers always serve first; a worker starts a new image (or expands a
//! rule) only when no started image has work waiting. So about `--proc` images are in flight at
//! any time: memory is bounded by `--proc`, not by the number of tags, the first images land
//! within seconds on a 10,000-tag run, and an interrupted run leaves whole images behind.
//! A manifest whose blobs are all there goes to the front of the queue, and an image's blobs
//! are queued largest first (see [`queue`] and [`graph::Graph::enqueue`]).
//!
//! **Retries.** Inside a task, transient failures are retried with back-off (see
//! [`crate::retry`]). After the queue drains, tasks that failed transiently are queued again,
//! `--retries` times; permanent failures (refusals, invalid manifests) are not. Each new pass
//! is announced to the stores ([`Stores::new_pass`]): a registry that stopped answering is
//! asked once more whether it answers before its tasks are sent to it again.
//!
//! **Stopping.** After a stop request ([`crate::stop`]) no new task starts; running transfers
//! notice it at their next read and end; the images not finished are reported as failed.

mod blob;
mod cache;
mod ctx;
mod dry_run;
mod error;
mod events;
mod expand;
mod graph;
mod image;
mod ledger;
mod lookups;
mod options;
mod outcome;
mod plan;
mod prune;
mod push;
mod queue;
mod recent;
mod record;
mod referrers;
#[cfg(test)]
mod testing;
mod verify;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use cache::ManifestCache;
use ctx::Ctx;
use error::SyncError;
use events::Progress;
use graph::Task;
use ledger::Ledger;
use outcome::Causes;
use queue::Queue;
use record::{Expansion, Record};

pub use events::{Display, Totals, Transfer, Transfers};
pub use options::{Mode, Options, Referrers};
pub use outcome::{Cause, Failure, ImageStats, Outcome, Report};
pub use plan::MAX_DEPTH;

use crate::rule::{Rule, Slot};
use crate::stores::Stores;

/// What to sync, and how.
#[derive(Debug)]
pub struct Job {
    pub rules: Vec<Rule>,
    /// Worker threads.
    pub proc: usize,
    /// Extra passes over transiently failed tasks.
    pub retries: usize,
    pub opts: Options,
}

/// Run every rule of `job` to completion, with retries, or until a stop is requested, showing
/// its progress on `display`.
pub fn run(job: Job, stores: &Stores, display: Box<dyn Display>) -> Report {
    let start = Instant::now();
    let (events, reporter) = events::start(display);
    let ctx = Ctx {
        stores,
        manifests: ManifestCache::for_sources(job.rules.iter().map(|r| &r.src.repo)),
        lookups: Default::default(),
        ledger: Ledger::for_routes(job.rules.iter().map(|r| (&r.src.repo, &r.dst.repo))),
        record: Record::new(job.opts.per_image),
        queue: Queue::new(),
        progress: Progress::new(events),
        opts: job.opts,
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
        stores.new_pass();
        retry.into_iter().for_each(|t| ctx.queue.push(t));
    }
    let results = ctx.record.results();
    let mut failures = causes.failures(failed, |p| results.in_sync(p));
    if !crate::stop::requested() {
        failures.extend(unfinished(&results.rules, &failures));
    }
    let pruned = if ctx.opts.verify() { 0 } else { prune::prune(&ctx, &results.rules, &results.pinned, &failures) };
    let registries = learned(stores, &ctx.lookups);
    let (dry_run, verify) = (ctx.opts.dry_run(), ctx.opts.verify());
    drop(ctx); // the last sender: the reporter finishes
    let totals = Totals { dry_run, verify, tags_pruned: pruned, ..reporter.join().unwrap_or_default() };
    Report {
        failures,
        totals,
        synced: results.synced,
        outcomes: results.outcomes,
        stats: results.stats,
        elapsed: start.elapsed(),
        registries,
    }
}

/// What the run learned about each registry, for the report.
fn learned(stores: &Stores, lookups: &lookups::Lookups) -> BTreeMap<String, Vec<(&'static str, String)>> {
    let mut registries: BTreeMap<_, _> = stores.learned().into_iter().collect();
    for (store, has) in lookups.referrers_apis() {
        let v = if has { "yes" } else { "no (fallback tags)" };
        registries.entry(store).or_insert_with(Vec::new).push(("referrers_api", v.to_string()));
    }
    registries
}

/// Images a rule expanded into that neither synced, nor ended otherwise, nor failed: a bug
/// (a task lost on the way). Reported as failures, so that no image is ever lost silently.
fn unfinished(rules: &[Expansion], failures: &[Failure]) -> Vec<Failure> {
    let failed: HashSet<Slot> = failures.iter().filter_map(Failure::image).filter_map(|p| p.slot).collect();
    let mut out = Vec::new();
    for (n, (rule, expanded)) in rules.iter().enumerate() {
        let Some(expanded) = expanded else { continue };
        for index in expanded.never_ended() {
            let slot = Slot { rule: n as u32, index: index as u32 };
            if !failed.contains(&slot) {
                let pair = rule.pair(index, expanded.refs.get(index), Some(slot));
                log::error!("{pair}: did not finish (an internal error: please report it)");
                out.push(Failure::Image { pair, cause: Cause::unfinished() });
            }
        }
    }
    out
}

/// The dispatch: the one place that knows every kind of task.
fn run_task(ctx: &Ctx, task: &Task) -> Result<(), SyncError> {
    match task {
        Task::Rule(rule) => expand::expand(ctx, rule),
        Task::Images(unqueued) => {
            expand::queue_images(ctx, unqueued);
            Ok(())
        }
        Task::Image(pair) if ctx.opts.verify() => verify::check(ctx, pair),
        Task::Image(pair) => image::sync(ctx, pair),
        Task::Child(c) => image::child(ctx, c),
        Task::Blob(b) => blob::copy(ctx, b),
        Task::Manifest(node) => push::push(ctx, node),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{image, job, rule, src_dst, sync, MemStore, Op};
    use super::*;

    /// The sources (`registry/repository:tag`) and classes of the failures.
    fn failed(report: &Report) -> Vec<(String, &'static str)> {
        report.failures.iter().map(|f| (f.endpoints().0, f.class())).collect()
    }

    /// `src.io/a` with the images `v1`, `v2`, `v3`, and an empty `dst.io`.
    fn three() -> (Arc<MemStore>, Arc<MemStore>) {
        let (src, dst) = src_dst();
        for tag in ["v1", "v2", "v3"] {
            src.add("a", Some(tag), &image(tag).build());
        }
        (src, dst)
    }

    #[test]
    fn a_transient_failure_is_retried_in_a_later_pass() {
        let (src, dst) = src_dst();
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        src.fail(Op::GetBlob, Some(v1.layer(0).as_str()), 1, 503);
        let mut job = job(vec![rule("src.io/a", "dst.io/a")]);
        job.retries = 1;
        let report = sync(job, &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!((dst.tag("a", "v1"), src.count_on(Op::GetBlob, v1.layer(0))), (Some(v1.digest), 2));
    }

    #[test]
    fn a_transient_failure_left_after_the_last_pass_fails_its_image() {
        let (src, dst) = three();
        src.fail(Op::GetManifest, Some("v2"), 2, 503);
        let mut job = job(vec![rule("src.io/a", "dst.io/a")]);
        job.retries = 1;
        let report = sync(job, &[&src, &dst]);
        assert_eq!(failed(&report), [("src.io/a:v2".to_string(), "server")]);
        assert_eq!(src.count_on(Op::GetManifest, "v2"), 2);
    }

    #[test]
    fn a_permanent_failure_fails_only_its_image_and_is_not_retried() {
        let (src, dst) = three();
        src.fail(Op::GetManifest, Some("v2"), usize::MAX, 403);
        let mut job = job(vec![rule("src.io/a", "dst.io/a")]);
        job.retries = 2;
        let report = sync(job, &[&src, &dst]);
        assert_eq!(failed(&report), [("src.io/a:v2".to_string(), "denied")]);
        assert_eq!(dst.tags("a"), ["v1", "v3"]);
        assert_eq!(src.count_on(Op::GetManifest, "v2"), 1);
    }

    #[test]
    fn an_image_that_never_ended_is_reported_unfinished() {
        let r = Arc::new(rule("src.io/a:v1,v2", "dst.io/a"));
        let refs = Arc::new(crate::rule::Refs::tags(["v1", "v2"]));
        let pair = |n: u32, i: usize| Arc::new(r.pair(i, refs.get(i), Some(Slot { rule: n, index: i as u32 })));
        let run = |ends: Vec<(usize, Outcome)>| {
            let record = Record::new(false);
            let n = record.expansion_started(&r);
            record.expanded(n, refs.clone());
            for (i, outcome) in ends {
                record.ended(&pair(n, i), outcome);
            }
            record.results()
        };
        let synced = (0, Outcome::Synced(crate::digest::Digest::of(b"m")));
        let lost = unfinished(&run(vec![synced.clone()]).rules, &[]);
        assert_eq!(lost, [Failure::Image { pair: (*pair(0, 1)).clone(), cause: Cause::unfinished() }]);
        assert_eq!(lost[0].endpoints().0, "src.io/a:v2");
        let skipped = run(vec![synced.clone(), (1, Outcome::Skipped("no platform".into()))]);
        assert!(unfinished(&skipped.rules, &[]).is_empty(), "ended otherwise");
        let failed = Failure::Image { pair: (*pair(0, 1)).clone(), cause: Cause::interrupted() };
        assert!(unfinished(&run(vec![synced]).rules, &[failed]).is_empty(), "failed, so not lost");
    }
}
