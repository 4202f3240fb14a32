//! The checked blob stream both stores use: a blob read from a registry or a layout file is
//! checked as it goes — exact length, digest, minimum speed — and hands over exactly the
//! descriptor's number of bytes. A body that ends early, runs long, or whose digest is wrong
//! makes the read fail *before* its last byte is handed over, so whatever it feeds (an upload,
//! a file) is aborted and nothing is committed under a wrong digest, and no destination is left
//! waiting for bytes that never come.
//!
//! A blob never touches the disk (unless a layout is what it is written to) and is never held
//! whole in memory: the source body is read through a fixed buffer straight into the
//! destination.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, ErrorKind};
use crate::digest::{Digest, Hasher};

/// Aborts a body transfer that is slower than the minimum speed, averaged over a window.
pub struct Meter {
    window: Duration,
    min_speed: u64,
    start: Instant,
    bytes: u64,
}

impl Meter {
    /// A meter that wants `min_speed` bytes per second, averaged over `window`.
    pub fn new(window: Duration, min_speed: u64) -> Meter {
        Meter { window, min_speed, start: Instant::now(), bytes: 0 }
    }

    /// Count `n` more bytes; an error once a whole window went by below the minimum speed.
    pub fn add(&mut self, n: usize) -> io::Result<()> {
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
pub trait Origin: Sync {
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
    /// The error for a failed read of the body (a transport classifies its own failures).
    fn read_error(&self, what: String, e: io::Error) -> Error {
        Error::io(self.name(), what, e)
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
    /// The digest's own algorithm (sha256 or sha512).
    hasher: Hasher,
    /// The position and hash state at the start of the current upload chunk.
    checkpoint: (u64, Hasher),
    /// A download's minimum speed (a file has none).
    meter: Option<Meter>,
    /// Set when a read failed because of the source (not because of the upload).
    failed: bool,
    /// Where the position is published for a progress display.
    progress: Option<Arc<AtomicU64>>,
}

impl<'a> BlobSource<'a> {
    /// A checked read of `reader` (the blob from its first byte) from `origin`.
    pub fn new(
        origin: &'a dyn Origin,
        repo: &'a str,
        digest: &'a Digest,
        size: Option<u64>,
        reader: Box<dyn Read + Send>,
        meter: Option<Meter>,
    ) -> BlobSource<'a> {
        let hasher = digest.algorithm().hasher();
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
    pub fn checkpoint(&mut self) {
        self.checkpoint = (self.pos, self.hasher.clone());
    }

    /// Start again from the first byte (a new upload of the whole blob): the source is opened
    /// anew.
    pub fn restart(&mut self) -> Result<(), Error> {
        // Nothing handed over yet (an upload refused before its body was read): the stream is
        // still at its first byte.
        if self.pos == 0 && !self.failed {
            return Ok(());
        }
        self.checkpoint = (0, self.digest.algorithm().hasher());
        self.failed = false;
        self.rewind_to(0)
    }

    /// Position the stream at `offset` (between the checkpoint and the current position) by
    /// re-reading the source from the checkpoint with a `Range` request.
    pub fn rewind_to(&mut self, offset: u64) -> Result<(), Error> {
        let (start, ref hasher) = self.checkpoint;
        // Already there (a chunk refused before its body was read): nothing to re-read.
        if offset == self.pos && offset >= start && !self.failed {
            return Ok(());
        }
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
                .map_err(|e| self.origin.read_error(what.clone(), e))?;
        }
        // The bytes the registry already has are hashed again but not sent again.
        io::copy(&mut (&mut *self).take(offset - start), &mut io::sink())
            .map_err(|e| Error::io(&registry, &what, e))?;
        Ok(())
    }

    /// After the source is read to the end: its digest and length, for a source of unknown size.
    pub fn finish_unknown_size(&mut self) -> io::Result<usize> {
        let actual = self.hasher.digest();
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
                return Err(self.origin.read_error(self.what(), e).into_io());
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
            let actual = self.hasher.digest();
            if actual != *self.digest {
                return Err(self.fail(ErrorKind::DigestMismatch { expected: self.digest.clone(), actual }));
            }
        }
        Ok(n)
    }
}

/// Read `source` to its end and throw it away (an audit of a blob): its length, or the error
/// that says it is missing, cut short, too long or damaged.
pub fn drain(source: &mut BlobSource) -> Result<u64, Error> {
    io::copy(source, &mut io::sink()).map_err(|e| source.origin.read_error(source.what(), e))
}

/// A small blob (an image config) read whole and checked, at most `limit` bytes.
pub fn read_small(source: &mut BlobSource, limit: u64) -> Result<Vec<u8>, Error> {
    let too_large = |s: &BlobSource| Error::new(s.origin.name(), s.what(), ErrorKind::TooLarge(limit));
    if source.size().is_some_and(|s| s > limit) {
        return Err(too_large(source));
    }
    let mut bytes = Vec::new();
    (&mut *source).take(limit + 1).read_to_end(&mut bytes).map_err(|e| source.origin.read_error(source.what(), e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(source));
    }
    if source.size().is_none() {
        source.finish_unknown_size().map_err(|e| source.origin.read_error(source.what(), e))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
