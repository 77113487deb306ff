//! The crate's error type.

use std::path::PathBuf;

/// Why a batch could not be planned, or why one run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a notebook: {source}")]
    Notebook {
        path: PathBuf,
        source: inloop_doc::Error,
    },
    #[error(transparent)]
    Doc(#[from] inloop_doc::Error),
    #[error(transparent)]
    Kernel(#[from] inloop_kernel::Error),
    /// A parameter given on the command line or in a file that cannot be used.
    #[error("{0}")]
    Parameters(String),
    /// The runs asked for do not fit together (two writing the same file, say).
    #[error("{0}")]
    Plan(String),
    /// The process that forks ipykernels could not start.
    #[error("the kernel fork server: {0}")]
    ForkServer(String),
    /// The relay could not be reached, or refused.
    #[error("relay: {0}")]
    Relay(String),
    /// The `--git` branch could not be opened, or would not hold the runs' notebooks.
    #[error(transparent)]
    History(#[from] inloop_history::Error),
    /// Stopped (Ctrl+C, SIGTERM) before every run ended.
    #[error("stopped; the running kernels were killed")]
    Stopped,
    /// Runs that failed or timed out, of all the runs.
    #[error("{failed} of {total} runs did not succeed")]
    Unsuccessful { failed: usize, total: usize },
    /// Runs that ended but could not be committed on the `--git` branch.
    #[error("{count} runs could not be recorded on {branch}")]
    NotRecorded { count: usize, branch: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
