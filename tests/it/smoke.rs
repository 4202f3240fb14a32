//! End-to-end smoke test. CI runs it a second time with `IMAGE_SYNCER_BIN` pointing at the static
//! musl release binary.

use crate::common::*;

#[test]
fn e2e_static_binary_smoke() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "smoke/app", "v1");
    let idx = push_index(
        src.api(),
        "smoke/multi",
        "v1",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    let job = job(
        &[&src, &dst],
        &[
            (&src.repo("smoke/app:v1"), &[&dst.repo("smoke/app")]),
            (&src.repo("smoke/multi"), &[&dst.repo("smoke/multi")]),
        ],
    );
    let run = job.run(&["--proc", "2"]);
    run.assert_ok();
    assert_eq!(run.failed_count(), Some(0), "{run}");

    assert_eq!(dst.api().head_manifest("smoke/app", "v1"), Some(img.digest.clone()));
    assert_image_copied(src.api(), dst.api(), &img, "smoke/app", "v1");
    assert_eq!(dst.api().head_manifest("smoke/multi", "v1"), Some(idx.digest.clone()));
    assert_index_copied(src.api(), dst.api(), &idx, "smoke/multi", "v1");
}

/// `self-image` with no `--binary`: the image of the binary under test. A static one (CI's musl
/// build) goes into the layer byte for byte and `copy` pushes it with the layout's digest; a
/// dynamically linked one (the debug build the ordinary test run uses) is refused, naming the
/// cure, and nothing is written. Which one it is, `ldd` says (as CI checks the musl build).
#[test]
fn self_image_of_the_binary_under_test() {
    use crate::layout::{blob_path, index_of};
    use crate::self_image::{json_blob, members};

    let bin = syncer_bin();
    let ldd = std::process::Command::new("ldd").arg(&bin).output().expect("run ldd");
    let ldd = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    let is_static = ldd.contains("not a dynamic executable") || ldd.contains("statically linked");
    let dir = TestDir::new("smoke-self-image");
    let out = dir.join("image");
    let run = run_syncer(&["self-image", &format!("oci:{}:v1", p(&out))]);
    if !is_static {
        assert_eq!(run.code, Some(2), "a dynamically linked binary is refused:\n{run}");
        run.assert_stderr_names("dynamically linked", &["x86_64-unknown-linux-musl"]);
        assert!(!out.exists(), "nothing is written:\n{run}");
        return;
    }
    run.assert_ok();
    let digest = index_of(&out)["manifests"][0]["digest"].as_str().expect("an entry").to_string();
    let manifest = json_blob(&out, &digest);
    let layer = manifest["layers"][0]["digest"].as_str().expect("a layer").to_string();
    let files = members(&std::fs::read(blob_path(&out, &layer)).unwrap());
    let binary = files.iter().find(|m| m.0 == "usr/local/bin/image-syncer").expect("the binary in the layer");
    assert!(binary.5 == std::fs::read(&bin).unwrap(), "the layer holds the binary under test byte for byte");

    let reg = Registry::start();
    let auth = dir.write("auth.yaml", &auth_yaml(&auth_for(&[&reg])));
    let from = format!("oci:{}:v1", p(&out));
    run_syncer(&["--auth", p(&auth), "copy", &from, &reg.repo("tools/image-syncer:v1")]).assert_ok();
    assert_eq!(reg.api().head_manifest("tools/image-syncer", "v1"), Some(digest));
    assert_eq!(reg.api().get_blob("tools/image-syncer", &layer), Some(std::fs::read(blob_path(&out, &layer)).unwrap()));
}
