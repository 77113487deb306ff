//! What a kernel is to inloop, and the Jupyter kernel.
//!
//! # Features
//!
//! - **One kernel model for every runtime.** [`Kernel`] (execute, interrupt, restart, shutdown,
//!   kernel info) streams [`ExecEvent`]s: `Started` with the execution count, outputs in
//!   nbformat's shape, display updates by `display_id`, clear-output. The server runtime runs
//!   [`JupyterKernel`]; the browser's Pyodide kernel implements the same trait.
//! - **Kernelspecs found as Jupyter finds them**: [`KernelSpec::find`] searches `JUPYTER_PATH`,
//!   the environment's `share/jupyter` (`$VIRTUAL_ENV`, or a prefix the caller names), the
//!   user's data directory and the system's ([`SearchPath`]), and says where it looked when
//!   a name is not there.
//! - **Real Jupyter kernels** over ZeroMQ (jupyter-zmq-client, jupyter-protocol): a connection
//!   file with free ports and a random HMAC key, messages routed by their parent's `msg_id`,
//!   `execute` returning only once the reply *and* the kernel's `idle` are in (no output lost
//!   after the reply), interrupts by signal or message per the kernelspec, restarts with a
//!   fresh process, and [`Error::KernelDied`] promptly when the process exits mid-run.
//! - **One run driver**: [`run_in_cell`] (and [`run_in_cell_until`], with a deadline) runs code
//!   into a cell and reports the [`inloop_doc::execution::Outcome`] that the execution state
//!   machine turns into the entry's end; every runtime uses it.
//! - **Outputs into the document**: [`OutputWriter`] applies events to a cell through
//!   `inloop-doc`, with Jupyter's `clear_output(wait=True)` semantics and a cap on stream text
//!   that ends in a visible truncation note.
//!
//! - **Cargo feature `jupyter`** (default): the Jupyter kernel, kernelspec discovery and
//!   container mode (ZeroMQ, processes, tokio's full runtime). Without it
//!   (`default-features = false`) the crate is the kernel model and the [`OutputWriter`] only,
//!   and builds for `wasm32-unknown-unknown`: the browser engine's Pyodide kernel uses it.
//!
//! # Example
//!
//! ```no_run
//! use inloop_doc::{CellType, Notebook};
//! # #[cfg(feature = "jupyter")]
//! use inloop_kernel::{JupyterConfig, JupyterKernel, Kernel, KernelSpec, OutputWriter, SearchPath};
//!
//! # #[cfg(feature = "jupyter")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = KernelSpec::find("python3", &SearchPath::from_env([".venv"]))?;
//! let kernel = JupyterKernel::start(spec, JupyterConfig::default()).await?;
//!
//! let notebook = Notebook::blank();
//! let cell = notebook.push_cell(CellType::Code, "print('hello')")?;
//! let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
//! let mut writer = OutputWriter::default();
//! let write = async {
//!     // Ends when `execute` is done: it drops its sender then.
//!     while let Some(event) = received.recv().await {
//!         writer.apply(&notebook, &cell, &event)?;
//!     }
//!     Ok::<_, inloop_doc::Error>(())
//! };
//! let code = notebook.source(&cell)?;
//! let (reply, written) = tokio::join!(kernel.execute(&code, events), write);
//! written?;
//! println!("{:?}, {}", reply?.status, notebook.to_ipynb());
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "jupyter")]
mod container;
mod error;
#[cfg(feature = "jupyter")]
mod jupyter;
mod kernel;
#[cfg(feature = "jupyter")]
mod kernelspec;
mod run;
mod variables;
mod writer;

#[cfg(feature = "jupyter")]
pub use container::{CONTAINER_CONNECTION_DIR, Container, Engine};
pub use error::{Error, Result};
#[cfg(feature = "jupyter")]
pub use jupyter::{JupyterConfig, JupyterKernel};
pub use kernel::{ExecEvent, ExecuteReply, Kernel, KernelInfo, ReplyStatus};
#[cfg(feature = "jupyter")]
pub use kernelspec::{InterruptMode, KernelSpec, SearchPath};
pub use run::{CellRun, outcome_of, run_in_cell};
#[cfg(feature = "jupyter")]
pub use run::{Deadline, run_in_cell_until};
pub use variables::{MAX_VARIABLES, VariablesError, read_variables};
pub use writer::{DEFAULT_STREAM_LIMIT, OutputWriter, RelayLimits};
