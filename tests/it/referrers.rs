//! Referrers (signatures, SBOMs, attestations) follow their image: found at the source through
//! the OCI 1.1 referrers API or, where it answers 404 (the Debian registry), the referrers tag
//! schema (`sha256-HEX`), plus cosign's legacy `sha256-HEX.sig` tags; copied by digest, byte-
//! exact, with their own referrers; listed at a destination without the API in its `sha256-HEX`
//! tag, merged with what that tag already listed. `--no-referrers` turns all of it off.

use crate::common::signed::{assert_referrers_tag_lists, Published, Signed, SIGNED, SPDX};
use crate::common::*;

/// An unrelated referrer of `subject` already at the destination, listed in its `sha256-HEX`
/// tag there.
fn preseed(d: &Client, subject: &Pushed) -> Pushed {
    let other = push_artifact_with_subject(
        d,
        SIGNED,
        "application/vnd.cncf.notary.signature",
        "application/jose+json",
        &subject.descriptor(),
    );
    push_referrers_tag(d, SIGNED, &subject.digest, &[other.referrer_descriptor()]);
    other
}

/// The destination's referrers tag of `subject` lists each of `want` once, with the descriptor
/// the source gives it, and each of them is at the destination byte-exact.
fn assert_listed(src: &Client, dst: &Client, subject: &str, want: &[&Pushed]) {
    assert_referrers_tag_lists(dst, SIGNED, subject, want);
    for p in want {
        assert_manifest_copied(src, dst, p, SIGNED, &p.digest);
    }
}

/// The destination after syncing `f` with referrers: the image, the legacy `.sig` tag, every
/// referrer by digest, and the referrers tags (with `pre`, a referrer already there, kept).
fn assert_signed_copied(src: &Registry, dst: &Registry, f: &Signed, pre: Option<&Pushed>) {
    let (s, d) = (src.api(), dst.api());
    assert_manifest_copied(s, d, &f.top, SIGNED, "v1");
    assert_image_copied(s, d, &f.img, SIGNED, &f.img.digest);
    assert_manifest_copied(s, d, &f.attestation, SIGNED, &f.attestation.digest);
    if let Some(legacy) = &f.legacy_sig {
        let tag = f.sig_tag();
        assert_eq!(d.head_manifest(SIGNED, &tag), Some(legacy.digest.clone()), "{tag} at the destination");
        assert_manifest_copied(s, d, legacy, SIGNED, &tag);
    }
    for p in f.followers() {
        assert_manifest_copied(s, d, p, SIGNED, &p.digest);
    }
    let mut want: Vec<&Pushed> = f.referrers().to_vec();
    if let Some(pre) = pre {
        // Pushed at the destination: compare it with itself there.
        assert_listed(d, d, &f.top.digest, &[pre]);
        want.retain(|p| p.digest != pre.digest);
    }
    assert_listed(s, d, &f.top.digest, &want);
    assert_listed(s, d, &f.sbom.digest, &[&f.sbom_sig]);
}

fn assert_rerun_writes_nothing(job: &Job, dst: &Registry, extra: &[&str]) {
    dst.clear_requests();
    let run = job.run_within(90, extra);
    run.assert_ok();
    let writes = dst.writes();
    assert!(writes.is_empty(), "writes at the destination on re-run: {writes:?}\n{run}");
}

/// An explicit tag: the tool finds the referrers tags, the `.sig` tag and the SBOM's own
/// referrer itself, and merges the destination's referrers tag with what it already listed.
#[test]
fn referrers_follow_an_explicit_tag_and_merge_with_the_destination() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::FallbackTags);
    let pre = preseed(dst.api(), &f.top);
    let job = job(&[&src, &dst], &[(&src.repo("signed/app:v1"), &[&dst.repo("signed/app:v1")])]);
    job.run_within(90, &[]).assert_ok();
    assert_signed_copied(&src, &dst, &f, Some(&pre));
    assert_rerun_writes_nothing(&job, &dst, &[]);
    assert_signed_copied(&src, &dst, &f, Some(&pre));
}

/// `--no-referrers`: the image alone.
#[test]
fn no_referrers_copies_the_image_alone() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::FallbackTags);
    let job = job(&[&src, &dst], &[(&src.repo("signed/app:v1"), &[&dst.repo("signed/app:v1")])]);
    job.run_within(60, &["--no-referrers"]).assert_ok();
    let (s, d) = (src.api(), dst.api());
    assert_manifest_copied(s, d, &f.top, SIGNED, "v1");
    assert_image_copied(s, d, &f.img, SIGNED, &f.img.digest);
    assert_eq!(d.tags(SIGNED), vec!["v1"], "no .sig and no sha256- tag at the destination");
    for p in f.followers() {
        assert_eq!(d.head_manifest(SIGNED, &p.digest), None, "referrer {} copied with --no-referrers", p.digest);
    }
}

/// An "all tags" rule: the referrers tags are not images of their own — they follow `v1`, and
/// the report lists `v1` alone.
#[test]
fn all_tags_rule_treats_referrer_tags_as_followers_not_images() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::FallbackTags);
    let pre = preseed(dst.api(), &f.top);
    let source_tags = src.api().tags(SIGNED);
    assert_eq!(source_tags.len(), 4, "v1, two sha256- tags, one .sig: {source_tags:?}");
    let job = job(&[&src, &dst], &[(&src.repo("signed/app"), &[&dst.repo("signed/app")])]);
    let report = job.dir.join("report.json");
    let run = job.run_within(90, &["--report", p(&report)]);
    run.assert_ok();
    assert_signed_copied(&src, &dst, &f, Some(&pre));

    let text = std::fs::read_to_string(&report).expect("report written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let sources: Vec<&str> =
        v["images"].as_array().expect("images[]").iter().map(|e| e["source"].as_str().unwrap_or_default()).collect();
    assert_eq!(sources, vec![src.repo("signed/app:v1").as_str()], "only v1 is an image of its own:\n{text}");
    assert_eq!(v["totals"]["images_found"], 1, "{text}");
    assert_eq!(v["totals"]["images_synced"], 1, "{text}");
    assert_eq!(run.failed_count(), Some(0), "{run}");
    assert!(run.output().contains("1 image(s) synced, 0 unchanged"), "the totals count v1 alone:\n{run}");

    assert_rerun_writes_nothing(&job, &dst, &[]);
}

/// A source that speaks the referrers API (a proxy answering it), no referrers tags there: the
/// referrers still arrive, and the destination's referrers tags list them.
#[test]
fn referrers_api_of_the_source_is_used() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::ByDigestOnly);
    assert_eq!(src.api().tags(SIGNED), vec!["v1"], "no referrers tag at the source");
    let listed: Vec<serde_json::Value> = f.referrers().iter().map(|a| a.referrer_descriptor()).collect();
    let proxy = Proxy::start_with(
        &src.addr(),
        ProxyOpts {
            referrers: Some(vec![
                (f.top.digest.clone(), listed),
                (f.sbom.digest.clone(), vec![f.sbom_sig.referrer_descriptor()]),
            ]),
            // One referrer per page: the listing is followed through its `Link`s.
            page_size: 1,
            ..ProxyOpts::default()
        },
    );
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[(proxy.repo("signed/app:v1"), dst.repo("signed/app:v1"))]),
    );
    job.run_within(90, &[]).assert_ok();
    let asked = format!("/v2/{SIGNED}/referrers/{}", f.top.digest);
    let reqs = proxy.requests();
    assert!(
        reqs.iter().any(|r| r.method == "GET" && r.path() == asked && r.status == 200),
        "{asked} was not requested: {:?}",
        reqs.iter().map(|r| format!("{} {} {}", r.method, r.uri, r.status)).collect::<Vec<_>>()
    );
    let pages = reqs.iter().filter(|r| r.path() == asked && r.uri.contains("page=")).count();
    assert!(pages >= 2, "the referrers listing was not followed page by page:\n{reqs:?}");
    assert_signed_copied(&src, &dst, &f, None);
    assert_rerun_writes_nothing(&job, &dst, &[]);
}

/// An image's blobs do not wait for its referrers to be looked up (on a far source that is a
/// round trip): they are copied while the lookup runs. When the lookup fails, the image fails
/// without its manifest at the destination, and the next run finds its blobs there.
#[test]
fn blobs_do_not_wait_for_the_referrers_lookup_and_a_failed_lookup_pushes_no_manifest() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), SIGNED, "v1");
    let lookup_fails = Proxy::start_with(
        &src.addr(),
        ProxyOpts {
            referrers: Some(Vec::new()),
            faults: vec![FaultRule::always(Match::Any, Fault::Status(500)).on("/referrers/")],
            ..ProxyOpts::default()
        },
    );
    let pairs = |proxy: &Proxy| images_yaml_values(&[(proxy.repo("signed/app:v1"), dst.repo("signed/app:v1"))]);
    let job = Job::new(&[AuthEntry::insecure(&lookup_fails.addr()), dst.auth_entry()], &pairs(&lookup_fails));
    let run = job.run_within(90, &["--retries", "0"]);
    run.assert_failed();
    assert!(run.stderr.contains("signed/app:v1"), "the failed image is not named:\n{run}");
    let reqs = lookup_fails.requests();
    assert!(
        reqs.iter().any(|r| r.path().contains("/referrers/") && r.status == 500),
        "the referrers API was not asked: {reqs:?}"
    );
    // The lookup never succeeded, yet every blob was read: they went ahead of it.
    assert_eq!(lookup_fails.blob_gets(), img.blobs().len(), "{reqs:?}");
    for b in img.blobs() {
        assert!(dst.api().blob_exists(SIGNED, &b), "blob {b} was not copied while the lookup ran");
    }
    assert_eq!(dst.api().head_manifest(SIGNED, "v1"), None, "the image was pushed without its referrers");

    let works = Proxy::start_with(&src.addr(), ProxyOpts { referrers: Some(Vec::new()), ..ProxyOpts::default() });
    let job = Job::new(&[AuthEntry::insecure(&works.addr()), dst.auth_entry()], &pairs(&works));
    job.run_within(90, &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, SIGNED, "v1");
    assert_eq!(works.blob_gets(), 0, "blobs copied by the failed run were read again");
}

/// `--referrer-type`: only referrers of that artifact type (and cosign's tags) follow.
#[test]
fn referrer_type_keeps_only_that_artifact_type() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::FallbackTags);
    let job = job(&[&src, &dst], &[(&src.repo("signed/app:v1"), &[&dst.repo("signed/app:v1")])]);
    job.run_within(90, &["--referrer-type", SPDX]).assert_ok();
    let (s, d) = (src.api(), dst.api());
    assert_manifest_copied(s, d, &f.top, SIGNED, "v1");
    assert_manifest_copied(s, d, &f.sbom, SIGNED, &f.sbom.digest);
    for p in [&f.sig, &f.att] {
        assert_eq!(d.head_manifest(SIGNED, &p.digest), None, "referrer {} is not an SBOM", p.digest);
    }
    assert_listed(s, d, &f.top.digest, &[&f.sbom]);
    assert!(d.tags(SIGNED).contains(&f.sig_tag()), "cosign's tag follows regardless: {:?}", d.tags(SIGNED));
}

/// A destination that speaks the referrers API (a proxy answering it) lists what was pushed by
/// itself: the referrers arrive, and no fallback `sha256-…` tag is written there.
#[test]
fn a_destination_with_the_referrers_api_gets_no_fallback_tags() {
    let src = Registry::start();
    let dst = Registry::start();
    let f = Signed::push(src.api(), Published::FallbackTags);
    let dp = Proxy::start_with(&dst.addr(), ProxyOpts { referrers: Some(Vec::new()), ..ProxyOpts::default() });
    let job = Job::new(
        &[src.auth_entry(), AuthEntry::insecure(&dp.addr())],
        &images_yaml_values(&[(src.repo("signed/app:v1"), dp.repo("signed/app:v1"))]),
    );
    job.run_within(90, &[]).assert_ok();
    let (s, d) = (src.api(), dst.api());
    assert_manifest_copied(s, d, &f.top, SIGNED, "v1");
    for p in f.followers() {
        assert_manifest_copied(s, d, p, SIGNED, &p.digest);
    }
    let fallback: Vec<String> =
        d.tags(SIGNED).into_iter().filter(|t| !t.contains('.') && t.starts_with("sha256-")).collect();
    assert!(fallback.is_empty(), "fallback tags written at a destination with the API: {fallback:?}");
    let probed = dp.requests().iter().any(|r| r.method == "GET" && r.path().contains("/referrers/"));
    assert!(probed, "the destination's referrers API was asked");
}

/// A referrer the source lists but no longer has (a deleted signature) is skipped with a
/// warning: the image still syncs, and the destination lists nothing that is not there.
#[test]
fn a_listed_referrer_missing_at_the_source_is_skipped() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), SIGNED, "v1");
    // The tag exists at the source; the proxy serves it listing a manifest nobody has.
    push_referrers_tag(src.api(), SIGNED, &img.digest, &[]);
    let ghost = format!("sha256:{}", "e".repeat(64));
    let listing = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": ghost, "size": 100, "artifactType": SPDX}],
    });
    let body = serde_json::to_vec(&listing).unwrap();
    let needle = format!("manifests/{}", referrers_tag(&img.digest));
    let proxy = Proxy::start_with(
        &src.addr(),
        ProxyOpts { served_manifests: vec![ServedManifest::new(&needle, OCI_INDEX, &body)], ..ProxyOpts::default() },
    );
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[(proxy.repo("signed/app:v1"), dst.repo("signed/app:v1"))]),
    );
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, SIGNED, "v1");
    assert!(run.output().contains("missing at the source; skipped"), "{run}");
    assert_eq!(dst.api().tags(SIGNED), vec!["v1"], "no fallback index listing what is not there");
}
