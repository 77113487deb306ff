//! The kernel's operating-system process: launch, watch, signal, kill.

use std::collections::{BTreeMap, VecDeque};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::sync::watch;

use super::JupyterConfig;
use crate::{Error, KernelSpec, Result};

/// How many of the kernel's last stderr lines an error quotes.
const STDERR_TAIL_LINES: usize = 20;

/// How long the watcher waits, after the process ended, for the rest of its stderr (a
/// grandchild may hold the pipe open, so not forever).
const STDERR_DRAIN: Duration = Duration::from_millis(200);

/// A running kernel process, in a process group of its own (as jupyter_client starts kernels):
/// a Ctrl-C meant for the runtime does not reach it, and signals reach its children too.
/// Killed, with its group, when dropped.
#[derive(Debug)]
pub(super) struct Process {
    pid: Pid,
    /// `None` while it runs, then how it ended.
    exit: watch::Receiver<Option<String>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// For a kernel in a container: the command that removes it (killing the attached engine
    /// client does not stop the container).
    cleanup: Option<Vec<String>>,
}

/// The random part of the connection folder's name, to name the container after.
fn connection_file_id(connection_file: &Path) -> String {
    connection_file
        .parent()
        .and_then(Path::file_name)
        .map(|name| {
            name.to_string_lossy()
                .trim_start_matches("inloop-kernel-")
                .to_owned()
        })
        .unwrap_or_else(|| "kernel".to_owned())
}

/// What a fork server says about the kernel it forked: first its pid, then how it ended (an exit
/// code, or minus the signal that killed it).
#[derive(Deserialize)]
struct Forked {
    pid: i32,
}

#[derive(Deserialize)]
struct Ended {
    exit: i32,
}

impl Process {
    /// Starts `spec`'s command with `{connection_file}` and `{resource_dir}` filled in: forked
    /// by `config.fork_server`, or spawned. With `config.container`, the container engine's
    /// command running the kernel on `ports` is spawned instead.
    pub(super) async fn start(
        spec: &KernelSpec,
        config: &JupyterConfig,
        connection_file: &Path,
        ports: &[u16],
    ) -> Result<Process> {
        let fill = |arg: &str| {
            arg.replace("{connection_file}", &connection_file.to_string_lossy())
                .replace("{resource_dir}", &spec.resource_dir.to_string_lossy())
        };
        let (argv, cleanup) = match &config.container {
            Some(container) => {
                let name = format!("inloop-kernel-{}", connection_file_id(connection_file));
                let dir = connection_file.parent().unwrap_or(connection_file);
                let cleanup = container.remove_command(&name);
                (container.command(&name, dir, ports), Some(cleanup))
            }
            None => (spec.argv.iter().map(|arg| fill(arg)).collect(), None),
        };
        match (&config.fork_server, &config.container) {
            (Some(socket), None) => {
                let forking = Self::fork(socket, spec, config, argv);
                tokio::time::timeout(config.startup_timeout, forking)
                    .await
                    .map_err(|_| Error::StartTimeout {
                        kernel: spec.name.clone(),
                        waited: config.startup_timeout,
                        stderr: String::new(),
                    })?
            }
            _ => Self::spawn(spec, config, argv, cleanup),
        }
    }

    fn spawn(
        spec: &KernelSpec,
        config: &JupyterConfig,
        argv: Vec<String>,
        cleanup: Option<Vec<String>>,
    ) -> Result<Process> {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(&spec.env)
            .envs(&config.env)
            // As jupyter_client does: the kernel exits when this process dies, even by SIGKILL
            // (it runs in its own process group, so nothing else would stop it).
            .env("JPY_PARENT_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Only if the watcher task is dropped with its runtime; `Drop` kills the group.
            .kill_on_drop(true);
        if let Some(dir) = &config.working_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|source| Error::Launch {
            kernel: spec.name.clone(),
            program: argv[0].clone(),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?))
            .ok_or_else(|| std::io::Error::other("the kernel process has no pid"))?;

        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let ended = async move {
            match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("could not wait for it: {error}"),
            }
        };
        Ok(Self::watch(pid, &spec.name, stdout, stderr, ended, cleanup))
    }

    /// Has the fork server listening on `socket` fork the kernel (see
    /// [`JupyterConfig::fork_server`]): it gets the command line, the working directory, the
    /// environment a spawned kernel would get, and standard streams like a spawned kernel's.
    async fn fork(
        socket: &Path,
        spec: &KernelSpec,
        config: &JupyterConfig,
        argv: Vec<String>,
    ) -> Result<Process> {
        let failed = |source: std::io::Error| Error::Launch {
            kernel: spec.name.clone(),
            program: socket.display().to_string(),
            source,
        };
        let cwd = match &config.working_dir {
            Some(dir) => std::path::absolute(dir)?,
            None => std::env::current_dir()?,
        };
        let mut env: BTreeMap<String, String> = std::env::vars_os()
            .map(|(name, value)| {
                let text = |s: std::ffi::OsString| s.to_string_lossy().into_owned();
                (text(name), text(value))
            })
            .collect();
        env.extend(spec.env.clone());
        env.extend(config.env.clone());
        let mut request = serde_json::to_vec(&serde_json::json!({
            "argv": argv,
            "cwd": cwd,
            "env": env,
        }))
        .map_err(std::io::Error::other)?;
        request.push(b'\n');

        let stdin = std::fs::File::open("/dev/null")?;
        let new_pipe = || rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(std::io::Error::from);
        let (stdout, stdout_writer) = new_pipe()?;
        let (stderr, stderr_writer) = new_pipe()?;
        let mut connection = UnixStream::connect(socket).await.map_err(failed)?;
        let streams = [stdin.as_fd(), stdout_writer.as_fd(), stderr_writer.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&streams));
        let sent = connection
            .async_io(Interest::WRITABLE, || {
                let request = [IoSlice::new(&request)];
                Ok(rustix::net::sendmsg(
                    &connection,
                    &request,
                    &mut control,
                    SendFlags::empty(),
                )?)
            })
            .await
            .map_err(failed)?;
        connection
            .write_all(&request[sent..])
            .await
            .map_err(failed)?;
        // The kernel holds the only write ends: its exit closes the pipes.
        drop((stdin, stdout_writer, stderr_writer));

        let mut said = BufReader::new(connection).lines();
        let forked = said.next_line().await.map_err(failed)?;
        let pid = forked
            .and_then(|line| serde_json::from_str::<Forked>(&line).ok())
            .and_then(|forked| Pid::from_raw(forked.pid))
            .ok_or_else(|| failed(std::io::Error::other("the fork server forked no kernel")))?;
        let ended = async move {
            let line = said.next_line().await.ok().flatten();
            match line.and_then(|line| serde_json::from_str::<Ended>(&line).ok()) {
                Some(Ended { exit }) if exit < 0 => format!("signal: {}", -exit),
                Some(Ended { exit }) => format!("exit status: {exit}"),
                None => {
                    // The kernel would end within a second (it watches its parent): now.
                    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                    "its fork server ended".to_owned()
                }
            }
        };
        let stdout = pipe::Receiver::from_owned_fd(stdout)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr)?;
        Ok(Self::watch(pid, &spec.name, stdout, stderr, ended, None))
    }

    /// The process `pid`, its output logged, and its end, once `ended` says how it came,
    /// reported after the rest of its stderr.
    fn watch(
        pid: Pid,
        kernel: &str,
        stdout: impl AsyncRead + Unpin + Send + 'static,
        stderr: impl AsyncRead + Unpin + Send + 'static,
        ended: impl Future<Output = String> + Send + 'static,
        cleanup: Option<Vec<String>>,
    ) -> Process {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(log_lines(stdout, kernel.to_owned(), None));
        let stderr_reader = tokio::spawn(log_lines(stderr, kernel.to_owned(), Some(tail.clone())));
        let (exited, exit) = watch::channel(None);
        let kernel = kernel.to_owned();
        tokio::spawn(async move {
            let status = ended.await;
            let _ = tokio::time::timeout(STDERR_DRAIN, stderr_reader).await;
            tracing::debug!(kernel, %status, "kernel process ended");
            let _ = exited.send(Some(status));
        });
        Process {
            pid,
            exit,
            stderr: tail,
            cleanup,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// Whether the process is still running.
    pub(super) fn is_running(&self) -> bool {
        self.exit.borrow().is_none()
    }

    /// Sends `signal` to the kernel's process group, unless it has ended.
    pub(super) fn signal(&self, signal: Signal) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        match rustix::process::kill_process_group(self.pid, signal) {
            // It ended between the check and the signal.
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(errno) => Err(std::io::Error::from(errno).into()),
        }
    }

    /// Waits for the process to end and returns the error that says how it did.
    pub(super) async fn died(&self) -> Error {
        let mut exit = self.exit.clone();
        let reason = match exit.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "its watcher stopped".to_owned(),
        };
        Error::KernelDied {
            reason,
            stderr: self.stderr_tail(),
        }
    }

    /// SIGKILL to the group, then waits until the process has ended.
    pub(super) async fn kill(&self) {
        if let Err(error) = self.signal(Signal::KILL) {
            tracing::warn!(%error, pid = self.pid(), "could not kill the kernel");
        }
        self.died().await;
    }

    /// Waits up to `grace` for the process to end by itself, then kills it.
    pub(super) async fn stop(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.died()).await.is_err() {
            tracing::warn!(
                pid = self.pid(),
                "kernel did not exit when asked; killing it"
            );
            self.kill().await;
        }
    }

    /// The last lines the kernel wrote to stderr.
    pub(super) fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Synchronous, so the kernel dies with us even when no runtime is left to run a task.
        let _ = self.signal(Signal::KILL);
        if let Some(cleanup) = &self.cleanup {
            let _ = std::process::Command::new(&cleanup[0])
                .args(&cleanup[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
    }
}

/// Logs each line the kernel prints outside of Jupyter messages (low-level writes, warnings,
/// startup failures), keeping the last stderr lines for errors.
async fn log_lines(
    stream: impl AsyncRead + Unpin,
    kernel: String,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(kernel, stderr = tail.is_some(), line, "kernel output");
        if let Some(tail) = &tail {
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}
