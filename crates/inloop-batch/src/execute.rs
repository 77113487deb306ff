//! One notebook run from top to bottom in one kernel, the way nbclient and papermill do it:
//! cells in order, outputs written as they arrive, timing and status in the cells' metadata.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use inloop_doc::execution::Outcome as RunOutcome;
use inloop_doc::{CellType, ExecutionState, ExecutionStatus, JsonMap, Notebook, Output};
use inloop_kernel::{
    Deadline, ExecEvent, JupyterKernel, Kernel, OutputWriter, RelayLimits, run_in_cell_until,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::RunStatus;

/// How long a kernel asked to stop a cell that ran out of time gets before it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);

/// The tag that lets a cell raise without stopping the run (nbclient's).
const RAISES_TAG: &str = "raises-exception";

/// How one notebook runs.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) cell_timeout: Option<Duration>,
    pub(crate) run_deadline: Option<Instant>,
    pub(crate) allow_errors: bool,
    pub(crate) stream_limit: Option<usize>,
    pub(crate) relay_limits: Option<RelayLimits>,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) status: RunStatus,
    /// Cells run (code cells sent to the kernel, and the others passed), in order.
    pub(crate) cells_done: usize,
    pub(crate) error: Option<String>,
}

/// The tag of the markdown cells that point at the cell where a run stopped (papermill's, so
/// tools that look for it find it).
pub const ERROR_MARKER_TAG: &str = "papermill-error-cell-tag";

const MARKER_STYLE: &str =
    "color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;";

/// Marks where a run stopped, as papermill does: a red note at the top linking to the failed
/// cell, and one just before that cell.
fn mark_error(notebook: &Notebook, cell_id: &str) -> inloop_doc::Result<()> {
    let count = notebook
        .cell(cell_id)?
        .execution_count
        .map_or("?".to_owned(), |c| c.to_string());
    let marker = |source: String| {
        json!({"cell_type": "markdown", "metadata": {"tags": [ERROR_MARKER_TAG]},
               "source": source})
    };
    let index = notebook.cell_index(cell_id)?;
    notebook.insert_cell_from_json(
        index,
        marker(format!(
            "<span id=\"papermill-error-cell\" style=\"{MARKER_STYLE}\">\
             Execution using inloop run encountered an exception here and stopped:</span>"
        )),
    )?;
    notebook.insert_cell_from_json(
        0,
        marker(format!(
            "<span style=\"{MARKER_STYLE}\">An Exception was encountered at \
             '<a href=\"#papermill-error-cell\">In [{count}]</a>'.</span>"
        )),
    )?;
    Ok(())
}

/// Now, as nbclient writes times: ISO 8601 in UTC with microseconds and a `Z`.
pub(crate) fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn tags(metadata: &JsonMap) -> Vec<&str> {
    metadata
        .get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Readies a notebook for a run, as papermill does before executing: every code cell's outputs
/// and execution count cleared, every cell's `metadata.papermill` pending.
pub(crate) fn reset(notebook: &Notebook) -> inloop_doc::Result<()> {
    for cell in notebook.cells() {
        if cell.cell_type == CellType::Code {
            notebook.clear_outputs(&cell.id)?;
            notebook.set_execution_count(&cell.id, None)?;
            notebook.remove_cell_metadata(&cell.id, "execution")?;
        }
        notebook.set_cell_metadata(
            &cell.id,
            "papermill",
            &papermill_cell("pending", None, None, None),
        )?;
    }
    Ok(())
}

/// A cell's `metadata.papermill`: its status, and its times as far as they are known.
fn papermill_cell(
    status: &str,
    start: Option<&str>,
    end: Option<(&str, f64)>,
    exception: Option<bool>,
) -> Value {
    json!({
        "status": status,
        "start_time": start,
        "end_time": end.map(|(time, _)| time),
        "duration": end.map(|(_, duration)| duration),
        "exception": exception,
    })
}

/// How one cell's execution ended.
enum CellEnd {
    Ok,
    /// It raised: `ename: evalue`.
    Raised(String),
    Timeout(Duration),
    /// The kernel died or could not be reached.
    Lost(String),
}

/// Runs every cell of `notebook` in `kernel`, calling `on_cell(index)` as each starts.
pub(crate) async fn execute(
    notebook: &Notebook,
    kernel: &JupyterKernel,
    options: &Options,
    on_cell: &(dyn Fn(usize) + Send + Sync),
) -> Outcome {
    let info = kernel.kernel_info();
    if !info.language_info.is_empty() {
        notebook.set_notebook_metadata("language_info", &Value::Object(info.language_info));
    }
    let cells = notebook.cells();
    let mut outcome = Outcome {
        status: RunStatus::Ok,
        cells_done: 0,
        error: None,
    };
    for (index, cell) in cells.iter().enumerate() {
        on_cell(index);
        let start_time = timestamp();
        let started = Instant::now();
        let _ = notebook.set_cell_metadata(
            &cell.id,
            "papermill",
            &papermill_cell("running", Some(&start_time), None, None),
        );
        let end = if cell.cell_type == CellType::Code && !cell.source.trim().is_empty() {
            let cell_deadline = options.cell_timeout.map(|t| Instant::now() + t);
            let deadline = match (cell_deadline, options.run_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let _ = notebook.set_execution_state(&cell.id, ExecutionState::Running);
            let end = run_cell(notebook, &cell.id, &cell.source, kernel, options, deadline).await;
            let _ = notebook.set_execution_state(&cell.id, ExecutionState::Idle);
            end
        } else {
            CellEnd::Ok
        };
        let allowed = options.allow_errors || tags(&cell.metadata).contains(&RAISES_TAG);
        let (status, exception, stop) = match &end {
            CellEnd::Ok => ("completed", false, None),
            CellEnd::Raised(_) if allowed => ("completed", true, None),
            CellEnd::Raised(summary) => {
                ("failed", true, Some((RunStatus::Failed, summary.clone())))
            }
            CellEnd::Timeout(after) => (
                "failed",
                true,
                Some((
                    RunStatus::Timeout,
                    format!(
                        "cell {} timed out after {:.1} s",
                        index + 1,
                        after.as_secs_f64()
                    ),
                )),
            ),
            CellEnd::Lost(why) => ("failed", true, Some((RunStatus::Failed, why.clone()))),
        };
        let _ = notebook.set_cell_metadata(
            &cell.id,
            "papermill",
            &papermill_cell(
                status,
                Some(&start_time),
                Some((&timestamp(), started.elapsed().as_secs_f64())),
                Some(exception),
            ),
        );
        outcome.cells_done = index + 1;
        if let Some((status, error)) = stop {
            outcome.status = status;
            outcome.error = Some(error);
            if let Err(error) = mark_error(notebook, &cell.id) {
                tracing::warn!(%error, "could not mark the failed cell");
            }
            break;
        }
    }
    outcome
}

/// Runs one code cell, writing its events into it and nbclient's `metadata.execution` times.
async fn run_cell(
    notebook: &Notebook,
    cell_id: &str,
    code: &str,
    kernel: &JupyterKernel,
    options: &Options,
    deadline: Option<Instant>,
) -> CellEnd {
    let mut writer = OutputWriter::new(options.stream_limit);
    if let Some(limits) = options.relay_limits {
        writer = writer.with_relay_limits(limits);
    }
    let busy = timestamp();
    let mut execute_input = None;
    let stamp_input = |event: &ExecEvent| {
        if matches!(event, ExecEvent::Started { .. }) && execute_input.is_none() {
            execute_input = Some(timestamp());
        }
    };
    let run = run_in_cell_until(
        kernel,
        notebook,
        cell_id,
        code,
        &mut writer,
        stamp_input,
        deadline.map(|at| Deadline {
            at,
            grace: INTERRUPT_GRACE,
        }),
    )
    .await;
    let done = timestamp();
    let _ = notebook.set_cell_metadata(
        cell_id,
        "execution",
        &json!({
            "iopub.status.busy": busy,
            "iopub.execute_input": execute_input.unwrap_or_else(|| busy.clone()),
            "shell.execute_reply": done,
            "iopub.status.idle": done,
        }),
    );
    if let Some(error) = run.write_error {
        tracing::warn!(%error, cell_id, "an output could not be written");
    }
    // The cell ends as an entry of the queue would (the execution state machine's rule); a run
    // stops at anything but `done`.
    let ending = notebook.run_ending(cell_id, &run.outcome);
    let message = ending.message.unwrap_or_default();
    match run.outcome {
        RunOutcome::TimedOut { after_s } => {
            let evalue = format!(
                "A cell timed out while it was being executed, after {after_s:.1} seconds."
            );
            let _ = notebook.append_output(
                cell_id,
                &Output::Error {
                    ename: "CellTimeoutError".into(),
                    evalue: evalue.clone(),
                    traceback: vec![format!("CellTimeoutError: {evalue}")],
                },
            );
            CellEnd::Timeout(Duration::from_secs_f64(after_s))
        }
        RunOutcome::KernelDied { .. } | RunOutcome::Failed { .. } => {
            let _ = notebook.append_output(
                cell_id,
                &Output::Error {
                    ename: "DeadKernelError".into(),
                    evalue: message.clone(),
                    traceback: vec![message.clone()],
                },
            );
            CellEnd::Lost(message)
        }
        _ if ending.status == ExecutionStatus::Done => CellEnd::Ok,
        _ => CellEnd::Raised(message),
    }
}
