#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = cocoon_attest::az_snp_vtpm::HclReport::parse(data) {
        let _ = r.ak_pub();
    }
});
