//! One registry's client: every request goes through [`Client::send`], which adds
//! authentication, retries transient failures with back-off, and follows redirects without
//! carrying `Authorization` to another origin.
//!
//! Each API operation wraps its request (and the reading of its answer) in
//! [`Client::retrying`], so a transient failure — at connect time, in the status, or half-way
//! through the body — is retried as a whole, with back-off, a bounded number of times. A
//! streamed upload is consumed by its first attempt, so the engine retries the whole blob.
//!
//! Whether the registry answers at all is its [`Health`]'s business: `send` asks it before each
//! request and tells it whether an answer came; a registry that stopped answering fails its
//! requests at once.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use ureq::http::Response;
use ureq::SendBody;

use super::auth::Authenticator;
use super::error::{io_error, transport, unanswered};
use super::health::Health;
use super::http::{header, origin, resolve};
use super::learned::Learned;
use super::settings::Limits;
use crate::retry::Backoff;
use crate::store::{Error, ErrorKind, Meter};

const MAX_REDIRECTS: u32 = 5;

/// A request body.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Streamed once: cannot be re-sent, so no automatic retry.
    Stream(&'a mut dyn Read, Option<u64>),
}

/// A client for one registry with one set of credentials.
pub struct Client {
    pub registry: String,
    /// `scheme://host[:port]`.
    base: String,
    pub(crate) agent: ureq::Agent,
    pub(crate) auth: Authenticator,
    pub(crate) limits: Limits,
    /// What the registry was found to take for uploads (see `uploads.rs`).
    pub(crate) learned: Learned,
    /// What to change in the auth file when the registry speaks the other scheme.
    scheme_fix: String,
    /// The pull budget the registry announces, if any.
    pub(crate) rate: super::ratelimit::RateLimit,
    /// Whether the registry answers at all; shared by every client of the same registry.
    health: Arc<Health>,
}

impl Client {
    pub(crate) fn new(
        registry: &str,
        base: String,
        agent: ureq::Agent,
        auth: Authenticator,
        limits: Limits,
        chunked: bool,
        scheme_fix: String,
    ) -> Client {
        let rate = Default::default();
        let learned = Learned::new(registry, chunked);
        let health = Arc::new(Health::new(registry, limits.stall_timeout));
        Client { registry: registry.to_string(), base, agent, auth, limits, learned, scheme_fix, rate, health }
    }

    /// Share `health` with the other clients of this registry (other credentials, same host).
    pub(crate) fn with_health(self, health: Arc<Health>) -> Client {
        Client { health, ..self }
    }

    /// The URL of an API path on this registry.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Resolve a `Location` header against this registry.
    pub(crate) fn resolve(&self, location: &str) -> String {
        resolve(&self.base, location)
    }

    /// What was learned about this registry in this run, for the report.
    pub fn learned_facts(&self) -> Vec<(&'static str, String)> {
        self.learned.facts()
    }

    /// Send one request with auth, transient retries and safe redirects.
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        mut body: Body<'_>,
        what: &str,
    ) -> Result<Response<ureq::Body>, Error> {
        let idempotent = matches!(method, "GET" | "HEAD");
        let resendable = !matches!(body, Body::Stream(..));
        // A URL the registry handed back (an upload `Location`, a tag list `Link`) may point to
        // another host: credentials go only to the registry's own origin.
        let same_origin = origin(url) == origin(&self.base);
        let mut auth_retried = false;
        loop {
            if crate::stop::requested() {
                return Err(Error::new(&self.registry, what, ErrorKind::Interrupted));
            }
            if same_origin {
                self.health.admit(what, &|| self.answers_at_all())?;
            }
            let authz = if same_origin { self.auth.header(&self.agent, scopes)? } else { None };
            let sent = Instant::now();
            let resp = match self.send_once(method, url, headers, authz.as_deref(), &mut body) {
                Ok(resp) => resp,
                Err(e) => {
                    let silent = same_origin && unanswered(&e);
                    let e = self.scheme_hint(transport(&self.registry, what, e));
                    if silent {
                        self.health.unanswered(sent, &e, &|| self.answers_at_all());
                    }
                    return Err(e);
                }
            };
            if same_origin {
                self.health.answered();
            }
            let resp = self.check_plain_http_answer(resp, what)?;
            let status = resp.status().as_u16();
            if status == 401 && resendable && same_origin {
                // Learn the scheme and retry once; a second 401 gets the best diagnosis we have
                // (e.g. "invalid username or password" when Basic credentials were refused).
                let challenge = header(&resp, "www-authenticate");
                self.auth.on_unauthorized(challenge.as_deref(), scopes, authz.as_deref(), auth_retried).map_err(
                    |mut e| {
                        e.what = what.to_string();
                        e
                    },
                )?;
                if !auth_retried {
                    auth_retried = true;
                    continue;
                }
            }
            if (300..400).contains(&status) && status != 304 && idempotent {
                return self.follow(resp, url, method, headers, authz.as_deref(), what);
            }
            return Ok(resp);
        }
    }

    /// Whether the registry answers at all: `GET /v2/` (the API version check, answered 200 or
    /// 401 by every registry) within the stall timeout, without credentials. Any answer is one;
    /// only silence (as [`unanswered`] tells it) is an error.
    fn answers_at_all(&self) -> Result<(), Error> {
        let request = self.agent.get(self.url("/v2/")).config().timeout_global(Some(self.limits.stall_timeout));
        match request.build().call() {
            Err(e) if unanswered(&e) => Err(transport(&self.registry, "GET /v2/", e)),
            Err(e) => {
                log::debug!("{}: GET /v2/: {e}; it is there, at least", self.registry);
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// An error that says the registry speaks the other scheme, with the fix.
    fn scheme_hint(&self, mut e: Error) -> Error {
        if let ErrorKind::WrongScheme(m) = &mut e.kind {
            m.push_str("; ");
            m.push_str(&self.scheme_fix);
        }
        e
    }

    /// A TLS server answers plain http with a 400 whose body says so (Go: "Client sent an HTTP
    /// request to an HTTPS server", nginx: "The plain HTTP request was sent to HTTPS port"):
    /// reported as exactly that. Any other answer is handed back untouched.
    fn check_plain_http_answer(&self, resp: Response<ureq::Body>, what: &str) -> Result<Response<ureq::Body>, Error> {
        if resp.status().as_u16() != 400 || !self.base.starts_with("http://") {
            return Ok(resp);
        }
        let (parts, mut body) = resp.into_parts();
        let read = |body: &mut ureq::Body| body.with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        let bytes = read(&mut body);
        let says_https = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            text.contains("HTTPS server") || text.contains("sent to HTTPS port")
        };
        // A HEAD answer has no body to tell: ask the API root once.
        let https = says_https(&bytes)
            || (bytes.is_empty()
                && self.agent.get(self.url("/v2/")).call().is_ok_and(|mut r| says_https(&read(r.body_mut()))));
        if https {
            let m = "it answered plain http with \"400 Bad Request: this is an HTTPS server\": it speaks https";
            return Err(self.scheme_hint(Error::new(&self.registry, what, ErrorKind::WrongScheme(m.into()))));
        }
        Ok(Response::from_parts(parts, ureq::Body::builder().data(bytes)))
    }

    /// Run `op` (a request and the reading of its answer) until it succeeds, fails for good,
    /// or runs out of attempts. Transient failures, 5xx/429 answers (honouring `Retry-After`)
    /// and bodies damaged in transit are retried; an error already [`Error::exhausted`] (an
    /// inner `retrying`'s, or a registry that is not answering) is not.
    pub(crate) fn retrying<T>(&self, what: &str, mut op: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
        let mut backoff = Backoff::new();
        loop {
            match op() {
                Err(e) if e.exhausted => return Err(e),
                Err(e) if e.is_transient() || e.is_damaged_body() => match backoff.next(e.retry_after(), &e) {
                    Some(wait) => {
                        log::debug!("{e}; retrying in {wait:.1?} (attempt {})", backoff.attempt());
                        if !crate::stop::sleep(wait) {
                            return Err(Error::new(&self.registry, what, ErrorKind::Interrupted));
                        }
                    }
                    None => {
                        return Err(Error { exhausted: true, ..e });
                    }
                },
                other => return other,
            }
        }
    }

    /// The minimum-speed check of a body read from this registry.
    pub(crate) fn meter(&self) -> Meter {
        Meter::new(self.limits.stall_timeout, self.limits.min_speed)
    }

    /// Read a small answer whole (a manifest, a tag list), at most `limit` bytes, with the
    /// minimum-speed check of blob streams.
    pub(crate) fn read_body(&self, resp: Response<ureq::Body>, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let mut meter = self.meter();
        let mut reader = resp.into_body().into_with_config().limit(limit).reader();
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => n,
                Err(e) => return Err(self.body_error(what, limit, e)),
            };
            meter.add(n).map_err(|e| io_error(&self.registry, what, e))?;
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn body_error(&self, what: &str, limit: u64, e: std::io::Error) -> Error {
        // ureq reports the limit as an I/O error wrapping its own error.
        match ureq::Error::from(e) {
            ureq::Error::BodyExceedsLimit(_) => Error::new(&self.registry, what, ErrorKind::TooLarge(limit)),
            other => transport(&self.registry, what, other),
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        authz: Option<&str>,
        body: &mut Body<'_>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = authz {
            b = b.header("Authorization", a);
        }
        match body {
            Body::Empty if method == "GET" || method == "HEAD" => self.agent.run(b.body(())?),
            Body::Empty => self.agent.run(b.header("Content-Length", "0").body(())?),
            Body::Bytes(bytes) => {
                let len = bytes.len().to_string();
                self.agent.run(b.header("Content-Length", len).body(*bytes)?)
            }
            Body::Stream(reader, len) => {
                if let Some(l) = len {
                    b = b.header("Content-Length", l.to_string());
                }
                self.agent.run(b.body(SendBody::from_reader(*reader))?)
            }
        }
    }

    /// Follow a redirect chain. `Authorization` goes along only while the origin is unchanged.
    fn follow(
        &self,
        mut resp: Response<ureq::Body>,
        url: &str,
        method: &str,
        headers: &[(&str, &str)],
        authz: Option<&str>,
        what: &str,
    ) -> Result<Response<ureq::Body>, Error> {
        let first = origin(&self.base);
        let mut current = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let status = resp.status().as_u16();
            if !(300..400).contains(&status) || status == 304 {
                return Ok(resp);
            }
            let Some(loc) = header(&resp, "location") else {
                return Err(Error::new(
                    &self.registry,
                    what,
                    ErrorKind::Invalid(format!("HTTP {status} without Location")),
                ));
            };
            let next = resolve(&current, &loc);
            let same_origin = origin(&next) == first;
            log::debug!("{}: {what}: redirected (same origin: {same_origin})", self.registry);
            let a = if same_origin { authz } else { None };
            resp = self
                .send_once(method, &next, headers, a, &mut Body::Empty)
                .map_err(|e| transport(&self.registry, what, e))?;
            current = next;
        }
        Err(Error::new(&self.registry, what, ErrorKind::Invalid("too many redirects".into())))
    }
}
