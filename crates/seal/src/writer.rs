//! Writing a sealed blob from a flattened tree.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use cocoon_image::store::ContentSource;
use cocoon_image::{Digest, EntryKind, Tree};
use rayon::prelude::*;

use crate::aead::AeadKey;
use crate::error::{Error, Result};
use crate::format::{
    ChunkRecord, Header, CHUNK_AAD, FLAG_ENCRYPTED, FLAG_ZSTD, HEADER_LEN, INDEX_AAD,
};
use crate::index::{DataRef, Index, IndexEntry};
use crate::keys::{DerivedKeys, ImageKey};
use crate::manifest::{summarize_records, tree_records, WorkloadManifest};

/// zstd level for chunks: fast, and within a few percent of gzip -6 sizes.
const ZSTD_LEVEL: i32 = 3;
/// Chunks shorter than this are stored as they are: compressing them saves
/// next to nothing.
const MIN_COMPRESS: usize = 256;
/// Chunks processed in parallel per batch.
const BATCH: usize = 64;

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

/// Seals `tree` (contents in `store`) into `out`, which must be empty and
/// writable: chunks content by `manifest.seal.chunk_size`, compresses each
/// chunk where that saves space, encrypts the content of encrypted paths and
/// the index under keys derived from `key` and the tree digest.
/// Deterministic: the same inputs give the same bytes.
pub fn seal_tree(
    tree: &Tree,
    store: &dyn ContentSource,
    manifest: &WorkloadManifest,
    key: &ImageKey,
    out: &mut File,
) -> Result<SealSummary> {
    let records = tree_records(tree);
    let summary = summarize_records(&records)?;
    if summary != manifest.tree {
        return Err(Error::Tampered(
            "the tree to seal is not the tree the manifest describes".into(),
        ));
    }
    let keys = key.derive(&manifest.tree.digest);
    // A content shared by several paths is stored once, encrypted if any of
    // its paths is.
    let mut encrypt_content: HashMap<Digest, bool> = HashMap::new();
    for r in &records {
        if let EntryKind::File { digest, .. } = &r.kind {
            *encrypt_content.entry(*digest).or_default() |= manifest.is_encrypted(&r.path);
        }
    }
    let mut writer = ChunkWriter {
        out: BufWriter::with_capacity(
            1 << 20,
            out.try_clone()
                .map_err(|e| Error::io("cloning output", e))?,
        ),
        keys: &keys,
        chunk_size: manifest.seal.chunk_size as usize,
        table: Vec::new(),
        offset: HEADER_LEN as u64,
        encrypted_chunks: 0,
        plain_bytes: 0,
    };
    writer
        .out
        .write_all(&[0u8; HEADER_LEN])
        .map_err(|e| Error::io("writing sealed blob", e))?;
    let mut stored: HashMap<Digest, DataRef> = HashMap::new();
    let mut entries = Vec::with_capacity(records.len());
    for record in records {
        let data = match (&record.kind, &record.link) {
            (EntryKind::File { digest, size, .. }, None) => Some(match stored.get(digest) {
                Some(d) => *d,
                None => {
                    let mut src = store
                        .open_content(digest)
                        .map_err(|e| Error::io(format!("reading content of {}", record.path), e))?;
                    let d = writer.write_content(
                        &mut src,
                        *size,
                        encrypt_content[digest],
                        &record.path,
                    )?;
                    stored.insert(*digest, d);
                    d
                }
            }),
            _ => None,
        };
        entries.push(IndexEntry { record, data });
    }
    writer.finish(manifest, entries)
}

struct ChunkWriter<'a> {
    out: BufWriter<File>,
    keys: &'a DerivedKeys,
    chunk_size: usize,
    table: Vec<ChunkRecord>,
    offset: u64,
    encrypted_chunks: u64,
    plain_bytes: u64,
}

impl ChunkWriter<'_> {
    /// Chunks, compresses and encrypts one file's content.
    fn write_content(
        &mut self,
        src: &mut dyn Read,
        size: u64,
        encrypt: bool,
        path: &str,
    ) -> Result<DataRef> {
        let first = self.table.len() as u64;
        let mut left = size;
        while left > 0 {
            let mut batch = Vec::with_capacity(BATCH);
            while left > 0 && batch.len() < BATCH {
                let n = left.min(self.chunk_size as u64) as usize;
                let mut buf = vec![0u8; n];
                src.read_exact(&mut buf)
                    .map_err(|e| Error::io(format!("reading content of {path}"), e))?;
                left -= n as u64;
                batch.push(buf);
            }
            let base = self.table.len() as u64;
            let keys = self.keys;
            let sealed: Vec<(Vec<u8>, u8, u32)> = batch
                .into_par_iter()
                .enumerate()
                .map(|(i, plain)| seal_chunk(keys, base + i as u64, plain, encrypt))
                .collect::<Result<_>>()?;
            for (bytes, flags, plain_len) in sealed {
                self.out
                    .write_all(&bytes)
                    .map_err(|e| Error::io("writing sealed blob", e))?;
                self.table.push(ChunkRecord {
                    offset: self.offset,
                    stored_len: bytes.len() as u32,
                    plain_len,
                    flags,
                    digest: Digest::of(&bytes),
                });
                self.offset += bytes.len() as u64;
                self.plain_bytes += u64::from(plain_len);
                self.encrypted_chunks += u64::from(flags & FLAG_ENCRYPTED != 0);
            }
        }
        Ok(DataRef {
            first,
            count: self.table.len() as u64 - first,
        })
    }

    /// Writes the table, the index and the header.
    fn finish(
        mut self,
        manifest: &WorkloadManifest,
        entries: Vec<IndexEntry>,
    ) -> Result<SealSummary> {
        let io = |e| Error::io("writing sealed blob", e);
        let mut table = Vec::with_capacity(self.table.len() * crate::format::TABLE_RECORD_LEN);
        for r in &self.table {
            r.encode_into(&mut table);
        }
        let table_digest = Digest::of(&table);
        let table_offset = self.offset;
        self.out.write_all(&table).map_err(io)?;
        let index = Index {
            tree_digest: manifest.tree.digest,
            entries,
        };
        let json = serde_json::to_vec(&index).map_err(crate::manifest::Error::from)?;
        let plain = zstd::bulk::compress(&json, ZSTD_LEVEL)
            .map_err(|e| Error::io("compressing the index", e))?;
        let stored_index = encrypt(
            &self.keys.index,
            self.keys.nonce(INDEX_AAD, 0, &plain),
            &plain,
            &[INDEX_AAD, &table_digest.0].concat(),
        )?;
        let index_offset = table_offset + table.len() as u64;
        self.out.write_all(&stored_index).map_err(io)?;
        let header = Header {
            chunk_size: manifest.seal.chunk_size,
            chunk_count: self.table.len() as u64,
            table_offset,
            table_len: table.len() as u64,
            table_digest,
            index_offset,
            index_len: stored_index.len() as u64,
            index_digest: Digest::of(&stored_index),
            tree_digest: manifest.tree.digest,
        };
        let encoded = header.encode();
        let mut file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&encoded).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(SealSummary {
            header_digest: Digest::of(&encoded),
            size: index_offset + stored_index.len() as u64,
            chunks: header.chunk_count,
            encrypted_chunks: self.encrypted_chunks,
            plain_bytes: self.plain_bytes,
        })
    }
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok());
}

/// AES-256-GCM: `nonce || ciphertext || tag`.
fn encrypt(key: &[u8; 32], nonce: [u8; 12], plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    AeadKey::new(key)?.seal(nonce, plain, aad)
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

/// Compresses (where it saves at least 1/16) and optionally encrypts one chunk.
fn seal_chunk(
    keys: &DerivedKeys,
    number: u64,
    plain: Vec<u8>,
    encrypt_it: bool,
) -> Result<(Vec<u8>, u8, u32)> {
    let plain_len = plain.len() as u32;
    let mut flags = 0;
    let mut body = plain;
    if body.len() >= MIN_COMPRESS {
        // One compression context per thread: making one per chunk costs a
        // multi-megabyte allocation each time.
        let compressed = COMPRESSOR.with(|c| match &mut *c.borrow_mut() {
            Some(c) => c.compress(&body).ok(),
            None => None,
        });
        if let Some(compressed) = compressed.filter(|c| c.len() < body.len() - body.len() / 16) {
            body = compressed;
            flags |= FLAG_ZSTD;
        }
    }
    if encrypt_it {
        flags |= FLAG_ENCRYPTED;
        let nonce = keys.nonce(CHUNK_AAD, number, &body);
        body = encrypt(
            &keys.chunk,
            nonce,
            &body,
            &chunk_aad(number, flags, plain_len),
        )?;
    }
    Ok((body, flags, plain_len))
}
