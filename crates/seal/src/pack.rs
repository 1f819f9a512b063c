//! File contents cut into chunks and compressed while the image is being
//! flattened, ready for the writer to encrypt.
//!
//! Compression needs neither the keys nor the chunk numbers (both depend on
//! the finished tree), so it can start as soon as flattening meets a file:
//! [`ChunkStore`] is the [`ContentStore`] flattening writes to. It hashes
//! each content, cuts it into chunk-size pieces and hands them to worker
//! threads, which compress them while decompression and tar parsing go on,
//! and keep the result in memory up to [`MEMORY_BUDGET`] bytes in all, then
//! append it to one scratch file. (Writing a scratch file and reading it
//! back cost as much CPU as a tenth of the work of sealing a Debian image.)
//! The writer then only encrypts and places what [`Chunks`] holds, in tree
//! order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cocoon_image::store::ContentStore;
use cocoon_image::Digest;
use sha2::{Digest as _, Sha256};

use crate::format::{NONCE_LEN, TAG_LEN};
use crate::manifest::check_chunk_size;

/// zstd level for chunks and the index: level 1 compresses about 1.6x as
/// fast as 3 for some 6% more bytes (Debian images).
pub(crate) const ZSTD_LEVEL: i32 = 1;
/// Chunks shorter than this are stored as they are: compressing them saves
/// next to nothing.
const MIN_COMPRESS: usize = 256;
/// Chunks waiting for a worker, per worker: bounds the memory in flight.
const QUEUE_PER_WORKER: usize = 16;
/// Stored bytes of chunks kept in memory, in all; later chunks go to the
/// scratch file.
pub const MEMORY_BUDGET: u64 = 256 << 20;

/// One chunk as stored: its content, or a zstd frame of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Where the stored bytes are.
    stored: Stored,
    /// Stored bytes.
    pub len: u32,
    /// Content bytes.
    pub plain_len: u32,
    /// Whether the bytes are a zstd frame.
    pub zstd: bool,
}

/// Where a piece's stored bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Memory(Vec<u8>),
    /// At this offset in the scratch file.
    File(u64),
}

/// Where one content's pieces are: `count` consecutive pieces from `first`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Content {
    pub first: usize,
    pub count: usize,
}

/// A piece of content for a worker: the first `len` bytes of `buf`, a
/// chunk-size buffer (kept at full length, so that filling it again needs
/// no zero-filling).
struct Job {
    number: usize,
    buf: Vec<u8>,
    len: usize,
}

/// What the workers share.
struct Shared {
    file: File,
    end: AtomicU64,
    /// What is left of the memory budget.
    memory: AtomicU64,
}

/// Receives contents while an image is flattened: hashes each, cuts it into
/// chunks and compresses them on worker threads into a scratch file. Equal
/// contents are kept once. [`ChunkStore::finish`] waits for the workers.
pub struct ChunkStore {
    chunk_size: usize,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    done: Receiver<io::Result<(usize, Piece)>>,
    /// Chunk buffers the workers are done with, to be filled again: reusing
    /// them spares zero-filling a new buffer for every chunk.
    spare: Receiver<Vec<u8>>,
    /// A buffer taken but not filled (the content ended).
    idle: Option<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    pieces: usize,
    contents: HashMap<Digest, Content>,
}

impl ChunkStore {
    /// A store cutting contents into `chunk_size` chunks (a size the format
    /// allows), keeping up to [`MEMORY_BUDGET`] bytes of them in memory and
    /// the rest in a scratch file in `dir`.
    pub fn new(dir: &Path, chunk_size: u32) -> crate::Result<Self> {
        Self::with_memory(dir, chunk_size, MEMORY_BUDGET)
    }

    /// A store keeping up to `memory` bytes of chunks in memory.
    fn with_memory(dir: &Path, chunk_size: u32, memory: u64) -> crate::Result<Self> {
        check_chunk_size(chunk_size)?;
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| crate::Error::io("creating the chunk scratch file", e))?;
        let shared = Arc::new(Shared {
            file,
            end: AtomicU64::new(0),
            memory: AtomicU64::new(memory),
        });
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads * QUEUE_PER_WORKER);
        let queue = Arc::new(Mutex::new(queue));
        let (done_tx, done) = mpsc::channel();
        let (spare_tx, spare) = mpsc::channel();
        let workers = (0..threads)
            .map(|_| {
                let (shared, queue) = (shared.clone(), queue.clone());
                let (done, spare) = (done_tx.clone(), spare_tx.clone());
                std::thread::spawn(move || compress_worker(&shared, &queue, &done, &spare))
            })
            .collect();
        Ok(ChunkStore {
            chunk_size: chunk_size as usize,
            shared,
            jobs,
            done,
            spare,
            idle: None,
            workers,
            pieces: 0,
            contents: HashMap::new(),
        })
    }

    /// Waits for every chunk to be compressed and stored. (Dropping the
    /// store instead lets the workers finish the queue and exit.)
    pub fn finish(self) -> crate::Result<Chunks> {
        let failed = |what: &str| crate::Error::io("compressing chunks", io::Error::other(what));
        drop(self.jobs);
        for w in self.workers {
            w.join()
                .map_err(|_| failed("a compression thread panicked"))?;
        }
        let mut pieces: Vec<Option<Piece>> = (0..self.pieces).map(|_| None).collect();
        for result in self.done.try_iter() {
            let (number, piece) =
                result.map_err(|e| crate::Error::io("writing the chunk scratch file", e))?;
            pieces[number] = Some(piece);
        }
        let pieces = pieces
            .into_iter()
            .collect::<Option<Vec<Piece>>>()
            .ok_or_else(|| failed("a chunk was never compressed"))?;
        let shared = Arc::try_unwrap(self.shared)
            .map_err(|_| failed("a compression thread is still running"))?;
        Ok(Chunks {
            chunk_size: self.chunk_size as u32,
            file: shared.file,
            pieces,
            contents: self.contents,
        })
    }
}

impl ContentStore for ChunkStore {
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let first = self.pieces;
        loop {
            let mut chunk = self
                .idle
                .take()
                .or_else(|| self.spare.try_recv().ok())
                .unwrap_or_default();
            // Zero-fills only a new buffer.
            chunk.resize(self.chunk_size, 0);
            let n = read_full(data, &mut chunk)?;
            if n == 0 {
                self.idle = Some(chunk);
                break;
            }
            hasher.update(&chunk[..n]);
            size += n as u64;
            let full = n == self.chunk_size;
            let job = Job {
                number: self.pieces,
                buf: chunk,
                len: n,
            };
            self.pieces += 1;
            self.jobs
                .send(job)
                .map_err(|_| io::Error::other("the compression threads stopped"))?;
            if !full {
                break;
            }
        }
        let digest = Digest(hasher.finalize().into());
        // A content met before keeps its first pieces; these go unused.
        self.contents.entry(digest).or_insert(Content {
            first,
            count: self.pieces - first,
        });
        Ok((digest, size))
    }
}

/// Reads from `r` until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Takes chunks off the queue until it closes: compresses each where that
/// saves at least 1/16, keeps it in memory while the budget lasts or else
/// appends it to the scratch file, reports where, and hands the chunk's
/// buffer back on `spare`.
fn compress_worker(
    shared: &Shared,
    queue: &Mutex<Receiver<Job>>,
    done: &mpsc::Sender<io::Result<(usize, Piece)>>,
    spare: &mpsc::Sender<Vec<u8>>,
) {
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
    let mut compressed = Vec::new();
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Job { number, buf, len }) = job else {
            return;
        };
        let data = &buf[..len];
        let plain_len = data.len();
        let zstd = match &mut compressor {
            Some(c) if plain_len >= MIN_COMPRESS => {
                compressed.clear();
                compressed.reserve(zstd::zstd_safe::compress_bound(plain_len));
                c.compress_to_buffer(data, &mut compressed).is_ok()
                    && compressed.len() < plain_len - plain_len / 16
            }
            _ => false,
        };
        let len = if zstd { compressed.len() } else { plain_len };
        let kept = shared
            .memory
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(len as u64)
            })
            .is_ok();
        let body = if zstd { &compressed[..] } else { data };
        let stored = if kept {
            // A copy of just the stored bytes (the buffers are chunk-size),
            // with room for the tag and nonce it may be sealed with in place.
            let mut copy = Vec::with_capacity(len + TAG_LEN + NONCE_LEN);
            copy.extend_from_slice(body);
            Ok(Stored::Memory(copy))
        } else {
            let offset = shared.end.fetch_add(len as u64, Ordering::Relaxed);
            shared
                .file
                .write_all_at(body, offset)
                .map(|()| Stored::File(offset))
        };
        let result = stored.map(|stored| {
            let piece = Piece {
                stored,
                len: len as u32,
                plain_len: plain_len as u32,
                zstd,
            };
            (number, piece)
        });
        // The store may be gone already: then the buffer is simply freed.
        let _ = spare.send(buf);
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Every content's chunks, compressed and stored; from [`ChunkStore::finish`].
pub struct Chunks {
    pub(crate) chunk_size: u32,
    file: File,
    pieces: Vec<Piece>,
    pub(crate) contents: HashMap<Digest, Content>,
}

impl Chunks {
    /// The pieces of a content.
    pub(crate) fn pieces(&self, content: Content) -> &[Piece] {
        &self.pieces[content.first..content.first + content.count]
    }

    /// Takes the stored bytes of piece `n` (the `n`th piece of
    /// [`ChunkStore`]) out of memory, or says where they are in the
    /// scratch file; [`Chunks::load`] gives the bytes.
    pub(crate) fn take(&mut self, n: usize) -> Stored {
        match &mut self.pieces[n].stored {
            Stored::Memory(bytes) => Stored::Memory(std::mem::take(bytes)),
            Stored::File(offset) => Stored::File(*offset),
        }
    }

    /// The `len` stored bytes of a piece [`Chunks::take`] gave, in a buffer
    /// with room for a tag and a nonce.
    pub(crate) fn load(&self, stored: Stored, len: u32) -> io::Result<Vec<u8>> {
        match stored {
            Stored::Memory(bytes) if bytes.len() == len as usize => Ok(bytes),
            Stored::Memory(_) => Err(io::Error::other("a chunk was taken twice")),
            Stored::File(offset) => {
                let mut buf = Vec::with_capacity(len as usize + TAG_LEN + NONCE_LEN);
                buf.resize(len as usize, 0);
                self.file.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_compresses_and_keeps_equal_contents_once() {
        // All in memory, all in the scratch file, and some of each.
        for memory in [MEMORY_BUDGET, 0, 5000] {
            cuts_compresses_and_keeps(memory);
        }
    }

    fn cuts_compresses_and_keeps(memory: u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ChunkStore::with_memory(dir.path(), 4096, memory).unwrap();
        let text = b"all work and no play ".repeat(500); // 10500 bytes
        let noise: Vec<u8> = (0..300u32)
            .flat_map(|i| Digest::of(&i.to_le_bytes()).0)
            .collect();
        let (a, n) = store.put(&mut &text[..]).unwrap();
        let (b, _) = store.put(&mut &noise[..]).unwrap();
        let (a2, _) = store.put(&mut &text[..]).unwrap();
        let (e, zero) = store.put(&mut &b""[..]).unwrap();
        assert_eq!((a, n, a2, zero), (Digest::of(&text), 10500, a, 0));
        let mut chunks = store.finish().unwrap();
        let text_pieces = chunks.pieces(chunks.contents[&a]);
        assert_eq!(
            text_pieces
                .iter()
                .map(|p| (p.plain_len, p.zstd))
                .collect::<Vec<_>>(),
            [(4096, true), (4096, true), (2308, true)]
        );
        assert!(chunks.pieces(chunks.contents[&b]).iter().all(|p| !p.zstd));
        let mut read_back = |d: &Digest| -> Vec<u8> {
            let content = chunks.contents[d];
            (content.first..content.first + content.count)
                .flat_map(|n| {
                    let p = chunks.pieces[n].clone();
                    let taken = chunks.take(n);
                    let stored = chunks.load(taken, p.len).unwrap();
                    assert_eq!(stored.len(), p.len as usize);
                    // Bytes in memory are taken once; the scratch file keeps its own.
                    let again = chunks.take(n);
                    assert_eq!(
                        chunks.load(again, p.len).is_err(),
                        matches!(p.stored, Stored::Memory(_))
                    );
                    if p.zstd {
                        zstd::bulk::decompress(&stored, p.plain_len as usize).unwrap()
                    } else {
                        stored
                    }
                })
                .collect()
        };
        assert_eq!(read_back(&a), text);
        assert_eq!(read_back(&b), noise);
        assert_eq!(chunks.contents[&e].count, 0);
    }

    #[test]
    fn refuses_a_chunk_size_the_format_does_not_allow() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ChunkStore::new(dir.path(), 1000)
            .err()
            .unwrap()
            .to_string()
            .contains("power of two"));
    }
}
