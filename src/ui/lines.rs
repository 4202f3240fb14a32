//! Progress as log lines: the run's totals every interval while something changes, for logs,
//! CI and anything that is no terminal.

use std::time::Duration;

use crate::engine::{Display, Totals, Transfers};

/// How often a progress line is logged while a run goes on.
const INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Lines {
    /// The totals last logged.
    reported: Totals,
}

impl Display for Lines {
    fn interval(&self) -> Duration {
        INTERVAL
    }

    fn show(&mut self, totals: &Totals, _: &Transfers) {
        if *totals != self.reported {
            log::info!("progress: {}", totals.summary());
            self.reported = *totals;
        }
    }
}
