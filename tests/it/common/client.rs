//! [`Client`]: a tiny Registry V2 client (ureq) that pushes fixtures and reads results, so no
//! assertion goes through the code under test.

use std::collections::BTreeMap;

use super::*;

/// A manifest as served by a registry.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// `Docker-Content-Digest` as served.
    pub digest: String,
}

impl Manifest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("manifest is JSON")
    }
}

/// A minimal Registry V2 client (ureq) for fixtures and assertions. Not the project's code.
#[derive(Clone)]
pub struct Client {
    base: String,
    auth: Option<String>,
    pub(crate) agent: ureq::Agent,
}

impl Client {
    /// `addr` is "host:port"; plain http.
    pub fn new(addr: &str, creds: Option<(String, String)>) -> Client {
        Client { base: format!("http://{addr}"), auth: creds.map(|(u, p)| basic_auth(&u, &p)), agent: agent() }
    }

    pub fn with_creds(&self, user: &str, pass: &str) -> Client {
        let mut c = self.clone();
        c.auth = Some(basic_auth(user, pass));
        c
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// `r` with this client's `Authorization`, if it has credentials.
    fn authed<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    fn get_req(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.authed(self.agent.get(&self.url(path)))
    }

    fn head_req(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.authed(self.agent.head(&self.url(path)))
    }

    /// Status of `GET /v2/`.
    pub fn ping(&self) -> u16 {
        self.get_req("/v2/").call().expect("GET /v2/").status().as_u16()
    }

    /// Uploads a blob (monolithic POST + PUT) and returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let post = self.authed(self.agent.post(&self.url(&format!("/v2/{repo}/blobs/uploads/"))));
        let resp = post.send_empty().expect("POST blob upload");
        assert_eq!(resp.status().as_u16(), 202, "POST /v2/{repo}/blobs/uploads/ failed");
        let location = header(&resp, "Location").expect("upload Location header");
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={digest}", self.url(&location));
        let put = self.authed(self.agent.put(&url).header("Content-Type", "application/octet-stream"));
        let mut resp = put.send(bytes).expect("PUT blob");
        let status = resp.status().as_u16();
        let body = String::from_utf8_lossy(&read_body(&mut resp)).to_string();
        assert_eq!(status, 201, "PUT blob {digest} to {repo}: {body}");
        digest
    }

    /// PUTs a manifest under `reference` (tag or digest) and returns its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let put = self.authed(
            self.agent.put(&self.url(&format!("/v2/{repo}/manifests/{reference}"))).header("Content-Type", media_type),
        );
        let mut resp = put.send(bytes).expect("PUT manifest");
        let status = resp.status().as_u16();
        let digest = header(&resp, "Docker-Content-Digest");
        let body = String::from_utf8_lossy(&read_body(&mut resp)).to_string();
        assert_eq!(status, 201, "PUT manifest {repo}:{reference}: {body}");
        let expected = sha256_digest(bytes);
        assert_eq!(digest.as_deref(), Some(&expected[..]), "registry digest");
        expected
    }

    /// GETs a manifest with an Accept header listing all four manifest types. `None` on 404.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Option<Manifest> {
        let mut resp = self
            .get_req(&format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_ALL)
            .call()
            .expect("GET manifest");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "GET manifest {repo}:{reference}: {}", String::from_utf8_lossy(&bytes));
        let content_type = header(&resp, "Content-Type").unwrap_or_default();
        let digest = header(&resp, "Docker-Content-Digest").unwrap_or_default();
        assert_eq!(digest, sha256_digest(&bytes), "served digest matches bytes");
        Some(Manifest { bytes, content_type, digest })
    }

    /// HEADs a manifest; returns `Docker-Content-Digest`, `None` on 404.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Option<String> {
        let resp = self
            .head_req(&format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT_ALL)
            .call()
            .expect("HEAD manifest");
        match resp.status().as_u16() {
            404 => None,
            200 => Some(header(&resp, "Docker-Content-Digest").expect("digest header")),
            s => panic!("HEAD manifest {repo}:{reference}: status {s}"),
        }
    }

    /// GETs a blob's bytes, `None` on 404.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let mut resp = self.get_req(&format!("/v2/{repo}/blobs/{digest}")).call().expect("GET blob");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        match status {
            404 => None,
            200 => Some(bytes),
            s => panic!("GET blob {repo}@{digest}: status {s}"),
        }
    }

    /// Whether a blob exists in `repo` (HEAD).
    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self.head_req(&format!("/v2/{repo}/blobs/{digest}")).call().expect("HEAD blob");
        match resp.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("HEAD blob {repo}@{digest}: status {s}"),
        }
    }

    /// All tags of a repository, sorted; empty when the repository is unknown.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut resp = self.get_req(&format!("/v2/{repo}/tags/list")).call().expect("GET tags");
        let status = resp.status().as_u16();
        let bytes = read_body(&mut resp);
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "GET tags {repo}");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("tags JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// `DELETE /v2/<repo>/blobs/<digest>` (the registry must have deletes enabled, as the test
    /// registries do): the status.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> u16 {
        let r = self.authed(self.agent.delete(&self.url(&format!("/v2/{repo}/blobs/{digest}"))));
        r.call().map(|resp| resp.status().as_u16()).expect("DELETE")
    }

    /// `DELETE /v2/<repo>/manifests/<reference>`: the status. Distribution deletes by digest
    /// only (a tag is answered `400 DIGEST_INVALID`), and deleting a digest removes every tag
    /// that points at it; without deletion enabled it answers `405 UNSUPPORTED`.
    pub fn delete_manifest(&self, repo: &str, reference: &str) -> u16 {
        let r = self.authed(self.agent.delete(&self.url(&format!("/v2/{repo}/manifests/{reference}"))));
        r.call().map(|resp| resp.status().as_u16()).expect("DELETE manifest")
    }

    /// Every repository of the registry (`GET /v2/_catalog`, following `Link` pages), sorted.
    pub fn catalog(&self) -> Vec<String> {
        let mut repos = Vec::new();
        let mut next = Some("/v2/_catalog".to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            assert!(pages <= 1000, "GET /v2/_catalog: more than 1000 pages");
            let mut resp = self.get_req(&path).call().expect("GET catalog");
            let status = resp.status().as_u16();
            let bytes = read_body(&mut resp);
            assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&bytes));
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("catalog JSON");
            for r in v["repositories"].as_array().into_iter().flatten() {
                repos.push(r.as_str().expect("repository name").to_string());
            }
            next = header(&resp, "Link").and_then(|l| {
                let (start, end) = (l.find('<')?, l.find('>')?);
                l.contains("rel=\"next\"").then(|| l[start + 1..end].to_string())
            });
        }
        repos.sort();
        repos
    }

    /// A raw GET (path or absolute URL) with extra headers: (status, headers, body).
    pub fn raw_get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
        let mut r = self.get_req(path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let mut resp = r.call().expect("GET");
        let status = resp.status().as_u16();
        let mut hs = BTreeMap::new();
        for (k, v) in resp.headers() {
            hs.insert(k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string());
        }
        (status, hs, read_body(&mut resp))
    }
}
