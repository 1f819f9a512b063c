use super::*;
use crate::testdata::{at, read};

const NOW: &str = "2025-06-01T00:00:00Z";

fn v1_parts() -> (Vec<u8>, TpmQuote, Vec<Vec<u8>>) {
    let hcl = read("snp-azure-vtpm/trustee/hcl-report.bin");
    let q = Evidence::parse_quote(&read("snp-azure-vtpm/trustee/tpm-quote-v1.json")).unwrap();
    let vcek = x509::parse_any(TEE, "vcek", &read("snp-azure-vtpm/trustee/vcek.pem")).unwrap();
    let ders = vcek
        .iter()
        .map(|c| x509_cert::der::Encode::to_der(c).unwrap())
        .collect();
    (hcl, q, ders)
}

fn verify_parts(hcl: Vec<u8>, quote: TpmQuote, certs: &[Vec<u8>]) -> Result<Claims> {
    let ev = Evidence {
        hcl_report: hcl,
        quote,
        vcek: None,
    };
    verify_evidence(&ev, certs, at(NOW))
}

#[test]
fn hcl_report_with_tpm_quote_passes() {
    let (hcl, q, certs) = v1_parts();
    let c = verify_parts(hcl, q, &certs).unwrap();
    assert_eq!(c.tee, Tee::AzSnpVtpm);
    assert!(c.expect_report_data(b"challenge").is_ok());
    assert_eq!(c.launch_measurement.to_string(), "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315");
    assert_eq!(
        c.measurements["pcr00"].to_string(),
        "f3a7e99a5f819a034386bce753a48a73cfdaa0bea0ecfc124bedbf5a8c4799be"
    );
    assert!(c.platform["chip_id"].starts_with("19752a447db501a3"));
    assert_eq!(
        c.measurements["snp_report_data"].to_string(),
        format!(
            "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac{}",
            "0".repeat(64)
        )
    );
}

#[test]
fn envelopes_v1_v2_and_genoa_pass() {
    let cases = [
        ("evidence-v1.json", "66a5a7b4403a3006", hex::encode(b"challenge"), "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced", "Milan"),
        ("evidence-v2.json", "2e0e62a0e6f39bc4", "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef".into(), "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7", "Milan"),
        ("evidence-genoa.json", "0506ffba875e939c", "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f".into(), "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338", "Genoa"),
    ];
    for (file, chip, nonce, pcr0, product) in cases {
        let ev = read(&format!("snp-azure-vtpm/trustee/{file}"));
        let c = AzSnpVtpmVerifier
            .verify(&ev, &Collateral::default(), at(NOW))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(c.platform["chip_id"].starts_with(chip), "{file}");
        assert_eq!(c.report_data.to_string(), nonce, "{file}");
        assert_eq!(c.measurements["pcr00"].to_string(), pcr0, "{file}");
        assert_eq!(c.platform["product"], product, "{file}");
        assert!(c.expect_report_data(b"wrong nonce").is_err());
    }
}

#[test]
fn upstream_hcl_tampers_are_refused() {
    let (hcl, q, certs) = v1_parts();
    let mut t = hcl.clone();
    t[0x1A6] = 0;
    let e = verify_parts(t, q.clone(), &certs).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "reported TCB",
                ..
            }
        ),
        "{e}"
    );

    let mut t = hcl.clone();
    t[0x6E0] = t[0x6E0].wrapping_add(1);
    let e = verify_parts(t, q.clone(), &certs).unwrap_err();
    assert!(e.to_string().contains("HCL variable data digest"), "{e}");

    let mut t = hcl.clone();
    t[0x540] = 0;
    let e = verify_parts(t, q, &certs).unwrap_err();
    assert!(
        matches!(e, Error::Mismatch { .. } | Error::Malformed { .. }),
        "{e}"
    );
}

#[test]
fn tpm_quote_tampers_are_refused() {
    let (hcl, q, certs) = v1_parts();
    let mut t = q.clone();
    t.message[20] ^= 1;
    assert!(matches!(
        verify_parts(hcl.clone(), t, &certs),
        Err(Error::Signature {
            what: "TPM quote",
            ..
        })
    ));
    let mut t = q.clone();
    t.signature[5] ^= 1;
    assert!(matches!(
        verify_parts(hcl.clone(), t, &certs),
        Err(Error::Signature { .. })
    ));
    let mut t = q.clone();
    t.pcrs[7][0] ^= 1;
    let e = verify_parts(hcl.clone(), t, &certs).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                field: "PCR digest",
                ..
            }
        ),
        "{e}"
    );
}

/// Issue 4: flipping any single byte of the signed parts turns a pass into a
/// refusal, at every position: the SNP report's signed part inside the HCL
/// report, the HCL variable data (bound by SHA-256 in the SNP report data),
/// the whole TPMS_ATTEST message and the TPM signature (AK), and every byte
/// of every PCR the quote selects (bound by the PCR digest).
#[test]
fn every_signed_byte_matters() {
    let (hcl, q, certs) = v1_parts();
    assert!(verify_parts(hcl.clone(), q.clone(), &certs).is_ok());
    let flip = |b: &mut Vec<u8>, pos: usize| b[pos] ^= 1 << (pos % 8);

    let var_len = HclReport::parse(&hcl).unwrap().var_data.len();
    assert!(var_len > 0);
    let hcl_ranges = [
        HCL_SNP_OFFSET..HCL_SNP_OFFSET + snp::SIGNED_LEN,
        HCL_VAR_DATA..HCL_VAR_DATA + var_len,
    ];
    for pos in hcl_ranges.into_iter().flatten() {
        let mut t = hcl.clone();
        flip(&mut t, pos);
        assert!(
            verify_parts(t, q.clone(), &certs).is_err(),
            "HCL flip at {pos:#x} accepted"
        );
    }
    // The TPM quote checks, directly with the AK from the (verified) HCL
    // report: every byte of the message, the signature and each selected PCR.
    // (End to end, these run the same code after the SNP checks; the
    // end-to-end samples are in `tpm_quote_tampers_are_refused`.)
    let ak = HclReport::parse(&hcl).unwrap().ak_pub().unwrap();
    assert!(verify_quote(&q, &ak).is_ok());
    let mut n = 0;
    for pos in 0..q.message.len() {
        let mut t = q.clone();
        flip(&mut t.message, pos);
        assert!(
            verify_quote(&t, &ak).is_err(),
            "TPM quote message flip at {pos} accepted"
        );
        n += 1;
    }
    for pos in 0..q.signature.len() {
        let mut t = q.clone();
        flip(&mut t.signature, pos);
        assert!(
            verify_quote(&t, &ak).is_err(),
            "TPM signature flip at {pos} accepted"
        );
        n += 1;
    }
    let att = TpmsAttest::parse(&q.message).unwrap();
    let selected = selected_pcrs(&att);
    assert_eq!(selected.len(), 24, "the sample quote selects PCRs 0..23");
    for i in selected {
        for pos in 0..q.pcrs[i].len() {
            let mut t = q.clone();
            flip(&mut t.pcrs[i], pos);
            assert!(
                verify_quote(&t, &ak).is_err(),
                "PCR {i} flip at {pos} accepted"
            );
            n += 1;
        }
    }
    assert_eq!(n, 122 + 256 + 24 * 32);
}

#[test]
fn only_selected_pcrs_become_claims() {
    let att = TpmsAttest {
        extra_data: vec![],
        selection: vec![(0x000B, vec![7, 0, 7]), (0x0004, vec![1])],
        pcr_digest: vec![],
    };
    // SHA-1 bank entries and duplicates do not add claims.
    assert_eq!(
        selected_pcrs(&att).into_iter().collect::<Vec<_>>(),
        vec![0, 7]
    );
    // With the sample (all 24 selected) every PCR is a claim; a 25th value in
    // the envelope is not covered by the quote and is not reported.
    let (hcl, mut q, certs) = v1_parts();
    q.pcrs.push(vec![0xAA; 32]);
    let c = verify_parts(hcl, q, &certs).unwrap();
    assert!(c.measurements.contains_key("pcr23"));
    assert!(!c.measurements.contains_key("pcr24"));
}

#[test]
fn missing_vcek_is_named() {
    let (hcl, q, _) = v1_parts();
    let e = verify_parts(hcl, q, &[]).unwrap_err();
    assert!(matches!(e, Error::MissingCollateral { .. }), "{e}");
}

#[test]
fn envelope_from_parts_round_trips() {
    let hcl = read("snp-azure-vtpm/trustee/hcl-report.bin");
    let q = read("snp-azure-vtpm/trustee/tpm-quote-v1.json");
    let vcek = read("snp-azure-vtpm/trustee/vcek.pem");
    let env = Evidence::envelope(&hcl, &q, Some(&vcek)).unwrap();
    let c = AzSnpVtpmVerifier
        .verify(&env, &Collateral::default(), at(NOW))
        .unwrap();
    assert!(c.expect_report_data(b"challenge").is_ok());
}

#[test]
fn parsers_never_panic_on_random_input() {
    let mut rng = crate::testutil::Rng(0xa2);
    let hcl = read("snp-azure-vtpm/trustee/hcl-report.bin");
    let q = Evidence::parse_quote(&read("snp-azure-vtpm/trustee/tpm-quote-v1.json")).unwrap();
    for i in 0..3000 {
        let mut h = hcl.clone();
        let mut m = q.message.clone();
        for _ in 0..1 + i % 4 {
            let p = rng.below(h.len());
            h[p] = rng.next() as u8;
            let p = rng.below(m.len());
            m[p] = rng.next() as u8;
        }
        if i % 5 == 0 {
            let n = rng.below(h.len());
            h.truncate(n);
            let n = rng.below(m.len());
            m.truncate(n);
        }
        if let Ok(r) = HclReport::parse(&h) {
            let _ = r.ak_pub();
        }
        let _ = TpmsAttest::parse(&m);
        let n = rng.below(200);
        let _ = Evidence::parse(&rng.bytes(n));
    }
}
