//! One module per subcommand.

pub mod attest;
pub mod convert;
pub mod copy;
pub mod image_opts;
pub mod infer;
pub mod inspect;
pub mod kbs;
pub mod keygen;
pub mod measure;
pub mod run;
pub mod sim;
pub mod unpack;
pub mod verify_endpoint;
pub mod verify_image;
pub mod workload_opts;
