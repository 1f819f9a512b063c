//! Applying an image's layers, in order, to one file tree.
//!
//! Follows the OCI image spec's changeset rules: `.wh.NAME` deletes NAME from
//! lower layers, `.wh..wh..opq` empties a directory of lower-layer content,
//! hardlinks may point into lower layers. Every layer must be the config's
//! diff_id (see [`flatten`] for how that is checked). Entries that would
//! escape the root are refused: absolute paths, `..`, and any path through a
//! symlink.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::Compression;
use crate::store::ContentStore;
use crate::transport::{ImageSource, ResolvedImage};
use crate::tree::{parent, Entry, EntryKind, Tree};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Flattens all layers of `image` read from `src` into a tree, passing every
/// regular file's content to `store`.
///
/// Each layer must match the config's diff_id, the digest of its
/// uncompressed tar. An uncompressed layer's blob digest, which the source
/// checks, must be the diff_id. A compressed layer is hashed once more,
/// uncompressed, only when nothing else fixes its bytes (docker-archive):
/// where the manifest names it by digest (OCI layout, registry), that digest
/// fixes the compressed bytes, hence the uncompressed ones, and a second
/// SHA-256 pass over every uncompressed byte (8% of `cocoon convert`'s CPU)
/// would add no assurance.
pub fn flatten(
    src: &mut dyn ImageSource,
    image: &ResolvedImage,
    store: &mut dyn ContentStore,
) -> Result<Tree> {
    let mut tree = Tree::new();
    let mut next_inode = 0u64;
    for (desc, diff_id) in image.parsed.layers().iter().zip(image.diff_ids()?) {
        let layer = Digest::try_from(desc.digest())?;
        let compression = Compression::of_layer(desc.media_type().as_ref(), &layer)?;
        if compression == Compression::None && layer != diff_id {
            return Err(diff_id_mismatch(layer, "its digest", layer, diff_id));
        }
        let hash_stream = compression != Compression::None && !src.manifest_pins_layers();
        let mut raw = src.blob(desc)?;
        let corrupt = |e: io::Error| corrupt_or_ours(layer, compression, e);
        // Decompression runs on its own thread, a few MiB ahead of tar
        // parsing and hashing: the two halves of the work overlap.
        let actual = std::thread::scope(|scope| -> Result<Option<Digest>> {
            let (tx, rx) = mpsc::sync_channel(PIPELINE_DEPTH);
            let (spent_tx, spent) = mpsc::channel();
            let raw = &mut raw;
            scope.spawn(move || decompress_into(compression, layer, raw, tx, spent));
            let mut uncompressed = LayerStream {
                inner: ChannelReader {
                    rx,
                    spent: spent_tx,
                    chunk: Vec::new(),
                    pos: 0,
                },
                hasher: hash_stream.then(Sha256::new),
            };
            let mut applier = LayerApplier {
                tree: &mut tree,
                layer,
                added: HashSet::new(),
                next_inode: &mut next_inode,
            };
            applier.apply(&mut uncompressed, store, compression)?;
            // Read what follows the end-of-archive marker (and any error the
            // compressed stream's own check reports), so both digests cover
            // the whole stream.
            io::copy(&mut uncompressed, &mut io::sink()).map_err(corrupt)?;
            Ok(uncompressed.hasher.map(|h| Digest(h.finalize().into())))
        })?;
        if let Some(actual) = actual.filter(|actual| *actual != diff_id) {
            return Err(diff_id_mismatch(
                layer,
                "its uncompressed content",
                actual,
                diff_id,
            ));
        }
    }
    Ok(tree)
}

fn diff_id_mismatch(layer: Digest, what: &str, actual: Digest, diff_id: Digest) -> Error {
    Error::BlobMismatch {
        blob: layer,
        reason: format!("{what} hashes to {actual}, but the config's diff_id is {diff_id}"),
    }
}

/// A layer's uncompressed stream, hashed when its diff_id is to be checked.
struct LayerStream {
    inner: ChannelReader,
    hasher: Option<Sha256>,
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Decompressed blocks in flight between the decompressing thread and the
/// tar reader.
const PIPELINE_DEPTH: usize = 4;
const BLOCK: usize = 1 << 20;

/// Decompresses `raw` into `tx` in full blocks (reusing the ones the reader
/// sends back on `spent`), then reads `raw` to its end so that its digest
/// check runs; any error goes down the channel.
fn decompress_into(
    compression: Compression,
    layer: Digest,
    raw: &mut (dyn Read + Send),
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
    spent: mpsc::Receiver<Vec<u8>>,
) {
    let result = (|| -> io::Result<()> {
        let mut decoded = compression
            .decoder(Box::new(&mut *raw), &layer)
            .map_err(Error::into_io)?;
        loop {
            // Decoders return a little at a time: fill the whole block, so
            // that blocks are few and each is zeroed once, not per read.
            let mut block = spent.try_recv().unwrap_or_default();
            block.resize(BLOCK, 0);
            let mut n = 0;
            while n < BLOCK {
                match decoded.read(&mut block[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            if n == 0 {
                break;
            }
            block.truncate(n);
            if tx.send(Ok(block)).is_err() {
                return Ok(()); // the reader gave up; its error wins
            }
        }
        drop(decoded);
        io::copy(raw, &mut io::sink()).map(|_| ())
    })();
    if let Err(e) = result {
        let _ = tx.send(Err(e));
    }
}

/// Reads the blocks a decompressing thread sends, and sends them back for
/// reuse once read.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    spent: mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(block) => {
                    let read = std::mem::replace(&mut self.chunk, block?);
                    // The decompressing thread may be done: then nobody reuses it.
                    let _ = self.spent.send(read);
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // sender done: end of stream
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An I/O error met while reading a layer: one of ours passed through the
/// decoder (a blob digest mismatch), or a corrupt stream.
fn corrupt_or_ours(layer: Digest, compression: Compression, e: io::Error) -> Error {
    match Error::io("", e) {
        Error::Io { source, .. } => {
            let format = if source.kind() == io::ErrorKind::UnexpectedEof {
                "tar"
            } else {
                compression.name()
            };
            let reason = if source.kind() == io::ErrorKind::UnexpectedEof {
                "the stream ends early (truncated layer)".to_string()
            } else {
                source.to_string()
            };
            Error::CorruptLayer {
                layer,
                format,
                reason,
            }
        }
        ours => ours,
    }
}

struct LayerApplier<'a> {
    tree: &'a mut Tree,
    layer: Digest,
    /// Paths this layer has written, which its own opaque markers keep.
    added: HashSet<String>,
    next_inode: &'a mut u64,
}

impl LayerApplier<'_> {
    fn unsafe_entry(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            layer: self.layer,
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    fn apply(
        &mut self,
        stream: &mut dyn Read,
        store: &mut dyn ContentStore,
        compression: Compression,
    ) -> Result<()> {
        let layer = self.layer;
        let corrupt = |e: io::Error| corrupt_or_ours(layer, compression, e);
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            self.apply_entry(&mut entry, store).map_err(|e| match e {
                Error::Io { source, .. } => corrupt(source),
                other => other,
            })?;
        }
        Ok(())
    }

    fn apply_entry(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        store: &mut dyn ContentStore,
    ) -> Result<()> {
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            return Ok(());
        }
        let path = self.normalize(&raw_path)?;
        let Some(dir) = parent(&path) else {
            // The root directory's own entry: take its metadata only.
            if kind.is_dir() {
                let meta = self.metadata(entry, EntryKind::Dir)?;
                self.tree.insert("/", meta);
                return Ok(());
            }
            return Err(self.unsafe_entry(&raw_path, "only a directory may stand at the root"));
        };
        let name = &path[dir.len() + usize::from(dir != "/")..];
        self.ensure_parents(&raw_path, dir)?;
        if name == OPAQUE_MARKER {
            let added = &self.added;
            self.tree.remove_children(dir, |p| added.contains(p));
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.unsafe_entry(&raw_path, "whiteout of an invalid name"));
            }
            let target = if dir == "/" {
                format!("/{hidden}")
            } else {
                format!("{dir}/{hidden}")
            };
            self.tree.remove(&target);
            return Ok(());
        }
        let node = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let declared = entry
                    .header()
                    .size()
                    .map_err(|e| Error::io("reading entry size", e))?;
                let (digest, size) = store
                    .put(entry)
                    .map_err(|e| Error::io(format!("reading {raw_path}"), e))?;
                if size != declared {
                    // The tar reader ends an entry early, without an error,
                    // when the stream runs out.
                    return Err(Error::CorruptLayer {
                        layer: self.layer,
                        format: "tar",
                        reason: format!(
                            "the stream ends early (truncated layer): {raw_path:?} has {size} of {declared} bytes"
                        ),
                    });
                }
                *self.next_inode += 1;
                EntryKind::File {
                    size,
                    digest,
                    inode: *self.next_inode,
                }
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| self.unsafe_entry(&raw_path, "symlink without a target"))?;
                EntryKind::Symlink { target }
            }
            tar::EntryType::Link => return self.hardlink(entry, &raw_path, &path),
            tar::EntryType::Char | tar::EntryType::Block => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if kind == tar::EntryType::Char {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => {
                return Err(
                    self.unsafe_entry(&raw_path, format!("unsupported tar entry type {other:?}"))
                );
            }
        };
        let meta = self.metadata(entry, node)?;
        self.tree.insert(&path, meta);
        self.added.insert(path);
        Ok(())
    }

    /// A hardlink shares the file (content and metadata) of its target, which
    /// this layer or a lower one wrote.
    fn hardlink(
        &mut self,
        entry: &tar::Entry<'_, &mut dyn Read>,
        raw_path: &str,
        path: &str,
    ) -> Result<()> {
        let raw_target = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| self.unsafe_entry(raw_path, "hardlink without a target"))?;
        let target = self.normalize(&raw_target)?;
        let Some(existing) = self.tree.get(&target).cloned() else {
            return Err(self.unsafe_entry(
                raw_path,
                format!("hardlink to {raw_target:?}, which does not exist"),
            ));
        };
        if existing.is_dir() {
            return Err(
                self.unsafe_entry(raw_path, format!("hardlink to directory {raw_target:?}"))
            );
        }
        if let Some(dir) = parent(&target) {
            self.ensure_parents(raw_path, dir)?;
        }
        self.tree.insert(path, existing);
        self.added.insert(path.to_string());
        Ok(())
    }

    /// Turns a tar path into `/a/b`, refusing absolute paths and `..`.
    fn normalize(&self, raw: &str) -> Result<String> {
        if raw.starts_with('/') {
            return Err(self.unsafe_entry(raw, "absolute path"));
        }
        let mut out = String::with_capacity(raw.len() + 1);
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(self.unsafe_entry(raw, "path contains '..'")),
                p => {
                    out.push('/');
                    out.push_str(p);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(out)
    }

    /// Makes sure every ancestor of an entry is a directory, creating missing
    /// ones; an ancestor that is a symlink or another non-directory is refused,
    /// since writing through it could leave the root.
    fn ensure_parents(&mut self, raw: &str, dir: &str) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            match self.tree.get(d) {
                Some(e) if e.is_dir() => break,
                Some(e) => {
                    let what = if matches!(e.kind, EntryKind::Symlink { .. }) {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    return Err(self.unsafe_entry(
                        raw,
                        format!("its parent {d} is {what}; refusing to write through it"),
                    ));
                }
                None => missing.push(d.to_string()),
            }
            cur = parent(d);
        }
        for d in missing.into_iter().rev() {
            self.tree.insert(&d, Entry::implicit_dir());
        }
        Ok(())
    }

    fn metadata(
        &self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
        kind: EntryKind,
    ) -> Result<Entry> {
        let h = entry.header();
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let bad = |what: &str| self.unsafe_entry(&raw_path, format!("bad {what} in header"));
        let mut meta = Entry {
            kind,
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: h.uid().map_err(|_| bad("uid"))?,
            gid: h.gid().map_err(|_| bad("gid"))?,
            mtime: h.mtime().map_err(|_| bad("mtime"))? as i64,
            xattrs: BTreeMap::new(),
        };
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| Error::io("reading PAX header", e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| Error::io("reading PAX header", e))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    meta.xattrs.insert(name.to_string(), value.to_vec());
                } else if key == "uid" {
                    meta.uid = number()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| bad("PAX uid"))?;
                } else if key == "gid" {
                    meta.gid = number()
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or_else(|| bad("PAX gid"))?;
                } else if key == "mtime" {
                    meta.mtime = number().ok_or_else(|| bad("PAX mtime"))?;
                }
            }
        }
        Ok(meta)
    }
}
