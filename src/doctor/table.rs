//! The doctor's report: one row per probe, each naming what it found or why it could not tell,
//! printed as a two-column table followed by the auth-file advice.

use std::fmt;

use super::advice::Advice;
use super::Target;

// The probes, in the order they are printed.
pub const API: &str = "API version";
pub const AUTH: &str = "authentication";
pub const TLS: &str = "TLS";
pub const TAGS: &str = "tag list pagination";
pub const CATALOG: &str = "catalog pagination";
pub const REFERRERS: &str = "referrers API";
pub const HEAD_DIGEST: &str = "manifest HEAD digest";
pub const ACCEPT: &str = "manifest Accept";
pub const RATE_LIMIT: &str = "rate limit";
pub const SINGLE: &str = "single-request upload";
pub const PATCH: &str = "PATCH upload";
pub const PATCH_STATUS: &str = "PATCH answer";
pub const CHUNK_CAP: &str = "PATCH size cap";
pub const MOUNT: &str = "cross-repo mount";
pub const CLEANUP: &str = "cleanup";

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Found(String),
    /// The registry's answer could not tell, or the probe could not be made: why.
    Unknown(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Found(s) => f.write_str(s),
            Finding::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub probe: &'static str,
    pub finding: Finding,
}

impl Row {
    pub fn found(probe: &'static str, what: impl Into<String>) -> Row {
        Row { probe, finding: Finding::Found(what.into()) }
    }

    pub fn unknown(probe: &'static str, why: impl Into<String>) -> Row {
        Row { probe, finding: Finding::Unknown(why.into()) }
    }
}

/// The table and the advice, as printed.
#[derive(Debug)]
pub struct Report {
    pub target: Target,
    pub rows: Vec<Row>,
    pub advice: Advice,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.target;
        write!(f, "image-syncer doctor: {}", t.registry)?;
        let mut about = Vec::new();
        if let Some(r) = &t.repo {
            about.push(format!("reading {r}"));
        }
        if let Some(w) = &t.write {
            about.push(format!("writing to {w}"));
        }
        if !about.is_empty() {
            write!(f, " ({})", about.join(", "))?;
        }
        writeln!(f, "\n")?;
        let width = self.rows.iter().map(|r| r.probe.len()).max().unwrap_or(0).max("PROBE".len());
        writeln!(f, "{:width$}  FINDING", "PROBE")?;
        for row in &self.rows {
            writeln!(f, "{:width$}  {}", row.probe, row.finding)?;
        }
        writeln!(f)?;
        write!(f, "{}", self.advice)
    }
}
