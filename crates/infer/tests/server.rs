//! The inference server with the real models (`scripts/models.sh`): shipped
//! expected outputs, magika on real files, every datatype, bad requests,
//! several models at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cocoon_infer::magika::{ContentTypes, Features, MagikaConfig};
use cocoon_infer::protocol::{InferRequest, ModelMetadata};
use cocoon_infer::{
    Client, ClientError, DataType, EngineOptions, Model, Models, ServerOptions, Tensor, TensorData,
};
use cocoon_testkit::server::BackgroundServer;
use serde_json::{json, Value};

/// The model directory: `$COCOON_MODELS` or `target/models` (the link
/// `scripts/models.sh` makes). A missing one fails with what to run.
fn models_dir() -> PathBuf {
    let dir = std::env::var_os("COCOON_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/models"));
    assert!(
        dir.join(".complete").exists(),
        "models missing at {}: run `bash scripts/models.sh` (or `make test`) first",
        dir.display()
    );
    dir
}

fn model(name: &str) -> PathBuf {
    models_dir().join(name)
}

/// Request bodies above this get 413 from the shared server.
const BODY_LIMIT: usize = 4 << 20;

/// One server for the whole file: squeezenet, resnet50, magika and a
/// model with an input of every numeric datatype.
fn server() -> SocketAddr {
    static SERVER: OnceLock<BackgroundServer> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let types = types_model();
            let specs = vec![
                ("squeezenet".to_string(), model("squeezenet.onnx")),
                ("resnet50".to_string(), model("resnet50.onnx")),
                ("magika".to_string(), model("magika.onnx")),
                ("types".to_string(), types),
            ];
            let models = Models::load(&specs, &EngineOptions::default()).unwrap();
            let opts = ServerOptions {
                body_limit: BODY_LIMIT,
                parallel: 2,
            };
            let app = cocoon_infer::server::router(models, &opts);
            BackgroundServer::start("127.0.0.1:0", 2, move |l, stop| {
                cocoon_infer::server::serve(l, app, stop)
            })
            .unwrap()
        })
        .addr()
}

fn client() -> Client<TcpStream> {
    Client::connect(&server().to_string()).unwrap()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

// ------------------------------------------------- shipped expected outputs --

/// The request `scripts/models.sh` wrote (onnx's backend-test input,
/// arange(n)/n) gives the shipped `light_<m>_output_0.pb` within 1e-4.
fn check_light_model(name: &str) {
    let request = std::fs::read(model(&format!("{name}.request.json"))).unwrap();
    let expected = read_json(&model(&format!("{name}.expected.json")));
    let response = client().infer_json(name, &request).unwrap();
    assert_eq!(response.model_name, name);
    assert_eq!(
        response.id.as_deref(),
        Some(format!("{name}-arange").as_str())
    );
    assert_eq!(response.outputs.len(), 1);
    let out = &response.outputs[0];
    assert_eq!(out.name, expected["name"].as_str().unwrap());
    assert_eq!(out.datatype(), DataType::Fp32);
    let shape: Vec<usize> = serde_json::from_value(expected["shape"].clone()).unwrap();
    assert_eq!(out.shape, shape);
    let want: Vec<f64> = serde_json::from_value(expected["data"].clone()).unwrap();
    let got = out.as_f32().unwrap();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-4, "{name}: largest difference {worst}");
}

#[test]
fn squeezenet_matches_its_shipped_expected_output() {
    check_light_model("squeezenet");
}

#[test]
fn resnet50_matches_its_shipped_expected_output() {
    check_light_model("resnet50");
}

// ---------------------------------------------------------------- magika --

/// Real files of several types, made now: a PNG and a PDF written by
/// python3, a Python script, and the ELF binary /bin/ls.
fn sample_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let png = dir.join("image.png");
    let pdf = dir.join("doc.pdf");
    let script = r#"
import struct, sys, zlib

def png(path, w=48, h=32):
    rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in (x * 5 % 256, y * 7 % 256, (x * y) % 256)) for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))

def pdf(path):
    text = b"BT /F1 18 Tf 72 720 Td (Confidential inference with cocoon) Tj ET"
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    open(path, "wb").write(out)

png(sys.argv[1])
pdf(sys.argv[2])
import gzip, json, zipfile
d = sys.argv[3]
with zipfile.ZipFile(d + "/archive.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("README.txt", "hello " * 200)
    z.writestr("data/values.csv", "\n".join("%d,%d" % (i, i * i) for i in range(300)))
open(d + "/data.json", "w").write(json.dumps({"models": [{"name": "m%d" % i, "inputs": [{"name": "x", "shape": [1, i]}]} for i in range(20)]}, indent=2))
gzip.open(d + "/log.gz", "wb").write(("\n".join("2024-01-%02d INFO request %d served" % (i % 28 + 1, i) for i in range(500))).encode())
open(d + "/page.html", "w").write("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>cocoon</title></head>\n<body>\n" + "".join("<p>Paragraph %d about <a href=\"/p/%d\">confidential</a> inference.</p>\n" % (i, i) for i in range(30)) + "</body>\n</html>\n")
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&png)
        .arg(&pdf)
        .arg(dir)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let py = dir.join("tool.py");
    std::fs::write(&py, PYTHON_SOURCE).unwrap();
    vec![
        (png, "png"),
        (pdf, "pdf"),
        (py, "python"),
        (PathBuf::from("/bin/ls"), "elf"),
        (dir.join("archive.zip"), "zip"),
        (dir.join("data.json"), "json"),
        (dir.join("log.gz"), "gzip"),
        (dir.join("page.html"), "html"),
    ]
}

const PYTHON_SOURCE: &str = r#"#!/usr/bin/env python3
"""Summarise the sizes of files under a directory."""

import argparse
import os
from collections import defaultdict


def walk(root):
    sizes = defaultdict(int)
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                sizes[os.path.splitext(name)[1] or "(none)"] += os.path.getsize(path)
            except OSError as e:
                print(f"skipping {path}: {e}")
    return sizes


class Report:
    def __init__(self, sizes):
        self.sizes = dict(sorted(sizes.items(), key=lambda kv: -kv[1]))

    def lines(self):
        for ext, size in self.sizes.items():
            yield f"{ext:>10} {size:>12,}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", nargs="?", default=".")
    args = parser.parse_args()
    for line in Report(walk(args.root)).lines():
        print(line)


if __name__ == "__main__":
    main()
"#;

#[test]
fn magika_classifies_real_files_through_the_server() {
    let config =
        MagikaConfig::from_json(&std::fs::read(model("magika.config.json")).unwrap()).unwrap();
    let kb = ContentTypes::from_json(&std::fs::read(model("magika.content_types.json")).unwrap())
        .unwrap();
    let mut c = client();
    let meta = c.model_metadata("magika").unwrap();
    assert_eq!(meta.inputs[0].datatype, DataType::Int32);
    assert_eq!(meta.inputs[0].shape, vec![1, config.input_len() as i64]);
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for (file, want) in sample_files(dir.path()) {
        let Features::Model(x) = config.features_of_file(&file).unwrap() else {
            panic!("{} is too small for the model", file.display());
        };
        let req = config.request(&meta.inputs[0].name, x).unwrap();
        let resp = c.infer("magika", &req).unwrap();
        let scores = resp.outputs[0].as_f32().unwrap();
        let p = config.label(scores, Some(&kb)).unwrap();
        eprintln!("{}: {:?}", file.display(), p);
        if p.label != want {
            wrong.push(format!("{}: {:?}, expected {want}", file.display(), p));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ------------------------------------------------------------- datatypes --

/// An ONNX model with one input per numeric datatype and BOOL, each of
/// variable length: numbers come back doubled (`Add(x, x)`), booleans
/// negated (`Not`).
fn types_model() -> PathBuf {
    use prost::Message;
    use tract_onnx::pb;

    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let value = |name: &str, elem_type: i32| pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type,
                    shape: Some(pb::TensorShapeProto {
                        dim: vec![pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
                                "n".into(),
                            )),
                            ..Default::default()
                        }],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        use pb::tensor_proto::DataType as D;
        let mut graph = pb::GraphProto {
            name: "types".into(),
            ..Default::default()
        };
        for (dt, tag) in [
            (D::Bool, "bool"),
            (D::Uint8, "u8"),
            (D::Uint16, "u16"),
            (D::Uint32, "u32"),
            (D::Uint64, "u64"),
            (D::Int8, "i8"),
            (D::Int16, "i16"),
            (D::Int32, "i32"),
            (D::Int64, "i64"),
            (D::Float16, "f16"),
            (D::Float, "f32"),
            (D::Double, "f64"),
        ] {
            let (i, o) = (format!("in_{tag}"), format!("out_{tag}"));
            let node = if dt == D::Bool {
                pb::NodeProto {
                    input: vec![i.clone()],
                    output: vec![o.clone()],
                    op_type: "Not".into(),
                    name: format!("not_{tag}"),
                    ..Default::default()
                }
            } else {
                pb::NodeProto {
                    input: vec![i.clone(), i.clone()],
                    output: vec![o.clone()],
                    op_type: "Add".into(),
                    name: format!("add_{tag}"),
                    ..Default::default()
                }
            };
            graph.node.push(node);
            graph.input.push(value(&i, dt as i32));
            graph.output.push(value(&o, dt as i32));
        }
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            producer_name: "cocoon-infer tests".into(),
            graph: Some(graph),
            ..Default::default()
        };
        // Cargo's scratch directory for integration tests: rewritten each run.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("types.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        path
    })
    .clone()
}

#[test]
fn every_numeric_datatype_and_bool_round_trips_through_the_engine() {
    let mut c = client();
    let meta: ModelMetadata = c.model_metadata("types").unwrap();
    let inputs: Vec<(String, DataType, Vec<i64>)> = meta
        .inputs
        .iter()
        .map(|t| (t.name.clone(), t.datatype, t.shape.clone()))
        .collect();
    assert_eq!(inputs.len(), 12);
    assert!(inputs.iter().all(|(_, _, s)| s == &[-1]), "{inputs:?}");
    // Nested data for one input, flat for the others; JSON straight on the wire.
    let body = json!({
        "id": "all-types",
        "inputs": [
            {"name": "in_bool", "datatype": "BOOL", "shape": [3], "data": [true, false, true]},
            {"name": "in_u8", "datatype": "UINT8", "shape": [3], "data": [0, 7, 127]},
            {"name": "in_u16", "datatype": "UINT16", "shape": [3], "data": [0, 300, 32767]},
            {"name": "in_u32", "datatype": "UINT32", "shape": [3], "data": [0, 70000, 2147483647]},
            {"name": "in_u64", "datatype": "UINT64", "shape": [3], "data": [0, 1, 4611686018427387903u64]},
            {"name": "in_i8", "datatype": "INT8", "shape": [3], "data": [-64, 0, 63]},
            {"name": "in_i16", "datatype": "INT16", "shape": [3], "data": [-16384, 1, 16383]},
            {"name": "in_i32", "datatype": "INT32", "shape": [3], "data": [[-5], [0], [1073741823]]},
            {"name": "in_i64", "datatype": "INT64", "shape": [3], "data": [-4611686018427387904i64, 2, 3]},
            {"name": "in_f16", "datatype": "FP16", "shape": [3], "data": [0.5, -1.25, 1000]},
            {"name": "in_f32", "datatype": "FP32", "shape": [3], "data": [0.1, -2.5, 1e30]},
            {"name": "in_f64", "datatype": "FP64", "shape": [3], "data": [0.1, -2.5, 1e300]},
        ],
    });
    let resp = c
        .infer_json("types", &serde_json::to_vec(&body).unwrap())
        .unwrap();
    assert_eq!(resp.id.as_deref(), Some("all-types"));
    let out = |n: &str| &resp.output(n).unwrap().data;
    assert_eq!(out("out_bool"), &TensorData::Bool(vec![false, true, false]));
    assert_eq!(out("out_u8"), &TensorData::U8(vec![0, 14, 254]));
    assert_eq!(out("out_u16"), &TensorData::U16(vec![0, 600, 65534]));
    assert_eq!(
        out("out_u32"),
        &TensorData::U32(vec![0, 140000, 4294967294])
    );
    assert_eq!(
        out("out_u64"),
        &TensorData::U64(vec![0, 2, 9223372036854775806])
    );
    assert_eq!(out("out_i8"), &TensorData::I8(vec![-128, 0, 126]));
    assert_eq!(out("out_i16"), &TensorData::I16(vec![-32768, 2, 32766]));
    assert_eq!(out("out_i32"), &TensorData::I32(vec![-10, 0, 2147483646]));
    assert_eq!(out("out_i64"), &TensorData::I64(vec![i64::MIN, 4, 6]));
    assert_eq!(out("out_f16"), &TensorData::F16(vec![1.0, -2.5, 2000.0]));
    assert_eq!(out("out_f32"), &TensorData::F32(vec![0.2, -5.0, 2e30]));
    assert_eq!(out("out_f64"), &TensorData::F64(vec![0.2, -5.0, 2e300]));
    for t in &resp.outputs {
        assert_eq!(t.shape, vec![3], "{}", t.name);
    }

    // The typed request builder says the same thing, and `outputs` selects.
    let req = InferRequest::new()
        .id("typed")
        .output("out_i64")
        .output("out_bool");
    let mut req = req;
    for (name, dt, _) in &inputs {
        let data = match dt {
            DataType::Bool => TensorData::Bool(vec![true]),
            DataType::Uint8 => TensorData::U8(vec![1]),
            DataType::Uint16 => TensorData::U16(vec![1]),
            DataType::Uint32 => TensorData::U32(vec![1]),
            DataType::Uint64 => TensorData::U64(vec![1]),
            DataType::Int8 => TensorData::I8(vec![1]),
            DataType::Int16 => TensorData::I16(vec![1]),
            DataType::Int32 => TensorData::I32(vec![1]),
            DataType::Int64 => TensorData::I64(vec![21]),
            DataType::Fp16 => TensorData::F16(vec![1.0]),
            DataType::Fp32 => TensorData::F32(vec![1.0]),
            DataType::Fp64 => TensorData::F64(vec![1.0]),
            DataType::Bytes => unreachable!(),
        };
        req = req.input(Tensor::new(name.clone(), vec![1], data).unwrap());
    }
    let resp = c.infer("types", &req).unwrap();
    let names: Vec<&str> = resp.outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["out_i64", "out_bool"]);
    assert_eq!(resp.outputs[0].as_i64().unwrap(), &[42]);
    assert_eq!(resp.outputs[1].as_bool().unwrap(), &[false]);
}

// ---------------------------------------------------------- bad requests --

/// Sends a raw request and reads the raw answer; the body is written from
/// another thread so a server that answers early (413) is still heard.
fn raw(method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let mut stream = TcpStream::connect(server()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body); // may be cut short by an early answer
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = w.join();
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: error body is not JSON ({e}): {body:?}"));
    (status, body)
}

/// A good magika request still answers, on a new connection.
fn still_serving() {
    let mut c = client();
    assert!(c.live().unwrap());
    let x = TensorData::I32(vec![65; 2048]);
    let resp = c
        .infer(
            "magika",
            &InferRequest::new().input(Tensor::new("bytes", vec![1, 2048], x).unwrap()),
        )
        .unwrap();
    assert_eq!(resp.outputs[0].shape, vec![1, 214]);
}

fn magika_body(name: &str, datatype: &str, shape: &[u64], n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": vec![1; n]}]
    }))
    .unwrap()
}

#[test]
fn bad_requests_get_precise_oip_errors_and_the_server_keeps_serving() {
    let infer = "/v2/models/magika/infer";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            infer,
            magika_body("bits", "INT32", &[1, 2048], 2048),
            400,
            r#"model "magika" has no input "bits" (its inputs: "bytes" INT32 [1, 2048])"#,
        ),
        (
            "POST",
            infer,
            magika_body("bytes", "INT32", &[1, 1024], 1024),
            400,
            r#"input "bytes" has shape [1, 1024], model "magika" expects [1, 2048]"#,
        ),
        (
            "POST",
            infer,
            magika_body("bytes", "FP32", &[1, 2048], 2048),
            400,
            r#"input "bytes" has datatype FP32, model "magika" expects INT32"#,
        ),
        (
            "POST",
            infer,
            magika_body("bytes", "INT32", &[1, 2048], 2047),
            400,
            r#"input "bytes": shape [1, 2048] needs 2048 elements, data has 2047"#,
        ),
        (
            "POST",
            infer,
            magika_body("bytes", "INT64", &[1, 2048], 2048),
            400,
            r#"input "bytes" has datatype INT64, model "magika" expects INT32"#,
        ),
        (
            "POST",
            infer,
            magika_body("bytes", "INT3", &[1, 2048], 2048),
            400,
            r#"input "bytes": unknown datatype "INT3""#,
        ),
        (
            "POST",
            infer,
            br#"{"inputs": [{"name": "bytes", "datatype": "INT32", "shape": [1, 2048], "data": [1, 2,"#.to_vec(),
            400,
            "malformed request JSON: EOF while parsing",
        ),
        (
            "POST",
            infer,
            b"not json".to_vec(),
            400,
            "malformed request JSON: expected ident at line 1 column 2",
        ),
        (
            "POST",
            infer,
            br#"{"inputs": []}"#.to_vec(),
            400,
            r#"input "bytes" is missing (model "magika" needs "bytes" INT32 [1, 2048])"#,
        ),
        (
            "POST",
            infer,
            serde_json::to_vec(&json!({"inputs": [
                {"name": "bytes", "datatype": "INT32", "shape": [1, 2048], "data": vec![1; 2048]},
                {"name": "bytes", "datatype": "INT32", "shape": [1, 2048], "data": vec![1; 2048]}]}))
            .unwrap(),
            400,
            r#"input "bytes" is given twice"#,
        ),
        (
            "POST",
            infer,
            serde_json::to_vec(&json!({"inputs": [
                {"name": "bytes", "datatype": "INT32", "shape": [1, 2048], "data": vec![1; 2048]}],
                "outputs": [{"name": "label"}]}))
            .unwrap(),
            400,
            r#"model "magika" has no output "label" (its outputs: "target_label" FP32 [1, 214])"#,
        ),
        (
            "POST",
            infer,
            serde_json::to_vec(&json!({"inputs": [
                {"name": "bytes", "datatype": "INT32", "shape": [1, 2048], "data": [[300.5]]}]}))
            .unwrap(),
            400,
            r#"input "bytes": INT32 data: element 0 is 300.5, expected an integer in the range of INT32"#,
        ),
        (
            "POST",
            "/v2/models/nosuch/infer",
            magika_body("bytes", "INT32", &[1, 2048], 2048),
            404,
            r#"unknown model "nosuch" (served: squeezenet, resnet50, magika, types)"#,
        ),
        ("GET", "/v2/models/nosuch", Vec::new(), 404, r#"unknown model "nosuch""#),
        ("GET", "/v2/models/nosuch/ready", Vec::new(), 404, r#"unknown model "nosuch""#),
        (
            "POST",
            "/v2/models/magika/versions/2/infer",
            magika_body("bytes", "INT32", &[1, 2048], 2048),
            404,
            r#"model "magika" has no version "2" (served: 1)"#,
        ),
        ("GET", "/v3/health/live", Vec::new(), 404, "no endpoint GET /v3/health/live"),
        ("GET", infer, Vec::new(), 405, "method GET is not allowed on /v2/models/magika/infer"),
        (
            "POST",
            "/v2/health/live",
            Vec::new(),
            405,
            "method POST is not allowed on /v2/health/live",
        ),
        (
            "POST",
            infer,
            vec![b' '; BODY_LIMIT + 1],
            413,
            "request body is larger than the server's limit of 4194304 bytes",
        ),
        (
            "POST",
            infer,
            vec![b' '; 64 << 20],
            413,
            "request body is larger than the server's limit of 4194304 bytes",
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, want_status, want_error) in cases {
        let (status, body) = raw(method, path, body);
        let error = body["error"].as_str().unwrap_or_default().to_string();
        if status != want_status
            || !error.starts_with(want_error)
            || body.as_object().map(|o| o.len()) != Some(1)
        {
            wrong.push(format!(
                "{method} {path}: {status} {body}, expected {want_status} {want_error:?}"
            ));
        }
        still_serving();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_body_at_the_limit_is_read() {
    // BODY_LIMIT bytes exactly: read, and refused only as a request.
    let mut body = magika_body("bytes", "INT32", &[1, 2048], 2048);
    body.resize(BODY_LIMIT, b' ');
    let (status, err) = raw("POST", "/v2/models/magika/infer", body);
    assert_eq!(status, 200, "{err}");
}

#[test]
fn client_reports_server_errors_in_one_line() {
    let mut c = client();
    let e = c.model_metadata("nosuch").unwrap_err();
    assert!(matches!(e, ClientError::Status { status: 404, .. }));
    assert_eq!(
        e.to_string(),
        r#"the inference server answered 404: unknown model "nosuch" (served: squeezenet, resnet50, magika, types)"#
    );
}

// ------------------------------------------------ several models at once --

#[test]
fn several_models_are_served_at_once() {
    let mut c = client();
    assert!(c.live().unwrap());
    assert!(c.ready().unwrap());
    let meta = c.server_metadata().unwrap();
    assert_eq!(meta.name, "cocoon-infer");
    assert!(meta.extensions.is_empty());
    for (name, input, shape) in [
        ("squeezenet", "data_0", vec![1, 3, 224, 224]),
        ("resnet50", "gpu_0/data_0", vec![1, 3, 224, 224]),
        ("magika", "bytes", vec![1, 2048]),
    ] {
        let m = c.model_metadata(name).unwrap();
        assert_eq!(m.name, name);
        assert_eq!(m.platform, "onnx_onnxv1");
        assert_eq!(m.versions, ["1"]);
        assert_eq!(m.inputs[0].name, input);
        assert_eq!(m.inputs[0].shape, shape);
        for path in [
            format!("/v2/models/{name}/ready"),
            format!("/v2/models/{name}/versions/1/ready"),
        ] {
            let r = c.request("GET", &path, None).unwrap();
            assert_eq!(r.status, 200);
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v, json!({"name": name, "ready": true}));
        }
        let r = c
            .request("GET", &format!("/v2/models/{name}/versions/1"), None)
            .unwrap();
        let v: ModelMetadata = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, m);
    }

    // Concurrent inferences on different models, each answer checked.
    let squeeze = std::fs::read(model("squeezenet.request.json")).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let squeeze = squeeze.clone();
            std::thread::spawn(move || {
                let mut c = client();
                for i in 0..6 {
                    if (t + i) % 2 == 0 {
                        let r = c.infer_json("squeezenet", &squeeze).unwrap();
                        let p = r.outputs[0].as_f32().unwrap();
                        assert!(p.iter().all(|&v| (v - 0.001).abs() < 1e-4));
                    } else {
                        let x = TensorData::I32(vec![t * 10 + i; 2048]);
                        let req = InferRequest::new()
                            .id(format!("{t}-{i}"))
                            .input(Tensor::new("bytes", vec![1, 2048], x).unwrap());
                        let path = "/v2/models/magika/versions/1/infer";
                        let r = c.request("POST", path, Some(&req.to_json())).unwrap();
                        assert_eq!(r.status, 200);
                        let r = cocoon_infer::InferResponse::from_json(&r.body).unwrap();
                        assert_eq!(r.id, Some(format!("{t}-{i}")));
                        assert_eq!(r.model_version.as_deref(), Some("1"));
                        let p = r.outputs[0].as_f32().unwrap();
                        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

// ------------------------------------------------------------- load errors --

#[test]
fn models_that_cannot_be_loaded_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let engine = EngineOptions { threads: 1 };
    let missing = dir.path().join("missing.onnx");
    let e = Model::load("m", &missing, &engine).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "cannot read model {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    let e = Model::load("m", &text, &engine).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot load model {}: not an ONNX model: ",
            text.display()
        )),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = Model::load("a/b", &model("magika.onnx"), &engine)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"bad model name "a/b": use 1-128 letters, digits, '_', '-' or '.'"#
    );
    let specs = vec![
        ("m".to_string(), model("squeezenet.onnx")),
        ("m".to_string(), model("resnet50.onnx")),
    ];
    let e = Models::load(&specs, &engine).unwrap_err().to_string();
    assert_eq!(
        e,
        r#"bad model name "m": two models have this name; give one another with NAME=FILE"#
    );
}
