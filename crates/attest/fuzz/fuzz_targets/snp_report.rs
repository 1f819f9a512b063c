#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = cocoon_attest::snp::report_bytes(data);
    let _ = cocoon_attest::snp::Report::parse(&raw);
    // Full verification path with no certificates: must refuse, never panic.
    let _ = cocoon_attest::snp::verify_report(data, &[], cocoon_attest::UnixTime(1_700_000_000));
});
