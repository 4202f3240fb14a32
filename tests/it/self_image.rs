//! `image-syncer self-image oci:DIR[:NAME][:TAG]`: the tool's own image written into an OCI
//! layout without a Docker daemon — one uncompressed layer holding the binary byte for byte
//! (mode 0755) and a `/tmp` of mode 1777, nothing else; a config with the entrypoint, a non-root
//! numeric user and the binary's architecture; `org.opencontainers.image.*` annotations; the
//! same digests on a re-run. skopeo reads it, `copy` pushes it to a registry byte-exact, binaries
//! of two architectures make an index, and the image travels in a bundle with other images. A
//! binary that would not run in an image without a base (dynamically linked, no ELF) is refused.
//!
//! The binaries are small hand-made ELF files (the tool reads only their headers; no container
//! ever runs them); the smoke test makes the image of the binary under test itself. Everything
//! is checked from the outside: the files on disk, the `tar` crate, skopeo, a real registry.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::layout::{blob_path, index_of, reachable, skopeo};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const IMAGE_NAME: &str = "io.containerd.image.name";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const X86_64: u16 = 62;
const AARCH64: u16 = 183;

/// A 64-bit little-endian ELF executable for `machine` with a `PT_LOAD` program header, a
/// `PT_INTERP` naming `interp` when given (a dynamically linked binary), then `payload`.
pub fn elf(machine: u16, interp: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let phnum: u16 = if interp.is_some() { 2 } else { 1 };
    let mut b = vec![0u8; 64];
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&phnum.to_le_bytes());
    let mut load = [0u8; 56];
    load[..4].copy_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&load);
    if let Some(path) = interp {
        let at = 64 + 56 * u64::from(phnum);
        let mut ph = [0u8; 56];
        ph[..4].copy_from_slice(&3u32.to_le_bytes());
        ph[8..16].copy_from_slice(&at.to_le_bytes());
        ph[32..40].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes());
        b.extend_from_slice(&ph);
        b.extend_from_slice(path.as_bytes());
        b.push(0);
    }
    b.extend_from_slice(payload);
    b
}

/// Writes `bytes` as an executable file `name` in `dir`.
fn binary(dir: &TestDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `self-image ARGS` dated 2023-11-14T22:13:20Z.
fn self_image(args: &[&str]) -> Run {
    run_syncer_env(&[&["self-image"], args].concat(), &[("SOURCE_DATE_EPOCH", "1700000000")])
}

/// The file of `digest` in the layout, parsed as JSON.
pub(crate) fn json_blob(dir: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(blob_path(dir, digest)).unwrap()).unwrap()
}

/// One member of a layer: (path as written, entry type byte, mode, uid, gid, contents).
pub(crate) type Member = (String, u8, u32, u64, u64, Vec<u8>);

pub(crate) fn members(tar_bytes: &[u8]) -> Vec<Member> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().expect("the layer is a tar") {
        let mut e = e.expect("a tar member");
        let h = e.header().clone();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes()).to_string();
        out.push((path, h.entry_type().as_byte(), h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap(), body));
    }
    out
}

/// Checks the image `manifest` of the layout `dir`: one uncompressed layer holding `binary`
/// byte for byte at /usr/local/bin/image-syncer (0755, root's) and /tmp (1777), nothing else;
/// the config's entrypoint, non-root user, `architecture` and date; the annotations.
fn assert_image(dir: &Path, manifest: &serde_json::Value, binary: &[u8], architecture: &str) {
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    assert_eq!(layers[0]["mediaType"], LAYER_TAR);
    let tar_bytes = std::fs::read(blob_path(dir, layers[0]["digest"].as_str().unwrap())).unwrap();
    let found = members(&tar_bytes);
    let dirs: Vec<(&str, u32)> = found.iter().filter(|m| m.1 == b'5').map(|m| (m.0.as_str(), m.2)).collect();
    assert_eq!(dirs, [("tmp/", 0o1777), ("usr/", 0o755), ("usr/local/", 0o755), ("usr/local/bin/", 0o755)]);
    let files: Vec<&Member> = found.iter().filter(|m| m.1 != b'5').collect();
    assert_eq!(files.len(), 1, "only the binary, no shell: {:?}", found.iter().map(|m| &m.0).collect::<Vec<_>>());
    let (path, kind, mode, uid, gid, body) = files[0];
    assert_eq!((path.as_str(), *kind, *mode, *uid, *gid), ("usr/local/bin/image-syncer", b'0', 0o755, 0, 0));
    assert!(body == binary, "the layer's binary differs from the one given ({} vs {} bytes)", body.len(), binary.len());

    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let config = json_blob(dir, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], architecture);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "SOURCE_DATE_EPOCH dates the image");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/image-syncer"]));
    let user = config["config"]["User"].as_str().expect("a user");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric user (runAsNonRoot checks it)");
    assert_ne!(uid, 0, "not root: {user}");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([layers[0]["digest"]]),
        "uncompressed: diff_id = digest"
    );

    let ann = &manifest["annotations"];
    assert_eq!(ann["org.opencontainers.image.version"], VERSION);
    assert_eq!(ann["org.opencontainers.image.title"], "image-syncer");
    assert_eq!(ann["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
}

#[test]
fn self_image_writes_the_binary_as_an_image_in_a_layout() {
    let dir = TestDir::new("self-image");
    let bin_bytes = elf(AARCH64, None, &random_bytes(unique_seed(), 5000));
    let bin = binary(&dir, "image-syncer-arm64", &bin_bytes);
    let out = dir.join("image");
    let target = format!("oci:{}", p(&out));

    let run = self_image(&[&target, "--binary", p(&bin)]);
    run.assert_ok();
    let layout: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index = index_of(&out);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["annotations"][REF_NAME], VERSION, "tagged with the version: {index}");
    assert!(entries[0]["annotations"][IMAGE_NAME].is_null(), "no name asked for, only the tag: {index}");
    let digest = entries[0]["digest"].as_str().unwrap().to_string();
    assert!(run.stdout.contains(&digest), "the digest is printed:\n{run}");
    assert!(run.stdout.contains(&format!("image-syncer copy {target}:{VERSION} ")), "how to push it:\n{run}");
    assert_eq!(reachable(&out).len(), 3, "manifest, config, layer, each checked");
    assert_image(&out, &json_blob(&out, &digest), &bin_bytes, "arm64");

    // skopeo reads it: the entrypoint, one layer, the manifest we wrote.
    let image = format!("{target}:{VERSION}");
    let config: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", "--config", &image])).unwrap();
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/image-syncer"]));
    let inspect: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &image])).unwrap();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(1), "{inspect}");
    assert_eq!(sha256_digest(&skopeo(&["inspect", "--raw", &image])), digest);

    // The same binary and date: the same bytes, nothing rewritten.
    let before = std::fs::read(out.join("index.json")).unwrap();
    self_image(&[&target, "--binary", p(&bin)]).assert_ok();
    assert_eq!(std::fs::read(out.join("index.json")).unwrap(), before, "a re-run writes the same image");
}

#[test]
fn self_image_is_pushed_by_copy_byte_exact() {
    let dir = TestDir::new("self-image");
    let bin_bytes = elf(X86_64, None, &random_bytes(unique_seed(), 70_000));
    let bin = binary(&dir, "image-syncer", &bin_bytes);
    let out = dir.join("image.tar");
    let target = format!("oci-archive:{}:v1,latest", p(&out));
    self_image(&[&target, "--binary", p(&bin)]).assert_ok();

    let reg = Registry::start();
    let auth = dir.write("auth.yaml", &auth_yaml(&auth_for(&[&reg])));
    let from = format!("oci-archive:{}:v1", p(&out));
    run_syncer(&["--auth", p(&auth), "copy", &from, &reg.repo("tools/image-syncer:v1")]).assert_ok();

    // What the archive holds, read with tar, then compared with what the registry serves.
    let unpacked = dir.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tar::Archive::new(std::fs::File::open(&out).unwrap()).unpack(&unpacked).unwrap();
    let index = index_of(&unpacked);
    let tags: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().filter_map(|e| e["annotations"][REF_NAME].as_str()).collect();
    assert_eq!(tags, ["v1", "latest"], "{index}");
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        reg.api().head_manifest("tools/image-syncer", "v1"),
        Some(digest.clone()),
        "the registry has the layout's digest"
    );
    let manifest = json_blob(&unpacked, &digest);
    assert_image(&unpacked, &manifest, &bin_bytes, "amd64");
    for d in [&manifest["config"], &manifest["layers"][0]] {
        let d = d["digest"].as_str().unwrap();
        assert_eq!(
            reg.api().get_blob("tools/image-syncer", d),
            Some(std::fs::read(blob_path(&unpacked, d)).unwrap()),
            "{d}"
        );
    }
}

#[test]
fn self_image_of_two_architectures_travels_in_a_bundle_with_other_images() {
    let src = Registry::start();
    let dst = Registry::start();
    let app = push_simple(src.api(), "team/app", "v1");
    let dir = TestDir::new("self-image");
    let bundle = dir.join("bundle");
    let bundle_ref = format!("oci:{}", p(&bundle));
    job(&[&src], &[(&src.repo("team/app:v1"), &[&bundle_ref])]).run(&[]).assert_ok();

    let amd64 = elf(X86_64, None, &random_bytes(unique_seed(), 3000));
    let arm64 = elf(AARCH64, None, &random_bytes(unique_seed(), 4000));
    let (a, b) = (binary(&dir, "amd64", &amd64), binary(&dir, "arm64", &arm64));
    let named = format!("{bundle_ref}:registry.example.com/tools/image-syncer:v1");
    self_image(&[&named, "--binary", p(&a), "--binary", p(&b)]).assert_ok();

    let index = index_of(&bundle);
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["annotations"][IMAGE_NAME] == "registry.example.com/tools/image-syncer:v1")
        .unwrap_or_else(|| panic!("the image is named in the bundle: {index}"))
        .clone();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "the other image is kept: {index}");
    assert_eq!(entry["mediaType"], OCI_INDEX);
    let top = json_blob(&bundle, entry["digest"].as_str().unwrap());
    let platforms: Vec<(String, String)> = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["platform"]["os"].as_str().unwrap().into(), m["platform"]["architecture"].as_str().unwrap().into()))
        .collect();
    assert_eq!(platforms, [("linux".to_string(), "amd64".to_string()), ("linux".into(), "arm64".into())]);
    for (child, (bytes, arch)) in
        top["manifests"].as_array().unwrap().iter().zip([(&amd64, "amd64"), (&arm64, "arm64")])
    {
        assert_image(&bundle, &json_blob(&bundle, child["digest"].as_str().unwrap()), bytes, arch);
    }

    // The site imports the whole bundle: the tool's image lands beside the other one.
    job(&[&dst], &[(&bundle_ref, &[&dst.repo("mirror")])]).run(&[]).assert_ok();
    assert_eq!(dst.api().head_manifest("mirror/tools/image-syncer", "v1").as_deref(), entry["digest"].as_str());
    for child in top["manifests"].as_array().unwrap() {
        let d = child["digest"].as_str().unwrap();
        assert_eq!(dst.api().head_manifest("mirror/tools/image-syncer", d).as_deref(), Some(d));
    }
    assert_eq!(dst.api().head_manifest("mirror/team/app", "v1"), Some(app.digest));
}

#[test]
fn self_image_refuses_a_binary_that_cannot_run_without_a_base() {
    let dir = TestDir::new("self-image");
    let out = dir.join("image");
    let target = format!("oci:{}", p(&out));
    let dynamic = binary(&dir, "dynamic", &elf(X86_64, Some("/lib/ld-musl-x86_64.so.1"), b"code"));
    let script = binary(&dir, "script", b"#!/bin/sh\necho hi\n");
    let (a, b) = (binary(&dir, "a", &elf(X86_64, None, b"a")), binary(&dir, "b", &elf(X86_64, None, b"b")));
    for (args, names, says) in [
        (vec!["--binary", p(&dynamic)], p(&dynamic), "/lib/ld-musl-x86_64.so.1"),
        (vec!["--binary", p(&script)], p(&script), "not an ELF executable"),
        (vec!["--binary", p(&a), "--binary", p(&b)], p(&b), "amd64"),
    ] {
        let run = self_image(&[&[target.as_str()][..], &args].concat());
        assert_eq!(run.code, Some(2), "unusable input:\n{run}");
        run.assert_stderr_names(names, &[says]);
        assert!(!out.exists(), "nothing is written:\n{run}");
    }
    let run = self_image(&[&target, "--binary", p(&dynamic)]);
    run.assert_stderr_names("dynamically linked", &["x86_64-unknown-linux-musl"]);
}
