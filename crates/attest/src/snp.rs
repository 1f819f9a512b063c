//! AMD SEV-SNP: attestation report parsing and verification.
//!
//! Chain: VCEK -> ASK -> ARK, or VLEK -> ASVK -> ARK, for Milan, Genoa and
//! Turin. The ARK/ASK/ASVK certificates ship inside this crate
//! (`roots/amd/`); certificates in the collateral are only candidates for the
//! leaf (VCEK/VLEK) and never become trust anchors.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use x509_cert::der::{asn1::ObjectIdentifier, Decode};
use x509_cert::Certificate;

use crate::claims::{Claims, Tcb, TcbStatus};
use crate::{x509, Collateral, Error, Result, Tee, UnixTime, Verifier};

/// Size of a version 2/3 attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// The signed part: bytes `0..0x2A0`.
pub const SIGNED_LEN: usize = 0x2A0;

/// Policy bit 19: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;

/// The AMD product line, which fixes the root and the TCB_VERSION layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// 3rd gen EPYC.
    Milan,
    /// 4th gen EPYC.
    Genoa,
    /// 5th gen EPYC (TCB_VERSION has an FMC field).
    Turin,
}

impl Product {
    /// All products with shipped roots.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// Name as in AMD KDS URLs.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

/// A decoded TCB_VERSION.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcbVersion {
    /// FMC SPL (Turin only).
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the raw little-endian u64 for `product`.
    pub fn decode(raw: u64, product: Product) -> Self {
        let b = raw.to_le_bytes();
        match product {
            Product::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            _ => TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }
}

/// The fields of an attestation report that cocoon uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Report format version (2 or 3).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: u64,
    /// Family id.
    pub family_id: [u8; 16],
    /// Image id.
    pub image_id: [u8; 16],
    /// VMPL of the requester.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// Current TCB (raw).
    pub current_tcb: u64,
    /// Platform info bits.
    pub platform_info: u64,
    /// Flags: bit 0 author key, bit 1 mask chip id, bits 2-4 signing key (0 VCEK, 1 VLEK).
    pub flags: u32,
    /// Guest-supplied report data.
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host-supplied data bound at launch.
    pub host_data: [u8; 32],
    /// ID key digest.
    pub id_key_digest: [u8; 48],
    /// Author key digest.
    pub author_key_digest: [u8; 48],
    /// Report id.
    pub report_id: [u8; 32],
    /// Reported TCB (raw): what the VCEK is derived from.
    pub reported_tcb: u64,
    /// CPUID family, model, stepping (version 3 and later; zero before).
    pub cpuid: [u8; 3],
    /// Chip id.
    pub chip_id: [u8; 64],
    /// Committed TCB (raw).
    pub committed_tcb: u64,
    /// Firmware version of the current build: (major, minor, build).
    pub current_fw: (u8, u8, u8),
    /// Launch TCB (raw).
    pub launch_tcb: u64,
    /// Signature r, big-endian.
    pub sig_r: [u8; 48],
    /// Signature s, big-endian.
    pub sig_s: [u8; 48],
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

/// Reads a little-endian 72-byte signature component as a big-endian P-384 scalar.
fn scalar_le(b: &[u8], off: usize) -> Option<[u8; 48]> {
    let le = &b[off..off + 72];
    if le[48..].iter().any(|x| *x != 0) {
        return None;
    }
    let mut be = [0u8; 48];
    for (i, x) in le[..48].iter().enumerate() {
        be[47 - i] = *x;
    }
    Some(be)
}

impl Report {
    /// Parses a report (exactly [`REPORT_LEN`] bytes).
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() != REPORT_LEN {
            return Err(Error::malformed(
                Tee::Snp,
                format!("report is {} bytes, expected {REPORT_LEN}", b.len()),
            ));
        }
        let version = u32_at(b, 0);
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion {
                tee: Tee::Snp,
                version,
                supported: "2, 3",
            });
        }
        let bad_sig = || Error::malformed(Tee::Snp, "signature component exceeds 48 bytes");
        Ok(Report {
            version,
            guest_svn: u32_at(b, 0x04),
            policy: u64_at(b, 0x08),
            family_id: arr(b, 0x10),
            image_id: arr(b, 0x20),
            vmpl: u32_at(b, 0x30),
            signature_algo: u32_at(b, 0x34),
            current_tcb: u64_at(b, 0x38),
            platform_info: u64_at(b, 0x40),
            flags: u32_at(b, 0x48),
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            id_key_digest: arr(b, 0xE0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            reported_tcb: u64_at(b, 0x180),
            cpuid: if version >= 3 { arr(b, 0x188) } else { [0; 3] },
            chip_id: arr(b, 0x1A0),
            committed_tcb: u64_at(b, 0x1E0),
            current_fw: (b[0x1EA], b[0x1E9], b[0x1E8]),
            launch_tcb: u64_at(b, 0x1F0),
            sig_r: scalar_le(b, 0x2A0).ok_or_else(bad_sig)?,
            sig_s: scalar_le(b, 0x2E8).ok_or_else(bad_sig)?,
        })
    }

    /// Signing key from the flags: `Some(false)` VCEK, `Some(true)` VLEK, `None` other.
    pub fn signed_by_vlek(&self) -> Option<bool> {
        match (self.flags >> 2) & 7 {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// Whether policy bit 19 (debug) is set.
    pub fn debug(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    /// The product named by the CPUID bytes of a version 3 report.
    pub fn cpuid_product(&self) -> Option<Product> {
        let [family, model, _] = self.cpuid;
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }
}

/// Accepts the raw report, or its hex text (as some tools store it).
pub fn report_bytes(evidence: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if evidence.len() != REPORT_LEN {
        let text: Vec<u8> = evidence
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if text.len() == 2 * REPORT_LEN {
            if let Ok(b) = hex::decode(&text) {
                return b.into();
            }
        }
    }
    evidence.into()
}

struct Roots {
    product: Product,
    ark: Certificate,
    ask: Certificate,
    asvk: Certificate,
}

fn builtin_roots() -> &'static [Roots] {
    static ROOTS: OnceLock<Vec<Roots>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let pems: [(Product, &str, &str, &str); 3] = [
            (
                Product::Milan,
                include_str!("../roots/amd/milan/ark.pem"),
                include_str!("../roots/amd/milan/ask.pem"),
                include_str!("../roots/amd/milan/asvk.pem"),
            ),
            (
                Product::Genoa,
                include_str!("../roots/amd/genoa/ark.pem"),
                include_str!("../roots/amd/genoa/ask.pem"),
                include_str!("../roots/amd/genoa/asvk.pem"),
            ),
            (
                Product::Turin,
                include_str!("../roots/amd/turin/ark.pem"),
                include_str!("../roots/amd/turin/ask.pem"),
                include_str!("../roots/amd/turin/asvk.pem"),
            ),
        ];
        let one = |pem: &str| {
            Certificate::load_pem_chain(pem.as_bytes())
                .ok()
                .and_then(|mut v| v.pop())
        };
        pems.iter()
            .filter_map(|(product, ark, ask, asvk)| {
                Some(Roots {
                    product: *product,
                    ark: one(ark)?,
                    ask: one(ask)?,
                    asvk: one(asvk)?,
                })
            })
            .collect()
    })
}

const OID_BL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

fn ext<'a>(cert: &'a Certificate, oid: &str) -> Option<&'a [u8]> {
    let oid = ObjectIdentifier::new(oid).ok()?;
    x509::extension(cert, &oid)
}

fn ext_u8(cert: &Certificate, oid: &str) -> Result<Option<u8>> {
    let Some(v) = ext(cert, oid) else {
        return Ok(None);
    };
    u8::from_der(v).map(Some).map_err(|_| Error::BadCollateral {
        tee: Tee::Snp,
        what: format!("certificate {}", x509::subject(cert)),
        detail: format!("extension {oid} is not a small INTEGER"),
    })
}

/// The hwID extension: raw 64 (or 8, Turin) bytes, or wrapped in an OCTET STRING.
pub fn hw_id(cert: &Certificate) -> Option<Vec<u8>> {
    let v = ext(cert, OID_HWID)?;
    if let Ok(os) = x509_cert::der::asn1::OctetString::from_der(v) {
        return Some(os.as_bytes().to_vec());
    }
    Some(v.to_vec())
}

/// The TCB certified by a VCEK/VLEK.
pub fn cert_tcb(cert: &Certificate, product: Product) -> Result<TcbVersion> {
    let need = |oid: &str, name: &'static str| -> Result<u8> {
        ext_u8(cert, oid)?.ok_or_else(|| Error::BadCollateral {
            tee: Tee::Snp,
            what: format!("certificate {}", x509::subject(cert)),
            detail: format!("missing {name} TCB extension {oid}; it is not a VCEK/VLEK"),
        })
    };
    Ok(TcbVersion {
        fmc: if product == Product::Turin {
            Some(need(OID_FMC, "FMC")?)
        } else {
            None
        },
        bootloader: need(OID_BL, "boot loader")?,
        tee: need(OID_TEE, "TEE")?,
        snp: need(OID_SNP, "SNP")?,
        microcode: need(OID_UCODE, "microcode")?,
    })
}

/// Verifies `leaf` (VCEK if `vlek` is false, else VLEK) up to a built-in ARK
/// at `now`, returning the product whose root it chains to.
pub fn verify_leaf_chain(leaf: &Certificate, vlek: bool, now: UnixTime) -> Result<Product> {
    let tee = Tee::Snp;
    let issuer = leaf.tbs_certificate().issuer();
    let mut first_err = None;
    for r in builtin_roots() {
        let inter = if vlek { &r.asvk } else { &r.ask };
        if inter.tbs_certificate().subject() != issuer {
            continue;
        }
        let res = x509::verify_issued_by(tee, leaf, inter, now)
            .and_then(|_| x509::verify_issued_by(tee, inter, &r.ark, now))
            .and_then(|_| x509::verify_issued_by(tee, &r.ark, &r.ark, now));
        match res {
            Ok(()) => return Ok(r.product),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::Chain {
        tee,
        detail: format!(
            "{} is issued by {issuer}, which is not an AMD {} for Milan, Genoa or Turin",
            x509::subject(leaf),
            if vlek { "ASVK" } else { "ASK" }
        ),
    }))
}

/// Verifies `report` (already parsed from `raw`) with the leaf certificate
/// `leaf` at `now`: chain, signature, TCB, chip id. Returns the product.
pub fn verify_report_with(
    raw: &[u8],
    report: &Report,
    leaf: &Certificate,
    now: UnixTime,
) -> Result<Product> {
    let tee = Tee::Snp;
    let vlek = report.signed_by_vlek().ok_or_else(|| {
        Error::malformed(
            tee,
            format!("flags {:#x} name an unknown signing key", report.flags),
        )
    })?;
    if report.signature_algo != 1 {
        return Err(Error::malformed(
            tee,
            format!(
                "signature algorithm {} is not ECDSA P-384/SHA-384 (1)",
                report.signature_algo
            ),
        ));
    }
    let product = verify_leaf_chain(leaf, vlek, now)?;
    if let Some(p) = report.cpuid_product() {
        if p != product {
            return Err(Error::Mismatch {
                tee,
                field: "product",
                evidence: p.name().into(),
                certified: product.name().into(),
            });
        }
    }
    // Reported TCB must be the TCB the key was derived for.
    let reported = TcbVersion::decode(report.reported_tcb, product);
    let certified = cert_tcb(leaf, product)?;
    if reported != certified {
        return Err(Error::Mismatch {
            tee,
            field: "reported TCB",
            evidence: format!("{reported:?}"),
            certified: format!("{certified:?}"),
        });
    }
    // Chip id (VCEK only; VLEKs are not chip-specific; MASK_CHIP_ID zeroes it).
    if !vlek && report.flags & 2 == 0 {
        let hw = hw_id(leaf).ok_or_else(|| Error::BadCollateral {
            tee,
            what: format!("certificate {}", x509::subject(leaf)),
            detail: "VCEK has no hwID extension".into(),
        })?;
        let ok = (hw.len() == 64 || hw.len() == 8)
            && report.chip_id[..hw.len()] == hw[..]
            && report.chip_id[hw.len()..].iter().all(|b| *b == 0);
        if !ok {
            return Err(Error::Mismatch {
                tee,
                field: "chip id",
                evidence: hex::encode(report.chip_id),
                certified: hex::encode(&hw),
            });
        }
    }
    // Report signature by the leaf key.
    if x509::p384_key(leaf).is_none() {
        return Err(Error::Chain {
            tee,
            detail: format!("{} has no P-384 public key", x509::subject(leaf)),
        });
    }
    let sig = [report.sig_r, report.sig_s].concat();
    if !x509::verify_p384_sha384(x509::public_key_bytes(leaf), &raw[..SIGNED_LEN], &sig) {
        return Err(Error::Signature {
            tee,
            what: "report",
        });
    }
    Ok(product)
}

/// Builds normalized claims from a verified report.
pub fn claims(report: &Report, product: Product) -> Claims {
    let tcb = TcbVersion::decode(report.reported_tcb, product);
    let mut svn = BTreeMap::new();
    svn.insert("guest_svn".to_string(), u64::from(report.guest_svn));
    svn.insert("tcb.bootloader".to_string(), u64::from(tcb.bootloader));
    svn.insert("tcb.tee".to_string(), u64::from(tcb.tee));
    svn.insert("tcb.snp".to_string(), u64::from(tcb.snp));
    svn.insert("tcb.microcode".to_string(), u64::from(tcb.microcode));
    if let Some(f) = tcb.fmc {
        svn.insert("tcb.fmc".to_string(), u64::from(f));
    }
    let mut platform = BTreeMap::new();
    platform.insert("product".to_string(), product.name().to_string());
    platform.insert("chip_id".to_string(), hex::encode(report.chip_id));
    platform.insert(
        "signing_key".to_string(),
        if report.signed_by_vlek() == Some(true) {
            "vlek"
        } else {
            "vcek"
        }
        .to_string(),
    );
    platform.insert("vmpl".to_string(), report.vmpl.to_string());
    platform.insert("report_version".to_string(), report.version.to_string());
    let (ma, mi, bu) = report.current_fw;
    platform.insert("firmware".to_string(), format!("{ma}.{mi}.{bu}"));
    let mut m = BTreeMap::new();
    m.insert(
        "policy".to_string(),
        report.policy.to_be_bytes().to_vec().into(),
    );
    m.insert("family_id".to_string(), report.family_id.to_vec().into());
    m.insert("image_id".to_string(), report.image_id.to_vec().into());
    m.insert(
        "author_key_digest".to_string(),
        report.author_key_digest.to_vec().into(),
    );
    m.insert("report_id".to_string(), report.report_id.to_vec().into());
    m.insert(
        "platform_info".to_string(),
        report.platform_info.to_be_bytes().to_vec().into(),
    );
    Claims {
        tee: Tee::Snp,
        debug: report.debug(),
        tcb: Tcb {
            status: TcbStatus::Certified,
            advisory_ids: vec![],
        },
        launch_measurement: report.measurement.to_vec().into(),
        init_data: report.host_data.to_vec().into(),
        report_data: report.report_data.to_vec().into(),
        signer: Some(report.id_key_digest.to_vec().into()),
        svn,
        platform,
        measurements: m,
    }
}

/// Verifies a raw report against the candidate leaf certificates (DER) at `now`.
pub fn verify_report(raw: &[u8], certs: &[Vec<u8>], now: UnixTime) -> Result<Claims> {
    let tee = Tee::Snp;
    let raw = report_bytes(raw);
    let report = Report::parse(&raw)?;
    let vlek = report.signed_by_vlek().unwrap_or(false);
    let want_cn = if vlek { "SEV-VLEK" } else { "SEV-VCEK" };
    let mut first_err = None;
    let mut candidates = 0;
    for der in certs {
        let Ok(cert) = Certificate::from_der(der) else {
            continue;
        };
        if x509::common_name(&cert).as_deref() != Some(want_cn) {
            continue;
        }
        candidates += 1;
        match verify_report_with(&raw, &report, &cert, now) {
            Ok(product) => return Ok(claims(&report, product)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if candidates == 0 {
        return Err(Error::MissingCollateral {
            tee,
            what: if vlek {
                "the VLEK certificate (CN=SEV-VLEK)"
            } else {
                "the VCEK certificate (CN=SEV-VCEK, from AMD KDS for this chip and TCB)"
            },
        });
    }
    Err(first_err.unwrap_or_else(|| Error::Chain {
        tee,
        detail: "no certificate verified".into(),
    }))
}

/// The SEV-SNP verifier: evidence is the raw 1184-byte report (or its hex);
/// collateral must hold the VCEK or VLEK.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnpVerifier;

impl Verifier for SnpVerifier {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn verify(&self, evidence: &[u8], collateral: &Collateral, now: UnixTime) -> Result<Claims> {
        verify_report(evidence, &collateral.certs, now)
    }
}

#[cfg(test)]
mod tests;
