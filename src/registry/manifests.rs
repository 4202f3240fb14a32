//! Manifest requests: HEAD for cheap "already there?" checks, GET with the byte limit and
//! digest check, PUT with the exact bytes and media type.

use super::{header, pull_scope, push_scope, Body, Client, Error, ErrorKind};
use crate::manifest::{digest, ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::is_digest;

/// What a HEAD told us.
#[derive(Debug, Clone)]
pub struct Head {
    pub digest: Option<String>,
    pub media_type: Option<String>,
}

/// A manifest as served: exact bytes, the server's content type, and their digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: String,
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
    pub fn head_manifest(&self, repo: &str, reference: &str, access: Access) -> Result<Option<Head>, Error> {
        let what = format!("HEAD manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut r = self.send("HEAD", &url, &access.scopes(repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
        match r.status().as_u16() {
            200 => Ok(Some(Head {
                digest: header(&r, "docker-content-digest").filter(|d| is_digest(d)),
                media_type: header(&r, "content-type"),
            })),
            404 => Ok(None),
            s => Err(Error::status(&self.registry, what, s, r.body_mut())),
        }
    }

    /// GET a manifest's exact bytes; a digest reference is verified against them.
    pub fn get_manifest(&self, repo: &str, reference: &str, access: Access) -> Result<Fetched, Error> {
        let what = format!("GET manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut r = self.send("GET", &url, &access.scopes(repo), &[("Accept", ACCEPT)], Body::Empty, &what)?;
        let status = r.status().as_u16();
        if status != 200 {
            return Err(Error::status(&self.registry, what, status, r.body_mut()));
        }
        let media_type = header(&r, "content-type");
        let bytes = r.body_mut().with_config().limit(MAX_MANIFEST_BYTES).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                Error::new(&self.registry, &what, ErrorKind::TooLarge(MAX_MANIFEST_BYTES))
            }
            e => Error::transport(&self.registry, &what, e),
        })?;
        let actual = digest(&bytes);
        if is_digest(reference) && actual != reference {
            return Err(Error::new(
                &self.registry,
                what,
                ErrorKind::DigestMismatch { expected: reference.to_string(), actual },
            ));
        }
        Ok(Fetched { bytes, media_type, digest: actual })
    }

    /// PUT a manifest with exactly these bytes; checks the digest the registry reports.
    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8], media_type: &str) -> Result<(), Error> {
        let what = format!("PUT manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let headers = [("Content-Type", media_type)];
        let mut r = self.send("PUT", &url, &Access::Push.scopes(repo), &headers, Body::Bytes(bytes), &what)?;
        let status = r.status().as_u16();
        if status != 201 && status != 200 {
            return Err(Error::status(&self.registry, what, status, r.body_mut()));
        }
        let expected = digest(bytes);
        if let Some(got) = header(&r, "docker-content-digest").filter(|d| is_digest(d)) {
            if got != expected {
                return Err(Error::new(&self.registry, what, ErrorKind::DigestMismatch { expected, actual: got }));
            }
        }
        Ok(())
    }
}
