//! The JSON documents of the image, as the OCI image spec v1.1 lays them out: the config
//! (<https://github.com/opencontainers/image-spec/blob/v1.1.0/config.md>), the manifest
//! (<https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md>) and, for binaries
//! of several architectures, the index (<https://github.com/opencontainers/image-spec/blob/v1.1.0/image-index.md>).
//! Built from their inputs alone, in a fixed field order, so the same binary, version and time
//! give the same digests.

use serde_json::{json, Map, Value};

use super::layer::BINARY_PATH;
use crate::digest::Digest;
use crate::manifest::MediaType;

pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// An uncompressed layer (see [`super::layer`]).
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The user the image runs as: numeric (no `/etc/passwd` needed, and Kubernetes'
/// `runAsNonRoot` can check it), not root; 65532 as distroless' `nonroot`.
pub const USER: &str = "65532:65532";

/// `org.opencontainers.image.*` of this release, dated `created` (RFC 3339)
/// (<https://github.com/opencontainers/image-spec/blob/v1.1.0/annotations.md>).
pub fn annotations(created: &str) -> Map<String, Value> {
    let mut a = Map::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            a.insert(format!("org.opencontainers.image.{k}"), v.into());
        }
    };
    put("created", created);
    put("title", env!("CARGO_PKG_NAME"));
    put("description", env!("CARGO_PKG_DESCRIPTION"));
    put("version", env!("CARGO_PKG_VERSION"));
    put("licenses", env!("CARGO_PKG_LICENSE"));
    put("source", env!("CARGO_PKG_REPOSITORY"));
    a
}

/// A descriptor of content with these bytes' digest and length.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size })
}

/// The config of the image whose one layer is `layer` (its digest is its `diff_id`: it is not
/// compressed), for `architecture`.
pub fn config(architecture: &str, layer: &Digest, created: &str, labels: &Map<String, Value>) -> Vec<u8> {
    let doc = json!({
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "User": USER,
            "Env": ["PATH=/usr/local/bin"],
            "Entrypoint": [BINARY_PATH],
            "WorkingDir": "/tmp",
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.as_str()] },
        "history": [{
            "created": created,
            "created_by": format!("image-syncer {} self-image", env!("CARGO_PKG_VERSION")),
        }],
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The manifest of one image.
pub fn manifest(config: &Value, layer: &Value, annotations: &Map<String, Value>) -> Vec<u8> {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_MANIFEST.as_str(),
        "config": config,
        "layers": [layer],
        "annotations": annotations,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The index of images for several architectures: `(manifest descriptor, architecture)`.
pub fn index(images: &[(Value, &str)], annotations: &Map<String, Value>) -> Vec<u8> {
    let manifests: Vec<Value> = images
        .iter()
        .map(|(d, arch)| {
            let mut d = d.clone();
            d["platform"] = json!({ "architecture": arch, "os": "linux" });
            d
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_INDEX.as_str(),
        "manifests": manifests,
        "annotations": annotations,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}
