//! The workload manifest (what a sealed image runs, in canonical JSON) and
//! its digest, the identity that attestation and KBS policy check.

pub mod manifest;
pub mod measure;

pub use manifest::{RuntimeConfig, TreeSummary, WorkloadManifest};
