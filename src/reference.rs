//! Image references: parsing and normalisation.
//!
//! Every other layer works on already-normalised references, so the rules that users rely on
//! (`docker.io` is really `registry-1.docker.io`, a one-part name is `library/NAME`, a host is
//! only a host when it looks like one) live here and nowhere else. The images file adds two
//! selectors that plain references do not have — a tag list `repo:a,b` and a tag regex
//! `repo:/re/` — so parsing returns a repository plus a [`Selector`].

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use crate::digest::Digest;

/// The registry Docker Hub images really live on.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// A repository on a registry, normalised: `registry` is `host[:port]` and `name` the path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    pub registry: Arc<str>,
    pub name: Arc<str>,
}

impl Repository {
    /// The name users know: `docker.io/library/x` is shown as written by Docker.
    pub fn display_registry(&self) -> &str {
        if &*self.registry == DOCKER_HUB {
            "docker.io"
        } else {
            &self.registry
        }
    }
}

impl Repository {
    /// Whether this repository is in an OCI layout or archive rather than on a registry.
    pub fn is_layout(&self) -> bool {
        is_layout(&self.registry)
    }

    /// The full image name, as a layout stores it: `registry/path` (docker's form), or, for a
    /// repository of a layout, its name there.
    pub fn full_name(&self) -> String {
        if self.is_layout() {
            self.name.to_string()
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_layout(), self.name.is_empty()) {
            (true, true) => f.write_str(&self.registry),
            (true, false) => write!(f, "{}:{}", self.registry, self.name),
            (false, _) => write!(f, "{}/{}", self.display_registry(), self.name),
        }
    }
}

/// An OCI image layout directory: `oci:DIR`.
pub const LAYOUT_DIR: &str = "oci:";
/// An OCI image layout in one tar file: `oci-archive:FILE`.
pub const LAYOUT_ARCHIVE: &str = "oci-archive:";

/// Whether `location` names an OCI layout or archive (`oci:/path`, `oci-archive:/path`).
pub fn is_layout(location: &str) -> bool {
    location.starts_with(LAYOUT_DIR) || location.starts_with(LAYOUT_ARCHIVE)
}

/// `oci:PATH[:SEL]` (or `oci-archive:`) → the location with an absolute path (`oci:/abs/PATH`)
/// and `SEL`; the first `:` after the prefix ends the path (as skopeo reads it). `None` when
/// `s` names no layout.
pub fn split_layout(s: &str) -> Option<Result<(String, Option<String>), ParseError>> {
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
    Some(Ok((format!("{prefix}{}", path.display()), sel.filter(|s| !s.is_empty()))))
}

/// What `SEL` of `oci:DIR:SEL` names in the layout `location`: `NAME[:tags|@digest]` (NAME is a
/// full image name, with a `/`), or, without a `/`, tags (`v1`, `a,b`, `/re/`) or `@sha256:…` of
/// the layout's only image (`None` name: the caller decides which name that is).
pub fn parse_layout_ref(location: &str, sel: &str) -> Result<(Option<String>, Selector), ParseError> {
    if sel.contains('/') && !sel.starts_with('/') {
        let r = parse_rule_ref(sel)?;
        return Ok((Some(r.repo.to_string()), r.selector));
    }
    let stand_in = if sel.starts_with('@') { format!("x.io/x{sel}") } else { format!("x.io/x:{sel}") };
    let r = parse_rule_ref(&stand_in).map_err(|e| ParseError(format!("{location}:{sel}: {e}")))?;
    Ok((None, r.selector))
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

/// What names one image in a repository: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t,
            Reference::Digest(d) => d.as_str(),
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One concrete image: a repository plus a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub repo: Repository,
    pub reference: Reference,
}

impl ImageRef {
    pub fn is_digest(&self) -> bool {
        matches!(self.reference, Reference::Digest(_))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(f, "{}{}{}", self.repo, sep, self.reference)
    }
}

/// Why a reference was refused; the caller adds which rule it came from.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A path component: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if b.iter().any(|c| c.is_ascii_uppercase()) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A run of separators: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c_slice(b, start, i);
        let ok = *sep == "." || *sep == "_" || *sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
        if i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            return false;
        }
    }
    true
}

fn c_slice(b: &[u8], s: usize, e: usize) -> &str {
    std::str::from_utf8(&b[s..e]).unwrap_or("")
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// Split `[host/]path` into a normalised repository.
pub fn parse_repository(s: &str) -> Result<Repository, ParseError> {
    if s.is_empty() {
        return err("empty repository name");
    }
    let (registry, path) = match s.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => (first.to_string(), rest.to_string()),
        _ => ("docker.io".to_string(), s.to_string()),
    };
    let registry = normalize_registry(&registry);
    if registry.is_empty() || registry.contains(char::is_whitespace) {
        return err(format!("invalid registry host {registry:?}"));
    }
    if path.is_empty() {
        return err(format!("missing repository name after registry {registry:?}"));
    }
    if let Some(bad) = path.split('/').find(|c| !valid_component(c)) {
        return err(format!(
            "invalid repository name {path:?}: component {bad:?} must be lowercase letters, digits and separators"
        ));
    }
    let name = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
    Ok(Repository { registry: registry.into(), name: name.into() })
}

/// `docker.io`, `index.docker.io` and `registry.hub.docker.com` are aliases of the registry Docker Hub really serves from.
pub fn normalize_registry(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" | DOCKER_HUB => DOCKER_HUB.to_string(),
        h => h.to_ascii_lowercase(),
    }
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
    fn docker_hub_normalisation() {
        let r = parse_repository("nginx").unwrap();
        assert_eq!((&*r.registry, &*r.name), (DOCKER_HUB, "library/nginx"));
        let r = parse_repository("docker.io/nginx").unwrap();
        assert_eq!(&*r.name, "library/nginx");
        let r = parse_repository("docker.io/bitnami/redis").unwrap();
        assert_eq!(&*r.name, "bitnami/redis");
        assert_eq!(r.to_string(), "docker.io/bitnami/redis");
        let r = parse_repository("user/app").unwrap();
        assert_eq!((&*r.registry, &*r.name), (DOCKER_HUB, "user/app"));
    }

    #[test]
    fn hosts_and_ports() {
        let r = parse_repository("127.0.0.1:5000/a/b/c/repo").unwrap();
        assert_eq!((&*r.registry, &*r.name), ("127.0.0.1:5000", "a/b/c/repo"));
        let r = parse_repository("localhost/x").unwrap();
        assert_eq!(&*r.registry, "localhost");
        let r = parse_repository("quay.io/coreos/kube-rbac-proxy").unwrap();
        assert_eq!(&*r.name, "coreos/kube-rbac-proxy");
    }

    #[test]
    fn rule_selectors() {
        assert!(matches!(parse_rule_ref("quay.io/a/b").unwrap().selector, Selector::All));
        assert_eq!(tags("quay.io/a/b:v1"), ["v1"]);
        assert_eq!(tags("127.0.0.1:5000/a/b:v1,v2, v3"), ["v1", "v2", "v3"]);
        let r = parse_rule_ref("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(&*r.repo.registry, "127.0.0.1:5000");
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
        assert_eq!(&*r.repo.registry, "localhost:5000");
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
    fn components() {
        for ok in ["a", "a.b", "a_b", "a__b", "a--b", "a-b-c", "0x"] {
            assert!(valid_component(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a._b", "A"] {
            assert!(!valid_component(bad), "{bad}");
        }
    }

    #[test]
    fn display() {
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef { repo: parse_repository("h:1/x").unwrap(), reference: Reference::Digest(d.parse().unwrap()) };
        assert_eq!(r.to_string(), format!("h:1/x@{d}"));
        let r = ImageRef { repo: parse_repository("h:1/x").unwrap(), reference: Reference::Tag("v1".into()) };
        assert_eq!(r.to_string(), "h:1/x:v1");
    }
}
