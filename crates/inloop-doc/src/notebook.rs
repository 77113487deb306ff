use std::collections::HashSet;
use std::fmt;

use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, ClientID, Doc, GetString, In, Map, MapRef, OffsetKind,
    Options, Out, ReadTxn, StateVector, Text, TextRef, Transact, TransactionMut, Update,
};

use crate::ipynb::{self, NBFORMAT, NBFORMAT_MINOR};
use crate::json::{float_any, json_to_any, map_to_json, out_as_f64, out_as_i64, out_as_string};
use crate::node::{DocNode, FreshUpdate, map_prelim};
use crate::path::At;
use crate::pyjson;
use crate::schema::{self, cell as ck, meta as mk, output as ok};
use crate::{
    Cell, CellType, Error, ExecutionState, JsonMap as Metadata, Output, Result, StreamName,
    TextDelta,
};

/// The origin of every transaction this API makes. Observers report changes made under any other
/// origin (updates from peers) as remote.
pub(crate) const LOCAL_ORIGIN: &str = "inloop:local";
/// The origin under which [`Notebook::apply_update_v1`] applies peers' updates.
pub(crate) const REMOTE_ORIGIN: &str = "inloop:remote";
/// Client ids are 53-bit, so Yjs peers (JavaScript numbers) read them exactly.
const MAX_CLIENT_ID: u64 = 1 << 53;

/// Seconds the entry of a runtime that said it is `gone` stays for others to see.
pub const FORGET_GONE_AFTER_S: f64 = 600.0;
/// Seconds the entry of a runtime that stopped its heartbeat without a word stays.
pub const FORGET_SILENT_AFTER_S: f64 = 86_400.0;

/// A notebook: a Yrs document in the jupyter_ydoc 4.x schema, plus inloop's `executions` and
/// `runtimes` maps, behind a typed API.
///
/// Every write is one Yrs transaction. Text offsets and lengths count UTF-16 code units, as Yjs,
/// CodeMirror and browsers do. Cheap to clone: clones share the same document.
#[derive(Clone)]
pub struct Notebook {
    doc: Doc,
    meta: MapRef,
    cells: ArrayRef,
    executions: MapRef,
    runtimes: MapRef,
}

impl Default for Notebook {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Notebook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notebook")
            .field("client_id", &self.client_id())
            .field("cells", &self.cell_count())
            .finish()
    }
}

impl Notebook {
    /// An empty document with a random client id: what a peer starts from before it syncs.
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    /// An empty document with this client id (at most 53 bits). Two live peers must never share
    /// a client id.
    pub fn with_client_id(client_id: u64) -> Self {
        Self::with_options(Options::with_client_id(yrs::ClientID::new(client_id)))
    }

    fn with_options(mut options: Options) -> Self {
        options.offset_kind = OffsetKind::Utf16;
        let doc = Doc::with_options(options);
        // Declaring every root up front keeps all peers agreeing on their types.
        doc.get_or_insert_map(schema::STATE);
        Self {
            meta: doc.get_or_insert_map(schema::META),
            cells: doc.get_or_insert_array(schema::CELLS),
            executions: doc.get_or_insert_map(schema::EXECUTIONS),
            runtimes: doc.get_or_insert_map(schema::RUNTIMES),
            doc,
        }
    }

    /// A new notebook as Jupyter makes one: nbformat 4.5 and a single empty code cell.
    pub fn blank() -> Self {
        let notebook = Self::new();
        let mut txn = notebook.write();
        for (key, node) in meta_entries(&Metadata::new(), Metadata::new()) {
            notebook.meta.insert(&mut txn, key, In::from(node));
        }
        let cell = notebook.new_cell_json(CellType::Code, "", &HashSet::new());
        let cell = map_prelim(ipynb::cell_entries(cell));
        notebook.cells.push_back(&mut txn, cell);
        drop(txn);
        notebook
    }

    /// Reads an `.ipynb` file's bytes, which must be UTF-8 (as nbformat requires).
    pub fn from_ipynb_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_update_v1(&Self::ipynb_to_update_v1(bytes)?)
    }

    /// Reads an `.ipynb` (nbformat 4.0 to 4.5). Errors name the JSON path of the problem.
    pub fn from_ipynb(text: &str) -> Result<Self> {
        Self::from_ipynb_bytes(text.as_bytes())
    }

    /// The update (v1 encoding) that creates the document of an `.ipynb` file's bytes, as
    /// `inloop import` stores it. Written directly, several times faster than building a
    /// document and encoding it; it reads back as [`Notebook::from_ipynb`] would build it.
    pub fn ipynb_to_update_v1(bytes: &[u8]) -> Result<Vec<u8>> {
        let parsed = ipynb::parse_bytes(bytes)?;
        let cells = parsed.cells.into_iter();
        let mut update = FreshUpdate::new(ClientID::new(fastrand::u64(1..MAX_CLIENT_ID)));
        update.root_map(schema::META, meta_entries(&parsed.metadata, parsed.extra));
        update.root_array(
            schema::CELLS,
            cells
                .map(|cell| DocNode::Map(ipynb::cell_entries(cell)))
                .collect(),
        );
        Ok(update.finish())
    }

    /// Replaces the whole notebook by an `.ipynb` file's, in one transaction that peers receive
    /// as an edit. Nothing changes when the file is not a valid notebook.
    pub fn replace_from_ipynb(&self, bytes: &[u8]) -> Result<()> {
        let parsed = ipynb::parse_bytes(bytes)?;
        let mut txn = self.write();
        let old_cells = self.cells.len(&txn);
        self.cells.remove_range(&mut txn, 0, old_cells);
        let old_keys: Vec<String> = self.meta.keys(&txn).map(str::to_owned).collect();
        for key in old_keys {
            self.meta.remove(&mut txn, &key);
        }
        for (key, node) in meta_entries(&parsed.metadata, parsed.extra) {
            self.meta.insert(&mut txn, key, In::from(node));
        }
        // Inserting at the front walks no items, where each push_back walks the whole array.
        for cell in parsed.cells.into_iter().rev() {
            let cell = map_prelim(ipynb::cell_entries(cell));
            self.cells.insert(&mut txn, 0, cell);
        }
        Ok(())
    }

    /// A document from one Yrs update (v1 encoding), such as [`Notebook::encode_update_v1`] or
    /// a `.ydoc` file makes.
    pub fn from_update_v1(update: &[u8]) -> Result<Self> {
        let notebook = Self::new();
        notebook.apply_update_v1(update)?;
        Ok(notebook)
    }

    /// Applies a peer's update (v1 encoding). Observers see its changes as remote.
    pub fn apply_update_v1(&self, update: &[u8]) -> Result<()> {
        let update = Update::decode_v1(update).map_err(|e| Error::Update(e.to_string()))?;
        self.apply_update(update)
    }

    /// Applies a peer's update decoded already (a relay checks it before applying).
    pub fn apply_update(&self, update: Update) -> Result<()> {
        self.doc
            .transact_mut_with(REMOTE_ORIGIN)
            .apply_update(update)
            .map_err(|e| Error::Update(e.to_string()))
    }

    /// What this document holds: the last clock it has of every client.
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// What this document has that a peer at `state_vector` lacks, as one update (v1 encoding).
    pub fn encode_diff_v1(&self, state_vector: &StateVector) -> Vec<u8> {
        self.doc.transact().encode_diff_v1(state_vector)
    }

    /// The whole document as one update (v1 encoding).
    pub fn encode_update_v1(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// The notebook as nbformat 4.5 JSON, as `nbformat.write` lays it out.
    pub fn to_ipynb(&self) -> String {
        pyjson::to_string(&self.to_ipynb_value())
    }

    /// The notebook as an nbformat 4.5 JSON value (lines split the way nbformat stores them).
    pub fn to_ipynb_value(&self) -> Value {
        let txn = self.doc.transact();
        let mut notebook = map_to_json(&txn, &self.meta);
        let mut metadata = match notebook.remove(mk::METADATA) {
            Some(Value::Object(metadata)) => metadata,
            _ => Metadata::new(),
        };
        // nbformat's strip_transient: these record a conversion, not the notebook.
        metadata.remove("orig_nbformat");
        metadata.remove("orig_nbformat_minor");
        metadata.remove("signature");
        let mut ids = HashSet::new();
        let cells = self
            .cells
            .iter(&txn)
            .enumerate()
            .filter_map(|(index, cell)| match cell {
                Out::YMap(cell) => Some(Value::Object(ipynb::export_cell(
                    map_to_json(&txn, &cell),
                    index,
                    &mut ids,
                ))),
                _ => None,
            })
            .collect();
        notebook.insert(mk::METADATA.into(), Value::Object(metadata));
        notebook.insert(mk::NBFORMAT.into(), Value::from(NBFORMAT));
        notebook.insert(mk::NBFORMAT_MINOR.into(), Value::from(NBFORMAT_MINOR));
        notebook.insert(schema::CELLS.into(), Value::Array(cells));
        Value::Object(notebook)
    }

    /// The Yrs document underneath, for the sync layer. Change it only through this API.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// This peer's Yrs client id.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    pub(crate) fn write(&self) -> TransactionMut<'_> {
        self.doc.transact_mut_with(LOCAL_ORIGIN)
    }

    pub(crate) fn cells_ref(&self) -> &ArrayRef {
        &self.cells
    }

    pub(crate) fn meta_ref(&self) -> &MapRef {
        &self.meta
    }

    pub(crate) fn executions_ref(&self) -> &MapRef {
        &self.executions
    }

    pub(crate) fn runtimes_ref(&self) -> &MapRef {
        &self.runtimes
    }

    // ---- reading ------------------------------------------------------------------------------

    pub fn cell_count(&self) -> u32 {
        self.cells.len(&self.doc.transact())
    }

    /// The cells' ids, in order.
    pub fn cell_ids(&self) -> Vec<String> {
        let txn = self.doc.transact();
        self.cells
            .iter(&txn)
            .map(|cell| match cell {
                Out::YMap(cell) => string_at(&txn, &cell, ck::ID).unwrap_or_default(),
                _ => String::new(),
            })
            .collect()
    }

    pub fn cells(&self) -> Vec<Cell> {
        let txn = self.doc.transact();
        self.cells
            .iter(&txn)
            .filter_map(|cell| match cell {
                Out::YMap(cell) => Some(read_cell(&txn, &cell)),
                _ => None,
            })
            .collect()
    }

    pub fn cell(&self, id: &str) -> Result<Cell> {
        let txn = self.doc.transact();
        let (_, cell) = self.find_cell(&txn, id)?;
        Ok(read_cell(&txn, &cell))
    }

    /// The index of the cell with this id.
    pub fn cell_index(&self, id: &str) -> Result<u32> {
        Ok(self.find_cell(&self.doc.transact(), id)?.0)
    }

    pub fn source(&self, id: &str) -> Result<String> {
        let txn = self.doc.transact();
        let (_, cell) = self.find_cell(&txn, id)?;
        Ok(string_at(&txn, &cell, ck::SOURCE).unwrap_or_default())
    }

    /// The notebook-level metadata (kernelspec, language_info, ...).
    pub fn metadata(&self) -> Metadata {
        let txn = self.doc.transact();
        match self.meta.get(&txn, mk::METADATA) {
            Some(out) => match crate::json::out_to_json(&txn, &out) {
                Value::Object(map) => map,
                _ => Metadata::new(),
            },
            None => Metadata::new(),
        }
    }

    fn find_cell<T: ReadTxn>(&self, txn: &T, id: &str) -> Result<(u32, MapRef)> {
        self.cells
            .iter(txn)
            .enumerate()
            .find_map(|(index, cell)| match cell {
                Out::YMap(cell) if string_at(txn, &cell, ck::ID).as_deref() == Some(id) => {
                    Some((index as u32, cell))
                }
                _ => None,
            })
            .ok_or_else(|| Error::CellNotFound(id.to_owned()))
    }

    fn existing_ids<T: ReadTxn>(&self, txn: &T) -> HashSet<String> {
        self.cells
            .iter(txn)
            .filter_map(|cell| match cell {
                Out::YMap(cell) => string_at(txn, &cell, ck::ID),
                _ => None,
            })
            .collect()
    }

    // ---- cells --------------------------------------------------------------------------------

    /// Inserts a new cell at `index` (0 to the cell count) and returns its id.
    pub fn insert_cell(&self, index: u32, cell_type: CellType, source: &str) -> Result<String> {
        let mut txn = self.write();
        let cell = self.new_cell_json(cell_type, source, &self.existing_ids(&txn));
        self.insert_cell_json(&mut txn, index, cell)
    }

    /// Appends a new cell and returns its id.
    pub fn push_cell(&self, cell_type: CellType, source: &str) -> Result<String> {
        let index = self.cell_count();
        self.insert_cell(index, cell_type, source)
    }

    /// Inserts a whole cell given as nbformat JSON (outputs, metadata and all), checked as
    /// [`Notebook::from_ipynb`] checks cells. A cell without an id, or whose id is taken, gets a
    /// new one. Returns the id.
    pub fn insert_cell_from_json(&self, index: u32, mut cell: Value) -> Result<String> {
        let mut txn = self.write();
        let ids = self.existing_ids(&txn);
        if let Some(map) = cell.as_object_mut() {
            let taken = map
                .get(ck::ID)
                .and_then(Value::as_str)
                .is_some_and(|id| ids.contains(id));
            if taken {
                map.remove(ck::ID);
            }
        }
        let cell = ipynb::normalize_cell(&At::Root, cell, &mut ids.clone())?;
        self.insert_cell_json(&mut txn, index, cell)
    }

    fn new_cell_json(
        &self,
        cell_type: CellType,
        source: &str,
        taken: &HashSet<String>,
    ) -> Metadata {
        let mut cell = Metadata::new();
        cell.insert(
            ck::ID.into(),
            Value::from(crate::ids::unique_cell_id(taken)),
        );
        cell.insert(ck::CELL_TYPE.into(), Value::from(cell_type.as_str()));
        cell.insert(ck::SOURCE.into(), Value::from(source));
        cell.insert(ck::METADATA.into(), Value::Object(Metadata::new()));
        if cell_type == CellType::Code {
            cell.insert(ck::EXECUTION_COUNT.into(), Value::Null);
            cell.insert(ck::OUTPUTS.into(), Value::Array(Vec::new()));
        }
        cell
    }

    fn insert_cell_json(
        &self,
        txn: &mut TransactionMut,
        index: u32,
        cell: Metadata,
    ) -> Result<String> {
        let len = self.cells.len(txn);
        if index > len {
            return Err(Error::CellIndexOutOfRange { index, len });
        }
        let id = cell
            .get(ck::ID)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.cells
            .insert(txn, index, map_prelim(ipynb::cell_entries(cell)));
        Ok(id)
    }

    pub fn delete_cell(&self, id: &str) -> Result<()> {
        let mut txn = self.write();
        let (index, _) = self.find_cell(&txn, id)?;
        self.cells.remove(&mut txn, index);
        Ok(())
    }

    /// Moves a cell so that it ends up at `to` (0 to the cell count minus one).
    ///
    /// Stock Yjs (13.x) cannot decode Yrs' array move, so a move is a delete and a re-insert of
    /// a copy, as JupyterLab does: edits a peer makes to the cell while the move is in flight
    /// are lost, and two peers moving the same cell at once leave two copies (export keeps both,
    /// the second under a new id).
    pub fn move_cell(&self, id: &str, to: u32) -> Result<()> {
        let mut txn = self.write();
        let (from, cell) = self.find_cell(&txn, id)?;
        let len = self.cells.len(&txn);
        if to >= len {
            return Err(Error::CellIndexOutOfRange { index: to, len });
        }
        if from == to {
            return Ok(());
        }
        let copy = map_to_json(&txn, &cell);
        let copy = ipynb::normalize_cell(&At::Root, Value::Object(copy), &mut HashSet::new())?;
        self.cells.remove(&mut txn, from);
        self.cells
            .insert(&mut txn, to, map_prelim(ipynb::cell_entries(copy)));
        Ok(())
    }

    /// Changes a cell's type. A code cell that becomes markdown or raw loses its outputs and
    /// execution count; one that becomes code starts with none and loses its attachments.
    pub fn set_cell_type(&self, id: &str, cell_type: CellType) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        cell.insert(&mut txn, ck::CELL_TYPE, cell_type.as_str());
        if cell_type == CellType::Code {
            cell.remove(&mut txn, ck::ATTACHMENTS);
            if !cell.contains_key(&txn, ck::OUTPUTS) {
                cell.insert(&mut txn, ck::OUTPUTS, ArrayPrelim::default());
            }
            if !cell.contains_key(&txn, ck::EXECUTION_COUNT) {
                cell.insert(&mut txn, ck::EXECUTION_COUNT, Any::Null);
            }
            cell.insert(&mut txn, ck::EXECUTION_STATE, ExecutionState::Idle.as_str());
        } else {
            for key in [ck::OUTPUTS, ck::EXECUTION_COUNT, ck::EXECUTION_STATE] {
                cell.remove(&mut txn, key);
            }
        }
        Ok(())
    }

    /// Applies a delta to a cell's source. Offsets count UTF-16 code units.
    pub fn edit_source(&self, id: &str, delta: &[TextDelta]) -> Result<()> {
        let mut txn = self.write();
        let text = self.source_text(&mut txn, id)?;
        // Check the whole delta before touching the text, so a bad one changes nothing.
        let (mut pos, mut len) = (0u32, text.len(&txn));
        for op in delta {
            let reach = match op {
                TextDelta::Retain(n) => {
                    pos = pos.saturating_add(*n);
                    pos
                }
                TextDelta::Insert(s) => {
                    let n = utf16_len(s);
                    pos += n;
                    len += n;
                    pos
                }
                TextDelta::Delete(n) => pos.saturating_add(*n),
            };
            if reach > len {
                return Err(Error::EditOutOfRange {
                    cell_id: id.to_owned(),
                    offset: reach,
                    len,
                });
            }
            if let TextDelta::Delete(n) = op {
                len -= n;
            }
        }
        check_surrogates(id, &text.get_string(&txn), delta)?;
        let mut pos = 0u32;
        for op in delta {
            match op {
                TextDelta::Retain(n) => pos += n,
                TextDelta::Insert(s) => {
                    text.insert(&mut txn, pos, s);
                    pos += utf16_len(s);
                }
                TextDelta::Delete(n) => text.remove_range(&mut txn, pos, *n),
            }
        }
        Ok(())
    }

    /// Replaces a cell's source, changing only the span that differs so peers' concurrent edits
    /// elsewhere in the cell survive.
    pub fn set_source(&self, id: &str, source: &str) -> Result<()> {
        let old = self.source(id)?;
        let prefix: usize = old
            .chars()
            .zip(source.chars())
            .take_while(|(a, b)| a == b)
            .map(|(c, _)| c.len_utf8())
            .sum();
        let suffix: usize = old[prefix..]
            .chars()
            .rev()
            .zip(source[prefix..].chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(c, _)| c.len_utf8())
            .sum();
        let removed = &old[prefix..old.len() - suffix];
        let inserted = &source[prefix..source.len() - suffix];
        let mut delta = vec![TextDelta::Retain(utf16_len(&old[..prefix]))];
        if !removed.is_empty() {
            delta.push(TextDelta::Delete(utf16_len(removed)));
        }
        if !inserted.is_empty() {
            delta.push(TextDelta::Insert(inserted.to_owned()));
        }
        self.edit_source(id, &delta)
    }

    fn source_text(&self, txn: &mut TransactionMut, id: &str) -> Result<TextRef> {
        let (_, cell) = self.find_cell(txn, id)?;
        match cell.get(txn, ck::SOURCE) {
            Some(Out::YText(text)) => Ok(text),
            // A peer stored the source as a plain string: make it a Y.Text so it can be edited.
            other => {
                let current = other
                    .and_then(|o| out_as_string(txn, &o))
                    .unwrap_or_default();
                Ok(cell.insert(txn, ck::SOURCE, yrs::TextPrelim::new(current)))
            }
        }
    }

    pub fn set_cell_metadata(&self, id: &str, key: &str, value: &Value) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        let metadata = child_map(&mut txn, &cell, ck::METADATA);
        metadata.insert(&mut txn, key, json_to_any(value));
        Ok(())
    }

    pub fn remove_cell_metadata(&self, id: &str, key: &str) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.find_cell(&txn, id)?;
        child_map(&mut txn, &cell, ck::METADATA).remove(&mut txn, key);
        Ok(())
    }

    pub fn set_notebook_metadata(&self, key: &str, value: &Value) {
        let mut txn = self.write();
        let metadata = child_map(&mut txn, &self.meta, mk::METADATA);
        metadata.insert(&mut txn, key, json_to_any(value));
    }

    // ---- outputs and execution state ---------------------------------------------------------

    /// Appends an output to a code cell. Stream text of the same stream as the last output is
    /// appended to that output's text, as Jupyter shows consecutive prints.
    pub fn append_output(&self, id: &str, output: &Output) -> Result<()> {
        let mut txn = self.write();
        let outputs = self.outputs_array(&mut txn, id)?;
        if let Output::Stream { name, text } = output {
            if let Some(last) = last_stream_text(&mut txn, &outputs, *name) {
                last.push(&mut txn, text);
                return Ok(());
            }
        }
        outputs.push_back(
            &mut txn,
            map_prelim(ipynb::output_entries(output.to_json())),
        );
        Ok(())
    }

    pub fn clear_outputs(&self, id: &str) -> Result<()> {
        let mut txn = self.write();
        let outputs = self.outputs_array(&mut txn, id)?;
        let len = outputs.len(&txn);
        outputs.remove_range(&mut txn, 0, len);
        Ok(())
    }

    /// Replaces the data and metadata of every display with this `display_id`, in place (Jupyter's
    /// `update_display_data`). Returns how many displays were updated.
    pub fn update_display(&self, display_id: &str, data: &Metadata, metadata: &Metadata) -> usize {
        let mut txn = self.write();
        let mut targets = Vec::new();
        for cell in self.cells.iter(&txn) {
            let Out::YMap(cell) = cell else { continue };
            let Some(Out::YArray(outputs)) = cell.get(&txn, ck::OUTPUTS) else {
                continue;
            };
            for output in outputs.iter(&txn) {
                let Out::YMap(output) = output else { continue };
                let transient = output
                    .get(&txn, ok::TRANSIENT)
                    .map(|t| crate::json::out_to_json(&txn, &t));
                if transient
                    .as_ref()
                    .and_then(|t| t.get(ok::DISPLAY_ID))
                    .and_then(Value::as_str)
                    == Some(display_id)
                {
                    targets.push(output);
                }
            }
        }
        for output in &targets {
            output.insert(
                &mut txn,
                ok::DATA,
                json_to_any(&Value::Object(data.clone())),
            );
            output.insert(
                &mut txn,
                ok::METADATA,
                json_to_any(&Value::Object(metadata.clone())),
            );
        }
        targets.len()
    }

    pub fn set_execution_count(&self, id: &str, count: Option<i64>) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.code_cell(&txn, id)?;
        cell.insert(
            &mut txn,
            ck::EXECUTION_COUNT,
            count.map_or(Any::Null, float_any),
        );
        Ok(())
    }

    pub fn set_execution_state(&self, id: &str, state: ExecutionState) -> Result<()> {
        let mut txn = self.write();
        let (_, cell) = self.code_cell(&txn, id)?;
        cell.insert(&mut txn, ck::EXECUTION_STATE, state.as_str());
        Ok(())
    }

    fn code_cell<T: ReadTxn>(&self, txn: &T, id: &str) -> Result<(u32, MapRef)> {
        let (index, cell) = self.find_cell(txn, id)?;
        if string_at(txn, &cell, ck::CELL_TYPE).as_deref() != Some(CellType::Code.as_str()) {
            return Err(Error::NotACodeCell(id.to_owned()));
        }
        Ok((index, cell))
    }

    fn outputs_array(&self, txn: &mut TransactionMut, id: &str) -> Result<ArrayRef> {
        let (_, cell) = self.code_cell(txn, id)?;
        match cell.get(txn, ck::OUTPUTS) {
            Some(Out::YArray(outputs)) => Ok(outputs),
            _ => Ok(cell.insert(txn, ck::OUTPUTS, ArrayPrelim::default())),
        }
    }
}

mod queue;

pub use queue::last_error;

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

fn string_at<T: ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<String> {
    map.get(txn, key).and_then(|out| out_as_string(txn, &out))
}

fn i64_at<T: ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<i64> {
    map.get(txn, key).and_then(|out| out_as_i64(&out))
}

fn f64_at<T: ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<f64> {
    map.get(txn, key).and_then(|out| out_as_f64(&out))
}

fn json_object_at<T: ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<Metadata> {
    match map
        .get(txn, key)
        .map(|out| crate::json::out_to_json(txn, &out))
    {
        Some(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The `meta` root's entries: top-level fields, nbformat 4.5, and the notebook's metadata.
fn meta_entries(metadata: &Metadata, extra: Metadata) -> Vec<(String, DocNode)> {
    let mut entries: Vec<(String, DocNode)> = extra
        .into_iter()
        .map(|(key, value)| (key, DocNode::Json(value)))
        .collect();
    entries.push((mk::NBFORMAT.into(), DocNode::Json(NBFORMAT.into())));
    entries.push((
        mk::NBFORMAT_MINOR.into(),
        DocNode::Json(NBFORMAT_MINOR.into()),
    ));
    entries.push((
        mk::METADATA.into(),
        DocNode::Map(ipynb::any_entries(metadata)),
    ));
    entries
}

/// The `Y.Map` under `key`, made one if a peer left something else there.
fn child_map(txn: &mut TransactionMut, parent: &MapRef, key: &str) -> MapRef {
    match parent.get(txn, key) {
        Some(Out::YMap(map)) => map,
        other => {
            let current = match other.map(|o| crate::json::out_to_json(txn, &o)) {
                Some(Value::Object(object)) => object,
                _ => Metadata::new(),
            };
            parent.insert(txn, key, map_prelim(ipynb::any_entries(&current)))
        }
    }
}

fn last_stream_text(
    txn: &mut TransactionMut,
    outputs: &ArrayRef,
    name: StreamName,
) -> Option<TextRef> {
    let last = outputs.len(txn).checked_sub(1)?;
    let Some(Out::YMap(output)) = outputs.get(txn, last) else {
        return None;
    };
    if string_at(txn, &output, ok::OUTPUT_TYPE).as_deref() != Some("stream")
        || string_at(txn, &output, ok::NAME).as_deref() != Some(name.as_str())
    {
        return None;
    }
    match output.get(txn, ok::TEXT) {
        Some(Out::YText(text)) => Some(text),
        other => {
            let current = other
                .and_then(|o| out_as_string(txn, &o))
                .unwrap_or_default();
            Some(output.insert(txn, ok::TEXT, yrs::TextPrelim::new(current)))
        }
    }
}

pub(crate) fn read_cell<T: ReadTxn>(txn: &T, cell: &MapRef) -> Cell {
    let cell_type = string_at(txn, cell, ck::CELL_TYPE)
        .and_then(|t| t.parse().ok())
        .unwrap_or(CellType::Raw);
    let outputs = match cell.get(txn, ck::OUTPUTS) {
        Some(Out::YArray(outputs)) => outputs
            .iter(txn)
            .filter_map(|o| match crate::json::out_to_json(txn, &o) {
                Value::Object(o) => Output::from_json(&o),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Cell {
        id: string_at(txn, cell, ck::ID).unwrap_or_default(),
        cell_type,
        source: string_at(txn, cell, ck::SOURCE).unwrap_or_default(),
        metadata: json_object_at(txn, cell, ck::METADATA).unwrap_or_default(),
        execution_count: i64_at(txn, cell, ck::EXECUTION_COUNT),
        execution_state: string_at(txn, cell, ck::EXECUTION_STATE).and_then(|s| s.parse().ok()),
        outputs,
        attachments: json_object_at(txn, cell, ck::ATTACHMENTS).filter(|a| !a.is_empty()),
    }
}

/// Refuses a delta (already checked to be in range) that puts an offset between the two
/// UTF-16 halves of a character of `text`, as it changes.
fn check_surrogates(cell_id: &str, text: &str, delta: &[TextDelta]) -> Result<()> {
    let mut units: Vec<u16> = text.encode_utf16().collect();
    let splits = |units: &[u16], at: usize| {
        units
            .get(at)
            .is_some_and(|unit| (0xDC00..0xE000).contains(unit))
            && at > 0
    };
    let refuse = |at: usize| Error::EditSplitsCharacter {
        cell_id: cell_id.to_owned(),
        offset: at as u32,
    };
    let mut pos = 0usize;
    for op in delta {
        match op {
            TextDelta::Retain(n) => pos += *n as usize,
            TextDelta::Insert(s) => {
                if splits(&units, pos) {
                    return Err(refuse(pos));
                }
                let inserted: Vec<u16> = s.encode_utf16().collect();
                let n = inserted.len();
                units.splice(pos..pos, inserted);
                pos += n;
            }
            TextDelta::Delete(n) => {
                let end = pos + *n as usize;
                if splits(&units, pos) {
                    return Err(refuse(pos));
                }
                if splits(&units, end) {
                    return Err(refuse(end));
                }
                units.drain(pos..end);
            }
        }
    }
    Ok(())
}
