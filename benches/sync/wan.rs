//! Long links (`wan`): the source behind a harness `Proxy` that delays every request by 20 ms and
//! by 100 ms, a stand-in for a far-away registry. `BENCH_WAN_TAGS` (default 24) small images
//! copied through it at the defaults and with `--proc` 5 (the Go tool's default), 8, 16, 32 and
//! 64, and by one `skopeo sync`; `BENCH_WAN_INDEXES` (default 4) multi-platform images (OCI
//! indexes of 8 platform images) at `--proc` 8 and 32. Wall time, peak RSS, the requests the
//! proxy and the destination saw, and where the CPU went (on a small machine the registries, not
//! the link, set the floor).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::common::{auth_yaml, push_index, AuthEntry, IndexKind, Proxy, ProxyOpts, Registry};
use super::fixtures::{check_tags, push_small_images};
use super::output::Row;
use super::run::{harness_cpu, repeat, run_measured, Procs};
use super::skopeo::{skopeo_source_yaml, skopeo_sync};
use super::{Bench, Settings, LAYERS_PER_SMALL_IMAGE, LIMIT};

/// Multi-platform images of the long-links section: indexes of these platforms (each entry an
/// image of two small layers), copied at `--proc` 8 and 32.
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
pub(super) const WAN_DELAYS_MS: [u64; 2] = [20, 100];

/// `--proc` values of the long-links section: the default, then more workers to hide the latency.
pub(super) const WAN_PROCS: [usize; 5] = [5, 8, 16, 32, 64];

pub(super) struct WanReport {
    pub(super) rows: Vec<Row>,
    /// (scenario, CPU seconds of the syncer, of both registries, of the harness proxy), last run.
    pub(super) cpu: Vec<(String, Duration, Duration, Duration)>,
}

/// Copies small images and multi-platform indexes through a proxy that delays every request,
/// at several `--proc`, and with skopeo.
pub(super) fn wan_section(b: &Bench, s: &Settings) -> Result<WanReport, String> {
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
