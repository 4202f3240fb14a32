//! A layout as a [`Store`]: each operation answered the way a registry would (a missing tag is
//! "not found", referrers are listed as by the OCI 1.1 API from the stored manifests' `subject`,
//! a blob is "uploaded" into its file), so the engine needs no case of its own for bundles.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::index::Entry;
use super::pending::{self, Op};
use super::{referrer_descriptor, rel, Layout};
use crate::digest::Digest;
use crate::manifest::MediaType;
use crate::reference::{Reference, Repository};
use crate::store::{Access, BlobSource, Error, ErrorKind, Fetched, Head, Origin, ReferrersAnswer, Session, Store};

impl Store for Layout {
    fn name(&self) -> &str {
        &self.location
    }

    /// A tag is there only while its manifest is: an entry whose file was lost (a run that died
    /// rewriting an archive, a hand-edited layout) is copied again, never taken as `unchanged`.
    fn head_manifest(&self, repo: &Repository, reference: &Reference, _: Access) -> Result<Option<Head>, Error> {
        let name = &*repo.name;
        Ok(match reference {
            Reference::Tag(t) => {
                let entry = self.state.lock().index.find(name, t).cloned();
                entry
                    .filter(|e| self.local_len(&e.digest).is_some_and(|len| e.size == 0 || len == e.size))
                    .map(|e| Head { digest: Some(e.digest), media_type: Some(e.media_type).filter(|m| !m.is_empty()) })
            }
            Reference::Digest(d) => self.local_len(d).map(|_| Head { digest: Some(d.clone()), media_type: None }),
        })
    }

    fn get_manifest(&self, repo: &Repository, reference: &Reference, _: Access) -> Result<Fetched, Error> {
        let name = &*repo.name;
        let (digest, media_type, size) = match reference {
            Reference::Tag(t) => match self.state.lock().index.find(name, t) {
                Some(e) => (e.digest.clone(), Some(e.media_type.clone()).filter(|m| !m.is_empty()), Some(e.size)),
                None => {
                    let what = if name.is_empty() { t.to_string() } else { format!("{name}:{t}") };
                    return Err(
                        self.error(format!("read {what}"), ErrorKind::Missing("no such tag in this layout".into()))
                    );
                }
            },
            Reference::Digest(d) => (d.clone(), None, None),
        };
        let bytes = self.read_manifest(&digest, size)?;
        let media_type = media_type.or_else(|| {
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v.get("mediaType").and_then(Value::as_str).map(MediaType::new)
        });
        Ok(Fetched { bytes, media_type, digest })
    }

    /// Store a manifest; a tag (or the image's own digest, `top`) gets an `index.json` entry,
    /// as does a manifest with a `subject` (a referrer is reachable only from there).
    fn put_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
        top: bool,
    ) -> Result<(), Error> {
        let name = &*repo.name;
        // Stored under the digest it is pushed by (sha512 for a child a sha512 index names);
        // pushed by tag, under its sha256, as a registry names it.
        let digest = match reference {
            Reference::Digest(d) => d.algorithm().digest(bytes),
            Reference::Tag(_) => Digest::of(bytes),
        };
        let what = format!("store manifest {}", rel(&digest));
        self.check_writable(&what)?;
        if self.local_len(&digest) != Some(bytes.len() as u64) {
            self.write_file(&digest, &mut &bytes[..])?;
        }
        let doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
        let subject = doc.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str);
        let subject = subject.and_then(|s| Digest::parse(s).ok());
        let size = bytes.len() as u64;
        let entry = match reference {
            Reference::Tag(t) => Some(Entry::new(name, Some(t), &digest, size, media_type, &doc)),
            Reference::Digest(_) if top => Some(Entry::new(name, None, &digest, size, media_type, &doc)),
            Reference::Digest(_) if subject.is_some() => Some(Entry::new("", None, &digest, size, media_type, &doc)),
            Reference::Digest(_) => None,
        };
        let mut state = self.state.lock();
        if let (Some(s), Some(subjects)) = (&subject, state.subjects.as_mut()) {
            let list = subjects.entry(s.clone()).or_default();
            if !list.iter().any(|d| d["digest"] == digest.as_str()) {
                list.push(referrer_descriptor(&doc, &digest, size, media_type));
            }
        }
        if let Some(e) = entry {
            if state.index.put(e.clone()) {
                state.pending.push(Op::Put(e));
                state.dirty = true;
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        drop(state);
        self.save_index(false)
    }

    /// Remove the entry of a tag, or every entry of a digest (`--prune`); blobs stay.
    fn delete_manifest(&self, repo: &Repository, reference: &Reference) -> Result<bool, Error> {
        let name = &*repo.name;
        self.check_writable("delete")?;
        let mut state = self.state.lock();
        let before = state.index.entries.len();
        let op = match reference {
            Reference::Tag(t) => Op::DeleteTag { name: name.to_string(), tag: t.to_string() },
            Reference::Digest(d) => Op::DeleteDigest(d.clone()),
        };
        pending::replay(std::slice::from_ref(&op), &mut state.index);
        let removed = state.index.entries.len() != before;
        if removed {
            state.pending.push(op);
            state.dirty = true;
            // An archive is written out again without it.
            self.changed.store(true, Ordering::Relaxed);
        }
        drop(state);
        self.save_index(false)?;
        Ok(removed)
    }

    fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, Error> {
        Ok(self.state.lock().index.tags(&repo.name))
    }

    /// The image names in the layout. Tagged entries without a name (skopeo's `oci:DIR:tag`)
    /// cannot be placed below a prefix: they are named in a rule of their own.
    fn list_catalog(&self) -> Result<Vec<String>, Error> {
        let state = self.state.lock();
        let unnamed: Vec<&str> =
            state.index.entries.iter().filter(|e| e.name.is_none()).filter_map(|e| e.tag.as_deref()).collect();
        if !unnamed.is_empty() && !self.unnamed_warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{}: tag(s) {} carry no image name (io.containerd.image.name) and are left out; copy them with a rule \
                 of their own: `{}:TAG: registry/repository`",
                self.location,
                unnamed.join(", "),
                self.location
            );
        }
        Ok(state.index.names())
    }

    /// What refers to `subject` among the stored manifests.
    fn referrers(
        &self,
        _: &Repository,
        subject: &Digest,
        artifact_type: Option<&MediaType>,
        _: Access,
    ) -> Result<ReferrersAnswer, Error> {
        let mut state = self.state.lock();
        if state.subjects.is_none() {
            let mut subjects: HashMap<Digest, Vec<Value>> = HashMap::new();
            let untagged: Vec<Entry> = state.index.entries.iter().filter(|e| e.tag.is_none()).cloned().collect();
            for e in untagged {
                let Ok(bytes) = self.read_manifest(&e.digest, Some(e.size)) else { continue };
                let doc: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let s = doc.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str);
                if let Some(s) = s.and_then(|s| Digest::parse(s).ok()) {
                    subjects.entry(s).or_default().push(referrer_descriptor(&doc, &e.digest, e.size, &e.media_type));
                }
            }
            state.subjects = Some(subjects);
        }
        let found = state.subjects.as_ref().and_then(|s| s.get(subject)).cloned().unwrap_or_default();
        let found: Vec<Value> =
            found.into_iter().filter(|d| artifact_type.is_none_or(|t| d["artifactType"] == t.as_str())).collect();
        let doc = json!({ "schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": found });
        Ok(ReferrersAnswer::Listed(serde_json::to_vec(&doc).unwrap_or_default()))
    }

    /// Whether the blob is here — or, for a bundle written with `--base`, in the base (then it
    /// is left out, and recorded so).
    fn blob_size(&self, _: &Repository, digest: &Digest, _: Access) -> Result<Option<Option<u64>>, Error> {
        if let Some(len) = self.local_len(digest) {
            return Ok(Some(Some(len)));
        }
        let Some(&size) = self.base.as_ref().and_then(|b| b.blobs.get(digest)) else { return Ok(None) };
        self.left_out.lock().insert(digest.clone(), size);
        Ok(Some(Some(size)))
    }

    /// Where the site holds a blob this delta bundle left out, as its inventory said.
    fn held_at(&self, digest: &Digest) -> Vec<Repository> {
        self.record.as_ref().map(|r| r.held_at(digest)).unwrap_or_default()
    }

    /// A checked read of a stored blob.
    fn get_blob<'a>(
        &'a self,
        repo: &'a Repository,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        let what = self.what(&repo.name, digest);
        let Some(len) = self.local_len(digest) else { return Err(self.absent(what, digest)) };
        if let Some(s) = size.filter(|s| *s != len) {
            let m = format!("the file is damaged: it has {len} bytes where the manifest says {s}");
            return Err(self.error(what, ErrorKind::Layout(m)));
        }
        let reader = self
            .open_local(digest, 0)
            .map_err(|e| self.error(what.clone(), ErrorKind::Layout(format!("cannot read it: {e}"))))?;
        Ok(BlobSource::new(self, &repo.name, digest, Some(len), reader, None))
    }

    /// Store a blob streamed from `source` (which checks it as it goes). A layout needs no
    /// session: every repository shares one blob store.
    fn put_blob(
        &self,
        _: &Repository,
        digest: &Digest,
        source: &mut BlobSource,
        _: Option<Session>,
    ) -> Result<(), Error> {
        self.check_writable("store blob")?;
        if self.local_len(digest).is_none() {
            self.write_file(digest, source)?;
        }
        Ok(())
    }
}
