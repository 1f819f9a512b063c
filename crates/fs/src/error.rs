//! Typed errors of the FUSE server and of memory mode.

use std::path::PathBuf;

/// What went wrong preparing, mounting or unmounting a sealed tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unlocked tree cannot be served as it is (a record the file system
    /// cannot represent). The image has to be converted again.
    #[error("the sealed tree cannot be served: {0}")]
    Tree(String),
    /// An extra in-memory file (secret) cannot be placed at its path.
    #[error("cannot place the in-memory file {path}: {reason}")]
    File {
        /// The requested absolute path.
        path: String,
        /// Why not.
        reason: String,
    },
    /// mount(2) of the FUSE file system failed.
    #[error(
        "mounting the sealed tree at {} failed: {source} (needs /dev/fuse, CAP_SYS_ADMIN and an existing directory)",
        mountpoint.display()
    )]
    Mount {
        /// Where it was to be mounted.
        mountpoint: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Memory mode: the tree could not be put into a tmpfs. Nothing stays
    /// mounted.
    #[error("unpacking the sealed tree into memory at {}: {reason}", mountpoint.display())]
    Unpack {
        /// Where the tmpfs was to be.
        mountpoint: PathBuf,
        /// What failed.
        reason: String,
    },
    /// umount2(2) of the FUSE file system failed.
    #[error("unmounting the sealed tree at {} failed: {source}", mountpoint.display())]
    Unmount {
        /// Where it was mounted.
        mountpoint: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
