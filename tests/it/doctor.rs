//! `image-syncer doctor REGISTRY[/REPO] [--write REPO]`: the table of what a registry does,
//! against a plain registry, a token-auth TLS registry, and test proxies that behave otherwise
//! (paginated lists, the referrers API, HEADs without a digest, a pull budget, refused
//! single-request uploads, a body-size cap); `--write` leaves no tag or upload session behind;
//! an unreachable registry is one line naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::pki::Pki;
use crate::common::private::{auth_text, AuthKey};
use crate::common::secure::SecureRegistry;
use crate::common::token::{TokenOpts, TokenServer, SERVICE};
use crate::common::*;

fn doctor(args: &[&str]) -> Run {
    run_syncer(&[&["doctor"], args].concat())
}

/// The finding of `probe` in the table the run printed.
fn row(run: &Run, probe: &str) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(probe).filter(|rest| rest.starts_with("  ")).map(|rest| rest.trim().to_string()))
        .unwrap_or_else(|| panic!("no {probe:?} row:\n{run}"))
}

/// Every probe has a row, and the run printed its table.
fn assert_table(run: &Run) {
    run.assert_ok();
    for probe in [
        "API version",
        "authentication",
        "TLS",
        "tag list pagination",
        "catalog pagination",
        "referrers API",
        "manifest HEAD digest",
        "manifest Accept",
        "rate limit",
        "single-request upload",
        "PATCH upload",
        "PATCH answer",
        "PATCH size cap",
        "cross-repo mount",
        "cleanup",
    ] {
        row(run, probe);
    }
}

/// Files below `dir` named `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// `repo` on `reg` holds no tag, no manifest, no blob link and no live upload session. (A
/// cancelled session keeps its `hashstates/` in distribution 2.8, whose cancel stores the hash
/// state again after removing the session: distribution/distribution#4524; its `data` and
/// `startedat`, which make a session, are gone.)
fn assert_nothing_left(reg: &Registry, repo: &str) {
    assert!(reg.api().tags(repo).is_empty(), "{repo} has tags: {:?}", reg.api().tags(repo));
    let root = reg.data_dir().join("docker/registry/v2/repositories").join(repo);
    assert!(!root.join("_manifests").exists(), "a manifest was written to {repo}");
    let links = files_named(&root.join("_layers"), "link");
    assert!(links.is_empty(), "blobs are still linked into {repo}: {links:?}");
    let uploads = root.join("_uploads");
    let sessions: Vec<PathBuf> = ["data", "startedat"].iter().flat_map(|n| files_named(&uploads, n)).collect();
    assert!(sessions.is_empty(), "upload sessions are left in {repo}: {sessions:?}");
}

#[test]
fn a_plain_registry_read_without_writing() {
    let reg = Registry::start();
    let img = push_simple(reg.api(), "team/app", "v1");
    tag_image(reg.api(), &img, "v2");
    push_simple(reg.api(), "team/other", "v1");
    reg.clear_requests();

    // No auth file: a loopback registry found to speak plain http, accessed anonymously.
    let run = doctor(&[&reg.repo("team/app")]);
    assert_table(&run);
    assert!(run.stdout.starts_with(&format!("image-syncer doctor: {} (reading team/app)", reg.addr())), "{run}");
    assert!(row(&run, "API version").starts_with("registry/2.0 (GET /v2/: 200)"), "{run}");
    assert!(row(&run, "authentication").starts_with("none required"), "{run}");
    assert!(row(&run, "TLS").starts_with("plain http"), "{run}");
    // distribution never pages tags, and does page its catalog.
    assert_eq!(row(&run, "tag list pagination"), "no: n=1 gave 2 tags and no Link (n ignored, all on one page)");
    assert!(
        row(&run, "catalog pagination").starts_with("yes: n=1 gave 1 repository and a relative Link (last&n"),
        "{run}"
    );
    assert!(row(&run, "referrers API").starts_with("no: HTTP 404"), "{run}");
    let head = row(&run, "manifest HEAD digest");
    assert!(head.starts_with("yes: Docker-Content-Digest") && head.contains(&img.digest), "{run}");
    assert!(row(&run, "manifest Accept").starts_with("manifest types are enough"), "{run}");
    assert!(row(&run, "rate limit").starts_with("none announced"), "{run}");
    assert_eq!(row(&run, "single-request upload"), "unknown (not tested: give --write REPO)");
    assert!(run.stdout.contains("  insecure: true  # it speaks plain http"), "{run}");
    assert!(reg.writes().is_empty(), "doctor without --write wrote: {:?}", reg.writes());
}

#[test]
fn the_table_names_what_a_differing_registry_does() {
    let reg = Registry::start();
    let img = push_simple(reg.api(), "team/app", "v1");
    tag_image(reg.api(), &img, "v2");
    push_simple(reg.api(), "team/other", "v1");
    let proxy = Proxy::start_with(
        &reg.addr(),
        ProxyOpts {
            page_size: 1,
            catalog_page_size: 5,
            head_without_digest: true,
            referrers: Some(vec![]),
            pull_budget: Some(PullBudget { limit: 100, window: Duration::from_secs(21600) }),
            ..ProxyOpts::default()
        },
    );
    let dir = TestDir::new("doctor");
    let auth =
        dir.write("auth.yaml", &auth_yaml(&[AuthEntry::insecure(&reg.addr()), AuthEntry::insecure(&proxy.addr())]));
    let plain = doctor(&[&reg.repo("team/app"), "--auth", p(&auth)]);
    let odd = doctor(&[&proxy.repo("team/app"), "--auth", p(&auth)]);
    assert_table(&plain);
    assert_table(&odd);

    assert!(row(&plain, "tag list pagination").starts_with("no: "), "{plain}");
    assert_eq!(row(&odd, "tag list pagination"), "yes: n=1 gave 1 tag and a relative Link (n&last, as distribution)");
    // The proxy's catalog pages hold 5: n=1 is honoured.
    assert!(row(&odd, "catalog pagination").starts_with("yes: n=1 gave 1 repository"), "{odd}");
    assert!(row(&plain, "referrers API").starts_with("no: "), "{plain}");
    // Without the HEAD's digest, the referrers of a made-up digest are asked for.
    assert_eq!(row(&odd, "referrers API"), "yes: 200 with an index (0 referrer(s) of a made-up digest)");
    assert!(row(&plain, "manifest HEAD digest").starts_with("yes: "), "{plain}");
    assert!(row(&odd, "manifest HEAD digest").starts_with("no: HEAD answers lack Docker-Content-Digest"), "{odd}");
    assert!(row(&plain, "rate limit").starts_with("none announced"), "{plain}");
    let rate = row(&odd, "rate limit");
    assert!(
        rate.contains("RateLimit-Limit: 100;w=21600") && rate.contains("RateLimit-Remaining: 100;w=21600"),
        "{odd}"
    );
    // A HEAD spends no pull of the budget: the doctor's probe cost none.
    assert!(!odd.stdout.contains("RateLimit-Remaining: 99"), "{odd}");
    // What both do alike reads alike.
    for same in ["API version", "authentication", "manifest Accept"] {
        assert_eq!(row(&plain, same), row(&odd, same), "{plain}\n{odd}");
    }
}

#[test]
fn write_uploads_each_way_and_leaves_no_tag_or_session() {
    let reg = Registry::start();
    let img = push_simple(reg.api(), "team/app", "v1");
    reg.clear_requests();

    let run = doctor(&[&reg.repo("team/app"), "--write", "team/scratch"]);
    assert_table(&run);
    assert!(run.stdout.contains("(reading team/app, writing to team/scratch)"), "{run}");
    assert_eq!(row(&run, "single-request upload"), "yes: POST, then PUT with the body: 201");
    assert_eq!(row(&run, "PATCH upload"), "yes: POST, PATCH, then an empty PUT: 201");
    assert_eq!(row(&run, "PATCH answer"), "202 Accepted, as the spec says");
    assert_eq!(row(&run, "PATCH size cap"), "none at 5 MiB: a 5 MiB PATCH was accepted");
    assert_eq!(row(&run, "cross-repo mount"), "honoured: 201 Created (a blob of team/app mounted)");
    assert_eq!(row(&run, "cleanup"), "nothing tagged; 3 blob(s) written and deleted, 1 upload session(s) cancelled");
    assert!(run.stdout.contains("insecure: true"), "{run}");
    assert!(!run.stdout.contains("chunked_upload"), "{run}");

    assert_nothing_left(&reg, "team/scratch");
    // The repository read from is untouched: its blob was mounted, not moved.
    assert!(reg.api().blob_exists("team/app", &img.config_digest));
    assert_eq!(reg.api().tags("team/app"), ["v1"]);
    let writes: Vec<_> = reg.writes().into_iter().filter(|r| !r.path.starts_with("/v2/team/scratch/")).collect();
    assert!(writes.is_empty(), "doctor wrote outside the --write repository: {writes:?}");
    // Every blob `DELETE` was a probe blob's or the mounted one's, in the scratch repository.
    let deletes = reg.requests().into_iter().filter(|r| r.is_delete() && r.path.contains("/blobs/sha256:")).count();
    assert_eq!(deletes, 3, "{run}");
}

#[test]
fn write_finds_refused_single_requests_and_a_chunk_cap() {
    let reg = Registry::start();
    // Single-request uploads refused (as Artifactory's 404/405, docker/buildx#196), and bodies
    // over 4 MiB refused (as GHCR's cap; nginx's client_max_body_size answers 413).
    let proxy = Proxy::start_with(
        &reg.addr(),
        ProxyOpts {
            max_body: Some(4 * 1024 * 1024),
            faults: vec![FaultRule::always(Match::MonolithicPut, Fault::Status(405))],
            ..ProxyOpts::default()
        },
    );
    let dir = TestDir::new("doctor");
    let auth = dir.write("auth.yaml", &auth_yaml(&[AuthEntry::insecure(&proxy.addr())]));
    let run = doctor(&[&proxy.addr(), "--auth", p(&auth), "--write", &proxy.repo("team/scratch")]);
    assert_table(&run);
    assert!(row(&run, "single-request upload").starts_with("refused: PUT with the body answered HTTP 405"), "{run}");
    assert!(row(&run, "PATCH upload").starts_with("yes: "), "{run}");
    assert_eq!(row(&run, "PATCH size cap"), "yes: a 5 MiB PATCH was refused (HTTP 413)");
    assert!(row(&run, "cross-repo mount").starts_with("unknown (needs a REPO with a tag"), "{run}");
    // The refused single request's session and the capped one are cancelled.
    assert_eq!(row(&run, "cleanup"), "nothing tagged; 1 blob(s) written and deleted, 2 upload session(s) cancelled");
    assert!(run.stdout.contains("  chunked_upload: true  # single-request uploads are refused, PATCH works"), "{run}");
    assert!(run.stdout.contains("flags: --chunk-size 2MiB"), "{run}");
    // Without a repository to read, the reading probes say why they could not tell.
    assert_eq!(row(&run, "tag list pagination"), "unknown (give a repository: doctor REGISTRY/REPO)");
    assert_nothing_left(&reg, "team/scratch");
}

#[test]
fn write_says_what_it_could_not_clean_up() {
    let reg = Registry::start_without_deletion();
    let run = doctor(&[&reg.addr(), "--write", "team/scratch"]);
    assert_table(&run);
    let cleanup = row(&run, "cleanup");
    assert!(cleanup.starts_with("LEFT BEHIND: "), "{run}");
    let refusals = cleanup.matches("probe blob sha256:").count();
    assert_eq!(refusals, 2, "both probe blobs are named: {cleanup}");
    assert!(cleanup.contains("in team/scratch (DELETE answered HTTP 405 UNSUPPORTED"), "{cleanup}");
    assert!(reg.api().tags("team/scratch").is_empty());
}

const USER: &str = "doctor-robot";
const PASS: &str = "D0ct0r-Pa55-xyzzy-77";

#[test]
fn a_token_auth_tls_registry() {
    let pki = Pki::new();
    let server = TokenServer::start(TokenOpts { anonymous: true, ..TokenOpts::new(USER, PASS) });
    let reg = SecureRegistry::https_with_tokens(&pki, &server);
    let img = push_simple(reg.api(), "team/app", "v1");
    let dir = TestDir::new("doctor");
    let ca = pki.ca_cert.to_str().unwrap();
    let auth = dir.write("auth.yaml", &auth_text(&[AuthKey::new(&reg.addr()).ca_file(ca)]));
    let run = doctor(&[&reg.repo("team/app"), "--auth", p(&auth), "--write", "team/scratch"]);
    assert_table(&run);
    assert_eq!(row(&run, "API version"), "registry/2.0 (GET /v2/: 401, then 200 once authenticated)");
    let realm = server.realm();
    assert_eq!(
        row(&run, "authentication"),
        format!(
            "Bearer, token realm {realm} (plain http: credentials are not sent to it), service {SERVICE}; no \
             credentials (anonymous): accepted"
        )
    );
    assert_eq!(row(&run, "TLS"), format!("https, certificate verified against the system roots and {ca}"));
    assert!(row(&run, "manifest HEAD digest").contains(&img.digest), "{run}");
    assert!(row(&run, "single-request upload").starts_with("yes"), "{run}");
    assert!(row(&run, "PATCH upload").starts_with("yes"), "{run}");
    assert!(row(&run, "cross-repo mount").starts_with("honoured"), "{run}");
    assert!(row(&run, "cleanup").starts_with("nothing tagged; 3 blob(s)"), "{run}");
    assert!(
        run.stdout.contains(&format!("auth.yaml: nothing more needed than auth key \"{}\" has", reg.addr())),
        "{run}"
    );
    assert!(reg.api().tags("team/scratch").is_empty());
    // Tokens were issued (one per scope asked), and none is printed.
    let tokens = server.tokens();
    assert!(tokens.len() >= 3, "{tokens:?}");
    let signatures: Vec<&str> = tokens.iter().filter_map(|t| t.rsplit('.').next()).collect();
    let secrets: Vec<&str> = tokens.iter().map(String::as_str).chain(signatures).collect();
    assert_no_secrets(&[("stdout", &run.stdout), ("stderr", &run.stderr)], &secrets, &[]);

    // With credentials, the plain-http realm is refused them: the row says so, and nothing leaks.
    let creds = dir.write("creds.yaml", &auth_text(&[AuthKey::new(&reg.addr()).ca_file(ca).creds(USER, PASS)]));
    let run = doctor(&[&reg.repo("team/app"), "--auth", p(&creds)]);
    assert_table(&run);
    let auth_row = row(&run, "authentication");
    assert!(
        auth_row.contains(&format!("credentials of auth key \"{}\": refused: credentials are not sent", reg.addr())),
        "{run}"
    );
    assert_no_secrets(&[("output", &run.output())], &[PASS], &[(USER, PASS)]);
    assert!(server.requests().iter().all(|r| r.authorization.is_none()), "credentials went to the http realm");
}

#[test]
fn an_unreachable_registry_is_one_line_naming_it() {
    let addr = format!("127.0.0.1:{}", free_port());
    let run = doctor(&[&format!("{addr}/team/app")]);
    run.assert_failed();
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.is_empty(), "no table for a registry that never answered:\n{run}");
    let lines = run.stderr_lines_naming(&addr, &["cannot be reached"]);
    assert_eq!(lines.len(), 1, "{run}");
    assert!(lines[0].contains("connection"), "{run}");
}

/// `doctor --write` through registry personalities (tests/it/common/personality.rs): each table
/// names what that registry does differently, and the advice is what it needs.
#[test]
fn the_table_names_what_each_registry_personality_does() {
    let reg = Registry::start();
    push_simple(reg.api(), "team/app", "v1");
    let ask = |personality: Personality| {
        let proxy = Proxy::like(&reg.addr(), personality);
        let dir = TestDir::new("doctor");
        let auth = dir.write("auth.yaml", &auth_yaml(&[AuthEntry::insecure(&proxy.addr())]));
        let run = doctor(&[&proxy.repo("team/app"), "--auth", p(&auth), "--write", "team/scratch"]);
        assert_table(&run);
        assert_nothing_left(&reg, "team/scratch");
        run
    };

    // ECR: PATCH answered 201; a mount answered with a plain session.
    let ecr = ask(Personality::Ecr);
    assert!(row(&ecr, "PATCH answer").starts_with("201"), "{ecr}");
    assert!(row(&ecr, "cross-repo mount").starts_with("not honoured"), "{ecr}");
    // GHCR: a 5 MiB PATCH refused.
    let ghcr = ask(Personality::Ghcr);
    assert!(row(&ghcr, "PATCH size cap").starts_with("yes: a 5 MiB PATCH was refused (HTTP 416"), "{ghcr}");
    // Artifact Registry: no PATCH at all; the default single requests need no key.
    let gar = ask(Personality::ArtifactRegistry);
    assert!(row(&gar, "PATCH upload").starts_with("refused"), "{gar}");
    assert!(row(&gar, "single-request upload").starts_with("yes: "), "{gar}");
    assert!(!gar.stdout.contains("chunked_upload"), "{gar}");
    // Artifactory: manifests need application/json in Accept; single requests refused.
    let artifactory = ask(Personality::Artifactory);
    assert!(row(&artifactory, "manifest Accept").contains("application/json"), "{artifactory}");
    assert!(row(&artifactory, "single-request upload").starts_with("refused"), "{artifactory}");
    assert!(artifactory.stdout.contains("chunked_upload: true"), "{artifactory}");
    // A plain registry's table says none of these.
    let plain = ask(Personality::Quay { page_size: 0 });
    assert_eq!(row(&plain, "PATCH answer"), "202 Accepted, as the spec says", "{plain}");
    assert!(row(&plain, "cross-repo mount").starts_with("honoured"), "{plain}");
}
