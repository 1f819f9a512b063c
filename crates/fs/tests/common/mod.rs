//! Test support: seal an OCI image in-process (as `cocoon convert` does),
//! unlock it, extract the expected tree (as `cocoon verify-image --extract`
//! does), and mount it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cocoon_fs::{mount, MountHandle, MountOptions};
use cocoon_image::transport::{open_dest, open_source};
use cocoon_image::{Digest, ImageRef, Platform, TransportOptions};
use cocoon_seal::convert::{convert, open_sealed, ConvertRequest};
use cocoon_seal::manifest::DEFAULT_CHUNK_SIZE;
use cocoon_seal::reader::{SealedBlob, UnlockedTree};
use cocoon_seal::signing::OwnerKey;
use cocoon_seal::{ImageKey, WorkloadOptions};
use cocoon_testkit::snapshot::{differences, snapshot};

/// A sealed image, unlocked.
pub struct Sealed {
    /// Holds the sealed image and the blob (no plaintext of encrypted paths).
    pub work: tempfile::TempDir,
    /// The sealed blob the mount reads.
    pub blob: PathBuf,
    /// The unlocked tree.
    pub tree: Arc<UnlockedTree>,
}

/// Seals the image `image` (`oci:DIR:TAG`), every path encrypted.
pub fn seal(image: &str) -> Sealed {
    seal_with(image, DEFAULT_CHUNK_SIZE)
}

/// Seals `image` with chunks of `chunk_size` bytes, every path encrypted.
pub fn seal_with(image: &str, chunk_size: u32) -> Sealed {
    let work = tempfile::Builder::new()
        .prefix("cocoon-fs-test-")
        .tempdir()
        .unwrap();
    let launcher = b"not a launcher: the fs tests never run it".to_vec();
    let options = WorkloadOptions {
        encrypted: vec!["/".into()],
        secrets: vec![],
        shield: vec![],
        chunk_size,
        key_uri: None,
        launcher: Digest::of(&launcher),
    };
    let key = ImageKey::generate().unwrap();
    let signer = OwnerKey::generate().unwrap();
    let topts = TransportOptions::default();
    let src_ref: ImageRef = image.parse().unwrap();
    let dst_ref: ImageRef = format!("oci:{}:sealed", work.path().join("image").display())
        .parse()
        .unwrap();
    let scratch = work.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    {
        let mut src = open_source(&src_ref, &topts).unwrap();
        let mut dst = open_dest(&dst_ref, &topts).unwrap();
        let req = ConvertRequest {
            options,
            launcher: &launcher,
            key: &key,
            signer: &signer,
            scratch: &scratch,
            progress: &|_, _, _| {},
        };
        convert(src.as_mut(), &Platform::default(), dst.as_mut(), &req).unwrap();
    }
    std::fs::remove_dir_all(&scratch).unwrap();
    let mut sealed_src = open_source(&dst_ref, &topts).unwrap();
    let opened = open_sealed(
        sealed_src.as_mut(),
        &Platform::default(),
        &work.path().join("opened"),
    )
    .unwrap();
    let header = opened.seal.verify(&signer.public()).unwrap().blob.trailer;
    let tree = SealedBlob::open(&opened.blob_path, &header)
        .unwrap()
        .unlock(&key, &opened.manifest)
        .unwrap();
    Sealed {
        blob: opened.blob_path.clone(),
        work,
        tree: Arc::new(tree),
    }
}

impl Sealed {
    /// Writes the expected tree to `dest` (what `verify-image --extract` does).
    pub fn extract(&self, dest: &Path) {
        self.tree.extract(dest).unwrap();
    }

    /// Mounts the tree at a new directory in the work dir.
    pub fn mount(&self, opts: MountOptions) -> (PathBuf, MountHandle) {
        let mnt = self.work.path().join(format!("mnt-{}", rand_suffix()));
        std::fs::create_dir(&mnt).unwrap();
        let handle = mount(self.tree.clone(), &mnt, opts).unwrap();
        (mnt, handle)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Mount (or memory mode) options: usable by the app after it drops root,
/// `upper_limit_bytes` of writable room, no secrets.
pub fn mount_options(upper_limit_bytes: u64) -> MountOptions {
    MountOptions {
        allow_other: true,
        upper_limit_bytes,
        files: vec![],
        files_owner: (0, 0),
    }
}

/// Asserts that the trees at `want` and `got` look the same to programs
/// (paths, kinds, contents, owners, modes, mtimes, xattrs, hardlinks).
pub fn assert_same_tree(want: &Path, got: &Path) {
    let want = snapshot(want);
    let got = snapshot(got);
    let diff = differences(&want, &got);
    assert!(diff.is_empty(), "the trees differ:\n{}", diff.join("\n"));
    assert!(want.0.len() > 10, "suspiciously small tree");
}

/// A fixture image reference.
pub fn fixture_image(name: &str, tag: &str) -> String {
    format!("oci:{}:{tag}", cocoon_testkit::fixture(name).display())
}

/// One entry of a hand-made layer.
pub enum Item<'a> {
    /// Directory, mode, uid, gid.
    Dir(&'a str, u32, u64, u64),
    /// File, mode, uid, gid, content.
    File(&'a str, u32, u64, u64, &'a [u8]),
    /// Symlink and its target.
    Symlink(String, String),
}

/// Writes a one-layer OCI image of `items` at `dir`, tag `latest`.
pub fn make_image(dir: &Path, items: &[Item<'_>]) -> String {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match item {
            Item::Dir(path, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
            Item::File(path, mode, uid, gid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Item::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    cocoon_testkit::layout::write_image(dir, "latest", &[cocoon_testkit::layout::Layer::tar(tar)]);
    format!("oci:{}:latest", dir.display())
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
