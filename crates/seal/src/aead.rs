//! AES-256-GCM-SIV (RFC 8452) for chunks and the index, in aws-lc-rs (the
//! workspace's crypto provider). Stored form: `ciphertext ‖ tag`.
//!
//! The nonce is the item's position (chunk number; 0 for the index under
//! its own key), so it is not stored. GCM-SIV derives the keystream from
//! the key, the nonce and the plaintext's tag: encrypting the same
//! plaintext at the same position gives the same bytes (conversion is
//! deterministic), and should one image key seal different plaintexts at
//! one position (the same tree converted with other options), only their
//! equality shows, never their content or the authentication key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV};

use crate::error::{Error, Result};
use crate::format::TAG_LEN;

/// An AES-256-GCM-SIV key with its schedule computed once.
pub(crate) struct AeadKey(LessSafeKey);

/// The nonce of the item at `position`: `u64le(position) ‖ 0u32`.
fn nonce(position: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&position.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl AeadKey {
    /// The key for 32 key bytes.
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self> {
        UnboundKey::new(&AES_256_GCM_SIV, key)
            .map(|k| AeadKey(LessSafeKey::new(k)))
            .map_err(|_| Error::Crypto("AES-256-GCM-SIV key setup failed".into()))
    }

    /// Encrypts `buf` in place as the item at `position`, with `aad`, and
    /// appends the tag: `ciphertext ‖ tag`.
    pub(crate) fn seal(&self, position: u64, buf: &mut Vec<u8>, aad: &[u8]) -> Result<()> {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(position), Aad::from(aad), buf)
            .map_err(|_| Error::Crypto("AES-GCM-SIV encryption failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `ciphertext ‖ tag` of the item at `position` in place; `None`
    /// when it does not authenticate (wrong key, tampered bytes, another
    /// position or other additional data).
    pub(crate) fn open(&self, position: u64, mut stored: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
        if stored.len() < TAG_LEN {
            return None;
        }
        let plain_len = self
            .0
            .open_in_place(nonce(position), Aad::from(aad), &mut stored)
            .ok()?
            .len();
        stored.truncate(plain_len);
        Some(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_at_their_position_with_their_data() {
        let key = AeadKey::new(&[3; 32]).unwrap();
        let sealed = |key: &AeadKey| {
            let mut buf = b"some chunk".to_vec();
            key.seal(7, &mut buf, b"aad").unwrap();
            buf
        };
        let a = sealed(&key);
        assert_eq!(a.len(), 10 + TAG_LEN);
        let again = sealed(&key);
        assert_eq!(a, again, "deterministic");
        assert_eq!(key.open(7, a.clone(), b"aad").unwrap(), b"some chunk");
        assert_eq!(key.open(8, a.clone(), b"aad"), None, "another position");
        assert_eq!(key.open(7, a.clone(), b"aad2"), None, "other data");
        let other = AeadKey::new(&[4; 32]).unwrap();
        assert_eq!(other.open(7, a.clone(), b"aad"), None, "another key");
        for bit in [0, 8 * 9 + 3, 8 * (10 + TAG_LEN) - 1] {
            let mut t = a.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(key.open(7, t, b"aad"), None, "bit {bit} flipped");
        }
        assert_eq!(key.open(7, a[..TAG_LEN - 1].to_vec(), b"aad"), None);
    }
}
