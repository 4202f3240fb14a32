//! HTTP agents: TLS roots and client certificates, connection pool, timeouts, proxy.
//!
//! Registries with the same TLS settings share one agent (and so one connection pool).
//!
//! No request can hang: the response head has a deadline and every socket read and write an
//! idle limit ([`Limits::stall_timeout`]); the body as a whole has none, so a huge layer that
//! keeps moving is never cut (a trickle is caught by the minimum speed, see `blobs`).
//! Redirects are not followed here: [`super::Client`] follows them itself so that the
//! `Authorization` header never travels to another origin.

use std::path::Path;
use std::time::Duration;

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use super::settings::{Limits, TlsOptions};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Build an agent for `tls`. `workers` sizes the idle-connection pool so every worker keeps its
/// connections to a registry alive between requests. Unreadable TLS files are errors.
pub fn agent(workers: usize, tls: &TlsOptions, limits: &Limits) -> Result<Agent, String> {
    let mut roots = system_roots();
    for ca in &tls.ca_files {
        let certs = certificates(ca, "ca_file")?;
        roots.extend(certs);
    }
    let root_certs = if roots.is_empty() {
        log::debug!("no system CA certificates found; using the bundled Mozilla roots");
        RootCerts::WebPki
    } else {
        RootCerts::from(roots)
    };
    let client_cert = match &tls.client_cert {
        None => None,
        Some((cert, key)) => {
            let chain = certificates(cert, "cert_file")?;
            let pem = std::fs::read(key).map_err(|e| format!("key_file {}: cannot read: {e}", key.display()))?;
            let key = PrivateKey::from_pem(&pem)
                .map_err(|e| format!("key_file {}: no usable PEM private key: {e}", key.display()))?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
    };
    let tls_config = TlsConfig::builder()
        .root_certs(root_certs)
        .client_cert(client_cert)
        .disable_verification(tls.skip_verify)
        .build();
    Ok(Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .max_idle_connections(workers * 4 + 4)
        .max_idle_connections_per_host(workers + 2)
        .timeout_connect(Some(CONNECT_TIMEOUT.min(limits.stall_timeout)))
        .timeout_recv_response(Some(limits.stall_timeout))
        .timeout_per_read(Some(limits.stall_timeout))
        .timeout_per_write(Some(limits.stall_timeout))
        .user_agent(concat!("image-syncer/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls_config)
        .build()
        .into())
}

/// Every certificate in a PEM file; none is an error.
fn certificates(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The host's trust store (so a CA installed on the host just works); empty when it has none.
fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect()
}
