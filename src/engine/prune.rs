//! Exact mirrors (`prune: true`, `--prune`): after the run, tags at a pruning rule's
//! destination repository that the rule no longer produces are deleted — carefully, because
//! deleting the wrong thing is the one mistake a mirror cannot undo:
//!
//! - only when every image of the rule synced, the run was not interrupted, and every rule of
//!   the run that writes to that repository listed its tags (else we cannot know what the
//!   others produce);
//! - never a tag that any rule of the run produces in that repository;
//! - never a referrer or signature tag (`sha256-<hex>`, `.sig`, `.att`, `.sbom`);
//! - never when no tag at all was produced there (an empty selection would delete everything);
//! - never a manifest a kept tag still reaches (itself, or as a child of a kept index), nor one
//!   the run pushed by digest: such a tag is reported as not prunable and stays. Then by tag
//!   where the registry can delete a tag (OCI 1.1); where it can only delete a manifest by
//!   digest (distribution 2.8 answers a tag `DELETE` with 400), by digest;
//! - a registry that refuses deletion (405) is reported once, and nothing more is tried there.
//!
//! With `--dry-run` the same decisions are made with reads only, and printed.

use std::collections::{HashMap, HashSet};

use super::ctx::Ctx;
use super::outcome::Failure;
use super::plan::MAX_DEPTH;
use super::record::Expansion;
use crate::digest::Digest;
use crate::manifest::{is_referrer_tag, Kind, Manifest};
use crate::reference::{Reference, Repository};
use crate::store::{Access, Error, Store};

/// How a registry deletes, once known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Deletes {
    ByTag,
    ByDigest,
    Refused,
}

/// Prune every pruning rule's destination, from the run's expanded `rules`, the digests its
/// images with a digest destination ended at (`pinned`) and its `failures`; returns the number
/// of tags deleted (or, in a dry run, that would be).
pub fn prune(ctx: &Ctx, rules: &[Expansion], pinned_by_run: &[(Repository, Digest)], failures: &[Failure]) -> u64 {
    if crate::stop::requested() || !rules.iter().any(|(r, _)| r.prune) {
        return 0;
    }
    // What the run produces in each repository: tags, and digests pushed without one.
    let mut produced: HashMap<&Repository, HashSet<String>> = HashMap::new();
    let mut pinned: HashMap<Repository, Vec<Digest>> = HashMap::new();
    for (rule, expanded) in rules {
        for (i, reference) in expanded.iter().flat_map(|e| e.refs.iter().enumerate()) {
            match rule.dst_reference(i, &reference) {
                Reference::Tag(t) => {
                    produced.entry(&rule.dst.repo).or_default().insert(t);
                }
                Reference::Digest(d) => pinned.entry(rule.dst.repo.clone()).or_default().push(d),
            }
        }
    }
    for (repo, d) in pinned_by_run {
        pinned.entry(repo.clone()).or_default().push(d.clone());
    }
    let mut how: HashMap<String, Deletes> = HashMap::new();
    let mut done: HashSet<&Repository> = HashSet::new();
    let mut count = 0;
    for (rule, pairs) in rules {
        let repo = &rule.dst.repo;
        if pairs.is_none() || !rule.prune || rule.namespace.is_some() || !done.insert(repo) {
            continue;
        }
        // Every rule writing here must be clean, not only this one.
        let bad = failures.iter().filter_map(Failure::image).filter(|p| p.dst.repo == *repo).count();
        if bad > 0 {
            log::warn!("not pruning {repo}: {bad} image(s) synced there failed");
            continue;
        }
        // A rule that never listed its tags may write here: what it produces is unknown.
        if let Some((other, _)) =
            rules.iter().find(|(r, p)| p.is_none() && covers(&r.dst.repo, r.namespace.is_some(), repo))
        {
            log::warn!("not pruning {repo}: {} did not list its tags", other.describe());
            continue;
        }
        let Some(keep) = produced.get(repo).filter(|k| !k.is_empty()) else {
            // An empty selection (a typo in a range, a source emptied or answering `tags: null`)
            // would otherwise delete every tag.
            log::warn!("not pruning {repo}: no rule produced any tag there this run");
            continue;
        };
        let dc = ctx.stores.get(repo);
        if how.get(dc.name()) == Some(&Deletes::Refused) {
            continue;
        }
        let tags = match dc.list_tags(repo) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => continue,
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
        let roots = pinned.get(repo).cloned().unwrap_or_default();
        let mut pruner = Pruner { ctx, dc: &*dc, repo, kept: &kept, roots, protected: None, how: &mut how };
        count += pruner.run(&gone);
    }
    if count > 0 {
        let verb = if ctx.opts.dry_run() { "would prune" } else { "pruned" };
        log::info!("{verb} {count} tag(s) no rule produces any more");
    }
    count
}

/// Whether a rule writing to `dst` (a prefix when it is a namespace rule) may write to `repo`.
fn covers(dst: &Repository, namespace: bool, repo: &Repository) -> bool {
    dst.location == repo.location
        && (dst.name == repo.name
            || (namespace
                && (dst.name.is_empty() || repo.name.strip_prefix(&*dst.name).is_some_and(|r| r.starts_with('/')))))
}

/// The deletions in one repository.
struct Pruner<'a, 'c> {
    ctx: &'a Ctx<'c>,
    dc: &'a dyn Store,
    repo: &'a Repository,
    kept: &'a [String],
    /// Digests the run pushed here without a tag: kept, with all they reference.
    roots: Vec<Digest>,
    /// Every manifest a kept tag (or a root) reaches, with a tag that reaches it; read when
    /// first needed.
    protected: Option<HashMap<Digest, String>>,
    how: &'a mut HashMap<String, Deletes>,
}

impl Pruner<'_, '_> {
    fn run(&mut self, gone: &[String]) -> u64 {
        let mut count = 0;
        let mut deleted: HashSet<Digest> = HashSet::new();
        for tag in gone {
            let name = format!("{}:{tag}", self.repo);
            match self.one(tag, &name, &mut deleted) {
                Ok(true) => count += 1,
                Ok(false) => {}
                Err(e) => self.failed(&name, &e),
            }
            if self.how.get(self.dc.name()) == Some(&Deletes::Refused) {
                break;
            }
        }
        count
    }

    /// Delete `tag`, unless what it shows is still shown by a kept tag (deleting by digest
    /// would take that along; and a registry "deleting a tag" may delete its manifest).
    fn one(&mut self, tag: &str, name: &str, deleted: &mut HashSet<Digest>) -> Result<bool, Error> {
        let reference = Reference::Tag(tag.into());
        let Some(digest) = self.dc.manifest_digest(self.repo, &reference, Access::Push)? else {
            return Ok(false);
        };
        if deleted.contains(&digest) {
            log::info!("pruned {name} (with {})", digest.short());
            return Ok(true);
        }
        if let Some(keeper) = self.protected()?.get(&digest) {
            log::warn!("{name} is not prunable: {keeper} still shows the same manifest {}", digest.short());
            return Ok(false);
        }
        if self.ctx.opts.dry_run() {
            log::info!("would prune {name} ({})", digest.short());
            deleted.insert(digest);
            return Ok(true);
        }
        if self.how.get(self.dc.name()) != Some(&Deletes::ByDigest) {
            match self.dc.delete_manifest(self.repo, &reference) {
                Ok(true) => {
                    self.how.insert(self.dc.name().to_string(), Deletes::ByTag);
                    log::info!("pruned {name}");
                    return Ok(true);
                }
                Ok(false) => return Ok(false),
                // distribution 2.8 answers a tag with 400 DIGEST_INVALID; others 400 UNSUPPORTED.
                Err(e) if e.status_code() == Some(400) => {
                    log::debug!("{}: cannot delete a tag by name ({e}); deleting by digest", self.dc.name());
                    self.how.insert(self.dc.name().to_string(), Deletes::ByDigest);
                }
                Err(e) => return Err(e),
            }
        }
        if !self.dc.delete_manifest(self.repo, &Reference::Digest(digest.clone()))? {
            return Ok(false);
        }
        log::info!("pruned {name} (deleted {})", digest.short());
        deleted.insert(digest);
        Ok(true)
    }

    /// Every manifest reachable from a kept tag or a root: indexes are walked down to their
    /// children, so an image a kept index lists is never deleted under it.
    fn protected(&mut self) -> Result<&HashMap<Digest, String>, Error> {
        if self.protected.is_none() {
            let mut map = HashMap::new();
            let mut todo: Vec<(Reference, String, usize)> =
                self.kept.iter().map(|t| (Reference::Tag(t.clone()), format!("kept tag {t}"), 0)).collect();
            todo.extend(
                self.roots
                    .iter()
                    .map(|d| (Reference::Digest(d.clone()), format!("manifest {} pushed by this run", d.short()), 0)),
            );
            while let Some((reference, why, depth)) = todo.pop() {
                let fetched = match self.dc.get_manifest(self.repo, &reference, Access::Push) {
                    Ok(f) => f,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                if map.insert(fetched.digest.clone(), why.clone()).is_some() || depth >= MAX_DEPTH {
                    continue;
                }
                if let Ok(Manifest { kind: Kind::Index { manifests }, .. }) =
                    Manifest::parse(&fetched.bytes, fetched.media_type.as_ref())
                {
                    for child in manifests {
                        todo.push((Reference::Digest(child.digest), why.clone(), depth + 1));
                    }
                }
            }
            self.protected = Some(map);
        }
        Ok(self.protected.as_ref().expect("just set"))
    }

    /// A deletion failed: a registry that refuses deletion is said once; other errors per tag.
    fn failed(&mut self, name: &str, e: &Error) {
        if e.status_code() == Some(405) {
            if self.how.insert(self.dc.name().to_string(), Deletes::Refused) != Some(Deletes::Refused) {
                log::warn!(
                    "{}: the registry refuses deletion ({}); not pruning there (distribution needs storage.delete.enabled)",
                    self.dc.name(),
                    e.kind
                );
            }
            return;
        }
        log::warn!("could not prune {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{image, job, multi_arch, rule, src_dst, sync, Image, MemStore, Op};
    use crate::engine::{Job, Mode, Report};

    /// A pruning rule copying `src.io/a:TAGS` to `dst.io/a`.
    fn pruning(tags: &str) -> Job {
        let mut r = rule(&format!("src.io/a:{tags}"), "dst.io/a");
        r.prune = true;
        job(vec![r])
    }

    /// `v1` at the source and the destination, and `old` at the destination only; then `job`.
    fn prune_old(
        old: &Image,
        job: Job,
        change: impl FnOnce(&MemStore, &MemStore),
    ) -> (Report, std::sync::Arc<MemStore>) {
        let (src, dst) = src_dst();
        let v1 = image("v1").build();
        src.add("a", Some("v1"), &v1);
        dst.add("a", Some("v1"), &v1);
        dst.add("a", Some("old"), old);
        change(&src, &dst);
        (sync(job, &[&src, &dst]), dst)
    }

    #[test]
    fn a_tag_no_rule_produces_is_deleted() {
        let (report, dst) = prune_old(&image("old").build(), pruning("v1"), |_, _| {});
        assert_eq!(dst.tags("a"), ["v1"]);
        assert_eq!(report.totals.tags_pruned, 1);
    }

    #[test]
    fn a_tag_a_kept_index_still_reaches_stays() {
        let (src, dst) = src_dst();
        let idx = multi_arch();
        src.add("a", Some("v1"), &idx);
        dst.add("a", Some("old"), &idx.children[1]);
        let report = sync(pruning("v1"), &[&src, &dst]);
        assert_eq!(dst.tags("a"), ["old", "v1"]);
        assert_eq!((report.totals.tags_pruned, dst.count(Op::DeleteManifest)), (0, 0));
    }

    #[test]
    fn a_registry_refusing_deletion_is_asked_once() {
        let refuse = |_: &MemStore, dst: &MemStore| {
            dst.add("a", Some("older"), &image("older").build());
            dst.fail(Op::DeleteManifest, None, usize::MAX, 405);
        };
        let (report, dst) = prune_old(&image("old").build(), pruning("v1"), refuse);
        assert_eq!(dst.tags("a"), ["old", "older", "v1"]);
        assert_eq!((dst.count(Op::DeleteManifest), report.totals.tags_pruned), (1, 0));
        assert!(report.failures.is_empty());
    }

    #[test]
    fn where_a_tag_cannot_be_deleted_by_name_its_manifest_is_deleted_by_digest() {
        let old = image("old").build();
        let by_digest = |_: &MemStore, dst: &MemStore| dst.fail(Op::DeleteManifest, Some("old"), 1, 400);
        let (_, dst) = prune_old(&old, pruning("v1"), by_digest);
        assert_eq!(dst.tags("a"), ["v1"]);
        let deleted: Vec<_> = dst.calls(Op::DeleteManifest).into_iter().map(|c| c.target).collect();
        assert_eq!(deleted, ["old".to_string(), old.digest.to_string()]);
    }

    #[test]
    fn nothing_is_pruned_where_an_image_failed() {
        let failing = |src: &MemStore, _: &MemStore| {
            src.add("a", Some("v2"), &image("v2").build());
            src.fail(Op::GetManifest, Some("v2"), 1, 403);
        };
        let (report, dst) = prune_old(&image("old").build(), pruning("v1,v2"), failing);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(dst.tags("a"), ["old", "v1"]);
    }

    #[test]
    fn a_dry_run_deletes_nothing_and_counts_what_it_would() {
        let mut job = pruning("v1");
        job.opts.mode = Mode::DryRun;
        let (report, dst) = prune_old(&image("old").build(), job, |_, _| {});
        assert_eq!(report.totals.tags_pruned, 1);
        assert_eq!(dst.tags("a"), ["old", "v1"]);
        assert!(dst.writes().is_empty());
    }
}
