//! One normalized claim set for every TEE, so a policy reads the same
//! whatever the hardware.
//!
//! | claim | sim | snp / az-snp-vtpm | tdx | sgx |
//! | --- | --- | --- | --- | --- |
//! | `launch_measurement` | measurement | MEASUREMENT | MRTD | MRENCLAVE |
//! | `init_data` | host_data | HOST_DATA | MRCONFIGID | CONFIGID |
//! | `report_data` | report_data | REPORT_DATA (az: TPM nonce) | REPORTDATA | REPORTDATA |
//! | `signer` | root key digest | ID_KEY_DIGEST | MRSIGNERSEAM | MRSIGNER |

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Tee;

/// Bytes that serialize as lowercase hex.
#[derive(Clone, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl From<&[u8]> for HexBytes {
    fn from(b: &[u8]) -> Self {
        HexBytes(b.to_vec())
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(b: Vec<u8>) -> Self {
        HexBytes(b)
    }
}

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s)
            .map(HexBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// TCB status, with Intel's names; SNP and sim have no TCB-info service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched, but software hardening is needed (see advisories).
    SWHardeningNeeded,
    /// Platform configuration is needed.
    ConfigurationNeeded,
    /// Both configuration and software hardening are needed.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is out of date.
    OutOfDate,
    /// Out of date and configuration needed.
    OutOfDateConfigurationNeeded,
    /// TD 1.5: relaunch the TD to pick up a module update.
    TDRelaunchAdvised,
    /// TD 1.5: relaunch advised and configuration needed.
    TDRelaunchAdvisedConfigurationNeeded,
    /// The TCB was certified by the vendor key for exactly the reported SVNs
    /// (SNP: the VCEK/VLEK carries the TCB), but no "latest TCB" was
    /// consulted: compare `svn` in policy.
    Certified,
    /// No hardware TCB at all (sim).
    Simulated,
}

impl TcbStatus {
    /// Maps Intel's status string (as in TCB info JSON).
    pub fn from_intel(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "TDRelaunchAdvised" => TcbStatus::TDRelaunchAdvised,
            "TDRelaunchAdvisedConfigurationNeeded" => {
                TcbStatus::TDRelaunchAdvisedConfigurationNeeded
            }
            _ => return None,
        })
    }
}

/// TCB verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    /// The status.
    pub status: TcbStatus,
    /// Security advisory ids that apply (Intel `INTEL-SA-*`).
    pub advisory_ids: Vec<String>,
}

/// The normalized claims of one verified piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: Tee,
    /// True when the TEE allows a debugger/host to read guest memory.
    /// Always true for sim.
    pub debug: bool,
    /// TCB status and advisories.
    pub tcb: Tcb,
    /// The launch measurement (SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE).
    pub launch_measurement: HexBytes,
    /// Init data bound at launch (SNP HOST_DATA, TDX MRCONFIGID, SGX CONFIGID, sim host_data).
    pub init_data: HexBytes,
    /// The report data (64 bytes on hardware; for az-snp-vtpm the TPM quote nonce).
    pub report_data: HexBytes,
    /// The signer of the launched image, where the TEE has one.
    pub signer: Option<HexBytes>,
    /// Security version numbers by name (e.g. `guest_svn`, `tcb.snp`, `isv_svn`).
    pub svn: BTreeMap<String, u64>,
    /// Platform identifiers by name (e.g. `chip_id`, `fmspc`, `product`).
    pub platform: BTreeMap<String, String>,
    /// Other measurements by name (TDX RTMRs, TPM PCRs, SNP policy).
    pub measurements: BTreeMap<String, HexBytes>,
}

impl Claims {
    /// True when `expected` equals the claimed report data after zero-padding
    /// both to 64 bytes (the KBS protocol's convention).
    pub fn report_data_matches(&self, expected: &[u8]) -> bool {
        pad64(&self.report_data.0) == pad64(expected)
    }

    /// Fails with [`crate::Error::Binding`] unless the report data matches `expected`.
    pub fn expect_report_data(&self, expected: &[u8]) -> crate::Result<()> {
        if self.report_data_matches(expected) {
            Ok(())
        } else {
            Err(crate::Error::Binding {
                what: "report data",
                expected: hex::encode(expected),
                found: hex::encode(&self.report_data.0),
            })
        }
    }

    /// Fails with [`crate::Error::Binding`] unless the init data equals
    /// `expected` zero-padded to the claim's length (HOST_DATA 32, MRCONFIGID 48).
    pub fn expect_init_data(&self, expected: &[u8]) -> crate::Result<()> {
        let have = &self.init_data.0;
        let ok = expected.len() <= have.len()
            && have[..expected.len()] == *expected
            && have[expected.len()..].iter().all(|b| *b == 0);
        if ok {
            Ok(())
        } else {
            Err(crate::Error::Binding {
                what: "init data",
                expected: hex::encode(expected),
                found: hex::encode(have),
            })
        }
    }
}

fn pad64(b: &[u8]) -> Option<[u8; 64]> {
    if b.len() > 64 {
        return None;
    }
    let mut out = [0u8; 64];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Claims {
        Claims {
            tee: Tee::Sim,
            debug: true,
            tcb: Tcb {
                status: TcbStatus::Simulated,
                advisory_ids: vec![],
            },
            launch_measurement: vec![1u8; 48].into(),
            init_data: vec![2u8; 32].into(),
            report_data: vec![3u8; 64].into(),
            signer: None,
            svn: BTreeMap::new(),
            platform: BTreeMap::new(),
            measurements: BTreeMap::new(),
        }
    }

    #[test]
    fn json_shape_is_stable() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["tee"], "sim");
        assert_eq!(v["debug"], true);
        assert_eq!(v["tcb"]["status"], "Simulated");
        assert_eq!(v["init_data"], hex::encode([2u8; 32]));
        let back: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn report_data_compares_zero_padded() {
        let mut c = sample();
        c.report_data = b"challenge".to_vec().into();
        assert!(c.report_data_matches(b"challenge"));
        assert!(c.report_data_matches(&pad64(b"challenge").unwrap()));
        assert!(!c.report_data_matches(b"challengf"));
        assert!(!c.report_data_matches(&[0u8; 65]));
        let e = c.expect_report_data(b"x").unwrap_err().to_string();
        assert!(
            e.starts_with("report data does not match: expected 78,"),
            "{e}"
        );
    }

    #[test]
    fn init_data_compares_zero_padded() {
        let c = sample();
        assert!(c.expect_init_data(&[2u8; 32]).is_ok());
        assert!(c.expect_init_data(&[2u8; 31]).is_err());
        assert!(c.expect_init_data(&[2u8; 33]).is_err());
    }
}
