//! The end of the report: the auth-file keys (README, "The auth file") the examined registry
//! needs, each with the finding that calls for it, and the flags worth passing — or that it
//! needs none.

use std::fmt;

/// What the probes found that a key or flag answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// It speaks plain http: `insecure: true`.
    pub plain_http: bool,
    /// Anonymous access is refused and no credentials are configured: `username`/`password`.
    pub credentials: bool,
    /// Single-request uploads are refused but PATCH works: `chunked_upload: true`.
    pub chunked_upload: bool,
    /// A PATCH of this many bytes was refused: `--chunk-size` below it.
    pub chunk_refused: Option<u64>,
}

/// [`Needs`] under the auth key to write them to.
#[derive(Clone, Debug)]
pub struct Advice {
    key: String,
    /// The auth file already has this key for the registry.
    existing: bool,
    needs: Needs,
}

impl Advice {
    pub fn new(key: &str, existing: bool, needs: Needs) -> Advice {
        Advice { key: key.to_string(), existing, needs }
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.needs;
        let mut keys: Vec<(&str, &str)> = Vec::new();
        if n.plain_http {
            keys.push(("insecure: true", "it speaks plain http"));
        }
        if n.credentials {
            keys.push(("username: <user>", "anonymous access is refused"));
            keys.push(("password: ${REGISTRY_PASSWORD}", "or a token; ${VAR} is read from the environment"));
        }
        if n.chunked_upload {
            // A run finds this out by itself (uploads.rs); the key spares it the first refusal.
            keys.push((
                "chunked_upload: true",
                "single-request uploads are refused, PATCH works (a run switches by itself; this spares its first refusal)",
            ));
        }
        if keys.is_empty() && self.existing {
            writeln!(f, "auth.yaml: nothing more needed than auth key {:?} has", self.key)?;
        } else if keys.is_empty() {
            writeln!(f, "auth.yaml: no key needed for {}", self.key)?;
        } else {
            writeln!(f, "auth.yaml keys {} needs:", self.key)?;
            writeln!(f, "{:?}:", self.key)?;
            let width = keys.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (key, why) in keys {
                writeln!(f, "  {key:width$}  # {why}")?;
            }
        }
        if let Some(size) = n.chunk_refused {
            let half = (size / 2) >> 20;
            writeln!(
                f,
                "flags: --chunk-size {half}MiB  # a {} MiB PATCH was refused (a run halves its chunks by itself; this spares its first refusals)",
                size >> 20
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_their_reasons() {
        let none = Advice::new("r.io", false, Needs::default()).to_string();
        assert_eq!(none, "auth.yaml: no key needed for r.io\n");
        let set = Advice::new("r.io/team", true, Needs::default()).to_string();
        assert_eq!(set, "auth.yaml: nothing more needed than auth key \"r.io/team\" has\n");
        let needs = Needs { plain_http: true, chunked_upload: true, chunk_refused: Some(5 << 20), ..Needs::default() };
        let text = Advice::new("127.0.0.1:5000", false, needs).to_string();
        assert!(text.contains("\"127.0.0.1:5000\":\n  insecure: true "), "{text}");
        assert!(text.contains("  chunked_upload: true"), "{text}");
        assert!(text.contains("--chunk-size 2MiB"), "{text}");
        assert!(!text.contains("username"), "{text}");
    }
}
