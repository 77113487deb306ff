//! Running code in a kernel into a cell: the one driver every runtime uses (the server agent,
//! the browser engine, `inloop run`, the MCP server). How the run then ends an execution entry
//! is [`inloop_doc::execution`]'s to say; this only feeds it the [`Outcome`].

use inloop_doc::Notebook;
use inloop_doc::execution::{Outcome, Reply};

use crate::{Error, ExecEvent, ExecuteReply, Kernel, OutputWriter, ReplyStatus, Result};

/// How one run went.
#[derive(Debug)]
pub struct CellRun {
    pub outcome: Outcome,
    /// The first output that could not be written (the cell was deleted meanwhile, say); the
    /// run went on without it.
    pub write_error: Option<inloop_doc::Error>,
}

/// What the execution state machine is told of a kernel's answer.
pub fn outcome_of(result: Result<ExecuteReply>) -> Outcome {
    match result {
        Ok(reply) => Outcome::Replied {
            reply: match reply.status {
                ReplyStatus::Ok => Reply::Ok,
                ReplyStatus::Error => Reply::Error,
                ReplyStatus::Aborted => Reply::Aborted,
            },
            execution_count: reply.execution_count,
        },
        Err(died @ Error::KernelDied { .. }) => Outcome::KernelDied {
            reason: died.to_string(),
        },
        Err(error) => Outcome::Failed {
            message: error.to_string(),
        },
    }
}

/// Runs `code` in `kernel`, writing its events into cell `cell_id` through `writer` as they
/// arrive, and calling `on_event` after each is written (a browser schedules a sync then; a
/// batch run stamps nbclient's times). Returns once the kernel has answered and every output is
/// written.
pub async fn run_in_cell<K: Kernel + ?Sized>(
    kernel: &K,
    notebook: &Notebook,
    cell_id: &str,
    code: &str,
    writer: &mut OutputWriter,
    mut on_event: impl FnMut(&ExecEvent),
) -> CellRun {
    let (events, mut incoming) = tokio::sync::mpsc::unbounded_channel::<ExecEvent>();
    let mut write_error = None;
    let write = async {
        // Ends when the kernel drops the sender: after its reply, or when it goes away.
        while let Some(event) = incoming.recv().await {
            if let Err(error) = writer.apply(notebook, cell_id, &event) {
                write_error.get_or_insert(error);
            }
            on_event(&event);
        }
    };
    let (result, ()) = futures_util::future::join(kernel.execute(code, events), write).await;
    CellRun {
        outcome: outcome_of(result),
        write_error,
    }
}

/// When a run is given up on: at `at` the kernel is interrupted and given `grace` to stop and
/// say where (its traceback is written).
#[cfg(feature = "jupyter")]
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub grace: std::time::Duration,
}

/// [`run_in_cell`] with a [`Deadline`]: past it the run is given up on
/// ([`Outcome::TimedOut`], counted from the call); a kernel that ignored the interrupt is the
/// caller's to restart or kill.
#[cfg(feature = "jupyter")]
pub async fn run_in_cell_until<K: Kernel + ?Sized>(
    kernel: &K,
    notebook: &Notebook,
    cell_id: &str,
    code: &str,
    writer: &mut OutputWriter,
    on_event: impl FnMut(&ExecEvent),
    deadline: Option<Deadline>,
) -> CellRun {
    let since = tokio::time::Instant::now();
    let run = run_in_cell(kernel, notebook, cell_id, code, writer, on_event);
    let Some(Deadline { at, grace }) = deadline else {
        return run.await;
    };
    tokio::pin!(run);
    tokio::select! {
        done = &mut run => done,
        () = tokio::time::sleep_until(at) => {
            let _ = kernel.interrupt().await;
            let write_error = tokio::time::timeout(grace, &mut run)
                .await
                .ok()
                .and_then(|run| run.write_error);
            CellRun {
                outcome: Outcome::TimedOut {
                    after_s: at.saturating_duration_since(since).as_secs_f64(),
                },
                write_error,
            }
        }
    }
}
