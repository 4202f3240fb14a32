//! The auth file: `registry` or `registry/namespace` → credentials and transport options.
//!
//! Keys keep the Go tool's meaning: the longest key that matches a repository wins, `docker.io`
//! covers Docker Hub, and `insecure: true` means plain http. Credentials never reach `Debug`
//! output, so a stray `{:?}` cannot leak them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::env;
use crate::reference::{normalize_registry, Repository};

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
}

/// The whole file: key → entry.
pub type AuthFile = BTreeMap<String, AuthEntry>;

/// Username and password, after `${VAR}` expansion. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <redacted> }}", self.username)
    }
}

/// A resolved auth key.
#[derive(Clone, Debug)]
pub struct AuthRule {
    /// The key as written, for messages.
    pub key: String,
    pub registry: String,
    pub namespace: Option<String>,
    pub credentials: Option<Credentials>,
    pub insecure: bool,
}

/// All auth rules, looked up by repository.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    rules: Vec<AuthRule>,
}

impl Auth {
    /// Build from the file's entries, expanding `${VAR}` in usernames and passwords.
    pub fn from_file(file: AuthFile) -> Auth {
        let rules = file
            .into_iter()
            .map(|(key, e)| {
                let trimmed = key.trim().trim_end_matches('/');
                let (host, ns) = match trimmed.split_once('/') {
                    Some((h, n)) => (h, Some(n.to_string())),
                    None => (trimmed, None),
                };
                let (username, u_unset) = env::expand(&e.username);
                let (password, p_unset) = env::expand(&e.password);
                for var in u_unset.iter().chain(&p_unset) {
                    log::warn!("auth key {key:?}: environment variable {var} is not set");
                }
                let credentials =
                    (!username.is_empty() || !password.is_empty()).then_some(Credentials { username, password });
                AuthRule { registry: normalize_registry(host), namespace: ns, credentials, insecure: e.insecure, key }
            })
            .collect();
        Auth { rules }
    }

    /// The longest key matching `repo`: `registry/namespace` beats `registry`.
    pub fn lookup(&self, repo: &Repository) -> Option<&AuthRule> {
        self.rules
            .iter()
            .filter(|r| r.registry == repo.registry)
            .filter(|r| match &r.namespace {
                None => true,
                Some(ns) => repo.name == *ns || repo.name.starts_with(&format!("{ns}/")),
            })
            .max_by_key(|r| r.namespace.as_ref().map_or(0, |n| n.len() + 1))
    }

    pub fn rules(&self) -> &[AuthRule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse_repository;

    fn auth(yaml: &str) -> Auth {
        Auth::from_file(serde_yaml::from_str(yaml).unwrap())
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
        std::env::set_var("IMAGE_SYNCER_TEST_PW", "s3cret");
        let a = auth("r.io: {username: 42, password: \"${IMAGE_SYNCER_TEST_PW}\"}\n");
        let c = a.rules()[0].credentials.clone().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("42", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let a = auth("r.io: {insecure: true}\n");
        assert!(a.rules()[0].credentials.is_none());
    }
}
