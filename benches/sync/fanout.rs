//! Fan-out (`fanout`): one source, several destinations. `BENCH_FANOUT_REPOS` (default 10)
//! repositories × `BENCH_FANOUT_TAGS` (default 2) small images (one base layer in every
//! repository, one of two "runtime" layers, one of their own) copied to 2, then 3 new destination
//! registries in one run, one rule per repository naming every destination: wall time, the
//! source's blob GETs next to the number of unique blobs, the requests the source and the
//! destinations saw, peak RSS. skopeo cannot fan out: next to it, one `skopeo sync` per
//! destination, in turn.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use super::common::{auth_for, auth_yaml, random_bytes, unique_seed, Client, Registry, DOCKER_MANIFEST};
use super::fixtures::{config_blob, manifest};
use super::output::{grid, mib, Row};
use super::run::{repeat, run_measured, Measured, Procs};
use super::skopeo::{skopeo_source_yaml, skopeo_sync};
use super::{Bench, Settings, LIMIT};

/// The fan-out section copies to this many destinations at once, in turn.
const FANOUT_DESTINATIONS: [usize; 2] = [2, 3];

pub(super) struct FanoutOpts {
    pub(super) repos: usize,
    pub(super) tags: usize,
}

struct FanoutWorkload {
    repos: Vec<String>,
    /// (repository, tag, manifest digest)
    images: Vec<(String, String, String)>,
    /// Distinct blob digests (layers and configs).
    unique_blobs: usize,
    /// Distinct (repository, blob) pairs: what a tool reading each repository on its own reads.
    repo_blobs: usize,
}

/// Pushes `repos` repositories `fan/r00..` of `tags` tags `v1..` each. Every image has three
/// layers: one 32 KiB base shared by every repository, one of two 16-20 KiB "runtime" layers
/// (even / odd repositories), and an 8-16 KiB layer of its own; plus a config of its own.
fn push_fanout_workload(c: &Client, opts: &FanoutOpts) -> FanoutWorkload {
    let base = random_bytes(unique_seed(), 32 * 1024);
    let runtimes: Vec<Vec<u8>> = (0..2).map(|i| random_bytes(unique_seed(), 16 * 1024 + i * 4096)).collect();
    let repos: Vec<String> = (0..opts.repos).map(|r| format!("fan/r{r:02}")).collect();
    let threads = 4usize;
    let pushed: Vec<(String, String, String, Vec<String>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (base, runtimes, repos) = (&base, &runtimes, &repos);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (r, repo) in repos.iter().enumerate().skip(t).step_by(threads) {
                        let runtime = &runtimes[r % runtimes.len()];
                        let shared = [
                            (c.push_blob(repo, base), base.len() as u64),
                            (c.push_blob(repo, runtime), runtime.len() as u64),
                        ];
                        for j in 0..opts.tags {
                            let seed = unique_seed();
                            let app = random_bytes(seed, 8 * 1024 + (seed % (8 * 1024)) as usize);
                            let mut layers = shared.to_vec();
                            layers.push((c.push_blob(repo, &app), app.len() as u64));
                            let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
                            let config = config_blob(&diff_ids);
                            let config_digest = c.push_blob(repo, &config);
                            let bytes = manifest(&config, &config_digest, &layers);
                            let tag = format!("v{}", j + 1);
                            let digest = c.put_manifest(repo, &tag, DOCKER_MANIFEST, &bytes);
                            let mut blobs = diff_ids;
                            blobs.push(config_digest);
                            out.push((repo.clone(), tag, digest, blobs));
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("fixture thread")).collect()
    });
    let unique: BTreeSet<&String> = pushed.iter().flat_map(|p| &p.3).collect();
    let in_repos: BTreeSet<(&String, &String)> =
        pushed.iter().flat_map(|p| p.3.iter().map(move |b| (&p.0, b))).collect();
    FanoutWorkload {
        unique_blobs: unique.len(),
        repo_blobs: in_repos.len(),
        images: pushed.iter().map(|p| (p.0.clone(), p.1.clone(), p.2.clone())).collect(),
        repos,
    }
}

/// One rule per repository, with the same path at every destination: `src/repo: [d1/repo, d2/repo]`.
fn fanout_rules(src: &Registry, dsts: &[Registry], repos: &[String]) -> String {
    let mut yaml = String::new();
    for repo in repos {
        let to: Vec<String> = dsts.iter().map(|d| d.repo(repo)).collect();
        yaml.push_str(&format!("{}: [{}]\n", src.repo(repo), to.join(", ")));
    }
    yaml
}

/// Every image of the workload is at every destination, with the source's manifest digest.
fn check_fanout(dsts: &[Registry], w: &FanoutWorkload) -> Result<(), String> {
    for (k, dst) in dsts.iter().enumerate() {
        for (repo, tag, digest) in &w.images {
            match dst.api().head_manifest(repo, tag) {
                Some(d) if &d == digest => {}
                other => return Err(format!("destination {}: {repo}:{tag} is {other:?}, source {digest}", k + 1)),
            }
        }
    }
    Ok(())
}

/// Requests seen in one run: source blob GETs, all source requests, all destination requests.
#[derive(Default, Clone, Copy)]
struct FanoutCounts {
    src_blob_gets: usize,
    src: usize,
    dst: usize,
}

impl FanoutCounts {
    fn take(src: &Registry, dsts: &[Registry]) -> FanoutCounts {
        let reqs = src.requests();
        FanoutCounts {
            src_blob_gets: reqs.iter().filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:")).count(),
            src: reqs.len(),
            dst: dsts.iter().map(|d| d.requests().len()).sum(),
        }
    }
}

/// Copies the fan-out workload to 2, then 3 new destinations in one run (and with skopeo, one run
/// per destination): the section's report.
pub(super) fn fanout_section(b: &Bench, s: &Settings) -> Result<String, String> {
    let (src, work, opts, runs, skopeo) = (&b.src, &b.work, &s.fanout, s.runs, &s.skopeo);
    eprint!("pushing {} repositories x {} tags (shared base layer) to the source ... ", opts.repos, opts.tags);
    let t = Instant::now();
    let w = push_fanout_workload(src.api(), opts);
    eprintln!("{:.1?}", t.elapsed());
    let skopeo_yaml = work.write("skopeo-fanout.yaml", &skopeo_source_yaml(&src.addr(), &w.repos));
    let fresh = |n: usize| -> Vec<Registry> { (0..n).map(|_| Registry::start()).collect() };
    let mut rows = Vec::new();
    for n in FANOUT_DESTINATIONS {
        eprint!("fan-out to {n} destinations ... ");
        let t = Instant::now();
        let mut counts = FanoutCounts::default();
        let measured = repeat(runs, |i| {
            let dsts = fresh(n);
            let regs: Vec<&Registry> = std::iter::once(src).chain(&dsts).collect();
            let auth = work.write("auth-fanout.yaml", &auth_yaml(&auth_for(&regs)));
            let images = work.write("images-fanout.yaml", &fanout_rules(src, &dsts, &w.repos));
            src.clear_requests();
            let run = run_measured(&auth, &images, Procs::Default, &format!("fanout-{n}-{i}"))?;
            counts = FanoutCounts::take(src, &dsts);
            check_fanout(&dsts, &w)?;
            Ok(run)
        })?;
        rows.push(fanout_row(format!("image-syncer: 1 run, {n} destinations, defaults"), &measured, counts, &w));
        if let Some(bin) = &skopeo.bin {
            let measured = repeat(runs, |i| {
                let dsts = fresh(n);
                src.clear_requests();
                let mut total = Measured::wall_only(Duration::ZERO);
                for (k, dst) in dsts.iter().enumerate() {
                    let m = skopeo_sync(bin, &skopeo_yaml, &dst.repo("fan"), &format!("fanout-{n}-{i}-{k}"), LIMIT)?;
                    total.wall += m.wall;
                    total.peak_kib = total.peak_kib.max(m.peak_kib);
                }
                counts = FanoutCounts::take(src, &dsts);
                check_fanout(&dsts, &w)?;
                Ok(total)
            })?;
            rows.push(fanout_row(format!("skopeo sync: {n} runs, one per destination"), &measured, counts, &w));
        }
        eprintln!("{:.1?}", t.elapsed());
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "fan-out: {} repositories x {} tags from one source to {} new destination registries \
         (one images-file rule per repository: `src/repo: [dst1/repo, dst2/repo, ...]`)",
        opts.repos,
        opts.tags,
        FANOUT_DESTINATIONS.map(|n| n.to_string()).join(", then ")
    );
    let _ = writeln!(
        out,
        "workload: {} images of 3 layers (a 32 KiB base in every repository, one of 2 runtime layers of 16-20 KiB, \
         8-16 KiB of its own) and a config: {} unique blobs, {} (repository, blob) pairs",
        w.images.len(),
        w.unique_blobs,
        w.repo_blobs
    );
    out.push_str(&grid(
        &["scenario", "wall", "(min-max)", "peak RSS", "src blob GETs", "unique blobs", "src requests", "dst requests"],
        &rows,
    ));
    let _ = writeln!(
        out,
        "src blob GETs = GET /v2/.../blobs/sha256:... in the source's access log (last run); reading every unique \
         blob once per run is the floor;"
    );
    let _ = writeln!(out, "src / dst requests = every request the source / all destinations together saw (last run).");
    match &skopeo.bin {
        Some(_) => {
            let _ = writeln!(
                out,
                "skopeo cannot fan out: one `skopeo sync --src yaml --dest docker --preserve-digests` per destination, \
                 in turn; its wall is their sum, its peak RSS the highest of them."
            );
        }
        None => {
            let _ = writeln!(out, "skopeo: not run, {}.", skopeo.describe());
        }
    }
    Ok(out)
}

fn fanout_row(scenario: String, runs: &[Measured], c: FanoutCounts, w: &FanoutWorkload) -> Vec<String> {
    let row = Row::new(scenario, runs);
    let (median, min, max) = row.wall;
    vec![
        row.scenario.clone(),
        format!("{:.2} s", median.as_secs_f64()),
        format!("({:.2}-{:.2})", min.as_secs_f64(), max.as_secs_f64()),
        mib(row.peak_kib),
        c.src_blob_gets.to_string(),
        w.unique_blobs.to_string(),
        c.src.to_string(),
        c.dst.to_string(),
    ]
}
