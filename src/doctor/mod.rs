//! `image-syncer doctor REGISTRY[/REPO] [--write REPO]`: what a registry does, found by asking
//! it and printed as a table, with the auth-file keys it needs. Registries differ from the
//! distribution spec in documented ways (a PATCH size cap, no chunked uploads, no referrers API,
//! HEADs without a digest, `406` without `application/json`, …) and a mirror breaks on exactly
//! those: an operator debugging one needs to see them first, row by row, each "unknown (why)"
//! when it could not be told.
//!
//! Every request goes through the registry [`Client`](crate::registry::Client) a sync uses, so
//! authentication, TLS, the http/https choice and redirects are what a sync meets. Reading
//! changes nothing. `--write REPO` also uploads tiny throwaway blobs — never a manifest or a
//! tag — and deletes them or cancels their sessions, and says what it could not clean up.
//!
//! - [`setup`]: what the auth file and flags set for the registry (TLS, whose credentials).
//! - [`read`]: the reading probes; [`write`]: the upload probes and their cleanup.
//! - [`advice`]: the keys to write; [`table`]: rows, findings and the printed report.

mod advice;
mod read;
mod setup;
mod table;
mod write;

use std::fmt;
use std::sync::Arc;

pub use table::{Finding, Report, Row};

use crate::reference::Repository;
use crate::registry::{Answer, Auth, Client, Limits, Registries, TlsFileError, TlsOptions};
use crate::store::{Error, ErrorKind};

/// What to examine: a registry, optionally a repository to read, and one to write into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]`, normalised.
    pub registry: String,
    /// A repository name on that registry to read (tags, manifests, referrers).
    pub repo: Option<String>,
    /// A repository name on that registry to upload throwaway blobs to (`--write`).
    pub write: Option<String>,
}

/// Why no table could be made.
#[derive(Debug)]
pub enum DoctorError {
    /// A TLS file of the auth file or the flags cannot be used (unusable input).
    TlsFile(TlsFileError),
    /// The registry gives no HTTP answer at all: refused, unreachable, stalled, TLS failed, or
    /// the other scheme.
    Unreachable(Error),
}

impl DoctorError {
    /// 2 for unusable input, as a sync; 1 for a registry that cannot be reached.
    pub fn exit_code(&self) -> u8 {
        match self {
            DoctorError::TlsFile(_) => 2,
            DoctorError::Unreachable(_) => 1,
        }
    }
}

impl fmt::Display for DoctorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoctorError::TlsFile(e) => write!(f, "doctor: {e}"),
            DoctorError::Unreachable(e) => write!(f, "doctor: {} cannot be reached: {}", e.at, e.kind),
        }
    }
}

impl std::error::Error for DoctorError {}

/// The failures after which nothing else can be asked: no HTTP answer came.
fn unreachable(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Connection(_) | ErrorKind::Stalled(_) | ErrorKind::Tls(_) | ErrorKind::WrongScheme(_))
}

/// Probe `target` with the credentials and TLS settings of `auth` and `tls`.
pub fn run(auth: Auth, tls: TlsOptions, limits: Limits, target: &Target) -> Result<Report, DoctorError> {
    let host: Arc<str> = target.registry.as_str().into();
    // The registry-wide probes use the client of the repository named, if any (its auth key).
    let named = target.repo.as_deref().or(target.write.as_deref()).unwrap_or("");
    let read_repo = Repository::on_registry(&host, named);
    let setup = setup::Setup::of(&auth, &tls, &read_repo);
    let registries = Registries::new(auth, tls, limits, 1).map_err(DoctorError::TlsFile)?;
    let client = registries.client(&host, &read_repo);
    let https = client.url("/").starts_with("https://");

    let api = read::api(&client, &setup, https).map_err(DoctorError::Unreachable)?;
    let mut rows = vec![api.version, api.auth, setup.tls_row(https)];
    let mut needs = advice::Needs { plain_http: !https, credentials: api.needs_credentials, ..Default::default() };

    let (read_rows, tag) = read_rows(&client, target.repo.as_deref(), &api.answer);
    rows.extend(read_rows);
    let mount_from = target.repo.as_deref().zip(tag.as_deref());

    match target.write.as_deref() {
        Some(repo) => {
            let write_repo = Repository::on_registry(&host, repo);
            let writer = registries.client(&host, &write_repo);
            let found = write::probe(&writer, repo, mount_from);
            needs.chunked_upload = found.single_request == Some(false) && found.patch == Some(true);
            needs.chunk_refused = found.chunk_refused;
            rows.extend(found.rows);
        }
        None => rows.extend(write::ROWS.map(|probe| Row::unknown(probe, "not tested: give --write REPO"))),
    }
    let advice = advice::Advice::new(setup.key().unwrap_or(&target.registry), setup.key().is_some(), needs);
    Ok(Report { target: target.clone(), rows, advice })
}

/// The rows of the reading probes after the API root's, and the tag of `repo` they read.
fn read_rows(client: &Client, repo: Option<&str>, api: &Option<Answer>) -> (Vec<Row>, Option<String>) {
    let Some(repo) = repo else {
        let why = "give a repository: doctor REGISTRY/REPO";
        let rows = vec![
            Row::unknown(table::TAGS, why),
            read::catalog(client),
            Row::unknown(table::REFERRERS, why),
            Row::unknown(table::HEAD_DIGEST, why),
            Row::unknown(table::ACCEPT, why),
            read::rate_limit_of_api(api),
        ];
        return (rows, None);
    };
    let (tags, tag) = read::tags(client, repo);
    let mut rows = vec![tags, read::catalog(client)];
    let manifest = tag.as_deref().map(|t| read::manifest(client, repo, t));
    rows.push(read::referrers(client, repo, manifest.as_ref().and_then(|m| m.digest.as_ref())));
    match manifest {
        Some(m) => rows.extend([m.digest_row, m.accept_row, m.rate_row]),
        None => {
            let why = format!("no tag of {repo} to ask for (see {})", table::TAGS);
            rows.extend([Row::unknown(table::HEAD_DIGEST, &why), Row::unknown(table::ACCEPT, why)]);
            rows.push(read::rate_limit_of_api(api));
        }
    }
    (rows, tag)
}
