//! Sealing: the workload manifest (what a sealed image runs, in canonical
//! JSON) and its digest; the sealed blob format with its writer and its
//! verifying, decrypting reader; owner signatures; and `convert`, which turns
//! an ordinary image into a sealed one.

mod aead;
pub mod convert;
pub mod error;
pub mod format;
pub mod index;
pub mod keys;
pub mod manifest;
pub mod measure;
pub mod pack;
pub mod reader;
pub mod signing;
pub mod writer;

pub use error::{Error, Result};
pub use keys::ImageKey;
pub use manifest::{RuntimeConfig, TreeSummary, WorkloadManifest, WorkloadOptions};
