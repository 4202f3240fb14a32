//! `--dry-run`: the plan is computed against the real registries, matches what a real run then
//! does, and nothing is written.

use crate::common::*;

/// The first three numbers of the totals line (the one containing `marker`), after the log
/// prefix: images, unchanged, blobs.
fn summary_numbers(run: &Run, marker: &str) -> (u64, u64, u64) {
    let out = run.output();
    let line = out.lines().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("no {marker:?} line:\n{run}"));
    let rest = line.split_once("] ").map_or(line, |(_, r)| r);
    let nums: Vec<u64> =
        rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    (nums[0], nums[1], nums[2])
}

#[test]
fn dry_run_plans_what_a_real_run_then_does_and_writes_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let imgs: Vec<Image> = (0..4).map(|i| push_simple(src.api(), "plan/app", &format!("v{i}"))).collect();
    let idx = push_index(
        src.api(),
        "plan/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    // Two of them are already at the destination.
    job(&[&src, &dst], &[(&src.repo("plan/app:v0,v1"), &[&dst.repo("plan/app")])]).run_within(60, &[]).assert_ok();

    let all = job(&[&src, &dst], &[(&src.repo("plan/app"), &[&dst.repo("plan/app")])]);
    src.clear_requests();
    dst.clear_requests();
    let dry = all.run_within(60, &["--dry-run"]);
    dry.assert_ok();
    let writes = dst.writes();
    assert!(writes.is_empty(), "a dry run writes nothing: {writes:?}");
    assert!(src.requests().iter().all(|r| !r.is_write()));
    for tag in ["v2", "v3", "multi"] {
        assert!(dst.api().get_manifest("plan/app", tag).is_none(), "{tag} was not copied by the dry run");
        assert!(dry.output().contains(&format!("would copy {}", src.repo(&format!("plan/app:{tag}")))), "{dry}");
    }
    let (planned, unchanged, blobs) = summary_numbers(&dry, "dry run: ");
    assert_eq!((planned, unchanged), (3, 2), "{dry}");

    let real = all.run_within(60, &[]);
    real.assert_ok();
    let (synced, unchanged_then, copied) = summary_numbers(&real, "image(s) synced");
    assert_eq!(
        (synced, unchanged_then, copied),
        (planned, unchanged, blobs),
        "the plan matched the run:\n{dry}\n{real}"
    );
    for (i, img) in imgs.iter().enumerate() {
        assert_image_copied(src.api(), dst.api(), img, "plan/app", &format!("v{i}"));
    }
    assert_index_copied(src.api(), dst.api(), &idx, "plan/app", "multi");
}
