//! `image-syncer self-image oci:DIR[:NAME][:TAG] [--binary PATH]…` resolved: the layout and the
//! names written there in the grammar of a copy's destination, the binaries (this one unless
//! `--binary` names others), and the date `SOURCE_DATE_EPOCH` fixes.

use std::path::PathBuf;

use super::{ConfigError, Env};
use crate::cli::Args;
use crate::layout::LayoutSpec;
use crate::rule::{parse_layout_ref, split_layout, Selector};
use crate::self_image::Request;

const USAGE: &str = "self-image takes one layout to write, e.g. image-syncer self-image oci:./image-syncer-image \
                     (tag: this version), oci:DIR:TAG, oci:DIR:REGISTRY/REPOSITORY:TAG or oci-archive:FILE.tar:TAG; \
                     push it with image-syncer copy";

/// The variable that dates reproducible output (<https://reproducible-builds.org/specs/source-date-epoch/>).
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Resolve `args` (whose command is `self-image`) against the process environment and this
/// process's executable.
pub fn self_image_request(args: &Args) -> Result<Request, ConfigError> {
    self_image_request_in(args, &Env::process(), std::env::current_exe)
}

pub fn self_image_request_in(
    args: &Args,
    env: &Env,
    current_exe: impl FnOnce() -> std::io::Result<PathBuf>,
) -> Result<Request, ConfigError> {
    let [_, target] = args.command.as_slice() else {
        return Err(ConfigError::Usage(USAGE.into()));
    };
    if args.images.is_some() || args.config.is_some() {
        return Err(ConfigError::Usage("self-image takes no --images or --config file".into()));
    }
    let (location, sel) = match split_layout(target) {
        Some(parsed) => parsed.map_err(|e| ConfigError::Usage(format!("self-image: {e}")))?,
        None => return Err(ConfigError::Usage(format!("self-image: {target:?} is no OCI layout; {USAGE}"))),
    };
    let (name, tags) = match sel {
        None => (None, Vec::new()),
        Some(sel) => {
            match parse_layout_ref(&location, &sel).map_err(|e| ConfigError::Usage(format!("self-image: {e}")))? {
                (name, Selector::All) => (name, Vec::new()),
                (name, Selector::Tags(tags)) => (name, tags),
                _ => {
                    return Err(ConfigError::Usage(format!(
                        "self-image: {target}: name tags to write (TAG or a,b), not a regex or a digest"
                    )))
                }
            }
        }
    };
    let tags = if tags.is_empty() { vec![env!("CARGO_PKG_VERSION").to_string()] } else { tags };
    let binaries = if args.binary.is_empty() {
        let exe = current_exe().map_err(|e| {
            ConfigError::Usage(format!("self-image: cannot find this program's file ({e}); name it with --binary"))
        })?;
        vec![exe]
    } else {
        args.binary
            .iter()
            .map(|b| std::path::absolute(b).map_err(|e| ConfigError::Usage(format!("--binary {b}: {e}"))))
            .collect::<Result<_, _>>()?
    };
    let created = match env.get(SOURCE_DATE_EPOCH).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(v.trim().parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
            ConfigError::Usage(format!("{SOURCE_DATE_EPOCH}={v:?} is not a number of seconds since 1970"))
        })?),
    };
    Ok(Request {
        layout: LayoutSpec { location, write: true, dest: true, part_size: None },
        name: name.unwrap_or_default(),
        tags,
        binaries,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(argv: &[&str], env: &[(&str, &str)]) -> Result<Request, ConfigError> {
        let mut raw = vec!["image-syncer".to_string()];
        raw.extend(argv.iter().map(|s| s.to_string()));
        let args = crate::cli::parse(raw).expect("flags parse");
        self_image_request_in(&args, &Env::from_pairs(env), || Ok(PathBuf::from("/proc/self/exe")))
    }

    #[test]
    fn names_tags_and_binaries() {
        let r = request(&["self-image", "oci:/tmp/out"], &[]).unwrap();
        assert_eq!(r.layout.location.to_string(), "oci:/tmp/out");
        assert_eq!((r.name.as_str(), r.tags.clone()), ("", vec![env!("CARGO_PKG_VERSION").to_string()]));
        assert_eq!(r.binaries, vec![PathBuf::from("/proc/self/exe")]);
        assert_eq!(r.created, None);

        let r = request(&["self-image", "oci:/tmp/out:v1,latest", "--binary", "/a", "--binary", "/b"], &[]).unwrap();
        assert_eq!((r.name.as_str(), r.tags.clone()), ("", vec!["v1".to_string(), "latest".to_string()]));
        assert_eq!(r.binaries, vec![PathBuf::from("/a"), PathBuf::from("/b")]);

        let r =
            request(&["self-image", "oci-archive:/tmp/b.tar:registry.example.com/tools/image-syncer:v2"], &[]).unwrap();
        assert_eq!(r.layout.location.to_string(), "oci-archive:/tmp/b.tar");
        assert_eq!(
            (r.name.as_str(), r.tags.clone()),
            ("registry.example.com/tools/image-syncer", vec!["v2".to_string()])
        );

        let r = request(&["self-image", "oci:/tmp/out:docker.io/me/syncer"], &[("SOURCE_DATE_EPOCH", "1700000000")])
            .unwrap();
        assert_eq!(r.name, "docker.io/me/syncer");
        assert_eq!(r.created, Some(1_700_000_000));
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        for (argv, env, says) in [
            (&["self-image"][..], &[][..], "takes one layout"),
            (&["self-image", "registry.example.com/tools/image-syncer"], &[], "is no OCI layout"),
            (&["self-image", "oci:/tmp/out:/re/"], &[], "not a regex"),
            (
                &[
                    "self-image",
                    "oci:/tmp/out:@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ],
                &[],
                "not a regex or a digest",
            ),
            (&["self-image", "oci:/tmp/out", "--images", "i.yaml"], &[], "no --images"),
            (&["self-image", "oci:/tmp/out"], &[("SOURCE_DATE_EPOCH", "yesterday")], "SOURCE_DATE_EPOCH"),
        ] {
            let e = request(argv, env).expect_err(&format!("{argv:?} should be refused"));
            assert!(matches!(e, ConfigError::Usage(_)), "{e:?}");
            assert!(e.to_string().contains(says), "{argv:?}: {e}");
        }
    }

    #[test]
    fn binary_is_for_self_image_only() {
        let raw = ["image-syncer", "copy", "a.io/x:1", "b.io/x", "--binary", "/bin/true"].map(String::from).to_vec();
        let args = crate::cli::parse(raw).expect("flags parse");
        let e = super::super::Config::from_args_in(&args, &Env::from_pairs(&[])).expect_err("refused");
        assert!(e.to_string().contains("--binary is for"), "{e}");
    }
}
