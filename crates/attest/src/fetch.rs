//! Fetching collateral from AMD KDS and Intel PCS into a local cache.
//!
//! Verification never needs the network: [`crate::Collateral::from_paths`]
//! reads everything from files. This module is the optional convenience on
//! top. For TDX and SGX quotes it fetches the DCAP collateral from Intel
//! PCS (or a PCCS) into a cache directory laid out the way the file loader
//! reads it, refetching items past their `nextUpdate` (see [`intel`]).
//!
//! For SEV-SNP evidence (a bare report, or an Azure vTPM envelope
//! without an embedded VCEK) it builds the AMD KDS VCEK URL
//!
//! ```text
//! {base}/vcek/v1/{Milan|Genoa|Turin}/{hwid}?blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN
//! {base}/vcek/v1/Turin/{hwid}?fmcSPL=NN&blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN
//! ```
//!
//! (`hwid` is the report's CHIP_ID in lowercase hex, only its first 8 bytes
//! on Turin; the SPLs are the REPORTED_TCB components, two digits at
//! least), fetches it once, and keeps it in a cache directory keyed by the
//! SHA-256 of the URL, so later verifications of the same chip and TCB work
//! offline. A VCEK is immutable for its URL, so a cached copy never goes
//! stale; whatever is fetched is still only a *candidate* and must chain to
//! the built-in AMD roots during verification.
//!
//! With no network the error names the URL and says to pass the collateral
//! with `--collateral DIR` instead. Every response is size-limited.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::snp::{Product, Report, TcbVersion, REPORT_LEN};
use crate::{Collateral, Error, Result, Tee, UnixTime};

pub mod intel;

pub use intel::{DcapFetch, PckCa, PckInfo, INTEL_PCS, INTEL_ROOT_CA_CRL};

/// The public AMD Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";

/// Largest response body accepted (a VCEK is about 1.4 KB, Intel TCB info
/// and PCK CRLs tens of KB).
pub const MAX_RESPONSE: u64 = 1 << 20;

/// Fetches collateral over HTTP(S) through a cache directory.
#[derive(Debug)]
pub struct Fetcher {
    agent: ureq::Agent,
    kds: String,
    pcs: String,
    intel_root_crl: String,
    cache: PathBuf,
}

/// The default cache directory: `$XDG_CACHE_HOME/cocoon/collateral`, else
/// `$HOME/.cache/cocoon/collateral`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("cocoon").join("collateral"))
}

/// The AMD KDS VCEK URL for `report`, assuming the chip is a `product`.
pub fn vcek_url(kds: &str, report: &Report, product: Product) -> String {
    let t = TcbVersion::decode(report.reported_tcb, product);
    let hwid = match product {
        Product::Turin => hex::encode(&report.chip_id[..8]),
        _ => hex::encode(report.chip_id),
    };
    let fmc = match t.fmc {
        Some(f) => format!("fmcSPL={f:02}&"),
        None => String::new(),
    };
    format!(
        "{}/vcek/v1/{}/{hwid}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        kds.trim_end_matches('/'),
        product.name(),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode
    )
}

/// Why a single GET failed.
enum GetError {
    /// The server answered 404: try another product.
    NotFound(String),
    /// Anything else: stop.
    Other(Error),
}

impl Fetcher {
    /// A fetcher using the public AMD KDS and Intel PCS and the cache
    /// directory `cache` (created on first store).
    pub fn new(cache: impl Into<PathBuf>) -> Self {
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .http_status_as_error(false)
            .user_agent(concat!("cocoon/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Fetcher {
            agent,
            kds: AMD_KDS.to_string(),
            pcs: INTEL_PCS.to_string(),
            intel_root_crl: INTEL_ROOT_CA_CRL.to_string(),
            cache: cache.into(),
        }
    }

    /// Uses another KDS base URL (a mirror, or a test server).
    pub fn with_kds_base(mut self, base: &str) -> Self {
        self.kds = base.trim_end_matches('/').to_string();
        self
    }

    /// Uses another Intel PCS base URL (a PCCS, or a test server). The
    /// paths below it are PCS v4's (`/tdx|sgx/certification/v4/...`).
    pub fn with_pcs_base(mut self, base: &str) -> Self {
        self.pcs = base.trim_end_matches('/').to_string();
        self
    }

    /// Uses another URL for the Intel SGX Root CA CRL (DER, or hex of DER
    /// as a PCCS serves it at `/sgx/certification/v4/rootcacrl`).
    pub fn with_intel_root_crl_url(mut self, url: &str) -> Self {
        self.intel_root_crl = url.to_string();
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Where the response for `url` is cached.
    pub fn cache_path(&self, url: &str) -> PathBuf {
        self.cache.join(format!(
            "{}.bin",
            hex::encode(Sha256::digest(url.as_bytes()))
        ))
    }

    /// Adds to `collateral` what `evidence` of kind `tee` needs and the
    /// collateral lacks, fetching it (or reading it from the cache).
    /// `now` is the verification time: cached Intel collateral past its
    /// `nextUpdate` at `now` is fetched again. Returns the URLs used
    /// (fetched or served from the cache). TEEs that need nothing
    /// fetchable, or whose collateral is already there, are left alone.
    pub fn complete(
        &self,
        tee: Tee,
        evidence: &[u8],
        collateral: &mut Collateral,
        now: UnixTime,
    ) -> Result<Vec<String>> {
        let report = match tee {
            Tee::Snp => {
                let raw = crate::snp::report_bytes(evidence);
                Report::parse(&raw)?
            }
            Tee::AzSnpVtpm => {
                let ev = crate::az_snp_vtpm::Evidence::parse(evidence)?;
                if ev.vcek.is_some() {
                    return Ok(Vec::new());
                }
                let snp = ev.hcl_report.get(0x20..0x20 + REPORT_LEN).ok_or_else(|| {
                    Error::malformed(tee, "HCL report too short for the SNP report")
                })?;
                Report::parse(snp)?
            }
            Tee::Tdx | Tee::Sgx => {
                if collateral.dcap.is_some() {
                    return Ok(Vec::new());
                }
                let fetched = self.dcap(tee, evidence, now)?;
                // Read back exactly as `--collateral DIR` would.
                collateral.dcap = Collateral::from_paths(&[&fetched.dir])?.dcap;
                return Ok(fetched.urls);
            }
            // Sim roots are local by design.
            Tee::Sim => return Ok(Vec::new()),
        };
        if report.signed_by_vlek() == Some(true) {
            if collateral.certs.is_empty() {
                return Err(Error::MissingCollateral {
                    tee,
                    what: "the VLEK certificate (AMD KDS does not serve VLEKs: the cloud provider does)",
                });
            }
            return Ok(Vec::new());
        }
        let (der, url) = self.vcek(tee, &report)?;
        collateral.certs.push(der);
        Ok(vec![url])
    }

    /// The VCEK for `report` (DER) and the URL it came from. A version 3
    /// report names its product; for version 2 each product is tried in
    /// turn until KDS knows the chip.
    pub fn vcek(&self, tee: Tee, report: &Report) -> Result<(Vec<u8>, String)> {
        if report.chip_id == [0u8; 64] {
            return Err(Error::MissingCollateral {
                tee,
                what: "the VCEK certificate (the report masks its chip id, so it cannot be fetched from AMD KDS)",
            });
        }
        let products: Vec<Product> = match report.cpuid_product() {
            Some(p) => vec![p],
            None => vec![Product::Milan, Product::Genoa],
        };
        let mut not_found = Vec::new();
        for p in products {
            let url = vcek_url(&self.kds, report, p);
            match self.get(&url) {
                Ok(b) => return Ok((b, url)),
                Err(GetError::NotFound(u)) => not_found.push(u),
                Err(GetError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Fetch {
            url: not_found.join(" and "),
            detail: "AMD KDS does not know this chip and TCB (HTTP 404)".into(),
        })
    }

    /// GET `url` through the cache.
    fn get(&self, url: &str) -> std::result::Result<Vec<u8>, GetError> {
        let path = self.cache_path(url);
        if let Ok(b) = std::fs::read(&path) {
            if !b.is_empty() {
                return Ok(b);
            }
        }
        let (body, _) = self.request(url)?;
        self.store(&path, &body)
            .map_err(|e| GetError::Other(Error::io("write", &path, e)))?;
        Ok(body)
    }

    /// GET `url` (no cache): the body and headers of an HTTP 200 answer
    /// with a non-empty body of at most [`MAX_RESPONSE`] bytes.
    fn request(
        &self,
        url: &str,
    ) -> std::result::Result<(Vec<u8>, ureq::http::HeaderMap), GetError> {
        let fail = |detail: String| {
            GetError::Other(Error::Fetch {
                url: url.to_string(),
                detail,
            })
        };
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| fail(transport_detail(&e)))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(GetError::NotFound(url.to_string()));
        }
        if status != 200 {
            return Err(fail(format!(
                "the server answered HTTP {status}{}",
                intel::error_message(resp.headers())
            )));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| fail(format!("reading the response failed: {e}")))?;
        if body.is_empty() {
            return Err(fail("the response was empty".into()));
        }
        Ok((body, resp.headers().clone()))
    }

    /// Writes a cache entry atomically (temporary file, then rename).
    fn store(&self, path: &Path, body: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cache)?;
        write_atomic(&self.cache, path, body)
    }
}

/// Writes `body` to `path` through a uniquely named temporary file in
/// `tmp_dir` (same file system) and a rename, so readers see the old file
/// or the new one, never a partial one.
fn write_atomic(tmp_dir: &Path, path: &Path, body: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tmp_dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn transport_detail(e: &ureq::Error) -> String {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            format!("no network connection ({e})")
        }
        ureq::Error::Io(io) => format!("no network connection ({io})"),
        ureq::Error::Timeout(_) => format!("no answer in time ({e})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
