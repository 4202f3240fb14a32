//! The images file: `source → destination` or `source → [destinations]`, in file order.
//!
//! Each pair becomes a validated [`Rule`] here, so a mistake (a bad name, a rename whose tag
//! counts differ, a digest that cannot match) is reported before any network traffic, naming
//! the file and the rule.

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::env::Env;
use super::ConfigError;
use regex::Regex;

use crate::rule::{layout_ref, parse_layout_ref, parse_namespace, parse_rule_ref, split_layout, RuleRef, Selector};
use crate::rule::{Immutable, LatestBy, Namespace, Rule, Selection};

/// A destination, a list of destinations, or a map with `to:` and the selection keys.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Dests {
    One(String),
    Many(Vec<String>),
    Spec(serde_json::Map<String, serde_json::Value>),
}

/// The keys a rule's map may have.
const KEYS: [&str; 9] =
    ["to", "semver", "latest", "latest_by", "exclude", "prune", "include_repos", "exclude_repos", "immutable"];

/// A rule's map, read.
#[derive(Default)]
struct Spec {
    to: Vec<String>,
    select: Selection,
    prune: bool,
    immutable: Option<Immutable>,
    namespace: Namespace,
}

/// A string or a list of strings.
fn strings(key: &str, v: &serde_json::Value) -> Result<Vec<String>, String> {
    match v {
        serde_json::Value::String(s) => Ok(vec![s.clone()]),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(String::from).ok_or_else(|| format!("{key}: every entry must be a string")))
            .collect(),
        _ => Err(format!("{key}: expected a string or a list of strings")),
    }
}

fn regexes(key: &str, v: &serde_json::Value) -> Result<Vec<Regex>, String> {
    strings(key, v)?.iter().map(|r| Regex::new(r).map_err(|e| format!("{key}: invalid regex /{r}/: {e}"))).collect()
}

fn spec(map: &serde_json::Map<String, serde_json::Value>) -> Result<Spec, String> {
    if let Some(k) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key {k:?} (known: {})", KEYS.join(", ")));
    }
    let mut out = Spec::default();
    for (k, v) in map {
        match k.as_str() {
            "to" => out.to = strings(k, v)?,
            "semver" => {
                let text = v.as_str().ok_or("semver: expected a range such as \">=1.20, <2\"")?;
                let req =
                    semver::VersionReq::parse(text).map_err(|e| format!("semver: invalid range {text:?}: {e}"))?;
                out.select.semver = Some((text.to_string(), req));
            }
            "latest" => match v.as_u64() {
                Some(n) if n > 0 => out.select.latest = Some(n as usize),
                _ => return Err("latest: expected a number above 0".into()),
            },
            "latest_by" => {
                out.select.latest_by = match v.as_str() {
                    Some("semver") => LatestBy::Semver,
                    Some("created") => LatestBy::Created,
                    _ => return Err("latest_by: expected semver or created".into()),
                }
            }
            "exclude" => out.select.exclude = regexes(k, v)?,
            "prune" => out.prune = v.as_bool().ok_or("prune: expected true or false")?,
            "include_repos" => out.namespace.include = regexes(k, v)?,
            "exclude_repos" => out.namespace.exclude = regexes(k, v)?,
            "immutable" => out.immutable = immutable(v)?,
            _ => unreachable!("checked against KEYS above"),
        }
    }
    if map.contains_key("latest_by") && out.select.latest.is_none() {
        return Err("latest_by needs latest".into());
    }
    if out.to.is_empty() {
        return Err("the map has no `to:` (the destination)".into());
    }
    Ok(out)
}

/// `immutable: true` (every tag), `false` (none), or a regex of the tags that are.
fn immutable(v: &serde_json::Value) -> Result<Option<Immutable>, String> {
    match v {
        serde_json::Value::Bool(b) => Ok(b.then_some(Immutable::All)),
        serde_json::Value::String(re) => Immutable::matching(re).map(Some).map_err(|e| format!("immutable: {e}")),
        _ => Err("immutable: expected true, false or a regex of tag names".into()),
    }
}

/// The file's pairs, in the order written (serde maps would sort or shuffle them).
#[derive(Clone, Debug, Default)]
pub struct ImagesFile(pub Vec<(String, Dests)>);

impl<'de> Deserialize<'de> for ImagesFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImagesFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of source image to destination image(s)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ImagesFile, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Dests>()? {
                    out.push((k, v));
                }
                Ok(ImagesFile(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Where a rule with an empty destination goes (`--registry`/`--namespace`, as in the Go tool).
#[derive(Clone, Debug, Default)]
pub struct DefaultDest {
    pub registry: Option<String>,
    pub namespace: Option<String>,
}

impl DefaultDest {
    /// `registry/namespace/<last part of the source repository>`, keeping the source tags.
    fn destination(&self, src: &RuleRef) -> Option<String> {
        let (Some(reg), Some(ns)) = (&self.registry, &self.namespace) else { return None };
        let last = src.repo.name.rsplit('/').next().unwrap_or(&src.repo.name);
        Some(format!("{}/{}/{last}", reg.trim_end_matches('/'), ns.trim_matches('/')))
    }
}

/// Turn the file into rules; `origin` (the file path) goes into every error.
pub fn rules(file: ImagesFile, origin: &Path, defaults: &DefaultDest, env: &Env) -> Result<Vec<Rule>, ConfigError> {
    let mut out = Vec::new();
    if file.0.is_empty() {
        return Err(ConfigError::Parse { path: origin.to_path_buf(), message: "no images to synchronise".into() });
    }
    for (src_text, dests) in file.0 {
        let spec = match dests {
            Dests::One(d) => Spec { to: vec![d], ..Spec::default() },
            Dests::Many(v) => Spec { to: v, ..Spec::default() },
            Dests::Spec(map) => spec(&map).map_err(|m| rule_err(origin, &src_text, "{…}", m))?,
        };
        if spec.to.is_empty() {
            return Err(rule_err(origin, &src_text, "", "the destination list is empty"));
        }
        for dst_text in &spec.to {
            let mut r = rule(&src_text, dst_text, origin, defaults, env)?;
            let fail = |m: &str| rule_err(origin, &src_text, dst_text, m);
            if !spec.select.is_empty() && !matches!(r.src.selector, Selector::All | Selector::Regex(_)) {
                return Err(fail("semver, latest and exclude select among listed tags: the source must name all tags (repo) or a tag regex (repo:/re/)"));
            }
            if r.namespace.is_none() && !(spec.namespace.include.is_empty() && spec.namespace.exclude.is_empty()) {
                return Err(fail("include_repos and exclude_repos need a namespace source (registry/namespace/*)"));
            }
            if spec.prune && !r.pushes_tags() {
                return Err(fail("prune needs a rule that pushes tags; this one pushes by digest only"));
            }
            if let Some(ns) = &mut r.namespace {
                *ns = spec.namespace.clone();
            }
            r.select = spec.select.clone();
            r.prune = spec.prune;
            r.immutable = spec.immutable.clone();
            out.push(r);
        }
    }
    Ok(out)
}

fn rule_err(origin: &Path, src: &str, dst: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Rule { path: origin.to_path_buf(), rule: format!("{src}: {dst}"), message: message.into() }
}

fn rule(src_text: &str, dst_text: &str, origin: &Path, defaults: &DefaultDest, env: &Env) -> Result<Rule, ConfigError> {
    let fail = |m: String| rule_err(origin, src_text, dst_text, m);
    let (mut dst_expanded, unset) = env.expand_strict(dst_text);
    if let Some(var) = unset.first() {
        return Err(fail(format!("environment variable {var} is not set")));
    }
    let (src, namespace) = match (split_layout(src_text), src_text.trim().strip_suffix("/*")) {
        (Some(layout), _) => {
            let (location, sel) = layout.map_err(|e| fail(format!("source: {e}")))?;
            match sel {
                // A whole bundle: like a namespace, every image in it.
                None => (layout_ref(location, String::new(), Selector::All), Some(Namespace::default())),
                Some(sel) => {
                    let (name, selector) =
                        parse_layout_ref(&location, &sel).map_err(|e| fail(format!("source: {e}")))?;
                    (layout_ref(location, name.unwrap_or_default(), selector), None)
                }
            }
        }
        (None, Some(prefix)) => {
            (parse_namespace(prefix).map_err(|e| fail(format!("source: {e}")))?, Some(Namespace::default()))
        }
        (None, None) => (parse_rule_ref(src_text).map_err(|e| fail(format!("source: {e}")))?, None),
    };
    if dst_expanded.trim().is_empty() {
        dst_expanded = defaults.destination(&src).ok_or_else(|| {
            fail("the destination is empty and no default is set (--registry and --namespace)".into())
        })?;
    }
    let dst = match (split_layout(&dst_expanded), namespace.is_some()) {
        (Some(layout), _) => layout.map_err(|e| e.to_string()).and_then(|(location, sel)| match (sel, &namespace) {
            (None, Some(_)) => Ok(layout_ref(location, String::new(), Selector::All)),
            (Some(_), Some(_)) => Err("a namespace or a whole bundle goes into a bundle as it is: oci:DIR".into()),
            // The source's name, and its tags unless renamed.
            (None, None) => Ok(layout_ref(location, src.repo.full_name(), Selector::All)),
            (Some(sel), None) => parse_layout_ref(&location, &sel)
                .map(|(name, selector)| layout_ref(location, name.unwrap_or_else(|| src.repo.full_name()), selector))
                .map_err(|e| e.to_string()),
        }),
        (None, true) => parse_namespace(&dst_expanded).map_err(|e| e.to_string()),
        (None, false) => parse_rule_ref(&dst_expanded).map_err(|e| e.to_string()),
    }
    .map_err(|e| fail(format!("destination: {e}")))?;
    Rule::new(src_text, dst_text, src, dst, namespace).map_err(|e| fail(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(yaml: &str, env: &Env) -> Result<Vec<Rule>, ConfigError> {
        rules(serde_yaml::from_str(yaml).unwrap(), Path::new("images.yaml"), &DefaultDest::default(), env)
    }

    fn parse(yaml: &str) -> Result<Vec<Rule>, ConfigError> {
        parse_with(yaml, &Env::from_pairs(&[]))
    }

    #[test]
    fn keeps_order_and_lists() {
        let r = parse("z.io/a/z: y.io/b/z\na.io/a/a: [y.io/b/a1, y.io/b/a2]\n").unwrap();
        let names: Vec<_> = r.iter().map(|r| r.dst.repo.name.to_string()).collect();
        assert_eq!(names, ["b/z", "b/a1", "b/a2"]);
    }

    #[test]
    fn json_too() {
        let f: ImagesFile = serde_json::from_str(r#"{"b.io/x:v1": "c.io/x", "a.io/y": ["c.io/y"]}"#).unwrap();
        let r = rules(f, Path::new("i.json"), &DefaultDest::default(), &Env::from_pairs(&[])).unwrap();
        assert_eq!(r[0].src.repo.location.registry(), Some("b.io"));
        assert_eq!(r[1].src.repo.location.registry(), Some("a.io"));
    }

    #[test]
    fn rule_maps() {
        let yaml =
            "a.io/x:\n  to: [b.io/x, c.io/x]\n  semver: \">=1.2, <2\"\n  latest: 3\n  exclude: -rc\n  prune: true\n";
        let r = parse(yaml).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[1].prune && r[1].select.latest == Some(3) && r[1].select.exclude.len() == 1);
        assert_eq!(r[0].select.semver.as_ref().unwrap().0, ">=1.2, <2");
        let e = parse("a.io/x:\n  to: b.io/x\n  lastest: 3\n").unwrap_err().to_string();
        assert!(e.contains("a.io/x") && e.contains("lastest"), "{e}");
        assert!(parse("a.io/x:\n  semver: \"^1\"\n").unwrap_err().to_string().contains("to:"));
        assert!(parse("a.io/x:v1:\n  to: b.io/x\n  latest: 2\n").unwrap_err().to_string().contains("all tags"));
        assert!(parse("a.io/x:\n  to: b.io/x\n  semver: \"not a range\"\n").is_err());
        assert!(parse("a.io/x@sha256:0000000000000000000000000000000000000000000000000000000000000000:\n  to: b.io/x\n  prune: true\n").is_err());
        assert!(parse("a.io/x:\n  to: b.io/x\n  include_repos: a\n").unwrap_err().to_string().contains("namespace"));
    }

    #[test]
    fn immutable_tags() {
        let r = parse("a.io/x:\n  to: b.io/x\n  immutable: true\n").unwrap();
        assert!(matches!(r[0].immutable, Some(Immutable::All)));
        let r = parse("a.io/x:\n  to: b.io/x\n  immutable: '^v?\\d+\\.\\d+\\.\\d+$'\n").unwrap();
        let i = r[0].immutable.as_ref().unwrap();
        assert!(i.covers("v1.2.3") && !i.covers("latest"));
        assert!(parse("a.io/x:\n  to: b.io/x\n  immutable: false\n").unwrap()[0].immutable.is_none());
        assert!(parse("a.io/x: b.io/x\n").unwrap()[0].immutable.is_none());
        let e = parse("a.io/x:\n  to: b.io/x\n  immutable: '('\n").unwrap_err().to_string();
        assert!(e.contains("immutable") && e.contains("a.io/x"), "{e}");
        assert!(parse("a.io/x:\n  to: b.io/x\n  immutable: 3\n").unwrap_err().to_string().contains("true, false"));
        let r = parse("a.io/team/*:\n  to: b.io/mirror\n  immutable: true\n").unwrap();
        let child = r[0].for_repository("team/app").unwrap();
        assert!(matches!(child.immutable, Some(Immutable::All)), "a namespace's repositories keep it");
    }

    #[test]
    fn namespaces() {
        let r = parse("a.io/team/*:\n  to: b.io/mirror\n  include_repos: ^app-\n").unwrap();
        assert_eq!((r[0].src.repo.location.registry(), &*r[0].src.repo.name), (Some("a.io"), "team"));
        assert!(r[0].namespace.as_ref().is_some_and(|n| n.admits("app-1") && !n.admits("db")));
        let r = parse("localhost:5000/*: b.io/all\n").unwrap();
        assert_eq!((r[0].src.repo.location.registry(), &*r[0].src.repo.name), (Some("localhost:5000"), ""));
        assert!(parse("team/*: b.io/all\n").is_err(), "a bare name is no registry");
        assert!(parse("a.io/team/*: b.io/all:v1\n").is_err(), "a namespace goes to a prefix");
        let r = parse("docker.io/myorg/*: other.io\n").unwrap();
        assert_eq!(&*r[0].src.repo.name, "myorg", "taken as written, no library/");
        assert_eq!((r[0].dst.repo.location.registry(), &*r[0].dst.repo.name), (Some("other.io"), ""));
    }

    #[test]
    fn rename_counts_must_match() {
        assert!(parse("a.io/x:v1,v2: b.io/x:w1,w2\n").is_ok());
        let e = parse("a.io/x:v1,v2: b.io/x:w1\n").unwrap_err().to_string();
        assert!(e.contains("images.yaml") && e.contains("a.io/x:v1,v2"), "{e}");
        assert!(parse("a.io/x: b.io/x:w1\n").is_err());
        assert!(parse("a.io/x:/v.*/: b.io/x:/w/\n").is_err());
    }

    #[test]
    fn env_in_destination() {
        let env = Env::from_pairs(&[("IMAGE_SYNCER_TEST_NS", "team")]);
        let r = parse_with("a.io/x:v1: b.io/${IMAGE_SYNCER_TEST_NS}/x\n", &env).unwrap();
        assert_eq!(&*r[0].dst.repo.name, "team/x");
        let e = parse_with("a.io/x:v1: b.io/${IMAGE_SYNCER_TEST_UNSET_VAR}/x\n", &env).unwrap_err().to_string();
        assert!(e.contains("IMAGE_SYNCER_TEST_UNSET_VAR"), "{e}");
    }

    #[test]
    fn empty_destination_uses_defaults() {
        assert!(parse("a.io/x/app:v1: \"\"\n").is_err());
        let d = DefaultDest { registry: Some("r.io".into()), namespace: Some("team".into()) };
        let f: ImagesFile = serde_yaml::from_str("a.io/x/app:v1,v2: \"\"\n").unwrap();
        let r = rules(f, Path::new("i.yaml"), &d, &Env::from_pairs(&[])).unwrap();
        assert_eq!((r[0].dst.repo.location.registry(), &*r[0].dst.repo.name), (Some("r.io"), "team/app"));
        assert!(matches!(r[0].dst.selector, Selector::All));
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "c".repeat(64));
        assert!(parse(&format!("a.io/x@{d}: b.io/x\n")).is_ok());
        assert!(parse(&format!("a.io/x@{d}: b.io/x:v1\n")).is_ok());
        assert!(parse(&format!("a.io/x@{d}: b.io/x@{d}\n")).is_ok());
        let other = format!("sha256:{}", "d".repeat(64));
        assert!(parse(&format!("a.io/x@{d}: b.io/x@{other}\n")).is_err());
        assert!(parse(&format!("a.io/x:v1: b.io/x@{d}\n")).is_err());
    }
}
