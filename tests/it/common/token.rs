//! A small token server (the "realm" of `WWW-Authenticate: Bearer`) for `auth.token` registries.
//!
//! It checks Basic credentials, grants exactly the scopes asked for, issues RS256 JWTs that
//! distribution 2.8 accepts (signed with a [`JwtSigner`] whose certificate is the registry's
//! `rootcertbundle`), and records every request: the scopes, the service, and the credentials
//! that came with it. One request per connection; stops on drop.

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::http::percent_decode;
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
        }
    }
}

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub path: String,
    pub service: Option<String>,
    /// Every `scope=` parameter, in order.
    pub scopes: Vec<String>,
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The decoded Basic credentials, if the header was Basic.
    pub basic: Option<(String, String)>,
    /// The token issued (`None` when refused).
    pub token: Option<String>,
}

struct Shared {
    requests: Mutex<Vec<TokenRequest>>,
    issued: AtomicU64,
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
        let shared = Arc::new(Shared { requests: Mutex::new(Vec::new()), issued: AtomicU64::new(0) });
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
    let Some((request_line, headers)) = crate::common::http::read_request_head(&mut reader) else { return };
    let authorization = headers.into_iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v);
    let uri = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
    let mut service = None;
    let mut scopes = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "service" => service = Some(percent_decode(v)),
            "scope" => scopes.push(percent_decode(v)),
            _ => {}
        }
    }
    let basic = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()))
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
    let ok = basic.as_ref().is_some_and(|(u, p)| *u == opts.user && *p == opts.pass);
    let mut record =
        TokenRequest { path: path.to_string(), service, scopes: scopes.clone(), authorization, basic, token: None };
    if !ok {
        shared.requests.lock().unwrap().push(record);
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        respond(&mut stream, "401 Unauthorized", &[("WWW-Authenticate", "Basic realm=\"token\"")], body);
        return;
    }
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
        TokenField::Token => serde_json::json!({"token": token}),
        TokenField::AccessToken => serde_json::json!({"access_token": token}),
    };
    if let Some(e) = opts.expires_in {
        body["expires_in"] = e.into();
    }
    record.token = Some(token);
    shared.requests.lock().unwrap().push(record);
    respond(&mut stream, "200 OK", &[("Content-Type", "application/json")], &serde_json::to_vec(&body).unwrap());
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
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
