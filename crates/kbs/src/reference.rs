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

/// Init data as presented in an attestation request, checked for shape:
/// what the platform must have bound (`digest`) and what the policy sees
/// as `input.init_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentedInitData {
    /// The digest the evidence's init-data field must hold (zero-padded).
    pub digest: Vec<u8>,
    /// The policy's view: a cocoon [`InitData`], or the Trustee document.
    pub policy_view: serde_json::Value,
}

/// Largest init-data body accepted.
pub const MAX_INIT_DATA: usize = 256 * 1024;

/// Parses `{"format", "body"}` init data: `json` (cocoon's [`InitData`],
/// digest SHA-256 of its JCS form) or `toml` (Trustee / Confidential
/// Containers initdata: `version`, `algorithm` = sha256 | sha384 | sha512,
/// an optional `[data]` table; digest = that hash of the body text as sent).
pub fn presented_init_data(format: &str, body: &str) -> Result<PresentedInitData> {
    if body.len() > MAX_INIT_DATA {
        return Err(Error::BadRequest(format!(
            "init-data body larger than {MAX_INIT_DATA} bytes"
        )));
    }
    match format {
        "json" => {
            let i = init_data_from_json(body.as_bytes())?;
            Ok(PresentedInitData {
                digest: i.digest().to_vec(),
                policy_view: serde_json::to_value(&i)
                    .map_err(|e| Error::Internal(e.to_string()))?,
            })
        }
        "toml" => trustee_init_data(body),
        other => Err(Error::BadRequest(format!(
            "init-data format {other:?} is not supported; use \"json\" (cocoon) or \"toml\" (Trustee initdata)"
        ))),
    }
}

fn trustee_init_data(body: &str) -> Result<PresentedInitData> {
    use sha2::Digest as _;
    let bad = |m: String| Error::BadRequest(format!("toml init-data: {m}"));
    let doc: toml::Table = toml::from_str(body).map_err(|e| bad(e.to_string()))?;
    let version = doc
        .get("version")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| bad("no version string".into()))?;
    if !version.starts_with("0.") {
        return Err(bad(format!("version {version:?} is not supported (0.x)")));
    }
    let algorithm = doc
        .get("algorithm")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| bad("no algorithm string".into()))?;
    let digest = match algorithm {
        "sha256" => sha2::Sha256::digest(body.as_bytes()).to_vec(),
        "sha384" => sha2::Sha384::digest(body.as_bytes()).to_vec(),
        "sha512" => sha2::Sha512::digest(body.as_bytes()).to_vec(),
        other => {
            return Err(bad(format!(
                "algorithm {other:?} is not one of sha256, sha384, sha512"
            )))
        }
    };
    if let Some(d) = doc.get("data") {
        if !d.is_table() {
            return Err(bad("data is not a table".into()));
        }
    }
    let policy_view = serde_json::to_value(&doc).map_err(|e| bad(e.to_string()))?;
    Ok(PresentedInitData {
        digest,
        policy_view,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUSTEE: &str = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\ndefault AllowRequestsFailingPolicy := true\n'''\n";

    #[test]
    fn trustee_toml_digest_is_the_named_hash_of_the_body() {
        use sha2::Digest as _;
        let p = presented_init_data("toml", TRUSTEE).unwrap();
        assert_eq!(p.digest, sha2::Sha384::digest(TRUSTEE.as_bytes()).to_vec());
        assert_eq!(p.policy_view["algorithm"], "sha384");
        assert!(p.policy_view["data"]["policy.rego"]
            .as_str()
            .unwrap()
            .contains("agent_policy"));
        let p = presented_init_data("toml", &TRUSTEE.replace("sha384", "sha256")).unwrap();
        assert_eq!(p.digest.len(), 32);
    }

    #[test]
    fn bad_init_data_is_a_400_naming_the_problem() {
        for (format, body, want) in [
            ("yaml", "x", "not supported"),
            ("toml", "version = \"0.1.0\"", "no algorithm"),
            ("toml", "algorithm = \"md5\"\nversion = \"0.1.0\"", "md5"),
            (
                "toml",
                "algorithm = \"sha256\"\nversion = \"2.0\"",
                "version",
            ),
            (
                "toml",
                "algorithm = \"sha256\"\nversion = \"0.1.0\"\ndata = 3",
                "table",
            ),
            ("toml", "= broken", "toml init-data"),
            ("json", "{}", "init data"),
        ] {
            let e = presented_init_data(format, body).unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{e}");
            assert!(e.to_string().contains(want), "{format} {body}: {e}");
        }
        let huge = "#".repeat(MAX_INIT_DATA + 1);
        assert!(presented_init_data("toml", &huge).is_err());
    }
}
