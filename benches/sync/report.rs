//! The report: what the sections measured, printed once they have all run (their progress goes to
//! stderr meanwhile). The large and small images in one table with the floors of the cold copies,
//! the long links in another with their speed-ups and CPU split, peak memory against layer size,
//! the no-op re-run, then the fan-out, many-tags, immutable and huge reports, and the legend.

use super::big::BigReport;
use super::output::{breakdown, print_table};
use super::small::{print_floors, SmallReport};
use super::wan::{WanReport, WAN_DELAYS_MS, WAN_PROCS};
use super::Settings;

/// Prints what the sections measured: the large and small images in one table, the long links
/// in another with their speed-ups and CPU split, peak memory against layer size, the no-op
/// re-run, then the fan-out and many-tags reports, and the legend.
pub(super) fn print_report(
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
