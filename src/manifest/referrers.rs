//! Referrers: manifests that point at another one (signatures, SBOMs, attestations), and the
//! two ways registries list them.
//!
//! OCI 1.1 gives each referrer a `subject`; a registry with the referrers API lists them at
//! `/v2/<name>/referrers/<digest>`. A registry without it (distribution 2.8, most mirrors
//! today) is served by the *referrers tag schema*: a tag `sha256-<hex>` holding an index of the
//! referrers' descriptors, which clients keep up to date. Cosign's older scheme puts a
//! signature, attestation or SBOM under the tags `sha256-<hex>.sig`, `.att` and `.sbom`.
//!
//! The descriptors are kept as the source served them (JSON values): `artifactType` and
//! `annotations` are what policy tools filter on, and we have no reason to drop a field.

use serde_json::Value;

use super::{Doc, Error, MediaType};
use crate::digest::Digest;

/// Cosign's legacy tag suffixes.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// One referrer as a listing names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub artifact_type: Option<MediaType>,
    /// The descriptor as served, for the destination's fallback index.
    pub descriptor: Value,
}

impl Referrer {
    /// The referrers an index (an API answer or a fallback tag) lists; entries without a valid
    /// digest are left out.
    pub fn list(index: &[u8]) -> Result<Vec<Referrer>, Error> {
        let doc: Value = serde_json::from_slice(index).map_err(|e| Error::json(Doc::Referrers, e))?;
        let Some(entries) = doc.get("manifests").and_then(Value::as_array) else {
            return Err(Error::NoManifests(Doc::Referrers));
        };
        Ok(entries
            .iter()
            .filter_map(|d| {
                let digest = Digest::parse(d.get("digest")?.as_str()?).ok()?;
                let artifact_type = d.get("artifactType").and_then(Value::as_str).map(MediaType::new);
                Some(Referrer { digest, artifact_type, descriptor: d.clone() })
            })
            .collect())
    }
}

/// The referrers tag schema's tag for `subject`: `<algorithm>-<hex>`, the hex cut to 64
/// characters (a sha512 digest's 128 would pass the 128-character tag limit), as the
/// distribution spec's "Referrers Tag Schema" says
/// (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#referrers-tag-schema>).
pub fn fallback_tag(subject: &Digest) -> String {
    let hex = subject.hex();
    format!("{}-{}", subject.algorithm().name(), &hex[..hex.len().min(64)])
}

/// Cosign's tags for `subject`.
pub fn cosign_tags(subject: &Digest) -> Vec<String> {
    COSIGN_SUFFIXES.iter().map(|s| format!("{}.{s}", fallback_tag(subject))).collect()
}

/// Whether `tag` belongs to another manifest (a fallback index or a cosign tag) rather than
/// naming an image of its own.
pub fn is_referrer_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-").or_else(|| tag.strip_prefix("sha512-")) else { return false };
    let (Some(hex), Some(suffix)) = (rest.get(..64), rest.get(64..)) else { return false };
    hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && (suffix.is_empty() || COSIGN_SUFFIXES.iter().any(|s| suffix.strip_prefix('.') == Some(s)))
}

/// Whether `bytes`, served as `content_type`, is an index: by a `Content-Type` naming a
/// manifest type, else by the body's `mediaType`, else by a `manifests` array (OCI lets an
/// index leave its media type out). Only that is read, so that a listing with entries of any
/// shape still counts.
pub fn is_index(bytes: &[u8], content_type: Option<&MediaType>) -> bool {
    if let Some(t) = content_type.filter(|t| t.names_a_manifest()) {
        return t.is_index();
    }
    let doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
    match doc.get("mediaType").and_then(Value::as_str) {
        Some(t) => MediaType::new(t).is_index(),
        None => doc.get("manifests").is_some_and(Value::is_array),
    }
}

/// The destination's fallback index for a subject with `add` merged in: `None` when it already
/// lists every one of them. Entries already there are kept, in their order; new ones follow in
/// the order given. `existing` that is no index is an error (we never overwrite what we cannot
/// read).
pub fn merge_fallback(existing: Option<&[u8]>, add: &[Referrer]) -> Result<Option<Vec<u8>>, Error> {
    let mut doc = match existing {
        Some(bytes) => {
            let doc: Value = serde_json::from_slice(bytes).map_err(|e| Error::json(Doc::ExistingFallback, e))?;
            if !doc.get("manifests").is_some_and(Value::is_array) {
                return Err(Error::NoManifests(Doc::ExistingFallback));
            }
            doc
        }
        None => serde_json::json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": []}),
    };
    let list = doc["manifests"].as_array_mut().expect("checked above");
    let mut changed = false;
    for r in add {
        let listed = list.iter().any(|d| d.get("digest").and_then(Value::as_str) == Some(r.digest.as_str()));
        if !listed {
            list.push(r.descriptor.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&doc).map(Some).map_err(|e| Error::json(Doc::ExistingFallback, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    fn referrer(c: char, t: &str) -> Referrer {
        let descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d(c).to_string(), "size": 10, "artifactType": t,
        });
        Referrer { digest: d(c), artifact_type: Some(MediaType::new(t)), descriptor }
    }

    #[test]
    fn tags() {
        let s = d('a');
        assert_eq!(fallback_tag(&s), format!("sha256-{}", "a".repeat(64)));
        assert!(cosign_tags(&s).iter().all(|t| is_referrer_tag(t)));
        assert!(is_referrer_tag(&fallback_tag(&s)));
        assert!(!is_referrer_tag("sha256-abc"));
        let s512 = crate::digest::Algorithm::Sha512.digest(b"x");
        assert_eq!(fallback_tag(&s512), format!("sha512-{}", &s512.hex()[..64]));
        assert!(is_referrer_tag(&fallback_tag(&s512)) && is_referrer_tag(&format!("{}.sig", fallback_tag(&s512))));
        assert!(!is_referrer_tag(&format!("sha256-{}.foo", "a".repeat(64))));
        assert!(!is_referrer_tag(&format!("sha256-{}", "A".repeat(64))));
        assert!(!is_referrer_tag("v1.0"));
        assert!(!is_referrer_tag(&format!("sha256-{}é", "a".repeat(63))), "no panic on a non-ASCII tag");
    }

    #[test]
    fn an_index_is_told_by_its_type_else_by_its_shape() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#;
        assert!(is_index(index, None));
        assert!(is_index(index, Some(&MediaType::new("application/json"))), "a type that is no manifest's is ignored");
        assert!(!is_index(index, Some(&MediaType::OCI_MANIFEST)));
        assert!(is_index(b"{}", Some(&MediaType::OCI_INDEX)));
        assert!(!is_index(image, None));
        assert!(!is_index(image, Some(&MediaType::new("text/plain"))));
        assert!(!is_index(b"junk", None));
    }

    #[test]
    fn merge_keeps_what_is_there() {
        let first = merge_fallback(None, &[referrer('a', "x")]).unwrap().unwrap();
        let listed = Referrer::list(&first).unwrap();
        assert_eq!(listed, [referrer('a', "x")]);
        assert_eq!(merge_fallback(Some(&first), &[referrer('a', "x")]).unwrap(), None, "nothing new: no write");
        let both = merge_fallback(Some(&first), &[referrer('b', "y"), referrer('a', "x")]).unwrap().unwrap();
        let digests: Vec<Digest> = Referrer::list(&both).unwrap().into_iter().map(|r| r.digest).collect();
        assert_eq!(digests, [d('a'), d('b')]);
        assert!(merge_fallback(Some(b"{\"schemaVersion\":2}"), &[referrer('a', "x")]).is_err());
        assert!(merge_fallback(Some(b"junk"), &[referrer('a', "x")]).is_err());
    }
}
