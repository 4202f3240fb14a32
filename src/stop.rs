//! The run-wide "stop" flag, set by the first Ctrl-C or SIGTERM.
//!
//! It is a leaf of the module tree so that every layer can look at it: the engine stops
//! handing out tasks, a blob stream stops mid-transfer, a back-off sleep ends early. Nothing
//! is torn down from outside a worker; each notices the flag at its next step and unwinds the
//! ordinary way, so no manifest is pushed for blobs that did not all arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// Ask everything to stop.
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// `true` once a stop was asked for.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleep for `d`, or less when a stop is asked for. `false` when cut short.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}
