//! Registry authentication: anonymous, Basic, and Bearer tokens from a token server.
//!
//! The scheme is learned from the first `401`'s `WWW-Authenticate` challenge and remembered per
//! registry, so later requests carry credentials up front instead of paying a 401 round-trip
//! each. Bearer tokens are cached per scope set until shortly before they expire and are shared
//! by all worker threads. A scope set's token is fetched once: workers needing it meanwhile wait
//! for that fetch; tokens of other scope sets are fetched at the same time, so a slow token
//! server delays each repository by one answer, not by every other repository's. Credentials go
//! to the token endpoint only; they never appear in `Debug` output, logs or errors.
//!
//! A token is asked for with `GET realm?service=…&scope=…` and the credentials as Basic (the
//! distribution token spec), or — when the username is [`IDENTITY_TOKEN_USERNAME`], i.e. the
//! password is an identity token (`az acr login`, docker's `identitytoken`) — with the OAuth2
//! refresh-token grant: a form `POST` to the realm, without `Authorization`. Credentials of an
//! https registry never go to a plain-http realm ([`ErrorKind::InsecureRealm`]).

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use super::error::{self, transport};
use super::http::encode_query;
use super::settings::Credentials;
use crate::retry::Backoff;
use crate::slots::Slots;
use crate::store::{Access, Error, ErrorKind};

/// The username meaning "the password is an identity token" (docker's convention, as its
/// credential helpers answer `{"Username": "<token>", "Secret": …}`).
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";
/// `client_id` of the OAuth2 refresh-token grant.
const CLIENT_ID: &str = "image-syncer";

/// How long a token without `expires_in` is valid (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is refreshed this long before it expires, so a request never starts with a token
/// that dies in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// The scope a token needs to read a repository.
pub fn pull_scope(name: &str) -> String {
    format!("repository:{name}:pull")
}

/// The scope a token needs to write a repository (push first, as registries expect).
pub fn push_scope(name: &str) -> String {
    format!("repository:{name}:pull,push")
}

/// The scope a token needs to `DELETE` in a repository — a manifest, a blob or an upload
/// session: distribution asks for the `delete` action for every `DELETE`, not `push`
/// (registry/handlers/app.go, `appendAccessRecords`).
pub fn delete_scope(name: &str) -> String {
    format!("repository:{name}:pull,push,delete")
}

/// The scopes a request on `repo` needs: a destination's reads reuse its push token.
pub fn scopes(access: Access, repo: &str) -> Vec<String> {
    match access {
        Access::Pull => vec![pull_scope(repo)],
        Access::Push => vec![push_scope(repo)],
    }
}

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

#[derive(Clone)]
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

pub struct Authenticator {
    registry: String,
    /// The registry itself is https: its credentials never go to a plain-http token realm.
    https: bool,
    /// A token answer is small: it must arrive whole within this time (a trickle is a stall).
    deadline: Duration,
    credentials: Option<Credentials>,
    /// The scheme the last challenge asked for. Locked only to read or replace it: never across
    /// a request, and never while waiting for a token slot.
    scheme: Mutex<Scheme>,
    /// Bearer tokens by scope set (the scopes joined with a space). A slot is held while its
    /// token is fetched, so workers needing the same scopes wait for that one fetch and then use
    /// its token; a slot holds at most one fetch (with its retries) at a time, and no other lock
    /// is taken while it is held, so different scope sets are fetched in parallel.
    tokens: Slots<String, Token>,
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

/// What a token request carries.
enum Grant<'a> {
    Anonymous,
    /// `GET` with this `Authorization: Basic …` value.
    Basic(String),
    /// `POST` of the OAuth2 refresh-token grant with this identity token; no `Authorization`.
    RefreshToken(&'a str),
}

/// `true` when `url` is plain http (the scheme is case-insensitive).
fn is_plain_http(url: &str) -> bool {
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// The `application/x-www-form-urlencoded` body of the refresh-token grant (OAuth2, RFC 6749
/// §6; the distribution OAuth spec): scopes space-separated in one `scope`.
fn refresh_form(refresh_token: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut fields = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    if let Some(s) = service {
        fields.push(("service", s));
    }
    let scope = scopes.join(" ");
    if !scope.is_empty() {
        fields.push(("scope", &scope));
    }
    fields.push(("client_id", CLIENT_ID));
    fields.iter().map(|(k, v)| format!("{k}={}", encode_query(v))).collect::<Vec<_>>().join("&")
}

/// The OAuth2 `error` code of a refused grant (`invalid_grant`, …), when the body has one that
/// looks like a code: never the body itself.
fn oauth_error(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
    }
    let e = serde_json::from_slice::<OAuthError>(body).ok()?.error;
    (e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(e)
}

impl Authenticator {
    /// `https`: the registry's own base URL is https.
    pub fn new(registry: &str, https: bool, credentials: Option<Credentials>, deadline: Duration) -> Authenticator {
        Authenticator {
            registry: registry.to_string(),
            https,
            deadline,
            credentials,
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Slots::default(),
        }
    }

    fn unauthorized(&self, msg: impl Into<String>) -> Error {
        Error::new(&self.registry, "authenticate", ErrorKind::Unauthorized(msg.into()))
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a token if needed.
    pub fn header(&self, agent: &ureq::Agent, scopes: &[String]) -> Result<Option<String>, Error> {
        let scheme = self.scheme.lock().clone();
        let (realm, service) = match scheme {
            Scheme::Unknown => return Ok(None),
            Scheme::Basic => return Ok(self.basic()),
            Scheme::Bearer { realm, service } => (realm, service),
        };
        let slot = self.tokens.slot(&scopes.join(" "));
        let mut held = slot.lock();
        // Another worker may have fetched it while this one waited for the slot.
        if let Some(t) = held.as_ref().filter(|t| t.fresh()) {
            return Ok(Some(format!("Bearer {}", t.value)));
        }
        // A failure leaves the slot as it was: the next worker to need it tries for itself.
        let token = self.fetch_token(agent, &realm, service.as_deref(), scopes)?;
        let value = format!("Bearer {}", token.value);
        *held = Some(token);
        Ok(Some(value))
    }

    /// Drop the token of `scopes` the registry refused (`sent`), unless another worker has
    /// already replaced it. Waits for a fetch of the same scopes in progress, so it is called
    /// with no other lock held.
    fn forget(&self, scopes: &[String], sent: Option<&str>) {
        let Some(refused) = sent.and_then(|s| s.strip_prefix("Bearer ")) else { return };
        let slot = self.tokens.slot(&scopes.join(" "));
        let mut held = slot.lock();
        if held.as_ref().is_some_and(|t| t.value == refused) {
            *held = None;
        }
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| http_auth::basic::encode_credentials(&c.username, &c.password))
    }

    /// The identity token, when the credentials are one.
    fn identity_token(&self) -> Option<&str> {
        self.credentials.as_ref().filter(|c| c.username == IDENTITY_TOKEN_USERNAME).map(|c| c.password.as_str())
    }

    /// Who is asking, for messages.
    fn who(&self) -> &'static str {
        match (&self.credentials, self.identity_token()) {
            (None, _) => "anonymous access",
            (Some(_), Some(_)) => "the identity token",
            (Some(_), None) => "the configured credentials",
        }
    }

    /// How to ask `realm` for a token. Credentials of an https registry are not sent to a
    /// plain-http realm (anonymous requests may go there).
    fn grant(&self, realm: &str) -> Result<Grant<'_>, Error> {
        if self.credentials.is_none() {
            return Ok(Grant::Anonymous);
        }
        if self.https && is_plain_http(realm) {
            return Err(Error::new(&self.registry, "fetch token", ErrorKind::InsecureRealm(realm.to_string())));
        }
        Ok(match (self.identity_token(), self.basic()) {
            (Some(token), _) => Grant::RefreshToken(token),
            (None, Some(basic)) => Grant::Basic(basic),
            (None, None) => Grant::Anonymous,
        })
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
        let who = self.who();
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
                    self.forget(scopes, sent);
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
        if let Some(c) = bearer {
            let param =
                |name: &str| c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
            let Some(realm) = param("realm") else {
                return Err(self.unauthorized("Bearer challenge without a realm"));
            };
            let scheme = Scheme::Bearer { realm, service: param("service") };
            // A rejected token (expired early, too narrow) is dropped; the caller retries once
            // with a fresh one and reports the second 401.
            self.forget(scopes, sent);
            *self.scheme.lock() = scheme;
            return Ok(());
        }
        if basic {
            if self.credentials.is_none() {
                return Err(self.unauthorized("authentication required and no credentials are configured for it"));
            }
            if sent.is_some_and(|s| s.starts_with("Basic ")) {
                return Err(self.unauthorized("invalid username or password"));
            }
            *self.scheme.lock() = Scheme::Basic;
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
        let grant = self.grant(realm)?;
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
        // The form holds the identity token: it goes in the body of a POST, never in a URL.
        let form = match grant {
            Grant::RefreshToken(token) => Some(refresh_form(token, service, scopes)),
            _ => None,
        };
        let what = "fetch token";
        let mut backoff = Backoff::new();
        // The token server is retried like any registry request: it fails the same ways.
        let mut resp = loop {
            let sent = match (&form, &grant) {
                (Some(form), _) => agent
                    .post(realm)
                    .config()
                    .timeout_global(Some(self.deadline))
                    .build()
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(form.as_bytes()),
                (None, grant) => {
                    let mut req = agent.get(&url).config().timeout_global(Some(self.deadline)).build();
                    if let Grant::Basic(b) = grant {
                        req = req.header("Authorization", b);
                    }
                    req.call()
                }
            };
            let err = match sent {
                Ok(r) if r.status().as_u16() >= 500 || r.status().as_u16() == 429 => {
                    let mut r = r;
                    error::status(&self.registry, what, &mut r)
                }
                Ok(r) => break r,
                Err(e) => transport(&self.registry, what, e),
            };
            let wait = if err.is_transient() { backoff.next(err.retry_after(), &err) } else { None };
            match wait {
                Some(wait) if crate::stop::sleep(wait) => log::debug!("{err}; retrying"),
                _ => return Err(err),
            }
        };
        let status = resp.status().as_u16();
        if form.is_some() && matches!(status, 400 | 401 | 403) {
            // RFC 6749 §5.2: a refused grant is a 400 `invalid_grant`; some servers answer 401.
            let body = resp.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
            let code = oauth_error(&body).map(|c| format!(": {c}")).unwrap_or_default();
            return Err(self.unauthorized(format!(
                "the token server refused the identity token (HTTP {status}{code}); it may have expired: log in \
                 again (docker login, az acr login) for a new one"
            )));
        }
        if form.is_some() && matches!(status, 404 | 405) {
            return Err(self.unauthorized(format!(
                "the token server does not take identity tokens (HTTP {status} to the OAuth2 refresh-token POST)"
            )));
        }
        if status == 401 || status == 403 {
            return Err(self.unauthorized(format!("the token server refused {} (HTTP {status})", self.who())));
        }
        if status != 200 {
            return Err(error::status(&self.registry, what, &mut resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec()
            .map_err(|e| transport(&self.registry, what, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(https: bool, user: Option<(&str, &str)>) -> Authenticator {
        let credentials = user.map(|(u, p)| Credentials { username: u.into(), password: p.into() });
        Authenticator::new("r.io", https, credentials, Duration::from_secs(5))
    }

    #[test]
    fn credentials_of_an_https_registry_never_go_to_a_plain_http_realm() {
        let realm = "HTTP://auth.r.io/token";
        for user in [("u", "p"), (IDENTITY_TOKEN_USERNAME, "refresh-s3cret")] {
            let e = auth(true, Some(user)).grant(realm).err().expect("refused");
            assert!(matches!(&e.kind, ErrorKind::InsecureRealm(r) if r == realm), "{e:?}");
            assert!(!e.is_transient());
            let text = e.to_string();
            assert!(text.contains("r.io") && text.contains(realm) && text.contains("plain-http token realm"), "{text}");
            assert!(!text.contains("refresh-s3cret") && !format!("{e:?}").contains("refresh-s3cret"));
        }
        // Anonymous may go there; so may a plain-http registry's credentials; https is fine.
        assert!(matches!(auth(true, None).grant(realm), Ok(Grant::Anonymous)));
        assert!(matches!(auth(false, Some(("u", "p"))).grant(realm), Ok(Grant::Basic(_))));
        assert!(matches!(auth(true, Some(("u", "p"))).grant("https://auth.r.io/token"), Ok(Grant::Basic(_))));
    }

    #[test]
    fn identity_token_is_a_refresh_token_grant() {
        let a = auth(true, Some((IDENTITY_TOKEN_USERNAME, "id-tok")));
        assert!(matches!(a.grant("https://r.io/oauth2/token"), Ok(Grant::RefreshToken("id-tok"))));
        assert_eq!(a.who(), "the identity token");
        // Only the exact username: anything else is a password.
        let a = auth(true, Some(("<Token>", "p")));
        assert!(matches!(a.grant("https://r.io/oauth2/token"), Ok(Grant::Basic(_))));
    }

    #[test]
    fn refresh_form_is_urlencoded_with_space_separated_scopes() {
        let scopes = ["repository:a/b:pull".to_string(), "repository:c:pull,push".to_string()];
        assert_eq!(
            refresh_form("t+k/=n", Some("r.io"), &scopes),
            "grant_type=refresh_token&refresh_token=t%2Bk%2F%3Dn&service=r.io\
             &scope=repository%3Aa%2Fb%3Apull%20repository%3Ac%3Apull%2Cpush&client_id=image-syncer"
        );
        assert_eq!(refresh_form("t", None, &[]), "grant_type=refresh_token&refresh_token=t&client_id=image-syncer");
    }

    #[test]
    fn a_refused_token_is_dropped_but_not_one_fetched_since() {
        let a = auth(true, Some(("u", "p")));
        let scopes = [pull_scope("a/b")];
        let key = scopes.join(" ");
        let token = |v: &str| Token { value: v.into(), refresh_at: Instant::now() + Duration::from_secs(60) };
        let held = |a: &Authenticator| a.tokens.slot(&key).lock().as_ref().map(|t| t.value.clone());
        a.tokens.set(&key, token("new"));
        a.forget(&scopes, Some("Bearer old"));
        a.forget(&scopes, None);
        assert_eq!(held(&a).as_deref(), Some("new"));
        a.forget(&scopes, Some("Bearer new"));
        assert_eq!(held(&a), None);
    }

    #[test]
    fn only_an_oauth_error_code_is_quoted() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(oauth_error(br#"{"error":"token abc is bad"}"#), None);
        assert_eq!(oauth_error(b"<html>"), None);
    }
}
