//! Operations: HTTPS (rustls) end to end, plain HTTP to the TLS port,
//! graceful shutdown of a KBS process on SIGTERM with a request in flight,
//! and the server log (no ANSI colour when stderr is not a terminal, no
//! secret ever).
//!
//! The "process" tests run this test binary again as the child with
//! `COCOON_KBS_SERVE_CONFIG` set: it then runs `cocoon_kbs::server::run`
//! on that config, which is all `cocoon kbs serve --config` does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_attest::binding::{init_data_field, kbs_report_data};
use cocoon_attest::sim::{self, SimPlatform};
use cocoon_attest::Tee;
use cocoon_kbs::client::AdminClient;
use cocoon_kbs::config::Config;
use cocoon_kbs::crypto::{b64, b64url, new_p256_key, p256_jwk, p256_key_to_pem};
use cocoon_kbs::protocol::jwe::{decrypt, RecipientKey, RecipientSecret};
use cocoon_kbs::protocol::JweResponse;
use cocoon_kbs::server::{serve, Kbs};
use cocoon_kbs::store::{Kek, Store};
use cocoon_kbs::{InitData, ReferenceValues};
use cocoon_testkit::server::BackgroundServer;
use serde_json::{json, Value};

/// A secret that must never appear in a log.
const SECRET: &[u8] = b"CANARY-kbs-secret-7f3a9c1e-do-not-log";
const URI: &str = "kbs:///app/key/canary";

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

fn agent(ca_pem: Option<&str>) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)));
    if let Some(pem) = ca_pem {
        let ca = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
        b = b.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
                .unversioned_rustls_crypto_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .build(),
        );
    }
    b.build().into()
}

/// One request: status, session cookie, body.
fn call(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Option<String>, Vec<u8>), ureq::Error> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let mut r = a.run(b.body(bytes).unwrap())?;
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let status = r.status().as_u16();
    Ok((
        status,
        cookie,
        r.body_mut().read_to_vec().unwrap_or_default(),
    ))
}

/// auth -> attest (sim) -> resource -> decrypt; returns the plaintext.
fn full_flow(a: &ureq::Agent, base: &str, sim: &SimPlatform) -> Vec<u8> {
    let (st, cookie, body) = call(
        a,
        "POST",
        &format!("{base}/kbs/v0/auth"),
        None,
        Some(json!({"version": "0.4.0", "tee": "sim", "extra-params": ""})),
    )
    .unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let cookie = cookie.unwrap();
    let nonce = serde_json::from_slice::<Value>(&body).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let key = new_p256_key().unwrap();
    let mut jwk = p256_jwk(&key.public_key());
    jwk["alg"] = "ECDH-ES+A256KW".into();
    let rd = kbs_report_data(&nonce, &jwk, "").unwrap();
    let host = init_data_field(Tee::Sim, &init_data().digest()).unwrap();
    let ev = sim.sign([7; 48], &host, &rd, 1).unwrap();
    let att = json!({
        "init-data": {"format": "json", "body": serde_json::to_string(&init_data()).unwrap()},
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {"primary_evidence": b64(&ev), "additional_evidence": ""},
    });
    let (st, _, body) = call(
        a,
        "POST",
        &format!("{base}/kbs/v0/attest"),
        Some(&cookie),
        Some(att),
    )
    .unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let path = URI.trim_start_matches("kbs:///");
    let (st, _, body) = call(
        a,
        "GET",
        &format!("{base}/kbs/v0/resource/{path}"),
        Some(&cookie),
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let jwe: JweResponse = serde_json::from_slice(&body).unwrap();
    decrypt(RecipientSecret::P256(&key), &jwe).unwrap().to_vec()
}

fn provision(admin: &AdminClient) {
    admin.put_resource(URI, SECRET).unwrap();
    let i = init_data();
    admin
        .add_reference_values(&ReferenceValues {
            workload_digest: i.workload_digest,
            launcher_digest: i.launcher_digest,
            signer: i.signer,
            resources: vec![URI.into()],
        })
        .unwrap();
}

/// A TLS server certificate for `localhost` issued by a throwaway CA:
/// (chain PEM, key PEM, CA PEM).
fn tls_material() -> (String, String, String) {
    let ca_key = new_p256_key().unwrap();
    let ca_pem = cocoon_kbs::ca::make_ca_cert(&ca_key, "test TLS CA", now()).unwrap();
    let ca = cocoon_kbs::ca::Ca::new(&ca_key, &ca_pem, 3600).unwrap();
    let leaf_key = new_p256_key().unwrap();
    let leaf = ca
        .issue(
            &RecipientKey::P256(leaf_key.public_key()),
            &["localhost".to_string()],
            None,
            now(),
        )
        .unwrap();
    let key_pem = p256_key_to_pem(&leaf_key).unwrap().to_string();
    (format!("{leaf}{ca_pem}"), key_pem, ca_pem)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn https_full_flow_and_plain_http_to_the_tls_port_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim::init(&dir.path().join("sim")).unwrap();
    let admin_key = dir.path().join("admin.pem");
    let admin_pub = cocoon_kbs::admin::keygen(&admin_key).unwrap();
    let (chain, key, ca_pem) = tls_material();
    std::fs::write(dir.path().join("tls.pem"), chain).unwrap();
    std::fs::write(dir.path().join("tls.key"), key).unwrap();
    let mut cfg = Config::default();
    cfg.server.tls_cert = Some(dir.path().join("tls.pem"));
    cfg.server.tls_key = Some(dir.path().join("tls.key"));
    cfg.server.rate_limit_per_sec = 0;
    cfg.attestation.allow_sim = true;
    cfg.attestation.collateral = vec![sim.root_path()];
    cfg.store.path = dir.path().join("kbs.redb");
    cfg.admin.public_keys = vec![admin_pub];
    let kbs = Kbs::open_with_kek(cfg, Kek::generate().unwrap()).unwrap();
    let server =
        BackgroundServer::start("127.0.0.1:0", 2, move |l, stop| serve(kbs, l, stop)).unwrap();
    let addr = server.addr();
    // `localhost` is the certificate's name; it resolves to 127.0.0.1 here.
    let base = format!("https://localhost:{}", addr.port());
    let tls = agent(Some(&ca_pem));
    // AdminClient has no CA option: sign the two admin calls here.
    let admin_sk = cocoon_kbs::admin::load_private(&admin_key).unwrap();
    let token = cocoon_kbs::token::admin_token(&admin_sk, now(), 300).unwrap();
    let put = ureq::http::Request::builder()
        .method("PUT")
        .uri(format!("{base}/kbs/v0/resource/app/key/canary"))
        .header("authorization", format!("Bearer {token}"))
        .body(SECRET.to_vec())
        .unwrap();
    assert_eq!(tls.run(put).unwrap().status().as_u16(), 204);
    let i = init_data();
    let rv = json!({"workload_digest": i.workload_digest, "launcher_digest": i.launcher_digest,
                    "signer": i.signer, "resources": [URI]});
    let add = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}/kbs/v0/reference-value"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(rv.to_string().into_bytes())
        .unwrap();
    assert_eq!(tls.run(add).unwrap().status().as_u16(), 204);

    // The whole flow over HTTPS.
    assert_eq!(full_flow(&tls, &base, &sim), SECRET);

    // Plain HTTP to the TLS port: a prompt error, not a hang or a response.
    let t = Instant::now();
    let plain = call(
        &agent(None),
        "GET",
        &format!("http://127.0.0.1:{}/health", addr.port()),
        None,
        None,
    );
    assert!(plain.is_err(), "plain HTTP got an answer: {:?}", plain.ok());
    assert!(t.elapsed() < Duration::from_secs(10));
    // Raw bytes too: the server closes the connection (possibly after a TLS alert).
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    // A TLS client that does not trust the CA is refused.
    let other = tls_material().2;
    assert!(call(
        &agent(Some(&other)),
        "GET",
        &format!("{base}/health"),
        None,
        None
    )
    .is_err());
    // Still serving HTTPS.
    let (st, _, _) = call(&tls, "GET", &format!("{base}/health"), None, None).unwrap();
    assert_eq!(st, 200);
    assert_eq!(full_flow(&tls, &base, &sim), SECRET);
    drop(server);
}

/// The child: serve the config named by the environment until SIGTERM.
fn child_serve() -> ! {
    let path = PathBuf::from(std::env::var("COCOON_KBS_SERVE_CONFIG").unwrap());
    let r = Config::load(&path).and_then(cocoon_kbs::server::run);
    if let Err(e) = &r {
        eprintln!("child: {e}");
    }
    std::process::exit(if r.is_ok() { 0 } else { 1 })
}

fn wait_for_address(log: &Path, child: &mut std::process::Child) -> String {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(i) = text.find("address=") {
            let rest = &text[i + "address=".len()..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            return rest[..end].to_string();
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("KBS exited early ({st}): {text}");
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no address: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_the_request_in_flight_exits_0_keeps_the_store_and_logs_cleanly() {
    if std::env::var("COCOON_KBS_SERVE_CONFIG").is_ok() {
        child_serve();
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = sim::init(&dir.path().join("sim")).unwrap();
    let admin_key = dir.path().join("admin.pem");
    cocoon_kbs::admin::keygen(&admin_key).unwrap();
    let kek = Kek::generate().unwrap();
    std::fs::write(dir.path().join("kek.hex"), kek.to_hex().as_bytes()).unwrap();
    let config = dir.path().join("kbs.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nrate_limit_per_sec = 0\nshutdown_grace_secs = 10\n\
             [attestation]\nallow_sim = true\ncollateral = [{:?}]\n\
             [store]\npath = \"kbs.redb\"\nkek_file = \"kek.hex\"\n\
             [admin]\npublic_keys = [\"admin.pem.pub\"]\n\
             [log]\nlevel = \"trace\"\n",
            sim.root_path().display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_finishes_the_request_in_flight_exits_0_keeps_the_store_and_logs_cleanly",
            "--nocapture",
        ])
        .env("COCOON_KBS_SERVE_CONFIG", &config)
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = wait_for_address(&log, &mut child);
    let base = format!("http://{addr}");
    let admin = AdminClient::new(&base, cocoon_kbs::admin::load_private(&admin_key).unwrap());
    provision(&admin);
    let a = agent(None);
    assert_eq!(full_flow(&a, &base, &sim), SECRET);

    // A request in flight: headers and half the body sent, then SIGTERM.
    let body = json!({"version": "0.4.0", "tee": "sim", "extra-params": ""}).to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "POST /kbs/v0/auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The listener closes: new connections are refused while the old one finishes.
    let t = Instant::now();
    while TcpStream::connect(&addr).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    s.write_all(&body.as_bytes()[10..]).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"nonce\""), "{resp}");

    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");

    // The store is intact.
    let store = Store::open(&dir.path().join("kbs.redb"), kek).unwrap();
    assert_eq!(
        store
            .get("resources", "app/key/canary")
            .unwrap()
            .unwrap()
            .as_slice(),
        SECRET
    );
    drop(store);

    // The log: written, shutdown recorded, no colour codes (stderr is a
    // file), and neither the secret (in any encoding) nor the KEK.
    assert!(text.contains("shutting down"), "{text}");
    assert!(text.contains("resource released"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape in the log:\n{text}");
    let kek_hex = std::fs::read_to_string(dir.path().join("kek.hex")).unwrap();
    for needle in [
        String::from_utf8_lossy(SECRET).to_string(),
        b64(SECRET),
        b64url(SECRET),
        hex::encode(SECRET),
        kek_hex.trim().to_string(),
    ] {
        assert!(!text.contains(&needle), "{needle} in the log:\n{text}");
    }
}
