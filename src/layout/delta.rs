//! Delta bundles: a bundle written with `--base OLD` leaves out the blobs `OLD` holds, and
//! says so in [`RECORD`], so that importing it can tell "left out on purpose, import the base
//! first" from "damaged".
//!
//! `OLD` is a previous bundle, or a site's inventory (`image-syncer inventory`, told apart by
//! its content): what the site really holds, so the delta carries exactly what it lacks. The
//! inventory names a repository of the site holding each blob; the record keeps that name, so
//! the import can mount the blob from there into a repository that lacks it (registries keep
//! blobs per repository).
//!
//! Only layers and configs are left out: manifests are small, and keeping them makes every tag
//! of a delta readable on its own (its digest can be compared at the destination without the
//! base).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::archive::Members;
use super::parts;
use crate::digest::Digest;
use crate::inventory::{registry_repository, Inventory};
use crate::reference::Repository;
use crate::store::{Error, ErrorKind};

/// The file at a delta bundle's root that lists what it left out.
pub const RECORD: &str = "image-syncer-delta.json";

/// The largest inventory read (a site of a million blobs writes about 200 MiB).
const MAX_INVENTORY_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Record {
    /// The base as the user named it.
    pub base: String,
    /// When the base is a site's inventory (or a bundle written from one): when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<String>,
    pub blobs: Vec<Left>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Left {
    pub digest: Digest,
    pub size: u64,
    /// Repositories of the site that hold it, by full name, as the inventory said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<String>,
}

impl Record {
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{RECORD} is invalid: {e}"))
    }

    pub fn left(&self, digest: &Digest) -> Option<&Left> {
        self.blobs.iter().find(|b| b.digest == *digest)
    }

    /// Why the blob `digest`, which this bundle lacks, is not here: it was left out (the
    /// destination should have had it), said so that the user knows what to import or redo.
    /// `None` when it was not left out (the bundle is incomplete).
    pub fn absence(&self, digest: &Digest) -> Option<String> {
        let left = self.left(digest)?;
        Some(match &self.inventory {
            None => format!(
                "{digest} is left out of this delta bundle (its base {} holds it) and the destination lacks it: \
                 import the base bundle first",
                self.base
            ),
            Some(taken) => format!(
                "{digest} is left out of this delta bundle (the site's inventory {}, taken {taken}, listed it at {}) \
                 but the destination lacks it and could not mount it from there: import a bundle that holds it, or \
                 take the inventory again and write a new delta from it",
                self.base,
                if left.at.is_empty() { "the site".to_string() } else { left.at.join(", ") }
            ),
        })
    }

    /// The registry repositories the site holds the left-out blob `digest` in.
    pub fn held_at(&self, digest: &Digest) -> Vec<Repository> {
        self.left(digest).map(|l| l.at.iter().filter_map(|n| registry_repository(n)).collect()).unwrap_or_default()
    }
}

/// The blobs of the base: a bundle, or a site's inventory.
#[derive(Debug, Default)]
pub struct Base {
    pub label: String,
    pub blobs: BTreeMap<Digest, u64>,
    /// Where the site holds each blob, by repository full name (from an inventory).
    pub at: BTreeMap<Digest, Vec<String>>,
    /// When the inventory the base is (or was written from) was taken.
    pub inventory: Option<String>,
}

impl Base {
    /// Read `path`: a bundle directory, its `index.json`, an archive, or an inventory. The
    /// blobs a delta base itself left out count as held (they are at the destination, if it was
    /// imported).
    pub fn load(path: &Path) -> Result<Base, Error> {
        let label = path.display().to_string();
        let fail = |m: String| Error::new(&format!("--base {label}"), "", ErrorKind::Layout(m));
        if let Some(inventory) = read_inventory(path).map_err(fail)? {
            return Ok(Base::of_inventory(label.clone(), inventory));
        }
        let dir = if path.file_name().is_some_and(|n| n == "index.json") { path.parent() } else { Some(path) };
        let mut base = Base { label: label.clone(), ..Base::default() };
        let mut record = None;
        match dir {
            Some(d) if d.is_dir() => {
                if !d.join("index.json").is_file() {
                    return Err(fail("not an OCI layout (no index.json)".into()));
                }
                let listing = std::fs::read_dir(d.join("blobs").join("sha256"))
                    .map_err(|e| fail(format!("cannot list its blobs: {e}")))?;
                for f in listing.flatten() {
                    let name = f.file_name().to_string_lossy().to_string();
                    if let (Ok(digest), Ok(meta)) = (Digest::parse(&format!("sha256:{name}")), f.metadata()) {
                        base.blobs.insert(digest, meta.len());
                    }
                }
                record = std::fs::read(d.join(RECORD)).ok();
            }
            _ if parts::exists(path) => {
                let members =
                    Members::scan(path).map_err(|e| fail(format!("neither a readable tar nor an inventory: {e}")))?;
                if members.size("index.json").is_none() {
                    return Err(fail("not an OCI archive (no index.json in it), nor an inventory".into()));
                }
                for (p, size) in members.blobs() {
                    if let Ok(digest) = Digest::parse(&p.replacen("blobs/sha256/", "sha256:", 1)) {
                        base.blobs.insert(digest, size);
                    }
                }
                if members.size(RECORD).is_some() {
                    let mut bytes = Vec::new();
                    members
                        .open(RECORD, 0)
                        .and_then(|mut r| r.read_to_end(&mut bytes))
                        .map_err(|e| fail(e.to_string()))?;
                    record = Some(bytes);
                }
            }
            _ => {
                return Err(fail(
                    "no such bundle or inventory (a layout directory, its index.json, an archive, or an inventory)"
                        .into(),
                ))
            }
        }
        if let Some(bytes) = record {
            let record = Record::parse(&bytes).map_err(fail)?;
            base.inventory = record.inventory;
            for b in record.blobs {
                base.blobs.entry(b.digest.clone()).or_insert(b.size);
                if !b.at.is_empty() {
                    base.at.entry(b.digest).or_insert(b.at);
                }
            }
        }
        Ok(base)
    }

    fn of_inventory(label: String, inventory: Inventory) -> Base {
        let mut base = Base { label, inventory: Some(inventory.generated), ..Base::default() };
        for (digest, held) in inventory.blobs {
            base.blobs.insert(digest.clone(), held.size);
            base.at.insert(digest, held.at);
        }
        base
    }

    /// What a left-out blob becomes in the record.
    pub fn left(&self, digest: Digest, size: u64) -> Left {
        let at = self.at.get(&digest).cloned().unwrap_or_default();
        Left { digest, size, at }
    }

    /// The record of a delta written from this base, leaving out `blobs`.
    pub fn record(&self, blobs: Vec<Left>) -> Record {
        Record { base: self.label.clone(), inventory: self.inventory.clone(), blobs }
    }

    /// Who holds what the delta left out, for the summary line.
    pub fn holder(&self) -> &'static str {
        match self.inventory {
            Some(_) => "the site's inventory lists them",
            None => "the base bundle holds them",
        }
    }
}

/// The inventory at `path`, when the file is one (a JSON object with an `inventory` key);
/// `None` for anything else (a directory, an archive, a layout's `index.json`).
fn read_inventory(path: &Path) -> Result<Option<Inventory>, String> {
    let Ok(mut file) = std::fs::File::open(path) else { return Ok(None) };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut first = [0u8; 64];
    let n = file.read(&mut first).map_err(|e| format!("cannot read it: {e}"))?;
    if first[..n].iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(None);
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_INVENTORY_BYTES {
        return Err(format!("{len} bytes: more than an inventory may have ({MAX_INVENTORY_BYTES})"));
    }
    let mut bytes = first[..n].to_vec();
    file.read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        // Not JSON after all: let the other readers say what it is not.
        Err(_) => return Ok(None),
    };
    if !Inventory::is_one(&value) {
        return Ok(None);
    }
    Inventory::from_value(value).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Held;

    #[test]
    fn an_inventory_is_a_base_told_by_its_content() {
        let dir = std::env::temp_dir().join(format!("delta-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (d, at) = (Digest::of(b"layer"), vec!["r.io/mirror/app".to_string()]);
        let mut inv = Inventory::now();
        inv.blobs.insert(d.clone(), Held { size: 5, at: at.clone() });
        let file = dir.join("site.json");
        std::fs::write(&file, inv.to_bytes()).unwrap();
        let base = Base::load(&file).unwrap();
        assert_eq!((base.blobs.get(&d), base.at.get(&d)), (Some(&5), Some(&at)));
        assert_eq!(base.inventory.as_deref(), Some(inv.generated.as_str()));
        let record = base.record(vec![base.left(d.clone(), 5)]);
        assert_eq!(record.held_at(&d), [Repository::on_registry("r.io", "mirror/app")]);
        let why = record.absence(&d).unwrap();
        assert!(why.contains("r.io/mirror/app") && why.contains("take the inventory again"), "{why}");
        assert!(record.absence(&Digest::of(b"other")).is_none());

        let mut newer: serde_json::Value = serde_json::from_slice(&inv.to_bytes()).unwrap();
        newer["inventory"] = 2.into();
        std::fs::write(&file, serde_json::to_vec(&newer).unwrap()).unwrap();
        assert!(Base::load(&file).unwrap_err().to_string().contains("version 2"));
        std::fs::write(&file, br#"{"something": "else"}"#).unwrap();
        assert!(Base::load(&file).unwrap_err().to_string().contains("nor an inventory"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
