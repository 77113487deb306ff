//! The Pyodide kernel: a module Web Worker (`web/kernel/worker.js`) behind
//! `inloop_kernel::Kernel`, so the browser's queue drives it as the server runtime drives a
//! Jupyter kernel.
//!
//! The protocol (page to worker): `{type: 'init', interruptBuffer}` right after creation (a
//! `Uint8Array(1)` over a `SharedArrayBuffer`, or `null` when the page is not cross-origin
//! isolated), then `{type: 'execute', id, code}`. Worker to page: `{type: 'ready', kernelInfo}`
//! or `{type: 'failed', message}`; then per execution `started`, `output`, `update_display`,
//! `clear_output`, and last `reply` (`status: 'ok' | 'error'`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use inloop_doc::{JsonMap, Output};
use inloop_kernel::{ExecEvent, ExecuteReply, Kernel, KernelInfo, ReplyStatus};
use js_sys::{Object, Reflect, Uint8Array};
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Notify, oneshot};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

/// Where the kernel stands.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KernelState {
    Starting,
    Ready,
    Failed(String),
    ShutDown,
}

struct Pending {
    events: UnboundedSender<ExecEvent>,
    reply: oneshot::Sender<inloop_kernel::Result<ExecuteReply>>,
    /// The worker said `started`: it cleared the interrupt buffer before, so an interrupt
    /// written from now on reaches this execution (one written earlier would be wiped).
    started: bool,
}

/// One live worker and what keeps its handlers alive.
struct Live {
    worker: Worker,
    interrupt: Option<Uint8Array>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

/// Pyodide in a dedicated module worker.
pub(crate) struct PyodideKernel {
    url: String,
    live: RefCell<Option<Live>>,
    state: RefCell<KernelState>,
    info: RefCell<KernelInfo>,
    pending: RefCell<HashMap<String, Pending>>,
    next_id: Cell<u32>,
    /// Which worker generation messages come from: a restarted worker's stragglers are ignored.
    generation: Cell<u32>,
    /// Wakes `wait_ready`.
    state_changed: Notify,
    /// Woken on every state change (the engine's queue listens).
    wake: Rc<Notify>,
}

impl std::fmt::Debug for PyodideKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyodideKernel")
            .field("url", &self.url)
            .field("state", &*self.state.borrow())
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FromWorker {
    #[serde(rename = "type")]
    kind: String,
    /// The execution's id as we sent it (a string); `null` for output between executions.
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    execution_count: Option<i64>,
    #[serde(default)]
    output: Option<JsonMap>,
    #[serde(default)]
    display_id: Option<String>,
    #[serde(default)]
    data: Option<JsonMap>,
    #[serde(default)]
    metadata: Option<JsonMap>,
    #[serde(default)]
    wait: Option<bool>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    kernel_info: Option<WorkerKernelInfo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WorkerKernelInfo {
    language: String,
    language_version: String,
    implementation: String,
    implementation_version: String,
    banner: String,
    protocol_version: String,
    language_info: JsonMap,
}

impl PyodideKernel {
    /// Creates the worker at `url` now (Pyodide loads while the page syncs), or adopts
    /// `started`, a worker the page created from `url` before the engine loaded.
    pub(crate) fn start(url: &str, started: Option<Worker>, wake: Rc<Notify>) -> Rc<Self> {
        let kernel = Rc::new(Self {
            url: url.to_owned(),
            live: RefCell::new(None),
            state: RefCell::new(KernelState::Starting),
            info: RefCell::new(KernelInfo::default()),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            generation: Cell::new(0),
            state_changed: Notify::new(),
            wake,
        });
        kernel.spawn_worker(started);
        kernel
    }

    pub(crate) fn state(&self) -> KernelState {
        self.state.borrow().clone()
    }

    /// Whether `interrupt` can stop running code (the page is cross-origin isolated).
    pub(crate) fn can_interrupt(&self) -> bool {
        self.live
            .borrow()
            .as_ref()
            .is_some_and(|live| live.interrupt.is_some())
    }

    fn set_state(&self, state: KernelState) {
        *self.state.borrow_mut() = state;
        self.state_changed.notify_waiters();
        self.wake.notify_one();
    }

    fn spawn_worker(self: &Rc<Self>, started: Option<Worker>) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        self.set_state(KernelState::Starting);
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = match started.map_or_else(|| Worker::new_with_options(&self.url, &options), Ok)
        {
            Ok(worker) => worker,
            Err(error) => {
                let message = crate::error::js_message(&error);
                self.set_state(KernelState::Failed(format!(
                    "could not start the kernel worker {}: {message}",
                    self.url
                )));
                return;
            }
        };
        let weak = Rc::downgrade(self);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(kernel) = weak.upgrade() {
                if kernel.generation.get() == generation {
                    kernel.on_message(event.data());
                }
            }
        });
        let weak = Rc::downgrade(self);
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let Some(kernel) = weak.upgrade() else { return };
            if kernel.generation.get() != generation {
                return;
            }
            let message = event
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the worker script failed to load".into());
            kernel.fail(&format!("kernel worker {}: {message}", kernel.url));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let interrupt = interrupt_buffer();
        let init = Object::new();
        let _ = Reflect::set(&init, &"type".into(), &"init".into());
        let buffer = interrupt.clone().map_or(JsValue::NULL, JsValue::from);
        let _ = Reflect::set(&init, &"interruptBuffer".into(), &buffer);
        if let Err(error) = worker.post_message(&init) {
            let message = crate::error::js_message(&error);
            self.fail(&format!("could not start the kernel worker: {message}"));
        }
        *self.live.borrow_mut() = Some(Live {
            worker,
            interrupt,
            _on_message: on_message,
            _on_error: on_error,
        });
    }

    /// The worker failed or went away: every pending execution ends with an error.
    fn fail(&self, message: &str) {
        self.set_state(KernelState::Failed(message.to_owned()));
        self.fail_pending(|| inloop_kernel::Error::Worker(message.to_owned()));
    }

    fn fail_pending(&self, error: impl Fn() -> inloop_kernel::Error) {
        let pending: Vec<Pending> = self.pending.borrow_mut().drain().map(|(_, p)| p).collect();
        for pending in pending {
            let _ = pending.reply.send(Err(error()));
        }
    }

    fn on_message(&self, data: JsValue) {
        let message: FromWorker = match serde_wasm_bindgen::from_value(data) {
            Ok(message) => message,
            Err(error) => {
                web_sys::console::warn_1(
                    &format!("inloop: bad message from the kernel worker: {error}").into(),
                );
                return;
            }
        };
        match message.kind.as_str() {
            "ready" => {
                let info = message.kernel_info.unwrap_or_default();
                *self.info.borrow_mut() = KernelInfo {
                    language: info.language,
                    language_version: info.language_version,
                    implementation: info.implementation,
                    implementation_version: info.implementation_version,
                    banner: info.banner,
                    protocol_version: info.protocol_version,
                    language_info: info.language_info,
                };
                self.set_state(KernelState::Ready);
            }
            "failed" => {
                let reason = message.message.unwrap_or_default();
                self.fail(&format!("the Python kernel failed: {reason}"));
            }
            "reply" => {
                let id = message.id.as_ref().and_then(id_text);
                let Some(pending) = id.and_then(|id| self.pending.borrow_mut().remove(&id)) else {
                    return;
                };
                let status = match message.status.as_deref() {
                    Some("ok") => ReplyStatus::Ok,
                    Some("aborted") => ReplyStatus::Aborted,
                    _ => ReplyStatus::Error,
                };
                // Dropping `events` here ends the caller's stream after the last event.
                let _ = pending.reply.send(Ok(ExecuteReply {
                    status,
                    execution_count: message.execution_count,
                }));
            }
            kind => {
                let event = match kind {
                    "started" => ExecEvent::Started {
                        execution_count: message.execution_count,
                    },
                    "output" => match message.output.as_ref().and_then(Output::from_json) {
                        Some(output) => ExecEvent::Output(output),
                        None => return,
                    },
                    "update_display" => ExecEvent::UpdateDisplay {
                        display_id: message.display_id.unwrap_or_default(),
                        data: message.data.unwrap_or_default(),
                        metadata: message.metadata.unwrap_or_default(),
                    },
                    "clear_output" => ExecEvent::ClearOutput {
                        wait: message.wait.unwrap_or(false),
                    },
                    _ => return,
                };
                if let Some(id) = message.id.as_ref().and_then(id_text) {
                    if let Some(pending) = self.pending.borrow_mut().get_mut(&id) {
                        if matches!(event, ExecEvent::Started { .. }) {
                            pending.started = true;
                            self.wake.notify_one();
                        }
                        let _ = pending.events.send(event);
                    }
                }
            }
        }
    }

    /// Waits until the worker is ready (or failed).
    async fn wait_ready(&self) -> inloop_kernel::Result<()> {
        loop {
            // Made before the check: `notify_waiters` reaches it even before it is polled.
            let notified = self.state_changed.notified();
            match self.state() {
                KernelState::Ready => return Ok(()),
                KernelState::Failed(message) => return Err(inloop_kernel::Error::Worker(message)),
                KernelState::ShutDown => return Err(inloop_kernel::Error::ShutDown),
                KernelState::Starting => notified.await,
            }
        }
    }

    /// Whether the worker has started the execution it was given (an interrupt written before
    /// that would be wiped as stale).
    pub(crate) fn execution_started(&self) -> bool {
        self.pending.borrow().values().any(|p| p.started)
    }

    /// Writes 2 (SIGINT) into the interrupt buffer: Pyodide raises `KeyboardInterrupt` in the
    /// running code. `false` when the page has no `SharedArrayBuffer` to do it with.
    pub(crate) fn interrupt_now(&self) -> bool {
        match self
            .live
            .borrow()
            .as_ref()
            .and_then(|l| l.interrupt.clone())
        {
            Some(buffer) => js_sys::Atomics::store(&buffer, 0, 2).is_ok(),
            None => false,
        }
    }

    /// Terminates the worker and starts a fresh one (a fresh namespace, counts from 1).
    pub(crate) fn restart_now(self: &Rc<Self>) {
        self.terminate();
        self.fail_pending(|| inloop_kernel::Error::KernelDied {
            reason: "the kernel was restarted".into(),
            stderr: String::new(),
        });
        self.spawn_worker(None);
    }

    pub(crate) fn shutdown_now(&self) {
        self.terminate();
        self.generation.set(self.generation.get() + 1);
        self.set_state(KernelState::ShutDown);
        self.fail_pending(|| inloop_kernel::Error::ShutDown);
    }

    fn terminate(&self) {
        if let Some(live) = self.live.borrow_mut().take() {
            live.worker.set_onmessage(None);
            live.worker.set_onerror(None);
            live.worker.terminate();
        }
    }
}

impl Drop for PyodideKernel {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// An execution id from the worker, which may echo it as a string or a number.
fn id_text(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// A `Uint8Array(1)` over a `SharedArrayBuffer`, when the page may have one.
fn interrupt_buffer() -> Option<Uint8Array> {
    let global = js_sys::global();
    let isolated = Reflect::get(&global, &"crossOriginIsolated".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !isolated {
        return None;
    }
    let buffer = js_sys::SharedArrayBuffer::new(1);
    Some(Uint8Array::new(&buffer))
}

/// The kernel as the engine holds it: shared, so the queue can interrupt or restart it while an
/// execution waits.
#[derive(Debug, Clone)]
pub(crate) struct SharedKernel(pub(crate) Rc<PyodideKernel>);

impl Kernel for SharedKernel {
    async fn execute(
        &self,
        code: &str,
        events: UnboundedSender<ExecEvent>,
    ) -> inloop_kernel::Result<ExecuteReply> {
        let kernel = &self.0;
        kernel.wait_ready().await?;
        let number = kernel.next_id.get();
        kernel.next_id.set(number.wrapping_add(1));
        let id = number.to_string();
        let (reply, replied) = oneshot::channel();
        let message = Object::new();
        let _ = Reflect::set(&message, &"type".into(), &"execute".into());
        let _ = Reflect::set(&message, &"id".into(), &id.as_str().into());
        let _ = Reflect::set(&message, &"code".into(), &code.into());
        {
            let live = kernel.live.borrow();
            let Some(live) = live.as_ref() else {
                return Err(inloop_kernel::Error::ShutDown);
            };
            kernel.pending.borrow_mut().insert(
                id.clone(),
                Pending {
                    events,
                    reply,
                    started: false,
                },
            );
            if let Err(error) = live.worker.post_message(&message) {
                kernel.pending.borrow_mut().remove(&id);
                return Err(inloop_kernel::Error::Worker(crate::error::js_message(
                    &error,
                )));
            }
        }
        replied.await.unwrap_or(Err(inloop_kernel::Error::ShutDown))
    }

    async fn interrupt(&self) -> inloop_kernel::Result<()> {
        if self.0.interrupt_now() {
            Ok(())
        } else {
            Err(inloop_kernel::Error::Worker(
                "this page is not cross-origin isolated: no SharedArrayBuffer to interrupt with"
                    .into(),
            ))
        }
    }

    async fn restart(&self) -> inloop_kernel::Result<()> {
        self.0.restart_now();
        self.0.wait_ready().await
    }

    async fn shutdown(&self) -> inloop_kernel::Result<()> {
        self.0.shutdown_now();
        Ok(())
    }

    fn kernel_info(&self) -> KernelInfo {
        self.0.info.borrow().clone()
    }
}
