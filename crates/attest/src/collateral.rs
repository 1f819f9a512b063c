//! Collateral: what a verifier needs beside the evidence, loaded from files.
//!
//! [`Collateral::from_paths`] takes files and directories and sorts what it
//! finds by content, not by name:
//! * X.509 certificates (PEM or DER): AMD VCEK/VLEK go to [`Collateral::certs`];
//!   a certificate with CN `cocoon sim root` goes to [`Collateral::sim_roots`];
//!   Intel TCB-signing and PCK CA chains become DCAP issuer chains. AMD
//!   ASK/ARK and the Intel root in the files are ignored: the roots that
//!   count ship inside this crate.
//! * dcap-qvl `QuoteCollateralV3` JSON (CRLs and signatures in hex).
//! * Raw Intel PCS responses (`{"tcbInfo":...}`, `{"enclaveIdentity":...}`)
//!   and DER CRLs.
//! * Anything else (evidence files, READMEs) is skipped.
//!
//! Optionally, [`crate::fetch::Fetcher`] adds the SEV-SNP VCEK from AMD KDS
//! and TDX/SGX collateral from Intel PCS (or a PCCS), through a cache whose
//! files this loader reads back (see docs/attestation.md).

use std::path::{Path, PathBuf};

use x509_cert::der::Decode;

use crate::dcap::{self, PcsResponses};
use crate::{x509, Error, Result, Tee};

/// Collateral for verification. Empty by default.
#[derive(Clone, Debug, Default)]
pub struct Collateral {
    /// DER certificates that may sign SNP reports (VCEK/VLEK). Candidates
    /// only: each must chain to a built-in AMD root.
    pub certs: Vec<Vec<u8>>,
    /// Intel DCAP collateral for TDX/SGX.
    pub dcap: Option<dcap_qvl::QuoteCollateralV3>,
    /// Override of the Intel SGX Root CA (DER); `None` uses the built-in production root.
    pub intel_root: Option<Vec<u8>>,
    /// Trusted sim root certificates (DER). Sim evidence is refused unless
    /// its root is listed here.
    pub sim_roots: Vec<Vec<u8>>,
}

/// CN of sim root certificates.
pub const SIM_ROOT_CN: &str = "cocoon sim root";

impl Collateral {
    /// Loads collateral from files and directories (directories are read one
    /// level deep, in name order).
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let mut c = Collateral::default();
        let mut pcs = PcsResponses::default();
        for p in paths {
            let p = p.as_ref();
            let meta = std::fs::metadata(p).map_err(|e| Error::io("read", p, e))?;
            let mut files: Vec<PathBuf> = if meta.is_dir() {
                std::fs::read_dir(p)
                    .map_err(|e| Error::io("read directory", p, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect()
            } else {
                vec![p.to_path_buf()]
            };
            files.sort();
            for f in files {
                let bytes = std::fs::read(&f).map_err(|e| Error::io("read", &f, e))?;
                c.add_bytes(&bytes, &mut pcs)?;
            }
        }
        if c.dcap.is_none() && !pcs.is_empty() {
            c.dcap = Some(pcs.into_collateral(Tee::Tdx)?);
        }
        Ok(c)
    }

    /// Adds one file's content, classified by what it is.
    fn add_bytes(&mut self, bytes: &[u8], pcs: &mut PcsResponses) -> Result<()> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Ok(());
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                return Ok(());
            };
            if v.get("tcb_info").is_some() && v.get("qe_identity").is_some() {
                self.dcap = Some(dcap::collateral_from_json(Tee::Tdx, bytes)?);
            } else if v.get("tcbInfo").is_some() {
                pcs.tcb_info_response = Some(text.to_string());
            } else if v.get("enclaveIdentity").is_some() {
                pcs.qe_identity_response = Some(text.to_string());
            }
            return Ok(());
        }
        if let Ok(certs) = x509::parse_any(Tee::Snp, "certificate", bytes) {
            let Some(first) = certs.first() else {
                return Ok(());
            };
            let cn = x509::common_name(first).unwrap_or_default();
            let text = || String::from_utf8_lossy(bytes).into_owned();
            if cn == "Intel SGX TCB Signing" {
                pcs.tcb_info_issuer_chain = Some(text());
            } else if cn.starts_with("Intel SGX PCK") {
                pcs.pck_crl_issuer_chain = Some(text());
            } else if cn.starts_with("Intel SGX Root CA") {
                // The built-in root is used; an explicit override is set in code only.
            } else {
                for cert in &certs {
                    let Ok(der) = x509_cert::der::Encode::to_der(cert) else {
                        continue;
                    };
                    if x509::common_name(cert).as_deref() == Some(SIM_ROOT_CN) {
                        self.sim_roots.push(der);
                    } else {
                        self.certs.push(der);
                    }
                }
            }
            return Ok(());
        }
        if let Ok(crl) =
            x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(bytes)
        {
            let issuer = crl.tbs_cert_list.issuer.to_string();
            if issuer.contains("CN=Intel SGX Root CA") {
                pcs.root_ca_crl = Some(bytes.to_vec());
            } else {
                pcs.pck_crl = Some(bytes.to_vec());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn sorts_a_mixed_directory() {
        let c = Collateral::from_paths(&[testdata::path("snp/trustee")]).unwrap();
        // test-vcek, two invalid VCEKs, the VLEK, and 3x3 AMD CA certs.
        assert_eq!(c.certs.len(), 4 + 9);
        assert!(c.dcap.is_none());
        assert!(c.sim_roots.is_empty());
    }

    #[test]
    fn reads_dcap_json_and_raw_pcs_responses() {
        let c = Collateral::from_paths(&[testdata::path("tdx/dcap-qvl/tdx_quote_collateral.json")])
            .unwrap();
        let d = c.dcap.unwrap();
        assert!(d.tcb_info.starts_with("{\"id\":\"TDX\""));
        assert_eq!(d.tcb_info_signature.len(), 64);

        let c = Collateral::from_paths(&[testdata::path("tdx/go-tdx-guest")]).unwrap();
        let d = c.dcap.unwrap();
        assert!(d.tcb_info.starts_with("{\"id\":\"TDX\""));
        assert!(d.tcb_info.ends_with('}'));
        assert!(d.qe_identity.starts_with("{\"id\":\"TD_QE\""));
        assert_eq!(d.qe_identity_signature.len(), 64);
        assert!(d.pck_crl_issuer_chain.contains("BEGIN CERTIFICATE"));
        assert_eq!(d.root_ca_crl.len(), 293);
    }

    #[test]
    fn missing_path_is_a_clear_error() {
        let e = Collateral::from_paths(&["/nonexistent/cocoon"]).unwrap_err();
        assert!(
            e.to_string().starts_with("read /nonexistent/cocoon: "),
            "{e}"
        );
    }
}
