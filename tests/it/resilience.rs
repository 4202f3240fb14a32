//! Faults between the syncer and a source registry, injected by the harness proxy: transient
//! 503s, a download cut in the middle, and blob redirects to another host (which must not
//! receive the registry credentials).

use crate::common::*;

#[test]
fn transient_503_on_blob_download_is_retried() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "flaky/app", "v1");
    let proxy = Proxy::faulty(&src.addr(), vec![FaultRule::first(2, Match::BlobGet, Fault::Status(503))]);
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let job = Job::new(&auth, &images_yaml(&[(&proxy.repo("flaky/app:v1"), &[&dst.repo("flaky/app")])]));
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "flaky/app", "v1");
    assert!(proxy.blob_gets() >= img.blobs().len() + 2, "blob GETs: {:?}", proxy.requests());
}

#[test]
fn download_cut_in_the_middle_is_retried() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_big_image(src.api(), "cut/app", "v1", 2);
    let proxy = Proxy::faulty(&src.addr(), vec![FaultRule::first(1, Match::BlobGet, Fault::Truncate)]);
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let job = Job::new(&auth, &images_yaml(&[(&proxy.repo("cut/app:v1"), &[&dst.repo("cut/app")])]));
    // One worker so that the big layer's download is the one that gets cut... or the config's:
    // either way one blob download fails half-way and must be retried, never stored corrupt.
    job.run(&["--proc", "1"]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "cut/app", "v1");
    assert!(proxy.blob_gets() > img.blobs().len(), "{:?}", proxy.requests());
}

#[test]
fn blob_redirect_to_another_host_gets_no_credentials() {
    let src = Registry::start_with(RegistryOpts::htpasswd("owner", "redirect-secret"));
    let dst = Registry::start();
    let img = push_simple(src.api(), "redir/app", "v1");
    let idx = push_index(
        src.api(),
        "redir/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "")],
    );
    // The "object storage": fetches from the registry with its own credentials.
    let storage = Proxy::start_with(
        &src.addr(),
        ProxyOpts { upstream_creds: Some(("owner".into(), "redirect-secret".into())), ..ProxyOpts::default() },
    );
    // The registry front: every blob GET is redirected to the storage under another host name.
    let front = Proxy::start_with(
        &src.addr(),
        ProxyOpts { redirect_blobs_to: Some(format!("localhost:{}", storage.port())), ..ProxyOpts::default() },
    );
    let auth = vec![AuthEntry::insecure(&front.addr()).with_creds("owner", "redirect-secret"), dst.auth_entry()];
    let job = Job::new(&auth, &images_yaml(&[(&front.repo("redir/app"), &[&dst.repo("redir/app")])]));
    let run = job.run(&[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "redir/app", "v1");
    assert_index_copied(src.api(), dst.api(), &idx, "redir/app", "multi");
    assert!(front.blob_gets() > 0, "{:?}", front.requests());
    assert!(storage.blob_gets() > 0, "redirects not followed: {:?}", storage.requests());
    let leaked: Vec<ProxyRequest> = storage.requests().into_iter().filter(|r| r.authorization.is_some()).collect();
    assert!(leaked.is_empty(), "credentials sent to the redirect target: {leaked:?}");
    assert!(!run.output().contains("redirect-secret"), "{run}");
}

#[test]
fn a_nearly_spent_pull_budget_is_paced_instead_of_collecting_429s() {
    let src = Registry::start();
    let dst = Registry::start();
    let tags: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
    for t in &tags {
        push_simple(src.api(), "hub/app", t);
    }
    // 3 pulls per 2-second window: 6 images need at least two refills.
    let budget = PullBudget { limit: 3, window: std::time::Duration::from_secs(2) };
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { pull_budget: Some(budget), ..ProxyOpts::default() });
    let mut auth = auth_for(&[&src, &dst]);
    auth.push(AuthEntry::insecure(&proxy.addr()));
    let job = Job::new(&auth, &images_yaml(&[(&proxy.repo("hub/app"), &[&dst.repo("hub/app")])]));
    let run = job.run_within(60, &["--proc", "2"]);
    run.assert_ok();
    assert_eq!(dst.api().tags("hub/app"), tags);
    let refused: Vec<_> = proxy.requests().into_iter().filter(|r| r.status == 429).collect();
    assert!(refused.is_empty(), "{} request(s) hit the limit:\n{run}", refused.len());
    assert!(run.output().contains("rate-limit window"), "the slowdown is said:\n{run}");
    assert!(run.output().contains("to stay within its rate limit"), "each wait is said:\n{run}");
}

/// An index's children are planned side by side: one whose manifest GET meets a 503 (retried
/// after its `Retry-After: 1`) does not hold up its siblings, which are all fetched meanwhile.
#[test]
fn an_index_child_waiting_to_retry_does_not_hold_up_its_siblings() {
    let src = Registry::start();
    let dst = Registry::start();
    let platforms = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7"), ("linux", "s390x", "")];
    let idx = push_index(src.api(), "multi/app", "v1", IndexKind::OciIndex, &platforms);
    let slow = idx.children[0].digest.clone();
    let proxy = Proxy::faulty(
        &src.addr(),
        vec![FaultRule::first(1, Match::ManifestGet, Fault::Status(503)).on(&format!("/manifests/{slow}"))],
    );
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr()), dst.auth_entry()],
        &images_yaml_values(&[(proxy.repo("multi/app:v1"), dst.repo("multi/app:v1"))]),
    );
    job.run_within(90, &["--proc", "4"]).assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "multi/app", "v1");
    let gets: Vec<(String, u16)> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().contains("/manifests/sha256:"))
        .map(|r| (r.path().rsplit('/').next().unwrap_or_default().to_string(), r.status))
        .collect();
    let retried = gets.iter().position(|(d, s)| *d == slow && *s == 200).expect("the slow child was fetched");
    assert_eq!(gets[..retried].iter().filter(|(d, _)| *d == slow).count(), 1, "{gets:?}");
    for sibling in &idx.children[1..] {
        let at = gets.iter().position(|(d, _)| *d == sibling.digest).expect("every sibling was fetched");
        assert!(at < retried, "sibling {} waited for the child being retried: {gets:?}", sibling.digest);
    }
}
