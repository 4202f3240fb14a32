//! What a bundle must be before anything is read from it, so that a damaged or hostile one is
//! refused as a whole — naming the file and the fault — instead of being taken as empty or
//! half-imported: `index.json` and `oci-layout` within a size limit and regular files (a FIFO
//! or a link to `/dev/zero` would hang or exhaust a read), a layout version we understand, and
//! blobs that are regular files inside the layout (a symlink may point anywhere on the host).
//! Archive members get the same checks where the tar is scanned ([`super::archive`]).

use std::io::{self, Read};
use std::path::Path;

use serde_json::Value;

/// The most `index.json` may have: 16 MiB holds some 45,000 entries as we write them, and
/// parsing it whole stays well under a few hundred MiB of memory.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// The most `oci-layout` may have (it is one short JSON object).
pub const MAX_MARKER_BYTES: u64 = 64 << 10;

/// The image layout versions we read and write: major version 1
/// (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md#oci-layout-file>).
const MAJOR: u64 = 1;

/// `name` has `size` bytes, more than `limit`.
pub fn too_large(name: &str, size: u64, limit: u64) -> String {
    format!("{name} has {size} bytes, more than the {} a bundle's {name} may have", human(limit))
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The file `name` of a layout directory (at `path`), at most `limit` bytes: `None` when it is
/// not there; an error when it is no regular file or too large.
pub fn read_file(path: &Path, name: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {name}: {e}")),
    };
    if !meta.file_type().is_file() {
        return Err(format!("{name} is {}, not a regular file", kind(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(too_large(name, meta.len(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(name, bytes.len() as u64, limit));
    }
    Ok(Some(bytes))
}

/// What a file that should be regular is instead, for messages.
pub fn kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// `oci-layout` must declare an `imageLayoutVersion` of major version 1: a layout of another
/// major version may store things where we would not look, and be misread as empty.
pub fn version(bytes: &[u8]) -> Result<(), String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("oci-layout is not JSON: {e}"))?;
    let Some(version) = doc.get("imageLayoutVersion").and_then(Value::as_str) else {
        return Err("oci-layout declares no imageLayoutVersion".into());
    };
    match version.split('.').next().and_then(|m| m.parse::<u64>().ok()) {
        Some(MAJOR) => Ok(()),
        _ => Err(format!(
            "oci-layout declares imageLayoutVersion {version:?}; only version {MAJOR}.x layouts are understood"
        )),
    }
}

/// Every file under `blobs/` of the layout directory `dir` must be a regular file (in a
/// directory per algorithm): a symbolic link is refused wherever it points, naming it.
pub fn regular_blobs(dir: &Path) -> Result<(), String> {
    let blobs = dir.join("blobs");
    let listing = match std::fs::symlink_metadata(&blobs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read blobs/: {e}")),
        Ok(m) if !m.is_dir() => return Err(format!("blobs is {}, not a directory", kind(&m.file_type()))),
        Ok(_) => std::fs::read_dir(&blobs).map_err(|e| format!("cannot read blobs/: {e}"))?,
    };
    for algorithm in listing {
        let algorithm = algorithm.map_err(|e| format!("cannot read blobs/: {e}"))?;
        let name = format!("blobs/{}", algorithm.file_name().to_string_lossy());
        let t = algorithm.file_type().map_err(|e| format!("cannot read {name}: {e}"))?;
        if t.is_file() {
            continue; // a stray file, never read
        }
        if !t.is_dir() {
            return Err(format!("{name} is {}, not a directory of blobs", kind(&t)));
        }
        let files = std::fs::read_dir(algorithm.path()).map_err(|e| format!("cannot read {name}: {e}"))?;
        for f in files {
            let f = f.map_err(|e| format!("cannot read {name}: {e}"))?;
            let t = f.file_type().map_err(|e| format!("cannot read {name}: {e}"))?;
            if !t.is_file() {
                let shown = format!("{name}/{}", f.file_name().to_string_lossy());
                return Err(match std::fs::read_link(f.path()) {
                    Ok(target) => {
                        format!("{shown} is a symbolic link (to {}): a blob must be a regular file", target.display())
                    }
                    Err(_) => format!("{shown} is {}: a blob must be a regular file", kind(&t)),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_another_major_are_refused() {
        assert!(version(br#"{"imageLayoutVersion":"1.0.0"}"#).is_ok());
        assert!(version(br#"{"imageLayoutVersion":"1.1.0","extra":true}"#).is_ok());
        let e = version(br#"{"imageLayoutVersion":"9.9.9"}"#).unwrap_err();
        assert!(e.contains("9.9.9") && e.contains("1.x"), "{e}");
        assert!(version(br#"{"imageLayoutVersion":"10.0.0"}"#).is_err());
        assert!(version(b"{}").unwrap_err().contains("no imageLayoutVersion"));
        assert!(version(b"nope").is_err());
    }

    #[test]
    fn files_are_regular_and_within_their_limit() {
        let dir = std::env::temp_dir().join(format!("is-check-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("index.json"), b"{}").unwrap();
        assert_eq!(read_file(&dir.join("index.json"), "index.json", 2).unwrap(), Some(b"{}".to_vec()));
        assert!(read_file(&dir.join("index.json"), "index.json", 1).unwrap_err().contains("more than"));
        assert_eq!(read_file(&dir.join("nothing"), "nothing", 1).unwrap(), None);
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link.json")).unwrap();
        assert!(read_file(&dir.join("link.json"), "link.json", 99).unwrap_err().contains("symbolic link"));
        std::fs::write(dir.join("blobs/sha256/aa"), b"x").unwrap();
        assert!(regular_blobs(&dir).is_ok());
        std::os::unix::fs::symlink("/etc/hostname", dir.join("blobs/sha256/bb")).unwrap();
        let e = regular_blobs(&dir).unwrap_err();
        assert!(e.contains("blobs/sha256/bb") && e.contains("/etc/hostname"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
