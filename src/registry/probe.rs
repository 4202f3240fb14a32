//! Raw requests for `image-syncer doctor`, which must see what a registry answers — status,
//! headers, a small body — where the API calls of a sync turn answers into results or errors.
//!
//! [`Client::probe`] goes through [`Client::send`], so authentication, TLS, the plain-http check
//! and redirects behave exactly as in a sync; it is tried once (no back-off: the doctor reports
//! what happened, it does not insist). [`Client::probe_anonymous`] sends no credentials and
//! learns nothing, to read the registry's own challenge.

use ureq::http::Response;

use super::auth::{delete_scope, pull_scope, push_scope};
use super::client::Body;
use super::error::transport;
use super::http::next_link;
use super::Client;
use crate::store::{ApiError, Error};

/// The most of an answer's body a probe keeps (a tag list page, an index, an error).
const BODY_LIMIT: u64 = 1024 * 1024;

/// What a probe needs a token for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// `GET /v2/`: whatever the registry grants without a repository.
    Registry,
    Pull(&'a str),
    Push(&'a str),
    /// Push to `to`, pull from `from`: a cross-repository mount.
    Mount {
        to: &'a str,
        from: &'a str,
    },
    /// Delete in a repository (blobs, upload sessions).
    Delete(&'a str),
    /// `GET /v2/_catalog`.
    Catalog,
}

impl Scope<'_> {
    fn strings(self) -> Vec<String> {
        match self {
            Scope::Registry => Vec::new(),
            Scope::Pull(r) => vec![pull_scope(r)],
            Scope::Push(r) => vec![push_scope(r)],
            Scope::Mount { to, from } => vec![push_scope(to), pull_scope(from)],
            Scope::Delete(r) => vec![delete_scope(r)],
            Scope::Catalog => vec!["registry:catalog:*".to_string()],
        }
    }
}

/// A registry's answer to a probe.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub status: u16,
    headers: ureq::http::HeaderMap,
    /// At most [`BODY_LIMIT`] bytes (nothing for a `HEAD`).
    pub body: Vec<u8>,
}

impl Answer {
    /// A header, when it is there and readable text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(String::from)
    }

    /// The registry's `errors[]` in the body (distribution spec), if any.
    pub fn errors(&self) -> Vec<ApiError> {
        ApiError::list(&self.body)
    }

    /// The target of the `rel="next"` entry of its `Link` header, as written.
    pub fn next_link(&self) -> Option<String> {
        self.header("link").and_then(|l| next_link(&l))
    }

    /// `HTTP 404` or `HTTP 404 NAME_UNKNOWN: repository name not known to registry`.
    pub fn describe(&self) -> String {
        let errors = self.errors();
        if errors.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {} {}", self.status, ApiError::describe(&errors))
        }
    }
}

impl Client {
    /// Send one request to `url` (from [`Client::url`] or a `Location` resolved with
    /// [`Client::resolve`]) with the token `scope` needs, and read the answer whole (up to a
    /// limit). Only a request that got no answer is an `Err`.
    pub(crate) fn probe(
        &self,
        method: &str,
        url: &str,
        scope: Scope<'_>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Error> {
        let what = format!("doctor: {method} {}", path_of(url));
        let body = if body.is_empty() { Body::Empty } else { Body::Bytes(body) };
        let resp = self.send(method, url, &scope.strings(), headers, body, &what)?;
        self.answer(resp, method, &what)
    }

    /// `GET url` without credentials, and without learning from a `401`: the registry's
    /// answer to a stranger (its challenge, its API version header).
    pub(crate) fn probe_anonymous(&self, url: &str) -> Result<Answer, Error> {
        let what = format!("doctor: GET {}", path_of(url));
        let resp = self.agent.get(url).call().map_err(|e| transport(&self.registry, &what, e))?;
        self.answer(resp, "GET", &what)
    }

    fn answer(&self, resp: Response<ureq::Body>, method: &str, what: &str) -> Result<Answer, Error> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if method == "HEAD" { Vec::new() } else { self.read_body(resp, BODY_LIMIT, what)? };
        Ok(Answer { status, headers, body })
    }
}

/// The path and query of a URL, for messages (an upload `Location` may be long, but it names
/// no secret: credentials travel in headers).
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or("/", |i| &url[after_scheme + i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_each_probe() {
        assert!(Scope::Registry.strings().is_empty());
        assert_eq!(Scope::Mount { to: "a", from: "b" }.strings(), ["repository:a:pull,push", "repository:b:pull"]);
        assert_eq!(Scope::Catalog.strings(), ["registry:catalog:*"]);
        assert_eq!(path_of("https://r.io:5000/v2/a/tags/list?n=1"), "/v2/a/tags/list?n=1");
        assert_eq!(path_of("https://r.io"), "/");
    }
}
