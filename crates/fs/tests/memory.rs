//! Memory mode: real converted images unpacked into a `noswap` tmpfs (run
//! as root, as CI does), checked against the FUSE mount of the same tree.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cocoon_fs::MountOptions;
use common::{assert_same_tree, fixture_image, make_image, pattern, seal, Item};
use zeroize::Zeroizing;

fn opts() -> MountOptions {
    common::mount_options(8 << 20)
}

/// The mount options of the mount at `dir`, if one is there.
fn mount_options(dir: &Path) -> Option<(String, String)> {
    let dir = fs::canonicalize(dir).ok()?.display().to_string();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f[4] == dir).then(|| (f[sep + 1].to_string(), f[sep + 3].to_string()))
    })
}

fn fresh_dir(sealed: &common::Sealed, name: &str) -> PathBuf {
    let dir = sealed.work.path().join(name);
    fs::create_dir(&dir).unwrap();
    dir
}

fn unmount(dir: &Path) {
    let ok = std::process::Command::new("umount")
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "umount {}", dir.display());
}

fn same_as_fuse(image: &str) {
    let sealed = seal(image);
    let mem = fresh_dir(&sealed, "memory");
    cocoon_fs::unpack_in_memory(&sealed.tree, &mem, opts()).unwrap();
    let (fuse, handle) = sealed.mount(opts());
    assert_same_tree(&fuse, &mem);
    handle.unmount().unwrap();
    // A tmpfs that never swaps: no plaintext can reach a swap device.
    let (fstype, options) = mount_options(&mem).expect("memory mode mounted nothing");
    assert_eq!(fstype, "tmpfs");
    assert!(options.split(',').any(|o| o == "noswap"), "{options}");
    unmount(&mem);
}

#[test]
fn busybox_in_memory_is_the_fuse_tree() {
    // Hardlinks, a device node, a FIFO, symlinks, setgid and sticky
    // directories, fixed mtimes.
    same_as_fuse(&fixture_image("busybox", "latest"));
}

#[test]
fn debian_nginx_in_memory_is_the_fuse_tree() {
    same_as_fuse(&fixture_image("debian", "nginx"));
}

#[test]
fn secrets_and_the_writable_room() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let mem = fresh_dir(&sealed, "memory");
    let mut o = opts();
    o.files = vec![
        (
            "/run/secrets/db/password".into(),
            Zeroizing::new(b"hunter2".to_vec()),
        ),
        ("/etc/motd".into(), Zeroizing::new(b"replaced".to_vec())),
    ];
    o.files_owner = (1000, 1000);
    o.upper_limit_bytes = 1 << 20;
    cocoon_fs::unpack_in_memory(&sealed.tree, &mem, o).unwrap();
    let m = fs::metadata(mem.join("run/secrets/db/password")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o400, 1000, 1000));
    let d = fs::metadata(mem.join("run/secrets")).unwrap();
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o755, 0));
    assert_eq!(
        fs::read(mem.join("run/secrets/db/password")).unwrap(),
        b"hunter2"
    );
    assert_eq!(fs::read(mem.join("etc/motd")).unwrap(), b"replaced");
    // Writable anywhere, up to the limit: ENOSPC past it, room again after
    // a delete.
    fs::write(mem.join("etc/new-config"), b"written").unwrap();
    let mut f = fs::File::create(mem.join("tmp/big")).unwrap();
    let e = f.write_all(&vec![7u8; 2 << 20]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    drop(f);
    fs::remove_file(mem.join("tmp/big")).unwrap();
    fs::write(mem.join("tmp/small"), vec![1u8; 512 << 10]).unwrap();
    unmount(&mem);
}

#[test]
fn bad_secret_paths_are_refused_and_nothing_stays_mounted() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    for (path, want) in [
        (
            "/etc/../x",
            "not a normalised absolute path (/a/b, no . or ..)",
        ),
        ("/etc/motd/x", "motd is not a directory"),
        ("/etc", "a directory is there"),
    ] {
        let mem = fresh_dir(&sealed, &format!("memory-{}", path.len()));
        let mut o = opts();
        o.files = vec![(path.into(), Zeroizing::new(b"s".to_vec()))];
        let err = cocoon_fs::unpack_in_memory(&sealed.tree, &mem, o).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unpacking the sealed tree into memory at {}: cannot place the in-memory file {path}: {want}",
                mem.display()
            )
        );
        assert_eq!(mount_options(&mem), None, "{path}: left mounted");
        assert_eq!(fs::read_dir(&mem).unwrap().count(), 0);
    }
}

#[test]
fn a_tampered_chunk_stops_the_unpack_and_nothing_stays_mounted() {
    let src = tempfile::tempdir().unwrap();
    let content = pattern(3 * 128 * 1024 + 12345, 7);
    let image = make_image(
        src.path(),
        &[
            Item::Dir("data", 0o755, 0, 0),
            Item::File("data/big.bin", 0o644, 0, 0, &content),
        ],
    );
    let sealed = seal(&image);
    let mem = fresh_dir(&sealed, "memory");
    cocoon_fs::unpack_in_memory(&sealed.tree, &mem, opts()).unwrap();
    assert_eq!(fs::read(mem.join("data/big.bin")).unwrap(), content);
    unmount(&mem);

    let raw = fs::read(&sealed.blob).unwrap();
    let trailer = cocoon_image::Digest::of(&raw[raw.len() - cocoon_seal::format::TRAILER_LEN..]);
    let chunk1 = cocoon_seal::reader::SealedBlob::open(&sealed.blob, &trailer)
        .unwrap()
        .chunks()[1];
    let mut bytes = raw;
    bytes[chunk1.offset as usize + 40] ^= 1;
    fs::write(&sealed.blob, &bytes).unwrap();
    let err = cocoon_fs::unpack_in_memory(&sealed.tree, &mem, opts())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "unpacking the sealed tree into memory at {}: ",
            mem.display()
        )) && err.contains("data/big.bin")
            && err.contains("chunk 1"),
        "{err}"
    );
    assert_eq!(mount_options(&mem), None, "left mounted after {err}");
    assert_eq!(fs::read_dir(&mem).unwrap().count(), 0);
}

#[test]
fn long_symlinks_are_counted_in_the_tmpfs_size() {
    // 7000 symlinks with 200-byte targets take a page each in tmpfs: 28 MB,
    // more than the slack and the writable room together.
    let src = tempfile::tempdir().unwrap();
    let target = format!("/{}", "t".repeat(199));
    let mut items = vec![Item::Dir("links", 0o755, 0, 0)];
    items.extend((0..7000).map(|i| Item::Symlink(format!("links/{i}"), target.clone())));
    let sealed = seal(&make_image(src.path(), &items));
    let mem = fresh_dir(&sealed, "memory");
    cocoon_fs::unpack_in_memory(&sealed.tree, &mem, opts()).unwrap();
    assert_eq!(
        fs::read_link(mem.join("links/6999")).unwrap(),
        Path::new(&target)
    );
    unmount(&mem);
}
