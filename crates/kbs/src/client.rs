//! A blocking admin client for the KBS admin API (used by `cocoon kbs ...`).
//!
//! Each call signs a fresh admin token (5 minutes) with the admin key.

use std::time::Duration;

use crate::error::Problem;
use crate::reference::{parse_resource_uri, ReferenceValues};
use crate::token::{admin_token, now_secs};
use crate::{Error, Result};

/// Admin client for one KBS.
pub struct AdminClient {
    base: String,
    key: p256::SecretKey,
    agent: ureq::Agent,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the KBS at `base` (`http://host:port`) with the admin private key.
    pub fn new(base: &str, key: p256::SecretKey) -> Self {
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            key,
            agent,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let token = admin_token(&self.key, now_secs(), 300)?;
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {token}"));
        let (req, bytes) = match body {
            Some((ct, b)) => (req.header("content-type", ct), b.to_vec()),
            None => (req, Vec::new()),
        };
        let req = req
            .body(bytes)
            .map_err(|e| Error::BadRequest(format!("{url}: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| Error::Unavailable(format!("{method} {url}: {e}")))?;
        let status = resp.status();
        let out = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| {
                Error::Unavailable(format!("{method} {url}: reading the response: {e}"))
            })?;
        if status.is_success() {
            return Ok(out);
        }
        let detail = serde_json::from_slice::<Problem>(&out)
            .map(|p| p.detail)
            .unwrap_or_else(|_| String::from_utf8_lossy(&out).chars().take(200).collect());
        let msg = format!("{method} {path}: {} {detail}", status.as_u16());
        Err(match status.as_u16() {
            400 | 413 => Error::BadRequest(msg),
            401 => Error::Unauthorized(msg),
            403 => Error::Forbidden(msg),
            404 => Error::NotFound(msg),
            _ => Error::Unavailable(msg),
        })
    }

    /// Stores `value` as resource `uri` (`kbs:///repo/type/tag`).
    pub fn put_resource(&self, uri: &str, value: &[u8]) -> Result<()> {
        let (r, t, g) = parse_resource_uri(uri)?;
        self.call(
            "PUT",
            &format!("/kbs/v0/resource/{r}/{t}/{g}"),
            Some(("application/octet-stream", value)),
        )
        .map(|_| ())
    }

    /// Reads resource `uri` (plaintext, admin only).
    pub fn get_resource(&self, uri: &str) -> Result<Vec<u8>> {
        let (r, t, g) = parse_resource_uri(uri)?;
        self.call("GET", &format!("/kbs/v0/admin/resource/{r}/{t}/{g}"), None)
    }

    /// Deletes resource `uri`.
    pub fn delete_resource(&self, uri: &str) -> Result<()> {
        let (r, t, g) = parse_resource_uri(uri)?;
        self.call("DELETE", &format!("/kbs/v0/resource/{r}/{t}/{g}"), None)
            .map(|_| ())
    }

    /// Lists resource URIs.
    pub fn list_resources(&self) -> Result<Vec<String>> {
        let b = self.call("GET", "/kbs/v0/admin/resources", None)?;
        serde_json::from_slice(&b).map_err(|e| Error::BadRequest(format!("resource list: {e}")))
    }

    /// Replaces the policy with Rego text.
    pub fn set_policy(&self, rego: &str) -> Result<()> {
        self.call(
            "POST",
            "/kbs/v0/resource-policy",
            Some(("text/plain", rego.as_bytes())),
        )
        .map(|_| ())
    }

    /// The current policy (Rego text).
    pub fn get_policy(&self) -> Result<String> {
        let b = self.call("GET", "/kbs/v0/resource-policy", None)?;
        String::from_utf8(b).map_err(|_| Error::BadRequest("policy is not UTF-8".into()))
    }

    /// Adds (or replaces, by workload digest) reference values.
    pub fn add_reference_values(&self, rv: &ReferenceValues) -> Result<()> {
        let j = serde_json::to_vec(rv).map_err(|e| Error::Internal(e.to_string()))?;
        self.call(
            "POST",
            "/kbs/v0/reference-value",
            Some(("application/json", &j)),
        )
        .map(|_| ())
    }

    /// All reference values.
    pub fn list_reference_values(&self) -> Result<Vec<ReferenceValues>> {
        let b = self.call("GET", "/kbs/v0/reference-value", None)?;
        serde_json::from_slice(&b).map_err(|e| Error::BadRequest(format!("reference values: {e}")))
    }
}
