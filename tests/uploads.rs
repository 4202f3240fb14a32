//! Blob upload strategies. The default is one `PUT ?digest=` whose body is the streamed blob; a
//! registry that refuses that (some only take docker's PATCH-then-PUT) is detected on the fly,
//! and `chunked_upload: true` in the auth file asks for PATCH uploads from the start.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;

/// An HTTP/1.1 proxy in front of a registry that answers `405` to any blob-upload `PUT` with a
/// body (after reading the body), and forwards every other request on a fresh upstream
/// connection. It counts what it refused and the PATCHes it forwarded. Stops on drop.
struct RefusingProxy {
    port: u16,
    refused: Arc<AtomicUsize>,
    patches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RefusingProxy {
    fn start(upstream_port: u16) -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (refused, patches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, p2, s2) = (refused.clone(), patches.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut handles = Vec::new();
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (r, p) = (r2.clone(), p2.clone());
                handles.push(thread::spawn(move || serve(client, upstream_port, &r, &p)));
                handles.retain(|h: &thread::JoinHandle<()>| !h.is_finished());
            }
            for h in handles {
                let _ = h.join();
            }
        });
        RefusingProxy { port, refused, patches, stop, thread: Some(thread) }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve one client connection, request by request, until it closes.
fn serve(client: TcpStream, upstream_port: u16, refused: &AtomicUsize, patches: &AtomicUsize) {
    let mut out = client.try_clone().expect("clone client stream");
    let mut reader = BufReader::new(client);
    loop {
        let Some((request_line, headers)) = read_request_head(&mut reader) else { return };
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        assert!(header("transfer-encoding").is_none(), "the test proxy handles Content-Length bodies only");
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if method == "PUT" && path.contains("/blobs/uploads/") && length > 0 {
            refused.fetch_add(1, Ordering::SeqCst);
            let msg = r#"{"errors":[{"code":"UNSUPPORTED","message":"monolithic uploads are not supported"}]}"#;
            let resp = format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{msg}",
                msg.len()
            );
            if out.write_all(resp.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        if method == "PATCH" {
            patches.fetch_add(1, Ordering::SeqCst);
        }
        // Forward on a fresh connection that the registry closes after answering, so the whole
        // answer is what it sends until EOF.
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream_port)) else { return };
        let mut request = format!("{request_line}\r\n");
        for (k, v) in headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("connection")) {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        if up.write_all(request.as_bytes()).and_then(|_| up.write_all(&body)).is_err() {
            return;
        }
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer);
        let _ = up.shutdown(Shutdown::Both);
        if out.write_all(&answer).is_err() {
            return;
        }
        // The registry said `Connection: close`; so does the answer relayed: the client opens a
        // new connection for its next request.
        return;
    }
}

fn auth_and_images(dir: &TestDir, auth: &str, src: &str, dst: &str) -> (String, String) {
    let auth = dir.write("auth.yaml", auth);
    let images = dir.write("images.yaml", &format!("{src}: {dst}\n"));
    (p(&auth).to_string(), p(&images).to_string())
}

#[test]
fn registry_refusing_single_request_uploads_gets_patch_uploads() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = RefusingProxy::start(dst.port());
    let img = push_image(src.api(), "up/app", "v1", ImageKind::Docker, "linux", "amd64", "");
    let dir = TestDir::new("uploads");
    let auth = format!("{}: {{insecure: true}}\n{}: {{insecure: true}}\n", src.addr(), proxy.addr());
    let (auth, images) = auth_and_images(&dir, &auth, &src.repo("up/app:v1"), &format!("{}/copy/app", proxy.addr()));

    let run = run_syncer(&["--auth", &auth, "--images", &images, "--proc", "1", "--retries", "0"]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 1, "one refusal is enough to switch:\n{run}");
    let blobs = img_blob_count(&img);
    assert!(proxy.patches.load(Ordering::SeqCst) >= blobs, "every blob went up by PATCH:\n{run}");
    assert!(run.output().contains("switching to PATCH uploads"), "the switch is logged:\n{run}");
}

#[test]
fn chunked_upload_key_uses_patch_from_the_start() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_image(src.api(), "up/app", "v1", ImageKind::Oci, "linux", "arm64", "v8");
    let dir = TestDir::new("uploads");
    let auth =
        format!("{}: {{insecure: true}}\n{}: {{insecure: true, chunked_upload: true}}\n", src.addr(), dst.addr());
    let (auth, images) = auth_and_images(&dir, &auth, &src.repo("up/app:v1"), &dst.repo("copy/app"));

    let run = run_syncer(&["--auth", &auth, "--images", &images]);
    run.assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "copy/app", "v1");
    let reqs = dst.requests();
    let patches = reqs.iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, img_blob_count(&img), "one PATCH per blob: {reqs:#?}");
}

/// Config + layers of a single image.
fn img_blob_count(img: &Image) -> usize {
    let m: serde_json::Value = serde_json::from_slice(&img.bytes).expect("manifest JSON");
    1 + m["layers"].as_array().map_or(0, Vec::len)
}
