//! The client's nonce, carried in the TLS SNI.
//!
//! A client that wants a certificate made for its connection alone draws 32
//! random bytes and asks for the server name
//! `<hex of bytes 0..16>.<hex of bytes 16..32>.nonce.cocoon` (two 32-char
//! lowercase hex labels, each within DNS's 63-char limit; 78 chars in all).
//! The server mints a certificate whose claims bind that nonce. SNI is the
//! one field of a ClientHello that every TLS library lets a client set and
//! every server sees before choosing its certificate, so the convention
//! needs no TLS extension of its own and works through TLS 1.2 and 1.3.
//!
//! Why: evidence that binds only the TLS key can be replayed by anyone who
//! once obtained that key, and a certificate minted once can be served
//! again long after. With the nonce, a certificate proves that a TEE made it
//! for this very handshake. The cost is one evidence generation per
//! connection (on SEV-SNP a firmware call of a few milliseconds; cheap for
//! sim), so servers should rate-limit handshakes like any expensive request.
//!
//! [`EVIDENCE_SERVER_NAME`] asks for the server's current certificate
//! without a nonce (no per-connection cost; the client accepts that it may
//! be a replay within the certificate's lifetime).

/// The suffix of nonce server names.
pub const NONCE_SUFFIX: &str = ".nonce.cocoon";

/// The server name meaning "the evidence certificate, without a nonce".
pub const EVIDENCE_SERVER_NAME: &str = "evidence.cocoon";

/// The SNI name carrying `nonce`.
pub fn nonce_server_name(nonce: &[u8; 32]) -> String {
    format!(
        "{}.{}{NONCE_SUFFIX}",
        hex::encode(&nonce[..16]),
        hex::encode(&nonce[16..])
    )
}

/// The nonce in a server name made by [`nonce_server_name`]; `None` for any
/// other name (strict: two 32-char lowercase hex labels and the suffix).
pub fn nonce_from_server_name(name: &str) -> Option<[u8; 32]> {
    let labels = name.strip_suffix(NONCE_SUFFIX)?;
    let (a, b) = labels.split_once('.')?;
    let lower_hex =
        |s: &str| s.len() == 32 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex(a) || !lower_hex(b) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(a, &mut out[..16]).ok()?;
    hex::decode_to_slice(b, &mut out[16..]).ok()?;
    Some(out)
}

/// A fresh random nonce from the OS random source.
pub fn fresh_nonce() -> crate::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| crate::Error::Random {
        detail: e.to_string(),
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_fits_dns() {
        let mut n = [0x11u8; 32];
        n[16..].fill(0xee);
        n[0] = 0x0a;
        let name = nonce_server_name(&n);
        assert_eq!(
            name,
            format!("0a{}.{}.nonce.cocoon", "11".repeat(15), "ee".repeat(16))
        );
        assert_eq!(name.len(), 78);
        assert!(name.split('.').all(|l| !l.is_empty() && l.len() <= 63));
        assert_eq!(nonce_from_server_name(&name), Some(n));
        assert!(rustls::pki_types::ServerName::try_from(name).is_ok());
        assert!(rustls::pki_types::ServerName::try_from(EVIDENCE_SERVER_NAME).is_ok());
    }

    #[test]
    fn parsing_is_strict() {
        let good = nonce_server_name(&[0xab; 32]);
        assert!(nonce_from_server_name(&good).is_some());
        let bad = [
            good.to_uppercase(),
            good.replacen('a', "A", 1),
            good.replacen('a', "g", 1),
            format!("x{good}"),
            good.replacen('.', "", 1),
            good.replace(".nonce.cocoon", ".nonce.cocoon."),
            good.replace(".nonce.cocoon", ".other.cocoon"),
            format!("{}.{}.nonce.cocoon", "ab".repeat(16), "ab".repeat(15)),
            format!("{}.{}.nonce.cocoon", "ab".repeat(32), ""),
            format!(
                "{}.{}.{}.nonce.cocoon",
                "ab".repeat(8),
                "ab".repeat(8),
                "ab".repeat(16)
            ),
            EVIDENCE_SERVER_NAME.into(),
            "nonce.cocoon".into(),
            String::new(),
            "é".repeat(40),
        ];
        for b in bad {
            assert_eq!(nonce_from_server_name(&b), None, "{b}");
        }
    }
}
