//! `cocoon unpack IMAGE DIR`: flatten an image's layers into a directory.

use std::path::PathBuf;

use anyhow::Context;
use cocoon_image::flatten::flatten;
use cocoon_image::store::PackStore;
use cocoon_image::transport::resolve;
use cocoon_image::ImageRef;

use super::image_opts::ImageOpts;

/// Arguments of `cocoon unpack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image.
    pub image: ImageRef,
    /// Where to write the tree; must be absent or empty.
    pub dir: PathBuf,
    #[command(flatten)]
    pub opts: ImageOpts,
}

/// Runs `cocoon unpack`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut src = args.opts.open(&args.image)?;
    let image = resolve(src.as_mut(), &args.opts.platform)?;
    // Contents go to a scratch store beside the target first, so that a
    // broken layer leaves no half-written tree behind.
    let parent = args
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".cocoon-unpack-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
    let mut store = PackStore::new(scratch.path()).context("creating the content store")?;
    let tree = flatten(src.as_mut(), &image, &mut store)?;
    tree.materialize(&args.dir, &store)?;
    Ok(())
}
