//! Progress: workers send small events over a channel to one reporter thread, which keeps the
//! totals, logs a progress line every interval while work goes on, and hands the totals back at
//! the end. Workers never wait on it (the channel is unbounded and sending is cheap).

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, tick, unbounded, Sender};

/// Something a worker finished.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A blob was streamed from the source; its size in bytes.
    BlobCopied(u64),
    BlobMounted,
    /// The destination already had the blob.
    BlobPresent,
    ManifestPushed,
    ImageSynced,
    ImageUnchanged,
    /// A dry run found an image to copy: its blobs missing at the destination, their bytes,
    /// and its blobs already there.
    ImagePlanned {
        missing: u64,
        bytes: u64,
        present: u64,
    },
}

/// What a run moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_pushed: u64,
    pub images_synced: u64,
    pub images_unchanged: u64,
    /// A dry run: nothing was written; the `planned_*` fields say what a real run would do.
    pub dry_run: bool,
    pub images_planned: u64,
    pub blobs_planned: u64,
    pub bytes_planned: u64,
}

impl Totals {
    fn apply(&mut self, e: Event) {
        match e {
            Event::BlobCopied(bytes) => {
                self.blobs_copied += 1;
                self.bytes_copied += bytes;
            }
            Event::BlobMounted => self.blobs_mounted += 1,
            Event::BlobPresent => self.blobs_present += 1,
            Event::ManifestPushed => self.manifests_pushed += 1,
            Event::ImageSynced => self.images_synced += 1,
            Event::ImageUnchanged => self.images_unchanged += 1,
            Event::ImagePlanned { missing, bytes, present } => {
                self.images_planned += 1;
                self.blobs_planned += missing;
                self.bytes_planned += bytes;
                self.blobs_present += present;
            }
        }
    }

    pub fn summary(&self) -> String {
        if self.dry_run {
            return format!(
                "dry run: {} image(s) would be copied, {} unchanged; {} blob(s) to copy ({:.1} MiB), {} already present",
                self.images_planned,
                self.images_unchanged,
                self.blobs_planned,
                self.bytes_planned as f64 / (1024.0 * 1024.0),
                self.blobs_present
            );
        }
        format!(
            "{} image(s) synced, {} unchanged; {} blob(s) copied ({:.1} MiB), {} mounted, {} already present; {} manifest(s) pushed",
            self.images_synced,
            self.images_unchanged,
            self.blobs_copied,
            self.bytes_copied as f64 / (1024.0 * 1024.0),
            self.blobs_mounted,
            self.blobs_present,
            self.manifests_pushed
        )
    }
}

/// Start the reporter. It ends, returning the totals, when every sender is dropped.
pub fn start(interval: Duration) -> (Sender<Event>, JoinHandle<Totals>) {
    let (tx, rx) = unbounded::<Event>();
    let handle = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let ticker = tick(interval);
            let mut totals = Totals::default();
            let mut reported = totals;
            loop {
                select! {
                    recv(rx) -> e => match e {
                        Ok(e) => totals.apply(e),
                        Err(_) => return totals,
                    },
                    recv(ticker) -> _ => if totals != reported {
                        log::info!("progress: {}", totals.summary());
                        reported = totals;
                    },
                }
            }
        })
        .expect("cannot spawn the progress thread");
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_back_when_senders_are_gone() {
        let (tx, handle) = start(Duration::from_secs(3600));
        let tx2 = tx.clone();
        tx.send(Event::BlobCopied(10)).unwrap();
        tx2.send(Event::BlobCopied(5)).unwrap();
        tx2.send(Event::ImageSynced).unwrap();
        drop((tx, tx2));
        let t = handle.join().unwrap();
        assert_eq!((t.blobs_copied, t.bytes_copied, t.images_synced), (2, 15, 1));
        assert!(t.summary().contains("2 blob(s) copied"));
    }
}
