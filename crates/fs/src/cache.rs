//! A bounded cache of verified, decrypted chunks of the sealed blob, and a
//! small pool of threads that fill it ahead of sequential readers.
//!
//! Only [`UnlockedTree::read_chunk`] puts chunks in: every cached byte comes
//! from a chunk whose GCM tag (or digest) was checked when it was read.
//! The first failed check anywhere empties the whole cache, so once the
//! blob is seen tampered with, every chunk is read and checked again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use cocoon_seal::reader::UnlockedTree;

/// A verified chunk's plaintext, shared by every reader of it.
pub(crate) type Chunk = Arc<Vec<u8>>;

/// Chunks queued for the prefetch threads at most; more are dropped.
const QUEUE: usize = 256;

#[derive(Default)]
struct Inner {
    /// Chunk number -> (plaintext, last use).
    map: HashMap<u64, (Chunk, u64)>,
    /// Last use -> chunk number (least recently used first).
    lru: BTreeMap<u64, u64>,
    /// Chunks some thread is reading and verifying right now.
    loading: HashSet<u64>,
    bytes: u64,
    clock: u64,
}

/// Verified chunks, least recently used evicted past `capacity` bytes.
pub(crate) struct ChunkCache {
    tree: Arc<UnlockedTree>,
    capacity: u64,
    inner: Mutex<Inner>,
    /// Signalled whenever a chunk stops loading.
    loaded: Condvar,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ChunkCache {
    /// A cache of at most `capacity` bytes of plaintext (0: no caching).
    pub(crate) fn new(tree: Arc<UnlockedTree>, capacity: u64) -> ChunkCache {
        ChunkCache {
            tree,
            capacity,
            inner: Mutex::new(Inner::default()),
            loaded: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Chunk `n`, verified: from the cache, or read, checked and cached. A
    /// chunk another thread is loading is waited for rather than read twice.
    pub(crate) fn get(&self, n: u64) -> cocoon_seal::Result<Chunk> {
        if self.capacity == 0 {
            return self.read_checked(n).map(Arc::new);
        }
        let mut inner = self.lock();
        loop {
            if let Some(chunk) = inner.touch(n) {
                return Ok(chunk);
            }
            if !inner.loading.contains(&n) {
                break;
            }
            inner = self
                .loaded
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        inner.loading.insert(n);
        drop(inner);
        let res = self.read_checked(n).map(Arc::new);
        let mut inner = self.lock();
        inner.loading.remove(&n);
        if let Ok(chunk) = &res {
            inner.insert(n, chunk.clone(), self.capacity);
        }
        drop(inner);
        self.loaded.notify_all();
        res
    }

    /// Loads chunk `n` into the cache unless it is there or being loaded.
    fn prefetch(&self, n: u64) {
        {
            let mut inner = self.lock();
            if inner.map.contains_key(&n) || !inner.loading.insert(n) {
                return;
            }
        }
        let res = self.read_checked(n);
        let mut inner = self.lock();
        inner.loading.remove(&n);
        if let Ok(chunk) = res {
            inner.insert(n, Arc::new(chunk), self.capacity);
        }
        drop(inner);
        self.loaded.notify_all();
    }

    /// Reads and verifies chunk `n` from the blob, bypassing the cache. A
    /// failed check empties the cache.
    pub(crate) fn read_checked(&self, n: u64) -> cocoon_seal::Result<Vec<u8>> {
        let res = self.tree.read_chunk(n);
        if res.is_err() {
            self.clear();
        }
        res
    }

    /// Whether chunk `n` is cached or being loaded.
    fn has(&self, n: u64) -> bool {
        let inner = self.lock();
        inner.map.contains_key(&n) || inner.loading.contains(&n)
    }

    /// Drops every cached chunk.
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.lru.clear();
        inner.bytes = 0;
    }

    /// The cache's capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl Inner {
    fn touch(&mut self, n: u64) -> Option<Chunk> {
        self.clock += 1;
        let clock = self.clock;
        let (chunk, used) = self.map.get_mut(&n)?;
        self.lru.remove(used);
        *used = clock;
        self.lru.insert(clock, n);
        Some(chunk.clone())
    }

    fn insert(&mut self, n: u64, chunk: Chunk, capacity: u64) {
        let len = chunk.len() as u64;
        if len > capacity {
            return;
        }
        self.clock += 1;
        if let Some((old, used)) = self.map.insert(n, (chunk, self.clock)) {
            self.lru.remove(&used);
            self.bytes -= old.len() as u64;
        }
        self.lru.insert(self.clock, n);
        self.bytes += len;
        while self.bytes > capacity {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.map.remove(&victim) {
                self.bytes -= old.len() as u64;
            }
        }
    }
}

/// Threads that load chunks into the cache ahead of readers. They end when
/// the last [`Prefetcher`] handle is dropped.
pub(crate) struct Prefetcher {
    cache: Arc<ChunkCache>,
    queue: Option<SyncSender<u64>>,
}

impl Prefetcher {
    /// Starts `threads` prefetch threads (none if the cache is off).
    pub(crate) fn start(cache: Arc<ChunkCache>, threads: usize) -> Prefetcher {
        if cache.capacity() == 0 || threads == 0 {
            return Prefetcher { cache, queue: None };
        }
        let (tx, rx) = sync_channel::<u64>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = false;
        for i in 0..threads {
            let (cache, rx) = (cache.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("cocoon-fs-ra{i}"))
                .spawn(move || worker(&cache, &rx));
            match spawned {
                Ok(_) => started = true,
                Err(e) => log::warn!("no prefetch thread: {e}"),
            }
        }
        Prefetcher {
            cache,
            queue: started.then_some(tx),
        }
    }

    /// Queues chunks `first..end` that are not cached yet; drops what does
    /// not fit in the queue (readers then load those themselves).
    pub(crate) fn queue(&self, first: u64, end: u64) {
        let Some(tx) = &self.queue else { return };
        for n in first..end {
            if self.cache.has(n) {
                continue;
            }
            match tx.try_send(n) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

fn worker(cache: &ChunkCache, rx: &Mutex<Receiver<u64>>) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            Ok(n) => cache.prefetch(n),
            Err(_) => return,
        }
    }
}
