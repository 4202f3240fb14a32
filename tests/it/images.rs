//! Image kinds and contents: docker and OCI single images, manifest lists and OCI indexes,
//! platform filtering (`--os`, `--arch`, `arch:variant`), big layers, Basic auth, `--proc`.

use crate::common::*;

fn sync_one(src: &Registry, dst: &Registry, from: &str, to: &str, extra: &[&str]) -> Run {
    let job = job(&[src, dst], &[(&src.repo(from), &[&dst.repo(to)])]);
    job.run(extra)
}

#[test]
fn docker_image_copied_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_image(src.api(), "docker/img", "v1", ImageKind::Docker, "linux", "amd64", "");
    sync_one(&src, &dst, "docker/img:v1", "copy/img", &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/img", "v1");
    assert_eq!(dst.api().head_manifest("copy/img", "v1"), Some(img.digest.clone()));
}

#[test]
fn oci_image_copied_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_image(src.api(), "oci/img", "v1", ImageKind::Oci, "linux", "arm64", "v8");
    sync_one(&src, &dst, "oci/img:v1", "copy/img", &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/img", "v1");
    assert_eq!(dst.api().get_manifest("copy/img", "v1").unwrap().content_type, OCI_MANIFEST);
}

#[test]
fn oci_artifact_with_foreign_media_types_copied_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let art = push_artifact(src.api(), "charts/app", "0.1.0");
    sync_one(&src, &dst, "charts/app:0.1.0", "charts/app", &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &art, "charts/app", "0.1.0");
}

#[test]
fn docker_manifest_list_copied_with_children() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(
        src.api(),
        "list/app",
        "v1",
        IndexKind::List,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7")],
    );
    sync_one(&src, &dst, "list/app:v1", "list/app", &[]).assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "list/app", "v1");
}

#[test]
fn oci_index_copied_with_children() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(
        src.api(),
        "index/app",
        "v1",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "ppc64le", ""), ("windows", "amd64", "")],
    );
    sync_one(&src, &dst, "index/app:v1", "index/copy", &[]).assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "index/copy", "v1");
}

/// Checks the destination index under `tag` lists exactly `want` (in source order), each child
/// copied with its source digest, and the other children absent.
fn assert_filtered(
    src: &Registry,
    dst: &Registry,
    idx: &Index,
    dst_repo: &str,
    tag: &str,
    want: &[(&str, &str, &str)],
) {
    let m = dst.api().get_manifest(dst_repo, tag).unwrap_or_else(|| panic!("{dst_repo}:{tag} missing"));
    assert_eq!(m.content_type, idx.media_type, "filtered index keeps its media type");
    let entries = index_entries(&m.bytes);
    let want_platforms: Vec<Platform> = want.iter().map(|(o, a, v)| Platform::new(o, a, v)).collect();
    let got_platforms: Vec<Platform> = entries.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(got_platforms, want_platforms, "platforms of the destination index");
    for (digest, platform) in &entries {
        let child = idx.child(&platform.os, &platform.arch, &platform.variant);
        assert_eq!(digest, &child.digest, "child digest for {platform:?}");
        assert_image_copied(src.api(), dst.api(), child, dst_repo, &child.digest);
    }
    for child in &idx.children {
        if !want_platforms.contains(&child.platform) {
            assert_eq!(
                dst.api().head_manifest(dst_repo, &child.digest),
                None,
                "{:?} should not be at the destination",
                child.platform
            );
            for layer in &child.layers {
                assert!(!dst.api().blob_exists(dst_repo, layer), "layer of {:?} copied", child.platform);
            }
        }
    }
    if entries.len() < idx.children.len() {
        assert_ne!(m.digest, idx.digest, "a filtered index is a new manifest");
    }
}

const PLATFORMS: &[(&str, &str, &str)] = &[
    ("linux", "amd64", ""),
    ("linux", "arm64", "v8"),
    ("linux", "arm", "v7"),
    ("linux", "arm", "v6"),
    ("windows", "arm64", ""),
];

#[test]
fn os_and_arch_filter_selects_children_of_a_list() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(src.api(), "pf/list", "v1", IndexKind::List, PLATFORMS);
    sync_one(&src, &dst, "pf/list:v1", "pf/list", &["--os", "linux", "--arch", "arm64"]).assert_ok();
    assert_filtered(&src, &dst, &idx, "pf/list", "v1", &[("linux", "arm64", "v8")]);
}

#[test]
fn os_and_arch_filter_selects_children_of_an_oci_index() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(src.api(), "pf/oci", "v1", IndexKind::OciIndex, PLATFORMS);
    sync_one(&src, &dst, "pf/oci:v1", "pf/oci", &["--os=linux", "--arch=arm64"]).assert_ok();
    assert_filtered(&src, &dst, &idx, "pf/oci", "v1", &[("linux", "arm64", "v8")]);
}

#[test]
fn arch_with_variant_filter() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(src.api(), "pf/variant", "v1", IndexKind::List, PLATFORMS);
    sync_one(&src, &dst, "pf/variant:v1", "pf/variant", &["--arch", "arm:v7"]).assert_ok();
    assert_filtered(&src, &dst, &idx, "pf/variant", "v1", &[("linux", "arm", "v7")]);
}

#[test]
fn arch_filter_without_os_keeps_every_os() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(src.api(), "pf/anyos", "v1", IndexKind::OciIndex, PLATFORMS);
    sync_one(&src, &dst, "pf/anyos:v1", "pf/anyos", &["--arch", "arm64"]).assert_ok();
    assert_filtered(&src, &dst, &idx, "pf/anyos", "v1", &[("linux", "arm64", "v8"), ("windows", "arm64", "")]);
}

#[test]
fn repeated_and_comma_separated_arch_values() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_index(src.api(), "pf/multi", "v1", IndexKind::List, PLATFORMS);
    let comma =
        Job::new(&auth_for(&[&src, &dst]), &images_yaml(&[(&src.repo("pf/multi:v1"), &[&dst.repo("pf/comma")])]));
    comma.run(&["--os", "linux", "--arch", "amd64,arm:v6"]).assert_ok();
    let repeat =
        Job::new(&auth_for(&[&src, &dst]), &images_yaml(&[(&src.repo("pf/multi:v1"), &[&dst.repo("pf/repeat")])]));
    repeat.run(&["--os", "linux", "--arch", "amd64", "--arch", "arm:v6"]).assert_ok();
    let want = [("linux", "amd64", ""), ("linux", "arm", "v6")];
    assert_filtered(&src, &dst, &idx, "pf/comma", "v1", &want);
    assert_filtered(&src, &dst, &idx, "pf/repeat", "v1", &want);
    // Same selection, same bytes: the rewritten index is deterministic.
    assert_eq!(dst.api().head_manifest("pf/comma", "v1"), dst.api().head_manifest("pf/repeat", "v1"));
}

#[test]
fn filter_matching_every_child_keeps_the_index_unchanged() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx =
        push_index(src.api(), "pf/all", "v1", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    sync_one(&src, &dst, "pf/all:v1", "pf/all", &["--os", "linux"]).assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "pf/all", "v1");
}

#[test]
fn single_image_not_matching_the_platform_filter_is_skipped() {
    let src = Registry::start();
    let dst = Registry::start();
    push_image(src.api(), "pf/single", "amd", ImageKind::Docker, "linux", "amd64", "");
    let arm = push_image(src.api(), "pf/single", "arm", ImageKind::Oci, "linux", "arm64", "");
    push_index(src.api(), "pf/none", "v1", IndexKind::List, &[("linux", "amd64", ""), ("linux", "s390x", "")]);
    let job = job(
        &[&src, &dst],
        &[
            (&src.repo("pf/single:amd,arm"), &[&dst.repo("pf/single")]),
            (&src.repo("pf/none:v1"), &[&dst.repo("pf/none")]),
        ],
    );
    let run = job.run(&["--os", "linux", "--arch", "arm64"]);
    // A skip is not a failure.
    run.assert_ok();
    assert_eq!(dst.api().tags("pf/single"), vec!["arm"]);
    assert_image_copied(src.api(), dst.api(), &arm, "pf/single", "arm");
    assert_eq!(dst.api().head_manifest("pf/single", "amd"), None);
    // A list with no matching child is skipped entirely.
    assert_eq!(dst.api().head_manifest("pf/none", "v1"), None);
    assert!(dst.api().tags("pf/none").is_empty());
}

#[test]
fn big_layer_copied_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_big_image(src.api(), "big/img", "v1", 20);
    sync_one(&src, &dst, "big/img:v1", "big/img", &[]).assert_ok();
    let copied = dst.api().get_blob("big/img", &img.layers[0]).expect("big layer");
    assert_eq!(copied.len(), 20 * 1024 * 1024);
    assert_eq!(sha256_digest(&copied), img.layers[0]);
    assert_image_copied(src.api(), dst.api(), &img, "big/img", "v1");
}

#[test]
fn htpasswd_source_and_destination() {
    let src = Registry::start_with(RegistryOpts::htpasswd("reader", "src-pass-1"));
    let dst = Registry::start_with(RegistryOpts::htpasswd("writer", "dst-pass-2"));
    let img = push_simple(src.api(), "private/app", "v1");
    let idx = push_index(
        src.api(),
        "private/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "")],
    );
    let run = sync_one(&src, &dst, "private/app", "private/app", &[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "private/app", "v1");
    assert_index_copied(src.api(), dst.api(), &idx, "private/app", "multi");
    for secret in ["src-pass-1", "dst-pass-2"] {
        assert!(!run.output().contains(secret), "password leaked:\n{run}");
    }
}

#[test]
fn namespace_level_auth_entry() {
    let dst = Registry::start_with(RegistryOpts::htpasswd("ns-user", "ns-pass"));
    let src = Registry::start();
    let img = push_simple(src.api(), "ns/app", "v1");
    // Credentials keyed by "registry/namespace".
    let auth =
        vec![src.auth_entry(), AuthEntry::insecure(&format!("{}/team", dst.addr())).with_creds("ns-user", "ns-pass")];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("ns/app:v1"), &[&dst.repo("team/app")])]));
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "team/app", "v1");
}

#[test]
fn several_workers_with_equals_form_flags() {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let mut imgs = Vec::new();
    for i in 0..6 {
        let kind = if i % 2 == 0 { ImageKind::Docker } else { ImageKind::Oci };
        imgs.push(push_image(s, "par/app", &format!("v{i}"), kind, "linux", "amd64", ""));
    }
    let idx = push_index(s, "par/app", "multi", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    let job = job(&[&src, &dst], &[(&src.repo("par/app"), &[&dst.repo("par/app")])]);
    let auth = format!("--auth={}", p(&job.auth));
    let images = format!("--images={}", p(&job.images));
    run_syncer(&[&auth, &images, "--proc=3", "--retries=1"]).assert_ok();
    for (i, img) in imgs.iter().enumerate() {
        assert_image_copied(s, dst.api(), img, "par/app", &format!("v{i}"));
    }
    assert_index_copied(s, dst.api(), &idx, "par/app", "multi");
}

#[test]
fn short_flags() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "short/app", "v1");
    sync_one(&src, &dst, "short/app:v1", "short/app", &["-p", "2", "-r", "1"]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "short/app", "v1");
}
