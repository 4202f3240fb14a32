//! image-syncer: synchronise container images between Docker Registry V2 / OCI registries.
//!
//! Layers, lowest first (each uses only those before it):
//! [`reference`] ← [`registry`] ← [`manifest`] ← [`config`] ← [`engine`] ← [`report`] / `main`.

pub mod cli;
pub mod config;
pub mod engine;
pub mod logging;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod report;
