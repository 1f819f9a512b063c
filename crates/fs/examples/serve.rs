//! Seals a one-file image in-process and serves it through FUSE, for
//! `bench/fs.sh`: `serve FILE MOUNTPOINT` puts FILE at `/data/file` of a
//! sealed image (every path encrypted), mounts it at MOUNTPOINT, prints
//! `ready`, and unmounts when its standard input closes. `COCOON_CHUNK_SIZE`
//! sets the chunk size (default 128 KiB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: serve FILE MOUNTPOINT");
        std::process::exit(2);
    }
    let content = std::fs::read(&args[1]).expect("reading FILE");
    let src = tempfile::tempdir().expect("temp dir");
    let image = common::make_image(
        src.path(),
        &[
            common::Item::Dir("data", 0o755, 0, 0),
            common::Item::File("data/file", 0o644, 0, 0, &content),
        ],
    );
    drop(content);
    let chunk_size = std::env::var("COCOON_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cocoon_seal::manifest::DEFAULT_CHUNK_SIZE);
    let sealed = common::seal_with(&image, chunk_size);
    drop(src);
    let handle = cocoon_fs::mount(
        sealed.tree.clone(),
        std::path::Path::new(&args[2]),
        cocoon_fs::MountOptions::default(),
    )
    .expect("mounting");
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    handle.unmount().expect("unmounting");
}
