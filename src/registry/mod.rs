//! A blocking client for the Docker Registry HTTP API V2 / OCI Distribution API: one
//! [`Store`](crate::store::Store) implementation (the OCI layout, [`crate::layout`], is the
//! other).
//!
//! The layer knows HTTP, authentication and the API's shapes, and what each registry was
//! learned to accept (upload style, pull budget); it knows nothing of config files (it takes
//! [`settings`] types) nor of the sync plan (the engine decides what to copy).
//!
//! - [`client`]: one registry's [`Client`]: send, auth retry, safe redirects, back-off;
//!   [`health`]: whether a registry answers at all, shared by its clients.
//! - [`error`]: transport failures and error answers classified into the store's typed errors.
//! - [`auth`], [`transport`]: tokens, challenges and scopes; agents with TLS and timeouts.
//! - [`blobs`], [`uploads`], [`manifests`], [`referrers`], [`tags`]: the API calls;
//!   [`store`]: the client as a store; [`ratelimit`]: pacing against an announced pull budget.
//! - [`registries`]: the clients of a run, one per registry and credential set.
//! - [`http`]: query encoding, `Location`/`Link` resolution, origins, headers.
//! - [`probe`]: raw requests for `image-syncer doctor`, through the same [`Client::send`].

mod auth;
mod blobs;
mod client;
mod error;
mod health;
mod http;
mod learned;
mod manifests;
mod probe;
mod ratelimit;
mod referrers;
mod registries;
pub mod settings;
mod store;
mod tags;
mod transport;
mod uploads;

pub use client::Client;
pub(crate) use probe::{Answer, Scope};
pub use registries::Registries;
pub use settings::{Auth, AuthRule, Credentials, Keychain, Limits, TlsOptions};
pub use transport::TlsFileError;
