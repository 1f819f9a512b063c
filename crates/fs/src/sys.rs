//! The system calls: mount(2) of a FUSE file system on an open
//! `/dev/fuse` or of a tmpfs, and umount2(2) with `MNT_DETACH`. The only `unsafe` code of
//! the crate is here.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Read-ahead for the mount's backing device: large sequential reads of
/// sealed content go much faster with it (kernel default 128 KiB).
const READ_AHEAD_KB: u32 = 4096;

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Opens `/dev/fuse` and mounts it at `mountpoint` with
/// `default_permissions` (and `allow_other`); returns the device.
pub(crate) fn fuse_mount(mountpoint: &Path, allow_other: bool) -> io::Result<OwnedFd> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/fuse: {e}")))?;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let data = format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid},default_permissions{}",
        dev.as_raw_fd(),
        if allow_other { ",allow_other" } else { "" }
    );
    mount(b"fuse.cocoon", mountpoint, 0, &data)?;
    Ok(OwnedFd::from(dev))
}

/// Mounts a tmpfs at `mountpoint` (`mode=0755,noswap,size=...`), or with
/// `remount`, changes the size of the one there.
pub(crate) fn tmpfs_mount(mountpoint: &Path, size: u64, remount: bool) -> io::Result<()> {
    if remount {
        mount(
            b"tmpfs",
            mountpoint,
            libc::MS_REMOUNT,
            &format!("size={size}"),
        )
    } else {
        mount(
            b"tmpfs",
            mountpoint,
            0,
            &format!("mode=0755,noswap,size={size}"),
        )
    }
}

/// mount(2) of a file system of type `fstype` (source `cocoon`) at
/// `mountpoint` with `flags` and the option string `data`.
fn mount(fstype: &[u8], mountpoint: &Path, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let source = cstring(b"cocoon")?;
    let fstype = cstring(fstype)?;
    let target = cstring(mountpoint.as_os_str().as_bytes())?;
    let data = cstring(data.as_bytes())?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives
    // the call; mount(2) only reads them.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lazily unmounts `mountpoint`.
pub(crate) fn detach(mountpoint: &Path) -> io::Result<()> {
    let target = cstring(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `target` is a valid NUL-terminated string for the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the read-ahead of the new mount where `/sys` is writable; a
/// read-only `/sys` (as in most containers) keeps the kernel default.
pub(crate) fn tune_readahead(mountpoint: &Path) {
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        log::debug!("not raising read-ahead ({path}): {e}");
    }
}
