//! Referrers follow their subject: signatures, SBOMs and attestations that point at a copied
//! manifest are copied too (unless `--no-referrers`), and listed at the destination so that
//! `cosign verify` or an admission policy finds them there.
//!
//! **Finding them at the source.** The OCI 1.1 referrers API first; a registry without it
//! (it answers 404) is remembered for the rest of the run and read through the referrers tag
//! schema (`sha256-<hex>`) instead. Cosign's legacy `.sig` / `.att` / `.sbom` tags are copied as
//! tags. Whether such a tag exists is decided from the repository's tag list, read once per run
//! (rules listing all tags have it already), so an image with no referrers costs no request.
//!
//! **Listing them at the destination.** A registry with the referrers API lists what was
//! pushed by itself. One without gets the fallback tag index created, or merged with what it
//! lists already — entries we did not write are kept — and pushed after the referrers it
//! lists and before the subject's own tag.

use super::context::SyncError;
use super::graph::Planned;
use super::image::bad;
use super::tree::{Planner, MAX_DEPTH};
use crate::digest::Digest;
use crate::manifest::{cosign_tags, fallback_tag, merge_fallback, MediaType, Referrer};
use crate::reference::Reference;
use crate::store::{Access, ReferrersAnswer};

impl Planner<'_, '_> {
    /// What refers to `subject` (at `level`) and is missing at the destination, planned to be
    /// pushed before the subject: the referrers with their blobs and their own referrers, the
    /// fallback tag index that lists them, and cosign's tags.
    pub fn referrers(&mut self, subject: &Digest, level: usize) -> Result<Vec<Planned>, SyncError> {
        if !self.ctx.referrers.enabled {
            return Ok(Vec::new());
        }
        if level > MAX_DEPTH {
            log::warn!("{}: referrers nest deeper than {MAX_DEPTH} levels below {subject}; not followed", self.image);
            return Ok(Vec::new());
        }
        let mut found = self.discover(subject)?;
        let mut out = Vec::new();
        let mut copied = Vec::new();
        let mut dangling = Vec::new();
        for r in &found {
            if !self.ctx.force && self.present(&r.digest)? {
                out.extend(self.referrers(&r.digest, level + 1)?);
                continue;
            }
            match self.manifest(&r.digest, level) {
                Ok(planned) => copied.push(planned),
                // Listed, but gone from the source (a deleted signature): not the image's fault.
                Err(SyncError::Registry(e)) if e.is_not_found() => {
                    log::warn!("{}: referrer {} is listed but missing at the source; skipped", self.image, r.digest);
                    dangling.push(r.digest.clone());
                }
                Err(e) => return Err(e),
            }
        }
        found.retain(|r| !dangling.contains(&r.digest));
        match self.fallback_index(subject, &found)? {
            Some(mut index) => {
                index.children = copied;
                out.push(index);
            }
            None => out.extend(copied),
        }
        out.extend(self.cosign(subject)?);
        Ok(out)
    }

    /// The referrers of `subject` the source lists, of the types asked for.
    fn discover(&mut self, subject: &Digest) -> Result<Vec<Referrer>, SyncError> {
        let ctx = self.ctx;
        let at = self.at_src(Reference::Digest(subject.clone()));
        let mut listed = None;
        {
            // Until the registry's answer is known, one worker asks at a time (the guard ends
            // with this block: what follows takes the same lock to list tags).
            let _one = ctx.has_referrers_api(self.sc.name()).is_none().then(|| ctx.first_ask.lock());
            if ctx.has_referrers_api(self.sc.name()) != Some(false) {
                let types = &ctx.referrers.types;
                let one = (types.len() == 1).then(|| &types[0]);
                match self.sc.referrers(self.src, subject, one, Access::Pull)? {
                    ReferrersAnswer::Listed(index) => {
                        ctx.set_referrers_api(self.sc.name(), true);
                        listed = Some(index);
                    }
                    ReferrersAnswer::NoApi => ctx.set_referrers_api(self.sc.name(), false),
                    ReferrersAnswer::Unknown => {}
                }
            }
        }
        if listed.is_none() {
            let tag = Reference::Tag(fallback_tag(subject));
            if self.source_has(&tag)? {
                listed = match self.ctx.manifests.get(self.sc, self.src, &tag) {
                    Ok(f) => Some(f.bytes),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
            }
        }
        let Some(index) = listed else { return Ok(Vec::new()) };
        let mut found = match Referrer::list(&index) {
            Ok(f) => f,
            // Someone else's `sha256-…` tag, or a broken listing: the image itself still syncs.
            Err(m) => {
                log::warn!("{at}: referrers not copied: {m}");
                return Ok(Vec::new());
            }
        };
        let types = &ctx.referrers.types;
        found.retain(|r| {
            r.digest != *subject && (types.is_empty() || r.artifact_type.as_ref().is_some_and(|t| types.contains(t)))
        });
        Ok(found)
    }

    /// The destination's fallback tag index for `subject`, when it lacks the referrers API and
    /// does not list every one of `found` yet.
    fn fallback_index(&mut self, subject: &Digest, found: &[Referrer]) -> Result<Option<Planned>, SyncError> {
        if found.is_empty() {
            return Ok(None);
        }
        let ctx = self.ctx;
        let registry = self.dc.name();
        let api = match ctx.has_referrers_api(registry) {
            Some(known) => known,
            None => match self.dc.referrers(self.dst, subject, None, Access::Push)? {
                ReferrersAnswer::Listed(_) => {
                    ctx.set_referrers_api(registry, true);
                    true
                }
                ReferrersAnswer::NoApi => {
                    ctx.set_referrers_api(registry, false);
                    false
                }
                // A repository new there: write the fallback tag this time (harmless where the
                // API exists), and ask again for the next subject.
                ReferrersAnswer::Unknown => false,
            },
        };
        if api {
            return Ok(None);
        }
        let tag = Reference::Tag(fallback_tag(subject));
        let existing = match self.dc.get_manifest(self.dst, &tag, Access::Push) {
            Ok(f) => Some(f.bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let dst = self.at_dst(tag.clone());
        let merged = merge_fallback(existing.as_deref(), found).map_err(|m| bad(&dst, m))?;
        Ok(merged.map(|bytes| Planned::push(self.at_src(tag), dst, bytes, MediaType::OCI_INDEX)))
    }

    /// Cosign's tags for `subject` that the destination lacks or has another digest under.
    fn cosign(&mut self, subject: &Digest) -> Result<Vec<Planned>, SyncError> {
        let mut out = Vec::new();
        for tag in cosign_tags(subject) {
            let reference = Reference::Tag(tag);
            if !self.source_has(&reference)? {
                continue;
            }
            let Some(want) = self.sc.manifest_digest(self.src, &reference, Access::Pull)? else { continue };
            if !self.ctx.force && self.dc.manifest_digest(self.dst, &reference, Access::Push)? == Some(want) {
                continue;
            }
            let at = self.at_src(reference.clone());
            let f = self.ctx.manifests.get(self.sc, self.src, &reference)?;
            out.push(self.plan(at, reference, f.bytes, f.media_type.as_ref(), 1)?);
        }
        Ok(out)
    }

    /// Whether the source repository has the referrer tag `reference` (a fallback or cosign tag:
    /// only those are kept from its tag list): from its tag list when it can be read, else by
    /// asking.
    fn source_has(&self, reference: &Reference) -> Result<bool, SyncError> {
        match self.ctx.tags_of(self.sc, self.src) {
            Some(tags) => Ok(tags.contains(reference.as_str())),
            None => Ok(self.sc.head_manifest(self.src, reference, Access::Pull)?.is_some()),
        }
    }
}
