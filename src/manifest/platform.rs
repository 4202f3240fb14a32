//! The `--os` / `--arch` filter and the index rewrite it implies.
//!
//! With no filter nothing is rewritten. With a filter, an index keeps only matching entries;
//! if every entry matches, the original bytes are kept (same digest), otherwise the index is
//! re-serialised from its own JSON (unknown fields and order preserved) and so gets a new digest.

use super::{Descriptor, Doc, Error, Platform};
use crate::digest::Digest;

/// Selected platforms. Empty lists select everything.
#[derive(Clone, Debug, Default)]
pub struct PlatformFilter {
    /// `os` or `os:osversion`.
    os: Vec<(String, Option<String>)>,
    /// `arch` or `arch:variant`.
    arch: Vec<(String, Option<String>)>,
}

fn split(flag: &'static str, v: &str) -> Result<(String, Option<String>), Error> {
    let (a, b) = match v.split_once(':') {
        Some((a, b)) => (a, Some(b.to_string())),
        None => (v, None),
    };
    if a.is_empty() || b.as_deref() == Some("") {
        return Err(Error::Platform { flag, value: v.to_string() });
    }
    Ok((a.to_string(), b))
}

impl PlatformFilter {
    pub fn new(os: &[String], arch: &[String]) -> Result<PlatformFilter, Error> {
        Ok(PlatformFilter {
            os: os.iter().map(|v| split("--os", v)).collect::<Result<_, _>>()?,
            arch: arch.iter().map(|v| split("--arch", v)).collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.os.is_empty() && self.arch.is_empty()
    }

    pub fn matches(&self, p: &Platform) -> bool {
        let os_ok = self.os.is_empty()
            || self
                .os
                .iter()
                .any(|(os, ver)| *os == p.os && ver.as_ref().is_none_or(|v| p.os_version.as_ref() == Some(v)));
        let arch_ok = self.arch.is_empty()
            || self
                .arch
                .iter()
                .any(|(a, var)| *a == p.architecture && var.as_ref().is_none_or(|v| p.variant.as_ref() == Some(v)));
        os_ok && arch_ok
    }
}

/// Outcome of filtering an index.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every entry matches: push the original bytes.
    Unchanged,
    /// Some entries were dropped: push these bytes instead.
    Rewritten(Vec<u8>),
    /// No entry matches: nothing to sync.
    Empty,
}

/// What becomes of one entry of an index under the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Yes,
    No,
    /// Kept, pointing at this rewritten child instead (a nested index the filter changed).
    As {
        digest: Digest,
        size: u64,
    },
}

/// Apply `filter` to the index `bytes`. Entries without a platform are dropped when filtering.
pub fn filter_index(bytes: &[u8], filter: &PlatformFilter) -> Result<Filtered, Error> {
    if filter.is_empty() {
        return Ok(Filtered::Unchanged);
    }
    let keep: Vec<Keep> = entries(bytes)?
        .iter()
        .map(|d| if d.platform.as_ref().is_some_and(|p| filter.matches(p)) { Keep::Yes } else { Keep::No })
        .collect();
    apply(bytes, &keep)
}

/// The entries of the index `bytes`, in order.
pub fn entries(bytes: &[u8]) -> Result<Vec<Descriptor>, Error> {
    #[derive(serde::Deserialize)]
    struct Entries {
        manifests: Option<Vec<Descriptor>>,
    }
    let e: Entries = serde_json::from_slice(bytes).map_err(|e| Error::json(Doc::Index, e))?;
    e.manifests.ok_or(Error::NoManifests(Doc::Index))
}

/// Rewrite the index `bytes` entry by entry as `keep` says (one decision per entry, in order).
/// The index is re-serialised from its own JSON (unknown fields and order preserved), so the
/// same input always gives the same bytes.
pub fn apply(bytes: &[u8], keep: &[Keep]) -> Result<Filtered, Error> {
    if keep.iter().all(|k| *k == Keep::Yes) {
        return Ok(Filtered::Unchanged);
    }
    let mut doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::json(Doc::Index, e))?;
    let Some(list) = doc.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Err(Error::NoManifests(Doc::Index));
    };
    if list.len() != keep.len() {
        return Err(Error::EntriesChanged);
    }
    let old = std::mem::take(list);
    for (mut entry, k) in old.into_iter().zip(keep) {
        match k {
            Keep::No => continue,
            Keep::Yes => {}
            Keep::As { digest, size } => {
                entry["digest"] = serde_json::Value::String(digest.to_string());
                entry["size"] = serde_json::Value::from(*size);
            }
        }
        list.push(entry);
    }
    Ok(if list.is_empty() {
        Filtered::Empty
    } else {
        Filtered::Rewritten(serde_json::to_vec_pretty(&doc).map_err(|e| Error::json(Doc::Index, e))?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(os: &[&str], arch: &[&str]) -> PlatformFilter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PlatformFilter::new(&s(os), &s(arch)).unwrap()
    }

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform { os: os.into(), architecture: arch.into(), variant: variant.map(Into::into), os_version: None }
    }

    #[test]
    fn matching() {
        assert!(f(&[], &[]).matches(&p("linux", "amd64", None)));
        assert!(f(&["linux"], &[]).matches(&p("linux", "s390x", None)));
        assert!(!f(&["windows"], &[]).matches(&p("linux", "amd64", None)));
        assert!(f(&[], &["arm"]).matches(&p("linux", "arm", Some("v6"))));
        assert!(f(&[], &["arm:v7"]).matches(&p("linux", "arm", Some("v7"))));
        assert!(!f(&[], &["arm:v7"]).matches(&p("linux", "arm", Some("v6"))));
        assert!(!f(&["linux"], &["amd64"]).matches(&p("linux", "arm64", None)));
        let mut w = p("windows", "amd64", None);
        w.os_version = Some("10.0.17763.1".into());
        assert!(f(&["windows:10.0.17763.1"], &[]).matches(&w));
        assert!(!f(&["windows:10.0.20348.1"], &[]).matches(&w));
        assert!(PlatformFilter::new(&["linux:".into()], &[]).is_err());
    }

    #[test]
    fn index_rewrite() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","platform":{"os":"linux","architecture":"arm64"},"annotations":{"k":"v"}}],
            "annotations":{"z":"1","a":"2"}}"#;
        assert_eq!(filter_index(idx, &f(&[], &[])).unwrap(), Filtered::Unchanged);
        assert_eq!(filter_index(idx, &f(&["linux"], &[])).unwrap(), Filtered::Unchanged);
        assert_eq!(filter_index(idx, &f(&[], &["s390x"])).unwrap(), Filtered::Empty);
        let Filtered::Rewritten(out) = filter_index(idx, &f(&[], &["arm64"])).unwrap() else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["annotations"]["k"], "v");
        let text = String::from_utf8(out).unwrap();
        assert!(text.find("\"z\"").unwrap() < text.find("\"a\"").unwrap(), "field order kept");
        // Deterministic: the same input gives the same bytes (so re-runs see the same digest).
        let Filtered::Rewritten(again) = filter_index(idx, &f(&[], &["arm64"])).unwrap() else { panic!() };
        assert_eq!(text.as_bytes(), &again[..]);
    }

    #[test]
    fn nested_rewrite_points_at_the_new_child() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":9},{"digest":"sha256:b"}]}"#;
        assert_eq!(apply(idx, &[Keep::Yes, Keep::Yes]).unwrap(), Filtered::Unchanged);
        assert_eq!(apply(idx, &[Keep::No, Keep::No]).unwrap(), Filtered::Empty);
        let d = Digest::of(b"x");
        let Filtered::Rewritten(out) = apply(idx, &[Keep::As { digest: d.clone(), size: 1 }, Keep::No]).unwrap() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["digest"], d.to_string());
        assert_eq!(v["manifests"][0]["size"], 1);
    }
}
