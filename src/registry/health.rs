//! Whether a registry answers at all, one verdict shared by every request to it, so that a dead
//! or hung registry costs seconds instead of every request waiting out its own deadline and
//! retries (measured before: 10 images from a registry that accepts connections and never
//! answers took 44.5 s at `--stall-timeout 5`; at the default 60 s, 4 minutes per image).
//! regclient keeps such state per host too (a host's failures delay every later request to it,
//! up to a limit: <https://github.com/regclient/regclient/blob/main/internal/reghttp/http.go>);
//! here a probe decides, not a count.
//!
//! The rules, which [`Health`] keeps:
//!
//! - **Unanswered** means no answer head came back: refused, unreachable, or no progress within
//!   `--stall-timeout` while connecting, sending or waiting ([`super::error::unanswered`], by the
//!   transport error's type). Any answer, whatever its status, is a sign of life; a reset is
//!   neither.
//! - An unanswered request **counts** only when nothing of the registry was answered since it
//!   was sent: while others are answered, one stalled request is its own trouble, not the
//!   registry's.
//! - A request that counts is followed by one **probe**, `GET /v2/` — the API version check
//!   every registry answers, 200 or 401 (distribution spec,
//!   <https://distribution.github.io/distribution/spec/api/#api-version-check>; OCI
//!   distribution spec end-1) — within `--stall-timeout`. Requests that come meanwhile wait for
//!   its verdict. Answered: nothing changes. Unanswered: the registry is **down**.
//! - Down: one warning line names the registry and since when; every request to it fails at
//!   once with [`ErrorKind::Unreachable`], created exhausted, so nothing retries it before the
//!   engine's next pass.
//! - A new pass ([`Health::new_pass`]) lets the first request to a down registry probe it once
//!   before any work is sent; the others wait for the verdict. Not when the last probe went
//!   unanswered less than `--stall-timeout` ago: passes that follow at once would only wait out
//!   the same silence again.
//! - Any answer — a probe's, or one to a request sent before the registry went down — brings it
//!   up again.
//!
//! So a registry that never answers costs one stall and one probe, about 2 × `--stall-timeout`,
//! whatever the number of its images and `--proc`; one that refuses connections, no time at
//! all. What a request pays while its registry answers: an atomic load before it, an atomic
//! maximum and a load after.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::store::{Error, ErrorKind};

/// How often a request waiting for a probe's verdict looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// The health of one registry (`host[:port]`), shared by all its clients.
pub(crate) struct Health {
    registry: String,
    /// `--stall-timeout`: a probe's deadline, and how long an unanswered probe is not repeated.
    deadline: Duration,
    /// The origin of the instants kept as numbers below.
    epoch: Instant,
    /// When the registry last answered, in nanoseconds since `epoch`, plus one (0: never).
    last_answer: AtomicU64,
    /// Set while requests must consult `state`: a probe is out, or the registry is down.
    gate: AtomicBool,
    state: Mutex<State>,
    verdict: Condvar,
}

#[derive(Default)]
struct State {
    phase: Phase,
    /// When the silence began (the first counted unanswered request was sent) and what that
    /// request met.
    silence: Option<(SystemTime, String)>,
    /// The down line was printed for this silence.
    announced: bool,
    /// When the last probe went unanswered.
    probe_failed: Option<Instant>,
    /// A new pass may probe the (down) registry once.
    probe_due: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    #[default]
    Up,
    /// A probe is out; requests wait for its verdict.
    Probing,
    Down,
}

/// Sends the probe: `Ok` when the registry answered anything, the error when it did not.
pub(crate) type Probe<'a> = &'a dyn Fn() -> Result<(), Error>;

impl Health {
    pub fn new(registry: &str, deadline: Duration) -> Health {
        Health {
            registry: registry.to_string(),
            deadline,
            epoch: Instant::now(),
            last_answer: AtomicU64::new(0),
            gate: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            verdict: Condvar::new(),
        }
    }

    /// The current instant, as kept in `last_answer`.
    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Whether the registry answered anything after `sent`.
    fn answered_since(&self, sent: Instant) -> bool {
        self.last_answer.load(Ordering::Acquire) > self.stamp(sent)
    }

    /// Before a request: `Ok` to send it, or the error to fail it with at once. Waits while a
    /// probe is out; runs `probe` itself when a new pass asks for one.
    pub fn admit(&self, what: &str, probe: Probe) -> Result<(), Error> {
        if !self.gate.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut st = self.state.lock();
        loop {
            match st.phase {
                Phase::Up => return Ok(()),
                Phase::Probing => {
                    if crate::stop::requested() {
                        return Err(Error::new(&self.registry, what, ErrorKind::Interrupted));
                    }
                    self.verdict.wait_for(&mut st, STOP_CHECK);
                }
                Phase::Down if st.probe_due => {
                    st.probe_due = false;
                    st.phase = Phase::Probing;
                    drop(st);
                    self.probe(probe);
                    st = self.state.lock();
                }
                Phase::Down => {
                    let (since, cause) = st.silence.clone().unwrap_or_else(|| (SystemTime::now(), String::new()));
                    let kind = ErrorKind::Unreachable { since, cause };
                    return Err(Error { exhausted: true, ..Error::new(&self.registry, what, kind) });
                }
            }
        }
    }

    /// The registry answered a request (whatever the status).
    pub fn answered(&self) {
        self.last_answer.fetch_max(self.stamp(Instant::now()), Ordering::AcqRel);
        if self.gate.load(Ordering::Acquire) {
            let mut st = self.state.lock();
            // A probe that is out gives its own verdict, which weighs this answer.
            if st.phase == Phase::Down {
                self.bring_up(&mut st);
            }
        }
    }

    /// A request sent at `sent` got no answer (`e`): when it counts, probe the registry now
    /// (this thread), unless a probe is out or it is down already.
    pub fn unanswered(&self, sent: Instant, e: &Error, probe: Probe) {
        if self.answered_since(sent) {
            return;
        }
        let mut st = self.state.lock();
        if st.phase != Phase::Up || self.answered_since(sent) {
            return;
        }
        let began = SystemTime::now().checked_sub(sent.elapsed()).unwrap_or_else(SystemTime::now);
        st.silence = Some((began, e.kind.to_string()));
        st.phase = Phase::Probing;
        self.gate.store(true, Ordering::Release);
        drop(st);
        log::debug!("{}: no answer ({e}); asking whether it answers at all", self.registry);
        self.probe(probe);
    }

    /// The start of another pass: a down registry may be probed once more, unless its last
    /// probe went unanswered less than the deadline ago.
    pub fn new_pass(&self) {
        let mut st = self.state.lock();
        if st.phase == Phase::Down && st.probe_failed.is_none_or(|t| t.elapsed() >= self.deadline) {
            st.probe_due = true;
        }
    }

    /// Send the probe (the phase is `Probing`, set by the caller) and give the verdict.
    fn probe(&self, probe: Probe) {
        let sent = Instant::now();
        // The verdict must come whatever the probe does: requests are waiting for it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe)).unwrap_or_else(|_| {
            Err(Error::new(&self.registry, "GET /v2/", ErrorKind::Invalid("the probe failed".into())))
        });
        if outcome.is_ok() {
            self.last_answer.fetch_max(self.stamp(Instant::now()), Ordering::AcqRel);
        }
        let mut st = self.state.lock();
        match outcome {
            Err(e) if !self.answered_since(sent) => {
                st.phase = Phase::Down;
                st.probe_failed = Some(Instant::now());
                let (since, cause) = st.silence.clone().unwrap_or_else(|| (SystemTime::now(), e.kind.to_string()));
                if st.announced {
                    log::info!("{}: still not answering ({e})", self.registry);
                } else {
                    st.announced = true;
                    let down = ErrorKind::Unreachable { since, cause };
                    log::warn!(
                        "{}: {down}; its requests fail at once until it answers again (each --retries pass asks it \
                         once)",
                        self.registry
                    );
                }
            }
            _ => self.bring_up(&mut st),
        }
        drop(st);
        self.verdict.notify_all();
    }

    fn bring_up(&self, st: &mut State) {
        if st.announced {
            log::info!("{}: answering again; its requests resume", self.registry);
        }
        *st = State::default();
        self.gate.store(false, Ordering::Release);
        self.verdict.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    fn silent() -> Error {
        Error::new("r", "GET /v2/", ErrorKind::Stalled("no answer".into()))
    }

    fn is_down(h: &Health) -> bool {
        matches!(h.admit("op", &|| Ok(())), Err(Error { kind: ErrorKind::Unreachable { .. }, exhausted: true, .. }))
    }

    #[test]
    fn an_unanswered_request_and_probe_bring_it_down_until_a_pass_finds_it_answering() {
        let h = Health::new("r", Duration::ZERO);
        let probes = Cell::new(0);
        let dead = || {
            probes.set(probes.get() + 1);
            Err(silent())
        };
        h.unanswered(Instant::now(), &silent(), &dead);
        assert_eq!(probes.get(), 1);
        assert!(is_down(&h), "down after a request and its probe went unanswered");
        assert!(is_down(&h), "and stays so within the pass, probing no more");
        assert_eq!(probes.get(), 1);
        let e = h.admit("GET manifest a:v1", &dead).unwrap_err();
        assert!(e.to_string().starts_with("r: GET manifest a:v1: not answering since "), "{e}");
        assert!(e.to_string().ends_with("(stalled: no answer)"), "the first cause: {e}");
        h.new_pass();
        assert!(h.admit("op", &dead).is_err(), "a pass probes once");
        assert_eq!(probes.get(), 2);
        h.new_pass();
        assert!(h.admit("op", &|| Ok(())).is_ok(), "the probe answers: up again");
        assert!(h.admit("op", &dead).is_ok(), "and it stays up: no more probes");
        assert_eq!(probes.get(), 2);
    }

    #[test]
    fn an_answered_probe_changes_nothing() {
        let h = Health::new("r", Duration::ZERO);
        h.unanswered(Instant::now(), &silent(), &|| Ok(()));
        assert!(h.admit("op", &|| panic!("no probe while up")).is_ok());
    }

    #[test]
    fn a_request_that_waited_while_others_were_answered_does_not_count() {
        let h = Health::new("r", Duration::ZERO);
        let sent = Instant::now();
        h.answered();
        h.unanswered(sent, &silent(), &|| panic!("no probe: the registry answered meanwhile"));
        assert!(h.admit("op", &|| panic!("no probe")).is_ok());
    }

    #[test]
    fn a_probe_unanswered_moments_ago_is_not_repeated_by_the_next_pass() {
        let h = Health::new("r", Duration::from_secs(600));
        h.unanswered(Instant::now(), &silent(), &|| Err(silent()));
        h.new_pass();
        assert!(is_down(&h), "no new probe within the deadline of the last one");
    }

    #[test]
    fn an_answer_to_an_earlier_request_brings_it_up() {
        let h = Health::new("r", Duration::ZERO);
        h.unanswered(Instant::now(), &silent(), &|| Err(silent()));
        assert!(is_down(&h));
        h.answered();
        assert!(h.admit("op", &|| panic!("up: no probe")).is_ok());
    }

    #[test]
    fn requests_wait_for_the_verdict_of_a_probe_that_is_out() {
        let h = Arc::new(Health::new("r", Duration::ZERO));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let prober = {
            let h = h.clone();
            std::thread::spawn(move || {
                h.unanswered(Instant::now(), &silent(), &|| {
                    rx.recv().ok();
                    Ok(())
                })
            })
        };
        while !h.gate.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let waiter = {
            let h = h.clone();
            std::thread::spawn(move || h.admit("op", &|| panic!("one probe at a time")).is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a request waits while the probe is out");
        tx.send(()).unwrap();
        assert!(waiter.join().unwrap(), "and goes once it answered");
        prober.join().unwrap();
    }
}
