//! Why a manifest, an index or a referrers listing cannot be used as it is. The engine adds
//! which image it belongs to; the text is the one line the user reads.

use std::fmt;

use super::MediaType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not the JSON the document must be; `what` names the document.
    Json {
        what: Doc,
        message: String,
    },
    /// An index (or listing) without its `manifests` array.
    NoManifests(Doc),
    /// Docker schema 1: refused (see the README, "What gets copied").
    Schema1,
    /// Neither `config` nor `manifests`.
    NotAManifest,
    /// The server's `Content-Type` names another manifest type than the body's `mediaType`.
    Conflict {
        served: MediaType,
        body: MediaType,
    },
    /// A manifest type whose shape (image or index) the content contradicts.
    Shape {
        media_type: MediaType,
        content: &'static str,
    },
    Unsupported(MediaType),
    /// An index whose entries changed between reading and rewriting it (a bug if ever seen).
    EntriesChanged,
    /// A `--os`/`--arch` value that names no platform.
    Platform {
        flag: &'static str,
        value: String,
    },
}

/// The documents an [`Error`] can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Manifest,
    Index,
    Referrers,
    /// The destination's referrers fallback tag, read before it is merged into.
    ExistingFallback,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json { what: Doc::Manifest, message } => write!(f, "invalid manifest JSON: {message}"),
            Error::Json { what: Doc::Index, message } => write!(f, "invalid index JSON: {message}"),
            Error::Json { what: Doc::Referrers, message } => write!(f, "invalid referrers index: {message}"),
            Error::Json { what: Doc::ExistingFallback, message } => {
                write!(f, "the existing referrers tag is not JSON: {message}")
            }
            Error::NoManifests(Doc::Referrers) => f.write_str("referrers index has no manifests array"),
            Error::NoManifests(Doc::ExistingFallback) => f.write_str("the existing referrers tag is not an index"),
            Error::NoManifests(_) => f.write_str("index has no manifests array"),
            Error::Schema1 => f.write_str(
                "Docker schema 1 manifest: not supported (deprecated since 2017, refused by current \
                 registries); push the image again with a current client, or convert it with \
                 `skopeo copy --format v2s2`",
            ),
            Error::NotAManifest => f.write_str("not a manifest: it has neither config nor manifests"),
            Error::Conflict { served, body } => {
                write!(f, "the registry serves it as {served} but its body says mediaType {body}")
            }
            Error::Shape { media_type, content } => {
                write!(f, "its mediaType is {media_type} but its content is {content}")
            }
            Error::Unsupported(t) => write!(f, "unsupported manifest media type {t}"),
            Error::EntriesChanged => f.write_str("index entries changed while filtering"),
            Error::Platform { flag, value } => write!(f, "{flag}: invalid platform value {value:?}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn json(what: Doc, e: serde_json::Error) -> Error {
        Error::Json { what, message: e.to_string() }
    }
}
