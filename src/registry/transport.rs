//! The one HTTP agent every registry client shares: TLS roots, connection pool, timeouts,
//! proxy. Redirects are not followed here: [`super::Client`] follows them itself so that the
//! `Authorization` header never travels to another origin.

use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

/// Build the agent. `workers` sizes the idle-connection pool so every worker keeps its
/// connections to a registry alive between requests.
pub fn agent(workers: usize) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .max_idle_connections(workers * 4 + 4)
        .max_idle_connections_per_host(workers + 2)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(600)))
        .user_agent(concat!("image-syncer/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(system_roots()).build())
        .build()
        .into()
}

/// The host's trust store (so a CA installed on the host just works), or the bundled Mozilla
/// roots when the host has none (minimal containers).
fn system_roots() -> RootCerts {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        log::debug!("no system CA certificates found; using the bundled Mozilla roots");
        return RootCerts::WebPki;
    }
    RootCerts::from(found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()))
}
