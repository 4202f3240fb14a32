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
