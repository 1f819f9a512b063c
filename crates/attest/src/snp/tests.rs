use super::*;
use crate::testdata::{at, read};

fn der(rel: &str) -> Vec<Vec<u8>> {
    vec![read(rel)]
}

fn trustee_a() -> (Vec<u8>, Vec<Vec<u8>>) {
    (
        read("snp/trustee/test-report.bin"),
        der("snp/trustee/test-vcek.der"),
    )
}

#[test]
fn virtee_milan_report_passes() {
    let report = read("snp/virtee-sev/report_milan.hex");
    let c = verify_report(
        &report,
        &der("snp/virtee-sev/vcek_milan.der"),
        at("2024-01-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(c.tee, Tee::Snp);
    assert_eq!(c.platform["product"], "Milan");
    assert_eq!(c.platform["signing_key"], "vcek");
    assert_eq!(c.tcb.status, TcbStatus::Certified);
}

#[test]
fn trustee_vcek_report_passes_with_stated_fields() {
    let (report, certs) = trustee_a();
    let c = verify_report(&report, &certs, at("2024-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        c.report_data.to_string(),
        format!(
            "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2{}",
            "0".repeat(64)
        )
    );
    assert_eq!(c.launch_measurement.to_string(), "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c");
    assert_eq!(c.signer.as_ref().unwrap().to_string(), "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3");
    assert!(c.platform["chip_id"].starts_with("c38427a30d4c7af9"));
    assert_eq!(c.svn["guest_svn"], 4);
    assert_eq!(c.svn["tcb.microcode"], 115);
    assert_eq!(c.svn["tcb.snp"], 8);
    assert_eq!(c.svn["tcb.bootloader"], 3);
    assert_eq!(c.platform["firmware"], "1.52.4");
    assert!(!c.debug, "policy 0x3001f has bit 19 clear");
    assert_eq!(c.measurements["policy"].to_string(), "000000000003001f");
}

#[test]
fn vlek_v3_report_passes_inside_its_window_only() {
    let report = read("snp/trustee/test-vlek-report.bin");
    let certs = der("snp/trustee/test-vlek.der");
    let c = verify_report(&report, &certs, at("2025-06-01T00:00:00Z")).unwrap();
    assert_eq!(c.platform["signing_key"], "vlek");
    assert_eq!(c.platform["vmpl"], "1");
    assert_eq!(c.platform["report_version"], "3");
    assert_eq!(c.svn["tcb.microcode"], 217);
    assert_eq!(c.svn["tcb.snp"], 24);
    let e = verify_report(&report, &certs, at("2026-01-01T00:00:00Z")).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
    assert!(e.to_string().contains("CN=SEV-VLEK"), "{e}");
    assert!(
        e.to_string()
            .contains("valid 2024-12-10T22:14:21Z to 2025-12-10T22:14:21Z"),
        "{e}"
    );
}

#[test]
fn upstream_report_tampers_are_refused() {
    let (report, certs) = trustee_a();
    let now = at("2024-01-01T00:00:00Z");
    let mut r = report.clone();
    r[42] = r[42].wrapping_add(1);
    let e = verify_report(&r, &certs, now).unwrap_err();
    assert!(matches!(e, Error::Signature { what: "report", .. }), "{e}");

    let mut r = report.clone();
    r[21] ^= 0x01;
    assert!(matches!(
        verify_report(&r, &certs, now),
        Err(Error::Signature { .. })
    ));

    let mut r = report.clone();
    r[384] = r[384].wrapping_add(1);
    let e = verify_report(&r, &certs, now).unwrap_err();
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
}

#[test]
fn upstream_vcek_tampers_are_refused() {
    let (report, _) = trustee_a();
    let now = at("2024-01-01T00:00:00Z");
    for pos in [40usize, 42] {
        let mut v = read("snp/trustee/test-vcek.der");
        v[pos] = v[pos].wrapping_add(1);
        assert!(
            verify_report(&report, &[v], now).is_err(),
            "VCEK byte {pos}"
        );
    }
    for f in [
        "snp/trustee/test-vcek-invalid-legacy.der",
        "snp/trustee/test-vcek-invalid-new.der",
    ] {
        let v = read(f);
        // Parses, hwID readable in both encodings, but does not chain.
        let cert = Certificate::from_der(&v).unwrap();
        let hw = hw_id(&cert).unwrap();
        assert_eq!(hw.len(), 64, "{f}");
        assert_eq!(&hw[..4], &[0, 1, 2, 3], "{f}");
        let e = verify_report(&report, &[v], now).unwrap_err();
        assert!(matches!(e, Error::Chain { .. }), "{f}: {e}");
        assert!(e.to_string().contains("signature on"), "{e}");
    }
}

/// Flips one byte at every position in `positions` (a different bit per
/// position, so all eight bit lanes are exercised) and asserts each copy is
/// refused while the original passes.
fn assert_flips_refused(
    report: &[u8],
    certs: &[Vec<u8>],
    now: UnixTime,
    positions: std::ops::Range<usize>,
) -> usize {
    assert!(
        verify_report(report, certs, now).is_ok(),
        "original must pass"
    );
    let mut n = 0;
    for pos in positions {
        let mut r = report.to_vec();
        r[pos] ^= 1 << (pos % 8);
        assert!(
            verify_report(&r, certs, now).is_err(),
            "flip at byte {pos:#x} accepted"
        );
        n += 1;
    }
    n
}

/// Issue 4: every byte of the signed part (0..0x2A0) of every passing SNP
/// report, plus the signature r and s fields (0x2A0..0x330) of one.
#[test]
fn every_signed_byte_matters() {
    let (report, certs) = trustee_a();
    let n = assert_flips_refused(&report, &certs, at("2024-01-01T00:00:00Z"), 0..0x330);
    assert_eq!(n, 0x330);

    let vlek = read("snp/trustee/test-vlek-report.bin");
    let certs = der("snp/trustee/test-vlek.der");
    assert_flips_refused(&vlek, &certs, at("2025-06-01T00:00:00Z"), 0..SIGNED_LEN);

    let milan = report_bytes(&read("snp/virtee-sev/report_milan.hex")).into_owned();
    assert_eq!(milan.len(), REPORT_LEN);
    let certs = der("snp/virtee-sev/vcek_milan.der");
    assert_flips_refused(&milan, &certs, at("2024-01-01T00:00:00Z"), 0..SIGNED_LEN);
}

#[test]
fn wrong_certificate_is_refused() {
    // trustee's report with the VCEK of another chip (virtee's): chip id differs.
    let (report, _) = trustee_a();
    let e = verify_report(
        &report,
        &der("snp/virtee-sev/vcek_milan.der"),
        at("2024-01-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Mismatch { .. } | Error::Signature { .. }),
        "{e}"
    );
    // A VLEK-signed report with only a VCEK given.
    let vlek_report = read("snp/trustee/test-vlek-report.bin");
    let e = verify_report(
        &vlek_report,
        &der("snp/trustee/test-vcek.der"),
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "snp verification needs the VLEK certificate (CN=SEV-VLEK), which was not given; pass it with --collateral (file or directory)"
    );
}

#[test]
fn vcek_outside_validity_is_refused() {
    let (report, certs) = trustee_a();
    let e = verify_report(&report, &certs, at("2031-01-01T00:00:00Z")).unwrap_err();
    assert!(matches!(e, Error::Expired { .. }), "{e}");
}

#[test]
fn turin_vcek_chains_to_turin_root() {
    let cert = Certificate::from_der(&read("snp/virtee-sev/vcek_turin.der")).unwrap();
    let p = verify_leaf_chain(&cert, false, at("2025-06-01T00:00:00Z")).unwrap();
    assert_eq!(p, Product::Turin);
    let tcb = cert_tcb(&cert, Product::Turin).unwrap();
    assert!(tcb.fmc.is_some());
    // Milan VCEK chains to Milan.
    let cert = Certificate::from_der(&read("snp/trustee/test-vcek.der")).unwrap();
    assert_eq!(
        verify_leaf_chain(&cert, false, at("2024-01-01T00:00:00Z")).unwrap(),
        Product::Milan
    );
    // ...but not as a VLEK (wrong intermediate).
    assert!(verify_leaf_chain(&cert, true, at("2024-01-01T00:00:00Z")).is_err());
}

#[test]
fn builtin_roots_match_published_fingerprints() {
    use sha2::{Digest, Sha256};
    use x509_cert::der::Encode;
    let fp = |c: &Certificate| hex::encode(Sha256::digest(c.to_der().unwrap()));
    let roots = builtin_roots();
    assert_eq!(roots.len(), 3);
    assert_eq!(
        fp(&roots[0].ark),
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
    );
    assert_eq!(
        fp(&roots[0].ask),
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b"
    );
    assert_eq!(
        fp(&roots[1].ark),
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
    );
    assert_eq!(
        fp(&roots[1].ask),
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521"
    );
    assert_eq!(
        fp(&roots[2].ark),
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
    );
    assert_eq!(
        fp(&roots[2].ask),
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185"
    );
}

#[test]
fn parser_rejects_bad_lengths_and_versions() {
    assert!(matches!(
        Report::parse(&[0u8; 10]),
        Err(Error::Malformed { .. })
    ));
    let mut r = read("snp/trustee/test-report.bin");
    r[0] = 9;
    let e = Report::parse(&r).unwrap_err();
    assert_eq!(e.to_string(), "snp evidence has unsupported version 9 (supported: 2, 3); upgrade cocoon or check the evidence type");
}

#[test]
fn parser_never_panics_on_random_input() {
    let mut rng = crate::testutil::Rng(0x5eed);
    let base = read("snp/trustee/test-report.bin");
    for i in 0..3000 {
        let buf = if i % 2 == 0 {
            let n = rng.below(2 * REPORT_LEN);
            rng.bytes(n)
        } else {
            let mut b = base.clone();
            for _ in 0..8 {
                let p = rng.below(b.len());
                b[p] = rng.next() as u8;
            }
            b
        };
        let _ = Report::parse(&buf);
        let _ = report_bytes(&buf);
    }
}
