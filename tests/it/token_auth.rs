//! Bearer token auth (`auth.token` registries and a recording token server): scopes asked per
//! side, token reuse across blobs and threads, credentials sent only to the token server,
//! refresh of short-lived tokens, `access_token` responses, cross-repository mounts, wrong
//! passwords, tokens the registry rejects, and no credential or token in any output at
//! `RUST_LOG=trace`. Also: no credentials to a plain-http realm of an https registry, and
//! identity tokens (username `<token>`: the auth file, docker's `identitytoken`, a credential
//! helper) exchanged with the OAuth2 refresh-token grant. And a slow token server is asked for
//! several repositories' tokens at once, not one after the other (issue 22).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::pki::{JwtSigner, Pki};
use crate::common::private::{AuthKey, PrivateJob};
use crate::common::secure::{SecureOpts, SecureRegistry, TokenAuth};
use crate::common::token::{TokenField, TokenOpts, TokenRequest, TokenServer, ISSUER, SERVICE};
use crate::common::*;

const USER: &str = "robot";
const PASS: &str = "T0ken-Pa55-plugh-4242";
const WRONG: &str = "Wr0ng-T0ken-Pa55-xyzzy";
/// Docker's username for an identity token.
const IDENTITY: &str = "<token>";
const REFRESH: &str = "1dent1ty-Refr3sh-T0ken-wxyz";
const WRONG_REFRESH: &str = "Wr0ng-Refr3sh-T0ken-qrst";

/// A token-auth registry (plain http) behind a recording [`Proxy`]; the syncer is given the
/// proxy's address.
struct TokenRegistry {
    tap: Proxy,
    reg: SecureRegistry,
}

impl TokenRegistry {
    fn start(server: &TokenServer, delay: Duration) -> TokenRegistry {
        TokenRegistry::start_trusting(server, server.rootcertbundle(), delay)
    }

    /// A registry whose `rootcertbundle` is `bundle` (not necessarily the server's signer).
    fn start_trusting(server: &TokenServer, bundle: &Path, delay: Duration) -> TokenRegistry {
        let reg = SecureRegistry::start(SecureOpts {
            token: Some(TokenAuth {
                realm: server.realm(),
                service: SERVICE.into(),
                issuer: ISSUER.into(),
                rootcertbundle: bundle.to_path_buf(),
            }),
            ..SecureOpts::default()
        });
        let tap = Proxy::start_with(&format!("127.0.0.1:{}", reg.port()), ProxyOpts { delay, ..ProxyOpts::default() });
        TokenRegistry { tap, reg }
    }

    fn addr(&self) -> String {
        self.tap.addr()
    }

    fn repo(&self, repo: &str) -> String {
        self.tap.repo(repo)
    }

    fn api(&self) -> &Client {
        self.reg.api()
    }

    fn key(&self, pass: &str) -> AuthKey {
        AuthKey::new(&self.addr()).creds(USER, pass).insecure()
    }

    /// Username `<token>` and the identity token as the password.
    fn identity_key(&self, token: &str) -> AuthKey {
        AuthKey::new(&self.addr()).creds(IDENTITY, token).insecure()
    }

    /// Blob requests (any method) the registry answered.
    fn blob_requests(&self) -> usize {
        self.reg.requests().iter().filter(|r| r.path.contains("/blobs/")).count()
    }

    /// Every `Authorization` the registry received was a Bearer token issued by `server`.
    fn assert_only_issued_bearer_tokens(&self, server: &TokenServer) {
        let issued = server.tokens();
        let seen = self.tap.authorizations();
        assert!(!seen.is_empty(), "{} received no Authorization header at all", self.addr());
        for a in &seen {
            assert!(
                !a.to_ascii_lowercase().starts_with("basic"),
                "the registry {} received Basic credentials",
                self.addr()
            );
            let token = a.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer header: {a:.20}…"));
            assert!(issued.iter().any(|t| t == token), "{} received a token the server never issued", self.addr());
        }
    }
}

fn scope_counts(server: &TokenServer, scope_set: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| {
            let mut s = r.scopes.clone();
            s.sort();
            s.join(" ") == scope_set
        })
        .count()
}

#[test]
fn token_auth_sync_asks_scoped_tokens_once_and_reuses_them() {
    let server = TokenServer::start(TokenOpts::new(USER, PASS));
    let src = TokenRegistry::start(&server, Duration::ZERO);
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    let idx = push_index(
        src.api(),
        "team/app",
        "v1",
        IndexKind::List,
        &[("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7"), ("linux", "s390x", "")],
    );
    let img = push_big_image(src.api(), "team/app", "v2", 1);
    let job =
        PrivateJob::new(&[src.key(PASS), dst.key(PASS)], &[(&src.repo("team/app:v1,v2"), &[&dst.repo("mirror/app")])]);
    let run = job.run(&["--proc", "4"]);
    run.assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "mirror/app", "v1");
    assert_image_copied(src.api(), dst.api(), &img, "mirror/app", "v2");

    // Scopes: pull at the source, pull+push at the destination, nothing else.
    let sets: Vec<String> = server.scope_sets().into_iter().collect();
    assert_eq!(
        sets,
        vec!["repository:mirror/app:pull,push".to_string(), "repository:team/app:pull".to_string()],
        "scope sets asked: {:#?}",
        server.requests()
    );
    let reqs = server.requests();
    for r in &reqs {
        assert_eq!(r.service.as_deref(), Some(SERVICE), "service parameter: {r:?}");
        assert_eq!(
            r.basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            Some((USER, PASS)),
            "every token request carries the Basic credentials"
        );
        assert!(r.token.is_some(), "every token request was granted");
    }

    // Reuse: a token per scope (a retry or two at most), far fewer than the blob requests.
    let blob_requests = src.blob_requests() + dst.blob_requests();
    assert!(
        reqs.len() <= 2 * sets.len(),
        "{} token requests for {} scopes: tokens are not reused:\n{reqs:#?}",
        reqs.len(),
        sets.len()
    );
    assert!(reqs.len() < blob_requests, "{} token requests vs {blob_requests} blob requests", reqs.len());

    // The registries saw only tokens, never the password.
    src.assert_only_issued_bearer_tokens(&server);
    dst.assert_only_issued_bearer_tokens(&server);
}

#[test]
fn short_lived_tokens_are_refreshed_during_a_long_transfer() {
    let opts = TokenOpts { expires_in: Some(2), ..TokenOpts::new(USER, PASS) };
    let server = TokenServer::start(opts);
    // Every request to the source is held 40 ms by the proxy. With --proc 1 the requests are
    // sequential, so 8 images (≥ 5 source requests each) take at least 40 × 40 ms = 1.6 s: past
    // the point (1 s) where a 2-second token must be replaced.
    let src = TokenRegistry::start(&server, Duration::from_millis(40));
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    let tags: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let imgs: Vec<Image> = tags.iter().map(|t| push_simple(src.api(), "slow/app", t)).collect();
    let job = PrivateJob::new(
        &[src.key(PASS), dst.key(PASS)],
        &[(&src.repo(&format!("slow/app:{}", tags.join(","))), &[&dst.repo("slow/copy")])],
    );
    job.run(&["--proc", "1"]).assert_ok();
    for (img, tag) in imgs.iter().zip(&tags) {
        assert_image_copied(src.api(), dst.api(), img, "slow/copy", tag);
    }
    let src_fetches = scope_counts(&server, "repository:slow/app:pull");
    assert!(src_fetches >= 2, "a 2 s token must be refreshed during a ≥ 1.6 s transfer; fetched {src_fetches}");
    assert!(
        server.requests().len() < src.blob_requests(),
        "still far fewer token requests than blob requests: {:#?}",
        server.requests()
    );
    src.assert_only_issued_bearer_tokens(&server);
    dst.assert_only_issued_bearer_tokens(&server);
}

#[test]
fn access_token_field_without_expires_in_is_accepted() {
    let opts = TokenOpts { field: TokenField::AccessToken, expires_in: None, ..TokenOpts::new(USER, PASS) };
    let server = TokenServer::start(opts);
    let src = TokenRegistry::start(&server, Duration::ZERO);
    let dst = Registry::start();
    let img = push_image(src.api(), "oci/app", "1.0", ImageKind::Oci, "linux", "amd64", "");
    let job = PrivateJob::new(
        &[src.key(PASS), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("oci/app:1.0"), &[&dst.repo("oci/app")])],
    );
    job.run(&[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "oci/app", "1.0");
    assert_eq!(scope_counts(&server, "repository:oci/app:pull"), 1, "{:#?}", server.requests());
    src.assert_only_issued_bearer_tokens(&server);
}

#[test]
fn cross_repository_mount_asks_for_the_source_repository_too() {
    let server = TokenServer::start(TokenOpts::new(USER, PASS));
    let reg = TokenRegistry::start(&server, Duration::ZERO);
    let img = push_simple(reg.api(), "base/os", "v1");
    let job = PrivateJob::new(&[reg.key(PASS)], &[(&reg.repo("base/os:v1"), &[&reg.repo("derived/os")])]);
    job.run(&[]).assert_ok();
    assert_image_copied(reg.api(), reg.api(), &img, "derived/os", "v1");
    let mounts: Vec<Request> =
        reg.reg.requests().into_iter().filter(|r| r.method == "POST" && r.query.contains("mount=")).collect();
    assert!(!mounts.is_empty(), "blobs of the same registry should be mounted:\n{}", reg.reg.log_text());
    assert!(
        mounts
            .iter()
            .all(|r| r.status == 201 && (r.query.contains("from=base%2Fos") || r.query.contains("from=base/os"))),
        "mounts from base/os succeed: {mounts:?}"
    );
    let mount_scope = "repository:base/os:pull repository:derived/os:pull,push";
    assert!(
        scope_counts(&server, mount_scope) >= 1,
        "a mount needs a token for both repositories; asked: {:#?}",
        server.scope_sets()
    );
    reg.assert_only_issued_bearer_tokens(&server);
}

/// `repo:v1` on a plain source, copied by the job to a token registry (of `server`) behind a
/// proxy that refuses every closing `PUT` of an upload, as a registry refuses a blob it will not
/// take: each upload fails, and is cancelled.
fn refused_uploads(server: &TokenServer, repo: &str) -> (Registry, TokenRegistry, PrivateJob) {
    let src = Registry::start();
    let dst = TokenRegistry::start(server, Duration::ZERO);
    push_simple(src.api(), repo, "v1");
    dst.tap.set_faults(vec![FaultRule::always(Match::UploadPut, Fault::Code(400, "BLOB_UPLOAD_INVALID"))]);
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), dst.key(PASS)],
        &[(&src.repo(&format!("{repo}:v1")), &[&dst.repo(repo)])],
    );
    (src, dst, job)
}

/// An upload the registry refuses is cancelled with a token that allows it, at the session's
/// latest `Location`: distribution needs the `delete` action for every `DELETE`, an upload
/// session's too (registry/handlers/app.go, `appendAccessRecords`), and answers a push token's
/// cancel with 401, leaving the session; a cancel at the `Location` from before the chunks went
/// carries a stale offset in its `_state` and is answered `BLOB_UPLOAD_INVALID` (404).
#[test]
fn a_refused_upload_is_cancelled_with_a_token_for_delete() {
    let server = TokenServer::start(TokenOpts::new(USER, PASS));
    let (_src, dst, job) = refused_uploads(&server, "app/cancel");
    job.run(&["--retries", "0"]).assert_failed();
    let cancels: Vec<Request> =
        dst.reg.requests().into_iter().filter(|r| r.method == "DELETE" && r.path.contains("/blobs/uploads/")).collect();
    assert!(!cancels.is_empty(), "the refused uploads are cancelled:\n{}", dst.reg.log_text());
    assert!(
        cancels.iter().all(|r| r.status == 204),
        "each cancel is accepted, none refused as unauthorized: {cancels:?}"
    );
    assert!(
        server.scope_sets().iter().any(|s| s.contains("repository:app/cancel:") && s.contains("delete")),
        "a token for delete was asked: {:#?}",
        server.scope_sets()
    );
}

/// A token server that refuses a scope with `delete` outright (an error, not a token with fewer
/// actions): the cancel asks for the push token instead, once, and the run fails only for
/// the upload the registry refused, as before.
#[test]
fn a_cancel_whose_delete_token_is_refused_is_sent_with_the_push_token() {
    let server = TokenServer::start(TokenOpts { refuse_action: Some("delete".into()), ..TokenOpts::new(USER, PASS) });
    let (_src, dst, job) = refused_uploads(&server, "app/pushonly");
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    assert!(
        run.failed_lines().iter().all(|l| !l.contains("delete") && !l.contains("token")),
        "the image fails for the refused upload, not for the cancel:\n{run}"
    );
    let reqs = server.requests();
    let refused = reqs.iter().filter(|r| r.token.is_none() && r.scopes.iter().any(|s| s.ends_with("delete"))).count();
    assert!(refused >= 1, "the delete token was asked for and refused: {reqs:#?}");
    let push_tokens: Vec<String> = reqs
        .iter()
        .filter(|r| r.scopes == ["repository:app/pushonly:pull,push"])
        .filter_map(|r| r.token.clone())
        .collect();
    let cancels: Vec<Option<String>> =
        dst.tap.requests().into_iter().filter(|r| r.method == "DELETE").map(|r| r.authorization).collect();
    assert!(!cancels.is_empty(), "the cancels were still sent");
    for authorization in &cancels {
        let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        assert!(token.is_some_and(|t| push_tokens.iter().any(|p| p == t)), "each cancel went with the push token");
    }
}

#[test]
fn wrong_password_at_the_token_server_fails_clearly() {
    let server = TokenServer::start(TokenOpts::new(USER, PASS));
    let src = Registry::start();
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    push_simple(src.api(), "app/denied", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), dst.key(WRONG)],
        &[(&src.repo("app/denied:v1"), &[&dst.repo("app/denied")])],
    );
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    run.assert_stderr_names(&dst.addr(), &["unauthorized"]);
    assert!(run.failed_count().is_some_and(|n| n > 0), "summary line should count failures:\n{run}");
    assert_no_secrets(&[("output", &run.output())], &[WRONG], &[(USER, WRONG)]);
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the token server was asked");
    assert!(reqs.iter().all(|r| r.token.is_none()), "nothing was issued");
    assert!(
        reqs.iter().all(|r| r.basic.as_ref().is_some_and(|(u, p)| u == USER && p == WRONG)),
        "the (wrong) credentials went to the token server: {reqs:#?}"
    );
    assert!(
        dst.tap.authorizations().iter().all(|a| !a.to_ascii_lowercase().starts_with("basic")),
        "the registry never receives Basic credentials"
    );
    assert!(dst.api().tags("app/denied").is_empty());
}

#[test]
fn token_the_registry_rejects_fails_clearly_without_looping() {
    let server = TokenServer::start(TokenOpts::new(USER, PASS));
    // The registry trusts another signer, so it rejects every token the server issues.
    let other = JwtSigner::new();
    let src = TokenRegistry::start_trusting(&server, &other.cert, Duration::ZERO);
    let dst = Registry::start();
    push_simple(src.api(), "app/rejected", "v1");
    let job = PrivateJob::new(
        &[src.key(PASS), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("app/rejected:v1"), &[&dst.repo("app/rejected")])],
    );
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    run.assert_stderr_names(&src.addr(), &["unauthorized", "token"]);
    let reqs = server.requests();
    assert!(!reqs.is_empty() && reqs.len() <= 3, "a rejected token is not fetched again and again: {reqs:#?}");
    assert!(dst.api().tags("app/rejected").is_empty());
}

#[test]
fn no_password_or_token_in_any_output_at_trace_level() {
    const TLS_USER: &str = "tls-reader";
    const TLS_PASS: &str = "Tls-Tr4ce-Pa55-frotz";
    let pki = Pki::new();
    let src = SecureRegistry::start_tls(
        &pki,
        SecureOpts { tls: true, htpasswd: Some((TLS_USER.into(), TLS_PASS.into())), ..SecureOpts::default() },
    );
    let opts = TokenOpts { marker: "SECRET-TOKEN-MARKER".into(), ..TokenOpts::new(USER, PASS) };
    let server = TokenServer::start(opts);
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    let idx = push_index(
        src.api(),
        "trace/app",
        "v1",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "")],
    );
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).creds(TLS_USER, TLS_PASS).ca_file(pki.ca_cert.to_str().unwrap()), dst.key(PASS)],
        &[(&src.repo("trace/app:v1"), &[&dst.repo("trace/app")])],
    );
    let log = job.dir.join("sync.log");
    let success = job.dir.join("success.yaml");
    let args = ["--log", log.to_str().unwrap(), "--output-success-images", success.to_str().unwrap()];
    let run = job.run_env(&args, &[("RUST_LOG", "trace")]);
    run.assert_ok();
    assert_index_copied(src.api(), dst.api(), &idx, "trace/app", "v1");

    let tokens = server.tokens();
    assert!(!tokens.is_empty(), "tokens were issued");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let success_text = std::fs::read_to_string(&success).expect("success-images file");
    assert!(success_text.contains("trace/app"), "the success file lists the image:\n{success_text}");
    assert!(log_text.lines().count() > 5, "trace logging went to the --log file:\n{log_text}");
    // Whole tokens, and their signatures alone (a token cut in the middle would still be useful).
    let mut secrets: Vec<&str> = vec![PASS, TLS_PASS, "SECRET-TOKEN-MARKER"];
    secrets.extend(tokens.iter().map(String::as_str));
    secrets.extend(tokens.iter().filter_map(|t| t.rsplit('.').next()));
    let texts = [
        ("stderr", run.stderr.as_str()),
        ("stdout", run.stdout.as_str()),
        ("--log file", &log_text),
        ("success file", &success_text),
    ];
    assert_no_secrets(&texts, &secrets, &[(USER, PASS), (TLS_USER, TLS_PASS)]);

    // And a failing run at trace level: the source password is right, the destination's wrong.
    let bad = PrivateJob::new(
        &[AuthKey::new(&src.addr()).creds(TLS_USER, TLS_PASS).ca_file(pki.ca_cert.to_str().unwrap()), dst.key(WRONG)],
        &[(&src.repo("trace/app:v1"), &[&dst.repo("trace/other")])],
    );
    let bad_log = bad.dir.join("sync.log");
    let run = bad.run_env(&["--retries", "0", "--log", bad_log.to_str().unwrap()], &[("RUST_LOG", "trace")]);
    run.assert_failed();
    let bad_log_text = std::fs::read_to_string(&bad_log).unwrap_or_default();
    assert!(contains_any_ci(&format!("{}{bad_log_text}", run.output()), &["unauthorized"]), "{run}\n{bad_log_text}");
    assert_no_secrets(
        &[("output", &run.output()), ("--log file", &bad_log_text)],
        &[WRONG, TLS_PASS],
        &[(USER, WRONG), (TLS_USER, TLS_PASS)],
    );
}

// ---------------------------------------------------------------------------------------------
// No credentials to a plain-http realm of an https registry
// ---------------------------------------------------------------------------------------------

#[test]
fn credentials_are_not_sent_to_a_plain_http_realm_of_an_https_registry() {
    let pki = Pki::new();
    let server = TokenServer::start(TokenOpts::refresh(USER, PASS, REFRESH));
    let src = SecureRegistry::https_with_tokens(&pki, &server);
    let dst = Registry::start();
    push_simple(src.api(), "app/realm", "v1");
    assert!(server.realm().starts_with("http://"));
    let ca = p(&pki.ca_cert);
    // Username and password, then an identity token: neither may go to the http realm.
    for (user, secret) in [(USER, PASS), (IDENTITY, REFRESH)] {
        let job = PrivateJob::new(
            &[AuthKey::new(&src.addr()).creds(user, secret).ca_file(ca), AuthKey::new(&dst.addr()).insecure()],
            &[(&src.repo("app/realm:v1"), &[&dst.repo("app/realm")])],
        );
        let run = job.run_env_within(60, &["--retries", "0"], &[]);
        run.assert_failed();
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("credentials are not sent to a plain-http token realm"))
            .unwrap_or_else(|| panic!("no line says the credentials are kept from the http realm:\n{run}"));
        assert!(line.contains(&src.addr()) && line.contains(&server.realm()), "names registry and realm: {line}");
        assert!(run.failed_count().is_some_and(|n| n > 0), "summary line counts the failure:\n{run}");
        assert_no_secrets(&[("output", &run.output())], &[secret], &[(user, secret)]);
        let reqs = server.requests();
        assert!(reqs.iter().all(|r| r.authorization.is_none()), "an Authorization went to the http realm");
        assert!(reqs.iter().all(|r| r.form.is_empty()), "a refresh-token grant went to the http realm");
        assert!(src.requests().iter().any(|r| r.status == 401), "the registry was asked (and challenged)");
        assert!(dst.api().tags("app/realm").is_empty());
    }
}

#[test]
fn anonymous_token_requests_may_use_a_plain_http_realm() {
    let pki = Pki::new();
    let server = TokenServer::start(TokenOpts { anonymous: true, ..TokenOpts::new(USER, PASS) });
    let src = SecureRegistry::https_with_tokens(&pki, &server);
    let dst = Registry::start();
    let img = push_simple(src.api(), "app/anon", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).ca_file(p(&pki.ca_cert)), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("app/anon:v1"), &[&dst.repo("app/anon")])],
    );
    job.run_env_within(60, &[], &[]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "app/anon", "v1");
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the anonymous token came from the http realm");
    assert!(reqs.iter().all(|r| r.method == "GET" && r.authorization.is_none() && r.token.is_some()));
}

// ---------------------------------------------------------------------------------------------
// Identity tokens: the OAuth2 refresh-token grant
// ---------------------------------------------------------------------------------------------

/// A request's method, path and scopes, for messages (its form holds the refresh token).
fn summary(r: &TokenRequest) -> String {
    format!("{} {} {:?}", r.method, r.path, r.scopes)
}

/// Every token request was the refresh-token grant with `token`: a form POST with the service,
/// the client id and no `Authorization`; there was no GET (the Basic flow) at all.
fn assert_refresh_grants_only(server: &TokenServer, token: &str) {
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the token server was asked");
    let all: Vec<String> = reqs.iter().map(summary).collect();
    for r in &reqs {
        assert_eq!(r.method, "POST", "only refresh-token grants, no GET: {all:#?}");
        assert!(r.authorization.is_none(), "no Authorization with the grant: {}", summary(r));
        assert!(
            r.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
            "a form: {:?}",
            r.header("content-type")
        );
        assert_eq!(r.field("grant_type"), Some("refresh_token"), "{}", summary(r));
        assert!(r.field("refresh_token") == Some(token), "the identity token is the refresh_token");
        assert_eq!(r.field("client_id"), Some("image-syncer"), "{}", summary(r));
        assert_eq!(r.service.as_deref(), Some(SERVICE), "{}", summary(r));
        assert!(!r.scopes.is_empty(), "scopes asked: {}", summary(r));
    }
}

/// The registry's token is worth nothing without the refresh token: none of it in `texts`.
fn assert_no_identity_secrets(texts: &[(&str, &str)], server: &TokenServer) {
    let tokens = server.tokens();
    let mut secrets: Vec<&str> = vec![REFRESH];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secrets(texts, &secrets, &[(IDENTITY, REFRESH)]);
}

#[test]
fn identity_token_in_the_auth_file_is_exchanged_with_the_refresh_token_grant() {
    let server = TokenServer::start(TokenOpts::refresh(USER, PASS, REFRESH));
    let reg = TokenRegistry::start(&server, Duration::ZERO);
    let img = push_simple(reg.api(), "id/app", "v1");
    // Within one registry: pull, push, and a mount whose grant asks for two scopes at once.
    let job = PrivateJob::new(&[reg.identity_key(REFRESH)], &[(&reg.repo("id/app:v1"), &[&reg.repo("id/copy")])]);
    let log = job.dir.join("sync.log");
    let run = job.run_env(&["--log", p(&log)], &[("RUST_LOG", "trace")]);
    run.assert_ok();
    assert_image_copied(reg.api(), reg.api(), &img, "id/copy", "v1");
    assert_refresh_grants_only(&server, REFRESH);
    let sets = server.scope_sets();
    assert!(sets.contains("repository:id/app:pull"), "{sets:#?}");
    assert!(
        sets.contains("repository:id/app:pull repository:id/copy:pull,push"),
        "the mount's two scopes, space-separated in one grant: {sets:#?}"
    );
    reg.assert_only_issued_bearer_tokens(&server);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.lines().count() > 5, "trace logging went to the --log file:\n{log_text}");
    assert_no_identity_secrets(&[("stdout", &run.stdout), ("stderr", &run.stderr), ("--log file", &log_text)], &server);
}

#[test]
fn identity_token_from_docker_config_is_exchanged_with_the_refresh_token_grant() {
    let server = TokenServer::start(TokenOpts::refresh(USER, PASS, REFRESH));
    let src = Registry::start();
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    let img = push_simple(src.api(), "id/docker", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("id/docker:v1"), &[&dst.repo("id/docker")])],
    );
    // What `az acr login` leaves: an empty-password "auth" and the identity token.
    let config = serde_json::json!({"auths": {dst.addr(): {
        "auth": base64(b"00000000-0000-0000-0000-000000000000:"),
        "identitytoken": REFRESH,
    }}});
    std::fs::write(job.docker_config.join("config.json"), config.to_string()).unwrap();
    let run = job.run_env_within(60, &[], &[]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "id/docker", "v1");
    assert_refresh_grants_only(&server, REFRESH);
    assert_eq!(
        server.scope_sets().into_iter().collect::<Vec<_>>(),
        ["repository:id/docker:pull,push"],
        "the destination's scope"
    );
    dst.assert_only_issued_bearer_tokens(&server);
    assert!(!run.stderr.contains("not supported"), "the identity token is used, not ignored:\n{run}");
    assert_no_identity_secrets(&[("output", &run.output())], &server);
}

#[test]
fn credential_helper_answering_username_token_gives_an_identity_token() {
    let server = TokenServer::start(TokenOpts::refresh(USER, PASS, REFRESH));
    let src = TokenRegistry::start(&server, Duration::ZERO);
    let dst = Registry::start();
    let img = push_simple(src.api(), "id/helper", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), AuthKey::new(&dst.addr()).insecure()],
        &[(&src.repo("id/helper:v1"), &[&dst.repo("id/helper")])],
    );
    // `docker-credential-idtest get`: reads the server on stdin, answers Username `<token>`.
    let helper = job.write(
        "bin/docker-credential-idtest",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s' '{}'\n",
            serde_json::json!({"ServerURL": src.addr(), "Username": IDENTITY, "Secret": REFRESH})
        ),
    );
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = serde_json::json!({"credHelpers": {src.addr(): "idtest"}});
    std::fs::write(job.docker_config.join("config.json"), config.to_string()).unwrap();
    let path = format!("{}:{}", p(&job.dir.join("bin")), std::env::var("PATH").unwrap_or_default());
    let run = job.run_env_within(60, &[], &[("PATH", &path)]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "id/helper", "v1");
    assert_refresh_grants_only(&server, REFRESH);
    assert_eq!(server.scope_sets().into_iter().collect::<Vec<_>>(), ["repository:id/helper:pull"]);
    src.assert_only_issued_bearer_tokens(&server);
    assert_no_identity_secrets(&[("output", &run.output())], &server);
}

#[test]
fn refused_identity_token_fails_with_one_clear_line() {
    let server = TokenServer::start(TokenOpts::refresh(USER, PASS, REFRESH));
    let src = Registry::start();
    let dst = TokenRegistry::start(&server, Duration::ZERO);
    push_simple(src.api(), "id/refused", "v1");
    let job = PrivateJob::new(
        &[AuthKey::new(&src.addr()).insecure(), dst.identity_key(WRONG_REFRESH)],
        &[(&src.repo("id/refused:v1"), &[&dst.repo("id/refused")])],
    );
    let run = job.run_env_within(60, &["--retries", "0"], &[]);
    run.assert_failed();
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(&dst.addr()) && contains_any_ci(l, &["identity token"]) && l.contains("refused"))
        .collect();
    assert!(!lines.is_empty(), "a line naming {} says the identity token was refused:\n{run}", dst.addr());
    assert!(lines.iter().all(|l| contains_any_ci(l, &["unauthorized"])), "{lines:#?}");
    assert!(run.failed_count().is_some_and(|n| n > 0), "summary line counts the failure:\n{run}");
    assert_no_secrets(
        &[("output", &run.output())],
        &[WRONG_REFRESH, REFRESH],
        &[(IDENTITY, WRONG_REFRESH), (IDENTITY, REFRESH)],
    );
    let reqs = server.requests();
    assert!(!reqs.is_empty(), "the token server was asked");
    assert!(reqs.iter().all(|r| r.method == "POST" && r.authorization.is_none()), "{:#?}", reqs.iter().map(summary));
    assert!(reqs.iter().all(|r| r.field("refresh_token") == Some(WRONG_REFRESH)), "the configured token was sent");
    assert!(reqs.iter().all(|r| r.token.is_none()), "nothing was issued");
    assert!(dst.tap.authorizations().is_empty(), "the registry received no Authorization at all");
    assert!(dst.api().tags("id/refused").is_empty());
}

#[test]
fn a_slow_token_server_is_asked_for_several_scopes_at_once() {
    // Each token answer takes 2 s (a slow identity provider). 16 repositories need 16 pull
    // tokens: one at a time that is ≥ 32 s; 8 workers asking at once take a few rounds of 2 s.
    const REPOS: usize = 16;
    const DELAY: Duration = Duration::from_secs(2);
    let server = TokenServer::start(TokenOpts { delay: DELAY, ..TokenOpts::new(USER, PASS) });
    let src = TokenRegistry::start(&server, Duration::ZERO);
    let dst = Registry::start();
    let names: Vec<String> = (0..REPOS).map(|i| format!("many/app{i}")).collect();
    let imgs: Vec<Image> = names.iter().map(|n| push_simple(src.api(), n, "v1")).collect();
    let (sources, targets): (Vec<String>, Vec<String>) =
        names.iter().map(|n| (src.repo(&format!("{n}:v1")), dst.repo(n))).unzip();
    let targets: Vec<[&str; 1]> = targets.iter().map(|t| [t.as_str()]).collect();
    let rules: Vec<(&str, &[&str])> = sources.iter().zip(&targets).map(|(s, t)| (s.as_str(), &t[..])).collect();
    let job = PrivateJob::new(&[src.key(PASS), AuthKey::new(&dst.addr()).insecure()], &rules);

    let started = std::time::Instant::now();
    job.run_within(90, &["--proc", "8"]).assert_ok();
    let took = started.elapsed();

    for (img, name) in imgs.iter().zip(&names) {
        assert_image_copied(src.api(), dst.api(), img, name, "v1");
    }
    for name in &names {
        let scope = format!("repository:{name}:pull");
        assert_eq!(scope_counts(&server, &scope), 1, "{scope} fetched once: {:#?}", server.requests());
    }
    let overlap = server.max_in_flight();
    assert!(overlap >= 4, "token requests were not sent in parallel: at most {overlap} in flight at once");
    let serial = DELAY * REPOS as u32;
    assert!(took < serial / 2, "{REPOS} repositories took {took:.1?} (one token at a time: {serial:?})");
}
