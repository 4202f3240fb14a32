//! Shared harness for the integration tests; the bench and the seed example include it too, for
//! a part of it.
//!
//! Everything here talks to real `docker-registry` processes (CNCF distribution 2.8.2 from
//! Debian) on 127.0.0.1, never to the internet, and never through the project's own code. One
//! file per job:
//!
//! * [`dir`]: [`TestDir`], a temporary directory removed on drop, for whatever a test writes.
//! * [`util`]: seeds, deterministic bytes, digests, base64, YAML strings and the HTTP agent.
//! * [`launch`]: the one `docker-registry` launcher and access-log reader both registry kinds use.
//! * [`registry`]: [`Registry`], a plain-http registry (htpasswd optional) whose requests tests count.
//! * [`client`]: [`Client`], a small Registry V2 client, so that no check goes through the tool.
//! * [`fixtures`]: images, indexes and artifacts to push, and the assertions that a copy is exact.
//! * [`signed`]: [`signed::Signed`], a signed image and its referrers, for referrers and bundles.
//! * [`files`]: auth and images files, and [`Job`], the two of them for one run.
//! * [`run`]: [`run_syncer`] and [`Running`] run the binary, killed after [`RUN_LIMIT`] by default.
//! * [`proxy`]: [`Proxy`], the one test proxy: records, paginates, delays, injects faults.
//! * [`personality`]: [`Personality`], what the proxy answers to play ECR, GHCR, Artifactory….
//! * [`http`]: raw HTTP/1.1 framing for the proxy and the token server, which must misbehave.
//! * [`pki`]: a throw-away CA, server and client certificates, and a JWT signer (`openssl`).
//! * [`secure`]: TLS, mTLS and token-auth registries, each with a plain twin for the fixtures.
//! * [`token`]: a recording token server, the realm of the token-auth registries.
//! * [`private`]: auth files with TLS keys, and runs with an isolated credential environment.

pub mod client;
pub mod dir;
pub mod files;
pub mod fixtures;
pub mod http;
pub mod launch;
pub mod personality;
pub mod pki;
pub mod private;
pub mod proxy;
pub mod registry;
pub mod run;
pub mod secure;
pub mod signed;
pub mod token;
pub mod util;

pub use client::*;
pub use dir::*;
pub use files::*;
pub use fixtures::*;
pub use launch::{free_port, parse_access_line, Request};
pub use personality::Personality;
pub use proxy::*;
pub use registry::*;
pub use run::*;
pub use util::*;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The Accept header used for every manifest request: all four manifest types.
pub const ACCEPT_ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json";
