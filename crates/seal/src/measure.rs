//! Measuring an image: the workload manifest and digest, without any key.

use cocoon_image::flatten::flatten;
use cocoon_image::store::HashOnly;
use cocoon_image::transport::resolve;
use cocoon_image::{ImageSource, Platform};

use crate::manifest::WorkloadManifest;

/// Errors while measuring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or flattening the image failed.
    #[error(transparent)]
    Image(#[from] cocoon_image::Error),
    /// Building the manifest failed.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),
}

/// Reads the `platform` image from `src`, flattens it and returns its
/// workload manifest.
pub fn measure(src: &mut dyn ImageSource, platform: &Platform) -> Result<WorkloadManifest, Error> {
    let image = resolve(src, platform)?;
    let tree = flatten(src, &image, &mut HashOnly)?;
    Ok(WorkloadManifest::new(&image, &tree)?)
}
