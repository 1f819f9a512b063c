//! The owner's signing key and the signed seal descriptor.
//!
//! The owner signs, with Ed25519, a descriptor that binds the workload digest
//! to the sealed blob's trailer digest. The signer is identified by the
//! SHA-256 of its public key's SubjectPublicKeyInfo DER, the value KBS
//! reference values name.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use cocoon_image::Digest;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Schema of the seal descriptor.
pub const SEAL_SCHEMA: &str = "cocoon.dev/seal/v2";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The owner's private signing key.
pub struct OwnerKey(SigningKey);

/// The owner's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerPublicKey(VerifyingKey);

impl OwnerKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Crypto(format!("no randomness from the OS: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        Ok(OwnerKey(key))
    }

    /// Writes the private key (PKCS#8 PEM, mode 0600) to `path` and the
    /// public key (SPKI PEM) to `path.pub`; returns the public key's path.
    /// Refuses to overwrite an existing key.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        let pem = self
            .0
            .to_pkcs8_pem(Default::default())
            .map_err(|e| Error::Crypto(format!("encoding the private key: {e}")))?;
        let pub_path = PathBuf::from(format!("{}.pub", path.display()));
        let pub_pem = self.public().to_pem()?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::io(
                    format!("creating {} (it must not exist yet)", path.display()),
                    e,
                )
            })?;
        f.write_all(pem.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        fs::write(&pub_path, pub_pem)
            .map_err(|e| Error::io(format!("writing {}", pub_path.display()), e))?;
        Ok(pub_path)
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn read(path: &Path) -> Result<Self> {
        let pem = fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading signing key {}", path.display()), e))?;
        SigningKey::from_pkcs8_pem(&pem).map(OwnerKey).map_err(|e| {
            Error::BadKey(format!(
                "{} is not an Ed25519 PKCS#8 PEM private key ({e}); make one with `cocoon keygen`",
                path.display()
            ))
        })
    }

    /// The public half.
    pub fn public(&self) -> OwnerPublicKey {
        OwnerPublicKey(self.0.verifying_key())
    }

    /// Signs a descriptor.
    pub fn sign(&self, descriptor: SealDescriptor) -> Result<SignedSeal> {
        let msg =
            serde_json_canonicalizer::to_vec(&descriptor).map_err(crate::manifest::Error::from)?;
        let signature = B64.encode(self.0.sign(&msg).to_bytes());
        Ok(SignedSeal {
            descriptor,
            signature,
        })
    }
}

impl OwnerPublicKey {
    /// Reads an SPKI PEM public key (`cocoon keygen` writes `KEY.pub`).
    pub fn read(path: &Path) -> Result<Self> {
        let pem = fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading public key {}", path.display()), e))?;
        VerifyingKey::from_public_key_pem(&pem)
            .map(OwnerPublicKey)
            .map_err(|e| {
                Error::BadKey(format!(
                    "{} is not an Ed25519 public key PEM ({e})",
                    path.display()
                ))
            })
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> Result<String> {
        self.0
            .to_public_key_pem(Default::default())
            .map_err(|e| Error::Crypto(format!("encoding the public key: {e}")))
    }

    /// The signer id: SHA-256 of the SubjectPublicKeyInfo DER.
    pub fn fingerprint(&self) -> Result<Digest> {
        let der = self
            .0
            .to_public_key_der()
            .map_err(|e| Error::Crypto(format!("encoding the public key: {e}")))?;
        Ok(Digest::of(der.as_bytes()))
    }

    /// The raw 32-byte key, base64.
    fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }
}

/// How big the sealed blob is and what its trailer hashes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// Size of the sealed blob in bytes.
    pub size: u64,
    /// SHA-256 of the sealed blob's 256-byte trailer.
    pub trailer: Digest,
}

/// What the owner signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealDescriptor {
    /// Always [`SEAL_SCHEMA`].
    pub schema: String,
    /// The workload digest.
    pub workload: Digest,
    /// The sealed blob.
    pub blob: BlobRef,
    /// The signer id (see [`OwnerPublicKey::fingerprint`]).
    pub signer: Digest,
    /// The signer's raw Ed25519 public key, base64.
    pub public_key: String,
}

impl SealDescriptor {
    /// A descriptor for `workload` and `blob`, naming `key` as signer.
    pub fn new(workload: Digest, blob: BlobRef, key: &OwnerPublicKey) -> Result<Self> {
        Ok(SealDescriptor {
            schema: SEAL_SCHEMA.into(),
            workload,
            blob,
            signer: key.fingerprint()?,
            public_key: key.to_base64(),
        })
    }
}

/// A descriptor with the owner's signature, as stored in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSeal {
    /// What is signed.
    pub descriptor: SealDescriptor,
    /// Ed25519 signature over the descriptor's canonical JSON, base64.
    pub signature: String,
}

impl SignedSeal {
    /// Parses `seal.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Format(format!("seal.json is not valid: {e}")))
    }

    /// Canonical JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json_canonicalizer::to_vec(self).map_err(crate::manifest::Error::from)?)
    }

    /// Checks the signature with the owner key the verifier trusts; the key
    /// named inside the descriptor must be that key.
    pub fn verify(&self, trusted: &OwnerPublicKey) -> Result<&SealDescriptor> {
        let d = &self.descriptor;
        if d.schema != SEAL_SCHEMA {
            return Err(Error::Format(format!("unknown seal schema {:?}", d.schema)));
        }
        if d.public_key != trusted.to_base64() || d.signer != trusted.fingerprint()? {
            return Err(Error::Signature(format!(
                "the image is signed by {}, not by the given public key {}",
                d.signer,
                trusted.fingerprint()?
            )));
        }
        let sig = B64
            .decode(&self.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| {
                Error::Signature("the signature is not a base64 Ed25519 signature".into())
            })?;
        let msg = serde_json_canonicalizer::to_vec(d).map_err(crate::manifest::Error::from)?;
        trusted.0.verify(&msg, &sig).map_err(|_| {
            Error::Signature("the signature does not match the seal descriptor".into())
        })?;
        Ok(d)
    }
}
