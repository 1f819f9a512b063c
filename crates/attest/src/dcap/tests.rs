use super::*;
use crate::testdata::{at, path, read};

fn coll(rel: &str) -> Collateral {
    Collateral::from_paths(&[path(rel)]).unwrap()
}

fn tdx_a() -> (Vec<u8>, Collateral) {
    (
        read("tdx/dcap-qvl/tdx_quote"),
        coll("tdx/dcap-qvl/tdx_quote_collateral.json"),
    )
}

const TDX_A_NOW: &str = "2025-07-19T10:00:34Z";
const SGX_NOW: &str = "2025-07-19T10:01:17Z";

#[test]
fn tdx_v4_quote_passes_up_to_date() {
    let (q, c) = tdx_a();
    let claims = TdxVerifier.verify(&q, &c, at(TDX_A_NOW)).unwrap();
    assert_eq!(claims.tcb.status, TcbStatus::UpToDate);
    assert!(claims.tcb.advisory_ids.is_empty());
    assert_eq!(claims.launch_measurement.to_string(), "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7");
    assert_eq!(claims.report_data.to_string(), "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20");
    assert_eq!(claims.init_data.0, vec![0u8; 48]);
    assert_eq!(claims.measurements["rtmr0"].to_string(), "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c48aca29b220b80b6a540cf994b9bc9c0");
    assert_eq!(claims.platform["fmspc"], "b0c06f000000");
    assert!(!claims.debug);
    // Also inside the window's first second.
    assert!(TdxVerifier
        .verify(&q, &c, at("2025-06-19T10:32:27Z"))
        .is_ok());
}

#[test]
fn tdx_outside_collateral_window_is_refused() {
    let (q, c) = tdx_a();
    for now in [
        "2025-07-19T10:00:36Z",
        "2025-06-19T10:32:26Z",
        "2030-01-01T00:00:00Z",
    ] {
        assert!(
            TdxVerifier.verify(&q, &c, at(now)).is_err(),
            "accepted at {now}"
        );
    }
}

#[test]
fn tdx_v5_with_no_matching_tcb_level_is_refused() {
    let q = read("tdx/dcap-qvl/tdx_quote_outdated");
    let c = coll("tdx/dcap-qvl/tdx_quote_outdated_collateral.json");
    let e = TdxVerifier
        .verify(&q, &c, at("2026-03-20T10:41:14Z"))
        .unwrap_err();
    assert!(matches!(e, Error::Tcb { .. }), "{e}");
    let parsed = parse_quote(Tee::Tdx, &q).unwrap();
    assert_eq!(parsed.header.version, 5);
}

#[test]
fn go_tdx_guest_quote_with_raw_pcs_collateral_is_refused_for_tcb() {
    let q = read("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat");
    let c = coll("tdx/go-tdx-guest");
    let e = TdxVerifier
        .verify(&q, &c, at("2023-07-01T01:00:00Z"))
        .unwrap_err();
    assert!(matches!(e, Error::Tcb { .. }), "{e}");
    // Far in the future the certificates have expired instead.
    let e = TdxVerifier
        .verify(&q, &c, at("2053-07-01T01:00:00Z"))
        .unwrap_err();
    assert!(!matches!(e, Error::Tcb { .. }), "{e}");
}

#[test]
fn sgx_v3_quote_passes_with_advisories() {
    let q = read("sgx/dcap-qvl/sgx_quote");
    let c = coll("sgx/dcap-qvl/sgx_quote_collateral.json");
    let claims = SgxVerifier.verify(&q, &c, at(SGX_NOW)).unwrap();
    assert_eq!(
        claims.tcb.status,
        TcbStatus::ConfigurationAndSWHardeningNeeded
    );
    assert_eq!(
        claims.tcb.advisory_ids,
        vec!["INTEL-SA-00289", "INTEL-SA-00615"]
    );
    assert_eq!(
        claims.launch_measurement.to_string(),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        claims.signer.unwrap().to_string(),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert!(claims.report_data.0.starts_with(b"Hello, world!"));
    assert!(!claims.debug);
    assert_eq!(claims.platform["fmspc"], "00a067110000");
    assert!(SgxVerifier
        .verify(&q, &c, at("2025-07-19T10:01:19Z"))
        .is_err());
}

#[test]
fn wrong_tee_kind_is_refused() {
    let (q, c) = tdx_a();
    let e = SgxVerifier.verify(&q, &c, at(TDX_A_NOW)).unwrap_err();
    assert!(e.to_string().contains("not sgx"), "{e}");
    let sgx = read("sgx/dcap-qvl/sgx_quote");
    assert!(TdxVerifier.verify(&sgx, &c, at(TDX_A_NOW)).is_err());
}

#[test]
fn missing_collateral_is_named() {
    let (q, _) = tdx_a();
    let e = TdxVerifier
        .verify(&q, &Collateral::default(), at(TDX_A_NOW))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("tdx verification needs DCAP collateral"),
        "{e}"
    );
}

#[test]
fn wrong_root_is_refused() {
    let (q, mut c) = tdx_a();
    // An unrelated root (AMD's ARK) as the trust anchor.
    let ark = crate::x509::parse_any(
        Tee::Snp,
        "ark",
        include_bytes!("../../roots/amd/milan/ark.pem"),
    )
    .unwrap();
    c.intel_root = Some(x509_cert::der::Encode::to_der(&ark[0]).unwrap());
    assert!(TdxVerifier.verify(&q, &c, at(TDX_A_NOW)).is_err());
}

fn u16_at(b: &[u8], off: usize) -> usize {
    usize::from(u16::from_le_bytes([b[off], b[off + 1]]))
}

/// The byte ranges of a DCAP quote that a signature or a signed hash covers:
/// header + body (attestation key signature), the ECDSA signature and the
/// attestation key (bound by the QE report data), the QE report and its PCK
/// signature, and the QE authentication data (bound by the QE report data).
/// `body_len` is 584 for a TDX 1.0 body, 384 for an SGX enclave report;
/// TDX v4 wraps the QE report in certification data type 6.
fn signed_ranges(q: &[u8], body_len: usize, tdx: bool) -> Vec<std::ops::Range<usize>> {
    let signed_end = 48 + body_len;
    let sig = signed_end + 4;
    let ak_end = sig + 64 + 64;
    let qe = if tdx {
        assert_eq!(u16_at(q, ak_end), 6, "TDX v4 certification data type");
        ak_end + 6
    } else {
        ak_end
    };
    let qe_sig_end = qe + 384 + 64;
    let auth_len = u16_at(q, qe_sig_end);
    let auth = qe_sig_end + 2;
    assert_eq!(
        u16_at(q, auth + auth_len),
        5,
        "PCK chain certification data type"
    );
    vec![
        0..signed_end,
        sig..ak_end,
        qe..qe_sig_end,
        auth..auth + auth_len,
    ]
}

/// Issue 4: flipping any single byte of the signed parts of the TDX v4 and
/// SGX v3 quotes turns a pass into a refusal (every position, no sampling).
#[test]
fn flipped_quote_bytes_are_refused() {
    let cases = [
        (
            Tee::Tdx,
            read("tdx/dcap-qvl/tdx_quote"),
            coll("tdx/dcap-qvl/tdx_quote_collateral.json"),
            at(TDX_A_NOW),
            584,
        ),
        (
            Tee::Sgx,
            read("sgx/dcap-qvl/sgx_quote"),
            coll("sgx/dcap-qvl/sgx_quote_collateral.json"),
            at(SGX_NOW),
            384,
        ),
    ];
    for (tee, q, c, now, body_len) in cases {
        let v = crate::verifier_for(tee);
        assert!(v.verify(&q, &c, now).is_ok(), "{tee}: original must pass");
        let ranges = signed_ranges(&q, body_len, tee == Tee::Tdx);
        let mut n = 0;
        for pos in ranges.iter().cloned().flatten() {
            let mut t = q.clone();
            t[pos] ^= 1 << (pos % 8);
            assert!(
                v.verify(&t, &c, now).is_err(),
                "{tee}: flip at byte {pos} accepted"
            );
            n += 1;
        }
        // Header + body + signature + key + QE report + QE signature at least.
        assert!(n >= 48 + body_len + 128 + 384 + 64, "{tee}: {n} positions");
    }
}

#[test]
fn tampered_collateral_is_refused() {
    let (q, mut c) = tdx_a();
    let d = c.dcap.as_mut().unwrap();
    d.tcb_info = d.tcb_info.replacen("UpToDate", "UpToDatf", 1);
    assert!(TdxVerifier.verify(&q, &c, at(TDX_A_NOW)).is_err());
}

#[test]
fn json_span_extraction() {
    let t = r#"{"tcbInfo":{"a":"}{","b":{"c":1}},"signature":"00"}"#;
    assert_eq!(
        json_object_span(t, "tcbInfo"),
        Some(r#"{"a":"}{","b":{"c":1}}"#)
    );
    assert_eq!(json_object_span(t, "nope"), None);
    assert_eq!(json_object_span(r#"{"tcbInfo":{"#, "tcbInfo"), None);
}

#[test]
fn parser_never_panics_on_random_input() {
    let mut rng = crate::testutil::Rng(0xdcab);
    let bases = [
        read("tdx/dcap-qvl/tdx_quote"),
        read("sgx/dcap-qvl/sgx_quote"),
    ];
    for i in 0..2000 {
        let buf = match i % 3 {
            0 => {
                let n = rng.below(6000);
                rng.bytes(n)
            }
            1 => {
                let mut b = bases[i % 2].clone();
                for _ in 0..4 {
                    let p = rng.below(b.len());
                    b[p] = rng.next() as u8;
                }
                b
            }
            _ => {
                let b = &bases[i % 2];
                let n = rng.below(b.len());
                b[..n].to_vec()
            }
        };
        let _ = parse_quote(Tee::Tdx, &buf);
    }
}
