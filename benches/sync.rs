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
//!
//! This file reads the settings, starts the registries and runs the sections; each section is a
//! module under `sync/`: `big.rs`, `small.rs`, `wan.rs`, `fanout.rs`, `tags.rs` (many tags and
//! huge) and `immutable.rs`, built on `run.rs` (running and measuring a process), `fixtures.rs`
//! (the images pushed to the source, the checks of the copies), `skopeo.rs`, `output.rs` (tables)
//! and `seed.rs` (the huge section's seeding); `report.rs` prints what they measured.

// The integration tests' harness: this uses only a part of it (the rest, and its re-exports, unused here).
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

#[path = "sync/big.rs"]
mod big;
#[path = "sync/fanout.rs"]
mod fanout;
#[path = "sync/fixtures.rs"]
mod fixtures;
#[path = "sync/immutable.rs"]
mod immutable;
#[path = "sync/output.rs"]
mod output;
#[path = "sync/report.rs"]
mod report;
#[path = "sync/run.rs"]
mod run;
#[path = "sync/seed.rs"]
mod seed;
#[path = "sync/skopeo.rs"]
mod skopeo;
#[path = "sync/small.rs"]
mod small;
#[path = "sync/tags.rs"]
mod tags;
#[path = "sync/wan.rs"]
mod wan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use big::big_section;
use common::{auth_for, auth_yaml, syncer_bin, Registry, TestDir};
use fanout::{fanout_section, FanoutOpts};
use report::print_report;
use skopeo::Skopeo;
use small::small_section;
use tags::{huge_section, tags_section};
use wan::wan_section;

const MIB: u64 = 1024 * 1024;
/// The small layer of the memory comparison.
const SMALL_LAYER_MIB: u64 = 32;
const DEFAULT_LAYER_MIB: u64 = 256;
const DEFAULT_TAGS: usize = 50;
const LAYERS_PER_SMALL_IMAGE: usize = 3;
const DEFAULT_RUNS: usize = 3;
const DEFAULT_WAN_TAGS: usize = 24;
const DEFAULT_WAN_INDEXES: usize = 4;
const DEFAULT_FANOUT_REPOS: usize = 10;
const DEFAULT_FANOUT_TAGS: usize = 2;
const DEFAULT_MANY_TAGS: usize = 10_000;
/// skopeo copies the many-tags repository only up to this many tags (it copies one image at a time).
const DEFAULT_SKOPEO_MAX_TAGS: usize = 10_000;
/// The log line the syncer writes once an image is complete at the destination.
const SYNCED_LINE: &str = "] synced ";
/// How long one run of the many-tags section may take before it is killed.
const TAGS_LIMIT: Duration = Duration::from_secs(1800);
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
