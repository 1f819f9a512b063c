//! `cocoon convert SRC DST --sign KEY`: seal an existing image.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use cocoon_image::transport::open_dest;
use cocoon_image::ImageRef;
use cocoon_seal::convert::{convert, ConvertRequest};
use cocoon_seal::signing::OwnerKey;
use cocoon_seal::ImageKey;
use serde_json::json;

use super::image_opts::ImageOpts;
use super::workload_opts::WorkloadArgs;

/// Arguments of `cocoon convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image to seal.
    pub src: ImageRef,
    /// Where to write the sealed image.
    pub dst: ImageRef,
    /// The owner's signing key (from `cocoon keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: PathBuf,
    /// Write the KBS reference values (workload digest, launcher digest, signer, resources) to FILE.
    #[arg(long, value_name = "FILE")]
    pub reference_values: Option<PathBuf>,
    /// Write the new image key to FILE (mode 0600), to register with the KBS.
    #[arg(long, value_name = "FILE", conflicts_with = "image_key")]
    pub image_key_out: Option<PathBuf>,
    /// Seal with an existing image key instead of a new one.
    #[arg(long, value_name = "FILE")]
    pub image_key: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon convert`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.image_key.is_none() && args.image_key_out.is_none() {
        anyhow::bail!(
            "a new image key would be lost: pass --image-key-out FILE to keep it (for the KBS), or --image-key FILE"
        );
    }
    let signer = OwnerKey::read(&args.sign)?;
    let key = match &args.image_key {
        Some(p) => ImageKey::read(p)?,
        None => ImageKey::generate()?,
    };
    let (options, launcher) = args.workload.options()?;
    let mut src = args.opts.open(&args.src)?;
    let mut dst = open_dest(&args.dst, &args.opts.transport())?;
    let scratch = tempfile::Builder::new()
        .prefix("cocoon-convert-")
        .tempdir()
        .context("creating a scratch directory")?;

    let bar = (!args.quiet && !args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>8} [{bar:40}] {bytes}/{total_bytes} {elapsed}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let progress = |stage: &str, done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_message(stage.to_string());
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let request = ConvertRequest {
        options,
        launcher: &launcher,
        key: &key,
        signer: &signer,
        scratch: scratch.path(),
        progress: &progress,
    };
    let converted = convert(src.as_mut(), &args.opts.platform, dst.as_mut(), &request)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &args.image_key_out {
        key.write(path)?;
    }
    let m = &converted.manifest;
    let mut resources = vec![m.seal.key.clone()];
    resources.extend(m.secrets.iter().map(|s| s.uri.clone()));
    // Exactly what `cocoon kbs reference-values add` reads.
    let reference = cocoon_kbs::reference::ReferenceValues {
        workload_digest: converted.workload_digest.to_string(),
        launcher_digest: m.launcher.to_string(),
        signer: converted.signer.to_string(),
        resources,
    };
    if let Some(path) = &args.reference_values {
        let mut text = serde_json::to_vec_pretty(&reference)?;
        text.push(b'\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let ratio = converted.sealed_bytes as f64 / converted.source_bytes.max(1) as f64;
    if args.json {
        let out = json!({
            "image": args.dst.to_string(),
            "image_digest": converted.image_digest,
            "source": args.src.to_string(),
            "source_digest": converted.source_digest,
            "workload_digest": converted.workload_digest,
            "signer": converted.signer,
            "launcher_digest": m.launcher,
            "image_key": m.seal.key,
            "chunks": converted.seal.chunks,
            "encrypted_chunks": converted.seal.encrypted_chunks,
            "source_bytes": converted.source_bytes,
            "sealed_bytes": converted.sealed_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !args.quiet {
        println!("sealed {} -> {}", args.src, args.dst);
        println!("  workload digest  {}", converted.workload_digest);
        println!("  image digest     {}", converted.image_digest);
        println!("  signer           {}", converted.signer);
        println!("  image key        {}", m.seal.key);
        println!(
            "  chunks           {} ({} encrypted)",
            converted.seal.chunks, converted.seal.encrypted_chunks
        );
        println!(
            "  size             {} bytes of layers (source {}, {ratio:.2}x)",
            converted.sealed_bytes, converted.source_bytes
        );
    }
    Ok(())
}
