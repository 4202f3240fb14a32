//! Registry personalities for the test proxy: each answers some requests the way one real
//! registry is documented to, where it differs from the distribution spec — because the tool
//! must sync through every registry its users run, and only the Debian `docker-registry` runs
//! here. Each behaviour names its source; everything else is forwarded as it is.
//!
//! The proxy consults a personality at three points: when a request's head has arrived
//! ([`Personality::refuse_unread`]: a refusal sent before the body is read, the connection then
//! closed), when its body has been read ([`Personality::on_request`]: answer it, forward it
//! changed, or forward it), and when the registry has answered ([`Personality::on_answer`]).
//! Tag pages are cut by [`quay_page`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::http::{error_body, query_param, Head};
use super::util::sha256_digest;

/// GHCR's per-request body limit on `PATCH` (4 MiB).
pub const GHCR_MAX_PATCH: usize = 4 * 1024 * 1024;

/// ACR's single-request upload limit as reported: "~20MB" (goharbor/harbor#23015).
pub const ACR_MAX_SINGLE_REQUEST: usize = 20_000_000;

/// How a registry differs from the distribution spec ([`super::ProxyOpts::personality`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Personality {
    /// Amazon ECR:
    /// * an upload `PATCH` is answered `201 Created` instead of `202 Accepted`
    ///   (<https://github.com/openai/tart/issues/273>; dotnet/sdk#33336 handles ECR's `Created`);
    /// * a later `PATCH` of a session is answered with the `Range` of the session's first one:
    ///   the header does not advance although every chunk is stored
    ///   (<https://github.com/aws/containers-roadmap/issues/2831>, dotnet/sdk#33019);
    /// * a cross-repository mount is not honoured (unless the account enabled blob mounting):
    ///   the `POST ?mount=&from=` opens a plain upload session, `202`
    ///   (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html>).
    Ecr,
    /// GitHub Container Registry:
    /// * a `PATCH` body over 4 MiB is refused: `416` `REQUESTED_RANGE_NOT_SATISFIABLE` "the
    ///   request body is too large and exceeds the maximum permissible limit of 4.00MiB"
    ///   (<https://github.com/ocx-sh/ocx/pull/237>,
    ///   <https://github.com/oras-project/rust-oci-client/issues/35>, fixed by #37);
    /// * no referrers API: `GET /v2/NAME/referrers/…` is `404` (clients use fallback tags).
    Ghcr,
    /// Google Artifact Registry: no chunked uploads, "You must use monolithic uploads"
    /// (<https://cloud.google.com/artifact-registry/docs/reference/docker-api>, quoted in
    /// <https://github.com/dotnet/sdk-container-builds/pull/287>): every upload `PATCH` is
    /// refused, `405` `UNSUPPORTED`.
    ArtifactRegistry,
    /// JFrog Artifactory:
    /// * a single-request upload (`PUT ?digest=` with a body) is refused `404` `BLOB_UNKNOWN`;
    ///   it wants `PATCH` (<https://github.com/docker/buildx/issues/196>,
    ///   <https://github.com/containerd/containerd/issues/3533>);
    /// * a manifest `GET` or `HEAD` whose `Accept` does not include `application/json` is
    ///   answered `406 Not Acceptable`
    ///   (<https://github.com/concourse/docker-image-resource/issues/40>, fixed by adding
    ///   `application/json` in #41; deitch/docker_registry2#40 the same).
    Artifactory,
    /// Azure Container Registry: a single-request upload body over `max_single_request` bytes
    /// (about 20 MB, [`ACR_MAX_SINGLE_REQUEST`]) is refused `413` "413 Request Entity Too Large -
    /// AzureContainerRegistry" before the body is read, and the connection closed
    /// (<https://github.com/goharbor/harbor/issues/23015>); a `PATCH` without `Content-Length`
    /// (chunked transfer encoding) is refused `400` `CONTENT_LENGTH_INVALID`
    /// (<https://github.com/goharbor/harbor/pull/23016>).
    Acr { max_single_request: usize },
    /// Any registry behind nginx: a request body over `client_max_body_size` is refused `413`
    /// (nginx's HTML page) as soon as the head is read, and the connection closed
    /// (<https://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size>;
    /// RFC 9110 §10.1.1 for what a client sending `Expect: 100-continue` then learns in time).
    Nginx { client_max_body_size: usize },
    /// Quay: tag lists come in pages of at most `page_size` (50 on quay.io), in no lexical order,
    /// the next one named only by an opaque `next_page` token in `Link`; `last` is ignored
    /// (<https://github.com/regclient/regclient/issues/272>, #274; the `Link` as
    /// deitch/docker_registry2#56 shows it). No referrers API.
    Quay { page_size: usize },
    /// Harbor: projects are made by an administrator, never by a push
    /// (<https://github.com/goharbor/harbor/issues/6892>). For a project in `missing_projects`:
    /// * an upload into it (`POST …/blobs/uploads/`) or a manifest `PUT` is refused `404`
    ///   `NAME_UNKNOWN` "project P not found";
    /// * a mount whose `from` is in it is refused `401` `UNAUTHORIZED` "project P not found"
    ///   where the spec wants a `202` upload session
    ///   (<https://github.com/goharbor/harbor/issues/17097>).
    ///
    /// Reads are forwarded: a test may read a source through the same proxy, standing in for
    /// a project the pushing account cannot mount from.
    Harbor { missing_projects: Vec<String> },
}

/// An answer the proxy gives itself; nothing is forwarded.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply { status, headers: vec![("Content-Type".to_string(), content_type.to_string())], body }
    }

    /// A registry error body (`{"errors":[{code, message}]}`).
    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::new(status, "application/json; charset=utf-8", error_body(code, message))
    }
}

/// What to do with a request whose body has been read.
#[derive(Clone, Debug)]
pub enum Verdict {
    Forward,
    /// Forward it with this request URI instead.
    ForwardAs(String),
    Reply(Reply),
}

/// The request as a personality sees it.
pub struct Req<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub head: &'a Head,
}

impl Req<'_> {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }

    /// `POST /v2/NAME/blobs/uploads/` (with or without `mount=`).
    fn is_upload_start(&self) -> bool {
        self.method == "POST" && self.path().starts_with("/v2/") && self.path().ends_with("/blobs/uploads/")
    }

    /// A request to an upload session (`/v2/NAME/blobs/uploads/ID`).
    fn is_session(&self) -> bool {
        self.path().starts_with("/v2/") && self.path().contains("/blobs/uploads/") && !self.is_upload_start()
    }

    /// `PUT ?digest=` with a body: a single-request upload.
    fn is_single_request(&self) -> bool {
        self.method == "PUT" && self.is_session() && self.head.content_length().unwrap_or(0) > 0
    }

    fn is_manifest(&self) -> bool {
        self.path().starts_with("/v2/") && self.path().contains("/manifests/")
    }

    fn is_referrers(&self) -> bool {
        self.method == "GET" && self.path().starts_with("/v2/") && self.path().contains("/referrers/")
    }

    /// The first path component of the repository (a Harbor project).
    fn project(&self) -> &str {
        self.path().trim_start_matches("/v2/").split('/').next().unwrap_or("")
    }
}

/// What a personality remembers across requests: ECR's first `Range` per upload session.
#[derive(Default)]
pub struct Memory {
    first_range: Mutex<HashMap<String, String>>,
}

/// nginx's page for a body over `client_max_body_size`.
const NGINX_413: &[u8] = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n\
<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

impl Personality {
    /// A refusal decided from the head alone, sent before the body is read.
    pub fn refuse_unread(&self, req: &Req) -> Option<Reply> {
        let declared = req.head.content_length().unwrap_or(0);
        match self {
            Personality::Acr { max_single_request } if req.is_single_request() && declared > *max_single_request => {
                Some(Reply::new(413, "text/plain", b"413 Request Entity Too Large - AzureContainerRegistry".to_vec()))
            }
            Personality::Acr { .. }
                if req.method == "PATCH" && req.is_session() && req.head.content_length().is_none() =>
            {
                Some(Reply::error(400, "CONTENT_LENGTH_INVALID", "the Content-Length header is missing or invalid"))
            }
            Personality::Nginx { client_max_body_size } if declared > *client_max_body_size => {
                Some(Reply::new(413, "text/html", NGINX_413.to_vec()))
            }
            _ => None,
        }
    }

    /// What to do with a request whose body (`body_len` bytes) has been read.
    pub fn on_request(&self, req: &Req, body_len: usize) -> Verdict {
        match self {
            Personality::Ecr if req.is_upload_start() && query_param(req.query(), "mount").is_some() => {
                Verdict::ForwardAs(req.path().to_string())
            }
            Personality::Ghcr if req.method == "PATCH" && req.is_session() && body_len > GHCR_MAX_PATCH => {
                Verdict::Reply(Reply::error(
                    416,
                    "REQUESTED_RANGE_NOT_SATISFIABLE",
                    "the request body is too large and exceeds the maximum permissible limit of 4.00MiB",
                ))
            }
            Personality::Ghcr | Personality::Quay { .. } if req.is_referrers() => {
                Verdict::Reply(Reply::error(404, "NAME_UNKNOWN", "repository name not known to registry"))
            }
            Personality::ArtifactRegistry if req.method == "PATCH" && req.is_session() => {
                Verdict::Reply(Reply::error(405, "UNSUPPORTED", "The operation is unsupported."))
            }
            Personality::Artifactory if req.is_single_request() => {
                Verdict::Reply(Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"))
            }
            Personality::Artifactory
                if matches!(req.method, "GET" | "HEAD")
                    && req.is_manifest()
                    && !req.head.get("accept").is_some_and(|a| accepts_json(&a)) =>
            {
                Verdict::Reply(Reply::new(406, "text/plain", b"Not Acceptable".to_vec()))
            }
            Personality::Harbor { missing_projects } => harbor(req, missing_projects),
            _ => Verdict::Forward,
        }
    }

    /// Change the registry's answer `answer` to `req` (status line and headers).
    pub fn on_answer(&self, req: &Req, answer: &mut Head, memory: &Memory) {
        if !matches!(self, Personality::Ecr) || req.method != "PATCH" || !req.is_session() || answer.status() != 202 {
            return;
        }
        answer.line = "HTTP/1.1 201 Created".to_string();
        let session = req.path().rsplit('/').next().unwrap_or("").to_string();
        let Some(range) = answer.get("range") else { return };
        let mut first = memory.first_range.lock().unwrap();
        let stale = first.entry(session).or_insert(range).clone();
        answer.set("Range", &stale);
    }

    /// Tag lists come in pages of this many tags ([`quay_page`]).
    pub fn tag_page_size(&self) -> Option<usize> {
        match self {
            Personality::Quay { page_size } => Some(*page_size),
            _ => None,
        }
    }
}

/// `Accept` lists `application/json` (or a wildcard that covers it).
fn accepts_json(accept: &str) -> bool {
    accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .any(|t| t.eq_ignore_ascii_case("application/json") || t == "*/*" || t.eq_ignore_ascii_case("application/*"))
}

fn harbor(req: &Req, missing: &[String]) -> Verdict {
    let missing_project = |p: &str| missing.iter().any(|m| m == p);
    if req.is_upload_start() {
        if let Some(from) = query_param(req.query(), "from") {
            let from_project = from.split('/').next().unwrap_or("");
            if query_param(req.query(), "mount").is_some() && missing_project(from_project) {
                let message = format!("project {from_project} not found: project {from_project} not found");
                return Verdict::Reply(Reply::error(401, "UNAUTHORIZED", &message));
            }
        }
    }
    let push = req.is_upload_start() || (req.method == "PUT" && req.is_manifest());
    if push && missing_project(req.project()) {
        let message = format!("project {} not found", req.project());
        return Verdict::Reply(Reply::error(404, "NAME_UNKNOWN", &message));
    }
    Verdict::Forward
}

/// One Quay tag page of `tags` for a request with `query`: at most `page_size` tags (fewer when
/// the client's `n` is smaller) in Quay's order (by tag digest here: stable, not lexical), from
/// where the opaque `next_page` token says; the client's `last` is ignored. Returns the page and
/// the query of the next one (`next_page=TOKEN&n=N`), if any.
pub fn quay_page(mut tags: Vec<String>, query: &str, page_size: usize) -> (Vec<String>, Option<String>) {
    tags.sort_by_key(|t| sha256_digest(t.as_bytes()));
    let n = query_param(query, "n").and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(page_size);
    let size = n.min(page_size).max(1);
    let start = query_param(query, "next_page").and_then(|t| open_token(&t)).unwrap_or(0);
    let page: Vec<String> = tags.iter().skip(start).take(size).cloned().collect();
    let end = start + page.len();
    let next = (end < tags.len()).then(|| format!("next_page={}&n={size}", seal_token(end)));
    (page, next)
}

/// Quay's tokens are Fernet-encrypted (`gAAAAA…`, URL-escaped base64): nothing a client can
/// read or build. Here: the offset, hidden behind a fixed mask, in hex after the same prefix.
const TOKEN_MASK: u64 = 0x5bd1_e995_3c6e_f372;

fn seal_token(offset: usize) -> String {
    format!("gAAAAA{:016x}%3D%3D", offset as u64 ^ TOKEN_MASK)
}

fn open_token(token: &str) -> Option<usize> {
    let hex = token.strip_prefix("gAAAAA")?.trim_end_matches("==");
    u64::from_str_radix(hex.get(..16)?, 16).ok().map(|v| (v ^ TOKEN_MASK) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quay_pages_follow_the_token_and_ignore_last() {
        let tags: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
        let mut seen = Vec::new();
        let mut query = "n=1000&last=t6".to_string();
        loop {
            let (page, next) = quay_page(tags.clone(), &query, 3);
            assert!(page.len() <= 3);
            seen.extend(page);
            match next {
                // As a client following `Link` sends it back: percent-escapes decoded by the proxy.
                Some(n) => query = n,
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, tags);
    }

    #[test]
    fn accept_with_json() {
        assert!(accepts_json("application/vnd.oci.image.manifest.v1+json, application/json;q=0.1"));
        assert!(!accepts_json("application/vnd.docker.distribution.manifest.v2+json"));
    }
}
