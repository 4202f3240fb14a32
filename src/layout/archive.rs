//! `oci-archive:FILE.tar`: a layout as one tar file.
//!
//! Reading never unpacks: the tar's headers are scanned once (seeking past the data) and each
//! member is read in place, at its offset. Writing stages the layout as a directory next to the
//! archive (`FILE.tar.partial`, where an interrupted run resumes), then streams it into
//! `FILE.tar.tmp`, synced and renamed over `FILE.tar`: the archive under its final name is
//! always whole. Nothing staged is deleted here: the caller removes the staging directory once
//! the new archive is in place, so a write that fails half-way (a full disk, a kill) loses
//! nothing — at the price of room for the staged files, the old archive and the new one at once.
//! The bytes may be parts of a split archive instead of one file ([`parts`]).
//!
//! A tar may hold what no layout does: members outside it (`../x`, `/etc/x`), links pointing
//! out of it, a blob that is a link. Nothing is ever unpacked, but such an archive is damaged or
//! hostile, and is refused when scanned, naming the member, before anything of it is read.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::parts::{Output, Source};

/// The members of a tar: path (without `./`) → (data offset, size).
#[derive(Debug)]
pub struct Members {
    source: Source,
    pub members: HashMap<String, (u64, u64)>,
}

/// Why an archive cannot be read as a layout.
#[derive(Debug)]
pub enum ScanError {
    /// Not a readable tar.
    Unreadable(io::Error),
    /// A member no layout may have.
    Member { path: String, fault: Fault },
}

/// What is wrong with a member.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    /// An absolute path, or one that climbs out with `..`.
    Outside,
    /// A symbolic (`true`) or hard link whose target is outside the layout.
    LinksOutside(bool, String),
    /// A symbolic link where the layout has a file it reads (a blob, `index.json`, `oci-layout`).
    LinkedFile(String),
    /// A hard link to a member the archive does not have before it.
    DanglingLink(String),
    /// A device, FIFO or other special file where the layout has a file it reads.
    Special,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A damaged or missing part of a split archive is named as such.
            ScanError::Unreadable(e) => f.write_str(&super::parts::unreadable(e)),
            ScanError::Member { path, fault } => {
                write!(f, "member {path:?} ")?;
                match fault {
                    Fault::Outside => f.write_str("lies outside the layout (an absolute path or `..`)"),
                    Fault::LinksOutside(symbolic, t) => {
                        let kind = if *symbolic { "symbolic" } else { "hard" };
                        write!(f, "is a {kind} link pointing out of the layout (to {t:?})")
                    }
                    Fault::LinkedFile(t) => {
                        write!(f, "is a symbolic link (to {t:?}): a layout's blobs and index are regular files")
                    }
                    Fault::DanglingLink(t) => write!(f, "is a hard link to {t:?}, which the archive does not hold"),
                    Fault::Special => f.write_str("is a special file (a device or FIFO), not a regular file"),
                }
            }
        }
    }
}

impl std::error::Error for ScanError {}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> ScanError {
        ScanError::Unreadable(e)
    }
}

/// `path` inside the layout, normalised (`./a//b` → `a/b`); `None` when it is absolute or climbs
/// out of it with `..` (a `..` that stays inside, `a/../b`, is refused too: no layout needs one).
fn inside(path: &[u8]) -> Option<String> {
    let path = String::from_utf8_lossy(path);
    if path.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

/// Where the symbolic link target `target`, found in the directory `dir`, leads inside the
/// layout; `None` when it is absolute or climbs out of it.
fn resolve(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut at: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            p => at.push(p),
        }
    }
    Some(at.join("/"))
}

/// The tar headers that carry another member's metadata (pax, GNU long names), not a member.
fn is_metadata(kind: tar::EntryType) -> bool {
    matches!(
        kind,
        tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
    )
}

/// Whether the layout reads the member at `path` as a file — a blob, `oci-layout`, or a JSON
/// file at its root (`index.json`, a delta bundle's record): a symbolic link there is refused.
fn read_as_file(path: &str) -> bool {
    path.starts_with("blobs/") || path == "oci-layout" || (!path.contains('/') && path.ends_with(".json"))
}

impl Members {
    /// Scan the tar `file` (or the parts of a split `file`): every regular member's place, hard
    /// links as their targets; a member outside the layout, a link pointing out of it, or a link
    /// or special file where a blob or the index should be, is an error naming it.
    pub fn scan(file: &Path) -> Result<Members, ScanError> {
        let source = Source::open(file)?;
        let members = Members::read(&source).map_err(|e| match e {
            ScanError::Unreadable(e) => ScanError::Unreadable(source.explain(e)),
            member => member,
        })?;
        Ok(Members { source, members })
    }

    /// The members of the tar, read from its headers.
    fn read(source: &Source) -> Result<HashMap<String, (u64, u64)>, ScanError> {
        let mut archive = tar::Archive::new(source.reader()?);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            let raw = entry.path_bytes();
            let shown = String::from_utf8_lossy(&raw).to_string();
            let fail = |fault| ScanError::Member { path: shown.clone(), fault };
            let Some(path) = inside(&raw) else { return Err(fail(Fault::Outside)) };
            let kind = entry.header().entry_type();
            let target =
                || entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).to_string()).unwrap_or_default();
            if kind.is_file() {
                members.insert(path, (entry.raw_file_position(), entry.size()));
            } else if kind.is_hard_link() {
                // A hard link's target is a member path, from the archive's root.
                let t = target();
                let Some(to) = inside(t.as_bytes()) else { return Err(fail(Fault::LinksOutside(false, t))) };
                let Some(&at) = members.get(&to) else { return Err(fail(Fault::DanglingLink(t))) };
                members.insert(path, at);
            } else if kind.is_symlink() {
                // A symbolic link's target is relative to the link's own directory.
                let t = target();
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                if resolve(dir, &t).is_none() {
                    return Err(fail(Fault::LinksOutside(true, t)));
                }
                if read_as_file(&path) {
                    return Err(fail(Fault::LinkedFile(t)));
                }
            } else if !kind.is_dir() && read_as_file(&path) && !is_metadata(kind) {
                return Err(fail(Fault::Special));
            }
        }
        Ok(members)
    }

    pub fn size(&self, path: &str) -> Option<u64> {
        self.members.get(path).map(|m| m.1)
    }

    /// A member's bytes from `offset` on.
    pub fn open(&self, path: &str, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let (start, size) = *self.members.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let from = offset.min(size);
        self.source.range(start + from, size - from)
    }

    /// The blob members (`blobs/sha256/<hex>`) and their sizes.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.members.iter().filter(|(p, _)| p.starts_with("blobs/")).map(|(p, m)| (p.as_str(), m.1))
    }
}

/// Write the archive `out` from the small files (`name`, bytes), the members of `previous`
/// (the archive being replaced) and the blob files staged under `staged` (left in place); as one
/// file, or as parts of at most `part_size` bytes. Never leaves anything under `out` but a whole
/// archive, and returns once its rename is on disk.
pub fn write(
    out: &Path,
    part_size: Option<u64>,
    files: &[(&str, Vec<u8>)],
    previous: Option<&Members>,
    staged: &Path,
) -> io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 * 1024, Output::create(out, part_size)?));
    for (name, bytes) in files {
        append(&mut tar, name, bytes.len() as u64, &mut bytes.as_slice())?;
    }
    let mut done: std::collections::HashSet<String> = files.iter().map(|(name, _)| name.to_string()).collect();
    // `blobs/<algorithm>/<hex>`: sha256, and sha512 where a run stored such blobs.
    for algorithm in std::fs::read_dir(staged.join("blobs")).into_iter().flatten() {
        let algorithm = algorithm?;
        let alg = algorithm.file_name().to_string_lossy().to_string();
        let Ok(dir) = std::fs::read_dir(algorithm.path()) else { continue };
        for f in dir {
            let f = f?;
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue; // an unfinished temporary file
            }
            let path = format!("blobs/{alg}/{name}");
            let mut file = File::open(f.path())?;
            let len = file.metadata()?.len();
            append(&mut tar, &path, len, &mut file)?;
            done.insert(path);
        }
    }
    // Everything else the previous archive held — its blobs, and files we know nothing of —
    // is carried over as it was.
    if let Some(prev) = previous {
        let mut kept: Vec<(&String, &(u64, u64))> = prev.members.iter().collect();
        kept.sort();
        for (path, &(_, size)) in kept {
            if done.insert(path.to_string()) {
                append(&mut tar, path, size, &mut prev.open(path, 0)?)?;
            }
        }
    }
    let mut w = tar.into_inner()?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.commit()
}

fn append(tar: &mut tar::Builder<impl Write>, path: &str, size: u64, data: &mut impl Read) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn written_archive_reads_back_in_place() {
        let dir = std::env::temp_dir().join(format!("is-archive-test-{}", std::process::id()));
        let staged = dir.join("staged");
        std::fs::create_dir_all(staged.join("blobs/sha256")).unwrap();
        std::fs::write(staged.join("blobs/sha256/abc"), b"hello blob").unwrap();
        std::fs::write(staged.join("blobs/sha256/.abc.tmp"), b"half").unwrap();
        let out = dir.join("a.tar");
        write(&out, None, &[("index.json", b"{}".to_vec())], None, &staged).unwrap();
        let m = Members::scan(&out).unwrap();
        assert_eq!(m.size("blobs/sha256/abc"), Some(10));
        assert!(m.size("blobs/sha256/.abc.tmp").is_none());
        let mut s = String::new();
        m.open("blobs/sha256/abc", 6).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "blob");
        assert!(staged.join("blobs/sha256/abc").exists(), "staged blobs stay until the caller removes them");
        // Replacing it keeps the previous members.
        let out2 = dir.join("b.tar");
        write(&out2, None, &[("index.json", b"{}".to_vec())], Some(&m), &staged).unwrap();
        assert_eq!(Members::scan(&out2).unwrap().size("blobs/sha256/abc"), Some(10));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tar of `(name, type, link target, data)` members, names written raw (the tar crate's
    /// own path setters refuse `..` and absolute paths).
    fn crafted(name: &str, members: &[(&str, tar::EntryType, &str, &[u8])]) -> PathBuf {
        let file = std::env::temp_dir().join(format!("is-scan-{}-{name}.tar", std::process::id()));
        let mut tar = tar::Builder::new(File::create(&file).unwrap());
        for (path, kind, target, data) in members {
            let mut h = tar::Header::new_ustar();
            let raw = &mut h.as_ustar_mut().unwrap().name;
            raw[..path.len()].copy_from_slice(path.as_bytes());
            let link = &mut h.as_ustar_mut().unwrap().linkname;
            link[..target.len()].copy_from_slice(target.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        tar.finish().unwrap();
        file
    }

    #[test]
    fn members_outside_the_layout_and_links_are_named() {
        use tar::EntryType::{Link, Regular, Symlink};
        let fault = |name: &str, members: &[(&str, tar::EntryType, &str, &[u8])]| {
            let file = crafted(name, members);
            let r = Members::scan(&file);
            let _ = std::fs::remove_file(&file);
            match r {
                Err(ScanError::Member { path, fault }) => Some((path, fault)),
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => None,
            }
        };
        let index: (&str, tar::EntryType, &str, &[u8]) = ("index.json", Regular, "", b"{}");
        assert_eq!(fault("dotdot", &[index, ("../x", Regular, "", b"x")]), Some(("../x".into(), Fault::Outside)));
        assert_eq!(fault("abs", &[("/etc/x", Regular, "", b"x"), index]), Some(("/etc/x".into(), Fault::Outside)));
        assert_eq!(
            fault("inner-dotdot", &[("blobs/../../x", Regular, "", b"x")]),
            Some(("blobs/../../x".into(), Fault::Outside))
        );
        let blob = "blobs/sha256/aa";
        assert_eq!(
            fault("symblob", &[index, (blob, Symlink, "../../index.json", b"")]),
            Some((blob.into(), Fault::LinkedFile("../../index.json".into())))
        );
        assert_eq!(
            fault("symout", &[index, ("docs/x", Symlink, "../../etc/passwd", b"")]),
            Some(("docs/x".into(), Fault::LinksOutside(true, "../../etc/passwd".into())))
        );
        assert_eq!(
            fault("symabs", &[index, ("docs/x", Symlink, "/etc/passwd", b"")]),
            Some(("docs/x".into(), Fault::LinksOutside(true, "/etc/passwd".into())))
        );
        assert_eq!(
            fault("hardout", &[index, (blob, Link, "../etc/passwd", b"")]),
            Some((blob.into(), Fault::LinksOutside(false, "../etc/passwd".into())))
        );
        assert_eq!(
            fault("hardmissing", &[index, (blob, Link, "blobs/sha256/bb", b"")]),
            Some((blob.into(), Fault::DanglingLink("blobs/sha256/bb".into())))
        );
        // What stays inside is read: `./` prefixes, a link inside pointing inside, a hard link
        // to an earlier member.
        let file = crafted(
            "fine",
            &[
                ("./index.json", Regular, "", b"{}"),
                ("blobs/sha256/bb", Regular, "", b"blob"),
                (blob, Link, "./blobs/sha256/bb", b""),
                ("docs/latest", Symlink, "../index.json", b""),
            ],
        );
        let m = Members::scan(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        assert_eq!((m.size("index.json"), m.size(blob), m.size("docs/latest")), (Some(2), Some(4), None));
    }
}
