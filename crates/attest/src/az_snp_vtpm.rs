//! Azure confidential VM with SEV-SNP behind the paravisor vTPM.
//!
//! Evidence is a JSON envelope holding the HCL report (SNP report + runtime
//! data), the TPM quote, and optionally the VCEK. Checks:
//! 1. the SNP report inside the HCL report verifies (see [`crate::snp`]);
//! 2. SNP `report_data[0..32]` == SHA-256(HCL variable data), rest zero;
//! 3. the attestation key `HCLAkPub` (RSA JWK) is taken from that data;
//! 4. the TPM quote (TPMS_ATTEST) is signed by it (RSASSA-PKCS1-v1_5/SHA-256);
//! 5. its pcrDigest == SHA-256 of the selected SHA-256 PCRs given.
//!
//! The claims' `report_data` is the quote's `extraData` (the verifier's
//! nonce): compare it with [`Claims::expect_report_data`].
//!
//! Accepted envelopes: `{"version":1|2,"tpm_quote":{"signature":hex,"message":hex,"pcrs":[hex]},
//! "hcl_report":base64url,"vcek":base64url DER}` and Trustee's v0 form
//! `{"quote":{...byte arrays...},"report":[bytes],"vcek":"PEM"}`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::{snp, x509, Collateral, Error, Result, Tee, UnixTime, Verifier};

const TEE: Tee = Tee::AzSnpVtpm;

/// Offset of the SNP report inside an HCL report.
pub const HCL_SNP_OFFSET: usize = 0x20;
/// Offset of the runtime-data header.
pub const HCL_RUNTIME_HEADER: usize = 0x4C0;
/// Offset of the variable data (JSON).
pub const HCL_VAR_DATA: usize = 0x4D4;

/// A parsed HCL report.
#[derive(Clone, Debug)]
pub struct HclReport {
    /// The raw SNP report (1184 bytes).
    pub snp_report: Vec<u8>,
    /// Runtime data report type (2 = SNP).
    pub report_type: u32,
    /// Hash type (1 = SHA-256).
    pub hash_type: u32,
    /// The variable data (JSON text) whose hash is in the SNP report data.
    pub var_data: Vec<u8>,
}

fn u32le(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl HclReport {
    /// Parses an HCL report. Never panics.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HCL_VAR_DATA || &b[..4] != b"HCLA" {
            return Err(Error::malformed(
                TEE,
                "HCL report must start with \"HCLA\" and be at least 0x4D4 bytes",
            ));
        }
        let report_type = u32le(b, HCL_RUNTIME_HEADER + 8).unwrap_or(0);
        let hash_type = u32le(b, HCL_RUNTIME_HEADER + 12).unwrap_or(0);
        let size = u32le(b, HCL_RUNTIME_HEADER + 16).unwrap_or(0) as usize;
        if report_type != 2 {
            return Err(Error::malformed(
                TEE,
                format!("HCL report type {report_type} is not SEV-SNP (2)"),
            ));
        }
        if hash_type != 1 {
            return Err(Error::malformed(
                TEE,
                format!("HCL hash type {hash_type} is not SHA-256 (1)"),
            ));
        }
        let var_data = b
            .get(HCL_VAR_DATA..HCL_VAR_DATA.saturating_add(size))
            .ok_or_else(|| {
                Error::malformed(
                    TEE,
                    format!("HCL variable data size {size} exceeds the report"),
                )
            })?
            .to_vec();
        Ok(HclReport {
            snp_report: b[HCL_SNP_OFFSET..HCL_SNP_OFFSET + snp::REPORT_LEN].to_vec(),
            report_type,
            hash_type,
            var_data,
        })
    }

    /// The RSA attestation key `HCLAkPub` from the variable data.
    pub fn ak_pub(&self) -> Result<rsa::PublicKey> {
        let bad = |d: &str| Error::malformed(TEE, format!("cannot get HCLAkPub: {d}"));
        let v: serde_json::Value =
            serde_json::from_slice(&self.var_data).map_err(|_| bad("variable data is not JSON"))?;
        let keys = v
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| bad("no \"keys\" array"))?;
        let jwk = keys
            .iter()
            .find(|k| k.get("kid").and_then(|x| x.as_str()) == Some("HCLAkPub"))
            .ok_or_else(|| bad("no key with kid HCLAkPub"))?;
        let field = |name: &str| -> Result<Vec<u8>> {
            let s = jwk
                .get(name)
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad("JWK lacks n or e"))?;
            b64url(s).ok_or_else(|| bad("JWK n or e is not base64url"))
        };
        let n = rsa::BoxedUint::from_be_slice_vartime(&field("n")?);
        let e = rsa::BoxedUint::from_be_slice_vartime(&field("e")?);
        rsa::PublicKey::new(n, e).map_err(|_| bad("not a valid RSA key"))
    }
}

/// A TPM2 quote as sent in the evidence.
#[derive(Clone, Debug, Default)]
pub struct TpmQuote {
    /// Marshalled TPMS_ATTEST.
    pub message: Vec<u8>,
    /// RSASSA-PKCS1-v1_5 signature over `message`.
    pub signature: Vec<u8>,
    /// PCR values of the SHA-256 bank, index 0 first.
    pub pcrs: Vec<Vec<u8>>,
}

/// The parts of a TPMS_ATTEST quote that are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmsAttest {
    /// extraData: the verifier's nonce.
    pub extra_data: Vec<u8>,
    /// Selected PCRs per bank: (hash algorithm, indexes).
    pub selection: Vec<(u16, Vec<usize>)>,
    /// The PCR digest.
    pub pcr_digest: Vec<u8>,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn tpm2b(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

impl TpmsAttest {
    /// Parses a marshalled TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE. Never panics.
    pub fn parse(b: &[u8]) -> Result<Self> {
        Self::parse_inner(b).ok_or_else(|| {
            Error::malformed(
                TEE,
                "TPM quote message is not a TPMS_ATTEST quote structure",
            )
        })
    }

    fn parse_inner(b: &[u8]) -> Option<Self> {
        let mut c = Cursor(b);
        if c.u32()? != 0xff54_4347 || c.u16()? != 0x8018 {
            return None;
        }
        c.tpm2b()?; // qualifiedSigner
        let extra_data = c.tpm2b()?.to_vec();
        c.take(17)?; // clockInfo
        c.take(8)?; // firmwareVersion
        let count = c.u32()?;
        if count > 16 {
            return None;
        }
        let mut selection = Vec::new();
        for _ in 0..count {
            let alg = c.u16()?;
            let size = c.u8()? as usize;
            let bits = c.take(size)?;
            let idx = (0..size * 8)
                .filter(|i| bits[i / 8] & (1 << (i % 8)) != 0)
                .collect();
            selection.push((alg, idx));
        }
        let pcr_digest = c.tpm2b()?.to_vec();
        Some(TpmsAttest {
            extra_data,
            selection,
            pcr_digest,
        })
    }
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(s)
                .ok()
        })
}

/// Bytes from a JSON value: an array of numbers, or a string in `hex` or base64(url).
fn json_bytes(v: &serde_json::Value, hex_first: bool) -> Option<Vec<u8>> {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect(),
        serde_json::Value::String(s) if s.starts_with("-----BEGIN") => Some(s.as_bytes().to_vec()),
        serde_json::Value::String(s) => {
            if hex_first {
                hex::decode(s).ok().or_else(|| b64url(s))
            } else {
                b64url(s).or_else(|| hex::decode(s).ok())
            }
        }
        _ => None,
    }
}

/// Decoded evidence envelope.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The raw HCL report.
    pub hcl_report: Vec<u8>,
    /// The TPM quote.
    pub quote: TpmQuote,
    /// VCEK (DER or PEM) if carried in the evidence.
    pub vcek: Option<Vec<u8>>,
}

impl Evidence {
    /// Parses an envelope (any accepted form). Never panics.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let bad = |d: &str| Error::malformed(TEE, d.to_string());
        let v: serde_json::Value =
            serde_json::from_slice(b).map_err(|_| bad("evidence is not a JSON envelope"))?;
        let hcl = v
            .get("hcl_report")
            .or_else(|| v.get("report"))
            .and_then(|x| json_bytes(x, false))
            .ok_or_else(|| bad("no hcl_report (base64url) or report (bytes)"))?;
        let q = v
            .get("tpm_quote")
            .or_else(|| v.get("quote"))
            .ok_or_else(|| bad("no tpm_quote"))?;
        let quote = Self::parse_quote_value(q)?;
        let vcek = v.get("vcek").and_then(|x| json_bytes(x, false));
        Ok(Evidence {
            hcl_report: hcl,
            quote,
            vcek,
        })
    }

    /// Parses the TPM quote JSON (`{"signature","message","pcrs"}`, hex or byte arrays).
    pub fn parse_quote(b: &[u8]) -> Result<TpmQuote> {
        let v: serde_json::Value = serde_json::from_slice(b)
            .map_err(|_| Error::malformed(TEE, "TPM quote is not JSON"))?;
        Self::parse_quote_value(&v)
    }

    fn parse_quote_value(q: &serde_json::Value) -> Result<TpmQuote> {
        let bad = |d: &str| Error::malformed(TEE, d.to_string());
        let message = q
            .get("message")
            .and_then(|x| json_bytes(x, true))
            .ok_or_else(|| bad("tpm_quote.message missing or not hex/bytes"))?;
        let signature = q
            .get("signature")
            .and_then(|x| json_bytes(x, true))
            .ok_or_else(|| bad("tpm_quote.signature missing or not hex/bytes"))?;
        let pcrs = q
            .get("pcrs")
            .and_then(|x| x.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|p| json_bytes(p, true))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad("tpm_quote.pcrs missing or not a list of hex/bytes"))?;
        Ok(TpmQuote {
            message,
            signature,
            pcrs,
        })
    }

    /// Builds the v2 JSON envelope from separate parts (HCL report bytes,
    /// TPM quote JSON, optional VCEK).
    pub fn envelope(
        hcl_report: &[u8],
        tpm_quote_json: &[u8],
        vcek: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let q: serde_json::Value = serde_json::from_slice(tpm_quote_json)
            .map_err(|_| Error::malformed(TEE, "TPM quote is not JSON"))?;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut v = serde_json::json!({
            "version": 2,
            "tpm_quote": q,
            "hcl_report": enc.encode(hcl_report),
        });
        if let Some(c) = vcek {
            v["vcek"] = enc.encode(c).into();
        }
        serde_json::to_vec(&v).map_err(|e| Error::malformed(TEE, e.to_string()))
    }
}

/// Verifies the TPM quote with the AK and returns the parsed TPMS_ATTEST.
pub fn verify_quote(quote: &TpmQuote, ak: &rsa::PublicKey) -> Result<TpmsAttest> {
    use rsa::signature::Verifier as _;
    let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(ak.clone());
    let sig = rsa::pkcs1v15::Signature::try_from(quote.signature.as_slice()).map_err(|_| {
        Error::Signature {
            tee: TEE,
            what: "TPM quote",
        }
    })?;
    vk.verify(&quote.message, &sig)
        .map_err(|_| Error::Signature {
            tee: TEE,
            what: "TPM quote",
        })?;
    let att = TpmsAttest::parse(&quote.message)?;
    let mut h = Sha256::new();
    for (alg, idx) in &att.selection {
        if *alg != 0x000B {
            return Err(Error::malformed(
                TEE,
                format!(
                    "TPM quote selects PCR bank {alg:#06x}; only SHA-256 (0x000b) is supported"
                ),
            ));
        }
        for i in idx {
            let pcr = quote.pcrs.get(*i).ok_or_else(|| {
                Error::malformed(
                    TEE,
                    format!("TPM quote selects PCR {i}, which is not given"),
                )
            })?;
            h.update(pcr);
        }
    }
    let digest = h.finalize();
    if digest.as_slice() != att.pcr_digest.as_slice() {
        return Err(Error::Mismatch {
            tee: TEE,
            field: "PCR digest",
            evidence: hex::encode(digest),
            certified: hex::encode(&att.pcr_digest),
        });
    }
    Ok(att)
}

/// Verifies decoded evidence with the given VCEK candidates (DER) at `now`.
pub fn verify_evidence(ev: &Evidence, certs: &[Vec<u8>], now: UnixTime) -> Result<Claims> {
    let hcl = HclReport::parse(&ev.hcl_report)?;
    let mut certs: Vec<Vec<u8>> = certs.to_vec();
    if let Some(v) = &ev.vcek {
        for c in x509::parse_any(TEE, "vcek", v)? {
            if let Ok(der) = x509_cert::der::Encode::to_der(&c) {
                certs.push(der);
            }
        }
    }
    let mut claims = snp::verify_report(&hcl.snp_report, &certs, now).map_err(retag)?;
    let digest = Sha256::digest(&hcl.var_data);
    let rd = &claims.report_data.0;
    if rd.len() != 64 || rd[..32] != digest[..] || rd[32..].iter().any(|b| *b != 0) {
        return Err(Error::Mismatch {
            tee: TEE,
            field: "HCL variable data digest (SNP report data)",
            evidence: hex::encode(digest),
            certified: hex::encode(rd),
        });
    }
    let ak = hcl.ak_pub()?;
    let att = verify_quote(&ev.quote, &ak)?;
    claims.tee = TEE;
    claims
        .measurements
        .insert("snp_report_data".into(), claims.report_data.clone());
    // Only PCRs the signed quote selects are covered by its PCR digest; any
    // other value in the envelope is unauthenticated and is not a claim.
    for i in selected_pcrs(&att) {
        if let Some(p) = ev.quote.pcrs.get(i) {
            claims
                .measurements
                .insert(format!("pcr{i:02}"), p.clone().into());
        }
    }
    claims.report_data = att.extra_data.into();
    Ok(claims)
}

/// The SHA-256 PCR indexes a quote selects, sorted and deduplicated.
fn selected_pcrs(att: &TpmsAttest) -> std::collections::BTreeSet<usize> {
    att.selection
        .iter()
        .filter(|(alg, _)| *alg == 0x000B)
        .flat_map(|(_, idx)| idx.iter().copied())
        .collect()
}

/// Errors from the inner SNP verification are reported as az-snp-vtpm.
fn retag(e: Error) -> Error {
    match e {
        Error::Malformed { detail, .. } => Error::Malformed { tee: TEE, detail },
        Error::Signature { what, .. } => Error::Signature { tee: TEE, what },
        Error::Chain { detail, .. } => Error::Chain { tee: TEE, detail },
        Error::Mismatch {
            field,
            evidence,
            certified,
            ..
        } => Error::Mismatch {
            tee: TEE,
            field,
            evidence,
            certified,
        },
        other => other,
    }
}

/// The Azure vTPM (SNP) verifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct AzSnpVtpmVerifier;

impl Verifier for AzSnpVtpmVerifier {
    fn tee(&self) -> Tee {
        TEE
    }

    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
        let ev = Evidence::parse(evidence)?;
        verify_evidence(&ev, &collateral.certs, now)
    }
}

#[cfg(test)]
mod tests;
