//! `inloop`: the notebook you work on together and don't lose.
//!
//! Thin by design: parse flags, set up logging, call a library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
}

#[derive(Debug, clap::Args)]
struct RuntimeArgs {
    /// The relay, e.g. ws://127.0.0.1:8787.
    #[arg(long, env = "INLOOP_RELAY")]
    relay: String,
    /// The document's id.
    #[arg(long, env = "INLOOP_DOC")]
    doc: String,
    /// A `runtime` token for the document (POST /api/docs/ID/tokens with {"role": "runtime"}).
    #[arg(long, env = "INLOOP_TOKEN")]
    token: String,
    /// The kernelspec to run (`jupyter kernelspec list` shows them).
    #[arg(long, env = "INLOOP_KERNEL", default_value = "python3")]
    kernel: String,
    /// The name other peers see [default: this machine's host name].
    #[arg(long, env = "INLOOP_NAME")]
    name: Option<String>,
    /// An environment whose `share/jupyter` holds kernelspecs, besides $VIRTUAL_ENV and the
    /// usual Jupyter directories (repeatable) [default: ./.venv when present].
    #[arg(long = "kernel-prefix", env = "INLOOP_KERNEL_PREFIX")]
    kernel_prefixes: Vec<PathBuf>,
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

impl RuntimeArgs {
    fn config(self) -> Result<inloop_runtime::agent::Config> {
        let mut prefixes = self.kernel_prefixes;
        if prefixes.is_empty() && Path::new(".venv/share/jupyter").is_dir() {
            prefixes.push(PathBuf::from(".venv"));
        }
        let name = self.name.unwrap_or_else(|| {
            fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "server runtime".into())
        });
        Ok(inloop_runtime::agent::Config {
            relay: self.relay,
            doc_id: self.doc,
            token: self.token,
            kernel: self.kernel,
            name,
            kernel_search: inloop_kernel::SearchPath::from_env(prefixes),
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
            let mut prefixes = self.runtime_kernel_prefixes;
            if prefixes.is_empty() && Path::new(".venv/share/jupyter").is_dir() {
                prefixes.push(PathBuf::from(".venv"));
            }
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
            ..Limits::default()
        };
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INLOOP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
        Command::Import { input, out } => {
            let bytes = fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let update = Notebook::ipynb_to_update_v1(&bytes)
                .with_context(|| format!("reading {}", input.display()))?;
            let out = out.unwrap_or_else(|| input.with_extension("ydoc"));
            write_atomically(&out, &update)
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
                out => write_atomically(
                    &out.unwrap_or_else(|| input.with_extension("ipynb")),
                    text.as_bytes(),
                ),
            }
        }
    }
}

/// Writes through a temporary file in the same folder and renames it into place, so a failure
/// never leaves a half-written file where a good one was.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().with_context(context)?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.inloop-tmp"));
    fs::write(&tmp, bytes).with_context(context)?;
    fs::rename(&tmp, path).with_context(context)
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
