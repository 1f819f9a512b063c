//! `cocoon copy SRC DST`: copy an image between transports.

use cocoon_image::copy::copy_image;
use cocoon_image::transport::open_dest;
use cocoon_image::ImageRef;

use super::image_opts::ImageOpts;

/// Arguments of `cocoon copy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source image.
    pub src: ImageRef,
    /// Destination image.
    pub dst: ImageRef,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon copy`; prints the digest of the manifest copied.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut src = args.opts.open(&args.src)?;
    let mut dst = open_dest(&args.dst, &args.opts.transport())?;
    let digest = copy_image(src.as_mut(), dst.as_mut(), &args.opts.platform)?;
    println!("{digest}");
    Ok(())
}
