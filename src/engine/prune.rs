//! Exact mirrors (`prune: true`, `--prune`): after the run, tags at a pruning rule's
//! destination repository that the rule no longer produces are deleted — carefully, because
//! deleting the wrong thing is the one mistake a mirror cannot undo:
//!
//! - only when every image of the rule synced, the run was not interrupted, and every rule of
//!   the run that writes to that repository listed its tags (else we cannot know what the
//!   others produce);
//! - never a tag that any rule of the run produces in that repository;
//! - never a referrer or signature tag (`sha256-<hex>`, `.sig`, `.att`, `.sbom`);
//! - by tag where the registry can delete a tag (OCI 1.1); where it can only delete a manifest
//!   by digest (distribution 2.8 answers a tag `DELETE` with 400), the digest is deleted only
//!   when no kept tag points to it — else the tag is reported as not prunable and stays;
//! - a registry that refuses deletion (405) is reported once, and nothing more is tried there.
//!
//! With `--dry-run` the same decisions are made with reads only, and printed.

use std::collections::{HashMap, HashSet};

use super::context::Ctx;
use super::graph::Pair;
use super::Failure;
use crate::manifest::is_referrer_tag;
use crate::reference::{Digest, Reference, Repository};
use crate::registry::{Access, Client, Error};

/// How a registry deletes, once known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Deletes {
    ByTag,
    ByDigest,
    Refused,
}

/// Prune every pruning rule's destination; returns the number of tags deleted (or, in a dry
/// run, that would be).
pub fn prune(ctx: &Ctx, failures: &[Failure]) -> u64 {
    let rules = ctx.rules.lock().clone();
    if crate::stop::requested() || !rules.iter().any(|(r, _)| r.prune) {
        return 0;
    }
    let failed: HashSet<&Pair> = failures
        .iter()
        .filter_map(|f| match f {
            Failure::Image { pair, .. } => Some(pair),
            Failure::Rule { .. } => None,
        })
        .collect();
    let mut produced: HashMap<&Repository, HashSet<&str>> = HashMap::new();
    for pair in rules.iter().filter_map(|(_, p)| p.as_ref()).flatten() {
        if let Reference::Tag(t) = &pair.dst.reference {
            produced.entry(&pair.dst.repo).or_default().insert(t);
        }
    }
    let mut how: HashMap<String, Deletes> = HashMap::new();
    let mut done: HashSet<&Repository> = HashSet::new();
    let mut count = 0;
    for (rule, pairs) in &rules {
        let repo = &rule.dst.repo;
        let Some(pairs) = pairs.as_ref().filter(|_| rule.prune && rule.namespace.is_none()) else { continue };
        if !done.insert(repo) {
            continue;
        }
        let bad = pairs.iter().filter(|p| failed.contains(p)).count();
        if bad > 0 {
            log::warn!("not pruning {repo}: {bad} image(s) of {} failed", rule.describe());
            continue;
        }
        // A rule that never listed its tags may write here: what it produces is unknown.
        if let Some((other, _)) =
            rules.iter().find(|(r, p)| p.is_none() && covers(&r.dst.repo, r.namespace.is_some(), repo))
        {
            log::warn!("not pruning {repo}: {} did not list its tags", other.describe());
            continue;
        }
        let keep = produced.get(repo).cloned().unwrap_or_default();
        let dc = ctx.regs.client(repo);
        if how.get(&dc.registry) == Some(&Deletes::Refused) {
            continue;
        }
        let tags = match dc.list_tags(&repo.name) {
            Ok(t) => t,
            Err(e) if e.status_code() == Some(404) => continue,
            Err(e) => {
                log::warn!("not pruning {repo}: {e}");
                continue;
            }
        };
        let (gone, kept): (Vec<String>, Vec<String>) =
            tags.into_iter().partition(|t| !keep.contains(t.as_str()) && !is_referrer_tag(t));
        if gone.is_empty() {
            continue;
        }
        let mut pruner = Pruner { ctx, dc: &dc, repo, kept: &kept, kept_digests: None, how: &mut how };
        count += pruner.run(&gone);
    }
    if count > 0 {
        let verb = if ctx.dry_run() { "would prune" } else { "pruned" };
        log::info!("{verb} {count} tag(s) no rule produces any more");
    }
    count
}

/// Whether a rule writing to `dst` (a prefix when it is a namespace rule) may write to `repo`.
fn covers(dst: &Repository, namespace: bool, repo: &Repository) -> bool {
    dst.registry == repo.registry
        && (dst.name == repo.name
            || (namespace
                && (dst.name.is_empty() || repo.name.strip_prefix(&dst.name).is_some_and(|r| r.starts_with('/')))))
}

/// The deletions in one repository.
struct Pruner<'a, 'c> {
    ctx: &'a Ctx<'c>,
    dc: &'a Client,
    repo: &'a Repository,
    kept: &'a [String],
    /// The digests the kept tags point to, read when first needed.
    kept_digests: Option<HashMap<Digest, String>>,
    how: &'a mut HashMap<String, Deletes>,
}

impl Pruner<'_, '_> {
    fn run(&mut self, gone: &[String]) -> u64 {
        let mut count = 0;
        let mut deleted: HashSet<Digest> = HashSet::new();
        for tag in gone {
            let name = format!("{}:{tag}", self.repo);
            let reference = Reference::Tag(tag.clone());
            let by = self.how.get(&self.dc.registry).copied();
            if by == Some(Deletes::Refused) {
                return count;
            }
            if self.ctx.dry_run() || by == Some(Deletes::ByDigest) {
                match self.by_digest(tag, &name, &mut deleted) {
                    Ok(true) => count += 1,
                    Ok(false) => {}
                    Err(e) => self.failed(&name, &e),
                }
                continue;
            }
            match self.dc.delete_manifest(&self.repo.name, &reference) {
                Ok(_) => {
                    self.how.insert(self.dc.registry.clone(), Deletes::ByTag);
                    log::info!("pruned {name}");
                    count += 1;
                }
                // distribution 2.8: "DIGEST_INVALID" for a tag; others say UNSUPPORTED with 400.
                Err(e) if e.status_code() == Some(400) && by.is_none() => {
                    log::debug!("{}: cannot delete a tag by name ({e}); deleting by digest", self.dc.registry);
                    self.how.insert(self.dc.registry.clone(), Deletes::ByDigest);
                    match self.by_digest(tag, &name, &mut deleted) {
                        Ok(true) => count += 1,
                        Ok(false) => {}
                        Err(e) => self.failed(&name, &e),
                    }
                }
                Err(e) => self.failed(&name, &e),
            }
        }
        count
    }

    /// Delete `tag` by deleting its manifest, when no kept tag points to the same digest.
    fn by_digest(&mut self, tag: &str, name: &str, deleted: &mut HashSet<Digest>) -> Result<bool, Error> {
        let Some(digest) = self.dc.manifest_digest(&self.repo.name, &Reference::Tag(tag.into()), Access::Push)? else {
            return Ok(false);
        };
        if deleted.contains(&digest) {
            // Gone with the manifest of a tag deleted before it.
            log::info!("pruned {name} (with {})", digest.short());
            return Ok(true);
        }
        if let Some(keeper) = self.kept_digests()?.get(&digest) {
            log::warn!(
                "{name} is not prunable: the registry deletes only by digest, and kept tag {keeper} has the same digest {}",
                digest.short()
            );
            return Ok(false);
        }
        if self.ctx.dry_run() {
            log::info!("would prune {name} ({})", digest.short());
            deleted.insert(digest);
            return Ok(true);
        }
        self.dc.delete_manifest(&self.repo.name, &Reference::Digest(digest.clone()))?;
        log::info!("pruned {name} (deleted {})", digest.short());
        deleted.insert(digest);
        Ok(true)
    }

    fn kept_digests(&mut self) -> Result<&HashMap<Digest, String>, Error> {
        if self.kept_digests.is_none() {
            let mut map = HashMap::new();
            for t in self.kept {
                if let Some(d) = self.dc.manifest_digest(&self.repo.name, &Reference::Tag(t.clone()), Access::Push)? {
                    map.entry(d).or_insert_with(|| t.clone());
                }
            }
            self.kept_digests = Some(map);
        }
        Ok(self.kept_digests.as_ref().expect("just set"))
    }

    /// A deletion failed: a registry that refuses deletion is said once; other errors per tag.
    fn failed(&mut self, name: &str, e: &Error) {
        if e.status_code() == Some(405) {
            if self.how.insert(self.dc.registry.clone(), Deletes::Refused) != Some(Deletes::Refused) {
                log::warn!(
                    "{}: the registry refuses deletion ({}); not pruning there (distribution needs storage.delete.enabled)",
                    self.dc.registry,
                    e.kind
                );
            }
            return;
        }
        log::warn!("could not prune {name}: {e}");
    }
}
