//! Blob requests: existence checks, streamed downloads that hash as they go, cross-repository
//! mounts and monolithic uploads whose body is the download itself.
//!
//! A blob never touches the disk and is never held whole in memory: the source GET body is read
//! through ureq's fixed buffer straight into the destination PUT body, and [`BlobReader`] hashes
//! each chunk on the way through.

use std::io::{self, Read};
use std::sync::atomic::Ordering;

use sha2::{Digest as _, Sha256};

use super::manifests::Access;
use super::{encode_query, header, pull_scope, push_scope, Body, Client, Error, ErrorKind};
use crate::manifest::hex;

/// A blob download that computes its sha256 and length while it is read.
pub struct BlobReader {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    read: u64,
    /// Length announced by the source (`Content-Length`), if any.
    pub length: Option<u64>,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl BlobReader {
    /// Drain what is left (a well-behaved source has nothing left) and check digest and size.
    pub fn verify(mut self, registry: &str, what: &str, digest: &str, size: Option<u64>) -> Result<(), Error> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|e| Error::new(registry, what, ErrorKind::Transport(e.to_string())))?;
        let actual = format!("sha256:{}", hex(&self.hasher.finalize()));
        if actual != digest {
            return Err(Error::new(registry, what, ErrorKind::DigestMismatch { expected: digest.into(), actual }));
        }
        if let Some(expected) = size {
            if expected != self.read {
                return Err(Error::new(registry, what, ErrorKind::SizeMismatch { expected, actual: self.read }));
            }
        }
        Ok(())
    }
}

/// How an upload session started.
pub enum Upload {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// Send the blob to this URL.
    Location(String),
}

impl Client {
    /// `true` when the registry has the blob in `repo`.
    pub fn blob_exists(&self, repo: &str, digest: &str, access: Access) -> Result<bool, Error> {
        let what = format!("HEAD blob {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut r = self.send("HEAD", &url, &access.scopes(repo), &[], Body::Empty, &what)?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            s => Err(Error::status(&self.registry, what, s, r.body_mut())),
        }
    }

    /// Start downloading a blob.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Result<BlobReader, Error> {
        let what = format!("GET blob {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let mut r = self.send("GET", &url, &[pull_scope(repo)], &[], Body::Empty, &what)?;
        let status = r.status().as_u16();
        if status != 200 {
            return Err(Error::status(&self.registry, what, status, r.body_mut()));
        }
        let length = header(&r, "content-length").and_then(|l| l.parse().ok());
        let inner = Box::new(r.into_body().into_reader());
        Ok(BlobReader { inner, hasher: Sha256::new(), read: 0, length })
    }

    /// A small blob (an image config) read whole, verified, at most `limit` bytes.
    pub fn get_blob_bytes(&self, repo: &str, digest: &str, limit: u64) -> Result<Vec<u8>, Error> {
        let what = format!("GET blob {repo}@{digest}");
        let mut reader = self.get_blob(repo, digest)?;
        let mut bytes = Vec::new();
        (&mut reader)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(&self.registry, &what, ErrorKind::Transport(e.to_string())))?;
        if bytes.len() as u64 > limit {
            return Err(Error::new(&self.registry, what, ErrorKind::TooLarge(limit)));
        }
        reader.verify(&self.registry, &what, digest, None)?;
        Ok(bytes)
    }

    /// Open an upload session; with `mount_from`, first ask for a cross-repository mount.
    pub fn start_upload(&self, repo: &str, digest: &str, mount_from: Option<&str>) -> Result<Upload, Error> {
        let what = format!("start upload {repo}@{digest}");
        let mut path = format!("/v2/{repo}/blobs/uploads/");
        let mut scopes = vec![push_scope(repo)];
        if let Some(from) = mount_from {
            path.push_str(&format!("?mount={}&from={}", encode_query(digest), encode_query(from)));
            scopes.push(pull_scope(from));
        }
        let mut r = self.send("POST", &self.url(&path), &scopes, &[], Body::Empty, &what)?;
        match r.status().as_u16() {
            201 if mount_from.is_some() => Ok(Upload::Mounted),
            202 => match header(&r, "location") {
                Some(loc) => Ok(Upload::Location(self.resolve(&loc))),
                None => Err(Error::new(&self.registry, what, ErrorKind::Invalid("202 without Location".into()))),
            },
            s => Err(Error::status(&self.registry, what, s, r.body_mut())),
        }
    }

    /// Send the blob to an upload session: one `PUT ?digest=` whose body streams from `body`,
    /// or, for registries that refuse that ([`Client::uses_patch_uploads`]), a streamed `PATCH`
    /// and then an empty `PUT ?digest=` (what docker itself does).
    pub fn upload_blob(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        body: &mut dyn Read,
        length: Option<u64>,
    ) -> Result<(), Error> {
        if !self.uses_patch_uploads() {
            return self.put_blob(repo, location, digest, body, length);
        }
        let what = format!("upload blob {repo}@{digest} (PATCH)");
        let headers = [("Content-Type", "application/octet-stream")];
        let mut r = self.send("PATCH", location, &[push_scope(repo)], &headers, Body::Stream(body, length), &what)?;
        let location = match r.status().as_u16() {
            202 | 204 => match header(&r, "location") {
                Some(loc) => self.resolve(&loc),
                None => location.to_string(),
            },
            s => return Err(Error::status(&self.registry, what, s, r.body_mut())),
        };
        self.put_blob(repo, &location, digest, &mut io::empty(), Some(0))
    }

    /// Finish an upload with one PUT whose body streams from `body`.
    fn put_blob(
        &self,
        repo: &str,
        location: &str,
        digest: &str,
        body: &mut dyn Read,
        length: Option<u64>,
    ) -> Result<(), Error> {
        let what = format!("upload blob {repo}@{digest}");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", encode_query(digest));
        let headers = [("Content-Type", "application/octet-stream")];
        let mut r = self.send("PUT", &url, &[push_scope(repo)], &headers, Body::Stream(body, length), &what)?;
        match r.status().as_u16() {
            201 | 204 => Ok(()),
            s => Err(Error::status(&self.registry, what, s, r.body_mut())),
        }
    }

    /// `true` once the registry is known to refuse single-request uploads (or the auth file
    /// says `chunked_upload: true`).
    pub fn uses_patch_uploads(&self) -> bool {
        self.patch_uploads.load(Ordering::Relaxed)
    }

    /// Switch this registry to PATCH uploads for the rest of the run.
    pub fn use_patch_uploads(&self) {
        self.patch_uploads.store(true, Ordering::Relaxed);
    }
}

impl Error {
    /// The registry refused a single-request (`PUT` with body) upload as such — not the blob.
    /// Some registries (older Pulp, some proxies) only take PATCH uploads.
    pub fn refuses_monolithic_upload(&self) -> bool {
        match &self.kind {
            ErrorKind::Status { status, detail } => {
                matches!(status, 400 | 404 | 405 | 411 | 413 | 415 | 416 | 501)
                    && !detail.contains("DIGEST_INVALID")
                    && !detail.contains("SIZE_INVALID")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, detail: &str) -> Error {
        Error::new("r", "upload", ErrorKind::Status { status, detail: detail.into() })
    }

    #[test]
    fn monolithic_refusal_is_told_from_bad_blobs() {
        assert!(status(405, "").refuses_monolithic_upload());
        assert!(status(400, "BLOB_UPLOAD_INVALID blob upload invalid").refuses_monolithic_upload());
        assert!(
            !status(400, "DIGEST_INVALID provided digest did not match uploaded content").refuses_monolithic_upload()
        );
        assert!(!status(503, "").refuses_monolithic_upload());
        assert!(!Error::new("r", "upload", ErrorKind::Unauthorized("x".into())).refuses_monolithic_upload());
    }
}
