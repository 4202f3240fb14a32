//! Running the syncer (or skopeo) and measuring it: a child process with its stdout and stderr
//! read line by line, polled every 5 ms for its peak RSS (`VmHWM`) and CPU time from `/proc`
//! until it exits, killed after a time limit; when its first image was complete (the first line
//! with a marker); the CPU time the registries and this process spent meanwhile. Every figure of
//! the benchmark is one of these [`Measured`] runs, repeated `BENCH_RUNS` times by [`repeat`].

use std::fs;
use std::io::{self, BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::common::{p, syncer_bin, without_proxies, Registry};
use super::{LIMIT, SYNCED_LINE};

/// Runs `f(0..n)` and collects the measurements; stops at the first error.
pub(super) fn repeat(n: usize, mut f: impl FnMut(usize) -> Result<Measured, String>) -> Result<Vec<Measured>, String> {
    (0..n).map(&mut f).collect()
}

pub(super) struct Measured {
    pub(super) wall: Duration,
    /// The last `VmHWM` read from `/proc/PID/status` while the process ran, in KiB.
    pub(super) peak_kib: Option<u64>,
    /// The process's own CPU time (user + system), as last read from `/proc/PID/stat`.
    pub(super) cpu: Option<Duration>,
    /// stdout + stderr of the run.
    pub(super) log: String,
    /// From the start to the first output line containing the run's marker (the first image
    /// complete at the destination), as this process read it from the pipe.
    pub(super) first: Option<Duration>,
}

impl Measured {
    pub(super) fn wall_only(wall: Duration) -> Measured {
        Measured { wall, peak_kib: None, cpu: None, log: String::new(), first: None }
    }
}

/// Runs `image-syncer --auth AUTH --images IMAGES --proc N`, polling its peak RSS until it exits.
/// Fails (with its output) unless it exits 0.
pub(super) fn run_measured(
    auth: &Path,
    images: &Path,
    procs: impl Into<Procs>,
    name: &str,
) -> Result<Measured, String> {
    run_measured_within(auth, images, procs, name, LIMIT)
}

pub(super) fn run_measured_within(
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
pub(super) enum Procs {
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
    pub(super) fn label(self) -> String {
        match self {
            Procs::Set(n) => format!("--proc {n}"),
            Procs::Default => "defaults".into(),
        }
    }
}

/// Runs `cmd` (proxy variables removed, stdin closed, stdout and stderr read line by line),
/// polling its peak RSS until it exits; notes when a line containing `marker` first appears.
/// Fails (with its output) unless it exits 0; a run still going after `limit` is killed.
pub(super) fn run_process(
    mut cmd: Command,
    what: &str,
    marker: &'static str,
    limit: Duration,
) -> Result<Measured, String> {
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
pub(super) fn harness_cpu(registries: &[&Registry]) -> (Duration, Duration) {
    let regs = registries.iter().filter_map(|r| cpu_time(r.pid())).sum();
    (regs, cpu_time(std::process::id()).unwrap_or_default())
}

fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let text = fs::read_to_string(status_file).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
