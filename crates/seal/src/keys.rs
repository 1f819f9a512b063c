//! The image key and the keys derived from it.
//!
//! One random 32-byte image key per image (or reused with `--image-key`). The
//! working keys are derived with HKDF-SHA256, salted with the tree digest, so
//! two images never share a working key even when they share an image key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use cocoon_image::Digest;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// A 32-byte AES-256 image key. Zeroized on drop; its `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ImageKey([u8; 32]);

impl std::fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageKey(..)")
    }
}

impl ImageKey {
    /// A fresh random key from the operating system.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| Error::Crypto(format!("no randomness from the OS: {e}")))?;
        Ok(ImageKey(k))
    }

    /// A key from its bytes: 32 raw bytes, or 64 hex digits (surrounding
    /// white space ignored), as `--image-key-out` writes and a KBS returns.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let mut k = [0u8; 32];
        if data.len() == 32 {
            k.copy_from_slice(data);
            return Ok(ImageKey(k));
        }
        let text = std::str::from_utf8(data).map(str::trim).unwrap_or("");
        hex::decode_to_slice(text, &mut k)
            .map_err(|_| Error::BadKey("an image key is 32 raw bytes or 64 hex digits".into()))?;
        Ok(ImageKey(k))
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self> {
        let mut data = fs::read(path)
            .map_err(|e| Error::io(format!("reading image key {}", path.display()), e))?;
        let key = Self::from_bytes(&data).map_err(|e| match e {
            Error::BadKey(why) => Error::BadKey(format!("{}: {why}", path.display())),
            other => other,
        });
        data.zeroize();
        key
    }

    /// Writes the key as hex to a new file readable only by its owner.
    pub fn write(&self, path: &Path) -> Result<()> {
        let ctx = || format!("writing image key {}", path.display());
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(ctx(), e))?;
        let mut text = hex::encode(self.0);
        text.push('\n');
        let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
        text.zeroize();
        written.map_err(|e| Error::io(ctx(), e))
    }

    /// The working keys for the image whose tree digest is `tree`.
    pub fn derive(&self, tree: &Digest) -> DerivedKeys {
        let hk = Hkdf::<Sha256>::new(Some(&tree.0), &self.0);
        let mut keys = DerivedKeys {
            chunk: [0; 32],
            index: [0; 32],
            nonce: [0; 32],
        };
        // HKDF-SHA256 can expand 32 bytes for any info: cannot fail.
        for (info, out) in [
            (&b"cocoon-seal/2 chunk key"[..], &mut keys.chunk),
            (b"cocoon-seal/2 index key", &mut keys.index),
            (b"cocoon-seal/2 nonce key", &mut keys.nonce),
        ] {
            hk.expand(info, out)
                .expect("32 bytes is a valid HKDF-SHA256 length");
        }
        keys
    }
}

/// Keys derived from an image key for one tree.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DerivedKeys {
    /// AES-256-GCM key of the content chunks.
    pub chunk: [u8; 32],
    /// AES-256-GCM key of the index.
    pub index: [u8; 32],
    /// BLAKE3 key of the synthetic nonces (chunks and index).
    pub nonce: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let k = ImageKey::generate().unwrap();
        let p = dir.path().join("k");
        k.write(&p).unwrap();
        assert_eq!(ImageKey::read(&p).unwrap().0, k.0);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(ImageKey::from_bytes(&k.0).unwrap().0, k.0);
        fs::write(&p, "nope").unwrap();
        let e = ImageKey::read(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("an image key is 32 raw bytes or 64 hex digits"),
            "{e}"
        );
        assert_eq!(format!("{k:?}"), "ImageKey(..)");
    }

    #[test]
    fn derived_keys_depend_on_the_tree() {
        let k = ImageKey([7; 32]);
        let a = k.derive(&Digest([1; 32]));
        let b = k.derive(&Digest([2; 32]));
        assert_ne!(a.chunk, b.chunk);
        assert_ne!(a.chunk, a.index);
        assert_ne!(a.nonce, a.chunk);
    }
}
