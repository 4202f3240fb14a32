//! Where images live: a registry, or an OCI layout on disk. The engine works on a [`Store`]
//! and never asks which: the same plan, checks and order serve both, and a layout answers
//! each operation the way a registry would (a missing tag is "not found", its referrers are
//! listed as by the OCI 1.1 API, a blob is "uploaded" into a file).

use std::sync::Arc;

use super::layout::Layout;
use super::{Access, BlobSource, Client, Error, Fetched, Head, ReferrersAnswer, Upload};
use crate::digest::Digest;
use crate::reference::Reference;

#[derive(Clone)]
pub enum Store {
    Registry(Arc<Client>),
    Layout(Arc<Layout>),
}

impl Store {
    /// The registry (`host:port`) or layout (`oci:/path`), as errors and keys name it.
    pub fn name(&self) -> &str {
        match self {
            Store::Registry(c) => &c.registry,
            Store::Layout(l) => &l.location,
        }
    }

    pub fn head_manifest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Option<Head>, Error> {
        match self {
            Store::Registry(c) => c.head_manifest(repo, reference, access),
            Store::Layout(l) => l.head_manifest(repo, reference),
        }
    }

    pub fn manifest_digest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Option<Digest>, Error> {
        match self {
            Store::Registry(c) => c.manifest_digest(repo, reference, access),
            Store::Layout(l) => Ok(l.head_manifest(repo, reference)?.and_then(|h| h.digest)),
        }
    }

    pub fn get_manifest(&self, repo: &str, reference: &Reference, access: Access) -> Result<Fetched, Error> {
        match self {
            Store::Registry(c) => c.get_manifest(repo, reference, access),
            Store::Layout(l) => l.get_manifest(repo, reference),
        }
    }

    /// Store a manifest. `top`: it is the image itself (a layout names it in `index.json` even
    /// when it is pushed by digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
        top: bool,
    ) -> Result<(), Error> {
        match self {
            Store::Registry(c) => c.put_manifest(repo, reference, bytes, media_type),
            Store::Layout(l) => l.put_manifest(repo, reference, bytes, media_type, top),
        }
    }

    pub fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<bool, Error> {
        match self {
            Store::Registry(c) => c.delete_manifest(repo, reference),
            Store::Layout(l) => l.delete_manifest(repo, reference),
        }
    }

    pub fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        access: Access,
    ) -> Result<ReferrersAnswer, Error> {
        match self {
            Store::Registry(c) => c.referrers(repo, digest, artifact_type, access),
            Store::Layout(l) => l.referrers(digest, artifact_type),
        }
    }

    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>, Error> {
        match self {
            Store::Registry(c) => c.list_tags(repo),
            Store::Layout(l) => Ok(l.list_tags(repo)),
        }
    }

    pub fn list_catalog(&self) -> Result<Vec<String>, Error> {
        match self {
            Store::Registry(c) => c.list_catalog(),
            Store::Layout(l) => Ok(l.list_catalog()),
        }
    }

    pub fn blob_exists(&self, repo: &str, digest: &Digest, access: Access) -> Result<bool, Error> {
        Ok(self.blob_size(repo, digest, access)?.is_some())
    }

    /// `None` when the blob is not there, else its size when known.
    pub fn blob_size(&self, repo: &str, digest: &Digest, access: Access) -> Result<Option<Option<u64>>, Error> {
        match self {
            Store::Registry(c) => c.blob_size(repo, digest, access),
            Store::Layout(l) => Ok(l.blob_size(digest).map(Some)),
        }
    }

    pub fn get_blob<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        match self {
            Store::Registry(c) => c.get_blob(repo, digest, size),
            Store::Layout(l) => l.get_blob(repo, digest, size),
        }
    }

    /// Read a blob to its end, checked (`--verify-blobs`). Returns its length.
    pub fn read_blob(&self, repo: &str, digest: &Digest, size: Option<u64>) -> Result<u64, Error> {
        match self {
            Store::Registry(c) => c.read_blob(repo, digest, size),
            Store::Layout(l) => {
                let mut source = l.get_blob(repo, digest, size)?;
                std::io::copy(&mut source, &mut std::io::sink()).map_err(|e| Error::io(&l.location, "read blob", e))
            }
        }
    }

    /// A small blob (a config) read whole and checked, at most `limit` bytes.
    pub fn get_blob_bytes(&self, repo: &str, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
        match self {
            Store::Registry(c) => c.get_blob_bytes(repo, digest, limit),
            Store::Layout(l) => {
                let mut source = l.get_blob(repo, digest, None)?;
                let what = format!("read blob {digest}");
                if source.size().is_some_and(|s| s > limit) {
                    return Err(Error::new(&l.location, what, super::ErrorKind::TooLarge(limit)));
                }
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut source, &mut bytes).map_err(|e| Error::io(&l.location, what, e))?;
                Ok(bytes)
            }
        }
    }

    /// Open an upload; a layout needs no session (and shares one blob store across its
    /// repositories, so there is nothing to mount).
    pub fn start_upload(&self, repo: &str, digest: &Digest, mount_from: Option<&str>) -> Result<Upload, Error> {
        match self {
            Store::Registry(c) => c.start_upload(repo, digest, mount_from),
            Store::Layout(_) => Ok(Upload::Location(String::new())),
        }
    }

    pub fn cancel_upload(&self, repo: &str, location: &str) {
        if let Store::Registry(c) = self {
            c.cancel_upload(repo, location)
        }
    }

    pub fn upload_blob(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        source: &mut BlobSource,
    ) -> Result<(), Error> {
        match self {
            Store::Registry(c) => c.upload_blob(repo, location, digest, source),
            Store::Layout(l) => l.write_blob(digest, source).map(|_| ()),
        }
    }

    pub fn uses_chunked_uploads(&self) -> bool {
        matches!(self, Store::Registry(c) if c.uses_chunked_uploads())
    }

    /// Switch a registry to chunked uploads (see [`Client::use_chunked_uploads`]).
    pub fn use_chunked_uploads(&self) -> Option<u64> {
        match self {
            Store::Registry(c) => {
                c.use_chunked_uploads();
                Some(c.limits.chunk_size)
            }
            Store::Layout(_) => None,
        }
    }
}
