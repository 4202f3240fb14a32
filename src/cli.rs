//! Command-line flags, named and defaulted exactly as in the Go image-syncer.
//!
//! argh only understands `--flag value`, while the Go tool's users write `--proc=6` and
//! `--os=linux,windows` (pflag string slices split on commas), so [`normalize`] rewrites the
//! arguments before argh sees them.

use argh::FromArgs;

/// Synchronise container images between Docker Registry V2 / OCI registries: the rules of
/// --images FILE, or one image or repository with `image-syncer copy SRC DST [flags]`;
/// `image-syncer verify` (same files or SRC DST) audits destinations and changes nothing;
/// `image-syncer doctor REGISTRY[/REPO]` prints what a registry does; `image-syncer inventory`
/// (--images FILE or SRC...) writes what repositories hold, for --base;
/// `image-syncer self-image oci:DIR[:TAG]` writes this program as a container image.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// copy SRC DST: copy one image or repository (SRC as in an images file: repo, repo:tag,
    /// repo:a,b, repo:/regex/, repo@sha256:...), no images file needed; verify [SRC DST]: as
    /// --verify; doctor REGISTRY[/REPO]: test what a registry does and print it as a table;
    /// inventory [SRC...]: what the repositories hold (of SRC, or the destinations of --images)
    /// self-image oci:DIR[:NAME][:TAG]: write this static binary as a container image there
    #[argh(positional)]
    pub command: Vec<String>,

    /// auth file (yaml or json): registry or registry/namespace -> username, password, insecure
    #[argh(option)]
    pub auth: Option<String>,

    /// images file (yaml or json): source image -> destination image(s)
    #[argh(option)]
    pub images: Option<String>,

    /// legacy config file holding both "auth" and "images"
    #[argh(option)]
    pub config: Option<String>,

    /// number of worker threads (default 32; the Go tool's was 5)
    #[argh(option, short = 'p', default = "32")]
    pub proc: usize,

    /// times to retry failed tasks after a pass (default 2)
    #[argh(option, short = 'r', default = "2")]
    pub retries: usize,

    /// only sync these operating systems from multi-platform images (repeatable, os[:osversion])
    #[argh(option)]
    pub os: Vec<String>,

    /// only sync these architectures from multi-platform images (repeatable, arch[:variant])
    #[argh(option)]
    pub arch: Vec<String>,

    /// copy images even when the destination already has the same digest
    #[argh(switch)]
    pub force: bool,

    /// exact mirror: after the run, delete destination tags that no rule produces any more (as `prune: true` on every rule; see README)
    #[argh(switch)]
    pub prune: bool,

    /// take every destination tag as immutable: one the destination lists is in sync, without a manifest request on either side (as `immutable: true` on every rule; ignored by --force and --verify; see README)
    #[argh(switch)]
    pub immutable: bool,

    /// as --immutable, for the destination tags this regex matches only (e.g. '^v?\d+\.\d+\.\d+$')
    #[argh(option)]
    pub immutable_tags: Option<String>,

    /// writing a bundle (oci:DIR or oci-archive:FILE): leave out the blobs this previous bundle
    /// (directory, archive, or its index.json) or site inventory (image-syncer inventory) holds — a delta bundle
    #[argh(option)]
    pub base: Option<String>,

    /// inventory: write the inventory to this file (atomically) instead of stdout
    #[argh(option)]
    pub output: Option<String>,

    /// do not copy referrers (signatures, SBOMs, attestations) with their images; by default they follow
    #[argh(switch)]
    pub no_referrers: bool,

    /// copy only referrers of this artifact type (repeatable), e.g. application/spdx+json; cosign's .sig/.att/.sbom tags follow regardless
    #[argh(option)]
    pub referrer_type: Vec<String>,

    /// log file (default: stderr)
    #[argh(option)]
    pub log: Option<String>,

    /// write the successfully synced images to this file, in the images-file format
    #[argh(option)]
    pub output_success_images: Option<String>,

    /// format of --output-success-images: yaml or json (default yaml)
    #[argh(option, default = "String::from(\"yaml\")")]
    pub output_images_format: String,

    /// write the images that failed to this file, in the images-file format (feed it back with --images)
    #[argh(option)]
    pub output_failed_images: Option<String>,

    /// seconds a request may wait for its answer, and a transfer may make no progress (default 60)
    #[argh(option, default = "60")]
    pub stall_timeout: u64,

    /// bytes per second, averaged over --stall-timeout, below which a transfer counts as stalled (default 1KiB)
    #[argh(option, default = "String::from(\"1KiB\")")]
    pub min_speed: String,

    /// write a JSON report of the run to this file: totals, and each image's status, digest and error
    #[argh(option)]
    pub report: Option<String>,

    /// print only errors and the summary lines
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// resolve every rule against the registries and print what would be copied; write nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// change nothing: check that every destination has its source's digest and every manifest
    /// and blob it references (HEAD, sizes); exit 1 on any difference
    #[argh(switch)]
    pub verify: bool,

    /// like --verify, and also read and hash every blob at the destination
    #[argh(switch)]
    pub verify_blobs: bool,

    /// sync only shard INDEX of COUNT (0-based; split by destination repository), e.g. 0/3; default from JOB_COMPLETION_INDEX and JOB_COMPLETIONS when both are set
    #[argh(option)]
    pub shard: Option<String>,

    /// bytes per PATCH request of a chunked upload (default 64MiB)
    #[argh(option, default = "String::from(\"64MiB\")")]
    pub chunk_size: String,

    /// split an oci-archive: destination into parts FILE.tar.001, .002, … of at most this many bytes, listed with their sha256 in FILE.tar.parts.json (a FAT32 file: 4095MiB at most); oci-archive:FILE.tar reads them back
    #[argh(option)]
    pub max_archive_size: Option<String>,

    /// PEM bundle of extra CAs trusted for every https registry (in addition to the system roots)
    #[argh(option)]
    pub ca_file: Option<String>,

    /// do not verify TLS certificates of any registry (insecure; logged as a warning)
    #[argh(switch)]
    pub skip_tls_verify: bool,

    /// default destination registry for rules whose destination is empty (env DEFAULT_REGISTRY)
    #[argh(option)]
    pub registry: Option<String>,

    /// default destination namespace for rules whose destination is empty (env DEFAULT_NAMESPACE)
    #[argh(option)]
    pub namespace: Option<String>,

    /// accepted for compatibility with old Go releases and ignored
    #[argh(option)]
    pub records: Option<String>,

    /// doctor: also upload throwaway blobs to this repository of the registry (deleted afterwards; nothing is tagged)
    #[argh(option)]
    pub write: Option<String>,

    /// self-image: the static binary to put in the image instead of this one (repeatable: one per architecture, making a multi-platform image)
    #[argh(option)]
    pub binary: Vec<String>,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}

/// Split `--flag=value` into `--flag value` (and `-p=3` into `-p 3`); leave everything else.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        match a.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') && flag.len() > 1 && !flag.contains(' ') => {
                out.push(flag.to_string());
                out.push(value.to_string());
            }
            _ => out.push(a),
        }
    }
    out
}

/// A byte count: a plain number, or one with a `K`/`KiB`/`M`/`MiB`/`G`/`GiB` suffix (powers of
/// 1024; `B` allowed).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{v:?} is not a byte count (e.g. 65536, 512KiB, 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{v:?} has an unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{v:?} is too large"))
}

/// pflag string slices accept `a,b`: split every value on commas and drop empty pieces.
pub fn split_commas(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Parse the process arguments; on `--help` or a bad flag, argh's message and exit code.
pub fn parse(raw: Vec<String>) -> Result<Args, argh::EarlyExit> {
    let raw = normalize(raw);
    let cmd = raw.first().map(String::as_str).unwrap_or("image-syncer");
    let cmd = std::path::Path::new(cmd).file_name().and_then(|s| s.to_str()).unwrap_or("image-syncer");
    let rest: Vec<&str> = raw.iter().skip(1).map(String::as_str).collect();
    Args::from_args(&[cmd], &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Args {
        let mut v = vec!["image-syncer".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        parse(v).unwrap()
    }

    #[test]
    fn defaults() {
        let a = p(&[]);
        assert_eq!((a.proc, a.retries, a.output_images_format.as_str()), (32, 2, "yaml"));
        assert!(!a.force);
    }

    #[test]
    fn equals_form_and_short_flags() {
        let a = p(&["--proc=6", "-r", "4", "--auth=a.yaml", "--images", "i.yaml", "--force"]);
        assert_eq!((a.proc, a.retries), (6, 4));
        assert_eq!(a.auth.as_deref(), Some("a.yaml"));
        let a = p(&["-p=3"]);
        assert_eq!(a.proc, 3);
    }

    #[test]
    fn platform_lists() {
        let a = p(&["--os=linux,windows", "--arch", "amd64", "--arch=arm:v7"]);
        assert_eq!(split_commas(&a.os), ["linux", "windows"]);
        assert_eq!(split_commas(&a.arch), ["amd64", "arm:v7"]);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("2 m"), Ok(2 << 20));
        assert!(parse_bytes("fast").is_err());
        assert!(parse_bytes("3parsecs").is_err());
    }

    #[test]
    fn value_with_equals_is_kept() {
        let n = normalize(["x".to_string(), "--log=/tmp/a=b".to_string()]);
        assert_eq!(n, ["x", "--log", "/tmp/a=b"]);
    }
}
