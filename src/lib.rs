//! image-syncer: synchronise container images between Docker Registry V2 / OCI registries.
//!
//! Layers, lowest first; each uses only those before it:
//!
//! ```text
//! stop, reference ← manifest ← registry ← engine ← config (+ cli) ← report, signals, main
//! ```
//!
//! [`reference`] parses names and digests; [`manifest`] is pure data about manifest bytes;
//! [`registry`] speaks the HTTP API and owns its settings types (credentials, TLS, limits);
//! [`engine`] plans and runs the copy; [`config`] resolves the user's files and flags into the
//! plain types of the layers below it, which never see a file format. [`stop`] is the run-wide
//! stop flag every layer may look at.

pub mod cli;
pub mod config;
pub mod digest;
pub mod engine;
pub mod layout;
pub mod logging;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod report;
pub mod retry;
pub mod rule;
pub mod signals;
pub mod stop;
pub mod store;
pub mod stores;
pub mod ui;
