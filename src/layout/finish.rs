//! The end of a run for a written bundle: `index.json` written last, and an archive made from
//! its staging directory — or left as it is when it would hold nothing new, so that a run that
//! copies nothing does not rewrite gigabytes.
//!
//! Nothing staged is deleted before the new archive is in place: a rewrite that fails (a full
//! disk) or dies (SIGKILL) keeps the old archive and every staged file, and the next run writes
//! them out even when it copies nothing itself (issue 23: the staged blobs used to go as they
//! went into an archive that was never finished, and the re-run called the lost tags
//! `unchanged`).

use std::path::Path;
use std::sync::atomic::Ordering;

use super::delta::RECORD;
use super::index::Index;
use super::lock::Writer;
use super::{archive, parts, read_member, rel, Layout, LAYOUT_FILE, LAYOUT_VERSION};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{Error, ErrorKind};

/// What became of a written bundle at the end of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The run changed it (an archive: a new one is in place).
    Written,
    /// Nothing in it changed.
    Unchanged,
    /// An archive not made, the run being interrupted: its staging directory is kept.
    Kept,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Written => "written",
            Status::Unchanged => "unchanged",
            Status::Kept => "kept",
        }
    }
}

/// The end of a written bundle: its status, and a note for the summary line.
#[derive(Clone, Debug)]
pub struct Finished {
    pub status: Status,
    pub note: Option<String>,
}

/// A written bundle as it stays where the run did not write it out (an error, or an archive
/// only staged by an interrupted run): an archive as it was before the run, a directory as its
/// `index.json` was last saved. What the run took as in sync there and is not in it did not
/// land — even an image found `unchanged` in what an earlier failed run had staged.
pub struct InPlace<'a> {
    layout: &'a Layout,
    index: Index,
}

impl InPlace<'_> {
    /// Whether it holds the image `name` by `reference`, with `digest` when one is given, its
    /// manifest file included.
    pub fn holds(&self, name: &str, reference: &Reference, digest: Option<&Digest>) -> bool {
        let manifest = match reference {
            Reference::Tag(tag) => match self.index.find(name, tag) {
                Some(entry) if digest.is_none_or(|d| *d == entry.digest) => entry.digest.clone(),
                _ => return false,
            },
            Reference::Digest(d) => d.clone(),
        };
        let path = rel(&manifest);
        match (&self.layout.output, &self.layout.dir) {
            (Some(_), _) => self.layout.tar.as_ref().is_some_and(|t| t.size(&path).is_some()),
            (None, Some(dir)) => dir.join(&path).is_file(),
            (None, None) => false,
        }
    }
}

impl Layout {
    /// What stays in place of this bundle if it is not written out (see [`InPlace`]).
    pub fn in_place(&self) -> InPlace<'_> {
        let index = match (&self.output, &self.dir) {
            (Some(_), _) => self.archived.as_deref().and_then(|b| Index::parse(b).ok()),
            (None, Some(dir)) => std::fs::read(dir.join("index.json")).ok().and_then(|b| Index::parse(&b).ok()),
            (None, None) => None,
        };
        InPlace { layout: self, index: index.unwrap_or_default() }
    }

    /// Whether this layout is written in this run.
    pub fn writes(&self) -> bool {
        self.writable
    }

    /// The end of the run: `index.json` written, a destination archive made from its staging
    /// directory (unless the run was `interrupted`: a re-run goes on from it). An error when
    /// the bundle could not be completed; what was staged is then kept for the next run.
    pub fn finish(&self, interrupted: bool) -> Result<Finished, Error> {
        self.state.lock().dirty |= !self.left_out.lock().is_empty() && self.base.is_some();
        self.save_index(true)?;
        let mut status = if self.changed.load(Ordering::Relaxed) { Status::Written } else { Status::Unchanged };
        if let (Some(out), Some(staged)) = (&self.output, &self.dir) {
            status = if interrupted {
                log::warn!(
                    "{}: the run was interrupted; what it copied is kept in {} and a re-run finishes the archive",
                    self.location,
                    staged.display()
                );
                Status::Kept
            } else {
                self.write_archive(out, staged)?
            };
            // The lock goes with the piece of work it guarded.
            if let Writer::Run(held) = &self.writer {
                held.lock().take();
            }
        }
        let left = self.left_out.lock();
        if self.base.is_none() || left.is_empty() {
            return Ok(Finished { status, note: None });
        }
        let bytes: u64 = left.values().sum();
        let holder = self.base.as_ref().map_or("", |b| b.holder());
        let note = format!(
            "{}: {} blob(s) ({:.1} MiB) left out: {holder}",
            self.location,
            left.len(),
            bytes as f64 / (1024.0 * 1024.0)
        );
        Ok(Finished { status, note: Some(note) })
    }

    /// Make the archive `out` from the staging directory `staged` and the archive it replaces,
    /// unless it would hold what the one in place holds. The staged files go only once the new
    /// archive is in place: a run that fails (a full disk) or dies (SIGKILL) on the way leaves
    /// them, and the next run writes them out, even when it copies nothing itself.
    fn write_archive(&self, out: &Path, staged: &Path) -> Result<Status, Error> {
        let index = self.archive_index();
        let record = std::fs::read(staged.join(RECORD)).ok();
        let archived_record = self.tar.as_ref().and_then(|t| read_member(t, RECORD).ok().flatten());
        let stale = self.changed.load(Ordering::Relaxed)
            || !parts::current(out, self.part_size)
            || self.archived.as_deref() != Some(index.as_slice())
            || record != archived_record
            || holds_blobs(staged);
        if !stale {
            std::fs::remove_dir_all(staged).map_err(|e| self.cannot("remove", staged, e))?;
            return Ok(Status::Unchanged);
        }
        log::info!("{}: writing the archive", self.location);
        let mut files = vec![(LAYOUT_FILE, LAYOUT_VERSION.to_vec()), ("index.json", index)];
        files.extend(record.map(|r| (RECORD, r)));
        archive::write(out, self.part_size, &files, self.tar.as_ref(), staged).map_err(|e| {
            let m = format!(
                "the archive was not written: {e}; what this run copied is kept in {} and a re-run writes the archive",
                staged.display()
            );
            self.error("", ErrorKind::Layout(m))
        })?;
        std::fs::remove_dir_all(staged).map_err(|e| self.cannot("remove", staged, e))?;
        log::info!("{}: archive written", self.location);
        Ok(Status::Written)
    }

    /// The `index.json` of the archive to write: the entries whose manifest it will hold. One
    /// whose manifest is neither staged nor in the archive it replaces (lost by an older version
    /// of this tool) is left out, with a warning: importing it could only fail.
    fn archive_index(&self) -> Vec<u8> {
        let mut index = self.state.lock().index.clone();
        index.entries.retain(|e| {
            let here = self.local_len(&e.digest).is_some();
            if !here {
                let name = match (&e.name, &e.tag) {
                    (Some(n), Some(t)) => format!("{n}:{t}"),
                    (n, t) => n.clone().or(t.clone()).unwrap_or_else(|| e.digest.to_string()),
                };
                log::warn!(
                    "{}: index.json lists {name} but its manifest {} is not there: left out of the archive",
                    self.location,
                    e.digest
                );
            }
            here
        });
        index.to_bytes()
    }
}

/// Whether a staging directory holds any blob file (temporary ones aside).
fn holds_blobs(staged: &Path) -> bool {
    let Ok(algorithms) = std::fs::read_dir(staged.join("blobs")) else { return false };
    algorithms
        .flatten()
        .filter_map(|a| std::fs::read_dir(a.path()).ok())
        .flatten()
        .flatten()
        .any(|f| !f.file_name().to_string_lossy().starts_with('.'))
}
