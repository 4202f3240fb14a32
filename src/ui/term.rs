//! The terminal that the log and the live display share. While a display is attached, every
//! log record is written with the display suspended (cleared, the record written, the display
//! drawn again below it), so finished lines and errors scroll above the display and never tear
//! it. Without a display, records go straight to stderr.

use std::io::{self, IsTerminal, Write};

use indicatif::MultiProgress;
use parking_lot::Mutex;

static DISPLAY: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Whether stderr can carry a live display: a terminal, and not one that declares itself
/// unable to move the cursor (`TERM=dumb`).
pub fn stderr_is_live() -> bool {
    io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Route log records around `display` from now on.
pub fn attach(display: MultiProgress) {
    *DISPLAY.lock() = Some(display);
}

/// The display is gone: log records go straight to stderr again.
pub fn detach() {
    *DISPLAY.lock() = None;
}

/// stderr for the logger: each record (env_logger writes one record per call) goes above the
/// live display when there is one.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let display = DISPLAY.lock().clone();
        match display {
            Some(d) => d.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
