//! What this container is: the workload manifest, the owner's signed seal
//! descriptor and the launcher binary, checked against each other before
//! anything is sent to the KBS.

use std::path::Path;

use base64::Engine as _;
use cocoon_image::Digest;
use cocoon_seal::signing::{SealDescriptor, SignedSeal, SEAL_SCHEMA};
use cocoon_seal::WorkloadManifest;

use crate::{Error, Result};

pub use cocoon_attest::workload::InitData;

/// A checked workload.
#[derive(Debug)]
pub struct Workload {
    /// The manifest.
    pub manifest: WorkloadManifest,
    /// The signed descriptor.
    pub descriptor: SealDescriptor,
    /// The launcher's own digest.
    pub launcher: Digest,
}

impl Workload {
    /// Init data for this workload.
    pub fn init_data(&self) -> InitData {
        InitData {
            workload_digest: self.descriptor.workload.to_string(),
            launcher_digest: self.launcher.to_string(),
            signer: self.descriptor.signer.to_string(),
        }
    }
}

/// Ed25519 SubjectPublicKeyInfo DER prefix (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Checks the descriptor's signature with the key it names, and that the
/// signer id is that key's fingerprint. (Whether that signer is trusted is
/// the KBS policy's decision: the signer travels in the init data.)
pub fn verify_seal(seal: &SignedSeal) -> Result<&SealDescriptor> {
    let d = &seal.descriptor;
    if d.schema != SEAL_SCHEMA {
        return Err(Error::Image(format!("unknown seal schema {:?}", d.schema)));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let pk: [u8; 32] = b64
        .decode(&d.public_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Error::Image("seal.json public_key is not a base64 Ed25519 key".into()))?;
    let spki = [&ED25519_SPKI_PREFIX[..], &pk].concat();
    if Digest::of(&spki) != d.signer {
        return Err(Error::Image(
            "seal.json signer is not the fingerprint of its public key".into(),
        ));
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .map_err(|_| Error::Image("seal.json public_key is not a valid Ed25519 key".into()))?;
    let sig = b64
        .decode(&seal.signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or_else(|| Error::Image("seal.json signature is not an Ed25519 signature".into()))?;
    let msg = serde_json_canonicalizer::to_vec(d)
        .map_err(|e| Error::Image(format!("seal descriptor: {e}")))?;
    key.verify_strict(&msg, &sig).map_err(|_| {
        Error::Image("the owner's signature does not match the seal descriptor".into())
    })?;
    Ok(d)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|e| Error::Image(format!("reading {}: {e}", p.display())))
}

/// Reads and checks `dir/manifest.json` and `dir/seal.json`, and that
/// `launcher_bytes` (this binary) is the launcher the manifest names.
pub fn load(dir: &Path, launcher_bytes: &[u8]) -> Result<Workload> {
    let manifest_json = read(dir, "manifest.json")?;
    let seal =
        SignedSeal::parse(&read(dir, "seal.json")?).map_err(|e| Error::Image(e.to_string()))?;
    let descriptor = verify_seal(&seal)?.clone();
    if Digest::of(&manifest_json) != descriptor.workload {
        return Err(Error::Image(format!(
            "the workload manifest ({}) is not the one the owner signed ({}): it was changed",
            Digest::of(&manifest_json),
            descriptor.workload
        )));
    }
    let manifest: WorkloadManifest = serde_json::from_slice(&manifest_json)
        .map_err(|e| Error::Image(format!("manifest.json is not a workload manifest: {e}")))?;
    let launcher = Digest::of(launcher_bytes);
    if launcher != manifest.launcher {
        return Err(Error::Launcher {
            actual: launcher.to_string(),
            expected: manifest.launcher.to_string(),
        });
    }
    Ok(Workload {
        manifest,
        descriptor,
        launcher,
    })
}
