//! A peer's side of a document's socket (browser, server runtime, agent): keeps its notebook in
//! step with the relay's, and its presence known. The caller owns the socket: frames in, frames
//! out. Local changes reach the relay through [`Notebook::observe_local_updates`] and
//! [`ClientSession::update_frame`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use inloop_doc::Notebook;
use yrs::sync::AwarenessUpdate;
use yrs::{ReadTxn, StateVector, Transact};

use crate::chunks::{self, Reassembly};
use crate::lease::LeaseMessage;
use crate::wire::{self, Message, SizeLimits};
use crate::{Error, Result};

/// Where a peer's connection to the relay stands (serialized for pages as
/// `{state: "offline", code, reason}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Connecting,
    /// Connected; the relay's state has not all arrived yet.
    Syncing,
    Synced,
    /// Disconnected; trying again. `code` and `reason` say what ended the last connection
    /// (the relay's close code, when it sent one).
    Offline {
        code: Option<u16>,
        reason: String,
    },
    /// Disconnected for good: refused (a close code for which [`close_is_final`]), or closed
    /// by this peer.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// Whether a close code forbids reconnecting. y-websocket's convention: 4400 to 4499 mean "do
/// not come back" (the relay uses 4400 + an HTTP status: a bad token, a refused write), except
/// 4429 (too many messages), where backing off and resyncing is right.
pub fn close_is_final(code: u16) -> bool {
    (4400..4500).contains(&code) && code != 4429
}

/// Queued local changes are merged into one message up to about this size: the relay limits
/// the size of a message.
pub const MERGE_BYTES: usize = 1 << 20;

/// The first wait before reconnecting; each failed attempt doubles it, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: u32 = 100;
pub const MAX_BACKOFF_MS: u32 = 5_000;

/// What the caller should know after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The relay's answer to our state vector arrived: we have everything it had.
    Synced,
    /// Someone's presence changed; read [`ClientSession::presence`].
    PresenceChanged,
    Lease(LeaseMessage),
    /// The relay refused us (y-websocket AUTH denial).
    Refused(String),
    /// The relay stored more of our changes: [`ClientSession::unacknowledged`] went down.
    Acknowledged,
    /// The relay's size limits (sent when the connection opens): keep each update within them.
    Limits(crate::SizeLimits),
}

/// The frames to send and the events to act on, after one frame from the relay.
#[derive(Debug, Default)]
pub struct Received {
    pub replies: Vec<Vec<u8>>,
    pub events: Vec<ClientEvent>,
}

/// One peer's sync state over one connection at a time.
///
/// It also counts the local changes the relay has not stored yet (an "unsent changes" badge,
/// a warning before closing a tab): report each local change with
/// [`ClientSession::local_change`] and send them with [`ClientSession::updates_frame`]; the
/// relay acknowledges every update-carrying message once it is stored.
#[derive(Debug)]
pub struct ClientSession {
    notebook: Notebook,
    synced: bool,
    presence_clock: u32,
    local_presence: Option<Arc<str>>,
    others: HashMap<u64, (u32, Arc<str>)>,
    /// Local changes made since the session began.
    changes: u64,
    /// How many of them the relay has stored.
    stored_changes: u64,
    /// Whether this connection's sync step 2 went out: it carries every change made before it,
    /// so an update frame sent after it completes everything up to its last change.
    stepped: bool,
    /// Update-carrying messages sent on this connection.
    sent_messages: u64,
    /// Messages not acknowledged yet: (message number, changes stored once it is).
    in_flight: VecDeque<(u64, u64)>,
    /// The relay's limits, once it said them: larger frames go to it in chunks.
    limits: Option<SizeLimits>,
    /// A frame from the relay arriving in chunks.
    incoming: Reassembly,
    /// The relay's state vector, while the answer to it waits for the relay's limits (which
    /// come right after on a relay that has them): a large answer must go in chunks.
    unanswered: Option<StateVector>,
}

impl ClientSession {
    pub fn new(notebook: Notebook) -> Self {
        Self {
            notebook,
            synced: false,
            presence_clock: 0,
            local_presence: None,
            others: HashMap::new(),
            changes: 0,
            stored_changes: 0,
            stepped: false,
            sent_messages: 0,
            in_flight: VecDeque::new(),
            limits: None,
            incoming: Reassembly::default(),
            unanswered: None,
        }
    }

    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    /// Whether the relay's state has arrived since the connection opened.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Local changes the relay has not acknowledged as stored: made offline, or in flight.
    pub fn unacknowledged(&self) -> u64 {
        self.changes - self.stored_changes
    }

    /// Counts one local change (one [`Notebook::observe_local_updates`] callback) as not yet
    /// stored by the relay.
    pub fn local_change(&mut self) {
        self.changes += 1;
    }

    /// The first frames on a new connection: our state vector (the relay answers with what we
    /// lack), a request for acknowledgements, and our presence.
    pub fn connected(&mut self) -> Vec<Vec<u8>> {
        self.synced = false;
        self.others.clear();
        self.stepped = false;
        self.sent_messages = 0;
        // Whatever was in flight on the last connection goes again in this one's step 2.
        self.in_flight.clear();
        self.incoming = Reassembly::default();
        self.unanswered = None;
        let state_vector = self.notebook.doc().transact().state_vector();
        // The request for acknowledgements first: the relay then knows to send its limits, and
        // its answer to our state vector in chunks if it is large.
        let mut frames = vec![
            Message::Ack(0).encode(),
            Message::SyncStep1(state_vector).encode(),
        ];
        if self.local_presence.is_some() {
            frames.push(self.presence_frame());
        }
        frames
    }

    /// Handles one frame from the relay.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Received> {
        let mut received = Received::default();
        match wire::decode(frame)? {
            Message::SyncStep1(state_vector) => {
                // The relay sends its state vector before it reads our request for
                // acknowledgements; its limits follow. Until we know them (from this
                // connection or an earlier one) the answer waits.
                if self.limits.is_some() {
                    self.answer(state_vector, &mut received);
                } else {
                    self.unanswered = Some(state_vector);
                }
            }
            Message::SyncStep2(update) => {
                // A relay without limits (a stock y-websocket server) answers our state vector
                // without sending them first.
                if let Some(state_vector) = self.unanswered.take() {
                    self.answer(state_vector, &mut received);
                }
                self.apply(&update)?;
                self.synced = true;
                received.events.push(ClientEvent::Synced);
            }
            Message::Update(update) => self.apply(&update)?,
            Message::Awareness(update) => {
                if self.apply_presence(update) {
                    received.events.push(ClientEvent::PresenceChanged);
                }
            }
            Message::QueryAwareness => {
                if self.local_presence.is_some() {
                    received.replies.push(self.presence_frame());
                }
            }
            Message::Auth(Some(reason)) => received.events.push(ClientEvent::Refused(reason)),
            Message::Auth(None) => {}
            Message::Lease(message) => received.events.push(ClientEvent::Lease(message)),
            Message::Limits(limits) => {
                self.limits = Some(limits);
                received.events.push(ClientEvent::Limits(limits));
                if let Some(state_vector) = self.unanswered.take() {
                    self.answer(state_vector, &mut received);
                }
            }
            Message::Chunk {
                total,
                offset,
                bytes,
            } => {
                // Only a relay that said its limits sends chunks, of at most its document size.
                let max_total = self.limits.map_or(0, |l| {
                    usize::try_from(l.max_document_bytes).unwrap_or(usize::MAX)
                });
                if let Some(frame) = self.incoming.push(total, offset, &bytes, max_total)? {
                    return self.receive(chunks::unchunked(&frame)?);
                }
            }
            Message::Ack(count) => {
                let before = self.stored_changes;
                while let Some(&(number, stored)) = self.in_flight.front() {
                    if number > count {
                        break;
                    }
                    self.stored_changes = self.stored_changes.max(stored);
                    self.in_flight.pop_front();
                }
                if self.stored_changes != before {
                    received.events.push(ClientEvent::Acknowledged);
                }
            }
        }
        Ok(received)
    }

    /// What we have that the relay lacks (edits made offline, for one), within its limits.
    fn answer(&mut self, state_vector: StateVector, received: &mut Received) {
        let diff = self.notebook.doc().transact().encode_diff_v1(&state_vector);
        let frame = Message::SyncStep2(diff).encode();
        received.replies.extend(self.within_limits(frame));
        self.stepped = true;
        self.sent(self.changes);
    }

    /// The frame carrying one update, not counted for acknowledgements.
    pub fn update_frame(update: &[u8]) -> Vec<u8> {
        wire::encode_update(update)
    }

    /// One message carrying every local change not sent yet (from
    /// [`Notebook::observe_local_updates`]), merged: a peer writing fast (a kernel printing in
    /// a loop) sends one message per socket write rather than one per change. Pass them all,
    /// in order: the relay's acknowledgement of this message counts every change made so far.
    /// One frame, or several [`chunks`] when it is larger than the relay takes.
    pub fn updates_frames(&mut self, updates: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let frame = match updates {
            [one] => wire::encode_update(one),
            many => {
                let merged = yrs::merge_updates_v1(many.iter().map(Vec::as_slice))
                    .map_err(|e| Error::Malformed(format!("merging local updates: {e}")))?;
                wire::encode_update(&merged)
            }
        };
        // Before this connection's step 2, earlier changes may still be on their way only in it.
        let completes = if self.stepped {
            self.changes
        } else {
            self.stored_changes
        };
        self.sent(completes);
        Ok(self.within_limits(frame))
    }

    /// `frame` as the relay takes it: whole, or in chunks when it is larger than the relay's
    /// message limit (known once the relay said it, on this connection or an earlier one).
    fn within_limits(&self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        match self.limits {
            Some(limits) => chunks::split(
                frame,
                usize::try_from(limits.max_message_bytes).unwrap_or(usize::MAX),
            ),
            None => vec![frame],
        }
    }

    fn sent(&mut self, completes: u64) {
        self.sent_messages += 1;
        self.in_flight.push_back((self.sent_messages, completes));
    }

    /// The frame carrying a lease request, heartbeat or release.
    pub fn lease_frame(message: LeaseMessage) -> Vec<u8> {
        Message::Lease(message).encode()
    }

    /// Sets this peer's presence (JSON: name, colour, cursor...) or clears it with `None`;
    /// returns the frame announcing it.
    pub fn set_presence(&mut self, json: Option<&str>) -> Vec<u8> {
        self.local_presence = json.map(Arc::from);
        self.presence_frame()
    }

    /// The presence of the other peers: (Yjs client id, JSON state).
    pub fn presence(&self) -> impl Iterator<Item = (u64, &str)> {
        self.others
            .iter()
            .map(|(client, (_, json))| (*client, &**json))
    }

    fn presence_frame(&mut self) -> Vec<u8> {
        self.presence_clock += 1;
        let json = self.local_presence.as_deref().unwrap_or("null");
        Message::presence(self.notebook.client_id(), self.presence_clock, json).encode()
    }

    fn apply(&self, update: &[u8]) -> Result<()> {
        self.notebook
            .apply_update_v1(update)
            .map_err(|e| Error::Malformed(e.to_string()))
    }

    fn apply_presence(&mut self, update: AwarenessUpdate) -> bool {
        let own = self.notebook.client_id();
        let mut changed = false;
        for (client, entry) in update.clients {
            let client = client.get();
            if client == own {
                continue;
            }
            let newer = self
                .others
                .get(&client)
                .is_none_or(|(clock, _)| entry.clock >= *clock);
            if !newer {
                continue;
            }
            changed = true;
            if &*entry.json == "null" {
                self.others.remove(&client);
            } else {
                self.others.insert(client, (entry.clock, entry.json));
            }
        }
        changed
    }
}
