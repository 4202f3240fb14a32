//! A `docker-registry` launcher for what `common::Registry` cannot configure: `http.tls` (with
//! optional `clientcas` for mTLS), htpasswd over TLS, and `auth.token`.
//!
//! Each [`SecureRegistry`] is two processes on one filesystem storage: the *secured* one the
//! syncer talks to, and a plain-http, auth-free *twin* that the tests use (through
//! `common::Client`) to push fixtures and read results. Both serve the same storage, so what the
//! syncer wrote through the secured registry is what the twin reads, and the shared fixture
//! builders and assertions of `tests/it/common` work unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::pki::Pki;
use crate::common::{free_port, parse_access_line, unique_seed, Client, Request, TestDir};

/// Token-auth settings (`auth.token`).
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

/// What the secured registry requires.
#[derive(Clone, Debug, Default)]
pub struct SecureOpts {
    /// Serve https with the PKI's server certificate.
    pub tls: bool,
    /// Require client certificates signed by the PKI's CA (`http.tls.clientcas`); implies `tls`.
    pub client_certs: bool,
    /// htpasswd Basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Bearer token auth.
    pub token: Option<TokenAuth>,
}

struct Proc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A secured registry plus its plain twin on the same storage. Both processes are killed on drop.
pub struct SecureRegistry {
    secured: Option<Proc>,
    twin: Option<Proc>,
    https: bool,
    /// Agent for the secured process (markers): no verification, client cert when needed.
    agent: ureq::Agent,
    log_offset: Mutex<u64>,
    sentinel: AtomicU64,
    twin_client: Client,
    // Last: removed after the processes are gone.
    dir: TestDir,
}

const SENTINEL: &str = "private-harness-sync";

impl SecureRegistry {
    /// A registry without TLS (token or htpasswd auth over plain http).
    pub fn start(opts: SecureOpts) -> SecureRegistry {
        assert!(!opts.tls && !opts.client_certs, "TLS needs a PKI: use start_tls");
        SecureRegistry::launch_all(None, opts)
    }

    /// A registry serving https with `pki`'s server certificate.
    pub fn start_tls(pki: &Pki, opts: SecureOpts) -> SecureRegistry {
        SecureRegistry::launch_all(Some(pki), opts)
    }

    fn launch_all(pki: Option<&Pki>, opts: SecureOpts) -> SecureRegistry {
        let dir = TestDir::new("secure-registry");
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let secret = format!("private-secret-{:x}", unique_seed());
        let https = opts.tls || opts.client_certs;

        // The twin: plain http, no auth.
        let twin =
            launch(&dir, "twin", &plain_agent(), false, |port, instance| base_config(&data, port, &secret, instance));

        // The secured one.
        let mut extra_http = String::new();
        if let (true, Some(pki)) = (https, pki) {
            extra_http.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(&pki.server_cert),
                q(&pki.server_key)
            ));
            if opts.client_certs {
                extra_http.push_str(&format!("    clientcas: [{}]\n", q(&pki.ca_cert)));
            }
        }
        let mut auth = String::new();
        if let Some((user, pass)) = &opts.htpasswd {
            let out =
                Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let path = dir.write("htpasswd", String::from_utf8(out.stdout).expect("htpasswd output").trim());
            auth = format!("auth:\n  htpasswd: {{realm: test, path: {}}}\n", q(&path));
        }
        if let Some(t) = &opts.token {
            assert!(auth.is_empty(), "one auth method at a time");
            auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                json(&t.realm),
                json(&t.service),
                json(&t.issuer),
                q(&t.rootcertbundle)
            );
        }
        let agent = secure_agent(if opts.client_certs { pki } else { None });
        let secured = launch(&dir, "secured", &agent, https, |port, instance| {
            format!("{}{extra_http}{auth}", base_config(&data, port, &secret, instance))
        });
        let twin_client = Client::new(&format!("127.0.0.1:{}", twin.port), None);
        let reg = SecureRegistry {
            secured: Some(secured),
            twin: Some(twin),
            https,
            agent,
            log_offset: Mutex::new(0),
            sentinel: AtomicU64::new(0),
            twin_client,
            dir,
        };
        reg.clear_requests();
        reg
    }

    fn secured(&self) -> &Proc {
        self.secured.as_ref().expect("running")
    }

    /// "127.0.0.1:PORT" of the secured registry (what the syncer is given).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.secured().port)
    }

    pub fn port(&self) -> u16 {
        self.secured().port
    }

    /// "127.0.0.1:PORT/REPO" on the secured registry.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}", self.addr(), repo)
    }

    /// A plain, auth-free client of the twin: for fixtures and assertions.
    pub fn api(&self) -> &Client {
        &self.twin_client
    }

    /// The secured registry's log (access log and errors), for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.secured().log).unwrap_or_default()
    }

    /// Requests the secured registry logged since the last [`Self::clear_requests`].
    pub fn requests(&self) -> Vec<Request> {
        self.sync_log();
        let start = *self.log_offset.lock().unwrap() as usize;
        let bytes = fs::read(&self.secured().log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[start.min(bytes.len())..]).to_string();
        text.lines().filter_map(parse_access_line).filter(|r| !r.query.starts_with(SENTINEL)).collect()
    }

    pub fn clear_requests(&self) {
        self.sync_log();
        let len = fs::metadata(&self.secured().log).map(|m| m.len()).unwrap_or(0);
        *self.log_offset.lock().unwrap() = len;
    }

    /// Makes a marker request and waits for it in the access log, so that every request answered
    /// before is in the file (the same technique as `common::Registry`).
    fn sync_log(&self) {
        let n = self.sentinel.fetch_add(1, Ordering::SeqCst);
        let marker = format!("/v2/?{SENTINEL}={n}");
        let scheme = if self.https { "https" } else { "http" };
        let _ = self.agent.get(&format!("{scheme}://{}{marker}", self.addr())).call();
        let needle = format!(" {marker} HTTP/");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.log_text();
            if text.contains(&needle) {
                thread::sleep(Duration::from_millis(50));
                return;
            }
            assert!(Instant::now() < deadline, "marker {marker} never appeared in the access log:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SecureRegistry {
    fn drop(&mut self) {
        // Kill both processes before `dir` (their storage) is removed.
        drop(self.secured.take());
        drop(self.twin.take());
    }
}

/// A path as a YAML (JSON-compatible) double-quoted string.
fn q(path: &Path) -> String {
    json(path.to_str().expect("utf-8 path"))
}

fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Everything but `http.tls` and `auth`; `http:` is the last section so that `tls:` can follow.
fn base_config(data: &Path, port: u16, secret: &str, instance: &str) -> String {
    format!(
        "version: 0.1\n\
         log: {{level: warn, accesslog: {{disabled: false}}}}\n\
         storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n  \
         headers:\n    X-Private-Instance: [\"{instance}\"]\n",
        q(data)
    )
}

fn plain_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// An https agent that does not verify the server (the launcher only needs to reach it) and
/// presents the PKI's client certificate when given one.
fn secure_agent(client: Option<&Pki>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, TlsConfig};
    let client_cert = client.map(|pki| {
        let cert = Certificate::from_pem(&fs::read(&pki.client_cert).unwrap()).expect("client cert PEM").to_owned();
        let key = PrivateKey::from_pem(&fs::read(&pki.client_key).unwrap()).expect("client key PEM").to_owned();
        ClientCert::new_with_certs(&[cert], key)
    });
    let tls = TlsConfig::builder().disable_verification(true).client_cert(client_cert).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .into()
}

/// Starts `docker-registry serve` with the config `make(port, instance)` (which must send the
/// `X-Private-Instance: instance` header) on a free port, retrying a few times when the port is
/// taken. Waits until `/v2/` answers (200 or 401) with our instance header.
fn launch(dir: &TestDir, name: &str, agent: &ureq::Agent, https: bool, make: impl Fn(u16, &str) -> String) -> Proc {
    let mut last_log = String::new();
    for attempt in 0..5 {
        let port = free_port();
        let instance = format!("{:016x}", unique_seed());
        let config = make(port, &instance);
        let config_path = dir.write(&format!("{name}-{attempt}.yml"), &config);
        let log = dir.join(&format!("{name}-{port}.log"));
        let file = fs::File::create(&log).expect("create registry log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log fd"))
            .stderr(file)
            .spawn()
            .expect("spawn docker-registry (is /usr/bin/docker-registry installed?)");
        let scheme = if https { "https" } else { "http" };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                last_log = format!("config:\n{config}\nlog:\n{}", fs::read_to_string(&log).unwrap_or_default());
                break;
            }
            if let Ok(resp) = agent.get(&format!("{scheme}://127.0.0.1:{port}/v2/")).call() {
                let ours =
                    resp.headers().get("X-Private-Instance").and_then(|v| v.to_str().ok()) == Some(instance.as_str());
                let code = resp.status().as_u16();
                if ours && (code == 200 || code == 401) {
                    return Proc { child, port, log };
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_log = format!("config:\n{config}\nlog:\n{}", fs::read_to_string(&log).unwrap_or_default());
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("docker-registry ({name}) did not start; last attempt:\n{last_log}");
}
