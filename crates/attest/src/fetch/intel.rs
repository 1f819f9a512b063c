//! Intel PCS (or PCCS) collateral for TDX and SGX quotes, through the cache.
//!
//! From a quote's PCK certificate chain (certification data type 5) this
//! reads the FMSPC and the issuing PCK CA (Intel's SGX extensions, parsed by
//! dcap-qvl; the CA from the issuer name), then fetches, PCS API v4:
//!
//! ```text
//! {pcs}/{tdx|sgx}/certification/v4/tcb?fmspc=FMSPC       TCB-Info-Issuer-Chain header
//! {pcs}/{tdx|sgx}/certification/v4/qe/identity           SGX-Enclave-Identity-Issuer-Chain
//! {pcs}/sgx/certification/v4/pckcrl?ca=CA&encoding=der   SGX-PCK-CRL-Issuer-Chain
//! {root CRL URL}                                         (signed by the root itself)
//! ```
//!
//! (FMSPC in uppercase hex, CA `processor` or `platform`; issuer chains are
//! URL-encoded PEM in the headers; the v3 name `SGX-TCB-Info-Issuer-Chain`
//! is accepted too.) Each entry lives in its own directory of the cache,
//! `intel/{tdx|sgx}-{FMSPC}-{ca}/`, in exactly the layout
//! [`crate::Collateral::from_paths`] reads:
//!
//! | file | content |
//! | --- | --- |
//! | `tcb_info.json` | the TCB info response body, byte for byte |
//! | `qe_identity.json` | the QE identity response body, byte for byte |
//! | `tcb_info_issuer_chain.pem` | the TCB signing chain (signs both) |
//! | `pck_crl.der` | the PCK CA's CRL (DER) |
//! | `pck_crl_issuer_chain.pem` | the PCK CA chain |
//! | `root_ca_crl.der` | the Intel SGX Root CA's CRL (DER) |
//!
//! so verification reads it back offline with no special case, and
//! `--collateral DIR` on another machine does the same. Unlike a VCEK,
//! PCS collateral expires: an item whose `nextUpdate` (TCB info, QE
//! identity, each CRL) is not after the verification time is fetched
//! again; the others are served from the cache without a request.
//!
//! A response is checked only for shape before it is cached (the right
//! kind of item, FMSPC, TEE and CA, a readable `nextUpdate`, an issuer chain
//! of the right certificates), so that the loader files it correctly.
//! Whether it is genuine is for verification to decide: signatures up to
//! the Intel SGX Root CA shipped in this crate.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ureq::http::HeaderMap;
use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode as _, Encode as _};

use super::{write_atomic, Fetcher, GetError};
use crate::{dcap, x509, Error, Result, Tee, UnixTime};

/// The public Intel Provisioning Certification Service.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";

/// Where Intel publishes the Intel SGX Root CA's CRL (DER).
pub const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// The Intel CA that issued a PCK certificate; PCS serves one PCK CRL each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl PckCa {
    /// The PCS `ca` parameter: `processor` or `platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }

    /// The CA certificate's common name.
    fn common_name(self) -> &'static str {
        match self {
            PckCa::Processor => "Intel SGX PCK Processor CA",
            PckCa::Platform => "Intel SGX PCK Platform CA",
        }
    }
}

/// What selects a quote's collateral at Intel PCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PckInfo {
    /// TDX or SGX.
    pub tee: Tee,
    /// The platform's FMSPC, from the PCK certificate's SGX extensions.
    pub fmspc: [u8; 6],
    /// The CA that issued the PCK certificate.
    pub ca: PckCa,
}

/// The four URLs of one quote's collateral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcsUrls {
    /// TCB info for the FMSPC.
    pub tcb_info: String,
    /// QE identity (TD_QE for TDX, QE for SGX).
    pub qe_identity: String,
    /// CRL of the PCK CA.
    pub pck_crl: String,
    /// CRL of the Intel SGX Root CA.
    pub root_ca_crl: String,
}

impl PcsUrls {
    /// All four, in request order.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.tcb_info.clone(),
            self.qe_identity.clone(),
            self.pck_crl.clone(),
            self.root_ca_crl.clone(),
        ]
    }

    fn get(&self, item: Item) -> &str {
        match item {
            Item::TcbInfo => &self.tcb_info,
            Item::QeIdentity => &self.qe_identity,
            Item::PckCrl => &self.pck_crl,
            Item::RootCrl => &self.root_ca_crl,
        }
    }
}

impl PckInfo {
    /// Reads FMSPC and PCK CA from the PCK certificate chain inside a TDX
    /// (v4/v5) or SGX (v3) quote. Never panics.
    pub fn from_quote(tee: Tee, quote: &[u8]) -> Result<Self> {
        if !matches!(tee, Tee::Tdx | Tee::Sgx) {
            return Err(Error::InvalidInput {
                what: "TEE for Intel PCS",
                detail: format!("{tee} has no Intel DCAP collateral"),
            });
        }
        let q = dcap::parse_quote(tee, quote)?;
        if q.raw_cert_chain().is_err() {
            return Err(Error::MissingCollateral {
                tee,
                what: "DCAP collateral (the quote carries no PCK certificate chain, certification data type 5, so its FMSPC cannot be read to fetch from Intel PCS)",
            });
        }
        let chain = dcap_qvl::intel::extract_cert_chain(&q)
            .map_err(|e| Error::malformed(tee, format!("PCK certificate chain: {e:#}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| Error::malformed(tee, "the PCK certificate chain is empty"))?;
        let ext = dcap_qvl::intel::parse_pck_extension(leaf)
            .map_err(|e| Error::malformed(tee, format!("PCK certificate SGX extensions: {e:#}")))?;
        let cert = x509::parse_der(tee, "PCK certificate", leaf)?;
        let issuer = cert.tbs_certificate().issuer().to_string();
        let ca = [PckCa::Platform, PckCa::Processor]
            .into_iter()
            .find(|ca| has_cn(&issuer, ca.common_name()))
            .ok_or_else(|| {
                Error::malformed(
                    tee,
                    format!("the PCK certificate is issued by {issuer}, not an Intel SGX PCK CA"),
                )
            })?;
        Ok(PckInfo {
            tee,
            fmspc: ext.fmspc,
            ca,
        })
    }

    /// FMSPC as PCS takes it: 12 uppercase hex digits.
    pub fn fmspc_hex(&self) -> String {
        hex::encode_upper(self.fmspc)
    }

    /// The collateral URLs under PCS base `pcs`, with the root CA CRL at `root_crl`.
    pub fn urls(&self, pcs: &str, root_crl: &str) -> PcsUrls {
        let pcs = pcs.trim_end_matches('/');
        let tee = self.tee.as_str();
        PcsUrls {
            tcb_info: format!(
                "{pcs}/{tee}/certification/v4/tcb?fmspc={}",
                self.fmspc_hex()
            ),
            qe_identity: format!("{pcs}/{tee}/certification/v4/qe/identity"),
            pck_crl: format!(
                "{pcs}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
                self.ca.as_str()
            ),
            root_ca_crl: root_crl.to_string(),
        }
    }

    /// Name of this platform's cache directory: `{tee}-{FMSPC}-{ca}`.
    pub fn cache_name(&self) -> String {
        format!("{}-{}-{}", self.tee, self.fmspc_hex(), self.ca.as_str())
    }
}

/// The result of [`Fetcher::dcap`].
#[derive(Clone, Debug)]
pub struct DcapFetch {
    /// Whose collateral it is.
    pub pck: PckInfo,
    /// The cache directory holding it, readable by
    /// [`crate::Collateral::from_paths`] (and `--collateral DIR`).
    pub dir: PathBuf,
    /// The four URLs the collateral comes from.
    pub urls: Vec<String>,
    /// The URLs requested this time (the rest was served from the cache).
    pub fetched: Vec<String>,
}

/// One collateral item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    TcbInfo,
    QeIdentity,
    PckCrl,
    RootCrl,
}

/// File of the TCB signing chain, shared by TCB info and QE identity.
const TCB_CHAIN_FILE: &str = "tcb_info_issuer_chain.pem";

impl Item {
    const ALL: [Item; 4] = [Item::TcbInfo, Item::QeIdentity, Item::PckCrl, Item::RootCrl];

    fn file(self) -> &'static str {
        match self {
            Item::TcbInfo => "tcb_info.json",
            Item::QeIdentity => "qe_identity.json",
            Item::PckCrl => "pck_crl.der",
            Item::RootCrl => "root_ca_crl.der",
        }
    }

    fn chain_file(self) -> Option<&'static str> {
        match self {
            Item::TcbInfo | Item::QeIdentity => Some(TCB_CHAIN_FILE),
            Item::PckCrl => Some("pck_crl_issuer_chain.pem"),
            Item::RootCrl => None,
        }
    }

    /// Response headers carrying the issuer chain, preferred first.
    fn chain_headers(self) -> &'static [&'static str] {
        match self {
            Item::TcbInfo => &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            Item::QeIdentity => &[
                "SGX-Enclave-Identity-Issuer-Chain",
                "Enclave-Identity-Issuer-Chain",
            ],
            Item::PckCrl => &["SGX-PCK-CRL-Issuer-Chain"],
            Item::RootCrl => &[],
        }
    }

    /// The item sharing this one's issuer chain file.
    fn shares_chain_with(self) -> Option<Item> {
        match self {
            Item::TcbInfo => Some(Item::QeIdentity),
            Item::QeIdentity => Some(Item::TcbInfo),
            _ => None,
        }
    }

    fn what(self, pck: &PckInfo) -> String {
        match self {
            Item::TcbInfo => format!("{} TCB info for FMSPC {}", pck.tee, pck.fmspc_hex()),
            Item::QeIdentity => format!("{} QE identity", pck.tee),
            Item::PckCrl => format!("a CRL of the {}", pck.ca.common_name()),
            Item::RootCrl => "a CRL of the Intel SGX Root CA".into(),
        }
    }
}

/// A validated item: the bytes to cache and when they expire.
struct Checked {
    bytes: Vec<u8>,
    next_update: UnixTime,
}

/// A fetched item, validated, with its issuer chain (PEM and DERs).
struct Got {
    item: Item,
    url: String,
    bytes: Vec<u8>,
    chain: Option<(String, Vec<Vec<u8>>)>,
}

impl Fetcher {
    /// The cache directory for one platform's DCAP collateral.
    pub fn dcap_cache_dir(&self, pck: &PckInfo) -> PathBuf {
        self.cache.join("intel").join(pck.cache_name())
    }

    /// Makes sure the cache holds DCAP collateral for `quote` (TDX or SGX)
    /// that is current at `now`: items missing, unreadable or past their
    /// `nextUpdate` are fetched from Intel PCS, the rest is left alone.
    /// Nothing is written unless every fetch succeeded.
    pub fn dcap(&self, tee: Tee, quote: &[u8], now: UnixTime) -> Result<DcapFetch> {
        let pck = PckInfo::from_quote(tee, quote)?;
        let urls = pck.urls(&self.pcs, &self.intel_root_crl);
        let dir = self.dcap_cache_dir(&pck);
        let mut todo: Vec<Item> = Item::ALL
            .into_iter()
            .filter(|&i| !is_fresh(&dir, i, &pck, now))
            .collect();
        let mut got: Vec<Got> = Vec::new();
        let mut k = 0;
        while let Some(&item) = todo.get(k) {
            let g = self.fetch_item(item, &pck, &urls)?;
            // A new TCB signing chain also replaces the item sharing it.
            if let (Some(other), Some((_, ders))) = (item.shares_chain_with(), &g.chain) {
                if !todo.contains(&other) && stored_chain(&dir, item, tee).as_ref() != Some(ders) {
                    todo.insert(k + 1, other);
                }
            }
            got.push(g);
            k += 1;
        }
        let chain_of = |i: Item| {
            got.iter()
                .find(|g| g.item == i)
                .and_then(|g| g.chain.as_ref())
        };
        if let (Some((_, t)), Some((_, q))) = (chain_of(Item::TcbInfo), chain_of(Item::QeIdentity))
        {
            if t != q {
                return Err(Error::Fetch {
                    url: urls.qe_identity.clone(),
                    detail: "the QE identity's issuer chain differs from the TCB info's; both must be signed by the same Intel SGX TCB Signing certificate".into(),
                });
            }
        }
        if !got.is_empty() {
            let parent = self.cache.join("intel");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
            let write = |name: &str, bytes: &[u8]| {
                let path = dir.join(name);
                write_atomic(&parent, &path, bytes).map_err(|e| Error::io("write", &path, e))
            };
            // Chains first: a body is never cached without its chain.
            for g in &got {
                if let (Some(file), Some((pem, _))) = (g.item.chain_file(), &g.chain) {
                    write(file, pem.as_bytes())?;
                }
            }
            for g in &got {
                write(g.item.file(), &g.bytes)?;
            }
        }
        Ok(DcapFetch {
            pck,
            dir,
            urls: urls.all(),
            fetched: got.into_iter().map(|g| g.url).collect(),
        })
    }

    /// Fetches and validates one item.
    fn fetch_item(&self, item: Item, pck: &PckInfo, urls: &PcsUrls) -> Result<Got> {
        let url = urls.get(item).to_string();
        let (body, headers) = match self.request(&url) {
            Ok(r) => r,
            Err(GetError::NotFound(u)) => {
                return Err(Error::Fetch {
                    url: u,
                    detail: format!("the server has no {} (HTTP 404)", item.what(pck)),
                })
            }
            Err(GetError::Other(e)) => return Err(e),
        };
        let bad = |detail: String| Error::Fetch {
            url: url.clone(),
            detail,
        };
        let checked = check_body(item, pck, &body)
            .map_err(|d| bad(format!("the response is not {} ({d})", item.what(pck))))?;
        let chain = match item.chain_headers() {
            [] => None,
            names => {
                let pem = header_text(&headers, names).map_err(&bad)?;
                let ders = check_chain(item, pck.tee, &pem)
                    .map_err(|d| bad(format!("the {} header is unusable ({d})", names[0])))?;
                Some((pem, ders))
            }
        };
        Ok(Got {
            item,
            url,
            bytes: checked.bytes,
            chain,
        })
    }
}

/// True when the cached item (and its issuer chain) is readable and its
/// `nextUpdate` is after `now`.
fn is_fresh(dir: &Path, item: Item, pck: &PckInfo, now: UnixTime) -> bool {
    let Ok(bytes) = std::fs::read(dir.join(item.file())) else {
        return false;
    };
    let Ok(c) = check_body(item, pck, &bytes) else {
        return false;
    };
    if now >= c.next_update {
        return false;
    }
    match item.chain_file() {
        None => true,
        Some(_) => stored_chain(dir, item, pck.tee).is_some(),
    }
}

/// The cached issuer chain of `item` (DER certificates), if readable.
fn stored_chain(dir: &Path, item: Item, tee: Tee) -> Option<Vec<Vec<u8>>> {
    let pem = std::fs::read_to_string(dir.join(item.chain_file()?)).ok()?;
    check_chain(item, tee, &pem).ok()
}

/// Checks an item's shape and reads its `nextUpdate`.
fn check_body(item: Item, pck: &PckInfo, body: &[u8]) -> std::result::Result<Checked, String> {
    match item {
        Item::TcbInfo | Item::QeIdentity => {
            let (key, id) = match (item, pck.tee) {
                (Item::TcbInfo, Tee::Sgx) => ("tcbInfo", "SGX"),
                (Item::TcbInfo, _) => ("tcbInfo", "TDX"),
                (_, Tee::Sgx) => ("enclaveIdentity", "QE"),
                _ => ("enclaveIdentity", "TD_QE"),
            };
            let text = std::str::from_utf8(body).map_err(|_| "not UTF-8 text".to_string())?;
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
            let inner = v
                .get(key)
                .filter(|x| x.is_object())
                .ok_or_else(|| format!("no {key:?} object"))?;
            if dcap::json_object_span(text, key).is_none() {
                return Err(format!("the {key:?} object cannot be cut out"));
            }
            let sig = v
                .get("signature")
                .and_then(|s| s.as_str())
                .ok_or("no \"signature\" string")?;
            hex::decode(sig).map_err(|_| "the signature is not hex".to_string())?;
            match inner.get("id").and_then(|x| x.as_str()) {
                Some(found) if found == id => {}
                // TCB info v2 (SGX only) has no id.
                None if item == Item::TcbInfo && pck.tee == Tee::Sgx => {}
                Some(found) => return Err(format!("its id is {found:?}, expected {id:?}")),
                None => return Err(format!("it has no id, expected {id:?}")),
            }
            if item == Item::TcbInfo {
                let fmspc = inner.get("fmspc").and_then(|x| x.as_str()).unwrap_or("");
                if !fmspc.eq_ignore_ascii_case(&pck.fmspc_hex()) {
                    return Err(format!("it is for FMSPC {fmspc:?}"));
                }
            }
            let next = inner
                .get("nextUpdate")
                .and_then(|x| x.as_str())
                .and_then(|s| UnixTime::parse_rfc3339(s).ok())
                .ok_or("no readable nextUpdate")?;
            Ok(Checked {
                bytes: body.to_vec(),
                next_update: next,
            })
        }
        Item::PckCrl | Item::RootCrl => {
            let der = crl_der(body)?;
            let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der)
                .map_err(|e| format!("not a CRL: {e}"))?;
            let issuer = crl.tbs_cert_list.issuer.to_string();
            let want = match item {
                Item::PckCrl => pck.ca.common_name(),
                _ => "Intel SGX Root CA",
            };
            if !has_cn(&issuer, want) {
                return Err(format!("it is issued by {issuer}"));
            }
            let next = crl
                .tbs_cert_list
                .next_update
                .ok_or("the CRL has no nextUpdate")?;
            Ok(Checked {
                bytes: der,
                next_update: UnixTime(next.to_unix_duration().as_secs()),
            })
        }
    }
}

/// A CRL as DER, PEM (`X509 CRL`) or hex of DER (as a PCCS serves the root
/// CA CRL), returned as DER.
fn crl_der(body: &[u8]) -> std::result::Result<Vec<u8>, String> {
    type Crl = CertificateList<x509_cert::certificate::Rfc5280>;
    if Crl::from_der(body).is_ok() {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| "not a DER CRL".to_string())?;
    let t = text.trim();
    let der = if let Some(rest) = t.strip_prefix("-----BEGIN X509 CRL-----") {
        let b64 = rest
            .split("-----END X509 CRL-----")
            .next()
            .unwrap_or_default();
        let b64: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "bad base64 in the PEM CRL".to_string())?
    } else {
        hex::decode(t).map_err(|_| "not a CRL in DER, PEM or hex".to_string())?
    };
    Crl::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    Ok(der)
}

/// Checks an issuer chain (PEM) and returns its certificates as DER: the
/// TCB signing chain for TCB info and QE identity, a PCK CA chain for the
/// PCK CRL.
fn check_chain(item: Item, tee: Tee, pem: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err("no PEM certificate".into());
    }
    let certs = x509::parse_any(tee, "issuer chain", pem.as_bytes()).map_err(|e| e.to_string())?;
    let cn = certs
        .first()
        .and_then(x509::common_name)
        .unwrap_or_default();
    let ok = match item {
        Item::PckCrl => cn.starts_with("Intel SGX PCK"),
        _ => cn == "Intel SGX TCB Signing",
    };
    if !ok {
        return Err(format!("its first certificate is {cn:?}"));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| e.to_string()))
        .collect()
}

/// True when the RFC 4514 name `name` has the RDN `CN=cn`.
fn has_cn(name: &str, cn: &str) -> bool {
    name.split(',')
        .any(|rdn| rdn.trim().strip_prefix("CN=") == Some(cn))
}

/// The first of `names` present in `headers`, URL-decoded.
fn header_text(headers: &HeaderMap, names: &[&str]) -> std::result::Result<String, String> {
    for name in names {
        if let Some(v) = headers.get(*name) {
            let s = v
                .to_str()
                .map_err(|_| format!("the {name} header is not ASCII"))?;
            return percent_decode(s)
                .ok_or_else(|| format!("the {name} header is not URL-encoded UTF-8 text"));
        }
    }
    Err(format!(
        "the response has no {} header (the issuer chain)",
        names.first().copied().unwrap_or_default()
    ))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as in base64).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let h = b.get(i + 1..i + 3)?;
            if !h.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Intel PCS's `Error-Code` / `Error-Message` headers, as ` (code: message)`,
/// or nothing. Control characters are dropped and the text is kept short,
/// so the error stays one line.
pub(crate) fn error_message(headers: &HeaderMap) -> String {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
    };
    match (get("Error-Code"), get("Error-Message")) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(x), None) | (None, Some(x)) => format!(" ({x})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests;
