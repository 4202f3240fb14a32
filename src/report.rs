//! The end of a run: one line per image that did not sync, the summary lines, the
//! `--output-success-images` / `--output-failed-images` files (in the images-file format, so
//! they can be fed back as `--images`) and the `--report` document. A bundle that could not be
//! written is said in the last summary line and in the report, not only in an error line above
//! them, and what the run took as in sync there but the bundle where it stays does not hold is
//! failed (class `bundle`), not synced: "0 images failed" would hide that it did not land.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::Format;
use crate::engine::{Cause, Failure, ImageStats, Outcome, Report};
use crate::logging;
use crate::stores::BundleEnd;

/// The files a run writes at its end.
pub struct Outputs {
    /// `--output-success-images`.
    pub images: Option<(PathBuf, Format)>,
    /// `--output-failed-images`.
    pub failed: Option<(PathBuf, Format)>,
    /// `--report`.
    pub report: Option<PathBuf>,
}

/// An output file that could not be written.
#[derive(Debug)]
pub struct WriteError {
    /// What it is (`--report FILE`, or the file).
    pub what: String,
    pub message: String,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.message)
    }
}

impl std::error::Error for WriteError {}

/// Write the run's output files, then its failure lines and summary. `bundles` is how writing
/// out the run's bundles went: what did not land in one that was not written out becomes a
/// failure of `run` here. `Ok(false)` when a bundle could not be written.
pub fn finish(run: &mut Report, outputs: &Outputs, bundles: &[BundleEnd]) -> Result<bool, WriteError> {
    let mut notes = Vec::new();
    let mut unwritten = Vec::new();
    for b in bundles {
        match &b.result {
            Ok(f) => notes.extend(f.note.clone()),
            Err(e) => {
                log::error!("{e}");
                unwritten.push(b.location.to_string());
            }
        }
        if let Some(kept) = b.in_place() {
            let cause = match &b.result {
                Ok(_) => Cause::bundle_kept(&b.location),
                Err(e) => Cause::bundle_not_written(e),
            };
            run.not_landed(&b.location, &cause, |image, digest| kept.holds(&image.repo.name, &image.reference, digest));
        }
    }
    if let Some((path, format)) = &outputs.images {
        let pairs: Vec<_> = run.synced.iter().map(|p| (p.src.to_string(), p.dst.to_string())).collect();
        write_images(path, *format, &pairs)?;
    }
    if let Some((path, format)) = &outputs.failed {
        let pairs: Vec<_> = run.failures.iter().map(Failure::endpoints).collect();
        write_images(path, *format, &pairs)?;
    }
    if let Some(path) = &outputs.report {
        write_report(path, run, bundles)?;
    }
    log_failures(&run.failures);
    let mut summary = run.totals.summary();
    for note in notes {
        summary.push_str("; ");
        summary.push_str(&note);
    }
    log::info!(target: logging::SUMMARY, "{summary}");
    let what = if run.totals.verify { "Verification" } else { "Synchronization" };
    let bundles_part = match unwritten.as_slice() {
        [] => String::new(),
        list => format!(", {} bundle(s) not written ({})", list.len(), list.join(", ")),
    };
    log::info!(
        target: logging::SUMMARY,
        "{what} finished, {} images failed{bundles_part}, cost {:.2?}",
        run.failures.len(),
        run.elapsed
    );
    Ok(unwritten.is_empty())
}

/// At most this many failure lines are logged; the failed-images file has them all.
const MAX_FAILURE_LINES: usize = 200;

/// One line per failure, naming the image and its first root cause.
pub fn log_failures(failures: &[Failure]) {
    for f in failures.iter().take(MAX_FAILURE_LINES) {
        let (src, dst) = f.endpoints();
        log::error!("failed: {src} -> {dst}: {}", f.cause());
    }
    if failures.len() > MAX_FAILURE_LINES {
        log::error!("... and {} more (--output-failed-images FILE lists them all)", failures.len() - MAX_FAILURE_LINES);
    }
}

/// `source → destination(s)`, one key per source, in a stable order.
pub fn images_map(pairs: &[(String, String)]) -> BTreeMap<String, serde_json::Value> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (src, dst) in pairs {
        map.entry(src.clone()).or_default().push(dst.clone());
    }
    map.into_iter()
        .map(|(k, mut v)| {
            let value = if v.len() == 1 {
                serde_json::Value::String(v.remove(0))
            } else {
                serde_json::Value::Array(v.into_iter().map(serde_json::Value::String).collect())
            };
            (k, value)
        })
        .collect()
}

/// Write `pairs` to `path` as an images file.
pub fn write_images(path: &Path, format: Format, pairs: &[(String, String)]) -> Result<(), WriteError> {
    let fail = |message: String| WriteError { what: path.display().to_string(), message };
    let map = images_map(pairs);
    let text = match format {
        Format::Yaml if map.is_empty() => "{}\n".to_string(),
        Format::Yaml => serde_yaml::to_string(&map).map_err(|e| fail(e.to_string()))?,
        Format::Json => serde_json::to_string_pretty(&map).map_err(|e| fail(e.to_string()))? + "\n",
    };
    std::fs::write(path, text).map_err(|e| fail(format!("cannot write: {e}")))
}

/// The `--report` document: totals, then one entry per image (and per rule whose tags could not
/// be listed), and per bundle written. Built from typed outcomes and error messages that never
/// hold credentials.
pub fn report_json(report: &Report, bundles: &[BundleEnd]) -> serde_json::Value {
    let mut images = Vec::new();
    let mut rules = Vec::new();
    for (pair, outcome) in &report.outcomes {
        let (status, digest, reason) = match outcome {
            Outcome::Synced(d) => ("synced", Some(d), None),
            Outcome::Unchanged(d) => ("unchanged", Some(d), None),
            Outcome::Immutable => ("unchanged_immutable", None, None),
            Outcome::Planned(d) => ("would_copy", Some(d), None),
            Outcome::Verified(d) => ("verified", Some(d), None),
            Outcome::Skipped(r) => ("skipped", None, Some(r)),
        };
        let mut entry = json!({"source": pair.src.to_string(), "destination": pair.dst.to_string(), "status": status});
        add_stats(&mut entry, report.stats.get(pair));
        if let Some(d) = digest {
            entry["digest"] = json!(d.as_str());
        }
        if let Some(r) = reason {
            entry["reason"] = json!(r);
        }
        images.push(entry);
    }
    for f in &report.failures {
        let (src, dst) = f.endpoints();
        let mut entry = json!({"source": src, "destination": dst, "status": "failed", "error_class": f.class(), "error": f.cause()});
        match f {
            Failure::Image { pair, .. } => {
                add_stats(&mut entry, report.stats.get(pair));
                images.push(entry)
            }
            Failure::Rule { .. } => rules.push(entry),
        }
    }
    let failed = report.failures.iter().filter(|f| matches!(f, Failure::Image { .. })).count();
    json!({
        "totals": report.totals,
        "images_failed": failed,
        "rules_failed": rules.len(),
        "bundles_failed": bundles.iter().filter(|b| b.result.is_err()).count(),
        "elapsed_seconds": report.elapsed.as_secs_f64(),
        "images": images,
        "rules": rules,
        "bundles": bundles.iter().map(bundle_json).collect::<Vec<_>>(),
        "registries": registries_json(report),
    })
}

/// `{"bundle": "oci-archive:/…", "status": "written" | "unchanged" | "kept" | "failed", …}`.
fn bundle_json(b: &BundleEnd) -> serde_json::Value {
    let mut entry = json!({"bundle": b.location.to_string()});
    match &b.result {
        Ok(f) => {
            entry["status"] = json!(f.status.as_str());
            if let Some(n) = &f.note {
                entry["note"] = json!(n);
            }
        }
        Err(e) => {
            entry["status"] = json!("failed");
            entry["error"] = json!(e.to_string());
        }
    }
    entry
}

/// What the run learned about each registry: `{"registry": {"fact": "value"}}`.
fn registries_json(report: &Report) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = report
        .registries
        .iter()
        .map(|(name, facts)| {
            let facts: serde_json::Map<String, serde_json::Value> =
                facts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            (name.clone(), serde_json::Value::Object(facts))
        })
        .collect();
    serde_json::Value::Object(map)
}

/// An image's bytes, blobs (copied, mounted, present), manifests pushed and duration.
fn add_stats(entry: &mut serde_json::Value, stats: Option<&ImageStats>) {
    let stats = stats.cloned().unwrap_or_default();
    if let (Some(e), Ok(serde_json::Value::Object(s))) = (entry.as_object_mut(), serde_json::to_value(stats)) {
        e.extend(s);
    }
}

/// Write the `--report` document to `path`.
pub fn write_report(path: &Path, report: &Report, bundles: &[BundleEnd]) -> Result<(), WriteError> {
    let fail = |message: String| WriteError { what: format!("--report {}", path.display()), message };
    let text = serde_json::to_string_pretty(&report_json(report, bundles)).map_err(|e| fail(e.to_string()))? + "\n";
    std::fs::write(path, text).map_err(|e| fail(format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{parse_repository, ImageRef, Reference};

    fn r(repo: &str, reference: &str) -> String {
        ImageRef { repo: parse_repository(repo).unwrap(), reference: Reference::Tag(reference.into()) }.to_string()
    }

    #[test]
    fn round_trips_as_images_file() {
        let pairs = vec![
            (r("h:1/a", "v1"), r("h:2/a", "v1")),
            (r("h:1/a", "v1"), r("h:3/a", "v1")),
            (r("nginx", "latest"), r("h:2/nginx", "latest")),
        ];
        let map = images_map(&pairs);
        let yaml = serde_yaml::to_string(&map).unwrap();
        let parsed: crate::config::ImagesFile = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed.0.len(), 2);
        assert!(yaml.contains("docker.io/library/nginx:latest"), "{yaml}");
    }
}
