//! Sans-IO sync for inloop documents: what goes on a document's WebSocket, with no socket in it.
//!
//! Bytes in, bytes out. The relay, the browser engine and the server runtime each own their
//! sockets and clocks and hand frames to the types here, so the protocol has one implementation
//! that every side shares and that tests drive without a network.
//!
//! # Features
//!
//! - [`wire`]: the y-websocket protocol on `yrs::sync` (SYNC step 1, step 2 and update,
//!   AWARENESS, AUTH, QUERY_AWARENESS) plus inloop's lease message. A stock Yjs `y-websocket`
//!   client speaks it unchanged.
//! - [`Room`]: the relay's rules for one document: answers sync, applies and relays updates
//!   (to be stored durably before they go out), relays presence within its limits and drops a
//!   peer's presence when it leaves, and runs the [`Lease`]. Every update is judged under its
//!   sender's own role before any of it is applied ([`inloop_doc::ZoneIndex`]): it must
//!   integrate completely at once, write only where the role may (read: nowhere; edit: the
//!   cells; execute and above: the execution queue too) and only under client ids its token
//!   owns. A refusal cuts the sender alone.
//! - [`ClientSession`]: a peer's side: sync on (re)connection, including changes made offline,
//!   presence, lease events.
//! - [`chunks`]: frames larger than the relay's message limit (a step 2 after a long time
//!   offline) go between inloop peers in pieces, and are put back together.
//! - [`Lease`]: one runtime per document, a growing epoch, heartbeats, a grace period.
//! - [`TokenKey`], [`Claims`], [`Role`]: signed capability tokens.
//!
//! # Quick start
//!
//! ```
//! use inloop_doc::{CellType, Notebook};
//! use inloop_sync::{ClientSession, Credentials, Role, Room, RoomLimits};
//!
//! let mut room: Room<u32> = Room::new(Notebook::blank(), 0, 0, RoomLimits::default());
//! let mut alice = ClientSession::new(Notebook::new());
//!
//! // Alice connects with an edit token: she and the room exchange state vectors and what the
//! // other lacks.
//! let mut to_alice = room.join(1, Credentials::new(Role::Edit, "alice's token id"));
//! for frame in alice.connected() {
//!     to_alice.extend(room.receive(1, &frame, 0).unwrap().reply);
//! }
//! for frame in to_alice {
//!     for reply in alice.receive(&frame).unwrap().replies {
//!         room.receive(1, &reply, 0).unwrap();
//!     }
//! }
//! assert!(alice.is_synced());
//! assert_eq!(alice.notebook().cell_count(), 1);
//!
//! // Her edit travels as one update frame; the room stores it, then relays it.
//! alice.notebook().insert_cell(1, CellType::Markdown, "# Hi").unwrap();
//! let update = alice.notebook().encode_update_v1();
//! let outcome = room.receive(1, &ClientSession::update_frame(&update), 0).unwrap();
//! assert_eq!(outcome.persist.len(), 1);
//! assert_eq!(room.notebook().cell_count(), 2);
//! ```

pub mod chunks;
mod client;
mod error;
pub mod lease;
mod room;
pub mod token;
pub mod wire;

pub use client::{
    ClientEvent, ClientSession, FIRST_BACKOFF_MS, MAX_BACKOFF_MS, MERGE_BYTES, Received, Status,
    close_is_final,
};
pub use error::{Error, Result};
pub use lease::{Lease, LeaseMessage};
pub use room::{Credentials, Outcome, Room, RoomLimits};
pub use token::{Action, Claims, Role, TokenKey};
pub use wire::SizeLimits;
