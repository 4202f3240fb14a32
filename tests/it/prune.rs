//! Pruning (issue 12): `prune: true` on a rule, or `--prune` for every rule, deletes the tags at
//! the rule's destination repository that no rule of the run produced — only when everything of
//! the rule synced, never a referrer / signature tag, never a digest a kept tag still points at,
//! and with `--dry-run` only as a plan (`would prune`). On distribution 2.8 a tag goes by
//! deleting its manifest digest; a registry without deletion enabled is reported once.

use serde_json::json;

use crate::common::*;

/// `DELETE`s of manifests the registry received since its requests were last cleared.
fn manifest_deletes(reg: &Registry) -> Vec<Request> {
    reg.requests().into_iter().filter(|r| r.is_delete() && r.path.contains("/manifests/")).collect()
}

/// `p/app` with three different images `v1`, `v2`, `v3` at the source, synced to the
/// destination's `p/app`, then `v2` deleted at the source.
struct Pruned {
    src: Registry,
    dst: Registry,
    v1: Image,
    v2: Image,
    v3: Image,
}

fn synced_then_v2_deleted_at_the_source(prune_key: bool) -> Pruned {
    let src = Registry::start_with_deletion();
    let dst = Registry::start_with_deletion();
    let s = src.api();
    let (v1, v2, v3) = (push_simple(s, "p/app", "v1"), push_simple(s, "p/app", "v2"), push_simple(s, "p/app", "v3"));
    let job = rules_job(&[&src, &dst], &[(&src.repo("p/app"), json!({"to": dst.repo("p/app"), "prune": prune_key}))]);
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_eq!(dst.api().tags("p/app"), vec!["v1", "v2", "v3"], "{run}");
    assert!(run.lines_with(&["pruned"]).is_empty(), "nothing to prune on the first run:\n{run}");
    assert_eq!(s.delete_manifest("p/app", &v2.digest), 202, "delete v2 at the source");
    assert_eq!(s.tags("p/app"), vec!["v1", "v3"]);
    Pruned { src, dst, v1, v2, v3 }
}

#[test]
fn prune_deletes_the_tag_the_source_no_longer_has() {
    let Pruned { src, dst, v1, v2, v3 } = synced_then_v2_deleted_at_the_source(true);
    let job = rules_job(&[&src, &dst], &[(&src.repo("p/app"), json!({"to": dst.repo("p/app"), "prune": true}))]);
    dst.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_eq!(dst.api().tags("p/app"), vec!["v1", "v3"], "{run}");
    assert!(dst.api().head_manifest("p/app", "v2").is_none());
    assert_image_copied(src.api(), dst.api(), &v1, "p/app", "v1");
    assert_image_copied(src.api(), dst.api(), &v3, "p/app", "v3");
    let pruned = run.lines_with(&["pruned", "p/app:v2"]);
    assert_eq!(pruned.len(), 1, "one line says p/app:v2 was pruned:\n{run}");
    assert!(run.lines_with(&["pruned", "p/app:v1"]).is_empty() && run.lines_with(&["pruned", "p/app:v3"]).is_empty());
    // Distribution 2.8 deletes by digest: v2's manifest digest went, nothing else.
    let deletes = manifest_deletes(&dst);
    let of_v2: Vec<&Request> =
        deletes.iter().filter(|r| r.path == format!("/v2/p/app/manifests/{}", v2.digest)).collect();
    assert!(of_v2.iter().any(|r| r.status == 202), "no successful DELETE of v2's digest: {deletes:?}\n{run}");
    for r in &deletes {
        assert!(
            !r.path.ends_with(&v1.digest) && !r.path.ends_with(&v3.digest),
            "a kept image's digest was deleted: {r:?}"
        );
    }
}

#[test]
fn prune_keeps_tags_other_rules_produce_and_signature_tags() {
    let src = Registry::start_with_deletion();
    let dst = Registry::start_with_deletion();
    let (s, d) = (src.api(), dst.api());
    let x = push_simple(s, "p/a", "x");
    let y = push_simple(s, "p/a", "y");
    let z = push_simple(s, "p/b", "z");
    // At the destination only: a tag no rule produces, a cosign-style signature tag of `x`, and
    // a referrers-schema tag of `old` (prune never deletes either kind).
    let old = push_simple(d, "p/shared", "old");
    let sig_tag = format!("{}.sig", referrers_tag(&x.digest));
    let sig = push_oci_artifact(
        d,
        "p/shared",
        Some(&sig_tag),
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        None,
    );
    let old_subject = descriptor(&old.media_type, &old.bytes);
    let sbom =
        push_artifact_with_subject(d, "p/shared", "application/spdx+json", "application/spdx+json", &old_subject);
    let index_tag = referrers_tag(&old.digest);
    let index = push_referrers_tag(d, "p/shared", &old.digest, &[sbom.referrer_descriptor()]);

    let job = rules_job(
        &[&src, &dst],
        &[
            (&src.repo("p/a:x,y"), json!({"to": dst.repo("p/shared"), "prune": true})),
            (&src.repo("p/b:z"), json!(dst.repo("p/shared"))),
        ],
    );
    let run = job.run_within(60, &[]);
    run.assert_ok();
    let mut want = vec![index_tag.clone(), sig_tag.clone(), "x".to_string(), "y".to_string(), "z".to_string()];
    want.sort();
    assert_eq!(d.tags("p/shared"), want, "only `old` is pruned:\n{run}");
    assert_eq!(run.lines_with(&["pruned", "p/shared:old"]).len(), 1, "{run}");
    for (tag, img) in [("x", &x), ("y", &y), ("z", &z)] {
        assert_image_copied(s, d, img, "p/shared", tag);
    }
    assert_eq!(d.head_manifest("p/shared", &sig_tag), Some(sig.digest.clone()));
    assert_eq!(d.head_manifest("p/shared", &index_tag), Some(index.digest.clone()));
}

#[test]
fn a_failed_image_blocks_the_prune_of_its_rule() {
    let src = Registry::start_with_deletion();
    let dst = Registry::start_with_deletion();
    let s = src.api();
    let v1 = push_simple(s, "p/app", "v1");
    let v2 = push_simple(s, "p/app", "v2");
    // v2's manifest stays, one of its layers is gone: v2 cannot be copied.
    assert_eq!(s.delete_blob("p/app", &v2.layers[0]), 202);
    let stale = push_simple(dst.api(), "p/app", "stale");

    let job = rules_job(&[&src, &dst], &[(&src.repo("p/app"), json!({"to": dst.repo("p/app"), "prune": true}))]);
    dst.clear_requests();
    let run = job.run_within(90, &[]);
    assert_eq!(run.code, Some(1), "v2 failed:\n{run}");
    run.assert_no_panic();
    assert_eq!(dst.api().tags("p/app"), vec!["stale", "v1"], "{run}");
    assert_eq!(dst.api().head_manifest("p/app", "stale"), Some(stale.digest.clone()));
    assert_image_copied(s, dst.api(), &v1, "p/app", "v1");
    assert!(!run.lines_with(&["not pruning"]).is_empty(), "no line says the rule is not pruned:\n{run}");
    // The source's missing blob is the source's fault, not a destination refusing uploads.
    assert!(!run.output().contains("switching to PATCH"), "a source 404 was blamed on the destination:\n{run}");
    assert!(run.lines_with(&["pruned"]).is_empty(), "{run}");
    let deletes = manifest_deletes(&dst);
    assert!(deletes.is_empty(), "manifests were deleted: {deletes:?}\n{run}");
}

#[test]
fn a_tag_sharing_the_digest_of_a_kept_tag_is_not_prunable() {
    let src = Registry::start_with_deletion();
    let dst = Registry::start_with_deletion();
    let keep = push_simple(src.api(), "p/app", "keep");
    // The destination has `keep` and `gone`, one manifest under two tags.
    rules_job(&[&src, &dst], &[(&src.repo("p/app:keep"), json!(dst.repo("p/app")))]).run_within(60, &[]).assert_ok();
    tag_image(dst.api(), &keep, "gone");
    assert_eq!(dst.api().head_manifest("p/app", "gone"), Some(keep.digest.clone()));

    let job = rules_job(&[&src, &dst], &[(&src.repo("p/app"), json!({"to": dst.repo("p/app"), "prune": true}))]);
    dst.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_no_panic();
    let reported = run.lines_with(&["not prunable"]);
    assert!(reported.iter().any(|l| l.contains("p/app:gone")), "no \"not prunable\" line names p/app:gone:\n{run}");
    // Deleting the digest would have taken `keep` with it.
    assert_eq!(dst.api().tags("p/app"), vec!["gone", "keep"], "{run}");
    assert_image_copied(src.api(), dst.api(), &keep, "p/app", "keep");
    // A DELETE by tag may be tried (distribution answers it 400 DIGEST_INVALID); the digest
    // itself is never deleted.
    let deletes = manifest_deletes(&dst);
    assert!(
        deletes.iter().all(|r| !r.path.ends_with(&keep.digest) && !(200..300).contains(&r.status)),
        "a manifest was deleted: {deletes:?}\n{run}"
    );
}

#[test]
fn prune_dry_run_plans_exactly_the_deletions_and_sends_none() {
    let Pruned { src, dst, v2, .. } = synced_then_v2_deleted_at_the_source(false);
    // No `prune` key this time: `--prune` asks it for every rule.
    let job = job(&[&src, &dst], &[(&src.repo("p/app"), &[&dst.repo("p/app")])]);
    dst.clear_requests();
    let dry = job.run_within(60, &["--prune", "--dry-run"]);
    dry.assert_ok();
    // One `would prune REPO:TAG` line per tag (a totals line may follow).
    let planned = dry.lines_with(&["would prune", "/p/app:"]);
    assert_eq!(planned.len(), 1, "exactly one tag would be pruned:\n{dry}");
    assert!(planned[0].contains("p/app:v2"), "{dry}");
    assert!(dry.lines_with(&["pruned"]).is_empty(), "a dry run prunes nothing:\n{dry}");
    let deletes: Vec<Request> = dst.requests().into_iter().filter(|r| r.is_delete()).collect();
    assert!(deletes.is_empty(), "a dry run sends no DELETE: {deletes:?}\n{dry}");
    assert_eq!(dst.api().tags("p/app"), vec!["v1", "v2", "v3"]);
    assert_eq!(dst.api().head_manifest("p/app", "v2"), Some(v2.digest.clone()));

    // The real run deletes what was planned.
    let real = job.run_within(60, &["--prune"]);
    real.assert_ok();
    assert_eq!(dst.api().tags("p/app"), vec!["v1", "v3"], "{real}");
    assert_eq!(real.lines_with(&["pruned", "p/app:v2"]).len(), 1, "{real}");
}

#[test]
fn a_registry_refusing_deletion_is_reported_once() {
    let src = Registry::start();
    let dst = Registry::start_without_deletion();
    let img = push_simple(src.api(), "p/app", "v1");
    let old1 = push_simple(dst.api(), "p/app", "old1");
    let old2 = push_simple(dst.api(), "p/app", "old2");
    assert_eq!(dst.api().delete_manifest("p/app", &old1.digest), 405, "the registry refuses deletion");

    let job = job(&[&src, &dst], &[(&src.repo("p/app"), &[&dst.repo("p/app")])]);
    let run = job.run_within(60, &["--prune"]);
    run.assert_no_panic();
    let said = run.output().lines().filter(|l| l.to_lowercase().contains("deletion")).count();
    assert_eq!(said, 1, "one line about the refused deletion, for two tags:\n{run}");
    assert_eq!(dst.api().tags("p/app"), vec!["old1", "old2", "v1"], "{run}");
    assert_eq!(dst.api().head_manifest("p/app", "old2"), Some(old2.digest.clone()));
    assert_image_copied(src.api(), dst.api(), &img, "p/app", "v1");
}

#[test]
fn prune_of_a_digest_destination_is_an_input_error() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "p/app", "v1");
    let pinned = format!("{}@{}", src.repo("p/app"), img.digest);
    let job = rules_job(&[&src, &dst], &[(&pinned, json!({"to": dst.repo("p/app"), "prune": true}))]);
    src.clear_requests();
    let run = job.run_within(30, &[]);
    assert_eq!(run.code, Some(2), "{run}");
    run.assert_no_panic();
    assert!(run.stderr.contains(&pinned), "the error names the rule:\n{run}");
    assert!(src.requests().is_empty(), "no request before an input error:\n{run}");
}

/// A kept index protects the images it lists: `1.0-amd64` (an image a kept index `1.0` lists) is
/// not deleted under it, and a selection that produces no tag prunes nothing.
#[test]
fn prune_never_breaks_a_kept_index_nor_follows_an_empty_selection() {
    let src = Registry::start_with_deletion();
    let dst = Registry::start_with_deletion();
    let s = src.api();
    let idx = push_index(s, "p/multi", "1.0", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    let amd = idx.child("linux", "amd64", "").clone();
    tag_image(s, &amd, "1.0-amd64");
    let all = rules_job(&[&src, &dst], &[(&src.repo("p/multi"), json!(dst.repo("p/multi")))]);
    all.run_within(60, &[]).assert_ok();
    assert_eq!(dst.api().tags("p/multi"), vec!["1.0", "1.0-amd64"]);

    // The rule now leaves the per-arch tag out.
    let job = rules_job(
        &[&src, &dst],
        &[(&src.repo("p/multi"), json!({"to": dst.repo("p/multi"), "exclude": "-amd64$", "prune": true}))],
    );
    dst.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_eq!(dst.api().tags("p/multi"), vec!["1.0", "1.0-amd64"], "{run}");
    assert!(!run.lines_with(&["not prunable", "p/multi:1.0-amd64"]).is_empty(), "{run}");
    assert!(manifest_deletes(&dst).is_empty(), "a DELETE was sent: {:?}", manifest_deletes(&dst));
    assert_index_copied(s, dst.api(), &idx, "p/multi", "1.0");

    // A selection matching nothing: nothing is pruned, and the run says why.
    let none = rules_job(
        &[&src, &dst],
        &[(&src.repo("p/multi"), json!({"to": dst.repo("p/multi"), "semver": ">=99", "prune": true}))],
    );
    let run = none.run_within(60, &[]);
    run.assert_ok();
    assert_eq!(dst.api().tags("p/multi"), vec!["1.0", "1.0-amd64"], "{run}");
    assert!(!run.lines_with(&["not pruning", "no rule produced any tag"]).is_empty(), "{run}");
}
