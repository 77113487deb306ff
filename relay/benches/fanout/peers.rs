//! The simulated clients: each one WebSocket doing the smallest y-websocket handshake (an empty
//! SyncStep1, an empty SyncStep2 for any SyncStep1 the server sends) and no Yjs document,
//! sending hand-encoded updates at its rate and timing what it receives.

use std::sync::Arc;
use std::sync::atomic::{
    AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::measure::Histogram;
use crate::wire::{
    MSG_SYNC, SYNC_STEP1, SYNC_STEP1_EMPTY, SYNC_STEP2, SYNC_STEP2_EMPTY, SYNC_UPDATE,
    for_each_item_range, update_frame, update_payload,
};

/// WebSocket handshakes in flight at once, so the servers' accept queues do not overflow.
const CONNECTS_IN_FLIGHT: usize = 64;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the clients of a step share.
pub(crate) struct Load {
    /// The clock of every timestamp below.
    epoch: Instant,
    /// The Yjs client id of sender 0; sender `i` is `first_client + i`.
    first_client: u64,
    /// Send time of each sender's clock, in nanoseconds since `epoch` plus one; 0: not sent.
    sent_at: Vec<Vec<AtomicU64>>,
    /// Updates sent in [measure_from, measure_until) (nanoseconds since `epoch`) are measured.
    pub(crate) measure_from: AtomicU64,
    pub(crate) measure_until: AtomicU64,
    /// Updates sent in the measured window.
    pub(crate) measured_sent: AtomicU64,
    /// Deliveries of measured updates.
    pub(crate) delivered: AtomicU64,
    /// Clients that finished the handshake.
    pub(crate) synced: AtomicUsize,
    /// Connections that ended before the step did.
    pub(crate) dropped: AtomicUsize,
    /// Update frames whose items the parser could not read, or with unknown senders.
    pub(crate) unreadable: AtomicU64,
    /// Update frames that carried more than one item (merged by the server).
    pub(crate) merged: AtomicU64,
}

impl Load {
    /// Shared state for `senders` clients sending up to `per_sender` updates each.
    pub(crate) fn new(first_client: u64, senders: usize, per_sender: usize) -> Self {
        Self {
            epoch: Instant::now(),
            first_client,
            sent_at: (0..senders)
                .map(|_| (0..per_sender).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            measure_from: AtomicU64::new(u64::MAX),
            measure_until: AtomicU64::new(u64::MAX),
            measured_sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            synced: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            unreadable: AtomicU64::new(0),
            merged: AtomicU64::new(0),
        }
    }

    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        at.duration_since(self.epoch).as_nanos() as u64
    }
}

/// What a client is doing; clients watch it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phase {
    Syncing,
    Sending { start: Instant, until: Instant },
    Stopped,
}

/// One client's result.
pub(crate) struct Tally {
    latencies: Histogram,
}

struct Peer {
    /// Index into `Load::sent_at`.
    index: usize,
    client_id: u64,
    /// Updates per second; 0 for an idle client.
    rate: f64,
}

async fn connect(url: &str) -> Result<Socket> {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(socket)
}

/// A client's life: handshake, then sending at its rate (with jitter) while counting what it
/// receives, until the phase says stop.
async fn run_client(
    mut socket: Socket,
    peer: Peer,
    load: Arc<Load>,
    mut phase: watch::Receiver<Phase>,
) -> Tally {
    let mut tally = Tally {
        latencies: Histogram::new(),
    };
    let mut synced = false;
    let mut clock = 0u64;
    let mut next_send: Option<tokio::time::Instant> = None;
    let mut send_until = Instant::now();
    let mut measure = (u64::MAX, u64::MAX);
    let interval = (peer.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / peer.rate));
    if socket
        .send(Message::binary(Bytes::from_static(&SYNC_STEP1_EMPTY)))
        .await
        .is_err()
    {
        load.dropped.fetch_add(1, Relaxed);
        return tally;
    }
    loop {
        let send_due = async {
            match next_send {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = socket.next() => {
                let frame = match message {
                    Some(Ok(Message::Binary(frame))) => frame,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        if *phase.borrow() != Phase::Stopped {
                            load.dropped.fetch_add(1, Relaxed);
                        }
                        return tally;
                    }
                    Some(Ok(_)) => continue,
                };
                match frame.get(..2) {
                    Some([MSG_SYNC, SYNC_STEP1]) => {
                        let reply = Message::binary(Bytes::from_static(&SYNC_STEP2_EMPTY));
                        if socket.send(reply).await.is_err() {
                            load.dropped.fetch_add(1, Relaxed);
                            return tally;
                        }
                    }
                    Some([MSG_SYNC, SYNC_STEP2]) if !synced => {
                        synced = true;
                        load.synced.fetch_add(1, Relaxed);
                    }
                    Some([MSG_SYNC, SYNC_UPDATE]) => {
                        count_update(&frame, &peer, &load, measure, &mut tally);
                    }
                    _ => {}
                }
            }
            _ = send_due => {
                let now = Instant::now();
                let sent_at = load.sent_at[peer.index].get(clock as usize);
                let (Some(interval), Some(sent_at)) = (interval, sent_at) else {
                    next_send = None;
                    continue;
                };
                if now >= send_until {
                    next_send = None;
                    continue;
                }
                let nanos = load.nanos(now);
                sent_at.store(nanos + 1, Release);
                if (measure.0..measure.1).contains(&nanos) {
                    load.measured_sent.fetch_add(1, Relaxed);
                }
                let frame = Message::binary(update_frame(peer.client_id, clock));
                clock += 1;
                if socket.send(frame).await.is_err() {
                    load.dropped.fetch_add(1, Relaxed);
                    return tally;
                }
                let jitter = 0.5 + fastrand::f64();
                let after = next_send.unwrap_or_else(tokio::time::Instant::now);
                next_send = Some(after + interval.mul_f64(jitter));
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return tally;
                }
                let current = *phase.borrow_and_update();
                match current {
                    Phase::Syncing => {}
                    Phase::Sending { start, until } => {
                        send_until = until;
                        measure = (
                            load.measure_from.load(Relaxed),
                            load.measure_until.load(Relaxed),
                        );
                        next_send = interval.map(|interval| {
                            tokio::time::Instant::from_std(start) + interval.mul_f64(fastrand::f64())
                        });
                    }
                    Phase::Stopped => {
                        let _ = socket.close(None).await;
                        return tally;
                    }
                }
            }
        }
    }
}

/// Counts the measured deliveries in an update frame, skipping the receiver's own updates.
fn count_update(
    frame: &[u8],
    peer: &Peer,
    load: &Load,
    (measure_from, measure_until): (u64, u64),
    tally: &mut Tally,
) {
    let Some(update) = update_payload(frame) else {
        load.unreadable.fetch_add(1, Relaxed);
        return;
    };
    let now = load.nanos(Instant::now());
    let mut items = 0;
    let mut delivered = 0;
    let mut unknown = false;
    let parsed = for_each_item_range(update, |client, clocks| {
        items += clocks.end - clocks.start;
        if client == peer.client_id {
            return; // an echo of our own update
        }
        let Some(sender) = client
            .checked_sub(load.first_client)
            .and_then(|i| load.sent_at.get(i as usize))
        else {
            unknown = true;
            return;
        };
        for clock in clocks {
            let sent = sender.get(clock as usize).map_or(0, |t| t.load(Acquire));
            if sent == 0 {
                unknown = true;
                continue;
            }
            let sent = sent - 1;
            if (measure_from..measure_until).contains(&sent) {
                delivered += 1;
                tally
                    .latencies
                    .record(Duration::from_nanos(now.saturating_sub(sent)));
            }
        }
    });
    if parsed.is_none() || unknown {
        load.unreadable.fetch_add(1, Relaxed);
    }
    if items > 1 {
        load.merged.fetch_add(1, Relaxed);
    }
    if delivered > 0 {
        load.delivered.fetch_add(delivered, Relaxed);
    }
}

/// Connects and starts `clients_per_doc` clients on each document, numbered from `first_index`.
pub(crate) async fn connect_clients(
    docs: &[String],
    clients_per_doc: usize,
    first_index: usize,
    rate: f64,
    load: &Arc<Load>,
    phase: &watch::Receiver<Phase>,
) -> Result<Vec<tokio::task::JoinHandle<Tally>>> {
    let in_flight = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut connecting = Vec::new();
    for (d, url) in docs.iter().enumerate() {
        for c in 0..clients_per_doc {
            let url = url.clone();
            let in_flight = in_flight.clone();
            let index = first_index + d * clients_per_doc + c;
            let peer = Peer {
                index,
                client_id: load.first_client + index as u64,
                rate,
            };
            let (load, phase) = (load.clone(), phase.clone());
            connecting.push(tokio::spawn(async move {
                let permit = in_flight.acquire_owned().await?;
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, connect(&url))
                    .await
                    .with_context(|| format!("connecting to {url}: timed out"))?
                    .with_context(|| format!("connecting to {url}"))?;
                drop(permit);
                anyhow::Ok(tokio::spawn(run_client(socket, peer, load, phase)))
            }));
        }
    }
    let mut clients = Vec::with_capacity(connecting.len());
    for connection in connecting {
        clients.push(connection.await??);
    }
    Ok(clients)
}

/// Waits for the clients to stop (after `Phase::Stopped`) and merges their latencies. A client
/// blocked sending to a server that no longer reads is ended instead; returns how many were.
pub(crate) async fn stop_clients(
    clients: Vec<tokio::task::JoinHandle<Tally>>,
) -> Result<(Histogram, usize)> {
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut latencies = Histogram::new();
    let mut stuck = 0;
    for mut client in clients {
        match tokio::time::timeout_at(deadline, &mut client).await {
            Ok(tally) => latencies.merge(&tally?.latencies),
            Err(_) => {
                client.abort();
                stuck += 1;
            }
        }
    }
    Ok((latencies, stuck))
}

pub(crate) async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
