//! [`MemStore`]: one registry in memory, answering as a registry would — repositories of tags,
//! manifests and blobs each repository has (so "already there" and mounts mean what they mean
//! at a registry), a referrers API that may be missing, deletions — and keeping a record of
//! every operation asked of it, with failures it can be told to answer.
//!
//! Like a registry, it refuses a manifest whose blobs or child manifests it lacks (distribution
//! answers `MANIFEST_BLOB_UNKNOWN`), so a push out of order fails here as it would there; and a
//! blob is read through the real [`BlobSource`], so a damaged one fails the copy.
//!
//! Every error it answers says its attempts are used up ([`Error::exhausted`]), as a registry
//! client's error does after its own retries: the engine never sleeps in a back-off here, and a
//! transient failure waits for the engine's next pass.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::sync::Arc;

use parking_lot::Mutex;

use super::build::Image;
use crate::digest::Digest;
use crate::manifest::{entries, Kind, Manifest, MediaType};
use crate::reference::{Location, Reference, Repository};
use crate::store::{
    Access, ApiError, BlobSource, Error, ErrorCode, ErrorKind, Fetched, Head, Mount, Origin, ReferrersAnswer, Session,
    Store,
};

/// An operation of the [`Store`] interface, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    HeadManifest,
    GetManifest,
    PutManifest,
    DeleteManifest,
    Referrers,
    ListTags,
    Catalog,
    BlobSize,
    GetBlob,
    MountBlob,
    PutBlob,
}

impl Op {
    /// Whether the operation changes the store.
    fn writes(self) -> bool {
        matches!(self, Op::PutManifest | Op::DeleteManifest | Op::MountBlob | Op::PutBlob)
    }
}

/// One operation asked of the store: on which repository, for which tag or digest (empty for
/// a listing), and for a manifest push whether it was the image itself (`top`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub repo: String,
    pub target: String,
    pub top: bool,
}

/// An operation to answer with an HTTP `status` the next `left` times it is asked (for
/// `target` only, when given).
struct Fault {
    op: Op,
    target: Option<String>,
    left: usize,
    status: u16,
}

#[derive(Default)]
struct Repo {
    tags: BTreeMap<String, Digest>,
    manifests: HashMap<Digest, (Vec<u8>, MediaType)>,
    blobs: HashMap<Digest, Vec<u8>>,
}

pub struct MemStore {
    name: String,
    referrers_api: bool,
    repos: Mutex<BTreeMap<String, Repo>>,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
    /// What it says other stores hold ([`Store::held_at`]), as a delta bundle does.
    held_at: Mutex<HashMap<Digest, Vec<Repository>>>,
}

impl MemStore {
    /// An empty registry `name` (`host`) with the referrers API.
    pub fn new(name: &str) -> Arc<MemStore> {
        MemStore::with_referrers_api(name, true)
    }

    /// An empty registry `name` without the referrers API (it answers [`ReferrersAnswer::NoApi`]).
    pub fn without_referrers_api(name: &str) -> Arc<MemStore> {
        MemStore::with_referrers_api(name, false)
    }

    /// An empty registry `name`, with the referrers API or without.
    pub fn with_referrers_api(name: &str, referrers_api: bool) -> Arc<MemStore> {
        Arc::new(MemStore {
            name: name.to_string(),
            referrers_api,
            repos: Mutex::default(),
            calls: Mutex::default(),
            faults: Mutex::default(),
            held_at: Mutex::default(),
        })
    }

    /// Where it serves: the registry location of its name.
    pub fn location(&self) -> Location {
        Location::Registry(self.name.as_str().into())
    }

    // Seeding and looking (not recorded).

    /// Store `image` in `repo` — its blobs, its children, itself — under `tag` when given.
    pub fn add(&self, repo: &str, tag: Option<&str>, image: &Image) {
        for child in &image.children {
            self.add(repo, None, child);
        }
        let mut repos = self.repos.lock();
        let r = repos.entry(repo.to_string()).or_default();
        for blob in &image.blobs {
            r.blobs.insert(Digest::of(blob), blob.clone());
        }
        r.manifests.insert(image.digest.clone(), (image.bytes.clone(), image.media_type.clone()));
        if let Some(t) = tag {
            r.tags.insert(t.to_string(), image.digest.clone());
        }
    }

    /// Say that `at` holds the blob `digest` (as a delta bundle says of the blobs it left out).
    pub fn say_held_at(&self, digest: &Digest, at: Repository) {
        self.held_at.lock().entry(digest.clone()).or_default().push(at);
    }

    /// Change the last byte of a stored blob: same length, another digest.
    pub fn damage(&self, repo: &str, digest: &Digest) {
        let mut repos = self.repos.lock();
        let blob = repos.get_mut(repo).and_then(|r| r.blobs.get_mut(digest)).expect("a stored blob");
        *blob.last_mut().expect("not empty") ^= 1;
    }

    /// Take the blob or manifest `digest` out of `repo` (its tags stay, dangling).
    pub fn remove(&self, repo: &str, digest: &Digest) {
        if let Some(r) = self.repos.lock().get_mut(repo) {
            r.blobs.remove(digest);
            r.manifests.remove(digest);
        }
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        self.repos.lock().get(repo).and_then(|r| r.tags.get(tag).cloned())
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.repos.lock().get(repo).map(|r| r.tags.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        self.repos.lock().get(repo).is_some_and(|r| r.blobs.contains_key(digest))
    }

    /// The bytes of a manifest `repo` has.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Option<Vec<u8>> {
        self.repos.lock().get(repo).and_then(|r| r.manifests.get(digest)).map(|(b, _)| b.clone())
    }

    /// The digests the index `digest` in `repo` lists.
    pub fn listed(&self, repo: &str, digest: &Digest) -> Vec<Digest> {
        let index = self.manifest(repo, digest).expect("a stored index");
        entries(&index).expect("an index").into_iter().map(|e| e.digest).collect()
    }

    // The record.

    /// Answer `op` (on `target` only, when given) with HTTP `status` the next `times` times.
    pub fn fail(&self, op: Op, target: Option<&str>, times: usize, status: u16) {
        self.faults.lock().push(Fault { op, target: target.map(str::to_string), left: times, status });
    }

    /// Every call of `op`, in order.
    pub fn calls(&self, op: Op) -> Vec<Call> {
        self.calls.lock().iter().filter(|c| c.op == op).cloned().collect()
    }

    pub fn count(&self, op: Op) -> usize {
        self.calls(op).len()
    }

    /// The calls of `op` for `target` (a tag, or a digest).
    pub fn count_on(&self, op: Op, target: impl std::fmt::Display) -> usize {
        let target = target.to_string();
        self.calls(op).iter().filter(|c| c.target == target).count()
    }

    /// The tags or digests manifests were pushed under, in order.
    pub fn pushed(&self) -> Vec<String> {
        self.calls(Op::PutManifest).into_iter().map(|c| c.target).collect()
    }

    /// The operations that changed (or tried to change) the store.
    pub fn writes(&self) -> Vec<Call> {
        self.calls.lock().iter().filter(|c| c.op.writes()).cloned().collect()
    }

    /// Record a call, and answer it with an injected failure when one is due.
    fn enter(&self, op: Op, repo: &str, target: &str, top: bool) -> Result<(), Error> {
        self.calls.lock().push(Call { op, repo: repo.to_string(), target: target.to_string(), top });
        let mut faults = self.faults.lock();
        let due =
            faults.iter_mut().find(|f| f.op == op && f.left > 0 && f.target.as_deref().is_none_or(|t| t == target));
        match due {
            Some(f) => {
                f.left -= 1;
                Err(self.status(op, repo, target, f.status, None))
            }
            None => Ok(()),
        }
    }

    /// The error of an answer with `status` (and the registry's `code`).
    fn status(&self, op: Op, repo: &str, target: &str, status: u16, code: Option<ErrorCode>) -> Error {
        let errors = code.into_iter().map(|code| ApiError { code, message: String::new() }).collect();
        self.error(format!("{op:?} {repo} {target}"), ErrorKind::Status { status, errors, retry_after: None })
    }

    fn error(&self, what: String, kind: ErrorKind) -> Error {
        Error { exhausted: true, ..Error::new(&self.name, what, kind) }
    }

    /// The manifest `reference` names in `repo`: its digest, bytes and type.
    fn lookup(&self, repo: &Repository, reference: &Reference) -> Option<(Digest, Vec<u8>, MediaType)> {
        let repos = self.repos.lock();
        let r = repos.get(&*repo.name)?;
        let digest = match reference {
            Reference::Tag(t) => r.tags.get(t)?,
            Reference::Digest(d) => d,
        };
        let (bytes, t) = r.manifests.get(digest)?;
        Some((digest.clone(), bytes.clone(), t.clone()))
    }

    fn stored(&self, repo: &str, digest: &Digest) -> Option<Vec<u8>> {
        self.repos.lock().get(repo).and_then(|r| r.blobs.get(digest).cloned())
    }

    /// What refers to `subject` in `repo`, of `artifact_type` when given, as the API lists it.
    fn listing(&self, repo: &str, subject: &Digest, artifact_type: Option<&MediaType>) -> Vec<u8> {
        let repos = self.repos.lock();
        let mut found: Vec<(Digest, serde_json::Value)> = Vec::new();
        for (digest, (bytes, media_type)) in repos.get(repo).map(|r| &r.manifests).into_iter().flatten() {
            let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
            let kind = doc.get("artifactType").and_then(|t| t.as_str()).unwrap_or_default();
            if doc["subject"]["digest"] != subject.as_str() || artifact_type.is_some_and(|t| t.as_str() != kind) {
                continue;
            }
            let d = serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": bytes.len(), "artifactType": kind,
            });
            found.push((digest.clone(), d));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let list: Vec<_> = found.into_iter().map(|(_, d)| d).collect();
        serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": list}),
        )
        .expect("serialisable")
    }
}

impl Store for MemStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn head_manifest(&self, repo: &Repository, reference: &Reference, _: Access) -> Result<Option<Head>, Error> {
        self.enter(Op::HeadManifest, &repo.name, reference.as_str(), false)?;
        Ok(self.lookup(repo, reference).map(|(digest, _, t)| Head { digest: Some(digest), media_type: Some(t) }))
    }

    fn get_manifest(&self, repo: &Repository, reference: &Reference, _: Access) -> Result<Fetched, Error> {
        let (name, target) = (&*repo.name, reference.as_str());
        self.enter(Op::GetManifest, name, target, false)?;
        match self.lookup(repo, reference) {
            Some((digest, bytes, t)) => Ok(Fetched { bytes, media_type: Some(t), digest }),
            None => Err(self.status(Op::GetManifest, name, target, 404, Some(ErrorCode::ManifestUnknown))),
        }
    }

    fn put_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
        top: bool,
    ) -> Result<(), Error> {
        let (name, target) = (&*repo.name, reference.as_str());
        self.enter(Op::PutManifest, name, target, top)?;
        let refuse = |code| Err(self.status(Op::PutManifest, name, target, 400, Some(code)));
        let digest = Digest::of(bytes);
        if reference.digest().is_some_and(|d| *d != digest) {
            return refuse(ErrorCode::DigestInvalid);
        }
        let Ok(parsed) = Manifest::parse(bytes, Some(media_type)) else { return refuse(ErrorCode::ManifestInvalid) };
        let mut repos = self.repos.lock();
        let r = repos.entry(name.to_string()).or_default();
        let complete = match &parsed.kind {
            Kind::Image { .. } => parsed.blobs().iter().all(|b| r.blobs.contains_key(&b.digest)),
            Kind::Index { manifests } => manifests.iter().all(|m| r.manifests.contains_key(&m.digest)),
        };
        if !complete {
            drop(repos);
            return refuse(ErrorCode::ManifestBlobUnknown);
        }
        r.manifests.insert(digest.clone(), (bytes.to_vec(), media_type.clone()));
        if let Reference::Tag(t) = reference {
            r.tags.insert(t.clone(), digest);
        }
        Ok(())
    }

    fn delete_manifest(&self, repo: &Repository, reference: &Reference) -> Result<bool, Error> {
        self.enter(Op::DeleteManifest, &repo.name, reference.as_str(), false)?;
        let mut repos = self.repos.lock();
        let Some(r) = repos.get_mut(&*repo.name) else { return Ok(false) };
        Ok(match reference {
            Reference::Tag(t) => r.tags.remove(t).is_some(),
            Reference::Digest(d) => {
                r.tags.retain(|_, at| at != d);
                r.manifests.remove(d).is_some()
            }
        })
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        artifact_type: Option<&MediaType>,
        _: Access,
    ) -> Result<ReferrersAnswer, Error> {
        self.enter(Op::Referrers, &repo.name, digest.as_str(), false)?;
        if !self.referrers_api {
            return Ok(ReferrersAnswer::NoApi);
        }
        Ok(ReferrersAnswer::Listed(self.listing(&repo.name, digest, artifact_type)))
    }

    fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, Error> {
        self.enter(Op::ListTags, &repo.name, "", false)?;
        match self.repos.lock().get(&*repo.name) {
            Some(r) => Ok(r.tags.keys().cloned().collect()),
            None => Err(self.status(Op::ListTags, &repo.name, "", 404, Some(ErrorCode::NameUnknown))),
        }
    }

    fn list_catalog(&self) -> Result<Vec<String>, Error> {
        self.enter(Op::Catalog, "", "", false)?;
        Ok(self.repos.lock().keys().cloned().collect())
    }

    fn blob_size(&self, repo: &Repository, digest: &Digest, _: Access) -> Result<Option<Option<u64>>, Error> {
        self.enter(Op::BlobSize, &repo.name, digest.as_str(), false)?;
        Ok(self.stored(&repo.name, digest).map(|b| Some(b.len() as u64)))
    }

    /// A checked read over the stored bytes: a length other than `size` is refused here, a
    /// damaged body while it is read.
    fn get_blob<'a>(
        &'a self,
        repo: &'a Repository,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        self.enter(Op::GetBlob, &repo.name, digest.as_str(), false)?;
        let Some(bytes) = self.stored(&repo.name, digest) else {
            return Err(self.status(Op::GetBlob, &repo.name, digest.as_str(), 404, Some(ErrorCode::BlobUnknown)));
        };
        let len = bytes.len() as u64;
        if let Some(described) = size.filter(|s| *s != len) {
            let what = Origin::what(self, &repo.name, digest);
            return Err(self.error(what, ErrorKind::LengthMismatch { described, announced: len }));
        }
        Ok(BlobSource::new(self, &repo.name, digest, Some(len), Box::new(Cursor::new(bytes)), None))
    }

    fn held_at(&self, digest: &Digest) -> Vec<Repository> {
        self.held_at.lock().get(digest).cloned().unwrap_or_default()
    }

    fn mount_blob(&self, repo: &Repository, digest: &Digest, from: &str) -> Result<Mount, Error> {
        self.enter(Op::MountBlob, &repo.name, digest.as_str(), false)?;
        let Some(bytes) = self.stored(from, digest) else { return Ok(Mount::NotMounted(None)) };
        self.repos.lock().entry(repo.name.to_string()).or_default().blobs.insert(digest.clone(), bytes);
        Ok(Mount::Mounted)
    }

    /// Read `source` through (it checks length and digest as it goes) and keep what it gave.
    fn put_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        source: &mut BlobSource,
        _: Option<Session>,
    ) -> Result<(), Error> {
        self.enter(Op::PutBlob, &repo.name, digest.as_str(), false)?;
        let mut bytes = Vec::new();
        source.read_to_end(&mut bytes).map_err(|e| Error::io(&self.name, format!("PUT blob {digest}"), e))?;
        self.repos.lock().entry(repo.name.to_string()).or_default().blobs.insert(digest.clone(), bytes);
        Ok(())
    }
}

impl Origin for MemStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn what(&self, repo: &str, digest: &Digest) -> String {
        format!("GET blob {repo}@{digest}")
    }

    fn open_at(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let Some(bytes) = self.stored(repo, digest) else {
            return Err(self.status(Op::GetBlob, repo, digest.as_str(), 404, Some(ErrorCode::BlobUnknown)));
        };
        let rest = bytes.get(offset as usize..).unwrap_or_default().to_vec();
        Ok((Box::new(Cursor::new(rest)), offset))
    }

    fn damaged(&self, what: String, kind: ErrorKind) -> Error {
        self.error(what, kind)
    }
}
