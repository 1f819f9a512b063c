//! `cocoon unpack` yields the same file tree as `umoci unpack` of the same
//! image: contents, types, modes, owners, link targets, hardlinks, xattrs,
//! device numbers and mtimes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use cocoon_testkit::fixture;
use sha2::{Digest, Sha256};

/// Everything observable about one path, as a comparable string.
fn describe(root: &Path, rel: &Path, meta: &fs::Metadata) -> String {
    let path = root.join(rel);
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir".to_string()
    } else if ft.is_symlink() {
        format!("symlink -> {}", fs::read_link(&path).unwrap().display())
    } else if ft.is_file() {
        format!(
            "file {} {}",
            meta.len(),
            hex::encode(Sha256::digest(fs::read(&path).unwrap()))
        )
    } else if ft.is_char_device() || ft.is_block_device() {
        format!(
            "dev {} {:x}",
            if ft.is_char_device() { "c" } else { "b" },
            meta.rdev()
        )
    } else if ft.is_fifo() {
        "fifo".to_string()
    } else {
        "other".to_string()
    };
    let mut xattrs: Vec<String> = xattr::list(&path)
        .unwrap()
        .map(|n| {
            let v = xattr::get(&path, &n).unwrap().unwrap_or_default();
            format!("{}={}", n.to_string_lossy(), hex::encode(v))
        })
        .collect();
    xattrs.sort();
    // Directory mtimes are not compared: they depend on the order in which an
    // unpacker creates children (and the workload digest leaves them out).
    let mtime = if ft.is_dir() {
        String::new()
    } else {
        meta.mtime().to_string()
    };
    let mode = if ft.is_symlink() {
        0
    } else {
        meta.mode() & 0o7777
    };
    format!(
        "{kind} mode={mode:o} {}:{} mtime={mtime} xattrs=[{}]",
        meta.uid(),
        meta.gid(),
        xattrs.join(",")
    )
}

/// Path -> description, plus the hardlink groups (paths sharing an inode).
fn snapshot(root: &Path) -> (BTreeMap<String, String>, BTreeSet<Vec<String>>) {
    let mut entries = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let meta = fs::symlink_metadata(root.join(&rel)).unwrap();
        let name = format!("/{}", rel.display());
        entries.insert(name.clone(), describe(root, &rel, &meta));
        if meta.is_dir() {
            for child in fs::read_dir(root.join(&rel)).unwrap() {
                stack.push(rel.join(child.unwrap().file_name()));
            }
        } else if meta.is_file() && meta.nlink() > 1 {
            inodes.entry(meta.ino()).or_default().push(name);
        }
    }
    let groups = inodes
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    (entries, groups)
}

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

    let (theirs, their_links) = snapshot(&bundle.join("rootfs"));
    let (mine, my_links) = snapshot(&ours);
    let differences: Vec<String> = theirs
        .keys()
        .chain(mine.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|p| theirs.get(*p) != mine.get(*p))
        .take(10)
        .map(|p| {
            format!(
                "{p}:\n  umoci:  {:?}\n  cocoon: {:?}",
                theirs.get(p),
                mine.get(p)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{layout}:{tag} differs from umoci:\n{}",
        differences.join("\n")
    );
    assert_eq!(my_links, their_links, "hardlink groups differ");
    assert!(theirs.len() > 10);
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
