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
