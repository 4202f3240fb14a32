//! What can go wrong at a place images live (a registry, a layout), where, and whether trying
//! again can help.
//!
//! Every failure carries the store and the operation (`GET blob a/b@sha256:…`), so the user sees
//! one line that names what is at fault. The retry policy reads [`Error::is_transient`], which
//! decides by type — the I/O error kind, the HTTP status, the registry's [`ErrorCode`] — and
//! never by the text of a message. How a transport's own failures become these kinds is the
//! transport's business (`registry::error`).

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::code::{ApiError, ErrorCode};
use crate::digest::Digest;

/// What went wrong, where.
#[derive(Debug)]
pub struct Error {
    /// The registry (`host:port`) or layout (`oci:/path`) at fault, as [`super::Store::name`].
    pub at: String,
    /// The operation and object, e.g. `GET manifest a/b:v1` (empty when the store as a whole is
    /// at fault, e.g. a layout that cannot be opened).
    pub what: String,
    pub kind: ErrorKind,
    /// Already tried as often as the retry policy allows: callers must not retry it again
    /// (the next chance is the engine's next pass).
    pub exhausted: bool,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// The connection could not be made, or broke (refused, reset, closed early, DNS).
    Connection(String),
    /// No progress within the stall timeout, or slower than the minimum speed.
    Stalled(String),
    /// The TLS handshake failed (unknown CA, bad or missing client certificate…).
    Tls(String),
    /// An answer the operation did not expect.
    Status {
        status: u16,
        /// The registry's `errors[]`, e.g. (`BLOB_UNKNOWN`, `blob unknown`).
        errors: Vec<ApiError>,
        /// `Retry-After`, in seconds, when the answer had one.
        retry_after: Option<u32>,
    },
    Unauthorized(String),
    DigestMismatch {
        expected: Digest,
        actual: Digest,
    },
    /// A body that ended early (`actual < expected`) or ran past its described length.
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    /// A `Content-Length` that differs from the descriptor's size (refused before any upload).
    LengthMismatch {
        described: u64,
        announced: u64,
    },
    TooLarge(u64),
    Invalid(String),
    /// The run is stopping (a signal): the operation was abandoned on purpose.
    Interrupted,
    /// An upload cut in transit whose session the registry will not resume (distribution
    /// invalidates a session whose stored size no longer matches its state token): the blob
    /// must start again in a new session. Transient: a new attempt starts over.
    UploadLost(String),
    /// Plain http spoken to a TLS server, or a TLS handshake answered in plain http: the
    /// registry's scheme is not the one we used (the message says which auth key fixes it).
    WrongScheme(String),
    /// An https registry whose token realm (this URL) is plain http: credentials are not sent
    /// there, so the token cannot be fetched with them.
    InsecureRealm(String),
    /// The registry answers nothing: a request went unanswered (refused, unreachable, or no
    /// answer within the stall timeout) and so did a probe after it (see `registry::health`).
    /// Its requests fail at once with this until a later pass finds it answering again, so it
    /// is created already [`Error::exhausted`]. `since`: when the first unanswered request was
    /// sent; `cause`: what it met.
    Unreachable {
        since: SystemTime,
        cause: String,
    },
    /// An OCI layout (or archive) lacks what was asked for: the counterpart of a registry's 404.
    Missing(String),
    /// An OCI layout or archive that is damaged, incomplete or cannot be written: reading the
    /// same file again will not help, so it is never retried.
    Layout(String),
}

impl Error {
    pub fn new(at: &str, what: impl Into<String>, kind: ErrorKind) -> Error {
        Error { at: at.to_string(), what: what.into(), kind, exhausted: false }
    }

    /// Classify an I/O failure: an [`Error`] carried inside one (a blob source that failed while
    /// feeding an upload or a file) comes out as itself; otherwise the kind of the I/O error
    /// decides. A transport with errors of its own inside `io::Error` looks for them first.
    pub fn io(at: &str, what: impl Into<String>, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Ok(inner) = e.into_inner().expect("checked").downcast::<Error>() {
                return *inner;
            }
            unreachable!("checked with is::<Error>()");
        }
        let kind = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Stalled(e.to_string()),
            io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            _ => ErrorKind::Connection(e.to_string()),
        };
        Error::new(at, what, kind)
    }

    /// Carry this error through an `io::Read` (see [`Error::io`]).
    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The HTTP status, when a registry answered with an unexpected one.
    pub fn status_code(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What was asked for is not there: a registry's 404, or a layout's missing entry.
    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404) || matches!(self.kind, ErrorKind::Missing(_))
    }

    /// `true` when the registry's answer carries this error code.
    pub fn has_code(&self, code: &ErrorCode) -> bool {
        matches!(&self.kind, ErrorKind::Status { errors, .. } if errors.iter().any(|e| e.code == *code))
    }

    /// Worth trying again: the network or the server may do better next time. A refusal
    /// (401 after re-auth, 403, 404, an invalid manifest), a TLS failure or a stop is not. (A
    /// registry that is not answering may be back by the engine's next pass, not sooner: such
    /// errors come [`Error::exhausted`].)
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Connection(_) | ErrorKind::Stalled(_) | ErrorKind::UploadLost(_) => true,
            ErrorKind::Unreachable { .. } => true,
            ErrorKind::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// A body that arrived damaged: cut short, too long, or with the wrong digest. Another
    /// attempt may well bring it whole.
    pub fn is_damaged_body(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::DigestMismatch { .. } | ErrorKind::SizeMismatch { .. } | ErrorKind::LengthMismatch { .. }
        )
    }

    /// A short name for the kind of failure, for reports (`not_found`, `denied`, `rate_limited`,
    /// `server`, `connection`, `stalled`, `tls`, `damaged`, ...).
    pub fn class(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Connection(_) => "connection",
            ErrorKind::Stalled(_) => "stalled",
            ErrorKind::Tls(_) => "tls",
            ErrorKind::Unauthorized(_) => "denied",
            ErrorKind::Status { status, .. } => match status {
                401 | 403 => "denied",
                404 => "not_found",
                429 => "rate_limited",
                500.. => "server",
                _ => "refused",
            },
            ErrorKind::DigestMismatch { .. } | ErrorKind::SizeMismatch { .. } | ErrorKind::LengthMismatch { .. } => {
                "damaged"
            }
            ErrorKind::TooLarge(_) => "too_large",
            ErrorKind::Invalid(_) => "invalid",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::UploadLost(_) => "upload_lost",
            ErrorKind::WrongScheme(_) => "scheme",
            ErrorKind::InsecureRealm(_) => "insecure_realm",
            ErrorKind::Unreachable { .. } => "unreachable",
            ErrorKind::Missing(_) => "not_found",
            ErrorKind::Layout(_) => "layout",
        }
    }

    /// The wait the registry asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ErrorKind::Status { retry_after, .. } => retry_after.map(|s| Duration::from_secs(s.into())),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Connection(m) => write!(f, "connection failed: {m}"),
            ErrorKind::Stalled(m) => write!(f, "stalled: {m}"),
            ErrorKind::Tls(m) => write!(
                f,
                "TLS failed: {m} (trust its CA with ca_file in the auth file or --ca-file, give a client \
                 certificate with cert_file/key_file, or use skip_tls_verify)"
            ),
            ErrorKind::Status { status, errors, .. } if errors.is_empty() => write!(f, "HTTP {status}"),
            ErrorKind::Status { status, errors, .. } => {
                write!(f, "HTTP {status}: {}", ApiError::describe(errors))?;
                match errors.iter().find_map(|e| e.code.hint()) {
                    Some(h) => write!(f, " ({h})"),
                    None => Ok(()),
                }
            }
            ErrorKind::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            ErrorKind::DigestMismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
            ErrorKind::SizeMismatch { expected, actual } if actual < expected => {
                write!(f, "body ended after {actual} of {expected} bytes")
            }
            ErrorKind::SizeMismatch { expected, .. } => {
                write!(f, "body runs past the {expected} bytes it should have")
            }
            ErrorKind::LengthMismatch { described, announced } => {
                write!(f, "Content-Length {announced} differs from the descriptor's size {described}")
            }
            ErrorKind::TooLarge(limit) => write!(f, "response larger than the {limit}-byte limit"),
            ErrorKind::Invalid(m) => f.write_str(m),
            ErrorKind::Interrupted => f.write_str("interrupted: the run is stopping"),
            ErrorKind::UploadLost(m) => write!(f, "upload cut and the registry cannot resume it ({m})"),
            ErrorKind::WrongScheme(m) => f.write_str(m),
            ErrorKind::InsecureRealm(realm) => write!(
                f,
                "credentials are not sent to a plain-http token realm: this https registry's token realm is \
                 {realm} (it must be https)"
            ),
            ErrorKind::Unreachable { since, cause } => write!(f, "not answering since {} ({cause})", clock(*since)),
            ErrorKind::Missing(m) | ErrorKind::Layout(m) => f.write_str(m),
        }
    }
}

/// The time of day of `t`, `HH:MM:SS UTC` (the log lines' clock is UTC too).
fn clock(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    format!("{:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.what.is_empty() {
            write!(f, "{}: {}", self.at, self.kind)
        } else {
            write!(f, "{}: {}: {}", self.at, self.what, self.kind)
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classified_by_type() {
        let e = |kind| Error::new("r", "op", kind);
        let status = |status| ErrorKind::Status { status, errors: vec![], retry_after: None };
        assert!(e(status(503)).is_transient());
        assert!(e(status(429)).is_transient());
        assert!(!e(status(404)).is_transient());
        assert!(!e(ErrorKind::Tls("x".into())).is_transient());
        let timed_out = Error::io("r", "op", io::Error::new(io::ErrorKind::TimedOut, "t"));
        assert!(matches!(timed_out.kind, ErrorKind::Stalled(_)) && timed_out.is_transient());
        let reset = Error::io("r", "op", io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(reset.kind, ErrorKind::Connection(_)));
        // An error carried through an io::Read comes back as itself, naming its own store.
        let carried = Error::io("dst", "upload", Error::new("src", "GET blob", ErrorKind::TooLarge(1)).into_io());
        assert_eq!((carried.at.as_str(), carried.what.as_str()), ("src", "GET blob"));
    }

    #[test]
    fn codes_are_typed_and_hinted() {
        let errors = vec![ApiError { code: ErrorCode::NameUnknown, message: "repository name not known".into() }];
        let e = Error::new("r", "PUT manifest a:v1", ErrorKind::Status { status: 404, errors, retry_after: None });
        assert!(e.has_code(&ErrorCode::NameUnknown) && !e.has_code(&ErrorCode::Denied));
        let text = e.to_string();
        assert!(text.starts_with("r: PUT manifest a:v1: HTTP 404: NAME_UNKNOWN repository name not known ("), "{text}");
        assert_eq!(
            Error::new("oci:/x", "", ErrorKind::Layout("no index.json".into())).to_string(),
            "oci:/x: no index.json"
        );
    }

    #[test]
    fn unreachable_says_since_when_and_why() {
        let since = UNIX_EPOCH + Duration::from_secs(3 * 86_400 + 11 * 3600 + 34 * 60 + 5);
        let e = Error::new("r:5000", "GET manifest a:v1", ErrorKind::Unreachable { since, cause: "stalled: x".into() });
        assert_eq!(e.to_string(), "r:5000: GET manifest a:v1: not answering since 11:34:05 UTC (stalled: x)");
        assert_eq!(e.class(), "unreachable");
        assert!(e.is_transient(), "a later pass may find it answering");
    }
}
