//! Bundles that never lose what they were given (issue 23): an archive rewrite that fails — the
//! disk fills up, or the process is killed while it writes the archive — keeps everything it
//! staged, says in its summary line and its report that the bundle was not written, fails what
//! did not land in it (an interrupted run's too) instead of listing it in sync, and a re-run
//! ends with an archive holding every tag, each importable byte-exact; `--prune` into an archive
//! takes the tag out of it (and a re-run prunes nothing); writers of one directory layout
//! (parallel shards) take turns on its `index.json`, a writer that has to wait says so, and no
//! writer loses another's entries.
//!
//! Checked from the outside: files on disk, `tar`, the real registries. The full-disk test needs
//! to mount a tmpfs (root, as here and in CI); where that is not permitted it says so and skips.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::layout::{entries, names_in, reachable, untar, Entry};

/// The lock file a writer of a directory layout takes (README, "Air-gapped sites").
const DIR_LOCK: &str = ".image-syncer.lock";

/// A tmpfs of a given size mounted on a fresh directory, unmounted (then removed) on drop.
struct Tmpfs {
    dir: TestDir,
}

impl Tmpfs {
    /// `None`, after saying why on stderr, where mounting is not permitted.
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = TestDir::new("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs", p(dir.path())])
            .output()
            .expect("run mount");
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a {mib} MiB tmpfs on {} ({}): this test needs root, as it has in CI",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process of a failed test may still hold a file there.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The `Synchronization finished, …` line of a run.
fn finished_line(run: &Run) -> String {
    run.lines_with(&["Synchronization finished"]).pop().unwrap_or_else(|| panic!("no summary line:\n{run}"))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}

/// The entries of the archive `tar`'s `index.json`, after checking that everything they reach is
/// in it, whole.
fn archive_entries(tar: &Path) -> BTreeSet<Entry> {
    let (unpacked, _) = untar(tar);
    reachable(unpacked.path());
    entries(unpacked.path())
}

/// Imports `archive` into the empty registry `dst` (below `site/`) and checks that each of
/// `images` (pushed to `src` under `repo:tag`) arrived byte-exact.
fn assert_imports(src: &Registry, dst: &Registry, archive: &str, images: &[(&Image, &str)]) {
    rules_job(&[dst], &[(archive.to_string(), dst.repo("site"))]).run(&[]).assert_ok();
    for (img, tag) in images {
        assert_image_copied(src.api(), dst.api(), img, &format!("site/{}", img.repo), tag);
    }
}

/// Polls `log` until a line says `needle`; panics if the run ends first or after `limit`.
fn wait_for_log(running: &mut Running, log: &Path, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(running.is_running(), "the run ended before its log said {needle:?}:\n{}", read_log(log));
        assert!(Instant::now() < deadline, "the log did not say {needle:?} within {limit:?}:\n{}", read_log(log));
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read_log(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

/// A tag added to an archive on a disk too small for the rewrite: the run fails, its summary line
/// and its report say the bundle was not written, the tag it copied is failed (class `bundle`)
/// in its outputs, the old archive is untouched and the staged files are kept; the failed tag
/// fed back while the disk is still full fails again (it is only staged); once there is room,
/// the re-run writes an archive holding both tags, each
/// importable byte-exact. (Before: the staged blobs were deleted as they went into the archive
/// that was never finished, the run said `0 images failed`, and the re-run called the new tag
/// `unchanged`, exited 0 and left it out.)
#[test]
fn a_full_disk_during_an_archive_rewrite_loses_nothing_and_says_the_bundle_was_not_written() {
    let Some(disk) = Tmpfs::mount(45) else { return };
    let src = Registry::start();
    let dst = Registry::start();
    let v1 = push_big_image(src.api(), "full/app", "v1", 8);
    let v2 = push_big_image(src.api(), "full/app", "v2", 12);
    let tar = disk.path().join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    rules_job(&[&src], &[(format!("{}:v1", src.repo("full/app")), archive.clone())]).run(&[]).assert_ok();
    let old = fs::read(&tar).expect("the first archive");

    // 8 MiB archived + 14 MiB of something else + 12 MiB staged leave 11 MiB: not enough for
    // the new archive (20 MiB) while the old one and the staged files are kept.
    let filler = disk.path().join("filler");
    fs::write(&filler, vec![0u8; 14 << 20]).unwrap();
    let job = rules_job(&[&src], &[(format!("{}:v1,v2", src.repo("full/app")), archive.clone())]);
    let report = job.dir.join("report.json");
    let (synced_file, failed_file) = (job.dir.join("synced.yaml"), job.dir.join("failed.yaml"));
    let run = job.run(&[
        "--report",
        p(&report),
        "--output-success-images",
        p(&synced_file),
        "--output-failed-images",
        p(&failed_file),
    ]);
    run.assert_failed();
    let summary = finished_line(&run);
    assert!(
        summary.contains("1 images failed")
            && summary.contains("1 bundle(s) not written")
            && summary.contains(&archive),
        "the summary line says v2 failed and the bundle was not written: {summary}\n{run}"
    );
    // v2 did not land: it is a failure everywhere, and the failed-images file brings it back;
    // v1 was in the old archive, which is kept, so it is still in sync.
    let r = read_json(&report);
    let status = |tag: &str| {
        let image =
            r["images"].as_array().and_then(|i| i.iter().find(|e| e["source"] == src.repo(&format!("full/app:{tag}"))));
        image.map(|e| {
            (e["status"].as_str().unwrap_or("").to_string(), e["error_class"].as_str().unwrap_or("").to_string())
        })
    };
    assert_eq!(status("v1"), Some(("unchanged".into(), String::new())), "{r:#}");
    assert_eq!(status("v2"), Some(("failed".into(), "bundle".into())), "{r:#}");
    assert_eq!((r["images_failed"].clone(), r["totals"]["images_synced"].clone()), (json!(1), json!(0)), "{r:#}");
    let listed = |path: &Path| fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (synced, failed) = (listed(&synced_file), listed(&failed_file));
    assert!(synced.contains("full/app:v1") && !synced.contains("full/app:v2"), "only v1 is in sync:\n{synced}");
    assert!(failed.contains("full/app:v2") && !failed.contains("full/app:v1"), "v2 is to retry:\n{failed}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("failed: ") && l.contains("full/app:v2") && l.contains("was not written")),
        "a failure line names v2 and the bundle:\n{run}"
    );
    assert_eq!(r["bundles_failed"], 1, "{r:#}");
    let bundle = r["bundles"].as_array().and_then(|b| b.iter().find(|b| b["bundle"] == archive.as_str()));
    let bundle = bundle.unwrap_or_else(|| panic!("the report lists the bundle: {r:#}"));
    assert_eq!(bundle["status"], "failed", "{r:#}");
    assert!(bundle["error"].as_str().is_some_and(|e| e.contains("space")), "the error says why: {r:#}");
    assert!(fs::read(&tar).unwrap() == old, "the old archive is untouched");

    // The failed images fed back while the disk is still full: v2 is in what the first run
    // staged, not in the archive, which is not written again. It is failed again, not taken
    // as `unchanged` and listed as in sync.
    let (synced2, failed2) = (job.dir.join("synced2.yaml"), job.dir.join("failed2.yaml"));
    let retry = run_syncer_within(
        &[
            "--auth",
            p(&job.auth),
            "--images",
            p(&failed_file),
            "--output-success-images",
            p(&synced2),
            "--output-failed-images",
            p(&failed2),
        ],
        Duration::from_secs(60),
    );
    retry.assert_failed();
    let summary = finished_line(&retry);
    assert!(summary.contains("1 images failed"), "v2 fails again: {summary}\n{retry}");
    let (synced2, failed2) = (listed(&synced2), listed(&failed2));
    assert!(!synced2.contains("full/app:v2"), "v2 is not in sync:\n{synced2}");
    assert!(failed2.contains("full/app:v2"), "v2 is still to retry:\n{failed2}");
    assert!(fs::read(&tar).unwrap() == old, "the old archive is still untouched");

    fs::remove_file(&filler).unwrap();
    let rerun = job.run(&[]);
    rerun.assert_ok();
    let name = src.repo("full/app");
    let want = BTreeSet::from([
        Entry::new(&name, "v1", &v1.digest, DOCKER_MANIFEST),
        Entry::new(&name, "v2", &v2.digest, DOCKER_MANIFEST),
    ]);
    assert_eq!(archive_entries(&tar), want, "the archive after the re-run:\n{rerun}");
    assert_eq!(names_in(disk.path()), ["bundle.tar"], "nothing left beside the archive");
    assert_imports(&src, &dst, &archive, &[(&v1, "v1"), (&v2, "v2")]);
}

/// SIGKILL as soon as the log says the archive is being written (a 96 MiB layer makes that take
/// a while): the re-run ends with an archive holding both tags, each importable byte-exact, and
/// nothing else beside it.
#[test]
fn a_sigkill_while_the_archive_is_written_loses_nothing() {
    let src = Registry::start();
    let dst = Registry::start();
    let v1 = push_simple(src.api(), "kill/app", "v1");
    let v2 = push_big_image(src.api(), "kill/app", "v2", 96);
    let bundle = TestDir::new("kill-tar");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    rules_job(&[&src], &[(format!("{}:v1", src.repo("kill/app")), archive.clone())]).run(&[]).assert_ok();

    let job = rules_job(&[&src], &[(format!("{}:v1,v2", src.repo("kill/app")), archive.clone())]);
    let log = job.dir.join("run.log");
    let mut running = Running::spawn(&job.args(&["--log", p(&log)]), &[]);
    wait_for_log(&mut running, &log, "writing the archive", Duration::from_secs(90));
    running.signal("KILL");
    let killed = running.wait(Duration::from_secs(30));
    assert_eq!(killed.code, None, "killed by the signal:\n{killed}");
    let tmp = PathBuf::from(format!("{}.tmp", tar.display()));
    eprintln!("the kill landed {}", if tmp.exists() { "while bundle.tar.tmp was written" } else { "after it" });

    let rerun = job.run(&[]);
    rerun.assert_ok();
    let name = src.repo("kill/app");
    let want = BTreeSet::from([
        Entry::new(&name, "v1", &v1.digest, DOCKER_MANIFEST),
        Entry::new(&name, "v2", &v2.digest, DOCKER_MANIFEST),
    ]);
    assert_eq!(archive_entries(&tar), want, "the archive after the re-run:\n{}\n{rerun}", read_log(&log));
    assert_eq!(names_in(bundle.path()), ["bundle.tar"], "nothing left beside the archive");
    assert_imports(&src, &dst, &archive, &[(&v1, "v1"), (&v2, "v2")]);
}

/// An archive whose `index.json` lists tags whose manifests are not in it (as the old rewrite left
/// them): a run over one of those tags copies it again instead of calling it `unchanged`, and the
/// archive it writes lists the other only with a warning naming it — left out, as importing it
/// could only fail. The archive then imports byte-exact.
#[test]
fn a_tag_whose_manifest_is_missing_from_the_archive_is_copied_again() {
    let src = Registry::start();
    let dst = Registry::start();
    let (v1, v2) = (push_simple(src.api(), "lost/app", "v1"), push_simple(src.api(), "lost/app", "v2"));
    let bundle = TestDir::new("lost-tar");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    rules_job(&[&src], &[(src.repo("lost/app"), archive.clone())]).run(&[]).assert_ok();

    // The same archive without the two manifests.
    let (unpacked, _) = untar(&tar);
    for img in [&v1, &v2] {
        fs::remove_file(unpacked.join(&format!("blobs/sha256/{}", &img.digest["sha256:".len()..]))).unwrap();
    }
    let st = Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(unpacked.path()).arg(".").status().unwrap();
    assert!(st.success(), "tar -cf");

    let run = rules_job(&[&src], &[(format!("{}:v1", src.repo("lost/app")), archive.clone())]).run(&[]);
    run.assert_ok();
    assert_eq!(run.lines_with(&["synced", "lost/app:v1"]).len(), 1, "v1 copied again:\n{run}");
    assert_eq!(run.lines_with(&["lost/app:v2", "not there"]).len(), 1, "a warning names v2:\n{run}");
    let want = BTreeSet::from([Entry::new(&src.repo("lost/app"), "v1", &v1.digest, DOCKER_MANIFEST)]);
    assert_eq!(archive_entries(&tar), want, "the archive after the run:\n{run}");
    assert_imports(&src, &dst, &archive, &[(&v1, "v1")]);
}

/// `prune: true` into an archive, after `v2` was deleted at the source: the tag is gone from the
/// archive's `index.json`, and a re-run prunes nothing.
#[test]
fn prune_into_an_archive_takes_the_tag_out_of_it_once() {
    let src = Registry::start_with_deletion();
    let s = src.api();
    let (v1, v2, v3) = (push_simple(s, "p/app", "v1"), push_simple(s, "p/app", "v2"), push_simple(s, "p/app", "v3"));
    let bundle = TestDir::new("prune-tar");
    let tar = bundle.join("bundle.tar");
    let archive = format!("oci-archive:{}", p(&tar));
    let job = rules_job(&[&src], &[(src.repo("p/app"), json!({"to": archive, "prune": true}))]);
    job.run(&[]).assert_ok();
    let name = src.repo("p/app");
    let entry = |img: &Image, tag: &str| Entry::new(&name, tag, &img.digest, DOCKER_MANIFEST);
    assert_eq!(archive_entries(&tar), BTreeSet::from([entry(&v1, "v1"), entry(&v2, "v2"), entry(&v3, "v3")]));

    assert_eq!(s.delete_manifest("p/app", &v2.digest), 202, "delete v2 at the source");
    let run = job.run(&[]);
    run.assert_ok();
    assert_eq!(run.lines_with(&["pruned", "v2"]).len(), 1, "v2 pruned:\n{run}");
    assert_eq!(archive_entries(&tar), BTreeSet::from([entry(&v1, "v1"), entry(&v3, "v3")]), "after the prune:\n{run}");

    let report = job.dir.join("report.json");
    let again = job.run(&["--report", p(&report)]);
    again.assert_ok();
    assert!(again.lines_with(&["pruned"]).is_empty(), "the re-run prunes nothing:\n{again}");
    assert_eq!(read_json(&report)["totals"]["tags_pruned"], 0);
    assert_eq!(names_in(bundle.path()), ["bundle.tar"], "nothing left beside the archive");
}

/// Three `--shard i/3` runs writing one directory layout at once, started while another process
/// holds the layout's lock: each says it waits, all succeed, and `index.json` lists every image
/// of every shard. (Before: each rewrote `index.json` from its own copy, and the last one won.)
/// Shards are chosen by a hash of the destination repository, whose name holds the source's
/// random port: with 24 repositories a shard is left without any (and so never waits) about
/// once in 5,000 runs, which the test allows for one shard (with 9 it was one run in 13).
#[test]
fn shards_writing_one_directory_at_once_keep_every_image() {
    let src = Registry::start();
    let repos: Vec<String> = (0..24).map(|i| format!("shard/app{i}")).collect();
    let images: Vec<Image> =
        repos.iter().map(|r| push_image(src.api(), r, "v1", ImageKind::Oci, "linux", "amd64", "")).collect();
    let bundle = TestDir::new("shards");
    let dir = bundle.join("oci");
    // An empty layout, with its lock held by this test until every shard waits for it.
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(dir.join("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
    let held = fs::File::create(dir.join(DIR_LOCK)).unwrap();
    held.lock().unwrap();

    let layout = format!("oci:{}", p(&dir));
    let rules: Vec<(String, String)> = repos.iter().map(|r| (src.repo(r), layout.clone())).collect();
    let job = rules_job(&[&src], &rules);
    let logs: Vec<PathBuf> = (0..3).map(|i| job.dir.join(&format!("shard{i}.log"))).collect();
    let shards: Vec<String> = (0..3).map(|i| format!("{i}/3")).collect();
    let mut running: Vec<Running> =
        (0..3).map(|i| Running::spawn(&job.args(&["--shard", &shards[i], "--log", p(&logs[i])]), &[])).collect();
    let waits = |log: &Path| read_log(log).lines().any(|l| l.contains(&layout) && l.contains("waiting"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && running.iter_mut().zip(&logs).any(|(r, l)| r.is_running() && !waits(l)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(held);
    let runs: Vec<Run> = running.into_iter().map(|r| r.wait(RUN_LIMIT)).collect();
    for (run, log) in runs.iter().zip(&logs) {
        run.assert_ok();
        assert!(read_log(log).contains("Synchronization finished, 0 images failed"), "{}", read_log(log));
    }

    let want: BTreeSet<Entry> =
        repos.iter().zip(&images).map(|(r, img)| Entry::new(&src.repo(r), "v1", &img.digest, OCI_MANIFEST)).collect();
    let all_logs: Vec<String> = logs.iter().map(|l| read_log(l)).collect();
    assert_eq!(entries(&dir), want, "index.json lists every shard's images:\n{}", all_logs.join("\n"));
    reachable(&dir);
    let mut waited = 0;
    for (i, log) in logs.iter().enumerate() {
        let text = read_log(log);
        if text.contains(&format!("shard {}: 0 of", shards[i])) {
            continue;
        }
        assert!(waits(log), "shard {i} says it waits for the layout's lock:\n{text}");
        waited += 1;
    }
    assert!(waited >= 2, "at least two shards wrote the layout at once:\n{}", all_logs.join("\n"));
}

/// SIGTERM while images are copied into a new archive: the archive is not made (its staging
/// directory is kept for a re-run), so nothing the run copied landed. The success file lists no
/// image and the failed file lists every tag, those staged included: a retry of the failed images
/// brings them all.
#[test]
fn images_staged_by_an_interrupted_archive_run_are_not_reported_in_sync() {
    let src = Registry::start();
    let imgs: Vec<Image> = (0..6).map(|i| push_simple(src.api(), "staged/app", &format!("t{i}"))).collect();
    // Every request held 60 ms and one worker: the run takes seconds, the signal lands mid-way.
    let proxy = Proxy::start_with(&src.addr(), ProxyOpts { delay: Duration::from_millis(60), ..ProxyOpts::default() });
    let bundle = TestDir::new("staged");
    let tar = bundle.join("bundle.tar");
    let staged = PathBuf::from(format!("{}.partial", tar.display()));
    let job = Job::new(
        &[AuthEntry::insecure(&proxy.addr())],
        &images_yaml_values(&[(proxy.repo("staged/app"), format!("oci-archive:{}", p(&tar)))]),
    );
    let (synced, failed) = (job.dir.join("synced.yaml"), job.dir.join("failed.yaml"));
    let args = ["--proc", "1", "--output-success-images", p(&synced), "--output-failed-images", p(&failed)];
    let running =
        Running::spawn(&job.args(&args), &[]).wait_until("it staged an image", Duration::from_secs(60), || {
            staged.join("index.json").exists() && !entries(&staged).is_empty()
        });
    running.signal("TERM");
    let run = running.wait(Duration::from_secs(30));
    assert_eq!(run.code, Some(143), "SIGTERM exits 143:\n{run}");
    assert!(!tar.exists(), "no archive was made:\n{run}");
    assert!(!entries(&staged).is_empty(), "the staged images are kept");

    let synced = fs::read_to_string(&synced).expect("the success file");
    assert!(!synced.contains("staged/app"), "nothing landed, so nothing is in sync:\n{synced}\n{run}");
    let failed = fs::read_to_string(&failed).expect("the failed file");
    for i in 0..imgs.len() {
        assert!(failed.contains(&format!("staged/app:t{i}")), "t{i} is to retry:\n{failed}\n{run}");
    }
}
