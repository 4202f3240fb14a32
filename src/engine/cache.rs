//! Read once, write many: the source manifests of repositories that several rules of the run
//! read (a rule with a list of destinations, or rules sharing a source) are kept for the run,
//! so that each is fetched from the source once, however many destinations it goes to. Only
//! those repositories are cached, and only up to [`MAX_BYTES`], so memory stays flat in the
//! number of tags of an ordinary run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::reference::{Reference, Repository};
use crate::store::{Access, Error, Fetched, Store};

/// The most manifest bytes kept (manifests are small: a few KiB each).
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// One manifest: filled by the first worker to ask, which holds the lock while it fetches, so
/// workers planning the same image at the same moment wait for it instead of fetching again.
type Slot = Arc<Mutex<Option<Fetched>>>;

/// The slots by (repository, reference), and the bytes they hold.
type Slots = (HashMap<(Repository, Reference), Slot>, usize);

#[derive(Default)]
pub struct ManifestCache {
    /// Source repositories read by more than one rule.
    shared: HashSet<Repository>,
    entries: Mutex<Slots>,
}

impl ManifestCache {
    /// A cache for the source repositories that appear in more than one of `sources`.
    pub fn for_sources<'a>(sources: impl IntoIterator<Item = &'a Repository>) -> ManifestCache {
        let mut seen = HashSet::new();
        let shared = sources.into_iter().filter(|r| !seen.insert(*r)).cloned().collect();
        ManifestCache { shared, entries: Mutex::default() }
    }

    /// GET a source manifest, from the cache when another destination already had it fetched.
    pub fn get(&self, client: &dyn Store, repo: &Repository, reference: &Reference) -> Result<Fetched, Error> {
        if !self.shared.contains(repo) {
            return client.get_manifest(repo, reference, Access::Pull);
        }
        let slot = {
            let mut entries = self.entries.lock();
            if entries.1 >= MAX_BYTES {
                drop(entries);
                return client.get_manifest(repo, reference, Access::Pull);
            }
            entries.0.entry((repo.clone(), reference.clone())).or_default().clone()
        };
        let mut held = slot.lock();
        if let Some(f) = held.as_ref() {
            log::debug!("{repo}: manifest {reference} read once for several destinations");
            return Ok(f.clone());
        }
        // A failure leaves the slot empty: the next one to ask tries for itself.
        let fetched = client.get_manifest(repo, reference, Access::Pull)?;
        self.entries.lock().1 += fetched.bytes.len();
        *held = Some(fetched.clone());
        Ok(fetched)
    }
}
