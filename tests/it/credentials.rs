//! Where credentials come from when the auth file has none: docker's `config.json`
//! (`$DOCKER_CONFIG`) and podman's `auth.json` (`$REGISTRY_AUTH_FILE`); the auth file wins when
//! it has some. And the warning for an auth key that matches no image (a typo).

use crate::common::private::{AuthKey, PrivateJob};
use crate::common::*;

const USER: &str = "cfg-user";
const PASS: &str = "D0cker-Cfg-Pa55-grue";
const WRONG: &str = "Wr0ng-D0cker-Pa55-lurk";

fn rule<'a>(src: &'a str, dst: &'a [&'a str]) -> (&'a str, &'a [&'a str]) {
    (src, dst)
}

#[test]
fn docker_config_supplies_credentials_for_a_key_without_any() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd(USER, PASS));
    let img = push_simple(src.api(), "app/cfg", "v1");
    let (from, to) = (src.repo("app/cfg:v1"), dst.repo("app/cfg"));
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).insecure()],
        &[rule(&from, &[&to])],
    );
    job.docker_login(&[(&dst.addr(), USER, PASS)]);
    let run = job.run(&[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/cfg", "v1");
    assert_no_secrets(&[("output", &run.output())], &[PASS], &[(USER, PASS)]);
}

#[test]
fn docker_config_supplies_credentials_for_a_registry_without_a_key() {
    // No key at all for the (htpasswd) source: 127.0.0.1 means plain http, and the login comes
    // from config.json.
    let src = Registry::start_with(RegistryOpts::htpasswd(USER, PASS));
    let dst = Registry::start();
    let img = push_image(src.api(), "app/nokey", "v1", ImageKind::Oci, "linux", "arm64", "v8");
    let (from, to) = (src.repo("app/nokey:v1"), dst.repo("app/nokey"));
    let job = PrivateJob::new(&[AuthKey::new(&dst.addr()).insecure()], &[rule(&from, &[&to])]);
    job.docker_login(&[(&src.addr(), USER, PASS)]);
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/nokey", "v1");
}

#[test]
fn wrong_password_in_docker_config_fails_clearly() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd(USER, PASS));
    push_simple(src.api(), "app/cfg-wrong", "v1");
    let (from, to) = (src.repo("app/cfg-wrong:v1"), dst.repo("app/cfg-wrong"));
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).insecure()],
        &[rule(&from, &[&to])],
    );
    job.docker_login(&[(&dst.addr(), USER, WRONG)]);
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    run.assert_stderr_names(&dst.addr(), &["unauthorized"]);
    assert_no_secrets(&[("output", &run.output())], &[WRONG], &[(USER, WRONG)]);
    assert!(dst.api().tags("app/cfg-wrong").is_empty());
}

#[test]
fn podman_auth_file_is_used_when_docker_has_no_login() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd(USER, PASS));
    let img = push_simple(src.api(), "app/podman", "v1");
    let (from, to) = (src.repo("app/podman:v1"), dst.repo("app/podman"));
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).insecure()],
        &[rule(&from, &[&to])],
    );
    job.podman_login(&[(&dst.addr(), USER, PASS)]);
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/podman", "v1");
}

#[test]
fn auth_file_credentials_win_over_docker_config() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd(USER, PASS));
    let img = push_simple(src.api(), "app/precedence", "v1");
    let (from, to) = (src.repo("app/precedence:v1"), dst.repo("app/precedence"));
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).creds(USER, PASS).insecure()],
        &[rule(&from, &[&to])],
    );
    job.docker_login(&[(&dst.addr(), USER, WRONG)]);
    job.podman_login(&[(&dst.addr(), USER, WRONG)]);
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/precedence", "v1");
}

#[test]
fn auth_key_matching_no_image_is_warned_about() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "team/app", "v1");
    let (from, to) = (src.repo("team/app:v1"), dst.repo("team/app"));
    let namespace_typo = format!("{}/taem", src.addr());
    let job = PrivateJob::new(
        &[
            AuthKey::new(&src.addr()).insecure(),
            AuthKey::new(&dst.addr()).insecure(),
            AuthKey::new("127.0.0.1:1/typo").insecure(),
            AuthKey::new(&namespace_typo).insecure(),
        ],
        &[rule(&from, &[&to])],
    );
    let run = job.run(&[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "team/app", "v1");
    for key in ["127.0.0.1:1/typo", namespace_typo.as_str()] {
        let needle = format!("auth key \"{key}\" matches no image");
        let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&needle)).collect();
        assert_eq!(lines.len(), 1, "one warning naming {key:?}:\n{run}");
        assert!(contains_any_ci(lines[0], &["warn"]), "at warning level:\n{run}");
    }
    for used in [src.addr(), dst.addr()] {
        assert!(!run.stderr.contains(&format!("auth key \"{used}\" matches no image")), "false warning:\n{run}");
    }
}

/// A Harbor robot account's name holds a `$` (`robot$ci+sync`): it is sent as written, not
/// read as the unset variable `$ci`.
#[test]
fn robot_account_names_keep_their_dollar() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("robot$ci+sync", "r0bot-Pa55"));
    let img = push_simple(src.api(), "app/robot", "v1");
    let auth =
        [AuthEntry::insecure(&src.addr()), AuthEntry::insecure(&dst.addr()).with_creds("robot$ci+sync", "r0bot-Pa55")];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("app/robot:v1"), &[&dst.repo("app/robot")])]));
    let run = job.run_within(60, &[]);
    run.assert_ok();
    assert!(!run.output().contains("not set"), "no unset-variable warning:\n{run}");
    assert_image_copied(src.api(), dst.api(), &img, "app/robot", "v1");
}

/// An upload `Location` on another origin gets no `Authorization` (with Basic auth that header
/// is the password): the upload is refused there and the image fails cleanly instead.
#[test]
fn credentials_never_follow_a_location_to_another_origin() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("writer", "0rigin-Pa55-kept"));
    let elsewhere = Proxy::start(&dst.addr());
    let front = Proxy::start_with(
        &dst.addr(),
        ProxyOpts { location_host: Some(format!("localhost:{}", elsewhere.port())), ..ProxyOpts::default() },
    );
    push_simple(src.api(), "app/origin", "v1");
    let auth =
        [AuthEntry::insecure(&src.addr()), AuthEntry::insecure(&front.addr()).with_creds("writer", "0rigin-Pa55-kept")];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("app/origin:v1"), &[&front.repo("app/origin")])]));
    let run = job.run_within(60, &["--retries", "0"]);
    assert_eq!(run.code, Some(1), "the other origin refuses the anonymous upload:\n{run}");
    run.assert_no_panic();
    let there = elsewhere.requests();
    assert!(!there.is_empty(), "the upload went to the Location given");
    assert!(there.iter().all(|r| r.authorization.is_none()), "no Authorization to another origin: {there:?}");
    assert!(front.requests().iter().any(|r| r.authorization.is_some()), "the registry itself got the credentials");
    assert!(dst.api().get_manifest("app/origin", "v1").is_none(), "no partial image");
    assert!(!run.output().contains("0rigin-Pa55-kept"), "{run}");
}

/// A tag list whose `Link` (next page) points at another origin: that page is asked for
/// without `Authorization`.
#[test]
fn credentials_never_follow_a_link_to_another_origin() {
    let src = Registry::start_with(RegistryOpts::htpasswd("reader", "L1nk-Pa55-kept"));
    let dst = Registry::start();
    let elsewhere = Proxy::start(&src.addr());
    let front = Proxy::start_with(
        &src.addr(),
        ProxyOpts {
            page_size: 2,
            location_host: Some(format!("localhost:{}", elsewhere.port())),
            ..ProxyOpts::default()
        },
    );
    for t in ["a", "b", "c"] {
        push_simple(src.api(), "app/link", t);
    }
    let auth =
        [AuthEntry::insecure(&front.addr()).with_creds("reader", "L1nk-Pa55-kept"), AuthEntry::insecure(&dst.addr())];
    let job = Job::new(&auth, &images_yaml(&[(&front.repo("app/link"), &[&dst.repo("app/link")])]));
    let run = job.run_within(60, &["--retries", "0"]);
    run.assert_no_panic();
    assert_ne!(run.code, Some(0), "the other origin refuses the anonymous page:\n{run}");
    let there = elsewhere.requests();
    assert!(there.iter().any(|r| r.uri.contains("/tags/list")), "the next page was asked there: {there:?}");
    assert!(there.iter().all(|r| r.authorization.is_none()), "no Authorization to another origin: {there:?}");
    assert!(!run.output().contains("L1nk-Pa55-kept"), "{run}");
}
