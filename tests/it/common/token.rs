//! A small token server (the "realm" of `WWW-Authenticate: Bearer`) for `auth.token` registries.
//!
//! It checks Basic credentials on `GET` (the token spec) or the refresh token of an OAuth2
//! refresh-token grant `POST`ed as a form (the identity-token flow), grants exactly the scopes
//! asked for, issues RS256 JWTs that distribution 2.8 accepts (signed with a [`JwtSigner`] whose
//! certificate is the registry's `rootcertbundle`), and records every request: method, scopes,
//! service, headers, form fields and the credentials that came with it. One request per
//! connection, each on its own thread; stops on drop. It may answer after a delay (a slow
//! identity provider), and counts the most requests it had in flight at once.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::http::{percent_decode, read_body, read_head, write_response};
use crate::common::pki::JwtSigner;
use crate::common::unique_seed;

/// Which JSON field carries the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenField {
    Token,
    AccessToken,
}

#[derive(Clone, Debug)]
pub struct TokenOpts {
    pub user: String,
    pub pass: String,
    /// Must match the registry's `auth.token.service` / `issuer`.
    pub service: String,
    pub issuer: String,
    /// `expires_in` of the response; `None` leaves it out (clients then assume 60 s).
    pub expires_in: Option<u64>,
    pub field: TokenField,
    /// Put into every token's `jti` claim, so tokens are recognisable.
    pub marker: String,
    /// The refresh token (identity token) a `POST` grant must carry; `None` refuses every `POST`.
    pub refresh_token: Option<String>,
    /// Grant a `GET` without any `Authorization` (anonymous pulls).
    pub anonymous: bool,
    /// How long every answer is held after the request arrived.
    pub delay: Duration,
    /// Refuse (401) a request asking for this action in any scope, as a token server does
    /// that answers a scope it will not grant with an error, not with fewer actions.
    pub refuse_action: Option<String>,
}

impl TokenOpts {
    pub fn new(user: &str, pass: &str) -> TokenOpts {
        TokenOpts {
            user: user.into(),
            pass: pass.into(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            expires_in: Some(300),
            field: TokenField::Token,
            marker: "tok3n-marker".into(),
            refresh_token: None,
            anonymous: false,
            delay: Duration::ZERO,
            refuse_action: None,
        }
    }

    /// Accepts the OAuth2 refresh-token grant with `refresh_token` (and Basic `user:pass`).
    pub fn refresh(user: &str, pass: &str, refresh_token: &str) -> TokenOpts {
        TokenOpts { refresh_token: Some(refresh_token.into()), ..TokenOpts::new(user, pass) }
    }
}

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` (token spec) or `POST` (OAuth2 grant).
    pub method: String,
    pub path: String,
    /// Every header, as received.
    pub headers: Vec<(String, String)>,
    /// The decoded `application/x-www-form-urlencoded` fields of a `POST` body, in order (the
    /// refresh token included: this stays in memory, for assertions).
    pub form: Vec<(String, String)>,
    /// From the query (`GET`) or the form (`POST`).
    pub service: Option<String>,
    /// Every `scope=` parameter (`GET`), or the space-separated `scope` field (`POST`), in order.
    pub scopes: Vec<String>,
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The decoded Basic credentials, if the header was Basic.
    pub basic: Option<(String, String)>,
    /// The token issued (`None` when refused).
    pub token: Option<String>,
}

impl TokenRequest {
    /// The first form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `k=v&k=v` decoded.
fn decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicU64,
    /// Requests read and not yet answered.
    in_flight: AtomicUsize,
    /// The most there ever were.
    max_in_flight: AtomicUsize,
}

/// One request in flight, from its arrival until its answer was written.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    signer: Arc<JwtSigner>,
}

impl TokenServer {
    pub fn start(opts: TokenOpts) -> TokenServer {
        let signer = Arc::new(JwtSigner::new());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (stop2, shared2, signer2) = (stop.clone(), shared.clone(), signer.clone());
        let thread = thread::spawn(move || {
            let mut handles = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let (opts, shared, signer) = (opts.clone(), shared2.clone(), signer2.clone());
                handles.retain(|h: &thread::JoinHandle<()>| !h.is_finished());
                handles.push(thread::spawn(move || handle(stream, &opts, &shared, &signer)));
            }
            for h in handles {
                let _ = h.join();
            }
        });
        TokenServer { port, stop, thread: Some(thread), shared, signer }
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate to put in the registry's `rootcertbundle`.
    pub fn rootcertbundle(&self) -> &Path {
        &self.signer.cert
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every token issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.requests().into_iter().filter_map(|r| r.token).collect()
    }

    /// The most token requests that were in flight (arrived, not yet answered) at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The distinct scope sets asked for (each sorted and joined with a space).
    pub fn scope_sets(&self) -> BTreeSet<String> {
        self.requests()
            .iter()
            .map(|r| {
                let mut s = r.scopes.clone();
                s.sort();
                s.join(" ")
            })
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn handle(mut stream: TcpStream, opts: &TokenOpts, shared: &Shared, signer: &JwtSigner) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let Some(head) = read_head(&mut reader) else { return };
    let _in_flight = InFlight::new(shared);
    let method = head.line.split_whitespace().next().unwrap_or("").to_string();
    let authorization = head.get("authorization");
    let uri = head.line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
    let form = if method == "POST" {
        let body = read_body(&mut reader, &head, false).unwrap_or_default();
        decode_pairs(&String::from_utf8_lossy(&body))
    } else {
        Vec::new()
    };
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in decode_pairs(query) {
        match k.as_str() {
            "service" => service = Some(v),
            "scope" => scopes.push(v),
            _ => {}
        }
    }
    let basic = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
    thread::sleep(opts.delay);
    let mut record = TokenRequest {
        method: method.clone(),
        path: path.to_string(),
        headers: head.headers.clone(),
        form,
        service,
        scopes,
        authorization,
        basic,
        token: None,
    };
    let ok = if method == "POST" {
        // The OAuth2 refresh-token grant: service and scopes come in the form.
        if let Some(s) = record.field("service") {
            record.service = Some(s.to_string());
        }
        record.scopes = record.field("scope").unwrap_or("").split_whitespace().map(str::to_string).collect();
        record.field("grant_type") == Some("refresh_token")
            && opts.refresh_token.is_some()
            && record.field("refresh_token") == opts.refresh_token.as_deref()
    } else {
        let anonymous = opts.anonymous && record.authorization.is_none();
        anonymous || record.basic.as_ref().is_some_and(|(u, p)| *u == opts.user && *p == opts.pass)
    };
    let refused = |scope: &String| {
        let actions = scope.rsplit(':').next().unwrap_or_default();
        opts.refuse_action.as_ref().is_some_and(|a| actions.split(',').any(|x| x == a))
    };
    let ok = ok && !record.scopes.iter().any(refused);
    if !ok {
        shared.requests.lock().unwrap().push(record);
        if method == "POST" {
            // RFC 6749 §5.2.
            let body = br#"{"error":"invalid_grant","error_description":"refresh token refused"}"#;
            write_response(&mut stream, 400, &[json_type()], body, false);
        } else {
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            let challenge = ("WWW-Authenticate".to_string(), "Basic realm=\"token\"".to_string());
            write_response(&mut stream, 401, &[challenge], body, false);
        }
        return;
    }
    let scopes = record.scopes.clone();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let n = shared.issued.fetch_add(1, Ordering::SeqCst);
    let t = now();
    let lifetime = opts.expires_in.unwrap_or(60);
    let claims = serde_json::json!({
        "iss": opts.issuer,
        "sub": opts.user,
        "aud": opts.service,
        "exp": t + lifetime,
        "nbf": t.saturating_sub(5),
        "iat": t,
        "jti": format!("{}-{n}-{:x}", opts.marker, unique_seed()),
        "access": access,
    });
    let token = signer.sign(&claims);
    let mut body = match opts.field {
        // An OAuth2 answer always has `access_token` (and the scope granted).
        _ if method == "POST" => serde_json::json!({"access_token": token, "scope": scopes.join(" ")}),
        TokenField::Token => serde_json::json!({"token": token}),
        TokenField::AccessToken => serde_json::json!({"access_token": token}),
    };
    if let Some(e) = opts.expires_in {
        body["expires_in"] = e.into();
    }
    record.token = Some(token);
    shared.requests.lock().unwrap().push(record);
    write_response(&mut stream, 200, &[json_type()], &serde_json::to_vec(&body).unwrap(), false);
}

fn json_type() -> (String, String) {
    ("Content-Type".to_string(), "application/json".to_string())
}

/// Standard base64 (with or without padding); `None` when malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
