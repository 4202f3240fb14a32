//! Manifests: media types, the few fields the copy needs, and digests.
//!
//! We read manifests only to learn which blobs and child manifests they reference; the bytes we
//! push are always the bytes the source served (the digest is the sha256 of exactly those bytes).
//! The structs below therefore hold just what we need, and unknown fields are ignored: a
//! manifest is never re-serialised from them. (`oci-spec` types were not used: they reject
//! Docker schema1 and Docker media types that we must pass through, and re-serialising is what
//! we must avoid.)

mod error;
mod media_type;
mod platform;
mod referrers;

use std::fmt;

use serde::Deserialize;

pub use error::{Doc, Error};
pub use media_type::{MediaType, ACCEPT};
pub use platform::{apply, entries, filter_index, Filtered, Keep, PlatformFilter};
pub use referrers::{cosign_tags, fallback_tag, is_index, is_referrer_tag, merge_fallback, Referrer};

use crate::digest::Digest;

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
    pub media_type: MediaType,
    pub digest: Digest,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A layer that lives outside the registry (Docker's foreign layers, OCI's
    /// non-distributable ones, with the `urls` it is served from): it is not copied.
    fn is_foreign(&self) -> bool {
        !self.urls.is_empty() && self.media_type.is_non_distributable()
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<MediaType>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
    #[serde(rename = "fsLayers", default)]
    fs_layers: Option<serde_json::Value>,
}

impl Raw {
    /// Docker schema 1 by its body: `schemaVersion: 1`, or its `fsLayers`.
    fn is_schema1(&self) -> bool {
        self.schema_version == Some(1) || self.fs_layers.is_some()
    }
}

/// Whether `bytes` are a Docker schema 1 manifest by their body alone, for answers whose
/// `Content-Type` names no manifest type (old Artifactory serves schema 1 as `application/json`:
/// moby/moby#19400).
pub fn is_schema1(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Raw>(bytes).is_ok_and(|raw| raw.is_schema1())
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
    pub media_type: MediaType,
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
    ///
    /// The media type pushed is the body's `mediaType` when it has one. A `Content-Type` naming
    /// another manifest type is an error (pushing the bytes under either type could make an image
    /// the source never had); a `Content-Type` that is no manifest type at all (`application/json`,
    /// `text/plain`: some servers say that; Artifactory answers `application/json` when a
    /// request accepts it, concourse/docker-image-resource#40) is ignored. A body without
    /// `mediaType` (allowed by OCI) takes the header's type, else the type its shape implies.
    /// Docker schema 1 is refused: see the README ("What gets copied").
    pub fn parse(bytes: &[u8], content_type: Option<&MediaType>) -> Result<Manifest, Error> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| Error::json(Doc::Manifest, e))?;
        let header = content_type.filter(|h| h.names_a_manifest());
        let schema1 = |t: Option<&MediaType>| t.is_some_and(MediaType::is_schema1);
        if raw.is_schema1() || schema1(header) || schema1(raw.media_type.as_ref()) {
            return Err(Error::Schema1);
        }
        let kind = if let Some(manifests) = raw.manifests {
            Kind::Index { manifests }
        } else if let Some(config) = raw.config {
            Kind::Image { config, layers: raw.layers }
        } else {
            return Err(Error::NotAManifest);
        };
        let body = raw.media_type.filter(|m| !m.is_empty());
        if let (Some(h), Some(b)) = (header, &body) {
            if h != b {
                return Err(Error::Conflict { served: h.clone(), body: b.clone() });
            }
        }
        let shape_fits = |t: &MediaType| match &kind {
            Kind::Index { .. } => t.is_index(),
            Kind::Image { .. } => t.is_image(),
        };
        let media_type = match body.or_else(|| header.cloned()) {
            Some(t) if shape_fits(&t) => t,
            Some(t) if t.is_index() || t.is_image() => {
                return Err(Error::Shape { media_type: t, content: kind.shape() })
            }
            Some(t) => return Err(Error::Unsupported(t)),
            None => match &kind {
                Kind::Index { .. } => MediaType::OCI_INDEX,
                Kind::Image { .. } => MediaType::OCI_MANIFEST,
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
    const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn header(t: &str) -> Option<MediaType> {
        Some(MediaType::from_header(t))
    }

    #[test]
    fn docker_image() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","config":{{"mediaType":"x","digest":"{D1}","size":5}},
            "layers":[{{"mediaType":"l","digest":"{D2}","size":7}},{{"mediaType":"l","digest":"{D2}","size":7}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes(), Some(&MediaType::DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.media_type, MediaType::DOCKER_MANIFEST);
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
        let p = Manifest::parse(m.as_bytes(), Some(&MediaType::from_header("application/octet-stream"))).unwrap();
        assert_eq!(p.media_type, MediaType::OCI_INDEX);
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
        assert_eq!(e, Error::Schema1);
        assert_eq!(Manifest::parse(b"{}", Some(&MediaType::DOCKER_SCHEMA1_SIGNED)).unwrap_err(), Error::Schema1);
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{D2}","urls":["https://x"]}}]}}"#
        );
        assert_eq!(Manifest::parse(m.as_bytes(), None).unwrap().blobs().len(), 1);
    }

    #[test]
    fn oci_non_distributable_layers_are_left_out_too() {
        for t in
            ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar"]
        {
            let m = format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}},"layers":[{{"mediaType":"{t}","digest":"{D2}","urls":["https://x"]}}]}}"#
            );
            let kept = Manifest::parse(m.as_bytes(), None).unwrap().blobs().len();
            assert_eq!(kept, if t.contains("nondistributable") { 1 } else { 2 }, "{t}");
        }
    }

    #[test]
    fn content_type_and_body_must_agree() {
        let m = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{D1}","size":1}}}}"#);
        let e = Manifest::parse(m.as_bytes(), header(DOCKER_V2).as_ref()).unwrap_err().to_string();
        assert!(e.contains(DOCKER_V2) && e.contains(OCI_MANIFEST), "{e}");
        // Not a manifest type at all: ignored, the body decides.
        let p = Manifest::parse(m.as_bytes(), header("application/json; charset=utf-8").as_ref()).unwrap();
        assert_eq!(p.media_type, MediaType::OCI_MANIFEST);
        assert_eq!(
            Manifest::parse(m.as_bytes(), Some(&MediaType::OCI_MANIFEST)).unwrap().media_type,
            MediaType::OCI_MANIFEST
        );
        // No mediaType in the body: the header's type, when it fits the shape.
        let bare = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":1}}}}"#);
        let parsed = Manifest::parse(bare.as_bytes(), header(DOCKER_V2).as_ref()).unwrap();
        assert_eq!(parsed.media_type, MediaType::DOCKER_MANIFEST);
        let e = Manifest::parse(bare.as_bytes(), Some(&MediaType::DOCKER_LIST)).unwrap_err().to_string();
        assert!(e.contains("an image"), "{e}");
        let idx = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2}","manifests":[]}}"#);
        assert!(Manifest::parse(idx.as_bytes(), None).unwrap_err().to_string().contains("an index"));
        let odd = format!(r#"{{"schemaVersion":2,"mediaType":"application/x-odd","config":{{"digest":"{D1}"}}}}"#);
        assert!(Manifest::parse(odd.as_bytes(), None).unwrap_err().to_string().contains("unsupported"));
    }

    #[test]
    fn served_as_application_json_the_body_decides() {
        let json = header("application/json");
        let config = format!(r#""config":{{"digest":"{D1}","size":1}}"#);
        let entries = format!(r#""manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":1}}]"#);
        for (t, content) in [
            (MediaType::DOCKER_MANIFEST, &config),
            (MediaType::OCI_MANIFEST, &config),
            (MediaType::DOCKER_LIST, &entries),
            (MediaType::OCI_INDEX, &entries),
        ] {
            let m = format!(r#"{{"schemaVersion":2,"mediaType":"{t}",{content}}}"#);
            assert_eq!(Manifest::parse(m.as_bytes(), json.as_ref()).unwrap().media_type, t);
        }
        // Without mediaType: its shape, as without any header.
        let bare = |content: &str| format!(r#"{{"schemaVersion":2,{content}}}"#);
        assert_eq!(
            Manifest::parse(bare(&config).as_bytes(), json.as_ref()).unwrap().media_type,
            MediaType::OCI_MANIFEST
        );
        assert_eq!(Manifest::parse(bare(&entries).as_bytes(), json.as_ref()).unwrap().media_type, MediaType::OCI_INDEX);
        // Neither an image nor an index, or schema 1: refused, saying which.
        assert_eq!(Manifest::parse(br#"{"schemaVersion":2}"#, json.as_ref()).unwrap_err(), Error::NotAManifest);
        let s1 = format!(r#"{{"schemaVersion":1,"name":"a","fsLayers":[{{"blobSum":"{D1}"}}],"signatures":[]}}"#);
        assert_eq!(Manifest::parse(s1.as_bytes(), json.as_ref()).unwrap_err(), Error::Schema1);
        assert!(is_schema1(s1.as_bytes()));
        assert!(!is_schema1(bare(&config).as_bytes()) && !is_schema1(b"not json"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Manifest::parse(b"not json", None).is_err());
        assert!(Manifest::parse(b"{}", None).is_err());
        assert!(Manifest::parse(br#"{"schemaVersion":2,"config":{"digest":"md5:x"}}"#, None).is_err());
    }
}
