//! The auth file: `registry` or `registry/namespace` → credentials and transport options,
//! resolved into the registry layer's [`Auth`].
//!
//! Keys keep the Go tool's meaning: the longest key that matches a repository wins, `docker.io`
//! covers Docker Hub, and `insecure: true` means plain http. Optional TLS keys (`ca_file`,
//! `cert_file`/`key_file`, `skip_tls_verify`) are ours. When the file has no credentials for a
//! registry, docker's (or podman's) credential files are asked ([`docker::DockerKeychain`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env::Env;
use super::{docker, ConfigError};
use crate::reference::normalize_registry;
use crate::registry::{Auth, AuthRule, Credentials, TlsOptions};

/// A scalar that users write unquoted (`password: 123456`) still reads as text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Scalar>::deserialize(d)? {
        None => String::new(),
        Some(Scalar::Str(s)) => s,
        Some(Scalar::Int(i)) => i.to_string(),
        Some(Scalar::Float(f)) => f.to_string(),
        Some(Scalar::Bool(b)) => b.to_string(),
    })
}

/// One entry as written in the file.
#[derive(Deserialize, Default, Clone)]
pub struct AuthEntry {
    #[serde(default, deserialize_with = "scalar_string")]
    pub username: String,
    #[serde(default, deserialize_with = "scalar_string")]
    pub password: String,
    /// Plain http instead of https.
    #[serde(default)]
    pub insecure: bool,
    /// PEM bundle of CAs trusted for this registry, in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Private key (PEM) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<String>,
    /// https without certificate verification (logged as a warning).
    #[serde(default)]
    pub skip_tls_verify: bool,
    /// Upload blobs with PATCH + PUT from the start (registries that refuse one-request
    /// uploads are also detected on the fly).
    #[serde(default)]
    pub chunked_upload: bool,
}

/// The whole file: key → entry.
pub type AuthFile = BTreeMap<String, AuthEntry>;

/// A path from the auth file, relative to the file's own folder.
fn resolve(origin: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        origin.parent().unwrap_or(Path::new("")).join(p)
    }
}

/// Build the registry settings from the file's entries, expanding `${VAR}` in usernames and
/// passwords from `env`. `origin` is the file, for messages and relative paths.
pub fn resolve_auth(file: AuthFile, origin: &Path, env: &Env) -> Result<Auth, ConfigError> {
    let rules = file
        .into_iter()
        .map(|(key, e)| {
            let fail = |message: String| ConfigError::Rule { path: origin.to_path_buf(), rule: key.clone(), message };
            let client_cert = match (&e.cert_file, &e.key_file) {
                (Some(c), Some(k)) => Some((resolve(origin, c), resolve(origin, k))),
                (None, None) => None,
                _ => return Err(fail("cert_file and key_file must be given together".into())),
            };
            let tls = TlsOptions {
                ca_files: e.ca_file.iter().map(|c| resolve(origin, c)).collect(),
                client_cert,
                skip_verify: e.skip_tls_verify,
            };
            if e.insecure && (tls.skip_verify || !tls.ca_files.is_empty() || tls.client_cert.is_some()) {
                log::warn!("auth key {key:?}: insecure (plain http) makes its TLS settings unused");
            }
            let trimmed = key.trim().trim_end_matches('/');
            let (host, ns) = match trimmed.split_once('/') {
                Some((h, n)) => (h, Some(n.to_string())),
                None => (trimmed, None),
            };
            let (username, u_unset) = env.expand(&e.username);
            let (password, p_unset) = env.expand(&e.password);
            for var in u_unset.iter().chain(&p_unset) {
                log::warn!("auth key {key:?}: environment variable {var} is not set");
            }
            let credentials =
                (!username.is_empty() || !password.is_empty()).then_some(Credentials { username, password });
            Ok(AuthRule {
                registry: normalize_registry(host),
                namespace: ns,
                credentials,
                insecure: e.insecure,
                tls,
                chunked_upload: e.chunked_upload,
                key,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Auth::new(rules, Box::new(docker::DockerKeychain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse_repository;

    fn auth_with(yaml: &str, env: &Env) -> Auth {
        resolve_auth(serde_yaml::from_str(yaml).unwrap(), Path::new("/etc/x/auth.yaml"), env).unwrap()
    }

    fn auth(yaml: &str) -> Auth {
        auth_with(yaml, &Env::from_pairs(&[]))
    }

    #[test]
    fn tls_keys() {
        let a = auth("r.io: {ca_file: ca.pem, cert_file: /abs/c.pem, key_file: k.pem, skip_tls_verify: true}\n");
        let t = &a.rules()[0].tls;
        assert_eq!(t.ca_files, [PathBuf::from("/etc/x/ca.pem")]);
        assert_eq!(t.client_cert, Some((PathBuf::from("/abs/c.pem"), PathBuf::from("/etc/x/k.pem"))));
        assert!(t.skip_verify);
        let global = TlsOptions { ca_files: vec!["/g.pem".into()], client_cert: None, skip_verify: false };
        assert_eq!(t.merged(&global).ca_files.len(), 2);
        let bad: AuthFile = serde_yaml::from_str("r.io: {cert_file: c.pem}\n").unwrap();
        let e = resolve_auth(bad, Path::new("auth.yaml"), &Env::from_pairs(&[])).unwrap_err().to_string();
        assert!(e.contains("auth.yaml") && e.contains("r.io") && e.contains("key_file"), "{e}");
    }

    #[test]
    fn unused_keys_are_found() {
        let a = auth("quay.io: {}\nquay.io/typo: {}\nr.io: {}\n");
        let repos = [parse_repository("quay.io/team/app").unwrap()];
        assert_eq!(a.unused_keys(repos.iter()), ["quay.io/typo", "r.io"]);
    }

    #[test]
    fn longest_key_wins() {
        let a =
            auth("quay.io: {username: a, password: p1}\nquay.io/coreos: {username: b, password: p2, insecure: true}\n");
        let r = a.lookup(&parse_repository("quay.io/coreos/x").unwrap()).unwrap();
        assert_eq!((r.key.as_str(), r.insecure), ("quay.io/coreos", true));
        let r = a.lookup(&parse_repository("quay.io/coreosx/x").unwrap()).unwrap();
        assert_eq!(r.key, "quay.io");
        assert!(a.lookup(&parse_repository("ghcr.io/a/b").unwrap()).is_none());
    }

    #[test]
    fn docker_io_key_matches_hub() {
        let a = auth("docker.io: {username: u, password: p}\n");
        assert!(a.lookup(&parse_repository("nginx").unwrap()).is_some());
        assert!(a.lookup(&parse_repository("docker.io/bitnami/redis").unwrap()).is_some());
    }

    #[test]
    fn scalars_and_env() {
        let env = Env::from_pairs(&[("IMAGE_SYNCER_TEST_PW", "s3cret")]);
        let a = auth_with("r.io: {username: 42, password: \"${IMAGE_SYNCER_TEST_PW}\"}\n", &env);
        let c = a.rules()[0].credentials.clone().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("42", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let a = auth("r.io: {insecure: true}\n");
        assert!(a.rules()[0].credentials.is_none());
    }
}
