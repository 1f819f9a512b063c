//! AES-256-GCM with synthetic nonces for chunks and the index, in aws-lc-rs
//! (the workspace's crypto provider: VAES and carry-less multiplication).
//! Stored form: `ciphertext ‖ tag ‖ nonce`.
//!
//! The nonce is a keyed BLAKE3 hash of a label, the item's position and its
//! plaintext: the same plaintext at the same position gets the same nonce
//! and so the same bytes (conversion is deterministic), and two different
//! plaintexts share a nonce with probability 2^-96, so a GCM nonce is never
//! reused for different data even when one image key seals other bytes at
//! one position (another chunk size, another zstd). The nonce goes at the
//! end so that sealing only appends to the plaintext's buffer.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::{Error, Result};
use crate::format::{NONCE_LEN, TAG_LEN};

/// An AES-256-GCM key with its schedule computed once, and the key of the
/// nonces it seals under.
pub(crate) struct AeadKey {
    key: LessSafeKey,
    /// BLAKE3 keyed with the nonce key, the label already hashed.
    nonces: blake3::Hasher,
}

impl AeadKey {
    /// The key for 32 key bytes; nonces are keyed with `nonce_key` and
    /// domain-separated by `label`.
    pub(crate) fn new(key: &[u8; 32], nonce_key: &[u8; 32], label: &[u8]) -> Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Crypto("AES-256-GCM key setup failed".into()))?;
        let mut nonces = blake3::Hasher::new_keyed(nonce_key);
        nonces.update(label);
        Ok(AeadKey { key, nonces })
    }

    /// The synthetic nonce of `plain` at `position`.
    fn nonce(&self, position: u64, plain: &[u8]) -> [u8; NONCE_LEN] {
        let mut h = self.nonces.clone();
        h.update(&position.to_le_bytes());
        h.update(plain);
        let mut n = [0u8; NONCE_LEN];
        h.finalize_xof().fill(&mut n);
        n
    }

    /// Encrypts `buf` in place as the item at `position`, with `aad`, and
    /// appends the tag and the nonce: `ciphertext ‖ tag ‖ nonce`.
    pub(crate) fn seal(&self, position: u64, buf: &mut Vec<u8>, aad: &[u8]) -> Result<()> {
        let nonce = self.nonce(position, buf);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| Error::Crypto("AES-GCM encryption failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        buf.extend_from_slice(&nonce);
        Ok(())
    }

    /// Opens `ciphertext ‖ tag ‖ nonce` in place; `None` when it does not
    /// authenticate (wrong key, tampered bytes, other additional data).
    pub(crate) fn open(&self, mut stored: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
        let at = stored.len().checked_sub(NONCE_LEN + TAG_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(&stored[at + TAG_LEN..]).ok()?;
        stored.truncate(at + TAG_LEN);
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut stored)
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
    fn sealed_bytes_open_only_with_their_key_and_data_and_are_deterministic() {
        let key = AeadKey::new(&[3; 32], &[5; 32], b"label").unwrap();
        let sealed = |key: &AeadKey, position: u64, plain: &[u8]| {
            let mut buf = plain.to_vec();
            key.seal(position, &mut buf, b"aad").unwrap();
            buf
        };
        let a = sealed(&key, 7, b"some chunk");
        assert_eq!(a.len(), 10 + TAG_LEN + NONCE_LEN);
        assert_eq!(a, sealed(&key, 7, b"some chunk"), "deterministic");
        let nonce = |s: &[u8]| s[s.len() - NONCE_LEN..].to_vec();
        // Another position or plaintext, another nonce.
        assert_ne!(nonce(&a), nonce(&sealed(&key, 8, b"some chunk")));
        assert_ne!(nonce(&a), nonce(&sealed(&key, 7, b"some chunK")));
        let other_label = AeadKey::new(&[3; 32], &[5; 32], b"label2").unwrap();
        assert_ne!(nonce(&a), nonce(&sealed(&other_label, 7, b"some chunk")));
        assert_eq!(key.open(a.clone(), b"aad").unwrap(), b"some chunk");
        assert_eq!(key.open(a.clone(), b"aad2"), None, "other data");
        let other = AeadKey::new(&[4; 32], &[5; 32], b"label").unwrap();
        assert_eq!(other.open(a.clone(), b"aad"), None, "another key");
        for bit in 0..a.len() * 8 {
            let mut t = a.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(key.open(t, b"aad"), None, "bit {bit} flipped");
        }
        assert_eq!(key.open(a[1..].to_vec(), b"aad"), None);
        assert_eq!(
            key.open(a[..TAG_LEN + NONCE_LEN - 1].to_vec(), b"aad"),
            None
        );
    }
}
