//! image-syncer: synchronise container images between Docker Registry V2 / OCI registries and
//! OCI layouts.
//!
//! Layers, lowest first; each uses only those before it (no module imports upwards):
//!
//! ```text
//! stop, retry, slots, digest ← reference ← manifest ← rule ← store ← registry, layout ← stores
//!     ← engine, doctor, self_image ← inventory ← ui, config (+ cli) ← logging, report, signals ← main
//! ```
//!
//! [`digest`] and [`reference`] are names; [`manifest`] is pure data about manifest bytes;
//! [`rule`] is what the user asked for and its grammar; [`store`] is the interface every place
//! images live answers, with [`registry`] (HTTP) and [`layout`] (OCI layouts on disk) as its two
//! implementations and [`stores`] resolving a repository to one; [`engine`] plans and runs the
//! copy and shows nothing; [`doctor`] asks one registry what it does, through the
//! [`registry`] client a sync uses (not the engine); [`inventory`] reads what repositories hold
//! through the stores (its JSON document is data only, below [`layout`], which reads it for
//! `--base`); [`self_image`] writes the tool's own static binary as a container image into a
//! layout, through the [`layout`]'s [`store::Store`]; [`ui`] shows its progress; [`config`]
//! resolves the user's files and flags into the plain types of the layers below it, which
//! never see a file format. [`stop`] is the run-wide stop flag, [`retry`] the back-off and
//! [`slots`] the per-key once-slots every layer may use.

pub mod cli;
pub mod config;
pub mod digest;
pub mod doctor;
pub mod engine;
pub mod inventory;
pub mod layout;
pub mod logging;
pub mod malloc;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod report;
pub mod retry;
pub mod rule;
pub mod self_image;
pub mod signals;
pub mod slots;
pub mod stop;
pub mod store;
pub mod stores;
pub mod ui;
