//! Scalar functions KFL needs that DataFusion does not have.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

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
