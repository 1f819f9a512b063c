//! `cocoon verify-endpoint` through the real binary against a real rustls
//! server on 127.0.0.1 (a thread per connection) that mints attested
//! certificates with the sim TEE of a `cocoon sim init` directory: an
//! attested endpoint passes (exit 0, summary or JSON); every refusal is
//! exit 1 with one stderr line naming the reason.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cocoon_attest::sim::{SimAttester, SimPlatform};
use cocoon_attest::workload::{InitData, ReferenceValues};
use cocoon_tls::{attested_certificate, certified_key, generate_key, AttestedCertResolver};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tempfile::TempDir;

mod common;
use common::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Runs `cocoon verify-endpoint ARGS`, expects success, returns stdout.
fn pass(args: &[&str]) -> String {
    let mut all = vec!["verify-endpoint"];
    all.extend_from_slice(args);
    common::succeeds(&all)
}

/// Runs `cocoon verify-endpoint ARGS`, expects exit 1 with one stderr line
/// containing every fragment, and nothing on stdout.
fn refuse(args: &[&str], fragments: &[&str]) -> String {
    let mut all = vec!["verify-endpoint"];
    all.extend_from_slice(args);
    common::refuses(&all, fragments)
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn init(workload: char) -> InitData {
    InitData {
        workload_digest: digest(workload),
        launcher_digest: digest('b'),
        signer: digest('c'),
    }
}

/// A work directory: two sim platforms (made by `cocoon sim init`) and the
/// reference values of workload `a`.
struct Work {
    dir: TempDir,
}

impl Work {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sim", "rogue"] {
            let p = dir.path().join(name);
            let o = cocoon(&["sim", "init", p.to_str().unwrap()]);
            assert!(o.status.success(), "{}", show(&["sim", "init"], &o));
        }
        let i = init('a');
        let rv = ReferenceValues {
            workload_digest: i.workload_digest,
            launcher_digest: i.launcher_digest,
            signer: i.signer,
            resources: vec![],
        };
        std::fs::write(dir.path().join("rv.json"), serde_json::to_vec(&rv).unwrap()).unwrap();
        Work { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// A sim "launch" of `launched` on platform `name`.
    fn attester(&self, name: &str, launched: &InitData) -> SimAttester {
        let mut m = [0u8; 48];
        let hex = &launched.launcher_digest[7..];
        for (i, b) in m[..32].iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let p = SimPlatform::open(&self.dir.path().join(name)).unwrap();
        SimAttester::new(p, m, &launched.digest()).unwrap()
    }

    /// The usual arguments: reference values and the trusted sim root.
    fn args<'a>(&'a self, addr: &'a str, rv: &'a str, root: &'a str) -> Vec<&'a str> {
        vec![addr, "--reference-values", rv, "--sim-root", root]
    }
}

type Mint = dyn Fn(Option<[u8; 32]>) -> Vec<u8> + Send + Sync;

/// Serves whatever `mint` makes for the connection's nonce.
struct MintResolver {
    key: p256::SecretKey,
    mint: Box<Mint>,
}

impl std::fmt::Debug for MintResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintResolver")
    }
}

impl ResolvesServerCert for MintResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let nonce = hello
            .server_name()
            .and_then(cocoon_tls::nonce_from_server_name);
        certified_key(&self.key, (self.mint)(nonce)).ok()
    }
}

/// Serves TLS on 127.0.0.1, a thread per connection; returns HOST:PORT.
fn serve(resolver: Arc<dyn ResolvesServerCert>) -> String {
    let config = cocoon_tls::server_config(resolver).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut s = rustls::StreamOwned::new(conn, sock);
                let _ = s.write_all(b"hello\n");
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    addr
}

fn attested_server(w: &Work, platform: &str, launched: InitData) -> String {
    let attester = w.attester(platform, &launched);
    serve(Arc::new(AttestedCertResolver::new(
        generate_key().unwrap(),
        Arc::new(attester),
        launched,
        HOUR,
    )))
}

#[test]
fn an_attested_endpoint_passes() {
    let w = Work::new();
    let addr = attested_server(&w, "sim", init('a'));
    let (rv, root) = (w.path("rv.json"), w.path("sim/root.pem"));

    let out = pass(&w.args(&addr, &rv, &root));
    assert!(
        out.starts_with(&format!(
            "{addr}: verified: its TLS key lives in a sim TEE running the expected workload\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("workload:           {}", digest('a'))),
        "{out}"
    );
    assert!(out.contains("(fresh, this connection's)"), "{out}");
    assert!(out.contains("sim gives no protection"), "{out}");

    let mut args = w.args(&addr, &rv, &root);
    args.push("--json");
    let v: serde_json::Value = serde_json::from_str(&pass(&args)).unwrap();
    assert_eq!(v["tee"], "sim");
    assert_eq!(v["init_data"]["workload_digest"], digest('a').as_str());
    assert_eq!(v["nonce"].as_str().map(str::len), Some(64));
    assert_eq!(v["claims"]["debug"], true);

    args.push("--no-nonce");
    let v: serde_json::Value = serde_json::from_str(&pass(&args)).unwrap();
    assert!(v["nonce"].is_null(), "{v}");
}

#[test]
fn a_plain_tls_server_is_refused() {
    let w = Work::new();
    let key = generate_key().unwrap();
    let pem = cocoon_kbs::ca::make_ca_cert(&key, "localhost", unix_now()).unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec();
    let addr = serve(Arc::new(MintResolver {
        key,
        mint: Box::new(move |_| der.clone()),
    }));
    refuse(
        &w.args(&addr, &w.path("rv.json"), &w.path("sim/root.pem")),
        &["not an attested certificate", "2.23.133.5.4.9"],
    );
}

#[test]
fn another_workload_is_refused() {
    let w = Work::new();
    let addr = attested_server(&w, "sim", init('d'));
    let err = refuse(
        &w.args(&addr, &w.path("rv.json"), &w.path("sim/root.pem")),
        &[],
    );
    assert_eq!(
        err,
        format!(
            "cocoon: error: the endpoint's evidence names workload {} but the reference values expect {}",
            digest('d'),
            digest('a')
        )
    );
}

#[test]
fn an_untrusted_or_missing_sim_root_is_refused() {
    let w = Work::new();
    let addr = attested_server(&w, "rogue", init('a'));
    let rv = w.path("rv.json");
    refuse(
        &w.args(&addr, &rv, &w.path("sim/root.pem")),
        &["evidence is refused", "not among the 1 trusted sim root(s)"],
    );
    // A sim root among --collateral does not make sim acceptable.
    refuse(
        &[
            &addr,
            "--reference-values",
            &rv,
            "--collateral",
            &w.path("rogue"),
        ],
        &["sim TEE, which gives no protection", "--sim-root"],
    );
    // --sim-root must name a sim root.
    refuse(&w.args(&addr, &rv, &rv), &["holds no sim root certificate"]);
}

#[test]
fn a_replayed_certificate_is_refused_unless_no_nonce_was_sent() {
    let w = Work::new();
    let i = init('a');
    let key = generate_key().unwrap();
    let made_once = attested_certificate(
        &key,
        &w.attester("sim", &i),
        &i,
        None,
        SystemTime::now() - Duration::from_secs(60),
        HOUR,
    )
    .unwrap();
    let addr = serve(Arc::new(MintResolver {
        key,
        mint: Box::new(move |_| made_once.clone()),
    }));
    let (rv, root) = (w.path("rv.json"), w.path("sim/root.pem"));
    let mut args = w.args(&addr, &rv, &root);
    refuse(&args, &["binds no nonce", "replayed certificate"]);
    args.push("--no-nonce");
    pass(&args);
}

#[test]
fn bad_input_is_one_line() {
    let w = Work::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = l.local_addr().unwrap().to_string();
    drop(l);
    let (rv, root) = (w.path("rv.json"), w.path("sim/root.pem"));
    refuse(
        &w.args(&closed, &rv, &root),
        &[&format!("cannot connect to {closed}")],
    );
    refuse(
        &w.args("no-port", &rv, &root),
        &["cannot connect to no-port"],
    );
    let bad_rv = w.path("bad-rv.json");
    std::fs::write(&bad_rv, b"{\"workload_digest\": 1}").unwrap();
    refuse(
        &w.args(&closed, &bad_rv, &root),
        &["bad-rv.json", "invalid reference values"],
    );
    refuse(
        &w.args(&closed, &w.path("missing.json"), &root),
        &["read ", "missing.json"],
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
