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
}

mod cells;
mod outputs;
mod queue;

pub use queue::last_error;

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
