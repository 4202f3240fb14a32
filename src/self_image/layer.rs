//! The image's one layer: an uncompressed tar holding the binary at [`BINARY_PATH`] (mode 0755,
//! owned by root, so the non-root user runs it and cannot change it) and a world-writable `/tmp`
//! (mode 1777: the only place a non-root process of an image without a base can write files,
//! such as `--output-failed-images`). No shell, no `/etc/passwd`: the user is numeric.
//!
//! The layer is a stream — tar headers, then the binary's bytes read from its open file, then
//! padding and the end-of-archive blocks — never held whole in memory; it is read twice (once
//! for its digest, once into the layout), each time from the same open file. It is not
//! compressed: the layer media type `application/vnd.oci.image.layer.v1.tar` is one every
//! runtime pulls (<https://github.com/opencontainers/image-spec/blob/v1.1.0/layer.md>), its
//! digest is its `diff_id`, and it keeps the binary byte for byte, needing no compression crate
//! for a few MiB. Every header carries the same modification time, so the same binary and time
//! give the same bytes.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use sha2::{Digest as _, Sha256};

use crate::digest::{Algorithm, Digest};

/// Where the binary is in the image: the image's entrypoint.
pub const BINARY_PATH: &str = "/usr/local/bin/image-syncer";

const BLOCK: u64 = 512;

/// Directories before the binary, with their modes (a tar lists parents first).
const DIRS: [(&str, u32); 4] = [("tmp/", 0o1777), ("usr/", 0o755), ("usr/local/", 0o755), ("usr/local/bin/", 0o755)];

/// The layer of one binary: its tar stream, re-readable from the start.
pub struct Layer {
    file: File,
    /// The binary's length when the layer was planned.
    binary_len: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Layer {
    /// The layer for the binary open in `file`, `binary_len` bytes, every entry dated `mtime`
    /// (seconds since the epoch).
    pub fn new(file: File, binary_len: u64, mtime: u64) -> Layer {
        let mut head = Vec::new();
        for (path, mode) in DIRS {
            head.extend_from_slice(header(path, tar::EntryType::Directory, mode, 0, mtime).as_bytes());
        }
        let binary = BINARY_PATH.trim_start_matches('/');
        head.extend_from_slice(header(binary, tar::EntryType::Regular, 0o755, binary_len, mtime).as_bytes());
        let padding = (BLOCK - binary_len % BLOCK) % BLOCK;
        // The file's padding, then two zero blocks: the end of the archive.
        let tail = vec![0u8; (padding + 2 * BLOCK) as usize];
        Layer { file, binary_len, head, tail }
    }

    /// The number of bytes of the layer.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.binary_len + self.tail.len() as u64
    }

    /// The layer from its first byte (the binary read from its start again).
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let body =
            Cursor::new(self.head.clone()).chain(file.take(self.binary_len)).chain(Cursor::new(self.tail.clone()));
        Ok(Box::new(body))
    }

    /// The layer's digest; an error when the binary is not `binary_len` bytes any more.
    pub fn digest(&self) -> io::Result<Digest> {
        let mut hasher = Sha256::new();
        let n = io::copy(&mut self.open()?, &mut hasher)?;
        if n != self.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file changed while it was read"));
        }
        Ok(Digest::from_hash(Algorithm::Sha256, &hasher.finalize()))
    }
}

/// A ustar header owned by uid and gid 0.
fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    // Written as is (the crate's `set_path` drops a directory's trailing `/`, which tar writes).
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_cksum();
    h
}
