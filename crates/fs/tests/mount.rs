//! Mounts real converted images through /dev/fuse (run as root, as CI does)
//! and checks what programs see.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;

use cocoon_fs::MountOptions;
use common::{assert_same_tree, fixture_image, make_image, pattern, run, seal, Item};
use zeroize::Zeroizing;

fn opts() -> MountOptions {
    common::mount_options(64 << 20)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn compare_with_extract(image: &str) {
    let sealed = seal(image);
    let expected = sealed.work.path().join("expected");
    sealed.extract(&expected);
    let (mnt, handle) = sealed.mount(opts());
    assert_same_tree(&expected, &mnt);
    handle.unmount().unwrap();
}

#[test]
fn busybox_tree_is_the_extracted_tree() {
    compare_with_extract(&fixture_image("busybox", "latest"));
}

#[test]
fn debian_nginx_tree_is_the_extracted_tree() {
    compare_with_extract(&fixture_image("debian", "nginx"));
}

#[test]
fn metadata_hardlinks_devices_and_symlinks() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let (mnt, handle) = sealed.mount(opts());
    let a = fs::metadata(mnt.join("usr/share/cocoon/link-in-l2")).unwrap();
    let b = fs::metadata(mnt.join("usr/share/cocoon/link-target.txt")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    let dev = fs::symlink_metadata(mnt.join("dev/testnull")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(fs::symlink_metadata(mnt.join("srv/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::read_link(mnt.join("usr/share/cocoon/abs-link")).unwrap(),
        std::path::Path::new("/etc/motd")
    );
    let shared = fs::metadata(mnt.join("srv/shared")).unwrap();
    assert_eq!(shared.mode() & 0o7777, 0o2775);
    assert_eq!(shared.gid(), 1000);
    let tmp = fs::metadata(mnt.join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert_eq!(
        fs::metadata(mnt.join("etc/fixed-mtime")).unwrap().mtime(),
        981158400
    );
    // Inode numbers are stable across mounts of one image.
    let (mnt2, handle2) = sealed.mount(opts());
    assert_eq!(
        fs::metadata(mnt2.join("etc/passwd")).unwrap().ino(),
        fs::metadata(mnt.join("etc/passwd")).unwrap().ino()
    );
    handle2.unmount().unwrap();
    handle.unmount().unwrap();
}

#[test]
fn busybox_runs_from_the_mount() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let (mnt, handle) = sealed.mount(opts());
    let (ok, out, err) = run(Command::new("chroot").arg(&mnt).args([
        "/bin/busybox",
        "sh",
        "-c",
        "echo x > /tmp/f && cat /tmp/f && ls /etc && mkdir -p /var/log/app && echo line >> /var/log/app/log \
         && echo line2 >> /var/log/app/log && wc -l < /var/log/app/log && mv /tmp/f /etc/motd && cat /etc/motd \
         && rm /etc/passwd && ls /etc && ln -s /etc/motd /tmp/l && cat /tmp/l && mkfifo /tmp/p && test -p /tmp/p \
         && echo 12345 > /tmp/pid && cp /bin/busybox /tmp/busybox && /tmp/busybox echo copied-binary-runs",
    ]));
    assert!(ok, "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "x");
    assert!(lines.contains(&"passwd"), "{out}");
    assert!(lines.contains(&"2"), "{out}");
    assert!(out.contains("copied-binary-runs"), "{out}");
    // The second `ls /etc` lost passwd; motd now holds "x".
    assert_eq!(fs::read_to_string(mnt.join("etc/motd")).unwrap(), "x\n");
    assert!(!mnt.join("etc/passwd").exists());
    handle.unmount().unwrap();
}

#[test]
fn write_rename_unlink_flows() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let (mnt, handle) = sealed.mount(opts());
    let motd = fs::read(mnt.join("etc/motd")).unwrap();

    // Copy-up by a partial write keeps the rest of the lower content.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("etc/motd"))
        .unwrap();
    f.write_all(b"H").unwrap();
    drop(f);
    let mut want = motd.clone();
    want[0] = b'H';
    assert_eq!(fs::read(mnt.join("etc/motd")).unwrap(), want);

    // O_APPEND and O_TRUNC.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("etc/group"))
        .unwrap();
    f.write_all(b"extra:x:5:\n").unwrap();
    drop(f);
    assert!(fs::read_to_string(mnt.join("etc/group"))
        .unwrap()
        .ends_with("extra:x:5:\n"));
    fs::write(mnt.join("etc/group"), b"short").unwrap();
    assert_eq!(fs::read(mnt.join("etc/group")).unwrap(), b"short");

    // Rename over an existing lower file, and rename of a directory.
    fs::write(mnt.join("tmp/new"), b"new content").unwrap();
    fs::rename(mnt.join("tmp/new"), mnt.join("etc/passwd")).unwrap();
    assert_eq!(fs::read(mnt.join("etc/passwd")).unwrap(), b"new content");
    assert!(!mnt.join("tmp/new").exists());
    fs::rename(mnt.join("srv/opaque"), mnt.join("tmp/moved")).unwrap();
    assert!(!mnt.join("srv/opaque").exists());
    assert_eq!(fs::read(mnt.join("tmp/moved/fresh.txt")).unwrap().len(), 6);
    fs::create_dir(mnt.join("tmp/moved/sub")).unwrap();
    fs::write(mnt.join("tmp/moved/sub/f"), b"1").unwrap();

    // rmdir refuses a non-empty directory; unlink of a lower file sticks.
    let e = fs::remove_dir(mnt.join("tmp/moved")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOTEMPTY);
    fs::remove_file(mnt.join("etc/delete-me")).ok();
    fs::remove_file(mnt.join("etc/fixed-mtime")).unwrap();
    assert!(!fs::read_dir(mnt.join("etc"))
        .unwrap()
        .any(|e| e.unwrap().file_name() == "fixed-mtime"));
    fs::remove_dir_all(mnt.join("tmp/moved")).unwrap();

    // A directory lists lower and upper entries together.
    fs::write(mnt.join("etc/added"), b"1").unwrap();
    let mut names: Vec<String> = fs::read_dir(mnt.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"added".to_string()) && names.contains(&"motd".to_string()));

    // Hardlinks, truncate, chmod, chown, utimens.
    fs::hard_link(mnt.join("etc/motd"), mnt.join("tmp/motd-link")).unwrap();
    assert_eq!(fs::metadata(mnt.join("etc/motd")).unwrap().nlink(), 2);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("tmp/motd-link"))
        .unwrap();
    f.set_len(2).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read(mnt.join("etc/motd")).unwrap(), &want[..2]);
    // (chown clears setuid, as on any file system: chmod after it.)
    std::os::unix::fs::chown(mnt.join("etc/motd"), Some(1000), Some(1001)).unwrap();
    fs::set_permissions(mnt.join("etc/motd"), fs::Permissions::from_mode(0o4711)).unwrap();
    let m = fs::metadata(mnt.join("tmp/motd-link")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4711, 1000, 1001));
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    fs::File::options()
        .write(true)
        .open(mnt.join("etc/motd"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(
        fs::metadata(mnt.join("etc/motd")).unwrap().mtime(),
        1_234_567_890
    );

    // Sparse writes and reads past the end.
    let mut f = fs::File::create(mnt.join("tmp/sparse")).unwrap();
    f.seek(SeekFrom::Start(100_000)).unwrap();
    f.write_all(b"end").unwrap();
    drop(f);
    let data = fs::read(mnt.join("tmp/sparse")).unwrap();
    assert_eq!(data.len(), 100_003);
    assert!(data[..100_000].iter().all(|&b| b == 0));

    // xattrs on upper entries.
    xattr_roundtrip(&mnt.join("tmp/sparse"));

    // An unlinked file stays usable through an open descriptor.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(mnt.join("tmp/anon"))
        .unwrap();
    fs::remove_file(mnt.join("tmp/anon")).unwrap();
    f.write_all(b"still here").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    handle.unmount().unwrap();
}

fn xattr_roundtrip(path: &std::path::Path) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"user.cocoon";
    // SAFETY: valid strings and buffer for the calls.
    let rc = unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"v1".as_ptr().cast(), 2, 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let mut buf = [0u8; 16];
    // SAFETY: as above.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n as usize], b"v1");
}

#[test]
fn permissions_are_checked_for_other_users() {
    let src = tempfile::tempdir().unwrap();
    let image = make_image(
        src.path(),
        &[
            Item::Dir("data", 0o755, 0, 0),
            Item::File("data/private", 0o600, 0, 0, b"root only"),
            Item::File("data/public", 0o644, 0, 0, b"anyone"),
            Item::File("data/mine", 0o600, 1000, 1000, b"app's own"),
            Item::Dir("data/locked", 0o700, 0, 0),
        ],
    );
    let sealed = seal(&image);
    let (mnt, handle) = sealed.mount(opts());
    let as_app = |args: &[&str]| {
        run(Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "--"])
            .args(args))
    };
    let p = |rel: &str| mnt.join(rel).display().to_string();
    let (ok, _, err) = as_app(&["cat", &p("data/private")]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, out, _) = as_app(&["cat", &p("data/public")]);
    assert!(ok && out == "anyone");
    let (ok, out, _) = as_app(&["cat", &p("data/mine")]);
    assert!(ok && out == "app's own");
    let (ok, _, err) = as_app(&["ls", &p("data/locked")]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, _, err) = as_app(&["touch", &p("data/new")]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    // Root reads everything.
    assert_eq!(fs::read(mnt.join("data/private")).unwrap(), b"root only");
    handle.unmount().unwrap();
}

#[test]
fn secrets_are_in_memory_files() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let mut o = opts();
    o.files = vec![
        (
            "/run/secrets/db/password".into(),
            Zeroizing::new(b"hunter2".to_vec()),
        ),
        ("/etc/motd".into(), Zeroizing::new(b"replaced".to_vec())),
    ];
    o.files_owner = (1000, 1000);
    let (mnt, handle) = sealed.mount(o);
    let m = fs::metadata(mnt.join("run/secrets/db/password")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o400, 1000, 1000));
    assert_eq!(
        fs::metadata(mnt.join("run/secrets")).unwrap().mode() & 0o7777,
        0o755
    );
    let p = mnt.join("run/secrets/db/password").display().to_string();
    let (ok, out, _) = run(Command::new("setpriv").args([
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        "cat",
        &p,
    ]));
    assert!(ok && out == "hunter2");
    let (ok, _, err) = run(Command::new("setpriv").args([
        "--reuid=1001",
        "--regid=1001",
        "--clear-groups",
        "cat",
        &p,
    ]));
    assert!(!ok && err.contains("Permission denied"), "{err}");
    assert_eq!(fs::read(mnt.join("etc/motd")).unwrap(), b"replaced");
    // Even root cannot change a secret: neither by writing (opening needs
    // no server, so the write is what fails) nor by truncating.
    let e = fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| f.write_all(b"x"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    let e = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    assert_eq!(fs::read(&p).unwrap(), b"hunter2");
    handle.unmount().unwrap();
}

#[test]
fn bad_secret_paths_are_refused() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    for (path, want) in [
        (
            "relative",
            "not a normalised absolute path (/a/b, no . or ..)",
        ),
        (
            "/etc/../x",
            "not a normalised absolute path (/a/b, no . or ..)",
        ),
        ("/etc/motd/x", "motd is not a directory"),
        ("/etc", "a directory is there"),
    ] {
        let mnt = sealed.work.path().join("never-mounted");
        fs::create_dir_all(&mnt).unwrap();
        let mut o = opts();
        o.files = vec![(path.into(), Zeroizing::new(b"s".to_vec()))];
        let err = cocoon_fs::mount(sealed.tree.clone(), &mnt, o).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot place the in-memory file {path}: {want}")
        );
    }
}

#[test]
fn the_upper_limit_gives_enospc() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let mut o = opts();
    o.upper_limit_bytes = 1 << 20;
    let (mnt, handle) = sealed.mount(o);
    let mut f = fs::File::create(mnt.join("tmp/big")).unwrap();
    let e = f.write_all(&vec![7u8; 2 << 20]).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    drop(f);
    // Deleting it gives the space back.
    fs::remove_file(mnt.join("tmp/big")).unwrap();
    fs::write(mnt.join("tmp/small"), vec![1u8; 512 << 10]).unwrap();
    handle.unmount().unwrap();
}

/// A sealed image with one multi-chunk file of known content.
fn big_file_image(marker: &[u8]) -> (common::Sealed, Vec<u8>) {
    let src = tempfile::tempdir().unwrap();
    let mut content = pattern(3 * 128 * 1024 + 12345, 42);
    content[1000..1000 + marker.len()].copy_from_slice(marker);
    let image = make_image(
        src.path(),
        &[
            Item::Dir("data", 0o755, 0, 0),
            Item::File("data/big.bin", 0o644, 0, 0, &content),
            Item::Dir("tmp", 0o1777, 0, 0),
        ],
    );
    let sealed = seal(&image);
    drop(src);
    (sealed, content)
}

#[test]
fn read_ranges_across_chunks() {
    let (sealed, content) = big_file_image(b"range-marker");
    let (mnt, handle) = sealed.mount(opts());
    let mut f = fs::File::open(mnt.join("data/big.bin")).unwrap();
    let len = content.len() as u64;
    for (off, n) in [
        (0u64, 1usize),
        (131_071, 2),
        (131_072, 131_072),
        (100_000, 300_000),
        (len - 5, 100),
        (len, 10),
        (len + 100, 10),
    ] {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut buf = vec![0u8; n];
        let mut got = 0;
        loop {
            let r = f.read(&mut buf[got..]).unwrap();
            if r == 0 {
                break;
            }
            got += r;
        }
        let start = (off as usize).min(content.len());
        let end = (start + n).min(content.len());
        assert_eq!(&buf[..got], &content[start..end], "range {off}+{n}");
    }
    assert_eq!(fs::read(mnt.join("data/big.bin")).unwrap(), content);
    handle.unmount().unwrap();
}

#[test]
fn a_chunk_tampered_after_mount_is_an_io_error() {
    let (sealed, content) = big_file_image(b"tamper-marker");
    let (mnt, handle) = sealed.mount(opts());
    // Warm the page cache, then flip a byte of chunk 1 in the blob.
    assert_eq!(fs::read(mnt.join("data/big.bin")).unwrap(), content);
    let chunk1 = {
        let blob = cocoon_seal::reader::SealedBlob::open(&sealed.blob, &trailer_of(&sealed));
        blob.unwrap().chunks()[1]
    };
    let mut bytes = fs::read(&sealed.blob).unwrap();
    bytes[chunk1.offset as usize + 40] ^= 1;
    fs::write(&sealed.blob, &bytes).unwrap();

    // Direct I/O bypasses the page cache: chunk 1 fails, chunk 0 still reads.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(mnt.join("data/big.bin"))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &content[..4096]);
    let chunk_size = u64::from(cocoon_seal::manifest::DEFAULT_CHUNK_SIZE);
    f.seek(SeekFrom::Start(chunk_size + 4096)).unwrap();
    let e = f.read(&mut buf).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);

    // So does a cached read once the cache is dropped; never wrong bytes.
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let e = fs::read(mnt.join("data/big.bin")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    // A copy-up of the tampered file fails too, and leaves it unchanged.
    let e = fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("data/big.bin"))
        .and_then(|mut f| f.write_all(b"x"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    handle.unmount().unwrap();
}

fn trailer_of(sealed: &common::Sealed) -> cocoon_image::Digest {
    let raw = fs::read(&sealed.blob).unwrap();
    cocoon_image::Digest::of(&raw[raw.len() - cocoon_seal::format::TRAILER_LEN..])
}

#[test]
fn no_plaintext_reaches_the_disk() {
    let (sealed, content) = big_file_image(b"SEALED-PLAINTEXT-7d1c");
    let (mnt, handle) = sealed.mount(opts());
    assert_eq!(fs::read(mnt.join("data/big.bin")).unwrap(), content);
    fs::write(mnt.join("tmp/app-output"), b"APP-WROTE-THIS-93ae").unwrap();
    fs::copy(mnt.join("data/big.bin"), mnt.join("tmp/copy.bin")).unwrap();
    assert!(fs::read(mnt.join("tmp/copy.bin")).unwrap() == content);
    handle.unmount().unwrap();
    let mut hits = vec![];
    grep(
        sealed.work.path(),
        &[b"SEALED-PLAINTEXT-7d1c", b"APP-WROTE-THIS-93ae"],
        &mut hits,
    );
    assert!(hits.is_empty(), "plaintext found on disk in {hits:?}");
}

fn grep(dir: &std::path::Path, needles: &[&[u8]], hits: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            grep(&e.path(), needles, hits);
        } else if t.is_file() {
            let data = fs::read(e.path()).unwrap();
            for n in needles {
                if data.windows(n.len()).any(|w| w == *n) {
                    hits.push(e.path().display().to_string());
                }
            }
        }
    }
}

#[test]
fn unmount_detaches_and_drop_does_too() {
    let sealed = seal(&fixture_image("busybox", "latest"));
    let (mnt, handle) = sealed.mount(opts());
    assert!(mnt.join("etc/passwd").exists());
    handle.unmount().unwrap();
    assert!(!mnt.join("etc/passwd").exists());
    let (mnt, handle) = sealed.mount(opts());
    drop(handle);
    assert!(!mnt.join("etc/passwd").exists());
}
