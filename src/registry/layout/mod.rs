//! OCI image layouts (`oci:DIR`) and archives (`oci-archive:FILE.tar`) as places images live:
//! read and written through the same operations as a registry ([`super::Store`]), so every rule,
//! selector, the platform filter and referrers work across an air gap unchanged.
//!
//! One layout holds many repositories, named as `docker save` names them ([`index`]); each blob
//! is one file, whichever images share it.
//!
//! **Writing is safe and incremental.** A blob is streamed to a temporary file next to its
//! final name, checked as it goes (the same [`BlobSource`] checks as a registry upload), synced
//! and renamed; a manifest is stored only after everything it references (the engine's order),
//! and `index.json` is replaced atomically (a temporary file renamed over it) once the tag's
//! manifest is in place. An interrupted run leaves a valid layout; a re-run finds what is there
//! and adds the rest. Workers share one in-memory index behind a lock.
//!
//! **Reading verifies.** Every manifest and blob read is checked against its digest and size;
//! a damaged file fails the images that need it with an error naming the file, never retried.

mod archive;
mod delta;
mod index;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

pub use delta::Base;

use super::blobs::Origin;
use super::{BlobSource, Error, ErrorKind, Fetched, Head, ReferrersAnswer};
use crate::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::digest::Digest;
use crate::reference::Reference;
use archive::Members;
use delta::{Left, Record, RECORD};
use index::{Entry, Index};

/// `index.json` is rewritten at most this often while tags arrive (and always at the end).
const INDEX_EVERY: Duration = Duration::from_millis(500);

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout location of a run: where it is, whether it is an archive, whether it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutSpec {
    /// `oci:/abs/dir` or `oci-archive:/abs/file.tar`, as repositories name it.
    pub location: String,
    pub path: PathBuf,
    pub archive: bool,
    /// Images are written into it (created when missing).
    pub write: bool,
    /// A destination: it may not exist yet (a dry run or an audit sees it empty).
    pub dest: bool,
}

impl LayoutSpec {
    /// The spec of `location` (`oci:/path` or `oci-archive:/path`).
    pub fn new(location: &str, dest: bool, write: bool) -> LayoutSpec {
        let (archive, path) = match location.strip_prefix(crate::reference::LAYOUT_ARCHIVE) {
            Some(p) => (true, p),
            None => (false, location.strip_prefix(crate::reference::LAYOUT_DIR).unwrap_or(location)),
        };
        LayoutSpec { location: location.to_string(), path: PathBuf::from(path), archive, write, dest }
    }
}

struct State {
    index: Index,
    /// Entries changed since `index.json` was last written.
    dirty: bool,
    written: Option<Instant>,
    /// Manifests with a `subject`, by subject: their descriptors (read on first need).
    subjects: Option<HashMap<Digest, Vec<Value>>>,
}

pub struct Layout {
    pub location: String,
    /// The directory holding `blobs/` and `index.json`: the layout, or an archive's staging
    /// directory. `None` for an archive that is only read.
    dir: Option<PathBuf>,
    /// The archive read from: a source archive, or the one a destination archive replaces.
    tar: Option<Members>,
    /// A destination archive's final path.
    output: Option<PathBuf>,
    writable: bool,
    state: Mutex<State>,
    /// `--base`: blobs that a delta bundle leaves out.
    base: Option<Arc<Base>>,
    /// What this bundle (being read) left out, and its base.
    record: Option<Record>,
    /// What this bundle (being written) left out.
    left_out: Mutex<BTreeMap<Digest, u64>>,
    /// A blob or an entry was written this run.
    changed: AtomicBool,
    seq: AtomicU64,
    unnamed_warned: AtomicBool,
}

fn rel(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

impl Layout {
    /// Open (or, to be written, create) the layout of `spec`; `base` applies when written.
    pub fn open(spec: &LayoutSpec, base: Option<Arc<Base>>) -> Result<Layout, String> {
        let loc = &spec.location;
        let fail = |m: String| format!("{loc}: {m}");
        let (mut dir, mut tar, mut output) = (None, None, None);
        // A destination that is not there yet, in a run that writes nothing: seen empty.
        let unborn = spec.dest && !spec.write && !spec.path.exists();
        if spec.archive {
            if spec.path.exists() {
                tar = Some(Members::scan(&spec.path).map_err(|e| fail(format!("not a readable tar archive: {e}")))?);
            } else if !spec.write && !unborn {
                return Err(fail("no such archive".into()));
            }
            if spec.write {
                output = Some(spec.path.clone());
                dir = Some(PathBuf::from(format!("{}.partial", spec.path.display())));
            }
        } else if !unborn {
            if !spec.write && !spec.path.is_dir() {
                return Err(fail("no such directory".into()));
            }
            dir = Some(spec.path.clone());
        }
        let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
            if let Some(d) = &dir {
                match std::fs::read(d.join(name)) {
                    Ok(b) => return Ok(Some(b)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(fail(format!("cannot read {name}: {e}"))),
                }
            }
            match &tar {
                Some(t) if t.size(name).is_some() => {
                    let mut b = Vec::new();
                    t.open(name, 0)
                        .and_then(|mut r| r.read_to_end(&mut b))
                        .map_err(|e| fail(format!("{name}: {e}")))?;
                    Ok(Some(b))
                }
                _ => Ok(None),
            }
        };
        if let (Some(d), true) = (&dir, spec.write) {
            prepare_dir(d, spec.archive).map_err(fail)?;
        }
        let index = match read("index.json")? {
            Some(b) => Index::parse(&b).map_err(fail)?,
            None if spec.write || unborn => Index::default(),
            None if spec.archive => return Err(fail("not an OCI archive: it has no index.json".into())),
            None => return Err(fail("not an OCI image layout: no index.json there".into())),
        };
        let record = match read(RECORD)? {
            Some(b) => Some(Record::parse(&b).map_err(fail)?),
            None => None,
        };
        let left_out = record.iter().flat_map(|r| r.blobs.iter()).map(|b| (b.digest.clone(), b.size)).collect();
        let layout = Layout {
            location: loc.clone(),
            dir,
            tar,
            output,
            writable: spec.write,
            state: Mutex::new(State { index, dirty: spec.write, written: None, subjects: None }),
            // A dry run into a delta bundle plans without what the base holds, too.
            base: base.filter(|_| spec.dest),
            record,
            left_out: Mutex::new(left_out),
            changed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            unnamed_warned: AtomicBool::new(false),
        };
        if spec.write {
            layout.save_index(true).map_err(|e| e.to_string())?;
        }
        Ok(layout)
    }

    fn error(&self, what: impl Into<String>, kind: ErrorKind) -> Error {
        Error::new(&self.location, what, kind)
    }

    /// The error for a blob that is not in the bundle: left out of a delta, or missing.
    fn absent(&self, what: String, digest: &Digest) -> Error {
        match &self.record {
            Some(r) if r.holds(digest) => self.error(
                what,
                ErrorKind::Layout(format!(
                    "{digest} is left out of this delta bundle (its base {} holds it) and the destination \
                     lacks it: import the base bundle first",
                    r.base
                )),
            ),
            _ => self.error(what, ErrorKind::Missing(format!("{digest} is not in this layout"))),
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
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(damaged(format!("digest mismatch: expected {digest}, got {actual}")));
        }
        if let Some(s) = size.filter(|s| *s != bytes.len() as u64 && *s != 0) {
            return Err(damaged(format!("{} bytes where index.json says {s}", bytes.len())));
        }
        Ok(bytes)
    }

    pub fn head_manifest(&self, name: &str, reference: &Reference) -> Result<Option<Head>, Error> {
        Ok(match reference {
            Reference::Tag(t) => self.state.lock().index.find(name, t).map(|e| Head {
                digest: Some(e.digest.clone()),
                media_type: Some(e.media_type.clone()).filter(|m| !m.is_empty()),
            }),
            Reference::Digest(d) => self.local_len(d).map(|_| Head { digest: Some(d.clone()), media_type: None }),
        })
    }

    pub fn get_manifest(&self, name: &str, reference: &Reference) -> Result<Fetched, Error> {
        let (digest, media_type, size) = match reference {
            Reference::Tag(t) => match self.state.lock().index.find(name, t) {
                Some(e) => (e.digest.clone(), Some(e.media_type.clone()).filter(|m| !m.is_empty()), Some(e.size)),
                None => {
                    let what = if name.is_empty() { t.to_string() } else { format!("{name}:{t}") };
                    return Err(
                        self.error(format!("read {what}"), ErrorKind::Missing("no such tag in this layout".into()))
                    );
                }
            },
            Reference::Digest(d) => (d.clone(), None, None),
        };
        let bytes = self.read_manifest(&digest, size)?;
        let media_type = media_type.or_else(|| {
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v.get("mediaType").and_then(Value::as_str).map(String::from)
        });
        Ok(Fetched { bytes, media_type, digest })
    }

    fn check_writable(&self, what: &str) -> Result<(), Error> {
        if self.writable {
            Ok(())
        } else {
            Err(self.error(what, ErrorKind::Layout("this layout is only read in this run".into())))
        }
    }

    /// Store a manifest; a tag (or the image's own digest, `top`) gets an `index.json` entry,
    /// as does a manifest with a `subject` (a referrer is reachable only from there).
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
        top: bool,
    ) -> Result<(), Error> {
        let digest = Digest::of(bytes);
        let what = format!("store manifest {}", rel(&digest));
        self.check_writable(&what)?;
        if self.local_len(&digest) != Some(bytes.len() as u64) {
            self.write_file(&digest, &mut &bytes[..])?;
        }
        let doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
        let subject = doc.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str);
        let subject = subject.and_then(|s| Digest::parse(s).ok());
        let size = bytes.len() as u64;
        let entry = match reference {
            Reference::Tag(t) => Some(Entry::new(name, Some(t), &digest, size, media_type, &doc)),
            Reference::Digest(_) if top => Some(Entry::new(name, None, &digest, size, media_type, &doc)),
            Reference::Digest(_) if subject.is_some() => Some(Entry::new("", None, &digest, size, media_type, &doc)),
            Reference::Digest(_) => None,
        };
        let mut state = self.state.lock();
        if let (Some(s), Some(subjects)) = (&subject, state.subjects.as_mut()) {
            let list = subjects.entry(s.clone()).or_default();
            if !list.iter().any(|d| d["digest"] == digest.as_str()) {
                list.push(referrer_descriptor(&doc, &digest, size, media_type));
            }
        }
        if let Some(e) = entry {
            if state.index.put(e) {
                state.dirty = true;
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        drop(state);
        self.save_index(false)
    }

    /// Remove the entry of a tag, or every entry of a digest (`--prune`); blobs stay.
    pub fn delete_manifest(&self, name: &str, reference: &Reference) -> Result<bool, Error> {
        self.check_writable("delete")?;
        let mut state = self.state.lock();
        let before = state.index.entries.len();
        match reference {
            Reference::Tag(t) => state.index.entries.retain(|e| !e.is(name, t)),
            Reference::Digest(d) => state.index.entries.retain(|e| e.digest != *d),
        }
        let removed = state.index.entries.len() != before;
        state.dirty |= removed;
        drop(state);
        self.save_index(false)?;
        Ok(removed)
    }

    pub fn list_tags(&self, name: &str) -> Vec<String> {
        self.state.lock().index.tags(name)
    }

    /// The image names in the layout. Tagged entries without a name (skopeo's `oci:DIR:tag`)
    /// cannot be placed below a prefix: they are named in a rule of their own.
    pub fn list_catalog(&self) -> Vec<String> {
        let state = self.state.lock();
        let unnamed: Vec<&str> =
            state.index.entries.iter().filter(|e| e.name.is_none()).filter_map(|e| e.tag.as_deref()).collect();
        if !unnamed.is_empty() && !self.unnamed_warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{}: tag(s) {} carry no image name (io.containerd.image.name) and are left out; copy them with a rule \
                 of their own: `{}:TAG: registry/repository`",
                self.location,
                unnamed.join(", "),
                self.location
            );
        }
        state.index.names()
    }

    /// What refers to `subject` among the stored manifests.
    pub fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<ReferrersAnswer, Error> {
        let mut state = self.state.lock();
        if state.subjects.is_none() {
            let mut subjects: HashMap<Digest, Vec<Value>> = HashMap::new();
            let untagged: Vec<Entry> = state.index.entries.iter().filter(|e| e.tag.is_none()).cloned().collect();
            for e in untagged {
                let Ok(bytes) = self.read_manifest(&e.digest, Some(e.size)) else { continue };
                let doc: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let s = doc.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str);
                if let Some(s) = s.and_then(|s| Digest::parse(s).ok()) {
                    subjects.entry(s).or_default().push(referrer_descriptor(&doc, &e.digest, e.size, &e.media_type));
                }
            }
            state.subjects = Some(subjects);
        }
        let found = state.subjects.as_ref().and_then(|s| s.get(subject)).cloned().unwrap_or_default();
        let found: Vec<Value> =
            found.into_iter().filter(|d| artifact_type.is_none_or(|t| d["artifactType"] == t)).collect();
        let doc = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found });
        Ok(ReferrersAnswer::Listed(serde_json::to_vec(&doc).unwrap_or_default()))
    }

    /// Whether the blob is here — or, for a bundle written with `--base`, in the base (then it
    /// is left out, and recorded so).
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        if let Some(len) = self.local_len(digest) {
            return Some(len);
        }
        let size = *self.base.as_ref()?.blobs.get(digest)?;
        self.left_out.lock().insert(digest.clone(), size);
        Some(size)
    }

    /// A checked read of a stored blob.
    pub fn get_blob<'a>(
        &'a self,
        repo: &'a str,
        digest: &'a Digest,
        size: Option<u64>,
    ) -> Result<BlobSource<'a>, Error> {
        let what = self.what(repo, digest);
        let Some(len) = self.local_len(digest) else { return Err(self.absent(what, digest)) };
        if let Some(s) = size.filter(|s| *s != len) {
            let m = format!("the file is damaged: it has {len} bytes where the manifest says {s}");
            return Err(self.error(what, ErrorKind::Layout(m)));
        }
        let reader = self
            .open_local(digest, 0)
            .map_err(|e| self.error(what.clone(), ErrorKind::Layout(format!("cannot read it: {e}"))))?;
        Ok(BlobSource::new(self, repo, digest, Some(len), reader, None))
    }

    /// Store a blob streamed from `source` (which checks it as it goes).
    pub fn write_blob(&self, digest: &Digest, source: &mut BlobSource) -> Result<u64, Error> {
        self.check_writable("store blob")?;
        if self.local_len(digest).is_some() {
            return Ok(0);
        }
        self.write_file(digest, source)
    }

    /// Write `data` as the blob `digest`: a temporary file, synced, renamed into place.
    fn write_file(&self, digest: &Digest, data: &mut dyn Read) -> Result<u64, Error> {
        let dir = self.dir.as_ref().expect("a written layout has a directory");
        let what = format!("write {}", rel(digest));
        let tmp = dir.join("blobs").join("sha256").join(format!(
            ".{}.{}-{}.tmp",
            digest.hex(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
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
                    ErrorKind::Connection(m) if e.registry == self.location => {
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
        let mut state = self.state.lock();
        if !state.dirty || (!now && state.written.is_some_and(|w| w.elapsed() < INDEX_EVERY)) {
            return Ok(());
        }
        let dir = self.dir.as_ref().expect("a written layout has a directory");
        let fail = |e: io::Error| self.error("write index.json", ErrorKind::Layout(format!("cannot write: {e}")));
        let left_out = self.left_out.lock().clone();
        if let (Some(base), false) = (&self.base, left_out.is_empty()) {
            let record = Record {
                base: base.label.clone(),
                blobs: left_out.into_iter().map(|(digest, size)| Left { digest, size }).collect(),
            };
            replace(&dir.join(RECORD), &serde_json::to_vec_pretty(&record).unwrap_or_default()).map_err(fail)?;
        }
        replace(&dir.join("index.json"), &state.index.to_bytes()).map_err(fail)?;
        state.dirty = false;
        state.written = Some(Instant::now());
        Ok(())
    }

    /// The end of the run: `index.json` written, a destination archive made from its staging
    /// directory (unless the run was `interrupted`: a re-run goes on from it). Returns a note
    /// for the summary line.
    pub fn finish(&self, interrupted: bool) -> Result<Option<String>, String> {
        if !self.writable {
            return Ok(None);
        }
        self.state.lock().dirty |= !self.left_out.lock().is_empty() && self.base.is_some();
        self.save_index(true).map_err(|e| e.to_string())?;
        if let (Some(out), Some(staged)) = (&self.output, &self.dir) {
            if interrupted {
                log::warn!(
                    "{}: the run was interrupted; what it copied is kept in {} and a re-run finishes the archive",
                    self.location,
                    staged.display()
                );
            } else if !self.changed.load(Ordering::Relaxed) && out.exists() {
                std::fs::remove_dir_all(staged).map_err(|e| format!("{}: {e}", staged.display()))?;
            } else {
                let mut files =
                    vec![(LAYOUT_FILE, LAYOUT_VERSION.to_vec()), ("index.json", self.state.lock().index.to_bytes())];
                if let Ok(record) = std::fs::read(staged.join(RECORD)) {
                    files.push((RECORD, record));
                }
                archive::write(out, &files, self.tar.as_ref(), staged)
                    .map_err(|e| format!("{}: cannot write the archive: {e}", self.location))?;
                std::fs::remove_dir_all(staged).map_err(|e| format!("{}: {e}", staged.display()))?;
                log::info!("{}: archive written", self.location);
            }
        }
        let left = self.left_out.lock();
        if self.base.is_none() || left.is_empty() {
            return Ok(None);
        }
        let bytes: u64 = left.values().sum();
        Ok(Some(format!(
            "{}: {} blob(s) ({:.1} MiB) left out: the base bundle holds them",
            self.location,
            left.len(),
            bytes as f64 / (1024.0 * 1024.0)
        )))
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
fn referrer_descriptor(doc: &Value, digest: &Digest, size: u64, media_type: &str) -> Value {
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
fn prepare_dir(dir: &Path, staging: bool) -> Result<(), String> {
    let shown = dir.display();
    if dir.exists() && !dir.join(LAYOUT_FILE).exists() {
        let mut listing = std::fs::read_dir(dir).map_err(|e| format!("cannot open {shown}: {e}"))?;
        if listing.next().is_some() && !staging {
            return Err(format!(
                "{shown} is not empty and not an OCI layout (no {LAYOUT_FILE}): refusing to write into it"
            ));
        }
    }
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).map_err(|e| format!("cannot create {shown}: {e}"))?;
    if !dir.join(LAYOUT_FILE).exists() {
        replace(&dir.join(LAYOUT_FILE), LAYOUT_VERSION).map_err(|e| format!("cannot write in {shown}: {e}"))?;
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
