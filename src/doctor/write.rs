//! The upload probes of `--write REPO`: a tiny throwaway blob each way — one request (`POST`,
//! then `PUT` with the body) and chunked (`POST`, `PATCH`, `PUT`) — then one `PATCH` of
//! [`CAP_PROBE`] bytes that is never committed, and a cross-repository mount.
//!
//! Nothing is tagged and no manifest is written, so no image appears. Every blob written is
//! deleted and every session opened is cancelled (`DELETE`); what the registry refused to
//! delete is named in the cleanup row. Each probe blob holds text unique to this run (time and
//! process id), so deleting it can never unlink a blob anyone else uploaded; a mounted blob is
//! deleted only from a repository that did not have it before.

use std::time::{SystemTime, UNIX_EPOCH};

use super::table::{self, Row};
use crate::digest::Digest;
use crate::manifest::ACCEPT;
use crate::registry::{Answer, Client, Scope};

/// The upload probes, in the order they are printed.
pub const ROWS: [&str; 6] =
    [table::SINGLE, table::PATCH, table::PATCH_STATUS, table::CHUNK_CAP, table::MOUNT, table::CLEANUP];

/// The size of the one large `PATCH`: over GHCR's 4 MiB per-request cap (answered 416 "exceeds …
/// 4.00MiB": ocx-sh/ocx#237, oras-project/rust-oci-client#37), and ECR's 5 MiB minimum part,
/// yet small enough to send once.
pub const CAP_PROBE: u64 = 5 * 1024 * 1024;

const OCTET_STREAM: (&str, &str) = ("Content-Type", "application/octet-stream");

/// What the upload probes found.
pub struct Found {
    pub rows: Vec<Row>,
    /// A single-request upload worked (`Some(true)`), was refused (`Some(false)`), or could not
    /// be tried.
    pub single_request: Option<bool>,
    pub patch: Option<bool>,
    /// A `PATCH` of this many bytes was refused.
    pub chunk_refused: Option<u64>,
}

/// The upload probes against `repo`; `mount_from` is a repository and one of its tags to mount a
/// blob from.
pub fn probe(client: &Client, repo: &str, mount_from: Option<(&str, &str)>) -> Found {
    let mut w = Writer { client, repo, deleted: 0, cancelled: 0, left: Vec::new() };
    let (single_row, single_request) = w.single();
    let (patch_row, status_row, patch) = w.patch();
    let (cap_row, chunk_refused) = match patch {
        Some(true) => w.chunk_cap(),
        _ => (Row::unknown(table::CHUNK_CAP, "PATCH uploads do not work here"), None),
    };
    let mount_row = w.mount(mount_from);
    let rows = vec![single_row, patch_row, status_row, cap_row, mount_row, w.cleanup_row()];
    Found { rows, single_request, patch, chunk_refused }
}

/// Probe text unique to this run and `kind`.
fn probe_blob(kind: &str) -> Vec<u8> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("image-syncer doctor {kind} probe {nanos} {}\n", std::process::id()).into_bytes()
}

/// `?digest=` or `&digest=` after an upload `Location`.
fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", digest.as_str().replace(':', "%3A"))
}

struct Writer<'a> {
    client: &'a Client,
    repo: &'a str,
    deleted: usize,
    cancelled: usize,
    /// What could not be cleaned up, each with the registry's answer.
    left: Vec<String>,
}

impl Writer<'_> {
    /// `POST /v2/REPO/blobs/uploads/`: the session's URL, or why there is none.
    fn start(&self) -> Result<String, String> {
        let url = self.client.url(&format!("/v2/{}/blobs/uploads/", self.repo));
        let a = self.client.probe("POST", &url, Scope::Push(self.repo), &[], &[]).map_err(|e| e.kind.to_string())?;
        match (a.status, a.header("location")) {
            (202, Some(loc)) => Ok(self.client.resolve(&loc)),
            (202, None) => Err("POST answered 202 without Location".into()),
            _ => Err(format!("POST /v2/{}/blobs/uploads/ answered {}", self.repo, a.describe())),
        }
    }

    /// The session at `location`, after `a` (whose `Location`, if any, is the newer one).
    fn next_location(&self, location: &str, a: &Answer) -> String {
        a.header("location").map_or_else(|| location.to_string(), |l| self.client.resolve(&l))
    }

    /// `DELETE` an upload session (the distribution spec's cancel). Like every `DELETE`, it
    /// needs the `delete` action in a token (distribution: registry/handlers/app.go,
    /// appendAccessRecords), not `push`.
    fn cancel(&mut self, location: &str) {
        match self.client.probe("DELETE", location, Scope::Delete(self.repo), &[], &[]) {
            Ok(a) if matches!(a.status, 200 | 202 | 204 | 404) => self.cancelled += 1,
            Ok(a) => self.left.push(format!("an upload session of {} (DELETE answered {})", self.repo, a.describe())),
            Err(e) => self.left.push(format!("an upload session of {} (DELETE failed: {})", self.repo, e.kind)),
        }
    }

    /// `DELETE /v2/REPO/blobs/DIGEST`: unlinks the blob from this repository (distribution
    /// refuses with 405 `UNSUPPORTED` unless deletion is enabled).
    fn delete_blob(&mut self, digest: &Digest, what: &str) {
        let url = self.client.url(&format!("/v2/{}/blobs/{digest}", self.repo));
        let what = format!("{what} {digest} in {}", self.repo);
        match self.client.probe("DELETE", &url, Scope::Delete(self.repo), &[], &[]) {
            Ok(a) if matches!(a.status, 200 | 202 | 204 | 404) => self.deleted += 1,
            Ok(a) => self.left.push(format!("{what} (DELETE answered {})", a.describe())),
            Err(e) => self.left.push(format!("{what} (DELETE failed: {})", e.kind)),
        }
    }

    /// `POST`, then `PUT ?digest=` with the body.
    fn single(&mut self) -> (Row, Option<bool>) {
        let blob = probe_blob("single-request");
        let digest = Digest::of(&blob);
        let location = match self.start() {
            Ok(l) => l,
            Err(why) => return (Row::unknown(table::SINGLE, why), None),
        };
        match self.client.probe("PUT", &with_digest(&location, &digest), Scope::Push(self.repo), &[OCTET_STREAM], &blob)
        {
            Ok(a) if matches!(a.status, 201 | 204) => {
                self.delete_blob(&digest, &format!("the {}-byte probe blob", blob.len()));
                (Row::found(table::SINGLE, format!("yes: POST, then PUT with the body: {}", a.status)), Some(true))
            }
            Ok(a) => {
                self.cancel(&location);
                (
                    Row::found(table::SINGLE, format!("refused: PUT with the body answered {}", a.describe())),
                    Some(false),
                )
            }
            Err(e) => {
                self.cancel(&location);
                (Row::found(table::SINGLE, format!("refused: PUT with the body: {}", e.kind)), Some(false))
            }
        }
    }

    /// `POST`, one `PATCH` with the whole blob, then an empty `PUT ?digest=`.
    fn patch(&mut self) -> (Row, Row, Option<bool>) {
        let blob = probe_blob("chunked");
        let digest = Digest::of(&blob);
        let location = match self.start() {
            Ok(l) => l,
            Err(why) => return (Row::unknown(table::PATCH, &why), Row::unknown(table::PATCH_STATUS, why), None),
        };
        let range = format!("0-{}", blob.len() - 1);
        let headers = [OCTET_STREAM, ("Content-Range", range.as_str())];
        let a = match self.client.probe("PATCH", &location, Scope::Push(self.repo), &headers, &blob) {
            Ok(a) => a,
            Err(e) => {
                self.cancel(&location);
                let why = format!("PATCH: {}", e.kind);
                return (
                    Row::found(table::PATCH, format!("refused: {why}")),
                    Row::unknown(table::PATCH_STATUS, why),
                    Some(false),
                );
            }
        };
        let status_row = match a.status {
            202 => Row::found(table::PATCH_STATUS, "202 Accepted, as the spec says"),
            // ECR answers a PATCH with 201 (openai/tart#273).
            201 => Row::found(table::PATCH_STATUS, "201 Created (not the spec's 202, as ECR answers)"),
            204 => Row::found(table::PATCH_STATUS, "204 No Content (not the spec's 202)"),
            _ => {
                self.cancel(&location);
                let refused = format!("refused: PATCH answered {}", a.describe());
                return (Row::found(table::PATCH, &refused), Row::found(table::PATCH_STATUS, refused), Some(false));
            }
        };
        let location = self.next_location(&location, &a);
        match self.client.probe("PUT", &with_digest(&location, &digest), Scope::Push(self.repo), &[OCTET_STREAM], &[]) {
            Ok(a) if matches!(a.status, 201 | 204) => {
                self.delete_blob(&digest, &format!("the {}-byte probe blob", blob.len()));
                (
                    Row::found(table::PATCH, format!("yes: POST, PATCH, then an empty PUT: {}", a.status)),
                    status_row,
                    Some(true),
                )
            }
            Ok(a) => {
                self.cancel(&location);
                let refused = format!("refused: the closing PUT answered {}", a.describe());
                (Row::found(table::PATCH, refused), status_row, Some(false))
            }
            Err(e) => {
                self.cancel(&location);
                (Row::found(table::PATCH, format!("refused: the closing PUT: {}", e.kind)), status_row, Some(false))
            }
        }
    }

    /// One `PATCH` of [`CAP_PROBE`] bytes, then the session is cancelled: nothing is committed.
    fn chunk_cap(&mut self) -> (Row, Option<u64>) {
        let location = match self.start() {
            Ok(l) => l,
            Err(why) => return (Row::unknown(table::CHUNK_CAP, why), None),
        };
        let body = vec![0x5a; CAP_PROBE as usize];
        let range = format!("0-{}", CAP_PROBE - 1);
        let headers = [OCTET_STREAM, ("Content-Range", range.as_str())];
        let mib = CAP_PROBE >> 20;
        let (row, refused) = match self.client.probe("PATCH", &location, Scope::Push(self.repo), &headers, &body) {
            Ok(a) if matches!(a.status, 201 | 202 | 204) => {
                let location = self.next_location(&location, &a);
                self.cancel(&location);
                return (
                    Row::found(table::CHUNK_CAP, format!("none at {mib} MiB: a {mib} MiB PATCH was accepted")),
                    None,
                );
            }
            Ok(a) => (format!("yes: a {mib} MiB PATCH was refused ({})", a.describe()), Some(CAP_PROBE)),
            // A body refused before it is read often arrives as a reset (issue 22: ACR, nginx).
            Err(e) => (format!("probably: a {mib} MiB PATCH failed ({})", e.kind), Some(CAP_PROBE)),
        };
        self.cancel(&location);
        (Row::found(table::CHUNK_CAP, row), refused)
    }

    /// Mount a blob of `from` (the read repository's tag) into this one: `201` is a mount, `202`
    /// an ordinary session instead (ECR unless blob mounting is enabled; the spec allows it).
    fn mount(&mut self, from: Option<(&str, &str)>) -> Row {
        let Some((from, tag)) = from else {
            return Row::unknown(table::MOUNT, "needs a REPO with a tag to mount a blob from: doctor REGISTRY/REPO");
        };
        if from == self.repo {
            return Row::unknown(table::MOUNT, "REPO and --write name the same repository: nothing to mount across");
        }
        let digest = match blob_of(self.client, from, tag) {
            Ok(d) => d,
            Err(why) => return Row::unknown(table::MOUNT, format!("no blob of {from}:{tag} to mount: {why}")),
        };
        let head = self.client.url(&format!("/v2/{}/blobs/{digest}", self.repo));
        match self.client.probe("HEAD", &head, Scope::Push(self.repo), &[], &[]) {
            Ok(a) if a.status == 404 => {}
            Ok(a) if a.status == 200 => {
                return Row::unknown(
                    table::MOUNT,
                    format!("{} already has {digest}: a mount cannot be told apart", self.repo),
                )
            }
            Ok(a) => return Row::unknown(table::MOUNT, format!("HEAD of the blob answered {}", a.describe())),
            Err(e) => return Row::unknown(table::MOUNT, format!("HEAD of the blob: {}", e.kind)),
        }
        let query = format!("?mount={}&from={}", digest.as_str().replace(':', "%3A"), from.replace('/', "%2F"));
        let url = self.client.url(&format!("/v2/{}/blobs/uploads/{query}", self.repo));
        match self.client.probe("POST", &url, Scope::Mount { to: self.repo, from }, &[], &[]) {
            Ok(a) if a.status == 201 => {
                self.delete_blob(&digest, &format!("the blob mounted from {from}"));
                Row::found(table::MOUNT, format!("honoured: 201 Created (a blob of {from} mounted)"))
            }
            Ok(a) if a.status == 202 => {
                if let Some(loc) = a.header("location") {
                    self.cancel(&self.client.resolve(&loc));
                }
                Row::found(
                    table::MOUNT,
                    "not honoured: 202 Accepted, an upload session instead (image-syncer then uploads)",
                )
            }
            Ok(a) => Row::unknown(table::MOUNT, format!("POST ?mount= answered {}", a.describe())),
            Err(e) => Row::unknown(table::MOUNT, format!("POST ?mount=: {}", e.kind)),
        }
    }

    fn cleanup_row(&self) -> Row {
        if self.left.is_empty() {
            let done = format!(
                "nothing tagged; {} blob(s) written and deleted, {} upload session(s) cancelled",
                self.deleted, self.cancelled
            );
            return Row::found(table::CLEANUP, done);
        }
        Row::found(table::CLEANUP, format!("LEFT BEHIND: {}", self.left.join("; ")))
    }
}

/// A blob of `repo:tag` to mount: its config (of the first child, for an index).
fn blob_of(client: &Client, repo: &str, tag: &str) -> Result<Digest, String> {
    let mut reference = tag.to_string();
    for _ in 0..2 {
        let url = client.url(&format!("/v2/{repo}/manifests/{reference}"));
        let a =
            client.probe("GET", &url, Scope::Pull(repo), &[("Accept", ACCEPT)], &[]).map_err(|e| e.kind.to_string())?;
        if a.status != 200 {
            return Err(format!("GET manifest answered {}", a.describe()));
        }
        let doc: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| format!("manifest: {e}"))?;
        let pick = |v: &serde_json::Value| v["digest"].as_str().and_then(|d| Digest::parse(d).ok());
        if let Some(d) = pick(&doc["config"]).or_else(|| doc["layers"].get(0).and_then(pick)) {
            return Ok(d);
        }
        match doc["manifests"].get(0).and_then(pick) {
            Some(child) => reference = child.to_string(),
            None => return Err("the manifest names no blob".into()),
        }
    }
    Err("an index of indexes".into())
}
