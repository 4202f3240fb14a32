//! What the user sees while a run goes on: the engine sends events and totals, and this layer
//! shows them — a live display on a terminal ([`live`]), or progress lines in the log
//! ([`lines`]) — with the log written around the display ([`term`]). `main` chooses.

mod lines;
mod live;
pub mod term;

use crate::engine::Display;

/// The display for this run: live on a terminal (`live`), else progress lines.
pub fn display(live: bool) -> Box<dyn Display> {
    if live {
        Box::new(live::Board::new())
    } else {
        Box::<lines::Lines>::default()
    }
}
