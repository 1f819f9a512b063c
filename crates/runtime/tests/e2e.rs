//! End to end: real images sealed with `cocoon_seal::convert`, a real KBS
//! (cocoon-kbs over HTTP on 127.0.0.1) with the sim TEE, the static launcher
//! from `make launcher`, runc and FUSE. Needs root, /dev/fuse, runc, and the
//! fixtures (`scripts/fixtures.sh`).
//!
//! Tests run one at a time (a lock): the containers share the host's network
//! and 2 cores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cocoon_attest::sim::{self, SimPlatform};
use cocoon_image::transport::{open_dest, open_source};
use cocoon_image::{Digest, ImageRef, Platform, TransportOptions};
use cocoon_kbs::client::AdminClient;
use cocoon_kbs::server::{serve, Kbs};
use cocoon_kbs::store::Kek;
use cocoon_kbs::{Config, ReferenceValues};
use cocoon_runtime::{prepare, Bundle, RunOptions, VolumeSpec};
use cocoon_seal::convert::{convert, ConvertRequest};
use cocoon_seal::manifest::{SecretRef, ShieldPort, DEFAULT_CHUNK_SIZE};
use cocoon_seal::signing::OwnerKey;
use cocoon_seal::{ImageKey, WorkloadOptions};
use cocoon_testkit::server::BackgroundServer;
use serde_json::{json, Value};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The static launcher built by `make launcher` (or `$COCOON_LAUNCHER`).
fn launcher() -> Vec<u8> {
    let path = std::env::var_os("COCOON_LAUNCHER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // .../target/debug/deps/e2e-HASH -> .../target/x86_64-unknown-linux-gnu/release/
            let exe = std::env::current_exe().unwrap();
            exe.ancestors()
                .nth(3)
                .unwrap()
                .join("x86_64-unknown-linux-gnu/release/cocoon-launcher")
        });
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "static launcher missing at {} ({e}): run `make launcher` (same CARGO_TARGET_DIR) or set COCOON_LAUNCHER",
            path.display()
        )
    })
}

// ------------------------------------------------------------------ KBS --

/// Fields drop in order: the server stops before its directory goes.
struct KbsHarness {
    _server: BackgroundServer,
    base: String,
    admin: AdminClient,
    dir: tempfile::TempDir,
}

fn start_kbs() -> KbsHarness {
    let dir = tempfile::tempdir().unwrap();
    let sim: SimPlatform = sim::init(&dir.path().join("sim")).unwrap();
    let admin_key = dir.path().join("admin.pem");
    let admin_pub = cocoon_kbs::admin::keygen(&admin_key).unwrap();
    let mut cfg = Config::default();
    cfg.attestation.allow_sim = true;
    cfg.attestation.collateral = vec![sim.root_path()];
    cfg.store.path = dir.path().join("kbs.redb");
    cfg.admin.public_keys = vec![admin_pub];
    cfg.server.rate_limit_per_sec = 0;
    let kbs: Arc<Kbs> = Kbs::open_with_kek(cfg, Kek::generate().unwrap()).unwrap();
    let server =
        BackgroundServer::start("127.0.0.1:0", 1, move |l, stop| serve(kbs, l, stop)).unwrap();
    let base = format!("http://{}", server.addr());
    let admin = AdminClient::new(&base, cocoon_kbs::admin::load_private(&admin_key).unwrap());
    KbsHarness {
        _server: server,
        base,
        admin,
        dir,
    }
}

// --------------------------------------------------------------- images --

/// Makes `dst` an OCI layout whose blobs link to `src`'s, with image `tag`
/// of `src` re-tagged `new_tag` after `edit(config)` and with `extra`
/// (an uncompressed tar) as a top layer.
fn derive(
    src: &Path,
    tag: &str,
    dst: &Path,
    new_tag: &str,
    edit: impl FnOnce(&mut Value),
    extra: Option<Vec<u8>>,
) {
    let blobs = dst.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let to = blobs.join(e.file_name());
        if !to.exists() {
            std::os::unix::fs::symlink(e.path(), to).unwrap();
        }
    }
    std::fs::copy(src.join("oci-layout"), dst.join("oci-layout")).unwrap();
    let put = |b: &[u8]| -> String {
        let d = Digest::of(b).to_string();
        let p = blobs.join(d.trim_start_matches("sha256:"));
        if !p.exists() {
            std::fs::write(p, b).unwrap();
        }
        d
    };
    let blob = |d: &str| std::fs::read(blobs.join(d.trim_start_matches("sha256:"))).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let mut manifest: Value =
        serde_json::from_slice(&blob(desc["digest"].as_str().unwrap())).unwrap();
    let mut config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    edit(&mut config["config"]);
    if let Some(tar) = extra {
        let d = put(&tar);
        manifest["layers"].as_array_mut().unwrap().push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": tar.len()}));
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(json!(d));
    }
    let cb = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(put(&cb));
    manifest["config"]["size"] = json!(cb.len());
    let mb = serde_json::to_vec(&manifest).unwrap();
    let mut new_desc = desc.clone();
    new_desc["digest"] = json!(put(&mb));
    new_desc["size"] = json!(mb.len());
    new_desc["annotations"]["org.opencontainers.image.ref.name"] = json!(new_tag);
    let idx_path = dst.join("index.json");
    let mut idx: Value = if idx_path.exists() {
        serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap()
    } else {
        json!({"schemaVersion": 2, "manifests": []})
    };
    idx["manifests"].as_array_mut().unwrap().push(new_desc);
    std::fs::write(idx_path, serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// A tar with the given files (mode 0644 unless the name ends in `.sh`).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = cocoon_testkit::layout::RawTar::new();
    for (n, d) in files {
        t = t.file(n, d);
    }
    t.finish()
}

struct Sealed {
    dir: tempfile::TempDir,
    key: ImageKey,
    rv: ReferenceValues,
}

impl Sealed {
    fn image(&self) -> ImageRef {
        format!("oci:{}:sealed", self.dir.path().display())
            .parse()
            .unwrap()
    }
}

fn seal(src: &str, encrypt: &[&str], secrets: Vec<SecretRef>) -> Sealed {
    seal_with(src, encrypt, secrets, Vec::new(), &launcher())
}

fn seal_shielded(src: &str, encrypt: &[&str], shield: &[(u16, u16)]) -> Sealed {
    let shield = shield
        .iter()
        .map(|&(public, app)| ShieldPort { public, app })
        .collect();
    seal_with(src, encrypt, Vec::new(), shield, &launcher())
}

fn seal_with(
    src: &str,
    encrypt: &[&str],
    secrets: Vec<SecretRef>,
    shield: Vec<ShieldPort>,
    launcher: &[u8],
) -> Sealed {
    let dir = tempfile::tempdir().unwrap();
    let owner = OwnerKey::generate().unwrap();
    let key = ImageKey::generate().unwrap();
    let options = WorkloadOptions {
        encrypted: encrypt.iter().map(|s| s.to_string()).collect(),
        secrets,
        shield,
        chunk_size: DEFAULT_CHUNK_SIZE,
        key_uri: None,
        launcher: Digest::of(launcher),
    };
    let topts = TransportOptions::default();
    let mut s = open_source(&src.parse::<ImageRef>().unwrap(), &topts).unwrap();
    let dst: ImageRef = format!("oci:{}:sealed", dir.path().display())
        .parse()
        .unwrap();
    let mut d = open_dest(&dst, &topts).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let req = ConvertRequest {
        options,
        launcher,
        key: &key,
        signer: &owner,
        scratch: scratch.path(),
        progress: &|_, _, _| {},
    };
    let c = convert(s.as_mut(), &Platform::default(), d.as_mut(), &req).unwrap();
    let mut resources = vec![c.manifest.seal.key.clone()];
    resources.extend(c.manifest.secrets.iter().map(|s| s.uri.clone()));
    let rv = ReferenceValues {
        workload_digest: c.workload_digest.to_string(),
        launcher_digest: c.manifest.launcher.to_string(),
        signer: c.signer.to_string(),
        resources,
    };
    Sealed { dir, key, rv }
}

fn key_hex(k: &ImageKey, dir: &Path) -> Vec<u8> {
    let p = dir.join("k.hex");
    k.write(&p).unwrap();
    let b = std::fs::read(&p).unwrap();
    std::fs::remove_file(p).unwrap();
    b
}

/// Registers the image key and reference values of `s` with the KBS.
fn provision(kbs: &KbsHarness, s: &Sealed) {
    let uri = &s.rv.resources[0];
    kbs.admin
        .put_resource(uri, &key_hex(&s.key, kbs.dir.path()))
        .unwrap();
    kbs.admin.add_reference_values(&s.rv).unwrap();
}

// ------------------------------------------------------------------ run --

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn options(s: &Sealed, kbs: &KbsHarness, state: &Path) -> RunOptions {
    RunOptions {
        image: s.image(),
        transport: TransportOptions::default(),
        kbs_url: kbs.base.clone(),
        sim_dir: Some(kbs.dir.path().join("sim")),
        ports: Vec::new(),
        volumes: Vec::new(),
        env: Vec::new(),
        name: None,
        state_root: state.to_path_buf(),
        kbs_retry_secs: Some(3),
        shield_names: Vec::new(),
        fs_in_memory: false,
    }
}

fn run_bundle(b: &Bundle, out_dir: &Path) -> Run {
    let (o, e) = (out_dir.join("stdout"), out_dir.join("stderr"));
    let code = b
        .run_with(
            Stdio::from(std::fs::File::create(&o).unwrap()),
            Stdio::from(std::fs::File::create(&e).unwrap()),
        )
        .unwrap();
    let r = Run {
        code,
        stdout: std::fs::read_to_string(&o).unwrap(),
        stderr: std::fs::read_to_string(&e).unwrap(),
    };
    eprintln!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        r.code, r.stdout, r.stderr
    );
    r
}

/// Finds `needle` in any file under `dir` (following no symlinks).
fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(b) = std::fs::read(e.path()) {
                    if b.windows(needle.len()).any(|w| w == needle) {
                        hits.push(e.path());
                    }
                }
            }
        }
    }
    hits
}

// ----------------------------------------------------------- workloads --

const SCRIPT_TAG: &str = "script";
const ENC_TEXT: &[u8] = b"TOP-SECRET-PAYLOAD-7f3a9c enc file\n";

/// busybox with a script as command and an encrypted file.
fn busybox_script(work: &Path, script: &str) -> String {
    let layout = work.join("src");
    derive(
        &cocoon_testkit::fixture("busybox"),
        "latest",
        &layout,
        SCRIPT_TAG,
        |c| {
            c["Cmd"] = json!([script]);
        },
        Some(tar_of(&[("enc/data.txt", ENC_TEXT)])),
    );
    format!("oci:{}:{SCRIPT_TAG}", layout.display())
}

#[test]
fn busybox_output_exit_code_env_and_secrets_pass_through() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let src = busybox_script(
        work.path(),
        "echo \"out:$FOO:$GREETING:$EXTRA\"; cat /run/secrets/token; echo; cat /enc/data.txt; \
         echo \"uid=$(id -u) pid=$$ host=$(hostname)\"; ls /data; \
         awk '$2 == \"/\" {print \"root-fs=\" $3}' /proc/mounts; \
         echo written > /etc/app-wrote && cat /etc/app-wrote; exit 7",
    );
    let s = seal(
        &src,
        &["/enc"],
        vec![
            SecretRef {
                uri: "kbs:///app/env/greeting".into(),
                env: Some("GREETING".into()),
                path: None,
            },
            SecretRef {
                uri: "kbs:///app/file/token".into(),
                env: None,
                path: Some("/run/secrets/token".into()),
            },
        ],
    );
    provision(&kbs, &s);
    kbs.admin
        .put_resource("kbs:///app/env/greeting", b"hello-from-kbs")
        .unwrap();
    kbs.admin
        .put_resource("kbs:///app/file/token", b"file-secret-42")
        .unwrap();
    // The same for both ways of serving the tree: FUSE, and memory mode.
    for (in_memory, root_fs) in [(false, "fuse.cocoon"), (true, "tmpfs")] {
        let state = tempfile::tempdir().unwrap();
        let vol = tempfile::tempdir().unwrap();
        std::fs::write(vol.path().join("volume-file"), b"x").unwrap();
        let mut o = options(&s, &kbs, state.path());
        o.env = vec!["EXTRA=from-e".into()];
        o.volumes = vec![VolumeSpec {
            host: vol.path().into(),
            path: "/data".into(),
            readonly: true,
        }];
        o.name = Some("bb-e2e".into());
        o.fs_in_memory = in_memory;
        let mut b = prepare(&o).unwrap();
        let r = run_bundle(&b, work.path());
        assert_eq!(r.code, 7, "{}", r.stderr);
        assert!(
            r.stdout.contains(&format!("root-fs={root_fs}\n")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("written\n"), "{}", r.stdout);
        assert!(
            r.stdout.contains("out:bar:hello-from-kbs:from-e"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("file-secret-42"), "{}", r.stdout);
        assert!(
            r.stdout.contains("TOP-SECRET-PAYLOAD-7f3a9c"),
            "{}",
            r.stdout
        );
        // The app is not PID 1 (the launcher is), runs as the image's user (root).
        assert!(
            r.stdout.contains("uid=0 pid=") && r.stdout.contains("host=bb-e2e"),
            "{}",
            r.stdout
        );
        assert!(!r.stdout.contains("pid=1 "), "{}", r.stdout);
        assert!(r.stdout.contains("volume-file"), "{}", r.stdout);
        // No plaintext of the encrypted path (or of the secrets) in the bundle.
        for needle in [
            &b"TOP-SECRET-PAYLOAD-7f3a9c"[..],
            b"file-secret-42",
            b"hello-from-kbs",
        ] {
            assert!(grep_tree(state.path(), needle).is_empty());
        }
        b.remove().unwrap();
        assert!(!state.path().join("bb-e2e").exists());
    }
}

/// The KBS CA certificate (what ordinary clients of a shield trust), saved
/// as `dir/kbs-ca.pem`.
fn kbs_ca(kbs: &KbsHarness, dir: &Path) -> PathBuf {
    let pem = ureq::get(&format!("{}/kbs/v0/ca.pem", kbs.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let p = dir.join("kbs-ca.pem");
    std::fs::write(&p, pem).unwrap();
    p
}

/// `curl --cacert CA URL`: the body, or None when curl fails.
fn curl_tls(ca: &Path, url: &str) -> Option<String> {
    let o = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The app's plaintext port must not exist on the host.
fn assert_not_listening_on_host(port: u16) {
    let r = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    );
    assert!(
        r.is_err(),
        "the app's plaintext port {port} is reachable from the host (or another host process holds it: the test needs it free)"
    );
}

/// Kills the container if the test panics while it runs, so that a failed
/// assertion ends the test instead of leaving `run_bundle` waiting forever.
struct KillOnPanic<'a>(&'a Bundle);

impl Drop for KillOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill(libc::SIGKILL);
        }
    }
}

/// What a client expects of a shield serving `s` under the KBS's sim.
fn expectation(s: &Sealed, kbs: &KbsHarness) -> cocoon_tls::Expectation {
    let root = kbs.dir.path().join("sim/root.pem");
    cocoon_tls::Expectation::new(
        s.rv.clone(),
        cocoon_attest::Collateral::from_paths(&[root]).unwrap(),
    )
    .allow_sim(true)
}

#[test]
fn nginx_behind_the_shield_serves_attested_tls_and_hides_its_port() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("src");
    let page = b"<html>SEALED-NGINX-PAGE-51c2</html>\n";
    derive(
        &cocoon_testkit::fixture("debian"),
        "nginx",
        &layout,
        "web",
        |_| {},
        Some(tar_of(&[("var/www/html/secret/page.html", page)])),
    );
    let s = seal_shielded(
        &format!("oci:{}:web", layout.display()),
        &["/var/www"],
        &[(8443, 80)],
    );
    provision(&kbs, &s);
    let ca = kbs_ca(&kbs, work.path());
    let state = tempfile::tempdir().unwrap();
    let mut o = options(&s, &kbs, state.path());
    o.name = Some("nginx-e2e".into());
    // Port 80 must be free before, or "unreachable after" proves nothing.
    assert_not_listening_on_host(80);
    let b = prepare(&o).unwrap();
    std::thread::scope(|sc| {
        let runner = sc.spawn(|| run_bundle(&b, work.path()));
        let _kill = KillOnPanic(&b);
        let t0 = Instant::now();
        let mut page1 = None;
        while t0.elapsed() < Duration::from_secs(60) && !runner.is_finished() {
            if let Some(x) = curl_tls(&ca, "https://localhost:8443/") {
                page1 = Some(x);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // An ordinary client with the KBS CA: curl.
        let body = page1.expect("the shield never answered curl --cacert kbs-ca.pem");
        assert!(body.contains("Welcome to nginx"), "{body}");
        let body = curl_tls(&ca, "https://localhost:8443/secret/page.html").unwrap();
        assert!(body.contains("SEALED-NGINX-PAGE-51c2"));
        // nginx's own port 80 lives in the app's network namespace only.
        assert_not_listening_on_host(80);
        // An attesting client: evidence with its nonce, this workload.
        let (_, endpoint) = cocoon_tls::connect("127.0.0.1:8443", &expectation(&s, &kbs)).unwrap();
        assert_eq!(endpoint.init_data.workload_digest, s.rv.workload_digest);
        // ... and one expecting another workload refuses it.
        let mut other = s.rv.clone();
        other.workload_digest = format!("sha256:{}", "0".repeat(64));
        let mut exp = expectation(&s, &kbs);
        exp.reference = other;
        let e = cocoon_tls::connect("127.0.0.1:8443", &exp).unwrap_err();
        assert!(e.to_string().contains("workload"), "{e}");
        // ... and so does one trusting another sim platform's root.
        let other_sim = sim::init(&work.path().join("other-sim")).unwrap();
        let exp = cocoon_tls::Expectation::new(
            s.rv.clone(),
            cocoon_attest::Collateral::from_paths(&[other_sim.root_path()]).unwrap(),
        )
        .allow_sim(true);
        assert!(cocoon_tls::connect("127.0.0.1:8443", &exp).is_err());
        // During the run: nothing of the encrypted path on the host's disk.
        assert!(grep_tree(state.path(), b"SEALED-NGINX-PAGE-51c2").is_empty());
        assert!(grep_tree(state.path(), b"Welcome to nginx").is_empty());
        b.kill(libc::SIGTERM).unwrap();
        let r = runner.join().unwrap();
        assert_eq!(r.code, 0, "nginx exits cleanly on SIGTERM: {}", r.stderr);
        assert!(r.stderr.contains("shield on 8443->80"), "{}", r.stderr);
    });
    drop(b);
    assert!(!state.path().join("nginx-e2e").exists());
}

#[test]
fn redis_behind_the_shield_answers_redis_cli_tls() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let s = seal_shielded(
        &format!("oci:{}:redis", cocoon_testkit::fixture("debian").display()),
        &["/usr/bin"],
        &[(6380, 6379)],
    );
    provision(&kbs, &s);
    let ca = kbs_ca(&kbs, work.path());
    let state = tempfile::tempdir().unwrap();
    let mut o = options(&s, &kbs, state.path());
    o.name = Some("redis-e2e".into());
    assert_not_listening_on_host(6379);
    let b = prepare(&o).unwrap();
    let cli = |args: &[&str]| -> Option<String> {
        let o = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["-h", "localhost", "-p", "6380"])
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o.status.success() && !out.is_empty() && !out.contains("error")).then_some(out)
    };
    std::thread::scope(|sc| {
        let runner = sc.spawn(|| run_bundle(&b, work.path()));
        let _kill = KillOnPanic(&b);
        let t0 = Instant::now();
        let mut pong = None;
        while t0.elapsed() < Duration::from_secs(60) && !runner.is_finished() {
            pong = cli(&["PING"]);
            if pong.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            pong.as_deref(),
            Some("PONG"),
            "redis never answered over the shield"
        );
        assert_eq!(cli(&["SET", "sealk", "sealed"]).as_deref(), Some("OK"));
        assert_eq!(cli(&["GET", "sealk"]).as_deref(), Some("sealed"));
        assert_not_listening_on_host(6379);
        b.kill(libc::SIGTERM).unwrap();
        let r = runner.join().unwrap();
        assert_eq!(r.code, 0, "{}", r.stderr);
    });
}

/// A one-shot HTTP server on the host's 127.0.0.1 answering `body`; the
/// request line it got comes back through the handle.
fn host_http_once(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut first = String::new();
        let mut r = BufReader::new(c.try_clone().unwrap());
        r.read_line(&mut first).unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        write!(
            c,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        first
    });
    (port, h)
}

#[test]
fn python_gets_secrets_reads_encrypted_files_and_reaches_out_through_the_egress_proxy() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("src");
    let script = b"import os, socket, urllib.request\n\
print('env secret:', os.environ['API_TOKEN'])\n\
print('file secret:', open('/etc/app/db-password').read())\n\
print('model:', open('/models/weights.txt').read().strip())\n\
port = int(os.environ['EGRESS_PORT'])\n\
try:\n    socket.create_connection(('127.0.0.1', port), timeout=2)\n    print('direct: connected')\n\
except OSError:\n    print('direct: refused')\n\
url = 'http://127.0.0.1:%d/egress' % port\n\
print('egress:', urllib.request.urlopen(url, timeout=10).read().decode())\n";
    derive(
        &cocoon_testkit::fixture("debian"),
        "python",
        &layout,
        "app",
        |c| c["Cmd"] = json!(["python3", "/app/main.py"]),
        Some(tar_of(&[
            ("app/main.py", script),
            ("models/weights.txt", b"WEIGHTS-0xC0C00N"),
        ])),
    );
    // A shield port makes the app's network its own: outbound only
    // through the launcher's egress proxy.
    let s = seal_with(
        &format!("oci:{}:app", layout.display()),
        &["/models", "/app"],
        vec![
            SecretRef {
                uri: "kbs:///py/env/token".into(),
                env: Some("API_TOKEN".into()),
                path: None,
            },
            SecretRef {
                uri: "kbs:///py/file/db".into(),
                env: None,
                path: Some("/etc/app/db-password".into()),
            },
        ],
        vec![ShieldPort {
            public: 18080,
            app: 8080,
        }],
        &launcher(),
    );
    provision(&kbs, &s);
    kbs.admin
        .put_resource("kbs:///py/env/token", b"tok-123")
        .unwrap();
    kbs.admin
        .put_resource("kbs:///py/file/db", b"pw-456")
        .unwrap();
    let (port, server) = host_http_once("EGRESS-OK-7f3");
    let state = tempfile::tempdir().unwrap();
    let mut o = options(&s, &kbs, state.path());
    // The host's 127.0.0.1 is not the app's: proxy it too.
    o.env = vec![
        format!("EGRESS_PORT={port}"),
        "NO_PROXY=".into(),
        "no_proxy=".into(),
    ];
    let b = prepare(&o).unwrap();
    assert!(grep_tree(state.path(), b"WEIGHTS-0xC0C00N").is_empty());
    let r = run_bundle(&b, work.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("env secret: tok-123"), "{}", r.stdout);
    assert!(r.stdout.contains("file secret: pw-456"), "{}", r.stdout);
    assert!(r.stdout.contains("model: WEIGHTS-0xC0C00N"), "{}", r.stdout);
    assert!(r.stdout.contains("direct: refused"), "{}", r.stdout);
    assert!(r.stdout.contains("egress: EGRESS-OK-7f3"), "{}", r.stdout);
    assert!(server.join().unwrap().starts_with("GET /egress HTTP/1.1"));
}

// ------------------------------------------------------------ refusals --

const MARK: &str = "APP-STARTED-MARKER";

/// Runs a sealed busybox printing MARK after `tamper(bundle)`; asserts the
/// launcher refused with `expect` in its one error line and the app never ran.
fn refused(
    kbs: &KbsHarness,
    s: &Sealed,
    tweak: impl FnOnce(&mut RunOptions),
    tamper: impl FnOnce(&Path),
    expect: &str,
) {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut o = options(s, kbs, state.path());
    tweak(&mut o);
    let b = prepare(&o).unwrap();
    tamper(&b.rootfs());
    let r = run_bundle(&b, work.path());
    assert_ne!(r.code, 0);
    assert!(!r.stdout.contains(MARK), "the app ran: {}", r.stdout);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("cocoon-launcher: error: "))
        .unwrap_or_else(|| panic!("no error line in {:?}", r.stderr));
    assert!(line.contains(expect), "{line:?} does not say {expect:?}");
}

fn marker_image(work: &Path) -> String {
    busybox_script(work, &format!("echo {MARK}; cat /enc/data.txt"))
}

#[test]
fn tampered_images_are_refused_before_the_app_starts() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let s = seal(&marker_image(work.path()), &["/enc"], vec![]);
    provision(&kbs, &s);
    // Sanity: untampered, it runs.
    {
        let state = tempfile::tempdir().unwrap();
        let b = prepare(&options(&s, &kbs, state.path())).unwrap();
        let r = run_bundle(&b, work.path());
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains(MARK) && r.stdout.contains("TOP-SECRET-PAYLOAD"));
    }
    let blob = |r: &Path| r.join("cocoon/sealed.blob");
    // A flipped byte in the blob's index.
    refused(
        &kbs,
        &s,
        |_| {},
        |r| {
            let mut b = std::fs::read(blob(r)).unwrap();
            let n = b.len() - cocoon_seal::format::TRAILER_LEN - 30;
            b[n] ^= 1;
            std::fs::write(blob(r), b).unwrap();
        },
        "the index does not match the trailer",
    );
    // A flipped byte in the trailer.
    refused(
        &kbs,
        &s,
        |_| {},
        |r| {
            let mut b = std::fs::read(blob(r)).unwrap();
            let n = b.len() - cocoon_seal::format::TRAILER_LEN + 130;
            b[n] ^= 1;
            std::fs::write(blob(r), b).unwrap();
        },
        "unlocking the sealed tree",
    );
    // Changed entrypoint / env / user in the manifest.
    for (from, to) in [
        ("\"/bin/sh\"", "\"/bin/ash\""),
        ("FOO=bar", "FOO=baz"),
        ("\"user\":\"\"", "\"user\":\"1\""),
    ] {
        refused(
            &kbs,
            &s,
            |_| {},
            |r| {
                let p = r.join("cocoon/manifest.json");
                let m = std::fs::read_to_string(&p).unwrap();
                assert!(m.contains(from), "{from} not in manifest");
                std::fs::write(&p, m.replacen(from, to, 1)).unwrap();
            },
            "is not the one the owner signed",
        );
    }
    // Another image's sealed blob (same launcher, other content).
    let work2 = tempfile::tempdir().unwrap();
    let other = seal(
        &busybox_script(work2.path(), "echo other"),
        &["/enc"],
        vec![],
    );
    let other_blob = other.dir.path().to_path_buf();
    refused(
        &kbs,
        &s,
        |_| {},
        |r| {
            let st = tempfile::tempdir().unwrap();
            let mut o = RunOptions {
                image: other.image(),
                ..options(&s, &kbs, st.path())
            };
            o.name = Some("other".into());
            let ob = prepare(&o).unwrap();
            std::fs::copy(blob(&ob.rootfs()), blob(r)).unwrap();
            let _ = other_blob;
        },
        "unlocking the sealed tree",
    );
    // A different launcher binary.
    refused(
        &kbs,
        &s,
        |_| {},
        |r| {
            let p = r.join("cocoon/launcher");
            let mut l = std::fs::read(&p).unwrap();
            l.extend_from_slice(b"\0evil");
            std::fs::write(&p, l).unwrap();
        },
        "is not the launcher the workload manifest names",
    );
}

#[test]
fn kbs_refusals_are_clear_and_the_app_never_starts() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let s = seal(&marker_image(work.path()), &["/enc"], vec![]);
    // Key stored but no reference values: the policy does not allow the workload.
    kbs.admin
        .put_resource(&s.rv.resources[0], &key_hex(&s.key, kbs.dir.path()))
        .unwrap();
    refused(&kbs, &s, |_| {}, |_| {}, "policy denies");
    kbs.admin.add_reference_values(&s.rv).unwrap();
    // A sim root the KBS does not trust.
    let rogue = tempfile::tempdir().unwrap();
    sim::init(rogue.path()).unwrap();
    refused(
        &kbs,
        &s,
        |o| o.sim_dir = Some(rogue.path().into()),
        |_| {},
        "evidence refused",
    );
    // KBS unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    refused(
        &kbs,
        &s,
        |o| {
            o.kbs_url = format!("http://127.0.0.1:{port}");
            o.kbs_retry_secs = Some(2);
        },
        |_| {},
        "unreachable after",
    );
    // A wrong image key in the KBS.
    let wrong = ImageKey::generate().unwrap();
    kbs.admin
        .put_resource(&s.rv.resources[0], &key_hex(&wrong, kbs.dir.path()))
        .unwrap();
    refused(&kbs, &s, |_| {}, |_| {}, "wrong image key");
    // -e may not steer the dynamic loader.
    kbs.admin
        .put_resource(&s.rv.resources[0], &key_hex(&s.key, kbs.dir.path()))
        .unwrap();
    refused(
        &kbs,
        &s,
        |o| o.env = vec!["LD_PRELOAD=/x.so".into()],
        |_| {},
        "LD_PRELOAD",
    );
}

// ------------------------------------------------- tampering after start --

/// Incompressible, reproducible bytes (xorshift64), so that every chunk is
/// stored at full length and a byte offset in the file maps to one chunk.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Chunk `k` of the sealed file at `path`: its number in the bundle's blob
/// and where it is stored, found as the launcher finds it: trailer digest from the signed seal
/// descriptor, index unlocked with the image key and manifest.
fn chunk_of(
    rootfs: &Path,
    key: &ImageKey,
    path: &str,
    k: u64,
) -> (u64, cocoon_seal::format::ChunkRecord) {
    use cocoon_seal::reader::SealedBlob;
    let blob = rootfs.join("cocoon/sealed.blob");
    let seal: Value =
        serde_json::from_slice(&std::fs::read(rootfs.join("cocoon/seal.json")).unwrap()).unwrap();
    let trailer: Digest = seal["descriptor"]["blob"]["trailer"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let manifest: cocoon_seal::manifest::WorkloadManifest =
        serde_json::from_slice(&std::fs::read(rootfs.join("cocoon/manifest.json")).unwrap())
            .unwrap();
    let table = SealedBlob::open(&blob, &trailer).unwrap().chunks().to_vec();
    let tree = SealedBlob::open(&blob, &trailer)
        .unwrap()
        .unlock(key, &manifest)
        .unwrap();
    let data = tree.data_of(tree.lookup(path).unwrap()).unwrap();
    assert!(k < data.count, "{path} has {} chunks", data.count);
    (data.first + k, table[(data.first + k) as usize])
}

/// Flips one ciphertext byte (past the 12-byte nonce) of the chunk stored
/// at `offset` in the bundle's blob, in place.
fn flip_ciphertext_byte(b: &Bundle, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.rootfs().join("cocoon/sealed.blob"))
        .unwrap();
    let at = offset + 12 + 100;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x01], at).unwrap();
    f.sync_all().unwrap();
}

/// DESIGN guarantee 2, second half: a chunk tampered with while the app
/// runs is an I/O error on the app's next read of it, never other bytes.
/// The app (busybox under runc, behind the real launcher and FUSE server)
/// reads the start of a 64-chunk encrypted file; the test then flips one
/// ciphertext byte of chunk 60 in the bundle's blob (far past the kernel's
/// read-ahead and the server's prefetch, so neither the page cache nor the
/// chunk cache holds it), drops the page cache, and lets the app read that
/// chunk: EIO, nothing written, while the untouched first chunk still reads.
/// Were the GCM tag not checked, the read would succeed with a flipped byte.
#[test]
fn a_chunk_tampered_after_start_is_an_io_error_inside_runc() {
    let _g = serial();
    let kbs = start_kbs();
    let work = tempfile::tempdir().unwrap();
    let cs = DEFAULT_CHUNK_SIZE as usize;
    let (chunks, victim) = (64u64, 60u64);
    let content = noise(chunks as usize * cs, 0x5eed_c0c0);
    let head = Digest::of(&content[..4096]).to_string();
    let head = head.trim_start_matches("sha256:");
    let skip = victim as usize * cs / 4096;
    let script = format!(
        "busybox dd if=/enc/big.bin bs=4096 count=1 2>/dev/null | busybox sha256sum; echo READ1-DONE; \
         while [ ! -e /data/go ]; do busybox usleep 50000; done; \
         busybox dd if=/enc/big.bin of=/data/read2.bin bs=4096 skip={skip} count=1; echo \"read2 rc=$?\"; \
         busybox dd if=/enc/big.bin bs=4096 count=1 2>/dev/null | busybox sha256sum; echo READ3-DONE"
    );
    let layout = work.path().join("src");
    derive(
        &cocoon_testkit::fixture("busybox"),
        "latest",
        &layout,
        "tamper",
        |c| c["Cmd"] = json!([script]),
        Some(tar_of(&[("enc/big.bin", &content)])),
    );
    let s = seal(
        &format!("oci:{}:tamper", layout.display()),
        &["/enc"],
        vec![],
    );
    provision(&kbs, &s);
    let state = tempfile::tempdir().unwrap();
    let vol = tempfile::tempdir().unwrap();
    let mut o = options(&s, &kbs, state.path());
    o.volumes = vec![VolumeSpec {
        host: vol.path().into(),
        path: "/data".into(),
        readonly: false,
    }];
    o.name = Some("tamper-e2e".into());
    let b = prepare(&o).unwrap();
    let (n, rec) = chunk_of(&b.rootfs(), &s.key, "/enc/big.bin", victim);
    assert_eq!(
        (rec.flags, rec.plain_len as usize),
        (cocoon_seal::format::FLAG_ENCRYPTED, cs),
        "the chunk is encrypted, uncompressed and whole"
    );
    let r = std::thread::scope(|sc| {
        let runner = sc.spawn(|| run_bundle(&b, work.path()));
        let _kill = KillOnPanic(&b);
        let t0 = Instant::now();
        let out = work.path().join("stdout");
        while !std::fs::read_to_string(&out).is_ok_and(|o| o.contains("READ1-DONE")) {
            assert!(
                t0.elapsed() < Duration::from_secs(60) && !runner.is_finished(),
                "the app never did its first read"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // In place: the server keeps the blob open.
        flip_ciphertext_byte(&b, rec.offset);
        std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
        std::fs::write(vol.path().join("go"), b"").unwrap();
        runner.join().unwrap()
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The first read, before the tampering: the right bytes.
    let first = r.stdout.find("READ1-DONE").unwrap();
    assert!(r.stdout[..first].contains(head), "{}", r.stdout);
    // The tampered chunk: an I/O error, and not one byte handed out.
    assert!(r.stdout.contains("read2 rc=1"), "{}", r.stdout);
    assert!(r.stderr.contains("Input/output error"), "{}", r.stderr);
    let got = std::fs::read(vol.path().join("read2.bin")).unwrap();
    assert!(
        got.is_empty(),
        "the app got {} bytes of a tampered chunk",
        got.len()
    );
    // Only that chunk: the untouched first one still reads, verified again.
    let third = &r.stdout[first..];
    assert!(
        third.contains(head) && third.contains("READ3-DONE"),
        "{}",
        r.stdout
    );
    drop(b);
    assert!(!state.path().join("tamper-e2e").exists());

    // The same byte flipped before the start (past `cocoon run`'s own check
    // of the image, as a host could): the launcher checks every stored
    // chunk against the signed table before the app exists (FUSE mode),
    // or decrypts every chunk into memory first (memory mode). Either way
    // the start stops, naming the chunk; the app never runs.
    for (in_memory, want) in [
        (
            false,
            format!("sealed image tampered with: chunk {n} does not match the chunk table"),
        ),
        (
            true,
            format!("/enc/big.bin: cannot decrypt chunk {n}: wrong image key or tampered data"),
        ),
    ] {
        o.name = Some(format!("tamper-before-{in_memory}"));
        o.fs_in_memory = in_memory;
        let b = prepare(&o).unwrap();
        flip_ciphertext_byte(&b, rec.offset);
        let r = run_bundle(&b, work.path());
        assert_eq!(r.code, 78, "{}", r.stderr);
        assert!(r.stderr.contains(&want), "{}", r.stderr);
        assert!(!r.stdout.contains("READ1-DONE"), "{}", r.stdout);
    }
}
