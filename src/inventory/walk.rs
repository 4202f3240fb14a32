//! One repository read as a sync reads a source: its tags, each tag's manifest, an index's
//! children (to [`MAX_DEPTH`] levels) and what refers to each manifest — by the OCI 1.1
//! referrers API where the store has it; where it has not, referrers live under `sha256-<hex>`
//! and cosign tags, which are tags of the repository and so read with the others. The blobs
//! every image references are collected with their descriptors' sizes; whether the store
//! really holds them is asked afterwards, once per blob ([`super`]).
//!
//! What cannot be read is noted and the rest goes on: an inventory that lacks something only
//! makes the next delta carry more.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;

use crate::digest::Digest;
use crate::engine::MAX_DEPTH;
use crate::manifest::{Kind, Manifest, Referrer};
use crate::reference::{Reference, Repository};
use crate::store::{Access, Error, Fetched, ReferrersAnswer, Store};

/// What one repository holds, as far as it could be read.
#[derive(Debug, Default)]
pub struct Found {
    pub tags: BTreeMap<String, Digest>,
    pub manifests: BTreeSet<Digest>,
    /// Blobs the images reference (foreign layers left out), with their descriptors' sizes.
    pub blobs: BTreeMap<Digest, Option<u64>>,
    /// What could not be read, one line each.
    pub problems: Vec<String>,
}

/// Which stores (by name) have the referrers API, once known; shared by the workers.
#[derive(Default)]
pub struct ReferrersApis(Mutex<BTreeMap<String, bool>>);

impl ReferrersApis {
    fn lacks(&self, store: &str) -> bool {
        self.0.lock().get(store) == Some(&false)
    }

    fn learn(&self, store: &str, has: bool) {
        self.0.lock().insert(store.to_string(), has);
    }
}

/// Read `repo` of `store`. A repository the store does not have holds nothing; a tag list
/// that cannot be read is the one failure that ends the walk.
pub fn repository(store: &dyn Store, repo: &Repository, apis: &ReferrersApis) -> Result<Found, Error> {
    let tags = match store.list_tags(repo) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut found = Found::default();
    let mut todo: Vec<(Fetched, usize)> = Vec::new();
    for tag in tags {
        if crate::stop::requested() {
            found.problems.push(format!("{repo}: interrupted"));
            break;
        }
        match store.get_manifest(repo, &Reference::Tag(tag.clone()), Access::Pull) {
            Ok(f) => {
                found.tags.insert(tag, f.digest.clone());
                todo.push((f, 0));
            }
            // Deleted since the listing.
            Err(e) if e.is_not_found() => {}
            Err(e) => found.problems.push(format!("{repo}:{tag}: {e}")),
        }
        while let Some((f, depth)) = todo.pop() {
            for (digest, depth) in visit(store, repo, apis, &mut found, f, depth) {
                if found.manifests.contains(&digest) {
                    continue;
                }
                match store.get_manifest(repo, &Reference::Digest(digest.clone()), Access::Pull) {
                    Ok(f) => todo.push((f, depth)),
                    Err(e) => found.problems.push(format!("{repo}@{digest}: {e}")),
                }
            }
        }
    }
    Ok(found)
}

/// Note the manifest `f` (at `depth` below a tag) and what it references; returns the
/// manifests to read next (children, referrers), each with its depth.
fn visit(
    store: &dyn Store,
    repo: &Repository,
    apis: &ReferrersApis,
    found: &mut Found,
    f: Fetched,
    depth: usize,
) -> Vec<(Digest, usize)> {
    if !found.manifests.insert(f.digest.clone()) {
        return Vec::new();
    }
    let mut next = Vec::new();
    match Manifest::parse(&f.bytes, f.media_type.as_ref()) {
        Ok(m) => match &m.kind {
            Kind::Image { .. } => {
                for b in m.blobs() {
                    let size = found.blobs.entry(b.digest).or_insert(b.size);
                    *size = size.or(b.size);
                }
            }
            Kind::Index { manifests } if depth + 1 >= MAX_DEPTH => {
                let m = format!("nested more than {MAX_DEPTH} levels deep: its {} children not read", manifests.len());
                found.problems.push(format!("{repo}@{}: {m}", f.digest));
            }
            Kind::Index { manifests } => next.extend(manifests.iter().map(|c| (c.digest.clone(), depth + 1))),
        },
        // Schema 1 and the like: its blobs are not listed, so a delta carries them.
        Err(e) => log::warn!("{repo}@{}: {e}; its blobs are not listed", f.digest),
    }
    if depth + 1 < MAX_DEPTH {
        next.extend(referrers(store, repo, apis, &f.digest, found).into_iter().map(|d| (d, depth + 1)));
    }
    next
}

/// What the referrers API lists for `subject`; nothing where the store has no such API.
fn referrers(
    store: &dyn Store,
    repo: &Repository,
    apis: &ReferrersApis,
    subject: &Digest,
    found: &mut Found,
) -> Vec<Digest> {
    if apis.lacks(store.name()) {
        return Vec::new();
    }
    match store.referrers(repo, subject, None, Access::Pull) {
        Ok(ReferrersAnswer::Listed(index)) => {
            apis.learn(store.name(), true);
            match Referrer::list(&index) {
                Ok(list) => list.into_iter().map(|r| r.digest).filter(|d| d != subject).collect(),
                Err(e) => {
                    found.problems.push(format!("{repo}@{subject}: referrers: {e}"));
                    Vec::new()
                }
            }
        }
        Ok(ReferrersAnswer::NoApi) => {
            apis.learn(store.name(), false);
            Vec::new()
        }
        Ok(ReferrersAnswer::Unknown) => Vec::new(),
        Err(e) => {
            found.problems.push(format!("{repo}@{subject}: referrers: {e}"));
            Vec::new()
        }
    }
}
