//! Many tags in one repository (`tags`), and the huge run (`huge`). `BENCH_MANY_TAGS` (default
//! 10,000) tiny images in one repository (one shared layer, a config of their own), and a tenth of
//! that in another: a cold run into an empty destination and no-op re-runs at the defaults,
//! `--proc 5` and `--proc 32`, with requests per tag, a floor line per no-op, peak RSS (flat in
//! the number of tags?) and the time to the first image; next to it skopeo, cold and no-op, up to
//! `BENCH_SKOPEO_MAX_TAGS`. The huge run (`BENCH_HUGE=1`) does the same, once, for
//! `BENCH_HUGE_TAGS` (default 100,000) tags seeded straight into the source's storage.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::common::{auth_for, auth_yaml, Registry};
use super::fixtures::{check_tags_parallel, push_many_tags};
use super::output::{breakdown, floor_line, grid, mib, tags_row, Row};
use super::run::{harness_cpu, repeat, run_measured_within, Procs};
use super::skopeo::{skopeo_source_yaml, skopeo_sync};
use super::{seed, Bench, Settings, TAGS_LIMIT};

/// The no-op re-runs of the many-tags section run at the defaults and at these `--proc` (5: the
/// Go tool's default, and this tool's before issue 24; 32: as many as the long links want).
const NOOP_PROCS: [usize; 2] = [5, 32];

/// How long one run of the 100,000-tag section may take before it is killed.
const HUGE_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// Seeds a tenth of `BENCH_MANY_TAGS` and all of them in two repositories and copies each cold
/// and again (and with skopeo, cold once): the section's report.
pub(super) fn tags_section(b: &Bench, s: &Settings) -> Result<String, String> {
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
pub(super) fn huge_section(b: &Bench, count: usize) -> Result<String, String> {
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
