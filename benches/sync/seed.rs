//! Seeding a huge source fast: tiny images written straight into a stopped-or-running
//! `docker-registry`'s filesystem storage, in the layout distribution's storage driver reads
//! (`docker/registry/v2/blobs/sha256/<2>/<hex>/data`, and per repository the `_layers`,
//! `_manifests/revisions` and `_manifests/tags/<tag>/{current,index}` link files; see
//! distribution's `registry/storage/paths.go`,
//! <https://github.com/distribution/distribution/blob/main/registry/storage/paths.go>). The
//! test registries run without a cache, so what is written is served at once.
//!
//! Why: through the API a registry takes about 125 tags a second on 2 cores, so 100,000 tags
//! took 14 minutes to seed; written here they take about a minute. Only the huge section seeds
//! this way; every other section pushes through the API.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::common::{random_bytes, sha256_digest, unique_seed};
use super::fixtures::{config_blob, manifest, tags_in_parallel};

/// `count` tiny images (a shared 4 KiB layer, a config each) as tags `t000…` of `repo`, in the
/// storage under `data`; returns each tag's manifest digest.
pub fn tiny_images_on_disk(data: &Path, repo: &str, count: usize) -> Result<BTreeMap<String, String>, String> {
    let v2 = data.join("docker/registry/v2");
    let repo_dir = v2.join("repositories").join(repo);
    let layer = random_bytes(unique_seed(), 4 * 1024);
    let layer_digest = blob(&v2, &layer)?;
    link(&repo_dir.join("_layers"), &layer_digest)?;
    let layer = (layer_digest, layer.len() as u64);
    tags_in_parallel(count, 4, |tag| {
        let config = config_blob(std::slice::from_ref(&layer.0));
        let config_digest = blob(&v2, &config)?;
        link(&repo_dir.join("_layers"), &config_digest)?;
        let bytes = manifest(&config, &config_digest, std::slice::from_ref(&layer));
        let digest = blob(&v2, &bytes)?;
        link(&repo_dir.join("_manifests/revisions"), &digest)?;
        let tag_dir = repo_dir.join("_manifests/tags").join(&tag);
        write_link(&tag_dir.join("current"), &digest)?;
        link(&tag_dir.join("index"), &digest)?;
        Ok((tag, digest))
    })
    .into_iter()
    .collect()
}

/// The bytes as a blob of the storage; their digest.
fn blob(v2: &Path, bytes: &[u8]) -> Result<String, String> {
    let digest = sha256_digest(bytes);
    let hex = &digest["sha256:".len()..];
    let dir = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(dir.join("data"), bytes).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(digest)
}

/// `<dir>/sha256/<hex>/link`, naming `digest`.
fn link(dir: &Path, digest: &str) -> Result<(), String> {
    write_link(&dir.join("sha256").join(&digest["sha256:".len()..]), digest)
}

fn write_link(dir: &Path, digest: &str) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(dir.join("link"), digest).map_err(|e| format!("{}: {e}", dir.display()))
}
