//! [`TestDir`]: a temporary directory removed on drop (std only).

use std::fs;
use std::path::{Path, PathBuf};

use super::unique_seed;

/// A temporary directory removed (recursively) on drop.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(prefix: &str) -> TestDir {
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let path = base.join(format!("image-syncer-{prefix}-{:016x}", unique_seed()));
            if fs::create_dir(&path).is_ok() {
                return TestDir { path };
            }
        }
        panic!("cannot create a temporary directory under {}", base.display());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&p, contents).expect("write file");
        p
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A path as `&str` (test paths are always UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
