//! The sealed index: every path's tree record plus where its content lives.
//! Stored as zstd-compressed JSON, encrypted and authenticated.

use serde::{Deserialize, Serialize};

use cocoon_image::Digest;

use crate::manifest::TreeRecord;

/// Where a file's content lives: `count` chunks from chunk `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRef {
    /// First chunk number.
    pub first: u64,
    /// Number of chunks (0 for an empty file).
    pub count: u64,
}

/// One path in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The path's tree record, exactly as the tree digest hashes it.
    #[serde(flatten)]
    pub record: TreeRecord,
    /// Content location; present for regular files that are not the second
    /// or later path of a hardlink (those read through `record.link`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<DataRef>,
}

/// The whole index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The tree digest these records hash to.
    pub tree_digest: Digest,
    /// Every path, in byte order.
    pub entries: Vec<IndexEntry>,
}
