//! Container images in and out of cocoon.
//!
//! * [`reference`] parses image references the way skopeo users write them
//!   (`oci:DIR[:TAG]`, `docker-archive:FILE[:REF]`, `docker://HOST/REPO[:TAG|@DIGEST]`).
//! * [`transport`] reads and writes images over those transports behind the
//!   [`ImageSource`]/[`ImageDest`] traits; every blob is checked against its
//!   descriptor's digest and size while it streams.
//! * [`flatten`] applies an image's layers, in order, to one [`Tree`]
//!   (whiteouts, opaque directories, hardlinks, xattrs, device nodes), refusing
//!   any entry that would land outside the root.
//! * [`copy`] copies an image between transports.

pub mod copy;
pub mod digest;
pub mod error;
pub mod flatten;
pub mod layer;
pub mod media;
pub mod reference;
pub mod store;
pub mod transport;
pub mod tree;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::ImageRef;
pub use transport::{ImageDest, ImageSource, Platform, ResolvedImage, TransportOptions};
pub use tree::{Entry, EntryKind, Tree};
