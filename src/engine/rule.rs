//! A rule of the images file, and what running it does: resolve the source's tags and queue
//! one image task per source → destination pair.

use std::sync::Arc;

use super::context::{Ctx, SyncError};
use super::graph::{Pair, Rule, Task};
use super::progress::Event;
use crate::manifest::is_referrer_tag;
use crate::reference::{ImageRef, Reference, Selector};

/// Resolve a rule's source tags and pair them with destination references.
pub fn expand(ctx: &Ctx, rule: &Rule) -> Result<(), SyncError> {
    let src_client = ctx.regs.client(&rule.src.repo);
    let refs: Vec<Reference> = match &rule.src.selector {
        Selector::Tags(t) => t.iter().cloned().map(Reference::Tag).collect(),
        Selector::Digest(d) | Selector::Pinned { digest: d, .. } => vec![Reference::Digest(d.clone())],
        Selector::All | Selector::Regex(_) => {
            let tags = src_client.list_tags(&rule.src.repo.name)?;
            ctx.remember_tags(&rule.src.repo, &tags);
            tags.into_iter()
                .filter(|t| match &rule.src.selector {
                    Selector::Regex(re) => re.is_match(t),
                    _ => true,
                })
                // A referrer tag follows its subject, not the rule.
                .filter(|t| !(ctx.referrers.enabled && is_referrer_tag(t)))
                .map(Reference::Tag)
                .collect()
        }
    };
    if refs.is_empty() {
        log::warn!("{}: no tags to synchronise", rule.describe());
    }
    ctx.event(Event::ImagesFound(refs.len() as u64));
    for (i, reference) in refs.into_iter().enumerate() {
        let dst_reference = match &rule.dst.selector {
            Selector::Tags(t) => Reference::Tag(t[i].clone()),
            Selector::Digest(d) => Reference::Digest(d.clone()),
            Selector::All | Selector::Regex(_) => match &rule.src.selector {
                // `repo:tag@sha256:…` lands under its tag.
                Selector::Pinned { tag, .. } => Reference::Tag(tag.clone()),
                _ => reference.clone(),
            },
            // Refused when the images file is read; its tag is the only sensible reading.
            Selector::Pinned { tag, .. } => Reference::Tag(tag.clone()),
        };
        let src = ImageRef { repo: rule.src.repo.clone(), reference };
        let dst = ImageRef { repo: rule.dst.repo.clone(), reference: dst_reference };
        ctx.queue.push(Task::Image(Arc::new(Pair { src, dst })));
    }
    Ok(())
}
