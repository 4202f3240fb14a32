//! Progress: workers send small events over a channel to one reporter thread, which keeps the
//! totals, hands them to a [`Display`] while work goes on, and back at the end. The engine
//! never draws: `main` chooses the display (a live one on a terminal, progress lines in the
//! log) and hands it in, as ripgrep hands its printer to the search. Workers never wait on it
//! (the channel is unbounded and sending is cheap); bytes of a blob in flight are not sent as
//! events but read by the reporter from the transfer's own counter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, tick, unbounded, Sender};

/// How a run's progress is shown while it goes on.
pub trait Display: Send {
    /// How often [`Display::show`] is called.
    fn interval(&self) -> Duration;
    /// The run so far: its totals, and the blobs in flight by transfer id.
    fn show(&mut self, totals: &Totals, moving: &Transfers);
    /// The run is over: clear what was drawn.
    fn finish(self: Box<Self>) {}
}

/// The blobs streaming now, by transfer id.
pub type Transfers = BTreeMap<u64, Arc<Transfer>>;

/// Something a worker started or finished.
#[derive(Debug, Clone)]
pub enum Event {
    /// A rule found this many images to sync.
    ImagesFound(u64),
    /// A blob was streamed from the source; its size in bytes.
    BlobCopied(u64),
    BlobMounted,
    /// The destination already had the blob.
    BlobPresent,
    ManifestPushed,
    ImageSynced,
    ImageUnchanged,
    /// The destination lists an immutable tag: in sync, nothing compared.
    ImageImmutable,
    /// Nothing in the image matched the platform filter.
    ImageSkipped,
    /// `--verify`: the destination has the image, whole.
    ImageVerified,
    /// `--verify`: the destination differs.
    ImageDrifted,
    /// `--verify`: a blob was checked at the destination.
    BlobChecked,
    /// A dry run found an image to copy: its blobs missing at the destination, their bytes,
    /// and its blobs already there.
    ImagePlanned {
        missing: u64,
        bytes: u64,
        present: u64,
    },
    /// A blob started streaming.
    TransferStarted(Arc<Transfer>),
    /// The transfer with this id ended (however it ended).
    TransferEnded(u64),
}

/// A blob streaming from a source to a destination.
#[derive(Debug)]
pub struct Transfer {
    pub id: u64,
    /// What moves: the destination image and the blob's short digest.
    pub label: String,
    pub size: Option<u64>,
    /// Bytes handed to the destination so far (the blob reader keeps it up to date).
    pub done: Arc<AtomicU64>,
}

impl Transfer {
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// Announces a transfer while it lives; its end when dropped.
pub struct Moving {
    tx: Sender<Event>,
    id: u64,
    pub done: Arc<AtomicU64>,
}

impl Moving {
    pub fn start(tx: &Sender<Event>, id: u64, label: String, size: Option<u64>) -> Moving {
        let done = Arc::new(AtomicU64::new(0));
        let _ = tx.send(Event::TransferStarted(Arc::new(Transfer { id, label, size, done: done.clone() })));
        Moving { tx: tx.clone(), id, done }
    }
}

impl Drop for Moving {
    fn drop(&mut self) {
        let _ = self.tx.send(Event::TransferEnded(self.id));
    }
}

/// What a run moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Images the rules resolved to.
    pub images_found: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_present: u64,
    pub manifests_pushed: u64,
    pub images_synced: u64,
    pub images_unchanged: u64,
    /// Immutable tags the destination lists (`immutable`): in sync without a comparison.
    pub images_immutable: u64,
    pub images_skipped: u64,
    /// A dry run: nothing was written; the `planned_*` fields say what a real run would do.
    pub dry_run: bool,
    pub images_planned: u64,
    pub blobs_planned: u64,
    pub bytes_planned: u64,
    /// An audit (`--verify`): nothing was written; the `*_verified`/`drifted`/`checked`
    /// fields say what was found.
    pub verify: bool,
    pub images_verified: u64,
    pub images_drifted: u64,
    pub blobs_checked: u64,
    /// Destination tags deleted by prune (in a dry run: that would be).
    pub tags_pruned: u64,
}

impl Totals {
    fn apply(&mut self, e: &Event) {
        match *e {
            Event::ImagesFound(n) => self.images_found += n,
            Event::BlobCopied(bytes) => {
                self.blobs_copied += 1;
                self.bytes_copied += bytes;
            }
            Event::BlobMounted => self.blobs_mounted += 1,
            Event::BlobPresent => self.blobs_present += 1,
            Event::ManifestPushed => self.manifests_pushed += 1,
            Event::ImageSynced => self.images_synced += 1,
            Event::ImageUnchanged => self.images_unchanged += 1,
            Event::ImageImmutable => self.images_immutable += 1,
            Event::ImageSkipped => self.images_skipped += 1,
            Event::ImageVerified => self.images_verified += 1,
            Event::ImageDrifted => self.images_drifted += 1,
            Event::BlobChecked => self.blobs_checked += 1,
            Event::ImagePlanned { missing, bytes, present } => {
                self.images_planned += 1;
                self.blobs_planned += missing;
                self.bytes_planned += bytes;
                self.blobs_present += present;
            }
            Event::TransferStarted(_) | Event::TransferEnded(_) => {}
        }
    }

    /// Images finished without failing.
    pub fn images_done(&self) -> u64 {
        self.images_synced
            + self.images_unchanged
            + self.images_immutable
            + self.images_skipped
            + self.images_planned
            + self.images_verified
    }

    /// `, N unchanged (immutable)` when any tag was taken as immutable.
    fn immutable_part(&self) -> String {
        match self.images_immutable {
            0 => String::new(),
            n => format!(", {n} unchanged (immutable)"),
        }
    }

    pub fn summary(&self) -> String {
        if self.verify {
            return format!(
                "verify: {} image(s) match their source, {} differ, {} skipped; {} blob(s) checked",
                self.images_verified, self.images_drifted, self.images_skipped, self.blobs_checked
            );
        }
        if self.dry_run {
            return format!(
                "dry run: {} image(s) would be copied, {} unchanged{}; {} blob(s) to copy ({:.1} MiB), {} already present",
                self.images_planned,
                self.images_unchanged,
                self.immutable_part(),
                self.blobs_planned,
                self.bytes_planned as f64 / (1024.0 * 1024.0),
                self.blobs_present
            );
        }
        format!(
            "{} image(s) synced, {} unchanged{}; {} blob(s) copied ({:.1} MiB), {} mounted, {} already present; {} manifest(s) pushed",
            self.images_synced,
            self.images_unchanged,
            self.immutable_part(),
            self.blobs_copied,
            self.bytes_copied as f64 / (1024.0 * 1024.0),
            self.blobs_mounted,
            self.blobs_present,
            self.manifests_pushed
        )
    }
}

/// Where workers send their events: the reporter's channel.
pub struct Progress {
    tx: Sender<Event>,
    /// The id of the next transfer shown.
    next_transfer: AtomicU64,
}

impl Progress {
    pub fn new(tx: Sender<Event>) -> Progress {
        Progress { tx, next_transfer: AtomicU64::new(0) }
    }

    /// Tell the reporter (it outlives every worker, so a send cannot fail in practice).
    pub fn event(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    /// A blob starts streaming: the display follows it until the guard is dropped.
    pub fn moving(&self, label: String, size: Option<u64>) -> Moving {
        let id = self.next_transfer.fetch_add(1, Ordering::Relaxed);
        Moving::start(&self.tx, id, label, size)
    }
}

/// Start the reporter, showing progress on `display`. It ends, returning the totals, when
/// every sender is dropped.
pub fn start(mut display: Box<dyn Display>) -> (Sender<Event>, JoinHandle<Totals>) {
    let (tx, rx) = unbounded::<Event>();
    let handle = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let ticker = tick(display.interval());
            let mut totals = Totals::default();
            let mut moving = Transfers::new();
            loop {
                select! {
                    recv(rx) -> e => match e {
                        Ok(Event::TransferStarted(t)) => { moving.insert(t.id, t); }
                        Ok(Event::TransferEnded(id)) => { moving.remove(&id); }
                        Ok(e) => totals.apply(&e),
                        Err(_) => {
                            display.finish();
                            return totals;
                        }
                    },
                    recv(ticker) -> _ => display.show(&totals, &moving),
                }
            }
        })
        .expect("cannot spawn the progress thread");
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::Silent;

    #[test]
    fn totals_come_back_when_senders_are_gone() {
        let (tx, handle) = start(Box::new(Silent));
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
