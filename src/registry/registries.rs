//! All registry clients of a run, created on first use: one per (registry, matching auth key),
//! so that every worker shares its tokens, its learned auth scheme and its connection pool; and
//! one [`Health`] per registry, shared by its clients whatever their credentials.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::auth::Authenticator;
use super::error::transport;
use super::health::Health;
use super::settings::{Auth, Limits, TlsOptions};
use super::transport::TlsFileError;
use super::Client;
use crate::reference::Repository;
use crate::store::ErrorKind;

/// Clients by (registry, matching auth key).
type ClientMap = HashMap<(Arc<str>, Option<String>), Arc<Client>>;

pub struct Registries {
    auth: Auth,
    global_tls: TlsOptions,
    limits: Limits,
    /// One agent per distinct TLS setting, built up front so bad TLS files fail the run early.
    agents: HashMap<TlsOptions, ureq::Agent>,
    clients: Mutex<ClientMap>,
    /// Whether each registry answers, by registry.
    health: Mutex<HashMap<Arc<str>, Arc<Health>>>,
    anonymous_logged: Mutex<HashSet<String>>,
}

impl Registries {
    /// Fails when a CA, certificate or key file cannot be used.
    pub fn new(auth: Auth, global_tls: TlsOptions, limits: Limits, workers: usize) -> Result<Registries, TlsFileError> {
        let mut agents = HashMap::new();
        let profiles = std::iter::once(global_tls.clone())
            .chain(auth.rules().iter().filter(|r| !r.insecure).map(|r| r.tls.merged(&global_tls)));
        for tls in profiles {
            if let std::collections::hash_map::Entry::Vacant(slot) = agents.entry(tls) {
                let agent = super::transport::agent(workers, slot.key(), &limits)?;
                slot.insert(agent);
            }
        }
        Ok(Registries {
            auth,
            global_tls,
            limits,
            agents,
            clients: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            anonymous_logged: Mutex::new(HashSet::new()),
        })
    }

    /// What was learned about each registry's uploads in this run, by registry (the facts of
    /// its clients for different auth keys merged).
    pub fn learned(&self) -> Vec<(String, Vec<(&'static str, String)>)> {
        let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
        let mut by_host: std::collections::BTreeMap<String, Vec<(&'static str, String)>> = Default::default();
        for c in clients {
            let facts = by_host.entry(c.registry.clone()).or_default();
            for (k, v) in c.learned_facts() {
                if !facts.iter().any(|(have, _)| *have == k) {
                    facts.push((k, v));
                }
            }
        }
        by_host.into_iter().filter(|(_, f)| !f.is_empty()).collect()
    }

    /// The client for `repo` on the registry `host`, chosen by the longest matching auth key.
    pub fn client(&self, host: &Arc<str>, repo: &Repository) -> Arc<Client> {
        let rule = self.auth.lookup(repo);
        let key = (host.clone(), rule.map(|r| r.key.clone()));
        if let Some(c) = self.clients.lock().get(&key) {
            return c.clone();
        }
        let tls = rule.map_or_else(|| self.global_tls.clone(), |r| r.tls.merged(&self.global_tls));
        // Every TLS profile got an agent in `new`; plain http uses the global one.
        let agent = self.agents.get(&tls).or_else(|| self.agents.get(&self.global_tls)).cloned();
        let agent = agent.unwrap_or_else(|| unreachable!("the global TLS profile always has an agent"));
        let insecure = match rule {
            Some(r) => r.insecure,
            // As Docker does for its default insecure registries: https when it speaks TLS. Asked
            // without holding the client map, so a slow loopback port delays no one else.
            None if is_loopback(host) => !speaks_tls(&agent, host),
            None => false,
        };
        // A credential helper may be slow: asked before taking the client map, so it delays
        // only the workers that need this registry.
        let credentials = self.auth.credentials(repo);
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        if credentials.is_none() && self.anonymous_logged.lock().insert(repo.to_string()) {
            log::info!("no credentials for {repo}: accessing it anonymously");
        }
        if tls.skip_verify && !insecure {
            log::warn!("{host}: TLS certificates are not verified (skip_tls_verify)");
        }
        let scheme = if insecure { "http" } else { "https" };
        let registry = host;
        let scheme_fix = match (rule, insecure) {
            (Some(r), true) => format!("remove `insecure: true` from auth key {:?}", r.key),
            (Some(r), false) => format!("set `insecure: true` under auth key {:?} if it is plain http", r.key),
            (None, true) => format!("add auth key {registry:?} to the auth file (without `insecure`)"),
            (None, false) => format!("add `{registry}: {{insecure: true}}` to the auth file"),
        };
        let health = self
            .health
            .lock()
            .entry(host.clone())
            .or_insert_with(|| Arc::new(Health::new(host, self.limits.stall_timeout)))
            .clone();
        let client = Arc::new(
            Client::new(
                registry,
                format!("{scheme}://{registry}"),
                agent,
                Authenticator::new(registry, !insecure, credentials, self.limits.stall_timeout),
                self.limits,
                rule.is_some_and(|r| r.chunked_upload),
                scheme_fix,
            )
            .with_health(health),
        );
        clients.insert(key, client.clone());
        client
    }

    /// Another pass begins: each registry that stopped answering may be asked once more.
    pub fn new_pass(&self) {
        for health in self.health.lock().values() {
            health.new_pass();
        }
    }
}

/// Whether the loopback `registry` speaks TLS: one `GET /v2/` over https. Any HTTP answer, or a
/// TLS failure of the certificate kind (it is TLS; the error will say how to trust it), is a
/// yes; a handshake answered in plain http, or no connection at all, is a no.
fn speaks_tls(agent: &ureq::Agent, registry: &str) -> bool {
    let tls = match agent.get(format!("https://{registry}/v2/")).call() {
        Ok(_) => true,
        Err(e) => matches!(transport(registry, "probe", e).kind, ErrorKind::Tls(_)),
    };
    log::debug!("{registry}: no auth key; it {} TLS", if tls { "speaks" } else { "does not speak" });
    tls
}

/// Loopback registries without an auth key are tried over https first (as Docker does).
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

    /// A credential helper that takes a while for `slow.io`.
    struct SlowHelper;
    impl crate::registry::Keychain for SlowHelper {
        fn credentials(&self, registry: &str) -> Option<crate::registry::Credentials> {
            if registry == "slow.io" {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            None
        }
    }

    #[test]
    fn a_slow_credential_helper_holds_up_only_its_registry() {
        let auth = Auth::new(Vec::new(), Box::new(SlowHelper));
        let regs = Registries::new(auth, TlsOptions::default(), Limits::default(), 2).expect("no TLS files");
        let (slow, fast) = (Arc::<str>::from("slow.io"), Arc::<str>::from("fast.io"));
        std::thread::scope(|s| {
            s.spawn(|| regs.client(&slow, &Repository::on_registry("slow.io", "a")));
            std::thread::sleep(std::time::Duration::from_millis(50));
            let started = std::time::Instant::now();
            regs.client(&fast, &Repository::on_registry("fast.io", "b"));
            let waited = started.elapsed();
            assert!(waited < std::time::Duration::from_millis(300), "fast.io waited {waited:?} for slow.io's helper");
        });
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
    }
}
