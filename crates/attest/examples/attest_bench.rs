//! Verifications per second per TEE type, with a same-run baseline.
//!
//! ```text
//! cargo run --release -p cocoon-attest --example attest_bench -- [EVIDENCE_DIR] [ITERS] [ROUNDS]
//! ```
//!
//! `EVIDENCE_DIR` defaults to `../shared/testdata/evidence` beside the
//! repository. Each case verifies one real evidence set (and a fresh sim
//! report) `ITERS` times (default 200) at the time its SOURCES.md pins, in
//! `ROUNDS` rounds (default 5) alternating with rounds of the baseline; the
//! fastest round of each counts. Collateral is loaded
//! once, as a verifier with a collateral cache would; evidence parsing is
//! inside the loop. The baseline, measured in the same run, is one bare
//! ECDSA P-384/SHA-384 verification of the SNP report signature with the
//! VCEK's public key (already parsed): the "cost" column says how many such
//! verifications one full verification costs, which is the figure that
//! carries across machines and loads. `bench/attest.sh` wraps this.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cocoon_attest::{verify, Collateral, Tee, UnixTime};
use p384::ecdsa::signature::Verifier as _;
use x509_cert::der::Decode;

struct Case {
    name: &'static str,
    tee: Tee,
    evidence: Vec<u8>,
    collateral: Collateral,
    now: UnixTime,
}

fn at(s: &str) -> UnixTime {
    UnixTime::parse_rfc3339(s).expect("time")
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    let p = dir.join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn coll(dir: &Path, rel: &[&str]) -> Collateral {
    let paths: Vec<PathBuf> = rel.iter().map(|r| dir.join(r)).collect();
    Collateral::from_paths(&paths).expect("collateral")
}

/// Best-of-`rounds` rates (operations per second) of `iters` calls of the
/// baseline `base` and of `f`, measured in alternating rounds so that both
/// see the same machine load.
fn rates(iters: u32, rounds: u32, base: &mut dyn FnMut(), f: &mut dyn FnMut()) -> (f64, f64) {
    let time = |g: &mut dyn FnMut()| {
        let t0 = Instant::now();
        for _ in 0..iters {
            g();
        }
        t0.elapsed().as_secs_f64()
    };
    let (mut best_base, mut best_f) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds {
        best_base = best_base.min(time(base));
        best_f = best_f.min(time(f));
    }
    (f64::from(iters) / best_base, f64::from(iters) / best_f)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/evidence")
    });
    let iters: u32 = args.next().map_or(200, |s| s.parse().expect("ITERS"));
    let rounds: u32 = args.next().map_or(5, |s| s.parse().expect("ROUNDS"));

    // sim: a fresh platform, one report, its root trusted explicitly.
    let sim_dir = tempfile::tempdir().expect("tempdir");
    let sim = cocoon_attest::sim::init(&sim_dir.path().join("sim")).expect("sim init");
    let sim_report = sim.sign([7; 48], &[9; 32], b"bench", 1).expect("sim sign");
    let sim_coll = Collateral {
        sim_roots: vec![sim.root_der().expect("root")],
        ..Collateral::default()
    };

    let cases = vec![
        Case {
            name: "sim (P-384 report, sim root)",
            tee: Tee::Sim,
            evidence: sim_report,
            collateral: sim_coll,
            now: UnixTime::now(),
        },
        Case {
            name: "snp Milan VCEK (trustee A)",
            tee: Tee::Snp,
            evidence: read(&dir, "snp/trustee/test-report.bin"),
            collateral: coll(&dir, &["snp/trustee/test-vcek.der"]),
            now: at("2024-01-01T00:00:00Z"),
        },
        Case {
            name: "snp v3 VLEK (trustee B)",
            tee: Tee::Snp,
            evidence: read(&dir, "snp/trustee/test-vlek-report.bin"),
            collateral: coll(&dir, &["snp/trustee/test-vlek.der"]),
            now: at("2025-06-01T00:00:00Z"),
        },
        Case {
            name: "az-snp-vtpm (HCL + TPM quote, v1)",
            tee: Tee::AzSnpVtpm,
            evidence: read(&dir, "snp-azure-vtpm/trustee/evidence-v1.json"),
            collateral: Collateral::default(),
            now: at("2025-06-01T00:00:00Z"),
        },
        Case {
            name: "tdx quote v4 (dcap-qvl A)",
            tee: Tee::Tdx,
            evidence: read(&dir, "tdx/dcap-qvl/tdx_quote"),
            collateral: coll(&dir, &["tdx/dcap-qvl/tdx_quote_collateral.json"]),
            now: at("2025-07-19T10:00:34Z"),
        },
        Case {
            name: "sgx quote v3 (dcap-qvl)",
            tee: Tee::Sgx,
            evidence: read(&dir, "sgx/dcap-qvl/sgx_quote"),
            collateral: coll(&dir, &["sgx/dcap-qvl/sgx_quote_collateral.json"]),
            now: at("2025-07-19T10:01:17Z"),
        },
    ];

    // Baseline: bare ECDSA P-384 verify of trustee A's report signature.
    let report = read(&dir, "snp/trustee/test-report.bin");
    let parsed = cocoon_attest::snp::Report::parse(&report).expect("report");
    let vcek =
        x509_cert::Certificate::from_der(&read(&dir, "snp/trustee/test-vcek.der")).expect("vcek");
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
        vcek.tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
    )
    .expect("P-384 key");
    let sig = p384::ecdsa::Signature::from_scalars(parsed.sig_r, parsed.sig_s).expect("sig");
    let signed = &report[..cocoon_attest::snp::SIGNED_LEN];
    key.verify(signed, &sig)
        .expect("baseline signature verifies");
    let mut baseline = || {
        black_box(key.verify(black_box(signed), &sig)).ok();
    };

    println!("| case | TEE | verifications/s | baseline P-384 verifies/s (same rounds) | cost in P-384 verifies |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for c in &cases {
        let claims = verify(c.tee, &c.evidence, &c.collateral, c.now)
            .unwrap_or_else(|e| panic!("{}: expected a pass: {e}", c.name));
        assert_eq!(claims.tee, c.tee);
        let (base, r) = rates(iters, rounds, &mut baseline, &mut || {
            black_box(verify(c.tee, black_box(&c.evidence), &c.collateral, c.now)).ok();
        });
        println!(
            "| {} | `{}` | {r:.0} | {base:.0} | {:.2} |",
            c.name,
            c.tee,
            base / r
        );
    }
}
