//! The live display on a terminal: one line with images done of found, bytes moved, the rate
//! and an estimate of the time left, and below it a bar for each large blob in flight. It is
//! drawn by the engine's progress thread only; log lines scroll above it ([`super::term`]). On
//! anything but a terminal it is never created, so no escape code reaches a log file or a CI
//! log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Display, Totals, Transfers};

/// Blobs at least this large get a bar of their own; smaller ones come and go too fast to read.
const BAR_MIN_BYTES: u64 = 1 << 20;
/// At most this many bars; further transfers are only counted in the top line.
const MAX_BARS: usize = 8;
/// The rate is averaged over this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Redraws per second at most.
const REFRESH_HZ: u8 = 10;
/// How often the display is redrawn.
const INTERVAL: Duration = Duration::from_millis(100);

/// `42s`, `3m05s`, `2h07m`: short enough for an 80-column top line.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub struct Board {
    display: MultiProgress,
    top: ProgressBar,
    bars: HashMap<u64, ProgressBar>,
    /// (when, bytes moved by then), for the rate.
    samples: VecDeque<(Instant, u64)>,
    started: Instant,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
}

impl Board {
    pub fn new() -> Board {
        let display = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(REFRESH_HZ));
        let top = display
            .add(ProgressBar::new(0).with_style(style("{spinner} [{elapsed_precise}] images {pos}/{len} {wide_msg}")));
        super::term::attach(display.clone());
        Board { display, top, bars: HashMap::new(), samples: VecDeque::new(), started: Instant::now() }
    }
}

impl Display for Board {
    fn interval(&self) -> Duration {
        INTERVAL
    }

    /// Redraw from the totals and the transfers in flight.
    fn show(&mut self, totals: &Totals, moving: &Transfers) {
        let moved = totals.bytes_copied + moving.values().map(|t| t.done()).sum::<u64>();
        let now = Instant::now();
        self.samples.push_back((now, moved));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now - *t > RATE_WINDOW) {
            self.samples.pop_front();
        }
        let (t0, b0) = self.samples.front().copied().unwrap_or((now, moved));
        let secs = (now - t0).as_secs_f64();
        let rate = if secs > 0.0 { (moved.saturating_sub(b0) as f64 / secs) as u64 } else { 0 };

        let done = totals.images_done();
        let found = totals.images_found.max(done);
        let eta = if done > 0 && found > done {
            let left = self.started.elapsed().mul_f64((found - done) as f64 / done as f64);
            format!(" · ETA {}", short_duration(left))
        } else {
            String::new()
        };
        let verb = if totals.dry_run { " to copy" } else { "" };
        let amount = if totals.dry_run { totals.bytes_planned } else { moved };
        self.top.set_length(found);
        self.top.set_position(done);
        let message = if totals.verify {
            format!("· {} blob(s) checked · {} differ{eta}", totals.blobs_checked, totals.images_drifted)
        } else {
            format!("· {}{verb} at {}/s{eta} · {} in flight", HumanBytes(amount), HumanBytes(rate), moving.len())
        };
        self.top.set_message(message);

        self.bars.retain(|id, bar| {
            let keep = moving.contains_key(id);
            if !keep {
                bar.finish_and_clear();
                self.display.remove(bar);
            }
            keep
        });
        for t in moving.values() {
            let Some(size) = t.size.filter(|s| *s >= BAR_MIN_BYTES) else { continue };
            if !self.bars.contains_key(&t.id) && self.bars.len() >= MAX_BARS {
                continue;
            }
            let bar = self.bars.entry(t.id).or_insert_with(|| {
                let bar = ProgressBar::new(size)
                    .with_style(style("  {prefix:44!} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec}"))
                    .with_prefix(t.label.clone());
                self.display.add(bar)
            });
            bar.set_position(t.done().min(size));
        }
        self.top.tick();
    }

    /// Clear the display, so that the summary lines follow the last log line.
    fn finish(self: Box<Self>) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        self.top.finish_and_clear();
        let _ = self.display.clear();
        super::term::detach();
    }
}

#[cfg(test)]
mod tests {
    use super::short_duration;
    use std::time::Duration;

    #[test]
    fn durations_fit_the_top_line() {
        let d = |s| short_duration(Duration::from_secs(s));
        assert_eq!((d(0), d(42), d(185), d(7620)), ("0s".into(), "42s".into(), "3m05s".into(), "2h07m".into()));
    }
}
