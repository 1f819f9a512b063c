//! Binding evidence to a session and a workload.
//!
//! * Report data (KBS protocol 0.4.0): `SHA-384(JCS({"additional-evidence": A,
//!   "nonce": N, "tee-pubkey": JWK}))`, zero-padded to 64 bytes, where JCS is
//!   RFC 8785 canonical JSON. The attester puts it in REPORT_DATA; the KBS
//!   recomputes it and compares ([`crate::Claims::expect_report_data`]).
//! * Init data: the workload digest, placed where the platform binds data at
//!   launch: SNP HOST_DATA (32 bytes), TDX MRCONFIGID (48), sim host_data (48);
//!   shorter digests are zero-padded ([`init_data_field`]). SGX CONFIGID (64)
//!   is accepted the same way. Azure vTPM cannot bind init data at launch:
//!   the launcher extends it into a PCR instead (docs/attestation.md).

use serde_json::{json, Value};
use sha2::{Digest, Sha384};

use crate::{Error, Result, Tee};

/// The KBS report data for a session: nonce (as sent by the KBS, base64
/// text), the TEE public key (JWK) and the additional evidence (JSON text,
/// `""` when there is none).
pub fn kbs_report_data(
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Result<[u8; 64]> {
    let obj = json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    });
    let canon = serde_json_canonicalizer::to_vec(&obj).map_err(|e| Error::InvalidInput {
        what: "runtime data",
        detail: format!("cannot canonicalize ({e})"),
    })?;
    let mut out = [0u8; 64];
    out[..48].copy_from_slice(&Sha384::digest(&canon));
    Ok(out)
}

/// Size of the launch-bound init data field of `tee`, if it has one.
pub fn init_data_len(tee: Tee) -> Option<usize> {
    match tee {
        Tee::Snp => Some(32),
        Tee::Tdx => Some(48),
        Tee::Sim => Some(crate::sim::HOST_DATA_LEN),
        Tee::Sgx => Some(64),
        Tee::AzSnpVtpm => None,
    }
}

/// The init-data field value for `digest` on `tee` (zero-padded).
pub fn init_data_field(tee: Tee, digest: &[u8]) -> Result<Vec<u8>> {
    let n = init_data_len(tee).ok_or(Error::InvalidInput {
        what: "init data",
        detail: format!("{tee} has no launch-bound init data field; extend the digest into a PCR"),
    })?;
    if digest.len() > n {
        return Err(Error::InvalidInput {
            what: "init data",
            detail: format!(
                "{} bytes do not fit the {n}-byte field of {tee}",
                digest.len()
            ),
        });
    }
    let mut v = digest.to_vec();
    v.resize(n, 0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk() -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
            "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
            "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"
        })
    }

    const NONCE: &str = "q1X0qK8bM2C5m1u3O0U8v5Xyq0r9s3QkZ8Q9n2e5Y1c=";

    /// Vector computed independently: Python `json.dumps(sort_keys=True,
    /// separators=(",", ":"))` (equal to JCS for this input) and `hashlib.sha384`
    /// over `{"additional-evidence":"{\"a\":1}","nonce":"q1X0...","tee-pubkey":{"alg":...}}`.
    #[test]
    fn matches_hand_checked_vector() {
        let rd = kbs_report_data(NONCE, &jwk(), "{\"a\":1}").unwrap();
        assert_eq!(
            hex::encode(&rd[..48]),
            "0f0a499c7fa0c71bec0e7e508da956cde5c443f2ba782065b66aa3b9df70af276837ef7fdcb36bc9e1d2f9e8681e82e9"
        );
        assert_eq!(rd[48..], [0u8; 16]);
    }

    #[test]
    fn key_order_does_not_matter_but_every_input_does() {
        let mut reordered = serde_json::Map::new();
        for k in ["y", "x", "kty", "crv", "alg"] {
            reordered.insert(k.into(), jwk()[k].clone());
        }
        let a = kbs_report_data(NONCE, &jwk(), "").unwrap();
        assert_eq!(
            a,
            kbs_report_data(NONCE, &Value::Object(reordered), "").unwrap()
        );
        assert_ne!(a, kbs_report_data("other", &jwk(), "").unwrap());
        assert_ne!(a, kbs_report_data(NONCE, &jwk(), "{}").unwrap());
        let mut k2 = jwk();
        k2["x"] = "AAAA".into();
        assert_ne!(a, kbs_report_data(NONCE, &k2, "").unwrap());
    }

    #[test]
    fn sim_evidence_with_wrong_binding_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = crate::sim::init(dir.path()).unwrap();
        let rd = kbs_report_data(NONCE, &jwk(), "").unwrap();
        let digest = [0xabu8; 32];
        let ev = p
            .sign(
                [0; 48],
                &init_data_field(Tee::Sim, &digest).unwrap(),
                &rd,
                1,
            )
            .unwrap();
        let coll = crate::Collateral {
            sim_roots: vec![p.root_der().unwrap()],
            ..Default::default()
        };
        let c = crate::verify(Tee::Sim, &ev, &coll, crate::UnixTime::now()).unwrap();
        assert!(c.expect_report_data(&rd).is_ok());
        assert!(c.expect_init_data(&digest).is_ok());
        let other = kbs_report_data("another-nonce", &jwk(), "").unwrap();
        let e = c.expect_report_data(&other).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Binding {
                    what: "report data",
                    ..
                }
            ),
            "{e}"
        );
        assert!(c.expect_init_data(&[0xcd; 32]).is_err());
    }

    #[test]
    fn init_data_sizes_per_tee() {
        assert_eq!(init_data_field(Tee::Snp, &[1; 32]).unwrap().len(), 32);
        assert_eq!(init_data_field(Tee::Tdx, &[1; 32]).unwrap().len(), 48);
        assert_eq!(init_data_field(Tee::Tdx, &[1; 48]).unwrap(), vec![1; 48]);
        assert!(init_data_field(Tee::Snp, &[1; 48]).is_err());
        let e = init_data_field(Tee::AzSnpVtpm, &[1; 32]).unwrap_err();
        assert_eq!(e.to_string(), "invalid init data: az-snp-vtpm has no launch-bound init data field; extend the digest into a PCR");
    }
}
