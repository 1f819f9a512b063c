//! The namespace: every inode of the mounted tree, in memory.
//!
//! At mount the records of the unlocked sealed tree (names, kinds, owners,
//! modes, times, xattrs; no content) become one mutable in-memory namespace.
//! Content stays in the sealed blob ([`Content::Lower`]) until a write or a
//! truncation copies it up into memory ([`Content::Upper`]). Deleting or
//! renaming a lower entry only changes this namespace, so deleted lower
//! entries stay deleted (the role of overlayfs whiteouts) and a directory
//! lists exactly its current children, lower and upper alike.
//!
//! Every operation returns an errno on failure; nothing here panics on any
//! input.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cocoon_image::EntryKind;
use cocoon_seal::index::DataRef;
use cocoon_seal::reader::UnlockedTree;
use fuser::{FileAttr, FileType, INodeNo};
use zeroize::Zeroizing;

use crate::error::Error;

/// Inode number of the root directory (fixed by FUSE).
pub(crate) const ROOT: u64 = 1;
/// What a node made after mount costs against the upper limit, besides its
/// content (covers its name, its metadata and map overhead).
pub(crate) const NODE_COST: u64 = 512;
/// Longest file name.
pub(crate) const NAME_MAX: usize = 255;

/// An errno, or a value.
pub(crate) type Res<T> = Result<T, i32>;

/// Where a regular file's bytes are.
pub(crate) enum Content {
    /// Still in the sealed blob: verified and decrypted on every read.
    Lower {
        /// The file's chunks.
        data: DataRef,
        /// Length in bytes.
        size: u64,
    },
    /// Written (or copied up) into memory.
    Upper(Vec<u8>),
    /// An extra read-only in-memory file (a secret); wiped when dropped.
    Secret(Zeroizing<Vec<u8>>),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Lower { size, .. } => *size,
            Content::Upper(v) => v.len() as u64,
            Content::Secret(v) => v.len() as u64,
        }
    }
}

/// What an inode is.
pub(crate) enum Kind {
    /// A directory: its children by name, and its parent for `..`.
    Dir {
        children: BTreeMap<OsString, u64>,
        parent: u64,
    },
    /// A regular file.
    File(Content),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A character device (`rdev`).
    CharDevice(u32),
    /// A block device (`rdev`).
    BlockDevice(u32),
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

/// One inode.
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// Permission bits, setuid/setgid/sticky included (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    pub(crate) nlink: u32,
    pub(crate) xattrs: BTreeMap<OsString, Vec<u8>>,
    /// References the kernel holds (lookups not yet forgotten).
    pub(crate) nlookup: u64,
    /// Made after mount (costs [`NODE_COST`]).
    pub(crate) upper: bool,
    /// Bytes currently counted against the upper limit for this node.
    pub(crate) charged: u64,
}

impl Node {
    fn new(kind: Kind, mode: u32, uid: u32, gid: u32, time: SystemTime) -> Node {
        let nlink = if matches!(kind, Kind::Dir { .. }) {
            2
        } else {
            1
        };
        Node {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            atime: time,
            mtime: time,
            ctime: time,
            nlink,
            xattrs: BTreeMap::new(),
            nlookup: 0,
            upper: false,
            charged: 0,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    /// What this node should be charged against the upper limit.
    fn cost(&self) -> u64 {
        let content = match &self.kind {
            Kind::File(Content::Upper(v)) => v.len() as u64,
            Kind::Symlink(t) if self.upper => t.len() as u64,
            _ => 0,
        };
        let meta = if self.upper {
            NODE_COST
                + self
                    .xattrs
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) as u64)
                    .sum::<u64>()
        } else {
            0
        };
        content + meta
    }

    /// The file type FUSE reports.
    pub(crate) fn file_type(&self) -> FileType {
        match self.kind {
            Kind::Dir { .. } => FileType::Directory,
            Kind::File(_) => FileType::RegularFile,
            Kind::Symlink(_) => FileType::Symlink,
            Kind::CharDevice(_) => FileType::CharDevice,
            Kind::BlockDevice(_) => FileType::BlockDevice,
            Kind::Fifo => FileType::NamedPipe,
            Kind::Socket => FileType::Socket,
        }
    }

    /// The attributes FUSE reports for inode `ino`.
    pub(crate) fn attr(&self, ino: u64) -> FileAttr {
        let (size, rdev) = match &self.kind {
            Kind::File(c) => (c.len(), 0),
            Kind::Symlink(t) => (t.len() as u64, 0),
            Kind::Dir { children, .. } => (4096.max(children.len() as u64 * 32), 0),
            Kind::CharDevice(r) | Kind::BlockDevice(r) => (0, *r),
            Kind::Fifo | Kind::Socket => (0, 0),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind: self.file_type(),
            perm: (self.mode & 0o7777) as u16,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev,
            blksize: 128 * 1024,
            flags: 0,
        }
    }
}

/// What a read has to do, decided under the namespace lock.
pub(crate) enum ReadPlan {
    /// Read `size` bytes of file content from the sealed blob.
    Lower { data: DataRef, size: u64 },
    /// These bytes (already cut to the requested range).
    Bytes(Vec<u8>),
}

/// One line of a directory listing.
pub(crate) struct DirLine {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    pub(crate) name: OsString,
}

/// What a new node is.
pub(crate) enum NewKind {
    /// A directory.
    Dir,
    /// An empty regular file.
    File,
    /// A symlink to this target.
    Symlink(Vec<u8>),
    /// A device, FIFO or socket: `S_IF*` type bits and `rdev`.
    Special(u32, u32),
}

/// The whole namespace.
pub(crate) struct Ns {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    used: u64,
    limit: u64,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn epoch_plus(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The last component of a normalised absolute path.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn check_name(name: &OsStr) -> Res<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(libc::EINVAL);
    }
    if b.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(())
}

/// Splits `/a/b/c` into its components, refusing anything not normalised.
pub(crate) fn components(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != ".." && p.len() <= NAME_MAX)
        .then_some(parts)
}

impl Ns {
    /// Builds the namespace of `tree`. Inode numbers are stable for a given
    /// tree: the root is 1 and path number `i` of the index is `i + 2`
    /// (later paths of a hardlink share the first path's number).
    pub(crate) fn from_tree(tree: &UnlockedTree, limit: u64) -> Result<Ns, Error> {
        let entries = tree.entries();
        let mut nodes: HashMap<u64, Node> = HashMap::with_capacity(entries.len());
        let mut ino_of: HashMap<&str, u64> = HashMap::with_capacity(entries.len());
        let id = |v: u64, what: &str, path: &str| {
            u32::try_from(v).map_err(|_| Error::Tree(format!("{what} {v} of {path} is too large")))
        };
        for (i, e) in entries.iter().enumerate() {
            let r = &e.record;
            if let Some(first) = &r.link {
                let ino = *ino_of.get(first.as_str()).ok_or_else(|| {
                    Error::Tree(format!("{} links to {first}, which comes later", r.path))
                })?;
                let node = nodes
                    .get_mut(&ino)
                    .filter(|n| matches!(n.kind, Kind::File(_)))
                    .ok_or_else(|| {
                        Error::Tree(format!("{} links to {first}, not a file", r.path))
                    })?;
                node.nlink = node.nlink.saturating_add(1);
                ino_of.insert(&r.path, ino);
                continue;
            }
            let ino = if r.path == "/" { ROOT } else { i as u64 + 2 };
            let kind = match &r.kind {
                EntryKind::Dir => Kind::Dir {
                    children: BTreeMap::new(),
                    parent: ROOT,
                },
                EntryKind::File { size, .. } => {
                    let data = tree.data_of(e).ok_or_else(|| {
                        Error::Tree(format!("{} has no content in the index", r.path))
                    })?;
                    Kind::File(Content::Lower { data, size: *size })
                }
                EntryKind::Symlink { target } => Kind::Symlink(target.as_bytes().to_vec()),
                EntryKind::CharDevice { major, minor } => {
                    Kind::CharDevice(libc::makedev(*major, *minor) as u32)
                }
                EntryKind::BlockDevice { major, minor } => {
                    Kind::BlockDevice(libc::makedev(*major, *minor) as u32)
                }
                EntryKind::Fifo => Kind::Fifo,
            };
            if r.path == "/" && !matches!(kind, Kind::Dir { .. }) {
                return Err(Error::Tree("the root is not a directory".into()));
            }
            let mut node = Node::new(
                kind,
                r.mode,
                id(r.uid, "uid", &r.path)?,
                id(r.gid, "gid", &r.path)?,
                epoch_plus(r.mtime.unwrap_or(0)),
            );
            for (k, v) in &r.xattrs {
                let value = hex::decode(v)
                    .ok()
                    .ok_or_else(|| Error::Tree(format!("xattr {k} of {} is not hex", r.path)))?;
                node.xattrs.insert(OsString::from(k), value);
            }
            nodes.insert(ino, node);
            ino_of.insert(&r.path, ino);
        }
        if !nodes.contains_key(&ROOT) {
            return Err(Error::Tree("the tree has no root directory".into()));
        }
        // Attach every path to its parent directory.
        for e in entries {
            let path = e.record.path.as_str();
            let Some(parent) = cocoon_image::tree::parent(path) else {
                continue;
            };
            let (Some(&ino), Some(&pino)) = (ino_of.get(path), ino_of.get(parent)) else {
                return Err(Error::Tree(format!("{path} has no parent directory")));
            };
            let child_is_dir = nodes.get(&ino).is_some_and(Node::is_dir);
            if child_is_dir {
                if let Some(Kind::Dir { parent, .. }) = nodes.get_mut(&ino).map(|n| &mut n.kind) {
                    *parent = pino;
                }
            }
            let Some(pnode) = nodes.get_mut(&pino) else {
                return Err(Error::Tree(format!("{path} has no parent directory")));
            };
            let Kind::Dir { children, .. } = &mut pnode.kind else {
                return Err(Error::Tree(format!(
                    "the parent of {path} is not a directory"
                )));
            };
            children.insert(OsString::from(base_name(path)), ino);
            if child_is_dir {
                pnode.nlink = pnode.nlink.saturating_add(1);
            }
        }
        Ok(Ns {
            nodes,
            next_ino: entries.len() as u64 + 2,
            used: 0,
            limit,
        })
    }

    /// Bytes counted against the upper limit.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// The upper limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Number of inodes.
    pub(crate) fn count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// The node `ino`.
    pub(crate) fn node(&self, ino: u64) -> Res<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Res<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn children(&self, ino: u64) -> Res<&BTreeMap<OsString, u64>> {
        match &self.node(ino)?.kind {
            Kind::Dir { children, .. } => Ok(children),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn children_mut(&mut self, ino: u64) -> Res<&mut BTreeMap<OsString, u64>> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir { children, .. } => Ok(children),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// Fails with ENOSPC unless `extra` more bytes fit under the limit.
    fn ensure(&self, extra: u64) -> Res<()> {
        if self.used.saturating_add(extra) > self.limit {
            Err(libc::ENOSPC)
        } else {
            Ok(())
        }
    }

    /// Recounts what `ino` holds against the limit after a change.
    fn settle(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let cost = n.cost();
            self.used = self.used.saturating_sub(n.charged).saturating_add(cost);
            n.charged = cost;
        }
    }

    /// Drops `ino` once no name and no kernel reference is left.
    fn maybe_free(&mut self, ino: u64) {
        if ino == ROOT {
            return;
        }
        if self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.nlink == 0 && n.nlookup == 0)
        {
            if let Some(n) = self.nodes.remove(&ino) {
                self.used = self.used.saturating_sub(n.charged);
            }
        }
    }

    fn touch_dir(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let t = now();
            n.mtime = t;
            n.ctime = t;
        }
    }

    /// Resolves `name` in directory `parent` and takes a kernel reference.
    pub(crate) fn lookup(&mut self, parent: u64, name: &OsStr) -> Res<u64> {
        let ino = match name.as_bytes() {
            b"." => {
                self.children(parent)?;
                parent
            }
            b".." => match &self.node(parent)?.kind {
                Kind::Dir { parent, .. } => *parent,
                _ => return Err(libc::ENOTDIR),
            },
            _ => {
                if name.len() > NAME_MAX {
                    return Err(libc::ENAMETOOLONG);
                }
                *self.children(parent)?.get(name).ok_or(libc::ENOENT)?
            }
        };
        self.remember(ino)?;
        Ok(ino)
    }

    /// Takes one more kernel reference on `ino`.
    pub(crate) fn remember(&mut self, ino: u64) -> Res<()> {
        let n = self.node_mut(ino)?;
        n.nlookup = n.nlookup.saturating_add(1);
        Ok(())
    }

    /// The kernel dropped `n` references on `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.nlookup = node.nlookup.saturating_sub(n);
        }
        self.maybe_free(ino);
    }

    /// Lists directory `ino`, `.` and `..` first.
    pub(crate) fn list(&self, ino: u64) -> Res<Vec<DirLine>> {
        let node = self.node(ino)?;
        let Kind::Dir { children, parent } = &node.kind else {
            return Err(libc::ENOTDIR);
        };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push(DirLine {
            ino,
            kind: FileType::Directory,
            name: ".".into(),
        });
        out.push(DirLine {
            ino: *parent,
            kind: FileType::Directory,
            name: "..".into(),
        });
        for (name, &child) in children {
            if let Some(c) = self.nodes.get(&child) {
                out.push(DirLine {
                    ino: child,
                    kind: c.file_type(),
                    name: name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Makes a new node `name` in `parent`, owned by `uid`/`gid` (setgid
    /// directories pass on their group, and to directories their setgid
    /// bit). Takes a kernel reference on it.
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        what: NewKind,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Res<u64> {
        check_name(name)?;
        let p = self.node(parent)?;
        let Kind::Dir { children, .. } = &p.kind else {
            return Err(libc::ENOTDIR);
        };
        if p.nlink == 0 {
            return Err(libc::ENOENT);
        }
        if children.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let mut mode = mode & 0o7777;
        let mut gid = gid;
        if p.mode & libc::S_ISGID != 0 {
            gid = p.gid;
            if matches!(what, NewKind::Dir) {
                mode |= libc::S_ISGID;
            }
        }
        let kind = match what {
            NewKind::Dir => Kind::Dir {
                children: BTreeMap::new(),
                parent,
            },
            NewKind::File => Kind::File(Content::Upper(Vec::new())),
            NewKind::Symlink(t) => {
                if t.len() > 4096 {
                    return Err(libc::ENAMETOOLONG);
                }
                Kind::Symlink(t)
            }
            NewKind::Special(ty, rdev) => match ty {
                libc::S_IFREG => Kind::File(Content::Upper(Vec::new())),
                libc::S_IFIFO => Kind::Fifo,
                libc::S_IFSOCK => Kind::Socket,
                libc::S_IFCHR => Kind::CharDevice(rdev),
                libc::S_IFBLK => Kind::BlockDevice(rdev),
                _ => return Err(libc::EINVAL),
            },
        };
        let is_dir = matches!(kind, Kind::Dir { .. });
        let mut node = Node::new(kind, mode, uid, gid, now());
        node.upper = true;
        node.nlookup = 1;
        self.ensure(node.cost())?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.children_mut(parent)?.insert(name.to_owned(), ino);
        if is_dir {
            let p = self.node_mut(parent)?;
            p.nlink = p.nlink.saturating_add(1);
        }
        self.touch_dir(parent);
        self.settle(ino);
        Ok(ino)
    }

    /// Adds the name `name` in `parent` for file `ino`; takes a reference.
    pub(crate) fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Res<()> {
        check_name(name)?;
        if self.node(ino)?.is_dir() {
            return Err(libc::EPERM);
        }
        let p = self.node(parent)?;
        if p.nlink == 0 {
            return Err(libc::ENOENT);
        }
        if self.children(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.children_mut(parent)?.insert(name.to_owned(), ino);
        let n = self.node_mut(ino)?;
        n.nlink = n.nlink.saturating_add(1);
        n.nlookup = n.nlookup.saturating_add(1);
        n.ctime = now();
        self.touch_dir(parent);
        Ok(())
    }

    /// Removes the non-directory `name` from `parent`.
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let ino = *self.children(parent)?.get(name).ok_or(libc::ENOENT)?;
        if self.node(ino)?.is_dir() {
            return Err(libc::EISDIR);
        }
        self.children_mut(parent)?.remove(name);
        let n = self.node_mut(ino)?;
        n.nlink = n.nlink.saturating_sub(1);
        n.ctime = now();
        self.touch_dir(parent);
        self.maybe_free(ino);
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> Res<()> {
        let ino = *self.children(parent)?.get(name).ok_or(libc::ENOENT)?;
        if !self.children(ino)?.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.children_mut(parent)?.remove(name);
        self.node_mut(ino)?.nlink = 0;
        let p = self.node_mut(parent)?;
        p.nlink = p.nlink.saturating_sub(1);
        self.touch_dir(parent);
        self.maybe_free(ino);
        Ok(())
    }

    /// Whether directory `ino` is `dir` or lies below it.
    fn is_within(&self, mut ino: u64, dir: u64) -> bool {
        for _ in 0..4096 {
            if ino == dir {
                return true;
            }
            match self.nodes.get(&ino).map(|n| &n.kind) {
                Some(Kind::Dir { parent, .. }) if *parent != ino => ino = *parent,
                _ => return false,
            }
        }
        false
    }

    /// Moves a directory child from one parent to another (link counts and `..`).
    fn reparent(&mut self, child: u64, from: u64, to: u64) {
        if from == to {
            return;
        }
        if let Some(Node {
            kind: Kind::Dir { parent, .. },
            ..
        }) = self.nodes.get_mut(&child)
        {
            *parent = to;
            if let Some(f) = self.nodes.get_mut(&from) {
                f.nlink = f.nlink.saturating_sub(1);
            }
            if let Some(t) = self.nodes.get_mut(&to) {
                t.nlink = t.nlink.saturating_add(1);
            }
        }
    }

    /// rename(2) / renameat2(2) with `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Res<()> {
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(libc::EINVAL);
        }
        check_name(newname)?;
        let src = *self.children(parent)?.get(name).ok_or(libc::ENOENT)?;
        let dst = self.children(newparent)?.get(newname).copied();
        if self.node(newparent)?.nlink == 0 {
            return Err(libc::ENOENT);
        }
        let src_dir = self.node(src)?.is_dir();
        if src_dir && self.is_within(newparent, src) {
            return Err(libc::EINVAL);
        }
        if exchange {
            let dst = dst.ok_or(libc::ENOENT)?;
            let dst_dir = self.node(dst)?.is_dir();
            if dst_dir && self.is_within(parent, dst) {
                return Err(libc::EINVAL);
            }
            self.children_mut(parent)?.insert(name.to_owned(), dst);
            self.children_mut(newparent)?
                .insert(newname.to_owned(), src);
            if src_dir {
                self.reparent(src, parent, newparent);
            }
            if dst_dir {
                self.reparent(dst, newparent, parent);
            }
            self.touch_dir(parent);
            self.touch_dir(newparent);
            return Ok(());
        }
        if let Some(dst) = dst {
            if noreplace {
                return Err(libc::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            let dst_dir = self.node(dst)?.is_dir();
            match (src_dir, dst_dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.children(dst)?.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.children_mut(parent)?.remove(name);
        self.children_mut(newparent)?
            .insert(newname.to_owned(), src);
        if let Some(dst) = dst {
            let d = self.node_mut(dst)?;
            if d.is_dir() {
                d.nlink = 0;
                let p = self.node_mut(newparent)?;
                p.nlink = p.nlink.saturating_sub(1);
            } else {
                d.nlink = d.nlink.saturating_sub(1);
                d.ctime = now();
            }
        }
        if src_dir {
            self.reparent(src, parent, newparent);
        }
        if let Ok(n) = self.node_mut(src) {
            n.ctime = now();
        }
        self.touch_dir(parent);
        self.touch_dir(newparent);
        if let Some(dst) = dst {
            self.maybe_free(dst);
        }
        Ok(())
    }

    /// Copies a lower file's first `keep` bytes up into memory.
    fn copy_up(&mut self, tree: &UnlockedTree, ino: u64, keep: u64) -> Res<()> {
        let (data, size) = match &self.node(ino)?.kind {
            Kind::File(Content::Lower { data, size }) => (*data, *size),
            Kind::File(_) => return Ok(()),
            _ => return Err(libc::EINVAL),
        };
        let keep = keep.min(size);
        self.ensure(keep)?;
        let len = usize::try_from(keep).map_err(|_| libc::EFBIG)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).map_err(|_| libc::ENOMEM)?;
        buf.resize(len, 0);
        let mut done = 0;
        while done < len {
            match tree.read_at(data, size, done as u64, &mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    log::warn!("copy-up of inode {ino} failed: {e}");
                    return Err(libc::EIO);
                }
            }
        }
        buf.truncate(done);
        self.node_mut(ino)?.kind = Kind::File(Content::Upper(buf));
        self.settle(ino);
        Ok(())
    }

    /// Sets a file's length (copying up what is kept of a lower file).
    pub(crate) fn truncate(&mut self, tree: &UnlockedTree, ino: u64, size: u64) -> Res<()> {
        match &self.node(ino)?.kind {
            Kind::Dir { .. } => return Err(libc::EISDIR),
            Kind::File(Content::Secret(_)) => return Err(libc::EPERM),
            Kind::File(_) => {}
            _ => return Err(libc::EINVAL),
        }
        self.copy_up(tree, ino, size)?;
        let len = usize::try_from(size).map_err(|_| libc::EFBIG)?;
        let cur = self.node(ino)?.attr(ino).size;
        self.ensure(size.saturating_sub(cur))?;
        let n = self.node_mut(ino)?;
        if let Kind::File(Content::Upper(v)) = &mut n.kind {
            if len > v.len() {
                v.try_reserve(len - v.len()).map_err(|_| libc::ENOMEM)?;
            }
            v.resize(len, 0);
            if len < v.capacity() / 2 {
                v.shrink_to_fit();
            }
        }
        let t = now();
        n.mtime = t;
        n.ctime = t;
        self.settle(ino);
        Ok(())
    }

    /// Writes `data` at `offset` (or at the end when `append`); `kill_suid`
    /// when the writer is not root.
    pub(crate) fn write(
        &mut self,
        tree: &UnlockedTree,
        ino: u64,
        offset: u64,
        data: &[u8],
        append: bool,
        kill_suid: bool,
    ) -> Res<usize> {
        match &self.node(ino)?.kind {
            Kind::Dir { .. } => return Err(libc::EISDIR),
            Kind::File(Content::Secret(_)) => return Err(libc::EPERM),
            Kind::File(_) => {}
            _ => return Err(libc::EINVAL),
        }
        self.copy_up(tree, ino, u64::MAX)?;
        let cur = self.node(ino)?.attr(ino).size;
        let offset = if append { cur } else { offset };
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(libc::EFBIG)?;
        self.ensure(end.saturating_sub(cur))?;
        let (start, end) = (
            usize::try_from(offset).map_err(|_| libc::EFBIG)?,
            usize::try_from(end).map_err(|_| libc::EFBIG)?,
        );
        let n = self.node_mut(ino)?;
        if let Kind::File(Content::Upper(v)) = &mut n.kind {
            if end > v.len() {
                v.try_reserve(end - v.len()).map_err(|_| libc::ENOMEM)?;
                v.resize(end, 0);
            }
            v[start..end].copy_from_slice(data);
        }
        // Like every local file system: a write by a non-root caller drops
        // setuid, and setgid where the group may execute.
        if kill_suid {
            n.mode &= !libc::S_ISUID;
            if n.mode & libc::S_IXGRP != 0 {
                n.mode &= !libc::S_ISGID;
            }
        }
        let t = now();
        n.mtime = t;
        n.ctime = t;
        self.settle(ino);
        Ok(data.len())
    }

    /// Decides how to serve a read of `size` bytes at `offset`.
    pub(crate) fn read_plan(&self, ino: u64, offset: u64, size: u32) -> Res<ReadPlan> {
        let bytes: &[u8] = match &self.node(ino)?.kind {
            Kind::File(Content::Lower { data, size }) => {
                return Ok(ReadPlan::Lower {
                    data: *data,
                    size: *size,
                })
            }
            Kind::File(Content::Upper(v)) => v,
            Kind::File(Content::Secret(v)) => v,
            Kind::Dir { .. } => return Err(libc::EISDIR),
            _ => return Err(libc::EINVAL),
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        Ok(ReadPlan::Bytes(bytes[start..end].to_vec()))
    }

    /// chmod, chown, utimens and truncate (already permitted by the kernel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr(
        &mut self,
        tree: &UnlockedTree,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Res<()> {
        if let Some(size) = size {
            self.truncate(tree, ino, size)?;
        }
        let n = self.node_mut(ino)?;
        if let Some(mode) = mode {
            n.mode = mode & 0o7777;
        }
        if let Some(uid) = uid {
            n.uid = uid;
        }
        if let Some(gid) = gid {
            n.gid = gid;
        }
        if let Some(t) = atime {
            n.atime = t;
        }
        if let Some(t) = mtime {
            n.mtime = t;
        }
        n.ctime = now();
        Ok(())
    }

    /// The target of symlink `ino`.
    pub(crate) fn readlink(&self, ino: u64) -> Res<&[u8]> {
        match &self.node(ino)?.kind {
            Kind::Symlink(t) => Ok(t),
            _ => Err(libc::EINVAL),
        }
    }

    /// The value of xattr `name`.
    pub(crate) fn getxattr(&self, ino: u64, name: &OsStr) -> Res<&[u8]> {
        self.node(ino)?
            .xattrs
            .get(name)
            .map(Vec::as_slice)
            .ok_or(libc::ENODATA)
    }

    /// Every xattr name, each NUL-terminated.
    pub(crate) fn listxattr(&self, ino: u64) -> Res<Vec<u8>> {
        let mut out = Vec::new();
        for k in self.node(ino)?.xattrs.keys() {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// setxattr(2) with `XATTR_CREATE` / `XATTR_REPLACE`.
    pub(crate) fn setxattr(&mut self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> Res<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(libc::ERANGE);
        }
        if value.len() > 65536 {
            return Err(libc::E2BIG);
        }
        let exists = self.node(ino)?.xattrs.contains_key(name);
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(libc::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(libc::ENODATA);
        }
        self.ensure((name.len() + value.len()) as u64)?;
        let n = self.node_mut(ino)?;
        n.xattrs.insert(name.to_owned(), value.to_vec());
        n.ctime = now();
        self.settle(ino);
        Ok(())
    }

    /// removexattr(2).
    pub(crate) fn removexattr(&mut self, ino: u64, name: &OsStr) -> Res<()> {
        let n = self.node_mut(ino)?;
        n.xattrs.remove(name).ok_or(libc::ENODATA)?;
        n.ctime = now();
        self.settle(ino);
        Ok(())
    }

    /// Puts a read-only in-memory file at absolute `path` (mode 0400, owned
    /// by `uid`/`gid`), making missing parent directories (root, 0755) and
    /// replacing a non-directory already there.
    pub(crate) fn add_file(
        &mut self,
        path: &str,
        content: Zeroizing<Vec<u8>>,
        uid: u32,
        gid: u32,
    ) -> Result<(), Error> {
        let bad = |reason: &str| Error::File {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let parts = components(path)
            .ok_or_else(|| bad("not a normalised absolute path (/a/b, no . or ..)"))?;
        let Some((file, dirs)) = parts.split_last() else {
            return Err(bad("it is the root directory"));
        };
        let mut dir = ROOT;
        for part in dirs {
            let name = OsStr::new(part);
            dir = match self.children(dir).map(|c| c.get(name).copied()) {
                Ok(Some(ino)) if self.node(ino).is_ok_and(Node::is_dir) => ino,
                Ok(Some(_)) => return Err(bad(&format!("{part} is not a directory"))),
                Ok(None) => {
                    // Parents of in-memory files are not the app's writes:
                    // they do not count against the upper limit.
                    let limit = std::mem::replace(&mut self.limit, u64::MAX);
                    let made = self.create(dir, name, NewKind::Dir, 0o755, 0, 0);
                    self.limit = limit;
                    let ino =
                        made.map_err(|e| bad(&format!("making directory {part}: errno {e}")))?;
                    if let Ok(n) = self.node_mut(ino) {
                        n.upper = false;
                        n.nlookup = 0;
                    }
                    self.settle(ino);
                    ino
                }
                Err(_) => return Err(bad("a parent is not a directory")),
            };
        }
        let name = OsStr::new(file);
        match self.children(dir).map(|c| c.get(name).copied()) {
            Ok(Some(ino)) if self.node(ino).is_ok_and(Node::is_dir) => {
                return Err(bad("a directory is there"))
            }
            Ok(Some(_)) => {
                self.unlink(dir, name)
                    .map_err(|e| bad(&format!("replacing the file there: errno {e}")))?;
            }
            _ => {}
        }
        let mut node = Node::new(Kind::File(Content::Secret(content)), 0o400, uid, gid, now());
        node.nlookup = 0;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.children_mut(dir)
            .map_err(|_| bad("a parent is not a directory"))?
            .insert(name.to_owned(), ino);
        Ok(())
    }

    /// Checks `mask` (`R_OK`/`W_OK`/`X_OK`) for a caller, as access(2) does.
    pub(crate) fn access(&self, ino: u64, mask: i32, uid: u32, gid: u32) -> Res<()> {
        let n = self.node(ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        let bits = if uid == 0 {
            // root passes read/write checks; execute needs some x bit (or a dir).
            if mask & libc::X_OK != 0 && !n.is_dir() && n.mode & 0o111 == 0 {
                return Err(libc::EACCES);
            }
            return Ok(());
        } else if n.uid == uid {
            (n.mode >> 6) & 7
        } else if n.gid == gid {
            (n.mode >> 3) & 7
        } else {
            n.mode & 7
        };
        if (mask as u32) & !bits & 7 != 0 {
            return Err(libc::EACCES);
        }
        Ok(())
    }
}
