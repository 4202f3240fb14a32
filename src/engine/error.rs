//! Why a task failed: the one error type tasks return, classified by type (a later pass may
//! succeed, or not) and named for the reports.

use std::fmt;

use crate::reference::ImageRef;
use crate::store;

#[derive(Debug)]
pub enum SyncError {
    Store(Box<store::Error>),
    /// The source served something we cannot copy.
    Manifest {
        image: String,
        message: String,
    },
    /// A namespace rule whose registry does not let us list its repositories.
    Catalog(Box<store::Error>),
    /// `--verify`: the destination differs from the source.
    Drift {
        image: String,
        problems: Vec<String>,
    },
    /// A bug: the task panicked.
    Panic(String),
}

impl SyncError {
    /// What the source served for `image` cannot be copied, and why.
    pub fn manifest(image: &ImageRef, message: impl fmt::Display) -> SyncError {
        SyncError::Manifest { image: image.to_string(), message: message.to_string() }
    }

    /// Whether a later pass may succeed: network trouble and damaged bodies may clear up; a
    /// refusal, an invalid manifest or a bug will not.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Store(e) | SyncError::Catalog(e) => e.is_transient() || e.is_damaged_body(),
            SyncError::Manifest { .. } | SyncError::Drift { .. } | SyncError::Panic(_) => false,
        }
    }

    /// The operation behind it was already retried as often as the policy allows.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, SyncError::Store(e) | SyncError::Catalog(e) if e.exhausted)
    }

    /// A short name for the kind of failure, for reports: decided by type, never by text.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Store(e) | SyncError::Catalog(e) => e.class(),
            SyncError::Manifest { .. } => "manifest",
            SyncError::Drift { .. } => "drift",
            SyncError::Panic(_) => "internal",
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Store(e) => e.fmt(f),
            SyncError::Catalog(e) => write!(
                f,
                "{}: the catalog (GET /v2/_catalog) is refused: {}; a namespace rule (…/*) needs it (many \
                 registries restrict it): grant catalog access, or list the repositories as rules",
                e.at, e.kind
            ),
            SyncError::Manifest { image, message } => write!(f, "{image}: {message}"),
            SyncError::Drift { image, problems } => {
                write!(f, "{image}: differs from the source: {}", problems.join("; "))
            }
            SyncError::Panic(m) => write!(f, "internal error (please report it): {m}"),
        }
    }
}

impl From<store::Error> for SyncError {
    fn from(e: store::Error) -> Self {
        SyncError::Store(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ErrorKind;

    #[test]
    fn classes_and_transience_come_from_the_type() {
        let status =
            |status| store::Error::new("r", "op", ErrorKind::Status { status, errors: vec![], retry_after: None });
        assert!(SyncError::from(status(503)).is_transient());
        assert!(!SyncError::from(status(404)).is_transient());
        assert_eq!(SyncError::from(status(404)).class(), "not_found");
        let damaged = store::Error::new("r", "op", ErrorKind::SizeMismatch { expected: 2, actual: 1 });
        assert!(SyncError::from(damaged).is_transient(), "a damaged body may arrive whole next time");
        let image = crate::reference::ImageRef {
            repo: crate::reference::parse_repository("r.io/a").unwrap(),
            reference: crate::reference::Reference::Tag("v1".into()),
        };
        let m = SyncError::manifest(&image, "not a manifest");
        assert_eq!(
            (m.class(), m.is_transient(), m.to_string().as_str()),
            ("manifest", false, "r.io/a:v1: not a manifest")
        );
        let catalog = SyncError::Catalog(Box::new(status(401)));
        assert!(catalog.to_string().contains("namespace rule"));
    }
}
