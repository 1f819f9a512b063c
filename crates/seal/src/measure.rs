//! Measuring an image: the workload manifest and digest, without any key.

use cocoon_image::flatten::flatten;
use cocoon_image::store::HashOnly;
use cocoon_image::transport::resolve;
use cocoon_image::{ImageSource, Platform};

use crate::error::Result;
use crate::manifest::{summarize, WorkloadManifest, WorkloadOptions};

/// Reads the `platform` image from `src`, flattens it and returns the
/// workload manifest that `convert` with the same options would seal.
pub fn measure(
    src: &mut dyn ImageSource,
    platform: &Platform,
    opts: &WorkloadOptions,
) -> Result<WorkloadManifest> {
    let image = resolve(src, platform)?;
    let tree = flatten(src, &image, &mut HashOnly)?;
    Ok(WorkloadManifest::new(&image, summarize(&tree)?, opts)?)
}
