//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`: the OCI distribution API (v2).
//!
//! A blocking client on `ureq`: bodies stream through the synchronous `Read`
//! of [`ImageSource::blob`] and [`ImageDest::put_layer`], so a layer is
//! verified as it streams and is never held in memory whole. Authentication is
//! anonymous, HTTP basic (from [`TransportOptions::credentials`]) or the
//! Bearer token flow (`WWW-Authenticate: Bearer realm=...,service=...`), with
//! the scope `repository:REPO:pull` for reading and `repository:REPO:pull,push`
//! for writing. Blobs are pushed monolithically (`POST` then one `PUT`).

use std::collections::HashMap;
use std::io::{self, Read};
use std::time::Duration;

use oci_spec::image::Descriptor;
use ureq::http::{Method, Request, Response, StatusCode};

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::media;
use crate::reference::RegistryVersion;
use crate::transport::{sniff_media_type, ImageDest, ImageSource, RawManifest, TransportOptions};

/// Largest manifest accepted (4 MiB, as the distribution spec recommends).
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest error or token document read.
const MAX_SMALL: u64 = 1 << 20;

/// How requests are authenticated.
#[derive(Debug, Clone)]
enum Auth {
    /// No `Authorization` header.
    Anonymous,
    /// `Authorization: Basic ...`.
    Basic(String),
    /// `Authorization: Bearer ...` from the token endpoint.
    Bearer(String),
}

/// A request body.
enum Payload<'a> {
    /// No body.
    None,
    /// A small body held in memory (can be sent again after authenticating).
    Bytes(&'a [u8]),
    /// A streamed body of known length (sent once).
    Stream(&'a mut dyn Read, u64),
}

/// A connection to one repository of one registry.
struct Client {
    host: String,
    repo: String,
    base: String,
    plain_http: bool,
    agent: ureq::Agent,
    credentials: Option<(String, String)>,
    actions: &'static str,
    auth: Auth,
}

impl Client {
    fn connect(
        host: &str,
        repo: &str,
        opts: &TransportOptions,
        actions: &'static str,
    ) -> Result<Self> {
        let config = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .http_status_as_error(false)
            .user_agent(concat!("cocoon/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(600)))
            .timeout_per_read(Some(Duration::from_secs(300)))
            .max_redirects(10)
            .build();
        let scheme = if opts.plain_http { "http" } else { "https" };
        let mut client = Client {
            host: host.to_string(),
            repo: repo.to_string(),
            base: format!("{scheme}://{host}"),
            plain_http: opts.plain_http,
            agent: config.into(),
            credentials: opts.credentials.clone(),
            actions,
            // Credentials are sent only when the registry asks for them.
            auth: Auth::Anonymous,
        };
        client.ping()?;
        Ok(client)
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.host.clone(),
            reason: reason.into(),
        }
    }

    fn location(&self) -> String {
        format!("docker://{}/{}", self.host, self.repo)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repo)
    }

    /// `GET /v2/`: checks that this is a v2 registry and authenticates.
    fn ping(&mut self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.call(Method::GET, &url, &[], Payload::None)?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(self.err(format!(
                "GET {url}: HTTP 404: this server does not speak the OCI distribution API (no /v2/)"
            ))),
            _ => Err(self.status_error(&Method::GET, &url, resp)),
        }
    }

    /// Sends a request, authenticating and sending it again once if the
    /// registry answers 401 with a challenge and the body can be sent again.
    fn call(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        mut payload: Payload<'_>,
    ) -> Result<Response<ureq::Body>> {
        let mut retried = false;
        loop {
            let resp = self.send_once(&method, url, headers, &mut payload)?;
            if resp.status() != StatusCode::UNAUTHORIZED
                || retried
                || matches!(payload, Payload::Stream(..))
            {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            retried = true;
            if !self.authenticate(challenge.as_deref())? {
                return Ok(resp);
            }
        }
    }

    fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: &mut Payload<'_>,
    ) -> Result<Response<ureq::Body>> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        match &self.auth {
            Auth::Anonymous => {}
            Auth::Basic(b) => builder = builder.header("Authorization", format!("Basic {b}")),
            Auth::Bearer(t) => builder = builder.header("Authorization", format!("Bearer {t}")),
        }
        let result = match payload {
            Payload::None => builder
                .body(ureq::SendBody::none())
                .map(|r| self.agent.run(r)),
            Payload::Bytes(b) => builder
                .header("Content-Length", b.len().to_string())
                .body(*b)
                .map(|r| self.agent.run(r)),
            Payload::Stream(r, len) => builder
                .header("Content-Length", len.to_string())
                .body(ureq::SendBody::from_reader(&mut **r))
                .map(|req| self.agent.run(req)),
        };
        let result =
            result.map_err(|e| self.err(format!("{method} {url}: invalid request: {e}")))?;
        result.map_err(|e| self.transport_error(method, url, e))
    }

    fn transport_error(&self, method: &Method, url: &str, e: ureq::Error) -> Error {
        match e {
            // An error from the body we were streaming (a verifying reader):
            // report it as it is.
            ureq::Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<Error>()) => {
                Error::io(format!("{method} {url}"), io)
            }
            other => {
                let hint = match (&other, self.plain_http) {
                    (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound, _) => {
                        "; is the registry running and reachable?"
                    }
                    // A TLS handshake with a plain-HTTP server fails with a
                    // TLS or I/O error ("corrupt message").
                    (ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Io(_), false) => {
                        "; if this is a plain-HTTP registry (a loopback development registry), use --plain-http"
                    }
                    (ureq::Error::Io(_), true) => "; is the registry running and reachable?",
                    _ => "",
                };
                self.err(format!("{method} {url}: {other}{hint}"))
            }
        }
    }

    /// Answers a 401 challenge: basic credentials, or a Bearer token fetched
    /// from the realm. Returns whether the request should be sent again.
    fn authenticate(&mut self, challenge: Option<&str>) -> Result<bool> {
        let Some((scheme, params)) = challenge.and_then(parse_challenge) else {
            return Ok(false);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => match (&self.credentials, &self.auth) {
                (Some(_), Auth::Basic(_)) | (None, _) => Ok(false),
                (Some((user, pass)), _) => {
                    self.auth = Auth::Basic(base64(format!("{user}:{pass}").as_bytes()));
                    Ok(true)
                }
            },
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| {
                    self.err(format!(
                        "the Bearer challenge {challenge:?} names no realm to fetch a token from"
                    ))
                })?;
                let scope = format!("repository:{}:{}", self.repo, self.actions);
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    percent(&scope)
                );
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("&service={}", percent(service)));
                }
                let mut req = Request::builder().method(Method::GET).uri(&url);
                if let Some((user, pass)) = &self.credentials {
                    req = req.header(
                        "Authorization",
                        format!("Basic {}", base64(format!("{user}:{pass}").as_bytes())),
                    );
                }
                let req = req
                    .body(ureq::SendBody::none())
                    .map_err(|e| self.err(format!("GET {url}: invalid request: {e}")))?;
                let resp = self
                    .agent
                    .run(req)
                    .map_err(|e| self.transport_error(&Method::GET, &url, e))?;
                if !resp.status().is_success() {
                    return Err(self.status_error(&Method::GET, &url, resp));
                }
                #[derive(serde::Deserialize)]
                struct TokenResponse {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_limited(resp, MAX_SMALL)
                    .map_err(|e| self.err(format!("GET {url}: {e}")))?;
                let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                    self.err(format!(
                        "GET {url}: the token response is not valid JSON: {e}"
                    ))
                })?;
                let token = token
                    .token
                    .or(token.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        self.err(format!(
                            "GET {url}: the token response has neither `token` nor `access_token`"
                        ))
                    })?;
                let changed = !matches!(&self.auth, Auth::Bearer(t) if *t == token);
                self.auth = Auth::Bearer(token);
                Ok(changed)
            }
            _ => Ok(false),
        }
    }

    /// An error for an unexpected status, with the registry's error code and message.
    fn status_error(&self, method: &Method, url: &str, resp: Response<ureq::Body>) -> Error {
        let status = resp.status();
        let body = read_limited(resp, MAX_SMALL).unwrap_or_default();
        let detail = registry_errors(&body);
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.credentials.is_some() => {
                "; check the user name and password"
            }
            StatusCode::UNAUTHORIZED => "; the registry needs credentials",
            StatusCode::FORBIDDEN => "; the credentials do not allow this",
            _ => "",
        };
        let reason = status.canonical_reason().unwrap_or("");
        match detail {
            Some(d) => self.err(format!(
                "{method} {url}: HTTP {} {reason} ({d}){hint}",
                status.as_u16()
            )),
            None => self.err(format!(
                "{method} {url}: HTTP {} {reason}{hint}",
                status.as_u16()
            )),
        }
    }

    /// `GET` a manifest by tag or digest.
    fn get_manifest(&mut self, reference: &str) -> Result<Option<RawManifest>> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = [
            media::OCI_MANIFEST,
            media::OCI_INDEX,
            media::DOCKER_MANIFEST,
            media::DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        let resp = self.call(Method::GET, &url, &[("Accept", &accept)], Payload::None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_error(&Method::GET, &url, resp));
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
        let bytes =
            read_limited(resp, MAX_MANIFEST).map_err(|e| self.err(format!("GET {url}: {e}")))?;
        let media_type = match content_type {
            Some(t) if media::is_manifest(&t) || media::is_index(&t) => t,
            other => sniff_media_type(&bytes).or(other).unwrap_or_default(),
        };
        let manifest = RawManifest::new(bytes, media_type);
        if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
            let claimed: Digest = h.parse()?;
            if claimed != manifest.digest {
                return Err(Error::BlobMismatch {
                    blob: claimed,
                    reason: format!(
                        "the manifest {} served at {url} hashes to {}, not the Docker-Content-Digest it was sent with",
                        self.location(),
                        manifest.digest
                    ),
                });
            }
        }
        Ok(Some(manifest))
    }

    /// The repository's tags, for error messages (empty when unavailable).
    fn tags(&mut self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let url = self.url("tags/list");
        let Ok(resp) = self.call(Method::GET, &url, &[], Payload::None) else {
            return Vec::new();
        };
        if !resp.status().is_success() {
            return Vec::new();
        }
        read_limited(resp, MAX_MANIFEST)
            .ok()
            .and_then(|b| serde_json::from_slice::<Tags>(&b).ok())
            .and_then(|t| t.tags)
            .unwrap_or_default()
    }

    /// Uploads one blob monolithically: `POST` an upload, then `PUT` the body.
    fn upload(&mut self, digest: &Digest, size: u64, body: Payload<'_>) -> Result<()> {
        let url = self.url("blobs/uploads/");
        let resp = self.call(Method::POST, &url, &[], Payload::Bytes(&[]))?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&Method::POST, &url, resp));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.err(format!(
                    "POST {url}: the registry started an upload but sent no Location"
                ))
            })?;
        let mut put_url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        };
        put_url.push(if put_url.contains('?') { '&' } else { '?' });
        put_url.push_str(&format!("digest={}", percent(&digest.to_string())));
        let headers = [("Content-Type", "application/octet-stream")];
        let resp = match body {
            Payload::Stream(r, _) => {
                self.call(Method::PUT, &put_url, &headers, Payload::Stream(r, size))?
            }
            other => self.call(Method::PUT, &put_url, &headers, other)?,
        };
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&Method::PUT, &put_url, resp));
        }
        Ok(())
    }
}

/// Reads a response body, refusing one longer than `limit`.
fn read_limited(resp: Response<ureq::Body>, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("reading the response: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "the response is longer than the {limit} bytes allowed"
        ));
    }
    Ok(out)
}

/// `CODE: message` of an OCI error document, if the body is one.
fn registry_errors(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    let doc: Doc = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = doc
        .errors
        .into_iter()
        .map(|i| match (i.code, i.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c,
            (None, Some(m)) => m,
            (None, None) => "unspecified error".into(),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Parses `Scheme k=v, k="quoted, value"` into the scheme and its parameters.
fn parse_challenge(header: &str) -> Option<(String, HashMap<String, String>)> {
    let header = header.trim();
    let (scheme, rest) = match header.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some((scheme.to_string(), params))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one image from a registry.
pub struct RegistrySource {
    client: Client,
    version: RegistryVersion,
}

impl RegistrySource {
    /// Connects to `host` (checking `/v2/` and authenticating for pull) to
    /// read `repo` at `version`.
    pub fn open(
        host: &str,
        repo: &str,
        version: &RegistryVersion,
        opts: &TransportOptions,
    ) -> Result<Self> {
        Ok(RegistrySource {
            client: Client::connect(host, repo, opts, "pull")?,
            version: version.clone(),
        })
    }
}

impl ImageSource for RegistrySource {
    fn name(&self) -> String {
        match &self.version {
            RegistryVersion::Tag(t) => format!("{}:{t}", self.client.location()),
            RegistryVersion::Digest(d) => format!("{}@{d}", self.client.location()),
        }
    }

    fn root_manifest(&mut self) -> Result<RawManifest> {
        let reference = self.version.to_string();
        match self.client.get_manifest(&reference)? {
            Some(m) => {
                if let RegistryVersion::Digest(d) = &self.version {
                    if m.digest != *d {
                        return Err(Error::BlobMismatch {
                            blob: *d,
                            reason: format!(
                                "the registry served a manifest that hashes to {}",
                                m.digest
                            ),
                        });
                    }
                }
                Ok(m)
            }
            None => match &self.version {
                RegistryVersion::Tag(t) => {
                    let tags = self.client.tags();
                    Err(Error::NoSuchTag {
                        tag: t.clone(),
                        location: self.client.location(),
                        available: if tags.is_empty() {
                            "none".into()
                        } else {
                            tags.join(", ")
                        },
                    })
                }
                RegistryVersion::Digest(d) => Err(Error::MissingBlob {
                    blob: *d,
                    location: format!("{} (no such manifest)", self.client.location()),
                }),
            },
        }
    }

    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        let digest = Digest::try_from(desc.digest())?;
        let m = self
            .client
            .get_manifest(&digest.to_string())?
            .ok_or_else(|| Error::MissingBlob {
                blob: digest,
                location: format!("{} (no such manifest)", self.client.location()),
            })?;
        if m.digest != digest {
            return Err(Error::BlobMismatch {
                blob: digest,
                reason: format!("the registry served a manifest that hashes to {}", m.digest),
            });
        }
        if m.bytes.len() as u64 != desc.size() {
            return Err(Error::BlobMismatch {
                blob: digest,
                reason: format!(
                    "{} bytes where its descriptor declares {}",
                    m.bytes.len(),
                    desc.size()
                ),
            });
        }
        Ok(m)
    }

    fn manifest_pins_layers(&self) -> bool {
        true
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = Digest::try_from(desc.digest())?;
        let url = self.client.url(&format!("blobs/{digest}"));
        let resp = self.client.call(Method::GET, &url, &[], Payload::None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::MissingBlob {
                blob: digest,
                location: self.client.location(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.client.status_error(&Method::GET, &url, resp));
        }
        let body = resp.into_body().into_reader();
        Ok(Box::new(VerifyingReader::new(body, digest, desc.size())))
    }
}

/// Writes one image to a registry.
pub struct RegistryDest {
    client: Client,
    version: RegistryVersion,
}

impl RegistryDest {
    /// Connects to `host` (checking `/v2/` and authenticating for push) to
    /// write `repo` under `version` (a tag, or the digest the manifest must have).
    pub fn open(
        host: &str,
        repo: &str,
        version: &RegistryVersion,
        opts: &TransportOptions,
    ) -> Result<Self> {
        Ok(RegistryDest {
            client: Client::connect(host, repo, opts, "pull,push")?,
            version: version.clone(),
        })
    }
}

impl ImageDest for RegistryDest {
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        let digest = Digest::try_from(desc.digest())?;
        let url = self.client.url(&format!("blobs/{digest}"));
        let resp = self.client.call(Method::HEAD, &url, &[], Payload::None)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.client.status_error(&Method::HEAD, &url, resp)),
        }
    }

    fn put_config(&mut self, desc: &Descriptor, data: &[u8]) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let actual = Digest::of(data);
        if actual != digest || data.len() as u64 != desc.size() {
            return Err(Error::BlobMismatch {
                blob: digest,
                reason: format!("config of {} bytes hashes to {actual}", data.len()),
            });
        }
        self.client
            .upload(&digest, desc.size(), Payload::Bytes(data))
    }

    fn put_layer(
        &mut self,
        desc: &Descriptor,
        _diff_id: &Digest,
        data: &mut dyn Read,
    ) -> Result<()> {
        let digest = Digest::try_from(desc.digest())?;
        let mut verified = VerifyingReader::new(&mut *data, digest, desc.size());
        self.client.upload(
            &digest,
            desc.size(),
            Payload::Stream(&mut verified, desc.size()),
        )?;
        // The source's check runs at the end of its stream: make sure it ran.
        io::copy(&mut verified, &mut io::sink())
            .map_err(|e| Error::io(format!("reading layer {digest}"), e))?;
        io::copy(data, &mut io::sink())
            .map_err(|e| Error::io(format!("reading layer {digest}"), e))?;
        Ok(())
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        if let RegistryVersion::Digest(d) = &self.version {
            if *d != manifest.digest {
                return Err(self.client.err(format!(
                    "cannot push manifest {} as {}@{d}: the reference names a different digest",
                    manifest.digest,
                    self.client.location()
                )));
            }
        }
        let url = self.client.url(&format!("manifests/{}", self.version));
        let resp = self.client.call(
            Method::PUT,
            &url,
            &[("Content-Type", manifest.media_type.as_str())],
            Payload::Bytes(&manifest.bytes),
        )?;
        if !resp.status().is_success() {
            return Err(self.client.status_error(&Method::PUT, &url, resp));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn encodes_base64_and_percent() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(
            percent("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn summarizes_registry_errors() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_errors(body).unwrap(),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert!(registry_errors(b"not json").is_none());
    }
}
