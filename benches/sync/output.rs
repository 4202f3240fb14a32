//! Output: the tables and lines the sections print their figures in. A [`Row`] of the main
//! tables (median wall over the runs with its spread, throughput, peak RSS, requests), a plain
//! [`grid`] for the fan-out and many-tags reports, the floor line (how far above the CPU the
//! syncer and both registries spent, spread over the cores, a wall was), and a count of requests
//! by method and kind from a registry's access log.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use super::common::Request;
use super::run::Measured;

/// A table: the first column left-aligned, the others right-aligned.
pub(super) fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
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

pub(super) fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

pub(super) struct Row {
    pub(super) scenario: String,
    /// Median, min, max.
    pub(super) wall: (Duration, Duration, Duration),
    /// MiB/s at the median wall time.
    throughput: Option<f64>,
    /// Highest over the runs.
    pub(super) peak_kib: Option<u64>,
    /// (source, destination)
    pub(super) requests: Option<(usize, usize)>,
}

impl Row {
    pub(super) fn new(scenario: String, runs: &[Measured]) -> Row {
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

    pub(super) fn with_throughput(mut self, mib: u64) -> Row {
        self.throughput = Some(mib as f64 / self.wall.0.as_secs_f64());
        self
    }
}

pub(super) fn print_table(rows: &[Row]) {
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
pub(super) fn breakdown(reqs: &[Request]) -> String {
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

/// `LABEL wall W s, CPU S + R s, floor F s, wall / floor X` for (wall, syncer CPU, both
/// registries' CPU): the floor is the CPU spread over the machine's cores.
pub(super) fn floor_line(label: &str, (wall, syncer, regs): (Duration, Duration, Duration)) -> String {
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

pub(super) fn tags_row(scenario: String, runs: &[Measured], (src, dst): (usize, usize), tags: usize) -> Vec<String> {
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
