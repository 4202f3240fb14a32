//! The inventory document: what the repositories of a site hold, written by `image-syncer
//! inventory` and read back by `--base` on the connected side (see [`crate::layout::Base`]).
//!
//! Version 1, one JSON object:
//!
//! ```json
//! {"inventory": 1, "generated": "2026-05-01T10:00:00Z", "by": "image-syncer 0.1.0",
//!  "repositories": {"harbor.internal/mirror/team/app": {"tags": {"v1": "sha256:…"},
//!                                                       "manifests": ["sha256:…"]}},
//!  "blobs": {"sha256:…": {"size": 1234, "at": ["harbor.internal/mirror/team/app"]}}}
//! ```
//!
//! A delta needs only what is present, so each blob is listed once, with its size and one
//! repository per registry (or layout) known to hold it: registries answer for a blob per
//! repository (`HEAD /v2/<name>/blobs/<digest>`), and a blob of one repository reaches another
//! only by a mount from there (`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`,
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#mounting-a-blob-from-another-repository>),
//! which the import of a delta asks for by that name. A registry may refuse the mount (ECR
//! unless enabled, see the README's Registries table): the import then fails naming the blob. Tags and manifests are kept per repository for
//! people reading it; the delta leaves out blobs only. Data only: this file reads and writes
//! the format, [`super`] takes an inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::{normalize_registry, Repository};

/// The version this tool writes and reads.
pub const VERSION: u64 = 1;

/// The key that tells an inventory from any other JSON file.
const KEY: &str = "inventory";

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// The format's version ([`VERSION`]).
    pub inventory: u64,
    /// When it was taken: RFC 3339, UTC.
    pub generated: String,
    /// The tool (and version) that took it.
    #[serde(default)]
    pub by: String,
    /// Each repository read, by its full name (`host/path`, or `oci:/dir:NAME`).
    #[serde(default)]
    pub repositories: BTreeMap<String, Repo>,
    /// Every blob (config or layer) found present, once.
    #[serde(default)]
    pub blobs: BTreeMap<Digest, Held>,
}

/// What one repository holds.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    /// Every manifest reached from the tags: images, indexes, their children, referrers.
    pub manifests: BTreeSet<Digest>,
}

/// A blob found present.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Held {
    pub size: u64,
    /// One repository per registry (or layout) that holds it, by full name.
    pub at: Vec<String>,
}

/// Why a file is no inventory this tool can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not JSON, or not this shape.
    Invalid(String),
    /// A version this tool does not read.
    Version(u64),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Invalid(m) => write!(f, "not a valid inventory: {m}"),
            Unusable::Version(v) => write!(
                f,
                "an inventory of format version {v}; this image-syncer reads version {VERSION} (take the inventory \
                 with the same release)"
            ),
        }
    }
}

impl Inventory {
    /// An empty inventory taken now.
    pub fn now() -> Inventory {
        Inventory {
            inventory: VERSION,
            generated: utc_now(),
            by: format!("image-syncer {}", env!("CARGO_PKG_VERSION")),
            ..Inventory::default()
        }
    }

    /// Whether `value` is meant as an inventory (whatever its version): a JSON object with the
    /// key `inventory`.
    pub fn is_one(value: &serde_json::Value) -> bool {
        value.get(KEY).is_some()
    }

    /// Read an inventory from its parsed JSON.
    pub fn from_value(value: serde_json::Value) -> Result<Inventory, Unusable> {
        match value.get(KEY).and_then(serde_json::Value::as_u64) {
            Some(VERSION) => {}
            Some(v) => return Err(Unusable::Version(v)),
            None => return Err(Unusable::Invalid(format!("\"{KEY}\" must be the format version, {VERSION}"))),
        }
        serde_json::from_value(value).map_err(|e| Unusable::Invalid(e.to_string()))
    }

    /// The document as written: pretty JSON, keys sorted, a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

impl Held {
    /// The repositories of [`Held::at`] on registries (a layout needs no mount: its
    /// repositories share one blob store).
    pub fn registry_repositories(&self) -> Vec<Repository> {
        self.at.iter().filter_map(|name| registry_repository(name)).collect()
    }
}

/// `host/path` → the repository on that registry; `None` for a layout's name or no name.
pub fn registry_repository(full_name: &str) -> Option<Repository> {
    if full_name.starts_with("oci:") || full_name.starts_with("oci-archive:") {
        return None;
    }
    let (host, path) = full_name.split_once('/')?;
    (!host.is_empty() && !path.is_empty()).then(|| Repository::on_registry(&normalize_registry(host), path))
}

/// Now, as RFC 3339 in UTC to the second.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rfc3339_utc(secs)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil from days, Howard Hinnant's
/// algorithm; the inverse of [`crate::rule::rfc3339`]).
fn rfc3339_utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::rfc3339;

    #[test]
    fn times_round_trip_through_the_parser_the_rules_use() {
        for secs in [0u64, 951_782_400, 1_709_164_800, 1_767_225_599, 4_102_444_800] {
            let text = rfc3339_utc(secs);
            assert_eq!(rfc3339(&text), Some(secs as i64), "{text}");
        }
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn versions_and_shapes() {
        let mut inv = Inventory::now();
        let d = Digest::of(b"x");
        inv.blobs.insert(d.clone(), Held { size: 1, at: vec!["r.io/team/app".into(), "oci:/b:x.io/a".into()] });
        let value: serde_json::Value = serde_json::from_slice(&inv.to_bytes()).unwrap();
        assert!(Inventory::is_one(&value));
        assert_eq!(Inventory::from_value(value.clone()).unwrap(), inv);
        let mut newer = value.clone();
        newer["inventory"] = 2.into();
        assert_eq!(Inventory::from_value(newer), Err(Unusable::Version(2)));
        let mut broken = value;
        broken["blobs"] = serde_json::json!({"md5:abc": {"size": 1, "at": []}});
        assert!(matches!(Inventory::from_value(broken), Err(Unusable::Invalid(_))));
        assert!(!Inventory::is_one(&serde_json::json!({"manifests": []})));
        let repos = inv.blobs[&d].registry_repositories();
        assert_eq!(repos, [Repository::on_registry("r.io", "team/app")]);
        assert_eq!(
            registry_repository("docker.io/library/x").unwrap().location.registry(),
            Some("registry-1.docker.io")
        );
    }
}
