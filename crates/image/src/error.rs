//! Typed errors of the image crate. Each variant names the input at fault.

use crate::digest::Digest;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while reading, writing or flattening an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    BadReference {
        /// The reference as given.
        input: String,
        /// Why it is invalid and what is expected.
        reason: String,
    },
    /// A digest string is malformed.
    #[error("invalid digest {input:?}: expected sha256:<64 lowercase hex>")]
    BadDigest {
        /// The digest as found.
        input: String,
    },
    /// A blob's content does not match its descriptor.
    #[error("blob {blob} is corrupt: {reason}")]
    BlobMismatch {
        /// The digest the descriptor promised.
        blob: Digest,
        /// What differed (digest or size).
        reason: String,
    },
    /// A blob named by a manifest is not in the image.
    #[error("blob {blob} is missing from {location}")]
    MissingBlob {
        /// The missing blob.
        blob: Digest,
        /// Where it was looked for.
        location: String,
    },
    /// A manifest, index or layer uses a media type cocoon does not handle.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnknownMediaType {
        /// The media type found.
        media_type: String,
        /// Which object carried it.
        what: String,
    },
    /// No manifest in an image index matches the requested platform.
    #[error("no image for platform {platform} in {image} (available: {available})")]
    NoMatchingPlatform {
        /// The requested platform.
        platform: String,
        /// The image reference.
        image: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A tag is not present in an image layout or archive.
    #[error("no image tagged {tag:?} in {location} (tags: {available})")]
    NoSuchTag {
        /// The requested tag.
        tag: String,
        /// The layout or archive.
        location: String,
        /// The tags that exist.
        available: String,
    },
    /// A layer entry would be written outside the image root or through a link.
    #[error("layer {layer}: refusing entry {path:?}: {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        layer: Digest,
        /// The path as it appears in the tar stream.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A layer or archive is not a well-formed (compressed) tar stream.
    #[error("layer {layer} is not a valid {format} stream: {reason}")]
    CorruptLayer {
        /// The layer's digest.
        layer: Digest,
        /// What format was expected (tar, gzip, zstd).
        format: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A JSON document (manifest, index, config) is malformed.
    #[error("invalid {what}: {reason}")]
    BadJson {
        /// Which document.
        what: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A registry request failed.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What failed, with the HTTP status where there is one.
        reason: String,
    },
    /// An I/O error, with the file or object it concerns.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done. An error that carries one
    /// of ours inside (from a verifying reader) is unwrapped instead.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if source.get_ref().is_some_and(|e| e.is::<Error>()) {
            let kind = source.kind();
            return match source.into_inner().map(|e| e.downcast::<Error>()) {
                Some(Ok(ours)) => *ours,
                Some(Err(other)) => Error::Io {
                    context: context.into(),
                    source: std::io::Error::new(kind, other),
                },
                None => Error::Io {
                    context: context.into(),
                    source: kind.into(),
                },
            };
        }
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Turns this error into an I/O error that [`Error::io`] can unwrap again,
    /// so that it can pass through `Read` implementations.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}
