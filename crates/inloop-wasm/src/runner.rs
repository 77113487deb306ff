//! This browser as a runtime: it runs the entries of `executions` that target it, one at a time
//! in request order, in its Pyodide kernel, and writes their outputs into the document as the
//! server runtime does (`inloop-runtime`'s agent), with no lease (browsers pass `None`).
//!
//! It sits above the document and the kernel and knows nothing of sync or storage: it reads and
//! writes the notebook, and says through `changed` when it did so outside any call from the
//! page (a kernel message, a timer), for the engine to deliver the events.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use inloop_doc::execution::{Abandoned, Actor, Decline, Outcome, Step, browser_session};
use inloop_doc::placement::Target;
use inloop_doc::{
    Execution, ExecutionStatus, ExecutionTarget, Notebook, Runtime, RuntimeKind, RuntimeStatus,
};
use inloop_kernel::{OutputWriter, RelayLimits};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::kernel::{KernelState, PyodideKernel, SharedKernel};

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

/// This browser's runtime: its queue's state; the loop itself is a task woken through `wake`
/// (by the document's queue observer, the kernel, timers). Tasks and timers hold `Weak`s.
pub(crate) struct Runner {
    notebook: Notebook,
    kernel: Option<Rc<PyodideKernel>>,
    /// Who requests runs, and the runtime's name.
    name: String,
    session_id: String,
    target: ExecutionTarget,
    wake: Rc<Notify>,
    registered: Cell<bool>,
    reported: Cell<Option<RuntimeStatus>>,
    running: RefCell<Option<Running>>,
    heartbeat: RefCell<Option<gloo_timers::callback::Interval>>,
    last_request: Cell<f64>,
    /// The relay's size limits (from the open options, then from the relay itself).
    limits: Cell<Option<RelayLimits>>,
    closed: Cell<bool>,
    /// Called after the runner changed the document outside any call from the page.
    changed: Box<dyn Fn()>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("session_id", &self.session_id)
            .field("registered", &self.registered.get())
            .field("running", &*self.running.borrow())
            .finish()
    }
}

impl Runner {
    /// The runtime of `notebook`'s replica, running in `kernel` (`None`: it runs nothing), which
    /// wakes `wake` on every change of state.
    pub(crate) fn new(
        notebook: Notebook,
        kernel: Option<Rc<PyodideKernel>>,
        wake: Rc<Notify>,
        name: String,
        limits: Option<RelayLimits>,
        changed: Box<dyn Fn()>,
    ) -> Rc<Self> {
        let client_id = notebook.client_id();
        Rc::new(Self {
            notebook,
            kernel,
            name,
            session_id: browser_session(client_id),
            target: ExecutionTarget::Browser(client_id.to_string()),
            wake,
            registered: Cell::new(false),
            reported: Cell::new(None),
            running: RefCell::new(None),
            heartbeat: RefCell::new(None),
            last_request: Cell::new(0.0),
            limits: Cell::new(limits),
            closed: Cell::new(false),
            changed,
        })
    }

    /// This runtime's session id (`browser-<clientId>`).
    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The kernel's state; `None` without a kernel.
    pub(crate) fn kernel_state(&self) -> Option<KernelState> {
        self.kernel.as_ref().map(|k| k.state())
    }

    /// Whether interrupts reach running code (the page is cross-origin isolated).
    pub(crate) fn can_interrupt(&self) -> bool {
        self.kernel.as_ref().is_some_and(|k| k.can_interrupt())
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

    /// Starts the queue's loop.
    pub(crate) fn start(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let wake = self.wake.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                wake.notified().await;
                let Some(runner) = weak.upgrade() else { return };
                if runner.closed.get() {
                    return;
                }
                runner.tick();
                (runner.changed)();
            }
        });
        self.wake();
    }

    /// Queues a run of a code cell on `target`: this browser (registering it as a runtime) or
    /// the server. Returns the entry's id.
    pub(crate) fn request(self: &Rc<Self>, cell_id: &str, target: Target) -> Result<String> {
        let target = match target {
            Target::Browser => self.target.clone(),
            Target::Server => ExecutionTarget::Server,
        };
        if target != ExecutionTarget::Server {
            if self.kernel.is_none() {
                return Err(Error::Argument(
                    "this engine was opened without a kernel worker (worker: null)".into(),
                ));
            }
            self.ensure_registered();
        }
        let now = self.request_time();
        let id = self
            .notebook
            .request_execution(cell_id, &target, &self.name, now)?;
        self.wake();
        Ok(id)
    }

    /// Asks this browser's kernel to restart, through the document like any peer's request.
    pub(crate) fn request_restart(self: &Rc<Self>) -> Result<()> {
        if self.kernel.is_none() {
            return Err(Error::Argument("this engine has no kernel worker".into()));
        }
        self.ensure_registered();
        self.notebook.request_restart(&self.session_id, now())?;
        self.wake();
        Ok(())
    }

    /// A request time for a new entry: the clock, but always after this runtime's previous
    /// request, so two runs asked for within one millisecond keep their order (entries run in
    /// `requested_at` order, ties broken by their random ids).
    fn request_time(&self) -> f64 {
        let previous = self.last_request.get();
        let time = now().max(previous + 1e-6);
        self.last_request.set(time);
        time
    }

    /// Registers this browser in `runtimes` (kind `browser`) and starts its heartbeat. Done on
    /// the first run it is asked for, not on open: a peer with an edit-only token may not
    /// register.
    fn ensure_registered(self: &Rc<Self>) {
        if self.registered.replace(true) {
            return;
        }
        self.notebook.register_runtime(&self.runtime_entry());
        self.reported.set(Some(self.kernel_status()));
        let weak = Rc::downgrade(self);
        let heartbeat = gloo_timers::callback::Interval::new(HEARTBEAT_MS, move || {
            if let Some(runner) = weak.upgrade() {
                // Back in if a peer forgot it while this page was away (asleep, say).
                runner.notebook.runtime_beat(&runner.runtime_entry());
                runner.reported.set(Some(runner.kernel_status()));
                end_abandoned_runs(&runner.notebook, &runner.session_id, now());
                runner.notebook.forget_runtimes(now());
                (runner.changed)();
            }
        });
        *self.heartbeat.borrow_mut() = Some(heartbeat);
    }

    /// This browser as a runtime entry, as it is now.
    fn runtime_entry(&self) -> Runtime {
        Runtime {
            session_id: self.session_id.clone(),
            kind: RuntimeKind::Browser,
            name: self.name.clone(),
            kernels: vec!["python3".into()],
            gpu: None,
            container_image: None,
            status: self.kernel_status(),
            heartbeat_at: now(),
            lease_epoch: None,
            restart_requested_at: None,
            restarted_at: None,
        }
    }

    /// What this runtime is doing, as its entry says.
    fn kernel_status(&self) -> RuntimeStatus {
        let Some(kernel) = &self.kernel else {
            return RuntimeStatus::Gone;
        };
        match kernel.state() {
            KernelState::Starting => RuntimeStatus::Starting,
            KernelState::Ready if self.running.borrow().is_some() => RuntimeStatus::Busy,
            KernelState::Ready => RuntimeStatus::Idle,
            KernelState::Failed(_) | KernelState::ShutDown => RuntimeStatus::Gone,
        }
    }

    /// Marks the runtime gone and stops the heartbeat (the first step of the engine's `close`).
    pub(crate) fn stop(&self) {
        if let Some(heartbeat) = self.heartbeat.borrow_mut().take() {
            heartbeat.cancel();
        }
        self.leave();
    }

    /// Ends the runner for good (after `stop`): the kernel shuts down, the loop ends, a run
    /// still under way writes nothing more.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        if let Some(kernel) = &self.kernel {
            kernel.shutdown_now();
        }
        // Lets the queue's task see that the runner is closed and end.
        self.wake();
    }

    /// The page is going away (closed, or `pagehide`): nobody will run this browser's entries,
    /// so they end now rather than stay queued or running forever, and the runtime entry says
    /// `gone`. A page restored from the back-forward cache comes back to `idle` with its next
    /// heartbeat.
    pub(crate) fn leave(&self) {
        if !self.registered.get() {
            return;
        }
        let notebook = &self.notebook;
        let live = notebook.executions_in(&[ExecutionStatus::Queued, ExecutionStatus::Running]);
        let actor = Actor::runtime(&self.session_id, None);
        let step = Step::Reclaim(Abandoned::PageClosed);
        for entry in live.into_iter().filter(|e| e.target == self.target) {
            let _ = notebook.advance_execution(&entry.id, &actor, &step, now());
        }
        let _ = notebook.runtime_heartbeat(&self.session_id, Some(RuntimeStatus::Gone), now());
        self.reported.set(Some(RuntimeStatus::Gone));
    }

    /// One look at the document: restarts and interrupts asked for, then the next entry.
    fn tick(self: &Rc<Self>) {
        let Some(kernel) = self.kernel.clone() else {
            return;
        };
        let notebook = &self.notebook;

        if self.registered.get() {
            // Restarts asked for through the document (by this page or another).
            let me = notebook
                .runtimes()
                .into_iter()
                .find(|r| r.session_id == self.session_id);
            if let Some(me) = me {
                if me.restart_pending() {
                    let _ = notebook.runtime_heartbeat(
                        &self.session_id,
                        Some(RuntimeStatus::Restarting),
                        now(),
                    );
                    // The run the restart cuts short ends now, as a restart ends it.
                    if let Some(current) = self.running.borrow_mut().take() {
                        let (id, session) = (&current.execution_id, &self.session_id);
                        let _ =
                            notebook.finish_execution(id, session, None, Outcome::Restarted, now());
                    }
                    kernel.restart_now();
                    let _ = notebook.mark_restarted(&self.session_id, now());
                }
            }
        }

        // Interrupts asked for through the document.
        let mut restart_for_interrupt = false;
        if let Some(current) = self.running.borrow_mut().as_mut() {
            let asked = notebook
                .execution(&current.execution_id)
                .is_ok_and(|e| e.interrupt_requested_at.is_some());
            // With a SharedArrayBuffer, wait for the worker's `started` (it clears the buffer
            // just before, so an earlier write would be lost); the message wakes this loop.
            // Without one, the only way to stop Python is a new worker.
            let can_write = kernel.can_interrupt();
            let due = !current.interrupt_sent
                || (can_write && now() - current.interrupt_written_at >= INTERRUPT_RETRY_S * 0.9);
            if asked && due && (!can_write || kernel.execution_started()) {
                current.interrupt_sent = true;
                current.interrupt_written_at = now();
                restart_for_interrupt = !kernel.interrupt_now();
                if !restart_for_interrupt {
                    // Again in a moment if the code still runs (a stretch of Python that does
                    // not look at the buffer, or a write that raced the worker's own clearing).
                    let wake = self.wake.clone();
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
        if self.registered.get() {
            let status = self.kernel_status();
            if self.reported.get() != Some(status) {
                self.reported.set(Some(status));
                let _ = notebook.runtime_heartbeat(&self.session_id, Some(status), now());
            }
        }

        // The next entry, once the kernel is up and nothing runs.
        if self.running.borrow().is_some() {
            return;
        }
        match kernel.state() {
            KernelState::Ready => {}
            KernelState::Failed(message) => {
                // No kernel to run them: end this browser's queued entries with the reason.
                let actor = Actor::runtime(&self.session_id, None);
                let step = Step::Decline(Decline::NoKernel(message));
                for entry in notebook.queued_executions(&self.target) {
                    let _ = notebook.advance_execution(&entry.id, &actor, &step, now());
                }
                return;
            }
            KernelState::Starting | KernelState::ShutDown => return,
        }
        let Some(entry) = notebook.queued_executions(&self.target).into_iter().next() else {
            return;
        };
        if notebook
            .start_execution(&entry.id, &self.session_id, None, now())
            .is_err()
        {
            return;
        }
        *self.running.borrow_mut() = Some(Running {
            execution_id: entry.id.clone(),
            interrupt_sent: false,
            interrupt_written_at: 0.0,
            interrupt_retry: None,
        });
        let status = self.kernel_status();
        if self.registered.get() && self.reported.get() != Some(status) {
            self.reported.set(Some(status));
            let _ = notebook.runtime_heartbeat(&self.session_id, Some(status), now());
        }
        wasm_bindgen_futures::spawn_local(run_entry(
            Rc::downgrade(self),
            SharedKernel(kernel),
            entry,
        ));
    }
}

/// Ends the runs held by browsers that went away without saying so: no entry stays queued or
/// running forever for a tab that crashed. Only registered browsers call this (they may run
/// cells, so the relay lets them write the queue); several doing it at once write the same.
fn end_abandoned_runs(notebook: &Notebook, own_session: &str, now: f64) {
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

/// Runs one entry, writing its outputs as they arrive, then ends it.
async fn run_entry(weak: Weak<Runner>, kernel: SharedKernel, entry: Execution) {
    let Some((notebook, limits, session)) = weak.upgrade().map(|runner| {
        (
            runner.notebook.clone(),
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
    let changed = || {
        if let Some(runner) = weak.upgrade() {
            (runner.changed)();
        }
    };
    let run = inloop_kernel::run_in_cell(
        &kernel,
        &notebook,
        &entry.cell_id,
        &entry.code,
        &mut writer,
        |_| changed(),
    )
    .await;
    if let Some(error) = run.write_error {
        web_sys::console::warn_1(&format!("inloop: could not write an output: {error}").into());
    }
    let Some(runner) = weak.upgrade() else { return };
    if runner.closed.get() {
        return; // `close` ended the entry already
    }
    // Still this entry's turn? A restart may have ended it and the next one may be running.
    let mine = {
        let mut running = runner.running.borrow_mut();
        let mine = running.as_ref().is_some_and(|r| r.execution_id == entry.id);
        if mine {
            running.take();
        }
        mine
    };
    if mine {
        let ended = notebook.finish_execution(&entry.id, &session, None, run.outcome, now());
        if let Err(error) = ended {
            web_sys::console::warn_1(&format!("inloop: could not end the run: {error}").into());
        }
    }
    runner.wake();
    (runner.changed)();
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

#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests {
    use inloop_doc::CellType;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::testing::{fake_worker_url, wait_for};

    /// A started runner over a new notebook, counting the times it said it changed it.
    fn runner(worker: Option<&str>) -> (Notebook, Rc<Runner>, Rc<Cell<u32>>) {
        let notebook = Notebook::new();
        let wake = Rc::new(Notify::new());
        let kernel = worker.map(|url| PyodideKernel::start(url, None, wake.clone()));
        let changed = Rc::new(Cell::new(0));
        let count = changed.clone();
        let runner = Runner::new(
            notebook.clone(),
            kernel,
            wake,
            "tester".into(),
            None,
            Box::new(move || count.set(count.get() + 1)),
        );
        runner.start();
        (notebook, runner, changed)
    }

    fn status(notebook: &Notebook, id: &str) -> ExecutionStatus {
        notebook.execution(id).unwrap().status
    }

    #[wasm_bindgen_test]
    async fn it_runs_its_own_entries_in_request_order_and_leaves_the_servers() {
        let url = fake_worker_url();
        let (notebook, runner, changed) = runner(Some(&url));
        let cell = notebook.push_cell(CellType::Code, "one").unwrap();
        let first = runner.request(&cell, Target::Browser).unwrap();
        let second = runner.request(&cell, Target::Browser).unwrap();
        let server = runner.request(&cell, Target::Server).unwrap();
        let (a, b) = (
            notebook.execution(&first).unwrap(),
            notebook.execution(&second).unwrap(),
        );
        assert!(
            a.requested_at < b.requested_at,
            "asked in the same millisecond, in order"
        );
        assert_eq!(a.requested_by, "tester");
        wait_for("both runs", 5_000, || {
            status(&notebook, &second) == ExecutionStatus::Done
        })
        .await;
        assert_eq!(notebook.execution(&first).unwrap().execution_count, Some(1));
        assert_eq!(
            notebook.execution(&second).unwrap().execution_count,
            Some(2)
        );
        assert_eq!(
            notebook.execution(&second).unwrap().runtime.as_deref(),
            Some(runner.session_id())
        );
        assert_eq!(
            status(&notebook, &server),
            ExecutionStatus::Queued,
            "not ours"
        );
        assert!(changed.get() > 0, "it said it wrote outside any call");
        let me = notebook.runtimes().pop().unwrap();
        assert_eq!(
            (me.session_id.as_str(), me.kind, me.name.as_str()),
            (runner.session_id(), RuntimeKind::Browser, "tester")
        );
        wait_for("idle", 5_000, || {
            notebook.runtimes()[0].status == RuntimeStatus::Idle
        })
        .await;
        runner.stop();
        runner.close();
    }

    #[wasm_bindgen_test]
    async fn a_restart_ends_the_run_it_cuts_short_and_leaving_ends_the_rest() {
        let url = fake_worker_url();
        let (notebook, runner, _) = runner(Some(&url));
        let cell = notebook.push_cell(CellType::Code, "loop").unwrap();
        let stuck = runner.request(&cell, Target::Browser).unwrap();
        wait_for("the loop to run", 5_000, || {
            status(&notebook, &stuck) == ExecutionStatus::Running
        })
        .await;
        runner.request_restart().unwrap();
        wait_for("the restart", 5_000, || {
            status(&notebook, &stuck) == ExecutionStatus::Interrupted
        })
        .await;
        let me = notebook.runtimes().pop().unwrap();
        assert!(me.restarted_at >= me.restart_requested_at);

        let running = runner.request(&cell, Target::Browser).unwrap();
        let waiting = runner.request(&cell, Target::Browser).unwrap();
        wait_for("the next loop to run", 5_000, || {
            status(&notebook, &running) == ExecutionStatus::Running
        })
        .await;
        runner.stop();
        assert_eq!(status(&notebook, &running), ExecutionStatus::Interrupted);
        assert_eq!(status(&notebook, &waiting), ExecutionStatus::Cancelled);
        assert_eq!(notebook.runtimes()[0].status, RuntimeStatus::Gone);
        runner.close();
        assert_eq!(runner.kernel_state(), Some(KernelState::ShutDown));
    }

    #[wasm_bindgen_test]
    fn without_a_kernel_it_only_queues_for_the_server() {
        let (notebook, runner, _) = runner(None);
        let cell = notebook.push_cell(CellType::Code, "1").unwrap();
        assert!(runner.request(&cell, Target::Browser).is_err());
        assert!(runner.request_restart().is_err());
        let server = runner.request(&cell, Target::Server).unwrap();
        assert_eq!(status(&notebook, &server), ExecutionStatus::Queued);
        assert!(notebook.runtimes().is_empty(), "it did not register");
        assert_eq!(runner.kernel_state(), None);
        assert!(!runner.can_interrupt());
    }
}
