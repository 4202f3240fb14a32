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

    let run = run_syncer(&["--auth", &auth, "--images", &images, "--proc", "1", "--retries", "0"]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    assert_eq!(proxy.count(Match::MonolithicPut), 1, "one refusal is enough to switch:\n{run}");
    let blobs = img_blob_count(&img);
    assert!(proxy.count(Match::UploadPatch) >= blobs, "every blob went up by PATCH:\n{run}");
    assert!(run.output().contains("switching to PATCH uploads"), "the switch is logged:\n{run}");
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
