//! What the auth file and the flags set for the registry examined, read before the settings
//! go to the registry layer: the matching key, whose credentials a request carries (never the
//! credentials themselves), and how TLS is checked — the doctor's TLS row and the context of
//! its authentication row.

use super::table::{self, Row};
use crate::reference::Repository;
use crate::registry::{Auth, TlsOptions};

/// Where the credentials for the registry come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// This auth-file key has them.
    AuthFile(String),
    /// docker's or podman's credential files (or a helper they name).
    Keychain,
    None,
}

pub struct Setup {
    /// The auth-file key that covers the repository, if any.
    key: Option<String>,
    /// That key says `insecure: true`.
    insecure_key: bool,
    tls: TlsOptions,
    pub credentials: Credentials,
}

impl Setup {
    /// The settings `auth` and the global `tls` give `repo`.
    pub fn of(auth: &Auth, tls: &TlsOptions, repo: &Repository) -> Setup {
        let rule = auth.lookup(repo);
        let credentials = match rule {
            Some(r) if r.credentials.is_some() => Credentials::AuthFile(r.key.clone()),
            _ if auth.credentials(repo).is_some() => Credentials::Keychain,
            _ => Credentials::None,
        };
        Setup {
            key: rule.map(|r| r.key.clone()),
            insecure_key: rule.is_some_and(|r| r.insecure),
            tls: rule.map_or_else(|| tls.clone(), |r| r.tls.merged(tls)),
            credentials,
        }
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Who asks, for the authentication row.
    pub fn who(&self) -> String {
        match &self.credentials {
            Credentials::AuthFile(key) => format!("credentials of auth key {key:?}"),
            Credentials::Keychain => "credentials from docker's or podman's login".into(),
            Credentials::None => "no credentials (anonymous)".into(),
        }
    }

    /// The TLS row: the scheme the client speaks, and how the certificate is checked.
    pub fn tls_row(&self, https: bool) -> Row {
        if !https {
            let why = if self.insecure_key {
                "insecure: true in the auth file"
            } else {
                "a loopback registry without an auth key that does not speak TLS"
            };
            return Row::found(table::TLS, format!("plain http ({why})"));
        }
        let mut found = if self.tls.skip_verify {
            "https, certificate NOT verified (skip_tls_verify / --skip-tls-verify)".to_string()
        } else if self.tls.ca_files.is_empty() {
            "https, certificate verified against the system roots".to_string()
        } else {
            let files: Vec<String> = self.tls.ca_files.iter().map(|p| p.display().to_string()).collect();
            format!("https, certificate verified against the system roots and {}", files.join(", "))
        };
        if let Some((cert, _)) = &self.tls.client_cert {
            found.push_str(&format!("; client certificate {}", cert.display()));
        }
        Row::found(table::TLS, found)
    }
}
