//! When to try again, and how long to wait: bounded attempts, exponential back-off with full
//! jitter, `Retry-After` honoured but capped.
//!
//! Full jitter (sleep a random time in `[0, min(cap, base·2^attempt)]`) spreads the retries of
//! many workers hitting the same struggling registry, instead of having them return in step.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Attempts of one operation in total, the first included.
pub const ATTEMPTS: u32 = 4;
const BASE: Duration = Duration::from_millis(400);
const CAP: Duration = Duration::from_secs(8);
/// The longest `Retry-After` we wait for; a longer one is cut to this, with a log line.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// No retry starts after this long since the first attempt.
const TOTAL: Duration = Duration::from_secs(300);

/// The retry state of one operation.
pub struct Backoff {
    attempt: u32,
    started: Instant,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { attempt: 1, started: Instant::now() }
    }

    /// The attempt about to run or running, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After a transient failure: `Some(wait)` when another attempt is allowed. `hint` is the
    /// server's `Retry-After`.
    pub fn next(&mut self, hint: Option<Duration>, what: &dyn std::fmt::Display) -> Option<Duration> {
        if self.attempt >= ATTEMPTS || self.started.elapsed() >= TOTAL {
            return None;
        }
        let wait = match hint {
            Some(h) if h > RETRY_AFTER_CAP => {
                log::warn!(
                    "{what}: the server asks to retry after {}s; waiting {}s",
                    h.as_secs(),
                    RETRY_AFTER_CAP.as_secs()
                );
                RETRY_AFTER_CAP
            }
            Some(h) => h,
            None => jitter(CAP.min(BASE * 2u32.pow(self.attempt - 1))),
        };
        self.attempt += 1;
        Some(wait)
    }
}

/// A uniformly random duration in `[0, max]`. std's `RandomState` is randomly seeded per
/// instance, which is all the randomness back-off needs.
fn jitter(max: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let nanos = max.as_nanos() as u64;
    Duration::from_nanos(if nanos == 0 { 0 } else { r % (nanos + 1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_jittered() {
        let mut b = Backoff::new();
        let mut waits = Vec::new();
        while let Some(w) = b.next(None, &"op") {
            waits.push(w);
        }
        assert_eq!(waits.len() as u32, ATTEMPTS - 1);
        for (i, w) in waits.iter().enumerate() {
            assert!(*w <= BASE * 2u32.pow(i as u32), "{w:?}");
        }
        let mut b = Backoff::new();
        assert_eq!(b.next(Some(Duration::from_secs(2)), &"op"), Some(Duration::from_secs(2)));
        assert_eq!(b.next(Some(Duration::from_secs(3600)), &"op"), Some(RETRY_AFTER_CAP));
    }
}
