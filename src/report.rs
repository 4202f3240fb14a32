//! The end of a run: the summary line and the `--output-success-images` file, written in the
//! images-file format so it can be fed back as `--images`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Format;
use crate::reference::ImageRef;

/// `source → destination(s)`, one key per source, in a stable order.
pub fn success_map(pairs: &[(ImageRef, ImageRef)]) -> BTreeMap<String, serde_json::Value> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (src, dst) in pairs {
        map.entry(src.to_string()).or_default().push(dst.to_string());
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

/// Write the synced pairs to `path`.
pub fn write_success(path: &Path, format: Format, pairs: &[(ImageRef, ImageRef)]) -> Result<(), String> {
    let map = success_map(pairs);
    let text = match format {
        Format::Yaml if map.is_empty() => "{}\n".to_string(),
        Format::Yaml => serde_yaml::to_string(&map).map_err(|e| e.to_string())?,
        Format::Json => serde_json::to_string_pretty(&map).map_err(|e| e.to_string())? + "\n",
    };
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::parse_repository;

    fn r(repo: &str, reference: &str) -> ImageRef {
        ImageRef { repo: parse_repository(repo).unwrap(), reference: reference.into() }
    }

    #[test]
    fn round_trips_as_images_file() {
        let pairs = vec![
            (r("h:1/a", "v1"), r("h:2/a", "v1")),
            (r("h:1/a", "v1"), r("h:3/a", "v1")),
            (r("nginx", "latest"), r("h:2/nginx", "latest")),
        ];
        let map = success_map(&pairs);
        let yaml = serde_yaml::to_string(&map).unwrap();
        let parsed: crate::config::ImagesFile = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed.0.len(), 2);
        assert!(yaml.contains("docker.io/library/nginx:latest"), "{yaml}");
    }
}
