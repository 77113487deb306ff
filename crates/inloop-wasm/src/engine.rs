//! The engine: the parts composed, their callbacks wired, and what takes more than one part.
//!
//! ```text
//!                lib.rs: the exported `Notebook` (JavaScript in and out)
//!                                        │
//!                      engine.rs (Core): composes the parts, wires their callbacks
//!       ┌─────────────┬──────────────┬───┴──────────┬─────────────┬──────────────┐
//!       ▼             ▼              ▼              ▼             ▼              ▼
//!   events.rs     runner.rs     placement.rs    replica.rs     sync.rs       persist.rs
//!  (the page's   (this browser  (targets, each  (notebook,    (Connection:  (Persistence)
//!   callbacks)    as a runtime)  cell's latest   undo)         socket,           │
//!                     │          run, the lease)               session)      store.rs
//!                 kernel.rs          │              │             │        (IndexedDB)
//!                     │              │              │             │             │
//!                     └──────────────┴──────────────┴──────┬──────┴─────────────┘
//!                                                          ▼
//!                                  the document (inloop_doc::Notebook)
//! ```
//!
//! Calls go down only. A part hears of nothing above it; what it must tell (the connection's
//! status, "I changed the document outside any call") goes through a callback given when it is
//! made, which the engine wires here. Each part owns its fields; none reaches into another's.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use inloop_doc::placement::{LeaseHolder, Target};
use inloop_doc::{
    Change, Execution, ExecutionStatus, Notebook, Runtime, Subscription, UpdateSubscription,
};
use inloop_kernel::RelayLimits;
use js_sys::Function;
use serde::Serialize;
use tokio::sync::Notify;
use wasm_bindgen::JsValue;

use crate::error::{Error, Result};
use crate::events::{Event, Events, Topic, to_js};
use crate::kernel::{KernelState, PyodideKernel};
use crate::persist::Persistence;
use crate::placement::{Placement, RestartTarget};
use crate::replica::Replica;
use crate::runner::{Runner, now};
use crate::sync::{Connection, Endpoint, Listener, StatusReport, SyncEvent};

/// What an engine is made of, ready before it starts.
pub(crate) struct Parts {
    pub(crate) doc_id: String,
    /// The document, with what the offline store held already loaded.
    pub(crate) notebook: Notebook,
    /// The relay, or `None` for not connecting.
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) persistence: Option<Rc<Persistence>>,
    pub(crate) kernel: Option<Rc<PyodideKernel>>,
    /// What the kernel wakes on its changes of state (the runner's loop).
    pub(crate) wake: Rc<Notify>,
    /// Who requests runs; the runtime's name.
    pub(crate) name: String,
    pub(crate) limits: Option<RelayLimits>,
}

/// One engine. The exported `Notebook` holds it in an `Rc`; callbacks hold `Weak`s.
pub(crate) struct Core {
    replica: Replica,
    events: Events,
    connection: Rc<Connection>,
    persistence: Option<Rc<Persistence>>,
    runner: Rc<Runner>,
    placement: Placement,
    closed: Cell<bool>,
    /// The `pagehide` listener, removed by `close`.
    page_hide: RefCell<Option<PageHide>>,
    /// The document observers, dropped (unregistered) by `close`.
    subscriptions: RefCell<Option<Kept>>,
}

/// The window and the `pagehide` listener registered on it.
type PageHide = (web_sys::Window, wasm_bindgen::closure::Closure<dyn FnMut()>);

/// Observers kept registered while the engine lives.
#[derive(Debug)]
struct Kept {
    _changes: Subscription,
    _runs: Subscription,
    _local: UpdateSubscription,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("replica", &self.replica)
            .field("connection", &self.connection)
            .finish()
    }
}

/// One peer's presence as the page sees it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceView {
    client_id: u64,
    local: bool,
    state: serde_json::Value,
}

impl Core {
    /// Makes the engine of `parts` and starts it: observers, the runner's loop, the connection.
    pub(crate) fn start(parts: Parts) -> Result<Rc<Self>> {
        let Parts {
            doc_id,
            notebook,
            endpoint,
            persistence,
            kernel,
            wake,
            name,
            limits,
        } = parts;
        let core = Rc::new_cyclic(|weak: &Weak<Self>| {
            let to_core = weak.clone();
            let listener: Listener = Box::new(move |event| {
                if let Some(core) = to_core.upgrade() {
                    core.sync_event(event);
                }
            });
            let to_core = weak.clone();
            let changed = Box::new(move || {
                if let Some(core) = to_core.upgrade() {
                    core.deliver_soon();
                }
            });
            Self {
                connection: Connection::new(notebook.clone(), endpoint, listener),
                runner: Runner::new(notebook.clone(), kernel, wake, name, limits, changed),
                placement: Placement::new(notebook.clone(), &doc_id),
                replica: Replica::new(doc_id, notebook),
                events: Events::default(),
                persistence,
                closed: Cell::new(false),
                page_hide: RefCell::new(None),
                subscriptions: RefCell::new(None),
            }
        });
        core.observe()?;
        core.runner.start();
        core.connection.connect();
        core.on_page_hide();
        Ok(core)
    }

    // ---- the parts, for what takes only one -------------------------------------------------

    pub(crate) fn replica(&self) -> &Replica {
        &self.replica
    }

    pub(crate) fn notebook(&self) -> &Notebook {
        self.replica.notebook()
    }

    pub(crate) fn placement(&self) -> &Placement {
        &self.placement
    }

    pub(crate) fn status(&self) -> StatusReport {
        self.connection.status()
    }

    pub(crate) fn runtime_id(&self) -> &str {
        self.runner.session_id()
    }

    pub(crate) fn kernel_state(&self) -> Option<KernelState> {
        self.runner.kernel_state()
    }

    pub(crate) fn can_interrupt(&self) -> bool {
        self.runner.can_interrupt()
    }

    pub(crate) fn subscribe(&self, topic: Topic, callback: Function) -> u32 {
        self.events.subscribe(topic, callback)
    }

    pub(crate) fn unsubscribe(&self, id: u32) -> bool {
        self.events.unsubscribe(id)
    }

    // ---- edits ------------------------------------------------------------------------------

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.get() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs an edit, then delivers the events it caused.
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&Notebook) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let result = f(self.notebook());
        self.deliver();
        result
    }

    /// Runs a user's edit (one `undo()` can take back), then delivers the events it caused.
    pub(crate) fn user_edit<T>(&self, f: impl FnOnce(&Notebook) -> Result<T>) -> Result<T> {
        self.edit(|_| self.replica.as_user_edit(f))
    }

    /// Undoes (`true`) or redoes (`false`) this page's last user edit.
    pub(crate) fn undo(&self, undo: bool) -> Result<bool> {
        self.check_open()?;
        let changed = if undo {
            self.replica.undo()
        } else {
            self.replica.redo()
        };
        self.deliver();
        Ok(changed)
    }

    /// Applies an update from elsewhere; it is stored, and passed on to the relay.
    pub(crate) fn apply_update(&self, update: &[u8]) -> Result<()> {
        self.edit(|nb| Ok(nb.apply_update_v1(update)?))?;
        self.connection.send_update(update);
        Ok(())
    }

    /// Sets this page's presence (JSON), or clears it.
    pub(crate) fn set_presence(&self, json: Option<String>) -> Result<()> {
        self.check_open()?;
        self.connection.set_presence(json);
        self.events.push(Event::Presence);
        self.deliver();
        Ok(())
    }

    /// Everyone's presence, this page's first.
    pub(crate) fn presence(&self) -> JsValue {
        let Some(presence) = self.connection.presence() else {
            return JsValue::NULL;
        };
        let parse = |json: &str| serde_json::from_str(json).unwrap_or_default();
        let own = presence.own.as_deref().map(|own| PresenceView {
            client_id: self.notebook().client_id(),
            local: true,
            state: parse(own),
        });
        let others = presence
            .others
            .iter()
            .map(|(client_id, json)| PresenceView {
                client_id: *client_id,
                local: false,
                state: parse(json),
            });
        let all: Vec<PresenceView> = own.into_iter().chain(others).collect();
        to_js(&all)
    }

    // ---- runs -------------------------------------------------------------------------------

    /// Queues a run of a code cell on `target`, or (`None`) where it runs: where the cell says,
    /// else where the notebook runs. Returns the entry's id.
    pub(crate) fn run(&self, cell_id: &str, target: Option<Target>) -> Result<String> {
        self.check_open()?;
        let target = match target {
            Some(target) => target,
            None => self.placement.target_of(cell_id)?,
        };
        self.edit(|_| self.runner.request(cell_id, target))
    }

    /// Stops a run: a queued entry is cancelled, a running one interrupted by its runtime.
    pub(crate) fn interrupt(&self, execution_id: &str) -> Result<()> {
        self.edit(|nb| Ok(nb.stop_execution(execution_id, now()).map(drop)?))
    }

    /// Stops every queued or running entry; returns how many (stopping at the first refusal).
    pub(crate) fn interrupt_all(&self) -> Result<usize> {
        self.edit(|nb| {
            let live = nb.executions_in(&[ExecutionStatus::Queued, ExecutionStatus::Running]);
            for entry in &live {
                nb.stop_execution(&entry.id, now())?;
            }
            Ok(live.len())
        })
    }

    /// Asks this page's kernel to restart.
    pub(crate) fn restart_browser(&self) -> Result<()> {
        self.edit(|_| self.runner.request_restart())
    }

    /// Asks another runtime to restart its kernel.
    pub(crate) fn restart_runtime(&self, session_id: &str) -> Result<()> {
        self.edit(|nb| Ok(nb.request_restart(session_id, now())?))
    }

    /// Restarts the kernel the notebook runs in: the server runtime's, or this browser's.
    pub(crate) fn restart_kernel(&self) -> Result<RestartTarget> {
        self.check_open()?;
        let target = self.placement.restart_target();
        match &target {
            RestartTarget::Browser => self.restart_browser()?,
            RestartTarget::Server(Some(server)) => self.restart_runtime(&server.session_id)?,
            RestartTarget::Server(None) => {}
        }
        Ok(target)
    }

    /// Runs the notebook on `target`: remembered in this browser, and written in the notebook
    /// when `write`.
    pub(crate) fn set_notebook_target(&self, target: Target, write: bool) -> Result<()> {
        if !write {
            self.placement.set_notebook_target(target, false);
            return Ok(());
        }
        self.edit(|_| {
            self.placement.set_notebook_target(target, true);
            Ok(())
        })
    }

    pub(crate) fn set_cell_target(&self, cell_id: &str, target: Option<Target>) -> Result<()> {
        self.edit(|_| self.placement.set_cell_target(cell_id, target))
    }

    pub(crate) fn latest_executions(&self) -> Vec<Execution> {
        self.placement.latest_executions()
    }

    pub(crate) fn lease_holder(&self) -> Option<LeaseHolder> {
        self.placement.lease_holder()
    }

    pub(crate) fn server_runtime(&self) -> Option<Runtime> {
        self.placement.server_runtime()
    }

    // ---- the offline store ------------------------------------------------------------------

    /// Resolves once every change made so far is in IndexedDB; the last write's error if it
    /// failed.
    pub(crate) async fn persisted(&self) -> Result<()> {
        let Some(persistence) = &self.persistence else {
            return Ok(());
        };
        persistence.flushed().await;
        match persistence.take_error() {
            Some(error) => Err(Error::Store(error)),
            None => Ok(()),
        }
    }

    pub(crate) fn stored_records(&self) -> Option<usize> {
        self.persistence.as_ref().map(|p| p.records())
    }

    // ---- closing ----------------------------------------------------------------------------

    /// Stops syncing, marks this page's runtime gone, stops the kernel. Later edits fail.
    pub(crate) fn close(&self) {
        if self.closed.get() {
            return;
        }
        self.runner.stop();
        // The runtime's last word ("gone") goes out before the socket closes.
        self.connection.send_unsent();
        self.closed.set(true);
        self.connection.close();
        self.runner.close();
        if let Some(persistence) = &self.persistence {
            persistence.stop();
        }
        self.subscriptions.borrow_mut().take();
        if let Some((window, listener)) = self.page_hide.borrow_mut().take() {
            let function: &Function = wasm_bindgen::JsCast::unchecked_ref(listener.as_ref());
            let _ = window.remove_event_listener_with_callback("pagehide", function);
        }
        self.deliver();
    }

    // ---- events -----------------------------------------------------------------------------

    /// Delivers what is queued to the page's callbacks.
    pub(crate) fn deliver(&self) {
        self.events.deliver(|event| match event {
            Event::Change(batch) => to_js(batch),
            Event::Status(report) => to_js(report),
            Event::Presence => self.presence(),
        });
    }

    /// Delivers in a microtask: for events queued outside any exported call (a worker message,
    /// a timer).
    fn deliver_soon(self: &Rc<Self>) {
        if !self.events.schedule_microtask() {
            return;
        }
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(core) = weak.upgrade() {
                core.events.microtask_ran();
                core.deliver();
            }
        });
    }

    /// What the connection tells.
    fn sync_event(&self, event: SyncEvent) {
        match event {
            SyncEvent::Status(report) => self.events.push(Event::Status(report)),
            SyncEvent::Presence => self.events.push(Event::Presence),
            SyncEvent::Limits(limits) => self.runner.set_limits(RelayLimits::from_relay(
                limits.max_document_bytes,
                limits.max_message_bytes,
            )),
            SyncEvent::Settled => self.deliver(),
        }
    }

    /// Registers the document observers: typed changes for the page (and the placement's
    /// latest executions), local updates for the relay, queue changes for the runner. (The
    /// offline store observes the document itself.)
    fn observe(self: &Rc<Self>) -> Result<()> {
        let notebook = self.notebook();
        let weak = Rc::downgrade(self);
        let changes = notebook.observe(move |batch| {
            if let Some(core) = weak.upgrade() {
                core.placement
                    .executions_changed(batch.changes.iter().filter_map(|change| match change {
                        Change::ExecutionChanged { execution_id } => Some(execution_id.clone()),
                        _ => None,
                    }));
                core.events.push(Event::Change(batch.clone()));
                core.deliver_soon();
            }
        });
        let connection = Rc::downgrade(&self.connection);
        let local = notebook.observe_local_updates(move |update| {
            if let Some(connection) = connection.upgrade() {
                connection.local_update(update);
            }
        })?;
        let runner = Rc::downgrade(&self.runner);
        let runs = notebook.observe_runs(move || {
            if let Some(runner) = runner.upgrade() {
                runner.wake();
            }
        });
        *self.subscriptions.borrow_mut() = Some(Kept {
            _changes: changes,
            _runs: runs,
            _local: local,
        });
        Ok(())
    }

    /// On `pagehide`, this page's runs end and its runtime entry says `gone`, and that goes out
    /// while the socket is still open.
    fn on_page_hide(self: &Rc<Self>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let weak = Rc::downgrade(self);
        let listener = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
            if let Some(core) = weak.upgrade() {
                if !core.closed.get() {
                    core.runner.leave();
                    core.connection.send_unsent();
                }
            }
        });
        let function: &Function = wasm_bindgen::JsCast::unchecked_ref(listener.as_ref());
        let _ = window.add_event_listener_with_callback("pagehide", function);
        *self.page_hide.borrow_mut() = Some((window, listener));
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use inloop_doc::CellType;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::testing::{fake_worker_url, unique, wait_for};

    fn parts(worker: Option<&str>) -> Parts {
        let wake = Rc::new(Notify::new());
        Parts {
            doc_id: unique("engine"),
            notebook: Notebook::new(),
            endpoint: None,
            persistence: None,
            kernel: worker.map(|url| PyodideKernel::start(url, None, wake.clone())),
            wake,
            name: "tester".into(),
            limits: None,
        }
    }

    #[wasm_bindgen_test]
    async fn a_cell_runs_where_it_says_else_where_the_notebook_runs() {
        let url = fake_worker_url();
        let core = Core::start(parts(Some(&url))).unwrap();
        let cell = core
            .user_edit(|nb| Ok(nb.insert_cell(0, CellType::Code, "one")?))
            .unwrap();
        let browser = core.run(&cell, None).unwrap();
        wait_for("the browser run", 5_000, || {
            core.notebook().execution(&browser).unwrap().status == ExecutionStatus::Done
        })
        .await;
        assert_eq!(
            core.placement().latest_execution(&cell).unwrap().id,
            browser
        );

        core.set_notebook_target(Target::Server, true).unwrap();
        let server = core.run(&cell, None).unwrap();
        let entry = core.notebook().execution(&server).unwrap();
        assert_eq!(entry.target, inloop_doc::ExecutionTarget::Server);
        assert!(core.placement().busy());

        core.set_cell_target(&cell, Some(Target::Browser)).unwrap();
        let own = core.run(&cell, None).unwrap();
        assert_ne!(
            core.notebook().execution(&own).unwrap().target,
            inloop_doc::ExecutionTarget::Server
        );
        assert_eq!(
            core.interrupt_all().unwrap(),
            2,
            "the server's and this browser's"
        );
        assert_eq!(
            core.notebook().execution(&server).unwrap().status,
            ExecutionStatus::Cancelled
        );
        wait_for("nothing queued or running", 5_000, || {
            !core.placement().busy()
        })
        .await;

        // The notebook runs on the server and none is connected: nothing to restart.
        assert_eq!(core.restart_kernel().unwrap(), RestartTarget::Server(None));
        core.set_notebook_target(Target::Browser, true).unwrap();
        assert_eq!(core.restart_kernel().unwrap(), RestartTarget::Browser);
        let me = core
            .notebook()
            .runtimes()
            .into_iter()
            .find(|r| r.session_id == core.runtime_id())
            .unwrap();
        assert!(me.restart_requested_at.is_some());

        core.close();
        assert!(core.run(&cell, None).is_err(), "closed");
        assert!(matches!(
            core.status().status,
            inloop_sync::Status::Closed { .. }
        ));
        assert_eq!(core.kernel_state(), Some(KernelState::ShutDown));
    }

    #[wasm_bindgen_test]
    async fn events_reach_the_callbacks_after_each_call_and_after_the_runner() {
        let url = fake_worker_url();
        let core = Core::start(parts(Some(&url))).unwrap();
        let seen = Rc::new(RefCell::new(Vec::<String>::new()));
        let keep = seen.clone();
        let callback =
            wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |batch: JsValue| {
                let changes = js_sys::Reflect::get(&batch, &"changes".into()).unwrap();
                for change in js_sys::Array::from(&changes).iter() {
                    let kind = js_sys::Reflect::get(&change, &"kind".into()).unwrap();
                    keep.borrow_mut().push(kind.as_string().unwrap());
                }
            });
        let function: &Function = wasm_bindgen::JsCast::unchecked_ref(callback.as_ref());
        core.subscribe(Topic::Change, function.clone());
        let cell = core
            .user_edit(|nb| Ok(nb.insert_cell(0, CellType::Code, "x")?))
            .unwrap();
        assert_eq!(
            *seen.borrow(),
            ["cell_inserted"],
            "delivered at the end of the call"
        );
        core.run(&cell, None).unwrap();
        // The runner's writes (outputs, the entry's end) come through microtasks.
        wait_for("the outputs", 5_000, || {
            seen.borrow().iter().any(|k| k == "outputs_changed")
        })
        .await;
        assert!(seen.borrow().iter().any(|k| k == "execution_changed"));
        assert!(seen.borrow().iter().any(|k| k == "runtime_changed"));
        core.close();
    }
}
