//! `--shard INDEX/COUNT`: shards of one rules file are disjoint, together cover every image, split
//! the same way on every invocation, and follow a Kubernetes Indexed Job's environment.

use std::collections::BTreeSet;

use crate::common::*;

/// The destination repositories a run pushed manifests to (from the registry's access log),
/// and the source repositories it listed tags of.
fn touched(src: &Registry, dst: &Registry) -> (BTreeSet<String>, BTreeSet<String>) {
    let pushed = dst
        .requests()
        .into_iter()
        .filter(|r| r.is_manifest_put())
        .map(|r| r.path.trim_start_matches("/v2/").split("/manifests/").next().unwrap().to_string())
        .collect();
    let listed = src
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/tags/list"))
        .map(|r| r.path.trim_start_matches("/v2/").trim_end_matches("/tags/list").to_string())
        .collect();
    (pushed, listed)
}

fn run_clean(src: &Registry, dst: &Registry, job: &Job, extra: &[&str], env: &[(&str, &str)]) -> BTreeSet<String> {
    src.clear_requests();
    dst.clear_requests();
    let mut args = job.args(extra);
    args.push("--force");
    Running::spawn(&args, env).wait(RUN_LIMIT).assert_ok();
    let (pushed, listed) = touched(src, dst);
    let listed: BTreeSet<String> = listed.iter().map(|s| format!("copy/{}", s.trim_start_matches("src/"))).collect();
    assert_eq!(listed, pushed, "a shard lists only the sources of its own rules");
    pushed
}

#[test]
fn shards_are_disjoint_cover_everything_and_are_stable() {
    let src = Registry::start();
    let dst = Registry::start();
    let names: Vec<String> = (0..12).map(|i| format!("app{i:02}")).collect();
    let mut imgs = Vec::new();
    for n in &names {
        imgs.push((n.clone(), push_simple(src.api(), &format!("src/{n}"), "v1")));
    }
    let rules: Vec<(String, String)> =
        names.iter().map(|n| (src.repo(&format!("src/{n}")), dst.repo(&format!("copy/{n}")))).collect();
    let job = Job::new(&auth_for(&[&src, &dst]), &images_yaml_values(&rules));

    let shards: Vec<BTreeSet<String>> =
        (0..3).map(|i| run_clean(&src, &dst, &job, &["--shard", &format!("{i}/3")], &[])).collect();
    let all: BTreeSet<String> = names.iter().map(|n| format!("copy/{n}")).collect();
    let union: BTreeSet<String> = shards.iter().flatten().cloned().collect();
    assert_eq!(union, all, "together the shards sync every image");
    assert_eq!(shards.iter().map(BTreeSet::len).sum::<usize>(), all.len(), "no image in two shards: {shards:?}");
    assert!(shards.iter().filter(|s| !s.is_empty()).count() >= 2, "the work is split: {shards:?}");
    for (n, img) in &imgs {
        assert_image_copied(src.api(), dst.api(), img, &format!("copy/{n}"), "v1");
    }

    // The same split on every invocation, and from an Indexed Job's environment.
    assert_eq!(run_clean(&src, &dst, &job, &["--shard", "1/3"], &[]), shards[1]);
    let env = [("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "3")];
    assert_eq!(run_clean(&src, &dst, &job, &[], &env), shards[2]);
}

#[test]
fn bad_shard_is_a_usage_error() {
    let src = Registry::start();
    let job = job(&[&src], &[(&src.repo("a/b"), &[&src.repo("c/d")])]);
    let run = job.run_within(60, &["--shard", "3/3"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.output().contains("--shard \"3/3\""), "{run}");
}
