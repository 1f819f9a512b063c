//! Confidential inference end to end, through the real `cocoon` binary:
//! `cocoon infer image` (the static server of `make infer-server` and the
//! real models), `cocoon convert --encrypt /models --shield`, a real KBS
//! (`cocoon kbs serve`) trusting a sim TEE, `cocoon run` (runc, FUSE, the
//! static launcher of `make launcher`), then `cocoon infer request` through
//! the shield's attested TLS. The client gets correct outputs; it refuses the
//! endpoint for another workload's reference values and without a trusted
//! root; the model bytes appear nowhere in plaintext in the sealed image or
//! in anything the run wrote on the host. Needs root, runc and /dev/fuse.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Runs cocoon with the KBS admin environment; panics unless it succeeds.
fn ok(env: &[(&str, String)], args: &[&str]) -> String {
    let o = cocoon_with_env(env, args);
    assert!(o.status.success(), "{}", show(args, &o));
    String::from_utf8(o.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} within {secs}s");
}

/// Every regular file under `dir` that contains `needle`.
fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            hits.extend(grep_tree(&e.path(), needle));
        } else if t.is_file() {
            if let Ok(data) = std::fs::read(e.path()) {
                if data.windows(needle.len()).any(|w| w == needle) {
                    hits.push(e.path());
                }
            }
        }
    }
    hits
}

/// The KBS and the container; both stopped when dropped.
struct Running {
    kbs: Child,
    runc_root: PathBuf,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        for args in [
            vec!["kill", &self.name, "KILL"],
            vec!["delete", "--force", &self.name],
        ] {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(args)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.kbs.kill();
        let _ = self.kbs.wait();
    }
}

#[test]
fn a_sealed_model_server_answers_attested_requests_and_never_shows_its_model() {
    let models = models_dir();
    let server = static_build("cocoon-infer", "infer-server");
    let launcher = static_build("cocoon-launcher", "launcher");
    let work = tempfile::tempdir().unwrap();
    let w = |rel: &str| work.path().join(rel).display().to_string();

    // The image and its sealed form.
    let image = format!("oci:{}:models", w("infer"));
    let sealed = format!("oci:{}:models", w("sealed"));
    let port = free_port();
    ok(
        &[],
        &[
            "infer",
            "image",
            "--model",
            &models.join("magika.onnx").display().to_string(),
            "--model",
            &models.join("squeezenet.onnx").display().to_string(),
            "--server",
            server.to_str().unwrap(),
            "--to",
            &image,
        ],
    );
    ok(&[], &["keygen", "--out", &w("owner.pem")]);
    ok(
        &[],
        &[
            "convert",
            &image,
            &sealed,
            "--sign",
            &w("owner.pem"),
            "--image-key-out",
            &w("image.key"),
            "--reference-values",
            &w("rv.json"),
            "--encrypt",
            "/models",
            "--shield",
            &format!("{port}:8000"),
            "--launcher",
            launcher.to_str().unwrap(),
            "-q",
        ],
    );

    // A KBS trusting a fresh sim platform, with the workload registered.
    ok(&[], &["sim", "init", &w("sim")]);
    ok(&[], &["kbs", "keygen-admin", "--out", &w("admin.pem")]);
    let kek = ok(&[], &["kbs", "keygen-kek"]);
    std::fs::write(work.path().join("kek.hex"), kek).unwrap();
    let kbs_port = free_port();
    std::fs::write(
        work.path().join("kbs.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{kbs_port}\"\n[attestation]\nallow_sim = true\ncollateral = [\"sim/root.pem\"]\n\
             [store]\npath = \"kbs.redb\"\nkek_file = \"kek.hex\"\n[admin]\npublic_keys = [\"admin.pem.pub\"]\n"
        ),
    )
    .unwrap();
    let kbs = Command::new(cocoon_exe())
        .args(["kbs", "serve", "--config", &w("kbs.toml")])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let name = format!("cocoon-infer-e2e-{}", std::process::id());
    let state = work.path().join("state");
    let running = Running {
        kbs,
        runc_root: state.join("runc"),
        name: name.clone(),
    };
    let kbs_addr = format!("127.0.0.1:{kbs_port}");
    wait_until("the KBS answers", 30, || http_get_ok(&kbs_addr, "/health"));
    let admin = [
        ("COCOON_KBS_URL", format!("http://{kbs_addr}")),
        ("COCOON_KBS_ADMIN_KEY", w("admin.pem")),
    ];
    ok(&admin, &["kbs", "reference-values", "add", &w("rv.json")]);
    let rv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("rv.json")).unwrap()).unwrap();
    let key_uri = rv["resources"][0].as_str().unwrap().to_string();
    ok(
        &admin,
        &["kbs", "resource", "put", &key_uri, &w("image.key")],
    );

    // Run it: attest, unlock, FUSE, shield, then the server.
    ok(
        &[],
        &[
            "run",
            &sealed,
            "--kbs",
            &format!("http://{kbs_addr}"),
            "--sim",
            &w("sim"),
            "-d",
            "--name",
            &name,
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    let endpoint = format!("127.0.0.1:{port}");
    let (rv_path, root) = (w("rv.json"), w("sim/root.pem"));
    let request = |extra: &[&str]| -> Output {
        let mut args = vec![
            "infer",
            "request",
            &endpoint,
            "--reference-values",
            &rv_path,
            "--sim-root",
            &root,
        ];
        args.extend_from_slice(extra);
        Command::new(cocoon_exe()).args(&args).output().unwrap()
    };
    let squeezenet = models.join("squeezenet.request.json").display().to_string();
    let mut last = None;
    wait_until(
        "the sealed server answers cocoon infer request",
        120,
        || {
            let o = request(&["--model", "squeezenet", "--input", &squeezenet]);
            let done = o.status.success();
            last = Some(o);
            done
        },
    );
    let o = last.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("squeezenet.expected.json")).unwrap())
            .unwrap();
    let got = v["outputs"][0]["data"].as_array().unwrap();
    let want = expected["data"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, e) in got.iter().zip(want) {
        assert!((g.as_f64().unwrap() - e.as_f64().unwrap()).abs() <= 1e-4);
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let workload = rv["workload_digest"].as_str().unwrap();
    assert!(
        err.contains(&format!("a sim TEE running workload {workload}")),
        "{err}"
    );

    // magika on a real file, through the shield.
    let (cfg, kb) = (
        models.join("magika.config.json").display().to_string(),
        models
            .join("magika.content_types.json")
            .display()
            .to_string(),
    );
    let o = request(&[
        "--model",
        "magika",
        "--input",
        "/bin/ls",
        "--magika",
        &cfg,
        "--magika-kb",
        &kb,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["label"], "elf", "{v}");

    // Another workload's reference values, and no trusted root: refused.
    let mut other = rv.clone();
    other["workload_digest"] = format!("sha256:{}", "e".repeat(64)).into();
    std::fs::write(work.path().join("other.json"), other.to_string()).unwrap();
    let err = refuses(
        &[
            "infer",
            "request",
            &endpoint,
            "--reference-values",
            &w("other.json"),
            "--sim-root",
            &root,
            "--model",
            "squeezenet",
            "--input",
            &squeezenet,
        ],
        &[],
    );
    assert!(
        err.contains(&format!(
            "the endpoint's evidence names workload {workload}"
        )),
        "{err}"
    );
    let err = refuses(
        &[
            "infer",
            "request",
            &endpoint,
            "--reference-values",
            &rv_path,
            "--model",
            "squeezenet",
            "--input",
            &squeezenet,
        ],
        &[],
    );
    assert!(err.contains("--sim-root"), "{err}");
    // The server's plaintext port is not on the host.
    assert!(!http_get_ok("127.0.0.1:8000", "/v2/health/live"));

    // The model bytes: in the plain image (once), nowhere else on disk.
    let magika = std::fs::read(models.join("magika.onnx")).unwrap();
    for at in [4096, magika.len() / 2, magika.len() - 128] {
        let needle = &magika[at..at + 64];
        assert_eq!(grep_tree(&work.path().join("infer"), needle).len(), 1);
        let mut hits = grep_tree(&work.path().join("sealed"), needle);
        hits.extend(grep_tree(&state, needle));
        assert!(
            hits.is_empty(),
            "model bytes at {at} in plaintext in {hits:?}"
        );
    }
    drop(running);
}
