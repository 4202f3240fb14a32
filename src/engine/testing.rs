//! What the engine's unit tests run on instead of registries: in-memory stores ([`MemStore`])
//! seeded with built images ([`image`], [`index`]), and [`sync`], which runs a job over them
//! (each serving the registry of its name, never over HTTP) and hands back the [`Report`].

mod build;
mod mem;

use std::sync::Arc;
use std::time::Duration;

pub use build::{image, index, multi_arch, Image, SIG};
pub use mem::{MemStore, Op};

use super::{Display, ImageStats, Job, Options, Referrers, Report, Totals, Transfers};
use crate::manifest::{fallback_tag, PlatformFilter};
use crate::registry::{Auth, Limits, Registries, TlsOptions};
use crate::rule::{parse_rule_ref, Rule};
use crate::stores::Stores;

/// A display that shows nothing.
pub struct Silent;

impl Display for Silent {
    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn show(&mut self, _: &Totals, _: &Transfers) {}
}

/// An empty source registry `src.io` and an empty destination registry `dst.io`, both with
/// the referrers API.
pub fn src_dst() -> (Arc<MemStore>, Arc<MemStore>) {
    (MemStore::new("src.io"), MemStore::new("dst.io"))
}

/// Seed `src` with an image `v1` at `a:v1` and a signature of it (which a referrers API lists):
/// both, returned.
pub fn add_signed(src: &MemStore) -> (Image, Image) {
    let v1 = image("v1").build();
    let sig = image("sig").refers_to(&v1, SIG).build();
    src.add("a", Some("v1"), &v1);
    src.add("a", None, &sig);
    (v1, sig)
}

/// [`add_signed`], the signature listed under `v1`'s fallback tag too (the referrers tag schema).
pub fn add_signed_by_tag(src: &MemStore) -> (Image, Image) {
    let (v1, sig) = add_signed(src);
    src.add("a", Some(&fallback_tag(&v1.digest)), &index(&[&sig]));
    (v1, sig)
}

/// The rule `src: dst`, as the images file writes it.
pub fn rule(src: &str, dst: &str) -> Rule {
    let side = |s: &str| parse_rule_ref(s).expect("a valid rule side");
    Rule::new(src, dst, side(src), side(dst), None).expect("a valid rule")
}

/// A job of `rules` on one worker (so tasks run in a fixed order), without retries, referrers
/// following their subject (the default), per-image figures kept.
pub fn job(rules: Vec<Rule>) -> Job {
    let referrers = Referrers { enabled: true, types: Vec::new() };
    Job { rules, proc: 1, retries: 0, opts: Options { referrers, per_image: true, ..Options::default() } }
}

/// The job copying `src.io/a:v1` to `dst.io/a`.
pub fn copy_v1() -> Job {
    job(vec![rule("src.io/a:v1", "dst.io/a")])
}

/// `--arch arm64`.
pub fn arm64() -> PlatformFilter {
    PlatformFilter::new(&[], &["arm64".into()]).expect("a valid filter")
}

/// `image` at `src.io/a:v1`, then `job` run to an empty `dst.io`: the report, and both stores.
pub fn copy(image: &Image, job: Job) -> (Report, Arc<MemStore>, Arc<MemStore>) {
    let (src, dst) = src_dst();
    src.add("a", Some("v1"), image);
    (sync(job, &[&src, &dst]), src, dst)
}

/// Run `job` over `stores`, silently.
pub fn sync(job: Job, stores: &[&Arc<MemStore>]) -> Report {
    let registries =
        Registries::new(Auth::default(), TlsOptions::default(), Limits::default(), 1).expect("no TLS files");
    let stores = stores.iter().fold(Stores::new(registries), |all, s| all.with_store(s.location(), (*s).clone()));
    super::run(job, &stores, Box::new(Silent))
}

/// What the image synced to `dst` (`registry/repository:tag`) moved.
pub fn stats(report: &Report, dst: &str) -> ImageStats {
    let found = report.stats.iter().find(|(pair, _)| pair.dst.to_string() == dst);
    found.map(|(_, s)| s.clone()).unwrap_or_else(|| panic!("no figures for {dst}"))
}
