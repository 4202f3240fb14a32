//! A dry run's report of one image: what copying it would move. Blobs are looked up at the
//! destination with `HEAD` only; nothing is queued, so nothing is written.

use std::collections::HashSet;
use std::sync::Arc;

use super::ctx::Ctx;
use super::error::SyncError;
use super::events::Event;
use super::graph::{Action, Planned};
use super::outcome::Outcome;
use crate::digest::Digest;
use crate::rule::Pair;
use crate::store::Access;

/// Report what copying `top` (the image's planned manifests, `digest` at the top) would move.
pub fn report(ctx: &Ctx, pair: &Arc<Pair>, top: &Planned, digest: &Digest) -> Result<(), SyncError> {
    let dc = ctx.stores.get(&pair.dst.repo);
    let mut seen = HashSet::new();
    let (mut missing, mut bytes, mut present) = (0, 0, 0);
    let nodes = top.walk();
    for blob in nodes.iter().flat_map(|n| n.blobs.iter()) {
        if !seen.insert(blob.digest.clone()) {
            continue;
        }
        if dc.blob_exists(&pair.dst.repo, &blob.digest, Access::Push)? {
            present += 1;
        } else {
            missing += 1;
            bytes += blob.size.unwrap_or(0);
        }
    }
    let manifests = nodes.iter().filter(|n| matches!(n.action, Action::Push { .. })).count();
    log::info!(
        "would copy {pair}: {manifests} manifest(s), {missing} blob(s) to copy ({:.1} MiB), {present} already present",
        bytes as f64 / (1024.0 * 1024.0)
    );
    ctx.event(Event::ImagePlanned { missing, bytes, present });
    ctx.record.ended(pair, Outcome::Planned(digest.clone()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{copy_v1, image, index, src_dst, sync, Image};
    use crate::engine::{Mode, Outcome, Report};

    /// A dry run of `image` from `src.io/a:v1` to `dst.io/a`, which has `there` already.
    fn dry_run(image: &Image, there: &Image) -> Report {
        let (src, dst) = src_dst();
        src.add("a", Some("v1"), image);
        dst.add("a", None, there);
        let mut job = copy_v1();
        job.opts.mode = Mode::DryRun;
        let report = sync(job, &[&src, &dst]);
        assert!(dst.writes().is_empty(), "a dry run writes nothing: {:?}", dst.writes());
        report
    }

    #[test]
    fn a_dry_run_counts_what_would_move_and_writes_nothing() {
        let v1 = image("v1").layers(&["base", "app"]).build();
        let report = dry_run(&v1, &image("other").layers(&["base"]).build());
        let t = &report.totals;
        let bytes = (v1.blobs[0].len() + v1.blobs[2].len()) as u64;
        assert_eq!((t.images_planned, t.blobs_planned, t.bytes_planned, t.blobs_present), (1, 2, bytes, 1));
        assert_eq!(report.outcomes[0].1, Outcome::Planned(v1.digest));
    }

    #[test]
    fn a_blob_two_children_share_is_counted_once() {
        let amd = image("amd").layers(&["shared", "amd"]).build();
        let idx = index(&[&amd, &image("arm").arch("arm64").layers(&["shared", "arm"]).build()]);
        let report = dry_run(&idx, &image("unrelated").build());
        assert_eq!(report.totals.blobs_planned, 5, "two configs, the shared layer, two others");
    }
}
