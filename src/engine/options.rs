//! How a run treats every image: the options tasks read and never change.

use crate::manifest::{MediaType, PlatformFilter};

/// What a run does with each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Copy what differs.
    #[default]
    Sync,
    /// Plan only: read everything, write nothing.
    DryRun,
    /// Audit: check the destination against the source, write nothing; with `blobs`, read
    /// back and hash every blob.
    Verify { blobs: bool },
}

/// Which referrers (signatures, SBOMs, attestations) are copied with their subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referrers {
    pub enabled: bool,
    /// Only these artifact types (all when empty); cosign's tags are copied regardless.
    pub types: Vec<MediaType>,
}

/// The options of a run, as tasks see them.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub filter: PlatformFilter,
    /// Copy even when the destination has the same digest.
    pub force: bool,
    pub mode: Mode,
    pub referrers: Referrers,
    /// Keep how each image ended, what it moved and how long it took (for `--report`,
    /// `--output-success-images`, and a bundle that may not be written out). Off, nothing of
    /// the kind is kept per image: the run's memory does not grow with it.
    pub per_image: bool,
}

impl Options {
    pub fn dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    pub fn verify(&self) -> bool {
        matches!(self.mode, Mode::Verify { .. })
    }

    pub fn verify_blobs(&self) -> bool {
        self.mode == Mode::Verify { blobs: true }
    }
}
