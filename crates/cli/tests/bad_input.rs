//! Malicious and broken images: each gives one clear error line and a
//! non-zero exit, never a panic, and nothing is written outside the target.

use std::fs;
use std::path::Path;
use std::process::Command;

use cocoon_testkit::layout::{write_image, Layer, RawTar};

/// Runs `cocoon unpack` of the image in `layout` into `<work>/target/out`;
/// returns the single stderr line, after checking the failure was clean.
fn unpack_fails(work: &Path) -> String {
    let target_parent = work.join("target");
    fs::create_dir_all(&target_parent).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .arg("unpack")
        .arg(format!("oci:{}:bad", work.join("layout").display()))
        .arg(target_parent.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr}"
    );
    assert!(stderr.starts_with("cocoon: error: "), "{stderr}");
    // Nothing escaped: the only things anywhere in the work dir are the
    // layout and the (empty) target parent.
    let mut names: Vec<String> = fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layout", "target"],
        "something was written outside the target"
    );
    assert!(
        fs::read_dir(&target_parent).unwrap().next().is_none(),
        "a partial tree was left behind"
    );
    stderr.trim_end().to_string()
}

fn image_with(layers: &[Layer]) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    write_image(&work.path().join("layout"), "bad", layers);
    work
}

#[test]
fn path_traversal_is_refused() {
    let work = image_with(&[Layer::tar(RawTar::new().file("../escaped", b"x").finish())]);
    let err = unpack_fails(work.path());
    assert!(
        err.ends_with("refusing entry \"../escaped\": path contains '..'"),
        "{err}"
    );
}

#[test]
fn absolute_paths_are_refused() {
    let work = image_with(&[Layer::tar(
        RawTar::new().file("/etc/escaped", b"x").finish(),
    )]);
    let err = unpack_fails(work.path());
    assert!(
        err.ends_with("refusing entry \"/etc/escaped\": absolute path"),
        "{err}"
    );
}

#[test]
fn writing_through_a_symlink_is_refused_even_across_layers() {
    let outside = tempfile::tempdir().unwrap();
    let link = Layer::tar(
        RawTar::new()
            .symlink("out", outside.path().to_str().unwrap())
            .finish(),
    );
    let through = Layer::tar(RawTar::new().file("out/escaped", b"x").finish());
    let work = image_with(&[link, through]);
    let err = unpack_fails(work.path());
    assert!(err.ends_with("refusing entry \"out/escaped\": its parent /out is a symlink; refusing to write through it"), "{err}");
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

#[test]
fn hardlink_to_a_missing_file_is_refused() {
    let work = image_with(&[Layer::tar(
        RawTar::new().hardlink("etc-shadow", "etc/shadow").finish(),
    )]);
    let err = unpack_fails(work.path());
    assert!(
        err.ends_with("hardlink to \"etc/shadow\", which does not exist"),
        "{err}"
    );
}

#[test]
fn truncated_tar_is_refused() {
    let mut tar = RawTar::new().file("big", &[7u8; 4096]).finish();
    tar.truncate(2048);
    let work = image_with(&[Layer::tar(tar)]);
    let err = unpack_fails(work.path());
    assert!(
        err.contains("is not a valid tar stream: the stream ends early (truncated layer)"),
        "{err}"
    );
}

#[test]
fn corrupt_gzip_is_refused() {
    let mut layer = Layer::gzip(RawTar::new().file("data", &[1u8; 100_000]).finish());
    let mid = layer.blob.len() / 2;
    layer.blob[mid] ^= 0xff;
    layer.blob[mid + 1] ^= 0xff;
    let work = image_with(&[layer]);
    let err = unpack_fails(work.path());
    assert!(err.contains("is not a valid gzip stream"), "{err}");
}

#[test]
fn blob_digest_mismatch_names_the_blob() {
    let work = tempfile::tempdir().unwrap();
    let layer = Layer::tar(RawTar::new().file("data", b"original content").finish());
    let blob_path = write_image(&work.path().join("layout"), "bad", &[layer]).remove(0);
    let mut bytes = fs::read(&blob_path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[at] = b'O';
    fs::write(&blob_path, bytes).unwrap();
    let name = blob_path.file_name().unwrap().to_str().unwrap();
    let err = unpack_fails(work.path());
    assert!(
        err.starts_with(&format!(
            "cocoon: error: blob sha256:{name} is corrupt: content hashes to sha256:"
        )),
        "{err}"
    );
}

#[test]
fn an_uncompressed_layer_that_is_not_its_diff_id_is_refused_before_reading() {
    let tar = RawTar::new().file("hello", b"hi\n").finish();
    let mut layer = Layer::tar(tar);
    let claimed = cocoon_testkit::layout::digest(b"another tar");
    layer.diff_id = claimed.clone();
    let blob = cocoon_testkit::layout::digest(&layer.blob);
    let work = image_with(&[layer]);
    let err = unpack_fails(work.path());
    assert!(
        err.ends_with(&format!(
            "its digest hashes to {blob}, but the config's diff_id is {claimed}"
        )),
        "{err}"
    );
}

#[test]
fn missing_blob_is_named() {
    let work = tempfile::tempdir().unwrap();
    let layer = Layer::tar(RawTar::new().file("data", b"x").finish());
    let blob_path = write_image(&work.path().join("layout"), "bad", &[layer]).remove(0);
    fs::remove_file(&blob_path).unwrap();
    let name = blob_path.file_name().unwrap().to_str().unwrap();
    let err = unpack_fails(work.path());
    assert!(
        err.starts_with(&format!(
            "cocoon: error: blob sha256:{name} is missing from OCI layout"
        )),
        "{err}"
    );
}

#[test]
fn unknown_layer_media_type_is_refused() {
    let mut layer = Layer::tar(RawTar::new().file("data", b"x").finish());
    layer.media_type = "application/vnd.example.mystery".into();
    let work = image_with(&[layer]);
    let err = unpack_fails(work.path());
    assert!(
        err.contains(
            "unsupported media type \"application/vnd.example.mystery\" for layer sha256:"
        ),
        "{err}"
    );
}

#[test]
fn unknown_tag_lists_the_tags_there_are() {
    let work = image_with(&[Layer::tar(RawTar::new().file("data", b"x").finish())]);
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args([
            "measure",
            &format!("oci:{}:nope", work.path().join("layout").display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("cocoon: error: no image tagged \"nope\" in ")
            && stderr.trim_end().ends_with("(tags: bad)"),
        "{stderr}"
    );
}
