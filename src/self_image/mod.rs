//! `image-syncer self-image oci:DIR[:NAME][:TAG]`: the tool's own container image, made from
//! its static binary without a Docker daemon or a base image, written into an OCI layout —
//! from where `image-syncer copy` pushes it to a registry, or carries it across an air gap with
//! the rest of a bundle. This is how the Kubernetes Job of `docs/kubernetes/` gets its image.
//!
//! The image is one layer holding the binary ([`layer`]), run as a non-root numeric user with
//! the binary as entrypoint, with `org.opencontainers.image.*` annotations ([`document`]). It
//! needs nothing else: the binary is static (refused otherwise, [`elf`]) and carries the Mozilla
//! root certificates for when the image has no trust store. Its platform is read from the
//! binary; binaries for several architectures make one index.
//!
//! It is written through the layout's [`Store`] implementation, as a copy writes any image: the
//! same checked, atomic, incremental writes, into a new layout, an existing bundle or an
//! archive. The same binaries and time (`SOURCE_DATE_EPOCH`, else the binaries' modification
//! time) give the same digests, so a re-run changes nothing and a registry sees it unchanged.

mod document;
mod elf;
mod layer;

use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub use elf::Fault;

use crate::digest::Digest;
use crate::layout::{Layout, LayoutSpec};
use crate::manifest::MediaType;
use crate::reference::{Reference, Repository};
use crate::store::{BlobSource, Error, ErrorKind, Origin, Store};
use layer::Layer;

/// What to make and where to write it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The layout written (`oci:DIR` or `oci-archive:FILE`), created when missing.
    pub layout: LayoutSpec,
    /// The image's name in the layout (`registry/repository`); empty: entries carry only the tag.
    pub name: String,
    /// At least one.
    pub tags: Vec<String>,
    /// Static executables, one per architecture.
    pub binaries: Vec<PathBuf>,
    /// Seconds since the epoch the image is dated (`SOURCE_DATE_EPOCH`); `None`: the newest
    /// modification time of the binaries.
    pub created: Option<i64>,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The digest the tags name: the image's manifest, or the index of several.
    pub digest: Digest,
    /// The architectures, in the order of the binaries.
    pub architectures: Vec<&'static str>,
    /// The bytes of the binaries.
    pub binary_bytes: u64,
    pub created: String,
}

/// Why the image was not made.
#[derive(Debug)]
pub enum SelfImageError {
    /// A binary that cannot be the image's (unusable input).
    Binary { path: PathBuf, fault: Fault },
    /// Two binaries for one architecture.
    SameArchitecture { architecture: &'static str, first: PathBuf, second: PathBuf },
    /// No binary to make an image of, or no tag to name it by (`"binary"`, `"tag"`).
    Nothing(&'static str),
    /// A time no image can be dated.
    Time(i64),
    /// The layout could not be written.
    Layout(Error),
}

impl SelfImageError {
    /// 2 for unusable input, as a sync; 1 when writing failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            SelfImageError::Layout(_) => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for SelfImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelfImageError::Binary { path, fault } => write!(f, "self-image: {}: {fault}", path.display()),
            SelfImageError::SameArchitecture { architecture, first, second } => write!(
                f,
                "self-image: {} and {} are both {architecture} binaries: give one binary per architecture",
                first.display(),
                second.display()
            ),
            SelfImageError::Nothing(what) => write!(f, "self-image: no {what} given"),
            SelfImageError::Time(t) => write!(f, "self-image: {t} seconds since 1970 is no date an image can carry"),
            SelfImageError::Layout(e) => write!(f, "self-image: {e}"),
        }
    }
}

impl std::error::Error for SelfImageError {}

/// One binary, checked: its open file (read for the image, so a binary replaced on disk in the
/// meantime does not change what goes in), its length and architecture.
struct Binary {
    path: PathBuf,
    file: File,
    len: u64,
    mtime: i64,
    architecture: &'static str,
}

impl Binary {
    fn open(path: &Path) -> Result<Binary, SelfImageError> {
        let fault = |fault| SelfImageError::Binary { path: path.to_path_buf(), fault };
        let mut file = File::open(path).map_err(|e| fault(Fault::Read(e)))?;
        let meta = file.metadata().map_err(|e| fault(Fault::Read(e)))?;
        if !meta.is_file() {
            return Err(fault(Fault::NotElf("not a regular file")));
        }
        let architecture = elf::static_arch(&mut file).map_err(fault)?;
        let since = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        let mtime = since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        Ok(Binary { path: path.to_path_buf(), file, len: meta.len(), mtime, architecture })
    }

    /// The binary could not be read.
    fn fault(&self, e: io::Error) -> SelfImageError {
        SelfImageError::Binary { path: self.path.clone(), fault: Fault::Read(e) }
    }
}

/// Make the image of `request.binaries` and write it into the layout under every tag.
pub fn write(request: &Request) -> Result<Written, SelfImageError> {
    let mut binaries: Vec<Binary> = Vec::new();
    for path in &request.binaries {
        let b = Binary::open(path)?;
        if let Some(first) = binaries.iter().find(|o| o.architecture == b.architecture) {
            return Err(SelfImageError::SameArchitecture {
                architecture: b.architecture,
                first: first.path.clone(),
                second: b.path,
            });
        }
        binaries.push(b);
    }
    if binaries.is_empty() {
        return Err(SelfImageError::Nothing("binary"));
    }
    if request.tags.is_empty() {
        return Err(SelfImageError::Nothing("tag"));
    }
    let secs = request.created.unwrap_or_else(|| binaries.iter().map(|b| b.mtime).max().unwrap_or(0));
    let (created, mtime) = match (jiff::Timestamp::from_second(secs), u64::try_from(secs)) {
        (Ok(t), Ok(mtime)) => (t.to_string(), mtime),
        _ => return Err(SelfImageError::Time(secs)),
    };
    let annotations = document::annotations(&created);

    let layout = Layout::open(&request.layout, None).map_err(SelfImageError::Layout)?;
    let w = Writer {
        layout: &layout,
        repo: Repository { location: request.layout.location.clone(), name: request.name.as_str().into() },
    };
    let mut manifests = Vec::new();
    for b in &binaries {
        let layer = LayerSource {
            name: b.path.display().to_string(),
            layer: Layer::new(b.file.try_clone().map_err(|e| b.fault(e))?, b.len, mtime),
        };
        let layer_digest = layer.layer.digest().map_err(|e| b.fault(e))?;
        w.blob(&layer, &layer_digest, layer.layer.len())?;
        let config = Doc {
            at: layout.location.clone(),
            bytes: document::config(b.architecture, &layer_digest, &created, &annotations),
        };
        let config_digest = Digest::of(&config.bytes);
        w.blob(&config, &config_digest, config.bytes.len() as u64)?;
        let manifest = document::manifest(
            &document::descriptor(document::CONFIG_TYPE, &config_digest, config.bytes.len() as u64),
            &document::descriptor(document::LAYER_TYPE, &layer_digest, layer.layer.len()),
            &annotations,
        );
        manifests.push((manifest, b.architecture));
    }
    let (top, media_type) = match manifests.as_slice() {
        [(one, _)] => (one.clone(), MediaType::OCI_MANIFEST),
        many => {
            let mut children = Vec::new();
            for (m, architecture) in many {
                let digest = Digest::of(m);
                w.manifest(&Reference::Digest(digest.clone()), m, &MediaType::OCI_MANIFEST)?;
                children.push((
                    document::descriptor(MediaType::OCI_MANIFEST.as_str(), &digest, m.len() as u64),
                    *architecture,
                ));
            }
            (document::index(&children, &annotations), MediaType::OCI_INDEX)
        }
    };
    for tag in &request.tags {
        w.manifest(&Reference::Tag(tag.clone()), &top, &media_type)?;
    }
    layout.finish(false).map_err(SelfImageError::Layout)?;
    Ok(Written {
        digest: Digest::of(&top),
        architectures: binaries.iter().map(|b| b.architecture).collect(),
        binary_bytes: binaries.iter().map(|b| b.len).sum(),
        created,
    })
}

/// Writes into the layout as a copy would: blobs first, then manifests (a tag last).
struct Writer<'a> {
    layout: &'a Layout,
    repo: Repository,
}

impl Writer<'_> {
    fn blob(&self, origin: &dyn Origin, digest: &Digest, size: u64) -> Result<(), SelfImageError> {
        let (reader, _) = origin.open_at(&self.repo.name, digest, 0).map_err(SelfImageError::Layout)?;
        let mut source = BlobSource::new(origin, &self.repo.name, digest, Some(size), reader, None);
        self.layout.put_blob(&self.repo, digest, &mut source, None).map_err(SelfImageError::Layout)
    }

    /// A tag names the image in `index.json`; a child of an index is stored by digest only.
    fn manifest(&self, reference: &Reference, bytes: &[u8], media_type: &MediaType) -> Result<(), SelfImageError> {
        let top = matches!(reference, Reference::Tag(_));
        self.layout.put_manifest(&self.repo, reference, bytes, media_type, top).map_err(SelfImageError::Layout)
    }
}

/// The layer as a blob's origin, named by its binary.
struct LayerSource {
    name: String,
    layer: Layer,
}

impl Origin for LayerSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn what(&self, _: &str, digest: &Digest) -> String {
        format!("read the layer {digest}")
    }

    fn open_at(&self, _: &str, digest: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let fail = |e: io::Error| self.read_error(self.what("", digest), e);
        let mut r = self.layer.open().map_err(fail)?;
        io::copy(&mut r.by_ref().take(offset), &mut io::sink()).map_err(fail)?;
        Ok((r, offset))
    }

    fn read_error(&self, what: String, e: io::Error) -> Error {
        Error::new(&self.name, what, ErrorKind::Layout(format!("cannot read the binary: {e}")))
    }
}

/// A document made here (the config), as a blob's origin.
struct Doc {
    /// The layout, as errors name it.
    at: String,
    bytes: Vec<u8>,
}

impl Origin for Doc {
    fn name(&self) -> &str {
        &self.at
    }

    fn what(&self, _: &str, digest: &Digest) -> String {
        format!("store blob {digest}")
    }

    fn open_at(&self, _: &str, _: &Digest, offset: u64) -> Result<(Box<dyn Read + Send>, u64), Error> {
        let rest = self.bytes.get(offset as usize..).unwrap_or_default().to_vec();
        Ok((Box::new(Cursor::new(rest)), offset))
    }
}
