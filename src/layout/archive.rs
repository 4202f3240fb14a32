//! `oci-archive:FILE.tar`: a layout as one tar file.
//!
//! Reading never unpacks: the tar's headers are scanned once (seeking past the data) and each
//! member is read in place, at its offset. Writing stages the layout as a directory next to the
//! archive (`FILE.tar.partial`, where an interrupted run resumes), then streams it into
//! `FILE.tar.tmp`, synced and renamed over `FILE.tar`: the archive under its final name is
//! always whole. Nothing staged is deleted here: the caller removes the staging directory once
//! the new archive is in place, so a write that fails half-way (a full disk, a kill) loses
//! nothing — at the price of room for the staged files, the old archive and the new one at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The members of a tar: path (without `./`) → (data offset, size).
#[derive(Debug, Default)]
pub struct Members {
    pub file: PathBuf,
    pub members: HashMap<String, (u64, u64)>,
}

impl Members {
    pub fn scan(file: &Path) -> io::Result<Members> {
        let mut archive = tar::Archive::new(File::open(file)?);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
            members.insert(path, (entry.raw_file_position(), entry.size()));
        }
        Ok(Members { file: file.to_path_buf(), members })
    }

    pub fn size(&self, path: &str) -> Option<u64> {
        self.members.get(path).map(|m| m.1)
    }

    /// A member's bytes from `offset` on.
    pub fn open(&self, path: &str, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let (start, size) = *self.members.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let mut f = File::open(&self.file)?;
        f.seek(SeekFrom::Start(start + offset.min(size)))?;
        Ok(Box::new(f.take(size.saturating_sub(offset))))
    }

    /// The blob members (`blobs/sha256/<hex>`) and their sizes.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.members.iter().filter(|(p, _)| p.starts_with("blobs/")).map(|(p, m)| (p.as_str(), m.1))
    }
}

/// Write the archive `out` from the small files (`name`, bytes), the members of `previous`
/// (the archive being replaced) and the blob files staged under `staged` (left in place).
/// Never leaves anything under `out` but a whole archive, and returns once its rename is on
/// disk.
pub fn write(out: &Path, files: &[(&str, Vec<u8>)], previous: Option<&Members>, staged: &Path) -> io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", out.display()));
    let result = (|| {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(256 * 1024, File::create(&tmp)?));
        for (name, bytes) in files {
            append(&mut tar, name, bytes.len() as u64, &mut bytes.as_slice())?;
        }
        let mut done = std::collections::HashSet::new();
        let blob_dir = staged.join("blobs").join("sha256");
        if let Ok(dir) = std::fs::read_dir(&blob_dir) {
            for f in dir {
                let f = f?;
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue; // an unfinished temporary file
                }
                let path = format!("blobs/sha256/{name}");
                let mut file = File::open(f.path())?;
                let len = file.metadata()?.len();
                append(&mut tar, &path, len, &mut file)?;
                done.insert(path);
            }
        }
        if let Some(prev) = previous {
            for (path, size) in prev.blobs() {
                if done.insert(path.to_string()) {
                    append(&mut tar, path, size, &mut prev.open(path, 0)?)?;
                }
            }
        }
        let mut w = tar.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, out)?;
            // The rename itself made durable before the caller deletes what the old name lacked.
            match out.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
                _ => Ok(()),
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
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

    #[test]
    fn written_archive_reads_back_in_place() {
        let dir = std::env::temp_dir().join(format!("is-archive-test-{}", std::process::id()));
        let staged = dir.join("staged");
        std::fs::create_dir_all(staged.join("blobs/sha256")).unwrap();
        std::fs::write(staged.join("blobs/sha256/abc"), b"hello blob").unwrap();
        std::fs::write(staged.join("blobs/sha256/.abc.tmp"), b"half").unwrap();
        let out = dir.join("a.tar");
        write(&out, &[("index.json", b"{}".to_vec())], None, &staged).unwrap();
        let m = Members::scan(&out).unwrap();
        assert_eq!(m.size("blobs/sha256/abc"), Some(10));
        assert!(m.size("blobs/sha256/.abc.tmp").is_none());
        let mut s = String::new();
        m.open("blobs/sha256/abc", 6).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "blob");
        assert!(staged.join("blobs/sha256/abc").exists(), "staged blobs stay until the caller removes them");
        // Replacing it keeps the previous members.
        let out2 = dir.join("b.tar");
        write(&out2, &[("index.json", b"{}".to_vec())], Some(&m), &staged).unwrap();
        assert_eq!(Members::scan(&out2).unwrap().size("blobs/sha256/abc"), Some(10));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
