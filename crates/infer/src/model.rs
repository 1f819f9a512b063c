//! ONNX models on the tract engine: loading, metadata, checked inference.
//!
//! A model is loaded once ([`Model::load`]): parsed, typed, decluttered (its
//! metadata comes from this form, so variable dimensions show as `-1`),
//! optimized and turned into a runnable plan that any number of threads can
//! run at once. [`Model::infer`] checks a request against the metadata
//! before the engine sees it, so a wrong name, datatype, shape or size is a
//! precise [`InferError::BadRequest`], never an engine failure.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;
use tract_onnx::tract_hir::infer::Factoid;

use crate::datatype::DataType;
use crate::protocol::{InferRequest, ModelMetadata, TensorMetadata};
use crate::tensor::{ShowShape, Tensor as OipTensor, TensorData};

/// The platform string of ONNX models in model metadata.
pub const PLATFORM: &str = "onnx_onnxv1";

/// The only model version served.
pub const VERSION: &str = "1";

/// How the engine runs models.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Threads one inference may use for its matrix products (tract's
    /// multithread executor); 1 runs each inference on its caller's thread.
    pub threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: available_cores(),
        }
    }
}

/// The number of cores this process may use (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A model that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read model {path}: {error}")]
    Read {
        /// The model file.
        path: PathBuf,
        /// Why (said in the message, so not a `source`).
        error: std::io::Error,
    },
    /// tract could not parse, type or plan the model.
    #[error("cannot load model {path}: {reason}")]
    Engine {
        /// The model file.
        path: PathBuf,
        /// The engine's reason, one line.
        reason: String,
    },
    /// The model has an input or output the protocol cannot carry.
    #[error("cannot serve model {path}: {reason}")]
    Unsupported {
        /// The model file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// The name cannot be used in a URL path, or is taken.
    #[error("bad model name {name:?}: {reason}")]
    Name {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
}

/// An inference that did not produce outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The request does not fit the model (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The engine failed on a well-formed request (HTTP 500).
    #[error("{0}")]
    Engine(String),
}

/// One input as the model declares it.
#[derive(Debug, Clone)]
struct InputSpec {
    name: String,
    datatype: DataType,
    /// `None` for a variable dimension.
    dims: Vec<Option<usize>>,
}

/// A loaded model, ready to run.
#[derive(Debug)]
pub struct Model {
    name: String,
    path: PathBuf,
    metadata: ModelMetadata,
    inputs: Vec<InputSpec>,
    pinned: Vec<String>,
    plan: Arc<TypedSimplePlan>,
}

impl Model {
    /// Loads the ONNX model at `path` under `name`.
    pub fn load(name: &str, path: &Path, engine: &EngineOptions) -> Result<Model, LoadError> {
        check_name(name)?;
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let engine_err = |e: TractError| LoadError::Engine {
            path: path.to_path_buf(),
            reason: one_line(&e),
        };
        let onnx = tract_onnx::onnx();
        // Parse from memory (not tract's mmap): model files may live on a FUSE
        // mount that serves reads but not shared mappings.
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| engine_err(e.context("not an ONNX model")))?;
        drop(bytes);
        let dir = path.parent().and_then(Path::to_str);
        let parsed = onnx.parse(&proto, dir).map_err(engine_err)?;
        drop(proto);
        if !parsed.unresolved_inputs.is_empty() {
            return Err(LoadError::Engine {
                path: path.to_path_buf(),
                reason: format!("unresolved inputs {:?}", parsed.unresolved_inputs),
            });
        }
        let (typed, pinned) = type_model(parsed.model).map_err(engine_err)?;
        let unsupported = |reason: String| LoadError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        let (inputs, input_meta) = describe(&typed, true).map_err(unsupported)?;
        let (_, output_meta) = describe(&typed, false).map_err(unsupported)?;
        let metadata = ModelMetadata {
            name: name.to_string(),
            versions: vec![VERSION.to_string()],
            platform: PLATFORM.to_string(),
            inputs: input_meta,
            outputs: output_meta,
        };
        let mut options = RunOptions::default();
        if engine.threads > 1 {
            options.executor = Some(
                tract_onnx::prelude::multithread::Executor::multithread_with_name(
                    engine.threads,
                    "tract",
                ),
            );
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable_with_options(&options))
            .map_err(engine_err)?;
        Ok(Model {
            name: name.to_string(),
            path: path.to_path_buf(),
            metadata,
            inputs,
            pinned,
            plan,
        })
    }

    /// The name the model is served under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The input dimensions the model leaves variable but that had to be
    /// fixed to 1 for tract to type the model (as `input[axis]`); empty
    /// when the model runs as declared.
    pub fn pinned_dims(&self) -> &[String] {
        &self.pinned
    }

    /// Its metadata (`GET /v2/models/{name}`).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Checks `req` against the model and runs it; returns the outputs the
    /// request asked for (all of them, in the model's order, by default).
    pub fn infer(&self, req: InferRequest) -> Result<Vec<OipTensor>, InferError> {
        let wanted = self.wanted_outputs(&req.outputs)?;
        let inputs = self.check_inputs(req.inputs)?;
        let outputs = self.plan.run(inputs).map_err(|e| {
            InferError::Engine(format!(
                "model {:?} failed on this request: {}",
                self.name,
                one_line(&e)
            ))
        })?;
        wanted
            .into_iter()
            .map(|ix| {
                let meta = &self.metadata.outputs[ix];
                from_tract(&meta.name, &outputs[ix]).map_err(InferError::Engine)
            })
            .collect()
    }

    fn wanted_outputs(&self, names: &[String]) -> Result<Vec<usize>, InferError> {
        if names.is_empty() {
            return Ok((0..self.metadata.outputs.len()).collect());
        }
        let mut seen = HashSet::new();
        names
            .iter()
            .map(|n| {
                if !seen.insert(n) {
                    return Err(bad(format!("output {n:?} is asked for twice")));
                }
                self.metadata
                    .outputs
                    .iter()
                    .position(|o| &o.name == n)
                    .ok_or_else(|| {
                        bad(format!(
                            "model {:?} has no output {n:?} (its outputs: {})",
                            self.name,
                            names_of(&self.metadata.outputs)
                        ))
                    })
            })
            .collect()
    }

    fn check_inputs(&self, given: Vec<OipTensor>) -> Result<TVec<TValue>, InferError> {
        let mut slots: Vec<Option<OipTensor>> = vec![None; self.inputs.len()];
        for t in given {
            let ix = self
                .inputs
                .iter()
                .position(|i| i.name == t.name)
                .ok_or_else(|| {
                    bad(format!(
                        "model {:?} has no input {:?} (its inputs: {})",
                        self.name,
                        t.name,
                        names_of(&self.metadata.inputs)
                    ))
                })?;
            if slots[ix].is_some() {
                return Err(bad(format!("input {:?} is given twice", t.name)));
            }
            let spec = &self.inputs[ix];
            if t.datatype() != spec.datatype {
                return Err(bad(format!(
                    "input {:?} has datatype {}, model {:?} expects {}",
                    t.name,
                    t.datatype(),
                    self.name,
                    spec.datatype
                )));
            }
            let fits = t.shape.len() == spec.dims.len()
                && t.shape
                    .iter()
                    .zip(&spec.dims)
                    .all(|(&got, want)| want.is_none_or(|w| w == got));
            if !fits {
                return Err(bad(format!(
                    "input {:?} has shape {}, model {:?} expects {}",
                    t.name,
                    ShowShape(&t.shape),
                    self.name,
                    ShowShape(&self.metadata.inputs[ix].shape)
                )));
            }
            slots[ix] = Some(t);
        }
        slots
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, spec)| {
                let t = t.ok_or_else(|| {
                    bad(format!(
                        "input {:?} is missing (model {:?} needs {})",
                        spec.name,
                        self.name,
                        names_of(&self.metadata.inputs)
                    ))
                })?;
                to_tract(t).map(IntoTValue::into_tvalue)
            })
            .collect()
    }
}

/// The models one server serves, by name.
#[derive(Debug, Default)]
pub struct Models {
    models: Vec<Arc<Model>>,
}

impl Models {
    /// Loads every `(name, path)` pair; names must be unique.
    pub fn load(specs: &[(String, PathBuf)], engine: &EngineOptions) -> Result<Models, LoadError> {
        let mut models: Vec<Arc<Model>> = Vec::with_capacity(specs.len());
        for (name, path) in specs {
            if models.iter().any(|m| &m.name == name) {
                return Err(LoadError::Name {
                    name: name.clone(),
                    reason: "two models have this name; give one another with NAME=FILE".into(),
                });
            }
            models.push(Arc::new(Model::load(name, path, engine)?));
        }
        Ok(Models { models })
    }

    /// Serves already loaded models.
    pub fn from_models(models: Vec<Model>) -> Models {
        Models {
            models: models.into_iter().map(Arc::new).collect(),
        }
    }

    /// The model with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Every model, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.iter()
    }

    /// The models' names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

/// Model names go into URL paths: letters, digits, `_`, `-`, `.`.
fn check_name(name: &str) -> Result<(), LoadError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(LoadError::Name {
            name: name.to_string(),
            reason: "use 1-128 letters, digits, '_', '-' or '.'".into(),
        })
    }
}

fn bad(msg: String) -> InferError {
    InferError::BadRequest(msg)
}

fn names_of(ts: &[TensorMetadata]) -> String {
    ts.iter()
        .map(|t| format!("{:?} {} {}", t.name, t.datatype, ShowShape(&t.shape)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Types and declutters a parsed model. Some exported graphs compute shapes
/// tract can only follow with concrete sizes (magika's one-hot
/// `BroadcastTo` of a variable batch): when typing fails, every variable
/// input dimension is fixed to 1 and typing is tried again. Returns the
/// fixed dimensions, as `input[axis]`; the first error if that fails too.
fn type_model(model: InferenceModel) -> TractResult<(TypedModel, Vec<String>)> {
    let retry = model.clone();
    let first = match model.into_typed().and_then(|m| m.into_decluttered()) {
        Ok(typed) => return Ok((typed, Vec::new())),
        Err(e) => e,
    };
    let mut model = retry;
    let mut pinned = Vec::new();
    for i in 0..model.inputs.len() {
        let mut fact = model.input_fact(i)?.clone();
        if fact.shape.is_open() {
            return Err(first);
        }
        let variable: Vec<usize> = fact
            .shape
            .dims()
            .enumerate()
            .filter(|(_, d)| d.concretize().is_none_or(|d| d.to_i64().is_err()))
            .map(|(axis, _)| axis)
            .collect();
        let name = model.node(model.inputs[i].node).name.clone();
        for axis in variable {
            fact.shape.set_dim(axis, TDim::from(1));
            pinned.push(format!("{name}[{axis}]"));
        }
        model.set_input_fact(i, fact)?;
    }
    if pinned.is_empty() {
        return Err(first);
    }
    match model.into_typed().and_then(|m| m.into_decluttered()) {
        Ok(typed) => Ok((typed, pinned)),
        Err(_) => Err(first),
    }
}

/// A tract error and its causes on one line.
fn one_line(e: &TractError) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// The inputs (or outputs) of a typed model as protocol metadata.
fn describe(
    model: &TypedModel,
    inputs: bool,
) -> Result<(Vec<InputSpec>, Vec<TensorMetadata>), String> {
    let outlets = if inputs {
        model.input_outlets()
    } else {
        model.output_outlets()
    }
    .map_err(|e| one_line(&e))?;
    let what = if inputs { "input" } else { "output" };
    let mut specs = Vec::new();
    let mut meta = Vec::new();
    for (ix, &outlet) in outlets.iter().enumerate() {
        let name = model
            .outlet_label(outlet)
            .unwrap_or(&model.node(outlet.node).name)
            .to_string();
        let fact = model.outlet_fact(outlet).map_err(|e| one_line(&e))?;
        let datatype = datatype_of(fact.datum_type, inputs).ok_or_else(|| {
            format!(
                "{what} {ix} ({name:?}) has type {:?}, which the Open Inference Protocol cannot carry",
                fact.datum_type
            )
        })?;
        let dims: Vec<Option<usize>> = fact
            .shape
            .iter()
            .map(|d| d.to_i64().ok().and_then(|d| usize::try_from(d).ok()))
            .collect();
        meta.push(TensorMetadata {
            name: name.clone(),
            datatype,
            shape: dims
                .iter()
                .map(|d| d.and_then(|d| i64::try_from(d).ok()).unwrap_or(-1))
                .collect(),
        });
        specs.push(InputSpec {
            name,
            datatype,
            dims,
        });
    }
    Ok((specs, meta))
}

fn datatype_of(dt: DatumType, input: bool) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        // Symbolic dimensions computed by the graph leave as integers.
        DatumType::TDim if !input => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_tract(t: OipTensor) -> Result<Tensor, InferError> {
    fn build<T: Datum>(shape: &[usize], v: Vec<T>) -> Result<Tensor, InferError> {
        tract_ndarray::ArrayD::from_shape_vec(shape, v)
            .map(IntoTensor::into_tensor)
            .map_err(|e| InferError::BadRequest(format!("bad tensor: {e}")))
    }
    let shape = t.shape;
    match t.data {
        TensorData::Bool(v) => build(&shape, v),
        TensorData::U8(v) => build(&shape, v),
        TensorData::U16(v) => build(&shape, v),
        TensorData::U32(v) => build(&shape, v),
        TensorData::U64(v) => build(&shape, v),
        TensorData::I8(v) => build(&shape, v),
        TensorData::I16(v) => build(&shape, v),
        TensorData::I32(v) => build(&shape, v),
        TensorData::I64(v) => build(&shape, v),
        TensorData::F16(v) => build(&shape, v.into_iter().map(f16::from_f32).collect()),
        TensorData::F32(v) => build(&shape, v),
        TensorData::F64(v) => build(&shape, v),
        TensorData::Bytes(v) => build(&shape, v),
    }
}

fn from_tract(name: &str, t: &Tensor) -> Result<OipTensor, String> {
    fn slice<T: Datum + Clone>(t: &Tensor) -> Result<Vec<T>, String> {
        t.try_as_plain_ram()
            .and_then(|v| v.as_slice::<T>())
            .map(<[T]>::to_vec)
            .map_err(|e| one_line(&e))
    }
    let data = match t.datum_type() {
        DatumType::Bool => TensorData::Bool(slice(t)?),
        DatumType::U8 => TensorData::U8(slice(t)?),
        DatumType::U16 => TensorData::U16(slice(t)?),
        DatumType::U32 => TensorData::U32(slice(t)?),
        DatumType::U64 => TensorData::U64(slice(t)?),
        DatumType::I8 => TensorData::I8(slice(t)?),
        DatumType::I16 => TensorData::I16(slice(t)?),
        DatumType::I32 => TensorData::I32(slice(t)?),
        DatumType::I64 => TensorData::I64(slice(t)?),
        DatumType::TDim => {
            let t = t.cast_to::<i64>().map_err(|e| one_line(&e))?;
            TensorData::I64(slice(&t)?)
        }
        DatumType::F16 => {
            TensorData::F16(slice::<f16>(t)?.into_iter().map(|h| h.to_f32()).collect())
        }
        DatumType::F32 => TensorData::F32(slice(t)?),
        DatumType::F64 => TensorData::F64(slice(t)?),
        DatumType::String => TensorData::Bytes(slice(t)?),
        other => {
            return Err(format!(
                "output {name:?} has type {other:?}, which the Open Inference Protocol cannot carry"
            ))
        }
    };
    Ok(OipTensor {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["magika", "squeezenet-1.1", "a_b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..", "a b", "é"] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("bad model name"), "{e}");
        }
    }
}
