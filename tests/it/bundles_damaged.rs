//! Bundles you can trust: a damaged or hostile bundle is refused as a whole — one line naming
//! the bundle and the fault, a non-zero exit, nothing pushed (the destination registry stays
//! empty) — and what the tool does not understand in a layout it writes into is kept.
//!
//! The bundles are built here by hand (files and tar headers written directly, never through
//! the code under test): a good OCI image next to the damage, so that importing "what still
//! reads" would show as a pushed image. Faults: an `index.json` entry whose digest is a path,
//! an `index.json` over the size limit, `imageLayoutVersion` 9.9.9, archive members `../x` and
//! `/abs`, a blob that is a symbolic link (in an archive and in a directory), and a rule over a
//! bundle that holds no image. Then: unknown entries (a `blake3:` digest, an unknown media type,
//! a `sha512:` image), annotations and files survive a run writing into the layout (directory
//! and archive), and a sha512 image goes layout → registry → layout → registry byte-exact.
//! Distribution 2.8 takes sha512 blobs and, by tag, a manifest referencing them (named by its
//! sha256 there), but refuses a manifest pushed under a sha512 digest
//! (distribution/distribution#4420): that refusal is tested as a clear error.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};

use crate::common::*;
use crate::layout::{index_of, syncer_copy, untar, IMAGE_NAME, REF_NAME};

// ---------------------------------------------------------------------------------------------
// Bundles built by hand.

/// `sha256:<hex>` or `sha512:<hex>` of `bytes`.
fn digest_of(alg: &str, bytes: &[u8]) -> String {
    match alg {
        "sha256" => sha256_digest(bytes),
        "sha512" => format!("sha512:{:x}", Sha512::digest(bytes)),
        other => panic!("no such algorithm {other}"),
    }
}

/// Where a layout keeps the blob `digest`.
fn blob_at(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    dir.join("blobs").join(alg).join(hex)
}

/// An OCI image as stored in a layout: its manifest and blobs, all named with one algorithm.
struct HandImage {
    manifest: Vec<u8>,
    digest: String,
    config: (String, Vec<u8>),
    layer: (String, Vec<u8>),
}

impl HandImage {
    fn new(alg: &str) -> HandImage {
        let layer = random_bytes(unique_seed(), 2000 + (unique_seed() % 2000) as usize);
        let layer_digest = digest_of(alg, &layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": FIXTURE_CREATED,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "fixture": format!("{:016x}", unique_seed()),
        }))
        .unwrap();
        let config_digest = digest_of(alg, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
        }))
        .unwrap();
        let digest = digest_of(alg, &manifest);
        HandImage { manifest, digest, config: (config_digest, config), layer: (layer_digest, layer) }
    }

    /// Its files written into the layout `dir`.
    fn write_into(&self, dir: &Path) {
        for (digest, bytes) in
            [(&self.digest, &self.manifest), (&self.config.0, &self.config.1), (&self.layer.0, &self.layer.1)]
        {
            let path = blob_at(dir, digest);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
    }

    /// Its `index.json` entry, named `example.com/NAME:TAG` as docker and containerd name them.
    fn entry(&self, name: &str, tag: &str) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": self.manifest.len(),
            "annotations": {IMAGE_NAME: format!("example.com/{name}:{tag}"), REF_NAME: tag},
        })
    }
}

/// A layout directory `dir` holding `images` (written) and the `index.json` entries `entries`.
fn write_layout(dir: &Path, images: &[&HandImage], entries: Vec<Value>) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for img in images {
        img.write_into(dir);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

/// One tar member: path (written raw, so `../x` and `/x` stay as they are), type, link target,
/// data.
type Member<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// The layout `dir` as the archive `out` (every file, paths relative to `dir`), then `extra`.
fn tar_layout(dir: &Path, out: &Path, extra: &[Member]) {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string();
                files.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    files.sort();
    let mut tar = tar::Builder::new(fs::File::create(out).unwrap());
    for (path, bytes) in &files {
        // The tar crate writes a GNU long name where a path passes ustar's 100 bytes (sha512).
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, bytes.as_slice()).unwrap();
    }
    for &(path, kind, target, data) in extra {
        let mut h = tar::Header::new_ustar();
        let ustar = h.as_ustar_mut().unwrap();
        ustar.name[..path.len()].copy_from_slice(path.as_bytes());
        ustar.linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }
    tar.finish().unwrap();
}

/// A layout with one good image (`example.com/good/app:v1`), and the image.
fn good_layout(dir: &Path) -> HandImage {
    let img = HandImage::new("sha256");
    write_layout(dir, &[&img], vec![img.entry("good/app", "v1")]);
    img
}

// ---------------------------------------------------------------------------------------------
// Importing, and what a refusal must look like.

/// Import `bundle` (everything in it) into `dst` below `imp/`, no retries.
fn import(bundle: &str, dst: &Registry) -> Run {
    rules_job(&[dst], &[(bundle.to_string(), dst.repo("imp"))]).run(&["--retries", "0"])
}

/// `run` refused the bundle at `path`: a non-zero exit without a panic, a line naming the bundle
/// and saying every one of `fault`, and nothing written to `dst` (no write request, an empty
/// catalog).
fn assert_refused(run: &Run, path: &Path, fault: &[&str], dst: &Registry) {
    run.assert_failed();
    let shown = p(path);
    let mut needles = vec![shown];
    needles.extend_from_slice(fault);
    assert!(
        !run.lines_with(&needles).is_empty(),
        "a line should name the bundle {shown} and say {}:\n{run}",
        fault.join(", ")
    );
    let writes = dst.writes();
    assert!(writes.is_empty(), "nothing may be pushed from a damaged bundle: {writes:?}\n{run}");
    assert_eq!(dst.api().catalog(), Vec::<String>::new(), "the destination holds nothing:\n{run}");
}

// ---------------------------------------------------------------------------------------------
// Damaged bundles.

/// An `index.json` entry whose digest is a path: the bundle is refused naming the entry and the
/// digest, and the good image beside it is not pushed (the old code dropped the entry in silence
/// and imported the rest, exit 0).
#[test]
fn an_index_entry_with_an_invalid_digest_refuses_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("bad-digest");
    let dir = bundle.join("oci");
    let img = good_layout(&dir);
    let mut index = index_of(&dir);
    let bad = json!({"mediaType": OCI_MANIFEST, "digest": "../../../../etc/passwd", "size": 10,
                     "annotations": {REF_NAME: "evil"}});
    index["manifests"].as_array_mut().unwrap().push(bad);
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    assert!(blob_at(&dir, &img.digest).is_file());

    let run = import(&format!("oci:{}", p(&dir)), &dst);
    assert_refused(&run, &dir, &["index.json entry 2", "\"evil\"", "invalid digest", "../../../../etc/passwd"], &dst);
}

/// An `index.json` over the 16 MiB limit (valid JSON, padded with spaces): refused naming the
/// file and the limit, before it is read whole (the old code parsed it and imported).
#[test]
fn an_oversize_index_json_refuses_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("big-index");
    let dir = bundle.join("oci");
    good_layout(&dir);
    let mut bytes = fs::read(dir.join("index.json")).unwrap();
    bytes.resize(17 << 20, b' ');
    fs::write(dir.join("index.json"), &bytes).unwrap();

    let run = import(&format!("oci:{}", p(&dir)), &dst);
    assert_refused(&run, &dir, &["index.json has 17825792 bytes", "16 MiB"], &dst);
}

/// `oci-layout` declaring `imageLayoutVersion` 9.9.9: refused naming the version, as a
/// directory and as an archive (the old code imported both).
#[test]
fn an_unknown_layout_version_refuses_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("version");
    let dir = bundle.join("oci");
    good_layout(&dir);
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"9.9.9"}"#).unwrap();
    let run = import(&format!("oci:{}", p(&dir)), &dst);
    assert_refused(&run, &dir, &["imageLayoutVersion", "9.9.9"], &dst);

    let tar = bundle.join("bundle.tar");
    tar_layout(&dir, &tar, &[]);
    let run = import(&format!("oci-archive:{}", p(&tar)), &dst);
    assert_refused(&run, &tar, &["imageLayoutVersion", "9.9.9"], &dst);
}

/// Archive members outside the layout, `../x` and an absolute path: refused naming the member
/// (the old code skipped over them and imported the image).
#[test]
fn archive_members_outside_the_layout_refuse_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("traversal");
    let dir = bundle.join("oci");
    good_layout(&dir);
    for (name, member) in [("dotdot.tar", "../escape.txt"), ("absolute.tar", "/tmp/image-syncer-absolute.txt")] {
        let tar = bundle.join(name);
        tar_layout(&dir, &tar, &[(member, tar::EntryType::Regular, "", b"hostile")]);
        let run = import(&format!("oci-archive:{}", p(&tar)), &dst);
        assert_refused(&run, &tar, &[&format!("member {member:?}"), "outside the layout"], &dst);
    }
}

/// A layout with a good image whose layer file is moved out to `outside/layer`: the bundle, the
/// image, the layer's member path.
fn layout_without_its_layer(bundle: &TestDir) -> (PathBuf, HandImage, String) {
    let dir = bundle.join("oci");
    let img = good_layout(&dir);
    fs::create_dir_all(bundle.join("outside")).unwrap();
    fs::rename(blob_at(&dir, &img.layer.0), bundle.join("outside/layer")).unwrap();
    let member = format!("blobs/sha256/{}", img.layer.0.trim_start_matches("sha256:"));
    (dir, img, member)
}

/// An archive whose layer member is a symbolic link to `/etc/hostname`: refused naming the member
/// (the old code skipped it and failed the image as "not in this layout").
#[test]
fn a_symlinked_blob_in_an_archive_refuses_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("symlink-tar");
    let (dir, _, member) = layout_without_its_layer(&bundle);
    let tar = bundle.join("bundle.tar");
    tar_layout(&dir, &tar, &[(&member, tar::EntryType::Symlink, "/etc/hostname", b"")]);
    let run = import(&format!("oci-archive:{}", p(&tar)), &dst);
    assert_refused(&run, &tar, &[&format!("member {member:?}"), "symbolic link", "/etc/hostname"], &dst);
}

/// A layout directory whose layer file is a symbolic link to a file outside the layout holding
/// exactly the layer's bytes: refused naming the blob (the old code read through the link and
/// imported the image).
#[test]
fn a_symlinked_blob_in_a_directory_refuses_the_bundle() {
    let dst = Registry::start();
    let bundle = TestDir::new("symlink-dir");
    let (dir, img, member) = layout_without_its_layer(&bundle);
    let layer = blob_at(&dir, &img.layer.0);
    std::os::unix::fs::symlink(bundle.join("outside/layer"), &layer).unwrap();
    assert_eq!(fs::read(&layer).unwrap(), img.layer.1, "the link leads to the right bytes");
    let run = import(&format!("oci:{}", p(&dir)), &dst);
    assert_refused(&run, &dir, &[&member, "symbolic link"], &dst);
}

/// A rule over a bundle that holds no image fails with a line naming the bundle (the old code
/// said "0 repositories in the namespace" and exited 0), whether the rule takes the whole
/// bundle or names an image in it.
#[test]
fn a_rule_over_an_empty_bundle_fails() {
    let dst = Registry::start();
    let bundle = TestDir::new("empty");
    let dir = bundle.join("oci");
    write_layout(&dir, &[], Vec::new());
    let run = import(&format!("oci:{}", p(&dir)), &dst);
    assert_refused(&run, &dir, &["holds no image"], &dst);
    assert_eq!(run.code, Some(1), "a rule failure, not unusable input:\n{run}");

    let named = format!("oci:{}:example.com/good/app", p(&dir));
    let run = rules_job(&[&dst], &[(named, dst.repo("imp/app"))]).run(&["--retries", "0"]);
    assert_refused(&run, &dir, &["holds no image example.com/good/app"], &dst);
}

// ---------------------------------------------------------------------------------------------
// What is not understood is kept.

/// The `index.json` of a layout with what the tool does not (or did not) understand: a sha512
/// image, an entry of an unknown media type without a name, an entry whose digest's algorithm
/// (`blake3`) cannot be verified, annotations of our own on an entry and on the index.
fn layout_with_unknowns(dir: &Path) -> Vec<Value> {
    let a = HandImage::new("sha256");
    let s512 = HandImage::new("sha512");
    let thing = b"{\"unknown\": true}".to_vec();
    let thing_digest = digest_of("sha256", &thing);
    let path = blob_at(dir, &thing_digest);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, &thing).unwrap();
    let mut a_entry = a.entry("keep/a", "v1");
    a_entry["annotations"]["com.example.note"] = json!("keep me");
    let entries = vec![
        a_entry,
        s512.entry("keep/s512", "v1"),
        json!({"mediaType": "application/vnd.example.thing+json", "digest": thing_digest, "size": thing.len()}),
        json!({"mediaType": OCI_MANIFEST, "digest": format!("blake3:{}", "7".repeat(64)), "size": 3,
               "annotations": {REF_NAME: "future"}, "x-vendor": {"kept": [1, 2]}}),
    ];
    write_layout(dir, &[&a, &s512], entries.clone());
    let mut index = index_of(dir);
    index["annotations"] = json!({"com.example.bundle": "site-42"});
    fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    entries
}

/// The layout `dir` after a run wrote `added` into it: every entry of `before` is still there
/// verbatim, the index's own annotation too, and so is the new image.
fn assert_kept(dir: &Path, before: &[Value], added: &str) {
    let index = index_of(dir);
    let after = index["manifests"].as_array().expect("manifests");
    for e in before {
        assert!(after.contains(e), "entry {e} was dropped or changed:\n{index:#}");
    }
    assert_eq!(after.len(), before.len() + 1, "one entry added:\n{index:#}");
    assert!(
        after.iter().any(|e| e["annotations"][IMAGE_NAME].as_str().is_some_and(|n| n.ends_with(added))),
        "{added} listed:\n{index:#}"
    );
    assert_eq!(index["annotations"]["com.example.bundle"], "site-42", "the index's annotation:\n{index:#}");
}

/// A run writing an image into a layout directory keeps what it does not understand: entries
/// (sha512, unknown media type, unknown algorithm), annotations, and files it does not know (the
/// old code dropped the sha512 and blake3 entries).
#[test]
fn what_is_not_understood_survives_a_run_writing_into_a_layout() {
    let src = Registry::start();
    push_simple(src.api(), "new/app", "v9");
    let bundle = TestDir::new("unknowns");
    let dir = bundle.join("oci");
    let before = layout_with_unknowns(&dir);
    fs::write(dir.join("README.txt"), "what this bundle is").unwrap();
    fs::create_dir_all(dir.join("notes")).unwrap();
    fs::write(dir.join("notes/site.txt"), "site 42").unwrap();

    syncer_copy(&[&src], &format!("{}:v9", src.repo("new/app")), &format!("oci:{}", p(&dir))).assert_ok();
    assert_kept(&dir, &before, "new/app:v9");
    assert_eq!(fs::read_to_string(dir.join("README.txt")).unwrap(), "what this bundle is");
    assert_eq!(fs::read_to_string(dir.join("notes/site.txt")).unwrap(), "site 42");
}

/// The same into an archive: its entries, and a member it does not know, are in the archive it
/// writes (the old code dropped the member, and the sha512 and blake3 entries).
#[test]
fn what_is_not_understood_survives_a_run_writing_into_an_archive() {
    let src = Registry::start();
    push_simple(src.api(), "new/app", "v9");
    let bundle = TestDir::new("unknowns-tar");
    let layout = bundle.join("oci");
    let before = layout_with_unknowns(&layout);
    let tar = bundle.join("bundle.tar");
    tar_layout(&layout, &tar, &[("README.txt", tar::EntryType::Regular, "", b"what this bundle is")]);
    syncer_copy(&[&src], &format!("{}:v9", src.repo("new/app")), &format!("oci-archive:{}", p(&tar))).assert_ok();
    let (unpacked, members) = untar(&tar);
    assert!(members.iter().any(|m| m == "README.txt"), "README.txt kept in the archive: {members:?}");
    assert_eq!(fs::read_to_string(unpacked.join("README.txt")).unwrap(), "what this bundle is");
    assert_kept(unpacked.path(), &before, "new/app:v9");
}

// ---------------------------------------------------------------------------------------------
// sha512 end to end.

/// `dst` holds the sha512 image `img` at `repo:tag`, byte-exact: the manifest's bytes, and each
/// blob under its sha512 digest.
fn assert_sha512_image_at(dst: &Registry, repo: &str, tag: &str, img: &HandImage) {
    let m = dst.api().get_manifest(repo, tag).unwrap_or_else(|| panic!("{repo}:{tag} missing"));
    assert_eq!(m.bytes, img.manifest, "{repo}:{tag}: the manifest's bytes");
    for (digest, bytes) in [&img.config, &img.layer] {
        assert_eq!(dst.api().get_blob(repo, digest).as_ref(), Some(bytes), "{repo}@{digest}");
    }
}

/// A sha512 image built by hand in a layout goes to a registry (blobs under their sha512
/// digests, the manifest by tag, byte-exact), a re-run writes nothing, it comes back from the
/// registry into a layout (blobs under `blobs/sha512/`) and from there into a second registry,
/// byte-exact. Copied by its sha512 digest it goes into a layout under that digest; into
/// distribution, which names manifests by sha256 only, it fails with a line that says so.
#[test]
fn a_sha512_image_travels_through_bundles_and_registries_byte_exact() {
    let (dst, dst2) = (Registry::start(), Registry::start());
    let bundle = TestDir::new("sha512");
    let dir = bundle.join("oci");
    let img = HandImage::new("sha512");
    write_layout(&dir, &[&img], vec![img.entry("s512/app", "v1")]);

    import(&format!("oci:{}", p(&dir)), &dst).assert_ok();
    assert_sha512_image_at(&dst, "imp/s512/app", "v1", &img);
    dst.clear_requests();
    let rerun = import(&format!("oci:{}", p(&dir)), &dst);
    rerun.assert_ok();
    assert!(dst.writes().is_empty(), "the re-run writes nothing: {:?}\n{rerun}", dst.writes());

    let back = bundle.join("back");
    syncer_copy(&[&dst], &format!("{}:v1", dst.repo("imp/s512/app")), &format!("oci:{}", p(&back))).assert_ok();
    for (digest, bytes) in [&img.config, &img.layer] {
        assert_eq!(fs::read(blob_at(&back, digest)).ok().as_ref(), Some(bytes), "{digest} in the layout");
    }
    let entry = &index_of(&back)["manifests"][0];
    let stored = fs::read(blob_at(&back, entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(stored, img.manifest, "the manifest's bytes in the layout");
    syncer_copy(&[&dst2], &format!("oci:{}", p(&back)), &dst2.repo("again")).assert_ok();
    assert_sha512_image_at(&dst2, "again/imp/s512/app", "v1", &img);

    let by_digest = format!("oci:{}:example.com/s512/app@{}", p(&dir), img.digest);
    let pinned = bundle.join("pinned");
    syncer_copy(&[&dst2], &by_digest, &format!("oci:{}", p(&pinned))).assert_ok();
    assert_eq!(fs::read(blob_at(&pinned, &img.digest)).unwrap(), img.manifest, "stored under its sha512");
    assert_eq!(index_of(&pinned)["manifests"][0]["digest"], img.digest.as_str(), "listed under its sha512");

    let run = syncer_copy(&[&dst2], &by_digest, &dst2.repo("pinned"));
    assert_eq!(run.code, Some(1), "{run}");
    run.assert_no_panic();
    let lines = run.lines_with(&["failed: ", "sha512", "distribution/distribution#4420"]);
    assert_eq!(lines.len(), 1, "one line says the registry takes no manifest under a sha512 digest:\n{run}");
}
