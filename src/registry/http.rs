//! The small HTTP pieces every API call shares: query encoding, `Location` and `Link`
//! resolution, origins (credentials go only to the registry's own), reading a header.

use ureq::http::{Response, Uri};

/// A header of an answer, when it is there and readable text.
pub fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Scheme, host and port of a URL (the port filled in from the scheme when the URL has none,
/// so `https://r.example` and `https://R.example:443` are one origin).
pub fn origin(url: &str) -> Option<(Option<String>, Option<String>, Option<u16>)> {
    let u = url.parse::<Uri>().ok()?;
    let scheme = u.scheme_str().map(str::to_ascii_lowercase);
    let default_port = match scheme.as_deref() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    Some((scheme, u.host().map(str::to_ascii_lowercase), u.port_u16().or(default_port)))
}

/// Resolve `location` (absolute URL, absolute path, or relative path) against `current`.
pub fn resolve(current: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = current.find("://").map_or(0, |i| i + 3);
    let authority_end = current[scheme_end..].find('/').map_or(current.len(), |i| scheme_end + i);
    let root = &current[..authority_end];
    if location.starts_with('/') {
        return format!("{root}{location}");
    }
    // A relative path replaces the last segment of the current path.
    let path = current[authority_end..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("", |i| &path[..i]);
    format!("{root}{dir}/{location}")
}

/// The target of the `rel="next"` entry of a `Link` header.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let t = target.trim();
        is_next.then(|| t.trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn origins_compare_with_default_ports_and_any_case() {
        assert_eq!(origin("https://r.example/v2/"), origin("https://R.example:443/v2/a/blobs/uploads/x"));
        assert_eq!(origin("http://127.0.0.1:5000/v2/"), origin("http://127.0.0.1:5000/x"));
        assert_ne!(origin("http://127.0.0.1:5000/"), origin("http://localhost:5000/"));
        assert_ne!(origin("http://r.example/"), origin("https://r.example/"));
        assert_ne!(origin("https://r.example/"), origin("https://r.example:8443/"));
    }

    #[test]
    fn locations() {
        assert_eq!(resolve("http://h:1", "/v2/a/blobs/uploads/x?s=1"), "http://h:1/v2/a/blobs/uploads/x?s=1");
        assert_eq!(resolve("http://h:1/v2/a/blobs/x", "/y"), "http://h:1/y");
        assert_eq!(resolve("https://h/v2/a/tags/list?n=1", "list?n=2"), "https://h/v2/a/tags/list?n=2");
        assert_eq!(resolve("http://h:1", "https://s3/x"), "https://s3/x");
        assert_eq!(resolve("http://h:1", "x"), "http://h:1/x");
    }

    #[test]
    fn link_header() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev", <https://x/z>; rel=next"#).as_deref(), Some("https://x/z"));
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
    }
}
