//! The HTTP(S) server: routes, handlers, rate limits, metrics, shutdown.
//!
//! Routes (all JSON errors are RFC 7807 problem documents):
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | POST | `/kbs/v0/auth` | attester |
//! | POST | `/kbs/v0/attest` | attester (session cookie) |
//! | GET | `/kbs/v0/resource/{repo}/{type}/{tag}` | attester (cookie or bearer token) |
//! | POST | `/kbs/v0/cert` | attester (cookie or bearer token) |
//! | GET | `/kbs/v0/jwks`, `/kbs/v0/ca.pem`, `/health`, `/metrics` | anyone |
//! | PUT/POST, DELETE | `/kbs/v0/resource/{repo}/{type}/{tag}` | admin |
//! | GET | `/kbs/v0/admin/resource/{repo}/{type}/{tag}`, `/kbs/v0/admin/resources` | admin |
//! | GET, POST | `/kbs/v0/resource-policy` | admin |
//! | GET, POST | `/kbs/v0/reference-value` | admin |
//! | DELETE | `/kbs/v0/reference-value/{workload digest}` | admin |

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cocoon_attest::{Collateral, Tee, UnixTime};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::ca::{make_ca_cert, Ca};
use crate::config::Config;
use crate::crypto::{b64, b64_decode_any, new_p256_key, p256_key_from_pem, p256_key_to_pem};
use crate::metrics::Metrics;
use crate::policy::{self, Policy, DEFAULT_POLICY};
use crate::protocol::jwe::{self, RecipientKey};
use crate::protocol::*;
use crate::reference::{
    parse_resource_uri, presented_init_data, reference_values_from_json, resource_uri,
    ReferenceValues,
};
use crate::session::{SessionState, Sessions};
use crate::store::{Kek, Store, META, REFERENCE_VALUES, RESOURCES};
use crate::token::{now_secs, TokenSigner};
use crate::{Error, Result};

/// The peer address of a request (set by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// A per-client-IP token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` tokens per second, up to `burst`; `rate == 0` disables.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`; false when the bucket is empty.
    pub fn check(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            m.retain(|_, (t, last)| *t + now.duration_since(*last).as_secs_f64() * rate < burst);
        }
        let (tokens, last) = m.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The KBS state shared by all requests.
pub struct Kbs {
    config: Config,
    store: Store,
    policy: Policy,
    sessions: Sessions,
    signer: TokenSigner,
    ca: Ca,
    collateral: Collateral,
    sim_roots: crate::simcache::SimRootCache,
    admin_keys: Vec<p256::ecdsa::VerifyingKey>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    limiter: RateLimiter,
    pinned_time: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Kbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kbs").finish_non_exhaustive()
    }
}

fn load_or_make_key(store: &Store, name: &str) -> Result<p256::SecretKey> {
    if let Some(pem) = store.get(META, name)? {
        let text =
            std::str::from_utf8(&pem).map_err(|_| Error::Store(format!("{name} is not PEM")))?;
        return p256_key_from_pem(text);
    }
    let k = new_p256_key()?;
    store.put(META, name, p256_key_to_pem(&k)?.as_bytes())?;
    Ok(k)
}

fn reference_values(store: &Store) -> Result<Vec<ReferenceValues>> {
    store
        .values(REFERENCE_VALUES)?
        .iter()
        .map(|(k, v)| {
            serde_json::from_slice(v).map_err(|e| Error::Store(format!("reference value {k}: {e}")))
        })
        .collect()
}

fn current_policy(store: &Store) -> Result<String> {
    Ok(match store.get(META, "policy")? {
        Some(p) => {
            String::from_utf8(p.to_vec()).map_err(|_| Error::Store("policy is not UTF-8".into()))?
        }
        None => DEFAULT_POLICY.to_string(),
    })
}

impl Kbs {
    /// Opens the store (with the KEK from the config), loads or creates the
    /// token and CA keys, compiles the policy and loads the collateral.
    pub fn open(config: Config) -> Result<Arc<Kbs>> {
        config.validate()?;
        let kek = Kek::load(
            config.store.kek_file.as_deref(),
            config.store.kek_env.as_deref(),
        )?;
        Kbs::open_with_kek(config, kek)
    }

    /// Like [`Kbs::open`] with an explicit key-encryption key.
    pub fn open_with_kek(config: Config, kek: Kek) -> Result<Arc<Kbs>> {
        let store = Store::open(&config.store.path, kek)?;
        let token_key = load_or_make_key(&store, "token-key")?;
        let ca_key = load_or_make_key(&store, "ca-key")?;
        let ca_pem = match store.get(META, "ca-cert")? {
            Some(p) => String::from_utf8(p.to_vec())
                .map_err(|_| Error::Store("ca-cert is not PEM".into()))?,
            None => {
                let pem = make_ca_cert(&ca_key, &config.ca.name, now_secs())?;
                store.put(META, "ca-cert", pem.as_bytes())?;
                pem
            }
        };
        let ca = Ca::new(&ca_key, &ca_pem, config.ca.cert_ttl_secs)?;
        let policy = Policy::new(&current_policy(&store)?, &reference_values(&store)?)?;
        let mut collateral = if config.attestation.collateral.is_empty() {
            Collateral::default()
        } else {
            Collateral::from_paths(&config.attestation.collateral)
                .map_err(|e| Error::Config(format!("attestation.collateral: {e}")))?
        };
        if !config.attestation.allow_sim {
            collateral.sim_roots.clear();
        }
        let admin_keys = admin::load_keys(&config.admin.public_keys)?;
        let signer = TokenSigner::new(
            &token_key,
            config.attestation.issuer.clone(),
            config.attestation.token_ttl_secs,
        )?;
        Ok(Arc::new(Kbs {
            sessions: Sessions::new(
                Duration::from_secs(config.attestation.session_ttl_secs),
                config.attestation.max_sessions,
            ),
            limiter: RateLimiter::new(
                config.server.rate_limit_per_sec,
                config.server.rate_limit_burst,
            ),
            config,
            store,
            policy,
            signer,
            ca,
            collateral,
            sim_roots: Default::default(),
            admin_keys,
            metrics: Metrics::default(),
            pinned_time: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The token signer (for its JWKS).
    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// Pins the time used to verify evidence (collateral validity windows)
    /// to `t` seconds since the epoch; `None` uses the clock. For tests
    /// against captured evidence whose collateral has expired.
    pub fn pin_verification_time(&self, t: Option<u64>) {
        self.pinned_time
            .store(t.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    fn verification_time(&self) -> UnixTime {
        match self.pinned_time.load(std::sync::atomic::Ordering::Relaxed) {
            0 => UnixTime::now(),
            t => UnixTime(t),
        }
    }

    fn reload_policy(&self) -> Result<()> {
        self.policy.replace(
            &current_policy(&self.store)?,
            &reference_values(&self.store)?,
        )
    }
}

type St = State<Arc<Kbs>>;

async fn read_body(kbs: &Kbs, body: Body) -> Result<Bytes> {
    let limit = kbs.config.server.max_body_bytes;
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Error::PayloadTooLarge(limit))
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::BadRequest(format!("{what}: {e}")))
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == SESSION_COOKIE {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

async fn auth(State(kbs): St, body: Body) -> Result<Response> {
    let b = read_body(&kbs, body).await?;
    let req: Request_ = parse_json("auth request", &b)?;
    if req.version != PROTOCOL_VERSION {
        return Err(Error::BadRequest(format!(
            "protocol version {:?} is not supported; this KBS speaks {PROTOCOL_VERSION}",
            req.version
        )));
    }
    check_tee_allowed(&kbs, &req.tee)?;
    let nonce = b64(&crate::crypto::random_bytes(32)?);
    let id = kbs.sessions.create(&req.tee, nonce.clone())?;
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/kbs; HttpOnly; SameSite=Strict; Max-Age={}",
        kbs.config.attestation.session_ttl_secs
    );
    let mut resp = Json(Challenge {
        nonce,
        extra_params: Value::String(String::new()),
    })
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| Error::Internal(e.to_string()))?,
    );
    Ok(resp)
}

type Request_ = crate::protocol::Request;

fn check_tee_allowed(kbs: &Kbs, tee: &str) -> Result<()> {
    match tee {
        "sample" if !kbs.config.attestation.allow_sample => Err(Error::Forbidden(
            "the insecure sample TEE is not accepted (attestation.allow_sample = false)".into(),
        )),
        "sample" => Ok(()),
        "sim" if !kbs.config.attestation.allow_sim => Err(Error::Forbidden(
            "sim evidence is not accepted (attestation.allow_sim = false)".into(),
        )),
        t => Tee::from_str(t).map(|_| ()).map_err(|_| {
            Error::BadRequest(format!(
                "TEE {t:?} is not supported; use sim, snp, tdx, sgx, az-snp-vtpm or sample"
            ))
        }),
    }
}

fn evidence_bytes(v: &Value) -> Result<Vec<u8>> {
    match v {
        Value::String(s) => b64_decode_any("primary_evidence", s),
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()))
        }
        _ => Err(Error::BadRequest(
            "primary_evidence must be a base64 string or a JSON object".into(),
        )),
    }
}

/// Claims of Trustee's insecure `sample` evidence: `{"svn", "report_data"}`.
fn sample_claims(v: &Value) -> Result<Value> {
    let obj = match v {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|e| Error::BadRequest(format!("sample evidence: {e}")))?,
        other => other.clone(),
    };
    let rd = obj
        .get("report_data")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadRequest("sample evidence: no report_data".into()))?;
    let rd = b64_decode_any("sample report_data", rd)?;
    if rd.len() > 64 {
        return Err(Error::BadRequest(
            "sample report_data longer than 64 bytes".into(),
        ));
    }
    let svn = obj.get("svn").and_then(Value::as_str).unwrap_or("0");
    Ok(json!({
        "tee": "sample", "debug": true,
        "tcb": {"status": "Simulated", "advisory_ids": []},
        "launch_measurement": "", "init_data": "",
        "report_data": hex::encode(&rd), "signer": null,
        "svn": {"svn": svn.parse::<u64>().unwrap_or(0)},
        "platform": {}, "measurements": {},
    }))
}

async fn attest(State(kbs): St, headers: HeaderMap, body: Body) -> Result<Response> {
    let id = session_id(&headers).ok_or_else(|| {
        Error::Unauthorized("no kbs-session-id cookie; start with POST /kbs/v0/auth".into())
    })?;
    // Take the nonce first: whatever happens next, it is spent.
    let (tee, nonce) = kbs.sessions.take_nonce(&id)?;
    let result = attest_inner(&kbs, &tee, &nonce, body).await;
    match result {
        Ok(annotated) => {
            let debug = annotated
                .pointer("/claims/debug")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let status = if debug { "warning" } else { "affirming" };
            let token = kbs
                .signer
                .issue_ear(now_secs(), status, debug, annotated.clone())?;
            kbs.sessions.set_attested(&id, annotated);
            Metrics::inc(&kbs.metrics.attest_ok);
            tracing::info!(tee = %tee, status, "attestation accepted");
            Ok(Json(AttestationResponse { token }).into_response())
        }
        Err(e) => {
            Metrics::inc(&kbs.metrics.attest_refused);
            tracing::info!(tee = %tee, error = %e, "attestation refused");
            Err(e)
        }
    }
}

async fn attest_inner(kbs: &Arc<Kbs>, tee: &str, nonce: &str, body: Body) -> Result<Value> {
    let b = read_body(kbs, body).await?;
    let att: Attestation = parse_json("attestation", &b)?;
    if att.runtime_data.nonce != nonce {
        return Err(Error::Forbidden(
            "runtime-data nonce is not the nonce of this session".into(),
        ));
    }
    let tee_key = RecipientKey::from_jwk(&att.runtime_data.tee_pubkey)?;
    let expected = cocoon_attest::binding::kbs_report_data(
        nonce,
        &att.runtime_data.tee_pubkey,
        &att.tee_evidence.additional_evidence,
    )
    .map_err(|e| Error::BadRequest(e.to_string()))?;
    check_tee_allowed(kbs, tee)?;
    let init_data = match &att.init_data {
        None => None,
        Some(doc) => Some(presented_init_data(&doc.format, &doc.body)?),
    };
    let claims: Value = if tee == "sample" {
        let c = sample_claims(&att.tee_evidence.primary_evidence)?;
        let rd = hex::decode(c["report_data"].as_str().unwrap_or_default()).unwrap_or_default();
        let mut padded = rd.clone();
        padded.resize(64, 0);
        if padded[..] != expected[..] {
            return Err(Error::Forbidden(
                "report data does not bind this session's nonce and tee-pubkey".into(),
            ));
        }
        // Sample evidence cannot bind init data; it is taken as claimed.
        c
    } else {
        let t = Tee::from_str(tee).map_err(|e| Error::BadRequest(e.to_string()))?;
        let ev = evidence_bytes(&att.tee_evidence.primary_evidence)?;
        // Verification is CPU-bound (ECDSA, certificate chains): run it on
        // the blocking pool so the runtime keeps serving other requests.
        let k = kbs.clone();
        let claims = tokio::task::spawn_blocking(move || {
            let now = k.verification_time();
            if t == Tee::Sim {
                k.sim_roots.verify(&ev, &k.collateral, now)
            } else {
                cocoon_attest::verify(t, &ev, &k.collateral, now)
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("task: {e}")))?
        .map_err(|e| Error::Forbidden(format!("evidence refused: {e}")))?;
        claims.expect_report_data(&expected).map_err(|_| {
            Error::Forbidden("report data does not bind this session's nonce and tee-pubkey".into())
        })?;
        if let Some(i) = &init_data {
            claims.expect_init_data(&i.digest).map_err(|_| {
                Error::Forbidden(
                    "init data digest does not match the evidence's init data field".into(),
                )
            })?;
        }
        if t == Tee::Sim && !kbs.config.attestation.allow_sim {
            return Err(Error::Forbidden("sim evidence is not accepted".into()));
        }
        serde_json::to_value(&claims).map_err(|e| Error::Internal(e.to_string()))?
    };
    let _ = tee_key;
    Ok(json!({
        "tee": tee,
        "claims": claims,
        "init_data": init_data.map(|i| i.policy_view),
        "runtime_data_claims": {"tee-pubkey": att.runtime_data.tee_pubkey},
    }))
}

/// The annotated evidence of the caller: bearer token, else session cookie.
fn attested(kbs: &Kbs, headers: &HeaderMap) -> Result<Value> {
    if let Some(t) = admin::bearer(headers) {
        return kbs.signer.verify_ear(t, now_secs());
    }
    let id = session_id(headers).ok_or_else(|| {
        Error::Unauthorized("no kbs-session-id cookie and no bearer token; attest first".into())
    })?;
    match kbs.sessions.get(&id)?.state {
        SessionState::Attested { annotated } => Ok(annotated),
        _ => Err(Error::Unauthorized("this session has not attested".into())),
    }
}

fn tee_key_of(annotated: &Value) -> Result<RecipientKey> {
    let jwk = annotated
        .pointer("/runtime_data_claims/tee-pubkey")
        .ok_or_else(|| Error::Unauthorized("token has no tee-pubkey".into()))?;
    Ok(RecipientKey::from_jwk(jwk)?)
}

async fn get_resource(
    State(kbs): St,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let uri = resource_uri(&repo, &kind, &tag);
    parse_resource_uri(&uri)?;
    let annotated = attested(&kbs, &headers)?;
    let input = policy::input(
        &annotated["claims"],
        &annotated["init_data"],
        &uri,
        kbs.config.attestation.allow_sim,
        kbs.config.attestation.allow_sample,
    )?;
    if !kbs.policy.allows(&input)? {
        Metrics::inc(&kbs.metrics.policy_denied);
        tracing::info!(resource = %uri, "resource denied by policy");
        return Err(Error::Forbidden(format!(
            "policy denies {uri} to this evidence"
        )));
    }
    let key = tee_key_of(&annotated)?;
    let value = kbs
        .store
        .get(RESOURCES, &format!("{repo}/{kind}/{tag}"))?
        .ok_or_else(|| Error::NotFound(format!("no resource {uri}")))?;
    let jwe = jwe::encrypt(&key, &value)?;
    Metrics::inc(&kbs.metrics.resources_released);
    tracing::info!(resource = %uri, "resource released");
    Ok(Json(jwe).into_response())
}

async fn issue_cert(State(kbs): St, headers: HeaderMap, body: Body) -> Result<Response> {
    let annotated = attested(&kbs, &headers)?;
    let b = read_body(&kbs, body).await?;
    let req: CertRequest = if b.is_empty() {
        CertRequest::default()
    } else {
        parse_json("certificate request", &b)?
    };
    let input = policy::input_for(
        &annotated["claims"],
        &annotated["init_data"],
        Value::Null,
        kbs.config.attestation.allow_sim,
        kbs.config.attestation.allow_sample,
    );
    if !kbs.policy.eval(policy::ALLOW_CERT_RULE, &input)? {
        Metrics::inc(&kbs.metrics.policy_denied);
        return Err(Error::Forbidden(
            "policy denies a certificate to this evidence".into(),
        ));
    }
    let key = tee_key_of(&annotated)?;
    let digest = annotated
        .pointer("/init_data/workload_digest")
        .and_then(Value::as_str);
    let pem = kbs.ca.issue(&key, &req.dns_names, digest, now_secs())?;
    Metrics::inc(&kbs.metrics.certs_issued);
    Ok(Json(CertResponse {
        certificate: pem,
        ca: kbs.ca.cert_pem().to_string(),
    })
    .into_response())
}

async fn jwks(State(kbs): St) -> Json<Value> {
    Json(kbs.signer.jwks())
}

async fn ca_pem(State(kbs): St) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        kbs.ca.cert_pem().to_string(),
    )
        .into_response()
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(kbs): St) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        kbs.metrics.render(kbs.sessions.sweep()),
    )
        .into_response()
}

fn admin_ok(kbs: &Kbs, headers: &HeaderMap) -> Result<()> {
    admin::authorize(headers, &kbs.admin_keys, now_secs())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("task: {e}")))?
}

async fn put_resource(
    State(kbs): St,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    parse_resource_uri(&resource_uri(&repo, &kind, &tag))?;
    let b = read_body(&kbs, body).await?;
    let k = kbs.clone();
    blocking(move || k.store.put(RESOURCES, &format!("{repo}/{kind}/{tag}"), &b)).await?;
    tracing::info!("admin: resource stored");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_resource(
    State(kbs): St,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let k = kbs.clone();
    let key = format!("{repo}/{kind}/{tag}");
    if blocking(move || k.store.delete(RESOURCES, &key)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Error::NotFound(format!(
            "no resource {}",
            resource_uri(&repo, &kind, &tag)
        )))
    }
}

async fn admin_get_resource(
    State(kbs): St,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let v = kbs
        .store
        .get(RESOURCES, &format!("{repo}/{kind}/{tag}"))?
        .ok_or_else(|| {
            Error::NotFound(format!("no resource {}", resource_uri(&repo, &kind, &tag)))
        })?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        v.to_vec(),
    )
        .into_response())
}

async fn admin_list_resources(State(kbs): St, headers: HeaderMap) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let keys: Vec<String> = kbs
        .store
        .keys(RESOURCES)?
        .into_iter()
        .map(|k| format!("kbs:///{k}"))
        .collect();
    Ok(Json(keys).into_response())
}

async fn get_policy(State(kbs): St, headers: HeaderMap) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        current_policy(&kbs.store)?,
    )
        .into_response())
}

async fn set_policy(State(kbs): St, headers: HeaderMap, body: Body) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let b = read_body(&kbs, body).await?;
    // Trustee sends {"policy": "<base64url of the Rego text>"}; cocoon sends the text.
    let text = match serde_json::from_slice::<Value>(&b) {
        Ok(v) if v.get("policy").and_then(Value::as_str).is_some() => {
            let p = v["policy"].as_str().unwrap_or_default();
            String::from_utf8(b64_decode_any("policy", p)?)
                .map_err(|_| Error::BadRequest("policy is not UTF-8".into()))?
        }
        _ => String::from_utf8(b.to_vec())
            .map_err(|_| Error::BadRequest("policy is not UTF-8".into()))?,
    };
    policy::compile(&text, &[])?;
    let k = kbs.clone();
    blocking(move || {
        k.store.put(META, "policy", text.as_bytes())?;
        k.reload_policy()
    })
    .await?;
    tracing::info!("admin: policy replaced");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_reference_values(State(kbs): St, headers: HeaderMap, body: Body) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let b = read_body(&kbs, body).await?;
    let rv = reference_values_from_json(&b)?;
    let k = kbs.clone();
    blocking(move || {
        let j = serde_json::to_vec(&rv).map_err(|e| Error::Internal(e.to_string()))?;
        k.store.put(REFERENCE_VALUES, &rv.workload_digest, &j)?;
        k.reload_policy()
    })
    .await?;
    tracing::info!("admin: reference values stored");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_reference_values(State(kbs): St, headers: HeaderMap) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    Ok(Json(reference_values(&kbs.store)?).into_response())
}

async fn delete_reference_values(
    State(kbs): St,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    admin_ok(&kbs, &headers)?;
    let k = kbs.clone();
    let d = digest.clone();
    let existed = blocking(move || {
        let e = k.store.delete(REFERENCE_VALUES, &d)?;
        k.reload_policy()?;
        Ok(e)
    })
    .await?;
    if existed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Error::NotFound(format!("no reference values for {digest}")))
    }
}

async fn not_found() -> Error {
    Error::NotFound("no such route".into())
}

fn route_label(path: &str) -> &'static str {
    const ROUTES: [&str; 12] = [
        "/kbs/v0/auth",
        "/kbs/v0/attest",
        "/kbs/v0/resource-policy",
        "/kbs/v0/resource",
        "/kbs/v0/cert",
        "/kbs/v0/jwks",
        "/kbs/v0/ca.pem",
        "/kbs/v0/reference-value",
        "/kbs/v0/admin",
        "/health",
        "/metrics",
        "/kbs",
    ];
    ROUTES
        .iter()
        .find(|r| path.starts_with(*r))
        .copied()
        .unwrap_or("other")
}

async fn middleware(State(kbs): St, req: Request, next: axum::middleware::Next) -> Response {
    let start = Instant::now();
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    if let Some(ip) = peer {
        if !kbs.limiter.check(ip) {
            Metrics::inc(&kbs.metrics.rate_limited);
            kbs.metrics.request(route, 429);
            return Error::TooManyRequests.into_response();
        }
    }
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > kbs.config.server.max_body_bytes);
    let resp = if too_big {
        Error::PayloadTooLarge(kbs.config.server.max_body_bytes).into_response()
    } else {
        next.run(req).await
    };
    let status = resp.status().as_u16();
    kbs.metrics.request(route, status);
    tracing::debug!(%method, route, status, micros = start.elapsed().as_micros() as u64, "request");
    resp
}

/// The router over `kbs`.
pub fn router(kbs: Arc<Kbs>) -> Router {
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route(
            "/kbs/v0/resource/{repo}/{type}/{tag}",
            get(get_resource)
                .put(put_resource)
                .post(put_resource)
                .delete(delete_resource),
        )
        .route("/kbs/v0/cert", post(issue_cert))
        .route("/kbs/v0/jwks", get(jwks))
        .route("/kbs/v0/ca.pem", get(ca_pem))
        .route("/kbs/v0/admin/resources", get(admin_list_resources))
        .route(
            "/kbs/v0/admin/resource/{repo}/{type}/{tag}",
            get(admin_get_resource),
        )
        .route("/kbs/v0/resource-policy", get(get_policy).post(set_policy))
        .route(
            "/kbs/v0/reference-value",
            get(list_reference_values).post(add_reference_values),
        )
        .route(
            "/kbs/v0/reference-value/{digest}",
            axum::routing::delete(delete_reference_values),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            kbs.clone(),
            middleware,
        ))
        .with_state(kbs)
}

fn tls_acceptor(cfg: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&cfg.server.tls_cert, &cfg.server.tls_key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Config(format!("server.tls_cert {}: {e}", cert.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("server.tls_cert {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Config(format!("server.tls_key {}: {e}", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let sc = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("TLS certificate/key: {e}")))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc))))
}

async fn serve_conn<S>(io: S, peer: SocketAddr, app: Router, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            app.clone().oneshot(req.map(Body::new))
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(error = %e, "connection ended"); } }
        _ = async {
            loop {
                if *stop.borrow_and_update() { break; }
                if stop.changed().await.is_err() { break; }
            }
        } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serves `kbs` on `listener` until `shutdown` completes, then stops
/// accepting and waits up to `server.shutdown_grace_secs` for open
/// connections to finish.
pub async fn serve(
    kbs: Arc<Kbs>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let tls = tls_acceptor(&kbs.config)?;
    let app = router(kbs.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let sweeper = {
        let k = kbs.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                k.sessions.sweep();
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => {
                let (stream, peer) = match acc {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let stop = stop_rx.clone();
                match tls.clone() {
                    None => { tasks.spawn(serve_conn(stream, peer, app, stop)); }
                    Some(acceptor) => {
                        tasks.spawn(async move {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_conn(tls, peer, app, stop).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        });
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    tracing::info!("shutting down: no new connections; finishing open ones");
    sweeper.abort();
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(kbs.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; dropping open connections");
        tasks.abort_all();
    }
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Sets up logging from the config (once per process).
pub fn init_logging(cfg: &Config) {
    let level = tracing::Level::from_str(&cfg.log.level).unwrap_or(tracing::Level::INFO);
    // Colour only for a person at a terminal: never in files, pipes or
    // journald, and not when NO_COLOR is set (https://no-color.org).
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if cfg.log.format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Runs the KBS until SIGTERM/ctrl-c: logging, store, listener, serve.
/// Prints `listening on ADDR` to the log once bound.
pub fn run(config: Config) -> Result<()> {
    init_logging(&config);
    let kbs = Kbs::open(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let addr = kbs.config.server.listen.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Config(format!("listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let scheme = if kbs.config.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(address = %local, scheme, "cocoon KBS listening");
        serve(kbs, listener, shutdown_signal()).await
    })
}
