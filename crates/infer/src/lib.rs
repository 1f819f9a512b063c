//! Confidential inference for cocoon: an Open Inference Protocol (KServe v2)
//! REST server on the pure-Rust tract ONNX engine, and a blocking client.
//!
//! * [`model`] loads ONNX models once (tract: parse, type, optimize) and
//!   runs checked inferences on them, from any number of threads.
//! * [`server`] serves models over the protocol's REST endpoints (axum).
//! * [`client`] is the blocking client; it runs over any byte stream, so the
//!   attested TLS stream of `cocoon_tls::connect` carries its requests.
//! * [`protocol`], [`tensor`] and [`datatype`] are the protocol's messages,
//!   typed tensors and datatypes, shared by both sides.
//! * [`magika`] turns files into magika's model input and its scores into
//!   content-type labels.
//! * [`serve`] is the server's command line, shared by `cocoon infer serve`
//!   and the static `cocoon-infer` binary.
//!
//! The protocol's reference is docs/infer.md.

pub mod client;
pub mod datatype;
pub mod magika;
pub mod model;
pub mod protocol;
pub mod serve;
pub mod server;
pub mod tensor;

pub use client::{Client, ClientError};
pub use datatype::DataType;
pub use model::{EngineOptions, Model, Models};
pub use protocol::{InferRequest, InferResponse, ModelMetadata};
pub use server::ServerOptions;
pub use tensor::{Tensor, TensorData};
