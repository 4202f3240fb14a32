//! Choosing tags: a semver range, the latest N, excludes — applied to the tags a rule lists,
//! before any image is planned, deterministically (the same tags in give the same tags out).
//!
//! Tags are read as versions leniently, because registries are full of `1.27` and `v3`: an
//! optional `v`, then `MAJOR[.MINOR[.PATCH]]` (missing parts are 0), then semver's
//! `-prerelease` and `+build`. Ranges use the `semver` crate's rules (`>=1.20, <2`, `~1.27`,
//! `^3`; a pre-release matches only a comparator naming a pre-release of the same version).
//! Excludes win over everything: an excluded tag is never copied, and `latest N` counts only
//! tags that are not excluded.

use std::cmp::Ordering;

use regex::Regex;
use semver::{Version, VersionReq};

/// How `latest` orders tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatestBy {
    /// Highest version first; tags that are no version are never "latest".
    #[default]
    Semver,
    /// Newest image config `created` first (one config read per candidate).
    Created,
}

/// The selection keys of a rule.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The range as written, and parsed.
    pub semver: Option<(String, VersionReq)>,
    pub latest: Option<usize>,
    pub latest_by: LatestBy,
    pub exclude: Vec<Regex>,
}

/// A tag read as a version (see the module doc).
pub fn version(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let end = t.find(['-', '+']).unwrap_or(t.len());
    let (core, rest) = t.split_at(end);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = parts.join(".");
    for _ in parts.len()..3 {
        full.push_str(".0");
    }
    Version::parse(&format!("{full}{rest}")).ok()
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.semver.is_none() && self.latest.is_none() && self.exclude.is_empty()
    }

    /// Keep the selected `tags`, in their listed order. `created` gives an image's creation
    /// time (seconds since the epoch) for `latest_by: created`. Returns the kept tags and what
    /// was done, for the log line.
    pub fn apply<E>(
        &self,
        tags: Vec<String>,
        mut created: impl FnMut(&str) -> Result<Option<i64>, E>,
    ) -> Result<(Vec<String>, String), E> {
        let mut notes = Vec::new();
        let mut kept: Vec<String> = tags;
        if let Some((text, req)) = &self.semver {
            kept.retain(|t| version(t).is_some_and(|v| req.matches(&v)));
            notes.push(format!("semver {text}"));
        }
        if !self.exclude.is_empty() {
            let before = kept.len();
            kept.retain(|t| !self.exclude.iter().any(|re| re.is_match(t)));
            notes.push(format!("{} excluded", before - kept.len()));
        }
        if let Some(n) = self.latest {
            let mut ranked: Vec<(String, Rank)> = Vec::new();
            for t in &kept {
                let rank = match self.latest_by {
                    LatestBy::Semver => match version(t) {
                        Some(v) => Rank::Version(v),
                        None => continue,
                    },
                    LatestBy::Created => Rank::Created(created(t)?),
                };
                ranked.push((t.clone(), rank));
            }
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
            let top: std::collections::HashSet<String> = ranked.into_iter().take(n).map(|(t, _)| t).collect();
            kept.retain(|t| top.contains(t));
            let by = if self.latest_by == LatestBy::Created { " by created" } else { "" };
            notes.push(format!("latest {n}{by}"));
        }
        Ok((kept, notes.join("; ")))
    }
}

/// What `latest` orders by.
#[derive(PartialEq, Eq)]
enum Rank {
    Version(Version),
    /// Unknown creation times sort last.
    Created(Option<i64>),
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Rank::Version(a), Rank::Version(b)) => a.cmp(b),
            (Rank::Created(a), Rank::Created(b)) => a.cmp(b),
            (Rank::Version(_), Rank::Created(_)) => Ordering::Greater,
            (Rank::Created(_), Rank::Version(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `…+02:00`), as
/// image configs write `created`.
pub fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        b'+' | b'-' => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn select(sel: &Selection, t: &str) -> Vec<String> {
        sel.apply::<()>(tags(t), |_| Ok(None)).unwrap().0
    }

    fn range(r: &str) -> Option<(String, VersionReq)> {
        Some((r.to_string(), VersionReq::parse(r).unwrap()))
    }

    #[test]
    fn versions_are_read_leniently() {
        assert_eq!(version("1.27"), Some(Version::new(1, 27, 0)));
        assert_eq!(version("v3"), Some(Version::new(3, 0, 0)));
        assert_eq!(version("1.2.3-rc.1").unwrap().pre.as_str(), "rc.1");
        for not in ["latest", "1.2.3.4", "1.2.x", "", "v", "1..2", "-1"] {
            assert_eq!(version(not), None, "{not}");
        }
    }

    #[test]
    fn range_excludes_and_latest() {
        let all = "1.19.0 1.20.0 1.21.0-rc.1 1.21.0 v1.22.1 2.0.0 latest 1.22.0-debug";
        let s = Selection { semver: range(">=1.20, <2"), ..Default::default() };
        assert_eq!(select(&s, all), tags("1.20.0 1.21.0 v1.22.1"));
        let s = Selection { latest: Some(2), ..Default::default() };
        assert_eq!(select(&s, all), tags("v1.22.1 2.0.0"));
        // Excluded tags do not count towards latest.
        // (A pre-release is a version: 1.22.0-debug ranks above 1.21.0.)
        let s = Selection { latest: Some(2), exclude: vec![Regex::new("^2").unwrap()], ..Default::default() };
        assert_eq!(select(&s, all), tags("v1.22.1 1.22.0-debug"));
        let s = Selection {
            exclude: vec![Regex::new("-rc").unwrap(), Regex::new("-debug$").unwrap()],
            ..Default::default()
        };
        assert_eq!(select(&s, all), tags("1.19.0 1.20.0 1.21.0 v1.22.1 2.0.0 latest"));
        // Ties (1.27 = 1.27.0): the greater string first.
        let s = Selection { latest: Some(1), ..Default::default() };
        assert_eq!(select(&s, "1.27 1.27.0"), tags("1.27.0"));
    }

    #[test]
    fn latest_by_created() {
        let s = Selection { latest: Some(2), latest_by: LatestBy::Created, ..Default::default() };
        let times = [("a", Some(3)), ("b", None), ("c", Some(9)), ("d", Some(5))];
        let (kept, note) =
            s.apply::<()>(tags("a b c d"), |t| Ok(times.iter().find(|(n, _)| *n == t).unwrap().1)).unwrap();
        assert_eq!(kept, tags("c d"));
        assert_eq!(note, "latest 2 by created");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(rfc3339("2024-01-01T02:00:00.123456789+02:00"), Some(1_704_067_200));
        assert_eq!(rfc3339("yesterday"), None);
    }
}
