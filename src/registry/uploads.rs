//! Blob uploads whose body is the download itself — in one `PUT`, or in `PATCH` chunks that
//! resume after a cut — and cross-repository mounts.
//!
//! How to upload is this registry's business, learned as it answers: one that refuses a
//! single-request upload as such (not the blob) is switched to chunks for the rest of the run
//! and the blob is sent again from its first byte.

use std::io::Read;

use super::auth::{pull_scope, push_scope};
use super::client::Body;
use super::error;
use super::http::encode_query;
use super::http::header;
use super::Client;
use crate::digest::Digest;
use crate::retry::Backoff;
use crate::store::{BlobSource, Error, ErrorCode, ErrorKind, Mount, Session};

/// Chunks are never made smaller than this when a registry answers 413 to one.
const MIN_CHUNK: u64 = 64 * 1024;

impl Client {
    /// Ask for a cross-repository mount of `digest` from `from` into `repo`. A registry that
    /// does not mount opens an ordinary upload session instead (distribution spec).
    pub(crate) fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount, Error> {
        let what = format!("start upload {repo}@{digest}");
        let query = format!("?mount={}&from={}", encode_query(digest.as_str()), encode_query(from));
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/{query}"));
        let scopes = [push_scope(repo), pull_scope(from)];
        self.retrying(&what, || {
            let mut r = self.send("POST", &url, &scopes, &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                201 => Ok(Mount::Mounted),
                202 => self.session(&r, &what).map(|s| Mount::NotMounted(Some(s))),
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// Open an upload session.
    fn start_upload(&self, repo: &str, digest: &Digest) -> Result<Session, Error> {
        let what = format!("start upload {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        self.retrying(&what, || {
            let mut r = self.send("POST", &url, &[push_scope(repo)], &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                202 => self.session(&r, &what),
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// The session a `202 Accepted` names in its `Location`.
    fn session(&self, r: &ureq::http::Response<ureq::Body>, what: &str) -> Result<Session, Error> {
        match header(r, "location") {
            Some(loc) => Ok(Session::new(self.resolve(&loc))),
            None => Err(Error::new(&self.registry, what, ErrorKind::Invalid("202 without Location".into()))),
        }
    }

    /// Cancel an upload session (best effort: registries may not support it, and the session
    /// expires anyway).
    pub(crate) fn cancel_upload(&self, repo: &str, session: &Session) {
        let what = format!("cancel upload to {repo}");
        match self.send("DELETE", session.location(), &[push_scope(repo)], &[], Body::Empty, &what) {
            Ok(r) => log::debug!("{}: {what}: HTTP {}", self.registry, r.status().as_u16()),
            Err(e) => log::debug!("{e}"),
        }
    }

    /// Upload the blob `source` streams, in `session` or a new one. A registry that refuses
    /// the single-request upload as such is switched to chunked uploads (for the rest of the
    /// run) and the blob is sent again, from its first byte, in a new session.
    pub(crate) fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        source: &mut BlobSource,
        session: Option<Session>,
    ) -> Result<(), Error> {
        let session = match session {
            Some(s) => s,
            None => self.start_upload(repo, digest)?,
        };
        let e = match self.upload_in(repo, &session, digest, source) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // Only this registry's own answer can say so (a source's failure travels through the
        // upload body as an error too).
        if e.at != self.registry || source.source_failed() || !refuses_monolithic(&e) || self.uses_chunked_uploads() {
            return Err(e);
        }
        self.use_chunked_uploads();
        log::info!(
            "{}: refuses single-request blob uploads ({}); switching to PATCH uploads in chunks of {} bytes",
            self.registry,
            e.kind,
            self.limits.chunk_size
        );
        source.restart()?;
        let session = self.start_upload(repo, digest)?;
        self.upload_in(repo, &session, digest, source)
    }

    /// Send the blob to `session`: one `PUT ?digest=` whose body streams from `source`, or, for
    /// registries that need it ([`Client::uses_chunked_uploads`]), `PATCH` chunks and then an
    /// empty `PUT ?digest=`. A failed upload's session is cancelled.
    fn upload_in(&self, repo: &str, session: &Session, digest: &Digest, source: &mut BlobSource) -> Result<(), Error> {
        let location = session.location();
        let sent = if self.uses_chunked_uploads() {
            self.upload_chunks(repo, location, digest, source)
        } else {
            let size = source.size();
            self.finish_upload(repo, location, digest, Body::Stream(source, size))
        };
        if let Err(e) = &sent {
            if !matches!(e.kind, ErrorKind::Interrupted) {
                self.cancel_upload(repo, session);
            }
        }
        sent
    }

    /// Finish an upload with one PUT.
    fn finish_upload(&self, repo: &str, location: &str, digest: &Digest, body: Body) -> Result<(), Error> {
        let what = format!("upload blob {repo}@{digest}");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", encode_query(digest.as_str()));
        let headers = [("Content-Type", "application/octet-stream")];
        let mut r = self.send("PUT", &url, &[push_scope(repo)], &headers, body, &what)?;
        match r.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(error::status(&self.registry, what, &mut r)),
        }
    }

    /// Upload in chunks of `--chunk-size`. A chunk that fails in transit is resumed from the
    /// offset the registry reports; a chunk answered with 413 is halved.
    fn upload_chunks(&self, repo: &str, location: &str, digest: &Digest, source: &mut BlobSource) -> Result<(), Error> {
        let what = format!("upload blob {repo}@{digest} (chunked)");
        let scopes = [push_scope(repo)];
        let headers = [("Content-Type", "application/octet-stream")];
        let Some(size) = source.size() else {
            // Unknown length (rare: schema1 without Content-Length): one streamed PATCH.
            let mut r = self.send("PATCH", location, &scopes, &headers, Body::Stream(source, None), &what)?;
            let location = match r.status().as_u16() {
                202 | 204 => header(&r, "location").map_or_else(|| location.to_string(), |l| self.resolve(&l)),
                _ => return Err(error::status(&self.registry, &what, &mut r)),
            };
            return self.finish_upload(repo, &location, digest, Body::Bytes(&[]));
        };
        let mut location = location.to_string();
        let mut chunk = self.limits.chunk_size.max(1);
        let mut offset = 0u64;
        let mut backoff = Backoff::new();
        while offset < size {
            let len = chunk.min(size - offset);
            source.checkpoint();
            let range = format!("{offset}-{}", offset + len - 1);
            let headers = [headers[0], ("Content-Range", range.as_str())];
            let mut body = (&mut *source).take(len);
            let cause =
                match self.send("PATCH", &location, &scopes, &headers, Body::Stream(&mut body, Some(len)), &what) {
                    Ok(r) if matches!(r.status().as_u16(), 202 | 204) => {
                        if let Some(loc) = header(&r, "location") {
                            location = self.resolve(&loc);
                        }
                        offset += len;
                        backoff = Backoff::new();
                        continue;
                    }
                    Ok(mut r) if r.status().as_u16() == 413 && chunk > MIN_CHUNK => {
                        chunk = (chunk / 2).max(MIN_CHUNK);
                        log::info!(
                            "{}: {what}: chunk refused as too large (413); now sending {chunk}-byte chunks",
                            self.registry
                        );
                        error::status(&self.registry, &what, &mut r)
                    }
                    Ok(mut r) => return Err(error::status(&self.registry, &what, &mut r)),
                    Err(e) if source.source_failed() || !e.is_transient() => return Err(e),
                    Err(e) => {
                        let Some(wait) = backoff.next(None, &e) else { return Err(e) };
                        if !crate::stop::sleep(wait) {
                            return Err(Error::new(&self.registry, &what, ErrorKind::Interrupted));
                        }
                        e
                    }
                };
            // Resume where the registry says it is, or start over when it cannot say.
            let resume_at = match self.upload_offset(repo, &location) {
                Ok(at) => at,
                Err(e) if session_gone(&e) => {
                    log::info!(
                        "{}: {what}: the registry cannot resume the upload after: {} ({}); restarting the blob",
                        self.registry,
                        cause.kind,
                        e.kind
                    );
                    let lost = ErrorKind::UploadLost(format!("after: {}", cause.kind));
                    return Err(Error::new(&self.registry, &what, lost));
                }
                Err(e) => return Err(e),
            };
            log::info!("{}: {what}: resuming at byte {resume_at} after: {}", self.registry, cause.kind);
            source.rewind_to(resume_at)?;
            offset = resume_at;
        }
        self.finish_upload(repo, &location, digest, Body::Bytes(&[]))
    }

    /// How many bytes of an upload session the registry has: its `Range: 0-N` answer.
    fn upload_offset(&self, repo: &str, location: &str) -> Result<u64, Error> {
        let what = format!("upload status of {repo}");
        self.retrying(&what, || {
            let mut r = self.send("GET", location, &[push_scope(repo)], &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 | 204 => {
                    let range = header(&r, "range").unwrap_or_default();
                    Ok(parse_upload_range(&range))
                }
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }
}

/// `Range: 0-N` (or `bytes=0-N`) → N+1 bytes received; none or `0-0` on an empty session → 0.
fn parse_upload_range(range: &str) -> u64 {
    let r = range.trim().trim_start_matches("bytes=");
    // Registries answer `0-0` for an empty session (and, ambiguously, for one byte): take 0.
    match r.split_once('-').and_then(|(_, end)| end.trim().parse::<u64>().ok()) {
        Some(end) if end > 0 => end + 1,
        _ => 0,
    }
}

/// The upload session is no more: unknown, or invalid because what the registry stored no
/// longer matches the session's state (a chunk cut after part of it was written).
fn session_gone(e: &Error) -> bool {
    matches!(e.status_code(), Some(404 | 416))
        || e.has_code(&ErrorCode::BlobUploadInvalid)
        || e.has_code(&ErrorCode::BlobUploadUnknown)
}

/// The registry refused a single-request (`PUT` with body) upload as such — not the blob.
/// Some registries (older Pulp, some proxies) only take PATCH uploads; a proxy's body-size
/// limit answers 413. A refusal of the repository (unknown, or no permission) is no such
/// thing, whichever request of the upload met it.
fn refuses_monolithic(e: &Error) -> bool {
    matches!(e.status_code(), Some(400 | 404 | 405 | 411 | 413 | 415 | 416 | 501))
        && ![
            ErrorCode::DigestInvalid,
            ErrorCode::SizeInvalid,
            ErrorCode::NameUnknown,
            ErrorCode::NameInvalid,
            ErrorCode::Denied,
            ErrorCode::Unauthorized,
            ErrorCode::BlobUnknown,
        ]
        .iter()
        .any(|c| e.has_code(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, detail: &str) -> Error {
        let errors = detail
            .split_once(' ')
            .map(|(c, m)| crate::store::ApiError { code: ErrorCode::parse(c), message: m.to_string() })
            .into_iter()
            .collect();
        Error::new("r", "upload", ErrorKind::Status { status, errors, retry_after: None })
    }

    #[test]
    fn monolithic_refusal_is_told_from_bad_blobs() {
        assert!(refuses_monolithic(&status(405, "")));
        assert!(!refuses_monolithic(&status(404, "NAME_UNKNOWN repository name not known to registry")));
        assert!(!refuses_monolithic(&status(403, "DENIED requested access to the resource is denied")));
        assert!(refuses_monolithic(&status(413, "")));
        assert!(refuses_monolithic(&status(400, "BLOB_UPLOAD_INVALID blob upload invalid")));
        assert!(!refuses_monolithic(&status(400, "DIGEST_INVALID provided digest did not match uploaded content")));
        assert!(!refuses_monolithic(&status(503, "")));
        assert!(!refuses_monolithic(&Error::new("r", "upload", ErrorKind::Unauthorized("x".into()))));
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), 0);
        assert_eq!(parse_upload_range(""), 0);
        assert_eq!(parse_upload_range("0-1023"), 1024);
        assert_eq!(parse_upload_range("bytes=0-99"), 100);
    }
}
