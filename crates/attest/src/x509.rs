//! Small X.509 helpers over `x509-cert`: parsing, validity, signatures.

use x509_cert::der::{self, Decode, Encode};
use x509_cert::Certificate;

use crate::{Error, Result, Tee, UnixTime};

/// OID of RSASSA-PSS.
const RSASSA_PSS: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// OID of ecdsa-with-SHA384.
const ECDSA_SHA384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Parses one DER certificate.
pub(crate) fn parse_der(tee: Tee, what: &str, der: &[u8]) -> Result<Certificate> {
    Certificate::from_der(der).map_err(|e| Error::BadCollateral {
        tee,
        what: what.to_string(),
        detail: format!("not a DER X.509 certificate ({e})"),
    })
}

/// Parses certificates from PEM text (any number) or a single DER blob.
pub(crate) fn parse_any(tee: Tee, what: &str, bytes: &[u8]) -> Result<Vec<Certificate>> {
    if bytes.starts_with(b"-----BEGIN") || bytes.windows(10).any(|w| w == b"-----BEGIN") {
        let start = bytes
            .windows(10)
            .position(|w| w == b"-----BEGIN")
            .unwrap_or(0);
        Certificate::load_pem_chain(&bytes[start..]).map_err(|e| Error::BadCollateral {
            tee,
            what: what.to_string(),
            detail: format!("bad PEM certificate ({e})"),
        })
    } else {
        Ok(vec![parse_der(tee, what, bytes)?])
    }
}

/// The subject as an RFC 4514 string.
pub(crate) fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}

/// Common name of the subject, if any.
pub(crate) fn common_name(cert: &Certificate) -> Option<String> {
    let s = subject(cert);
    s.split(',')
        .find_map(|p| p.trim().strip_prefix("CN=").map(str::to_string))
}

/// Fails unless `now` lies within the certificate's validity.
pub(crate) fn check_validity(tee: Tee, cert: &Certificate, now: UnixTime) -> Result<()> {
    let v = cert.tbs_certificate().validity();
    let nb = UnixTime(v.not_before.to_unix_duration().as_secs());
    let na = UnixTime(v.not_after.to_unix_duration().as_secs());
    if now < nb || now > na {
        return Err(Error::Expired {
            tee,
            what: format!("certificate {}", subject(cert)),
            now,
            not_before: nb,
            not_after: na,
        });
    }
    Ok(())
}

/// The DER of the to-be-signed part.
fn tbs_der(tee: Tee, cert: &Certificate) -> Result<Vec<u8>> {
    cert.tbs_certificate().to_der().map_err(|e| Error::Chain {
        tee,
        detail: format!("cannot re-encode {} ({e})", subject(cert)),
    })
}

/// Verifies that `issuer` signed `cert` (RSASSA-PSS/SHA-384 or ECDSA P-384/SHA-384),
/// that the names chain, and that both are valid at `now`.
pub(crate) fn verify_issued_by(
    tee: Tee,
    cert: &Certificate,
    issuer: &Certificate,
    now: UnixTime,
) -> Result<()> {
    check_validity(tee, cert, now)?;
    check_validity(tee, issuer, now)?;
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(Error::Chain {
            tee,
            detail: format!(
                "{} is issued by {}, not by {}",
                subject(cert),
                cert.tbs_certificate().issuer(),
                subject(issuer)
            ),
        });
    }
    let tbs = tbs_der(tee, cert)?;
    let sig = cert.signature().raw_bytes();
    let spki = issuer.tbs_certificate().subject_public_key_info();
    let bad = || {
        Error::Chain {
        tee,
        detail: format!(
            "the signature on {} by {} is invalid; the certificate was altered or not issued by that authority",
            subject(cert),
            subject(issuer)
        ),
    }
    };
    let alg = cert.signature_algorithm().oid;
    if alg == RSASSA_PSS {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier as _;
        let spki_der = spki.to_der().map_err(|_| bad())?;
        let key = rsa::PublicKey::from_public_key_der(&spki_der).map_err(|_| bad())?;
        let vk = rsa::pss::VerifyingKey::<sha2::Sha384>::new(key);
        let sig = rsa::pss::Signature::try_from(sig).map_err(|_| bad())?;
        vk.verify(&tbs, &sig).map_err(|_| bad())
    } else if alg == ECDSA_SHA384 {
        use p384::ecdsa::signature::Verifier as _;
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|_| bad())?;
        let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
        vk.verify(&tbs, &sig).map_err(|_| bad())
    } else {
        Err(Error::Chain {
            tee,
            detail: format!(
                "{} uses signature algorithm {alg}, expected RSASSA-PSS or ECDSA-SHA384",
                subject(cert)
            ),
        })
    }
}

/// The raw value (inside the OCTET STRING) of extension `oid`, if present.
pub(crate) fn extension<'a>(
    cert: &'a Certificate,
    oid: &der::asn1::ObjectIdentifier,
) -> Option<&'a [u8]> {
    cert.tbs_certificate()
        .extensions()?
        .iter()
        .find(|e| e.extn_id == *oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The subject public key of a certificate as stored (a SEC1 point for EC keys).
pub(crate) fn public_key_bytes(cert: &Certificate) -> &[u8] {
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
}

/// Whether `sig` (r ‖ s, big-endian, 48 bytes each) is an ECDSA P-384/SHA-384
/// signature of `msg` by the SEC1 point `point`. In aws-lc-rs: this is the
/// per-report check of SNP and sim evidence, and its assembly P-384 is 4-5x
/// faster than the `p384` crate's.
pub(crate) fn verify_p384_sha384(point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
        .verify(msg, sig)
        .is_ok()
}

/// The P-384 public key of a certificate, if it has one.
pub(crate) fn p384_key(cert: &Certificate) -> Option<p384::ecdsa::VerifyingKey> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).ok()
}
