//! Fresh ipykernels, quickly: forked from a Python process that imported ipykernel once
//! (`forkserver.py`), instead of each one importing it anew. A kernel's start-up costs about
//! 0.1 s of CPU this way instead of about 0.35 s, which is most of the cost of a short run.
//!
//! Each kernel is still a new process that no run used before, with its own working directory,
//! environment and standard streams, and it stays reachable the way a spawned kernel is:
//! `JupyterKernel` asks the server for it over a Unix socket ([`JupyterConfig::fork_server`]),
//! learns its pid, and hears from the server when it ends; the kernel leads a process group of
//! its own, so interrupts and kills sent to the group reach it.
//!
//! [`JupyterConfig::fork_server`]: inloop_kernel::JupyterConfig::fork_server

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use inloop_kernel::KernelSpec;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Error, Result};

const SCRIPT: &str = include_str!("forkserver.py");

/// How long the server may take to import ipykernel and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running fork server for one kernelspec. Dropping it stops the server (its standard input
/// closes); kernels it forked end when their `JupyterKernel`s are dropped, or within a second of
/// the server's end (ipykernel watches its parent).
#[derive(Debug)]
pub(crate) struct ForkServer {
    _child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where `argv` runs ipykernel's launcher module: the interpreter and its flags (the server
/// passes the launcher's own arguments, after the module, to each kernel). `None` for any other
/// kernel.
fn ipykernel_command(argv: &[String]) -> Option<(&str, &[String])> {
    let module = argv.iter().position(|arg| arg == "-m")?;
    let name = argv.get(module + 1)?;
    if name != "ipykernel_launcher" && name != "ipykernel" {
        return None;
    }
    let python = argv.first()?;
    Some((python, &argv[1..module]))
}

impl ForkServer {
    /// Starts a server for `spec` if it is an ipykernel launched as a module; `Ok(None)` for any
    /// other kernel.
    pub(crate) async fn start(spec: &KernelSpec) -> Result<Option<ForkServer>> {
        let Some((python, flags)) = ipykernel_command(&spec.argv) else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("inloop-forkserver-")
            .tempdir()
            .map_err(|e| Error::ForkServer(format!("a folder for it: {e}")))?;
        let script = dir.path().join("forkserver.py");
        std::fs::write(&script, SCRIPT).map_err(|source| Error::Write {
            path: script.clone(),
            source,
        })?;
        let socket = dir.path().join("socket");
        let mut command = Command::new(python);
        command
            .args(flags)
            .arg(&script)
            .arg("serve")
            .arg(&socket)
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::ForkServer(format!("{python}: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // Its stderr, logged (it says little: a refused request); the first lines are kept for
        // an error at start-up.
        let (said, mut first_words) = tokio::sync::mpsc::unbounded_channel();
        let kernel = spec.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(kernel, line, "kernel fork server");
                let _ = said.send(line);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
        if !matches!(&ready, Ok(Ok(Some(line))) if line == "ready") {
            let _ = child.start_kill();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut words = Vec::new();
            while let Ok(line) = first_words.try_recv() {
                words.push(line);
            }
            return Err(Error::ForkServer(format!(
                "{} did not start: {}",
                spec.name,
                match ready {
                    Err(_) => format!("not ready within {READY_TIMEOUT:?}"),
                    _ => words.join("\n"),
                }
            )));
        }
        Ok(Some(ForkServer {
            _child: child,
            socket,
            _dir: dir,
        }))
    }

    /// Where it listens: what [`inloop_kernel::JupyterConfig::fork_server`] takes.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// `spec` with IPython's history kept in memory if it is an ipykernel, as nbclient (and so
/// papermill) starts them: not in the profile's SQLite file, which every kernel of a batch would
/// write, and sync to disk, on every cell, for no one to read.
pub(crate) fn with_history_in_memory(mut spec: KernelSpec) -> KernelSpec {
    let chosen = |arg: &String| arg.starts_with("--HistoryManager.hist_file");
    if ipykernel_command(&spec.argv).is_some() && !spec.argv.iter().any(chosen) {
        spec.argv
            .push("--HistoryManager.hist_file=:memory:".to_owned());
    }
    spec
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use inloop_doc::Output;
    use inloop_kernel::{ExecEvent, JupyterConfig, JupyterKernel, Kernel, ReplyStatus};

    use super::*;

    #[test]
    fn only_ipykernel_modules_are_forked() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let python =
            argv("/v/bin/python -Xfrozen_modules=off -m ipykernel_launcher -f {connection_file}");
        let (exe, flags) = ipykernel_command(&python).unwrap();
        assert_eq!(exe, "/v/bin/python");
        assert_eq!(flags, ["-Xfrozen_modules=off"]);
        assert!(
            ipykernel_command(&argv(
                "R --slave -e IRkernel::main() --args {connection_file}"
            ))
            .is_none()
        );
        assert!(ipykernel_command(&argv("python -m other_kernel -f {connection_file}")).is_none());
    }

    fn python3() -> KernelSpec {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
        let spec = KernelSpec::find("python3", &inloop_kernel::SearchPath::from_env([venv]));
        with_history_in_memory(spec.expect("the repository's .venv has ipykernel"))
    }

    /// Runs `code`, and returns how it ended and what it printed.
    async fn run(
        kernel: &JupyterKernel,
        code: &str,
    ) -> (inloop_kernel::Result<ReplyStatus>, String) {
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let reply = kernel.execute(code, events).await.map(|r| r.status);
        let mut printed = String::new();
        while let Ok(event) = received.try_recv() {
            if let ExecEvent::Output(Output::Stream { text, .. }) = event {
                printed.push_str(&text);
            }
        }
        (reply, printed)
    }

    /// A forked kernel is reached as a spawned one is: it leads its own process group and is
    /// interrupted through it, its death says how it died, and it is killed when dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forked_kernels_are_interrupted_report_their_end_and_die_when_dropped() {
        let spec = python3();
        assert!(
            spec.argv
                .contains(&"--HistoryManager.hist_file=:memory:".to_owned())
        );
        assert_eq!(with_history_in_memory(spec.clone()).argv, spec.argv);
        let server = ForkServer::start(&spec)
            .await
            .unwrap()
            .expect("an ipykernel");
        let config = JupyterConfig {
            fork_server: Some(server.socket().to_owned()),
            ..JupyterConfig::default()
        };
        let kernel = Arc::new(
            JupyterKernel::start(spec.clone(), config.clone())
                .await
                .unwrap(),
        );
        let pid = kernel.pid().unwrap();
        let (reply, printed) = run(&kernel, "import os\nprint(os.getpid(), os.getpgid(0))").await;
        assert_eq!(reply.unwrap(), ReplyStatus::Ok);
        assert_eq!(printed, format!("{pid} {pid}\n"));

        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let sleeping = tokio::spawn({
            let kernel = kernel.clone();
            async move { kernel.execute("import time\ntime.sleep(100)", events).await }
        });
        assert!(matches!(
            received.recv().await,
            Some(ExecEvent::Started { .. })
        ));
        // Into the sleep.
        tokio::time::sleep(Duration::from_millis(200)).await;
        kernel.interrupt().await.unwrap();
        assert_eq!(sleeping.await.unwrap().unwrap().status, ReplyStatus::Error);
        let mut interrupted = false;
        while let Some(event) = received.recv().await {
            if let ExecEvent::Output(Output::Error { ename, .. }) = event {
                interrupted |= ename == "KeyboardInterrupt";
            }
        }
        assert!(interrupted);

        let (died, _) = run(&kernel, "import os\nos._exit(3)").await;
        match died {
            Err(inloop_kernel::Error::KernelDied { reason, .. }) => {
                assert_eq!(reason, "exit status: 3");
            }
            other => panic!("the kernel did not die: {other:?}"),
        }

        let kernel = JupyterKernel::start(spec, config).await.unwrap();
        let pid = kernel.pid().unwrap();
        assert_eq!(run(&kernel, "1").await.0.unwrap(), ReplyStatus::Ok);
        drop(kernel);
        // The server reaps it: no zombie is left either.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "kernel {pid} outlived its owner"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
