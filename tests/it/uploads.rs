//! Blob upload strategies. The default is one `PUT ?digest=` whose body is the streamed blob; a
//! registry that refuses that (some only take docker's PATCH-then-PUT) is detected on the fly,
//! and `chunked_upload: true` in the auth file asks for PATCH uploads from the start.

use crate::common::*;

fn auth_and_images(dir: &TestDir, auth: &str, src: &str, dst: &str) -> (String, String) {
    let auth = dir.write("auth.yaml", auth);
    let images = dir.write("images.yaml", &format!("{src}: {dst}\n"));
    (p(&auth).to_string(), p(&images).to_string())
}

#[test]
fn registry_refusing_single_request_uploads_gets_patch_uploads() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = Proxy::faulty(&dst.addr(), vec![FaultRule::always(Match::MonolithicPut, Fault::Status(405))]);
    let img = push_image(src.api(), "up/app", "v1", ImageKind::Docker, "linux", "amd64", "");
    let dir = TestDir::new("uploads");
    let auth = format!("{}: {{insecure: true}}\n{}: {{insecure: true}}\n", src.addr(), proxy.addr());
    let (auth, images) = auth_and_images(&dir, &auth, &src.repo("up/app:v1"), &format!("{}/copy/app", proxy.addr()));

    let report = dir.join("report.json");
    let run =
        run_syncer(&["--auth", &auth, "--images", &images, "--proc", "1", "--retries", "0", "--report", p(&report)]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    assert_eq!(proxy.count(Match::MonolithicPut), 1, "one refusal is enough to switch:\n{run}");
    // The report says what was learned about the registry.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let learned = &v["registries"][proxy.addr()];
    assert_eq!(learned["single_request_uploads"], "refused", "{v:#}");
    assert_eq!(learned["chunked_uploads"], "accepted", "{v:#}");
    let blobs = img_blob_count(&img);
    assert!(proxy.count(Match::UploadPatch) >= blobs, "every blob went up by PATCH:\n{run}");
    assert!(run.output().contains("refuses single-request blob uploads"), "the switch is logged:\n{run}");
}

#[test]
fn chunked_upload_key_uses_patch_from_the_start() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_image(src.api(), "up/app", "v1", ImageKind::Oci, "linux", "arm64", "v8");
    let dir = TestDir::new("uploads");
    let auth =
        format!("{}: {{insecure: true}}\n{}: {{insecure: true, chunked_upload: true}}\n", src.addr(), dst.addr());
    let (auth, images) = auth_and_images(&dir, &auth, &src.repo("up/app:v1"), &dst.repo("copy/app"));

    let run = run_syncer(&["--auth", &auth, "--images", &images]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    let reqs = dst.requests();
    let patches = reqs.iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, img_blob_count(&img), "one PATCH per blob: {reqs:#?}");
}

/// Config + layers of a single image.
fn img_blob_count(img: &Image) -> usize {
    let m: serde_json::Value = serde_json::from_slice(&img.bytes).expect("manifest JSON");
    1 + m["layers"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_layer_shared_by_two_repositories_is_streamed_once_and_mounted() {
    let src = Registry::start();
    let dst = Registry::start();
    let shared = random_bytes(unique_seed(), 2 * 1024 * 1024);
    let a = push_image_with_layers(src.api(), "share/a", "v1", vec![shared.clone()]);
    let b = push_image_with_layers(src.api(), "share/b", "v1", vec![shared]);
    let layer = a.layers[0].clone();
    assert_eq!(layer, b.layers[0]);
    // A slow source (2 MiB/s) keeps the first copy in flight while the second image starts.
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { rate: 2 * 1024 * 1024, ..ProxyOpts::default() });
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), AuthEntry::insecure(&dst.addr())],
        &images_yaml_values(&[
            (proxy.repo("share/a:v1"), dst.repo("share/a")),
            (proxy.repo("share/b:v1"), dst.repo("share/b")),
        ]),
    );
    let run = job.run_within(90, &["--proc", "4"]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &a, "share/a", "v1");
    assert_image_copied(src.api(), dst.api(), &b, "share/b", "v1");
    let layer_gets = proxy.requests().iter().filter(|r| r.is(Match::BlobGet) && r.path().ends_with(&layer)).count();
    assert_eq!(layer_gets, 1, "the shared layer was read from the source more than once:\n{run}");
    let mounted = dst.requests().iter().any(|r| r.method == "POST" && r.query.contains("mount=") && r.status == 201);
    assert!(mounted, "the second repository got the layer by a mount:\n{run}");
}

/// A chunked upload whose final digest check fails (a registry that lost or misplaced a chunk,
/// e.g. ECR's lagging `Range`, aws/containers-roadmap#2831) is sent once more in a single
/// request before the blob fails.
#[test]
fn a_chunked_upload_failing_its_digest_check_is_sent_again_in_one_request() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "up/app", "v1");
    // The first closing `PUT ?digest=` of a chunked upload is answered as a digest mismatch.
    let closing = FaultRule::first(1, Match::UploadPut, Fault::Code(400, "DIGEST_INVALID"));
    let proxy = Proxy::faulty(&dst.addr(), vec![closing]);
    let dir = TestDir::new("uploads");
    let auth =
        format!("{}: {{insecure: true}}\n{}: {{insecure: true, chunked_upload: true}}\n", src.addr(), proxy.addr());
    let (auth, images) = auth_and_images(&dir, &auth, &src.repo("up/app:v1"), &format!("{}/copy/app", proxy.addr()));

    let run = run_syncer(&["--auth", &auth, "--images", &images, "--proc", "1", "--retries", "0"]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    assert_eq!(proxy.faults_injected(), 1, "{run}");
    assert_eq!(proxy.count(Match::MonolithicPut), 1, "the blob went again, in one request:\n{run}");
    assert!(run.output().contains("sending the blob again in a single request"), "{run}");
}
