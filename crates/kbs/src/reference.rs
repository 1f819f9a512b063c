//! Reference values and init data: the contract with `cocoon convert` and
//! the launcher, defined in [`cocoon_attest::workload`] (shared with the
//! attested-TLS verifier). Here: the same checks with KBS errors (400).
//!
//! `cocoon convert --reference-values FILE` writes a [`ReferenceValues`]
//! document; `cocoon kbs reference-values add FILE` uploads it. The launcher
//! sends [`InitData`] as the `init-data` of the attestation request
//! (`{"format": "json", "body": "<InitData JSON>"}`); the KBS checks its
//! digest against the evidence before the policy sees it.

use cocoon_attest::workload;
pub use cocoon_attest::workload::{resource_uri, InitData, ReferenceValues};

use crate::{Error, Result};

fn bad(e: cocoon_attest::Error) -> Error {
    Error::BadRequest(e.to_string())
}

/// Splits `kbs:///repo/type/tag` (or `repo/type/tag`) into its three parts.
pub fn parse_resource_uri(uri: &str) -> Result<(String, String, String)> {
    workload::parse_resource_uri(uri).map_err(bad)
}

/// Parses and validates a reference-values JSON document.
pub fn reference_values_from_json(b: &[u8]) -> Result<ReferenceValues> {
    ReferenceValues::from_json(b).map_err(bad)
}

/// Parses and validates init data JSON.
pub fn init_data_from_json(b: &[u8]) -> Result<InitData> {
    InitData::from_json(b).map_err(bad)
}
