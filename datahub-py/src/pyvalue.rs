//! Answers as Python objects: a value of the server's `api` types, serialized as the API
//! writes it (`serde_json::Value`), made into the `dict`s, `list`s, `str`s, `int`s, `float`s,
//! `bool`s and `None`s that `json.loads` would make of the API's text, without the text.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use serde::Serialize;
use serde_json::Value;

use crate::errors::Raised;

/// `value` as the API's JSON, ready to cross to Python (made on a runtime thread, without the
/// GIL).
///
/// # Errors
/// When the value cannot be serialized (a bug: the `api` types always can).
pub fn to_value<T: Serialize>(value: &T) -> Result<Value, Raised> {
    serde_json::to_value(value).map_err(|e| Raised::internal(format!("could not write JSON: {e}")))
}

/// The Python object of a JSON value (with the GIL).
///
/// # Errors
/// When Python cannot allocate an object.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                // Every other JSON number is a float (serde_json has no other kind here).
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(PyString::new(py, key), to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
