//! https registries with a test CA: `ca_file` in the auth entry (absolute and relative to the
//! auth file), the global `--ca-file`, `skip_tls_verify`, the error without any of them,
//! htpasswd Basic auth over TLS, and client certificates (mTLS).

use crate::common::pki::Pki;
use crate::common::private::{AuthKey, PrivateJob};
use crate::common::secure::{SecureOpts, SecureRegistry};
use crate::common::*;

fn tls_only() -> SecureOpts {
    SecureOpts { tls: true, ..SecureOpts::default() }
}

/// The run failed, named `addr`, and said what is wrong with TLS; no panic.
fn assert_tls_failure(run: &Run, addr: &str) {
    run.assert_failed();
    let err = &run.stderr;
    let line = err
        .lines()
        .find(|l| l.contains(addr) && contains_any_ci(l, &["tls", "certificate"]))
        .unwrap_or_else(|| panic!("no stderr line names {addr} and says TLS/certificate:\n{run}"));
    assert!(contains_any_ci(line, &["ca_file", "--ca-file", "cert_file", "skip_tls_verify"]), "no hint:\n{run}");
    assert!(run.failed_count().is_some_and(|n| n > 0), "summary line should count failures:\n{run}");
}

#[test]
fn ca_file_in_the_auth_entry_trusts_the_test_ca() {
    let pki = Pki::new();
    let src = Registry::start();
    let dst = SecureRegistry::start_tls(&pki, tls_only());
    let img = push_simple(src.api(), "app/tls", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).ca_file(p(&pki.ca_cert))],
        &[(&src.repo("app/tls:v1"), &[&dst.repo("mirror/tls")])],
    );
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "mirror/tls", "v1");
    let puts = dst.requests().into_iter().filter(|r| r.is_manifest_put()).count();
    assert_eq!(puts, 1, "the manifest went through the https registry:\n{}", dst.log_text());
}

#[test]
fn relative_ca_file_is_read_next_to_the_auth_file() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, tls_only());
    let dst = Registry::start();
    let img = push_simple(src.api(), "app/rel", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).ca_file("certs/test-ca.pem"), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("app/rel:v1"), &[&dst.repo("app/rel")])],
    );
    std::fs::create_dir_all(job.dir.join("certs")).unwrap();
    job.copy_in(&pki.ca_cert, "certs/test-ca.pem");
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/rel", "v1");
}

#[test]
fn without_the_ca_the_run_fails_naming_the_registry() {
    let pki = Pki::new();
    let src = Registry::start();
    let dst = SecureRegistry::start_tls(&pki, tls_only());
    push_simple(src.api(), "app/untrusted", "v1");
    // A key without `insecure` means https; nothing says to trust the test CA.
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr())],
        &[(&src.repo("app/untrusted:v1"), &[&dst.repo("app/untrusted")])],
    );
    let run = job.run(&["--retries", "0"]);
    assert_tls_failure(&run, &dst.addr());
    assert!(dst.api().tags("app/untrusted").is_empty(), "nothing may be pushed");
}

#[test]
fn untrusted_source_fails_naming_the_registry() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, tls_only());
    let dst = Registry::start();
    push_simple(src.api(), "app/untrusted-src", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).field("insecure", "false"), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("app/untrusted-src:v1"), &[&dst.repo("app/untrusted-src")])],
    );
    let run = job.run(&["--retries", "0"]);
    assert_tls_failure(&run, &src.addr());
    assert!(dst.api().tags("app/untrusted-src").is_empty());
    assert!(dst.requests().iter().all(|r| !r.is_write()), "no write at the destination");
}

#[test]
fn skip_tls_verify_accepts_the_unknown_issuer() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, tls_only());
    let dst = Registry::start();
    let img = push_simple(src.api(), "app/skip", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).skip_tls_verify(), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("app/skip:v1"), &[&dst.repo("app/skip")])],
    );
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/skip", "v1");
}

#[test]
fn global_ca_file_flag_trusts_the_test_ca_for_every_registry() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, tls_only());
    let dst = SecureRegistry::start_tls(&pki, tls_only());
    let idx = push_index(
        src.api(),
        "multi/app",
        "v2",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8")],
    );
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()), AuthKey::new(&dst.addr())],
        &[(&src.repo("multi/app:v2"), &[&dst.repo("multi/app")])],
    );
    job.run(&["--ca-file", p(&pki.ca_cert)]).assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "multi/app", "v2");
}

// ---------------------------------------------------------------------------------------------
// htpasswd over TLS
// ---------------------------------------------------------------------------------------------

const USER: &str = "tls-user";
const PASS: &str = "Tls-Pa55-quux-8371";
const WRONG: &str = "Wr0ng-tls-Pa55-zork";

fn basic_tls() -> SecureOpts {
    SecureOpts { tls: true, htpasswd: Some((USER.into(), PASS.into())), ..SecureOpts::default() }
}

#[test]
fn basic_auth_over_tls_with_the_right_password() {
    let pki = Pki::new();
    let src = Registry::start();
    let dst = SecureRegistry::start_tls(&pki, basic_tls());
    let img = push_simple(src.api(), "app/basic", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).creds(USER, PASS).ca_file(p(&pki.ca_cert))],
        &[(&src.repo("app/basic:v1"), &[&dst.repo("app/basic")])],
    );
    let run = job.run(&[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/basic", "v1");
    assert_no_secrets(&[("output", &run.output())], &[PASS], &[(USER, PASS)]);
}

#[test]
fn basic_auth_over_tls_with_a_wrong_password() {
    let pki = Pki::new();
    let src = Registry::start();
    let dst = SecureRegistry::start_tls(&pki, basic_tls());
    push_simple(src.api(), "app/basic-wrong", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).creds(USER, WRONG).ca_file(p(&pki.ca_cert))],
        &[(&src.repo("app/basic-wrong:v1"), &[&dst.repo("app/basic-wrong")])],
    );
    // Default retries: the failure is retried, and still reported once.
    let run = job.run(&[]);
    run.assert_failed();
    let errors = run.stderr_lines_naming(&dst.addr(), &["unauthorized"]);
    assert_eq!(errors.len(), 1, "exactly one clear 'unauthorized' line naming {}:\n{run}", dst.addr());
    assert!(
        contains_any_ci(errors[0], &["password", "credentials"]),
        "the line should say the credentials are wrong:\n{run}"
    );
    assert_no_secrets(&[("output", &run.output())], &[WRONG], &[(USER, WRONG)]);
    assert!(dst.api().tags("app/basic-wrong").is_empty());
}

// ---------------------------------------------------------------------------------------------
// mTLS
// ---------------------------------------------------------------------------------------------

fn mtls() -> SecureOpts {
    SecureOpts { tls: true, client_certs: true, ..SecureOpts::default() }
}

#[test]
fn client_certificate_opens_an_mtls_registry() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, mtls());
    let dst = SecureRegistry::start_tls(&pki, mtls());
    let img = push_image(src.api(), "app/mtls", "v1", ImageKind::Oci, "linux", "arm64", "v8");
    let job = PrivateJob::new(
        &[
            // Absolute paths for the source, paths relative to the auth file for the destination.
            AuthKey::new(&src.addr()).ca_file(p(&pki.ca_cert)).client_cert(p(&pki.client_cert), p(&pki.client_key)),
            AuthKey::new(&dst.addr()).ca_file("tls/ca.pem").client_cert("tls/client.pem", "tls/client.key"),
        ],
        &[(&src.repo("app/mtls:v1"), &[&dst.repo("app/mtls")])],
    );
    std::fs::create_dir_all(job.dir.join("tls")).unwrap();
    job.copy_in(&pki.ca_cert, "tls/ca.pem");
    job.copy_in(&pki.client_cert, "tls/client.pem");
    job.copy_in(&pki.client_key, "tls/client.key");
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/mtls", "v1");
    assert!(dst.requests().iter().any(|r| r.is_manifest_put()), "pushed through the mTLS registry");
}

#[test]
fn mtls_registry_without_a_client_certificate_fails_clearly() {
    let pki = Pki::new();
    let src = Registry::start();
    let dst = SecureRegistry::start_tls(&pki, mtls());
    push_simple(src.api(), "app/mtls-nocert", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).ca_file(p(&pki.ca_cert))],
        &[(&src.repo("app/mtls-nocert:v1"), &[&dst.repo("app/mtls-nocert")])],
    );
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    run.assert_stderr_names(&dst.addr(), &["tls", "certificate"]);
    assert!(run.failed_count().is_some_and(|n| n > 0), "summary line should count failures:\n{run}");
    assert!(dst.api().tags("app/mtls-nocert").is_empty());
}

#[test]
fn loopback_registry_without_auth_key_is_tried_over_https_first() {
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(&pki, tls_only());
    let dst = Registry::start();
    let img = push_simple(src.api(), "app/loop", "v1");
    // No auth key for either: the TLS one is reached over https, the plain one over http.
    let unrelated = AuthKey::new("registry.example.com").insecure();
    let job = PrivateJob::new(&[unrelated], &[(&src.repo("app/loop:v1"), &[&dst.repo("app/loop")])]);
    let run = job.run_within(60, &["--ca-file", p(&pki.ca_cert)]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/loop", "v1");
}

#[test]
fn wrong_scheme_is_reported_with_the_key_that_fixes_it() {
    let pki = Pki::new();
    let tls = SecureRegistry::start_tls(&pki, tls_only());
    let plain = Registry::start();
    push_simple(tls.api(), "app/s", "v1");
    push_simple(plain.api(), "app/s", "v1");

    // Plain http to a TLS server.
    let job = PrivateJob::new(
        &[AuthKey::new(&tls.addr()).insecure(), AuthKey::new(&plain.addr()).insecure()],
        &[(&tls.repo("app/s:v1"), &[&plain.repo("copy/s")])],
    );
    let run = job.run_within(60, &["--retries", "0"]);
    run.assert_failed();
    let line = run.stderr.lines().find(|l| l.contains("failed:")).unwrap_or_else(|| panic!("{run}"));
    assert!(line.contains(&tls.addr()) && line.contains("speaks https"), "{line}");
    assert!(line.contains("remove `insecure: true`") && line.contains(&tls.addr()), "{line}");

    // A TLS handshake to a plain-http server.
    let job = PrivateJob::new(
        &[AuthKey::new(&plain.addr()).field("insecure", "false"), AuthKey::new(&tls.addr()).ca_file(p(&pki.ca_cert))],
        &[(&plain.repo("app/s:v1"), &[&tls.repo("copy/s")])],
    );
    let run = job.run_within(60, &["--retries", "0"]);
    run.assert_failed();
    let line = run.stderr.lines().find(|l| l.contains("failed:")).unwrap_or_else(|| panic!("{run}"));
    assert!(line.contains(&plain.addr()) && line.contains("does not speak https"), "{line}");
    assert!(line.contains("set `insecure: true`"), "{line}");
}
