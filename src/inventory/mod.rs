//! `image-syncer inventory`: what the repositories of a site (a registry, or a layout) really
//! hold, written as a small JSON document ([`document`]) that `--base` reads on the connected
//! side, so the next bundle carries exactly what the site lacks — whatever the site pruned,
//! lost or added by itself since the last bundle. (Zarf's differential packages compare with
//! a previous package, oc-mirror with its own cache; neither sees the site.)
//!
//! Taking one reads through the same [`Stores`] a sync reads sources through, with pull access
//! only: the repositories named (a namespace or a whole layout through its catalog), then each
//! repository as a sync walks a source ([`walk`]), then each blob found referenced is asked for
//! once per registry (a `HEAD`): only what answers is listed as held. Whatever could not be
//! read is reported and left out, which only makes the next delta larger, never wrong.

mod document;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

pub use document::{registry_repository, Held, Inventory, Repo, Unusable, VERSION};

use crate::digest::Digest;
use crate::reference::{parse_repository, Location, Repository};
use crate::rule::Namespace;
use crate::store::Access;
use crate::stores::Stores;

/// What to read.
#[derive(Clone, Debug)]
pub enum Target {
    /// One repository (of a registry, or an image of a layout).
    Repository(Repository),
    /// Every repository below `prefix` that `namespace` admits (by its path below the prefix;
    /// for a layout, its name without the registry): a registry's catalog, or a whole layout.
    Below { prefix: Repository, namespace: Namespace },
}

/// An inventory taken, and what could not be read for it.
pub struct Taken {
    pub inventory: Inventory,
    pub problems: Vec<String>,
}

/// Read `targets` through `stores` with `workers` threads.
pub fn take(targets: &[Target], stores: &Stores, workers: usize) -> Taken {
    let mut inventory = Inventory::now();
    let mut problems = Vec::new();
    let repos = repositories(targets, stores, &mut problems);

    let apis = walk::ReferrersApis::default();
    let walked = parallel(repos, workers, |repo| {
        let found = walk::repository(&*stores.get(&repo), &repo, &apis);
        (repo, found)
    });
    // Each blob once per registry (or layout), with the repositories that reference it.
    let mut referenced: BTreeMap<(Location, Digest), (Option<u64>, Vec<Repository>)> = BTreeMap::new();
    for (repo, found) in walked {
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{repo}: {e}"));
                continue;
            }
        };
        log::info!(
            "inventory: {repo}: {} tag(s), {} manifest(s), {} blob(s) referenced",
            found.tags.len(),
            found.manifests.len(),
            found.blobs.len()
        );
        problems.extend(found.problems);
        for (digest, size) in found.blobs {
            let entry = referenced.entry((repo.location.clone(), digest)).or_insert((size, Vec::new()));
            entry.0 = entry.0.or(size);
            entry.1.push(repo.clone());
        }
        inventory.repositories.insert(repo.to_string(), Repo { tags: found.tags, manifests: found.manifests });
    }

    let checked = parallel(referenced.into_iter().collect(), workers, |((_, digest), (size, repos))| {
        let held = held(stores, &digest, size, &repos);
        (digest, held)
    });
    for (digest, held) in checked {
        match held {
            Ok(Some((size, at))) => {
                let entry = inventory.blobs.entry(digest).or_insert(Held { size, at: Vec::new() });
                entry.at.push(at.to_string());
            }
            Ok(None) => {}
            Err(m) => problems.push(m),
        }
    }
    let bytes: u64 = inventory.blobs.values().map(|b| b.size).sum();
    log::info!(
        "inventory: {} repositories, {} tag(s), {} manifest(s), {} blob(s) ({:.1} MiB) held; {} problem(s)",
        inventory.repositories.len(),
        inventory.repositories.values().map(|r| r.tags.len()).sum::<usize>(),
        inventory.repositories.values().map(|r| r.manifests.len()).sum::<usize>(),
        inventory.blobs.len(),
        bytes as f64 / (1024.0 * 1024.0),
        problems.len()
    );
    Taken { inventory, problems }
}

/// The repositories `targets` name, each once (catalogs read for the `Below` ones).
fn repositories(targets: &[Target], stores: &Stores, problems: &mut Vec<String>) -> Vec<Repository> {
    let mut out = BTreeSet::new();
    for target in targets {
        match target {
            Target::Repository(r) => {
                out.insert(r.clone());
            }
            Target::Below { prefix, namespace } => match stores.get(prefix).list_catalog() {
                Ok(names) => {
                    out.extend(names.iter().filter(|n| below(prefix, n, namespace)).map(|n| prefix.sibling(n)));
                }
                Err(e) => problems.push(format!("{prefix}: the repositories below it cannot be listed: {e}")),
            },
        }
    }
    out.into_iter().collect()
}

/// Whether the catalog's `name` is below `prefix` and admitted.
fn below(prefix: &Repository, name: &str, namespace: &Namespace) -> bool {
    let path = if prefix.name.is_empty() {
        name.to_string()
    } else {
        match name.strip_prefix(&*prefix.name).and_then(|p| p.strip_prefix('/')) {
            Some(p) => p.to_string(),
            None => return false,
        }
    };
    // A layout's images are named with their registry, which a rule's paths leave out.
    let path = match prefix.is_layout() {
        true => parse_repository(&path).map_or(path, |r| r.name.to_string()),
        false => path,
    };
    namespace.admits(&path)
}

/// Whether the store holds `digest`, asked in the repositories that reference it (the first
/// that answers): its size and that repository; `None` when none has it.
fn held(
    stores: &Stores,
    digest: &Digest,
    size: Option<u64>,
    repos: &[Repository],
) -> Result<Option<(u64, Repository)>, String> {
    for repo in repos {
        if crate::stop::requested() {
            return Err(format!("{repo}: blob {digest}: interrupted"));
        }
        match stores.get(repo).blob_size(repo, digest, Access::Pull) {
            Ok(Some(s)) => match s.or(size) {
                Some(s) => return Ok(Some((s, repo.clone()))),
                None => return Err(format!("{repo}: blob {digest}: its size is nowhere given; not listed")),
            },
            Ok(None) => {}
            Err(e) => return Err(format!("{repo}: blob {digest}: {e}")),
        }
    }
    let names: Vec<String> = repos.iter().map(ToString::to_string).collect();
    log::warn!("inventory: blob {digest} is referenced by {} but missing there; not listed", names.join(", "));
    Ok(None)
}

/// `f` over `items` on up to `workers` threads; results in the order of `items`.
fn parallel<T: Send, R: Send>(items: Vec<T>, workers: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let Some((i, item)) = queue.lock().next() else { break };
                let r = f(item);
                results.lock().push((i, r));
            });
        }
    });
    let mut results = results.into_inner();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Write `inventory` to `path` atomically (a temporary file beside it, synced, renamed over
/// it), or to stdout without a path.
pub fn write(path: Option<&Path>, inventory: &Inventory) -> io::Result<()> {
    let bytes = inventory.to_bytes();
    let Some(path) = path else {
        let mut out = io::stdout().lock();
        out.write_all(&bytes)?;
        return out.flush();
    };
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_a_prefix_and_admitted() {
        let ns = Namespace { include: vec![regex::Regex::new("^app").unwrap()], exclude: Vec::new() };
        let reg = Repository::on_registry("r.io", "mirror");
        assert!(below(&reg, "mirror/app-1", &ns));
        assert!(!below(&reg, "mirror/db", &ns));
        assert!(!below(&reg, "mirrored/app", &ns), "a prefix ends at a /");
        assert!(!below(&reg, "mirror", &Namespace::default()));
        let root = Repository::on_registry("r.io", "");
        assert!(below(&root, "anything/here", &Namespace::default()));
        let layout = Repository { location: Location::Dir(Path::new("/b").into()), name: "".into() };
        assert!(below(&layout, "quay.io/app-x", &ns), "matched without the registry");
    }

    #[test]
    fn parallel_keeps_the_order() {
        let out = parallel((0..50).collect(), 4, |i: u32| i * 2);
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert!(parallel(Vec::<u32>::new(), 4, |i| i).is_empty());
    }
}
