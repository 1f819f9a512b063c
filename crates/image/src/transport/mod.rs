//! Reading and writing images over transports.
//!
//! A transport implements [`ImageSource`] and/or [`ImageDest`]; the rest of
//! cocoon (copy, flatten, convert) works only through these traits.
//! [`resolve`] turns a source into one platform's manifest and config.

use std::fmt;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;
use crate::reference::ImageRef;

pub mod docker_archive;
pub mod oci_layout;
pub mod registry;

/// A manifest or index exactly as stored, with its media type and digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes, unchanged (their digest is the image's identity).
    pub bytes: Vec<u8>,
    /// The media type (from the descriptor, header or document).
    pub media_type: String,
    /// SHA-256 of `bytes`.
    pub digest: Digest,
}

impl RawManifest {
    /// Wraps manifest bytes, computing the digest.
    pub fn new(bytes: Vec<u8>, media_type: impl Into<String>) -> Self {
        let digest = Digest::of(&bytes);
        RawManifest {
            bytes,
            media_type: media_type.into(),
            digest,
        }
    }
}

/// Reads one image.
pub trait ImageSource {
    /// The image's name for messages (its reference).
    fn name(&self) -> String;
    /// The manifest or index that the reference names.
    fn root_manifest(&mut self) -> Result<RawManifest>;
    /// A manifest listed in an index; its digest and size are checked.
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest>;
    /// Opens a blob (config or layer). The reader fails with
    /// [`Error::BlobMismatch`] at the end of the stream if the content does not
    /// match the descriptor, so callers must read it to the end.
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;
    /// Whether the manifest names every layer by the digest of its stored
    /// bytes, so that [`ImageSource::blob`] checks each layer against the
    /// image itself (OCI layout, registry). A docker-archive names its
    /// layers only by their diff_ids (the digests of the uncompressed tars).
    fn manifest_pins_layers(&self) -> bool;
}

/// Writes one image. Blobs come first, the manifest last; the image becomes
/// visible under its reference only when [`ImageDest::put_manifest`] succeeds.
pub trait ImageDest {
    /// Whether the destination already holds this blob, so the copy can skip it.
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool>;
    /// Stores the config blob.
    fn put_config(&mut self, desc: &Descriptor, data: &[u8]) -> Result<()>;
    /// Stores a layer blob; `diff_id` is the digest of its uncompressed tar
    /// (from the config), for transports that store layers uncompressed.
    fn put_layer(&mut self, desc: &Descriptor, diff_id: &Digest, data: &mut dyn Read)
        -> Result<()>;
    /// Stores a layer blob the caller wrote to the file at `path` and hashed
    /// itself (`desc` has that digest and size). The file may be moved into
    /// the destination instead of copied: the caller must not use it after.
    /// By default it is streamed through [`ImageDest::put_layer`].
    fn put_layer_file(&mut self, desc: &Descriptor, diff_id: &Digest, path: &Path) -> Result<()> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        self.put_layer(desc, diff_id, &mut file)
    }
    /// Stores the manifest and publishes the image under the reference.
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()>;
}

/// Options that apply to every transport.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// Which image of a multi-platform index to select.
    pub platform: Platform,
    /// Talk plain HTTP to the registry (loopback registries in development).
    pub plain_http: bool,
    /// Registry credentials (`USER`, `PASSWORD`), for basic or token auth.
    pub credentials: Option<(String, String)>,
}

/// An OS/architecture pair, optionally with a CPU variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in GOARCH spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8`.
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.into(),
                    architecture: arch.into(),
                    variant: Some(variant.into()),
                })
            }
            _ => Err(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )),
        }
    }
}

impl Platform {
    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && (self.variant.is_none() || p.variant().as_deref() == self.variant.as_deref())
    }
}

/// One platform's image: manifest and config, parsed and checked.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image manifest as stored.
    pub manifest: RawManifest,
    /// The parsed manifest.
    pub parsed: ImageManifest,
    /// The config blob as stored.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfiguration,
}

impl ResolvedImage {
    /// The uncompressed digest of each layer, from the config, in order.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect()
    }
}

/// Parses JSON, naming the document in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl fmt::Display,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadJson {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// The media type of a manifest document: the stored one, or the document's
/// own `mediaType` field when the transport does not say.
pub(crate) fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    probe
        .media_type
        .or_else(|| probe.manifests.map(|_| media::OCI_INDEX.to_string()))
}

/// Reads a whole (small) blob, checking it against its descriptor.
pub fn read_blob(src: &mut dyn ImageSource, desc: &Descriptor) -> Result<Vec<u8>> {
    let digest = Digest::try_from(desc.digest())?;
    let mut out = Vec::with_capacity(desc.size() as usize);
    src.blob(desc)?
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
    Ok(out)
}

/// Selects the image for `platform` (following an index if the reference
/// names one), and reads and checks its manifest and config.
pub fn resolve(src: &mut dyn ImageSource, platform: &Platform) -> Result<ResolvedImage> {
    let mut manifest = src.root_manifest()?;
    if media::is_index(&manifest.media_type) {
        let index: ImageIndex = parse_json(
            &manifest.bytes,
            format_args!("image index {}", manifest.digest),
        )?;
        let mut available = Vec::new();
        let chosen = index.manifests().iter().find(|d| match d.platform() {
            Some(p) => {
                available.push(format!("{}/{}", p.os(), p.architecture()));
                platform.matches(p)
            }
            None => false,
        });
        let Some(desc) = chosen.cloned() else {
            return Err(Error::NoMatchingPlatform {
                platform: platform.to_string(),
                image: src.name(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                },
            });
        };
        manifest = src.manifest(&desc)?;
    }
    if !media::is_manifest(&manifest.media_type) {
        return Err(Error::UnknownMediaType {
            media_type: manifest.media_type.clone(),
            what: format!("manifest {} of {}", manifest.digest, src.name()),
        });
    }
    let parsed: ImageManifest = parse_json(
        &manifest.bytes,
        format_args!("image manifest {}", manifest.digest),
    )?;
    let config_desc = parsed.config().clone();
    let config_type = config_desc.media_type().to_string();
    if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
        return Err(Error::UnknownMediaType {
            media_type: config_type,
            what: format!("config of {}", src.name()),
        });
    }
    for layer in parsed.layers() {
        media::Compression::of_layer(
            layer.media_type().as_ref(),
            &Digest::try_from(layer.digest())?,
        )?;
    }
    let config_bytes = read_blob(src, &config_desc)?;
    let config: ImageConfiguration = parse_json(
        &config_bytes,
        format_args!("image config {}", config_desc.digest()),
    )?;
    let image = ResolvedImage {
        manifest,
        parsed,
        config_bytes,
        config,
    };
    if image.diff_ids()?.len() != image.parsed.layers().len() {
        return Err(Error::BadJson {
            what: format!("image config {}", config_desc.digest()),
            reason: format!(
                "it lists {} layer diff_ids but the manifest has {} layers",
                image.config.rootfs().diff_ids().len(),
                image.parsed.layers().len()
            ),
        });
    }
    Ok(image)
}

/// Opens an image for reading.
pub fn open_source(image: &ImageRef, opts: &TransportOptions) -> Result<Box<dyn ImageSource>> {
    Ok(match image {
        ImageRef::OciLayout { dir, tag } => {
            Box::new(oci_layout::OciLayoutSource::open(dir, tag.as_deref())?)
        }
        ImageRef::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveSource::open(file, name.as_deref())?,
        ),
        ImageRef::Registry {
            host,
            repo,
            version,
        } => Box::new(registry::RegistrySource::open(host, repo, version, opts)?),
    })
}

/// Opens an image destination for writing.
pub fn open_dest(image: &ImageRef, opts: &TransportOptions) -> Result<Box<dyn ImageDest>> {
    Ok(match image {
        ImageRef::OciLayout { dir, tag } => {
            Box::new(oci_layout::OciLayoutDest::create(dir, tag.as_deref())?)
        }
        ImageRef::DockerArchive { file, name } => Box::new(
            docker_archive::DockerArchiveDest::create(file, name.as_deref())?,
        ),
        ImageRef::Registry {
            host,
            repo,
            version,
        } => Box::new(registry::RegistryDest::open(host, repo, version, opts)?),
    })
}
