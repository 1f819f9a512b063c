#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cocoon_attest::sim::SimReport::parse(data);
    let _ = cocoon_attest::verify(
        cocoon_attest::Tee::Sim,
        data,
        &cocoon_attest::Collateral::default(),
        cocoon_attest::UnixTime(1_700_000_000),
    );
});
