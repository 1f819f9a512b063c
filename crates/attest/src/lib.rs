//! cocoon attestation: evidence, verifiers and one normalized claim set.
//!
//! * [`Claims`]: the same fields for every TEE, serialisable to JSON.
//! * [`Verifier`]: evidence bytes + [`Collateral`] + verification time ->
//!   [`Claims`] or a precise [`Error`]. One module per TEE; [`verify`]
//!   dispatches on [`Tee`]. Verification time is always a parameter.
//! * [`Attester`]: makes evidence for given report data (sim, configfs-tsm,
//!   `/dev/sev-guest`, the CoCo guest API), with [`attester::detect`]
//!   picking the one present.
//! * [`binding`]: the KBS report-data binding and init-data binding.
//!
//! Format details live in `docs/attestation.md`.
// `unsafe` is denied everywhere; the one exception is the `/dev/sev-guest`
// ioctl call (`attester::sev_guest`), allowed there with a SAFETY comment.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod attester;
pub mod az_snp_vtpm;
pub mod binding;
pub mod claims;
pub mod collateral;
pub mod dcap;
pub mod error;
pub mod fetch;
pub mod sim;
pub mod snp;
mod time;
pub mod workload;
mod x509;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use attester::Attester;
pub use claims::{Claims, HexBytes, Tcb, TcbStatus};
pub use collateral::Collateral;
pub use error::{Error, Result};
pub use time::UnixTime;

/// The kinds of TEE evidence cocoon understands. Names follow the KBS
/// protocol's `tee` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// cocoon's software TEE: no protection, for tests and development.
    Sim,
    /// AMD SEV-SNP (bare metal or any VMM exposing the raw report).
    Snp,
    /// Intel TDX (quote v4/v5).
    Tdx,
    /// Intel SGX DCAP (quote v3).
    Sgx,
    /// Azure confidential VM with SEV-SNP behind the paravisor vTPM.
    AzSnpVtpm,
}

impl Tee {
    /// Every TEE, in a stable order.
    pub const ALL: [Tee; 5] = [Tee::Sim, Tee::Snp, Tee::Tdx, Tee::Sgx, Tee::AzSnpVtpm];

    /// The KBS protocol name (`sim`, `snp`, `tdx`, `sgx`, `az-snp-vtpm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sim => "sim",
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
            Tee::Sgx => "sgx",
            Tee::AzSnpVtpm => "az-snp-vtpm",
        }
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tee {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Tee::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::UnknownTee {
                name: s.to_string(),
            })
    }
}

/// Verifies one kind of evidence. Implementations never panic on any input.
pub trait Verifier: Send + Sync {
    /// The TEE this verifier handles.
    fn tee(&self) -> Tee;

    /// Verifies `evidence` against `collateral` at time `now` and returns the
    /// normalized claims, or the reason for refusal.
    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims>;
}

/// Decodes a hex argument (whitespace and a `0x` prefix allowed).
pub fn parse_hex(what: &'static str, s: &str) -> Result<Vec<u8>> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let t = t.strip_prefix("0x").unwrap_or(&t);
    hex::decode(t).map_err(|e| Error::InvalidInput {
        what,
        detail: format!("not hex ({e})"),
    })
}

impl Claims {
    /// Pretty JSON of the claims.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The verifier for `tee`.
pub fn verifier_for(tee: Tee) -> &'static dyn Verifier {
    match tee {
        Tee::Sim => &sim::SimVerifier,
        Tee::Snp => &snp::SnpVerifier,
        Tee::Tdx => &dcap::TdxVerifier,
        Tee::Sgx => &dcap::SgxVerifier,
        Tee::AzSnpVtpm => &az_snp_vtpm::AzSnpVtpmVerifier,
    }
}

/// Verifies `evidence` of kind `tee` at time `now`: the single entry point.
pub fn verify(tee: Tee, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
    verifier_for(tee).verify(evidence, collateral, now)
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Access to `../shared/testdata/evidence` (beside the repository).
    use std::path::PathBuf;

    /// Path of a file under the shared evidence directory.
    pub fn path(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/evidence")
            .join(rel)
    }

    /// Reads a file under the shared evidence directory.
    pub fn read(rel: &str) -> Vec<u8> {
        let p = path(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// A time from RFC 3339.
    pub fn at(s: &str) -> crate::UnixTime {
        crate::UnixTime::parse_rfc3339(s).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_names_round_trip() {
        for t in Tee::ALL {
            assert_eq!(t.as_str().parse::<Tee>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(verifier_for(t).tee(), t);
        }
        assert!("tpm".parse::<Tee>().is_err());
    }

    #[test]
    fn shared_testdata_resolves() {
        assert!(testdata::path("SOURCES.md").exists());
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A tiny deterministic PRNG for no-panic loops (xorshift64*).

    /// Deterministic generator.
    pub struct Rng(pub u64);

    impl Rng {
        /// Next 64 random bits.
        pub fn next(&mut self) -> u64 {
            let mut x = self.0 | 1;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform-ish in 0..n (n > 0), 0 when n == 0.
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        /// `n` random bytes.
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }
}
