//! Running the binary under test with a watchdog ([`RUN_LIMIT`] unless a test gives its own
//! limit), so a hang fails the test instead of CI, and the assertions on what a run printed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::io::Read;

use super::{base64, contains_any_ci};

/// The binary under test: `$IMAGE_SYNCER_BIN` if set, else the cargo-built one (Cargo names it
/// for tests and benches; examples that share this module fall back to the release build).
pub fn syncer_bin() -> PathBuf {
    match std::env::var_os("IMAGE_SYNCER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(
            option_env!("CARGO_BIN_EXE_image-syncer")
                .unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/image-syncer")),
        ),
    }
}

/// Keeps `cmd` away from any proxy the caller's environment names: everything the tests start
/// is on 127.0.0.1.
pub fn without_proxies(cmd: &mut Command) -> &mut Command {
    for k in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(k);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
}

/// The outcome of one syncer run.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole output unless the run succeeded.
    pub fn assert_ok(&self) -> &Run {
        assert!(self.success(), "image-syncer failed:\n{self}");
        self.assert_no_panic();
        self
    }

    /// Panics unless the run failed with a normal non-zero exit code (not a signal).
    pub fn assert_failed(&self) -> &Run {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "image-syncer should have failed with a non-zero exit code:\n{self}"
        );
        self.assert_no_panic();
        self
    }

    pub fn assert_no_panic(&self) -> &Run {
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(!all.contains("panicked") && !all.contains("RUST_BACKTRACE"), "panic output:\n{self}");
        self
    }

    /// stdout + stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The output lines (stdout, then stderr) containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.output().lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_string).collect()
    }

    /// The stderr lines that name `what` (an address, an image) and say one of `words` (in any
    /// case).
    pub fn stderr_lines_naming(&self, what: &str, words: &[&str]) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.contains(what) && contains_any_ci(l, words)).collect()
    }

    /// Panics unless some stderr line names `what` and says one of `words`.
    pub fn assert_stderr_names(&self, what: &str, words: &[&str]) -> &Run {
        let found = !self.stderr_lines_naming(what, words).is_empty();
        assert!(
            found,
            "stderr should name {what} and say {}:
{self}",
            words.join(" or ")
        );
        self
    }

    /// The failure lines (`failed: SRC -> DST: …`), one per image.
    pub fn failed_lines(&self) -> Vec<String> {
        self.lines_with(&["failed: "])
    }

    /// The number N of `Synchronization finished, N images failed` in `text`.
    pub fn failed_count_in(text: &str) -> Option<u64> {
        let line = text.lines().find(|l| l.contains("Synchronization finished"))?;
        let rest = &line[line.find("Synchronization finished,")? + "Synchronization finished,".len()..];
        rest.split_whitespace().next()?.parse().ok()
    }

    /// The N of the summary line in the output (stderr, stdout).
    pub fn failed_count(&self) -> Option<u64> {
        Run::failed_count_in(&self.output())
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {} {}", syncer_bin().display(), self.args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// How long one run of the binary may take unless a test gives a limit of its own: every run
/// takes seconds on a healthy machine, and a hang must fail its test rather than block CI.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs the syncer with `args` (no extra environment), killed after [`RUN_LIMIT`].
pub fn run_syncer(args: &[&str]) -> Run {
    run_syncer_env(args, &[])
}

/// Runs the syncer with `args` and extra environment variables, killed after [`RUN_LIMIT`].
pub fn run_syncer_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    Running::spawn(args, envs).wait(RUN_LIMIT)
}

/// Runs the syncer with `args`; a run still going after `limit` is killed and fails the test.
pub fn run_syncer_within(args: &[&str], limit: Duration) -> Run {
    Running::spawn(args, &[]).wait(limit)
}

/// A syncer process started in the background.
pub struct Running {
    args: Vec<String>,
    child: Child,
    out: thread::JoinHandle<Vec<u8>>,
    err: thread::JoinHandle<Vec<u8>>,
}

impl Running {
    /// Starts the syncer with `args` and extra environment variables. Proxy variables and
    /// `RUST_LOG` are removed (everything is on 127.0.0.1; the default log level is tested) and
    /// docker / podman credential files point to a path that does not exist.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(syncer_bin());
        cmd.args(args);
        Running::spawn_cmd(cmd, args, envs)
    }

    /// Starts the syncer with `args` under a pseudo-terminal (util-linux `script`), so that its
    /// stderr is a terminal; everything it wrote to the terminal comes back as stdout.
    pub fn spawn_in_pty(args: &[&str], envs: &[(&str, &str)]) -> Running {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let line: Vec<String> = std::iter::once(syncer_bin().display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| quote(&a))
            .collect();
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
        Running::spawn_cmd(cmd, args, envs)
    }

    fn spawn_cmd(mut cmd: Command, args: &[&str], envs: &[(&str, &str)]) -> Running {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        without_proxies(&mut cmd);
        // The default log level is part of the contract (summary line, "unchanged"): do not let
        // the caller's environment change it.
        cmd.env_remove("RUST_LOG");
        // Hermetic credentials: never pick up the developer's docker / podman logins.
        let no_creds = std::env::temp_dir().join("image-syncer-tests-no-credentials");
        cmd.env("DOCKER_CONFIG", &no_creds).env("REGISTRY_AUTH_FILE", no_creds.join("auth.json"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let err = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        Running { args: args.iter().map(|s| s.to_string()).collect(), child, out, err }
    }

    /// Sends a signal (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// `true` while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Polls `done` while the process runs, until it holds (then the process is handed back).
    /// The test fails, with the run's output, if the process ends first, and after `limit`:
    /// `what` says what was awaited.
    pub fn wait_until(mut self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Running {
        let deadline = Instant::now() + limit;
        while !done() {
            if !self.is_running() {
                let run = self.wait(Duration::from_secs(5));
                panic!("the run ended before {what}:\n{run}");
            }
            assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
            thread::sleep(Duration::from_millis(20));
        }
        self
    }

    /// Waits for the process to end; one still running after `limit` is killed, and the test
    /// fails with its output (a hang must fail, not block the suite).
    pub fn wait(mut self, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait for image-syncer") {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(25));
        };
        let stdout = String::from_utf8_lossy(&self.out.join().unwrap()).to_string();
        let stderr = String::from_utf8_lossy(&self.err.join().unwrap()).to_string();
        let run = Run { args: self.args, code: status.and_then(|s| s.code()), stdout, stderr };
        assert!(status.is_some(), "image-syncer did not finish within {limit:?} and was killed:\n{run}");
        run
    }
}

/// Asserts that none of `secrets` appears in `texts` (each `(what, text)`), also checking the
/// base64 of `user:password` pairs given in `basic`.
pub fn assert_no_secrets(texts: &[(&str, &str)], secrets: &[&str], basic: &[(&str, &str)]) {
    let mut needles: Vec<(String, String)> = secrets.iter().map(|s| (s.to_string(), format!("secret {s:?}"))).collect();
    for (u, p) in basic {
        let b = base64(format!("{u}:{p}").as_bytes());
        needles.push((b.clone(), format!("base64 of {u}:<password> ({b})")));
    }
    for (what, text) in texts {
        for (needle, label) in &needles {
            assert!(!needle.is_empty());
            assert!(!text.contains(needle.as_str()), "{label} leaked into {what}:\n{text}");
        }
    }
}
