//! `cocoon infer` through the real binary: one-line errors of `serve`, the
//! server answering over HTTP and stopping on SIGTERM, the image `infer
//! image` writes (its static server run from the image's own tree, sealed
//! by `cocoon convert` with the models nowhere in plaintext), and `infer
//! request` verifying an attested endpoint (a sim-TEE TLS front end on
//! 127.0.0.1 forwarding to a real server) before it sends anything.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cocoon_attest::sim::{SimAttester, SimPlatform};
use cocoon_attest::workload::{InitData, ReferenceValues};
use cocoon_infer::{EngineOptions, Models, ServerOptions};
use cocoon_testkit::server::BackgroundServer;
use cocoon_tls::{generate_key, AttestedCertResolver};

mod common;
use common::*;

// ------------------------------------------------------------------ serve --

#[test]
fn serve_refuses_models_it_cannot_load_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let missing = missing.to_str().unwrap();
    assert_eq!(
        refuses(&["infer", "serve", "--model", missing], &[]),
        format!(
            "cocoon: error: cannot read model {missing}: No such file or directory (os error 2)"
        )
    );
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "not a model\n").unwrap();
    let text = text.to_str().unwrap();
    let err = refuses(&["infer", "serve", "--model", text], &[]);
    assert!(
        err.starts_with(&format!(
            "cocoon: error: cannot load model {text}: not an ONNX model: "
        )),
        "{err}"
    );
    let magika = model("magika.onnx");
    assert_eq!(
        refuses(
            &[
                "infer",
                "serve",
                "--model",
                &magika,
                "--model",
                &format!("magika={}", model("squeezenet.onnx"))
            ],
            &[]
        ),
        r#"cocoon: error: bad model name "magika": two models have this name; give one another with NAME=FILE"#
    );
    assert_eq!(
        refuses(&["infer", "serve", "--model", "m=x.onnx", "--name", "n"], &[]),
        "cocoon: error: more --name than --model FILE arguments (--name pairs in order with the --model arguments that have no NAME=)"
    );
    // The image command loads every model first, too.
    let out = dir.path().join("img");
    let dst = format!("oci:{}:x", out.display());
    let err = refuses(&["infer", "image", "--model", text, "--to", &dst], &[]);
    assert!(err.contains("not an ONNX model"), "{err}");
    assert!(!out.exists(), "nothing written for a bad model");
}

/// A running `cocoon infer serve` (or the image's server) and its address.
struct Serving {
    child: Child,
    addr: String,
}

impl Serving {
    /// Spawns `cmd` (which must listen on port 0) and reads the address
    /// from its start-up line.
    fn start(mut cmd: Command) -> Serving {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        // Owned from here on, so Drop reaps it whatever happens.
        let mut s = Serving {
            child,
            addr: String::new(),
        };
        let mut err = BufReader::new(s.child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited: {:?}", s.child.try_wait());
            }
            if let Some(rest) = line.split("on http://").nth(1) {
                s.addr = rest.split('/').next().unwrap().to_string();
                std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
                return s;
            }
        }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_over_http_and_stops_on_sigterm() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cocoon"));
    cmd.args([
        "infer",
        "serve",
        "--model",
        &model("squeezenet.onnx"),
        "--name",
        "sq",
        "--model",
        &model("magika.onnx"),
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
    ]);
    let s = Serving::start(cmd);
    let mut c = cocoon_infer::Client::connect(&s.addr).unwrap();
    assert!(c.live().unwrap());
    assert_eq!(c.model_metadata("magika").unwrap().inputs[0].name, "bytes");
    let body = std::fs::read(model("squeezenet.request.json")).unwrap();
    let r = c.infer_json("sq", &body).unwrap();
    assert_eq!(r.outputs[0].shape, vec![1, 1000, 1, 1]);
    drop(c);
    let status = s.stop();
    assert!(status.success(), "{status:?}");
}

// ------------------------------------------------------------------ image --

fn unpack(image: &str, dir: &Path) {
    let args = ["unpack", image, dir.to_str().unwrap()];
    let o = cocoon(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
}

/// Every file under `dir` that contains `needle`.
fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let data = std::fs::read(&entry).unwrap();
        if data.windows(needle.len()).any(|w| w == needle) {
            hits.push(entry);
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn image_holds_the_static_server_and_the_models_and_seals_them_away() {
    let server = static_build("cocoon-infer", "infer-server");
    let work = tempfile::tempdir().unwrap();
    let image = format!("oci:{}/infer:models", work.path().display());
    let args = [
        "infer",
        "image",
        "--model",
        &model("magika.onnx"),
        "--model",
        &format!("sq={}", model("squeezenet.onnx")),
        "--to",
        &image,
        "--server",
        server.to_str().unwrap(),
    ];
    let o = cocoon(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("serving magika, sq on 127.0.0.1:8000"),
        "{out}"
    );
    assert!(
        out.contains("--encrypt /models --shield 8443:8000"),
        "{out}"
    );

    // Same inputs, same image digest.
    let again = format!("oci:{}/again:models", work.path().display());
    let mut args2 = args;
    args2[7] = &again;
    let o2 = cocoon(&args2);
    assert!(o2.status.success(), "{}", show(&args2, &o2));
    let digest = |s: &str| {
        s.split("(image ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(digest(&out), digest(&String::from_utf8(o2.stdout).unwrap()));

    // The tree: the server and the models, byte for byte, nothing else.
    let tree = work.path().join("tree");
    unpack(&image, &tree);
    let mut files: Vec<String> = walk(&tree)
        .iter()
        .map(|p| p.strip_prefix(&tree).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["bin/cocoon-infer", "models/magika.onnx", "models/sq.onnx"]
    );
    assert_eq!(
        std::fs::read(tree.join("bin/cocoon-infer")).unwrap(),
        std::fs::read(&server).unwrap()
    );
    assert_eq!(
        std::fs::read(tree.join("models/magika.onnx")).unwrap(),
        std::fs::read(model("magika.onnx")).unwrap()
    );

    // The config runs the server on the models; run exactly that command in
    // the image's own tree (chroot: no libc, no loader, only the image).
    let layout = work.path().join("infer");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/cocoon-infer"]));
    assert_eq!(c["User"], "65534:65534");
    let cmd: Vec<String> = serde_json::from_value(c["Cmd"].clone()).unwrap();
    assert_eq!(
        cmd,
        [
            "--model",
            "magika=/models/magika.onnx",
            "--model",
            "sq=/models/sq.onnx",
            "--listen",
            "127.0.0.1:8000"
        ]
    );
    let mut run = Command::new("chroot");
    run.arg(&tree).arg("/bin/cocoon-infer").args(&cmd[..4]);
    run.args(["--listen", "127.0.0.1:0"]);
    let s = Serving::start(run);
    let mut client = cocoon_infer::Client::connect(&s.addr).unwrap();
    let body = std::fs::read(model("squeezenet.request.json")).unwrap();
    assert_eq!(client.infer_json("sq", &body).unwrap().outputs.len(), 1);
    assert_eq!(client.server_metadata().unwrap().name, "cocoon-infer");
    drop(client);
    assert!(s.stop().success());

    // Sealed as documented: the models are in no layer in plaintext.
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let owner = keys.join("owner.pem");
    let o = cocoon(&["keygen", "--out", owner.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&["keygen"], &o));
    let sealed = format!("oci:{}/sealed:models", work.path().display());
    let launcher = keys.join("launcher");
    let image_key = keys.join("image.key");
    std::fs::write(
        &launcher,
        b"a stand-in launcher: only its digest is recorded here",
    )
    .unwrap();
    let args = [
        "convert",
        &image,
        &sealed,
        "--sign",
        owner.to_str().unwrap(),
        "--image-key-out",
        image_key.to_str().unwrap(),
        "--encrypt",
        "/models",
        "--shield",
        "8443:8000",
        "--launcher",
        launcher.to_str().unwrap(),
        "-q",
    ];
    let o = cocoon(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    let model_bytes = std::fs::read(model("magika.onnx")).unwrap();
    let sealed_dir = work.path().join("sealed");
    for (at, len) in [
        (4096, 64),
        (model_bytes.len() / 2, 64),
        (model_bytes.len() - 256, 64),
    ] {
        let needle = &model_bytes[at..at + len];
        assert!(
            grep_tree(&layout, needle).len() == 1,
            "the plain image holds the model once"
        );
        let hits = grep_tree(&sealed_dir, needle);
        assert!(
            hits.is_empty(),
            "model bytes at {at} in plaintext in {hits:?}"
        );
    }
}

// ---------------------------------------------------------------- request --

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

/// A sim TEE (made by `cocoon sim init`), the reference values of
/// workload `a`, and a real inference server on 127.0.0.1.
struct Work {
    dir: tempfile::TempDir,
    backend: BackgroundServer,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sim");
        let o = cocoon(&["sim", "init", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", show(&["sim", "init"], &o));
        let i = init('a');
        let rv = ReferenceValues {
            workload_digest: i.workload_digest,
            launcher_digest: i.launcher_digest,
            signer: i.signer,
            resources: vec![],
        };
        std::fs::write(dir.path().join("rv.json"), serde_json::to_vec(&rv).unwrap()).unwrap();
        let specs = vec![
            ("magika".to_string(), models_dir().join("magika.onnx")),
            (
                "squeezenet".to_string(),
                models_dir().join("squeezenet.onnx"),
            ),
        ];
        let models = Models::load(&specs, &EngineOptions { threads: 1 }).unwrap();
        let app = cocoon_infer::server::router(models, &ServerOptions::default());
        let backend = BackgroundServer::start("127.0.0.1:0", 2, move |l, stop| {
            cocoon_infer::server::serve(l, app, stop)
        })
        .unwrap();
        Work { dir, backend }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    /// A sim "launch" of `launched`.
    fn attester(&self, launched: &InitData) -> SimAttester {
        let mut m = [0u8; 48];
        let hex = &launched.launcher_digest[7..];
        for (i, b) in m[..32].iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let p = SimPlatform::open(&self.dir.path().join("sim")).unwrap();
        SimAttester::new(p, m, &launched.digest()).unwrap()
    }

    /// A shield-like front end: attested TLS (evidence of `launched`) on
    /// 127.0.0.1, forwarding to the backend. Returns its address and the
    /// count of plaintext bytes it forwarded to the backend.
    fn front(&self, launched: InitData) -> (String, Arc<AtomicUsize>) {
        let resolver = AttestedCertResolver::new(
            generate_key().unwrap(),
            Arc::new(self.attester(&launched)),
            launched,
            Duration::from_secs(3600),
        );
        let config = cocoon_tls::server_config(Arc::new(resolver)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backend = self.backend.addr();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let counter = forwarded.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let (config, counter) = (config.clone(), counter.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let tls = rustls::StreamOwned::new(conn, sock);
                    let Ok(app) = TcpStream::connect(backend) else {
                        return;
                    };
                    proxy(tls, app, &counter);
                });
            }
        });
        (addr, forwarded)
    }

    fn args<'a>(&'a self, addr: &'a str, rv: &'a str, root: &'a str) -> Vec<&'a str> {
        vec![
            "infer",
            "request",
            addr,
            "--reference-values",
            rv,
            "--sim-root",
            root,
        ]
    }
}

/// Copies bytes both ways between a TLS stream and a plain one until
/// either closes, polling both with short timeouts (one thread, since the
/// TLS stream cannot be split).
fn proxy(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    mut app: TcpStream,
    forwarded: &AtomicUsize,
) {
    let tick = Some(Duration::from_millis(5));
    tls.sock.set_read_timeout(tick).unwrap();
    app.set_read_timeout(tick).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                forwarded.fetch_add(n, Ordering::SeqCst);
                if app.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        match app.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn request_verifies_the_endpoint_then_prints_the_outputs() {
    let w = Work::new();
    let (addr, forwarded) = w.front(init('a'));
    let (rv, root) = (w.path("rv.json"), w.path("sim/root.pem"));

    // An OIP request file: the outputs, as one line of JSON.
    let input = model("squeezenet.request.json");
    let mut args = w.args(&addr, &rv, &root);
    args.extend(["--model", "squeezenet", "--input", &input]);
    let o = cocoon(&args);
    assert!(o.status.success(), "{}", show(&args, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "cocoon: verified {addr}: a sim TEE running workload {}",
            digest('a')
        )),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model_name"], "squeezenet");
    assert_eq!(v["id"], "squeezenet-arange");
    let data = v["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1000);
    assert!(data
        .iter()
        .all(|x| (x.as_f64().unwrap() - 0.001).abs() < 1e-4));
    assert!(
        forwarded.load(Ordering::SeqCst) > 1_000_000,
        "the request went through"
    );

    // magika: a raw file in, its content type out.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello.py");
    std::fs::write(
        &script,
        "import sys\n\n\ndef main(argv):\n    for a in argv[1:]:\n        print(f\"hello, {a}\")\n    return 0\n\n\nif __name__ == \"__main__\":\n    sys.exit(main(sys.argv))\n",
    )
    .unwrap();
    for (file, label) in [
        (script.display().to_string(), "python"),
        ("/bin/ls".into(), "elf"),
    ] {
        let cfg = model("magika.config.json");
        let kb = model("magika.content_types.json");
        let mut args = w.args(&addr, &rv, &root);
        args.extend([
            "--model",
            "magika",
            "--input",
            &file,
            "--magika",
            &cfg,
            "--magika-kb",
            &kb,
        ]);
        let o = cocoon(&args);
        assert!(o.status.success(), "{}", show(&args, &o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["label"], label, "{v}");
        assert_eq!(v["file"], file.as_str());
        assert!(v["score"].as_f64().unwrap() > 0.5, "{v}");
    }

    // A bad request is the server's 400, in one line.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"inputs": [{"name": "data_0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
    )
    .unwrap();
    let mut args = w.args(&addr, &rv, &root);
    let bad = bad.display().to_string();
    args.extend(["--model", "squeezenet", "--input", &bad]);
    let o = cocoon(&args);
    assert_eq!(o.status.code(), Some(1), "{}", show(&args, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.ends_with(
            "cocoon: error: the inference server answered 400: input \"data_0\" has shape [1, 3], model \"squeezenet\" expects [1, 3, 224, 224]\n"
        ),
        "{err}"
    );
}

#[test]
fn request_refuses_other_workloads_and_untrusted_roots_before_sending() {
    let w = Work::new();
    let (rv, root) = (w.path("rv.json"), w.path("sim/root.pem"));
    let input = model("squeezenet.request.json");

    // Another workload digest.
    let (addr, forwarded) = w.front(init('d'));
    let mut args = w.args(&addr, &rv, &root);
    args.extend(["--model", "squeezenet", "--input", &input]);
    assert_eq!(
        refuses(&args, &[]),
        format!(
            "cocoon: error: the endpoint's evidence names workload {} but the reference values expect {}",
            digest('d'),
            digest('a')
        )
    );
    assert_eq!(forwarded.load(Ordering::SeqCst), 0, "nothing sent");

    // The right workload, but sim not trusted.
    let (addr, forwarded) = w.front(init('a'));
    let args = [
        "infer",
        "request",
        &addr,
        "--reference-values",
        &rv,
        "--model",
        "squeezenet",
        "--input",
        &input,
    ];
    let err = refuses(&args, &[]);
    assert!(
        err.ends_with("pass --sim-root FILE to trust a sim platform"),
        "{err}"
    );
    assert_eq!(forwarded.load(Ordering::SeqCst), 0, "nothing sent");

    // A sim root of another platform.
    let rogue = w.dir.path().join("rogue");
    let o = cocoon(&["sim", "init", rogue.to_str().unwrap()]);
    assert!(o.status.success());
    let rogue_root = w.path("rogue/root.pem");
    let mut args = w.args(&addr, &rv, &rogue_root);
    args.extend(["--model", "squeezenet", "--input", &input]);
    let err = refuses(&args, &[]);
    assert!(err.starts_with("cocoon: error: "), "{err}");
    assert_eq!(forwarded.load(Ordering::SeqCst), 0, "nothing sent");

    // A plain (unattested) server: the handshake itself fails.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in plain.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let mut args = w.args(&plain_addr, &rv, &root);
    args.extend(["--model", "squeezenet", "--input", &input]);
    let err = refuses(&args, &[]);
    assert!(err.starts_with("cocoon: error: "), "{err}");

    // Local input errors come before any connection.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let bad = bad.display().to_string();
    let mut args = w.args("127.0.0.1:1", &rv, &root);
    args.extend(["--model", "squeezenet", "--input", &bad]);
    let err = refuses(&args, &[]);
    assert!(
        err.starts_with(&format!(
            "cocoon: error: --input {bad}: malformed request JSON: EOF"
        )),
        "{err}"
    );
}
