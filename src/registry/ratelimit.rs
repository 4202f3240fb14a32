//! Pulls against a rate limit (Docker Hub): the budget a registry announces is read from every
//! manifest answer, and when it is nearly spent the manifest GETs that count against it are
//! spaced out so that the budget lasts until it refills — a run that slows down and says so,
//! rather than one that collects 429s and fails images.
//!
//! Headers read: `RateLimit-Remaining: 76;w=21600` and `RateLimit-Limit: 100;w=21600`
//! (Docker Hub; `w` is the window in seconds), and `RateLimit-Reset` (seconds until the budget
//! refills, sent by some registries). With a reset time the remaining pulls are spread over it;
//! without one, the window's refill rate (window / limit) paces them.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Below this many pulls left, requests are paced.
const LOW: u64 = 10;
/// A long wait is logged again after this long (and a stop ends it at any time).
const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Budget {
    remaining: u64,
    limit: Option<u64>,
    window: Option<Duration>,
    /// When the budget refills, when the registry says.
    reset: Option<Instant>,
}

/// One registry's announced budget.
#[derive(Default)]
pub struct RateLimit {
    budget: Mutex<Option<Budget>>,
    /// When the last paced request went out (pacing is shared by all workers).
    last: Mutex<Option<Instant>>,
}

/// `76;w=21600` → (76, Some(21600 s)).
fn parse(value: &str) -> Option<(u64, Option<Duration>)> {
    let mut parts = value.split(';');
    let n = parts.next()?.trim().parse().ok()?;
    let w = parts.find_map(|p| p.trim().strip_prefix("w=")?.parse().ok()).map(Duration::from_secs);
    Some((n, w))
}

impl RateLimit {
    /// Read the budget from an answer's headers (`get(name)` returns a header's value).
    pub fn observe(&self, registry: &str, get: impl Fn(&str) -> Option<String>) {
        let Some((remaining, window)) = get("ratelimit-remaining").as_deref().and_then(parse) else { return };
        let limit = get("ratelimit-limit").as_deref().and_then(parse);
        let reset = get("ratelimit-reset")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|s| Instant::now().checked_add(Duration::from_secs(s.min(7 * 24 * 3600))));
        let mut budget =
            Budget { remaining, limit: limit.map(|l| l.0), window: window.or(limit.and_then(|l| l.1)), reset };
        let mut current = self.budget.lock();
        // Answers of concurrent requests arrive in any order: within one window, the lowest
        // count (ours included, see `delay`) is the truest.
        if let Some(old) = *current {
            let same_window = match (old.reset, budget.reset) {
                (Some(a), Some(b)) => a.max(b) - a.min(b) < Duration::from_millis(1500),
                (None, None) => true,
                _ => false,
            };
            if same_window {
                budget.remaining = budget.remaining.min(old.remaining);
            }
        }
        let before = current.replace(budget);
        if budget.remaining <= LOW && before.is_none_or(|b| b.remaining > LOW) {
            let of = budget.limit.map(|l| format!(" of {l}")).unwrap_or_default();
            log::warn!(
                "{registry}: {}{of} pulls left in its rate-limit window; pacing manifest requests",
                budget.remaining
            );
        }
    }

    /// How long to wait before the next request that counts against the budget. Each call
    /// spends one pull of the budget as last announced (the registry's next answer corrects
    /// it), so workers asking at the same moment get successive slots: the pulls left are spread
    /// until the budget refills, and with none left the next waits for the refill.
    pub fn delay(&self) -> Duration {
        let mut guard = self.budget.lock();
        let Some(b) = guard.as_mut() else { return Duration::ZERO };
        let left = b.remaining;
        b.remaining = left.saturating_sub(1);
        if left > LOW {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let refill = match (b.window, b.limit) {
            (Some(w), Some(l)) if l > 0 => Some(w / u32::try_from(l).unwrap_or(u32::MAX)),
            _ => None,
        };
        let mut last = self.last.lock();
        let next = match (left, b.reset) {
            // Nothing left: the next pull is when the budget refills, which starts a new one.
            (0, Some(reset)) => {
                let at = reset.max(now);
                b.remaining = b.limit.unwrap_or(1).saturating_sub(1);
                b.reset = b.window.and_then(|w| at.checked_add(w));
                at
            }
            (_, Some(reset)) => {
                let interval = reset.saturating_duration_since(now) / u32::try_from(left).unwrap_or(u32::MAX);
                last.map_or(now, |t| t + interval).max(now)
            }
            (_, None) => match refill {
                Some(interval) => last.map_or(now, |t| t + interval).max(now),
                None => now,
            },
        };
        *last = Some(next);
        next - now
    }

    /// Wait for the next request's slot (see [`RateLimit::delay`]), saying so every
    /// [`MAX_WAIT`] at most; `false` when a stop ended the wait.
    pub fn wait(&self, registry: &str, what: &str) -> bool {
        let mut left = self.delay();
        while !left.is_zero() {
            let step = left.min(MAX_WAIT);
            log::info!("{registry}: waiting {left:.0?} before {what}, to stay within its rate limit");
            if !crate::stop::sleep(step) {
                return false;
            }
            left -= step;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(h: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn values() {
        assert_eq!(parse("76;w=21600"), Some((76, Some(Duration::from_secs(21600)))));
        assert_eq!(parse(" 5 "), Some((5, None)));
        assert_eq!(parse("x;w=1"), None);
    }

    #[test]
    fn plenty_left_means_no_wait() {
        let r = RateLimit::default();
        assert_eq!(r.delay(), Duration::ZERO);
        r.observe("r", headers(&[("ratelimit-remaining", "76;w=21600"), ("ratelimit-limit", "100;w=21600")]));
        assert_eq!(r.delay(), Duration::ZERO);
    }

    #[test]
    fn nearly_spent_budget_is_spread_until_it_refills() {
        let r = RateLimit::default();
        r.observe(
            "r",
            headers(&[("ratelimit-remaining", "2"), ("ratelimit-limit", "3;w=6"), ("ratelimit-reset", "6")]),
        );
        // 2 pulls left in 6 s: one now, the other spread before the refill; then none left:
        // the next waits for the refill (6 s), which starts a new budget.
        assert_eq!(r.delay(), Duration::ZERO);
        let second = r.delay();
        assert!(second > Duration::from_millis(2500) && second <= Duration::from_secs(6), "{second:?}");
        let third = r.delay();
        // (Slots are instants; each delay is measured from its own "now": allow for the clock.)
        let slack = Duration::from_millis(50);
        assert!(third + slack >= second && third > Duration::from_millis(5500), "{third:?}");
        let fourth = r.delay();
        assert!(fourth + slack >= third, "{fourth:?} after {third:?}");
        // A late answer from an earlier request cannot raise the count within the window.
        let r = RateLimit::default();
        r.observe("r", headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "60")]));
        r.observe("r", headers(&[("ratelimit-remaining", "1"), ("ratelimit-reset", "60")]));
        assert!(r.delay() > Duration::from_secs(59));
        // Without a reset time: the window's refill rate.
        let r = RateLimit::default();
        r.observe("r", headers(&[("ratelimit-remaining", "2;w=21600"), ("ratelimit-limit", "100;w=21600")]));
        r.delay();
        let d = r.delay();
        assert!(d > Duration::from_secs(215) && d <= Duration::from_secs(216), "{d:?}");
    }

    #[test]
    fn absurd_headers_do_not_panic() {
        let r = RateLimit::default();
        let huge = u64::MAX.to_string();
        r.observe(
            "r",
            headers(&[("ratelimit-remaining", "1"), ("ratelimit-limit", &huge), ("ratelimit-reset", &huge)]),
        );
        r.delay();
        r.delay();
        r.delay();
    }
}
