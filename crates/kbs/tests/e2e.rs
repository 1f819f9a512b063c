//! End to end over real HTTP on 127.0.0.1 with sim evidence: auth ->
//! attest -> resource -> decrypt, and every refusal with its status and an
//! RFC 7807 body, the server still serving afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cocoon_attest::binding::{init_data_field, kbs_report_data};
use cocoon_attest::sim::{self, SimPlatform};
use cocoon_attest::Tee;
use cocoon_kbs::client::AdminClient;
use cocoon_kbs::config::Config;
use cocoon_kbs::crypto::{b64, p256_jwk};
use cocoon_kbs::protocol::jwe::{decrypt, RecipientSecret};
use cocoon_kbs::protocol::JweResponse;
use cocoon_kbs::server::{serve, Kbs};
use cocoon_kbs::store::Kek;
use cocoon_kbs::{InitData, ReferenceValues};
use cocoon_testkit::server::BackgroundServer;
use serde_json::{json, Value};

const SECRET: &[u8] = b"image-key-0123456789abcdef-SECRET";

fn d(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn init_data() -> InitData {
    InitData {
        workload_digest: d('a'),
        launcher_digest: d('b'),
        signer: d('c'),
    }
}

/// Fields drop in order: the server stops before its directory goes.
struct Harness {
    _server: BackgroundServer,
    base: String,
    kbs: Arc<Kbs>,
    sim: SimPlatform,
    admin: AdminClient,
    dir: tempfile::TempDir,
}

fn start(tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim::init(&dir.path().join("sim")).unwrap();
    let admin_key = dir.path().join("admin.pem");
    let admin_pub = cocoon_kbs::admin::keygen(&admin_key).unwrap();
    let mut cfg = Config::default();
    cfg.attestation.allow_sim = true;
    cfg.attestation.collateral = vec![sim.root_path()];
    cfg.store.path = dir.path().join("kbs.redb");
    cfg.admin.public_keys = vec![admin_pub];
    cfg.server.rate_limit_per_sec = 0;
    cfg.server.max_body_bytes = 64 * 1024;
    tweak(&mut cfg);
    let kbs = Kbs::open_with_kek(cfg, Kek::generate().unwrap()).unwrap();
    let served = kbs.clone();
    let server =
        BackgroundServer::start("127.0.0.1:0", 2, move |l, stop| serve(served, l, stop)).unwrap();
    let base = format!("http://{}", server.addr());
    let admin = AdminClient::new(&base, cocoon_kbs::admin::load_private(&admin_key).unwrap());
    Harness {
        _server: server,
        base,
        kbs,
        sim,
        admin,
        dir,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

struct Resp {
    status: u16,
    cookie: Option<String>,
    body: Vec<u8>,
    content_type: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// Asserts status and an RFC 7807 body; returns the detail.
    fn problem(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type, "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["type"].is_string() && p["title"].is_string());
        p["detail"].as_str().unwrap().to_string()
    }
}

fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut r = agent().run(b.body(body).unwrap()).unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap_or_default();
    Resp {
        status,
        cookie,
        body,
        content_type,
    }
}

/// A TEE side: its key and how it makes evidence.
struct Tee_ {
    key: p256::SecretKey,
}

impl Tee_ {
    fn new() -> Self {
        Tee_ {
            key: cocoon_kbs::crypto::new_p256_key().unwrap(),
        }
    }
    fn jwk(&self) -> Value {
        let mut j = p256_jwk(&self.key.public_key());
        j["alg"] = "ECDH-ES+A256KW".into();
        j
    }
}

struct Flow<'a> {
    h: &'a Harness,
    tee: Tee_,
    cookie: String,
    nonce: String,
}

fn auth<'a>(h: &'a Harness, tee: &str) -> Flow<'a> {
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[("content-type", "application/json")],
        json!({"version": "0.4.0", "tee": tee, "extra-params": ""})
            .to_string()
            .into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let nonce = r.json()["nonce"].as_str().unwrap().to_string();
    assert_eq!(
        cocoon_kbs::crypto::b64_decode_any("n", &nonce)
            .unwrap()
            .len(),
        32
    );
    Flow {
        h,
        tee: Tee_::new(),
        cookie: r.cookie.unwrap(),
        nonce,
    }
}

impl Flow<'_> {
    /// Sim evidence binding `nonce`, `jwk` and `init` (host data).
    fn evidence(&self, sim: &SimPlatform, nonce: &str, jwk: &Value, init: &InitData) -> Vec<u8> {
        let rd = kbs_report_data(nonce, jwk, "").unwrap();
        let host = init_data_field(Tee::Sim, &init.digest()).unwrap();
        sim.sign([7; 48], &host, &rd, 1).unwrap()
    }

    fn attest_with(&self, evidence: &[u8], nonce: &str, jwk: &Value, init: &InitData) -> Resp {
        let body = json!({
            "init-data": {"format": "json", "body": serde_json::to_string(init).unwrap()},
            "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": b64(evidence), "additional_evidence": ""},
        });
        http(
            "POST",
            &format!("{}/kbs/v0/attest", self.h.base),
            &[
                ("cookie", &self.cookie),
                ("content-type", "application/json"),
            ],
            body.to_string().into_bytes(),
        )
    }

    fn attest(&self) -> Resp {
        let jwk = self.tee.jwk();
        let ev = self.evidence(&self.h.sim, &self.nonce, &jwk, &init_data());
        self.attest_with(&ev, &self.nonce, &jwk, &init_data())
    }

    fn resource(&self, path: &str) -> Resp {
        http(
            "GET",
            &format!("{}/kbs/v0/resource/{path}", self.h.base),
            &[("cookie", &self.cookie)],
            vec![],
        )
    }
}

fn provision(h: &Harness) {
    h.admin
        .put_resource("kbs:///app/key/image", SECRET)
        .unwrap();
    h.admin
        .add_reference_values(&ReferenceValues {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('c'),
            resources: vec![
                "kbs:///app/key/image".into(),
                "kbs:///app/key/missing".into(),
            ],
        })
        .unwrap();
}

fn decrypt_resp(f: &Flow<'_>, r: &Resp) -> Vec<u8> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let jwe: JweResponse = serde_json::from_slice(&r.body).unwrap();
    decrypt(RecipientSecret::P256(&f.tee.key), &jwe)
        .unwrap()
        .to_vec()
}

/// The whole flow works; then the server is still fine.
fn good_flow(h: &Harness) {
    let f = auth(h, "sim");
    assert_eq!(f.attest().status, 200);
    assert_eq!(decrypt_resp(&f, &f.resource("app/key/image")), SECRET);
}

#[test]
fn end_to_end_sim_flow_token_jwks_bearer_and_cert() {
    let h = start(|_| {});
    provision(&h);
    let f = auth(&h, "sim");
    let r = f.attest();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["token"].as_str().unwrap().to_string();
    // Resource by cookie, decrypted with the TEE key.
    assert_eq!(decrypt_resp(&f, &f.resource("app/key/image")), SECRET);
    // The token verifies against the JWKS.
    let jwks = http("GET", &format!("{}/kbs/v0/jwks", h.base), &[], vec![]).json();
    let k = &jwks["keys"][0];
    let jwk = cocoon_kbs::protocol::jwe::RecipientKey::from_jwk(
        &json!({"kty": "EC", "crv": "P-256", "x": k["x"], "y": k["y"]}),
    )
    .unwrap();
    let cocoon_kbs::protocol::jwe::RecipientKey::P256(pk) = jwk else {
        panic!()
    };
    let claims = cocoon_kbs::token::verify_es256(
        &token,
        &[p256::ecdsa::VerifyingKey::from(&pk)],
        cocoon_kbs::token::now_secs(),
    )
    .unwrap();
    assert_eq!(claims["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "warning");
    let ae = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(ae["claims"]["tee"], "sim");
    assert_eq!(ae["init_data"]["workload_digest"], d('a'));
    // Resource by bearer token, no cookie.
    let r = http(
        "GET",
        &format!("{}/kbs/v0/resource/app/key/image", h.base),
        &[("authorization", &format!("Bearer {token}"))],
        vec![],
    );
    assert_eq!(decrypt_resp(&f, &r), SECRET);
    // A forged bearer token is refused.
    let mut bad = token.clone();
    bad.replace_range(bad.len() - 4.., "AAAA");
    let r = http(
        "GET",
        &format!("{}/kbs/v0/resource/app/key/image", h.base),
        &[("authorization", &format!("Bearer {bad}"))],
        vec![],
    );
    r.problem(401);
    // Workload certificate for the tee-pubkey, chained to ca.pem.
    let r = http(
        "POST",
        &format!("{}/kbs/v0/cert", h.base),
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        br#"{"dns_names":["app.local"]}"#.to_vec(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let c = r.json();
    assert!(c["certificate"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let ca = http("GET", &format!("{}/kbs/v0/ca.pem", h.base), &[], vec![]);
    assert_eq!(
        String::from_utf8(ca.body).unwrap(),
        c["ca"].as_str().unwrap()
    );
    // Health and metrics.
    assert_eq!(
        http("GET", &format!("{}/health", h.base), &[], vec![]).status,
        200
    );
    let m =
        String::from_utf8(http("GET", &format!("{}/metrics", h.base), &[], vec![]).body).unwrap();
    assert!(m.contains("kbs_attestations_ok_total 1"), "{m}");
    assert!(m.contains("kbs_resources_released_total 2"), "{m}");
}

#[test]
fn rsa_tee_key_gets_rsa_oaep_jwe() {
    use rsa::traits::PublicKeyParts;
    let h = start(|_| {});
    provision(&h);
    let f = auth(&h, "sim");
    let sk = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let pk = sk.to_public_key();
    let jwk = json!({"kty": "RSA", "alg": "RSA-OAEP-256",
        "n": cocoon_kbs::crypto::b64url(&pk.n().to_be_bytes()),
        "e": cocoon_kbs::crypto::b64url(&pk.e().to_be_bytes())});
    let ev = f.evidence(&h.sim, &f.nonce, &jwk, &init_data());
    assert_eq!(f.attest_with(&ev, &f.nonce, &jwk, &init_data()).status, 200);
    let r = f.resource("app/key/image");
    let jwe: JweResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        decrypt(RecipientSecret::Rsa(&sk), &jwe).unwrap().as_slice(),
        SECRET
    );
}

#[test]
fn attestation_refusals_keep_the_server_serving() {
    let h = start(|_| {});
    provision(&h);

    // Wrong protocol version: 400.
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[],
        br#"{"version":"0.3.0","tee":"sim","extra-params":""}"#.to_vec(),
    );
    assert!(r.problem(400).contains("0.4.0"));

    // Replayed nonce: the second attest on the same session is refused.
    let f = auth(&h, "sim");
    assert_eq!(f.attest().status, 200);
    assert!(f.attest().problem(401).contains("already used"));

    // Evidence for another nonce (runtime data says the session nonce).
    let f = auth(&h, "sim");
    let jwk = f.tee.jwk();
    let other = b64(&[9u8; 32]);
    let ev = f.evidence(&h.sim, &other, &jwk, &init_data());
    assert!(f
        .attest_with(&ev, &f.nonce, &jwk, &init_data())
        .problem(403)
        .contains("report data"));
    // ... and runtime data naming another nonce.
    let f = auth(&h, "sim");
    let ev = f.evidence(&h.sim, &other, &jwk, &init_data());
    assert!(f
        .attest_with(&ev, &other, &jwk, &init_data())
        .problem(403)
        .contains("nonce"));

    // Report data bound to another tee-pubkey.
    let f = auth(&h, "sim");
    let attacker = Tee_::new().jwk();
    let ev = f.evidence(&h.sim, &f.nonce, &f.tee.jwk(), &init_data());
    assert!(f
        .attest_with(&ev, &f.nonce, &attacker, &init_data())
        .problem(403)
        .contains("report data"));

    // Wrong init data: evidence binds workload a, request claims workload e.
    let f = auth(&h, "sim");
    let jwk = f.tee.jwk();
    let ev = f.evidence(&h.sim, &f.nonce, &jwk, &init_data());
    let mut lie = init_data();
    lie.workload_digest = d('e');
    assert!(f
        .attest_with(&ev, &f.nonce, &jwk, &lie)
        .problem(403)
        .contains("init data"));

    // Untrusted sim root: another sim platform signs.
    let rogue = sim::init(&h.dir.path().join("rogue")).unwrap();
    let f = auth(&h, "sim");
    let jwk = f.tee.jwk();
    let ev = f.evidence(&rogue, &f.nonce, &jwk, &init_data());
    assert!(f
        .attest_with(&ev, &f.nonce, &jwk, &init_data())
        .problem(403)
        .contains("evidence refused"));

    // Missing cookie.
    let r = http(
        "POST",
        &format!("{}/kbs/v0/attest", h.base),
        &[],
        b"{}".to_vec(),
    );
    r.problem(401);
    let r = http(
        "GET",
        &format!("{}/kbs/v0/resource/app/key/image", h.base),
        &[],
        vec![],
    );
    r.problem(401);
    // A session that has not attested gets no resource.
    let f = auth(&h, "sim");
    f.resource("app/key/image").problem(401);

    // Malformed JSON and an oversized body: 4xx, and the server keeps going.
    let f = auth(&h, "sim");
    let r = http(
        "POST",
        &format!("{}/kbs/v0/attest", h.base),
        &[("cookie", &f.cookie)],
        b"{not json".to_vec(),
    );
    r.problem(400);
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[],
        b"[1,2".to_vec(),
    );
    r.problem(400);
    let f = auth(&h, "sim");
    let r = http(
        "POST",
        &format!("{}/kbs/v0/attest", h.base),
        &[("cookie", &f.cookie)],
        vec![b' '; 80 * 1024],
    );
    r.problem(413);
    // Unknown TEE.
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[],
        br#"{"version":"0.4.0","tee":"tpm","extra-params":""}"#.to_vec(),
    );
    r.problem(400);

    // Resources: not permitted by policy (403), permitted but absent (404),
    // malformed path (400/404).
    let f = auth(&h, "sim");
    assert_eq!(f.attest().status, 200);
    assert!(f.resource("app/key/other").problem(403).contains("policy"));
    f.resource("app/key/missing").problem(404);
    let r = f.resource("app/key");
    assert_eq!(r.status, 404);

    // The sample TEE is refused when not enabled.
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[],
        br#"{"version":"0.4.0","tee":"sample","extra-params":""}"#.to_vec(),
    );
    assert!(r.problem(403).contains("sample"));

    // Still serving.
    good_flow(&h);
}

#[test]
fn workload_not_in_policy_is_denied() {
    let h = start(|_| {});
    h.admin
        .put_resource("kbs:///app/key/image", SECRET)
        .unwrap();
    h.admin
        .add_reference_values(&ReferenceValues {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('f'), // another owner
            resources: vec!["kbs:///app/key/image".into()],
        })
        .unwrap();
    let f = auth(&h, "sim");
    assert_eq!(f.attest().status, 200);
    f.resource("app/key/image").problem(403);
    let r = http(
        "POST",
        &format!("{}/kbs/v0/cert", h.base),
        &[("cookie", &f.cookie)],
        vec![],
    );
    r.problem(403);
}

#[test]
fn sim_is_refused_unless_allowed() {
    let h = start(|c| c.attestation.allow_sim = false);
    provision(&h);
    let r = http(
        "POST",
        &format!("{}/kbs/v0/auth", h.base),
        &[],
        br#"{"version":"0.4.0","tee":"sim","extra-params":""}"#.to_vec(),
    );
    assert!(r.problem(403).contains("allow_sim"));
}

#[test]
fn debug_sim_evidence_needs_allow_sim_in_policy_too() {
    // Even if evidence got through (here: a policy input with allow_sim
    // false), the default policy refuses debug evidence.
    let p = cocoon_kbs::policy::Policy::new(
        cocoon_kbs::policy::DEFAULT_POLICY,
        &[ReferenceValues {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('c'),
            resources: vec!["kbs:///app/key/image".into()],
        }],
    )
    .unwrap();
    let claims = json!({"tee": "sim", "debug": true});
    let i = serde_json::to_value(init_data()).unwrap();
    let no = cocoon_kbs::policy::input(&claims, &i, "kbs:///app/key/image", false, false).unwrap();
    let yes = cocoon_kbs::policy::input(&claims, &i, "kbs:///app/key/image", true, false).unwrap();
    assert!(!p.allows(&no).unwrap());
    assert!(p.allows(&yes).unwrap());
}

#[test]
fn sample_tee_when_enabled() {
    let h = start(|c| c.attestation.allow_sample = true);
    provision(&h);
    let f = auth(&h, "sample");
    let jwk = f.tee.jwk();
    let rd = kbs_report_data(&f.nonce, &jwk, "").unwrap();
    let body = json!({
        "init-data": {"format": "json", "body": serde_json::to_string(&init_data()).unwrap()},
        "runtime-data": {"nonce": f.nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": b64(&rd[..48])}, "additional_evidence": ""},
    });
    let r = http(
        "POST",
        &format!("{}/kbs/v0/attest", h.base),
        &[("cookie", &f.cookie)],
        body.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The default policy releases to sample only because allow_sample is on.
    assert_eq!(decrypt_resp(&f, &f.resource("app/key/image")), SECRET);
}

#[test]
fn expired_session_is_refused() {
    let h = start(|c| c.attestation.session_ttl_secs = 1);
    provision(&h);
    let f = auth(&h, "sim");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(f.attest().problem(401).contains("expired"));
}

#[test]
fn rate_limit_gives_429() {
    let h = start(|c| {
        c.server.rate_limit_per_sec = 1;
        c.server.rate_limit_burst = 3;
    });
    let codes: Vec<u16> = (0..6)
        .map(|_| http("GET", &format!("{}/health", h.base), &[], vec![]).status)
        .collect();
    assert!(codes.contains(&429), "{codes:?}");
    http("GET", &format!("{}/health", h.base), &[], vec![]).problem(429);
}

#[test]
fn admin_api_refuses_missing_and_bad_tokens() {
    let h = start(|_| {});
    let url = format!("{}/kbs/v0/resource/app/key/image", h.base);
    http("PUT", &url, &[], b"x".to_vec()).problem(401);
    http(
        "PUT",
        &url,
        &[("authorization", "Bearer not.a.jwt")],
        b"x".to_vec(),
    )
    .problem(401);
    let other = cocoon_kbs::crypto::new_p256_key().unwrap();
    let t = cocoon_kbs::token::admin_token(&other, cocoon_kbs::token::now_secs(), 60).unwrap();
    http(
        "PUT",
        &url,
        &[("authorization", &format!("Bearer {t}"))],
        b"x".to_vec(),
    )
    .problem(401);
    http(
        "GET",
        &format!("{}/kbs/v0/reference-value", h.base),
        &[],
        vec![],
    )
    .problem(401);
    http(
        "POST",
        &format!("{}/kbs/v0/resource-policy", h.base),
        &[],
        b"package x".to_vec(),
    )
    .problem(401);
    // An attestation token is not an admin token.
    provision(&h);
    let f = auth(&h, "sim");
    let tok = f.attest().json()["token"].as_str().unwrap().to_string();
    http(
        "PUT",
        &url,
        &[("authorization", &format!("Bearer {tok}"))],
        b"x".to_vec(),
    )
    .problem(401);
    // The real admin works: get/list/delete, policy, reference values.
    assert_eq!(
        h.admin.get_resource("kbs:///app/key/image").unwrap(),
        SECRET
    );
    assert_eq!(
        h.admin.list_resources().unwrap(),
        vec!["kbs:///app/key/image".to_string()]
    );
    assert_eq!(h.admin.list_reference_values().unwrap().len(), 1);
    assert!(h.admin.get_policy().unwrap().contains("package cocoon.kbs"));
    assert!(h.admin.set_policy("package nope").is_err());
    h.admin
        .set_policy("package cocoon.kbs\ndefault allow := false\n")
        .unwrap();
    f.resource("app/key/image").problem(403);
    h.admin.delete_resource("kbs:///app/key/image").unwrap();
    assert!(h.admin.get_resource("kbs:///app/key/image").is_err());
}

/// Captured real SNP and TDX evidence verifies as hardware evidence, but its
/// report data cannot match a fresh session nonce: refused (freshness).
#[test]
fn captured_hardware_evidence_is_refused_for_freshness() {
    let ev = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/evidence");
    let cases: [(&str, &str, Vec<PathBuf>, &str); 2] = [
        (
            "snp",
            "snp/trustee/test-report.bin",
            vec![ev.join("snp/trustee/test-vcek.der")],
            "2024-01-01T00:00:00Z",
        ),
        (
            "tdx",
            "tdx/dcap-qvl/tdx_quote",
            vec![ev.join("tdx/dcap-qvl/tdx_quote_collateral.json")],
            "2025-07-01T00:00:00Z",
        ),
    ];
    for (tee, file, coll, at) in cases {
        let h = start(|c| c.attestation.collateral = coll.clone());
        h.kbs
            .pin_verification_time(Some(cocoon_attest::UnixTime::parse_rfc3339(at).unwrap().0));
        let bytes = std::fs::read(ev.join(file)).unwrap();
        // Sanity: the evidence itself verifies at that time.
        let c = cocoon_attest::Collateral::from_paths(&coll).unwrap();
        cocoon_attest::verify(
            tee.parse().unwrap(),
            &bytes,
            &c,
            cocoon_attest::UnixTime::parse_rfc3339(at).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{tee}: {e}"));
        let f = auth(&h, tee);
        let jwk = f.tee.jwk();
        let body = json!({
            "runtime-data": {"nonce": f.nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": b64(&bytes), "additional_evidence": ""},
        });
        let r = http(
            "POST",
            &format!("{}/kbs/v0/attest", h.base),
            &[("cookie", &f.cookie)],
            body.to_string().into_bytes(),
        );
        assert!(r.problem(403).contains("report data"), "{tee}");
    }
}

fn kbs_bin_store(dir: &Path) -> PathBuf {
    dir.join("kbs.redb")
}

/// Durability: a child process writes and acknowledges, then is SIGKILLed;
/// the reopened store has every acknowledged value, and no plaintext.
#[test]
fn acknowledged_writes_survive_sigkill_and_store_holds_no_plaintext() {
    if std::env::var("COCOON_KBS_CHILD").is_ok() {
        return child_writer();
    }
    let dir = tempfile::tempdir().unwrap();
    let kek = Kek::generate().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_writes_survive_sigkill_and_store_holds_no_plaintext",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COCOON_KBS_CHILD", dir.path())
        .env("COCOON_KBS_KEK", kek.to_hex().as_str())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.to_string());
            if acked.len() == 20 {
                // Kill right after an acknowledged write.
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acked.len(), 20);
    let store = cocoon_kbs::store::Store::open(&kbs_bin_store(dir.path()), kek).unwrap();
    for n in &acked {
        let v = store.get("resources", &format!("app/key/{n}")).unwrap();
        assert_eq!(
            v.unwrap().as_slice(),
            format!("DURABLE-SECRET-{n}").as_bytes()
        );
    }
    drop(store);
    let bytes = std::fs::read(kbs_bin_store(dir.path())).unwrap();
    assert!(
        !bytes.windows(15).any(|w| w == b"DURABLE-SECRET-"),
        "plaintext found in the store file"
    );
}

fn child_writer() {
    let dir = PathBuf::from(std::env::var("COCOON_KBS_CHILD").unwrap());
    let kek = Kek::load(None, Some("COCOON_KBS_KEK")).unwrap();
    let store = cocoon_kbs::store::Store::open(&kbs_bin_store(&dir), kek).unwrap();
    use std::io::Write;
    for n in 0..1_000_000u32 {
        store
            .put(
                "resources",
                &format!("app/key/{n}"),
                format!("DURABLE-SECRET-{n}").as_bytes(),
            )
            .unwrap();
        println!("ACK {n}");
        std::io::stdout().flush().unwrap();
    }
}

/// Trustee / Confidential Containers initdata (`format: toml`): the platform
/// binds the named hash of the body; the policy sees the document.
#[test]
fn trustee_toml_init_data_is_checked_against_the_evidence_and_given_to_policy() {
    use sha2::Digest as _;
    let h = start(|_| {});
    provision(&h);
    let toml = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n\"cdh.toml\" = '''\nsocket = \"unix:///run/cdh.sock\"\n'''\n";
    let attest_toml = |body: &str, bound: &str| -> (Flow<'_>, Resp) {
        let f = auth(&h, "sim");
        let jwk = f.tee.jwk();
        let rd = kbs_report_data(&f.nonce, &jwk, "").unwrap();
        let host = init_data_field(Tee::Sim, &sha2::Sha384::digest(bound.as_bytes())).unwrap();
        let ev = h.sim.sign([7; 48], &host, &rd, 1).unwrap();
        let req = json!({
            "init-data": {"format": "toml", "body": body},
            "runtime-data": {"nonce": f.nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": b64(&ev), "additional_evidence": ""},
        });
        let r = http(
            "POST",
            &format!("{}/kbs/v0/attest", h.base),
            &[("cookie", &f.cookie), ("content-type", "application/json")],
            req.to_string().into_bytes(),
        );
        (f, r)
    };
    // Bound body: attested; the default policy knows no such workload.
    let (f, r) = attest_toml(toml, toml);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    f.resource("app/key/image").problem(403);
    // A policy over the initdata document releases it.
    h.admin
        .set_policy(
            "package cocoon.kbs\nimport rego.v1\ndefault allow := false\n\
             allow if {\n\tinput.init_data.algorithm == \"sha384\"\n\
             \tcontains(input.init_data.data[\"cdh.toml\"], \"cdh.sock\")\n}\n",
        )
        .unwrap();
    let (f, r) = attest_toml(toml, toml);
    assert_eq!(r.status, 200);
    assert_eq!(decrypt_resp(&f, &f.resource("app/key/image")), SECRET);
    // Presenting a body other than the one the platform bound: refused.
    let other = toml.replace("cdh.sock", "evil.sock");
    let (_, r) = attest_toml(&other, toml);
    assert!(r.problem(403).contains("init data"), "{}", r.problem(403));
    // Malformed initdata: 400, and the server keeps serving.
    let (_, r) = attest_toml("algorithm = \"md5\"\nversion = \"0.1.0\"\n", toml);
    assert!(r.problem(400).contains("md5"));
    h.admin
        .set_policy(cocoon_kbs::policy::DEFAULT_POLICY)
        .unwrap();
    good_flow(&h);
}
