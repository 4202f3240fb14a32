//! OCI image layouts (`oci:DIR`) and archives (`oci-archive:FILE.tar`) on either side of a rule,
//! and delta bundles (`--base OLD`): round trips registry → bundle → registry keep every digest,
//! a layout stores each blob once and names each entry by tag and full name, re-runs write and
//! upload nothing, skopeo reads what we write and we read what skopeo writes, a delta bundle
//! leaves out what its base holds, a damaged blob fails only the image that needs it, and a run
//! stopped by SIGTERM leaves a layout that reads and that a re-run completes (an archive: no
//! `FILE.tar` or the old one, and a re-run resumes from `FILE.tar.partial`). Referrers and cosign
//! tags travel through a bundle, `--arch` stores the filtered index, a non-empty directory that is
//! no layout is refused, a dry run creates nothing, and a fan-out into a bundle and a registry
//! reads each source blob once.
//!
//! Everything is checked from the outside: the real registries (and their access logs), the files
//! on disk, `tar` and skopeo 1.9.3 (Debian). Every run has a time limit.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::signed::{assert_referrers_tag_lists, Published, Signed, SIGNED};
use crate::common::*;

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(crate) const IMAGE_NAME: &str = "io.containerd.image.name";

// ---------------------------------------------------------------------------------------------
// Reading a layout from disk (never through the code under test).

/// One top-level entry of a layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// `io.containerd.image.name`: NAME:TAG.
    name: Option<String>,
    /// `org.opencontainers.image.ref.name`: the tag.
    tag: Option<String>,
    digest: String,
    media_type: String,
}

impl Entry {
    pub(crate) fn new(name: &str, tag: &str, digest: &str, media_type: &str) -> Entry {
        Entry {
            name: Some(format!("{name}:{tag}")),
            tag: Some(tag.to_string()),
            digest: digest.to_string(),
            media_type: media_type.to_string(),
        }
    }
}

/// `index.json` of the layout `dir`, parsed (panics if it is missing or not JSON).
pub(crate) fn index_of(dir: &Path) -> serde_json::Value {
    let path = dir.join("index.json");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{}", path.display(), String::from_utf8_lossy(&bytes)))
}

/// The top-level entries of the layout `dir`.
pub(crate) fn entries(dir: &Path) -> BTreeSet<Entry> {
    let index = index_of(dir);
    let list = index["manifests"].as_array().unwrap_or_else(|| panic!("index.json has no manifests: {index}"));
    list.iter()
        .map(|m| {
            let ann = |k: &str| m["annotations"][k].as_str().map(str::to_string);
            Entry {
                name: ann(IMAGE_NAME),
                tag: ann(REF_NAME),
                digest: m["digest"].as_str().expect("entry digest").to_string(),
                media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(hex(digest))
}

/// When and where a file was written: (inode, mtime seconds, mtime nanoseconds).
type Stamp = (u64, i64, i64);

/// Every file under `blobs/sha256` of the layout, by file name, with its [`Stamp`].
fn blob_files(dir: &Path) -> BTreeMap<String, Stamp> {
    let blobs = dir.join("blobs/sha256");
    let mut out = BTreeMap::new();
    for e in fs::read_dir(&blobs).unwrap_or_else(|e| panic!("read {}: {e}", blobs.display())) {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if md.is_file() {
            out.insert(e.file_name().to_string_lossy().to_string(), (md.ino(), md.mtime(), md.mtime_nsec()));
        }
    }
    out
}

/// The digests (`sha256:HEX`) of the blob files of the layout.
pub(crate) fn blob_digests(dir: &Path) -> BTreeSet<String> {
    blob_files(dir).into_keys().map(|h| format!("sha256:{h}")).collect()
}

/// The blob files whose name is a digest and whose bytes hash to it: the ones a run finished.
fn complete_blob_files(dir: &Path) -> BTreeMap<String, Stamp> {
    blob_files(dir)
        .into_iter()
        .filter(|(name, _)| {
            name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && fs::read(dir.join("blobs/sha256").join(name))
                    .is_ok_and(|bytes| sha256_digest(&bytes) == format!("sha256:{name}"))
        })
        .collect()
}

/// Every digest reachable from the layout's `index.json` (manifests, indexes, configs, layers),
/// each checked on the way: its file exists under `blobs/sha256`, its bytes hash to its name, and
/// its size is the descriptor's.
pub(crate) fn reachable(dir: &Path) -> BTreeSet<String> {
    let index = index_of(dir);
    let mut todo: Vec<serde_json::Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        let digest = d["digest"].as_str().unwrap_or_else(|| panic!("descriptor without digest: {d}")).to_string();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = blob_path(dir, &digest);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{digest} is referenced but {}: {e}", path.display()));
        assert_eq!(sha256_digest(&bytes), digest, "{} holds other bytes than its name says", path.display());
        assert_eq!(Some(bytes.len() as u64), d["size"].as_u64(), "size of {digest} in its descriptor {d}");
        let mt = d["mediaType"].as_str().unwrap_or_default();
        if [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST].contains(&mt) {
            let m: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest JSON");
            todo.extend(m["manifests"].as_array().cloned().unwrap_or_default());
            if m["config"].is_object() {
                todo.push(m["config"].clone());
            }
            todo.extend(m["layers"].as_array().cloned().unwrap_or_default());
        }
    }
    seen
}

/// Flips one byte in the middle of `file`.
pub(crate) fn flip_byte(file: &Path) {
    let mut bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let mut perms = fs::metadata(file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(file, perms).unwrap();
    fs::write(file, bytes).unwrap();
}

/// The names in `dir` (not recursive), sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

/// Unpacks `tar` into a new directory (with the system `tar`), returned with the member names
/// as `tar -t` lists them (a leading `./` removed).
pub(crate) fn untar(tar: &Path) -> (TestDir, Vec<String>) {
    let out = Command::new("tar").arg("-tf").arg(tar).output().expect("run tar -t");
    assert!(out.status.success(), "tar -tf {}: {}", tar.display(), String::from_utf8_lossy(&out.stderr));
    let members = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let dir = TestDir::new("untar");
    let st = Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(dir.path()).status().expect("run tar -x");
    assert!(st.success(), "tar -xf {}", tar.display());
    (dir, members)
}

// ---------------------------------------------------------------------------------------------
// Running things.

/// `image-syncer --auth A copy FROM TO` (A covers `regs`), within the time limit.
pub(crate) fn syncer_copy(regs: &[&Registry], from: &str, to: &str) -> Run {
    let dir = TestDir::new("copy");
    let auth = dir.write("auth.yaml", &auth_yaml(&auth_for(regs)));
    run_syncer(&["--auth", p(&auth), "copy", from, to])
}

/// The N of the summary's `N blob(s) copied` (the last such line: progress lines come first).
fn blobs_copied(run: &Run) -> Option<u64> {
    let out = run.output();
    let line = out.lines().rev().find(|l| l.contains(" blob(s) copied"))?;
    let before = &line[..line.find(" blob(s) copied")?];
    before.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Blob uploads the registry received since its log was last cleared (session starts, chunks,
/// closing PUTs, mounts).
fn blob_uploads(reg: &Registry) -> Vec<Request> {
    reg.requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH") && r.path.contains("/blobs/uploads"))
        .collect()
}

/// The digests of the blob uploads a registry completed (`PUT …?digest=`) since its log was cleared.
pub(crate) fn uploaded_digests(reg: &Registry) -> BTreeSet<String> {
    blob_uploads(reg)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| crate::common::http::query_param(&r.query, "digest"))
        .collect()
}

/// Runs `skopeo --insecure-policy ARGS` (killed after two minutes) with no credentials and no
/// proxy; panics with its output unless it succeeds. Its stdout.
pub(crate) fn skopeo(args: &[&str]) -> Vec<u8> {
    let dir = TestDir::new("skopeo");
    let auth = dir.write("auth.json", "{}");
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "skopeo", "--insecure-policy"]).args(args);
    without_proxies(&mut cmd).env("REGISTRY_AUTH_FILE", &auth).env("TMPDIR", dir.path());
    let out = cmd.output().expect("run skopeo (is /usr/bin/skopeo installed?)");
    assert!(
        out.status.success(),
        "skopeo {} failed ({:?}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The digest of the manifest skopeo reads at `image` (`skopeo inspect --raw`).
pub(crate) fn skopeo_digest(image: &str) -> String {
    sha256_digest(&skopeo(&["inspect", "--raw", image]))
}

/// `skopeo copy --preserve-digests [--all] FROM TO`, plain http to loopback registries.
fn skopeo_copy(from: &str, to: &str, all: bool) {
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([from, to]);
    skopeo(&args);
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// Pushes an OCI image (OCI config, `OCI_LAYER` layers with these bytes) under `tag`.
pub(crate) fn push_oci_image_with_layers(c: &Client, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Pushed {
    let layer_descs: Vec<serde_json::Value> =
        layers.iter().map(|data| push_blob_descriptor(c, repo, OCI_LAYER, data)).collect();
    let diff_ids: Vec<serde_json::Value> = layer_descs.iter().map(|d| d["digest"].clone()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": FIXTURE_CREATED,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "fixture": format!("{:016x}", unique_seed()),
    }))
    .unwrap();
    let config = push_blob_descriptor(c, repo, OCI_CONFIG, &config);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layer_descs});
    push_manifest_json(c, repo, Some(tag), OCI_MANIFEST, &m)
}

pub(crate) fn random_layer() -> Vec<u8> {
    random_bytes(unique_seed(), 3000 + (unique_seed() % 3000) as usize)
}

/// Three repositories at the source: `lay/multi:v1`, an OCI index of two OCI images;
/// `lay/docker:v1`, a docker schema2 image; `lay/oci:v1`, an OCI image whose first layer is the
/// docker image's first layer.
struct Trio {
    idx: Index,
    docker: Image,
    oci: Pushed,
}

impl Trio {
    fn push(src: &Registry) -> Trio {
        let c = src.api();
        let idx =
            push_index(c, "lay/multi", "v1", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "v8")]);
        let shared = random_layer();
        let docker = push_image_with_layers(c, "lay/docker", "v1", vec![shared.clone(), random_layer()]);
        let oci = push_oci_image_with_layers(c, "lay/oci", "v1", &[shared, random_layer()]);
        assert_eq!(docker.layers[0], oci.blobs[1], "the fixture shares a layer");
        Trio { idx, docker, oci }
    }

    /// Each repository of the trio to `to`.
    fn rules_to(&self, src: &Registry, to: &str) -> Vec<(String, String)> {
        ["lay/multi", "lay/docker", "lay/oci"].iter().map(|r| (src.repo(r), to.to_string())).collect()
    }

    /// Every distinct digest the trio references: its manifests and their blobs.
    fn digests(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::from([self.idx.digest.clone(), self.docker.digest.clone(), self.oci.digest.clone()]);
        for child in &self.idx.children {
            all.insert(child.digest.clone());
            all.extend(child.blobs());
        }
        all.extend(self.docker.blobs());
        all.extend(self.oci.blobs.iter().cloned());
        all
    }

    /// The index.json entries a layout written from `src` holds.
    fn entries(&self, src: &Registry) -> BTreeSet<Entry> {
        BTreeSet::from([
            Entry::new(&src.repo("lay/multi"), "v1", &self.idx.digest, OCI_INDEX),
            Entry::new(&src.repo("lay/docker"), "v1", &self.docker.digest, DOCKER_MANIFEST),
            Entry::new(&src.repo("lay/oci"), "v1", &self.oci.digest, OCI_MANIFEST),
        ])
    }

    /// `dst` holds the trio below `prefix` (the repository paths kept), byte-exact.
    fn assert_at(&self, src: &Registry, dst: &Registry, prefix: &str) {
        let (s, d) = (src.api(), dst.api());
        assert_index_copied(s, d, &self.idx, &format!("{prefix}/lay/multi"), "v1");
        assert_image_copied(s, d, &self.docker, &format!("{prefix}/lay/docker"), "v1");
        assert_manifest_copied(s, d, &self.oci, &format!("{prefix}/lay/oci"), "v1");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// registry → `oci:DIR` → an empty registry: every digest kept (the index's children byte-exact),
/// each blob stored once though two repositories share a layer, entries named by tag and full
/// name; a re-run writes no blob file, and a re-run of the import uploads no blob.
#[test]
fn registry_to_layout_to_registry_keeps_every_digest_and_stores_each_blob_once() {
    let src = Registry::start();
    let dst = Registry::start();
    let trio = Trio::push(&src);
    let bundle = TestDir::new("layout");
    let dir = bundle.join("oci");
    let layout = format!("oci:{}", p(&dir));

    let write = rules_job(&[&src], &trio.rules_to(&src, &layout));
    write.run(&[]).assert_ok();
    let marker: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("oci-layout")).expect("oci-layout")).expect("oci-layout is JSON");
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");
    assert_eq!(entries(&dir), trio.entries(&src), "index.json entries");
    let want = trio.digests();
    assert_eq!(reachable(&dir), want, "what index.json reaches");
    assert_eq!(blob_files(&dir).len(), want.len(), "each blob once: {:?}", blob_files(&dir).keys());
    assert_eq!(blob_digests(&dir), want);

    let import = rules_job(&[&dst], &[(layout.clone(), dst.repo("restored"))]);
    import.run(&[]).assert_ok();
    trio.assert_at(&src, &dst, "restored");

    let before = blob_files(&dir);
    let run = write.run(&[]);
    run.assert_ok();
    assert_eq!(blob_files(&dir), before, "the re-run rewrote or added blob files:\n{run}");
    assert_eq!(blobs_copied(&run), Some(0), "the re-run copies no blob:\n{run}");
    assert_eq!(entries(&dir), trio.entries(&src), "index.json entries after the re-run");

    dst.clear_requests();
    let run = import.run(&[]);
    run.assert_ok();
    let uploads = blob_uploads(&dst);
    assert!(uploads.is_empty(), "the re-run of the import uploaded blobs: {uploads:?}\n{run}");
    trio.assert_at(&src, &dst, "restored");
}

/// The same round trip through `oci-archive:FILE.tar`: the archive is a layout in one tar (each
/// blob once), nothing staged is left beside it, and the import keeps every digest.
#[test]
fn registry_to_archive_to_registry_keeps_every_digest() {
    let src = Registry::start();
    let dst = Registry::start();
    let trio = Trio::push(&src);
    let bundle = TestDir::new("archive");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));

    rules_job(&[&src], &trio.rules_to(&src, &archive)).run(&[]).assert_ok();
    assert!(tar.is_file(), "{} written", tar.display());
    assert_eq!(names_in(bundle.path()), vec!["bundle.tar"], "no bundle.tar.partial or temp file left");

    let (unpacked, members) = untar(&tar);
    for m in ["oci-layout", "index.json"] {
        assert!(members.iter().any(|x| x == m), "{m} in the archive: {members:?}");
    }
    let blob_members: Vec<&String> =
        members.iter().filter(|m| m.starts_with("blobs/sha256/") && m.len() > "blobs/sha256/".len()).collect();
    let want = trio.digests();
    assert_eq!(blob_members.len(), want.len(), "each blob once in the archive: {blob_members:?}");
    assert_eq!(entries(unpacked.path()), trio.entries(&src), "index.json entries");
    assert_eq!(reachable(unpacked.path()), want);
    assert_eq!(blob_digests(unpacked.path()), want);

    rules_job(&[&dst], &[(archive, dst.repo("restored"))]).run(&[]).assert_ok();
    trio.assert_at(&src, &dst, "restored");
}

/// skopeo reads a single-repository layout and an archive we wrote (`oci:DIR:TAG`,
/// `oci-archive:FILE:TAG`) and pushes them with their digests. OCI manifests only: skopeo 1.9
/// skips index.json entries of docker media types (`no descriptor found for reference`).
#[test]
fn skopeo_reads_a_layout_and_an_archive_we_wrote() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_oci_image_with_layers(src.api(), "interop/app", "img", &[random_layer(), random_layer()]);
    let idx = push_index(
        src.api(),
        "interop/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "")],
    );
    let bundle = TestDir::new("interop");
    let layout = format!("oci:{}", p(&bundle.join("oci")));
    let archive = format!("oci-archive:{}", p(&bundle.join("app.tar")));
    syncer_copy(&[&src], &src.repo("interop/app"), &layout).assert_ok();
    syncer_copy(&[&src], &src.repo("interop/app"), &archive).assert_ok();

    for (bundle, to) in [(&layout, "from-dir/app"), (&archive, "from-tar/app")] {
        assert_eq!(skopeo_digest(&format!("{bundle}:img")), img.digest, "skopeo inspect {bundle}:img");
        assert_eq!(skopeo_digest(&format!("{bundle}:multi")), idx.digest, "skopeo inspect {bundle}:multi");
        skopeo_copy(&format!("{bundle}:img"), &format!("docker://{}:img", dst.repo(to)), false);
        skopeo_copy(&format!("{bundle}:multi"), &format!("docker://{}:multi", dst.repo(to)), true);
        assert_manifest_copied(src.api(), dst.api(), &img, to, "img");
        assert_index_copied(src.api(), dst.api(), &idx, to, "multi");
    }
}

/// A layout written by `skopeo copy docker://… oci:DIR:TAG` (entries with `ref.name` only) is read
/// by us as `oci:DIR:TAG`, by `copy` and by an images file, and arrives with the source digests.
#[test]
fn a_layout_written_by_skopeo_is_read_by_us() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_oci_image_with_layers(src.api(), "sk/app", "img", &[random_layer(), random_layer()]);
    let idx = push_index(
        src.api(),
        "sk/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "s390x", "")],
    );
    let bundle = TestDir::new("skopeo-layout");
    let dir = bundle.join("oci");
    skopeo_copy(&format!("docker://{}:img", src.repo("sk/app")), &format!("oci:{}:img", p(&dir)), false);
    skopeo_copy(&format!("docker://{}:multi", src.repo("sk/app")), &format!("oci:{}:multi", p(&dir)), true);
    let tags: BTreeSet<Option<String>> = entries(&dir).into_iter().map(|e| e.tag).collect();
    assert_eq!(tags, BTreeSet::from([Some("img".to_string()), Some("multi".to_string())]), "skopeo's index.json");

    syncer_copy(&[&dst], &format!("oci:{}:img", p(&dir)), &format!("{}:img", dst.repo("y"))).assert_ok();
    rules_job(&[&dst], &[(format!("oci:{}:multi", p(&dir)), format!("{}:multi", dst.repo("y")))]).run(&[]).assert_ok();
    assert_manifest_copied(src.api(), dst.api(), &img, "y", "img");
    assert_index_copied(src.api(), dst.api(), &idx, "y", "multi");
}

/// Bundle A holds `v1`, `v2`; bundle B written later with `--base A` holds every manifest but only
/// the blobs A lacks (v3's new layer and config) and records the rest in image-syncer-delta.json.
/// A then B import all three tags; B alone fails naming A and pushes no manifest.
#[test]
fn a_delta_bundle_holds_only_new_blobs_and_imports_over_its_base() {
    let src = Registry::start();
    let (s, repo) = (src.api(), "delta/app");
    let (l1, l2, l3, l4) = (random_layer(), random_layer(), random_layer(), random_layer());
    let v1 = push_image_with_layers(s, repo, "v1", vec![l1.clone(), l2]);
    let v2 = push_image_with_layers(s, repo, "v2", vec![l1.clone(), l3.clone()]);
    let bundles = TestDir::new("delta");
    let (a, b) = (bundles.join("A"), bundles.join("B"));
    let write =
        |to: &Path, extra: &[&str]| rules_job(&[&src], &[(src.repo(repo), format!("oci:{}", p(to)))]).run(extra);
    write(&a, &[]).assert_ok();

    let v3 = push_image_with_layers(s, repo, "v3", vec![l1, l3, l4]);
    let run = write(&b, &["--base", p(&a)]);
    run.assert_ok();
    assert!(
        run.output().contains("left out: the base bundle holds them"),
        "the summary says what was left out:\n{run}"
    );
    let tags: BTreeSet<Option<String>> = entries(&b).into_iter().map(|e| e.tag).collect();
    assert_eq!(tags, ["v1", "v2", "v3"].iter().map(|t| Some(t.to_string())).collect(), "B lists every tag");
    let new_blobs = [&v1.digest, &v2.digest, &v3.digest, &v3.config_digest, &v3.layers[2]];
    assert_eq!(
        blob_digests(&b),
        new_blobs.iter().map(|d| d.to_string()).collect(),
        "B holds the three manifests, v3's config and its new layer only"
    );

    let delta: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join("image-syncer-delta.json")).expect("image-syncer-delta.json in B"))
            .expect("image-syncer-delta.json is JSON");
    assert_eq!(delta["base"], p(&a), "the base as given: {delta}");
    let left: BTreeSet<(String, u64)> = delta["blobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no blobs list: {delta}"))
        .iter()
        .map(|b| (b["digest"].as_str().expect("digest").to_string(), b["size"].as_u64().expect("size")))
        .collect();
    let size = |d: &String| s.get_blob(repo, d).expect("source blob").len() as u64;
    let want_left: BTreeSet<(String, u64)> =
        [&v1.config_digest, &v2.config_digest, &v1.layers[0], &v1.layers[1], &v2.layers[1]]
            .into_iter()
            .map(|d| (d.clone(), size(d)))
            .collect();
    assert_eq!(left, want_left, "the blobs B left out");

    let import =
        |from: &Path, to: &Registry| rules_job(&[to], &[(format!("oci:{}", p(from)), to.repo("imp"))]).run(&[]);
    let r1 = Registry::start();
    import(&a, &r1).assert_ok();
    r1.clear_requests();
    import(&b, &r1).assert_ok();
    let uploaded = uploaded_digests(&r1);
    assert!(
        uploaded.is_subset(&BTreeSet::from([v3.config_digest.clone(), v3.layers[2].clone()])),
        "B uploads only what A did not bring: {uploaded:?}"
    );
    let imp = format!("imp/{repo}");
    for (img, tag) in [(&v1, "v1"), (&v2, "v2"), (&v3, "v3")] {
        assert_image_copied(s, r1.api(), img, &imp, tag);
    }

    let r2 = Registry::start();
    let run = import(&b, &r2);
    run.assert_failed();
    assert!(
        run.output().lines().any(|l| l.contains("left out of this delta bundle") && l.contains(p(&a))),
        "a line says the blob was left out and names the base {}:\n{run}",
        a.display()
    );
    let puts: Vec<Request> = r2.requests().into_iter().filter(Request::is_manifest_put).collect();
    assert!(puts.is_empty(), "no manifest pushed without its blobs: {puts:?}\n{run}");
}

/// One byte flipped in a layer only image X uses: importing the bundle fails X with a line naming
/// the file `blobs/sha256/<hex>`, and Y still arrives with its digest; exit code 1.
#[test]
fn a_damaged_blob_in_a_bundle_fails_only_the_image_that_needs_it() {
    let src = Registry::start();
    let dst = Registry::start();
    let x = push_simple(src.api(), "rot/x", "v1");
    let y = push_simple(src.api(), "rot/y", "v1");
    let bundle = TestDir::new("rot");
    let dir = bundle.join("oci");
    let layout = format!("oci:{}", p(&dir));
    rules_job(&[&src], &[(src.repo("rot/x"), layout.clone()), (src.repo("rot/y"), layout.clone())])
        .run(&[])
        .assert_ok();
    let bad = &x.layers[0];
    flip_byte(&blob_path(&dir, bad));

    let run = rules_job(&[&dst], &[(layout, dst.repo("imp"))]).run(&["--retries", "0"]);
    assert_eq!(run.code, Some(1), "{run}");
    run.assert_no_panic();
    let file = format!("blobs/sha256/{}", hex(bad));
    assert!(run.output().lines().any(|l| l.contains(&file)), "a line names {file}:\n{run}");
    let failed = run.failed_lines();
    assert_eq!(failed.len(), 1, "one image failed:\n{run}");
    assert!(failed[0].contains("rot/x") && !failed[0].contains("rot/y"), "the failed line is X's: {}", failed[0]);
    assert_eq!(run.failed_count(), Some(1), "{run}");
    assert_eq!(dst.api().head_manifest("imp/rot/x", "v1"), None, "nothing pushed for X");
    assert_image_copied(src.api(), dst.api(), &y, "imp/rot/y", "v1");
}

/// registry → `oci:DIR` through a slow proxy, SIGTERM once an image is listed: index.json parses
/// (and parsed at every look while the run wrote it), everything it reaches is there with its
/// digest, skopeo reads a listed tag; a re-run lists every tag and fetches no blob the layout
/// already held whole, nor rewrites one.
#[test]
fn sigterm_while_writing_a_layout_leaves_it_readable_and_a_rerun_completes_it() {
    let src = Registry::start();
    // OCI images: skopeo 1.9 reads no docker-typed entry of a layout.
    let imgs: Vec<Image> = (0..8)
        .map(|i| push_image(src.api(), "slow/app", &format!("t{i}"), ImageKind::Oci, "linux", "amd64", ""))
        .collect();
    // Every request held 60 ms and one worker: the run takes seconds, the signal lands mid-way.
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { delay: Duration::from_millis(60), ..ProxyOpts::default() });
    let bundle = TestDir::new("term");
    let dir = bundle.join("oci");
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr())],
        &images_yaml_values(&[(proxy.repo("slow/app"), format!("oci:{}", p(&dir)))]),
    );
    let name = proxy.repo("slow/app");
    let want_entry = |i: usize| Entry::new(&name, &format!("t{i}"), &imgs[i].digest, OCI_MANIFEST);

    // index.json is replaced atomically: whenever it is there, it parses.
    let running = Running::spawn(&job.args(&["--proc", "1"]), &[]).wait_until(
        "index.json listed an image",
        Duration::from_secs(60),
        || dir.join("index.json").exists() && !entries(&dir).is_empty(),
    );
    running.signal("TERM");
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code, Some(143), "SIGTERM exits 143:\n{run}");
    run.assert_no_panic();

    let listed = entries(&dir);
    reachable(&dir);
    assert!(listed.len() < imgs.len(), "the signal stopped the run before the end ({} listed)", listed.len());
    for e in &listed {
        let i: usize =
            e.tag.as_deref().and_then(|t| t.strip_prefix('t')).and_then(|n| n.parse().ok()).expect("a tN tag");
        assert_eq!(e, &want_entry(i), "listed entry");
    }
    let first = listed.iter().next().unwrap();
    let tag = first.tag.as_deref().unwrap();
    assert_eq!(skopeo_digest(&format!("oci:{}:{tag}", p(&dir))), first.digest, "skopeo reads {tag}");

    let held = complete_blob_files(&dir);
    let mark = proxy.requests().len();
    let rerun = job.run(&[]);
    rerun.assert_ok();
    assert_eq!(entries(&dir), (0..imgs.len()).map(want_entry).collect(), "every tag listed after the re-run");
    let mut want = BTreeSet::new();
    for img in &imgs {
        want.insert(img.digest.clone());
        want.extend(img.blobs());
    }
    assert_eq!(reachable(&dir), want);
    let now = blob_files(&dir);
    for (file, stamp) in &held {
        assert_eq!(now.get(file), Some(stamp), "blob file {file}, whole before the re-run, was rewritten");
    }
    let refetched: Vec<String> = proxy.requests()[mark..]
        .iter()
        .filter(|r| r.is(Match::BlobGet))
        .map(|r| r.path().to_string())
        .filter(|path| held.keys().any(|h| path.ends_with(h.as_str())))
        .collect();
    assert!(refetched.is_empty(), "the re-run fetched blobs the layout held: {refetched:?}\n{rerun}");
}

/// A layout source that does not exist is a rule error: exit 1 or 2, a short error naming the
/// path, and no request to the destination.
#[test]
fn a_missing_layout_source_fails_before_any_request() {
    let missing = "/nonexistent/dir";
    assert!(!Path::new(missing).exists());
    let check = |run: &Run| {
        assert!(matches!(run.code, Some(1 | 2)), "exit code 1 or 2:\n{run}");
        run.assert_no_panic();
        let out = run.output();
        let line =
            out.lines().find(|l| l.contains(missing)).unwrap_or_else(|| panic!("a line names {missing}:\n{run}"));
        let why = ["no such", "not exist", "not found", "missing", "cannot", "not a", "no index.json"];
        assert!(contains_any_ci(line, &why), "the line says the layout is not there: {line}");
        let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert!(lines <= 5, "a rule error is a line or two:\n{run}");
    };
    let dst = Registry::start();
    let run = rules_job(&[&dst], &[(format!("oci:{missing}"), dst.repo("x"))]).run_within(30, &[]);
    check(&run);
    let seen = dst.requests();
    assert!(seen.is_empty(), "requests to the destination: {seen:?}\n{run}");

    let run = run_syncer_within(&["copy", &format!("oci:{missing}"), "127.0.0.1:1/x"], Duration::from_secs(30));
    check(&run);
}

// ---------------------------------------------------------------------------------------------
// Referrers, platform filters, interrupted archives, refusals, dry runs and fan-out.

/// registry (fallback tag indexes, cosign `.sig` tag) → `oci:DIR` → an empty registry: in the
/// bundle the image (an OCI index with an attestation manifest) and the `.sig` are tagged
/// entries, and its three referrers and the SBOM's own signature untagged ones; the second
/// registry ends with the image, every referrer byte-exact by digest, fallback tag indexes
/// listing them, and the `.sig` tag. `--no-referrers` into a fresh bundle stores the image alone.
#[test]
fn referrers_travel_through_a_bundle_and_no_referrers_leaves_them_out() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let f = Signed::push(s, Published::FallbackTags);
    let legacy = f.legacy_sig.as_ref().expect("a legacy signature with fallback tags");
    let bundle = TestDir::new("signed");
    let dir = bundle.join("oci");
    let layout = format!("oci:{}", p(&dir));
    let name = src.repo(SIGNED);

    rules_job(&[&src], &[(src.repo("signed/app:v1"), layout.clone())]).run(&[]).assert_ok();
    let listed = entries(&dir);
    let by_digest = |digest: &str| -> Vec<&Entry> { listed.iter().filter(|e| e.digest == digest).collect() };
    assert_eq!(
        by_digest(&f.top.digest),
        vec![&Entry::new(&name, "v1", &f.top.digest, OCI_INDEX)],
        "the image is one tagged entry: {listed:#?}"
    );
    assert_eq!(
        by_digest(&legacy.digest),
        vec![&Entry::new(&name, &f.sig_tag(), &legacy.digest, OCI_MANIFEST)],
        "the cosign signature is a tagged entry: {listed:#?}"
    );
    for r in [&f.sig, &f.sbom, &f.att, &f.sbom_sig] {
        let es = by_digest(&r.digest);
        assert_eq!(es.len(), 1, "referrer {} is one entry of index.json: {listed:#?}", r.digest);
        assert_eq!(es[0].tag, None, "referrer {} is untagged: {:?}", r.digest, es[0]);
        assert_eq!(es[0].media_type, OCI_MANIFEST, "referrer {}", r.digest);
        let bytes = fs::read(blob_path(&dir, &r.digest)).expect("the referrer's manifest file");
        assert!(bytes == r.bytes, "referrer {} stored byte-exact", r.digest);
    }
    assert!(reachable(&dir).is_superset(&f.digests()), "everything is in the bundle: {:?}", reachable(&dir));

    let run = rules_job(&[&dst], &[(layout, dst.repo("site"))]).run(&[]);
    run.assert_ok();
    let repo = format!("site/{SIGNED}");
    assert_manifest_copied(s, d, &f.top, &repo, "v1");
    assert_image_copied(s, d, &f.img, &repo, &f.img.digest);
    assert_manifest_copied(s, d, &f.attestation, &repo, &f.attestation.digest);
    for r in f.followers() {
        assert_manifest_copied(s, d, r, &repo, &r.digest);
    }
    assert_referrers_tag_lists(d, &repo, &f.top.digest, &f.referrers());
    assert_referrers_tag_lists(d, &repo, &f.sbom.digest, &[&f.sbom_sig]);
    assert_eq!(d.head_manifest(&repo, &f.sig_tag()), Some(legacy.digest.clone()), "{} at the destination", f.sig_tag());
    assert_manifest_copied(s, d, legacy, &repo, &f.sig_tag());

    let bare = bundle.join("bare");
    rules_job(&[&src], &[(src.repo("signed/app:v1"), format!("oci:{}", p(&bare)))])
        .run(&["--no-referrers"])
        .assert_ok();
    assert_eq!(
        entries(&bare),
        BTreeSet::from([Entry::new(&name, "v1", &f.top.digest, OCI_INDEX)]),
        "with --no-referrers index.json holds the image alone"
    );
    let mut image_only = BTreeSet::from([f.top.digest.clone(), f.img.digest.clone(), f.attestation.digest.clone()]);
    image_only.extend(f.img.blobs());
    image_only.extend(f.attestation.blobs.iter().cloned());
    assert_eq!(blob_digests(&bare), image_only, "with --no-referrers only the image's blobs are stored");
}

/// `--arch arm64` into `oci:DIR` on an OCI index of amd64 + arm64: the bundle's entry is the
/// filtered index (a new digest, the arm64 child alone), no amd64 blob is stored, and importing
/// the bundle puts that same filtered digest in the registry.
#[test]
fn arch_filter_into_a_bundle_stores_the_filtered_index() {
    let src = Registry::start();
    let dst = Registry::start();
    let (s, d) = (src.api(), dst.api());
    let idx = push_index(s, "pf/app", "v1", IndexKind::OciIndex, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    let (amd, arm) = (idx.child("linux", "amd64", ""), idx.child("linux", "arm64", ""));
    let bundle = TestDir::new("arch");
    let dir = bundle.join("oci");
    let layout = format!("oci:{}", p(&dir));
    rules_job(&[&src], &[(src.repo("pf/app:v1"), layout.clone())]).run(&["--arch", "arm64"]).assert_ok();

    let listed: Vec<Entry> = entries(&dir).into_iter().collect();
    assert_eq!(listed.len(), 1, "one entry: {listed:#?}");
    let top = &listed[0];
    assert_ne!(top.digest, idx.digest, "the entry is the filtered index, not the source's");
    assert_eq!(top, &Entry::new(&src.repo("pf/app"), "v1", &top.digest, OCI_INDEX), "the entry");
    let filtered = fs::read(blob_path(&dir, &top.digest)).expect("the filtered index's file");
    let children = index_entries(&filtered);
    assert_eq!(
        children,
        vec![(arm.digest.clone(), Platform::new("linux", "arm64", ""))],
        "the filtered index lists the arm64 image alone: {}",
        String::from_utf8_lossy(&filtered)
    );
    let mut want = BTreeSet::from([top.digest.clone(), arm.digest.clone()]);
    want.extend(arm.blobs());
    assert_eq!(reachable(&dir), want, "what index.json reaches");
    let stored = blob_digests(&dir);
    assert_eq!(stored, want, "the bundle stores the filtered index and the arm64 image only");
    for b in std::iter::once(amd.digest.clone()).chain(amd.blobs()) {
        assert!(!stored.contains(&b), "amd64's {b} is in blobs/");
    }

    rules_job(&[&dst], &[(layout, dst.repo("site"))]).run(&[]).assert_ok();
    let got = d.get_manifest("site/pf/app", "v1").expect("site/pf/app:v1 at the destination");
    assert_eq!(got.digest, top.digest, "the registry gets the bundle's filtered digest");
    assert!(got.bytes == filtered, "the filtered index byte-exact");
    assert_image_copied(s, d, arm, "site/pf/app", &arm.digest);
    assert_eq!(d.head_manifest("site/pf/app", &amd.digest), None, "the amd64 image was not imported");
}

/// The entries of the layout `dir`, or `None` while its index.json is missing or unreadable.
fn try_entries(dir: &Path) -> Option<BTreeSet<Entry>> {
    let bytes = fs::read(dir.join("index.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    Some(entries(dir))
}

/// registry → `oci-archive:FILE.tar` through a slow proxy, SIGTERM once `FILE.tar.partial`'s
/// index.json lists an image: no `FILE.tar` (or, with `old`, the archive written before,
/// unchanged), the staged directory kept; a re-run completes the archive, leaves neither
/// `.partial` nor `.tmp`, every image imports with its digest, and the re-run fetches none of
/// the blobs the staged directory already held.
fn interrupted_archive_write_resumes(old: bool) {
    let src = Registry::start();
    let dst = Registry::start();
    let bundle = TestDir::new("term-tar");
    let tar = bundle.join("bundle.tar");
    let partial = bundle.join("bundle.tar.partial");
    let tmp = bundle.join("bundle.tar.tmp");
    let archive = format!("oci-archive:{}", p(&tar));

    let before = old.then(|| {
        let img = push_simple(src.api(), "old/app", "v1");
        rules_job(&[&src], &[(src.repo("old/app"), archive.clone())]).run(&[]).assert_ok();
        let md = fs::metadata(&tar).expect("the old archive");
        (img, fs::read(&tar).unwrap(), (md.ino(), md.mtime(), md.mtime_nsec()))
    });

    let imgs: Vec<Image> = (0..8)
        .map(|i| push_image(src.api(), "slow/app", &format!("t{i}"), ImageKind::Oci, "linux", "amd64", ""))
        .collect();
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { delay: Duration::from_millis(60), ..ProxyOpts::default() });
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr())],
        &images_yaml_values(&[(proxy.repo("slow/app"), archive.clone())]),
    );
    let name = proxy.repo("slow/app");
    let slow_listed = |es: &BTreeSet<Entry>| {
        es.iter().filter(|e| e.name.as_deref().is_some_and(|n| n.starts_with(&format!("{name}:")))).count()
    };

    let what = format!("{}/index.json listed an image", partial.display());
    let running = Running::spawn(&job.args(&["--proc", "1"]), &[])
        .wait_until(&what, Duration::from_secs(60), || try_entries(&partial).is_some_and(|es| slow_listed(&es) > 0));
    running.signal("TERM");
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code, Some(143), "SIGTERM exits 143:\n{run}");
    run.assert_no_panic();

    match &before {
        None => assert!(!tar.exists(), "{} exists after an interrupted run:\n{run}", tar.display()),
        Some((_, bytes, stamp)) => {
            let md = fs::metadata(&tar).expect("the old archive is still there");
            assert_eq!((md.ino(), md.mtime(), md.mtime_nsec()), *stamp, "the old archive was replaced or touched");
            assert!(fs::read(&tar).unwrap() == *bytes, "the old archive's bytes changed");
        }
    }
    assert!(partial.is_dir(), "{} kept after the interrupted run:\n{run}", partial.display());
    let listed = entries(&partial);
    if before.is_none() {
        // A rewrite's staged index.json also lists the old archive's images, whose blobs stay in
        // the old archive until the new one is written: only a fresh one is a layout of its own.
        reachable(&partial);
    }
    assert!(slow_listed(&listed) < imgs.len(), "the signal stopped the run before the end: {listed:#?}");
    let held = complete_blob_files(&partial);
    assert!(!held.is_empty(), "the staged directory holds blobs");

    let mark = proxy.requests().len();
    let rerun = job.run(&[]);
    rerun.assert_ok();
    // Before anything else reads the source through the proxy.
    let refetched: Vec<String> = proxy.requests()[mark..]
        .iter()
        .filter(|r| r.is(Match::BlobGet))
        .map(|r| r.path().to_string())
        .filter(|path| held.keys().any(|h| path.ends_with(h.as_str())))
        .collect();
    assert!(tar.is_file(), "{} written by the re-run:\n{rerun}", tar.display());
    assert!(!partial.exists(), "{} left after the re-run:\n{rerun}", partial.display());
    assert!(!tmp.exists(), "{} left after the re-run:\n{rerun}", tmp.display());
    assert_eq!(names_in(bundle.path()), vec!["bundle.tar"], "nothing else beside the archive");

    let (unpacked, _) = untar(&tar);
    let mut want_entries: BTreeSet<Entry> =
        (0..imgs.len()).map(|i| Entry::new(&name, &format!("t{i}"), &imgs[i].digest, OCI_MANIFEST)).collect();
    let mut want = BTreeSet::new();
    for img in &imgs {
        want.insert(img.digest.clone());
        want.extend(img.blobs());
    }
    if let Some((img, _, _)) = &before {
        want_entries.insert(Entry::new(&src.repo("old/app"), "v1", &img.digest, DOCKER_MANIFEST));
        want.insert(img.digest.clone());
        want.extend(img.blobs());
    }
    assert_eq!(entries(unpacked.path()), want_entries, "the archive's index.json");
    assert_eq!(reachable(unpacked.path()), want, "what the archive's index.json reaches");

    rules_job(&[&dst], &[(archive, dst.repo("site"))]).run(&[]).assert_ok();
    for (i, img) in imgs.iter().enumerate() {
        assert_image_copied(src.api(), dst.api(), img, "site/slow/app", &format!("t{i}"));
    }
    if let Some((img, _, _)) = &before {
        assert_image_copied(src.api(), dst.api(), img, "site/old/app", "v1");
    }
    assert!(refetched.is_empty(), "the re-run fetched blobs the staged directory held: {refetched:?}\n{rerun}");
}

#[test]
fn an_interrupted_archive_write_leaves_no_archive_and_a_rerun_resumes_it() {
    interrupted_archive_write_resumes(false);
}

#[test]
fn an_interrupted_archive_rewrite_keeps_the_old_archive_and_a_rerun_resumes_it() {
    interrupted_archive_write_resumes(true);
}

/// A destination directory that exists, holds `notes.txt` and is no layout is refused before any
/// request, by an images file and by `copy`: exit 2, one line naming the directory, nothing
/// written in it.
#[test]
fn a_non_empty_directory_that_is_not_a_layout_is_refused_before_any_request() {
    let src = Registry::start();
    push_simple(src.api(), "nl/app", "v1");
    let bundle = TestDir::new("not-layout");
    let dir = bundle.join("stuff");
    fs::create_dir(&dir).unwrap();
    let notes = dir.join("notes.txt");
    fs::write(&notes, "do not touch\n").unwrap();
    let stamp = |f: &Path| {
        let md = fs::metadata(f).unwrap();
        (md.ino(), md.mtime(), md.mtime_nsec(), md.len())
    };
    let (dir_stamp, notes_stamp) = (stamp(&dir), stamp(&notes));
    let layout = format!("oci:{}", p(&dir));

    let check = |run: &Run| {
        assert_eq!(run.code, Some(2), "exit code 2:\n{run}");
        run.assert_no_panic();
        let out = run.output();
        let naming: Vec<&str> = out.lines().filter(|l| l.contains(p(&dir))).map(str::trim).collect();
        assert_eq!(naming.len(), 1, "one line names {}:\n{run}", dir.display());
        assert!(
            contains_any_ci(naming[0], &["not a layout", "not an oci layout", "not empty", "refus"]),
            "the line says why: {}",
            naming[0]
        );
        let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(lines, 1, "the error is one line:\n{run}");
        let seen = src.requests();
        assert!(seen.is_empty(), "requests before the error: {seen:?}\n{run}");
        assert_eq!(names_in(&dir), vec!["notes.txt"], "nothing written in {}", dir.display());
        assert_eq!(fs::read_to_string(&notes).unwrap(), "do not touch\n");
        assert_eq!((stamp(&dir), stamp(&notes)), (dir_stamp, notes_stamp), "the directory is unchanged");
    };
    src.clear_requests();
    check(&rules_job(&[&src], &[(src.repo("nl/app"), layout.clone())]).run_within(30, &[]));
    check(&syncer_copy(&[&src], &src.repo("nl/app:v1"), &layout));
}

/// `--dry-run` into an `oci:DIR` (and an `oci-archive:FILE.tar`) that does not exist: exit 0,
/// the plan says `would copy`, and neither the directory nor the archive (nor its staging
/// directory) is created.
#[test]
fn dry_run_into_a_missing_bundle_plans_and_creates_nothing() {
    let src = Registry::start();
    push_simple(src.api(), "dry/app", "v1");
    let bundle = TestDir::new("dry");
    let dir = bundle.join("new/oci");
    let tar = bundle.join("new.tar");
    let run = rules_job(
        &[&src],
        &[
            (src.repo("dry/app"), format!("oci:{}", p(&dir))),
            (src.repo("dry/app:v1"), format!("oci-archive:{}", p(&tar))),
        ],
    )
    .run(&["--dry-run"]);
    run.assert_ok();
    let plans: Vec<&str> = run.stderr.lines().chain(run.stdout.lines()).filter(|l| l.contains("would copy")).collect();
    for to in [p(&dir), p(&tar)] {
        assert!(
            plans.iter().any(|l| l.contains(&src.repo("dry/app:v1")) && l.contains(to)),
            "a `would copy` line for {to}:\n{run}"
        );
    }
    assert!(!dir.exists() && !dir.parent().unwrap().exists(), "{} created by a dry run", dir.display());
    assert_eq!(names_in(bundle.path()), Vec::<String>::new(), "a dry run creates nothing:\n{run}");
}

/// `src/repo: [oci:DIR, REG2/repo]`, three repositories sharing a layer: the bundle and the
/// registry get every digest, and the source serves each blob at most once.
#[test]
fn fan_out_into_a_bundle_and_a_registry_reads_each_source_blob_once() {
    let src = Registry::start();
    let d2 = Registry::start();
    let trio = Trio::push(&src);
    let bundle = TestDir::new("fan");
    let dir = bundle.join("oci");
    let layout = format!("oci:{}", p(&dir));
    let repos = ["lay/multi", "lay/docker", "lay/oci"];
    let rules: Vec<(String, [String; 2])> = repos.iter().map(|r| (src.repo(r), [layout.clone(), d2.repo(r)])).collect();
    let dsts: Vec<[&str; 2]> = rules.iter().map(|(_, [a, b])| [a.as_str(), b.as_str()]).collect();
    let yaml: Vec<(&str, &[&str])> = rules.iter().zip(&dsts).map(|((s, _), d)| (s.as_str(), &d[..])).collect();
    let job = Job::new(&auth_for(&[&src, &d2]), &images_yaml(&yaml));
    src.clear_requests();
    let run = job.run(&["--proc", "4"]);
    run.assert_ok();
    // Before the checks below, which read the source too.
    let mut gets: BTreeMap<String, usize> = BTreeMap::new();
    for r in src.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:")) {
        *gets.entry(r.path.rsplit('/').next().unwrap_or_default().to_string()).or_default() += 1;
    }

    assert_eq!(entries(&dir), trio.entries(&src), "the bundle's index.json");
    let want = trio.digests();
    assert_eq!(reachable(&dir), want, "what the bundle's index.json reaches");
    assert_eq!(blob_digests(&dir), want, "the bundle's blobs");
    let (s, d) = (src.api(), d2.api());
    assert_index_copied(s, d, &trio.idx, "lay/multi", "v1");
    assert_image_copied(s, d, &trio.docker, "lay/docker", "v1");
    assert_manifest_copied(s, d, &trio.oci, "lay/oci", "v1");

    let twice: Vec<_> = gets.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "blobs read from the source more than once: {twice:?}\n{run}");
    let manifests = BTreeSet::from([trio.idx.digest.clone(), trio.docker.digest.clone(), trio.oci.digest.clone()]);
    let children: BTreeSet<String> = trio.idx.children.iter().map(|c| c.digest.clone()).collect();
    let blobs: BTreeSet<String> = want.difference(&manifests).filter(|b| !children.contains(*b)).cloned().collect();
    let read: BTreeSet<String> = gets.keys().cloned().collect();
    assert_eq!(read, blobs, "every blob was read from the source\n{run}");
}
