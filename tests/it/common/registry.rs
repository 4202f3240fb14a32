//! [`Registry`]: a real `docker-registry` process on a free port, with temp storage, optional
//! htpasswd auth, deletion enabled unless asked otherwise, and its access log parsed into
//! [`Request`]s (what tests count).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Options for [`Registry::start_with`].
#[derive(Default, Clone)]
pub struct RegistryOpts {
    /// Protect the registry with htpasswd Basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Leave `storage.delete.enabled` out of the config: every `DELETE` of a manifest or blob is
    /// then answered `405 UNSUPPORTED`, as a stock distribution does. By default (`false`) the
    /// test registries have deletion enabled.
    pub deletion_disabled: bool,
}

impl RegistryOpts {
    pub fn htpasswd(user: &str, pass: &str) -> RegistryOpts {
        RegistryOpts { htpasswd: Some((user.to_string(), pass.to_string())), ..RegistryOpts::default() }
    }

    /// A registry that refuses deletion (`405 UNSUPPORTED`).
    pub fn without_deletion() -> RegistryOpts {
        RegistryOpts { deletion_disabled: true, ..RegistryOpts::default() }
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
    pub fn is_delete(&self) -> bool {
        self.method == "DELETE"
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
    /// The `docker-registry` process id (for the benchmark's CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A registry with deletion enabled (`storage.delete.enabled: true`), as every test registry
    /// has unless [`RegistryOpts::deletion_disabled`] is set.
    pub fn start() -> Registry {
        Registry::start_with(RegistryOpts::default())
    }

    /// [`Registry::start`], named for tests that delete: manifests and blobs can be deleted
    /// through the API (`DELETE` by digest answers `202`).
    pub fn start_with_deletion() -> Registry {
        Registry::start_with(RegistryOpts::default())
    }

    /// A registry without `storage.delete.enabled`: `DELETE` answers `405 UNSUPPORTED`.
    pub fn start_without_deletion() -> Registry {
        Registry::start_with(RegistryOpts::without_deletion())
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

    /// Where the registry stores the blob `digest` (`sha256:…`) on disk: overwrite it to damage
    /// the blob behind the registry's back.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join("data").join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
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
    let delete = if opts.deletion_disabled { "" } else { "  delete: {enabled: true}\n" };
    let mut config = format!(
        "version: 0.1\n\
         log: {{level: warn, accesslog: {{disabled: false}}}}\n\
         storage:\n  filesystem: {{rootdirectory: \"{}\"}}\n{delete}\
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
