//! `image-syncer inventory` and the deltas written from it: the site's inventory (taken with
//! the images file its bundles are imported with) lists what its registry really holds after it
//! pruned an image and added one by itself; `--base inventory.json` then writes a bundle holding
//! exactly the blobs the site lacks, which imports byte-exact there (a blob the site holds in
//! another repository mounted from there), and fails each image, naming the blob and pushing
//! nothing, where the site's blobs are missing. An inventory of a layout and of a registry
//! repository list the same manifests (referrers included) and blobs.
//!
//! Checked from the outside: the registries and their access logs, the bundle's files, the
//! inventory's JSON. Every run has a time limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::common::signed::{Published, Signed, SIGNED};
use crate::common::*;
use crate::layout::{blob_digests, random_layer, uploaded_digests};

/// `image-syncer inventory ARGS`, within the time limit.
fn inventory(args: &[&str]) -> Run {
    let mut all = vec!["inventory"];
    all.extend_from_slice(args);
    run_syncer(&all)
}

/// The inventory a run printed on stdout, or wrote to `file`.
fn document(run: &Run, file: Option<&Path>) -> serde_json::Value {
    let text = match file {
        Some(f) => fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}\n{run}", f.display())),
        None => run.stdout.clone(),
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the inventory is not JSON ({e}):\n{text}\n{run}"))
}

/// The tags of `repo` in the inventory: tag → digest.
fn tags_of(doc: &serde_json::Value, repo: &str) -> BTreeMap<String, String> {
    let tags = doc["repositories"][repo]["tags"].as_object().unwrap_or_else(|| panic!("no tags of {repo} in {doc:#}"));
    tags.iter().map(|(t, d)| (t.clone(), d.as_str().expect("a digest").to_string())).collect()
}

/// The digests listed under `key` (`blobs`: the document's; else `manifests` of that repository).
fn digests(doc: &serde_json::Value, repo: Option<&str>) -> BTreeSet<String> {
    match repo {
        None => doc["blobs"].as_object().unwrap_or_else(|| panic!("no blobs in {doc:#}")).keys().cloned().collect(),
        Some(r) => doc["repositories"][r]["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("no manifests of {r} in {doc:#}"))
            .iter()
            .map(|d| d.as_str().expect("a digest").to_string())
            .collect(),
    }
}

fn set<'a>(digests: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    digests.into_iter().cloned().collect()
}

/// Month 1: `team/a` and `team/b` carried in a bundle and imported at the site below
/// `mirror`; since then the site pruned B and added D by itself. Month 2 adds `team/c`, which
/// shares a layer with A and one with D. The site's inventory, taken with the images file the
/// site imports with (the bundle itself gone back), makes the month-2 bundle hold exactly the
/// three manifests and the blobs of B and C the site lacks; imported there, A, B and C arrive
/// byte-exact (D's layer mounted from D's repository, nothing the site holds uploaded). Into an
/// empty registry, each image fails naming a blob it left out, and no manifest is pushed.
#[test]
fn a_delta_from_the_site_inventory_carries_exactly_what_the_site_lacks() {
    let src = Registry::start();
    let site = Registry::start();
    let s = src.api();
    let (shared, vendor) = (random_layer(), random_layer());
    let a = push_image_with_layers(s, "team/a", "v1", vec![shared.clone(), random_layer()]);
    let b = push_image_with_layers(s, "team/b", "v1", vec![shared.clone(), random_layer()]);
    let usb = TestDir::new("usb");
    let bundle = usb.join("bundle");
    let to_bundle = |repos: &[&str], extra: &[&str]| {
        let rules: Vec<(String, String)> = repos.iter().map(|r| (src.repo(r), format!("oci:{}", p(&bundle)))).collect();
        rules_job(&[&src], &rules).run(extra)
    };
    to_bundle(&["team/a", "team/b"], &[]).assert_ok();
    // The images file the site imports every bundle with.
    let import = rules_job(&[&site], &[(format!("oci:{}", p(&bundle)), site.repo("mirror"))]);
    import.run(&[]).assert_ok();

    assert_eq!(site.api().delete_manifest("mirror/team/b", &b.digest), 202, "the site prunes B");
    let d = push_image_with_layers(site.api(), "mirror/team/d", "v1", vec![vendor.clone(), random_layer()]);
    fs::remove_dir_all(&bundle).expect("the stick goes back");

    let taken = TestDir::new("site");
    let inv = taken.join("inventory.json");
    let run = inventory(&["--auth", p(&import.auth), "--images", p(&import.images), "--output", p(&inv)]);
    run.assert_ok();
    let doc = document(&run, Some(&inv));
    assert_eq!(doc["inventory"], 1, "the format version: {doc:#}");
    assert!(run.stdout.is_empty(), "with --output, nothing on stdout: {}", run.stdout);
    assert_eq!(tags_of(&doc, &site.repo("mirror/team/a")), BTreeMap::from([("v1".into(), a.digest.clone())]));
    assert_eq!(tags_of(&doc, &site.repo("mirror/team/d")), BTreeMap::from([("v1".into(), d.digest.clone())]));
    assert!(
        doc["repositories"].get(site.repo("mirror/team/b")).is_none_or(|r| r["tags"] == serde_json::json!({})),
        "B is pruned at the site: {doc:#}"
    );
    assert_eq!(digests(&doc, None), set(a.blobs().iter().chain(&d.blobs())), "the blobs the site holds");
    assert_eq!(doc["blobs"][&vendor_digest(&d)]["at"], serde_json::json!([site.repo("mirror/team/d")]));

    let c = push_image_with_layers(s, "team/c", "v1", vec![shared, vendor, random_layer()]);
    let run = to_bundle(&["team/a", "team/b", "team/c"], &["--base", p(&inv)]);
    run.assert_ok();
    assert!(run.output().contains("left out: the site's inventory lists them"), "the summary says so:\n{run}");
    let carried = [&a.digest, &b.digest, &c.digest, &b.config_digest, &b.layers[1], &c.config_digest, &c.layers[2]];
    assert_eq!(blob_digests(&bundle), set(carried), "exactly the three manifests and what the site lacks");
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("image-syncer-delta.json")).expect("the delta record"))
            .expect("the record is JSON");
    assert_eq!(record["base"], p(&inv));
    assert_eq!(record["inventory"], doc["generated"], "the record says when the inventory was taken");

    site.clear_requests();
    import.run(&[]).assert_ok();
    for (img, repo) in [(&a, "mirror/team/a"), (&b, "mirror/team/b"), (&c, "mirror/team/c")] {
        assert_image_copied(s, site.api(), img, repo, "v1");
    }
    assert_eq!(site.api().head_manifest("mirror/team/d", "v1"), Some(d.digest.clone()), "D untouched");
    let uploaded = uploaded_digests(&site);
    assert!(
        uploaded.is_subset(&set(carried[3..].iter().copied())),
        "only what the site lacked is uploaded: {uploaded:?}"
    );
    let param = |r: &Request, k: &str| crate::common::http::query_param(&r.query, k);
    let mounted: Vec<Request> = site
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && param(r, "mount") == Some(vendor_digest(&d)))
        .collect();
    assert!(
        mounted
            .iter()
            .any(|r| r.path.contains("/mirror/team/c/") && param(r, "from").as_deref() == Some("mirror/team/d")),
        "D's layer is mounted into C's repository from D's: {mounted:?}"
    );

    let empty = Registry::start();
    let run = rules_job(&[&empty], &[(format!("oci:{}", p(&bundle)), empty.repo("mirror"))]).run(&[]);
    run.assert_failed();
    let left = set(a.blobs().iter().chain([&b.layers[0], &vendor_digest(&d)]));
    for (img, repo) in [(&a, "mirror/team/a"), (&b, "mirror/team/b"), (&c, "mirror/team/c")] {
        let failed = run.lines_with(&["failed:", &format!("{}:v1", empty.repo(repo))]);
        assert_eq!(failed.len(), 1, "one failure line for {repo}:\n{run}");
        let needs = img.blobs();
        let named: Vec<&String> =
            needs.iter().filter(|d| left.contains(*d) && failed[0].contains(d.as_str())).collect();
        assert_eq!(named.len(), 1, "the line names a blob {repo} needs that the delta left out: {}", failed[0]);
        assert!(
            failed[0].contains("take the inventory again") && failed[0].contains(p(&inv)),
            "and says what to do: {}",
            failed[0]
        );
        assert!(empty.api().tags(repo).is_empty(), "nothing of {repo} is tagged");
    }
    let puts: Vec<Request> = empty.requests().into_iter().filter(Request::is_manifest_put).collect();
    assert!(puts.is_empty(), "no manifest pushed without its blobs: {puts:?}\n{run}");
}

/// D's first layer: the one C shares.
fn vendor_digest(d: &Image) -> String {
    d.layers[0].clone()
}

/// A signed image (an index, an attestation, OCI 1.1 referrers, a cosign `.sig` tag) copied
/// into `oci:DIR`: `inventory oci:DIR` on stdout lists its tags, every manifest (the referrers
/// found through the layout's listing) and every blob, each blob at the layout's image; and
/// `inventory REGISTRY/REPO` of the source (referrers through its `sha256-…` tags) lists the
/// same manifests and blobs. A layout that is not there is unusable input (exit 2).
#[test]
fn an_inventory_of_a_layout_and_of_a_registry_repository_list_what_they_hold() {
    let src = Registry::start();
    let signed = Signed::push(src.api(), Published::FallbackTags);
    let bundle = TestDir::new("inv-layout");
    let dir = bundle.join("oci");
    let auth = bundle.write("auth.yaml", &auth_yaml(&auth_for(&[&src])));
    run_syncer(&["--auth", p(&auth), "copy", &src.repo(SIGNED), &format!("oci:{}", p(&dir))]).assert_ok();

    let mut manifests = BTreeSet::from([signed.top.digest.clone(), signed.img.digest.clone()]);
    manifests.insert(signed.attestation.digest.clone());
    manifests.extend(signed.followers().iter().map(|f| f.digest.clone()));
    let mut blobs = set(&signed.img.blobs());
    blobs.extend(signed.attestation.blobs.iter().cloned());
    for f in signed.followers() {
        blobs.extend(f.blobs.iter().cloned());
    }

    let run = inventory(&[&format!("oci:{}", p(&dir))]);
    run.assert_ok();
    let doc = document(&run, None);
    let name = format!("oci:{}:{}", p(&dir), src.repo(SIGNED));
    let tags = tags_of(&doc, &name);
    assert_eq!(tags.get("v1"), Some(&signed.top.digest), "{doc:#}");
    let listed = digests(&doc, Some(&name));
    assert!(listed.is_superset(&manifests), "every manifest, referrers included: {listed:?} vs {manifests:?}");
    assert_eq!(digests(&doc, None), blobs, "every blob, once");
    assert!(doc["blobs"].as_object().unwrap().values().all(|b| b["at"] == serde_json::json!([name])));

    let missing = inventory(&[&format!("oci:{}", p(&bundle.join("no-such-layout")))]);
    assert_eq!(missing.code, Some(2), "a layout named that is not there is unusable input:\n{missing}");
    assert!(missing.stdout.is_empty(), "and no document is written: {}", missing.stdout);

    let run = inventory(&["--auth", p(&auth), &src.repo(SIGNED)]);
    run.assert_ok();
    let doc = document(&run, None);
    assert_eq!(tags_of(&doc, &src.repo(SIGNED)).get("v1"), Some(&signed.top.digest));
    let listed = digests(&doc, Some(&src.repo(SIGNED)));
    assert!(listed.is_superset(&manifests), "every manifest, referrers included: {listed:?} vs {manifests:?}");
    assert_eq!(digests(&doc, None), blobs, "the same blobs as the layout's");
}
