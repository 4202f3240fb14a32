//! HTTP agents: TLS roots and client certificates, connection pool, timeouts, proxy.
//!
//! Registries with the same TLS settings share one agent (and so one connection pool).
//!
//! No request can hang: the response head has a deadline and every socket read and write an
//! idle limit ([`Limits::stall_timeout`]); the body as a whole has none, so a huge layer that
//! keeps moving is never cut (a trickle is caught by the minimum speed, see `blobs`).
//! Redirects are not followed here: [`super::Client`] follows them itself so that the
//! `Authorization` header never travels to another origin.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::Agent;

use super::settings::{Limits, TlsOptions};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The write buffer of each connection. Every connection (in use or idle in the pool) holds
/// its buffers, so they are what memory grows by per worker. Measured on the 2-core dev
/// machine, release build, two local registries, both buffers the same size: a 200 MiB layer
/// copied in 1.50 s (median of 6) with 32 KiB against 1.47 s (9) with ureq's default 128 KiB
/// and 1.74 s (5) with 16 KiB; 64 small images at `--proc 64` peaked at 17.8 MiB RSS with
/// 32 KiB against 38.9 MiB with 128 KiB (`--proc 32`: 12.4 against 25.0 MiB). As chosen
/// (64 KiB read, 32 KiB write): the layer in 1.52 s (median of 5), `--proc 8 / 32 / 64` at
/// 7.8 / 13.7 / 21.4 MiB.
const OUTPUT_BUFFER: usize = 32 * 1024;
/// The read buffer: a response head must fit in it whole (ureq does not grow it), so it is as
/// large as the 64 KiB head ureq accepts.
const INPUT_BUFFER: usize = 64 * 1024;

/// A TLS file of the auth file or the flags that cannot be used: the run stops before any
/// request.
#[derive(Debug)]
pub enum TlsFileError {
    /// `key` (`ca_file`, `cert_file`, `key_file`) names a file that cannot be read.
    Unreadable { key: &'static str, path: PathBuf, error: std::io::Error },
    /// A certificate file without a PEM certificate in it.
    NoCertificate { key: &'static str, path: PathBuf },
    /// A key file without a usable PEM private key.
    NoKey { path: PathBuf, message: String },
}

impl fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFileError::Unreadable { key, path, error } => {
                write!(f, "{key} {}: cannot read: {error}", path.display())
            }
            TlsFileError::NoCertificate { key, path } => {
                write!(f, "{key} {}: no PEM certificate in it", path.display())
            }
            TlsFileError::NoKey { path, message } => {
                write!(f, "key_file {}: no usable PEM private key: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for TlsFileError {}

/// Build an agent for `tls`. `workers` sizes the idle-connection pool so every worker keeps its
/// connections to a registry alive between requests. Unreadable TLS files are errors.
pub fn agent(workers: usize, tls: &TlsOptions, limits: &Limits) -> Result<Agent, TlsFileError> {
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
            let pem = std::fs::read(key).map_err(|error| TlsFileError::Unreadable {
                key: "key_file",
                path: key.clone(),
                error,
            })?;
            let key = PrivateKey::from_pem(&pem)
                .map_err(|e| TlsFileError::NoKey { path: key.clone(), message: e.to_string() })?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
    };
    let tls_config = TlsConfig::builder()
        .root_certs(root_certs)
        .client_cert(client_cert)
        .disable_verification(tls.skip_verify)
        .build();
    Ok(Agent::config_builder()
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
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
fn certificates(path: &Path, key: &'static str) -> Result<Vec<Certificate<'static>>, TlsFileError> {
    let pem = std::fs::read(path).map_err(|error| TlsFileError::Unreadable { key, path: path.to_path_buf(), error })?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { key, path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The host's trust store (so a CA installed on the host just works); empty when it has none.
fn system_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect()
}
