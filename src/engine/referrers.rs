//! Referrers follow their subject: signatures, SBOMs and attestations that point at a copied
//! manifest are copied too (unless `--no-referrers`), and listed at the destination so that
//! `cosign verify` or an admission policy finds them there. This file finds them and what the
//! destination lacks; the planner plans them like any other manifest.
//!
//! **Finding them at the source.** The OCI 1.1 referrers API first; a registry without it
//! (it answers 404) is remembered for the rest of the run and read through the referrers tag
//! schema (`sha256-<hex>`) instead. Cosign's legacy `.sig` / `.att` / `.sbom` tags are copied as
//! tags. Whether such a tag exists is decided from the repository's tag list, read once per run
//! (rules listing all tags have it already), so an image with no referrers costs no request.
//!
//! **Listing them at the destination.** A registry with the referrers API lists what was
//! pushed by itself. One without gets the fallback tag index created, or merged with what it
//! lists already — entries we did not write are kept — and pushed after the referrers it
//! lists and before the subject's own tag.

use super::ctx::Ctx;
use super::error::SyncError;
use super::graph::Planned;
use super::lookups::learned;
use crate::digest::Digest;
use crate::manifest::{cosign_tags, fallback_tag, is_index, merge_fallback, MediaType, Referrer};
use crate::reference::{ImageRef, Reference, Repository};
use crate::store::{Access, Fetched, ReferrersAnswer, Store};

/// The referrers of `subject` the source `src` lists, of the types asked for.
pub fn discover(ctx: &Ctx, sc: &dyn Store, src: &Repository, subject: &Digest) -> Result<Vec<Referrer>, SyncError> {
    let at = ImageRef { repo: src.clone(), reference: Reference::Digest(subject.clone()) };
    let mut listed = ask_api(ctx, sc, src, subject)?;
    if listed.is_none() {
        let tag = Reference::Tag(fallback_tag(subject));
        if source_has(ctx, sc, src, &tag)? {
            listed = match ctx.manifests.get(sc, src, &tag) {
                Ok(f) => fallback_listing(f, &at),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
        }
    }
    let Some(index) = listed else { return Ok(Vec::new()) };
    let mut found = match Referrer::list(&index) {
        Ok(f) => f,
        // Someone else's `sha256-…` tag, or a broken listing: the image itself still syncs.
        Err(m) => {
            log::warn!("{at}: referrers not copied: {m}");
            return Ok(Vec::new());
        }
    };
    let types = &ctx.opts.referrers.types;
    found.retain(|r| {
        r.digest != *subject && (types.is_empty() || r.artifact_type.as_ref().is_some_and(|t| types.contains(t)))
    });
    Ok(found)
}

/// What the referrers tag of `at` (a subject by digest) serves, when it is a referrers index.
///
/// GitLab's registry has no referrers API and resolves the reference `sha256-<hex>` as the
/// digest `sha256:<hex>`: the "tag" serves the subject itself, whose `manifests` (for an index)
/// would pass for its referrers (oras-project/oras-go#1396). So the subject itself is no
/// listing, nor is anything that is no index (cosign's `.sig`-style tags are copied as tags, by
/// [`cosign`], never read as listings).
fn fallback_listing(f: Fetched, at: &ImageRef) -> Option<Vec<u8>> {
    if Some(&f.digest) == at.reference.digest() {
        log::debug!("{at}: its referrers tag serves the manifest itself (read as a digest): it lists no referrers");
        return None;
    }
    if !is_index(&f.bytes, f.media_type.as_ref()) {
        log::warn!("{at}: its referrers tag names no index; referrers not read from it");
        return None;
    }
    Some(f.bytes)
}

/// The source's referrers API answer for `subject`: `None` when the store has no such API, or
/// cannot tell for now.
fn ask_api(ctx: &Ctx, sc: &dyn Store, src: &Repository, subject: &Digest) -> Result<Option<Vec<u8>>, SyncError> {
    let types = &ctx.opts.referrers.types;
    let one = (types.len() == 1).then(|| &types[0]);
    let slot = ctx.lookups.referrers_api(sc.name());
    let mut known = slot.lock();
    let answer = match *known {
        Some(false) => return Ok(None),
        // Known to have it: every worker asks at once.
        Some(true) => {
            drop(known);
            let answer = sc.referrers(src, subject, one, Access::Pull)?;
            known = slot.lock();
            answer
        }
        // Not known yet: asked holding the store's slot, so workers arriving at the same moment
        // wait for this one answer instead of asking too.
        None => sc.referrers(src, subject, one, Access::Pull)?,
    };
    Ok(match answer {
        ReferrersAnswer::Listed(index) => {
            learned(&mut known, sc.name(), true);
            Some(index)
        }
        ReferrersAnswer::NoApi => {
            learned(&mut known, sc.name(), false);
            None
        }
        ReferrersAnswer::Unknown => None,
    })
}

/// The destination's fallback tag index for `subject`, when it lacks the referrers API and
/// does not list every one of `found` yet.
pub fn fallback_index(
    ctx: &Ctx,
    dc: &dyn Store,
    src: &Repository,
    dst: &Repository,
    subject: &Digest,
    found: &[Referrer],
) -> Result<Option<Planned>, SyncError> {
    if found.is_empty() {
        return Ok(None);
    }
    let api = {
        let slot = ctx.lookups.referrers_api(dc.name());
        let mut known = slot.lock();
        match *known {
            Some(has) => has,
            None => match dc.referrers(dst, subject, None, Access::Push)? {
                ReferrersAnswer::Listed(_) => {
                    learned(&mut known, dc.name(), true);
                    true
                }
                ReferrersAnswer::NoApi => {
                    learned(&mut known, dc.name(), false);
                    false
                }
                // A repository new there: write the fallback tag this time (harmless where the
                // API exists), and ask again for the next subject.
                ReferrersAnswer::Unknown => false,
            },
        }
    };
    if api {
        return Ok(None);
    }
    let tag = Reference::Tag(fallback_tag(subject));
    let existing = match dc.get_manifest(dst, &tag, Access::Push) {
        // GitLab serves the subject itself there (see [`fallback_listing`]): nothing is listed.
        Ok(f) if f.digest == *subject => None,
        Ok(f) => Some(f.bytes),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let at_dst = ImageRef { repo: dst.clone(), reference: tag.clone() };
    let merged = merge_fallback(existing.as_deref(), found).map_err(|m| SyncError::manifest(&at_dst, m))?;
    let at_src = ImageRef { repo: src.clone(), reference: tag };
    Ok(merged.map(|bytes| Planned::push(at_src, at_dst, bytes, MediaType::OCI_INDEX)))
}

/// Cosign's tags for `subject` that the destination lacks or has another digest under, as the
/// source serves them.
pub fn cosign(
    ctx: &Ctx,
    sc: &dyn Store,
    dc: &dyn Store,
    src: &Repository,
    dst: &Repository,
    subject: &Digest,
) -> Result<Vec<(Reference, Fetched)>, SyncError> {
    let mut out = Vec::new();
    for tag in cosign_tags(subject) {
        let reference = Reference::Tag(tag);
        if !source_has(ctx, sc, src, &reference)? {
            continue;
        }
        let Some(want) = sc.manifest_digest(src, &reference, Access::Pull)? else { continue };
        if !ctx.opts.force && dc.manifest_digest(dst, &reference, Access::Push)? == Some(want) {
            continue;
        }
        let fetched = ctx.manifests.get(sc, src, &reference)?;
        out.push((reference, fetched));
    }
    Ok(out)
}

/// Whether a manifest below the index `top` (a child, a child's child) may have referrers at
/// the source, told without a request: it may where the source has the referrers API or its
/// tags cannot be listed; where it lists referrers as tags, only if one of those names another
/// digest than `top`'s. Asked after `top`'s own referrers were looked up, which learned the
/// former and read the tag list (once per repository).
pub fn below_may_have(ctx: &Ctx, sc: &dyn Store, src: &Repository, top: &Digest) -> bool {
    if *ctx.lookups.referrers_api(sc.name()).lock() == Some(true) {
        return true;
    }
    let own = fallback_tag(top);
    ctx.lookups.tags_of(sc, src).is_none_or(|tags| tags.iter().any(|t| !t.starts_with(&own)))
}

/// Whether the source repository has the referrer tag `reference` (a fallback or cosign tag:
/// only those are kept from its tag list): from its tag list when it can be read, else by
/// asking.
fn source_has(ctx: &Ctx, sc: &dyn Store, src: &Repository, reference: &Reference) -> Result<bool, SyncError> {
    match ctx.lookups.tags_of(sc, src) {
        Some(tags) => Ok(tags.contains(reference.as_str())),
        None => Ok(sc.head_manifest(src, reference, Access::Pull)?.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{
        add_signed, add_signed_by_tag, copy_v1, image, index, job, multi_arch, rule, src_dst, sync, Image, MemStore,
        Op, SIG,
    };
    use crate::manifest::{cosign_tags, fallback_tag, MediaType};

    const SBOM: &str = "application/spdx+json";

    #[test]
    fn referrers_the_api_lists_follow_their_subject_and_go_first() {
        let (src, dst) = src_dst();
        let (_, sig) = add_signed(&src);
        sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.pushed(), [sig.digest.to_string(), "v1".into()]);
        assert!(sig.blob_digests().iter().all(|d| dst.has_blob("a", d)));
        assert_eq!(dst.tags("a"), ["v1"], "a destination with the API needs no fallback tag");
    }

    #[test]
    fn without_the_api_the_fallback_tag_is_read_and_written_before_the_subject() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::without_referrers_api("dst.io"));
        let (v1, sig) = add_signed_by_tag(&src);
        let fallback = fallback_tag(&v1.digest);
        sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.pushed(), [sig.digest.to_string(), fallback.clone(), "v1".into()]);
        assert_eq!(dst.listed("a", &dst.tag("a", &fallback).unwrap()), [sig.digest]);
    }

    #[test]
    fn the_destination_fallback_index_keeps_what_it_listed() {
        let (src, dst) = (MemStore::new("src.io"), MemStore::without_referrers_api("dst.io"));
        let (v1, sig) = add_signed(&src);
        let old = image("old").refers_to(&v1, SIG).build();
        dst.add("a", Some(&fallback_tag(&v1.digest)), &index(&[&old]));
        sync(copy_v1(), &[&src, &dst]);
        let listed = dst.listed("a", &dst.tag("a", &fallback_tag(&v1.digest)).unwrap());
        assert_eq!(listed, [old.digest, sig.digest]);
    }

    #[test]
    fn only_the_artifact_types_asked_for_are_copied() {
        let (src, dst) = src_dst();
        let (v1, sig) = add_signed(&src);
        let sbom = image("sbom").refers_to(&v1, SBOM).build();
        src.add("a", None, &sbom);
        let mut job = copy_v1();
        // Two types: the store is not asked to filter, the engine filters.
        job.opts.referrers.types = vec![MediaType::new(SBOM), MediaType::new("application/x-other")];
        sync(job, &[&src, &dst]);
        assert!(dst.manifest("a", &sbom.digest).is_some());
        assert!(dst.manifest("a", &sig.digest).is_none());
    }

    /// Seed `src` with an image `v1` at `a:v1` and a cosign signature under its `.sig` tag: the
    /// tag, and the signature.
    fn add_cosign_signed(src: &MemStore) -> (String, Image) {
        let v1 = image("v1").build();
        let sig_tag = cosign_tags(&v1.digest).swap_remove(0);
        let cosign = image("cosign signature").build();
        src.add("a", Some("v1"), &v1);
        src.add("a", Some(&sig_tag), &cosign);
        (sig_tag, cosign)
    }

    #[test]
    fn cosign_tags_are_copied_as_tags() {
        let (src, dst) = src_dst();
        let (sig_tag, cosign) = add_cosign_signed(&src);
        sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.tag("a", &sig_tag), Some(cosign.digest));
        assert_eq!(src.count(Op::HeadManifest), 1, "found in the tag list: the image is looked up, not the tag");
    }

    #[test]
    fn where_tags_cannot_be_listed_referrer_tags_are_asked_for() {
        let (src, dst) = src_dst();
        let (sig_tag, cosign) = add_cosign_signed(&src);
        src.fail(Op::ListTags, None, usize::MAX, 403);
        sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.tag("a", &sig_tag), Some(cosign.digest));
    }

    #[test]
    fn a_referrers_tag_naming_the_subject_itself_lists_nothing() {
        // GitLab resolves `sha256-<hex>` as the digest (oras-project/oras-go#1396): as if it
        // were a tag of the subject itself.
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::without_referrers_api("dst.io"));
        let idx = multi_arch();
        src.add("a", Some("v1"), &idx);
        src.add("a", Some(&fallback_tag(&idx.digest)), &idx);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tags("a"), ["v1"], "its children were taken for its referrers");
        assert_eq!(dst.pushed().len(), 3, "each child once, then the index: {:?}", dst.pushed());
    }

    #[test]
    fn a_destination_referrers_tag_naming_the_subject_itself_is_not_merged_into() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::without_referrers_api("dst.io"));
        let (v1, sig) = add_signed_by_tag(&src);
        dst.add("a", Some("v1"), &v1);
        dst.add("a", Some(&fallback_tag(&v1.digest)), &v1);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.listed("a", &dst.tag("a", &fallback_tag(&v1.digest)).unwrap()), [sig.digest]);
    }

    #[test]
    fn a_source_without_the_api_is_asked_once() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::new("dst.io"));
        src.add("a", Some("v1"), &image("v1").build());
        src.add("a", Some("v2"), &image("v2").build());
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        assert_eq!(report.synced.len(), 2);
        assert_eq!(src.count(Op::Referrers), 1);
    }
}
