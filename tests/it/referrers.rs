//! Referrers (signatures, SBOMs, attestations) follow their image: found at the source through
//! the OCI 1.1 referrers API or, where it answers 404 (the Debian registry), the referrers tag
//! schema (`sha256-HEX`), plus cosign's legacy `sha256-HEX.sig` tags; copied by digest, byte-
//! exact, with their own referrers; listed at a destination without the API in its `sha256-HEX`
//! tag, merged with what that tag already listed. Every manifest of an image is followed, an
//! index's children too, on every run: a signature added to a child later arrives. A
//! `sha256-HEX` tag serving the manifest itself (GitLab) lists nothing. `--no-referrers` turns
//! all of it off.

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

/// The repository of the multi-arch image whose children get signed.
const MULTI: &str = "signed/multi";

/// A multi-arch image `MULTI:v1` (linux/amd64, linux/arm64) at `c`.
fn push_multi(c: &Client) -> Index {
    push_index(c, MULTI, "v1", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "v8")])
}

/// The digest and descriptor of the arm64 child of `idx`.
fn arm64_child(idx: &Index) -> (String, serde_json::Value) {
    let child = idx.child("linux", "arm64", "v8");
    (child.digest.clone(), descriptor(&child.media_type, &child.bytes))
}

/// A signature of `subject` (a descriptor) pushed to `MULTI` at `c`, as `cosign sign` and `oras
/// attach` write one: an OCI 1.1 artifact whose `subject` it is (by digest only), then with
/// [`Published::FallbackTags`] listed under the subject's `sha256-HEX` tag and a cosign legacy
/// signature under `sha256-HEX.sig`. What must follow the subject: the artifact, then the legacy
/// signature if any.
fn sign(c: &Client, subject: &serde_json::Value, published: Published) -> Vec<Pushed> {
    let digest = subject["digest"].as_str().expect("a descriptor").to_string();
    let sig = push_artifact_with_subject(c, MULTI, COSIGN_SIG, SIMPLESIGNING, subject);
    if published == Published::ByDigestOnly {
        return vec![sig];
    }
    push_referrers_tag(c, MULTI, &digest, &[sig.referrer_descriptor()]);
    let legacy = push_cosign_signature(c, MULTI, &digest);
    vec![sig, legacy]
}

/// `signed` (from [`sign`]) of `subject` is at the destination byte-exact (read back from the
/// registry), listed under the subject's referrers tag there, and the legacy signature is under
/// its `.sig` tag.
fn assert_signature_copied(src: &Client, dst: &Client, subject: &str, signed: &[Pushed]) {
    let sig = &signed[0];
    assert_manifest_copied(src, dst, sig, MULTI, &sig.digest);
    assert_referrers_tag_lists(dst, MULTI, subject, &[sig]);
    if let Some(legacy) = signed.get(1) {
        assert_manifest_copied(src, dst, legacy, MULTI, &format!("{}.sig", referrers_tag(subject)));
    }
}

/// The requests `proxy` received since it had received `since`, as `METHOD path status` lines.
fn requests_since(proxy: &Proxy, since: usize) -> Vec<String> {
    proxy.requests()[since..].iter().map(|r| format!("{} {} {}", r.method, r.uri, r.status)).collect()
}

/// `cosign sign --recursive` after the first mirror of a multi-arch image: the index and each
/// platform manifest get a signature. On the next run the image is unchanged (the index digest
/// is the same), and every signature arrives — the children's too, not only the index's.
#[test]
fn signatures_added_later_to_the_children_of_an_index_arrive_on_the_next_run() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let idx = push_multi(s);
    let job = job(&[&src, &dst], &[(&src.repo("signed/multi:v1"), &[&dst.repo("signed/multi:v1")])]);
    job.run_within(90, &[]).assert_ok();
    assert_index_copied(s, d, &idx, MULTI, "v1");

    let top = descriptor(&idx.media_type, &idx.bytes);
    let mut signed = vec![(idx.digest.clone(), sign(s, &top, Published::FallbackTags))];
    for child in &idx.children {
        let subject = descriptor(&child.media_type, &child.bytes);
        signed.push((child.digest.clone(), sign(s, &subject, Published::FallbackTags)));
    }
    let run = job.run_within(90, &[]);
    run.assert_ok();
    for (subject, sigs) in &signed {
        assert_signature_copied(s, d, subject, sigs);
    }
    assert_index_copied(s, d, &idx, MULTI, "v1");
    assert_rerun_writes_nothing(&job, &dst, &[]);
}

/// A no-op re-run of a multi-arch image whose index is signed (a `sha256-HEX` tag and a `.sig`
/// tag at a source without the referrers API, the Debian registry) costs no request more than it
/// did before the children's referrers were looked up: whether a child has any is read from the
/// tag list the index's own lookup reads anyway, so the index is not read again. Once a child has
/// a signature, comparing it costs what comparing the index's costs.
#[test]
fn a_no_op_rerun_of_a_multi_arch_image_costs_no_request_more() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let idx = push_multi(s);
    let top = sign(s, &descriptor(&idx.media_type, &idx.bytes), Published::FallbackTags);
    let (sp, dp) = (Proxy::start(&src.addr()), Proxy::start(&dst.addr()));
    let job = Job::new(
        &[AuthEntry::insecure(&sp.addr()), AuthEntry::insecure(&dp.addr())],
        &images_yaml_values(&[(sp.repo("signed/multi:v1"), dp.repo("signed/multi:v1"))]),
    );
    job.run_within(90, &[]).assert_ok();
    assert_signature_copied(s, d, &idx.digest, &top);

    // A no-op re-run: how many requests each side received (and what they were, for messages).
    let counted = || {
        let (s0, d0) = (sp.requests().len(), dp.requests().len());
        job.run_within(90, &[]).assert_ok();
        let (at_src, at_dst) = (requests_since(&sp, s0), requests_since(&dp, d0));
        let writes: Vec<&String> = at_dst.iter().filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD")).collect();
        assert!(writes.is_empty(), "writes at the destination: {writes:?}");
        ((at_src.len(), at_dst.len()), format!("source {at_src:#?}\ndestination {at_dst:#?}"))
    };
    // At each side: the image (HEAD `v1`), the referrers API (404: asked once per registry), the
    // index's `sha256-HEX` tag (GET) and its `.sig` tag (HEAD); at the source the tag list, at
    // the destination the listed signature (HEAD by digest). Measured before children's
    // referrers were looked up: the same.
    let (count, requests) = counted();
    assert_eq!(count, (5, 5), "as before children's referrers were looked up:\n{requests}");

    let (child, subject) = arm64_child(&idx);
    let signed = sign(s, &subject, Published::FallbackTags);
    job.run_within(90, &[]).assert_ok();
    assert_signature_copied(s, d, &child, &signed);
    // The same for the child's signature, and the index read once (at the destination) to
    // learn its children: the source's tag list now names a digest other than the index's.
    let (count, requests) = counted();
    assert_eq!(count, (5 + 2, 5 + 3 + 1), "{requests}");
}

/// The digests a source proxy was asked the referrers of (`GET /v2/NAME/referrers/DIGEST`),
/// sorted.
fn referrers_queries(proxy: &Proxy) -> Vec<String> {
    let mut asked: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.path().rsplit_once("/referrers/").map(|(_, d)| d.to_string()))
        .collect();
    asked.sort();
    asked
}

/// A source with the referrers API (a proxy answering it): a signature added to a child after
/// the first mirror is found by one referrers query per child, and arrives (the destination,
/// without the API, lists it under the child's `sha256-HEX` tag). With `--no-referrers` no
/// referrers query is sent at all.
#[test]
fn with_the_referrers_api_a_child_signature_added_later_costs_one_query_per_child() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let idx = push_multi(s);
    let through = |proxy: &Proxy| {
        Job::new(
            &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
            &images_yaml_values(&[(proxy.repo("signed/multi:v1"), dst.repo("signed/multi:v1"))]),
        )
    };
    let before = Proxy::start_with(&src.addr(), ProxyOpts { referrers: Some(Vec::new()), ..ProxyOpts::default() });
    through(&before).run_within(90, &[]).assert_ok();
    assert_index_copied(s, d, &idx, MULTI, "v1");

    let (child, subject) = arm64_child(&idx);
    let signed = sign(s, &subject, Published::ByDigestOnly);
    let listed = vec![(child.clone(), vec![signed[0].referrer_descriptor()])];
    let after = Proxy::start_with(&src.addr(), ProxyOpts { referrers: Some(listed), ..ProxyOpts::default() });
    let job = through(&after);

    job.run_within(90, &["--no-referrers"]).assert_ok();
    assert_eq!(referrers_queries(&after), Vec::<String>::new(), "referrers asked for with --no-referrers");
    assert_eq!(d.head_manifest(MULTI, &signed[0].digest), None, "a referrer copied with --no-referrers");

    job.run_within(90, &[]).assert_ok();
    assert_signature_copied(s, d, &child, &signed);
    let mut want: Vec<String> = idx.children.iter().map(|c| c.digest.clone()).collect();
    // The index's own, and the new signature's (what refers to it follows it too).
    want.extend([idx.digest.clone(), signed[0].digest.clone()]);
    want.sort();
    assert_eq!(
        referrers_queries(&after),
        want,
        "one referrers query per manifest: the index, each child, the signature"
    );
}

/// GitLab's registry has no referrers API and reads `sha256-HEX` as the digest `sha256:HEX`:
/// the referrers "tag" of a manifest serves that manifest itself (oras-project/oras-go#1396). A
/// source doing so (a proxy; its tags cannot be listed here, so each referrers tag is asked for)
/// lists no referrers: the index's children are not taken for its referrers, and no referrers
/// tag is written at the destination.
#[test]
fn a_source_serving_the_subject_at_its_referrers_tag_lists_no_referrers() {
    let src = Registry::start();
    let dst = Registry::start();
    let idx = push_multi(src.api());
    let mut served =
        vec![ServedManifest::new(&format!("manifests/{}", referrers_tag(&idx.digest)), &idx.media_type, &idx.bytes)];
    for c in &idx.children {
        served.push(ServedManifest::new(&format!("manifests/{}", referrers_tag(&c.digest)), &c.media_type, &c.bytes));
    }
    let mut faults = vec![FaultRule::always(Match::TagList, Fault::Status(403))];
    // The served paths' cosign tags (`sha256-HEX.sig`…) are tags, which it does not have.
    for suffix in [".sig", ".att", ".sbom"] {
        faults.push(FaultRule::always(Match::Any, Fault::Code(404, "MANIFEST_UNKNOWN")).on(suffix));
    }
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { served_manifests: served, faults, ..ProxyOpts::default() });
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[(proxy.repo("signed/multi:v1"), dst.repo("signed/multi:v1"))]),
    );
    job.run_within(90, &[]).assert_ok();
    let asked = format!("/v2/{MULTI}/manifests/{}", referrers_tag(&idx.digest));
    assert!(
        proxy.requests().iter().any(|r| r.method == "GET" && r.path() == asked && r.status == 200),
        "the referrers tag was not read: {:?}",
        requests_since(&proxy, 0)
    );
    assert_index_copied(src.api(), dst.api(), &idx, MULTI, "v1");
    assert_eq!(dst.api().tags(MULTI), vec!["v1"], "the index's children taken for its referrers");
    assert_rerun_writes_nothing(&job, &dst, &[]);
}

/// The same registry as a destination: once the image is there, its referrers tag serves the
/// image itself, which is no listing to merge a new signature into. The referrers tag written
/// lists the signature alone (a merge into the index would list its children too).
#[test]
fn a_destination_serving_the_subject_at_its_referrers_tag_gets_a_listing_of_its_own() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let idx = push_multi(s);
    let needle = format!("manifests/{}", referrers_tag(&idx.digest));
    let dp = Proxy::start_with(
        &dst.addr(),
        ProxyOpts {
            served_manifests: vec![ServedManifest::new(&needle, &idx.media_type, &idx.bytes)],
            ..ProxyOpts::default()
        },
    );
    let job = Job::new(
        &[src.auth_entry(), AuthEntry::insecure(&dp.addr())],
        &images_yaml_values(&[(src.repo("signed/multi:v1"), dp.repo("signed/multi:v1"))]),
    );
    job.run_within(90, &[]).assert_ok();

    // Listed under the source's referrers tag, without cosign's `.sig` tag (whose path the
    // proxy would serve the index at too).
    let sig = sign(s, &descriptor(&idx.media_type, &idx.bytes), Published::ByDigestOnly).remove(0);
    push_referrers_tag(s, MULTI, &idx.digest, &[sig.referrer_descriptor()]);
    job.run_within(90, &[]).assert_ok();
    assert_manifest_copied(s, d, &sig, MULTI, &sig.digest);
    let listing = d.get_manifest(MULTI, &referrers_tag(&idx.digest)).expect("a referrers tag at the destination");
    let listed: Vec<String> = listing.json()["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| m["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, vec![sig.digest.clone()], "the referrers tag lists the signature alone");
    assert_index_copied(s, d, &idx, MULTI, "v1");
}
