//! The relay's side of a document: one notebook, the presence of its peers and its runtime
//! lease, driven by frames in and frames out. The relay adds the sockets, the storage and the
//! clock; this holds the rules.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inloop_doc::Notebook;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, ReadTxn, Transact, Update};

use crate::chunks::{self, Reassembly};
use crate::lease::{Lease, LeaseMessage};
use crate::token::{Action, Role};
use crate::wire::{self, Message};
use crate::{Error, Result};

/// A v1 update that changes nothing (no structs, no deletions).
const EMPTY_UPDATE: [u8; 2] = [0, 0];

/// What to do after a message: append `persist` durably first, then send the frames.
#[derive(Debug)]
pub struct Outcome<P> {
    /// Document updates to store, in order, before any frame below goes out.
    pub persist: Vec<Vec<u8>>,
    /// A lease epoch granted: store it with the updates so epochs keep growing after a restart.
    pub lease_epoch: Option<u64>,
    /// Frames for the peer the message came from.
    pub reply: Vec<Vec<u8>>,
    /// Frames for every other peer in the room.
    pub broadcast: Vec<Vec<u8>>,
    /// Frames for particular peers.
    pub direct: Vec<(P, Vec<u8>)>,
}

impl<P> Default for Outcome<P> {
    fn default() -> Self {
        Self {
            persist: Vec::new(),
            lease_epoch: None,
            reply: Vec::new(),
            broadcast: Vec::new(),
            direct: Vec::new(),
        }
    }
}

/// Limits a room enforces on what peers send.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// The document's encoded size may not grow past this many bytes.
    pub max_document_bytes: usize,
    /// The largest frame the relay takes (its socket enforces it; the room tells peers).
    pub max_message_bytes: usize,
    pub lease_ttl_ms: u64,
    pub lease_grace_ms: u64,
}

#[derive(Debug)]
struct Presence<P> {
    clock: u32,
    json: Arc<str>,
    owner: P,
}

/// One document and the peers on it. `P` identifies a connection.
#[derive(Debug)]
pub struct Room<P> {
    notebook: Notebook,
    presence: HashMap<ClientID, Presence<P>>,
    lease: Lease<P>,
    limits: RoomLimits,
    /// The stored size: the snapshot and the updates appended since.
    stored_bytes: usize,
    /// Set by an observer when a peer's update touches the execution queue or the runtimes.
    touched_execution: Arc<AtomicBool>,
    /// Like `touched_execution`, but kept until [`Room::needs_runtime`] reads it.
    execution_activity: Arc<AtomicBool>,
    /// A refused update was already applied: the document must be reloaded from storage.
    tainted: bool,
    /// Peers that asked for acknowledgements, with the count of updates they sent so far.
    acknowledged: HashMap<P, u64>,
    /// Frames arriving in chunks, per peer; together at most `max_document_bytes`.
    incoming: HashMap<P, Reassembly>,
    _execution_watch: inloop_doc::Subscription,
}

impl<P: Copy + Eq + std::hash::Hash + std::fmt::Debug> Room<P> {
    /// A room for a document loaded from storage (`stored_bytes` of snapshot and log), whose
    /// last granted lease epoch was `lease_epoch`.
    pub fn new(
        notebook: Notebook,
        stored_bytes: usize,
        lease_epoch: u64,
        limits: RoomLimits,
    ) -> Self {
        let touched_execution = Arc::new(AtomicBool::new(false));
        let execution_activity = Arc::new(AtomicBool::new(false));
        let flag = touched_execution.clone();
        let activity = execution_activity.clone();
        let execution_watch = notebook.observe_runs(move || {
            flag.store(true, Ordering::Relaxed);
            activity.store(true, Ordering::Relaxed);
        });
        Self {
            notebook,
            presence: HashMap::new(),
            lease: Lease::new(lease_epoch, limits.lease_ttl_ms, limits.lease_grace_ms),
            limits,
            stored_bytes,
            touched_execution,
            execution_activity,
            tainted: false,
            acknowledged: HashMap::new(),
            incoming: HashMap::new(),
            _execution_watch: execution_watch,
        }
    }

    /// Whether a runtime should be started: `server` runs are queued and no runtime holds the
    /// lease. Unless `recheck`, it looks at the queue only if the queue changed since it last
    /// looked, so it costs nothing on ordinary edits; pass `recheck` when the lease has just
    /// been freed or a start is being retried.
    pub fn needs_runtime(&self, recheck: bool) -> bool {
        // While a runtime holds the lease the queue is its business: changes are looked at
        // once the lease is free.
        if self.lease.holder().is_some() {
            return false;
        }
        if !self.execution_activity.swap(false, Ordering::Relaxed) && !recheck {
            return false;
        }
        !self
            .notebook
            .queued_executions(&inloop_doc::ExecutionTarget::Server)
            .is_empty()
    }

    /// True once an update was refused after it had been applied (an `edit` peer that wrote to
    /// the execution queue): drop this room and load the document again from storage, which
    /// never received that update. Peers must reconnect to resync.
    pub fn is_tainted(&self) -> bool {
        self.tainted
    }

    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    pub fn lease(&self) -> &Lease<P> {
        &self.lease
    }

    /// The whole document as one update, for a snapshot; resets the stored size to it.
    pub fn compact(&mut self) -> Vec<u8> {
        let snapshot = self.notebook.encode_update_v1();
        self.stored_bytes = snapshot.len();
        snapshot
    }

    /// The frames a new peer gets first: what we have (so it sends what we lack), and who is here.
    pub fn join(&self) -> Vec<Vec<u8>> {
        let state_vector = self.notebook.doc().transact().state_vector();
        let mut frames = vec![Message::SyncStep1(state_vector).encode()];
        if !self.presence.is_empty() {
            let everyone = self.presence.iter().map(|(client, p)| (*client, p));
            frames.push(Message::Awareness(awareness_update(everyone)).encode());
        }
        frames
    }

    /// Handles one frame from `peer`. An error means the peer broke the protocol or its rights:
    /// close its connection with the error as the reason; the room is unchanged by that frame.
    pub fn receive(
        &mut self,
        peer: P,
        role: Role,
        frame: &[u8],
        now_ms: u64,
    ) -> Result<Outcome<P>> {
        let message = wire::decode(frame)?;
        let carries_update = matches!(message, Message::SyncStep2(_) | Message::Update(_));
        let mut outcome = self.handle(peer, role, message, now_ms)?;
        // The reply goes out only once `persist` is stored, so the count is of stored updates.
        if let (true, Some(count)) = (carries_update, self.acknowledged.get_mut(&peer)) {
            *count += 1;
            outcome.reply.push(Message::Ack(*count).encode());
        }
        Ok(outcome)
    }

    /// One chunk of a large frame; the frame is handled once whole. All peers' frames in
    /// pieces together may not pass the document's size limit: a larger one could not be
    /// applied anyway.
    fn receive_chunk(
        &mut self,
        peer: P,
        role: Role,
        total: u64,
        offset: u64,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Outcome<P>> {
        let others: usize = self
            .incoming
            .iter()
            .filter(|(p, _)| **p != peer)
            .map(|(_, r)| r.pending_bytes())
            .sum();
        let budget = self.limits.max_document_bytes.saturating_sub(others);
        let pushed = self
            .incoming
            .entry(peer)
            .or_default()
            .push(total, offset, bytes, budget);
        match pushed {
            Ok(None) => Ok(Outcome::default()),
            Ok(Some(frame)) => {
                self.incoming.remove(&peer);
                self.receive(peer, role, chunks::unchunked(&frame)?, now_ms)
            }
            Err(error) => {
                self.incoming.remove(&peer);
                Err(error)
            }
        }
    }

    fn handle(&mut self, peer: P, role: Role, message: Message, now_ms: u64) -> Result<Outcome<P>> {
        let mut outcome = Outcome::default();
        match message {
            Message::SyncStep1(state_vector) => {
                let diff = self.notebook.doc().transact().encode_diff_v1(&state_vector);
                let frame = Message::SyncStep2(diff).encode();
                // Peers that know the limits take a large document in chunks; stock Yjs
                // clients get it whole, as y-websocket sends it.
                if self.acknowledged.contains_key(&peer) {
                    let chunks = chunks::split(frame, self.limits.max_message_bytes);
                    outcome.reply.extend(chunks);
                } else {
                    outcome.reply.push(frame);
                }
            }
            Message::SyncStep2(update) | Message::Update(update) => {
                if update == EMPTY_UPDATE {
                    return Ok(outcome);
                }
                let decoded = Update::decode_v1(&update)
                    .map_err(|e| Error::Malformed(format!("update: {e}")))?;
                if !role.allows(Action::Edit) {
                    if self.would_change(&decoded) {
                        return Err(Error::ReadOnly);
                    }
                    return Ok(outcome);
                }
                if self.stored_bytes + update.len() > self.limits.max_document_bytes {
                    // The stored size counts every update since the last snapshot, which can be
                    // far more than the document (text typed and deleted, outputs replaced).
                    // Refuse only what would make the document itself too large, the measure
                    // peers can check before they write.
                    self.stored_bytes = self.notebook.encode_update_v1().len();
                    if self.stored_bytes + update.len() > self.limits.max_document_bytes {
                        return Err(Error::DocumentTooLarge {
                            limit: self.limits.max_document_bytes,
                        });
                    }
                }
                self.touched_execution.store(false, Ordering::Relaxed);
                self.notebook
                    .apply_update(decoded)
                    .map_err(|e| Error::Malformed(e.to_string()))?;
                // Whether an update touches the queue is only known once applied (its items'
                // parents may be anywhere in the document), so a refusal taints the room.
                if self.touched_execution.load(Ordering::Relaxed) && !role.allows(Action::Execute) {
                    self.tainted = true;
                    return Err(Error::Forbidden {
                        role,
                        action: Action::Execute,
                    });
                }
                self.stored_bytes += update.len();
                outcome.broadcast.push(wire::encode_update(&update));
                outcome.persist.push(update);
            }
            Message::Awareness(update) => {
                let changed = self.apply_presence(peer, update);
                if !changed.clients.is_empty() {
                    outcome.broadcast.push(Message::Awareness(changed).encode());
                }
            }
            Message::QueryAwareness => {
                let everyone = self.presence.iter().map(|(client, p)| (*client, p));
                outcome
                    .reply
                    .push(Message::Awareness(awareness_update(everyone)).encode());
            }
            // Stock clients never send AUTH; the token was checked at the handshake.
            Message::Auth(_) => {}
            Message::Ack(_) => {
                self.acknowledged.entry(peer).or_insert(0);
                let limits = Message::Limits(crate::SizeLimits {
                    max_document_bytes: self.limits.max_document_bytes as u64,
                    max_message_bytes: self.limits.max_message_bytes as u64,
                });
                outcome.reply.push(limits.encode());
            }
            // Relay to peer only.
            Message::Limits(_) => {}
            Message::Chunk {
                total,
                offset,
                bytes,
            } => return self.receive_chunk(peer, role, total, offset, &bytes, now_ms),
            Message::Lease(message) => {
                if !role.allows(Action::HoldLease) {
                    let denied = LeaseMessage::Denied {
                        reason: format!("a {role} token cannot hold the runtime lease"),
                    };
                    outcome.reply.push(Message::Lease(denied).encode());
                    return Ok(outcome);
                }
                let before = self.lease.epoch();
                let notices = self.lease.receive(peer, message, now_ms);
                self.notices(&mut outcome, before, notices);
            }
        }
        Ok(outcome)
    }

    /// Whether an update holds anything this document does not have yet.
    fn would_change(&self, update: &Update) -> bool {
        let txn = self.notebook.doc().transact();
        let ours = txn.state_vector();
        let inserts = update
            .state_vector()
            .iter()
            .any(|(client, clock)| *clock > ours.get(client));
        if inserts {
            return true;
        }
        let deleted = txn.snapshot().delete_set;
        !update.delete_set().diff(&deleted).is_empty()
    }

    /// Records the entries newer than ours, owned by `peer`; returns them.
    fn apply_presence(&mut self, peer: P, update: AwarenessUpdate) -> AwarenessUpdate {
        let mut changed = AwarenessUpdate {
            clients: HashMap::new(),
        };
        for (client, entry) in update.clients {
            let newer = self
                .presence
                .get(&client)
                .is_none_or(|known| entry.clock >= known.clock);
            if !newer {
                continue;
            }
            if &*entry.json == "null" {
                self.presence.remove(&client);
            } else {
                self.presence.insert(
                    client,
                    Presence {
                        clock: entry.clock,
                        json: entry.json.clone(),
                        owner: peer,
                    },
                );
            }
            changed.clients.insert(client, entry);
        }
        changed
    }

    /// A peer's connection closed: its presence goes, and a lease it held runs out after the
    /// grace period.
    pub fn leave(&mut self, peer: P, now_ms: u64) -> Outcome<P> {
        let mut outcome = Outcome::default();
        self.acknowledged.remove(&peer);
        self.incoming.remove(&peer);
        let gone: Vec<ClientID> = self
            .presence
            .iter()
            .filter(|(_, p)| p.owner == peer)
            .map(|(client, _)| *client)
            .collect();
        if !gone.is_empty() {
            let mut removal = AwarenessUpdate {
                clients: HashMap::new(),
            };
            for client in gone {
                if let Some(p) = self.presence.remove(&client) {
                    let entry = AwarenessUpdateEntry {
                        clock: p.clock + 1,
                        json: Arc::from("null"),
                    };
                    removal.clients.insert(client, entry);
                }
            }
            outcome.broadcast.push(Message::Awareness(removal).encode());
        }
        self.lease.disconnected(peer, now_ms);
        outcome
    }

    /// Lease expiry: call at [`Room::next_deadline_ms`].
    pub fn tick(&mut self, now_ms: u64) -> Outcome<P> {
        let mut outcome = Outcome::default();
        let before = self.lease.epoch();
        let notices = self.lease.tick(now_ms);
        self.notices(&mut outcome, before, notices);
        outcome
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.lease.next_deadline_ms()
    }

    fn notices(
        &self,
        outcome: &mut Outcome<P>,
        epoch_before: u64,
        notices: Vec<crate::lease::Notice<P>>,
    ) {
        if self.lease.epoch() != epoch_before {
            outcome.lease_epoch = Some(self.lease.epoch());
        }
        for (to, notice) in notices {
            outcome.direct.push((to, Message::Lease(notice).encode()));
        }
    }
}

fn awareness_update<'a, P: 'a>(
    entries: impl Iterator<Item = (ClientID, &'a Presence<P>)>,
) -> AwarenessUpdate {
    AwarenessUpdate {
        clients: entries
            .map(|(client, p)| {
                let entry = AwarenessUpdateEntry {
                    clock: p.clock,
                    json: p.json.clone(),
                };
                (client, entry)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use inloop_doc::{ExecutionTarget, Notebook};

    use super::*;
    use crate::ClientSession;

    const LIMITS: RoomLimits = RoomLimits {
        max_document_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
        lease_ttl_ms: 1_000,
        lease_grace_ms: 1_000,
    };

    /// A peer's notebook holding the room's state plus one request to run its first cell.
    fn run_request(room: &Room<u8>) -> Vec<u8> {
        let peer = Notebook::new();
        peer.apply_update_v1(&room.notebook().encode_update_v1())
            .unwrap();
        let before = peer.state_vector();
        let cell = peer.cell_ids()[0].clone();
        peer.request_execution(&cell, &ExecutionTarget::Server, "peer", 1.0)
            .unwrap();
        ClientSession::update_frame(&peer.encode_diff_v1(&before))
    }

    #[test]
    fn only_execute_roles_may_queue_runs_and_a_refusal_taints_the_room() {
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let frame = run_request(&room);
        let error = room.receive(1, Role::Edit, &frame, 0).unwrap_err();
        assert!(
            error.to_string().contains("edit tokens may not run cells"),
            "{error}"
        );
        assert!(
            room.is_tainted(),
            "the refused update was applied: reload the room"
        );

        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let frame = run_request(&room);
        let outcome = room.receive(1, Role::Execute, &frame, 0).unwrap();
        assert_eq!(outcome.persist.len(), 1);
        assert!(!room.is_tainted());
        // Plain edits from an edit peer stay fine.
        let peer = Notebook::new();
        peer.apply_update_v1(&room.notebook().encode_update_v1())
            .unwrap();
        let before = peer.state_vector();
        peer.insert_cell(0, inloop_doc::CellType::Markdown, "text")
            .unwrap();
        let edit = ClientSession::update_frame(&peer.encode_diff_v1(&before));
        room.receive(2, Role::Edit, &edit, 0).unwrap();
        assert!(!room.is_tainted());
    }

    /// Delivers every frame between one client and the room until neither has more to say;
    /// returns whether the client was told its changes were acknowledged. No frame may pass the
    /// room's message limit, as the relay's socket would refuse it.
    fn exchange(
        room: &mut Room<u8>,
        peer: u8,
        session: &mut ClientSession,
        mut to_room: Vec<Vec<u8>>,
        mut to_client: Vec<Vec<u8>>,
    ) -> bool {
        let mut acknowledged = false;
        while !to_room.is_empty() || !to_client.is_empty() {
            let limit = room.limits.max_message_bytes;
            let frames = to_room.iter().chain(&to_client);
            assert!(
                frames.into_iter().all(|f| f.len() <= limit),
                "a frame over {limit} bytes"
            );
            for frame in std::mem::take(&mut to_room) {
                let outcome = room.receive(peer, Role::Edit, &frame, 0).unwrap();
                to_client.extend(outcome.reply);
            }
            for frame in std::mem::take(&mut to_client) {
                let received = session.receive(&frame).unwrap();
                acknowledged |= received.events.contains(&crate::ClientEvent::Acknowledged);
                to_room.extend(received.replies);
            }
        }
        acknowledged
    }

    #[test]
    fn more_than_a_message_goes_both_ways_in_chunks() {
        let limits = RoomLimits {
            max_document_bytes: 4 << 20,
            max_message_bytes: 64 << 10,
            ..LIMITS
        };
        let mut room = Room::new(Notebook::blank(), 0, 0, limits);
        let notebook = Notebook::new();
        let mut session = ClientSession::new(notebook.clone());
        let (first, join) = (session.connected(), room.join());
        exchange(&mut room, 1, &mut session, first, join);
        room.leave(1, 0);

        // Offline, the runtime writes far more than one message may carry.
        let text: String = (0..60_000).map(|i| format!("{i:x}")).collect();
        assert!(text.len() > 3 * limits.max_message_bytes);
        notebook
            .push_cell(inloop_doc::CellType::Code, &text)
            .unwrap();
        session.local_change();
        let (again, join) = (session.connected(), room.join());
        assert!(exchange(&mut room, 1, &mut session, again, join));
        assert_eq!(
            session.unacknowledged(),
            0,
            "the step 2 in chunks is acknowledged"
        );
        assert_eq!(room.notebook().cells()[1].source, text);

        // A peer joining gets the document in chunks too, and a stock client whole.
        let mut newcomer = ClientSession::new(Notebook::new());
        let (hello, join) = (newcomer.connected(), room.join());
        exchange(&mut room, 2, &mut newcomer, hello, join);
        assert_eq!(newcomer.notebook().cells()[1].source, text);
        let stock = Message::SyncStep1(Default::default()).encode();
        let whole = room.receive(3, Role::Edit, &stock, 0).unwrap().reply;
        assert_eq!(whole.len(), 1);
        assert!(whole[0].len() > limits.max_message_bytes);
        assert_eq!(room.incoming.len(), 0, "nothing is left half put together");

        // A peer that never connected before (a page reloaded after running offline) does not
        // know the limits when the relay's state vector comes: its answer waits for them.
        let offline = Notebook::new();
        offline
            .apply_update_v1(&room.notebook().encode_update_v1())
            .unwrap();
        offline
            .push_cell(inloop_doc::CellType::Markdown, &text.to_uppercase())
            .unwrap();
        let mut reloaded = ClientSession::new(offline);
        reloaded.local_change();
        let (hello, join) = (reloaded.connected(), room.join());
        assert!(exchange(&mut room, 4, &mut reloaded, hello, join));
        assert_eq!(room.notebook().cells()[2].source, text.to_uppercase());
    }

    #[test]
    fn chunks_that_would_pass_the_document_limit_are_refused() {
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let piece = |peer: u8, room: &mut Room<u8>, total: usize| {
            let frame = Message::Chunk {
                total: total as u64,
                offset: 0,
                bytes: vec![0; 1000],
            }
            .encode();
            room.receive(peer, Role::Edit, &frame, 0)
        };
        let error = piece(1, &mut room, LIMITS.max_document_bytes + 1).unwrap_err();
        assert!(matches!(error, Error::DocumentTooLarge { .. }), "{error}");
        // Two peers' frames in pieces share the budget.
        piece(1, &mut room, LIMITS.max_document_bytes / 2).unwrap();
        piece(2, &mut room, LIMITS.max_document_bytes / 2).unwrap();
        let error = piece(3, &mut room, LIMITS.max_document_bytes - 1000).unwrap_err();
        assert!(matches!(error, Error::DocumentTooLarge { .. }), "{error}");
        // A peer that leaves frees its part; a chunk inside a chunk is refused.
        room.leave(1, 0);
        room.leave(2, 0);
        let nested = chunks::split(chunks::split(vec![9; 3000], 1000)[0].clone(), 100);
        let mut last = Ok(Outcome::default());
        for frame in &nested {
            last = room.receive(4, Role::Edit, frame, 0);
        }
        assert!(matches!(last, Err(Error::Malformed(_))), "{last:?}");
    }

    #[test]
    fn the_relay_acknowledges_stored_changes_across_reconnections() {
        use std::sync::{Arc, Mutex};
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let notebook = Notebook::new();
        let mut session = ClientSession::new(notebook.clone());
        let queued = Arc::new(Mutex::new(Vec::new()));
        let queue = queued.clone();
        let _local = notebook
            .observe_local_updates(move |update| queue.lock().unwrap().push(update.to_vec()))
            .unwrap();
        let edit = |session: &mut ClientSession, text: &str| {
            notebook
                .insert_cell(0, inloop_doc::CellType::Markdown, text)
                .unwrap();
            session.local_change();
        };
        let take = || std::mem::take(&mut *queued.lock().unwrap());

        // Made offline: only the sync step 2 of the first connection carries them.
        edit(&mut session, "a");
        edit(&mut session, "b");
        take();
        assert_eq!(session.unacknowledged(), 2);
        let first = session.connected();
        let join = room.join();
        assert!(exchange(&mut room, 1, &mut session, first, join));
        assert_eq!(session.unacknowledged(), 0);
        assert_eq!(room.notebook().cell_count(), 3);

        // Live edits, sent merged in one frame.
        edit(&mut session, "c");
        edit(&mut session, "d");
        let frames = session.updates_frames(&take()).unwrap();
        assert_eq!(
            session.unacknowledged(),
            2,
            "in flight until the relay says so"
        );
        assert!(exchange(&mut room, 1, &mut session, frames, vec![]));
        assert_eq!(session.unacknowledged(), 0);

        // A frame lost with its connection: still unacknowledged, resent by the next step 2.
        edit(&mut session, "e");
        let _lost = session.updates_frames(&take()).unwrap();
        room.leave(1, 0);
        assert_eq!(session.unacknowledged(), 1);
        // On the new connection a fresh edit goes out before the relay's step 1 arrives: its
        // acknowledgement must not count "e", which only the coming step 2 carries.
        let hello = session.connected();
        edit(&mut session, "f");
        let early = session.updates_frames(&take()).unwrap();
        exchange(&mut room, 2, &mut session, [hello, early].concat(), vec![]);
        assert_eq!(session.unacknowledged(), 2, "e and f wait for the step 2");
        let join = room.join();
        assert!(exchange(&mut room, 2, &mut session, vec![], join));
        assert_eq!(session.unacknowledged(), 0);
        assert_eq!(room.notebook().cell_count(), 7);
        assert_eq!(room.notebook().to_ipynb(), notebook.to_ipynb());
    }

    #[test]
    fn peers_that_do_not_ask_get_no_acknowledgements() {
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let peer = Notebook::new();
        peer.apply_update_v1(&room.notebook().encode_update_v1())
            .unwrap();
        let before = peer.state_vector();
        peer.insert_cell(0, inloop_doc::CellType::Markdown, "x")
            .unwrap();
        let frame = ClientSession::update_frame(&peer.encode_diff_v1(&before));
        let outcome = room.receive(1, Role::Edit, &frame, 0).unwrap();
        assert!(
            outcome.reply.is_empty(),
            "a stock Yjs client must not get message type 101"
        );
    }
}
