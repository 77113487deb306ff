//! The messages on a document's WebSocket: the y-websocket protocol (`yrs::sync`) plus inloop's
//! lease message. Only this module encodes or decodes frames.

use yrs::StateVector;
use yrs::sync::protocol::SyncMessage;
use yrs::sync::{AwarenessUpdate, Message as YMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use crate::lease::LeaseMessage;
use crate::{Error, Result};

/// inloop's message type beside y-websocket's SYNC=0, AWARENESS=1, AUTH=2, QUERY_AWARENESS=3.
/// Stock Yjs clients never receive it: it is only sent to peers that asked for the lease.
pub const MSG_LEASE: u8 = 100;

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
}

impl Message {
    /// The frame for this message.
    pub fn encode(&self) -> Vec<u8> {
        let message = match self {
            Message::SyncStep1(sv) => YMessage::Sync(SyncMessage::SyncStep1(sv.clone())),
            Message::SyncStep2(update) => YMessage::Sync(SyncMessage::SyncStep2(update.clone())),
            Message::Update(update) => YMessage::Sync(SyncMessage::Update(update.clone())),
            Message::Awareness(update) => YMessage::Awareness(update.clone()),
            Message::QueryAwareness => YMessage::AwarenessQuery,
            Message::Auth(reason) => YMessage::Auth(reason.clone()),
            Message::Lease(lease) => YMessage::Custom(MSG_LEASE, lease.to_json()),
        };
        message.encode_v1()
    }

    /// Whether the message would change the document if applied.
    pub fn writes_document(&self) -> bool {
        matches!(self, Message::SyncStep2(_) | Message::Update(_))
    }
}

/// The update frame for `update`, without copying it into a [`Message`] first.
pub fn encode_update(update: &[u8]) -> Vec<u8> {
    YMessage::Sync(SyncMessage::Update(update.to_vec())).encode_v1()
}

/// The message in a frame. y-websocket sends one message per frame; a truncated one is an error.
pub fn decode(frame: &[u8]) -> Result<Message> {
    if frame.is_empty() {
        return Err(Error::Malformed("an empty frame".into()));
    }
    let message = YMessage::decode_v1(frame).map_err(|e| Error::Malformed(e.to_string()))?;
    Ok(match message {
        YMessage::Sync(SyncMessage::SyncStep1(sv)) => Message::SyncStep1(sv),
        YMessage::Sync(SyncMessage::SyncStep2(update)) => Message::SyncStep2(update),
        YMessage::Sync(SyncMessage::Update(update)) => Message::Update(update),
        YMessage::Awareness(update) => Message::Awareness(update),
        YMessage::AwarenessQuery => Message::QueryAwareness,
        YMessage::Auth(reason) => Message::Auth(reason),
        YMessage::Custom(MSG_LEASE, data) => Message::Lease(LeaseMessage::from_json(&data)?),
        YMessage::Custom(tag, _) => {
            return Err(Error::Malformed(format!("unknown message type {tag}")));
        }
    })
}

/// Decodes a state vector sent as bytes (as in HTTP), with a clear error.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector> {
    StateVector::decode_v1(bytes).map_err(|e| Error::Malformed(format!("state vector: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseMessage;

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
        ];
        for message in messages {
            assert_eq!(decode(&message.encode()).unwrap(), message);
        }
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
