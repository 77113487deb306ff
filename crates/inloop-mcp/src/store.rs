//! The notebooks the agent works on: local files (with a kernel each) and relay documents (run
//! by the relay's server runtime).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use inloop_client::{Client, ClientOptions};
use inloop_doc::execution::Outcome;
use inloop_doc::{
    CellType, ExecutionState, ExecutionStatus, ExecutionTarget, Notebook, Output, RuntimeKind,
};
use inloop_kernel::{JupyterConfig, JupyterKernel, Kernel, KernelSpec, OutputWriter};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::Config;
use crate::root::Root;

/// The prefix of a relay document's reference: `relay:DOC_ID`.
pub(crate) const RELAY_PREFIX: &str = "relay:";

/// A tool's failure: a message for the agent saying what went wrong and what to do.
pub(crate) type ToolResult<T> = std::result::Result<T, String>;

/// Where a notebook lives.
pub(crate) enum Place {
    Local {
        path: PathBuf,
        /// When we last read or wrote the file, to notice edits made by others on disk.
        modified: std::sync::Mutex<Option<SystemTime>>,
    },
    Relay {
        doc_id: String,
        client: Client,
    },
}

/// A notebook in use: its document, and for a local one the kernel that runs it.
pub(crate) struct Open {
    pub(crate) reference: String,
    pub(crate) place: Place,
    pub(crate) notebook: Notebook,
    kernel: Mutex<Option<Arc<JupyterKernel>>>,
    /// One change or run of this notebook at a time.
    pub(crate) busy: Mutex<()>,
}

/// How one cell's run ended.
#[derive(Debug)]
pub(crate) struct CellRun {
    pub(crate) cell_id: String,
    pub(crate) status: &'static str,
    pub(crate) execution_count: Option<i64>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) message: Option<String>,
}

impl CellRun {
    pub(crate) fn to_json(&self, index: usize) -> Value {
        json!({
            "index": index,
            "cell_id": self.cell_id,
            "status": self.status,
            "execution_count": self.execution_count,
            "text": crate::export::strip_ansi(&crate::export::outputs_text(&self.outputs)),
            "outputs": self.outputs.iter().map(crate::export::summarize_output).collect::<Vec<_>>(),
            "message": self.message,
        })
    }
}

/// Every notebook the server has open, shared by all MCP sessions.
pub(crate) struct Store {
    pub(crate) config: Config,
    /// `config.root`, resolved once: every path a tool takes goes through [`Store::path`].
    root: Root,
    open: Mutex<HashMap<String, Arc<Open>>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a tool's answer calls a run that ended in `status`.
fn status_name(status: ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Done => "done",
        ExecutionStatus::Error => "error",
        ExecutionStatus::Cancelled => "cancelled",
        _ => "interrupted",
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Store {
    pub(crate) fn new(config: Config) -> crate::Result<Self> {
        let root = Root::new(&config.root).map_err(|source| crate::Error::Root {
            root: config.root.clone(),
            source,
        })?;
        Ok(Self {
            config,
            root,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The root folder's real path.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// The real path of a file or folder a tool was given (relative to the root, or absolute),
    /// refused unless it leads under the root. Every path from a tool's arguments, read or
    /// written, goes through here first.
    pub(crate) fn path(&self, given: &str) -> ToolResult<PathBuf> {
        self.root
            .resolve(Path::new(given))
            .map_err(|error| error.to_string())
    }

    /// A local notebook's real path ([`Store::path`] of a path ending in `.ipynb`).
    pub(crate) fn local_path(&self, reference: &str) -> ToolResult<PathBuf> {
        if Path::new(reference).extension().and_then(|e| e.to_str()) != Some("ipynb") {
            return Err(format!(
                "{reference}: a local notebook is an .ipynb file; give a path ending in .ipynb \
                 (or relay:DOC_ID for a relay document)"
            ));
        }
        self.path(reference)
    }

    fn relay(&self) -> ToolResult<&inloop_batch::RelayTarget> {
        self.config.relay.as_ref().ok_or_else(|| {
            "this MCP server was started without --relay, so relay documents are not available; \
             use a local .ipynb path instead"
                .to_owned()
        })
    }

    /// The notebook `reference` names: `relay:DOC_ID` or a local `.ipynb` path. A local file
    /// changed on disk since we last saw it is read again.
    pub(crate) async fn get(&self, reference: &str) -> ToolResult<Arc<Open>> {
        let reference = reference.trim();
        let key = match reference.strip_prefix(RELAY_PREFIX) {
            Some(doc) => format!("{RELAY_PREFIX}{doc}"),
            None => self.local_path(reference)?.display().to_string(),
        };
        let mut open = self.open.lock().await;
        if let Some(existing) = open.get(&key) {
            if let Place::Local { path, modified } = &existing.place {
                let on_disk = mtime(path);
                let mut seen = modified.lock().unwrap_or_else(|e| e.into_inner());
                if on_disk.is_some() && on_disk != *seen {
                    let bytes = std::fs::read(path).map_err(|e| format!("{key}: {e}"))?;
                    existing
                        .notebook
                        .replace_from_ipynb(&bytes)
                        .map_err(|e| format!("{key} changed on disk and is not a notebook: {e}"))?;
                    *seen = on_disk;
                }
            }
            return Ok(existing.clone());
        }
        let opened = match reference.strip_prefix(RELAY_PREFIX) {
            Some(doc_id) => self.open_relay(doc_id).await?,
            None => {
                let path = PathBuf::from(&key);
                let bytes = std::fs::read(&path).map_err(|e| {
                    format!(
                        "{reference}: cannot read it ({e}); notebook_list shows the notebooks, \
                         notebook_create makes a new one"
                    )
                })?;
                let notebook = Notebook::from_ipynb_bytes(&bytes)
                    .map_err(|e| format!("{reference} is not a valid notebook: {e}"))?;
                Open {
                    reference: reference.to_owned(),
                    place: Place::Local {
                        modified: std::sync::Mutex::new(mtime(&path)),
                        path,
                    },
                    notebook,
                    kernel: Mutex::new(None),
                    busy: Mutex::new(()),
                }
            }
        };
        let opened = Arc::new(opened);
        open.insert(key, opened.clone());
        Ok(opened)
    }

    async fn open_relay(&self, doc_id: &str) -> ToolResult<Open> {
        let relay = self.relay()?;
        if doc_id.is_empty()
            || !doc_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "relay:{doc_id}: not a document id; notebook_list shows the relay's documents"
            ));
        }
        let client = Client::connect(
            &relay.document_url(doc_id),
            Notebook::new(),
            ClientOptions::new(),
        );
        client
            .wait_synced(Duration::from_secs(30))
            .await
            .map_err(|e| format!("relay:{doc_id}: could not join the document: {e}"))?;
        let notebook = client.notebook().clone();
        let opened = Open {
            reference: format!("{RELAY_PREFIX}{doc_id}"),
            place: Place::Relay {
                doc_id: doc_id.to_owned(),
                client,
            },
            notebook,
            kernel: Mutex::new(None),
            busy: Mutex::new(()),
        };
        opened.presence(&self.config.name, None);
        Ok(opened)
    }

    /// Creates a notebook: a local file (refusing to overwrite one), or a relay document when
    /// `path` is `None`. Returns its reference.
    pub(crate) async fn create(
        &self,
        path: Option<&str>,
        cells: &[(CellType, String)],
    ) -> ToolResult<String> {
        // Jupyter's blank notebook (one empty code cell), or the cells asked for.
        let notebook = Notebook::blank();
        if !cells.is_empty() {
            for id in notebook.cell_ids() {
                notebook.delete_cell(&id).map_err(|e| e.to_string())?;
            }
        }
        for (cell_type, source) in cells {
            notebook
                .push_cell(*cell_type, source)
                .map_err(|e| e.to_string())?;
        }
        if let Ok(spec) = KernelSpec::find(&self.config.kernel, &self.config.kernel_search) {
            notebook.set_notebook_metadata(
                "kernelspec",
                &json!({"name": spec.name, "display_name": spec.display_name, "language": spec.language}),
            );
        }
        match path {
            Some(reference) => {
                let path = self.local_path(reference)?;
                if path.exists() {
                    return Err(format!(
                        "{reference} already exists; edit it with notebook_edit_cell, or choose \
                         another path"
                    ));
                }
                inloop_batch::write_atomically(&path, notebook.to_ipynb().as_bytes())
                    .map_err(|e| e.to_string())?;
                Ok(reference.to_owned())
            }
            None => {
                let relay = self.relay()?;
                let created = relay
                    .request_json(
                        "POST",
                        "/api/docs",
                        "application/x-ipynb+json",
                        notebook.to_ipynb().as_bytes(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let id = created["id"]
                    .as_str()
                    .ok_or_else(|| format!("the relay answered without an id: {created}"))?;
                Ok(format!("{RELAY_PREFIX}{id}"))
            }
        }
    }

    /// Local notebooks under the root (skipping hidden folders, `node_modules`, `target` and
    /// symbolic links leading out of the root), and the relay's documents.
    pub(crate) async fn list(&self) -> ToolResult<Value> {
        let mut local = Vec::new();
        let root = self.root.path();
        let mut dirs = vec![root.to_owned()];
        // The real folders walked: a link to a folder already seen (a link back up, say) would
        // otherwise be walked again, forever.
        let mut walked = HashSet::from([root.to_owned()]);
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name == "node_modules" || name == "target" {
                    continue;
                }
                // Listed only where the tools would accept it.
                let Ok(real) = self.root.resolve(&path) else {
                    continue;
                };
                let Ok(metadata) = std::fs::metadata(&real) else {
                    continue;
                };
                if metadata.is_dir() {
                    if local.len() < 1000 && walked.insert(real) {
                        dirs.push(path);
                    }
                } else if name.ends_with(".ipynb") {
                    let relative = path.strip_prefix(root).unwrap_or(&path);
                    local.push(json!({"notebook": relative.display().to_string(),
                                      "bytes": metadata.len()}));
                }
            }
        }
        local.sort_by(|a, b| a["notebook"].as_str().cmp(&b["notebook"].as_str()));
        let relay = match &self.config.relay {
            None => Value::Null,
            Some(relay) => {
                let docs = relay
                    .request_json("GET", "/api/docs", "application/json", b"")
                    .await
                    .map_err(|e| e.to_string())?;
                let docs = docs.as_array().cloned().unwrap_or_default();
                docs.into_iter()
                    .map(|mut doc| {
                        if let Some(id) = doc.get("id").and_then(Value::as_str) {
                            let reference = format!("{RELAY_PREFIX}{id}");
                            doc["notebook"] = json!(reference);
                        }
                        doc
                    })
                    .collect()
            }
        };
        Ok(json!({"root": root.display().to_string(), "local": local, "relay": relay}))
    }

    /// The kernel of a local notebook, started on first use.
    pub(crate) async fn kernel(&self, open: &Open) -> ToolResult<Arc<JupyterKernel>> {
        let Place::Local { path, .. } = &open.place else {
            return Err("relay documents run in the relay's server runtime".into());
        };
        let mut kernel = open.kernel.lock().await;
        if let Some(kernel) = kernel.as_ref() {
            return Ok(kernel.clone());
        }
        let name = open
            .notebook
            .metadata()
            .get("kernelspec")
            .and_then(|k| k.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.config.kernel.clone());
        let spec = KernelSpec::find(&name, &self.config.kernel_search)
            .or_else(|_| KernelSpec::find(&self.config.kernel, &self.config.kernel_search))
            .map_err(|e| format!("no kernel to run {}: {e}", open.reference))?;
        let config = JupyterConfig {
            working_dir: path.parent().map(Path::to_owned),
            ..JupyterConfig::default()
        };
        let started = Arc::new(
            JupyterKernel::start(spec, config)
                .await
                .map_err(|e| format!("the kernel did not start: {e}"))?,
        );
        let info = started.kernel_info();
        if !info.language_info.is_empty() {
            open.notebook
                .set_notebook_metadata("language_info", &Value::Object(info.language_info));
        }
        *kernel = Some(started.clone());
        Ok(started)
    }

    /// Whether the local notebook's kernel is running (never starts one).
    pub(crate) async fn running_kernel(&self, open: &Open) -> Option<Arc<JupyterKernel>> {
        open.kernel.lock().await.clone()
    }

    /// Runs one code cell (by id) and waits for its end.
    pub(crate) async fn run_cell(
        &self,
        open: &Open,
        cell_id: &str,
        timeout: Duration,
    ) -> ToolResult<CellRun> {
        let cell = open.notebook.cell(cell_id).map_err(|e| e.to_string())?;
        if cell.cell_type != CellType::Code {
            return Err(format!(
                "cell {cell_id} is a {} cell; only code cells run",
                cell.cell_type.as_str()
            ));
        }
        open.presence(&self.config.name, Some(cell_id));
        match &open.place {
            Place::Local { .. } => self.run_local(open, cell_id, &cell.source, timeout).await,
            Place::Relay { .. } => self.run_remote(open, cell_id, timeout).await,
        }
    }

    async fn run_local(
        &self,
        open: &Open,
        cell_id: &str,
        code: &str,
        timeout: Duration,
    ) -> ToolResult<CellRun> {
        let kernel = self.kernel(open).await?;
        let notebook = &open.notebook;
        notebook.clear_outputs(cell_id).map_err(|e| e.to_string())?;
        let _ = notebook.set_execution_state(cell_id, ExecutionState::Running);
        let mut writer = OutputWriter::new(Some(inloop_kernel::DEFAULT_STREAM_LIMIT));
        let run = inloop_kernel::run_in_cell_until(
            kernel.as_ref(),
            notebook,
            cell_id,
            code,
            &mut writer,
            |_| {},
            Some(inloop_kernel::Deadline {
                at: tokio::time::Instant::now() + timeout,
                grace: Duration::from_secs(5),
            }),
        )
        .await;
        let _ = notebook.set_execution_state(cell_id, ExecutionState::Idle);
        if let Some(error) = run.write_error {
            tracing::warn!(%error, cell_id, "an output could not be written");
        }
        // The cell ends as an entry of the queue would (the execution state machine's rule).
        let ending = notebook.run_ending(cell_id, &run.outcome);
        let (status, message) = match &run.outcome {
            Outcome::TimedOut { .. } => (
                "timeout",
                Some(format!(
                    "the cell ran longer than {:.0} s and was interrupted; give a larger \
                     timeout_seconds if it needs longer",
                    timeout.as_secs_f64()
                )),
            ),
            Outcome::KernelDied { .. } | Outcome::Failed { .. } => {
                // A dead kernel is dropped: the next run starts a fresh one.
                *open.kernel.lock().await = None;
                let why = ending.message.unwrap_or_default();
                (
                    "error",
                    Some(format!("{why}; the next run starts a new kernel")),
                )
            }
            _ => (status_name(ending.status), ending.message),
        };
        open.save()?;
        let cell = notebook.cell(cell_id).map_err(|e| e.to_string())?;
        Ok(CellRun {
            cell_id: cell_id.to_owned(),
            status,
            execution_count: cell.execution_count,
            outputs: cell.outputs,
            message,
        })
    }

    /// Asks the document's server runtime to run the cell (a `server` entry of the execution
    /// queue) and waits for the entry to end.
    async fn run_remote(
        &self,
        open: &Open,
        cell_id: &str,
        timeout: Duration,
    ) -> ToolResult<CellRun> {
        let notebook = &open.notebook;
        let exec_id = notebook
            .request_execution(cell_id, &ExecutionTarget::Server, &self.config.name, now())
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        let execution = loop {
            let execution = notebook.execution(&exec_id).map_err(|e| e.to_string())?;
            if execution.status.is_final() {
                break execution;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = notebook.stop_execution(&exec_id, now());
                let hint = if execution.status == ExecutionStatus::Queued {
                    " No server runtime picked it up: is a runtime running for this document \
                     (`inloop serve` starts one unless --no-runtime)?"
                } else {
                    " It was asked to stop."
                };
                return Ok(CellRun {
                    cell_id: cell_id.to_owned(),
                    status: "timeout",
                    execution_count: None,
                    outputs: notebook
                        .cell(cell_id)
                        .map(|c| c.outputs)
                        .unwrap_or_default(),
                    message: Some(format!(
                        "the run was still {} after {:.0} s.{hint}",
                        execution.status.as_str(),
                        timeout.as_secs_f64()
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let cell = notebook.cell(cell_id).map_err(|e| e.to_string())?;
        let status = status_name(execution.status);
        let message = execution.message.clone();
        Ok(CellRun {
            cell_id: cell_id.to_owned(),
            status,
            execution_count: execution.execution_count.or(cell.execution_count),
            outputs: cell.outputs,
            message,
        })
    }

    /// The kernel's variables (local notebooks whose kernel runs), by a hidden execution.
    pub(crate) async fn variables(&self, open: &Open) -> Value {
        if let Place::Relay { .. } = open.place {
            return published_variables(&open.notebook).await;
        }
        let Some(kernel) = self.running_kernel(open).await else {
            return json!({"available": false, "note": "no kernel runs for this notebook yet; \
                run a cell (notebook_execute_cell or notebook_execute_all) to start one"});
        };
        let read = inloop_kernel::read_variables(kernel.as_ref());
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Ok(variables)) => json!({"available": true, "variables": variables}),
            Ok(Err(error)) => json!({"available": false, "note": format!("the kernel: {error}")}),
            Err(_) => json!({"available": false, "note": "the kernel is busy (another run \
                is going on); ask again when it is done"}),
        }
    }

    /// With `--git`, commits `file` with `content` (what this tool call wrote or left) on the
    /// session's branch, as `subject` by `tool`; what to tell the agent about it (`None` without
    /// `--git`). A failed record does not fail the tool: its change is made, and the answer
    /// says why it is not in the history.
    pub(crate) async fn record(
        &self,
        tool: &str,
        file: PathBuf,
        content: Vec<u8>,
        subject: String,
    ) -> Option<Value> {
        let history = self.config.history.clone()?;
        let branch = history.branch().to_owned();
        let message = format!(
            "{subject}\n\nInloop-Agent: {}\nInloop-Tool: {tool}\n",
            self.config.name
        );
        let recorded =
            tokio::task::spawn_blocking(move || history.record(&[(&file, &content)], &message))
                .await;
        Some(match recorded {
            Ok(Ok(Some(commit))) => json!({"branch": branch, "commit": commit.id}),
            Ok(Ok(None)) => json!({"branch": branch, "commit": null,
                                   "note": "no file changed, so no commit"}),
            Ok(Err(error)) => json!({"branch": branch, "error": error.to_string()}),
            Err(error) => json!({"branch": branch, "error": error.to_string()}),
        })
    }

    /// Kills every kernel this server started.
    pub(crate) async fn shutdown(&self) {
        let open: Vec<_> = self.open.lock().await.drain().map(|(_, o)| o).collect();
        for notebook in open {
            if let Some(kernel) = notebook.kernel.lock().await.take() {
                let _ = kernel.shutdown().await;
            }
            if let Place::Relay { client, .. } = &notebook.place {
                client.wait_stored(STORED_WAIT).await;
                client.close();
            }
        }
    }
}

/// How long `notebook_get_state` waits for a server runtime to publish the variables after a
/// run that just ended.
const FRESH_VARIABLES_WAIT: Duration = Duration::from_secs(5);

/// A relay document's variables: its kernel belongs to the server runtime, which publishes them
/// in its entry after its runs. The most recent reading of any server runtime is shown, once it
/// is newer than the last server run that ended (or after a short wait).
async fn published_variables(notebook: &Notebook) -> Value {
    let deadline = tokio::time::Instant::now() + FRESH_VARIABLES_WAIT;
    loop {
        let last_run_ended = notebook
            .executions()
            .iter()
            .filter(|e| e.target == ExecutionTarget::Server)
            .filter_map(|e| e.finished_at)
            .fold(0.0, f64::max);
        let newest = notebook
            .runtimes()
            .into_iter()
            .filter(|r| r.kind == RuntimeKind::Server)
            .filter_map(|r| {
                let (variables, read_at) = notebook.runtime_variables(&r.session_id)?;
                Some((r, variables, read_at))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let fresh = newest
            .as_ref()
            .is_some_and(|(_, _, read_at)| *read_at >= last_run_ended);
        if fresh || tokio::time::Instant::now() >= deadline {
            return match newest {
                Some((runtime, variables, read_at)) => json!({"available": true,
                    "variables": variables, "read_at": read_at, "runtime": runtime.name,
                    "note": "as the relay's server runtime read them after its last run"}),
                None => json!({"available": false, "note": "no server runtime has run this \
                    document's cells yet; run a cell (notebook_execute_cell) and ask again"}),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a change to a relay document may take to be stored before the tool answers anyway.
pub(crate) const STORED_WAIT: Duration = Duration::from_secs(10);

impl Open {
    /// Shows the agent's name and the cell it works on to the document's other peers.
    pub(crate) fn presence(&self, name: &str, cell_id: Option<&str>) {
        if let Place::Relay { client, .. } = &self.place {
            client.set_presence(
                // The page's presence shape (an agent's chip, the cell it is in), and
                // JupyterLab's `user` for Jupyter clients.
                &json!({"name": name, "colour": AGENT_COLOUR, "cellId": cell_id,
                        "agent": true, "kind": "agent",
                        "user": {"name": name, "color": AGENT_COLOUR}})
                .to_string(),
            );
        }
    }

    /// Writes a local notebook back to its file (relay documents are live already).
    pub(crate) fn save(&self) -> ToolResult<()> {
        if let Place::Local { path, modified } = &self.place {
            inloop_batch::write_atomically(path, self.notebook.to_ipynb().as_bytes())
                .map_err(|e| e.to_string())?;
            *modified.lock().unwrap_or_else(|e| e.into_inner()) = mtime(path);
        }
        Ok(())
    }

    /// The file of a local notebook.
    pub(crate) fn file(&self) -> Option<&Path> {
        match &self.place {
            Place::Local { path, .. } => Some(path),
            Place::Relay { .. } => None,
        }
    }

    pub(crate) fn doc_id(&self) -> Option<&str> {
        match &self.place {
            Place::Relay { doc_id, .. } => Some(doc_id),
            Place::Local { .. } => None,
        }
    }
}

/// The colour of an agent's presence.
const AGENT_COLOUR: &str = "#8a2be2";
