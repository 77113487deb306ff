//! Loaded documents: one task per document owns its [`Room`] and serves its peers in batches.
//!
//! A batch is everything queued when the task wakes: its frames are handled in order, the
//! updates they carry are appended durably in one storage commit, and only then do any frames
//! go out. So no peer ever holds an update the relay could lose, and a busy document pays one
//! disk sync per batch rather than per update.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use inloop_sync::{Credentials, Outcome, Room};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use crate::local_runtime::LocalRuntimes;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::store::Append;
use crate::{Config, Error, Result};

pub(crate) type PeerId = u64;

/// How many commands one batch takes at most, so one busy room cannot starve its peers' sends.
const MAX_BATCH: usize = 1_024;
/// Commands a room queues before senders wait (back pressure on the sockets that feed it).
const INBOX: usize = 8_192;

/// Why the relay closes a connection: a WebSocket close code and a reason for the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

impl Close {
    pub(crate) fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The close for a refused frame. 4400 to 4499 tell y-websocket clients not to reconnect:
    /// resending the same bytes would fail the same way.
    fn refused(error: &inloop_sync::Error) -> Self {
        use inloop_sync::Error;
        let code = match error {
            Error::ReadOnly | Error::Forbidden { .. } | Error::ForeignClient { .. } => 4403,
            Error::DocumentTooLarge { .. } | Error::PresenceTooLarge(_) => 4413,
            // Not final: after backing off, the peer may come back and behave.
            Error::PresenceFlood { .. } => 4429,
            _ => 4400,
        };
        Self::new(code, error.to_string())
    }
}

/// The way from a room to one peer's socket.
#[derive(Debug, Clone)]
pub(crate) struct PeerLink {
    pub(crate) frames: mpsc::Sender<Bytes>,
    pub(crate) close: watch::Sender<Option<Close>>,
}

impl PeerLink {
    fn close(&self, close: Close) {
        self.close.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(close);
            }
            first
        });
    }
}

pub(crate) enum Command {
    Join {
        peer: PeerId,
        credentials: Credentials,
        link: PeerLink,
    },
    Frame {
        peer: PeerId,
        frame: Bytes,
    },
    Leave {
        peer: PeerId,
    },
    Export {
        reply: oneshot::Sender<String>,
    },
    /// Close the connections opened with this token (revoked).
    Disconnect {
        principal: String,
    },
    Import {
        ipynb: Bytes,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A loaded document's task, as its peers and the HTTP handlers reach it.
#[derive(Debug, Clone)]
pub(crate) struct RoomHandle {
    commands: mpsc::Sender<Command>,
    peers: Arc<AtomicUsize>,
}

impl RoomHandle {
    pub(crate) fn peers(&self) -> usize {
        self.peers.load(Relaxed)
    }

    /// Sends a command; gives it back if the room has unloaded meanwhile.
    pub(crate) async fn send(&self, command: Command) -> Result<(), Command> {
        self.commands.send(command).await.map_err(|e| e.0)
    }
}

/// The documents in memory, loaded on demand.
#[derive(Debug)]
pub(crate) struct Rooms {
    loaded: Mutex<HashMap<String, RoomHandle>>,
    storage: Storage,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Set once, when the relay shuts down: every room closes its peers and stops.
    shutdown: watch::Sender<bool>,
    local_runtimes: LocalRuntimes,
}

impl Rooms {
    pub(crate) fn new(
        storage: Storage,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        local_runtimes: LocalRuntimes,
    ) -> Self {
        Self {
            loaded: Mutex::new(HashMap::new()),
            storage,
            config,
            metrics,
            started: Instant::now(),
            shutdown: watch::Sender::new(false),
            local_runtimes,
        }
    }

    pub(crate) fn local_runtimes(&self) -> &LocalRuntimes {
        &self.local_runtimes
    }

    /// Closes every connection ("going away", so clients reconnect to the next relay) and
    /// waits for every room to stop and every connection to close. Updates are stored before they are sent, so nothing
    /// else needs flushing.
    pub(crate) async fn shut_down(&self) {
        self.shutdown.send_replace(true);
        self.local_runtimes.stop_all().await;
        while !self.loaded.lock().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let connections finish their close handshakes, so peers get the reason.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.metrics.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The document's room, loading it from storage if needed; `None` if it does not exist.
    pub(crate) async fn get(self: &Arc<Self>, doc_id: &str) -> Result<Option<RoomHandle>> {
        let mut loaded = self.loaded.lock().await;
        if let Some(handle) = loaded.get(doc_id) {
            if !handle.commands.is_closed() {
                return Ok(Some(handle.clone()));
            }
        }
        let Some(stored) = self.storage.load(doc_id).await? else {
            return Ok(None);
        };
        let notebook = stored.notebook()?;
        let room = Room::new(
            notebook,
            stored.stored_bytes(),
            stored.lease_epoch,
            self.config.limits.room(),
        );
        let (commands, inbox) = mpsc::channel(INBOX);
        let handle = RoomHandle {
            commands,
            peers: Arc::new(AtomicUsize::new(0)),
        };
        loaded.insert(doc_id.to_owned(), handle.clone());
        self.metrics.documents_loaded.fetch_add(1, Relaxed);
        let task = RoomTask {
            doc_id: doc_id.to_owned(),
            room,
            peers: BTreeMap::new(),
            peer_count: handle.peers.clone(),
            log_len: stored.updates.len(),
            rooms: self.clone(),
            inbox,
            held_lease: false,
            shutdown: self.shutdown.subscribe(),
        };
        tokio::spawn(task.run());
        tracing::debug!(doc_id, "document loaded");
        Ok(Some(handle))
    }

    /// Closes the connections to a loaded document opened with token `principal`.
    pub(crate) async fn disconnect_token(&self, doc_id: &str, principal: &str) {
        let handle = self.loaded.lock().await.get(doc_id).cloned();
        if let Some(handle) = handle {
            let command = Command::Disconnect {
                principal: principal.to_owned(),
            };
            // A room unloading meanwhile has no connections left to close.
            let _ = handle.send(command).await;
        }
    }

    /// Milliseconds since the relay started: the lease's clock.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Forgets a room that has stopped, unless a newer one took its place.
    async fn unloaded(&self, doc_id: &str) {
        let mut loaded = self.loaded.lock().await;
        if loaded.get(doc_id).is_some_and(|h| h.commands.is_closed()) {
            loaded.remove(doc_id);
        }
        self.metrics.documents_loaded.fetch_sub(1, Relaxed);
    }
}

struct RoomTask {
    doc_id: String,
    room: Room<PeerId>,
    /// A B-tree for the reason `inloop_sync::Room` keeps its peers in one: no large block
    /// that grows with the peer count (which cost idle connections 2 MiB of RSS per 1,000).
    peers: BTreeMap<PeerId, (Credentials, PeerLink)>,
    peer_count: Arc<AtomicUsize>,
    /// Updates appended since the last snapshot.
    log_len: usize,
    rooms: Arc<Rooms>,
    inbox: mpsc::Receiver<Command>,
    held_lease: bool,
    shutdown: watch::Receiver<bool>,
}

enum Answer {
    Export(oneshot::Sender<String>),
    Import(oneshot::Sender<Result<()>>, Result<()>),
}

/// Frames to send once the batch is stored.
enum Delivery {
    To(PeerId, Bytes),
    AllBut(Option<PeerId>, Bytes),
}

impl RoomTask {
    async fn run(mut self) {
        let idle_unload = self.rooms.config.limits.idle_unload;
        let mut idle_since = Some(Instant::now());
        let mut shutdown = self.shutdown.clone();
        // When to look again whether a local runtime must start (one was still stopping).
        let mut runtime_check: Option<tokio::time::Instant> = None;
        loop {
            let lease_deadline = self.room.next_deadline_ms().map(|at| {
                let wait = at.saturating_sub(self.rooms.now_ms());
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            let first = tokio::select! {
                command = self.inbox.recv() => command,
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    for (_, link) in self.peers.values() {
                        link.close(Close::new(1001, "the relay is shutting down; reconnect"));
                    }
                    self.inbox.close();
                    break;
                }
                _ = sleep_until(lease_deadline) => {
                    let outcome = self.room.tick(self.rooms.now_ms());
                    let mut deliveries = Vec::new();
                    let mut append = self.append();
                    self.collect(None, outcome, &mut append, &mut deliveries);
                    if !self.store_and_deliver(append, deliveries).await {
                        break;
                    }
                    // The lease may have just been freed with runs still queued.
                    runtime_check = self.check_runtime(true);
                    continue;
                }
                _ = sleep_until(runtime_check) => {
                    runtime_check = self.check_runtime(true);
                    continue;
                }
                _ = sleep_until(idle_since.map(|since| (since + idle_unload).into())) => {
                    // Stop taking commands; any that raced in are answered below.
                    self.inbox.close();
                    if self.inbox.is_empty() {
                        break;
                    }
                    idle_since = None;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.inbox.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            if !self.handle_batch(batch).await {
                break;
            }
            idle_since = self.peers.is_empty().then(Instant::now);
            if runtime_check.is_none() {
                runtime_check = self.check_runtime(false);
            }
        }
        self.shut_down().await;
    }

    /// Starts a local runtime if runs wait with no runtime holding the lease; returns when to
    /// check again, if a runtime started earlier was still running (perhaps on its way out).
    fn check_runtime(&mut self, recheck: bool) -> Option<tokio::time::Instant> {
        if !self.room.needs_runtime(recheck) || self.rooms.local_runtimes.ensure(&self.doc_id) {
            return None;
        }
        Some(tokio::time::Instant::now() + Duration::from_secs(1))
    }

    fn append(&self) -> Append {
        Append {
            doc_id: self.doc_id.clone(),
            ..Append::default()
        }
    }

    /// Handles a batch; false if the room must stop (storage failed).
    async fn handle_batch(&mut self, batch: Vec<Command>) -> bool {
        let now_ms = self.rooms.now_ms();
        let mut append = self.append();
        let mut deliveries = Vec::new();
        // HTTP requests are answered once the batch is stored, like frames.
        let mut answers = Vec::new();
        for command in batch {
            // After a refused update that was already applied, nothing more is served from this
            // copy of the document: it is dropped below and loaded again from storage.
            if self.room.is_tainted() {
                if let Command::Join { link, .. } = command {
                    link.close(Close::new(1012, "the document is reloading; reconnect"));
                }
                continue;
            }
            match command {
                Command::Join {
                    peer,
                    credentials,
                    link,
                } => {
                    for frame in self.room.join(peer, credentials.clone()) {
                        deliveries.push(Delivery::To(peer, Bytes::from(frame)));
                    }
                    self.peers.insert(peer, (credentials, link));
                    self.peer_count.store(self.peers.len(), Relaxed);
                }
                Command::Frame { peer, frame } => {
                    let Some((_, link)) = self.peers.get(&peer) else {
                        continue; // already disconnected in this batch
                    };
                    match self.room.receive(peer, &frame, now_ms) {
                        Ok(outcome) => {
                            self.collect(Some(peer), outcome, &mut append, &mut deliveries)
                        }
                        Err(error) => {
                            tracing::info!(doc_id = %self.doc_id, peer, %error, "peer refused");
                            self.rooms
                                .metrics
                                .disconnects_protocol
                                .fetch_add(1, Relaxed);
                            link.close(Close::refused(&error));
                            self.remove_peer(peer, now_ms, &mut append, &mut deliveries);
                        }
                    }
                }
                Command::Leave { peer } => {
                    self.remove_peer(peer, now_ms, &mut append, &mut deliveries);
                }
                Command::Export { reply } => answers.push(Answer::Export(reply)),
                Command::Disconnect { principal } => {
                    let revoked: Vec<PeerId> = self
                        .peers
                        .iter()
                        .filter(|(_, (credentials, _))| *credentials.principal == *principal)
                        .map(|(peer, _)| *peer)
                        .collect();
                    for peer in revoked {
                        if let Some((_, link)) = self.peers.get(&peer) {
                            link.close(Close::new(4401, "this link was revoked"));
                        }
                        self.remove_peer(peer, now_ms, &mut append, &mut deliveries);
                    }
                }
                Command::Import { ipynb, reply } => {
                    let result = self.import(&ipynb, &mut append, &mut deliveries);
                    answers.push(Answer::Import(reply, result));
                }
            }
        }
        let stored = self.store_and_deliver(append, deliveries).await;
        if self.room.is_tainted() {
            // The batch's accepted updates are stored; peers resync from storage.
            tracing::warn!(doc_id = %self.doc_id, "reloading the document after a refused update");
            for (_, link) in self.peers.values() {
                link.close(Close::new(1012, "the document is reloading; reconnect"));
            }
            return false;
        }
        for answer in answers {
            match answer {
                Answer::Export(reply) => {
                    let _ = reply.send(self.room.notebook().to_ipynb());
                }
                Answer::Import(reply, result) => {
                    let _ = reply.send(result);
                }
            }
        }
        stored
    }

    /// Replaces the document by an `.ipynb` as one edit that peers receive like any other.
    fn import(
        &mut self,
        ipynb: &[u8],
        append: &mut Append,
        deliveries: &mut Vec<Delivery>,
    ) -> Result<()> {
        let update = self.room.import_ipynb(ipynb)?;
        let frame = inloop_sync::wire::encode_update(&update);
        deliveries.push(Delivery::AllBut(None, Bytes::from(frame)));
        append.updates.push(update);
        Ok(())
    }

    fn collect(
        &mut self,
        from: Option<PeerId>,
        outcome: Outcome<PeerId>,
        append: &mut Append,
        deliveries: &mut Vec<Delivery>,
    ) {
        let metrics = &self.rooms.metrics;
        metrics
            .updates_in
            .fetch_add(outcome.persist.len() as u64, Relaxed);
        append.updates.extend(outcome.persist);
        if outcome.lease_epoch.is_some() {
            append.lease_epoch = outcome.lease_epoch;
        }
        if let Some(peer) = from {
            for frame in outcome.reply {
                deliveries.push(Delivery::To(peer, Bytes::from(frame)));
            }
        }
        for frame in outcome.broadcast {
            deliveries.push(Delivery::AllBut(from, Bytes::from(frame)));
        }
        for (to, frame) in outcome.direct {
            deliveries.push(Delivery::To(to, Bytes::from(frame)));
        }
    }

    fn remove_peer(
        &mut self,
        peer: PeerId,
        now_ms: u64,
        append: &mut Append,
        deliveries: &mut Vec<Delivery>,
    ) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        self.peer_count.store(self.peers.len(), Relaxed);
        let outcome = self.room.leave(peer, now_ms);
        self.collect(None, outcome, append, deliveries);
    }

    /// Stores the batch's updates, then sends its frames. False if storing failed: the room
    /// then closes every connection (peers keep their changes and resend them on reconnect).
    async fn store_and_deliver(&mut self, append: Append, deliveries: Vec<Delivery>) -> bool {
        let appended = append.updates.len();
        if appended > 0 || append.lease_epoch.is_some() {
            let started = Instant::now();
            if let Err(error) = self.rooms.storage.append(append).await {
                tracing::error!(doc_id = %self.doc_id, %error, "storing updates failed");
                for (_, link) in self.peers.values() {
                    link.close(Close::new(
                        1011,
                        "the relay could not store changes; reconnect",
                    ));
                }
                return false;
            }
            self.rooms.metrics.observe_persist(started.elapsed());
            self.log_len += appended;
        }
        for delivery in deliveries {
            match delivery {
                Delivery::To(peer, frame) => self.deliver(peer, frame),
                Delivery::AllBut(except, frame) => self.broadcast(except, &frame),
            }
        }
        self.update_lease_gauge();
        if self.log_len >= self.rooms.config.limits.compact_after_updates {
            self.compact();
        }
        true
    }

    /// Queues a frame for a peer.
    fn deliver(&mut self, peer: PeerId, frame: Bytes) {
        let Some((_, link)) = self.peers.get(&peer) else {
            return;
        };
        let len = frame.len() as u64;
        if self.enqueue(peer, link, frame) {
            self.count_sent(1, len);
        } else {
            self.drop_peer(peer);
        }
    }

    /// Queues a frame for every peer but `except`. The fan-out's hot loop: no allocation and
    /// no lookup per peer, and the counters are updated once.
    fn broadcast(&mut self, except: Option<PeerId>, frame: &Bytes) {
        let mut sent = 0;
        let mut gone = Vec::new();
        for (peer, (_, link)) in &self.peers {
            if Some(*peer) == except {
                continue;
            }
            if self.enqueue(*peer, link, frame.clone()) {
                sent += 1;
            } else {
                gone.push(*peer);
            }
        }
        self.count_sent(sent, sent * frame.len() as u64);
        for peer in gone {
            self.drop_peer(peer);
        }
    }

    /// Puts a frame on a peer's queue; false if the peer must be dropped. A peer whose queue is
    /// full is disconnected: it would otherwise miss this frame and carry on with a gap. It
    /// resyncs when it reconnects.
    fn enqueue(&self, peer: PeerId, link: &PeerLink, frame: Bytes) -> bool {
        match link.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(doc_id = %self.doc_id, peer, "peer not keeping up; disconnected");
                self.rooms.metrics.disconnects_slow.fetch_add(1, Relaxed);
                link.close(Close::new(
                    1013,
                    "too slow: updates were queuing up; reconnect to resync",
                ));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn count_sent(&self, frames: u64, bytes: u64) {
        let metrics = &self.rooms.metrics;
        metrics.updates_out.fetch_add(frames, Relaxed);
        metrics.bytes_out.fetch_add(bytes, Relaxed);
    }

    /// Removes a peer whose socket is gone or stalled, telling the others it left.
    fn drop_peer(&mut self, peer: PeerId) {
        let now_ms = self.rooms.now_ms();
        let mut append = self.append();
        let mut deliveries = Vec::new();
        self.remove_peer(peer, now_ms, &mut append, &mut deliveries);
        // Leaving only produces presence frames, which need no storage.
        for delivery in deliveries {
            if let Delivery::AllBut(_, frame) = delivery {
                self.broadcast(None, &frame);
            }
        }
    }

    fn update_lease_gauge(&mut self) {
        let held = self.room.lease().holder().is_some();
        if held != self.held_lease {
            let gauge = &self.rooms.metrics.lease_holders;
            if held {
                gauge.fetch_add(1, Relaxed);
            } else {
                gauge.fetch_sub(1, Relaxed);
            }
            self.held_lease = held;
        }
    }

    fn compact(&mut self) {
        let snapshot = self.room.compact();
        self.rooms
            .storage
            .compact(&self.doc_id, snapshot, self.log_len);
        self.log_len = 0;
    }

    async fn shut_down(mut self) {
        // Answer anything that raced in while closing.
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                Command::Join { link, .. } => {
                    link.close(Close::new(1012, "the document is reloading; reconnect"))
                }
                Command::Export { reply } if !self.room.is_tainted() => {
                    let _ = reply.send(self.room.notebook().to_ipynb());
                }
                Command::Import { reply, .. } => {
                    let _ = reply.send(Err(Error::Config(
                        "the document was unloading; retry".into(),
                    )));
                }
                Command::Export { .. }
                | Command::Frame { .. }
                | Command::Leave { .. }
                | Command::Disconnect { .. } => {}
            }
        }
        // A tainted copy holds a refused update: storage has the document without it.
        if self.log_len > 0 && !self.room.is_tainted() {
            self.compact();
        }
        if self.held_lease {
            self.rooms.metrics.lease_holders.fetch_sub(1, Relaxed);
        }
        tracing::debug!(doc_id = %self.doc_id, "document unloaded");
        self.rooms.unloaded(&self.doc_id).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
