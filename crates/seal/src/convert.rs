//! `convert`: an ordinary image in, a sealed image out; and reading a sealed
//! image back for `inspect` and `verify-image`.
//!
//! The sealed image is an ordinary OCI image any registry and runtime
//! accept. Its config runs `/cocoon/launcher`; the original config lives only
//! inside the workload manifest. Two layers:
//!
//! 1. `/cocoon/launcher` (gzip);
//! 2. `/cocoon/manifest.json` (the workload manifest, canonical JSON),
//!    `/cocoon/sealed.blob` and `/cocoon/seal.json` (the owner-signed seal
//!    descriptor), uncompressed: the blob is compressed inside.
//!
//! Work overlaps: file contents are compressed while the layers are still
//! being decompressed and parsed ([`ChunkStore`]), the launcher layer is
//! built on its own thread while the tree is sealed, and the blob is
//! encrypted in parallel straight into the layer file, which is then moved
//! into the destination.
//!
//! The source reference and digest are recorded as a manifest annotation
//! (provenance), outside the workload digest. Output is deterministic: the
//! same source, options and keys give the same bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cocoon_image::flatten::flatten;
use cocoon_image::store::CasDir;
use cocoon_image::transport::{resolve, RawManifest};
use cocoon_image::{layer, media};
use cocoon_image::{Digest, EntryKind, ImageDest, ImageSource, Platform};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::keys::ImageKey;
use crate::manifest::{TreeRecords, WorkloadManifest, WorkloadOptions};
use crate::pack::{ChunkStore, Chunks};
use crate::reader::SealedBlob;
use crate::signing::{BlobRef, OwnerKey, OwnerPublicKey, SealDescriptor, SignedSeal};
use crate::writer::{SealPlan, SealSummary};

/// Path of the launcher inside a sealed image.
pub const LAUNCHER_PATH: &str = "/cocoon/launcher";
/// Path of the workload manifest inside a sealed image.
pub const MANIFEST_PATH: &str = "/cocoon/manifest.json";
/// Path of the signed seal descriptor inside a sealed image.
pub const SEAL_PATH: &str = "/cocoon/seal.json";
/// Path of the sealed blob inside a sealed image.
pub const BLOB_PATH: &str = "/cocoon/sealed.blob";
/// Manifest annotation recording where the sealed image came from.
pub const SOURCE_ANNOTATION: &str = "dev.cocoon.source";
/// Config label carrying the workload digest (informational).
pub const WORKLOAD_LABEL: &str = "dev.cocoon.workload";

/// What `convert` needs besides the images.
pub struct ConvertRequest<'a> {
    /// Options that shape the workload (and its digest).
    pub options: WorkloadOptions,
    /// The launcher binary; its SHA-256 must be `options.launcher`.
    pub launcher: &'a [u8],
    /// The image key.
    pub key: &'a ImageKey,
    /// The owner's signing key.
    pub signer: &'a OwnerKey,
    /// Scratch space for the flattened tree and the blob.
    pub scratch: &'a Path,
    /// Called as work proceeds: (stage, bytes done, bytes total).
    pub progress: &'a dyn Fn(&str, u64, u64),
}

/// What `convert` produced.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The workload manifest.
    pub manifest: WorkloadManifest,
    /// Its digest.
    pub workload_digest: Digest,
    /// Digest of the sealed image's manifest.
    pub image_digest: Digest,
    /// Digest of the source image's manifest.
    pub source_digest: Digest,
    /// The signer id.
    pub signer: Digest,
    /// The sealed blob.
    pub seal: SealSummary,
    /// Total size of the source image's layer blobs.
    pub source_bytes: u64,
    /// Total size of the sealed image's layer blobs.
    pub sealed_bytes: u64,
}

/// Converts the `platform` image of `src` into a sealed image written to `dst`.
pub fn convert(
    src: &mut dyn ImageSource,
    platform: &Platform,
    dst: &mut dyn ImageDest,
    req: &ConvertRequest<'_>,
) -> Result<Converted> {
    let image = resolve(src, platform)?;
    let source_bytes: u64 = image.parsed.layers().iter().map(|l| l.size()).sum();
    (req.progress)("flatten", 0, source_bytes);
    let mut store = ChunkStore::new(req.scratch, req.options.chunk_size)?;
    let tree = flatten(src, &image, &mut store)?;
    // The tree digest is worked out while the last chunks are compressed.
    let records = TreeRecords::of(&tree)?;
    let manifest = WorkloadManifest::new(&image, records.summary().clone(), &req.options)?;
    let chunks = store.finish()?;
    (req.progress)("flatten", source_bytes, source_bytes);
    // Layer 1 needs only the launcher: check it against its digest and
    // build it while the tree is sealed, whose last steps leave a core
    // idle, rather than before or during flattening, which keeps every
    // core busy.
    let (sealed, (launcher_layer, launcher_tar_bytes_digest)) =
        std::thread::scope(|scope| -> Result<_> {
            let (launcher, launcher_digest) = (req.launcher, req.options.launcher);
            let launcher = scope.spawn(move || {
                if Digest::of(launcher) != launcher_digest {
                    return Err(Error::Tampered(
                        "the launcher binary does not match the launcher digest".into(),
                    ));
                }
                launcher_layer(launcher)
            });
            let sealed = seal_layer(manifest, records, chunks, req);
            let launcher = launcher.join().map_err(|_| {
                Error::io(
                    "building the launcher layer",
                    io::Error::other("the thread panicked"),
                )
            });
            Ok((sealed?, launcher??))
        })?;
    let SealLayer {
        manifest,
        seal,
        signed,
        path: seal_layer_path,
        digest: seal_layer_digest,
        size: seal_layer_size,
    } = sealed;
    let workload_digest = signed.descriptor.workload;
    let signer = signed.descriptor.signer;
    let ports: serde_json::Map<String, serde_json::Value> = manifest
        .shield
        .iter()
        .map(|s| (format!("{}/tcp", s.public), json!({})))
        .collect();
    let config = json!({
        "architecture": manifest.platform.architecture,
        "os": manifest.platform.os,
        "config": {
            "Entrypoint": [LAUNCHER_PATH],
            "ExposedPorts": ports,
            "Labels": {WORKLOAD_LABEL: workload_digest.to_string()},
        },
        "rootfs": {"type": "layers", "diff_ids": [launcher_tar_bytes_digest.to_string(), seal_layer_digest.to_string()]},
    });
    let config_bytes =
        serde_json_canonicalizer::to_vec(&config).map_err(crate::manifest::Error::from)?;
    let config_desc = oci_descriptor(
        media::OCI_CONFIG,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    )?;
    let launcher_desc = oci_descriptor(
        media::OCI_LAYER_GZIP,
        Digest::of(&launcher_layer),
        launcher_layer.len() as u64,
    )?;
    let seal_desc = oci_descriptor(media::OCI_LAYER_TAR, seal_layer_digest, seal_layer_size)?;
    let oci_manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config_desc,
        "layers": [launcher_desc, seal_desc],
        "annotations": {SOURCE_ANNOTATION: format!("{}@{}", src.name(), image.manifest.digest)},
    });
    let manifest_bytes =
        serde_json_canonicalizer::to_vec(&oci_manifest).map_err(crate::manifest::Error::from)?;
    let raw = RawManifest::new(manifest_bytes, media::OCI_MANIFEST);

    (req.progress)("write", 0, seal_layer_size);
    dst.put_config(&config_desc, &config_bytes)?;
    dst.put_layer(
        &launcher_desc,
        &launcher_tar_bytes_digest,
        &mut &launcher_layer[..],
    )?;
    dst.put_layer_file(&seal_desc, &seal_layer_digest, &seal_layer_path)?;
    dst.put_manifest(&raw)?;
    (req.progress)("write", seal_layer_size, seal_layer_size);

    Ok(Converted {
        manifest,
        workload_digest,
        image_digest: raw.digest,
        source_digest: image.manifest.digest,
        signer,
        seal,
        source_bytes,
        sealed_bytes: launcher_layer.len() as u64 + seal_layer_size,
    })
}

/// Layer 1: `/cocoon/launcher` (gzip) and the digest of its tar (the diff_id).
fn launcher_layer(launcher: &[u8]) -> Result<(Vec<u8>, Digest)> {
    let io = |e| Error::io("building the launcher layer", e);
    let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(HashingWriter {
        inner: gz,
        hasher: Sha256::new(),
    });
    append_dir(&mut tar, "cocoon")?;
    append_file(
        &mut tar,
        "cocoon/launcher",
        0o755,
        launcher.len() as u64,
        launcher,
    )?;
    let HashingWriter { inner, hasher } = tar.into_inner().map_err(io)?;
    Ok((
        inner.finish().map_err(io)?,
        Digest(hasher.finalize().into()),
    ))
}

/// Passes writes through, hashing them.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sealed layer, written to a scratch file.
struct SealLayer {
    manifest: WorkloadManifest,
    seal: SealSummary,
    signed: SignedSeal,
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// Seals the flattened tree of `manifest` (its `records`), whose contents
/// are compressed in `chunks`, and writes layer 2 (uncompressed tar: the
/// blob is compressed inside) to a scratch file, hashing it on the way:
/// `/cocoon/manifest.json`, `/cocoon/sealed.blob`, then `/cocoon/seal.json`,
/// which signs the blob's trailer and so comes last.
fn seal_layer(
    manifest: WorkloadManifest,
    records: TreeRecords,
    chunks: Chunks,
    req: &ConvertRequest<'_>,
) -> Result<SealLayer> {
    let manifest_json = manifest.canonical_json()?;
    let workload_digest = Digest::of(&manifest_json);
    let plan = SealPlan::new(records, &chunks, &manifest, req.key)?;

    let path = req.scratch.join("seal-layer.tar");
    let io = |e| Error::io("writing the seal layer", e);
    let mut layer = create(&path)?;
    let mut hasher = Sha256::new();
    let head = layer::entries(|b| {
        layer::append_dir(b, "cocoon")?;
        let len = manifest_json.len() as u64;
        layer::append_file(b, "cocoon/manifest.json", 0o444, len, &manifest_json[..])
    })
    .map_err(io)?;
    let blob_header = layer::file_header("cocoon/sealed.blob", 0o444, plan.size()).map_err(io)?;
    let head = [&head[..], &blob_header].concat();
    hasher.update(&head);
    layer.write_all(&head).map_err(io)?;
    (req.progress)("seal", 0, manifest.tree.bytes);
    let seal = plan.write(chunks, &mut layer, &mut hasher)?;
    (req.progress)("seal", manifest.tree.bytes, manifest.tree.bytes);

    let descriptor = SealDescriptor::new(
        workload_digest,
        BlobRef {
            size: seal.size,
            trailer: seal.trailer_digest,
        },
        &req.signer.public(),
    )?;
    let signed = req.signer.sign(descriptor)?;
    let seal_json = signed.to_json()?;
    let mut tail = vec![0u8; layer::padding(seal.size)];
    let mut b = tar::Builder::new(&mut tail);
    append_file(
        &mut b,
        "cocoon/seal.json",
        0o444,
        seal_json.len() as u64,
        &seal_json[..],
    )?;
    b.into_inner().map_err(io)?;
    hasher.update(&tail);
    layer.write_all(&tail).map_err(io)?;
    let size = (head.len() + tail.len()) as u64 + seal.size;
    Ok(SealLayer {
        manifest,
        seal,
        signed,
        path,
        digest: Digest(hasher.finalize().into()),
        size,
    })
}

fn create(path: &Path) -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

fn oci_descriptor(
    media_type: &str,
    digest: Digest,
    size: u64,
) -> Result<oci_spec::image::Descriptor> {
    layer::descriptor(media_type, digest, size)
        .map_err(|e| Error::Format(format!("building a descriptor: {e}")))
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<()> {
    layer::append_dir(b, path).map_err(|e| Error::io(format!("adding {path} to a layer"), e))
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> Result<()> {
    layer::append_file(b, path, mode, size, data)
        .map_err(|e| Error::io(format!("adding {path} to a layer"), e))
}

/// The cocoon files of a sealed image, read back and checked against the
/// image's own digests (not yet against any signature).
pub struct SealedImage {
    /// The workload manifest, exactly as stored.
    pub manifest_json: Vec<u8>,
    /// The parsed workload manifest.
    pub manifest: WorkloadManifest,
    /// The signed seal descriptor.
    pub seal: SignedSeal,
    /// SHA-256 of the launcher binary in the image.
    pub launcher_digest: Digest,
    /// The launcher binary's size.
    pub launcher_size: u64,
    /// Where the sealed blob was put.
    pub blob_path: PathBuf,
    /// Total size of the image's layer blobs.
    pub image_bytes: u64,
    /// The image's provenance annotation, if any.
    pub source: Option<String>,
}

/// Reads a sealed image's cocoon files, putting the blob under `scratch`.
pub fn open_sealed(
    src: &mut dyn ImageSource,
    platform: &Platform,
    scratch: &Path,
) -> Result<SealedImage> {
    let image = resolve(src, platform)?;
    let entrypoint = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    if entrypoint != [LAUNCHER_PATH] {
        return Err(Error::Format(format!(
            "{} is not a cocoon sealed image (its entrypoint is {entrypoint:?}, not [\"{LAUNCHER_PATH}\"])",
            src.name()
        )));
    }
    let mut store = CasDir::new(scratch).map_err(|e| Error::io("creating scratch store", e))?;
    let tree = flatten(src, &image, &mut store)?;
    let file = |path: &str| -> Result<(Digest, u64, PathBuf)> {
        match tree.get(path).map(|e| &e.kind) {
            Some(EntryKind::File { digest, size, .. }) => Ok((*digest, *size, store.path(digest))),
            _ => Err(Error::Format(format!("{} has no {path}", src.name()))),
        }
    };
    let read_small = |path: &str| -> Result<Vec<u8>> {
        let (_, size, p) = file(path)?;
        if size > 64 << 20 {
            return Err(Error::Format(format!(
                "{path} is implausibly large ({size} bytes)"
            )));
        }
        fs::read(&p).map_err(|e| Error::io(format!("reading {path}"), e))
    };
    let manifest_json = read_small(MANIFEST_PATH)?;
    let manifest: WorkloadManifest = serde_json::from_slice(&manifest_json)
        .map_err(|e| Error::Format(format!("{MANIFEST_PATH} is not a workload manifest: {e}")))?;
    let seal = SignedSeal::parse(&read_small(SEAL_PATH)?)?;
    let (launcher_digest, launcher_size, _) = file(LAUNCHER_PATH)?;
    let (_, _, blob_path) = file(BLOB_PATH)?;
    let source = image
        .parsed
        .annotations()
        .as_ref()
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .cloned();
    let image_bytes = image.parsed.layers().iter().map(|l| l.size()).sum();
    Ok(SealedImage {
        manifest_json,
        manifest,
        seal,
        launcher_digest,
        launcher_size,
        blob_path,
        image_bytes,
        source,
    })
}

/// What `verify` checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The workload digest.
    pub workload_digest: Digest,
    /// The signer id.
    pub signer: Digest,
    /// Number of chunks checked.
    pub chunks: u64,
    /// Whether the tree was decrypted and every file checked.
    pub decrypted: bool,
}

impl SealedImage {
    /// Checks everything the owner's public key can check: the signature,
    /// the manifest, the launcher, and every chunk of the blob; with the
    /// image key, also decrypts the index and checks every file against the
    /// workload's tree digest.
    pub fn verify(&self, owner: &OwnerPublicKey, key: Option<&ImageKey>) -> Result<Verified> {
        let d = self.seal.verify(owner)?;
        if Digest::of(&self.manifest_json) != d.workload {
            return Err(Error::Tampered(
                "the workload manifest is not the one the owner signed".into(),
            ));
        }
        if self.manifest.canonical_json()? != self.manifest_json {
            return Err(Error::Tampered(
                "the workload manifest is not in canonical form".into(),
            ));
        }
        if self.launcher_digest != self.manifest.launcher {
            return Err(Error::Tampered(
                "the launcher is not the one the manifest names".into(),
            ));
        }
        let size = fs::metadata(&self.blob_path)
            .map_err(|e| Error::io("reading the sealed blob", e))?
            .len();
        if size != d.blob.size {
            return Err(Error::Tampered(format!(
                "the sealed blob is {size} bytes, the owner signed {}",
                d.blob.size
            )));
        }
        let blob = SealedBlob::open(&self.blob_path, &d.blob.trailer)?;
        blob.verify_chunks()?;
        let chunks = blob.chunks().len() as u64;
        let decrypted = match key {
            Some(key) => {
                blob.unlock(key, &self.manifest)?.verify_all()?;
                true
            }
            None => false,
        };
        Ok(Verified {
            workload_digest: d.workload,
            signer: d.signer,
            chunks,
            decrypted,
        })
    }
}
