//! Typed errors of the seal crate.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong sealing, opening or verifying a sealed image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the image failed.
    #[error(transparent)]
    Image(#[from] cocoon_image::Error),
    /// The manifest or an option is invalid.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::Error),
    /// A key file is malformed.
    #[error("invalid key: {0}")]
    BadKey(String),
    /// The sealed blob is not in the expected format (or not one at all).
    #[error("sealed blob: {0}")]
    Format(String),
    /// A part of the sealed image does not match what was signed or measured.
    #[error("sealed image tampered with: {0}")]
    Tampered(String),
    /// The signature does not verify with the given owner key.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// Decryption failed: wrong image key, or the ciphertext was changed.
    #[error("cannot decrypt {what}: wrong image key or tampered data")]
    Decrypt {
        /// The index or the chunk number.
        what: String,
    },
    /// A randomness or cryptographic library failure.
    #[error("crypto: {0}")]
    Crypto(String),
    /// An I/O error with its context.
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
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
