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
//!   `--proc 1` and `--proc 8`;
//! * a no-op re-run of those tags (nothing changed): wall time and the requests each registry saw;
//! * long links: `BENCH_WAN_TAGS` (default 24) small images of the same kind copied from the source
//!   *through* a harness [`Proxy`] that delays every request by 20 ms and by 100 ms (a stand-in
//!   for a far-away registry), with `--proc 5` (the default), 16 and 32: wall time, peak RSS and the
//!   requests the proxy and the destination saw (last run).
//!
//! `BENCH_ONLY=SECTION[,SECTION…]` runs only some sections: `big` (throughput and peak memory),
//! `small` (many small images and the no-op re-run), `wan` (long links). `BENCH_ONLY=wan cargo
//! bench --bench sync` takes about a minute.
//!
//! Each syncer figure is the median of `BENCH_RUNS` (default 3) runs, each into a new destination
//! repository. `IMAGE_SYNCER_BIN=/path/to/other/binary` measures another build (or the Go tool,
//! which takes the same flags) instead.
//! The program does check that every copy really happened (same digests at both ends), so that a
//! fast figure can never come from a run that silently did nothing.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::{
    docker_json, p, random_bytes, syncer_bin, unique_seed, Client, Proxy, ProxyOpts, Registry, Request, TestDir,
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST,
};

const MIB: u64 = 1024 * 1024;
/// The small layer of the memory comparison.
const SMALL_LAYER_MIB: u64 = 32;
const DEFAULT_LAYER_MIB: u64 = 256;
const DEFAULT_TAGS: usize = 50;
const LAYERS_PER_SMALL_IMAGE: usize = 3;
const DEFAULT_RUNS: usize = 3;
const DEFAULT_WAN_TAGS: usize = 24;
/// The delay the proxy in front of the source adds to every request, in the long-links section.
const WAN_DELAYS_MS: [u64; 2] = [20, 100];
/// `--proc` values of the long-links section: the default, then more workers to hide the latency.
const WAN_PROCS: [usize; 3] = [5, 16, 32];

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
}

impl Sections {
    fn from_env() -> Result<Sections, String> {
        let v = std::env::var("BENCH_ONLY").unwrap_or_default();
        if v.trim().is_empty() {
            return Ok(Sections { big: true, small: true, wan: true });
        }
        let mut s = Sections { big: false, small: false, wan: false };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "big" => s.big = true,
                "small" => s.small = true,
                "wan" => s.wan = true,
                _ => return Err(format!("BENCH_ONLY={v:?}: unknown section {name:?} (expected big, small, wan)")),
            }
        }
        Ok(s)
    }

    fn names(&self) -> String {
        let names: Vec<&str> =
            [(self.big, "big"), (self.small, "small"), (self.wan, "wan")].iter().filter(|n| n.0).map(|n| n.1).collect();
        names.join(",")
    }
}

fn bench() -> Result<(), String> {
    let sections = Sections::from_env()?;
    let big_mib = env_number("BENCH_LAYER_MIB", DEFAULT_LAYER_MIB)?;
    let tags = env_number("BENCH_TAGS", DEFAULT_TAGS as u64)? as usize;
    let runs = env_number("BENCH_RUNS", DEFAULT_RUNS as u64)? as usize;
    let wan_tags = env_number("BENCH_WAN_TAGS", DEFAULT_WAN_TAGS as u64)? as usize;
    let small_mib = SMALL_LAYER_MIB.min(big_mib);
    let bin = syncer_bin();
    println!("image-syncer benchmark");
    println!("  binary: {}", bin.display());
    println!(
        "  cpus: {}; layers of {small_mib} and {big_mib} MiB (BENCH_LAYER_MIB); {tags} small images (BENCH_TAGS); \
         {wan_tags} small images over long links (BENCH_WAN_TAGS); each figure is the median of {runs} runs \
         (BENCH_RUNS); sections: {} (BENCH_ONLY)",
        thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        sections.names()
    );
    let started = Instant::now();

    let src = Registry::start();
    let dst = Registry::start();
    let work = TestDir::new("bench");
    let auth = work
        .write("auth.yaml", &format!("\"{}\":\n  insecure: true\n\"{}\":\n  insecure: true\n", src.addr(), dst.addr()));
    let mut rows: Vec<Row> = Vec::new();

    // --- large layers: throughput and peak memory -------------------------------------------
    let mut peaks = Vec::new();
    if sections.big {
        let mut sizes = vec![small_mib];
        if big_mib != small_mib {
            sizes.push(big_mib);
        }
        for &mib in &sizes {
            eprint!("pushing a {mib} MiB layer to the source ... ");
            let t = Instant::now();
            let repo = format!("big/layer-{mib}");
            let (manifest_digest, layer_digest) = push_streamed_image(&src, &repo, "v1", mib)?;
            let push = Measured { wall: t.elapsed(), peak_kib: None, log: String::new() };
            eprintln!("{:.1?}", push.wall);

            // Every run copies into a new destination repository, so every run moves the whole layer.
            let measured = repeat(runs, |i| {
                let dst_repo = format!("{repo}-run{i}");
                let images = work.write("images-big.yaml", &format!("{}: {}\n", src.repo(&repo), dst.repo(&dst_repo)));
                let run = run_measured(&work, &auth, &images, 1, &format!("big-{mib}-{i}"))?;
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
                    Ok(Measured { wall: t.elapsed(), peak_kib: None, log: String::new() })
                })?;
                rows.push(
                    Row::new(format!("  reference: only GET {mib} MiB from the source"), &measured)
                        .with_throughput(mib),
                );
                rows.push(
                    Row::new(format!("  reference: only PUT {mib} MiB to a registry (1 run)"), &[push])
                        .with_throughput(mib),
                );
            }
        }
    }

    // --- many small images ------------------------------------------------------------------
    let mut noop = None;
    if sections.small {
        eprint!("pushing {tags} tags x {LAYERS_PER_SMALL_IMAGE} small layers to the source ... ");
        let t = Instant::now();
        let digests = push_small_images(src.api(), "small/app", tags)?;
        eprintln!("{:.1?}", t.elapsed());

        let small_rule = |dst_repo: &str, name: &str| {
            work.write(&format!("images-{name}.yaml"), &format!("{}: {}\n", src.repo("small/app"), dst.repo(dst_repo)))
        };
        for procs in [1usize, 8] {
            let measured = repeat(runs, |i| {
                let dst_repo = format!("small-p{procs}-run{i}/app");
                let images = small_rule(&dst_repo, "small");
                let run = run_measured(&work, &auth, &images, procs, &format!("small-p{procs}-{i}"))?;
                check_tags(dst.api(), &dst_repo, &digests)?;
                Ok(run)
            })?;
            rows.push(Row::new(
                format!("copy {tags} tags x {LAYERS_PER_SMALL_IMAGE} layers, --proc {procs}"),
                &measured,
            ));
        }

        // --- no-op re-run -----------------------------------------------------------------------
        // Against a destination filled by the last --proc 8 run: nothing may be copied again.
        let images = small_rule(&format!("small-p8-run{}/app", runs - 1), "noop");
        let mut counts = (Vec::new(), Vec::new(), 0usize);
        let measured = repeat(runs, |i| {
            src.clear_requests();
            dst.clear_requests();
            let run = run_measured(&work, &auth, &images, 8, &format!("noop-{i}"))?;
            let unchanged = run.log.lines().filter(|l| l.contains("] unchanged ")).count();
            counts = (src.requests(), dst.requests(), unchanged);
            Ok(run)
        })?;
        let mut row = Row::new(format!("no-op re-run of {tags} tags, --proc 8"), &measured);
        row.requests = Some((counts.0.len(), counts.1.len()));
        rows.push(row);
        noop = Some(counts);
    }

    // --- long links: the source behind a proxy delaying every request ---------------------
    let mut wan_rows: Vec<Row> = Vec::new();
    if sections.wan {
        eprint!("pushing {wan_tags} tags x {LAYERS_PER_SMALL_IMAGE} small layers to the source ... ");
        let t = Instant::now();
        let digests = push_small_images(src.api(), "wan/app", wan_tags)?;
        eprintln!("{:.1?}", t.elapsed());
        for delay_ms in WAN_DELAYS_MS {
            let proxy = Proxy::start_with(
                &src.addr(),
                ProxyOpts { delay: Duration::from_millis(delay_ms), ..ProxyOpts::default() },
            );
            let auth = work.write(
                &format!("auth-wan-{delay_ms}.yaml"),
                &format!("\"{}\":\n  insecure: true\n\"{}\":\n  insecure: true\n", proxy.addr(), dst.addr()),
            );
            for procs in WAN_PROCS {
                eprint!("long link +{delay_ms} ms/request, --proc {procs} ... ");
                let t = Instant::now();
                let mut counts = (0usize, 0usize);
                let measured = repeat(runs, |i| {
                    let dst_repo = format!("wan-d{delay_ms}-p{procs}-run{i}/app");
                    let images = work.write(
                        &format!("images-wan-{delay_ms}-{procs}.yaml"),
                        &format!("{}: {}\n", proxy.repo("wan/app"), dst.repo(&dst_repo)),
                    );
                    dst.clear_requests();
                    let before = proxy.requests().len();
                    let run = run_measured(&work, &auth, &images, procs, &format!("wan-d{delay_ms}-p{procs}-{i}"))?;
                    counts = (proxy.requests().len() - before, dst.requests().len());
                    check_tags(dst.api(), &dst_repo, &digests)?;
                    Ok(run)
                })?;
                eprintln!("{:.1?}", t.elapsed());
                let mut row = Row::new(
                    format!("copy {wan_tags} tags x {LAYERS_PER_SMALL_IMAGE} layers, +{delay_ms} ms/request, --proc {procs}"),
                    &measured,
                );
                row.requests = Some(counts);
                wan_rows.push(row);
            }
        }
    }

    // --- report -----------------------------------------------------------------------------
    if !rows.is_empty() {
        println!();
        print_table(&rows);
    }
    if !wan_rows.is_empty() {
        println!();
        println!("long links: source behind a proxy that waits the given time before forwarding each request");
        print_table(&wan_rows);
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
        println!("no-op re-run (last of {runs}):");
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
    println!("wall = median (min-max) over {runs} runs of the whole process, start to exit; throughput = layer MiB / median wall;");
    println!("peak RSS = highest VmHWM of the syncer process over the runs;");
    println!("requests src/dst = requests the source (or, for long links, its proxy) and the destination saw in the last run.");
    println!("total benchmark time: {:.1?}", started.elapsed());
    Ok(())
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
    /// stdout + stderr of the run.
    log: String,
}

/// Runs `image-syncer --auth AUTH --images IMAGES --proc N`, polling its peak RSS until it exits.
/// Fails (with its output) unless it exits 0.
fn run_measured(work: &TestDir, auth: &Path, images: &Path, procs: usize, name: &str) -> Result<Measured, String> {
    let out_path = work.join(&format!("{name}.log"));
    let out = fs::File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let procs = procs.to_string();
    let mut cmd = Command::new(syncer_bin());
    cmd.args(["--auth", p(auth), "--images", p(images), "--proc", &procs]).stdin(Stdio::null()).stdout(out).stderr(err);
    for k in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", syncer_bin().display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = None;
    let deadline = start + Duration::from_secs(600);
    let status = loop {
        // Read before try_wait: once reaped (or a zombie) the process has no VmHWM any more.
        if let Some(kib) = vm_hwm_kib(&status_file) {
            peak_kib = Some(kib);
        }
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("image-syncer ({name}) hung for 10 minutes and was killed"));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let wall = start.elapsed();
    let log = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(format!("image-syncer ({name}) failed with {status}:\n{log}"));
    }
    Ok(Measured { wall, peak_kib, log })
}

fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let text = fs::read_to_string(status_file).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
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
// output
// ---------------------------------------------------------------------------------------------

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
