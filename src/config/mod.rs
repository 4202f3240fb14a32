//! From raw flags to one validated, immutable [`Config`]: files read, `${VAR}`s expanded, rules
//! checked. Everything that can be wrong with the user's input is found here, before any
//! network traffic, and reported naming the file and rule at fault.
//!
//! This layer sits above the ones that do the work: it resolves files into their plain types
//! (the registry layer's [`Auth`] and [`Limits`], the engine's [`Job`]), and they never see a
//! file format.

mod auth;
mod docker;
mod doctor;
mod env;
mod file;
mod images;
mod inventory;
mod self_image;
mod shard;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use auth::{resolve_auth, AuthFile};
pub use doctor::DoctorConfig;
pub use env::Env;
pub use file::Format;
pub use images::{DefaultDest, ImagesFile};
pub use inventory::InventoryConfig;
pub use self_image::self_image_request;
use shard::Shard;

use crate::cli::{parse_bytes, split_commas, Args};
use crate::engine::{Job, Mode, Options, Referrers};
use crate::layout::LayoutSpec;
use crate::manifest::{MediaType, PlatformFilter};
use crate::reference::Location;
use crate::registry::{Auth, Limits, TlsOptions};
use crate::rule::{Immutable, Rule};

/// The smallest `--chunk-size`: registries may refuse smaller chunks (S3 multipart parts are
/// at least 5 MiB, but registries buffer), and tiny chunks mean a request per few bytes.
const MIN_CHUNK: u64 = 4096;

/// The smallest `--max-archive-size`: smaller parts only multiply files (at most 999 parts).
const MIN_PART: u64 = 1 << 20;

/// The largest file FAT32 holds: 4 GiB − 1 byte (`4GiB` parts are one byte too large).
/// <https://en.wikipedia.org/wiki/File_Allocation_Table#FAT32> (max. file size 4,294,967,295 bytes).
const FAT32_MAX_FILE: u64 = (4 << 30) - 1;

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

    /// Resolve `args`, taking `${VAR}`s and `DEFAULT_*` from `env`. Each part is resolved by a
    /// function of its own, in the order the user's mistakes are reported.
    pub fn from_args_in(args: &Args, env: &Env) -> Result<Config, ConfigError> {
        if args.records.is_some() {
            log::warn!("--records is ignored: blobs are checked at the destination instead");
        }
        let command = Command::from_args(args)?;
        if args.write.is_some() {
            return Err(ConfigError::Usage("--write is for `image-syncer doctor REGISTRY[/REPO] --write REPO`".into()));
        }
        if args.output.is_some() {
            return Err(ConfigError::Usage("--output is for `image-syncer inventory … --output FILE`".into()));
        }
        if !args.binary.is_empty() {
            return Err(ConfigError::Usage("--binary is for `image-syncer self-image oci:DIR --binary PATH`".into()));
        }
        let (auth_file, auth_path, rules) = rules_source(args, &command, env)?;
        if args.proc == 0 {
            return Err(ConfigError::Usage("--proc must be at least 1".into()));
        }
        let filter = PlatformFilter::new(&split_commas(&args.os), &split_commas(&args.arch))
            .map_err(|e| ConfigError::Usage(e.to_string()))?;
        let (output, failed_output) = outputs(args)?;
        let limits = limits(args)?;
        let auth = resolve_auth(auth_file, &auth_path, env)?;
        let repos = rules.iter().flat_map(|r| [&r.src.repo, &r.dst.repo]);
        for key in auth.unused_keys(repos) {
            log::warn!("{}: auth key {key:?} matches no image in the rules; is it mistyped?", auth_path.display());
        }
        let rules = this_shard(args, immutable(args, pruned(args, rules))?, env)?;
        let tls = TlsOptions {
            ca_files: args.ca_file.iter().map(PathBuf::from).collect(),
            client_cert: None,
            skip_verify: args.skip_tls_verify,
        };
        let opts = Options {
            filter,
            force: args.force,
            mode: command.mode,
            referrers: referrers(args)?,
            per_image: args.report.is_some() || output.is_some(),
        };
        let mut job = Job { rules, proc: args.proc, retries: args.retries, opts };
        let mut layouts = layouts(&job);
        // What a run copies into a bundle lands only if the bundle is written out at the end;
        // when it is not, those images are failures, which needs to know which they were.
        job.opts.per_image |= layouts.iter().any(|l| l.write);
        split_archives(args, &mut layouts)?;
        let base = args.base.as_ref().map(PathBuf::from);
        if base.is_some() && !layouts.iter().any(|l| l.dest) {
            return Err(ConfigError::Usage(
                "--base is for writing a bundle: no rule has an oci: or oci-archive: destination".into(),
            ));
        }
        let report = args.report.as_ref().map(PathBuf::from);
        Ok(Config { auth, tls, limits, job, output, failed_output, report, layouts, base })
    }
}

/// What the command line asks for: `copy SRC DST`, `verify [SRC DST]`, or no command (the
/// rules of the files), and so what the run does with each image.
struct Command {
    verify_verb: bool,
    /// `copy`/`verify` with a source and a destination.
    one_shot: Option<(String, String)>,
    mode: Mode,
}

impl Command {
    fn from_args(args: &Args) -> Result<Command, ConfigError> {
        let (verb, one_shot) = match args.command.as_slice() {
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
                    "unknown command {other:?}: use `image-syncer copy SRC DST`, `image-syncer verify`, `image-syncer doctor \
                     REGISTRY[/REPO]`, `image-syncer inventory`, `image-syncer self-image oci:DIR`, or --images FILE; see --help"
                )))
            }
        };
        let verify_verb = verb == Some("verify");
        let mode = match (verify_verb || args.verify || args.verify_blobs, args.dry_run) {
            (true, true) => return Err(ConfigError::Usage("--dry-run and --verify cannot be used together".into())),
            (true, false) => Mode::Verify { blobs: args.verify_blobs },
            (false, true) => Mode::DryRun,
            (false, false) => Mode::Sync,
        };
        Ok(Command { verify_verb, one_shot, mode })
    }
}

/// Where the rules come from (the command line, `--images`, or the legacy `--config`), with
/// the auth file that goes with them and its path (for messages and relative paths).
fn rules_source(args: &Args, command: &Command, env: &Env) -> Result<(AuthFile, PathBuf, Vec<Rule>), ConfigError> {
    let defaults = DefaultDest {
        registry: args.registry.clone().or_else(|| env.get("DEFAULT_REGISTRY")).filter(|s| !s.is_empty()),
        namespace: args.namespace.clone().or_else(|| env.get("DEFAULT_NAMESPACE")).filter(|s| !s.is_empty()),
    };
    let auth_path = || PathBuf::from(args.auth.clone().unwrap_or_default());
    match (&args.config, &args.images, &command.one_shot) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            let one_shot = if command.verify_verb { "verify SRC DST" } else { "copy SRC DST" };
            Err(ConfigError::Usage(format!("{one_shot} takes no --images or --config file")))
        }
        (None, None, Some((src, dst))) => {
            let origin = if command.verify_verb { "the verify command line" } else { "the copy command line" };
            let file = ImagesFile(vec![(src.clone(), images::Dests::One(dst.clone()))]);
            let rules = images::rules(file, Path::new(origin), &defaults, env)?;
            Ok((optional_auth(args)?, auth_path(), rules))
        }
        (Some(_), Some(_), None) => Err(ConfigError::Usage("--config and --images cannot be used together".into())),
        (Some(c), None, None) => {
            let path = Path::new(c);
            let legacy: LegacyFile = file::load(path)?;
            Ok((legacy.auth, path.to_path_buf(), images::rules(legacy.images, path, &defaults, env)?))
        }
        (None, Some(i), None) => {
            let path = Path::new(i);
            let rules = images::rules(file::load(path)?, path, &defaults, env)?;
            Ok((optional_auth(args)?, auth_path(), rules))
        }
        (None, None, None) => Err(ConfigError::Usage(
            "nothing to do: give --images FILE (with --auth FILE) or --config FILE; see --help".into(),
        )),
    }
}

/// `--output-success-images` and `--output-failed-images`, in `--output-images-format`.
type Outputs = (Option<(PathBuf, Format)>, Option<(PathBuf, Format)>);

fn outputs(args: &Args) -> Result<Outputs, ConfigError> {
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
    Ok((output, failed_output))
}

/// `--stall-timeout`, `--min-speed`, `--chunk-size`.
fn limits(args: &Args) -> Result<Limits, ConfigError> {
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
    Ok(limits)
}

/// `--immutable`/`--immutable-tags` make every rule's destination tags immutable; a rule with an
/// `immutable` key naming its tags keeps it (it says more about them than a run-wide flag).
fn immutable(args: &Args, mut rules: Vec<Rule>) -> Result<Vec<Rule>, ConfigError> {
    let flag = match (args.immutable, &args.immutable_tags) {
        (true, Some(_)) => {
            return Err(ConfigError::Usage("--immutable takes every tag; --immutable-tags some: give one".into()))
        }
        (true, None) => Immutable::All,
        (false, Some(re)) => {
            Immutable::matching(re).map_err(|e| ConfigError::Usage(format!("--immutable-tags: {e}")))?
        }
        (false, None) => return Ok(rules),
    };
    for r in rules.iter_mut().filter(|r| r.immutable.is_none()) {
        r.immutable = Some(flag.clone());
    }
    Ok(rules)
}

/// `--prune` makes every rule that pushes tags prune. Rules that push by digest only produce
/// no tag: they prune nothing (and keep nothing from being pruned by others: their
/// repositories' tags are not theirs).
fn pruned(args: &Args, mut rules: Vec<Rule>) -> Vec<Rule> {
    if args.prune {
        for r in rules.iter_mut().filter(|r| r.pushes_tags()) {
            r.prune = true;
        }
    }
    rules
}

/// The rules of this shard (`--shard` or its environment variables), chosen by destination
/// repository.
fn this_shard(args: &Args, rules: Vec<Rule>, env: &Env) -> Result<Vec<Rule>, ConfigError> {
    let Some(shard) = Shard::from_flag_or_env(args.shard.as_deref(), env).map_err(ConfigError::Usage)? else {
        return Ok(rules);
    };
    if let Some(r) = rules.iter().find(|r| r.prune && r.namespace.is_some()) {
        // Shards split by destination repository; a namespace's repositories are known only
        // once its catalog is read, so another shard could own one of them.
        return Err(ConfigError::Usage(format!(
            "--shard with prune: {} is a namespace rule; name its repositories as rules, or do not prune",
            r.describe()
        )));
    }
    let all = rules.len();
    let mine: Vec<_> = rules.into_iter().filter(|r| shard.owns(&r.dst.repo)).collect();
    log::info!("shard {shard}: {} of {all} rule(s), chosen by destination repository", mine.len());
    Ok(mine)
}

/// `--no-referrers` and `--referrer-type`.
fn referrers(args: &Args) -> Result<Referrers, ConfigError> {
    if args.no_referrers && !args.referrer_type.is_empty() {
        return Err(ConfigError::Usage("--referrer-type and --no-referrers contradict each other".into()));
    }
    let types = args.referrer_type.iter().map(MediaType::new).collect();
    Ok(Referrers { enabled: !args.no_referrers, types })
}

/// The layouts the rules read or write, each once.
fn layouts(job: &Job) -> Vec<LayoutSpec> {
    let mut out: Vec<LayoutSpec> = Vec::new();
    let sides = job.rules.iter().flat_map(|r| [(&r.src.repo, false), (&r.dst.repo, true)]);
    for (repo, dest) in sides.filter(|(r, _)| r.is_layout()) {
        let write = dest && job.opts.mode == Mode::Sync;
        match out.iter_mut().find(|l| l.location == repo.location) {
            Some(l) => {
                l.dest |= dest;
                l.write |= write;
            }
            None => out.push(LayoutSpec { location: repo.location.clone(), dest, write, part_size: None }),
        }
    }
    out
}

/// `--max-archive-size`: the part size of every `oci-archive:` destination.
fn split_archives(args: &Args, layouts: &mut [LayoutSpec]) -> Result<(), ConfigError> {
    let Some(v) = &args.max_archive_size else { return Ok(()) };
    let size = parse_bytes(v).map_err(|e| ConfigError::Usage(format!("--max-archive-size: {e}")))?;
    if size < MIN_PART {
        return Err(ConfigError::Usage(format!("--max-archive-size must be at least {MIN_PART} bytes (1MiB)")));
    }
    let mut archives = layouts.iter_mut().filter(|l| l.dest && matches!(l.location, Location::Archive(_))).peekable();
    if archives.peek().is_none() {
        return Err(ConfigError::Usage(
            "--max-archive-size is for writing an archive: no rule has an oci-archive: destination".into(),
        ));
    }
    if size == FAT32_MAX_FILE + 1 {
        log::warn!("--max-archive-size {v}: a FAT32 file holds at most 4 GiB minus one byte; 4095MiB parts fit");
    }
    for l in archives {
        l.part_size = Some(size);
    }
    Ok(())
}

/// What the commands that only read registries (doctor, inventory) take from the flags: the
/// auth file (optional), `--ca-file` and `--skip-tls-verify` (no client certificate), the limits.
fn reader_settings(args: &Args, env: &Env) -> Result<(Auth, TlsOptions, Limits), ConfigError> {
    let limits = limits(args)?;
    let auth = resolve_auth(optional_auth(args)?, &PathBuf::from(args.auth.clone().unwrap_or_default()), env)?;
    let tls = TlsOptions {
        ca_files: args.ca_file.iter().map(PathBuf::from).collect(),
        client_cert: None,
        skip_verify: args.skip_tls_verify,
    };
    Ok((auth, tls, limits))
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
