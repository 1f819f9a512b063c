//! Registry transport against Debian's real `docker-registry` on loopback and
//! real skopeo, plus the Bearer token flow against a small in-test server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use cocoon_image::copy::copy_image;
use cocoon_image::reference::RegistryVersion;
use cocoon_image::transport::oci_layout::{OciLayoutDest, OciLayoutSource};
use cocoon_image::transport::registry::{RegistryDest, RegistrySource};
use cocoon_image::transport::{read_blob, resolve, ImageSource, TransportOptions};
use cocoon_image::{media, Digest, Error, Platform};
use cocoon_testkit::fixture;
use cocoon_testkit::registry::Registry;

fn plain() -> TransportOptions {
    TransportOptions {
        plain_http: true,
        ..Default::default()
    }
}

fn with_creds(user: &str, pass: &str) -> TransportOptions {
    TransportOptions {
        plain_http: true,
        credentials: Some((user.into(), pass.into())),
        ..Default::default()
    }
}

fn tag(t: &str) -> RegistryVersion {
    RegistryVersion::Tag(t.into())
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The manifest digest and config digest of an OCI layout image, as skopeo sees it.
fn skopeo_digests(layout: &Path, t: &str) -> (Digest, String) {
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:{t}", layout.display())]);
    let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    (
        Digest::of(raw.as_bytes()),
        parsed["config"]["digest"].as_str().unwrap().to_string(),
    )
}

fn push_busybox(
    registry: &Registry,
    repo: &str,
    t: &str,
    opts: &TransportOptions,
) -> Result<Digest, Error> {
    let mut src = OciLayoutSource::open(&fixture("busybox"), Some("latest"))?;
    let mut dst = RegistryDest::open(&registry.host(), repo, &tag(t), opts)?;
    copy_image(&mut src, &mut dst, &Platform::default())
}

#[test]
fn cocoon_pushes_and_skopeo_pulls_the_same_image() {
    let registry = Registry::start();
    let mut original = OciLayoutSource::open(&fixture("busybox"), Some("latest")).unwrap();
    let original = resolve(&mut original, &Platform::default()).unwrap();

    let pushed = push_busybox(&registry, "cocoon/busybox", "v1", &plain()).unwrap();
    assert_eq!(pushed, original.manifest.digest);
    // Pushing again skips every blob the registry has and succeeds.
    assert_eq!(
        push_busybox(&registry, "cocoon/busybox", "v1", &plain()).unwrap(),
        pushed
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pulled");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/cocoon/busybox:v1", registry.host()),
        &format!("oci:{}:t", out.display()),
    ]);
    let (manifest, config) = skopeo_digests(&out, "t");
    assert_eq!(manifest, pushed);
    assert_eq!(config, original.parsed.config().digest().to_string());

    // cocoon reads it back by digest too.
    let mut by_digest = RegistrySource::open(
        &registry.host(),
        "cocoon/busybox",
        &RegistryVersion::Digest(pushed),
        &plain(),
    )
    .unwrap();
    let image = resolve(&mut by_digest, &Platform::default()).unwrap();
    assert_eq!(image.config_bytes, original.config_bytes);
}

#[test]
fn skopeo_pushes_and_cocoon_pulls_the_same_image() {
    let registry = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    for (fixture_ref, repo) in [
        ("busybox:latest", "sk/busybox"),
        ("busybox-zstd:latest", "sk/busybox-zstd"),
    ] {
        let (dir, t) = fixture_ref.split_once(':').unwrap();
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{t}", fixture(dir).display()),
            &format!("docker://{}/{repo}:latest", registry.host()),
        ]);
        let (expected_manifest, expected_config) = skopeo_digests(&fixture(dir), t);

        let mut src =
            RegistrySource::open(&registry.host(), repo, &tag("latest"), &plain()).unwrap();
        let out = tmp.path().join(dir);
        let mut dst = OciLayoutDest::create(&out, Some("pulled")).unwrap();
        let digest = copy_image(&mut src, &mut dst, &Platform::default()).unwrap();
        drop(dst);
        assert_eq!(digest, expected_manifest, "{fixture_ref}");

        // The layout cocoon wrote holds the same image for skopeo.
        let (manifest, config) = skopeo_digests(&out, "pulled");
        assert_eq!(
            (manifest, config),
            (expected_manifest, expected_config),
            "{fixture_ref}"
        );
    }
}

#[test]
fn basic_auth_refuses_a_wrong_password_and_accepts_the_right_one() {
    let registry = Registry::start_with_basic_auth("alice", "s3cret");

    let err = push_busybox(
        &registry,
        "auth/busybox",
        "v1",
        &with_creds("alice", "wrong"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 401") && msg.contains("check the user name and password"),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("registry {}: ", registry.host())),
        "{msg}"
    );

    let err = push_busybox(&registry, "auth/busybox", "v1", &plain()).unwrap_err();
    assert!(
        err.to_string().contains("the registry needs credentials"),
        "{err}"
    );

    let pushed = push_busybox(
        &registry,
        "auth/busybox",
        "v1",
        &with_creds("alice", "s3cret"),
    )
    .unwrap();
    let mut src = RegistrySource::open(
        &registry.host(),
        "auth/busybox",
        &tag("v1"),
        &with_creds("alice", "s3cret"),
    )
    .unwrap();
    assert_eq!(src.root_manifest().unwrap().digest, pushed);
}

#[test]
fn a_tampered_blob_in_the_registry_is_refused_naming_it() {
    let registry = Registry::start();
    push_busybox(&registry, "tamper/busybox", "v1", &plain()).unwrap();
    let mut src =
        RegistrySource::open(&registry.host(), "tamper/busybox", &tag("v1"), &plain()).unwrap();
    let image = resolve(&mut src, &Platform::default()).unwrap();
    let layer = image
        .parsed
        .layers()
        .iter()
        .max_by_key(|l| l.size())
        .unwrap()
        .clone();
    let digest = Digest::try_from(layer.digest()).unwrap();

    let path = registry.blob_data_path(&digest.hex());
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(&path, data).unwrap();

    let err = read_blob(&mut src, &layer).unwrap_err();
    assert!(
        matches!(err, Error::BlobMismatch { blob, .. } if blob == digest),
        "{err:?}"
    );
    assert!(err.to_string().contains(&digest.to_string()), "{err}");

    // Copying the image fails the same way, naming the blob.
    let tmp = tempfile::tempdir().unwrap();
    let mut dst = OciLayoutDest::create(&tmp.path().join("out"), None).unwrap();
    let err = copy_image(&mut src, &mut dst, &Platform::default()).unwrap_err();
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
}

#[test]
fn a_missing_tag_or_repository_is_one_clear_error() {
    let registry = Registry::start();
    push_busybox(&registry, "lib/busybox", "v1", &plain()).unwrap();
    let mut src =
        RegistrySource::open(&registry.host(), "lib/busybox", &tag("nope"), &plain()).unwrap();
    let err = src.root_manifest().unwrap_err();
    assert!(matches!(err, Error::NoSuchTag { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no image tagged \"nope\" in docker://{}/lib/busybox (tags: v1)",
            registry.host()
        )
    );

    let mut src =
        RegistrySource::open(&registry.host(), "lib/none", &tag("latest"), &plain()).unwrap();
    let err = src.root_manifest().unwrap_err();
    assert!(matches!(err, Error::NoSuchTag { .. }), "{err:?}");
}

#[test]
fn https_to_a_plain_http_registry_says_what_to_do() {
    let registry = Registry::start();
    let err = RegistrySource::open(
        &registry.host(),
        "lib/busybox",
        &tag("v1"),
        &TransportOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::Registry { .. }), "{err:?}");
    assert!(err.to_string().contains("--plain-http"), "{err}");
}

/// A tiny registry that only serves one image and only to a Bearer token it
/// issued itself, for clients that authenticated to its token endpoint.
struct TokenServer {
    host: String,
    scopes: Arc<Mutex<Vec<String>>>,
}

const TOKEN: &str = "tok-0123456789";

fn start_token_server(
    repo: &str,
    blobs: HashMap<String, (String, Vec<u8>)>,
    manifest: Vec<u8>,
) -> TokenServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let (host2, scopes2, repo) = (host.clone(), scopes.clone(), repo.to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let auth = headers.get("authorization").cloned().unwrap_or_default();
            let (status, extra, body): (&str, Vec<(String, String)>, Vec<u8>) = if let Some(q) =
                target.strip_prefix("/token?")
            {
                let query: HashMap<&str, &str> =
                    q.split('&').filter_map(|kv| kv.split_once('=')).collect();
                let scope = query
                    .get("scope")
                    .unwrap_or(&"")
                    .replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2C", ",");
                scopes2.lock().unwrap().push(scope);
                // "alice:pw" in base64.
                if auth == "Basic YWxpY2U6cHc=" && query.get("service") == Some(&"test-registry") {
                    (
                        "200 OK",
                        vec![],
                        format!(r#"{{"access_token":"{TOKEN}","expires_in":300}}"#).into_bytes(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        vec![],
                        br#"{"errors":[{"code":"DENIED","message":"bad credentials"}]}"#.to_vec(),
                    )
                }
            } else if auth != format!("Bearer {TOKEN}") {
                let challenge = format!(
                    r#"Bearer realm="http://{host2}/token",service="test-registry",scope="repository:{repo}:pull""#
                );
                (
                    "401 Unauthorized",
                    vec![("WWW-Authenticate".into(), challenge)],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_vec(),
                )
            } else if target == "/v2/" {
                ("200 OK", vec![], b"{}".to_vec())
            } else if target == format!("/v2/{repo}/manifests/latest") {
                let digest = Digest::of(&manifest).to_string();
                (
                    "200 OK",
                    vec![
                        ("Content-Type".into(), media::OCI_MANIFEST.into()),
                        ("Docker-Content-Digest".into(), digest),
                    ],
                    manifest.clone(),
                )
            } else if let Some((_, data)) = target
                .strip_prefix(&format!("/v2/{repo}/blobs/"))
                .and_then(|d| blobs.get(d))
            {
                ("200 OK", vec![], data.clone())
            } else {
                (
                    "404 Not Found",
                    vec![],
                    br#"{"errors":[{"code":"NOT_FOUND","message":"no such thing"}]}"#.to_vec(),
                )
            };
            let mut resp = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in extra {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            let _ = stream.write_all(resp.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    TokenServer { host, scopes }
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn bearer_token_flow_fetches_a_scoped_token_with_basic_credentials() {
    let layer = tar_of("hello", b"hi\n");
    let layer_digest = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let config_digest = Digest::of(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":{}}}]}}"#,
        media::OCI_MANIFEST,
        media::OCI_CONFIG,
        config.len(),
        media::OCI_LAYER_TAR,
        layer.len()
    );
    let mut blobs = HashMap::new();
    blobs.insert(
        config_digest.to_string(),
        (String::new(), config.into_bytes()),
    );
    blobs.insert(layer_digest.to_string(), (String::new(), layer.clone()));
    let server = start_token_server("team/app", blobs, manifest.clone().into_bytes());

    let mut src = RegistrySource::open(
        &server.host,
        "team/app",
        &tag("latest"),
        &with_creds("alice", "pw"),
    )
    .unwrap();
    let image = resolve(&mut src, &Platform::default()).unwrap();
    assert_eq!(image.manifest.digest, Digest::of(manifest.as_bytes()));
    assert_eq!(
        read_blob(&mut src, &image.parsed.layers()[0]).unwrap(),
        layer
    );
    let scopes = server.scopes.lock().unwrap().clone();
    assert!(
        !scopes.is_empty() && scopes.iter().all(|s| s == "repository:team/app:pull"),
        "{scopes:?}"
    );

    let err = RegistrySource::open(
        &server.host,
        "team/app",
        &tag("latest"),
        &with_creds("alice", "nope"),
    )
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("/token?")
            && msg.contains("HTTP 401")
            && msg.contains("DENIED: bad credentials"),
        "{msg}"
    );
}
