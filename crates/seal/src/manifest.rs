//! The workload manifest: canonical JSON (RFC 8785) naming everything that
//! decides what runs: the file tree (by its digest) and the runtime config.
//! Its SHA-256 is the workload digest. The schema is documented in
//! `docs/manifest.md`.

use std::collections::{BTreeMap, HashMap};

use cocoon_image::{Digest, Entry, EntryKind, ResolvedImage, Tree};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The schema identifier of this manifest version.
pub const SCHEMA: &str = "cocoon.dev/workload/v1";

/// Errors building or reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image config has a value the manifest cannot hold.
    #[error("image config: {0}")]
    Config(String),
    /// Serialising to canonical JSON failed.
    #[error("canonical JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The part of the image config that decides how the app starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Entrypoint argv (may be empty).
    pub entrypoint: Vec<String>,
    /// Default arguments (appended to the entrypoint).
    pub cmd: Vec<String>,
    /// Environment, `NAME=VALUE`, in image order.
    pub env: Vec<String>,
    /// `user[:group]` by name or number; empty means root.
    pub user: String,
    /// Working directory; empty means `/`.
    pub workdir: String,
    /// Exposed ports (`80/tcp`), sorted.
    pub ports: Vec<String>,
    /// Signal that asks the app to stop, when the image names one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stop_signal: Option<String>,
}

impl RuntimeConfig {
    /// Extracts the runtime config from an image config.
    pub fn from_image(image: &ResolvedImage) -> Self {
        let Some(c) = image.config.config() else {
            return RuntimeConfig::default();
        };
        let mut ports: Vec<String> = c.exposed_ports().clone().unwrap_or_default();
        ports.sort();
        ports.dedup();
        RuntimeConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            workdir: c.working_dir().clone().unwrap_or_default(),
            ports,
            stop_signal: c.stop_signal().clone(),
        }
    }
}

/// What the tree digest covers, with counts for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSummary {
    /// SHA-256 over the tree's canonical entry records (`docs/manifest.md`).
    pub digest: Digest,
    /// Number of paths, the root included.
    pub entries: u64,
    /// Total bytes of distinct regular files (hardlinks counted once).
    pub bytes: u64,
}

/// Target OS and architecture of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub architecture: String,
}

/// The workload manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadManifest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Target platform.
    pub platform: PlatformSpec,
    /// How the app starts.
    pub config: RuntimeConfig,
    /// The file tree.
    pub tree: TreeSummary,
}

impl WorkloadManifest {
    /// The manifest of an image whose flattened tree is `tree`.
    pub fn new(image: &ResolvedImage, tree: &Tree) -> Result<Self, Error> {
        Ok(WorkloadManifest {
            schema: SCHEMA.to_string(),
            platform: PlatformSpec {
                os: image.config.os().to_string(),
                architecture: image.config.architecture().to_string(),
            },
            config: RuntimeConfig::from_image(image),
            tree: summarize(tree)?,
        })
    }

    /// The canonical JSON (RFC 8785) bytes.
    pub fn canonical_json(&self) -> Result<Vec<u8>, Error> {
        Ok(serde_json_canonicalizer::to_vec(self)?)
    }

    /// The workload digest: SHA-256 of the canonical JSON.
    pub fn digest(&self) -> Result<Digest, Error> {
        Ok(Digest::of(&self.canonical_json()?))
    }
}

/// One line of the tree digest input.
#[derive(Serialize)]
struct Record<'a> {
    path: &'a str,
    #[serde(flatten)]
    kind: &'a EntryKind,
    mode: u32,
    uid: u64,
    gid: u64,
    /// Directory mtimes change whenever a layer adds to them, so they are left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime: Option<i64>,
    xattrs: BTreeMap<&'a str, String>,
    /// For the second and later paths of a hardlinked file: the first path.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
}

/// Computes the tree digest: SHA-256 over one canonical JSON record per path,
/// in byte order of the paths, each followed by `\n`.
pub fn summarize(tree: &Tree) -> Result<TreeSummary, Error> {
    // The first path (in order) of every hardlinked file.
    let mut first_of_inode: HashMap<u64, &str> = HashMap::new();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    for (path, entry) in tree.iter() {
        let Entry {
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        } = entry;
        let mut link = None;
        if let EntryKind::File { size, inode, .. } = kind {
            match first_of_inode.get(inode) {
                Some(first) => link = Some(*first),
                None => {
                    first_of_inode.insert(*inode, path);
                    bytes += size;
                }
            }
        }
        let record = Record {
            path,
            kind,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            mtime: (!entry.is_dir()).then_some(*mtime),
            xattrs: xattrs
                .iter()
                .map(|(k, v)| (k.as_str(), hex::encode(v)))
                .collect(),
            link,
        };
        hasher.update(serde_json_canonicalizer::to_vec(&record)?);
        hasher.update(b"\n");
    }
    Ok(TreeSummary {
        digest: Digest(hasher.finalize().into()),
        entries: tree.len() as u64,
        bytes,
    })
}
