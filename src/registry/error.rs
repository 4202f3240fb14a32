//! What can go wrong talking to a registry, where, and whether trying again can help.
//!
//! Every failure carries the registry and the operation (`GET blob a/b@sha256:…`), so the user
//! sees one line that names what is at fault. The retry policy reads [`Error::is_transient`],
//! which decides by type — the I/O error kind, the HTTP status, the registry's error code —
//! and never by the text of a message.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::digest::Digest;

/// What went wrong, where.
#[derive(Debug)]
pub struct Error {
    pub registry: String,
    /// The operation and object, e.g. `GET manifest a/b:v1`.
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
        /// The registry's `errors[]`: (code, message), e.g. (`BLOB_UNKNOWN`, `blob unknown`).
        errors: Vec<(String, String)>,
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
    /// An OCI layout (or archive) lacks what was asked for: the counterpart of a registry's 404.
    Missing(String),
    /// An OCI layout or archive that is damaged, incomplete or cannot be written: reading the
    /// same file again will not help, so it is never retried.
    Layout(String),
}

impl Error {
    pub fn new(registry: &str, what: impl Into<String>, kind: ErrorKind) -> Error {
        Error { registry: registry.to_string(), what: what.into(), kind, exhausted: false }
    }

    /// Classify a ureq failure by its type.
    pub(crate) fn transport(registry: &str, what: impl Into<String>, e: ureq::Error) -> Error {
        let kind = match e {
            ureq::Error::Io(io) => return Error::io(registry, what, io),
            ureq::Error::Timeout(t) => ErrorKind::Stalled(format!("no progress within --stall-timeout ({t})")),
            ureq::Error::Tls(m) => ErrorKind::Tls(m.to_string()),
            ureq::Error::Rustls(e) => tls_kind(&e),
            ureq::Error::Pem(e) => ErrorKind::Tls(e.to_string()),
            ureq::Error::HostNotFound => ErrorKind::Connection("host not found".into()),
            ureq::Error::ConnectionFailed => ErrorKind::Connection("connection refused or unreachable".into()),
            ureq::Error::Protocol(p) => ErrorKind::Connection(format!("malformed HTTP answer: {p}")),
            ureq::Error::BodyExceedsLimit(limit) => ErrorKind::TooLarge(limit),
            other => ErrorKind::Invalid(other.to_string()),
        };
        Error::new(registry, what, kind)
    }

    /// Classify an I/O failure: a [`Error`] carried inside one (a blob source that failed while
    /// feeding an upload) comes out as itself; a TLS alert, a timeout and a broken connection
    /// are told apart by type.
    pub(crate) fn io(registry: &str, what: impl Into<String>, e: io::Error) -> Error {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Ok(inner) = e.into_inner().expect("checked").downcast::<Error>() {
                return *inner;
            }
            unreachable!("checked with is::<Error>()");
        }
        if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
            // ureq's body readers wrap its own errors (e.g. a read timeout) in io::Error.
            return Error::transport(registry, what, ureq::Error::from(e));
        }
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Error::new(registry, what, tls_kind(tls));
        }
        let kind = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Stalled(e.to_string()),
            io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            _ => ErrorKind::Connection(e.to_string()),
        };
        Error::new(registry, what, kind)
    }

    /// Carry this error through an `io::Read` (see [`Error::io`]).
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// An unexpected status; the body's `errors[]` (distribution spec) gives codes and detail.
    pub(crate) fn status(
        registry: &str,
        what: impl Into<String>,
        resp: &mut ureq::http::Response<ureq::Body>,
    ) -> Error {
        let status = resp.status().as_u16();
        let retry_after = super::client::header(resp, "retry-after")
            .and_then(|v| parse_retry_after(&v))
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let bytes = resp.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Errs {
            errors: Vec<E>,
        }
        #[derive(serde::Deserialize)]
        struct E {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let errors: Vec<(String, String)> = serde_json::from_slice::<Errs>(&bytes)
            .map(|e| e.errors.into_iter().map(|e| (e.code, e.message)).collect())
            .unwrap_or_default();
        let kind = if status == 401 {
            let detail = detail(&errors);
            ErrorKind::Unauthorized(if detail.is_empty() { "access denied (HTTP 401)".into() } else { detail })
        } else {
            ErrorKind::Status { status, errors, retry_after }
        };
        Error::new(registry, what, kind)
    }

    /// The HTTP status, when the registry answered with an unexpected one.
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
    pub fn has_code(&self, code: &str) -> bool {
        matches!(&self.kind, ErrorKind::Status { errors, .. } if errors.iter().any(|(c, _)| c == code))
    }

    /// Worth trying again: the network or the server may do better next time. A refusal
    /// (401 after re-auth, 403, 404, an invalid manifest), a TLS failure or a stop is not.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Connection(_) | ErrorKind::Stalled(_) | ErrorKind::UploadLost(_) => true,
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

/// The registry's errors as `CODE message; CODE message`.
/// A TLS failure; a plain-http server answers a ClientHello with an HTTP error page, which is no
/// TLS record at all.
fn tls_kind(e: &rustls::Error) -> ErrorKind {
    match e {
        rustls::Error::InvalidMessage(_) => {
            ErrorKind::WrongScheme("it answered the TLS handshake in plain http: it does not speak https".into())
        }
        e => ErrorKind::Tls(e.to_string()),
    }
}

/// What a registry error code means for the user, for the codes whose fix is theirs.
fn hint(errors: &[(String, String)]) -> Option<&'static str> {
    errors.iter().find_map(|(code, _)| match code.as_str() {
        "NAME_UNKNOWN" => Some(
            "the repository does not exist there; registries such as Harbor and ECR do not create \
             projects or repositories on push: create it first, or check the name",
        ),
        "DENIED" => Some("the credentials lack the permission this needs (a push needs write access)"),
        _ => None,
    })
}

fn detail(errors: &[(String, String)]) -> String {
    errors.iter().map(|(c, m)| format!("{c} {m}")).collect::<Vec<_>>().join("; ")
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
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
                write!(f, "HTTP {status}: {}", detail(errors))?;
                match hint(errors) {
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
            ErrorKind::Missing(m) | ErrorKind::Layout(m) => f.write_str(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.registry, self.what, self.kind)
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
        // An error carried through an io::Read comes back as itself, naming its own registry.
        let carried = Error::io("dst", "upload", Error::new("src", "GET blob", ErrorKind::TooLarge(1)).into_io());
        assert_eq!((carried.registry.as_str(), carried.what.as_str()), ("src", "GET blob"));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(28), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
