use super::*;
use crate::az_snp_vtpm::{AzSnpVtpmVerifier, Evidence};
use crate::testdata::{at, path, read};
use crate::{Collateral, Verifier};

/// A fake vTPM answering the four commands from Trustee's captured Azure
/// evidence (HCL report, PCRs, quote over nonce "challenge").
struct FakeTpm {
    hcl: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    message: Vec<u8>,
    signature: Vec<u8>,
    log: Vec<u32>,
    fail_code: Option<u32>,
}

impl FakeTpm {
    fn new() -> Self {
        let q = Evidence::parse_quote(&read("snp-azure-vtpm/trustee/tpm-quote-v1.json")).unwrap();
        FakeTpm {
            hcl: read("snp-azure-vtpm/trustee/hcl-report.bin"),
            pcrs: q.pcrs,
            message: q.message,
            signature: q.signature,
            log: vec![],
            fail_code: None,
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn tpm2b(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}
fn response(sessions: bool, params: &[u8]) -> Vec<u8> {
    let mut r = vec![];
    r.extend_from_slice(
        &(if sessions {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        })
        .to_be_bytes(),
    );
    r.extend_from_slice(&[0; 4]);
    r.extend_from_slice(&0u32.to_be_bytes());
    if sessions {
        r.extend_from_slice(&(params.len() as u32).to_be_bytes());
    }
    r.extend_from_slice(params);
    if sessions {
        r.extend_from_slice(&[0, 0, 0, 0, 0]); // TPMS_AUTH_RESPONSE
    }
    let n = r.len() as u32;
    r[2..6].copy_from_slice(&n.to_be_bytes());
    r
}

impl TpmTransport for FakeTpm {
    fn transact(&mut self, c: &[u8]) -> Result<Vec<u8>> {
        assert_eq!(u32_at(c, 2) as usize, c.len(), "command size field");
        let code = u32_at(c, 6);
        self.log.push(code);
        if let Some(rc) = self.fail_code {
            let mut r = ST_NO_SESSIONS.to_be_bytes().to_vec();
            r.extend_from_slice(&10u32.to_be_bytes());
            r.extend_from_slice(&rc.to_be_bytes());
            return Ok(r);
        }
        Ok(match code {
            CC_NV_READ_PUBLIC => {
                assert_eq!(u32_at(c, 10), HCL_REPORT_NV_INDEX);
                let mut public = HCL_REPORT_NV_INDEX.to_be_bytes().to_vec();
                public.extend_from_slice(&ALG_SHA256.to_be_bytes());
                public.extend_from_slice(&0x0004_0002u32.to_be_bytes());
                public.extend_from_slice(&tpm2b(&[]));
                public.extend_from_slice(&(self.hcl.len() as u16).to_be_bytes());
                let mut p = tpm2b(&public);
                p.extend_from_slice(&tpm2b(&[0xAB; 34]));
                response(false, &p)
            }
            CC_NV_READ => {
                assert_eq!(u16_at(c, 0), ST_SESSIONS);
                assert_eq!(u32_at(c, 10), HCL_REPORT_NV_INDEX);
                assert_eq!(u32_at(c, 18), 9, "password session size");
                assert_eq!(u32_at(c, 22), RS_PW);
                let (n, off) = (u16_at(c, 31) as usize, u16_at(c, 33) as usize);
                assert!(n <= usize::from(NV_CHUNK));
                response(true, &tpm2b(&self.hcl[off..off + n]))
            }
            CC_PCR_READ => {
                assert_eq!(u32_at(c, 10), 1);
                assert_eq!(u16_at(c, 14), ALG_SHA256);
                assert_eq!(c[16], 3);
                let mask = u32::from_le_bytes([c[17], c[18], c[19], 0]);
                let idx: Vec<usize> = (0..24).filter(|i| mask & (1 << i) != 0).take(8).collect();
                let out_mask: u32 = idx.iter().map(|i| 1u32 << i).sum();
                let mut p = 7u32.to_be_bytes().to_vec(); // update counter
                p.extend_from_slice(&sha256_selection(out_mask));
                p.extend_from_slice(&(idx.len() as u32).to_be_bytes());
                for i in idx {
                    p.extend_from_slice(&tpm2b(&self.pcrs[i]));
                }
                response(false, &p)
            }
            CC_QUOTE => {
                assert_eq!(u32_at(c, 10), AK_HANDLE);
                let nonce_len = u16_at(c, 27) as usize;
                assert_eq!(&c[29..29 + nonce_len], b"challenge");
                let rest = &c[29 + nonce_len..];
                assert_eq!(u16_at(rest, 0), ALG_NULL);
                assert_eq!(&rest[2..], &sha256_selection(0x00FF_FFFF)[..]);
                let mut p = tpm2b(&self.message);
                p.extend_from_slice(&ALG_RSASSA.to_be_bytes());
                p.extend_from_slice(&ALG_SHA256.to_be_bytes());
                p.extend_from_slice(&tpm2b(&self.signature));
                response(true, &p)
            }
            other => panic!("unexpected command {other:#x}"),
        })
    }
}

#[test]
fn nv_read_command_is_marshalled_exactly() {
    let c = command(
        CC_NV_READ,
        &[HCL_REPORT_NV_INDEX, HCL_REPORT_NV_INDEX],
        true,
        &[0x02, 0x00, 0x00, 0x00],
    );
    let want = [
        "8002",     // TPM_ST_SESSIONS
        "00000023", // 35 bytes
        "0000014e", // TPM2_NV_Read
        "01400001", // authHandle: the index itself
        "01400001", // nvIndex
        "00000009", // authorization size
        "40000009", // TPM_RS_PW
        "0000",     // empty nonce
        "00",       // session attributes
        "0000",     // empty password
        "0200",     // size 512
        "0000",     // offset 0
    ]
    .concat();
    assert_eq!(hex::encode(c), want);
}

#[test]
fn evidence_from_a_fake_vtpm_verifies_end_to_end() {
    let mut tpm = FakeTpm::new();
    let ev = collect_evidence(&mut tpm, b"challenge").unwrap();
    // 1 NV_ReadPublic, ceil(2600 / 512) = 6 NV_Reads, 3 PCR_Reads, 1 Quote.
    let count = |cc| tpm.log.iter().filter(|c| **c == cc).count();
    assert_eq!(count(CC_NV_READ_PUBLIC), 1);
    assert_eq!(count(CC_NV_READ), 6);
    assert_eq!(count(CC_PCR_READ), 3);
    assert_eq!(count(CC_QUOTE), 1);
    let parsed = Evidence::parse(&ev).unwrap();
    assert_eq!(parsed.hcl_report, tpm.hcl);
    assert_eq!(parsed.quote.pcrs, tpm.pcrs);
    let coll = Collateral::from_paths(&[path("snp-azure-vtpm/trustee/vcek.pem")]).unwrap();
    let claims = AzSnpVtpmVerifier
        .verify(&ev, &coll, at("2025-06-01T00:00:00Z"))
        .unwrap();
    assert!(claims.expect_report_data(b"challenge").is_ok());
}

#[test]
fn pcr_change_during_quote_and_tpm_errors_are_refused() {
    let mut tpm = FakeTpm::new();
    tpm.pcrs[5][0] ^= 1;
    let e = collect_evidence(&mut tpm, b"challenge")
        .unwrap_err()
        .to_string();
    assert!(e.contains("PCR changed"), "{e}");

    let mut tpm = FakeTpm::new();
    tpm.fail_code = Some(0x18B); // TPM_RC_HANDLE | parameter 1
    let e = collect_evidence(&mut tpm, b"challenge")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("TPM2_NV_ReadPublic failed: TPM response code 0x18b"),
        "{e}"
    );

    let mut tpm = FakeTpm::new();
    assert!(collect_evidence(&mut tpm, &[0; 65]).is_err());
    assert!(tpm.log.is_empty());
}

#[test]
fn absent_device_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = AzVtpmAttester::new(dir.path().join("tpmrm0"));
    assert_eq!(a.tee(), Tee::AzSnpVtpm);
    let e = a.evidence(b"x").unwrap_err().to_string();
    assert!(e.contains("Azure vTPM") && e.contains("open"), "{e}");
}

#[test]
fn truncated_responses_never_panic() {
    struct Cut(FakeTpm, usize);
    impl TpmTransport for Cut {
        fn transact(&mut self, c: &[u8]) -> Result<Vec<u8>> {
            let mut r = self.0.transact(c)?;
            let n = self.1.min(r.len());
            r.truncate(n);
            // Keep the size field consistent with the cut so parsing goes on.
            if r.len() >= 6 {
                let len = r.len() as u32;
                r[2..6].copy_from_slice(&len.to_be_bytes());
            }
            Ok(r)
        }
    }
    for cut in 0..64 {
        let mut t = Cut(FakeTpm::new(), cut);
        assert!(collect_evidence(&mut t, b"challenge").is_err());
    }
}

#[test]
fn detection_needs_a_tpm_with_the_hcl_index() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!has_hcl_report(&dir.path().join("absent")));
    // A regular file answers nothing: not an Azure vTPM.
    let f = dir.path().join("not-a-tpm");
    std::fs::write(&f, "").unwrap();
    assert!(!has_hcl_report(&f));
    let probe = crate::attester::Probe {
        tsm_root: dir.path().join("no-tsm"),
        devices: vec![],
        tpm: Some(f),
        coco_api: None,
        sim: None,
    };
    let e = crate::attester::detect(&probe).err().unwrap().to_string();
    assert!(e.contains("Azure vTPM HCL report at"), "{e}");
}
