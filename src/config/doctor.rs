//! `image-syncer doctor REGISTRY[/REPO] [--write REPO]` resolved: the registry and repositories
//! checked and normalised as a rule's would be, and the auth file, TLS flags and limits a sync
//! would use — so the doctor meets the registry exactly as a sync does.

use super::{reader_settings, ConfigError, Env};
use crate::cli::Args;
use crate::doctor::Target;
use crate::reference::{normalize_registry, parse_repository, DOCKER_HUB};
use crate::registry::{Auth, Limits, TlsOptions};

/// Everything `image-syncer doctor` needs, validated.
#[derive(Debug)]
pub struct DoctorConfig {
    pub auth: Auth,
    pub tls: TlsOptions,
    pub limits: Limits,
    pub target: Target,
}

const USAGE: &str = "doctor takes one REGISTRY[/REPO], e.g. image-syncer doctor registry.example.com/team/app \
                     [--write team/scratch] [--auth FILE]";

impl DoctorConfig {
    /// Resolve `args` (whose command is `doctor`) against the process environment.
    pub fn from_args(args: &Args) -> Result<DoctorConfig, ConfigError> {
        DoctorConfig::from_args_in(args, &Env::process())
    }

    pub fn from_args_in(args: &Args, env: &Env) -> Result<DoctorConfig, ConfigError> {
        let [_, target] = args.command.as_slice() else {
            return Err(ConfigError::Usage(USAGE.into()));
        };
        if args.images.is_some() || args.config.is_some() {
            return Err(ConfigError::Usage("doctor takes no --images or --config file".into()));
        }
        let target = target_of(target, args.write.as_deref())?;
        let (auth, tls, limits) = reader_settings(args, env)?;
        Ok(DoctorConfig { auth, tls, limits, target })
    }
}

/// `REGISTRY[/REPO]`: the first component is the registry, whatever it looks like; `--write`
/// names a repository on it (with or without the registry in front).
fn target_of(arg: &str, write: Option<&str>) -> Result<Target, ConfigError> {
    let arg = arg.trim().trim_end_matches('/');
    let (host, path) = arg.split_once('/').unwrap_or((arg, ""));
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(ConfigError::Usage(format!("doctor: {arg:?} does not start with a registry host; {USAGE}")));
    }
    let registry = normalize_registry(host);
    let repo = (!path.is_empty()).then(|| repository(&registry, path)).transpose()?;
    let write = match write {
        None => None,
        Some(w) => {
            let w = w.trim().trim_end_matches('/');
            let path = w.strip_prefix(host).and_then(|p| p.strip_prefix('/')).unwrap_or(w);
            Some(repository(&registry, path)?)
        }
    };
    Ok(Target { registry, repo, write })
}

/// A repository name on `registry`, checked as a rule's is (Docker Hub's one-part names are
/// `library/NAME`).
fn repository(registry: &str, path: &str) -> Result<String, ConfigError> {
    // A host that looks like one makes `parse_repository` read the path as a path on it.
    let host = if registry == DOCKER_HUB { "docker.io" } else { "localhost" };
    let repo = parse_repository(&format!("{host}/{path}"))
        .map_err(|e| ConfigError::Usage(format!("doctor: {registry}/{path}: {e}")))?;
    Ok(repo.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(arg: &str, write: Option<&str>) -> Target {
        target_of(arg, write).unwrap()
    }

    #[test]
    fn registry_then_repository() {
        assert_eq!(t("r.io", None), Target { registry: "r.io".into(), repo: None, write: None });
        let x = t("127.0.0.1:5000/team/app/", Some("127.0.0.1:5000/team/scratch"));
        assert_eq!((x.repo.as_deref(), x.write.as_deref()), (Some("team/app"), Some("team/scratch")));
        let hub = t("docker.io/alpine", Some("me/scratch"));
        assert_eq!(hub.registry, DOCKER_HUB);
        assert_eq!((hub.repo.as_deref(), hub.write.as_deref()), (Some("library/alpine"), Some("me/scratch")));
        // The first component is the registry even when it has no dot.
        assert_eq!(t("mirror/app", None).registry, "mirror");
        assert!(target_of("r.io/Team", None).is_err());
        assert!(target_of("", None).is_err());
    }
}
