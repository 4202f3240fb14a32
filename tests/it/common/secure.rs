//! Registries with what `common::Registry` does not configure: `http.tls` (with optional
//! `clientcas` for mTLS), htpasswd over TLS, and `auth.token`; started by the shared launcher
//! ([`crate::common::launch`]).
//!
//! Each [`SecureRegistry`] is two processes on one filesystem storage: the *secured* one the
//! syncer talks to, and a plain-http, auth-free *twin* that the tests use (through
//! `common::Client`) to push fixtures and read results. Both serve the same storage, so what the
//! syncer wrote through the secured registry is what the twin reads, and the shared fixture
//! builders and assertions of `tests/it/common` work unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::launch::{base_config, htpasswd_auth, launch, RegistryProcess};
use crate::common::pki::Pki;
use crate::common::token::{TokenServer, ISSUER, SERVICE};
use crate::common::{agent, agent_config, unique_seed, yaml_str, Client, Request, TestDir};

/// Token-auth settings (`auth.token`).
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

/// What the secured registry requires.
#[derive(Clone, Debug, Default)]
pub struct SecureOpts {
    /// Serve https with the PKI's server certificate.
    pub tls: bool,
    /// Require client certificates signed by the PKI's CA (`http.tls.clientcas`); implies `tls`.
    pub client_certs: bool,
    /// htpasswd Basic auth for this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Bearer token auth.
    pub token: Option<TokenAuth>,
}

/// A secured registry plus its plain twin on the same storage. Both processes are killed on drop.
pub struct SecureRegistry {
    secured: RegistryProcess,
    /// Serves `twin_client`; killed on drop.
    _twin: RegistryProcess,
    twin_client: Client,
    /// The storage and config files. Last: removed after both processes are gone (fields drop
    /// in this order).
    _dir: TestDir,
}

impl SecureRegistry {
    /// A registry without TLS (token or htpasswd auth over plain http).
    pub fn start(opts: SecureOpts) -> SecureRegistry {
        assert!(!opts.tls && !opts.client_certs, "TLS needs a PKI: use start_tls");
        SecureRegistry::launch_all(None, opts)
    }

    /// A registry serving https with `pki`'s server certificate.
    pub fn start_tls(pki: &Pki, opts: SecureOpts) -> SecureRegistry {
        SecureRegistry::launch_all(Some(pki), opts)
    }

    /// A registry serving https with `pki`'s certificate, whose tokens come from `server` (a
    /// plain-http realm).
    pub fn https_with_tokens(pki: &Pki, server: &TokenServer) -> SecureRegistry {
        let token = TokenAuth {
            realm: server.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: server.rootcertbundle().to_path_buf(),
        };
        SecureRegistry::start_tls(pki, SecureOpts { tls: true, token: Some(token), ..SecureOpts::default() })
    }

    fn launch_all(pki: Option<&Pki>, opts: SecureOpts) -> SecureRegistry {
        let dir = TestDir::new("secure-registry");
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let secret = format!("private-secret-{:x}", unique_seed());
        let https = opts.tls || opts.client_certs;

        // The twin: plain http, no auth.
        let twin =
            launch(&dir, "twin", &agent(), false, |port, instance| base_config(&data, port, &secret, instance, true));

        // The secured one.
        let mut extra_http = String::new();
        if let (true, Some(pki)) = (https, pki) {
            extra_http.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(&pki.server_cert),
                q(&pki.server_key)
            ));
            if opts.client_certs {
                extra_http.push_str(&format!("    clientcas: [{}]\n", q(&pki.ca_cert)));
            }
        }
        let mut auth = String::new();
        if let Some((user, pass)) = &opts.htpasswd {
            auth = htpasswd_auth(&dir, user, pass);
        }
        if let Some(t) = &opts.token {
            assert!(auth.is_empty(), "one auth method at a time");
            auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                yaml_str(&t.realm),
                yaml_str(&t.service),
                yaml_str(&t.issuer),
                q(&t.rootcertbundle)
            );
        }
        let agent = secure_agent(if opts.client_certs { pki } else { None });
        let secured = launch(&dir, "secured", &agent, https, |port, instance| {
            format!("{}{extra_http}{auth}", base_config(&data, port, &secret, instance, true))
        });
        let twin_client = Client::new(&format!("127.0.0.1:{}", twin.port), None);
        SecureRegistry { secured, _twin: twin, twin_client, _dir: dir }
    }

    /// "127.0.0.1:PORT" of the secured registry (what the syncer is given).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.secured.port)
    }

    pub fn port(&self) -> u16 {
        self.secured.port
    }

    /// "127.0.0.1:PORT/REPO" on the secured registry.
    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}", self.addr(), repo)
    }

    /// A plain, auth-free client of the twin: for fixtures and assertions.
    pub fn api(&self) -> &Client {
        &self.twin_client
    }

    /// The secured registry's log (access log and errors), for failure messages.
    pub fn log_text(&self) -> String {
        self.secured.log.text()
    }

    /// Requests the secured registry logged since the last [`Self::clear_requests`].
    pub fn requests(&self) -> Vec<Request> {
        self.secured.log.requests()
    }
}

/// A path as a YAML (JSON-compatible) double-quoted string.
fn q(path: &Path) -> String {
    yaml_str(path.to_str().expect("utf-8 path"))
}

/// An https agent that does not verify the server (the launcher only needs to reach it) and
/// presents the PKI's client certificate when given one.
fn secure_agent(client: Option<&Pki>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, TlsConfig};
    let client_cert = client.map(|pki| {
        let cert = Certificate::from_pem(&fs::read(&pki.client_cert).unwrap()).expect("client cert PEM").to_owned();
        let key = PrivateKey::from_pem(&fs::read(&pki.client_key).unwrap()).expect("client key PEM").to_owned();
        ClientCert::new_with_certs(&[cert], key)
    });
    let tls = TlsConfig::builder().disable_verification(true).client_cert(client_cert).build();
    agent_config().tls_config(tls).build().into()
}
