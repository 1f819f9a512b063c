//! `cocoon measure IMAGE`: the workload digest of an image, recomputable by
//! anyone from the original image without any key.

use std::io::Write;

use cocoon_image::ImageRef;

use super::image_opts::ImageOpts;
use super::workload_opts::WorkloadArgs;

/// Arguments of `cocoon measure`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The original image (oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG], docker://HOST/REPO[:TAG|@DIGEST]).
    pub image: ImageRef,
    /// Print the workload manifest (canonical JSON) instead of its digest.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon measure`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (options, _) = args.workload.options()?;
    let mut src = args.opts.open(&args.image)?;
    let manifest = cocoon_seal::measure::measure(src.as_mut(), &args.opts.platform, &options)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(&manifest.canonical_json()?)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", manifest.digest()?)?;
    }
    Ok(())
}
