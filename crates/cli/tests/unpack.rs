//! `cocoon unpack` yields the same file tree as `umoci unpack` of the same
//! image: contents, types, modes, owners, link targets, hardlinks, xattrs,
//! device numbers and mtimes.

use std::process::Command;

use cocoon_testkit::fixture;
use cocoon_testkit::snapshot::{differences, snapshot};

fn assert_same_as_umoci(layout: &str, tag: &str) {
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours");
    let image = format!("oci:{}:{tag}", fixture(layout).display());
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["unpack", &image])
        .arg(&ours)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cocoon unpack {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // umoci takes a lock in the layout, so give it its own copy.
    let copy = work.path().join("layout");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(fixture(layout))
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let bundle = work.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", copy.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let theirs = snapshot(&bundle.join("rootfs"));
    let mine = snapshot(&ours);
    let diff = differences(&theirs, &mine);
    assert!(
        diff.is_empty(),
        "{layout}:{tag} differs from umoci (left) :\n{}",
        diff.join("\n")
    );
    assert!(theirs.0.len() > 10);
}

#[test]
fn busybox_with_edge_cases_matches_umoci() {
    assert_same_as_umoci("busybox", "latest");
}

#[test]
fn zstd_layers_match_umoci_of_the_gzip_original() {
    // umoci 0.4 cannot read zstd layers, so compare against the gzip original.
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let b = work.path().join("b");
    for (image, dir) in [
        (
            format!("oci:{}:latest", fixture("busybox-zstd").display()),
            &a,
        ),
        (format!("oci:{}:latest", fixture("busybox").display()), &b),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
            .args(["unpack", &image])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[test]
fn debian_images_match_umoci() {
    for tag in ["nginx", "redis", "python"] {
        assert_same_as_umoci("debian", tag);
    }
}
