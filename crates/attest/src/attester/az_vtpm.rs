//! Azure confidential VM (SEV-SNP behind the paravisor) evidence through the
//! vTPM at `/dev/tpmrm0`, with raw TPM 2.0 commands (no TSS library):
//!
//! 1. the HCL report from NV index `0x01400001` (`TPM2_NV_ReadPublic` for its
//!    size, then `TPM2_NV_Read` in chunks, authorised by the index itself
//!    with an empty password);
//! 2. the SHA-256 PCRs 0..23 (`TPM2_PCR_Read`, eight per call);
//! 3. `TPM2_Quote` by the attestation key at persistent handle `0x81000003`
//!    over those PCRs with `qualifyingData` = the report data, with the key's
//!    own scheme (RSASSA/SHA-256);
//! 4. a local check that SHA-256 of the PCRs read equals the quote's PCR
//!    digest (a PCR extended in between makes this fail: retry).
//!
//! The evidence is the v2 JSON envelope that [`crate::az_snp_vtpm`] verifies,
//! without the VCEK (Azure serves it from the instance metadata service,
//! which is not fetched here: give it as collateral).
//!
//! The HCL report is read as the paravisor last produced it; the report data
//! is bound through the TPM quote's nonce, as the verifier expects. (Writing
//! user data to NV index `0x01400002` to refresh the HCL report is not done.)

use std::io::{Read, Write};
use std::path::PathBuf;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::az_snp_vtpm::TpmsAttest;
use crate::{Attester, Error, Result, Tee};

/// Default TPM resource-manager device.
pub const TPM_DEVICE: &str = "/dev/tpmrm0";
/// NV index of the HCL report.
pub const HCL_REPORT_NV_INDEX: u32 = 0x0140_0001;
/// Persistent handle of the Azure attestation key.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// Bytes per `TPM2_NV_Read` (at most MAX_NV_BUFFER_SIZE of any TPM; 512 is
/// below every implementation's value).
pub const NV_CHUNK: u16 = 512;

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const CC_NV_READ: u32 = 0x0000_014E;
const CC_QUOTE: u32 = 0x0000_0158;
const CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
const CC_PCR_READ: u32 = 0x0000_017E;
const RS_PW: u32 = 0x4000_0009;
const ALG_SHA256: u16 = 0x000B;
const ALG_NULL: u16 = 0x0010;
const ALG_RSASSA: u16 = 0x0014;

/// Sends one marshalled TPM command and returns the response.
pub trait TpmTransport {
    /// One command/response exchange.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>>;
}

fn fail(detail: String) -> Error {
    Error::Attester {
        attester: "Azure vTPM",
        detail,
    }
}

/// A TPM character device (`/dev/tpmrm0`): write a command, read its response.
#[derive(Debug)]
pub struct DeviceTpm {
    path: PathBuf,
    file: std::fs::File,
}

impl DeviceTpm {
    /// Opens the device read-write.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| fail(format!("open {}: {e}", path.display())))?;
        Ok(DeviceTpm { path, file })
    }
}

impl TpmTransport for DeviceTpm {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>> {
        let io =
            |what: &str, e: std::io::Error| fail(format!("{what} {}: {e}", self.path.display()));
        self.file.write_all(command).map_err(|e| io("write", e))?;
        let mut buf = vec![0u8; 8192];
        let n = self.file.read(&mut buf).map_err(|e| io("read", e))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Marshals a command: header, handles, optional password session, parameters.
fn command(code: u32, handles: &[u32], password_session: bool, params: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(32 + params.len());
    let tag = if password_session {
        ST_SESSIONS
    } else {
        ST_NO_SESSIONS
    };
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&[0; 4]); // size, filled below
    c.extend_from_slice(&code.to_be_bytes());
    for h in handles {
        c.extend_from_slice(&h.to_be_bytes());
    }
    if password_session {
        // TPMS_AUTH_COMMAND: TPM_RS_PW, empty nonce, attributes 0, empty password.
        c.extend_from_slice(&9u32.to_be_bytes());
        c.extend_from_slice(&RS_PW.to_be_bytes());
        c.extend_from_slice(&[0, 0, 0, 0, 0]);
    }
    c.extend_from_slice(params);
    let len = c.len() as u32;
    c[2..6].copy_from_slice(&len.to_be_bytes());
    c
}

/// A response cursor. Never panics.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(fail("TPM response is truncated".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn tpm2b(&mut self) -> Result<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// Sends `cmd` and returns the response after the header (and, for session
/// commands, after the parameter size), checking the response code.
fn call(tpm: &mut dyn TpmTransport, name: &str, cmd: &[u8]) -> Result<Vec<u8>> {
    let resp = tpm.transact(cmd)?;
    let mut r = Rd(&resp);
    let tag = r.u16()?;
    let size = r.u32()? as usize;
    let rc = r.u32()?;
    if rc != 0 {
        return Err(fail(format!("{name} failed: TPM response code {rc:#x}")));
    }
    if size != resp.len() {
        return Err(fail(format!(
            "{name}: response size field {size}, got {} bytes",
            resp.len()
        )));
    }
    if tag == ST_SESSIONS {
        let psize = r.u32()? as usize;
        return Ok(r.take(psize)?.to_vec());
    }
    Ok(r.0.to_vec())
}

/// Reads a whole NV index (size from `TPM2_NV_ReadPublic`).
pub fn nv_read(tpm: &mut dyn TpmTransport, index: u32) -> Result<Vec<u8>> {
    let p = call(
        tpm,
        "TPM2_NV_ReadPublic",
        &command(CC_NV_READ_PUBLIC, &[index], false, &[]),
    )?;
    let mut r = Rd(&p);
    let public = r.tpm2b()?;
    let mut pr = Rd(public);
    pr.u32()?; // nvIndex
    pr.u16()?; // nameAlg
    pr.u32()?; // attributes
    pr.tpm2b()?; // authPolicy
    let size = pr.u16()?;
    let mut out = Vec::with_capacity(usize::from(size));
    let mut offset = 0u16;
    while offset < size {
        let n = NV_CHUNK.min(size - offset);
        let mut params = n.to_be_bytes().to_vec();
        params.extend_from_slice(&offset.to_be_bytes());
        let p = call(
            tpm,
            "TPM2_NV_Read",
            &command(CC_NV_READ, &[index, index], true, &params),
        )?;
        let data = Rd(&p).tpm2b()?;
        if data.len() != usize::from(n) {
            return Err(fail(format!(
                "TPM2_NV_Read returned {} bytes, asked {n}",
                data.len()
            )));
        }
        out.extend_from_slice(data);
        offset += n;
    }
    Ok(out)
}

/// TPML_PCR_SELECTION of the SHA-256 bank for the PCRs whose bits are set in `mask`.
fn sha256_selection(mask: u32) -> Vec<u8> {
    let mut s = 1u32.to_be_bytes().to_vec();
    s.extend_from_slice(&ALG_SHA256.to_be_bytes());
    s.push(3);
    s.extend_from_slice(&mask.to_le_bytes()[..3]);
    s
}

/// Reads SHA-256 PCRs 0..23.
pub fn pcr_read_all(tpm: &mut dyn TpmTransport) -> Result<Vec<Vec<u8>>> {
    let mut pcrs: Vec<Option<Vec<u8>>> = vec![None; 24];
    let mut want: u32 = 0x00FF_FFFF;
    while want != 0 {
        let p = call(
            tpm,
            "TPM2_PCR_Read",
            &command(CC_PCR_READ, &[], false, &sha256_selection(want)),
        )?;
        let mut r = Rd(&p);
        r.u32()?; // pcrUpdateCounter
        let mut got = Vec::new();
        for _ in 0..r.u32()? {
            let alg = r.u16()?;
            let bits = r.tpm2b_u8()?;
            if alg != ALG_SHA256 {
                continue;
            }
            for (i, b) in bits.iter().enumerate().take(3) {
                for bit in 0..8 {
                    if b & (1 << bit) != 0 {
                        got.push(i * 8 + bit);
                    }
                }
            }
        }
        let count = r.u32()? as usize;
        if count != got.len() || count == 0 {
            return Err(fail(format!(
                "TPM2_PCR_Read returned {count} digests for {} selected PCRs",
                got.len()
            )));
        }
        for i in got {
            let d = r.tpm2b()?;
            if d.len() != 32 || want & (1 << i) == 0 {
                return Err(fail(format!("TPM2_PCR_Read: unexpected PCR {i}")));
            }
            pcrs[i] = Some(d.to_vec());
            want &= !(1 << i);
        }
    }
    pcrs.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| fail("TPM2_PCR_Read left PCRs unread".into()))
}

impl Rd<'_> {
    /// A one-byte-length array (TPMS_PCR_SELECTION.pcrSelect).
    fn tpm2b_u8(&mut self) -> Result<&[u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
}

/// `TPM2_Quote` by the AK over SHA-256 PCRs 0..23 with `nonce`; returns the
/// marshalled TPMS_ATTEST and the RSASSA signature.
pub fn quote(tpm: &mut dyn TpmTransport, nonce: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let len = u16::try_from(nonce.len()).map_err(|_| fail("nonce too long".into()))?;
    let mut params = len.to_be_bytes().to_vec();
    params.extend_from_slice(nonce);
    params.extend_from_slice(&ALG_NULL.to_be_bytes()); // the key's own scheme
    params.extend_from_slice(&sha256_selection(0x00FF_FFFF));
    let p = call(
        tpm,
        "TPM2_Quote",
        &command(CC_QUOTE, &[AK_HANDLE], true, &params),
    )?;
    let mut r = Rd(&p);
    let attest = r.tpm2b()?.to_vec();
    let alg = r.u16()?;
    let hash = r.u16()?;
    if alg != ALG_RSASSA || hash != ALG_SHA256 {
        return Err(fail(format!(
            "TPM2_Quote signed with scheme {alg:#06x}/{hash:#06x}, expected RSASSA/SHA-256"
        )));
    }
    let sig = r.tpm2b()?.to_vec();
    Ok((attest, sig))
}

/// Collects the v2 evidence envelope for `report_data` over `tpm`.
pub fn collect_evidence(tpm: &mut dyn TpmTransport, report_data: &[u8]) -> Result<Vec<u8>> {
    if report_data.len() > 64 {
        return Err(Error::InvalidInput {
            what: "report data",
            detail: format!("{} bytes, at most 64 allowed", report_data.len()),
        });
    }
    let hcl = nv_read(tpm, HCL_REPORT_NV_INDEX)?;
    let pcrs = pcr_read_all(tpm)?;
    let (message, signature) = quote(tpm, report_data)?;
    let att = TpmsAttest::parse(&message)?;
    let mut h = Sha256::new();
    for p in &pcrs {
        h.update(p);
    }
    if h.finalize().as_slice() != att.pcr_digest.as_slice() {
        return Err(fail(
            "a PCR changed between TPM2_PCR_Read and TPM2_Quote; retry".into(),
        ));
    }
    let v = serde_json::json!({
        "version": 2,
        "tpm_quote": {
            "signature": hex::encode(&signature),
            "message": hex::encode(&message),
            "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
        },
        "hcl_report": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hcl),
    });
    serde_json::to_vec(&v).map_err(|e| fail(e.to_string()))
}

/// Whether the TPM at `device` answers `TPM2_NV_ReadPublic` for the HCL
/// report index (that is, this is an Azure confidential VM's vTPM).
pub fn has_hcl_report(device: &std::path::Path) -> bool {
    let Ok(mut tpm) = DeviceTpm::open(device) else {
        return false;
    };
    call(
        &mut tpm,
        "TPM2_NV_ReadPublic",
        &command(CC_NV_READ_PUBLIC, &[HCL_REPORT_NV_INDEX], false, &[]),
    )
    .is_ok()
}

/// The Azure vTPM attester over a TPM device (default [`TPM_DEVICE`]).
#[derive(Debug, Clone)]
pub struct AzVtpmAttester {
    device: PathBuf,
}

impl AzVtpmAttester {
    /// An attester over `device`.
    pub fn new(device: impl Into<PathBuf>) -> Self {
        AzVtpmAttester {
            device: device.into(),
        }
    }
}

impl Attester for AzVtpmAttester {
    fn tee(&self) -> Tee {
        Tee::AzSnpVtpm
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>> {
        let mut tpm = DeviceTpm::open(&self.device)?;
        collect_evidence(&mut tpm, report_data)
    }
}

#[cfg(test)]
mod tests;
