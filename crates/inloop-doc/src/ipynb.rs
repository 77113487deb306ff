//! `.ipynb` in and out: nbformat 4.0 to 4.5 in, 4.5 out, written the way nbformat writes.
//!
//! Reading checks every field a reader relies on and names the JSON path of the first problem.
//! What nbformat stores as arrays of lines is joined on the way in and split on the way out, with
//! the same rules as nbformat's `rejoin_lines` and `split_lines`. Unknown fields are kept.

use std::collections::{HashMap, HashSet};

use serde_json::{Map as JsonMap, Value};

use crate::node::DocNode;
use crate::path::At;
use crate::schema::{cell as ck, meta as mk, output as ok};
use crate::{CellType, Result};

/// The notebook format we write.
pub(crate) const NBFORMAT: i64 = 4;
pub(crate) const NBFORMAT_MINOR: i64 = 5;

/// A notebook file, checked and normalised: ids on every cell, lines joined, defaults filled.
#[derive(Debug)]
pub(crate) struct NotebookJson {
    pub(crate) metadata: JsonMap<String, Value>,
    /// Top-level fields nbformat does not define, kept as they were.
    pub(crate) extra: JsonMap<String, Value>,
    pub(crate) cells: Vec<JsonMap<String, Value>>,
}

/// [`parse`] for a file's bytes, which nbformat requires to be UTF-8.
pub(crate) fn parse_bytes(bytes: &[u8]) -> Result<NotebookJson> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        At::Root.error(format_args!(
            "not UTF-8 text ({e}); nbformat files are UTF-8 JSON"
        ))
    })?;
    parse(text)
}

pub(crate) fn parse(text: &str) -> Result<NotebookJson> {
    let root = At::Root;
    if text.trim().is_empty() {
        return Err(root.error("the file is empty, not a notebook"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        root.error(format_args!(
            "not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(mut nb) = value else {
        return Err(root.error(format_args!(
            "expected a notebook object, found {}",
            kind(&value)
        )));
    };

    let major_at = root.key(mk::NBFORMAT);
    let major = integer(&major_at, nb.remove(mk::NBFORMAT))?;
    if major != NBFORMAT {
        return Err(major_at.error(format_args!(
            "nbformat {major} is not supported: inloop reads nbformat 4.0 to 4.5 \
             (convert it with `jupyter nbconvert --to notebook --nbformat 4`)"
        )));
    }
    let minor_at = root.key(mk::NBFORMAT_MINOR);
    let minor = integer(&minor_at, nb.remove(mk::NBFORMAT_MINOR))?;
    if minor < 0 {
        return Err(minor_at.error("expected a non-negative integer"));
    }

    let metadata = object_or_default(&root.key(mk::METADATA), nb.remove(mk::METADATA))?;

    let cells_at = root.key("cells");
    let cells = match nb.remove("cells") {
        Some(Value::Array(cells)) => cells,
        Some(other) => {
            return Err(cells_at.error(format_args!(
                "expected a list of cells, found {}",
                kind(&other)
            )));
        }
        None => return Err(cells_at.error("missing: a notebook needs a `cells` list")),
    };
    let mut ids = HashSet::with_capacity(cells.len());
    let mut cells = cells
        .into_iter()
        .enumerate()
        .map(|(i, cell)| normalize_cell(&cells_at.index(i), cell, &mut ids))
        .collect::<Result<Vec<_>>>()?;
    fold_display_updates(&mut cells);

    Ok(NotebookJson {
        metadata,
        extra: nb,
        cells,
    })
}

/// Checks one cell and brings it to the form the document stores. Ids must be unique among
/// those in `ids`; a cell without one (nbformat before 4.5) gets a new one.
pub(crate) fn normalize_cell(
    at: &At<'_>,
    cell: Value,
    ids: &mut HashSet<String>,
) -> Result<JsonMap<String, Value>> {
    let Value::Object(mut cell) = cell else {
        return Err(at.error(format_args!(
            "expected a cell object, found {}",
            kind(&cell)
        )));
    };

    let type_at = at.key(ck::CELL_TYPE);
    let cell_type: CellType = match cell.get(ck::CELL_TYPE) {
        Some(Value::String(s)) => s.parse().map_err(|e| type_at.error(e))?,
        Some(other) => {
            return Err(type_at.error(format_args!("expected a string, found {}", kind(other))));
        }
        None => return Err(type_at.error("missing: every cell needs a cell_type")),
    };

    let id_at = at.key(ck::ID);
    rewrite(&mut cell, ck::ID, |id| {
        let id = match id {
            Some(Value::String(id)) => {
                check_cell_id(&id_at, &id)?;
                if ids.contains(&id) {
                    return Err(id_at.error(format_args!(
                        "duplicate cell id {id:?}: cell ids must be unique within a notebook"
                    )));
                }
                id
            }
            Some(other) => {
                return Err(id_at.error(format_args!("expected a string, found {}", kind(&other))));
            }
            None => crate::ids::unique_cell_id(ids),
        };
        ids.insert(id.clone());
        Ok(Value::String(id))
    })?;

    let source_at = at.key(ck::SOURCE);
    rewrite(&mut cell, ck::SOURCE, |source| match source {
        Some(value) => multiline(&source_at, value).map(Value::String),
        None => Err(source_at.error("missing: every cell needs a source")),
    })?;

    let metadata_at = at.key(ck::METADATA);
    rewrite(&mut cell, ck::METADATA, |metadata| {
        object_or_default(&metadata_at, metadata).map(Value::Object)
    })?;

    match cell_type {
        CellType::Code => {
            let count_at = at.key(ck::EXECUTION_COUNT);
            rewrite(&mut cell, ck::EXECUTION_COUNT, |count| {
                execution_count(&count_at, count)
            })?;
            let outputs_at = at.key(ck::OUTPUTS);
            rewrite(&mut cell, ck::OUTPUTS, |outputs| match outputs {
                Some(Value::Array(outputs)) => outputs
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| normalize_output(&outputs_at.index(i), o).map(Value::Object))
                    .collect::<Result<Vec<_>>>()
                    .map(Value::Array),
                Some(Value::Null) | None => Ok(Value::Array(Vec::new())),
                Some(other) => Err(outputs_at.error(format_args!(
                    "expected a list of outputs, found {}",
                    kind(&other)
                ))),
            })?;
        }
        CellType::Markdown | CellType::Raw => {
            let attachments_at = at.key(ck::ATTACHMENTS);
            match cell.remove(ck::ATTACHMENTS) {
                Some(Value::Object(attachments)) => {
                    let attachments = attachments
                        .into_iter()
                        .map(|(name, bundle)| {
                            let bundle = mime_bundle(&attachments_at.key(&name), bundle)?;
                            Ok((name, Value::Object(bundle)))
                        })
                        .collect::<Result<JsonMap<_, _>>>()?;
                    if !attachments.is_empty() {
                        cell.insert(ck::ATTACHMENTS.into(), Value::Object(attachments));
                    }
                }
                Some(Value::Null) | None => {}
                Some(other) => {
                    return Err(attachments_at
                        .error(format_args!("expected an object, found {}", kind(&other))));
                }
            }
        }
    }
    Ok(cell)
}

fn normalize_output(at: &At<'_>, output: Value) -> Result<JsonMap<String, Value>> {
    let Value::Object(mut output) = output else {
        return Err(at.error(format_args!(
            "expected an output object, found {}",
            kind(&output)
        )));
    };
    let type_at = at.key(ok::OUTPUT_TYPE);
    let output_type = match output.get(ok::OUTPUT_TYPE) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(type_at.error(format_args!("expected a string, found {}", kind(other))));
        }
        None => return Err(type_at.error("missing: every output needs an output_type")),
    };
    match output_type.as_str() {
        "stream" => {
            let name_at = at.key(ok::NAME);
            match output.get(ok::NAME) {
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(
                        name_at.error(format_args!("expected a string, found {}", kind(other)))
                    );
                }
                None => {
                    return Err(
                        name_at.error("missing: a stream output needs a name (stdout or stderr)")
                    );
                }
            }
            let text_at = at.key(ok::TEXT);
            rewrite(&mut output, ok::TEXT, |text| match text {
                Some(text) => multiline(&text_at, text).map(Value::String),
                None => Err(text_at.error("missing: a stream output needs its text")),
            })?;
        }
        "display_data" | "update_display_data" | "execute_result" => {
            let data_at = at.key(ok::DATA);
            rewrite(&mut output, ok::DATA, |data| match data {
                Some(data) => mime_bundle(&data_at, data).map(Value::Object),
                None => Err(data_at.error("missing: a display needs its data (a mime bundle)")),
            })?;
            let metadata_at = at.key(ok::METADATA);
            rewrite(&mut output, ok::METADATA, |metadata| {
                object_or_default(&metadata_at, metadata).map(Value::Object)
            })?;
            if output_type == "execute_result" {
                let count_at = at.key(ok::EXECUTION_COUNT);
                rewrite(&mut output, ok::EXECUTION_COUNT, |count| {
                    execution_count(&count_at, count)
                })?;
            }
        }
        "error" => {
            for key in [ok::ENAME, ok::EVALUE] {
                let key_at = at.key(key);
                match output.get(key) {
                    Some(Value::String(_)) => {}
                    Some(other) => {
                        return Err(
                            key_at.error(format_args!("expected a string, found {}", kind(other)))
                        );
                    }
                    None => {
                        return Err(key_at
                            .error("missing: an error output needs ename, evalue and traceback"));
                    }
                }
            }
            let tb_at = at.key(ok::TRACEBACK);
            match output.get(ok::TRACEBACK) {
                Some(Value::Array(lines)) => {
                    for (i, line) in lines.iter().enumerate() {
                        if !line.is_string() {
                            return Err(tb_at
                                .index(i)
                                .error(format_args!("expected a string, found {}", kind(line))));
                        }
                    }
                }
                Some(other) => {
                    return Err(tb_at.error(format_args!(
                        "expected a list of strings, found {}",
                        kind(other)
                    )));
                }
                None => return Err(tb_at.error("missing: an error output needs a traceback list")),
            }
        }
        other => {
            return Err(type_at.error(format_args!(
                "unknown output_type {other:?} (expected stream, display_data, execute_result or error)"
            )));
        }
    }
    Ok(output)
}

/// Folds `update_display_data` outputs into the display they name, as a live notebook shows them.
/// One whose display is not in the notebook is kept as a `display_data`, so nothing is lost.
fn fold_display_updates(cells: &mut [JsonMap<String, Value>]) {
    let mut displays: HashMap<String, (usize, usize)> = HashMap::new();
    for cell_index in 0..cells.len() {
        let Some(Value::Array(outputs)) = cells[cell_index].get_mut(ck::OUTPUTS).map(Value::take)
        else {
            continue;
        };
        let mut kept: Vec<Value> = Vec::with_capacity(outputs.len());
        for mut output in outputs {
            let display_id = display_id(&output).map(str::to_owned);
            if output[ok::OUTPUT_TYPE] == "update_display_data" {
                if let Some(&(c, o)) = display_id.as_ref().and_then(|id| displays.get(id)) {
                    let target = if c == cell_index {
                        &mut kept[o]
                    } else {
                        &mut cells[c][ck::OUTPUTS][o]
                    };
                    target[ok::DATA] = output[ok::DATA].take();
                    target[ok::METADATA] = output[ok::METADATA].take();
                    continue;
                }
                output[ok::OUTPUT_TYPE] = Value::from("display_data");
            }
            if let Some(id) = display_id {
                displays.insert(id, (cell_index, kept.len()));
            }
            kept.push(output);
        }
        cells[cell_index][ck::OUTPUTS] = Value::Array(kept);
    }
}

pub(crate) fn display_id(output: &Value) -> Option<&str> {
    output.get(ok::TRANSIENT)?.get(ok::DISPLAY_ID)?.as_str()
}

/// nbformat 4.5 cell ids: 1 to 64 of `a-z A-Z 0-9 - _`.
fn check_cell_id(at: &At<'_>, id: &str) -> Result<()> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(at.error(format_args!(
            "invalid cell id {id:?}: ids are 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

/// A string, or nbformat's list of lines joined into one.
fn multiline(at: &At<'_>, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Array(lines) => {
            let len = lines.iter().map(|l| l.as_str().map_or(0, str::len)).sum();
            let mut joined = String::with_capacity(len);
            for (i, line) in lines.iter().enumerate() {
                match line {
                    Value::String(line) => joined.push_str(line),
                    other => {
                        return Err(at
                            .index(i)
                            .error(format_args!("expected a string, found {}", kind(other))));
                    }
                }
            }
            Ok(joined)
        }
        other => Err(at.error(format_args!(
            "expected a string or a list of strings, found {}",
            kind(&other)
        ))),
    }
}

/// A mime bundle: JSON mime types hold any JSON; the others hold text, joined if it is in lines.
fn mime_bundle(at: &At<'_>, value: Value) -> Result<JsonMap<String, Value>> {
    let Value::Object(bundle) = value else {
        return Err(at.error(format_args!(
            "expected a mime bundle object, found {}",
            kind(&value)
        )));
    };
    bundle
        .into_iter()
        .map(|(mime, data)| {
            if is_json_mime(&mime) {
                Ok((mime, data))
            } else {
                let data = multiline(&at.key(&mime), data)?;
                Ok((mime, Value::String(data)))
            }
        })
        .collect()
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn integer(at: &At<'_>, value: Option<Value>) -> Result<i64> {
    match value {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| at.error(format_args!("expected an integer, found {n}"))),
        Some(other) => Err(at.error(format_args!("expected an integer, found {}", kind(&other)))),
        None => Err(at.error("missing: a notebook needs an integer here")),
    }
}

/// Sets `map[key]` to what `f` makes of its current value, in place when the key is there.
fn rewrite(
    map: &mut JsonMap<String, Value>,
    key: &str,
    f: impl FnOnce(Option<Value>) -> Result<Value>,
) -> Result<()> {
    match map.get_mut(key) {
        Some(slot) => *slot = f(Some(slot.take()))?,
        None => {
            map.insert(key.to_owned(), f(None)?);
        }
    }
    Ok(())
}

fn execution_count(at: &At<'_>, value: Option<Value>) -> Result<Value> {
    match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(value) => integer(at, Some(value))
            .map(Value::from)
            .map_err(|_| at.error("expected an integer or null")),
    }
}

fn object_or_default(at: &At<'_>, value: Option<Value>) -> Result<JsonMap<String, Value>> {
    match value {
        Some(Value::Object(map)) => Ok(map),
        None | Some(Value::Null) => Ok(JsonMap::new()),
        Some(other) => Err(at.error(format_args!("expected an object, found {}", kind(&other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---- into the document ------------------------------------------------------------------------

/// The document form of a normalised cell: `source` a `Y.Text`, `metadata` a `Y.Map`, `outputs`
/// a `Y.Array` of `Y.Map`s, numbers as floats, and jupyter_ydoc's `execution_state` on code cells.
pub(crate) fn cell_entries(cell: JsonMap<String, Value>) -> Vec<(String, DocNode)> {
    let is_code = cell.get(ck::CELL_TYPE).and_then(Value::as_str) == Some(CellType::Code.as_str());
    let has_state = cell.contains_key(ck::EXECUTION_STATE);
    let mut entries: Vec<(String, DocNode)> = cell
        .into_iter()
        .map(|(key, value)| {
            let node = match (key.as_str(), value) {
                (ck::SOURCE, Value::String(source)) => DocNode::Text(source),
                (ck::METADATA, Value::Object(metadata)) => DocNode::Map(any_entries(&metadata)),
                (ck::OUTPUTS, Value::Array(outputs)) => DocNode::Array(
                    outputs
                        .into_iter()
                        .filter_map(|o| match o {
                            Value::Object(o) => Some(DocNode::Map(output_entries(o))),
                            _ => None,
                        })
                        .collect(),
                ),
                (_, value) => DocNode::Json(value),
            };
            (key, node)
        })
        .collect();
    if is_code && !has_state {
        entries.push((
            ck::EXECUTION_STATE.into(),
            DocNode::Json(crate::ExecutionState::Idle.as_str().into()),
        ));
    }
    entries
}

/// An output's `Y.Map`; a stream's text is a `Y.Text` so later output appends to it.
pub(crate) fn output_entries(output: JsonMap<String, Value>) -> Vec<(String, DocNode)> {
    let is_stream = output.get(ok::OUTPUT_TYPE).and_then(Value::as_str) == Some("stream");
    output
        .into_iter()
        .map(|(key, value)| {
            let node = match value {
                Value::String(text) if is_stream && key == ok::TEXT => DocNode::Text(text),
                value => DocNode::Json(value),
            };
            (key, node)
        })
        .collect()
}

/// A metadata map: a `Y.Map` whose values are plain.
pub(crate) fn any_entries(map: &JsonMap<String, Value>) -> Vec<(String, DocNode)> {
    map.iter()
        .map(|(k, v)| (k.clone(), DocNode::Json(v.clone())))
        .collect()
}

// ---- out of the document ----------------------------------------------------------------------

/// A cell read from the document (as JSON), in the form nbformat writes: our in-memory keys
/// dropped, duplicate or missing ids repaired, lines split.
pub(crate) fn export_cell(
    mut cell: JsonMap<String, Value>,
    index: usize,
    ids: &mut HashSet<String>,
) -> JsonMap<String, Value> {
    let cell_type = cell
        .get(ck::CELL_TYPE)
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<CellType>().ok())
        .unwrap_or(CellType::Raw);
    cell.insert(ck::CELL_TYPE.into(), Value::from(cell_type.as_str()));

    // Concurrent moves (a delete and a re-insert on each side) can leave two copies of a cell.
    let id = match cell.get(ck::ID).and_then(Value::as_str) {
        Some(id) if !ids.contains(id) && check_cell_id(&At::Root, id).is_ok() => id.to_owned(),
        Some(id) => unique_variant(
            &id.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(48)
                .collect::<String>(),
            ids,
        ),
        None => unique_variant(&format!("cell-{index}"), ids),
    };
    ids.insert(id.clone());
    cell.insert(ck::ID.into(), Value::String(id));

    split_into_lines(cell.entry(ck::SOURCE).or_insert_with(|| Value::from("")));
    match cell.get_mut(ck::METADATA) {
        // nbformat's strip_transient: trust is decided per machine, not stored.
        Some(Value::Object(metadata)) => {
            metadata.remove("trusted");
        }
        _ => {
            cell.insert(ck::METADATA.into(), Value::Object(JsonMap::new()));
        }
    }
    match cell_type {
        CellType::Code => {
            cell.remove(ck::EXECUTION_STATE);
            cell.entry(ck::EXECUTION_COUNT).or_insert(Value::Null);
            let outputs = cell
                .entry(ck::OUTPUTS)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(outputs) = outputs {
                outputs.iter_mut().for_each(export_output);
            }
        }
        CellType::Markdown | CellType::Raw => match cell.get_mut(ck::ATTACHMENTS) {
            Some(Value::Object(attachments)) if !attachments.is_empty() => {
                attachments.values_mut().for_each(split_mime_bundle);
            }
            Some(_) => {
                cell.remove(ck::ATTACHMENTS);
            }
            None => {}
        },
    }
    cell
}

fn unique_variant(base: &str, ids: &HashSet<String>) -> String {
    let base = if base.is_empty() { "cell" } else { base };
    (1..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !ids.contains(candidate))
        .unwrap_or_else(|| base.to_owned())
}

fn export_output(output: &mut Value) {
    let Value::Object(output) = output else {
        return;
    };
    output.remove(ok::TRANSIENT);
    match output.get(ok::OUTPUT_TYPE).and_then(Value::as_str) {
        Some("stream") => {
            if let Some(text) = output.get_mut(ok::TEXT) {
                split_into_lines(text);
            }
        }
        Some("display_data" | "execute_result") => {
            if let Some(data) = output.get_mut(ok::DATA) {
                split_mime_bundle(data);
            }
        }
        _ => {}
    }
}

/// nbformat's `_split_mimebundle`: `text/*`, JavaScript and SVG are stored as lists of lines.
fn split_mime_bundle(bundle: &mut Value) {
    let Value::Object(bundle) = bundle else {
        return;
    };
    for (mime, data) in bundle.iter_mut() {
        if mime.starts_with("text/") || mime == "application/javascript" || mime == "image/svg+xml"
        {
            split_into_lines(data);
        }
    }
}

fn split_into_lines(value: &mut Value) {
    if let Value::String(s) = value {
        *value = Value::Array(split_lines(s).map(Value::from).collect());
    }
}

/// Python's `str.splitlines(keepends=True)`, which nbformat uses: the line boundaries are
/// `\n`, `\r`, `\r\n`, `\v`, `\f`, `\x1c`, `\x1d`, `\x1e`, `\x85`, `\u2028` and `\u2029`.
pub(crate) fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '\r')) => {
                    break if rest[i + 1..].starts_with('\n') {
                        i + 2
                    } else {
                        i + 1
                    };
                }
                Some((
                    i,
                    c @ ('\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
                    | '\u{2029}'),
                )) => {
                    break i + c.len_utf8();
                }
                Some(_) => {}
                None => break rest.len(),
            }
        };
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn splits_lines_like_python() {
        let lines: Vec<_> = split_lines("a\nb\r\nc\rd\x0be\u{2028}f").collect();
        assert_eq!(lines, ["a\n", "b\r\n", "c\r", "d\x0b", "e\u{2028}", "f"]);
        assert_eq!(split_lines("").count(), 0);
        assert_eq!(split_lines("x\n").collect::<Vec<_>>(), ["x\n"]);
        assert_eq!(split_lines("\n\n").collect::<Vec<_>>(), ["\n", "\n"]);
    }
}
