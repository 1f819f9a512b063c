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
