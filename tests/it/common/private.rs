//! Auth files for the private-registry tests (`tls`, `token_auth`, `credentials`): [`AuthKey`]
//! renders one key with its TLS fields, and [`PrivateJob`] runs the syncer with an isolated
//! credential environment (no host `~/.docker/config.json` or podman `auth.json`).

use std::path::{Path, PathBuf};

use crate::common::{images_yaml, p, yaml_str as q, Run, Running, TestDir, RUN_LIMIT};

/// One key of an auth file, with its fields rendered as YAML.
#[derive(Clone, Debug)]
pub struct AuthKey {
    pub key: String,
    fields: Vec<(String, String)>,
}

impl AuthKey {
    pub fn new(key: &str) -> AuthKey {
        AuthKey { key: key.to_string(), fields: Vec::new() }
    }

    /// A raw `name: value` (value already YAML).
    pub fn field(mut self, name: &str, yaml_value: &str) -> AuthKey {
        self.fields.push((name.to_string(), yaml_value.to_string()));
        self
    }

    pub fn creds(self, user: &str, pass: &str) -> AuthKey {
        self.field("username", &q(user)).field("password", &q(pass))
    }

    pub fn insecure(self) -> AuthKey {
        self.field("insecure", "true")
    }

    pub fn ca_file(self, path: &str) -> AuthKey {
        self.field("ca_file", &q(path))
    }

    pub fn client_cert(self, cert: &str, key: &str) -> AuthKey {
        self.field("cert_file", &q(cert)).field("key_file", &q(key))
    }

    pub fn skip_tls_verify(self) -> AuthKey {
        self.field("skip_tls_verify", "true")
    }
}

/// An auth file in YAML. A key without fields is written as `KEY: {}`.
pub fn auth_text(keys: &[AuthKey]) -> String {
    let mut out = String::new();
    for k in keys {
        if k.fields.is_empty() {
            out.push_str(&format!("{}: {{}}\n", q(&k.key)));
            continue;
        }
        out.push_str(&format!("{}:\n", q(&k.key)));
        for (name, value) in &k.fields {
            out.push_str(&format!("  {name}: {value}\n"));
        }
    }
    out
}

/// A temp dir with `auth.yaml`, `images.yaml`, an empty docker config dir and no podman auth
/// file, so runs never pick up the host's credentials unless a test puts some there.
pub struct PrivateJob {
    pub dir: TestDir,
    pub auth: PathBuf,
    pub images: PathBuf,
    /// `$DOCKER_CONFIG` for the run (empty unless the test writes `config.json` in it).
    pub docker_config: PathBuf,
    /// `$REGISTRY_AUTH_FILE` for the run (absent unless the test writes it).
    pub podman_auth: PathBuf,
}

impl PrivateJob {
    pub fn new(keys: &[AuthKey], rules: &[(&str, &[&str])]) -> PrivateJob {
        let dir = TestDir::new("private-job");
        let auth = dir.write("auth.yaml", &auth_text(keys));
        let images = dir.write("images.yaml", &images_yaml(rules));
        let docker_config = dir.join("docker");
        std::fs::create_dir_all(&docker_config).expect("create docker config dir");
        let podman_auth = dir.join("podman-auth.json");
        PrivateJob { dir, auth, images, docker_config, podman_auth }
    }

    /// Writes `name` in the job folder (next to the auth file) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        self.dir.write(name, contents)
    }

    /// Copies a file into the job folder under `name` (for relative paths in the auth file).
    pub fn copy_in(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.dir.join(name);
        std::fs::copy(from, &to).expect("copy into job dir");
        to
    }

    /// Writes docker's `config.json` with `auths` for `(registry, user, pass)` entries.
    pub fn docker_login(&self, logins: &[(&str, &str, &str)]) {
        std::fs::write(self.docker_config.join("config.json"), auths_json(logins)).expect("write config.json");
    }

    /// Writes podman's `auth.json` (`$REGISTRY_AUTH_FILE`).
    pub fn podman_login(&self, logins: &[(&str, &str, &str)]) {
        std::fs::write(&self.podman_auth, auths_json(logins)).expect("write auth.json");
    }

    /// [`PrivateJob::run_env`] without extra environment variables.
    pub fn run(&self, extra: &[&str]) -> Run {
        self.run_env(extra, &[])
    }

    /// [`PrivateJob::run`], failing the test if the run takes longer than `secs` seconds.
    pub fn run_within(&self, secs: u64, extra: &[&str]) -> Run {
        self.run_env_within(secs, extra, &[])
    }

    /// Runs with `--auth A --images I` + `extra`, the isolated credential environment, and `envs`,
    /// killed after [`RUN_LIMIT`].
    pub fn run_env(&self, extra: &[&str], envs: &[(&str, &str)]) -> Run {
        self.run_env_within(RUN_LIMIT.as_secs(), extra, envs)
    }

    /// [`PrivateJob::run_env`], failing the test if the run takes longer than `secs` seconds.
    pub fn run_env_within(&self, secs: u64, extra: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut args = vec!["--auth", p(&self.auth), "--images", p(&self.images)];
        args.extend_from_slice(extra);
        let mut all: Vec<(&str, &str)> = vec![
            ("DOCKER_CONFIG", p(&self.docker_config)),
            ("REGISTRY_AUTH_FILE", p(&self.podman_auth)),
            ("XDG_RUNTIME_DIR", p(self.dir.path())),
            ("HOME", p(self.dir.path())),
        ];
        all.extend_from_slice(envs);
        Running::spawn(&args, &all).wait(std::time::Duration::from_secs(secs))
    }
}

/// `{"auths": {REGISTRY: {"auth": base64(user:pass)}}}`
pub fn auths_json(logins: &[(&str, &str, &str)]) -> String {
    let mut auths = serde_json::Map::new();
    for (registry, user, pass) in logins {
        let auth = crate::common::base64(format!("{user}:{pass}").as_bytes());
        auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    }
    serde_json::to_string_pretty(&serde_json::json!({ "auths": auths })).unwrap()
}
