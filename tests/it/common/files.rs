//! Auth and images files for a run, and [`Job`]: the two written to a temp dir ([`job`] and
//! [`rules_job`] write them for a set of registries).

use std::path::PathBuf;

use serde::Serialize;

use super::*;

/// One entry of an auth file.
#[derive(Clone, Debug)]
pub struct AuthEntry {
    pub key: String,
    pub creds: Option<(String, String)>,
    pub insecure: bool,
    /// `chunked_upload: true`: PATCH uploads from the start.
    pub chunked_upload: bool,
}

impl AuthEntry {
    /// An `insecure: true` entry without credentials.
    pub fn insecure(key: &str) -> AuthEntry {
        AuthEntry { key: key.to_string(), creds: None, insecure: true, chunked_upload: false }
    }

    /// With `chunked_upload: <on>`.
    pub fn chunked(mut self, on: bool) -> AuthEntry {
        self.chunked_upload = on;
        self
    }

    pub fn with_creds(mut self, user: &str, pass: &str) -> AuthEntry {
        self.creds = Some((user.to_string(), pass.to_string()));
        self
    }
}

/// An auth file in YAML.
pub fn auth_yaml(entries: &[AuthEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{}:\n", yaml_str(&e.key)));
        if let Some((u, p)) = &e.creds {
            out.push_str(&format!("  username: {}\n  password: {}\n", yaml_str(u), yaml_str(p)));
        }
        out.push_str(&format!("  insecure: {}\n", e.insecure));
        if e.chunked_upload {
            out.push_str("  chunked_upload: true\n");
        }
    }
    out
}

/// An auth file as a JSON object.
pub fn auth_json_value(entries: &[AuthEntry]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for e in entries {
        let mut v = serde_json::json!({"insecure": e.insecure});
        if e.chunked_upload {
            v["chunked_upload"] = serde_json::Value::Bool(true);
        }
        if let Some((u, p)) = &e.creds {
            v["username"] = serde_json::Value::String(u.clone());
            v["password"] = serde_json::Value::String(p.clone());
        }
        map.insert(e.key.clone(), v);
    }
    serde_json::Value::Object(map)
}

/// Auth entries (`insecure: true`, with credentials where needed) for these registries.
pub fn auth_for(regs: &[&Registry]) -> Vec<AuthEntry> {
    regs.iter().map(|r| r.auth_entry()).collect()
}

/// An images file in YAML: `src: dst` or `src: [dst, ...]`.
pub fn images_yaml(rules: &[(&str, &[&str])]) -> String {
    let mut out = String::new();
    for (src, dsts) in rules {
        if dsts.len() == 1 {
            out.push_str(&format!("{}: {}\n", yaml_str(src), yaml_str(dsts[0])));
        } else {
            out.push_str(&format!("{}:\n", yaml_str(src)));
            for d in *dsts {
                out.push_str(&format!("  - {}\n", yaml_str(d)));
            }
        }
    }
    out
}

/// An images file in YAML whose rule values are any JSON value (anything that serialises to
/// one), written in YAML's flow style: a string (`src: dst`), a list of destinations, or a map
/// (`{to: …, semver: …, prune: …}`).
pub fn images_yaml_values<S: AsRef<str>, V: Serialize>(rules: &[(S, V)]) -> String {
    let mut out = String::new();
    for (src, value) in rules {
        let value = serde_json::to_value(value).expect("a rule value as JSON");
        out.push_str(&format!("{}: {}\n", yaml_str(src.as_ref()), yaml_flow(&value)));
    }
    out
}

/// `value` in YAML's flow style, strings double-quoted: `{"to": "r/x", "latest": 5}`.
fn yaml_flow(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{}: {}", yaml_str(k), yaml_flow(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        serde_json::Value::Array(a) => format!("[{}]", a.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// The same rules as an images file in JSON (one object).
pub fn images_json_values<S: AsRef<str>, V: Serialize>(rules: &[(S, V)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = rules
        .iter()
        .map(|(src, v)| (src.as_ref().to_string(), serde_json::to_value(v).expect("a rule value as JSON")))
        .collect();
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap()
}

/// A temp dir holding `auth.yaml` and `images.yaml`, ready for `--auth` / `--images`.
pub struct Job {
    pub dir: TestDir,
    pub auth: PathBuf,
    pub images: PathBuf,
}

impl Job {
    pub fn new(auth: &[AuthEntry], images: &str) -> Job {
        Job::with_images_file(auth, "images.yaml", images)
    }

    /// [`Job::new`] with the images file named `name` (e.g. `images.json`: the format follows
    /// the extension).
    pub fn with_images_file(auth: &[AuthEntry], name: &str, images: &str) -> Job {
        let dir = TestDir::new("job");
        let auth = dir.write("auth.yaml", &auth_yaml(auth));
        let images = dir.write(name, images);
        Job { dir, auth, images }
    }

    /// `--auth A --images I` followed by `extra`.
    pub fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--auth", p(&self.auth), "--images", p(&self.images)];
        v.extend_from_slice(extra);
        v
    }

    /// Runs the syncer with `--auth A --images I` plus `extra`, killed after [`RUN_LIMIT`].
    pub fn run(&self, extra: &[&str]) -> Run {
        run_syncer(&self.args(extra))
    }

    /// [`Job::run`], failing the test if the run takes longer than `secs` seconds.
    pub fn run_within(&self, secs: u64, extra: &[&str]) -> Run {
        run_syncer_within(&self.args(extra), std::time::Duration::from_secs(secs))
    }
}

/// A job whose auth file covers `regs` (insecure, with their credentials) and whose images file
/// holds `rules`.
pub fn job(regs: &[&Registry], rules: &[(&str, &[&str])]) -> Job {
    Job::new(&auth_for(regs), &images_yaml(rules))
}

/// A job whose auth file covers `regs` and whose images file holds `rules`, each a source and
/// its value as [`images_yaml_values`] writes it: a destination, a list, or a map.
pub fn rules_job<S: AsRef<str>, V: Serialize>(regs: &[&Registry], rules: &[(S, V)]) -> Job {
    Job::new(&auth_for(regs), &images_yaml_values(rules))
}
