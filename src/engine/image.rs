//! One image (source reference → destination reference): decide whether anything must be
//! copied, and if so plan the blob and manifest tasks ([`super::plan`] walks the manifests).
//!
//! The cheap path comes first. The destination is asked first (a tag it lacks needs no source
//! HEAD); when it has the tag, a source HEAD compares digests, so an unchanged image costs two
//! requests and no manifest GET (which some registries rate-limit) — with `--os/--arch` too
//! when the HEAD says the tag is a single image. Looking up its referrers is free from the tag
//! list read once per repository, or one GET at a source with the referrers API. Otherwise the
//! source manifest is fetched, filtered if asked, and compared with the destination by digest —
//! never by JSON text. An unchanged image still gets what refers to it, or to any manifest below
//! it, and is missing at the destination (referrers arrive after their subject: `cosign sign
//! --recursive` signs each platform's manifest); an unchanged index is read to find its
//! children only where one of them may have a referrer ([`referrers_below`]). A copied image's
//! own tasks are queued before its referrers are looked up, and an index's children are planned
//! by tasks of their own ([`child`]), the image's manifest held until all of that is planned
//! ([`super::graph::Held`]): on a far source, its blobs do not wait for the referrers round
//! trip, nor its children for one another.

use std::sync::Arc;

use parking_lot::Mutex;

use super::ctx::Ctx;
use super::dry_run;
use super::error::SyncError;
use super::graph::{Action, ChildTask, Graph, Planned, Task};
use super::plan::{image_platform, Planner};
use super::referrers;
use crate::digest::Digest;
use crate::manifest::{entries, Filtered, Kind, Manifest, MediaType};
use crate::reference::Reference;
use crate::rule::Pair;
use crate::store::Access;

/// Sync one image: nothing when the destination has it already (and whatever refers to it),
/// else queue its graph.
pub fn sync(ctx: &Ctx, pair: &Arc<Pair>) -> Result<(), SyncError> {
    ctx.record.started(pair);
    let (src, dst) = (&pair.src, &pair.dst);
    let sc = ctx.stores.get(&src.repo);
    let dc = ctx.stores.get(&dst.repo);
    let mut planner = Planner::new(ctx, &*sc, &*dc, src, &dst.repo);

    let mut dst_digest: Option<Option<Digest>> = None;
    if !ctx.opts.force {
        // The destination first: where it lacks the tag, a source HEAD would tell nothing that
        // the GET below does not (one request per new tag saved).
        let dd = dc.manifest_digest(&dst.repo, &dst.reference, Access::Push)?;
        if dd.is_some() {
            // A source that refuses HEAD (405), answers it 404 while GET works, or leaves out
            // the digest goes straight to the GET below. With `--os/--arch`, only a single image
            // can be judged by its digest alone; an index is filtered first.
            let head = match sc.head_manifest(&src.repo, &src.reference, Access::Pull) {
                Ok(h) => h,
                Err(e) if e.status_code() == Some(405) => None,
                Err(e) => return Err(e.into()),
            };
            let judged =
                |t: &Option<MediaType>| ctx.opts.filter.is_empty() || t.as_ref().is_some_and(MediaType::is_image);
            if let Some(h) = head.filter(|h| judged(&h.media_type)) {
                if let Some(sd) = h.digest.filter(|sd| dd.as_ref() == Some(sd)) {
                    return settled(ctx, &mut planner, pair, sd, true, Below::Head(h.media_type));
                }
            }
        }
        dst_digest = Some(dd);
    }

    let fetched = ctx.manifests.get(&*sc, &src.repo, &src.reference)?;
    let parsed =
        Manifest::parse(&fetched.bytes, fetched.media_type.as_ref()).map_err(|m| SyncError::manifest(src, m))?;
    let mut filtered = false;
    let (bytes, digest) = match &parsed.kind {
        Kind::Index { .. } if !ctx.opts.filter.is_empty() => match planner.filter(&fetched.bytes, 1)? {
            Filtered::Unchanged => (fetched.bytes, fetched.digest),
            Filtered::Rewritten(b) => {
                filtered = true;
                let d = Digest::of(&b);
                (b, d)
            }
            Filtered::Empty => {
                ctx.skipped(pair, "no platform in it matches --os/--arch".into());
                return Ok(());
            }
        },
        _ => (fetched.bytes, fetched.digest),
    };
    let mut pair = pair.clone();
    if dst.is_digest() && dst.reference != Reference::Digest(digest.clone()) {
        log::info!("{src}: the platform filter rewrote the index; pushing it as {digest}");
        Arc::make_mut(&mut pair).dst.reference = Reference::Digest(digest.clone());
    }
    let dst = &pair.dst;

    if !ctx.opts.force {
        let dd = match dst_digest {
            Some(d) if !dst.is_digest() => d,
            _ => dc.manifest_digest(&dst.repo, &dst.reference, Access::Push)?,
        };
        // A destination that names the same bytes with another algorithm (a registry stores a
        // sha512 image pushed by tag under its sha256) has it too.
        let same = |d: &Digest| if d.algorithm() == digest.algorithm() { *d == digest } else { d.matches(&bytes) };
        if dd.as_ref().is_some_and(same) {
            return settled(ctx, &mut planner, &pair, digest, !filtered, Below::Bytes(&bytes));
        }
    }

    let mut top = Planned::push(src.clone(), dst.clone(), Vec::new(), parsed.media_type.clone());
    // An index's children to be planned by tasks of their own, in parallel.
    let mut later = Vec::new();
    match &parsed.kind {
        Kind::Image { config, .. } => {
            if !ctx.opts.filter.is_empty() {
                let platform = image_platform(&*sc, src, &config.digest)?;
                if !ctx.opts.filter.matches(&platform) {
                    ctx.skipped(&pair, format!("its platform {platform} does not match --os/--arch"));
                    return Ok(());
                }
            }
            top.blobs = parsed.blobs();
        }
        // The entries kept by the filter, planned here (the filter has fetched, and kept, the
        // nested indexes they need).
        Kind::Index { .. } if filtered => {
            top.children = planner.children(&entries(&bytes).map_err(|m| SyncError::manifest(src, m))?, 1)?;
        }
        Kind::Index { manifests } if ctx.opts.dry_run() || !ctx.opts.filter.is_empty() => {
            top.children = planner.children(manifests, 1)?
        }
        Kind::Index { manifests } => later = manifests.clone(),
    }
    top.action = Action::Push { bytes, media_type: parsed.media_type.clone() };
    // What refers to the index the filter rewrote refers to the source's, not to ours.
    if filtered {
        return queue(ctx, &pair, top, &digest);
    }
    if ctx.opts.dry_run() {
        top.children.extend(planner.referrers(&digest, 2)?);
        return queue(ctx, &pair, top, &digest);
    }
    // Neither the image's own blobs nor an index's children wait for the referrers lookup, nor
    // the children for one another (each is a round trip or two to the source): the blobs are
    // queued first, each child is planned by a task of its own, and the image's manifest is
    // held until its children and referrers are planned under it. If any of that fails, the
    // image fails without its manifest pushed.
    let mut graph = Graph::default();
    let held = graph.add_held(top, &pair);
    graph.enqueue(&ctx.queue, &pair.src.repo, &pair.dst.repo);
    for child in later {
        let held = Mutex::new(Some(held.hold_more()));
        ctx.queue.push(Task::Child(Box::new(ChildTask { image: pair.clone(), child, held })));
    }
    let referrers = planner.referrers(&digest, 2)?;
    held.release(referrers, &ctx.queue, &pair.src.repo, &pair.dst.repo);
    Ok(())
}

/// Plan one child of an index (and everything below it) and put it under the index's node.
pub fn child(ctx: &Ctx, task: &ChildTask) -> Result<(), SyncError> {
    let pair = &task.image;
    if task.held.lock().as_ref().is_none_or(|h| h.node().abandoned()) {
        // The image failed while this waited (another part could not be planned): its index
        // is never pushed, and a retry of the image plans it anew.
        log::debug!("{}: not planned, the image failed meanwhile", task.child.digest);
        return Ok(());
    }
    let (sc, dc) = (ctx.stores.get(&pair.src.repo), ctx.stores.get(&pair.dst.repo));
    let mut planner = Planner::new(ctx, &*sc, &*dc, &pair.src, &pair.dst.repo);
    let planned = planner.child(&task.child, 1)?;
    // Taken only now: a failed try leaves it for the next pass.
    if let Some(held) = task.held.lock().take() {
        held.release(planned, &ctx.queue, &pair.src.repo, &pair.dst.repo);
    }
    Ok(())
}

/// What the unchanged path knows of the image's manifest, to find what is below it.
enum Below<'b> {
    /// Its media type, from the source's HEAD (the bytes were not read).
    Head(Option<MediaType>),
    /// The manifest as pushed (filtered, if the filter rewrote it).
    Bytes(&'b [u8]),
}

/// The destination has the image: done, unless something referring to it (`with_referrers`),
/// or to a manifest below it, is missing there.
fn settled(
    ctx: &Ctx,
    planner: &mut Planner,
    pair: &Arc<Pair>,
    digest: Digest,
    with_referrers: bool,
    below: Below,
) -> Result<(), SyncError> {
    let mut missing = if with_referrers { planner.referrers(&digest, 2)? } else { Vec::new() };
    missing.extend(referrers_below(ctx, planner, &digest, below)?);
    if missing.is_empty() {
        ctx.unchanged(pair, &digest);
        return Ok(());
    }
    let mut top = Planned::push(pair.src.clone(), pair.dst.clone(), Vec::new(), MediaType::default());
    top.action = Action::Settle(digest.clone());
    top.children = missing;
    queue(ctx, pair, top, &digest)
}

/// What refers to a manifest below the unchanged image `digest` and is missing at the
/// destination. Its entries are read from its bytes when the path that found it unchanged
/// fetched them; after a HEAD, an index is read (from the destination, see
/// [`Planner::referrers_below`]) only where one of its children may have a referrer — so a
/// no-op run against a source that lists referrers as tags costs no request more when no child
/// has any.
fn referrers_below(ctx: &Ctx, planner: &mut Planner, digest: &Digest, below: Below) -> Result<Vec<Planned>, SyncError> {
    if !ctx.opts.referrers.enabled {
        return Ok(Vec::new());
    }
    let read;
    let bytes = match below {
        Below::Bytes(b) => b,
        // An image has nothing below it; a type that names no manifest (`application/json`) tells
        // nothing.
        Below::Head(Some(t)) if t.names_a_manifest() && !t.is_index() => return Ok(Vec::new()),
        Below::Head(_) => {
            if !referrers::below_may_have(ctx, planner.sc, planner.src, digest) {
                return Ok(Vec::new());
            }
            let at = planner.at_dst(Reference::Digest(digest.clone()));
            read = planner.dc.get_manifest(&at.repo, &at.reference, Access::Push)?;
            &read.bytes
        }
    };
    match Manifest::parse(bytes, None).map(|m| m.kind) {
        Ok(Kind::Index { manifests }) => planner.referrers_below(&manifests, 1),
        Ok(Kind::Image { .. }) => Ok(Vec::new()),
        Err(m) => Err(SyncError::manifest(&planner.at_dst(Reference::Digest(digest.clone())), m)),
    }
}

/// Queue the graph of `top` (or, in a dry run, report what it would move).
fn queue(ctx: &Ctx, pair: &Arc<Pair>, top: Planned, digest: &Digest) -> Result<(), SyncError> {
    if ctx.opts.dry_run() {
        return dry_run::report(ctx, pair, &top, digest);
    }
    let mut graph = Graph::default();
    graph.add(top, pair, None);
    graph.enqueue(&ctx.queue, &pair.src.repo, &pair.dst.repo);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{
        arm64, copy, copy_v1, image, index, multi_arch, src_dst, sync, Image, MemStore, Op, SIG,
    };
    use crate::engine::Outcome;
    use crate::manifest::fallback_tag;

    /// A multi-arch `a:v1` at both `src` and `dst`, and a signature of its arm64 child at `src`
    /// (listed under the child's fallback tag too): the index, and the signature.
    fn child_signed_at_the_source(src: &MemStore, dst: &MemStore) -> (Image, Image) {
        let idx = multi_arch();
        let sig = image("sig").refers_to(&idx.children[1], SIG).build();
        src.add("a", Some("v1"), &idx);
        dst.add("a", Some("v1"), &idx);
        src.add("a", None, &sig);
        src.add("a", Some(&fallback_tag(&idx.children[1].digest)), &index(&[&sig]));
        (idx, sig)
    }

    #[test]
    fn an_unchanged_index_gets_what_now_refers_to_its_children() {
        for api in [true, false] {
            let (src, dst) = (MemStore::with_referrers_api("src.io", api), MemStore::new("dst.io"));
            let (idx, sig) = child_signed_at_the_source(&src, &dst);
            let report = sync(copy_v1(), &[&src, &dst]);
            assert_eq!(report.outcomes[0].1, Outcome::Unchanged(idx.digest.clone()), "api: {api}");
            assert!(dst.manifest("a", &sig.digest).is_some(), "the child's signature arrived (api: {api})");
            assert_eq!(src.count(Op::GetManifest), if api { 1 } else { 2 }, "the signature (and its fallback tag)");
            assert_eq!(dst.count_on(Op::GetManifest, &idx.digest), 1, "the index read once, where it is");
        }
    }

    #[test]
    fn an_unchanged_index_is_not_read_when_no_tag_names_a_referrer_below_it() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::new("dst.io"));
        let idx = multi_arch();
        let sig = image("sig").refers_to(&idx, SIG).build();
        src.add("a", Some("v1"), &idx);
        dst.add("a", Some("v1"), &idx);
        dst.add("a", None, &sig);
        src.add("a", Some(&fallback_tag(&idx.digest)), &index(&[&sig]));
        let report = sync(copy_v1(), &[&src, &dst]);
        assert_eq!(report.outcomes[0].1, Outcome::Unchanged(idx.digest.clone()));
        assert_eq!(dst.count(Op::GetManifest), 0, "the index is not read: {:?}", dst.calls(Op::GetManifest));
        assert_eq!(src.count(Op::GetManifest), 1, "the index's own fallback tag");
        assert!(dst.writes().is_empty());
    }

    #[test]
    fn no_referrers_reads_nothing_below_an_unchanged_index() {
        let (src, dst) = src_dst();
        child_signed_at_the_source(&src, &dst);
        let mut job = copy_v1();
        job.opts.referrers.enabled = false;
        sync(job, &[&src, &dst]);
        assert_eq!((src.count(Op::Referrers), src.count(Op::GetManifest), dst.count(Op::GetManifest)), (0, 0, 0));
        assert!(dst.writes().is_empty());
    }

    #[test]
    fn a_changed_index_gets_what_refers_to_the_children_the_destination_has() {
        let (src, dst) = src_dst();
        let (idx, sig) = child_signed_at_the_source(&src, &dst);
        let v2 = index(&[&idx.children[1], &image("new").build()]);
        src.add("a", Some("v1"), &v2);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(v2.digest));
        assert!(dst.manifest("a", &sig.digest).is_some(), "the present child's signature arrived");
        assert_eq!(src.count_on(Op::GetManifest, &idx.children[1].digest), 0, "the present child is not read");
    }

    #[test]
    fn an_unchanged_image_costs_only_heads() {
        let (src, dst) = src_dst();
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        dst.add("a", Some("v1"), &v1);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert_eq!(report.outcomes[0].1, Outcome::Unchanged(v1.digest));
        assert_eq!((src.count(Op::HeadManifest), dst.count(Op::HeadManifest)), (1, 1));
        assert_eq!((src.count(Op::GetManifest), dst.count(Op::GetManifest)), (0, 0), "no manifest GET");
        assert!(dst.writes().is_empty());
    }

    #[test]
    fn an_index_arrives_whole_and_is_pushed_last() {
        let idx = multi_arch();
        let (report, _, dst) = copy(&idx, copy_v1());
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let pushed = dst.pushed();
        assert_eq!(pushed.len(), 3);
        assert_eq!(pushed.last().map(String::as_str), Some("v1"), "the index last: {pushed:?}");
        assert!(idx.children.iter().flat_map(|c| c.blob_digests()).all(|d| dst.has_blob("a", &d)));
    }

    #[test]
    fn the_platform_filter_rewrites_an_index_and_moves_only_the_kept_platform() {
        let idx = multi_arch();
        let (amd, arm) = (&idx.children[0], &idx.children[1]);
        let mut job = copy_v1();
        job.opts.filter = arm64();
        let (report, src, dst) = copy(&idx, job);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let pushed = dst.tag("a", "v1").expect("pushed");
        assert_ne!(pushed, idx.digest, "rewritten");
        assert_eq!(dst.listed("a", &pushed), std::slice::from_ref(&arm.digest));
        assert!(arm.blob_digests().iter().all(|d| dst.has_blob("a", d)));
        assert!(amd.blob_digests().iter().all(|d| !dst.has_blob("a", d) && src.count_on(Op::GetBlob, d) == 0));
    }

    #[test]
    fn an_image_of_another_platform_is_skipped() {
        let mut job = copy_v1();
        job.opts.filter = arm64();
        let (report, _, dst) = copy(&image("amd").build(), job);
        assert!(matches!(report.outcomes[0].1, Outcome::Skipped(_)), "{:?}", report.outcomes);
        assert!(dst.writes().is_empty());
    }

    #[test]
    fn a_child_that_failed_is_planned_again_in_the_next_pass() {
        let (src, dst) = src_dst();
        let idx = multi_arch();
        let arm = &idx.children[1];
        src.add("a", Some("v1"), &idx);
        src.fail(Op::GetManifest, Some(arm.digest.as_str()), 1, 503);
        let mut job = copy_v1();
        job.retries = 1;
        let report = sync(job, &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(idx.digest));
        assert_eq!(src.count_on(Op::GetManifest, &arm.digest), 2);
    }
}
