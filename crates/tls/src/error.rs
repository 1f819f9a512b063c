//! Typed errors: one precise line each, saying what failed and why it
//! matters, so that a client can print it as the reason for refusal.

use cocoon_attest::{Tee, UnixTime};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make attested TLS fail: making a certificate,
/// verifying one, or connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The certificate is not DER X.509 that this crate can read.
    #[error("the endpoint's certificate cannot be read: {detail}")]
    BadCertificate {
        /// What was wrong.
        detail: String,
    },
    /// The certificate has no evidence extension: an ordinary TLS certificate.
    #[error("the endpoint's certificate is not an attested certificate: it has no evidence extension (OID 2.23.133.5.4.9), so nothing says its key lives in a TEE")]
    NotAttested,
    /// The certificate is outside its validity period at the verification time.
    #[error("the endpoint's certificate is not valid at {now} (valid {not_before} to {not_after}); it is stale or replayed, or a clock is wrong")]
    Validity {
        /// The verification instant.
        now: UnixTime,
        /// Start of validity.
        not_before: UnixTime,
        /// End of validity.
        not_after: UnixTime,
    },
    /// The evidence extension (CBOR) or the claims inside it are malformed.
    #[error("the certificate's evidence extension is malformed: {detail}")]
    MalformedExtension {
        /// What was wrong.
        detail: String,
    },
    /// The CBOR tag names evidence this crate does not verify.
    #[error("the certificate's evidence has CBOR tag {tag:#x}, which names no TEE cocoon verifies (docs/tls.md lists the tags)")]
    UnknownTag {
        /// The tag found.
        tag: u64,
    },
    /// The CBOR tag says one TEE, the verified evidence another.
    #[error("the certificate's evidence tag says {tagged} but the evidence is {found} evidence")]
    TagMismatch {
        /// The TEE the tag names.
        tagged: Tee,
        /// The TEE of the verified evidence.
        found: Tee,
    },
    /// The certificate's self-signature does not verify.
    #[error("the endpoint's certificate signature does not verify: {detail}; the certificate was altered after it was made")]
    Signature {
        /// Why.
        detail: String,
    },
    /// The claims bind another public key than the certificate's.
    #[error("the evidence binds public key sha256:{claimed} but the certificate's key is sha256:{actual}; the evidence was made for another key (spliced or relayed)")]
    PublicKeyHash {
        /// SHA-256 of the key in the claims (hex).
        claimed: String,
        /// SHA-256 of the certificate's SubjectPublicKeyInfo (hex).
        actual: String,
    },
    /// The evidence itself was refused (signature, chain, collateral, TCB).
    #[error("the endpoint's evidence is refused: {0}")]
    Evidence(cocoon_attest::Error),
    /// The evidence comes from the sim TEE, which was not allowed.
    #[error("the endpoint runs on the sim TEE, which gives no protection; sim evidence is refused unless explicitly allowed (development only)")]
    SimNotAllowed,
    /// The hardware TEE runs in debug mode.
    #[error(
        "the endpoint's {tee} TEE runs in debug mode, so the host can read its memory; refused"
    )]
    Debug {
        /// The TEE.
        tee: Tee,
    },
    /// The evidence's report data is not SHA-256 of the certificate's claims.
    #[error("the evidence's report data is {found}, not SHA-256 of the certificate's claims ({expected}); the evidence was made for other claims (tampered or spliced)")]
    ReportData {
        /// SHA-256 of the claims, zero-padded (hex).
        expected: String,
        /// The report data in the evidence (hex).
        found: String,
    },
    /// The init-data claim cannot be read.
    #[error("the certificate's init-data claim is unusable: {detail}")]
    BadInitData {
        /// Why.
        detail: String,
    },
    /// The TEE cannot bind init data at launch, so the workload is unknown.
    #[error("{tee} evidence binds no init data at launch, so the endpoint's workload cannot be checked; refused")]
    InitDataUnbound {
        /// The TEE.
        tee: Tee,
    },
    /// The init data in the certificate is not what the platform bound at launch.
    #[error("the certificate claims init data with digest {claimed}, but the platform bound {bound} at launch; the endpoint runs another workload than it claims")]
    InitDataDigest {
        /// SHA-256 of the claimed init data (hex).
        claimed: String,
        /// The launch-bound init data field (hex).
        bound: String,
    },
    /// The attested workload is not the expected one.
    #[error(
        "the endpoint's evidence names workload {found} but the reference values expect {expected}"
    )]
    Workload {
        /// The workload digest in the evidence.
        found: String,
        /// The workload digest of the reference values.
        expected: String,
    },
    /// The attested launcher is not the expected one.
    #[error(
        "the endpoint's evidence names launcher {found} but the reference values expect {expected}"
    )]
    Launcher {
        /// The launcher digest in the evidence.
        found: String,
        /// The launcher digest of the reference values.
        expected: String,
    },
    /// The attested workload was signed by another owner.
    #[error(
        "the endpoint's evidence names signer {found} but the reference values expect {expected}"
    )]
    Signer {
        /// The signer fingerprint in the evidence.
        found: String,
        /// The signer fingerprint of the reference values.
        expected: String,
    },
    /// The client sent a nonce, the certificate binds none.
    #[error("the endpoint's certificate binds no nonce, but this connection sent one; it is an old or replayed certificate")]
    NonceMissing,
    /// The certificate binds another nonce than this connection's.
    #[error("the endpoint's certificate binds nonce {found}, not this connection's nonce {expected}; it is a replayed or relayed certificate")]
    NonceMismatch {
        /// The nonce this connection sent (hex).
        expected: String,
        /// The nonce in the certificate (hex).
        found: String,
    },
    /// The TEE could not produce evidence.
    #[error("the TEE could not produce evidence for the certificate: {0}")]
    Attester(cocoon_attest::Error),
    /// The OS random source failed.
    #[error("no randomness from the operating system: {detail}")]
    Random {
        /// The OS error.
        detail: String,
    },
    /// A certificate or key could not be built from the given input.
    #[error("cannot make the attested certificate: {detail}")]
    Build {
        /// Why.
        detail: String,
    },
    /// A rustls configuration could not be made.
    #[error("cannot configure TLS: {detail}")]
    Config {
        /// Why.
        detail: String,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address.
        addr: String,
        /// The OS error (in the message, so not also a `source`: one line).
        error: std::io::Error,
    },
    /// The TLS handshake failed for a reason other than the certificate.
    #[error("TLS handshake with {addr} failed: {detail}")]
    Handshake {
        /// The address.
        addr: String,
        /// Why.
        detail: String,
    },
}

impl Error {
    pub(crate) fn build(detail: impl std::fmt::Display) -> Self {
        Error::Build {
            detail: detail.to_string(),
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Error::MalformedExtension {
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_cert(detail: impl std::fmt::Display) -> Self {
        Error::BadCertificate {
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_failed_and_why() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let cases: Vec<(Error, String)> = vec![
            (
                Error::Workload { found: d('b'), expected: d('a') },
                format!("the endpoint's evidence names workload {} but the reference values expect {}", d('b'), d('a')),
            ),
            (
                Error::NotAttested,
                "the endpoint's certificate is not an attested certificate: it has no evidence extension (OID 2.23.133.5.4.9), so nothing says its key lives in a TEE".into(),
            ),
            (
                Error::Validity { now: UnixTime(7200), not_before: UnixTime(0), not_after: UnixTime(3600) },
                "the endpoint's certificate is not valid at 1970-01-01T02:00:00Z (valid 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z); it is stale or replayed, or a clock is wrong".into(),
            ),
            (
                Error::NonceMissing,
                "the endpoint's certificate binds no nonce, but this connection sent one; it is an old or replayed certificate".into(),
            ),
            (
                Error::UnknownTag { tag: 0x1a7599 },
                "the certificate's evidence has CBOR tag 0x1a7599, which names no TEE cocoon verifies (docs/tls.md lists the tags)".into(),
            ),
            (
                Error::TagMismatch { tagged: Tee::Tdx, found: Tee::Sgx },
                "the certificate's evidence tag says tdx but the evidence is sgx evidence".into(),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
            assert_eq!(e.to_string().lines().count(), 1);
        }
    }
}
