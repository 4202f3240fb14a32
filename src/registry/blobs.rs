//! Blob requests: existence checks, verified downloads, cross-repository mounts, and uploads
//! whose body is the download itself — in one `PUT`, or in `PATCH` chunks that resume after a
//! cut.
//!
//! A blob never touches the disk and is never held whole in memory: the source GET body is read
//! through a fixed buffer straight into the destination request body, and [`BlobSource`]
//! checks it on the way through. It hands over exactly the descriptor's number of bytes: a body
//! that ends early, runs long, or whose digest is wrong makes the read fail *before* its last
//! byte is sent, so the upload is aborted (its connection dropped) and nothing is committed
//! under a wrong digest, and no destination is left waiting for bytes that never come.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::client::{header, Body};
use super::manifests::Access;
use crate::retry::Backoff;
use super::{encode_query, pull_scope, push_scope, Client, Error, ErrorKind};
use crate::digest::Digest;

/// Chunks are never made smaller than this when a registry answers 413 to one.
const MIN_CHUNK: u64 = 64 * 1024;

/// Aborts a body transfer that is slower than the minimum speed, averaged over a window.
pub(crate) struct Meter {
    window: Duration,
    min_speed: u64,
    start: Instant,
    bytes: u64,
}

impl Meter {
    pub(crate) fn new(client: &Client) -> Meter {
        Meter {
            window: client.limits.stall_timeout,
            min_speed: client.limits.min_speed,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Count `n` more bytes; an error once a whole window went by below the minimum speed.
    pub(crate) fn add(&mut self, n: usize) -> io::Result<()> {
        self.bytes += n as u64;
        let elapsed = self.start.elapsed();
        if elapsed >= self.window {
            let speed = self.bytes as f64 / elapsed.as_secs_f64();
            if speed < self.min_speed as f64 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("too slow: {speed:.0} B/s over {elapsed:.0?}, below --min-speed {} B/s", self.min_speed),
                ));
            }
            self.start = Instant::now();
            self.bytes = 0;
        }
        Ok(())
    }
}

/// Where a blob's bytes come from: a registry (a `GET`, re-opened with `Range`), or a file of
/// an OCI layout.
pub(crate) trait Origin: Sync {
    /// The registry or layout, for errors.
    fn name(&self) -> &str;
    /// The operation, for errors (`GET blob a/b@sha256:…`, `read blobs/sha256/…`).
    fn what(&self, repo: &str, digest: &Digest) -> String;
    /// The blob from byte `offset`, and the offset it really starts at (0 when a registry
    /// ignored the `Range`).
    fn open_at(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error>;
    /// The error for a body that is not what its descriptor says.
    fn damaged(&self, what: String, kind: ErrorKind) -> Error {
        Error::new(self.name(), what, kind)
    }
}

impl Origin for Client {
    fn name(&self) -> &str {
        &self.registry
    }

    fn what(&self, repo: &str, digest: &Digest) -> String {
        format!("GET blob {repo}@{digest}")
    }

    fn open_at(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        self.open_blob(repo, digest, offset)
    }
}

/// A blob download that is checked as it is read: exact length, digest, minimum speed; and
/// that can be re-opened at an offset (a `Range` request) when an upload chunk has to be sent
/// again.
pub struct BlobSource<'a> {
    origin: &'a dyn Origin,
    repo: &'a str,
    digest: &'a Digest,
    /// The descriptor's size, else the `Content-Length` the source announced.
    size: Option<u64>,
    reader: Box<dyn Read + Send>,
    /// Bytes handed over (and hashed) so far.
    pos: u64,
    hasher: Sha256,
    /// The position and hash state at the start of the current upload chunk.
    checkpoint: (u64, Sha256),
    /// A download's minimum speed (a file has none).
    meter: Option<Meter>,
    /// Set when a read failed because of the source (not because of the upload).
    failed: bool,
    /// Where the position is published for a progress display.
    progress: Option<Arc<AtomicU64>>,
}

impl<'a> BlobSource<'a> {
    /// A checked read of `reader` (the blob from its first byte) from `origin`.
    pub(crate) fn new(
        origin: &'a dyn Origin,
        repo: &'a str,
        digest: &'a Digest,
        size: Option<u64>,
        reader: Box<dyn Read + Send>,
        meter: Option<Meter>,
    ) -> BlobSource<'a> {
        let hasher = Sha256::new();
        BlobSource {
            origin,
            repo,
            digest,
            size,
            reader,
            pos: 0,
            checkpoint: (0, hasher.clone()),
            hasher,
            meter,
            failed: false,
            progress: None,
        }
    }

    fn what(&self) -> String {
        self.origin.what(self.repo, self.digest)
    }

    fn fail(&mut self, kind: ErrorKind) -> io::Error {
        self.failed = true;
        self.origin.damaged(self.what(), kind).into_io()
    }

    /// The number of bytes this blob has, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Publish the number of bytes handed over so far in `counter`, as they go.
    pub fn count_into(&mut self, counter: Arc<AtomicU64>) {
        counter.store(self.pos, Ordering::Relaxed);
        self.progress = Some(counter);
    }

    fn publish(&self) {
        if let Some(c) = &self.progress {
            c.store(self.pos, Ordering::Relaxed);
        }
    }

    /// `true` when the last failure came from the source side.
    pub fn source_failed(&self) -> bool {
        self.failed
    }

    /// Remember the current position: a later [`Self::rewind_to`] may go back to it.
    fn checkpoint(&mut self) {
        self.checkpoint = (self.pos, self.hasher.clone());
    }

    /// Position the stream at `offset` (between the checkpoint and the current position) by
    /// re-reading the source from the checkpoint with a `Range` request.
    fn rewind_to(&mut self, offset: u64) -> Result<(), Error> {
        let (start, ref hasher) = self.checkpoint;
        if offset < start || offset > self.pos {
            return Err(Error::new(
                self.origin.name(),
                self.what(),
                ErrorKind::Invalid(format!("cannot resume at byte {offset} (chunk started at {start})")),
            ));
        }
        self.hasher = hasher.clone();
        self.pos = start;
        self.publish();
        let (reader, from) = self.origin.open_at(self.repo, self.digest, start)?;
        self.reader = reader;
        let what = self.what();
        let registry = self.origin.name().to_string();
        if from < start {
            log::info!("{registry}: {what}: the source ignores Range requests; re-reading from byte 0");
            io::copy(&mut (&mut self.reader).take(start - from), &mut io::sink())
                .map_err(|e| Error::io(&registry, &what, e))?;
        }
        // The bytes the registry already has are hashed again but not sent again.
        io::copy(&mut (&mut *self).take(offset - start), &mut io::sink())
            .map_err(|e| Error::io(&registry, &what, e))?;
        Ok(())
    }

    /// After the source is read to the end: its digest and length, for a source of unknown size.
    pub(crate) fn finish_unknown_size(&mut self) -> io::Result<usize> {
        let actual = Digest::from_sha256(&self.hasher.clone().finalize());
        if actual != *self.digest {
            return Err(self.fail(ErrorKind::DigestMismatch { expected: self.digest.clone(), actual }));
        }
        Ok(0)
    }
}

impl Read for BlobSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if crate::stop::requested() {
            return Err(self.fail(ErrorKind::Interrupted));
        }
        let want = match self.size {
            Some(size) if self.pos >= size => return Ok(0),
            Some(size) => buf.len().min((size - self.pos) as usize),
            None => buf.len(),
        };
        let n = match self.reader.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                self.failed = true;
                return Err(Error::io(self.origin.name(), self.what(), e).into_io());
            }
        };
        if n == 0 {
            return match self.size {
                Some(size) => Err(self.fail(ErrorKind::SizeMismatch { expected: size, actual: self.pos })),
                None => self.finish_unknown_size(),
            };
        }
        if let Some(Err(e)) = self.meter.as_mut().map(|m| m.add(n)) {
            self.failed = true;
            return Err(Error::io(self.origin.name(), self.what(), e).into_io());
        }
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        self.publish();
        if self.size == Some(self.pos) {
            // The last bytes: hand them over only if the source has nothing more and the
            // digest is right, so a bad blob can never complete an upload.
            let mut extra = [0u8; 1];
            if matches!(self.reader.read(&mut extra), Ok(1..)) {
                let size = self.pos;
                return Err(self.fail(ErrorKind::SizeMismatch { expected: size, actual: size + 1 }));
            }
            let actual = Digest::from_sha256(&self.hasher.clone().finalize());
            if actual != *self.digest {
                return Err(self.fail(ErrorKind::DigestMismatch { expected: self.digest.clone(), actual }));
            }
        }
        Ok(n)
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
    pub fn blob_exists(&self, repo: &str, digest: &Digest, access: Access) -> Result<bool, Error> {
        Ok(self.blob_size(repo, digest, access)?.is_some())
    }

    /// `HEAD` a blob: `None` when `repo` does not have it, else the `Content-Length` the
    /// registry announces (when it announces one).
    pub fn blob_size(&self, repo: &str, digest: &Digest, access: Access) -> Result<Option<Option<u64>>, Error> {
        let what = format!("HEAD blob {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        self.retrying(&what, || {
            let mut r = self.send("HEAD", &url, &access.scopes(repo), &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 => Ok(Some(header(&r, "content-length").and_then(|l| l.parse().ok()))),
                404 => Ok(None),
                _ => Err(Error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// GET a blob from byte `offset`: the body, and the offset it really starts at (0 when the
    /// registry ignored the `Range`).
    fn open_blob(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let (r, from) = self.get_blob_response(repo, digest, offset)?;
        Ok((Box::new(r.into_body().into_reader()), from))
    }

    fn get_blob_response(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<(ureq::http::Response<ureq::Body>, u64), Error> {
        let what = format!("GET blob {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 { &[("Range", &range)] } else { &[] };
        self.retrying(&what, || {
            let mut r = self.send("GET", &url, &[pull_scope(repo)], headers, Body::Empty, &what)?;
            match r.status().as_u16() {
                200 => Ok((r, 0)),
                206 if offset > 0 => Ok((r, offset)),
                _ => Err(Error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// Start a checked download of a blob of `size` bytes (when the manifest says). A
    /// `Content-Length` that differs from `size` is refused here, before any upload starts.
    pub fn get_blob<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        let (r, _) = self.get_blob_response(repo, digest, 0)?;
        let announced = header(&r, "content-length").and_then(|l| l.parse::<u64>().ok());
        if let (Some(expected), Some(actual)) = (size, announced) {
            if expected != actual {
                return Err(Error::new(
                    &self.registry,
                    format!("GET blob {repo}@{digest}"),
                    ErrorKind::LengthMismatch { described: expected, announced: actual },
                ));
            }
        }
        let reader = Box::new(r.into_body().into_reader());
        Ok(BlobSource::new(self, repo, digest, size.or(announced), reader, Some(Meter::new(self))))
    }

    /// Read a blob to its end and throw it away (`--verify-blobs`): an error when it is
    /// missing, cut short, too long, or its digest is wrong. Returns its length.
    pub fn read_blob(&self, repo: &str, digest: &Digest, size: Option<u64>) -> Result<u64, Error> {
        let what = format!("GET blob {repo}@{digest}");
        self.retrying(&what, || {
            let mut source = self.get_blob(repo, digest, size)?;
            io::copy(&mut source, &mut io::sink()).map_err(|e| Error::io(&self.registry, &what, e))
        })
    }

    /// A small blob (an image config) read whole, verified, at most `limit` bytes.
    pub fn get_blob_bytes(&self, repo: &str, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
        let what = format!("GET blob {repo}@{digest}");
        self.retrying(&what, || {
            let mut source = self.get_blob(repo, digest, None)?;
            if source.size().is_some_and(|s| s > limit) {
                return Err(Error::new(&self.registry, &what, ErrorKind::TooLarge(limit)));
            }
            let mut bytes = Vec::new();
            (&mut source).take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(&self.registry, &what, e))?;
            if bytes.len() as u64 > limit {
                return Err(Error::new(&self.registry, &what, ErrorKind::TooLarge(limit)));
            }
            if source.size().is_none() {
                source.finish_unknown_size().map_err(|e| Error::io(&self.registry, &what, e))?;
            }
            Ok(bytes)
        })
    }

    /// Open an upload session; with `mount_from`, first ask for a cross-repository mount.
    pub fn start_upload(&self, repo: &str, digest: &Digest, mount_from: Option<&str>) -> Result<Upload, Error> {
        let what = format!("start upload {repo}@{digest}");
        let mut path = format!("/v2/{repo}/blobs/uploads/");
        let mut scopes = vec![push_scope(repo)];
        if let Some(from) = mount_from {
            path.push_str(&format!("?mount={}&from={}", encode_query(digest.as_str()), encode_query(from)));
            scopes.push(pull_scope(from));
        }
        let url = self.url(&path);
        self.retrying(&what, || {
            let mut r = self.send("POST", &url, &scopes, &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                201 if mount_from.is_some() => Ok(Upload::Mounted),
                202 => match header(&r, "location") {
                    Some(loc) => Ok(Upload::Location(self.resolve(&loc))),
                    None => Err(Error::new(&self.registry, &what, ErrorKind::Invalid("202 without Location".into()))),
                },
                _ => Err(Error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// Cancel an upload session (best effort: registries may not support it, and the session
    /// expires anyway).
    pub fn cancel_upload(&self, repo: &str, location: &str) {
        let what = format!("cancel upload to {repo}");
        match self.send("DELETE", location, &[push_scope(repo)], &[], Body::Empty, &what) {
            Ok(r) => log::debug!("{}: {what}: HTTP {}", self.registry, r.status().as_u16()),
            Err(e) => log::debug!("{e}"),
        }
    }

    /// Send the blob to an upload session: one `PUT ?digest=` whose body streams from
    /// `source`, or, for registries that need it ([`Client::uses_chunked_uploads`]), `PATCH`
    /// chunks and then an empty `PUT ?digest=`.
    pub fn upload_blob(
        &self,
        repo: &str,
        location: &str,
        digest: &Digest,
        source: &mut BlobSource,
    ) -> Result<(), Error> {
        if self.uses_chunked_uploads() {
            return self.upload_chunks(repo, location, digest, source);
        }
        let size = source.size();
        self.put_blob(repo, location, digest, Body::Stream(source, size))
    }

    /// Finish an upload with one PUT.
    fn put_blob(&self, repo: &str, location: &str, digest: &Digest, body: Body) -> Result<(), Error> {
        let what = format!("upload blob {repo}@{digest}");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", encode_query(digest.as_str()));
        let headers = [("Content-Type", "application/octet-stream")];
        let mut r = self.send("PUT", &url, &[push_scope(repo)], &headers, body, &what)?;
        match r.status().as_u16() {
            201 | 204 => Ok(()),
            _ => Err(Error::status(&self.registry, what, &mut r)),
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
                _ => return Err(Error::status(&self.registry, &what, &mut r)),
            };
            return self.put_blob(repo, &location, digest, Body::Bytes(&[]));
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
                        Error::status(&self.registry, &what, &mut r)
                    }
                    Ok(mut r) => return Err(Error::status(&self.registry, &what, &mut r)),
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
                Err(e) if e.upload_session_gone() => {
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
        self.put_blob(repo, &location, digest, Body::Bytes(&[]))
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
                _ => Err(Error::status(&self.registry, &what, &mut r)),
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

impl Error {
    /// The upload session is no more: unknown, or invalid because what the registry stored no
    /// longer matches the session's state (a chunk cut after part of it was written).
    fn upload_session_gone(&self) -> bool {
        matches!(self.status_code(), Some(404 | 416))
            || self.has_code("BLOB_UPLOAD_INVALID")
            || self.has_code("BLOB_UPLOAD_UNKNOWN")
    }

    /// The registry refused a single-request (`PUT` with body) upload as such — not the blob.
    /// Some registries (older Pulp, some proxies) only take PATCH uploads; a proxy's body-size
    /// limit answers 413. A refusal of the repository (unknown, or no permission) is no such
    /// thing, whichever request of the upload met it.
    pub fn refuses_monolithic_upload(&self) -> bool {
        matches!(self.status_code(), Some(400 | 404 | 405 | 411 | 413 | 415 | 416 | 501))
            && ![
                "DIGEST_INVALID",
                "SIZE_INVALID",
                "NAME_UNKNOWN",
                "NAME_INVALID",
                "DENIED",
                "UNAUTHORIZED",
                "BLOB_UNKNOWN",
            ]
            .iter()
            .any(|c| self.has_code(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, detail: &str) -> Error {
        let errors = detail.split_once(' ').map(|(c, m)| (c.to_string(), m.to_string())).into_iter().collect();
        Error::new("r", "upload", ErrorKind::Status { status, errors, retry_after: None })
    }

    #[test]
    fn monolithic_refusal_is_told_from_bad_blobs() {
        assert!(status(405, "").refuses_monolithic_upload());
        assert!(!status(404, "NAME_UNKNOWN repository name not known to registry").refuses_monolithic_upload());
        assert!(!status(403, "DENIED requested access to the resource is denied").refuses_monolithic_upload());
        assert!(status(413, "").refuses_monolithic_upload());
        assert!(status(400, "BLOB_UPLOAD_INVALID blob upload invalid").refuses_monolithic_upload());
        assert!(
            !status(400, "DIGEST_INVALID provided digest did not match uploaded content").refuses_monolithic_upload()
        );
        assert!(!status(503, "").refuses_monolithic_upload());
        assert!(!Error::new("r", "upload", ErrorKind::Unauthorized("x".into())).refuses_monolithic_upload());
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), 0);
        assert_eq!(parse_upload_range(""), 0);
        assert_eq!(parse_upload_range("0-1023"), 1024);
        assert_eq!(parse_upload_range("bytes=0-99"), 100);
    }

    #[test]
    fn meter_catches_a_trickle() {
        let mut m = Meter { window: Duration::from_millis(20), min_speed: 1000, start: Instant::now(), bytes: 0 };
        m.add(1).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(m.add(1).unwrap_err().kind(), io::ErrorKind::TimedOut);
        let mut m = Meter { window: Duration::from_millis(20), min_speed: 10, start: Instant::now(), bytes: 0 };
        std::thread::sleep(Duration::from_millis(30));
        m.add(1000).unwrap();
    }
}
