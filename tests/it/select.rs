//! Selecting what a rule copies (issue 12): a rule's value may be a map — `to` plus `semver`
//! (a version range), `exclude` (regexes), `latest: N` (`latest_by: semver | created`) — and a
//! source ending in `/*` is a whole namespace, listed from the registry's catalog and filtered by
//! `include_repos` / `exclude_repos`. The expected tag sets below are worked out by hand from the
//! rules in the README, never by re-implementing them.

use serde_json::json;

use crate::common::*;

/// The source tags of the selection tests (40): versions with and without a leading `v`, with
/// one or two parts only (`1.24` = 1.24.0, `v3` = 3.0.0), ties (`1.20` / `1.20.0`, `1.27` /
/// `1.27.0`, `v3` / `3.0.0`), pre-releases, and tags that are no version at all.
const TAGS: &[&str] = &[
    "0.9.0",
    "v0.9.1",
    "1.2.0",
    "1.18.0",
    "1.19.0",
    "1.19.1",
    "1.19.1-debug",
    "1.20",
    "1.20.0",
    "1.20.1",
    "1.21.0-rc.1",
    "1.21.0",
    "1.22.0",
    "1.22.3",
    "v1.23.0",
    "v1.23.1",
    "1.24",
    "1.25.0-beta.1",
    "1.25.0",
    "1.26.0-debug",
    "1.26.0",
    "1.27",
    "1.27.0",
    "2.0.0",
    "2.0.1-rc.1",
    "2.1.0",
    "v2.2.0",
    "3.0.0-debug",
    "3.0.0",
    "v3",
    "3.1",
    "4.0.0-rc.1",
    // Not versions:
    "latest",
    "stable",
    "edge",
    "nightly",
    "main",
    "dev-1.2.3",
    "1.2.3.4",
    "1.2.x",
];

/// One small image under every tag of [`TAGS`] in `repo`.
fn seed_tags(src: &Registry, repo: &str) -> Image {
    assert_eq!(TAGS.len(), 40);
    push_under_tags(src.api(), repo, TAGS)
}

/// The destination repository holds exactly `want` (in any order), each with `img`'s digest.
fn assert_selected_tags(dst: &Registry, repo: &str, want: &[&str], img: &Image, run: &Run) {
    let mut want: Vec<String> = want.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(dst.api().tags(repo), want, "tags of {repo} at the destination:\n{run}");
    for tag in &want {
        assert_eq!(dst.api().head_manifest(repo, tag), Some(img.digest.clone()), "{repo}:{tag}");
    }
}

/// Some line of the output says `N of TOTAL tags selected` with exactly these numbers.
fn assert_selected_count(run: &Run, selected: usize, total: usize) {
    let needle = format!(" of {total} tags selected");
    let found = run.output().lines().any(|l| {
        l.find(&needle).is_some_and(|i| l[..i].split_whitespace().last() == Some(selected.to_string().as_str()))
    });
    assert!(found, "no line says \"{selected} of {total} tags selected\":\n{run}");
}

#[test]
fn semver_range_keeps_matching_versions_without_pre_releases() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = seed_tags(&src, "sel/app");
    let job = rules_job(
        &[&src, &dst],
        &[(&src.repo("sel/app"), json!({"to": dst.repo("sel/range"), "semver": ">=1.20, <2"}))],
    );
    let run = job.run_within(90, &[]);
    run.assert_ok();
    // `1.21.0-rc.1`, `1.25.0-beta.1` and `1.26.0-debug` are in the range's span but are
    // pre-releases, which no comparator of the range names.
    let want = [
        "1.20", "1.20.0", "1.20.1", "1.21.0", "1.22.0", "1.22.3", "v1.23.0", "v1.23.1", "1.24", "1.25.0", "1.26.0",
        "1.27", "1.27.0",
    ];
    assert_selected_tags(&dst, "sel/range", &want, &img, &run);
    assert_selected_count(&run, 13, 40);
}

#[test]
fn latest_keeps_the_highest_versions() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = seed_tags(&src, "sel/app");
    let job = rules_job(&[&src, &dst], &[(&src.repo("sel/app"), json!({"to": dst.repo("sel/latest"), "latest": 5}))]);
    let run = job.run_within(90, &[]);
    run.assert_ok();
    // Semver order: 4.0.0-rc.1 > 3.1.0 > 3.0.0 (`v3` and `3.0.0`) > 3.0.0-debug. `latest`,
    // `stable`, … are no versions and never kept by `latest`.
    let want = ["4.0.0-rc.1", "3.1", "v3", "3.0.0", "3.0.0-debug"];
    assert_selected_tags(&dst, "sel/latest", &want, &img, &run);
    assert_selected_count(&run, 5, 40);
}

#[test]
fn exclude_alone_drops_matching_tags_and_keeps_everything_else() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = seed_tags(&src, "sel/app");
    let job = rules_job(
        &[&src, &dst],
        &[(&src.repo("sel/app"), json!({"to": dst.repo("sel/excl"), "exclude": ["-rc", "-debug$", "^v"]}))],
    );
    let run = job.run_within(90, &[]);
    run.assert_ok();
    // Gone: the three `-rc` tags, the three `-debug` tags and the five `v…` tags. Kept: every
    // other tag, versions or not (`1.25.0-beta.1` matches none of the regexes).
    let want = [
        "0.9.0",
        "1.2.0",
        "1.18.0",
        "1.19.0",
        "1.19.1",
        "1.20",
        "1.20.0",
        "1.20.1",
        "1.21.0",
        "1.22.0",
        "1.22.3",
        "1.24",
        "1.25.0-beta.1",
        "1.25.0",
        "1.26.0",
        "1.27",
        "1.27.0",
        "2.0.0",
        "2.1.0",
        "3.0.0",
        "3.1",
        "latest",
        "stable",
        "edge",
        "nightly",
        "main",
        "dev-1.2.3",
        "1.2.3.4",
        "1.2.x",
    ];
    assert_selected_tags(&dst, "sel/excl", &want, &img, &run);
    assert_selected_count(&run, 29, 40);
}

#[test]
fn range_exclude_and_latest_combine_with_exclusion_before_latest() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = seed_tags(&src, "sel/app");
    let job = rules_job(
        &[&src, &dst],
        &[(
            &src.repo("sel/app"),
            json!({"to": dst.repo("sel/combo"), "semver": ">=1.19", "exclude": ["-debug", "^v"], "latest": 4}),
        )],
    );
    let run = job.run_within(90, &[]);
    run.assert_ok();
    // In the range: 1.19.0 … 3.1 without pre-releases. The excludes drop `v3`, `v2.2.0` and
    // `v1.23.*` before `latest` counts, so the 4 highest left are these (excluding after
    // `latest` would leave only `3.1` and `3.0.0`).
    let want = ["3.1", "3.0.0", "2.1.0", "2.0.0"];
    assert_selected_tags(&dst, "sel/combo", &want, &img, &run);
    assert_selected_count(&run, 4, 40);
}

#[test]
fn tilde_caret_pre_release_ranges_and_ties_in_one_json_images_file() {
    let src = Registry::start();
    let dst = Registry::start();
    // A source repository per rule: an images file cannot name the same source twice.
    let imgs: Vec<Image> = (1..=7).map(|i| seed_tags(&src, &format!("sel/e{i}"))).collect();
    let srcs: Vec<String> = (1..=7).map(|i| src.repo(&format!("sel/e{i}"))).collect();
    let to = |i: usize| dst.repo(&format!("sel/out{i}"));
    let rules = [
        (&srcs[0][..], json!({"to": to(1), "semver": "~1.22"})),
        (&srcs[1][..], json!({"to": to(2), "semver": "^2"})),
        (&srcs[2][..], json!({"to": to(3), "semver": "~1.27", "latest": 1})),
        (&srcs[3][..], json!({"to": [to(4)], "latest": 3, "latest_by": "semver"})),
        (&srcs[4][..], json!({"to": to(5), "semver": ">=1.21.0-rc.1, <1.22"})),
        (&srcs[5][..], json!({"to": to(6), "semver": "^0.9"})),
        (&srcs[6][..], json!({"to": to(7), "semver": "~1.2"})),
    ];
    let job = Job::with_images_file(&auth_for(&[&src, &dst]), "images.json", &images_json_values(&rules));
    let run = job.run(&[]);
    run.assert_ok();
    // ~1.22 = >=1.22.0, <1.23.0.
    assert_selected_tags(&dst, "sel/out1", &["1.22.0", "1.22.3"], &imgs[0], &run);
    // ^2 = >=2.0.0, <3.0.0; `2.0.1-rc.1` is a pre-release no comparator names.
    assert_selected_tags(&dst, "sel/out2", &["2.0.0", "2.1.0", "v2.2.0"], &imgs[1], &run);
    // `1.27` and `1.27.0` are the same version: the greater string wins the one place.
    assert_selected_tags(&dst, "sel/out3", &["1.27.0"], &imgs[2], &run);
    // 4.0.0-rc.1, 3.1.0, then the tie at 3.0.0: "v3" > "3.0.0" as strings.
    assert_selected_tags(&dst, "sel/out4", &["4.0.0-rc.1", "3.1", "v3"], &imgs[3], &run);
    // A comparator naming a pre-release of 1.21.0 lets that pre-release in (only that one's
    // MAJOR.MINOR.PATCH: not `1.25.0-beta.1`).
    assert_selected_tags(&dst, "sel/out5", &["1.21.0-rc.1", "1.21.0"], &imgs[4], &run);
    // ^0.9 = >=0.9.0, <0.10.0, `v0.9.1` included.
    assert_selected_tags(&dst, "sel/out6", &["0.9.0", "v0.9.1"], &imgs[5], &run);
    // `1.2.3.4`, `1.2.x` and `dev-1.2.3` are no versions: only `1.2.0` is in ~1.2.
    assert_selected_tags(&dst, "sel/out7", &["1.2.0"], &imgs[6], &run);
}

#[test]
fn latest_by_created_orders_by_the_config_time_and_takes_non_versions_too() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let b = push_image_created(s, "sel/created", Some("b"), "2024-01-01T00:00:00Z");
    let v100 = push_image_created(s, "sel/created", Some("1.0.0"), "2024-02-01T00:00:00Z");
    let a = push_image_created(s, "sel/created", Some("a"), "2024-03-01T08:30:00.123456789Z");
    let latest = push_image_created(s, "sel/created", Some("latest"), "2024-04-01T00:00:00Z");
    // An index is as new as its first child's config: the newest of all here, though its
    // second child is the oldest.
    let newest = push_image_created(s, "sel/created", None, "2024-05-01T00:00:00Z");
    let oldest = push_image_created(s, "sel/created", None, "2020-01-01T00:00:00Z");
    let multi = push_list_of(s, "sel/created", "multi", &[&newest, &oldest]);
    let job = rules_job(
        &[&src, &dst],
        &[(&src.repo("sel/created"), json!({"to": dst.repo("sel/created"), "latest": 2, "latest_by": "created"}))],
    );
    let run = job.run_within(60, &[]);
    run.assert_ok();
    // By semver only `1.0.0` would be a candidate; by creation time `multi` and `latest` are
    // the two newest.
    assert_eq!(dst.api().tags("sel/created"), vec!["latest", "multi"], "{run}");
    assert_manifest_copied(s, dst.api(), &multi, "sel/created", "multi");
    assert_image_copied(s, dst.api(), &latest, "sel/created", "latest");
    for img in [&b, &v100, &a] {
        assert!(dst.api().head_manifest("sel/created", &img.digest).is_none(), "{} was copied:\n{run}", img.digest);
    }
    assert_selected_count(&run, 2, 5);
}

#[test]
fn regex_selector_then_latest() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = seed_tags(&src, "sel/app");
    let rule = format!("{}:/^v/", src.repo("sel/app"));
    let job = rules_job(&[&src, &dst], &[(&rule, json!({"to": dst.repo("sel/v"), "latest": 2}))]);
    let run = job.run_within(60, &[]);
    run.assert_ok();
    // The regex leaves v0.9.1, v1.23.0, v1.23.1, v2.2.0 and v3; the two highest of those.
    assert_selected_tags(&dst, "sel/v", &["v3", "v2.2.0"], &img, &run);
}

/// Runs `images` (YAML) and expects exit code 2 before any request, with an error naming
/// `source` and every one of `words`.
fn assert_input_error(src: &Registry, dst: &Registry, images: &str, source: &str, words: &[&str]) {
    let job = Job::new(&auth_for(&[src, dst]), images);
    src.clear_requests();
    dst.clear_requests();
    let run = job.run_within(30, &[]);
    assert_eq!(run.code, Some(2), "exit code 2 for:\n{images}\n{run}");
    run.assert_no_panic();
    assert!(run.stderr.contains(source), "the error names the rule {source:?}:\n{images}\n{run}");
    for w in words {
        assert!(run.stderr.contains(w), "the error says {w:?}:\n{images}\n{run}");
    }
    let sent: Vec<Request> = src.requests().into_iter().chain(dst.requests()).collect();
    assert!(sent.is_empty(), "requests were sent before the input error: {sent:?}\n{run}");
}

#[test]
fn unknown_key_and_selection_without_a_tag_listing_are_input_errors() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "sel/app", "1.20.0");
    let source = src.repo("sel/app");
    let to = dst.repo("sel/app");

    // A misspelt key, in YAML's block style: the rule and the key are named.
    let images = format!("\"{source}\":\n  to: \"{to}\"\n  lastest: 3\n");
    assert_input_error(&src, &dst, &images, &source, &["lastest"]);

    // `to` is required.
    let images = images_yaml_values(&[(&source, json!({"semver": ">=1"}))]);
    assert_input_error(&src, &dst, &images, &source, &[]);

    // semver / exclude / latest need a listing of the tags: not an explicit list, not a digest.
    let listed = src.repo("sel/app:1.20.0,1.21.0");
    let images = images_yaml_values(&[(&listed, json!({"to": to, "semver": ">=1.20"}))]);
    assert_input_error(&src, &dst, &images, &listed, &[]);
    let images = images_yaml_values(&[(&listed, json!({"to": to, "exclude": "-rc"}))]);
    assert_input_error(&src, &dst, &images, &listed, &[]);
    let pinned = format!("{source}@{}", img.digest);
    let images = images_yaml_values(&[(&pinned, json!({"to": to, "latest": 1}))]);
    assert_input_error(&src, &dst, &images, &pinned, &[]);
}

/// The namespace fixtures: `(repository, tag, image)` at the source. `teamx/app` must not be
/// taken for a repository of `team/*`.
fn seed_namespaces(src: &Registry) -> Vec<(String, String, Image)> {
    let s = src.api();
    let mut out = Vec::new();
    for (repo, tags) in [
        ("team/app-1", &["v1", "v2"][..]),
        ("team/app-2", &["v1"]),
        ("team/app-old", &["v1"]),
        ("team/sub/app-3", &["v1"]),
        ("other/app-9", &["v1"]),
        ("teamx/app", &["v1"]),
    ] {
        for tag in tags {
            out.push((repo.to_string(), tag.to_string(), push_simple(s, repo, tag)));
        }
    }
    out
}

/// The destination's catalog is exactly `want`, and each of those repositories holds the tags
/// of its source repository (`to_source` maps a destination repository to its source), copied.
fn assert_namespace_copied(
    src: &Registry,
    dst: &Registry,
    seeded: &[(String, String, Image)],
    want: &[&str],
    to_source: impl Fn(&str) -> String,
    run: &Run,
) {
    let mut want: Vec<String> = want.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(dst.api().catalog(), want, "the destination's repositories:\n{run}");
    for repo in &want {
        let source = to_source(repo);
        let mut tags: Vec<String> = seeded.iter().filter(|(r, _, _)| *r == source).map(|(_, t, _)| t.clone()).collect();
        tags.sort();
        assert!(!tags.is_empty(), "{repo} has no source repository {source}");
        assert_eq!(dst.api().tags(repo), tags, "tags of {repo} (from {source}):\n{run}");
        for (_, tag, img) in seeded.iter().filter(|(r, _, _)| *r == source) {
            assert_image_copied(src.api(), dst.api(), img, repo, tag);
        }
    }
}

#[test]
fn namespace_rule_copies_every_repository_below_it_with_filters() {
    let src = Registry::start();
    let seeded = seed_namespaces(&src);
    let below = |repo: &str| format!("team/{}", repo.strip_prefix("mirror/").expect("under mirror/"));

    // Every repository under team/, nested ones too; not teamx/app.
    let dst = Registry::start();
    let job = rules_job(&[&src, &dst], &[(&src.repo("team/*"), json!({"to": dst.repo("mirror")}))]);
    let run = job.run_within(90, &[]);
    run.assert_ok();
    let all = ["mirror/app-1", "mirror/app-2", "mirror/app-old", "mirror/sub/app-3"];
    assert_namespace_copied(&src, &dst, &seeded, &all, below, &run);

    // include_repos / exclude_repos match the path below the namespace: `sub/app-3` does not
    // start with `app-`, `app-old` ends with `-old`.
    let dst = Registry::start();
    let job = rules_job(
        &[&src, &dst],
        &[(
            &src.repo("team/*"),
            json!({"to": dst.repo("mirror"), "include_repos": ["^app-"], "exclude_repos": ["-old$"]}),
        )],
    );
    let run = job.run_within(90, &[]);
    run.assert_ok();
    assert_namespace_copied(&src, &dst, &seeded, &["mirror/app-1", "mirror/app-2"], below, &run);
}

#[test]
fn registry_root_rule_follows_a_paginated_catalog() {
    let src = Registry::start();
    let dst = Registry::start();
    let seeded = seed_namespaces(&src);
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { catalog_page_size: 2, ..ProxyOpts::default() });
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let job = Job::new(&auth, &images_yaml_values(&[(&proxy.repo("*"), json!({"to": dst.repo("all")}))]));
    let run = job.run_within(90, &[]);
    run.assert_ok();
    let want = [
        "all/other/app-9",
        "all/team/app-1",
        "all/team/app-2",
        "all/team/app-old",
        "all/team/sub/app-3",
        "all/teamx/app",
    ];
    let below = |repo: &str| repo.strip_prefix("all/").expect("under all/").to_string();
    assert_namespace_copied(&src, &dst, &seeded, &want, below, &run);
    // Six repositories, at most two a page: three pages at least.
    assert!(proxy.catalog_requests() >= 3, "{} catalog requests:\n{run}", proxy.catalog_requests());
}

#[test]
fn a_refused_catalog_fails_its_rule_and_the_other_rules_still_sync() {
    let src = Registry::start();
    let dst = Registry::start();
    let seeded = seed_namespaces(&src);
    let proxy = Proxy::start(&src.addr());
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let plain_source = proxy.repo("other/app-9:v1");
    for status in [401, 403, 404] {
        proxy.set_faults(vec![FaultRule::always(Match::Catalog, Fault::Status(status))]);
        let plain = format!("plain{status}/app-9");
        let job = Job::new(
            &auth,
            &images_yaml_values(&[
                (&proxy.repo("team/*"), json!({"to": dst.repo(&format!("mirror{status}"))})),
                (&plain_source, json!(dst.repo(&plain))),
            ]),
        );
        let run = job.run_within(60, &[]);
        assert_eq!(run.code, Some(1), "a refused catalog ({status}) fails the run:\n{run}");
        run.assert_no_panic();
        let named = run.output().lines().any(|l| l.contains(&proxy.addr()) && l.to_lowercase().contains("catalog"));
        assert!(named, "no line names {} and the catalog ({status}):\n{run}", proxy.addr());
        // The other rule synced; nothing of the namespace did.
        let img = &seeded.iter().find(|(r, t, _)| r == "other/app-9" && t == "v1").unwrap().2;
        assert_image_copied(src.api(), dst.api(), img, &plain, "v1");
        let repos = dst.api().catalog();
        assert!(
            repos.iter().all(|r| !r.starts_with(&format!("mirror{status}/"))),
            "namespace repositories were copied: {repos:?}\n{run}"
        );
    }
}
