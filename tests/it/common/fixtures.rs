//! Fixture builders (images, indexes, big images, artifacts) and the assertions that a copy
//! is byte-exact at the destination. Manifests of any other shape (nested indexes, OCI 1.1
//! artifacts with a `subject`, referrers tags) are written as JSON: [`push_manifest_json`],
//! [`descriptor`], [`push_artifact_with_subject`], [`push_referrers_tag`].

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Docker,
    Oci,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Docker manifest list (children are docker schema2 images).
    List,
    /// OCI image index (children are OCI images).
    OciIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    /// Empty when none.
    pub variant: String,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: &str) -> Platform {
        Platform { os: os.into(), arch: arch.into(), variant: variant.into() }
    }
}

/// A pushed single-platform image.
#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub platform: Platform,
}

impl Image {
    /// Config + layers.
    pub fn blobs(&self) -> Vec<String> {
        let mut v = vec![self.config_digest.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

/// A pushed manifest list / OCI index.
#[derive(Debug, Clone)]
pub struct Index {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub children: Vec<Image>,
}

impl Index {
    pub fn child(&self, os: &str, arch: &str, variant: &str) -> &Image {
        let want = Platform::new(os, arch, variant);
        self.children.iter().find(|c| c.platform == want).unwrap_or_else(|| panic!("no child {os}/{arch}/{variant}"))
    }
}

fn build_and_push_image(
    c: &Client,
    repo: &str,
    reference: Option<&str>,
    kind: ImageKind,
    platform: Platform,
    layers_data: Vec<Vec<u8>>,
    created: &str,
) -> Image {
    let (mt, config_mt, layer_mt) = match kind {
        ImageKind::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        ImageKind::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    };
    let mut layer_descs = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for data in &layers_data {
        let d = c.push_blob(repo, data);
        diff_ids.push(serde_json::Value::String(d.clone()));
        layer_descs.push(serde_json::json!({
            "mediaType": layer_mt,
            "size": data.len(),
            "digest": d,
        }));
        layers.push(d);
    }
    let mut config = serde_json::json!({
        "architecture": platform.arch,
        "os": platform.os,
    });
    if !platform.variant.is_empty() {
        config["variant"] = serde_json::Value::String(platform.variant.clone());
    }
    config["created"] = serde_json::Value::String(created.into());
    config["config"] = serde_json::json!({"Env": [format!("FIXTURE={:016x}", unique_seed())]});
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = c.push_blob(repo, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {
            "mediaType": config_mt,
            "size": config_bytes.len(),
            "digest": config_digest,
        },
        "layers": layer_descs,
    });
    let bytes = docker_json(&manifest);
    let digest = sha256_digest(&bytes);
    let reference = reference.unwrap_or(&digest).to_string();
    let pushed = c.put_manifest(repo, &reference, mt, &bytes);
    assert_eq!(pushed, digest);
    Image { repo: repo.to_string(), digest, bytes, media_type: mt.to_string(), config_digest, layers, platform }
}

/// The `created` time of every fixture image's config unless a test gives one.
pub const FIXTURE_CREATED: &str = "2024-01-01T00:00:00Z";

fn small_layers() -> Vec<Vec<u8>> {
    (0..2)
        .map(|_| {
            let seed = unique_seed();
            random_bytes(seed, 2048 + (seed % 4096) as usize)
        })
        .collect()
}

/// Pushes a single-platform image with two random layers (a few KiB each) and a config blob.
/// `variant` may be empty.
pub fn push_image(c: &Client, repo: &str, tag: &str, kind: ImageKind, os: &str, arch: &str, variant: &str) -> Image {
    build_and_push_image(c, repo, Some(tag), kind, Platform::new(os, arch, variant), small_layers(), FIXTURE_CREATED)
}

/// Pushes a linux/amd64 docker image under `tag` (the common case).
pub fn push_simple(c: &Client, repo: &str, tag: &str) -> Image {
    push_image(c, repo, tag, ImageKind::Docker, "linux", "amd64", "")
}

/// Pushes a linux/amd64 docker image whose layers are `layers` (shared layers are pushed once
/// per repository; the registry keeps one copy).
pub fn push_image_with_layers(c: &Client, repo: &str, tag: &str, layers: Vec<Vec<u8>>) -> Image {
    build_and_push_image(
        c,
        repo,
        Some(tag),
        ImageKind::Docker,
        Platform::new("linux", "amd64", ""),
        layers,
        FIXTURE_CREATED,
    )
}

/// Pushes the same image bytes under an extra tag.
pub fn tag_image(c: &Client, img: &Image, tag: &str) {
    c.put_manifest(&img.repo, tag, &img.media_type, &img.bytes);
}

/// Pushes one small linux/amd64 docker image under every tag of `tags` (the image once, then
/// only its manifest per extra tag: cheap, for tests about which tags are chosen).
pub fn push_under_tags(c: &Client, repo: &str, tags: &[&str]) -> Image {
    let (first, rest) = tags.split_first().expect("at least one tag");
    let img = push_simple(c, repo, first);
    for t in rest {
        tag_image(c, &img, t);
    }
    img
}

/// Pushes a linux/amd64 docker image whose config says it was `created` at this RFC 3339 time,
/// under `tag` (by digest only when `None`).
pub fn push_image_created(c: &Client, repo: &str, tag: Option<&str>, created: &str) -> Image {
    build_and_push_image(c, repo, tag, ImageKind::Docker, Platform::new("linux", "amd64", ""), small_layers(), created)
}

/// Pushes a docker manifest list of `children` (already in `repo`, e.g. from
/// [`push_image_created`] without a tag), in this order, under `tag`.
pub fn push_list_of(c: &Client, repo: &str, tag: &str, children: &[&Image]) -> Pushed {
    let entries = children.iter().map(|i| platform_descriptor(i)).collect();
    push_manifest_json(c, repo, Some(tag), DOCKER_LIST, &index_json(DOCKER_LIST, entries))
}

/// Pushes an image by digest only (no tag).
pub fn push_image_untagged(c: &Client, repo: &str, kind: ImageKind, os: &str, arch: &str, variant: &str) -> Image {
    build_and_push_image(c, repo, None, kind, Platform::new(os, arch, variant), small_layers(), FIXTURE_CREATED)
}

/// Pushes an image whose first layer is `mib` MiB of pseudo-random bytes (plus a small layer).
pub fn push_big_image(c: &Client, repo: &str, tag: &str, mib: usize) -> Image {
    let big = random_bytes(unique_seed(), mib * 1024 * 1024);
    let small = random_bytes(unique_seed(), 3000);
    build_and_push_image(
        c,
        repo,
        Some(tag),
        ImageKind::Docker,
        Platform::new("linux", "amd64", ""),
        vec![big, small],
        FIXTURE_CREATED,
    )
}

/// Pushes an OCI artifact shaped like a Helm chart: an OCI manifest whose config and layer have
/// non-image media types (and a config without platform fields) plus annotations.
pub fn push_artifact(c: &Client, repo: &str, tag: &str) -> Image {
    let config_bytes = serde_json::to_vec(&serde_json::json!({
        "name": "chart",
        "version": format!("0.1.{}", unique_seed() % 1000),
        "apiVersion": "v2",
    }))
    .unwrap();
    let config_digest = c.push_blob(repo, &config_bytes);
    let content = random_bytes(unique_seed(), 5000);
    let layer = c.push_blob(repo, &content);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "size": config_bytes.len(),
            "digest": config_digest,
        },
        "layers": [{
            "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            "size": content.len(),
            "digest": layer,
        }],
        "annotations": {"org.opencontainers.image.title": "chart"},
    });
    let bytes = docker_json(&manifest);
    let digest = c.put_manifest(repo, tag, OCI_MANIFEST, &bytes);
    Image {
        repo: repo.to_string(),
        digest,
        bytes,
        media_type: OCI_MANIFEST.to_string(),
        config_digest,
        layers: vec![layer],
        platform: Platform::new("", "", ""),
    }
}

/// Pushes one child image per platform (by digest), then the list / index under `tag`.
/// Platforms are `(os, arch, variant)`, variant may be empty.
pub fn push_index(c: &Client, repo: &str, tag: &str, kind: IndexKind, platforms: &[(&str, &str, &str)]) -> Index {
    let (mt, child_kind) = match kind {
        IndexKind::List => (DOCKER_LIST, ImageKind::Docker),
        IndexKind::OciIndex => (OCI_INDEX, ImageKind::Oci),
    };
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (os, arch, variant) in platforms {
        let child = push_image_untagged(c, repo, child_kind, os, arch, variant);
        let mut platform = serde_json::json!({"architecture": arch, "os": os});
        if !variant.is_empty() {
            platform["variant"] = serde_json::Value::String(variant.to_string());
        }
        entries.push(serde_json::json!({
            "mediaType": child.media_type,
            "size": child.bytes.len(),
            "digest": child.digest,
            "platform": platform,
        }));
        children.push(child);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": entries,
    });
    let bytes = docker_json(&index);
    let digest = c.put_manifest(repo, tag, mt, &bytes);
    Index { digest, bytes, media_type: mt.to_string(), children }
}

/// `(digest, os, arch, variant)` of each entry of a list / index.
pub fn index_entries(bytes: &[u8]) -> Vec<(String, Platform)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("index JSON");
    v["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .map(|m| {
            let pf = &m["platform"];
            (
                m["digest"].as_str().unwrap_or_default().to_string(),
                Platform::new(
                    pf["os"].as_str().unwrap_or_default(),
                    pf["architecture"].as_str().unwrap_or_default(),
                    pf["variant"].as_str().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Asserts that `dst` holds `img` in `repo` under `reference` with identical digest and bytes, and
/// that the config and every layer blob have identical bytes.
pub fn assert_image_copied(src: &Client, dst: &Client, img: &Image, dst_repo: &str, reference: &str) {
    let m = dst
        .get_manifest(dst_repo, reference)
        .unwrap_or_else(|| panic!("{dst_repo}:{reference} missing at destination"));
    assert_eq!(m.digest, img.digest, "{dst_repo}:{reference} digest");
    assert!(m.bytes == img.bytes, "{dst_repo}:{reference} manifest bytes differ");
    assert_eq!(m.content_type, img.media_type, "{dst_repo}:{reference} content type");
    for blob in img.blobs() {
        let want = src.get_blob(&img.repo, &blob).unwrap_or_else(|| panic!("source blob {blob} missing"));
        let got = dst.get_blob(dst_repo, &blob).unwrap_or_else(|| panic!("blob {blob} missing in {dst_repo}"));
        assert_eq!(got.len(), want.len(), "blob {blob} length");
        assert!(got == want, "blob {blob} bytes differ");
    }
}

/// Asserts an index and all its children were copied unchanged into `dst_repo` under `tag`.
pub fn assert_index_copied(src: &Client, dst: &Client, idx: &Index, dst_repo: &str, tag: &str) {
    let m = dst.get_manifest(dst_repo, tag).unwrap_or_else(|| panic!("{dst_repo}:{tag} missing at destination"));
    assert_eq!(m.digest, idx.digest, "{dst_repo}:{tag} index digest");
    assert!(m.bytes == idx.bytes, "{dst_repo}:{tag} index bytes differ");
    assert_eq!(m.content_type, idx.media_type, "{dst_repo}:{tag} content type");
    for child in &idx.children {
        assert_image_copied(src, dst, child, dst_repo, &child.digest);
    }
}

/// The OCI empty descriptor's media type (the config of an artifact that has none).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The blob an empty descriptor points at: the two bytes `{}`.
pub const EMPTY_JSON: &[u8] = b"{}";
/// The digest of [`EMPTY_JSON`].
pub const EMPTY_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// A manifest pushed from JSON ([`push_manifest_json`]): its exact bytes and the blobs it names.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// The config and layer digests (none for an index).
    pub blobs: Vec<String>,
}

impl Pushed {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("manifest JSON")
    }

    /// `{mediaType, digest, size}`, as an index entry names it.
    pub fn descriptor(&self) -> serde_json::Value {
        descriptor(&self.media_type, &self.bytes)
    }

    /// Its descriptor as a referrers list names it (OCI 1.1): [`Pushed::descriptor`] plus
    /// `artifactType` (the manifest's, else its config's media type) and the manifest's
    /// `annotations` when it has any.
    pub fn referrer_descriptor(&self) -> serde_json::Value {
        let v = self.json();
        let mut d = self.descriptor();
        let artifact_type = v["artifactType"].as_str().or(v["config"]["mediaType"].as_str());
        if let Some(t) = artifact_type {
            d["artifactType"] = t.into();
        }
        if v["annotations"].is_object() {
            d["annotations"] = v["annotations"].clone();
        }
        d
    }
}

/// `{mediaType, digest, size}` of `bytes`.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()})
}

/// An index entry for a pushed image: its descriptor with its `platform` (`variant` when set).
pub fn platform_descriptor(img: &Image) -> serde_json::Value {
    let mut d = descriptor(&img.media_type, &img.bytes);
    d["platform"] = serde_json::json!({"architecture": img.platform.arch, "os": img.platform.os});
    if !img.platform.variant.is_empty() {
        d["platform"]["variant"] = img.platform.variant.clone().into();
    }
    d
}

/// Pushes `bytes` as a blob of `repo`; its descriptor with `media_type`.
pub fn push_blob_descriptor(c: &Client, repo: &str, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    c.push_blob(repo, bytes);
    descriptor(media_type, bytes)
}

/// `{schemaVersion: 2, mediaType, manifests}`: an OCI index or a docker manifest list.
pub fn index_json(media_type: &str, manifests: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})
}

/// Pushes `json` (serialised as docker does, see [`docker_json`]) as a manifest of `media_type`
/// under `reference` — a tag, or its own digest when `None`. Its blobs (config, layers) must
/// already be in `repo`, and an index's children too: the registry checks.
pub fn push_manifest_json(
    c: &Client,
    repo: &str,
    reference: Option<&str>,
    media_type: &str,
    json: &serde_json::Value,
) -> Pushed {
    let bytes = docker_json(json);
    let digest = sha256_digest(&bytes);
    let pushed = c.put_manifest(repo, reference.unwrap_or(&digest), media_type, &bytes);
    assert_eq!(pushed, digest);
    let mut blobs: Vec<String> = json["config"]["digest"].as_str().map(str::to_string).into_iter().collect();
    for layer in json["layers"].as_array().into_iter().flatten() {
        blobs.push(layer["digest"].as_str().expect("layer digest").to_string());
    }
    Pushed { repo: repo.to_string(), digest, bytes, media_type: media_type.to_string(), blobs }
}

/// Pushes an OCI 1.1 artifact: an OCI manifest with `artifactType`, the empty config
/// ([`OCI_EMPTY`], blob [`EMPTY_JSON`]), one small JSON layer of `layer_media_type` (unique
/// content), a `created` annotation, and `subject` when given (a descriptor; the registry does
/// not need to hold it). Under `reference`, or by digest when `None`.
pub fn push_oci_artifact(
    c: &Client,
    repo: &str,
    reference: Option<&str>,
    artifact_type: &str,
    layer_media_type: &str,
    subject: Option<&serde_json::Value>,
) -> Pushed {
    let config = push_blob_descriptor(c, repo, OCI_EMPTY, EMPTY_JSON);
    let content = serde_json::to_vec(&serde_json::json!({
        "fixture": format!("{:016x}", unique_seed()),
        "artifactType": artifact_type,
    }))
    .unwrap();
    let mut layer = push_blob_descriptor(c, repo, layer_media_type, &content);
    layer["annotations"] = serde_json::json!({"org.opencontainers.image.title": "payload.json"});
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
    });
    if let Some(s) = subject {
        m["subject"] = s.clone();
    }
    m["annotations"] = serde_json::json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z"});
    push_manifest_json(c, repo, reference, OCI_MANIFEST, &m)
}

/// [`push_oci_artifact`] by digest with a `subject`: a referrer of `subject`.
pub fn push_artifact_with_subject(
    c: &Client,
    repo: &str,
    artifact_type: &str,
    layer_media_type: &str,
    subject: &serde_json::Value,
) -> Pushed {
    push_oci_artifact(c, repo, None, artifact_type, layer_media_type, Some(subject))
}

/// cosign's signature artifact type, and the media type of its simplesigning payload.
pub const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A cosign legacy signature of `subject_digest` in `repo` (an OCI manifest with one
/// simplesigning layer carrying the signature annotation, unique content), tagged
/// `sha256-HEX.sig` as cosign tags it.
pub fn push_cosign_signature(c: &Client, repo: &str, subject_digest: &str) -> Pushed {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("example.com/{repo}")},
            "image": {"docker-manifest-digest": subject_digest},
            "type": "cosign container image signature",
        },
        "optional": {"fixture": format!("{:016x}", unique_seed())},
    }))
    .unwrap();
    let annotations = serde_json::json!({"dev.cosignproject.cosign/signature": "MEUCIQD0fixture"});
    let layer = OneLayer { media_type: SIMPLESIGNING, payload: &payload, annotations, platform: "" };
    let tag = format!("{}.sig", referrers_tag(subject_digest));
    push_one_layer_manifest(c, repo, Some(&tag), layer)
}

/// The one layer of a signature or attestation manifest: its bytes and annotations, and the
/// os and architecture its config names.
pub struct OneLayer<'a> {
    pub media_type: &'a str,
    pub payload: &'a [u8],
    pub annotations: serde_json::Value,
    pub platform: &'a str,
}

/// An OCI manifest of `layer` and a config over it, pushed under `tag` (or by digest), as cosign
/// and buildkit write signatures and attestations.
pub fn push_one_layer_manifest(c: &Client, repo: &str, tag: Option<&str>, layer: OneLayer) -> Pushed {
    let mut descriptor = push_blob_descriptor(c, repo, layer.media_type, layer.payload);
    descriptor["annotations"] = layer.annotations;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": layer.platform,
        "os": layer.platform,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer.payload)]},
    }))
    .unwrap();
    let config = push_blob_descriptor(c, repo, OCI_CONFIG, &config);
    let m =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [descriptor]});
    push_manifest_json(c, repo, tag, OCI_MANIFEST, &m)
}

/// The referrers tag schema's tag for `digest`: `sha256:HEX` -> `sha256-HEX`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Pushes the referrers tag `sha256-HEX` of `subject_digest` as oras and cosign do against a
/// registry without the referrers API: an OCI index whose `manifests` are `referrers` (use
/// [`Pushed::referrer_descriptor`]). They must already be in `repo`.
pub fn push_referrers_tag(c: &Client, repo: &str, subject_digest: &str, referrers: &[serde_json::Value]) -> Pushed {
    push_manifest_json(
        c,
        repo,
        Some(&referrers_tag(subject_digest)),
        OCI_INDEX,
        &index_json(OCI_INDEX, referrers.to_vec()),
    )
}

/// Asserts that `dst` holds `m` in `dst_repo` under `reference` (tag or digest) with identical
/// digest, bytes and `Content-Type`, and every blob it names with identical bytes.
pub fn assert_manifest_copied(src: &Client, dst: &Client, m: &Pushed, dst_repo: &str, reference: &str) {
    let got = dst
        .get_manifest(dst_repo, reference)
        .unwrap_or_else(|| panic!("{dst_repo}:{reference} ({}) missing at destination", m.digest));
    assert_eq!(got.digest, m.digest, "{dst_repo}:{reference} digest");
    assert!(got.bytes == m.bytes, "{dst_repo}:{reference} manifest bytes differ");
    assert_eq!(got.content_type, m.media_type, "{dst_repo}:{reference} content type");
    for blob in &m.blobs {
        let want = src.get_blob(&m.repo, blob).unwrap_or_else(|| panic!("source blob {blob} missing"));
        let have = dst.get_blob(dst_repo, blob).unwrap_or_else(|| panic!("blob {blob} missing in {dst_repo}"));
        assert!(have == want, "blob {blob} bytes differ in {dst_repo}");
    }
}
