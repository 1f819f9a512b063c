//! Intel TDX (quote v4, v5) and SGX DCAP (quote v3), verified by the pure-Rust
//! `dcap-qvl` crate: quote signature, QE report, PCK chain to the Intel SGX
//! Root CA, CRLs, TCB info and QE identity signatures and windows, and TCB
//! level matching with advisory ids. This module maps its result to [`Claims`].

use std::collections::BTreeMap;

use dcap_qvl::quote::Report;
use dcap_qvl::QuoteCollateralV3;

use crate::claims::{Claims, Tcb, TcbStatus};
use crate::{Collateral, Error, Result, Tee, UnixTime, Verifier};

/// The Intel SGX Root CA (production), DER. SHA-256
/// `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`.
pub const INTEL_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel/TrustedRootCA.der");

/// Accepts every verified quote: TCB status and advisories are reported as
/// claims for the caller's policy to judge.
struct ReportAll;

impl dcap_qvl::policy::Policy for ReportAll {
    fn validate(&self, _: &dcap_qvl::policy::QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Parses a quote with dcap-qvl's parser (no verification) and checks that
/// it is a quote of kind `tee` (SGX or TDX). Never panics.
pub fn parse_quote(tee: Tee, quote: &[u8]) -> Result<dcap_qvl::quote::Quote> {
    let parsed = dcap_qvl::quote::Quote::parse(quote)
        .map_err(|e| Error::malformed(tee, format!("{e:#}")))?;
    let is_sgx = parsed.header.is_sgx();
    if is_sgx != (tee == Tee::Sgx) {
        return Err(Error::malformed(
            tee,
            format!(
                "this is a{} quote (version {}, TEE type {:#x}), not {tee}",
                if is_sgx { "n SGX" } else { " TDX" },
                parsed.header.version,
                parsed.header.tee_type
            ),
        ));
    }
    Ok(parsed)
}

fn classify(tee: Tee, e: impl std::fmt::Display) -> Error {
    let detail = format!("{e:#}");
    let lower = detail.to_ascii_lowercase();
    if lower.contains("tcb level") || lower.contains("tcb status") {
        Error::Tcb { tee, detail }
    } else {
        Error::Dcap { tee, detail }
    }
}

/// Verifies a quote of kind `tee` (Tdx or Sgx) against DCAP collateral at `now`.
pub fn verify_quote(
    tee: Tee,
    quote: &[u8],
    collateral: &QuoteCollateralV3,
    root_der: &[u8],
    now: UnixTime,
) -> Result<Claims> {
    let parsed = parse_quote(tee, quote)?;
    let qc = dcap_qvl::verify::QuoteVerifier::new(root_der.to_vec())
        .with_config::<dcap_qvl::configs::RustCryptoConfig>()
        .verify_with_policy(quote, collateral.clone(), now.0, &ReportAll)
        .map_err(|e| classify(tee, e))?;
    let status = TcbStatus::from_intel(&qc.tcb.status.to_string());
    let status = match status {
        Some(s) => s,
        None => {
            return Err(Error::Tcb {
                tee,
                detail: format!("status {}", qc.tcb.status),
            })
        }
    };
    let mut svn = BTreeMap::new();
    svn.insert("qe_svn".to_string(), u64::from(parsed.header.qe_svn));
    svn.insert("pce_svn".to_string(), u64::from(parsed.header.pce_svn));
    svn.insert(
        "tcb_eval_data_number".to_string(),
        u64::from(qc.tcb.eval_data_number),
    );
    let mut platform = BTreeMap::new();
    platform.insert("fmspc".to_string(), hex::encode(qc.platform.pck.fmspc));
    platform.insert("pce_id".to_string(), hex::encode(&qc.platform.pck.pce_id));
    platform.insert("ppid".to_string(), hex::encode(&qc.platform.pck.ppid));
    platform.insert(
        "quote_version".to_string(),
        parsed.header.version.to_string(),
    );
    let mut m = BTreeMap::new();
    let claims = match &qc.report {
        Report::SgxEnclave(r) => {
            svn.insert("isv_svn".to_string(), u64::from(r.isv_svn));
            svn.insert("isv_prod_id".to_string(), u64::from(r.isv_prod_id));
            m.insert("attributes".to_string(), r.attributes.to_vec().into());
            m.insert("cpu_svn".to_string(), r.cpu_svn.to_vec().into());
            m.insert(
                "misc_select".to_string(),
                r.misc_select.to_le_bytes().to_vec().into(),
            );
            Claims {
                tee,
                // ATTRIBUTES.DEBUG is bit 1 of the flags.
                debug: r.attributes[0] & 0x02 != 0,
                tcb: Tcb {
                    status,
                    advisory_ids: qc.tcb.advisory_ids.clone(),
                },
                launch_measurement: r.mr_enclave.to_vec().into(),
                // CONFIGID: bytes 192..256 of the report = reserved3[32..96].
                init_data: r.reserved3[32..96].to_vec().into(),
                report_data: r.report_data.to_vec().into(),
                signer: Some(r.mr_signer.to_vec().into()),
                svn,
                platform,
                measurements: m,
            }
        }
        other => {
            let Some(td) = other.as_td10() else {
                return Err(Error::malformed(tee, "unknown TD report body"));
            };
            m.insert("mr_seam".to_string(), td.mr_seam.to_vec().into());
            m.insert(
                "mr_signer_seam".to_string(),
                td.mr_signer_seam.to_vec().into(),
            );
            m.insert("mr_owner".to_string(), td.mr_owner.to_vec().into());
            m.insert(
                "mr_owner_config".to_string(),
                td.mr_owner_config.to_vec().into(),
            );
            m.insert("rtmr0".to_string(), td.rt_mr0.to_vec().into());
            m.insert("rtmr1".to_string(), td.rt_mr1.to_vec().into());
            m.insert("rtmr2".to_string(), td.rt_mr2.to_vec().into());
            m.insert("rtmr3".to_string(), td.rt_mr3.to_vec().into());
            m.insert(
                "td_attributes".to_string(),
                td.td_attributes.to_vec().into(),
            );
            m.insert("xfam".to_string(), td.xfam.to_vec().into());
            m.insert("tee_tcb_svn".to_string(), td.tee_tcb_svn.to_vec().into());
            if let Some(td15) = other.as_td15() {
                m.insert(
                    "tee_tcb_svn2".to_string(),
                    td15.tee_tcb_svn2.to_vec().into(),
                );
                m.insert(
                    "mr_service_td".to_string(),
                    td15.mr_service_td.to_vec().into(),
                );
            }
            Claims {
                tee,
                // TDATTRIBUTES.TUD.DEBUG is bit 0.
                debug: td.td_attributes[0] & 0x01 != 0,
                tcb: Tcb {
                    status,
                    advisory_ids: qc.tcb.advisory_ids.clone(),
                },
                launch_measurement: td.mr_td.to_vec().into(),
                init_data: td.mr_config_id.to_vec().into(),
                report_data: td.report_data.to_vec().into(),
                signer: None,
                svn,
                platform,
                measurements: m,
            }
        }
    };
    Ok(claims)
}

fn verify_with(
    tee: Tee,
    evidence: &[u8],
    collateral: &Collateral,
    now: UnixTime,
) -> Result<Claims> {
    let dcap = collateral.dcap.as_ref().ok_or(Error::MissingCollateral {
        tee,
        what: "DCAP collateral (TCB info, QE identity, CRLs and issuer chains from Intel PCS)",
    })?;
    let root = collateral
        .intel_root
        .as_deref()
        .unwrap_or(INTEL_ROOT_CA_DER);
    verify_quote(tee, evidence, dcap, root, now)
}

/// The TDX verifier (quote v4 and v5).
#[derive(Clone, Copy, Debug, Default)]
pub struct TdxVerifier;

impl Verifier for TdxVerifier {
    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
        verify_with(Tee::Tdx, evidence, collateral, now)
    }
}

/// The SGX DCAP verifier (quote v3).
#[derive(Clone, Copy, Debug, Default)]
pub struct SgxVerifier;

impl Verifier for SgxVerifier {
    fn tee(&self) -> Tee {
        Tee::Sgx
    }

    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
        verify_with(Tee::Sgx, evidence, collateral, now)
    }
}

/// Byte span of the JSON value of top-level `key` (an object) in `text`: Intel
/// PCS signs the exact bytes of the `tcbInfo` / `enclaveIdentity` value.
pub fn json_object_span<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let at = text.find(&needle)? + needle.len();
    let rest = &text[at..];
    let colon = rest.find(':')?;
    let after = &rest[colon + 1..];
    let start_rel = after.find('{')?;
    if !after[..start_rel].trim().is_empty() {
        return None;
    }
    let body = &after[start_rel..];
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, c) in body.char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&body[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Raw Intel PCS v4 responses, as fetched (the issuer chains come from the
/// HTTP headers `TCB-Info-Issuer-Chain` / `SGX-PCK-CRL-Issuer-Chain`).
#[derive(Clone, Debug, Default)]
pub struct PcsResponses {
    /// Body of `GET /tdx|sgx/certification/v4/tcb`: `{"tcbInfo":{...},"signature":"hex"}`.
    pub tcb_info_response: Option<String>,
    /// Body of `GET .../qe/identity`: `{"enclaveIdentity":{...},"signature":"hex"}`.
    pub qe_identity_response: Option<String>,
    /// PEM chain that signs TCB info and QE identity (Intel SGX TCB Signing, Root).
    pub tcb_info_issuer_chain: Option<String>,
    /// PEM chain of the PCK CRL issuer (Platform/Processor CA, Root).
    pub pck_crl_issuer_chain: Option<String>,
    /// DER CRL of the PCK CA.
    pub pck_crl: Option<Vec<u8>>,
    /// DER CRL of the Root CA.
    pub root_ca_crl: Option<Vec<u8>>,
}

impl PcsResponses {
    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.tcb_info_response.is_none()
            && self.qe_identity_response.is_none()
            && self.pck_crl.is_none()
            && self.root_ca_crl.is_none()
    }

    /// Builds dcap-qvl collateral: the signed body spans are cut out byte for byte.
    pub fn into_collateral(self, tee: Tee) -> Result<QuoteCollateralV3> {
        let missing = |what: &'static str| Error::MissingCollateral { tee, what };
        let tcb = self
            .tcb_info_response
            .ok_or(missing("the PCS TCB info response"))?;
        let qe = self
            .qe_identity_response
            .ok_or(missing("the PCS QE identity response"))?;
        let tcb_chain = self.tcb_info_issuer_chain.ok_or(missing(
            "the TCB info issuer chain (Intel SGX TCB Signing PEM)",
        ))?;
        let (tcb_info, tcb_info_signature) = split_signed(tee, &tcb, "tcbInfo")?;
        let (qe_identity, qe_identity_signature) = split_signed(tee, &qe, "enclaveIdentity")?;
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain: self
                .pck_crl_issuer_chain
                .ok_or(missing("the PCK CRL issuer chain PEM"))?,
            root_ca_crl: self.root_ca_crl.ok_or(missing("the Root CA CRL"))?,
            pck_crl: self.pck_crl.ok_or(missing("the PCK CRL"))?,
            tcb_info_issuer_chain: tcb_chain.clone(),
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: tcb_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }
}

fn split_signed(tee: Tee, text: &str, key: &str) -> Result<(String, Vec<u8>)> {
    let bad = |detail: String| Error::BadCollateral {
        tee,
        what: format!("PCS {key} response"),
        detail,
    };
    let body = json_object_span(text, key).ok_or_else(|| bad(format!("no {key:?} object")))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let sig = v
        .get("signature")
        .and_then(|s| s.as_str())
        .ok_or_else(|| bad("no \"signature\" string".into()))?;
    let sig = hex::decode(sig).map_err(|e| bad(format!("signature is not hex ({e})")))?;
    Ok((body.to_string(), sig))
}

/// Reads dcap-qvl's `QuoteCollateralV3` JSON in which CRLs and signatures are hex.
pub fn collateral_from_json(tee: Tee, text: &[u8]) -> Result<QuoteCollateralV3> {
    let bad = |detail: String| Error::BadCollateral {
        tee,
        what: "DCAP collateral JSON".into(),
        detail,
    };
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let s = |k: &str| -> Result<String> {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| bad(format!("missing string field {k:?}")))
    };
    let h = |k: &str| -> Result<Vec<u8>> {
        hex::decode(s(k)?).map_err(|e| bad(format!("field {k:?} is not hex ({e})")))
    };
    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain: s("pck_crl_issuer_chain")?,
        root_ca_crl: h("root_ca_crl")?,
        pck_crl: h("pck_crl")?,
        tcb_info_issuer_chain: s("tcb_info_issuer_chain")?,
        tcb_info: s("tcb_info")?,
        tcb_info_signature: h("tcb_info_signature")?,
        qe_identity_issuer_chain: s("qe_identity_issuer_chain")?,
        qe_identity: s("qe_identity")?,
        qe_identity_signature: h("qe_identity_signature")?,
        pck_certificate_chain: v
            .get("pck_certificate_chain")
            .and_then(|x| x.as_str())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests;
