//! The sync engine: rules become image tasks, image tasks become blob and manifest tasks, and a
//! fixed pool of worker threads runs them all from one queue.
//!
//! ```text
//! Rule ──> Image ──> Blob ... ──(counter reaches 0)──> Manifest (child) ──> Manifest (index/tag)
//! ```
//!
//! A manifest is pushed only when everything it references is at the destination: each
//! [`tasks::Node`] counts what it still waits for, and the task that brings the count to zero
//! queues the push. So a failure anywhere below leaves the destination tag untouched — never a
//! partial image.

mod image;
mod progress;
mod queue;
mod tasks;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Config, Rule};
use crate::manifest::PlatformFilter;
use crate::reference::ImageRef;
use crate::registry::{self, Registries};
use queue::Queue;
use tasks::{BlobState, Task};

/// How often a progress line is logged while a run goes on.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// Why a task failed.
#[derive(Debug)]
pub enum SyncError {
    Registry(registry::Error),
    /// The source served something we cannot copy.
    Manifest {
        image: String,
        message: String,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Registry(e) => e.fmt(f),
            SyncError::Manifest { image, message } => write!(f, "{image}: {message}"),
        }
    }
}

impl From<registry::Error> for SyncError {
    fn from(e: registry::Error) -> Self {
        SyncError::Registry(e)
    }
}

/// State shared by all workers for one run.
pub(crate) struct Ctx {
    regs: Registries,
    filter: PlatformFilter,
    force: bool,
    /// Blob copies per destination (registry, repo, digest): done, or in flight with waiters.
    blobs: Mutex<HashMap<(String, String, String), BlobState>>,
    /// Where a blob is known to exist on a registry (registry, digest) → repo, for mounts.
    known: Mutex<HashMap<(String, String), String>>,
    /// Pairs that are in sync at the end (copied or already unchanged).
    synced: Mutex<Vec<(ImageRef, ImageRef)>>,
    queue: Queue<Task, SyncError>,
    events: crossbeam_channel::Sender<progress::Event>,
}

impl Ctx {
    /// Tell the progress reporter (it outlives every worker, so a send cannot fail in practice).
    fn event(&self, e: progress::Event) {
        let _ = self.events.send(e);
    }
}

/// What a run did.
pub struct Report {
    pub failed: usize,
    pub totals: progress::Totals,
    pub synced: Vec<(ImageRef, ImageRef)>,
    pub elapsed: Duration,
}

/// Run every rule of `config` to completion, with retries. `Err` when the TLS files of the
/// configuration cannot be used (nothing has been sent then).
pub fn run(config: Config) -> Result<Report, String> {
    let start = Instant::now();
    let (events, reporter) = progress::start(PROGRESS_INTERVAL);
    let ctx = Ctx {
        regs: Registries::new(config.auth, config.tls, config.proc)?,
        filter: config.platforms,
        force: config.force,
        blobs: Mutex::new(HashMap::new()),
        known: Mutex::new(HashMap::new()),
        synced: Mutex::new(Vec::new()),
        queue: Queue::new(),
        events,
    };
    for rule in config.rules {
        ctx.queue.push(Task::Rule(Arc::new(rule)));
    }
    let mut failures = Vec::new();
    for round in 0..=config.retries {
        ctx.queue.run_pass(config.proc, |task| task.run(&ctx));
        let failed = ctx.queue.take_failed();
        if failed.is_empty() {
            break;
        }
        if round == config.retries {
            failures = failed;
            break;
        }
        log::info!("retrying {} failed task(s) (retry {} of {})", failed.len(), round + 1, config.retries);
        for (task, e) in failed {
            log::debug!("{task} failed, will retry: {e}");
            ctx.queue.push(task);
        }
    }
    for (task, e) in &failures {
        log::error!("{task} failed: {e}");
    }
    let mut synced = std::mem::take(&mut *ctx.synced.lock());
    synced.sort();
    synced.dedup();
    drop(ctx); // the last sender: the reporter finishes
    let totals = reporter.join().unwrap_or_default();
    Ok(Report { failed: failures.len(), totals, synced, elapsed: start.elapsed() })
}

/// How a rule is named in messages: as the user wrote it.
pub use progress::Totals;

pub(crate) fn describe_rule(rule: &Rule) -> String {
    format!("rule \"{}\"", rule.text)
}
