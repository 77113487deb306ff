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

#[cfg(test)]
mod tests {
    use inloop_doc::CellType;
    use yrs::sync::awareness::AwarenessUpdateEntry;

    use super::*;

    const LIMITS: SizeLimits = SizeLimits {
        max_document_bytes: 1 << 20,
        max_message_bytes: 4 << 10,
    };

    fn decoded(frames: &[Vec<u8>]) -> Vec<Message> {
        frames.iter().map(|f| wire::decode(f).unwrap()).collect()
    }

    /// A notebook with one markdown cell of `text`.
    fn notebook_with(text: &str) -> Notebook {
        let notebook = Notebook::new();
        notebook.insert_cell(0, CellType::Markdown, text).unwrap();
        notebook
    }

    fn sources(notebook: &Notebook) -> Vec<String> {
        let ids = notebook.cell_ids();
        ids.iter().map(|id| notebook.source(id).unwrap()).collect()
    }

    /// A change to `notebook` (a cell appended), reported to `session` as the client does, and
    /// the update it made.
    fn local_change(session: &mut ClientSession, text: &str) -> Vec<u8> {
        let notebook = session.notebook().clone();
        let before = notebook.state_vector();
        notebook
            .insert_cell(notebook.cell_count(), CellType::Markdown, text)
            .unwrap();
        session.local_change();
        notebook.encode_diff_v1(&before)
    }

    /// What the session answers and reports after each of `frames`.
    fn feed(session: &mut ClientSession, frames: &[Vec<u8>]) -> (Vec<Message>, Vec<ClientEvent>) {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        for frame in frames {
            let received = session.receive(frame).unwrap();
            replies.extend(decoded(&received.replies));
            events.extend(received.events);
        }
        (replies, events)
    }

    /// The session's state vector from its first frames on a new connection.
    fn connect(session: &mut ClientSession) -> StateVector {
        match &decoded(&session.connected())[1] {
            Message::SyncStep1(state_vector) => state_vector.clone(),
            other => panic!("a state vector second, got {other:?}"),
        }
    }

    /// A new connection to an inloop relay holding `relay`: its state vector, its limits, the
    /// answer to ours. The session's replies are applied to `relay`.
    fn handshake(
        session: &mut ClientSession,
        relay: &Notebook,
    ) -> (Vec<Message>, Vec<ClientEvent>) {
        let ours = connect(session);
        let frames = [
            Message::SyncStep1(relay.state_vector()).encode(),
            Message::Limits(LIMITS).encode(),
            Message::SyncStep2(relay.encode_diff_v1(&ours)).encode(),
        ];
        let (replies, events) = feed(session, &frames);
        for reply in &replies {
            if let Message::SyncStep2(update) | Message::Update(update) = reply {
                relay.apply_update_v1(update).unwrap();
            }
        }
        (replies, events)
    }

    fn ack(session: &mut ClientSession, count: u64) -> Vec<ClientEvent> {
        feed(session, &[Message::Ack(count).encode()]).1
    }

    fn presence_of(client: u64, clock: u32, json: &str) -> Vec<u8> {
        Message::presence(client, clock, json).encode()
    }

    #[test]
    fn a_connection_opens_with_a_request_for_acks_our_state_vector_and_our_presence() {
        let notebook = notebook_with("mine");
        let mut session = ClientSession::new(notebook.clone());
        assert_eq!(
            decoded(&session.connected()),
            [Message::Ack(0), Message::SyncStep1(notebook.state_vector())]
        );
        let set = session.set_presence(Some(r#"{"user":"ada"}"#));
        let me = notebook.client_id();
        assert_eq!(
            wire::decode(&set).unwrap(),
            Message::presence(me, 1, r#"{"user":"ada"}"#)
        );
        let frames = decoded(&session.connected());
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert_eq!(frames[2], Message::presence(me, 2, r#"{"user":"ada"}"#));
        // Cleared: announced as null, and no longer sent on connection.
        let cleared = session.set_presence(None);
        assert_eq!(
            wire::decode(&cleared).unwrap(),
            Message::presence(me, 3, "null")
        );
        assert_eq!(session.connected().len(), 2);
    }

    #[test]
    fn against_an_inloop_relay_the_answer_waits_for_its_limits_and_sync_ends_with_its_step_2() {
        let relay = notebook_with("from the relay");
        let mut session = ClientSession::new(notebook_with("written offline"));
        let ours = connect(&mut session);

        let (replies, events) = feed(
            &mut session,
            &[Message::SyncStep1(relay.state_vector()).encode()],
        );
        assert!(
            replies.is_empty() && events.is_empty(),
            "{replies:?} {events:?}"
        );

        let (replies, events) = feed(&mut session, &[Message::Limits(LIMITS).encode()]);
        assert_eq!(events, [ClientEvent::Limits(LIMITS)]);
        let [Message::SyncStep2(answer)] = &replies[..] else {
            panic!("one sync step 2, got {replies:?}");
        };
        relay.apply_update_v1(answer).unwrap();
        let mut theirs = sources(&relay);
        theirs.sort(); // (two cells made apart: their order is the client ids')
        assert_eq!(theirs, ["from the relay", "written offline"]);
        assert!(!session.is_synced());

        let step2 = Message::SyncStep2(relay.encode_diff_v1(&ours)).encode();
        let (replies, events) = feed(&mut session, &[step2]);
        assert!(replies.is_empty(), "{replies:?}");
        assert_eq!(events, [ClientEvent::Synced]);
        assert!(session.is_synced());
        let mut mine = sources(session.notebook());
        mine.sort();
        assert_eq!(mine, ["from the relay", "written offline"]);
    }

    #[test]
    fn a_stock_server_that_sends_no_limits_is_answered_when_its_step_2_comes() {
        let relay = notebook_with("from the relay");
        let mut session = ClientSession::new(notebook_with("mine"));
        let ours = connect(&mut session);
        let frames = [
            Message::SyncStep1(relay.state_vector()).encode(),
            Message::SyncStep2(relay.encode_diff_v1(&ours)).encode(),
        ];
        let (replies, events) = feed(&mut session, &frames);
        assert_eq!(events, [ClientEvent::Synced]);
        let [Message::SyncStep2(answer)] = &replies[..] else {
            panic!("one sync step 2, got {replies:?}");
        };
        relay.apply_update_v1(answer).unwrap();
        assert_eq!(relay.cell_count(), 2);

        // Limits said on an earlier connection count on the next: a step 1 is answered at once.
        feed(&mut session, &[Message::Limits(LIMITS).encode()]);
        connect(&mut session);
        assert!(!session.is_synced(), "a new connection syncs again");
        let (replies, _) = feed(
            &mut session,
            &[Message::SyncStep1(relay.state_vector()).encode()],
        );
        assert!(
            matches!(replies[..], [Message::SyncStep2(_)]),
            "{replies:?}"
        );
    }

    #[test]
    fn changes_made_offline_are_unacknowledged_until_the_relay_acks_the_step_2_carrying_them() {
        let relay = Notebook::new();
        let mut session = ClientSession::new(Notebook::new());
        local_change(&mut session, "one");
        local_change(&mut session, "two");
        assert_eq!(session.unacknowledged(), 2);

        handshake(&mut session, &relay);
        assert_eq!(sources(&relay), ["one", "two"]);
        assert_eq!(session.unacknowledged(), 2, "sent is not stored");
        assert_eq!(ack(&mut session, 0), []);
        assert_eq!(session.unacknowledged(), 2);
        assert_eq!(ack(&mut session, 1), [ClientEvent::Acknowledged]);
        assert_eq!(session.unacknowledged(), 0);
    }

    #[test]
    fn live_updates_count_down_message_by_message_and_go_out_merged() {
        let relay = Notebook::new();
        let mut session = ClientSession::new(Notebook::new());
        handshake(&mut session, &relay); // message 1: the step 2
        ack(&mut session, 1);

        let a = local_change(&mut session, "a");
        let frames = session.updates_frames(std::slice::from_ref(&a)).unwrap(); // message 2
        assert_eq!(decoded(&frames), [Message::Update(a.clone())]);
        let b = local_change(&mut session, "b");
        let c = local_change(&mut session, "c");
        let frames = session.updates_frames(&[b, c]).unwrap(); // message 3, merged
        let [Message::Update(merged)] = &decoded(&frames)[..] else {
            panic!("one update message, got {frames:?}");
        };
        assert_eq!(session.unacknowledged(), 3);

        assert_eq!(ack(&mut session, 2), [ClientEvent::Acknowledged]);
        assert_eq!(session.unacknowledged(), 2, "message 2 carried one change");
        assert_eq!(ack(&mut session, 3), [ClientEvent::Acknowledged]);
        assert_eq!(session.unacknowledged(), 0);
        assert_eq!(ack(&mut session, 3), [], "an ack again changes nothing");

        // The merged message carries both changes, in order.
        relay.apply_update_v1(&a).unwrap();
        relay.apply_update_v1(merged).unwrap();
        assert_eq!(sources(&relay), ["a", "b", "c"]);
        assert_eq!(ClientSession::update_frame(merged), frames[0]);
    }

    #[test]
    fn an_update_sent_before_the_step_2_is_acknowledged_only_with_the_step_2() {
        let relay = Notebook::new();
        let mut session = ClientSession::new(Notebook::new());
        let ours = connect(&mut session);
        let early = local_change(&mut session, "early");
        session.updates_frames(&[early]).unwrap(); // message 1: may be lost with the connection
        let frames = [
            Message::SyncStep1(relay.state_vector()).encode(),
            Message::Limits(LIMITS).encode(),
            Message::SyncStep2(relay.encode_diff_v1(&ours)).encode(),
        ];
        feed(&mut session, &frames); // message 2: the step 2, with the change
        assert_eq!(ack(&mut session, 1), []);
        assert_eq!(session.unacknowledged(), 1);
        assert_eq!(ack(&mut session, 2), [ClientEvent::Acknowledged]);
        assert_eq!(session.unacknowledged(), 0);
    }

    #[test]
    fn a_reconnection_sends_again_what_was_in_flight_and_counts_its_messages_afresh() {
        let relay = Notebook::new();
        let mut session = ClientSession::new(Notebook::new());
        handshake(&mut session, &relay);
        ack(&mut session, 1);
        feed(&mut session, &[presence_of(7, 1, r#"{"user":"bob"}"#)]);
        assert_eq!(session.presence().count(), 1);

        let lost = local_change(&mut session, "lost in flight");
        session.updates_frames(&[lost]).unwrap(); // message 2, never acknowledged
        assert_eq!(session.unacknowledged(), 1);

        // The connection drops; the relay never got message 2.
        let (replies, events) = handshake(&mut session, &relay);
        assert_eq!(events, [ClientEvent::Limits(LIMITS), ClientEvent::Synced]);
        assert!(matches!(replies[..], [Message::SyncStep2(_)]));
        assert_eq!(sources(&relay), ["lost in flight"], "the step 2 carried it");
        assert_eq!(
            session.presence().count(),
            0,
            "others' presence is asked for again"
        );
        assert_eq!(session.unacknowledged(), 1);
        // Message 1 of this connection is its step 2.
        assert_eq!(ack(&mut session, 1), [ClientEvent::Acknowledged]);
        assert_eq!(session.unacknowledged(), 0);
    }

    #[test]
    fn presence_of_others_is_kept_by_clock_and_ours_is_ignored() {
        let mut session = ClientSession::new(Notebook::new());
        let me = session.notebook().client_id();
        let changed = |session: &mut ClientSession, frame: Vec<u8>| feed(session, &[frame]).1;

        assert_eq!(
            changed(&mut session, presence_of(7, 2, r#"{"user":"bob"}"#)),
            [ClientEvent::PresenceChanged]
        );
        assert_eq!(
            changed(&mut session, presence_of(7, 1, r#"{"user":"old"}"#)),
            []
        );
        assert_eq!(
            changed(&mut session, presence_of(me, 9, r#"{"user":"me"}"#)),
            []
        );
        assert_eq!(
            session.presence().collect::<Vec<_>>(),
            [(7, r#"{"user":"bob"}"#)]
        );

        // Two clients in one message, one of them leaving.
        let mut update = AwarenessUpdate {
            clients: HashMap::new(),
        };
        for (client, clock, json) in [(7, 3, "null"), (8, 1, r#"{"user":"cy"}"#)] {
            let entry = AwarenessUpdateEntry {
                clock,
                json: json.into(),
            };
            update.clients.insert(yrs::ClientID::new(client), entry);
        }
        assert_eq!(
            changed(&mut session, Message::Awareness(update).encode()),
            [ClientEvent::PresenceChanged]
        );
        assert_eq!(
            session.presence().collect::<Vec<_>>(),
            [(8, r#"{"user":"cy"}"#)]
        );

        // Asked for ours: nothing until we have one.
        let query = Message::QueryAwareness.encode();
        assert!(
            feed(&mut session, std::slice::from_ref(&query))
                .0
                .is_empty()
        );
        session.set_presence(Some(r#"{"user":"me"}"#));
        let (replies, _) = feed(&mut session, &[query]);
        assert_eq!(replies, [Message::presence(me, 2, r#"{"user":"me"}"#)]);
    }

    #[test]
    fn a_step_2_larger_than_the_relays_messages_goes_in_chunks() {
        let relay = Notebook::new();
        let big = "x".repeat(5 * LIMITS.max_message_bytes as usize);
        let mut session = ClientSession::new(notebook_with(&big));
        let (replies, _) = handshake(&mut session, &relay);
        assert!(replies.len() >= 5, "{} chunks", replies.len());
        let mut whole = Reassembly::default();
        let mut frame = None;
        for reply in replies {
            let Message::Chunk {
                total,
                offset,
                bytes,
            } = reply
            else {
                panic!("a chunk, got {reply:?}");
            };
            assert!(bytes.len() <= LIMITS.max_message_bytes as usize);
            frame = whole.push(total, offset, &bytes, usize::MAX).unwrap();
        }
        let Message::SyncStep2(update) = wire::decode(&frame.expect("the last chunk")).unwrap()
        else {
            panic!("a sync step 2 in the chunks");
        };
        relay.apply_update_v1(&update).unwrap();
        assert_eq!(sources(&relay), std::slice::from_ref(&big));

        // Live updates too.
        let larger = local_change(&mut session, &big);
        let frames = session.updates_frames(&[larger]).unwrap();
        assert!(frames.len() >= 5);
        assert!(
            frames
                .iter()
                .all(|f| f.len() <= LIMITS.max_message_bytes as usize)
        );
    }

    #[test]
    fn a_relays_step_2_in_chunks_syncs_once_its_last_chunk_arrives() {
        let big = "y".repeat(3 * LIMITS.max_message_bytes as usize);
        let relay = notebook_with(&big);
        let mut session = ClientSession::new(Notebook::new());
        let ours = connect(&mut session);
        feed(&mut session, &[Message::Limits(LIMITS).encode()]);
        let step2 = Message::SyncStep2(relay.encode_diff_v1(&ours)).encode();
        let chunks = chunks::split(step2, LIMITS.max_message_bytes as usize);
        let (last, first) = chunks.split_last().unwrap();
        assert!(!first.is_empty());
        assert_eq!(feed(&mut session, first).1, []);
        assert!(!session.is_synced());
        assert_eq!(
            feed(&mut session, std::slice::from_ref(last)).1,
            [ClientEvent::Synced]
        );
        assert_eq!(sources(session.notebook()), [big]);
    }

    #[test]
    fn chunks_from_a_relay_that_said_no_limits_are_refused() {
        let mut session = ClientSession::new(Notebook::new());
        connect(&mut session);
        let chunk = Message::Chunk {
            total: 10,
            offset: 0,
            bytes: vec![0; 5],
        };
        assert!(session.receive(&chunk.encode()).is_err());
    }

    #[test]
    fn refusals_lease_messages_and_bad_frames() {
        let mut session = ClientSession::new(Notebook::new());
        let refusal = Message::Auth(Some("read-only link".into())).encode();
        assert_eq!(
            feed(&mut session, &[refusal]).1,
            [ClientEvent::Refused("read-only link".into())]
        );
        assert_eq!(feed(&mut session, &[Message::Auth(None).encode()]).1, []);
        let granted = LeaseMessage::Granted {
            epoch: 3,
            ttl_ms: 15_000,
        };
        assert_eq!(
            feed(&mut session, &[Message::Lease(granted.clone()).encode()]).1,
            [ClientEvent::Lease(granted)]
        );
        assert_eq!(
            wire::decode(&ClientSession::lease_frame(LeaseMessage::Heartbeat)).unwrap(),
            Message::Lease(LeaseMessage::Heartbeat)
        );
        assert!(session.receive(&[0, 2, 200, 1]).is_err());
        assert!(
            session
                .receive(&Message::Update(vec![9, 9, 9]).encode())
                .is_err()
        );
    }

    #[test]
    fn only_refusals_other_than_too_many_messages_are_final() {
        for (code, fin) in [
            (1000, false),
            (1001, false),
            (1013, false),
            (4399, false),
            (4400, true),
            (4401, true),
            (4403, true),
            (4413, true),
            (4429, false),
            (4499, true),
            (4500, false),
        ] {
            assert_eq!(close_is_final(code), fin, "{code}");
        }
    }
}
