//! What a kernel is to inloop, whichever kind it is.

use inloop_doc::{JsonMap, Output};
use tokio::sync::mpsc::UnboundedSender;

use crate::Result;

/// Something that happened while a kernel ran a piece of code, in the order the kernel reported
/// it. [`crate::OutputWriter`] turns these into edits of the notebook.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecEvent {
    /// The kernel took the code; `execution_count` as the kernel numbers it.
    Started { execution_count: Option<i64> },
    /// A new output: stream text, a display, the execution's result, or an error with its
    /// traceback.
    Output(Output),
    /// Replace the data of every display shown under `display_id` (Jupyter's
    /// `update_display_data`).
    UpdateDisplay {
        display_id: String,
        data: JsonMap,
        metadata: JsonMap,
    },
    /// Clear the cell's outputs: now, or with `wait` just before the next output arrives.
    ClearOutput { wait: bool },
}

/// How an execution ended, as the kernel's `execute_reply` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    Ok,
    /// The code raised (the error itself came as an [`Output::Error`]), or was interrupted.
    Error,
    /// The kernel did not run the code: an earlier execution failed and it dropped the queue.
    Aborted,
}

/// The kernel's answer to one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecuteReply {
    pub status: ReplyStatus,
    pub execution_count: Option<i64>,
}

/// What a kernel says about itself (Jupyter's `kernel_info_reply`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelInfo {
    /// e.g. `python`.
    pub language: String,
    /// e.g. `3.12.3`.
    pub language_version: String,
    /// e.g. `ipykernel`.
    pub implementation: String,
    pub implementation_version: String,
    pub banner: String,
    /// The Jupyter messaging protocol version the kernel speaks, e.g. `5.3`.
    pub protocol_version: String,
    /// The whole `language_info` object, as notebooks store it in their metadata.
    pub language_info: JsonMap,
}

/// A kernel: runs code, streams what the code outputs, can be interrupted, restarted and shut
/// down. [`crate::JupyterKernel`] is a Jupyter kernel in a local process; the browser engine's
/// Pyodide kernel (in a Web Worker) implements this trait too, so the execution queue drives
/// both the same way.
///
/// Every method takes `&self`, so one task can interrupt or restart the kernel while another
/// waits in [`Kernel::execute`].
// The futures are not required to be `Send`: the Pyodide kernel lives on the browser's single
// thread. Callers holding a concrete `JupyterKernel` get `Send` futures (they can
// `tokio::spawn` an execution), since the compiler sees through a concrete impl's futures.
#[allow(async_fn_in_trait)]
pub trait Kernel {
    /// Runs `code` (stored in the kernel's history, without stdin), sending every
    /// [`ExecEvent`] to `events` as it arrives. Returns once the kernel has replied *and* has
    /// reported every output of this code, so nothing arrives after the return. A dropped
    /// receiver is not an error: the code still runs to the end.
    ///
    /// If the kernel dies meanwhile, this returns [`crate::Error::KernelDied`] promptly.
    async fn execute(&self, code: &str, events: UnboundedSender<ExecEvent>)
    -> Result<ExecuteReply>;

    /// Asks the kernel to stop what it is running; the running [`Kernel::execute`] then ends
    /// with [`ReplyStatus::Error`] (a `KeyboardInterrupt` in Python). Does nothing if idle.
    async fn interrupt(&self) -> Result<()>;

    /// Replaces the kernel by a fresh one (a fresh namespace, counts from 1). An execution
    /// running at that moment ends with [`crate::Error::KernelDied`].
    async fn restart(&self) -> Result<()>;

    /// Stops the kernel for good; later calls fail with [`crate::Error::ShutDown`] until
    /// [`Kernel::restart`].
    async fn shutdown(&self) -> Result<()>;

    /// What the kernel said about itself when it (last) started.
    fn kernel_info(&self) -> KernelInfo;
}
