//! Where flattening puts file contents.
//!
//! Measuring needs only each file's digest ([`HashOnly`]); unpacking and
//! sealing need the bytes too ([`CasDir`], a content-addressed directory).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};

/// Receives the content of every regular file met while flattening.
pub trait ContentStore {
    /// Consumes `data` to its end and returns its digest and length.
    fn put(&mut self, data: &mut dyn Read) -> io::Result<(Digest, u64)>;
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
