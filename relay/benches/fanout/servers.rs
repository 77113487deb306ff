//! The servers under test, each a child process: inloop's relay (this bench started again with
//! `--serve-inloop`, or a `--baseline` build of it), the Node `@y/websocket-server` and y-sweet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use inloop_relay::{Config, Limits, Relay};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::measure::Usage;
use crate::options::{Options, ServerKind};
use crate::peers::CONNECT_TIMEOUT;

/// The relay's limits for this load; the defaults except where the load would break them.
pub(crate) fn inloop_limits(options: &Options) -> Limits {
    let defaults = Limits::default();
    let max_rate = options
        .rates
        .iter()
        .copied()
        .fold(options.many_rate, f64::max);
    // Jittered sends can bunch up to twice the mean rate within a second.
    let messages_per_second = (max_rate * 2.0).ceil() as u32 + 10;
    let connections = options.clients.max(options.idle + 1);
    Limits {
        max_messages_per_second: defaults.max_messages_per_second.max(messages_per_second),
        max_connections_per_document: defaults.max_connections_per_document.max(connections),
        // Every client connects from this machine's one address: no cap per address.
        max_connections_per_ip: 0,
        ..defaults
    }
}

/// The child process that serves inloop's relay: prints `ready TOKEN` once it listens.
pub(crate) async fn serve_inloop(
    addr: SocketAddr,
    data_dir: PathBuf,
    options: &Options,
) -> Result<()> {
    let mut config = Config::new(data_dir);
    config.addr = addr;
    config.limits = inloop_limits(options);
    let relay = Relay::start(config).await?;
    println!("ready {}", relay.admin_token());
    relay
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The servers asked for, failing with what to run if one of them is not installed.
pub(crate) fn servers_to_run(options: &Options) -> Result<Vec<ServerKind>> {
    let mut servers = Vec::new();
    let baseline = options.baseline.is_some().then_some(ServerKind::Baseline);
    for kind in ServerKind::ALL.into_iter().chain(baseline) {
        if !options.only.is_empty() && !options.only.contains(&kind) {
            println!("note: {} skipped (--only)", kind.name());
            continue;
        }
        let missing = match kind {
            ServerKind::Inloop => None,
            ServerKind::Baseline if !options.baseline.as_ref().is_some_and(|p| p.is_file()) => {
                Some("--baseline names no file".to_owned())
            }
            ServerKind::Node if !node_server_script().is_file() => Some(format!(
                "the Node server is not installed ({} is missing)",
                node_server_script().display()
            )),
            ServerKind::Node if Command::new("node").arg("--version").output().is_err() => {
                Some("`node` is not on the PATH".to_owned())
            }
            ServerKind::YSweet if y_sweet_binary().is_none() => {
                Some("y-sweet is not installed (no ~/.cargo/bin/y-sweet)".to_owned())
            }
            _ => None,
        };
        if let Some(missing) = missing {
            bail!(
                "{missing}: run scripts/bench-relay.sh, which installs it and runs this bench \
                 (or leave it out with --only inloop)"
            );
        }
        servers.push(kind);
    }
    Ok(servers)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn node_server_script() -> PathBuf {
    workspace_root().join("node_modules/@y/websocket-server/src/server.js")
}

fn y_sweet_binary() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let installed = Path::new(&home).join(".cargo/bin/y-sweet");
    installed.is_file().then_some(installed)
}

pub(crate) struct Server {
    kind: ServerKind,
    addr: SocketAddr,
    child: Child,
    /// inloop's admin token.
    token: Option<String>,
    /// The data folder and the child's log.
    dir: tempfile::TempDir,
}

impl Server {
    pub(crate) async fn start(kind: ServerKind, options: &Options) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = match kind {
            ServerKind::Inloop | ServerKind::Baseline => {
                let program = match (kind, &options.baseline) {
                    (ServerKind::Baseline, Some(baseline)) => baseline.clone(),
                    _ => std::env::current_exe()?,
                };
                let mut command = Command::new(program);
                command.arg("--serve-inloop").arg(addr.to_string());
                command.arg(dir.path().join("data"));
                // The child computes the same limits from the same options.
                command.arg("--clients").arg(options.clients.to_string());
                command.arg("--idle").arg(options.idle.to_string());
                command
                    .arg("--many-rate")
                    .arg(options.many_rate.to_string());
                let rates: Vec<String> = options.rates.iter().map(f64::to_string).collect();
                command.arg("--rates").arg(rates.join(","));
                command.stdout(Stdio::piped());
                command
            }
            ServerKind::Node => {
                let mut command = Command::new("node");
                command.arg(node_server_script());
                command
                    .env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string());
                command.stdout(log.try_clone()?);
                command
            }
            ServerKind::YSweet => {
                let mut command = Command::new(y_sweet_binary().context("y-sweet")?);
                command.arg("serve").arg("--port").arg(port.to_string());
                command.arg("--host").arg("127.0.0.1");
                command.arg(dir.path().join("store"));
                command.stdout(log.try_clone()?);
                command
            }
        };
        command.stdin(Stdio::null()).stderr(log);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let token = match child.stdout.take() {
            Some(stdout) => Some(read_ready_token(stdout).await),
            None => None,
        };
        let mut server = Self {
            kind,
            addr,
            child,
            token: None,
            dir,
        };
        let ready = async {
            server.token = token.transpose()?;
            wait_for_port(addr).await
        };
        if let Err(error) = ready.await {
            bail!(
                "{} did not start: {error:#}\n{}",
                kind.name(),
                server.log_tail()
            );
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A new document's WebSocket URL.
    pub(crate) async fn new_doc(&self, name: &str) -> Result<String> {
        let addr = self.addr;
        Ok(match self.kind {
            ServerKind::Inloop | ServerKind::Baseline => {
                let token = self.token.as_deref().context("inloop's token")?;
                let created = http_post_json(addr, "/api/docs", Some(token), "").await?;
                let id = created["id"].as_str().context("POST /api/docs: no id")?;
                format!("ws://{addr}/api/docs/{id}/ws?token={token}")
            }
            ServerKind::Node => format!("ws://{addr}/{name}"),
            ServerKind::YSweet => {
                let created = http_post_json(addr, "/doc/new", None, "{}").await?;
                let id = created["docId"]
                    .as_str()
                    .context("POST /doc/new: no docId")?;
                format!("ws://{addr}/d/{id}/ws/{id}")
            }
        })
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage::of(&format!("/proc/{}", self.pid()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin token from the `ready TOKEN` line of the inloop child.
async fn read_ready_token(stdout: std::process::ChildStdout) -> Result<String> {
    let stdout = tokio::process::ChildStdout::from_std(stdout)?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(CONNECT_TIMEOUT, lines.next_line())
        .await
        .context("no `ready` line in time")??
        .context("exited before it was ready")?;
    let token = line
        .strip_prefix("ready ")
        .with_context(|| format!("unexpected first line {line:?}"))?;
    Ok(token.to_owned())
}

async fn wait_for_port(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(error).context(format!("nothing listens on {addr}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A bare HTTP/1.1 POST answered with JSON (the servers set Content-Length on these).
async fn http_post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<serde_json::Value> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("POST {path}: no response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    ensure!(status.starts_with('2'), "POST {path}: {head}\n{body}");
    serde_json::from_str(body).with_context(|| format!("POST {path}: not JSON: {body:?}"))
}
