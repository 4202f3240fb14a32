//! A blocking client for the Docker Registry HTTP API V2 / OCI Distribution API.
//!
//! One [`Client`] per registry and credential set, shared by all workers. Every request goes
//! through [`Client::send`], which adds authentication, retries transient failures with
//! back-off (idempotent requests only; a streamed upload is retried by the engine instead) and
//! follows redirects without carrying `Authorization` to another origin.

mod auth;
mod blobs;
mod manifests;
mod tags;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ureq::http::{Response, Uri};
use ureq::SendBody;

pub use blobs::BlobReader;
pub use blobs::Upload;
pub use manifests::{Access, Fetched, Head};

use crate::config::{Auth, TlsOptions};
use crate::reference::Repository;

/// What went wrong, where.
#[derive(Debug)]
pub struct Error {
    pub registry: String,
    /// The operation and object, e.g. `GET manifest a/b:v1`.
    pub what: String,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Transport(String),
    /// The TLS handshake failed (unknown CA, bad or missing client certificate…).
    Tls(String),
    Status {
        status: u16,
        detail: String,
    },
    Unauthorized(String),
    DigestMismatch {
        expected: String,
        actual: String,
    },
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    TooLarge(u64),
    Invalid(String),
}

impl Error {
    pub fn new(registry: &str, what: impl Into<String>, kind: ErrorKind) -> Error {
        Error { registry: registry.to_string(), what: what.into(), kind }
    }

    fn transport(registry: &str, what: impl Into<String>, e: ureq::Error) -> Error {
        let msg = match e {
            ureq::Error::Io(io) => io.to_string(),
            other => other.to_string(),
        };
        let lower = msg.to_ascii_lowercase();
        let tls = ["certificate", "tls", "handshake", "alert", "rustls"].iter().any(|w| lower.contains(w));
        Error::new(registry, what, if tls { ErrorKind::Tls(msg) } else { ErrorKind::Transport(msg) })
    }

    /// An unexpected status; the body's `errors[]` (distribution spec) becomes the detail.
    fn status(registry: &str, what: impl Into<String>, status: u16, body: &mut ureq::Body) -> Error {
        let bytes = body.with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Errs {
            errors: Vec<E>,
        }
        #[derive(serde::Deserialize)]
        struct E {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let detail = serde_json::from_slice::<Errs>(&bytes)
            .map(|e| e.errors.iter().map(|e| format!("{} {}", e.code, e.message)).collect::<Vec<_>>().join("; "))
            .unwrap_or_default();
        let kind = if status == 401 {
            ErrorKind::Unauthorized(if detail.is_empty() { "access denied (HTTP 401)".into() } else { detail })
        } else {
            ErrorKind::Status { status, detail }
        };
        Error::new(registry, what, kind)
    }

    /// Worth retrying at once: network trouble, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Transport(_) => true,
            ErrorKind::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Transport(m) => write!(f, "connection failed: {m}"),
            ErrorKind::Tls(m) => write!(
                f,
                "TLS failed: {m} (trust its CA with ca_file in the auth file or --ca-file, give a client \
                 certificate with cert_file/key_file, or use skip_tls_verify)"
            ),
            ErrorKind::Status { status, detail } if detail.is_empty() => write!(f, "HTTP {status}"),
            ErrorKind::Status { status, detail } => write!(f, "HTTP {status}: {detail}"),
            ErrorKind::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            ErrorKind::DigestMismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
            ErrorKind::SizeMismatch { expected, actual } => {
                write!(f, "size mismatch: expected {expected} bytes, got {actual}")
            }
            ErrorKind::TooLarge(limit) => write!(f, "response larger than the {limit}-byte limit"),
            ErrorKind::Invalid(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.registry, self.what, self.kind)
    }
}

impl std::error::Error for Error {}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scope a token needs to read a repository.
pub fn pull_scope(name: &str) -> String {
    format!("repository:{name}:pull")
}

/// The scope a token needs to write a repository (push first, as registries expect).
pub fn push_scope(name: &str) -> String {
    format!("repository:{name}:pull,push")
}

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
    base: String,
    agent: ureq::Agent,
    auth: auth::Authenticator,
    /// Upload blobs with PATCH + empty PUT instead of one PUT (see [`Client::upload_blob`]).
    patch_uploads: std::sync::atomic::AtomicBool,
}

const TRANSIENT_ATTEMPTS: u32 = 3;
const MAX_REDIRECTS: u32 = 5;

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Resolve a `Location` header against this registry.
    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            format!("{}/{}", self.base, location)
        }
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
        // Redirects are followed for reads only; a body that was streamed cannot be re-sent, so
        // only requests without a streamed body are retried here (the engine retries the rest).
        let idempotent = matches!(method, "GET" | "HEAD");
        let resendable = !matches!(body, Body::Stream(..));
        let mut auth_retried = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authz = self.auth.header(&self.agent, scopes)?;
            let result = self.send_once(method, url, headers, authz.as_deref(), &mut body);
            let retry_left = resendable && attempt < TRANSIENT_ATTEMPTS;
            let resp = match result {
                Err(e) => {
                    let err = Error::transport(&self.registry, what, e);
                    // A TLS failure (unknown CA, refused certificate) will not go away: no retry.
                    if retry_left && err.is_transient() {
                        log::debug!("{err}; retrying");
                        backoff(attempt, None);
                        continue;
                    }
                    return Err(err);
                }
                Ok(r) => r,
            };
            let status = resp.status().as_u16();
            if status == 401 && resendable {
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
                    attempt -= 1;
                    continue;
                }
            }
            if (status >= 500 || status == 429) && retry_left {
                let wait = header(&resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
                log::debug!("{}: {what}: HTTP {status}; retrying", self.registry);
                backoff(attempt, wait.map(Duration::from_secs));
                continue;
            }
            if (300..400).contains(&status) && status != 304 && idempotent {
                return self.follow(resp, method, headers, authz.as_deref(), what);
            }
            return Ok(resp);
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
        method: &str,
        headers: &[(&str, &str)],
        authz: Option<&str>,
        what: &str,
    ) -> Result<Response<ureq::Body>, Error> {
        let origin = |u: &str| {
            u.parse::<Uri>().ok().map(|u| (u.scheme_str().map(String::from), u.host().map(String::from), u.port_u16()))
        };
        let first = origin(&self.base);
        let mut current = self.base.clone();
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
            let next = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else if loc.starts_with('/') {
                let o = origin(&current);
                match o {
                    Some((Some(s), Some(h), p)) => match p {
                        Some(p) => format!("{s}://{h}:{p}{loc}"),
                        None => format!("{s}://{h}{loc}"),
                    },
                    _ => self.resolve(&loc),
                }
            } else {
                self.resolve(&loc)
            };
            let same_origin = origin(&next) == first;
            log::debug!("{}: {what}: redirected (same origin: {same_origin})", self.registry);
            let a = if same_origin { authz } else { None };
            resp = self
                .send_once(method, &next, headers, a, &mut Body::Empty)
                .map_err(|e| Error::transport(&self.registry, what, e))?;
            current = next;
        }
        Err(Error::new(&self.registry, what, ErrorKind::Invalid("too many redirects".into())))
    }
}

fn backoff(attempt: u32, hint: Option<Duration>) {
    let d = hint.unwrap_or(Duration::from_millis(250 << attempt.min(6))).min(Duration::from_secs(30));
    std::thread::sleep(d);
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

/// Clients by (registry, matching auth key).
type ClientMap = HashMap<(String, Option<String>), Arc<Client>>;

/// All clients of a run, created on first use.
pub struct Registries {
    auth: Auth,
    global_tls: TlsOptions,
    /// One agent per distinct TLS setting, built up front so bad TLS files fail the run early.
    agents: HashMap<TlsOptions, ureq::Agent>,
    clients: Mutex<ClientMap>,
    anonymous_logged: Mutex<std::collections::HashSet<String>>,
}

impl Registries {
    /// Fails when a CA, certificate or key file cannot be used.
    pub fn new(auth: Auth, global_tls: TlsOptions, workers: usize) -> Result<Registries, String> {
        let mut agents = HashMap::new();
        let profiles = std::iter::once(global_tls.clone())
            .chain(auth.rules().iter().filter(|r| !r.insecure).map(|r| r.tls.merged(&global_tls)));
        for tls in profiles {
            if let std::collections::hash_map::Entry::Vacant(slot) = agents.entry(tls) {
                let agent = transport::agent(workers, slot.key())?;
                slot.insert(agent);
            }
        }
        Ok(Registries {
            auth,
            global_tls,
            agents,
            clients: Mutex::new(HashMap::new()),
            anonymous_logged: Mutex::new(Default::default()),
        })
    }

    /// The client for `repo`, chosen by the longest matching auth key.
    pub fn client(&self, repo: &Repository) -> Arc<Client> {
        let rule = self.auth.lookup(repo);
        let key = (repo.registry.clone(), rule.map(|r| r.key.clone()));
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let credentials = self.auth.credentials(repo);
        if credentials.is_none() && self.anonymous_logged.lock().insert(repo.to_string()) {
            log::info!("no credentials for {repo}: accessing it anonymously");
        }
        let insecure = match rule {
            Some(r) => r.insecure,
            None => is_loopback(&repo.registry),
        };
        let tls = rule.map_or_else(|| self.global_tls.clone(), |r| r.tls.merged(&self.global_tls));
        if tls.skip_verify && !insecure {
            log::warn!("{}: TLS certificates are not verified (skip_tls_verify)", repo.registry);
        }
        let scheme = if insecure { "http" } else { "https" };
        let client = Arc::new(Client {
            registry: repo.registry.clone(),
            base: format!("{scheme}://{}", repo.registry),
            agent: self.agents.get(&tls).or_else(|| self.agents.get(&self.global_tls)).cloned().expect("agents built"),
            auth: auth::Authenticator::new(&repo.registry, credentials),
            patch_uploads: rule.is_some_and(|r| r.chunked_upload).into(),
        });
        clients.insert(key, client.clone());
        client
    }
}

/// Loopback registries are plain http unless the auth file says otherwise (as Docker does).
fn is_loopback(registry: &str) -> bool {
    let host =
        registry
            .rsplit_once(':')
            .map_or(registry, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { registry });
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
    }
}
