//! The relay's side of a document: one notebook, the presence of its peers and its runtime
//! lease, driven by frames in and frames out. The relay adds the sockets, the storage and the
//! clock; this holds the rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use inloop_doc::{Inspection, Notebook, Zone, ZoneIndex};
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
    /// The largest presence state (a name, a colour, a cursor), in bytes of JSON.
    pub max_presence_bytes: usize,
    /// Presence states one connection may hold (one per document it shows).
    pub max_presences_per_peer: usize,
    /// All presence states of the room together, in bytes.
    pub max_room_presence_bytes: usize,
    /// Presence bytes a peer may send per second, on average...
    pub presence_bytes_per_second: u64,
    /// ...and in one burst.
    pub presence_burst_bytes: u64,
}

impl Default for RoomLimits {
    /// The relay's defaults.
    fn default() -> Self {
        Self {
            max_document_bytes: 256 << 20,
            max_message_bytes: 16 << 20,
            lease_ttl_ms: 15_000,
            lease_grace_ms: 10_000,
            max_presence_bytes: 8 << 10,
            max_presences_per_peer: 4,
            max_room_presence_bytes: 4 << 20,
            presence_bytes_per_second: 64 << 10,
            presence_burst_bytes: 256 << 10,
        }
    }
}

/// Who a peer is, as the relay checked its token when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub role: Role,
    /// The token's id. The peers of one token are one writer: they may reconnect and go on
    /// writing under the client ids they used before; no other token's peer may.
    pub principal: Arc<str>,
}

impl Credentials {
    pub fn new(role: Role, principal: impl Into<Arc<str>>) -> Self {
        Self {
            role,
            principal: principal.into(),
        }
    }
}

/// A connected peer.
#[derive(Debug)]
struct PeerState {
    credentials: Credentials,
    /// Whether its sync step 2 (everything it had that we lacked) has arrived on this
    /// connection: after it, every update of its must integrate at once.
    stepped: bool,
    /// Presence bytes it may still send now (a token bucket).
    presence_allowance: f64,
    presence_checked_ms: u64,
}

/// The principal of the relay's own writes (imports): never a token's id.
const RELAY_PRINCIPAL: &str = "\0relay";

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
    /// Which zone every item lies in: updates are judged with it before they are applied.
    zones: ZoneIndex,
    /// The writer (token id) of each client id that has written here.
    owners: HashMap<ClientID, Arc<str>>,
    /// A B-tree, not a hash table: a table of 1,000 peers is one 117 KB block of 2,048 slots,
    /// which mimalloc puts in a 4 MiB page that transparent huge pages back 2 MiB at a time,
    /// so 1,000 idle peers cost 2 MiB more RSS than their states; a B-tree's nodes are small
    /// blocks among the rest, and it never copies itself to grow.
    peers: BTreeMap<P, PeerState>,
    /// All presence states' bytes.
    presence_bytes: usize,
    /// Set when an update touches the execution queue or the runtimes, until
    /// [`Room::needs_runtime`] reads it.
    execution_activity: bool,
    /// Updates dropped because they came before their sender's sync step 2 and depended on
    /// changes only that step 2 carries (it carries them too).
    deferred_updates: u64,
    /// An update left something pending although it was judged integrable (a bug in the
    /// judging): the document must be reloaded from storage, which never received it.
    tainted: bool,
    /// Peers that asked for acknowledgements, with the count of updates they sent so far.
    acknowledged: HashMap<P, u64>,
    /// Frames arriving in chunks, per peer; together at most `max_document_bytes`.
    incoming: HashMap<P, Reassembly>,
}

impl<P: Copy + Ord + std::hash::Hash + std::fmt::Debug> Room<P> {
    /// A room for a document loaded from storage (`stored_bytes` of snapshot and log), whose
    /// last granted lease epoch was `lease_epoch`.
    pub fn new(
        notebook: Notebook,
        stored_bytes: usize,
        lease_epoch: u64,
        limits: RoomLimits,
    ) -> Self {
        let zones = notebook.zone_index();
        let owners = HashMap::from([(
            ClientID::new(notebook.client_id()),
            Arc::from(RELAY_PRINCIPAL),
        )]);
        Self {
            notebook,
            presence: HashMap::new(),
            lease: Lease::new(lease_epoch, limits.lease_ttl_ms, limits.lease_grace_ms),
            limits,
            stored_bytes,
            zones,
            owners,
            peers: BTreeMap::new(),
            presence_bytes: 0,
            // A document loaded with runs queued may need a runtime at once.
            execution_activity: true,
            deferred_updates: 0,
            tainted: false,
            acknowledged: HashMap::new(),
            incoming: HashMap::new(),
        }
    }

    /// Whether a runtime should be started: `server` runs are queued and no runtime holds the
    /// lease. Unless `recheck`, it looks at the queue only if the queue changed since it last
    /// looked, so it costs nothing on ordinary edits; pass `recheck` when the lease has just
    /// been freed or a start is being retried.
    pub fn needs_runtime(&mut self, recheck: bool) -> bool {
        // While a runtime holds the lease the queue is its business: changes are looked at
        // once the lease is free.
        if self.lease.holder().is_some() {
            return false;
        }
        if !std::mem::take(&mut self.execution_activity) && !recheck {
            return false;
        }
        !self
            .notebook
            .queued_executions(&inloop_doc::ExecutionTarget::Server)
            .is_empty()
    }

    /// True if an update was found to leave something pending after it was applied (which
    /// the judging before applying should make impossible): drop this room and load the
    /// document again from storage, which never received that update. Peers must reconnect.
    pub fn is_tainted(&self) -> bool {
        self.tainted
    }

    /// Updates dropped because they arrived before their sender's sync step 2 and depended on
    /// what only that step 2 carries.
    pub fn deferred_updates(&self) -> u64 {
        self.deferred_updates
    }

    /// Replaces the notebook by an `.ipynb` as the relay's own change; returns the update to
    /// store and send to every peer.
    pub fn import_ipynb(&mut self, ipynb: &[u8]) -> inloop_doc::Result<Vec<u8>> {
        let before = self.notebook.state_vector();
        self.notebook.replace_from_ipynb(ipynb)?;
        let update = self.notebook.encode_diff_v1(&before);
        self.zones.record_applied(&update, &before);
        self.execution_activity = true;
        self.stored_bytes += update.len();
        Ok(update)
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

    /// A peer joins: the frames it gets first are what we have (so it sends what we lack), and
    /// who is here.
    pub fn join(&mut self, peer: P, credentials: Credentials) -> Vec<Vec<u8>> {
        self.peers.insert(
            peer,
            PeerState {
                credentials,
                stepped: false,
                presence_allowance: self.limits.presence_burst_bytes as f64,
                presence_checked_ms: 0,
            },
        );
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
    pub fn receive(&mut self, peer: P, frame: &[u8], now_ms: u64) -> Result<Outcome<P>> {
        let message = wire::decode(frame)?;
        let carries_update = matches!(message, Message::SyncStep2(_) | Message::Update(_));
        let mut outcome = self.handle(peer, message, now_ms)?;
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
                self.receive(peer, chunks::unchunked(&frame)?, now_ms)
            }
            Err(error) => {
                self.incoming.remove(&peer);
                Err(error)
            }
        }
    }

    fn handle(&mut self, peer: P, message: Message, now_ms: u64) -> Result<Outcome<P>> {
        let mut outcome = Outcome::default();
        let Some(state) = self.peers.get(&peer) else {
            return Err(Error::Malformed(
                "a frame from a peer that has not joined".into(),
            ));
        };
        let role = state.credentials.role;
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
            Message::SyncStep2(update) => self.receive_update(peer, &update, true, &mut outcome)?,
            Message::Update(update) => self.receive_update(peer, &update, false, &mut outcome)?,
            Message::Awareness(update) => {
                let changed = self.apply_presence(peer, update, now_ms)?;
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
            // Frames too large for one message are changes: a read peer has none to send.
            Message::Chunk { .. } if !role.allows(Action::Edit) => return Err(Error::ReadOnly),
            Message::Chunk {
                total,
                offset,
                bytes,
            } => return self.receive_chunk(peer, total, offset, &bytes, now_ms),
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

    /// A document update from `peer` (`step2`: its answer to our state vector). It is applied
    /// only if it integrates completely now, writes only where the peer's role may write, and
    /// only under client ids that are the peer's own.
    fn receive_update(
        &mut self,
        peer: P,
        update: &[u8],
        step2: bool,
        outcome: &mut Outcome<P>,
    ) -> Result<()> {
        let Some(state) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let stepped = state.stepped;
        state.stepped |= step2;
        let Credentials { role, principal } = state.credentials.clone();
        if update == EMPTY_UPDATE {
            return Ok(());
        }
        let mut inspection = match self.zones.inspect_v1(&self.notebook, update) {
            Ok(inspection) => inspection,
            // A live change sent before this connection's step 2 may depend on changes that
            // only the step 2 carries; the step 2 carries this change too, so dropping it loses
            // nothing. Keeping it pending would let a later update complete it under the
            // completer's role.
            Err(error) if error.is_missing_changes() && !step2 && !stepped => {
                self.deferred_updates += 1;
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        // Reading the document's delete set costs a pass over it: only a step 2 (once per
        // connection) may carry deletes of what is deleted already; a live update never does.
        if !role.allows(Action::Edit) {
            if step2 && !inspection.inserts() {
                inspection.drop_repeated_deletes(&self.notebook);
            }
            return if inspection.changes() {
                Err(Error::ReadOnly)
            } else {
                Ok(())
            };
        }
        authorize(role, &mut inspection, step2.then_some(&self.notebook))?;
        if let Some(client) = inspection.authors().iter().find(|client| {
            self.owners
                .get(client)
                .is_some_and(|owner| *owner != principal)
        }) {
            return Err(Error::ForeignClient {
                client: client.get(),
            });
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
        let decoded =
            Update::decode_v1(update).map_err(|e| Error::Malformed(format!("update: {e}")))?;
        if let Err(error) = self.notebook.apply_update(decoded) {
            // Judged integrable, yet yrs failed part way: never serve this copy.
            self.tainted = true;
            return Err(Error::Malformed(error.to_string()));
        }
        if has_pending(&self.notebook) {
            // Judged integrable, yet something is pending: never serve this copy.
            self.tainted = true;
            return Err(Error::Malformed(
                "the update did not integrate completely; the document is reloading".into(),
            ));
        }
        self.execution_activity |= inspection.writes().contains(Zone::Execution);
        for client in inspection.authors() {
            self.owners.insert(*client, principal.clone());
        }
        self.zones.record(inspection);
        self.stored_bytes += update.len();
        outcome.broadcast.push(wire::encode_update(update));
        outcome.persist.push(update.to_vec());
        Ok(())
    }

    /// Records the entries newer than ours, owned by `peer`; returns them. Entries another
    /// connected peer owns are ignored (a stock Yjs client also sends removals of peers it
    /// timed out). Sizes and rates past the limits are refused: the peer is cut.
    fn apply_presence(
        &mut self,
        peer: P,
        update: AwarenessUpdate,
        now_ms: u64,
    ) -> Result<AwarenessUpdate> {
        let limits = self.limits;
        let bytes: usize = update.clients.values().map(|e| e.json.len()).sum();
        if let Some(state) = self.peers.get_mut(&peer) {
            let elapsed = now_ms.saturating_sub(state.presence_checked_ms) as f64 / 1000.0;
            state.presence_checked_ms = now_ms;
            state.presence_allowance = (state.presence_allowance
                + elapsed * limits.presence_bytes_per_second as f64)
                .min(limits.presence_burst_bytes as f64)
                - bytes as f64;
            if state.presence_allowance < 0.0 {
                return Err(Error::PresenceFlood {
                    bytes_per_second: limits.presence_bytes_per_second,
                });
            }
        }
        let mut owned = self.presence.values().filter(|p| p.owner == peer).count();
        let mut total = self.presence_bytes;
        let mut accepted = Vec::new();
        for (client, entry) in update.clients {
            if entry.json.len() > limits.max_presence_bytes {
                return Err(Error::PresenceTooLarge(format!(
                    "a presence state may hold {} bytes",
                    limits.max_presence_bytes
                )));
            }
            let known = self.presence.get(&client);
            if known.is_some_and(|p| p.owner != peer && self.peers.contains_key(&p.owner)) {
                continue;
            }
            if known.is_some_and(|known| entry.clock < known.clock) {
                continue;
            }
            let removal = &*entry.json == "null";
            let old = known.map_or(0, |p| p.json.len());
            if known.is_none_or(|p| p.owner != peer) && !removal {
                owned += 1;
                if owned > limits.max_presences_per_peer {
                    return Err(Error::PresenceTooLarge(format!(
                        "a connection may show at most {} presence states",
                        limits.max_presences_per_peer
                    )));
                }
            }
            total = total - old + if removal { 0 } else { entry.json.len() };
            if total > limits.max_room_presence_bytes {
                return Err(Error::PresenceTooLarge(format!(
                    "the document's presence states may hold {} bytes in all",
                    limits.max_room_presence_bytes
                )));
            }
            accepted.push((client, entry));
        }
        self.presence_bytes = total;
        let mut changed = AwarenessUpdate {
            clients: HashMap::new(),
        };
        for (client, entry) in accepted {
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
        Ok(changed)
    }

    /// A peer's connection closed: its presence goes, and a lease it held runs out after the
    /// grace period.
    pub fn leave(&mut self, peer: P, now_ms: u64) -> Outcome<P> {
        let mut outcome = Outcome::default();
        self.peers.remove(&peer);
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
                    self.presence_bytes -= p.json.len();
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

/// Refuses an update that writes where `role` may not. A sync step 2 (pass the `notebook` for
/// one) carries the sender's whole delete set, values the runtimes overwrote included: deleting
/// what is deleted already changes nothing, so those deletes are forgotten before refusing.
fn authorize(role: Role, inspection: &mut Inspection, step2_of: Option<&Notebook>) -> Result<()> {
    let forbidden = |inspection: &Inspection| {
        inspection.writes().iter().find_map(|zone| {
            let action = match zone {
                Zone::Notebook => Action::Edit,
                Zone::Execution => Action::Execute,
            };
            (!role.allows(action)).then_some(action)
        })
    };
    if forbidden(inspection).is_none() {
        return Ok(());
    }
    if let Some(notebook) = step2_of {
        inspection.drop_repeated_deletes(notebook);
    }
    match forbidden(inspection) {
        Some(action) => Err(Error::Forbidden { role, action }),
        None => Ok(()),
    }
}

/// Whether the document holds structs or deletes waiting for something it lacks.
fn has_pending(notebook: &Notebook) -> bool {
    let txn = notebook.doc().transact();
    txn.store().pending_update().is_some() || txn.store().pending_ds().is_some()
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
        max_presence_bytes: 1_000,
        max_presences_per_peer: 2,
        max_room_presence_bytes: 4_000,
        presence_bytes_per_second: 2_000,
        presence_burst_bytes: 4_000,
    };

    fn as_role(role: Role) -> Credentials {
        Credentials::new(role, format!("token-{role}"))
    }

    fn edit() -> Credentials {
        as_role(Role::Edit)
    }

    /// A peer's notebook holding the room's state.
    fn replica(room: &Room<u8>, client: u64) -> Notebook {
        let peer = Notebook::with_client_id(client);
        peer.apply_update_v1(&room.notebook().encode_update_v1())
            .unwrap();
        peer
    }

    /// The frame carrying what `f` changes in `notebook`.
    fn change(notebook: &Notebook, f: impl FnOnce(&Notebook)) -> Vec<u8> {
        let before = notebook.state_vector();
        f(notebook);
        ClientSession::update_frame(&notebook.encode_diff_v1(&before))
    }

    /// A peer's notebook holding the room's state plus one request to run its first cell.
    fn run_request(room: &Room<u8>) -> Vec<u8> {
        let peer = replica(room, 77);
        let cell = peer.cell_ids()[0].clone();
        change(&peer, |nb| {
            nb.request_execution(&cell, &ExecutionTarget::Server, "peer", 1.0)
                .unwrap();
        })
    }

    #[test]
    fn only_execute_roles_may_queue_runs_and_a_refusal_costs_only_its_sender() {
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        room.join(1, edit());
        room.join(2, as_role(Role::Execute));
        let frame = run_request(&room);
        let before = room.notebook().encode_update_v1();
        let error = room.receive(1, &frame, 0).unwrap_err();
        assert!(
            error.to_string().contains("edit tokens may not run cells"),
            "{error}"
        );
        assert!(!room.is_tainted(), "judged before it was applied");
        assert_eq!(
            room.notebook().encode_update_v1(),
            before,
            "nothing applied"
        );

        let outcome = room.receive(2, &frame, 0).unwrap();
        assert_eq!(outcome.persist.len(), 1);
        // Plain edits from an edit peer stay fine.
        let peer = replica(&room, 78);
        let plain = change(&peer, |nb| {
            nb.insert_cell(0, inloop_doc::CellType::Markdown, "text")
                .unwrap();
        });
        room.join(3, edit());
        room.receive(3, &plain, 0).unwrap();
        assert!(!room.is_tainted());
    }

    #[test]
    fn a_pending_write_under_a_future_entry_never_runs_as_the_victims() {
        use inloop_doc::structs::{ItemSpec, Parent, encode_items_v1};
        use yrs::{Any, ID, IdSet};
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        let (attacker, victim) = (1, 2);
        room.join(attacker, edit());
        room.join(victim, as_role(Role::Execute));
        let victims = replica(&room, 100);
        let cell = victims.cell_ids()[0].clone();
        victims.set_source(&cell, "print('mine')").unwrap();
        let typed = ClientSession::update_frame(&victims.encode_update_v1());
        room.receive(victim, &typed, 0).unwrap();
        // The attacker writes `code` into the entry the victim will create next, with a
        // higher client id so that it wins the concurrent write.
        let future_entry = ID::new(
            ClientID::new(100),
            victims.state_vector().get(&ClientID::new(100)),
        );
        let attack = encode_items_v1(
            &[ItemSpec {
                id: ID::new(ClientID::new(900), 0),
                origin: None,
                right_origin: None,
                parent: Parent::Item(future_entry),
                parent_sub: Some("code".into()),
                content: Any::from("print('attacker')"),
            }],
            &IdSet::default(),
        );
        let frame = ClientSession::update_frame(&attack);
        // Sent before its step 2, it is dropped quietly; after, it cuts the sender.
        room.receive(attacker, &frame, 0).unwrap();
        assert_eq!(room.deferred_updates(), 1);
        room.receive(attacker, &Message::SyncStep2(vec![0, 0]).encode(), 0)
            .unwrap();
        let error = room.receive(attacker, &frame, 0).unwrap_err();
        assert!(matches!(error, Error::Unintegrable(_)), "{error}");

        let request = change(&victims, |nb| {
            nb.request_execution(&cell, &ExecutionTarget::Server, "victim", 1.0)
                .unwrap();
        });
        room.receive(victim, &request, 0).unwrap();
        let runs = room.notebook().executions();
        assert_eq!(runs[0].code, "print('mine')", "the victim's own code");
        // Now that the entry exists, the same write is judged as what it is.
        let error = room.receive(attacker, &frame, 0).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Forbidden {
                    action: Action::Execute,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(room.notebook().executions()[0].code, "print('mine')");
    }

    #[test]
    fn read_peers_change_nothing_pending_or_not() {
        use inloop_doc::structs::{ItemSpec, Parent, encode_items_v1};
        use yrs::{Any, ID, IdSet};
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        room.join(1, as_role(Role::Read));
        let pending = encode_items_v1(
            &[ItemSpec {
                id: ID::new(ClientID::new(5), 0),
                origin: Some(ID::new(ClientID::new(6), 3)),
                right_origin: None,
                parent: Parent::Neighbours,
                parent_sub: None,
                content: Any::from("x"),
            }],
            &IdSet::default(),
        );
        room.receive(1, &Message::SyncStep2(vec![0, 0]).encode(), 0)
            .unwrap();
        let error = room
            .receive(1, &ClientSession::update_frame(&pending), 0)
            .unwrap_err();
        assert!(matches!(error, Error::Unintegrable(_)), "{error}");
        let peer = replica(&room, 5);
        let edit = change(&peer, |nb| nb.set_source(&nb.cell_ids()[0], "x").unwrap());
        let error = room.receive(1, &edit, 0).unwrap_err();
        assert!(matches!(error, Error::ReadOnly), "{error}");
        // Its step 2 with nothing new (deletes it knows included) is fine.
        let step2 =
            Message::SyncStep2(replica(&room, 6).encode_diff_v1(&room.notebook().state_vector()))
                .encode();
        room.receive(1, &step2, 0).unwrap();
    }

    #[test]
    fn client_ids_belong_to_the_token_that_first_wrote_them() {
        let mut room = Room::new(Notebook::blank(), 0, 0, LIMITS);
        room.join(1, edit());
        room.join(2, Credentials::new(Role::Edit, "another-edit-token"));
        room.join(3, edit());
        let alice = replica(&room, 40);
        let first = change(&alice, |nb| nb.set_source(&nb.cell_ids()[0], "a").unwrap());
        room.receive(1, &first, 0).unwrap();
        // Another token's peer writing on under Alice's client id is refused...
        let spoof = change(&alice, |nb| nb.set_source(&nb.cell_ids()[0], "ab").unwrap());
        let error = room.receive(2, &spoof, 0).unwrap_err();
        assert!(
            matches!(error, Error::ForeignClient { client: 40 }),
            "{error}"
        );
        // ...while Alice reconnected (the same token, a new connection) goes on.
        room.leave(1, 0);
        room.receive(3, &spoof, 0).unwrap();
        assert_eq!(room.notebook().cells()[0].source, "ab");
    }

    #[test]
    fn presence_is_bounded_and_owned() {
        let mut room: Room<u8> = Room::new(Notebook::blank(), 0, 0, LIMITS);
        room.join(1, edit());
        room.join(2, edit());
        let presence =
            |client: u64, clock: u32, json: &str| Message::presence(client, clock, json).encode();
        let outcome = room
            .receive(1, &presence(10, 1, r#"{"name":"ada"}"#), 0)
            .unwrap();
        assert_eq!(outcome.broadcast.len(), 1);
        // Peer 2 cannot take over or remove peer 1's state.
        let outcome = room.receive(2, &presence(10, 5, "null"), 0).unwrap();
        assert!(outcome.broadcast.is_empty());
        assert_eq!(room.presence.len(), 1);
        // One state too large.
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(LIMITS.max_presence_bytes));
        let error = room.receive(2, &presence(20, 1, &big), 0).unwrap_err();
        assert!(matches!(error, Error::PresenceTooLarge(_)), "{error}");
        // Too many states for one connection.
        room.receive(2, &presence(21, 1, "{}"), 0).unwrap();
        room.receive(2, &presence(22, 1, "{}"), 0).unwrap();
        let error = room.receive(2, &presence(23, 1, "{}"), 0).unwrap_err();
        assert!(matches!(error, Error::PresenceTooLarge(_)), "{error}");
        // Too fast: the burst is spent, then time refills it.
        let state = format!(r#"{{"c":"{}"}}"#, "y".repeat(900));
        let mut sent = 0;
        let error = loop {
            match room.receive(1, &presence(10, 10 + sent, &state), 0) {
                Ok(_) => sent += 1,
                Err(error) => break error,
            }
        };
        assert!(matches!(error, Error::PresenceFlood { .. }), "{error}");
        assert_eq!(sent, 4, "a burst of 4,000 bytes");
        room.join(3, edit());
        room.receive(3, &presence(30, 1, &state), 0).unwrap();
        let later = room.receive(3, &presence(30, 2, &state), 5_000);
        assert!(later.is_ok(), "allowance refills with time");
        // A peer that leaves frees its bytes.
        let before = room.presence_bytes;
        room.leave(3, 5_000);
        assert!(room.presence_bytes < before);
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
                let outcome = room.receive(peer, &frame, 0).unwrap();
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
        let (first, join) = (session.connected(), room.join(1, edit()));
        exchange(&mut room, 1, &mut session, first, join);
        room.leave(1, 0);

        // Offline, the runtime writes far more than one message may carry.
        let text: String = (0..60_000).map(|i| format!("{i:x}")).collect();
        assert!(text.len() > 3 * limits.max_message_bytes);
        notebook
            .push_cell(inloop_doc::CellType::Code, &text)
            .unwrap();
        session.local_change();
        let (again, join) = (session.connected(), room.join(1, edit()));
        assert!(exchange(&mut room, 1, &mut session, again, join));
        assert_eq!(
            session.unacknowledged(),
            0,
            "the step 2 in chunks is acknowledged"
        );
        assert_eq!(room.notebook().cells()[1].source, text);

        // A peer joining gets the document in chunks too, and a stock client whole.
        let mut newcomer = ClientSession::new(Notebook::new());
        let (hello, join) = (newcomer.connected(), room.join(2, edit()));
        exchange(&mut room, 2, &mut newcomer, hello, join);
        assert_eq!(newcomer.notebook().cells()[1].source, text);
        let stock = Message::SyncStep1(Default::default()).encode();
        room.join(3, edit());
        let whole = room.receive(3, &stock, 0).unwrap().reply;
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
        let (hello, join) = (reloaded.connected(), room.join(4, edit()));
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
            room.join(peer, edit());
            room.receive(peer, &frame, 0)
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
        room.join(4, edit());
        for frame in &nested {
            last = room.receive(4, frame, 0);
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
        let join = room.join(1, as_role(Role::Edit));
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
        let join = room.join(2, as_role(Role::Edit));
        edit(&mut session, "f");
        let early = session.updates_frames(&take()).unwrap();
        exchange(&mut room, 2, &mut session, [hello, early].concat(), vec![]);
        assert_eq!(session.unacknowledged(), 2, "e and f wait for the step 2");
        // "f" depends on "e", which the relay lacks: it waits for the step 2 too, and is not
        // kept pending meanwhile.
        assert_eq!(room.deferred_updates(), 1);
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
        room.join(1, edit());
        let outcome = room.receive(1, &frame, 0).unwrap();
        assert!(
            outcome.reply.is_empty(),
            "a stock Yjs client must not get message type 101"
        );
    }
}
