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
    // Every byte of the signed SNP report inside the HCL report.
    for pos in (HCL_SNP_OFFSET..HCL_SNP_OFFSET + snp::SIGNED_LEN).step_by(17) {
        let mut t = hcl.clone();
        t[pos] ^= 0x20;
        assert!(
            verify_parts(t, q.clone(), &certs).is_err(),
            "flip at {pos:#x}"
        );
    }
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
