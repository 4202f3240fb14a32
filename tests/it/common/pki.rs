//! Test certificates and JWT signing with the `openssl` command-line tool (no crypto crate in the
//! dev-dependencies): a throw-away CA, a server certificate for `127.0.0.1` (with the
//! subjectAltName rustls insists on), a client certificate for mTLS, and an RSA key + self-signed
//! certificate that signs RS256 registry tokens.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{base64, unique_seed, TestDir};

/// Runs `openssl ARGS` in `dir`, feeding `stdin`; returns stdout. Panics with stderr on failure.
pub fn openssl(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (is /usr/bin/openssl installed?)");
    // A small input fits in the pipe buffer, so writing before reading cannot dead-lock.
    child.stdin.take().unwrap().write_all(stdin).expect("write to openssl");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(out.status.success(), "openssl {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Base64url without padding (JWT encoding).
pub fn base64url(bytes: &[u8]) -> String {
    base64(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

/// A test CA with a server certificate (127.0.0.1, localhost) and a client certificate, all
/// P-256 keys in PEM files inside a temporary directory.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Holds the files; removed on drop.
    _dir: TestDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TestDir::new("pki");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN=image-syncer test CA {:x}", unique_seed()),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            b"",
        );
        issue(d, "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
        issue(d, "client", "image-syncer-test-client", "extendedKeyUsage=clientAuth\n");
        Pki {
            ca_cert: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            _dir: dir,
        }
    }
}

/// Issues `NAME.pem` / `NAME.key` signed by `ca.pem` / `ca.key` in `dir`.
fn issue(dir: &Path, name: &str, cn: &str, extensions: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
        b"",
    );
    let all = format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}");
    fs::write(dir.join(&ext), all).expect("write extensions file");
    let serial = format!("0x{:x}", unique_seed() >> 1);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
        b"",
    );
}

/// An RSA key and its self-signed certificate, for RS256 JWTs whose `x5c` header carries the
/// certificate (distribution 2.8 checks it against `auth.token.rootcertbundle`).
pub struct JwtSigner {
    pub key: PathBuf,
    /// The certificate in PEM: the registry's `rootcertbundle`.
    pub cert: PathBuf,
    /// Standard base64 of the certificate's DER (the `x5c` entry).
    cert_der_b64: String,
    dir: TestDir,
}

impl JwtSigner {
    pub fn new() -> JwtSigner {
        let dir = TestDir::new("jwt-signer");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "signer.key",
                "-out",
                "signer.pem",
                "-days",
                "2",
                "-subj",
                "/CN=image-syncer test token signer",
            ],
            b"",
        );
        let der = openssl(d, &["x509", "-in", "signer.pem", "-outform", "DER"], b"");
        JwtSigner { key: d.join("signer.key"), cert: d.join("signer.pem"), cert_der_b64: base64(&der), dir }
    }

    /// `base64url(header).base64url(claims).base64url(RS256 signature)`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]});
        let input = format!(
            "{}.{}",
            base64url(&serde_json::to_vec(&header).unwrap()),
            base64url(&serde_json::to_vec(claims).unwrap())
        );
        let key = self.key.to_str().expect("utf-8 path");
        let sig = openssl(self.dir.path(), &["dgst", "-sha256", "-sign", key], input.as_bytes());
        format!("{input}.{}", base64url(&sig))
    }
}
