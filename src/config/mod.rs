//! From raw flags to one validated, immutable [`Config`]: files read, `${VAR}`s expanded, rules
//! checked. Everything that can be wrong with the user's input is found here, before any
//! network traffic, and reported naming the file and rule at fault.
//!
//! This layer sits above the ones that do the work: it resolves files into their plain types
//! (the registry layer's [`Auth`] and [`Limits`], the engine's [`Job`]), and they never see a
//! file format.

mod auth;
mod docker;
mod env;
mod file;
mod images;
mod shard;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use auth::{resolve_auth, AuthFile};
pub use env::Env;
pub use file::Format;
pub use images::{DefaultDest, ImagesFile};
use shard::Shard;

use crate::cli::{parse_bytes, split_commas, Args};
use crate::engine::{Job, Mode, Referrers};
use crate::layout::LayoutSpec;
use crate::manifest::{MediaType, PlatformFilter};
use crate::registry::{Auth, Limits, TlsOptions};

/// The smallest `--chunk-size`: registries may refuse smaller chunks (S3 multipart parts are
/// at least 5 MiB, but registries buffer), and tiny chunks mean a request per few bytes.
const MIN_CHUNK: u64 = 4096;

/// Input that cannot be used; each names what is at fault.
#[derive(Debug)]
pub enum ConfigError {
    Usage(String),
    Format { path: PathBuf },
    Read { path: PathBuf, message: String },
    Parse { path: PathBuf, message: String },
    Rule { path: PathBuf, rule: String, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Usage(m) => f.write_str(m),
            ConfigError::Format { path } => {
                write!(f, "{}: unknown file format, use a .yaml, .yml or .json extension", path.display())
            }
            ConfigError::Read { path, message } => write!(f, "{}: cannot read: {message}", path.display()),
            ConfigError::Parse { path, message } => write!(f, "{}: invalid content: {message}", path.display()),
            ConfigError::Rule { path, rule, message } => {
                write!(f, "{}: rule \"{rule}\": {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Config {
    pub auth: Auth,
    /// `--ca-file` / `--skip-tls-verify`, applied to every registry.
    pub tls: TlsOptions,
    pub limits: Limits,
    pub job: Job,
    /// `--output-success-images`.
    pub output: Option<(PathBuf, Format)>,
    /// `--output-failed-images`.
    pub failed_output: Option<(PathBuf, Format)>,
    /// `--report`.
    pub report: Option<PathBuf>,
    /// The OCI layouts and archives the rules name.
    pub layouts: Vec<LayoutSpec>,
    /// `--base`: the previous bundle a delta bundle leaves out.
    pub base: Option<PathBuf>,
}

/// The legacy `--config` file: both maps in one.
#[derive(Deserialize)]
struct LegacyFile {
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    images: ImagesFile,
}

impl Config {
    /// Resolve `args` against the process environment.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        Config::from_args_in(args, &Env::process())
    }

    /// Resolve `args`, taking `${VAR}`s and `DEFAULT_*` from `env`.
    pub fn from_args_in(args: &Args, env: &Env) -> Result<Config, ConfigError> {
        let defaults = DefaultDest {
            registry: args.registry.clone().or_else(|| env.get("DEFAULT_REGISTRY")).filter(|s| !s.is_empty()),
            namespace: args.namespace.clone().or_else(|| env.get("DEFAULT_NAMESPACE")).filter(|s| !s.is_empty()),
        };
        if args.records.is_some() {
            log::warn!("--records is ignored: blobs are checked at the destination instead");
        }
        // `copy SRC DST`, `verify [SRC DST]`, or no command (the rules of the files).
        let (verb, copy) = match args.command.as_slice() {
            [] => (None, None),
            [c, src, dst] if c == "copy" || c == "verify" => (Some(c.as_str()), Some((src.clone(), dst.clone()))),
            [c] if c == "verify" => (Some("verify"), None),
            [c, ..] if c == "copy" || c == "verify" => {
                return Err(ConfigError::Usage(format!(
                    "{c} needs a source and a destination: image-syncer {c} SRC DST{}",
                    if c == "verify" { ", or image-syncer verify --images FILE" } else { "" }
                )))
            }
            [other, ..] => {
                return Err(ConfigError::Usage(format!(
                    "unknown command {other:?}: use `image-syncer copy SRC DST`, `image-syncer verify`, or --images FILE; see --help"
                )))
            }
        };
        let verify = verb == Some("verify") || args.verify || args.verify_blobs;
        let mode = match (verify, args.dry_run) {
            (true, true) => return Err(ConfigError::Usage("--dry-run and --verify cannot be used together".into())),
            (true, false) => Mode::Verify { blobs: args.verify_blobs },
            (false, true) => Mode::DryRun,
            (false, false) => Mode::Sync,
        };
        let one_shot = if verb == Some("verify") { "verify SRC DST" } else { "copy SRC DST" };
        let (auth_file, auth_path, rules) = match (&args.config, &args.images) {
            _ if copy.is_some() && (args.config.is_some() || args.images.is_some()) => {
                return Err(ConfigError::Usage(format!("{one_shot} takes no --images or --config file")))
            }
            (None, None) if copy.is_some() => {
                let (src, dst) = copy.expect("checked");
                let origin =
                    Path::new(if verb == Some("verify") { "the verify command line" } else { "the copy command line" });
                let rules = images::rules(ImagesFile(vec![(src, images::Dests::One(dst))]), origin, &defaults, env)?;
                (optional_auth(args)?, PathBuf::from(args.auth.clone().unwrap_or_default()), rules)
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Usage("--config and --images cannot be used together".into()))
            }
            (Some(c), None) => {
                let path = Path::new(c);
                let legacy: LegacyFile = file::load(path)?;
                (legacy.auth, path.to_path_buf(), images::rules(legacy.images, path, &defaults, env)?)
            }
            (None, Some(i)) => {
                let path = Path::new(i);
                let rules = images::rules(file::load(path)?, path, &defaults, env)?;
                (optional_auth(args)?, PathBuf::from(args.auth.clone().unwrap_or_default()), rules)
            }
            (None, None) => {
                return Err(ConfigError::Usage(
                    "nothing to do: give --images FILE (with --auth FILE) or --config FILE; see --help".into(),
                ))
            }
        };
        if args.proc == 0 {
            return Err(ConfigError::Usage("--proc must be at least 1".into()));
        }
        let platforms = PlatformFilter::new(&split_commas(&args.os), &split_commas(&args.arch))
            .map_err(|e| ConfigError::Usage(e.to_string()))?;
        let format = || match args.output_images_format.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            other => Err(ConfigError::Usage(format!("--output-images-format must be yaml or json, not {other:?}"))),
        };
        let output = match &args.output_success_images {
            None => None,
            Some(p) => Some((PathBuf::from(p), format()?)),
        };
        let failed_output = match &args.output_failed_images {
            None => None,
            Some(p) => Some((PathBuf::from(p), format()?)),
        };
        if args.stall_timeout == 0 {
            return Err(ConfigError::Usage("--stall-timeout must be at least 1 (second)".into()));
        }
        let bytes = |flag: &str, v: &str| parse_bytes(v).map_err(|e| ConfigError::Usage(format!("{flag}: {e}")));
        let limits = Limits {
            stall_timeout: Duration::from_secs(args.stall_timeout),
            min_speed: bytes("--min-speed", &args.min_speed)?,
            chunk_size: bytes("--chunk-size", &args.chunk_size)?,
        };
        if limits.chunk_size < MIN_CHUNK {
            return Err(ConfigError::Usage(format!("--chunk-size must be at least {MIN_CHUNK} bytes")));
        }
        let auth = resolve_auth(auth_file, &auth_path, env)?;
        let repos = rules.iter().flat_map(|r| [&r.src.repo, &r.dst.repo]);
        for key in auth.unused_keys(repos) {
            log::warn!("{}: auth key {key:?} matches no image in the rules; is it mistyped?", auth_path.display());
        }
        let mut rules = rules;
        if args.prune {
            // Rules that push by digest only produce no tag: they prune nothing (and keep
            // nothing from being pruned by others: their repositories' tags are not theirs).
            for r in rules.iter_mut().filter(|r| r.pushes_tags()) {
                r.prune = true;
            }
        }
        let shard = Shard::from_flag_or_env(args.shard.as_deref(), env).map_err(ConfigError::Usage)?;
        if let (Some(_), Some(r)) = (&shard, rules.iter().find(|r| r.prune && r.namespace.is_some())) {
            // Shards split by destination repository; a namespace's repositories are known only
            // once its catalog is read, so another shard could own one of them.
            return Err(ConfigError::Usage(format!(
                "--shard with prune: {} is a namespace rule; name its repositories as rules, or do not prune",
                r.describe()
            )));
        }
        let rules = match shard {
            None => rules,
            Some(shard) => {
                let all = rules.len();
                let mine: Vec<_> = rules.into_iter().filter(|r| shard.owns(&r.dst.repo)).collect();
                log::info!("shard {shard}: {} of {all} rule(s), chosen by destination repository", mine.len());
                mine
            }
        };
        let tls = TlsOptions {
            ca_files: args.ca_file.iter().map(PathBuf::from).collect(),
            client_cert: None,
            skip_verify: args.skip_tls_verify,
        };
        if args.no_referrers && !args.referrer_type.is_empty() {
            return Err(ConfigError::Usage("--referrer-type and --no-referrers contradict each other".into()));
        }
        let types = args.referrer_type.iter().map(MediaType::new).collect();
        let referrers = Referrers { enabled: !args.no_referrers, types };
        let job = Job {
            rules,
            proc: args.proc,
            retries: args.retries,
            platforms,
            force: args.force,
            mode,
            live: false,
            referrers,
            image_stats: args.report.is_some(),
        };
        let report = args.report.as_ref().map(PathBuf::from);
        let layouts = layouts(&job);
        let base = args.base.as_ref().map(PathBuf::from);
        if base.is_some() && !layouts.iter().any(|l| l.dest) {
            return Err(ConfigError::Usage(
                "--base is for writing a bundle: no rule has an oci: or oci-archive: destination".into(),
            ));
        }
        Ok(Config { auth, tls, limits, job, output, failed_output, report, layouts, base })
    }
}

/// The layouts the rules read or write, each once.
fn layouts(job: &Job) -> Vec<LayoutSpec> {
    let mut out: Vec<LayoutSpec> = Vec::new();
    let sides = job.rules.iter().flat_map(|r| [(&r.src.repo, false), (&r.dst.repo, true)]);
    for (repo, dest) in sides.filter(|(r, _)| r.is_layout()) {
        let write = dest && job.mode == Mode::Sync;
        match out.iter_mut().find(|l| l.location == repo.location) {
            Some(l) => {
                l.dest |= dest;
                l.write |= write;
            }
            None => out.push(LayoutSpec { location: repo.location.clone(), dest, write }),
        }
    }
    out
}

/// `--auth FILE` when given; else none (docker's credentials may still cover the registries).
fn optional_auth(args: &Args) -> Result<AuthFile, ConfigError> {
    match &args.auth {
        Some(a) => file::load(Path::new(a)),
        None => {
            log::warn!(
                "no --auth file given: registries are accessed anonymously unless docker's credentials have them"
            );
            Ok(AuthFile::new())
        }
    }
}
