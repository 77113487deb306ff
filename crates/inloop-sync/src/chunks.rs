//! Frames larger than the relay's message limit, sent as [`Message::Chunk`]s and put back
//! together on the other side.
//!
//! A y-websocket sync step 2 carries everything the other side lacks in one message: a runtime
//! that wrote more than the relay's `max_message_bytes` while offline, or a document larger than
//! a client's own message limit, could never sync. Between inloop peers (those that asked for
//! acknowledgements, so know the limits) such a frame goes in pieces of at most
//! [`CHUNK_BYTES`], which also lets other messages (lease heartbeats) pass in between.

use crate::wire::{MSG_CHUNK, Message};
use crate::{Error, Result};

/// The payload of one chunk: small enough to keep a socket's other messages flowing.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A chunk frame's bytes beside its payload: the message type and three variable-length
/// integers (total, offset, payload length).
const HEADER_BYTES: usize = 32;

/// `frame` as it goes on a socket whose messages may be at most `max_message_bytes`: whole if
/// it fits, else in chunks.
pub fn split(frame: Vec<u8>, max_message_bytes: usize) -> Vec<Vec<u8>> {
    if frame.len() <= max_message_bytes {
        return vec![frame];
    }
    let piece = CHUNK_BYTES
        .min(max_message_bytes.saturating_sub(HEADER_BYTES))
        .max(1);
    let total = frame.len() as u64;
    frame
        .chunks(piece)
        .enumerate()
        .map(|(i, bytes)| {
            Message::Chunk {
                total,
                offset: (i * piece) as u64,
                bytes: bytes.to_vec(),
            }
            .encode()
        })
        .collect()
}

/// A reassembled frame, checked not to be a chunk itself (which would nest without end).
pub fn unchunked(frame: &[u8]) -> Result<&[u8]> {
    // Message types below 128 are one byte.
    if frame.first() == Some(&MSG_CHUNK) {
        return Err(Error::Malformed("a chunk inside a chunk".into()));
    }
    Ok(frame)
}

/// A frame arriving in chunks from one peer.
#[derive(Debug, Default)]
pub struct Reassembly {
    buffer: Vec<u8>,
    total: usize,
}

impl Reassembly {
    /// Adds a chunk; returns the whole frame once its last chunk arrived. Chunks must come in
    /// order, all saying the same `total`, which may be at most `max_total`.
    pub fn push(
        &mut self,
        total: u64,
        offset: u64,
        bytes: &[u8],
        max_total: usize,
    ) -> Result<Option<Vec<u8>>> {
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if total > max_total {
            return Err(Error::DocumentTooLarge { limit: max_total });
        }
        if offset == 0 && self.buffer.is_empty() {
            // Nothing reserved ahead: the total is the sender's word, and the budget counts
            // bytes received. The buffer grows with what arrives.
            self.total = total;
        }
        let expected = self.buffer.len() as u64;
        if offset != expected || total != self.total || self.buffer.len() + bytes.len() > total {
            let error = format!(
                "chunk at {offset} of {total} bytes, expected one at {expected} of {} bytes",
                self.total
            );
            *self = Self::default();
            return Err(Error::Malformed(error));
        }
        // Grown as bytes arrive (doubling, never past the total), so what is held stays within
        // twice what was received.
        let needed = self.buffer.len() + bytes.len();
        if needed > self.buffer.capacity() {
            let target = needed.max(self.buffer.capacity() * 2).min(total);
            self.buffer.reserve_exact(target - self.buffer.len());
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() < total {
            return Ok(None);
        }
        Ok(Some(std::mem::take(self).buffer))
    }

    /// Bytes received of a frame not complete yet (what is held is at most twice as many).
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    /// Found by fuzzing (fuzz/regressions/chunks/f2-reservation-outside-budget): the first
    /// chunk reserved the whole declared total, which the budget never counted; 40 read peers
    /// sending 9 bytes each took 10 GB.
    #[test]
    fn nothing_is_reserved_for_a_declared_total() {
        let mut reassembly = Reassembly::default();
        let budget = 256 << 20;
        assert_eq!(
            reassembly
                .push(budget as u64, 0, &[1, 2, 3], budget)
                .unwrap(),
            None
        );
        assert!(
            reassembly.pending_bytes() < 1 << 10,
            "{}",
            reassembly.pending_bytes()
        );
    }

    fn reassemble(frames: &[Vec<u8>], max_total: usize) -> Result<Option<Vec<u8>>> {
        let mut reassembly = Reassembly::default();
        let mut whole = None;
        for frame in frames {
            match wire::decode(frame)? {
                Message::Chunk {
                    total,
                    offset,
                    bytes,
                } => whole = reassembly.push(total, offset, &bytes, max_total)?,
                other => panic!("not a chunk: {other:?}"),
            }
        }
        Ok(whole)
    }

    #[test]
    fn a_frame_that_fits_goes_whole() {
        let frame = vec![7; 100];
        assert_eq!(split(frame.clone(), 100), vec![frame]);
    }

    #[test]
    fn a_large_frame_goes_in_chunks_within_the_limit_and_comes_back_whole() {
        let frame: Vec<u8> = (0..3 * CHUNK_BYTES + 5).map(|i| i as u8).collect();
        for limit in [1000, CHUNK_BYTES + HEADER_BYTES, 2 * CHUNK_BYTES] {
            let chunks = split(frame.clone(), limit);
            assert!(chunks.len() > 1);
            assert!(chunks.iter().all(|c| c.len() <= limit), "limit {limit}");
            assert_eq!(
                reassemble(&chunks, frame.len()).unwrap(),
                Some(frame.clone())
            );
        }
    }

    #[test]
    fn chunks_out_of_order_or_too_large_are_refused() {
        let frame = vec![1; 5000];
        let mut chunks = split(frame.clone(), 1000);
        assert!(matches!(
            reassemble(&chunks, 4999),
            Err(Error::DocumentTooLarge { .. })
        ));
        chunks.swap(1, 2);
        assert!(matches!(
            reassemble(&chunks, 5000),
            Err(Error::Malformed(_))
        ));
        chunks.swap(1, 2);
        chunks.remove(1);
        assert!(matches!(
            reassemble(&chunks, 5000),
            Err(Error::Malformed(_))
        ));
        // A chunk saying another total than the first.
        let mut reassembly = Reassembly::default();
        assert!(reassembly.push(10, 0, &[1; 4], 100).unwrap().is_none());
        assert!(reassembly.push(11, 4, &[1; 4], 100).is_err());
        // After an error, a new frame starts cleanly.
        assert!(reassembly.push(4, 0, &[1; 4], 100).unwrap().is_some());
    }
}
