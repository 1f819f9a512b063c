//! `cocoon convert`, `inspect` and `verify-image`: round trips against the
//! flattened original, reproducibility, and refusal of every kind of
//! tampering, including by an attacker who re-hashes the OCI layout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cocoon_testkit::fixture;
use cocoon_testkit::layout::rewrite_layer;
use cocoon_testkit::snapshot::{differences, snapshot};

fn cocoon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The single error line of a failed command.
fn fails(out: Output) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure, stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr.trim_end().to_string()
}

struct Owner {
    dir: tempfile::TempDir,
}

impl Owner {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        ok(cocoon(&[
            "keygen",
            "--out",
            dir.path().join("owner.key").to_str().unwrap(),
        ]));
        Owner { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Converts `src` to `oci:<dir>/<name>:sealed` with a new image key
    /// written to `<name>.key`; returns the workload digest.
    fn convert(&self, src: &str, name: &str, extra: &[&str]) -> String {
        let dst = format!("oci:{}:sealed", self.path(name));
        let key_out = self.path(&format!("{name}.key"));
        let key_args: Vec<&str> = if Path::new(&key_out).exists() {
            vec!["--image-key", &key_out]
        } else {
            vec!["--image-key-out", &key_out]
        };
        let sign = self.path("owner.key");
        let mut args = vec!["convert", src, &dst, "--sign", &sign, "--json"];
        args.extend(key_args);
        args.extend(extra);
        let out: serde_json::Value = serde_json::from_str(&ok(cocoon(&args))).unwrap();
        out["workload_digest"].as_str().unwrap().to_string()
    }

    fn sealed(&self, name: &str) -> String {
        format!("oci:{}:sealed", self.path(name))
    }

    fn verify(&self, name: &str, with_key: bool) -> Output {
        let pubkey = self.path("owner.key.pub");
        let key = self.path(&format!("{name}.key"));
        let image = self.sealed(name);
        let mut args = vec!["verify-image", image.as_str(), "--pubkey", pubkey.as_str()];
        if with_key {
            args.extend(["--image-key", key.as_str()]);
        }
        cocoon(&args)
    }
}

fn oci(rel: &str, tag: &str) -> String {
    format!("oci:{}:{tag}", fixture(rel).display())
}

/// Unsealing with the key gives exactly the tree of the original image.
fn assert_round_trip(src: &str, extra: &[&str]) {
    let owner = Owner::new();
    owner.convert(src, "img", extra);
    let work = tempfile::tempdir().unwrap();
    let (original, unsealed) = (work.path().join("original"), work.path().join("unsealed"));
    ok(cocoon(&["unpack", src, original.to_str().unwrap()]));
    let pubkey = owner.path("owner.key.pub");
    let key = owner.path("img.key");
    let sealed = owner.sealed("img");
    let out = ok(cocoon(&[
        "verify-image",
        &sealed,
        "--pubkey",
        &pubkey,
        "--image-key",
        &key,
        "--extract",
        unsealed.to_str().unwrap(),
    ]));
    assert!(
        out.contains("tree decrypted and every file checked"),
        "{out}"
    );
    let diff = differences(&snapshot(&original), &snapshot(&unsealed));
    assert!(
        diff.is_empty(),
        "{src}: unsealed tree differs from the original:\n{}",
        diff.join("\n")
    );
}

#[test]
fn busybox_round_trips_with_every_edge_case() {
    assert_round_trip(
        &oci("busybox", "latest"),
        &["--encrypt", "/usr", "--encrypt", "/etc/passwd"],
    );
}

#[test]
fn debian_images_round_trip() {
    assert_round_trip(&oci("debian", "nginx"), &["--encrypt-all"]);
    assert_round_trip(&oci("debian", "redis"), &["--encrypt", "/usr/bin"]);
    assert_round_trip(
        &oci("debian", "python"),
        &["--encrypt", "/usr/lib/python3.11"],
    );
}

#[test]
fn measure_of_the_original_equals_the_sealed_workload_digest_and_output_is_reproducible() {
    let owner = Owner::new();
    let src = oci("busybox", "latest");
    let opts = [
        "--encrypt",
        "/usr",
        "--secret-env",
        "TOKEN=kbs:///app/env/token",
        "--shield",
        "8443:8080",
    ];
    let first = owner.convert(&src, "a", &opts);
    let mut measure_args = vec!["measure", src.as_str()];
    measure_args.extend(opts);
    assert_eq!(ok(cocoon(&measure_args)).trim(), first);

    // Same key, same options: byte-identical image.
    fs::copy(owner.path("a.key"), owner.path("b.key")).unwrap();
    assert_eq!(owner.convert(&src, "b", &opts), first);
    let blobs = |name: &str| -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(owner.path(name)).join("blobs/sha256");
        let mut v: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert!(
        blobs("a") == blobs("b"),
        "two conversions with one key differ"
    );

    // Other options: another digest.
    assert_ne!(owner.convert(&src, "c", &["--encrypt", "/bin"]), first);
}

#[test]
fn no_plaintext_of_encrypted_files_anywhere_in_the_sealed_image() {
    let owner = Owner::new();
    owner.convert(
        &oci("busybox", "latest"),
        "img",
        &["--encrypt", "/usr/share/cocoon", "--encrypt", "/etc/passwd"],
    );
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original");
    ok(cocoon(&[
        "unpack",
        &oci("busybox", "latest"),
        original.to_str().unwrap(),
    ]));
    let random = fs::read(original.join("usr/share/cocoon/random-3m.bin")).unwrap();
    let passwd = fs::read(original.join("etc/passwd")).unwrap();
    // (/etc/group, not encrypted, also holds "app:x:1000:", so look for the passwd line.)
    let needles: Vec<&[u8]> = vec![
        &random[1 << 20..(1 << 20) + 48],
        &random[..48],
        &passwd,
        b"app:x:1000:1000:app",
    ];
    let mut searched = 0;
    for blob in fs::read_dir(PathBuf::from(owner.path("img")).join("blobs/sha256")).unwrap() {
        let data = fs::read(blob.unwrap().path()).unwrap();
        searched += data.len();
        for n in &needles {
            assert!(
                !data.windows(n.len()).any(|w| w == *n),
                "plaintext of an encrypted file found in a blob"
            );
        }
    }
    assert!(
        searched > 3 << 20,
        "the sealed image should hold the 3 MiB file's ciphertext"
    );
    // Control: the needles are found where content is not encrypted.
    let plain = Owner::new();
    plain.convert(&oci("busybox", "latest"), "img", &[]);
    let found = fs::read_dir(PathBuf::from(plain.path("img")).join("blobs/sha256"))
        .unwrap()
        .any(|b| {
            fs::read(b.unwrap().path())
                .unwrap()
                .windows(needles[0].len())
                .any(|w| w == needles[0])
        });
    assert!(found, "the control image should contain the plaintext");
}

/// One sealed busybox image, and a way to tamper with a copy of it.
struct Tamper {
    owner: Owner,
}

impl Tamper {
    fn new() -> Self {
        let owner = Owner::new();
        owner.convert(&oci("busybox", "latest"), "img", &["--encrypt", "/usr"]);
        Tamper { owner }
    }

    /// A copy named `name` whose seal layer file `file` was changed by `f`
    /// (digests re-computed as an attacker with the registry would).
    fn with(&self, name: &str, file: &str, f: impl FnOnce(&mut Vec<u8>)) -> &Owner {
        let dir = PathBuf::from(self.owner.path(name));
        assert!(Command::new("cp")
            .arg("-a")
            .arg(self.owner.path("img"))
            .arg(&dir)
            .status()
            .unwrap()
            .success());
        fs::copy(
            self.owner.path("img.key"),
            self.owner.path(&format!("{name}.key")),
        )
        .unwrap();
        rewrite_layer(&dir, "sealed", 1, |files| {
            let entry = files
                .iter_mut()
                .find(|(p, _, _)| p == file)
                .expect("file in seal layer");
            f(&mut entry.2);
        });
        &self.owner
    }
}

fn trailer(blob: &[u8]) -> cocoon_seal::format::Trailer {
    let at = blob.len() - cocoon_seal::format::TRAILER_LEN;
    cocoon_seal::format::Trailer::decode(&blob[at..], blob.len() as u64).unwrap()
}

fn table(blob: &[u8]) -> Vec<cocoon_seal::format::ChunkRecord> {
    let h = trailer(blob);
    cocoon_seal::format::ChunkRecord::decode_table(
        &blob[h.table_offset as usize..h.index_offset as usize],
        &h,
    )
    .unwrap()
}

#[test]
fn untampered_copy_verifies() {
    let t = Tamper::new();
    let owner = t.with("same", "cocoon/seal.json", |_| {});
    assert!(ok(owner.verify("same", true)).starts_with("OK sha256:"));
}

#[test]
fn a_flipped_bit_anywhere_in_the_sealed_blob_is_refused() {
    let t = Tamper::new();
    let blob = fs::read(format!("{}/x", t.owner.path("."))).err();
    assert!(blob.is_some());
    // Offsets in each region: first chunk, a later chunk, table, index, trailer.
    let original = {
        let tmp = tempfile::tempdir().unwrap();
        ok(cocoon(&[
            "verify-image",
            &t.owner.sealed("img"),
            "--pubkey",
            &t.owner.path("owner.key.pub"),
        ]));
        let mut files = None;
        rewrite_layer(
            &{
                let d = tmp.path().join("l");
                assert!(Command::new("cp")
                    .arg("-a")
                    .arg(t.owner.path("img"))
                    .arg(&d)
                    .status()
                    .unwrap()
                    .success());
                d
            },
            "sealed",
            1,
            |f| {
                files = Some(
                    f.iter()
                        .find(|(p, _, _)| p == "cocoon/sealed.blob")
                        .unwrap()
                        .2
                        .clone(),
                )
            },
        );
        files.unwrap()
    };
    let chunks = table(&original);
    let h = trailer(&original);
    let cases = [
        (
            "trailer",
            original.len() - 236,
            "the sealed blob trailer is not the one the owner signed",
        ),
        (
            "first chunk",
            chunks[0].offset as usize + 3,
            "chunk 0 does not match the chunk table",
        ),
        (
            "last chunk",
            chunks.last().unwrap().offset as usize,
            &*format!("chunk {} does not match the chunk table", chunks.len() - 1),
        ),
        (
            "table",
            h.table_offset as usize + 60,
            "the chunk table does not match the trailer",
        ),
        (
            "index",
            h.index_offset as usize + 30,
            "the index does not match the trailer",
        ),
    ];
    for (i, (region, at, expected)) in cases.iter().enumerate() {
        let name = format!("flip{i}");
        let owner = t.with(&name, "cocoon/sealed.blob", |b| b[*at] ^= 0x10);
        let err = fails(owner.verify(&name, false));
        assert_eq!(
            err,
            format!("cocoon: error: sealed image tampered with: {expected}"),
            "{region}"
        );
    }
}

#[test]
fn swapped_chunks_are_refused() {
    let t = Tamper::new();
    let owner = t.with("swap", "cocoon/sealed.blob", |b| {
        let c = table(b);
        // Two chunks of equal stored length, so that offsets stay valid.
        let (x, y) = (0..c.len())
            .flat_map(|i| (i + 1..c.len()).map(move |j| (i, j)))
            .find(|&(i, j)| c[i].stored_len == c[j].stored_len && c[i].digest != c[j].digest)
            .expect("two chunks of equal length");
        let (a, n) = (c[x].offset as usize, c[x].stored_len as usize);
        let bo = c[y].offset as usize;
        let first = b[a..a + n].to_vec();
        b.copy_within(bo..bo + n, a);
        b[bo..bo + n].copy_from_slice(&first);
    });
    let err = fails(owner.verify("swap", false));
    assert!(
        err.starts_with("cocoon: error: sealed image tampered with: chunk ")
            && err.ends_with(" does not match the chunk table"),
        "{err}"
    );
}

#[test]
fn a_changed_manifest_or_signature_is_refused() {
    let t = Tamper::new();
    let owner = t.with("manifest", "cocoon/manifest.json", |m| {
        let s = String::from_utf8(m.clone())
            .unwrap()
            .replace("echo hello from busybox", "echo hello from attacker");
        *m = s.into_bytes();
    });
    assert_eq!(
        fails(owner.verify("manifest", false)),
        "cocoon: error: sealed image tampered with: the workload manifest is not the one the owner signed"
    );
    let owner = t.with("sig", "cocoon/seal.json", |s| {
        let mut v: serde_json::Value = serde_json::from_slice(s).unwrap();
        let sig = v["signature"].as_str().unwrap().to_string();
        let flipped = if sig.starts_with('A') {
            sig.replacen('A', "B", 1)
        } else {
            format!("A{}", &sig[1..])
        };
        v["signature"] = flipped.into();
        *s = serde_json::to_vec(&v).unwrap();
    });
    assert_eq!(
        fails(owner.verify("sig", false)),
        "cocoon: error: signature check failed: the signature does not match the seal descriptor"
    );
    // The launcher is measured too.
    let dir = PathBuf::from(t.owner.path("launcher"));
    assert!(Command::new("cp")
        .arg("-a")
        .arg(t.owner.path("img"))
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let mut launcher = Vec::new();
    rewrite_layer(&dir, "sealed", 1, |files| {
        // Move the launcher into the uncompressed layer, modified: the last
        // file of that name wins when layers are applied.
        launcher = fs::read(env!("CARGO_BIN_EXE_cocoon")).unwrap()[..4096].to_vec();
        files.push(("cocoon/launcher".into(), 0o755, launcher.clone()));
    });
    let err = fails(cocoon(&[
        "verify-image",
        &format!("oci:{}:sealed", dir.display()),
        "--pubkey",
        &t.owner.path("owner.key.pub"),
    ]));
    assert_eq!(
        err,
        "cocoon: error: sealed image tampered with: the launcher is not the one the manifest names"
    );
}

#[test]
fn a_blob_from_another_image_is_refused() {
    let t = Tamper::new();
    let other = Owner::new();
    other.convert(
        &oci("busybox", "changed-byte"),
        "other",
        &["--encrypt", "/usr"],
    );
    let mut other_blob = Vec::new();
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("o");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(other.path("other"))
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    rewrite_layer(&copy, "sealed", 1, |f| {
        other_blob = f
            .iter()
            .find(|(p, _, _)| p == "cocoon/sealed.blob")
            .unwrap()
            .2
            .clone()
    });
    let owner = t.with("foreign", "cocoon/sealed.blob", |b| *b = other_blob);
    let err = fails(owner.verify("foreign", false));
    assert!(
        err.starts_with("cocoon: error: sealed image tampered with: the sealed blob is "),
        "{err}"
    );
}

#[test]
fn a_wrong_image_key_or_public_key_is_refused() {
    let t = Tamper::new();
    fs::write(t.owner.path("img.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    assert_eq!(
        fails(t.owner.verify("img", true)),
        "cocoon: error: cannot decrypt the index: wrong image key or tampered data"
    );
    let stranger = Owner::new();
    let err = fails(cocoon(&[
        "verify-image",
        &t.owner.sealed("img"),
        "--pubkey",
        &stranger.path("owner.key.pub"),
    ]));
    assert!(
        err.starts_with("cocoon: error: signature check failed: the image is signed by sha256:"),
        "{err}"
    );
}

#[test]
fn inspect_shows_what_the_image_declares() {
    let owner = Owner::new();
    let digest = owner.convert(
        &oci("busybox", "latest"),
        "img",
        &[
            "--encrypt",
            "/usr",
            "--secret-file",
            "/run/secrets/db=kbs:///app/db/password",
            "--shield",
            "8443:8080",
        ],
    );
    let out: serde_json::Value =
        serde_json::from_str(&ok(cocoon(&["inspect", "--json", &owner.sealed("img")]))).unwrap();
    assert_eq!(out["workload_digest"], digest);
    assert_eq!(out["encrypted"], serde_json::json!(["/usr"]));
    assert_eq!(out["secrets"][0]["path"], "/run/secrets/db");
    assert_eq!(out["shield"][0]["public"], 8443);
    assert_eq!(
        out["config"]["cmd"],
        serde_json::json!(["echo hello from busybox"])
    );
    // The sealed image's own config shows only the launcher.
    let err = fails(cocoon(&["inspect", &oci("busybox", "latest")]));
    assert!(
        err.contains("is not a cocoon sealed image (its entrypoint is [\"/bin/sh\", \"-c\"]"),
        "{err}"
    );
}

#[test]
fn convert_refuses_to_lose_a_new_key_and_bad_options() {
    let owner = Owner::new();
    let dst = format!("oci:{}:x", owner.path("x"));
    let sign = owner.path("owner.key");
    let src = oci("busybox", "latest");
    let err = fails(cocoon(&["convert", &src, &dst, "--sign", &sign]));
    assert!(err.contains("a new image key would be lost"), "{err}");
    let key = owner.path("k");
    let err = fails(cocoon(&[
        "convert",
        &src,
        &dst,
        "--sign",
        &sign,
        "--image-key-out",
        &key,
        "--secret-env",
        "X=http://x",
    ]));
    assert!(
        err.contains("invalid KBS resource \"http://x\": expected kbs:///REPO/TYPE/TAG"),
        "{err}"
    );
    let err = fails(cocoon(&[
        "convert",
        &src,
        &dst,
        "--sign",
        &owner.path("owner.key.pub"),
        "--image-key-out",
        &key,
    ]));
    assert!(
        err.contains("is not an Ed25519 PKCS#8 PEM private key"),
        "{err}"
    );
    assert!(!Path::new(&key).exists(), "no key file on failure");
}

#[test]
fn convert_reads_and_writes_every_transport() {
    let registry = cocoon_testkit::registry::Registry::start();
    let owner = Owner::new();
    let sign = owner.path("owner.key");
    let key = owner.path("img.key");
    let pubkey = owner.path("owner.key.pub");
    let archive_src = format!("docker-archive:{}", fixture("busybox.tar").display());
    let remote = format!("docker://{}/sealed/busybox:1", registry.host());
    // docker-archive in, registry out.
    ok(cocoon(&[
        "convert",
        &archive_src,
        &remote,
        "--plain-http",
        "--sign",
        &sign,
        "--image-key-out",
        &key,
        "-q",
    ]));
    let out = ok(cocoon(&[
        "verify-image",
        "--plain-http",
        &remote,
        "--pubkey",
        &pubkey,
        "--image-key",
        &key,
    ]));
    assert!(
        out.contains("tree decrypted and every file checked"),
        "{out}"
    );
    // registry in (pulling the original pushed by skopeo), docker-archive out.
    let original = format!("docker://{}/orig/busybox:1", registry.host());
    let pushed = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci("busybox", "latest"),
            &original,
        ])
        .status()
        .unwrap();
    assert!(pushed.success());
    let archive_dst = format!("docker-archive:{}", owner.path("sealed.tar"));
    ok(cocoon(&[
        "convert",
        &original,
        &archive_dst,
        "--plain-http",
        "--sign",
        &sign,
        "--image-key",
        &key,
        "-q",
    ]));
    let out = ok(cocoon(&[
        "verify-image",
        &archive_dst,
        "--pubkey",
        &pubkey,
        "--image-key",
        &key,
    ]));
    assert!(
        out.contains("tree decrypted and every file checked"),
        "{out}"
    );
}
