//! AES-256-GCM for chunks and the index, in aws-lc-rs (the workspace's
//! crypto provider; it uses AES-NI/VAES and carry-less multiplication).
//! Stored form: `nonce ‖ ciphertext ‖ tag`.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::{Error, Result};
use crate::format::NONCE_LEN;

/// An AES-256-GCM key with its schedule computed once.
pub(crate) struct AeadKey(LessSafeKey);

impl AeadKey {
    /// The key for 32 key bytes.
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| AeadKey(LessSafeKey::new(k)))
            .map_err(|_| Error::Crypto("AES-256-GCM key setup failed".into()))
    }

    /// Encrypts `plain` under `nonce` with `aad`: `nonce ‖ ciphertext ‖ tag`.
    pub(crate) fn seal(&self, nonce: [u8; NONCE_LEN], plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| Error::Crypto("AES-GCM encryption failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` in place; `None` when it does not
    /// authenticate (wrong key, tampered bytes, other additional data).
    pub(crate) fn open(&self, mut stored: Vec<u8>, aad: &[u8]) -> Option<Vec<u8>> {
        if stored.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&stored[..NONCE_LEN]).ok()?;
        let plain_len = self
            .0
            .open_within(nonce, Aad::from(aad), &mut stored, NONCE_LEN..)
            .ok()?
            .len();
        stored.truncate(plain_len);
        Some(stored)
    }
}
