//! Wire types of the KBS attestation protocol (Trustee RCAR, version 0.4.0).
//!
//! Field names match the `kbs-types` crate (0.18) byte for byte; the crate
//! itself is not linked because its `std` feature pulls an EAR library with
//! OpenSSL.

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
    /// `json` (cocoon [`crate::InitData`]); other formats are refused.
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
