//! A registry as a [`Store`]: each operation is one of the API calls of this module's siblings
//! (named by repository path; the typed repository's location is this client's registry). The
//! whole-blob reads are retried as a whole, as every other request is. `Client::name(self, …)`
//! below is the client's own method of that name (it takes the repository path), not this
//! trait's.

use super::Client;
use crate::digest::Digest;
use crate::manifest::MediaType;
use crate::reference::{Reference, Repository};
use crate::store::{
    drain, read_small, Access, BlobSource, Error, Fetched, Head, Mount, ReferrersAnswer, Session, Store,
};

impl Store for Client {
    fn name(&self) -> &str {
        &self.registry
    }

    fn head_manifest(&self, repo: &Repository, reference: &Reference, access: Access) -> Result<Option<Head>, Error> {
        Client::head_manifest(self, &repo.name, reference, access)
    }

    fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &Reference,
        access: Access,
    ) -> Result<Option<Digest>, Error> {
        Client::manifest_digest(self, &repo.name, reference, access)
    }

    fn get_manifest(&self, repo: &Repository, reference: &Reference, access: Access) -> Result<Fetched, Error> {
        Client::get_manifest(self, &repo.name, reference, access)
    }

    fn put_manifest(
        &self,
        repo: &Repository,
        reference: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
        _top: bool,
    ) -> Result<(), Error> {
        Client::put_manifest(self, &repo.name, reference, bytes, media_type)
    }

    fn delete_manifest(&self, repo: &Repository, reference: &Reference) -> Result<bool, Error> {
        Client::delete_manifest(self, &repo.name, reference)
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        artifact_type: Option<&MediaType>,
        access: Access,
    ) -> Result<ReferrersAnswer, Error> {
        Client::referrers(self, &repo.name, digest, artifact_type, access)
    }

    fn list_tags(&self, repo: &Repository) -> Result<Vec<String>, Error> {
        Client::list_tags(self, &repo.name)
    }

    fn list_catalog(&self) -> Result<Vec<String>, Error> {
        Client::list_catalog(self)
    }

    fn blob_size(&self, repo: &Repository, digest: &Digest, access: Access) -> Result<Option<Option<u64>>, Error> {
        Client::blob_size(self, &repo.name, digest, access)
    }

    fn get_blob<'a>(
        &'a self,
        repo: &'a Repository,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        Client::get_blob(self, &repo.name, digest, size)
    }

    fn read_blob(&self, repo: &Repository, digest: &Digest, size: Option<u64>) -> Result<u64, Error> {
        let what = format!("GET blob {}@{digest}", repo.name);
        self.retrying(&what, || drain(&mut Client::get_blob(self, &repo.name, digest, size)?))
    }

    fn get_blob_bytes(&self, repo: &Repository, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
        let what = format!("GET blob {}@{digest}", repo.name);
        self.retrying(&what, || read_small(&mut Client::get_blob(self, &repo.name, digest, None)?, limit))
    }

    fn mount_blob(&self, repo: &Repository, digest: &Digest, from: &str) -> Result<Mount, Error> {
        Client::mount_blob(self, &repo.name, digest, from)
    }

    fn mounts_honoured(&self) -> Option<bool> {
        self.learned.mounts_honoured()
    }

    fn learned(&self) -> Vec<(&'static str, String)> {
        self.learned_facts()
    }

    fn put_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        source: &mut BlobSource,
        session: Option<Session>,
    ) -> Result<(), Error> {
        Client::put_blob(self, &repo.name, digest, source, session)
    }

    fn cancel_upload(&self, repo: &Repository, session: Session) {
        Client::cancel_upload(self, &repo.name, &session)
    }
}
