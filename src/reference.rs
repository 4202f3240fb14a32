//! Names and references: where a repository lives ([`Location`]), its name, and a tag or
//! digest in it — parsed and normalised.
//!
//! Every other layer works on already-normalised references, so the rules that users rely on
//! (`docker.io` is really `registry-1.docker.io`, a one-part name is `library/NAME`, a host is
//! only a host when it looks like one) live here and nowhere else. The selectors of the images
//! file (`repo:a,b`, `repo:/re/`, `oci:DIR:…`) are a rule's grammar: [`crate::rule`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::digest::{Digest, InvalidDigest};

/// The registry Docker Hub images really live on.
pub const DOCKER_HUB: &str = "registry-1.docker.io";

/// Where a repository lives: a registry, or an OCI image layout on disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A registry: `host[:port]`, normalised (see [`normalize_registry`]).
    Registry(Arc<str>),
    /// An OCI image layout directory (`oci:DIR`), by absolute path.
    Dir(Arc<Path>),
    /// An OCI image layout in one tar file (`oci-archive:FILE`), by absolute path.
    Archive(Arc<Path>),
}

impl Location {
    /// The registry's `host[:port]`; `None` for a layout.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Location::Registry(host) => Some(host),
            Location::Dir(_) | Location::Archive(_) => None,
        }
    }

    /// Whether this is an OCI layout or archive rather than a registry.
    pub fn is_layout(&self) -> bool {
        self.registry().is_none()
    }

    /// The layout's path; `None` for a registry.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Location::Registry(_) => None,
            Location::Dir(p) | Location::Archive(p) => Some(p),
        }
    }
}

/// `host[:port]`, or `oci:/path`, `oci-archive:/path`: as the user writes it, and as errors and
/// `--shard` (which hashes it) name it.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(host) => f.write_str(host),
            Location::Dir(p) => write!(f, "oci:{}", p.display()),
            Location::Archive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

/// A repository, normalised: where it lives, and its name there (a registry's path; a
/// layout's image name, empty for the whole layout).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    pub location: Location,
    pub name: Arc<str>,
}

impl Repository {
    /// A repository on the registry `host`.
    pub fn on_registry(host: &str, name: &str) -> Repository {
        Repository { location: Location::Registry(host.into()), name: name.into() }
    }

    /// The same location, another name.
    pub fn sibling(&self, name: &str) -> Repository {
        Repository { location: self.location.clone(), name: name.into() }
    }

    /// Whether this repository is in an OCI layout or archive rather than on a registry.
    pub fn is_layout(&self) -> bool {
        self.location.is_layout()
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
        match (&self.location, self.name.is_empty()) {
            // The name users know: `docker.io/library/x` is shown as written by Docker.
            (Location::Registry(host), _) if &**host == DOCKER_HUB => write!(f, "docker.io/{}", self.name),
            (Location::Registry(host), _) => write!(f, "{host}/{}", self.name),
            (layout, true) => write!(f, "{layout}"),
            (layout, false) => write!(f, "{layout}:{}", self.name),
        }
    }
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

impl From<InvalidDigest> for ParseError {
    fn from(e: InvalidDigest) -> ParseError {
        ParseError(e.to_string())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (distribution spec).
pub fn valid_tag(t: &str) -> bool {
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
    Ok(Repository::on_registry(&registry, &name))
}

/// `docker.io`, `index.docker.io` and `registry.hub.docker.com` are aliases of the registry Docker Hub really serves from.
pub fn normalize_registry(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" | DOCKER_HUB => DOCKER_HUB.to_string(),
        h => h.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_normalisation() {
        let r = parse_repository("nginx").unwrap();
        assert_eq!((r.location.registry(), &*r.name), (Some(DOCKER_HUB), "library/nginx"));
        let r = parse_repository("docker.io/nginx").unwrap();
        assert_eq!(&*r.name, "library/nginx");
        let r = parse_repository("docker.io/bitnami/redis").unwrap();
        assert_eq!(&*r.name, "bitnami/redis");
        assert_eq!(r.to_string(), "docker.io/bitnami/redis");
        let r = parse_repository("user/app").unwrap();
        assert_eq!((r.location.registry(), &*r.name), (Some(DOCKER_HUB), "user/app"));
    }

    #[test]
    fn hosts_and_ports() {
        let r = parse_repository("127.0.0.1:5000/a/b/c/repo").unwrap();
        assert_eq!((r.location.registry(), &*r.name), (Some("127.0.0.1:5000"), "a/b/c/repo"));
        let r = parse_repository("localhost/x").unwrap();
        assert_eq!(r.location.registry(), Some("localhost"));
        let r = parse_repository("quay.io/coreos/kube-rbac-proxy").unwrap();
        assert_eq!(&*r.name, "coreos/kube-rbac-proxy");
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
    fn locations_display_as_written() {
        let dir = Repository { location: Location::Dir(Path::new("/b").into()), name: "r.io/app".into() };
        assert_eq!(dir.to_string(), "oci:/b:r.io/app");
        assert_eq!(dir.sibling("").to_string(), "oci:/b");
        assert_eq!(Location::Archive(Path::new("/x.tar").into()).to_string(), "oci-archive:/x.tar");
        assert!(dir.is_layout() && !parse_repository("r.io/a").unwrap().is_layout());
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
