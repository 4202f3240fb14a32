//! Images to seed a [`super::MemStore`] with: single images (a config and layers, of a
//! platform, made unique by a seed), OCI indexes of them, and referrers (an image with a
//! `subject`). Each is the exact bytes a registry would serve, with everything it references.

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::manifest::MediaType;

const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A manifest (an image or an index) with everything it references.
#[derive(Clone, Debug)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: MediaType,
    /// An image's config and layers, by content.
    pub blobs: Vec<Vec<u8>>,
    /// An index's entries.
    pub children: Vec<Image>,
    /// How an index (or a referrers listing) names it.
    descriptor: Value,
}

impl Image {
    fn new(doc: Value, media_type: MediaType, blobs: Vec<Vec<u8>>, children: Vec<Image>, about: Value) -> Image {
        let bytes = serde_json::to_vec(&doc).expect("serialisable");
        let digest = Digest::of(&bytes);
        let mut descriptor = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        if let (Value::Object(d), Value::Object(about)) = (&mut descriptor, about) {
            d.extend(about);
        }
        Image { bytes, digest, media_type, blobs, children, descriptor }
    }

    /// The digests of an image's config and layers.
    pub fn blob_digests(&self) -> Vec<Digest> {
        self.blobs.iter().map(|b| Digest::of(b)).collect()
    }

    /// The digest of its `n`th layer (the config is not a layer).
    pub fn layer(&self, n: usize) -> Digest {
        Digest::of(&self.blobs[n + 1])
    }
}

/// An image to build: linux/amd64, one layer of its own, unless told otherwise.
pub struct ImageBuilder {
    seed: String,
    arch: String,
    created: Option<String>,
    layers: Vec<String>,
    subject: Option<(Value, String)>,
}

/// A single image made unique by `seed`.
pub fn image(seed: &str) -> ImageBuilder {
    ImageBuilder {
        seed: seed.to_string(),
        arch: "amd64".into(),
        created: None,
        layers: vec![format!("layer of {seed}")],
        subject: None,
    }
}

impl ImageBuilder {
    pub fn arch(mut self, arch: &str) -> Self {
        self.arch = arch.into();
        self
    }

    /// Its config's `created` (RFC 3339).
    pub fn created(mut self, when: &str) -> Self {
        self.created = Some(when.into());
        self
    }

    /// Its layers, by content (the same content in two images is the same blob).
    pub fn layers(mut self, layers: &[&str]) -> Self {
        self.layers = layers.iter().map(|l| l.to_string()).collect();
        self
    }

    /// A referrer of `subject`, of `artifact_type` (a signature, an SBOM).
    pub fn refers_to(mut self, subject: &Image, artifact_type: &str) -> Self {
        let d = json!({"mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len()});
        self.subject = Some((d, artifact_type.into()));
        self
    }

    pub fn build(self) -> Image {
        let mut config = json!({"architecture": self.arch, "os": "linux", "seed": self.seed});
        if let Some(c) = self.created {
            config["created"] = c.into();
        }
        let config = serde_json::to_vec(&config).expect("serialisable");
        let layers: Vec<Vec<u8>> = self.layers.into_iter().map(String::into_bytes).collect();
        let descriptor =
            |media_type: &str, b: &[u8]| json!({"mediaType": media_type, "digest": Digest::of(b), "size": b.len()});
        let mut doc = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OCI_MANIFEST,
            "config": descriptor(CONFIG, &config),
            "layers": layers.iter().map(|l| descriptor(LAYER, l)).collect::<Vec<_>>(),
        });
        let mut about = json!({"platform": {"architecture": self.arch, "os": "linux"}});
        if let Some((subject, artifact_type)) = self.subject {
            doc["artifactType"] = artifact_type.clone().into();
            doc["subject"] = subject;
            about = json!({"artifactType": artifact_type});
        }
        let blobs = std::iter::once(config).chain(layers).collect();
        Image::new(doc, MediaType::OCI_MANIFEST, blobs, Vec::new(), about)
    }
}

/// A cosign signature's artifact type.
pub const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// An index of two images: `amd` (linux/amd64), then `arm` (linux/arm64).
pub fn multi_arch() -> Image {
    index(&[&image("amd").build(), &image("arm").arch("arm64").build()])
}

/// An OCI index of `children` (images of their platforms, nested indexes, or referrers: a
/// fallback tag's listing).
pub fn index(children: &[&Image]) -> Image {
    let entries: Vec<Value> = children.iter().map(|c| c.descriptor.clone()).collect();
    let doc = json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": entries});
    let children = children.iter().map(|c| (*c).clone()).collect();
    Image::new(doc, MediaType::OCI_INDEX, Vec::new(), children, json!({}))
}
