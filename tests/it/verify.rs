//! `--verify` / `image-syncer verify`: an audit that changes nothing, finds exactly what
//! differs at the destination, writes it for a re-run, and exits 1 on any difference.

use crate::common::*;

#[test]
fn verify_finds_a_deleted_blob_and_a_retagged_image_and_nothing_else() {
    let src = Registry::start();
    let dst = Registry::start();
    let a = push_simple(src.api(), "audit/app", "a");
    let b = push_simple(src.api(), "audit/app", "b");
    let c = push_simple(src.api(), "audit/app", "c");
    let idx = push_index(
        src.api(),
        "audit/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    let job = job(&[&src, &dst], &[(&src.repo("audit/app"), &[&dst.repo("audit/app")])]);
    job.run_within(60, &[]).assert_ok();

    // In sync: 0 drift, exit 0, and the audit writes nothing anywhere.
    src.clear_requests();
    dst.clear_requests();
    let run = job.run_within(60, &["--verify"]);
    run.assert_ok();
    assert!(run.output().contains("4 image(s) match their source, 0 differ"), "{run}");
    let writes: Vec<Request> = src.writes().into_iter().chain(dst.writes()).collect();
    assert!(writes.is_empty(), "an audit writes nothing: {writes:?}");
    // Every blob of every image was looked at (HEAD) at the destination.
    let heads = dst.requests().into_iter().filter(|r| r.method == "HEAD" && r.path.contains("/blobs/")).count();
    let expected = a.blobs().len()
        + b.blobs().len()
        + c.blobs().len()
        + idx.children.iter().map(|i| i.blobs().len()).sum::<usize>();
    assert_eq!(heads, expected, "one HEAD per referenced blob");

    // Drift: one blob of `a` deleted, `b` retagged to another image — through the registry API.
    assert_eq!(dst.api().delete_blob("audit/app", &a.layers[0]), 202);
    let other = push_simple(dst.api(), "audit/app", "b");
    assert_ne!(other.digest, b.digest);

    let failed = job.dir.join("drift.yaml");
    let run = run_syncer_within(
        &["verify", "--auth", p(&job.auth), "--images", p(&job.images), "--output-failed-images", p(&failed)],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(1), "drift exits 1:\n{run}");
    run.assert_no_panic();
    let lines = run.failed_lines();
    assert_eq!(lines.len(), 2, "exactly the two drifted images:\n{run}");
    let line_a = lines.iter().find(|l| l.contains("audit/app:a ->")).unwrap_or_else(|| panic!("{run}"));
    assert!(line_a.contains(&format!("blob {} is missing", a.layers[0])), "{line_a}");
    let line_b = lines.iter().find(|l| l.contains("audit/app:b ->")).unwrap_or_else(|| panic!("{run}"));
    assert!(line_b.contains(&format!("the destination has {}, the source {}", other.digest, b.digest)), "{line_b}");
    assert!(run.output().contains("2 image(s) match their source, 2 differ"), "{run}");
    let text = std::fs::read_to_string(&failed).unwrap();
    let listed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let listed = listed.as_mapping().unwrap();
    assert_eq!(listed.len(), 2, "{text}");
    assert!(
        listed.contains_key(src.repo("audit/app:a").as_str()) && listed.contains_key(src.repo("audit/app:b").as_str()),
        "{text}"
    );
    // The one-shot form checks one image the same way.
    let one = |tag: &str| {
        let (s, d) = (src.repo(&format!("audit/app:{tag}")), dst.repo("audit/app"));
        run_syncer_within(&["verify", "--auth", p(&job.auth), &s, &d], std::time::Duration::from_secs(60))
    };
    assert_eq!(one("a").code, Some(1));
    one("c").assert_ok();
    // Still nothing changed at the destination.
    assert_eq!(dst.api().get_manifest("audit/app", "b").unwrap().digest, other.digest);

    // The drift file feeds a repair (--force, since `a`'s tag already has the right digest).
    let repair = Job::new(&auth_for(&[&src, &dst]), &text);
    repair.run_within(60, &["--force"]).assert_ok();
    job.run_within(60, &["--verify"]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &a, "audit/app", "a");
    assert_image_copied(src.api(), dst.api(), &b, "audit/app", "b");
}

#[test]
fn verify_blobs_reads_back_what_a_head_cannot_see() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_big_image(src.api(), "deep/app", "v1", 1);
    push_index(src.api(), "deep/app", "multi", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm64", "v8")]);
    let job = job(&[&src, &dst], &[(&src.repo("deep/app"), &[&dst.repo("deep/app")])]);
    job.run_within(60, &[]).assert_ok();
    job.run_within(60, &["--verify-blobs"]).assert_ok();

    // Damage a layer on the registry's disk, same size: a HEAD still sees it whole.
    let file = dst.blob_file(&img.layers[0]);
    let mut bytes = std::fs::read(&file).expect("the blob file");
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    job.run_within(60, &["--verify"]).assert_ok();
    let run = job.run_within(60, &["--verify-blobs", "--retries", "0"]);
    assert_eq!(run.code, Some(1), "{run}");
    let lines = run.failed_lines();
    assert_eq!(lines.len(), 1, "{run}");
    assert!(
        lines[0].contains("deep/app:v1 ->") && lines[0].contains(&format!("blob {} is damaged", img.layers[0])),
        "{run}"
    );
}

#[test]
fn verify_with_a_platform_filter_compares_the_filtered_index() {
    let src = Registry::start();
    let dst = Registry::start();
    push_index(
        src.api(),
        "plat/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    push_image(src.api(), "plat/app", "arm", ImageKind::Docker, "linux", "arm64", "");
    let job = job(&[&src, &dst], &[(&src.repo("plat/app"), &[&dst.repo("plat/app")])]);
    job.run_within(60, &["--arch", "amd64"]).assert_ok();
    // With the same filter: in sync (the arm-only image is skipped, not drift).
    let run = job.run_within(60, &["--verify", "--arch", "amd64"]);
    run.assert_ok();
    assert!(run.output().contains("1 image(s) match their source, 0 differ, 1 skipped"), "{run}");
    // Without it, the destination's index (amd64 only) is not the source's.
    let run = job.run_within(60, &["--verify"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_eq!(run.failed_lines().len(), 2, "the filtered index differs, the skipped image is missing:\n{run}");
    // --verify with --dry-run is refused before any request.
    let run = job.run_within(30, &["--verify", "--dry-run"]);
    assert_eq!(run.code, Some(2), "{run}");
}
