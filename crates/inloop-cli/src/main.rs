//! `inloop`: the notebook you work on together and don't lose.
//!
//! Thin by design: parse flags, set up logging, call a library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use inloop_doc::Notebook;
use inloop_relay::{Config, Limits, Relay};
use std::time::Duration;

// Documents are many small allocations; mimalloc makes importing a large notebook about twice as
// fast as glibc's allocator (measured by `cargo bench -p inloop-doc --bench ipynb`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "inloop",
    version,
    about = "inloop: notebooks you edit together, run anywhere and never lose"
)]
#[command(
    after_help = "Notebooks are Yrs CRDT documents; `.ydoc` files hold one whole document \
                        as a single Yrs update (v1 encoding)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the relay: notebooks synced live over WebSockets, stored in SQLite.
    ///
    /// Prints a URL with an admin token, the way Jupyter does. Stops cleanly on Ctrl+C or
    /// SIGTERM (every change is stored before it is sent, so nothing is left to flush).
    Serve(ServeArgs),
    /// Run a document's server cells in a Jupyter kernel on this machine.
    ///
    /// Joins the document as a peer, asks the relay for the runtime lease (standing by while
    /// another runtime holds it), and runs the cells people send to the server, one at a time,
    /// streaming their outputs into the notebook. Keeps going with no browser open; stops
    /// cleanly on Ctrl+C or SIGTERM.
    Runtime(RuntimeArgs),
    /// Run notebooks headless, many at once, with parameters (the papermill way).
    #[command(long_about = RUN_ABOUT, after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Serve notebooks to AI agents over MCP (stdio, or streamable HTTP with --http).
    #[command(long_about = MCP_ABOUT)]
    Mcp(McpArgs),
    /// Convert an .ipynb notebook (nbformat 4.0 to 4.5) into a .ydoc document.
    Import {
        /// The notebook to read.
        input: PathBuf,
        /// Where to write the document [default: the input with a .ydoc extension].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Convert a .ydoc document into an .ipynb notebook (nbformat 4.5).
    Export {
        /// The document to read.
        input: PathBuf,
        /// Where to write the notebook, `-` for standard output [default: the input with an
        /// .ipynb extension].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "INLOOP_ADDR", default_value = "127.0.0.1:8787")]
    addr: std::net::SocketAddr,
    /// Folder for the database and the token signing key (created if missing).
    #[arg(long, env = "INLOOP_DATA", default_value = "./inloop-data")]
    data: PathBuf,
    /// The built page to serve at / (web/dist).
    #[arg(long, env = "INLOOP_WEB")]
    web: Option<PathBuf>,
    /// Never start a server runtime on this machine (by default one starts when a document
    /// queues server runs and no runtime holds its lease).
    #[arg(long, env = "INLOOP_NO_RUNTIME")]
    no_runtime: bool,
    /// An environment holding kernelspecs for the local runtime (repeatable) [default: ./.venv
    /// when present].
    #[arg(long = "runtime-kernel-prefix", env = "INLOOP_RUNTIME_KERNEL_PREFIX")]
    runtime_kernel_prefixes: Vec<PathBuf>,
    /// Seconds a local runtime with nothing to run stays up.
    #[arg(long, env = "INLOOP_RUNTIME_IDLE_SECS", default_value_t = 600)]
    runtime_idle_secs: u64,
    /// Largest WebSocket message, in bytes.
    #[arg(long, env = "INLOOP_MAX_MESSAGE_BYTES", default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Largest document (snapshot plus log), in bytes.
    #[arg(long, env = "INLOOP_MAX_DOCUMENT_BYTES", default_value_t = Limits::default().max_document_bytes)]
    max_document_bytes: usize,
    #[arg(long, env = "INLOOP_MAX_CONNECTIONS_PER_DOCUMENT", default_value_t = Limits::default().max_connections_per_document)]
    max_connections_per_document: usize,
    /// Messages a connection may send per second.
    #[arg(long, env = "INLOOP_MAX_MESSAGES_PER_SECOND", default_value_t = Limits::default().max_messages_per_second)]
    max_messages_per_second: u32,
    /// Frames queued for a peer before it counts as too slow and is disconnected.
    #[arg(long, env = "INLOOP_OUTGOING_QUEUE", default_value_t = Limits::default().outgoing_queue)]
    outgoing_queue: usize,
    /// Seconds one write to a peer may block before the peer counts as stalled.
    #[arg(long, env = "INLOOP_SEND_TIMEOUT_SECS", default_value_t = Limits::default().send_timeout.as_secs())]
    send_timeout_secs: u64,
    /// Seconds a document with no peers stays in memory.
    #[arg(long, env = "INLOOP_IDLE_UNLOAD_SECS", default_value_t = Limits::default().idle_unload.as_secs())]
    idle_unload_secs: u64,
    /// Seconds a runtime lease lasts without a heartbeat.
    #[arg(long, env = "INLOOP_LEASE_TTL_SECS", default_value_t = Limits::default().lease_ttl.as_secs_f64())]
    lease_ttl_secs: f64,
    /// Seconds a disconnected lease holder keeps the lease.
    #[arg(long, env = "INLOOP_LEASE_GRACE_SECS", default_value_t = Limits::default().lease_grace.as_secs_f64())]
    lease_grace_secs: f64,
    /// Seconds a client has to send a request's headers whole (0: no limit).
    #[arg(long, env = "INLOOP_HEADER_READ_TIMEOUT_SECS", default_value_t = Limits::default().header_read_timeout.as_secs_f64())]
    header_read_timeout_secs: f64,
    /// Seconds an HTTP connection may stay with nothing moving, kept alive between requests
    /// or mid-request (0: no limit).
    #[arg(long, env = "INLOOP_HTTP_IDLE_TIMEOUT_SECS", default_value_t = Limits::default().http_idle_timeout.as_secs_f64())]
    http_idle_timeout_secs: f64,
    /// Open connections one client IP address may hold (0: no cap; behind a reverse proxy all
    /// connections come from the proxy's address).
    #[arg(long, env = "INLOOP_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds between the relay's pings to each WebSocket peer (0: no pings).
    #[arg(long, env = "INLOOP_PING_INTERVAL_SECS", default_value_t = Limits::default().ping_interval.as_secs_f64())]
    ping_interval_secs: f64,
    /// Pings in a row a WebSocket peer may leave unanswered before it is dropped as dead.
    #[arg(long, env = "INLOOP_MAX_MISSED_PONGS", default_value_t = Limits::default().max_missed_pongs)]
    max_missed_pongs: u32,
    /// Largest presence state (name, colour, cursor) a peer may send, in bytes.
    #[arg(long, env = "INLOOP_MAX_PRESENCE_BYTES", default_value_t = Limits::default().max_presence_bytes)]
    max_presence_bytes: usize,
    /// Presence states one connection may show.
    #[arg(long, env = "INLOOP_MAX_PRESENCES_PER_CONNECTION", default_value_t = Limits::default().max_presences_per_connection)]
    max_presences_per_connection: usize,
    /// All presence states of one document together, in bytes.
    #[arg(long, env = "INLOOP_MAX_DOCUMENT_PRESENCE_BYTES", default_value_t = Limits::default().max_document_presence_bytes)]
    max_document_presence_bytes: usize,
    /// Presence bytes a peer may send per second (bursts of four times as many).
    #[arg(long, env = "INLOOP_PRESENCE_BYTES_PER_SECOND", default_value_t = Limits::default().presence_bytes_per_second)]
    presence_bytes_per_second: u64,
    /// The longest life of a share link, in days; longer `expires_in` is refused.
    #[arg(long, env = "INLOOP_MAX_TOKEN_DAYS", default_value_t = Limits::default().max_token_lifetime.as_secs() / 86_400)]
    max_token_days: u64,
    /// Replace the signing key in --data by a new one before starting: every token made before
    /// (share links, the old admin URL) stops working. Not with INLOOP_SECRET: set a new one.
    #[arg(long)]
    rotate_key: bool,
}

#[derive(Debug, clap::Args)]
#[command(mut_arg("token", |arg| arg.help(RelayToken::help(
    "A `runtime` token for the document (POST /api/docs/ID/tokens with {\"role\": \"runtime\"}); \
     required, here or in a file."
))))]
struct RuntimeArgs {
    /// The relay, e.g. ws://127.0.0.1:8787.
    #[arg(long, env = "INLOOP_RELAY")]
    relay: String,
    /// The document's id.
    #[arg(long, env = "INLOOP_DOC")]
    doc: String,
    #[command(flatten)]
    token: RelayToken,
    /// The kernelspec to run (`jupyter kernelspec list` shows them).
    #[arg(long, env = "INLOOP_KERNEL", default_value = "python3")]
    kernel: String,
    /// The name other peers see [default: this machine's host name].
    #[arg(long, env = "INLOOP_NAME")]
    name: Option<String>,
    #[command(flatten)]
    kernel_prefixes: KernelPrefixes,
    /// Bytes of stream output kept per cell; the rest is cut with a note.
    #[arg(long, env = "INLOOP_STREAM_LIMIT", default_value_t = inloop_kernel::DEFAULT_STREAM_LIMIT)]
    stream_limit: usize,
    /// Stop after this many seconds with nothing to run [default: never].
    #[arg(long, env = "INLOOP_IDLE_EXIT_SECS")]
    idle_exit_secs: Option<u64>,
    /// Run the kernel in this container image (it needs Python with ipykernel) instead of on
    /// this machine.
    #[arg(long, env = "INLOOP_CONTAINER")]
    container: Option<String>,
    /// The container engine.
    #[arg(long, env = "INLOOP_ENGINE", default_value = "docker", requires = "container", value_parser = ["docker", "podman"])]
    engine: String,
    /// GPUs for the container, passed to the engine's --gpus (e.g. `all`).
    #[arg(long, env = "INLOOP_GPUS", requires = "container")]
    gpus: Option<String>,
}

const RUN_ABOUT: &str = "\
Run notebooks headless, many at once, with parameters (the papermill way).

Each run executes the notebook's cells in order in a fresh Jupyter kernel of its own, stops at the
first error (unless --allow-errors), and writes the executed notebook: outputs, execution counts,
nbclient's per-cell timing (metadata.execution) and papermill's metadata (metadata.papermill:
start, end, duration, status, exception, on every cell and on the notebook). Kernels are started
ahead of need (one more than --parallel), never shared between runs, and killed when their run
ends. A failing or timed-out run stops alone; the others go on.

Parameters: the cell tagged `parameters` (cell metadata tags) is followed by a cell tagged
`injected-parameters` assigning the values as Python literals (at the top when no cell has the
tag; an injected cell from an earlier run is replaced).

Progress bars go to stderr (one per running notebook with its current cell, and a total); a
summary table goes to stdout. The exit status is 1 if any run failed or timed out.

With --git, each run is committed with its executed notebook as it ends, on the branch
inloop/NAME of the repository you are in (NAME: the first notebook's name by default).";

const RUN_EXAMPLES: &str = "\
Examples:
  # One notebook, two parameters (typed: 0.5 is a float, 10 an int, True a bool):
  inloop run analysis.ipynb -p alpha=0.5 -p epochs=10

  # Every notebook of a folder, 4 at a time, each cell limited to 10 minutes:
  inloop run reports/*.ipynb --parallel 4 --timeout 600

  # One notebook, one run per parameter set (lists and dicts are fine in YAML):
  #   sets.yaml:  - {region: north, weights: [1, 2]}
  #               - {region: south, _name: south, weights: [3]}
  # writes inloop-runs/model-0.ipynb and inloop-runs/model-south.ipynb
  inloop run model.ipynb -f sets.yaml --parallel 4

  # Over the input files themselves:
  inloop run a.ipynb b.ipynb --inplace

  # Watch each run live on a relay (`inloop serve` prints its admin token; keep it in a file
  # only you can read, chmod 600):
  inloop run sweep.ipynb -f sets.yaml --relay ws://127.0.0.1:8787 --token-file ~/.inloop/token

  # Keep every run as a git commit on the branch inloop/sweep, then look at the history:
  inloop run sweep.ipynb -f sets.yaml --git
  git log --oneline inloop/sweep
  git diff inloop/sweep~1 inloop/sweep -- inloop-runs/";

/// `--git[=NAME]`, for `inloop run` and `inloop mcp`.
#[derive(Debug, clap::Args)]
struct GitBranch {
    /// Record what this command writes as commits on the git branch inloop/NAME of the
    /// repository (see above for what, and for the default NAME). The working tree, the index
    /// and the current branch are not touched; `git log inloop/NAME` lists the commits, and
    /// `git diff` and `git merge` work as usual. Write it --git or --git=NAME.
    #[arg(
        long = "git",
        value_name = "NAME",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        env = "INLOOP_GIT"
    )]
    branch: Option<String>,
}

/// Where kernelspecs are looked for, besides the usual places.
#[derive(Debug, clap::Args)]
struct KernelPrefixes {
    /// An environment whose `share/jupyter` holds kernelspecs, besides $VIRTUAL_ENV and the
    /// usual Jupyter directories (repeatable) [default: ./.venv when present].
    #[arg(
        long = "kernel-prefix",
        env = "INLOOP_KERNEL_PREFIX",
        value_name = "DIR"
    )]
    kernel_prefixes: Vec<PathBuf>,
}

impl KernelPrefixes {
    fn search_path(&self) -> inloop_kernel::SearchPath {
        inloop_kernel::SearchPath::from_env(or_local_venv(self.kernel_prefixes.clone()))
    }
}

/// The relay token of `runtime`, `run` and `mcp`: on the command line, in INLOOP_TOKEN, or in a
/// file only its owner may read. Each command says which token with [`RelayToken::help`].
#[derive(Debug, clap::Args)]
struct RelayToken {
    // Its help is the command's (`mut_arg`), so that it says which token.
    #[arg(
        long,
        env = "INLOOP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        requires = "relay"
    )]
    token: Option<String>,
    /// A file holding the token (surrounding whitespace ignored). Only its owner may be able to
    /// read it (chmod 600 FILE): a file others can read is refused.
    #[arg(
        long,
        env = "INLOOP_TOKEN_FILE",
        value_name = "FILE",
        requires = "relay"
    )]
    token_file: Option<PathBuf>,
}

impl RelayToken {
    /// The help of `--token`: `what` token, and why not to give it there. A command line is
    /// readable by every user of the machine; a process's environment only by its user.
    fn help(what: &str) -> String {
        format!(
            "{what} Given here it is visible to every user of this machine (ps, \
             /proc/PID/cmdline): prefer the variable INLOOP_TOKEN or --token-file."
        )
    }

    /// The token given, if any.
    fn get(&self) -> Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "a token is given twice, with --token (or INLOOP_TOKEN) and with --token-file \
                 (or INLOOP_TOKEN_FILE): give one"
            ),
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(path)) => read_token_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// The token in the file at `path`, which only its owner may read (as ssh insists for a
/// private key): a token others can read is no longer a secret, and saying so beats using it.
fn read_token_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let shown = path.display();
    let mut file =
        fs::File::open(path).with_context(|| format!("reading the token file {shown}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Of the file opened, so that it cannot be swapped between the check and the read.
        let mode = file
            .metadata()
            .with_context(|| format!("reading the token file {shown}"))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the token file {shown} has mode {:04o}, so other users may read it: make it \
             readable by you only with `chmod 600 {shown}`",
            mode & 0o7777
        );
    }
    let mut token = String::new();
    file.read_to_string(&mut token)
        .with_context(|| format!("reading the token file {shown}"))?;
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "the token file {shown} is empty");
    Ok(token.to_owned())
}

/// `prefixes`, or the project's `./.venv` when none is given and it has kernelspecs (where
/// `scripts/setup.sh` installs ipykernel).
fn or_local_venv(prefixes: Vec<PathBuf>) -> Vec<PathBuf> {
    if prefixes.is_empty() && Path::new(".venv/share/jupyter").is_dir() {
        vec![PathBuf::from(".venv")]
    } else {
        prefixes
    }
}

#[derive(Debug, clap::Args)]
#[command(mut_arg("token", |arg| arg.help(RelayToken::help(
    "A token that may create documents on the relay (an admin token), if not in --relay's URL."
))))]
struct RunArgs {
    /// The notebooks (.ipynb) to run.
    #[arg(required = true, value_name = "NOTEBOOK")]
    notebooks: Vec<PathBuf>,
    /// Runs at a time [default: the number of CPUs].
    #[arg(long, short = 'j', env = "INLOOP_PARALLEL", value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// A parameter, NAME=VALUE (repeatable). Typed as papermill types `-p`: True, False, None,
    /// integers and floats; anything else is a string. Use -y or -f for lists and dicts.
    #[arg(
        short = 'p',
        long = "parameter",
        value_name = "NAME=VALUE",
        env = "INLOOP_PARAMETER"
    )]
    parameters: Vec<String>,
    /// Parameters as an inline YAML mapping, e.g. -y '{sizes: [1, 2], opts: {fast: true}}'
    /// (repeatable).
    #[arg(
        short = 'y',
        long = "parameters-yaml",
        value_name = "YAML",
        env = "INLOOP_PARAMETERS_YAML"
    )]
    parameters_yaml: Vec<String>,
    /// A YAML file of parameters (repeatable). A mapping applies to every run; a list of mappings
    /// makes one run of each notebook per entry, written to {stem}-{index}.ipynb, or to
    /// {stem}-{_name}.ipynb when the entry has a `_name` key (not injected). Later sources win:
    /// files, then the run's own entry, then -y, then -p.
    #[arg(
        short = 'f',
        long = "parameters-file",
        value_name = "FILE",
        env = "INLOOP_PARAMETERS_FILE"
    )]
    parameters_files: Vec<PathBuf>,
    /// Folder for the executed notebooks (created if missing).
    #[arg(
        long,
        short = 'o',
        env = "INLOOP_OUTPUT",
        default_value = "inloop-runs",
        conflicts_with = "inplace"
    )]
    output: PathBuf,
    /// Write each executed notebook over its input instead.
    #[arg(long, env = "INLOOP_INPLACE")]
    inplace: bool,
    /// Seconds one cell may run; then the kernel is interrupted, then killed, and the run counts
    /// as timed out [default: no limit].
    #[arg(long, env = "INLOOP_TIMEOUT", value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Seconds a whole run may take, from its first cell [default: no limit].
    #[arg(long, env = "INLOOP_RUN_TIMEOUT", value_name = "SECONDS")]
    run_timeout: Option<f64>,
    /// Go on after a cell raises; the error stays in its outputs and the run counts as ok
    /// (cells tagged `raises-exception` may always raise).
    #[arg(long, env = "INLOOP_ALLOW_ERRORS")]
    allow_errors: bool,
    /// The kernelspec for every notebook [default: each notebook's metadata.kernelspec.name, or
    /// python3].
    #[arg(long, env = "INLOOP_KERNEL")]
    kernel: Option<String>,
    #[command(flatten)]
    kernel_prefixes: KernelPrefixes,
    /// The kernels' working directory [default: each notebook's folder].
    #[arg(long, env = "INLOOP_CWD")]
    cwd: Option<PathBuf>,
    /// Also make each run a live document on this relay, e.g. ws://127.0.0.1:8787, and print
    /// its page URL (with a read-only token) to watch it run. A token in the URL
    /// (?token=ADMIN) is visible to other users like --token.
    #[arg(long, env = "INLOOP_RELAY", value_name = "URL")]
    relay: Option<String>,
    #[command(flatten)]
    token: RelayToken,
    /// Bytes of stream output kept per cell; the rest is cut with a note.
    #[arg(long, env = "INLOOP_STREAM_LIMIT", default_value_t = inloop_kernel::DEFAULT_STREAM_LIMIT)]
    stream_limit: usize,
    /// Launch every kernel from its kernelspec. By default ipykernels are forked from a process
    /// that imported ipykernel once (each still a new process that no other run used), which
    /// takes about a third of the CPU.
    #[arg(long, env = "INLOOP_NO_FORK")]
    no_fork: bool,
    #[command(flatten)]
    git: GitBranch,
    /// No progress bars or lines on stderr (the summary is still printed).
    #[arg(long, short = 'q', env = "INLOOP_QUIET")]
    quiet: bool,
}

const MCP_ABOUT: &str = "\
Serve notebooks to AI agents over the Model Context Protocol.

Tools: notebook_create, notebook_list, notebook_edit_cell (insert, replace, delete, move),
notebook_execute_cell, notebook_execute_all, notebook_get_state (cells, outputs, status, the
kernel's variables), notebook_parallel_run (copies with parameters, as `inloop run`) and
notebook_export (ipynb, Python script, markdown, HTML).

Notebooks are local .ipynb files under --root (saved after every change, each run in a kernel
of its own kept warm; a path a tool is given that leads out of --root, symbolic links followed,
is refused) or, with --relay, live documents on a relay (`relay:DOC_ID`): the agent
joins them as a peer under --name, and its runs go to the relay's server runtime.

MCP goes over stdin/stdout unless --http ADDR is given (then at http://ADDR/mcp). Over HTTP,
clients send `Authorization: Bearer TOKEN` when the server has --http-token TOKEN, which it
needs on any address but a loopback one. On loopback, requests from web pages of other origins
than loopback ones (DNS rebinding) are refused unless --http-allow-origin names them.

With --git, the session is kept in git: every local file a tool writes (a notebook after each
edit or run, an export, parallel runs) is committed on the branch inloop/NAME of the repository
holding --root, and a relay document it changes as a snapshot, relay/DOC_ID.ipynb (NAME: --name
and the start time, e.g. agent-20261122-093000, by default).";

#[derive(Debug, clap::Args)]
#[command(mut_arg("token", |arg| arg.help(RelayToken::help(
    "A token that may create and list documents on the relay (an admin token), if not in \
     --relay's URL."
))))]
struct McpArgs {
    /// Serve streamable HTTP at http://ADDR/mcp instead of stdio (port 0 picks a free one;
    /// the address is printed on stderr).
    #[arg(long, env = "INLOOP_MCP_HTTP", value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Over HTTP, only requests with `Authorization: Bearer TOKEN` are served (required unless
    /// ADDR is a loopback address).
    #[arg(
        long,
        env = "INLOOP_MCP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    http_token: Option<String>,
    /// A browser origin allowed to call the HTTP server besides loopback ones, e.g.
    /// 'https://app.example.com' or 'http://devbox:*' (any port); repeatable.
    #[arg(
        long = "http-allow-origin",
        env = "INLOOP_MCP_ALLOW_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    http_allowed_origins: Vec<String>,
    /// The folder whose .ipynb files notebook_list shows; relative paths start here. No tool
    /// reads or writes outside it: a path leading elsewhere (`..`, absolute, or through a
    /// symbolic link) is refused. It does not confine the code the notebooks run.
    #[arg(long, env = "INLOOP_MCP_ROOT", default_value = ".")]
    root: PathBuf,
    /// A relay whose documents the agent may create and work on, e.g. ws://127.0.0.1:8787. A
    /// token in the URL (?token=ADMIN) is visible to other users like --token.
    #[arg(long, env = "INLOOP_RELAY", value_name = "URL")]
    relay: Option<String>,
    #[command(flatten)]
    token: RelayToken,
    /// The name other peers see on relay documents.
    #[arg(long, env = "INLOOP_NAME", default_value = "agent")]
    name: String,
    /// The kernelspec for notebooks that name none.
    #[arg(long, env = "INLOOP_KERNEL", default_value = "python3")]
    kernel: String,
    #[command(flatten)]
    git: GitBranch,
    #[command(flatten)]
    kernel_prefixes: KernelPrefixes,
}

impl McpArgs {
    fn config(self) -> Result<inloop_mcp::Config> {
        let mut config = inloop_mcp::Config::new(self.root);
        let token = self.token.get()?;
        config.relay = self
            .relay
            .map(|url| inloop_batch::RelayTarget::parse(&url, token.as_deref()))
            .transpose()?;
        config.history = match self.git.branch.as_deref() {
            None => None,
            Some(name) => {
                let name = match name {
                    "" => format!(
                        "{}-{}",
                        self.name,
                        chrono::Utc::now().format("%Y%m%d-%H%M%S")
                    ),
                    given => given.to_owned(),
                };
                let history = inloop_batch::History::open(&config.root, &name)?;
                eprintln!(
                    "inloop mcp: recording on the branch {branch} (git log {branch})",
                    branch = history.branch()
                );
                Some(Arc::new(history))
            }
        };
        config.name = self.name;
        config.kernel = self.kernel;
        config.kernel_search = self.kernel_prefixes.search_path();
        Ok(config)
    }
}

async fn mcp(mut args: McpArgs) -> Result<()> {
    let http = args.http;
    let access = inloop_mcp::HttpAccess {
        token: args.http_token.take(),
        allowed_origins: std::mem::take(&mut args.http_allowed_origins),
    };
    let config = args.config()?;
    match http {
        None => inloop_mcp::serve_stdio(config).await?,
        Some(addr) => {
            let open = access.token.is_none();
            inloop_mcp::serve_http(
                config,
                addr,
                access,
                |bound| {
                    eprintln!("inloop mcp listening on http://{bound}/mcp");
                    if open {
                        eprintln!(
                            "inloop mcp: no --http-token, so any program on this machine may \
                             use it"
                        );
                    }
                },
                shutdown_signal(),
            )
            .await?
        }
    }
    Ok(())
}

impl RunArgs {
    fn config(self) -> Result<(inloop_batch::Config, Option<inloop_batch::History>)> {
        let output = if self.inplace {
            inloop_batch::OutputMode::InPlace
        } else {
            inloop_batch::OutputMode::Dir(self.output)
        };
        let sources = inloop_batch::ParameterSources {
            files: self.parameters_files,
            yaml: self.parameters_yaml,
            values: self.parameters,
        };
        let runs = inloop_batch::plan(&self.notebooks, &sources, &output)?;
        let history = inloop_batch::open_history(self.git.branch.as_deref(), &runs)?;
        let seconds = |s: Option<f64>, flag: &str| -> Result<Option<Duration>> {
            s.map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("{flag} {s}: give a number of seconds"))
            })
            .transpose()
        };
        let mut config = inloop_batch::Config::new(runs);
        config.parallel = match self.parallel {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        config.cell_timeout = seconds(self.timeout, "--timeout")?;
        config.run_timeout = seconds(self.run_timeout, "--run-timeout")?;
        config.allow_errors = self.allow_errors;
        config.kernel = self.kernel;
        config.kernel_search = self.kernel_prefixes.search_path();
        config.stream_limit = Some(self.stream_limit);
        config.working_dir = self.cwd;
        config.fork_kernels = !self.no_fork;
        let token = self.token.get()?;
        config.relay = self
            .relay
            .map(|url| inloop_batch::RelayTarget::parse(&url, token.as_deref()))
            .transpose()?;
        Ok((config, history))
    }
}

impl RuntimeArgs {
    fn config(self) -> Result<inloop_runtime::agent::Config> {
        let name = self.name.unwrap_or_else(|| {
            fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "server runtime".into())
        });
        Ok(inloop_runtime::agent::Config {
            relay: self.relay,
            doc_id: self.doc,
            token: self.token.get()?.context(
                "no token: give the document's runtime token in INLOOP_TOKEN or a file \
                 (--token-file FILE), or with --token, where other users can see it",
            )?,
            kernel: self.kernel,
            name,
            kernel_search: self.kernel_prefixes.search_path(),
            stream_limit: Some(self.stream_limit),
            heartbeat: Duration::from_secs(3),
            idle_exit: self.idle_exit_secs.map(Duration::from_secs),
            container: match self.container {
                Some(image) => Some(inloop_kernel::Container {
                    engine: self.engine.parse()?,
                    image,
                    gpus: self.gpus,
                }),
                None => None,
            },
        })
    }
}

impl ServeArgs {
    fn config(self) -> Result<Config> {
        let mut config = Config::new(self.data);
        config.addr = self.addr;
        config.web_dir = self.web;
        if !self.no_runtime {
            let prefixes = or_local_venv(self.runtime_kernel_prefixes);
            let mut args = vec![
                "--idle-exit-secs".to_owned(),
                self.runtime_idle_secs.to_string(),
            ];
            for prefix in prefixes {
                // Absolute, so the runtime finds it whatever its working directory.
                let prefix = std::path::absolute(&prefix).unwrap_or(prefix);
                args.push("--kernel-prefix".into());
                args.push(prefix.to_string_lossy().into_owned());
            }
            config.local_runtime = Some(inloop_relay::LocalRuntime {
                program: std::env::current_exe().context("finding the inloop binary")?,
                args,
            });
        }
        // A fixed key lets several relays (or restarts on new disks) accept the same tokens.
        if let Ok(secret) = std::env::var("INLOOP_SECRET") {
            anyhow::ensure!(
                secret.len() >= 32,
                "INLOOP_SECRET has {} characters; it needs at least 32",
                secret.len()
            );
            config.secret = Some(secret.into_bytes());
        }
        let seconds = |s: f64, flag: &str| -> Result<Duration> {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("{flag} {s}: give a number of seconds (0 or more)"))
        };
        config.limits = Limits {
            max_message_bytes: self.max_message_bytes,
            max_document_bytes: self.max_document_bytes,
            max_connections_per_document: self.max_connections_per_document,
            max_messages_per_second: self.max_messages_per_second,
            outgoing_queue: self.outgoing_queue,
            send_timeout: Duration::from_secs(self.send_timeout_secs),
            idle_unload: Duration::from_secs(self.idle_unload_secs),
            lease_ttl: Duration::from_secs_f64(self.lease_ttl_secs),
            lease_grace: Duration::from_secs_f64(self.lease_grace_secs),
            header_read_timeout: seconds(
                self.header_read_timeout_secs,
                "--header-read-timeout-secs",
            )?,
            http_idle_timeout: seconds(self.http_idle_timeout_secs, "--http-idle-timeout-secs")?,
            max_connections_per_ip: self.max_connections_per_ip,
            ping_interval: seconds(self.ping_interval_secs, "--ping-interval-secs")?,
            max_missed_pongs: self.max_missed_pongs,
            max_presence_bytes: self.max_presence_bytes,
            max_presences_per_connection: self.max_presences_per_connection,
            max_document_presence_bytes: self.max_document_presence_bytes,
            presence_bytes_per_second: self.presence_bytes_per_second,
            max_token_lifetime: Duration::from_secs(self.max_token_days.saturating_mul(86_400)),
            ..Limits::default()
        };
        config.rotate_key = self.rotate_key;
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INLOOP_LOG")
                // zeromq warns on every reconnection attempt to a kernel that is shutting down
                // or restarting, which is expected here.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,zeromq::reconnect=error")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => block_on(serve(args.config()?)),
        Command::Runtime(args) => block_on(runtime(args.config()?)),
        Command::Run(args) => {
            let quiet = args.quiet;
            let (config, history) = args.config()?;
            block_on(async {
                Ok(inloop_batch::run_batch(config, history, !quiet, shutdown_signal()).await?)
            })
        }
        Command::Mcp(args) => block_on(mcp(args)),
        Command::Import { input, out } => {
            let bytes = fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let update = Notebook::ipynb_to_update_v1(&bytes)
                .with_context(|| format!("reading {}", input.display()))?;
            let out = out.unwrap_or_else(|| input.with_extension("ydoc"));
            Ok(inloop_batch::write_atomically(&out, &update)?)
        }
        Command::Export { input, out } => {
            let update =
                fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let notebook = Notebook::from_update_v1(&update)
                .with_context(|| format!("reading {}", input.display()))?;
            let text = notebook.to_ipynb();
            match out {
                Some(out) if out.as_os_str() == "-" => {
                    print!("{text}");
                    Ok(())
                }
                out => Ok(inloop_batch::write_atomically(
                    &out.unwrap_or_else(|| input.with_extension("ipynb")),
                    text.as_bytes(),
                )?),
            }
        }
    }
}

/// Runs an async command to its end on a multi-threaded runtime.
fn block_on(command: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(command)
}

async fn serve(config: Config) -> Result<()> {
    let data = config.data_dir.clone();
    let relay = Relay::start(config)
        .await
        .with_context(|| format!("starting the relay (data in {})", data.display()))?;
    println!(
        "inloop relay listening on http://{} (data in {})",
        relay.addr(),
        data.display()
    );
    println!("  open this URL to start: {}", relay.admin_url());
    relay.run_until(shutdown_signal()).await?;
    eprintln!("inloop relay stopped");
    Ok(())
}

async fn runtime(config: inloop_runtime::agent::Config) -> Result<()> {
    eprintln!(
        "inloop runtime: joining document {} on {} with kernel {}",
        config.doc_id, config.relay, config.kernel
    );
    inloop_runtime::agent::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of every subcommand's arguments (unique names, valid defaults), which
    /// otherwise fail only when that subcommand is used.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
