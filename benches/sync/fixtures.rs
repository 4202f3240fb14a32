//! Fixtures: the images the sections push into the source registry through its API (one with a
//! large layer streamed from a pseudo-random generator, so that a 256 MiB layer is never held in
//! memory; small images of three random layers; many tiny images sharing one layer), reading a
//! blob back as a reference figure, and the checks that every copy really happened (the same
//! manifest digests at both ends), so that a fast figure never comes from a run that silently
//! did nothing.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::common::{
    agent_config, docker_json, random_bytes, unique_seed, Client, Registry, DOCKER_CONFIG, DOCKER_LAYER,
    DOCKER_MANIFEST,
};
use super::{LAYERS_PER_SMALL_IMAGE, MIB};

/// The harness's agent settings, with time for the large layers.
fn agent() -> ureq::Agent {
    agent_config().timeout_global(Some(Duration::from_secs(600))).build().into()
}

/// `mib` MiB of pseudo-random bytes produced 1 MiB at a time, hashed as they are read.
struct RandomStream {
    seed: u64,
    remaining: u64,
    chunk: Vec<u8>,
    pos: usize,
    index: u64,
    hasher: Sha256,
}

impl RandomStream {
    fn new(mib: u64) -> RandomStream {
        RandomStream {
            seed: unique_seed(),
            remaining: mib * MIB,
            chunk: Vec::new(),
            pos: 0,
            index: 0,
            hasher: Sha256::new(),
        }
    }
}

impl Read for RandomStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.chunk.len() {
            self.index += 1;
            let len = self.remaining.min(MIB) as usize;
            self.chunk = random_bytes(self.seed ^ self.index.wrapping_mul(0x9E37_79B9_7F4A_7C15), len);
            self.pos = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.hasher.update(&buf[..n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn absolute(addr: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("http://{addr}{location}")
    }
}

fn location(resp: &ureq::http::Response<ureq::Body>, what: &str) -> Result<String, String> {
    resp.headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| format!("{what}: no Location header"))
}

/// Uploads `mib` MiB of pseudo-random bytes as one blob without holding it in memory: POST, one
/// streamed (chunked) PATCH hashing the bytes on the way, then PUT `?digest=`. Returns the digest.
fn push_streamed_blob(addr: &str, repo: &str, mib: u64) -> Result<String, String> {
    let agent = agent();
    let resp = agent
        .post(&format!("http://{addr}/v2/{repo}/blobs/uploads/"))
        .send_empty()
        .map_err(|e| format!("POST upload: {e}"))?;
    if resp.status().as_u16() != 202 {
        return Err(format!("POST upload: status {}", resp.status()));
    }
    let url = absolute(addr, &location(&resp, "POST upload")?);
    let mut stream = RandomStream::new(mib);
    let resp = agent
        .patch(&url)
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_reader(&mut stream))
        .map_err(|e| format!("PATCH upload: {e}"))?;
    if resp.status().as_u16() != 202 {
        return Err(format!("PATCH upload: status {}", resp.status()));
    }
    if stream.remaining != 0 {
        return Err("PATCH upload: the body was not fully sent".into());
    }
    let digest = format!("sha256:{:x}", stream.hasher.finalize());
    let url = absolute(addr, &location(&resp, "PATCH upload")?);
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = agent.put(&format!("{url}{sep}digest={digest}")).send_empty().map_err(|e| format!("PUT upload: {e}"))?;
    if resp.status().as_u16() != 201 {
        return Err(format!("PUT upload {digest}: status {}", resp.status()));
    }
    Ok(digest)
}

/// A docker schema2 manifest for `config` + `layers` (digest, size).
pub(super) fn manifest(config: &[u8], config_digest: &str, layers: &[(String, u64)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, size)| serde_json::json!({"mediaType": DOCKER_LAYER, "size": size, "digest": d}))
        .collect();
    docker_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": layers,
    }))
}

pub(super) fn config_blob(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": [format!("BENCH={:016x}", unique_seed())]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("serialise config")
}

/// Pushes `repo:tag` with one streamed layer of `mib` MiB. Returns (manifest digest, layer digest).
pub(super) fn push_streamed_image(reg: &Registry, repo: &str, tag: &str, mib: u64) -> Result<(String, String), String> {
    let layer = push_streamed_blob(&reg.addr(), repo, mib)?;
    let config = config_blob(std::slice::from_ref(&layer));
    let config_digest = reg.api().push_blob(repo, &config);
    let bytes = manifest(&config, &config_digest, &[(layer.clone(), mib * MIB)]);
    let digest = reg.api().put_manifest(repo, tag, DOCKER_MANIFEST, &bytes);
    Ok((digest, layer))
}

/// Pushes `count` distinct images `repo:t000..` with three small random layers each, from a few
/// threads. Returns tag → manifest digest.
pub(super) fn push_small_images(c: &Client, repo: &str, count: usize) -> Result<BTreeMap<String, String>, String> {
    let threads = 4usize;
    let results: Vec<(String, String)> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| {
                            let tag = format!("t{i:03}");
                            let mut layers = Vec::new();
                            for _ in 0..LAYERS_PER_SMALL_IMAGE {
                                let seed = unique_seed();
                                let data = random_bytes(seed, 8 * 1024 + (seed % (24 * 1024)) as usize);
                                layers.push((c.push_blob(repo, &data), data.len() as u64));
                            }
                            let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
                            let config = config_blob(&diff_ids);
                            let config_digest = c.push_blob(repo, &config);
                            let bytes = manifest(&config, &config_digest, &layers);
                            (tag.clone(), c.put_manifest(repo, &tag, DOCKER_MANIFEST, &bytes))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("fixture thread")).collect()
    });
    Ok(results.into_iter().collect())
}

/// GETs a blob and discards it; returns the number of bytes read.
pub(super) fn read_blob(addr: &str, repo: &str, digest: &str) -> Result<u64, String> {
    let mut resp =
        agent().get(&format!("http://{addr}/v2/{repo}/blobs/{digest}")).call().map_err(|e| format!("GET blob: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(format!("GET blob {digest}: status {}", resp.status()));
    }
    io::copy(&mut resp.body_mut().as_reader(), &mut io::sink()).map_err(|e| format!("GET blob body: {e}"))
}

/// Every `tag` of `digests` is at `dst_repo` of the destination with the same manifest digest.
pub(super) fn check_tags(dst: &Client, dst_repo: &str, digests: &BTreeMap<String, String>) -> Result<(), String> {
    for (tag, digest) in digests {
        match dst.head_manifest(dst_repo, tag) {
            Some(d) if &d == digest => {}
            other => return Err(format!("{dst_repo}:{tag}: destination has {other:?}, source {digest}")),
        }
    }
    Ok(())
}

pub(super) fn check_same(
    src: &Client,
    dst: &Client,
    repo: &str,
    dst_repo: &str,
    tag: &str,
    want: &str,
) -> Result<(), String> {
    let s = src.head_manifest(repo, tag);
    let d = dst.head_manifest(dst_repo, tag);
    if s.as_deref() != Some(want) || d.as_deref() != Some(want) {
        return Err(format!("{repo}:{tag} -> {dst_repo}:{tag}: source {s:?}, destination {d:?}, expected {want}"));
    }
    Ok(())
}

/// Pushes `count` tiny images `repo:t0000..` from 8 threads: one 4 KiB layer shared by all of them
/// (pushed once) and a config of their own each, so every tag is a distinct manifest. Three
/// requests per tag (POST + PUT of the config, PUT of the manifest). Returns tag → digest.
pub(super) fn push_many_tags(c: &Client, repo: &str, count: usize) -> BTreeMap<String, String> {
    let layer = random_bytes(unique_seed(), 4 * 1024);
    let layer = (c.push_blob(repo, &layer), layer.len() as u64);
    tags_in_parallel(count, 8, |tag| {
        let config = config_blob(std::slice::from_ref(&layer.0));
        let config_digest = c.push_blob(repo, &config);
        let bytes = manifest(&config, &config_digest, std::slice::from_ref(&layer));
        let digest = c.put_manifest(repo, &tag, DOCKER_MANIFEST, &bytes);
        (tag, digest)
    })
    .into_iter()
    .collect()
}

/// `f` of each tag `t000…` of `count`, from `threads` threads.
pub(super) fn tags_in_parallel<T: Send>(count: usize, threads: usize, f: impl Fn(String) -> T + Sync) -> Vec<T> {
    let width = (count.max(2) - 1).to_string().len().max(3);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || (t..count).step_by(threads).map(|i| f(format!("t{i:0width$}"))).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("fixture thread")).collect()
    })
}

/// [`check_tags`] from 4 threads, and the destination lists exactly these tags.
pub(super) fn check_tags_parallel(dst: &Client, repo: &str, digests: &BTreeMap<String, String>) -> Result<(), String> {
    let listed = dst.tags(repo);
    if listed.len() != digests.len() {
        return Err(format!("{repo}: the destination lists {} tags, the source {}", listed.len(), digests.len()));
    }
    let items: Vec<(&String, &String)> = digests.iter().collect();
    let chunk = items.len().div_ceil(4).max(1);
    thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for (tag, digest) in part {
                        match dst.head_manifest(repo, tag) {
                            Some(d) if &d == *digest => {}
                            other => return Err(format!("{repo}:{tag}: destination has {other:?}, source {digest}")),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().expect("check thread"))
    })
}
