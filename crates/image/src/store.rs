//! Where flattening puts file contents.
//!
//! Measuring needs only each file's digest ([`HashOnly`]); unpacking needs
//! the bytes too: [`PackStore`] appends them to one scratch file (fast for
//! thousands of small files), [`CasDir`] keeps one file per content (for
//! callers that need a path, such as a sealed blob). Sealing has its own
//! store, which compresses chunks as they arrive (`cocoon_seal::pack`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};

/// Receives the content of every regular file met while flattening.
pub trait ContentStore {
    /// Consumes `data` to its end and returns its digest and length.
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)>;
}

/// Gives back contents a [`ContentStore`] kept.
pub trait ContentSource {
    /// Opens the content with this digest.
    fn open_content(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>>;
}

/// Keeps nothing but the digest: for measuring.
#[derive(Debug, Default)]
pub struct HashOnly;

impl ContentStore for HashOnly {
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut hashing = HashingReader::new(data);
        io::copy(&mut hashing, &mut io::sink())?;
        Ok(hashing.finish())
    }
}

/// A directory of file contents named by their SHA-256; equal contents are
/// stored once.
#[derive(Debug)]
pub struct CasDir {
    root: PathBuf,
}

impl CasDir {
    /// Uses (and creates) `root`.
    pub fn new(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        Ok(CasDir {
            root: root.to_path_buf(),
        })
    }

    /// The file holding the content with this digest.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.hex())
    }

    /// Opens the content with this digest.
    pub fn open(&self, digest: &Digest) -> io::Result<File> {
        File::open(self.path(digest))
    }
}

impl ContentSource for CasDir {
    fn open_content(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(io::BufReader::with_capacity(
            1 << 20,
            self.open(digest)?,
        )))
    }
}

impl ContentStore for CasDir {
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)?;
        let mut hashing = HashingReader::new(data);
        io::copy(&mut hashing, tmp.as_file_mut())?;
        let (digest, size) = hashing.finish();
        let target = self.path(&digest);
        if !target.exists() {
            tmp.persist(&target).map_err(|e| e.error)?;
        }
        Ok((digest, size))
    }
}

/// Contents appended to one anonymous scratch file (deleted when dropped),
/// each distinct content once.
pub struct PackStore {
    file: File,
    end: u64,
    index: HashMap<Digest, (u64, u64)>,
    /// Copy buffer, reused: zeroing a fresh one per file cost more than
    /// copying the (mostly small) files.
    buf: Vec<u8>,
}

impl std::fmt::Debug for PackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackStore")
            .field("contents", &self.index.len())
            .field("bytes", &self.end)
            .finish_non_exhaustive()
    }
}

impl PackStore {
    /// A new, empty store in an unnamed temporary file inside `dir`.
    pub fn new(dir: &Path) -> io::Result<Self> {
        Ok(PackStore {
            file: tempfile::tempfile_in(dir)?,
            end: 0,
            index: HashMap::new(),
            buf: vec![0u8; 1 << 20],
        })
    }
}

impl ContentStore for PackStore {
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)> {
        let start = self.end;
        let mut hashing = HashingReader::new(data);
        let mut pos = start;
        loop {
            let n = hashing.read(&mut self.buf)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&self.buf[..n], pos)?;
            pos += n as u64;
        }
        let (digest, size) = hashing.finish();
        match self.index.entry(digest) {
            // Already stored: forget the copy just written.
            std::collections::hash_map::Entry::Occupied(_) => self.file.set_len(start)?,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((start, size));
                self.end = pos;
            }
        }
        Ok((digest, size))
    }
}

impl ContentSource for PackStore {
    fn open_content(&self, digest: &Digest) -> io::Result<Box<dyn Read + '_>> {
        let &(offset, len) = self.index.get(digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no content {digest} in the store"),
            )
        })?;
        Ok(Box::new(PackReader {
            file: &self.file,
            pos: offset,
            end: offset + len,
        }))
    }
}

/// Reads one content of a [`PackStore`].
struct PackReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_store_keeps_each_content_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = PackStore::new(dir.path()).unwrap();
        let big = vec![7u8; 3 << 20];
        let (a, _) = store.put(&mut &b"hello"[..]).unwrap();
        let (b, n) = store.put(&mut &big[..]).unwrap();
        let (a2, _) = store.put(&mut &b"hello"[..]).unwrap();
        assert_eq!((a, n), (a2, 3 << 20));
        assert_eq!(store.end, 5 + (3 << 20));
        let mut out = Vec::new();
        store
            .open_content(&b)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, big);
        out.clear();
        store
            .open_content(&a)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        assert!(store.open_content(&Digest::of(b"x")).is_err());
    }
}
