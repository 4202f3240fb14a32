//! `cargo bench --bench sync`: end-to-end figures for the real release binary against real
//! `docker-registry` processes on 127.0.0.1 (the integration-test harness starts them).
//!
//! It prints, and never asserts on, timings:
//!
//! * throughput: one image whose layer is `BENCH_LAYER_MIB` MiB (default 256) of pseudo-random
//!   bytes, streamed into the source registry, copied source → destination: wall time and MiB/s,
//!   next to two reference figures measured by this process itself: reading the blob from the
//!   source alone, and uploading it (the fixture push) alone;
//! * peak memory (`VmHWM` of the syncer, polled from `/proc/PID/status`) for a small and the large
//!   layer: it must not grow with the layer size, as layers are streamed through a fixed buffer;
//! * many small images (`BENCH_TAGS`, default 50, tags × 3 small layers of 8-32 KiB) with
//!   `--proc 1`, `--proc 8`, the defaults (no `--proc` flag) and skopeo, with a floor line each:
//!   the CPU seconds of the syncer and both registries over the cores, the least wall this machine
//!   allows if nothing waited on a disk or a lock (`TMPDIR=/dev/shm` puts the registries' storage
//!   on tmpfs and shows how much of the rest is their `fsync`s);
//! * a no-op re-run of those tags (nothing changed), at `--proc 8` and the defaults: wall time and
//!   the requests each registry saw;
//! * long links: `BENCH_WAN_TAGS` (default 24) small images of the same kind copied from the source
//!   *through* a harness [`Proxy`] that delays every request by 20 ms and by 100 ms (a stand-in
//!   for a far-away registry), at the defaults and with `--proc 5` (the Go tool's default), 8, 16,
//!   32 and 64, and one `skopeo sync`
//!   through the same proxy: wall time, peak RSS and the requests the proxy and the destination saw
//!   (last run), how much faster each `--proc` is than `--proc 8`, the defaults' (and `--proc` 5
//!   and 32's) wall against skopeo's, and where the CPU went (the
//!   syncer, the two `docker-registry` processes, this process's proxy threads — on a small
//!   machine the registries, not the link, set the floor); and `BENCH_WAN_INDEXES` (default 4)
//!   multi-platform images (OCI indexes of 8 platform images) at `--proc` 8 and 32;
//! * fan-out: `BENCH_FANOUT_REPOS` (default 10) repositories × `BENCH_FANOUT_TAGS` (default 2)
//!   small images (3 layers of 8-32 KiB: one base layer in every repository, one of two
//!   "runtime" layers, one of their own) copied from one source to 2, then 3 new destination
//!   registries in one run, with one rule per repository naming every destination
//!   (`src/repo: [dst1/repo, dst2/repo]`): wall time, the source's blob GETs next to the number of
//!   unique blobs, all requests the source and the destinations saw, peak RSS; next to it skopeo,
//!   which cannot fan out: one `skopeo sync` per destination (the sum of their wall times);
//! * many tags: `BENCH_MANY_TAGS` (default 10000) tiny images in one repository (one shared layer,
//!   a config of their own; the seeding time is printed), and a tenth of that in another: a cold
//!   run into an empty destination (at the defaults) and a no-op re-run of each at the defaults,
//!   `--proc 5` and `--proc 32`, with wall time, requests per tag at
//!   the source and the destination, a floor line per no-op (as for the small images: how
//!   much of the wall the registries' CPU explains), peak RSS (flat in the number of tags?) and, cold, the time
//!   to the first image (the first `synced` line on the syncer's stderr); next to it one cold
//!   and one no-op `skopeo sync` of each size up to `BENCH_SKOPEO_MAX_TAGS` (default 10000). Estimated from
//!   small runs on 2 cores, the section takes 15-20 minutes at its defaults, about 7 of them for
//!   skopeo's 10000 tags (it copies one image at a time; `BENCH_SKOPEO_MAX_TAGS=1000` leaves that
//!   run out) and under 2 for the seeding;
//! * huge, only with `BENCH_HUGE=1` (or `BENCH_ONLY=huge`): `BENCH_HUGE_TAGS` (default 100000)
//!   tiny images of the same kind in one repository, one cold run and one no-op at the defaults:
//!   wall, time to the first image, peak RSS, requests per tag. The seeding alone takes about a
//!   quarter of an hour on 2 cores (3 requests per tag), the cold run about as long again.
//!
//! `BENCH_ONLY=SECTION[,SECTION…]` runs only some sections: `big` (throughput and peak memory),
//! `small` (many small images and the no-op re-run), `wan` (long links), `fanout`, `tags` (many
//! tags), `immutable` (`BENCH_IMMUTABLE_TAGS`, default 3,000, in `BENCH_IMMUTABLE_REPOS`, default
//! 30, repositories: a no-op with every tag compared and with `--immutable`, in `sync/immutable.rs`).
//! `BENCH_ONLY=wan cargo bench --bench sync` takes a few minutes.
//!
//! Each syncer figure is the median of `BENCH_RUNS` (default 3) runs, each into a new destination
//! repository (fan-out and many tags: new destination registries).
//! `IMAGE_SYNCER_BIN=/path/to/other/binary` measures another build (or the Go tool, which takes
//! the same flags) instead. skopeo is `/usr/bin/skopeo` (or `skopeo` on the `PATH`) when it runs;
//! `BENCH_SKOPEO=/path` picks another, `BENCH_SKOPEO=0` leaves it out (fan-out: `BENCH_RUNS` runs;
//! many tags: one run per size).
//! The program does check that every copy really happened (same digests at both ends), so that a
//! fast figure can never come from a run that silently did nothing.

// The integration tests' harness: this uses only a part of it (the rest, and its re-exports, unused here).
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

#[path = "sync/immutable.rs"]
mod immutable;
#[path = "sync/seed.rs"]
mod seed;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::{
    agent_config, auth_for, auth_yaml, docker_json, p, push_index, random_bytes, syncer_bin, unique_seed,
    without_proxies, AuthEntry, Client, IndexKind, Proxy, ProxyOpts, Registry, Request, TestDir, DOCKER_CONFIG,
    DOCKER_LAYER, DOCKER_MANIFEST,
};

const MIB: u64 = 1024 * 1024;
/// The small layer of the memory comparison.
const SMALL_LAYER_MIB: u64 = 32;
const DEFAULT_LAYER_MIB: u64 = 256;
const DEFAULT_TAGS: usize = 50;
const LAYERS_PER_SMALL_IMAGE: usize = 3;
const DEFAULT_RUNS: usize = 3;
const DEFAULT_WAN_TAGS: usize = 24;
/// Multi-platform images of the long-links section: indexes of these platforms (each entry an
/// image of two small layers), copied at `--proc` 8 and 32.
const DEFAULT_WAN_INDEXES: usize = 4;
const WAN_INDEX_PLATFORMS: [(&str, &str, &str); 8] = [
    ("linux", "amd64", ""),
    ("linux", "arm64", "v8"),
    ("linux", "arm", "v7"),
    ("linux", "arm", "v6"),
    ("linux", "386", ""),
    ("linux", "ppc64le", ""),
    ("linux", "s390x", ""),
    ("linux", "riscv64", ""),
];
const WAN_INDEX_PROCS: [usize; 2] = [8, 32];
/// The delay the proxy in front of the source adds to every request, in the long-links section.
const WAN_DELAYS_MS: [u64; 2] = [20, 100];
/// `--proc` values of the long-links section: the default, then more workers to hide the latency.
const WAN_PROCS: [usize; 5] = [5, 8, 16, 32, 64];
const DEFAULT_FANOUT_REPOS: usize = 10;
const DEFAULT_FANOUT_TAGS: usize = 2;
/// The fan-out section copies to this many destinations at once, in turn.
const FANOUT_DESTINATIONS: [usize; 2] = [2, 3];
const DEFAULT_MANY_TAGS: usize = 10_000;
/// skopeo copies the many-tags repository only up to this many tags (it copies one image at a time).
const DEFAULT_SKOPEO_MAX_TAGS: usize = 10_000;
/// The no-op re-runs of the many-tags section run at the defaults and at these `--proc` (5: the
/// Go tool's default, and this tool's before issue 24; 32: as many as the long links want).
const NOOP_PROCS: [usize; 2] = [5, 32];
/// The log line the syncer writes once an image is complete at the destination.
const SYNCED_LINE: &str = "] synced ";
/// The line skopeo prints once it has written an image's manifest (it stores signatures next).
const SKOPEO_DONE_LINE: &str = "Storing signatures";
/// How long one run of the many-tags section may take before it is killed.
const TAGS_LIMIT: Duration = Duration::from_secs(1800);
/// How long one run of the 100,000-tag section may take before it is killed.
const HUGE_LIMIT: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_HUGE_TAGS: usize = 100_000;
/// How long any other run may take.
const LIMIT: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("{name}={v:?}: expected a positive integer"))
        }
        _ => Ok(default),
    }
}

/// Which sections run (`BENCH_ONLY`); all of them by default.
struct Sections {
    big: bool,
    small: bool,
    wan: bool,
    fanout: bool,
    tags: bool,
    immutable: bool,
    /// Named in `BENCH_ONLY` (the huge section also runs with `BENCH_HUGE=1`).
    huge: bool,
}

const SECTION_NAMES: [&str; 6] = ["big", "small", "wan", "fanout", "tags", "immutable"];

impl Sections {
    fn from_env() -> Result<Sections, String> {
        let v = std::env::var("BENCH_ONLY").unwrap_or_default();
        if v.trim().is_empty() {
            return Ok(Sections {
                big: true,
                small: true,
                wan: true,
                fanout: true,
                tags: true,
                immutable: true,
                huge: false,
            });
        }
        let mut s = Sections {
            big: false,
            small: false,
            wan: false,
            fanout: false,
            tags: false,
            immutable: false,
            huge: false,
        };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "big" => s.big = true,
                "small" => s.small = true,
                "wan" => s.wan = true,
                "fanout" => s.fanout = true,
                "tags" => s.tags = true,
                "immutable" => s.immutable = true,
                "huge" => s.huge = true,
                _ => {
                    return Err(format!(
                        "BENCH_ONLY={v:?}: unknown section {name:?} (expected {}, huge)",
                        SECTION_NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(s)
    }

    fn names(&self) -> String {
        let on = [self.big, self.small, self.wan, self.fanout, self.tags, self.immutable];
        let names: Vec<&str> = SECTION_NAMES.iter().zip(on).filter(|n| n.1).map(|n| *n.0).collect();
        names.join(",")
    }
}

/// The settings the environment gives (`BENCH_*`; see the module doc).
struct Settings {
    sections: Sections,
    big_mib: u64,
    small_mib: u64,
    tags: usize,
    runs: usize,
    wan_tags: usize,
    wan_indexes: usize,
    fanout: FanoutOpts,
    many_tags: usize,
    skopeo: Skopeo,
    /// `BENCH_HUGE=1`: the tags of the huge section (`BENCH_HUGE_TAGS`), which runs only then.
    huge: Option<usize>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let big_mib = env_number("BENCH_LAYER_MIB", DEFAULT_LAYER_MIB)?;
        let sections = Sections::from_env()?;
        let huge_on = sections.huge
            || !matches!(std::env::var("BENCH_HUGE").unwrap_or_default().trim(), "" | "0" | "off" | "no" | "false");
        Ok(Settings {
            sections,
            big_mib,
            small_mib: SMALL_LAYER_MIB.min(big_mib),
            tags: env_number("BENCH_TAGS", DEFAULT_TAGS as u64)? as usize,
            runs: env_number("BENCH_RUNS", DEFAULT_RUNS as u64)? as usize,
            wan_tags: env_number("BENCH_WAN_TAGS", DEFAULT_WAN_TAGS as u64)? as usize,
            wan_indexes: env_number("BENCH_WAN_INDEXES", DEFAULT_WAN_INDEXES as u64)? as usize,
            fanout: FanoutOpts {
                repos: env_number("BENCH_FANOUT_REPOS", DEFAULT_FANOUT_REPOS as u64)? as usize,
                tags: env_number("BENCH_FANOUT_TAGS", DEFAULT_FANOUT_TAGS as u64)? as usize,
            },
            many_tags: env_number("BENCH_MANY_TAGS", DEFAULT_MANY_TAGS as u64)? as usize,
            skopeo: Skopeo::from_env(env_number("BENCH_SKOPEO_MAX_TAGS", DEFAULT_SKOPEO_MAX_TAGS as u64)? as usize)?,
            huge: match huge_on {
                false => None,
                true => Some(env_number("BENCH_HUGE_TAGS", DEFAULT_HUGE_TAGS as u64)? as usize),
            },
        })
    }

    /// The header: the binary, the machine and every setting.
    fn print(&self) {
        let (small_mib, big_mib, tags, runs) = (self.small_mib, self.big_mib, self.tags, self.runs);
        let (wan_tags, wan_indexes) = (self.wan_tags, self.wan_indexes);
        println!("image-syncer benchmark");
        println!("  binary: {}", syncer_bin().display());
        println!(
            "  cpus: {}; layers of {small_mib} and {big_mib} MiB (BENCH_LAYER_MIB); {tags} small images (BENCH_TAGS); \
             {wan_tags} small images and {wan_indexes} indexes over long links (BENCH_WAN_TAGS, BENCH_WAN_INDEXES); \
             each figure is the median of {runs} runs (BENCH_RUNS); sections: {} (BENCH_ONLY)",
            thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            self.sections.names()
        );
        if let Some(n) = self.huge {
            println!("  huge: {n} tags (BENCH_HUGE, BENCH_HUGE_TAGS)");
        }
        if self.sections.fanout || self.sections.tags {
            println!(
                "  fan-out: {} repositories x {} tags (BENCH_FANOUT_REPOS, BENCH_FANOUT_TAGS); many tags: {} \
                 (BENCH_MANY_TAGS); skopeo: {}",
                self.fanout.repos,
                self.fanout.tags,
                self.many_tags,
                self.skopeo.describe()
            );
        }
    }
}

/// The source and destination registries every section starts from, the work directory, and
/// an auth file for the two registries.
struct Bench {
    src: Registry,
    dst: Registry,
    work: TestDir,
    auth: PathBuf,
}

/// Runs the sections `BENCH_ONLY` names (all by default), then prints their figures.
fn bench() -> Result<(), String> {
    let s = Settings::from_env()?;
    s.print();
    let started = Instant::now();
    let (src, dst, work) = (Registry::start(), Registry::start(), TestDir::new("bench"));
    let auth = work.write("auth.yaml", &auth_yaml(&auth_for(&[&src, &dst])));
    let b = Bench { src, dst, work, auth };
    let on = &s.sections;
    let big = if on.big { Some(big_section(&b, &s)?) } else { None };
    let small = if on.small { Some(small_section(&b, &s)?) } else { None };
    let wan = if on.wan { Some(wan_section(&b, &s)?) } else { None };
    let fanout = if on.fanout { Some(fanout_section(&b, &s)?) } else { None };
    let tags = if on.tags { Some(tags_section(&b, &s)?) } else { None };
    let immutable = if on.immutable { Some(immutable::section(&b, &s)?) } else { None };
    let huge = match s.huge {
        Some(count) => Some(huge_section(&b, count)?),
        None => None,
    };
    print_report(&s, big, small, wan, [fanout, tags, immutable, huge]);
    println!("total benchmark time: {:.1?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// large layers: throughput and peak memory
// ---------------------------------------------------------------------------------------------

struct BigReport {
    rows: Vec<Row>,
    /// (layer MiB, peak RSS in KiB) of the small and the large layer.
    peaks: Vec<(u64, Option<u64>)>,
}

/// Copies one image with a small and one with a large layer (`BENCH_LAYER_MIB`), next to reading
/// and writing the large one alone.
fn big_section(b: &Bench, s: &Settings) -> Result<BigReport, String> {
    let Bench { src, dst, work, auth } = b;
    let (runs, big_mib) = (s.runs, s.big_mib);
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    let mut sizes = vec![s.small_mib];
    if big_mib != s.small_mib {
        sizes.push(big_mib);
    }
    for &mib in &sizes {
        eprint!("pushing a {mib} MiB layer to the source ... ");
        let t = Instant::now();
        let repo = format!("big/layer-{mib}");
        let (manifest_digest, layer_digest) = push_streamed_image(src, &repo, "v1", mib)?;
        let push = Measured::wall_only(t.elapsed());
        eprintln!("{:.1?}", push.wall);

        // Every run copies into a new destination repository, so every run moves the whole layer.
        let measured = repeat(runs, |i| {
            let dst_repo = format!("{repo}-run{i}");
            let images = work.write("images-big.yaml", &format!("{}: {}\n", src.repo(&repo), dst.repo(&dst_repo)));
            let run = run_measured(auth, &images, 1, &format!("big-{mib}-{i}"))?;
            check_same(src.api(), dst.api(), &repo, &dst_repo, "v1", &manifest_digest)?;
            if !dst.api().blob_exists(&dst_repo, &layer_digest) {
                return Err(format!("{dst_repo}: layer {layer_digest} missing at the destination"));
            }
            Ok(run)
        })?;
        let row = Row::new(format!("copy 1 image, {mib} MiB layer, --proc 1"), &measured).with_throughput(mib);
        peaks.push((mib, row.peak_kib));
        rows.push(row);

        if mib == big_mib {
            // A reference: how fast this process alone reads the blob from the source.
            let measured = repeat(runs, |_| {
                let t = Instant::now();
                let n = read_blob(&src.addr(), &repo, &layer_digest)?;
                if n != mib * MIB {
                    return Err(format!("read {n} bytes of {layer_digest}, expected {}", mib * MIB));
                }
                Ok(Measured::wall_only(t.elapsed()))
            })?;
            rows.push(
                Row::new(format!("  reference: only GET {mib} MiB from the source"), &measured).with_throughput(mib),
            );
            rows.push(
                Row::new(format!("  reference: only PUT {mib} MiB to a registry (1 run)"), &[push])
                    .with_throughput(mib),
            );
        }
    }
    Ok(BigReport { rows, peaks })
}

// ---------------------------------------------------------------------------------------------
// many small images, and a no-op re-run of them
// ---------------------------------------------------------------------------------------------

struct SmallReport {
    rows: Vec<Row>,
    /// The no-op re-run (last run): source requests, destination requests, tags reported
    /// unchanged.
    noop: (Vec<Request>, Vec<Request>, usize),
    /// Per cold copy: its `--proc`, and summed over the runs: wall, syncer CPU, registries' CPU.
    floors: Vec<(String, (Duration, Duration, Duration))>,
}

/// Copies `BENCH_TAGS` small images at `--proc` 1, 8 and the defaults (and with skopeo), then
/// re-runs the copy with nothing to do.
fn small_section(b: &Bench, s: &Settings) -> Result<SmallReport, String> {
    let Bench { src, dst, work, auth } = b;
    let (runs, tags) = (s.runs, s.tags);
    let mut rows = Vec::new();
    eprint!("pushing {tags} tags x {LAYERS_PER_SMALL_IMAGE} small layers to the source ... ");
    let t = Instant::now();
    let digests = push_small_images(src.api(), "small/app", tags)?;
    eprintln!("{:.1?}", t.elapsed());

    let small_rule = |dst_repo: &str, name: &str| {
        work.write(&format!("images-{name}.yaml"), &format!("{}: {}\n", src.repo("small/app"), dst.repo(dst_repo)))
    };
    let mut floors = Vec::new();
    for procs in [Procs::Set(1), Procs::Set(8), Procs::Default] {
        let (label, key) = (procs.label(), procs.label().replace(' ', ""));
        // Summed over the runs: wall, the syncer's CPU, both registries' CPU.
        let mut spent = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let measured = repeat(runs, |i| {
            let dst_repo = format!("small{key}-run{i}/app");
            let images = small_rule(&dst_repo, "small");
            let (regs, _) = harness_cpu(&[src, dst]);
            let run = run_measured(auth, &images, procs, &format!("small{key}-{i}"))?;
            let (regs_after, _) = harness_cpu(&[src, dst]);
            spent.0 += run.wall;
            spent.1 += run.cpu.unwrap_or_default();
            spent.2 += regs_after - regs;
            check_tags(dst.api(), &dst_repo, &digests)?;
            Ok(run)
        })?;
        rows.push(Row::new(format!("copy {tags} tags x {LAYERS_PER_SMALL_IMAGE} layers, {label}"), &measured));
        floors.push((label, spent));
    }
    if let Some(bin) = &s.skopeo.bin {
        // The same cold copy by skopeo, with its floor. A registry of its own each run: skopeo's
        // blob-info cache (it cannot be turned off) would otherwise mount the layers earlier
        // runs left in `dst` instead of copying them. `small/app` lands as `DEST/app`.
        let yaml = work.write("skopeo-small.yaml", &skopeo_source_yaml(&src.addr(), &["small/app".to_string()]));
        let mut spent = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let measured = repeat(runs, |i| {
            let own = Registry::start();
            let (regs, _) = harness_cpu(&[src, &own]);
            let run = skopeo_sync(bin, &yaml, &own.repo("small"), &format!("small-skopeo-{i}"), LIMIT)?;
            let (regs_after, _) = harness_cpu(&[src, &own]);
            spent.0 += run.wall;
            spent.1 += run.cpu.unwrap_or_default();
            spent.2 += regs_after - regs;
            check_tags(own.api(), "small/app", &digests)?;
            Ok(run)
        })?;
        rows.push(Row::new(format!("skopeo sync, {tags} tags x {LAYERS_PER_SMALL_IMAGE} layers"), &measured));
        floors.push(("skopeo".to_string(), spent));
    }

    // The no-op re-run, against a destination filled by the last --proc 8 run: nothing may be
    // copied again. At --proc 8 and at the defaults; the counts are the defaults' last run.
    let images = small_rule(&format!("small--proc8-run{}/app", runs - 1), "noop");
    let mut counts = (Vec::new(), Vec::new(), 0usize);
    for procs in [Procs::Set(8), Procs::Default] {
        let measured = repeat(runs, |i| {
            src.clear_requests();
            dst.clear_requests();
            let run = run_measured(auth, &images, procs, &format!("noop-{}-{i}", procs.label()))?;
            let unchanged = run.log.lines().filter(|l| l.contains("] unchanged ")).count();
            counts = (src.requests(), dst.requests(), unchanged);
            Ok(run)
        })?;
        let mut row = Row::new(format!("no-op re-run of {tags} tags, {}", procs.label()), &measured);
        row.requests = Some((counts.0.len(), counts.1.len()));
        rows.push(row);
    }
    Ok(SmallReport { rows, noop: counts, floors })
}

/// `LABEL wall W s, CPU S + R s, floor F s, wall / floor X` for (wall, syncer CPU, both
/// registries' CPU): the floor is the CPU spread over the machine's cores.
fn floor_line(label: &str, (wall, syncer, regs): (Duration, Duration, Duration)) -> String {
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let floor = (syncer.as_secs_f64() + regs.as_secs_f64()) / cores;
    format!(
        "{label:<10} wall {:6.2} s, CPU {:5.2} + {:5.2} s, floor {:6.2} s, wall / floor {:.2}",
        wall.as_secs_f64(),
        syncer.as_secs_f64(),
        regs.as_secs_f64(),
        floor,
        wall.as_secs_f64() / floor.max(1e-9)
    )
}

/// The floor lines of the cold copies: the CPU the syncer and both registries spent, spread
/// over the machine's cores, is the least wall any tool could reach on this machine; how far
/// above it the runs were.
fn print_floors(floors: &[(String, (Duration, Duration, Duration))]) {
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    println!(
        "floor of the cold copies (all runs summed): (the syncer's CPU + both docker-registry CPU) / {cores} cores"
    );
    for (label, spent) in floors {
        println!("  {}", floor_line(label, *spent));
    }
    let wall = |label: &str| floors.iter().find(|(l, _)| l == label).map(|(_, spent)| spent.0.as_secs_f64());
    if let (Some(ours), Some(skopeo)) = (wall(&Procs::Default.label()), wall("skopeo")) {
        println!("  wall at the defaults / skopeo's wall: {:.2}", ours / skopeo.max(1e-9));
    }
}

// ---------------------------------------------------------------------------------------------
// long links: the source behind a proxy delaying every request
// ---------------------------------------------------------------------------------------------

struct WanReport {
    rows: Vec<Row>,
    /// (scenario, CPU seconds of the syncer, of both registries, of the harness proxy), last run.
    cpu: Vec<(String, Duration, Duration, Duration)>,
}

/// Copies small images and multi-platform indexes through a proxy that delays every request,
/// at several `--proc`, and with skopeo.
fn wan_section(b: &Bench, s: &Settings) -> Result<WanReport, String> {
    let Bench { src, dst, work, .. } = b;
    let (runs, wan_tags, wan_indexes) = (s.runs, s.wan_tags, s.wan_indexes);
    let mut rows: Vec<Row> = Vec::new();
    let mut cpu_rows = Vec::new();
    eprint!("pushing {wan_tags} tags x {LAYERS_PER_SMALL_IMAGE} small layers to the source ... ");
    let t = Instant::now();
    let digests = push_small_images(src.api(), "wan/app", wan_tags)?;
    let index_digests: BTreeMap<String, String> = (0..wan_indexes)
        .map(|i| {
            let tag = format!("i{i:03}");
            let idx = push_index(src.api(), "wanidx/app", &tag, IndexKind::OciIndex, &WAN_INDEX_PLATFORMS);
            (tag, idx.digest)
        })
        .collect();
    eprintln!("{:.1?}", t.elapsed());
    for delay_ms in WAN_DELAYS_MS {
        let proxy = Proxy::start_with(
            &src.addr(),
            ProxyOpts { delay: Duration::from_millis(delay_ms), ..ProxyOpts::default() },
        );
        let auth = work.write(
            &format!("auth-wan-{delay_ms}.yaml"),
            &auth_yaml(&[AuthEntry::insecure(&proxy.addr()), AuthEntry::insecure(&dst.addr())]),
        );
        // `runs` copies of the source repository `repo` (tags and digests `want`) through
        // this proxy with `--proc procs`: the runs, the requests the proxy and the
        // destination saw, and the CPU of the syncer / the registries / this process (last
        // run).
        let measure = |repo: &str, procs: Procs, want: &BTreeMap<String, String>| {
            let procs_key = procs.label().replace(' ', "");
            let t = Instant::now();
            let mut counts = (0usize, 0usize);
            let mut cpu = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            let measured = repeat(runs, |i| {
                let dst_repo = format!("{repo}-d{delay_ms}{procs_key}-run{i}/app");
                let images = work.write(
                    &format!("images-{repo}-{delay_ms}{procs_key}.yaml"),
                    &format!("{}: {}\n", proxy.repo(&format!("{repo}/app")), dst.repo(&dst_repo)),
                );
                dst.clear_requests();
                let before = proxy.requests().len();
                let (regs, own) = harness_cpu(&[src, dst]);
                let run = run_measured(&auth, &images, procs, &format!("{repo}-d{delay_ms}{procs_key}-{i}"))?;
                let (regs_after, own_after) = harness_cpu(&[src, dst]);
                cpu = (run.cpu.unwrap_or_default(), regs_after - regs, own_after - own);
                counts = (proxy.requests().len() - before, dst.requests().len());
                check_tags(dst.api(), &dst_repo, want)?;
                Ok(run)
            })?;
            eprintln!("{:.1?}", t.elapsed());
            Ok::<_, String>((measured, counts, cpu))
        };
        let wan_procs = WAN_PROCS.map(Procs::Set);
        for procs in std::iter::once(Procs::Default).chain(wan_procs) {
            let label = procs.label();
            eprint!("long link +{delay_ms} ms/request, {label} ... ");
            let (measured, counts, cpu) = measure("wan", procs, &digests)?;
            let mut row = Row::new(
                format!("copy {wan_tags} tags x {LAYERS_PER_SMALL_IMAGE} layers, +{delay_ms} ms/request, {label}"),
                &measured,
            );
            row.requests = Some(counts);
            cpu_rows.push((format!("+{delay_ms} ms/request, {label}"), cpu.0, cpu.1, cpu.2));
            rows.push(row);
        }
        for procs in WAN_INDEX_PROCS {
            let platforms = WAN_INDEX_PLATFORMS.len();
            eprint!("long link +{delay_ms} ms/request, {wan_indexes} indexes, --proc {procs} ... ");
            let (measured, counts, _) = measure("wanidx", Procs::Set(procs), &index_digests)?;
            // Named so that the "speed against --proc 8" lines do not take it for the above.
            let mut row = Row::new(
                format!("copy {wan_indexes} indexes x {platforms} platforms, --proc {procs}, +{delay_ms} ms/request"),
                &measured,
            );
            row.requests = Some(counts);
            rows.push(row);
        }
        if let Some(bin) = &s.skopeo.bin {
            eprint!("long link +{delay_ms} ms/request, skopeo sync ... ");
            let t = Instant::now();
            let yaml = work.write(
                &format!("skopeo-wan-{delay_ms}.yaml"),
                &skopeo_source_yaml(&proxy.addr(), &["wan/app".to_string()]),
            );
            let mut counts = (0usize, 0usize);
            let measured = repeat(runs, |i| {
                // A registry of its own each run: skopeo's blob-info cache (it cannot be
                // turned off) would otherwise mount the layers earlier runs left in `dst`
                // instead of reading them through the proxy. `wan/app` lands as `DEST/app`.
                let own = Registry::start();
                let before = proxy.requests().len();
                let run = skopeo_sync(bin, &yaml, &own.repo("wan"), &format!("wan-skopeo-{delay_ms}-{i}"), LIMIT)?;
                counts = (proxy.requests().len() - before, own.requests().len());
                check_tags(own.api(), "wan/app", &digests)?;
                Ok(run)
            })?;
            eprintln!("{:.1?}", t.elapsed());
            let mut row = Row::new(format!("skopeo sync, {wan_tags} tags, +{delay_ms} ms/request"), &measured);
            row.requests = Some(counts);
            rows.push(row);
        }
    }
    Ok(WanReport { rows, cpu: cpu_rows })
}

// ---------------------------------------------------------------------------------------------
// the report
// ---------------------------------------------------------------------------------------------

/// Prints what the sections measured: the large and small images in one table, the long links
/// in another with their speed-ups and CPU split, peak memory against layer size, the no-op
/// re-run, then the fan-out and many-tags reports, and the legend.
fn print_report(
    s: &Settings,
    big: Option<BigReport>,
    small: Option<SmallReport>,
    wan: Option<WanReport>,
    reports: [Option<String>; 4],
) {
    let (runs, tags) = (s.runs, s.tags);
    let (mut rows, peaks) = big.map(|b| (b.rows, b.peaks)).unwrap_or_default();
    let mut floors = Vec::new();
    let noop = small.map(|small| {
        rows.extend(small.rows);
        floors = small.floors;
        small.noop
    });
    let (wan_rows, wan_cpu) = wan.map(|w| (w.rows, w.cpu)).unwrap_or_default();
    if !rows.is_empty() {
        println!();
        print_table(&rows);
    }
    if !floors.is_empty() {
        print_floors(&floors);
    }
    if !wan_rows.is_empty() {
        println!();
        println!("long links: source behind a proxy that waits the given time before forwarding each request");
        print_table(&wan_rows);
        for delay_ms in WAN_DELAYS_MS {
            let at = |procs: usize| {
                let name = format!("+{delay_ms} ms/request, --proc {procs}");
                wan_rows.iter().find(|r| r.scenario.ends_with(&name)).map(|r| r.wall.0.as_secs_f64())
            };
            if let Some(base) = at(8) {
                let faster: Vec<String> = WAN_PROCS
                    .iter()
                    .filter(|&&p| p != 8)
                    .filter_map(|&p| at(p).map(|w| format!("--proc {p} {:.2}x", base / w)))
                    .collect();
                println!("+{delay_ms} ms/request, speed against --proc 8: {}", faster.join(", "));
            }
            let skopeo = format!("skopeo sync, {} tags, +{delay_ms} ms/request", s.wan_tags);
            let skopeo = wan_rows.iter().find(|r| r.scenario == skopeo).map(|r| r.wall.0.as_secs_f64());
            let default = wan_rows
                .iter()
                .find(|r| r.scenario.ends_with(&format!("+{delay_ms} ms/request, defaults")))
                .map(|r| r.wall.0.as_secs_f64());
            if let (Some(skopeo), Some(default)) = (skopeo, default) {
                let more: Vec<String> =
                    [5, 32].iter().filter_map(|&p| at(p).map(|w| format!("--proc {p} {:.2}", w / skopeo))).collect();
                println!(
                    "+{delay_ms} ms/request, wall against skopeo's: defaults {:.2}, {}",
                    default / skopeo,
                    more.join(", ")
                );
            }
        }
        println!(
            "CPU seconds of the last run (2 cores shared by all): image-syncer / both docker-registry / harness proxy"
        );
        for (name, syncer, regs, proxy) in &wan_cpu {
            println!(
                "  {name:<28} {:5.2} / {:5.2} / {:5.2}",
                syncer.as_secs_f64(),
                regs.as_secs_f64(),
                proxy.as_secs_f64()
            );
        }
    }
    println!();
    if let [(small, Some(a)), (big, Some(b))] = peaks[..] {
        println!(
            "peak memory vs layer size: {small} MiB layer -> {:.1} MiB RSS, {big} MiB layer -> {:.1} MiB RSS \
             ({:.2}x the memory for {:.0}x the data)",
            a as f64 / 1024.0,
            b as f64 / 1024.0,
            b as f64 / a as f64,
            big as f64 / small as f64
        );
    }
    if let Some((src_reqs, dst_reqs, unchanged)) = noop {
        println!("no-op re-run (last of {runs}, defaults):");
        println!("  tags reported unchanged: {unchanged} of {tags}");
        println!("  source requests:      {}", breakdown(&src_reqs));
        println!("  destination requests: {}", breakdown(&dst_reqs));
        println!(
            "  destination writes: {}, source blob GETs: {}",
            dst_reqs.iter().filter(|r| r.is_write()).count(),
            src_reqs.iter().filter(|r| r.is_blob_get()).count()
        );
        println!();
    }
    for report in reports.into_iter().flatten() {
        print!("{report}");
        println!();
    }
    println!("wall = median (min-max) over {runs} runs of the whole process, start to exit; throughput = layer MiB / median wall;");
    println!("peak RSS = highest VmHWM of the syncer process over the runs;");
    println!("requests src/dst = requests the source (or, for long links, its proxy) and the destination saw in the last run.");
}

/// Runs `f(0..n)` and collects the measurements; stops at the first error.
fn repeat(n: usize, mut f: impl FnMut(usize) -> Result<Measured, String>) -> Result<Vec<Measured>, String> {
    (0..n).map(&mut f).collect()
}

// ---------------------------------------------------------------------------------------------
// running the syncer
// ---------------------------------------------------------------------------------------------

struct Measured {
    wall: Duration,
    /// The last `VmHWM` read from `/proc/PID/status` while the process ran, in KiB.
    peak_kib: Option<u64>,
    /// The process's own CPU time (user + system), as last read from `/proc/PID/stat`.
    cpu: Option<Duration>,
    /// stdout + stderr of the run.
    log: String,
    /// From the start to the first output line containing the run's marker (the first image
    /// complete at the destination), as this process read it from the pipe.
    first: Option<Duration>,
}

impl Measured {
    fn wall_only(wall: Duration) -> Measured {
        Measured { wall, peak_kib: None, cpu: None, log: String::new(), first: None }
    }
}

/// Runs `image-syncer --auth AUTH --images IMAGES --proc N`, polling its peak RSS until it exits.
/// Fails (with its output) unless it exits 0.
fn run_measured(auth: &Path, images: &Path, procs: impl Into<Procs>, name: &str) -> Result<Measured, String> {
    run_measured_within(auth, images, procs, name, LIMIT)
}

fn run_measured_within(
    auth: &Path,
    images: &Path,
    procs: impl Into<Procs>,
    name: &str,
    limit: Duration,
) -> Result<Measured, String> {
    let mut cmd = Command::new(syncer_bin());
    cmd.args(["--auth", p(auth), "--images", p(images)]);
    if let Procs::Set(n) = procs.into() {
        cmd.args(["--proc", &n.to_string()]);
    }
    run_process(cmd, &format!("image-syncer ({name})"), SYNCED_LINE, limit)
}

/// `--proc` of one run: a number, or no flag at all (the binary's own default, whatever the
/// build under test has).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Procs {
    Set(usize),
    Default,
}

impl From<usize> for Procs {
    fn from(n: usize) -> Procs {
        Procs::Set(n)
    }
}

impl Procs {
    /// `--proc 8`, or `defaults` for a run without the flag.
    fn label(self) -> String {
        match self {
            Procs::Set(n) => format!("--proc {n}"),
            Procs::Default => "defaults".into(),
        }
    }
}

/// Runs `cmd` (proxy variables removed, stdin closed, stdout and stderr read line by line),
/// polling its peak RSS until it exits; notes when a line containing `marker` first appears.
/// Fails (with its output) unless it exits 0; a run still going after `limit` is killed.
fn run_process(mut cmd: Command, what: &str, marker: &'static str, limit: Duration) -> Result<Measured, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    without_proxies(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let out = read_lines(child.stdout.take().expect("piped stdout"), start, marker);
    let err = read_lines(child.stderr.take().expect("piped stderr"), start, marker);
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = None;
    let mut cpu = None;
    let deadline = start + limit;
    let status = loop {
        // Read before try_wait: once reaped (or a zombie) the process has no VmHWM any more.
        if let Some(kib) = vm_hwm_kib(&status_file) {
            peak_kib = Some(kib);
        }
        if let Some(t) = cpu_time(child.id()) {
            cpu = Some(t);
        }
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    let (out, out_first) = out.join().map_err(|_| "stdout reader panicked".to_string())?;
    let (err, err_first) = err.join().map_err(|_| "stderr reader panicked".to_string())?;
    let log = format!("{out}{err}");
    let first = [out_first, err_first].into_iter().flatten().min();
    match status {
        None => Err(format!("{what} ran for {limit:?} and was killed:\n{log}")),
        Some(st) if !st.success() => Err(format!("{what} failed with {st}:\n{log}")),
        Some(_) => Ok(Measured { wall, peak_kib, cpu, log, first }),
    }
}

/// Reads `stream` to its end in a thread: (the text, when a line containing `marker` first arrived).
fn read_lines(
    stream: impl Read + Send + 'static,
    start: Instant,
    marker: &'static str,
) -> thread::JoinHandle<(String, Option<Duration>)> {
    thread::spawn(move || {
        let mut reader = io::BufReader::new(stream);
        let (mut text, mut first, mut line) = (String::new(), None, Vec::new());
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let l = String::from_utf8_lossy(&line);
                    if first.is_none() && l.contains(marker) {
                        first = Some(start.elapsed());
                    }
                    text.push_str(&l);
                }
            }
        }
        (text, first)
    })
}

/// CPU time (user + system) of process `pid` so far, from `/proc/PID/stat` (Linux counts it
/// in ticks of 1/100 s).
fn cpu_time(pid: u32) -> Option<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: field 3 (state) onwards; utime and stime are 14, 15.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of the registries' processes, and of this process (the harness proxy's threads).
fn harness_cpu(registries: &[&Registry]) -> (Duration, Duration) {
    let regs = registries.iter().filter_map(|r| cpu_time(r.pid())).sum();
    (regs, cpu_time(std::process::id()).unwrap_or_default())
}

fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let text = fs::read_to_string(status_file).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------------

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
fn manifest(config: &[u8], config_digest: &str, layers: &[(String, u64)]) -> Vec<u8> {
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

fn config_blob(diff_ids: &[String]) -> Vec<u8> {
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
fn push_streamed_image(reg: &Registry, repo: &str, tag: &str, mib: u64) -> Result<(String, String), String> {
    let layer = push_streamed_blob(&reg.addr(), repo, mib)?;
    let config = config_blob(std::slice::from_ref(&layer));
    let config_digest = reg.api().push_blob(repo, &config);
    let bytes = manifest(&config, &config_digest, &[(layer.clone(), mib * MIB)]);
    let digest = reg.api().put_manifest(repo, tag, DOCKER_MANIFEST, &bytes);
    Ok((digest, layer))
}

/// Pushes `count` distinct images `repo:t000..` with three small random layers each, from a few
/// threads. Returns tag → manifest digest.
fn push_small_images(c: &Client, repo: &str, count: usize) -> Result<BTreeMap<String, String>, String> {
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
fn read_blob(addr: &str, repo: &str, digest: &str) -> Result<u64, String> {
    let mut resp =
        agent().get(&format!("http://{addr}/v2/{repo}/blobs/{digest}")).call().map_err(|e| format!("GET blob: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(format!("GET blob {digest}: status {}", resp.status()));
    }
    io::copy(&mut resp.body_mut().as_reader(), &mut io::sink()).map_err(|e| format!("GET blob body: {e}"))
}

/// Every `tag` of `digests` is at `dst_repo` of the destination with the same manifest digest.
fn check_tags(dst: &Client, dst_repo: &str, digests: &BTreeMap<String, String>) -> Result<(), String> {
    for (tag, digest) in digests {
        match dst.head_manifest(dst_repo, tag) {
            Some(d) if &d == digest => {}
            other => return Err(format!("{dst_repo}:{tag}: destination has {other:?}, source {digest}")),
        }
    }
    Ok(())
}

fn check_same(src: &Client, dst: &Client, repo: &str, dst_repo: &str, tag: &str, want: &str) -> Result<(), String> {
    let s = src.head_manifest(repo, tag);
    let d = dst.head_manifest(dst_repo, tag);
    if s.as_deref() != Some(want) || d.as_deref() != Some(want) {
        return Err(format!("{repo}:{tag} -> {dst_repo}:{tag}: source {s:?}, destination {d:?}, expected {want}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fan-out: one source, several destinations
// ---------------------------------------------------------------------------------------------

struct FanoutOpts {
    repos: usize,
    tags: usize,
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
fn fanout_section(b: &Bench, s: &Settings) -> Result<String, String> {
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

// ---------------------------------------------------------------------------------------------
// many tags in one repository
// ---------------------------------------------------------------------------------------------

/// Pushes `count` tiny images `repo:t0000..` from 8 threads: one 4 KiB layer shared by all of them
/// (pushed once) and a config of their own each, so every tag is a distinct manifest. Three
/// requests per tag (POST + PUT of the config, PUT of the manifest). Returns tag → digest.
fn push_many_tags(c: &Client, repo: &str, count: usize) -> BTreeMap<String, String> {
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
fn tags_in_parallel<T: Send>(count: usize, threads: usize, f: impl Fn(String) -> T + Sync) -> Vec<T> {
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
fn check_tags_parallel(dst: &Client, repo: &str, digests: &BTreeMap<String, String>) -> Result<(), String> {
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

/// Seeds a tenth of `BENCH_MANY_TAGS` and all of them in two repositories and copies each cold
/// and again (and with skopeo, cold once): the section's report.
fn tags_section(b: &Bench, s: &Settings) -> Result<String, String> {
    let (src, work, many, runs, skopeo) = (&b.src, &b.work, s.many_tags, s.runs, &s.skopeo);
    let sizes: Vec<usize> = if many >= 10 { vec![many / 10, many] } else { vec![many] };
    let mut rows = Vec::new();
    let mut seeded = String::new();
    let mut notes = String::new();
    let mut peaks = Vec::new();
    let mut noop_ratios = String::new();
    for &count in &sizes {
        let repo = format!("many/n{count}");
        eprint!("seeding {count} tags (shared layer, a config each) ... ");
        let t = Instant::now();
        let digests = push_many_tags(src.api(), &repo, count);
        let seeding = t.elapsed();
        eprintln!("{seeding:.1?}");
        let _ = writeln!(
            seeded,
            "seeding {count} tags: {:.1} s ({:.0} tags/s; 8 threads, 3 requests per tag)",
            seeding.as_secs_f64(),
            count as f64 / seeding.as_secs_f64()
        );
        let rule = |dst: &Registry| {
            (
                work.write("auth-tags.yaml", &auth_yaml(&auth_for(&[src, dst]))),
                work.write("images-tags.yaml", &format!("{}: {}\n", src.repo(&repo), dst.repo(&repo))),
            )
        };

        // Cold: every run into a new, empty destination registry.
        eprint!("{count} tags: cold runs ... ");
        let t = Instant::now();
        let mut last: Option<Registry> = None;
        let mut counts = (0usize, 0usize);
        let measured = repeat(runs, |i| {
            let dst = Registry::start();
            let (auth, images) = rule(&dst);
            src.clear_requests();
            let run =
                run_measured_within(&auth, &images, Procs::Default, &format!("tags-{count}-cold-{i}"), TAGS_LIMIT)?;
            counts = (src.requests().len(), dst.requests().len());
            check_tags_parallel(dst.api(), &repo, &digests)?;
            last = Some(dst);
            Ok(run)
        })?;
        eprintln!("{:.1?}", t.elapsed());
        let cold = tags_row(format!("image-syncer cold, {count} tags, defaults"), &measured, counts, count);
        let cold_peak = Row::new(String::new(), &measured).peak_kib;
        rows.push(cold);

        // No-op: the same rule again against the last cold run's destination, at the defaults
        // and at each of NOOP_PROCS; the notes and the peak are the defaults'.
        eprint!("{count} tags: no-op re-runs ... ");
        let t = Instant::now();
        let dst = last.ok_or("no cold run")?;
        let (auth, images) = rule(&dst);
        let mut noop = (Vec::new(), Vec::new(), 0usize);
        let mut noop_peak = None;
        let mut default_noop = None;
        // One unmeasured no-op first: the first run after the cold copy was the slowest (the
        // registries' files not yet in the page cache), which would fall on the defaults' row.
        run_measured_within(&auth, &images, Procs::Default, &format!("tags-{count}-noop-warm-up"), TAGS_LIMIT)?;
        for procs in std::iter::once(Procs::Default).chain(NOOP_PROCS.map(Procs::Set)) {
            let mut counts = (Vec::new(), Vec::new(), 0usize);
            let label = procs.label();
            // Summed over the runs: wall, the syncer's CPU, both registries' CPU.
            let mut spent = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            let measured = repeat(runs, |i| {
                src.clear_requests();
                dst.clear_requests();
                let (regs, _) = harness_cpu(&[src, &dst]);
                let run =
                    run_measured_within(&auth, &images, procs, &format!("tags-{count}-noop-{label}-{i}"), TAGS_LIMIT)?;
                let (regs_after, _) = harness_cpu(&[src, &dst]);
                spent.0 += run.wall;
                spent.1 += run.cpu.unwrap_or_default();
                spent.2 += regs_after - regs;
                let unchanged = run.log.lines().filter(|l| l.contains("] unchanged ")).count();
                counts = (src.requests(), dst.requests(), unchanged);
                Ok(run)
            })?;
            let _ = writeln!(notes, "{}", floor_line(&format!("no-op {count} tags, {label}"), spent));
            rows.push(tags_row(
                format!("image-syncer no-op re-run, {count} tags, {label}"),
                &measured,
                (counts.0.len(), counts.1.len()),
                count,
            ));
            if procs == Procs::Default {
                default_noop = Some(Row::new(String::new(), &measured).wall.0);
                noop = counts;
                noop_peak = Row::new(String::new(), &measured).peak_kib;
            }
        }
        eprintln!("{:.1?}", t.elapsed());
        let (src_reqs, dst_reqs, unchanged) = noop;
        peaks.push((count, cold_peak, noop_peak));
        let _ = writeln!(
            notes,
            "no-op re-run of {count} tags (last run): {unchanged} reported unchanged; destination writes: {}; \
             source blob GETs: {}\n  source requests:      {}\n  destination requests: {}",
            dst_reqs.iter().filter(|r| r.is_write()).count(),
            src_reqs.iter().filter(|r| r.is_blob_get()).count(),
            breakdown(&src_reqs),
            breakdown(&dst_reqs)
        );
        drop(dst);

        // skopeo, cold, once.
        match &skopeo.bin {
            Some(_) if count > skopeo.max_tags => {
                let _ = writeln!(
                    notes,
                    "skopeo: {count} tags not run (more than BENCH_SKOPEO_MAX_TAGS={})",
                    skopeo.max_tags
                );
            }
            Some(bin) => {
                eprint!("{count} tags: skopeo sync, cold and no-op (1 run each) ... ");
                let t = Instant::now();
                let dst = Registry::start();
                let yaml =
                    work.write("skopeo-tags.yaml", &skopeo_source_yaml(&src.addr(), std::slice::from_ref(&repo)));
                for (kind, name) in [("cold", "cold"), ("no-op re-run", "noop")] {
                    src.clear_requests();
                    dst.clear_requests();
                    let m = skopeo_sync(bin, &yaml, &dst.repo("many"), &format!("tags-{count}-{name}"), TAGS_LIMIT)?;
                    let counts = (src.requests().len(), dst.requests().len());
                    check_tags_parallel(dst.api(), &repo, &digests)?;
                    if let (Some(ours), "noop") = (default_noop, name) {
                        let _ = writeln!(
                            noop_ratios,
                            "no-op of {count} tags: defaults {:.2} s, skopeo {:.2} s: {:.2}x skopeo's wall",
                            ours.as_secs_f64(),
                            m.wall.as_secs_f64(),
                            ours.as_secs_f64() / m.wall.as_secs_f64()
                        );
                    }
                    rows.push(tags_row(format!("skopeo sync {kind}, {count} tags (1 run)"), &[m], counts, count));
                }
                eprintln!("{:.1?}", t.elapsed());
            }
            None => {}
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "many tags: {} tiny images in one repository (one shared 4 KiB layer, a config of their own), \
         copied to an empty destination (cold) and again (no-op)",
        sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" and ")
    );
    out.push_str(&grid(
        &["scenario", "wall", "(min-max)", "first image", "peak RSS", "src req/tag", "dst req/tag", "total req/tag"],
        &rows,
    ));
    out.push_str(&seeded);
    out.push_str(&notes);
    out.push_str(&noop_ratios);
    if let [(a, Some(ca), na), (b, Some(cb), nb)] = peaks[..] {
        let _ = write!(
            out,
            "peak RSS vs tags: cold {a} -> {}, {b} -> {} ({:.2}x the memory for {:.0}x the tags)",
            mib(Some(ca)),
            mib(Some(cb)),
            cb as f64 / ca as f64,
            b as f64 / a as f64
        );
        if let (Some(na), Some(nb)) = (na, nb) {
            let _ = write!(out, "; no-op {a} -> {}, {b} -> {}", mib(Some(na)), mib(Some(nb)));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "first image = start to the first `synced` line on the syncer's stderr (skopeo: its first `Storing signatures` \
         line on stdout, printed after the manifest PUT), median over the runs, as this process read the pipe;"
    );
    let _ = writeln!(
        out,
        "req/tag = requests in the source's / destination's access log during the last run, divided by the tags."
    );
    match &skopeo.bin {
        Some(_) => {
            let _ = writeln!(
                out,
                "skopeo: `skopeo sync --src yaml --dest docker --preserve-digests`, one run (it copies one image at a time)."
            );
        }
        None => {
            let _ = writeln!(out, "skopeo: not run, {}.", skopeo.describe());
        }
    }
    Ok(out)
}

/// `BENCH_HUGE=1`: one repository of `BENCH_HUGE_TAGS` (default 100,000) tiny images, seeded
/// straight into the source's storage ([`seed`]), then copied once cold and once more as a
/// no-op, at the defaults: wall, time to the first image, peak RSS, requests per tag. Not part
/// of the default run: the cold copy alone takes many minutes (about 75 tags per second on 2
/// cores, the registries' CPU).
fn huge_section(b: &Bench, count: usize) -> Result<String, String> {
    let (src, work) = (&b.src, &b.work);
    let repo = format!("huge/n{count}");
    eprint!("seeding {count} tags (shared layer, a config each) ... ");
    let t = Instant::now();
    let digests = seed::tiny_images_on_disk(&src.data_dir(), &repo, count)?;
    let seeding = t.elapsed();
    eprintln!("{seeding:.1?}");
    let dst = Registry::start();
    let auth = work.write("auth-huge.yaml", &auth_yaml(&auth_for(&[src, &dst])));
    let images = work.write("images-huge.yaml", &format!("{}: {}\n", src.repo(&repo), dst.repo(&repo)));
    let mut rows = Vec::new();
    for (kind, name) in [("cold", "cold"), ("no-op re-run", "noop")] {
        eprint!("{count} tags: {kind} (1 run) ... ");
        let t = Instant::now();
        src.clear_requests();
        dst.clear_requests();
        let m = run_measured_within(&auth, &images, Procs::Default, &format!("huge-{name}"), HUGE_LIMIT)?;
        let counts = (src.requests().len(), dst.requests().len());
        check_tags_parallel(dst.api(), &repo, &digests)?;
        eprintln!("{:.1?}", t.elapsed());
        rows.push(tags_row(format!("image-syncer {kind}, {count} tags, defaults (1 run)"), &[m], counts, count));
    }
    let mut out = format!("huge: {count} tiny images in one repository (BENCH_HUGE_TAGS), cold then no-op\n");
    out.push_str(&grid(
        &["scenario", "wall", "(min-max)", "first image", "peak RSS", "src req/tag", "dst req/tag", "total req/tag"],
        &rows,
    ));
    let _ = writeln!(
        out,
        "seeding {count} tags: {:.1} s ({:.0} tags/s; written into the source's storage, 4 threads)",
        seeding.as_secs_f64(),
        count as f64 / seeding.as_secs_f64()
    );
    Ok(out)
}

fn tags_row(scenario: String, runs: &[Measured], (src, dst): (usize, usize), tags: usize) -> Vec<String> {
    let row = Row::new(scenario, runs);
    let (median, min, max) = row.wall;
    let mut firsts: Vec<Duration> = runs.iter().filter_map(|m| m.first).collect();
    firsts.sort();
    let per_tag = |n: usize| format!("{:.2}", n as f64 / tags as f64);
    vec![
        row.scenario.clone(),
        format!("{:.2} s", median.as_secs_f64()),
        format!("({:.2}-{:.2})", min.as_secs_f64(), max.as_secs_f64()),
        firsts.get(firsts.len() / 2).map(|f| format!("{:.2} s", f.as_secs_f64())).unwrap_or_else(|| "-".into()),
        mib(row.peak_kib),
        per_tag(src),
        per_tag(dst),
        per_tag(src + dst),
    ]
}

// ---------------------------------------------------------------------------------------------
// skopeo, the side-by-side reference
// ---------------------------------------------------------------------------------------------

/// `BENCH_SKOPEO`: unset for `/usr/bin/skopeo` (or `skopeo` on the PATH) when it runs, a path
/// for another one, `0` to leave skopeo out.
struct Skopeo {
    bin: Option<PathBuf>,
    /// Its version, or why it is not run.
    note: String,
    /// `BENCH_SKOPEO_MAX_TAGS`: the many-tags section runs skopeo only up to this many tags.
    max_tags: usize,
}

impl Skopeo {
    fn from_env(max_tags: usize) -> Result<Skopeo, String> {
        let v = std::env::var("BENCH_SKOPEO").unwrap_or_default();
        let v = v.trim();
        if matches!(v, "0" | "off" | "no" | "false") {
            return Ok(Skopeo { bin: None, note: format!("off (BENCH_SKOPEO={v})"), max_tags });
        }
        let bin = match v {
            "" if Path::new("/usr/bin/skopeo").exists() => PathBuf::from("/usr/bin/skopeo"),
            "" => PathBuf::from("skopeo"),
            path => PathBuf::from(path),
        };
        match Command::new(&bin).arg("--version").stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Ok(Skopeo { note: format!("{} ({version})", bin.display()), bin: Some(bin), max_tags })
            }
            _ if v.is_empty() => Ok(Skopeo { bin: None, note: "not installed (BENCH_SKOPEO)".into(), max_tags }),
            other => Err(format!("BENCH_SKOPEO={v}: `{v} --version` failed: {other:?}")),
        }
    }

    fn describe(&self) -> String {
        match &self.bin {
            Some(_) => format!("{} (BENCH_SKOPEO), up to {} tags (BENCH_SKOPEO_MAX_TAGS)", self.note, self.max_tags),
            None => self.note.clone(),
        }
    }
}

/// A `skopeo sync --src yaml` source file: these repositories of `src` (`host:port`), every tag,
/// plain http.
fn skopeo_source_yaml(src: &str, repos: &[String]) -> String {
    let mut yaml = format!("\"{src}\":\n  tls-verify: false\n  images:\n");
    for repo in repos {
        yaml.push_str(&format!("    {repo}: []\n"));
    }
    yaml
}

/// `skopeo sync --src yaml --dest docker --preserve-digests YAML DEST`: each `a/b` of the yaml
/// goes to `DEST/b`. Credentials files point to a path that does not exist.
fn skopeo_sync(bin: &Path, yaml: &Path, dest: &str, name: &str, limit: Duration) -> Result<Measured, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--insecure-policy", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"]).args([
        "--preserve-digests",
        p(yaml),
        dest,
    ]);
    let no_creds = std::env::temp_dir().join("image-syncer-bench-no-credentials");
    cmd.env("DOCKER_CONFIG", &no_creds).env("REGISTRY_AUTH_FILE", no_creds.join("auth.json"));
    run_process(cmd, &format!("skopeo ({name})"), SKOPEO_DONE_LINE, limit)
}

// ---------------------------------------------------------------------------------------------
// output
// ---------------------------------------------------------------------------------------------

/// A table: the first column left-aligned, the others right-aligned.
fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let parts: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        parts.join("  ")
    };
    let head = line(&mut header.iter().copied());
    let mut out = format!("{head}\n{}\n", "-".repeat(head.len()));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

struct Row {
    scenario: String,
    /// Median, min, max.
    wall: (Duration, Duration, Duration),
    /// MiB/s at the median wall time.
    throughput: Option<f64>,
    /// Highest over the runs.
    peak_kib: Option<u64>,
    /// (source, destination)
    requests: Option<(usize, usize)>,
}

impl Row {
    fn new(scenario: String, runs: &[Measured]) -> Row {
        let mut walls: Vec<Duration> = runs.iter().map(|m| m.wall).collect();
        walls.sort();
        let median = walls[walls.len() / 2];
        Row {
            scenario,
            wall: (median, walls[0], walls[walls.len() - 1]),
            throughput: None,
            peak_kib: runs.iter().filter_map(|m| m.peak_kib).max(),
            requests: None,
        }
    }

    fn with_throughput(mut self, mib: u64) -> Row {
        self.throughput = Some(mib as f64 / self.wall.0.as_secs_f64());
        self
    }
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(0).max("scenario".len());
    let header = format!(
        "{:<width$}  {:>7}  {:>11}  {:>11}  {:>9}  {:>16}",
        "scenario", "wall", "(min-max)", "throughput", "peak RSS", "requests src/dst"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for r in rows {
        let (median, min, max) = r.wall;
        let wall = format!("{:.2} s", median.as_secs_f64());
        let spread = format!("({:.2}-{:.2})", min.as_secs_f64(), max.as_secs_f64());
        let tp = r.throughput.map(|t| format!("{t:.0} MiB/s")).unwrap_or_else(|| "-".into());
        let peak = r.peak_kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into());
        let reqs = r.requests.map(|(s, d)| format!("{s} / {d}")).unwrap_or_else(|| "-".into());
        println!("{:<width$}  {wall:>7}  {spread:>11}  {tp:>11}  {peak:>9}  {reqs:>16}", r.scenario);
    }
}

/// "51 (GET 1, HEAD 50)"
fn breakdown(reqs: &[Request]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in reqs {
        let kind = if r.path.ends_with("/tags/list") {
            "tags"
        } else if r.path.contains("/manifests/") {
            "manifest"
        } else if r.path.contains("/blobs/") {
            "blob"
        } else {
            "other"
        };
        *by.entry(format!("{} {kind}", r.method)).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} ({})", reqs.len(), parts.join(", "))
}
