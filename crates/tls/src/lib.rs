//! cocoon attested TLS: certificates that carry TEE evidence, and the
//! verifiers clients use to check, before sending data, that a server's TLS
//! key lives in a TEE running an expected workload.
//!
//! * [`evidence`]: the X.509 evidence extension, TCG DICE tagged evidence
//!   (OID 2.23.133.5.4.9, CBOR `tag([evidence, claims])`) as in the CCC
//!   interoperable RA-TLS convention; the claims bind the certificate key,
//!   the workload's init data and the client's nonce.
//! * [`cert`]: making attested certificates inside the TEE
//!   ([`attested_certificate`]), and rustls keys for them.
//! * [`nonce`]: the client's nonce, carried in the TLS SNI.
//! * [`verify`]: [`verify_certificate`] against an [`Expectation`]
//!   (reference values, collateral, sim allowed, nonce).
//! * [`client`]: a rustls verifier ([`AttestedServerVerifier`]) and a
//!   blocking [`connect`]; [`server`]: a rustls resolver
//!   ([`AttestedCertResolver`]) minting per-nonce certificates.
//!
//! The byte-level format and how clients in other languages verify it:
//! `docs/tls.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cert;
pub mod client;
pub mod error;
pub mod evidence;
pub mod nonce;
pub mod server;
pub mod verify;

pub use cert::{attested_certificate, certified_key, generate_key};
pub use client::{client_config, connect, connect_without_nonce, AttestedServerVerifier};
pub use error::{Error, Result};
pub use nonce::{nonce_from_server_name, nonce_server_name, EVIDENCE_SERVER_NAME};
pub use server::{server_config, AttestedCertResolver};
pub use verify::{verify_certificate, Expectation, VerifiedEndpoint};
