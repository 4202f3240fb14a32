//! Re-runs: unchanged images are skipped without writes or blob downloads, `--force` re-copies,
//! moved tags are updated, and the success-images output can be fed back as `--images`.

use crate::common::*;

struct Fixture {
    src: Registry,
    dst: Registry,
    img: Image,
    oci: Image,
    list: Index,
    index: Index,
    job: Job,
}

fn fixture() -> Fixture {
    let src = Registry::start();
    let dst = Registry::start();
    let s = src.api();
    let img = push_simple(s, "inc/app", "docker");
    let oci = push_image(s, "inc/app", "oci", ImageKind::Oci, "linux", "amd64", "");
    let list = push_index(s, "inc/app", "list", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm64", "v8")]);
    let index =
        push_index(s, "inc/app", "index", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm", "v7")]);
    let job = job(&[&src, &dst], &[(&src.repo("inc/app"), &[&dst.repo("inc/app")])]);
    Fixture { src, dst, img, oci, list, index, job }
}

fn assert_all_copied(f: &Fixture, dst: &Registry, repo: &str) {
    let s = f.src.api();
    assert_image_copied(s, dst.api(), &f.img, repo, "docker");
    assert_image_copied(s, dst.api(), &f.oci, repo, "oci");
    assert_index_copied(s, dst.api(), &f.list, repo, "list");
    assert_index_copied(s, dst.api(), &f.index, repo, "index");
}

#[test]
fn rerun_copies_nothing() {
    let f = fixture();
    f.job.run(&[]).assert_ok();
    assert_all_copied(&f, &f.dst, "inc/app");

    f.src.clear_requests();
    f.dst.clear_requests();
    let run = f.job.run(&[]);
    run.assert_ok();

    let dst_writes = f.dst.writes();
    assert!(dst_writes.is_empty(), "writes at the destination on re-run: {dst_writes:?}\n{run}");
    let src_blob_gets: Vec<Request> = f.src.requests().into_iter().filter(Request::is_blob_get).collect();
    assert!(src_blob_gets.is_empty(), "blob downloads from the source on re-run: {src_blob_gets:?}\n{run}");
    assert!(run.output().to_lowercase().contains("unchanged"), "skips should be logged as unchanged:\n{run}");
    assert_eq!(run.failed_count(), Some(0), "{run}");
    assert_all_copied(&f, &f.dst, "inc/app");
}

#[test]
fn rerun_with_platform_filter_copies_nothing() {
    let f = fixture();
    let filter = ["--os", "linux", "--arch", "arm64"];
    f.job.run(&filter).assert_ok();
    let filtered = f.dst.api().head_manifest("inc/app", "list").expect("filtered list");
    assert_ne!(filtered, f.list.digest);

    f.src.clear_requests();
    f.dst.clear_requests();
    let run = f.job.run(&filter);
    run.assert_ok();
    let dst_writes = f.dst.writes();
    assert!(dst_writes.is_empty(), "a filtered index must compare equal to its earlier copy: {dst_writes:?}\n{run}");
    // With a platform filter a single image's platform lives in its config blob, so reading the
    // config blobs is allowed; no layer may be downloaded.
    let configs: Vec<String> = [&f.img, &f.oci].iter().map(|i| i.config_digest.clone()).collect();
    let layer_gets: Vec<Request> = f
        .src
        .requests()
        .into_iter()
        .filter(|r| r.is_blob_get() && !configs.iter().any(|c| r.path.ends_with(c)))
        .collect();
    assert!(layer_gets.is_empty(), "layer downloads on re-run: {layer_gets:?}\n{run}");
    assert_eq!(f.dst.api().head_manifest("inc/app", "list"), Some(filtered));
}

#[test]
fn force_copies_again() {
    let f = fixture();
    f.job.run(&[]).assert_ok();
    f.dst.clear_requests();
    let run = f.job.run(&["--force"]);
    run.assert_ok();
    let reqs = f.dst.requests();
    for tag in ["docker", "oci", "list", "index"] {
        let path = format!("/v2/inc/app/manifests/{tag}");
        assert!(
            reqs.iter().any(|r| r.is_manifest_put() && r.path == path),
            "no manifest PUT for {tag} with --force: {reqs:?}\n{run}"
        );
    }
    assert_all_copied(&f, &f.dst, "inc/app");
}

#[test]
fn moved_source_tag_is_updated() {
    let f = fixture();
    f.job.run(&[]).assert_ok();
    // Move "docker" to a new image and "list" to a new list with other children.
    let moved = push_simple(f.src.api(), "inc/app", "docker");
    let moved_list = push_index(
        f.src.api(),
        "inc/app",
        "list",
        IndexKind::List,
        &[("linux", "amd64", ""), ("linux", "riscv64", "")],
    );
    f.dst.clear_requests();
    f.job.run(&[]).assert_ok();
    let reqs = f.dst.requests();
    assert_image_copied(f.src.api(), f.dst.api(), &moved, "inc/app", "docker");
    assert_index_copied(f.src.api(), f.dst.api(), &moved_list, "inc/app", "list");
    // The unchanged tags were not pushed again.
    for tag in ["oci", "index"] {
        let path = format!("/v2/inc/app/manifests/{tag}");
        assert!(
            !reqs.iter().any(|r| r.is_manifest_put() && r.path == path),
            "unchanged {tag} was pushed again: {reqs:?}"
        );
    }
}

fn success_file_roundtrip(format: Option<&str>) {
    let f = fixture();
    let third = Registry::start();
    let out = f.job.dir.join("success.out");
    let mut extra = vec!["--output-success-images", p(&out)];
    if let Some(fmt) = format {
        extra.extend(["--output-images-format", fmt]);
    }
    f.job.run(&extra).assert_ok();
    let text = std::fs::read_to_string(&out).expect("success-images file written");

    // It is a map from source reference to destination reference, one entry per synced tag.
    let map: serde_json::Value = if format == Some("json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
    } else {
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
        serde_json::to_value(v).expect("yaml to json")
    };
    let obj = map.as_object().unwrap_or_else(|| panic!("not a map:\n{text}"));
    for tag in ["docker", "oci", "list", "index"] {
        let key = format!("{}:{tag}", f.src.repo("inc/app"));
        let val = &obj.get(&key).unwrap_or_else(|| panic!("{key} missing from success images:\n{text}"));
        let want = format!("{}:{tag}", f.dst.repo("inc/app"));
        let ok = val.as_str() == Some(&want[..])
            || val.as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&want[..])));
        assert!(ok, "{key} -> {val}, expected {want}:\n{text}");
    }

    // Fed back as --images with the destination swapped for a third registry.
    let rewritten = text.replace(&f.dst.addr(), &third.addr());
    let images = f.job.dir.write("from-success.images", &rewritten);
    let images = if format == Some("json") {
        let json = f.job.dir.join("from-success.json");
        std::fs::rename(&images, &json).unwrap();
        json
    } else {
        let yaml = f.job.dir.join("from-success.yaml");
        std::fs::rename(&images, &yaml).unwrap();
        yaml
    };
    let auth = f.job.dir.write("auth3.yaml", &auth_yaml(&auth_for(&[&f.src, &f.dst, &third])));
    run_syncer(&["--auth", p(&auth), "--images", p(&images)]).assert_ok();
    assert_all_copied(&f, &third, "inc/app");
}

#[test]
fn success_images_yaml_feeds_back_as_images() {
    success_file_roundtrip(None);
}

#[test]
fn success_images_json_feeds_back_as_images() {
    success_file_roundtrip(Some("json"));
}

#[test]
fn only_missing_children_are_uploaded() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx =
        push_index(src.api(), "part/app", "v1", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    let job = job(&[&src, &dst], &[(&src.repo("part/app:v1"), &[&dst.repo("part/app")])]);
    job.run(&["--arch", "arm64"]).assert_ok();
    let present = idx.child("linux", "arm64", "");
    assert_image_copied(src.api(), dst.api(), present, "part/app", &present.digest);

    dst.clear_requests();
    src.clear_requests();
    let run = job.run(&[]);
    run.assert_ok();
    // Snapshot the logs before the checks below read blobs themselves.
    let dst_reqs = dst.requests();
    let src_reqs = src.requests();
    assert_index_copied(src.api(), dst.api(), &idx, "part/app", "v1");
    // The blobs already at the destination are neither uploaded nor downloaded again.
    for blob in present.blobs() {
        let uploads: Vec<&Request> = dst_reqs.iter().filter(|r| r.is_write() && r.query.contains(&blob[7..])).collect();
        assert!(uploads.is_empty(), "{blob} uploaded again: {uploads:?}\n{run}");
        let downloads: Vec<&Request> = src_reqs.iter().filter(|r| r.is_blob_get() && r.path.ends_with(&blob)).collect();
        assert!(downloads.is_empty(), "{blob} downloaded again: {downloads:?}\nsource requests: {src_reqs:?}\n{run}");
    }
    // The missing child's blobs were uploaded (the check above is not vacuous).
    let missing = idx.child("linux", "amd64", "");
    for blob in missing.blobs() {
        assert!(
            dst_reqs.iter().any(|r| r.is_write() && r.query.contains(&blob[7..])),
            "no upload of {blob} seen: {dst_reqs:?}"
        );
    }
}

/// Quirky registries: a source that refuses manifest `HEAD` (405) is read with `GET`, and a
/// destination whose `HEAD` leaves out `Docker-Content-Digest` still sees an unchanged image as
/// unchanged (a `GET` and the digest of its bytes) — no write on the re-run.
#[test]
fn quirky_heads_still_sync_and_skip_unchanged_images() {
    let src = Registry::start();
    let dst = Registry::start();
    let sp = Proxy::start_with(&src.addr(), ProxyOpts { head_refused: true, ..ProxyOpts::default() });
    let dp = Proxy::start_with(&dst.addr(), ProxyOpts { head_without_digest: true, ..ProxyOpts::default() });
    let img = push_simple(src.api(), "quirk/app", "v1");
    let idx = push_index(
        src.api(),
        "quirk/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    let job = Job::new(
        &[AuthEntry::insecure(&sp.addr()), AuthEntry::insecure(&dp.addr())],
        &images_yaml_values(&[(sp.repo("quirk/app"), dp.repo("quirk/app"))]),
    );
    job.run_within(60, &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "quirk/app", "v1");
    assert_index_copied(src.api(), dst.api(), &idx, "quirk/app", "multi");

    dst.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    // The destination has the tags now, so the source is asked with HEAD first — and refuses.
    assert!(sp.requests().iter().any(|r| r.method == "HEAD" && r.status == 405), "the source refused HEAD");
    let unchanged = run.output().lines().filter(|l| l.contains("unchanged ") && l.contains(" -> ")).count();
    assert_eq!(unchanged, 2, "both seen as unchanged:\n{run}");
    let writes = dst.writes();
    assert!(writes.is_empty(), "nothing written on the re-run: {writes:?}");
    job.run_within(60, &["--verify"]).assert_ok();
}

#[test]
fn rerun_with_platform_filter_judges_a_single_image_by_its_head() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_image(src.api(), "inc/arm", "v1", ImageKind::Oci, "linux", "arm64", "");
    let job = job(&[&src, &dst], &[(&src.repo("inc/arm:v1"), &[&dst.repo("inc/arm")])]);
    job.run_within(60, &["--arch", "arm64"]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "inc/arm", "v1");

    src.clear_requests();
    let run = job.run_within(60, &["--arch", "arm64"]);
    run.assert_ok();
    assert!(run.output().contains("unchanged"), "{run}");
    // The HEAD says "single image" and the digests match: no manifest or config read (the
    // referrer lookups — one tag list, one referrers probe — are not image reads).
    let is_image_read = |r: &Request| r.path.contains("/manifests/") || r.path.contains("/blobs/");
    let reads: Vec<Request> = src.requests().into_iter().filter(|r| r.method == "GET" && is_image_read(r)).collect();
    assert!(reads.is_empty(), "reads on the cheap path: {reads:?}\n{run}");
}

#[test]
fn a_tag_new_to_the_destination_costs_no_source_head() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "cold/app", "v1");
    let job = job(&[&src, &dst], &[(&src.repo("cold/app:v1"), &[&dst.repo("cold/app")])]);
    src.clear_requests();
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "cold/app", "v1");
    let heads = src.requests().into_iter().filter(|r| r.method == "HEAD" && r.path.contains("/manifests/")).count();
    assert_eq!(heads, 0, "the destination lacked the tag: the GET alone answers\n{run}");
    // The no-op re-run: one manifest HEAD per side.
    src.clear_requests();
    dst.clear_requests();
    job.run_within(60, &[]).assert_ok();
    let manifest_reqs = |r: &Registry| r.requests().into_iter().filter(|q| q.path.contains("/manifests/")).count();
    assert_eq!((manifest_reqs(&src), manifest_reqs(&dst)), (1, 1));
}

#[test]
fn many_workers_list_a_repository_and_probe_for_referrers_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let tags: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let img = push_simple(src.api(), "once/app", "t0");
    for t in &tags[1..] {
        tag_image(src.api(), &img, t);
    }
    // Explicit tags: the tag list is read lazily, for the referrer lookups.
    let rule = format!("{}:{}", src.repo("once/app"), tags.join(","));
    let job = job(&[&src, &dst], &[(&rule, &[&dst.repo("once/app")])]);
    src.clear_requests();
    job.run_within(60, &["--proc", "12"]).assert_ok();
    let reqs = src.requests();
    let lists = reqs.iter().filter(|r| r.path.ends_with("/tags/list")).count();
    let probes = reqs.iter().filter(|r| r.path.contains("/referrers/")).count();
    assert_eq!((lists, probes), (1, 1), "tag lists and referrers probes at the source");
}
