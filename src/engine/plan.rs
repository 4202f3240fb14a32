//! Planning one source manifest tree for a destination: indexes of any depth (down to
//! [`MAX_DEPTH`]), the platform filter applied at every level, and what refers to each
//! manifest (found by [`super::referrers`], planned here like any other manifest).
//!
//! Children are looked up at the destination first (`HEAD` by digest) and only the missing
//! ones are fetched: a manifest is pushed only after everything below it, so one that is there
//! has its whole tree there. With `--os/--arch`, nested indexes are fetched and filtered before
//! their parent (whose entry then points at the filtered child, with its new digest and size);
//! the bytes are kept for the planning that follows, so nothing is fetched twice.

use std::collections::HashMap;

use super::ctx::Ctx;
use super::error::SyncError;
use super::graph::Planned;
use super::referrers;
use crate::digest::Digest;
use crate::manifest::{apply, entries, Descriptor, Filtered, Keep, Kind, Manifest, MediaType, Platform};
use crate::reference::{ImageRef, Reference, Repository};
use crate::store::{Access, Store};

/// Indexes nest at most this deep (the top-level index is level 1); referrers of referrers
/// follow to the same depth.
pub const MAX_DEPTH: usize = 8;

/// Config blobs are small JSON documents; refuse absurd ones.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The platform of a single image, read from its config blob.
pub fn image_platform(store: &dyn Store, src: &ImageRef, config: &Digest) -> Result<Platform, SyncError> {
    let raw = store.get_blob_bytes(&src.repo, config, MAX_CONFIG_BYTES)?;
    Ok(serde_json::from_slice(&raw).unwrap_or_default())
}

/// A manifest fetched (or rewritten by the filter) while filtering, kept for planning.
struct Cached {
    bytes: Vec<u8>,
    content_type: Option<MediaType>,
    /// The filter changed it: it is not the source's manifest, so nothing refers to it.
    rewritten: bool,
}

/// Plans the manifests of one image.
pub struct Planner<'a, 'c> {
    pub ctx: &'a Ctx<'c>,
    pub sc: &'a dyn Store,
    pub dc: &'a dyn Store,
    pub src: &'a Repository,
    pub dst: &'a Repository,
    /// The image being planned, for messages.
    pub image: &'a ImageRef,
    cache: HashMap<Digest, Cached>,
}

impl<'a, 'c> Planner<'a, 'c> {
    pub fn new(
        ctx: &'a Ctx<'c>,
        sc: &'a dyn Store,
        dc: &'a dyn Store,
        image: &'a ImageRef,
        dst: &'a Repository,
    ) -> Self {
        Planner { ctx, sc, dc, src: &image.repo, dst, image, cache: HashMap::new() }
    }

    pub fn at_src(&self, reference: Reference) -> ImageRef {
        ImageRef { repo: self.src.clone(), reference }
    }

    pub fn at_dst(&self, reference: Reference) -> ImageRef {
        ImageRef { repo: self.dst.clone(), reference }
    }

    fn too_deep(&self, digest: &Digest) -> SyncError {
        SyncError::manifest(self.image, format!("indexes nest deeper than {MAX_DEPTH} levels (at {digest})"))
    }

    /// The index `bytes` (at nesting `level`) as the platform filter leaves it: entries whose
    /// platform does not match are dropped, nested indexes are filtered in turn (and dropped
    /// when nothing in them matches).
    pub fn filter(&mut self, bytes: &[u8], level: usize) -> Result<Filtered, SyncError> {
        let list = entries(bytes).map_err(|m| SyncError::manifest(self.image, m))?;
        let mut keep = Vec::with_capacity(list.len());
        for entry in &list {
            keep.push(self.keep(entry, level)?);
        }
        apply(bytes, &keep).map_err(|m| SyncError::manifest(self.image, m))
    }

    fn keep(&mut self, entry: &Descriptor, level: usize) -> Result<Keep, SyncError> {
        if !entry.media_type.is_index() {
            let matches = entry.platform.as_ref().is_some_and(|p| self.ctx.opts.filter.matches(p));
            return Ok(if matches { Keep::Yes } else { Keep::No });
        }
        if level >= MAX_DEPTH {
            return Err(self.too_deep(&entry.digest));
        }
        let f = self.ctx.manifests.get(self.sc, self.src, &Reference::Digest(entry.digest.clone()))?;
        let keep = match self.filter(&f.bytes, level + 1)? {
            Filtered::Unchanged => Keep::Yes,
            Filtered::Empty => Keep::No,
            Filtered::Rewritten(b) => {
                let (digest, size) = (Digest::of(&b), b.len() as u64);
                self.cache.insert(digest.clone(), Cached { bytes: b, content_type: None, rewritten: true });
                return Ok(Keep::As { digest, size });
            }
        };
        self.cache.insert(f.digest, Cached { bytes: f.bytes, content_type: f.media_type, rewritten: false });
        Ok(keep)
    }

    /// The children of an index at nesting `level` that the destination lacks, planned, and
    /// what refers to the ones it has and is missing there.
    pub fn children(&mut self, manifests: &[Descriptor], level: usize) -> Result<Vec<Planned>, SyncError> {
        let mut out = Vec::new();
        for child in manifests {
            out.extend(self.child(child, level)?);
        }
        Ok(out)
    }

    /// One child of an index at nesting `level`, planned; when the destination has it, only
    /// what refers to it (or to anything below it) and is missing there.
    pub fn child(&mut self, child: &Descriptor, level: usize) -> Result<Vec<Planned>, SyncError> {
        if !self.ctx.opts.force && self.present(&child.digest)? {
            log::debug!("{}: child {} already present", self.dst, child.digest);
            return self.below_present(child, level);
        }
        self.manifest(&child.digest, level + 1).map(|p| vec![p])
    }

    /// What refers to the entries of an index at nesting `level` that the destination has (and
    /// to what is below them) and is missing there. Referrers come and go after their subject
    /// (`cosign sign --recursive` signs each platform's manifest): an index that arrived whole
    /// once is still compared below its top on each run.
    pub fn referrers_below(&mut self, manifests: &[Descriptor], level: usize) -> Result<Vec<Planned>, SyncError> {
        let mut out = Vec::new();
        for entry in manifests {
            out.extend(self.below_present(entry, level)?);
        }
        Ok(out)
    }

    /// [`Planner::referrers_below`] for one entry. A nested index is read from the destination
    /// (by digest: the same bytes, and a source's pull budget counts manifest GETs) to find its
    /// own entries; one the filter rewrote is not the source's, so nothing refers to it.
    fn below_present(&mut self, entry: &Descriptor, level: usize) -> Result<Vec<Planned>, SyncError> {
        if !self.ctx.opts.referrers.enabled {
            return Ok(Vec::new());
        }
        let rewritten = self.cache.get(&entry.digest).map(|c| c.rewritten);
        let mut out = if rewritten == Some(true) { Vec::new() } else { self.referrers(&entry.digest, level + 2)? };
        if entry.media_type.is_index() {
            if level >= MAX_DEPTH {
                return Err(self.too_deep(&entry.digest));
            }
            let bytes = match self.cache.get(&entry.digest) {
                Some(c) => c.bytes.clone(),
                None => self.dc.get_manifest(self.dst, &Reference::Digest(entry.digest.clone()), Access::Push)?.bytes,
            };
            let list = entries(&bytes)
                .map_err(|m| SyncError::manifest(&self.at_dst(Reference::Digest(entry.digest.clone())), m))?;
            out.extend(self.referrers_below(&list, level + 1)?);
        }
        Ok(out)
    }

    /// Whether the destination has the manifest `digest`.
    pub fn present(&self, digest: &Digest) -> Result<bool, SyncError> {
        Ok(self.dc.head_manifest(self.dst, &Reference::Digest(digest.clone()), Access::Push)?.is_some())
    }

    /// The manifest `bytes` from `at`, to push under `reference` at the destination (nesting
    /// `level`): its blobs, or its children that the destination lacks.
    pub fn plan(
        &mut self,
        at: ImageRef,
        reference: Reference,
        bytes: Vec<u8>,
        content_type: Option<&MediaType>,
        level: usize,
    ) -> Result<Planned, SyncError> {
        let m = Manifest::parse(&bytes, content_type).map_err(|e| SyncError::manifest(&at, e))?;
        if matches!(m.kind, Kind::Index { .. }) && level > MAX_DEPTH {
            return Err(self.too_deep(&Digest::of(&bytes)));
        }
        let mut planned = Planned::push(at, self.at_dst(reference), bytes, m.media_type.clone());
        match &m.kind {
            Kind::Image { .. } => planned.blobs = m.blobs(),
            Kind::Index { manifests } => planned.children = self.children(manifests, level)?,
        }
        Ok(planned)
    }

    /// One manifest by digest (missing at the destination), at nesting `level`: its blobs, its
    /// children, and what refers to it.
    pub fn manifest(&mut self, digest: &Digest, level: usize) -> Result<Planned, SyncError> {
        let reference = Reference::Digest(digest.clone());
        let at = self.at_src(reference.clone());
        let cached = match self.cache.remove(digest) {
            Some(c) => c,
            None => {
                let f = self.ctx.manifests.get(self.sc, self.src, &reference)?;
                Cached { bytes: f.bytes, content_type: f.media_type, rewritten: false }
            }
        };
        let mut planned = self.plan(at, reference, cached.bytes, cached.content_type.as_ref(), level)?;
        if !cached.rewritten {
            planned.children.extend(self.referrers(digest, level + 1)?);
        }
        Ok(planned)
    }

    /// What refers to `subject` (at `level`) and is missing at the destination, planned to be
    /// pushed before the subject: the referrers with their blobs and their own referrers, the
    /// fallback tag index that lists them, and cosign's tags.
    pub fn referrers(&mut self, subject: &Digest, level: usize) -> Result<Vec<Planned>, SyncError> {
        if !self.ctx.opts.referrers.enabled {
            return Ok(Vec::new());
        }
        if level > MAX_DEPTH {
            log::warn!("{}: referrers nest deeper than {MAX_DEPTH} levels below {subject}; not followed", self.image);
            return Ok(Vec::new());
        }
        let mut found = referrers::discover(self.ctx, self.sc, self.src, subject)?;
        let mut out = Vec::new();
        let mut copied = Vec::new();
        let mut dangling = Vec::new();
        for r in &found {
            if !self.ctx.opts.force && self.present(&r.digest)? {
                out.extend(self.referrers(&r.digest, level + 1)?);
                continue;
            }
            match self.manifest(&r.digest, level) {
                Ok(planned) => copied.push(planned),
                // Listed, but gone from the source (a deleted signature): not the image's fault.
                Err(SyncError::Store(e)) if e.is_not_found() => {
                    log::warn!("{}: referrer {} is listed but missing at the source; skipped", self.image, r.digest);
                    dangling.push(r.digest.clone());
                }
                Err(e) => return Err(e),
            }
        }
        found.retain(|r| !dangling.contains(&r.digest));
        match referrers::fallback_index(self.ctx, self.dc, self.src, self.dst, subject, &found)? {
            Some(mut index) => {
                index.children = copied;
                out.push(index);
            }
            None => out.extend(copied),
        }
        for (reference, f) in referrers::cosign(self.ctx, self.sc, self.dc, self.src, self.dst, subject)? {
            out.push(self.plan(self.at_src(reference.clone()), reference, f.bytes, f.media_type.as_ref(), 1)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_DEPTH;
    use crate::engine::testing::{
        add_signed_by_tag, arm64, copy, copy_v1, image, index, job, multi_arch, rule, src_dst, sync, MemStore, Op, SIG,
    };

    #[test]
    fn children_the_destination_has_are_not_fetched() {
        let (src, dst) = src_dst();
        let idx = multi_arch();
        let (amd, arm) = (&idx.children[0], &idx.children[1]);
        src.add("a", Some("v1"), &idx);
        dst.add("a", None, amd);
        sync(copy_v1(), &[&src, &dst]);
        assert_eq!(dst.tag("a", "v1"), Some(idx.digest));
        assert_eq!((src.count_on(Op::GetManifest, &amd.digest), src.count_on(Op::GetManifest, &arm.digest)), (0, 1));
    }

    #[test]
    fn a_nested_index_is_filtered_at_every_level() {
        let nested = multi_arch();
        let (amd, arm) = (&nested.children[0], &nested.children[1]);
        let arm2 = image("arm2").arch("arm64").build();
        let mut job = copy_v1();
        job.opts.filter = arm64();
        let (report, _, dst) = copy(&index(&[&nested, &arm2]), job);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let top = dst.listed("a", &dst.tag("a", "v1").unwrap());
        assert_eq!((top.len(), &top[1]), (2, &arm2.digest));
        assert_ne!(top[0], nested.digest, "the nested index is rewritten, and its parent points at the new one");
        assert_eq!(dst.listed("a", &top[0]), std::slice::from_ref(&arm.digest));
        assert!(amd.blob_digests().iter().all(|d| !dst.has_blob("a", d)));
    }

    #[test]
    fn indexes_nest_at_most_max_depth_levels() {
        let (src, dst) = src_dst();
        let mut nested = image("leaf").build();
        for _ in 0..MAX_DEPTH {
            nested = index(&[&nested]);
        }
        src.add("ok", Some("v1"), &nested);
        src.add("deep", Some("v1"), &index(&[&nested]));
        let rules = vec![rule("src.io/ok", "dst.io/ok"), rule("src.io/deep", "dst.io/deep")];
        let report = sync(job(rules), &[&src, &dst]);
        let failed: Vec<_> = report.failures.iter().map(|f| (f.endpoints().0, f.class())).collect();
        assert_eq!(failed, [("src.io/deep:v1".to_string(), "manifest")]);
        assert_eq!((dst.tags("ok"), dst.tags("deep")), (vec!["v1".to_string()], vec![]));
    }

    #[test]
    fn a_referrer_listed_but_gone_from_the_source_is_skipped() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::new("dst.io"));
        let (v1, sig) = add_signed_by_tag(&src);
        src.remove("a", &sig.digest);
        let report = sync(copy_v1(), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(v1.digest));
        assert_eq!(src.count_on(Op::GetManifest, &sig.digest), 1);
    }

    #[test]
    fn referrers_of_referrers_follow_too() {
        let (src, dst) = src_dst();
        let v1 = image("v1").build();
        let sbom = image("sbom").refers_to(&v1, "application/spdx+json").build();
        let sig = image("sig").refers_to(&sbom, SIG).build();
        for m in [&v1, &sbom, &sig] {
            src.add("a", (m.digest == v1.digest).then_some("v1"), m);
        }
        let report = sync(copy_v1(), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert!(dst.manifest("a", &sig.digest).is_some(), "the signature of the SBOM arrived");
    }
}
