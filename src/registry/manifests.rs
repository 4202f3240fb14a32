//! Manifest requests: HEAD for cheap "already there?" checks, GET with the byte limit and
//! digest check, PUT with the exact bytes and media type.

use super::client::{header, Body};
use super::{pull_scope, push_scope, Client, Error, ErrorKind};
use crate::manifest::{ACCEPT, DOCKER_V1_SIGNED, MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::digest::Digest;
use crate::reference::Reference;

/// A safety stop against a referrers listing whose `Link` never ends.
const MAX_REFERRER_PAGES: usize = 1000;

/// What the referrers API said.
#[derive(Debug)]
pub enum ReferrersAnswer {
    /// The index of the referrers (all pages).
    Listed(Vec<u8>),
    /// The registry has no referrers API.
    NoApi,
    /// Cannot tell for now (the repository does not exist there yet, or the request was
    /// refused): no referrers from it, and nothing to remember about the registry.
    Unknown,
}

/// What a HEAD told us.
#[derive(Debug, Clone)]
pub struct Head {
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
}

/// A manifest as served: exact bytes, the server's content type, and their digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: Digest,
}

/// Whether a request reads from a source or writes to a destination (decides the token scope,
/// so a destination's HEADs reuse the push token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    pub fn scopes(self, repo: &str) -> Vec<String> {
        match self {
            Access::Pull => vec![pull_scope(repo)],
            Access::Push => vec![push_scope(repo)],
        }
    }
}

impl Client {
    /// HEAD a manifest: `None` when it does not exist.
    pub fn head_manifest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Option<Head>, Error> {
        let what = format!("HEAD manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            let mut r = self.send("HEAD", &url, &access.scopes(repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
            self.rate.observe(&self.registry, |h| header(&r, h));
            match r.status().as_u16() {
                200 => Ok(Some(Head { digest: content_digest(&r), media_type: header(&r, "content-type") })),
                404 => Ok(None),
                _ => Err(Error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// The digest a destination has under `reference`, `None` when it has nothing there. Works
    /// with registries whose `HEAD` leaves out `Docker-Content-Digest` (the digest of a digest
    /// reference, else a `GET` and the digest of its bytes) or refuses `HEAD` (405: a `GET`).
    pub fn manifest_digest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Option<Digest>, Error> {
        match self.head_manifest(repo, reference, access) {
            Ok(Some(Head { digest: Some(d), .. })) => Ok(Some(d)),
            Ok(Some(_)) => match reference.digest() {
                Some(d) => Ok(Some(d.clone())),
                None => Ok(Some(self.get_manifest(repo, reference, access)?.digest)),
            },
            Ok(None) => Ok(None),
            Err(e) if e.status_code() == Some(405) => match self.get_manifest(repo, reference, access) {
                Ok(f) => Ok(Some(f.digest)),
                Err(e) if e.status_code() == Some(404) => Ok(None),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// GET a manifest's exact bytes, verified against a digest reference, or else against the
    /// `Docker-Content-Digest` the registry announced (a body damaged in transit is caught
    /// before it can be pushed anywhere).
    pub fn get_manifest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Fetched, Error> {
        let what = format!("GET manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            // A manifest GET is what a pull budget counts.
            if !self.rate.wait(&self.registry, &what) {
                return Err(Error::new(&self.registry, &what, ErrorKind::Interrupted));
            }
            let mut r = self.send("GET", &url, &access.scopes(repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
            self.rate.observe(&self.registry, |h| header(&r, h));
            if r.status().as_u16() != 200 {
                return Err(Error::status(&self.registry, &what, &mut r));
            }
            let media_type = header(&r, "content-type");
            let announced = content_digest(&r);
            let bytes = self.read_body(r, MAX_MANIFEST_BYTES, &what)?;
            let actual = Digest::of(&bytes);
            // A signed schema1 manifest's announced digest covers its payload without the
            // signatures, not the bytes served.
            let schema1 = media_type.as_deref().is_some_and(|t| t.starts_with(DOCKER_V1_SIGNED));
            let expected = reference.digest().cloned().or(announced.filter(|_| !schema1));
            if let Some(expected) = expected.filter(|e| *e != actual) {
                return Err(Error::new(&self.registry, &what, ErrorKind::DigestMismatch { expected, actual }));
            }
            Ok(Fetched { bytes, media_type, digest: actual })
        })
    }

    /// The referrers API (OCI 1.1): the index of what refers to `digest` (pages the registry
    /// splits with `Link: <…>; rel="next"` merged into one), or `None` when the registry has no
    /// such API (a registry that has it never answers 404; older ones answer 404, some 400, 405
    /// or 501). With `artifact_type` the registry may filter; callers filter again, as the spec
    /// lets a registry ignore it.
    pub fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        access: Access,
    ) -> Result<ReferrersAnswer, Error> {
        let what = format!("GET referrers {repo}@{digest}");
        let query = artifact_type.map(|t| format!("?artifactType={}", super::encode_query(t))).unwrap_or_default();
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}{query}"));
        let invalid = |m: String| Error::new(&self.registry, &what, ErrorKind::Invalid(m));
        let mut merged: Option<serde_json::Value> = None;
        for _ in 0..MAX_REFERRER_PAGES {
            let page = self.retrying(&what, || {
                let mut r =
                    self.send("GET", &url, &access.scopes(repo), &[("Accept", OCI_INDEX)], Body::Empty, &what)?;
                let status = r.status().as_u16();
                if status == 200 {
                    let next = header(&r, "link").and_then(|l| super::tags::next_link(&l));
                    return Ok(Ok((self.read_body(r, MAX_MANIFEST_BYTES, &what)?, next)));
                }
                let e = Error::status(&self.registry, &what, &mut r);
                match (status, &e.kind) {
                    _ if merged.is_some() => Err(e),
                    // A registry error: the repository (or manifest) is not known there yet.
                    (404, ErrorKind::Status { errors, .. }) if !errors.is_empty() => Ok(Err(ReferrersAnswer::Unknown)),
                    // No such route: a registry without the API.
                    (400 | 404 | 405 | 406 | 501, _) => Ok(Err(ReferrersAnswer::NoApi)),
                    (403, _) => Ok(Err(ReferrersAnswer::Unknown)),
                    _ => Err(e),
                }
            })?;
            let (bytes, next) = match page {
                Ok(p) => p,
                Err(answer) => return Ok(answer),
            };
            let mut doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid referrers index: {e}")))?;
            match (&mut merged, doc.get_mut("manifests").and_then(|m| m.as_array_mut())) {
                (None, Some(_)) => merged = Some(doc),
                (Some(all), Some(more)) => {
                    let more = std::mem::take(more);
                    all["manifests"].as_array_mut().expect("checked on the first page").extend(more);
                }
                (_, None) => return Err(invalid("referrers answer has no manifests array".into())),
            }
            match next {
                Some(n) => url = self.resolve(&n),
                None => {
                    return serde_json::to_vec(&merged).map(ReferrersAnswer::Listed).map_err(|e| invalid(e.to_string()))
                }
            }
        }
        Err(invalid("referrers pagination does not end".into()))
    }

    /// DELETE a manifest by tag or digest: `false` when it was not there. A registry that
    /// cannot delete this way answers an error (405 `UNSUPPORTED`, or 400 for a tag).
    pub fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<bool, Error> {
        let what = format!("DELETE manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            let scopes = [format!("repository:{repo}:pull,push,delete")];
            let mut r = self.send("DELETE", &url, &scopes, &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 | 202 | 204 => Ok(true),
                404 => Ok(false),
                _ => Err(Error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// PUT a manifest with exactly these bytes; checks the digest the registry reports.
    pub fn put_manifest(&self, repo: &str, reference: &Reference, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        let what = format!("PUT manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let headers = [("Content-Type", media_type)];
        let expected = Digest::of(bytes);
        self.retrying(&what, || {
            let mut r = self.send("PUT", &url, &Access::Push.scopes(repo), &headers, Body::Bytes(bytes), &what)?;
            let status = r.status().as_u16();
            if status != 201 && status != 200 {
                return Err(Error::status(&self.registry, &what, &mut r));
            }
            match content_digest(&r) {
                Some(got) if got != expected => Err(Error::new(
                    &self.registry,
                    &what,
                    ErrorKind::DigestMismatch { expected: expected.clone(), actual: got },
                )),
                _ => Ok(()),
            }
        })
    }
}

/// The `Docker-Content-Digest` header, when it is a digest we can check.
fn content_digest(r: &ureq::http::Response<ureq::Body>) -> Option<Digest> {
    header(r, "docker-content-digest").and_then(|d| Digest::parse(&d).ok())
}

/// `repo:tag` but `repo@sha256:…`.
fn sep(reference: &Reference) -> char {
    match reference {
        Reference::Tag(_) => ':',
        Reference::Digest(_) => '@',
    }
}
