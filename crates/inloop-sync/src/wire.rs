//! The messages on a document's WebSocket: the y-websocket protocol (`yrs::sync`) plus inloop's
//! lease message. Only this module encodes or decodes frames.

use yrs::StateVector;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::sync::protocol::{MSG_AWARENESS, MSG_SYNC, MSG_SYNC_STEP_1, MSG_SYNC_UPDATE, SyncMessage};
use yrs::sync::{AwarenessUpdate, Message as YMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};

use crate::lease::LeaseMessage;
use crate::{Error, Result};

/// inloop's message type beside y-websocket's SYNC=0, AWARENESS=1, AUTH=2, QUERY_AWARENESS=3.
/// Stock Yjs clients never receive it: it is only sent to peers that asked for the lease.
pub const MSG_LEASE: u8 = 100;

/// inloop's acknowledgement: from a peer, "acknowledge my updates" (sent once per connection);
/// from the relay, "the first N updates you sent on this connection are stored". Stock Yjs
/// clients never ask, so never receive it.
pub const MSG_ACK: u8 = 101;

/// inloop's relay limits, sent to a peer when it asks for acknowledgements: a peer that writes
/// big things (kernel outputs) keeps each update within them instead of being disconnected.
pub const MSG_LIMITS: u8 = 102;

/// inloop's chunk: one piece of a frame larger than the relay's message limit (a sync step 2
/// carrying what a runtime wrote while offline, or a large document to a joining peer). Sent
/// only between peers that know the limits (they asked for acknowledgements), never to stock
/// Yjs clients. See [`crate::chunks`].
pub const MSG_CHUNK: u8 = 103;

/// One message of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// "Here is what I have": answer with what it lacks.
    SyncStep1(StateVector),
    /// The answer to a step 1: an update with what the asker lacked.
    SyncStep2(Vec<u8>),
    /// A live change.
    Update(Vec<u8>),
    Awareness(AwarenessUpdate),
    QueryAwareness,
    /// y-websocket's AUTH: `Some(reason)` is a refusal.
    Auth(Option<String>),
    Lease(LeaseMessage),
    /// From a peer: acknowledge my updates (the count is ignored). From the relay: this many of
    /// the update-carrying messages (sync step 2 and updates) you sent on this connection are
    /// stored.
    Ack(u64),
    /// From the relay: the sizes it takes.
    Limits(SizeLimits),
    /// Bytes `offset..offset + bytes.len()` of a frame of `total` bytes.
    Chunk {
        total: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
}

/// The largest document and the largest message a relay takes, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub max_document_bytes: u64,
    pub max_message_bytes: u64,
}

impl Message {
    /// The frame for this message (consumed: a whole document's step 2 is not copied).
    pub fn encode(self) -> Vec<u8> {
        let message = match self {
            Message::SyncStep1(sv) => YMessage::Sync(SyncMessage::SyncStep1(sv)),
            Message::SyncStep2(update) => YMessage::Sync(SyncMessage::SyncStep2(update)),
            Message::Update(update) => YMessage::Sync(SyncMessage::Update(update)),
            Message::Awareness(update) => YMessage::Awareness(update),
            Message::QueryAwareness => YMessage::AwarenessQuery,
            Message::Auth(reason) => YMessage::Auth(reason),
            Message::Lease(lease) => YMessage::Custom(MSG_LEASE, lease.to_json()),
            Message::Ack(count) => {
                let mut payload = Vec::new();
                payload.write_var(count);
                YMessage::Custom(MSG_ACK, payload)
            }
            Message::Limits(limits) => {
                let mut payload = Vec::new();
                payload.write_var(limits.max_document_bytes);
                payload.write_var(limits.max_message_bytes);
                YMessage::Custom(MSG_LIMITS, payload)
            }
            Message::Chunk {
                total,
                offset,
                bytes,
            } => {
                let mut payload = Vec::with_capacity(bytes.len() + 24);
                payload.write_var(total);
                payload.write_var(offset);
                payload.write_buf(&bytes);
                YMessage::Custom(MSG_CHUNK, payload)
            }
        };
        message.encode_v1()
    }
}

impl Message {
    /// An awareness message carrying one client's presence state (`null` removes it).
    pub fn presence(client: u64, clock: u32, json: &str) -> Self {
        let mut update = AwarenessUpdate {
            clients: std::collections::HashMap::new(),
        };
        let entry = yrs::sync::awareness::AwarenessUpdateEntry {
            clock,
            json: json.into(),
        };
        update.clients.insert(yrs::ClientID::new(client), entry);
        Message::Awareness(update)
    }
}

/// The update frame for `update`, written straight from the slice (the relay's fan-out).
pub fn encode_update(update: &[u8]) -> Vec<u8> {
    let mut encoder = EncoderV1::new();
    encoder.write_var(MSG_SYNC);
    encoder.write_var(MSG_SYNC_UPDATE);
    encoder.write_buf(update);
    encoder.to_vec()
}

/// Refuses a state vector or an awareness update that declares more entries than its bytes can
/// hold: yrs reserves room for the declared count before reading an entry, so a few bytes
/// claiming billions of entries would cost the relay half a gigabyte and a second of CPU.
fn check_counts(frame: &[u8]) -> Result<()> {
    let malformed = |e: yrs::encoding::read::Error| Error::Malformed(e.to_string());
    let mut cursor = Cursor::new(frame);
    let kind: u8 = cursor.read_var().map_err(malformed)?;
    // Each entry takes at least this many bytes: a state vector's (client, clock); an awareness
    // entry's (client, clock, JSON length).
    let (payload, min_entry) = match kind {
        MSG_SYNC => match cursor.read_var::<u8>().map_err(malformed)? {
            MSG_SYNC_STEP_1 => (cursor.read_buf().map_err(malformed)?, 2),
            _ => return Ok(()),
        },
        MSG_AWARENESS => (cursor.read_buf().map_err(malformed)?, 3),
        _ => return Ok(()),
    };
    let mut inner = Cursor::new(payload);
    let count: u64 = inner.read_var().map_err(malformed)?;
    let room = (payload.len() - inner.next) as u64;
    if count.saturating_mul(min_entry) > room {
        return Err(Error::Malformed(format!(
            "{count} entries declared in {room} bytes"
        )));
    }
    Ok(())
}

/// The message in a frame. y-websocket sends one message per frame; a truncated one is an error.
pub fn decode(frame: &[u8]) -> Result<Message> {
    if frame.is_empty() {
        return Err(Error::Malformed("an empty frame".into()));
    }
    check_counts(frame)?;
    let message = YMessage::decode_v1(frame).map_err(|e| Error::Malformed(e.to_string()))?;
    Ok(match message {
        YMessage::Sync(SyncMessage::SyncStep1(sv)) => Message::SyncStep1(sv),
        YMessage::Sync(SyncMessage::SyncStep2(update)) => Message::SyncStep2(update),
        YMessage::Sync(SyncMessage::Update(update)) => Message::Update(update),
        YMessage::Awareness(update) => Message::Awareness(update),
        YMessage::AwarenessQuery => Message::QueryAwareness,
        YMessage::Auth(reason) => Message::Auth(reason),
        YMessage::Custom(MSG_LEASE, data) => Message::Lease(LeaseMessage::from_json(&data)?),
        YMessage::Custom(MSG_ACK, data) => {
            let count = Cursor::new(&data)
                .read_var()
                .map_err(|e| Error::Malformed(format!("ack: {e}")))?;
            Message::Ack(count)
        }
        YMessage::Custom(MSG_LIMITS, data) => {
            let mut cursor = Cursor::new(&data);
            let mut read = || {
                cursor
                    .read_var()
                    .map_err(|e| Error::Malformed(format!("limits: {e}")))
            };
            Message::Limits(SizeLimits {
                max_document_bytes: read()?,
                max_message_bytes: read()?,
            })
        }
        YMessage::Custom(MSG_CHUNK, data) => {
            let mut cursor = Cursor::new(&data);
            let malformed = |e: yrs::encoding::read::Error| Error::Malformed(format!("chunk: {e}"));
            Message::Chunk {
                total: cursor.read_var().map_err(malformed)?,
                offset: cursor.read_var().map_err(malformed)?,
                bytes: cursor.read_buf().map_err(malformed)?.to_vec(),
            }
        }
        YMessage::Custom(tag, _) => {
            return Err(Error::Malformed(format!("unknown message type {tag}")));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseMessage;

    /// Found by fuzzing (fuzz/regressions/sync_frame/f5-*): a count of entries the bytes cannot
    /// hold made yrs reserve half a gigabyte before reading any entry.
    #[test]
    fn counts_the_bytes_cannot_hold_are_refused_before_anything_is_reserved() {
        let awareness = [1, 5, 0x80, 0xc6, 0x86, 0x8f, 0x01];
        let state_vector = [0, 0, 5, 0x80, 0xc6, 0x86, 0x8f, 0x01];
        for frame in [&awareness[..], &state_vector[..]] {
            let started = std::time::Instant::now();
            let error = decode(frame).unwrap_err();
            assert!(error.to_string().contains("entries declared"), "{error}");
            assert!(started.elapsed() < std::time::Duration::from_millis(50));
        }
        // Real ones still decode.
        let mut clients = std::collections::HashMap::new();
        clients.insert(
            yrs::ClientID::new(7),
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock: 1,
                json: "{}".into(),
            },
        );
        let presence = Message::Awareness(yrs::sync::AwarenessUpdate { clients });
        assert_eq!(decode(&presence.clone().encode()).unwrap(), presence);
    }

    /// Found by fuzzing (fuzz/regressions/sync_frame/f1-client-id-over-53-bits): yrs
    /// debug-asserts client ids fit 53 bits; a peer's bytes must not panic test builds either.
    #[test]
    fn a_client_id_over_53_bits_does_not_panic() {
        let mut encoder = EncoderV1::new();
        encoder.write_var(1u32); // one entry
        encoder.write_var(1u64 << 60); // its client id
        encoder.write_var(1u32);
        encoder.write_string("{}");
        let mut frame = EncoderV1::new();
        frame.write_var(MSG_AWARENESS);
        frame.write_buf(encoder.to_vec());
        let _ = decode(&frame.to_vec());
    }

    #[test]
    fn messages_round_trip() {
        let messages = [
            Message::SyncStep1(StateVector::default()),
            Message::SyncStep2(vec![0, 0]),
            Message::Update(vec![0, 0]),
            Message::QueryAwareness,
            Message::Auth(Some("no".into())),
            Message::Lease(LeaseMessage::Request {
                session: "rt-1".into(),
            }),
            Message::Ack(0),
            Message::Ack(u64::from(u32::MAX) + 7),
            Message::Limits(SizeLimits {
                max_document_bytes: 256 << 20,
                max_message_bytes: 16 << 20,
            }),
            Message::Chunk {
                total: 10,
                offset: 4,
                bytes: vec![1, 2, 3],
            },
        ];
        for message in messages {
            assert_eq!(decode(&message.clone().encode()).unwrap(), message);
        }
    }

    #[test]
    fn an_update_frame_is_the_update_message() {
        let update = vec![1, 2, 3];
        assert_eq!(encode_update(&update), Message::Update(update).encode());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for frame in [
            &[][..],
            &[0],
            &[0, 9],
            &[7, 1, 2],
            &[0, 2, 200, 1],
            &[255; 16],
        ] {
            assert!(decode(frame).is_err(), "{frame:?}");
        }
    }
}
