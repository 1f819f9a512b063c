//! The workload identity contract between `cocoon convert`, the launcher,
//! the KBS and attesting clients.
//!
//! `cocoon convert --reference-values FILE` writes [`ReferenceValues`]: what a
//! verifier trusts for one workload. The launcher presents [`InitData`] (the
//! workload it runs); the platform binds `SHA-256(JCS(InitData))` at launch
//! (sim host_data, SNP HOST_DATA, TDX MRCONFIGID), so a verifier that holds
//! the init data and verified evidence knows which workload produced it.
//! Both formats are stable: change them only with a new field that has a
//! default.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a verifier trusts for one workload, and which KBS resources it may have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// The workload digest (`sha256:<64 hex>`), SHA-256 of the workload manifest.
    pub workload_digest: String,
    /// The launcher binary digest (`sha256:<64 hex>`).
    pub launcher_digest: String,
    /// Fingerprint of the owner's public signing key (`sha256:<64 hex>`).
    pub signer: String,
    /// The resources this workload may receive (`kbs:///repo/type/tag`).
    pub resources: Vec<String>,
}

/// The workload identity the launcher presents as init data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitData {
    /// The workload digest (`sha256:<64 hex>`).
    pub workload_digest: String,
    /// The launcher digest (`sha256:<64 hex>`).
    pub launcher_digest: String,
    /// Fingerprint of the owner's signing key (`sha256:<64 hex>`).
    pub signer: String,
}

fn invalid(what: &'static str, detail: String) -> Error {
    Error::InvalidInput { what, detail }
}

fn check_digest(what: &'static str, field: &str, s: &str) -> Result<()> {
    let ok = s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("{field} {s:?} is not sha256:<64 lowercase hex>"),
        ))
    }
}

/// Splits `kbs:///repo/type/tag` (or `repo/type/tag`) into its three parts.
pub fn parse_resource_uri(uri: &str) -> Result<(String, String, String)> {
    let path = uri.strip_prefix("kbs:///").unwrap_or(uri);
    let parts: Vec<&str> = path.split('/').collect();
    let valid = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.len() <= 128
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    match parts.as_slice() {
        [r, t, g] if valid(r) && valid(t) && valid(g) => {
            Ok((r.to_string(), t.to_string(), g.to_string()))
        }
        _ => Err(invalid(
            "resource",
            format!("{uri:?} is not kbs:///<repo>/<type>/<tag> (letters, digits, '-', '_', '.')"),
        )),
    }
}

/// The canonical URI `kbs:///repo/type/tag`.
pub fn resource_uri(repo: &str, kind: &str, tag: &str) -> String {
    format!("kbs:///{repo}/{kind}/{tag}")
}

impl ReferenceValues {
    /// Parses and validates a reference-values JSON document.
    pub fn from_json(b: &[u8]) -> Result<Self> {
        let rv: ReferenceValues =
            serde_json::from_slice(b).map_err(|e| invalid("reference values", e.to_string()))?;
        rv.validate()?;
        Ok(rv)
    }

    /// Checks digest formats and resource URIs.
    pub fn validate(&self) -> Result<()> {
        const W: &str = "reference values";
        check_digest(W, "workload_digest", &self.workload_digest)?;
        check_digest(W, "launcher_digest", &self.launcher_digest)?;
        check_digest(W, "signer", &self.signer)?;
        for r in &self.resources {
            if !r.starts_with("kbs:///") {
                return Err(invalid(
                    W,
                    format!("resource {r:?} must start with kbs:///"),
                ));
            }
            parse_resource_uri(r)?;
        }
        Ok(())
    }

    /// Whether `init` names exactly this workload, launcher and signer.
    pub fn matches(&self, init: &InitData) -> bool {
        self.workload_digest == init.workload_digest
            && self.launcher_digest == init.launcher_digest
            && self.signer == init.signer
    }
}

impl InitData {
    /// Parses and validates init data JSON.
    pub fn from_json(b: &[u8]) -> Result<Self> {
        const W: &str = "init data";
        let d: InitData = serde_json::from_slice(b).map_err(|e| invalid(W, e.to_string()))?;
        check_digest(W, "workload_digest", &d.workload_digest)?;
        check_digest(W, "launcher_digest", &d.launcher_digest)?;
        check_digest(W, "signer", &d.signer)?;
        Ok(d)
    }

    /// The RFC 8785 (JCS) canonical JSON text: what the launcher sends.
    pub fn canonical_json(&self) -> String {
        // Three strings always canonicalize, and JCS output is UTF-8.
        let v = serde_json_canonicalizer::to_vec(self).unwrap_or_default();
        String::from_utf8(v).unwrap_or_default()
    }

    /// The 32-byte digest bound at launch: SHA-256 of [`Self::canonical_json`].
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_json().as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn reference_values_round_trip_and_reject_unknown_fields() {
        let rv = ReferenceValues {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('c'),
            resources: vec!["kbs:///repo/key/image".into()],
        };
        let j = serde_json::to_vec(&rv).unwrap();
        assert_eq!(ReferenceValues::from_json(&j).unwrap(), rv);
        let mut v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        v["extra"] = 1.into();
        let e = ReferenceValues::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let mut bad = rv.clone();
        bad.workload_digest = "sha256:XYZ".into();
        assert!(bad.validate().is_err());
        bad = rv.clone();
        bad.resources = vec!["kbs:///a/../b".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn init_data_digest_is_jcs_sha256() {
        let i = InitData {
            workload_digest: d('1'),
            launcher_digest: d('2'),
            signer: d('3'),
        };
        let canon = format!(
            "{{\"launcher_digest\":\"{}\",\"signer\":\"{}\",\"workload_digest\":\"{}\"}}",
            d('2'),
            d('3'),
            d('1')
        );
        assert_eq!(i.canonical_json(), canon);
        assert_eq!(
            i.digest(),
            <[u8; 32]>::from(Sha256::digest(canon.as_bytes()))
        );
        assert_eq!(InitData::from_json(canon.as_bytes()).unwrap(), i);
    }

    #[test]
    fn resource_uris() {
        assert_eq!(
            parse_resource_uri("kbs:///a/b/c").unwrap(),
            ("a".into(), "b".into(), "c".into())
        );
        assert!(parse_resource_uri("a/b").is_err());
        assert!(parse_resource_uri("a/b/c/d").is_err());
        assert!(parse_resource_uri("a/../c").is_err());
        assert!(parse_resource_uri("a/b%2f/c").is_err());
    }
}
