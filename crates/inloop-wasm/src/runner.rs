//! This browser as a runtime: it runs the entries of `executions` that target it, one at a time
//! in request order, in its Pyodide kernel, and writes their outputs into the document as the
//! server runtime does (`inloop-runtime`'s agent), with no lease (browsers pass `None`).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use inloop_doc::execution::{Abandoned, Actor, Decline, Outcome, Step, browser_session};
use inloop_doc::{
    Execution, ExecutionStatus, ExecutionTarget, Runtime, RuntimeKind, RuntimeStatus,
};
use inloop_kernel::{OutputWriter, RelayLimits};
use tokio::sync::Notify;

use crate::engine::Inner;
use crate::kernel::{KernelState, SharedKernel};

/// How long an interrupt may go unanswered before it is written again.
const INTERRUPT_RETRY_S: f64 = 1.0;

/// How often the runtime entry's heartbeat is written while registered.
const HEARTBEAT_MS: u32 = 15_000;

/// A browser runtime silent for this long is gone (its tab crashed or lost its network without
/// a `pagehide`): the other browsers end the runs it held.
const ABANDONED_AFTER_S: f64 = 3.0 * HEARTBEAT_MS as f64 / 1000.0;

/// Seconds since the Unix epoch, as the server runtime stamps the document.
pub(crate) fn now() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// A request time for a new entry: the clock, but always after this engine's previous request,
/// so two runs asked for within one millisecond keep their order (entries run in
/// `requested_at` order, ties broken by their random ids).
pub(crate) fn request_time(runner: &Runner) -> f64 {
    let previous = runner.last_request.get();
    let time = now().max(previous + 1e-6);
    runner.last_request.set(time);
    time
}

/// The entry the kernel is running now.
#[derive(Debug)]
struct Running {
    execution_id: String,
    interrupt_sent: bool,
    /// When the interrupt was last written (seconds), to write it again while the code runs on.
    interrupt_written_at: f64,
    /// Wakes the queue for that.
    interrupt_retry: Option<gloo_timers::callback::Timeout>,
}

/// The queue's state; the loop itself is a task woken through `wake`.
#[derive(Debug)]
pub(crate) struct Runner {
    pub(crate) session_id: String,
    pub(crate) target: ExecutionTarget,
    wake: Rc<Notify>,
    registered: Cell<bool>,
    reported: Cell<Option<RuntimeStatus>>,
    running: RefCell<Option<Running>>,
    heartbeat: RefCell<Option<gloo_timers::callback::Interval>>,
    last_request: Cell<f64>,
    /// The relay's size limits (from the open options, then from the relay itself).
    limits: Cell<Option<RelayLimits>>,
}

impl Runner {
    pub(crate) fn new(client_id: u64, wake: Rc<Notify>, limits: Option<RelayLimits>) -> Self {
        Self {
            session_id: browser_session(client_id),
            target: ExecutionTarget::Browser(client_id.to_string()),
            wake,
            registered: Cell::new(false),
            reported: Cell::new(None),
            running: RefCell::new(None),
            heartbeat: RefCell::new(None),
            last_request: Cell::new(0.0),
            limits: Cell::new(limits),
        }
    }

    /// Keeps the outputs of later runs within `limits`, the relay's.
    pub(crate) fn set_limits(&self, limits: Option<RelayLimits>) {
        if limits.is_some() {
            self.limits.set(limits);
        }
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the queue's loop.
pub(crate) fn start(inner: &Rc<Inner>) {
    let weak = Rc::downgrade(inner);
    let wake = inner.runner.wake.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            wake.notified().await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.get() {
                return;
            }
            tick(&inner);
            inner.deliver_soon();
        }
    });
    inner.runner.wake();
}

/// Registers this browser in `runtimes` (kind `browser`) and starts its heartbeat. Done on the
/// first run it is asked for, not on open: a peer with an edit-only token may not register.
pub(crate) fn ensure_registered(inner: &Rc<Inner>) {
    let runner = &inner.runner;
    if runner.registered.replace(true) {
        return;
    }
    register(inner);
    let weak = Rc::downgrade(inner);
    let heartbeat = gloo_timers::callback::Interval::new(HEARTBEAT_MS, move || {
        if let Some(inner) = weak.upgrade() {
            // Back in if a peer forgot it while this page was away (asleep, say).
            inner.notebook.runtime_beat(&runtime_entry(&inner));
            inner.runner.reported.set(Some(kernel_status(&inner)));
            end_abandoned_runs(&inner.notebook, &inner.runner.session_id, now());
            inner.notebook.forget_runtimes(now());
            inner.deliver_soon();
        }
    });
    *runner.heartbeat.borrow_mut() = Some(heartbeat);
}

/// This browser's entry in `runtimes`, as it is now.
fn register(inner: &Inner) {
    inner.notebook.register_runtime(&runtime_entry(inner));
    inner.runner.reported.set(Some(kernel_status(inner)));
}

/// This browser as a runtime entry, as it is now.
fn runtime_entry(inner: &Inner) -> Runtime {
    Runtime {
        session_id: inner.runner.session_id.clone(),
        kind: RuntimeKind::Browser,
        name: inner.name.clone(),
        kernels: vec!["python3".into()],
        gpu: None,
        container_image: None,
        status: kernel_status(inner),
        heartbeat_at: now(),
        lease_epoch: None,
        restart_requested_at: None,
        restarted_at: None,
    }
}

/// Ends the runs held by browsers that went away without saying so: no entry stays queued or
/// running forever for a tab that crashed. Only registered browsers call this (they may run
/// cells, so the relay lets them write the queue); several doing it at once write the same.
fn end_abandoned_runs(notebook: &inloop_doc::Notebook, own_session: &str, now: f64) {
    let live = notebook.executions_in(&[ExecutionStatus::Queued, ExecutionStatus::Running]);
    let others: Vec<_> = live
        .into_iter()
        .filter_map(|e| match &e.target {
            ExecutionTarget::Browser(client) if browser_session(client) != own_session => {
                Some((browser_session(client), e))
            }
            _ => None,
        })
        .collect();
    if others.is_empty() {
        return;
    }
    let runtimes = notebook.runtimes();
    let actor = Actor::runtime(own_session, None);
    for (session, entry) in others {
        let last_seen =
            runtimes
                .iter()
                .find(|r| r.session_id == session)
                .map_or(entry.requested_at, |r| {
                    if r.status == RuntimeStatus::Gone {
                        f64::MIN
                    } else {
                        r.heartbeat_at
                    }
                });
        if now - last_seen < ABANDONED_AFTER_S {
            continue;
        }
        let step = Step::Reclaim(Abandoned::TabGone);
        let _ = notebook.advance_execution(&entry.id, &actor, &step, now);
    }
}

/// What this runtime is doing, as its entry says.
fn kernel_status(inner: &Inner) -> RuntimeStatus {
    let Some(kernel) = &inner.kernel else {
        return RuntimeStatus::Gone;
    };
    match kernel.state() {
        KernelState::Starting => RuntimeStatus::Starting,
        KernelState::Ready if inner.runner.running.borrow().is_some() => RuntimeStatus::Busy,
        KernelState::Ready => RuntimeStatus::Idle,
        KernelState::Failed(_) | KernelState::ShutDown => RuntimeStatus::Gone,
    }
}

/// Marks the runtime gone and stops the heartbeat (the engine's `close`).
pub(crate) fn stop(inner: &Inner) {
    if let Some(heartbeat) = inner.runner.heartbeat.borrow_mut().take() {
        heartbeat.cancel();
    }
    leave(inner);
}

/// The page is going away (closed, or `pagehide`): nobody will run this browser's entries, so
/// they end now rather than stay queued or running forever, and the runtime entry says `gone`.
/// A page restored from the back-forward cache comes back to `idle` with its next heartbeat.
pub(crate) fn leave(inner: &Inner) {
    let runner = &inner.runner;
    if !runner.registered.get() {
        return;
    }
    let notebook = &inner.notebook;
    let live = notebook.executions_in(&[ExecutionStatus::Queued, ExecutionStatus::Running]);
    let actor = Actor::runtime(&runner.session_id, None);
    let step = Step::Reclaim(Abandoned::PageClosed);
    for entry in live.into_iter().filter(|e| e.target == runner.target) {
        let _ = notebook.advance_execution(&entry.id, &actor, &step, now());
    }
    let _ = notebook.runtime_heartbeat(&runner.session_id, Some(RuntimeStatus::Gone), now());
    runner.reported.set(Some(RuntimeStatus::Gone));
}

/// One look at the document: restarts and interrupts asked for, then the next entry.
fn tick(inner: &Rc<Inner>) {
    let runner = &inner.runner;
    let Some(kernel) = inner.kernel.clone() else {
        return;
    };
    let notebook = &inner.notebook;

    if runner.registered.get() {
        // Restarts asked for through the document (by this page or another).
        let me = notebook
            .runtimes()
            .into_iter()
            .find(|r| r.session_id == runner.session_id);
        if let Some(me) = me {
            if me.restart_pending() {
                let _ = notebook.runtime_heartbeat(
                    &runner.session_id,
                    Some(RuntimeStatus::Restarting),
                    now(),
                );
                // The run the restart cuts short ends now, as a restart ends it.
                if let Some(current) = runner.running.borrow_mut().take() {
                    let actor = Actor::runtime(&runner.session_id, None);
                    let step = Step::Finish(Outcome::Restarted);
                    let _ = notebook.advance_execution(&current.execution_id, &actor, &step, now());
                }
                kernel.restart_now();
                let _ = notebook.mark_restarted(&runner.session_id, now());
            }
        }
    }

    // Interrupts asked for through the document.
    let mut restart_for_interrupt = false;
    if let Some(current) = runner.running.borrow_mut().as_mut() {
        let asked = notebook
            .execution(&current.execution_id)
            .is_ok_and(|e| e.interrupt_requested_at.is_some());
        // With a SharedArrayBuffer, wait for the worker's `started` (it clears the buffer just
        // before, so an earlier write would be lost); the message wakes this loop. Without one,
        // the only way to stop Python is a new worker.
        let can_write = kernel.can_interrupt();
        let due = !current.interrupt_sent
            || (can_write && now() - current.interrupt_written_at >= INTERRUPT_RETRY_S * 0.9);
        if asked && due && (!can_write || kernel.execution_started()) {
            current.interrupt_sent = true;
            current.interrupt_written_at = now();
            restart_for_interrupt = !kernel.interrupt_now();
            if !restart_for_interrupt {
                // Again in a moment if the code still runs (a stretch of Python that does not
                // look at the buffer, or a write that raced the worker's own clearing).
                let wake = runner.wake.clone();
                let retry = gloo_timers::callback::Timeout::new(
                    (INTERRUPT_RETRY_S * 1000.0) as u32,
                    move || wake.notify_one(),
                );
                current.interrupt_retry = Some(retry);
            }
        }
    }
    if restart_for_interrupt {
        kernel.restart_now();
    }

    // The runtime entry follows the kernel.
    if runner.registered.get() {
        let status = kernel_status(inner);
        if runner.reported.get() != Some(status) {
            runner.reported.set(Some(status));
            let _ = notebook.runtime_heartbeat(&runner.session_id, Some(status), now());
        }
    }

    // The next entry, once the kernel is up and nothing runs.
    if runner.running.borrow().is_some() {
        return;
    }
    match kernel.state() {
        KernelState::Ready => {}
        KernelState::Failed(message) => {
            // No kernel to run them: end this browser's queued entries with the reason.
            let actor = Actor::runtime(&runner.session_id, None);
            let step = Step::Decline(Decline::NoKernel(message));
            for entry in notebook.queued_executions(&runner.target) {
                let _ = notebook.advance_execution(&entry.id, &actor, &step, now());
            }
            return;
        }
        KernelState::Starting | KernelState::ShutDown => return,
    }
    let Some(entry) = notebook
        .queued_executions(&runner.target)
        .into_iter()
        .next()
    else {
        return;
    };
    if notebook
        .start_execution(&entry.id, &runner.session_id, None, now())
        .is_err()
    {
        return;
    }
    *runner.running.borrow_mut() = Some(Running {
        execution_id: entry.id.clone(),
        interrupt_sent: false,
        interrupt_written_at: 0.0,
        interrupt_retry: None,
    });
    let status = kernel_status(inner);
    if runner.registered.get() && runner.reported.get() != Some(status) {
        runner.reported.set(Some(status));
        let _ = notebook.runtime_heartbeat(&runner.session_id, Some(status), now());
    }
    wasm_bindgen_futures::spawn_local(run_entry(Rc::downgrade(inner), SharedKernel(kernel), entry));
}

/// Runs one entry, writing its outputs as they arrive, then ends it.
async fn run_entry(weak: Weak<Inner>, kernel: SharedKernel, entry: Execution) {
    let Some((notebook, limits, session)) = weak.upgrade().map(|inner| {
        let runner = &inner.runner;
        (
            inner.notebook.clone(),
            runner.limits.get(),
            runner.session_id.clone(),
        )
    }) else {
        return;
    };
    let mut writer = match limits {
        Some(limits) => OutputWriter::default().with_relay_limits(limits),
        None => OutputWriter::default(),
    };
    let deliver = || {
        if let Some(inner) = weak.upgrade() {
            inner.deliver_soon();
        }
    };
    let run = inloop_kernel::run_in_cell(
        &kernel,
        &notebook,
        &entry.cell_id,
        &entry.code,
        &mut writer,
        |_| deliver(),
    )
    .await;
    if let Some(error) = run.write_error {
        web_sys::console::warn_1(&format!("inloop: could not write an output: {error}").into());
    }
    let Some(inner) = weak.upgrade() else { return };
    if inner.closed.get() {
        return; // `close` ended the entry already
    }
    // Still this entry's turn? A restart may have ended it and the next one may be running.
    let mine = {
        let mut running = inner.runner.running.borrow_mut();
        let mine = running.as_ref().is_some_and(|r| r.execution_id == entry.id);
        if mine {
            running.take();
        }
        mine
    };
    if mine {
        let actor = Actor::runtime(&session, None);
        let step = Step::Finish(run.outcome);
        if let Err(error) = notebook.advance_execution(&entry.id, &actor, &step, now()) {
            web_sys::console::warn_1(&format!("inloop: could not end the run: {error}").into());
        }
    }
    inner.runner.wake();
    inner.deliver_soon();
}

#[cfg(test)]
mod tests {
    use inloop_doc::{CellType, Notebook};

    use super::*;

    fn browser_runtime(client: &str, heartbeat_at: f64) -> Runtime {
        Runtime {
            session_id: browser_session(client),
            kind: RuntimeKind::Browser,
            name: client.into(),
            kernels: vec!["python3".into()],
            gpu: None,
            container_image: None,
            status: RuntimeStatus::Idle,
            heartbeat_at,
            lease_epoch: None,
            restart_requested_at: None,
            restarted_at: None,
        }
    }

    #[test]
    fn runs_of_browsers_that_went_silent_are_ended_by_the_others() {
        let notebook = Notebook::blank();
        let cell = notebook.push_cell(CellType::Code, "1").unwrap();
        let browser = |client: &str| ExecutionTarget::Browser(client.into());
        let silent_running = notebook
            .request_execution(&cell, &browser("7"), "p", 0.0)
            .unwrap();
        notebook
            .start_execution(&silent_running, &browser_session(7), None, 1.0)
            .unwrap();
        let silent_queued = notebook
            .request_execution(&cell, &browser("7"), "p", 2.0)
            .unwrap();
        let alive = notebook
            .request_execution(&cell, &browser("8"), "p", 3.0)
            .unwrap();
        let unregistered_new = notebook
            .request_execution(&cell, &browser("6"), "p", 90.0)
            .unwrap();
        let own = notebook
            .request_execution(&cell, &browser("9"), "p", 4.0)
            .unwrap();
        notebook.register_runtime(&browser_runtime("7", 50.0));
        notebook.register_runtime(&browser_runtime("8", 95.0));

        end_abandoned_runs(&notebook, &browser_session(9), 100.0);
        let status = |id: &str| notebook.execution(id).unwrap().status;
        assert_eq!(status(&silent_running), ExecutionStatus::Interrupted);
        assert_eq!(status(&silent_queued), ExecutionStatus::Cancelled);
        assert_eq!(
            notebook
                .execution(&silent_queued)
                .unwrap()
                .message
                .as_deref(),
            Some("cancelled: the browser tab that was to run it went away")
        );
        assert_eq!(
            status(&alive),
            ExecutionStatus::Queued,
            "its heartbeat is 5 s old"
        );
        assert_eq!(
            status(&unregistered_new),
            ExecutionStatus::Queued,
            "asked for 10 s ago"
        );
        assert_eq!(status(&own), ExecutionStatus::Queued, "this browser's own");
    }
}
