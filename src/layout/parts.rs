//! Archives that fit the media: with `--max-archive-size SIZE`, `oci-archive:FILE.tar` is written
//! as `FILE.tar.001`, `FILE.tar.002`, … — each exactly SIZE bytes but the last — and a sidecar
//! `FILE.tar.parts.json` listing each part's name, size and sha256 (a FAT32 file holds at most
//! 4 GiB − 1 byte, a DVD 4.7 GB). The split is a plain byte split, so `cat FILE.tar.[0-9]* >
//! FILE.tar` is the archive, and any tool reads that.
//!
//! **Reading** takes `FILE.tar` when it exists, else the parts its sidecar lists, as one seekable
//! file ([`Source`]): members are read in place, at their offsets, as from one tar. A missing part
//! or one of the wrong size is found when the archive is opened (from the file sizes alone). A
//! part's sha256 is checked once, the first time a member stored (even partly) in it is read:
//! checking every part up front would read the whole archive once more before the first image,
//! even for an import of one image; the blobs' own digests would catch the damage too, but only as
//! "blob X damaged", while the sidecar's sha256 names the file to copy again. So an import of
//! everything reads each part twice, an import of a few images only the parts they need, and an
//! image whose bytes lie in a damaged part fails naming the part (the others import). A damaged tar
//! header is named the same way: when the tar cannot be read, every part is checked.
//!
//! **Writing** puts the new parts and sidecar under temporary names (`FILE.tar.new.001`, …,
//! `FILE.tar.new.parts.json`), so the parts being replaced stay readable as the old archive while
//! the new one is written from them. Once every part is synced, the temporary sidecar is the record
//! of a commit: the parts are renamed over the old ones, old parts beyond the new count and a
//! single `FILE.tar` removed, and the sidecar renamed last. No set of renames is atomic, so a run
//! stopped in between leaves that record, and the next run writing the archive finishes the commit
//! ([`settle`]) before it reads the archive. Writing a single `FILE.tar` over parts removes them
//! once `FILE.tar` is in place.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Parts are numbered with three digits (so that they sort by name): at most this many.
pub const MAX_PARTS: usize = 999;

/// A sidecar larger than this is no sidecar of ours (999 parts take about 100 KiB).
const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// `FILE.tar` + `suffix`.
fn suffixed(archive: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(archive.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// `FILE.tar.parts.json`.
pub fn sidecar(archive: &Path) -> PathBuf {
    suffixed(archive, ".parts.json")
}

/// Part `n` (from 1): `FILE.tar.001`.
fn part(archive: &Path, n: usize) -> PathBuf {
    suffixed(archive, &format!(".{n:03}"))
}

/// Part `n` being written: `FILE.tar.new.001`.
fn new_part(archive: &Path, n: usize) -> PathBuf {
    suffixed(archive, &format!(".new.{n:03}"))
}

/// The sidecar of parts all written and synced, not yet renamed into place.
fn journal(archive: &Path) -> PathBuf {
    suffixed(archive, ".new.parts.json")
}

fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

/// What is wrong with a split archive; each names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartError {
    Sidecar { sidecar: PathBuf, problem: String },
    Missing { part: PathBuf, sidecar: PathBuf },
    Size { part: PathBuf, listed: u64, actual: u64 },
    Damaged { part: PathBuf, listed: String, actual: String },
    Unreadable { part: PathBuf, message: String },
    TooMany { part_size: u64 },
}

impl fmt::Display for PartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartError::Sidecar { sidecar, problem } => write!(f, "{}: {problem}", sidecar.display()),
            PartError::Missing { part, sidecar } => {
                write!(f, "part {} is missing ({} lists it)", part.display(), file_name(sidecar))
            }
            PartError::Size { part, listed, actual } => write!(
                f,
                "part {} is damaged: {actual} bytes where the sidecar says {listed} (copy it again)",
                part.display()
            ),
            PartError::Damaged { part, listed, actual } => write!(
                f,
                "part {} is damaged: sha256 {actual} where the sidecar says {listed} (copy it again)",
                part.display()
            ),
            PartError::Unreadable { part, message } => write!(f, "part {}: cannot read it: {message}", part.display()),
            PartError::TooMany { part_size } => write!(
                f,
                "the archive needs more than {MAX_PARTS} parts of {part_size} bytes: use a larger --max-archive-size"
            ),
        }
    }
}

impl std::error::Error for PartError {}

impl From<PartError> for io::Error {
    fn from(e: PartError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The text for an archive that cannot be opened: a part at fault says so itself.
pub fn unreadable(e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<PartError>()) {
        Some(part) => part.to_string(),
        None => format!("not a readable tar archive: {e}"),
    }
}

/// The sidecar: what the parts, concatenated in order, make.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct Sidecar {
    /// The archive's file name.
    archive: String,
    size: u64,
    max_part_size: u64,
    parts: Vec<Listed>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Listed {
    /// A file name in the sidecar's directory.
    name: String,
    size: u64,
    /// 64 lowercase hex digits, as `sha256sum` prints them.
    sha256: String,
}

impl Sidecar {
    fn read(path: &Path) -> Result<Sidecar, PartError> {
        let bad = |problem: String| PartError::Sidecar { sidecar: path.to_path_buf(), problem };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_SIDECAR_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > MAX_SIDECAR_BYTES {
            return Err(bad(format!("larger than {MAX_SIDECAR_BYTES} bytes: not a parts list")));
        }
        let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a parts list: {e}")))?;
        if sidecar.parts.is_empty() || sidecar.parts.len() > MAX_PARTS {
            return Err(bad(format!("{} parts listed: 1 to {MAX_PARTS} expected", sidecar.parts.len())));
        }
        let mut total: u64 = 0;
        for p in &sidecar.parts {
            // Only files beside the sidecar: a sidecar never points elsewhere on the disk.
            let plain = !p.name.is_empty()
                && p.name != "."
                && p.name != ".."
                && !p.name.contains(['/', '\\', '\0'])
                && !p.name.starts_with('.');
            if !plain {
                return Err(bad(format!("part name {:?} is not a file name beside the sidecar", p.name)));
            }
            if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad(format!("part {}: sha256 {:?} is not 64 lowercase hex digits", p.name, p.sha256)));
            }
            total = total.checked_add(p.size).ok_or_else(|| bad("part sizes overflow".into()))?;
        }
        if total != sidecar.size {
            return Err(bad(format!("the parts add up to {total} bytes, not the {} it says", sidecar.size)));
        }
        Ok(sidecar)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).unwrap_or_default();
        b.push(b'\n');
        b
    }
}

/// One part of a split archive being read.
#[derive(Debug)]
struct Part {
    path: PathBuf,
    /// Where it starts in the archive.
    start: u64,
    size: u64,
    sha256: String,
    /// Its sha256, checked once on first use.
    checked: OnceLock<Result<(), PartError>>,
}

impl Part {
    fn check(&self) -> Result<(), PartError> {
        self.checked.get_or_init(|| self.hash()).clone()
    }

    fn hash(&self) -> Result<(), PartError> {
        let unreadable = |e: io::Error| PartError::Unreadable { part: self.path.clone(), message: e.to_string() };
        let mut f = File::open(&self.path).map_err(unreadable)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(e)),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        if len != self.size {
            return Err(PartError::Size { part: self.path.clone(), listed: self.size, actual: len });
        }
        let actual = hex(&hasher.finalize());
        if actual != self.sha256 {
            return Err(PartError::Damaged { part: self.path.clone(), listed: self.sha256.clone(), actual });
        }
        log::info!("{}: sha256 checked", self.path.display());
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of a split archive, as one file.
#[derive(Debug)]
pub struct Split {
    parts: Vec<Part>,
    size: u64,
}

impl Split {
    /// Read the sidecar of `archive` and check that every part it lists is there with its size.
    fn open(archive: &Path) -> Result<Split, PartError> {
        let sidecar_path = sidecar(archive);
        let listed = Sidecar::read(&sidecar_path)?;
        if journal(archive).exists() {
            log::warn!(
                "{}: a rewrite of this archive's parts was stopped before it finished; the next run writing the \
                 archive completes it",
                archive.display()
            );
        }
        let dir = dir_of(&sidecar_path);
        let mut parts = Vec::with_capacity(listed.parts.len());
        let mut start = 0;
        for l in listed.parts {
            let path = dir.join(&l.name);
            match fs::metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(PartError::Missing { part: path, sidecar: sidecar_path })
                }
                Err(e) => return Err(PartError::Unreadable { part: path, message: e.to_string() }),
                Ok(m) if m.len() != l.size => {
                    return Err(PartError::Size { part: path, listed: l.size, actual: m.len() })
                }
                Ok(_) => {}
            }
            parts.push(Part { path, start, size: l.size, sha256: l.sha256, checked: OnceLock::new() });
            start += l.size;
        }
        Ok(Split { parts, size: listed.size })
    }

    /// The index of the part holding byte `pos` (`pos` < size).
    fn part_at(&self, pos: u64) -> usize {
        self.parts.partition_point(|p| p.start + p.size <= pos)
    }

    /// Check the sha256 of every part holding a byte of `start..start + len`.
    fn check(&self, start: u64, len: u64) -> Result<(), PartError> {
        if len == 0 {
            return Ok(());
        }
        let end = start.saturating_add(len).min(self.size);
        let first = self.part_at(start);
        self.parts[first..].iter().take_while(|p| p.start < end).try_for_each(Part::check)
    }
}

/// Where an archive's bytes are: `FILE.tar`, or its parts.
#[derive(Debug, Clone)]
pub enum Source {
    Single(PathBuf),
    Split(Arc<Split>),
}

/// The archive `archive` exists: as one file, or as a sidecar (whose parts may be missing).
pub fn exists(archive: &Path) -> bool {
    archive.exists() || sidecar(archive).exists()
}

impl Source {
    /// `archive` itself when it exists, else its parts (each there with its listed size).
    pub fn open(archive: &Path) -> io::Result<Source> {
        if archive.exists() || !sidecar(archive).exists() {
            File::open(archive)?;
            return Ok(Source::Single(archive.to_path_buf()));
        }
        Ok(Source::Split(Arc::new(Split::open(archive)?)))
    }

    /// The whole archive, unchecked (its tar headers are checked as they are read).
    pub fn reader(&self) -> io::Result<Reader> {
        match self {
            Source::Single(path) => Ok(Reader::Single(File::open(path)?)),
            Source::Split(split) => Ok(Reader::Split(SplitReader { split: split.clone(), pos: 0, open: None })),
        }
    }

    /// The bytes `start..start + len`, once the parts holding them are checked.
    pub fn range(&self, start: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        if let Source::Split(split) = self {
            split.check(start, len)?;
        }
        let mut r = self.reader()?;
        r.seek(SeekFrom::Start(start))?;
        Ok(Box::new(r.take(len)))
    }

    /// An error reading the archive as a tar, explained by a damaged part if there is one.
    pub fn explain(&self, e: io::Error) -> io::Error {
        match self {
            Source::Split(split) => match split.parts.iter().try_for_each(Part::check) {
                Err(part) => part.into(),
                Ok(()) => e,
            },
            Source::Single(_) => e,
        }
    }
}

/// An archive's bytes, read and seeked as one file.
pub enum Reader {
    Single(File),
    Split(SplitReader),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Single(f) => f.read(buf),
            Reader::Split(s) => s.read(buf),
        }
    }
}

impl Seek for Reader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Reader::Single(f) => f.seek(to),
            Reader::Split(s) => s.seek(to),
        }
    }
}

pub struct SplitReader {
    split: Arc<Split>,
    pos: u64,
    /// The part open: its index, the file, and the file's position.
    open: Option<(usize, File, u64)>,
}

impl Read for SplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.split.size {
            return Ok(0);
        }
        let i = self.split.part_at(self.pos);
        let part = &self.split.parts[i];
        let within = self.pos - part.start;
        if self.open.as_ref().is_none_or(|o| o.0 != i) {
            let f = File::open(&part.path)
                .map_err(|e| PartError::Unreadable { part: part.path.clone(), message: e.to_string() })?;
            self.open = Some((i, f, 0));
        }
        let Some((_, f, at)) = self.open.as_mut() else { return Ok(0) };
        if *at != within {
            f.seek(SeekFrom::Start(within))?;
            *at = within;
        }
        let want = buf.len().min((part.size - within).min(usize::MAX as u64) as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            // Shorter than listed: changed since the archive was opened.
            let actual = f.metadata().map(|m| m.len()).unwrap_or(within);
            return Err(PartError::Size { part: part.path.clone(), listed: part.size, actual }.into());
        }
        *at += n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SplitReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.split.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the archive's start"))?;
        Ok(self.pos)
    }
}

/// Where a new archive is written until [`Output::commit`] puts it in place: `FILE.tar.tmp`, or
/// parts of at most `part_size` bytes. Dropped uncommitted, it removes what it wrote.
pub enum Output {
    Single { archive: PathBuf, tmp: PathBuf, file: File, done: bool },
    Split(SplitOutput),
}

impl Output {
    pub fn create(archive: &Path, part_size: Option<u64>) -> io::Result<Output> {
        Ok(match part_size {
            None => {
                let tmp = suffixed(archive, ".tmp");
                let file = File::create(&tmp)?;
                Output::Single { archive: archive.to_path_buf(), tmp, file, done: false }
            }
            Some(max) => Output::Split(SplitOutput {
                archive: archive.to_path_buf(),
                max: max.max(1),
                limit: MAX_PARTS,
                done: Vec::new(),
                current: None,
                prepared: false,
            }),
        })
    }

    /// Sync what was written and put it in place of the archive (one file or parts) there was.
    pub fn commit(mut self) -> io::Result<()> {
        match &mut self {
            Output::Single { archive, tmp, file, done } => {
                file.sync_all()?;
                fs::rename(&*tmp, &*archive)?;
                *done = true;
                // Parts of an archive written before are now shadowed by FILE.tar: removed.
                remove_if_there(&sidecar(archive))?;
                remove_parts_beyond(archive, 0)?;
                sync_dir(archive);
                Ok(())
            }
            Output::Split(s) => {
                s.prepare()?;
                roll_forward(&s.archive)
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Single { file, .. } => file.write(buf),
            Output::Split(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Single { file, .. } => file.flush(),
            Output::Split(s) => s.current.as_mut().map_or(Ok(()), |c| c.file.flush()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        match self {
            Output::Single { tmp, done: false, .. } => {
                let _ = fs::remove_file(tmp);
            }
            Output::Single { .. } => {}
            Output::Split(s) if !s.prepared => {
                let count = s.done.len() + usize::from(s.current.is_some());
                for n in 1..=count {
                    let _ = fs::remove_file(new_part(&s.archive, n));
                }
                let _ = fs::remove_file(suffixed(&journal(&s.archive), ".tmp"));
            }
            Output::Split(_) => {}
        }
    }
}

pub struct SplitOutput {
    archive: PathBuf,
    max: u64,
    /// At most this many parts ([`MAX_PARTS`]).
    limit: usize,
    done: Vec<Listed>,
    current: Option<Current>,
    /// Every part and the journal are written: what is left is the renames.
    prepared: bool,
}

struct Current {
    file: File,
    hasher: Sha256,
    len: u64,
}

impl SplitOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.as_ref().is_none_or(|c| c.len >= self.max) {
            self.close_part()?;
            let n = self.done.len() + 1;
            if n > self.limit {
                return Err(PartError::TooMany { part_size: self.max }.into());
            }
            let file = File::create(new_part(&self.archive, n))?;
            self.current = Some(Current { file, hasher: Sha256::new(), len: 0 });
        }
        let Some(c) = self.current.as_mut() else { return Ok(0) };
        let room = (self.max - c.len).min(buf.len() as u64) as usize;
        let n = c.file.write(&buf[..room])?;
        c.hasher.update(&buf[..n]);
        c.len += n as u64;
        Ok(n)
    }

    /// Sync the part being written and list it.
    fn close_part(&mut self) -> io::Result<()> {
        if let Some(c) = self.current.take() {
            c.file.sync_all()?;
            let name = file_name(&part(&self.archive, self.done.len() + 1));
            self.done.push(Listed { name, size: c.len, sha256: hex(&c.hasher.finalize()) });
        }
        Ok(())
    }

    /// Every part synced, and the sidecar written as the journal: from here on the commit is
    /// decided, and [`settle`] finishes it if this run does not.
    fn prepare(&mut self) -> io::Result<()> {
        self.close_part()?;
        let listed = Sidecar {
            archive: file_name(&self.archive),
            size: self.done.iter().map(|p| p.size).sum(),
            max_part_size: self.max,
            parts: self.done.clone(),
        };
        write_synced(&journal(&self.archive), &listed.bytes())?;
        self.prepared = true;
        sync_dir(&self.archive);
        Ok(())
    }
}

/// Put the parts the journal lists in place, remove what they replace, and the sidecar last.
fn roll_forward(archive: &Path) -> io::Result<()> {
    let journal = journal(archive);
    let listed = Sidecar::read(&journal)?;
    for n in 1..=listed.parts.len() {
        let new = new_part(archive, n);
        if new.exists() {
            fs::rename(&new, part(archive, n))?;
        }
    }
    remove_parts_beyond(archive, listed.parts.len())?;
    remove_if_there(archive)?;
    sync_dir(archive);
    fs::rename(&journal, sidecar(archive))?;
    sync_dir(archive);
    Ok(())
}

/// Before an archive is read to be rewritten: finish a commit of parts that was stopped (its
/// journal is there), or remove the parts of a write that never reached its commit.
pub fn settle(archive: &Path) -> io::Result<()> {
    if journal(archive).exists() {
        log::warn!("{}: finishing the rewrite of its parts that a previous run began", archive.display());
        return roll_forward(archive);
    }
    remove_if_there(&suffixed(&journal(archive), ".tmp"))?;
    let prefix = format!("{}.new.", file_name(archive));
    for name in names_in(dir_of(archive))? {
        if name.strip_prefix(&prefix).is_some_and(is_part_number) {
            remove_if_there(&dir_of(archive).join(name))?;
        }
    }
    Ok(())
}

/// The archive there is what a run writing it with `part_size` would write (one file, or a
/// sidecar of that part size): a run that added nothing need not rewrite it.
pub fn current(archive: &Path, part_size: Option<u64>) -> bool {
    match part_size {
        None => archive.exists(),
        Some(max) => {
            !archive.exists()
                && !journal(archive).exists()
                && Sidecar::read(&sidecar(archive)).is_ok_and(|s| s.max_part_size == max)
        }
    }
}

fn is_part_number(s: &str) -> bool {
    s.len() >= 3 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The names in `dir`; none when it does not exist (yet).
fn names_in(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let listing = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        listing => listing?,
    };
    for entry in listing {
        names.push(entry?.file_name().to_string_lossy().to_string());
    }
    Ok(names)
}

/// Remove `FILE.tar.NNN` numbered above `count`.
fn remove_parts_beyond(archive: &Path, count: usize) -> io::Result<()> {
    let prefix = format!("{}.", file_name(archive));
    for name in names_in(dir_of(archive))? {
        let number = name.strip_prefix(&prefix).filter(|n| is_part_number(n)).and_then(|n| n.parse::<usize>().ok());
        if number.is_some_and(|n| n > count) {
            remove_if_there(&dir_of(archive).join(name))?;
        }
    }
    Ok(())
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Write `path` whole or not at all: a synced temporary file renamed over it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = suffixed(path, ".tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Make the renames in the directory of `path` durable (best effort: not every file system
/// syncs a directory).
fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(dir_of(path)) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("is-parts-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn write_archive(archive: &Path, data: &[u8], part_size: Option<u64>) {
        let mut out = Output::create(archive, part_size).unwrap();
        // Odd-sized writes, crossing part boundaries.
        for chunk in data.chunks(37) {
            out.write_all(chunk).unwrap();
        }
        out.commit().unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v = names_in(dir).unwrap();
        v.sort();
        v
    }

    fn read_all(archive: &Path) -> Vec<u8> {
        let mut b = Vec::new();
        Source::open(archive).unwrap().reader().unwrap().read_to_end(&mut b).unwrap();
        b
    }

    fn part_error(e: io::Error) -> PartError {
        e.get_ref().and_then(|i| i.downcast_ref::<PartError>()).cloned().unwrap_or_else(|| panic!("{e}"))
    }

    #[test]
    fn parts_are_exact_and_concatenate_to_the_archive() {
        let d = Dir::new("exact");
        let archive = d.0.join("a.tar");
        let data = bytes(2500);
        write_archive(&archive, &data, Some(1000));
        assert_eq!(names(&d.0), ["a.tar.001", "a.tar.002", "a.tar.003", "a.tar.parts.json"]);
        let sizes: Vec<u64> = (1..=3).map(|n| fs::metadata(part(&archive, n)).unwrap().len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let cat: Vec<u8> = (1..=3).flat_map(|n| fs::read(part(&archive, n)).unwrap()).collect();
        assert_eq!(cat, data);
        assert_eq!(read_all(&archive), data);
        let s = Sidecar::read(&sidecar(&archive)).unwrap();
        assert_eq!((s.size, s.max_part_size, s.archive.as_str()), (2500, 1000, "a.tar"));
        assert_eq!(s.parts[1].sha256, hex(&Sha256::digest(&data[1000..2000])));

        // An exact multiple makes no empty last part.
        write_archive(&archive, &data[..2000], Some(1000));
        assert_eq!(names(&d.0), ["a.tar.001", "a.tar.002", "a.tar.parts.json"], "the old third part removed");
        assert_eq!(read_all(&archive), &data[..2000]);
    }

    #[test]
    fn ranges_read_across_parts_and_seek() {
        let d = Dir::new("range");
        let archive = d.0.join("a.tar");
        let data = bytes(2500);
        write_archive(&archive, &data, Some(1000));
        let src = Source::open(&archive).unwrap();
        for (start, len) in [(0, 2500), (990, 20), (1000, 1000), (1999, 2), (2400, 100), (5, 0)] {
            let mut got = Vec::new();
            src.range(start, len).unwrap().read_to_end(&mut got).unwrap();
            assert_eq!(got, &data[start as usize..(start + len) as usize], "{start}+{len}");
        }
        let mut r = src.reader().unwrap();
        assert_eq!(r.seek(SeekFrom::End(-10)).unwrap(), 2490);
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[2490..]);
        assert!(r.seek(SeekFrom::Current(-3000)).is_err());
    }

    #[test]
    fn a_missing_resized_or_damaged_part_is_named() {
        let d = Dir::new("faults");
        let archive = d.0.join("a.tar");
        write_archive(&archive, &bytes(2500), Some(1000));
        let p2 = part(&archive, 2);
        let good = fs::read(&p2).unwrap();

        let mut bad = good.clone();
        bad[500] ^= 0xff;
        fs::write(&p2, &bad).unwrap();
        let src = Source::open(&archive).expect("sizes are right: opens");
        assert!(src.range(0, 1000).is_ok(), "the first part is whole");
        let e = part_error(src.range(900, 200).err().unwrap());
        assert!(matches!(&e, PartError::Damaged { part, .. } if *part == p2), "{e}");
        assert!(e.to_string().contains("a.tar.002"), "{e}");
        assert!(matches!(part_error(src.explain(io::Error::other("bad header"))), PartError::Damaged { .. }));

        fs::write(&p2, &good[..999]).unwrap();
        let e = part_error(Source::open(&archive).err().unwrap());
        assert_eq!(e, PartError::Size { part: p2.clone(), listed: 1000, actual: 999 });

        fs::remove_file(&p2).unwrap();
        let e = part_error(Source::open(&archive).err().unwrap());
        assert!(matches!(&e, PartError::Missing { part, .. } if *part == p2), "{e}");
        assert!(unreadable(&e.into()).starts_with("part "), "a part error is told as it is");
    }

    #[test]
    fn a_sidecar_never_names_files_elsewhere() {
        let d = Dir::new("names");
        let archive = d.0.join("a.tar");
        write_archive(&archive, &bytes(100), Some(1000));
        let text = fs::read_to_string(sidecar(&archive)).unwrap();
        for name in ["../a.tar.001", "/etc/passwd", "..", ".hidden"] {
            fs::write(sidecar(&archive), text.replace("\"a.tar.001\"", &format!("{name:?}"))).unwrap();
            let e = part_error(Source::open(&archive).err().unwrap());
            assert!(matches!(e, PartError::Sidecar { .. }), "{name}: {e}");
        }
    }

    #[test]
    fn a_stopped_commit_is_finished_and_an_unprepared_write_removed() {
        let d = Dir::new("commit");
        let archive = d.0.join("a.tar");
        write_archive(&archive, &bytes(3500), Some(1000));
        // A new, shorter archive whose commit stops after its first rename.
        let new = bytes(1500).into_iter().rev().collect::<Vec<u8>>();
        let mut out = Output::create(&archive, Some(1000)).unwrap();
        out.write_all(&new).unwrap();
        let Output::Split(s) = &mut out else { unreachable!() };
        s.prepare().unwrap();
        fs::rename(new_part(&archive, 1), part(&archive, 1)).unwrap();
        drop(out);
        assert!(Source::open(&archive).and_then(|s| s.range(0, 1500)).is_err(), "old sidecar, new part");
        assert!(!current(&archive, Some(1000)), "a stopped commit is no current archive");
        settle(&archive).unwrap();
        assert_eq!(names(&d.0), ["a.tar.001", "a.tar.002", "a.tar.parts.json"]);
        assert_eq!(read_all(&archive), new);
        assert!(current(&archive, Some(1000)) && !current(&archive, Some(999)) && !current(&archive, None));

        // A write dropped before its commit leaves nothing; nor do strays of an earlier one.
        let mut out = Output::create(&archive, Some(1000)).unwrap();
        out.write_all(&bytes(2100)).unwrap();
        drop(out);
        fs::write(new_part(&archive, 7), b"stray").unwrap();
        settle(&archive).unwrap();
        assert_eq!(names(&d.0), ["a.tar.001", "a.tar.002", "a.tar.parts.json"]);
        assert_eq!(read_all(&archive), new);
    }

    #[test]
    fn one_form_replaces_the_other() {
        let d = Dir::new("forms");
        let archive = d.0.join("a.tar");
        write_archive(&archive, &bytes(100), None);
        assert!(current(&archive, None) && !current(&archive, Some(40)));
        write_archive(&archive, &bytes(100), Some(40));
        assert_eq!(names(&d.0), ["a.tar.001", "a.tar.002", "a.tar.003", "a.tar.parts.json"], "FILE.tar removed");
        write_archive(&archive, &bytes(90), None);
        assert_eq!(names(&d.0), ["a.tar"], "the parts removed");
        assert_eq!(read_all(&archive), bytes(90));
    }

    #[test]
    fn too_many_parts_is_an_error_and_leaves_nothing() {
        let d = Dir::new("many");
        let archive = d.0.join("a.tar");
        let mut out = Output::create(&archive, Some(10)).unwrap();
        let Output::Split(s) = &mut out else { unreachable!() };
        s.limit = 3;
        out.write_all(&bytes(30)).unwrap();
        let e = out.write_all(&bytes(1)).unwrap_err();
        assert!(matches!(part_error(e), PartError::TooMany { part_size: 10 }));
        drop(out);
        assert!(names(&d.0).is_empty());
    }

    #[test]
    fn an_archive_in_a_directory_not_made_yet_settles() {
        let d = Dir::new("unborn");
        let archive = d.0.join("not/yet/a.tar");
        settle(&archive).unwrap();
        assert!(!exists(&archive) && !current(&archive, Some(10)));
    }
}
