//! One module per subcommand.

pub mod attest;
pub mod copy;
pub mod image_opts;
pub mod kbs;
pub mod measure;
pub mod sim;
pub mod unpack;
