//! The flattened file tree of an image: every path with its full metadata.
//!
//! Paths are absolute and normalised (`/`, `/etc`, `/etc/passwd`). The tree
//! never holds an entry below a non-directory, so no path can pass through a
//! symlink: materialising it cannot write outside the destination.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::ContentSource;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file. Paths that share `inode` are hardlinks of one file.
    File {
        /// Length in bytes.
        size: u64,
        /// SHA-256 of the content.
        digest: Digest,
        /// Identity of the underlying file, shared by hardlinks. Its value
        /// depends on layer order; use it only to group paths.
        #[serde(skip)]
        inode: u64,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, unchanged.
        target: String,
    },
    /// A character device node.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One path of the tree with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// What the path is.
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    /// A directory owned by root with mode 0755, as made for a missing parent.
    pub fn implicit_dir() -> Self {
        Entry {
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// The parent of a normalised absolute path (`/` has none).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    Some(match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    })
}

/// Whether `path` lies strictly below directory `dir`.
pub fn is_below(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path != "/";
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// A flattened image file tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// A tree holding only the root directory.
    pub fn new() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert("/".to_string(), Entry::implicit_dir());
        Tree { entries }
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// All entries, parents before children, in byte order of their paths.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether only the root is present.
    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Paths at or below `path`.
    fn subtree(&self, path: &str) -> Vec<String> {
        self.entries
            .range(path.to_string()..)
            .take_while(|(p, _)| p.starts_with(path))
            .filter(|(p, _)| p.as_str() == path || is_below(p, path))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Removes `path` and everything below it; returns whether it existed.
    pub fn remove(&mut self, path: &str) -> bool {
        let doomed = self.subtree(path);
        for p in &doomed {
            self.entries.remove(p);
        }
        !doomed.is_empty()
    }

    /// Removes everything below directory `dir` for which `keep` is false.
    pub fn remove_children(&mut self, dir: &str, keep: impl Fn(&str) -> bool) {
        for p in self.subtree(dir) {
            if p != dir && !keep(&p) {
                self.entries.remove(&p);
            }
        }
    }

    /// Puts `entry` at `path`, whose parent must already be a directory. A
    /// directory replacing a directory keeps its children; anything else
    /// replaces the whole subtree at `path`.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let keep_children = entry.is_dir() && self.entries.get(path).is_some_and(Entry::is_dir);
        if !keep_children {
            self.remove(path);
        }
        self.entries.insert(path.to_string(), entry);
    }

    /// Writes the tree into `dest`, which must be absent or an empty
    /// directory, with contents from `store`: files, hardlinks, symlinks,
    /// device nodes, FIFOs, owners, modes (setuid/setgid/sticky included),
    /// xattrs and mtimes. Nothing is created outside `dest`: the tree has no
    /// entries below symlinks, and every path is created fresh. File
    /// contents are copied by one thread per core.
    pub fn materialize(&self, dest: &Path, store: &(dyn ContentSource + Sync)) -> Result<()> {
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        match fs::read_dir(dest) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::io(
                        ctx("unpacking into", dest),
                        io::Error::new(io::ErrorKind::AlreadyExists, "the directory is not empty"),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dest).map_err(|e| Error::io(ctx("creating", dest), e))?
            }
            Err(e) => return Err(Error::io(ctx("reading", dest), e)),
        }
        // Directories, symlinks and nodes first (parents before children,
        // as the paths are in byte order); the first path of every file
        // next, in parallel; hardlinks to those last.
        let mut first_path_of_inode: HashMap<u64, PathBuf> = HashMap::new();
        let mut files = Vec::new();
        let mut links = Vec::new();
        let mut dirs = Vec::new();
        for (path, entry) in self.iter() {
            let target = dest.join(path.trim_start_matches('/'));
            let io_err = |e| Error::io(ctx("creating", &target), e);
            match &entry.kind {
                EntryKind::Dir => {
                    if path != "/" {
                        fs::create_dir(&target).map_err(io_err)?;
                    }
                    dirs.push((target, entry));
                    continue;
                }
                EntryKind::File { inode, .. } => {
                    match first_path_of_inode.get(inode) {
                        Some(first) => links.push((first.clone(), target)),
                        None => {
                            first_path_of_inode.insert(*inode, target.clone());
                            files.push((target, entry));
                        }
                    }
                    continue;
                }
                EntryKind::Symlink { target: link } => symlink(link, &target).map_err(io_err)?,
                EntryKind::CharDevice { major, minor } => {
                    mknod(&target, nix::sys::stat::SFlag::S_IFCHR, *major, *minor)?
                }
                EntryKind::BlockDevice { major, minor } => {
                    mknod(&target, nix::sys::stat::SFlag::S_IFBLK, *major, *minor)?
                }
                EntryKind::Fifo => mknod(&target, nix::sys::stat::SFlag::S_IFIFO, 0, 0)?,
            }
            apply_metadata(&target, entry)?;
        }
        write_files(&files, store)?;
        for (first, target) in &links {
            fs::hard_link(first, target).map_err(|e| Error::io(ctx("creating", target), e))?;
        }
        // Directories last, deepest first, so creating children does not
        // disturb their mtimes.
        for (target, entry) in dirs.iter().rev() {
            apply_metadata(target, entry)?;
        }
        Ok(())
    }
}

/// Creates every file of `files` with its content from `store` and its
/// metadata, on one thread per core (at most 4); the first error wins.
fn write_files(files: &[(PathBuf, &Entry)], store: &(dyn ContentSource + Sync)) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(files.len().max(1));
    let worker = || -> Result<()> {
        while !failed.load(Ordering::Relaxed) {
            let Some((target, entry)) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let done = write_file(target, entry, store);
            if done.is_err() {
                failed.store(true, Ordering::Relaxed);
                return done;
            }
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mut result = worker();
        for h in helpers {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "unpacking",
                    io::Error::other("a writer thread panicked"),
                ))
            });
            result = result.and(r);
        }
        result
    })
}

fn write_file(target: &Path, entry: &Entry, store: &(dyn ContentSource + Sync)) -> Result<()> {
    let EntryKind::File { digest, .. } = &entry.kind else {
        return Ok(());
    };
    let io_err = |e| Error::io(format!("creating {}", target.display()), e);
    let mut src = store
        .open_content(digest)
        .map_err(|e| Error::io(format!("reading content {digest}"), e))?;
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(io_err)?;
    // Large writes whatever the source's read size.
    let mut out = io::BufWriter::with_capacity(1 << 17, out);
    io::copy(&mut src, &mut out).map_err(io_err)?;
    out.into_inner().map_err(|e| io_err(e.into_error()))?;
    apply_metadata(target, entry)
}

fn mknod(path: &Path, kind: nix::sys::stat::SFlag, major: u32, minor: u32) -> Result<()> {
    let dev = nix::sys::stat::makedev(major.into(), minor.into());
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev,
    )
    .map_err(|e| Error::io(format!("creating node {}", path.display()), e.into()))
}

fn apply_metadata(path: &Path, entry: &Entry) -> Result<()> {
    let err =
        |what: &str, e: io::Error| Error::io(format!("setting {what} of {}", path.display()), e);
    let uid =
        u32::try_from(entry.uid).map_err(|_| err("owner", io::ErrorKind::InvalidInput.into()))?;
    let gid =
        u32::try_from(entry.gid).map_err(|_| err("group", io::ErrorKind::InvalidInput.into()))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| err("owner", e))?;
    for (name, value) in &entry.xattrs {
        xattr::set(path, name, value).map_err(|e| err(&format!("xattr {name}"), e))?;
    }
    if !matches!(entry.kind, EntryKind::Symlink { .. }) {
        // After chown, which clears setuid/setgid.
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
            .map_err(|e| err("mode", e))?;
    }
    let mtime = filetime::FileTime::from_unix_time(entry.mtime, 0);
    filetime::set_symlink_file_times(path, mtime, mtime).map_err(|e| err("mtime", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_prefixes() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert!(is_below("/a/b", "/a"));
        assert!(!is_below("/ab", "/a"));
        assert!(!is_below("/a", "/a"));
        assert!(is_below("/a", "/"));
    }

    #[test]
    fn remove_takes_the_subtree_only() {
        let mut t = Tree::new();
        for p in ["/a", "/a/b", "/a-b", "/ab"] {
            t.insert(p, Entry::implicit_dir());
        }
        assert!(t.remove("/a"));
        let left: Vec<&str> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(left, ["/", "/a-b", "/ab"]);
    }
}
