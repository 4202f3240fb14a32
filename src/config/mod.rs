//! From raw flags to one validated, immutable [`Config`]: files read, `${VAR}`s expanded, rules
//! checked. Everything that can be wrong with the user's input is found here, before any
//! network traffic, and reported naming the file and rule at fault.

mod auth;
mod docker;
mod env;
mod file;
mod images;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use auth::{Auth, AuthFile, AuthRule, Credentials, TlsOptions};
pub use file::Format;
pub use images::{DefaultDest, ImagesFile, Rule};

use crate::cli::{split_commas, Args};
use crate::manifest::PlatformFilter;

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
    pub rules: Vec<Rule>,
    pub proc: usize,
    pub retries: usize,
    pub platforms: PlatformFilter,
    pub force: bool,
    pub output: Option<(PathBuf, Format)>,
    /// `--ca-file` / `--skip-tls-verify`, applied to every registry.
    pub tls: TlsOptions,
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
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let defaults = DefaultDest {
            registry: args
                .registry
                .clone()
                .or_else(|| std::env::var("DEFAULT_REGISTRY").ok())
                .filter(|s| !s.is_empty()),
            namespace: args
                .namespace
                .clone()
                .or_else(|| std::env::var("DEFAULT_NAMESPACE").ok())
                .filter(|s| !s.is_empty()),
        };
        if args.records.is_some() {
            log::warn!("--records is ignored: blobs are checked at the destination instead");
        }
        let (auth_file, auth_path, rules) = match (&args.config, &args.images) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Usage("--config and --images cannot be used together".into()))
            }
            (Some(c), None) => {
                let path = Path::new(c);
                let legacy: LegacyFile = file::load(path)?;
                (legacy.auth, path.to_path_buf(), images::rules(legacy.images, path, &defaults)?)
            }
            (None, Some(i)) => {
                let path = Path::new(i);
                let rules = images::rules(file::load(path)?, path, &defaults)?;
                let auth = match &args.auth {
                    Some(a) => file::load(Path::new(a))?,
                    None => {
                        log::warn!("no --auth file given: registries are accessed anonymously unless docker's credentials have them");
                        AuthFile::new()
                    }
                };
                (auth, PathBuf::from(args.auth.clone().unwrap_or_default()), rules)
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
        let platforms =
            PlatformFilter::new(&split_commas(&args.os), &split_commas(&args.arch)).map_err(ConfigError::Usage)?;
        let output = match &args.output_success_images {
            None => None,
            Some(p) => {
                let format = match args.output_images_format.to_ascii_lowercase().as_str() {
                    "yaml" | "yml" => Format::Yaml,
                    "json" => Format::Json,
                    other => {
                        return Err(ConfigError::Usage(format!(
                            "--output-images-format must be yaml or json, not {other:?}"
                        )))
                    }
                };
                Some((PathBuf::from(p), format))
            }
        };
        let auth = Auth::from_file(auth_file, &auth_path)?;
        let repos = rules.iter().flat_map(|r| [&r.src.repo, &r.dst.repo]);
        for key in auth.unused_keys(repos) {
            log::warn!("{}: auth key {key:?} matches no image in the rules; is it mistyped?", auth_path.display());
        }
        let tls = TlsOptions {
            ca_files: args.ca_file.iter().map(PathBuf::from).collect(),
            client_cert: None,
            skip_verify: args.skip_tls_verify,
        };
        Ok(Config { auth, tls, rules, proc: args.proc, retries: args.retries, platforms, force: args.force, output })
    }
}
