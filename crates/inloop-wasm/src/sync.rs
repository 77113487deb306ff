//! The WebSocket provider: the document synced with the relay through
//! `inloop_sync::ClientSession`, reconnecting with backoff, as `inloop-client` does natively.

use std::rc::{Rc, Weak};

pub use inloop_sync::Status;
use inloop_sync::{ClientEvent, MERGE_BYTES};
pub(crate) use inloop_sync::{FIRST_BACKOFF_MS, MAX_BACKOFF_MS};
use js_sys::{ArrayBuffer, Uint8Array};
use serde::Serialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::engine::Inner;
use crate::error::js_message;

/// What a status callback receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StatusReport {
    #[serde(flatten)]
    pub(crate) status: Status,
    /// Local changes the relay has not acknowledged as stored yet.
    pub(crate) unacknowledged: u64,
}

/// One open (or opening) socket and the handlers that must live as long as it.
pub(crate) struct Socket {
    ws: WebSocket,
    open: bool,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("open", &self.open).finish()
    }
}

impl Socket {
    fn detach(&self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

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

/// Opens a connection (the first, or the next after a backoff).
pub(crate) fn connect(inner: &Rc<Inner>) {
    let Some(endpoint) = inner.url.clone() else {
        return;
    };
    let url = &endpoint.url;
    if inner.closed.get() {
        return;
    }
    inner.set_status(Status::Connecting);
    let ws = match endpoint.open() {
        Ok(ws) => ws,
        Err(error) => {
            // A malformed URL will stay malformed.
            inner.set_status(Status::Closed {
                code: None,
                reason: format!("cannot open {url}: {}", js_message(&error)),
            });
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak = Rc::downgrade(inner);
    let on_open = Closure::<dyn FnMut()>::new(move || with(&weak, opened));
    let weak = Rc::downgrade(inner);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        with(&weak, |inner| message(inner, event.data()));
    });
    let weak = Rc::downgrade(inner);
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
        with(&weak, |inner| closed(inner, event.code(), event.reason()));
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    *inner.socket.borrow_mut() = Some(Socket {
        ws,
        open: false,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

fn with(weak: &Weak<Inner>, f: impl FnOnce(&Rc<Inner>)) {
    if let Some(inner) = weak.upgrade() {
        f(&inner);
        inner.deliver();
    }
}

fn opened(inner: &Rc<Inner>) {
    if let Some(socket) = inner.socket.borrow_mut().as_mut() {
        socket.open = true;
    }
    inner.set_status(Status::Syncing);
    // Changes made before this connection travel in its sync step 2.
    inner.unsent.borrow_mut().clear();
    let frames = inner.session.borrow_mut().connected();
    for frame in frames {
        send(inner, &frame);
    }
    // The session forgot the other peers' presence; they resend it on this connection.
    inner.presence_changed();
}

fn message(inner: &Rc<Inner>, data: wasm_bindgen::JsValue) {
    let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
        return; // y-websocket is binary only
    };
    let frame = Uint8Array::new(buffer).to_vec();
    let received = inner.session.borrow_mut().receive(&frame);
    let received = match received {
        Ok(received) => received,
        Err(error) => {
            // Our state may be behind a bad frame: drop the connection and resync.
            drop_socket(inner, 4000, &format!("bad frame from the relay: {error}"));
            return;
        }
    };
    for reply in &received.replies {
        send(inner, reply);
    }
    for event in received.events {
        match event {
            ClientEvent::Synced => {
                inner.backoff_ms.set(FIRST_BACKOFF_MS);
                inner.set_status(Status::Synced);
            }
            ClientEvent::Acknowledged => inner.counts_changed(),
            ClientEvent::PresenceChanged => inner.presence_changed(),
            ClientEvent::Refused(reason) => {
                if let Some(socket) = inner.socket.borrow_mut().take() {
                    socket.detach();
                    let _ = socket.ws.close();
                }
                inner.set_status(Status::Closed { code: None, reason });
            }
            ClientEvent::Limits(limits) => {
                inner
                    .runner
                    .set_limits(inloop_kernel::RelayLimits::from_relay(
                        limits.max_document_bytes,
                        limits.max_message_bytes,
                    ))
            }
            ClientEvent::Lease(_) => {}
        }
    }
}

fn closed(inner: &Rc<Inner>, code: u16, reason: String) {
    if let Some(socket) = inner.socket.borrow_mut().take() {
        socket.detach();
    }
    if inner.closed.get() {
        return;
    }
    if inloop_sync::close_is_final(code) {
        inner.set_status(Status::Closed {
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
    inner.set_status(Status::Offline {
        code: Some(code),
        reason,
    });
    let wait = inner.backoff_ms.get();
    inner
        .backoff_ms
        .set((wait.saturating_mul(2)).min(MAX_BACKOFF_MS));
    let weak = Rc::downgrade(inner);
    let retry = gloo_timers::callback::Timeout::new(wait, move || {
        // (The finished timer stays in `retry` until the next one replaces it: dropping it here
        // would free this closure while it runs.)
        with(&weak, connect);
    });
    *inner.retry.borrow_mut() = Some(retry);
}

/// Closes the socket and goes through the usual reconnection.
fn drop_socket(inner: &Rc<Inner>, code: u16, reason: &str) {
    let socket = inner.socket.borrow_mut().take();
    if let Some(socket) = socket {
        socket.detach();
        let _ = socket.ws.close_with_code_and_reason(code, reason);
    }
    closed(inner, code, reason.to_owned());
}

/// Sends a frame if the socket is open (frames for a closed one are covered by the next sync).
pub(crate) fn send(inner: &Inner, frame: &[u8]) -> bool {
    let socket = inner.socket.borrow();
    match socket.as_ref() {
        Some(socket) if socket.open => socket.ws.send_with_u8_array(frame).is_ok(),
        _ => false,
    }
}

/// Whether a socket is open to the relay right now.
pub(crate) fn is_open(inner: &Inner) -> bool {
    inner.socket.borrow().as_ref().is_some_and(|s| s.open)
}

/// Sends the local changes made since the last send, merged into as few messages as the
/// relay's message size allows.
pub(crate) fn send_unsent(inner: &Rc<Inner>) {
    let updates = std::mem::take(&mut *inner.unsent.borrow_mut());
    if updates.is_empty() || !is_open(inner) {
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
        let frames = inner.session.borrow_mut().updates_frames(&batch);
        match frames {
            Ok(frames) => {
                for frame in frames {
                    send(inner, &frame);
                }
            }
            Err(error) => {
                let reason = format!("could not send local changes: {error}");
                drop_socket(inner, 4000, &reason);
                return;
            }
        }
    }
}

/// Closes for good (the engine's `close()`).
pub(crate) fn shut(inner: &Inner) {
    if let Some(retry) = inner.retry.borrow_mut().take() {
        retry.cancel();
    }
    if let Some(socket) = inner.socket.borrow_mut().take() {
        socket.detach();
        let _ = socket.ws.close_with_code_and_reason(1000, "closed");
    }
}
