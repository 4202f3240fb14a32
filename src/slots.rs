//! Per-key once-slots: the first worker to need what is known about a key (a registry's
//! referrers API, a repository's tag list, a manifest read for several destinations, a token
//! for a scope set) finds it out while holding that key's slot, and workers asking about the
//! same key at that moment wait for its answer instead of asking too. Other keys are never held
//! up: there is no run-wide lock across a network call (go-containerregistry's per-digest
//! `sync.Once` in `pusher.go`). A leaf module, so that the registry client and the engine share
//! it.
//!
//! Invariant: the map's own lock is held only to find or make a slot, never while a slot is
//! held; a slot's lock is held for at most one lookup of its key.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

/// What is known about one key: `None` until someone found out.
pub type Slot<V> = Arc<Mutex<Option<V>>>;

pub struct Slots<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K, V> Default for Slots<K, V> {
    fn default() -> Self {
        Slots { slots: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Slots<K, V> {
    /// The slot of `key` (made empty on first use). Lock it to read or fill it.
    pub fn slot(&self, key: &K) -> Slot<V> {
        let mut slots = self.slots.lock();
        match slots.get(key) {
            Some(s) => s.clone(),
            None => slots.entry(key.clone()).or_default().clone(),
        }
    }

    /// The value of `key`, found out by `fill` when nobody has yet: `fill` runs with the key's
    /// slot held. A failure, or `None`, leaves the slot empty for the next one to try.
    pub fn get_or_fill<E>(&self, key: &K, fill: impl FnOnce() -> Result<Option<V>, E>) -> Result<Option<V>, E> {
        let slot = self.slot(key);
        let mut held = slot.lock();
        if let Some(v) = held.as_ref() {
            return Ok(Some(v.clone()));
        }
        let found = fill()?;
        held.clone_from(&found);
        Ok(found)
    }

    /// Every key whose value is known, with it. The map's lock is let go before any slot is
    /// looked at.
    pub fn known(&self) -> Vec<(K, V)> {
        let slots: Vec<(K, Slot<V>)> = self.slots.lock().iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        slots.into_iter().filter_map(|(k, s)| s.lock().clone().map(|v| (k, v))).collect()
    }

    /// Record what is known about `key`.
    pub fn set(&self, key: &K, value: V) {
        *self.slot(key).lock() = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn one_lookup_per_key_and_other_keys_are_not_held_up() {
        let slots: Slots<&str, u32> = Slots::default();
        let lookups = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let v = slots.get_or_fill::<()>(&"a", || {
                        lookups.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        Ok(Some(7))
                    });
                    assert_eq!(v, Ok(Some(7)));
                });
            }
            // While "a" is being looked up, "b" answers at once.
            std::thread::sleep(Duration::from_millis(20));
            let started = std::time::Instant::now();
            assert_eq!(slots.get_or_fill::<()>(&"b", || Ok(Some(1))), Ok(Some(1)));
            assert!(started.elapsed() < Duration::from_millis(80), "b waited for a's lookup");
        });
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_lookup_leaves_the_slot_for_the_next_one() {
        let slots: Slots<u8, u8> = Slots::default();
        assert_eq!(slots.get_or_fill(&1, || Err("down")), Err("down"));
        assert_eq!(slots.get_or_fill::<()>(&1, || Ok(None)), Ok(None));
        assert_eq!(slots.get_or_fill::<()>(&1, || Ok(Some(3))), Ok(Some(3)));
        slots.set(&2, 9);
        assert_eq!(slots.get_or_fill::<()>(&2, || Ok(Some(0))), Ok(Some(9)));
    }
}
