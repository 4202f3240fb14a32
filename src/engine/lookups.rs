//! What the run learns about stores once and then looks up: whether a registry (or layout)
//! has the referrers API, the referrer tags of a source repository's tag list, and the tags of
//! a destination repository with immutable tags — each found out by the first worker to need
//! it, in a slot of its own ([`Slots`]).

use std::collections::HashSet;
use std::sync::Arc;

use crate::manifest::is_referrer_tag;
use crate::reference::Repository;
use crate::slots::{Slot, Slots};
use crate::store::Store;

/// The referrer tags (`sha256-…`, cosign's included) of a repository's tag list; `None` when
/// the list could not be read. Only those: nothing else is looked up in them, and a
/// repository's other tags, kept for the whole run, would make memory grow with them.
pub type ReferrerTags = Option<Arc<HashSet<String>>>;

#[derive(Default)]
pub struct Lookups {
    /// Whether a store (by name) has the referrers API, once known.
    referrers_api: Slots<String, bool>,
    tags: Slots<Repository, ReferrerTags>,
    /// The tags of destination repositories that rules with `immutable` write to.
    dst_tags: Slots<Repository, DestinationTags>,
}

/// A destination repository's tags; `None` when the list could not be read.
pub type DestinationTags = Option<Arc<HashSet<String>>>;

impl Lookups {
    /// The slot of `store`'s referrers API (`Some(has)` once known): hold it while asking,
    /// until it is known, so that workers arriving at the same moment wait for the one answer;
    /// record the answer in it with [`learned`].
    pub fn referrers_api(&self, store: &str) -> Slot<bool> {
        self.referrers_api.slot(&store.to_string())
    }

    /// Each store (by name) whose referrers API was found out: whether it has it.
    pub fn referrers_apis(&self) -> Vec<(String, bool)> {
        self.referrers_api.known()
    }

    /// Remember the tags a rule listed, for the referrer lookups that follow.
    pub fn remember_tags(&self, repo: &Repository, tags: &[String]) {
        let referrers = tags.iter().filter(|t| is_referrer_tag(t)).cloned().collect();
        self.tags.set(repo, Some(Arc::new(referrers)));
    }

    /// The referrer tags of a source repository: listed once per run. `None` when the store does
    /// not let us list.
    pub fn tags_of(&self, store: &dyn Store, repo: &Repository) -> ReferrerTags {
        let listed = self.tags.get_or_fill::<()>(repo, || {
            Ok(Some(match store.list_tags(repo) {
                Ok(t) => Some(Arc::new(t.into_iter().filter(|t| is_referrer_tag(t)).collect())),
                Err(e) => {
                    log::debug!("{repo}: cannot list tags ({e}); asking for referrer tags one by one");
                    None
                }
            }))
        });
        listed.ok().flatten().flatten()
    }
}

impl Lookups {
    /// The tags of the destination repository `repo`: listed once per run. A repository that
    /// does not exist yet has none (the distribution spec answers its tag list 404
    /// `NAME_UNKNOWN`: <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags>);
    /// `None` when the list cannot be read otherwise, and its tags are compared as usual.
    pub fn destination_tags(&self, store: &dyn Store, repo: &Repository) -> DestinationTags {
        let listed = self.dst_tags.get_or_fill::<()>(repo, || {
            Ok(Some(match store.list_tags(repo) {
                Ok(t) => Some(Arc::new(t.into_iter().collect())),
                Err(e) if e.is_not_found() => Some(Arc::default()),
                Err(e) => {
                    log::debug!("{repo}: cannot list the destination's tags ({e}); comparing immutable tags as usual");
                    None
                }
            }))
        });
        listed.ok().flatten().flatten()
    }
}

/// Record in `slot` (held) that `store` has (or lacks) the referrers API.
pub fn learned(slot: &mut Option<bool>, store: &str, has: bool) {
    if slot.is_none() && !has {
        log::debug!("{store}: no referrers API; using the referrers tag schema");
    }
    *slot = Some(has);
}
