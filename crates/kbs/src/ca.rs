//! The KBS certificate authority: a self-signed P-256 root kept in the
//! store, issuing short-lived leaf certificates for attested workloads'
//! keys (the `tee-pubkey` bound in their evidence).
//!
//! A leaf: subject `CN=cocoon workload`; subjectAltName = the requested DNS
//! names plus the URI `urn:cocoon:workload:<workload digest>` when init data
//! was presented; basicConstraints CA=false; keyUsage digitalSignature;
//! extKeyUsage serverAuth + clientAuth; authorityKeyIdentifier; validity from
//! one minute ago to `cert_ttl_secs` from now; ECDSA-SHA256 by the CA key.

use std::str::FromStr;
use std::time::Duration;

use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use x509_cert::builder::profile::cabf::Root;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::asn1::{GeneralizedTime, Ia5String, ObjectIdentifier};
use x509_cert::der::{Decode, DecodePem, EncodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::protocol::jwe::RecipientKey;
use crate::{Error, Result};

const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

fn ie(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("certificate: {e}"))
}

fn validity(now: u64, ttl: u64) -> Result<Validity> {
    let t = |s: u64| {
        GeneralizedTime::from_unix_duration(Duration::from_secs(s))
            .map(Time::GeneralTime)
            .map_err(ie)
    };
    Ok(Validity::new(t(now.saturating_sub(60))?, t(now + ttl)?))
}

fn serial() -> Result<SerialNumber> {
    let mut s = crate::crypto::random_bytes(16)?;
    s[0] &= 0x7f;
    s[0] |= 0x01;
    SerialNumber::new(&s).map_err(ie)
}

/// The CA: its key and certificate.
pub struct Ca {
    key: SigningKey,
    cert: Certificate,
    cert_pem: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Makes a self-signed CA certificate named `name` for `key`, valid 10 years.
pub fn make_ca_cert(key: &p256::SecretKey, name: &str, now: u64) -> Result<String> {
    let subject = Name::from_str(&format!("CN={name},O=cocoon,C=XX")).map_err(ie)?;
    let profile = Root::new(false, subject).map_err(ie)?;
    let spki_der = key.public_key().to_public_key_der().map_err(ie)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(ie)?;
    let b = CertificateBuilder::new(profile, serial()?, validity(now, 10 * 365 * 86_400)?, spki)
        .map_err(ie)?;
    let cert = b
        .build::<_, DerSignature>(&SigningKey::from(key))
        .map_err(ie)?;
    cert.to_pem(x509_cert::der::pem::LineEnding::LF).map_err(ie)
}

struct Leaf {
    issuer: Name,
    subject: Name,
    names: Vec<GeneralName>,
}

impl BuilderProfile for Leaf {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    // Each extension is built seeing the ones before it.
    #[allow(clippy::vec_init_then_push)]
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut ext: Vec<Extension> = Vec::new();
        ext.push(AuthorityKeyIdentifier::try_from(issuer_spk)?.to_extension(tbs.subject(), &ext)?);
        ext.push(
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            }
            .to_extension(tbs.subject(), &ext)?,
        );
        ext.push(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(tbs.subject(), &ext)?);
        ext.push(
            ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH, ID_KP_CLIENT_AUTH])
                .to_extension(tbs.subject(), &ext)?,
        );
        if !self.names.is_empty() {
            ext.push(SubjectAltName(self.names.clone()).to_extension(tbs.subject(), &ext)?);
        }
        Ok(ext)
    }
}

impl Ca {
    /// A CA from its key and certificate PEM; leaves live `ttl_secs`.
    pub fn new(key: &p256::SecretKey, cert_pem: &str, ttl_secs: u64) -> Result<Self> {
        let cert = Certificate::from_pem(cert_pem.as_bytes()).map_err(ie)?;
        Ok(Ca {
            key: SigningKey::from(key),
            cert,
            cert_pem: cert_pem.to_string(),
            ttl_secs,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `key`, with `dns_names` and the workload digest.
    pub fn issue(
        &self,
        key: &RecipientKey,
        dns_names: &[String],
        workload_digest: Option<&str>,
        now: u64,
    ) -> Result<String> {
        let spki_der = match key {
            RecipientKey::P256(k) => k.to_public_key_der().map_err(ie)?,
            RecipientKey::Rsa(k) => k.to_public_key_der().map_err(ie)?,
        };
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(ie)?;
        let mut names = Vec::new();
        if dns_names.len() > 16 {
            return Err(Error::BadRequest("at most 16 DNS names".into()));
        }
        for n in dns_names {
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'*'));
            if !ok {
                return Err(Error::BadRequest(format!("{n:?} is not a DNS name")));
            }
            names.push(GeneralName::DnsName(Ia5String::new(n).map_err(|_| {
                Error::BadRequest(format!("{n:?} is not a DNS name"))
            })?));
        }
        if let Some(d) = workload_digest {
            names.push(GeneralName::UniformResourceIdentifier(
                Ia5String::new(&format!("urn:cocoon:workload:{d}")).map_err(ie)?,
            ));
        }
        let profile = Leaf {
            issuer: self.cert.tbs_certificate().subject().clone(),
            subject: Name::from_str("CN=cocoon workload").map_err(ie)?,
            names,
        };
        let b = CertificateBuilder::new(profile, serial()?, validity(now, self.ttl_secs)?, spki)
            .map_err(ie)?;
        let cert = b.build::<_, DerSignature>(&self.key).map_err(ie)?;
        cert.to_pem(x509_cert::der::pem::LineEnding::LF).map_err(ie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use x509_cert::der::Encode;

    #[test]
    fn issues_a_leaf_signed_by_the_ca() {
        let k = crate::crypto::new_p256_key().unwrap();
        let pem = make_ca_cert(&k, "test CA", 1_700_000_000).unwrap();
        let ca = Ca::new(&k, &pem, 3600).unwrap();
        let leaf_key = crate::crypto::new_p256_key().unwrap();
        let leaf = ca
            .issue(
                &RecipientKey::P256(leaf_key.public_key()),
                &["app.example".into()],
                Some("sha256:ab"),
                1_700_000_000,
            )
            .unwrap();
        let cert = Certificate::from_pem(leaf.as_bytes()).unwrap();
        let tbs = cert.tbs_certificate().to_der().unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(cert.signature().raw_bytes()).unwrap();
        let vk = p256::ecdsa::VerifyingKey::from(&k.public_key());
        vk.verify(&tbs, &sig).unwrap();
        assert!(ca
            .issue(
                &RecipientKey::P256(leaf_key.public_key()),
                &["bad name/".into()],
                None,
                0
            )
            .is_err());
    }
}
