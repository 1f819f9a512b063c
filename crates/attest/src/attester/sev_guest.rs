//! SEV-SNP evidence through the `/dev/sev-guest` `SNP_GET_REPORT` ioctl: the
//! fallback for kernels without configfs-tsm (before 6.7).
//!
//! Layouts follow `include/uapi/linux/sev-guest.h`:
//!
//! * `struct snp_report_req { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }` (96 bytes)
//! * `struct snp_report_resp { u8 data[4000]; }`, where `data` holds the
//!   firmware's `MSG_REPORT_RSP`: `u32 status; u32 report_size; u8 rsvd[24];`
//!   then the 1184-byte ATTESTATION_REPORT at 0x20.
//! * `struct snp_guest_request_ioctl { u8 msg_version; u64 req_data;
//!   u64 resp_data; union { u64 exitinfo2; struct { u32 fw_error; u32 vmm_error; }; }; }`
//!   (32 bytes, `msg_version` padded to 8).
//! * `SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)` = `0xC020_5300`.
//!
//! The only `unsafe` is the `ioctl(2)` call itself, in [`ioctl_get_report`].

use std::path::PathBuf;

use super::pad64;
use crate::{snp, Attester, Error, Result, Tee};

/// Default device node.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// `struct snp_report_req`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpReportReq {
    /// Report data placed in the report (REPORT_DATA).
    pub user_data: [u8; 64],
    /// VMPL the report is requested for (must be >= the caller's VMPL).
    pub vmpl: u32,
    /// Must be zero.
    pub rsvd: [u8; 28],
}

/// Size of `snp_report_resp.data`.
pub const RESP_LEN: usize = 4000;
/// Offset of the report inside `MSG_REPORT_RSP`.
pub const RESP_REPORT_OFFSET: usize = 0x20;

/// `struct snp_report_resp`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SnpReportResp {
    /// `MSG_REPORT_RSP` as written by the firmware.
    pub data: [u8; RESP_LEN],
}

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnpGuestRequestIoctl {
    /// Message version, must be non-zero (1).
    pub msg_version: u8,
    /// User address of the request structure.
    pub req_data: u64,
    /// User address of the response structure.
    pub resp_data: u64,
    /// Firmware error (low 32 bits) and VMM error (high 32 bits) on failure.
    pub exitinfo2: u64,
}

/// `_IOWR(type, nr, size)` on x86-64 (and every architecture with the
/// generic ioctl encoding): dir 3 << 30 | size << 16 | type << 8 | nr.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u64 {
    (3u64 << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr as u64
}

/// `SNP_GET_REPORT`.
pub const SNP_GET_REPORT: u64 = iowr(b'S', 0, std::mem::size_of::<SnpGuestRequestIoctl>());

impl SnpReportReq {
    /// A request for `report_data` (zero-padded) at `vmpl`.
    pub fn new(report_data: &[u8], vmpl: u32) -> Result<Self> {
        Ok(SnpReportReq {
            user_data: pad64("report data", report_data)?,
            vmpl,
            rsvd: [0; 28],
        })
    }
}

fn fail(detail: String) -> Error {
    Error::Attester {
        attester: "/dev/sev-guest",
        detail,
    }
}

/// Extracts the report from a `MSG_REPORT_RSP` (the response data). Never panics.
pub fn parse_response(data: &[u8]) -> Result<Vec<u8>> {
    let u32_at = |off: usize| {
        data.get(off..off + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let (Some(status), Some(size)) = (u32_at(0), u32_at(4)) else {
        return Err(fail(format!("response is {} bytes", data.len())));
    };
    if status != 0 {
        return Err(fail(format!(
            "firmware refused the report request: status {status:#x}{}",
            if status == 0x16 {
                " (invalid parameters: is the VMPL lower than the guest's?)"
            } else {
                ""
            }
        )));
    }
    let size = size as usize;
    if size != snp::REPORT_LEN {
        return Err(fail(format!(
            "report size {size}, expected {}",
            snp::REPORT_LEN
        )));
    }
    data.get(RESP_REPORT_OFFSET..RESP_REPORT_OFFSET + size)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| fail(format!("response is {} bytes", data.len())))
}

/// Describes a failed ioctl: errno plus the firmware / VMM codes.
fn describe_failure(err: &std::io::Error, exitinfo2: u64) -> String {
    let fw = exitinfo2 as u32;
    let vmm = (exitinfo2 >> 32) as u32;
    let hint = match err.raw_os_error() {
        Some(25) => " (not an SEV guest device)",
        Some(1) | Some(13) => " (needs root or access to the device)",
        _ => "",
    };
    format!("SNP_GET_REPORT failed: {err}{hint}; fw_error {fw:#x}, vmm_error {vmm:#x}")
}

/// Issues `SNP_GET_REPORT` on the open device and returns the response data.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn ioctl_get_report(
    dev: &std::fs::File,
    req: &SnpReportReq,
) -> std::result::Result<SnpReportResp, String> {
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_ulong};
    extern "C" {
        fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    }
    let mut resp = SnpReportResp {
        data: [0; RESP_LEN],
    };
    let mut arg = SnpGuestRequestIoctl {
        msg_version: 1,
        req_data: req as *const SnpReportReq as u64,
        resp_data: &mut resp as *mut SnpReportResp as u64,
        exitinfo2: 0,
    };
    // SAFETY: `dev` is an open file descriptor for the lifetime of the call.
    // `arg` is a #[repr(C)] snp_guest_request_ioctl (layout checked by the
    // tests) whose req_data/resp_data point to a live #[repr(C)]
    // snp_report_req (read by the kernel) and snp_report_resp (4000 bytes,
    // written by the kernel), both outliving the call; the kernel writes
    // only inside `arg` and `resp`. No Rust reference to `resp` or `arg` is
    // used while the kernel holds the pointers.
    let rc = unsafe {
        ioctl(
            dev.as_raw_fd(),
            SNP_GET_REPORT as c_ulong,
            &mut arg as *mut SnpGuestRequestIoctl,
        )
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        return Err(describe_failure(&err, arg.exitinfo2));
    }
    Ok(resp)
}

#[cfg(not(target_os = "linux"))]
fn ioctl_get_report(
    _dev: &std::fs::File,
    _req: &SnpReportReq,
) -> std::result::Result<SnpReportResp, String> {
    Err("the sev-guest ioctl exists only on Linux".into())
}

/// SEV-SNP attester over `/dev/sev-guest` (`SNP_GET_REPORT`). Evidence is the
/// raw 1184-byte report, as from configfs-tsm.
#[derive(Debug, Clone)]
pub struct SevGuestAttester {
    device: PathBuf,
    vmpl: u32,
}

impl SevGuestAttester {
    /// An attester over `device` (normally [`SEV_GUEST_DEVICE`]) requesting
    /// reports at `vmpl` (0 for a guest without a paravisor).
    pub fn new(device: impl Into<PathBuf>, vmpl: u32) -> Self {
        SevGuestAttester {
            device: device.into(),
            vmpl,
        }
    }
}

impl Attester for SevGuestAttester {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>> {
        let req = SnpReportReq::new(report_data, self.vmpl)?;
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.device)
            .map_err(|e| fail(format!("open {}: {e}", self.device.display())))?;
        let resp = ioctl_get_report(&dev, &req)
            .map_err(|e| fail(format!("{}: {e}", self.device.display())))?;
        parse_response(&resp.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn struct_layouts_match_the_kernel_uapi() {
        assert_eq!(size_of::<SnpReportReq>(), 96);
        assert_eq!(offset_of!(SnpReportReq, vmpl), 64);
        assert_eq!(offset_of!(SnpReportReq, rsvd), 68);
        assert_eq!(size_of::<SnpReportResp>(), 4000);
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(align_of::<SnpGuestRequestIoctl>(), 8);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, msg_version), 0);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, req_data), 8);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, resp_data), 16);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, exitinfo2), 24);
        // The value from <linux/sev-guest.h> on x86-64.
        assert_eq!(SNP_GET_REPORT, 0xC020_5300);
    }

    #[test]
    fn request_pads_report_data_and_refuses_oversize() {
        let r = SnpReportReq::new(b"abc", 1).unwrap();
        assert_eq!(&r.user_data[..3], b"abc");
        assert!(r.user_data[3..].iter().all(|b| *b == 0));
        assert_eq!(r.vmpl, 1);
        assert_eq!(r.rsvd, [0; 28]);
        assert!(SnpReportReq::new(&[0; 65], 0).is_err());
    }

    #[test]
    fn response_parsing() {
        let report = crate::testdata::read("snp/trustee/test-report.bin");
        let mut data = vec![0u8; RESP_LEN];
        data[4..8].copy_from_slice(&(snp::REPORT_LEN as u32).to_le_bytes());
        data[RESP_REPORT_OFFSET..RESP_REPORT_OFFSET + snp::REPORT_LEN].copy_from_slice(&report);
        assert_eq!(parse_response(&data).unwrap(), report);

        let mut bad = data.clone();
        bad[0] = 0x16;
        let e = parse_response(&bad).unwrap_err().to_string();
        assert!(e.contains("status 0x16") && e.contains("VMPL"), "{e}");
        let mut bad = data.clone();
        bad[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(parse_response(&bad)
            .unwrap_err()
            .to_string()
            .contains("report size 5000"));
        assert!(parse_response(&data[..100]).is_err());
        assert!(parse_response(&[]).is_err());
    }

    #[test]
    fn absent_device_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = SevGuestAttester::new(dir.path().join("sev-guest"), 0);
        assert_eq!(a.tee(), Tee::Snp);
        let e = a.evidence(b"x").unwrap_err().to_string();
        assert!(e.contains("open") && e.contains("sev-guest"), "{e}");
        assert!(a.evidence(&[0; 65]).is_err());
    }

    /// A regular file in place of the device: the real ioctl runs and the
    /// kernel answers ENOTTY, reported as "not an SEV guest device".
    #[cfg(target_os = "linux")]
    #[test]
    fn non_device_file_is_refused_by_the_kernel() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = SevGuestAttester::new(f.path(), 0)
            .evidence(b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SNP_GET_REPORT failed"), "{e}");
        assert!(e.contains("not an SEV guest device"), "{e}");
    }
}
