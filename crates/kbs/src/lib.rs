//! cocoon key broker service (KBS).
//!
//! The relying party of cocoon: it speaks the Trustee "RCAR" attestation
//! protocol, version 0.4.0 ([`protocol`], shared with the launcher), verifies TEE evidence with
//! `cocoon-attest`, evaluates a Rego policy ([`policy`]) over the normalized
//! claims, the workload's init data and the requested resource, and releases
//! resources from an encrypted embedded store ([`store`]) as JWE
//! ([`protocol::jwe`]) to the key the evidence binds. It issues EAR attestation tokens
//! ([`token`]), short-lived workload certificates ([`ca`]), and has an admin
//! API with a blocking client ([`client`]).
//!
//! Entry points: [`config::Config`] (TOML), [`server::Kbs`] (state) and
//! [`server::serve`]. The format of everything on the wire and on disk is in
//! `docs/kbs.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod ca;
pub mod client;
pub mod config;
pub mod crypto;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod reference;
pub mod server;
pub mod session;
pub mod simcache;
pub mod store;
pub mod token;

pub use cocoon_kbs_protocol as protocol;
pub use config::Config;
pub use error::{Error, Result};
pub use reference::{InitData, ReferenceValues};

/// Bytes that are zeroized when dropped (resource values, keys).
pub type Secret = zeroize::Zeroizing<Vec<u8>>;
