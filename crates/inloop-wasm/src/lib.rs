//! The inloop browser engine: a notebook document that a page drives, synced with the relay,
//! kept offline in IndexedDB, and run in a Pyodide Web Worker.
//!
//! Compiled to WebAssembly (`wasm-bindgen --target web`), it exports one class, `Notebook`.
//! The page (a CodeMirror view, a test) calls its methods and listens to its events; errors
//! reach JavaScript as `Error`s with a message saying what went wrong.
//!
//! # Features
//!
//! - **The document** through `inloop-doc`: cells listed as nbformat-shaped objects; insert,
//!   move, delete and retype cells; source edits as Yjs-style deltas
//!   (`[{retain: 3}, {insert: "x"}, {delete: 1}]`, offsets in UTF-16 code units as CodeMirror
//!   and Yjs count), so an editor binding never replaces the whole text; typed change events
//!   (`cell_inserted`, `cell_moved`, `source_edited` with its delta, `outputs_changed`...)
//!   marked `local` or `remote`.
//! - **Sync** with the relay over a browser WebSocket through `inloop-sync` (the y-websocket
//!   protocol), reconnecting with backoff from 100 ms to 5 s. Status events: `connecting`,
//!   `syncing`, `synced`, `offline` (with the close code and reason), `closed` (refused for
//!   good: closes 4400 to 4499 except 4429), each with the count of local changes the relay has
//!   not acknowledged as stored.
//! - **Offline store**: every update, local or remote, goes to IndexedDB (database `inloop`,
//!   one record per update, folded into one snapshot every 200 records). Opening an engine
//!   loads the stored state before connecting, so a page opened with no network shows and edits
//!   the last state; its edits merge when the relay is back (the sync exchange carries them).
//! - **Presence** through awareness: name, colour, the cell and the selection of each user.
//! - **Execution**: `run(cellId)` queues the cell in the document's `executions` for this
//!   browser (or `"server"`; `runCell(cellId)`: where the cell or the notebook says it runs);
//!   the engine runs its own entries one at a time in request order in
//!   a Pyodide worker that starts as the engine opens, writes outputs back like any runtime,
//!   registers itself in `runtimes` (kind `browser`, with a heartbeat), keeps stream text to
//!   1 MiB per cell (and outputs within the relay's size limits, which it tells each peer), honours
//!   interrupts
//!   (a `SharedArrayBuffer` interrupt buffer; a new worker when the page is not cross-origin
//!   isolated) and restarts (a new worker) asked for through the document.
//! - **Placement**: where the notebook and each cell run (`notebookTarget`, `setCellTarget`...;
//!   the notebook's choice in its metadata, else remembered in this browser), each cell's
//!   latest execution, and who holds the runtime lease (`leaseHolder`, `serverRuntime`): the
//!   page shows these and forwards the person's intents (`runCell`, `interruptAll`,
//!   `restartKernel`).
//!
//! # Structure
//!
//! `engine.rs` composes the parts and wires their callbacks (see its diagram): `replica.rs`
//! (the document, undo), `sync.rs` (the relay), `persist.rs` over `store.rs` (IndexedDB),
//! `runner.rs` over `kernel.rs` (this browser as a runtime), `placement.rs` (where cells run),
//! `events.rs` (the page's callbacks). Calls go down only; each part owns its fields.
//!
//! # Usage from JavaScript
//!
//! ```js
//! import init, { Notebook } from '/engine/inloop_wasm.js';
//! await init();
//! const nb = await Notebook.open({
//!   docId: 'b3c1…',
//!   token: 'il1.…',              // a share token (sent as the WebSocket's subprotocol)
//!   relay: 'ws://127.0.0.1:8787', // default: this page's origin
//!   worker: '/kernel/worker.js',  // default; null for no kernel
//!   startedWorker,               // optional: `new Worker(worker, {type: 'module'})` made by the
//!                                // page's first script, so Pyodide loads while this wasm does
//!   name: 'Ada',
//! });
//! nb.onStatus((s) => console.log(s.state, s.unacknowledged)); // e.g. "offline" 3
//! nb.onChange(({ origin, changes }) => view.apply(changes));
//! const id = nb.insertCell(0, 'code', 'print("hi")');
//! nb.editSource(id, [{ retain: 6 }, { insert: 'hello ' }]);
//! nb.setPresence({ name: 'Ada', colour: '#c33', cellId: id, selection: { anchor: 3, head: 5 } });
//! const run = nb.run(id);                        // this browser's Pyodide
//! nb.run(id, 'server');                          // the server runtime
//! console.log(nb.cells()[0].outputs);
//! ```

mod engine;
mod error;
mod events;
mod kernel;
mod persist;
mod placement;
mod replica;
mod runner;
mod store;
mod sync;
#[cfg(all(test, target_arch = "wasm32"))]
mod testing;

use std::rc::Rc;

use inloop_doc::placement::Target;
use inloop_doc::{CellType, JsonMap, Output, TextDelta};
use js_sys::{Array, Function};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use wasm_bindgen::prelude::*;

pub use error::{Error, Result};
pub use sync::Status;

use engine::{Core, Parts};
use events::{Topic, to_js};
use placement::RestartTarget;

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Options of [`Engine::open`] (a JavaScript object; camelCase keys).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenOptions {
    doc_id: String,
    #[serde(default)]
    token: Option<String>,
    /// `ws://…` or `http://…` of the relay; default: this page's origin.
    #[serde(default)]
    relay: Option<String>,
    /// Whether to connect at all (tests of the offline store say `false`).
    #[serde(default = "yes")]
    connect: bool,
    /// The kernel worker's URL; `null` for no kernel.
    #[serde(default = "default_worker")]
    worker: Option<String>,
    // `startedWorker`, a `Worker` object, is read beside serde (see `started_worker`).
    /// Keep the document in IndexedDB.
    #[serde(default = "yes")]
    store: bool,
    #[serde(default = "default_database")]
    database: String,
    /// Shown as who requested runs and as the runtime's name.
    #[serde(default)]
    name: Option<String>,
    /// The relay's `--max-document-bytes` and `--max-message-bytes`: outputs of this browser's
    /// runs that would pass either are refused with an error output instead of getting the
    /// page disconnected. The relay tells them when the socket opens; this sets them before
    /// that (an engine working offline).
    #[serde(default)]
    relay_limits: Option<LimitsOption>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LimitsOption {
    max_document_bytes: u64,
    max_message_bytes: u64,
}

/// The `startedWorker` option: a kernel worker the page created from the `worker` URL as it
/// began to load, so Pyodide starts before the engine's own wasm is even fetched; the engine
/// adopts it (restarts create new workers from the URL).
fn started_worker(options: &JsValue) -> Result<Option<web_sys::Worker>> {
    let value = js_sys::Reflect::get(options, &"startedWorker".into()).unwrap_or_default();
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_into::<web_sys::Worker>()
        .map(Some)
        .map_err(|_| Error::Argument("startedWorker must be a Worker".into()))
}

fn yes() -> bool {
    true
}

fn default_worker() -> Option<String> {
    Some("/kernel/worker.js".into())
}

fn default_database() -> String {
    "inloop".into()
}

/// A cell as the page sees it: nbformat's shape (outputs with `transient.display_id`).
#[derive(Serialize)]
struct CellView<'a> {
    id: &'a str,
    cell_type: CellType,
    source: &'a str,
    metadata: &'a JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_count: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_state: Option<inloop_doc::ExecutionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<JsonMap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<&'a JsonMap>,
}

fn cell_view(cell: &inloop_doc::Cell) -> JsValue {
    let code = cell.cell_type == CellType::Code;
    to_js(&CellView {
        id: &cell.id,
        cell_type: cell.cell_type,
        source: &cell.source,
        metadata: &cell.metadata,
        execution_count: code.then_some(cell.execution_count),
        execution_state: cell.execution_state,
        outputs: code.then(|| cell.outputs.iter().map(Output::to_json).collect()),
        attachments: cell.attachments.as_ref(),
    })
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What `Notebook.open` takes. */
export interface OpenOptions {
  docId: string;
  /** A share token, sent as the WebSocket's subprotocol (never in its URL). */
  token?: string;
  /** `ws://`, `wss://`, `http://` or `https://` of the relay; default: this page's origin. */
  relay?: string;
  /** Connect to the relay (default true). */
  connect?: boolean;
  /** The kernel worker's URL (default `/kernel/worker.js`); null for no kernel. */
  worker?: string | null;
  /** A worker the page created from `worker` before the engine loaded (Pyodide starts sooner). */
  startedWorker?: Worker;
  /** Keep the document in IndexedDB (default true). */
  store?: boolean;
  /** The IndexedDB database (default `inloop`). */
  database?: string;
  /** Who requests runs, and this browser runtime's name. */
  name?: string;
  /** The relay's limits, to refuse outputs that would pass them. */
  relayLimits?: { maxDocumentBytes: number; maxMessageBytes: number };
}

export type ConnectionState = "connecting" | "syncing" | "synced" | "offline" | "closed";

export interface Status {
  state: ConnectionState;
  /** offline and closed: the close code, when there was one. */
  code?: number | null;
  reason?: string;
  /** Local changes the relay has not acknowledged as stored. */
  unacknowledged: number;
}

export type CellType = "code" | "markdown" | "raw";

/** Offsets and lengths in UTF-16 code units. */
export type TextDelta = { retain: number } | { insert: string } | { delete: number };

export interface Cell {
  id: string;
  cell_type: CellType;
  source: string;
  metadata: Record<string, unknown>;
  /** Code cells only. */
  execution_count?: number | null;
  execution_state?: "idle" | "running" | null;
  /** Code cells only: nbformat outputs (a display's id under `transient.display_id`). */
  outputs?: Record<string, any>[];
  attachments?: Record<string, unknown>;
}

export type CellField =
  | "cell_type" | "metadata" | "execution_count" | "execution_state" | "attachments" | "source"
  | { other: string };

export type Change =
  | { kind: "cell_inserted"; index: number; cell_id: string }
  | { kind: "cell_deleted"; index: number; cell_id: string }
  | { kind: "cell_moved"; from: number; to: number; cell_id: string }
  | { kind: "source_edited"; cell_id: string; delta: TextDelta[] }
  | { kind: "outputs_changed"; cell_id: string }
  | { kind: "cell_changed"; cell_id: string; field: CellField }
  | { kind: "notebook_metadata_changed" }
  | { kind: "execution_changed"; execution_id: string }
  | { kind: "runtime_changed"; session_id: string };

export interface ChangeBatch {
  origin: "local" | "remote";
  changes: Change[];
}

export interface PresenceState {
  name?: string;
  colour?: string;
  cellId?: string | null;
  selection?: { anchor: number; head: number } | null;
  [key: string]: unknown;
}

export interface Presence {
  clientId: number;
  /** This page's own state. */
  local: boolean;
  state: PresenceState;
}

export type ExecutionStatus = "queued" | "running" | "done" | "error" | "cancelled" | "interrupted";

export interface Execution {
  id: string;
  cell_id: string;
  code: string;
  /** `browser:<clientId>` or `server`. */
  target: string;
  requested_by: string;
  requested_at: number;
  status: ExecutionStatus;
  runtime: string | null;
  lease_epoch: number | null;
  started_at: number | null;
  finished_at: number | null;
  execution_count: number | null;
  message: string | null;
  interrupt_requested_at: number | null;
}

export interface Runtime {
  session_id: string;
  kind: "browser" | "server";
  name: string;
  kernels: string[];
  gpu: string | null;
  container_image: string | null;
  status: "starting" | "idle" | "busy" | "restarting" | "gone";
  heartbeat_at: number;
  lease_epoch: number | null;
  restart_requested_at: number | null;
  restarted_at: number | null;
}

/** Where a notebook or a cell runs: the browser that asks, or the server runtime. */
export type RunTarget = "browser" | "server";

/** Who holds the runtime lease, as the document tells. */
export interface LeaseHolder {
  runtime: Runtime;
  /** The lease's epoch, when the runtime states it or an entry it started carries it. */
  epoch: number | null;
}

/** What `restartKernel()` restarted: this browser's kernel, or the server runtime's (none when
 * no server runtime is connected). */
export type Restarted = { target: "browser" } | { target: "server"; runtime: Runtime | null };
"#;

/// The engine, `Notebook` to JavaScript. Dropping it (`free()`) closes it.
#[wasm_bindgen(js_name = Notebook)]
#[derive(Debug)]
pub struct Engine {
    core: Rc<Core>,
}

#[wasm_bindgen(js_class = Notebook)]
impl Engine {
    /// Opens a document: starts the kernel worker, loads the IndexedDB copy, then connects.
    /// Resolves once the stored state is loaded (not once synced: watch `onStatus`).
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "OpenOptions")] options: JsValue,
    ) -> Result<Engine, JsValue> {
        Ok(Self::open_with(options).await?)
    }

    async fn open_with(options: JsValue) -> Result<Engine> {
        let started = started_worker(&options)?;
        let options: OpenOptions = serde_wasm_bindgen::from_value(options)?;
        if options.doc_id.is_empty() {
            return Err(Error::Argument("docId must not be empty".into()));
        }
        let notebook = inloop_doc::Notebook::new();
        let wake = Rc::new(Notify::new());
        // The worker loads Pyodide while the document loads and syncs.
        let kernel = options
            .worker
            .as_deref()
            .map(|url| kernel::PyodideKernel::start(url, started, wake.clone()));
        let persistence = if options.store {
            match persist::Persistence::open(&notebook, &options.database, &options.doc_id).await {
                Ok(persistence) => Some(persistence),
                // No IndexedDB (a private window, a full disk): the page still works online.
                Err(error) => {
                    let warning = format!("inloop: working without the offline store: {error}");
                    web_sys::console::warn_1(&warning.into());
                    None
                }
            }
        } else {
            None
        };
        let endpoint = if options.connect {
            Some(sync::Endpoint {
                url: socket_url(options.relay.as_deref(), &options.doc_id)?,
                token: options.token.clone(),
            })
        } else {
            None
        };
        let name = options
            .name
            .unwrap_or_else(|| format!("browser {}", notebook.client_id()));
        let limits = options.relay_limits.and_then(|l| {
            inloop_kernel::RelayLimits::from_relay(l.max_document_bytes, l.max_message_bytes)
        });
        let core = Core::start(Parts {
            doc_id: options.doc_id,
            notebook,
            endpoint,
            persistence,
            kernel,
            wake,
            name,
            limits,
        })?;
        Ok(Engine { core })
    }

    /// The document's id.
    #[wasm_bindgen(getter, js_name = docId)]
    pub fn doc_id(&self) -> String {
        self.core.replica().doc_id().to_owned()
    }

    /// This peer's Yjs client id (also in `browser:<clientId>` run targets).
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> f64 {
        self.core.notebook().client_id() as f64
    }

    /// `{state, code?, reason?, unacknowledged}` now.
    #[wasm_bindgen(unchecked_return_type = "Status")]
    pub fn status(&self) -> JsValue {
        to_js(&self.core.status())
    }

    /// Calls `callback(status)` at once with the current status, then on every status change
    /// and whenever the count of unacknowledged local changes moves. Returns an id for `off`.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] callback: Function,
    ) -> u32 {
        let current = to_js(&self.core.status());
        if let Err(error) = callback.call1(&JsValue::NULL, &current) {
            web_sys::console::error_2(&"inloop: a callback threw".into(), &error);
        }
        self.core.subscribe(Topic::Status, callback)
    }

    /// Calls `callback({origin: 'local' | 'remote', changes})` after every change to the
    /// document. Returns an id for `off`.
    #[wasm_bindgen(js_name = onChange)]
    pub fn on_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(batch: ChangeBatch) => void")] callback: Function,
    ) -> u32 {
        self.core.subscribe(Topic::Change, callback)
    }

    /// Calls `callback(presence)` (as `presence()` returns it) when anyone's presence changes.
    #[wasm_bindgen(js_name = onPresence)]
    pub fn on_presence(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(presence: Presence[]) => void")] callback: Function,
    ) -> u32 {
        self.core.subscribe(Topic::Presence, callback)
    }

    /// Removes a callback; `true` if it was registered.
    pub fn off(&self, id: u32) -> bool {
        self.core.unsubscribe(id)
    }

    /// Every cell, in order: `{id, cell_type, source, metadata}`, plus `execution_count`,
    /// `execution_state` and `outputs` (nbformat output objects) for code cells.
    #[wasm_bindgen(unchecked_return_type = "Cell[]")]
    pub fn cells(&self) -> Array {
        self.core.notebook().cells().iter().map(cell_view).collect()
    }

    /// One cell, as `cells()` shows it.
    #[wasm_bindgen(unchecked_return_type = "Cell")]
    pub fn cell(&self, id: &str) -> Result<JsValue, JsValue> {
        Ok(cell_view(
            &self.core.notebook().cell(id).map_err(Error::from)?,
        ))
    }

    #[wasm_bindgen(js_name = cellIds)]
    pub fn cell_ids(&self) -> Vec<String> {
        self.core.notebook().cell_ids()
    }

    pub fn source(&self, id: &str) -> Result<String, JsValue> {
        Ok(self.core.notebook().source(id).map_err(Error::from)?)
    }

    /// Inserts a cell (`'code'`, `'markdown'` or `'raw'`) at `index`; returns its id.
    #[wasm_bindgen(js_name = insertCell)]
    pub fn insert_cell(
        &self,
        index: u32,
        cell_type: &str,
        source: &str,
    ) -> Result<String, JsValue> {
        Ok(self
            .core
            .user_edit(|nb| Ok(nb.insert_cell(index, parse_cell_type(cell_type)?, source)?))?)
    }

    #[wasm_bindgen(js_name = deleteCell)]
    pub fn delete_cell(&self, id: &str) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| Ok(nb.delete_cell(id)?))?)
    }

    /// Moves a cell to index `to` (as the list is once it has left its place).
    #[wasm_bindgen(js_name = moveCell)]
    pub fn move_cell(&self, id: &str, to: u32) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| Ok(nb.move_cell(id, to)?))?)
    }

    #[wasm_bindgen(js_name = setCellType)]
    pub fn set_cell_type(&self, id: &str, cell_type: &str) -> Result<(), JsValue> {
        Ok(self
            .core
            .user_edit(|nb| Ok(nb.set_cell_type(id, parse_cell_type(cell_type)?)?))?)
    }

    /// Applies a Yjs-style delta to a cell's source: `[{retain: n}, {insert: 'x'},
    /// {delete: n}]`, in UTF-16 code units. A delta reaching past the end changes nothing.
    #[wasm_bindgen(js_name = editSource)]
    pub fn edit_source(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "TextDelta[]")] delta: JsValue,
    ) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| {
            let delta: Vec<TextDelta> = serde_wasm_bindgen::from_value(delta)?;
            Ok(nb.edit_source(id, &delta)?)
        })?)
    }

    /// Replaces a cell's source, changing only the span that differs.
    #[wasm_bindgen(js_name = setSource)]
    pub fn set_source(&self, id: &str, source: &str) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| Ok(nb.set_source(id, source)?))?)
    }

    /// Sets one key of a cell's metadata to a JSON value.
    #[wasm_bindgen(js_name = setCellMetadata)]
    pub fn set_cell_metadata(
        &self,
        id: &str,
        key: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
    ) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| {
            let value: serde_json::Value = serde_wasm_bindgen::from_value(value)?;
            Ok(nb.set_cell_metadata(id, key, &value)?)
        })?)
    }

    /// Adds (or replaces) attachment `name` of a markdown or raw cell: `{mime: base64}`, what
    /// `![alt](attachment:NAME)` in its source shows (an image pasted or dropped into it).
    #[wasm_bindgen(js_name = setCellAttachment)]
    pub fn set_cell_attachment(
        &self,
        id: &str,
        name: &str,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string>")] bundle: JsValue,
    ) -> Result<(), JsValue> {
        Ok(self.core.user_edit(|nb| {
            let bundle: JsonMap = serde_wasm_bindgen::from_value(bundle)?;
            Ok(nb.set_cell_attachment(id, name, &bundle)?)
        })?)
    }

    /// Clears a code cell's outputs.
    #[wasm_bindgen(js_name = clearOutputs)]
    pub fn clear_outputs(&self, id: &str) -> Result<(), JsValue> {
        Ok(self.core.edit(|nb| Ok(nb.clear_outputs(id)?))?)
    }

    /// Takes back this page's last user edit (cell inserts, deletes, moves, type, source and
    /// metadata changes; edits within 500 ms of each other are one step), leaving peers' edits
    /// and this page's run outputs alone. `true` if it changed something. Peers see it like any
    /// edit; this page's `onChange` reports it with origin `remote` (the view applies it).
    pub fn undo(&self) -> Result<bool, JsValue> {
        Ok(self.core.undo(true)?)
    }

    /// Puts back what `undo()` took back, unless a new edit was made since.
    pub fn redo(&self) -> Result<bool, JsValue> {
        Ok(self.core.undo(false)?)
    }

    #[wasm_bindgen(js_name = canUndo)]
    pub fn can_undo(&self) -> bool {
        self.core.replica().can_undo()
    }

    #[wasm_bindgen(js_name = canRedo)]
    pub fn can_redo(&self) -> bool {
        self.core.replica().can_redo()
    }

    /// Ends the current undo step: the next edit starts a new one even within 500 ms (a view
    /// calls it when the user moves to another cell or does something else than typing).
    #[wasm_bindgen(js_name = undoBoundary)]
    pub fn undo_boundary(&self) {
        self.core.replica().undo_boundary();
    }

    /// The notebook's metadata (nbformat's `metadata`, e.g. `kernelspec`, `inloop`).
    #[wasm_bindgen(js_name = notebookMetadata, unchecked_return_type = "Record<string, unknown>")]
    pub fn notebook_metadata(&self) -> JsValue {
        to_js(&self.core.notebook().metadata())
    }

    /// Sets one key of the notebook's metadata to a JSON value.
    #[wasm_bindgen(js_name = setNotebookMetadata)]
    pub fn set_notebook_metadata(
        &self,
        key: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
    ) -> Result<(), JsValue> {
        Ok(self.core.edit(|nb| {
            let value: serde_json::Value = serde_wasm_bindgen::from_value(value)?;
            nb.set_notebook_metadata(key, &value);
            Ok(())
        })?)
    }

    /// The notebook as `.ipynb` text (nbformat 4.5).
    #[wasm_bindgen(js_name = toIpynb)]
    pub fn to_ipynb(&self) -> String {
        self.core.notebook().to_ipynb()
    }

    /// Replaces the whole notebook by an `.ipynb` (as one edit).
    #[wasm_bindgen(js_name = replaceFromIpynb)]
    pub fn replace_from_ipynb(&self, ipynb: &str) -> Result<(), JsValue> {
        Ok(self
            .core
            .edit(|nb| Ok(nb.replace_from_ipynb(ipynb.as_bytes())?))?)
    }

    /// Sets this page's presence (`{name, colour, cellId, selection: {anchor, head}}`, any
    /// JSON object), or clears it with `null`.
    #[wasm_bindgen(js_name = setPresence)]
    pub fn set_presence(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PresenceState | null")] state: JsValue,
    ) -> Result<(), JsValue> {
        self.core.check_open()?;
        let json = if state.is_null() || state.is_undefined() {
            None
        } else {
            let value: serde_json::Value =
                serde_wasm_bindgen::from_value(state).map_err(Error::from)?;
            Some(value.to_string())
        };
        Ok(self.core.set_presence(json)?)
    }

    /// Everyone's presence: `[{clientId, local, state}]`, this page's first.
    #[wasm_bindgen(unchecked_return_type = "Presence[]")]
    pub fn presence(&self) -> JsValue {
        self.core.presence()
    }

    // ---- runs -------------------------------------------------------------------------------

    /// Queues a run of a code cell: `target` is `'browser'` (this engine's kernel, the default)
    /// or `'server'`. Returns the execution entry's id.
    pub fn run(&self, cell_id: &str, target: Option<String>) -> Result<String, JsValue> {
        self.core.check_open()?;
        let target = match target.as_deref() {
            None => Target::Browser,
            Some(text) => Target::parse(text).ok_or_else(|| {
                Error::Argument(format!("run target {text:?}: use 'browser' or 'server'"))
            })?,
        };
        Ok(self.core.run(cell_id, Some(target))?)
    }

    /// Queues a run of a code cell where it runs: where the cell says (`setCellTarget`), else
    /// where the notebook runs (`notebookTarget()`). Returns the execution entry's id.
    #[wasm_bindgen(js_name = runCell)]
    pub fn run_cell(&self, cell_id: &str) -> Result<String, JsValue> {
        Ok(self.core.run(cell_id, None)?)
    }

    /// Stops a run: a queued entry is cancelled, a running one interrupted by the runtime
    /// running it (this page's or another's).
    pub fn interrupt(&self, execution_id: &str) -> Result<(), JsValue> {
        Ok(self.core.interrupt(execution_id)?)
    }

    /// Stops every queued or running execution (any runtime's); returns how many. Throws at
    /// the first refusal.
    #[wasm_bindgen(js_name = interruptAll)]
    pub fn interrupt_all(&self) -> Result<u32, JsValue> {
        Ok(self.core.interrupt_all()? as u32)
    }

    /// Asks this page's kernel to restart (a fresh namespace, counts from 1), through the
    /// document like any peer's request.
    pub fn restart(&self) -> Result<(), JsValue> {
        Ok(self.core.restart_browser()?)
    }

    /// Asks another runtime (by session id, from `runtimes()`) to restart its kernel.
    #[wasm_bindgen(js_name = restartRuntime)]
    pub fn restart_runtime(&self, session_id: &str) -> Result<(), JsValue> {
        Ok(self.core.restart_runtime(session_id)?)
    }

    /// Restarts the kernel the notebook runs in: the server runtime's when it runs on the
    /// server (`runtime: null` when none is connected: nothing was asked), else this browser's.
    #[wasm_bindgen(js_name = restartKernel, unchecked_return_type = "Restarted")]
    pub fn restart_kernel(&self) -> Result<JsValue, JsValue> {
        #[derive(Serialize)]
        struct Restarted {
            target: Target,
            #[serde(skip_serializing_if = "Option::is_none")]
            runtime: Option<Option<inloop_doc::Runtime>>,
        }
        let restarted = match self.core.restart_kernel()? {
            RestartTarget::Browser => Restarted {
                target: Target::Browser,
                runtime: None,
            },
            RestartTarget::Server(runtime) => Restarted {
                target: Target::Server,
                runtime: Some(runtime),
            },
        };
        Ok(to_js(&restarted))
    }

    /// Where the notebook runs: its metadata's choice, else the one this browser remembers for
    /// it (`setNotebookTarget`), else `'browser'`.
    #[wasm_bindgen(js_name = notebookTarget, unchecked_return_type = "RunTarget")]
    pub fn notebook_target(&self) -> String {
        self.core.placement().notebook_target().as_str().into()
    }

    /// Runs the notebook on `target`: remembered in this browser, and written in the notebook
    /// (for everyone) when `write` (a link that may not edit passes `false`).
    #[wasm_bindgen(js_name = setNotebookTarget)]
    pub fn set_notebook_target(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RunTarget")] target: &str,
        write: bool,
    ) -> Result<(), JsValue> {
        Ok(self
            .core
            .set_notebook_target(parse_target(target)?, write)?)
    }

    /// Where a cell says it runs (`undefined`: where the notebook runs).
    #[wasm_bindgen(js_name = cellTarget, unchecked_return_type = "RunTarget | undefined")]
    pub fn cell_target(&self, cell_id: &str) -> Result<Option<String>, JsValue> {
        let target = self.core.placement().cell_target(cell_id)?;
        Ok(target.map(|t| t.as_str().into()))
    }

    /// Has a cell run on `target`; `''`, `null` or `undefined`: where the notebook runs.
    #[wasm_bindgen(js_name = setCellTarget)]
    pub fn set_cell_target(
        &self,
        cell_id: &str,
        #[wasm_bindgen(unchecked_param_type = "RunTarget | '' | null")] target: Option<String>,
    ) -> Result<(), JsValue> {
        let target = match target.as_deref() {
            None | Some("") => None,
            Some(text) => Some(parse_target(text)?),
        };
        Ok(self.core.set_cell_target(cell_id, target)?)
    }

    /// Every execution entry, oldest request first.
    #[wasm_bindgen(unchecked_return_type = "Execution[]")]
    pub fn executions(&self) -> JsValue {
        to_js(&self.core.notebook().executions())
    }

    #[wasm_bindgen(unchecked_return_type = "Execution")]
    pub fn execution(&self, id: &str) -> Result<JsValue, JsValue> {
        Ok(to_js(
            &self.core.notebook().execution(id).map_err(Error::from)?,
        ))
    }

    /// A cell's latest execution (the one requested last), if it ever ran.
    #[wasm_bindgen(js_name = latestExecution, unchecked_return_type = "Execution | undefined")]
    pub fn latest_execution(&self, cell_id: &str) -> JsValue {
        match self.core.placement().latest_execution(cell_id) {
            Some(execution) => to_js(&execution),
            None => JsValue::UNDEFINED,
        }
    }

    /// Each cell's latest execution, oldest request first.
    #[wasm_bindgen(js_name = latestExecutions, unchecked_return_type = "Execution[]")]
    pub fn latest_executions(&self) -> JsValue {
        to_js(&self.core.latest_executions())
    }

    /// The cells' latest executions that are running now.
    #[wasm_bindgen(js_name = runningExecutions, unchecked_return_type = "Execution[]")]
    pub fn running_executions(&self) -> JsValue {
        to_js(&self.core.placement().running())
    }

    /// Whether any cell's latest execution is queued or running.
    #[wasm_bindgen(js_name = isBusy)]
    pub fn is_busy(&self) -> bool {
        self.core.placement().busy()
    }

    /// The runtimes registered in the document.
    #[wasm_bindgen(unchecked_return_type = "Runtime[]")]
    pub fn runtimes(&self) -> JsValue {
        to_js(&self.core.notebook().runtimes())
    }

    /// Who holds the runtime lease: a live server runtime that states its epoch, else the one
    /// that started the newest entry under an epoch, else the only live server runtime.
    #[wasm_bindgen(js_name = leaseHolder, unchecked_return_type = "LeaseHolder | undefined")]
    pub fn lease_holder(&self) -> JsValue {
        match self.core.lease_holder() {
            Some(holder) => to_js(&holder),
            None => JsValue::UNDEFINED,
        }
    }

    /// The server runtime cells go to: the lease holder, else the live one heard from last.
    #[wasm_bindgen(js_name = serverRuntime, unchecked_return_type = "Runtime | undefined")]
    pub fn server_runtime(&self) -> JsValue {
        match self.core.server_runtime() {
            Some(runtime) => to_js(&runtime),
            None => JsValue::UNDEFINED,
        }
    }

    /// This page's runtime session id (`browser-<clientId>`).
    #[wasm_bindgen(getter, js_name = runtimeId)]
    pub fn runtime_id(&self) -> String {
        self.core.runtime_id().to_owned()
    }

    /// The kernel worker's state: `'starting'`, `'ready'`, `'failed: …'`, `'shut down'` or
    /// `'none'`.
    #[wasm_bindgen(js_name = kernelState)]
    pub fn kernel_state(&self) -> String {
        match self.core.kernel_state() {
            None => "none".into(),
            Some(kernel::KernelState::Starting) => "starting".into(),
            Some(kernel::KernelState::Ready) => "ready".into(),
            Some(kernel::KernelState::Failed(message)) => format!("failed: {message}"),
            Some(kernel::KernelState::ShutDown) => "shut down".into(),
        }
    }

    /// Whether interrupts reach running code (the page is cross-origin isolated).
    #[wasm_bindgen(js_name = canInterrupt)]
    pub fn can_interrupt(&self) -> bool {
        self.core.can_interrupt()
    }

    // ---- the offline store and replicas -----------------------------------------------------

    /// Resolves once every change made so far is in IndexedDB (rejects with the store's
    /// error if the last write failed).
    pub async fn persisted(&self) -> Result<(), JsValue> {
        Ok(self.core.persisted().await?)
    }

    /// How many IndexedDB records hold this document, as far as this engine knows (`null`
    /// without a store): it drops to 1 when they are folded into a snapshot.
    #[wasm_bindgen(js_name = storedRecords)]
    pub fn stored_records(&self) -> Option<u32> {
        self.core.stored_records().map(|n| n as u32)
    }

    /// Applies a Yrs update (v1) from elsewhere, e.g. another replica's `encodeState()`.
    /// Observers see it as remote; it is stored, and passed on to the relay.
    #[wasm_bindgen(js_name = applyUpdate)]
    pub fn apply_update(&self, update: &[u8]) -> Result<(), JsValue> {
        Ok(self.core.apply_update(update)?)
    }

    /// The whole document as one Yrs update (v1), e.g. to compare replicas.
    #[wasm_bindgen(js_name = encodeState)]
    pub fn encode_state(&self) -> Vec<u8> {
        self.core.notebook().encode_update_v1()
    }

    /// Stops syncing, marks this page's runtime gone, stops the kernel. Later edits fail.
    pub fn close(&self) {
        self.core.close();
    }

    /// Deletes an IndexedDB database (default `inloop`): every document stored offline.
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(name: Option<String>) -> Result<(), JsValue> {
        let name = name.unwrap_or_else(default_database);
        Ok(store::delete_database(&name).await?)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.core.close();
    }
}

fn parse_cell_type(cell_type: &str) -> Result<CellType> {
    cell_type.parse().map_err(Error::Argument)
}

fn parse_target(target: &str) -> Result<Target> {
    Target::parse(target)
        .ok_or_else(|| Error::Argument(format!("target {target:?}: use 'browser' or 'server'")))
}

/// `{relay}/api/docs/{doc_id}/ws`, the relay's URL as `ws://`/`wss://`.
fn socket_url(relay: Option<&str>, doc_id: &str) -> Result<String> {
    let relay = match relay {
        Some(relay) => relay.trim_end_matches('/').to_owned(),
        None => {
            let location = web_sys::window()
                .ok_or_else(|| Error::Argument("no window: give the relay's URL".into()))?
                .location();
            let protocol = location.protocol().map_err(error::browser("location"))?;
            let host = location.host().map_err(error::browser("location"))?;
            let scheme = if protocol == "https:" { "wss" } else { "ws" };
            format!("{scheme}://{host}")
        }
    };
    let relay = if let Some(rest) = relay.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = relay.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        relay
    };
    if !relay.starts_with("ws://") && !relay.starts_with("wss://") {
        return Err(Error::Argument(format!(
            "relay {relay:?}: expected ws://, wss://, http:// or https://"
        )));
    }
    let doc = String::from(js_sys::encode_uri_component(doc_id));
    Ok(format!("{relay}/api/docs/{doc}/ws"))
}
