//! What one registry accepts for blob uploads, learned from its answers once per run and used
//! for every later blob and repository of it — instead of each blob rediscovering it.
//!
//! Registries differ here in documented ways (the references are at each place that reads the
//! answer, in `uploads.rs`): Artifact Registry refuses `PATCH` (single requests only),
//! Artifactory and some proxies refuse single-request uploads (chunks only), GHCR caps a `PATCH`
//! at 4 MiB, ECR does not honour cross-repository mounts unless enabled. What is learned:
//!
//! - whether single-request uploads and `PATCH` uploads are refused (`No`) or have worked
//!   (`Yes`); the way a blob goes is the configured one unless it is known refused;
//! - the largest `PATCH` the registry took after refusing a larger one;
//! - whether a cross-repository mount was ever honoured.
//!
//! Invariants (one lock, [`Learned::state`], held only for these few fields, never across a
//! request): a fact goes from unknown to known once and is never forgotten — `No` for a way of
//! uploading is not revised (so a blob switches ways at most twice), the chunk limit only
//! shrinks, a mount once honoured stays honoured; at most one single-request upload of a body
//! over 1 MiB and larger than any the registry took is *probing* at a time, and it stops
//! probing as soon as the registry takes its body or answers (what it taught recorded first), so an early refusal (a `413` before
//! the body) is met by one upload per registry, not by every worker at once.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Single-request bodies from this size on may be refused for their size: nginx's default
/// `client_max_body_size` (1m) is the smallest such limit in the field.
pub(crate) const PROBE_FROM: u64 = 1024 * 1024;

/// How a blob is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    /// One `PUT ?digest=` carrying the blob.
    Single,
    /// `PATCH` chunks, then an empty `PUT ?digest=`.
    Chunked,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Single => "single-request",
            Way::Chunked => "chunked (PATCH)",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Known {
    #[default]
    Unknown,
    Yes,
    No,
}

#[derive(Default)]
struct State {
    single: Known,
    chunked: Known,
    /// The largest single-request body the registry took: a larger one may still be refused
    /// for its size (ACR's ~20 MB), so it probes.
    single_max: Option<u64>,
    /// The largest `PATCH` body the registry is known to take, after refusing a larger one.
    chunk_limit: Option<u64>,
    /// Whether a `PATCH` was answered `201 Created` (ECR) rather than `202 Accepted`.
    patch_201: bool,
    mounts: Known,
    /// A large single-request upload is testing whether the registry takes them.
    probing: bool,
}

pub(crate) struct Learned {
    registry: String,
    /// `chunked_upload: true` in the auth file: `PATCH` first.
    prefer_chunked: bool,
    state: Mutex<State>,
    probed: Condvar,
}

/// The way to send one blob. While it lives and is a probe, other large single-request uploads
/// to the registry wait (see [`Learned::choose`]); [`Choice::accepted`] or drop ends that.
pub(crate) struct Choice<'a> {
    pub way: Way,
    probe: Option<&'a Learned>,
}

impl Choice<'_> {
    /// `way`, whatever was learned (a retry that must go this way).
    pub fn forced(way: Way) -> Choice<'static> {
        Choice { way, probe: None }
    }

    /// The registry took the body (or answered): other uploads need not wait any longer.
    pub fn accepted(&mut self) {
        if let Some(l) = self.probe.take() {
            l.state.lock().probing = false;
            l.probed.notify_all();
        }
    }
}

impl Drop for Choice<'_> {
    fn drop(&mut self) {
        self.accepted();
    }
}

impl Learned {
    pub fn new(registry: &str, prefer_chunked: bool) -> Learned {
        Learned {
            registry: registry.to_string(),
            prefer_chunked,
            state: Mutex::new(State::default()),
            probed: Condvar::new(),
        }
    }

    /// How to send a blob of `size` bytes (`None`: unknown), or `None` when the registry
    /// refused both ways. A large single-request upload (over 1 MiB, and larger than any the
    /// registry took) waits while another one is testing whether the registry takes it.
    pub fn choose(&self, size: Option<u64>) -> Option<Choice<'_>> {
        let size = size.unwrap_or(u64::MAX);
        let large = size >= PROBE_FROM;
        let mut s = self.state.lock();
        loop {
            let way = match (self.prefer_chunked, s.single, s.chunked) {
                (_, Known::No, Known::No) => return None,
                (true, _, Known::Unknown | Known::Yes) | (_, Known::No, _) => Way::Chunked,
                _ => Way::Single,
            };
            if way == Way::Chunked || !large || s.single_max.is_some_and(|m| size <= m) {
                return Some(Choice { way, probe: None });
            }
            if !s.probing {
                s.probing = true;
                return Some(Choice { way, probe: Some(self) });
            }
            // Bounded, so that a stop request is seen; the probe itself has deadlines.
            self.probed.wait_for(&mut s, Duration::from_millis(500));
            if crate::stop::requested() {
                return Some(Choice { way, probe: None });
            }
        }
    }

    /// `way` delivered a blob of `size` bytes.
    pub fn worked(&self, way: Way, size: Option<u64>) {
        let mut s = self.state.lock();
        if way == Way::Single {
            let size = size.unwrap_or(0);
            s.single_max = Some(s.single_max.map_or(size, |m| m.max(size)));
        }
        let known = match way {
            Way::Single => &mut s.single,
            Way::Chunked => &mut s.chunked,
        };
        if *known == Known::Unknown {
            *known = Known::Yes;
            log::debug!("{}: learned: takes {} blob uploads", self.registry, way.name());
        }
    }

    /// The registry refused `way` as such (not the blob): it is not used again in this run.
    /// `false` when it was known refused already (the caller has nothing new to try).
    pub fn refused(&self, way: Way, why: &dyn std::fmt::Display) -> bool {
        let mut s = self.state.lock();
        let known = match way {
            Way::Single => &mut s.single,
            Way::Chunked => &mut s.chunked,
        };
        if *known == Known::No {
            return false;
        }
        *known = Known::No;
        log::info!("{}: refuses {} blob uploads ({why}); not using them again in this run", self.registry, way.name());
        drop(s);
        self.probed.notify_all();
        true
    }

    /// Whether `way` is known to be refused.
    pub fn is_refused(&self, way: Way) -> bool {
        let s = self.state.lock();
        match way {
            Way::Single => s.single == Known::No,
            Way::Chunked => s.chunked == Known::No,
        }
    }

    /// The `PATCH` size to use, `configured` unless the registry refused larger ones.
    pub fn chunk_size(&self, configured: u64) -> u64 {
        let s = self.state.lock();
        s.chunk_limit.map_or(configured, |l| l.min(configured)).max(1)
    }

    /// The registry refused a `PATCH` of `size` bytes as too large; later chunks are at most
    /// `smaller`.
    pub fn chunk_refused(&self, size: u64, smaller: u64) {
        let mut s = self.state.lock();
        if s.chunk_limit.is_none_or(|l| smaller < l) {
            s.chunk_limit = Some(smaller);
            log::info!(
                "{}: refuses {size}-byte PATCH chunks; sending chunks of at most {smaller} bytes from now on",
                self.registry
            );
        }
    }

    /// A `PATCH` was answered `201 Created` rather than `202 Accepted`.
    pub fn patch_answered_201(&self) {
        let mut s = self.state.lock();
        if !s.patch_201 {
            s.patch_201 = true;
            log::debug!("{}: learned: answers PATCH with 201 Created (taken as 202 Accepted)", self.registry);
        }
    }

    /// A cross-repository mount was answered: honoured (`201`) or not (`202`, a plain session).
    pub fn mount_answered(&self, honoured: bool) {
        let mut s = self.state.lock();
        let before = s.mounts;
        s.mounts = match (before, honoured) {
            (_, true) => Known::Yes,
            (Known::Yes, false) => Known::Yes,
            (_, false) => Known::No,
        };
        if before != s.mounts {
            let says = if honoured { "honours" } else { "does not honour" };
            log::debug!("{}: learned: {says} cross-repository blob mounts", self.registry);
        }
    }

    /// `Some(false)` when mounts were asked for and never honoured.
    pub fn mounts_honoured(&self) -> Option<bool> {
        match self.state.lock().mounts {
            Known::Unknown => None,
            Known::Yes => Some(true),
            Known::No => Some(false),
        }
    }

    /// What was learned, for the run report: `(fact, value)` pairs, only the known ones.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let s = self.state.lock();
        let yes_no = |k: Known| match k {
            Known::Unknown => None,
            Known::Yes => Some("accepted".to_string()),
            Known::No => Some("refused".to_string()),
        };
        let mut out = Vec::new();
        if let Some(v) = yes_no(s.single) {
            out.push(("single_request_uploads", v));
        }
        if let Some(v) = yes_no(s.chunked) {
            out.push(("chunked_uploads", v));
        }
        if let Some(l) = s.chunk_limit {
            out.push(("chunk_limit", l.to_string()));
        }
        if s.patch_201 {
            out.push(("patch_status", "201".to_string()));
        }
        match s.mounts {
            Known::Unknown => {}
            Known::Yes => out.push(("mounts", "honoured".to_string())),
            Known::No => out.push(("mounts", "not honoured".to_string())),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_refused_way_is_not_chosen_again_and_both_refused_is_none() {
        let l = Learned::new("r", false);
        assert_eq!(l.choose(Some(10)).map(|c| c.way), Some(Way::Single));
        assert!(l.refused(Way::Single, &"413"));
        assert!(!l.refused(Way::Single, &"413"), "told once");
        assert_eq!(l.choose(Some(1 << 30)).map(|c| c.way), Some(Way::Chunked));
        assert!(l.refused(Way::Chunked, &"405"));
        assert!(l.choose(Some(10)).is_none());
    }

    #[test]
    fn chunked_preferred_falls_back_to_single_when_patch_is_refused() {
        let l = Learned::new("r", true);
        assert_eq!(l.choose(Some(1 << 30)).map(|c| c.way), Some(Way::Chunked));
        l.refused(Way::Chunked, &"405 UNSUPPORTED");
        assert_eq!(l.choose(Some(1 << 30)).map(|c| c.way), Some(Way::Single));
    }

    #[test]
    fn one_large_single_request_probes_at_a_time() {
        let l = Learned::new("r", false);
        let probing = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let c = l.choose(Some(1 << 30)).unwrap();
                    if c.probe.is_some() {
                        let now = probing.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        probing.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // A size the registry took does not probe again; a larger one does (ACR refuses bodies
        // over ~20 MB only).
        l.worked(Way::Single, Some(1 << 30));
        assert!(l.choose(Some(1 << 30)).unwrap().probe.is_none());
        l.worked(Way::Single, Some(10));
        assert!(l.choose(Some(1 << 31)).unwrap().probe.is_some());
    }

    #[test]
    fn waiting_uploads_switch_when_the_probe_is_refused() {
        let l = Learned::new("r", false);
        let probe = l.choose(Some(1 << 30)).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| l.choose(Some(1 << 30)).map(|c| c.way));
            std::thread::sleep(Duration::from_millis(50));
            l.refused(Way::Single, &"413");
            drop(probe);
            assert_eq!(waiter.join().unwrap(), Some(Way::Chunked));
        });
    }

    #[test]
    fn the_chunk_limit_only_shrinks_and_mounts_once_honoured_stay_so() {
        let l = Learned::new("r", false);
        assert_eq!(l.chunk_size(64), 64);
        l.chunk_refused(64, 32);
        l.chunk_refused(64, 48);
        assert_eq!(l.chunk_size(64), 32);
        assert_eq!(l.mounts_honoured(), None);
        l.mount_answered(false);
        assert_eq!(l.mounts_honoured(), Some(false));
        l.mount_answered(true);
        l.mount_answered(false);
        assert_eq!(l.mounts_honoured(), Some(true));
    }
}
