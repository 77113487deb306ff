//! Fresh ipykernels, quickly: forked from a Python process that imported ipykernel once
//! (`forkserver.py`), instead of each one importing it anew. A kernel's start-up costs about
//! 0.1 s of CPU this way instead of about 0.35 s, which is most of the cost of a short run.
//!
//! Each kernel is still a new process that no run used before, with its own working directory,
//! environment and standard streams, and it stays reachable the way a directly launched kernel
//! is: the process `JupyterKernel` launches is a small client that lives as long as the kernel,
//! and the kernel joins the client's process group, so interrupts and kills sent to the group
//! reach it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use inloop_kernel::{InterruptMode, KernelSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Error, Result};

const SCRIPT: &str = include_str!("forkserver.py");

/// How long the server may take to import ipykernel and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running fork server for one kernelspec. Dropping it stops the server (its standard input
/// closes); kernels it forked end when their clients are killed, or within a second of the
/// server's end (ipykernel watches its parent).
#[derive(Debug)]
pub(crate) struct ForkServer {
    _child: Child,
    spec: KernelSpec,
    _dir: tempfile::TempDir,
}

/// Where `argv` runs ipykernel's launcher module: the interpreter, its flags, and the launcher's
/// own arguments. `None` for any other kernel.
fn ipykernel_command(argv: &[String]) -> Option<(&str, &[String], &[String])> {
    let module = argv.iter().position(|arg| arg == "-m")?;
    let name = argv.get(module + 1)?;
    if name != "ipykernel_launcher" && name != "ipykernel" {
        return None;
    }
    let python = argv.first()?;
    Some((python, &argv[1..module], &argv[module + 2..]))
}

impl ForkServer {
    /// Starts a server for `spec` if it is an ipykernel launched as a module; `Ok(None)` for any
    /// other kernel.
    pub(crate) async fn start(spec: &KernelSpec) -> Result<Option<ForkServer>> {
        let Some((python, flags, args)) = ipykernel_command(&spec.argv) else {
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
        let mut forked = spec.clone();
        forked.argv = vec![
            python.to_owned(),
            // The client needs the standard library only.
            "-S".to_owned(),
            path_string(&script),
            "client".to_owned(),
            path_string(&socket),
        ];
        forked.argv.extend(args.iter().cloned());
        forked.interrupt_mode = InterruptMode::Signal;
        Ok(Some(ForkServer {
            _child: child,
            spec: forked,
            _dir: dir,
        }))
    }

    /// The kernelspec whose kernels are forked by this server.
    pub(crate) fn spec(&self) -> &KernelSpec {
        &self.spec
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ipykernel_modules_are_forked() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let python =
            argv("/v/bin/python -Xfrozen_modules=off -m ipykernel_launcher -f {connection_file}");
        let (exe, flags, args) = ipykernel_command(&python).unwrap();
        assert_eq!(exe, "/v/bin/python");
        assert_eq!(flags, ["-Xfrozen_modules=off"]);
        assert_eq!(args, ["-f", "{connection_file}"]);
        assert!(
            ipykernel_command(&argv(
                "R --slave -e IRkernel::main() --args {connection_file}"
            ))
            .is_none()
        );
        assert!(ipykernel_command(&argv("python -m other_kernel -f {connection_file}")).is_none());
    }
}
