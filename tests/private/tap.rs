//! A TCP pass-through proxy in front of a plain-http registry that (1) records every
//! `Authorization` header line the client sends, so a test can prove what credentials reached
//! the registry, and (2) optionally waits a fixed time before forwarding each chunk the client
//! sends, so that with `--proc 1` a run of N requests provably lasts at least N × delay (used to
//! make a transfer outlive a short-lived token without asserting on timings).
//!
//! It is byte-transparent: the registry sees the proxy's address in `Host`, so the upload
//! `Location`s it returns point back to the proxy. Stops (and cuts open connections) on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct Shared {
    authorizations: Mutex<Vec<String>>,
    /// Request lines seen (`METHOD URI HTTP/1.1`).
    request_lines: Mutex<Vec<String>>,
    connections: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
}

pub struct TapProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl TapProxy {
    /// A proxy to `127.0.0.1:upstream_port`, delaying each client chunk by `delay`.
    pub fn start(upstream_port: u16, delay: Duration) -> TapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tap proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (stop2, shared2) = (stop.clone(), shared.clone());
        let thread = thread::spawn(move || {
            let mut handles = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                shared2.connections.fetch_add(1, Ordering::SeqCst);
                {
                    let mut open = shared2.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(upstream.try_clone().unwrap());
                }
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let sh = shared2.clone();
                handles.push(thread::spawn(move || pump_requests(client, upstream, delay, &sh)));
                handles.push(thread::spawn(move || pump(u2, c2)));
                handles.retain(|h: &thread::JoinHandle<()>| !h.is_finished());
            }
            for s in shared2.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            for h in handles {
                let _ = h.join();
            }
        });
        TapProxy { port, stop, thread: Some(thread), shared }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn repo(&self, repo: &str) -> String {
        format!("{}/{}", self.addr(), repo)
    }

    /// Every `Authorization` header value the client sent, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.shared.authorizations.lock().unwrap().clone()
    }

    /// Every request line the client sent, in order.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.request_lines.lock().unwrap().clone()
    }
}

impl Drop for TapProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Like [`pump`] for the client → registry direction, with the delay and the header scan.
fn pump_requests(mut from: TcpStream, mut to: TcpStream, delay: Duration, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    // The unfinished last line of what was read so far (bounded: long binary runs are dropped).
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                scan_line(&partial, shared);
                partial.clear();
            } else if partial.len() < 16 * 1024 {
                partial.push(b);
            }
        }
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn scan_line(line: &[u8], shared: &Shared) {
    let Ok(text) = std::str::from_utf8(line) else { return };
    let text = text.trim_end_matches('\r');
    if let Some((k, v)) = text.split_once(':') {
        if k.eq_ignore_ascii_case("authorization") {
            shared.authorizations.lock().unwrap().push(v.trim().to_string());
            return;
        }
    }
    let mut parts = text.split(' ');
    if let (Some(m), Some(_), Some(proto)) = (parts.next(), parts.next(), parts.next()) {
        if proto.starts_with("HTTP/1.") && matches!(m, "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE") {
            shared.request_lines.lock().unwrap().push(text.to_string());
        }
    }
}
