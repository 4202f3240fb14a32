//! Media types: what a manifest, an index entry or a server's `Content-Type` says a document
//! is. The copy decides by them (an index is planned entry by entry, an image blob by blob,
//! schema 1 is refused, a non-distributable layer is left where it is), so they are a type with
//! the predicates those decisions need, not strings compared wherever they are read.
//!
//! Any text is a media type (registries serve artifacts of types no list can hold); the
//! constants are the ones the copy treats specially. Modelled on go-containerregistry's
//! `pkg/v1/types/types.go`.

use std::borrow::Cow;
use std::fmt;

/// A media type, e.g. `application/vnd.oci.image.manifest.v1+json`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MediaType(Cow<'static, str>);

/// Sent on every manifest request (GET and HEAD): the four current types first, schema1 after
/// them so that old images still come through, and `application/json` last of all.
///
/// `application/json` because Artifactory answers a manifest request `406 Not Acceptable` when
/// its `Accept` lacks it (concourse/docker-image-resource#40 and #41, deitch/docker_registry2#40;
/// the Docker daemon always sends it, as the schema 1 type of its distribution client), at the
/// lowest weight so that a registry still chooses a real manifest type when it has one. What
/// such an answer is, is read from the body's `mediaType` (see `Manifest::parse`). Not `*/*`,
/// which says nothing about what we can read (and a manifest GET accepting only that is
/// answered `404` by distribution: NVIDIA/enroot#273).
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/vnd.docker.distribution.manifest.v1+json;q=0.5, \
application/json;q=0.1";

impl MediaType {
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: MediaType = MediaType::known("application/vnd.docker.distribution.manifest.v2+json");
    /// Docker manifest list.
    pub const DOCKER_LIST: MediaType = MediaType::known("application/vnd.docker.distribution.manifest.list.v2+json");
    pub const OCI_MANIFEST: MediaType = MediaType::known("application/vnd.oci.image.manifest.v1+json");
    pub const OCI_INDEX: MediaType = MediaType::known("application/vnd.oci.image.index.v1+json");
    /// Docker schema 1, unsigned and signed (refused: see [`MediaType::is_schema1`]).
    pub const DOCKER_SCHEMA1: MediaType = MediaType::known("application/vnd.docker.distribution.manifest.v1+json");
    pub const DOCKER_SCHEMA1_SIGNED: MediaType =
        MediaType::known("application/vnd.docker.distribution.manifest.v1+prettyjws");
    /// Docker's "foreign" layer (Windows base layers served from elsewhere).
    pub const DOCKER_FOREIGN_LAYER: MediaType =
        MediaType::known("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
    /// OCI's non-distributable layers (image-spec `layer.md`), in their three spellings.
    pub const OCI_NONDISTRIBUTABLE_LAYER: MediaType =
        MediaType::known("application/vnd.oci.image.layer.nondistributable.v1.tar");
    pub const OCI_NONDISTRIBUTABLE_LAYER_GZIP: MediaType =
        MediaType::known("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
    pub const OCI_NONDISTRIBUTABLE_LAYER_ZSTD: MediaType =
        MediaType::known("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd");

    const fn known(s: &'static str) -> MediaType {
        MediaType(Cow::Borrowed(s))
    }

    /// A media type as a document writes it (a `mediaType` or `artifactType` field): kept exactly.
    pub fn new(s: impl Into<String>) -> MediaType {
        MediaType(Cow::Owned(s.into()))
    }

    /// A media type as a server's `Content-Type` gives it: parameters (`; charset=utf-8`)
    /// dropped, lowercased.
    pub fn from_header(content_type: &str) -> MediaType {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        MediaType::new(essence)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A Docker manifest list or an OCI index: its entries are manifests.
    pub fn is_index(&self) -> bool {
        *self == MediaType::DOCKER_LIST || *self == MediaType::OCI_INDEX
    }

    /// A Docker schema 2 or OCI image manifest: a config and layers.
    pub fn is_image(&self) -> bool {
        *self == MediaType::DOCKER_MANIFEST || *self == MediaType::OCI_MANIFEST
    }

    /// Docker schema 1 (deprecated since 2017, refused by current registries).
    pub fn is_schema1(&self) -> bool {
        *self == MediaType::DOCKER_SCHEMA1 || *self == MediaType::DOCKER_SCHEMA1_SIGNED
    }

    /// Whether this names some kind of manifest (an index, an image, an artifact manifest…),
    /// as opposed to the `application/json` or `text/plain` some servers answer with.
    pub fn names_a_manifest(&self) -> bool {
        self.is_index() || self.0.contains("manifest")
    }

    /// A layer that may not be copied to another registry: Docker's foreign layers and OCI's
    /// non-distributable ones (its descriptor's `urls` say where it lives).
    pub fn is_non_distributable(&self) -> bool {
        [
            MediaType::DOCKER_FOREIGN_LAYER,
            MediaType::OCI_NONDISTRIBUTABLE_LAYER,
            MediaType::OCI_NONDISTRIBUTABLE_LAYER_GZIP,
            MediaType::OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
        ]
        .contains(self)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MediaType, D::Error> {
        String::deserialize(d).map(MediaType::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        assert!(MediaType::OCI_INDEX.is_index() && MediaType::DOCKER_LIST.is_index());
        assert!(MediaType::OCI_MANIFEST.is_image() && !MediaType::OCI_MANIFEST.is_index());
        assert!(MediaType::DOCKER_SCHEMA1_SIGNED.is_schema1());
        assert!(MediaType::new("application/vnd.oci.artifact.manifest.v1+json").names_a_manifest());
        assert!(!MediaType::new("application/json").names_a_manifest());
        for t in [
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        ] {
            assert!(MediaType::new(t).is_non_distributable(), "{t}");
        }
        assert!(!MediaType::new("application/vnd.oci.image.layer.v1.tar+gzip").is_non_distributable());
    }

    /// The weight of `media_type` in [`ACCEPT`] (1 when it has none), `None` when absent.
    fn weight(media_type: &str) -> Option<f32> {
        ACCEPT.split(',').map(str::trim).find_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            (parts.next()? == media_type)
                .then(|| parts.find_map(|p| p.strip_prefix("q=")).map_or(1.0, |q| q.parse().expect("a q-value")))
        })
    }

    #[test]
    fn accept_carries_application_json_below_every_manifest_type() {
        let json = weight("application/json").expect("Artifactory wants application/json in Accept");
        for t in [
            MediaType::DOCKER_MANIFEST,
            MediaType::DOCKER_LIST,
            MediaType::OCI_MANIFEST,
            MediaType::OCI_INDEX,
            MediaType::DOCKER_SCHEMA1,
            MediaType::DOCKER_SCHEMA1_SIGNED,
        ] {
            let w = weight(t.as_str()).unwrap_or_else(|| panic!("{t} accepted"));
            assert!(w > json, "{t} ({w}) must be preferred to application/json ({json})");
        }
        assert_eq!(weight("*/*"), None);
        // What such an answer says is no manifest type: the body decides.
        assert!(!MediaType::from_header("Application/JSON; charset=UTF-8").names_a_manifest());
    }

    #[test]
    fn a_header_gives_its_essence() {
        let t = MediaType::from_header("Application/Vnd.OCI.Image.Index.v1+json; charset=utf-8");
        assert_eq!(t, MediaType::OCI_INDEX);
        assert_eq!(MediaType::new("x/y").to_string(), "x/y");
        let back: MediaType = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), "\"a/b\"");
    }
}
