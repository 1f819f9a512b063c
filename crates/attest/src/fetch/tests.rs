use std::collections::BTreeMap;

use cocoon_testkit::http::{ok, StubServer};

use super::*;
use crate::testdata::{at, read};

/// A verification time inside the trustee VCEK's validity.
const NOW: UnixTime = UnixTime(1_704_067_200);

const TRUSTEE_A_PATH: &str = "/vcek/v1/Milan/c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115";

#[test]
fn kds_urls_follow_the_amd_format() {
    let r = Report::parse(&crate::snp::report_bytes(&read(
        "snp/virtee-sev/report_milan.hex",
    )))
    .unwrap();
    assert_eq!(
        vcek_url(AMD_KDS, &r, Product::Milan),
        "https://kdsintf.amd.com/vcek/v1/Milan/d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
    );
    // The reported TCB (ucode 115), not the current one (206).
    let r = Report::parse(&read("snp/trustee/test-report.bin")).unwrap();
    assert_eq!(
        vcek_url("http://x/", &r, Product::Milan),
        format!("http://x{TRUSTEE_A_PATH}")
    );
    // Turin: 8-byte hwid, FMC SPL first, TCB_VERSION in the Turin layout.
    let mut raw = read("snp/trustee/test-report.bin");
    raw[0] = 3;
    raw[0x188..0x18B].copy_from_slice(&[0x1A, 0x02, 0x00]);
    let r = Report::parse(&raw).unwrap();
    assert_eq!(r.cpuid_product(), Some(Product::Turin));
    assert_eq!(
        vcek_url(AMD_KDS, &r, Product::Turin),
        "https://kdsintf.amd.com/vcek/v1/Turin/c38427a30d4c7af9?fmcSPL=03&blSPL=00&teeSPL=00&snpSPL=00&ucodeSPL=115"
    );
}

#[test]
fn fetches_once_then_verifies_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let report = read("snp/trustee/test-report.bin");
    let server = StubServer::start(BTreeMap::from([(
        TRUSTEE_A_PATH.to_string(),
        ok(read("snp/trustee/test-vcek.der"), &[]),
    )]));
    let f = Fetcher::new(cache.path()).with_kds_base(&server.base);

    let mut c = Collateral::default();
    let urls = f.complete(Tee::Snp, &report, &mut c, NOW).unwrap();
    assert_eq!(urls, vec![format!("{}{TRUSTEE_A_PATH}", server.base)]);
    assert_eq!(server.take(), vec![TRUSTEE_A_PATH]);
    assert!(f.cache_path(&urls[0]).is_file());
    crate::verify(Tee::Snp, &report, &c, at("2024-01-01T00:00:00Z")).unwrap();

    // The server is gone: the second fetch is served by the cache.
    drop(server);
    let mut c = Collateral::default();
    assert_eq!(f.complete(Tee::Snp, &report, &mut c, NOW).unwrap(), urls);
    crate::verify(Tee::Snp, &report, &c, at("2024-01-01T00:00:00Z")).unwrap();
}

#[test]
fn no_network_is_one_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(cache.path()).with_kds_base("http://127.0.0.1:1");
    let e = f
        .complete(
            Tee::Snp,
            &read("snp/trustee/test-report.bin"),
            &mut Collateral::default(),
            NOW,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "could not fetch collateral from http://127.0.0.1:1{TRUSTEE_A_PATH}: no network connection"
        )),
        "{e}"
    );
    assert!(
        e.ends_with("with no network, pass the collateral files with --collateral DIR instead"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // Nothing was cached.
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
}

#[test]
fn unknown_chip_tries_milan_then_genoa() {
    let cache = tempfile::tempdir().unwrap();
    // No routes: every request is answered 404.
    let server = StubServer::start(BTreeMap::new());
    let f = Fetcher::new(cache.path()).with_kds_base(&server.base);
    let e = f
        .complete(
            Tee::Snp,
            &read("snp/trustee/test-report.bin"),
            &mut Collateral::default(),
            NOW,
        )
        .unwrap_err()
        .to_string();
    let seen = server.take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("/vcek/v1/Milan/"), "{seen:?}");
    assert!(seen[1].starts_with("/vcek/v1/Genoa/"), "{seen:?}");
    assert!(e.contains("HTTP 404"), "{e}");
}

#[test]
fn vlek_and_given_dcap_collateral_fetch_nothing() {
    let f = Fetcher::new("/nonexistent/cache").with_kds_base("http://127.0.0.1:1");
    let e = f
        .complete(
            Tee::Snp,
            &read("snp/trustee/test-vlek-report.bin"),
            &mut Collateral::default(),
            NOW,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("AMD KDS does not serve VLEKs"), "{e}");
    let q = read("tdx/dcap-qvl/tdx_quote");
    let mut c = Collateral::from_paths(&[crate::testdata::path(
        "tdx/dcap-qvl/tdx_quote_collateral.json",
    )])
    .unwrap();
    assert!(f.complete(Tee::Tdx, &q, &mut c, NOW).unwrap().is_empty());
    assert!(f
        .complete(Tee::Sim, b"", &mut Collateral::default(), NOW)
        .unwrap()
        .is_empty());
}

#[test]
fn azure_envelope_with_vcek_needs_no_fetch() {
    let f = Fetcher::new("/nonexistent/cache").with_kds_base("http://127.0.0.1:1");
    let ev = read("snp-azure-vtpm/trustee/evidence-v1.json");
    assert!(f
        .complete(Tee::AzSnpVtpm, &ev, &mut Collateral::default(), NOW)
        .unwrap()
        .is_empty());
}
