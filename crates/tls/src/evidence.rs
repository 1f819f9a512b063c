//! The evidence extension: TCG DICE tagged evidence, as the CCC
//! interoperable RA-TLS convention uses it.
//!
//! The extension (OID [`EVIDENCE_OID`], non-critical) holds, as its OCTET
//! STRING value, the CBOR encoding of
//!
//! ```text
//! tag(T, [ evidence: bstr, claims: bstr ])
//! ```
//!
//! where `T` names the evidence type ([`tag_for`]) and `claims` is itself
//! the CBOR encoding of a map ([`EvidenceClaims`]):
//!
//! ```text
//! { "nonce"?: bstr, "init-data": bstr, "pubkey-hash": [1, bstr .size 32] }
//! ```
//!
//! The evidence's report data is `SHA-256(claims)` zero-padded to 64 bytes
//! ([`report_data`]). Byte-level layout and the tag table: docs/tls.md.

use std::io::Cursor;

use ciborium::value::{Integer, Value};
use cocoon_attest::workload::InitData;
use cocoon_attest::Tee;
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::ObjectIdentifier;

use crate::{Error, Result};

/// TCG DICE tagged evidence: `tcg-dice-tagged-evidence` (2.23.133.5.4.9).
pub const EVIDENCE_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.9");

/// CBOR tag of an Intel TEE quote (SGX DCAP quote v3, TDX quote v4/v5), as
/// rats-tls and Gramine use it.
pub const TAG_INTEL_TEE_QUOTE: u64 = 0x1a_7501;
/// CBOR tag of an AMD SEV-SNP attestation report, as rats-tls uses it.
pub const TAG_SEV_SNP: u64 = 0x1a_7504;
/// CBOR tag of a cocoon sim report: cocoon-private (`"coc"` + 1), unknown
/// to other implementations; the sim gives no protection.
pub const TAG_COCOON_SIM: u64 = 0x636f_6301;
/// CBOR tag of cocoon's Azure SEV-SNP vTPM evidence envelope (HCL report
/// plus TPM quote, `cocoon_attest::az_snp_vtpm`): cocoon-private (`"coc"` + 2).
pub const TAG_COCOON_AZ_SNP_VTPM: u64 = 0x636f_6302;

/// `hash-alg-id` of SHA-256 in the IANA Named Information Hash Algorithm
/// registry, as used in `pubkey-hash`.
pub const HASH_ALG_SHA256: u64 = 1;

/// Claim key: the hash of the certificate's SubjectPublicKeyInfo.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// Claim key: the client's nonce (absent when the client sent none).
pub const CLAIM_NONCE: &str = "nonce";
/// Claim key: the workload's init data (RFC 8785 canonical JSON).
pub const CLAIM_INIT_DATA: &str = "init-data";

/// Longest nonce a certificate may bind.
pub const MAX_NONCE_LEN: usize = 64;

/// The CBOR tag for evidence of `tee`.
pub fn tag_for(tee: Tee) -> u64 {
    match tee {
        Tee::Sim => TAG_COCOON_SIM,
        Tee::Snp => TAG_SEV_SNP,
        Tee::Tdx | Tee::Sgx => TAG_INTEL_TEE_QUOTE,
        Tee::AzSnpVtpm => TAG_COCOON_AZ_SNP_VTPM,
    }
}

/// The TEE whose verifier handles `evidence` tagged `tag`. An Intel quote
/// is TDX or SGX by its header's TEE type (offset 4, little-endian: 0x81
/// TDX, 0 SGX).
pub fn tee_for(tag: u64, evidence: &[u8]) -> Result<Tee> {
    match tag {
        TAG_COCOON_SIM => Ok(Tee::Sim),
        TAG_SEV_SNP => Ok(Tee::Snp),
        TAG_COCOON_AZ_SNP_VTPM => Ok(Tee::AzSnpVtpm),
        TAG_INTEL_TEE_QUOTE => {
            let Some(t) = evidence.get(4..8) else {
                return Err(Error::malformed(format!(
                    "the Intel quote is {} bytes, too short for a quote header",
                    evidence.len()
                )));
            };
            match u32::from_le_bytes([t[0], t[1], t[2], t[3]]) {
                0x81 => Ok(Tee::Tdx),
                0 => Ok(Tee::Sgx),
                other => Err(Error::malformed(format!(
                    "the Intel quote has TEE type {other:#x}, neither SGX (0) nor TDX (0x81)"
                ))),
            }
        }
        tag => Err(Error::UnknownTag { tag }),
    }
}

/// The report data binding `claims` (their exact CBOR bytes): SHA-256,
/// zero-padded to 64 bytes.
pub fn report_data(claims: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(claims));
    rd
}

/// SHA-256 of a DER SubjectPublicKeyInfo: the `pubkey-hash` value.
pub fn pubkey_hash(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

fn to_cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a Value into a Vec cannot fail.
    let _ = ciborium::into_writer(v, &mut out);
    out
}

/// Decodes exactly one CBOR item filling `b`.
fn from_cbor(what: &str, b: &[u8]) -> Result<Value> {
    let mut cur = Cursor::new(b);
    let v: Value = ciborium::from_reader(&mut cur)
        .map_err(|e| Error::malformed(format!("{what} is not CBOR ({e})")))?;
    if cur.position() != b.len() as u64 {
        return Err(Error::malformed(format!(
            "{what} has {} bytes after its CBOR item",
            b.len() as u64 - cur.position()
        )));
    }
    Ok(v)
}

/// The content of the evidence extension: tag, evidence and claims bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedEvidence {
    /// The CBOR tag naming the evidence type.
    pub tag: u64,
    /// The evidence, exactly as the attester produced it.
    pub evidence: Vec<u8>,
    /// The CBOR-encoded claims map, exactly as hashed into the report data.
    pub claims: Vec<u8>,
}

impl TaggedEvidence {
    /// The extension value: CBOR `tag(self.tag, [evidence, claims])`.
    pub fn to_cbor(&self) -> Vec<u8> {
        to_cbor(&Value::Tag(
            self.tag,
            Box::new(Value::Array(vec![
                Value::Bytes(self.evidence.clone()),
                Value::Bytes(self.claims.clone()),
            ])),
        ))
    }

    /// Parses an extension value. Never panics.
    pub fn from_cbor(b: &[u8]) -> Result<Self> {
        let Value::Tag(tag, inner) = from_cbor("the extension value", b)? else {
            return Err(Error::malformed(
                "the extension value is not a CBOR tag wrapping [evidence, claims]",
            ));
        };
        let Value::Array(items) = *inner else {
            return Err(Error::malformed(
                "the tagged value is not an array [evidence, claims]",
            ));
        };
        let mut it = items.into_iter();
        match (it.next(), it.next(), it.next()) {
            (Some(Value::Bytes(evidence)), Some(Value::Bytes(claims)), None) => {
                Ok(TaggedEvidence {
                    tag,
                    evidence,
                    claims,
                })
            }
            _ => Err(Error::malformed(
                "the tagged value is not an array of two byte strings [evidence, claims]",
            )),
        }
    }
}

/// The claims bound by the evidence's report data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceClaims {
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub pubkey_hash: [u8; 32],
    /// The client's nonce, when the certificate was made for one connection.
    pub nonce: Option<Vec<u8>>,
    /// The init data, RFC 8785 canonical JSON ([`InitData::canonical_json`]).
    pub init_data: Vec<u8>,
}

impl EvidenceClaims {
    /// The claims for a certificate key (`spki_der`), workload and nonce.
    pub fn new(spki_der: &[u8], init: &InitData, nonce: Option<&[u8]>) -> Result<Self> {
        if let Some(n) = nonce {
            if n.len() > MAX_NONCE_LEN {
                return Err(Error::build(format!(
                    "the nonce is {} bytes; at most {MAX_NONCE_LEN} are allowed",
                    n.len()
                )));
            }
        }
        Ok(EvidenceClaims {
            pubkey_hash: pubkey_hash(spki_der),
            nonce: nonce.map(<[u8]>::to_vec),
            init_data: init.canonical_json().into_bytes(),
        })
    }

    /// CBOR map in core deterministic order (shorter keys first):
    /// `nonce`, `init-data`, `pubkey-hash`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m = Vec::new();
        if let Some(n) = &self.nonce {
            m.push((Value::Text(CLAIM_NONCE.into()), Value::Bytes(n.clone())));
        }
        m.push((
            Value::Text(CLAIM_INIT_DATA.into()),
            Value::Bytes(self.init_data.clone()),
        ));
        m.push((
            Value::Text(CLAIM_PUBKEY_HASH.into()),
            Value::Array(vec![
                Value::Integer(Integer::from(HASH_ALG_SHA256)),
                Value::Bytes(self.pubkey_hash.to_vec()),
            ]),
        ));
        to_cbor(&Value::Map(m))
    }

    /// Parses a claims map. Keys other than the three known ones are
    /// ignored (other implementations may add claims); a repeated key is
    /// refused. Never panics.
    pub fn from_cbor(b: &[u8]) -> Result<Self> {
        let Value::Map(entries) = from_cbor("the claims", b)? else {
            return Err(Error::malformed("the claims are not a CBOR map"));
        };
        let mut pubkey = None;
        let mut nonce = None;
        let mut init = None;
        for (k, v) in entries {
            let Value::Text(k) = k else { continue };
            let slot_taken = match k.as_str() {
                CLAIM_PUBKEY_HASH => pubkey.replace(v).is_some(),
                CLAIM_NONCE => nonce.replace(v).is_some(),
                CLAIM_INIT_DATA => init.replace(v).is_some(),
                _ => false,
            };
            if slot_taken {
                return Err(Error::malformed(format!("the claims repeat the key {k:?}")));
            }
        }
        let pubkey_hash = match pubkey {
            None => return Err(Error::malformed("the claims have no \"pubkey-hash\"")),
            Some(v) => parse_pubkey_hash(v)?,
        };
        let nonce = match nonce {
            None => None,
            Some(Value::Bytes(n)) if n.len() <= MAX_NONCE_LEN => Some(n),
            Some(_) => {
                return Err(Error::malformed(format!(
                    "the claim \"nonce\" is not a byte string of at most {MAX_NONCE_LEN} bytes"
                )))
            }
        };
        let init_data = match init {
            Some(Value::Bytes(i)) => i,
            Some(_) => {
                return Err(Error::malformed(
                    "the claim \"init-data\" is not a byte string",
                ))
            }
            None => {
                return Err(Error::malformed(
                    "the claims have no \"init-data\", so they name no workload",
                ))
            }
        };
        Ok(EvidenceClaims {
            pubkey_hash,
            nonce,
            init_data,
        })
    }
}

fn parse_pubkey_hash(v: Value) -> Result<[u8; 32]> {
    let bad = || Error::malformed("the claim \"pubkey-hash\" is not [1, <32-byte SHA-256>]");
    let Value::Array(items) = v else {
        return Err(bad());
    };
    let mut it = items.into_iter();
    let (Some(Value::Integer(alg)), Some(Value::Bytes(h)), None) =
        (it.next(), it.next(), it.next())
    else {
        return Err(bad());
    };
    let alg = i128::from(alg);
    if alg != i128::from(HASH_ALG_SHA256) {
        return Err(Error::malformed(format!(
            "the claim \"pubkey-hash\" uses hash algorithm {alg}; only 1 (SHA-256) is supported"
        )));
    }
    h.try_into().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> InitData {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        InitData {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('c'),
        }
    }

    #[test]
    fn claims_round_trip_in_deterministic_order() {
        let c = EvidenceClaims::new(b"spki", &init(), Some(&[7u8; 32])).unwrap();
        let b = c.to_cbor();
        // Map of 3, first key "nonce" (text of 5).
        assert_eq!(&b[..7], &[0xa3, 0x65, b'n', b'o', b'n', b'c', b'e']);
        assert_eq!(EvidenceClaims::from_cbor(&b).unwrap(), c);
        let c = EvidenceClaims::new(b"spki", &init(), None).unwrap();
        let b = c.to_cbor();
        assert_eq!(b[0], 0xa2);
        assert_eq!(EvidenceClaims::from_cbor(&b).unwrap(), c);
        assert_eq!(c.pubkey_hash, pubkey_hash(b"spki"));
        assert_eq!(c.init_data, init().canonical_json().into_bytes());
        assert!(EvidenceClaims::new(b"spki", &init(), Some(&[0u8; 65])).is_err());
    }

    #[test]
    fn tagged_evidence_is_the_dice_layout() {
        let t = TaggedEvidence {
            tag: TAG_SEV_SNP,
            evidence: vec![1, 2],
            claims: vec![3],
        };
        let b = t.to_cbor();
        // tag(0x1a7504) = 0xda 00 1a 75 04; array(2); bstr(2) 01 02; bstr(1) 03.
        assert_eq!(b, [0xda, 0x00, 0x1a, 0x75, 0x04, 0x82, 0x42, 1, 2, 0x41, 3]);
        assert_eq!(TaggedEvidence::from_cbor(&b).unwrap(), t);
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(TaggedEvidence::from_cbor(&trailing)
            .unwrap_err()
            .to_string()
            .contains("1 bytes after its CBOR item"));
    }

    #[test]
    fn report_data_is_sha256_of_the_claims_bytes_zero_padded() {
        let rd = report_data(b"abc");
        assert_eq!(
            hex::encode(&rd[..32]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(rd[32..], [0u8; 32]);
    }

    #[test]
    fn tags_name_tees() {
        for tee in [Tee::Sim, Tee::Snp, Tee::AzSnpVtpm] {
            assert_eq!(tee_for(tag_for(tee), &[]).unwrap(), tee);
        }
        let mut q = vec![4, 0, 2, 0, 0x81, 0, 0, 0];
        assert_eq!(tee_for(TAG_INTEL_TEE_QUOTE, &q).unwrap(), Tee::Tdx);
        q[4] = 0;
        assert_eq!(tee_for(TAG_INTEL_TEE_QUOTE, &q).unwrap(), Tee::Sgx);
        q[4] = 7;
        assert!(tee_for(TAG_INTEL_TEE_QUOTE, &q).is_err());
        assert!(tee_for(TAG_INTEL_TEE_QUOTE, &[1, 2]).is_err());
        assert!(matches!(
            tee_for(0x1a7505, &[]),
            Err(Error::UnknownTag { tag: 0x1a7505 })
        ));
    }

    #[test]
    fn malformed_cbor_is_refused_without_panic() {
        let good_claims = EvidenceClaims::new(b"k", &init(), Some(b"n"))
            .unwrap()
            .to_cbor();
        let good = TaggedEvidence {
            tag: TAG_COCOON_SIM,
            evidence: vec![9; 40],
            claims: good_claims.clone(),
        }
        .to_cbor();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            for base in [&good, &good_claims] {
                let mut b = base.clone();
                match next() % 3 {
                    0 => {
                        let i = (next() as usize) % b.len();
                        b[i] ^= 1 << (next() % 8);
                    }
                    1 => b.truncate((next() as usize) % b.len()),
                    _ => {
                        let i = (next() as usize) % b.len();
                        b[i] = next() as u8;
                    }
                }
                let _ = TaggedEvidence::from_cbor(&b);
                let _ = EvidenceClaims::from_cbor(&b);
            }
        }
        // Deep nesting is refused by the decoder's depth limit, not by the stack.
        for (open, n) in [
            (0x81u8, 250usize),
            (0x81, 100_000),
            (0xc1, 100_000),
            (0xa1, 100_000),
        ] {
            let mut b = vec![open; n];
            b.push(0x00);
            let _ = TaggedEvidence::from_cbor(&b);
            let _ = EvidenceClaims::from_cbor(&b);
        }
        for bad in [
            &[][..],
            &[0xa0][..],
            &[0x80][..],
            &[0xc0, 0x80][..],
            &[0xc0, 0x82, 0x40, 0x01][..],
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(TaggedEvidence::from_cbor(bad).is_err());
            assert!(EvidenceClaims::from_cbor(bad).is_err());
        }
    }

    #[test]
    fn claims_refuse_repeats_and_wrong_shapes() {
        let m = |entries: Vec<(Value, Value)>| to_cbor(&Value::Map(entries));
        let ph = Value::Array(vec![Value::Integer(1.into()), Value::Bytes(vec![0; 32])]);
        let init = Value::Bytes(b"{}".to_vec());
        let ok = m(vec![
            ("pubkey-hash".into(), ph.clone()),
            ("init-data".into(), init.clone()),
            ("other".into(), Value::Null),
        ]);
        assert!(EvidenceClaims::from_cbor(&ok).is_ok());
        let repeated = m(vec![
            ("pubkey-hash".into(), ph.clone()),
            ("pubkey-hash".into(), ph.clone()),
            ("init-data".into(), init.clone()),
        ]);
        assert!(EvidenceClaims::from_cbor(&repeated)
            .unwrap_err()
            .to_string()
            .contains("repeat the key \"pubkey-hash\""));
        let sha384 = m(vec![
            (
                "pubkey-hash".into(),
                Value::Array(vec![Value::Integer(7.into()), Value::Bytes(vec![0; 48])]),
            ),
            ("init-data".into(), init.clone()),
        ]);
        assert!(EvidenceClaims::from_cbor(&sha384)
            .unwrap_err()
            .to_string()
            .contains("hash algorithm 7"));
        let no_init = m(vec![("pubkey-hash".into(), ph)]);
        assert!(EvidenceClaims::from_cbor(&no_init)
            .unwrap_err()
            .to_string()
            .contains("no \"init-data\""));
    }
}
