//! Hand-built OCI image layouts for tests that need images no honest tool
//! would make (path traversal, corrupt streams, wrong digests). Written here
//! byte by byte, independently of cocoon's own writer.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One layer: its media type, the blob bytes, and the digest of the
/// uncompressed tar (the config's diff_id).
pub struct Layer {
    /// Layer media type.
    pub media_type: String,
    /// Blob as stored.
    pub blob: Vec<u8>,
    /// diff_id.
    pub diff_id: String,
}

impl Layer {
    /// An uncompressed tar layer.
    pub fn tar(tar: Vec<u8>) -> Self {
        Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            diff_id: digest(&tar),
            blob: tar,
        }
    }

    /// A gzip layer of `tar`.
    pub fn gzip(tar: Vec<u8>) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&tar).unwrap();
        Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: digest(&tar),
            blob: enc.finish().unwrap(),
        }
    }
}

/// Writes an OCI layout at `dir` holding one image tagged `tag` made of
/// `layers`; returns the layer blob paths in order.
pub fn write_image(dir: &Path, tag: &str, layers: &[Layer]) -> Vec<std::path::PathBuf> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = digest(data);
        fs::write(blobs.join(&d[7..]), data).unwrap();
        d
    };
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let mut paths = Vec::new();
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let d = put(&l.blob);
            paths.push(blobs.join(&d[7..]));
            serde_json::json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    paths
}

/// Builds tar streams entry by entry, writing raw names so that hostile paths
/// (`..`, absolute) get through, which `tar::Builder` would refuse.
#[derive(Default)]
pub struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    /// A new, empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        let field = &mut h.as_old_mut().name;
        assert!(
            name.len() < field.len(),
            "test names must fit the ustar name field"
        );
        field[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_000_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    /// Adds a regular file.
    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, None);
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
        self
    }

    /// Adds a directory.
    pub fn dir(mut self, name: &str) -> Self {
        self.out
            .extend_from_slice(Self::header(name, tar::EntryType::Directory, 0, None).as_bytes());
        self
    }

    /// Adds a symlink.
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.out.extend_from_slice(
            Self::header(name, tar::EntryType::Symlink, 0, Some(target)).as_bytes(),
        );
        self
    }

    /// Adds a hardlink.
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.out.extend_from_slice(
            Self::header(name, tar::EntryType::Link, 0, Some(target)).as_bytes(),
        );
        self
    }

    /// Ends the stream (two zero blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Plays an attacker who controls the registry: rewrites the files of one
/// uncompressed layer of the image tagged `tag` with `edit`, then re-hashes
/// everything (layer blob, config diff_ids, manifest, index) so that no
/// OCI-level digest gives the change away. Files are (path, mode, bytes).
pub fn rewrite_layer(
    layout: &Path,
    tag: &str,
    layer: usize,
    edit: impl FnOnce(&mut Vec<(String, u32, Vec<u8>)>),
) {
    let blobs = layout.join("blobs/sha256");
    let blob = |d: &str| blobs.join(&d[7..]);
    let mut index = read_json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in index");
    let mut manifest = read_json(&blob(entry["digest"].as_str().unwrap()));
    let mut config = read_json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let layer_digest = manifest["layers"][layer]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(blob(&layer_digest)).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_dir() {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mode = e.header().mode().unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.push((path, mode, data));
    }
    edit(&mut files);
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        builder.append_data(&mut h, path, &data[..]).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let new_digest = digest(&tar);
    fs::write(blob(&new_digest), &tar).unwrap();
    manifest["layers"][layer]["digest"] = new_digest.clone().into();
    manifest["layers"][layer]["size"] = tar.len().into();
    config["rootfs"]["diff_ids"][layer] = new_digest.into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = digest(&config_bytes);
    fs::write(blob(&config_digest), &config_bytes).unwrap();
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = digest(&manifest_bytes);
    fs::write(blob(&manifest_digest), &manifest_bytes).unwrap();
    entry["digest"] = manifest_digest.into();
    entry["size"] = manifest_bytes.len().into();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}
