//! The inloop server runtime: a peer of a document that holds its runtime lease and runs the
//! document's `server` executions in Jupyter kernels, with no browser needed.
//!
//! # Features
//!
//! - [`agent::run`]: joins the document through the relay (reconnecting with backoff), registers
//!   itself in `runtimes` and in presence, asks for the runtime lease and stands by without it,
//!   runs queued `server` entries one at a time in request order with each entry's code
//!   snapshot, streams outputs into the cell as they arrive, and ends each entry stamped with its
//!   lease epoch, as [`inloop_doc::execution`] (the one execution state machine) says. Interrupts
//!   and restarts are asked for through the document. A kernel that dies ends its entry `error`,
//!   saying how, and is restarted.
//! - [`queue`]: which entry runs next, and ending entries a vanished runtime left `running`.

pub mod agent;
pub mod queue;

/// What stops a runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the relay: {0}")]
    Relay(String),
    #[error(transparent)]
    Kernel(#[from] inloop_kernel::Error),
    #[error(transparent)]
    Doc(#[from] inloop_doc::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The GPU `nvidia-smi` reports, if there is one.
pub fn gpu() -> Option<String> {
    let output = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let names = String::from_utf8_lossy(&output.stdout);
    let first = names.lines().next()?.trim();
    (output.status.success() && !first.is_empty()).then(|| first.to_owned())
}
