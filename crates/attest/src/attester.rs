//! Attesters: make evidence for given report data, behind one trait.
//!
//! * [`crate::sim::SimAttester`]: the software TEE.
//! * [`TsmAttester`]: SEV-SNP and TDX through Linux configfs-tsm
//!   (`/sys/kernel/config/tsm/report`); the root is injectable so tests use a
//!   fake tree.
//! * [`sev_guest::SevGuestAttester`]: SEV-SNP through the `/dev/sev-guest`
//!   `SNP_GET_REPORT` ioctl, the fallback for kernels without configfs-tsm
//!   (before 6.7). The crate's only `unsafe` is that ioctl call.
//! * [`az_vtpm::AzVtpmAttester`]: Azure confidential VMs, HCL report and TPM
//!   quote from the vTPM (`/dev/tpmrm0`), raw TPM 2.0 commands.
//! * [`CocoGuestApiAttester`]: the Confidential Containers guest API
//!   (`GET /aa/evidence?runtime_data=...`), base URL injectable.
//! * [`detect`]: picks whichever is present.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, Result, Tee};

pub mod az_vtpm;
pub mod sev_guest;

/// Produces evidence binding `report_data` (up to 64 bytes).
pub trait Attester: Send + Sync {
    /// The TEE this attester speaks for.
    fn tee(&self) -> Tee;
    /// Evidence whose report data is `report_data` (zero-padded to 64 bytes).
    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>>;
}

/// Default configfs-tsm report directory.
pub const TSM_ROOT: &str = "/sys/kernel/config/tsm/report";

fn pad64(what: &'static str, report_data: &[u8]) -> Result<[u8; 64]> {
    if report_data.len() > 64 {
        return Err(Error::InvalidInput {
            what,
            detail: format!("{} bytes, at most 64 allowed", report_data.len()),
        });
    }
    let mut b = [0u8; 64];
    b[..report_data.len()].copy_from_slice(report_data);
    Ok(b)
}

/// SEV-SNP / TDX evidence through configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    tee: Tee,
    /// How long to wait for `outblob` to appear (real configfs answers at once).
    pub wait: Duration,
}

static ENTRY_SEQ: AtomicU64 = AtomicU64::new(0);

impl TsmAttester {
    /// An attester over the tree at `root` for `tee` (Snp or Tdx).
    pub fn new(root: impl Into<PathBuf>, tee: Tee) -> Self {
        TsmAttester {
            root: root.into(),
            tee,
            wait: Duration::from_secs(2),
        }
    }

    fn fail(&self, detail: String) -> Error {
        Error::Attester {
            attester: "configfs-tsm",
            detail,
        }
    }

    fn read_attr(&self, dir: &Path, name: &str) -> Result<Vec<u8>> {
        let p = dir.join(name);
        let deadline = std::time::Instant::now() + self.wait;
        loop {
            match std::fs::read(&p) {
                Ok(b) => return Ok(b),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(self.fail(format!("read {}: {e}", p.display()))),
            }
        }
    }

    fn generate(&self, dir: &Path, rd: &[u8; 64]) -> Result<Vec<u8>> {
        let inblob = dir.join("inblob");
        std::fs::write(&inblob, rd)
            .map_err(|e| self.fail(format!("write {}: {e}", inblob.display())))?;
        let gen_before = self.read_attr(dir, "generation")?;
        let out = self.read_attr(dir, "outblob")?;
        let gen_after = self.read_attr(dir, "generation")?;
        if gen_before != gen_after {
            return Err(self
                .fail("another writer changed the report entry while it was read; retry".into()));
        }
        let provider = self.read_attr(dir, "provider")?;
        let provider = String::from_utf8_lossy(&provider).trim().to_string();
        let want = match self.tee {
            Tee::Snp => "sev_guest",
            Tee::Tdx => "tdx_guest",
            _ => "",
        };
        if provider != want {
            return Err(self.fail(format!(
                "provider is {provider:?}, expected {want:?} for {}",
                self.tee
            )));
        }
        if out.is_empty() {
            return Err(self.fail("outblob is empty".into()));
        }
        Ok(out)
    }
}

impl Attester for TsmAttester {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>> {
        let rd = pad64("report data", report_data)?;
        let name = format!(
            "cocoon-{}-{}",
            std::process::id(),
            ENTRY_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| self.fail(format!("create {}: {e}", dir.display())))?;
        let res = self.generate(&dir, &rd);
        // configfs removes the attributes with the directory; a fake tree
        // needs them removed first.
        if std::fs::remove_dir(&dir).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        res
    }
}

/// Evidence from the Confidential Containers guest API (attestation agent).
#[derive(Debug, Clone)]
pub struct CocoGuestApiAttester {
    base: String,
    tee: Tee,
    /// Network timeout.
    pub timeout: Duration,
}

/// Default base URL of the CoCo guest API.
pub const COCO_API: &str = "http://127.0.0.1:8006";

impl CocoGuestApiAttester {
    /// An attester for `tee` at `base` (e.g. `http://127.0.0.1:8006`).
    pub fn new(base: impl Into<String>, tee: Tee) -> Self {
        CocoGuestApiAttester {
            base: base.into(),
            tee,
            timeout: Duration::from_secs(30),
        }
    }

    fn fail(&self, detail: String) -> Error {
        Error::Attester {
            attester: "CoCo guest API",
            detail: format!("{} ({})", detail, self.base),
        }
    }
}

/// Percent-encodes every byte outside the RFC 3986 unreserved set.
fn percent_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

/// A minimal blocking HTTP/1.1 GET over plain TCP (loopback guest API only).
pub(crate) fn http_get(
    base: &str,
    path_query: &str,
    timeout: Duration,
) -> std::result::Result<(u16, Vec<u8>), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported".to_string())?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err("base URL must be http://HOST:PORT".into());
    }
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let sockaddr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| format!("resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {addr}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&sockaddr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: a request split over several segments can be answered and
    // closed by the server after the first, resetting the connection.
    let req = format!(
        "GET {path_query} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("receive: {e}"))?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response has no header end")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    let mut body = buf[end + 4..].to_vec();
    let mut chunked = false;
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            if let Ok(n) = v.trim().parse::<usize>() {
                body.truncate(n);
            }
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        body = dechunk(&body).ok_or("bad chunked body")?;
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

impl Attester for CocoGuestApiAttester {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn evidence(&self, report_data: &[u8]) -> Result<Vec<u8>> {
        pad64("report data", report_data)?;
        let q = format!("/aa/evidence?runtime_data={}", percent_encode(report_data));
        let (status, body) = http_get(&self.base, &q, self.timeout).map_err(|e| self.fail(e))?;
        if status != 200 {
            return Err(self.fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(body)
    }
}

/// Where [`detect`] looks.
#[derive(Debug, Clone)]
pub struct Probe {
    /// configfs-tsm report directory.
    pub tsm_root: PathBuf,
    /// Device nodes that name the TEE: (path, tee).
    pub devices: Vec<(PathBuf, Tee)>,
    /// TPM device to probe for the Azure HCL report NV index, if any.
    pub tpm: Option<PathBuf>,
    /// CoCo guest API base URL and TEE, if it should be tried.
    pub coco_api: Option<(String, Tee)>,
    /// A sim directory, if sim is allowed.
    pub sim: Option<PathBuf>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            tsm_root: PathBuf::from(TSM_ROOT),
            devices: vec![
                (PathBuf::from("/dev/sev-guest"), Tee::Snp),
                (PathBuf::from("/dev/tdx_guest"), Tee::Tdx),
            ],
            tpm: Some(PathBuf::from(az_vtpm::TPM_DEVICE)),
            coco_api: None,
            sim: None,
        }
    }
}

/// Picks the attester present on this machine: configfs-tsm (TEE named by
/// the guest device node), else the SNP guest device's ioctl, else an Azure
/// vTPM (a TPM holding the HCL report NV index), then the CoCo guest API if
/// configured and answering, then sim if a sim directory was given.
pub fn detect(probe: &Probe) -> Result<Box<dyn Attester>> {
    let mut tried = Vec::new();
    let present = probe.devices.iter().find(|(p, _)| p.exists());
    if probe.tsm_root.is_dir() {
        if let Some((_, tee)) = present {
            return Ok(Box::new(TsmAttester::new(&probe.tsm_root, *tee)));
        }
    }
    tried.push(format!("configfs-tsm at {}", probe.tsm_root.display()));
    if let Some((dev, Tee::Snp)) = present {
        return Ok(Box::new(sev_guest::SevGuestAttester::new(dev, 0)));
    }
    if let Some(tpm) = &probe.tpm {
        if az_vtpm::has_hcl_report(tpm) {
            return Ok(Box::new(az_vtpm::AzVtpmAttester::new(tpm)));
        }
        tried.push(format!("Azure vTPM HCL report at {}", tpm.display()));
    }
    if let Some((url, tee)) = &probe.coco_api {
        if http_get(url, "/", Duration::from_secs(2)).is_ok() {
            return Ok(Box::new(CocoGuestApiAttester::new(url.clone(), *tee)));
        }
        tried.push(format!("CoCo guest API at {url}"));
    }
    if let Some(dir) = &probe.sim {
        let platform = crate::sim::SimPlatform::open(dir)?;
        return Ok(Box::new(crate::sim::SimAttester::new(
            platform,
            [0; 48],
            &[],
        )?));
    }
    tried.push("sim (no directory given)".into());
    Err(Error::NoTee {
        tried: tried.join(", "),
    })
}

#[cfg(test)]
mod tests;
