//! Small crypto helpers: randomness, base64url, P-256 keys.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Fills `buf` with OS randomness.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Internal(format!("no randomness: {e}")))
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    fill_random(&mut v)?;
    Ok(v)
}

pub use cocoon_kbs_protocol::{b64url, new_p256_key, p256_jwk};

/// Standard base64 with padding.
pub fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// Decodes standard base64, or base64url as a fallback.
pub fn b64_decode_any(what: &str, s: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|e| Error::BadRequest(format!("{what}: not base64 ({e})")))
}

/// PKCS#8 PEM of a P-256 secret key.
pub fn p256_key_to_pem(k: &p256::SecretKey) -> Result<Zeroizing<String>> {
    k.to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Internal(format!("encode key: {e}")))
}

/// Reads a P-256 secret key from PKCS#8 PEM.
pub fn p256_key_from_pem(pem: &str) -> Result<p256::SecretKey> {
    p256::SecretKey::from_pkcs8_pem(pem)
        .map_err(|e| Error::Config(format!("not a P-256 PKCS#8 private key PEM ({e})")))
}

/// SubjectPublicKeyInfo PEM of a P-256 public key.
pub fn p256_pub_to_pem(k: &p256::PublicKey) -> Result<String> {
    k.to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::Internal(format!("encode public key: {e}")))
}

/// Reads a P-256 public key from SubjectPublicKeyInfo PEM.
pub fn p256_pub_from_pem(pem: &str) -> Result<p256::PublicKey> {
    p256::PublicKey::from_public_key_pem(pem)
        .map_err(|e| Error::Config(format!("not a P-256 public key PEM ({e})")))
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
