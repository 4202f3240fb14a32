//! Shared harness for the integration tests.
//!
//! Everything here talks to real `docker-registry` processes (CNCF distribution 2.8.2 from
//! Debian) on 127.0.0.1, never to the internet, and never through the project's own code. One
//! file per job:
//!
//! * [`dir`]: [`TestDir`], a self-removing temporary directory.
//! * [`registry`]: [`Registry`] starts a registry on a free port (optionally behind htpasswd
//!   Basic auth), waits until it answers, exposes its access log, and kills it on drop.
//! * [`client`]: [`Client`], a tiny Registry V2 client written with `ureq` to push fixtures and
//!   read results; [`fixtures`]: [`push_image`], [`push_index`], [`push_big_image`] and the
//!   assertions that a copy is byte-exact.
//! * [`files`]: auth and images files; [`run`]: [`run_syncer`] runs the binary under test (or
//!   `$IMAGE_SYNCER_BIN`) with a watchdog.
//! * [`proxy`]: [`Proxy`], the one test proxy (recording, paginating, delaying, injecting
//!   faults); [`http`]: the raw HTTP/1.1 framing it and the token server share.
//! * Private registries: [`pki`] (a throw-away CA and JWT signer), [`secure`] (TLS, mTLS and
//!   token-auth registries), [`token`] (a recording token server), [`private`] (auth files with
//!   TLS keys, runs with an isolated credential environment).

pub mod client;
pub mod dir;
pub mod files;
pub mod fixtures;
pub mod http;
pub mod launch;
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
