//! The demo's helper (`examples/demo.sh`): fills a local registry with small fixture images and
//! shows digests side by side, reusing the integration tests' fixture pusher so that the demo
//! needs nothing but Rust and `docker-registry` (no docker, no curl).
//!
//! ```text
//! seed 127.0.0.1:PORT                   push the demo images (plain http, no credentials)
//! seed --show SRC_REF DST_REF [...]     print each pair's digests side by side
//! seed --free-port                      print a TCP port that is free on 127.0.0.1
//! ```
//!
//! Pushed images:
//! * `demo/multiarch:1.0` and `:latest`: one Docker manifest list for linux/amd64, linux/arm64
//!   and linux/arm/v7 (each child a config and two small layers);
//! * `demo/single:v1`, `:v2`, `:v3`: three different linux/amd64 images.
//!
//! `--show` prints, per pair, the short digests and a verdict: `identical`, `filtered` (the
//! destination is a list/index holding a subset of the source's entries, unchanged: what
//! `--os/--arch` produces), `different` or `missing`; it exits 1 on the last two.

// The integration tests' harness: this uses only a part of it (the rest, and its re-exports, unused here).
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/common/mod.rs"]
mod common;

use std::process::ExitCode;

use common::{free_port, index_entries, push_index, push_simple, Client, IndexKind, Manifest, DOCKER_LIST, OCI_INDEX};

const USAGE: &str = "usage:
  seed 127.0.0.1:PORT                  push the demo images to a local registry (plain http)
  seed --show SRC_REF DST_REF [...]    print source and destination digests side by side
  seed --free-port                     print a free TCP port on 127.0.0.1
refs are HOST:PORT/REPO:TAG";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--free-port"] => {
            println!("{}", free_port());
            ExitCode::SUCCESS
        }
        ["--show", pairs @ ..] if !pairs.is_empty() && pairs.len() % 2 == 0 => show(pairs),
        [addr] if !addr.starts_with('-') => {
            seed(addr);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn seed(addr: &str) {
    let c = Client::new(addr, None);
    let status = c.ping();
    assert_eq!(status, 200, "GET http://{addr}/v2/ answered {status}; is a registry running there?");

    let platforms = [("linux", "amd64", ""), ("linux", "arm64", ""), ("linux", "arm", "v7")];
    let index = push_index(&c, "demo/multiarch", "1.0", IndexKind::List, &platforms);
    c.put_manifest("demo/multiarch", "latest", &index.media_type, &index.bytes);
    println!("pushed {addr}/demo/multiarch:1.0 and :latest  {}  (manifest list)", index.digest);
    for child in &index.children {
        let pf = &child.platform;
        let variant = if pf.variant.is_empty() { String::new() } else { format!("/{}", pf.variant) };
        let platform = format!("{}/{}{variant}", pf.os, pf.arch);
        println!("         child {platform:<14} {}", child.digest);
    }
    for tag in ["v1", "v2", "v3"] {
        let img = push_simple(&c, "demo/single", tag);
        println!("pushed {addr}/demo/single:{tag}  {}  (image, linux/amd64)", img.digest);
    }
}

/// `HOST:PORT/REPO:TAG` → (client, repo, tag).
fn split_ref(r: &str) -> Option<(Client, String, String)> {
    let (host, rest) = r.split_once('/')?;
    let (repo, tag) = rest.rsplit_once(':')?;
    Some((Client::new(host, None), repo.to_string(), tag.to_string()))
}

fn is_index(m: &Manifest) -> bool {
    m.content_type == DOCKER_LIST || m.content_type == OCI_INDEX
}

fn platforms(m: &Option<Manifest>) -> String {
    match m {
        Some(m) if is_index(m) => index_entries(&m.bytes)
            .iter()
            .map(|(_, pf)| {
                if pf.variant.is_empty() {
                    format!("{}/{}", pf.os, pf.arch)
                } else {
                    format!("{}/{}/{}", pf.os, pf.arch, pf.variant)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(_) => "one image".to_string(),
        None => "-".to_string(),
    }
}

fn verdict(src: &Option<Manifest>, dst: &Option<Manifest>) -> &'static str {
    match (src, dst) {
        (Some(s), Some(d)) if s.digest == d.digest => "identical",
        (Some(s), Some(d)) if is_index(s) && is_index(d) => {
            let all = index_entries(&s.bytes);
            let kept = index_entries(&d.bytes);
            if !kept.is_empty() && kept.len() < all.len() && kept.iter().all(|e| all.contains(e)) {
                "filtered"
            } else {
                "different"
            }
        }
        (Some(_), Some(_)) => "different",
        _ => "missing",
    }
}

fn short(m: &Option<Manifest>) -> String {
    match m {
        Some(m) => m.digest.chars().take("sha256:".len() + 12).collect(),
        None => "(missing)".to_string(),
    }
}

fn show(pairs: &[&str]) -> ExitCode {
    let mut ok = true;
    let mut rows: Vec<[String; 6]> = Vec::new();
    for pair in pairs.chunks(2) {
        let (Some((sc, srepo, stag)), Some((dc, drepo, dtag))) = (split_ref(pair[0]), split_ref(pair[1])) else {
            eprintln!("bad reference pair {} {} (expected HOST:PORT/REPO:TAG)", pair[0], pair[1]);
            return ExitCode::from(2);
        };
        let s = sc.get_manifest(&srepo, &stag);
        let d = dc.get_manifest(&drepo, &dtag);
        let v = verdict(&s, &d);
        ok &= v == "identical" || v == "filtered";
        rows.push([pair[0].into(), short(&s), pair[1].into(), short(&d), v.into(), platforms(&d)]);
    }
    let header = ["source", "digest", "destination", "digest", "", "destination holds"].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("  {}", cells.join("  ").trim_end());
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
