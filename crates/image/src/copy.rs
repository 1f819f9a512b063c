//! Copying an image between transports.

use std::io;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::transport::{resolve, ImageDest, ImageSource, Platform};

/// Copies the `platform` image of `src` to `dst`: config, then layers (skipping
/// blobs the destination already has), then the manifest. Only the selected
/// platform's manifest is copied, not a whole multi-platform index. Every blob
/// is verified against its descriptor as it streams. Returns the digest of the
/// manifest that was read.
pub fn copy_image(
    src: &mut dyn ImageSource,
    dst: &mut dyn ImageDest,
    platform: &Platform,
) -> Result<Digest> {
    let image = resolve(src, platform)?;
    let config = image.parsed.config();
    if !dst.has_blob(config)? {
        dst.put_config(config, &image.config_bytes)?;
    }
    for (layer, diff_id) in image.parsed.layers().iter().zip(image.diff_ids()?) {
        if dst.has_blob(layer)? {
            continue;
        }
        let mut reader = src.blob(layer)?;
        dst.put_layer(layer, &diff_id, &mut reader)?;
        // Destinations read to the end, but make sure the check at the end of
        // the stream has run whatever they did.
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| Error::io(format!("reading layer {}", layer.digest()), e))?;
    }
    dst.put_manifest(&image.manifest)?;
    Ok(image.manifest.digest)
}
