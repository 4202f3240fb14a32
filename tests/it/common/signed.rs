//! [`Signed`]: a signed image with an SBOM and attestations at the source, the fixture of every
//! test about referrers (to a registry, and through a bundle), and the assertion on the
//! referrers tag that lists them at a destination without the referrers API.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// The repository of the [`Signed`] fixture.
pub const SIGNED: &str = "signed/app";
/// The artifact type (and layer media type) of the SBOM.
pub const SPDX: &str = "application/spdx+json";
/// The artifact type (and layer media type) of the in-toto attestation.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// How the source publishes the referrers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// As oras and cosign do against a registry without the referrers API: `sha256-HEX` tags
    /// at the source, and a cosign legacy `.sig` tag.
    FallbackTags,
    /// Artifacts pushed by digest only (a proxy answers the referrers API for them).
    ByDigestOnly,
}

/// A signed image at the source, in [`SIGNED`].
pub struct Signed {
    /// `v1`: an OCI index of a linux/amd64 image and a buildkit attestation manifest.
    pub top: Pushed,
    pub img: Image,
    pub attestation: Pushed,
    /// The cosign legacy signature, tagged `sha256-HEX.sig` (HEX of `top`), when published
    /// with [`Published::FallbackTags`].
    pub legacy_sig: Option<Pushed>,
    /// OCI 1.1 artifacts whose `subject` is `top`.
    pub sig: Pushed,
    pub sbom: Pushed,
    pub att: Pushed,
    /// A signature whose `subject` is `sbom`.
    pub sbom_sig: Pushed,
}

impl Signed {
    /// Pushes the signed image `signed/app:v1` and its referrers to `c`.
    pub fn push(c: &Client, published: Published) -> Signed {
        let img = push_image_untagged(c, SIGNED, ImageKind::Oci, "linux", "amd64", "");
        let (attestation, entry) = push_attestation_manifest(c, &img);
        let top = push_manifest_json(
            c,
            SIGNED,
            Some("v1"),
            OCI_INDEX,
            &index_json(OCI_INDEX, vec![platform_descriptor(&img), entry]),
        );
        let subject = top.descriptor();
        let sig = push_artifact_with_subject(c, SIGNED, COSIGN_SIG, SIMPLESIGNING, &subject);
        let sbom = push_artifact_with_subject(c, SIGNED, SPDX, SPDX, &subject);
        let att = push_artifact_with_subject(c, SIGNED, IN_TOTO, IN_TOTO, &subject);
        let sbom_sig = push_artifact_with_subject(c, SIGNED, COSIGN_SIG, SIMPLESIGNING, &sbom.descriptor());
        let mut legacy_sig = None;
        if published == Published::FallbackTags {
            let listed: Vec<serde_json::Value> = [&sig, &sbom, &att].iter().map(|a| a.referrer_descriptor()).collect();
            push_referrers_tag(c, SIGNED, &top.digest, &listed);
            push_referrers_tag(c, SIGNED, &sbom.digest, &[sbom_sig.referrer_descriptor()]);
            legacy_sig = Some(push_cosign_signature(c, SIGNED, &top.digest));
        }
        Signed { top, img, attestation, legacy_sig, sig, sbom, att, sbom_sig }
    }

    /// The referrers of `top`.
    pub fn referrers(&self) -> [&Pushed; 3] {
        [&self.sig, &self.sbom, &self.att]
    }

    /// Every manifest that must follow the image: the referrers, the SBOM's signature, and the
    /// legacy signature.
    pub fn followers(&self) -> Vec<&Pushed> {
        let mut v = vec![&self.sig, &self.sbom, &self.att, &self.sbom_sig];
        v.extend(self.legacy_sig.as_ref());
        v
    }

    /// cosign's tag of the legacy signature: `sha256-HEX.sig`.
    pub fn sig_tag(&self) -> String {
        format!("{}.sig", referrers_tag(&self.top.digest))
    }

    /// Every digest of the image (the index, its two manifests) and of its followers, with
    /// their blobs.
    pub fn digests(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::from([self.top.digest.clone(), self.img.digest.clone()]);
        all.extend(self.img.blobs());
        for m in std::iter::once(&self.attestation).chain(self.followers()) {
            all.insert(m.digest.clone());
            all.extend(m.blobs.iter().cloned());
        }
        all
    }
}

/// A buildkit-style attestation manifest for `img` (pushed by digest) and its index entry:
/// platform unknown/unknown, `vnd.docker.reference.*` annotations.
fn push_attestation_manifest(c: &Client, img: &Image) -> (Pushed, serde_json::Value) {
    let statement = serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": "pkg:docker/app", "digest": {"sha256": img.digest.trim_start_matches("sha256:")}}],
        "predicate": {"fixture": format!("{:016x}", unique_seed())},
    }))
    .unwrap();
    let annotations = serde_json::json!({"in-toto.io/predicate-type": "https://spdx.dev/Document"});
    let layer = OneLayer { media_type: IN_TOTO, payload: &statement, annotations, platform: "unknown" };
    let att = push_one_layer_manifest(c, SIGNED, None, layer);
    let mut entry = att.descriptor();
    entry["platform"] = serde_json::json!({"architecture": "unknown", "os": "unknown"});
    entry["annotations"] = serde_json::json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": img.digest,
    });
    (att, entry)
}

/// `dst`'s referrers tag `sha256-HEX` of `subject` in `repo` is an OCI index listing each of
/// `want` once, with the descriptor the source gives it (media type, size, artifactType), and
/// nothing that is not in `repo` at `dst`.
pub fn assert_referrers_tag_lists(dst: &Client, repo: &str, subject: &str, want: &[&Pushed]) {
    let tag = referrers_tag(subject);
    let m = dst.get_manifest(repo, &tag).unwrap_or_else(|| panic!("{repo}:{tag} missing at the destination"));
    assert_eq!(m.content_type, OCI_INDEX, "{repo}:{tag} content type");
    let v = m.json();
    assert_eq!(v["mediaType"], OCI_INDEX, "{repo}:{tag} mediaType");
    let text = String::from_utf8_lossy(&m.bytes).to_string();
    let mut seen: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for d in v["manifests"].as_array().unwrap_or_else(|| panic!("{tag} has no manifests: {text}")) {
        let digest = d["digest"].as_str().unwrap_or_default().to_string();
        assert!(seen.insert(digest.clone(), d.clone()).is_none(), "{digest} listed twice in {tag}: {text}");
        assert!(dst.head_manifest(repo, &digest).is_some(), "{tag} lists {digest}, which is not in {repo}");
    }
    for p in want {
        let got = seen.get(&p.digest).unwrap_or_else(|| panic!("{tag} does not list {}: {text}", p.digest));
        let expect = p.referrer_descriptor();
        for k in ["mediaType", "size", "artifactType"] {
            assert_eq!(got[k], expect[k], "{k} of {} in {tag}: {text}", p.digest);
        }
    }
}
