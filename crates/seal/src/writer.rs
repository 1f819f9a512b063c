//! Writing a sealed blob from a flattened tree whose contents a
//! [`ChunkStore`](crate::pack::ChunkStore) has already cut and compressed.
//!
//! [`SealPlan::new`] numbers the chunks in tree order and works out every
//! offset and the blob's size before anything is encrypted (a tar header in
//! front of the blob needs the size); [`SealPlan::write`] then writes it
//! front to back: the chunks a batch at a time, each batch encrypted (in
//! parallel) and written while a thread of its own hashes the batches
//! before it into the digest of whatever holds the blob (SHA-256 is one
//! sequential stream), then the table, the index and the trailer.

use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::sync::mpsc;

use cocoon_image::{Digest, EntryKind};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::aead::AeadKey;
use crate::error::{Error, Result};
use crate::format::{
    BlobDigest, ChunkRecord, Trailer, CHUNK_AAD, FLAG_ENCRYPTED, FLAG_ZSTD, INDEX_AAD, NONCE_LEN,
    TABLE_RECORD_LEN, TAG_LEN, TRAILER_LEN,
};
use crate::index::{DataRef, Index, IndexEntry};
use crate::keys::{DerivedKeys, ImageKey};
use crate::manifest::{TreeRecords, WorkloadManifest};
use crate::pack::{Chunks, Stored, ZSTD_LEVEL};

/// Chunks encrypted together while the batch before them is hashed.
const BATCH: usize = 256;

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    /// SHA-256 of the trailer (what the owner signs).
    pub trailer_digest: Digest,
    /// Total blob size.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Number of encrypted chunks.
    pub encrypted_chunks: u64,
    /// Content bytes before compression (distinct contents only).
    pub plain_bytes: u64,
}

/// One chunk of the blob: which piece of the chunk store, its lengths,
/// whether it is encrypted, where it goes.
struct Planned {
    piece: usize,
    /// Bytes in the chunk store.
    len: u32,
    plain_len: u32,
    zstd: bool,
    encrypt: bool,
    /// Offset in the blob.
    offset: u64,
}

impl Planned {
    fn flags(&self) -> u8 {
        (if self.encrypt { FLAG_ENCRYPTED } else { 0 }) | (if self.zstd { FLAG_ZSTD } else { 0 })
    }

    /// Bytes the chunk takes in the blob.
    fn stored_len(&self) -> u64 {
        u64::from(self.len)
            + if self.encrypt {
                (TAG_LEN + NONCE_LEN) as u64
            } else {
                0
            }
    }
}

/// A sealed blob laid out but not yet written: chunk numbers, offsets and
/// size are fixed, nothing is encrypted yet.
pub struct SealPlan {
    keys: DerivedKeys,
    chunk_size: u32,
    tree_digest: Digest,
    planned: Vec<Planned>,
    /// The zstd-compressed JSON index, to be encrypted.
    index: Vec<u8>,
    table_offset: u64,
}

impl SealPlan {
    /// Lays out the blob of the tree with records `tree`, whose contents are
    /// in `chunks`: each distinct content once, in tree order; a content is
    /// encrypted when any path holding it is under an encrypted path of
    /// `manifest`. Refuses a tree or chunk size other than the manifest's.
    pub fn new(
        tree: TreeRecords,
        chunks: &Chunks,
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
        let mut offset = 0u64;
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
                        for (i, piece) in chunks.pieces(*content).iter().enumerate() {
                            let p = Planned {
                                piece: content.first + i,
                                len: piece.len,
                                plain_len: piece.plain_len,
                                zstd: piece.zstd,
                                encrypt,
                                offset,
                            };
                            offset += p.stored_len();
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
        (self.index.len() + TAG_LEN + NONCE_LEN) as u64
    }

    /// The size the blob will have.
    pub fn size(&self) -> u64 {
        self.table_offset + self.table_len() + self.index_len() + TRAILER_LEN as u64
    }

    /// Writes the blob, [`SealPlan::size`] bytes, to `out`, taking the
    /// stored chunks out of `chunks`, and feeds its bytes in order to
    /// `hasher`: encrypts and writes the chunks (in parallel, a batch at a
    /// time), then the table, the index and the trailer. Deterministic: the
    /// same inputs give the same bytes.
    pub fn write(
        &self,
        mut chunks: Chunks,
        out: &mut (impl Write + Send),
        hasher: &mut Sha256,
    ) -> Result<SealSummary> {
        let io = |e| Error::io("writing the sealed blob", e);
        let chunk_key = AeadKey::new(&self.keys.chunk, &self.keys.nonce, CHUNK_AAD)?;
        let mut table = Vec::with_capacity(self.table_len() as usize);
        // The hashing thread takes each batch once it is written; the
        // channel holds two, which bounds the memory in flight.
        let (to_hash, batches) = mpsc::sync_channel::<Vec<Vec<u8>>>(2);
        std::thread::scope(|scope| -> Result<()> {
            let hashing = &mut *hasher;
            scope.spawn(move || {
                for batch in batches {
                    batch.iter().for_each(|bytes| hashing.update(bytes));
                }
            });
            for (b, batch) in self.planned.chunks(BATCH).enumerate() {
                let first = (b * BATCH) as u64;
                let taken: Vec<Stored> = batch.iter().map(|p| chunks.take(p.piece)).collect();
                let sealed = taken
                    .into_par_iter()
                    .zip(batch)
                    .enumerate()
                    .with_min_len(8)
                    .map(|(i, (stored, p))| {
                        let mut bytes = chunks
                            .load(stored, p.len)
                            .map_err(|e| Error::io("reading a stored chunk", e))?;
                        let number = first + i as u64;
                        if p.encrypt {
                            let aad = chunk_aad(number, p.flags(), p.plain_len);
                            chunk_key.seal(number, &mut bytes, &aad)?;
                        }
                        let record = ChunkRecord {
                            offset: p.offset,
                            stored_len: bytes.len() as u32,
                            plain_len: p.plain_len,
                            flags: p.flags(),
                            digest: BlobDigest::of(&bytes),
                        };
                        Ok((bytes, record))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let bytes: Vec<Vec<u8>> = sealed
                    .into_iter()
                    .map(|(bytes, record)| {
                        record.encode_into(&mut table);
                        bytes
                    })
                    .collect();
                // One call for the batch: thousands of small writes cost
                // ext4 more than encrypting them.
                let mut slices: Vec<IoSlice> = bytes.iter().map(|b| IoSlice::new(b)).collect();
                write_all_vectored(out, &mut slices).map_err(io)?;
                to_hash
                    .send(bytes)
                    .map_err(|_| io(io::Error::other("the hashing thread stopped")))?;
            }
            drop(to_hash);
            Ok(())
        })?;
        let mut write = |bytes: &[u8]| {
            hasher.update(bytes);
            out.write_all(bytes).map_err(io)
        };
        let table_digest = BlobDigest::of(&table);
        write(&table)?;
        let mut stored_index = self.index.clone();
        AeadKey::new(&self.keys.index, &self.keys.nonce, INDEX_AAD)?.seal(
            0,
            &mut stored_index,
            &[INDEX_AAD, &table_digest.0].concat(),
        )?;
        let index_offset = self.table_offset + self.table_len();
        write(&stored_index)?;
        let trailer = Trailer {
            chunk_size: self.chunk_size,
            chunk_count: self.planned.len() as u64,
            table_offset: self.table_offset,
            table_len: self.table_len(),
            table_digest,
            index_offset,
            index_len: stored_index.len() as u64,
            index_digest: BlobDigest::of(&stored_index),
            tree_digest: self.tree_digest,
        };
        let encoded = trailer.encode();
        write(&encoded)?;
        Ok(SealSummary {
            trailer_digest: Digest::of(&encoded),
            size: self.size(),
            chunks: trailer.chunk_count,
            encrypted_chunks: self.planned.iter().filter(|p| p.encrypt).count() as u64,
            plain_bytes: self.planned.iter().map(|p| u64::from(p.plain_len)).sum(),
        })
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

/// Writes all of `slices` with as few calls as the kernel allows.
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
