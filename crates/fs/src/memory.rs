//! Memory mode: the whole sealed tree verified and decrypted at start into
//! a tmpfs that never swaps (`noswap`), instead of served through FUSE.
//!
//! For small, hot servers whose per-request file calls (`stat`, `open`,
//! `close`) cost measurably more on FUSE than on a kernel file system
//! (nginx's small pages, `docs/fs.md`). The app then runs on tmpfs:
//! writable everywhere, at kernel speed, at the cost of start-up time and
//! memory equal to the tree's size. Every chunk is verified before the app
//! starts, so a tampered chunk stops the start instead of failing a read.
//! The writable room left after the tree and the secrets is
//! [`MountOptions::upper_limit_bytes`] (`ENOSPC` beyond); secrets are files
//! of mode 0400 in the same tmpfs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cocoon_image::EntryKind;
use cocoon_seal::reader::UnlockedTree;
use zeroize::Zeroizing;

use crate::{sys, Error, MountOptions};

/// tmpfs accounts for whole pages.
const PAGE: u64 = 4096;

/// Room for what the tree may take besides file data and long symlinks
/// while it is unpacked; the size is set exactly afterwards.
const SLACK: u64 = 16 << 20;

/// Symlink targets at least this long take a page of their own in tmpfs
/// (shorter ones live in the inode).
const INLINE_SYMLINK_MAX: usize = 127;

/// Mounts a tmpfs at `mountpoint` (an existing empty directory), writes
/// `tree` into it with every chunk verified and decrypted, and adds
/// `opts.files` (mode 0400, owned by `opts.files_owner`; missing parents
/// made root-owned 0755). `opts.allow_other` has no meaning here: the
/// files' own owners and modes apply. Needs CAP_SYS_ADMIN, CAP_CHOWN and
/// a kernel with tmpfs `noswap` (Linux 6.4). On any failure the tmpfs is
/// unmounted again and the error says what failed; nothing stays.
pub fn unpack(tree: &UnlockedTree, mountpoint: &Path, opts: MountOptions) -> Result<(), Error> {
    let mountpoint = fs::canonicalize(mountpoint).map_err(|e| Error::Unpack {
        mountpoint: mountpoint.to_path_buf(),
        reason: format!("the mount point: {e}"),
    })?;
    let fail = |reason: String| Error::Unpack {
        mountpoint: mountpoint.clone(),
        reason,
    };
    let secrets: u64 = opts.files.iter().map(|(_, c)| pages(c.len() as u64)).sum();
    let size = tree_bytes(tree)
        .saturating_add(secrets)
        .saturating_add(SLACK)
        .saturating_add(opts.upper_limit_bytes);
    sys::tmpfs_mount(&mountpoint, size, false).map_err(|e| {
        fail(match e.raw_os_error() {
            Some(libc::EINVAL) => format!(
                "mounting a tmpfs with noswap failed ({e}): memory mode needs Linux 6.4 or later, \
                 so that decrypted files never reach swap; use the default FUSE mode"
            ),
            _ => format!("mounting a tmpfs failed: {e} (needs CAP_SYS_ADMIN)"),
        })
    })?;
    let filled = fill(tree, &mountpoint, opts).map_err(fail);
    if filled.is_err() {
        if let Err(e) = sys::detach(&mountpoint) {
            log::warn!("unmounting {} after a failure: {e}", mountpoint.display());
        }
    }
    filled
}

/// Writes the tree and the files into the fresh tmpfs, then shrinks its
/// size to what they use plus the writable room.
fn fill(tree: &UnlockedTree, root: &Path, opts: MountOptions) -> Result<(), String> {
    tree.extract(root).map_err(|e| e.to_string())?;
    let (uid, gid) = opts.files_owner;
    for (path, content) in opts.files {
        add_file(root, &path, content, uid, gid)
            .map_err(|reason| format!("cannot place the in-memory file {path}: {reason}"))?;
    }
    let st = rustix::fs::statvfs(root).map_err(|e| format!("statvfs: {e}"))?;
    let used = (st.f_blocks - st.f_bfree) * st.f_frsize;
    sys::tmpfs_mount(root, used.saturating_add(opts.upper_limit_bytes), true)
        .map_err(|e| format!("setting the tmpfs size: {e}"))
}

/// Bytes the tree takes in tmpfs pages: file data (hardlinks once) and
/// long symlink targets.
fn tree_bytes(tree: &UnlockedTree) -> u64 {
    tree.entries()
        .iter()
        .map(|e| match (&e.record.kind, e.data) {
            (EntryKind::File { size, .. }, Some(_)) => pages(*size),
            (EntryKind::Symlink { target }, _) if target.len() > INLINE_SYMLINK_MAX => PAGE,
            _ => 0,
        })
        .sum()
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE).saturating_mul(PAGE)
}

/// Puts a secret at absolute `path` below `root`: parents must be real
/// directories (missing ones are made, root-owned 0755), a non-directory
/// already there is replaced, the new file is 0400 and owned by uid/gid.
fn add_file(
    root: &Path,
    path: &str,
    content: Zeroizing<Vec<u8>>,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    let parts =
        crate::ns::components(path).ok_or("not a normalised absolute path (/a/b, no . or ..)")?;
    let Some((file, dirs)) = parts.split_last() else {
        return Err("it is the root directory".into());
    };
    let mut dir = root.to_path_buf();
    for part in dirs {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{part} is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .map_err(|e| format!("making directory {part}: {e}"))?,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    let target: PathBuf = dir.join(file);
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => return Err("a directory is there".into()),
        Ok(_) => fs::remove_file(&target).map_err(|e| format!("replacing the file there: {e}"))?,
        Err(_) => {}
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| format!("creating it: {e}"))?;
    out.write_all(&content)
        .map_err(|e| format!("writing it: {e}"))?;
    std::os::unix::fs::fchown(&out, Some(uid), Some(gid))
        .map_err(|e| format!("setting its owner: {e}"))
}
