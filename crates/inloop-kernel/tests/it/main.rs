//! Against the real ipykernel of the repository's venv (`scripts/setup.sh` makes it), found by
//! `inloop-testing`'s kernel fixture.

mod kernelspec;
mod lifecycle;
mod outputs;
mod variables;

use std::time::Duration;

use inloop_kernel::{ExecEvent, ExecuteReply, JupyterConfig, JupyterKernel, Kernel, KernelSpec};
use inloop_testing::kernel::{python_spec, venv};

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
    inloop_testing::until(
        &format!("process {pid:?} to be gone"),
        Duration::from_secs(5),
        || rustix::process::test_kill_process(pid).is_err(),
    )
    .await;
}

/// With no container engine on this machine, asking for one fails at start with an error that
/// names the engine or quotes what it printed, and leaves nothing running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_kernel_without_an_engine_fails_clearly() {
    use inloop_kernel::{Container, Engine};
    let spec = python_spec();
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
