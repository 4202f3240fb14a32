//! One blob to one destination repository: already there, mounted from a sibling repository,
//! or streamed from the source — once per destination, however many images need it.
//!
//! A transfer that fails in a way that may clear up (a cut, a stall, a damaged body) is tried
//! again here, with back-off, a bounded number of times; each try opens a new upload session
//! and, where the source allows, checks everything before the first byte is sent.

use std::sync::Arc;

use super::ctx::Ctx;
use super::error::SyncError;
use super::events::{Event, Moving};
use super::graph::{BlobTask, Task};
use super::ledger::Claim;
use crate::reference::Repository;
use crate::retry::Backoff;
use crate::rule::Pair;
use crate::store::{Access, Mount, Session, Store};

/// How a blob came to be at the destination.
#[derive(Clone, Copy)]
enum Moved {
    Present,
    Mounted,
    /// Streamed from the source: this many bytes.
    Copied(u64),
}

/// Copy the blob (claim → transfer → settle, see [`super::ledger`]), then release every
/// manifest waiting for it.
pub fn copy(ctx: &Ctx, task: &BlobTask) -> Result<(), SyncError> {
    let image = task.image();
    // Found at the destination, moved there by `mover`'s task: counted for another image only.
    let shared = |mover: Option<Arc<Pair>>| {
        if let Some(image) = image.as_ref().filter(|i| mover.as_ref() != Some(*i)) {
            ctx.record.tally(image, |s| s.blobs_present += 1);
        }
    };
    let mounts = ctx.stores.get(&task.dst).mounts_honoured() != Some(false);
    // Which image moved a blob matters only to per-image figures; otherwise the ledger is not
    // handed the image, and keeps no pair alive for it.
    let mover = image.as_ref().filter(|_| ctx.opts.per_image);
    let relay = match ctx.ledger.claim(task, mover, mounts) {
        Claim::Done(mover) => {
            shared(mover);
            task.waiters.lock().drain(..).for_each(|n| ctx.complete(&n));
            return Ok(());
        }
        Claim::Joined(mover) => {
            shared(mover);
            return Ok(());
        }
        Claim::Parked => return Ok(()),
        Claim::Copy { relay } => relay,
    };
    // A panic must not leave the ledger unsettled: tasks parked on this copy would be lost,
    // neither synced nor failed.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        transfer_with_retries(ctx, task, image.as_deref(), relay.as_ref())
    }))
    .unwrap_or_else(|p| Err(SyncError::Panic(super::queue::panic_message(&p))));
    let settled = ctx.ledger.settle(task, result.is_ok(), mover);
    for parked in settled.requeue {
        ctx.queue.push(Task::Blob(Box::new(parked)));
    }
    let mut waiters = task.waiters.lock();
    // On failure the waiters stay with this task, which may be retried after the pass.
    waiters.extend(settled.joined);
    let moved = result?;
    if let Some(image) = &image {
        ctx.record.tally(image, |s| match moved {
            Moved::Present => s.blobs_present += 1,
            Moved::Mounted => s.blobs_mounted += 1,
            Moved::Copied(n) => {
                s.blobs_copied += 1;
                s.bytes += n;
            }
        });
    }
    ctx.event(match moved {
        Moved::Present => Event::BlobPresent,
        Moved::Mounted => Event::BlobMounted,
        Moved::Copied(n) => Event::BlobCopied(n),
    });
    waiters.drain(..).for_each(|n| ctx.complete(&n));
    Ok(())
}

fn transfer_with_retries(
    ctx: &Ctx,
    task: &BlobTask,
    image: Option<&Pair>,
    relay: Option<&Repository>,
) -> Result<Moved, SyncError> {
    let mut backoff = Backoff::new();
    loop {
        match transfer(ctx, task, image, relay) {
            // An operation that used up its own attempts is not tried again in this pass.
            Err(e) if e.is_transient() && !e.is_exhausted() && !crate::stop::requested() => {
                // Destinations waiting for this copy need not wait for its retries.
                for parked in ctx.ledger.release_relay(task) {
                    ctx.queue.push(Task::Blob(Box::new(parked)));
                }
                let Some(wait) = backoff.next(None, &e) else { return Err(e) };
                log::info!("{e}; trying the blob again in {wait:.1?} (attempt {})", backoff.attempt());
                crate::stop::sleep(wait);
            }
            other => return other,
        }
    }
}

/// Make the blob exist at the destination: already there, mounted, or streamed from the source
/// (or from the destination `relay` that has it already).
fn transfer(ctx: &Ctx, task: &BlobTask, image: Option<&Pair>, relay: Option<&Repository>) -> Result<Moved, SyncError> {
    let (src, dst, digest) = (&task.src, &task.dst, &task.blob.digest);
    let dc = ctx.stores.get(dst);
    if dc.blob_exists(dst, digest, Access::Push)? {
        log::debug!("blob {digest} already in {dst}");
        return Ok(Moved::Present);
    }
    // From a repository this run put it in, the source repository on the same registry, or
    // one the source knows holds it there (a delta bundle's base: the site's inventory).
    let mount_from = ctx
        .ledger
        .mount_source(dst, digest)
        .or_else(|| (src.location == dst.location).then(|| src.name.clone()))
        .or_else(|| {
            let held = ctx.stores.get(src).held_at(digest);
            held.into_iter().find(|r| r.location == dst.location && r.name != dst.name).map(|r| r.name)
        })
        .filter(|from| *from != dst.name);
    // A refused mount opens an ordinary session (distribution spec): the upload uses it.
    let mut session = None;
    if let Some(from) = mount_from {
        match dc.mount_blob(dst, digest, &from) {
            Ok(Mount::Mounted) => {
                log::debug!("blob {digest} mounted into {dst}");
                return Ok(Moved::Mounted);
            }
            Ok(Mount::NotMounted(s)) => session = s,
            Err(e) => log::debug!("mount of {digest} from {from} refused ({e}); uploading"),
        }
    }
    let label = match image {
        Some(p) => format!("{} {}", digest.short(), p.dst),
        None => format!("{} {dst}", digest.short()),
    };
    let moving = ctx.progress.moving(label, task.blob.size);
    if let Some(at) = relay {
        match stream(ctx, task, at, &*dc, session.take(), &moving) {
            Ok(length) => {
                log::debug!("blob {digest} copied {at} -> {dst} (read once from {src})");
                return Ok(Moved::Copied(length));
            }
            // The destination's own failure is not the relay's: handled as any other.
            Err(SyncError::Store(e)) if e.at == dc.name() => return Err(SyncError::Store(e)),
            Err(e) => log::info!("blob {digest}: reading it from {at} failed ({e}); reading it from {src}"),
        }
    }
    let length = stream(ctx, task, src, &*dc, session, &moving)?;
    log::debug!("blob {digest} copied {src} -> {dst}");
    Ok(Moved::Copied(length))
}

/// Open the blob at `src` (refusing a length that disagrees with the descriptor before
/// anything is sent), then stream it into the upload `session` (a new one when `None`).
/// Returns the number of bytes sent.
fn stream(
    ctx: &Ctx,
    task: &BlobTask,
    src: &Repository,
    dc: &dyn Store,
    session: Option<Session>,
    moving: &Moving,
) -> Result<u64, SyncError> {
    let (dst, digest) = (&task.dst, &task.blob.digest);
    let sc = ctx.stores.get(src);
    let mut source = match sc.get_blob(src, digest, task.blob.size) {
        Ok(s) => s,
        Err(e) => {
            if let Some(s) = session {
                dc.cancel_upload(dst, s);
            }
            return Err(e.into());
        }
    };
    source.count_into(moving.done.clone());
    dc.put_blob(dst, digest, &mut source, session)?;
    Ok(source.size().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use crate::digest::Digest;
    use crate::engine::testing::{copy_v1, image, job, rule, src_dst, stats, sync, MemStore, Op};
    use crate::reference::Repository;

    #[test]
    fn a_missing_blob_is_copied_and_one_already_there_is_not() {
        let (src, dst) = src_dst();
        let v1 = image("v1").layers(&["base", "app"]).build();
        src.add("a", Some("v1"), &v1);
        dst.add("a", None, &image("other").layers(&["base"]).build());
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(v1.digest.clone()));
        assert_eq!((src.count_on(Op::GetBlob, v1.layer(0)), dst.count_on(Op::PutBlob, v1.layer(0))), (0, 0));
        assert_eq!((report.totals.blobs_copied, report.totals.blobs_present), (2, 1));
    }

    #[test]
    fn an_images_largest_blob_is_copied_first() {
        let (src, dst) = src_dst();
        let (big, mid, small) = ("b".repeat(3000), "m".repeat(700), "s".repeat(5));
        let v1 = image("v1").layers(&[&small, &big, &mid]).build();
        src.add("a", Some("v1"), &v1);
        sync(copy_v1(), &[&src, &dst]);
        let mut by_size: Vec<_> = v1.blobs.iter().map(|b| (b.len(), Digest::of(b).to_string())).collect();
        by_size.sort_by_key(|(size, _)| std::cmp::Reverse(*size));
        let largest_first: Vec<_> = by_size.into_iter().map(|(_, d)| d).collect();
        let copied: Vec<_> = dst.calls(Op::PutBlob).into_iter().map(|c| c.target).collect();
        assert_eq!(copied, largest_first);
    }

    #[test]
    fn a_blob_a_sibling_repository_received_is_mounted_from_it() {
        let (src, dst) = src_dst();
        let (a, b) = (image("a").layers(&["base", "a"]).build(), image("b").layers(&["base", "b"]).build());
        src.add("a", Some("v1"), &a);
        src.add("b", Some("v1"), &b);
        let report = sync(job(vec![rule("src.io/a", "dst.io/a"), rule("src.io/b", "dst.io/b")]), &[&src, &dst]);
        let base = a.layer(0);
        assert!(dst.has_blob("b", &base));
        assert_eq!((dst.count_on(Op::PutBlob, &base), dst.count_on(Op::MountBlob, &base)), (1, 1));
        assert_eq!(report.totals.blobs_mounted, 1);
    }

    #[test]
    fn within_one_registry_blobs_are_mounted_from_the_source_repository() {
        let reg = MemStore::new("reg.io");
        let v1 = image("v1").build();
        reg.add("a", Some("v1"), &v1);
        let report = sync(job(vec![rule("reg.io/a", "reg.io/b")]), &[&reg]);
        assert_eq!(reg.tag("b", "v1"), Some(v1.digest));
        assert_eq!((reg.count(Op::PutBlob), reg.count(Op::GetBlob)), (0, 0));
        assert_eq!(report.totals.blobs_mounted, 2);
    }

    #[test]
    fn a_blob_the_source_left_out_is_mounted_from_where_it_says_the_destination_holds_it() {
        let (src, dst) = src_dst();
        let v1 = image("v1").layers(&["base", "app"]).build();
        let base = v1.layer(0);
        src.add("a", Some("v1"), &v1);
        src.remove("a", &base);
        dst.add("other", None, &image("other").layers(&["base"]).build());
        src.say_held_at(&base, Repository::on_registry("dst.io", "other"));
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(v1.digest.clone()));
        assert_eq!((dst.count_on(Op::MountBlob, &base), src.count_on(Op::GetBlob, &base)), (1, 0));

        // Where the destination does not hold it after all, the image fails and is not pushed.
        let (src, dst) = src_dst();
        src.add("a", Some("v1"), &v1);
        src.remove("a", &base);
        src.say_held_at(&base, Repository::on_registry("dst.io", "other"));
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        assert_eq!(report.failures.len(), 1);
        assert_eq!((dst.count(Op::PutManifest), dst.tag("a", "v1")), (0, None));
    }

    #[test]
    fn a_blob_two_images_share_is_copied_once_and_not_looked_up_again() {
        let (src, dst) = src_dst();
        let v1 = image("v1").layers(&["base", "one"]).build();
        src.add("a", Some("v1"), &v1);
        src.add("a", Some("v2"), &image("v2").layers(&["base", "two"]).build());
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        let base = v1.layer(0);
        assert_eq!((dst.count_on(Op::BlobSize, &base), dst.count_on(Op::PutBlob, &base)), (1, 1));
        assert_eq!(stats(&report, "dst.io/a:v2").blobs_present, 1, "counted as present for the second image");
    }

    #[test]
    fn a_blob_for_two_registries_is_read_once_from_the_source() {
        let (src, one, two) = (MemStore::new("src.io"), MemStore::new("one.io"), MemStore::new("two.io"));
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        let report = sync(job(vec![rule("src.io/a", "one.io/a"), rule("src.io/a", "two.io/a")]), &[&src, &one, &two]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        for d in v1.blob_digests() {
            assert_eq!((src.count_on(Op::GetBlob, &d), one.count_on(Op::GetBlob, &d)), (1, 1), "relayed");
            assert!(two.has_blob("a", &d));
        }
    }

    #[test]
    fn a_damaged_source_blob_fails_its_image_and_nothing_is_pushed() {
        let (src, dst) = src_dst();
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        src.damage("a", &v1.layer(0));
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        let classes: Vec<_> = report.failures.iter().map(|f| f.class()).collect();
        assert_eq!(classes, ["damaged"]);
        assert!(!dst.has_blob("a", &v1.layer(0)));
        assert_eq!((dst.count(Op::PutManifest), dst.tag("a", "v1")), (0, None));
    }
}
