//! Raw HTTP/1.1 framing for the test servers ([`super::proxy`], [`super::token`]): they must be
//! able to answer what a real server would not (a body shorter than its `Content-Length`, a
//! stall between head and body), so they speak HTTP by hand instead of through a library.

use std::io::{self, BufRead, Write};
use std::net::{Shutdown, TcpStream};

/// A request or response head: the first line and the headers, in order.
#[derive(Clone, Debug, Default)]
pub struct Head {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Every value of header `name`, joined with ", ".
    pub fn get(&self, name: &str) -> Option<String> {
        let vals: Vec<&str> =
            self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    }

    /// Replace (or add) header `name`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// `Transfer-Encoding: chunked`.
    pub fn is_chunked(&self) -> bool {
        self.get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> Option<usize> {
        self.get("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// The status code of a response head.
    pub fn status(&self) -> u16 {
        self.line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// The head as it goes on the wire, ending with the empty line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.line);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Read a head (request or response). `None` when the connection ends first.
pub fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut head = Head { line: line.trim_end().to_string(), headers: Vec::new() };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(head);
        }
        if let Some((k, v)) = line.split_once(':') {
            head.headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Read the body that follows `head`: `Content-Length` bytes, chunked, or (`to_eof`, for a
/// response without either) everything until the connection closes.
pub fn read_body(reader: &mut impl BufRead, head: &Head, to_eof: bool) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.is_chunked() {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let hex = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l)? == 0 || l.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    match head.content_length() {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None if to_eof => {
            reader.read_to_end(&mut body)?;
        }
        None => {}
    }
    Ok(body)
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Status")
}

/// Write a complete `Connection: close` response and half-close the connection.
pub fn write_response(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8], head: bool) {
    let mut h = Head { line: format!("HTTP/1.1 {status} {}", reason(status)), headers: headers.to_vec() };
    if h.content_length().is_none() {
        h.set("Content-Length", &body.len().to_string());
    }
    h.set("Connection", "close");
    let _ = stream.write_all(&h.to_bytes());
    if !head {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// A registry-style JSON error body.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"errors": [{"code": code, "message": message}]})).unwrap()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// The decoded value of `name` in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}
