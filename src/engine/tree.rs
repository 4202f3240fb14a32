//! Planning one source manifest tree for a destination: indexes of any depth (down to
//! [`MAX_DEPTH`]), the platform filter applied at every level, and what refers to each
//! manifest ([`super::referrers`]).
//!
//! Children are looked up at the destination first (`HEAD` by digest) and only the missing
//! ones are fetched: a manifest is pushed only after everything below it, so one that is there
//! has its whole tree there. With `--os/--arch`, nested indexes are fetched and filtered before
//! their parent (whose entry then points at the filtered child, with its new digest and size);
//! the bytes are kept for the planning that follows, so nothing is fetched twice.

use std::collections::HashMap;

use super::context::{Ctx, SyncError};
use super::graph::Planned;
use super::image::bad;
use crate::digest::Digest;
use crate::manifest::{apply, entries, Descriptor, Filtered, Keep, Kind, Manifest, MediaType};
use crate::reference::{ImageRef, Reference, Repository};
use crate::store::{Access, Store};

/// Indexes nest at most this deep (the top-level index is level 1); referrers of referrers
/// follow to the same depth.
pub const MAX_DEPTH: usize = 8;

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
        bad(self.image, format!("indexes nest deeper than {MAX_DEPTH} levels (at {digest})"))
    }

    /// The index `bytes` (at nesting `level`) as the platform filter leaves it: entries whose
    /// platform does not match are dropped, nested indexes are filtered in turn (and dropped
    /// when nothing in them matches).
    pub fn filter(&mut self, bytes: &[u8], level: usize) -> Result<Filtered, SyncError> {
        let list = entries(bytes).map_err(|m| bad(self.image, m))?;
        let mut keep = Vec::with_capacity(list.len());
        for entry in &list {
            keep.push(self.keep(entry, level)?);
        }
        apply(bytes, &keep).map_err(|m| bad(self.image, m))
    }

    fn keep(&mut self, entry: &Descriptor, level: usize) -> Result<Keep, SyncError> {
        if !entry.media_type.is_index() {
            let matches = entry.platform.as_ref().is_some_and(|p| self.ctx.filter.matches(p));
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

    /// The children of an index at nesting `level` that the destination lacks, planned.
    pub fn children(&mut self, manifests: &[Descriptor], level: usize) -> Result<Vec<Planned>, SyncError> {
        let mut out = Vec::new();
        for child in manifests {
            out.extend(self.child(child, level)?);
        }
        Ok(out)
    }

    /// One child of an index at nesting `level`, planned; `None` when the destination has it.
    pub fn child(&mut self, child: &Descriptor, level: usize) -> Result<Option<Planned>, SyncError> {
        if !self.ctx.force && self.present(&child.digest)? {
            log::debug!("{}: child {} already present", self.dst, child.digest);
            return Ok(None);
        }
        self.manifest(&child.digest, level + 1).map(Some)
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
        let m = Manifest::parse(&bytes, content_type).map_err(|e| bad(&at, e))?;
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
}
