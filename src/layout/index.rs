//! A layout's `index.json`: its top-level entries and the names they carry.
//!
//! Names follow what `docker save` (OCI format) and containerd write, so that bundles load
//! there too: `org.opencontainers.image.ref.name` is the tag, `io.containerd.image.name` the
//! full reference (`registry/repo:tag`). Entries written by other tools may carry only the
//! tag (skopeo's `oci:DIR:tag`) or a full reference as the tag (older buildah); both are
//! understood. Entries without a tag are kept too: referrers (reachable only through
//! index.json) and images stored by digest.
//!
//! What we do not understand is kept, not dropped: every entry keeps its JSON as found, and an
//! entry whose digest names an algorithm we cannot verify is carried along verbatim, in its
//! place, when `index.json` is written again. An entry whose digest is no digest at all (a
//! path, a number) makes the whole index damaged: [`Index::parse`] names it.

use serde_json::{json, Map, Value};

use crate::digest::{unsupported_algorithm, Digest};
use crate::manifest::MediaType;
use crate::reference::parse_repository;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// One top-level entry: the descriptor as found (unknown fields kept), and what it names.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    pub digest: Digest,
    pub media_type: MediaType,
    pub size: u64,
    /// The image name (docker's display form, e.g. `docker.io/library/nginx`), when known.
    pub name: Option<String>,
    pub tag: Option<String>,
}

impl Entry {
    /// Read a descriptor of `index.json`; the fault of one that names no manifest we can read.
    pub fn parse(value: Value) -> Result<Entry, String> {
        let digest = match value.get("digest") {
            Some(Value::String(d)) => Digest::parse(d).map_err(|e| e.to_string())?,
            Some(other) => return Err(format!("its digest {other} is not a string")),
            None => return Err("it has no digest".into()),
        };
        let media_type = MediaType::new(value.get("mediaType").and_then(Value::as_str).unwrap_or_default());
        let size = match value.get("size") {
            None | Some(Value::Null) => 0,
            Some(s) => s.as_u64().ok_or_else(|| format!("its size {s} is not a number of bytes"))?,
        };
        let note = |k: &str| value.get("annotations").and_then(|a| a.get(k)).and_then(Value::as_str);
        let (mut name, mut tag) = (None, note(REF_NAME).map(String::from));
        if let Some(full) = note(IMAGE_NAME) {
            let (n, t) = split_reference(full);
            name = Some(n);
            // containerd's name says the tag when ref.name is missing.
            tag = tag.or(t);
        } else if let Some(t) = tag.clone().filter(|t| t.contains('/')) {
            // A full reference written as the tag.
            let (n, t) = split_reference(&t);
            name = Some(n);
            tag = t;
        }
        Ok(Entry { value, digest, media_type, size, name, tag })
    }

    /// A new entry for a manifest stored under `name` (may be empty) and `tag` (or by digest).
    pub fn new(
        name: &str,
        tag: Option<&str>,
        digest: &Digest,
        size: u64,
        media_type: &MediaType,
        extra: &Value,
    ) -> Entry {
        let mut annotations = Map::new();
        if !name.is_empty() {
            let full = match tag {
                Some(t) => format!("{name}:{t}"),
                None => format!("{name}@{digest}"),
            };
            annotations.insert(IMAGE_NAME.into(), full.into());
        }
        if let Some(t) = tag {
            annotations.insert(REF_NAME.into(), t.into());
        }
        let mut value = json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size });
        if let Some(t) = extra.get("artifactType") {
            value["artifactType"] = t.clone();
        }
        if !annotations.is_empty() {
            value["annotations"] = Value::Object(annotations);
        }
        Entry {
            value,
            digest: digest.clone(),
            media_type: media_type.clone(),
            size,
            name: (!name.is_empty()).then(|| name.to_string()),
            tag: tag.map(String::from),
        }
    }

    /// Whether this entry is `tag` of the image `name` (`""`: an entry that names no image).
    pub fn is(&self, name: &str, tag: &str) -> bool {
        self.tag.as_deref() == Some(tag) && self.name.as_deref().unwrap_or_default() == name
    }
}

/// `registry/repo:tag` → (`registry/repo` in docker's display form, `tag`); a digest
/// reference has no tag.
pub fn split_reference(full: &str) -> (String, Option<String>) {
    let (name, tag) = match full.split_once('@') {
        Some((n, _)) => (n, None),
        None => {
            let slash = full.rfind('/').map_or(0, |p| p + 1);
            match full[slash..].rfind(':') {
                Some(p) => (&full[..slash + p], Some(full[slash + p + 1..].to_string())),
                None => (full, None),
            }
        }
    };
    let name = parse_repository(name).map_or_else(|_| name.to_string(), |r| r.to_string());
    (name, tag)
}

/// How an entry of `index.json` is named in messages: its place (from 1) and its names.
fn label(position: usize, value: &Value) -> String {
    let note = |k: &str| value.get("annotations").and_then(|a| a.get(k)).and_then(Value::as_str);
    match (note(IMAGE_NAME), note(REF_NAME)) {
        (Some(full), _) => format!("index.json entry {} ({full})", position + 1),
        (None, Some(tag)) => format!("index.json entry {} (ref.name {tag:?})", position + 1),
        (None, None) => format!("index.json entry {}", position + 1),
    }
}

/// The `index.json` document: its entries, and its other fields as found.
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub entries: Vec<Entry>,
    pub rest: Map<String, Value>,
    /// Entries whose digest names an algorithm we cannot verify, with their place: never read,
    /// written back as found.
    pub kept: Vec<(usize, Value)>,
}

impl Index {
    /// Parse `index.json`; an entry whose digest is invalid makes it damaged, named in the error.
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        let mut doc: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| format!("index.json is not a JSON object: {e}"))?;
        let manifests = match doc.remove("manifests") {
            Some(Value::Array(m)) => m,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err("index.json: `manifests` is not a list".into()),
        };
        let (mut entries, mut kept) = (Vec::with_capacity(manifests.len()), Vec::new());
        for (i, value) in manifests.into_iter().enumerate() {
            if value.get("digest").and_then(Value::as_str).and_then(unsupported_algorithm).is_some() {
                kept.push((i, value));
                continue;
            }
            let fault = match value {
                Value::Object(_) => match Entry::parse(value.clone()) {
                    Ok(e) => {
                        entries.push(e);
                        continue;
                    }
                    Err(fault) => fault,
                },
                _ => "it is not a descriptor (a JSON object)".to_string(),
            };
            return Err(format!("{}: {fault}", label(i, &value)));
        }
        Ok(Index { entries, rest: doc, kept })
    }

    /// The first entry we could not read (an algorithm we cannot verify), named, when there is
    /// one: a bundle that holds it cannot be imported whole.
    pub fn unreadable(&self) -> Option<String> {
        let (i, value) = self.kept.first()?;
        let digest = value.get("digest").and_then(Value::as_str).unwrap_or_default();
        Some(format!("{}: {}", label(*i, value), crate::digest::InvalidDigest(digest.to_string())))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert("schemaVersion".into(), 2.into());
        doc.insert("mediaType".into(), crate::manifest::MediaType::OCI_INDEX.as_str().into());
        for (k, v) in &self.rest {
            doc.insert(k.clone(), v.clone());
        }
        let mut manifests: Vec<Value> = self.entries.iter().map(|e| e.value.clone()).collect();
        for (i, value) in &self.kept {
            manifests.insert((*i).min(manifests.len()), value.clone());
        }
        doc.insert("manifests".into(), Value::Array(manifests));
        serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default()
    }

    /// The image names with at least one tag.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.entries.iter().filter(|e| e.tag.is_some()).filter_map(|e| e.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The name a bare tag (`oci:DIR:tag`) resolves in: `""` when entries without a name have
    /// tags (a layout skopeo wrote), else the layout's only image name.
    pub fn bare_name(&self) -> Option<String> {
        if self.entries.iter().any(|e| e.tag.is_some() && e.name.is_none()) {
            return Some(String::new());
        }
        match self.names().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// The entry of `tag` in the image `name` (`""`: see [`Index::bare_name`]).
    pub fn find(&self, name: &str, tag: &str) -> Option<&Entry> {
        let name = if name.is_empty() { self.bare_name().unwrap_or_default() } else { name.to_string() };
        self.entries.iter().find(|e| e.is(&name, tag))
    }

    /// The tags of the image `name`.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let name = if name.is_empty() { self.bare_name().unwrap_or_default() } else { name.to_string() };
        self.entries
            .iter()
            .filter(|e| e.name.as_deref().unwrap_or_default() == name)
            .filter_map(|e| e.tag.clone())
            .collect()
    }

    /// Put `entry` in, replacing the one with the same name and tag (or, untagged, digest).
    pub fn put(&mut self, entry: Entry) -> bool {
        let same = |e: &Entry| match &entry.tag {
            Some(t) => e.is(entry.name.as_deref().unwrap_or_default(), t),
            None => e.tag.is_none() && e.digest == entry.digest,
        };
        if let Some(old) = self.entries.iter_mut().find(|e| same(e)) {
            if old.digest == entry.digest && old.media_type == entry.media_type && old.name == entry.name {
                return false;
            }
            *old = entry;
        } else {
            self.entries.push(entry);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker_and_skopeo_write_them() {
        let d = format!("sha256:{}", "a".repeat(64));
        let e =
            |ann: Value| Entry::parse(json!({"mediaType": "m", "digest": d, "size": 1, "annotations": ann})).unwrap();
        let docker = e(json!({IMAGE_NAME: "docker.io/library/nginx:latest", REF_NAME: "latest"}));
        assert_eq!((docker.name.as_deref(), docker.tag.as_deref()), (Some("docker.io/library/nginx"), Some("latest")));
        let skopeo = e(json!({REF_NAME: "v1"}));
        assert_eq!((skopeo.name.as_deref(), skopeo.tag.as_deref()), (None, Some("v1")));
        let buildah = e(json!({REF_NAME: "localhost:5000/app:v2"}));
        assert_eq!((buildah.name.as_deref(), buildah.tag.as_deref()), (Some("localhost:5000/app"), Some("v2")));
        assert_eq!(split_reference("127.0.0.1:5000/a/b"), ("127.0.0.1:5000/a/b".to_string(), None));
        let idx = Index { entries: vec![skopeo.clone()], ..Index::default() };
        assert_eq!(idx.bare_name().as_deref(), Some(""));
        assert!(idx.find("", "v1").is_some());
        let idx = Index { entries: vec![docker], ..Index::default() };
        assert_eq!(idx.find("", "latest").map(|e| e.tag.clone()), Some(Some("latest".into())));
        assert_eq!(idx.tags(""), ["latest"]);
    }

    #[test]
    fn put_replaces_the_same_tag() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut idx = Index::default();
        assert!(idx.put(Entry::new("r.io/x", Some("v1"), &a, 1, &MediaType::new("m"), &Value::Null)));
        assert!(!idx.put(Entry::new("r.io/x", Some("v1"), &a, 1, &MediaType::new("m"), &Value::Null)));
        assert!(idx.put(Entry::new("r.io/x", Some("v1"), &b, 1, &MediaType::new("m"), &Value::Null)));
        assert!(idx.put(Entry::new("r.io/y", Some("v1"), &b, 1, &MediaType::new("m"), &Value::Null)));
        assert_eq!(idx.entries.len(), 2);
        let back = Index::parse(&idx.to_bytes()).unwrap();
        assert_eq!(back.names(), ["r.io/x", "r.io/y"]);
        assert_eq!(back.find("r.io/x", "v1").unwrap().digest, b);
    }

    #[test]
    fn an_invalid_digest_is_named_and_an_unknown_algorithm_kept_in_place() {
        let sha = format!("sha256:{}", "a".repeat(64));
        let bad = json!({"manifests": [
            {"mediaType": "m", "digest": sha, "size": 1},
            {"mediaType": "m", "digest": "../../etc/passwd", "size": 1, "annotations": {REF_NAME: "v1"}},
        ]});
        let e = Index::parse(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(e.starts_with("index.json entry 2 (ref.name \"v1\"): invalid digest \"../../etc/passwd\""), "{e}");
        let e = Index::parse(br#"{"manifests":[{"mediaType":"m","size":1}]}"#).unwrap_err();
        assert_eq!(e, "index.json entry 1: it has no digest");
        assert!(Index::parse(br#"{"manifests":[7]}"#).unwrap_err().contains("not a descriptor"));

        let blake = json!({"mediaType": "m", "digest": "blake3:abcd", "size": 4, "x-unknown": [1]});
        let sha512 = format!("sha512:{}", "b".repeat(128));
        let doc = json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "annotations": {"k": "v"}, "manifests": [
            {"mediaType": "m", "digest": sha, "size": 1},
            blake,
            {"mediaType": "application/x-unknown", "digest": sha512, "size": 9},
        ]});
        let idx = Index::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(idx.entries.len(), 2, "sha512 is understood");
        assert!(idx.unreadable().unwrap().starts_with("index.json entry 2: unsupported digest \"blake3:abcd\""));
        let back: Value = serde_json::from_slice(&idx.to_bytes()).unwrap();
        assert_eq!(back, doc, "written back as found, the unknown entry in its place");
    }
}
