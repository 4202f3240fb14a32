//! Manifests: media types, the few fields the copy needs, and digests.
//!
//! We read manifests only to learn which blobs and child manifests they reference; the bytes we
//! push are always the bytes the source served (the digest is the sha256 of exactly those bytes).
//! The structs below therefore hold just what we need, and unknown fields are ignored: a
//! manifest is never re-serialised from them. (`oci-spec` types were not used: they reject
//! Docker schema1 and Docker media types that we must pass through, and re-serialising is what
//! we must avoid.)

mod platform;
mod referrers;

use std::fmt;

use serde::Deserialize;

pub use platform::{apply, entries, filter_index, Filtered, Keep, PlatformFilter};
pub use referrers::{cosign_tags, fallback_tag, is_referrer_tag, merge_fallback, Referrer};

use crate::digest::Digest;

pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Sent on every manifest request: the four current types first, schema1 last so that old
/// images still come through.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// Manifests larger than this are refused, to bound memory (the distribution spec's limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The target platform of an index entry or an image config.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(rename = "os.version", default)]
    pub os_version: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor: what a manifest says about a blob or child manifest.
#[derive(Deserialize, Clone, Debug)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// Windows "foreign" layers live outside the registry and are not copied.
    fn is_foreign(&self) -> bool {
        !self.urls.is_empty() && self.media_type.contains("foreign")
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
    #[serde(rename = "fsLayers", default)]
    fs_layers: Option<serde_json::Value>,
}

/// What a manifest references.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A single image: config + layers (Docker v2 schema2, OCI manifest, OCI artifacts).
    Image { config: Descriptor, layers: Vec<Descriptor> },
    /// A Docker manifest list or OCI index.
    Index { manifests: Vec<Descriptor> },
}

/// A parsed manifest and the media type to push it with.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
}

/// A blob to copy: digest and, when the manifest says, its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: Option<u64>,
}

/// The media type without parameters (`; charset=utf-8`), lowercased.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Whether `t` is one of the media types an index is pushed with.
pub fn is_index_type(t: &str) -> bool {
    t == DOCKER_LIST || t == OCI_INDEX
}

pub fn is_image_type(t: &str) -> bool {
    t == DOCKER_V2 || t == OCI_MANIFEST
}

impl Manifest {
    /// Parse `bytes`; `content_type` is what the registry said it served.
    ///
    /// The media type pushed is the body's `mediaType` when it has one. A `Content-Type` naming
    /// another manifest type is an error (pushing the bytes under either type could make an image
    /// the source never had); a `Content-Type` that is no manifest type at all (`application/json`,
    /// `text/plain`: some servers say that) is ignored. A body without `mediaType` (allowed by
    /// OCI) takes the header's type, else the type its shape implies. Docker schema 1 is refused:
    /// see the README ("What gets copied").
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest JSON: {e}"))?;
        let header = content_type.map(essence).filter(|h| h.contains("manifest") || h.contains("image.index"));
        let schema1 = |t: &Option<String>| t.as_deref().is_some_and(|t| t == DOCKER_V1 || t == DOCKER_V1_SIGNED);
        if raw.schema_version == Some(1) || raw.fs_layers.is_some() || schema1(&header) || schema1(&raw.media_type) {
            return Err("Docker schema 1 manifest: not supported (deprecated since 2017, refused by current \
                registries); push the image again with a current client, or convert it with \
                `skopeo copy --format v2s2`"
                .into());
        }
        let kind = if let Some(manifests) = raw.manifests {
            Kind::Index { manifests }
        } else if let Some(config) = raw.config {
            Kind::Image { config, layers: raw.layers }
        } else {
            return Err("not a manifest: it has neither config nor manifests".into());
        };
        let body = raw.media_type.filter(|m| !m.is_empty());
        if let (Some(h), Some(b)) = (&header, &body) {
            if h != b {
                return Err(format!("the registry serves it as {h} but its body says mediaType {b}"));
            }
        }
        let shape_fits = |t: &str| match &kind {
            Kind::Index { .. } => is_index_type(t),
            Kind::Image { .. } => is_image_type(t),
        };
        let media_type = match body.or(header) {
            Some(t) if shape_fits(&t) => t,
            Some(t) if is_index_type(&t) || is_image_type(&t) => {
                return Err(format!("its mediaType is {t} but its content is {}", kind.shape()))
            }
            Some(t) => return Err(format!("unsupported manifest media type {t}")),
            None => match &kind {
                Kind::Index { .. } => OCI_INDEX.to_string(),
                Kind::Image { .. } => OCI_MANIFEST.to_string(),
            },
        };
        Ok(Manifest { media_type, kind })
    }

    /// The blobs an image needs at the destination, each once, foreign layers left out.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut out: Vec<BlobRef> = Vec::new();
        let mut add = |digest: &Digest, size: Option<u64>| {
            if !out.iter().any(|b| b.digest == *digest) {
                out.push(BlobRef { digest: digest.clone(), size });
            }
        };
        match &self.kind {
            Kind::Image { config, layers } => {
                for d in std::iter::once(config).chain(layers).filter(|d| !d.is_foreign()) {
                    add(&d.digest, d.size);
                }
            }
            Kind::Index { .. } => {}
        }
        out
    }
}

impl Kind {
    fn shape(&self) -> &'static str {
        match self {
            Kind::Index { .. } => "an index (it lists manifests)",
            Kind::Image { .. } => "an image (it has a config)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn docker_image() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","config":{{"mediaType":"x","digest":"{D1}","size":5}},
            "layers":[{{"mediaType":"l","digest":"{D2}","size":7}},{{"mediaType":"l","digest":"{D2}","size":7}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes(), Some("application/vnd.docker.distribution.manifest.v2+json")).unwrap();
        assert_eq!(p.media_type, DOCKER_V2);
        assert_eq!(
            p.blobs(),
            [
                BlobRef { digest: D1.parse().unwrap(), size: Some(5) },
                BlobRef { digest: D2.parse().unwrap(), size: Some(7) }
            ]
        );
    }

    #[test]
    fn oci_index_without_header_and_media_type() {
        let m = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{D1}","size":3,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes(), Some("application/octet-stream")).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        match p.kind {
            Kind::Index { manifests } => {
                assert_eq!(manifests[0].platform.as_ref().unwrap().to_string(), "linux/arm/v7")
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn schema1_is_refused_and_foreign_layers_skipped() {
        let m = format!(r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{D1}"}},{{"blobSum":"{D1}"}}]}}"#);
        let e = Manifest::parse(m.as_bytes(), None).unwrap_err();
        assert!(e.contains("schema 1"), "{e}");
        assert!(Manifest::parse(b"{}", Some(DOCKER_V1_SIGNED)).unwrap_err().contains("schema 1"));
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","urls":["https://x"]}}]}}"#
        );
        assert_eq!(Manifest::parse(m.as_bytes(), None).unwrap().blobs().len(), 1);
    }

    #[test]
    fn content_type_and_body_must_agree() {
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{D1}","size":1}}}}"#);
        let e = Manifest::parse(m.as_bytes(), Some(DOCKER_V2)).unwrap_err();
        assert!(e.contains(DOCKER_V2) && e.contains(OCI_MANIFEST), "{e}");
        // Not a manifest type at all: ignored, the body decides.
        let p = Manifest::parse(m.as_bytes(), Some("application/json; charset=utf-8")).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(
            Manifest::parse(m.as_bytes(), Some("application/vnd.oci.image.manifest.v1+json")).unwrap().media_type,
            OCI_MANIFEST
        );
        // No mediaType in the body: the header's type, when it fits the shape.
        let bare = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}}}}"#);
        assert_eq!(Manifest::parse(bare.as_bytes(), Some(DOCKER_V2)).unwrap().media_type, DOCKER_V2);
        assert!(Manifest::parse(bare.as_bytes(), Some(DOCKER_LIST)).unwrap_err().contains("an image"));
        let idx = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","manifests":[]}}"#);
        assert!(Manifest::parse(idx.as_bytes(), None).unwrap_err().contains("an index"));
        let odd = format!(r#"{{"schemaVersion":2,"mediaType":"application/x-odd","config":{{"digest":"{D1}"}}}}"#);
        assert!(Manifest::parse(odd.as_bytes(), None).unwrap_err().contains("unsupported"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Manifest::parse(b"not json", None).is_err());
        assert!(Manifest::parse(b"{}", None).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":2,"config":{"digest":"md5:x"}}"#, None).is_err());
    }
}
