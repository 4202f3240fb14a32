//! skopeo, the side-by-side reference: `skopeo sync --src yaml --dest docker --preserve-digests`
//! run and measured like the syncer, next to it in the small-images, long-links, fan-out and
//! many-tags sections. Which skopeo (`BENCH_SKOPEO`: `/usr/bin/skopeo` or `skopeo` on the PATH by
//! default, a path, or `0` for none) and up to how many tags (`BENCH_SKOPEO_MAX_TAGS`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::p;
use super::run::{run_process, Measured};

/// The line skopeo prints once it has written an image's manifest (it stores signatures next).
const SKOPEO_DONE_LINE: &str = "Storing signatures";

/// `BENCH_SKOPEO`: unset for `/usr/bin/skopeo` (or `skopeo` on the PATH) when it runs, a path
/// for another one, `0` to leave skopeo out.
pub(super) struct Skopeo {
    pub(super) bin: Option<PathBuf>,
    /// Its version, or why it is not run.
    note: String,
    /// `BENCH_SKOPEO_MAX_TAGS`: the many-tags section runs skopeo only up to this many tags.
    pub(super) max_tags: usize,
}

impl Skopeo {
    pub(super) fn from_env(max_tags: usize) -> Result<Skopeo, String> {
        let v = std::env::var("BENCH_SKOPEO").unwrap_or_default();
        let v = v.trim();
        if matches!(v, "0" | "off" | "no" | "false") {
            return Ok(Skopeo { bin: None, note: format!("off (BENCH_SKOPEO={v})"), max_tags });
        }
        let bin = match v {
            "" if Path::new("/usr/bin/skopeo").exists() => PathBuf::from("/usr/bin/skopeo"),
            "" => PathBuf::from("skopeo"),
            path => PathBuf::from(path),
        };
        match Command::new(&bin).arg("--version").stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Ok(Skopeo { note: format!("{} ({version})", bin.display()), bin: Some(bin), max_tags })
            }
            _ if v.is_empty() => Ok(Skopeo { bin: None, note: "not installed (BENCH_SKOPEO)".into(), max_tags }),
            other => Err(format!("BENCH_SKOPEO={v}: `{v} --version` failed: {other:?}")),
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.bin {
            Some(_) => format!("{} (BENCH_SKOPEO), up to {} tags (BENCH_SKOPEO_MAX_TAGS)", self.note, self.max_tags),
            None => self.note.clone(),
        }
    }
}

/// A `skopeo sync --src yaml` source file: these repositories of `src` (`host:port`), every tag,
/// plain http.
pub(super) fn skopeo_source_yaml(src: &str, repos: &[String]) -> String {
    let mut yaml = format!("\"{src}\":\n  tls-verify: false\n  images:\n");
    for repo in repos {
        yaml.push_str(&format!("    {repo}: []\n"));
    }
    yaml
}

/// `skopeo sync --src yaml --dest docker --preserve-digests YAML DEST`: each `a/b` of the yaml
/// goes to `DEST/b`. Credentials files point to a path that does not exist.
pub(super) fn skopeo_sync(
    bin: &Path,
    yaml: &Path,
    dest: &str,
    name: &str,
    limit: Duration,
) -> Result<Measured, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--insecure-policy", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"]).args([
        "--preserve-digests",
        p(yaml),
        dest,
    ]);
    let no_creds = std::env::temp_dir().join("image-syncer-bench-no-credentials");
    cmd.env("DOCKER_CONFIG", &no_creds).env("REGISTRY_AUTH_FILE", no_creds.join("auth.json"));
    run_process(cmd, &format!("skopeo ({name})"), SKOPEO_DONE_LINE, limit)
}
