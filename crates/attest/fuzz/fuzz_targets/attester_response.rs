#![no_main]
//! Device responses parsed by the attesters: the vTPM's TPM 2.0 responses
//! (NV_ReadPublic, NV_Read, PCR_Read, Quote) and the sev-guest
//! MSG_REPORT_RSP. The input is a sequence of responses, each prefixed by a
//! big-endian u16 length; the fake TPM answers commands with them in order.
use cocoon_attest::attester::az_vtpm::{collect_evidence, TpmTransport};
use libfuzzer_sys::fuzz_target;

struct Replay<'a>(&'a [u8]);

impl TpmTransport for Replay<'_> {
    fn transact(&mut self, _command: &[u8]) -> cocoon_attest::Result<Vec<u8>> {
        let d = self.0;
        if d.len() < 2 {
            return Ok(Vec::new());
        }
        let n = (usize::from(u16::from_be_bytes([d[0], d[1]]))).min(d.len() - 2);
        self.0 = &d[2 + n..];
        Ok(d[2..2 + n].to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = cocoon_attest::attester::sev_guest::parse_response(data);
    let _ = collect_evidence(&mut Replay(data), b"nonce");
});
