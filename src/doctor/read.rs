//! The reading probes: the API root and its challenge, tag-list and catalog pagination, the
//! referrers API, what a manifest `HEAD` carries (digest, pull budget) and whether it needs
//! `application/json` in `Accept`. Nothing here writes; each probe is one or two requests.

use super::setup::{Credentials, Setup};
use super::table::{self, Row};
use super::unreachable;
use crate::digest::Digest;
use crate::manifest::MediaType;
use crate::registry::{Answer, Client, Scope};
use crate::store::{Error, ErrorKind};

/// What the API root said.
pub struct Api {
    pub version: Row,
    pub auth: Row,
    /// The answer to `GET /v2/` (authenticated when it could be), for its headers.
    pub answer: Option<Answer>,
    /// Anonymous access is refused and no credentials are configured.
    pub needs_credentials: bool,
}

/// `GET /v2/` as a stranger (the challenge) and as the sync's client (with its credentials).
/// `Err` only when the registry gives no HTTP answer at all.
pub fn api(client: &Client, setup: &Setup, https: bool) -> Result<Api, Error> {
    let url = client.url("/v2/");
    let anonymous = match client.probe_anonymous(&url) {
        Err(e) if unreachable(&e) => return Err(e),
        other => other,
    };
    let authed = match client.probe("GET", &url, Scope::Registry, &[], &[]) {
        Err(e) if unreachable(&e) => return Err(e),
        other => other,
    };
    let first = anonymous.as_ref().ok().map(|a| a.status);
    let refused = matches!(&authed, Err(Error { kind: ErrorKind::Unauthorized(_), .. }));
    let needs_credentials = first == Some(401) && refused && setup.credentials == Credentials::None;
    let version = version_row(anonymous.as_ref().ok(), &authed);
    let auth = auth_row(&anonymous, &authed, setup, https);
    let answer = authed.ok().or(anonymous.ok());
    Ok(Api { version, auth, answer, needs_credentials })
}

/// `registry/2.0 (GET /v2/: 401, then 200 once authenticated)`: the header of the
/// authenticated answer, else of the anonymous one.
fn version_row(anonymous: Option<&Answer>, authed: &Result<Answer, Error>) -> Row {
    let first = anonymous.map(|a| a.status);
    let how = match (first, authed) {
        (Some(s), Ok(a)) if s == a.status => format!("GET /v2/: {s}"),
        (Some(s), Ok(a)) => format!("GET /v2/: {s}, then {} once authenticated", a.status),
        (None, Ok(a)) => format!("GET /v2/: {}", a.status),
        (Some(s), Err(e)) => format!("GET /v2/: {s}; authenticated: {}", e.kind),
        (None, Err(e)) => format!("GET /v2/: {}", e.kind),
    };
    let header = |a: &Answer| a.header("docker-distribution-api-version");
    let ok = authed.as_ref().ok().filter(|a| a.status == 200);
    match (ok, ok.and_then(header).or_else(|| anonymous.and_then(header))) {
        (_, Some(v)) => Row::found(table::API, format!("{v} ({how})")),
        // The OCI distribution spec does not require the header.
        (Some(_), None) => Row::found(table::API, format!("no Docker-Distribution-API-Version header ({how})")),
        (None, None) => match authed {
            Ok(a) if a.status == 404 => Row::found(table::API, format!("no Registry V2 API here ({how})")),
            _ => Row::unknown(table::API, how),
        },
    }
}

/// The challenge of the anonymous `GET /v2/`, whose credentials the client used, and whether
/// they were accepted. Realm and service are printed; no credential or token ever is.
fn auth_row(anonymous: &Result<Answer, Error>, authed: &Result<Answer, Error>, setup: &Setup, https: bool) -> Row {
    let anonymous = match anonymous {
        Ok(a) => a,
        Err(e) => return Row::unknown(table::AUTH, format!("the anonymous GET /v2/ failed: {}", e.kind)),
    };
    let who = setup.who();
    let scheme = match (anonymous.status, anonymous.header("www-authenticate")) {
        (200, _) => return Row::found(table::AUTH, format!("none required (GET /v2/ answers 200 anonymously); {who}")),
        (401, Some(c)) => challenge(&c, https),
        (401, None) => "401 without a WWW-Authenticate challenge".to_string(),
        (_, _) => format!("GET /v2/ answered {} anonymously", anonymous.describe()),
    };
    let outcome = match authed {
        Ok(a) if a.status == 200 => "accepted".to_string(),
        Ok(a) => format!("answered {}", a.describe()),
        Err(e) => format!("refused: {}", e.kind),
    };
    Row::found(table::AUTH, format!("{scheme}; {who}: {outcome}"))
}

/// `Bearer, token realm https://auth.example/token, service registry.example` (or Basic).
fn challenge(header: &str, https: bool) -> String {
    let Ok(parsed) = http_auth::parse_challenges(header) else {
        return "an unparsable WWW-Authenticate challenge".to_string();
    };
    let described: Vec<String> = parsed
        .iter()
        .map(|c| {
            let param =
                |name: &str| c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
            let mut out = c.scheme.to_string();
            if c.scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = param("realm") {
                    out.push_str(&format!(", token realm {realm}"));
                    if https && realm.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://")) {
                        out.push_str(" (plain http: credentials are not sent to it)");
                    }
                }
                if let Some(service) = param("service") {
                    out.push_str(&format!(", service {service}"));
                }
            } else if let Some(realm) = param("realm") {
                out.push_str(&format!(" (realm {realm:?})"));
            }
            out
        })
        .collect();
    described.join(" or ")
}

/// `GET tags/list?n=1`: does a `Link` come back, and in which form? The first tag, for the
/// manifest probes.
pub fn tags(client: &Client, repo: &str) -> (Row, Option<String>) {
    let url = client.url(&format!("/v2/{repo}/tags/list?n=1"));
    let (names, link) = match listing(client, &url, Scope::Pull(repo), "tags") {
        Ok(found) => found,
        Err(why) => return (Row::unknown(table::TAGS, why), None),
    };
    let row = pagination(client, table::TAGS, ("tag", "tags"), names.len(), link.as_deref(), repo);
    (row, names.into_iter().next())
}

/// `GET /v2/_catalog?n=1`, as [`tags`]. Many registries restrict the catalog.
pub fn catalog(client: &Client) -> Row {
    let url = client.url("/v2/_catalog?n=1");
    match listing(client, &url, Scope::Catalog, "repositories") {
        Ok((names, link)) => {
            let nouns = ("repository", "repositories");
            pagination(client, table::CATALOG, nouns, names.len(), link.as_deref(), "the catalog")
        }
        Err(why) => Row::unknown(table::CATALOG, why),
    }
}

/// One page of a listing: the names in `field` and the `rel="next"` target.
fn listing(client: &Client, url: &str, scope: Scope<'_>, field: &str) -> Result<(Vec<String>, Option<String>), String> {
    let what = url.rsplit_once("/v2/").map_or(url, |(_, p)| p);
    let a = client.probe("GET", url, scope, &[("Accept", "application/json")], &[]).map_err(|e| e.kind.to_string())?;
    if a.status != 200 {
        return Err(format!("GET {what} answered {}", a.describe()));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("GET {what}: not a JSON listing: {e}"))?;
    // `"tags": null` is how distribution lists a repository without tags.
    let names = doc[field].as_array().map(|v| v.iter().filter_map(|t| t.as_str().map(String::from)).collect());
    Ok((names.unwrap_or_default(), a.next_link()))
}

/// The finding of a listing asked for one entry.
fn pagination(
    client: &Client,
    probe: &'static str,
    (noun, nouns): (&str, &str),
    n: usize,
    link: Option<&str>,
    of: &str,
) -> Row {
    let got = if n == 1 { format!("1 {noun}") } else { format!("{n} {nouns}") };
    match (link, n) {
        (Some(link), 0 | 1) => Row::found(probe, format!("yes: n=1 gave {got} and {}", link_form(client, link))),
        // ACR pages by 1000 whatever n says (Azure/acr#749).
        (Some(link), _) => Row::found(probe, format!("yes, n ignored: n=1 gave {got} and {}", link_form(client, link))),
        (None, 0) => Row::unknown(probe, format!("{of} lists nothing")),
        (None, 1) => Row::unknown(probe, format!("n=1 gave 1 {noun} and no Link: {of} may have only one")),
        (None, _) => Row::found(probe, format!("no: n=1 gave {got} and no Link (n ignored, all on one page)")),
    }
}

/// Where a `Link` points and its query's form: distribution's `n`/`last`, or an opaque token
/// (Quay's `next_page`, regclient#272) that must be followed as given.
fn link_form(client: &Client, link: &str) -> String {
    let absolute = link.starts_with("http://") || link.starts_with("https://");
    let place = match (absolute, link.starts_with(&client.url("/"))) {
        (false, _) => "a relative Link",
        (true, true) => "an absolute Link",
        (true, false) => "a Link to another origin",
    };
    let query = link.split_once('?').map_or("", |(_, q)| q);
    let keys: Vec<&str> = query.split('&').filter_map(|kv| kv.split('=').next()).filter(|k| !k.is_empty()).collect();
    let form = if keys.contains(&"last") {
        format!("{}, as distribution", keys.join("&"))
    } else if keys.is_empty() {
        "no query".to_string()
    } else {
        format!("opaque {}, followed as given", keys.join("&"))
    };
    format!("{place} ({form})")
}

/// `GET /v2/REPO/referrers/DIGEST`: an index is the OCI 1.1 API; a registry that has it never
/// answers 404 (distribution-spec, "Listing Referrers"), older ones do (distribution 2.8) or
/// answer 400, 405 or 501.
pub fn referrers(client: &Client, repo: &str, digest: Option<&Digest>) -> Row {
    let (digest, whose) = match digest {
        Some(d) => (d.clone(), "the tag"),
        None => (Digest::of(b""), "a made-up digest"),
    };
    let url = client.url(&format!("/v2/{repo}/referrers/{digest}"));
    let index = MediaType::OCI_INDEX;
    let accept = [("Accept", index.as_str())];
    let a = match client.probe("GET", &url, Scope::Pull(repo), &accept, &[]) {
        Ok(a) => a,
        Err(e) => return Row::unknown(table::REFERRERS, format!("GET referrers: {}", e.kind)),
    };
    let fallback = "referrers are found through sha256-<hex> tags instead";
    match a.status {
        200 => match serde_json::from_slice::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|d| d["manifests"].as_array().map(Vec::len))
        {
            Some(n) => Row::found(table::REFERRERS, format!("yes: 200 with an index ({n} referrer(s) of {whose})")),
            None => Row::unknown(table::REFERRERS, "200 without an image index"),
        },
        404 if a.errors().is_empty() => Row::found(table::REFERRERS, format!("no: HTTP 404 ({fallback})")),
        400 | 405 | 406 | 501 => Row::found(table::REFERRERS, format!("no: {} ({fallback})", a.describe())),
        _ => Row::unknown(table::REFERRERS, format!("GET referrers answered {}", a.describe())),
    }
}

/// What a manifest `HEAD` told.
pub struct Manifest {
    pub digest_row: Row,
    pub accept_row: Row,
    pub rate_row: Row,
    /// The tag's digest, when the `HEAD` named it.
    pub digest: Option<Digest>,
}

/// `HEAD` a tag with the four manifest types in `Accept` and nothing else; a `406` is asked
/// again with `application/json` added (Artifactory: concourse/docker-image-resource#40).
pub fn manifest(client: &Client, repo: &str, tag: &str) -> Manifest {
    let url = client.url(&format!("/v2/{repo}/manifests/{tag}"));
    let types = [MediaType::DOCKER_MANIFEST, MediaType::DOCKER_LIST, MediaType::OCI_MANIFEST, MediaType::OCI_INDEX]
        .map(|t| t.as_str().to_string())
        .join(", ");
    let head = |accept: &str| client.probe("HEAD", &url, Scope::Pull(repo), &[("Accept", accept)], &[]);
    let (accept_row, answer) = match head(&types) {
        Ok(a) if a.status == 406 => match head(&format!("{types}, application/json")) {
            Ok(b) if b.status == 200 => {
                let ours = if crate::manifest::ACCEPT.contains("application/json") {
                    "image-syncer sends it"
                } else {
                    "image-syncer's Accept lacks it: its manifest requests fail here"
                };
                let found = format!("needs application/json: HEAD answered 406 without it, 200 with it ({ours})");
                (Row::found(table::ACCEPT, found), Ok(b))
            }
            Ok(b) => {
                let why = format!("HEAD answered 406 without application/json and {} with it", b.describe());
                (Row::unknown(table::ACCEPT, why), Ok(b))
            }
            Err(e) => (Row::unknown(table::ACCEPT, format!("HEAD with application/json: {}", e.kind)), Err(e)),
        },
        Ok(a) if a.status == 200 => {
            (Row::found(table::ACCEPT, "manifest types are enough (200 without application/json)"), Ok(a))
        }
        Ok(a) => (Row::unknown(table::ACCEPT, format!("HEAD {repo}:{tag} answered {}", a.describe())), Ok(a)),
        Err(e) => (Row::unknown(table::ACCEPT, format!("HEAD {repo}:{tag}: {}", e.kind)), Err(e)),
    };
    let a = match answer {
        Ok(a) => a,
        Err(e) => {
            let why = format!("HEAD {repo}:{tag}: {}", e.kind);
            let (digest_row, rate_row) = (Row::unknown(table::HEAD_DIGEST, &why), Row::unknown(table::RATE_LIMIT, why));
            return Manifest { digest_row, accept_row, rate_row, digest: None };
        }
    };
    let digest = a.header("docker-content-digest").and_then(|d| Digest::parse(&d).ok()).filter(|_| a.status == 200);
    let digest_row = match (a.status, &digest) {
        (200, Some(d)) => Row::found(table::HEAD_DIGEST, format!("yes: Docker-Content-Digest {d} for {tag}")),
        (200, None) => Row::found(
            table::HEAD_DIGEST,
            "no: HEAD answers lack Docker-Content-Digest (image-syncer GETs the manifest to learn its digest)",
        ),
        (405, _) => Row::found(table::HEAD_DIGEST, "HEAD refused (405): image-syncer GETs the manifest instead"),
        _ => Row::unknown(table::HEAD_DIGEST, format!("HEAD {repo}:{tag} answered {}", a.describe())),
    };
    let rate_row = rate_limit(&a, "a manifest HEAD")
        .unwrap_or_else(|| Row::found(table::RATE_LIMIT, "none announced (no RateLimit-* headers on a manifest HEAD)"));
    Manifest { digest_row, accept_row, rate_row, digest }
}

/// Without a manifest to ask for, the headers of `GET /v2/` (Docker Hub sends its budget only
/// with manifest answers, so their absence there tells nothing).
pub fn rate_limit_of_api(answer: &Option<Answer>) -> Row {
    answer.as_ref().and_then(|a| rate_limit(a, "GET /v2/")).unwrap_or_else(|| {
        Row::unknown(
            table::RATE_LIMIT,
            "none on GET /v2/; only a manifest answer tells, and no tag was given to ask for",
        )
    })
}

/// The pull budget Docker Hub announces (`RateLimit-Limit: 100;w=21600`, `RateLimit-Remaining`;
/// docs.docker.com/docker-hub/usage/pulls), when `a` carries one.
fn rate_limit(a: &Answer, on: &str) -> Option<Row> {
    let found: Vec<String> = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
        .iter()
        .filter_map(|h| a.header(h).map(|v| format!("{h}: {v}")))
        .collect();
    (!found.is_empty()).then(|| Row::found(table::RATE_LIMIT, format!("announced on {on}: {}", found.join(", "))))
}
