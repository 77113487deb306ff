//! The connection to the relay: the document synced over a browser WebSocket through
//! `inloop_sync::ClientSession`, reconnecting with backoff, as `inloop-client` does natively.
//!
//! It knows the document (its session reads and writes it) and nothing above: what the engine
//! must hear of (the status, presence, the relay's limits, the end of a socket event) goes to
//! the [`Listener`] it was made with.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use inloop_doc::Notebook;
pub use inloop_sync::Status;
use inloop_sync::{ClientEvent, ClientSession, FIRST_BACKOFF_MS, MAX_BACKOFF_MS, MERGE_BYTES};
use js_sys::{ArrayBuffer, Uint8Array};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::error::js_message;

/// What a status callback receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StatusReport {
    #[serde(flatten)]
    pub(crate) status: Status,
    /// Local changes the relay has not acknowledged as stored yet.
    pub(crate) unacknowledged: u64,
}

/// What the connection tells the engine.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SyncEvent {
    /// The status or the count of unacknowledged changes moved.
    Status(StatusReport),
    /// Someone's presence changed (or was forgotten with the connection).
    Presence,
    /// The relay's size limits, said as the connection opens.
    Limits(inloop_sync::SizeLimits),
    /// A socket event, a reconnection timer or a send of local changes is over: time to
    /// deliver what it caused.
    Settled,
}

/// Who hears of [`SyncEvent`]s.
pub(crate) type Listener = Box<dyn Fn(SyncEvent)>;

/// Where the engine connects: the relay's WebSocket URL (no token in it) and the token.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl Endpoint {
    /// The socket. The token goes as its subprotocol, which the relay takes and echoes: unlike
    /// `?token=` in the URL, it ends up in no proxy's or server's access log.
    fn open(&self) -> Result<WebSocket, wasm_bindgen::JsValue> {
        match &self.token {
            Some(token) => WebSocket::new_with_str(&self.url, token),
            None => WebSocket::new(&self.url),
        }
    }
}

/// One open (or opening) socket and the handlers that must live as long as it.
struct Socket {
    ws: WebSocket,
    open: bool,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Socket {
    fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

/// Everyone's presence as JSON texts: this page's own, then the others' by client id.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PresenceSnapshot {
    pub(crate) own: Option<String>,
    pub(crate) others: Vec<(u64, String)>,
}

/// The document's connection to the relay. Socket handlers and timers hold `Weak`s to it.
pub(crate) struct Connection {
    /// `None`: not connecting (the status says so).
    endpoint: Option<Endpoint>,
    session: RefCell<ClientSession>,
    socket: RefCell<Option<Socket>>,
    status: RefCell<StatusReport>,
    backoff_ms: Cell<u32>,
    retry: RefCell<Option<gloo_timers::callback::Timeout>>,
    /// Local updates not sent yet (merged into one message when sent).
    unsent: RefCell<Vec<Vec<u8>>>,
    closed: Cell<bool>,
    /// This page's presence, as JSON.
    local_presence: RefCell<Option<String>>,
    listener: Listener,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint.as_ref().map(|e| &e.url))
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Connection {
    /// A connection of `notebook` to `endpoint` (not yet opened: see [`Connection::connect`]).
    pub(crate) fn new(
        notebook: Notebook,
        endpoint: Option<Endpoint>,
        listener: Listener,
    ) -> Rc<Self> {
        let status = match endpoint {
            Some(_) => Status::Connecting,
            None => Status::Closed {
                code: None,
                reason: "not connecting to a relay".into(),
            },
        };
        Rc::new(Self {
            endpoint,
            session: RefCell::new(ClientSession::new(notebook)),
            socket: RefCell::new(None),
            status: RefCell::new(StatusReport {
                status,
                unacknowledged: 0,
            }),
            backoff_ms: Cell::new(FIRST_BACKOFF_MS),
            retry: RefCell::new(None),
            unsent: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            local_presence: RefCell::new(None),
            listener,
        })
    }

    pub(crate) fn status(&self) -> StatusReport {
        self.status.borrow().clone()
    }

    /// Opens a connection (the first, or the next after a backoff).
    pub(crate) fn connect(self: &Rc<Self>) {
        let Some(endpoint) = self.endpoint.clone() else {
            return;
        };
        let url = &endpoint.url;
        if self.closed.get() {
            return;
        }
        self.set_status(Status::Connecting);
        let ws = match endpoint.open() {
            Ok(ws) => ws,
            Err(error) => {
                // A malformed URL will stay malformed.
                self.set_status(Status::Closed {
                    code: None,
                    reason: format!("cannot open {url}: {}", js_message(&error)),
                });
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let weak = Rc::downgrade(self);
        let on_open = Closure::<dyn FnMut()>::new(move || with(&weak, Self::opened));
        let weak = Rc::downgrade(self);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            with(&weak, |this| this.message(event.data()));
        });
        let weak = Rc::downgrade(self);
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            with(&weak, |this| this.closed(event.code(), event.reason()));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *self.socket.borrow_mut() = Some(Socket {
            ws,
            open: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
    }

    /// A local update of the document (its observer calls this inside the transaction): counted
    /// as unacknowledged, and sent once the turn's transactions are over.
    pub(crate) fn local_update(self: &Rc<Self>, update: &[u8]) {
        if let Ok(mut session) = self.session.try_borrow_mut() {
            session.local_change();
        }
        self.unsent.borrow_mut().push(update.to_vec());
        self.counts_changed();
        let later = Rc::downgrade(self);
        // After the transaction, merged with any others made in the same turn.
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(this) = later.upgrade() {
                this.send_unsent();
                (this.listener)(SyncEvent::Settled);
            }
        });
    }

    /// Sends the local changes made since the last send, merged into as few messages as the
    /// relay's message size allows.
    pub(crate) fn send_unsent(self: &Rc<Self>) {
        let updates = std::mem::take(&mut *self.unsent.borrow_mut());
        if updates.is_empty() || !self.is_open() {
            return; // offline: the next connection's sync step 2 carries them
        }
        let mut batches = vec![Vec::new()];
        let mut bytes = 0;
        for update in updates {
            if bytes + update.len() > MERGE_BYTES && bytes > 0 {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += update.len();
            if let Some(batch) = batches.last_mut() {
                batch.push(update);
            }
        }
        for batch in batches {
            let frames = self.session.borrow_mut().updates_frames(&batch);
            match frames {
                Ok(frames) => {
                    for frame in frames {
                        self.send(&frame);
                    }
                }
                Err(error) => {
                    let reason = format!("could not send local changes: {error}");
                    self.drop_socket(4000, &reason);
                    return;
                }
            }
        }
    }

    /// Passes on an update from elsewhere (not made in this document: its observer does not
    /// see it as local). Offline, the next connection's sync exchange carries it instead.
    pub(crate) fn send_update(&self, update: &[u8]) {
        self.send(&ClientSession::update_frame(update));
    }

    /// Sets this page's presence (JSON, or `None` to clear it) and tells the relay.
    pub(crate) fn set_presence(&self, json: Option<String>) {
        let frame = self.session.borrow_mut().set_presence(json.as_deref());
        *self.local_presence.borrow_mut() = json;
        self.send(&frame);
    }

    /// Everyone's presence, or `None` while the session is busy (in a frame's handling).
    pub(crate) fn presence(&self) -> Option<PresenceSnapshot> {
        let session = self.session.try_borrow().ok()?;
        let mut others: Vec<(u64, String)> = session
            .presence()
            .map(|(client, json)| (client, json.to_owned()))
            .collect();
        others.sort_by_key(|(client, _)| *client);
        Some(PresenceSnapshot {
            own: self.local_presence.borrow().clone(),
            others,
        })
    }

    /// Whether a socket is open to the relay right now.
    pub(crate) fn is_open(&self) -> bool {
        self.socket.borrow().as_ref().is_some_and(|s| s.open)
    }

    /// Closes for good (the engine's `close()`): no more reconnections; the status says
    /// `closed`.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        if let Some(retry) = self.retry.borrow_mut().take() {
            retry.cancel();
        }
        if let Some(socket) = self.socket.borrow_mut().take() {
            socket.detach();
            let _ = socket.ws.close_with_code_and_reason(1000, "closed");
        }
        self.set_status(Status::Closed {
            code: None,
            reason: "closed".into(),
        });
    }

    /// Sends a frame if the socket is open (frames for a closed one are covered by the next
    /// sync).
    fn send(&self, frame: &[u8]) -> bool {
        let socket = self.socket.borrow();
        match socket.as_ref() {
            Some(socket) if socket.open => socket.ws.send_with_u8_array(frame).is_ok(),
            _ => false,
        }
    }

    fn set_status(&self, status: Status) {
        let unacknowledged = self.session.borrow().unacknowledged();
        self.report(StatusReport {
            status,
            unacknowledged,
        });
    }

    /// The count of unacknowledged changes moved.
    fn counts_changed(&self) {
        let Ok(session) = self.session.try_borrow() else {
            return;
        };
        let unacknowledged = session.unacknowledged();
        drop(session);
        let status = self.status.borrow().status.clone();
        self.report(StatusReport {
            status,
            unacknowledged,
        });
    }

    fn report(&self, report: StatusReport) {
        if *self.status.borrow() == report {
            return;
        }
        *self.status.borrow_mut() = report.clone();
        (self.listener)(SyncEvent::Status(report));
    }

    fn opened(self: &Rc<Self>) {
        if let Some(socket) = self.socket.borrow_mut().as_mut() {
            socket.open = true;
        }
        self.set_status(Status::Syncing);
        // Changes made before this connection travel in its sync step 2.
        self.unsent.borrow_mut().clear();
        let frames = self.session.borrow_mut().connected();
        for frame in frames {
            self.send(&frame);
        }
        // The session forgot the other peers' presence; they resend it on this connection.
        (self.listener)(SyncEvent::Presence);
    }

    fn message(self: &Rc<Self>, data: wasm_bindgen::JsValue) {
        let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
            return; // y-websocket is binary only
        };
        let frame = Uint8Array::new(buffer).to_vec();
        let received = self.session.borrow_mut().receive(&frame);
        let received = match received {
            Ok(received) => received,
            Err(error) => {
                // Our state may be behind a bad frame: drop the connection and resync.
                self.drop_socket(4000, &format!("bad frame from the relay: {error}"));
                return;
            }
        };
        for reply in &received.replies {
            self.send(reply);
        }
        for event in received.events {
            match event {
                ClientEvent::Synced => {
                    self.backoff_ms.set(FIRST_BACKOFF_MS);
                    self.set_status(Status::Synced);
                }
                ClientEvent::Acknowledged => self.counts_changed(),
                ClientEvent::PresenceChanged => (self.listener)(SyncEvent::Presence),
                ClientEvent::Refused(reason) => {
                    if let Some(socket) = self.socket.borrow_mut().take() {
                        socket.detach();
                        let _ = socket.ws.close();
                    }
                    self.set_status(Status::Closed { code: None, reason });
                }
                ClientEvent::Limits(limits) => (self.listener)(SyncEvent::Limits(limits)),
                ClientEvent::Lease(_) => {}
            }
        }
    }

    fn closed(self: &Rc<Self>, code: u16, reason: String) {
        if let Some(socket) = self.socket.borrow_mut().take() {
            socket.detach();
        }
        if self.closed.get() {
            return;
        }
        if inloop_sync::close_is_final(code) {
            self.set_status(Status::Closed {
                code: Some(code),
                reason,
            });
            return;
        }
        let reason = if reason.is_empty() && code == 1006 {
            "the connection failed or was lost".to_owned()
        } else {
            reason
        };
        self.set_status(Status::Offline {
            code: Some(code),
            reason,
        });
        let wait = self.backoff_ms.get();
        self.backoff_ms
            .set((wait.saturating_mul(2)).min(MAX_BACKOFF_MS));
        let weak = Rc::downgrade(self);
        let retry = gloo_timers::callback::Timeout::new(wait, move || {
            // (The finished timer stays in `retry` until the next one replaces it: dropping it
            // here would free this closure while it runs.)
            with(&weak, Self::connect);
        });
        *self.retry.borrow_mut() = Some(retry);
    }

    /// Closes the socket and goes through the usual reconnection.
    fn drop_socket(self: &Rc<Self>, code: u16, reason: &str) {
        let socket = self.socket.borrow_mut().take();
        if let Some(socket) = socket {
            socket.detach();
            let _ = socket.ws.close_with_code_and_reason(code, reason);
        }
        self.closed(code, reason.to_owned());
    }
}

/// Runs a socket handler or timer on the connection if it still exists, then tells the
/// listener it is over.
fn with(weak: &Weak<Connection>, f: impl FnOnce(&Rc<Connection>)) {
    if let Some(this) = weak.upgrade() {
        f(&this);
        (this.listener)(SyncEvent::Settled);
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use inloop_doc::CellType;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;
    use crate::testing::wait_for;

    /// A connection whose events are kept.
    fn connection(
        endpoint: Option<Endpoint>,
    ) -> (Notebook, Rc<Connection>, Rc<RefCell<Vec<SyncEvent>>>) {
        let notebook = Notebook::new();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let keep = seen.clone();
        let listener: Listener = Box::new(move |event| keep.borrow_mut().push(event));
        let connection = Connection::new(notebook.clone(), endpoint, listener);
        (notebook, connection, seen)
    }

    fn statuses(seen: &RefCell<Vec<SyncEvent>>) -> Vec<StatusReport> {
        seen.borrow()
            .iter()
            .filter_map(|e| match e {
                SyncEvent::Status(report) => Some(report.clone()),
                _ => None,
            })
            .collect()
    }

    #[wasm_bindgen_test]
    async fn without_a_relay_local_changes_are_counted_and_kept_for_later() {
        let (notebook, connection, seen) = connection(None);
        let closed_by = |reason: &str| Status::Closed {
            code: None,
            reason: reason.into(),
        };
        assert_eq!(
            connection.status().status,
            closed_by("not connecting to a relay")
        );
        connection.connect();
        assert!(seen.borrow().is_empty(), "nothing to connect to");

        let _subscription = notebook
            .observe_local_updates({
                let connection = Rc::downgrade(&connection);
                move |update| connection.upgrade().unwrap().local_update(update)
            })
            .unwrap();
        notebook.insert_cell(0, CellType::Code, "a").unwrap();
        notebook.insert_cell(1, CellType::Code, "b").unwrap();
        let counts: Vec<u64> = statuses(&seen).iter().map(|r| r.unacknowledged).collect();
        assert_eq!(counts, [1, 2], "counted inside each transaction");
        // The send after the turn: nothing to send to, and it says it is over.
        wait_for("the send to settle", 1_000, || {
            seen.borrow().contains(&SyncEvent::Settled)
        })
        .await;
        assert!(!connection.is_open());
        assert_eq!(connection.status().unacknowledged, 2);

        connection.set_presence(Some(r#"{"name":"Ada"}"#.into()));
        let presence = connection.presence().unwrap();
        assert_eq!(presence.own.as_deref(), Some(r#"{"name":"Ada"}"#));
        assert!(presence.others.is_empty());

        connection.close();
        assert_eq!(
            connection.status(),
            StatusReport {
                status: closed_by("closed"),
                unacknowledged: 2
            }
        );
    }

    #[wasm_bindgen_test]
    async fn an_unreachable_relay_is_retried_with_backoff_until_closed() {
        let (_notebook, connection, seen) = connection(Some(Endpoint {
            // Nothing listens there: every attempt fails.
            url: "ws://127.0.0.1:47/api/docs/x/ws".into(),
            token: Some("il1.nope".into()),
        }));
        connection.connect();
        assert_eq!(connection.status().status, Status::Connecting);
        let offline = |seen: &RefCell<Vec<SyncEvent>>| {
            statuses(seen)
                .iter()
                .filter(|r| matches!(r.status, Status::Offline { .. }))
                .count()
        };
        wait_for("two failed attempts", 5_000, || offline(&seen) >= 2).await;
        let reports = statuses(&seen);
        assert!(
            matches!(
                &reports[0].status,
                Status::Offline { code: Some(1006), reason } if !reason.is_empty()
            ),
            "{reports:?}"
        );
        assert_eq!(reports[1].status, Status::Connecting, "{reports:?}");
        assert!(seen.borrow().contains(&SyncEvent::Settled));

        connection.close();
        let last = statuses(&seen).pop().unwrap();
        assert!(matches!(last.status, Status::Closed { ref reason, .. } if reason == "closed"));
        connection.connect();
        assert_eq!(
            statuses(&seen).pop().unwrap(),
            last,
            "a closed connection does not open again"
        );
    }

    #[wasm_bindgen_test]
    fn a_malformed_url_closes_for_good() {
        let (_notebook, connection, _seen) = connection(Some(Endpoint {
            url: "ws://[not a url".into(),
            token: None,
        }));
        connection.connect();
        let status = connection.status().status;
        assert!(
            matches!(&status, Status::Closed { code: None, reason } if reason.starts_with("cannot open")),
            "{status:?}"
        );
    }
}
