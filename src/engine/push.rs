//! Pushing a manifest whose blobs and children are all at the destination; the top-level one
//! completes its image.

use std::sync::Arc;

use super::context::{Ctx, Outcome, SyncError};
use super::graph::Node;
use super::progress::Event;

pub fn push(ctx: &Ctx, node: &Arc<Node>) -> Result<(), SyncError> {
    let client = ctx.regs.client(&node.dst.repo);
    client.put_manifest(&node.dst.repo.name, &node.dst.reference, &node.bytes, &node.media_type)?;
    ctx.event(Event::ManifestPushed);
    ctx.tally(&node.image, |s| s.manifests_pushed += 1);
    match &node.parent {
        Some(parent) => ctx.complete(parent),
        None => {
            log::info!("synced {}", node.image);
            ctx.event(Event::ImageSynced);
            ctx.outcome(&node.image, Outcome::Synced(crate::reference::Digest::of(&node.bytes)));
            ctx.synced.lock().push((*node.image).clone());
        }
    }
    Ok(())
}
