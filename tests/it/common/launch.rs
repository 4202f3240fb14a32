//! The one `docker-registry` launcher, shared by [`super::Registry`] and
//! [`super::secure::SecureRegistry`]: writes the config, starts the process on a free port
//! (retrying when the port was taken meanwhile), waits until `/v2/` answers with this instance's
//! header, and reads its access log into [`Request`]s.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::{header, unique_seed, yaml_str, TestDir};

/// The header every harness registry sends with its instance id, so that the launcher knows the
/// process answering on the port is the one it started, not another test's.
const INSTANCE_HEADER: &str = "X-Harness-Instance";

/// The query parameter of the marker requests [`AccessLog`] makes; left out of its requests.
const SENTINEL: &str = "harness-sync";

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

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A registry config up to its `http` section, which comes last so that `tls:` can follow it,
/// then an `auth:` section: filesystem storage in `data` (deletion enabled when `delete`), the
/// access log on, `secret` to sign upload state, and [`INSTANCE_HEADER`] with `instance` on
/// every answer.
pub fn base_config(data: &Path, port: u16, secret: &str, instance: &str, delete: bool) -> String {
    let delete = if delete { "  delete: {enabled: true}\n" } else { "" };
    format!(
        "version: 0.1\n\
         log: {{level: warn, accesslog: {{disabled: false}}}}\n\
         storage:\n  filesystem: {{rootdirectory: {}}}\n{delete}\
         http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n  \
         headers:\n    {INSTANCE_HEADER}: [\"{instance}\"]\n",
        yaml_str(data.to_str().expect("utf-8 path"))
    )
}

/// The `auth:` section of htpasswd Basic auth for `user` / `pass` (the file written in `dir`).
pub fn htpasswd_auth(dir: &TestDir, user: &str, pass: &str) -> String {
    let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("run htpasswd (apache2-utils)");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    let path = dir.write("htpasswd", String::from_utf8(out.stdout).expect("htpasswd output").trim());
    format!("auth:\n  htpasswd: {{realm: test, path: {}}}\n", yaml_str(path.to_str().expect("utf-8 path")))
}

/// A running `docker-registry`; killed (and reaped) on drop.
pub struct RegistryProcess {
    child: Child,
    pub port: u16,
    pub log: AccessLog,
}

impl RegistryProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `docker-registry serve` in `dir` (files named after `name`) with the config
/// `make(port, instance)`, which must start with [`base_config`] for `port` and `instance`. Waits
/// until `/v2/` answers (200 or 401) with this instance's header, through `agent`, over https
/// when `https`; tries five free ports before it gives up and panics with the last log.
pub fn launch(
    dir: &TestDir,
    name: &str,
    agent: &ureq::Agent,
    https: bool,
    make: impl Fn(u16, &str) -> String,
) -> RegistryProcess {
    let scheme = if https { "https" } else { "http" };
    let mut last_log = String::new();
    for _attempt in 0..5 {
        let port = free_port();
        let instance = format!("{:016x}", unique_seed());
        let config = make(port, &instance);
        let config_path = dir.write(&format!("{name}-{port}.yml"), &config);
        let log_path = dir.join(&format!("{name}-{port}.log"));
        let file = fs::File::create(&log_path).expect("create registry log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log fd"))
            .stderr(file)
            .spawn()
            .expect("spawn docker-registry (is /usr/bin/docker-registry installed?)");
        let base = format!("{scheme}://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Ok(resp) = agent.get(&format!("{base}/v2/")).call() {
                let ours = header(&resp, INSTANCE_HEADER).as_deref() == Some(&instance[..]);
                let code = resp.status().as_u16();
                if ours && (code == 200 || code == 401) {
                    let log = AccessLog::new(log_path, base, agent.clone());
                    return RegistryProcess { child, port, log };
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        last_log = format!("config:\n{config}\nlog:\n{}", fs::read_to_string(&log_path).unwrap_or_default());
    }
    panic!("docker-registry ({name}) did not start; last attempt:\n{last_log}");
}

/// A registry's access log, read from a position on: what the tests count.
pub struct AccessLog {
    path: PathBuf,
    /// `scheme://127.0.0.1:PORT`, and an agent that can reach it: for the marker requests.
    base: String,
    agent: ureq::Agent,
    offset: Mutex<u64>,
    sentinel: AtomicU64,
}

impl AccessLog {
    fn new(path: PathBuf, base: String, agent: ureq::Agent) -> AccessLog {
        let log = AccessLog { path, base, agent, offset: Mutex::new(0), sentinel: AtomicU64::new(0) };
        log.clear();
        log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole log (access log and error lines) as text, for failure messages.
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Requests logged since the last [`AccessLog::clear`] (or since start-up), in order. The
    /// marker requests are left out.
    pub fn requests(&self) -> Vec<Request> {
        self.sync();
        let start = *self.offset.lock().unwrap() as usize;
        let bytes = fs::read(&self.path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[start.min(bytes.len())..]).to_string();
        text.lines().filter_map(parse_access_line).filter(|r| !r.query.starts_with(SENTINEL)).collect()
    }

    /// Forgets the requests logged so far.
    pub fn clear(&self) {
        self.sync();
        let len = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        *self.offset.lock().unwrap() = len;
    }

    /// Makes a marker request and waits until it appears in the log, so that every request
    /// answered before this call is in the file.
    fn sync(&self) {
        let n = self.sentinel.fetch_add(1, Ordering::SeqCst);
        let marker = format!("/v2/?{SENTINEL}={n}");
        let _ = self.agent.get(&format!("{}{marker}", self.base)).call();
        let needle = format!(" {marker} HTTP/");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text();
            if text.contains(&needle) {
                // Give any request whose log line is being written concurrently a moment.
                thread::sleep(Duration::from_millis(50));
                return;
            }
            assert!(Instant::now() < deadline, "marker {marker} never appeared in the access log:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}
