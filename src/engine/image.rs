//! One image (source reference → destination reference): decide whether anything must be
//! copied, and if so plan the blob and manifest tasks.
//!
//! The cheap path comes first: with no platform filter, a HEAD at each side compares digests
//! and an unchanged image costs two requests (and no manifest GET, which some registries
//! rate-limit). Otherwise the source manifest is fetched, filtered if asked, and compared with
//! the destination by digest — never by JSON text.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;

use super::tasks::{BlobTask, Node, Task};
use super::{Ctx, SyncError};
use crate::manifest::{self, filter_index, BlobRef, Filtered, Kind, Manifest, Platform};
use crate::reference::ImageRef;
use crate::registry::Access;

/// Config blobs are small JSON documents; refuse absurd ones.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

fn bad(image: &ImageRef, message: impl Into<String>) -> SyncError {
    SyncError::Manifest { image: image.to_string(), message: message.into() }
}

fn unchanged(ctx: &Ctx, src: &ImageRef, dst: &ImageRef) {
    log::info!("unchanged {src} -> {dst}: destination has the same digest");
    ctx.event(super::progress::Event::ImageUnchanged);
    ctx.synced.lock().push((src.clone(), dst.clone()));
}

pub(super) fn sync_image(ctx: &Ctx, src: &ImageRef, dst: &ImageRef) -> Result<(), SyncError> {
    let sc = ctx.regs.client(&src.repo);
    let dc = ctx.regs.client(&dst.repo);
    let (sname, dname) = (&src.repo.name, &dst.repo.name);

    let mut dst_digest: Option<Option<String>> = None;
    if !ctx.force && ctx.filter.is_empty() {
        let head = sc.head_manifest(sname, &src.reference, Access::Pull)?;
        let Some(head) = head else {
            return Err(bad(src, "manifest not found at the source"));
        };
        if let Some(sd) = head.digest {
            let dd = dc.head_manifest(dname, &dst.reference, Access::Push)?.and_then(|h| h.digest);
            if dd.as_deref() == Some(sd.as_str()) {
                unchanged(ctx, src, dst);
                return Ok(());
            }
            dst_digest = Some(dd);
        }
    }

    let fetched = sc.get_manifest(sname, &src.reference, Access::Pull)?;
    let parsed = Manifest::parse(&fetched.bytes, fetched.media_type.as_deref()).map_err(|m| bad(src, m))?;
    let mut filtered = false;
    let (bytes, digest) = match &parsed.kind {
        Kind::Index { .. } => match filter_index(&fetched.bytes, &ctx.filter).map_err(|m| bad(src, m))? {
            Filtered::Unchanged => (fetched.bytes, fetched.digest),
            Filtered::Rewritten(b) => {
                filtered = true;
                let d = manifest::digest(&b);
                (b, d)
            }
            Filtered::Empty => {
                log::info!("skipped {src}: no platform in it matches --os/--arch");
                return Ok(());
            }
        },
        _ => (fetched.bytes, fetched.digest),
    };
    let mut dst = dst.clone();
    if dst.is_digest() && dst.reference != digest {
        log::info!("{src}: the platform filter rewrote the index; pushing it as {digest}");
        dst.reference = digest.clone();
    }

    if !ctx.force {
        let dd = match dst_digest {
            Some(d) if !dst.is_digest() => d,
            _ => dc.head_manifest(dname, &dst.reference, Access::Push)?.and_then(|h| h.digest),
        };
        if dd.as_deref() == Some(digest.as_str()) {
            unchanged(ctx, src, &dst);
            return Ok(());
        }
    }

    let top = Arc::new(Node {
        src: src.clone(),
        dst: dst.clone(),
        bytes,
        media_type: parsed.media_type.clone(),
        pending: AtomicUsize::new(0),
        parent: None,
    });
    let mut plan = Plan::default();
    match &parsed.kind {
        Kind::Image { config, .. } => {
            if !ctx.filter.is_empty() {
                let raw = sc.get_blob_bytes(sname, &config.digest, MAX_CONFIG_BYTES)?;
                let platform: Platform = serde_json::from_slice(&raw).unwrap_or_default();
                if !ctx.filter.matches(&platform) {
                    log::info!("skipped {src}: its platform {platform} does not match --os/--arch");
                    return Ok(());
                }
            }
            plan.image(&top, parsed.blobs());
        }
        Kind::Schema1 { .. } => plan.image(&top, parsed.blobs()),
        Kind::Index { .. } => {
            // The entries kept by the filter (all of them without one).
            let manifests = match &parsed.kind {
                Kind::Index { manifests } if !filtered => manifests.clone(),
                _ => match Manifest::parse(&top.bytes, Some(&parsed.media_type)).map_err(|m| bad(src, m))?.kind {
                    Kind::Index { manifests } => manifests,
                    _ => return Err(bad(src, "the filtered index no longer parses as an index")),
                },
            };
            let mut children = 0;
            for child in manifests {
                if !ctx.force && dc.head_manifest(dname, &child.digest, Access::Push)?.is_some() {
                    log::debug!("{dst}: child {} already present", child.digest);
                    continue;
                }
                children += 1;
                let f = sc.get_manifest(sname, &child.digest, Access::Pull)?;
                let child_ref = ImageRef { repo: src.repo.clone(), reference: child.digest.clone() };
                let m = Manifest::parse(&f.bytes, f.media_type.as_deref()).map_err(|e| bad(&child_ref, e))?;
                if let Kind::Index { .. } = m.kind {
                    return Err(bad(&child_ref, "nested indexes are not supported"));
                }
                let node = Arc::new(Node {
                    src: child_ref,
                    dst: ImageRef { repo: dst.repo.clone(), reference: child.digest.clone() },
                    bytes: f.bytes,
                    media_type: m.media_type.clone(),
                    pending: AtomicUsize::new(0),
                    parent: Some(top.clone()),
                });
                plan.image(&node, m.blobs());
            }
            top.pending.store(children, std::sync::atomic::Ordering::Release);
        }
    }
    plan.enqueue(ctx, src, &dst, &top);
    Ok(())
}

/// The blobs to copy for one image task, each once, with the manifests waiting on them.
#[derive(Default)]
struct Plan {
    blobs: BTreeMap<String, (BlobRef, Vec<Arc<Node>>)>,
    nodes: Vec<Arc<Node>>,
}

impl Plan {
    fn image(&mut self, node: &Arc<Node>, blobs: Vec<BlobRef>) {
        node.pending.store(blobs.len(), std::sync::atomic::Ordering::Release);
        for b in blobs {
            self.blobs.entry(b.digest.clone()).or_insert_with(|| (b, Vec::new())).1.push(node.clone());
        }
        self.nodes.push(node.clone());
    }

    /// Queue everything. All counters are set before the first task is queued.
    fn enqueue(self, ctx: &Ctx, src: &ImageRef, dst: &ImageRef, top: &Arc<Node>) {
        use std::sync::atomic::Ordering;
        for n in self.nodes.iter().filter(|n| n.pending.load(Ordering::Acquire) == 0) {
            // An image without blobs (not seen in practice) is pushed right away.
            ctx.queue.push(Task::Manifest(n.clone()));
        }
        if self.nodes.is_empty() {
            // Every child is already at the destination: only the index itself is missing.
            ctx.queue.push(Task::Manifest(top.clone()));
        }
        for (_, (blob, waiters)) in self.blobs {
            ctx.queue.push(Task::Blob(BlobTask {
                src: src.repo.clone(),
                dst: dst.repo.clone(),
                blob,
                waiters: Mutex::new(waiters),
            }));
        }
    }
}
