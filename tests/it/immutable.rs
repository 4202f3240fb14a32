//! Immutable tags (issue 24, item 1): a tag the destination already lists, and that the rule
//! (`immutable: true` or a regex) or the flag (`--immutable`, `--immutable-tags REGEX`) takes
//! as immutable, is in sync without a manifest request on either side; the destination's tag
//! list is read once per repository. Other tags are compared as always, and `--force` and
//! `--verify` do not take the promise. Requests are counted from the registries' access logs.

use serde_json::json;

use crate::common::*;

/// The SemVer release tags of the tests below.
const RELEASES: &str = r"^v?\d+\.\d+\.\d+$";

/// The manifest requests (HEAD or GET, any reference) `reg` received.
fn manifest_requests(reg: &Registry) -> Vec<Request> {
    reg.requests().into_iter().filter(|r| r.path.contains("/manifests/")).collect()
}

/// The requests `reg` received for `repo`'s manifest under `tag`.
fn requests_for_tag(reg: &Registry, repo: &str, tag: &str) -> Vec<Request> {
    let at = format!("/v2/{repo}/manifests/{tag}");
    reg.requests().into_iter().filter(|r| r.path == at).collect()
}

/// The tag-list requests `reg` received for `repo`.
fn tag_lists(reg: &Registry, repo: &str) -> usize {
    let at = format!("/v2/{repo}/tags/list");
    reg.requests().into_iter().filter(|r| r.method == "GET" && r.path == at).count()
}

#[test]
fn a_no_op_over_immutable_tags_sends_no_manifest_request() {
    let src = Registry::start();
    let dst = Registry::start();
    let repos = ["imm/a", "imm/b"];
    let tags: Vec<String> = (0..8).map(|i| format!("1.0.{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    for repo in repos {
        push_under_tags(src.api(), repo, &tags);
    }
    let rules: Vec<(String, serde_json::Value)> =
        repos.iter().map(|r| (src.repo(r), json!({"to": dst.repo(r), "immutable": true}))).collect();
    let job = rules_job(&[&src, &dst], &rules);
    // A new repository: its tag list is a 404, no tag is listed, everything is copied.
    job.run_within(90, &[]).assert_ok();
    for repo in repos {
        assert_eq!(dst.api().tags(repo), tags, "{repo}");
    }

    src.clear_requests();
    dst.clear_requests();
    let run = job.run_within(60, &["--report", p(&job.dir.join("report.json"))]);
    run.assert_ok();
    let (at_src, at_dst) = (manifest_requests(&src), manifest_requests(&dst));
    assert!(at_src.is_empty() && at_dst.is_empty(), "manifest requests: {at_src:?} {at_dst:?}\n{run}");
    let referrers: Vec<Request> =
        src.requests().into_iter().chain(dst.requests()).filter(|r| r.path.contains("/referrers/")).collect();
    assert!(referrers.is_empty(), "referrers of immutable tags are not looked up: {referrers:?}");
    for repo in repos {
        assert_eq!((tag_lists(&src, repo), tag_lists(&dst, repo)), (1, 1), "{repo}\n{run}");
    }
    let others: Vec<Request> = src
        .requests()
        .into_iter()
        .chain(dst.requests())
        .filter(|r| r.path != "/v2/" && !r.path.ends_with("/tags/list"))
        .collect();
    assert!(others.is_empty(), "only the tag lists (and the API check): {others:?}");
    assert!(run.output().contains("0 unchanged, 16 unchanged (immutable)"), "{run}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["totals"]["images_immutable"], 16);
    let statuses: Vec<&str> =
        report["images"].as_array().unwrap().iter().filter_map(|i| i["status"].as_str()).collect();
    assert!(statuses.len() == 16 && statuses.iter().all(|s| *s == "unchanged_immutable"), "{statuses:?}");
}

/// `imm/app` synced with `1.0.0` and `latest`; then the source moves both tags to new images and
/// adds `1.1.0`. Returns the registries, the job and the old and new `1.0.0`.
fn moved_tags() -> (Registry, Registry, Job, Image, Image) {
    let src = Registry::start();
    let dst = Registry::start();
    let old = push_simple(src.api(), "imm/app", "1.0.0");
    push_simple(src.api(), "imm/app", "latest");
    let job = job(&[&src, &dst], &[(&src.repo("imm/app"), &[&dst.repo("imm/app")])]);
    job.run_within(60, &[]).assert_ok();
    let new = push_simple(src.api(), "imm/app", "1.0.0");
    push_simple(src.api(), "imm/app", "latest");
    push_simple(src.api(), "imm/app", "1.1.0");
    assert_ne!(old.digest, new.digest);
    src.clear_requests();
    dst.clear_requests();
    (src, dst, job, old, new)
}

#[test]
fn a_listed_release_stays_while_a_mutable_tag_is_updated_and_a_missing_one_copied() {
    let (src, dst, job, old, _) = moved_tags();
    let run = job.run_within(60, &["--immutable-tags", RELEASES]);
    run.assert_ok();
    // Before the checks below, which ask the registries themselves.
    for reg in [&src, &dst] {
        let asked = requests_for_tag(reg, "imm/app", "1.0.0");
        assert!(asked.is_empty(), "1.0.0 is immutable and listed: {asked:?}\n{run}");
    }
    assert_eq!(tag_lists(&dst, "imm/app"), 1, "{run}");
    let api = (src.api(), dst.api());
    // The contract: a release tag the destination lists is not followed when the source moves it.
    assert_eq!(api.1.head_manifest("imm/app", "1.0.0"), Some(old.digest.clone()), "{run}");
    // `latest` does not match the regex: compared and updated. `1.1.0` is not listed: copied.
    assert_eq!(api.1.head_manifest("imm/app", "latest"), api.0.head_manifest("imm/app", "latest"), "{run}");
    assert_eq!(api.1.head_manifest("imm/app", "1.1.0"), api.0.head_manifest("imm/app", "1.1.0"), "{run}");
    assert!(run.output().contains("2 image(s) synced, 0 unchanged, 1 unchanged (immutable)"), "{run}");
}

#[test]
fn verify_and_force_ignore_the_promise() {
    let (src, dst, _, old, new) = moved_tags();
    let rules = [(src.repo("imm/app"), json!({"to": dst.repo("imm/app"), "immutable": true}))];
    let job = rules_job(&[&src, &dst], &rules);
    // The audit compares every tag: the moved `1.0.0` is drift, not taken on trust.
    let run = job.run_within(60, &["--verify"]);
    run.assert_no_panic();
    assert!(!requests_for_tag(&dst, "imm/app", "1.0.0").is_empty(), "--verify reads 1.0.0\n{run}");
    assert!(run.output().contains("0 image(s) match their source"), "{run}");
    assert_eq!(dst.api().head_manifest("imm/app", "1.0.0"), Some(old.digest.clone()));
    let run = job.run_within(60, &["--force"]);
    run.assert_ok();
    assert_eq!(dst.api().head_manifest("imm/app", "1.0.0"), Some(new.digest), "--force copies\n{run}");
    assert!(!run.output().contains("(immutable)"), "{run}");
}

/// A layout destination lists its tags too: a re-run into `oci:DIR` asks the source for its tag
/// list only.
#[test]
fn a_layout_destination_lists_its_tags_too() {
    let src = Registry::start();
    push_under_tags(src.api(), "imm/l", &["1.0.0", "1.0.1", "1.0.2"]);
    let bundle = TestDir::new("layout");
    let layout = format!("oci:{}", p(&bundle.join("oci")));
    let job = rules_job(&[&src], &[(src.repo("imm/l"), json!({"to": layout, "immutable": RELEASES}))]);
    job.run_within(60, &[]).assert_ok();
    push_simple(src.api(), "imm/l", "1.0.0");
    src.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    let asked = manifest_requests(&src);
    assert!(asked.is_empty(), "manifest requests at the source: {asked:?}\n{run}");
    assert_eq!(tag_lists(&src, "imm/l"), 1, "{run}");
    assert!(run.output().contains("0 unchanged, 3 unchanged (immutable)"), "{run}");
}

/// The flags are checked before any request: one of the two, and a regex that compiles.
#[test]
fn the_flags_are_checked_before_any_request() {
    let job = Job::new(&[AuthEntry::insecure("127.0.0.1:9")], "127.0.0.1:9/imm/x: 127.0.0.1:9/imm/y\n");
    let run = job.run_within(30, &["--immutable", "--immutable-tags", "^v"]);
    run.assert_failed();
    assert!(run.output().contains("--immutable-tags"), "{run}");
    let run = job.run_within(30, &["--immutable-tags", "("]);
    run.assert_failed();
    assert!(run.output().contains("--immutable-tags: invalid regex"), "{run}");
}
