//! The runtime agent: joins a document through the relay, holds (or waits for) its runtime
//! lease, and runs the document's `server` entries in a kernel, writing outputs as they come.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inloop_client::{Client, ClientOptions, Status};
use inloop_doc::execution::{Actor, Decline, Outcome, Step};
use inloop_doc::{Execution, Notebook, Runtime, RuntimeKind, RuntimeStatus};
use inloop_kernel::{
    JupyterConfig, JupyterKernel, Kernel, KernelSpec, OutputWriter, RelayLimits, SearchPath,
};
use inloop_sync::LeaseMessage;
use tokio::sync::{Notify, mpsc};

use crate::queue::{interrupt_orphans, next_to_run};
use crate::{Error, Result};

/// What `inloop runtime` is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relay, `ws://HOST:PORT`.
    pub relay: String,
    pub doc_id: String,
    /// A `runtime` token for the document.
    pub token: String,
    /// The kernelspec to run, e.g. `python3`.
    pub kernel: String,
    /// Shown to the document's other peers.
    pub name: String,
    pub kernel_search: SearchPath,
    /// Stream text kept per cell before it is cut with a note.
    pub stream_limit: Option<usize>,
    /// How often the runtime renews its lease and its heartbeat in the document.
    pub heartbeat: Duration,
    /// Stop after this long with nothing to run (the relay's local runtimes use it).
    pub idle_exit: Option<Duration>,
    /// Run the kernel in this container image instead of on this machine.
    pub container: Option<inloop_kernel::Container>,
}

/// Seconds since the Unix epoch, as the document stores times.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The entry the kernel is running now.
struct Running {
    execution_id: String,
    interrupt_sent: bool,
    done: tokio::task::JoinHandle<()>,
}

/// Runs until `shutdown` resolves: then releases the lease, marks itself gone and stops the
/// kernel.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let url = format!(
        "{}/api/docs/{}/ws?token={}",
        config.relay.trim_end_matches('/'),
        config.doc_id,
        config.token
    );
    let client = Client::connect(&url, Notebook::new(), ClientOptions::new());
    client
        .wait_synced(Duration::from_secs(30))
        .await
        .map_err(|e| Error::Relay(e.to_string()))?;
    let spec = KernelSpec::find(&config.kernel, &config.kernel_search)?;
    let kernel_config = JupyterConfig {
        container: config.container.clone(),
        ..JupyterConfig::default()
    };
    let kernel = Arc::new(JupyterKernel::start(spec, kernel_config).await?);
    let notebook = client.notebook().clone();
    let session_id = session_id();

    let entry = Runtime {
        session_id: session_id.clone(),
        kind: RuntimeKind::Server,
        name: config.name.clone(),
        kernels: vec![config.kernel.clone()],
        gpu: crate::gpu(),
        container_image: config.container.as_ref().map(|c| c.image.clone()),
        status: RuntimeStatus::Idle,
        heartbeat_at: now(),
        lease_epoch: None,
        restart_requested_at: None,
        restarted_at: None,
    };
    notebook.register_runtime(&entry);
    client.set_presence(
        &serde_json::json!({"user": {"name": config.name}, "runtime": session_id}).to_string(),
    );

    // Every change to the queue or to our entry wakes the loop.
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let _watch = notebook.observe_runs(move || waker.notify_one());

    let mut status = client.watch_status();
    let mut lease = client.watch_lease();
    let mut seen_lease_messages = 0;
    let mut epoch: Option<u64> = None;
    let mut running: Option<Running> = None;
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<()>();
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut last_work = std::time::Instant::now();
    client.send_lease(LeaseMessage::Request {
        session: session_id.clone(),
    });
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                let now_status = status.borrow().clone();
                match now_status {
                    // Each new connection asks again: the relay forgets standbys that left.
                    Status::Synced => {
                        client.send_lease(LeaseMessage::Request { session: session_id.clone() });
                    }
                    // Refused for good (a revoked token, say): nothing more can be written.
                    Status::Closed { code, reason } => {
                        let _ = kernel.shutdown().await;
                        return Err(Error::Relay(format!(
                            "the relay closed the connection for good ({}): {reason}",
                            code.map_or("no code".into(), |c| c.to_string())
                        )));
                    }
                    _ => {}
                }
            }
            _ = lease.changed() => {
                let messages: Vec<LeaseMessage> = lease.borrow()[seen_lease_messages..].to_vec();
                seen_lease_messages += messages.len();
                for message in messages {
                    match message {
                        LeaseMessage::Granted { epoch: granted, ttl_ms } => {
                            // Renew well within the time to live the relay grants: three
                            // heartbeats per lifetime, so one late beat does not lose it.
                            let within = Duration::from_millis((ttl_ms / 3).max(100));
                            if within < heartbeat.period() {
                                let every_ms = within.as_millis() as u64;
                                tracing::info!(every_ms, "heartbeating faster: the relay's lease is short");
                                heartbeat = tokio::time::interval(within);
                                heartbeat.reset();
                            }
                            if epoch != Some(granted) {
                                tracing::info!(epoch = granted, "holding the runtime lease");
                                let here = running.as_ref().map(|r| r.execution_id.as_str());
                                interrupt_orphans(&notebook, &session_id, here, granted, now())?;
                            }
                            epoch = Some(granted);
                        }
                        LeaseMessage::Standby { epoch: holder } => {
                            tracing::info!(holder_epoch = holder, "standing by: another runtime holds the lease");
                            epoch = None;
                        }
                        LeaseMessage::Lost { reason, .. } | LeaseMessage::Denied { reason } => {
                            tracing::warn!(%reason, "not holding the runtime lease");
                            epoch = None;
                        }
                        _ => {}
                    }
                }
                // Peers show which runtime holds the lease from its entry.
                let _ = notebook.set_runtime_lease(&session_id, epoch);
            }
            _ = heartbeat.tick() => {
                if epoch.is_some() {
                    client.send_lease(LeaseMessage::Heartbeat);
                }
                let busy = if running.is_some() { RuntimeStatus::Busy } else { RuntimeStatus::Idle };
                notebook.runtime_beat(&Runtime { status: busy, heartbeat_at: now(),
                    lease_epoch: epoch, ..entry.clone() });
                notebook.forget_runtimes(now());
                if running.is_some() || next_to_run(&notebook).is_some() {
                    last_work = std::time::Instant::now();
                } else if config.idle_exit.is_some_and(|idle| last_work.elapsed() >= idle) {
                    tracing::info!("nothing to run for a while; stopping");
                    break;
                }
            }
            Some(()) = finished.recv() => {
                running = None;
            }
            _ = wake.notified() => {}
        }

        // Interrupts and restarts asked for through the document.
        if let Some(current) = &mut running {
            let asked = notebook
                .execution(&current.execution_id)
                .is_ok_and(|e| e.interrupt_requested_at.is_some());
            if asked && !current.interrupt_sent {
                current.interrupt_sent = true;
                kernel.interrupt().await?;
            }
        }
        if let Some(me) = notebook
            .runtimes()
            .into_iter()
            .find(|r| r.session_id == session_id)
        {
            if me.restart_pending() {
                // The run the restart cuts short ends here: its task never will.
                if let Some(current) = running.take() {
                    current.done.abort();
                    let id = &current.execution_id;
                    let ended = notebook.finish_execution(
                        id,
                        &session_id,
                        epoch,
                        Outcome::Restarted,
                        now(),
                    );
                    if let Err(error) = ended {
                        tracing::warn!(%error, "could not end the run the restart stopped");
                    }
                }
                kernel.restart().await?;
                notebook.mark_restarted(&session_id, now())?;
                // A fresh namespace.
                let _ = notebook.set_runtime_variables(&session_id, &serde_json::json!([]), now());
            }
        }

        // New entries only while connected and holding the lease: a runtime cut off from the
        // relay may have lost it without knowing.
        let connected = *status.borrow() == Status::Synced;
        if let (Some(epoch), true, None) = (epoch, connected, &running) {
            if let Some(entry) = next_to_run(&notebook) {
                // The relay lets only execute tokens write the queue; this is the second wall:
                // code someone changed after the request is never run as the requester's.
                let actor = Actor::runtime(&session_id, Some(epoch));
                if !notebook.execution_code_is_original(&entry.id)? {
                    tracing::warn!(exec_id = %entry.id, "refused a run whose code was changed after the request");
                    notebook.advance_execution(
                        &entry.id,
                        &actor,
                        &Step::Decline(Decline::CodeChanged),
                        now(),
                    )?;
                    continue;
                }
                notebook.start_execution(&entry.id, &session_id, Some(epoch), now())?;
                let execution_id = entry.id.clone();
                let writer = OutputWriter::new(config.stream_limit);
                // The relay's size limits: outputs are kept within them.
                let limits = client.relay_limits().and_then(|l| {
                    RelayLimits::from_relay(l.max_document_bytes, l.max_message_bytes)
                });
                let writer = match limits {
                    Some(limits) => writer.with_relay_limits(limits),
                    None => writer,
                };
                let done = tokio::spawn(run_entry(
                    kernel.clone(),
                    notebook.clone(),
                    session_id.clone(),
                    entry,
                    epoch,
                    writer,
                    finished_tx.clone(),
                ));
                running = Some(Running {
                    execution_id,
                    interrupt_sent: false,
                    done,
                });
            }
        }
    }

    if epoch.is_some() {
        client.send_lease(LeaseMessage::Release);
    }
    let _ = notebook.runtime_heartbeat(&session_id, Some(RuntimeStatus::Gone), now());
    let _ = kernel.shutdown().await;
    // Let the last changes reach the relay.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Runs one entry in the kernel, writing its outputs as they arrive, then ends it.
async fn run_entry(
    kernel: Arc<JupyterKernel>,
    notebook: Notebook,
    session_id: String,
    entry: Execution,
    epoch: u64,
    mut writer: OutputWriter,
    finished: mpsc::UnboundedSender<()>,
) {
    let run = inloop_kernel::run_in_cell(
        &*kernel,
        &notebook,
        &entry.cell_id,
        &entry.code,
        &mut writer,
        |_| {},
    )
    .await;
    if let Some(error) = run.write_error {
        tracing::warn!(%error, cell_id = entry.cell_id, "could not write an output");
    }
    if matches!(run.outcome, Outcome::KernelDied { .. }) {
        // A fresh kernel for the next entry.
        let _ = kernel.restart().await;
    }
    let ended = notebook.finish_execution(&entry.id, &session_id, Some(epoch), run.outcome, now());
    if let Err(error) = ended {
        tracing::warn!(%error, execution_id = entry.id, "could not end the entry");
    }
    // Peers without the kernel (an agent's notebook_get_state, say) see its variables as they
    // are after a run. Read only when no other run waits, so runs in a row are not slowed.
    if next_to_run(&notebook).is_none() && kernel.kernel_info().language == "python" {
        publish_variables(&kernel, &notebook, &session_id).await;
    }
    let _ = finished.send(());
}

/// How long reading the variables may take before it is given up (a huge repr, say).
const VARIABLES_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the kernel's variables and writes them into this runtime's entry.
async fn publish_variables(kernel: &JupyterKernel, notebook: &Notebook, session_id: &str) {
    match tokio::time::timeout(VARIABLES_TIMEOUT, inloop_kernel::read_variables(kernel)).await {
        Ok(Ok(variables)) => {
            let _ = notebook.set_runtime_variables(session_id, &variables, now());
        }
        Ok(Err(error)) => tracing::debug!(%error, "the kernel's variables were not read"),
        Err(_) => {
            tracing::warn!("reading the kernel's variables took too long; interrupting it");
            let _ = kernel.interrupt().await;
        }
    }
}

/// A session id for this run of the runtime: random, so two runtimes never share one.
fn session_id() -> String {
    format!("rt-{:016x}", fastrand::u64(..))
}
