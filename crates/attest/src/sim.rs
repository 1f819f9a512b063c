//! The `sim` TEE: a software stand-in with the shape of hardware and no
//! protection at all.
//!
//! `init(dir)` writes a platform signing key (`platform-key.pem`, ECDSA P-384
//! PKCS#8) and a self-signed root certificate (`root.pem`, CN
//! `cocoon sim root`). P-384 is the curve and hash of SEV-SNP reports, so the
//! sim needs no extra crypto dependency and exercises the same code paths.
//!
//! A sim report (format version 1, 304 bytes, all integers little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `COCOSIM\0` |
//! | 8 | 2 | format version = 1 |
//! | 10 | 2 | flags: bit 0 debug, always set |
//! | 12 | 4 | tcb svn |
//! | 16 | 48 | launch measurement |
//! | 64 | 48 | host data (init data, zero-padded) |
//! | 112 | 64 | report data |
//! | 176 | 32 | root key id: SHA-256 of the signing key's SubjectPublicKeyInfo DER |
//! | 208 | 96 | ECDSA P-384/SHA-384 signature over bytes 0..208, r then s, big-endian |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use p384::ecdsa::{SigningKey, VerifyingKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};
use x509_cert::builder::{profile::cabf::Root, Builder, CertificateBuilder};
use x509_cert::der::{Decode, Encode, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::claims::{Claims, Tcb, TcbStatus};
use crate::{x509, Attester, Collateral, Error, Result, Tee, UnixTime, Verifier};

/// Magic at the start of every sim report.
pub const MAGIC: &[u8; 8] = b"COCOSIM\0";
/// Current format version.
pub const VERSION: u16 = 1;
/// Length of the signed part.
pub const SIGNED_LEN: usize = 208;
/// Total length of a version 1 report.
pub const REPORT_LEN: usize = SIGNED_LEN + 96;
/// Size of the host data (init data) field.
pub const HOST_DATA_LEN: usize = 48;
/// File name of the platform key inside a sim directory.
pub const KEY_FILE: &str = "platform-key.pem";
/// File name of the root certificate inside a sim directory.
pub const ROOT_FILE: &str = "root.pem";

/// The fields of a sim report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// Always true for sim.
    pub debug: bool,
    /// TCB security version.
    pub tcb_svn: u32,
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host data (init data).
    pub host_data: [u8; HOST_DATA_LEN],
    /// Report data.
    pub report_data: [u8; 64],
    /// SHA-256 of the signer's SubjectPublicKeyInfo DER.
    pub root_key_id: [u8; 32],
    /// Signature r‖s.
    pub signature: [u8; 96],
}

impl SimReport {
    /// The normalized claims of this report, once its signature and root
    /// have been verified (the only way they are built, so that every
    /// verification path yields the same claims).
    pub fn claims(&self) -> Claims {
        let mut svn = BTreeMap::new();
        svn.insert("tcb_svn".to_string(), u64::from(self.tcb_svn));
        let mut platform = BTreeMap::new();
        platform.insert("root_key_id".to_string(), hex::encode(self.root_key_id));
        Claims {
            tee: Tee::Sim,
            debug: true,
            tcb: Tcb {
                status: TcbStatus::Simulated,
                advisory_ids: vec![],
            },
            launch_measurement: self.measurement.to_vec().into(),
            init_data: self.host_data.to_vec().into(),
            report_data: self.report_data.to_vec().into(),
            signer: Some(self.root_key_id.to_vec().into()),
            svn,
            platform,
            measurements: BTreeMap::new(),
        }
    }

    /// Parses a report. Never panics.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let tee = Tee::Sim;
        if b.len() < 10 || &b[..8] != MAGIC {
            return Err(Error::malformed(
                tee,
                "no COCOSIM magic; this is not a sim report",
            ));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                tee,
                version: u32::from(version),
                supported: "1",
            });
        }
        if b.len() != REPORT_LEN {
            return Err(Error::malformed(
                tee,
                format!("report is {} bytes, expected {REPORT_LEN}", b.len()),
            ));
        }
        let mut r = SimReport {
            debug: u16::from_le_bytes([b[10], b[11]]) & 1 == 1,
            tcb_svn: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            measurement: [0; 48],
            host_data: [0; HOST_DATA_LEN],
            report_data: [0; 64],
            root_key_id: [0; 32],
            signature: [0; 96],
        };
        r.measurement.copy_from_slice(&b[16..64]);
        r.host_data.copy_from_slice(&b[64..112]);
        r.report_data.copy_from_slice(&b[112..176]);
        r.root_key_id.copy_from_slice(&b[176..208]);
        r.signature.copy_from_slice(&b[208..304]);
        Ok(r)
    }

    /// The signed bytes (0..208).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(REPORT_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&u16::from(self.debug).to_le_bytes());
        b.extend_from_slice(&self.tcb_svn.to_le_bytes());
        b.extend_from_slice(&self.measurement);
        b.extend_from_slice(&self.host_data);
        b.extend_from_slice(&self.report_data);
        b.extend_from_slice(&self.root_key_id);
        b
    }

    /// The full encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.signed_bytes();
        b.extend_from_slice(&self.signature);
        b
    }
}

fn spki_der(vk: &VerifyingKey) -> Result<Vec<u8>> {
    vk.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| Error::InvalidInput {
            what: "sim key",
            detail: e.to_string(),
        })
}

fn key_id(vk: &VerifyingKey) -> Result<[u8; 32]> {
    Ok(Sha256::digest(spki_der(vk)?).into())
}

/// A sim platform: its signing key and root certificate.
pub struct SimPlatform {
    /// The platform key in aws-lc-rs, which signs P-384 about 5x faster
    /// than the `p384` crate (every attestation signs one report).
    signer: aws_lc_rs::signature::EcdsaKeyPair,
    root_key_id: [u8; 32],
    root: Certificate,
    dir: PathBuf,
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlatform")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn random_key() -> Result<SigningKey> {
    for _ in 0..16 {
        let mut b = [0u8; 48];
        getrandom::fill(&mut b).map_err(|e| Error::Attester {
            attester: "sim",
            detail: format!("no randomness: {e}"),
        })?;
        if let Ok(k) = SigningKey::from_slice(&b) {
            return Ok(k);
        }
    }
    Err(Error::Attester {
        attester: "sim",
        detail: "could not draw a P-384 key".into(),
    })
}

/// Creates a sim platform in `dir` (created if missing): `platform-key.pem`
/// (mode 0600) and `root.pem` (valid 10 years from now). Refuses to
/// overwrite an existing key.
pub fn init(dir: &Path) -> Result<SimPlatform> {
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        return Err(Error::InvalidInput {
            what: "sim directory",
            detail: format!(
                "{} already exists; use another directory or remove it",
                key_path.display()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let key = random_key()?;
    let root = make_root(&key, UnixTime::now())?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::InvalidInput {
            what: "sim key",
            detail: e.to_string(),
        })?;
    write_private(&key_path, pem.as_bytes())?;
    let (signer, root_key_id) = report_signer(&key)?;
    let root_pem = root
        .to_pem(LineEnding::LF)
        .map_err(|e| Error::InvalidInput {
            what: "sim root",
            detail: e.to_string(),
        })?;
    let root_path = dir.join(ROOT_FILE);
    std::fs::write(&root_path, root_pem).map_err(|e| Error::io("write", &root_path, e))?;
    Ok(SimPlatform {
        signer,
        root_key_id,
        root,
        dir: dir.to_path_buf(),
    })
}

/// The report signer for `key` and its root key id.
fn report_signer(key: &SigningKey) -> Result<(aws_lc_rs::signature::EcdsaKeyPair, [u8; 32])> {
    let der = key.to_pkcs8_der().map_err(|e| Error::InvalidInput {
        what: "sim key",
        detail: e.to_string(),
    })?;
    let signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        der.as_bytes(),
    )
    .map_err(|e| Error::InvalidInput {
        what: "sim key",
        detail: format!("not a usable P-384 key ({e})"),
    })?;
    Ok((signer, key_id(key.verifying_key())?))
}

/// Whether `evidence` (a sim report) carries a valid signature by the root
/// key whose SEC1 point is `root_point`. Only the signature: the caller has
/// checked the root itself (as [`SimVerifier`] does).
pub fn report_signed_by(evidence: &[u8], root_point: &[u8]) -> bool {
    evidence.len() == REPORT_LEN
        && x509::verify_p384_sha384(root_point, &evidence[..SIGNED_LEN], &evidence[SIGNED_LEN..])
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(bytes).map_err(|e| Error::io("write", path, e))
}

/// Makes the self-signed root certificate for `key`, valid 10 years from `now`.
pub fn make_root(key: &SigningKey, now: UnixTime) -> Result<Certificate> {
    let err = |detail: String| Error::InvalidInput {
        what: "sim root",
        detail,
    };
    let subject = Name::from_str("CN=cocoon sim root,O=cocoon sim (no protection),C=XX")
        .map_err(|e| err(e.to_string()))?;
    let profile = Root::new(false, subject).map_err(|e| err(e.to_string()))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der(key.verifying_key())?)
        .map_err(|e| err(e.to_string()))?;
    let start = x509_cert::der::asn1::GeneralizedTime::from_unix_duration(Duration::from_secs(
        now.0.saturating_sub(60),
    ))
    .map_err(|e| err(e.to_string()))?;
    let end = x509_cert::der::asn1::GeneralizedTime::from_unix_duration(Duration::from_secs(
        now.0 + 10 * 365 * 86_400,
    ))
    .map_err(|e| err(e.to_string()))?;
    let validity = Validity::new(
        x509_cert::time::Time::GeneralTime(start),
        x509_cert::time::Time::GeneralTime(end),
    );
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&key_id(key.verifying_key())?[..16]);
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|e| err(e.to_string()))?;
    let builder =
        CertificateBuilder::new(profile, serial, validity, spki).map_err(|e| err(e.to_string()))?;
    builder
        .build::<_, p384::ecdsa::DerSignature>(key)
        .map_err(|e| err(e.to_string()))
}

impl SimPlatform {
    /// Opens a platform made by [`init`].
    pub fn open(dir: &Path) -> Result<Self> {
        let key_path = dir.join(KEY_FILE);
        let pem =
            std::fs::read_to_string(&key_path).map_err(|e| Error::io("read", &key_path, e))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| Error::InvalidInput {
            what: "sim key",
            detail: format!("{}: not a P-384 PKCS#8 key ({e})", key_path.display()),
        })?;
        let root_path = dir.join(ROOT_FILE);
        let root_bytes = std::fs::read(&root_path).map_err(|e| Error::io("read", &root_path, e))?;
        let root = x509::parse_any(Tee::Sim, "root.pem", &root_bytes)?
            .pop()
            .ok_or_else(|| Error::InvalidInput {
                what: "sim root",
                detail: format!("{} holds no certificate", root_path.display()),
            })?;
        let (signer, root_key_id) = report_signer(&key)?;
        Ok(SimPlatform {
            signer,
            root_key_id,
            root,
            dir: dir.to_path_buf(),
        })
    }

    /// The root certificate (DER), to give to verifiers explicitly.
    pub fn root_der(&self) -> Result<Vec<u8>> {
        self.root.to_der().map_err(|e| Error::InvalidInput {
            what: "sim root",
            detail: e.to_string(),
        })
    }

    /// Path of the root certificate PEM.
    pub fn root_path(&self) -> PathBuf {
        self.dir.join(ROOT_FILE)
    }

    /// Signs a report with these fields.
    pub fn sign(
        &self,
        measurement: [u8; 48],
        host_data: &[u8],
        report_data: &[u8],
        tcb_svn: u32,
    ) -> Result<Vec<u8>> {
        let mut r = SimReport {
            debug: true,
            tcb_svn,
            measurement,
            host_data: pad::<HOST_DATA_LEN>("host data", host_data)?,
            report_data: pad::<64>("report data", report_data)?,
            root_key_id: self.root_key_id,
            signature: [0; 96],
        };
        let sig = self
            .signer
            .sign(&aws_lc_rs::rand::SystemRandom::new(), &r.signed_bytes())
            .map_err(|e| Error::Attester {
                attester: "sim",
                detail: format!("signing failed ({e})"),
            })?;
        r.signature.copy_from_slice(sig.as_ref());
        Ok(r.to_bytes())
    }
}

fn pad<const N: usize>(what: &'static str, b: &[u8]) -> Result<[u8; N]> {
    if b.len() > N {
        return Err(Error::InvalidInput {
            what,
            detail: format!("{} bytes, at most {N} allowed", b.len()),
        });
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// Makes sim evidence for given report data; launch measurement and host
/// data are fixed when the attester is made, as hardware fixes them at launch.
#[derive(Debug)]
pub struct SimAttester {
    platform: SimPlatform,
    measurement: [u8; 48],
    host_data: Vec<u8>,
}

impl SimAttester {
    /// A sim "TEE" launched with `measurement` and `host_data` (≤ 48 bytes).
    pub fn new(platform: SimPlatform, measurement: [u8; 48], host_data: &[u8]) -> Result<Self> {
        pad::<HOST_DATA_LEN>("host data", host_data)?;
        Ok(SimAttester {
            platform,
            measurement,
            host_data: host_data.to_vec(),
        })
    }
}

impl Attester for SimAttester {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>> {
        self.platform
            .sign(self.measurement, &self.host_data, report_data, 1)
    }
}

/// The sim verifier: needs the sim root in [`Collateral::sim_roots`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SimVerifier;

impl Verifier for SimVerifier {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
        let tee = Tee::Sim;
        let report = SimReport::parse(evidence)?;
        if collateral.sim_roots.is_empty() {
            return Err(Error::MissingCollateral {
                tee,
                what: "a trusted sim root certificate (root.pem from `cocoon sim init`)",
            });
        }
        let mut root = None;
        for der in &collateral.sim_roots {
            let cert = x509::parse_der(tee, "sim root", der)?;
            let Some(vk) = x509::p384_key(&cert) else {
                continue;
            };
            if key_id(&vk)? == report.root_key_id {
                root = Some((cert, vk));
                break;
            }
        }
        let Some((cert, _)) = root else {
            return Err(Error::Chain {
                tee,
                detail: format!(
                    "the report is signed by sim root key {}, which is not among the {} trusted sim root(s)",
                    hex::encode(report.root_key_id),
                    collateral.sim_roots.len()
                ),
            });
        };
        x509::verify_issued_by(tee, &cert, &cert, now)?;
        if !report_signed_by(evidence, x509::public_key_bytes(&cert)) {
            return Err(Error::Signature {
                tee,
                what: "report",
            });
        }
        if !report.debug {
            // Cannot happen for a report we signed: every sim report says debug.
            return Err(Error::malformed(
                tee,
                "debug flag clear; sim reports are always debug",
            ));
        }
        Ok(report.claims())
    }
}

#[cfg(test)]
mod tests;
