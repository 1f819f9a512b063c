//! `cocoon attest verify` on every set of the shared evidence
//! (`../shared/testdata/evidence`, beside the repository), at the time
//! window its SOURCES.md states, through the real binary: passes print
//! claims, refusals exit non-zero with exactly one stderr line naming the
//! reason. Also the sim round trip through `cocoon sim init` and
//! `cocoon attest evidence`.

use std::path::Path;

mod common;
use common::*;

/// Runs `cocoon attest verify ARGS`, expects success, returns stdout.
fn pass(args: &[&str]) -> String {
    let mut all = vec!["attest", "verify"];
    all.extend_from_slice(args);
    common::succeeds(&all)
}

/// Runs `cocoon attest verify ARGS`, expects a refusal: non-zero exit, no
/// panic, one stderr line containing every fragment.
fn refuse(args: &[&str], fragments: &[&str]) -> String {
    let mut all = vec!["attest", "verify"];
    all.extend_from_slice(args);
    common::refuses(&all, fragments)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn snp_virtee_milan_passes() {
    let out = pass(&[
        "--tee",
        "snp",
        &evidence("snp/virtee-sev/report_milan.hex"),
        "--collateral",
        &evidence("snp/virtee-sev/vcek_milan.der"),
        "--now",
        "2024-01-01T00:00:00Z",
        "--json",
    ]);
    let c = json(&out);
    assert_eq!(c["tee"], "snp");
    assert_eq!(c["debug"], false);
    assert_eq!(c["launch_measurement"], "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f");
    assert_eq!(c["report_data"], "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd");
}

#[test]
fn snp_trustee_vcek_passes_and_tampered_vceks_are_refused() {
    let report = evidence("snp/trustee/test-report.bin");
    let out = pass(&[
        "--tee",
        "snp",
        &report,
        "--collateral",
        &evidence("snp/trustee/test-vcek.der"),
        "--now",
        "2024-01-01T00:00:00Z",
    ]);
    assert!(out.contains("verified snp evidence"), "{out}");
    assert!(out.contains("a1f3930413247bb38cfc171579ea3c12"), "{out}");

    for bad in [
        "snp/trustee/test-vcek-invalid-legacy.der",
        "snp/trustee/test-vcek-invalid-new.der",
    ] {
        refuse(
            &[
                "--tee",
                "snp",
                &report,
                "--collateral",
                &evidence(bad),
                "--now",
                "2024-01-01T00:00:00Z",
            ],
            &[
                "test-report.bin refused: snp certificate chain does not verify",
                "the signature on CN=SEV-VCEK",
                "is invalid",
            ],
        );
    }
}

#[test]
fn snp_trustee_vlek_passes_only_inside_its_year() {
    let args = |now: &'static str| {
        [
            "--tee".to_string(),
            "snp".into(),
            evidence("snp/trustee/test-vlek-report.bin"),
            "--collateral".into(),
            evidence("snp/trustee/test-vlek.der"),
            "--now".into(),
            now.into(),
        ]
    };
    let a = args("2025-06-01T00:00:00Z");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = pass(&a);
    assert!(out.contains("819770b7e6ea6df8"), "{out}");

    let a = args("2026-01-01T00:00:00Z");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    refuse(
        &a,
        &[
            "is not valid at 2026-01-01T00:00:00Z",
            "2025-12-10T22:14:21Z",
        ],
    );
}

#[test]
fn azure_vtpm_sets_pass() {
    for (file, product) in [
        ("evidence-v1.json", "Milan"),
        ("evidence-v2.json", "Milan"),
        ("evidence-genoa.json", "Genoa"),
    ] {
        let out = pass(&[
            "--tee",
            "az-snp-vtpm",
            &evidence(&format!("snp-azure-vtpm/trustee/{file}")),
            "--now",
            "2025-06-01T00:00:00Z",
            "--json",
        ]);
        let c = json(&out);
        assert_eq!(c["tee"], "az-snp-vtpm", "{file}");
        assert_eq!(c["platform"]["product"], product, "{file}");
    }
    // The HCL report and the TPM quote as two files, VCEK as collateral.
    let out = pass(&[
        "--tee",
        "az-snp-vtpm",
        &evidence("snp-azure-vtpm/trustee/hcl-report.bin"),
        &evidence("snp-azure-vtpm/trustee/tpm-quote-v1.json"),
        "--collateral",
        &evidence("snp-azure-vtpm/trustee/vcek.pem"),
        "--now",
        "2025-06-01T00:00:00Z",
        "--expect-report-data",
        &hex(b"challenge"),
    ]);
    assert!(out.contains("verified az-snp-vtpm evidence"), "{out}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tdx_dcap_qvl_a_passes_up_to_date_inside_its_window_only() {
    let q = evidence("tdx/dcap-qvl/tdx_quote");
    let c = evidence("tdx/dcap-qvl/tdx_quote_collateral.json");
    let out = pass(&[
        "--tee",
        "tdx",
        &q,
        "--collateral",
        &c,
        "--now",
        "2025-07-19T10:00:34Z",
        "--json",
    ]);
    let claims = json(&out);
    assert_eq!(claims["tee"], "tdx");
    assert_eq!(claims["tcb"]["status"], "UpToDate");
    assert_eq!(claims["tcb"]["advisory_ids"], serde_json::json!([]));
    assert_eq!(claims["launch_measurement"], "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7");

    for (now, why) in [
        ("2025-06-19T10:32:26Z", "issue date is in the future"),
        ("2025-07-19T10:00:36Z", "CrlExpired"),
    ] {
        refuse(
            &["--tee", "tdx", &q, "--collateral", &c, "--now", now],
            &["tdx_quote refused: tdx quote verification failed", why],
        );
    }
}

#[test]
fn tdx_dcap_qvl_b_v5_with_no_matching_tcb_level_is_refused() {
    refuse(
        &[
            "--tee",
            "tdx",
            &evidence("tdx/dcap-qvl/tdx_quote_outdated"),
            "--collateral",
            &evidence("tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
            "--now",
            "2026-03-20T10:41:14Z",
        ],
        &[
            "tdx_quote_outdated refused: tdx TCB refused",
            "No matching TCB level",
        ],
    );
}

#[test]
fn tdx_go_tdx_guest_is_refused_for_tcb() {
    refuse(
        &[
            "--tee",
            "tdx",
            &evidence("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"),
            "--collateral",
            &evidence("tdx/go-tdx-guest"),
            "--now",
            "2023-07-01T01:00:00Z",
        ],
        &[
            "tdx_prod_quote_SPR_E4.dat refused: tdx TCB refused",
            "No matching TCB level",
        ],
    );
}

#[test]
fn sgx_passes_with_configuration_and_sw_hardening_needed() {
    let out = pass(&[
        "--tee",
        "sgx",
        &evidence("sgx/dcap-qvl/sgx_quote"),
        "--collateral",
        &evidence("sgx/dcap-qvl/sgx_quote_collateral.json"),
        "--now",
        "2025-07-19T10:01:17Z",
        "--json",
    ]);
    let c = json(&out);
    assert_eq!(c["tee"], "sgx");
    assert_eq!(c["debug"], false);
    assert_eq!(c["tcb"]["status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(
        c["tcb"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(
        c["launch_measurement"],
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
}

#[test]
fn sim_report_round_trips_and_another_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n).display().to_string();
    for name in ["sim-a", "sim-b"] {
        let o = cocoon(&["sim", "init", &dir(name)]);
        assert!(o.status.success(), "{}", show(&["sim", "init"], &o));
    }
    let ev = dir("evidence.bin");
    let rd = "00112233445566778899aabbccddeeff";
    let args = [
        "attest",
        "evidence",
        "--tee",
        "sim",
        "--sim",
        &dir("sim-a"),
        "--report-data",
        rd,
        "--out",
        &ev,
    ];
    let o = cocoon(&args);
    assert!(o.status.success(), "{}", show(&args, &o));

    let root = |n: &str| Path::new(&dir(n)).join("root.pem").display().to_string();
    let out = pass(&[
        "--tee",
        "sim",
        &ev,
        "--collateral",
        &root("sim-a"),
        "--expect-report-data",
        rd,
        "--json",
    ]);
    let c = json(&out);
    assert_eq!(c["tee"], "sim");
    assert_eq!(c["debug"], true);
    assert!(c["report_data"].as_str().unwrap().starts_with(rd), "{out}");

    refuse(
        &["--tee", "sim", &ev, "--collateral", &root("sim-b")],
        &[
            "evidence.bin refused: sim certificate chain does not verify",
            "not among the 1 trusted sim root(s)",
        ],
    );
    refuse(
        &[
            "--tee",
            "sim",
            &ev,
            "--collateral",
            &root("sim-a"),
            "--expect-report-data",
            "ff",
        ],
        &["report data does not match"],
    );
}

#[test]
fn wrong_or_missing_inputs_are_one_line_refusals() {
    // Missing collateral names what is missing and how to pass it.
    refuse(
        &[
            "--tee",
            "snp",
            &evidence("snp/trustee/test-report.bin"),
            "--now",
            "2024-01-01T00:00:00Z",
        ],
        &["VCEK", "--collateral"],
    );
    // SNP evidence given as TDX.
    refuse(
        &[
            "--tee",
            "tdx",
            &evidence("snp/trustee/test-report.bin"),
            "--collateral",
            &evidence("tdx/dcap-qvl/tdx_quote_collateral.json"),
            "--now",
            "2025-07-19T10:00:34Z",
        ],
        &["tdx evidence is malformed"],
    );
}

/// A one-shot HTTP server on 127.0.0.1 standing in for AMD KDS: answers one
/// request with `body`, returns its target, then stops listening.
fn kds_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        c.write_all(resp.as_bytes()).unwrap();
        c.write_all(&body).unwrap();
        let line = String::from_utf8_lossy(&head).into_owned();
        line.split(' ').nth(1).unwrap_or_default().to_string()
    });
    (base, t)
}

fn fetch_args(report: &str, cache: &str, kds: &str) -> Vec<String> {
    [
        "--tee",
        "snp",
        report,
        "--fetch",
        "--cache",
        cache,
        "--kds-url",
        kds,
        "--now",
        "2024-01-01T00:00:00Z",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn fetch_gets_the_vcek_once_then_uses_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().display().to_string();
    let report = evidence("snp/trustee/test-report.bin");
    let vcek = std::fs::read(evidence("snp/trustee/test-vcek.der")).unwrap();
    let (base, server) = kds_once(vcek);
    let a = fetch_args(&report, &cache, &base);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = pass(&a);
    assert!(out.contains("verified snp evidence"), "{out}");
    let target = server.join().unwrap();
    assert!(
        target.starts_with("/vcek/v1/Milan/c38427a30d4c7af9")
            && target.ends_with("?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"),
        "{target}"
    );
    // The server has stopped: the cached VCEK is used.
    pass(&a);

    // No network and nothing cached: one line naming the URL and the way out.
    let empty = tempfile::tempdir().unwrap();
    let a = fetch_args(
        &report,
        &empty.path().display().to_string(),
        "http://127.0.0.1:1",
    );
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    refuse(
        &a,
        &[
            "could not fetch collateral from http://127.0.0.1:1/vcek/v1/Milan/c38427a30d4c7af9",
            "no network connection",
            "pass the collateral files with --collateral DIR instead",
        ],
    );
}
