//! `cocoon measure`: the workload digest depends on what runs, not on how the
//! image was stored or layered.

use std::process::Command;

use cocoon_testkit::fixture;

fn cocoon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cocoon"))
}

fn measure(image: &str) -> String {
    let out = cocoon().args(["measure", image]).output().unwrap();
    assert!(
        out.status.success(),
        "measure {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    digest
}

fn oci(rel: &str, tag: &str) -> String {
    format!("oci:{}:{tag}", fixture(rel).display())
}

#[test]
fn digest_is_the_same_across_transports_compression_and_layering() {
    let reference = measure(&oci("busybox", "latest"));
    for other in [
        format!("docker-archive:{}", fixture("busybox.tar").display()),
        oci("busybox-zstd", "latest"),
        oci("busybox-plain", "latest"),
        oci("busybox", "relayered"),
    ] {
        assert_eq!(measure(&other), reference, "{other}");
    }
}

#[test]
fn digest_changes_with_one_byte_the_entrypoint_or_an_env_var() {
    let reference = measure(&oci("busybox", "latest"));
    let mut seen = vec![reference];
    for tag in ["changed-byte", "changed-entrypoint", "changed-env"] {
        let d = measure(&oci("busybox", tag));
        assert!(!seen.contains(&d), "{tag} measured like another image: {d}");
        seen.push(d);
    }
}

#[test]
fn debian_nginx_measures_the_same_from_oci_and_docker_archive() {
    assert_eq!(
        measure(&oci("debian", "nginx")),
        measure(&format!(
            "docker-archive:{}",
            fixture("debian-nginx.tar").display()
        ))
    );
}

#[test]
fn json_prints_the_canonical_manifest_whose_hash_is_the_digest() {
    let image = oci("busybox", "latest");
    let out = cocoon()
        .args(["measure", "--json", &image])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json = out.stdout.strip_suffix(b"\n").unwrap();
    assert_eq!(cocoon_testkit::layout::digest(json), measure(&image));
    let manifest: serde_json::Value = serde_json::from_slice(json).unwrap();
    assert_eq!(manifest["schema"], "cocoon.dev/workload/v1");
    assert_eq!(
        manifest["config"]["entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(manifest["config"]["ports"], serde_json::json!(["8080/tcp"]));
}

#[test]
fn an_image_pulled_from_a_registry_measures_like_the_local_copy() {
    let registry = cocoon_testkit::registry::Registry::start();
    let remote = format!("docker://{}/fixtures/busybox:v1", registry.host());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &oci("busybox", "latest"),
            &remote,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cocoon()
        .args(["measure", "--plain-http", &remote])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        measure(&oci("busybox", "latest"))
    );
}
