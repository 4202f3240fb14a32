//! Registry authentication: anonymous, Basic, and Bearer tokens from a token server.
//!
//! The scheme is learned from the first `401`'s `WWW-Authenticate` challenge and remembered per
//! registry, so later requests carry credentials up front instead of paying a 401 round-trip
//! each. Bearer tokens are cached per scope set until shortly before they expire and are shared
//! by all worker threads; only one thread fetches a given token at a time. Credentials go to the
//! token endpoint only; they never appear in `Debug` output, logs or errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use super::retry::Backoff;
use super::settings::Credentials;
use super::{encode_query, Error, ErrorKind};

/// How long a token without `expires_in` is valid (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires, so a request never starts with a token
/// that dies in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    /// No challenge seen yet: send nothing.
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    /// When to stop using it: shortly before it expires (half-way for very short lifetimes).
    refresh_at: Instant,
}

impl Token {
    fn fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

struct State {
    scheme: Scheme,
    tokens: HashMap<String, Token>,
}

pub struct Authenticator {
    registry: String,
    /// A token answer is small: it must arrive whole within this time (a trickle is a stall).
    deadline: Duration,
    credentials: Option<Credentials>,
    state: Mutex<State>,
    /// Held while fetching a token so concurrent workers wait for one fetch instead of racing.
    fetching: Mutex<()>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Authenticator {
    pub fn new(registry: &str, credentials: Option<Credentials>, deadline: Duration) -> Authenticator {
        Authenticator {
            registry: registry.to_string(),
            deadline,
            credentials,
            state: Mutex::new(State { scheme: Scheme::Unknown, tokens: HashMap::new() }),
            fetching: Mutex::new(()),
        }
    }

    fn unauthorized(&self, msg: impl Into<String>) -> Error {
        Error::new(&self.registry, "authenticate", ErrorKind::Unauthorized(msg.into()))
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a token if needed.
    pub fn header(&self, agent: &ureq::Agent, scopes: &[String]) -> Result<Option<String>, Error> {
        let key = scopes.join(" ");
        let scheme = {
            let st = self.state.lock();
            if let Some(t) = st.tokens.get(&key) {
                if t.fresh() {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
            }
            st.scheme.clone()
        };
        match scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.basic()),
            Scheme::Bearer { realm, service } => {
                let _one_fetch = self.fetching.lock();
                // Another thread may have fetched it while we waited.
                if let Some(t) = self.state.lock().tokens.get(&key) {
                    if t.fresh() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let token = self.fetch_token(agent, &realm, service.as_deref(), scopes)?;
                let value = format!("Bearer {}", token.value);
                self.state.lock().tokens.insert(key, token);
                Ok(Some(value))
            }
        }
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| http_auth::basic::encode_credentials(&c.username, &c.password))
    }

    /// Learn from a `401`. `Ok` means: try again with [`Self::header`]; `Err` means it is hopeless.
    /// `retried` says the request already carried what an earlier 401 asked for: then the answer
    /// is always the best diagnosis.
    pub fn on_unauthorized(
        &self,
        challenge: Option<&str>,
        scopes: &[String],
        sent: Option<&str>,
        retried: bool,
    ) -> Result<(), Error> {
        let who = if self.credentials.is_some() { "the configured credentials" } else { "anonymous access" };
        if retried {
            let why = match sent {
                Some(s) if s.starts_with("Bearer ") => {
                    let error = challenge
                        .and_then(|c| http_auth::parse_challenges(c).ok())
                        .and_then(|cs| {
                            cs.iter().find_map(|c| {
                                c.params
                                    .iter()
                                    .find(|(k, _)| k.eq_ignore_ascii_case("error"))
                                    .map(|(_, v)| v.to_unescaped())
                            })
                        })
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    self.state.lock().tokens.remove(&scopes.join(" "));
                    format!("the registry rejected the token its token server issued for {who}{error}")
                }
                Some(s) if s.starts_with("Basic ") => "invalid username or password".to_string(),
                _ => format!("access denied to {who}"),
            };
            return Err(self.unauthorized(why));
        }
        let Some(challenge) = challenge else {
            return Err(self.unauthorized(format!("401 without a WWW-Authenticate challenge ({who})")));
        };
        let parsed = http_auth::parse_challenges(challenge)
            .map_err(|e| self.unauthorized(format!("unparsable WWW-Authenticate challenge: {e}")))?;
        let bearer = parsed.iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
        let basic = parsed.iter().any(|c| c.scheme.eq_ignore_ascii_case("basic"));
        let mut st = self.state.lock();
        if let Some(c) = bearer {
            let param =
                |name: &str| c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
            let Some(realm) = param("realm") else {
                return Err(self.unauthorized("Bearer challenge without a realm"));
            };
            let scheme = Scheme::Bearer { realm, service: param("service") };
            // A rejected token (expired early, too narrow) is dropped; the caller retries once
            // with a fresh one and reports the second 401.
            st.tokens.remove(&scopes.join(" "));
            st.scheme = scheme;
            return Ok(());
        }
        if basic {
            if self.credentials.is_none() {
                return Err(self.unauthorized("authentication required and no credentials are configured for it"));
            }
            if sent.is_some_and(|s| s.starts_with("Basic ")) {
                return Err(self.unauthorized("invalid username or password"));
            }
            st.scheme = Scheme::Basic;
            return Ok(());
        }
        Err(self.unauthorized(format!("unsupported authentication scheme in {challenge:?}")))
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, Error> {
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = service {
            url.push_str(&format!("{sep}service={}", encode_query(s)));
            sep = '&';
        }
        for s in scopes {
            url.push_str(&format!("{sep}scope={}", encode_query(s)));
            sep = '&';
        }
        let what = "fetch token";
        let mut backoff = Backoff::new();
        // The token server is retried like any registry request: it fails the same ways.
        let mut resp = loop {
            let mut req = agent.get(&url).config().timeout_global(Some(self.deadline)).build();
            if let Some(b) = self.basic() {
                req = req.header("Authorization", b);
            }
            let err = match req.call() {
                Ok(r) if r.status().as_u16() >= 500 || r.status().as_u16() == 429 => {
                    let mut r = r;
                    Error::status(&self.registry, what, &mut r)
                }
                Ok(r) => break r,
                Err(e) => Error::transport(&self.registry, what, e),
            };
            let wait = if err.is_transient() { backoff.next(err.retry_after(), &err) } else { None };
            match wait {
                Some(wait) if crate::stop::sleep(wait) => log::debug!("{err}; retrying"),
                _ => return Err(err),
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let who = if self.credentials.is_some() { "the configured credentials" } else { "anonymous access" };
            return Err(self.unauthorized(format!("the token server refused {who} (HTTP {status})")));
        }
        if status != 200 {
            return Err(Error::status(&self.registry, what, &mut resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec()
            .map_err(|e| Error::transport(&self.registry, what, e))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::new(&self.registry, what, ErrorKind::Invalid(format!("token response: {e}"))))?;
        let value = parsed.token.or(parsed.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
            Error::new(&self.registry, what, ErrorKind::Invalid("token response has no token".into()))
        })?;
        let lifetime = parsed.expires_in.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        log::debug!("{}: new token for {} valid {}s", self.registry, scopes.join(" "), lifetime.as_secs());
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(Token { value, refresh_at: Instant::now() + lifetime - margin })
    }
}
