//! The engine's shared state, its observers and the delivery of events to JavaScript.
//!
//! Yrs runs observers while the document is still locked for the transaction, and a callback
//! that read the document there would panic. So observers only queue what happened; the queue
//! goes to JavaScript once the transaction is over: at the end of each exported call, after each
//! frame from the relay, and in a microtask for anything else.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inloop_doc::{ChangeBatch, Notebook, Subscription, UpdateSubscription};
use inloop_sync::ClientSession;
use js_sys::Function;
use serde::Serialize;
use tokio::sync::Notify;
use wasm_bindgen::JsValue;

use crate::error::{Error, Result};
use crate::kernel::PyodideKernel;
use crate::store::Store;
use crate::sync::{Socket, Status, StatusReport};

/// Something for the page.
#[derive(Debug)]
pub(crate) enum Event {
    Change(ChangeBatch),
    Status(StatusReport),
    Presence,
}

/// Which callback list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topic {
    Change,
    Status,
    Presence,
}

/// Everything an engine is; the exported `Notebook` holds it in an `Rc`, the browser's
/// callbacks hold `Weak`s.
pub(crate) struct Inner {
    pub(crate) doc_id: String,
    pub(crate) notebook: Notebook,
    pub(crate) name: String,
    /// The relay's WebSocket URL and the token, or `None` when not connecting.
    pub(crate) url: Option<crate::sync::Endpoint>,
    pub(crate) session: RefCell<ClientSession>,
    pub(crate) socket: RefCell<Option<Socket>>,
    pub(crate) status: RefCell<StatusReport>,
    pub(crate) backoff_ms: Cell<u32>,
    pub(crate) retry: RefCell<Option<gloo_timers::callback::Timeout>>,
    /// Local updates not sent yet (merged into one message when sent).
    pub(crate) unsent: RefCell<Vec<Vec<u8>>>,
    pub(crate) closed: Cell<bool>,
    /// The `pagehide` listener, removed by `close`.
    #[allow(clippy::type_complexity)]
    pub(crate) page_hide:
        RefCell<Option<(web_sys::Window, wasm_bindgen::closure::Closure<dyn FnMut()>)>>,
    /// This page's presence, as JSON.
    pub(crate) local_presence: RefCell<Option<String>>,

    pub(crate) store: RefCell<Option<Store>>,
    /// Updates (local and remote) not in IndexedDB yet.
    pub(crate) unstored: RefCell<Vec<Vec<u8>>>,
    pub(crate) storing: Cell<bool>,
    pub(crate) stored: Notify,
    pub(crate) store_error: RefCell<Option<String>>,

    pub(crate) kernel: Option<Rc<PyodideKernel>>,
    pub(crate) runner: crate::runner::Runner,

    /// Undo and redo of this page's user edits (not its runtime's output writes, never peers').
    pub(crate) undo: RefCell<yrs::UndoManager>,
    /// Set while a user edit runs, so the undo manager records it.
    pub(crate) user_edit: Arc<AtomicBool>,

    events: RefCell<VecDeque<Event>>,
    delivering: Cell<bool>,
    microtask: Cell<bool>,
    callbacks: RefCell<Vec<(u32, Topic, Function)>>,
    next_callback: Cell<u32>,
    pub(crate) subscriptions: RefCell<Option<Kept>>,
}

/// Observers kept registered while the engine lives (dropping them unregisters).
#[derive(Debug)]
pub(crate) struct Kept {
    _changes: Subscription,
    _runs: Subscription,
    _local: UpdateSubscription,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("doc_id", &self.doc_id)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        doc_id: String,
        notebook: Notebook,
        name: String,
        url: Option<crate::sync::Endpoint>,
        store: Option<Store>,
        kernel: Option<Rc<PyodideKernel>>,
        runner: crate::runner::Runner,
    ) -> Self {
        let status = match url {
            Some(_) => Status::Connecting,
            None => Status::Closed {
                code: None,
                reason: "not connecting to a relay".into(),
            },
        };
        let user_edit = Arc::new(AtomicBool::new(false));
        let capturing = user_edit.clone();
        let undo = notebook.undo_manager(
            move || capturing.load(Ordering::Relaxed),
            || js_sys::Date::now() as u64,
        );
        Self {
            doc_id,
            undo: RefCell::new(undo),
            user_edit,
            session: RefCell::new(ClientSession::new(notebook.clone())),
            notebook,
            name,
            url,
            socket: RefCell::new(None),
            status: RefCell::new(StatusReport {
                status,
                unacknowledged: 0,
            }),
            backoff_ms: Cell::new(crate::sync::FIRST_BACKOFF_MS),
            retry: RefCell::new(None),
            unsent: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            local_presence: RefCell::new(None),
            page_hide: RefCell::new(None),
            store: RefCell::new(store),
            unstored: RefCell::new(Vec::new()),
            storing: Cell::new(false),
            stored: Notify::new(),
            store_error: RefCell::new(None),
            kernel,
            runner,
            events: RefCell::new(VecDeque::new()),
            delivering: Cell::new(false),
            microtask: Cell::new(false),
            callbacks: RefCell::new(Vec::new()),
            next_callback: Cell::new(1),
            subscriptions: RefCell::new(None),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.get() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs `f` as a user edit: the undo manager records what it changes in the cells.
    pub(crate) fn as_user_edit<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.user_edit.swap(true, Ordering::Relaxed);
        let result = f();
        self.user_edit.store(was, Ordering::Relaxed);
        result
    }

    pub(crate) fn status(&self) -> StatusReport {
        self.status.borrow().clone()
    }

    pub(crate) fn set_status(&self, status: Status) {
        let unacknowledged = self.session.borrow().unacknowledged();
        self.report_status(StatusReport {
            status,
            unacknowledged,
        });
    }

    /// The count of unacknowledged changes moved.
    pub(crate) fn counts_changed(&self) {
        let Ok(session) = self.session.try_borrow() else {
            return;
        };
        let unacknowledged = session.unacknowledged();
        drop(session);
        let status = self.status.borrow().status.clone();
        self.report_status(StatusReport {
            status,
            unacknowledged,
        });
    }

    fn report_status(&self, report: StatusReport) {
        if *self.status.borrow() == report {
            return;
        }
        *self.status.borrow_mut() = report.clone();
        self.push(Event::Status(report));
    }

    pub(crate) fn presence_changed(&self) {
        self.push(Event::Presence);
    }

    pub(crate) fn push(&self, event: Event) {
        self.events.borrow_mut().push_back(event);
    }

    /// Delivers what is queued now, unless a delivery is under way (a callback that called
    /// into the engine): that one picks the new events up.
    pub(crate) fn deliver(&self) {
        if self.delivering.replace(true) {
            return;
        }
        loop {
            let Some(event) = self.events.borrow_mut().pop_front() else {
                break;
            };
            let (topic, value) = match event {
                Event::Change(batch) => (Topic::Change, to_js(&batch)),
                Event::Status(report) => (Topic::Status, to_js(&report)),
                Event::Presence => (Topic::Presence, crate::presence_value(self)),
            };
            let callbacks: Vec<Function> = self
                .callbacks
                .borrow()
                .iter()
                .filter(|(_, t, _)| *t == topic)
                .map(|(_, _, f)| f.clone())
                .collect();
            for callback in callbacks {
                if let Err(error) = callback.call1(&JsValue::NULL, &value) {
                    web_sys::console::error_2(&"inloop: a callback threw".into(), &error);
                }
            }
        }
        self.delivering.set(false);
    }

    /// Delivers in a microtask: for events queued outside any exported call (a worker message,
    /// a timer).
    pub(crate) fn deliver_soon(self: &Rc<Self>) {
        if self.microtask.replace(true) {
            return;
        }
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(inner) = weak.upgrade() {
                inner.microtask.set(false);
                inner.deliver();
            }
        });
    }

    pub(crate) fn subscribe(&self, topic: Topic, callback: Function) -> u32 {
        let id = self.next_callback.get();
        self.next_callback.set(id + 1);
        self.callbacks.borrow_mut().push((id, topic, callback));
        id
    }

    pub(crate) fn unsubscribe(&self, id: u32) -> bool {
        let mut callbacks = self.callbacks.borrow_mut();
        let before = callbacks.len();
        callbacks.retain(|(i, _, _)| *i != id);
        callbacks.len() != before
    }
}

/// A Rust value as a plain JavaScript value (objects, not `Map`s).
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).unwrap_or(JsValue::NULL)
}

/// Registers the document observers: typed changes for the page, local updates for the relay,
/// every update for IndexedDB, queue changes for the runner.
pub(crate) fn observe(inner: &Rc<Inner>) -> Result<()> {
    let notebook = inner.notebook.clone();
    let weak = Rc::downgrade(inner);
    let changes = notebook.observe(move |batch| {
        if let Some(inner) = weak.upgrade() {
            inner.push(Event::Change(batch.clone()));
            inner.deliver_soon();
        }
    });
    let weak = Rc::downgrade(inner);
    let local = notebook.observe_local_updates(move |update| {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(mut session) = inner.session.try_borrow_mut() {
            session.local_change();
        }
        inner.unsent.borrow_mut().push(update.to_vec());
        inner.counts_changed();
        let later = Rc::downgrade(&inner);
        // After the transaction, merged with any others made in the same turn.
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(inner) = later.upgrade() {
                crate::sync::send_unsent(&inner);
                inner.deliver();
            }
        });
    })?;
    let weak = Rc::downgrade(inner);
    let runs = notebook.observe_runs(move || {
        if let Some(inner) = weak.upgrade() {
            inner.runner.wake();
        }
    });
    if inner.store.borrow().is_some() {
        let weak = Rc::downgrade(inner);
        inner
            .notebook
            .doc()
            .observe_update_v1(store_observer_key(inner), move |_, event| {
                if let Some(inner) = weak.upgrade() {
                    inner.unstored.borrow_mut().push(event.update.clone());
                    crate::persist::schedule(&inner);
                }
            })
            .map_err(|_| Error::Doc(inloop_doc::Error::Busy))?;
    }
    *inner.subscriptions.borrow_mut() = Some(Kept {
        _changes: changes,
        _runs: runs,
        _local: local,
    });
    Ok(())
}

/// The key of the observer that feeds IndexedDB (unregistered by `close`).
pub(crate) fn store_observer_key(inner: &Inner) -> String {
    format!("inloop-wasm:store:{}", inner.notebook.client_id())
}

/// On `pagehide`, this page's runs end and its runtime entry says `gone`, and that goes out
/// while the socket is still open.
pub(crate) fn on_page_hide(inner: &Rc<Inner>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let weak = Rc::downgrade(inner);
    let listener = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(move || {
        if let Some(inner) = weak.upgrade() {
            if !inner.closed.get() {
                crate::runner::leave(&inner);
                crate::sync::send_unsent(&inner);
            }
        }
    });
    let function: &Function = wasm_bindgen::JsCast::unchecked_ref(listener.as_ref());
    let _ = window.add_event_listener_with_callback("pagehide", function);
    *inner.page_hide.borrow_mut() = Some((window, listener));
}
