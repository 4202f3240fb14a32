//! Shared harness for the integration tests.
//!
//! Everything here talks to real `docker-registry` processes (CNCF distribution 2.8.2 from Debian)
//! on 127.0.0.1, never to the internet, and never through the project's own code:
//!
//! * [`TestDir`]: a self-removing temporary directory (std only).
//! * [`Registry`]: starts a registry on a free port (optionally behind htpasswd Basic auth), waits
//!   until it answers, exposes its access log, and kills it on drop.
//! * [`Client`]: a tiny Registry V2 client written with `ureq` to push fixtures and read results.
//! * [`push_image`], [`push_index`], [`push_big_image`]: fixture builders.
//! * [`run_syncer`]: runs the binary under test (or `$IMAGE_SYNCER_BIN`) with a watchdog.
//! * [`PagingProxy`]: a GET/HEAD proxy that paginates `/tags/list` with `Link` headers, because the
//!   Debian registry never paginates.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// media types
// ---------------------------------------------------------------------------------------------

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The Accept header used for every manifest request: all four manifest types.
pub const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------------------------
// small utilities
// ---------------------------------------------------------------------------------------------

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A number unique within this process, mixed with the pid and the clock so that two test
/// processes never produce the same fixture content or directory names.
pub fn unique_seed() -> u64 {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    splitmix64(nanos ^ ((std::process::id() as u64) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic pseudo-random bytes from a seed (incompressible, distinct per seed).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        state = splitmix64(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format!("sha256:{:x}", h.finalize())
}

pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Serialise JSON the way `docker` does (3-space indentation), so that a tool that re-serialises
/// manifests instead of preserving their bytes produces a different digest.
pub fn docker_json(value: &serde_json::Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).expect("serialise json");
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    resp.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("read response body")
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// temporary directories
// ---------------------------------------------------------------------------------------------

/// A temporary directory removed (recursively) on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let path = base.join(format!("image-syncer-{prefix}-{:016x}", unique_seed()));
            if fs::create_dir(&path).is_ok() {
                return TestDir { path };
            }
        }
        panic!("cannot create a temporary directory under {}", base.display());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&p, contents).expect("write file");
        p
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A path as `&str` (test paths are always UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------------------------
// the registry process
// ---------------------------------------------------------------------------------------------

/// Options for [`Registry::start_with`].
#[derive(Default, Clone)]
pub struct RegistryOpts {
    /// Protect the registry with htpasswd Basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
}

impl RegistryOpts {
    pub fn htpasswd(user: &str, pass: &str) -> RegistryOpts {
        RegistryOpts { htpasswd: Some((user.to_string(), pass.to_string())) }
    }
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Query string without the `?` (empty when none).
    pub query: String,
    pub status: u16,
}

impl Request {
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/blobs/")
    }
    pub fn is_manifest_put(&self) -> bool {
        self.method == "PUT" && self.path.contains("/manifests/")
    }
}

const SENTINEL: &str = "harness-sync";

/// A `docker-registry` process on 127.0.0.1 with filesystem storage in a temp dir.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
    log_offset: Mutex<u64>,
    sentinel: AtomicU64,
    creds: Option<(String, String)>,
    client: Client,
    // Last so that it is removed after the process is gone.
    dir: TestDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(RegistryOpts::default())
    }

    pub fn start_with(opts: RegistryOpts) -> Registry {
        let dir = TestDir::new("registry");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            match start_process(&dir, &opts) {
                Ok((child, port, log_path)) => {
                    let creds = opts.htpasswd.clone();
                    let reg = Registry {
                        child: Some(child),
                        port,
                        log_path,
                        log_offset: Mutex::new(0),
                        sentinel: AtomicU64::new(0),
                        creds: creds.clone(),
                        client: Client::new(&format!("127.0.0.1:{port}"), creds),
                        dir,
                    };
                    reg.clear_requests();
                    return reg;
                }
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start; last log:\n{last_log}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT/REPO"
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}", self.addr(), repo)
    }

    /// The fixture client for this registry, with its credentials when it has htpasswd auth.
    pub fn api(&self) -> &Client {
        &self.client
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.addr(), None)
    }

    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The auth-file entry for this registry: `insecure: true` plus its credentials if any.
    pub fn auth_entry(&self) -> AuthEntry {
        AuthEntry { key: self.addr(), creds: self.creds.clone(), insecure: true }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole registry log (access log and error lines) as text, for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Makes a marker request and waits until it appears in the access log, so that every request
    /// answered before this call is in the log file. Returns the byte offset just past the marker.
    fn sync_log(&self) -> u64 {
        let n = self.sentinel.fetch_add(1, Ordering::SeqCst);
        let marker = format!("/v2/?{SENTINEL}={n}");
        let _ = self.anonymous().agent.get(&format!("http://{}{marker}", self.addr())).call();
        let needle = format!(" {marker} HTTP/");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read(&self.log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            if let Some(pos) = text.find(&needle) {
                let end = text[pos..].find('\n').map(|e| pos + e + 1).unwrap_or(text.len());
                // Give any request whose log line is being written concurrently a moment.
                thread::sleep(Duration::from_millis(50));
                return end as u64;
            }
            if Instant::now() > deadline {
                panic!("marker {marker} never appeared in the access log:\n{text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests logged since the last [`Registry::clear_requests`] (or since start-up), in order.
    /// Harness marker requests are left out.
    pub fn requests(&self) -> Vec<Request> {
        self.sync_log();
        let start = *self.log_offset.lock().unwrap() as usize;
        let bytes = fs::read(&self.log_path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[start.min(bytes.len())..]).to_string();
        text.lines().filter_map(parse_access_line).filter(|r| !r.query.starts_with(SENTINEL)).collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        let _ = self.sync_log();
        let len = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        *self.log_offset.lock().unwrap() = len;
    }

    /// (method, path) pairs, as in the brief.
    pub fn request_pairs(&self) -> Vec<(String, String)> {
        self.requests().into_iter().map(|r| (r.method, r.path)).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses an access-log line in Apache combined format:
/// `127.0.0.1 - user [26/Nov/2026:16:10:41 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
pub fn parse_access_line(line: &str) -> Option<Request> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut parts = rest[..end].split(' ');
    let method = parts.next()?.to_string();
    let uri = parts.next()?;
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (uri.to_string(), String::new()),
    };
    Some(Request { method, path, query, status })
}

/// One attempt to start a registry on a free port: (process, port, log path), or the log text.
fn start_process(dir: &TestDir, opts: &RegistryOpts) -> Result<(Child, u16, PathBuf), String> {
    let port = free_port();
    let instance = format!("{:016x}", unique_seed());
    let data = dir.join("data");
    fs::create_dir_all(&data).expect("create data dir");
    let mut config = format!(
        "version: 0.1\n\
         log: {{level: warn, accesslog: {{disabled: false}}}}\n\
         storage:\n  filesystem: {{rootdirectory: \"{}\"}}\n  delete: {{enabled: true}}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: harness-secret-{instance}\n  \
         headers:\n    X-Harness-Instance: [\"{instance}\"]\n",
        data.display()
    );
    if let Some((user, pass)) = &opts.htpasswd {
        let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("run htpasswd (apache2-utils)");
        assert!(out.status.success(), "htpasswd failed: {out:?}");
        let entry = String::from_utf8(out.stdout).expect("htpasswd output");
        let htpasswd = dir.write("htpasswd", entry.trim());
        config.push_str(&format!("auth:\n  htpasswd: {{realm: test, path: \"{}\"}}\n", htpasswd.display()));
    }
    let config_path = dir.write("config.yml", &config);
    let log_path = dir.join(&format!("registry-{port}.log"));
    let log = fs::File::create(&log_path).expect("create registry log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn docker-registry (is /usr/bin/docker-registry installed?)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ping = agent();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(fs::read_to_string(&log_path).unwrap_or_default());
        }
        if let Ok(resp) = ping.get(&format!("http://127.0.0.1:{port}/v2/")).call() {
            // Make sure it is our process answering, not another test's registry.
            let ours = header(&resp, "X-Harness-Instance").as_deref() == Some(&instance[..]);
            let code = resp.status().as_u16();
            if ours && (code == 200 || code == 401) {
                return Ok((child, port, log_path));
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fs::read_to_string(&log_path).unwrap_or_default());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// the fixture client
// ---------------------------------------------------------------------------------------------

/// A manifest as served by a registry.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// `Docker-Content-Digest` as served.
    pub digest: String,
}

impl Manifest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("manifest is JSON")
    }
}

/// A minimal Registry V2 client (ureq) for fixtures and assertions. Not the project's code.
#[derive(Clone)]
pub struct Client {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `addr` is "host:port"; plain http.
    pub fn new(addr: &str, creds: Option<(String, String)>) -> Client {
        Client {
            base: format!("http://{addr}"),
            auth: creds.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
            agent: agent(),
        }
    }

    pub fn with_creds(&self, user: &str, pass: &str) -> Client {
        let mut c = self.clone();
        c.auth = Some(format!("Basic {}", base64(format!("{user}:{pass}").as_bytes())));
        c
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    fn get_req(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut r = self.agent.get(&self.url(path));
        if let Some(a) = &self.auth {
            r = r.header("Authorization", a);
        }
        r
    }

    fn head_req(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let mut r = self.agent.head(&self.url(path));
        if let Some(a) = &self.auth {
            r = r.header("Authorization", a);
        }
        r
    }

    /// Status of `GET /v2/`.
    pub fn ping(&self) -> u16 {
        self.get_req("/v2/").call().expect("GET /v2/").status().as_u16()
    }

    /// Uploads a blob (monolithic POST + PUT) and returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let mut post = self.agent.post(&self.url(&format!("/v2/{repo}/blobs/uploads/")));
        if let Some(a) = &self.auth {
            post = post.header("Authorization", a);
        }
        let resp = post.send_empty().expect("POST blob upload");
        assert_eq!(resp.status().as_u16(), 202, "POST /v2/{repo}/blobs/uploads/ failed");
        let location = header(&resp, "Location").expect("upload Location header");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={digest}", self.url(&location));
        let mut put = self.agent.put(&url).header("Content-Type", "application/octet-stream");
        if let Some(a) = &self.auth {
            put = put.header("Authorization", a);
        }
        let mut resp = put.send(bytes).expect("PUT blob");
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&read_body(&mut resp)).to_string();
        assert_eq!(status, 201, "PUT blob {digest} to {repo}: {body}");
        digest
    }

    /// PUTs a manifest under `reference` (tag or digest) and returns its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let mut put =
            self.agent.put(&self.url(&format!("/v2/{repo}/manifests/{reference}"))).header("Content-Type", media_type);
        if let Some(a) = &self.auth {
            put = put.header("Authorization", a);
        }
        let mut resp = put.send(bytes).expect("PUT manifest");
        let status = resp.status().as_u16();
        let digest = header(&resp, "Docker-Content-Digest");
        let body = String::from_utf8_lossy(&read_body(&mut resp)).to_string();
        assert_eq!(status, 201, "PUT manifest {repo}:{reference}: {body}");
        let expected = sha256_digest(bytes);
        assert_eq!(digest.as_deref(), Some(&expected[..]), "registry digest");
        expected
    }

    /// GETs a manifest with an Accept header listing all four manifest types. `None` on 404.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Option<Manifest> {
        let mut resp = self
            .get_req(&format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_ALL)
            .call()
            .expect("GET manifest");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "GET manifest {repo}:{reference}: {}", String::from_utf8_lossy(&bytes));
        let content_type = header(&resp, "Content-Type").unwrap_or_default();
        let digest = header(&resp, "Docker-Content-Digest").unwrap_or_default();
        assert_eq!(digest, sha256_digest(&bytes), "served digest matches bytes");
        Some(Manifest { bytes, content_type, digest })
    }

    /// HEADs a manifest; returns `Docker-Content-Digest`, `None` on 404.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Option<String> {
        let resp = self
            .head_req(&format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_ALL)
            .call()
            .expect("HEAD manifest");
        match resp.status().as_u16() {
            404 => None,
            200 => Some(header(&resp, "Docker-Content-Digest").expect("digest header")),
            s => panic!("HEAD manifest {repo}:{reference}: status {s}"),
        }
    }

    /// GETs a blob's bytes, `None` on 404.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let mut resp = self.get_req(&format!("/v2/{repo}/blobs/{digest}")).call().expect("GET blob");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        match status {
            404 => None,
            200 => Some(bytes),
            s => panic!("GET blob {repo}@{digest}: status {s}"),
        }
    }

    /// Whether a blob exists in `repo` (HEAD).
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self.head_req(&format!("/v2/{repo}/blobs/{digest}")).call().expect("HEAD blob");
        match resp.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{digest}: status {s}"),
        }
    }

    /// All tags of a repository, sorted; empty when the repository is unknown.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut resp = self.get_req(&format!("/v2/{repo}/tags/list")).call().expect("GET tags");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "GET tags {repo}");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("tags JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// A raw GET (path or absolute URL) with extra headers: (status, headers, body).
    pub fn raw_get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let mut r = self.get_req(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut resp = r.call().expect("GET");
        let status = resp.status().as_u16();
        let mut hs = BTreeMap::new();
        for (k, v) in resp.headers() {
            hs.insert(k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string());
        }
        (status, hs, read_body(&mut resp))
    }
}

// ---------------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Docker,
    Oci,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Docker manifest list (children are docker schema2 images).
    List,
    /// OCI image index (children are OCI images).
    OciIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    /// Empty when none.
    pub variant: String,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: &str) -> Platform {
        Platform { os: os.into(), arch: arch.into(), variant: variant.into() }
    }
}

/// A pushed single-platform image.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub platform: Platform,
}

impl Image {
    /// Config + layers.
    pub fn blobs(&self) -> Vec<String> {
        let mut v = vec![self.config_digest.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// A pushed manifest list / OCI index.
#[derive(Debug, Clone)]
pub struct Index {
    pub repo: String,
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub children: Vec<Image>,
}

impl Index {
    pub fn child(&self, os: &str, arch: &str, variant: &str) -> &Image {
        let want = Platform::new(os, arch, variant);
        self.children.iter().find(|c| c.platform == want).unwrap_or_else(|| panic!("no child {os}/{arch}/{variant}"))
    }
}

fn build_and_push_image(
    c: &Client,
    repo: &str,
    reference: Option<&str>,
    kind: ImageKind,
    platform: Platform,
    layers_data: Vec<Vec<u8>>,
) -> Image {
    let (mt, config_mt, layer_mt) = match kind {
        ImageKind::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        ImageKind::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    };
    let mut layer_descs = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for data in &layers_data {
        let d = c.push_blob(repo, data);
        diff_ids.push(serde_json::Value::String(d.clone()));
        layer_descs.push(serde_json::json!({
            "mediaType": layer_mt,
            "size": data.len(),
            "digest": d,
        }));
        layers.push(d);
    }
    let mut config = serde_json::json!({
        "architecture": platform.arch,
        "os": platform.os,
    });
    if !platform.variant.is_empty() {
        config["variant"] = serde_json::Value::String(platform.variant.clone());
    }
    config["created"] = serde_json::Value::String("2024-01-01T00:00:00Z".into());
    config["config"] = serde_json::json!({"Env": [format!("FIXTURE={:016x}", unique_seed())]});
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = c.push_blob(repo, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {
            "mediaType": config_mt,
            "size": config_bytes.len(),
            "digest": config_digest,
        },
        "layers": layer_descs,
    });
    let bytes = docker_json(&manifest);
    let digest = sha256_digest(&bytes);
    let reference = reference.unwrap_or(&digest).to_string();
    let pushed = c.put_manifest(repo, &reference, mt, &bytes);
    assert_eq!(pushed, digest);
    Image { repo: repo.to_string(), digest, bytes, media_type: mt.to_string(), config_digest, layers, platform }
}

fn small_layers() -> Vec<Vec<u8>> {
    (0..2)
        .map(|_| {
            let seed = unique_seed();
            random_bytes(seed, 2048 + (seed % 4096) as usize)
        })
        .collect()
}

/// Pushes a single-platform image with two random layers (a few KiB each) and a config blob.
/// `variant` may be empty.
pub fn push_image(c: &Client, repo: &str, tag: &str, kind: ImageKind, os: &str, arch: &str, variant: &str) -> Image {
    build_and_push_image(c, repo, Some(tag), kind, Platform::new(os, arch, variant), small_layers())
}

/// Pushes a linux/amd64 docker image under `tag` (the common case).
pub fn push_simple(c: &Client, repo: &str, tag: &str) -> Image {
    push_image(c, repo, tag, ImageKind::Docker, "linux", "amd64", "")
}

/// Pushes the same image bytes under an extra tag.
pub fn tag_image(c: &Client, img: &Image, tag: &str) {
    c.put_manifest(&img.repo, tag, &img.media_type, &img.bytes);
}

/// Pushes an image by digest only (no tag).
pub fn push_image_untagged(c: &Client, repo: &str, kind: ImageKind, os: &str, arch: &str, variant: &str) -> Image {
    build_and_push_image(c, repo, None, kind, Platform::new(os, arch, variant), small_layers())
}

/// Pushes an image whose first layer is `mib` MiB of pseudo-random bytes (plus a small layer).
pub fn push_big_image(c: &Client, repo: &str, tag: &str, mib: usize) -> Image {
    let big = random_bytes(unique_seed(), mib * 1024 * 1024);
    let small = random_bytes(unique_seed(), 3000);
    build_and_push_image(c, repo, Some(tag), ImageKind::Docker, Platform::new("linux", "amd64", ""), vec![big, small])
}

/// Pushes an OCI artifact shaped like a Helm chart: an OCI manifest whose config and layer have
/// non-image media types (and a config without platform fields) plus annotations.
pub fn push_artifact(c: &Client, repo: &str, tag: &str) -> Image {
    let config_bytes = serde_json::to_vec(&serde_json::json!({
        "name": "chart",
        "version": format!("0.1.{}", unique_seed() % 1000),
        "apiVersion": "v2",
    }))
    .unwrap();
    let config_digest = c.push_blob(repo, &config_bytes);
    let content = random_bytes(unique_seed(), 5000);
    let layer = c.push_blob(repo, &content);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "size": config_bytes.len(),
            "digest": config_digest,
        },
        "layers": [{
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "size": content.len(),
            "digest": layer,
        }],
        "annotations": {"org.opencontainers.image.title": "chart"},
    });
    let bytes = docker_json(&manifest);
    let digest = c.put_manifest(repo, tag, OCI_MANIFEST, &bytes);
    Image {
        repo: repo.to_string(),
        digest,
        bytes,
        media_type: OCI_MANIFEST.to_string(),
        config_digest,
        layers: vec![layer],
        platform: Platform::new("", "", ""),
    }
}

/// Pushes one child image per platform (by digest), then the list / index under `tag`.
/// Platforms are `(os, arch, variant)`, variant may be empty.
pub fn push_index(c: &Client, repo: &str, tag: &str, kind: IndexKind, platforms: &[(&str, &str, &str)]) -> Index {
    let (mt, child_kind) = match kind {
        IndexKind::List => (DOCKER_LIST, ImageKind::Docker),
        IndexKind::OciIndex => (OCI_INDEX, ImageKind::Oci),
    };
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (os, arch, variant) in platforms {
        let child = push_image_untagged(c, repo, child_kind, os, arch, variant);
        let mut platform = serde_json::json!({"architecture": arch, "os": os});
        if !variant.is_empty() {
            platform["variant"] = serde_json::Value::String(variant.to_string());
        }
        entries.push(serde_json::json!({
            "mediaType": child.media_type,
            "size": child.bytes.len(),
            "digest": child.digest,
            "platform": platform,
        }));
        children.push(child);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": entries,
    });
    let bytes = docker_json(&index);
    let digest = c.put_manifest(repo, tag, mt, &bytes);
    Index { repo: repo.to_string(), digest, bytes, media_type: mt.to_string(), children }
}

/// `(digest, os, arch, variant)` of each entry of a list / index.
pub fn index_entries(bytes: &[u8]) -> Vec<(String, Platform)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("index JSON");
    v["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .map(|m| {
            let pf = &m["platform"];
            (
                m["digest"].as_str().unwrap_or_default().to_string(),
                Platform::new(
                    pf["os"].as_str().unwrap_or_default(),
                    pf["architecture"].as_str().unwrap_or_default(),
                    pf["variant"].as_str().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Asserts that `dst` holds `img` in `repo` under `reference` with identical digest and bytes, and
/// that the config and every layer blob have identical bytes.
pub fn assert_image_copied(src: &Client, dst: &Client, img: &Image, dst_repo: &str, reference: &str) {
    let m = dst
        .get_manifest(dst_repo, reference)
        .unwrap_or_else(|| panic!("{dst_repo}:{reference} missing at destination"));
    assert_eq!(m.digest, img.digest, "{dst_repo}:{reference} digest");
    assert!(m.bytes == img.bytes, "{dst_repo}:{reference} manifest bytes differ");
    assert_eq!(m.content_type, img.media_type, "{dst_repo}:{reference} content type");
    for blob in img.blobs() {
        let want = src.get_blob(&img.repo, &blob).unwrap_or_else(|| panic!("source blob {blob} missing"));
        let got = dst.get_blob(dst_repo, &blob).unwrap_or_else(|| panic!("blob {blob} missing in {dst_repo}"));
        assert_eq!(got.len(), want.len(), "blob {blob} length");
        assert!(got == want, "blob {blob} bytes differ");
    }
}

/// Asserts an index and all its children were copied unchanged into `dst_repo` under `tag`.
pub fn assert_index_copied(src: &Client, dst: &Client, idx: &Index, dst_repo: &str, tag: &str) {
    let m = dst.get_manifest(dst_repo, tag).unwrap_or_else(|| panic!("{dst_repo}:{tag} missing at destination"));
    assert_eq!(m.digest, idx.digest, "{dst_repo}:{tag} index digest");
    assert!(m.bytes == idx.bytes, "{dst_repo}:{tag} index bytes differ");
    assert_eq!(m.content_type, idx.media_type, "{dst_repo}:{tag} content type");
    for child in &idx.children {
        assert_image_copied(src, dst, child, dst_repo, &child.digest);
    }
}

// ---------------------------------------------------------------------------------------------
// config files
// ---------------------------------------------------------------------------------------------

/// One entry of an auth file.
#[derive(Clone, Debug)]
pub struct AuthEntry {
    pub key: String,
    pub creds: Option<(String, String)>,
    pub insecure: bool,
}

impl AuthEntry {
    /// An `insecure: true` entry without credentials.
    pub fn insecure(key: &str) -> AuthEntry {
        AuthEntry { key: key.to_string(), creds: None, insecure: true }
    }

    pub fn with_creds(mut self, user: &str, pass: &str) -> AuthEntry {
        self.creds = Some((user.to_string(), pass.to_string()));
        self
    }
}

fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// An auth file in YAML.
pub fn auth_yaml(entries: &[AuthEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{}:\n", yaml_str(&e.key)));
        if let Some((u, p)) = &e.creds {
            out.push_str(&format!("  username: {}\n  password: {}\n", yaml_str(u), yaml_str(p)));
        }
        out.push_str(&format!("  insecure: {}\n", e.insecure));
    }
    out
}

/// An auth file as a JSON object.
pub fn auth_json_value(entries: &[AuthEntry]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for e in entries {
        let mut v = serde_json::json!({"insecure": e.insecure});
        if let Some((u, p)) = &e.creds {
            v["username"] = serde_json::Value::String(u.clone());
            v["password"] = serde_json::Value::String(p.clone());
        }
        map.insert(e.key.clone(), v);
    }
    serde_json::Value::Object(map)
}

/// Auth entries (`insecure: true`, with credentials where needed) for these registries.
pub fn auth_for(regs: &[&Registry]) -> Vec<AuthEntry> {
    regs.iter().map(|r| r.auth_entry()).collect()
}

/// An images file in YAML: `src: dst` or `src: [dst, ...]`.
pub fn images_yaml(rules: &[(&str, &[&str])]) -> String {
    let mut out = String::new();
    for (src, dsts) in rules {
        if dsts.len() == 1 {
            out.push_str(&format!("{}: {}\n", yaml_str(src), yaml_str(dsts[0])));
        } else {
            out.push_str(&format!("{}:\n", yaml_str(src)));
            for d in *dsts {
                out.push_str(&format!("  - {}\n", yaml_str(d)));
            }
        }
    }
    out
}

/// A temp dir holding `auth.yaml` and `images.yaml`, ready for `--auth` / `--images`.
pub struct Job {
    pub dir: TestDir,
    pub auth: PathBuf,
    pub images: PathBuf,
}

impl Job {
    pub fn new(auth: &[AuthEntry], images: &str) -> Job {
        let dir = TestDir::new("job");
        let auth = dir.write("auth.yaml", &auth_yaml(auth));
        let images = dir.write("images.yaml", images);
        Job { dir, auth, images }
    }

    /// `--auth A --images I` followed by `extra`.
    pub fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--auth", p(&self.auth), "--images", p(&self.images)];
        v.extend_from_slice(extra);
        v
    }

    /// Runs the syncer with `--auth A --images I` plus `extra`.
    pub fn run(&self, extra: &[&str]) -> Run {
        run_syncer(&self.args(extra))
    }
}

// ---------------------------------------------------------------------------------------------
// running the binary
// ---------------------------------------------------------------------------------------------

/// The binary under test: `$IMAGE_SYNCER_BIN` if set, else the cargo-built one (Cargo names it
/// for tests and benches; examples that share this module fall back to the release build).
pub fn syncer_bin() -> PathBuf {
    match std::env::var_os("IMAGE_SYNCER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(
            option_env!("CARGO_BIN_EXE_image-syncer")
                .unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/image-syncer")),
        ),
    }
}

/// The outcome of one syncer run.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the run succeeded.
    pub fn assert_ok(&self) -> &Run {
        assert!(self.success(), "image-syncer failed:\n{self}");
        self.assert_no_panic();
        self
    }

    /// Panics unless the run failed with a normal non-zero exit code (not a signal).
    pub fn assert_failed(&self) -> &Run {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "image-syncer should have failed with a non-zero exit code:\n{self}"
        );
        self.assert_no_panic();
        self
    }

    pub fn assert_no_panic(&self) -> &Run {
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(!all.contains("panicked") && !all.contains("RUST_BACKTRACE"), "panic output:\n{self}");
        self
    }

    /// stdout + stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The number N of `Synchronization finished, N images failed` in `text`.
    pub fn failed_count_in(text: &str) -> Option<u64> {
        let line = text.lines().find(|l| l.contains("Synchronization finished"))?;
        let rest = &line[line.find("Synchronization finished,")? + "Synchronization finished,".len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    /// The N of the summary line in the output (stderr, stdout).
    pub fn failed_count(&self) -> Option<u64> {
        Run::failed_count_in(&self.output())
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {} {}", syncer_bin().display(), self.args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs the syncer with `args` (no extra environment).
pub fn run_syncer(args: &[&str]) -> Run {
    run_syncer_env(args, &[])
}

/// Runs the syncer with `args` and extra environment variables. Proxy variables and `RUST_LOG`
/// are removed (everything is on 127.0.0.1; the default log level is tested) and docker / podman
/// credential files point to a path that does not exist. A watchdog kills the process after 10 minutes so that a hung
/// binary fails the test instead of hanging the suite.
pub fn run_syncer_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(syncer_bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    // The default log level is part of the contract (summary line, "unchanged"): do not let the
    // caller's environment change it.
    cmd.env_remove("RUST_LOG");
    // Hermetic credentials: never pick up the developer's docker / podman logins.
    let no_creds = std::env::temp_dir().join("image-syncer-tests-no-credentials");
    cmd.env("DOCKER_CONFIG", &no_creds).env("REGISTRY_AUTH_FILE", no_creds.join("auth.json"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", syncer_bin().display()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for image-syncer") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(25));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap()).to_string();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).to_string();
    let run =
        Run { args: args.iter().map(|s| s.to_string()).collect(), code: status.and_then(|s| s.code()), stdout, stderr };
    assert!(status.is_some(), "image-syncer hung and was killed:\n{run}");
    run
}

// ---------------------------------------------------------------------------------------------
// the paginating proxy
// ---------------------------------------------------------------------------------------------

const MAX_PROXY_HANDLERS: usize = 8;

/// Options for [`PagingProxy::start_with`].
#[derive(Clone, Debug, Default)]
pub struct ProxyOpts {
    /// Largest page of tags returned (the client's `n` is honoured when smaller). 0 = no paging:
    /// tag lists are forwarded as they are.
    pub page_size: usize,
    /// Answer the first N blob GETs with `503 Service Unavailable`.
    pub fail_blob_gets: usize,
    /// Cut the first N blob GET bodies in half (full `Content-Length`, then the connection
    /// closes), like a connection reset in the middle of a download.
    pub truncate_blob_gets: usize,
    /// Answer blob GETs with `307 Temporary Redirect` to `http://HOST:PORT<same path>`.
    pub redirect_blobs_to: Option<String>,
    /// Send these Basic credentials upstream instead of the client's `Authorization` header
    /// (a stand-in for pre-signed object-storage URLs).
    pub upstream_creds: Option<(String, String)>,
}

/// One request received by the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub method: String,
    pub uri: String,
    /// The `Authorization` header received, if any.
    pub authorization: Option<String>,
}

/// A GET/HEAD HTTP/1.1 proxy in front of a registry. It paginates `/v2/NAME/tags/list`: it
/// fetches the full list upstream, sorts it, returns the tags after `last`, at most
/// `min(n, page_size)` of them, with `Link: </v2/NAME/tags/list?n=N&last=LAST>; rel="next"` when
/// more remain. Every other request is forwarded (status, Content-Type, Docker-Content-Digest,
/// Content-Length, Www-Authenticate, Location, body). It can also inject blob failures and
/// redirects ([`ProxyOpts`]). `Connection: close` on every response. Stops on drop.
pub struct PagingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    shared: Arc<ProxyShared>,
}

#[derive(Default)]
struct ProxyShared {
    tag_requests: AtomicUsize,
    blob_gets: AtomicUsize,
    requests: Mutex<Vec<ProxyRequest>>,
}

struct ProxyState {
    upstream: String,
    opts: ProxyOpts,
    upstream_auth: Option<String>,
    agent: ureq::Agent,
    shared: Arc<ProxyShared>,
}

impl PagingProxy {
    /// A proxy in front of `upstream` ("host:port") with pages of at most `page_size` tags.
    pub fn start(upstream: &str, page_size: usize) -> PagingProxy {
        assert!(page_size > 0);
        PagingProxy::start_with(upstream, ProxyOpts { page_size, ..ProxyOpts::default() })
    }

    pub fn start_with(upstream: &str, opts: ProxyOpts) -> PagingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(ProxyShared::default());
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            upstream_auth: opts
                .upstream_creds
                .as_ref()
                .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
            opts,
            agent: agent(),
            shared: shared.clone(),
        });
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            let mut handles: Vec<thread::JoinHandle<()>> = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                handles.retain(|h| !h.is_finished());
                if active.load(Ordering::SeqCst) >= MAX_PROXY_HANDLERS {
                    // Bounded: serve inline when too many handlers are busy.
                    handle_proxy_conn(stream, &state);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let st = state.clone();
                let act = active.clone();
                handles.push(thread::spawn(move || {
                    handle_proxy_conn(stream, &st);
                    act.fetch_sub(1, Ordering::SeqCst);
                }));
            }
            for h in handles {
                let _ = h.join();
            }
        });
        PagingProxy { port, stop, thread: Some(thread), shared }
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

    /// How many `/tags/list` requests were answered.
    pub fn tag_list_requests(&self) -> usize {
        self.shared.tag_requests.load(Ordering::SeqCst)
    }

    /// How many blob GETs were received (including failed / redirected ones).
    pub fn blob_gets(&self) -> usize {
        self.shared.blob_gets.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for PagingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn write_head(stream: &mut TcpStream, status: u16, headers: &[(String, String)], len: usize) {
    let reason = ureq::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Status");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    let mut has_len = false;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            has_len = true;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("Content-Length: {len}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    let _ = stream.write_all(out.as_bytes());
}

fn write_response(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8], head: bool) {
    write_head(stream, status, headers, body.len());
    if !head {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// Read one HTTP/1.1 request head: the request line (trimmed) and the headers, trimmed, in
/// order. `None` when the connection ends first. Shared by the test servers and proxies.
pub fn read_request_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some((request_line.trim_end().to_string(), headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

fn handle_proxy_conn(mut stream: TcpStream, st: &ProxyState) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let Some((request_line, headers)) = read_request_head(&mut reader) else { return };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let uri = parts.next().unwrap_or("").to_string();
    let get_all = |name: &str| -> Option<String> {
        let vals: Vec<&str> =
            headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    };
    let authorization = get_all("Authorization");
    let accept = get_all("Accept");
    st.shared.requests.lock().unwrap().push(ProxyRequest {
        method: method.clone(),
        uri: uri.clone(),
        authorization: authorization.clone(),
    });
    let head = method == "HEAD";
    if method != "GET" && !head {
        write_response(&mut stream, 405, &[], b"only GET and HEAD", false);
        return;
    }
    let (path, query) = uri.split_once('?').unwrap_or((uri.as_str(), ""));
    let upstream_auth = st.upstream_auth.clone().or(authorization);

    let upstream_req = |url: &str, is_head: bool| {
        let mut r = if is_head { st.agent.head(url) } else { st.agent.get(url) };
        if let Some(a) = &upstream_auth {
            r = r.header("Authorization", a);
        }
        if let Some(a) = &accept {
            r = r.header("Accept", a);
        }
        r.call()
    };

    let is_blob_get = !head && path.starts_with("/v2/") && path.contains("/blobs/sha256:");
    let mut truncate = false;
    if is_blob_get {
        let n = st.shared.blob_gets.fetch_add(1, Ordering::SeqCst);
        if n < st.opts.fail_blob_gets {
            let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}"#;
            let hs = vec![("Content-Type".to_string(), "application/json".to_string())];
            write_response(&mut stream, 503, &hs, body, false);
            return;
        }
        truncate = n < st.opts.fail_blob_gets + st.opts.truncate_blob_gets;
        if let Some(target) = &st.opts.redirect_blobs_to {
            let hs = vec![("Location".to_string(), format!("http://{target}{uri}"))];
            write_response(&mut stream, 307, &hs, b"", false);
            return;
        }
    }

    if st.opts.page_size > 0 && path.starts_with("/v2/") && path.ends_with("/tags/list") && !head {
        st.shared.tag_requests.fetch_add(1, Ordering::SeqCst);
        let name = &path["/v2/".len()..path.len() - "/tags/list".len()];
        let url = format!("http://{}{path}", st.upstream);
        let mut resp = match upstream_req(&url, false) {
            Ok(r) => r,
            Err(e) => {
                write_response(&mut stream, 502, &[], e.to_string().as_bytes(), false);
                return;
            }
        };
        let status = resp.status().as_u16();
        let body = read_body(&mut resp);
        if status != 200 {
            let hs = forwarded_headers(&resp, false);
            write_response(&mut stream, status, &hs, &body, false);
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        tags.sort();
        let n: usize =
            query_param(query, "n").and_then(|n| n.parse().ok()).filter(|n| *n > 0).unwrap_or(st.opts.page_size);
        let page = n.min(st.opts.page_size);
        let last = query_param(query, "last");
        let rest: Vec<String> = tags.into_iter().filter(|t| last.as_ref().is_none_or(|l| t > l)).collect();
        let chunk: Vec<String> = rest.iter().take(page).cloned().collect();
        let mut hs = vec![("Content-Type".to_string(), "application/json; charset=utf-8".to_string())];
        if rest.len() > chunk.len() {
            let last = chunk.last().cloned().unwrap_or_default();
            hs.push(("Link".to_string(), format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\"")));
        }
        let out = serde_json::to_vec(&serde_json::json!({"name": name, "tags": chunk})).unwrap();
        write_response(&mut stream, 200, &hs, &out, false);
        return;
    }

    let url = format!("http://{}{uri}", st.upstream);
    let mut resp = match upstream_req(&url, head) {
        Ok(r) => r,
        Err(e) => {
            write_response(&mut stream, 502, &[], e.to_string().as_bytes(), false);
            return;
        }
    };
    let status = resp.status().as_u16();
    if head {
        let hs = forwarded_headers(&resp, true);
        write_response(&mut stream, status, &hs, &[], true);
        return;
    }
    let hs = forwarded_headers(&resp, false);
    let body = read_body(&mut resp);
    if truncate && status == 200 && body.len() > 1 {
        write_head(&mut stream, status, &hs, body.len());
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    write_response(&mut stream, status, &hs, &body, false);
}

/// The upstream headers worth forwarding; Content-Length only for HEAD (GET bodies are
/// re-framed with their real length).
fn forwarded_headers(resp: &ureq::http::Response<ureq::Body>, keep_length: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in [
        "Content-Type",
        "Docker-Content-Digest",
        "Content-Length",
        "Www-Authenticate",
        "Location",
        "Docker-Distribution-Api-Version",
    ] {
        if name == "Content-Length" && !keep_length {
            continue;
        }
        for v in resp.headers().get_all(name) {
            if let Ok(v) = v.to_str() {
                out.push((name.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// A job whose auth file covers `regs` (insecure, with their credentials) and whose images file
/// holds `rules`.
pub fn job(regs: &[&Registry], rules: &[(&str, &[&str])]) -> Job {
    Job::new(&auth_for(regs), &images_yaml(rules))
}

/// Lower-cased text contains any of `needles`.
pub fn contains_any_ci(text: &str, needles: &[&str]) -> bool {
    let t = text.to_lowercase();
    needles.iter().any(|n| t.contains(&n.to_lowercase()))
}
