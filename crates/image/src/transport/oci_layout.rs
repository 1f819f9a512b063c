//! The OCI image layout (`oci:DIR[:TAG]`): `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, tags in `org.opencontainers.image.ref.name`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndex, ImageIndexBuilder, MediaType};

use crate::digest::{Digest, HashingReader, VerifyingReader};
use crate::error::{Error, Result};
use crate::transport::{parse_json, ImageDest, ImageSource, RawManifest};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

fn read_index(dir: &Path) -> Result<ImageIndex> {
    let path = dir.join("index.json");
    let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    parse_json(&bytes, path.display())
}

/// Reads an image from an OCI image layout.
pub struct OciLayoutSource {
    dir: PathBuf,
    tag: Option<String>,
    root: Descriptor,
}

impl OciLayoutSource {
    /// Opens the layout at `dir` and selects the image tagged `tag`, or the
    /// only image when no tag is given.
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self> {
        let layout_path = dir.join(LAYOUT_FILE);
        let layout = fs::read(&layout_path).map_err(|e| {
            Error::io(
                format!(
                    "{} is not an OCI image layout: reading {LAYOUT_FILE}",
                    dir.display()
                ),
                e,
            )
        })?;
        let version: serde_json::Value = parse_json(&layout, layout_path.display())?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(Error::BadJson {
                what: layout_path.display().to_string(),
                reason: "imageLayoutVersion must be \"1.0.0\"".into(),
            });
        }
        let index = read_index(dir)?;
        let tag_of = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        let tags: Vec<String> = index.manifests().iter().filter_map(tag_of).collect();
        let root = match tag {
            Some(t) => index
                .manifests()
                .iter()
                .find(|d| tag_of(d).as_deref() == Some(t)),
            None if index.manifests().len() == 1 => index.manifests().first(),
            None => None,
        };
        let root = root.cloned().ok_or_else(|| Error::NoSuchTag {
            tag: tag
                .unwrap_or("(none given; the layout holds several images, name one)")
                .to_string(),
            location: dir.display().to_string(),
            available: if tags.is_empty() {
                "none".into()
            } else {
                tags.join(", ")
            },
        })?;
        Ok(OciLayoutSource {
            dir: dir.to_path_buf(),
            tag: tag.map(str::to_string),
            root,
        })
    }

    fn read_manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        let mut bytes = Vec::new();
        let digest = Digest::try_from(desc.digest())?;
        self.blob(desc)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading manifest {digest}"), e))?;
        let media_type = match desc.media_type() {
            MediaType::Other(s) if s.is_empty() => {
                super::sniff_media_type(&bytes).unwrap_or_default()
            }
            m => m.to_string(),
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }
}

impl ImageSource for OciLayoutSource {
    fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        let root = self.root.clone();
        self.read_manifest(&root)
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        self.read_manifest(desc)
    }

    fn manifest_pins_layers(&self) -> bool {
        true
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = Digest::try_from(desc.digest())?;
        let path = blob_path(&self.dir, &digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::MissingBlob {
                blob: digest,
                location: format!("OCI layout {}", self.dir.display()),
            },
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        Ok(Box::new(VerifyingReader::new(
            BufReader::with_capacity(1 << 20, file),
            digest,
            desc.size(),
        )))
    }
}

/// Writes an image into an OCI image layout, creating it if needed.
pub struct OciLayoutDest {
    dir: PathBuf,
    tag: String,
}

impl OciLayoutDest {
    /// Creates (or opens) the layout at `dir`; the image will be tagged `tag`
    /// (default `latest`), replacing any image that had that tag.
    pub fn create(dir: &Path, tag: Option<&str>) -> Result<Self> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs)
            .map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?;
        let layout = dir.join(LAYOUT_FILE);
        if !layout.exists() {
            write_atomic(&layout, LAYOUT_CONTENT)?;
        }
        if !dir.join("index.json").exists() {
            let empty = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::new())
                .build()
                .map_err(|e| Error::BadJson {
                    what: "new index.json".into(),
                    reason: e.to_string(),
                })?;
            write_json(&dir.join("index.json"), &empty)?;
        }
        Ok(OciLayoutDest {
            dir: dir.to_path_buf(),
            tag: tag.unwrap_or("latest").to_string(),
        })
    }

    /// Streams `data` into the blob store, checking it against `desc`; the
    /// blob appears under its digest only once it is complete and correct.
    fn put_blob(&mut self, desc: &Descriptor, data: &mut dyn Read) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let blobs = self.dir.join("blobs/sha256");
        let mut tmp = tempfile::NamedTempFile::new_in(&blobs).map_err(|e| {
            Error::io(
                format!("creating a temporary file in {}", blobs.display()),
                e,
            )
        })?;
        let mut reader = VerifyingReader::new(data, digest, desc.size());
        io::copy(&mut reader, tmp.as_file_mut())
            .map_err(|e| Error::io(format!("writing blob {digest}"), e))?;
        let target = blob_path(&self.dir, &digest);
        tmp.persist(&target)
            .map_err(|e| Error::io(format!("storing {}", target.display()), e.error))?;
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| {
        Error::io(
            format!("creating a temporary file in {}", parent.display()),
            e,
        )
    })?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::BadJson {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

impl ImageDest for OciLayoutDest {
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        let digest = Digest::try_from(desc.digest())?;
        // Trust an existing blob only if it is intact.
        let Ok(file) = File::open(blob_path(&self.dir, &digest)) else {
            return Ok(false);
        };
        let mut hashing = HashingReader::new(BufReader::new(file));
        if io::copy(&mut hashing, &mut io::sink()).is_err() {
            return Ok(false);
        }
        Ok(hashing.finish() == (digest, desc.size()))
    }

    fn put_config(&mut self, desc: &Descriptor, data: &[u8]) -> Result<()> {
        self.put_blob(desc, &mut &data[..])
    }

    fn put_layer(
        &mut self,
        desc: &Descriptor,
        _diff_id: &Digest,
        data: &mut dyn Read,
    ) -> Result<()> {
        self.put_blob(desc, data)
    }

    /// Moves the file into the blob store when it is on the same file
    /// system (its size checked against `desc`), and copies it otherwise.
    fn put_layer_file(&mut self, desc: &Descriptor, diff_id: &Digest, path: &Path) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let size = fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if size != desc.size() {
            return Err(Error::BlobMismatch {
                blob: digest,
                reason: format!("it is {size} bytes, its descriptor says {}", desc.size()),
            });
        }
        if fs::rename(path, blob_path(&self.dir, &digest)).is_ok() {
            return Ok(());
        }
        let mut file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        self.put_layer(desc, diff_id, &mut file)
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        let desc = DescriptorBuilder::default()
            .media_type(MediaType::from(manifest.media_type.as_str()))
            .digest(oci_spec::image::Digest::from(manifest.digest))
            .size(manifest.bytes.len() as u64)
            .annotations(
                [(REF_NAME.to_string(), self.tag.clone())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .map_err(|e| Error::BadJson {
                what: "manifest descriptor".into(),
                reason: e.to_string(),
            })?;
        self.put_blob(&desc, &mut &manifest.bytes[..])?;
        let mut index = read_index(&self.dir)?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != Some(&self.tag))
            .cloned()
            .collect();
        manifests.push(desc);
        index.set_manifests(manifests);
        write_json(&self.dir.join("index.json"), &index)
    }
}
