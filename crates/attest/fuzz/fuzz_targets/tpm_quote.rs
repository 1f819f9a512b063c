#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cocoon_attest::az_snp_vtpm::TpmsAttest::parse(data);
});
