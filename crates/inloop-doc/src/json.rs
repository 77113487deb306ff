//! Conversions between JSON values and Yrs values.
//!
//! Numbers are stored as floats, the way Yjs and jupyter_ydoc store them, and read back as
//! integers whenever they are integral (jupyter_ydoc's `cast_all`), so that `1` survives a trip
//! through any client. Integers beyond 2^53 keep their exact value as Yrs integers.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map as JsonMap, Number as JsonNumber, Value};
use yrs::types::ToJson;
use yrs::{Any, Array, GetString, Map, Number, Out, ReadTxn};

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub(crate) fn json_to_any(value: &Value) -> Any {
    match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => Any::Number(json_number(n)),
        Value::String(s) => Any::String(Arc::from(s.as_str())),
        Value::Array(items) => Any::Array(items.iter().map(json_to_any).collect()),
        Value::Object(map) => Any::Map(Arc::new(json_map_to_any(map))),
    }
}

pub(crate) fn json_map_to_any(map: &JsonMap<String, Value>) -> HashMap<String, Any> {
    map.iter()
        .map(|(k, v)| (k.clone(), json_to_any(v)))
        .collect()
}

pub(crate) fn json_number(n: &JsonNumber) -> Number {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) if (i as f64).abs() > MAX_SAFE_INTEGER => Number::Int(i),
        (_, Some(f)) => Number::Float(f),
        (Some(i), None) => Number::Int(i),
        (None, None) => Number::Float(f64::NAN),
    }
}

pub(crate) fn any_to_json(any: &Any) -> Value {
    match any {
        Any::Null | Any::Undefined => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(n) => number_to_json(*n),
        Any::String(s) => Value::String(s.to_string()),
        Any::Buffer(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        Any::Array(items) => Value::Array(items.iter().map(any_to_json).collect()),
        Any::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), any_to_json(v)))
                .collect(),
        ),
    }
}

fn number_to_json(n: Number) -> Value {
    match n {
        Number::Int(i) => Value::from(i),
        Number::Float(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER => {
            Value::from(f as i64)
        }
        Number::Float(f) => JsonNumber::from_f64(f).map_or(Value::Null, Value::Number),
    }
}

/// Any value read from the document as JSON: shared types become their JSON shape (a `Y.Text`
/// becomes its string), so nested maps written by other clients read the same as plain values.
pub(crate) fn out_to_json<T: ReadTxn>(txn: &T, out: &Out) -> Value {
    match out {
        Out::Any(any) => any_to_json(any),
        Out::YText(text) => Value::String(text.get_string(txn)),
        Out::YMap(map) => Value::Object(map_to_json(txn, map)),
        Out::YArray(array) => Value::Array(array.iter(txn).map(|v| out_to_json(txn, &v)).collect()),
        Out::YXmlText(text) => Value::String(text.get_string(txn)),
        other => any_to_json(&other.to_json(txn)),
    }
}

pub(crate) fn map_to_json<T: ReadTxn, M: Map>(txn: &T, map: &M) -> JsonMap<String, Value> {
    map.iter(txn)
        .map(|(k, v)| (k.to_string(), out_to_json(txn, &v)))
        .collect()
}

/// Reads a number stored as a float (or an integer) as an integer, if it is one.
pub(crate) fn out_as_i64(out: &Out) -> Option<i64> {
    match out {
        Out::Any(Any::Number(n)) => n.as_i64(),
        _ => None,
    }
}

pub(crate) fn out_as_f64(out: &Out) -> Option<f64> {
    match out {
        Out::Any(Any::Number(n)) => n.as_f64(),
        _ => None,
    }
}

pub(crate) fn out_as_string<T: ReadTxn>(txn: &T, out: &Out) -> Option<String> {
    match out {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        Out::YText(text) => Some(text.get_string(txn)),
        _ => None,
    }
}

/// An integer stored the way Yjs stores numbers.
pub(crate) fn float_any(n: i64) -> Any {
    if (n as f64).abs() <= MAX_SAFE_INTEGER {
        Any::Number(Number::Float(n as f64))
    } else {
        Any::Number(Number::Int(n))
    }
}
