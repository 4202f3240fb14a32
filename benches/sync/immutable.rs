//! The `immutable` section: `BENCH_IMMUTABLE_TAGS` (default 3,000) tiny images spread over
//! `BENCH_IMMUTABLE_REPOS` (default 30) repositories, copied once, then re-run (nothing changed)
//! with every tag compared (two manifest `HEAD`s a tag) and with `--immutable` (a tag already in
//! the destination's tag list is taken as in sync: one tag list per repository on each side).
//! Wall time and requests per tag, from the registries' access logs; every run at the defaults
//! (no `--proc`).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use super::common::{auth_for, auth_yaml, p, syncer_bin, Registry};
use super::fixtures::{check_tags_parallel, push_many_tags};
use super::output::{breakdown, grid, tags_row};
use super::run::{repeat, run_measured_within, run_process, Procs};
use super::{env_number, Bench, Settings, SYNCED_LINE, TAGS_LIMIT};

const DEFAULT_IMMUTABLE_TAGS: usize = 3_000;
const DEFAULT_IMMUTABLE_REPOS: usize = 30;

/// Seeds the repositories, copies them once, then measures the two kinds of no-op re-run.
pub fn section(b: &Bench, s: &Settings) -> Result<String, String> {
    let tags = env_number("BENCH_IMMUTABLE_TAGS", DEFAULT_IMMUTABLE_TAGS as u64)? as usize;
    let repos = (env_number("BENCH_IMMUTABLE_REPOS", DEFAULT_IMMUTABLE_REPOS as u64)? as usize).clamp(1, tags.max(1));
    let (src, work, runs) = (&b.src, &b.work, s.runs);
    let per_repo = tags / repos;
    let total = per_repo * repos;
    eprint!("immutable: seeding {repos} repositories x {per_repo} tags ... ");
    let t = Instant::now();
    let names: Vec<String> = (0..repos).map(|i| format!("immutable/r{i:02}")).collect();
    let seeded: Vec<_> = names.iter().map(|r| (r.clone(), push_many_tags(src.api(), r, per_repo))).collect();
    eprintln!("{:.1?}", t.elapsed());

    let dst = Registry::start();
    let auth = work.write("auth-immutable.yaml", &auth_yaml(&auth_for(&[src, &dst])));
    let rules: String = names.iter().map(|r| format!("{}: {}\n", src.repo(r), dst.repo(r))).collect();
    let images = work.write("images-immutable.yaml", &rules);
    eprint!("immutable: the first copy ... ");
    let t = Instant::now();
    run_measured_within(&auth, &images, Procs::Default, "immutable-cold", TAGS_LIMIT)?;
    for (repo, digests) in &seeded {
        check_tags_parallel(dst.api(), repo, digests)?;
    }
    eprintln!("{:.1?}", t.elapsed());

    let mut rows = Vec::new();
    let mut notes = String::new();
    for (label, immutable) in [("every tag compared", false), ("--immutable", true)] {
        eprint!("immutable: no-op re-runs, {label} ... ");
        let t = Instant::now();
        let mut last = (Vec::new(), Vec::new(), String::new());
        let measured = repeat(runs, |i| {
            src.clear_requests();
            dst.clear_requests();
            let mut cmd = Command::new(syncer_bin());
            cmd.args(["--auth", p(&auth), "--images", p(&images)]);
            if immutable {
                cmd.arg("--immutable");
            }
            let run = run_process(cmd, &format!("image-syncer (immutable no-op {i})"), SYNCED_LINE, TAGS_LIMIT)?;
            let summary = run.log.lines().rev().find(|l| l.contains("unchanged")).unwrap_or_default().to_string();
            last = (src.requests(), dst.requests(), summary);
            Ok(run)
        })?;
        eprintln!("{:.1?}", t.elapsed());
        let (src_reqs, dst_reqs, summary) = last;
        rows.push(tags_row(
            format!("no-op re-run, {total} tags in {repos} repositories, {label}, defaults"),
            &measured,
            (src_reqs.len(), dst_reqs.len()),
            total,
        ));
        let _ = writeln!(
            notes,
            "{label} (last run): {}\n  source requests:      {}\n  destination requests: {}",
            summary.trim(),
            breakdown(&src_reqs),
            breakdown(&dst_reqs)
        );
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "immutable tags: {total} tiny images in {repos} repositories, copied once, then re-run with nothing changed"
    );
    out.push_str(&grid(
        &["scenario", "wall", "(min-max)", "first image", "peak RSS", "src req/tag", "dst req/tag", "total req/tag"],
        &rows,
    ));
    out.push_str(&notes);
    Ok(out)
}
