//! What every task can see: the registries, the run's options, the shared blob bookkeeping and
//! the queue — and the one error type tasks return.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::graph::{complete, BlobState, BlobTask, Node, Pair, Rule, Task};
use super::progress::{Event, Moving};
use super::queue::Queue;
use crate::digest::Digest;
use crate::manifest::{is_referrer_tag, PlatformFilter};
use crate::reference::{Location, Repository};
use crate::store::{self, Store};
use crate::stores::Stores;

/// Why a task failed.
#[derive(Debug)]
pub enum SyncError {
    Registry(Box<store::Error>),
    /// The source served something we cannot copy.
    Manifest {
        image: String,
        message: String,
    },
    /// A namespace rule whose registry does not let us list its repositories.
    Catalog(Box<store::Error>),
    /// `--verify`: the destination differs from the source.
    Drift {
        image: String,
        problems: Vec<String>,
    },
    /// A bug: the task panicked.
    Panic(String),
}

impl SyncError {
    /// Whether a later pass may succeed: network trouble and damaged bodies may clear up; a
    /// refusal, an invalid manifest or a bug will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Registry(e) | SyncError::Catalog(e) => e.is_transient() || e.is_damaged_body(),
            SyncError::Manifest { .. } | SyncError::Drift { .. } | SyncError::Panic(_) => false,
        }
    }
}

impl SyncError {
    /// The operation behind it was already retried as often as the policy allows.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, SyncError::Registry(e) | SyncError::Catalog(e) if e.exhausted)
    }
}

impl SyncError {
    /// A short name for the kind of failure, for reports: decided by type, never by text.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Registry(e) | SyncError::Catalog(e) => e.class(),
            SyncError::Manifest { .. } => "manifest",
            SyncError::Drift { .. } => "drift",
            SyncError::Panic(_) => "internal",
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Registry(e) => e.fmt(f),
            SyncError::Catalog(e) => write!(
                f,
                "{}: the catalog (GET /v2/_catalog) is refused: {}; a namespace rule (…/*) needs it (many \
                 registries restrict it): grant catalog access, or list the repositories as rules",
                e.at, e.kind
            ),
            SyncError::Manifest { image, message } => write!(f, "{image}: {message}"),
            SyncError::Drift { image, problems } => {
                write!(f, "{image}: differs from the source: {}", problems.join("; "))
            }
            SyncError::Panic(m) => write!(f, "internal error (please report it): {m}"),
        }
    }
}

impl From<store::Error> for SyncError {
    fn from(e: store::Error) -> Self {
        SyncError::Registry(Box::new(e))
    }
}

/// A blob copy in flight to a registry: the repository getting it, and the tasks of other
/// repositories waiting to mount it from there.
pub type InFlightCopy = (Arc<str>, Vec<BlobTask>);

/// A rule, and the pairs it expanded into (`None` until it did).
pub type Expansion = (Arc<Rule>, Option<Vec<Arc<Pair>>>);

/// A blob on a registry: (registry, digest).
pub type RegistryBlob = (Location, Digest);

/// A blob at a destination: (registry, repository, digest).
pub type BlobKey = (Location, Arc<str>, Digest);

/// State shared by all workers for one run.
pub struct Ctx<'a> {
    pub stores: &'a Stores,
    pub filter: PlatformFilter,
    pub force: bool,
    /// Sync, plan (dry run) or audit.
    pub mode: Mode,
    /// Which referrers follow their subject.
    pub referrers: Referrers,
    /// Source manifests read by several rules, fetched once.
    pub manifests: super::cache::ManifestCache,
    /// Whether a registry has the referrers API, once known.
    pub referrers_api: Mutex<HashMap<String, bool>>,
    /// Every rule started, with its pairs once it expanded (for prune).
    pub rules: Mutex<Vec<Expansion>>,
    /// The referrer tags (`sha256-…`, cosign's included) of the source tag lists read this run
    /// (`None`: the list could not be read). Only those: nothing else is looked up in them, and
    /// a repository's other tags, kept for the whole run, would make memory grow with them.
    pub tags: Mutex<HashMap<Repository, Option<Arc<HashSet<String>>>>>,
    /// Held while a tag list is read lazily, or a registry is first asked for its referrers
    /// API: workers arriving at the same moment wait for the one answer instead of asking too.
    pub first_ask: Mutex<()>,
    /// Blob copies per destination: done, or in flight with waiters.
    pub blobs: Mutex<HashMap<BlobKey, BlobState>>,
    /// Blobs being copied to a registry, (registry, digest) → the repository getting it and the
    /// tasks of other repositories that wait to mount it from there.
    pub moving_blobs: Mutex<HashMap<RegistryBlob, InFlightCopy>>,
    /// Source blobs that several destination registries need: read from the source once.
    pub relays: super::relay::Relays,
    /// Where a blob is known to exist on a registry (registry, digest) → repo, for mounts.
    pub known: Mutex<HashMap<RegistryBlob, Arc<str>>>,
    /// Images that are in sync (copied or already unchanged).
    pub synced: Mutex<Vec<Arc<Pair>>>,
    /// What became of each image that did not fail, for `--report`.
    pub outcomes: Mutex<Vec<(Arc<Pair>, Outcome)>>,
    /// What each image moved, and how long it took, for `--report`.
    pub stats: Mutex<HashMap<Arc<Pair>, ImageStats>>,
    /// Whether `stats` is kept at all.
    pub image_stats: bool,
    pub queue: Queue<Task, SyncError>,
    pub events: crossbeam_channel::Sender<Event>,
    /// The id of the next transfer shown by the progress display.
    pub next_transfer: std::sync::atomic::AtomicU64,
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
    /// `--verify`: the destination has it, whole.
    Verified(Digest),
}

/// Which referrers (signatures, SBOMs, attestations) are copied with their subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referrers {
    pub enabled: bool,
    /// Only these artifact types (all when empty); cosign's tags are copied regardless.
    pub types: Vec<crate::manifest::MediaType>,
}

/// What a run does with each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Copy what differs.
    #[default]
    Sync,
    /// Plan only: read everything, write nothing.
    DryRun,
    /// Audit: check the destination against the source, write nothing; with `blobs`, read
    /// back and hash every blob.
    Verify { blobs: bool },
}

/// What one image moved. A blob shared by several images of the run counts as copied (or
/// mounted) for the image that moved it and as present for the others.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImageStats {
    pub bytes: u64,
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_pushed: u64,
    /// From the first time the image was started to its end (retries included).
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    #[serde(skip)]
    started: Option<Instant>,
}

impl ImageStats {
    /// The image ends now.
    pub fn finish_now(&mut self) {
        self.duration = self.started.map(|t| t.elapsed()).unwrap_or_default();
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl Ctx<'_> {
    pub fn dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    pub fn verify_blobs(&self) -> bool {
        self.mode == Mode::Verify { blobs: true }
    }

    /// `rule` starts expanding (again, after a failure: it is recorded once).
    pub fn expansion_started(&self, rule: &Arc<Rule>) {
        let mut rules = self.rules.lock();
        if !rules.iter().any(|(r, _)| Arc::ptr_eq(r, rule)) {
            rules.push((rule.clone(), None));
        }
    }

    /// `rule` expanded into `pairs`.
    pub fn expanded(&self, rule: &Arc<Rule>, pairs: &[Arc<Pair>]) {
        if let Some(entry) = self.rules.lock().iter_mut().find(|(r, _)| Arc::ptr_eq(r, rule)) {
            entry.1 = Some(pairs.to_vec());
        }
    }

    /// Whether `registry` has the referrers API, if known yet.
    pub fn has_referrers_api(&self, registry: &str) -> Option<bool> {
        self.referrers_api.lock().get(registry).copied()
    }

    pub fn set_referrers_api(&self, registry: &str, has: bool) {
        if self.referrers_api.lock().insert(registry.to_string(), has).is_none() && !has {
            log::debug!("{registry}: no referrers API; using the referrers tag schema");
        }
    }

    /// Remember the tags a rule listed, for the referrer lookups that follow.
    pub fn remember_tags(&self, repo: &Repository, tags: &[String]) {
        let referrers = tags.iter().filter(|t| is_referrer_tag(t)).cloned().collect();
        self.tags.lock().insert(repo.clone(), Some(Arc::new(referrers)));
    }

    /// The referrer tags of a source repository: listed once per run (two workers may list it at the
    /// same moment; both get the same answer). `None` when the registry does not let us list.
    pub fn tags_of(&self, client: &dyn Store, repo: &Repository) -> Option<Arc<HashSet<String>>> {
        if let Some(known) = self.tags.lock().get(repo) {
            return known.clone();
        }
        let _one = self.first_ask.lock();
        if let Some(known) = self.tags.lock().get(repo) {
            return known.clone();
        }
        let listed = match client.list_tags(repo) {
            Ok(t) => Some(Arc::new(t.into_iter().filter(|t| is_referrer_tag(t)).collect::<HashSet<_>>())),
            Err(e) => {
                log::debug!("{repo}: cannot list tags ({e}); asking for referrer tags one by one");
                None
            }
        };
        self.tags.lock().insert(repo.clone(), listed.clone());
        listed
    }

    /// Record how `pair` ended.
    pub fn outcome(&self, pair: &Arc<Pair>, outcome: Outcome) {
        self.tally(pair, ImageStats::finish_now);
        self.outcomes.lock().push((pair.clone(), outcome));
    }

    /// `pair` starts (again): its clock starts the first time.
    pub fn started(&self, pair: &Arc<Pair>) {
        if !self.image_stats {
            return;
        }
        self.stats.lock().entry(pair.clone()).or_default().started.get_or_insert_with(Instant::now);
    }

    /// Count something `pair` moved.
    pub fn tally(&self, pair: &Arc<Pair>, f: impl FnOnce(&mut ImageStats)) {
        if !self.image_stats {
            return;
        }
        f(self.stats.lock().entry(pair.clone()).or_default());
    }

    /// Tell the progress reporter (it outlives every worker, so a send cannot fail in practice).
    pub fn event(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// A blob starts streaming: the progress display follows it until the guard is dropped.
    pub fn moving(&self, label: String, size: Option<u64>) -> Moving {
        let id = self.next_transfer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Moving::start(&self.events, id, label, size)
    }

    /// One wait fewer for `node`; the last one queues its push.
    pub fn complete(&self, node: &std::sync::Arc<Node>) {
        complete(&self.queue, node);
    }
}
