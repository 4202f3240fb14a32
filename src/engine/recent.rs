//! A map that remembers what was used recently, in bounded memory: two generations of at most
//! `cap` entries each. A hit moves the entry to the young generation; when the young one is
//! full it becomes the old one, and the old one is forgotten. An entry used at least once per
//! `cap` insertions is never forgotten; one not used for that long may be.
//!
//! Why: the blob ledger remembers where each blob is once it is there, which saves a request
//! (and, across repositories, a second stream) when another image needs it. Remembering every
//! blob of a run of 100,000 tags would make memory grow with the tags; forgetting one costs
//! at most one `HEAD` (or one stream into a repository that could have mounted it).

use std::collections::HashMap;
use std::hash::Hash;

pub struct Recent<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(cap: usize) -> Recent<K, V> {
        Recent { young: HashMap::new(), old: HashMap::new(), cap: cap.max(1) }
    }

    /// The entry for `key`, if remembered (a hit: it is kept young).
    pub fn get(&mut self, key: &K) -> Option<&mut V>
    where
        K: Clone,
    {
        if !self.young.contains_key(key) {
            let v = self.old.remove(key)?;
            self.insert(key.clone(), v);
        }
        self.young.get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) {
        self.old.remove(&key);
        if self.young.len() >= self.cap && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    /// How many entries are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn memory_is_bounded_and_what_is_used_stays() {
        let mut r = Recent::new(4);
        r.insert("hot", 0);
        for i in 1..100 {
            r.insert(if i % 2 == 0 { "even" } else { "odd" }, i);
            r.insert(Box::leak(format!("k{i}").into_boxed_str()), i);
            assert!(r.get(&"hot").is_some(), "used every round: never forgotten");
            assert!(r.len() <= 8, "two generations of 4 at most, {} entries", r.len());
        }
        assert!(r.get(&"k1").is_none(), "not used since: forgotten");
        assert_eq!(r.get(&"k99"), Some(&mut 99));
        assert_eq!(r.remove(&"hot"), Some(0));
        assert!(r.get(&"hot").is_none());
    }
}
