#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cocoon_attest::dcap::parse_quote(cocoon_attest::Tee::Tdx, data);
});
