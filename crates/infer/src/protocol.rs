//! The Open Inference Protocol's (KServe v2) REST messages.
//!
//! Requests and responses carry tensors whose `data` is typed by their
//! `datatype`; [`InferRequest`] and [`InferResponse`] hold them as typed
//! [`Tensor`]s and convert to and from JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::datatype::DataType;
use crate::tensor::{element_count, ShowShape, Tensor, TensorData};

/// `GET /v2`: the server's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// The server's name.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Protocol extensions supported (none).
    pub extensions: Vec<String>,
}

/// An input or output as model metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Its name in the model.
    pub name: String,
    /// Its datatype.
    pub datatype: DataType,
    /// Its shape; `-1` for a dimension the model leaves variable.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{m}`: a model's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Its versions (always `["1"]`).
    pub versions: Vec<String>,
    /// The platform, `onnx_onnxv1`.
    pub platform: String,
    /// The inputs, in the model's order.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs, in the model's order.
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    /// Whether the server is live.
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Whether the server is ready.
    pub ready: bool,
}

/// `GET /v2/models/{m}/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReady {
    /// The model's name.
    pub name: String,
    /// Whether it is ready.
    pub ready: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, one line.
    pub error: String,
}

/// An inference request: named input tensors, optionally an id to echo and
/// the outputs wanted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    /// Echoed in the response.
    pub id: Option<String>,
    /// The inputs.
    pub inputs: Vec<Tensor>,
    /// The outputs wanted, by name; empty for all of them.
    pub outputs: Vec<String>,
}

impl InferRequest {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the id the response echoes.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds an input.
    pub fn input(mut self, tensor: Tensor) -> Self {
        self.inputs.push(tensor);
        self
    }

    /// Asks for one output by name (by default every output is returned).
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.outputs.push(name.into());
        self
    }

    /// The request as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            inputs: Vec<WireTensorOut<'a>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            outputs: Vec<Out<'a>>,
        }
        let wire = Wire {
            id: self.id.as_deref(),
            inputs: self.inputs.iter().map(WireTensorOut::from).collect(),
            outputs: self.outputs.iter().map(|name| Out { name }).collect(),
        };
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses a request. Each input's data is checked against its datatype
    /// and shape; the error says which input and what is wrong.
    pub fn from_json(body: &[u8]) -> Result<InferRequest, String> {
        #[derive(Deserialize)]
        struct Out {
            name: String,
        }
        #[derive(Deserialize)]
        struct Wire<'a> {
            #[serde(default)]
            id: Option<String>,
            #[serde(borrow)]
            inputs: Vec<WireTensorIn<'a>>,
            #[serde(default)]
            outputs: Option<Vec<Out>>,
        }
        let wire: Wire<'_> =
            serde_json::from_slice(body).map_err(|e| format!("malformed request JSON: {e}"))?;
        let inputs = wire
            .inputs
            .into_iter()
            .map(|t| t.into_tensor("input"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InferRequest {
            id: wire.id,
            inputs,
            outputs: wire
                .outputs
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.name)
                .collect(),
        })
    }
}

/// An inference response: the model, the echoed id and the output tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// Its version, if the server said.
    pub model_version: Option<String>,
    /// The request's id, echoed.
    pub id: Option<String>,
    /// The outputs.
    pub outputs: Vec<Tensor>,
}

impl InferResponse {
    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.outputs.iter().find(|t| t.name == name)
    }

    /// The response as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Wire<'a> {
            model_name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            model_version: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            outputs: Vec<WireTensorOut<'a>>,
        }
        let wire = Wire {
            model_name: &self.model_name,
            model_version: self.model_version.as_deref(),
            id: self.id.as_deref(),
            outputs: self.outputs.iter().map(WireTensorOut::from).collect(),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses a response, typing each output's data by its datatype.
    pub fn from_json(body: &[u8]) -> Result<InferResponse, String> {
        #[derive(Deserialize)]
        struct Wire<'a> {
            model_name: String,
            #[serde(default)]
            model_version: Option<String>,
            #[serde(default)]
            id: Option<String>,
            #[serde(borrow)]
            outputs: Vec<WireTensorIn<'a>>,
        }
        let wire: Wire<'_> =
            serde_json::from_slice(body).map_err(|e| format!("malformed response JSON: {e}"))?;
        let outputs = wire
            .outputs
            .into_iter()
            .map(|t| t.into_tensor("output"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InferResponse {
            model_name: wire.model_name,
            model_version: wire.model_version,
            id: wire.id,
            outputs,
        })
    }
}

/// A tensor as it arrives: `data` still raw JSON until the datatype is known.
#[derive(Deserialize)]
struct WireTensorIn<'a> {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl WireTensorIn<'_> {
    fn into_tensor(self, what: &str) -> Result<Tensor, String> {
        let name = self.name;
        let datatype: DataType = self
            .datatype
            .parse()
            .map_err(|e| format!("{what} {name:?}: {e}"))?;
        let shape = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .ok();
        let count = shape.as_deref().and_then(element_count).ok_or_else(|| {
            format!(
                "{what} {name:?}: shape {} is too large",
                ShowShape(&self.shape)
            )
        })?;
        let shape = shape.unwrap_or_default();
        let data = TensorData::from_json(datatype, self.data.get(), count)
            .map_err(|e| format!("{what} {name:?}: {e}"))?;
        if data.len() != count {
            return Err(format!(
                "{what} {name:?}: shape {} needs {count} elements, data has {}",
                ShowShape(&shape),
                data.len()
            ));
        }
        Ok(Tensor { name, shape, data })
    }
}

#[derive(Serialize)]
struct WireTensorOut<'a> {
    name: &'a str,
    datatype: DataType,
    shape: &'a [usize],
    data: &'a TensorData,
}

impl<'a> From<&'a Tensor> for WireTensorOut<'a> {
    fn from(t: &'a Tensor) -> Self {
        WireTensorOut {
            name: &t.name,
            datatype: t.datatype(),
            shape: &t.shape,
            data: &t.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let req = InferRequest::new()
            .id("r1")
            .input(Tensor::new("x", vec![2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])).unwrap())
            .input(Tensor::new("m", vec![2], TensorData::Bool(vec![true, false])).unwrap())
            .output("y");
        let json = req.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            r#"{"id":"r1","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1.0,2.0,3.0,4.5]},{"name":"m","datatype":"BOOL","shape":[2],"data":[true,false]}],"outputs":[{"name":"y"}]}"#
        );
        assert_eq!(InferRequest::from_json(&json).unwrap(), req);
    }

    #[test]
    fn request_errors_name_the_input() {
        let e = |s: &str| InferRequest::from_json(s.as_bytes()).unwrap_err();
        assert_eq!(
            e(r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#),
            "input \"x\": shape [2, 2] needs 4 elements, data has 3"
        );
        assert_eq!(
            e(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP33","data":[1]}]}"#),
            "input \"x\": unknown datatype \"FP33\" (the protocol's are BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES)"
        );
        assert!(
            e(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#)
                .starts_with("malformed request JSON: missing field `data`")
        );
        assert!(e("{").starts_with("malformed request JSON: EOF while parsing"));
        assert!(
            e(r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#)
                .starts_with("malformed request JSON: invalid value: integer `-1`")
        );
        assert_eq!(
            e(
                r#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[]}]}"#
            ),
            "input \"x\": shape [4294967296, 4294967296, 4294967296] is too large"
        );
    }

    #[test]
    fn response_parses_typed_outputs() {
        let body = br#"{"model_name":"m","id":"7","outputs":[
            {"name":"p","shape":[1,2],"datatype":"FP32","data":[[0.25,0.75]]},
            {"name":"c","shape":[1],"datatype":"INT64","data":[3]}]}"#;
        let r = InferResponse::from_json(body).unwrap();
        assert_eq!(r.model_name, "m");
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.output("p").unwrap().as_f32().unwrap(), &[0.25, 0.75]);
        assert_eq!(r.output("c").unwrap().as_i64().unwrap(), &[3]);
        assert_eq!(InferResponse::from_json(&r.to_json()).unwrap(), r);
    }
}
