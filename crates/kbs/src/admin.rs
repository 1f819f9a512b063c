//! Admin authentication: a bearer ES256 JWT signed by one of the admin keys
//! named in the config (`cocoon kbs keygen-admin` makes a key pair).
//!
//! The token must carry `exp` (in the future) and may live at most
//! [`MAX_ADMIN_TOKEN_SECS`]; the client makes a fresh one per call.

use std::path::Path;

use axum::http::HeaderMap;
use p256::ecdsa::VerifyingKey;
use zeroize::Zeroizing;

use crate::crypto::{new_p256_key, p256_key_to_pem, p256_pub_from_pem, p256_pub_to_pem};
use crate::{Error, Result};

/// Longest accepted admin token lifetime (`exp - iat`), in seconds.
pub const MAX_ADMIN_TOKEN_SECS: u64 = 3600;

/// The bearer token of `headers`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Loads admin public keys (PEM files).
pub fn load_keys(paths: &[std::path::PathBuf]) -> Result<Vec<VerifyingKey>> {
    paths
        .iter()
        .map(|p| {
            let pem = std::fs::read_to_string(p)
                .map_err(|e| Error::Config(format!("read admin key {}: {e}", p.display())))?;
            let pk = p256_pub_from_pem(&pem)
                .map_err(|e| Error::Config(format!("admin key {}: {e}", p.display())))?;
            Ok(VerifyingKey::from(&pk))
        })
        .collect()
}

/// Checks the admin bearer token of `headers` against `keys` at `now`.
pub fn authorize(headers: &HeaderMap, keys: &[VerifyingKey], now: u64) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::Unauthorized(
            "admin API disabled: no admin.public_keys in the KBS config".into(),
        ));
    }
    let token = bearer(headers).ok_or_else(|| {
        Error::Unauthorized("admin call needs Authorization: Bearer <admin JWT>".into())
    })?;
    let claims = crate::token::verify_es256(token, keys, now)
        .map_err(|e| Error::Unauthorized(format!("admin {e}")))?;
    let exp = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
    let iat = claims.get("iat").and_then(|v| v.as_u64()).unwrap_or(0);
    if iat == 0 || exp.saturating_sub(iat) > MAX_ADMIN_TOKEN_SECS {
        return Err(Error::Unauthorized(format!(
            "admin token: needs iat and a lifetime of at most {MAX_ADMIN_TOKEN_SECS} s"
        )));
    }
    Ok(())
}

/// Writes a new admin key pair: `out` (PKCS#8 PEM, mode 0600) and
/// `out.pub` (public key PEM, to list in the KBS config). Refuses to overwrite.
pub fn keygen(out: &Path) -> Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let k = new_p256_key()?;
    let pem: Zeroizing<String> = p256_key_to_pem(&k)?;
    let pub_path = std::path::PathBuf::from(format!("{}.pub", out.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::Config(format!("create {}: {e}", out.display())))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| Error::Config(format!("write {}: {e}", out.display())))?;
    std::fs::write(&pub_path, p256_pub_to_pem(&k.public_key())?)
        .map_err(|e| Error::Config(format!("write {}: {e}", pub_path.display())))?;
    Ok(pub_path)
}

/// Reads an admin private key (PKCS#8 PEM).
pub fn load_private(path: &Path) -> Result<p256::SecretKey> {
    let pem = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read admin key {}: {e}", path.display())))?,
    );
    crate::crypto::p256_key_from_pem(&pem)
        .map_err(|e| Error::Config(format!("admin key {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn admin_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.pem");
        let pubp = keygen(&p).unwrap();
        assert!(keygen(&p).is_err());
        let keys = load_keys(&[pubp]).unwrap();
        let sk = load_private(&p).unwrap();
        let mut h = HeaderMap::new();
        assert!(authorize(&h, &keys, 100).is_err());
        let t = crate::token::admin_token(&sk, 100, 300).unwrap();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        authorize(&h, &keys, 101).unwrap();
        assert!(authorize(&h, &keys, 401).is_err());
        assert!(authorize(&h, &[], 101).is_err());
        let other = crate::crypto::new_p256_key().unwrap();
        let t = crate::token::admin_token(&other, 100, 300).unwrap();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        assert!(authorize(&h, &keys, 101).is_err());
        let t = crate::token::admin_token(&sk, 100, 100_000).unwrap();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        assert!(authorize(&h, &keys, 101).is_err());
    }
}
