//! `docker-archive:FILE[:NAME:TAG]`: the `docker save` tarball.
//!
//! Reading indexes the tar once (entry name to data offset and size) and serves
//! blobs by positional reads from the archive, without extracting it. The image
//! is presented as a synthesized OCI manifest: the config descriptor is the
//! SHA-256 of the config file, and each layer descriptor is the layer file's
//! digest and size. Uncompressed layers (what `docker save` and skopeo write)
//! use their diff_id from the config, which is their digest; gzip or zstd
//! layers are hashed once when the archive is opened. Every blob is streamed
//! through a [`VerifyingReader`], so a layer that does not match is an error
//! naming it.
//!
//! Writing stores every layer uncompressed as `<diff_id hex>.tar` and the
//! config as `<hex>.json`, with `manifest.json` and `repositories` as docker
//! writes them; the archive is staged beside the target and renamed into place
//! when the manifest is written, so a failed copy leaves no partial archive.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader, VerifyingReader};
use crate::error::{Error, Result};
use crate::media::{self, Compression};
use crate::transport::{parse_json, ImageDest, ImageSource, RawManifest};

/// Largest `manifest.json` or config file read into memory (64 MiB).
const MAX_JSON: u64 = 64 << 20;

/// Where an entry's data lies inside the archive.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// One entry of the tar index.
#[derive(Debug, Clone)]
enum IndexEntry {
    File(Span),
    Link(String),
}

/// One image of `manifest.json`.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Strips `./` and leading `/` so that names in `manifest.json` and in the tar
/// headers compare equal.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Reads `len` bytes from `offset` of a file without moving a shared cursor.
struct SpanReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpanReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends at byte {} inside an entry that should end at byte {}",
                    self.pos, self.end
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads one image from a `docker save` archive.
pub struct DockerArchiveSource {
    file: PathBuf,
    archive: File,
    name: Option<String>,
    manifest: RawManifest,
    /// Blob digest to its place in the archive.
    blobs: HashMap<Digest, Span>,
}

impl DockerArchiveSource {
    /// Opens `file`, indexes its entries and selects the image whose
    /// `RepoTags` contain `name` (`NAME:TAG`), or the only image when `name` is
    /// `None`.
    pub fn open(file: &Path, name: Option<&str>) -> Result<Self> {
        let shown = file.display().to_string();
        let archive = File::open(file)
            .map_err(|e| Error::io(format!("opening docker-archive {shown}"), e))?;
        let len = archive
            .metadata()
            .map_err(|e| Error::io(format!("reading docker-archive {shown}"), e))?
            .len();
        let index = index_tar(&archive, &shown, len)?;
        let lookup = |entry: &str| resolve_entry(&index, entry);

        let manifest_span = lookup("manifest.json").ok_or_else(|| Error::BadJson {
            what: format!("docker-archive {shown}"),
            reason: "it has no manifest.json entry; is it a `docker save` archive?".into(),
        })?;
        let manifest_json = read_small(&archive, manifest_span, &shown, "manifest.json")?;
        let items: Vec<ManifestItem> = parse_json(
            &manifest_json,
            format_args!("manifest.json of docker-archive {shown}"),
        )?;
        let item = select(&items, name, &shown)?;

        let config_span = lookup(&item.config).ok_or_else(|| Error::BadJson {
            what: format!("manifest.json of docker-archive {shown}"),
            reason: format!(
                "it names config {:?}, which the archive does not contain",
                item.config
            ),
        })?;
        let config_bytes = read_small(&archive, config_span, &shown, &item.config)?;
        let config_digest = Digest::of(&config_bytes);
        let config: ImageConfiguration = parse_json(
            &config_bytes,
            format_args!("config {:?} in docker-archive {shown}", item.config),
        )?;
        let diff_ids: Vec<Digest> = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse())
            .collect::<Result<_>>()?;
        if diff_ids.len() != item.layers.len() {
            return Err(Error::BadJson {
                what: format!("docker-archive {shown}"),
                reason: format!(
                    "manifest.json lists {} layers but config {:?} has {} diff_ids",
                    item.layers.len(),
                    item.config,
                    diff_ids.len()
                ),
            });
        }

        let mut blobs = HashMap::new();
        blobs.insert(config_digest, config_span);
        let mut layers = Vec::with_capacity(item.layers.len());
        for (entry, diff_id) in item.layers.iter().zip(&diff_ids) {
            let span = lookup(entry).ok_or_else(|| Error::MissingBlob {
                blob: *diff_id,
                location: format!(
                    "docker-archive {shown} (manifest.json lists layer {entry:?}, which the archive does not contain)"
                ),
            })?;
            let compression = sniff(&archive, span, &shown, entry)?;
            let digest = match compression {
                Compression::None => *diff_id,
                _ => hash_span(&archive, span, &shown, entry)?,
            };
            let media_type = match compression {
                Compression::None => media::OCI_LAYER_TAR,
                Compression::Gzip => media::OCI_LAYER_GZIP,
                Compression::Zstd => media::OCI_LAYER_ZSTD,
            };
            blobs.insert(digest, span);
            layers.push(serde_json::json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": span.size,
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": media::OCI_CONFIG,
                "digest": config_digest.to_string(),
                "size": config_span.size,
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::BadJson {
            what: format!("manifest synthesized for docker-archive {shown}"),
            reason: e.to_string(),
        })?;
        Ok(DockerArchiveSource {
            file: file.to_path_buf(),
            archive,
            name: name.map(str::to_string),
            manifest: RawManifest::new(bytes, media::OCI_MANIFEST),
            blobs,
        })
    }
}

/// Walks the tar headers once, recording where each entry's data lies.
fn index_tar(archive: &File, shown: &str, len: u64) -> Result<HashMap<String, IndexEntry>> {
    let bad = |e: io::Error| {
        Error::io(
            format!("reading docker-archive {shown} (truncated or not a tar file?)"),
            e,
        )
    };
    let mut tar = tar::Archive::new(archive);
    let mut index = HashMap::new();
    for entry in tar.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let name = normalize(&path);
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let span = Span {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            if span.offset.saturating_add(span.size) > len {
                return Err(Error::io(
                    format!("reading docker-archive {shown}"),
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "entry {path:?} needs {} bytes from offset {} but the archive has only {len} bytes: it is truncated",
                            span.size, span.offset
                        ),
                    ),
                ));
            }
            index.insert(name, IndexEntry::File(span));
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(bad)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = if kind.is_symlink() && !target.starts_with('/') {
                let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                normalize(&format!("{dir}/{target}"))
            } else {
                normalize(&target)
            };
            index.insert(name, IndexEntry::Link(target));
        }
    }
    Ok(index)
}

/// Finds a regular file by name, following links inside the archive.
fn resolve_entry(index: &HashMap<String, IndexEntry>, name: &str) -> Option<Span> {
    let mut name = normalize(name);
    for _ in 0..16 {
        match index.get(&name)? {
            IndexEntry::File(span) => return Some(*span),
            IndexEntry::Link(target) => name = target.clone(),
        }
    }
    None
}

fn read_small(archive: &File, span: Span, shown: &str, entry: &str) -> Result<Vec<u8>> {
    if span.size > MAX_JSON {
        return Err(Error::BadJson {
            what: format!("{entry:?} in docker-archive {shown}"),
            reason: format!(
                "it is {} bytes, more than the {MAX_JSON} allowed",
                span.size
            ),
        });
    }
    let mut out = Vec::with_capacity(span.size as usize);
    SpanReader {
        file: archive,
        pos: span.offset,
        end: span.offset + span.size,
    }
    .read_to_end(&mut out)
    .map_err(|e| Error::io(format!("reading {entry:?} from docker-archive {shown}"), e))?;
    Ok(out)
}

/// The compression of a layer file, from its magic bytes.
fn sniff(archive: &File, span: Span, shown: &str, entry: &str) -> Result<Compression> {
    let mut magic = [0u8; 4];
    let n = span.size.min(4) as usize;
    SpanReader {
        file: archive,
        pos: span.offset,
        end: span.offset + span.size,
    }
    .read_exact(&mut magic[..n])
    .map_err(|e| {
        Error::io(
            format!("reading layer {entry:?} from docker-archive {shown}"),
            e,
        )
    })?;
    Ok(match magic[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

fn hash_span(archive: &File, span: Span, shown: &str, entry: &str) -> Result<Digest> {
    let mut reader = HashingReader::new(SpanReader {
        file: archive,
        pos: span.offset,
        end: span.offset + span.size,
    });
    io::copy(&mut reader, &mut io::sink()).map_err(|e| {
        Error::io(
            format!("reading layer {entry:?} from docker-archive {shown}"),
            e,
        )
    })?;
    Ok(reader.finish().0)
}

/// Chooses the image named `name` (or the only one) from `manifest.json`.
fn select<'a>(
    items: &'a [ManifestItem],
    name: Option<&str>,
    shown: &str,
) -> Result<&'a ManifestItem> {
    let tags = || {
        let all: Vec<&str> = items
            .iter()
            .flat_map(|i| i.repo_tags.iter().map(String::as_str))
            .collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    match name {
        Some(name) => {
            let wanted = canonical_tag(name);
            items
                .iter()
                .find(|i| i.repo_tags.iter().any(|t| canonical_tag(t) == wanted))
                .ok_or_else(|| Error::NoSuchTag { tag: name.into(), location: format!("docker-archive {shown}"), available: tags() })
        }
        None => match items {
            [only] => Ok(only),
            [] => Err(Error::BadJson {
                what: format!("manifest.json of docker-archive {shown}"),
                reason: "it lists no image".into(),
            }),
            _ => Err(Error::BadReference {
                input: format!("docker-archive:{shown}"),
                reason: format!(
                    "the archive holds {} images; name one as docker-archive:FILE:NAME:TAG (tags: {})",
                    items.len(),
                    tags()
                ),
            }),
        },
    }
}

/// `NAME[:TAG]` with the tag defaulted to `latest` and docker.io's implicit
/// prefixes removed, so that `busybox`, `busybox:latest` and
/// `docker.io/library/busybox:latest` compare equal.
fn canonical_tag(name: &str) -> String {
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl ImageSource for DockerArchiveSource {
    fn name(&self) -> String {
        match &self.name {
            Some(n) => format!("docker-archive:{}:{n}", self.file.display()),
            None => format!("docker-archive:{}", self.file.display()),
        }
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        Ok(self.manifest.clone())
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        let digest = Digest::try_from(desc.digest())?;
        if digest == self.manifest.digest {
            return Ok(self.manifest.clone());
        }
        Err(Error::MissingBlob {
            blob: digest,
            location: format!("{} (it holds no image index)", self.name()),
        })
    }

    fn manifest_pins_layers(&self) -> bool {
        false
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = Digest::try_from(desc.digest())?;
        let span = *self.blobs.get(&digest).ok_or_else(|| Error::MissingBlob {
            blob: digest,
            location: self.name(),
        })?;
        // Serve at most one byte more than declared so that an oversized entry
        // fails the size check instead of being silently cut.
        let end = span.offset + span.size.min(desc.size().saturating_add(1));
        let reader = SpanReader {
            file: &self.archive,
            pos: span.offset,
            end,
        };
        Ok(Box::new(VerifyingReader::new(reader, digest, desc.size())))
    }
}

/// A layer written to the staging directory.
#[derive(Debug, Clone)]
struct StagedLayer {
    file_name: String,
}

/// Writes one image as a `docker save` archive.
pub struct DockerArchiveDest {
    file: PathBuf,
    repo_tag: Option<String>,
    staging: tempfile::TempDir,
    config: Option<(Digest, String)>,
    /// Layer blob digest (as in the manifest) to the staged uncompressed file.
    layers: HashMap<Digest, StagedLayer>,
}

impl DockerArchiveDest {
    /// Prepares to write `file`, recording `name` (`NAME[:TAG]`, the tag
    /// defaulting to `latest`) in `RepoTags`; without a name the image is
    /// untagged. Blobs are staged in a temporary directory beside `file`.
    pub fn create(file: &Path, name: Option<&str>) -> Result<Self> {
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(".cocoon-docker-archive-")
            .tempdir_in(&parent)
            .map_err(|e| {
                Error::io(
                    format!("creating a staging directory in {}", parent.display()),
                    e,
                )
            })?;
        let repo_tag = name.map(|n| {
            let last = n.rsplit('/').next().unwrap_or(n);
            if last.contains(':') {
                n.to_string()
            } else {
                format!("{n}:latest")
            }
        });
        Ok(DockerArchiveDest {
            file: file.to_path_buf(),
            repo_tag,
            staging,
            config: None,
            layers: HashMap::new(),
        })
    }

    fn shown(&self) -> String {
        format!("docker-archive {}", self.file.display())
    }
}

impl ImageDest for DockerArchiveDest {
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        let digest = Digest::try_from(desc.digest())?;
        Ok(self.layers.contains_key(&digest)
            || self.config.as_ref().is_some_and(|(d, _)| *d == digest))
    }

    fn put_config(&mut self, desc: &Descriptor, data: &[u8]) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let actual = Digest::of(data);
        if actual != digest {
            return Err(Error::BlobMismatch {
                blob: digest,
                reason: format!("config content hashes to {actual}"),
            });
        }
        let name = format!("{}.json", digest.hex());
        let path = self.staging.path().join(&name);
        std::fs::write(&path, data)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.config = Some((digest, name));
        Ok(())
    }

    fn put_layer(
        &mut self,
        desc: &Descriptor,
        diff_id: &Digest,
        data: &mut dyn Read,
    ) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let compression = Compression::of_layer(desc.media_type().as_ref(), &digest)?;
        let file_name = format!("{}.tar", diff_id.hex());
        let path = self.staging.path().join(&file_name);
        let mut out = File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        {
            let decoder = compression.decoder(Box::new(&mut *data), &digest)?;
            let mut reader = HashingReader::new(decoder);
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(match Error::io(format!("reading layer {digest}"), e) {
                            Error::Io { source, .. } if compression != Compression::None => {
                                Error::CorruptLayer {
                                    layer: digest,
                                    format: compression.name(),
                                    reason: source.to_string(),
                                }
                            }
                            other => other,
                        })
                    }
                };
                out.write_all(&buf[..n])
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            }
            let (actual, _) = reader.finish();
            if actual != *diff_id {
                return Err(Error::BlobMismatch {
                    blob: digest,
                    reason: format!(
                        "it decompresses to {actual}, but the image config says its diff_id is {diff_id}"
                    ),
                });
            }
        }
        // The source's check runs at the end of its stream: read it to the end
        // (a decoder may stop before trailing bytes) before accepting the layer.
        io::copy(data, &mut io::sink())
            .map_err(|e| Error::io(format!("reading layer {digest}"), e))?;
        out.sync_all()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.layers.insert(digest, StagedLayer { file_name });
        Ok(())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        if !media::is_manifest(&manifest.media_type) {
            return Err(Error::UnknownMediaType {
                media_type: manifest.media_type.clone(),
                what: format!(
                    "manifest written to {} (it stores one image manifest)",
                    self.shown()
                ),
            });
        }
        let parsed: ImageManifest = parse_json(
            &manifest.bytes,
            format_args!("image manifest {}", manifest.digest),
        )?;
        let config_digest = Digest::try_from(parsed.config().digest())?;
        let config_name = match &self.config {
            Some((d, name)) if *d == config_digest => name.clone(),
            _ => {
                return Err(Error::MissingBlob {
                    blob: config_digest,
                    location: format!(
                        "{} (the config must be written before the manifest)",
                        self.shown()
                    ),
                })
            }
        };
        let mut layer_names = Vec::with_capacity(parsed.layers().len());
        for layer in parsed.layers() {
            let digest = Digest::try_from(layer.digest())?;
            let staged = self.layers.get(&digest).ok_or_else(|| Error::MissingBlob {
                blob: digest,
                location: format!(
                    "{} (layers must be written before the manifest)",
                    self.shown()
                ),
            })?;
            layer_names.push(staged.file_name.clone());
        }
        let item = ManifestItem {
            config: config_name.clone(),
            repo_tags: self.repo_tag.iter().cloned().collect(),
            layers: layer_names.clone(),
        };
        let manifest_json = serde_json::to_vec(&[item]).map_err(|e| Error::BadJson {
            what: format!("manifest.json for {}", self.shown()),
            reason: e.to_string(),
        })?;
        // docker's legacy `repositories`: repo -> tag -> top layer ID.
        let repositories = match (&self.repo_tag, layer_names.last()) {
            (Some(tag), Some(top)) => {
                let (repo, tag) = tag.rsplit_once(':').unwrap_or((tag.as_str(), "latest"));
                let top_id = top.trim_end_matches(".tar").to_string();
                let mut map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
                map.entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), top_id);
                Some(serde_json::to_vec(&map).map_err(|e| Error::BadJson {
                    what: format!("repositories for {}", self.shown()),
                    reason: e.to_string(),
                })?)
            }
            _ => None,
        };

        let parent = match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".cocoon-docker-archive-")
            .suffix(".tar")
            .tempfile_in(&parent)
            .map_err(|e| {
                Error::io(
                    format!("creating a temporary archive in {}", parent.display()),
                    e,
                )
            })?;
        let tmp_path = tmp.path().display().to_string();
        let werr = |e: io::Error| Error::io(format!("writing {tmp_path}"), e);
        {
            let mut builder = tar::Builder::new(io::BufWriter::new(tmp.as_file()));
            let mut written = std::collections::HashSet::new();
            let mut add_file =
                |builder: &mut tar::Builder<io::BufWriter<&File>>, name: &str| -> Result<()> {
                    if !written.insert(name.to_string()) {
                        return Ok(());
                    }
                    let path = self.staging.path().join(name);
                    let mut f = File::open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                    let size = f
                        .metadata()
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
                        .len();
                    let mut header = file_header(size);
                    builder
                        .append_data(&mut header, name, &mut f)
                        .map_err(werr)?;
                    Ok(())
                };
            add_file(&mut builder, &config_name)?;
            for name in &layer_names {
                add_file(&mut builder, name)?;
            }
            let mut header = file_header(manifest_json.len() as u64);
            builder
                .append_data(&mut header, "manifest.json", manifest_json.as_slice())
                .map_err(werr)?;
            if let Some(repos) = &repositories {
                let mut header = file_header(repos.len() as u64);
                builder
                    .append_data(&mut header, "repositories", repos.as_slice())
                    .map_err(werr)?;
            }
            let mut inner = builder.into_inner().map_err(werr)?;
            inner.flush().map_err(werr)?;
        }
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&self.file).map_err(|e| {
            Error::io(
                format!("renaming {tmp_path} to {}", self.file.display()),
                e.error,
            )
        })?;
        Ok(())
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_entry_names() {
        assert_eq!(normalize("./abc/layer.tar"), "abc/layer.tar");
        assert_eq!(normalize("abc/../def/layer.tar"), "def/layer.tar");
        assert_eq!(normalize("/manifest.json"), "manifest.json");
    }

    #[test]
    fn canonical_tags_compare_equal() {
        assert_eq!(canonical_tag("busybox"), "busybox:latest");
        assert_eq!(
            canonical_tag("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(
            canonical_tag("localhost:5000/x/y"),
            "localhost:5000/x/y:latest"
        );
        assert_eq!(
            canonical_tag("localhost:5000/x/y:v1"),
            "localhost:5000/x/y:v1"
        );
    }
}
