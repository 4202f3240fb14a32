//! OCI image layouts (`oci:DIR`) and archives (`oci-archive:FILE.tar`) as places images live:
//! read and written through the same operations as a registry (a [`Store`], [`store`]), so every
//! rule, selector, the platform filter and referrers work across an air gap unchanged.
//!
//! One layout holds many repositories, named as `docker save` names them ([`index`]); each blob
//! is one file, whichever images share it.
//!
//! **Writing is safe and incremental.** A blob is streamed to a temporary file next to its
//! final name, checked as it goes (the same [`BlobSource`] checks as a registry upload), synced
//! and renamed; a manifest is stored only after everything it references (the engine's order),
//! and `index.json` is replaced atomically (a temporary file renamed over it) once the tag's
//! manifest is in place. An interrupted run leaves a valid layout; a re-run finds what is there
//! and adds the rest. Workers share one in-memory index behind a lock. A tag counts as present
//! only while its manifest is really there: an entry left by a run that lost its files is copied
//! again, never reported `unchanged`.
//!
//! **One writer at a time** ([`lock`]): an archive is locked for the whole run; a directory only
//! while its `index.json` is re-read, merged with this run's changes ([`pending`]) and replaced,
//! so that parallel shards writing one directory keep each other's entries.
//!
//! **An archive loses nothing when its rewrite fails** ([`finish`]): what was staged stays
//! until the new archive is in place.
//!
//! **Reading verifies.** Every manifest and blob read is checked against its digest and size;
//! a damaged file fails the images that need it with an error naming the file, never retried.
//! A bundle damaged as a whole (an invalid `index.json` entry, a file over its limit, another
//! layout version, a member or link outside it: [`check`], [`archive`]) is refused when opened,
//! before anything of it is pushed.

mod archive;
mod check;
mod delta;
mod finish;
mod index;
mod lock;
mod parts;
mod pending;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

pub use delta::Base;
pub use finish::{Finished, InPlace, Status};

use crate::digest::{Algorithm, Digest};
use crate::manifest::{MediaType, MAX_MANIFEST_BYTES};
use crate::reference::Location;
use crate::store::{Error, ErrorKind, Origin};
use archive::Members;
use delta::{Record, RECORD};
use index::Index;
use lock::{lock, Writer, LOCK_FILE};
use pending::Op;

/// `index.json` is rewritten at most this often while tags arrive (and always at the end).
const INDEX_EVERY: Duration = Duration::from_millis(500);

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout of a run: where it is, and whether it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutSpec {
    /// `oci:/abs/dir` or `oci-archive:/abs/file.tar`, as repositories name it.
    pub location: Location,
    /// Images are written into it (created when missing).
    pub write: bool,
    /// A destination: it may not exist yet (a dry run or an audit sees it empty).
    pub dest: bool,
    /// `--max-archive-size`: an archive written is split into parts of this many bytes.
    pub part_size: Option<u64>,
}

impl LayoutSpec {
    fn path(&self) -> &Path {
        self.location.path().expect("a layout location has a path")
    }

    fn archive(&self) -> bool {
        matches!(self.location, Location::Archive(_))
    }
}

struct State {
    index: Index,
    /// What this run changed since `index.json` was last written, replayed on the file as it is
    /// then (another writer may have changed it).
    pending: Vec<Op>,
    /// Entries changed since `index.json` was last written.
    dirty: bool,
    written: Option<Instant>,
    /// Manifests with a `subject`, by subject: their descriptors (read on first need).
    subjects: Option<HashMap<Digest, Vec<Value>>>,
}

pub struct Layout {
    /// `oci:/path` or `oci-archive:/path`, as errors name it.
    pub location: String,
    /// The directory holding `blobs/` and `index.json`: the layout, or an archive's staging
    /// directory. `None` for an archive that is only read.
    dir: Option<PathBuf>,
    /// The archive read from: a source archive, or the one a destination archive replaces.
    tar: Option<Members>,
    /// A destination archive's final path.
    output: Option<PathBuf>,
    /// A destination archive is written as parts of this size.
    part_size: Option<u64>,
    writable: bool,
    state: Mutex<State>,
    /// `--base`: blobs that a delta bundle leaves out.
    base: Option<Arc<Base>>,
    /// What this bundle (being read) left out, and its base.
    record: Option<Record>,
    /// What this bundle (being written) left out.
    left_out: Mutex<BTreeMap<Digest, u64>>,
    /// A blob or an entry was written (or removed) this run.
    changed: AtomicBool,
    seq: AtomicU64,
    unnamed_warned: AtomicBool,
    /// How other writers are kept out.
    writer: Writer,
    /// Waiting for another writer was reported.
    wait_said: AtomicBool,
    /// A destination archive's `index.json` as it was read, in the form it is written: whether
    /// the run changed it.
    archived: Option<Vec<u8>>,
}

/// A member's bytes, if the archive has it.
fn read_member(tar: &Members, name: &str) -> io::Result<Option<Vec<u8>>> {
    if tar.size(name).is_none() {
        return Ok(None);
    }
    let mut b = Vec::new();
    tar.open(name, 0)?.read_to_end(&mut b)?;
    Ok(Some(b))
}

/// A blob's place in a layout: `blobs/<algorithm>/<hex>`.
fn rel(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

impl Layout {
    /// Open (or, to be written, create) the layout of `spec`; `base` applies when written.
    pub fn open(spec: &LayoutSpec, base: Option<Arc<Base>>) -> Result<Layout, Error> {
        let loc = spec.location.to_string();
        let fail = |m: String| Error::new(&loc, "", ErrorKind::Layout(m));
        let (archive, path) = (spec.archive(), spec.path());
        let (mut dir, mut tar, mut output) = (None, None, None);
        // A destination that is not there yet, in a run that writes nothing: seen empty.
        let unborn = spec.dest && !spec.write && !(path.exists() || archive && parts::exists(path));
        let (mut writer, mut held, said) = (Writer::None, None, AtomicBool::new(false));
        if archive {
            if spec.write {
                let file = PathBuf::from(format!("{}.lock", path.display()));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
                }
                writer = Writer::Run(Mutex::new(Some(lock(&loc, &file, &said)?)));
                // Under the lock: another writer's renames of its parts are never finished here.
                parts::settle(path).map_err(|e| fail(format!("cannot finish the rewrite of its parts: {e}")))?;
            }
            if parts::exists(path) {
                tar = Some(Members::scan(path).map_err(|e| fail(e.to_string()))?);
            } else if !spec.write && !unborn {
                return Err(fail("no such archive".into()));
            }
            if spec.write {
                output = Some(path.to_path_buf());
                dir = Some(PathBuf::from(format!("{}.partial", path.display())));
            }
        } else if !unborn {
            if !spec.write && !path.is_dir() {
                return Err(fail("no such directory".into()));
            }
            if spec.write {
                // Refused before anything is created in it; checked again under the lock. A
                // lock file says another run of ours is making it a layout.
                if !path.join(LOCK_FILE).exists() {
                    check_dir(path, false).map_err(fail)?;
                }
                std::fs::create_dir_all(path).map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
                held = Some(lock(&loc, &path.join(LOCK_FILE), &said)?);
                writer = Writer::Each(path.join(LOCK_FILE));
            }
            dir = Some(path.to_path_buf());
        }
        // A file of the layout (the staging directory's first, for an archive being written),
        // at most `limit` bytes.
        let read_dir = |name: &str, limit: u64| match &dir {
            Some(d) => check::read_file(&d.join(name), name, limit).map_err(fail),
            None => Ok(None),
        };
        let read_tar = |name: &str, limit: u64| -> Result<Option<Vec<u8>>, Error> {
            match tar.as_ref().and_then(|t| Some((t, t.size(name)?))) {
                Some((_, size)) if size > limit => Err(fail(check::too_large(name, size, limit))),
                Some((t, size)) => {
                    let mut b = Vec::with_capacity(size as usize);
                    t.open(name, 0)
                        .and_then(|mut r| r.read_to_end(&mut b))
                        .map_err(|e| fail(format!("{name}: {e}")))?;
                    Ok(Some(b))
                }
                None => Ok(None),
            }
        };
        let read = |name: &str, limit: u64| match read_dir(name, limit)? {
            Some(b) => Ok(Some(b)),
            None => read_tar(name, limit),
        };
        // The layout as found (an archive's, not its staging directory's) must be of a version
        // we understand, and, to be read, hold blobs that are regular files.
        let marker = if tar.is_some() {
            read_tar(LAYOUT_FILE, check::MAX_MARKER_BYTES)?
        } else {
            read_dir(LAYOUT_FILE, check::MAX_MARKER_BYTES)?
        };
        if let Some(m) = marker {
            check::version(&m).map_err(fail)?;
        }
        if let (Some(d), false) = (&dir, spec.dest) {
            check::regular_blobs(d).map_err(fail)?;
        }
        if let (Some(d), true) = (&dir, spec.write) {
            prepare_dir(d, archive).map_err(fail)?;
        }
        let index = match read("index.json", check::MAX_INDEX_BYTES)? {
            Some(b) => Index::parse(&b).map_err(fail)?,
            None if spec.write || unborn => Index::default(),
            None if archive => return Err(fail("not an OCI archive: it has no index.json".into())),
            None => return Err(fail("not an OCI image layout: no index.json there".into())),
        };
        // Entries we cannot read are kept in a layout we write, but a bundle we import holds
        // them: importing it without them would be a silent loss.
        if let (Some(m), false) = (index.unreadable(), spec.dest) {
            return Err(fail(m));
        }
        let record = match read(RECORD, check::MAX_INDEX_BYTES)? {
            Some(b) => Some(Record::parse(&b).map_err(fail)?),
            None => None,
        };
        let left_out = record.iter().flat_map(|r| r.blobs.iter()).map(|b| (b.digest.clone(), b.size)).collect();
        let archived = match (&tar, spec.write) {
            (Some(t), true) => read_member(t, "index.json").ok().flatten().and_then(|b| Index::parse(&b).ok()),
            _ => None,
        };
        let layout = Layout {
            location: loc,
            dir,
            tar,
            output,
            part_size: spec.part_size.filter(|_| archive),
            writable: spec.write,
            state: Mutex::new(State { index, pending: Vec::new(), dirty: spec.write, written: None, subjects: None }),
            // A dry run into a delta bundle plans without what the base holds, too.
            base: base.filter(|_| spec.dest),
            record,
            left_out: Mutex::new(left_out),
            changed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            unnamed_warned: AtomicBool::new(false),
            writer,
            wait_said: said,
            archived: archived.map(|i| i.to_bytes()),
        };
        if spec.write {
            layout.store_index(&mut layout.state.lock())?;
        }
        drop(held);
        Ok(layout)
    }

    fn error(&self, what: impl Into<String>, kind: ErrorKind) -> Error {
        Error::new(&self.location, what, kind)
    }

    /// A file operation on `path` that failed.
    fn cannot(&self, op: &str, path: &Path, e: io::Error) -> Error {
        self.error("", ErrorKind::Layout(format!("cannot {op} {}: {e}", path.display())))
    }

    /// The error for a blob that is not in the bundle: left out of a delta, or missing.
    fn absent(&self, what: String, digest: &Digest) -> Error {
        match self.record.as_ref().and_then(|r| r.absence(digest)) {
            Some(why) => self.error(what, ErrorKind::Layout(why)),
            None => self.error(what, ErrorKind::Missing(format!("{digest} is not in this layout"))),
        }
    }

    fn local_len(&self, digest: &Digest) -> Option<u64> {
        let path = rel(digest);
        if let Some(d) = &self.dir {
            if let Ok(m) = std::fs::metadata(d.join(&path)) {
                return Some(m.len());
            }
        }
        self.tar.as_ref().and_then(|t| t.size(&path))
    }

    fn open_local(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let path = rel(digest);
        if let Some(d) = &self.dir {
            // Never through a symbolic link, nor from a FIFO or device (a read could hang).
            match std::fs::symlink_metadata(d.join(&path)) {
                Ok(m) if !m.file_type().is_file() => {
                    let what = check::kind(&m.file_type());
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{path} is {what}, not a regular file"),
                    ));
                }
                _ => {}
            }
            match std::fs::File::open(d.join(&path)) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(offset))?;
                    return Ok(Box::new(f));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && self.tar.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        match &self.tar {
            Some(t) => t.open(&path, offset),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// A stored manifest's bytes, verified.
    fn read_manifest(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>, Error> {
        let what = format!("read {}", rel(digest));
        let Some(len) = self.local_len(digest) else { return Err(self.absent(what, digest)) };
        let damaged = |m: String| self.error(what.clone(), ErrorKind::Layout(format!("the file is damaged: {m}")));
        if len > MAX_MANIFEST_BYTES {
            return Err(damaged(format!("{len} bytes, more than a manifest may have")));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        self.open_local(digest, 0)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .map_err(|e| self.error(what.clone(), ErrorKind::Layout(format!("cannot read it: {e}"))))?;
        let actual = digest.algorithm().digest(&bytes);
        if actual != *digest {
            return Err(damaged(format!("digest mismatch: expected {digest}, got {actual}")));
        }
        if let Some(s) = size.filter(|s| *s != bytes.len() as u64 && *s != 0) {
            return Err(damaged(format!("{} bytes where index.json says {s}", bytes.len())));
        }
        Ok(bytes)
    }

    fn check_writable(&self, what: &str) -> Result<(), Error> {
        if self.writable {
            Ok(())
        } else {
            Err(self.error(what, ErrorKind::Layout("this layout is only read in this run".into())))
        }
    }

    /// Write `data` as the blob `digest`: a temporary file, synced, renamed into place.
    fn write_file(&self, digest: &Digest, data: &mut dyn Read) -> Result<u64, Error> {
        let dir = self.dir.as_ref().expect("a written layout has a directory");
        let what = format!("write {}", rel(digest));
        let algorithm = digest.algorithm();
        let tmp = dir.join("blobs").join(algorithm.name()).join(format!(
            ".{}.{}-{}.tmp",
            digest.hex(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            if algorithm != Algorithm::Sha256 {
                // `blobs/sha256` is made with the layout; other algorithms' directories on need.
                std::fs::create_dir_all(dir.join("blobs").join(algorithm.name()))?;
            }
            let mut f = io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&tmp)?);
            let n = io::copy(data, &mut f)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_data()?;
            std::fs::rename(&tmp, dir.join(rel(digest)))?;
            Ok::<u64, io::Error>(n)
        })();
        match written {
            Ok(n) => {
                self.changed.store(true, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                // A failure of the source comes out as its own error.
                let e = Error::io(&self.location, &what, e);
                match e.kind {
                    ErrorKind::Connection(m) if e.at == self.location => {
                        Err(self.error(what, ErrorKind::Layout(format!("cannot write: {m}"))))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Write `index.json` (and a delta's record) if entries changed, at most every
    /// [`INDEX_EVERY`] unless `now`.
    fn save_index(&self, now: bool) -> Result<(), Error> {
        {
            let state = self.state.lock();
            if !state.dirty || (!now && state.written.is_some_and(|w| w.elapsed() < INDEX_EVERY)) {
                return Ok(());
            }
        }
        // The file lock before the state's: workers do not wait on another process.
        let _held = match &self.writer {
            Writer::Each(file) => Some(lock(&self.location, file, &self.wait_said)?),
            _ => None,
        };
        let mut state = self.state.lock();
        if !state.dirty {
            return Ok(());
        }
        self.store_index(&mut state)
    }

    /// Write `index.json` (and a delta's record), the layout's lock held. A directory's file is
    /// read again first and this run's changes replayed on it: another writer may have changed it.
    fn store_index(&self, state: &mut State) -> Result<(), Error> {
        let dir = self.dir.as_ref().expect("a written layout has a directory");
        let fail = |e: io::Error| self.error("write index.json", ErrorKind::Layout(format!("cannot write: {e}")));
        if matches!(self.writer, Writer::Each(_)) {
            match std::fs::read(dir.join("index.json")) {
                Ok(bytes) => {
                    let mut on_disk =
                        Index::parse(&bytes).map_err(|m| self.error("read index.json", ErrorKind::Layout(m)))?;
                    pending::replay(&state.pending, &mut on_disk);
                    state.index = on_disk;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.cannot("read", &dir.join("index.json"), e)),
            }
        }
        let mut left_out = self.left_out.lock().clone();
        if let (Some(base), false) = (&self.base, left_out.is_empty()) {
            // What another writer of this delta left out is left out too.
            let theirs = std::fs::read(dir.join(RECORD)).ok().and_then(|b| Record::parse(&b).ok());
            for b in theirs.filter(|r| r.base == base.label).map(|r| r.blobs).unwrap_or_default() {
                left_out.entry(b.digest).or_insert(b.size);
            }
            let record = base.record(left_out.into_iter().map(|(digest, size)| base.left(digest, size)).collect());
            replace(&dir.join(RECORD), &serde_json::to_vec_pretty(&record).unwrap_or_default()).map_err(fail)?;
        }
        replace(&dir.join("index.json"), &state.index.to_bytes()).map_err(fail)?;
        state.pending.clear();
        state.dirty = false;
        state.written = Some(Instant::now());
        Ok(())
    }
}

impl Origin for Layout {
    fn name(&self) -> &str {
        &self.location
    }

    fn what(&self, _repo: &str, digest: &Digest) -> String {
        format!("read {}", rel(digest))
    }

    fn open_at(&self, _repo: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let what = format!("read {}", rel(digest));
        let r = self.open_local(digest, offset).map_err(|e| self.error(what, ErrorKind::Layout(e.to_string())))?;
        Ok((r, offset))
    }

    fn damaged(&self, what: String, kind: ErrorKind) -> Error {
        self.error(what, ErrorKind::Layout(format!("the file is damaged: {kind}")))
    }
}

/// A referrer's descriptor, as the referrers API lists it.
fn referrer_descriptor(doc: &Value, digest: &Digest, size: u64, media_type: &MediaType) -> Value {
    let artifact_type = doc.get("artifactType").or_else(|| doc.get("config").and_then(|c| c.get("mediaType")));
    let mut d = json!({ "mediaType": media_type, "digest": digest.as_str(), "size": size });
    if let Some(t) = artifact_type {
        d["artifactType"] = t.clone();
    }
    if let Some(a) = doc.get("annotations") {
        d["annotations"] = a.clone();
    }
    d
}

/// Make `dir` a layout to write: created when missing; an existing directory must be a layout
/// already, or empty (so a mistyped path never fills someone's home directory with blobs).
/// `oci-layout` comes first: a directory holding it is a layout to anyone who looks.
fn prepare_dir(dir: &Path, staging: bool) -> Result<(), String> {
    let shown = dir.display();
    check_dir(dir, staging)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
    if !dir.join(LAYOUT_FILE).exists() {
        replace(&dir.join(LAYOUT_FILE), LAYOUT_VERSION).map_err(|e| format!("cannot write in {shown}: {e}"))?;
    }
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).map_err(|e| format!("cannot create {shown}: {e}"))?;
    Ok(())
}

/// Refuse a directory that exists, is not empty (its lock file aside) and is not a layout.
fn check_dir(dir: &Path, staging: bool) -> Result<(), String> {
    if staging || !dir.exists() || dir.join(LAYOUT_FILE).exists() {
        return Ok(());
    }
    let shown = dir.display();
    let listing = std::fs::read_dir(dir).map_err(|e| format!("cannot open {shown}: {e}"))?;
    if listing.flatten().any(|e| e.file_name() != LOCK_FILE) {
        return Err(format!(
            "{shown} is not empty and not an OCI layout (no {LAYOUT_FILE}): refusing to write into it"
        ));
    }
    Ok(())
}

/// Replace `path` atomically with `bytes`.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
