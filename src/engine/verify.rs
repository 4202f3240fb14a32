//! Audit mode (`--verify`): change nothing, and find where a destination differs from its
//! source. For each image: the destination tag must have the source's digest (after the
//! platform filter, which rewrites an index deterministically, so the same digest means the
//! same children), and every manifest and blob that digest references must be at the
//! destination with the size its descriptor gives — or, with `--verify-blobs`, read back and
//! hashed. Every request is a read with pull access, so read-only credentials are enough.
//!
//! What differs is a [`SyncError::Drift`] naming each problem; it is permanent (not retried),
//! so it ends up in the failure list, the `--output-failed-images` file and the exit code, and a
//! sync of that file repairs exactly the images that drifted.

use std::sync::Arc;

use super::ctx::Ctx;
use super::error::SyncError;
use super::events::Event;
use super::outcome::Outcome;
use super::plan::{image_platform, Planner, MAX_DEPTH};
use crate::digest::Digest;
use crate::manifest::{Filtered, Kind, Manifest};
use crate::reference::{Reference, Repository};
use crate::rule::Pair;
use crate::store::{Access, ErrorKind, Store};

pub fn check(ctx: &Ctx, pair: &Arc<Pair>) -> Result<(), SyncError> {
    ctx.record.started(pair);
    let (src, dst) = (&pair.src, &pair.dst);
    let sc = ctx.stores.get(&src.repo);
    let dc = ctx.stores.get(&dst.repo);
    let mut planner = Planner::new(ctx, &*sc, &*dc, src, &dst.repo);
    let Some(want) = source_digest(ctx, &mut planner, pair)? else { return Ok(()) };
    let reference = if dst.is_digest() { Reference::Digest(want.clone()) } else { dst.reference.clone() };
    let mut problems = Vec::new();
    match dc.manifest_digest(&dst.repo, &reference, Access::Pull)? {
        None => problems.push("missing at the destination".to_string()),
        Some(have) => {
            if have != want {
                problems.push(format!("the destination has {have}, the source {want}"));
            } else {
                let mut walk = Walk { ctx, dc: &*dc, repo: &dst.repo, problems: &mut problems, blobs: 0 };
                walk.manifest(&want, 0)?;
                let blobs = walk.blobs;
                ctx.record.tally(pair, |s| s.blobs_present += blobs);
            }
        }
    }
    if !problems.is_empty() {
        log::warn!("drift {pair}: {}", problems.join("; "));
        ctx.event(Event::ImageDrifted);
        return Err(SyncError::Drift { image: dst.to_string(), problems });
    }
    log::info!("verified {pair}: {want}");
    ctx.event(Event::ImageVerified);
    ctx.record.ended(pair, Outcome::Verified(want));
    Ok(())
}

/// The digest the destination should have; `None` when the filter leaves nothing to have.
fn source_digest(ctx: &Ctx, planner: &mut Planner, pair: &Arc<Pair>) -> Result<Option<Digest>, SyncError> {
    let (src, sc) = (&pair.src, planner.sc);
    if ctx.opts.filter.is_empty() {
        if let Some(d) = sc.manifest_digest(&src.repo, &src.reference, Access::Pull)? {
            return Ok(Some(d));
        }
    }
    let fetched = sc.get_manifest(&src.repo, &src.reference, Access::Pull)?;
    if ctx.opts.filter.is_empty() {
        return Ok(Some(fetched.digest));
    }
    let parsed =
        Manifest::parse(&fetched.bytes, fetched.media_type.as_ref()).map_err(|m| SyncError::manifest(src, m))?;
    match parsed.kind {
        Kind::Index { .. } => match planner.filter(&fetched.bytes, 1)? {
            Filtered::Unchanged => Ok(Some(fetched.digest)),
            Filtered::Rewritten(b) => Ok(Some(Digest::of(&b))),
            Filtered::Empty => {
                ctx.skipped(pair, "no platform in it matches --os/--arch".into());
                Ok(None)
            }
        },
        Kind::Image { config, .. } => {
            let platform = image_platform(sc, src, &config.digest)?;
            if ctx.opts.filter.matches(&platform) {
                Ok(Some(fetched.digest))
            } else {
                ctx.skipped(pair, format!("its platform {platform} does not match --os/--arch"));
                Ok(None)
            }
        }
    }
}

/// A walk down what one destination manifest references, noting what is missing or wrong.
struct Walk<'a, 'c> {
    ctx: &'a Ctx<'c>,
    dc: &'a dyn Store,
    repo: &'a Repository,
    problems: &'a mut Vec<String>,
    /// Blobs found in order.
    blobs: u64,
}

impl Walk<'_, '_> {
    fn manifest(&mut self, digest: &Digest, depth: usize) -> Result<(), SyncError> {
        if depth > MAX_DEPTH {
            self.problems.push(format!("indexes nest deeper than {MAX_DEPTH} below {digest}"));
            return Ok(());
        }
        let fetched = match self.dc.get_manifest(self.repo, &Reference::Digest(digest.clone()), Access::Pull) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => {
                self.problems.push(format!("manifest {digest} is missing"));
                return Ok(());
            }
            Err(e) if matches!(e.kind, ErrorKind::DigestMismatch { .. }) => {
                self.problems.push(format!("manifest {digest} is damaged ({e})"));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let parsed = match Manifest::parse(&fetched.bytes, fetched.media_type.as_ref()) {
            Ok(m) => m,
            Err(m) => {
                self.problems.push(format!("manifest {digest} does not parse: {m}"));
                return Ok(());
            }
        };
        if let Kind::Index { manifests } = &parsed.kind {
            for child in manifests {
                self.manifest(&child.digest, depth + 1)?;
            }
            return Ok(());
        }
        for blob in parsed.blobs() {
            self.blob(&blob.digest, blob.size)?;
        }
        Ok(())
    }

    fn blob(&mut self, digest: &Digest, size: Option<u64>) -> Result<(), SyncError> {
        self.ctx.event(Event::BlobChecked);
        let Some(announced) = self.dc.blob_size(self.repo, digest, Access::Pull)? else {
            self.problems.push(format!("blob {digest} is missing"));
            return Ok(());
        };
        if let (Some(want), Some(have)) = (size, announced) {
            if want != have {
                self.problems.push(format!("blob {digest} has {have} bytes, its descriptor says {want}"));
                return Ok(());
            }
        }
        if self.ctx.opts.verify_blobs() {
            match self.dc.read_blob(self.repo, digest, size) {
                Ok(_) => {}
                Err(e) if e.is_damaged_body() => {
                    self.problems.push(format!("blob {digest} is damaged ({})", e.kind));
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.blobs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{arm64, copy_v1, image, multi_arch, src_dst, sync, Image, MemStore};
    use crate::engine::{Job, Mode, Outcome, Report};

    /// A verify run of `src.io/a:v1` against `dst.io/a`.
    fn verify(blobs: bool) -> Job {
        let mut job = copy_v1();
        job.opts.mode = Mode::Verify { blobs };
        job
    }

    /// `v1` at the source, and at the destination as `change` leaves it.
    fn audit(v1: &Image, blobs: bool, change: impl FnOnce(&MemStore)) -> Report {
        let (src, dst) = src_dst();
        src.add("a", Some("v1"), v1);
        dst.add("a", Some("v1"), v1);
        change(&dst);
        let report = sync(verify(blobs), &[&src, &dst]);
        assert!(src.writes().is_empty() && dst.writes().is_empty(), "an audit writes nothing");
        report
    }

    /// The problems found, one failure's message each.
    fn drift(report: &Report) -> Vec<String> {
        report.failures.iter().inspect(|f| assert_eq!(f.class(), "drift")).map(|f| f.cause().to_string()).collect()
    }

    #[test]
    fn a_whole_image_verifies() {
        let v1 = image("v1").build();
        let report = audit(&v1, true, |_| {});
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.outcomes[0].1, Outcome::Verified(v1.digest));
    }

    #[test]
    fn a_missing_blob_is_drift() {
        let v1 = image("v1").build();
        let report = audit(&v1, false, |dst| dst.remove("a", &v1.layer(0)));
        let found = drift(&report);
        assert!(found.len() == 1 && found[0].contains(&format!("blob {} is missing", v1.layer(0))), "{found:?}");
    }

    #[test]
    fn a_missing_child_manifest_is_drift() {
        let idx = multi_arch();
        let arm = &idx.children[1];
        let report = audit(&idx, false, |dst| dst.remove("a", &arm.digest));
        let found = drift(&report);
        assert!(found.len() == 1 && found[0].contains(&format!("manifest {} is missing", arm.digest)), "{found:?}");
    }

    #[test]
    fn a_damaged_blob_is_found_only_by_reading_it_back() {
        let v1 = image("v1").build();
        let damaged = |dst: &MemStore| dst.damage("a", &v1.layer(0));
        assert!(audit(&v1, false, damaged).failures.is_empty(), "its size is right");
        let found = drift(&audit(&v1, true, damaged));
        assert!(found.len() == 1 && found[0].contains("is damaged"), "{found:?}");
    }

    #[test]
    fn an_index_the_filter_rewrote_verifies_against_the_rewritten_digest() {
        let (src, dst) = src_dst();
        src.add("a", Some("v1"), &multi_arch());
        let arm64 = arm64();
        let mut copy = copy_v1();
        copy.opts.filter = arm64.clone();
        assert!(sync(copy, &[&src, &dst]).failures.is_empty());
        let mut check = verify(false);
        check.opts.filter = arm64;
        let report = sync(check, &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(matches!(report.outcomes[0].1, Outcome::Verified(_)));
    }
}
