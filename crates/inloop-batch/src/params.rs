//! Notebook parameters the papermill way: typed values, written as Python literals into a cell
//! tagged `injected-parameters` right after the cell tagged `parameters`.

use std::fmt::{self, Write as _};

use inloop_doc::Notebook;
use serde_json::{Value, json};

use crate::{Error, Result};

/// The tag of the cell whose defaults the injected values follow.
pub const PARAMETERS_TAG: &str = "parameters";
/// The tag of the cell holding the injected values.
pub const INJECTED_TAG: &str = "injected-parameters";

/// A parameter's value: what YAML and papermill's command line can say, and Python can read back
/// as a literal of the same type.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Param>),
    /// Keys in the order given (any scalar, as in a Python dict).
    Dict(Vec<(Param, Param)>),
}

impl Param {
    /// A `-p NAME=VALUE` value, typed as papermill types `-p NAME VALUE`: `True`, `False`,
    /// `None`, an integer, a float, otherwise the text as a string.
    pub fn from_cli(text: &str) -> Param {
        match text {
            "True" => Param::Bool(true),
            "False" => Param::Bool(false),
            "None" => Param::None,
            _ => {
                if let Ok(int) = text.trim().replace('_', "").parse::<i64>() {
                    Param::Int(int)
                } else if let Some(float) = python_float(text.trim()) {
                    Param::Float(float)
                } else {
                    Param::Str(text.to_owned())
                }
            }
        }
    }

    /// A YAML value, typed as YAML types it.
    pub fn from_yaml(value: &serde_yaml_ng::Value) -> Result<Param> {
        use serde_yaml_ng::Value as Y;
        Ok(match value {
            Y::Null => Param::None,
            Y::Bool(b) => Param::Bool(*b),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => Param::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Y::String(s) => Param::Str(s.clone()),
            Y::Sequence(items) => {
                Param::List(items.iter().map(Param::from_yaml).collect::<Result<_>>()?)
            }
            Y::Mapping(map) => Param::Dict(
                map.iter()
                    .map(|(k, v)| Ok((Param::from_yaml(k)?, Param::from_yaml(v)?)))
                    .collect::<Result<_>>()?,
            ),
            Y::Tagged(tagged) => Param::from_yaml(&tagged.value)?,
        })
    }

    /// The value as JSON, for the notebook's metadata (NaN and infinities become `null`, keys
    /// their Python spelling when they are not strings).
    pub fn to_json(&self) -> Value {
        match self {
            Param::None => Value::Null,
            Param::Bool(b) => json!(b),
            Param::Int(i) => json!(i),
            Param::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Param::Str(s) => json!(s),
            Param::List(items) => Value::Array(items.iter().map(Param::to_json).collect()),
            Param::Dict(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Param::Str(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

/// Python's `float()` for the spellings Rust parses too (and `inf`/`nan` in any case).
fn python_float(text: &str) -> Option<f64> {
    let cleaned = text.replace('_', "");
    let lower = cleaned.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if !(body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || ["inf", "infinity", "nan"].contains(&body))
    {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// The value as a Python literal.
impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::None => f.write_str("None"),
            Param::Bool(true) => f.write_str("True"),
            Param::Bool(false) => f.write_str("False"),
            Param::Int(i) => write!(f, "{i}"),
            Param::Float(x) if x.is_nan() => f.write_str("float('nan')"),
            Param::Float(x) if x.is_infinite() && *x > 0.0 => f.write_str("float('inf')"),
            Param::Float(x) if x.is_infinite() => f.write_str("float('-inf')"),
            // `{:?}` always keeps a `.` or an exponent: `3.0`, `1e21`; Python reads both.
            Param::Float(x) => write!(f, "{x:?}"),
            // A JSON string is a valid Python string literal (`\uXXXX` escapes included).
            Param::Str(s) => f.write_str(&Value::String(s.clone()).to_string()),
            Param::List(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Param::Dict(entries) => {
                f.write_char('{')?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

/// Named values, in the order they were given; setting a name again replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parameters(Vec<(String, Param)>);

impl Parameters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (a Python identifier) to `value`.
    pub fn set(&mut self, name: &str, value: Param) -> Result<()> {
        if !is_identifier(name) {
            return Err(Error::Parameters(format!(
                "{name:?} is not a Python name: a parameter must be one"
            )));
        }
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
        Ok(())
    }

    /// Sets every entry of `other`, in its order.
    pub fn extend(&mut self, other: &Parameters) {
        for (name, value) in &other.0 {
            match self.0.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = value.clone(),
                None => self.0.push((name.clone(), value.clone())),
            }
        }
    }

    /// A YAML mapping's entries as parameters.
    pub fn from_yaml_mapping(mapping: &serde_yaml_ng::Mapping) -> Result<Self> {
        let mut parameters = Self::new();
        for (key, value) in mapping {
            let Some(name) = key.as_str() else {
                return Err(Error::Parameters(format!(
                    "a parameter's name must be a string, not {key:?}"
                )));
            };
            parameters.set(name, Param::from_yaml(value)?)?;
        }
        Ok(parameters)
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn remove(&mut self, name: &str) -> Option<Param> {
        let index = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(index).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The source of the injected cell, as papermill writes it.
    pub fn python_source(&self) -> String {
        let mut source = "# Parameters\n".to_owned();
        for (name, value) in &self.0 {
            let _ = writeln!(source, "{name} = {value}");
        }
        source
    }

    /// As a JSON object, for `metadata.papermill.parameters`.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        )
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn tags(metadata: &inloop_doc::JsonMap) -> Vec<&str> {
    metadata
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Injects `parameters` as papermill does: a code cell tagged `injected-parameters` right after
/// the first cell tagged `parameters`, or at the top when there is none. An injected cell from
/// an earlier run is replaced. Nothing is injected when `parameters` is empty. Returns the
/// injected cell's id.
pub fn inject(notebook: &Notebook, parameters: &Parameters) -> Result<Option<String>> {
    if parameters.is_empty() {
        return Ok(None);
    }
    for cell in notebook.cells() {
        if tags(&cell.metadata).contains(&INJECTED_TAG) {
            notebook.delete_cell(&cell.id)?;
        }
    }
    let cells = notebook.cells();
    let index = cells
        .iter()
        .position(|cell| tags(&cell.metadata).contains(&PARAMETERS_TAG))
        .map_or(0, |i| i + 1);
    let cell = json!({
        "cell_type": "code",
        "execution_count": null,
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": parameters.python_source(),
    });
    let id = notebook.insert_cell_from_json(index as u32, cell)?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values_are_typed_as_papermill_types_them() {
        assert_eq!(Param::from_cli("12"), Param::Int(12));
        assert_eq!(Param::from_cli("-3"), Param::Int(-3));
        assert_eq!(Param::from_cli("1.5"), Param::Float(1.5));
        assert_eq!(Param::from_cli("1e3"), Param::Float(1000.0));
        assert_eq!(Param::from_cli("True"), Param::Bool(true));
        assert_eq!(Param::from_cli("None"), Param::None);
        assert_eq!(Param::from_cli("true"), Param::Str("true".into()));
        assert_eq!(Param::from_cli("info"), Param::Str("info".into()));
        assert_eq!(Param::from_cli("e5"), Param::Str("e5".into()));
        assert!(matches!(Param::from_cli("nan"), Param::Float(x) if x.is_nan()));
    }

    #[test]
    fn python_literals() {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{a: 1, b: 2.0, c: true, d: \"it's \\\"q\\\"\\n\", e: [1, x, null], f: {k: 1, 2: .inf}}",
        )
        .unwrap();
        let params = Parameters::from_yaml_mapping(yaml.as_mapping().unwrap()).unwrap();
        assert_eq!(
            params.python_source(),
            "# Parameters\na = 1\nb = 2.0\nc = True\nd = \"it's \\\"q\\\"\\n\"\n\
             e = [1, \"x\", None]\nf = {\"k\": 1, 2: float('inf')}\n"
        );
        let mut bad = Parameters::new();
        assert!(bad.set("not a name", Param::None).is_err());
        assert!(bad.set("1x", Param::None).is_err());
    }

    #[test]
    fn injected_after_the_parameters_cell_and_replaced_on_a_second_run() {
        let notebook = Notebook::from_ipynb(
            r##"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
            {"id": "a", "cell_type": "markdown", "metadata": {}, "source": "# t"},
            {"id": "p", "cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = 1",
             "outputs": [], "execution_count": null},
            {"id": "b", "cell_type": "code", "metadata": {}, "source": "print(x)",
             "outputs": [], "execution_count": null}]}"##,
        )
        .unwrap();
        let mut params = Parameters::new();
        params.set("x", Param::Int(2)).unwrap();
        inject(&notebook, &params).unwrap();
        params.set("x", Param::Int(3)).unwrap();
        let id = inject(&notebook, &params).unwrap().unwrap();
        let cells = notebook.cells();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[2].id, id);
        assert_eq!(cells[2].source, "# Parameters\nx = 3\n");
        assert_eq!(tags(&cells[2].metadata), [INJECTED_TAG]);
    }
}
