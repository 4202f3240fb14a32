//! Pushing a manifest whose blobs and children are all at the destination; the top-level one
//! completes its image.

use std::sync::Arc;

use super::ctx::Ctx;
use super::error::SyncError;
use super::events::Event;
use super::graph::{Action, Node};
use super::outcome::Outcome;
use crate::digest::Digest;

pub fn push(ctx: &Ctx, node: &Arc<Node>) -> Result<(), SyncError> {
    let outcome = match &node.action {
        Action::Push { bytes, media_type } => {
            let store = ctx.stores.get(&node.dst.repo);
            store.put_manifest(&node.dst.repo, &node.dst.reference, bytes, media_type, node.parent.is_none())?;
            ctx.event(Event::ManifestPushed);
            ctx.record.tally(&node.image, |s| s.manifests_pushed += 1);
            Outcome::Synced(Digest::of(bytes))
        }
        Action::Settle(digest) => Outcome::Unchanged(digest.clone()),
    };
    match &node.parent {
        Some(parent) => ctx.complete(parent),
        None => {
            match &outcome {
                Outcome::Unchanged(_) => {
                    log::info!("unchanged {}: destination has the same digest; referrers copied", node.image);
                    ctx.event(Event::ImageUnchanged);
                }
                _ => {
                    log::info!("synced {}", node.image);
                    ctx.event(Event::ImageSynced);
                }
            }
            ctx.record.ended(&node.image, outcome);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{add_signed, copy, copy_v1, multi_arch, src_dst, sync, Op};
    use crate::engine::Outcome;

    #[test]
    fn children_go_by_digest_and_only_the_image_itself_is_top() {
        let idx = multi_arch();
        let (report, _, dst) = copy(&idx, copy_v1());
        let pushes: Vec<_> = dst.calls(Op::PutManifest).into_iter().map(|c| (c.target, c.top)).collect();
        let children: Vec<_> = idx.children.iter().map(|c| (c.digest.to_string(), false)).collect();
        assert_eq!(pushes[..2].iter().filter(|p| children.contains(p)).count(), 2, "{pushes:?}");
        assert_eq!(pushes[2], ("v1".to_string(), true));
        assert_eq!(report.outcomes[0].1, Outcome::Synced(idx.digest));
        assert_eq!((report.totals.manifests_pushed, report.totals.images_synced), (3, 1));
    }

    #[test]
    fn a_manifest_is_pushed_once_its_blobs_are_there_before_blobs_queued_after_it() {
        // One worker: the index's children are planned in turn, each queueing its blobs; the
        // first child's manifest, ready after its own blobs, goes before the second's blobs.
        let idx = multi_arch();
        let (_, _, dst) = copy(&idx, copy_v1());
        let writes: Vec<_> = dst.writes().into_iter().map(|c| c.target).collect();
        let at = |target: &str| writes.iter().position(|w| w == target).expect("written");
        let (amd, arm) = (&idx.children[0], &idx.children[1]);
        let first = if at(amd.digest.as_str()) < at(arm.digest.as_str()) { amd } else { arm };
        let other = if std::ptr::eq(first, amd) { arm } else { amd };
        for blob in other.blob_digests() {
            assert!(at(first.digest.as_str()) < at(blob.as_str()), "{writes:?}");
        }
    }

    #[test]
    fn an_image_that_lacked_only_a_referrer_ends_unchanged() {
        let (src, dst) = src_dst();
        let (v1, sig) = add_signed(&src);
        dst.add("a", Some("v1"), &v1);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.pushed(), [sig.digest.to_string()]);
        assert_eq!(report.outcomes[0].1, Outcome::Unchanged(v1.digest));
        assert_eq!((report.totals.images_unchanged, report.totals.images_synced), (1, 0));
    }
}
