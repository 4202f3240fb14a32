//! How the HTTP transport's failures and a registry's error answers become the store's typed
//! [`Error`]s: by the type of the ureq or rustls error, the status, and the `errors[]` codes of
//! the body — never by the text of a message.

use std::io;
use std::time::Duration;

use crate::store::{ApiError, Error, ErrorKind};

/// Classify a ureq failure by its type.
pub fn transport(at: &str, what: impl Into<String>, e: ureq::Error) -> Error {
    let kind = match e {
        ureq::Error::Io(e) => return io_error(at, what, e),
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
    Error::new(at, what, kind)
}

/// Whether a request failed without any answer from the registry: the connection refused or
/// unreachable, or no progress within the stall timeout while connecting, sending or waiting
/// for the answer's head (a request's body reads come later, outside the request). A reset or
/// a garbled answer is no such sign: something is there. A blob source that failed while
/// feeding an upload arrives as an I/O error carrying the source's own [`Error`] and is not
/// the registry's silence either.
pub fn unanswered(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<Error>()) => false,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::NetworkDown
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::TimedOut
        ),
        _ => false,
    }
}

/// Classify an I/O failure of a request or a body: an [`Error`] carried inside (a blob source
/// that failed while feeding an upload) comes out as itself; ureq's and rustls's errors wrapped
/// in `io::Error` (a read timeout, a TLS alert) are told apart by type; the rest by I/O kind.
pub fn io_error(at: &str, what: impl Into<String>, e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::io(at, what, e);
    }
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        // ureq's body readers wrap its own errors (e.g. a read timeout) in io::Error.
        return transport(at, what, ureq::Error::from(e));
    }
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Error::new(at, what, tls_kind(tls));
    }
    Error::io(at, what, e)
}

/// An unexpected status; the body's `errors[]` (distribution spec) gives codes and detail.
pub fn status(at: &str, what: impl Into<String>, resp: &mut ureq::http::Response<ureq::Body>) -> Error {
    let status = resp.status().as_u16();
    let retry_after = super::http::header(resp, "retry-after")
        .and_then(|v| parse_retry_after(&v))
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let bytes = resp.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
    let errors = ApiError::list(&bytes);
    let kind = if status == 401 {
        let detail = ApiError::describe(&errors);
        ErrorKind::Unauthorized(if detail.is_empty() { "access denied (HTTP 401)".into() } else { detail })
    } else {
        ErrorKind::Status { status, errors, retry_after }
    };
    Error::new(at, what, kind)
}

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

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(28), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_carried_error_comes_out_as_itself() {
        let inner = Error::new("src", "GET blob", ErrorKind::TooLarge(1));
        let e = io_error("dst", "upload", inner.into_io());
        assert_eq!((e.at.as_str(), e.what.as_str()), ("src", "GET blob"));
        let e = io_error("r", "op", io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(e.kind, ErrorKind::Connection(_)) && e.is_transient());
    }

    #[test]
    fn unanswered_by_type() {
        let io = |kind| ureq::Error::Io(io::Error::new(kind, "x"));
        assert!(unanswered(&ureq::Error::Timeout(ureq::Timeout::RecvResponse)));
        assert!(unanswered(&ureq::Error::ConnectionFailed));
        assert!(unanswered(&io(io::ErrorKind::ConnectionRefused)));
        assert!(!unanswered(&io(io::ErrorKind::ConnectionReset)), "something is there");
        let source = Error::new("src", "GET blob", ErrorKind::Stalled("s".into())).into_io();
        assert!(!unanswered(&ureq::Error::Io(source)), "the source's stall is not the registry's silence");
    }
}
