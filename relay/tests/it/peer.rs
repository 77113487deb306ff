//! A native peer over a real WebSocket: an inloop-doc notebook kept in sync through
//! inloop-sync's `ClientSession`, as the runtime and agents will do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use inloop_doc::{Notebook, UpdateSubscription};
use inloop_sync::{ClientEvent, ClientSession, LeaseMessage};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How the connection ended: the relay's close code and reason, or `None` for no close frame.
pub(crate) type Closed = Option<(u16, String)>;

#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) notebook: Notebook,
    session: Arc<Mutex<ClientSession>>,
    outgoing: mpsc::UnboundedSender<Message>,
    synced: watch::Receiver<bool>,
    closed: watch::Receiver<Option<Closed>>,
    lease: Arc<Mutex<Vec<LeaseMessage>>>,
    paused: watch::Sender<bool>,
    _local_updates: UpdateSubscription,
}

impl Peer {
    /// Connects a fresh notebook.
    pub(crate) async fn connect(url: &str) -> Result<Self, String> {
        Self::connect_with(url, Notebook::new()).await
    }

    /// Connects `notebook`.
    pub(crate) async fn connect_with(url: &str, notebook: Notebook) -> Result<Self, String> {
        Self::open(url, notebook, None).await
    }

    /// Connects with a fixed, small TCP receive buffer, so a paused reader stalls the relay's
    /// sends after little data (the kernel would otherwise grow the buffer to tens of MB).
    pub(crate) async fn connect_small_buffer(url: &str) -> Result<Self, String> {
        Self::open(url, Notebook::new(), Some(16 << 10)).await
    }

    async fn open(
        url: &str,
        notebook: Notebook,
        receive_buffer: Option<u32>,
    ) -> Result<Self, String> {
        let authority = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default();
        let addr: std::net::SocketAddr =
            authority.parse().map_err(|e| format!("{authority}: {e}"))?;
        let tcp = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(size) = receive_buffer {
            tcp.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
        }
        let stream = tcp.connect(addr).await.map_err(|e| e.to_string())?;
        let (socket, _) =
            tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => {
                        let body = response
                            .body()
                            .as_ref()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default();
                        format!("HTTP {}: {body}", response.status().as_u16())
                    }
                    other => other.to_string(),
                })?;
        let (mut sink, mut stream) = socket.split();
        let session = Arc::new(Mutex::new(ClientSession::new(notebook.clone())));
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
        let (synced_tx, synced) = watch::channel(false);
        let (closed_tx, closed) = watch::channel(None);
        let (paused_tx, mut paused) = watch::channel(false);
        let lease = Arc::new(Mutex::new(Vec::new()));

        let sender = outgoing.clone();
        let local_updates = notebook
            .observe_local_updates(move |update| {
                let frame = ClientSession::update_frame(update);
                let _ = sender.send(Message::Binary(frame.into()));
            })
            .map_err(|e| e.to_string())?;
        for frame in session.lock().unwrap().connected() {
            let _ = outgoing.send(Message::Binary(frame.into()));
        }

        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_session = session.clone();
        let replies = outgoing.clone();
        let reader_lease = lease.clone();
        tokio::spawn(async move {
            let mut how = None;
            loop {
                // A paused peer reads nothing: the relay's frames pile up, as for a stalled client.
                if paused.wait_for(|p| !*p).await.is_err() {
                    break;
                }
                let Some(message) = stream.next().await else {
                    break;
                };
                match message {
                    Ok(Message::Binary(frame)) => {
                        let received = reader_session.lock().unwrap().receive(&frame);
                        let received = match received {
                            Ok(received) => received,
                            Err(error) => panic!("the relay sent a bad frame: {error}"),
                        };
                        for reply in received.replies {
                            let _ = replies.send(Message::Binary(reply.into()));
                        }
                        for event in received.events {
                            match event {
                                ClientEvent::Synced => {
                                    let _ = synced_tx.send(true);
                                }
                                ClientEvent::Lease(message) => {
                                    reader_lease.lock().unwrap().push(message)
                                }
                                _ => {}
                            }
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        how = frame.map(|f: CloseFrame| (u16::from(f.code), f.reason.to_string()));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = closed_tx.send(Some(how));
        });
        Ok(Self {
            notebook,
            session,
            outgoing,
            synced,
            closed,
            lease,
            paused: paused_tx,
            _local_updates: local_updates,
        })
    }

    /// Stops reading the socket (it stays open), as a client that stalled.
    pub(crate) fn pause_reading(&self) {
        self.paused.send_replace(true);
    }

    pub(crate) fn resume_reading(&self) {
        self.paused.send_replace(false);
    }

    pub(crate) async fn wait_synced(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.synced.wait_for(|s| *s))
            .await
            .expect("synced within 10 s")
            .expect("connection open");
    }

    /// Sends raw bytes as one binary message (for bad-input tests).
    pub(crate) fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.outgoing.send(Message::Binary(bytes.into()));
    }

    pub(crate) fn send_text(&self, text: &str) {
        let _ = self.outgoing.send(Message::Text(text.into()));
    }

    pub(crate) fn set_presence(&self, json: &str) {
        let frame = self.session.lock().unwrap().set_presence(Some(json));
        self.send_raw(frame);
    }

    /// Others' presence states (JSON).
    pub(crate) fn presence(&self) -> Vec<String> {
        let session = self.session.lock().unwrap();
        let mut states: Vec<String> = session
            .presence()
            .map(|(_, json)| json.to_owned())
            .collect();
        states.sort();
        states
    }

    pub(crate) fn lease(&self, message: LeaseMessage) {
        self.send_raw(ClientSession::lease_frame(message));
    }

    /// Lease messages received so far.
    pub(crate) fn lease_events(&self) -> Vec<LeaseMessage> {
        self.lease.lock().unwrap().clone()
    }

    /// How the relay closed the connection, once it has.
    pub(crate) fn closed(&self) -> Option<Closed> {
        self.closed.borrow().clone()
    }

    pub(crate) async fn wait_closed(&mut self, timeout: Duration) -> Closed {
        tokio::time::timeout(timeout, self.closed.wait_for(Option::is_some))
            .await
            .expect("the relay closed the connection in time")
            .expect("watch alive")
            .clone()
            .flatten()
    }

    pub(crate) fn source(&self, cell: u32) -> String {
        let id = &self.notebook.cell_ids()[cell as usize];
        self.notebook.source(id).unwrap()
    }
}
