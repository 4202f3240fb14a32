//! Never hang, never lose: the syncer against servers that misbehave on purpose. Faults are
//! injected by the harness [`Proxy`] between the binary and real registries (on the source side,
//! the destination side, or both); every result is checked by reading the real registries
//! directly, never through a proxy. Every run has a time limit, so a regression to a hang
//! fails the test instead of blocking CI.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;

/// Real source and destination registries, each behind a proxy the syncer talks to.
struct Sides {
    src: Registry,
    dst: Registry,
    sp: Proxy,
    dp: Proxy,
}

impl Sides {
    fn new(src_opts: ProxyOpts, dst_opts: ProxyOpts) -> Sides {
        let (src, dst) = (Registry::start(), Registry::start());
        let sp = Proxy::start_with(&src.addr(), src_opts);
        let dp = Proxy::start_with(&dst.addr(), dst_opts);
        Sides { src, dst, sp, dp }
    }

    /// Faults on the source side only.
    fn source_faults(faults: Vec<FaultRule>) -> Sides {
        Sides::new(ProxyOpts { faults, ..ProxyOpts::default() }, ProxyOpts::default())
    }

    /// A job copying `repo` (all its tags, or `repo:tags`) through both proxies to `copy/REPO`.
    fn job(&self, sources: &[&str]) -> Job {
        let rules: Vec<(String, String)> = sources
            .iter()
            .map(|s| (self.sp.repo(s), self.dp.repo(&format!("copy/{}", s.split(':').next().unwrap()))))
            .collect();
        let auth = [AuthEntry::insecure(&self.sp.addr()), AuthEntry::insecure(&self.dp.addr())];
        Job::new(&auth, &images_yaml_values(&rules))
    }

    /// Blob GETs the source proxy received for `digest`.
    fn blob_gets_of(&self, digest: &str) -> usize {
        self.sp.requests().iter().filter(|r| r.is(Match::BlobGet) && r.path().ends_with(digest)).count()
    }
}

/// Three small images `REPO:a`, `REPO:b`, `REPO:c` at the source.
fn three_images(src: &Registry, repo: &str) -> Vec<Image> {
    ["a", "b", "c"].iter().map(|t| push_simple(src.api(), repo, t)).collect()
}

/// The run failed (exit 1) naming `image` and `digest` on a `failed:` line; `dst_repo:tag` has
/// no manifest; every image in `ok` arrived byte-exact.
fn assert_one_image_failed(run: &Run, s: &Sides, failed: (&str, &str), digest: &str, ok: &[(&Image, &str)]) {
    assert_eq!(run.code, Some(1), "exit code 1 when an image fails:\n{run}");
    run.assert_no_panic();
    let (repo, tag) = failed;
    let line = run
        .output()
        .lines()
        .find(|l| l.contains("failed: ") && l.contains(&format!("{repo}:{tag}")))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no failed: line names {repo}:{tag}:\n{run}"));
    assert!(line.contains(digest), "the failed line names the blob {digest}: {line}");
    assert_eq!(run.failed_count(), Some(1), "one image failed:\n{run}");
    assert!(
        s.dst.api().get_manifest(&format!("copy/{repo}"), tag).is_none(),
        "no manifest for the failed image at the destination"
    );
    for (img, tag) in ok {
        assert_image_copied(s.src.api(), s.dst.api(), img, &format!("copy/{}", img.repo), tag);
    }
}

/// Every manifest the destination holds in `repo` has all its blobs there (a run stopped half-way
/// must never leave a manifest that references a missing blob).
fn assert_destination_consistent(dst: &Registry, repo: &str) -> usize {
    let tags = dst.api().tags(repo);
    for tag in &tags {
        let m = dst.api().get_manifest(repo, tag).expect("listed tag has a manifest");
        let v = m.json();
        let mut blobs: Vec<String> = v["layers"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l["digest"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some(c) = v["config"]["digest"].as_str() {
            blobs.push(c.to_string());
        }
        for b in blobs {
            assert!(dst.api().blob_exists(repo, &b), "{repo}:{tag} references {b}, which the destination lacks");
        }
    }
    tags.len()
}

#[test]
fn fault_workload_through_both_sides_arrives_whole() {
    let seed = unique_seed();
    eprintln!("fault seed: {seed:#x}");
    let source_faults = vec![
        Fault::Drop,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(429),
        Fault::RetryAfterDate,
        Fault::Flip,
        Fault::Truncate,
        Fault::Short,
        Fault::Long,
        Fault::StallHead,
        Fault::StallBody,
        Fault::Trickle(300),
    ];
    let dest_faults = vec![
        Fault::Drop,
        Fault::DropAfter,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Status(429),
        Fault::CutRequest,
    ];
    let s = Sides::new(
        ProxyOpts { random: Some(RandomFaults { seed, per_mille: 80, faults: source_faults }), ..ProxyOpts::default() },
        ProxyOpts {
            random: Some(RandomFaults { seed: seed ^ 1, per_mille: 40, faults: dest_faults }),
            ..ProxyOpts::default()
        },
    );
    // 24 images in two repositories; every image shares a base layer with the others of its
    // repository, plus one layer of its own. And a multi-arch index.
    let mut images = Vec::new();
    for repo in ["work/api", "work/web"] {
        let base = random_bytes(unique_seed(), 40_000);
        for i in 0..12 {
            let own = random_bytes(unique_seed(), 5_000 + i * 700);
            images.push(push_image_with_layers(s.src.api(), repo, &format!("v{i}"), vec![base.clone(), own]));
        }
    }
    let idx = push_index(
        s.src.api(),
        "work/multi",
        "latest",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "s390x", "")],
    );
    let job = s.job(&["work/api", "work/web", "work/multi"]);
    // Longer than the default limit: the faults are drawn at random from a new seed each time
    // (stalls of 2 s, trickles, retries with back-off), so an unlucky draw may take several
    // times the few seconds a run usually takes, and a slow run is no failure here; a hang is.
    let run = job.run_within(300, &["--proc", "4", "--retries", "3", "--stall-timeout", "2"]);
    eprintln!("source faults: {:?}", s.sp.fault_counts());
    eprintln!("destination faults: {:?}", s.dp.fault_counts());
    eprintln!("requests: source {}, destination {}", s.sp.requests().len(), s.dp.requests().len());
    run.assert_ok();
    assert!(s.sp.faults_injected() >= 3 && s.dp.faults_injected() >= 3, "the proxies did inject faults");
    for img in &images {
        let tag = s
            .src
            .api()
            .tags(&img.repo)
            .into_iter()
            .find(|t| s.src.api().get_manifest(&img.repo, t).is_some_and(|m| m.digest == img.digest));
        assert_image_copied(s.src.api(), s.dst.api(), img, &format!("copy/{}", img.repo), &tag.unwrap());
    }
    assert_index_copied(s.src.api(), s.dst.api(), &idx, "copy/work/multi", "latest");
}

/// A blob whose answer never comes (`StallHead`) or stops half-way (`StallBody`): the transfer
/// is abandoned after `--stall-timeout`, the image fails, the others arrive.
fn stalled_blob(fault: Fault) {
    let s = Sides::source_faults(Vec::new());
    let imgs = three_images(&s.src, "stall/app");
    let bad = imgs[1].layers[0].clone();
    s.sp.set_faults(vec![FaultRule::always(Match::BlobGet, fault).on(&bad)]);
    let started = Instant::now();
    let run = s.job(&["stall/app"]).run_within(90, &["--stall-timeout", "1", "--retries", "0"]);
    assert_one_image_failed(&run, &s, ("stall/app", "b"), &bad, &[(&imgs[0], "a"), (&imgs[2], "c")]);
    assert!(s.blob_gets_of(&bad) >= 2, "a stall is transient: retried");
    eprintln!("{fault:?}: finished in {:?}", started.elapsed());
}

#[test]
fn stall_before_the_answer_fails_only_that_image() {
    stalled_blob(Fault::StallHead);
}

#[test]
fn stall_in_the_middle_of_a_body_fails_only_that_image() {
    stalled_blob(Fault::StallBody);
}

#[test]
fn trickle_below_min_speed_fails_only_that_image() {
    // 5 bytes a second: each read returns quickly, so only the speed floor can end it (the
    // layer is a few KiB: at this pace one attempt alone would take over ten minutes).
    let s = Sides::source_faults(Vec::new());
    let imgs = three_images(&s.src, "slow/app");
    let bad = imgs[2].layers[1].clone();
    s.sp.set_faults(vec![FaultRule::always(Match::BlobGet, Fault::Trickle(200)).on(&bad)]);
    let run = s.job(&["slow/app"]).run_within(90, &["--stall-timeout", "2", "--min-speed", "1KiB", "--retries", "0"]);
    assert_one_image_failed(&run, &s, ("slow/app", "c"), &bad, &[(&imgs[0], "a"), (&imgs[1], "b")]);
}

/// A blob answered with a body of the wrong length, well framed: refused before the upload
/// commits anything; the image fails naming the blob.
fn wrong_length(fault: Fault) {
    let s = Sides::source_faults(Vec::new());
    let imgs = three_images(&s.src, "len/app");
    let bad = imgs[0].layers[0].clone();
    s.sp.set_faults(vec![FaultRule::always(Match::BlobGet, fault).on(&bad)]);
    let run = s.job(&["len/app"]).run_within(60, &["--retries", "0"]);
    assert_one_image_failed(&run, &s, ("len/app", "a"), &bad, &[(&imgs[1], "b"), (&imgs[2], "c")]);
    assert!(!s.dst.api().blob_exists("copy/len/app", &bad), "no blob committed from a wrong-length body");
}

#[test]
fn short_body_fails_the_image_naming_the_blob() {
    wrong_length(Fault::Short);
}

#[test]
fn long_body_fails_the_image_naming_the_blob() {
    wrong_length(Fault::Long);
}

#[test]
fn permanently_corrupt_blob_is_retried_within_the_policy() {
    let s = Sides::source_faults(Vec::new());
    let imgs = three_images(&s.src, "rot/app");
    let bad = imgs[1].config_digest.clone();
    s.sp.set_faults(vec![FaultRule::always(Match::BlobGet, Fault::Flip).on(&bad)]);
    let retries = 1;
    let run = s.job(&["rot/app"]).run(&["--retries", &retries.to_string()]);
    assert_one_image_failed(&run, &s, ("rot/app", "b"), &bad, &[(&imgs[0], "a"), (&imgs[2], "c")]);
    let gets = s.blob_gets_of(&bad);
    // 4 attempts per operation, and one more operation per --retries pass.
    assert!((2..=4 * (1 + retries)).contains(&gets), "{gets} GETs of the corrupt blob");
    assert!(!s.dst.api().blob_exists("copy/rot/app", &bad), "nothing committed under a wrong digest");
}

#[test]
fn sigterm_mid_run_leaves_a_consistent_destination_and_a_rerun_completes() {
    // Every source request is held 60 ms and one worker copies: the run takes seconds, and the
    // signal lands while it is copying.
    let s = Sides::new(ProxyOpts { delay: Duration::from_millis(60), ..ProxyOpts::default() }, ProxyOpts::default());
    let imgs: Vec<Image> = (0..10).map(|i| push_simple(s.src.api(), "term/app", &format!("t{i}"))).collect();
    let job = s.job(&["term/app"]);
    let mut running = Running::spawn(&job.args(&["--proc", "1"]), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.dp.count(Match::ManifestPut) == 0 {
        assert!(running.is_running() && Instant::now() < deadline, "no manifest pushed before the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal("TERM");
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code, Some(143), "SIGTERM exits 143:\n{run}");
    run.assert_no_panic();
    assert!(run.output().contains("Synchronization finished"), "the summary is printed:\n{run}");
    let copied = assert_destination_consistent(&s.dst, "copy/term/app");
    assert!(copied < imgs.len(), "the signal stopped the run before the end ({copied} copied)");

    let before = s.dp.count(Match::ManifestPut);
    let rerun = job.run(&[]);
    rerun.assert_ok();
    for (i, img) in imgs.iter().enumerate() {
        assert_image_copied(s.src.api(), s.dst.api(), img, "copy/term/app", &format!("t{i}"));
    }
    let pushed = s.dp.count(Match::ManifestPut) - before;
    assert!(pushed <= imgs.len() - copied, "the re-run pushes only what is missing: {pushed}");
}

#[test]
fn failed_images_file_fed_back_retries_exactly_those() {
    let s = Sides::source_faults(Vec::new());
    let imgs = three_images(&s.src, "again/app");
    let other = push_simple(s.src.api(), "again/other", "x");
    let bad = imgs[2].layers[0].clone();
    s.sp.set_faults(vec![FaultRule::always(Match::BlobGet, Fault::Status(500)).on(&bad)]);
    let job = s.job(&["again/app", "again/other"]);
    let failed = job.dir.join("failed.yaml");
    let run = job.run(&["--retries", "0", "--output-failed-images", p(&failed)]);
    assert_eq!(run.code, Some(1), "{run}");
    assert_image_copied(s.src.api(), s.dst.api(), &other, "copy/again/other", "x");
    let text = std::fs::read_to_string(&failed).expect("failed-images file written");
    assert!(text.contains(&s.sp.repo("again/app:c")), "the failed image is listed:\n{text}");
    assert!(!text.contains(":a") && !text.contains(":b") && !text.contains("again/other"), "only it:\n{text}");

    s.sp.set_faults(Vec::new());
    s.dst.clear_requests();
    let mark = s.sp.requests().len();
    let retry =
        run_syncer_within(&["--auth", p(&job.auth), "--images", p(&failed), "--retries", "0"], Duration::from_secs(60));
    retry.assert_ok();
    assert_image_copied(s.src.api(), s.dst.api(), &imgs[2], "copy/again/app", "c");
    let fetched: BTreeSet<String> =
        s.sp.requests()[mark..].iter().filter(|r| r.is(Match::ManifestGet)).map(|r| r.path().to_string()).collect();
    assert_eq!(fetched, BTreeSet::from(["/v2/again/app/manifests/c".to_string()]), "only the failed image is read");
    let pushed: Vec<Request> = s.dst.requests().into_iter().filter(|r| r.is_manifest_put()).collect();
    assert_eq!(pushed.len(), 1, "only the failed image is pushed: {pushed:?}");
}

#[test]
fn body_size_limit_413_gets_chunks_under_the_limit() {
    let limit = 256 * 1024;
    let s = Sides::new(ProxyOpts::default(), ProxyOpts { max_body: Some(limit), ..ProxyOpts::default() });
    let img = push_big_image(s.src.api(), "big/app", "v1", 2);
    let run = s.job(&["big/app"]).run(&["--chunk-size", "1MiB", "--proc", "1"]);
    run.assert_ok();
    assert_image_copied(s.src.api(), s.dst.api(), &img, "copy/big/app", "v1");
    let reqs = s.dp.requests();
    assert!(reqs.iter().any(|r| r.status == 413), "the limit was hit at least once");
    let accepted: Vec<&ProxyRequest> = reqs.iter().filter(|r| r.body_len > 0 && r.status != 413).collect();
    assert!(!accepted.is_empty());
    for r in &accepted {
        assert!(r.body_len <= limit, "{} {} carried {} bytes", r.method, r.uri, r.body_len);
    }
    let patched: usize = accepted.iter().filter(|r| r.is(Match::UploadPatch)).map(|r| r.body_len).sum();
    assert!(patched >= 2 * 1024 * 1024, "the big layer went up in chunks ({patched} bytes patched)");
}

/// Copies `cut/app:v1` (a 2 MiB layer) in 512 KiB chunks through a destination proxy that
/// injects `fault` once, on a chunk after the first; returns the run, the image, both proxies'
/// requests and the index of the faulted request.
fn chunked_copy_with(fault: Fault) -> (Run, Sides, Image, usize) {
    let faults = vec![FaultRule::first(1, Match::LaterChunk, fault)];
    let s = Sides::new(ProxyOpts::default(), ProxyOpts { faults, ..ProxyOpts::default() });
    let img = push_big_image(s.src.api(), "cut/app", "v1", 2);
    let dir = TestDir::new("cut");
    let auth =
        format!("{}: {{insecure: true}}\n{}: {{insecure: true, chunked_upload: true}}\n", s.sp.addr(), s.dp.addr());
    let auth = dir.write("auth.yaml", &auth);
    let images = dir.write("images.yaml", &format!("{}: {}\n", s.sp.repo("cut/app:v1"), s.dp.repo("copy/cut/app")));
    let run = run_syncer(&["--auth", p(&auth), "--images", p(&images), "--chunk-size", "512KiB", "--proc", "1"]);
    run.assert_ok();
    assert_image_copied(s.src.api(), s.dst.api(), &img, "copy/cut/app", "v1");
    let at = s.dp.requests().iter().position(|r| r.fault == Some(fault)).expect("the fault was injected");
    (run, s, img, at)
}

#[test]
fn cut_chunk_resumes_from_the_registry_offset() {
    // The connection drops before the registry got any of the chunk: the session is intact and
    // says how much it holds.
    let (run, s, _img, cut) = chunked_copy_with(Fault::Drop);
    let reqs = s.dp.requests();
    let status = reqs[cut..]
        .iter()
        .position(|r| r.method == "GET" && r.path().contains("/blobs/uploads/"))
        .expect("the upload status was asked (GET upload location)");
    let resumed = reqs[cut + status..].iter().find(|r| r.is(Match::UploadPatch)).expect("a PATCH after the cut");
    let range = resumed.header("content-range").unwrap_or_default();
    assert_eq!(range, reqs[cut].header("content-range").unwrap_or_default(), "resumed at the registry's offset");
    assert!(!range.starts_with("0-"), "not from byte 0: {range}");
    let ranged: Vec<ProxyRequest> =
        s.sp.requests().into_iter().filter(|r| r.is(Match::BlobGet) && r.header("range").is_some()).collect();
    assert!(!ranged.is_empty(), "the source was re-read from the offset with a Range GET");
    assert!(run.output().contains("resuming at byte"), "{run}");
}

#[test]
fn chunk_cut_after_a_partial_write_restarts_the_blob() {
    // Half the chunk reached the registry before the cut: distribution then refuses the session
    // (its state no longer matches what it stored), so the blob starts over in a new one.
    let (run, s, _img, cut) = chunked_copy_with(Fault::CutRequest);
    let reqs = s.dp.requests();
    assert!(
        reqs[cut..].iter().any(|r| r.is(Match::UploadStart)),
        "a new upload session was opened after the cut: {reqs:#?}"
    );
    assert!(run.output().contains("restarting the blob"), "the restart is logged:\n{run}");
}

#[test]
fn one_worker_pushes_the_first_image_before_fetching_the_last() {
    let s = Sides::new(ProxyOpts::default(), ProxyOpts::default());
    let tags: Vec<String> = (0..12).map(|i| format!("t{i:02}")).collect();
    for t in &tags {
        push_simple(s.src.api(), "order/app", t);
    }
    s.job(&["order/app"]).run(&["--proc", "1"]).assert_ok();
    let first_put = s.dp.requests().into_iter().find(|r| r.is(Match::ManifestPut)).expect("a manifest PUT").at;
    let last_get =
        s.sp.requests().into_iter().filter(|r| r.is(Match::ManifestGet)).map(|r| r.at).max().expect("manifest GETs");
    assert!(first_put < last_get, "depth first: the first image lands before the last manifest is fetched");
}
