//! The KBS client: Trustee RCAR 0.4.0 (`auth` -> `attest` -> `resource`),
//! with an ephemeral P-256 key that resources are encrypted to
//! (JWE `ECDH-ES+A256KW` / `A256GCM`).
//!
//! This duplicates the few lines of JWE decryption that `cocoon-kbs` has,
//! so that the launcher does not link the KBS server (axum, tokio, regorus).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cocoon_attest::Attester;
use cocoon_kbs_protocol::{self as protocol, jwe};
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::identity::InitData;
use crate::{Error, Result};

use protocol::SESSION_COOKIE as COOKIE;

/// An attested session: the cookie and the key resources are encrypted to.
pub struct Session {
    cookie: String,
    key: p256::SecretKey,
    /// The EAR token (not used by the launcher yet; kept for the shield).
    pub token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// A blocking KBS client with bounded retries.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    retry_for: Duration,
}

enum Failure {
    /// Worth retrying: connection errors, 5xx, 429.
    Transient(String),
    /// A definite answer.
    Final(Error),
}

/// A fresh P-256 key (session keys, the shield's TLS key).
pub fn new_key() -> Result<p256::SecretKey> {
    protocol::new_p256_key().map_err(|e| Error::Attest(e.to_string()))
}

/// A request body as JSON (serializing protocol types cannot fail).
fn json_body(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// `kbs:///repo/type/tag` -> `repo/type/tag`.
pub fn resource_path(uri: &str) -> Result<&str> {
    let p = uri
        .strip_prefix("kbs:///")
        .ok_or_else(|| Error::Image(format!("resource {uri:?} is not a kbs:/// URI")))?;
    let ok = p.split('/').count() == 3
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !ok {
        return Err(Error::Image(format!(
            "resource {uri:?} is not kbs:///<repo>/<type>/<tag>"
        )));
    }
    Ok(p)
}

impl Client {
    /// A client for `base` (`http[s]://host:port`) that retries transient
    /// failures (connection refused, timeouts, 5xx, 429) for `retry_for`.
    pub fn new(base: &str, retry_for: Duration) -> Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "COCOON_KBS_URL {base:?} must be an http:// or https:// URL"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(20)))
            .timeout_connect(Some(Duration::from_secs(3)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retry_for,
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::result::Result<(Vec<u8>, Option<String>), Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{COOKIE}={c}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                b.to_vec()
            }
            None => Vec::new(),
        };
        let req = req
            .body(bytes)
            .map_err(|e| Failure::Final(Error::Config(format!("{url}: {e}"))))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| Failure::Transient(format!("{method} {url}: {e}")))?;
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")))
                    .map(String::from)
            });
        let out = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| Failure::Transient(format!("{method} {url}: reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return Ok((out, set_cookie));
        }
        // RFC 7807 problem JSON: show its detail, else a short body.
        let detail = serde_json::from_slice::<Value>(&out)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&out).chars().take(200).collect());
        let msg = format!("{method} {path} answered {status}: {detail}");
        if status >= 500 || status == 429 {
            Err(Failure::Transient(msg))
        } else {
            Err(Failure::Final(Error::Kbs(msg)))
        }
    }

    fn with_retry<T>(&self, mut f: impl FnMut() -> std::result::Result<T, Failure>) -> Result<T> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(last)) => {
                    if start.elapsed() + delay > self.retry_for {
                        return Err(Error::KbsUnreachable {
                            url: self.base.clone(),
                            secs: start.elapsed().as_secs_f64().ceil() as u64,
                            last,
                        });
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// auth + attest: evidence from `attester` binding the session nonce and
    /// a fresh key, with `init` as init data.
    pub fn attest(&self, attester: &dyn Attester, init: &InitData) -> Result<Session> {
        let key = new_key()?;
        self.attest_with_key(attester, init, &key)
    }

    /// auth + attest with `key` as the session's TEE key (the shield's TLS
    /// key, for which the KBS CA then issues a certificate).
    pub fn attest_with_key(
        &self,
        attester: &dyn Attester,
        init: &InitData,
        key: &p256::SecretKey,
    ) -> Result<Session> {
        self.with_retry(|| self.attest_once(attester, init, key.clone()))
    }

    /// A certificate from the KBS CA for the session's TEE key, with
    /// `dns_names` as subjectAltName: `(leaf PEM, CA PEM)`.
    pub fn certificate(&self, s: &Session, dns_names: &[String]) -> Result<(String, String)> {
        let body = json_body(&protocol::CertRequest {
            dns_names: dns_names.to_vec(),
        });
        let (answer, _) = self.with_retry(|| {
            self.request("POST", "/kbs/v0/cert", Some(&s.cookie), Some(&body))
                .map_err(|f| match f {
                    Failure::Final(Error::Kbs(m)) => {
                        Failure::Final(Error::Kbs(format!("certificate refused: {m}")))
                    }
                    other => other,
                })
        })?;
        let cert: protocol::CertResponse = serde_json::from_slice(&answer).map_err(|e| {
            Error::Kbs(format!(
                "certificate answer is not a certificate and CA ({e})"
            ))
        })?;
        Ok((cert.certificate, cert.ca))
    }

    fn attest_once(
        &self,
        attester: &dyn Attester,
        init: &InitData,
        key: p256::SecretKey,
    ) -> std::result::Result<Session, Failure> {
        let tee = attester.tee().as_str();
        let auth = json_body(&protocol::Request {
            version: protocol::PROTOCOL_VERSION.into(),
            tee: tee.into(),
            extra_params: "".into(),
        });
        let (body, cookie) = self.request("POST", "/kbs/v0/auth", None, Some(&auth))?;
        let cookie = cookie.ok_or_else(|| {
            Failure::Final(Error::Kbs(
                "auth answer set no kbs-session-id cookie".into(),
            ))
        })?;
        let challenge: protocol::Challenge = serde_json::from_slice(&body).map_err(|e| {
            Failure::Final(Error::Kbs(format!("auth answer is not a challenge ({e})")))
        })?;
        let nonce = challenge.nonce;
        let jwk = protocol::tee_pubkey(&key.public_key());
        let report_data = cocoon_attest::binding::kbs_report_data(&nonce, &jwk, "")
            .map_err(|e| Failure::Final(Error::Attest(e.to_string())))?;
        let evidence = attester
            .evidence(&report_data)
            .map_err(|e| Failure::Final(Error::Attest(format!("{tee} evidence: {e}"))))?;
        let att = json_body(&protocol::Attestation {
            init_data: Some(protocol::InitDataDoc {
                format: "json".into(),
                body: init.canonical_json(),
            }),
            runtime_data: protocol::RuntimeData {
                nonce,
                tee_pubkey: jwk,
            },
            tee_evidence: protocol::CompositeEvidence {
                primary_evidence: STANDARD.encode(&evidence).into(),
                additional_evidence: String::new(),
            },
        });
        let (body, _) = self
            .request("POST", "/kbs/v0/attest", Some(&cookie), Some(&att))
            .map_err(|f| match f {
                Failure::Final(Error::Kbs(m)) => {
                    Failure::Final(Error::Kbs(format!("attestation refused: {m}")))
                }
                other => other,
            })?;
        let token = serde_json::from_slice::<protocol::AttestationResponse>(&body)
            .map_err(|e| Failure::Final(Error::Kbs(format!("attest answer has no token ({e})"))))?
            .token;
        Ok(Session { cookie, key, token })
    }

    /// Fetches and decrypts resource `uri` (`kbs:///repo/type/tag`).
    pub fn resource(&self, s: &Session, uri: &str) -> Result<Zeroizing<Vec<u8>>> {
        let path = format!("/kbs/v0/resource/{}", resource_path(uri)?);
        let (body, _) = self.with_retry(|| {
            self.request("GET", &path, Some(&s.cookie), None)
                .map_err(|f| match f {
                    Failure::Final(Error::Kbs(m)) => {
                        Failure::Final(Error::Kbs(format!("{uri} refused: {m}")))
                    }
                    other => other,
                })
        })?;
        let answer: protocol::JweResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Kbs(format!("{uri}: the answer is not a JWE ({e})")))?;
        jwe::decrypt(jwe::RecipientSecret::P256(&s.key), &answer)
            .map_err(|e| Error::Kbs(format!("{uri}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths() {
        assert_eq!(resource_path("kbs:///a/b/c").unwrap(), "a/b/c");
        for bad in [
            "a/b/c",
            "kbs:///a/b",
            "kbs:///a/../c",
            "kbs:///a/b/c/d",
            "kbs:///a/b%/c",
        ] {
            assert!(resource_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unreachable_kbs_gives_up_within_budget() {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(900),
        )
        .unwrap();
        let t = Instant::now();
        let e = c
            .with_retry(|| c.request("POST", "/kbs/v0/auth", None, None))
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(
            e.contains("unreachable") && e.contains(&port.to_string()),
            "{e}"
        );
        assert!(Client::new("ftp://x", Duration::ZERO).is_err());
    }
}
