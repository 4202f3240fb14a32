//! The integration tests: one binary (one link, one process to schedule), a module per area.
//! Each test starts its own real registries on random ports and runs the real binary.

mod common;

mod bundles_damaged;
mod bundles_safe;
mod bundles_split;
mod cli;
mod copy;
mod credentials;
mod dead;
mod doctor;
mod dry_run;
mod errors;
mod fanout;
mod faults;
mod harness;
mod images;
mod immutable;
mod incremental;
mod inventory;
mod layout;
mod manifests;
mod progress;
mod prune;
mod referrers;
mod registries;
mod report;
mod resilience;
mod rules;
mod select;
mod self_image;
mod shard;
mod smoke;
mod tls;
mod token_auth;
mod uploads;
mod verify;
