//! One writer at a time per layout: an advisory lock (`flock(2)`, through [`File::try_lock`])
//! on a lock file of its own — `index.json` and the archive are replaced by rename, so a lock
//! on them would be on a file that goes away. An archive is locked for the whole run (its
//! staging directory and the archive made from it are one piece of work); a directory only
//! while its `index.json` is rewritten, so that parallel shards writing one directory still copy
//! in parallel and take turns only on the index ([`Writer`]).
//!
//! The holder removes the lock file before it unlocks, so none is left behind a run; whoever
//! then gets the lock on the removed file sees that the path names another file (or none) and
//! tries again. A process that dies holding it leaves the file, unlocked (the kernel releases
//! the lock): the next writer takes it at once.
//!
//! A waiter polls (so that Ctrl-C and the bound are noticed), says once that it waits, and gives
//! up after the bound.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::{Error, ErrorKind};

/// A directory layout's lock file (an archive's is `FILE.tar.lock`, beside it).
pub const LOCK_FILE: &str = ".image-syncer.lock";
/// How long a writer waits for another process writing the same layout.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// How a written layout keeps other processes from writing it at the same time.
pub enum Writer {
    /// It is only read.
    None,
    /// An archive: its lock, held until the archive is made (its staging directory and the
    /// archive made from it are one piece of work).
    Run(Mutex<Option<Lock>>),
    /// A directory: its lock file, taken for each rewrite of `index.json`. Blobs are files
    /// renamed into place under their digest, safe side by side, so writers copy in parallel.
    Each(PathBuf),
}

/// Take the lock `path` of the layout `loc`, saying once (per layout, `said`) that it waits.
pub fn lock(loc: &str, path: &Path, said: &AtomicBool) -> Result<Lock, Error> {
    let waiting = || {
        if !said.swap(true, Ordering::Relaxed) {
            log::info!(
                "{loc}: another process is writing this layout (it holds {}): waiting for it, up to {} minutes",
                path.display(),
                LOCK_WAIT.as_secs() / 60
            );
        }
    };
    Lock::acquire(path, LOCK_WAIT, &waiting).map_err(|e| {
        let m = format!("cannot take the lock {} (one writer at a time per layout): {e}", path.display());
        Error::new(loc, "", ErrorKind::Layout(m))
    })
}

/// A waiter says so after this long (a directory's lock is held for milliseconds at a time).
const SAY_AFTER: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// A lock held; released (its file removed) on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// Closing it releases the lock.
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    Io(io::Error),
    /// Another process held it for the whole bound.
    TimedOut(Duration),
    /// The run is stopping (Ctrl-C).
    Stopped,
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Io(e) => write!(f, "{e}"),
            LockError::TimedOut(d) => write!(f, "another process held it for more than {} s", d.as_secs()),
            LockError::Stopped => f.write_str("the run was stopped while waiting for it"),
        }
    }
}

impl Lock {
    /// Take the lock of `path` (the file is created when missing), waiting up to `bound`;
    /// `waiting` is called once when the wait has lasted a moment.
    pub fn acquire(path: &Path, bound: Duration, waiting: &dyn Fn()) -> Result<Lock, LockError> {
        let start = Instant::now();
        let mut said = false;
        loop {
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(LockError::Io)?;
            match file.try_lock() {
                Ok(()) => {
                    // The file may have been removed (or replaced) by the holder we waited for.
                    let held = file.metadata().map_err(LockError::Io)?;
                    let now = std::fs::metadata(path).ok();
                    if now.is_some_and(|n| n.dev() == held.dev() && n.ino() == held.ino()) {
                        return Ok(Lock { path: path.to_path_buf(), _file: file });
                    }
                    continue;
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
            drop(file);
            let waited = start.elapsed();
            if !said && waited >= SAY_AFTER.min(bound) {
                said = true;
                waiting();
            }
            if waited >= bound {
                return Err(LockError::TimedOut(bound));
            }
            if !crate::stop::sleep(POLL) {
                return Err(LockError::Stopped);
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Still held here: nobody else can have the file at this path.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_second_taker_waits_says_so_once_then_times_out_and_takes_it_once_free() {
        let dir = std::env::temp_dir().join(format!("is-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let first = Lock::acquire(&path, Duration::from_secs(1), &|| panic!("free: no wait")).unwrap();
        let said = AtomicUsize::new(0);
        let said_so = || {
            said.fetch_add(1, Ordering::Relaxed);
        };
        match Lock::acquire(&path, Duration::from_millis(300), &said_so) {
            Err(LockError::TimedOut(_)) => {}
            other => panic!("expected a time-out, got {other:?}"),
        }
        assert_eq!(said.load(Ordering::Relaxed), 1, "the waiter said it waits, once");
        drop(first);
        assert!(!path.exists(), "the holder removes the lock file");
        let second = Lock::acquire(&path, Duration::from_millis(300), &|| panic!("free: no wait")).unwrap();
        assert!(path.exists());
        drop(second);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
