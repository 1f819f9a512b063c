//! docker-archive transport: reading what skopeo writes, skopeo reading what
//! cocoon writes, and one clear error for each kind of broken archive.

use std::path::Path;
use std::process::Command;

use cocoon_image::copy::copy_image;
use cocoon_image::flatten::flatten;
use cocoon_image::store::CasDir;
use cocoon_image::transport::docker_archive::{DockerArchiveDest, DockerArchiveSource};
use cocoon_image::transport::oci_layout::OciLayoutSource;
use cocoon_image::transport::{read_blob, resolve, ImageSource};
use cocoon_image::{Digest, Error, Platform};
use cocoon_testkit::fixture;

/// Reads every layer of an image through the source, so that each is verified.
fn read_all_layers(src: &mut dyn ImageSource) -> Vec<Digest> {
    let image = resolve(src, &Platform::default()).unwrap();
    for layer in image.parsed.layers() {
        read_blob(src, layer).unwrap();
    }
    image.diff_ids().unwrap()
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

#[test]
fn reads_a_skopeo_archive_like_the_oci_original() {
    let mut oci = OciLayoutSource::open(&fixture("busybox"), Some("latest")).unwrap();
    let original = resolve(&mut oci, &Platform::default()).unwrap();

    for name in [
        None,
        Some("busybox:latest"),
        Some("docker.io/library/busybox:latest"),
        Some("busybox"),
    ] {
        let mut src = DockerArchiveSource::open(&fixture("busybox.tar"), name).unwrap();
        let image = resolve(&mut src, &Platform::default()).unwrap();
        assert_eq!(
            image.parsed.config().digest(),
            original.parsed.config().digest(),
            "{name:?}"
        );
        assert_eq!(image.config_bytes, original.config_bytes);
        assert_eq!(read_all_layers(&mut src), original.diff_ids().unwrap());
        // docker-archive layers are uncompressed: their digest is the diff_id.
        for (layer, diff_id) in image.parsed.layers().iter().zip(image.diff_ids().unwrap()) {
            assert_eq!(layer.digest().to_string(), diff_id.to_string());
            assert_eq!(
                layer.media_type().to_string(),
                cocoon_image::media::OCI_LAYER_TAR
            );
        }
    }
}

#[test]
fn unknown_name_lists_the_archive_tags() {
    let err = DockerArchiveSource::open(&fixture("busybox.tar"), Some("nginx:latest"))
        .err()
        .unwrap();
    assert!(matches!(err, Error::NoSuchTag { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"nginx:latest\"") && msg.contains("docker.io/library/busybox:latest"),
        "{msg}"
    );
}

/// cocoon writes `docker-archive:` from each OCI fixture (gzip, zstd and plain
/// layers); skopeo reads it back to an OCI layout with the same config and
/// diff_ids, and so does cocoon.
#[test]
fn skopeo_reads_what_cocoon_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let reference_copy = tmp.path().join("reference-oci");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("docker-archive:{}", fixture("busybox.tar").display()),
        &format!("oci:{}:t", reference_copy.display()),
    ]);
    for fixture_name in ["busybox", "busybox-zstd", "busybox-plain"] {
        let mut oci = OciLayoutSource::open(&fixture(fixture_name), Some("latest")).unwrap();
        let original = resolve(&mut oci, &Platform::default()).unwrap();
        let archive = tmp.path().join(format!("{fixture_name}.tar"));
        let mut dst = DockerArchiveDest::create(&archive, Some("example/busybox:v1")).unwrap();
        copy_image(&mut oci, &mut dst, &Platform::default()).unwrap();
        drop(dst);
        // Nothing but the archive is left beside it.
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".cocoon"))
            .collect();
        assert!(left.is_empty(), "staging left behind: {left:?}");

        // cocoon reads it back, by name and as the only image.
        for name in [Some("example/busybox:v1"), None] {
            let mut back = DockerArchiveSource::open(&archive, name).unwrap();
            let image = resolve(&mut back, &Platform::default()).unwrap();
            assert_eq!(image.config_bytes, original.config_bytes);
            assert_eq!(read_all_layers(&mut back), original.diff_ids().unwrap());
        }

        // skopeo reads it.
        let out = tmp.path().join(format!("{fixture_name}-oci"));
        skopeo(&[
            "copy",
            "--quiet",
            &format!("docker-archive:{}:example/busybox:v1", archive.display()),
            &format!("oci:{}:t", out.display()),
        ]);
        // skopeo rewrites a docker-archive's config when it writes OCI; it
        // must do exactly what it does to its own archive of the same image.
        let config_of = |layout: &Path| {
            let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:t", layout.display())]);
            let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
            raw["config"]["digest"].as_str().unwrap().to_string()
        };
        assert_eq!(config_of(&out), config_of(&reference_copy));
        let mut from_skopeo = OciLayoutSource::open(&out, Some("t")).unwrap();
        assert_eq!(
            read_all_layers(&mut from_skopeo),
            original.diff_ids().unwrap()
        );
    }
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A one-layer archive; `layer_entry` is the name manifest.json uses.
fn small_archive(path: &Path, layer_entry: &str, stored_layer: &[u8], diff_id: Digest) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["small:1"],"Layers":["{layer_entry}"]}}]"#
    );
    let data = tar_of(&[
        (&config_name, config.as_bytes()),
        ("layer/layer.tar", stored_layer),
        ("manifest.json", manifest.as_bytes()),
    ]);
    std::fs::write(path, data).unwrap();
}

#[test]
fn manifest_naming_a_missing_layer_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    let layer = tar_of(&[("hello", b"hi\n")]);
    small_archive(&archive, "gone/layer.tar", &layer, Digest::of(&layer));
    let err = DockerArchiveSource::open(&archive, None).err().unwrap();
    assert!(matches!(err, Error::MissingBlob { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("gone/layer.tar") && msg.contains(&archive.display().to_string()),
        "{msg}"
    );
}

#[test]
fn truncated_archive_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(fixture("busybox.tar")).unwrap();
    for cut in [data.len() / 2, 1000, 10] {
        let archive = tmp.path().join(format!("cut-{cut}.tar"));
        std::fs::write(&archive, &data[..cut]).unwrap();
        let err = DockerArchiveSource::open(&archive, None).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&archive.display().to_string()), "{msg}");
        assert!(
            msg.contains("truncated") || msg.contains("manifest.json"),
            "{msg}"
        );
    }
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    let layer = tar_of(&[("hello", b"hi\n")]);
    let claimed = Digest::of(b"something else");
    small_archive(&archive, "layer/layer.tar", &layer, claimed);
    let mut src = DockerArchiveSource::open(&archive, Some("small:1")).unwrap();
    let image = resolve(&mut src, &Platform::default()).unwrap();
    let err = read_blob(&mut src, &image.parsed.layers()[0]).unwrap_err();
    assert!(
        matches!(err, Error::BlobMismatch { blob, .. } if blob == claimed),
        "{err:?}"
    );
    assert!(err.to_string().contains(&claimed.to_string()));

    // The matching layer reads, and a gzip layer is recognised as such.
    let good = tmp.path().join("good.tar");
    small_archive(&good, "./layer/layer.tar", &layer, Digest::of(&layer));
    let mut src = DockerArchiveSource::open(&good, None).unwrap();
    assert_eq!(read_all_layers(&mut src), vec![Digest::of(&layer)]);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &layer).unwrap();
    let gz = gz.finish().unwrap();
    let gzipped = tmp.path().join("gz.tar");
    small_archive(&gzipped, "layer/layer.tar", &gz, Digest::of(&layer));
    let mut src = DockerArchiveSource::open(&gzipped, None).unwrap();
    let image = resolve(&mut src, &Platform::default()).unwrap();
    assert_eq!(
        image.parsed.layers()[0].media_type().to_string(),
        cocoon_image::media::OCI_LAYER_GZIP
    );
    assert_eq!(
        image.parsed.layers()[0].digest().to_string(),
        Digest::of(&gz).to_string()
    );
    read_all_layers(&mut src);
    let store = tmp.path().join("store");
    flatten(&mut src, &image, &mut CasDir::new(&store).unwrap()).unwrap();

    // A gzip layer is named by nothing but its diff_id in an archive, so
    // flattening hashes it uncompressed: another tar under that diff_id is
    // refused.
    let other = tar_of(&[("hello", b"ho\n")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &other).unwrap();
    let swapped = tmp.path().join("swapped.tar");
    small_archive(
        &swapped,
        "layer/layer.tar",
        &gz.finish().unwrap(),
        Digest::of(&layer),
    );
    let mut src = DockerArchiveSource::open(&swapped, None).unwrap();
    assert!(!src.manifest_pins_layers());
    let image = resolve(&mut src, &Platform::default()).unwrap();
    let err = flatten(&mut src, &image, &mut CasDir::new(&store).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} is corrupt: its uncompressed content hashes to {}, but the config's diff_id is {}",
            image.parsed.layers()[0].digest(),
            Digest::of(&other),
            Digest::of(&layer)
        )
    );
}

#[test]
fn not_an_archive_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("x.tar");
    std::fs::write(&archive, b"this is not a tar file at all, just some text\n").unwrap();
    let err = DockerArchiveSource::open(&archive, None).err().unwrap();
    assert!(
        err.to_string().contains(&archive.display().to_string()),
        "{err}"
    );
    let err = DockerArchiveSource::open(&tmp.path().join("missing.tar"), None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing.tar"), "{err}");
}
