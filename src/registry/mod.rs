//! A blocking client for the Docker Registry HTTP API V2 / OCI Distribution API.
//!
//! The layer knows HTTP, authentication and the API's shapes; it knows nothing of config files
//! (it takes [`settings`] types) nor of the sync plan (the engine decides what to copy).
//!
//! - [`error`]: typed errors and their transient/permanent class.
//! - [`client`]: one registry's [`Client`]: send, auth retry, redirects, back-off.
//! - [`registries`]: the clients of a run, one per registry and credential set.
//! - [`auth`], [`transport`]: tokens and challenges; agents with TLS and timeouts.
//! - [`blobs`], [`manifests`], [`tags`]: the API calls; [`ratelimit`]: pacing against an
//!   announced pull budget (Docker Hub).
//! - [`layout`]: OCI layouts and archives on disk, answering the same operations;
//!   [`Store`]: a registry or a layout, which the engine works on.

mod auth;
mod blobs;
mod client;
mod error;
pub mod layout;
mod manifests;
mod ratelimit;
mod registries;
pub mod settings;
mod store;
mod tags;
mod transport;

pub use blobs::{BlobSource, Upload};
pub use client::Client;
pub use error::{Error, ErrorKind};
pub use layout::LayoutSpec;
pub use manifests::{Access, Fetched, Head, ReferrersAnswer};
pub use registries::Registries;
pub use settings::{Auth, AuthRule, Credentials, Keychain, Limits, TlsOptions};
pub use store::Store;

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scope a token needs to read a repository.
pub fn pull_scope(name: &str) -> String {
    format!("repository:{name}:pull")
}

/// The scope a token needs to write a repository (push first, as registries expect).
pub fn push_scope(name: &str) -> String {
    format!("repository:{name}:pull,push")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
