//! `inloop mcp`: an MCP server (the official Rust SDK, rmcp) whose tools let AI agents create,
//! edit, run, inspect and export notebooks.
//!
//! # Features
//!
//! - **Tools**: `notebook_create`, `notebook_list`, `notebook_edit_cell` (insert, replace,
//!   delete, move, by cell id or index), `notebook_execute_cell`, `notebook_execute_all`,
//!   `notebook_get_state` (cells, outputs, execution status and the kernel's variables),
//!   `notebook_parallel_run` (N copies with different parameters through `inloop-batch`) and
//!   `notebook_export` (ipynb, Python script with `# %%` cells, markdown, standalone HTML).
//!   Every argument has a JSON schema with a description; a mistake comes back as a tool error
//!   whose message says what to do instead.
//! - **Local notebooks** (`.ipynb` under [`Config::root`]): read when first used (and again
//!   whenever the file changed on disk), written back after every change. Each has its own
//!   Jupyter kernel owned by this server, started on first use and kept warm.
//! - **Confined to the root**: every path a tool takes (a notebook, an export, the folder of
//!   parallel runs and each run's file) is resolved, symbolic links followed, and refused with
//!   a tool error unless it leads under [`Config::root`]; nothing is read or written first.
//!   This confines the tools, not the code the notebooks run (kernels run as the user).
//! - **Relay documents** (`relay:DOC_ID`, with [`Config::relay`]): the agent is a peer like any
//!   other. It joins with an [`inloop_client::Client`], shows its name and the cell it works on
//!   as presence, its edits are live, and its runs are `server` entries of the document's
//!   execution queue: the relay's server runtime runs them and everyone watches the outputs
//!   stream in; the tool waits for the entry to end and returns the outputs.
//! - **Variables without a trace**: `notebook_get_state` lists a local notebook's variables
//!   with [`inloop_kernel::read_variables`], a hidden execution that takes back what it
//!   recorded, so the next cell gets the count it would have had. A relay document's kernel
//!   belongs to the server runtime, which publishes its variables in its entry after its runs;
//!   those are shown.
//! - **Progress**: `notebook_execute_all` and `notebook_parallel_run` send
//!   `notifications/progress` (cells or runs done, of how many) when the call carries a
//!   `_meta.progressToken`, and `notebook_execute_cell` does every few seconds while a cell
//!   runs long.
//! - **History in git** ([`Config::history`], `inloop mcp --git`): the agent's session is a
//!   branch `inloop/NAME` ([`inloop_history`]); each tool call that writes a local file commits
//!   it there, and one that changes a relay document commits a snapshot of it as
//!   `relay/DOC_ID.ipynb` (subject: the tool and what it did; trailers `Inloop-Agent`,
//!   `Inloop-Tool`); its result says so under `history`. The checkout is never touched.
//! - **Transports**: stdio ([`serve_stdio`]) and streamable HTTP ([`serve_http`], at `/mcp`),
//!   behind a bearer token ([`HttpAccess`], required on an address other machines reach) and
//!   `Host`/`Origin` checks against DNS rebinding.

mod access;
mod export;
mod progress;
mod root;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inloop_kernel::SearchPath;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;

pub use access::HttpAccess;
pub use server::NotebookServer;

/// What can go wrong serving MCP (errors of tools go back to the client as tool errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the MCP session failed: {0}")]
    Mcp(String),
    /// Serving HTTP where other machines reach it, with no token: they could run code.
    #[error(
        "{0} can be reached from other machines, so MCP over HTTP there needs a bearer token: \
         give one with --http-token TOKEN (or INLOOP_MCP_TOKEN) and have clients send \
         `Authorization: Bearer TOKEN`, or listen on a loopback address such as 127.0.0.1:{port}",
        port = .0.port()
    )]
    TokenRequired(SocketAddr),
    #[error("the HTTP token is empty: give a non-empty --http-token (or INLOOP_MCP_TOKEN)")]
    EmptyToken,
    /// The root folder is missing or not a folder.
    #[error("the root folder {root}: {source}")]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the MCP server works.
#[derive(Clone, Debug)]
pub struct Config {
    /// Local notebooks are listed under this folder, and relative paths are taken from it.
    /// Every path a tool takes must lead under it (symbolic links followed), or the tool
    /// refuses it: `..`, absolute paths elsewhere and links pointing out are all refused.
    pub root: PathBuf,
    /// A relay whose documents the agent may work on, with a token that may create and list
    /// them (an admin token).
    pub relay: Option<inloop_batch::RelayTarget>,
    /// The name other peers see on relay documents (and `requested_by` of its runs).
    pub name: String,
    /// The kernelspec for local notebooks that name none in their metadata.
    pub kernel: String,
    pub kernel_search: SearchPath,
    /// Longest a cell may run when the tool call gives no timeout.
    pub default_timeout: Duration,
    /// Record the session on this git branch: every local file a tool writes (a notebook after
    /// an edit or a run, an export, the runs of `notebook_parallel_run`) becomes a commit.
    pub history: Option<Arc<inloop_history::History>>,
}

impl Config {
    /// Notebooks under `root`, no relay, the name `agent`, `python3` from `./.venv` or
    /// `$VIRTUAL_ENV`, cells limited to 10 minutes.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            relay: None,
            name: "agent".into(),
            kernel: inloop_batch::DEFAULT_KERNEL.into(),
            kernel_search: SearchPath::from_env([".venv"]),
            default_timeout: Duration::from_secs(600),
            history: None,
        }
    }
}

/// Serves MCP on standard input and output until the client closes them. Kernels started for
/// the session are killed on return.
pub async fn serve_stdio(config: Config) -> Result<()> {
    serve(config, rmcp::transport::stdio()).await
}

/// Serves one MCP session on `transport` (any of rmcp's: standard streams, a pair of pipes, an
/// in-process duplex stream) until the client closes it. Kernels started for the session are
/// killed on return.
pub async fn serve<T, E, A>(config: Config, transport: T) -> Result<()>
where
    T: rmcp::transport::IntoTransport<rmcp::RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let store = Arc::new(store::Store::new(config)?);
    let server = NotebookServer::new(store.clone());
    let running = server
        .serve(transport)
        .await
        .map_err(|e| Error::Mcp(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Mcp(e.to_string()))?;
    store.shutdown().await;
    Ok(())
}

/// Serves MCP over streamable HTTP at `http://ADDR/mcp` until `shutdown` resolves; `bound` is
/// told the address listened on (port 0 picks a free one). All sessions share the notebooks
/// and their kernels. Refuses to start on an address other machines reach without a token.
pub async fn serve_http(
    config: Config,
    addr: SocketAddr,
    access: HttpAccess,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    access.check(addr)?;
    let store = Arc::new(store::Store::new(config)?);
    let shared = store.clone();
    let cancel = CancellationToken::new();
    let service: StreamableHttpService<NotebookServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(NotebookServer::new(shared.clone())),
            Default::default(),
            access.rmcp_config(
                addr,
                StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token()),
            ),
        );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = access.token {
        router = router.layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(token),
            access::require_token,
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await?;
    store.shutdown().await;
    Ok(())
}
