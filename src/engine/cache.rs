//! Read once, write many: the source manifests of repositories that several rules of the run
//! read (a rule with a list of destinations, or rules sharing a source) are kept for the run,
//! so that each is fetched from the source once, however many destinations it goes to. Only
//! those repositories are cached, and only up to [`MAX_BYTES`], so memory stays flat in the
//! number of tags of an ordinary run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::reference::{Reference, Repository};
use crate::slots::Slots;
use crate::store::{Access, Error, Fetched, Store};

/// The most manifest bytes kept (manifests are small: a few KiB each).
const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub struct ManifestCache {
    /// Source repositories read by more than one rule.
    shared: HashSet<Repository>,
    /// One manifest per slot, filled by the first worker to ask: workers planning the same
    /// image at the same moment wait for it instead of fetching again.
    slots: Slots<(Repository, Reference), Fetched>,
    /// The bytes the slots hold.
    bytes: AtomicUsize,
}

impl ManifestCache {
    /// A cache for the source repositories that appear in more than one of `sources`.
    pub fn for_sources<'a>(sources: impl IntoIterator<Item = &'a Repository>) -> ManifestCache {
        let mut seen = HashSet::new();
        let shared = sources.into_iter().filter(|r| !seen.insert(*r)).cloned().collect();
        ManifestCache { shared, ..ManifestCache::default() }
    }

    /// GET a source manifest, from the cache when another destination already had it fetched.
    pub fn get(&self, store: &dyn Store, repo: &Repository, reference: &Reference) -> Result<Fetched, Error> {
        if !self.shared.contains(repo) || self.bytes.load(Ordering::Relaxed) >= MAX_BYTES {
            return store.get_manifest(repo, reference, Access::Pull);
        }
        let mut fetched_here = false;
        let cached = self.slots.get_or_fill(&(repo.clone(), reference.clone()), || {
            // A failure leaves the slot empty: the next one to ask tries for itself.
            let fetched = store.get_manifest(repo, reference, Access::Pull)?;
            self.bytes.fetch_add(fetched.bytes.len(), Ordering::Relaxed);
            fetched_here = true;
            Ok(Some(fetched))
        })?;
        if !fetched_here {
            log::debug!("{repo}: manifest {reference} read once for several destinations");
        }
        Ok(cached.expect("filled above"))
    }
}

#[cfg(test)]
mod tests {
    use super::ManifestCache;
    use crate::engine::testing::{image, job, rule, sync, MemStore, Op};
    use crate::reference::{Reference, Repository};

    #[test]
    fn a_manifest_two_rules_read_is_fetched_once() {
        let (src, one, two) = (MemStore::new("src.io"), MemStore::new("one.io"), MemStore::new("two.io"));
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        let rules = vec![rule("src.io/a:v1", "one.io/a"), rule("src.io/a:v1", "two.io/a")];
        sync(job(rules), &[&src, &one, &two]);
        assert_eq!((one.tag("a", "v1"), two.tag("a", "v1")), (Some(v1.digest.clone()), Some(v1.digest)));
        assert_eq!(src.count_on(Op::GetManifest, "v1"), 1);
    }

    #[test]
    fn only_repositories_several_rules_read_are_kept_and_a_failure_is_not() {
        let src = MemStore::new("src.io");
        src.add("a", Some("v1"), &image("a").build());
        src.add("b", Some("v1"), &image("b").build());
        let (a, b) = (Repository::on_registry("src.io", "a"), Repository::on_registry("src.io", "b"));
        let cache = ManifestCache::for_sources([&a, &b, &a]);
        let v1 = Reference::Tag("v1".into());
        src.fail(Op::GetManifest, None, 1, 503);
        assert!(cache.get(&*src, &a, &v1).is_err());
        for _ in 0..2 {
            cache.get(&*src, &a, &v1).unwrap();
            cache.get(&*src, &b, &v1).unwrap();
        }
        let gets = |repo: &str| src.calls(Op::GetManifest).iter().filter(|c| c.repo == repo).count();
        assert_eq!((gets("a"), gets("b")), (2, 2), "a: the failed GET and one more; b: every time");
    }
}
