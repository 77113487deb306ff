//! A native inloop peer: a notebook kept in sync with a relay over a WebSocket.
//!
//! Server runtimes, `inloop run --relay`, agents and the integration tests are all peers like a
//! browser. [`Client`] owns the socket and the reconnection; the protocol is
//! `inloop_sync::ClientSession`'s.
//!
//! # Features
//!
//! - Edits made on [`Client::notebook`] go to the relay as they happen; peers' edits arrive
//!   into it (observe it with `Notebook::observe`).
//! - Reconnects with exponential backoff (100 ms to 5 s) when the connection drops or the relay
//!   restarts; edits made meanwhile are kept and merged on reconnection by the sync exchange.
//!   A refusal (bad token, closes 4400 to 4499) is final.
//! - [`Status`] to watch: connecting, syncing, synced, offline, closed.
//! - Presence (awareness) and the runtime lease messages.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn run() -> Result<(), inloop_client::Error> {
//! use inloop_client::{Client, ClientOptions};
//! use inloop_doc::{CellType, Notebook};
//!
//! let url = "ws://127.0.0.1:8787/api/docs/DOC/ws?token=TOKEN";
//! let client = Client::connect(url, Notebook::new(), ClientOptions::default());
//! client.wait_synced(std::time::Duration::from_secs(10)).await?;
//! client.notebook().insert_cell(0, CellType::Markdown, "# Hello from Rust")?;
//! # Ok(()) }
//! ```

pub mod api;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use inloop_doc::{Notebook, UpdateSubscription};
pub use inloop_sync::Status;
use inloop_sync::{ClientEvent, ClientSession, LeaseMessage, MERGE_BYTES, SizeLimits};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{self, Message};

const FIRST_BACKOFF: Duration = Duration::from_millis(inloop_sync::FIRST_BACKOFF_MS as u64);
const MAX_BACKOFF: Duration = Duration::from_millis(inloop_sync::MAX_BACKOFF_MS as u64);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Doc(#[from] inloop_doc::Error),
    /// The relay refused the connection for good (bad token, protocol violation).
    #[error("the relay refused the connection: {0}")]
    Refused(String),
    #[error("not synced with the relay within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Url(String),
    /// A call of the relay's HTTP API failed ([`api::request`]).
    #[error("{0}")]
    Http(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Try again after a dropped connection (on by default through [`ClientOptions::new`]).
    pub reconnect: bool,
    /// A fixed TCP receive buffer, in bytes. Tests use a small one to stall a paused reader
    /// quickly; by default the kernel sizes it.
    pub receive_buffer: Option<u32>,
}

impl ClientOptions {
    pub fn new() -> Self {
        Self {
            reconnect: true,
            receive_buffer: None,
        }
    }
}

enum Outgoing {
    /// A frame for this connection only; dropped if the connection ends first.
    Frame(Vec<u8>),
    /// A local change (an update, not yet a frame): dropped while offline, since reconnecting
    /// syncs it anyway. Consecutive ones go out merged.
    Update(Vec<u8>),
    Close,
}

/// A notebook synced with a relay. Dropping the client closes the connection.
#[derive(Debug)]
pub struct Client {
    notebook: Notebook,
    session: Arc<Mutex<ClientSession>>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    status: watch::Receiver<Status>,
    lease: watch::Sender<Vec<LeaseMessage>>,
    limits: watch::Sender<Option<SizeLimits>>,
    paused: watch::Sender<bool>,
    /// Local changes queued for the connection task and not yet counted by the session.
    queued_changes: Arc<AtomicU64>,
    /// Connections tried so far, the first included.
    attempts: Arc<AtomicU64>,
    _local_updates: UpdateSubscription,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outgoing::Frame(_) => "Frame",
            Outgoing::Update(_) => "Update",
            Outgoing::Close => "Close",
        })
    }
}

impl Client {
    /// Starts connecting `notebook` to the document at `url` (`ws://…/api/docs/ID/ws?token=…`).
    /// Returns at once; watch [`Client::status`] or await [`Client::wait_synced`].
    pub fn connect(url: &str, notebook: Notebook, options: ClientOptions) -> Self {
        let session = Arc::new(Mutex::new(ClientSession::new(notebook.clone())));
        let (outgoing, queue) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status::Connecting);
        let (paused, paused_rx) = watch::channel(false);
        let lease = watch::Sender::new(Vec::new());
        let limits = watch::Sender::new(None);
        let sender = outgoing.clone();
        let queued_changes = Arc::new(AtomicU64::new(0));
        let queued = queued_changes.clone();
        let attempts = Arc::new(AtomicU64::new(0));
        // Counted here, not in the session: this runs inside the editing transaction, and the
        // connection task may hold the session while it waits for the document.
        let local_updates = notebook
            .observe_local_updates(move |update| {
                queued.fetch_add(1, Ordering::SeqCst);
                let _ = sender.send(Outgoing::Update(update.to_vec()));
            })
            .unwrap_or_else(|_| unreachable!("a client is made outside transactions"));
        let connection = Connection {
            url: url.to_owned(),
            options,
            session: session.clone(),
            queue,
            queued_changes: queued_changes.clone(),
            attempts: attempts.clone(),
            status: status_tx,
            lease: lease.clone(),
            limits: limits.clone(),
            paused: paused_rx,
        };
        tokio::spawn(connection.run());
        Self {
            notebook,
            session,
            outgoing,
            status,
            lease,
            limits,
            paused,
            queued_changes,
            attempts,
            _local_updates: local_updates,
        }
    }

    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until the relay's state has arrived on the current connection.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let mut status = self.status.clone();
        let synced = status.wait_for(|s| matches!(s, Status::Synced | Status::Closed { .. }));
        match tokio::time::timeout(timeout, synced).await {
            Ok(Ok(status)) => match &*status {
                Status::Closed { reason, .. } => Err(Error::Refused(reason.clone())),
                _ => Ok(()),
            },
            Ok(Err(_)) => Err(Error::Refused("the connection task ended".into())),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Waits until the connection is closed for good; returns the code and reason.
    pub async fn wait_closed(&self, timeout: Duration) -> Option<(Option<u16>, String)> {
        let mut status = self.status.clone();
        let closed = status.wait_for(|s| matches!(s, Status::Closed { .. }));
        match tokio::time::timeout(timeout, closed).await {
            Ok(Ok(status)) => match &*status {
                Status::Closed { code, reason } => Some((*code, reason.clone())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The relay's size limits, once a connection has told them.
    pub fn relay_limits(&self) -> Option<SizeLimits> {
        *self.limits.borrow()
    }

    /// Local changes the relay has not acknowledged as stored yet (made offline, queued, or in
    /// flight): 0 once everything this peer wrote is safe on the relay.
    pub fn unacknowledged(&self) -> u64 {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        session.unacknowledged() + self.queued_changes.load(Ordering::SeqCst)
    }

    /// How many times this client has tried to connect, the first time included. Each failed
    /// attempt while offline is followed by a wait (the backoff) in which local changes are
    /// taken off the queue: once this has grown by two, the client has been through at least
    /// one whole wait since (tests wait on it instead of sleeping while offline).
    pub fn connection_attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Waits until the relay has stored everything this peer wrote, for at most `limit`;
    /// whether it has.
    pub async fn wait_stored(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.unacknowledged() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sets this peer's presence (a JSON object: name, colour, cursor…).
    pub fn set_presence(&self, json: &str) {
        let frame = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_presence(Some(json));
        let _ = self.outgoing.send(Outgoing::Frame(frame));
    }

    /// The other peers' presence, as JSON, sorted.
    pub fn presence(&self) -> Vec<String> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut states: Vec<String> = session
            .presence()
            .map(|(_, json)| json.to_owned())
            .collect();
        states.sort();
        states
    }

    /// Sends a lease request, heartbeat or release.
    pub fn send_lease(&self, message: LeaseMessage) {
        let _ = self
            .outgoing
            .send(Outgoing::Frame(ClientSession::lease_frame(message)));
    }

    /// The lease messages received so far, oldest first.
    pub fn lease_events(&self) -> Vec<LeaseMessage> {
        self.lease.borrow().clone()
    }

    /// A receiver that wakes on every lease message (the whole history, newest last).
    pub fn watch_lease(&self) -> watch::Receiver<Vec<LeaseMessage>> {
        self.lease.subscribe()
    }

    /// Sends bytes as they are, one binary message: for testing how the relay takes bad input.
    pub fn send_raw(&self, frame: Vec<u8>) {
        let _ = self.outgoing.send(Outgoing::Frame(frame));
    }

    /// Stops reading the socket while keeping it open, as a client that stalled (testing).
    pub fn pause_reading(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume_reading(&self) {
        self.paused.send_replace(false);
    }

    /// Closes the connection for good.
    pub fn close(&self) {
        let _ = self.outgoing.send(Outgoing::Close);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

struct Connection {
    url: String,
    options: ClientOptions,
    session: Arc<Mutex<ClientSession>>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
    queued_changes: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
    status: watch::Sender<Status>,
    lease: watch::Sender<Vec<LeaseMessage>>,
    limits: watch::Sender<Option<SizeLimits>>,
    paused: watch::Receiver<bool>,
}

/// How one connection ended.
enum Ended {
    /// Try again.
    Dropped(Option<u16>, String),
    /// Stop.
    Final(Option<u16>, String),
}

impl Connection {
    /// Hands a local change taken off the queue to the session's count (sent or not, it is
    /// unacknowledged until the relay says so).
    fn dequeued(&self, item: &Outgoing) {
        if let Outgoing::Update(_) = item {
            self.change_dequeued();
        }
    }

    fn change_dequeued(&self) {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .local_change();
        self.queued_changes.fetch_sub(1, Ordering::SeqCst);
    }

    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.status.send_replace(Status::Connecting);
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let ended = match self.open().await {
                Ok(socket) => {
                    backoff = FIRST_BACKOFF;
                    self.serve(socket).await
                }
                Err(ended) => ended,
            };
            match ended {
                Ended::Final(code, reason) => {
                    self.status.send_replace(Status::Closed { code, reason });
                    return;
                }
                Ended::Dropped(code, reason) if self.options.reconnect => {
                    tracing::debug!(url = %self.url, %reason, ?backoff, "connection lost; retrying");
                    self.status.send_replace(Status::Offline { code, reason });
                    // Local changes queued meanwhile are synced by the next connection.
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            queued = self.queue.recv() => match queued {
                                None | Some(Outgoing::Close) => {
                                    self.status.send_replace(Status::Closed { code: None, reason: "closed".into() });
                                    return;
                                }
                                Some(item) => self.dequeued(&item),
                            },
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ended::Dropped(code, reason) => {
                    self.status.send_replace(Status::Closed { code, reason });
                    return;
                }
            }
        }
    }

    async fn open(
        &self,
    ) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Ended> {
        let authority = authority(&self.url).map_err(|e| Ended::Final(None, e.to_string()))?;
        let addr = tokio::net::lookup_host(authority)
            .await
            .ok()
            .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
            .ok_or_else(|| Ended::Dropped(None, format!("{authority}: no IPv4 address found")))?;
        let tcp =
            tokio::net::TcpSocket::new_v4().map_err(|e| Ended::Dropped(None, e.to_string()))?;
        if let Some(size) = self.options.receive_buffer {
            tcp.set_recv_buffer_size(size)
                .map_err(|e| Ended::Dropped(None, e.to_string()))?;
        }
        let stream = tcp
            .connect(addr)
            .await
            .map_err(|e| Ended::Dropped(None, format!("connecting to {addr}: {e}")))?;
        // Small frames, sent as they happen: Nagle's algorithm would hold them for an ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        // The relay bounds what it sends by its document limit; a message larger than
        // tungstenite's defaults (a large update relayed whole) must not cost the connection.
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let handshake =
            tokio_tungstenite::client_async_with_config(self.url.as_str(), stream, Some(config));
        match handshake.await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let reason = format!("HTTP {}: {body}", status.as_u16());
                // 4xx: the token or the document is wrong, and will stay so. 5xx: try again.
                if status.is_client_error() {
                    Err(Ended::Final(Some(status.as_u16()), reason))
                } else {
                    Err(Ended::Dropped(Some(status.as_u16()), reason))
                }
            }
            Err(error) => Err(Ended::Dropped(None, error.to_string())),
        }
    }

    async fn serve(
        &mut self,
        socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Ended {
        self.status.send_replace(Status::Syncing);
        let (mut sink, mut stream) = socket.split();
        // Whatever was queued before this connection is covered by the sync exchange below,
        // except what must go on every connection anyway (presence is resent by `connected`).
        while let Ok(item) = self.queue.try_recv() {
            self.dequeued(&item);
        }
        let first = self
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connected();
        for frame in first {
            if let Err(error) = sink.send(Message::Binary(frame.into())).await {
                return Ended::Dropped(None, error.to_string());
            }
        }
        let mut paused = self.paused.clone();
        loop {
            tokio::select! {
                queued = self.queue.recv() => {
                    let mut next = queued.or(Some(Outgoing::Close));
                    while let Some(item) = next.take() {
                        self.dequeued(&item);
                        let frames = match item {
                            Outgoing::Frame(frame) => vec![frame],
                            Outgoing::Update(update) => {
                                // With the updates queued right behind it, as one message
                                // (within reason: the relay limits the size of a message).
                                let mut bytes = update.len();
                                let mut updates = vec![update];
                                while bytes < MERGE_BYTES {
                                    match self.queue.try_recv() {
                                        Ok(Outgoing::Update(more)) => {
                                            self.change_dequeued();
                                            bytes += more.len();
                                            updates.push(more);
                                        }
                                        Ok(other) => {
                                            next = Some(other);
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                                let frames = self
                                    .session
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .updates_frames(&updates);
                                match frames {
                                    Ok(frames) => frames,
                                    Err(error) => return Ended::Dropped(None, error.to_string()),
                                }
                            }
                            Outgoing::Close => {
                                let _ = sink.send(Message::Close(None)).await;
                                return Ended::Final(None, "closed by this client".into());
                            }
                        };
                        for frame in frames {
                            if let Err(error) = sink.send(Message::Binary(frame.into())).await {
                                return Ended::Dropped(None, error.to_string());
                            }
                        }
                    }
                }
                message = async {
                    // A paused client reads nothing, so the relay's frames pile up.
                    let _ = paused.wait_for(|p| !*p).await;
                    stream.next().await
                } => {
                    match message {
                        Some(Ok(Message::Binary(frame))) => {
                            let received = self.session.lock().unwrap_or_else(|e| e.into_inner()).receive(&frame);
                            let received = match received {
                                Ok(received) => received,
                                // Our state may be behind a bad frame: reconnect and resync.
                                Err(error) => return Ended::Dropped(None, format!("bad frame from the relay: {error}")),
                            };
                            for reply in received.replies {
                                if let Err(error) = sink.send(Message::Binary(reply.into())).await {
                                    return Ended::Dropped(None, error.to_string());
                                }
                            }
                            for event in received.events {
                                match event {
                                    ClientEvent::Synced => {
                                        self.status.send_replace(Status::Synced);
                                    }
                                    ClientEvent::Lease(message) => {
                                        self.lease.send_modify(|history| history.push(message));
                                    }
                                    ClientEvent::Limits(limits) => {
                                        self.limits.send_replace(Some(limits));
                                    }
                                    ClientEvent::Refused(reason) => return Ended::Final(None, reason),
                                    ClientEvent::PresenceChanged | ClientEvent::Acknowledged => {}
                                }
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            return if inloop_sync::close_is_final(code) {
                                Ended::Final(Some(code), reason)
                            } else {
                                Ended::Dropped(Some(code), reason)
                            };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return Ended::Dropped(None, error.to_string()),
                        None => return Ended::Dropped(None, "the connection ended".into()),
                    }
                }
            }
        }
    }
}

/// The `host:port` of a `ws://` URL.
fn authority(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| Error::Url(format!("{url}: only ws:// URLs are supported")))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if !authority.contains(':') {
        return Err(Error::Url(format!(
            "{url}: give the relay's port (ws://HOST:PORT/…)"
        )));
    }
    Ok(authority)
}
