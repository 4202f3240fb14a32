//! image-syncer: synchronise container images between Docker Registry V2 / OCI registries.
//!
//! Layers, lowest first (each uses only those before it):
//! [`reference`] ← [`manifest`] ← [`config`] (+ [`cli`]) ← [`registry`] ← [`engine`] ←
//! [`report`] / `main`. The registry client takes its credentials and TLS settings from the
//! validated config; manifests are pure data about bytes; the engine ties them together.

pub mod cli;
pub mod config;
pub mod engine;
pub mod logging;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod report;
