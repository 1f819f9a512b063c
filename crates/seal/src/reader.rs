//! Reading a sealed blob: check it without the key ([`SealedBlob`]), or
//! unlock it with the image key and read any byte range, verifying and
//! decrypting only the chunks that range touches ([`UnlockedTree`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use cocoon_image::store::ContentSource;
use cocoon_image::{Digest, Entry, EntryKind, Tree};

use crate::aead::AeadKey;
use crate::error::{Error, Result};
use crate::format::{
    BlobDigest, ChunkRecord, Trailer, CHUNK_AAD, FLAG_ENCRYPTED, FLAG_ZSTD, INDEX_AAD, TRAILER_LEN,
};
use crate::index::{DataRef, Index, IndexEntry};
use crate::keys::{DerivedKeys, ImageKey};
use crate::manifest::{summarize_records, WorkloadManifest};
use crate::writer::chunk_aad;

/// How many bytes of adjacent chunks [`SealedBlob::verify_chunks`] reads at
/// once.
const VERIFY_SPAN: u64 = 4 << 20;

/// The index is compressed JSON; refuse to inflate it past this size.
const MAX_INDEX_JSON: usize = 1 << 30;

/// A sealed blob whose trailer and chunk table have been checked against
/// the signed trailer digest. Opening reads only the trailer and the table.
#[derive(Debug)]
pub struct SealedBlob {
    file: File,
    trailer: Trailer,
    table: Vec<ChunkRecord>,
}

/// Reads exactly `len` bytes at `offset` into a new buffer. The buffer is
/// not zeroed first: `pread` fills its spare capacity, and only what it
/// wrote becomes its length (zeroing a 64 KiB chunk buffer was ~9 % of the
/// FUSE server's CPU in random 4 KiB reads).
fn read_at(file: &File, offset: u64, len: u64, what: &str) -> Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| Error::Format(format!("{what} is too large")))?;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => {
                return Err(Error::io(
                    format!("reading {what}"),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io(format!("reading {what}"), e.into())),
        }
    }
    Ok(buf)
}

impl SealedBlob {
    /// Opens the blob at `path`, which must end with the trailer whose
    /// SHA-256 is `trailer_digest` (from the signed seal descriptor).
    pub fn open(path: &Path, trailer_digest: &Digest) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        if len < TRAILER_LEN as u64 {
            return Err(Error::Format(format!(
                "{} is too short to be a sealed blob",
                path.display()
            )));
        }
        let at = len - TRAILER_LEN as u64;
        let raw = read_at(&file, at, TRAILER_LEN as u64, "the sealed blob trailer")?;
        if Digest::of(&raw) != *trailer_digest {
            return Err(Error::Tampered(
                "the sealed blob trailer is not the one the owner signed".into(),
            ));
        }
        let trailer = Trailer::decode(&raw, len)?;
        let table_bytes = read_at(
            &file,
            trailer.table_offset,
            trailer.table_len,
            "the chunk table",
        )?;
        if BlobDigest::of(&table_bytes) != trailer.table_digest {
            return Err(Error::Tampered(
                "the chunk table does not match the trailer".into(),
            ));
        }
        let table = ChunkRecord::decode_table(&table_bytes, &trailer)?;
        Ok(SealedBlob {
            file,
            trailer,
            table,
        })
    }

    /// The trailer.
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// The chunk table.
    pub fn chunks(&self) -> &[ChunkRecord] {
        &self.table
    }

    fn stored_chunk(&self, n: u64) -> Result<(ChunkRecord, Vec<u8>)> {
        let r = *self
            .table
            .get(usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| Error::Format(format!("chunk {n} does not exist")))?;
        let bytes = read_at(
            &self.file,
            r.offset,
            r.stored_len.into(),
            &format!("chunk {n}"),
        )?;
        Ok((r, bytes))
    }

    /// Checks every stored chunk and the stored index against their
    /// digests, without any key. Reads the whole blob once, in large
    /// spans, on one thread per core (at most 4); a mismatch is reported
    /// for the first bad chunk in blob order.
    pub fn verify_chunks(&self) -> Result<()> {
        let n = self.table.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 4);
        let per = n.div_ceil(threads).max(1);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let parts: Vec<_> = (0..n)
                .step_by(per)
                .map(|start| s.spawn(move || self.verify_range(start, (start + per).min(n))))
                .collect();
            parts
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Format("a chunk verifying thread panicked".into()))
                    })
                })
                .collect()
        });
        results.into_iter().collect::<Result<()>>()?;
        let index = read_at(
            &self.file,
            self.trailer.index_offset,
            self.trailer.index_len,
            "the index",
        )?;
        if BlobDigest::of(&index) != self.trailer.index_digest {
            return Err(Error::Tampered(
                "the index does not match the trailer".into(),
            ));
        }
        Ok(())
    }

    /// Checks chunks `start..end`, reading runs of adjacent chunks of up
    /// to [`VERIFY_SPAN`] bytes with one `pread` each.
    fn verify_range(&self, start: usize, end: usize) -> Result<()> {
        let mut i = start;
        while i < end {
            let base = self.table[i].offset;
            let mut span_end = base + u64::from(self.table[i].stored_len);
            let mut j = i + 1;
            while j < end
                && self.table[j].offset == span_end
                && span_end - base + u64::from(self.table[j].stored_len) <= VERIFY_SPAN
            {
                span_end += u64::from(self.table[j].stored_len);
                j += 1;
            }
            let bytes = read_at(&self.file, base, span_end - base, &format!("chunk {i}"))?;
            for (k, r) in self.table[i..j].iter().enumerate() {
                let at = (r.offset - base) as usize;
                let stored = &bytes[at..at + r.stored_len as usize];
                if BlobDigest::of(stored) != r.digest {
                    return Err(Error::Tampered(format!(
                        "chunk {} does not match the chunk table",
                        i + k
                    )));
                }
            }
            i = j;
        }
        Ok(())
    }

    /// Decrypts and checks the index with the image key: it must be the
    /// index of exactly the tree `manifest` describes.
    pub fn unlock(self, key: &ImageKey, manifest: &WorkloadManifest) -> Result<UnlockedTree> {
        if self.trailer.tree_digest != manifest.tree.digest
            || self.trailer.chunk_size != manifest.seal.chunk_size
        {
            return Err(Error::Tampered(
                "the sealed blob belongs to another workload".into(),
            ));
        }
        let keys = key.derive(&manifest.tree.digest);
        let stored = read_at(
            &self.file,
            self.trailer.index_offset,
            self.trailer.index_len,
            "the index",
        )?;
        if BlobDigest::of(&stored) != self.trailer.index_digest {
            return Err(Error::Tampered(
                "the index does not match the trailer".into(),
            ));
        }
        let aad = [INDEX_AAD, &self.trailer.table_digest.0].concat();
        let plain = AeadKey::new(&keys.index, &keys.nonce, INDEX_AAD)?
            .open(stored, &aad)
            .ok_or_else(|| Error::Decrypt {
                what: "the index".into(),
            })?;
        let json = zstd::bulk::decompress(&plain, MAX_INDEX_JSON)
            .map_err(|e| Error::Format(format!("index does not decompress: {e}")))?;
        let index: Index = serde_json::from_slice(&json)
            .map_err(|e| Error::Format(format!("index is not valid: {e}")))?;
        let records: Vec<_> = index.entries.iter().map(|e| e.record.clone()).collect();
        if index.tree_digest != manifest.tree.digest
            || summarize_records(&records)? != manifest.tree
        {
            return Err(Error::Tampered(
                "the index does not hash to the manifest's tree digest".into(),
            ));
        }
        let tree = UnlockedTree::new(self, keys, index.entries)?;
        Ok(tree)
    }
}

thread_local! {
    /// One decompression context per thread, reused across chunks.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// An unlocked sealed tree: every path's record, and verified reads.
pub struct UnlockedTree {
    blob: SealedBlob,
    chunk_key: AeadKey,
    entries: Vec<IndexEntry>,
    by_path: HashMap<String, usize>,
}

impl std::fmt::Debug for UnlockedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnlockedTree")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl UnlockedTree {
    fn new(blob: SealedBlob, keys: DerivedKeys, entries: Vec<IndexEntry>) -> Result<Self> {
        let by_path: HashMap<String, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.record.path.clone(), i))
            .collect();
        let chunk_size = u64::from(blob.trailer.chunk_size);
        // Every file must point at chunks that exist and add up to its size.
        for e in &entries {
            let bad = || Error::Format(format!("index entry {} is inconsistent", e.record.path));
            match (&e.record.kind, &e.record.link, &e.data) {
                (EntryKind::File { size, .. }, None, Some(d)) => {
                    let end = d.first.checked_add(d.count).ok_or_else(bad)?;
                    if end > blob.table.len() as u64 || d.count != size.div_ceil(chunk_size) {
                        return Err(bad());
                    }
                    let total: u64 = blob.table[d.first as usize..end as usize]
                        .iter()
                        .map(|r| u64::from(r.plain_len))
                        .sum();
                    if total != *size {
                        return Err(bad());
                    }
                }
                // A later hardlink path must name a first path that holds the data.
                (EntryKind::File { .. }, Some(first), None)
                    if by_path
                        .get(first)
                        .is_some_and(|&i| entries[i].data.is_some()) => {}
                (EntryKind::File { .. }, _, _) => return Err(bad()),
                (_, _, Some(_)) => return Err(bad()),
                _ => {}
            }
        }
        Ok(UnlockedTree {
            blob,
            chunk_key: AeadKey::new(&keys.chunk, &keys.nonce, CHUNK_AAD)?,
            entries,
            by_path,
        })
    }

    /// Every path, in byte order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The entry at `path`.
    pub fn lookup(&self, path: &str) -> Option<&IndexEntry> {
        self.by_path.get(path).map(|&i| &self.entries[i])
    }

    /// Where the content of a regular file lives (following hardlinks).
    pub fn data_of(&self, entry: &IndexEntry) -> Option<DataRef> {
        match &entry.record.link {
            Some(first) => self.lookup(first).and_then(|e| e.data),
            None => entry.data,
        }
    }

    /// Chunk `n`, verified (digest or GCM tag) and decrypted and decompressed.
    pub fn read_chunk(&self, n: u64) -> Result<Vec<u8>> {
        let (r, stored) = self.blob.stored_chunk(n)?;
        let body = if r.flags & FLAG_ENCRYPTED != 0 {
            self.chunk_key
                .open(stored, &chunk_aad(n, r.flags, r.plain_len))
                .ok_or_else(|| Error::Decrypt {
                    what: format!("chunk {n}"),
                })?
        } else {
            if BlobDigest::of(&stored) != r.digest {
                return Err(Error::Tampered(format!(
                    "chunk {n} does not match the chunk table"
                )));
            }
            stored
        };
        let plain = if r.flags & FLAG_ZSTD != 0 {
            DECOMPRESSOR
                .with(|d| match &mut *d.borrow_mut() {
                    Some(d) => d.decompress(&body, r.plain_len as usize),
                    None => Err(std::io::Error::other("no zstd context")),
                })
                .map_err(|e| Error::Format(format!("chunk {n} does not decompress: {e}")))?
        } else {
            body
        };
        if plain.len() != r.plain_len as usize {
            return Err(Error::Format(format!("chunk {n} has the wrong length")));
        }
        Ok(plain)
    }

    /// Reads up to `buf.len()` bytes of a file's content at `offset`;
    /// returns how many (0 at the end). Touches only the chunks in range.
    pub fn read_at(&self, data: DataRef, size: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let chunk_size = u64::from(self.blob.trailer.chunk_size);
        let want = (buf.len() as u64).min(size - offset) as usize;
        let mut done = 0;
        while done < want {
            let pos = offset + done as u64;
            let chunk = self.read_chunk(data.first + pos / chunk_size)?;
            let start = (pos % chunk_size) as usize;
            let n = (chunk.len() - start).min(want - done);
            buf[done..done + n].copy_from_slice(&chunk[start..start + n]);
            done += n;
        }
        Ok(done)
    }

    /// The whole content of the regular file at `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let entry = self
            .lookup(path)
            .ok_or_else(|| Error::Format(format!("no file {path} in the sealed tree")))?;
        let (EntryKind::File { size, .. }, Some(data)) = (&entry.record.kind, self.data_of(entry))
        else {
            return Err(Error::Format(format!("{path} is not a regular file")));
        };
        let mut out = vec![0u8; *size as usize];
        self.read_at(data, *size, 0, &mut out)?;
        Ok(out)
    }

    /// Reads every file and checks its content against the digest in its
    /// record (which the tree digest covers).
    pub fn verify_all(&self) -> Result<()> {
        for e in &self.entries {
            if let (EntryKind::File { digest, .. }, None) = (&e.record.kind, &e.record.link) {
                if Digest::of(&self.read_file(&e.record.path)?) != *digest {
                    return Err(Error::Tampered(format!(
                        "content of {} does not match its digest",
                        e.record.path
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes the tree into `dest` (absent or an empty directory) with
    /// every file's content verified and decrypted chunk by chunk from the
    /// blob, on one thread per core: `verify-image --extract`, and the
    /// launcher's memory mode. A chunk that fails verification stops it
    /// with that chunk's error; what was written so far stays in `dest`.
    pub fn extract(&self, dest: &Path) -> Result<()> {
        let contents = Contents {
            tree: self,
            by_digest: self
                .entries
                .iter()
                .filter_map(|e| match (&e.record.kind, e.data) {
                    (EntryKind::File { digest, size, .. }, Some(d)) => Some((*digest, (d, *size))),
                    _ => None,
                })
                .collect(),
        };
        Ok(self.shape()?.materialize(dest, &contents)?)
    }

    /// The flattened tree of the index's records, without reading any
    /// content (hardlinked paths share an inode number).
    fn shape(&self) -> Result<Tree> {
        let mut tree = Tree::new();
        for (i, e) in self.entries.iter().enumerate() {
            let r = &e.record;
            let mut kind = r.kind.clone();
            if let EntryKind::File { inode, .. } = &mut kind {
                *inode = match &r.link {
                    Some(first) => self.by_path.get(first).copied().unwrap_or(i),
                    None => i,
                } as u64;
            }
            let xattrs = r
                .xattrs
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        hex::decode(v)
                            .map_err(|_| Error::Format(format!("bad xattr on {}", r.path)))?,
                    ))
                })
                .collect::<Result<_>>()?;
            let entry = Entry {
                kind,
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                mtime: r.mtime.unwrap_or(0),
                xattrs,
            };
            tree.insert(&r.path, entry);
        }
        Ok(tree)
    }
}

/// The contents of an unlocked tree by digest, read from the blob.
struct Contents<'a> {
    tree: &'a UnlockedTree,
    by_digest: HashMap<Digest, (DataRef, u64)>,
}

impl ContentSource for Contents<'_> {
    fn open_content(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + '_>> {
        let &(data, size) = self.by_digest.get(digest).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no content {digest} in the sealed index"),
            )
        })?;
        Ok(Box::new(ContentReader {
            tree: self.tree,
            data,
            size,
            pos: 0,
            chunk: Vec::new(),
            at: 0,
        }))
    }
}

/// One file's content, a verified chunk at a time.
struct ContentReader<'a> {
    tree: &'a UnlockedTree,
    data: DataRef,
    size: u64,
    /// Bytes of the file read into `chunk` so far.
    pos: u64,
    chunk: Vec<u8>,
    /// Bytes of `chunk` already returned.
    at: usize,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let n = self.pos / u64::from(self.tree.blob.trailer.chunk_size);
            self.chunk = self
                .tree
                .read_chunk(self.data.first + n)
                .map_err(std::io::Error::other)?;
            self.at = 0;
            self.pos += self.chunk.len() as u64;
            if self.chunk.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
