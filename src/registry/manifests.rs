//! Manifest requests: HEAD for cheap "already there?" checks, GET with the byte limit and
//! digest check, PUT with the exact bytes and media type, DELETE.

use super::auth::{delete_scope, push_scope, scopes};
use super::client::Body;
use super::error;
use super::http::header;
use super::Client;
use crate::digest::{Algorithm, Digest};
use crate::manifest::{is_schema1, MediaType, ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::Reference;
use crate::store::{Access, Error, ErrorCode, ErrorKind, Fetched, Head};

impl Client {
    /// HEAD a manifest: `None` when it does not exist.
    pub(crate) fn head_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        access: Access,
    ) -> Result<Option<Head>, Error> {
        let what = format!("HEAD manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            let mut r = self.send("HEAD", &url, &scopes(access, repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
            self.rate.observe(&self.registry, |h| header(&r, h));
            match r.status().as_u16() {
                200 => Ok(Some(Head { digest: content_digest(&r), media_type: content_type(&r) })),
                404 => Ok(None),
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// The digest a destination has under `reference`, `None` when it has nothing there. Works
    /// with registries whose `HEAD` leaves out `Docker-Content-Digest` (the digest of a digest
    /// reference, else a `GET` and the digest of its bytes) or refuses `HEAD` (405: a `GET`).
    pub(crate) fn manifest_digest(
        &self,
        repo: &str,
        reference: &Reference,
        access: Access,
    ) -> Result<Option<Digest>, Error> {
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
    pub(crate) fn get_manifest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Fetched, Error> {
        let what = format!("GET manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            // A manifest GET is what a pull budget counts.
            if !self.rate.wait(&self.registry, &what) {
                return Err(Error::new(&self.registry, &what, ErrorKind::Interrupted));
            }
            let mut r = self.send("GET", &url, &scopes(access, repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
            self.rate.observe(&self.registry, |h| header(&r, h));
            if r.status().as_u16() != 200 {
                return Err(error::status(&self.registry, &what, &mut r));
            }
            let media_type = content_type(&r);
            let announced = content_digest(&r);
            let bytes = self.read_body(r, MAX_MANIFEST_BYTES, &what)?;
            let expected = reference
                .digest()
                .cloned()
                .or_else(|| announced.filter(|_| !signed_schema1(media_type.as_ref(), &bytes)));
            // Checked with the expected digest's own algorithm (a `repo@sha512:…` reference).
            let actual = match &expected {
                Some(e) => e.algorithm().digest(&bytes),
                None => Digest::of(&bytes),
            };
            if let Some(expected) = expected.filter(|e| *e != actual) {
                return Err(Error::new(&self.registry, &what, ErrorKind::DigestMismatch { expected, actual }));
            }
            Ok(Fetched { bytes, media_type, digest: actual })
        })
    }

    /// DELETE a manifest by tag or digest: `false` when it was not there. A registry that
    /// cannot delete this way answers an error (405 `UNSUPPORTED`, or 400 for a tag).
    pub(crate) fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<bool, Error> {
        let what = format!("DELETE manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.retrying(&what, || {
            let scopes = [delete_scope(repo)];
            let mut r = self.send("DELETE", &url, &scopes, &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 | 202 | 204 => Ok(true),
                404 => Ok(false),
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// PUT a manifest with exactly these bytes; checks the digest the registry reports (with
    /// that digest's algorithm: a registry names what it stores by its own, sha256 for
    /// distribution, whatever the reference pushed under).
    pub(crate) fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
    ) -> Result<(), Error> {
        let what = format!("PUT manifest {repo}{}{reference}", sep(reference));
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let headers = [("Content-Type", media_type.as_str())];
        self.retrying(&what, || {
            let mut r = self.send("PUT", &url, &[push_scope(repo)], &headers, Body::Bytes(bytes), &what)?;
            let status = r.status().as_u16();
            if status != 201 && status != 200 {
                let e = error::status(&self.registry, &what, &mut r);
                return Err(match reference.digest() {
                    Some(d) if d.algorithm() != Algorithm::Sha256 && e.has_code(&ErrorCode::DigestInvalid) => {
                        not_by_digest(e, d)
                    }
                    _ => e,
                });
            }
            match content_digest(&r) {
                Some(got) if !got.matches(bytes) => Err(Error::new(
                    &self.registry,
                    &what,
                    ErrorKind::DigestMismatch { expected: got.algorithm().digest(bytes), actual: got },
                )),
                _ => Ok(()),
            }
        })
    }
}

/// The `Content-Type` of a manifest answer.
fn content_type(r: &ureq::http::Response<ureq::Body>) -> Option<MediaType> {
    header(r, "content-type").map(|t| MediaType::from_header(&t))
}

/// Whether an answer may be a signed schema 1 manifest, whose announced digest covers its
/// payload without the signatures, not the bytes served: by its `Content-Type`, or by its body
/// when that type names no manifest (old Artifactory serves schema 1 as `application/json`:
/// moby/moby#19400). Such a manifest is then refused as schema 1, not as damaged in transit.
fn signed_schema1(media_type: Option<&MediaType>, bytes: &[u8]) -> bool {
    match media_type {
        Some(t) if t.names_a_manifest() => *t == MediaType::DOCKER_SCHEMA1_SIGNED,
        _ => is_schema1(bytes),
    }
}

/// A registry that refuses a manifest pushed under a digest of another algorithm than sha256:
/// distribution (2.x and 3.0) computes a manifest's digest with sha256 only and answers 400
/// `DIGEST_INVALID` to any other digest reference, though it takes sha512 blobs and, by tag, a
/// manifest that references them (distribution/distribution#4420).
fn not_by_digest(e: Error, digest: &Digest) -> Error {
    let why = format!(
        "{}; this registry does not take a manifest under a {} digest (distribution names manifests by \
         sha256 only, distribution/distribution#4420): an image whose manifests are all pushed by tag \
         goes in, an index with {} children or a `repo@{}:…` rule does not",
        e.kind,
        digest.algorithm().name(),
        digest.algorithm().name(),
        digest.algorithm().name()
    );
    Error { kind: ErrorKind::Invalid(why), ..e }
}

/// The `Docker-Content-Digest` header, when it is a digest we can check.
fn content_digest(r: &ureq::http::Response<ureq::Body>) -> Option<Digest> {
    header(r, "docker-content-digest").and_then(|d| Digest::parse(&d).ok())
}

/// `repo:tag` but `repo@sha256:…`.
pub(crate) fn sep(reference: &Reference) -> char {
    match reference {
        Reference::Tag(_) => ':',
        Reference::Digest(_) => '@',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_digest_of_schema_1_served_as_json_is_not_checked() {
        let s1 = br#"{"schemaVersion":1,"fsLayers":[],"signatures":[{"signature":"c2ln"}]}"#;
        let v2 = br#"{"schemaVersion":2,"config":{"digest":"sha256:11","size":1}}"#;
        let json = MediaType::from_header("application/json");
        assert!(signed_schema1(Some(&MediaType::DOCKER_SCHEMA1_SIGNED), b""));
        assert!(signed_schema1(Some(&json), s1) && signed_schema1(None, s1));
        assert!(!signed_schema1(Some(&json), v2) && !signed_schema1(None, v2));
        // A manifest type in the header is believed: the body is not read.
        assert!(!signed_schema1(Some(&MediaType::DOCKER_SCHEMA1), s1));
        assert!(!signed_schema1(Some(&MediaType::OCI_MANIFEST), s1));
    }
}
