//! Verifying an attested certificate (the client side).
//!
//! [`verify_certificate`] refuses unless every one of these holds, checked
//! in this order (the first failure is the error):
//!
//! 1. the certificate is DER X.509, within its validity period at `now`;
//! 2. it carries the evidence extension, well-formed, with a known tag;
//! 3. its self-signature (ECDSA P-256 / SHA-256) verifies;
//! 4. the claims' `pubkey-hash` is SHA-256 of its SubjectPublicKeyInfo;
//! 5. when the client sent a nonce, the claims bind exactly that nonce;
//! 6. sim evidence only when allowed; the evidence verifies up to a trusted
//!    root with the collateral (`cocoon_attest::verify`), and is the TEE the
//!    tag names; debug only for allowed sim;
//! 7. the report data is SHA-256 of the claims bytes (zero-padded to 64);
//! 8. the `init-data` claim is canonical init data whose SHA-256 is the
//!    init-data field the platform bound at launch (as the KBS checks);
//! 9. its workload, launcher and signer equal the reference values.

use std::time::{SystemTime, UNIX_EPOCH};

use cocoon_attest::workload::{InitData, ReferenceValues};
use cocoon_attest::{binding, Claims, Collateral, HexBytes, Tee, UnixTime};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use crate::evidence::{
    pubkey_hash, report_data, tee_for, EvidenceClaims, TaggedEvidence, EVIDENCE_OID,
};
use crate::{Error, Result};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// What a client expects of an endpoint.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// The workload, launcher and signer the endpoint must run.
    pub reference: ReferenceValues,
    /// Collateral for the evidence (VCEK/VLEK, DCAP collateral, sim roots).
    pub collateral: Collateral,
    /// Accept sim evidence (no protection; development only). Its root must
    /// also be among `collateral.sim_roots`.
    pub allow_sim: bool,
    /// The nonce this connection sent; `None` accepts a certificate made
    /// without (or for any) nonce.
    pub nonce: Option<[u8; 32]>,
}

impl Expectation {
    /// Expects `reference` with `collateral`; no sim, no nonce.
    pub fn new(reference: ReferenceValues, collateral: Collateral) -> Self {
        Expectation {
            reference,
            collateral,
            allow_sim: false,
            nonce: None,
        }
    }

    /// Sets whether sim evidence is accepted.
    pub fn allow_sim(mut self, allow: bool) -> Self {
        self.allow_sim = allow;
        self
    }

    /// Sets the nonce the certificate must bind.
    pub fn with_nonce(mut self, nonce: Option<[u8; 32]>) -> Self {
        self.nonce = nonce;
        self
    }
}

/// What a verified certificate proves about its endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedEndpoint {
    /// The TEE the endpoint runs in.
    pub tee: Tee,
    /// The workload identity, bound by the platform at launch.
    pub init_data: InitData,
    /// The nonce the certificate binds (the client's, when it sent one).
    pub nonce: Option<HexBytes>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo: the TLS key that
    /// lives in the TEE.
    pub public_key_sha256: HexBytes,
    /// Start of the certificate's validity (RFC 3339).
    pub not_before: String,
    /// End of the certificate's validity (RFC 3339).
    pub not_after: String,
    /// The verified evidence's normalized claims.
    pub claims: Claims,
}

fn unix(t: SystemTime) -> UnixTime {
    UnixTime(
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// Verifies an attested certificate (DER) against `exp` at `now`: see the
/// module documentation for every check. Never panics on any input.
pub fn verify_certificate(
    cert_der: &[u8],
    exp: &Expectation,
    now: SystemTime,
) -> Result<VerifiedEndpoint> {
    let now = unix(now);
    let cert = Certificate::from_der(cert_der).map_err(Error::bad_cert)?;
    // Strict DER: the signed bytes are then exactly the re-encoded TBS.
    if cert.to_der().map_err(Error::bad_cert)? != cert_der {
        return Err(Error::bad_cert("it is not strict DER"));
    }
    let tbs = cert.tbs_certificate();

    let v = tbs.validity();
    let not_before = UnixTime(v.not_before.to_unix_duration().as_secs());
    let not_after = UnixTime(v.not_after.to_unix_duration().as_secs());
    if now < not_before || now > not_after {
        return Err(Error::Validity {
            now,
            not_before,
            not_after,
        });
    }

    let mut found = tbs
        .extensions()
        .into_iter()
        .flatten()
        .filter(|e| e.extn_id == EVIDENCE_OID);
    let ext = found.next().ok_or(Error::NotAttested)?;
    if found.next().is_some() {
        return Err(Error::malformed(
            "the certificate has two evidence extensions",
        ));
    }
    let tagged = TaggedEvidence::from_cbor(ext.extn_value.as_bytes())?;
    let tee = tee_for(tagged.tag, &tagged.evidence)?;

    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(Error::bad_cert)?;
    verify_self_signature(&cert, &spki)?;

    let claims = EvidenceClaims::from_cbor(&tagged.claims)?;
    let actual = pubkey_hash(&spki);
    if claims.pubkey_hash != actual {
        return Err(Error::PublicKeyHash {
            claimed: hex::encode(claims.pubkey_hash),
            actual: hex::encode(actual),
        });
    }
    if let Some(want) = &exp.nonce {
        match &claims.nonce {
            None => return Err(Error::NonceMissing),
            Some(n) if n[..] != want[..] => {
                return Err(Error::NonceMismatch {
                    expected: hex::encode(want),
                    found: hex::encode(n),
                })
            }
            Some(_) => {}
        }
    }

    if tee == Tee::Sim && !exp.allow_sim {
        return Err(Error::SimNotAllowed);
    }
    let attested = cocoon_attest::verify(tee, &tagged.evidence, &exp.collateral, now)
        .map_err(Error::Evidence)?;
    if attested.tee != tee {
        return Err(Error::TagMismatch {
            tagged: tee,
            found: attested.tee,
        });
    }
    if attested.debug && !(attested.tee == Tee::Sim && exp.allow_sim) {
        return Err(Error::Debug { tee: attested.tee });
    }

    let rd = report_data(&tagged.claims);
    if !attested.report_data_matches(&rd) {
        return Err(Error::ReportData {
            expected: hex::encode(rd),
            found: hex::encode(&attested.report_data.0),
        });
    }

    let init = InitData::from_json(&claims.init_data).map_err(|e| Error::BadInitData {
        detail: e.to_string(),
    })?;
    if init.canonical_json().as_bytes() != claims.init_data.as_slice() {
        return Err(Error::BadInitData {
            detail: "it is not RFC 8785 canonical JSON, so its digest is ambiguous".into(),
        });
    }
    let digest = init.digest();
    binding::init_data_field(tee, &digest).map_err(|_| Error::InitDataUnbound { tee })?;
    attested
        .expect_init_data(&digest)
        .map_err(|_| Error::InitDataDigest {
            claimed: hex::encode(digest),
            bound: hex::encode(&attested.init_data.0),
        })?;

    let rv = &exp.reference;
    if init.workload_digest != rv.workload_digest {
        return Err(Error::Workload {
            found: init.workload_digest,
            expected: rv.workload_digest.clone(),
        });
    }
    if init.launcher_digest != rv.launcher_digest {
        return Err(Error::Launcher {
            found: init.launcher_digest,
            expected: rv.launcher_digest.clone(),
        });
    }
    if init.signer != rv.signer {
        return Err(Error::Signer {
            found: init.signer,
            expected: rv.signer.clone(),
        });
    }

    Ok(VerifiedEndpoint {
        tee,
        init_data: init,
        nonce: claims.nonce.map(HexBytes),
        public_key_sha256: HexBytes(actual.to_vec()),
        not_before: not_before.to_string(),
        not_after: not_after.to_string(),
        claims: attested,
    })
}

fn verify_self_signature(cert: &Certificate, spki: &[u8]) -> Result<()> {
    let sig_err = |detail: &str| Error::Signature {
        detail: detail.to_string(),
    };
    if cert.signature_algorithm().oid != ECDSA_WITH_SHA256
        || cert.tbs_certificate().signature().oid != ECDSA_WITH_SHA256
    {
        return Err(sig_err("it is not ECDSA with SHA-256"));
    }
    let key = p256::PublicKey::from_public_key_der(spki)
        .map_err(|_| sig_err("its key is not an ECDSA P-256 key"))?;
    let sig = cert
        .signature()
        .as_bytes()
        .and_then(|b| DerSignature::from_bytes(b).ok())
        .ok_or_else(|| sig_err("the signature is not a DER ECDSA signature"))?;
    let tbs = cert.tbs_certificate().to_der().map_err(Error::bad_cert)?;
    VerifyingKey::from(&key)
        .verify(&tbs, &sig)
        .map_err(|_| sig_err("the key in the certificate did not sign it"))
}
