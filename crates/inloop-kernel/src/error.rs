use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Everything that can go wrong finding, starting or talking to a kernel.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The browser's kernel (Pyodide in a Web Worker) failed to start or stopped answering.
    #[error("{0}")]
    Worker(String),

    #[error("unknown container engine {0:?} (expected docker or podman)")]
    UnknownEngine(String),

    /// No kernelspec directory of that name in any of the directories searched.
    #[error(
        "no kernelspec named {name:?} (found: {}); searched {}",
        list_or_none(available),
        paths(searched)
    )]
    KernelSpecNotFound {
        name: String,
        /// The names of the kernelspecs that were found instead.
        available: Vec<String>,
        /// The data directories searched, in order (each one's `kernels/` subdirectory).
        searched: Vec<PathBuf>,
    },

    /// A `kernel.json` that cannot be used.
    #[error("{}: {problem}", path.display())]
    InvalidKernelSpec { path: PathBuf, problem: String },

    /// The kernel's program could not be started at all.
    #[error("could not start kernel {kernel:?} with {program:?}: {source}")]
    Launch {
        kernel: String,
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// The kernel's process is running but did not answer `kernel_info_request` in time.
    #[error(
        "kernel {kernel:?} did not become ready within {waited:?}{}",
        stderr_note(stderr)
    )]
    StartTimeout {
        kernel: String,
        waited: Duration,
        /// The last lines the kernel wrote to stderr.
        stderr: String,
    },

    /// The kernel's process ended without being asked to: it crashed, was killed, or called
    /// `os._exit`. [`crate::Kernel::restart`] starts a fresh one.
    #[error("the kernel died ({reason}){}", stderr_note(stderr))]
    KernelDied {
        /// How it ended, e.g. `exit status: 1` or `signal: 9 (SIGKILL)`.
        reason: String,
        /// The last lines the kernel wrote to stderr; empty when there were none.
        stderr: String,
    },

    /// The kernel was shut down with [`crate::Kernel::shutdown`]; restart it to use it again.
    #[error("the kernel has been shut down")]
    ShutDown,

    /// A request on the control channel got no reply in time.
    #[error("the kernel did not reply to {request} within {waited:?}")]
    NoReply {
        request: &'static str,
        waited: Duration,
    },

    /// The ZeroMQ transport or the Jupyter wire format failed.
    #[cfg(feature = "jupyter")]
    #[error("kernel messaging failed: {0}")]
    Protocol(#[from] jupyter_zmq_client::RuntimeError),

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn paths(dirs: &[PathBuf]) -> String {
    let dirs: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
    list_or_none(&dirs)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its last words on stderr:\n{stderr}")
    }
}
