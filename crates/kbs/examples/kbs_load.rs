//! KBS load generator: many concurrent clients doing the full
//! auth -> attest (sim evidence) -> resource -> JWE decrypt flow against a
//! running KBS on loopback, with a same-run `GET /health` baseline.
//!
//! ```text
//! load setup DIR PORT                   # sim platform, admin key, KEK, DIR/kbs.toml
//! load serve CONFIG                      # run the library server (what `cocoon kbs serve` runs)
//! load run URL SIM_DIR ADMIN_KEY [CONCURRENCY] [SECONDS] [MAX_FLOWS] [THREADS]
//! ```
//!
//! `run` provisions one resource and matching reference values through the
//! admin API, runs `GET /health` for SECONDS as the baseline, then the flow
//! for SECONDS (or MAX_FLOWS flows, whichever comes first), and prints a
//! Markdown table: rate, p50/p99 latency, errors. Loopback only: URL must be
//! `http://127.0.0.1:PORT`. Each client keeps one HTTP/1.1 connection and one
//! TEE key (a workload has one key); every flow gets a fresh session, nonce,
//! evidence and JWE.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use cocoon_attest::binding::{init_data_field, kbs_report_data};
use cocoon_attest::sim::SimPlatform;
use cocoon_attest::Tee;
use cocoon_kbs::client::AdminClient;
use cocoon_kbs::crypto::{b64, p256_jwk};
use cocoon_kbs::protocol::jwe::{decrypt, RecipientSecret};
use cocoon_kbs::protocol::JweResponse;
use cocoon_kbs::{InitData, ReferenceValues};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const SECRET: &[u8] = b"load-test-image-key-0123456789abcdef";
const RESOURCE: &str = "bench/key/image";

type Res<T> = std::result::Result<T, String>;

fn init_data() -> InitData {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    InitData {
        workload_digest: d('a'),
        launcher_digest: d('b'),
        signer: d('c'),
    }
}

struct Conn {
    addr: String,
    host: String,
    tx: Option<http1::SendRequest<Body>>,
}

impl Conn {
    fn new(url: &str) -> Res<Self> {
        let host = url
            .strip_prefix("http://")
            .ok_or("the URL must be http://127.0.0.1:PORT")?
            .trim_end_matches('/')
            .to_string();
        if !host.starts_with("127.0.0.1:") {
            return Err("loopback only: the URL must be http://127.0.0.1:PORT".into());
        }
        Ok(Conn {
            addr: host.clone(),
            host,
            tx: None,
        })
    }

    async fn connect(&mut self) -> Res<()> {
        let s = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(s))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.tx = Some(tx);
        Ok(())
    }

    /// One request; returns status, the session cookie if set, and the body.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Res<(u16, Option<String>, Bytes)> {
        if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
            self.connect().await?;
        }
        let tx = self.tx.as_mut().ok_or("no connection")?;
        tx.ready().await.map_err(|e| format!("ready: {e}"))?;
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v)),
            None => b.body(Body::empty()),
        }
        .map_err(|e| e.to_string())?;
        let resp = match tx.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.tx = None;
                return Err(format!("{method} {path}: {e}"));
            }
        };
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let body = axum::body::to_bytes(Body::new(resp.into_body()), 1 << 20)
            .await
            .map_err(|e| format!("{method} {path}: body: {e}"))?;
        Ok((status, cookie, body))
    }
}

struct Client {
    conn: Conn,
    key: p256::SecretKey,
    jwk: Value,
    sim: Arc<SimSigner>,
    init_body: String,
}

fn check(what: &str, status: u16, body: &[u8]) -> Res<()> {
    if status == 200 {
        Ok(())
    } else {
        Err(format!(
            "{what}: {status} {}",
            String::from_utf8_lossy(body)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    }
}

impl Client {
    async fn flow(&mut self) -> Res<()> {
        let auth = json!({"version": "0.4.0", "tee": "sim", "extra-params": ""});
        let (st, cookie, body) = self
            .conn
            .call(
                "POST",
                "/kbs/v0/auth",
                None,
                Some(auth.to_string().into_bytes()),
            )
            .await?;
        check("auth", st, &body)?;
        let cookie = cookie.ok_or("auth: no cookie")?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let nonce = v["nonce"].as_str().ok_or("auth: no nonce")?;
        let rd = kbs_report_data(nonce, &self.jwk, "").map_err(|e| e.to_string())?;
        let ev = self.sim.sign(&rd)?;
        let att = json!({
            "init-data": {"format": "json", "body": self.init_body},
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.jwk},
            "tee-evidence": {"primary_evidence": b64(&ev), "additional_evidence": ""},
        });
        let (st, _, body) = self
            .conn
            .call(
                "POST",
                "/kbs/v0/attest",
                Some(&cookie),
                Some(att.to_string().into_bytes()),
            )
            .await?;
        check("attest", st, &body)?;
        let (st, _, body) = self
            .conn
            .call(
                "GET",
                &format!("/kbs/v0/resource/{RESOURCE}"),
                Some(&cookie),
                None,
            )
            .await?;
        check("resource", st, &body)?;
        let jwe: JweResponse = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let plain = decrypt(RecipientSecret::P256(&self.key), &jwe).map_err(|e| e.to_string())?;
        if plain.as_slice() != SECRET {
            return Err("decrypted resource is not the secret".into());
        }
        Ok(())
    }
}

/// Makes sim evidence for the load's workload, as the launcher's attester does.
struct SimSigner {
    platform: SimPlatform,
    host_data: Vec<u8>,
}

impl SimSigner {
    fn new(dir: &std::path::Path, host_data: Vec<u8>) -> Res<Self> {
        let platform = SimPlatform::open(dir).map_err(|e| e.to_string())?;
        Ok(SimSigner {
            platform,
            host_data,
        })
    }

    fn sign(&self, report_data: &[u8]) -> Res<Vec<u8>> {
        self.platform
            .sign([7; 48], &self.host_data, report_data, 1)
            .map_err(|e| e.to_string())
    }
}

struct Stats {
    lat: Mutex<Vec<u32>>,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs `job` on `conc` clients for `secs` or `max` successes; returns (ok/s, p50 ms, p99 ms, ok, errors, first error).
async fn phase<F, Fut>(
    conc: usize,
    secs: f64,
    max: u64,
    mut make: impl FnMut() -> Res<F>,
) -> Res<(f64, f64, f64, u64, u64, Option<String>)>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Res<()>> + Send,
{
    let stats = Arc::new(Stats {
        lat: Mutex::new(Vec::new()),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let mut job = make()?;
        let (stats, stop) = (stats.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                match job().await {
                    Ok(()) => {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        if stats.ok.fetch_add(1, Ordering::Relaxed) + 1 >= max {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats
                            .first_error
                            .lock()
                            .unwrap()
                            .get_or_insert(e.to_string());
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            stats.lat.lock().unwrap().extend(lat);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *stats.lat.lock().unwrap());
    lat.sort_unstable();
    let ok = stats.ok.load(Ordering::Relaxed);
    let first = stats.first_error.lock().unwrap().clone();
    Ok((
        ok as f64 / elapsed,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        ok,
        stats.errors.load(Ordering::Relaxed),
        first,
    ))
}

/// CPU seconds (user + system) used so far by process `pid` (`self` for
/// this one), from /proc; None when unreadable.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn provision(url: &str, admin_key: &std::path::Path) -> Res<()> {
    let key = cocoon_kbs::admin::load_private(admin_key).map_err(|e| e.to_string())?;
    let admin = AdminClient::new(url, key);
    let uri = format!("kbs:///{RESOURCE}");
    admin
        .put_resource(&uri, SECRET)
        .map_err(|e| e.to_string())?;
    let i = init_data();
    admin
        .add_reference_values(&ReferenceValues {
            workload_digest: i.workload_digest,
            launcher_digest: i.launcher_digest,
            signer: i.signer,
            resources: vec![uri],
        })
        .map_err(|e| e.to_string())
}

fn run(args: &[String]) -> Res<()> {
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let url = arg(0, "");
    let sim_dir = PathBuf::from(arg(1, ""));
    let admin_key = PathBuf::from(arg(2, ""));
    let conc: usize = arg(3, "64").parse().map_err(|_| "CONCURRENCY")?;
    let secs: f64 = arg(4, "10").parse().map_err(|_| "SECONDS")?;
    let max: u64 = arg(5, "1000000").parse().map_err(|_| "MAX_FLOWS")?;
    let threads: usize = arg(6, "2").parse().map_err(|_| "THREADS")?;
    if !(1..=4096).contains(&conc) || !(0.1..=600.0).contains(&secs) {
        return Err("CONCURRENCY must be 1..=4096 and SECONDS 0.1..=600".into());
    }
    Conn::new(&url)?;
    provision(&url, &admin_key)?;
    let i = init_data();
    let host_data = init_data_field(Tee::Sim, &i.digest()).map_err(|e| e.to_string())?;
    let sim = Arc::new(SimSigner::new(&sim_dir, host_data)?);
    let init_body = serde_json::to_string(&i).map_err(|e| e.to_string())?;
    let threads_all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let u = url.clone();
        let health = phase(conc, secs, max, || {
            let conn = Arc::new(tokio::sync::Mutex::new(Conn::new(&u)?));
            Ok(move || {
                let conn = conn.clone();
                async move {
                    let (st, _, body) = conn.lock().await.call("GET", "/health", None, None).await?;
                    check("health", st, &body)
                }
            })
        })
        .await?;
        let server_pid = std::env::var("KBS_SERVER_PID").unwrap_or_default();
        let cpu0 = (cpu_secs(&server_pid), cpu_secs("self"));
        let u = url.clone();
        let flows = phase(conc, secs, max, || {
            let key = cocoon_kbs::crypto::new_p256_key().map_err(|e| e.to_string())?;
            let mut jwk = p256_jwk(&key.public_key());
            jwk["alg"] = "ECDH-ES+A256KW".into();
            let c = Arc::new(tokio::sync::Mutex::new(Client {
                conn: Conn::new(&u)?,
                key,
                jwk,
                sim: sim.clone(),
                init_body: init_body.clone(),
            }));
            Ok(move || {
                let c = c.clone();
                async move { c.lock().await.flow().await }
            })
        })
        .await?;
        let cpu1 = (cpu_secs(&server_pid), cpu_secs("self"));
        println!("| workload ({conc} concurrent clients, {threads} client threads) | per second | p50 ms | p99 ms | completed | errors |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, r) in [
            ("GET /health round trip (baseline)", &health),
            ("auth → attest (sim) → resource → decrypt", &flows),
        ] {
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {} | {} |",
                r.0, r.1, r.2, r.3, r.4
            );
        }
        println!();
        println!(
            "flows/s ÷ health/s = {:.3}; errors: {}",
            flows.0 / health.0.max(1e-9),
            health.4 + flows.4
        );
        if let (Some(s0), Some(c0), Some(s1), Some(c1)) = (cpu0.0, cpu0.1, cpu1.0, cpu1.1) {
            let n = flows.3.max(1) as f64;
            let (s, c) = ((s1 - s0) * 1000.0 / n, (c1 - c0) * 1000.0 / n);
            println!(
                "CPU per flow: server {s:.3} ms, client {c:.3} ms; flows/s if {threads_all} cores were all ours: {:.0} (server alone: {:.0})",
                threads_all as f64 * 1000.0 / (s + c),
                threads_all as f64 * 1000.0 / s,
            );
        }
        for (what, r) in [("health", &health), ("flow", &flows)] {
            if let Some(e) = &r.5 {
                println!("first {what} error: {e}");
            }
        }
        if health.4 + flows.4 > 0 {
            return Err("there were errors".to_string());
        }
        Ok(())
    })
}

fn setup(dir: &std::path::Path, port: &str) -> Res<()> {
    let port: u16 = port.parse().map_err(|_| "PORT")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let sim = cocoon_attest::sim::init(&dir.join("sim")).map_err(|e| e.to_string())?;
    cocoon_kbs::admin::keygen(&dir.join("admin.pem")).map_err(|e| e.to_string())?;
    let kek = cocoon_kbs::store::Kek::generate().map_err(|e| e.to_string())?;
    std::fs::write(dir.join("kek.hex"), kek.to_hex().as_bytes()).map_err(|e| e.to_string())?;
    let cfg = format!(
        "# Written by `load setup` for bench/kbs.sh.\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n\
         # One client IP makes every request here; per-IP limits would measure the limiter.\n\
         rate_limit_per_sec = 0\n\
         [attestation]\nallow_sim = true\ncollateral = [{:?}]\n\
         [store]\npath = \"kbs.redb\"\nkek_file = \"kek.hex\"\n\
         [admin]\npublic_keys = [\"admin.pem.pub\"]\n",
        sim.root_path().display().to_string()
    );
    std::fs::write(dir.join("kbs.toml"), cfg).map_err(|e| e.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") if args.len() == 2 => cocoon_kbs::Config::load(std::path::Path::new(&args[1]))
            .and_then(cocoon_kbs::server::run)
            .map_err(|e| e.to_string()),
        Some("setup") if args.len() == 3 => setup(std::path::Path::new(&args[1]), &args[2]),
        Some("run") if args.len() >= 4 => run(&args[1..]),
        _ => Err("usage: kbs_load setup DIR PORT | kbs_load serve CONFIG | kbs_load run URL SIM_DIR ADMIN_KEY [CONCURRENCY] [SECONDS] [MAX_FLOWS] [THREADS]".into()),
    };
    if let Err(e) = r {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}
