//! Many small images (`small`): `BENCH_TAGS` (default 50) tags × 3 small layers of 8-32 KiB,
//! copied with `--proc 1`, `--proc 8`, the defaults (no `--proc` flag) and skopeo, each with its
//! floor (the CPU seconds of the syncer and both registries over the cores: the least wall this
//! machine allows if nothing waited on a disk or a lock); then a no-op re-run of those tags
//! (nothing changed) at `--proc 8` and the defaults, with the requests each registry saw.

use std::thread;
use std::time::{Duration, Instant};

use super::common::{Registry, Request};
use super::fixtures::{check_tags, push_small_images};
use super::output::{floor_line, Row};
use super::run::{harness_cpu, repeat, run_measured, Procs};
use super::skopeo::{skopeo_source_yaml, skopeo_sync};
use super::{Bench, Settings, LAYERS_PER_SMALL_IMAGE, LIMIT};

pub(super) struct SmallReport {
    pub(super) rows: Vec<Row>,
    /// The no-op re-run (last run): source requests, destination requests, tags reported
    /// unchanged.
    pub(super) noop: (Vec<Request>, Vec<Request>, usize),
    /// Per cold copy: its `--proc`, and summed over the runs: wall, syncer CPU, registries' CPU.
    pub(super) floors: Vec<(String, (Duration, Duration, Duration))>,
}

/// Copies `BENCH_TAGS` small images at `--proc` 1, 8 and the defaults (and with skopeo), then
/// re-runs the copy with nothing to do.
pub(super) fn small_section(b: &Bench, s: &Settings) -> Result<SmallReport, String> {
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

/// The floor lines of the cold copies: the CPU the syncer and both registries spent, spread
/// over the machine's cores, is the least wall any tool could reach on this machine; how far
/// above it the runs were.
pub(super) fn print_floors(floors: &[(String, (Duration, Duration, Duration))]) {
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
