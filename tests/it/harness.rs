//! Self-tests of the harness in `tests/it/common`: they do not run image-syncer, they check that the
//! registries, the fixture pusher, the access log and the paginating proxy behave as the syncer
//! tests assume.

use crate::common::*;

#[test]
fn harness_pushes_and_reads_back_images_and_indexes() {
    let reg = Registry::start();
    let c = reg.api();
    assert_eq!(c.ping(), 200);

    for kind in [ImageKind::Docker, ImageKind::Oci] {
        let img = push_image(c, "self/img", "v1", kind, "linux", "arm", "v7");
        let m = c.get_manifest("self/img", "v1").expect("manifest");
        assert_eq!(m.digest, img.digest);
        assert_eq!(m.bytes, img.bytes);
        assert_eq!(m.content_type, img.media_type);
        assert_eq!(c.head_manifest("self/img", "v1"), Some(img.digest.clone()));
        assert_eq!(m.json()["layers"].as_array().unwrap().len(), 2);
        for b in img.blobs() {
            let bytes = c.get_blob("self/img", &b).expect("blob");
            assert_eq!(sha256_digest(&bytes), b);
            assert!(c.blob_exists("self/img", &b));
        }
        let config: serde_json::Value =
            serde_json::from_slice(&c.get_blob("self/img", &img.config_digest).unwrap()).unwrap();
        assert_eq!(config["architecture"], "arm");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["variant"], "v7");
    }
    // Two images never share layers.
    let a = push_simple(c, "self/a", "x");
    let b = push_simple(c, "self/b", "x");
    assert!(a.layers.iter().all(|l| !b.layers.contains(l)));
    assert_ne!(a.digest, b.digest);

    for kind in [IndexKind::List, IndexKind::OciIndex] {
        let idx = push_index(c, "self/idx", "multi", kind, &[("linux", "amd64", ""), ("linux", "arm64", "v8")]);
        let m = c.get_manifest("self/idx", "multi").expect("index");
        assert_eq!(m.digest, idx.digest);
        assert_eq!(m.content_type, idx.media_type);
        let entries = index_entries(&m.bytes);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0, idx.child("linux", "arm64", "v8").digest);
        assert_eq!(entries[1].1, Platform::new("linux", "arm64", "v8"));
        for child in &idx.children {
            assert_eq!(c.head_manifest("self/idx", &child.digest), Some(child.digest.clone()));
        }
    }
    assert!(c.get_manifest("self/idx", "nope").is_none());
    assert_eq!(c.head_manifest("self/idx", "nope"), None);
    assert!(c.tags("does/not/exist").is_empty());
    assert_eq!(c.tags("self/img"), vec!["v1"]);

    let big = push_big_image(c, "self/big", "v1", 2);
    let bytes = c.get_blob("self/big", &big.layers[0]).unwrap();
    assert_eq!(bytes.len(), 2 * 1024 * 1024);
    assert_eq!(sha256_digest(&bytes), big.layers[0]);
}

#[test]
fn harness_access_log_counts_requests() {
    let reg = Registry::start();
    let c = reg.api();
    assert!(reg.requests().is_empty(), "{:?}", reg.requests());
    let img = push_simple(c, "log/repo", "v1");
    let reqs = reg.requests();
    // 3 blobs: POST + PUT each, then the manifest PUT.
    assert_eq!(reqs.iter().filter(|r| r.method == "POST").count(), 3);
    assert_eq!(reqs.iter().filter(|r| r.is_manifest_put()).count(), 1);
    assert_eq!(reqs.iter().filter(|r| r.method == "PUT").count(), 4);
    assert!(reqs.iter().any(|r| r.path == "/v2/log/repo/manifests/v1" && r.status == 201));

    reg.clear_requests();
    assert!(reg.requests().is_empty());
    c.get_manifest("log/repo", "v1").unwrap();
    c.get_blob("log/repo", &img.layers[0]).unwrap();
    let pairs = reg.request_pairs();
    assert_eq!(
        pairs,
        vec![
            ("GET".to_string(), "/v2/log/repo/manifests/v1".to_string()),
            ("GET".to_string(), format!("/v2/log/repo/blobs/{}", img.layers[0])),
        ]
    );
    // Calling requests() again does not consume them.
    assert_eq!(reg.requests().len(), 2);
    assert!(!reg.requests().iter().any(|r| r.is_write()));
}

#[test]
fn harness_htpasswd_registry() {
    let reg = Registry::start_with(RegistryOpts::htpasswd("alice", "s3cret-pw"));
    assert_eq!(reg.anonymous().ping(), 401);
    assert_eq!(reg.anonymous().with_creds("alice", "wrong").ping(), 401);
    assert_eq!(reg.api().ping(), 200);
    let img = push_simple(reg.api(), "auth/repo", "v1");
    assert_eq!(reg.api().head_manifest("auth/repo", "v1"), Some(img.digest.clone()));
    let auth = auth_yaml(&[reg.auth_entry()]);
    assert!(auth.contains("username: \"alice\""), "{auth}");
    assert!(auth.contains("insecure: true"), "{auth}");
    // Failed auth attempts are logged too.
    assert!(!reg.requests().is_empty());
}

#[test]
fn harness_registry_is_stopped_and_removed_on_drop() {
    let reg = Registry::start();
    let addr = reg.addr();
    let dir = reg.log_path().parent().unwrap().to_path_buf();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", reg.pid()));
    assert!(dir.exists());
    assert!(proc_dir.exists(), "no {}", proc_dir.display());
    drop(reg);
    assert!(!dir.exists(), "temp dir not removed");
    assert!(!proc_dir.exists(), "docker-registry still running (or not reaped)");
    assert!(std::net::TcpStream::connect(&addr).is_err(), "still listening");
}

#[test]
fn harness_paging_proxy_pages_tags_and_forwards() {
    let reg = Registry::start();
    let c = reg.api();
    let img = push_simple(c, "pg/repo", "t0");
    let mut expected = vec!["t0".to_string()];
    for i in 1..7 {
        let t = format!("t{i}");
        tag_image(c, &img, &t);
        expected.push(t);
    }
    let idx = push_index(c, "pg/repo", "oci", IndexKind::OciIndex, &[("linux", "amd64", "")]);
    expected.push("oci".into());
    expected.sort();

    let proxy = Proxy::paging(&reg.addr(), 3);
    let pc = Client::new(&proxy.addr(), None);
    // Follow the Link headers by hand.
    let mut url = "/v2/pg/repo/tags/list".to_string();
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, body) = pc.raw_get(&url, &[]);
        assert_eq!(status, 200);
        pages += 1;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let tags: Vec<String> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        assert!(tags.len() <= 3);
        got.extend(tags);
        match headers.get("link") {
            Some(link) => {
                assert!(link.ends_with("; rel=\"next\""), "{link}");
                url = link[1..link.find('>').unwrap()].to_string();
                assert!(url.starts_with("/v2/pg/repo/tags/list?n=3&last="), "{url}");
            }
            None => break,
        }
    }
    assert_eq!(got, expected);
    assert_eq!(pages, 3);
    assert_eq!(proxy.tag_list_requests(), 3);
    // The client's n is honoured when smaller than the page size.
    let (_, headers, body) = pc.raw_get("/v2/pg/repo/tags/list?n=1", &[]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["oci"]));
    assert_eq!(headers.get("link").map(String::as_str), Some("</v2/pg/repo/tags/list?n=1&last=oci>; rel=\"next\""));
    // The high-level helper sees one page only (it does not follow Link).
    assert_eq!(pc.tags("pg/repo").len(), 3);

    // Manifests, HEAD and blobs are forwarded with their headers.
    let m = pc.get_manifest("pg/repo", "t3").unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(m.bytes, img.bytes);
    assert_eq!(m.content_type, DOCKER_MANIFEST);
    assert_eq!(pc.head_manifest("pg/repo", "oci"), Some(idx.digest.clone()));
    let m = pc.get_manifest("pg/repo", "oci").unwrap();
    assert_eq!(m.content_type, OCI_INDEX);
    assert_eq!(pc.get_blob("pg/repo", &img.layers[1]), c.get_blob("pg/repo", &img.layers[1]));
    assert!(!pc.blob_exists("pg/repo", &sha256_digest(b"nope")));
    assert!(pc.get_manifest("pg/repo", "missing").is_none());
    assert!(pc.tags("pg/missing").is_empty());
    drop(proxy);
}

#[test]
fn harness_paging_proxy_forwards_auth_challenges() {
    let reg = Registry::start_with(RegistryOpts::htpasswd("bob", "pw-123"));
    push_simple(reg.api(), "p/r", "a");
    tag_image(reg.api(), &push_simple(reg.api(), "p/r", "b"), "c");
    let proxy = Proxy::paging(&reg.addr(), 2);
    let anon = Client::new(&proxy.addr(), None);
    let (status, headers, _) = anon.raw_get("/v2/p/r/tags/list", &[]);
    assert_eq!(status, 401);
    assert!(headers.get("www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    let authed = anon.with_creds("bob", "pw-123");
    let (status, headers, _) = authed.raw_get("/v2/p/r/tags/list", &[]);
    assert_eq!(status, 200);
    assert!(headers.contains_key("link"));
    assert_eq!(authed.tags("p/r"), vec!["a", "b"]);
}

#[test]
fn harness_access_log_parser() {
    let line =
        r#"127.0.0.1 - alice [26/Nov/2026:16:10:41 +0000] "PUT /v2/a/b/manifests/v1?x=1 HTTP/1.1" 201 0 "" "ureq""#;
    let r = parse_access_line(line).unwrap();
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/v2/a/b/manifests/v1");
    assert_eq!(r.query, "x=1");
    assert_eq!(r.status, 201);
    assert!(r.is_manifest_put() && r.is_write());
    assert!(parse_access_line(r#"time="2026" level=error msg="x""#).is_none());
    assert_eq!(base64(b"alice:pw"), "YWxpY2U6cHc=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(Run::failed_count_in("x\nSynchronization finished, 3 images failed, cost 2s\n"), Some(3));
}

/// What a client sending `Expect: 100-continue` must see (RFC 9110 §10.1.1): a request refused
/// from its head gets the final answer and its body is never read; an accepted one gets
/// `100 Continue` before it sends the body. Without `Expect`, a refused body meets a closed
/// connection while it is being written, as behind nginx.
#[test]
fn harness_proxy_honours_expect_100_continue() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let reg = Registry::start();
    let limit = 64 * 1024;
    let proxy = Proxy::like(&reg.addr(), Personality::Nginx { client_max_body_size: limit });
    let head = |len: usize, expect: bool| {
        let expect = if expect { "Expect: 100-continue\r\n" } else { "" };
        format!(
            "POST /v2/self/x/blobs/uploads/ HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n{expect}\r\n",
            proxy.addr()
        )
    };
    let read_until_close = |s: &mut TcpStream| {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    };

    // Refused with Expect: the final answer at once, no `100 Continue`, the body never sent.
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.write_all(head(limit + 1, true).as_bytes()).unwrap();
    let answer = read_until_close(&mut s);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");

    // Accepted with Expect: `100 Continue`, then the body, then the registry's answer.
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.write_all(head(10, true).as_bytes()).unwrap();
    let mut first = [0u8; 25];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"0123456789").unwrap();
    let answer = read_until_close(&mut s);
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");

    // Refused without Expect: the connection is closed under a client still writing its body.
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.write_all(head(64 * 1024 * 1024, false).as_bytes()).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    let cut = (0..64).any(|_| s.write_all(&chunk).is_err());
    assert!(cut, "a body of 64 MiB was written whole into a refused request");

    let reqs = proxy.requests();
    let seen: Vec<(u16, bool, bool, usize)> =
        reqs.iter().map(|r| (r.status, r.expect_continue, r.body_read, r.body_len)).collect();
    assert_eq!(seen, vec![(413, true, false, 0), (202, true, true, 10), (413, false, false, 0)]);
}

/// The ECR personality as ECR answers an upload: each `PATCH` `201`, the later ones with the
/// first one's `Range`; all bytes stored; a mount answered with a plain session (`202`).
#[test]
fn harness_ecr_personality_answers_patches_as_ecr() {
    let reg = Registry::start();
    let ecr = Proxy::like(&reg.addr(), Personality::Ecr);
    let http = agent();
    let url = |loc: &str| if loc.starts_with("http") { loc.to_string() } else { format!("http://{}{loc}", ecr.addr()) };
    let start = http.post(url("/v2/self/ecr/blobs/uploads/")).send_empty().expect("POST");
    assert_eq!(start.status().as_u16(), 202);
    let mut location = header(&start, "Location").expect("Location");
    let data = random_bytes(unique_seed(), 30);
    let mut ranges = Vec::new();
    for (i, part) in data.chunks(10).enumerate() {
        let range = format!("{}-{}", i * 10, i * 10 + part.len() - 1);
        let r = http.patch(url(&location)).header("Content-Range", &range).send(part).expect("PATCH");
        assert_eq!(r.status().as_u16(), 201, "PATCH {range}");
        ranges.push(header(&r, "Range").unwrap_or_default());
        location = header(&r, "Location").expect("Location");
    }
    assert_eq!(ranges, ["0-9", "0-9", "0-9"]);
    let digest = sha256_digest(&data);
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = http.put(format!("{}{sep}digest={digest}", url(&location))).send_empty().expect("PUT");
    assert_eq!(done.status().as_u16(), 201);
    assert_eq!(reg.api().get_blob("self/ecr", &digest), Some(data));
    let mount = format!("/v2/self/other/blobs/uploads/?mount={digest}&from=self/ecr");
    let r = http.post(url(&mount)).send_empty().expect("POST mount");
    assert_eq!(r.status().as_u16(), 202, "a mount ECR does not honour opens a session");
    assert!(!reg.api().blob_exists("self/other", &digest));
}
