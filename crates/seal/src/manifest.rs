//! The workload manifest: canonical JSON (RFC 8785) naming everything that
//! decides what runs: the file tree (by its digest), the runtime config, the
//! seal parameters, secret references, shield ports and the launcher. Its
//! SHA-256 is the workload digest. The schema is documented in
//! `docs/manifest.md`.

use std::collections::{BTreeMap, HashMap};

use cocoon_image::{Digest, Entry, EntryKind, ResolvedImage, Tree};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The schema identifier of this manifest version.
pub const SCHEMA: &str = "cocoon.dev/workload/v1";

/// The sealed format the manifest's seal parameters describe.
pub const SEAL_FORMAT: &str = "cocoon-seal/2";

/// Default chunk size of sealed files: small enough that a random 4 KiB
/// read decrypts little (1.12x gocryptfs at random, where 64 KiB was at
/// parity), large enough for compression (1 % more sealed bytes than
/// 64 KiB) and for sequential reads (the same MB/s as 64 KiB);
/// BENCHMARKS.md "Sealed FUSE reads".
pub const DEFAULT_CHUNK_SIZE: u32 = 32 * 1024;

/// Errors building or reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option has a value the manifest cannot hold.
    #[error("{0}")]
    Invalid(String),
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

/// How the tree is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealParams {
    /// Always [`SEAL_FORMAT`].
    pub format: String,
    /// Bytes of file content per chunk.
    pub chunk_size: u32,
    /// Paths whose content is encrypted (with everything below them),
    /// sorted; `["/"]` encrypts everything. File names and metadata are
    /// always encrypted.
    pub encrypted: Vec<String>,
    /// The KBS resource holding the image key.
    pub key: String,
}

/// A secret the launcher fetches from the KBS and hands to the app.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// `kbs:///REPO/TYPE/TAG`.
    pub uri: String,
    /// Environment variable to set, if delivered as env.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub env: Option<String>,
    /// Absolute path (in memory, inside the tree), if delivered as a file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
}

/// A port the shield serves with attested TLS, forwarding to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShieldPort {
    /// Port clients connect to (TLS).
    pub public: u16,
    /// Port the app listens on (plaintext, inside the TEE).
    pub app: u16,
}

/// The options that shape a workload beyond its image; `cocoon measure` and
/// `cocoon convert` take the same ones and so produce the same digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// Encrypted path prefixes; `/` for everything.
    pub encrypted: Vec<String>,
    /// Secrets.
    pub secrets: Vec<SecretRef>,
    /// Shield ports.
    pub shield: Vec<ShieldPort>,
    /// Chunk size.
    pub chunk_size: u32,
    /// KBS resource of the image key; `None` derives one from the tree digest.
    pub key_uri: Option<String>,
    /// SHA-256 of the launcher binary.
    pub launcher: Digest,
}

/// Checks a `kbs:///REPO/TYPE/TAG` resource URI.
pub fn check_kbs_uri(uri: &str) -> Result<(), Error> {
    let bad = || {
        Error::Invalid(format!(
            "invalid KBS resource {uri:?}: expected kbs:///REPO/TYPE/TAG"
        ))
    };
    let rest = uri.strip_prefix("kbs:///").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if parts.len() != 3 || !parts.iter().all(|p| ok(p)) {
        return Err(bad());
    }
    Ok(())
}

/// Normalises an absolute path (`/a/b`), refusing `..` and relative paths.
pub fn normalize_path(path: &str) -> Result<String, Error> {
    if !path.starts_with('/') {
        return Err(Error::Invalid(format!("path {path:?} must be absolute")));
    }
    let mut out = String::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::Invalid(format!(
                    "path {path:?} must not contain '..'"
                )))
            }
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    Ok(if out.is_empty() { "/".into() } else { out })
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
    /// How the tree is sealed.
    pub seal: SealParams,
    /// Secrets from the KBS, sorted.
    pub secrets: Vec<SecretRef>,
    /// Shield ports, sorted.
    pub shield: Vec<ShieldPort>,
    /// SHA-256 of the launcher binary.
    pub launcher: Digest,
}

impl WorkloadManifest {
    /// The manifest of an image whose flattened tree is summarized by `tree`.
    pub fn new(
        image: &ResolvedImage,
        tree: TreeSummary,
        opts: &WorkloadOptions,
    ) -> Result<Self, Error> {
        let mut encrypted = opts
            .encrypted
            .iter()
            .map(|p| normalize_path(p))
            .collect::<Result<Vec<_>, _>>()?;
        encrypted.sort();
        encrypted.dedup();
        if encrypted.iter().any(|p| p == "/") {
            encrypted = vec!["/".into()];
        }
        let key = match &opts.key_uri {
            Some(uri) => uri.clone(),
            None => format!("kbs:///cocoon/image-key/{}", tree.digest.hex()),
        };
        check_kbs_uri(&key)?;
        let mut secrets = opts.secrets.clone();
        for s in &mut secrets {
            check_kbs_uri(&s.uri)?;
            if let Some(p) = &s.path {
                s.path = Some(normalize_path(p)?);
            }
            if s.env.is_none() == s.path.is_none() {
                return Err(Error::Invalid(format!(
                    "secret {} needs exactly one of env or path",
                    s.uri
                )));
            }
        }
        secrets.sort();
        let mut shield = opts.shield.clone();
        shield.sort();
        check_chunk_size(opts.chunk_size)?;
        Ok(WorkloadManifest {
            schema: SCHEMA.to_string(),
            platform: PlatformSpec {
                os: image.config.os().to_string(),
                architecture: image.config.architecture().to_string(),
            },
            config: RuntimeConfig::from_image(image),
            tree,
            seal: SealParams {
                format: SEAL_FORMAT.into(),
                chunk_size: opts.chunk_size,
                encrypted,
                key,
            },
            secrets,
            shield,
            launcher: opts.launcher,
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

    /// Whether the content at `path` is encrypted.
    pub fn is_encrypted(&self, path: &str) -> bool {
        self.seal.encrypted.iter().any(|p| {
            p == "/"
                || path == p
                || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
        })
    }
}

/// One path of the tree as the tree digest and the sealed index record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    /// Absolute normalised path.
    pub path: String,
    /// What the path is.
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// mtime; absent for directories, whose mtimes depend on layering.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mtime: Option<i64>,
    /// xattr name -> lowercase hex value.
    pub xattrs: BTreeMap<String, String>,
    /// For the second and later paths of a hardlinked file: the first path.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link: Option<String>,
}

/// Refuses a chunk size the format does not allow: a power of two from 4 KiB
/// to 16 MiB.
pub fn check_chunk_size(size: u32) -> Result<(), Error> {
    if size < 4096 || !size.is_power_of_two() || size > 16 << 20 {
        return Err(Error::Invalid(format!(
            "chunk size {size} must be a power of two from 4096 to 16777216"
        )));
    }
    Ok(())
}

/// The records of every path of `tree`, in byte order of the paths.
pub fn tree_records(tree: &Tree) -> Vec<TreeRecord> {
    let mut first_of_inode: HashMap<u64, &str> = HashMap::new();
    tree.iter()
        .map(|(path, entry)| {
            let Entry {
                kind,
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            } = entry;
            let mut link = None;
            if let EntryKind::File { inode, .. } = kind {
                match first_of_inode.get(inode) {
                    Some(first) => link = Some(first.to_string()),
                    None => {
                        first_of_inode.insert(*inode, path);
                    }
                }
            }
            TreeRecord {
                path: path.to_string(),
                kind: kind.clone(),
                mode: *mode,
                uid: *uid,
                gid: *gid,
                mtime: (!entry.is_dir()).then_some(*mtime),
                xattrs: xattrs
                    .iter()
                    .map(|(k, v)| (k.clone(), hex::encode(v)))
                    .collect(),
                link,
            }
        })
        .collect()
}

/// The tree digest: SHA-256 over one canonical JSON record per path, in
/// byte order of the paths, each followed by `\n`; plus the counts.
pub fn summarize_records(records: &[TreeRecord]) -> Result<TreeSummary, Error> {
    // Canonical JSON is the costly part: made in parallel, hashed in order.
    let lines = records
        .par_iter()
        .map(serde_json_canonicalizer::to_vec)
        .collect::<Result<Vec<_>, _>>()?;
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line);
        hasher.update(b"\n");
    }
    let bytes = records
        .iter()
        .map(|record| match (&record.kind, &record.link) {
            (EntryKind::File { size, .. }, None) => *size,
            _ => 0,
        })
        .sum();
    Ok(TreeSummary {
        digest: Digest(hasher.finalize().into()),
        entries: records.len() as u64,
        bytes,
    })
}

/// The tree digest of a flattened tree.
pub fn summarize(tree: &Tree) -> Result<TreeSummary, Error> {
    summarize_records(&tree_records(tree))
}

/// The records of a flattened tree together with their summary, worked out
/// once for both the manifest and the sealed index (canonical JSON of every
/// record is the costly part). The summary always matches the records.
#[derive(Debug, Clone)]
pub struct TreeRecords {
    records: Vec<TreeRecord>,
    summary: TreeSummary,
}

impl TreeRecords {
    /// The records and summary of `tree`.
    pub fn of(tree: &Tree) -> Result<Self, Error> {
        let records = tree_records(tree);
        let summary = summarize_records(&records)?;
        Ok(TreeRecords { records, summary })
    }

    /// The summary (tree digest and counts).
    pub fn summary(&self) -> &TreeSummary {
        &self.summary
    }

    /// The records, in byte order of the paths.
    pub(crate) fn into_records(self) -> Vec<TreeRecord> {
        self.records
    }
}
