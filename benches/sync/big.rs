//! Large layers: throughput and peak memory (`big`). One image with a small (32 MiB) and one with
//! a large (`BENCH_LAYER_MIB`, default 256 MiB) layer of pseudo-random bytes, streamed into the
//! source and copied source → destination at `--proc 1`: wall time and MiB/s, next to two
//! reference figures this process measures itself (reading the blob from the source alone, and
//! uploading it, the fixture push, alone); and the syncer's peak RSS for both sizes, which must not
//! grow with the layer, as layers are streamed through a fixed buffer.

use std::time::Instant;

use super::fixtures::{check_same, push_streamed_image, read_blob};
use super::output::Row;
use super::run::{repeat, run_measured, Measured};
use super::{Bench, Settings, MIB};

pub(super) struct BigReport {
    pub(super) rows: Vec<Row>,
    /// (layer MiB, peak RSS in KiB) of the small and the large layer.
    pub(super) peaks: Vec<(u64, Option<u64>)>,
}

/// Copies one image with a small and one with a large layer (`BENCH_LAYER_MIB`), next to reading
/// and writing the large one alone.
pub(super) fn big_section(b: &Bench, s: &Settings) -> Result<BigReport, String> {
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
