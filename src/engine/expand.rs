//! Running a rule: list the source's tags (or, for a namespace, its repositories), let the
//! rule take and select among them, and queue one image task per source → destination pair,
//! a window at a time ([`WINDOW`], see [`Unqueued`]). What a rule means is [`crate::rule`]'s;
//! this is the part that asks the stores.

use std::sync::Arc;

use super::ctx::Ctx;
use super::error::SyncError;
use super::events::Event;
use super::graph::{Task, Unqueued};
use super::lookups::DestinationTags;
use super::plan::{MAX_CONFIG_BYTES, MAX_DEPTH};
use crate::manifest::{Kind, Manifest};
use crate::reference::{ImageRef, Reference, Repository};
use crate::rule::{rfc3339, Refs, Rule};
use crate::store::{Access, Store};

/// Resolve a rule's source tags and pair them with destination references.
pub fn expand(ctx: &Ctx, rule: &Arc<Rule>) -> Result<(), SyncError> {
    let slot = ctx.record.expansion_started(rule);
    if rule.namespace.is_some() {
        return namespace(ctx, rule, slot);
    }
    let refs = match rule.named() {
        Some(refs) => Refs::from(refs),
        None => {
            let store = ctx.stores.get(&rule.src.repo);
            let listed = store.list_tags(&rule.src.repo)?;
            if listed.is_empty() && rule.src.repo.is_layout() {
                let what = match &*rule.src.repo.name {
                    "" => "the bundle holds no image".to_string(),
                    name => format!("the bundle holds no image {name}"),
                };
                return Err(empty_bundle(&*store, what));
            }
            ctx.lookups.remember_tags(&rule.src.repo, &listed);
            let referrers = ctx.opts.referrers.enabled;
            let tags = listed.into_iter().filter(|t| rule.takes(t, referrers)).collect();
            Refs::tags(select(&*store, rule, tags)?)
        }
    };
    if refs.is_empty() {
        log::warn!("{}: no tags to synchronise", rule.describe());
    }
    ctx.event(Event::ImagesFound(refs.len() as u64));
    let refs = Arc::new(refs);
    ctx.record.expanded(slot, refs.clone());
    let listed = immutable_listed(ctx, rule, &refs);
    queue_images(ctx, &Unqueued { rule: rule.clone(), slot, refs, listed, from: 0 });
    Ok(())
}

/// The most image tasks of one rule queued at a time: more than any sensible `--proc`, so no
/// worker waits for the next window, and few enough that the pairs waiting in the queue cost
/// next to nothing (a pair is about 200 bytes).
const WINDOW: usize = 512;

/// Queue the next window of a rule's images (an immutable tag the destination lists ends at
/// once), then the rest of them as one task behind it.
pub fn queue_images(ctx: &Ctx, unqueued: &Unqueued) {
    let end = (unqueued.from + WINDOW).min(unqueued.refs.len());
    for i in unqueued.from..end {
        let pair = unqueued.pair(i);
        match (&unqueued.listed, unqueued.rule.immutable_tag(&pair)) {
            (Some(tags), Some(tag)) if tags.contains(tag) => ctx.immutable(&pair),
            _ => ctx.queue.push(Task::Image(pair)),
        }
    }
    if end < unqueued.refs.len() {
        let rest = Unqueued {
            rule: unqueued.rule.clone(),
            refs: unqueued.refs.clone(),
            listed: unqueued.listed.clone(),
            from: end,
            ..*unqueued
        };
        ctx.queue.push(Task::Images(Box::new(rest)));
    }
}

/// The destination's tags, when the rule has immutable tags among the destinations of `refs`
/// and the run takes the promise (`--force` copies and `--verify` checks regardless).
fn immutable_listed(ctx: &Ctx, rule: &Rule, refs: &Refs) -> DestinationTags {
    if ctx.opts.force || ctx.opts.verify() || rule.immutable.is_none() {
        return None;
    }
    let immutable = |(i, r)| match rule.dst_reference(i, &r) {
        Reference::Tag(t) => rule.immutable.as_ref().is_some_and(|m| m.covers(&t)),
        Reference::Digest(_) => false,
    };
    if !refs.iter().enumerate().any(immutable) {
        return None;
    }
    ctx.lookups.destination_tags(&*ctx.stores.get(&rule.dst.repo), &rule.dst.repo)
}

/// The rule's selection keys applied to the listed `tags`, logged in one line.
fn select(store: &dyn Store, rule: &Rule, tags: Vec<String>) -> Result<Vec<String>, SyncError> {
    if rule.select.is_empty() {
        return Ok(tags);
    }
    let total = tags.len();
    let repo = &rule.src.repo;
    // One tag that cannot be read (gone since the listing, schema 1, no config) is "created
    // unknown" and ranks last; only a failure that may clear up fails the rule (to be retried).
    let (kept, how) = rule.select.apply(tags, |tag| match created(store, repo, tag) {
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
fn created(store: &dyn Store, repo: &Repository, tag: &str) -> Result<Option<i64>, SyncError> {
    let mut reference = Reference::Tag(tag.to_string());
    for _ in 0..MAX_DEPTH {
        let f = store.get_manifest(repo, &reference, Access::Pull)?;
        let at = ImageRef { repo: repo.clone(), reference: reference.clone() };
        match Manifest::parse(&f.bytes, f.media_type.as_ref()).map_err(|m| SyncError::manifest(&at, m))?.kind {
            Kind::Index { manifests } => match manifests.first() {
                Some(first) => reference = Reference::Digest(first.digest.clone()),
                None => return Ok(None),
            },
            Kind::Image { config, .. } => {
                let raw = store.get_blob_bytes(repo, &config.digest, MAX_CONFIG_BYTES)?;
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
                return Ok(v.get("created").and_then(|c| c.as_str()).and_then(rfc3339));
            }
        }
    }
    Ok(None)
}

/// A bundle that holds nothing for a rule: a failure, not a run that copied nothing and says
/// all is well (an empty or half-written bundle carried into a site must not pass unnoticed).
fn empty_bundle(store: &dyn Store, what: String) -> SyncError {
    crate::store::Error::new(store.name(), "", crate::store::ErrorKind::Missing(what)).into()
}

/// A namespace rule: one rule per repository of the source catalog below the namespace.
fn namespace(ctx: &Ctx, rule: &Arc<Rule>, slot: u32) -> Result<(), SyncError> {
    let store = ctx.stores.get(&rule.src.repo);
    let all = store.list_catalog().map_err(|e| SyncError::Catalog(Box::new(e)))?;
    if all.is_empty() && rule.src.repo.is_layout() {
        return Err(empty_bundle(&*store, "the bundle holds no image to copy".into()));
    }
    let mut found = 0;
    for child in all.iter().filter_map(|name| rule.for_repository(name)) {
        found += 1;
        ctx.queue.push(Task::Rule(Arc::new(child)));
    }
    log::info!("{}: {found} repositor{} in the namespace", rule.describe(), if found == 1 { "y" } else { "ies" });
    ctx.record.expanded(slot, Arc::new(Refs::Named(Vec::new())));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::engine::testing::{add_signed_by_tag, image, index, job, rule, src_dst, sync, MemStore, Op};
    use std::sync::Arc;

    use crate::engine::{Failure, Outcome, Report};
    use crate::rule::{parse_namespace, Immutable, LatestBy, Namespace, Rule, Selection};

    /// The namespace rule `src.io/team/*: dst.io/mirror`.
    fn team() -> Rule {
        let (from, to) = (parse_namespace("src.io/team").unwrap(), parse_namespace("dst.io/mirror").unwrap());
        Rule::new("src.io/team/*", "dst.io/mirror", from, to, Some(Namespace::default())).unwrap()
    }

    #[test]
    fn listed_tags_are_taken_by_the_rule_regex() {
        let (src, dst) = src_dst();
        for tag in ["v1", "v2", "latest"] {
            src.add("a", Some(tag), &image(tag).build());
        }
        let report = sync(job(vec![rule("src.io/a:/^v/", "dst.io/a")]), &[&src, &dst]);
        assert_eq!(dst.tags("a"), ["v1", "v2"]);
        assert_eq!(report.totals.images_found, 2);
    }

    #[test]
    fn referrer_tags_are_not_images_of_their_own() {
        let (src, dst) = (MemStore::without_referrers_api("src.io"), MemStore::new("dst.io"));
        let (_, sig) = add_signed_by_tag(&src);
        let report = sync(job(vec![rule("src.io/a", "dst.io/a")]), &[&src, &dst]);
        assert_eq!((report.totals.images_found, report.outcomes.len()), (1, 1));
        assert!(dst.manifest("a", &sig.digest).is_some(), "copied as v1's referrer");
    }

    #[test]
    fn a_namespace_rule_gives_one_rule_per_repository_below_it() {
        let (src, dst) = src_dst();
        for repo in ["team/a", "team/b", "other/c"] {
            src.add(repo, Some("v1"), &image(repo).build());
        }
        let report = sync(job(vec![team()]), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!((dst.tags("mirror/a"), dst.tags("mirror/b")), (vec!["v1".into()], vec!["v1".to_string()]));
        assert!(dst.tags("mirror/c").is_empty());
    }

    #[test]
    fn latest_by_created_reads_each_image_config() {
        let (src, dst) = src_dst();
        // Named so that their names rank them the other way round.
        src.add("a", Some("a"), &index(&[&image("new").created("2024-05-01T00:00:00Z").build()]));
        src.add("a", Some("b"), &image("old").created("2020-05-01T00:00:00Z").build());
        let mut latest = rule("src.io/a", "dst.io/a");
        latest.select = Selection { latest: Some(1), latest_by: LatestBy::Created, ..Selection::default() };
        sync(job(vec![latest]), &[&src, &dst]);
        assert_eq!(dst.tags("a"), ["a"]);
    }

    /// `src.io/a` with `v1`, `v2` and `latest` (new images), to `dst.io/a` holding older `v1`
    /// and `latest`; the rule takes `v*` as immutable.
    fn immutable_v(force: bool) -> (Report, Arc<MemStore>, Arc<MemStore>) {
        let (src, dst) = src_dst();
        for tag in ["v1", "v2", "latest"] {
            src.add("a", Some(tag), &image(&format!("new-{tag}")).build());
        }
        for tag in ["v1", "latest"] {
            dst.add("a", Some(tag), &image(&format!("old-{tag}")).build());
        }
        let mut r = rule("src.io/a", "dst.io/a");
        r.immutable = Some(Immutable::matching("^v").unwrap());
        let mut job = job(vec![r]);
        job.opts.force = force;
        (sync(job, &[&src, &dst]), src, dst)
    }

    #[test]
    fn a_listed_immutable_tag_is_in_sync_without_a_manifest_request() {
        let (report, src, dst) = immutable_v(false);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let old = image("old-v1").build().digest;
        assert_eq!(dst.tag("a", "v1"), Some(old), "an immutable tag is not followed when the source moves it");
        assert_eq!(dst.tag("a", "v2"), Some(image("new-v2").build().digest), "missing: copied");
        assert_eq!(dst.tag("a", "latest"), Some(image("new-latest").build().digest), "mutable: updated");
        for (store, op) in [(&src, Op::HeadManifest), (&src, Op::GetManifest), (&dst, Op::HeadManifest)] {
            assert_eq!(store.count_on(op, "v1"), 0, "{op:?}");
        }
        assert_eq!((dst.count(Op::ListTags), report.totals.images_immutable), (1, 1));
        let immutable: Vec<_> = report.outcomes.iter().filter(|(_, o)| *o == Outcome::Immutable).collect();
        assert_eq!(immutable.len(), 1);
        assert!(report.totals.summary().contains("1 unchanged (immutable)"), "{}", report.totals.summary());
    }

    #[test]
    fn a_rule_larger_than_a_window_syncs_every_image_once() {
        let (src, dst) = src_dst();
        let n = 2 * super::WINDOW + 3;
        let tags: Vec<String> = (0..n).map(|i| format!("t{i:04}")).collect();
        let one = image("shared").build();
        for tag in &tags {
            src.add("a", Some(tag), &one);
        }
        // Immutable tags the destination lists, in the first and in the last window.
        for tag in [&tags[1], &tags[n - 1]] {
            dst.add("a", Some(tag), &image("old").build());
        }
        let mut r = rule("src.io/a", "dst.io/a");
        r.immutable = Some(Immutable::All);
        let mut job = job(vec![r]);
        job.proc = 4;
        let report = sync(job, &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tags("a"), tags);
        assert_eq!((report.totals.images_found, report.totals.images_immutable), (n as u64, 2));
        assert_eq!(report.outcomes.len(), n, "each image ended once");
        assert_eq!(src.count(Op::ListTags), 1);
    }

    #[test]
    fn the_images_not_queued_yet_are_named_when_their_task_fails() {
        use crate::engine::graph::{Task, Unqueued};
        use crate::rule::Refs;
        let refs = Arc::new(Refs::tags((0..5).map(|i| format!("v{i}"))));
        let task = Task::Images(Box::new(Unqueued {
            rule: Arc::new(rule("src.io/a", "dst.io/b")),
            slot: 7,
            refs,
            listed: None,
            from: 3,
        }));
        let images = task.images();
        let named: Vec<String> = images.iter().map(|p| p.to_string()).collect();
        assert_eq!(named, ["src.io/a:v3 -> dst.io/b:v3", "src.io/a:v4 -> dst.io/b:v4"]);
        assert_eq!(images[1].slot, Some(crate::rule::Slot { rule: 7, index: 4 }));
    }

    #[test]
    fn force_and_an_unreadable_tag_list_compare_as_usual() {
        let (report, _, dst) = immutable_v(true);
        assert_eq!(dst.tag("a", "v1"), Some(image("new-v1").build().digest), "--force copies");
        assert_eq!((dst.count(Op::ListTags), report.totals.images_immutable), (0, 0));
        let (src, dst) = src_dst();
        src.add("a", Some("v1"), &image("new").build());
        dst.add("a", Some("v1"), &image("old").build());
        dst.fail(Op::ListTags, None, 1, 500);
        let mut r = rule("src.io/a", "dst.io/a");
        r.immutable = Some(Immutable::All);
        let report = sync(job(vec![r]), &[&src, &dst]);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(dst.tag("a", "v1"), Some(image("new").build().digest), "compared, so updated");
    }

    #[test]
    fn a_refused_catalog_fails_the_namespace_rule() {
        let (src, dst) = src_dst();
        src.add("team/a", Some("v1"), &image("a").build());
        src.fail(Op::Catalog, None, 1, 403);
        let report = sync(job(vec![team()]), &[&src, &dst]);
        assert!(matches!(&report.failures[..], [Failure::Rule { cause, .. }] if cause.class == "denied"));
        assert!(dst.writes().is_empty());
    }
}
