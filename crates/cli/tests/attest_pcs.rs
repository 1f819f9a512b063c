//! `cocoon attest verify --fetch` and `cocoon attest fetch` for TDX/SGX
//! against an Intel PCS stand-in on 127.0.0.1 serving the real captured
//! collateral of `../shared/testdata/evidence` the way PCS sends it (signed
//! bodies, DER CRLs, URL-encoded issuer chains in the response headers).

use std::collections::BTreeMap;

use cocoon_testkit::http::{url_encode, Reply, StubServer as Pcs};

mod common;
use common::*;

type Routes = BTreeMap<String, Reply>;

const ROOT_CRL: &str = "/IntelSGXRootCA.der";

/// PCS answers rebuilt from a dcap-qvl collateral JSON (signed bodies
/// wrapped as PCS sends them), for a quote of `tee` with `fmspc` and `ca`.
fn pcs_for(collateral: &str, tee: &str, fmspc: &str, ca: &str) -> (Routes, Vec<String>) {
    let text = std::fs::read(evidence(collateral)).unwrap();
    let c: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let unhex = |k: &str| {
        let h = s(k);
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let hdr = |k: &str, v: &str| vec![(k.to_string(), url_encode(v))];
    let tcb = format!("/{tee}/certification/v4/tcb?fmspc={fmspc}");
    let qe = format!("/{tee}/certification/v4/qe/identity");
    let crl = format!("/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
    let mut r = BTreeMap::<String, (Vec<(String, String)>, Vec<u8>)>::new();
    r.insert(
        tcb.clone(),
        (
            hdr("TCB-Info-Issuer-Chain", &s("tcb_info_issuer_chain")),
            format!(
                "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                s("tcb_info"),
                s("tcb_info_signature")
            )
            .into_bytes(),
        ),
    );
    r.insert(
        qe.clone(),
        (
            hdr(
                "SGX-Enclave-Identity-Issuer-Chain",
                &s("qe_identity_issuer_chain"),
            ),
            format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                s("qe_identity"),
                s("qe_identity_signature")
            )
            .into_bytes(),
        ),
    );
    r.insert(
        crl.clone(),
        (
            hdr("SGX-PCK-CRL-Issuer-Chain", &s("pck_crl_issuer_chain")),
            unhex("pck_crl"),
        ),
    );
    r.insert(ROOT_CRL.to_string(), (Vec::new(), unhex("root_ca_crl")));
    let routes = r
        .into_iter()
        .map(|(target, (headers, body))| {
            let reply = Reply {
                status: 200,
                headers,
                body,
            };
            (target, reply)
        })
        .collect();
    (routes, vec![tcb, qe, crl, ROOT_CRL.to_string()])
}

#[test]
fn verify_fetch_gets_tdx_collateral_from_pcs_then_serves_it_from_the_cache() {
    let (routes, expected) = pcs_for(
        "tdx/dcap-qvl/tdx_quote_collateral.json",
        "tdx",
        "B0C06F000000",
        "platform",
    );
    let pcs = Pcs::start(routes);
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().display().to_string();
    let quote = evidence("tdx/dcap-qvl/tdx_quote");
    let root = format!("{}{ROOT_CRL}", pcs.base);
    let now = "2025-07-19T10:00:34Z";
    let args = [
        "attest",
        "verify",
        "--tee",
        "tdx",
        &quote,
        "--fetch",
        "--cache",
        &cache,
        "--pcs-url",
        &pcs.base,
        "--intel-root-crl-url",
        &root,
        "--now",
        now,
        "--json",
    ];
    let fetched = succeeds(&args);
    assert_eq!(pcs.take(), expected);
    let offline = succeeds(&[
        "attest",
        "verify",
        "--tee",
        "tdx",
        &quote,
        "--collateral",
        &evidence("tdx/dcap-qvl/tdx_quote_collateral.json"),
        "--now",
        now,
        "--json",
    ]);
    assert_eq!(fetched, offline);
    let claims: serde_json::Value = serde_json::from_str(&fetched).unwrap();
    assert_eq!(claims["tcb"]["status"], "UpToDate");
    assert_eq!(claims["platform"]["fmspc"], "b0c06f000000");

    // Again: everything is current at `now`, so PCS sees no request.
    assert_eq!(succeeds(&args), offline);
    assert_eq!(pcs.take(), Vec::<String>::new());
    // Past the PCK CRL's nextUpdate (10:00:35) only the CRL is fetched again;
    // verification at that time then refuses the expired collateral.
    let mut later = args.to_vec();
    let i = later.iter().position(|a| *a == now).unwrap();
    later[i] = "2025-07-19T10:00:36Z";
    refuses(&later, &["tdx_quote refused", "CrlExpired"]);
    assert_eq!(pcs.take(), [expected[2].clone()]);
}

#[test]
fn attest_fetch_fills_the_cache_for_an_offline_sgx_verification() {
    let (routes, expected) = pcs_for(
        "sgx/dcap-qvl/sgx_quote_collateral.json",
        "sgx",
        "00A067110000",
        "processor",
    );
    let pcs = Pcs::start(routes);
    let cache = tempfile::tempdir().unwrap();
    let quote = evidence("sgx/dcap-qvl/sgx_quote");
    let root = format!("{}{ROOT_CRL}", pcs.base);
    let now = "2025-07-19T10:01:17Z";
    let out = succeeds(&[
        "attest",
        "fetch",
        "--tee",
        "sgx",
        &quote,
        "--cache",
        &cache.path().display().to_string(),
        "--pcs-url",
        &pcs.base,
        "--intel-root-crl-url",
        &root,
        "--now",
        now,
    ]);
    assert_eq!(pcs.take(), expected);
    let dir = cache.path().join("intel/sgx-00A067110000-processor");
    assert_eq!(
        out,
        format!(
            "{quote}: sgx collateral for FMSPC 00A067110000 (processor CA) in {} (4 fetched, 0 from the cache)\n",
            dir.display()
        )
    );
    drop(pcs);

    // The directory is ordinary --collateral input: no network, no --fetch.
    let v = succeeds(&[
        "attest",
        "verify",
        "--tee",
        "sgx",
        &quote,
        "--collateral",
        &dir.display().to_string(),
        "--now",
        now,
        "--json",
    ]);
    let offline = succeeds(&[
        "attest",
        "verify",
        "--tee",
        "sgx",
        &quote,
        "--collateral",
        &evidence("sgx/dcap-qvl/sgx_quote_collateral.json"),
        "--now",
        now,
        "--json",
    ]);
    assert_eq!(v, offline);
    let c: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(c["tcb"]["status"], "ConfigurationAndSWHardeningNeeded");
}

#[test]
fn no_network_is_one_line_naming_the_url_and_the_way_out() {
    let cache = tempfile::tempdir().unwrap();
    let quote = evidence("tdx/dcap-qvl/tdx_quote");
    for sub in ["verify", "fetch"] {
        let mut args = vec![
            "attest",
            sub,
            "--tee",
            "tdx",
            &quote,
            "--cache",
            cache.path().to_str().unwrap(),
            "--pcs-url",
            "http://127.0.0.1:1",
            "--now",
            "2025-07-19T10:00:34Z",
        ];
        if sub == "verify" {
            args.push("--fetch");
        }
        refuses(
            &args,
            &[
                "tdx_quote: could not fetch collateral from http://127.0.0.1:1/tdx/certification/v4/tcb?fmspc=B0C06F000000: no network connection",
                "pass the collateral files with --collateral DIR instead",
            ],
        );
    }
    // Source options without --fetch are a usage error, not ignored.
    refuses(
        &[
            "attest",
            "verify",
            "--tee",
            "tdx",
            &quote,
            "--pcs-url",
            "http://127.0.0.1:1",
        ],
        &["apply to --fetch only"],
    );
}
