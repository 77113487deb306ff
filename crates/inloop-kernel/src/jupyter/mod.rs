//! A Jupyter kernel in a local process, over ZeroMQ (jupyter-zmq-client + jupyter-protocol).

mod ports;
mod process;
mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, InterruptRequest, JupyterMessage, KernelInfoRequest,
    ShutdownRequest, Transport,
};
use jupyter_zmq_client::{ClientControlConnection, DealerSendConnection};
use rustix::process::Signal;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use crate::{
    Error, ExecEvent, ExecuteReply, InterruptMode, Kernel, KernelInfo, KernelSpec, ReplyStatus,
    Result,
};
use process::Process;
use wire::{Channel, IoPub, Pending, Router};

/// How long one `kernel_info_request` of the start-up handshake waits before another is sent.
/// A SUB socket only receives what is published after its subscription reached the kernel, so
/// the handshake repeats until iopub has carried a reply's status too (as jupyter_client's
/// `wait_for_ready` does).
const HANDSHAKE_ROUND: Duration = Duration::from_millis(500);

/// How long a socket failure waits for the process's exit to be seen, before it is reported as
/// a failure of its own rather than as the kernel's death.
const DEATH_GRACE: Duration = Duration::from_secs(1);

/// How to run Jupyter kernels. `Default` gives Jupyter's own timeouts.
#[derive(Clone, Debug)]
pub struct JupyterConfig {
    /// The kernel's working directory; the runtime's when `None`.
    pub working_dir: Option<PathBuf>,
    /// Variables for the kernel's process, over the inherited environment and the spec's.
    pub env: BTreeMap<String, String>,
    /// How long a kernel may take to answer its first `kernel_info_request` (jupyter_client:
    /// 60 s).
    pub startup_timeout: Duration,
    /// After an `execute_reply`, how long to wait for more iopub messages before giving up on
    /// the `idle` status that says all output has been sent (nbclient's `iopub_timeout`: 4 s).
    pub iopub_timeout: Duration,
    /// How long a kernel asked to shut down (or a control request) may take before it is
    /// killed (given up on) (jupyter_client's `shutdown_wait_time`: 5 s).
    pub shutdown_timeout: Duration,
    /// Run the kernel in this container instead of from the kernelspec's command.
    pub container: Option<crate::Container>,
    /// Have the kernel forked by the process listening on this Unix socket (inloop-batch's fork
    /// server of ipykernels) instead of spawned from the kernelspec's command. Each connection
    /// asks for one kernel: a JSON line `{"argv", "cwd", "env"}` (the command line with its
    /// placeholders filled in, the working directory and the whole environment) sent with the
    /// kernel's stdin, stdout and stderr attached (`SCM_RIGHTS`). The server answers
    /// `{"pid": N}` once the kernel leads a process group of its own, as a spawned kernel does,
    /// and `{"exit": CODE}` when it has ended (minus the signal that killed it). Not with a
    /// container.
    pub fork_server: Option<PathBuf>,
}

impl Default for JupyterConfig {
    fn default() -> Self {
        Self {
            working_dir: None,
            env: BTreeMap::new(),
            startup_timeout: Duration::from_secs(60),
            iopub_timeout: Duration::from_secs(4),
            shutdown_timeout: Duration::from_secs(5),
            container: None,
            fork_server: None,
        }
    }
}

/// A Jupyter kernel (ipykernel, IRkernel, ...) running in a local process that this value
/// owns: dropping it kills the kernel.
///
/// It speaks to the kernel on the shell, iopub and control channels. Not on stdin: code runs
/// with `allow_stdin: false`, so `input()` raises at once instead of waiting for a reply no
/// one would send. Not on heartbeat: the process is a child of ours, and its exit is a surer
/// and quicker sign of death than a missed ping.
///
/// Every method takes `&self`; share it in an `Arc` to interrupt from another task while one
/// executes.
#[derive(Debug)]
pub struct JupyterKernel {
    spec: KernelSpec,
    config: JupyterConfig,
    current: Mutex<Arc<Instance>>,
    /// Held while a restart or a shutdown is under way, so executions wait for its outcome.
    lifecycle: tokio::sync::Mutex<()>,
    shut_down: AtomicBool,
}

impl JupyterKernel {
    /// Launches the kernel and waits until it has answered `kernel_info_request`.
    pub async fn start(spec: KernelSpec, config: JupyterConfig) -> Result<JupyterKernel> {
        let instance = Instance::launch(&spec, &config).await?;
        Ok(JupyterKernel {
            spec,
            config,
            current: Mutex::new(Arc::new(instance)),
            lifecycle: tokio::sync::Mutex::new(()),
            shut_down: AtomicBool::new(false),
        })
    }

    /// The kernelspec it was started from.
    pub fn spec(&self) -> &KernelSpec {
        &self.spec
    }

    /// The kernel process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let instance = self.current();
        instance
            .process
            .is_running()
            .then(|| instance.process.pid())
    }

    fn current(&self) -> Arc<Instance> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn running(&self) -> Result<Arc<Instance>> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(Error::ShutDown);
        }
        Ok(self.current())
    }
}

impl Kernel for JupyterKernel {
    async fn execute(
        &self,
        code: &str,
        events: UnboundedSender<ExecEvent>,
    ) -> Result<ExecuteReply> {
        // A run asked for during a restart goes to the new kernel.
        let instance = {
            let _lifecycle = self.lifecycle.lock().await;
            self.running()?
        };
        instance
            .execute(code, events, self.config.iopub_timeout)
            .await
    }

    async fn interrupt(&self) -> Result<()> {
        let instance = self.running()?;
        match self.spec.interrupt_mode {
            InterruptMode::Signal => instance.process.signal(Signal::INT),
            InterruptMode::Message => {
                instance
                    .control_request(
                        InterruptRequest {},
                        "interrupt_reply",
                        self.config.shutdown_timeout,
                    )
                    .await
            }
        }
    }

    async fn restart(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        // The old kernel goes first, so that its memory (a GPU's too) is free for the new one.
        self.current().process.kill().await;
        let fresh = Instance::launch(&self.spec, &self.config).await?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        self.shut_down.store(false, Ordering::SeqCst);
        Ok(())
    }

    async fn shutdown(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        self.shut_down.store(true, Ordering::SeqCst);
        self.current().shutdown(self.config.shutdown_timeout).await;
        Ok(())
    }

    fn kernel_info(&self) -> KernelInfo {
        self.current().info.clone()
    }
}

/// One kernel process and the connections to it; a restart makes a new one.
#[derive(Debug)]
struct Instance {
    process: Process,
    channels: Channels,
    info: KernelInfo,
    /// Holds the connection file, which has the key: removed with the instance.
    _connection_dir: tempfile::TempDir,
}

impl Instance {
    async fn launch(spec: &KernelSpec, config: &JupyterConfig) -> Result<Instance> {
        let connection_dir = tempfile::Builder::new()
            .prefix("inloop-kernel-")
            .tempdir()?;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Free ports (not given to another kernel of ours lately), released before the kernel
        // is spawned. jupyter-zmq-client suggests
        // holding them (`peek_ports_with_listeners`) until after the spawn, but the child
        // keeps its copy of the listening sockets until its exec closes them, after the
        // parent has resumed: a connect in that window is accepted into the copy's backlog,
        // then reset, and the ZeroMQ connect fails instead of retrying. The kernel binds only
        // some 300 ms later anyway, so holding them would not close the race they are for.
        let ports = ports::free_ports(ip, 5).await?;
        let connection = ConnectionInfo {
            ip: ip.to_string(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: random_hex(32)?,
            signature_scheme: "hmac-sha256".to_owned(),
            kernel_name: Some(spec.name.clone()),
        };
        let connection_file = connection_dir.path().join("kernel.json");
        // In a container the kernel binds all its interfaces; we reach it on published ports.
        let mut kernel_view = connection.clone();
        if config.container.is_some() {
            kernel_view.ip = "0.0.0.0".to_owned();
        }
        let json = serde_json::to_vec_pretty(&kernel_view).map_err(std::io::Error::other)?;
        std::fs::write(&connection_file, json)?;
        let process = Process::start(spec, config, &connection_file, &ports).await?;

        let ready = async {
            let channels = Channels::connect(&connection).await?;
            let info = channels.handshake().await?;
            Ok::<_, Error>((channels, info))
        };
        let (channels, info) = tokio::select! {
            ready = timeout(config.startup_timeout, ready) => ready.map_err(|_| {
                Error::StartTimeout {
                    kernel: spec.name.clone(),
                    waited: config.startup_timeout,
                    stderr: process.stderr_tail(),
                }
            })??,
            error = process.died() => return Err(error),
        };
        tracing::info!(
            kernel = spec.name,
            pid = process.pid(),
            implementation = info.implementation,
            language_version = info.language_version,
            "kernel ready"
        );
        Ok(Instance {
            process,
            channels,
            info,
            _connection_dir: connection_dir,
        })
    }

    async fn execute(
        &self,
        code: &str,
        events: UnboundedSender<ExecEvent>,
        iopub_timeout: Duration,
    ) -> Result<ExecuteReply> {
        let request = ExecuteRequest {
            code: code.to_owned(),
            silent: false,
            store_history: true,
            user_expressions: None,
            allow_stdin: false,
            stop_on_error: true,
        };
        let mut pending = self.guarded(self.channels.send(request)).await?;
        let mut run = Run {
            events,
            started: false,
        };
        let mut reply = None;
        let mut idle = false;
        // Armed by the reply: how long iopub may stay silent before `idle` is given up on.
        let quiet = sleep(Duration::ZERO);
        tokio::pin!(quiet);
        while !(idle && reply.is_some()) {
            let message = tokio::select! {
                // What the kernel sent before it died still reaches the caller.
                biased;
                Some(message) = pending.recv() => message,
                error = self.process.died() => return Err(error),
                () = &mut quiet, if reply.is_some() => {
                    tracing::warn!(?iopub_timeout, "no idle status after the execute_reply");
                    break;
                }
            };
            match message.channel {
                Channel::Shell if message.msg_type == "execute_reply" => {
                    let execute_reply = message.execute_reply();
                    if execute_reply.status != ReplyStatus::Aborted {
                        run.start(execute_reply.execution_count);
                    }
                    reply = Some(execute_reply);
                }
                Channel::IoPub => match message.iopub() {
                    Ok(IoPub::Idle) => idle = true,
                    Ok(IoPub::Input { execution_count }) => run.start(execution_count),
                    Ok(IoPub::Event(event)) => {
                        run.start(None);
                        run.send(event);
                    }
                    Ok(IoPub::Other) => {}
                    Err(error) => tracing::warn!(%error, "dropped a malformed iopub message"),
                },
                _ => {}
            }
            if reply.is_some() {
                quiet.as_mut().reset(Instant::now() + iopub_timeout);
            }
        }
        Ok(reply.expect("the loop ends only once the reply has come"))
    }

    async fn control_request(
        &self,
        request: impl Into<JupyterMessage>,
        reply_type: &'static str,
        wait: Duration,
    ) -> Result<()> {
        let request = self.channels.control_request(request.into(), reply_type);
        self.guarded(async {
            timeout(wait, request).await.map_err(|_| Error::NoReply {
                request: reply_type,
                waited: wait,
            })?
        })
        .await
    }

    /// Runs `request` on the kernel's sockets, racing the process: if the kernel dies
    /// meanwhile, or the sockets fail because it is dying (a DEALER socket refuses to send
    /// once its peer is gone), the error says that the kernel died.
    async fn guarded<T>(&self, request: impl Future<Output = Result<T>>) -> Result<T> {
        let result = tokio::select! {
            biased;
            error = self.process.died() => return Err(error),
            result = request => result,
        };
        match result {
            Err(Error::Protocol(error)) => match timeout(DEATH_GRACE, self.process.died()).await {
                Ok(died) => Err(died),
                Err(_) => Err(Error::Protocol(error)),
            },
            other => other,
        }
    }

    /// Asks the kernel to shut down, and kills it if it has not within `grace`.
    async fn shutdown(&self, grace: Duration) {
        if !self.process.is_running() {
            return;
        }
        let request = async {
            let request = ShutdownRequest { restart: false };
            self.channels
                .control
                .lock()
                .await
                .send(request.into())
                .await
        };
        match timeout(grace, request).await {
            Ok(Ok(())) => self.process.stop(grace).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not send shutdown_request; killing the kernel");
                self.process.kill().await;
            }
            Err(_) => self.process.kill().await,
        }
    }
}

/// The caller's side of one execution.
struct Run {
    events: UnboundedSender<ExecEvent>,
    started: bool,
}

impl Run {
    /// `Started` goes out once, before anything else: with the count of `execute_input`, or,
    /// from a kernel that sends none, before the first output or with the reply.
    fn start(&mut self, execution_count: Option<i64>) {
        if !self.started {
            self.started = true;
            self.send(ExecEvent::Started { execution_count });
        }
    }

    fn send(&self, event: ExecEvent) {
        // A caller that stopped listening still gets the reply.
        let _ = self.events.send(event);
    }
}

/// The ZeroMQ connections to one kernel process.
struct Channels {
    shell: tokio::sync::Mutex<DealerSendConnection>,
    control: tokio::sync::Mutex<ClientControlConnection>,
    router: Router,
    readers: Vec<JoinHandle<()>>,
}

impl Channels {
    /// Connects to the kernel's sockets; each connect waits until the kernel has bound it.
    async fn connect(info: &ConnectionInfo) -> Result<Channels> {
        let session = random_hex(16)?;
        let iopub = jupyter_zmq_client::create_client_iopub_connection(info, "", &session).await?;
        let identity = jupyter_zmq_client::peer_identity_for_session(&session)?;
        let shell = jupyter_zmq_client::create_client_shell_connection_with_identity(
            info, &session, identity,
        )
        .await?;
        let control = jupyter_zmq_client::create_client_control_connection(info, &session).await?;
        let (shell_send, shell_recv) = shell.split();
        let router = Router::default();
        let readers = vec![
            router.spawn_reader(iopub, Channel::IoPub),
            router.spawn_reader(shell_recv, Channel::Shell),
        ];
        Ok(Channels {
            shell: tokio::sync::Mutex::new(shell_send),
            control: tokio::sync::Mutex::new(control),
            router,
            readers,
        })
    }

    /// Sends a shell request, its messages collected from before it leaves.
    async fn send(&self, request: impl Into<JupyterMessage>) -> Result<Pending> {
        let message: JupyterMessage = request.into();
        let pending = self.router.register(message.header.msg_id.clone());
        self.shell.lock().await.send(message).await?;
        Ok(pending)
    }

    /// `kernel_info_request` until both the reply and an iopub message for it have come: then
    /// the kernel runs and our iopub subscription is live.
    async fn handshake(&self) -> Result<KernelInfo> {
        loop {
            let mut pending = self.send(KernelInfoRequest {}).await?;
            let mut info = None;
            let mut iopub_live = false;
            let round = sleep(HANDSHAKE_ROUND);
            tokio::pin!(round);
            loop {
                tokio::select! {
                    Some(message) = pending.recv() => match message.channel {
                        Channel::IoPub => iopub_live = true,
                        Channel::Shell if message.msg_type == "kernel_info_reply" => {
                            info = Some(message.kernel_info());
                        }
                        _ => {}
                    },
                    () = &mut round => break,
                }
                if let (Some(info), true) = (&info, iopub_live) {
                    return Ok(info.clone());
                }
            }
        }
    }

    /// Sends `request` on control and waits for its reply (one control request at a time).
    async fn control_request(&self, request: JupyterMessage, reply_type: &str) -> Result<()> {
        let msg_id = request.header.msg_id.clone();
        let mut control = self.control.lock().await;
        control.send(request).await?;
        loop {
            let (parent, message) = wire::read(&mut control, Channel::Control).await?;
            if parent.as_deref() == Some(msg_id.as_str()) && message.msg_type == reply_type {
                return Ok(());
            }
        }
    }
}

// jupyter-zmq-client's connections do not implement `Debug`.
impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// `bytes` random bytes, hex-encoded: HMAC keys and session ids.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
