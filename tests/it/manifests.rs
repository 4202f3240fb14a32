//! Manifests of any shape: indexes nested in indexes with docker and OCI children side by side,
//! OCI artifacts with an empty config, nesting too deep to copy, `--arch` below a nested index,
//! a `Content-Type` that contradicts the body, manifests served as `application/json` (as
//! Artifactory does), and schema 1 (refused).

use crate::common::*;

/// An untagged OCI index of two untagged OCI images, linux/amd64 and linux/arm64, in `repo`:
/// (amd64, arm64, the index).
fn push_amd64_arm64_index(s: &Client, repo: &str) -> (Image, Image, Pushed) {
    let amd = push_image_untagged(s, repo, ImageKind::Oci, "linux", "amd64", "");
    let arm = push_image_untagged(s, repo, ImageKind::Oci, "linux", "arm64", "");
    let entries = vec![platform_descriptor(&amd), platform_descriptor(&arm)];
    let inner = push_manifest_json(s, repo, None, OCI_INDEX, &index_json(OCI_INDEX, entries));
    (amd, arm, inner)
}

/// An OCI index tagged `v1` whose children are an OCI index (linux/amd64 + linux/arm64 OCI
/// images), a docker manifest list (one docker image), a docker image and an OCI image: every
/// manifest copied with its digest, bytes and type; a re-run writes nothing and reads no blob.
#[test]
fn nested_indexes_with_docker_and_oci_children_copied_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, repo) = (src.api(), "nest/app");
    let (amd, arm, inner) = push_amd64_arm64_index(s, repo);
    let listed = push_image_untagged(s, repo, ImageKind::Docker, "linux", "s390x", "");
    let list =
        push_manifest_json(s, repo, None, DOCKER_LIST, &index_json(DOCKER_LIST, vec![platform_descriptor(&listed)]));
    let docker = push_image_untagged(s, repo, ImageKind::Docker, "linux", "ppc64le", "");
    let oci = push_image_untagged(s, repo, ImageKind::Oci, "linux", "riscv64", "");
    let top = push_manifest_json(
        s,
        repo,
        Some("v1"),
        OCI_INDEX,
        &index_json(
            OCI_INDEX,
            vec![inner.descriptor(), list.descriptor(), platform_descriptor(&docker), platform_descriptor(&oci)],
        ),
    );
    assert_eq!(s.tags(repo), vec!["v1"], "only the top index is tagged");

    let job = job(&[&src, &dst], &[(&src.repo("nest/app:v1"), &[&dst.repo("nest/app:v1")])]);
    let check = || {
        let d = dst.api();
        assert_manifest_copied(s, d, &top, repo, "v1");
        assert_manifest_copied(s, d, &top, repo, &top.digest);
        assert_manifest_copied(s, d, &inner, repo, &inner.digest);
        assert_manifest_copied(s, d, &list, repo, &list.digest);
        for img in [&amd, &arm, &listed, &docker, &oci] {
            assert_image_copied(s, d, img, repo, &img.digest);
        }
    };
    job.run_within(60, &[]).assert_ok();
    check();

    src.clear_requests();
    dst.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    let dst_writes = dst.writes();
    assert!(dst_writes.is_empty(), "writes at the destination on re-run: {dst_writes:?}\n{run}");
    let blob_gets: Vec<Request> = src.requests().into_iter().filter(Request::is_blob_get).collect();
    assert!(blob_gets.is_empty(), "blob downloads from the source on re-run: {blob_gets:?}\n{run}");
    assert!(run.output().contains("unchanged"), "the re-run says unchanged:\n{run}");
    check();
}

/// An OCI artifact with `artifactType`, the empty config and a layer of its own media type.
#[test]
fn artifact_with_empty_config_copied_byte_exact() {
    assert_eq!(sha256_digest(EMPTY_JSON), EMPTY_DIGEST);
    let src = Registry::start();
    let dst = Registry::start();
    let art = push_oci_artifact(
        src.api(),
        "art/app",
        Some("v1"),
        "application/vnd.example.report.v1+json",
        "application/vnd.example.report.layer.v1+json",
        None,
    );
    assert_eq!(art.blobs[0], EMPTY_DIGEST);
    let job = job(&[&src, &dst], &[(&src.repo("art/app:v1"), &[&dst.repo("art/app")])]);
    job.run_within(60, &[]).assert_ok();
    assert_manifest_copied(src.api(), dst.api(), &art, "art/app", "v1");
    assert_eq!(dst.api().get_blob("art/app", EMPTY_DIGEST).as_deref(), Some(EMPTY_JSON));
}

/// Ten OCI indexes, each the only child of the one above, the innermost over one image: the
/// image fails with one line ("nest deeper than 8") and leaves no tag; the other rule syncs.
#[test]
fn indexes_nested_too_deep_fail_that_image_only() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, repo) = (src.api(), "deep/app");
    let leaf = push_image_untagged(s, repo, ImageKind::Oci, "linux", "amd64", "");
    let mut child = platform_descriptor(&leaf);
    for level in (1..=10).rev() {
        let tag = (level == 1).then_some("v1");
        child = push_manifest_json(s, repo, tag, OCI_INDEX, &index_json(OCI_INDEX, vec![child])).descriptor();
    }
    let ok = push_simple(s, "deep/ok", "v1");
    let job = job(
        &[&src, &dst],
        &[(&src.repo("deep/app:v1"), &[&dst.repo("deep/app")]), (&src.repo("deep/ok:v1"), &[&dst.repo("deep/ok")])],
    );
    let run = job.run_within(60, &[]);
    assert_eq!(run.code, Some(1), "{run}");
    run.assert_no_panic();
    let lines = run.failed_lines();
    assert_eq!(lines.len(), 1, "one failure line:\n{run}");
    assert!(lines[0].contains(&src.repo("deep/app:v1")), "the line names the image: {}", lines[0]);
    assert!(lines[0].contains("nest deeper than 8"), "the line says why: {}", lines[0]);
    assert_eq!(dst.api().head_manifest("deep/app", "v1"), None, "no partial image at the destination");
    assert_image_copied(s, dst.api(), &ok, "deep/ok", "v1");
}

/// The leaf images reachable from `m` at `reg`, following index entries by digest.
fn leaves(reg: &Registry, repo: &str, m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for (digest, _) in index_entries(&m.bytes) {
        let child = reg.api().get_manifest(repo, &digest).unwrap_or_else(|| panic!("{digest} missing in {repo}"));
        if [OCI_INDEX, DOCKER_LIST].contains(&child.content_type.as_str()) {
            out.extend(leaves(reg, repo, &child));
        } else {
            out.push(digest);
        }
    }
    out
}

/// `--arch arm64` on an index (entries without `platform`) over an index of amd64 + arm64:
/// the destination's tree holds the arm64 image only, and a re-run writes nothing.
#[test]
fn arch_filter_reaches_into_a_nested_index() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, repo) = (src.api(), "pf/nest");
    let (amd, arm, inner) = push_amd64_arm64_index(s, repo);
    push_manifest_json(s, repo, Some("v1"), OCI_INDEX, &index_json(OCI_INDEX, vec![inner.descriptor()]));
    let job = job(&[&src, &dst], &[(&src.repo("pf/nest:v1"), &[&dst.repo("pf/nest")])]);
    let filter = ["--arch", "arm64"];
    job.run_within(60, &filter).assert_ok();

    let top = dst.api().get_manifest(repo, "v1").expect("the top tag at the destination");
    let entries = index_entries(&top.bytes);
    assert_eq!(entries.len(), 1, "the top index keeps its one entry: {}", String::from_utf8_lossy(&top.bytes));
    let nested = dst.api().get_manifest(repo, &entries[0].0).expect("the nested index, by the digest listed");
    assert_eq!(nested.content_type, OCI_INDEX);
    assert_eq!(leaves(&dst, repo, &top), vec![arm.digest.clone()], "only the arm64 image is reachable");
    assert_image_copied(s, dst.api(), &arm, repo, &arm.digest);
    assert_eq!(dst.api().head_manifest(repo, &amd.digest), None, "the amd64 image was not copied");

    dst.clear_requests();
    let run = job.run_within(60, &filter);
    run.assert_ok();
    let dst_writes = dst.writes();
    assert!(dst_writes.is_empty(), "writes at the destination on re-run: {dst_writes:?}\n{run}");
}

/// A source serving an OCI manifest as docker schema2: that image fails naming both types and
/// is not pushed; another image through the same proxy syncs.
#[test]
fn content_type_contradicting_the_body_fails_the_image() {
    let src = Registry::start();
    let dst = Registry::start();
    let bad = push_image(src.api(), "ct/bad", "v1", ImageKind::Oci, "linux", "amd64", "");
    let good = push_image(src.api(), "ct/good", "v1", ImageKind::Oci, "linux", "amd64", "");
    let proxy = Proxy::start_with(
        &src.addr(),
        ProxyOpts {
            manifest_content_types: vec![("/ct/bad/manifests/".to_string(), DOCKER_MANIFEST.to_string())],
            ..ProxyOpts::default()
        },
    );
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[
            (proxy.repo("ct/bad:v1"), dst.repo("ct/bad")),
            (proxy.repo("ct/good:v1"), dst.repo("ct/good")),
        ]),
    );
    let run = job.run_within(60, &[]);
    assert_eq!(run.code, Some(1), "{run}");
    run.assert_no_panic();
    assert!(
        proxy.requests().iter().any(|r| r.method == "GET" && r.path().starts_with("/v2/ct/bad/manifests/")),
        "the source manifest was read through the proxy"
    );
    let lines = run.failed_lines();
    assert_eq!(lines.len(), 1, "one failure line:\n{run}");
    for needle in ["ct/bad:v1", DOCKER_MANIFEST, OCI_MANIFEST] {
        assert!(lines[0].contains(needle), "the line should contain {needle}: {}", lines[0]);
    }
    assert_eq!(dst.api().head_manifest("ct/bad", "v1"), None, "nothing pushed for the bad image");
    assert_eq!(dst.api().head_manifest("ct/bad", &bad.digest), None);
    assert_image_copied(src.api(), dst.api(), &good, "ct/good", "v1");
}

/// Artifactory answers a manifest request `406` unless `Accept` includes `application/json`,
/// and may answer it as `application/json` (concourse/docker-image-resource#40): every manifest
/// request, GET and HEAD, at the source and the destination, accepts it; manifests of all four
/// types relayed as `application/json` from both sides are copied byte-exact under their own
/// types, and a re-run (the destination's HEADs answered `application/json`) writes nothing.
#[test]
fn manifests_served_as_application_json_sync_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, repo) = (src.api(), "json/app");
    let docker = push_image(s, repo, "docker", ImageKind::Docker, "linux", "amd64", "");
    let oci = push_image(s, repo, "oci", ImageKind::Oci, "linux", "arm64", "v8");
    let list = push_index(s, repo, "list", IndexKind::List, &[("linux", "amd64", ""), ("linux", "s390x", "")]);
    let index = push_index(s, repo, "index", IndexKind::OciIndex, &[("linux", "arm", "v7"), ("linux", "ppc64le", "")]);
    let as_json = || ProxyOpts {
        manifest_content_types: vec![("/manifests/".to_string(), "application/json".to_string())],
        ..ProxyOpts::default()
    };
    let (src_proxy, dst_proxy) = (Proxy::start_with(&src.addr(), as_json()), Proxy::start_with(&dst.addr(), as_json()));
    let job = Job::new(
        &[AuthEntry::insecure(&src_proxy.addr()), AuthEntry::insecure(&dst_proxy.addr())],
        &images_yaml_values(&[(src_proxy.repo("json/app:docker,oci,list,index"), dst_proxy.repo(repo))]),
    );
    job.run_within(60, &[]).assert_ok();
    assert_image_copied(s, dst.api(), &docker, repo, "docker");
    assert_image_copied(s, dst.api(), &oci, repo, "oci");
    assert_index_copied(s, dst.api(), &list, repo, "list");
    assert_index_copied(s, dst.api(), &index, repo, "index");

    dst.clear_requests();
    let rerun = job.run_within(60, &[]);
    rerun.assert_ok();
    assert_eq!(dst.writes(), Vec::new(), "a re-run writes nothing at the destination\n{rerun}");

    for (side, proxy) in [("source", &src_proxy), ("destination", &dst_proxy)] {
        let manifest_reads: Vec<ProxyRequest> = proxy
            .requests()
            .into_iter()
            .filter(|r| (r.method == "GET" || r.method == "HEAD") && r.path().contains("/manifests/"))
            .collect();
        assert!(!manifest_reads.is_empty(), "no manifest read at the {side}");
        for r in &manifest_reads {
            let accept = r.header("accept").unwrap_or_default();
            assert!(
                accept.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "application/json"),
                "{side}: {} {} accepts {accept:?}, without application/json",
                r.method,
                r.uri
            );
        }
    }
}

/// A signed schema 1 manifest (as an old registry serves it): refused with one line.
#[test]
fn schema1_manifest_is_refused() {
    let src = Registry::start();
    let dst = Registry::start();
    let v1 = serde_json::json!({
        "schemaVersion": 1,
        "name": "s1/app",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],
        "history": [{"v1Compatibility": "{\"id\":\"5d1c0d4ab1d0\",\"created\":\"2016-01-01T00:00:00Z\"}"}],
        "signatures": [{
            "header": {"jwk": {"crv": "P-256", "kid": "ABCD:EFGH", "kty": "EC", "x": "eA", "y": "eQ"}, "alg": "ES256"},
            "signature": "c2lnbmF0dXJl",
            "protected": "eyJmb3JtYXRMZW5ndGgiOjEsImZvcm1hdFRhaWwiOiJmUSJ9"
        }]
    });
    let body = docker_json(&v1);
    let proxy = Proxy::start_with(
        &src.addr(),
        ProxyOpts {
            served_manifests: vec![ServedManifest::new(
                "/s1/app/manifests/",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                &body,
            )],
            ..ProxyOpts::default()
        },
    );
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[(proxy.repo("s1/app:v1"), dst.repo("s1/app"))]),
    );
    let run = job.run_within(60, &[]);
    assert_eq!(run.code, Some(1), "{run}");
    run.assert_no_panic();
    let lines = run.failed_lines();
    assert_eq!(lines.len(), 1, "one failure line:\n{run}");
    assert!(lines[0].contains("s1/app:v1"), "the line names the image: {}", lines[0]);
    assert!(contains_any_ci(&lines[0], &["schema 1"]), "the line says schema 1: {}", lines[0]);
    assert_eq!(dst.api().head_manifest("s1/app", "v1"), None);
}
