//! Scalar functions KFL needs that DataFusion does not have.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use super::jsonpath::{decode_steps, eval, get, is_multi, size, test, Step, Test};

/// `kfl_header(headers_map, name)`: the first value whose header name equals `name`
/// ignoring ASCII case; NULL when absent. Header names are stored as captured (HTTP/1.x keeps
/// the sender's case), so a lookup of `authorization` must find `Authorization`; DataFusion's
/// `map_extract` is exact-match, hence this function. Vectorized: one pass over the map's
/// offsets, keys and values per batch.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HeaderGet {
    signature: Signature,
}

impl HeaderGet {
    pub fn new() -> Self {
        HeaderGet {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for HeaderGet {
    fn default() -> Self {
        Self::new()
    }
}

pub const HEADER_GET: &str = "kfl_header";

impl ScalarUDFImpl for HeaderGet {
    fn name(&self) -> &str {
        HEADER_GET
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [map, name] = args.args.as_slice() else {
            return exec_err!("{HEADER_GET} takes (headers, name)");
        };
        let name = match name {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(n))
                | ScalarValue::LargeUtf8(Some(n))
                | ScalarValue::Utf8View(Some(n)),
            ) => n.as_str(),
            _ => return exec_err!("{HEADER_GET}: the header name must be a string literal"),
        };
        let arr: ArrayRef = match map {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array_of_size(args.number_rows)?,
        };
        if arr.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(new_null_array(
                &DataType::Utf8,
                arr.len(),
            )));
        }
        let Some(map) = arr.as_map_opt() else {
            return exec_err!(
                "{HEADER_GET}: first argument must be a headers map, got {}",
                arr.data_type()
            );
        };
        // The schema says Utf8; a reader that chose another string layout is cast back.
        let keys = cast(map.keys(), &DataType::Utf8)?;
        let values = cast(map.values(), &DataType::Utf8)?;
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        let offsets = map.value_offsets();
        let mut out = StringBuilder::with_capacity(map.len(), map.len() * 16);
        for row in 0..map.len() {
            if map.is_null(row) {
                out.append_null();
                continue;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let found = (start..end)
                .find(|&j| keys.is_valid(j) && keys.value(j).eq_ignore_ascii_case(name));
            match found {
                Some(j) if values.is_valid(j) => out.append_value(values.value(j)),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

pub fn header_get() -> ScalarUDF {
    ScalarUDF::new_from_impl(HeaderGet::new())
}

/// The text of every row of a string or binary column (bodies are read as lossy UTF-8);
/// `None` for NULL.
fn row_texts(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let arr: ArrayRef = match v {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array_of_size(rows)?,
    };
    let binary = matches!(
        arr.data_type(),
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    );
    if arr.data_type() == &DataType::Null {
        return Ok(vec![None; arr.len()]);
    }
    if binary {
        let b = cast(&arr, &DataType::Binary)?;
        let b = b.as_binary::<i32>();
        return Ok((0..b.len())
            .map(|i| {
                b.is_valid(i)
                    .then(|| String::from_utf8_lossy(b.value(i)).into_owned())
            })
            .collect());
    }
    let s = cast(&arr, &DataType::Utf8)?;
    let s = s.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
        .collect())
}

fn scalar_str<'a>(v: &'a ColumnarValue, what: &str) -> Result<&'a str> {
    match v {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(n))
            | ScalarValue::LargeUtf8(Some(n))
            | ScalarValue::Utf8View(Some(n)),
        ) => Ok(n.as_str()),
        _ => exec_err!("KFL: {what} must be a string literal"),
    }
}

fn steps_arg(v: &ColumnarValue) -> Result<Vec<Step>> {
    match decode_steps(scalar_str(v, "the path")?) {
        Some(s) => Ok(s),
        None => exec_err!("KFL: invalid path"),
    }
}

/// Which JSON function a [`JsonFn`] is.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum JsonKind {
    /// `kfl_json(doc, path)` → Utf8: the value (a list as JSON for `.*`/`..` paths).
    Get,
    /// `kfl_json_size(doc, path)` → Int64.
    Size,
    /// `kfl_json_test(doc, path, op, arg)` → Boolean, never NULL.
    Test,
    /// `kfl_bytes(body)` → Int64: the length in bytes, 0 for NULL (DataFusion's
    /// `octet_length` takes text only).
    Bytes,
}

/// Selectors into JSON documents (see `jsonpath.rs`), one pass per batch.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonFn {
    kind: JsonKind,
    signature: Signature,
}

pub const JSON_GET: &str = "kfl_json";
pub const JSON_SIZE: &str = "kfl_json_size";
pub const JSON_TEST: &str = "kfl_json_test";
pub const BYTES: &str = "kfl_bytes";

impl ScalarUDFImpl for JsonFn {
    fn name(&self) -> &str {
        match self.kind {
            JsonKind::Get => JSON_GET,
            JsonKind::Size => JSON_SIZE,
            JsonKind::Test => JSON_TEST,
            JsonKind::Bytes => BYTES,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.kind {
            JsonKind::Get => DataType::Utf8,
            JsonKind::Size | JsonKind::Bytes => DataType::Int64,
            JsonKind::Test => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if self.kind == JsonKind::Bytes {
            let arr: ArrayRef = match &args.args[0] {
                ColumnarValue::Array(a) => a.clone(),
                ColumnarValue::Scalar(s) => s.to_array_of_size(rows)?,
            };
            if arr.data_type() == &DataType::Null {
                return Ok(ColumnarValue::Array(Arc::new(Int64Array::from(
                    vec![0; arr.len()],
                ))));
            }
            let b = cast(&arr, &DataType::Binary)?;
            let b = b.as_binary::<i32>();
            let out: Int64Array = (0..b.len())
                .map(|i| {
                    Some(if b.is_valid(i) {
                        b.value(i).len() as i64
                    } else {
                        0
                    })
                })
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let docs = row_texts(&args.args[0], rows)?;
        let steps = steps_arg(&args.args[1])?;
        let multi = is_multi(&steps);
        let values = |d: &Option<String>| match d {
            Some(s) => eval(Value::String(s.clone()), &steps),
            None => Vec::new(),
        };
        let out: ArrayRef = match self.kind {
            JsonKind::Get => Arc::new(
                docs.iter()
                    .map(|d| get(values(d), multi))
                    .collect::<StringArray>(),
            ),
            JsonKind::Size => Arc::new(
                docs.iter()
                    .map(|d| size(&values(d), multi))
                    .collect::<Int64Array>(),
            ),
            JsonKind::Bytes => return exec_err!("{BYTES}: handled above"),
            JsonKind::Test => {
                let [_, _, op, arg] = args.args.as_slice() else {
                    return exec_err!("{JSON_TEST} takes (doc, path, op, arg)");
                };
                let (op, arg) = (
                    scalar_str(op, "the test")?,
                    scalar_str(arg, "the argument")?,
                );
                let re = match op {
                    "re" | "nre" => Some(regex::Regex::new(arg).map_err(|e| {
                        datafusion::error::DataFusionError::Execution(e.to_string())
                    })?),
                    _ => None,
                };
                let t = match (op, &re) {
                    (_, Some(re)) => Test::Regex(re, op == "nre"),
                    ("starts", _) => Test::StartsWith(arg),
                    ("ends", _) => Test::EndsWith(arg),
                    ("contains", _) => Test::Contains(arg),
                    ("truthy", _) => Test::Truthy,
                    ("exists", _) => Test::Exists,
                    ("haskey", _) => Test::HasKey(arg),
                    (op, _) => Test::Cmp(op, arg),
                };
                Arc::new(
                    docs.iter()
                        .map(|d| Some(test(&values(d), multi, &t)))
                        .collect::<BooleanArray>(),
                )
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn json_fn(kind: JsonKind, n: usize) -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonFn {
        kind,
        signature: Signature::any(n, Volatility::Immutable),
    })
}

pub fn json_get() -> ScalarUDF {
    json_fn(JsonKind::Get, 2)
}

pub fn json_size() -> ScalarUDF {
    json_fn(JsonKind::Size, 2)
}

pub fn json_test() -> ScalarUDF {
    json_fn(JsonKind::Test, 4)
}

pub fn bytes() -> ScalarUDF {
    json_fn(JsonKind::Bytes, 1)
}
