//! `image-syncer copy SRC DST`: one image or repository, the same selectors and flags as a rule,
//! no images file.

use crate::common::*;

/// `copy SRC DST` with `--auth` for both registries, flags placed before and after the command.
fn copy(src: &Registry, dst: &Registry, from: &str, to: &str, extra: &[&str]) -> Run {
    let dir = TestDir::new("copy");
    let auth = dir.write("auth.yaml", &auth_yaml(&auth_for(&[src, dst])));
    let (from, to) = (src.repo(from), dst.repo(to));
    let mut args = vec!["--auth", p(&auth), "copy", &from];
    args.extend_from_slice(extra);
    args.push(&to);
    run_syncer_within(&args, std::time::Duration::from_secs(60))
}

#[test]
fn copy_an_image_a_repository_by_digest_and_renamed() {
    let src = Registry::start();
    let dst = Registry::start();
    let a = push_simple(src.api(), "one/app", "v1");
    let b = push_simple(src.api(), "one/app", "v2");

    copy(&src, &dst, "one/app:v1", "single/app", &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &a, "single/app", "v1");
    assert_eq!(dst.api().tags("single/app"), vec!["v1"], "only the tag asked for");

    copy(&src, &dst, "one/app", "whole/app", &["--proc", "2"]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &a, "whole/app", "v1");
    assert_image_copied(src.api(), dst.api(), &b, "whole/app", "v2");

    copy(&src, &dst, &format!("one/app@{}", b.digest), &format!("pinned/app@{}", b.digest), &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &b, "pinned/app", &b.digest);

    copy(&src, &dst, "one/app:v2", "renamed/app:stable", &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &b, "renamed/app", "stable");
}

#[test]
fn copy_with_a_platform_filter() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(
        src.api(),
        "multi/app",
        "v1",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    copy(&src, &dst, "multi/app:v1", "arm/app", &["--arch", "arm64"]).assert_ok();
    let m = dst.api().get_manifest("arm/app", "v1").expect("the filtered index");
    let children = index_entries(&m.bytes);
    assert_eq!(children.len(), 1, "only arm64 kept: {children:?}");
    let arm = idx.child("linux", "arm64", "v8");
    assert_eq!(children[0].0, arm.digest);
    assert_image_copied(src.api(), dst.api(), arm, "arm/app", &arm.digest);
}

#[test]
fn copy_usage_errors() {
    let src = Registry::start();
    let limit = std::time::Duration::from_secs(30);
    let run = run_syncer_within(&["copy", &src.repo("a/b")], limit);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.output().contains("copy needs a source and a destination"), "{run}");
    let dir = TestDir::new("copy");
    let images = dir.write("images.yaml", &format!("{}: {}\n", src.repo("a/b"), src.repo("c/d")));
    let run = run_syncer_within(&["--images", p(&images), "copy", &src.repo("a/b"), &src.repo("c/d")], limit);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.output().contains("takes no --images"), "{run}");
}
