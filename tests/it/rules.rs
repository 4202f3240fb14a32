//! Images-file rules: all tags, tag lists, digests, regexes, renames, lists of destinations,
//! `${VAR}` expansion, nested namespaces and paginated tag lists.

use crate::common::*;

#[test]
fn all_tags_when_source_has_no_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let v1 = push_simple(s, "lib/app", "v1");
    tag_image(s, &v1, "latest");
    let v2 = push_image(s, "lib/app", "v2", ImageKind::Oci, "linux", "amd64", "");
    let multi = push_index(s, "lib/app", "multi", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm64", "")]);

    let job = job(&[&src, &dst], &[(&src.repo("lib/app"), &[&dst.repo("mirror/app")])]);
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("mirror/app"), vec!["latest", "multi", "v1", "v2"]);
    assert_image_copied(s, dst.api(), &v1, "mirror/app", "v1");
    assert_image_copied(s, dst.api(), &v1, "mirror/app", "latest");
    assert_image_copied(s, dst.api(), &v2, "mirror/app", "v2");
    assert_index_copied(s, dst.api(), &multi, "mirror/app", "multi");
}

#[test]
fn tag_list_copies_only_listed_tags() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let a = push_simple(s, "team/svc", "a");
    push_simple(s, "team/svc", "b");
    let c = push_image(s, "team/svc", "c", ImageKind::Oci, "linux", "amd64", "");

    let job = job(&[&src, &dst], &[(&src.repo("team/svc:a,c"), &[&dst.repo("team/svc")])]);
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("team/svc"), vec!["a", "c"]);
    assert_image_copied(s, dst.api(), &a, "team/svc", "a");
    assert_image_copied(s, dst.api(), &c, "team/svc", "c");
}

#[test]
fn single_tag_keeps_its_name_when_destination_has_no_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "one/repo", "1.2.3");
    push_simple(src.api(), "one/repo", "other");

    let job = job(&[&src, &dst], &[(&src.repo("one/repo:1.2.3"), &[&dst.repo("two/repo")])]);
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("two/repo"), vec!["1.2.3"]);
    assert_image_copied(src.api(), dst.api(), &img, "two/repo", "1.2.3");
}

#[test]
fn digest_source_is_pushed_by_digest_or_under_a_given_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let img = push_simple(s, "pin/img", "moving");
    let idx =
        push_index(s, "pin/idx", "moving", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    // The tag moves away from the pinned digests: the digest rules must not follow it.
    push_simple(s, "pin/img", "moving");
    push_index(s, "pin/idx", "moving", IndexKind::OciIndex, &[("linux", "amd64", "")]);

    let img_src = format!("{}@{}", src.repo("pin/img"), img.digest);
    let idx_src = format!("{}@{}", src.repo("pin/idx"), idx.digest);
    let pinned = dst.repo("pinned/img:stable");
    let job = job(
        &[&src, &dst],
        &[(&img_src, &[&dst.repo("bydigest/img"), &pinned]), (&idx_src, &[&dst.repo("bydigest/idx")])],
    );
    job.run(&[]).assert_ok();

    // Without a destination tag: pushed by digest, no tag created.
    assert_image_copied(s, dst.api(), &img, "bydigest/img", &img.digest);
    assert!(dst.api().tags("bydigest/img").is_empty());
    assert_index_copied(s, dst.api(), &idx, "bydigest/idx", &idx.digest);
    assert!(dst.api().tags("bydigest/idx").is_empty());
    // With a destination tag: tagged.
    assert_image_copied(s, dst.api(), &img, "pinned/img", "stable");
    assert_eq!(dst.api().tags("pinned/img"), vec!["stable"]);
}

#[test]
fn tag_and_digest_source_pulls_the_digest_and_keeps_the_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let old = push_simple(s, "pin/app", "v1");
    // The tag moves on; the rule pins the old digest under the tag's name.
    let new = push_simple(s, "pin/app", "v1");
    assert_ne!(old.digest, new.digest);

    let pinned = format!("{}:v1@{}", src.repo("pin/app"), old.digest);
    let job = job(&[&src, &dst], &[(&pinned, &[&dst.repo("pin/app"), &dst.repo("renamed/app:stable")])]);
    src.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_image_copied(s, dst.api(), &old, "pin/app", "v1");
    assert_eq!(dst.api().tags("pin/app"), vec!["v1"]);
    assert_image_copied(s, dst.api(), &old, "renamed/app", "stable");
    // The source tag was never looked up: the digest was.
    let tag_reads = src.requests().into_iter().filter(|r| r.path.ends_with("/manifests/v1")).count();
    assert_eq!(tag_reads, 0, "the pinned rule read the moving tag:\n{run}");

    // A destination cannot pin.
    let dst_pinned = format!("{}:v1@{}", dst.repo("x/app"), old.digest);
    let bad = Job::new(&auth_for(&[&src, &dst]), &images_yaml(&[(&src.repo("pin/app:v1"), &[&dst_pinned])]));
    let run = bad.run_within(30, &[]);
    run.assert_failed();
    assert!(run.stderr.contains("not both"), "{run}");
}

#[test]
fn regex_selects_matching_tags() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let v10 = push_simple(s, "rx/app", "v1.0");
    let v11 = push_simple(s, "rx/app", "v1.1");
    for t in ["v2.0", "latest", "xv1.0", "v10"] {
        push_simple(s, "rx/app", t);
    }

    let rule = format!("{}:/^v1\\./", src.repo("rx/app"));
    let job = job(&[&src, &dst], &[(&rule, &[&dst.repo("rx/app")])]);
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("rx/app"), vec!["v1.0", "v1.1"]);
    assert_image_copied(s, dst.api(), &v10, "rx/app", "v1.0");
    assert_image_copied(s, dst.api(), &v11, "rx/app", "v1.1");
}

#[test]
fn destination_tags_rename_source_tags_left_to_right() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let a = push_simple(s, "rn/src", "a");
    let b = push_image(s, "rn/src", "b", ImageKind::Oci, "linux", "amd64", "");
    let one = push_simple(s, "rn/one", "orig");

    let job = job(
        &[&src, &dst],
        &[
            (&src.repo("rn/src:a,b"), &[&dst.repo("rn/dst:x,y")]),
            (&src.repo("rn/one:orig"), &[&dst.repo("rn/renamed:stable")]),
        ],
    );
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("rn/dst"), vec!["x", "y"]);
    assert_image_copied(s, dst.api(), &a, "rn/dst", "x");
    assert_image_copied(s, dst.api(), &b, "rn/dst", "y");
    assert_eq!(dst.api().tags("rn/renamed"), vec!["stable"]);
    assert_image_copied(s, dst.api(), &one, "rn/renamed", "stable");
}

#[test]
fn list_of_destinations_across_registries() {
    let src = Registry::start();
    let dst1 = Registry::start();
    let dst2 = Registry::start();
    let s = src.api();
    let img = push_simple(s, "fan/out", "v1");
    let idx = push_index(s, "fan/list", "v1", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm", "v7")]);

    let job = job(
        &[&src, &dst1, &dst2],
        &[
            (&src.repo("fan/out:v1"), &[&dst1.repo("a/out"), &dst2.repo("b/out:v9"), &dst1.repo("c/out:renamed")]),
            (&src.repo("fan/list:v1"), &[&dst1.repo("fan/list"), &dst2.repo("fan/list")]),
        ],
    );
    src.clear_requests();
    job.run_within(60, &[]).assert_ok();

    // Read once, written many times: each source manifest is fetched once (the image, the
    // list and its two children), though five destinations got them.
    let manifest_gets =
        src.requests().into_iter().filter(|r| r.method == "GET" && r.path.contains("/manifests/")).count();
    assert_eq!(manifest_gets, 4, "source manifest GETs");
    assert_image_copied(s, dst1.api(), &img, "a/out", "v1");
    assert_image_copied(s, dst2.api(), &img, "b/out", "v9");
    assert_image_copied(s, dst1.api(), &img, "c/out", "renamed");
    assert_eq!(dst2.api().tags("b/out"), vec!["v9"]);
    assert_index_copied(s, dst1.api(), &idx, "fan/list", "v1");
    assert_index_copied(s, dst2.api(), &idx, "fan/list", "v1");
}

#[test]
fn environment_variables_expand_in_destinations() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "env/src", "v1");

    let job = job(
        &[&src, &dst],
        &[(&src.repo("env/src:v1"), &["${IMGSYNC_TEST_DST_REGISTRY}/${IMGSYNC_TEST_NS}/app:${IMGSYNC_TEST_TAG}"])],
    );
    let addr = dst.addr();
    run_syncer_env(
        &job.args(&[]),
        &[("IMGSYNC_TEST_DST_REGISTRY", &addr), ("IMGSYNC_TEST_NS", "from-env"), ("IMGSYNC_TEST_TAG", "expanded")],
    )
    .assert_ok();

    assert_eq!(dst.api().tags("from-env/app"), vec!["expanded"]);
    assert_image_copied(src.api(), dst.api(), &img, "from-env/app", "expanded");
}

#[test]
fn nested_namespaces() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let img = push_image(s, "a/b/c/repo", "v1", ImageKind::Oci, "linux", "amd64", "");
    let idx = push_index(s, "a/b/c/repo", "multi", IndexKind::List, &[("linux", "amd64", ""), ("linux", "s390x", "")]);

    let job = job(&[&src, &dst], &[(&src.repo("a/b/c/repo"), &[&dst.repo("x/y/z/w/repo")])]);
    job.run(&[]).assert_ok();

    assert_eq!(dst.api().tags("x/y/z/w/repo"), vec!["multi", "v1"]);
    assert_image_copied(s, dst.api(), &img, "x/y/z/w/repo", "v1");
    assert_index_copied(s, dst.api(), &idx, "x/y/z/w/repo", "multi");
}

#[test]
fn tag_list_longer_than_one_page_through_paging_proxy() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let mut images = Vec::new();
    for i in 0..7 {
        let tag = format!("t{i:02}");
        images.push((tag.clone(), push_simple(s, "paged/repo", &tag)));
    }
    let base = &images[0].1;
    for extra in ["alias-a", "alias-b"] {
        tag_image(s, base, extra);
    }
    let proxy = Proxy::paging(&src.addr(), 2);

    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let job = Job::new(&auth, &images_yaml(&[(&proxy.repo("paged/repo"), &[&dst.repo("paged/copy")])]));
    job.run(&[]).assert_ok();

    let mut want: Vec<String> = images.iter().map(|(t, _)| t.clone()).collect();
    want.extend(["alias-a".to_string(), "alias-b".to_string()]);
    want.sort();
    assert_eq!(dst.api().tags("paged/copy"), want);
    for (tag, img) in &images {
        assert_eq!(dst.api().head_manifest("paged/copy", tag), Some(img.digest.clone()), "tag {tag}");
    }
    assert_image_copied(s, dst.api(), base, "paged/copy", "alias-b");
    // 9 tags, at most 2 per page: at least 5 pages were requested.
    assert!(
        proxy.tag_list_requests() >= 5,
        "only {} tag-list requests: {:?}",
        proxy.tag_list_requests(),
        proxy.requests()
    );
}

#[test]
fn regex_through_paging_proxy_sees_every_page() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    for t in ["a1", "a2", "b1", "b2", "c1", "c2"] {
        push_simple(s, "paged/rx", t);
    }
    let proxy = Proxy::paging(&src.addr(), 2);
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let rule = format!("{}:/2$/", proxy.repo("paged/rx"));
    let job = Job::new(&auth, &images_yaml(&[(&rule, &[&dst.repo("paged/rx")])]));
    job.run(&[]).assert_ok();
    assert_eq!(dst.api().tags("paged/rx"), vec!["a2", "b2", "c2"]);
}
