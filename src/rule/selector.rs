//! The grammar of a rule's sides: a repository and which of its images (`repo`, `repo:a,b`,
//! `repo:/re/`, `repo@sha256:…`, `repo:tag@sha256:…`), a namespace (`registry/team/*`), and the
//! bundle forms (`oci:DIR[:NAME[:tags]]`, `oci-archive:FILE…`). Names themselves are
//! [`crate::reference`]'s.

use regex::Regex;

use crate::digest::Digest;
use crate::reference::{normalize_registry, parse_repository, valid_tag, Location, ParseError, Repository};

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Which images of a repository a rule side names.
#[derive(Clone, Debug)]
pub enum Selector {
    /// No tag: every tag of the repository.
    All,
    /// `repo:a,b,c`.
    Tags(Vec<String>),
    /// `repo:/regex/`: the tags the regex matches (anywhere in the tag, as in the Go tool).
    Regex(Regex),
    /// `repo@sha256:…`.
    Digest(Digest),
    /// `repo:tag@sha256:…`: pulled by the digest (the tag is not looked up), pushed under the tag.
    Pinned { tag: String, digest: Digest },
}

/// One side of an images-file rule.
#[derive(Clone, Debug)]
pub struct RuleRef {
    pub repo: Repository,
    pub selector: Selector,
}

/// An OCI image layout directory: `oci:DIR`.
const LAYOUT_DIR: &str = "oci:";
/// An OCI image layout in one tar file: `oci-archive:FILE`.
const LAYOUT_ARCHIVE: &str = "oci-archive:";

/// `oci:PATH[:SEL]` (or `oci-archive:`) → the location with an absolute path (`oci:/abs/PATH`)
/// and `SEL`; the first `:` after the prefix ends the path (as skopeo reads it). `None` when
/// `s` names no layout.
pub fn split_layout(s: &str) -> Option<Result<(Location, Option<String>), ParseError>> {
    let s = s.trim();
    let prefix = [LAYOUT_ARCHIVE, LAYOUT_DIR].into_iter().find(|p| s.starts_with(p))?;
    let rest = &s[prefix.len()..];
    let (path, sel) = match rest.split_once(':') {
        Some((p, sel)) => (p, Some(sel.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Some(err(format!("{prefix} needs a path, e.g. {prefix}/media/usb/bundle")));
    }
    let path = match std::path::absolute(path) {
        Ok(p) => p,
        Err(e) => return Some(err(format!("{prefix}{path}: {e}"))),
    };
    let location = if prefix == LAYOUT_ARCHIVE { Location::Archive(path.into()) } else { Location::Dir(path.into()) };
    Some(Ok((location, sel.filter(|s| !s.is_empty()))))
}

/// What `SEL` of `oci:DIR:SEL` names in the layout `location`: `NAME[:tags|@digest]` (NAME is a
/// full image name, with a `/`), or, without a `/`, tags (`v1`, `a,b`, `/re/`) or `@sha256:…` of
/// the layout's only image (`None` name: the caller decides which name that is).
pub fn parse_layout_ref(location: &Location, sel: &str) -> Result<(Option<String>, Selector), ParseError> {
    if sel.contains('/') && !sel.starts_with('/') {
        let r = parse_rule_ref(sel)?;
        return Ok((Some(r.repo.to_string()), r.selector));
    }
    let stand_in = if sel.starts_with('@') { format!("x.io/x{sel}") } else { format!("x.io/x:{sel}") };
    let r = parse_rule_ref(&stand_in).map_err(|e| ParseError(format!("{location}:{sel}: {e}")))?;
    Ok((None, r.selector))
}

/// Parse one side of an images-file rule: `repo`, `repo:t1,t2`, `repo:/re/`, `repo@sha256:…`.
pub fn parse_rule_ref(s: &str) -> Result<RuleRef, ParseError> {
    let s = s.trim();
    if let Some((name, digest)) = s.split_once('@') {
        let digest = Digest::parse(digest)?;
        let last_slash = name.rfind('/').map_or(0, |p| p + 1);
        if let Some(p) = name[last_slash..].find(':') {
            let (repo, tag) = (&name[..last_slash + p], &name[last_slash + p + 1..]);
            if !valid_tag(tag) {
                return err(format!("invalid tag {tag:?}"));
            }
            let selector = Selector::Pinned { tag: tag.to_string(), digest };
            return Ok(RuleRef { repo: parse_repository(repo)?, selector });
        }
        return Ok(RuleRef { repo: parse_repository(name)?, selector: Selector::Digest(digest) });
    }
    // A regex may contain '/' and ':', so it is found first: "repo:/re/".
    if let Some(pos) = s.find(":/") {
        let (repo, rest) = (&s[..pos], &s[pos + 2..]);
        let Some(re) = rest.strip_suffix('/') else {
            return err(format!("tag regex {:?} must end with '/'", &s[pos + 1..]));
        };
        let re = Regex::new(re).map_err(|e| ParseError(format!("invalid tag regex /{re}/: {e}")))?;
        return Ok(RuleRef { repo: parse_repository(repo)?, selector: Selector::Regex(re) });
    }
    let last_slash = s.rfind('/').map_or(0, |p| p + 1);
    match s[last_slash..].find(':') {
        None => Ok(RuleRef { repo: parse_repository(s)?, selector: Selector::All }),
        Some(p) => {
            let (repo, tags) = (&s[..last_slash + p], &s[last_slash + p + 1..]);
            let tags: Vec<String> = tags.split(',').map(|t| t.trim().to_string()).collect();
            if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
                return err(format!("invalid tag {bad:?}"));
            }
            Ok(RuleRef { repo: parse_repository(repo)?, selector: Selector::Tags(tags) })
        }
    }
}

/// `registry/namespace` (or a bare `registry`) of a `…/*` source or of its destination: the
/// namespace is the repository path prefix, taken as written (no Docker Hub `library/`), empty
/// for a whole registry.
pub fn parse_namespace(prefix: &str) -> Result<RuleRef, ParseError> {
    let (host, path) = prefix.trim().split_once('/').unwrap_or((prefix.trim(), ""));
    if !(host.contains(['.', ':']) || host == "localhost") {
        return err(format!("{prefix:?} names no registry: write registry/namespace or registry"));
    }
    let path = path.trim_matches('/');
    let valid = |c: &str| {
        !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if !path.is_empty() && !path.split('/').all(valid) {
        return err(format!("{prefix:?}: a namespace is a repository path prefix (no tag, digest or upper case)"));
    }
    Ok(RuleRef { repo: Repository::on_registry(&normalize_registry(host), path), selector: Selector::All })
}

/// A side in the layout `location`: the image `name` there (empty: all of it).
pub fn layout_ref(location: Location, name: String, selector: Selector) -> RuleRef {
    RuleRef { repo: Repository { location, name: name.into() }, selector }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        match parse_rule_ref(s).unwrap().selector {
            Selector::Tags(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rule_selectors() {
        assert!(matches!(parse_rule_ref("quay.io/a/b").unwrap().selector, Selector::All));
        assert_eq!(tags("quay.io/a/b:v1"), ["v1"]);
        assert_eq!(tags("127.0.0.1:5000/a/b:v1,v2, v3"), ["v1", "v2", "v3"]);
        let r = parse_rule_ref("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(r.repo.location.registry(), Some("127.0.0.1:5000"));
        assert!(matches!(r.selector, Selector::All));
        let d = format!("sha256:{}", "a".repeat(64));
        match parse_rule_ref(&format!("quay.io/a/b@{d}")).unwrap().selector {
            Selector::Digest(x) => assert_eq!(x.as_str(), d),
            other => panic!("{other:?}"),
        }
        match parse_rule_ref("host:5000/a/b:/^v1\\.[0-9]+/$/").unwrap().selector {
            Selector::Regex(re) => {
                assert!(re.is_match("v1.2/"));
            }
            other => panic!("{other:?}"),
        }
        match parse_rule_ref("quay.io/a/b:/a+/").unwrap().selector {
            Selector::Regex(re) => assert!(re.is_match("xaax") && !re.is_match("b")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tag_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_rule_ref(&format!("localhost:5000/a/b:v1@{d}")).unwrap();
        assert_eq!(r.repo.location.registry(), Some("localhost:5000"));
        assert_eq!(&*r.repo.name, "a/b");
        assert!(matches!(r.selector, Selector::Pinned { ref tag, ref digest } if tag == "v1" && digest.as_str() == d));
        assert!(matches!(parse_rule_ref(&format!("localhost:5000/a/b@{d}")).unwrap().selector, Selector::Digest(_)));
        assert!(parse_rule_ref(&format!("a/b:v!@{d}")).is_err());
        assert!(parse_rule_ref("a/b:v1@sha256:abc").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_rule_ref("quay.io/Upper/b").is_err());
        assert!(parse_rule_ref("quay.io/a/b:").is_err());
        assert!(parse_rule_ref("quay.io/a/b:bad tag").is_err());
        assert!(parse_rule_ref("quay.io/a/b@sha256:abc").is_err());
        assert!(parse_rule_ref("quay.io/a/b:/(/").is_err());
        assert!(parse_rule_ref("quay.io/a/b:/x").is_err());
        assert!(parse_rule_ref("quay.io/").is_err());
        assert!(parse_rule_ref("quay.io/a//b").is_err());
        assert!(parse_rule_ref("quay.io/a-/b").is_err());
        assert!(parse_rule_ref("").is_err());
    }

    #[test]
    fn layouts() {
        let (loc, sel) = split_layout("oci-archive:/m/b.tar:r.io/app:v1").unwrap().unwrap();
        assert_eq!((loc.to_string().as_str(), sel.as_deref()), ("oci-archive:/m/b.tar", Some("r.io/app:v1")));
        let (name, selector) = parse_layout_ref(&loc, "r.io/app:v1").unwrap();
        assert_eq!(name.as_deref(), Some("r.io/app"));
        assert!(matches!(selector, Selector::Tags(t) if t == ["v1"]));
        assert!(split_layout("r.io/app").is_none());
        assert!(split_layout("oci:").unwrap().is_err());
    }
}
