//! `cocoon verify-image IMAGE --pubkey FILE [--image-key FILE]`: check a
//! sealed image's signature and every chunk; with the key, decrypt and check
//! the whole tree against the workload digest.

use std::path::PathBuf;

use anyhow::Context;
use cocoon_image::ImageRef;
use cocoon_seal::convert::open_sealed;
use cocoon_seal::reader::SealedBlob;
use cocoon_seal::signing::OwnerPublicKey;
use cocoon_seal::ImageKey;
use serde_json::json;

use super::image_opts::ImageOpts;

/// Arguments of `cocoon verify-image`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sealed image.
    pub image: ImageRef,
    /// The owner's public key (KEY.pub from `cocoon keygen`).
    #[arg(long, value_name = "FILE")]
    pub pubkey: PathBuf,
    /// The image key: also decrypt and check every file.
    #[arg(long, value_name = "FILE")]
    pub image_key: Option<PathBuf>,
    /// With --image-key: write the verified tree into DIR (absent or empty).
    #[arg(long, value_name = "DIR", requires = "image_key")]
    pub extract: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon verify-image`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let owner = OwnerPublicKey::read(&args.pubkey)?;
    let key = args.image_key.as_deref().map(ImageKey::read).transpose()?;
    let mut src = args.opts.open(&args.image)?;
    let scratch = tempfile::Builder::new()
        .prefix("cocoon-verify-")
        .tempdir()
        .context("creating a scratch directory")?;
    let sealed = open_sealed(
        src.as_mut(),
        &args.opts.platform,
        &scratch.path().join("image"),
    )?;
    let verified = sealed.verify(&owner, key.as_ref())?;
    if let (Some(dir), Some(key)) = (&args.extract, &key) {
        let blob = SealedBlob::open(&sealed.blob_path, &sealed.seal.descriptor.blob.trailer)?;
        let unlocked = blob.unlock(key, &sealed.manifest)?;
        unlocked.extract(dir)?;
    }
    if args.json {
        let out = json!({
            "workload_digest": verified.workload_digest,
            "signer": verified.signer,
            "chunks": verified.chunks,
            "decrypted": verified.decrypted,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let depth = if verified.decrypted {
            ", tree decrypted and every file checked"
        } else {
            ""
        };
        println!(
            "OK {} signed by {}: {} chunks checked{depth}",
            verified.workload_digest, verified.signer, verified.chunks
        );
    }
    Ok(())
}
