//! A peer's side of a document's socket (browser, server runtime, agent): keeps its notebook in
//! step with the relay's, and its presence known. The caller owns the socket: frames in, frames
//! out. Local changes reach the relay through [`Notebook::observe_local_updates`] and
//! [`ClientSession::update_frame`].

use std::collections::HashMap;
use std::sync::Arc;

use inloop_doc::Notebook;
use yrs::sync::AwarenessUpdate;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::{ReadTxn, Transact};

use crate::lease::LeaseMessage;
use crate::wire::{self, Message};
use crate::{Error, Result};

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
}

/// The frames to send and the events to act on, after one frame from the relay.
#[derive(Debug, Default)]
pub struct Received {
    pub replies: Vec<Vec<u8>>,
    pub events: Vec<ClientEvent>,
}

/// One peer's sync state over one connection at a time.
#[derive(Debug)]
pub struct ClientSession {
    notebook: Notebook,
    synced: bool,
    presence_clock: u32,
    local_presence: Option<Arc<str>>,
    others: HashMap<u64, (u32, Arc<str>)>,
}

impl ClientSession {
    pub fn new(notebook: Notebook) -> Self {
        Self {
            notebook,
            synced: false,
            presence_clock: 0,
            local_presence: None,
            others: HashMap::new(),
        }
    }

    pub fn notebook(&self) -> &Notebook {
        &self.notebook
    }

    /// Whether the relay's state has arrived since the connection opened.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The first frames on a new connection: our state vector (the relay answers with what we
    /// lack) and our presence.
    pub fn connected(&mut self) -> Vec<Vec<u8>> {
        self.synced = false;
        self.others.clear();
        let state_vector = self.notebook.doc().transact().state_vector();
        let mut frames = vec![Message::SyncStep1(state_vector).encode()];
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
                // What we have that the relay lacks: edits made offline, for one.
                let diff = self.notebook.doc().transact().encode_diff_v1(&state_vector);
                received.replies.push(Message::SyncStep2(diff).encode());
            }
            Message::SyncStep2(update) => {
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
        }
        Ok(received)
    }

    /// The frame carrying a local change (from [`Notebook::observe_local_updates`]).
    pub fn update_frame(update: &[u8]) -> Vec<u8> {
        wire::encode_update(update)
    }

    /// One frame carrying several local changes, merged: a peer writing fast (a kernel printing
    /// in a loop) sends one message per socket write rather than one per change.
    pub fn updates_frame(updates: &[Vec<u8>]) -> Result<Vec<u8>> {
        match updates {
            [one] => Ok(wire::encode_update(one)),
            many => {
                let merged = yrs::merge_updates_v1(many.iter().map(Vec::as_slice))
                    .map_err(|e| Error::Malformed(format!("merging local updates: {e}")))?;
                Ok(wire::encode_update(&merged))
            }
        }
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
        let json = self
            .local_presence
            .clone()
            .unwrap_or_else(|| Arc::from("null"));
        let mut update = AwarenessUpdate {
            clients: HashMap::new(),
        };
        let entry = AwarenessUpdateEntry {
            clock: self.presence_clock,
            json,
        };
        update
            .clients
            .insert(self.notebook.doc().client_id(), entry);
        Message::Awareness(update).encode()
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
