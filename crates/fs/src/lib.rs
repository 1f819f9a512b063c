//! `cocoon-fs`: serves an unlocked sealed tree through FUSE.
//!
//! [`mount`] puts the tree of a [`UnlockedTree`] at a mount point:
//!
//! - every path, owner, mode (setuid, setgid, sticky), mtime, xattr, symlink,
//!   device node, FIFO and hardlink exactly as the sealed records say, with
//!   stable inode numbers;
//! - file content read lazily: each read verifies and decrypts only the
//!   chunks it touches, and a chunk that fails verification is an `EIO`,
//!   never wrong bytes; verified content stays in the kernel page cache
//!   (`FOPEN_KEEP_CACHE`) and verified chunks in a bounded cache of the
//!   server ([`ReadOptions::chunk_cache_bytes`]), loaded ahead of
//!   sequential readers by a few threads;
//! - a writable layer held only in memory (copy-up on write, capped by
//!   [`MountOptions::upper_limit_bytes`], `ENOSPC` beyond), so nothing an
//!   app writes ever reaches the host's disk;
//! - extra read-only in-memory files (secrets) at given paths;
//! - the kernel checks permissions (`default_permissions`), and with
//!   [`MountOptions::allow_other`] other users (the app after it drops
//!   root) may use the mount.
//!
//! [`unpack_in_memory`] is the other way to serve a tree (memory mode):
//! all of it verified and decrypted at start into a tmpfs that never swaps,
//! for apps that FUSE's per-call cost slows down.
//!
//! See `docs/fs.md` for the design and its limits.

mod cache;
mod error;
mod fuse;
mod memory;
mod ns;
mod sys;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cocoon_seal::reader::UnlockedTree;

pub use error::Error;
pub use memory::unpack as unpack_in_memory;

/// How a sealed tree is mounted.
pub struct MountOptions {
    /// Let other uids (the app after setuid) use the mount. The kernel
    /// checks every access against the records' owners and modes either
    /// way (`default_permissions`).
    pub allow_other: bool,
    /// Cap on the memory the writable layer may hold: written and copied-up
    /// file content, plus a small fixed cost per created entry. Writes past
    /// it fail with `ENOSPC`.
    pub upper_limit_bytes: u64,
    /// Extra in-memory read-only files (secrets) at absolute paths, mode
    /// 0400, owned by [`MountOptions::files_owner`]. Missing parent
    /// directories are made (root, 0755); a file already at a path is
    /// replaced. The bytes are wiped from memory when the mount ends.
    pub files: Vec<(String, zeroize::Zeroizing<Vec<u8>>)>,
    /// Owner (uid, gid) of the extra files.
    pub files_owner: (u32, u32),
}

impl Default for MountOptions {
    /// Only root may use the mount, a 256 MiB writable layer, no extra files.
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            upper_limit_bytes: 256 << 20,
            files: Vec::new(),
            files_owner: (0, 0),
        }
    }
}

impl std::fmt::Debug for MountOptions {
    /// Shows the paths and lengths of the extra files, never their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<(&str, usize)> = self
            .files
            .iter()
            .map(|(p, v)| (p.as_str(), v.len()))
            .collect();
        f.debug_struct("MountOptions")
            .field("allow_other", &self.allow_other)
            .field("upper_limit_bytes", &self.upper_limit_bytes)
            .field("files", &files)
            .field("files_owner", &self.files_owner)
            .finish()
    }
}

/// How reads of sealed content are served (see `docs/fs.md`). Kept apart
/// from [`MountOptions`] so that callers building that struct field by field
/// keep compiling; [`mount`] uses [`ReadOptions::default`].
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Bytes of verified, decrypted chunks kept in memory (least recently
    /// used evicted first), so that small reads of one chunk verify and
    /// decrypt it once. 0 turns the cache and prefetching off: every read
    /// then verifies the chunks it touches.
    pub chunk_cache_bytes: u64,
    /// Threads that load the next chunks of sequentially read files (and
    /// the later chunks of a large request) in parallel.
    pub prefetch_threads: usize,
    /// Threads answering FUSE requests (the kernel sends reads of one
    /// file in parallel). More than the CPUs measured slower.
    pub fuse_threads: usize,
}

impl Default for ReadOptions {
    /// A 64 MiB chunk cache, 2 prefetch threads, one FUSE thread per CPU
    /// (2 to 8).
    fn default() -> Self {
        ReadOptions {
            chunk_cache_bytes: 64 << 20,
            prefetch_threads: 2,
            fuse_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
        }
    }
}

/// A mounted sealed tree, served by background threads. Dropping it
/// detaches the mount (`MNT_DETACH`) like [`MountHandle::unmount`].
#[derive(Debug)]
pub struct MountHandle {
    mountpoint: PathBuf,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    mounted: bool,
    chunks: Arc<cache::ChunkCache>,
}

/// Mounts `tree` at `mountpoint` (an existing directory) and serves it in
/// background threads until the mount goes away. Needs `/dev/fuse` and
/// CAP_SYS_ADMIN. Reads are served as [`ReadOptions::default`] says.
pub fn mount(
    tree: Arc<UnlockedTree>,
    mountpoint: &Path,
    opts: MountOptions,
) -> Result<MountHandle, Error> {
    mount_with(tree, mountpoint, opts, ReadOptions::default())
}

/// [`mount`] with the given read tuning.
pub fn mount_with(
    tree: Arc<UnlockedTree>,
    mountpoint: &Path,
    opts: MountOptions,
    read: ReadOptions,
) -> Result<MountHandle, Error> {
    let mut ns = ns::Ns::from_tree(&tree, opts.upper_limit_bytes)?;
    let (uid, gid) = opts.files_owner;
    for (path, content) in opts.files {
        ns.add_file(&path, content, uid, gid)?;
    }
    let mount_err = |source| Error::Mount {
        mountpoint: mountpoint.to_path_buf(),
        source,
    };
    let mountpoint = std::fs::canonicalize(mountpoint).map_err(mount_err)?;
    let fd = sys::fuse_mount(&mountpoint, opts.allow_other).map_err(mount_err)?;
    // From here on the mount exists: `handle` detaches it on any failure.
    let chunks = Arc::new(cache::ChunkCache::new(tree.clone(), read.chunk_cache_bytes));
    let mut handle = MountHandle {
        mountpoint,
        thread: None,
        mounted: true,
        chunks: chunks.clone(),
    };
    let mut config = fuser::Config::default();
    config.n_threads = Some(read.fuse_threads.clamp(1, 64));
    // Threads share the one /dev/fuse descriptor: nothing is reopened by
    // path later, so the launcher may chroot right after mount returns.
    config.clone_fd = false;
    let acl = if opts.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    let fs = fuse::SealedFs::new(tree, ns, chunks, read.prefetch_threads);
    let session = fuser::Session::from_fd(fs, fd, acl, config).map_err(|source| Error::Mount {
        mountpoint: handle.mountpoint.clone(),
        source,
    })?;
    let thread = std::thread::Builder::new()
        .name("cocoon-fs".into())
        .spawn(move || session.run())
        .map_err(|source| Error::Mount {
            mountpoint: handle.mountpoint.clone(),
            source,
        })?;
    handle.thread = Some(thread);
    // Only now: a stat of the mount waits for the session to answer.
    sys::tune_readahead(&handle.mountpoint);
    Ok(handle)
}

impl MountHandle {
    /// Where the tree is mounted (the canonical path at mount time; after a
    /// chroot into it, this path no longer names it).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Empties the server's cache of verified chunks, so that the next
    /// reads verify and decrypt from the blob again (with the kernel's
    /// `drop_caches`, a cold start; `bench/fs.sh` uses it).
    pub fn drop_chunk_cache(&self) {
        self.chunks.clear();
    }

    /// Detaches the mount (`MNT_DETACH`): new lookups fail at once, and
    /// files still open keep working until closed. Waits up to two seconds
    /// for the server threads to finish.
    pub fn unmount(mut self) -> Result<(), Error> {
        self.mounted = false;
        sys::detach(&self.mountpoint).map_err(|source| Error::Unmount {
            mountpoint: self.mountpoint.clone(),
            source,
        })?;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                if let Ok(Err(e)) = thread.join() {
                    log::warn!("the FUSE session ended with an error: {e}");
                }
            }
        }
        Ok(())
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = sys::detach(&self.mountpoint) {
                log::warn!("detaching {}: {e}", self.mountpoint.display());
            }
        }
    }
}
