//! Writing a sealed blob from a flattened tree whose contents a
//! [`ChunkStore`](crate::pack::ChunkStore) has already cut and compressed.
//!
//! [`SealPlan::new`] numbers the chunks in tree order and works out every
//! offset and the blob's size before anything is encrypted, so the blob can
//! be written in place inside a larger file (the sealed image's layer);
//! [`SealPlan::write`] encrypts and writes the chunks in parallel, then the
//! table, the index and the header.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use cocoon_image::{Digest, EntryKind};
use rayon::prelude::*;

use crate::aead::AeadKey;
use crate::error::{Error, Result};
use crate::format::{
    ChunkRecord, Header, CHUNK_AAD, FLAG_ENCRYPTED, FLAG_ZSTD, HEADER_LEN, INDEX_AAD, NONCE_LEN,
    TABLE_RECORD_LEN, TAG_LEN,
};
use crate::index::{DataRef, Index, IndexEntry};
use crate::keys::{DerivedKeys, ImageKey};
use crate::manifest::{TreeRecords, WorkloadManifest};
use crate::pack::{Chunks, Piece, ZSTD_LEVEL};

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    /// SHA-256 of the header (what the owner signs).
    pub header_digest: Digest,
    /// Total blob size.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Number of encrypted chunks.
    pub encrypted_chunks: u64,
    /// Content bytes before compression (distinct contents only).
    pub plain_bytes: u64,
}

/// One chunk of the blob: which piece, whether it is encrypted, where it goes.
struct Planned<'a> {
    piece: &'a Piece,
    encrypt: bool,
    /// Offset in the blob.
    offset: u64,
}

impl Planned<'_> {
    fn flags(&self) -> u8 {
        (if self.encrypt { FLAG_ENCRYPTED } else { 0 })
            | (if self.piece.zstd { FLAG_ZSTD } else { 0 })
    }
}

/// A sealed blob laid out but not yet written: chunk numbers, offsets and
/// size are fixed, nothing is encrypted yet.
pub struct SealPlan<'a> {
    chunks: &'a Chunks,
    keys: DerivedKeys,
    chunk_size: u32,
    tree_digest: Digest,
    planned: Vec<Planned<'a>>,
    /// The zstd-compressed JSON index, to be encrypted.
    index: Vec<u8>,
    table_offset: u64,
}

impl<'a> SealPlan<'a> {
    /// Lays out the blob of the tree with records `tree`, whose contents are
    /// in `chunks`: each distinct content once, in tree order; a content is
    /// encrypted when any path holding it is under an encrypted path of
    /// `manifest`. Refuses a tree or chunk size other than the manifest's.
    pub fn new(
        tree: TreeRecords,
        chunks: &'a Chunks,
        manifest: &WorkloadManifest,
        key: &ImageKey,
    ) -> Result<Self> {
        if *tree.summary() != manifest.tree || chunks.chunk_size != manifest.seal.chunk_size {
            return Err(Error::Tampered(
                "the tree to seal is not the tree the manifest describes".into(),
            ));
        }
        let records = tree.into_records();
        // A content shared by several paths is stored once, encrypted if any
        // of its paths is.
        let mut encrypt_content: HashMap<Digest, bool> = HashMap::new();
        for r in &records {
            if let EntryKind::File { digest, .. } = &r.kind {
                *encrypt_content.entry(*digest).or_default() |= manifest.is_encrypted(&r.path);
            }
        }
        let mut planned: Vec<Planned> = Vec::new();
        let mut offset = HEADER_LEN as u64;
        let mut stored: HashMap<Digest, DataRef> = HashMap::new();
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let data = match (&record.kind, &record.link) {
                (EntryKind::File { digest, .. }, None) => Some(match stored.get(digest) {
                    Some(d) => *d,
                    None => {
                        let content = chunks.contents.get(digest).ok_or_else(|| {
                            Error::Format(format!(
                                "no content for {} in the chunk store",
                                record.path
                            ))
                        })?;
                        let encrypt = encrypt_content[digest];
                        let first = planned.len() as u64;
                        for piece in chunks.pieces(*content) {
                            let p = Planned {
                                piece,
                                encrypt,
                                offset,
                            };
                            offset += stored_len(&p);
                            planned.push(p);
                        }
                        let d = DataRef {
                            first,
                            count: content.count as u64,
                        };
                        stored.insert(*digest, d);
                        d
                    }
                }),
                _ => None,
            };
            entries.push(IndexEntry { record, data });
        }
        let index = Index {
            tree_digest: manifest.tree.digest,
            entries,
        };
        let json = serde_json::to_vec(&index).map_err(crate::manifest::Error::from)?;
        let index = zstd::bulk::compress(&json, ZSTD_LEVEL)
            .map_err(|e| Error::io("compressing the index", e))?;
        Ok(SealPlan {
            chunks,
            keys: key.derive(&manifest.tree.digest),
            chunk_size: manifest.seal.chunk_size,
            tree_digest: manifest.tree.digest,
            planned,
            index,
            table_offset: offset,
        })
    }

    fn table_len(&self) -> u64 {
        (self.planned.len() * TABLE_RECORD_LEN) as u64
    }

    fn index_len(&self) -> u64 {
        (NONCE_LEN + self.index.len() + TAG_LEN) as u64
    }

    /// The size the blob will have.
    pub fn size(&self) -> u64 {
        self.table_offset + self.table_len() + self.index_len()
    }

    /// Writes the blob into `out` from offset `at` (the bytes from `at` to
    /// `at + size()` are overwritten): encrypts the chunks of encrypted
    /// contents in parallel, then writes the table, the index and the
    /// header. Deterministic: the same inputs give the same bytes.
    pub fn write(&self, out: &File, at: u64) -> Result<SealSummary> {
        let io = |e| Error::io("writing sealed blob", e);
        let chunk_key = AeadKey::new(&self.keys.chunk)?;
        let table: Vec<ChunkRecord> = self
            .planned
            .par_iter()
            .enumerate()
            .with_min_len(8)
            .map(|(number, p)| {
                let body = self
                    .chunks
                    .read(p.piece)
                    .map_err(|e| Error::io("reading a stored chunk", e))?;
                let flags = p.flags();
                let bytes = if p.encrypt {
                    let number = number as u64;
                    Cow::Owned(chunk_key.seal(
                        self.keys.nonce(CHUNK_AAD, number, &body),
                        &body,
                        &chunk_aad(number, flags, p.piece.plain_len),
                    )?)
                } else {
                    body
                };
                out.write_all_at(&bytes, at + p.offset).map_err(io)?;
                Ok(ChunkRecord {
                    offset: p.offset,
                    stored_len: bytes.len() as u32,
                    plain_len: p.piece.plain_len,
                    flags,
                    digest: Digest::of(&bytes),
                })
            })
            .collect::<Result<_>>()?;
        let mut encoded_table = Vec::with_capacity(self.table_len() as usize);
        for r in &table {
            r.encode_into(&mut encoded_table);
        }
        let table_digest = Digest::of(&encoded_table);
        out.write_all_at(&encoded_table, at + self.table_offset)
            .map_err(io)?;
        let stored_index = AeadKey::new(&self.keys.index)?.seal(
            self.keys.nonce(INDEX_AAD, 0, &self.index),
            &self.index,
            &[INDEX_AAD, &table_digest.0].concat(),
        )?;
        let index_offset = self.table_offset + self.table_len();
        out.write_all_at(&stored_index, at + index_offset)
            .map_err(io)?;
        let header = Header {
            chunk_size: self.chunk_size,
            chunk_count: table.len() as u64,
            table_offset: self.table_offset,
            table_len: self.table_len(),
            table_digest,
            index_offset,
            index_len: stored_index.len() as u64,
            index_digest: Digest::of(&stored_index),
            tree_digest: self.tree_digest,
        };
        let encoded = header.encode();
        out.write_all_at(&encoded, at).map_err(io)?;
        Ok(SealSummary {
            header_digest: Digest::of(&encoded),
            size: self.size(),
            chunks: header.chunk_count,
            encrypted_chunks: self.planned.iter().filter(|p| p.encrypt).count() as u64,
            plain_bytes: self
                .planned
                .iter()
                .map(|p| u64::from(p.piece.plain_len))
                .sum(),
        })
    }
}

/// Bytes a planned chunk takes in the blob.
fn stored_len(p: &Planned) -> u64 {
    u64::from(p.piece.len)
        + if p.encrypt {
            (NONCE_LEN + TAG_LEN) as u64
        } else {
            0
        }
}

/// The additional data that binds an encrypted chunk to its place.
pub(crate) fn chunk_aad(number: u64, flags: u8, plain_len: u32) -> Vec<u8> {
    [
        CHUNK_AAD,
        &number.to_le_bytes(),
        &[flags],
        &plain_len.to_le_bytes(),
    ]
    .concat()
}
