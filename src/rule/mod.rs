//! Rules: what the user asked to be copied, in one place — a rule's two sides and their
//! grammar ([`selector`]), which of the listed tags it takes ([`select`]), the repositories of
//! a namespace, and how a rule pairs each source image with its destination ([`Pair`]).
//!
//! Everything here is pure: the engine lists tags and catalogs and hands them to the rule; the
//! config layer reads files and builds rules with [`Rule::new`], which refuses a rule that
//! cannot mean anything before any request is sent.

mod immutable;
mod refs;
mod select;
mod selector;

use std::fmt;
use std::sync::Arc;

pub use immutable::Immutable;
pub use refs::Refs;
pub use select::{rfc3339, LatestBy, Selection};
pub use selector::{layout_ref, parse_layout_ref, parse_namespace, parse_rule_ref, split_layout, RuleRef, Selector};

use crate::manifest::is_referrer_tag;
use crate::reference::{parse_repository, ImageRef, Location, Reference};

/// One image the user asked for: the unit that syncs or fails, and that reports name.
///
/// Two pairs are the same image when their source and destination are: [`Pair::slot`] is
/// bookkeeping and takes no part in comparing, ordering or hashing.
#[derive(Debug, Clone)]
pub struct Pair {
    pub src: ImageRef,
    pub dst: ImageRef,
    /// Where the run's record keeps what became of it; `None` for a pair made outside a rule's
    /// expansion (tests).
    pub slot: Option<Slot>,
}

/// An image's place in the run: the rule expansion it came from (in the order the record
/// saw them start) and its position there. What became of the image is kept by this place in
/// a byte, so that a run of 100,000 tags does not keep 100,000 pairs to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub rule: u32,
    pub index: u32,
}

impl Pair {
    /// A pair outside any rule's expansion.
    pub fn new(src: ImageRef, dst: ImageRef) -> Pair {
        Pair { src, dst, slot: None }
    }

    fn key(&self) -> (&ImageRef, &ImageRef) {
        (&self.src, &self.dst)
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Pair) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Pair {}

impl std::hash::Hash for Pair {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Pair) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Pair) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

/// One validated source → destination pair of the images file.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The source as written, for messages and for the failed-images file.
    pub src_text: String,
    /// The destination as written.
    pub dst_text: String,
    pub src: RuleRef,
    pub dst: RuleRef,
    /// Which of the listed tags to copy (`semver`, `latest`, `exclude`).
    pub select: Selection,
    /// Delete the destination's tags this rule no longer produces (`prune`, `--prune`).
    pub prune: bool,
    /// Destination tags taken as in sync when listed there (`immutable`, `--immutable`).
    pub immutable: Option<Immutable>,
    /// `src` is a namespace (`registry/team/*`, or a whole bundle): one rule per repository
    /// below it.
    pub namespace: Option<Namespace>,
}

/// The repositories of a namespace rule: matched against the path below the namespace.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub include: Vec<regex::Regex>,
    pub exclude: Vec<regex::Regex>,
}

impl Namespace {
    pub fn admits(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(path)))
            && !self.exclude.iter().any(|r| r.is_match(path))
    }
}

/// Why two sides make no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRule(pub String);

impl fmt::Display for InvalidRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Rule {
    /// A rule copying what `src` names to `dst` (a namespace when `namespace` is given): every
    /// tag its selector names, nothing pruned. Sides that cannot go together are refused.
    pub fn new(
        src_text: &str,
        dst_text: &str,
        src: RuleRef,
        dst: RuleRef,
        namespace: Option<Namespace>,
    ) -> Result<Rule, InvalidRule> {
        let fail = |m: &str| Err(InvalidRule(m.to_string()));
        if matches!(src.repo.location, Location::Archive(_)) && src.repo.location == dst.repo.location {
            return fail("an archive cannot be read and rewritten by the same rule");
        }
        match (&src.selector, &dst.selector) {
            (_, Selector::Regex(_)) => return fail("a destination cannot be a tag regex"),
            (_, Selector::Pinned { .. }) => {
                return fail("a destination names a tag or a digest, not both (repo:tag or repo@sha256:…)")
            }
            (Selector::Tags(s), Selector::Tags(d)) if s.len() != d.len() => {
                return Err(InvalidRule(format!(
                    "the destination renames {} tag(s) but the source names {}; the counts must match",
                    d.len(),
                    s.len()
                )))
            }
            (Selector::Digest(_) | Selector::Pinned { .. }, Selector::Tags(d)) if d.len() != 1 => {
                return fail("a source digest can be given exactly one destination tag")
            }
            (Selector::All | Selector::Regex(_), Selector::Tags(_)) => {
                return fail("renaming tags needs an explicit source tag list (repo:a,b)")
            }
            (Selector::Digest(s) | Selector::Pinned { digest: s, .. }, Selector::Digest(d)) if s != d => {
                return fail("the destination digest differs from the source digest")
            }
            (Selector::Tags(_) | Selector::All | Selector::Regex(_), Selector::Digest(_)) => {
                return fail("a destination digest needs the same source digest")
            }
            _ => {}
        }
        if namespace.is_some() && !matches!(dst.selector, Selector::All) {
            return fail("a namespace goes to a repository prefix, without a tag or digest");
        }
        Ok(Rule {
            src_text: src_text.to_string(),
            dst_text: dst_text.to_string(),
            src,
            dst,
            select: Selection::default(),
            prune: false,
            immutable: None,
            namespace,
        })
    }

    /// How a rule is named in messages: as the user wrote it.
    pub fn describe(&self) -> String {
        format!("rule \"{}: {}\"", self.src_text, self.dst_text)
    }

    /// Whether the rule's images land under tags (not by digest only): prune needs that.
    pub fn pushes_tags(&self) -> bool {
        !matches!(
            (&self.src.selector, &self.dst.selector),
            (_, Selector::Digest(_)) | (Selector::Digest(_), Selector::All | Selector::Regex(_))
        )
    }

    /// The source images the rule names itself; `None` when its tags must be listed.
    pub fn named(&self) -> Option<Vec<Reference>> {
        match &self.src.selector {
            Selector::Tags(t) => Some(t.iter().cloned().map(Reference::Tag).collect()),
            Selector::Digest(d) | Selector::Pinned { digest: d, .. } => Some(vec![Reference::Digest(d.clone())]),
            Selector::All | Selector::Regex(_) => None,
        }
    }

    /// Whether `pair`'s destination is a tag the rule takes as in sync once the destination
    /// lists it (`immutable`).
    pub fn immutable_tag<'a>(&self, pair: &'a Pair) -> Option<&'a str> {
        match (&self.immutable, &pair.dst.reference) {
            (Some(i), Reference::Tag(t)) if i.covers(t) => Some(t),
            _ => None,
        }
    }

    /// Whether a listed tag is one the rule takes (before [`Rule::select`]): the regex's, and
    /// not a referrer tag when referrers follow their subject (`referrers`).
    pub fn takes(&self, tag: &str, referrers: bool) -> bool {
        let named = match &self.src.selector {
            Selector::Regex(re) => re.is_match(tag),
            _ => true,
        };
        named && !(referrers && is_referrer_tag(tag))
    }

    /// Each source image of `refs` with its destination (see [`Rule::pair`]), outside any
    /// record.
    pub fn pairs(&self, refs: Vec<Reference>) -> Vec<Arc<Pair>> {
        refs.into_iter().enumerate().map(|(i, r)| Arc::new(self.pair(i, r, None))).collect()
    }

    /// The `i`th source image of the rule's expansion, `reference`, with its destination.
    pub fn pair(&self, i: usize, reference: Reference, slot: Option<Slot>) -> Pair {
        let dst_reference = self.dst_reference(i, &reference);
        let src = ImageRef { repo: self.src.repo.clone(), reference };
        let dst = ImageRef { repo: self.dst.repo.clone(), reference: dst_reference };
        Pair { src, dst, slot }
    }

    /// Where the `i`th source image of the expansion, `reference`, goes: under the same tag,
    /// the renamed one, the pinned one, or by digest.
    pub fn dst_reference(&self, i: usize, reference: &Reference) -> Reference {
        match &self.dst.selector {
            Selector::Tags(t) => Reference::Tag(t[i].clone()),
            Selector::Digest(d) => Reference::Digest(d.clone()),
            Selector::All | Selector::Regex(_) => match &self.src.selector {
                // `repo:tag@sha256:…` lands under its tag.
                Selector::Pinned { tag, .. } => Reference::Tag(tag.clone()),
                _ => reference.clone(),
            },
            // Refused by `Rule::new`; its tag is the only sensible reading.
            Selector::Pinned { tag, .. } => Reference::Tag(tag.clone()),
        }
    }

    /// A namespace rule's rule for `name`, one repository of its source's catalog; `None`
    /// when it is not below the namespace or `include_repos`/`exclude_repos` leave it out.
    pub fn for_repository(&self, name: &str) -> Option<Rule> {
        let ns = self.namespace.as_ref()?;
        let prefix = &self.src.repo.name;
        let below = if prefix.is_empty() { name } else { name.strip_prefix(&**prefix)?.strip_prefix('/')? };
        // A bundle's images keep their path below a registry prefix, not the registry they
        // came from: `r.io/team/app` → `PREFIX/team/app`.
        let path = match self.src.repo.is_layout() {
            true => parse_repository(below).map_or_else(|_| below.to_string(), |r| r.name.to_string()),
            false => below.to_string(),
        };
        if !ns.admits(&path) {
            log::debug!("{}: {name} left out by include_repos/exclude_repos", self.describe());
            return None;
        }
        let src = RuleRef { repo: self.src.repo.sibling(name), selector: Selector::All };
        let dst_name = match (self.dst.repo.is_layout(), self.dst.repo.name.is_empty()) {
            // Into a bundle: under the image's full name.
            (true, _) => src.repo.full_name(),
            (false, true) => path,
            (false, false) => format!("{}/{path}", self.dst.repo.name),
        };
        let dst = RuleRef { repo: self.dst.repo.sibling(&dst_name), selector: Selector::All };
        Some(Rule {
            src_text: src.repo.to_string(),
            dst_text: dst.repo.to_string(),
            src,
            dst,
            namespace: None,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(src: &str, dst: &str) -> Result<Rule, InvalidRule> {
        Rule::new(src, dst, parse_rule_ref(src).unwrap(), parse_rule_ref(dst).unwrap(), None)
    }

    fn dsts(r: &Rule, refs: &[&str]) -> Vec<String> {
        let refs = refs.iter().map(|t| Reference::Tag(t.to_string())).collect();
        r.pairs(refs).iter().map(|p| p.dst.to_string()).collect()
    }

    #[test]
    fn pairs_keep_rename_or_pin_the_tag() {
        assert_eq!(dsts(&rule("a.io/x", "b.io/y").unwrap(), &["v1", "v2"]), ["b.io/y:v1", "b.io/y:v2"]);
        assert_eq!(dsts(&rule("a.io/x:v1,v2", "b.io/y:w1,w2").unwrap(), &["v1", "v2"]), ["b.io/y:w1", "b.io/y:w2"]);
        let d = format!("sha256:{}", "c".repeat(64));
        let pinned = rule(&format!("a.io/x:v9@{d}"), "b.io/y").unwrap();
        let refs = pinned.named().unwrap();
        assert_eq!(refs, [Reference::Digest(d.parse().unwrap())]);
        assert_eq!(pinned.pairs(refs)[0].dst.to_string(), "b.io/y:v9");
        assert!(rule("a.io/x", "b.io/y").unwrap().named().is_none());
    }

    #[test]
    fn sides_that_cannot_go_together_are_refused() {
        assert!(rule("a.io/x:v1,v2", "b.io/x:w1").is_err());
        assert!(rule("a.io/x", "b.io/x:w1").is_err());
        let d = format!("sha256:{}", "c".repeat(64));
        let other = format!("sha256:{}", "d".repeat(64));
        assert!(rule(&format!("a.io/x@{d}"), &format!("b.io/x@{other}")).is_err());
        assert!(rule("a.io/x:v1", &format!("b.io/x@{d}")).is_err());
        assert!(rule(&format!("a.io/x@{d}"), "b.io/x").is_ok_and(|r| !r.pushes_tags()));
    }

    #[test]
    fn listed_tags_taken() {
        let r = rule("a.io/x:/^v1/", "b.io/y").unwrap();
        let referrer = format!("sha256-{}.sig", "a".repeat(64));
        assert!(r.takes("v1.2", true) && !r.takes("v2", true));
        let all = rule("a.io/x", "b.io/y").unwrap();
        assert!(!all.takes(&referrer, true) && all.takes(&referrer, false));
    }

    #[test]
    fn a_namespace_gives_one_rule_per_repository_below_it() {
        let ns = Namespace { include: vec![regex::Regex::new("^app").unwrap()], exclude: vec![] };
        let r = Rule::new(
            "a.io/team/*",
            "b.io/mirror",
            parse_namespace("a.io/team").unwrap(),
            parse_namespace("b.io/mirror").unwrap(),
            Some(ns),
        )
        .unwrap();
        let child = r.for_repository("team/app-1").unwrap();
        assert_eq!(
            (child.src.repo.to_string(), child.dst.repo.to_string()),
            ("a.io/team/app-1".into(), "b.io/mirror/app-1".into())
        );
        assert!(child.namespace.is_none());
        assert!(r.for_repository("team/db").is_none(), "left out by include_repos");
        assert!(r.for_repository("other/app").is_none(), "not below the namespace");
    }
}
