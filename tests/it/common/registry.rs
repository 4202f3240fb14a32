//! [`Registry`]: a real `docker-registry` process on a free port (started by
//! [`super::launch`]), with temp storage, optional htpasswd auth, deletion enabled unless asked
//! otherwise, and its access log parsed into [`Request`]s (what tests count).

use std::fs;
use std::path::{Path, PathBuf};

use super::launch::{base_config, htpasswd_auth, launch, RegistryProcess};
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

/// A `docker-registry` process on 127.0.0.1 with filesystem storage in a temp dir.
pub struct Registry {
    process: RegistryProcess,
    creds: Option<(String, String)>,
    client: Client,
    // Last so that it is removed after the process is gone.
    dir: TestDir,
}

impl Registry {
    /// The `docker-registry` process id (for the benchmark's CPU accounting).
    pub fn pid(&self) -> u32 {
        self.process.pid()
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
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let auth = match &opts.htpasswd {
            Some((user, pass)) => htpasswd_auth(&dir, user, pass),
            None => String::new(),
        };
        let process = launch(&dir, "registry", &agent(), false, |port, instance| {
            let secret = format!("harness-secret-{instance}");
            format!("{}{auth}", base_config(&data, port, &secret, instance, !opts.deletion_disabled))
        });
        let creds = opts.htpasswd.clone();
        let client = Client::new(&format!("127.0.0.1:{}", process.port), creds.clone());
        Registry { process, creds, client, dir }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.process.port)
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

    /// The registry's storage root (`docker/registry/v2/…` inside): what a test inspects to see
    /// what a run left on disk.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The fixture client for this registry, with its credentials when it has htpasswd auth.
    pub fn api(&self) -> &Client {
        &self.client
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.addr(), None)
    }

    /// The auth-file entry for this registry: `insecure: true` plus its credentials if any.
    pub fn auth_entry(&self) -> AuthEntry {
        AuthEntry { key: self.addr(), creds: self.creds.clone(), insecure: true, chunked_upload: false }
    }

    pub fn log_path(&self) -> &Path {
        self.process.log.path()
    }

    /// Requests logged since the last [`Registry::clear_requests`] (or since start-up), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.process.log.requests()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        self.process.log.clear()
    }

    /// The writes (`PUT`, `POST`, `PATCH`, `DELETE`) among [`Registry::requests`].
    pub fn writes(&self) -> Vec<Request> {
        self.requests().into_iter().filter(Request::is_write).collect()
    }

    /// (method, path) pairs, as in the brief.
    pub fn request_pairs(&self) -> Vec<(String, String)> {
        self.requests().into_iter().map(|r| (r.method, r.path)).collect()
    }
}
