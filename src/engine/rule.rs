//! A rule of the images file, and what running it does: resolve the source's tags (or, for a
//! namespace, its repositories), select among them, and queue one image task per source →
//! destination pair.

use std::sync::Arc;

use super::context::{Ctx, SyncError};
use super::graph::{Pair, Rule, Task};
use super::progress::Event;
use super::select::rfc3339;
use crate::manifest::{is_referrer_tag, Kind, Manifest};
use crate::reference::{parse_repository, ImageRef, Reference, Repository};
use crate::rule::{RuleRef, Selector};
use crate::store::{Access, Store};

/// Resolve a rule's source tags and pair them with destination references.
pub fn expand(ctx: &Ctx, rule: &Arc<Rule>) -> Result<(), SyncError> {
    ctx.expansion_started(rule);
    if rule.namespace.is_some() {
        return namespace(ctx, rule);
    }
    let src_client = ctx.stores.get(&rule.src.repo);
    let refs: Vec<Reference> = match &rule.src.selector {
        Selector::Tags(t) => t.iter().cloned().map(Reference::Tag).collect(),
        Selector::Digest(d) | Selector::Pinned { digest: d, .. } => vec![Reference::Digest(d.clone())],
        Selector::All | Selector::Regex(_) => {
            let listed = src_client.list_tags(&rule.src.repo)?;
            ctx.remember_tags(&rule.src.repo, &listed);
            let tags: Vec<String> = listed
                .into_iter()
                .filter(|t| match &rule.src.selector {
                    Selector::Regex(re) => re.is_match(t),
                    _ => true,
                })
                // A referrer tag follows its subject, not the rule.
                .filter(|t| !(ctx.referrers.enabled && is_referrer_tag(t)))
                .collect();
            select(&*src_client, rule, tags)?.into_iter().map(Reference::Tag).collect()
        }
    };
    if refs.is_empty() {
        log::warn!("{}: no tags to synchronise", rule.describe());
    }
    ctx.event(Event::ImagesFound(refs.len() as u64));
    let mut pairs = Vec::with_capacity(refs.len());
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
        pairs.push(Arc::new(Pair { src, dst }));
    }
    ctx.expanded(rule, &pairs);
    for pair in pairs {
        ctx.queue.push(Task::Image(pair));
    }
    Ok(())
}

/// The rule's selection keys applied to the listed `tags`, logged in one line.
fn select(client: &dyn Store, rule: &Rule, tags: Vec<String>) -> Result<Vec<String>, SyncError> {
    if rule.select.is_empty() {
        return Ok(tags);
    }
    let total = tags.len();
    let repo = &rule.src.repo;
    // One tag that cannot be read (gone since the listing, schema 1, no config) is "created
    // unknown" and ranks last; only a failure that may clear up fails the rule (to be retried).
    let (kept, how) = rule.select.apply(tags, |tag| match created(client, repo, tag) {
        Err(e) if !e.is_transient() => {
            log::warn!("{}: {repo}:{tag}: creation time unknown ({e})", rule.describe());
            Ok(None)
        }
        other => other,
    })?;
    log::info!("{}: {} of {total} tags selected ({how})", rule.describe(), kept.len());
    Ok(kept)
}

/// When the image under `tag` was created (its config's `created`; for an index, its first
/// child's), for `latest_by: created`.
fn created(client: &dyn Store, repo: &Repository, tag: &str) -> Result<Option<i64>, SyncError> {
    let mut reference = Reference::Tag(tag.to_string());
    for _ in 0..super::tree::MAX_DEPTH {
        let f = client.get_manifest(repo, &reference, Access::Pull)?;
        let at = ImageRef { repo: repo.clone(), reference: reference.clone() };
        match Manifest::parse(&f.bytes, f.media_type.as_ref()).map_err(|m| super::image::bad(&at, m))?.kind {
            Kind::Index { manifests } => match manifests.first() {
                Some(first) => reference = Reference::Digest(first.digest.clone()),
                None => return Ok(None),
            },
            Kind::Image { config, .. } => {
                let raw = client.get_blob_bytes(repo, &config.digest, super::image::MAX_CONFIG_BYTES)?;
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
                return Ok(v.get("created").and_then(|c| c.as_str()).and_then(rfc3339));
            }
        }
    }
    Ok(None)
}

/// A namespace rule: one rule per repository of the source catalog below the namespace.
fn namespace(ctx: &Ctx, rule: &Arc<Rule>) -> Result<(), SyncError> {
    let ns = rule.namespace.as_ref().expect("checked by the caller");
    let client = ctx.stores.get(&rule.src.repo);
    let all = client.list_catalog().map_err(|e| SyncError::Catalog(Box::new(e)))?;
    let prefix = &rule.src.repo.name;
    let mut found = 0;
    for name in all {
        let below = if prefix.is_empty() {
            name.as_str()
        } else {
            match name.strip_prefix(&**prefix).and_then(|r| r.strip_prefix('/')) {
                Some(b) => b,
                None => continue,
            }
        };
        // A bundle's images keep their path below a registry prefix, not the registry they
        // came from: `r.io/team/app` → `PREFIX/team/app`.
        let path = match rule.src.repo.is_layout() {
            true => parse_repository(below).map_or_else(|_| below.to_string(), |r| r.name.to_string()),
            false => below.to_string(),
        };
        if !ns.admits(&path) {
            log::debug!("{}: {name} left out by include_repos/exclude_repos", rule.describe());
            continue;
        }
        found += 1;
        let src = RuleRef { repo: rule.src.repo.sibling(&name), selector: Selector::All };
        let dst_name = match (rule.dst.repo.is_layout(), rule.dst.repo.name.is_empty()) {
            // Into a bundle: under the image's full name.
            (true, _) => src.repo.full_name(),
            (false, true) => path,
            (false, false) => format!("{}/{path}", rule.dst.repo.name),
        };
        let dst = RuleRef { repo: rule.dst.repo.sibling(&dst_name), selector: Selector::All };
        let child = Rule {
            src_text: src.repo.to_string(),
            dst_text: dst.repo.to_string(),
            src,
            dst,
            namespace: None,
            ..(**rule).clone()
        };
        ctx.queue.push(Task::Rule(Arc::new(child)));
    }
    log::info!("{}: {found} repositor{} in the namespace", rule.describe(), if found == 1 { "y" } else { "ies" });
    ctx.expanded(rule, &[]);
    Ok(())
}
