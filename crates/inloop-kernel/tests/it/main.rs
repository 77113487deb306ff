//! Against the real ipykernel of the repository's venv (`scripts/setup.sh` makes it).

mod kernelspec;
mod lifecycle;
mod outputs;
mod variables;

use std::path::{Path, PathBuf};
use std::time::Duration;

use inloop_kernel::{
    ExecEvent, ExecuteReply, JupyterConfig, JupyterKernel, Kernel, KernelSpec, SearchPath,
};

/// The repository's venv; fails the test, saying how to make it, when it is missing.
fn venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    assert!(
        venv.join("bin/python").is_file(),
        "{} has no bin/python: run scripts/setup.sh to create the venv with ipykernel",
        venv.display()
    );
    venv.canonicalize().unwrap()
}

/// The venv's `python3` kernelspec (ipykernel).
fn python_spec() -> KernelSpec {
    KernelSpec::find(
        "python3",
        &SearchPath::from_dirs([venv().join("share/jupyter")]),
    )
    .unwrap()
}

async fn start(spec: KernelSpec) -> JupyterKernel {
    JupyterKernel::start(spec, JupyterConfig::default())
        .await
        .unwrap()
}

/// Runs `code`, returning the reply and every event, in order.
async fn run(
    kernel: &impl Kernel,
    code: &str,
) -> inloop_kernel::Result<(ExecuteReply, Vec<ExecEvent>)> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let reply = kernel.execute(code, sender).await?;
    let mut events = Vec::new();
    // `execute` has dropped its sender: this ends once the events are drained.
    while let Some(event) = receiver.recv().await {
        events.push(event);
    }
    Ok((reply, events))
}

/// Waits until no process has this id any more (killed and reaped).
async fn assert_gone(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    for _ in 0..100 {
        if rustix::process::test_kill_process(pid).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid:?} is still there");
}

/// With no container engine on this machine, asking for one fails at start with an error that
/// names the engine or quotes what it printed, and leaves nothing running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_kernel_without_an_engine_fails_clearly() {
    use inloop_kernel::{Container, Engine, JupyterConfig, JupyterKernel, KernelSpec, SearchPath};
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    let spec = KernelSpec::find("python3", &SearchPath::from_env([venv])).unwrap();
    let config = JupyterConfig {
        container: Some(Container {
            engine: Engine::Podman,
            image: "python:3.12".into(),
            gpus: None,
        }),
        startup_timeout: std::time::Duration::from_secs(20),
        ..JupyterConfig::default()
    };
    let Err(error) = JupyterKernel::start(spec, config).await else {
        panic!("no container engine runs here, yet the kernel started");
    };
    let message = error.to_string();
    assert!(message.contains("podman"), "{message}");
}
