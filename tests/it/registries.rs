//! Every registry our users run, as the test proxy plays it ([`Personality`]): for each, an
//! image with a 12 MiB and a 24 MiB layer syncs byte-exact through the proxy as destination
//! (digests read back from the real registry behind it), and as source where the registry's
//! difference is on the read side — once with `chunked_upload` off and once on. Then: an upload
//! refused before its body is read costs one attempt per registry, and what is handled already
//! stays so (a mount ECR does not honour, Harbor's missing project, Quay's opaque tag pages).

use crate::common::personality::ACR_MAX_SINGLE_REQUEST;
use crate::common::*;

const MIB: usize = 1024 * 1024;

/// Each run's limit: a healthy one takes seconds.
const LIMIT: u64 = 60;

/// The workload: a docker image whose layers are 12 MiB and 24 MiB of random bytes, pushed to
/// `c` as `repo:v1`.
fn workload(c: &Client, repo: &str) -> Image {
    let layers = vec![random_bytes(unique_seed(), 12 * MIB), random_bytes(unique_seed(), 24 * MIB)];
    push_image_with_layers(c, repo, "v1", layers)
}

/// One run of the tool with the destination's `chunked_upload` in one mode.
struct ModeRun {
    mode: &'static str,
    /// The destination repository this run wrote.
    repo: String,
    run: Run,
}

/// Sync `from` (an image or repository at `src_host`) to `dst_host`, into `{to}-single` with
/// `chunked_upload` off and into `{to}-chunked` with it on: one run each, `--retries 0` plus
/// `extra`.
fn sync_each_mode(src_host: &str, from: &str, dst_host: &str, to: &str, extra: &[&str]) -> Vec<ModeRun> {
    [("single", false), ("chunked", true)]
        .into_iter()
        .map(|(mode, chunked)| {
            let repo = format!("{to}-{mode}");
            let auth = [AuthEntry::insecure(src_host), AuthEntry::insecure(dst_host).chunked(chunked)];
            let job = Job::new(&auth, &images_yaml(&[(from, &[&format!("{dst_host}/{repo}")])]));
            let mut args = vec!["--retries", "0"];
            args.extend_from_slice(extra);
            ModeRun { mode, repo, run: job.run_within(LIMIT, &args) }
        })
        .collect()
}

/// Panics unless every run succeeded, naming each mode's outcome (and the first failing run's
/// whole output); then `check`s each run's destination repository.
fn assert_synced(runs: &[ModeRun], check: impl Fn(&str)) {
    let outcome = |m: &ModeRun| match m.run.success() {
        true => format!("chunked_upload {}: ok", m.mode),
        false => {
            let lines = m.run.lines_with(&["failed: ", " -> "]);
            let why = lines.first().cloned().unwrap_or_else(|| m.run.stderr.lines().last().unwrap_or("").to_string());
            format!("chunked_upload {}: FAILED: {why}", m.mode)
        }
    };
    if let Some(failed) = runs.iter().find(|m| !m.run.success()) {
        let summary: Vec<String> = runs.iter().map(outcome).collect();
        panic!("{}\n\nfirst failed run ({}):\n{}", summary.join("\n"), failed.mode, failed.run);
    }
    for m in runs {
        m.run.assert_no_panic();
        check(&m.repo);
    }
}

/// The requests of `proxy` as one line each, for failure messages.
fn request_log(proxy: &Proxy) -> String {
    let line = |r: &ProxyRequest| {
        let len = r.declared_len().unwrap_or(r.body_len);
        let expect = if r.expect_continue { " expect-100" } else { "" };
        let unread = if r.body_read { "" } else { " body-unread" };
        format!("{} {} {} ({len} bytes{expect}{unread})", r.status, r.method, short_uri(&r.uri))
    };
    proxy.requests().iter().map(line).collect::<Vec<_>>().join("\n")
}

/// `uri` without distribution's long `_state` upload parameter.
fn short_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else { return uri.to_string() };
    let kept: Vec<&str> = query.split('&').filter(|kv| !kv.starts_with("_state=")).collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[test]
fn ecr_patch_answered_201_with_a_range_that_does_not_advance() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "ecr/app");
    let ecr = Proxy::like(&dst.addr(), Personality::Ecr);
    // ECR's layer parts are 5 to 10 MiB (its quotas page): several chunks per layer.
    let runs = sync_each_mode(&src.addr(), &src.repo("ecr/app:v1"), &ecr.addr(), "ecr/app", &["--chunk-size", "10MiB"]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
    let stale = ecr.requests().iter().filter(|r| r.is(Match::LaterChunk) && r.status == 201).count();
    assert!(stale > 0, "no later chunk met ECR's answer (201, stale Range):\n{}", request_log(&ecr));
}

#[test]
fn ghcr_refusing_patch_bodies_over_4_mib() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "ghcr/app");
    let ghcr = Proxy::like(&dst.addr(), Personality::Ghcr);
    let runs = sync_each_mode(&src.addr(), &src.repo("ghcr/app:v1"), &ghcr.addr(), "ghcr/app", &[]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
}

#[test]
fn artifact_registry_refusing_every_patch() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "gar/app");
    let gar = Proxy::like(&dst.addr(), Personality::ArtifactRegistry);
    let runs = sync_each_mode(&src.addr(), &src.repo("gar/app:v1"), &gar.addr(), "gar/app", &[]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
}

#[test]
fn artifactory_refusing_single_request_uploads_and_manifests_without_json_accept() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "jfrog/app");
    // Artifactory on both sides: the source's manifest GETs meet the 406 too.
    let from = Proxy::like(&src.addr(), Personality::Artifactory);
    let to = Proxy::like(&dst.addr(), Personality::Artifactory);
    let runs = sync_each_mode(&from.addr(), &from.repo("jfrog/app:v1"), &to.addr(), "jfrog/app", &[]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
}

#[test]
fn acr_refusing_a_big_single_request_before_reading_it() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "acr/app");
    // ~20 MB: the 24 MiB layer is refused in one request, the 12 MiB one is not.
    let acr = Proxy::like(&dst.addr(), Personality::Acr { max_single_request: ACR_MAX_SINGLE_REQUEST });
    let runs = sync_each_mode(&src.addr(), &src.repo("acr/app:v1"), &acr.addr(), "acr/app", &[]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
}

#[test]
fn nginx_refusing_bodies_over_client_max_body_size_at_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "nginx/app");
    // Between the two layers: a single request and a default-size chunk of the 24 MiB layer are
    // both refused.
    let nginx = Proxy::like(&dst.addr(), Personality::Nginx { client_max_body_size: 16 * MIB });
    let runs = sync_each_mode(&src.addr(), &src.repo("nginx/app:v1"), &nginx.addr(), "nginx/app", &[]);
    assert_synced(&runs, |repo| assert_image_copied(src.api(), dst.api(), &img, repo, "v1"));
}

#[test]
fn quay_opaque_next_page_tag_pagination_lists_every_tag() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "quay/app");
    let mut tags = vec!["v1".to_string()];
    for i in 2..=7 {
        let tag = format!("v{i}");
        tag_image(src.api(), &img, &tag);
        tags.push(tag);
    }
    tags.sort();
    // Quay on both sides; its tag pages hold 2 tags here (50 on quay.io): 4 pages per listing.
    let from = Proxy::like(&src.addr(), Personality::Quay { page_size: 2 });
    let to = Proxy::like(&dst.addr(), Personality::Quay { page_size: 2 });
    let runs = sync_each_mode(&from.addr(), &from.repo("quay/app"), &to.addr(), "quay/app", &[]);
    assert_synced(&runs, |repo| {
        assert_eq!(dst.api().tags(repo), tags, "{repo}: every tag of every page");
        assert_image_copied(src.api(), dst.api(), &img, repo, "v7");
    });
    let listings: Vec<ProxyRequest> = from.requests().into_iter().filter(|r| r.is(Match::TagList)).collect();
    let followed = listings.iter().filter(|r| r.uri.contains("next_page=")).count();
    assert!(followed >= 2 * 3, "each listing followed its 3 next pages:\n{}", request_log(&from));
    assert!(listings.iter().all(|r| !r.uri.contains("last=")), "a page asked by `last`:\n{}", request_log(&from));
}

/// ACR and nginx refuse a body over their limit before reading it and close the connection:
/// each registry costs one refused single-request upload, then every big blob goes by PATCH.
#[test]
fn upload_refused_before_its_body_is_read_costs_one_attempt_per_registry() {
    let src = Registry::start();
    let dst = Registry::start();
    let a = push_image_with_layers(src.api(), "big/a", "v1", vec![random_bytes(unique_seed(), 24 * MIB)]);
    let b = push_image_with_layers(src.api(), "big/b", "v1", vec![random_bytes(unique_seed(), 24 * MIB)]);
    let acr = Proxy::like(&dst.addr(), Personality::Acr { max_single_request: ACR_MAX_SINGLE_REQUEST });
    let nginx = Proxy::like(&dst.addr(), Personality::Nginx { client_max_body_size: 16 * MIB });
    let images = images_yaml(&[
        (&src.repo("big/a:v1"), &[&acr.repo("acr/a"), &nginx.repo("nginx/a")]),
        (&src.repo("big/b:v1"), &[&acr.repo("acr/b"), &nginx.repo("nginx/b")]),
    ]);
    let auth = [AuthEntry::insecure(&src.addr()), AuthEntry::insecure(&acr.addr()), AuthEntry::insecure(&nginx.addr())];
    // Workers enough to send all four uploads at once: while one large single request tests a
    // registry, the others wait for its answer instead of being refused too.
    let run = Job::new(&auth, &images).run_within(LIMIT, &["--retries", "0", "--proc", "4"]);
    let log = format!("acr:\n{}\n\nnginx:\n{}", request_log(&acr), request_log(&nginx));
    assert!(run.success(), "{run}\n\n{log}");
    for (img, name) in [(&a, "a"), (&b, "b")] {
        assert_image_copied(src.api(), dst.api(), img, &format!("acr/{name}"), "v1");
        assert_image_copied(src.api(), dst.api(), img, &format!("nginx/{name}"), "v1");
    }
    for proxy in [&acr, &nginx] {
        let refused = proxy.requests().iter().filter(|r| r.is(Match::MonolithicPut) && r.status == 413).count();
        assert!(refused <= 1, "{refused} single-request uploads refused by one registry:\n{log}");
    }
}

/// ECR does not honour a cross-repository mount: it answers the `POST ?mount=` with a plain
/// upload session (202), which the blob is then uploaded into.
#[test]
fn ecr_mount_not_honoured_falls_back_to_an_upload() {
    let reg = Registry::start();
    let img = push_simple(reg.api(), "base/app", "v1");
    let ecr = Proxy::like(&reg.addr(), Personality::Ecr);
    let job = Job::new(
        &[AuthEntry::insecure(&ecr.addr())],
        &images_yaml(&[(&ecr.repo("base/app:v1"), &[&ecr.repo("copy/app")])]),
    );
    let run = job.run_within(LIMIT, &["--retries", "0"]);
    assert!(run.success(), "{run}\n\n{}", request_log(&ecr));
    assert_image_copied(reg.api(), reg.api(), &img, "copy/app", "v1");
    let mounts: Vec<ProxyRequest> =
        ecr.requests().into_iter().filter(|r| r.is(Match::UploadStart) && r.uri.contains("mount=")).collect();
    assert!(
        !mounts.is_empty() && mounts.iter().all(|r| r.status == 202),
        "mounts asked, answered 202:\n{}",
        request_log(&ecr)
    );
}

/// Harbor: the workload arrives in a project that exists; a push into one that does not fails
/// that image with the registry's message and a hint while the others arrive; a mount from such
/// a project is answered 401 and the blob is uploaded instead.
#[test]
fn harbor_missing_project_fails_that_image_and_a_mount_from_one_falls_back() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = workload(src.api(), "app/x");
    let legacy = push_simple(dst.api(), "legacy/app", "v1");
    let missing = vec!["noproj".to_string(), "legacy".to_string()];
    let harbor = Proxy::like(&dst.addr(), Personality::Harbor { missing_projects: missing });
    for (mode, chunked) in [("single", false), ("chunked", true)] {
        let to = |repo: &str| harbor.repo(&format!("{repo}-{mode}"));
        let images = images_yaml(&[
            (&src.repo("app/x:v1"), &[&to("noproj/x"), &to("lib/x")]),
            (&harbor.repo("legacy/app:v1"), &[&to("lib/legacy")]),
        ]);
        let auth = [AuthEntry::insecure(&src.addr()), AuthEntry::insecure(&harbor.addr()).chunked(chunked)];
        let run = Job::new(&auth, &images).run_within(LIMIT, &["--retries", "0"]);
        let log = request_log(&harbor);
        run.assert_failed();
        assert_eq!(run.failed_count(), Some(1), "chunked_upload {mode}: {run}\n\n{log}");
        let failed = run.lines_with(&["failed: ", "noproj/x"]);
        let line = failed.first().unwrap_or_else(|| panic!("no failure for noproj/x:\n{run}"));
        assert!(line.contains("project noproj not found") && line.contains("create it first"), "{line}");
        assert_image_copied(src.api(), dst.api(), &img, &format!("lib/x-{mode}"), "v1");
        assert_image_copied(dst.api(), dst.api(), &legacy, &format!("lib/legacy-{mode}"), "v1");
    }
    let refused = |r: &ProxyRequest| r.is(Match::UploadStart) && r.uri.contains("from=legacy") && r.status == 401;
    let log = request_log(&harbor);
    assert!(harbor.requests().iter().any(refused), "a mount from legacy was asked and refused:\n{log}");
}
