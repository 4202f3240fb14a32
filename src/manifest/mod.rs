//! Manifests: media types, the few fields the copy needs, and digests.
//!
//! We read manifests only to learn which blobs and child manifests they reference; the bytes we
//! push are always the bytes the source served (the digest is the sha256 of exactly those bytes).
//! The structs below therefore hold just what we need, and unknown fields are ignored: a
//! manifest is never re-serialised from them. (`oci-spec` types were not used: they reject
//! Docker schema1 and Docker media types that we must pass through, and re-serialising is what
//! we must avoid.)

mod platform;

use std::fmt;

use serde::Deserialize;

pub use platform::{filter_index, Filtered, PlatformFilter};

use crate::reference::Digest;

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
    fs_layers: Vec<FsLayer>,
}

#[derive(Deserialize)]
struct FsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: Digest,
}

/// What a manifest references.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A single image: config + layers (Docker v2 schema2, OCI manifest, OCI artifacts).
    Image { config: Descriptor, layers: Vec<Descriptor> },
    /// A Docker manifest list or OCI index.
    Index { manifests: Vec<Descriptor> },
    /// Docker v2 schema1: layers only, no sizes.
    Schema1 { blobs: Vec<Digest> },
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

impl Manifest {
    /// Parse `bytes`; `content_type` is what the registry said it served.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest JSON: {e}"))?;
        let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
        let known =
            |t: &str| [DOCKER_V2, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, DOCKER_V1, DOCKER_V1_SIGNED].contains(&t);
        let kind = if raw.schema_version == Some(1) {
            Kind::Schema1 { blobs: raw.fs_layers.into_iter().map(|l| l.blob_sum).collect() }
        } else if let Some(manifests) = raw.manifests {
            Kind::Index { manifests }
        } else if let Some(config) = raw.config {
            Kind::Image { config, layers: raw.layers }
        } else {
            return Err("manifest has neither config, layers nor manifests".into());
        };
        let media_type = match (header, raw.media_type) {
            (Some(h), _) if known(&h) => h,
            (_, Some(m)) if !m.is_empty() => m,
            _ => match &kind {
                Kind::Schema1 { .. } => DOCKER_V1_SIGNED.to_string(),
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
            Kind::Schema1 { blobs } => blobs.iter().for_each(|b| add(b, None)),
            Kind::Index { .. } => {}
        }
        out
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
    fn schema1_and_foreign() {
        let m = format!(r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{D1}"}},{{"blobSum":"{D1}"}}]}}"#);
        let p = Manifest::parse(m.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, DOCKER_V1_SIGNED);
        assert_eq!(p.blobs().len(), 1);
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","urls":["https://x"]}}]}}"#
        );
        assert_eq!(Manifest::parse(m.as_bytes(), None).unwrap().blobs().len(), 1);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Manifest::parse(b"not json", None).is_err());
        assert!(Manifest::parse(b"{}", None).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":2,"config":{"digest":"md5:x"}}"#, None).is_err());
    }
}
