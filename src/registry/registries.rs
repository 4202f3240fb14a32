//! All clients of a run, created on first use: one per (registry, matching auth key), so that
//! every worker shares its tokens, its learned auth scheme and its connection pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::auth::Authenticator;
use super::settings::{Auth, Limits, TlsOptions};
use super::{transport, Client};
use crate::reference::Repository;

/// Clients by (registry, matching auth key).
type ClientMap = HashMap<(String, Option<String>), Arc<Client>>;

pub struct Registries {
    auth: Auth,
    global_tls: TlsOptions,
    limits: Limits,
    /// One agent per distinct TLS setting, built up front so bad TLS files fail the run early.
    agents: HashMap<TlsOptions, ureq::Agent>,
    clients: Mutex<ClientMap>,
    anonymous_logged: Mutex<HashSet<String>>,
}

impl Registries {
    /// Fails when a CA, certificate or key file cannot be used.
    pub fn new(auth: Auth, global_tls: TlsOptions, limits: Limits, workers: usize) -> Result<Registries, String> {
        let mut agents = HashMap::new();
        let profiles = std::iter::once(global_tls.clone())
            .chain(auth.rules().iter().filter(|r| !r.insecure).map(|r| r.tls.merged(&global_tls)));
        for tls in profiles {
            if let std::collections::hash_map::Entry::Vacant(slot) = agents.entry(tls) {
                let agent = transport::agent(workers, slot.key(), &limits)?;
                slot.insert(agent);
            }
        }
        Ok(Registries {
            auth,
            global_tls,
            limits,
            agents,
            clients: Mutex::new(HashMap::new()),
            anonymous_logged: Mutex::new(HashSet::new()),
        })
    }

    /// The client for `repo`, chosen by the longest matching auth key.
    pub fn client(&self, repo: &Repository) -> Arc<Client> {
        let rule = self.auth.lookup(repo);
        let key = (repo.registry.clone(), rule.map(|r| r.key.clone()));
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let credentials = self.auth.credentials(repo);
        if credentials.is_none() && self.anonymous_logged.lock().insert(repo.to_string()) {
            log::info!("no credentials for {repo}: accessing it anonymously");
        }
        let insecure = match rule {
            Some(r) => r.insecure,
            None => is_loopback(&repo.registry),
        };
        let tls = rule.map_or_else(|| self.global_tls.clone(), |r| r.tls.merged(&self.global_tls));
        if tls.skip_verify && !insecure {
            log::warn!("{}: TLS certificates are not verified (skip_tls_verify)", repo.registry);
        }
        let scheme = if insecure { "http" } else { "https" };
        // Every TLS profile got an agent in `new`; plain http uses the global one.
        let agent = self.agents.get(&tls).or_else(|| self.agents.get(&self.global_tls)).cloned();
        let client = Arc::new(Client::new(
            &repo.registry,
            format!("{scheme}://{}", repo.registry),
            agent.unwrap_or_else(|| unreachable!("the global TLS profile always has an agent")),
            Authenticator::new(&repo.registry, credentials, self.limits.stall_timeout),
            self.limits,
            rule.is_some_and(|r| r.chunked_upload),
        ));
        clients.insert(key, client.clone());
        client
    }
}

/// Loopback registries are plain http unless the auth file says otherwise (as Docker does).
fn is_loopback(registry: &str) -> bool {
    let host =
        registry
            .rsplit_once(':')
            .map_or(registry, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { registry });
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
    }
}
