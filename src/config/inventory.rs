//! `image-syncer inventory [--auth FILE] (--images FILE | SRC …) [--output FILE]` resolved into
//! what to read. With `--images`, the *destinations* of the rules are read: at an air-gapped
//! site that is the images file its bundles are imported with (`oci:/media/usb/bundle:
//! harbor.internal/mirror`), so the inventory holds what those imports put there — the bundle
//! itself need not be present. `SRC` names repositories as a rule's source does: `REGISTRY/REPO`,
//! `REGISTRY/NAMESPACE/*`, `oci:DIR` (the whole layout), `oci:DIR:NAME`.

use std::path::{Path, PathBuf};

use super::images::{self, DefaultDest};
use super::{file, reader_settings, ConfigError, Env};
use crate::cli::Args;
use crate::inventory::Target;
use crate::layout::LayoutSpec;
use crate::registry::{Auth, Limits, TlsOptions};
use crate::rule::{parse_layout_ref, parse_namespace, parse_rule_ref, split_layout, Namespace, Rule, Selector};

/// Everything `image-syncer inventory` needs, validated.
#[derive(Debug)]
pub struct InventoryConfig {
    pub auth: Auth,
    pub tls: TlsOptions,
    pub limits: Limits,
    pub targets: Vec<Target>,
    /// The layouts the targets name, opened to be read.
    pub layouts: Vec<LayoutSpec>,
    /// `--output`; stdout without it.
    pub output: Option<PathBuf>,
    pub proc: usize,
}

const USAGE: &str = "inventory takes --images FILE (its destinations are read) or repositories: image-syncer inventory \
                     [--auth FILE] (--images FILE | REGISTRY/REPO | REGISTRY/NAMESPACE/* | oci:DIR[:NAME] …) [--output FILE]";

impl InventoryConfig {
    /// Resolve `args` (whose command is `inventory`) against the process environment.
    pub fn from_args(args: &Args) -> Result<InventoryConfig, ConfigError> {
        InventoryConfig::from_args_in(args, &Env::process())
    }

    pub fn from_args_in(args: &Args, env: &Env) -> Result<InventoryConfig, ConfigError> {
        refuse_sync_flags(args)?;
        let srcs = &args.command[1..];
        let (targets, from_images) = match (&args.images, srcs.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::Usage(format!("--images and SRC arguments together; {USAGE}")))
            }
            (None, true) => return Err(ConfigError::Usage(USAGE.into())),
            (Some(path), true) => {
                let path = Path::new(path);
                let defaults = DefaultDest {
                    registry: args.registry.clone().or_else(|| env.get("DEFAULT_REGISTRY")).filter(|s| !s.is_empty()),
                    namespace: args
                        .namespace
                        .clone()
                        .or_else(|| env.get("DEFAULT_NAMESPACE"))
                        .filter(|s| !s.is_empty()),
                };
                let rules = images::rules(file::load(path)?, path, &defaults, env)?;
                (rules.iter().map(destination).collect(), true)
            }
            (None, false) => (srcs.iter().map(|s| source(s)).collect::<Result<Vec<_>, _>>()?, false),
        };
        if args.proc == 0 {
            return Err(ConfigError::Usage("--proc must be at least 1".into()));
        }
        let (auth, tls, limits) = reader_settings(args, env)?;
        let layouts = layouts(&targets, from_images);
        let output = args.output.as_ref().map(PathBuf::from);
        Ok(InventoryConfig { auth, tls, limits, targets, layouts, output, proc: args.proc })
    }
}

/// Flags that change what a sync copies or writes mean nothing here: refused, not ignored.
fn refuse_sync_flags(args: &Args) -> Result<(), ConfigError> {
    let given = [
        ("--config", args.config.is_some()),
        ("--base", args.base.is_some()),
        ("--write", args.write.is_some()),
        ("--prune", args.prune),
        ("--immutable", args.immutable || args.immutable_tags.is_some()),
        ("--force", args.force),
        ("--dry-run", args.dry_run),
        ("--verify", args.verify || args.verify_blobs),
        ("--os/--arch", !args.os.is_empty() || !args.arch.is_empty()),
        ("--shard", args.shard.is_some()),
    ];
    match given.iter().find(|(_, on)| *on) {
        Some((flag, _)) => Err(ConfigError::Usage(format!("{flag} is not for inventory; {USAGE}"))),
        None => Ok(()),
    }
}

/// What a rule writes to: its destination repository, or every repository below its
/// destination prefix (a namespace or a whole bundle), as the rule's include/exclude admit.
fn destination(rule: &Rule) -> Target {
    match &rule.namespace {
        Some(ns) => Target::Below { prefix: rule.dst.repo.clone(), namespace: ns.clone() },
        None => Target::Repository(rule.dst.repo.clone()),
    }
}

/// One `SRC` argument: repositories, not images (no tag, digest or regex).
fn source(arg: &str) -> Result<Target, ConfigError> {
    let fail = |m: String| ConfigError::Usage(format!("inventory {arg}: {m}"));
    let whole = |sel: &Selector| matches!(sel, Selector::All);
    if let Some(layout) = split_layout(arg) {
        let (location, sel) = layout.map_err(|e| fail(e.to_string()))?;
        let Some(sel) = sel else {
            let prefix = crate::rule::layout_ref(location, String::new(), Selector::All).repo;
            return Ok(Target::Below { prefix, namespace: Namespace::default() });
        };
        let (name, selector) = parse_layout_ref(&location, &sel).map_err(|e| fail(e.to_string()))?;
        return match (name, whole(&selector)) {
            (Some(name), true) => Ok(Target::Repository(crate::rule::layout_ref(location, name, selector).repo)),
            _ => Err(fail("name an image of the layout by its full name (oci:DIR:REGISTRY/PATH), no tags".into())),
        };
    }
    if let Some(prefix) = arg.trim().strip_suffix("/*") {
        let ns = parse_namespace(prefix).map_err(|e| fail(e.to_string()))?;
        return Ok(Target::Below { prefix: ns.repo, namespace: Namespace::default() });
    }
    let r = parse_rule_ref(arg).map_err(|e| fail(e.to_string()))?;
    if !whole(&r.selector) {
        return Err(fail("an inventory reads whole repositories: leave out the tags or digest".into()));
    }
    Ok(Target::Repository(r.repo))
}

/// The layouts of `targets`, each once: read only. A destination of the images file may not
/// exist yet (it then holds nothing); a layout named as `SRC` must.
fn layouts(targets: &[Target], destinations: bool) -> Vec<LayoutSpec> {
    let mut out: Vec<LayoutSpec> = Vec::new();
    for t in targets {
        let repo = match t {
            Target::Repository(r) | Target::Below { prefix: r, .. } => r,
        };
        if repo.is_layout() && !out.iter().any(|l| l.location == repo.location) {
            out.push(LayoutSpec { location: repo.location.clone(), write: false, dest: destinations, part_size: None });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        let mut all = vec!["image-syncer".to_string()];
        all.extend(v.iter().map(|s| s.to_string()));
        crate::cli::parse(all).unwrap()
    }

    fn resolve(v: &[&str]) -> Result<InventoryConfig, ConfigError> {
        InventoryConfig::from_args_in(&args(v), &Env::from_pairs(&[]))
    }

    #[test]
    fn sources_name_repositories() {
        let c = resolve(&["inventory", "r.io/team/app", "r.io/team/*", "oci:/b", "oci:/b:q.io/x"]).unwrap();
        let shown: Vec<String> = c
            .targets
            .iter()
            .map(|t| match t {
                Target::Repository(r) => r.to_string(),
                Target::Below { prefix, .. } => format!("{prefix}/*"),
            })
            .collect();
        assert_eq!(shown, ["r.io/team/app", "r.io/team/*", "oci:/b/*", "oci:/b:q.io/x"]);
        assert_eq!(c.layouts.len(), 1, "one layout, opened once");
        assert!(!c.layouts[0].dest && !c.layouts[0].write);
        for bad in ["r.io/team/app:v1", "oci:/b:v1", "Not A Repo"] {
            assert!(matches!(resolve(&["inventory", bad]), Err(ConfigError::Usage(_))), "{bad}");
        }
        assert!(resolve(&["inventory"]).is_err(), "nothing named");
        assert!(resolve(&["inventory", "r.io/a", "--base", "x"]).unwrap_err().to_string().contains("--base"));
    }

    #[test]
    fn an_images_file_gives_its_destinations() {
        let dir = std::env::temp_dir().join(format!("inv-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let images = dir.join("images.yaml");
        std::fs::write(&images, "oci:/media/usb/bundle: r.io/mirror\nq.io/a/b:v1: r.io/x/b\n").unwrap();
        let c = resolve(&["inventory", "--images", images.to_str().unwrap()]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(c.layouts.is_empty(), "the bundle is a source: not read");
        assert!(matches!(&c.targets[0], Target::Below { prefix, .. } if prefix.to_string() == "r.io/mirror"));
        assert!(matches!(&c.targets[1], Target::Repository(r) if r.to_string() == "r.io/x/b"));
        assert!(resolve(&["inventory", "--images", "i.yaml", "r.io/a"]).is_err());
    }
}
