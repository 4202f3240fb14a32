//! Delta bundles: a bundle written with `--base OLD` leaves out the blobs `OLD` holds, and
//! says so in [`RECORD`], so that importing it can tell "left out on purpose, import the base
//! first" from "damaged".
//!
//! Only layers and configs are left out: manifests are small, and keeping them makes every tag
//! of a delta readable on its own (its digest can be compared at the destination without the
//! base).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::archive::Members;
use super::parts;
use crate::digest::Digest;
use crate::store::{Error, ErrorKind};

/// The file at a delta bundle's root that lists what it left out.
pub const RECORD: &str = "image-syncer-delta.json";

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Record {
    /// The base as the user named it.
    pub base: String,
    pub blobs: Vec<Left>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Left {
    pub digest: Digest,
    pub size: u64,
}

impl Record {
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{RECORD} is invalid: {e}"))
    }

    pub fn holds(&self, digest: &Digest) -> bool {
        self.blobs.iter().any(|b| b.digest == *digest)
    }
}

/// The blobs of the base bundle, by digest, with their sizes.
#[derive(Debug, Default)]
pub struct Base {
    pub label: String,
    pub blobs: BTreeMap<Digest, u64>,
}

impl Base {
    /// Read `path`: a bundle directory, its `index.json`, or an archive. The blobs a delta
    /// base itself left out count as held (they are at the destination, if it was imported).
    pub fn load(path: &Path) -> Result<Base, Error> {
        let label = path.display().to_string();
        let fail = |m: String| Error::new(&format!("--base {label}"), "", ErrorKind::Layout(m));
        let dir = if path.file_name().is_some_and(|n| n == "index.json") { path.parent() } else { Some(path) };
        let mut blobs = BTreeMap::new();
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
                        blobs.insert(digest, meta.len());
                    }
                }
                record = std::fs::read(d.join(RECORD)).ok();
            }
            _ if parts::exists(path) => {
                let members = Members::scan(path).map_err(|e| fail(e.to_string()))?;
                if members.size("index.json").is_none() {
                    return Err(fail("not an OCI archive (no index.json in it)".into()));
                }
                for (p, size) in members.blobs() {
                    if let Ok(digest) = Digest::parse(&p.replacen("blobs/sha256/", "sha256:", 1)) {
                        blobs.insert(digest, size);
                    }
                }
                if members.size(RECORD).is_some() {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(
                        &mut members.open(RECORD, 0).map_err(|e| fail(e.to_string()))?,
                        &mut bytes,
                    )
                    .map_err(|e| fail(e.to_string()))?;
                    record = Some(bytes);
                }
            }
            _ => return Err(fail("no such bundle (a layout directory, its index.json, or an archive)".into())),
        }
        if let Some(bytes) = record {
            for b in Record::parse(&bytes).map_err(fail)?.blobs {
                blobs.entry(b.digest).or_insert(b.size);
            }
        }
        Ok(Base { label, blobs })
    }
}
