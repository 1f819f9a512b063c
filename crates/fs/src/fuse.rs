//! The FUSE request handlers: each turns a kernel request into one
//! namespace operation or one verified read, and replies with data or an
//! errno. No handler panics; a failed chunk verification is `EIO`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_seal::reader::UnlockedTree;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::cache::{ChunkCache, Prefetcher};
use crate::ns::{DirLine, NewKind, Ns, ReadPlan, Res};

/// How long the kernel may cache attributes and names. Every change goes
/// through this mount, so the kernel's own caches stay coherent; the TTL
/// only bounds how stale a view can get if that ever stops being true.
const TTL: Duration = Duration::from_secs(1);
/// Inode numbers are never reused within a mount.
const GENERATION: Generation = Generation(0);
/// Statfs block size.
const BLOCK: u64 = 4096;
/// How far past a sequential read the prefetch threads load: this many
/// bytes, or [`PREFETCH_MIN_CHUNKS`] chunks if that is more. In bytes, so
/// that small chunks get the same look-ahead as large ones: inside a
/// container (read-only `/sys`) the kernel asks for 128 KiB at a time.
const PREFETCH_BYTES: u64 = 2 << 20;
const PREFETCH_MIN_CHUNKS: u64 = 4;

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

/// The file system served to the kernel.
pub(crate) struct SealedFs {
    tree: Arc<UnlockedTree>,
    ns: RwLock<Ns>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirLine>>>>,
    next_fh: AtomicU64,
    chunks: Arc<ChunkCache>,
    prefetch: Prefetcher,
    /// Where the last read of each lower file ended (sequential detection).
    last_end: Mutex<HashMap<u64, u64>>,
}

/// The chunk size of a file of `size` bytes in `count` chunks: the one
/// power of two `cs` with `(count - 1) * cs < size <= count * cs` (the
/// reader checked `count == size.div_ceil(chunk size)` at unlock). A
/// one-chunk file is one span.
fn chunk_span(size: u64, count: u64) -> u64 {
    if count <= 1 {
        return size.max(1);
    }
    size.div_ceil(count).next_power_of_two()
}

impl SealedFs {
    pub(crate) fn new(
        tree: Arc<UnlockedTree>,
        ns: Ns,
        chunks: Arc<ChunkCache>,
        prefetch_threads: usize,
    ) -> SealedFs {
        SealedFs {
            tree,
            ns: RwLock::new(ns),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            prefetch: Prefetcher::start(chunks.clone(), prefetch_threads),
            chunks,
            last_end: Mutex::new(HashMap::new()),
        }
    }

    fn ns(&self) -> RwLockReadGuard<'_, Ns> {
        self.ns.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn ns_mut(&self) -> RwLockWriteGuard<'_, Ns> {
        self.ns.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replies with the entry of `ino`, for which a reference was taken.
    fn entry(&self, made: Res<u64>, reply: ReplyEntry) {
        let ns = self.ns();
        match made.and_then(|ino| Ok(ns.node(ino)?.attr(ino))) {
            Ok(attr) => reply.entry(&TTL, &attr, GENERATION),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn attr(&self, ino: u64, reply: ReplyAttr) {
        match self.ns().node(ino) {
            Ok(n) => reply.attr(&TTL, &n.attr(ino)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(res: Res<()>, reply: ReplyEmpty) {
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn xattr_reply(value: Res<Vec<u8>>, size: u32, reply: ReplyXattr) {
        match value {
            Err(e) => reply.error(errno(e)),
            Ok(v) if size == 0 => match u32::try_from(v.len()) {
                Ok(n) => reply.size(n),
                Err(_) => reply.error(errno(libc::E2BIG)),
            },
            Ok(v) if v.len() > size as usize => reply.error(errno(libc::ERANGE)),
            Ok(v) => reply.data(&v),
        }
    }

    fn listing(&self, ino: u64, fh: u64) -> Res<Arc<Vec<DirLine>>> {
        let cached = self
            .dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fh)
            .cloned();
        match cached {
            Some(l) => Ok(l),
            None => Ok(Arc::new(self.ns().list(ino)?)),
        }
    }

    /// Reads a lower file's range, chunk by chunk, from verified chunks:
    /// cached ones, or read and checked now. `direct` (an `O_DIRECT` open)
    /// bypasses the chunk cache as it bypasses the page cache: every chunk
    /// is read from the blob and checked again. A sequential reader gets the
    /// next chunks loaded ahead by the prefetch threads.
    fn read_lower(
        &self,
        ino: u64,
        data: cocoon_seal::index::DataRef,
        size: u64,
        offset: u64,
        len: u32,
        direct: bool,
    ) -> Res<Served> {
        let want = u64::from(len).min(size.saturating_sub(offset));
        if want == 0 {
            return Ok(Served::Bytes(Vec::new()));
        }
        let span = chunk_span(size, data.count);
        let end = offset + want;
        let (c0, c1) = (offset / span, (end - 1) / span);
        if !direct {
            let sequential = {
                let mut last = self.last_end.lock().unwrap_or_else(PoisonError::into_inner);
                if last.len() > 4096 {
                    last.clear();
                }
                let prev = last.insert(ino, end);
                prev == Some(offset) || u64::from(len) >= span
            };
            // The request's own later chunks load in parallel with its first.
            let ahead = if sequential {
                (PREFETCH_BYTES / span).max(PREFETCH_MIN_CHUNKS)
            } else {
                0
            };
            let stop = (c1 + 1 + ahead).min(data.count);
            self.prefetch.queue(data.first + c0 + 1, data.first + stop);
        }
        // The verified chunk `c` of the file and the range of it wanted.
        let piece = |c: u64| -> Res<(crate::cache::Chunk, std::ops::Range<usize>)> {
            let n = data.first + c;
            let got = if direct {
                self.chunks.read_checked(n).map(Arc::new)
            } else {
                self.chunks.get(n)
            };
            let chunk = got.map_err(|e| {
                log::error!("refusing a read of sealed content: {e}");
                libc::EIO
            })?;
            let base = c * span;
            let from = usize::try_from(offset.max(base) - base).map_err(|_| libc::EIO)?;
            let to = usize::try_from(end.min(base + span) - base).map_err(|_| libc::EIO)?;
            if from > to || to > chunk.len() {
                log::error!("refusing a read of sealed content: chunk {n} is short");
                return Err(libc::EIO);
            }
            Ok((chunk, from..to))
        };
        if c0 == c1 {
            // Within one chunk: answered from the chunk itself, no copy.
            let (chunk, range) = piece(c0)?;
            return Ok(Served::Chunk(chunk, range));
        }
        let mut buf = Vec::with_capacity(usize::try_from(want).map_err(|_| libc::EINVAL)?);
        for c in c0..=c1 {
            let (chunk, range) = piece(c)?;
            buf.extend_from_slice(&chunk[range]);
        }
        Ok(Served::Bytes(buf))
    }
}

/// What a read is answered with.
enum Served {
    Bytes(Vec<u8>),
    /// Part of one verified chunk (a read within one chunk: no copy).
    Chunk(crate::cache::Chunk, std::ops::Range<usize>),
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for SealedFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_ASYNC_DIO,
        ] {
            // Optional speed-ups: an older kernel without one still works.
            let _ = config.add_capabilities(cap);
        }
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let made = self.ns_mut().lookup(parent.0, name);
        if made == Err(libc::ENOENT) {
            // A negative entry (node id 0) the kernel may cache for TTL:
            // servers probe missing names on every request (nginx's
            // `index index.html index.htm ...`, Python's import path), and
            // names appear only through this mount, which invalidates it.
            let none = FileAttr {
                ino: INodeNo(0),
                size: 0,
                blocks: 0,
                atime: UNIX_EPOCH,
                mtime: UNIX_EPOCH,
                ctime: UNIX_EPOCH,
                crtime: UNIX_EPOCH,
                kind: FileType::RegularFile,
                perm: 0,
                nlink: 0,
                uid: 0,
                gid: 0,
                rdev: 0,
                blksize: 0,
                flags: 0,
            };
            reply.entry(&TTL, &none, GENERATION);
            return;
        }
        self.entry(made, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ns_mut().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr(ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let res = self.ns_mut().setattr(
            &self.tree,
            ino.0,
            mode,
            uid,
            gid,
            size,
            atime.map(time),
            mtime.map(time),
        );
        match res {
            Ok(()) => self.attr(ino.0, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ns().readlink(ino.0) {
            Ok(t) => reply.data(t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let what = NewKind::Special(mode & libc::S_IFMT, rdev);
        let made = self
            .ns_mut()
            .create(parent.0, name, what, mode & !umask, req.uid(), req.gid());
        self.entry(made, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.ns_mut().create(
            parent.0,
            name,
            NewKind::Dir,
            mode & !umask,
            req.uid(),
            req.gid(),
        );
        self.entry(made, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.ns_mut().unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.ns_mut().rmdir(parent.0, name), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let what = NewKind::Symlink(target.as_os_str().as_bytes().to_vec());
        let made = self
            .ns_mut()
            .create(parent.0, link_name, what, 0o777, req.uid(), req.gid());
        self.entry(made, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = self
            .ns_mut()
            .rename(parent.0, name, newparent.0, newname, flags.bits());
        Self::empty(res, reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let made = self
            .ns_mut()
            .link(ino.0, newparent.0, newname)
            .map(|()| ino.0);
        self.entry(made, reply);
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS tells the kernel that opening needs no server: it stops
        // sending OPEN and RELEASE (`no_open`) and keeps the page cache
        // across opens (its default for that case is FOPEN_KEEP_CACHE;
        // content changes only through this mount). A small-file server
        // (nginx, Python imports) then opens without a round trip here.
        // Nothing is lost: file handles are unused, permissions are the
        // kernel's (`default_permissions`), and writes and truncation of a
        // secret are refused where they happen (EPERM).
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let plan = self.ns().read_plan(ino.0, offset, size);
        let data = match plan {
            Ok(ReadPlan::Bytes(b)) => Ok(Served::Bytes(b)),
            Ok(ReadPlan::Lower { data, size: len }) => {
                let direct = flags.0 & libc::O_DIRECT != 0;
                self.read_lower(ino.0, data, len, offset, size, direct)
            }
            Err(e) => Err(e),
        };
        match data {
            Ok(Served::Bytes(b)) => reply.data(&b),
            Ok(Served::Chunk(chunk, range)) => reply.data(&chunk[range]),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let append = flags.0 & libc::O_APPEND != 0;
        let res = self
            .ns_mut()
            .write(&self.tree, ino.0, offset, data, append, req.uid() != 0);
        match res.and_then(|n| u32::try_from(n).map_err(|_| libc::EFBIG)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Memory is the only storage: nothing to do on close. ENOSYS makes
        // the kernel stop sending FLUSH (`no_flush`), one round trip less
        // per close().
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Memory is the only storage: there is nothing to flush.
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let lines = self.ns().list(ino.0);
        match lines {
            Ok(lines) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.dirs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(fh, Arc::new(lines));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let lines = match self.listing(ino.0, fh.0) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, l) in lines.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(l.ino), i as u64 + 1, l.kind, &l.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let lines = match self.listing(ino.0, fh.0) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut ns = self.ns_mut();
        for (i, l) in lines.iter().enumerate().skip(skip) {
            // An entry removed since opendir is left out.
            let Ok(node) = ns.node(l.ino) else { continue };
            let attr = node.attr(l.ino);
            if reply.add(
                INodeNo(l.ino),
                i as u64 + 1,
                &l.name,
                &TTL,
                &attr,
                GENERATION,
            ) {
                break;
            }
            // The kernel takes a reference on every entry but `.` and `..`.
            if l.name != "." && l.name != ".." {
                let _ = ns.remember(l.ino);
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let ns = self.ns();
        let blocks = ns.limit() / BLOCK;
        let free = ns.limit().saturating_sub(ns.used()) / BLOCK;
        let files = ns.count();
        reply.statfs(
            blocks,
            free,
            free,
            files.saturating_add(free),
            free,
            BLOCK as u32,
            crate::ns::NAME_MAX as u32,
            BLOCK as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.ns_mut().setxattr(ino.0, name, value, flags), reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.ns().getxattr(ino.0, name).map(<[u8]>::to_vec);
        Self::xattr_reply(value, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let value = self.ns().listxattr(ino.0);
        Self::xattr_reply(value, size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.ns_mut().removexattr(ino.0, name), reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        Self::empty(
            self.ns().access(ino.0, mask.bits(), req.uid(), req.gid()),
            reply,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let made = self.ns_mut().create(
            parent.0,
            name,
            NewKind::File,
            mode & !umask,
            req.uid(),
            req.gid(),
        );
        let ns = self.ns();
        match made.and_then(|ino| Ok(ns.node(ino)?.attr(ino))) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                GENERATION,
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(errno(libc::EOPNOTSUPP));
        }
        let mut ns = self.ns_mut();
        let res = (|| {
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            let size = ns.node(ino.0)?.attr(ino.0).size;
            if end > size {
                ns.truncate(&self.tree, ino.0, end)?;
            }
            Ok(())
        })();
        Self::empty(res, reply);
    }
}
