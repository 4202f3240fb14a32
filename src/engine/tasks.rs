//! The task types and what each does when a worker runs it.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::progress::Event;
use super::{describe_rule, Ctx, SyncError};
use crate::config::Rule;
use crate::manifest::BlobRef;
use crate::reference::{ImageRef, Repository, Selector};
use crate::registry::{Access, Client, Upload};

/// A manifest waiting to be pushed once `pending` reaches zero.
pub struct Node {
    /// Where it comes from (for messages).
    pub src: ImageRef,
    /// Where it goes: repository plus the tag or digest to push it under.
    pub dst: ImageRef,
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// Blobs or child manifests still missing at the destination.
    pub pending: AtomicUsize,
    /// The index this manifest belongs to; `None` for the top-level image.
    pub parent: Option<Arc<Node>>,
}

/// State of one blob at one destination repository.
pub enum BlobState {
    Done,
    /// Being copied by one task; these nodes wait for it too.
    InFlight(Vec<Arc<Node>>),
}

pub struct BlobTask {
    pub src: Repository,
    pub dst: Repository,
    pub blob: BlobRef,
    /// Nodes to notify when the blob is at the destination.
    pub waiters: Mutex<Vec<Arc<Node>>>,
}

pub enum Task {
    Rule(Arc<Rule>),
    Image { src: ImageRef, dst: ImageRef },
    Blob(BlobTask),
    Manifest(Arc<Node>),
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Rule(r) => f.write_str(&describe_rule(r)),
            Task::Image { src, dst } => write!(f, "sync {src} -> {dst}"),
            Task::Blob(b) => write!(f, "copy blob {} from {} to {}", b.blob.digest, b.src, b.dst),
            Task::Manifest(n) => write!(f, "push manifest {} (from {})", n.dst, n.src),
        }
    }
}

impl Task {
    pub fn run(&self, ctx: &Ctx) -> Result<(), SyncError> {
        match self {
            Task::Rule(rule) => expand_rule(ctx, rule),
            Task::Image { src, dst } => super::image::sync_image(ctx, src, dst),
            Task::Blob(b) => copy_blob(ctx, b),
            Task::Manifest(node) => push_manifest(ctx, node),
        }
    }
}

/// One wait fewer for `node`; the last one queues its push.
pub(super) fn complete(ctx: &Ctx, node: &Arc<Node>) {
    if node.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        ctx.queue.push(Task::Manifest(node.clone()));
    }
}

/// Resolve a rule's source tags and pair them with destination references.
fn expand_rule(ctx: &Ctx, rule: &Rule) -> Result<(), SyncError> {
    let src_client = ctx.regs.client(&rule.src.repo);
    let refs: Vec<String> = match &rule.src.selector {
        Selector::Tags(t) => t.clone(),
        Selector::Digest(d) => vec![d.clone()],
        Selector::All => src_client.list_tags(&rule.src.repo.name)?,
        Selector::Regex(re) => {
            src_client.list_tags(&rule.src.repo.name)?.into_iter().filter(|t| re.is_match(t)).collect()
        }
    };
    if refs.is_empty() {
        log::warn!("{}: no tags to synchronise", describe_rule(rule));
    }
    for (i, reference) in refs.into_iter().enumerate() {
        let dst_reference = match &rule.dst.selector {
            Selector::Tags(t) => t[i].clone(),
            Selector::Digest(d) => d.clone(),
            Selector::All | Selector::Regex(_) => reference.clone(),
        };
        let src = ImageRef { repo: rule.src.repo.clone(), reference };
        let dst = ImageRef { repo: rule.dst.repo.clone(), reference: dst_reference };
        ctx.queue.push(Task::Image { src, dst });
    }
    Ok(())
}

fn push_manifest(ctx: &Ctx, node: &Arc<Node>) -> Result<(), SyncError> {
    let client = ctx.regs.client(&node.dst.repo);
    client.put_manifest(&node.dst.repo.name, &node.dst.reference, &node.bytes, &node.media_type)?;
    ctx.event(Event::ManifestPushed);
    match &node.parent {
        Some(parent) => complete(ctx, parent),
        None => {
            log::info!("synced {} -> {}", node.src, node.dst);
            ctx.event(Event::ImageSynced);
            ctx.synced.lock().push((node.src.clone(), node.dst.clone()));
        }
    }
    Ok(())
}

fn copy_blob(ctx: &Ctx, task: &BlobTask) -> Result<(), SyncError> {
    let digest = &task.blob.digest;
    let key = (task.dst.registry.clone(), task.dst.name.clone(), digest.clone());
    {
        let mut blobs = ctx.blobs.lock();
        match blobs.get_mut(&key) {
            Some(BlobState::Done) => {
                drop(blobs);
                task.waiters.lock().drain(..).for_each(|n| complete(ctx, &n));
                return Ok(());
            }
            Some(BlobState::InFlight(others)) => {
                others.append(&mut task.waiters.lock());
                return Ok(());
            }
            None => {
                blobs.insert(key.clone(), BlobState::InFlight(Vec::new()));
            }
        }
    }
    let result = transfer(ctx, task);
    // Settle the entry in one critical section, so no other task can start a second copy.
    let others = {
        let mut blobs = ctx.blobs.lock();
        let others = match blobs.remove(&key) {
            Some(BlobState::InFlight(o)) => o,
            _ => Vec::new(),
        };
        if result.is_ok() {
            blobs.insert(key, BlobState::Done);
        }
        others
    };
    let mut waiters = task.waiters.lock();
    // On failure the waiters stay with this task, which is retried after the pass.
    waiters.extend(others);
    result?;
    ctx.known.lock().insert((task.dst.registry.clone(), digest.clone()), task.dst.name.clone());
    waiters.drain(..).for_each(|n| complete(ctx, &n));
    Ok(())
}

/// Make the blob exist at the destination: already there, mounted, or streamed from the source.
fn transfer(ctx: &Ctx, task: &BlobTask) -> Result<(), SyncError> {
    let (src, dst, digest) = (&task.src, &task.dst, &task.blob.digest);
    let dc = ctx.regs.client(dst);
    if dc.blob_exists(&dst.name, digest, Access::Push)? {
        log::debug!("blob {digest} already in {dst}");
        ctx.event(Event::BlobPresent);
        return Ok(());
    }
    let mount_from = ctx
        .known
        .lock()
        .get(&(dst.registry.clone(), digest.clone()))
        .cloned()
        .or_else(|| (src.registry == dst.registry).then(|| src.name.clone()))
        .filter(|from| *from != dst.name);
    let upload = match mount_from {
        Some(from) => match dc.start_upload(&dst.name, digest, Some(&from)) {
            Ok(u) => u,
            Err(e) => {
                log::debug!("mount of {digest} from {from} refused ({e}); uploading");
                dc.start_upload(&dst.name, digest, None)?
            }
        },
        None => dc.start_upload(&dst.name, digest, None)?,
    };
    let location = match upload {
        Upload::Mounted => {
            log::debug!("blob {digest} mounted into {dst}");
            ctx.event(Event::BlobMounted);
            return Ok(());
        }
        Upload::Location(l) => l,
    };
    let length = match stream(ctx, task, &dc, &location) {
        Err(SyncError::Registry(e)) if e.refuses_monolithic_upload() && !dc.uses_patch_uploads() => {
            log::info!(
                "{}: refuses single-request blob uploads ({}); switching to PATCH uploads",
                dst.registry,
                e.kind
            );
            dc.use_patch_uploads();
            match dc.start_upload(&dst.name, digest, None)? {
                Upload::Location(l) => stream(ctx, task, &dc, &l)?,
                Upload::Mounted => None,
            }
        }
        other => other?,
    };
    log::debug!("blob {digest} copied {src} -> {dst}");
    ctx.event(Event::BlobCopied(length.unwrap_or(0)));
    Ok(())
}

/// Stream the blob from the source into the upload session at `location`, verifying it.
/// Returns the number of bytes sent, when known.
fn stream(ctx: &Ctx, task: &BlobTask, dc: &Client, location: &str) -> Result<Option<u64>, SyncError> {
    let (src, digest) = (&task.src, &task.blob.digest);
    let sc = ctx.regs.client(src);
    let mut reader = sc.get_blob(&src.name, digest)?;
    let length = task.blob.size.or(reader.length);
    dc.upload_blob(&task.dst.name, location, digest, &mut reader, length)?;
    reader.verify(&sc.registry, &format!("GET blob {}@{digest}", src.name), digest, task.blob.size)?;
    Ok(length)
}
