//! The runtime lease: at most one server runtime per document runs `server` executions.
//!
//! The relay grants the lease with an epoch that only grows; the holder renews it by heartbeat
//! and stamps the epoch on everything it writes, so writes from an older holder can be told
//! apart. A holder whose connection drops keeps the lease for a grace period (it may be
//! reconnecting, and gets it back by asking with the same session id); after that the next
//! standby in line is granted it. Time is passed in (milliseconds), so this is plain logic.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The lease messages, carried as JSON in message type [`crate::wire::MSG_LEASE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LeaseMessage {
    /// Runtime to relay: grant me the lease, or queue me. `session` is the runtime's session id,
    /// stable across its reconnections.
    Request { session: String },
    /// Runtime to relay: I still hold it.
    Heartbeat,
    /// Runtime to relay: I give it up.
    Release,
    /// Relay to runtime: you hold the lease under this epoch; heartbeat within `ttl_ms`.
    Granted { epoch: u64, ttl_ms: u64 },
    /// Relay to runtime: another runtime holds it (under `epoch`); you are next in line.
    Standby { epoch: u64 },
    /// Relay to runtime: you no longer hold the lease of `epoch`.
    Lost { epoch: u64, reason: String },
    /// Relay to peer: you may not hold the lease.
    Denied { reason: String },
}

impl LeaseMessage {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // A derived Serialize of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::Malformed(format!("lease message: {e}")))
    }
}

/// Who a lease message goes to: the connection it concerns.
pub type Notice<P> = (P, LeaseMessage);

#[derive(Debug, Clone)]
struct Holder<P> {
    peer: Option<P>,
    session: String,
    expires_at_ms: u64,
}

#[derive(Debug, Clone)]
struct Waiting<P> {
    peer: P,
    session: String,
}

/// One document's lease. `P` identifies a connection.
#[derive(Debug, Clone)]
pub struct Lease<P> {
    epoch: u64,
    holder: Option<Holder<P>>,
    standbys: VecDeque<Waiting<P>>,
    ttl_ms: u64,
    grace_ms: u64,
}

impl<P: Copy + Eq> Lease<P> {
    /// A lease nobody holds; `epoch` is the last one ever granted for this document (the next
    /// grant uses `epoch + 1`).
    pub fn new(epoch: u64, ttl_ms: u64, grace_ms: u64) -> Self {
        Self {
            epoch,
            holder: None,
            standbys: VecDeque::new(),
            ttl_ms,
            grace_ms,
        }
    }

    /// The last epoch granted: persist it, so epochs keep growing across relay restarts.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The session holding the lease now, with its epoch.
    pub fn holder(&self) -> Option<(&str, u64)> {
        self.holder
            .as_ref()
            .map(|h| (h.session.as_str(), self.epoch))
    }

    /// Handles a lease message from `peer`.
    pub fn receive(&mut self, peer: P, message: LeaseMessage, now_ms: u64) -> Vec<Notice<P>> {
        match message {
            LeaseMessage::Request { session } => self.request(peer, session, now_ms),
            LeaseMessage::Heartbeat => match &mut self.holder {
                Some(holder) if holder.peer == Some(peer) => {
                    holder.expires_at_ms = now_ms + self.ttl_ms;
                    Vec::new()
                }
                _ => vec![(peer, self.lost("you do not hold the lease"))],
            },
            LeaseMessage::Release => {
                self.standbys.retain(|w| w.peer != peer);
                if self.holder.as_ref().is_some_and(|h| h.peer == Some(peer)) {
                    self.holder = None;
                    self.grant_next(now_ms)
                } else {
                    Vec::new()
                }
            }
            _ => vec![(
                peer,
                LeaseMessage::Denied {
                    reason: "only the relay sends that lease message".into(),
                },
            )],
        }
    }

    fn request(&mut self, peer: P, session: String, now_ms: u64) -> Vec<Notice<P>> {
        let expires_at_ms = now_ms + self.ttl_ms;
        match &mut self.holder {
            // The holder asking again: on its own connection, or on a new one after its old one
            // closed (a reconnection within the grace period keeps the epoch).
            Some(holder)
                if holder.session == session && holder.peer.is_none_or(|held| held == peer) =>
            {
                holder.peer = Some(peer);
                holder.expires_at_ms = expires_at_ms;
                vec![(peer, self.granted())]
            }
            // Its session on a second connection while the first is still open: one of them is
            // not what it says (a stale half-open connection, or a copy). The new one gets a new
            // epoch, so whatever the old one still writes is stale; the old one is told.
            Some(holder) if holder.session == session => {
                let old = holder.peer;
                let lost = self.lost("your session holds the lease on another connection now");
                self.epoch += 1;
                self.holder = Some(Holder {
                    peer: Some(peer),
                    session,
                    expires_at_ms,
                });
                let mut notices: Vec<Notice<P>> =
                    old.into_iter().map(|old| (old, lost.clone())).collect();
                notices.push((peer, self.granted()));
                notices
            }
            Some(_) => {
                self.standbys
                    .retain(|w| w.peer != peer && w.session != session);
                self.standbys.push_back(Waiting { peer, session });
                vec![(peer, LeaseMessage::Standby { epoch: self.epoch })]
            }
            None => {
                self.epoch += 1;
                self.holder = Some(Holder {
                    peer: Some(peer),
                    session,
                    expires_at_ms,
                });
                vec![(peer, self.granted())]
            }
        }
    }

    /// A connection closed: it leaves the line, and a holder keeps the lease for the grace
    /// period only.
    pub fn disconnected(&mut self, peer: P, now_ms: u64) {
        self.standbys.retain(|w| w.peer != peer);
        if let Some(holder) = &mut self.holder {
            if holder.peer == Some(peer) {
                holder.peer = None;
                holder.expires_at_ms = holder.expires_at_ms.min(now_ms + self.grace_ms);
            }
        }
    }

    /// Expires a lapsed holder and grants the lease to the next standby.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Notice<P>> {
        match &self.holder {
            Some(holder) if holder.expires_at_ms <= now_ms => {
                let mut notices = Vec::new();
                if let Some(peer) = holder.peer {
                    notices.push((
                        peer,
                        self.lost("no heartbeat within the lease's time to live"),
                    ));
                }
                self.holder = None;
                notices.extend(self.grant_next(now_ms));
                notices
            }
            _ => Vec::new(),
        }
    }

    /// When [`Lease::tick`] next has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.holder.as_ref().map(|h| h.expires_at_ms)
    }

    fn grant_next(&mut self, now_ms: u64) -> Vec<Notice<P>> {
        let Some(next) = self.standbys.pop_front() else {
            return Vec::new();
        };
        self.epoch += 1;
        self.holder = Some(Holder {
            peer: Some(next.peer),
            session: next.session,
            expires_at_ms: now_ms + self.ttl_ms,
        });
        let mut notices = vec![(next.peer, self.granted())];
        let epoch = self.epoch;
        notices.extend(
            self.standbys
                .iter()
                .map(|w| (w.peer, LeaseMessage::Standby { epoch })),
        );
        notices
    }

    fn granted(&self) -> LeaseMessage {
        LeaseMessage::Granted {
            epoch: self.epoch,
            ttl_ms: self.ttl_ms,
        }
    }

    fn lost(&self, reason: &str) -> LeaseMessage {
        LeaseMessage::Lost {
            epoch: self.epoch,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(epoch: u64, ttl_ms: u64) -> LeaseMessage {
        LeaseMessage::Granted { epoch, ttl_ms }
    }

    fn request(session: &str) -> LeaseMessage {
        LeaseMessage::Request {
            session: session.into(),
        }
    }

    #[test]
    fn one_holder_and_a_growing_epoch() {
        let mut lease = Lease::new(7, 1_000, 500);
        assert_eq!(
            lease.receive(1, request("a"), 0),
            vec![(1, granted(8, 1_000))]
        );
        assert_eq!(
            lease.receive(2, request("b"), 0),
            vec![(2, LeaseMessage::Standby { epoch: 8 })]
        );
        // Heartbeats keep it; silence loses it to the standby.
        assert!(lease.receive(1, LeaseMessage::Heartbeat, 900).is_empty());
        assert!(lease.tick(1_800).is_empty());
        let notices = lease.tick(1_900);
        assert!(matches!(
            notices[0],
            (1, LeaseMessage::Lost { epoch: 8, .. })
        ));
        assert_eq!(notices[1], (2, granted(9, 1_000)));
        assert_eq!(lease.holder(), Some(("b", 9)));
    }

    #[test]
    fn a_dropped_holder_keeps_the_lease_for_the_grace_period() {
        let mut lease = Lease::new(0, 10_000, 500);
        lease.receive(1, request("a"), 0);
        lease.receive(2, request("b"), 0);
        lease.disconnected(1, 100);
        assert!(lease.tick(599).is_empty());
        // Reconnected as a new connection, same session: same epoch.
        assert_eq!(
            lease.receive(3, request("a"), 550),
            vec![(3, granted(1, 10_000))]
        );
        lease.disconnected(3, 1_000);
        assert_eq!(lease.tick(1_500), vec![(2, granted(2, 10_000))]);
    }

    #[test]
    fn release_hands_over_and_strangers_cannot_heartbeat() {
        let mut lease = Lease::new(0, 1_000, 100);
        lease.receive(1, request("a"), 0);
        lease.receive(2, request("b"), 0);
        assert!(matches!(
            lease.receive(2, LeaseMessage::Heartbeat, 1)[0],
            (2, LeaseMessage::Lost { .. })
        ));
        assert_eq!(
            lease.receive(1, LeaseMessage::Release, 2),
            vec![(2, granted(2, 1_000))]
        );
    }

    /// Found by fuzzing (fuzz/regressions/lease/f4-same-session-second-connection): a second
    /// open connection naming the holder's session (visible in the document) was granted the
    /// same epoch while the first still believed it held the lease.
    #[test]
    fn the_holders_session_on_a_second_open_connection_fences_the_first() {
        let mut lease = Lease::new(0, 10_000, 500);
        lease.receive(1, request("a"), 0);
        let notices = lease.receive(2, request("a"), 10);
        assert!(
            matches!(
                &notices[..],
                [
                    (1, LeaseMessage::Lost { epoch: 1, .. }),
                    (2, LeaseMessage::Granted { epoch: 2, .. })
                ]
            ),
            "{notices:?}"
        );
        assert!(matches!(
            lease.receive(1, LeaseMessage::Heartbeat, 20)[0],
            (1, LeaseMessage::Lost { .. })
        ));
        // The same connection asking again keeps its epoch.
        assert_eq!(
            lease.receive(2, request("a"), 30),
            vec![(2, granted(2, 10_000))]
        );
    }
}
