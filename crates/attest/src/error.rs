//! Typed errors. Each message says what failed, on which input, and what to do.

use std::path::PathBuf;

use crate::Tee;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make attestation fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The evidence bytes could not be parsed.
    #[error("{tee} evidence is malformed: {detail}; pass the evidence exactly as the attester produced it")]
    Malformed {
        /// The TEE whose parser refused the input.
        tee: Tee,
        /// What was wrong.
        detail: String,
    },
    /// The evidence uses a format version this verifier does not know.
    #[error("{tee} evidence has unsupported version {version} (supported: {supported}); upgrade cocoon or check the evidence type")]
    UnsupportedVersion {
        /// The TEE.
        tee: Tee,
        /// The version found in the evidence.
        version: u32,
        /// The versions this build understands.
        supported: &'static str,
    },
    /// Verification needs collateral that was not supplied.
    #[error("{tee} verification needs {what}, which was not given; pass it with --collateral (file or directory)")]
    MissingCollateral {
        /// The TEE.
        tee: Tee,
        /// The missing item.
        what: &'static str,
    },
    /// Collateral was supplied but could not be used.
    #[error("{tee} collateral {what} is unusable: {detail}")]
    BadCollateral {
        /// The TEE.
        tee: Tee,
        /// Which collateral item.
        what: String,
        /// Why.
        detail: String,
    },
    /// A signature over the evidence (or a part of it) does not verify.
    #[error("{tee} {what} signature does not verify: the evidence was altered or signed by another key; refuse it")]
    Signature {
        /// The TEE.
        tee: Tee,
        /// What was signed (e.g. "report", "TPM quote").
        what: &'static str,
    },
    /// A certificate chain does not lead to a trusted root.
    #[error("{tee} certificate chain does not verify: {detail}")]
    Chain {
        /// The TEE.
        tee: Tee,
        /// Which link failed and why.
        detail: String,
    },
    /// A certificate or collateral item is not valid at the verification time.
    #[error("{tee} {what} is not valid at {now} (valid {not_before} to {not_after}); refresh the collateral or check the --now time")]
    Expired {
        /// The TEE.
        tee: Tee,
        /// The item (e.g. a certificate subject).
        what: String,
        /// The verification instant.
        now: crate::UnixTime,
        /// Start of validity.
        not_before: crate::UnixTime,
        /// End of validity.
        not_after: crate::UnixTime,
    },
    /// A field of the evidence disagrees with what its signer certifies.
    #[error("{tee} {field} mismatch: evidence says {evidence}, certificate says {certified}; the report was not made on the certified platform/TCB")]
    Mismatch {
        /// The TEE.
        tee: Tee,
        /// The field.
        field: &'static str,
        /// The value in the evidence.
        evidence: String,
        /// The value in the certificate or collateral.
        certified: String,
    },
    /// The TCB could not be evaluated to an acceptable level.
    #[error("{tee} TCB refused: {detail}")]
    Tcb {
        /// The TEE.
        tee: Tee,
        /// Why (e.g. no matching TCB level, revoked).
        detail: String,
    },
    /// Intel DCAP quote verification failed (quote, PCK chain, CRLs, TCB info, QE identity).
    #[error("{tee} quote verification failed: {detail}")]
    Dcap {
        /// The TEE.
        tee: Tee,
        /// The verifier's reason, outermost first.
        detail: String,
    },
    /// The report data in the evidence is not the expected binding.
    #[error("{what} does not match: expected {expected}, evidence has {found}; the evidence was made for another nonce or key (replay or relay)")]
    Binding {
        /// Which binding (report data, init data).
        what: &'static str,
        /// Expected value (hex).
        expected: String,
        /// Value in the evidence (hex).
        found: String,
    },
    /// A verification time string could not be read.
    #[error("cannot read time {input:?}: give an RFC 3339 instant such as 2024-01-01T00:00:00Z")]
    BadTime {
        /// The input.
        input: String,
    },
    /// An unknown TEE name.
    #[error("unknown TEE {name:?}: use one of sim, snp, tdx, sgx, az-snp-vtpm")]
    UnknownTee {
        /// The name given.
        name: String,
    },
    /// An input value was unusable (wrong length, bad hex).
    #[error("invalid {what}: {detail}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation ("read", "write", "create directory").
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An attester could not produce evidence.
    #[error("{attester} attester failed: {detail}")]
    Attester {
        /// The attester.
        attester: &'static str,
        /// Why.
        detail: String,
    },
    /// Collateral could not be fetched (no network, or the service refused).
    #[error("could not fetch collateral from {url}: {detail}; with no network, pass the collateral files with --collateral DIR instead")]
    Fetch {
        /// The URL (or URLs) tried.
        url: String,
        /// Why.
        detail: String,
    },
    /// No attester is available on this machine.
    #[error("no TEE found: none of {tried} is present; run inside a TEE, or use the sim TEE for testing (`cocoon sim init`)")]
    NoTee {
        /// What was probed.
        tried: String,
    },
}

impl Error {
    pub(crate) fn malformed(tee: Tee, detail: impl Into<String>) -> Self {
        Error::Malformed {
            tee,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UnixTime;

    #[test]
    fn messages_say_what_where_and_what_to_do() {
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::malformed(Tee::Snp, "report is 12 bytes, expected 1184"),
                "snp evidence is malformed: report is 12 bytes, expected 1184; pass the evidence exactly as the attester produced it",
            ),
            (
                Error::UnsupportedVersion { tee: Tee::Snp, version: 9, supported: "2, 3" },
                "snp evidence has unsupported version 9 (supported: 2, 3); upgrade cocoon or check the evidence type",
            ),
            (
                Error::MissingCollateral { tee: Tee::Snp, what: "the VCEK or VLEK certificate" },
                "snp verification needs the VCEK or VLEK certificate, which was not given; pass it with --collateral (file or directory)",
            ),
            (
                Error::Signature { tee: Tee::Sim, what: "report" },
                "sim report signature does not verify: the evidence was altered or signed by another key; refuse it",
            ),
            (
                Error::Expired {
                    tee: Tee::Snp,
                    what: "certificate CN=SEV-VLEK".into(),
                    now: UnixTime(0),
                    not_before: UnixTime(86_400),
                    not_after: UnixTime(172_800),
                },
                "snp certificate CN=SEV-VLEK is not valid at 1970-01-01T00:00:00Z (valid 1970-01-02T00:00:00Z to 1970-01-03T00:00:00Z); refresh the collateral or check the --now time",
            ),
            (
                Error::Mismatch { tee: Tee::Snp, field: "reported TCB", evidence: "a".into(), certified: "b".into() },
                "snp reported TCB mismatch: evidence says a, certificate says b; the report was not made on the certified platform/TCB",
            ),
            (
                Error::Binding { what: "report data", expected: "00".into(), found: "01".into() },
                "report data does not match: expected 00, evidence has 01; the evidence was made for another nonce or key (replay or relay)",
            ),
            (
                Error::UnknownTee { name: "foo".into() },
                "unknown TEE \"foo\": use one of sim, snp, tdx, sgx, az-snp-vtpm",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
