//! One image (source reference → destination reference): decide whether anything must be
//! copied, and if so plan the blob and manifest tasks.
//!
//! The cheap path comes first: with no platform filter, a HEAD at each side compares digests
//! and an unchanged image costs two requests (and no manifest GET, which some registries
//! rate-limit). Otherwise the source manifest is fetched, filtered if asked, and compared with
//! the destination by digest — never by JSON text.

use std::sync::Arc;

use super::context::{Ctx, Outcome, SyncError};
use super::graph::{Graph, Pair, Planned};
use super::progress::Event;
use crate::manifest::{filter_index, Filtered, Kind, Manifest, Platform};
use crate::reference::{Digest, ImageRef, Reference};
use crate::registry::{Access, Client};

/// Config blobs are small JSON documents; refuse absurd ones.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

pub(super) fn bad(image: &ImageRef, message: impl Into<String>) -> SyncError {
    SyncError::Manifest { image: image.to_string(), message: message.into() }
}

/// Nothing of the image matches the platform filter.
pub(super) fn skipped(ctx: &Ctx, pair: &Pair, reason: String) {
    log::info!("skipped {}: {reason}", pair.src);
    ctx.outcome(pair, Outcome::Skipped(reason));
    ctx.event(Event::ImageSkipped);
}

/// The platform of a single image, read from its config blob.
pub(super) fn image_platform(sc: &Client, src: &ImageRef, config: &Digest) -> Result<Platform, SyncError> {
    let raw = sc.get_blob_bytes(&src.repo.name, config, MAX_CONFIG_BYTES)?;
    Ok(serde_json::from_slice(&raw).unwrap_or_default())
}

fn unchanged(ctx: &Ctx, pair: &Pair, digest: &Digest) {
    log::info!("unchanged {pair}: destination has the same digest");
    ctx.outcome(pair, Outcome::Unchanged(digest.clone()));
    ctx.event(Event::ImageUnchanged);
    ctx.synced.lock().push(pair.clone());
}

/// Sync one image: nothing when the destination has it already, else queue its graph.
pub fn sync(ctx: &Ctx, pair: &Arc<Pair>) -> Result<(), SyncError> {
    ctx.started(pair);
    let (src, dst) = (&pair.src, &pair.dst);
    let sc = ctx.regs.client(&src.repo);
    let dc = ctx.regs.client(&dst.repo);
    let (sname, dname) = (&src.repo.name, &dst.repo.name);

    let mut dst_digest: Option<Option<Digest>> = None;
    if !ctx.force && ctx.filter.is_empty() {
        // A source that refuses HEAD (405), answers it 404 while GET works, or leaves out the
        // digest goes straight to the GET below.
        let head = match sc.head_manifest(sname, &src.reference, Access::Pull) {
            Ok(h) => h,
            Err(e) if e.status_code() == Some(405) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(sd) = head.and_then(|h| h.digest) {
            let dd = dc.manifest_digest(dname, &dst.reference, Access::Push)?;
            if dd.as_ref() == Some(&sd) {
                unchanged(ctx, pair, &sd);
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
                let d = Digest::of(&b);
                (b, d)
            }
            Filtered::Empty => {
                skipped(ctx, pair, "no platform in it matches --os/--arch".into());
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

    if !ctx.force {
        let dd = match dst_digest {
            Some(d) if !dst.is_digest() => d,
            _ => dc.manifest_digest(dname, &dst.reference, Access::Push)?,
        };
        if dd.as_ref() == Some(&digest) {
            unchanged(ctx, &pair, &digest);
            return Ok(());
        }
    }

    let mut top = Planned {
        src: src.clone(),
        dst: dst.clone(),
        bytes,
        media_type: parsed.media_type.clone(),
        blobs: Vec::new(),
        children: Vec::new(),
    };
    match &parsed.kind {
        Kind::Image { config, .. } => {
            if !ctx.filter.is_empty() {
                let platform = image_platform(&sc, src, &config.digest)?;
                if !ctx.filter.matches(&platform) {
                    skipped(ctx, &pair, format!("its platform {platform} does not match --os/--arch"));
                    return Ok(());
                }
            }
            top.blobs = parsed.blobs();
        }
        Kind::Schema1 { .. } => top.blobs = parsed.blobs(),
        Kind::Index { .. } => {
            // The entries kept by the filter (all of them without one).
            let manifests = match &parsed.kind {
                Kind::Index { manifests } if !filtered => manifests.clone(),
                _ => match Manifest::parse(&top.bytes, Some(&parsed.media_type)).map_err(|m| bad(src, m))?.kind {
                    Kind::Index { manifests } => manifests,
                    _ => return Err(bad(src, "the filtered index no longer parses as an index")),
                },
            };
            for child in manifests {
                let child_ref = Reference::Digest(child.digest.clone());
                if !ctx.force && dc.head_manifest(dname, &child_ref, Access::Push)?.is_some() {
                    log::debug!("{dst}: child {} already present", child.digest);
                    continue;
                }
                let f = sc.get_manifest(sname, &child_ref, Access::Pull)?;
                let child_src = ImageRef { repo: src.repo.clone(), reference: child_ref.clone() };
                let m = Manifest::parse(&f.bytes, f.media_type.as_deref()).map_err(|e| bad(&child_src, e))?;
                if let Kind::Index { .. } = m.kind {
                    return Err(bad(&child_src, "nested indexes are not supported"));
                }
                top.children.push(Planned {
                    src: child_src,
                    dst: ImageRef { repo: dst.repo.clone(), reference: child_ref },
                    bytes: f.bytes,
                    media_type: m.media_type.clone(),
                    blobs: m.blobs(),
                    children: Vec::new(),
                });
            }
        }
    }
    if ctx.dry_run() {
        return plan(ctx, &pair, &top, &digest);
    }
    let mut graph = Graph::default();
    graph.add(top, &pair, None);
    graph.enqueue(&ctx.queue, &src.repo, &dst.repo);
    Ok(())
}

/// A dry run: what copying `top` would move. Blobs are looked up at the destination with `HEAD`
/// only; nothing is queued, so nothing is written.
fn plan(ctx: &Ctx, pair: &Pair, top: &Planned, digest: &Digest) -> Result<(), SyncError> {
    let dc = ctx.regs.client(&pair.dst.repo);
    let mut seen = std::collections::HashSet::new();
    let (mut missing, mut bytes, mut present) = (0, 0, 0);
    for blob in top.blobs.iter().chain(top.children.iter().flat_map(|c| c.blobs.iter())) {
        if !seen.insert(blob.digest.clone()) {
            continue;
        }
        if dc.blob_exists(&pair.dst.repo.name, &blob.digest, Access::Push)? {
            present += 1;
        } else {
            missing += 1;
            bytes += blob.size.unwrap_or(0);
        }
    }
    let manifests = 1 + top.children.len();
    log::info!(
        "would copy {pair}: {manifests} manifest(s), {missing} blob(s) to copy ({:.1} MiB), {present} already present",
        bytes as f64 / (1024.0 * 1024.0)
    );
    ctx.event(Event::ImagePlanned { missing, bytes, present });
    ctx.outcome(pair, Outcome::Planned(digest.clone()));
    Ok(())
}
