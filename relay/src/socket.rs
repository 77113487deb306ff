//! `GET /api/docs/{doc_id}/ws`: the handshake (token, limits) and one task pair per connection,
//! a reader feeding the document's room and a writer draining what the room queued for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use inloop_sync::Credentials;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::doc_id::DocId;
use crate::rooms::{Close, Command, PeerId, PeerLink, RoomHandle};
use crate::{AppState, Refusal};

static NEXT_PEER: AtomicU64 = AtomicU64::new(1);

/// How long a closing connection may take to accept its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes read from the socket at a time. tungstenite allocates (and fills) this buffer up front
/// for every connection, so its default of 128 KiB made each idle connection cost 137 KiB; peers
/// send small frames, and a larger message is still read whole (the buffer grows to fit it).
const READ_BUFFER: usize = 2 << 10;

/// Frames taken from a peer's queue for one socket write: all of them go out in one system call
/// instead of one each, which was half of the relay's CPU time under fan-out. The batch's vector
/// grows on first use, so idle connections do not hold one.
const WRITE_BATCH: usize = 256;

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

pub(crate) async fn upgrade(
    doc_id: Result<DocId, Refusal>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    // Browsers cannot set headers on a WebSocket, so a token may come as the subprotocol. It is
    // echoed on every answer, refusals included: a browser fails a handshake whose subprotocol
    // is not echoed as 1006, without the close code that says why.
    let subprotocol = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').map(str::trim).find(|p| p.starts_with("il1.")))
        .map(str::to_owned);
    let ws = ws.map(|ws| match &subprotocol {
        Some(protocol) => ws.protocols([protocol.clone()]),
        None => ws,
    });
    // The id first, then whether this is a WebSocket at all: a bad id is refused the way the
    // request can hear it.
    let (doc_id, ws) = match (doc_id, ws) {
        (Ok(DocId(doc_id)), Ok(ws)) => (doc_id, ws),
        (Err(refusal), Ok(ws)) => return refuse(ws, refusal),
        (Err(refusal), Err(_)) => return refusal.into_response(),
        (Ok(_), Err(rejection)) => {
            return Refusal(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let token = query.token.or(subprotocol);
    let credentials = match state.authorize_peer(token.as_deref(), &doc_id) {
        Ok(credentials) => credentials,
        Err(refusal) => return refuse(ws, refusal),
    };
    let room = match state.room(&doc_id, credentials.role).await {
        Ok(room) => room,
        Err(refusal) => return refuse(ws, refusal),
    };
    let limits = &state.config().limits;
    if room.peers() >= limits.max_connections_per_document {
        let reason = format!(
            "the document has {} connections, its limit; try again later",
            limits.max_connections_per_document
        );
        return refuse(ws, Refusal(StatusCode::SERVICE_UNAVAILABLE, reason));
    }
    let ws = ws
        .read_buffer_size(READ_BUFFER)
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes);
    ws.on_upgrade(move |socket| connection(state, doc_id, credentials, room, socket))
}

/// Answers a refused handshake with a WebSocket that closes at once, saying why: a browser sees
/// a refused upgrade only as close code 1006, with no status and no reason, and would retry a
/// bad token forever. 4400 + the HTTP status (4401 a bad token, 4403 a token for another
/// document, 4404 no such document) tells every client not to retry; 1013 says try later.
fn refuse(ws: WebSocketUpgrade, Refusal(status, reason): Refusal) -> Response {
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => 1013,
        status if status.is_client_error() => 4000 + status.as_u16(),
        _ => 1011,
    };
    ws.on_upgrade(move |mut socket| async move {
        let close = CloseFrame {
            code,
            reason: close_reason(&reason).into(),
        };
        let goodbye = async {
            if socket.send(Message::Close(Some(close))).await.is_ok() {
                // The peer has likely written its first frames already.
                read_until_close(&mut socket).await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
    })
}

/// Reads, discarding, until the peer's close frame (or the end): after sending ours, dropping a
/// socket with data unread would reset the connection, and the peer could lose our close frame
/// and its reason with it (then retry, as after a network error, instead of giving up).
async fn read_until_close<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

/// A close frame's reason holds at most 123 bytes.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The relay's pings to one peer: one every `ping_interval`; a peer that left
/// `max_missed_pongs` of them in a row unanswered (nothing heard from it since) is dead, its
/// TCP connection most likely half-open (the other end gone without a FIN), and is dropped.
struct Pings {
    interval: Option<tokio::time::Interval>,
    every: std::time::Duration,
    max_missed: u32,
    unanswered: Arc<AtomicU32>,
}

impl Pings {
    fn new(limits: &crate::Limits, unanswered: Arc<AtomicU32>) -> Self {
        let every = limits.ping_interval;
        let interval = (!every.is_zero()).then(|| {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self {
            interval,
            every,
            max_missed: limits.max_missed_pongs,
            unanswered,
        }
    }

    /// When the next ping is due (never, with pings off).
    async fn due(&mut self) {
        match &mut self.interval {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The close for a dead peer; otherwise counts the ping about to be sent.
    fn dead(&self) -> Option<Close> {
        let missed = self.unanswered.fetch_add(1, Relaxed);
        (missed >= self.max_missed).then(|| {
            Close::new(
                1001,
                format!(
                    "no answer to {missed} pings in {} s: the connection seems dead; reconnect",
                    (self.every * missed).as_secs()
                ),
            )
        })
    }
}

/// Counts messages per second over a one-second window.
struct RateLimit {
    per_second: u32,
    window_start: Instant,
    in_window: u32,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    fn allow(&mut self) -> bool {
        if self.window_start.elapsed().as_secs() >= 1 {
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        self.in_window += 1;
        self.in_window <= self.per_second
    }
}

async fn connection(
    state: AppState,
    doc_id: String,
    credentials: Credentials,
    mut room: RoomHandle,
    socket: WebSocket,
) {
    let peer: PeerId = NEXT_PEER.fetch_add(1, Relaxed);
    let metrics = state.metrics().clone();
    metrics.connections.fetch_add(1, Relaxed);
    let limits = state.config().limits.clone();
    let (frames_tx, mut frames) = mpsc::channel::<Bytes>(limits.outgoing_queue);
    let (close_tx, mut close_rx) = watch::channel::<Option<Close>>(None);
    let link = PeerLink {
        frames: frames_tx,
        close: close_tx.clone(),
    };

    // Join, loading the room again if it unloaded since the handshake.
    let role = credentials.role;
    let mut join = Command::Join {
        peer,
        credentials,
        link: link.clone(),
    };
    for _ in 0..3 {
        match room.send(join).await {
            Ok(()) => break,
            Err(returned) => {
                join = returned;
                match state.room(&doc_id, role).await {
                    Ok(reloaded) => room = reloaded,
                    Err(_) => break,
                }
            }
        }
    }
    drop(link);
    tracing::debug!(doc_id, peer, %role, "peer connected");

    let (mut sink, mut stream) = socket.split();
    let send_timeout = limits.send_timeout;
    let writer_metrics = metrics.clone();
    let writer_close = close_tx.clone();
    let writer_doc_id = doc_id.clone();
    // Pings sent since the peer was last heard from (any frame counts, a pong or not).
    let unanswered = Arc::new(AtomicU32::new(0));
    let mut pings = Pings::new(&limits, unanswered.clone());
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                // Frames first: what was queued before a close still goes out.
                biased;
                taken = frames.recv_many(&mut batch, WRITE_BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    // tungstenite buffers fed frames; the flush writes them together.
                    let write = async {
                        for frame in batch.drain(..) {
                            sink.feed(Message::Binary(frame)).await?;
                        }
                        sink.flush().await
                    };
                    tokio::select! {
                        sent = write => if sent.is_err() { return },
                        // A peer that stopped reading can block a send forever: give up on it.
                        _ = close_rx.changed() => break,
                        // Its queue may never fill if the frames are few and large.
                        () = tokio::time::sleep(send_timeout) => {
                            writer_metrics.disconnects_slow.fetch_add(1, Relaxed);
                            writer_close.send_replace(Some(Close::new(
                                1013,
                                "too slow: the connection stopped taking data; reconnect to resync",
                            )));
                            break;
                        }
                    }
                }
                _ = close_rx.changed() => break,
                () = pings.due() => {
                    if let Some(close) = pings.dead() {
                        writer_metrics.disconnects_unresponsive.fetch_add(1, Relaxed);
                        tracing::info!(doc_id = %writer_doc_id, peer, reason = %close.reason, "dropping peer");
                        writer_close.send_replace(Some(close));
                        break;
                    }
                    let ping = tokio::time::timeout(send_timeout, sink.send(Message::Ping(Bytes::new())));
                    if !matches!(ping.await, Ok(Ok(()))) {
                        break;
                    }
                    writer_metrics.pings.fetch_add(1, Relaxed);
                }
            }
        }
        let close = close_rx.borrow().clone();
        let goodbye = async {
            if let Some(close) = close {
                let frame = CloseFrame {
                    code: close.code,
                    reason: close_reason(&close.reason).into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
            }
            // Also sends the reply tungstenite queued if the peer closed first.
            let _ = sink.close().await;
        };
        // A stalled peer cannot take even the close frame; the connection just ends.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
    });

    let mut rate = RateLimit::new(limits.max_messages_per_second);
    let mut closed = close_tx.subscribe();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = closed.changed() => break,
        };
        unanswered.store(0, Relaxed);
        let close = match message {
            Some(Ok(Message::Binary(frame))) => {
                metrics.bytes_in.fetch_add(frame.len() as u64, Relaxed);
                if !rate.allow() {
                    Some(Close::new(
                        4429,
                        format!(
                            "too many messages: the limit is {} a second",
                            limits.max_messages_per_second
                        ),
                    ))
                } else if room.send(Command::Frame { peer, frame }).await.is_err() {
                    Some(Close::new(1012, "the document is reloading; reconnect"))
                } else {
                    None
                }
            }
            Some(Ok(Message::Text(_))) => Some(Close::new(
                4400,
                "text frames are not part of the protocol: send binary y-websocket messages",
            )),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(error)) => {
                // Oversized messages end up here (tungstenite's CapacityError, which axum does
                // not expose as a type), as do broken connections.
                let too_big = error.to_string().contains("too long");
                if too_big {
                    Some(Close::new(
                        1009,
                        format!(
                            "message too big: the limit is {} bytes",
                            limits.max_message_bytes
                        ),
                    ))
                } else {
                    break;
                }
            }
        };
        if let Some(close) = close {
            tracing::info!(doc_id, peer, code = close.code, reason = %close.reason, "closing peer");
            metrics.disconnects_protocol.fetch_add(1, Relaxed);
            close_tx.send_replace(Some(close));
            break;
        }
    }
    let _ = room.send(Command::Leave { peer }).await;
    // The room dropped its sender on Leave; a close already sent ends the writer at once.
    close_tx.send_if_modified(|_| true);
    // When the relay closed, read on until the peer answers with its own close frame.
    if close_tx.borrow().is_some() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, read_until_close(&mut stream)).await;
    }
    let _ = writer.await;
    metrics.connections.fetch_sub(1, Relaxed);
    tracing::debug!(doc_id, peer, "peer disconnected");
}
