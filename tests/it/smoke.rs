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
