//! Archives that fit the media (`--max-archive-size SIZE`): an `oci-archive:FILE.tar` destination
//! is written as `FILE.tar.001`, `FILE.tar.002`, … — each exactly SIZE bytes but the last — and the
//! sidecar `FILE.tar.parts.json` listing each part's size and sha256; `oci-archive:FILE.tar` reads
//! the parts back as one archive and imports byte-exact; `cat FILE.tar.[0-9]*` is a tar that `tar`
//! lists and skopeo reads; a re-run adding a tag (or changing the size) replaces the parts and
//! removes the extra old ones; a missing, truncated or damaged part is named on import and nothing
//! is pushed; a size the flag cannot use is refused before anything runs.
//!
//! Checked from the outside: the files on disk, `sh`/`cat`, `tar`, skopeo, and the registries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::layout::{flip_byte, names_in, push_oci_image_with_layers, skopeo_digest, untar};

const MIB: u64 = 1 << 20;

/// The part files of the split archive `tar` (`FILE.tar.NNN`), in order.
fn parts_of(tar: &Path) -> Vec<PathBuf> {
    let dir = tar.parent().unwrap();
    let prefix = format!("{}.", tar.file_name().unwrap().to_string_lossy());
    names_in(dir)
        .into_iter()
        .filter(|n| {
            n.strip_prefix(&prefix).is_some_and(|rest| rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|n| dir.join(n))
        .collect()
}

/// The parts of `tar` as its sidecar lists them, each checked against the file: its name, size and
/// sha256; each at most `max` bytes and all but the last exactly `max`.
fn assert_parts(tar: &Path, max: u64) -> Vec<PathBuf> {
    let sidecar = PathBuf::from(format!("{}.parts.json", p(tar)));
    let text = fs::read_to_string(&sidecar).unwrap_or_else(|e| panic!("read {}: {e}", sidecar.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let listed = json["parts"].as_array().unwrap_or_else(|| panic!("no parts listed: {text}"));
    let parts = parts_of(tar);
    assert_eq!(listed.len(), parts.len(), "the sidecar lists every part file and no other: {text}");
    let mut total = 0;
    for (i, (entry, file)) in listed.iter().zip(&parts).enumerate() {
        let bytes = fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(entry["name"].as_str(), Some(name.as_str()), "part {i}: {text}");
        assert_eq!(entry["size"].as_u64(), Some(bytes.len() as u64), "{name}: size listed");
        assert_eq!(
            entry["sha256"].as_str().map(|h| format!("sha256:{h}")),
            Some(sha256_digest(&bytes)),
            "{name}: sha256 listed"
        );
        if i + 1 < parts.len() {
            assert_eq!(bytes.len() as u64, max, "{name}: every part but the last is exactly {max} bytes");
        } else {
            assert!(bytes.len() as u64 <= max && !bytes.is_empty(), "{name}: the last part, {} bytes", bytes.len());
        }
        total += bytes.len() as u64;
    }
    assert_eq!(json["size"].as_u64(), Some(total), "the sidecar's total: {text}");
    parts
}

/// `cat TAR.[0-9]* > out`, as the README says, run by `sh`.
fn cat_parts(tar: &Path, out: &Path) {
    let st =
        Command::new("sh").args(["-c", r#"cat "$1".[0-9]* > "$2""#, "sh", p(tar), p(out)]).status().expect("run sh");
    assert!(st.success(), "cat the parts of {}", tar.display());
}

/// The names beside a split archive `bundle.tar` of `count` parts: the parts and the sidecar only
/// (no staging directory, no temporary file, no `bundle.tar`).
fn split_names(count: usize) -> Vec<String> {
    let mut v: Vec<String> = (1..=count).map(|n| format!("bundle.tar.{n:03}")).collect();
    v.push("bundle.tar.parts.json".into());
    v
}

fn manifest_puts(reg: &Registry) -> Vec<Request> {
    reg.requests().into_iter().filter(Request::is_manifest_put).collect()
}

/// registry (an OCI image with a 12 MiB layer) → `oci-archive:bundle.tar` with
/// `--max-archive-size 5MiB`: three parts (5, 5, the rest) and the sidecar, nothing else; their
/// `cat` is a tar holding `index.json` that skopeo reads; the archive imports byte-exact into an
/// empty registry. A re-run adding `v2` (3 MiB) makes four parts and both tags import; a re-run
/// with 8 MiB parts and nothing new rewrites it into two and removes the old third and fourth.
#[test]
fn a_split_archive_keeps_within_its_parts_and_imports_byte_exact() {
    let src = Registry::start();
    let dst = Registry::start();
    let v1 = push_oci_image_with_layers(
        src.api(),
        "split/app",
        "v1",
        &[random_bytes(unique_seed(), 12 * MIB as usize), random_bytes(unique_seed(), 4000)],
    );
    let bundle = TestDir::new("split");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    let write = rules_job(&[&src], &[(src.repo("split/app"), archive.clone())]);

    let run = write.run(&["--max-archive-size", "5MiB"]);
    run.assert_ok();
    assert_eq!(assert_parts(&tar, 5 * MIB).len(), 3, "12 MiB and a little in 5 MiB parts:\n{run}");
    assert_eq!(names_in(bundle.path()), split_names(3), "beside the parts");

    let whole = TestDir::new("split-cat");
    let joined = whole.join("bundle.tar");
    cat_parts(&tar, &joined);
    let (_unpacked, members) = untar(&joined);
    assert!(members.iter().any(|m| m == "index.json"), "tar -tf lists index.json: {members:?}");
    assert_eq!(skopeo_digest(&format!("oci-archive:{}:v1", p(&joined))), v1.digest, "skopeo reads the joined tar");

    rules_job(&[&dst], &[(archive.clone(), dst.repo("site"))]).run(&[]).assert_ok();
    assert_manifest_copied(src.api(), dst.api(), &v1, "site/split/app", "v1");

    // A new tag: the old parts are read as the archive being replaced.
    let v2 = push_oci_image_with_layers(src.api(), "split/app", "v2", &[random_bytes(unique_seed(), 3 * MIB as usize)]);
    let run = write.run(&["--max-archive-size", "5MiB"]);
    run.assert_ok();
    assert_eq!(assert_parts(&tar, 5 * MIB).len(), 4, "15 MiB and a little in 5 MiB parts:\n{run}");
    assert_eq!(names_in(bundle.path()), split_names(4), "beside the parts after the re-run");
    let dst2 = Registry::start();
    rules_job(&[&dst2], &[(archive.clone(), dst2.repo("site"))]).run(&[]).assert_ok();
    assert_manifest_copied(src.api(), dst2.api(), &v1, "site/split/app", "v1");
    assert_manifest_copied(src.api(), dst2.api(), &v2, "site/split/app", "v2");

    // Larger parts and nothing new: rewritten in two parts, the old third and fourth removed.
    let run = write.run(&["--max-archive-size", "8MiB"]);
    run.assert_ok();
    assert_eq!(assert_parts(&tar, 8 * MIB).len(), 2, "{run}");
    assert_eq!(names_in(bundle.path()), split_names(2), "the extra old parts are removed");
    rules_job(&[&dst2], &[(archive, dst2.repo("again"))]).run(&[]).assert_ok();
    assert_manifest_copied(src.api(), dst2.api(), &v1, "again/split/app", "v1");
    assert_manifest_copied(src.api(), dst2.api(), &v2, "again/split/app", "v2");
}

/// A split archive of one image (a 12 MiB layer, 5 MiB parts) imported with a part missing, a part
/// one byte short, and a part with a flipped byte: each run fails (exit 1 or 2, no panic) with a
/// line naming that part's file, and no manifest is pushed.
#[test]
fn a_missing_truncated_or_damaged_part_is_refused_naming_it() {
    let src = Registry::start();
    let dst = Registry::start();
    push_oci_image_with_layers(src.api(), "rot/app", "v1", &[random_bytes(unique_seed(), 12 * MIB as usize)]);
    let bundle = TestDir::new("split-rot");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    rules_job(&[&src], &[(src.repo("rot/app"), archive.clone())]).run(&["--max-archive-size", "5MiB"]).assert_ok();
    let parts = assert_parts(&tar, 5 * MIB);
    assert_eq!(parts.len(), 3);

    let import = |prefix: &str, part: &Path, words: &[&str]| {
        dst.clear_requests();
        let run = rules_job(&[&dst], &[(archive.clone(), dst.repo(prefix))]).run(&["--retries", "0"]);
        assert!(matches!(run.code, Some(1 | 2)), "exit 1 or 2:\n{run}");
        run.assert_no_panic();
        run.assert_stderr_names(p(part), words);
        let puts = manifest_puts(&dst);
        assert!(puts.is_empty(), "no manifest pushed: {puts:?}\n{run}");
        assert_eq!(dst.api().head_manifest(&format!("{prefix}/rot/app"), "v1"), None, "{run}");
        run
    };

    let aside = bundle.join("aside");
    fs::rename(&parts[1], &aside).unwrap();
    import("missing", &parts[1], &["missing"]);
    fs::rename(&aside, &parts[1]).unwrap();

    let last = fs::read(&parts[2]).unwrap();
    fs::write(&parts[2], &last[..last.len() - 1]).unwrap();
    import("short", &parts[2], &["damaged"]);
    fs::write(&parts[2], &last).unwrap();

    flip_byte(&parts[1]);
    let run = import("flipped", &parts[1], &["damaged"]);
    assert_eq!(run.code, Some(1), "an image that failed:\n{run}");
    assert_eq!(run.failed_count(), Some(1), "{run}");
}

/// `--max-archive-size` without an `oci-archive:` destination, below 1 MiB, or with an unknown
/// unit: exit 2 before anything runs, a line naming the flag and the fault, and no file written.
#[test]
fn a_max_archive_size_that_cannot_apply_is_refused() {
    let dir = TestDir::new("split-usage");
    let tar = dir.join("x.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    for (to, size, word) in [
        ("127.0.0.1:1/y", "5MiB", "oci-archive"),
        (archive.as_str(), "100KiB", "at least"),
        (archive.as_str(), "5XB", "unit"),
    ] {
        let run =
            run_syncer_within(&["copy", "127.0.0.1:1/x", to, "--max-archive-size", size], Duration::from_secs(30));
        assert_eq!(run.code, Some(2), "{to} {size}:\n{run}");
        run.assert_no_panic();
        run.assert_stderr_names("--max-archive-size", &[word]);
        assert_eq!(names_in(dir.path()), Vec::<String>::new(), "nothing written");
    }
}
