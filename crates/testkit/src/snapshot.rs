//! Comparable snapshots of unpacked file trees, for tests that check two
//! unpackers (or an unpack and a sealed round trip) agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Path -> description of everything observable about it, plus the
/// hardlink groups (paths sharing an inode).
pub type Snapshot = (BTreeMap<String, String>, BTreeSet<Vec<String>>);

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

/// Snapshots the tree at `root`.
pub fn snapshot(root: &Path) -> Snapshot {
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

/// The first differences between two snapshots, as readable lines.
pub fn differences(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> =
        a.0.keys()
            .chain(b.0.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|p| a.0.get(*p) != b.0.get(*p))
            .take(10)
            .map(|p| format!("{p}:\n  left:  {:?}\n  right: {:?}", a.0.get(p), b.0.get(p)))
            .collect();
    if a.1 != b.1 {
        out.push(format!("hardlink groups differ: {:?} vs {:?}", a.1, b.1));
    }
    out
}
