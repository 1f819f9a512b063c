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

/// base64url without padding.
pub fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes base64url (padding tolerated).
pub fn b64url_decode(what: &str, s: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| Error::BadRequest(format!("{what}: not base64url ({e})")))
}

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

/// A fresh random P-256 secret key.
pub fn new_p256_key() -> Result<p256::SecretKey> {
    for _ in 0..16 {
        let b = Zeroizing::new(random_bytes(32)?);
        if let Ok(k) = p256::SecretKey::from_slice(&b) {
            return Ok(k);
        }
    }
    Err(Error::Internal("could not draw a P-256 key".into()))
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

/// The JWK of a P-256 public key (`kty`, `crv`, `x`, `y`).
pub fn p256_jwk(k: &p256::PublicKey) -> serde_json::Value {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let pt = k.to_sec1_point(false);
    let b = pt.as_bytes();
    let (x, y) = if b.len() == 65 {
        (b64url(&b[1..33]), b64url(&b[33..65]))
    } else {
        (String::new(), String::new())
    };
    serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
