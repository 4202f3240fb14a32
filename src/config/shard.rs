//! `--shard INDEX/COUNT`: one of COUNT machines syncs its share of the rules, and together they
//! sync every image exactly once — a Kubernetes Indexed Job, each pod reading the same files.
//!
//! The share is chosen by *destination repository* (a stable hash of `registry/name`), so one
//! repository's tags, and the layers they share, stay on one shard: no two pods upload the same
//! blobs into the same repository, and cross-repository mounts still find them. The choice
//! depends only on the files, never on the order of the rules or on what the registries say, so
//! every invocation splits the same way, and a shard never even lists another shard's tags.

use sha2::{Digest as _, Sha256};

use super::env::Env;
use crate::reference::Repository;

/// This machine's share: index `index` (from 0) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parse `INDEX/COUNT` (`0 <= INDEX < COUNT`).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/3");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard `flag` asks for, else the one a Kubernetes Indexed Job's environment gives
    /// (`JOB_COMPLETION_INDEX`, set by Kubernetes, and `JOB_COMPLETIONS`, set in the manifest to
    /// the Job's `completions`). `None`: no sharding.
    pub fn from_flag_or_env(flag: Option<&str>, env: &Env) -> Result<Option<Shard>, String> {
        if let Some(f) = flag {
            return Shard::parse(f).map(Some);
        }
        let index = env.get("JOB_COMPLETION_INDEX").filter(|v| !v.trim().is_empty());
        let count = env.get("JOB_COMPLETIONS").filter(|v| !v.trim().is_empty());
        match (index, count) {
            (Some(i), Some(n)) => Shard::parse(&format!("{}/{}", i.trim(), n.trim()))
                .map(Some)
                .map_err(|e| format!("JOB_COMPLETION_INDEX={i} and JOB_COMPLETIONS={n}: {e}")),
            (Some(_), None) => {
                log::warn!(
                    "JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not: syncing every rule (set JOB_COMPLETIONS \
                     to the Job's completions, or pass --shard INDEX/COUNT)"
                );
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Whether images going to `dst` are this shard's.
    pub fn owns(&self, dst: &Repository) -> bool {
        let h = Sha256::digest(format!("{}/{}", dst.location, dst.name).as_bytes());
        let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        n % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_and_count() {
        assert_eq!(Shard::parse("0/3"), Ok(Shard { index: 0, count: 3 }));
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/3", "1/b", "-1/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_repository_has_exactly_one_shard() {
        for count in 1..6 {
            for i in 0..50 {
                let repo = Repository::on_registry("r.example:5000", &format!("team/app{i}"));
                let owners = (0..count).filter(|&index| Shard { index, count }.owns(&repo)).count();
                assert_eq!(owners, 1, "{repo:?} in {count} shards");
            }
        }
    }

    #[test]
    fn environment_of_an_indexed_job() {
        let env = Env::from_pairs(&[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "4")]);
        assert_eq!(Shard::from_flag_or_env(None, &env), Ok(Some(Shard { index: 1, count: 4 })));
        // The flag wins.
        assert_eq!(Shard::from_flag_or_env(Some("0/2"), &env), Ok(Some(Shard { index: 0, count: 2 })));
        let half = Env::from_pairs(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(Shard::from_flag_or_env(None, &half), Ok(None));
        let wrong = Env::from_pairs(&[("JOB_COMPLETION_INDEX", "4"), ("JOB_COMPLETIONS", "4")]);
        assert!(Shard::from_flag_or_env(None, &wrong).unwrap_err().contains("JOB_COMPLETION_INDEX=4"));
        assert_eq!(Shard::from_flag_or_env(None, &Env::from_pairs(&[])), Ok(None));
    }
}
