//! The KBS attestation protocol (Trustee RCAR, version 0.4.0) as both of
//! its sides speak it: the KBS (`cocoon-kbs`) and its clients in the TEE
//! (the launcher). Wire types, the TEE key and its JWK, and resources as
//! JWE ([`jwe`]), in one place so that the two sides cannot drift apart.
//!
//! Field names match the `kbs-types` crate (0.18) byte for byte; the crate
//! itself is not linked because its `std` feature pulls an EAR library with
//! OpenSSL.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod jwe;

/// Result with the protocol [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a key could not be used or a JWE could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The JWE or the JWK is malformed, or names an algorithm not spoken here.
    #[error("{0}")]
    Malformed(String),
    /// The JWE does not open under the key: key unwrap or authentication failed.
    #[error("{0}")]
    Unauthentic(String),
    /// The crypto library failed (randomness, key agreement).
    #[error("{0}")]
    Crypto(String),
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only protocol version this KBS speaks.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// `POST /kbs/v0/auth` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version; must be `0.4.0`.
    pub version: String,
    /// TEE name (`sim`, `sample`, `snp`, `tdx`, `sgx`, `az-snp-vtpm`, ...).
    pub tee: String,
    /// Extra parameters (unused; any JSON).
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// `POST /kbs/v0/auth` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// Base64 (standard, padded) of 32 random bytes; single use.
    pub nonce: String,
    /// Extra parameters (always `""`).
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// Init data sent with the attestation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitDataDoc {
    /// `json` (cocoon's init data document); other formats are refused.
    pub format: String,
    /// The init data text.
    pub body: String,
}

/// Runtime data: what the report data binds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeData {
    /// The nonce from the challenge.
    pub nonce: String,
    /// The TEE's public key (JWK) that resources are encrypted to.
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

/// The evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompositeEvidence {
    /// Primary evidence: a base64 string of the raw evidence bytes (sim,
    /// snp, tdx, sgx), a JSON object (az-snp-vtpm envelope; `sample`).
    pub primary_evidence: Value,
    /// Additional evidence: JSON text, `""` when none.
    #[serde(default)]
    pub additional_evidence: String,
}

/// `POST /kbs/v0/attest` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attestation {
    /// Init data (optional).
    #[serde(rename = "init-data", default, skip_serializing_if = "Option::is_none")]
    pub init_data: Option<InitDataDoc>,
    /// Runtime data.
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    /// Evidence.
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: CompositeEvidence,
}

/// `POST /kbs/v0/attest` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttestationResponse {
    /// The EAR attestation token (JWT, ES256).
    pub token: String,
}

/// A resource as flattened JWE JSON (`GET /kbs/v0/resource/...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JweResponse {
    /// base64url of the protected header JSON.
    pub protected: String,
    /// base64url of the wrapped content key.
    pub encrypted_key: String,
    /// base64url of the 12-byte GCM IV.
    pub iv: String,
    /// base64url of the ciphertext.
    pub ciphertext: String,
    /// base64url of the 16-byte GCM tag.
    pub tag: String,
}

/// `POST /kbs/v0/cert` body (cocoon extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRequest {
    /// DNS names for the subjectAltName.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// `POST /kbs/v0/cert` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertResponse {
    /// The workload certificate (PEM) for the attested `tee-pubkey`.
    pub certificate: String,
    /// The KBS CA certificate (PEM).
    pub ca: String,
}

/// base64url without padding, as JOSE writes every binary field.
pub fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes base64url (trailing padding tolerated); `None` if it is not.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// A fresh random P-256 secret key: the TEE key of a session (resources
/// are encrypted to it), or the shield's TLS key.
pub fn new_p256_key() -> Result<p256::SecretKey> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut b = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::SecureRandom::fill(&rng, b.as_mut())
            .map_err(|_| Error::Crypto("no randomness".into()))?;
        if let Ok(k) = p256::SecretKey::from_slice(b.as_ref()) {
            return Ok(k);
        }
    }
    Err(Error::Crypto("could not draw a P-256 key".into()))
}

/// The JWK of a P-256 public key with the members RFC 7638 thumbprints
/// hash: `kty`, `crv`, `x`, `y`.
pub fn p256_jwk(k: &p256::PublicKey) -> Value {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let pt = k.to_sec1_point(false);
    // Uncompressed SEC1 of a valid public key: 0x04 || x (32) || y (32).
    let b = pt.as_bytes();
    serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64url(&b[1..33]), "y": b64url(&b[33..65])})
}

/// The `tee-pubkey` a client sends for its P-256 session key: the JWK with
/// `alg` `ECDH-ES+A256KW`, how resources are to be encrypted to it.
pub fn tee_pubkey(k: &p256::PublicKey) -> Value {
    let mut jwk = p256_jwk(k);
    jwk["alg"] = jwe::ALG_ECDH_ES_A256KW.into();
    jwk
}
