//! Where images live, as a copy sees it: the [`Store`] interface, which the HTTP registry client
//! ([`crate::registry`]) and the OCI layout ([`crate::layout`]) implement side by side, so that
//! the engine plans and copies the same way whichever it reads or writes (regclient's
//! `scheme.API` with `scheme/reg` and `scheme/ocidir`; go-containerregistry's `remote` beside
//! `layout`).
//!
//! The interface speaks the registry API's language — a layout answers each operation the way a
//! registry would (a missing tag is "not found", its referrers are listed as by the OCI 1.1 API,
//! a blob is "uploaded" into a file) — and owns what both sides share: the [`Error`] vocabulary
//! (with the API's [`ErrorCode`]s) and the checked blob stream ([`BlobSource`]).

mod blob;
mod code;
mod error;

pub use blob::{drain, read_small, BlobSource, Meter, Origin};
pub use code::{ApiError, ErrorCode};
pub use error::{Error, ErrorKind};

use crate::digest::Digest;
use crate::manifest::MediaType;
use crate::reference::{Reference, Repository};

/// Whether a request reads from a source or writes to a destination: a registry asks for a
/// token of that scope (so a destination's checks reuse its push token); a layout ignores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// What a manifest `HEAD` told.
#[derive(Debug, Clone)]
pub struct Head {
    pub digest: Option<Digest>,
    pub media_type: Option<MediaType>,
}

/// A manifest as served: exact bytes, the type the store says it is, and their digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: Option<MediaType>,
    pub digest: Digest,
}

/// What a store said about the referrers of a manifest.
#[derive(Debug)]
pub enum ReferrersAnswer {
    /// The index of the referrers (all pages).
    Listed(Vec<u8>),
    /// The store has no referrers API.
    NoApi,
    /// Cannot tell for now (the repository does not exist there yet, or the request was
    /// refused): no referrers from it, and nothing to remember about the store.
    Unknown,
}

/// An upload the store started and has not finished (a registry's upload `Location`).
#[derive(Debug)]
pub struct Session(String);

impl Session {
    pub fn new(location: String) -> Session {
        Session(location)
    }

    pub fn location(&self) -> &str {
        &self.0
    }

    /// The registry named another `Location` for the session (after each chunk): the next
    /// request on it — the closing one, or its cancel — goes there. distribution's `_state`
    /// carries the offset, and a cancel with an older one is answered `BLOB_UPLOAD_INVALID`.
    pub fn move_to(&mut self, location: String) {
        self.0 = location;
    }
}

/// What came of asking for a blob to be mounted from another repository.
#[derive(Debug)]
pub enum Mount {
    /// It is there now: nothing to send.
    Mounted,
    /// Not mounted; a registry that refuses a mount opens an ordinary upload instead, which
    /// the upload that follows uses.
    NotMounted(Option<Session>),
}

/// The operations a copy needs of a place images live.
///
/// Every method names its repository and reference by type; errors name the store
/// ([`Store::name`]) and the operation. The provided methods are what a store gets for free from
/// the required ones; a registry overrides some to retry them as a whole.
pub trait Store: Send + Sync {
    /// The registry (`host:port`) or layout (`oci:/path`), as errors name it.
    fn name(&self) -> &str;

    /// `HEAD` a manifest: `None` when it is not there.
    fn head_manifest(&self, repo: &Repository, reference: &Reference, access: Access) -> Result<Option<Head>, Error>;

    /// The digest the store has under `reference`, `None` when it has nothing there.
    fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &Reference,
        access: Access,
    ) -> Result<Option<Digest>, Error> {
        Ok(self.head_manifest(repo, reference, access)?.and_then(|h| h.digest))
    }

    /// A manifest's exact bytes, checked against its digest.
    fn get_manifest(&self, repo: &Repository, reference: &Reference, access: Access) -> Result<Fetched, Error>;

    /// Store a manifest with exactly these bytes. `top`: it is the image itself (a layout names
    /// it in `index.json` even when it is pushed by digest).
    fn put_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
        top: bool,
    ) -> Result<(), Error>;

    /// Delete a manifest by tag or digest: `false` when it was not there.
    fn delete_manifest(&self, repo: &Repository, reference: &Reference) -> Result<bool, Error>;

    /// What refers to `digest` (OCI 1.1 referrers), of `artifact_type` when given (the store
    /// may ignore the filter: callers filter again).
    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        artifact_type: Option<&MediaType>,
        access: Access,
    ) -> Result<ReferrersAnswer, Error>;

    /// Every tag of `repo`.
    fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, Error>;

    /// Every repository (image name) of the store.
    fn list_catalog(&self) -> Result<Vec<String>, Error>;

    /// `None` when `repo` lacks the blob, else its size when the store says.
    fn blob_size(&self, repo: &Repository, digest: &Digest, access: Access) -> Result<Option<Option<u64>>, Error>;

    fn blob_exists(&self, repo: &Repository, digest: &Digest, access: Access) -> Result<bool, Error> {
        Ok(self.blob_size(repo, digest, access)?.is_some())
    }

    /// Start a checked read of a blob of `size` bytes (when the manifest says). A length the
    /// store announces that differs from `size` is refused here, before any byte is sent on.
    fn get_blob<'a>(
        &'a self,
        repo: &'a Repository,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error>;

    /// Read a blob to its end, checked (`--verify-blobs`). Returns its length.
    fn read_blob(&self, repo: &Repository, digest: &Digest, size: Option<u64>) -> Result<u64, Error> {
        drain(&mut self.get_blob(repo, digest, size)?)
    }

    /// A small blob (a config) read whole and checked, at most `limit` bytes.
    fn get_blob_bytes(&self, repo: &Repository, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
        read_small(&mut self.get_blob(repo, digest, None)?, limit)
    }

    /// Ask for the blob to be mounted from the repository `from` of the same store. A store
    /// whose repositories share one blob store has nothing to mount.
    fn mount_blob(&self, _repo: &Repository, _digest: &Digest, _from: &str) -> Result<Mount, Error> {
        Ok(Mount::NotMounted(None))
    }

    /// Repositories of other stores known to hold the blob `digest` already, though not from
    /// this run: a destination that lacks it may mount it from one of them on its registry. A
    /// delta bundle written from a site's inventory names where the site holds each blob it
    /// left out; other stores name none.
    fn held_at(&self, _digest: &Digest) -> Vec<Repository> {
        Vec::new()
    }

    /// Store the blob streamed from `source` (which checks it as it goes), in `session` when a
    /// refused mount opened one. How (one request or chunks, and switching between them when
    /// the store refuses one) is the store's business.
    fn put_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        source: &mut BlobSource,
        session: Option<Session>,
    ) -> Result<(), Error>;

    /// Give up an upload session opened by a refused mount (best effort).
    fn cancel_upload(&self, _repo: &Repository, _session: Session) {}

    /// Whether cross-repository mounts were honoured in this run: `Some(false)` once asked
    /// and never honoured; `None` when not known (or nothing to mount, as in a layout).
    fn mounts_honoured(&self) -> Option<bool> {
        None
    }

    /// What the run learned about how this store takes uploads, `(fact, value)`, for the
    /// report.
    fn learned(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
