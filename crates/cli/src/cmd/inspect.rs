//! `cocoon inspect IMAGE`: what a sealed image says about itself
//! (unverified; `verify-image` checks it).

use anyhow::Context;
use cocoon_image::ImageRef;
use cocoon_seal::convert::open_sealed;
use serde_json::json;

use super::image_opts::ImageOpts;

/// Arguments of `cocoon inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sealed image.
    pub image: ImageRef,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon inspect`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut src = args.opts.open(&args.image)?;
    let scratch = tempfile::Builder::new()
        .prefix("cocoon-inspect-")
        .tempdir()
        .context("creating a scratch directory")?;
    let sealed = open_sealed(src.as_mut(), &args.opts.platform, scratch.path())?;
    let m = &sealed.manifest;
    let d = &sealed.seal.descriptor;
    let blob_bytes = d.blob.size;
    if args.json {
        let out = json!({
            "workload_digest": d.workload,
            "signer": d.signer,
            "launcher_digest": m.launcher,
            "source": sealed.source,
            "config": m.config,
            "encrypted": m.seal.encrypted,
            "image_key": m.seal.key,
            "secrets": m.secrets,
            "shield": m.shield,
            "tree": m.tree,
            "chunk_size": m.seal.chunk_size,
            "sealed_blob_bytes": blob_bytes,
            "launcher_bytes": sealed.launcher_size,
            "image_bytes": sealed.image_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "workload digest  {}  (unverified: run verify-image)",
        d.workload
    );
    println!("signer           {}", d.signer);
    println!("launcher digest  {}", m.launcher);
    if let Some(s) = &sealed.source {
        println!("source           {s}");
    }
    println!(
        "entrypoint       {:?} cmd {:?}",
        m.config.entrypoint, m.config.cmd
    );
    println!(
        "encrypted paths  {}",
        if m.seal.encrypted.is_empty() {
            "(none)".into()
        } else {
            m.seal.encrypted.join(" ")
        }
    );
    println!("image key        {}", m.seal.key);
    for s in &m.secrets {
        let to = s
            .env
            .as_ref()
            .map(|e| format!("env {e}"))
            .or(s.path.as_ref().map(|p| format!("file {p}")));
        println!("secret           {} -> {}", s.uri, to.unwrap_or_default());
    }
    for p in &m.shield {
        println!("shield           {} -> {}", p.public, p.app);
    }
    println!(
        "tree             {} entries, {} bytes of files",
        m.tree.entries, m.tree.bytes
    );
    println!(
        "sizes            sealed blob {blob_bytes}, launcher {}, layers {}",
        sealed.launcher_size, sealed.image_bytes
    );
    Ok(())
}
