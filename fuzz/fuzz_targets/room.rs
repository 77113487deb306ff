//! The relay's room (`inloop_sync::Room`) fed arbitrary frames from a few peers with different
//! roles: raw bytes, real frames (and real frames with a byte changed), updates made by each
//! peer's own replica of the notebook through the typed API (sent in any order, so that some
//! depend on items the room does not have yet, whole or in chunks), sync steps, presence, lease
//! messages, acknowledgements, departures, clock ticks and compactions. The relay's side is
//! played as the relay plays it: every connection joins with its slot's token, a refused frame
//! closes the sender's connection (it joins again), a frame over the message limit never
//! reaches the room.
//!
//! Checked: no panic; a read-role peer's frames never change the document (its encoded state is
//! the same before and after) and nothing of theirs is stored; an edit-role peer's frames never
//! change the execution queue or the runtimes; the room is never tainted (an update judged
//! integrable left something pending); every frame the room sends decodes; lease epochs only
//! grow and only runtime-role peers are granted the lease; and what the room stored, replayed
//! from the start, is the document it serves.
#![no_main]

use arbitrary::Arbitrary;
use inloop_doc::execution::{self, Outcome as RunOutcome, Reply};
use inloop_doc::{CellType, ExecutionTarget, Notebook, Output, StreamName};
use inloop_fuzz::{awareness_frame, base_notebook, base_update, sample_frames};
use inloop_sync::wire::{self, Message};
use inloop_sync::{Action, Credentials, LeaseMessage, Outcome, Role, Room, RoomLimits, chunks};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: inloop_fuzz::FuzzAlloc = inloop_fuzz::FuzzAlloc;

/// The role of each peer slot.
const ROLES: [Role; 6] = [
    Role::Read,
    Role::Edit,
    Role::Execute,
    Role::Runtime,
    Role::Runtime,
    Role::Read,
];

const LIMITS: RoomLimits = RoomLimits {
    max_document_bytes: 256 << 10,
    max_message_bytes: 8 << 10,
    lease_ttl_ms: 1_000,
    lease_grace_ms: 500,
    max_presence_bytes: 1_000,
    max_presences_per_peer: 2,
    max_room_presence_bytes: 4_000,
    presence_bytes_per_second: 2_000,
    presence_burst_bytes: 4_000,
};

/// The client ids replicas write under: the base document's, the sample frames', and one per
/// slot (so a peer can write under another peer's id).
const CLIENTS: [u64; 8] = [1, 2, 10, 11, 12, 13, 14, 15];

#[derive(Debug, Arbitrary)]
enum Edit {
    Insert {
        index: u8,
        markdown: bool,
        text: String,
    },
    SetSource {
        cell: u8,
        text: String,
    },
    Delete {
        cell: u8,
    },
    Move {
        cell: u8,
        to: u8,
    },
    Output {
        cell: u8,
        text: String,
    },
    Clear {
        cell: u8,
    },
    Run {
        cell: u8,
        server: bool,
    },
    Start {
        run: u8,
        epoch: Option<u8>,
    },
    Finish {
        run: u8,
        error: bool,
        epoch: Option<u8>,
    },
    Interrupt {
        run: u8,
    },
    CellMetadata {
        cell: u8,
        key: String,
        value: String,
    },
    Metadata {
        key: String,
        value: String,
    },
}

#[derive(Debug, Arbitrary)]
enum How {
    Update,
    Step2,
    /// In chunks, of a frame this big at most.
    Chunks {
        limit: u16,
    },
    /// Only the first chunks: the rest never comes.
    FirstChunks {
        limit: u16,
        count: u8,
    },
}

#[derive(Debug, Arbitrary)]
enum LeaseOp {
    Request(u8),
    Heartbeat,
    Release,
    Granted(u8),
}

#[derive(Debug, Arbitrary)]
enum Step {
    Raw {
        slot: u8,
        frame: Vec<u8>,
    },
    Sample {
        slot: u8,
        index: u8,
    },
    SampleMutated {
        slot: u8,
        index: u8,
        at: u16,
        byte: u8,
    },
    /// The slot's replica changes; the update waits in its outbox.
    Edit {
        slot: u8,
        edit: Edit,
    },
    /// One of the slot's waiting updates goes to the room (any one: out of order on purpose).
    Send {
        slot: u8,
        which: u8,
        how: How,
    },
    /// The slot's replica takes what the room has.
    Pull {
        slot: u8,
    },
    /// The slot's replica starts writing under another client id, from the room's state.
    Become {
        slot: u8,
        client: u8,
    },
    Step1 {
        slot: u8,
    },
    Awareness {
        slot: u8,
        client: u8,
        clock: u8,
        json: Option<String>,
    },
    Lease {
        slot: u8,
        op: LeaseOp,
    },
    Ack {
        slot: u8,
    },
    Leave {
        slot: u8,
    },
    Tick {
        ms: u16,
    },
    Compact,
}

struct Peer {
    connection: u32,
    replica: Notebook,
    outbox: Vec<Vec<u8>>,
}

/// The token of a slot: each slot has its own (its id is the principal the room binds client
/// ids to), kept across its reconnections.
fn credentials(slot: usize) -> Credentials {
    Credentials::new(ROLES[slot], format!("token-{slot}"))
}

struct Relay {
    room: Room<u32>,
    /// The snapshot and the updates appended since, as the relay stores them.
    stored: Vec<Vec<u8>>,
    stored_epoch: u64,
    next_connection: u32,
    now: u64,
}

impl Relay {
    fn new() -> Self {
        Self {
            room: Room::new(base_notebook(1000), base_update().len(), 0, LIMITS),
            stored: vec![base_update().to_vec()],
            stored_epoch: 0,
            next_connection: 0,
            now: 1_000_000,
        }
    }

    /// A new connection for `slot`: it joins the room.
    fn connect(&mut self, slot: usize) -> u32 {
        self.next_connection += 1;
        let frames = self.room.join(self.next_connection, credentials(slot));
        for frame in &frames {
            assert!(
                wire::decode(frame).is_ok(),
                "a join frame that does not decode"
            );
        }
        self.next_connection
    }

    /// The notebook the stored updates make.
    fn replay(&self) -> Notebook {
        let notebook = Notebook::with_client_id(1001);
        for update in &self.stored {
            notebook
                .apply_update_v1(update)
                .expect("a stored update applies");
        }
        notebook
    }

    fn role_of(peers: &[Peer], connection: u32) -> Option<Role> {
        peers
            .iter()
            .position(|p| p.connection == connection)
            .map(|i| ROLES[i])
    }

    fn check_frames(&self, peers: &[Peer], outcome: &Outcome<u32>) {
        let frames = outcome.reply.iter().chain(&outcome.broadcast);
        for frame in frames.chain(outcome.direct.iter().map(|(_, f)| f)) {
            if let Err(error) = wire::decode(frame) {
                panic!("the room sent a frame that does not decode: {error}: {frame:?}");
            }
        }
        for (to, frame) in &outcome.direct {
            if let Ok(Message::Lease(LeaseMessage::Granted { .. })) = wire::decode(frame) {
                let role = Self::role_of(peers, *to);
                assert_eq!(
                    role,
                    Some(Role::Runtime),
                    "the lease went to a {role:?} peer"
                );
            }
        }
        if let Some(epoch) = outcome.lease_epoch {
            assert!(
                epoch > self.stored_epoch,
                "lease epoch {epoch} after {}",
                self.stored_epoch
            );
        }
    }

    fn store(&mut self, outcome: &Outcome<u32>) {
        self.stored.extend(outcome.persist.iter().cloned());
        if let Some(epoch) = outcome.lease_epoch {
            self.stored_epoch = epoch;
        }
    }

    /// `frame` from the peer in `slot`, as the relay's socket hands it to the room.
    fn deliver(&mut self, peers: &mut [Peer], slot: usize, frame: &[u8]) {
        let role = ROLES[slot];
        let connection = peers[slot].connection;
        if frame.len() > LIMITS.max_message_bytes {
            // The socket refuses it before the room sees it, and closes.
            return self.disconnect(peers, slot);
        }
        let notebook = self.room.notebook();
        let before =
            (role == Role::Read).then(|| (notebook.state_vector(), notebook.encode_update_v1()));
        let queue_before =
            (!role.allows(Action::Execute)).then(|| (notebook.executions(), notebook.runtimes()));
        let result = self.room.receive(connection, frame, self.now);
        let notebook = self.room.notebook();
        if let Some((state_vector, encoded)) = before {
            assert_eq!(
                notebook.state_vector(),
                state_vector,
                "a read peer changed the document"
            );
            assert!(
                notebook.encode_update_v1() == encoded,
                "a read peer changed the document"
            );
            if let Ok(outcome) = &result {
                assert!(
                    outcome.persist.is_empty(),
                    "a read peer's update was stored"
                );
            }
        }
        if let Some((executions, runtimes)) = queue_before {
            assert_eq!(
                notebook.executions(),
                executions,
                "a {role} peer changed the execution queue"
            );
            assert_eq!(
                notebook.runtimes(),
                runtimes,
                "a {role} peer changed the runtimes"
            );
        }
        // A tainted room is one whose checks let through an update that did not integrate.
        assert!(!self.room.is_tainted(), "the room is tainted: {result:?}");
        match result {
            Ok(outcome) => {
                self.check_frames(peers, &outcome);
                self.store(&outcome);
            }
            Err(_) => self.disconnect(peers, slot),
        }
    }

    fn disconnect(&mut self, peers: &mut [Peer], slot: usize) {
        let outcome = self.room.leave(peers[slot].connection, self.now);
        self.check_frames(peers, &outcome);
        self.store(&outcome);
        peers[slot].connection = self.connect(slot);
    }
}

fn pick(ids: Vec<String>, n: u8) -> Option<String> {
    (!ids.is_empty()).then(|| ids[usize::from(n) % ids.len()].clone())
}

fn edit(replica: &Notebook, edit: Edit) {
    let cells = || replica.cell_ids();
    let runs = || {
        replica
            .executions()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    // Refusals of the typed API (a markdown cell asked to run, a finished run restarted) are
    // fine: the point is the updates that do get made.
    let _ = match edit {
        Edit::Insert {
            index,
            markdown,
            text,
        } => {
            let cell_type = if markdown {
                CellType::Markdown
            } else {
                CellType::Code
            };
            let index = u32::from(index).min(replica.cell_count());
            replica.insert_cell(index, cell_type, &text).map(drop)
        }
        Edit::SetSource { cell, text } => match pick(cells(), cell) {
            Some(cell) => replica.set_source(&cell, &text),
            None => Ok(()),
        },
        Edit::Delete { cell } => match pick(cells(), cell) {
            Some(cell) => replica.delete_cell(&cell),
            None => Ok(()),
        },
        Edit::Move { cell, to } => match pick(cells(), cell) {
            Some(cell) => replica.move_cell(&cell, u32::from(to) % replica.cell_count().max(1)),
            None => Ok(()),
        },
        Edit::Output { cell, text } => match pick(cells(), cell) {
            Some(cell) => {
                let output = Output::Stream {
                    name: StreamName::Stdout,
                    text,
                };
                replica.append_output(&cell, &output)
            }
            None => Ok(()),
        },
        Edit::Clear { cell } => match pick(cells(), cell) {
            Some(cell) => replica.clear_outputs(&cell),
            None => Ok(()),
        },
        Edit::Run { cell, server } => match pick(cells(), cell) {
            Some(cell) => {
                let target = if server {
                    ExecutionTarget::Server
                } else {
                    ExecutionTarget::Browser("fuzz".into())
                };
                replica
                    .request_execution(&cell, &target, "fuzz", 1.0)
                    .map(drop)
            }
            None => Ok(()),
        },
        Edit::Start { run, epoch } => match pick(runs(), run) {
            Some(run) => {
                // The runtime the entry names: browsers by session, the server by its lease.
                let session = match replica.execution(&run).map(|e| e.target) {
                    Ok(ExecutionTarget::Browser(client)) => execution::browser_session(client),
                    _ => "rt".to_owned(),
                };
                replica
                    .start_execution(&run, &session, epoch.map(u64::from), 2.0)
                    .map(drop)
            }
            None => Ok(()),
        },
        Edit::Finish { run, error, epoch } => match pick(runs(), run) {
            Some(run) => {
                let reply = if error { Reply::Error } else { Reply::Ok };
                let outcome = RunOutcome::Replied {
                    reply,
                    execution_count: Some(1),
                };
                let epoch = epoch.map(u64::from);
                let session = replica.execution(&run).ok().and_then(|e| e.runtime);
                let session = session.unwrap_or_else(|| "rt".to_owned());
                replica
                    .finish_execution(&run, &session, epoch, outcome, 3.0)
                    .map(drop)
            }
            None => Ok(()),
        },
        Edit::Interrupt { run } => match pick(runs(), run) {
            Some(run) => replica.stop_execution(&run, 4.0).map(drop),
            None => Ok(()),
        },
        Edit::CellMetadata { cell, key, value } => match pick(cells(), cell) {
            Some(cell) => replica.set_cell_metadata(&cell, &key, &value.into()),
            None => Ok(()),
        },
        Edit::Metadata { key, value } => {
            replica.set_notebook_metadata(&key, &value.into());
            Ok(())
        }
    };
}

fuzz_target!(|steps: Vec<Step>| {
    inloop_fuzz::init();
    fastrand::seed(0);
    let mut relay = Relay::new();
    let mut peers: Vec<Peer> = (0..ROLES.len())
        .map(|slot| Peer {
            connection: relay.connect(slot),
            replica: base_notebook(CLIENTS[2 + slot]),
            outbox: Vec::new(),
        })
        .collect();
    let samples = sample_frames();
    for step in steps {
        match step {
            Step::Raw { slot, frame } => {
                relay.deliver(&mut peers, usize::from(slot) % ROLES.len(), &frame);
            }
            Step::Sample { slot, index } => {
                let frame = &samples[usize::from(index) % samples.len()];
                relay.deliver(&mut peers, usize::from(slot) % ROLES.len(), frame);
            }
            Step::SampleMutated {
                slot,
                index,
                at,
                byte,
            } => {
                let mut frame = samples[usize::from(index) % samples.len()].clone();
                let at = usize::from(at) % frame.len();
                frame[at] = byte;
                relay.deliver(&mut peers, usize::from(slot) % ROLES.len(), &frame);
            }
            Step::Edit { slot, edit: change } => {
                let peer = &mut peers[usize::from(slot) % ROLES.len()];
                let before = peer.replica.state_vector();
                edit(&peer.replica, change);
                let update = peer.replica.encode_diff_v1(&before);
                if update != [0, 0] {
                    peer.outbox.push(update);
                }
            }
            Step::Send { slot, which, how } => {
                let slot = usize::from(slot) % ROLES.len();
                let outbox = &mut peers[slot].outbox;
                if outbox.is_empty() {
                    continue;
                }
                let update = outbox.remove(usize::from(which) % outbox.len());
                match how {
                    How::Update => {
                        relay.deliver(&mut peers, slot, &Message::Update(update).encode())
                    }
                    How::Step2 => {
                        relay.deliver(&mut peers, slot, &Message::SyncStep2(update).encode())
                    }
                    How::Chunks { limit } | How::FirstChunks { limit, .. } => {
                        let limit = usize::from(limit).clamp(40, LIMITS.max_message_bytes);
                        let count = match how {
                            How::FirstChunks { count, .. } => usize::from(count),
                            _ => usize::MAX,
                        };
                        let frame = Message::Update(update).encode();
                        for piece in chunks::split(frame, limit).into_iter().take(count) {
                            relay.deliver(&mut peers, slot, &piece);
                        }
                    }
                }
            }
            Step::Pull { slot } => {
                let peer = &peers[usize::from(slot) % ROLES.len()];
                let diff = relay
                    .room
                    .notebook()
                    .encode_diff_v1(&peer.replica.state_vector());
                peer.replica
                    .apply_update_v1(&diff)
                    .expect("the room's state applies");
            }
            Step::Become { slot, client } => {
                let replica = base_notebook(CLIENTS[usize::from(client) % CLIENTS.len()]);
                let state = relay.room.notebook().encode_update_v1();
                replica
                    .apply_update_v1(&state)
                    .expect("the room's state applies");
                // The old replica is gone with what it had not sent: two live replicas writing
                // under one client id make different items with the same ids, which no honest
                // peer does, and whose order yrs may resolve differently in a replayed
                // document (docs/SECURITY.md, "left as they are").
                let peer = &mut peers[usize::from(slot) % ROLES.len()];
                peer.replica = replica;
                peer.outbox.clear();
            }
            Step::Step1 { slot } => {
                let slot = usize::from(slot) % ROLES.len();
                let frame = Message::SyncStep1(peers[slot].replica.state_vector()).encode();
                relay.deliver(&mut peers, slot, &frame);
            }
            Step::Awareness {
                slot,
                client,
                clock,
                json,
            } => {
                let json = json.unwrap_or_else(|| "null".into());
                let frame = awareness_frame(u64::from(client % 8), u32::from(clock), &json);
                relay.deliver(&mut peers, usize::from(slot) % ROLES.len(), &frame);
            }
            Step::Lease { slot, op } => {
                let message = match op {
                    LeaseOp::Request(n) => LeaseMessage::Request {
                        session: format!("rt-{}", n % 3),
                    },
                    LeaseOp::Heartbeat => LeaseMessage::Heartbeat,
                    LeaseOp::Release => LeaseMessage::Release,
                    LeaseOp::Granted(n) => LeaseMessage::Granted {
                        epoch: u64::from(n),
                        ttl_ms: 1,
                    },
                };
                let frame = Message::Lease(message).encode();
                relay.deliver(&mut peers, usize::from(slot) % ROLES.len(), &frame);
            }
            Step::Ack { slot } => {
                relay.deliver(
                    &mut peers,
                    usize::from(slot) % ROLES.len(),
                    &Message::Ack(0).encode(),
                );
            }
            Step::Leave { slot } => relay.disconnect(&mut peers, usize::from(slot) % ROLES.len()),
            Step::Tick { ms } => {
                relay.now += u64::from(ms);
                let outcome = relay.room.tick(relay.now);
                relay.check_frames(&peers, &outcome);
                relay.store(&outcome);
            }
            Step::Compact => relay.stored = vec![relay.room.compact()],
        }
    }
    // What was stored is what the room serves.
    let replayed = relay.replay();
    let serving = relay.room.notebook();
    assert_eq!(
        replayed.state_vector(),
        serving.state_vector(),
        "storage and room disagree"
    );
    // The same items, deletes and content; not byte for byte: yrs may split or squash blocks
    // differently in a document that grew update by update and one replayed from storage.
    let deletes = |notebook: &inloop_doc::Notebook| {
        use yrs::{ReadTxn, Transact};
        notebook.doc().transact().snapshot().delete_set
    };
    assert!(
        deletes(&replayed) == deletes(serving),
        "storage and room disagree on deletes"
    );
    // Every item in the same part of the document. (Not the same order: a token whose peers
    // write different items under one client id, as the samples and `Become` here do and no
    // honest peer does, makes a history yrs may order differently when replayed; which of two
    // concurrent map values wins can then differ. Where items land, which is what roles are
    // judged by, cannot: it follows parents and neighbours by id. docs/SECURITY.md has this.)
    let (stored_zones, room_zones) = (replayed.zone_index(), serving.zone_index());
    for (client, clock) in serving.state_vector().iter() {
        for clock in 0..*clock {
            let id = yrs::ID::new(*client, clock);
            assert_eq!(
                stored_zones.zone(&id),
                room_zones.zone(&id),
                "storage and room disagree on where {id} lies"
            );
        }
    }
});
