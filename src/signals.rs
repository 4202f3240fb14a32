//! Ctrl-C and SIGTERM: the first asks the run to stop (no new work; transfers end; the
//! summary is printed), a second exits at once. A thread waits on `signal-hook`'s self-pipe
//! iterator, so nothing async runs in a signal handler.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Start listening. Failing to install the handlers only loses the graceful stop.
pub fn install() {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot install signal handlers ({e}); Ctrl-C will end the run at once");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if RECEIVED.swap(sig, Ordering::SeqCst) != 0 {
                eprintln!("second signal: exiting now");
                std::process::exit(128 + sig);
            }
            let name = if sig == SIGINT { "interrupt" } else { "SIGTERM" };
            log::warn!("{name} received: stopping (in-flight transfers end now; send it again to exit at once)");
            crate::stop::request();
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal thread ({e}); Ctrl-C will end the run at once");
    }
}

/// The exit code a run stopped by a signal ends with: 128 + the signal (130, 143).
pub fn exit_code() -> Option<u8> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => u8::try_from(128 + sig).ok(),
    }
}
