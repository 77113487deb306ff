//! Notebooks run headless, many at once: what `inloop run` does (and, later, `inloop mcp`'s
//! parallel runs).
//!
//! # Features
//!
//! - **Parameters the papermill way** ([`params`]): typed values (int, float, bool, string, list,
//!   dict, None) written as Python literals into a code cell tagged `injected-parameters`, right
//!   after the cell tagged `parameters` (or at the top without one); an injected cell from an
//!   earlier run is replaced. `-p NAME=VALUE` is typed as papermill types it, YAML as YAML does.
//! - **Many runs in one command** ([`plan()`]): every notebook, times every parameter set of a
//!   YAML list (one run each, written to `{stem}-{index}.ipynb` or `{stem}-{_name}.ipynb`).
//! - **A pool of warm kernels** ([`run_all`]): up to `parallel` runs at a time, and one kernel
//!   more started ahead, so a run rarely waits for a kernel to boot. Each run gets a fresh
//!   kernel that no other run touched, and that kernel is killed when the run ends. A failure,
//!   a timeout (interrupt, then kill) or a dead kernel stops that run only.
//! - **Cheap kernels**: ipykernels are forked from a Python process that imported ipykernel,
//!   IPython and the debugger once (`src/forkserver.py`): about 0.1 s of CPU per kernel instead
//!   of about 0.35 s, which is most of a short run's cost. Each is still a new process with the
//!   run's working directory, environment and streams, interrupted and killed through its
//!   process group like a launched kernel. [`Config::fork_kernels`] `= false` (`--no-fork`)
//!   launches every kernel from its kernelspec; other kernels always are.
//! - **Execution like nbclient/papermill**: cells in order, stopping at the first error unless
//!   errors are allowed (or the cell is tagged `raises-exception`); outputs with Jupyter's
//!   semantics ([`inloop_kernel::OutputWriter`]); execution counts; nbclient's
//!   `metadata.execution` times and papermill's `metadata.papermill` (start, end, duration,
//!   status, exception) on every cell and the notebook. The written file passes
//!   `nbformat.validate`.
//! - **Live on a relay** ([`RelayTarget`]): each run can also be a document on a relay, created
//!   through its HTTP API and written as it runs, with a read-only page URL to watch it.
//! - **History** ([`RecordingObserver`]): each finished run committed on a git branch
//!   `inloop/NAME` ([`inloop_history`]), without touching the checkout.
//! - **Progress** through an [`Observer`]; [`Bars`] draws indicatif bars (one per running
//!   notebook with its current cell, and a total) and [`summary`] the table at the end.
//! - **The whole command** ([`open_history`], [`run_batch`]): `inloop run` from its parsed
//!   flags to its exit status, so the binary only parses arguments.
//! - **Files written whole** ([`write_atomically`]): the one atomic write of the workspace,
//!   used by `inloop-mcp` and the `inloop` binary too.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use inloop_batch::{Config, NoProgress, OutputMode, ParameterSources, plan, run_all};
//!
//! # async fn demo() -> Result<(), inloop_batch::Error> {
//! let sources = ParameterSources { values: vec!["alpha=0.5".into()], ..Default::default() };
//! let runs = plan(&["analysis.ipynb".into()], &sources, &OutputMode::Dir("out".into()))?;
//! let reports = run_all(Config::new(runs), Arc::new(NoProgress)).await;
//! println!("{}", inloop_batch::summary(&reports));
//! # Ok(()) }
//! ```

mod error;
mod execute;
mod files;
mod forkserver;
mod history;
mod orchestrate;
pub mod params;
mod plan;
mod progress;
mod relay;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use inloop_doc::Notebook;
use inloop_kernel::{JupyterConfig, JupyterKernel, KernelSpec, RelayLimits};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use forkserver::ForkServer;

pub use error::{Error, Result};
pub use execute::ERROR_MARKER_TAG;
pub use files::write_atomically;
pub use history::{Recorded, RecordingObserver, check_outputs};
pub use inloop_history::History;
pub use inloop_kernel::SearchPath;
pub use orchestrate::{open_history, run_batch};
pub use params::{Param, Parameters};
pub use plan::{NAME_KEY, OutputMode, ParameterSources, RunSpec, plan};
pub use progress::{Bars, summary};
pub use relay::RelayTarget;

/// The kernelspec used when neither the command line nor the notebook names one.
pub const DEFAULT_KERNEL: &str = "python3";

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Config {
    pub runs: Vec<RunSpec>,
    /// Runs at a time (at least 1). One more kernel than this is kept starting ahead.
    pub parallel: usize,
    /// Longest one cell may run; then the kernel is interrupted, and killed.
    pub cell_timeout: Option<Duration>,
    /// Longest a whole run may take (from its first cell).
    pub run_timeout: Option<Duration>,
    /// Keep going after a cell raises; the run still counts as ok (papermill's
    /// `--allow-errors`... as nbclient's `allow_errors`).
    pub allow_errors: bool,
    /// The kernelspec for every run; by default each notebook's `metadata.kernelspec.name`.
    pub kernel: Option<String>,
    pub kernel_search: SearchPath,
    /// Stream text kept per cell before it is cut with a note.
    pub stream_limit: Option<usize>,
    /// Also publish every run as a live document there.
    pub relay: Option<RelayTarget>,
    /// The kernels' working directory; by default each notebook's own folder (as in Jupyter).
    pub working_dir: Option<PathBuf>,
    /// Fork ipykernels from a process that imported ipykernel once, instead of launching each
    /// from its kernelspec (about a third of the CPU per kernel; each is still a new process no
    /// other run used). Other kernels are always launched from their kernelspec.
    pub fork_kernels: bool,
}

impl Config {
    /// `runs`, one at a time, with no timeouts, the kernels of `$VIRTUAL_ENV`/`./.venv` and the
    /// usual Jupyter directories.
    pub fn new(runs: Vec<RunSpec>) -> Self {
        Self {
            runs,
            parallel: 1,
            cell_timeout: None,
            run_timeout: None,
            allow_errors: false,
            kernel: None,
            kernel_search: SearchPath::from_env([".venv"]),
            stream_limit: Some(inloop_kernel::DEFAULT_STREAM_LIMIT),
            relay: None,
            working_dir: None,
            fork_kernels: true,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    /// A cell raised, the kernel died or did not start, or the notebook could not be read or
    /// written.
    Failed,
    /// A cell, or the whole run, passed its time limit.
    Timeout,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
        }
    }
}

/// What became of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub label: String,
    pub input: PathBuf,
    /// Where the executed notebook was written (`None` if it could not be).
    pub output: Option<PathBuf>,
    pub status: RunStatus,
    /// Cells gone through (run, or passed for markdown), of `cells_total`.
    pub cells_done: usize,
    pub cells_total: usize,
    /// From the first cell to the end of the last.
    pub duration: Duration,
    pub error: Option<String>,
    /// The run's live page on the relay.
    pub page: Option<String>,
}

/// Told what the runs do as they go. Every method has an empty default.
pub trait Observer: Send + Sync {
    /// Run `run` (its index in [`Config::runs`]) got its kernel and starts its first cell.
    fn started(&self, _run: usize, _spec: &RunSpec, _cells: usize) {}
    /// Run `run` starts cell `index` (0-based) of `cells`.
    fn cell(&self, _run: usize, _index: usize, _cells: usize) {}
    /// Run `run` is live on the relay at `url`.
    fn page(&self, _run: usize, _spec: &RunSpec, _url: &str) {}
    fn finished(&self, _run: usize, _report: &RunReport) {}
}

/// An [`Observer`] that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Observer for NoProgress {}

/// Runs every run of `config` and returns their reports, in the order of [`Config::runs`].
///
/// Kernels start ahead of need: up to `parallel` running and one more starting, each one given
/// to exactly one run and killed after it. Dropping the future kills every kernel it started.
pub async fn run_all(config: Config, observer: Arc<dyn Observer>) -> Vec<RunReport> {
    let parallel = config.parallel.max(1);
    let kernel_slots = Arc::new(Semaphore::new(parallel + 1));
    let run_slots = Arc::new(Semaphore::new(parallel));
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    let mut reports: Vec<Option<RunReport>> = vec![None; config.runs.len()];
    // One fork server per kernelspec, started when a run first needs it; `None`: launch them.
    let mut fork_servers: HashMap<String, Option<ForkServer>> = HashMap::new();
    for (index, spec) in config.runs.iter().enumerate() {
        let kernel_slot = kernel_slots
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        // Reports of finished runs, as they come, so their slots are seen to free up.
        while let Some(Ok((i, report))) = tasks.try_join_next() {
            reports[i] = Some(report);
        }
        let prepared = prepare(&config, spec);
        let (notebook, kernel_spec) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let report = failed(spec, None, error.to_string());
                observer.finished(index, &report);
                reports[index] = Some(report);
                continue;
            }
        };
        let kernel_spec = forkserver::with_history_in_memory(kernel_spec);
        let fork_server = if config.fork_kernels {
            let server = match fork_servers.get(&kernel_spec.name) {
                Some(server) => server,
                None => {
                    let server = ForkServer::start(&kernel_spec).await.unwrap_or_else(|error| {
                        tracing::warn!(%error, "launching each kernel from its kernelspec instead");
                        None
                    });
                    fork_servers
                        .entry(kernel_spec.name.clone())
                        .or_insert(server)
                }
            };
            server.as_ref().map(|s| s.socket().to_owned())
        } else {
            None
        };
        let working_dir = config.working_dir.clone().or_else(|| {
            let dir = spec.input.parent().filter(|d| !d.as_os_str().is_empty());
            std::path::absolute(dir.unwrap_or(Path::new("."))).ok()
        });
        let kernel_config = JupyterConfig {
            working_dir,
            fork_server,
            ..JupyterConfig::default()
        };
        let starting = tokio::spawn(start_kernel(kernel_spec, kernel_config));
        let run_slots = run_slots.clone();
        let config = config.clone();
        let observer = observer.clone();
        tasks.spawn(async move {
            let kernel = starting.await;
            let _run_slot = run_slots.acquire_owned().await;
            let report = match kernel {
                Ok(Ok(kernel)) => {
                    run_one(&config, index, notebook, kernel, observer.as_ref()).await
                }
                Ok(Err(error)) => failed(
                    &config.runs[index],
                    Some(&notebook),
                    format!("the kernel did not start: {error}"),
                ),
                Err(error) => failed(&config.runs[index], Some(&notebook), error.to_string()),
            };
            drop(kernel_slot);
            observer.finished(index, &report);
            (index, report)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, report)) = joined {
            reports[i] = Some(report);
        }
    }
    drop(fork_servers);
    reports
        .into_iter()
        .zip(&config.runs)
        .map(|(report, spec)| {
            report.unwrap_or_else(|| failed(spec, None, "the run's task panicked".into()))
        })
        .collect()
}

/// How many times a kernel is started before its run fails.
const KERNEL_START_ATTEMPTS: usize = 3;

/// Starts a kernel, trying again when it dies while starting: a kernel is told its ports before
/// it binds them, and although this process never tells two kernels the same port, another
/// process may take one in between, and the kernel exits.
async fn start_kernel(
    spec: KernelSpec,
    config: JupyterConfig,
) -> inloop_kernel::Result<JupyterKernel> {
    let mut attempt = 1;
    loop {
        match JupyterKernel::start(spec.clone(), config.clone()).await {
            Err(error) if attempt < KERNEL_START_ATTEMPTS => {
                tracing::warn!(%error, attempt, kernel = spec.name, "the kernel did not start; trying again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Reads the notebook, injects its parameters, resets it for the run, and finds its kernel.
fn prepare(config: &Config, spec: &RunSpec) -> Result<(Notebook, KernelSpec)> {
    let bytes = std::fs::read(&spec.input).map_err(|source| Error::Read {
        path: spec.input.clone(),
        source,
    })?;
    let notebook = Notebook::from_ipynb_bytes(&bytes).map_err(|source| Error::Notebook {
        path: spec.input.clone(),
        source,
    })?;
    params::inject(&notebook, &spec.parameters)?;
    execute::reset(&notebook)?;
    let name = config.kernel.clone().unwrap_or_else(|| {
        notebook
            .metadata()
            .get("kernelspec")
            .and_then(|k| k.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or(DEFAULT_KERNEL)
            .to_owned()
    });
    let kernel = KernelSpec::find(&name, &config.kernel_search)?;
    notebook.set_notebook_metadata(
        "kernelspec",
        &json!({"name": kernel.name, "display_name": kernel.display_name,
                "language": kernel.language}),
    );
    Ok((notebook, kernel))
}

fn failed(spec: &RunSpec, notebook: Option<&Notebook>, error: String) -> RunReport {
    RunReport {
        label: spec.label.clone(),
        input: spec.input.clone(),
        output: None,
        status: RunStatus::Failed,
        cells_done: 0,
        cells_total: notebook.map_or(0, |n| n.cell_count() as usize),
        duration: Duration::ZERO,
        error: Some(error),
        page: None,
    }
}

/// One run in its own kernel: published on the relay if asked, executed, written, and the kernel
/// killed.
async fn run_one(
    config: &Config,
    index: usize,
    local: Notebook,
    kernel: JupyterKernel,
    observer: &dyn Observer,
) -> RunReport {
    let spec = &config.runs[index];
    let mut report = failed(spec, Some(&local), String::new());
    let mut client = None;
    let mut notebook = local;
    if let Some(relay) = &config.relay {
        match relay.publish(&notebook, &spec.label).await {
            Ok((published, page)) => {
                observer.page(index, spec, &page);
                report.page = Some(page);
                notebook = published.notebook().clone();
                client = Some(published);
            }
            Err(error) => {
                report.error = Some(error.to_string());
                return report;
            }
        }
    }
    let relay_limits = client.as_ref().and_then(|c| {
        let limits = c.relay_limits()?;
        RelayLimits::from_relay(limits.max_document_bytes, limits.max_message_bytes)
    });
    let start_time = execute::timestamp();
    let started = Instant::now();
    let options = execute::Options {
        cell_timeout: config.cell_timeout,
        run_deadline: config.run_timeout.map(|t| started + t),
        allow_errors: config.allow_errors,
        stream_limit: config.stream_limit,
        relay_limits,
    };
    let output = std::path::absolute(&spec.output).unwrap_or_else(|_| spec.output.clone());
    let mut papermill = json!({
        "parameters": spec.parameters.to_json(),
        "input_path": spec.input.display().to_string(),
        "output_path": output.display().to_string(),
        "start_time": start_time,
        "end_time": null,
        "duration": null,
        "status": "running",
        "exception": null,
        "environment_variables": {},
    });
    notebook.set_notebook_metadata("papermill", &papermill);
    let cells = notebook.cell_count() as usize;
    observer.started(index, spec, cells);
    let outcome = execute::execute(&notebook, &kernel, &options, &|cell| {
        observer.cell(index, cell, cells)
    })
    .await;
    // Killed now, whatever its state: nothing else will use it.
    drop(kernel);
    let duration = started.elapsed();
    papermill["end_time"] = json!(execute::timestamp());
    papermill["duration"] = json!(duration.as_secs_f64());
    papermill["status"] = json!(outcome.status.as_str());
    papermill["exception"] = json!(outcome.status != RunStatus::Ok);
    notebook.set_notebook_metadata("papermill", &papermill);

    report.status = outcome.status;
    report.cells_done = outcome.cells_done;
    report.cells_total = cells;
    report.duration = duration;
    report.error = outcome.error;
    match write_atomically(&spec.output, notebook.to_ipynb().as_bytes()) {
        Ok(()) => report.output = Some(spec.output.clone()),
        Err(error) => {
            report.status = RunStatus::Failed;
            report.error = Some(error.to_string());
        }
    }
    if let Some(client) = client {
        client.wait_stored(Duration::from_secs(10)).await;
        client.close();
    }
    report
}
