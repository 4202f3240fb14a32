//! Immutable tags (`immutable`, `--immutable`, `--immutable-tags`): the user's promise that a
//! tag, once at the destination, never points at anything else. Such a tag is taken as in sync
//! from the destination's tag list alone — no manifest request on either side, its referrers
//! not looked up — so a no-op over release tags costs one tag list per repository. The price is
//! the contract: a source that moves such a tag is not followed (`--force` and `--verify` do
//! not take the promise). ocync's `immutable_tags` makes the same trade.

use regex::Regex;

/// Which destination tags are immutable.
#[derive(Clone, Debug)]
pub enum Immutable {
    /// Every tag (`immutable: true`, `--immutable`).
    All,
    /// The tags this regex matches (`immutable: '^v?\d+\.\d+\.\d+$'`, `--immutable-tags`).
    Matching(Regex),
}

impl Immutable {
    /// The tags `text` (a regex) matches; an invalid regex is refused with why.
    pub fn matching(text: &str) -> Result<Immutable, String> {
        Regex::new(text).map(Immutable::Matching).map_err(|e| format!("invalid regex /{text}/: {e}"))
    }

    /// Whether the destination tag `tag` is immutable.
    pub fn covers(&self, tag: &str) -> bool {
        match self {
            Immutable::All => true,
            Immutable::Matching(re) => re.is_match(tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_the_tags_a_regex_matches() {
        assert!(Immutable::All.covers("latest"));
        let semver = Immutable::matching(r"^v?\d+\.\d+\.\d+$").unwrap();
        assert!(semver.covers("v1.2.3") && semver.covers("1.2.3"));
        assert!(!semver.covers("latest") && !semver.covers("1.2.3-rc1"));
        assert!(Immutable::matching("(").unwrap_err().contains("invalid regex"));
    }
}
