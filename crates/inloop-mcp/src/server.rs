//! The MCP tools.

use std::sync::Arc;
use std::time::Duration;

use inloop_doc::CellType;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::export;
use crate::progress::Progress;
use crate::store::{Open, STORED_WAIT, Store, ToolResult};

/// The MCP server: every session (one on stdio, one per HTTP client) shares one store of
/// open notebooks and their kernels.
#[derive(Clone)]
pub struct NotebookServer {
    store: Arc<Store>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for NotebookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotebookServer").finish_non_exhaustive()
    }
}

/// The kind of a cell.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Code,
    Markdown,
    Raw,
}

impl From<Kind> for CellType {
    fn from(kind: Kind) -> CellType {
        match kind {
            Kind::Code => CellType::Code,
            Kind::Markdown => CellType::Markdown,
            Kind::Raw => CellType::Raw,
        }
    }
}

/// A cell to put in a new notebook.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct NewCell {
    /// `code` (default), `markdown` or `raw`.
    #[serde(default)]
    cell_type: Option<Kind>,
    /// The cell's text.
    source: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CreateArgs {
    /// Where to create a local notebook: a path ending in `.ipynb`, relative to the server's
    /// root folder (an absolute path must be under it too). Leave it out to create a live document on the relay instead
    /// (only when the server was started with --relay); the answer gives its `relay:DOC_ID`.
    #[serde(default)]
    path: Option<String>,
    /// Cells to start with, in order (default: none).
    #[serde(default)]
    cells: Vec<NewCell>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListArgs {}

/// What `notebook_edit_cell` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// Add a new cell at `index` (default: at the end) with `source` and `cell_type`.
    Insert,
    /// Replace the source (and, if given, the type) of the cell named by `cell_id` or `index`.
    Replace,
    /// Delete the cell named by `cell_id` or `index`.
    Delete,
    /// Move the cell named by `cell_id` or `index` to position `to_index`.
    Move,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct EditArgs {
    /// The notebook: a local `.ipynb` path or `relay:DOC_ID` (as notebook_list shows them).
    notebook: String,
    /// insert, replace, delete or move.
    action: Action,
    /// The id of the cell to replace, delete or move (notebook_get_state shows the ids).
    #[serde(default)]
    cell_id: Option<String>,
    /// 0-based position: for insert, where the new cell goes (default: the end); for the
    /// others, the cell to act on when no `cell_id` is given (-1 is the last cell).
    #[serde(default)]
    index: Option<i64>,
    /// For move: the 0-based position the cell ends up at.
    #[serde(default)]
    to_index: Option<i64>,
    /// For insert and replace: the cell's new text.
    #[serde(default)]
    source: Option<String>,
    /// For insert (default `code`) and replace (default: unchanged).
    #[serde(default)]
    cell_type: Option<Kind>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ExecuteArgs {
    /// The notebook: a local `.ipynb` path or `relay:DOC_ID`.
    notebook: String,
    /// The id of the code cell to run.
    #[serde(default)]
    cell_id: Option<String>,
    /// The 0-based position of the cell to run, when no `cell_id` is given (-1: the last).
    #[serde(default)]
    index: Option<i64>,
    /// Longest the cell may run, in seconds, before it is interrupted (default 600).
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ExecuteAllArgs {
    /// The notebook: a local `.ipynb` path or `relay:DOC_ID`.
    notebook: String,
    /// Keep running the next cells after one raises (default false: stop at the first error).
    #[serde(default)]
    continue_on_error: bool,
    /// Longest each cell may run, in seconds (default 600).
    #[serde(default)]
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct StateArgs {
    /// The notebook: a local `.ipynb` path or `relay:DOC_ID`.
    notebook: String,
    /// Also list the kernel's variables with their type and a short repr (default true).
    #[serde(default)]
    variables: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ParallelArgs {
    /// A local `.ipynb` path or `relay:DOC_ID` (run from a snapshot of the document). Its cell
    /// tagged `parameters` is followed, in each copy, by an injected cell assigning that copy's
    /// parameters (papermill's convention).
    notebook: String,
    /// One object of parameters per run, e.g. [{"alpha": 0.1}, {"alpha": 0.5}]. A `_name` key
    /// names the run's output file instead of its index.
    parameter_sets: Vec<serde_json::Map<String, Value>>,
    /// The folder for the executed copies, relative to the root and under it (default
    /// `inloop-runs`).
    #[serde(default)]
    output_dir: Option<String>,
    /// Runs at a time (default 4).
    #[serde(default)]
    parallel: Option<usize>,
    /// Longest one cell may run, in seconds (default: no limit).
    #[serde(default)]
    timeout_seconds: Option<f64>,
    /// Keep going after a cell raises (the run still counts as ok).
    #[serde(default)]
    allow_errors: bool,
}

/// An export format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// The notebook itself (nbformat 4.5 JSON), outputs included.
    Ipynb,
    /// A Python script with `# %%` cell markers; markdown as comments.
    Script,
    /// Markdown: text cells as they are, code and text outputs in fenced blocks.
    Markdown,
    /// One standalone HTML page with the outputs (images inline).
    Html,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ExportArgs {
    /// The notebook: a local `.ipynb` path or `relay:DOC_ID`.
    notebook: String,
    /// ipynb, script, markdown or html.
    format: Format,
    /// Write the export to this file (relative to the root, and under it) instead of
    /// returning its text.
    #[serde(default)]
    path: Option<String>,
}

fn ok(value: Value) -> Result<CallToolResult, ErrorData> {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
}

fn answer(result: ToolResult<Value>) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(value) => ok(value),
        Err(message) => Ok(CallToolResult::error(vec![ContentBlock::text(message)])),
    }
}

/// The folder (under the root) where `--git` keeps snapshots of relay documents.
const RELAY_SNAPSHOTS: &str = "relay";

/// Adds what `--git` recorded of this call, if anything, to its answer.
fn with_history(mut answer: Value, recorded: Option<Value>) -> Value {
    if let (Some(recorded), Some(fields)) = (recorded, answer.as_object_mut()) {
        fields.insert("history".into(), recorded);
    }
    answer
}

fn timeout(seconds: Option<f64>, default: Duration) -> ToolResult<Duration> {
    match seconds {
        None => Ok(default),
        Some(s) => Duration::try_from_secs_f64(s)
            .map_err(|_| format!("timeout_seconds {s}: give a positive number of seconds")),
    }
}

/// The id of the cell `cell_id` or `index` names.
fn resolve(open: &Open, cell_id: Option<&str>, index: Option<i64>) -> ToolResult<(String, usize)> {
    let ids = open.notebook.cell_ids();
    if let Some(id) = cell_id {
        return match ids.iter().position(|c| c == id) {
            Some(position) => Ok((id.to_owned(), position)),
            None => Err(format!(
                "no cell {id} in {}; notebook_get_state lists the cells with their ids",
                open.reference
            )),
        };
    }
    let Some(index) = index else {
        return Err("name the cell: give cell_id (or index)".into());
    };
    let position = if index < 0 {
        ids.len() as i64 + index
    } else {
        index
    };
    if position < 0 || position as usize >= ids.len() {
        return Err(format!(
            "index {index} is out of range: {} has {} cells",
            open.reference,
            ids.len()
        ));
    }
    Ok((ids[position as usize].clone(), position as usize))
}

impl NotebookServer {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            tool_router: Self::tool_router(),
        }
    }

    /// With `--git`, commits a local notebook as this call left it (see [`Store::record`]).
    async fn record_notebook(&self, open: &Open, tool: &str, did: String) -> Option<Value> {
        // A relay document is kept in the history as a snapshot under `relay/` (on the branch
        // only: the working tree does not get it).
        let file = match (open.file(), open.doc_id()) {
            (Some(file), _) => file.to_owned(),
            (None, Some(doc_id)) => self
                .store
                .root()
                .join(RELAY_SNAPSHOTS)
                .join(format!("{doc_id}.ipynb")),
            (None, None) => return None,
        };
        let subject = format!("{tool}: {did} in {}", open.reference);
        let content = open.notebook.to_ipynb().into_bytes();
        self.store.record(tool, file, content, subject).await
    }

    /// After an edit: saved to disk, or sent to the relay and acknowledged.
    async fn commit(&self, open: &Open) -> ToolResult<()> {
        open.save()?;
        if let crate::store::Place::Relay { client, .. } = &open.place {
            client.wait_stored(STORED_WAIT).await;
        }
        Ok(())
    }

    async fn create(&self, path: Option<&str>, cells: &[(CellType, String)]) -> ToolResult<Value> {
        let reference = self.store.create(path, cells).await?;
        let open = self.store.get(&reference).await?;
        let cells: Vec<Value> = open
            .notebook
            .cells()
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"index": i, "id": c.id, "cell_type": c.cell_type.as_str()}))
            .collect();
        let recorded = self
            .record_notebook(
                &open,
                "notebook_create",
                format!("created with {} cells", cells.len()),
            )
            .await;
        Ok(with_history(
            json!({"notebook": reference, "cells": cells}),
            recorded,
        ))
    }

    async fn edit(&self, args: EditArgs) -> ToolResult<Value> {
        let open = self.store.get(&args.notebook).await?;
        let _busy = open.busy.lock().await;
        let notebook = &open.notebook;
        let error = |e: inloop_doc::Error| e.to_string();
        let (cell_id, index) = match args.action {
            Action::Insert => {
                let count = notebook.cell_count() as i64;
                let at = match args.index {
                    None => count,
                    Some(i) if i < 0 => (count + 1 + i).max(0),
                    Some(i) => i.min(count),
                };
                let kind = args.cell_type.unwrap_or(Kind::Code);
                let source = args.source.unwrap_or_default();
                let id = notebook
                    .insert_cell(at as u32, kind.into(), &source)
                    .map_err(error)?;
                (id, at as usize)
            }
            Action::Replace => {
                let (id, index) = resolve(&open, args.cell_id.as_deref(), args.index)?;
                open.presence(&self.store.config.name, Some(&id));
                if let Some(kind) = args.cell_type {
                    notebook.set_cell_type(&id, kind.into()).map_err(error)?;
                }
                let Some(source) = args.source else {
                    return Err("replace needs `source`: the cell's new text".into());
                };
                notebook.set_source(&id, &source).map_err(error)?;
                (id, index)
            }
            Action::Delete => {
                let (id, index) = resolve(&open, args.cell_id.as_deref(), args.index)?;
                notebook.delete_cell(&id).map_err(error)?;
                (id, index)
            }
            Action::Move => {
                let (id, _) = resolve(&open, args.cell_id.as_deref(), args.index)?;
                let Some(to) = args.to_index else {
                    return Err("move needs `to_index`: the position the cell ends up at".into());
                };
                let count = notebook.cell_count() as i64;
                let to = if to < 0 { count + to } else { to }.clamp(0, count - 1);
                notebook.move_cell(&id, to as u32).map_err(error)?;
                (id, to as usize)
            }
        };
        if args.action != Action::Delete {
            open.presence(&self.store.config.name, Some(&cell_id));
        }
        self.commit(&open).await?;
        let cells: Vec<Value> = notebook
            .cells()
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"index": i, "id": c.id, "cell_type": c.cell_type.as_str()}))
            .collect();
        let action = serde_json::to_value(args.action).unwrap_or_default();
        let did = format!("{} cell {index}", action.as_str().unwrap_or_default());
        let recorded = self.record_notebook(&open, "notebook_edit_cell", did).await;
        let answer = json!({"notebook": open.reference, "action": args.action,
                            "cell_id": cell_id, "index": index, "cells": cells});
        Ok(with_history(answer, recorded))
    }

    async fn execute(&self, args: ExecuteArgs, progress: &Progress) -> ToolResult<Value> {
        let open = self.store.get(&args.notebook).await?;
        let _busy = open.busy.lock().await;
        let (cell_id, index) = resolve(&open, args.cell_id.as_deref(), args.index)?;
        let limit = timeout(args.timeout_seconds, self.store.config.default_timeout)?;
        let run = progress
            .while_running(self.store.run_cell(&open, &cell_id, limit), |seconds| {
                format!("cell {cell_id} (index {index}): running for {seconds} s")
            })
            .await?;
        let did = format!("ran cell {index} ({})", run.status);
        let recorded = self
            .record_notebook(&open, "notebook_execute_cell", did)
            .await;
        Ok(with_history(run.to_json(index), recorded))
    }

    /// Reports "cell K of N: running" before each cell (progress K-1), and how it ended.
    async fn execute_all(&self, args: ExecuteAllArgs, progress: &Progress) -> ToolResult<Value> {
        let open = self.store.get(&args.notebook).await?;
        let _busy = open.busy.lock().await;
        let limit = timeout(args.timeout_seconds, self.store.config.default_timeout)?;
        let code_cells: Vec<_> = open
            .notebook
            .cells()
            .into_iter()
            .enumerate()
            .filter(|(_, cell)| cell.cell_type == CellType::Code && !cell.source.trim().is_empty())
            .collect();
        let total = code_cells.len();
        let mut runs = Vec::new();
        let mut failed = 0;
        for (index, cell) in code_cells {
            let done = runs.len();
            progress.report(
                done as f64,
                Some(total as f64),
                format!("cell {} of {total}: running", done + 1),
            );
            let run = self.store.run_cell(&open, &cell.id, limit).await?;
            let ok = run.status == "done";
            runs.push(run.to_json(index));
            if !ok {
                failed += 1;
                if !args.continue_on_error {
                    break;
                }
            }
        }
        let done = runs.len();
        let summary = match failed {
            0 => format!("{done} of {total} cells done"),
            _ if done < total => format!("cell {done} of {total} failed; stopped there"),
            _ => format!("{done} of {total} cells run, {failed} failed"),
        };
        let recorded = self
            .record_notebook(&open, "notebook_execute_all", format!("ran all: {summary}"))
            .await;
        progress.report(done as f64, Some(total as f64), summary);
        progress.flush().await;
        let status = if failed == 0 { "done" } else { "error" };
        let answer = json!({"notebook": open.reference, "status": status, "cells": runs});
        Ok(with_history(answer, recorded))
    }

    async fn state(&self, args: StateArgs) -> ToolResult<Value> {
        let open = self.store.get(&args.notebook).await?;
        let cells: Vec<Value> = open
            .notebook
            .cells()
            .iter()
            .enumerate()
            .map(|(i, c)| export::cell_json(i, c))
            .collect();
        let executions: Vec<Value> = open
            .notebook
            .executions()
            .into_iter()
            .rev()
            .take(20)
            .map(|e| {
                json!({"id": e.id, "cell_id": e.cell_id, "status": e.status.as_str(),
                       "target": e.target.to_string(), "requested_by": e.requested_by,
                       "execution_count": e.execution_count, "message": e.message})
            })
            .collect();
        let variables = if args.variables.unwrap_or(true) {
            match open.busy.try_lock() {
                Ok(_busy) => self.store.variables(&open).await,
                Err(_) => json!({"available": false, "note": "a run of this notebook is going \
                    on; ask again when it is done"}),
            }
        } else {
            Value::Null
        };
        let kernel = match self.store.running_kernel(&open).await {
            Some(k) => json!({"running": true, "name": k.spec().name}),
            None if open.doc_id().is_some() => json!({"running": null,
                "note": "runs go to the relay's server runtime"}),
            None => json!({"running": false}),
        };
        Ok(
            json!({"notebook": open.reference, "metadata": open.notebook.metadata(),
                  "kernel": kernel, "cells": cells, "variables": variables,
                  "recent_executions": executions}),
        )
    }

    async fn parallel(&self, args: ParallelArgs, progress: Progress) -> ToolResult<Value> {
        if args.parameter_sets.is_empty() {
            return Err("give parameter_sets: one object of parameters per run".into());
        }
        // A relay document runs from a snapshot of it, written to a temporary folder (its
        // kernels work in the root folder, as a local notebook's would in its own).
        let mut snapshot = None;
        let input = match args.notebook.strip_prefix(crate::store::RELAY_PREFIX) {
            Some(doc) => {
                let open = self.store.get(&args.notebook).await?;
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let path = dir.path().join(format!("{doc}.ipynb"));
                inloop_batch::write_atomically(&path, open.notebook.to_ipynb().as_bytes())
                    .map_err(|e| e.to_string())?;
                snapshot = Some(dir);
                path
            }
            None => self.store.local_path(&args.notebook)?,
        };
        // A YAML list of mappings makes one run per entry; JSON is YAML.
        let sets = tempfile_with(&serde_json::to_string(&args.parameter_sets).unwrap_or_default())?;
        let out_dir = self
            .store
            .path(args.output_dir.as_deref().unwrap_or("inloop-runs"))?;
        let sources = inloop_batch::ParameterSources {
            files: vec![sets.path().to_owned()],
            ..Default::default()
        };
        let runs = inloop_batch::plan(
            std::slice::from_ref(&input),
            &sources,
            &inloop_batch::OutputMode::Dir(out_dir),
        )
        .map_err(|e| e.to_string())?;
        // A run's `_name` names its file, and could climb out of the folder (`../x`).
        for run in &runs {
            self.store.path(&run.output.to_string_lossy())?;
        }
        let mut config = inloop_batch::Config::new(runs);
        config.parallel = args.parallel.unwrap_or(4).max(1);
        config.cell_timeout = match args.timeout_seconds {
            Some(s) => Some(timeout(Some(s), Duration::ZERO)?),
            None => None,
        };
        config.allow_errors = args.allow_errors;
        config.kernel_search = self.store.config.kernel_search.clone();
        if snapshot.is_some() {
            config.working_dir = Some(self.store.root().to_owned());
        }
        let progress = Arc::new(RunsProgress {
            progress,
            total: args.parameter_sets.len(),
            finished: std::sync::Mutex::new(0),
        });
        // With --git, each run is committed as `inloop run --git` commits it.
        let (recorder, unrecordable) = match &self.store.config.history {
            None => (None, None),
            Some(history) => match inloop_batch::check_outputs(history, &config.runs) {
                Ok(()) => {
                    let recorder = Arc::new(inloop_batch::RecordingObserver::new(
                        history.clone(),
                        config.runs.clone(),
                        progress.clone(),
                    ));
                    (Some(recorder), None)
                }
                Err(error) => (
                    None,
                    Some(json!({"branch": history.branch(),
                                                  "error": error.to_string()})),
                ),
            },
        };
        let observer: Arc<dyn inloop_batch::Observer> = match &recorder {
            Some(recorder) => recorder.clone(),
            None => progress.clone(),
        };
        let reports = inloop_batch::run_all(config, observer).await;
        let recorded = match recorder {
            Some(recorder) => {
                let records = tokio::task::spawn_blocking(move || recorder.finish())
                    .await
                    .unwrap_or_default();
                let branch = self.store.config.history.as_ref().map(|h| h.branch());
                Some(
                    json!({"branch": branch, "commits": records.iter().map(|r| match &r.result {
                    Ok(commit) => json!({"run": r.label, "commit": commit.as_ref().map(|c| &c.id)}),
                    Err(error) => json!({"run": r.label, "error": error.to_string()}),
                }).collect::<Vec<_>>()}),
                )
            }
            None => unrecordable,
        };
        progress.progress.flush().await;
        let ok = reports
            .iter()
            .filter(|r| r.status == inloop_batch::RunStatus::Ok)
            .count();
        let runs: Vec<Value> = reports
            .iter()
            .zip(&args.parameter_sets)
            .map(|(r, parameters)| {
                json!({"label": r.label, "parameters": parameters, "status": r.status.as_str(),
                       "output": r.output.as_ref().map(|p| p.display().to_string()),
                       "cells_done": r.cells_done, "cells_total": r.cells_total,
                       "seconds": r.duration.as_secs_f64(), "error": r.error})
            })
            .collect();
        let answer = json!({"notebook": args.notebook, "runs_ok": ok,
                            "runs_total": reports.len(), "runs": runs});
        Ok(with_history(answer, recorded))
    }

    async fn export(&self, args: ExportArgs) -> ToolResult<Value> {
        let open = self.store.get(&args.notebook).await?;
        let title = open
            .reference
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let text = match args.format {
            Format::Ipynb => open.notebook.to_ipynb(),
            Format::Script => export::to_script(&open.notebook),
            Format::Markdown => export::to_markdown(&open.notebook),
            Format::Html => export::to_html(&open.notebook, &title),
        };
        match args.path {
            Some(given) => {
                let path = self.store.path(&given)?;
                inloop_batch::write_atomically(&path, text.as_bytes())
                    .map_err(|e| e.to_string())?;
                let format = serde_json::to_value(args.format).unwrap_or_default();
                let subject = format!(
                    "notebook_export: {} as {} to {given}",
                    open.reference,
                    format.as_str().unwrap_or_default(),
                );
                let recorded = self
                    .store
                    .record(
                        "notebook_export",
                        path.clone(),
                        text.clone().into_bytes(),
                        subject,
                    )
                    .await;
                let answer = json!({"notebook": open.reference, "format": args.format,
                                    "written": path.display().to_string(), "bytes": text.len()});
                Ok(with_history(answer, recorded))
            }
            None => Ok(json!({"notebook": open.reference, "format": args.format, "text": text})),
        }
    }
}

/// Reports each parallel run as it finishes: progress is the runs finished.
struct RunsProgress {
    progress: Progress,
    total: usize,
    /// Counted and reported under one lock, so the reports grow in the order they are sent.
    finished: std::sync::Mutex<usize>,
}

impl inloop_batch::Observer for RunsProgress {
    fn finished(&self, _run: usize, report: &inloop_batch::RunReport) {
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        *finished += 1;
        self.progress.report(
            *finished as f64,
            Some(self.total as f64),
            format!(
                "run {} of {} finished: {} {}",
                *finished,
                self.total,
                report.label,
                report.status.as_str()
            ),
        );
    }
}

fn tempfile_with(text: &str) -> ToolResult<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| e.to_string())?;
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(file)
}

#[tool_router]
impl NotebookServer {
    #[tool(
        description = "Create a notebook: a local .ipynb file at `path` (relative to the server's \
        root), or, without `path`, a live document on the relay (when the server has --relay; \
        people watching it see every edit and run). Optionally with initial cells. Returns the \
        notebook reference to pass to the other tools."
    )]
    async fn notebook_create(
        &self,
        Parameters(args): Parameters<CreateArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let cells: Vec<(CellType, String)> = args
            .cells
            .into_iter()
            .map(|c| (c.cell_type.unwrap_or(Kind::Code).into(), c.source))
            .collect();
        answer(self.create(args.path.as_deref(), &cells).await)
    }

    #[tool(
        description = "List the notebooks: local .ipynb files under the server's root folder, \
        and the relay's documents (as relay:DOC_ID) when the server has --relay."
    )]
    async fn notebook_list(
        &self,
        Parameters(_args): Parameters<ListArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.store.list().await)
    }

    #[tool(
        description = "Change a notebook's cells: `insert` a new cell (at `index`, default the \
        end), `replace` a cell's source (and optionally its type), `delete` a cell, or `move` a \
        cell to `to_index`. Name the cell by `cell_id` (preferred) or 0-based `index`. Local \
        notebooks are saved at once; on a relay document the edit is live for everyone. \
        Returns the cell's id and the notebook's cells."
    )]
    async fn notebook_edit_cell(
        &self,
        Parameters(args): Parameters<EditArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.edit(args).await)
    }

    #[tool(
        description = "Run one code cell and return its outputs (text, JSON; images as their \
        mime type and size) and status (done, error, timeout). Local notebooks run in a kernel \
        kept warm per notebook (variables persist between calls); relay documents run on the \
        relay's server runtime, with outputs streaming to everyone watching."
    )]
    async fn notebook_execute_cell(
        &self,
        Parameters(args): Parameters<ExecuteArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.execute(args, &Progress::for_request(&context)).await)
    }

    #[tool(
        description = "Run every code cell of a notebook in order, stopping at the first error \
        unless continue_on_error. Returns each cell's status and outputs. With a progressToken, \
        reports progress as cells done of the code cells."
    )]
    async fn notebook_execute_all(
        &self,
        Parameters(args): Parameters<ExecuteAllArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(
            self.execute_all(args, &Progress::for_request(&context))
                .await,
        )
    }

    #[tool(
        description = "Read a notebook: every cell with its id, type, source, outputs, execution \
        count and state, recent executions, and the kernel's variables with type and short \
        repr (read without changing the execution count)."
    )]
    async fn notebook_get_state(
        &self,
        Parameters(args): Parameters<StateArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.state(args).await)
    }

    #[tool(
        description = "Run N copies of a notebook, each with its own parameters (papermill \
        style: injected after the cell tagged `parameters`), several at a time, each in a fresh \
        kernel. Returns each run's status and the path of its executed notebook. With a \
        progressToken, reports progress as runs finished."
    )]
    async fn notebook_parallel_run(
        &self,
        Parameters(args): Parameters<ParallelArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.parallel(args, Progress::for_request(&context)).await)
    }

    #[tool(
        description = "Export a notebook as ipynb, a Python script (`# %%` cells), markdown or a \
        standalone HTML page with outputs. Returns the text, or writes it to `path`."
    )]
    async fn notebook_export(
        &self,
        Parameters(args): Parameters<ExportArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(self.export(args).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotebookServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("inloop", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Notebooks as tools. A notebook is a local .ipynb path or relay:DOC_ID. \
                 notebook_list finds them, notebook_get_state shows cells with their ids, \
                 notebook_edit_cell changes cells, notebook_execute_cell runs one.",
            )
    }
}
