//! `${VAR}` / `$VAR` expansion, as the Go tool's `os.ExpandEnv` does for usernames, passwords and
//! destinations — so users can keep secrets out of their files. Unlike Go, a `$` that starts no
//! variable name stays a literal `$` (Go drops `$$`, `$!` and the like, which mangles passwords),
//! and so does a bare `$name` whose variable is not set: a Harbor robot account
//! `robot$ci+sync` stays `robot$ci+sync` (Go turned it into `robot+sync`). The braced form
//! `${NAME}` is the explicit one: unset, it expands to nothing and the caller is told. `$$` is
//! a literal `$` (to write `$NAME` when `NAME` is set).

/// Where variables come from: the process environment, or (in tests) a fixed map — so that
/// tests running in parallel never mutate the process environment.
pub struct Env {
    lookup: Box<Lookup>,
}

type Lookup = dyn Fn(&str) -> Option<String>;

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env { lookup: Box::new(|k| std::env::var(k).ok()) }
    }

    /// These variables and no others.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env { lookup: Box::new(move |k| map.get(k).cloned()) }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// Expand variables. Returns the names of unset `${NAME}` variables, which expand to the
    /// empty string (as in Go), so the caller can warn about them; an unset bare `$name` is
    /// kept as written.
    pub fn expand(&self, s: &str) -> (String, Vec<String>) {
        expand_with(s, &self.lookup, false)
    }

    /// Expand variables where a `$` has no literal use (destinations): every unset variable,
    /// `$name` too, is reported.
    pub fn expand_strict(&self, s: &str) -> (String, Vec<String>) {
        expand_with(s, &self.lookup, true)
    }
}

fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>, strict: bool) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(more) = after.strip_prefix('$') {
            // `$$` is an escaped, literal `$`.
            out.push('$');
            rest = more;
            continue;
        }
        let braced = after.starts_with('{');
        let (name, consumed) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) if is_name(&body[..end]) => (&body[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None if braced || strict => unset.push(name.to_string()),
            None => {
                out.push('$');
                out.push_str(name);
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    (out, unset)
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "USER" => Some("alice".into()),
            "NS" => Some("team".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_both_forms() {
        assert_eq!(expand_with("${USER}-$NS/x", env, false).0, "alice-team/x");
        assert_eq!(expand_with("reg/${NS}/app:v1", env, false).0, "reg/team/app:v1");
    }

    #[test]
    fn unset_and_literals() {
        let (s, unset) = expand_with("a${NOPE}b$MISSING", env, false);
        assert_eq!(s, "ab$MISSING");
        assert_eq!(unset, ["NOPE"]);
        assert_eq!(expand_with("pa$$!%$", env, false).0, "pa$!%$");
        assert_eq!(expand_with("$$USER", env, false).0, "$USER");
        assert_eq!(expand_with("x${bad-name}", env, false).0, "x${bad-name}");
        assert_eq!(expand_with("no vars", env, false), ("no vars".to_string(), vec![]));
    }

    #[test]
    fn harbor_robot_accounts_keep_their_dollar() {
        assert_eq!(expand_with("robot$ci+sync", env, false), ("robot$ci+sync".to_string(), vec![]));
        assert_eq!(expand_with("robot$${NS}+sync", env, false).0, "robot${NS}+sync");
        assert_eq!(expand_with("robot$$USER", env, false).0, "robot$USER");
        assert_eq!(expand_with("$USER", env, false).0, "alice");
        assert_eq!(expand_with("r/$TEAM/app", env, true).1, ["TEAM"]);
    }
}
