//! What an executable's ELF header says about where it can run: its architecture (the image's
//! platform comes from the binary itself, so an arm64 binary built on an amd64 machine makes an
//! arm64 image) and whether it needs a dynamic loader — which a scratch image does not have: a
//! binary with a `PT_INTERP` program header fails there with a bare "no such file or directory"
//! for the loader, so such a binary is refused here instead.
//!
//! Only the fields needed are read, as the System V ABI lays them out
//! (<https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.eheader.html>, program headers in
//! <https://refspecs.linuxfoundation.org/elf/gabi4+/ch5.pheader.html>).

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;
/// More program headers than this is no executable a linker writes.
const MAX_PROGRAM_HEADERS: usize = 4096;

/// Why a file cannot be the image's binary.
#[derive(Debug)]
pub enum Fault {
    Read(io::Error),
    /// No ELF magic, or a header cut short or inconsistent.
    NotElf(&'static str),
    /// Not an executable (`ET_EXEC`) or position-independent executable (`ET_DYN`).
    NotExecutable(u16),
    /// An ELF machine no container platform is named for here.
    Machine(u16),
    /// It needs this dynamic loader.
    Dynamic(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Read(e) => write!(f, "cannot read it: {e}"),
            Fault::NotElf(why) => write!(f, "not an ELF executable ({why})"),
            Fault::NotExecutable(t) => write!(f, "not an executable (ELF type {t})"),
            Fault::Machine(m) => write!(f, "its architecture (ELF machine {m}) has no container platform name here"),
            Fault::Dynamic(interp) => write!(
                f,
                "it is dynamically linked (it needs the loader {interp}), and an image without a base has no loader \
                 or C library: build the static musl binary (cargo build --release --target \
                 x86_64-unknown-linux-musl) and make the image with it"
            ),
        }
    }
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Fault::NotElf("the file ends inside its headers")
        } else {
            Fault::Read(e)
        }
    }
}

/// The architecture of a static executable; a fault for anything else.
pub fn static_arch(file: &mut (impl Read + Seek)) -> Result<&'static str, Fault> {
    let mut ident = [0u8; 16];
    file.read_exact(&mut ident)?;
    if ident[..4] != *b"\x7fELF" {
        return Err(Fault::NotElf("no ELF magic number"));
    }
    let wide = match ident[4] {
        1 => false,
        2 => true,
        _ => return Err(Fault::NotElf("unknown ELF class")),
    };
    let little = match ident[5] {
        1 => true,
        2 => false,
        _ => return Err(Fault::NotElf("unknown byte order")),
    };
    let rest_len = if wide { 64 - 16 } else { 52 - 16 };
    let mut rest = vec![0u8; rest_len];
    file.read_exact(&mut rest)?;
    let r = Fields { bytes: &rest, little, base: 16 };
    let (e_type, machine) = (r.u16(16), r.u16(18));
    if !matches!(e_type, 2 | 3) {
        return Err(Fault::NotExecutable(e_type));
    }
    let arch = arch(machine, wide, little).ok_or(Fault::Machine(machine))?;
    let (phoff, phentsize, phnum) =
        if wide { (r.u64(32), r.u16(54), r.u16(56)) } else { (u64::from(r.u32(28)), r.u16(42), r.u16(44)) };
    let (phentsize, phnum) = (usize::from(phentsize), usize::from(phnum));
    if phnum > MAX_PROGRAM_HEADERS || (phnum > 0 && phentsize < if wide { 56 } else { 32 }) {
        return Err(Fault::NotElf("implausible program headers"));
    }
    let mut table = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    for header in table.chunks_exact(phentsize) {
        let h = Fields { bytes: header, little, base: 0 };
        if h.u32(0) != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide { (h.u64(8), h.u64(32)) } else { (u64::from(h.u32(4)), u64::from(h.u32(16))) };
        return Err(Fault::Dynamic(interpreter(file, offset, size)));
    }
    Ok(arch)
}

/// The loader's path as the binary names it (best effort: it only decorates the refusal).
fn interpreter(file: &mut (impl Read + Seek), offset: u64, size: u64) -> String {
    let mut path = vec![0u8; size.min(4096) as usize];
    let read = file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(&mut path));
    match read {
        Ok(()) => String::from_utf8_lossy(path.split(|b| *b == 0).next().unwrap_or_default()).into_owned(),
        Err(_) => "named in its PT_INTERP header".into(),
    }
}

/// ELF `e_machine` → the platform's architecture as Go's `GOARCH` names it, which the OCI image
/// index uses (<https://github.com/opencontainers/image-spec/blob/v1.1.0/image-index.md>). 32-bit
/// `arm` gets no variant: the header does not say v6 or v7, and containerd reads a bare `arm`
/// as v7.
fn arch(machine: u16, wide: bool, little: bool) -> Option<&'static str> {
    Some(match (machine, wide, little) {
        (62, true, true) => "amd64",
        (183, true, true) => "arm64",
        (3, false, true) => "386",
        (40, false, true) => "arm",
        (243, true, true) => "riscv64",
        (21, true, true) => "ppc64le",
        (21, true, false) => "ppc64",
        (22, true, false) => "s390x",
        (258, true, true) => "loong64",
        _ => return None,
    })
}

/// Integers of a header in the file's byte order; `base` is the offset of `bytes` in the header.
struct Fields<'a> {
    bytes: &'a [u8],
    little: bool,
    base: usize,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.bytes[at - self.base..at - self.base + N]);
        b
    }

    fn u16(&self, at: usize) -> u16 {
        let b = self.take::<2>(at);
        if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    fn u32(&self, at: usize) -> u32 {
        let b = self.take::<4>(at);
        if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    fn u64(&self, at: usize) -> u64 {
        let b = self.take::<8>(at);
        if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 64-bit ELF header (`little`-endian) of `e_type` for `machine`, with program headers of
    /// these types (a `PT_INTERP` points at `/lib/ld.so`).
    fn elf64(little: bool, e_type: u16, machine: u16, headers: &[u32]) -> Vec<u8> {
        // `v` in `width` bytes, in the file's byte order.
        let n = |v: u64, width: usize| -> Vec<u8> {
            let b = v.to_le_bytes()[..width].to_vec();
            if little {
                b
            } else {
                b.into_iter().rev().collect()
            }
        };
        let (h16, h32, h64) = (|v: u16| n(v.into(), 2), |v: u32| n(v.into(), 4), |v: u64| n(v, 8));
        let mut b = vec![0x7f, b'E', b'L', b'F', 2, if little { 1 } else { 2 }, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        b.extend(h16(e_type));
        b.extend(h16(machine));
        b.extend(h32(1));
        b.extend(h64(0)); // entry
        b.extend(h64(64)); // phoff
        b.extend(h64(0)); // shoff
        b.extend(h32(0));
        b.extend(h16(64));
        b.extend(h16(56));
        b.extend(h16(headers.len() as u16));
        b.extend([0u8; 6]);
        let interp_at = 64 + 56 * headers.len() as u64;
        for &t in headers {
            let mut ph = h32(t);
            ph.extend(h32(0));
            ph.extend(h64(interp_at));
            ph.extend(h64(0));
            ph.extend(h64(0));
            ph.extend(h64(11));
            ph.extend(h64(11));
            ph.extend(h64(0));
            b.extend(ph);
        }
        b.extend(b"/lib/ld.so\0");
        b
    }

    fn check(bytes: Vec<u8>) -> Result<&'static str, Fault> {
        static_arch(&mut Cursor::new(bytes))
    }

    #[test]
    fn reads_the_architecture_of_static_executables() {
        assert_eq!(check(elf64(true, 2, 62, &[1])).unwrap(), "amd64");
        assert_eq!(check(elf64(true, 3, 183, &[1, 6])).unwrap(), "arm64", "a static PIE (ET_DYN, no PT_INTERP)");
        assert_eq!(check(elf64(false, 2, 22, &[1])).unwrap(), "s390x");
        assert_eq!(check(elf64(true, 2, 21, &[])).unwrap(), "ppc64le");
    }

    #[test]
    fn refuses_what_would_not_run_without_a_base() {
        match check(elf64(true, 3, 62, &[6, 3, 1])) {
            Err(Fault::Dynamic(loader)) => assert_eq!(loader, "/lib/ld.so"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(elf64(true, 1, 62, &[1])), Err(Fault::NotExecutable(1))));
        assert!(matches!(check(elf64(true, 2, 9999, &[1])), Err(Fault::Machine(9999))));
        assert!(matches!(check(b"#!/bin/sh\nexit 0\n".to_vec()), Err(Fault::NotElf(_))));
        let mut cut = elf64(true, 2, 62, &[1]);
        cut.truncate(80);
        assert!(matches!(check(cut), Err(Fault::NotElf(_))), "program headers cut short");
        assert!(matches!(check(vec![0x7f, b'E', b'L', b'F', 2]), Err(Fault::NotElf(_))));
    }
}
