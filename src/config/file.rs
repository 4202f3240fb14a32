//! Reading a config file in the format its extension names, with errors that name the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ConfigError;

/// The formats the Go tool accepted, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, ConfigError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("json") => Ok(Format::Json),
            _ => Err(ConfigError::Format { path: path.to_path_buf() }),
        }
    }
}

/// Read and deserialize `path`; an empty file is an error rather than an empty config.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let format = Format::of(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    let parse_err = |message: String| ConfigError::Parse { path: PathBuf::from(path), message };
    if text.trim().is_empty() {
        return Err(parse_err("the file is empty".into()));
    }
    match format {
        Format::Yaml => serde_yaml::from_str(&text).map_err(|e| parse_err(one_line(&e.to_string()))),
        Format::Json => serde_json::from_str(&text).map_err(|e| parse_err(one_line(&e.to_string()))),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
