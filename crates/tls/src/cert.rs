//! Making attested certificates (the server side, inside the TEE).
//!
//! An attested certificate is self-signed (ECDSA P-256 / SHA-256) by the
//! key it certifies: subject `CN=cocoon attested workload`; SAN URI
//! `urn:cocoon:workload:<workload digest>`; basicConstraints CA=false;
//! keyUsage digitalSignature; extKeyUsage serverAuth; and the evidence
//! extension ([`crate::evidence`]). Trust comes from the evidence, not from
//! the signature: the signature only proves that the certificate was not
//! altered and that its key holder made it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_attest::workload::InitData;
use cocoon_attest::Attester;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};

use crate::evidence::{report_data, tag_for, EvidenceClaims, TaggedEvidence, EVIDENCE_OID};
use crate::{Error, Result};

/// Common name of attested certificates.
pub const SUBJECT_CN: &str = "cocoon attested workload";

const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");

/// The SAN URI naming a workload: `urn:cocoon:workload:<digest>`, the same
/// URI the KBS CA puts in the certificates it issues.
pub fn workload_uri(workload_digest: &str) -> String {
    format!("urn:cocoon:workload:{workload_digest}")
}

/// A fresh random P-256 key from the OS random source.
pub fn generate_key() -> Result<p256::SecretKey> {
    for _ in 0..16 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| Error::Random {
            detail: e.to_string(),
        })?;
        let k = p256::SecretKey::from_slice(&b);
        b.fill(0);
        if let Ok(k) = k {
            return Ok(k);
        }
    }
    Err(Error::build("could not draw a P-256 key"))
}

/// The DER SubjectPublicKeyInfo of `key`'s public key.
pub fn spki_der(key: &p256::SecretKey) -> Result<Vec<u8>> {
    key.public_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(Error::build)
}

/// The PKCS#8 DER of `key`, as rustls loads private keys.
pub fn private_key_der(key: &p256::SecretKey) -> Result<PrivateKeyDer<'static>> {
    let doc = key.to_pkcs8_der().map_err(Error::build)?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        doc.as_bytes().to_vec(),
    )))
}

/// A rustls [`CertifiedKey`] (certificate + signing key, ring provider)
/// ready for a server's certificate resolver.
pub fn certified_key(key: &p256::SecretKey, cert_der: Vec<u8>) -> Result<Arc<CertifiedKey>> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(private_key_der(key)?)
        .map_err(Error::build)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert_der)],
        signer,
    )))
}

/// Makes an attested certificate (DER) for `key`: claims binding the key,
/// `init` and `nonce` (at most 64 bytes); evidence from `attester` over
/// SHA-256 of the claims; valid from `not_before` for `lifetime`.
pub fn attested_certificate(
    key: &p256::SecretKey,
    attester: &dyn Attester,
    init: &InitData,
    nonce: Option<&[u8]>,
    not_before: SystemTime,
    lifetime: Duration,
) -> Result<Vec<u8>> {
    let claims = EvidenceClaims::new(&spki_der(key)?, init, nonce)?.to_cbor();
    let evidence = attester
        .evidence(&report_data(&claims))
        .map_err(Error::Attester)?;
    let ext = TaggedEvidence {
        tag: tag_for(attester.tee()),
        evidence,
        claims,
    };
    certificate_with_evidence(
        key,
        &init.workload_digest,
        &ext.to_cbor(),
        not_before,
        lifetime,
    )
}

/// The certificate around an already-encoded evidence extension value: the
/// building block of [`attested_certificate`], for callers that make the
/// evidence themselves (and for tests that make wrong ones).
pub fn certificate_with_evidence(
    key: &p256::SecretKey,
    workload_digest: &str,
    extension_value: &[u8],
    not_before: SystemTime,
    lifetime: Duration,
) -> Result<Vec<u8>> {
    let uri = Ia5String::new(&workload_uri(workload_digest))
        .map_err(|_| Error::build(format!("{workload_digest:?} cannot be a URI")))?;
    let profile = SelfSigned {
        subject: Name::from_str(&format!("CN={SUBJECT_CN}")).map_err(Error::build)?,
        uri,
        evidence: OctetString::new(extension_value.to_vec()).map_err(Error::build)?,
    };
    let not_after = not_before
        .checked_add(lifetime)
        .ok_or_else(|| Error::build("the lifetime overflows the clock"))?;
    let time =
        |t: SystemTime| Time::try_from(t).map_err(|e| Error::build(format!("validity time: {e}")));
    let validity = Validity::new(time(not_before)?, time(not_after)?);
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der(key)?).map_err(Error::build)?;
    let builder =
        CertificateBuilder::new(profile, serial()?, validity, spki).map_err(Error::build)?;
    let cert = builder
        .build::<_, DerSignature>(&SigningKey::from(key))
        .map_err(Error::build)?;
    cert.to_der().map_err(Error::build)
}

fn serial() -> Result<SerialNumber> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| Error::Random {
        detail: e.to_string(),
    })?;
    // Positive, and no leading zero octet to strip.
    s[0] = (s[0] & 0x7f) | 0x01;
    SerialNumber::new(&s).map_err(Error::build)
}

struct SelfSigned {
    subject: Name,
    uri: Ia5String,
    evidence: OctetString,
}

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    // Each extension is built seeing the ones before it.
    #[allow(clippy::vec_init_then_push)]
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext: Vec<Extension> = Vec::new();
        ext.push(
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(tbs.subject(), &ext)?);
        ext.push(ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH]).to_extension(tbs.subject(), &ext)?);
        ext.push(
            SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
                self.uri.clone(),
            )])
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(Extension {
            extn_id: EVIDENCE_OID,
            critical: false,
            extn_value: self.evidence.clone(),
        });
        Ok(ext)
    }
}
