//! Blob uploads whose body is the download itself — in one `PUT`, or in `PATCH` chunks that
//! resume after a cut — and cross-repository mounts.
//!
//! How to upload is this registry's business, learned as it answers ([`Learned`]) and kept for
//! the rest of the run. Registries answer in documented ways the distribution spec does not
//! foresee, and each is met here:
//!
//! - single-request uploads refused as such — Artifactory answers `404 BLOB_UNKNOWN` and wants
//!   `PATCH` (docker/buildx#196, containerd/containerd#3533), ACR a body over ~20 MB with `413`
//!   (goharbor/harbor#23015), nginx one over `client_max_body_size` with `413`: chunks from then
//!   on;
//! - `PATCH` refused — Artifact Registry has no chunked uploads ("You must use monolithic
//!   uploads", cloud.google.com/artifact-registry/docs/reference/docker-api;
//!   dotnet/sdk-container-builds#287): single requests from then on;
//! - a chunk refused as too large — GHCR caps a `PATCH` at 4 MiB with `416` (ocx-sh/ocx#237,
//!   oras-project/rust-oci-client#37), proxies answer `413`: smaller chunks from then on;
//! - a `PATCH` answered `201 Created` instead of `202 Accepted` (ECR; openai/tart#273): taken
//!   as accepted;
//! - a `Range` that does not advance (ECR; aws/containers-roadmap#2831): the bytes the registry
//!   acknowledged are trusted over a later, lower report, and the final digest check decides;
//!   a chunked upload that fails that check is sent once more in a single request;
//! - a refusal sent before the body is read (`413`, a quota's `401`/`403`), the connection then
//!   closed: bodies of 1 MiB or more (nginx's default `client_max_body_size`) go with
//!   `Expect: 100-continue` (RFC 9110 §10.1.1), so the refusal is read as what it is instead of
//!   a reset half-way through the body.

use std::io::Read;

use super::auth::{delete_scope, pull_scope, push_scope};
use super::client::Body;
use super::error;
use super::http::encode_query;
use super::http::header;
use super::learned::{Choice, Way, PROBE_FROM};
use super::Client;
use crate::digest::Digest;
use crate::retry::Backoff;
use crate::store::{BlobSource, Error, ErrorCode, ErrorKind, Mount, Session};

/// Chunks are never made smaller than this when a registry refuses one as too large.
const MIN_CHUNK: u64 = 64 * 1024;

/// Bodies from this size on are sent with `Expect: 100-continue`: the smallest size limit in the
/// field ([`PROBE_FROM`]), below which no registry refuses a body for its size, and above which
/// the extra round trip is small beside the body.
const EXPECT_FROM: u64 = PROBE_FROM;

/// Why an upload attempt failed, as far as choosing the next attempt goes.
enum Failed {
    /// The registry refused this way of uploading as such (not the blob).
    Refused(Way, Error),
    /// A chunked upload ended with the registry's digest check failing.
    DigestMismatch(Error),
    Other(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Failed {
        Failed::Other(e)
    }
}

impl Failed {
    fn error(&self) -> &Error {
        match self {
            Failed::Refused(_, e) | Failed::DigestMismatch(e) | Failed::Other(e) => e,
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failed::Refused(_, e) | Failed::DigestMismatch(e) | Failed::Other(e) => e,
        }
    }
}

impl Client {
    /// Ask for a cross-repository mount of `digest` from `from` into `repo`. A registry that
    /// does not mount opens an ordinary upload session instead (distribution spec; ECR unless
    /// mounting is enabled, docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html).
    pub(crate) fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount, Error> {
        let what = format!("start upload {repo}@{digest}");
        let query = format!("?mount={}&from={}", encode_query(digest.as_str()), encode_query(from));
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/{query}"));
        let scopes = [push_scope(repo), pull_scope(from)];
        self.retrying(&what, || {
            let mut r = self.send("POST", &url, &scopes, &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                201 => {
                    self.learned.mount_answered(true);
                    Ok(Mount::Mounted)
                }
                202 => {
                    self.learned.mount_answered(false);
                    self.session(&r, &what).map(|s| Mount::NotMounted(Some(s)))
                }
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
    /// expires anyway). distribution asks for the `delete` action (see [`delete_scope`]); a
    /// token server that refuses that scope outright is asked for the push token instead, which
    /// is all some registries want for a cancel.
    pub(crate) fn cancel_upload(&self, repo: &str, session: &Session) {
        let what = format!("cancel upload to {repo}");
        let cancel = |scope: String| self.send("DELETE", session.location(), &[scope], &[], Body::Empty, &what);
        let sent = match cancel(delete_scope(repo)) {
            Err(e) if !e.is_transient() => {
                log::debug!("{e}; cancelling with the push token");
                cancel(push_scope(repo))
            }
            other => other,
        };
        match sent {
            Ok(r) => log::debug!("{}: {what}: HTTP {}", self.registry, r.status().as_u16()),
            Err(e) => log::debug!("{e}"),
        }
    }

    /// Upload the blob `source` streams, in `session` or a new one, the way this registry takes
    /// it. A registry that refuses one way as such is sent the blob again, from its first byte,
    /// in a new session, the other way; a chunked upload whose digest check fails is sent once
    /// more in a single request.
    pub(crate) fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        source: &mut BlobSource,
        session: Option<Session>,
    ) -> Result<(), Error> {
        let mut session = session;
        let mut forced = None;
        let mut digest_retried = false;
        loop {
            let chosen = match forced.take() {
                Some(way) => Some(Choice::forced(way)),
                None => self.learned.choose(source.size()),
            };
            let Some(mut choice) = chosen else {
                let m = "refuses both single-request and chunked (PATCH) blob uploads".to_string();
                return Err(Error::new(&self.registry, format!("upload blob {repo}@{digest}"), ErrorKind::Invalid(m)));
            };
            let way = choice.way;
            let mut current = match session.take() {
                Some(s) => s,
                None => self.start_upload(repo, digest)?,
            };
            let sent = match way {
                Way::Single => self.upload_single(repo, current.location(), digest, source, &mut choice),
                Way::Chunked => self.upload_chunks(repo, &mut current, digest, source),
            };
            // `choice` (a probe, maybe) lives until what this attempt taught is recorded, so that
            // uploads waiting for it see the answer.
            let failed = match sent {
                Ok(()) => {
                    self.learned.worked(way, source.size());
                    return Ok(());
                }
                Err(f) => f,
            };
            if !matches!(failed.error().kind, ErrorKind::Interrupted) {
                self.cancel_upload(repo, &current);
            }
            // Only this registry's own answer can say so (a source's failure travels through
            // the upload body as an error too).
            if failed.error().at != self.registry || source.source_failed() {
                return Err(failed.into_error());
            }
            match failed {
                Failed::Refused(way, e) => {
                    self.learned.refused(way, &e.kind);
                }
                Failed::DigestMismatch(e) if !digest_retried && !self.learned.is_refused(Way::Single) => {
                    log::info!("{}: {}; sending the blob again in a single request", self.registry, e);
                    digest_retried = true;
                    forced = Some(Way::Single);
                }
                other => return Err(other.into_error()),
            }
            source.restart()?;
        }
    }

    /// Send the blob in one `PUT ?digest=` whose body streams from `source`. The probe of
    /// `choice` ends when the registry starts reading the body (or answers).
    fn upload_single(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        source: &mut BlobSource,
        choice: &mut Choice<'_>,
    ) -> Result<(), Failed> {
        let size = source.size();
        let mut body = Reading { inner: source, choice };
        match self.finish_upload(repo, location, digest, Body::Stream(&mut body, size)) {
            Ok(()) => Ok(()),
            Err(e) if e.at == self.registry && refuses_single(&e) => Err(Failed::Refused(Way::Single, e)),
            Err(e) => Err(Failed::Other(e)),
        }
    }

    /// Finish an upload with one PUT (a large body announced with `Expect: 100-continue`).
    fn finish_upload(&self, repo: &str, location: &str, digest: &Digest, body: Body) -> Result<(), Error> {
        let what = format!("upload blob {repo}@{digest}");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", encode_query(digest.as_str()));
        let mut headers = vec![("Content-Type", "application/octet-stream")];
        if expects_continue(&body) {
            headers.push(("Expect", "100-continue"));
        }
        let mut r = self.send("PUT", &url, &[push_scope(repo)], &headers, body, &what)?;
        match r.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(error::status(&self.registry, what, &mut r)),
        }
    }

    /// Upload in chunks of `--chunk-size` (or the smaller size the registry was found to take).
    /// A chunk that fails in transit is resumed from the offset the registry reports (never
    /// below what it acknowledged); a chunk refused as too large is halved.
    fn upload_chunks(
        &self,
        repo: &str,
        session: &mut Session,
        digest: &Digest,
        source: &mut BlobSource,
    ) -> Result<(), Failed> {
        let mut location = session.location().to_string();
        let what = format!("upload blob {repo}@{digest} (chunked)");
        let scopes = [push_scope(repo)];
        let content_type = ("Content-Type", "application/octet-stream");
        let Some(size) = source.size() else {
            // Unknown length (rare: schema1 without Content-Length): one streamed PATCH.
            let headers = [content_type, ("Expect", "100-continue")];
            let mut r = self.send("PATCH", &location, &scopes, &headers, Body::Stream(source, None), &what)?;
            let location = match r.status().as_u16() {
                201 | 202 | 204 => header(&r, "location").map_or_else(|| location.to_string(), |l| self.resolve(&l)),
                _ => return Err(self.patch_refused(&what, &mut r, 0)),
            };
            session.move_to(location.clone());
            return self.finish_chunks(repo, &location, digest);
        };
        let mut chunk = self.learned.chunk_size(self.limits.chunk_size);
        let mut offset = 0u64;
        let mut backoff = Backoff::new();
        while offset < size {
            let len = chunk.min(size - offset);
            source.checkpoint();
            let range = format!("{offset}-{}", offset + len - 1);
            let mut headers = vec![content_type, ("Content-Range", range.as_str())];
            if len >= EXPECT_FROM {
                headers.push(("Expect", "100-continue"));
            }
            let mut body = (&mut *source).take(len);
            let cause =
                match self.send("PATCH", &location, &scopes, &headers, Body::Stream(&mut body, Some(len)), &what) {
                    Ok(r) if matches!(r.status().as_u16(), 201 | 202 | 204) => {
                        if r.status().as_u16() == 201 {
                            self.learned.patch_answered_201();
                        }
                        // The answer's `Range` is not read: ECR's lags behind (see the module
                        // doc); the bytes sent and acknowledged are what counts.
                        if let Some(loc) = header(&r, "location") {
                            location = self.resolve(&loc);
                            session.move_to(location.clone());
                        }
                        offset += len;
                        backoff = Backoff::new();
                        continue;
                    }
                    Ok(mut r) if matches!(r.status().as_u16(), 413 | 416) && len > MIN_CHUNK => {
                        let e = error::status(&self.registry, &what, &mut r);
                        // Too large, or out of step? The registry's offset tells: unchanged
                        // means it took nothing of this chunk.
                        let at = self.resume_offset(repo, &mut location, session, &what, &e)?;
                        if at == offset {
                            let smaller = (len / 2).max(MIN_CHUNK);
                            self.learned.chunk_refused(len, smaller);
                            chunk = smaller;
                            source.rewind_to(offset)?;
                            continue;
                        }
                        log::info!("{}: {what}: resuming at byte {at} after: {}", self.registry, e.kind);
                        source.rewind_to(at)?;
                        offset = at;
                        continue;
                    }
                    Ok(mut r) => return Err(self.patch_refused(&what, &mut r, offset)),
                    Err(e) if source.source_failed() || !e.is_transient() => return Err(e.into()),
                    Err(e) => {
                        let Some(wait) = backoff.next(None, &e) else { return Err(e.into()) };
                        if !crate::stop::sleep(wait) {
                            return Err(Error::new(&self.registry, &what, ErrorKind::Interrupted).into());
                        }
                        e
                    }
                };
            // Resume where the registry says it is, but never before what it acknowledged.
            let at = self.resume_offset(repo, &mut location, session, &what, &cause)?;
            let resume_at = if at < offset {
                log::info!(
                    "{}: {what}: the registry reports {at} bytes after acknowledging {offset}; trusting {offset} \
                     (its digest check decides)",
                    self.registry
                );
                offset
            } else {
                at
            };
            log::info!("{}: {what}: resuming at byte {resume_at} after: {}", self.registry, cause.kind);
            source.rewind_to(resume_at)?;
            offset = resume_at;
        }
        self.finish_chunks(repo, &location, digest)
    }

    /// The closing empty `PUT ?digest=` of a chunked upload.
    fn finish_chunks(&self, repo: &str, location: &str, digest: &Digest) -> Result<(), Failed> {
        self.finish_upload(repo, location, digest, Body::Bytes(&[])).map_err(|e| {
            if e.has_code(&ErrorCode::DigestInvalid) || e.has_code(&ErrorCode::SizeInvalid) {
                Failed::DigestMismatch(e)
            } else {
                Failed::Other(e)
            }
        })
    }

    /// The failure a `PATCH` answer (not 2xx) stands for: the registry refusing chunked
    /// uploads as such, when it says so on the first chunk, or any other error.
    fn patch_refused(&self, what: &str, r: &mut ureq::http::Response<ureq::Body>, offset: u64) -> Failed {
        let e = error::status(&self.registry, what, r);
        if offset == 0 && refuses_patch(&e) {
            Failed::Refused(Way::Chunked, e)
        } else {
            Failed::Other(e)
        }
    }

    /// How many bytes of the upload the registry has, after `cause` interrupted it; an upload
    /// the registry cannot resume is lost (the engine sends the blob again). The session goes on
    /// at the `Location` the status answer names (distribution's carries a new `_state`).
    fn resume_offset(
        &self,
        repo: &str,
        location: &mut String,
        session: &mut Session,
        what: &str,
        cause: &Error,
    ) -> Result<u64, Failed> {
        match self.upload_offset(repo, location) {
            Ok((at, moved)) => {
                if let Some(moved) = moved {
                    session.move_to(moved.clone());
                    *location = moved;
                }
                Ok(at)
            }
            Err(e) if session_gone(&e) => {
                log::info!(
                    "{}: {what}: the registry cannot resume the upload after: {} ({}); restarting the blob",
                    self.registry,
                    cause.kind,
                    e.kind
                );
                let lost = ErrorKind::UploadLost(format!("after: {}", cause.kind));
                Err(Error::new(&self.registry, what, lost).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How many bytes of an upload session the registry has (its `Range: 0-N` answer), and the
    /// `Location` it names for the session, if any.
    fn upload_offset(&self, repo: &str, location: &str) -> Result<(u64, Option<String>), Error> {
        let what = format!("upload status of {repo}");
        self.retrying(&what, || {
            let mut r = self.send("GET", location, &[push_scope(repo)], &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 | 204 => {
                    let range = header(&r, "range").unwrap_or_default();
                    Ok((parse_upload_range(&range), header(&r, "location").map(|l| self.resolve(&l))))
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

/// A body of this size is sent only after the registry said it takes it.
fn expects_continue(body: &Body) -> bool {
    match body {
        Body::Stream(_, len) => len.is_none_or(|l| l >= EXPECT_FROM),
        Body::Bytes(b) => b.len() as u64 >= EXPECT_FROM,
        Body::Empty => false,
    }
}

/// The registry refused a single-request (`PUT` with body) upload as such — not the blob.
/// Artifactory answers `404 BLOB_UNKNOWN` (docker/buildx#196), ACR and nginx `413`, older Pulp
/// `405`/`501`; a `BLOB_UNKNOWN` for the blob being uploaded can only mean the way, not the
/// blob. A refusal of the repository (unknown, or no permission) or of the bytes (digest or
/// size) is no such thing, whichever request of the upload met it.
fn refuses_single(e: &Error) -> bool {
    matches!(e.status_code(), Some(400 | 404 | 405 | 411 | 413 | 415 | 416 | 501))
        && ![
            ErrorCode::DigestInvalid,
            ErrorCode::SizeInvalid,
            ErrorCode::NameUnknown,
            ErrorCode::NameInvalid,
            ErrorCode::Denied,
            ErrorCode::Unauthorized,
        ]
        .iter()
        .any(|c| e.has_code(c))
}

/// The registry refused a `PATCH` as such: the method is not allowed or not implemented, or
/// the registry says `UNSUPPORTED` (Artifact Registry has no chunked uploads).
fn refuses_patch(e: &Error) -> bool {
    matches!(e.status_code(), Some(405 | 501)) || e.has_code(&ErrorCode::Unsupported)
}

/// The upload body, telling `choice` when the registry starts reading it (it took the request).
struct Reading<'a, 'b, 'c> {
    inner: &'a mut BlobSource<'c>,
    choice: &'a mut Choice<'b>,
}

impl Read for Reading<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.choice.accepted();
        self.inner.read(buf)
    }
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
        assert!(refuses_single(&status(405, "")));
        assert!(!refuses_single(&status(404, "NAME_UNKNOWN repository name not known to registry")));
        assert!(!refuses_single(&status(403, "DENIED requested access to the resource is denied")));
        assert!(refuses_single(&status(413, "")));
        assert!(refuses_single(&status(400, "BLOB_UPLOAD_INVALID blob upload invalid")));
        // Artifactory: a single-request upload answered as if the blob were the problem.
        assert!(refuses_single(&status(404, "BLOB_UNKNOWN blob unknown to registry")));
        assert!(!refuses_single(&status(400, "DIGEST_INVALID provided digest did not match uploaded content")));
        assert!(!refuses_single(&status(503, "")));
        assert!(!refuses_single(&Error::new("r", "upload", ErrorKind::Unauthorized("x".into()))));
    }

    #[test]
    fn patch_refusal_is_told_from_other_errors() {
        assert!(refuses_patch(&status(405, "")));
        assert!(refuses_patch(&status(400, "UNSUPPORTED The operation is unsupported.")));
        assert!(!refuses_patch(&status(404, "BLOB_UPLOAD_UNKNOWN blob upload unknown to registry")));
        assert!(!refuses_patch(&status(416, "")));
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), 0);
        assert_eq!(parse_upload_range(""), 0);
        assert_eq!(parse_upload_range("0-1023"), 1024);
        assert_eq!(parse_upload_range("bytes=0-99"), 100);
    }
}
