//! What the client needs to know about each registry, as plain types the registry layer owns:
//! credentials, TLS files, plain http, upload style, and the transfer limits of the run.
//!
//! The config layer reads the auth file, expands variables and resolves paths into these; the
//! client never sees a file format. Credentials the auth file lacks come from a [`Keychain`]
//! (in go-containerregistry's terms, an authenticator), which the config layer supplies — so
//! docker's and podman's credential files stay out of this layer too.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::reference::Repository;
use crate::slots::Slots;

/// Username and password. `Debug` hides the password, so a stray `{:?}` cannot leak it.
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

/// TLS settings of a registry; registries with equal settings share one connection pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Extra trusted CA bundles.
    pub ca_files: Vec<PathBuf>,
    /// Client certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
}

impl TlsOptions {
    /// These options, plus the global ones (`--ca-file`, `--skip-tls-verify`).
    pub fn merged(&self, global: &TlsOptions) -> TlsOptions {
        let mut ca_files = global.ca_files.clone();
        ca_files.extend(self.ca_files.iter().cloned());
        TlsOptions {
            ca_files,
            client_cert: self.client_cert.clone().or_else(|| global.client_cert.clone()),
            skip_verify: self.skip_verify || global.skip_verify,
        }
    }
}

/// The settings for one `registry` or `registry/namespace` key.
#[derive(Clone, Debug)]
pub struct AuthRule {
    /// The key as written, for messages.
    pub key: String,
    pub registry: String,
    pub namespace: Option<String>,
    pub credentials: Option<Credentials>,
    /// Plain http.
    pub insecure: bool,
    pub tls: TlsOptions,
    /// Upload blobs in PATCH chunks from the start.
    pub chunked_upload: bool,
}

impl AuthRule {
    /// `true` when this key covers `repo`.
    pub fn matches(&self, repo: &Repository) -> bool {
        repo.location.registry() == Some(&*self.registry)
            && match &self.namespace {
                None => true,
                Some(ns) => *repo.name == **ns || repo.name.starts_with(&format!("{ns}/")),
            }
    }
}

/// Where credentials come from when no rule has them (docker's config, a credential helper…).
pub trait Keychain: Send + Sync {
    fn credentials(&self, registry: &str) -> Option<Credentials>;
}

/// A keychain with nothing in it.
pub struct NoKeychain;

impl Keychain for NoKeychain {
    fn credentials(&self, _: &str) -> Option<Credentials> {
        None
    }
}

/// All rules, looked up by repository, and the keychain behind them.
pub struct Auth {
    rules: Vec<AuthRule>,
    keychain: Box<dyn Keychain>,
    /// The keychain's answers, per registry: asked once (a helper may be slow), in a slot per
    /// registry, so a slow helper holds up only the workers that need its registry's answer.
    asked: Slots<String, Option<Credentials>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl Default for Auth {
    fn default() -> Auth {
        Auth::new(Vec::new(), Box::new(NoKeychain))
    }
}

impl Auth {
    pub fn new(rules: Vec<AuthRule>, keychain: Box<dyn Keychain>) -> Auth {
        Auth { rules, keychain, asked: Slots::default() }
    }

    /// The longest key matching `repo`: `registry/namespace` beats `registry`.
    pub fn lookup(&self, repo: &Repository) -> Option<&AuthRule> {
        self.rules.iter().filter(|r| r.matches(repo)).max_by_key(|r| r.namespace.as_ref().map_or(0, |n| n.len() + 1))
    }

    /// Credentials for `repo`: the matching rule's, else the keychain's.
    pub fn credentials(&self, repo: &Repository) -> Option<Credentials> {
        if let Some(c) = self.lookup(repo).and_then(|r| r.credentials.clone()) {
            return Some(c);
        }
        let registry = repo.location.registry()?;
        let Ok(asked) = self.asked.get_or_fill::<std::convert::Infallible>(&registry.to_string(), || {
            Ok(Some(self.keychain.credentials(registry)))
        });
        asked.flatten()
    }

    pub fn rules(&self) -> &[AuthRule] {
        &self.rules
    }

    /// Keys that cover none of `repos`: most likely typos (the Go tool silently went anonymous).
    pub fn unused_keys<'a>(&self, repos: impl Iterator<Item = &'a Repository> + Clone) -> Vec<&str> {
        self.rules.iter().filter(|r| !repos.clone().any(|repo| r.matches(repo))).map(|r| r.key.as_str()).collect()
    }
}

/// How long a transfer may sit still, how slow it may be, and how uploads are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for a response head, and the longest a body read or write may make no
    /// progress. Default 60 s.
    pub stall_timeout: Duration,
    /// Bytes per second, averaged over `stall_timeout`, below which a body transfer counts as
    /// stalled. Default 1 KiB/s.
    pub min_speed: u64,
    /// Size of one PATCH of a chunked upload. Default 64 MiB.
    pub chunk_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { stall_timeout: Duration::from_secs(60), min_speed: 1024, chunk_size: 64 * 1024 * 1024 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse_repository;

    fn rule(key: &str, registry: &str, namespace: Option<&str>) -> AuthRule {
        AuthRule {
            key: key.into(),
            registry: registry.into(),
            namespace: namespace.map(Into::into),
            credentials: None,
            insecure: false,
            tls: TlsOptions::default(),
            chunked_upload: false,
        }
    }

    struct OneKey;
    impl Keychain for OneKey {
        fn credentials(&self, registry: &str) -> Option<Credentials> {
            (registry == "k.io").then(|| Credentials { username: "u".into(), password: "p".into() })
        }
    }

    #[test]
    fn longest_key_and_keychain() {
        let auth =
            Auth::new(vec![rule("q.io", "q.io", None), rule("q.io/team", "q.io", Some("team"))], Box::new(OneKey));
        assert_eq!(auth.lookup(&parse_repository("q.io/team/x").unwrap()).unwrap().key, "q.io/team");
        assert_eq!(auth.lookup(&parse_repository("q.io/teamx/x").unwrap()).unwrap().key, "q.io");
        assert!(auth.credentials(&parse_repository("k.io/a/b").unwrap()).is_some());
        assert!(auth.credentials(&parse_repository("q.io/a/b").unwrap()).is_none());
        let c = Credentials { username: "u".into(), password: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
