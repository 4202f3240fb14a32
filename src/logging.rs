//! Logging setup: `info` by default, `RUST_LOG` to change it, `--log FILE` to redirect,
//! `--quiet` for errors and the summary only (the summary lines log under the [`SUMMARY`]
//! target, which quiet mode keeps at `info`).
//!
//! The HTTP stack's own logs are capped (ureq at `debug`, whose header dumps redact secrets;
//! ureq-proto and rustls at `info`) so that no log level can print an `Authorization` header.

use std::fs::OpenOptions;

use env_logger::{Builder, Env, Target};
use log::LevelFilter;

/// The log target of the lines `--quiet` keeps besides errors: the run's totals.
pub const SUMMARY: &str = "summary";

pub fn init(log_file: Option<&str>, quiet: bool) -> Result<(), String> {
    let mut b = Builder::from_env(Env::default().default_filter_or("info"));
    if quiet {
        b.filter_level(LevelFilter::Error);
        b.filter_module(SUMMARY, LevelFilter::Info);
    }
    b.format_target(false);
    if let Some(path) = log_file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--log {path}: cannot open: {e}"))?;
        b.target(Target::Pipe(Box::new(f)));
    } else {
        // Around the live display, when one is shown.
        b.target(Target::Pipe(Box::new(crate::ui::term::Stderr)));
    }
    // Later directives for the same module win over RUST_LOG's.
    b.filter_module("ureq_proto", LevelFilter::Info.min(requested("ureq_proto")));
    b.filter_module("rustls", LevelFilter::Info.min(requested("rustls")));
    b.filter_module("ureq", LevelFilter::Debug.min(requested("ureq")));
    b.try_init().map_err(|e| e.to_string())
}

/// The level RUST_LOG asks for `module` (roughly: the most verbose level mentioned).
fn requested(module: &str) -> LevelFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut level = LevelFilter::Info;
    for d in spec.split(',') {
        let (name, lvl) = match d.split_once('=') {
            Some((n, l)) => (Some(n), l),
            None => (None, d),
        };
        if name.is_some_and(|n| !module.starts_with(n)) {
            continue;
        }
        if let Ok(l) = lvl.trim().parse::<LevelFilter>() {
            level = l;
        }
    }
    level
}
