//! Typed tensors and their JSON form in the Open Inference Protocol.
//!
//! In JSON a tensor's `data` is row-major, either flat (`[1, 2, 3, 4]`) or
//! nested (`[[1, 2], [3, 4]]`); nesting is flattened and only the element
//! count is checked against the shape. Numbers must fit the datatype: an
//! integer type takes integers (an integral float such as `2.0` too), `BOOL`
//! takes `true`/`false`, `BYTES` takes strings.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;

use crate::datatype::DataType;

/// The elements of a tensor, row-major, one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `UINT8`.
    U8(Vec<u8>),
    /// `UINT16`.
    U16(Vec<u16>),
    /// `UINT32`.
    U32(Vec<u32>),
    /// `UINT64`.
    U64(Vec<u64>),
    /// `INT8`.
    I8(Vec<i8>),
    /// `INT16`.
    I16(Vec<i16>),
    /// `INT32`.
    I32(Vec<i32>),
    /// `INT64`.
    I64(Vec<i64>),
    /// `FP16`, widened to `f32` (rounded to half precision when it reaches
    /// the engine).
    F16(Vec<f32>),
    /// `FP32`.
    F32(Vec<f32>),
    /// `FP64`.
    F64(Vec<f64>),
    /// `BYTES`, as strings (the JSON form carries text).
    Bytes(Vec<String>),
}

macro_rules! each_variant {
    ($data:expr, $v:ident => $e:expr) => {
        match $data {
            TensorData::Bool($v) => $e,
            TensorData::U8($v) => $e,
            TensorData::U16($v) => $e,
            TensorData::U32($v) => $e,
            TensorData::U64($v) => $e,
            TensorData::I8($v) => $e,
            TensorData::I16($v) => $e,
            TensorData::I32($v) => $e,
            TensorData::I64($v) => $e,
            TensorData::F16($v) => $e,
            TensorData::F32($v) => $e,
            TensorData::F64($v) => $e,
            TensorData::Bytes($v) => $e,
        }
    };
}

impl TensorData {
    /// The datatype of these elements.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::Uint8,
            TensorData::U16(_) => DataType::Uint16,
            TensorData::U32(_) => DataType::Uint32,
            TensorData::U64(_) => DataType::Uint64,
            TensorData::I8(_) => DataType::Int8,
            TensorData::I16(_) => DataType::Int16,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::F16(_) => DataType::Fp16,
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses JSON `data` (flat or nested arrays) as elements of `datatype`.
    /// `expected` is the element count the shape asks for; it only sizes the
    /// buffer.
    pub fn from_json(
        datatype: DataType,
        json: &str,
        expected: usize,
    ) -> Result<TensorData, serde_json::Error> {
        // Never trust a client's shape for an allocation: cap the hint.
        let cap = expected.min(json.len() / 2 + 1);
        macro_rules! parse {
            ($variant:ident, $t:ty) => {{
                let mut out: Vec<$t> = Vec::with_capacity(cap);
                let mut de = serde_json::Deserializer::from_str(json);
                Flatten { out: &mut out }.deserialize(&mut de)?;
                de.end()?;
                TensorData::$variant(out)
            }};
        }
        Ok(match datatype {
            DataType::Bool => parse!(Bool, bool),
            DataType::Uint8 => parse!(U8, u8),
            DataType::Uint16 => parse!(U16, u16),
            DataType::Uint32 => parse!(U32, u32),
            DataType::Uint64 => parse!(U64, u64),
            DataType::Int8 => parse!(I8, i8),
            DataType::Int16 => parse!(I16, i16),
            DataType::Int32 => parse!(I32, i32),
            DataType::Int64 => parse!(I64, i64),
            DataType::Fp16 => {
                let mut out: Vec<Half> = Vec::with_capacity(cap);
                let mut de = serde_json::Deserializer::from_str(json);
                Flatten { out: &mut out }.deserialize(&mut de)?;
                de.end()?;
                TensorData::F16(out.into_iter().map(|h| h.0).collect())
            }
            DataType::Fp32 => parse!(F32, f32),
            DataType::Fp64 => parse!(F64, f64),
            DataType::Bytes => parse!(Bytes, String),
        })
    }
}

impl serde::Serialize for TensorData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        each_variant!(self, v => {
            for x in v {
                seq.serialize_element(x)?;
            }
        });
        seq.end()
    }
}

/// A named tensor: shape, datatype (that of its data) and elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The input or output name in the model.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor; fails when the element count does not match the shape.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Tensor, ShapeMismatch> {
        let name = name.into();
        let want = element_count(&shape).ok_or_else(|| ShapeMismatch {
            name: name.clone(),
            shape: shape.clone(),
            len: data.len(),
        })?;
        if want != data.len() {
            return Err(ShapeMismatch {
                name,
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor { name, shape, data })
    }

    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The elements as `f32`, if the datatype is `FP32` or `FP16`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) | TensorData::F16(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `f64`, if the datatype is `FP64`.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `i64`, if the datatype is `INT64`.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `i32`, if the datatype is `INT32`.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `u8`, if the datatype is `UINT8`.
    pub fn as_u8(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::U8(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `bool`, if the datatype is `BOOL`.
    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            TensorData::Bool(v) => Some(v),
            _ => None,
        }
    }
}

/// A tensor whose element count is not the product of its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor {name:?}: shape {shape:?} does not hold {len} elements")]
pub struct ShapeMismatch {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// How many elements it was given.
    pub len: usize,
}

/// The product of the dimensions, `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Formats a shape the way errors show it: `[1, 3, 224, 224]`.
pub(crate) struct ShowShape<'a, T>(pub &'a [T]);

impl<T: fmt::Display> fmt::Display for ShowShape<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

// ---------------------------------------------------------------- parsing --

/// One element type's conversions from JSON scalars.
trait Element: Sized {
    const NAME: &'static str;
    // Each `from_*` accepts the JSON values of its kind that fit; the
    // defaults accept none (a bool tensor takes no numbers).
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    /// What the element accepts, for errors.
    fn expecting() -> &'static str {
        "a number"
    }
}

macro_rules! int_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                // An integral float (2.0) is an integer; 2.5 is not. The range
                // check is on the float, so 1e300 does not wrap.
                if v.fract() == 0.0 && v >= <$t>::MIN as f64 && v <= <$t>::MAX as f64 {
                    Some(v as $t)
                } else {
                    None
                }
            }
            fn expecting() -> &'static str {
                concat!("an integer in the range of ", $name)
            }
        }
    };
}

int_element!(u8, "UINT8");
int_element!(u16, "UINT16");
int_element!(u32, "UINT32");
int_element!(u64, "UINT64");
int_element!(i8, "INT8");
int_element!(i16, "INT16");
int_element!(i32, "INT32");
int_element!(i64, "INT64");

impl Element for f32 {
    const NAME: &'static str = "FP32";
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        let x = v as f32;
        x.is_finite().then_some(x)
    }
    fn expecting() -> &'static str {
        "a number in the range of FP32"
    }
}

impl Element for f64 {
    const NAME: &'static str = "FP64";
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

/// An FP16 element, kept as `f32`; range-checked against half precision.
struct Half(f32);

impl Element for Half {
    const NAME: &'static str = "FP16";
    fn from_u64(v: u64) -> Option<Self> {
        Self::from_f64(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Self::from_f64(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        // 65504 is the largest finite half; anything that rounds past it is inf.
        (v.abs() < 65520.0).then_some(Half(v as f32))
    }
    fn expecting() -> &'static str {
        "a number in the range of FP16"
    }
}

impl Element for bool {
    const NAME: &'static str = "BOOL";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
    fn expecting() -> &'static str {
        "true or false"
    }
}

impl Element for String {
    const NAME: &'static str = "BYTES";
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
    fn expecting() -> &'static str {
        "a string"
    }
}

/// Appends every scalar of a (possibly nested) JSON array to `out`.
struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
}

impl<'de, T: Element> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<T: Element> Flatten<'_, T> {
    fn push<E: de::Error>(&mut self, v: Option<T>, unexp: de::Unexpected<'_>) -> Result<(), E> {
        match v {
            Some(v) => {
                self.out.push(v);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "{} data: element {} is {}, expected {}",
                T::NAME,
                self.out.len(),
                Unexpected(unexp),
                T::expecting()
            ))),
        }
    }
}

/// `serde::de::Unexpected` with a shorter display for numbers.
struct Unexpected<'a>(de::Unexpected<'a>);

impl fmt::Display for Unexpected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            de::Unexpected::Unsigned(v) => write!(f, "{v}"),
            de::Unexpected::Signed(v) => write!(f, "{v}"),
            de::Unexpected::Float(v) => write!(f, "{v:?}"),
            de::Unexpected::Bool(v) => write!(f, "{v}"),
            de::Unexpected::Str(v) => write!(f, "the string {v:?}"),
            ref other => write!(f, "{other}"),
        }
    }
}

impl<'de, T: Element> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} ({})", T::NAME, T::expecting())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), de::Unexpected::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), de::Unexpected::Signed(v))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), de::Unexpected::Float(v))
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), de::Unexpected::Bool(v))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v), de::Unexpected::Str(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dt: DataType, json: &str) -> Result<TensorData, String> {
        TensorData::from_json(dt, json, 0).map_err(|e| e.to_string())
    }

    #[test]
    fn flat_and_nested_are_the_same() {
        assert_eq!(
            parse(DataType::Fp32, "[[1, 2.5], [3, -4]]").unwrap(),
            TensorData::F32(vec![1.0, 2.5, 3.0, -4.0])
        );
        assert_eq!(
            parse(DataType::Int64, "[[[1]], [[2]], [[-3]]]").unwrap(),
            TensorData::I64(vec![1, 2, -3])
        );
        assert_eq!(
            parse(DataType::Bool, "[true, [false]]").unwrap(),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(
            parse(DataType::Bytes, r#"["a", "b"]"#).unwrap(),
            TensorData::Bytes(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse(DataType::Uint8, "[0, 255, 2.0]").unwrap(),
            TensorData::U8(vec![0, 255, 2])
        );
        assert_eq!(
            parse(DataType::Fp16, "[0.5, 65504]").unwrap(),
            TensorData::F16(vec![0.5, 65504.0])
        );
    }

    #[test]
    fn out_of_range_and_wrong_kinds_are_refused_with_the_element() {
        let cases = [
            (DataType::Uint8, "[1, 256]", "UINT8 data: element 1 is 256, expected an integer in the range of UINT8 at line 1 column 7"),
            (DataType::Int32, "[1.5]", "INT32 data: element 0 is 1.5, expected an integer in the range of INT32 at line 1 column 4"),
            (DataType::Uint32, "[-1]", "UINT32 data: element 0 is -1, expected an integer in the range of UINT32 at line 1 column 3"),
            (DataType::Fp32, r#"[1, "x"]"#, "FP32 data: element 1 is the string \"x\", expected a number in the range of FP32 at line 1 column 7"),
            (DataType::Fp32, "[1e39]", "FP32 data: element 0 is 1e39, expected a number in the range of FP32 at line 1 column 5"),
            (DataType::Fp16, "[70000]", "FP16 data: element 0 is 70000, expected a number in the range of FP16 at line 1 column 6"),
            (DataType::Bool, "[1]", "BOOL data: element 0 is 1, expected true or false at line 1 column 2"),
            (DataType::Fp32, "[null]", "invalid type: null, expected an array of FP32 (a number in the range of FP32) at line 1 column 5"),
            (DataType::Fp32, "{}", "invalid type: map, expected an array of FP32 (a number in the range of FP32) at line 1 column 2"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(dt, json, want)| {
                let got = parse(*dt, json).unwrap_err();
                (got != *want).then(|| format!("{json}: got {got:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn serializes_flat() {
        let d = TensorData::F32(vec![0.001, 1.0]);
        assert_eq!(serde_json::to_string(&d).unwrap(), "[0.001,1.0]");
        let d = TensorData::Bool(vec![true]);
        assert_eq!(serde_json::to_string(&d).unwrap(), "[true]");
    }

    #[test]
    fn tensor_checks_its_shape() {
        assert!(Tensor::new("x", vec![2, 2], TensorData::I32(vec![1, 2, 3, 4])).is_ok());
        let e = Tensor::new("x", vec![2, 3], TensorData::I32(vec![1])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tensor \"x\": shape [2, 3] does not hold 1 elements"
        );
        assert!(Tensor::new("x", vec![usize::MAX, 2], TensorData::I32(vec![])).is_err());
    }
}
