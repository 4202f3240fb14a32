//! `--report FILE`: one JSON document per run, statuses matching the destination, no secret.

use std::collections::BTreeMap;

use crate::common::*;

#[test]
fn report_lists_each_image_with_its_status_and_no_secret() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("writer", "report-secret-pw"));
    let a = push_simple(src.api(), "rep/app", "a");
    let b = push_simple(src.api(), "rep/app", "b");
    push_image(src.api(), "rep/app", "arm", ImageKind::Docker, "linux", "arm64", "");
    job(&[&src, &dst], &[(&src.repo("rep/app:b"), &[&dst.repo("rep/app")])]).run_within(60, &[]).assert_ok();

    let job = job(&[&src, &dst], &[(&src.repo("rep/app:a,b,arm,gone"), &[&dst.repo("rep/app")])]);
    let path = job.dir.join("report.json");
    let run = job.run_within(60, &["--arch", "amd64", "--report", p(&path), "--retries", "0"]);
    assert_eq!(run.code, Some(1), "the missing tag fails the run:\n{run}");
    let text = std::fs::read_to_string(&path).expect("report written");
    assert!(!text.contains("report-secret-pw"), "no password in the report:\n{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");

    let by_tag: BTreeMap<String, &serde_json::Value> = v["images"]
        .as_array()
        .expect("images[]")
        .iter()
        .map(|e| (e["source"].as_str().unwrap().rsplit(':').next().unwrap().to_string(), e))
        .collect();
    assert_eq!(by_tag.len(), 4, "{text}");
    assert_eq!(by_tag["a"]["status"], "synced");
    assert_eq!(by_tag["a"]["digest"], a.digest.as_str());
    assert_eq!(by_tag["a"]["destination"], dst.repo("rep/app:a").as_str());
    assert_eq!(by_tag["b"]["status"], "unchanged");
    assert_eq!(by_tag["b"]["digest"], b.digest.as_str());
    assert_eq!(by_tag["arm"]["status"], "skipped");
    assert!(by_tag["arm"]["reason"].as_str().unwrap().contains("arm64"), "{text}");
    // What each image moved: every blob of `a` counted once (copied, mounted or present), and
    // the bytes of those copied; the unchanged one moved nothing.
    let n = |tag: &str, k: &str| by_tag[tag][k].as_u64().unwrap_or_else(|| panic!("{tag}.{k} in {text}"));
    assert_eq!(n("a", "blobs_copied") + n("a", "blobs_mounted") + n("a", "blobs_present"), a.blobs().len() as u64);
    assert!(n("a", "blobs_copied") >= 1 && n("a", "bytes") > 0, "{text}");
    assert_eq!(n("a", "manifests_pushed"), 1);
    assert!(by_tag["a"]["duration_seconds"].as_f64().is_some_and(|d| d > 0.0), "{text}");
    assert_eq!((n("b", "bytes"), n("b", "blobs_copied"), n("b", "manifests_pushed")), (0, 0, 0));
    assert_eq!(by_tag["gone"]["error_class"], "not_found", "{text}");
    assert_eq!(by_tag["gone"]["status"], "failed");
    assert!(!by_tag["gone"]["error"].as_str().unwrap().is_empty());

    // The statuses match the destination, and the totals the entries.
    assert!(dst.api().get_manifest("rep/app", "a").is_some_and(|m| m.digest == a.digest));
    assert!(dst.api().get_manifest("rep/app", "arm").is_none() && dst.api().get_manifest("rep/app", "gone").is_none());
    assert_eq!(v["totals"]["images_synced"], 1);
    assert_eq!(v["totals"]["images_unchanged"], 1);
    assert_eq!(v["images_failed"], 1);
}

/// A layer two children of an index share is counted once in the image's figures, though each
/// child is planned apart.
#[test]
fn report_counts_a_layer_shared_by_an_index_children_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let shared = random_bytes(unique_seed(), 6000);
    let one =
        push_image_with_layers(src.api(), "rep/multi", "one", vec![shared.clone(), random_bytes(unique_seed(), 500)]);
    let two = push_image_with_layers(src.api(), "rep/multi", "two", vec![shared, random_bytes(unique_seed(), 700)]);
    push_list_of(src.api(), "rep/multi", "v1", &[&one, &two]);
    let unique: std::collections::BTreeSet<String> = one.blobs().into_iter().chain(two.blobs()).collect();
    assert_eq!(unique.len(), 5, "two configs, two layers of their own, one shared");

    let job = job(&[&src, &dst], &[(&src.repo("rep/multi:v1"), &[&dst.repo("rep/multi")])]);
    let path = job.dir.join("report.json");
    job.run_within(60, &["--report", p(&path)]).assert_ok();
    let text = std::fs::read_to_string(&path).expect("report written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let image = &v["images"][0];
    let n = |k: &str| image[k].as_u64().unwrap_or_else(|| panic!("{k} in {text}"));
    assert_eq!(n("blobs_copied") + n("blobs_mounted") + n("blobs_present"), unique.len() as u64, "{text}");
    assert_eq!(n("manifests_pushed"), 3, "{text}");
}
