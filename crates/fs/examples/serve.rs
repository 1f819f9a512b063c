//! Seals a one-file image in-process and serves it through FUSE, for
//! `bench/fs.sh`: `serve FILE MOUNTPOINT` puts FILE at `/data/file` of a
//! sealed image (every path encrypted), mounts it at MOUNTPOINT, prints
//! `ready`, and unmounts when its standard input closes. A line `drop` on
//! standard input empties the server's chunk cache (answered `dropped`), for
//! cold-cache measurements. `COCOON_CHUNK_SIZE` sets the chunk size (default
//! `DEFAULT_CHUNK_SIZE`); `COCOON_CHUNK_CACHE_MIB`, `COCOON_PREFETCH_THREADS` and
//! `COCOON_FUSE_THREADS` override `ReadOptions::default()`;
//! `COCOON_ALLOW_OTHER` (any value) lets other uids read the mount.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, Write};

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
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut read = cocoon_fs::ReadOptions::default();
    if let Some(mib) = env("COCOON_CHUNK_CACHE_MIB") {
        read.chunk_cache_bytes = mib << 20;
    }
    if let Some(n) = env("COCOON_PREFETCH_THREADS") {
        read.prefetch_threads = n as usize;
    }
    if let Some(n) = env("COCOON_FUSE_THREADS") {
        read.fuse_threads = n as usize;
    }
    let handle = cocoon_fs::mount_with(
        sealed.tree.clone(),
        std::path::Path::new(&args[2]),
        cocoon_fs::MountOptions {
            allow_other: std::env::var_os("COCOON_ALLOW_OTHER").is_some(),
            ..Default::default()
        },
        read,
    )
    .expect("mounting");
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "drop" => {
                handle.drop_chunk_cache();
                println!("dropped");
                let _ = std::io::stdout().flush();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    handle.unmount().expect("unmounting");
}
