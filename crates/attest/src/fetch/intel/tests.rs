use std::collections::BTreeMap;

use base64::Engine as _;
use cocoon_testkit::http::{ok, url_encode, Reply, StubServer as Pcs};

use super::*;
use crate::testdata::{at, path, read};
use crate::{Collateral, TcbStatus};

/// A fetcher that asks the PCS stand-in instead of Intel.
trait PcsFetcher {
    fn fetcher(&self, cache: &Path) -> Fetcher;
}

impl PcsFetcher for Pcs {
    fn fetcher(&self, cache: &Path) -> Fetcher {
        Fetcher::new(cache)
            .with_pcs_base(&self.base)
            .with_intel_root_crl_url(&format!("{}{ROOT_CRL}", self.base))
    }
}

const ROOT_CRL: &str = "/IntelSGXRootCA.der";
const TDX_NOW: &str = "2025-07-19T10:00:34Z";
const SGX_NOW: &str = "2025-07-19T10:01:17Z";
const GO_NOW: &str = "2023-07-01T01:00:00Z";

const TDX_TCB: &str = "/tdx/certification/v4/tcb?fmspc=B0C06F000000";
const TDX_QE: &str = "/tdx/certification/v4/qe/identity";
const PLATFORM_CRL: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";

/// The captured PCS answers behind one of the dcap-qvl collateral JSON
/// files: each signed body wrapped as PCS sends it (`{"tcbInfo":...,
/// "signature":...}`), CRLs as DER, issuer chains URL-encoded in headers.
struct Captured {
    tcb_body: String,
    tcb_chain: String,
    qe_body: String,
    qe_chain: String,
    pck_crl: Vec<u8>,
    pck_chain: String,
    root_crl: Vec<u8>,
}

fn captured(rel: &str) -> Captured {
    let c: serde_json::Value = serde_json::from_slice(&read(rel)).unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    Captured {
        tcb_body: format!(
            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
            s("tcb_info"),
            s("tcb_info_signature")
        ),
        tcb_chain: s("tcb_info_issuer_chain"),
        qe_body: format!(
            "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
            s("qe_identity"),
            s("qe_identity_signature")
        ),
        qe_chain: s("qe_identity_issuer_chain"),
        pck_crl: hex::decode(s("pck_crl")).unwrap(),
        pck_chain: s("pck_crl_issuer_chain"),
        root_crl: hex::decode(s("root_ca_crl")).unwrap(),
    }
}

fn routes(c: &Captured, tcb: &str, qe: &str, pck_crl: &str) -> BTreeMap<String, Reply> {
    let mut r = BTreeMap::new();
    r.insert(
        tcb.to_string(),
        ok(
            c.tcb_body.clone().into_bytes(),
            &[
                ("TCB-Info-Issuer-Chain", &url_encode(&c.tcb_chain)),
                ("Content-Type", "application/json"),
            ],
        ),
    );
    r.insert(
        qe.to_string(),
        ok(
            c.qe_body.clone().into_bytes(),
            &[(
                "SGX-Enclave-Identity-Issuer-Chain",
                &url_encode(&c.qe_chain),
            )],
        ),
    );
    r.insert(
        pck_crl.to_string(),
        ok(
            c.pck_crl.clone(),
            &[("SGX-PCK-CRL-Issuer-Chain", &url_encode(&c.pck_chain))],
        ),
    );
    r.insert(
        ROOT_CRL.to_string(),
        ok(
            c.root_crl.clone(),
            &[("Content-Type", "application/pkix-crl")],
        ),
    );
    r
}

fn tdx_server() -> Pcs {
    let c = captured("tdx/dcap-qvl/tdx_quote_collateral.json");
    Pcs::start(routes(&c, TDX_TCB, TDX_QE, PLATFORM_CRL))
}

fn tdx_requests() -> Vec<String> {
    [TDX_TCB, TDX_QE, PLATFORM_CRL, ROOT_CRL]
        .map(String::from)
        .to_vec()
}

fn offline(tee: Tee, quote: &str, collateral: &str, now: &str) -> crate::Result<crate::Claims> {
    let c = Collateral::from_paths(&[path(collateral)]).unwrap();
    crate::verify(tee, &read(quote), &c, at(now))
}

fn cache_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn pck_info_and_urls_follow_the_pcs_v4_format() {
    let p = PckInfo::from_quote(Tee::Tdx, &read("tdx/dcap-qvl/tdx_quote")).unwrap();
    assert_eq!(
        (p.fmspc_hex().as_str(), p.ca),
        ("B0C06F000000", PckCa::Platform)
    );
    let u = p.urls(INTEL_PCS, INTEL_ROOT_CA_CRL);
    assert_eq!(
        u.all(),
        vec![
            "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=B0C06F000000",
            "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
            "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der",
        ]
    );
    assert_eq!(p.cache_name(), "tdx-B0C06F000000-platform");

    let p = PckInfo::from_quote(Tee::Sgx, &read("sgx/dcap-qvl/sgx_quote")).unwrap();
    assert_eq!(
        (p.fmspc_hex().as_str(), p.ca),
        ("00A067110000", PckCa::Processor)
    );
    let u = p.urls(
        "https://pccs.example:8081/",
        "https://pccs.example:8081/sgx/certification/v4/rootcacrl",
    );
    assert_eq!(
        u.tcb_info,
        "https://pccs.example:8081/sgx/certification/v4/tcb?fmspc=00A067110000"
    );
    assert_eq!(
        u.qe_identity,
        "https://pccs.example:8081/sgx/certification/v4/qe/identity"
    );
    assert_eq!(
        u.pck_crl,
        "https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
    );

    // TDX v5 and the go-tdx-guest quote (PEM chain ending in \n, trailing bytes).
    let p = PckInfo::from_quote(Tee::Tdx, &read("tdx/dcap-qvl/tdx_quote_outdated")).unwrap();
    assert_eq!(p.fmspc_hex(), "90C06F000000");
    let p = PckInfo::from_quote(
        Tee::Tdx,
        &read("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"),
    )
    .unwrap();
    assert_eq!(
        (p.fmspc_hex().as_str(), p.ca),
        ("50806F000000", PckCa::Platform)
    );

    // Wrong kind of quote, or not a quote: refused, no panic.
    let e = PckInfo::from_quote(Tee::Sgx, &read("tdx/dcap-qvl/tdx_quote")).unwrap_err();
    assert!(e.to_string().contains("not sgx"), "{e}");
    assert!(PckInfo::from_quote(Tee::Tdx, &read("snp/trustee/test-report.bin")).is_err());
    assert!(PckInfo::from_quote(Tee::Snp, &read("tdx/dcap-qvl/tdx_quote")).is_err());
}

#[test]
fn tdx_fetch_verifies_like_the_offline_files_then_serves_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let pcs = tdx_server();
    let f = pcs.fetcher(cache.path());
    let quote = read("tdx/dcap-qvl/tdx_quote");

    let mut c = Collateral::default();
    let urls = f.complete(Tee::Tdx, &quote, &mut c, at(TDX_NOW)).unwrap();
    assert_eq!(
        urls,
        tdx_requests()
            .iter()
            .map(|t| format!("{}{t}", pcs.base))
            .collect::<Vec<_>>()
    );
    assert_eq!(pcs.take(), tdx_requests());
    let fetched = crate::verify(Tee::Tdx, &quote, &c, at(TDX_NOW)).unwrap();
    let want = offline(
        Tee::Tdx,
        "tdx/dcap-qvl/tdx_quote",
        "tdx/dcap-qvl/tdx_quote_collateral.json",
        TDX_NOW,
    )
    .unwrap();
    assert_eq!(fetched, want);
    assert_eq!(fetched.tcb.status, TcbStatus::UpToDate);

    // The layout the file loader reads, keyed by TEE, FMSPC and CA.
    let dir = cache.path().join("intel/tdx-B0C06F000000-platform");
    assert_eq!(
        cache_files(&dir),
        [
            "pck_crl.der",
            "pck_crl_issuer_chain.pem",
            "qe_identity.json",
            "root_ca_crl.der",
            "tcb_info.json",
            "tcb_info_issuer_chain.pem"
        ]
    );
    let from_dir = Collateral::from_paths(&[&dir]).unwrap();
    assert_eq!(
        crate::verify(Tee::Tdx, &quote, &from_dir, at(TDX_NOW)).unwrap(),
        want
    );

    // Second time, still before every nextUpdate: no request at all.
    let mut c = Collateral::default();
    assert_eq!(
        f.complete(Tee::Tdx, &quote, &mut c, at(TDX_NOW)).unwrap(),
        urls
    );
    assert_eq!(pcs.take(), Vec::<String>::new());
    assert_eq!(
        crate::verify(Tee::Tdx, &quote, &c, at(TDX_NOW)).unwrap(),
        want
    );

    // Collateral given explicitly is not fetched.
    let mut c = Collateral::from_paths(&[path("tdx/dcap-qvl/tdx_quote_collateral.json")]).unwrap();
    assert!(f
        .complete(Tee::Tdx, &quote, &mut c, at("2030-01-01T00:00:00Z"))
        .unwrap()
        .is_empty());
    assert_eq!(pcs.take(), Vec::<String>::new());
}

#[test]
fn sgx_fetch_asks_for_the_processor_ca_and_verifies_like_the_offline_files() {
    let cache = tempfile::tempdir().unwrap();
    let c = captured("sgx/dcap-qvl/sgx_quote_collateral.json");
    let tcb = "/sgx/certification/v4/tcb?fmspc=00A067110000";
    let qe = "/sgx/certification/v4/qe/identity";
    let crl = "/sgx/certification/v4/pckcrl?ca=processor&encoding=der";
    let mut r = routes(&c, tcb, qe, crl);
    // PCS API v3's header name for the TCB info chain is accepted too.
    let tcb_reply = r.get_mut(tcb).unwrap();
    tcb_reply.headers[0].0 = "SGX-TCB-Info-Issuer-Chain".into();
    let pcs = Pcs::start(r);
    let f = pcs.fetcher(cache.path());
    let quote = read("sgx/dcap-qvl/sgx_quote");

    let mut coll = Collateral::default();
    f.complete(Tee::Sgx, &quote, &mut coll, at(SGX_NOW))
        .unwrap();
    assert_eq!(pcs.take(), vec![tcb, qe, crl, ROOT_CRL]);
    let got = crate::verify(Tee::Sgx, &quote, &coll, at(SGX_NOW)).unwrap();
    let want = offline(
        Tee::Sgx,
        "sgx/dcap-qvl/sgx_quote",
        "sgx/dcap-qvl/sgx_quote_collateral.json",
        SGX_NOW,
    )
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(got.tcb.status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    assert_eq!(got.tcb.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(cache
        .path()
        .join("intel/sgx-00A067110000-processor/tcb_info.json")
        .is_file());
}

#[test]
fn raw_pcs_responses_are_cached_byte_for_byte() {
    // go-tdx-guest holds real PCS response bodies; its quote matches no TCB
    // level, and the fetched collateral must say so exactly as the files do.
    let cache = tempfile::tempdir().unwrap();
    let tcb_chain = String::from_utf8(read("tdx/go-tdx-guest/tcb_info_issuer_chain.pem")).unwrap();
    let pck_chain = String::from_utf8(read("tdx/go-tdx-guest/pck_crl_issuer_chain.pem")).unwrap();
    let tcb = "/tdx/certification/v4/tcb?fmspc=50806F000000";
    let mut r = BTreeMap::new();
    r.insert(
        tcb.to_string(),
        ok(
            read("tdx/go-tdx-guest/sample_tcbInfo_response"),
            &[("TCB-Info-Issuer-Chain", &url_encode(&tcb_chain))],
        ),
    );
    r.insert(
        TDX_QE.to_string(),
        ok(
            read("tdx/go-tdx-guest/sample_qeIdentity_response"),
            &[("SGX-Enclave-Identity-Issuer-Chain", &url_encode(&tcb_chain))],
        ),
    );
    r.insert(
        PLATFORM_CRL.to_string(),
        ok(
            read("tdx/go-tdx-guest/pckcrl"),
            &[("SGX-PCK-CRL-Issuer-Chain", &url_encode(&pck_chain))],
        ),
    );
    r.insert(
        ROOT_CRL.to_string(),
        ok(read("tdx/go-tdx-guest/rootcrl.der"), &[]),
    );
    let pcs = Pcs::start(r);
    let quote = read("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat");
    let mut c = Collateral::default();
    pcs.fetcher(cache.path())
        .complete(Tee::Tdx, &quote, &mut c, at(GO_NOW))
        .unwrap();
    assert_eq!(pcs.take(), vec![tcb, TDX_QE, PLATFORM_CRL, ROOT_CRL]);
    let dir = cache.path().join("intel/tdx-50806F000000-platform");
    for (file, src) in [
        ("tcb_info.json", "sample_tcbInfo_response"),
        ("qe_identity.json", "sample_qeIdentity_response"),
        ("pck_crl.der", "pckcrl"),
        ("root_ca_crl.der", "rootcrl.der"),
        ("tcb_info_issuer_chain.pem", "tcb_info_issuer_chain.pem"),
        ("pck_crl_issuer_chain.pem", "pck_crl_issuer_chain.pem"),
    ] {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            read(&format!("tdx/go-tdx-guest/{src}")),
            "{file}"
        );
    }
    let e = crate::verify(Tee::Tdx, &quote, &c, at(GO_NOW)).unwrap_err();
    let want = offline(
        Tee::Tdx,
        "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
        "tdx/go-tdx-guest",
        GO_NOW,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Tcb { .. }), "{e}");
    assert_eq!(e.to_string(), want.to_string());
}

#[test]
fn items_past_their_next_update_are_refetched_and_the_rest_served_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let pcs = tdx_server();
    let f = pcs.fetcher(cache.path());
    let quote = read("tdx/dcap-qvl/tdx_quote");
    let fetch = |now: &str| {
        let r = f.dcap(Tee::Tdx, &quote, at(now)).unwrap();
        let seen = pcs.take();
        assert_eq!(
            r.fetched,
            seen.iter()
                .map(|t| format!("{}{t}", pcs.base))
                .collect::<Vec<_>>()
        );
        seen
    };
    assert_eq!(fetch(TDX_NOW), tdx_requests());
    // nextUpdate: PCK CRL 10:00:35, TCB info 10:16:03, QE identity 10:32:27
    // (2025-07-19), root CA CRL 2026-04-03.
    assert_eq!(fetch("2025-07-19T10:00:35Z"), [PLATFORM_CRL]);
    assert_eq!(fetch("2025-07-19T10:20:00Z"), [TDX_TCB, PLATFORM_CRL]);
    assert_eq!(fetch("2025-07-19T10:32:26Z"), [TDX_TCB, PLATFORM_CRL]);
    assert_eq!(fetch("2026-05-01T00:00:00Z"), tdx_requests());
    // A cache file that no longer parses is fetched again, whatever the time.
    let dir = cache.path().join("intel/tdx-B0C06F000000-platform");
    std::fs::write(dir.join("root_ca_crl.der"), b"junk").unwrap();
    std::fs::remove_file(dir.join("pck_crl_issuer_chain.pem")).unwrap();
    assert_eq!(fetch(TDX_NOW), [PLATFORM_CRL, ROOT_CRL]);
    assert_eq!(fetch(TDX_NOW), Vec::<String>::new());
}

#[test]
fn a_tampered_tcb_info_is_cached_but_refused_by_verification_and_replaced_once_stale() {
    let cache = tempfile::tempdir().unwrap();
    let c = captured("tdx/dcap-qvl/tdx_quote_collateral.json");
    let mut tampered = c.tcb_body.clone();
    let at_pos = tampered.find("\"tcbEvaluationDataNumber\":17").unwrap();
    tampered.replace_range(at_pos..at_pos + 28, "\"tcbEvaluationDataNumber\":18");
    let pcs = tdx_server();
    let good = pcs.reply(TDX_TCB).unwrap();
    let mut bad = good.clone();
    bad.body = tampered.into_bytes();
    pcs.set(TDX_TCB, bad);
    let f = pcs.fetcher(cache.path());
    let quote = read("tdx/dcap-qvl/tdx_quote");

    let mut coll = Collateral::default();
    f.complete(Tee::Tdx, &quote, &mut coll, at(TDX_NOW))
        .unwrap();
    let e = crate::verify(Tee::Tdx, &quote, &coll, at(TDX_NOW)).unwrap_err();
    assert!(matches!(e, Error::Dcap { .. }), "{e}");
    assert!(
        e.to_string()
            .ends_with("Signature is invalid for tcb_info in quote_collateral"),
        "{e}"
    );
    pcs.take();

    // Once the cached TCB info is past its nextUpdate, the genuine one replaces it.
    pcs.set(TDX_TCB, good);
    f.dcap(Tee::Tdx, &quote, at("2025-07-19T10:20:00Z"))
        .unwrap();
    assert_eq!(pcs.take(), [TDX_TCB, PLATFORM_CRL]);
    let mut coll = Collateral::default();
    f.complete(Tee::Tdx, &quote, &mut coll, at(TDX_NOW))
        .unwrap();
    assert_eq!(pcs.take(), Vec::<String>::new());
    assert!(crate::verify(Tee::Tdx, &quote, &coll, at(TDX_NOW)).is_ok());
}

#[test]
fn a_new_tcb_signing_chain_replaces_the_qe_identity_too() {
    let cache = tempfile::tempdir().unwrap();
    let pcs = tdx_server();
    let f = pcs.fetcher(cache.path());
    let quote = read("tdx/dcap-qvl/tdx_quote");
    f.dcap(Tee::Tdx, &quote, at(TDX_NOW)).unwrap();
    pcs.take();
    // Another (older) generation of the TCB signing certificate.
    let other = String::from_utf8(read("tdx/go-tdx-guest/tcb_info_issuer_chain.pem")).unwrap();
    let mut tcb = pcs.reply(TDX_TCB).unwrap();
    tcb.headers[0].1 = url_encode(&other);
    pcs.set(TDX_TCB, tcb);
    // The TCB info is stale, the QE identity is not, but its chain file
    // is about to change: both are fetched, and they disagree.
    let e = f
        .dcap(Tee::Tdx, &quote, at("2025-07-19T10:20:00Z"))
        .unwrap_err()
        .to_string();
    assert_eq!(pcs.take(), [TDX_TCB, TDX_QE, PLATFORM_CRL]);
    assert!(
        e.contains("issuer chain differs from the TCB info's"),
        "{e}"
    );
    // Nothing was written: the earlier, consistent entry is intact.
    let dir = cache.path().join("intel/tdx-B0C06F000000-platform");
    assert_ne!(
        std::fs::read_to_string(dir.join("tcb_info_issuer_chain.pem")).unwrap(),
        other
    );
    // When PCS serves both with the new chain, both are stored.
    let mut qe = pcs.reply(TDX_QE).unwrap();
    qe.headers[0].1 = url_encode(&other);
    pcs.set(TDX_QE, qe);
    f.dcap(Tee::Tdx, &quote, at("2025-07-19T10:20:00Z"))
        .unwrap();
    assert_eq!(pcs.take(), [TDX_TCB, TDX_QE, PLATFORM_CRL]);
    assert_eq!(
        std::fs::read_to_string(dir.join("tcb_info_issuer_chain.pem")).unwrap(),
        other
    );
}

#[test]
fn no_network_is_one_clear_error_and_caches_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(cache.path())
        .with_pcs_base("http://127.0.0.1:1")
        .with_intel_root_crl_url("http://127.0.0.1:1/IntelSGXRootCA.der");
    let e = f
        .complete(
            Tee::Tdx,
            &read("tdx/dcap-qvl/tdx_quote"),
            &mut Collateral::default(),
            at(TDX_NOW),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "could not fetch collateral from http://127.0.0.1:1/tdx/certification/v4/tcb?fmspc=B0C06F000000: no network connection"
        ),
        "{e}"
    );
    assert!(
        e.ends_with("with no network, pass the collateral files with --collateral DIR instead"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(cache_files(cache.path()), Vec::<String>::new());

    // The server goes away after a first fetch: what is cached and current
    // is still served; a stale item names its URL.
    let pcs = tdx_server();
    let f = pcs.fetcher(cache.path());
    let quote = read("tdx/dcap-qvl/tdx_quote");
    f.dcap(Tee::Tdx, &quote, at(TDX_NOW)).unwrap();
    let base = pcs.base.clone();
    drop(pcs);
    f.dcap(Tee::Tdx, &quote, at(TDX_NOW)).unwrap();
    let e = f
        .dcap(Tee::Tdx, &quote, at("2025-07-19T10:20:00Z"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "could not fetch collateral from {base}{TDX_TCB}: no network connection"
        )),
        "{e}"
    );
}

#[test]
fn oversized_responses_are_refused_and_not_cached() {
    let cache = tempfile::tempdir().unwrap();
    let pcs = tdx_server();
    let mut big = pcs.reply(PLATFORM_CRL).unwrap();
    big.body = vec![b'0'; super::super::MAX_RESPONSE as usize + 1];
    pcs.set(PLATFORM_CRL, big);
    let e = pcs
        .fetcher(cache.path())
        .dcap(Tee::Tdx, &read("tdx/dcap-qvl/tdx_quote"), at(TDX_NOW))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "could not fetch collateral from {}{PLATFORM_CRL}: reading the response failed",
            pcs.base
        )),
        "{e}"
    );
    assert!(e.contains("larger than"), "{e}");
    assert_eq!(pcs.take(), [TDX_TCB, TDX_QE, PLATFORM_CRL]);
    assert!(!cache
        .path()
        .join("intel/tdx-B0C06F000000-platform")
        .exists());
}

#[test]
fn wrong_or_incomplete_answers_are_refused_before_caching() {
    let quote = read("tdx/dcap-qvl/tdx_quote");
    let sgx = captured("sgx/dcap-qvl/sgx_quote_collateral.json");
    let check = |target: &str, change: &dyn Fn(&mut Reply), fragments: &[&str]| {
        let cache = tempfile::tempdir().unwrap();
        let pcs = tdx_server();
        let mut r = pcs.reply(target).unwrap();
        change(&mut r);
        pcs.set(target, r);
        let e = pcs
            .fetcher(cache.path())
            .dcap(Tee::Tdx, &quote, at(TDX_NOW))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "could not fetch collateral from {}{target}: ",
                pcs.base
            )),
            "{e}"
        );
        for f in fragments {
            assert!(e.contains(f), "{f:?} not in {e}");
        }
        assert!(!e.contains('\n'), "{e}");
        assert!(!cache
            .path()
            .join("intel/tdx-B0C06F000000-platform")
            .exists());
    };
    check(
        TDX_TCB,
        &|r| r.headers.clear(),
        &["no TCB-Info-Issuer-Chain header"],
    );
    check(
        TDX_TCB,
        &|r| r.body = sgx.tcb_body.clone().into_bytes(),
        &["not tdx TCB info for FMSPC B0C06F000000", "\"SGX\""],
    );
    check(
        TDX_TCB,
        &|r| r.body = b"<html>maintenance</html>".to_vec(),
        &["not JSON"],
    );
    check(
        TDX_QE,
        &|r| r.headers[0].1 = url_encode(&sgx.pck_chain),
        &[
            "SGX-Enclave-Identity-Issuer-Chain header is unusable",
            "Intel SGX PCK",
        ],
    );
    check(
        TDX_QE,
        &|r| r.headers[0].1 = "%ZZ".into(),
        &["not URL-encoded"],
    );
    // SGX's Processor CA CRL where the Platform CA's is asked for.
    check(
        PLATFORM_CRL,
        &|r| r.body = sgx.pck_crl.clone(),
        &["Intel SGX PCK Processor CA"],
    );
    check(
        ROOT_CRL,
        &|r| {
            r.status = 503;
            r.headers = vec![
                ("Error-Code".into(), "Busy".into()),
                ("Error-Message".into(), "try later".into()),
            ];
        },
        &["HTTP 503 (Busy: try later)"],
    );
    check(
        TDX_TCB,
        &|r| r.status = 404,
        &["no tdx TCB info for FMSPC B0C06F000000 (HTTP 404)"],
    );
}

#[test]
fn crls_are_read_as_der_pem_or_hex() {
    let der = read("tdx/go-tdx-guest/rootcrl.der");
    assert_eq!(crl_der(&der).unwrap(), der);
    assert_eq!(crl_der(hex::encode(&der).as_bytes()).unwrap(), der);
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    assert_eq!(crl_der(pem.as_bytes()).unwrap(), der);
    assert!(crl_der(b"").is_err());
    assert!(crl_der(b"00ff").is_err());
    assert!(crl_der(&der[..der.len() - 1]).is_err());
}

#[test]
fn percent_decoding_keeps_plus_and_refuses_bad_escapes() {
    assert_eq!(percent_decode("a%2Bb+c%0A%20").unwrap(), "a+b+c\n ");
    assert_eq!(percent_decode("").unwrap(), "");
    for bad in ["%", "%4", "%G0", "%+1", "%C3"] {
        assert!(percent_decode(bad).is_none(), "{bad}");
    }
    let pem = String::from_utf8(read("tdx/go-tdx-guest/pck_crl_issuer_chain.pem")).unwrap();
    assert_eq!(percent_decode(&url_encode(&pem)).unwrap(), pem);
}
