//! The one test proxy: an HTTP/1.1 proxy in front of a real registry that records what crosses
//! it and misbehaves on demand, because a registry cannot.
//!
//! Every method is forwarded with its body, on a fresh upstream connection per request, with the
//! client's `Host` kept — so the upload `Location`s the registry returns point back at the proxy.
//! Every answer is re-framed (`Content-Length`, `Connection: close`), which is what lets a fault
//! lie about a length. It records each request (method, URI, headers, body length, the status
//! it answered, when), and can:
//!
//! * paginate `/v2/NAME/tags/list` with `Link` headers ([`ProxyOpts::page_size`]; the Debian
//!   registry never paginates), and `/v2/_catalog` ([`ProxyOpts::catalog_page_size`]),
//! * redirect blob GETs to another host, and send its own credentials upstream (a stand-in for
//!   pre-signed object-storage URLs),
//! * delay every request ([`ProxyOpts::delay`]) or refuse bodies over a size as nginx's
//!   `client_max_body_size` does ([`ProxyOpts::max_body`]),
//! * inject [`Fault`]s: on the first N matching requests ([`FaultRule`]), or at random with a
//!   seed ([`RandomFaults`]). Stopping (drop) ends every stalled answer.
//! * lie about manifests: rewrite the `Content-Type` of manifest answers
//!   ([`ProxyOpts::manifest_content_types`]) or serve a fixed manifest of its own
//!   ([`ProxyOpts::served_manifests`], e.g. a schema 1 one the Debian registry cannot store),
//! * speak the OCI 1.1 referrers API the Debian registry lacks ([`ProxyOpts::referrers`]),
//! * answer as a real registry does where it differs from the spec ([`ProxyOpts::personality`],
//!   see [`super::personality`]).
//!
//! `Expect: 100-continue` is honoured: a request the proxy refuses from its head alone gets the
//! final answer without its body being read; one it accepts gets `100 Continue` first.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{error_body, query_param, read_body, read_head, write_response, Head};
use super::personality::{quay_page, Memory, Personality, Reply, Req, Verdict};
use super::util::{basic_auth, sha256_digest, splitmix64};

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Any,
    /// `GET /v2/NAME/blobs/sha256:…`
    BlobGet,
    /// `GET /v2/NAME/manifests/REF`
    ManifestGet,
    /// `PUT /v2/NAME/manifests/REF`
    ManifestPut,
    /// `GET /v2/NAME/tags/list`
    TagList,
    /// `GET /v2/_catalog` (any page).
    Catalog,
    /// `POST /v2/NAME/blobs/uploads/`
    UploadStart,
    /// `PATCH` of an upload session.
    UploadPatch,
    /// The closing `PUT ?digest=` of an upload (with or without a body).
    UploadPut,
    /// An upload's `PUT ?digest=` with a body: a single-request upload.
    MonolithicPut,
    /// A `PATCH` whose `Content-Range` does not start at 0: a chunk after an upload's first.
    LaterChunk,
}

impl Match {
    fn matches(self, method: &str, path: &str, body_len: usize, headers: &[(String, String)]) -> bool {
        let v2 = path.starts_with("/v2/");
        match self {
            Match::Any => true,
            Match::BlobGet => method == "GET" && v2 && path.contains("/blobs/sha256:"),
            Match::ManifestGet => method == "GET" && v2 && path.contains("/manifests/"),
            Match::ManifestPut => method == "PUT" && v2 && path.contains("/manifests/"),
            Match::TagList => method == "GET" && v2 && path.ends_with("/tags/list"),
            Match::Catalog => method == "GET" && path == "/v2/_catalog",
            Match::UploadStart => method == "POST" && v2 && path.contains("/blobs/uploads/"),
            Match::UploadPatch => method == "PATCH" && v2 && path.contains("/blobs/uploads/"),
            Match::UploadPut => method == "PUT" && v2 && path.contains("/blobs/uploads/"),
            Match::MonolithicPut => Match::UploadPut.matches(method, path, body_len, headers) && body_len > 0,
            Match::LaterChunk => {
                let h = Head { line: String::new(), headers: headers.to_vec() };
                Match::UploadPatch.matches(method, path, body_len, headers)
                    && h.get("content-range").is_some_and(|r| !r.trim().starts_with("0-"))
            }
        }
    }
}

/// What goes wrong with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a registry error body; nothing is forwarded. 429 and 503
    /// carry `Retry-After: 1`.
    Status(u16),
    /// Answer with this status and a registry error body with this code (e.g. `NAME_UNKNOWN`).
    Code(u16, &'static str),
    /// `429 Too Many Requests` with `Retry-After` as an HTTP date one second ahead.
    RetryAfterDate,
    /// Close the connection without an answer; nothing is forwarded.
    Drop,
    /// Forward the request, then close the connection without relaying the answer (the
    /// registry did the work; the client does not know).
    DropAfter,
    /// Never answer (until the proxy stops).
    StallHead,
    /// Send the head and half the body, then never send more.
    StallBody,
    /// Send the head at once, then the body one byte per this many milliseconds.
    Trickle(u64),
    /// The full `Content-Length`, half the body, then close: a cut download.
    Truncate,
    /// A well-framed body that is too short: `Content-Length` and body are the first half.
    Short,
    /// A well-framed body that is too long: 16 bytes appended, `Content-Length` to match.
    Long,
    /// One byte of the body flipped.
    Flip,
    /// Forward the first half of the request body upstream as a complete request (for a PATCH
    /// with `Content-Range`, the range is shortened to match), then close without an answer: a
    /// chunk cut in transit after the registry stored part of it.
    CutRequest,
}

impl Fault {
    /// The faults that damage an answer's body (meaningless for a HEAD or an empty body).
    fn needs_body(self) -> bool {
        matches!(
            self,
            Fault::StallBody | Fault::Trickle(_) | Fault::Truncate | Fault::Short | Fault::Long | Fault::Flip
        )
    }
}

/// `fault` on the first `times` matching requests; with `path_contains`, only requests whose
/// path contains it match.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub when: Match,
    pub path_contains: Option<String>,
    pub times: usize,
    pub fault: Fault,
}

impl FaultRule {
    /// `fault` on the first `times` matching requests.
    pub fn first(times: usize, when: Match, fault: Fault) -> FaultRule {
        FaultRule { when, path_contains: None, times, fault }
    }

    /// `fault` on every matching request.
    pub fn always(when: Match, fault: Fault) -> FaultRule {
        FaultRule { when, path_contains: None, times: usize::MAX, fault }
    }

    /// Only requests whose path contains `needle` (a digest, a repository) match.
    pub fn on(mut self, needle: &str) -> FaultRule {
        self.path_contains = Some(needle.to_string());
        self
    }
}

/// Each request draws one fault with probability `per_mille`/1000 (uniformly from `faults`,
/// skipping ones that cannot apply), from a generator seeded with `seed` and the request's
/// arrival number. Tag lists are never damaged.
#[derive(Clone, Debug)]
pub struct RandomFaults {
    pub seed: u64,
    pub per_mille: u64,
    pub faults: Vec<Fault>,
}

/// How the proxy behaves; the default is a faithful recording proxy.
#[derive(Clone, Debug, Default)]
pub struct ProxyOpts {
    /// Largest page of tags returned (the client's `n` is honoured when smaller), and of
    /// referrers when [`ProxyOpts::referrers`] is on. 0 = tag lists are forwarded as they are.
    pub page_size: usize,
    /// Largest page of repositories returned by `GET /v2/_catalog` (the client's `n` is honoured
    /// when smaller), with `Link` headers as distribution sends them. 0 = forwarded as it is.
    pub catalog_page_size: usize,
    /// Answer blob GETs with `307 Temporary Redirect` to `http://HOST:PORT<same path>`.
    pub redirect_blobs_to: Option<String>,
    /// Send these Basic credentials upstream instead of the client's `Authorization`.
    pub upstream_creds: Option<(String, String)>,
    /// Wait this long before forwarding each request.
    pub delay: Duration,
    /// Answer `413 Payload Too Large` (after reading it) to a request body larger than this.
    pub max_body: Option<usize>,
    /// Send response bodies at about this many bytes per second (0 = as fast as possible).
    pub rate: u64,
    /// Point every absolute `Location` the registry answers (upload sessions), and the `Link`
    /// of a paginated tag list, at this `host:port` instead: another origin.
    pub location_host: Option<String>,
    /// Quirks of some registries on manifest `HEAD`s: leave out `Docker-Content-Digest`, or
    /// refuse the method (405).
    pub head_without_digest: bool,
    pub head_refused: bool,
    pub faults: Vec<FaultRule>,
    pub random: Option<RandomFaults>,
    /// `(needle, content type)`: a successful manifest `GET` or `HEAD` answer whose path contains
    /// `needle` is relayed with this `Content-Type` instead of the registry's (the body is
    /// untouched). The first matching pair wins; empty = off.
    pub manifest_content_types: Vec<(String, String)>,
    /// Manifest `GET`s and `HEAD`s whose path contains a [`ServedManifest::needle`] are answered by
    /// the proxy itself with that manifest, nothing forwarded. The first match wins; empty = off.
    pub served_manifests: Vec<ServedManifest>,
    /// Speak the OCI 1.1 referrers API: `GET /v2/NAME/referrers/DIGEST` is answered by the proxy
    /// (200, an OCI index) listing the descriptors given here for DIGEST — none for any other
    /// digest — filtered by an `artifactType` query parameter as the spec says. `None` = such
    /// requests are forwarded (and the Debian registry answers 404).
    pub referrers: Option<Vec<(String, Vec<serde_json::Value>)>>,
    /// A pull budget as Docker Hub enforces it: every manifest `GET` spends one pull of `limit`
    /// per `window` (the window starts at the first pull and refills whole when it ends); manifest
    /// answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a `GET`
    /// with nothing left gets `429` (without `Retry-After`).
    pub pull_budget: Option<PullBudget>,
    /// Answer as this registry is documented to: [`ProxyOpts::faults`] come first, except for
    /// a refusal the registry sends from a request's head alone.
    pub personality: Option<Personality>,
}

/// See [`ProxyOpts::pull_budget`].
#[derive(Clone, Copy, Debug)]
pub struct PullBudget {
    pub limit: u64,
    pub window: Duration,
}

/// A manifest the proxy serves itself ([`ProxyOpts::served_manifests`]): `200`, this body and
/// `Content-Type`, and `Docker-Content-Digest` = the sha256 of the body.
#[derive(Clone, Debug)]
pub struct ServedManifest {
    pub needle: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl ServedManifest {
    pub fn new(needle: &str, content_type: &str, body: &[u8]) -> ServedManifest {
        ServedManifest { needle: needle.to_string(), content_type: content_type.to_string(), body: body.to_vec() }
    }
}

/// One request received by the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header received, if any.
    pub authorization: Option<String>,
    pub body_len: usize,
    /// The status answered; 0 when the connection was dropped or stalled instead.
    pub status: u16,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// When it arrived (comparable across proxies).
    pub at: Instant,
    /// It carried `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Its body was read (false when it was refused from its head alone).
    pub body_read: bool,
}

impl ProxyRequest {
    pub fn header(&self, name: &str) -> Option<String> {
        Head { line: String::new(), headers: self.headers.clone() }.get(name)
    }

    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The `Content-Length` it announced.
    pub fn declared_len(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// Whether it is a request of kind `m`; a body refused unread counts with its announced
    /// length.
    pub fn is(&self, m: Match) -> bool {
        let len = self.body_len.max(self.declared_len().unwrap_or(0));
        m.matches(&self.method, self.path(), len, &self.headers)
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<ProxyRequest>>,
    /// The fault rules, each with the matching requests seen so far.
    rules: Mutex<Vec<(FaultRule, usize)>>,
    open: Mutex<Vec<TcpStream>>,
    arrivals: AtomicUsize,
    /// [`ProxyOpts::pull_budget`]: when the window started, and the pulls spent in it.
    pulls: Mutex<Option<(Instant, u64)>>,
    /// What the [`ProxyOpts::personality`] remembers.
    memory: Memory,
}

impl Shared {
    /// Spend a pull (for a `GET`) or just look: the headers to answer with, and whether the
    /// pull is refused.
    fn pull(&self, budget: &PullBudget, spend: bool) -> (Vec<(String, String)>, bool) {
        let mut pulls = self.pulls.lock().unwrap();
        let now = Instant::now();
        let (start, used) = match *pulls {
            Some((start, used)) if now < start + budget.window => (start, used),
            _ => (now, 0),
        };
        let refused = spend && used >= budget.limit;
        let used = if spend && !refused { used + 1 } else { used };
        *pulls = Some((start, used));
        let w = budget.window.as_secs().max(1);
        let reset = (start + budget.window).saturating_duration_since(now).as_secs_f64().ceil() as u64;
        let hs = vec![
            ("RateLimit-Limit".to_string(), format!("{};w={w}", budget.limit)),
            ("RateLimit-Remaining".to_string(), format!("{};w={w}", budget.limit.saturating_sub(used))),
            ("RateLimit-Reset".to_string(), reset.to_string()),
        ];
        (hs, refused)
    }
}

struct State {
    upstream: String,
    opts: ProxyOpts,
    upstream_auth: Option<String>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

/// The proxy; stops, cutting open connections, on drop.
pub struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A recording proxy in front of `upstream` ("host:port").
    pub fn start(upstream: &str) -> Proxy {
        Proxy::start_with(upstream, ProxyOpts::default())
    }

    /// A proxy paginating tag lists in pages of at most `page_size` tags.
    pub fn paging(upstream: &str, page_size: usize) -> Proxy {
        assert!(page_size > 0);
        Proxy::start_with(upstream, ProxyOpts { page_size, ..ProxyOpts::default() })
    }

    /// A proxy injecting `faults`.
    pub fn faulty(upstream: &str, faults: Vec<FaultRule>) -> Proxy {
        Proxy::start_with(upstream, ProxyOpts { faults, ..ProxyOpts::default() })
    }

    /// A proxy answering as `personality` (a real registry) does.
    pub fn like(upstream: &str, personality: Personality) -> Proxy {
        Proxy::start_with(upstream, ProxyOpts { personality: Some(personality), ..ProxyOpts::default() })
    }

    pub fn start_with(upstream: &str, opts: ProxyOpts) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        *shared.rules.lock().unwrap() = opts.faults.iter().map(|r| (r.clone(), 0)).collect();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            upstream_auth: opts.upstream_creds.as_ref().map(|(u, p)| basic_auth(u, p)),
            opts,
            stop: stop.clone(),
            shared: shared.clone(),
        });
        let thread = thread::spawn(move || {
            let mut handles: Vec<thread::JoinHandle<()>> = Vec::new();
            for conn in listener.incoming() {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                if let Ok(s) = stream.try_clone() {
                    state.shared.open.lock().unwrap().push(s);
                }
                let st = state.clone();
                handles.retain(|h| !h.is_finished());
                handles.push(thread::spawn(move || serve(stream, &st)));
            }
            for s in state.shared.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            for h in handles {
                let _ = h.join();
            }
        });
        Proxy { port, stop, thread: Some(thread), shared }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}", self.addr(), repo)
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests match `m`.
    pub fn count(&self, m: Match) -> usize {
        self.requests().iter().filter(|r| r.is(m)).count()
    }

    /// How many `/v2/_catalog` requests were received.
    pub fn catalog_requests(&self) -> usize {
        self.count(Match::Catalog)
    }

    /// How many `/tags/list` requests were received.
    pub fn tag_list_requests(&self) -> usize {
        self.count(Match::TagList)
    }

    /// How many blob GETs were received (including failed and redirected ones).
    pub fn blob_gets(&self) -> usize {
        self.count(Match::BlobGet)
    }

    /// Every `Authorization` header value received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.requests().into_iter().filter_map(|r| r.authorization).collect()
    }

    /// Replace the fault rules (their counts start again from 0).
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        *self.shared.rules.lock().unwrap() = faults.into_iter().map(|r| (r, 0)).collect();
    }

    /// How many faults of each kind were injected, for the test's log.
    pub fn fault_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for f in self.requests().iter().filter_map(|r| r.fault) {
            *out.entry(format!("{f:?}")).or_insert(0) += 1;
        }
        out
    }

    /// How many faults were injected.
    pub fn faults_injected(&self) -> usize {
        self.requests().iter().filter(|r| r.fault.is_some()).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serve one client connection: one request, one answer, close.
fn serve(mut client: TcpStream, st: &State) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let mut reader = BufReader::new(client.try_clone().expect("clone stream"));
    // A TLS ClientHello (a client trying https first, as skopeo does without TLS verification)
    // is answered at once, as a plain-http registry answers it — 400, closed — not left waiting
    // for a request line until the read timeout.
    if reader.fill_buf().ok().and_then(|b| b.first().copied()) == Some(TLS_HANDSHAKE) {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let Some(mut head) = read_head(&mut reader) else { return };
    let expect_continue = head.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let mut parts = head.line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let uri = parts.next().unwrap_or("").to_string();
    let path = uri.split('?').next().unwrap_or("").to_string();
    let record = |body_len: usize, body_read: bool, fault: Option<Fault>, head: &Head| {
        let mut reqs = st.shared.requests.lock().unwrap();
        reqs.push(ProxyRequest {
            method: method.clone(),
            uri: uri.clone(),
            headers: head.headers.clone(),
            authorization: head.get("authorization"),
            body_len,
            status: 0,
            fault,
            at: Instant::now(),
            expect_continue,
            body_read,
        });
        reqs.len() - 1
    };
    let refusal =
        st.opts.personality.as_ref().and_then(|p| p.refuse_unread(&Req { method: &method, uri: &uri, head: &head }));
    if let Some(reply) = refusal {
        let index = record(0, false, None, &head);
        refuse_unread(client, reader, st, reply, index);
        return;
    }
    if expect_continue {
        let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    head.remove("expect");
    let Ok(body) = read_body(&mut reader, &head, false) else { return };
    let fault = choose_fault(st, &method, &path, body.len(), &head.headers);
    let index = record(body.len(), true, fault, &head);
    let mut conn = Conn { stream: &mut client, st, index };
    let status = answer(&mut conn, st, &method, &uri, head, body, fault);
    conn.settle(status);
}

/// The client's connection while its request is answered. The status is recorded before the
/// answer is written ([`Conn::reply`], [`Conn::settle`]): a client that has read its answer then
/// finds it in [`Proxy::requests`], never a `0` still waiting to be filled in.
struct Conn<'a> {
    stream: &'a mut TcpStream,
    st: &'a State,
    index: usize,
}

impl Conn<'_> {
    fn settle(&self, status: u16) {
        self.st.shared.requests.lock().unwrap()[self.index].status = status;
    }

    fn reply(&mut self, status: u16, headers: &[(String, String)], body: &[u8], head: bool) {
        self.settle(status);
        write_response(self.stream, status, headers, body, head);
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        self.stream
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut TcpStream {
        self.stream
    }
}

/// Send `reply` without reading the request body, then close the connection as nginx does: a
/// client that waits for `100 Continue` reads the answer and never sends the body; one that is
/// already sending it meets a closed connection (a reset or a broken pipe).
fn refuse_unread(mut client: TcpStream, reader: BufReader<TcpStream>, st: &State, reply: Reply, index: usize) {
    st.shared.requests.lock().unwrap()[index].status = reply.status;
    write_response(&mut client, reply.status, &reply.headers, &reply.body, false);
    // The socket closes only when its last handle is dropped: the one kept to cut it on stop too.
    let peer = client.peer_addr().ok();
    st.shared.open.lock().unwrap().retain(|s| s.peer_addr().ok() != peer);
    drop(reader);
    drop(client);
}

fn choose_fault(st: &State, method: &str, path: &str, body_len: usize, headers: &[(String, String)]) -> Option<Fault> {
    let n = st.shared.arrivals.fetch_add(1, Ordering::SeqCst);
    {
        let mut rules = st.shared.rules.lock().unwrap();
        for (rule, hits) in rules.iter_mut() {
            let on_path = rule.path_contains.as_ref().is_none_or(|n| path.contains(n.as_str()));
            if on_path && rule.when.matches(method, path, body_len, headers) {
                let k = *hits;
                *hits += 1;
                if k < rule.times {
                    return Some(rule.fault);
                }
            }
        }
    }
    let random = st.opts.random.as_ref()?;
    if Match::TagList.matches(method, path, 0, &[]) || random.faults.is_empty() {
        return None;
    }
    let r = splitmix64(random.seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if r % 1000 >= random.per_mille {
        return None;
    }
    let fault = random.faults[((r / 1000) % random.faults.len() as u64) as usize];
    let applies = match fault {
        f if f.needs_body() => method == "GET",
        Fault::CutRequest => body_len > 1,
        _ => true,
    };
    applies.then_some(fault)
}

/// Answer one request; returns the status sent (0 for none).
fn answer(
    client: &mut Conn,
    st: &State,
    method: &str,
    uri: &str,
    head: Head,
    body: Vec<u8>,
    fault: Option<Fault>,
) -> u16 {
    let path = uri.split('?').next().unwrap_or("");
    if !st.opts.delay.is_zero() {
        thread::sleep(st.opts.delay);
    }
    match fault {
        Some(Fault::Status(code)) => {
            let mut hs = vec![("Content-Type".to_string(), "application/json".to_string())];
            if matches!(code, 429 | 503) {
                hs.push(("Retry-After".to_string(), "1".to_string()));
            }
            client.reply(code, &hs, &error_body("INJECTED", "injected failure"), false);
            return code;
        }
        Some(Fault::Code(status, code)) => {
            let hs = vec![("Content-Type".to_string(), "application/json".to_string())];
            client.reply(status, &hs, &error_body(code, "injected"), false);
            return status;
        }
        Some(Fault::RetryAfterDate) => {
            let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(1));
            let hs =
                vec![("Content-Type".to_string(), "application/json".to_string()), ("Retry-After".to_string(), when)];
            client.reply(429, &hs, &error_body("TOOMANYREQUESTS", "injected rate limit"), false);
            return 429;
        }
        Some(Fault::Drop) => {
            let _ = client.shutdown(Shutdown::Both);
            return 0;
        }
        Some(Fault::StallHead) => {
            stall(st);
            return 0;
        }
        _ => {}
    }
    if let Some(limit) = st.opts.max_body {
        if body.len() > limit {
            // As nginx's client_max_body_size answers: an HTML page, no registry error code.
            let hs = vec![("Content-Type".to_string(), "text/html".to_string())];
            let page = b"<html><head><title>413 Request Entity Too Large</title></head></html>";
            client.reply(413, &hs, page, false);
            return 413;
        }
    }
    let mut head = head;
    if let Some(p) = &st.opts.personality {
        match p.on_request(&Req { method, uri, head: &head }, body.len()) {
            Verdict::Forward => {}
            Verdict::ForwardAs(to) => head.line = format!("{method} {to} HTTP/1.1"),
            Verdict::Reply(r) => {
                client.reply(r.status, &r.headers, &r.body, method == "HEAD");
                return r.status;
            }
        }
    }
    if let (Some(target), true) = (&st.opts.redirect_blobs_to, Match::BlobGet.matches(method, path, 0, &[])) {
        let hs = vec![("Location".to_string(), format!("http://{target}{uri}"))];
        client.reply(307, &hs, b"", false);
        return 307;
    }
    let pages = st.opts.page_size > 0 || st.opts.personality.as_ref().and_then(Personality::tag_page_size).is_some();
    let tag_list = pages && Match::TagList.matches(method, path, 0, &[]);
    if tag_list || (st.opts.catalog_page_size > 0 && Match::Catalog.matches(method, path, 0, &[])) {
        return paginate(client, st, uri, head);
    }
    if fault == Some(Fault::CutRequest) && body.len() > 1 {
        let half = body.len() / 2;
        let mut head = head;
        if let Some((start, _)) =
            head.get("content-range").and_then(|r| r.split_once('-').map(|(a, b)| (a.to_string(), b.to_string())))
        {
            if let Ok(s) = start.trim().parse::<usize>() {
                head.set("Content-Range", &format!("{s}-{}", s + half - 1));
            }
        }
        let _ = forward(st, &head, &body[..half]);
        let _ = client.shutdown(Shutdown::Both);
        return 0;
    }
    let manifest_head = method == "HEAD" && path.starts_with("/v2/") && path.contains("/manifests/");
    if manifest_head && st.opts.head_refused {
        client.reply(405, &[], b"", false);
        return 405;
    }
    let manifest_read = manifest_head || Match::ManifestGet.matches(method, path, 0, &[]);
    if let Some(m) = st.opts.served_manifests.iter().find(|m| manifest_read && path.contains(m.needle.as_str())) {
        let hs = vec![
            ("Content-Type".to_string(), m.content_type.clone()),
            ("Docker-Content-Digest".to_string(), sha256_digest(&m.body)),
        ];
        client.reply(200, &hs, &m.body, method == "HEAD");
        return 200;
    }
    if let Some(listed) = &st.opts.referrers {
        if method == "GET" && path.starts_with("/v2/") {
            if let Some((_, digest)) = path.rsplit_once("/referrers/") {
                return referrers(client, listed, digest, uri, st.opts.page_size);
            }
        }
    }
    let mut budget_headers = Vec::new();
    if let Some(budget) = st.opts.pull_budget.filter(|_| manifest_read) {
        let (hs, refused) = st.shared.pull(&budget, method == "GET");
        if refused {
            client.reply(429, &hs, &error_body("TOOMANYREQUESTS", "pull rate limit reached"), false);
            return 429;
        }
        budget_headers = hs;
    }
    let Some((mut rhead, mut rbody)) = forward(st, &head, &body) else {
        client.reply(502, &[], b"upstream unreachable", false);
        return 502;
    };
    for (k, v) in &budget_headers {
        rhead.set(k, v);
    }
    if let Some(p) = &st.opts.personality {
        p.on_answer(&Req { method, uri, head: &head }, &mut rhead, &st.shared.memory);
    }
    let status = rhead.status();
    if fault == Some(Fault::DropAfter) {
        let _ = client.shutdown(Shutdown::Both);
        return 0;
    }
    if let (Some(host), Some(loc)) = (&st.opts.location_host, rhead.get("location")) {
        if let Some(rest) = loc.strip_prefix("http://") {
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            rhead.set("Location", &format!("http://{host}{path}"));
        }
    }
    if manifest_head && st.opts.head_without_digest {
        rhead.remove("docker-content-digest");
    }
    if manifest_read && (200..300).contains(&status) {
        if let Some((_, ct)) = st.opts.manifest_content_types.iter().find(|(n, _)| path.contains(n.as_str())) {
            rhead.set("Content-Type", ct);
        }
    }
    client.settle(status);
    let is_head = method == "HEAD";
    rhead.remove("connection");
    rhead.remove("transfer-encoding");
    rhead.set("Connection", "close");
    if is_head {
        let _ = client.write_all(&rhead.to_bytes());
        let _ = client.shutdown(Shutdown::Both);
        return status;
    }
    let damage = fault.filter(|f| f.needs_body()).filter(|_| rbody.len() > 1);
    let half = rbody.len() / 2;
    let mut declared = rbody.len();
    let mut sent = rbody.len();
    match damage {
        Some(Fault::Short) => {
            rbody.truncate(half);
            declared = half;
            sent = half;
        }
        Some(Fault::Long) => {
            rbody.extend_from_slice(&[0x5a; 16]);
            declared = rbody.len();
            sent = rbody.len();
        }
        Some(Fault::Flip) => {
            rbody[half] ^= 0xff;
        }
        Some(Fault::Truncate) | Some(Fault::StallBody) => sent = half,
        _ => {}
    }
    rhead.set("Content-Length", &declared.to_string());
    let mut out = rhead.to_bytes();
    if let Some(Fault::Trickle(ms)) = damage {
        let _ = client.write_all(&out);
        for &b in &rbody {
            if st.stop.load(Ordering::SeqCst) || client.write_all(&[b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(ms));
        }
        let _ = client.shutdown(Shutdown::Both);
        return status;
    }
    if st.opts.rate > 0 {
        let _ = client.write_all(&out);
        let piece = (st.opts.rate / 20).max(1) as usize;
        for part in rbody[..sent].chunks(piece) {
            if st.stop.load(Ordering::SeqCst) || client.write_all(part).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    } else {
        out.extend_from_slice(&rbody[..sent]);
        let _ = client.write_all(&out);
    }
    let _ = client.flush();
    if damage == Some(Fault::StallBody) {
        stall(st);
    }
    let _ = client.shutdown(Shutdown::Both);
    status
}

/// Hold the connection open without a word until the proxy stops (at most ten minutes).
fn stall(st: &State) {
    let until = Instant::now() + Duration::from_secs(600);
    while !st.stop.load(Ordering::SeqCst) && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
}

/// Send one request upstream on a fresh connection; the answer's head and (de-chunked) body.
fn forward(st: &State, head: &Head, body: &[u8]) -> Option<(Head, Vec<u8>)> {
    let mut up = TcpStream::connect(&st.upstream).ok()?;
    let _ = up.set_read_timeout(Some(Duration::from_secs(120)));
    let mut h = head.clone();
    h.remove("connection");
    h.remove("transfer-encoding");
    h.remove("expect");
    if !body.is_empty() || h.content_length().is_some() {
        h.set("Content-Length", &body.len().to_string());
    }
    if let Some(a) = &st.upstream_auth {
        h.set("Authorization", a);
    }
    h.set("Connection", "close");
    up.write_all(&h.to_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut reader = BufReader::new(up);
    let rhead = read_head(&mut reader)?;
    let is_head = head.line.starts_with("HEAD ");
    let no_body = is_head || matches!(rhead.status(), 204 | 304) || (100..200).contains(&rhead.status());
    let rbody = if no_body { Vec::new() } else { read_body(&mut reader, &rhead, true).ok()? };
    Some((rhead, rbody))
}

/// Answer `GET /v2/NAME/referrers/DIGEST` as an OCI 1.1 registry does: an OCI index of the
/// descriptors configured for `digest` (in order), only those of the requested `artifactType`
/// when the query names one (then `OCI-Filters-Applied: artifactType`).
fn referrers(
    client: &mut Conn,
    listed: &[(String, Vec<serde_json::Value>)],
    digest: &str,
    uri: &str,
    page_size: usize,
) -> u16 {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let wanted = query_param(query, "artifactType");
    let all: Vec<serde_json::Value> = listed
        .iter()
        .filter(|(d, _)| d == digest)
        .flat_map(|(_, descs)| descs.iter().cloned())
        .filter(|d| wanted.as_ref().is_none_or(|t| d["artifactType"].as_str() == Some(t.as_str())))
        .collect();
    // With a page size, pages follow one another through `Link` (`?page=N`, as the spec allows).
    let page: usize = query_param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let size = if page_size == 0 { all.len().max(1) } else { page_size };
    let manifests: Vec<serde_json::Value> = all.iter().skip(page * size).take(size).cloned().collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut hs = vec![("Content-Type".to_string(), "application/vnd.oci.image.index.v1+json".to_string())];
    if wanted.is_some() {
        hs.push(("OCI-Filters-Applied".to_string(), "artifactType".to_string()));
    }
    if (page + 1) * size < all.len() {
        let mut next = format!("{path}?page={}", page + 1);
        if let Some(t) = &wanted {
            next.push_str(&format!("&artifactType={t}"));
        }
        hs.push(("Link".to_string(), format!("<{next}>; rel=\"next\"")));
    }
    client.reply(200, &hs, &serde_json::to_vec(&index).unwrap(), false);
    200
}

/// Answer a tag-list or catalog GET with one page of the sorted upstream list, fetched whole
/// (without the client's query: distribution caps a catalog's `n` at its `catalog.maxentries`,
/// 1000 by default, and never paginates tags). Pages hold at most [`ProxyOpts::page_size`] tags
/// or [`ProxyOpts::catalog_page_size`] repositories, fewer when the client's `n` is smaller; the
/// next one is named in a `Link` header as distribution writes it.
fn paginate(client: &mut Conn, st: &State, uri: &str, head: Head) -> u16 {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    // `Some(NAME)` for the tags of repository NAME, `None` for the catalog.
    let tags_of = path.strip_prefix("/v2/").and_then(|p| p.strip_suffix("/tags/list"));
    let (key, size) = match tags_of {
        Some(_) => ("tags", st.opts.page_size),
        None => ("repositories", st.opts.catalog_page_size),
    };
    let mut h = head;
    h.line = format!("GET {path} HTTP/1.1");
    let Some((rhead, body)) = forward(st, &h, b"") else {
        client.reply(502, &[], b"upstream unreachable", false);
        return 502;
    };
    if rhead.status() != 200 {
        let keep: Vec<(String, String)> = rhead
            .headers
            .iter()
            .filter(|(k, _)| {
                !["content-length", "connection", "transfer-encoding"].contains(&k.to_ascii_lowercase().as_str())
            })
            .cloned()
            .collect();
        client.reply(rhead.status(), &keep, &body, false);
        return rhead.status();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut items: Vec<String> = v[key]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let (Some(name), Some(size)) = (tags_of, st.opts.personality.as_ref().and_then(Personality::tag_page_size)) {
        let (chunk, next) = quay_page(items, query, size);
        let mut hs = vec![("Content-Type".to_string(), "application/json".to_string())];
        if let Some(next) = next {
            hs.push(("Link".to_string(), format!("</v2/{name}/tags/list?{next}>; rel=\"next\"")));
        }
        let out = serde_json::json!({"name": name, "tags": chunk});
        client.reply(200, &hs, &serde_json::to_vec(&out).unwrap(), false);
        return 200;
    }
    items.sort();
    let n: usize = query_param(query, "n").and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(size);
    let page = n.min(size);
    let last = query_param(query, "last");
    let rest: Vec<String> = items.into_iter().filter(|t| last.as_ref().is_none_or(|l| t > l)).collect();
    let chunk: Vec<String> = rest.iter().take(page).cloned().collect();
    let mut hs = vec![("Content-Type".to_string(), "application/json; charset=utf-8".to_string())];
    if rest.len() > chunk.len() {
        let last = chunk.last().cloned().unwrap_or_default();
        let next = match tags_of {
            Some(name) => {
                // With `location_host`, the next page is on that other origin too.
                let host = st.opts.location_host.as_ref().map(|h| format!("http://{h}")).unwrap_or_default();
                format!("{host}/v2/{name}/tags/list?n={n}&last={last}")
            }
            // As distribution writes it: `last` URL-encoded (`team%2Fa`).
            None => format!("/v2/_catalog?last={}&n={page}", last.replace('/', "%2F")),
        };
        hs.push(("Link".to_string(), format!("<{next}>; rel=\"next\"")));
    }
    let out = match tags_of {
        Some(name) => serde_json::json!({"name": name, "tags": chunk}),
        None => serde_json::json!({"repositories": chunk}),
    };
    client.reply(200, &hs, &serde_json::to_vec(&out).unwrap(), false);
    200
}
