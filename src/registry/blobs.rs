//! Blob reads: existence checks and checked downloads, re-opened at an offset (a `Range`
//! request) when an upload chunk has to be sent again.

use std::io::Read;

use super::auth::{pull_scope, scopes};
use super::client::Body;
use super::error::{self, io_error};
use super::http::header;
use super::Client;
use crate::digest::Digest;
use crate::store::{Access, BlobSource, Error, ErrorKind, Origin};

impl Origin for Client {
    fn name(&self) -> &str {
        &self.registry
    }

    fn what(&self, repo: &str, digest: &Digest) -> String {
        format!("GET blob {repo}@{digest}")
    }

    fn open_at(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let (r, from) = self.get_blob_response(repo, digest, offset)?;
        Ok((Box::new(r.into_body().into_reader()), from))
    }

    fn read_error(&self, what: String, e: std::io::Error) -> Error {
        io_error(&self.registry, what, e)
    }
}

impl Client {
    /// `HEAD` a blob: `None` when `repo` does not have it, else the `Content-Length` the
    /// registry announces (when it announces one).
    pub(crate) fn blob_size(&self, repo: &str, digest: &Digest, access: Access) -> Result<Option<Option<u64>>, Error> {
        let what = format!("HEAD blob {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        self.retrying(&what, || {
            let mut r = self.send("HEAD", &url, &scopes(access, repo), &[], Body::Empty, &what)?;
            match r.status().as_u16() {
                200 => Ok(Some(header(&r, "content-length").and_then(|l| l.parse().ok()))),
                404 => Ok(None),
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// GET a blob from byte `offset`: the answer, and the offset it really starts at (0 when
    /// the registry ignored the `Range`).
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
                _ => Err(error::status(&self.registry, &what, &mut r)),
            }
        })
    }

    /// Start a checked download of a blob of `size` bytes (when the manifest says). A
    /// `Content-Length` that differs from `size` is refused here, before any upload starts.
    pub(crate) fn get_blob<'a>(
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
        Ok(BlobSource::new(self, repo, digest, size.or(announced), reader, Some(self.meter())))
    }
}
